//! When each peer's timers next need attention, without visiting every peer.
//!
//! A peer's deadline (handshake retry, ping, rekey, dead link, expiry) is
//! kept in a min-heap. Entries are lazy: a deadline that moves *later* (a
//! packet arrived, so the ping can wait) is not re-pushed; the old, earlier
//! entry fires, the peer's timers find nothing to do, and the real deadline
//! is pushed then. So the data path never touches the heap. A deadline that
//! may move *earlier* (a handshake started, a session installed, a link
//! closed) must be announced with [`Wakeups::touch`]; the node re-arms the
//! touched peers at the end of every input. The invariant, checked in debug
//! builds after every input: each peer's armed entry is no later than its
//! real deadline.

use super::PeerIdx;
use crate::time::Instant;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

#[derive(Default)]
pub struct Wakeups {
    heap: BinaryHeap<Reverse<(Instant, u16)>>,
    /// Per peer: the time of its valid heap entry, if any.
    armed: Vec<Option<Instant>>,
    /// Peers whose deadline may have moved earlier since the last re-arm.
    touched: Vec<u16>,
    is_touched: Vec<bool>,
}

impl Wakeups {
    /// Peer `p`'s deadline may have moved earlier.
    pub fn touch(&mut self, p: PeerIdx) {
        let i = usize::from(p.0);
        if i >= self.is_touched.len() {
            self.is_touched.resize(i + 1, false);
            self.armed.resize(i + 1, None);
        }
        if !self.is_touched[i] {
            self.is_touched[i] = true;
            self.touched.push(p.0);
        }
    }

    /// Peer `p` is gone: nothing is armed for it any more.
    pub fn forget(&mut self, p: PeerIdx) {
        let i = usize::from(p.0);
        if let Some(a) = self.armed.get_mut(i) {
            *a = None;
        }
        if self.is_touched.get(i).copied().unwrap_or(false) {
            self.is_touched[i] = false;
            self.touched.retain(|&q| q != p.0);
        }
    }

    /// Re-arms the touched peers; `deadline` gives a peer's real deadline.
    pub fn rearm(&mut self, mut deadline: impl FnMut(PeerIdx) -> Option<Instant>) {
        for p in self.touched.drain(..) {
            let i = usize::from(p);
            self.is_touched[i] = false;
            let Some(d) = deadline(PeerIdx(p)) else {
                continue;
            };
            if self.armed[i].map_or(true, |a| d < a) {
                self.armed[i] = Some(d);
                self.heap.push(Reverse((d, p)));
            }
        }
        // Stale entries leave as time passes; this only bounds a burst.
        if self.heap.len() > 4 * self.armed.len() + 64 {
            self.heap = self
                .armed
                .iter()
                .enumerate()
                .filter_map(|(i, a)| a.map(|t| Reverse((t, i as u16))))
                .collect();
        }
    }

    /// The earliest armed deadline (possibly a stale entry: an early
    /// wake-up that finds nothing to do, never a late one).
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((t, _))| *t)
    }

    /// A peer whose armed deadline is due at `now`, disarmed: the caller
    /// runs its timers and touches it so its next deadline is armed.
    pub fn pop_due(&mut self, now: Instant) -> Option<PeerIdx> {
        while let Some(&Reverse((t, p))) = self.heap.peek() {
            if t > now {
                return None;
            }
            self.heap.pop();
            let armed = &mut self.armed[usize::from(p)];
            if *armed == Some(t) {
                *armed = None;
                return Some(PeerIdx(p));
            }
        }
        None
    }

    /// Debug check of the invariant: no peer's real deadline is earlier
    /// than what is armed for it (a missing `touch` would make it so).
    #[cfg(any(test, debug_assertions))]
    pub fn check(&self, mut deadline: impl FnMut(PeerIdx) -> Option<Instant>, peers: usize) {
        for i in 0..peers {
            if let Some(d) = deadline(PeerIdx(i as u16)) {
                let armed = self.armed.get(i).copied().flatten();
                assert!(
                    armed.is_some_and(|a| a <= d),
                    "peer {i}: deadline {d:?} but armed {armed:?} (a state change without touch)"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    #[test]
    fn earlier_deadlines_rearm_later_ones_wait_for_the_old_entry() {
        let mut w = Wakeups::default();
        let mut real = [Some(t(100)), Some(t(50))];
        w.touch(PeerIdx(0));
        w.touch(PeerIdx(1));
        w.rearm(|p| real[usize::from(p.0)]);
        assert_eq!(w.next(), Some(t(50)));
        // Peer 1's deadline moves later without a touch: the old entry fires.
        real[1] = Some(t(80));
        assert_eq!(w.pop_due(t(49)), None);
        assert_eq!(w.pop_due(t(50)), Some(PeerIdx(1)));
        w.touch(PeerIdx(1));
        w.rearm(|p| real[usize::from(p.0)]);
        assert_eq!(w.next(), Some(t(80)));
        // Peer 0's moves earlier: touched, re-armed; its old entry is stale.
        real[0] = Some(t(60));
        w.touch(PeerIdx(0));
        w.rearm(|p| real[usize::from(p.0)]);
        w.check(|p| real[usize::from(p.0)], 2);
        assert_eq!(w.pop_due(t(100)), Some(PeerIdx(0)));
        assert_eq!(w.pop_due(t(100)), Some(PeerIdx(1)));
        assert_eq!(w.pop_due(t(100)), None, "the stale entry at 100 is skipped");
        assert_eq!(w.next(), None);
    }

    #[test]
    #[should_panic(expected = "without touch")]
    fn the_check_catches_a_missing_touch() {
        let mut w = Wakeups::default();
        let mut real = Some(t(100));
        w.touch(PeerIdx(0));
        w.rearm(|_| real);
        real = Some(t(10));
        w.check(|_| real, 1);
    }
}
