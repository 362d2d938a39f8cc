//! Is the direct path to a peer still answering? Failover without waiting
//! for keepalive timeouts.
//!
//! A node always has a second way to a peer: the overlay. So a direct
//! path need not be trusted until proven dead (WireGuard's 15 s, our own
//! 12 s keepalive rule): as soon as it stops answering the traffic we put
//! on it, the traffic takes the overlay, and the path is probed until it
//! answers again. A black-holed path, a NAT that lost its mappings or a
//! crashed relay then costs about a second of traffic, not ten.
//!
//! The rule, for what we send over the path that expects it to carry
//! traffic back (our data, routed data we forward, pings; not pongs, which
//! answer, nor ring gossip, which is one-way):
//!
//! - the first message sent since the peer was last heard *arms* a check;
//! - nothing heard [`probe_after`] later (max(500 ms, 2 × RTT)): a ping
//!   goes out at once — a one-way flow (a download) has nothing coming
//!   back but this pong, and the pong is what keeps such a path trusted;
//! - nothing heard [`suspect_after`] after the check was armed (max(1 s,
//!   4 × RTT)), and the probe unanswered for a probe interval: the path is
//!   **suspect**. Data for the peer takes the overlay (routing skips the
//!   suspect link), tunnels through the peer move, and probes go out every
//!   probe interval. Only a pong — an answer to *our* probe, straight over
//!   the path — clears it: a path that carries the peer's packets to us but
//!   loses ours to it stays suspect;
//! - still suspect [`DEAD_AFTER_SUSPECT`] later: the path is **dead**. The
//!   ring lets the link go (and links again, punching afresh); the
//!   session, end to end, stays and carries the traffic over the overlay.
//!
//! The other side sees the same silence and moves too; data arriving from
//! the peer over the overlay while we still send straight to it (the peer
//! may have moved already) has us probe at once.
//!
//! Cost on the data path: a store of the send time and, once per check, a
//! timer re-arm. Checks are evaluated on the peer's timer, at most about
//! twice a second while traffic flows.

use crate::time::Instant;
use std::time::Duration;

/// Floor of the wait before a silent path is probed.
pub const PROBE_FLOOR: Duration = Duration::from_millis(500);
/// Floor of the silence after which a path is suspect (issue 12's bound).
pub const SUSPECT_FLOOR: Duration = Duration::from_secs(1);
/// A suspect path is dead after this much more silence: long enough for
/// a few probes (a burst of loss is not an outage), short enough that the
/// ring repairs around it soon.
pub const DEAD_AFTER_SUSPECT: Duration = Duration::from_secs(3);
/// RTT assumed before one is measured.
const RTT_UNKNOWN: Duration = Duration::from_millis(100);

/// How long a sent message may go unanswered before the path is probed.
pub fn probe_after(rtt: Option<Duration>) -> Duration {
    PROBE_FLOOR.max(2 * rtt.unwrap_or(RTT_UNKNOWN))
}

/// How long before a silent path is suspect.
pub fn suspect_after(rtt: Option<Duration>) -> Duration {
    SUSPECT_FLOOR.max(4 * rtt.unwrap_or(RTT_UNKNOWN))
}

/// What the watch asks its owner to do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Nothing,
    /// Send a ping straight over the path.
    Probe,
    /// The path just became suspect: move traffic off it (and probe).
    Suspect,
    /// The path is dead: let the link go.
    Dead,
}

/// The state of one direct path, as seen from our side.
#[derive(Debug, Clone, Default)]
pub struct PathWatch {
    /// The last authenticated message from the peer over the path.
    heard: Option<Instant>,
    /// The last message we sent over it (expecting an answer).
    sent: Option<Instant>,
    /// An armed check: we sent at this time and wait to hear back.
    since: Option<Instant>,
    /// The first probe sent for the current check.
    probed: Option<Instant>,
    /// The last probe sent (probes go at most one per probe interval).
    last_probe: Option<Instant>,
    /// Since when the path is suspect.
    suspect: Option<Instant>,
}

impl PathWatch {
    /// We sent a message expecting an answer. Returns whether a check was
    /// armed (the owner's timer must be re-armed: its deadline moved
    /// earlier); once armed, further sends only store the time.
    #[inline]
    pub fn sent(&mut self, now: Instant) -> bool {
        self.sent = Some(now);
        if self.since.is_some() {
            return false;
        }
        self.since = Some(now);
        true
    }

    /// An authenticated message came straight over the path. Satisfies the
    /// current check (lazily: the timer finds it so), not a suspicion.
    #[inline]
    pub fn heard(&mut self, now: Instant) {
        self.heard = Some(now);
    }

    /// A pong to our ping came straight over the path: it carries our
    /// messages both ways. Returns whether it was suspect (now cleared).
    pub fn answered(&mut self, now: Instant) -> bool {
        self.heard = Some(now);
        self.since = None;
        self.probed = None;
        self.last_probe = None;
        self.suspect.take().is_some()
    }

    /// The peer sent us data over the overlay while we send straight to
    /// it: it may not hear us (or the data was in flight when its direct
    /// path formed). Returns whether to probe now; the check is armed, so
    /// an unanswered probe makes the path suspect as usual. At most one
    /// such probe per probe interval: it is evidence, not a verdict (taken
    /// as one, two sides with routed data in flight detoured each other
    /// back and forth).
    pub fn peer_detoured(&mut self, now: Instant) -> bool {
        let recent = self.last_probe.is_some_and(|p| now < p + PROBE_FLOOR);
        if self.suspect.is_some() || recent {
            return false;
        }
        self.since.get_or_insert(now);
        self.probed.get_or_insert(now);
        self.last_probe = Some(now);
        true
    }

    /// Whether traffic should keep off the path.
    #[inline]
    pub fn is_suspect(&self) -> bool {
        self.suspect.is_some()
    }

    /// Forgets everything (a new session, a new endpoint).
    pub fn reset(&mut self) {
        *self = PathWatch::default();
    }

    /// Whether the armed check was answered; if so, it is disarmed, or
    /// re-armed at our last send when that came after the answer (a flow
    /// going on: the next check starts from it).
    fn settle(&mut self) {
        let (Some(since), Some(heard)) = (self.since, self.heard) else {
            return;
        };
        if self.suspect.is_none() && heard >= since {
            self.probed = None;
            self.last_probe = None;
            self.since = self.sent.filter(|&s| s > heard);
        }
    }

    /// When the watch needs its owner's timer.
    pub fn deadline(&self, rtt: Option<Duration>) -> Option<Instant> {
        let since = self.since?;
        let probe = probe_after(rtt);
        if let Some(s) = self.suspect {
            let next_probe = self.last_probe.map_or(s, |p| p + probe);
            return Some(next_probe.min(s + DEAD_AFTER_SUSPECT));
        }
        Some(match self.probed {
            None => since + probe,
            Some(p) => (since + suspect_after(rtt)).max(p + probe),
        })
    }

    /// Runs the watch at `now` (its deadline, or any time).
    pub fn poll(&mut self, now: Instant, rtt: Option<Duration>) -> Verdict {
        self.settle();
        let Some(since) = self.since else {
            return Verdict::Nothing;
        };
        let probe = probe_after(rtt);
        if let Some(s) = self.suspect {
            if now >= s + DEAD_AFTER_SUSPECT {
                return Verdict::Dead;
            }
            if self.last_probe.map_or(true, |p| now >= p + probe) {
                self.last_probe = Some(now);
                return Verdict::Probe;
            }
            return Verdict::Nothing;
        }
        // Suspect once the first probe had its time to be answered (later
        // probes, say for data coming over the overlay, do not put it off).
        match self.probed {
            None if now >= since + probe => {
                self.probed = Some(now);
                self.last_probe = Some(now);
                Verdict::Probe
            }
            Some(p) if now >= since + suspect_after(rtt) && now >= p + probe => {
                self.suspect = Some(now);
                self.last_probe = Some(now);
                Verdict::Suspect
            }
            _ => Verdict::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    /// Polls at every deadline up to `until`, collecting the verdicts.
    fn run(w: &mut PathWatch, until: u64, rtt: Option<Duration>) -> Vec<(u64, Verdict)> {
        let mut out = Vec::new();
        while let Some(d) = w.deadline(rtt) {
            if d > ms(until) {
                break;
            }
            let v = w.poll(d, rtt);
            out.push((d.as_micros() / 1000, v));
            if v == Verdict::Dead {
                break;
            }
        }
        out
    }

    #[test]
    fn a_silent_path_is_probed_then_suspect_then_dead() {
        let mut w = PathWatch::default();
        assert!(w.sent(ms(1000)));
        assert!(!w.sent(ms(1010)), "armed once, not per packet");
        let v = run(&mut w, 10_000, Some(Duration::from_millis(1)));
        assert_eq!(
            v,
            [
                (1500, Verdict::Probe),
                (2000, Verdict::Suspect),
                (2500, Verdict::Probe),
                (3000, Verdict::Probe),
                (3500, Verdict::Probe),
                (4000, Verdict::Probe),
                (4500, Verdict::Probe),
                (5000, Verdict::Dead),
            ]
        );
        assert!(w.is_suspect());
    }

    #[test]
    fn slow_paths_get_rtt_scaled_bounds() {
        let rtt = Some(Duration::from_millis(400));
        let mut w = PathWatch::default();
        w.sent(ms(0));
        let v = run(&mut w, 2000, rtt);
        assert_eq!(v, [(800, Verdict::Probe), (1600, Verdict::Suspect)]);
    }

    #[test]
    fn a_flow_with_answers_is_never_suspect() {
        let mut w = PathWatch::default();
        let rtt = Some(Duration::from_millis(1));
        for t in (0..5000).step_by(10) {
            w.sent(ms(t));
            w.heard(ms(t + 1));
            if w.deadline(rtt).is_some_and(|d| d <= ms(t + 1)) {
                assert_eq!(w.poll(ms(t + 1), rtt), Verdict::Nothing);
            }
        }
        assert!(!w.is_suspect());
    }

    #[test]
    fn a_one_way_flow_is_kept_by_the_pong_to_its_probe() {
        let mut w = PathWatch::default();
        let rtt = Some(Duration::from_millis(1));
        w.sent(ms(0));
        for t in (10..3000).step_by(10) {
            w.sent(ms(t));
            if w.deadline(rtt).is_some_and(|d| d <= ms(t)) && w.poll(ms(t), rtt) == Verdict::Probe {
                // The peer sends nothing but the pong.
                assert!(!w.answered(ms(t + 1)));
            }
        }
        assert!(!w.is_suspect());
    }

    #[test]
    fn only_a_pong_clears_a_suspect_path() {
        let mut w = PathWatch::default();
        w.sent(ms(0));
        run(&mut w, 2000, None);
        assert!(w.is_suspect());
        // The peer's own packets still reach us (our direction is broken).
        w.heard(ms(2100));
        assert!(w.poll(ms(2100), None) != Verdict::Nothing || w.is_suspect());
        assert!(w.is_suspect());
        assert!(w.answered(ms(2200)));
        assert!(!w.is_suspect());
        assert_eq!(w.deadline(None), None, "nothing armed");
    }

    #[test]
    fn data_over_the_overlay_from_the_peer_has_us_probe() {
        let mut w = PathWatch::default();
        let rtt = Some(Duration::from_millis(1));
        assert!(w.peer_detoured(ms(100)));
        assert!(!w.peer_detoured(ms(110)), "one probe per interval");
        assert!(!w.is_suspect(), "evidence, not a verdict");
        // Answered: nothing more.
        w.answered(ms(101));
        assert_eq!(w.deadline(rtt), None);
        // Unanswered: suspect after the usual bound.
        assert!(w.peer_detoured(ms(1000)));
        assert_eq!(w.deadline(rtt), Some(ms(2000)));
        assert_eq!(w.poll(ms(2000), rtt), Verdict::Suspect);
    }
}
