//! Per-peer link state: the session slots, the pending handshake and the
//! frames waiting for a session.

use super::config::{PeerConfig, Timers};
use super::limiter::{Bucket, OVERLAY_BURST};
use crate::buf::PacketBuf;
use crate::crypto::handshake::Initiator;
use crate::crypto::{NodeKey, Session};
use crate::time::Instant;
use crate::wire::endpoint::Endpoint;
use smallvec::SmallVec;
use std::net::SocketAddr;
use std::time::Duration;

/// Frames kept while a handshake runs: enough for a TCP SYN and its
/// retransmissions or a ping burst, small enough to bound memory.
pub const MAX_WAITING: usize = 16;
/// How long a closed link's sessions still accept messages: a little more
/// than a round trip on a slow path, so messages crossing the leave are
/// delivered rather than dropped as unknown sessions.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Handshake attempts after which waiting frames are given up.
pub const WAIT_ATTEMPTS: u32 = 3;
/// A replaced session is dropped once nothing has arrived on it for this
/// long (and its successor is this old): after a rekey only what was in
/// flight still comes on it. After crossed handshakes the peer may keep
/// sending on it; it then lives until it expires, as in WireGuard.
pub const PREVIOUS_KEEP: Duration = Duration::from_secs(10);
/// A routed session unused (no data either way) for this long is let go:
/// no more rekeys, and it expires with its keys.
pub const ROUTED_IDLE: Duration = Duration::from_secs(150);

/// An init we sent and are waiting to hear back on.
pub struct Pending {
    pub state: Option<Initiator>,
    pub local_index: u32,
    pub sent_at: Instant,
    pub next_retry: Instant,
    pub attempts: u32,
}

/// The answer to the newest init from a peer. The same init may arrive
/// twice, directly and over the overlay; each way is answered once, with
/// the same bytes (one session), so whichever arrives first is not refused
/// as a replay of the other.
pub struct Answer {
    pub timestamp: u64,
    /// Answered although its timestamp was not newer than the newest seen
    /// (the peer's clock went back, see `CLOCK_BACK_QUIET`): the local
    /// index of the session, which moves the replay guard back only once
    /// the peer has used it.
    pub provisional: Option<u32>,
    pub bytes: Vec<u8>,
    pub direct_sent: bool,
    pub overlay_sent: bool,
}

/// Link state shown by `ringvpn status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// A session exists and traffic was heard recently.
    Up,
    /// Handshaking.
    Connecting,
    /// No session and nothing under way (e.g. no endpoint known).
    Down,
}

impl LinkState {
    pub fn name(self) -> &'static str {
        match self {
            LinkState::Up => "up",
            LinkState::Connecting => "connecting",
            LinkState::Down => "down",
        }
    }
}

/// Three session slots, as in WireGuard: `current` sends; `next` is a
/// responder session not yet confirmed by the initiator's first message;
/// `previous` still receives what was in flight during a rekey.
#[derive(Default)]
/// Sessions are boxed: ~1.4 KiB each (two AEAD keys and a replay window),
/// so a peer without sessions costs a few hundred bytes, not 4 KiB. Boxes
/// are made per handshake, never per packet.
pub struct Sessions {
    pub current: Option<Box<Session>>,
    pub previous: Option<Box<Session>>,
    pub next: Option<Box<Session>>,
    /// The answered session `next` replaced, still unconfirmed: a peer with
    /// two inits in flight (a retry, or a link and a connect-to-me at once)
    /// may go on with either, and the one it completes must be found.
    pub next_alt: Option<Box<Session>>,
}

/// Which slot a received message matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Current,
    Previous,
    Next,
    NextAlt,
}

impl Sessions {
    pub fn find_mut(&mut self, index: u32) -> Option<(Slot, &mut Session)> {
        for (slot, s) in [
            (Slot::Current, &mut self.current),
            (Slot::Next, &mut self.next),
            (Slot::NextAlt, &mut self.next_alt),
            (Slot::Previous, &mut self.previous),
        ] {
            if let Some(s) = s.as_mut().filter(|s| s.local_index == index) {
                return Some((slot, s));
            }
        }
        None
    }

    /// Installs a session we initiated: it sends at once. Returns the index
    /// of the session pushed out, to unregister.
    pub fn install_initiated(&mut self, s: Session) -> Option<u32> {
        let evicted = self.previous.take().map(|p| p.local_index);
        self.previous = self.current.take();
        self.current = Some(Box::new(s));
        evicted
    }

    /// Installs a responder session in `next` (the one there moves to
    /// `next_alt`); returns the index evicted.
    pub fn install_responded(&mut self, s: Session) -> Option<u32> {
        let old = self.next.replace(Box::new(s))?;
        self.next_alt.replace(old).map(|n| n.local_index)
    }

    /// The initiator used an answered session (`slot` is `Next` or
    /// `NextAlt`): it becomes current. Returns the index evicted.
    pub fn promote(&mut self, slot: Slot) -> Option<u32> {
        let n = match slot {
            Slot::Next => self.next.take(),
            Slot::NextAlt => self.next_alt.take(),
            _ => None,
        }?;
        let evicted = self.previous.take().map(|p| p.local_index);
        self.previous = self.current.replace(n);
        evicted
    }

    /// Drops sessions older than `max_age`, and a replaced session once the
    /// current one is `PREVIOUS_KEEP` old; calls `gone` with each index.
    pub fn expire(&mut self, now: Instant, max_age: Duration, mut gone: impl FnMut(u32)) {
        if let (Some(cur), Some(prev)) = (&self.current, &self.previous) {
            if now >= prev.last_rx().max(cur.created) + PREVIOUS_KEEP {
                gone(prev.local_index);
                self.previous = None;
            }
        }
        for slot in [
            &mut self.current,
            &mut self.previous,
            &mut self.next,
            &mut self.next_alt,
        ] {
            if slot
                .as_ref()
                .is_some_and(|s| now.saturating_since(s.created) >= max_age)
            {
                gone(slot.take().map_or(0, |s| s.local_index));
            }
        }
    }

    /// Drops every session; calls `gone` with each index.
    pub fn clear(&mut self, mut gone: impl FnMut(u32)) {
        for slot in [
            &mut self.current,
            &mut self.previous,
            &mut self.next,
            &mut self.next_alt,
        ] {
            if let Some(s) = slot.take() {
                gone(s.local_index);
            }
        }
    }

    pub fn oldest_created(&self) -> Option<Instant> {
        [&self.current, &self.previous, &self.next, &self.next_alt]
            .iter()
            .filter_map(|s| s.as_ref().map(|s| s.created))
            .min()
    }
}

pub struct Peer {
    pub name: String,
    pub key: NodeKey,
    /// The peer's ring address (a hash of its key: computed once, not
    /// per routed packet).
    pub addr: crate::overlay::Addr,
    /// Met through the overlay or a bootstrap, not configured.
    pub dynamic: bool,
    /// Whether we want a link (configured peers always do).
    pub wanted: bool,
    /// Whether the overlay has been told the link is up.
    pub linked: bool,
    /// Reached through a bootstrap endpoint: a leaf link for the overlay.
    pub leaf: bool,
    /// The link was closed then: its sessions are kept for a short grace
    /// so that what the peer sent before it heard of the close still lands.
    pub closing_since: Option<Instant>,
    /// Where to send: configured, then updated by authenticated traffic (roaming).
    pub endpoint: Option<Endpoint>,
    /// The session travels over the overlay (routed to the peer's ring
    /// address, sealed end to end) rather than straight to `endpoint`: a
    /// VPN peer we have no direct link with. Such a session is not an
    /// overlay link, is not pinged, and lapses when the VPN stops using it.
    pub routed: bool,
    /// Last VPN data sent to the peer (idle routed sessions lapse).
    pub last_tx: Option<Instant>,
    /// The endpoint authenticated traffic last came from directly: data
    /// goes straight to `endpoint` only if it is this one (with the
    /// overlay on; else it goes over the ring while a punch runs, so it
    /// never waits for the punch nor vanishes into a candidate that does
    /// not answer).
    pub proven: Option<Endpoint>,
    /// Whether the direct path still answers (see `node::watch`).
    pub watch: super::watch::PathWatch,
    /// Endpoints to try when linking (local, reflexive and predicted ones,
    /// TCP): an init goes to all of them at once.
    pub candidates: SmallVec<[Endpoint; 8]>,
    /// Only gossip (or a request passing through) named its candidates:
    /// handshakes to them are rationed (`limiter::Probes`).
    pub heard: bool,
    /// A direct link is being punched for a routed peer (its traffic stays
    /// on the overlay until the direct handshake completes).
    pub punching: bool,
    /// When the last direct attempt gave up.
    pub punch_failed: Option<Instant>,
    /// A tunnel edge: this link runs through our link to that peer.
    pub relay: Option<super::PeerIdx>,
    /// Something from the peer came through the tunnel's relay: it carries
    /// the pair (the relay links both). Until then data takes the overlay
    /// and only probes go through the relay, as with an unproven endpoint.
    pub relay_proven: bool,
    /// No direct path formed: a tunnel is wanted (asked for or in use).
    pub tunnel_wanted: bool,
    /// Links the last message from the peer crossed (1: direct).
    pub rx_hops: u8,
    /// The first RTT a ping measured on this link (handshake RTTs of
    /// links made by a connect-to-me include the overlay route).
    pub rtt_pinged: Option<Duration>,
    /// The other side's relay candidates and its RTTs to them, from its
    /// offer: what a tunnel could switch to once we measure ours.
    pub relay_offer: Option<Box<crate::wire::overlay::RelayCandidates>>,
    /// When a quiet tunnel last checked on its relay.
    pub relay_probe: Option<Instant>,
    /// When this link failed as a relay (not offered again for a while).
    pub relay_failed: Option<Instant>,
    /// Relay queries sent without an answer (a dead peer is given up).
    pub relay_queries: u8,
    /// The relay we are linking to for this peer's tunnel.
    pub relay_wanted: Option<NodeKey>,
    /// When we last asked this peer for a relay.
    pub relay_asked: Option<Instant>,
    /// When we chose a relay for the pair ourselves, answering its query
    /// while ours was out: settles crossed queries (see `relay`); cleared
    /// once the tunnel carries the peer's traffic.
    pub relay_chose: Option<Instant>,
    /// When a tunnel next tries a direct punch.
    pub direct_retry: Option<Instant>,
    /// We asked for an on-demand link (kept while VPN packets flow).
    pub ondemand: bool,
    /// When we last asked for one.
    pub ondemand_asked: Option<Instant>,
    /// VPN packets sent in the current on-demand window, and its start.
    pub demand: u16,
    pub demand_since: Instant,
    /// Revocation list serials told and lists sent on this link.
    pub lists: super::trust::ListSync,
    pub sessions: Sessions,
    pub pending: Option<Pending>,
    /// Our init withdrawn for the peer's crossing one: its answer is
    /// expected and ignored, not counted as an unknown session.
    pub withdrawn: Option<u32>,
    /// Newest init timestamp accepted from this peer (init replay guard).
    pub last_init_timestamp: u64,
    /// Our answer to that init, for the copy of it that comes the other
    /// way (a punch sends each init directly and over the overlay).
    pub answer: Option<Box<Answer>>,
    pub last_handshake: Option<Instant>,
    pub last_rx: Option<Instant>,
    pub last_ping: Option<Instant>,
    pub rtt: Option<Duration>,
    /// Our endpoint as this peer sees it.
    pub observed: Option<SocketAddr>,
    /// Certificate mode: the certificate the peer presented in its last
    /// handshake (what it may claim).
    pub cert: Option<Box<crate::crypto::cert::Cert>>,
    /// Allocated only while something waits (a handshake is under way),
    /// never on the data path of a live session.
    pub waiting: Vec<PacketBuf>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
    /// Overlay messages this peer may still send us (see limiter).
    pub overlay_budget: Bucket,
    /// Bytes of others' routed data this link may have us forward.
    pub transit: Bucket,
}

impl Peer {
    pub fn new(cfg: &PeerConfig) -> Peer {
        Peer {
            name: cfg.name.clone(),
            key: cfg.key,
            addr: crate::overlay::Addr::of_key(&cfg.key),
            dynamic: false,
            wanted: true,
            linked: false,
            leaf: false,
            closing_since: None,
            endpoint: cfg.endpoint.map(Endpoint::udp),
            routed: false,
            last_tx: None,
            watch: Default::default(),
            proven: None,
            cert: None,
            candidates: SmallVec::new(),
            heard: false,
            punching: false,
            punch_failed: None,
            relay: None,
            relay_proven: false,
            tunnel_wanted: false,
            relay_probe: None,
            relay_failed: None,
            rtt_pinged: None,
            relay_offer: None,
            relay_queries: 0,
            rx_hops: 0,
            relay_wanted: None,
            relay_asked: None,
            relay_chose: None,
            direct_retry: None,
            ondemand: false,
            ondemand_asked: None,
            lists: Default::default(),
            demand: 0,
            demand_since: Instant::ZERO,
            sessions: Sessions::default(),
            pending: None,
            withdrawn: None,
            last_init_timestamp: 0,
            answer: None,
            last_handshake: None,
            last_rx: None,
            last_ping: None,
            rtt: None,
            observed: None,
            waiting: Vec::new(),
            rx_bytes: 0,
            tx_bytes: 0,
            rx_packets: 0,
            tx_packets: 0,
            overlay_budget: Bucket::full(OVERLAY_BURST, Instant::ZERO),
            transit: Bucket::full(super::links::TRANSIT_BYTES_PER_S, Instant::ZERO),
        }
    }

    /// When a tunnel next looks at its relay (every `RELAY_CHECK_EVERY`;
    /// the data path never moves this deadline).
    pub fn relay_check_at(&self) -> Option<Instant> {
        self.relay?;
        Some(
            self.relay_probe
                .map_or(Instant::ZERO, |t| t + super::relay::RELAY_CHECK_EVERY),
        )
    }

    /// When a wanted tunnel that has no relay yet asks again.
    pub fn tunnel_retry_at(&self) -> Option<Instant> {
        if !self.tunnel_wanted || self.relay.is_some() {
            return None;
        }
        self.relay_asked.map(|t| t + super::relay::QUERY_RETRY)
    }

    /// When an on-demand link with no VPN packets sent goes idle.
    pub fn ondemand_idle_at(&self, timers: &Timers) -> Option<Instant> {
        self.ondemand
            .then(|| self.last_tx.unwrap_or(Instant::ZERO) + timers.ondemand_idle)
    }

    /// How traffic reaches the peer: "direct", "relayed" or "overlay".
    pub fn path_name(&self) -> &'static str {
        // Data takes the overlay while the path is suspect (`watch`) or a
        // new tunnel is not proven yet.
        let detour = self.watch.is_suspect();
        match (self.relay, self.linked, self.routed) {
            (Some(_), _, _) if self.relay_proven && !detour => "relayed",
            (Some(_), _, _) => "overlay",
            (None, true, _) if detour => "overlay",
            (None, true, _) => "direct",
            (None, false, true) => "overlay",
            // A VPN peer with a direct session that is not (or no longer)
            // an overlay link; or none at all.
            (None, false, false) if self.sessions.current.is_some() => "direct",
            _ => "none",
        }
    }

    pub fn state(&self, now: Instant, timers: &Timers) -> LinkState {
        let heard = self
            .last_rx
            .is_some_and(|t| now.saturating_since(t) < timers.dead_after);
        if self.sessions.current.is_some() && heard {
            LinkState::Up
        } else if self.pending.is_some() {
            LinkState::Connecting
        } else {
            LinkState::Down
        }
    }

    /// Whether handshakes can go anywhere: an endpoint, or the overlay.
    pub fn reachable(&self) -> bool {
        self.endpoint.is_some() || self.routed
    }

    /// When a routed session goes idle (no data either way since).
    pub fn idle_at(&self) -> Option<Instant> {
        if !self.routed || !self.wanted {
            return None;
        }
        let last = self.last_rx.max(self.last_tx)?;
        Some(last + ROUTED_IDLE)
    }

    /// Should we start a handshake now (absent a pending one)?
    pub fn needs_handshake(&self, now: Instant, timers: &Timers) -> bool {
        if !self.reachable() || !self.wanted {
            return false;
        }
        let Some(cur) = &self.sessions.current else {
            // We answered the peer's handshake and wait for its first
            // message on it; starting our own would only cross the two.
            return !self
                .sessions
                .next
                .as_ref()
                .is_some_and(|n| now.saturating_since(n.created) < timers.handshake_retry_max);
        };
        let age = now.saturating_since(cur.created);
        let rekey_at = Self::rekey_age(cur.initiator, timers);
        age >= rekey_at || cur.sent() >= timers.rekey_after_messages || self.is_silent(now, timers)
    }

    /// Session age at which to rekey. The initiator rekeys on time; the
    /// responder only if the initiator failed to, so the two rarely race.
    fn rekey_age(initiator: bool, timers: &Timers) -> std::time::Duration {
        if initiator {
            timers.rekey_after_time
        } else {
            timers.rekey_after_time + timers.keepalive_interval
        }
    }

    /// Nothing heard for `dead_after` since the session began or since the
    /// last message: the peer restarted, moved, or is gone. (A direct path
    /// that stops answering the traffic we send is found much sooner, by
    /// its watch: `node::watch`.)
    pub fn is_silent(&self, now: Instant, timers: &Timers) -> bool {
        let Some(cur) = &self.sessions.current else {
            return false;
        };
        if self.routed {
            return false; // the overlay's links are checked, not this path
        }
        let heard = self.last_rx.map_or(cur.created, |t| t.max(cur.created));
        now.saturating_since(heard) >= timers.dead_after
    }

    /// Whether we send straight to the peer's endpoint (not routed over the
    /// overlay, not through a relay).
    pub fn direct_path(&self) -> bool {
        self.relay.is_none() && self.endpoint.is_some() && self.watched_path()
    }

    /// Whether we send to the peer over a path of our own choosing,
    /// straight or through a tunnel's relay (not routed hop by hop over
    /// the ring): the path its watch looks after.
    pub fn watched_path(&self) -> bool {
        !self.routed
            && (self.relay.is_some() || self.endpoint.is_some())
            && self.sessions.current.is_some()
            && self.closing_since.is_none()
    }

    /// When to ping: a keepalive interval after both our last ping and the
    /// last thing we heard. A link that carries traffic is never pinged,
    /// and one side's ping keeps the other side quiet.
    pub fn ping_due(&self, timers: &Timers) -> Option<Instant> {
        if self.closing_since.is_some() || self.routed {
            return None;
        }
        let cur = self.sessions.current.as_ref()?;
        let heard = self.last_rx.map_or(cur.created, |t| t.max(cur.created));
        let pinged = self.last_ping.unwrap_or(cur.created);
        Some(heard.max(pinged) + timers.keepalive_interval)
    }

    /// The earliest moment this peer's timers need attention.
    pub fn deadline(&self, timers: &Timers) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut at = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        if let Some(p) = &self.pending {
            at(p.next_retry);
        }
        if let Some(t) = self.closing_since {
            at(t + CLOSE_GRACE);
        }
        if let Some(t) = self.sessions.oldest_created() {
            at(t + timers.reject_after_time);
        }
        if let (Some(cur), Some(prev)) = (&self.sessions.current, &self.sessions.previous) {
            at(prev.last_rx().max(cur.created) + PREVIOUS_KEEP);
        }
        if let Some(t) = self.idle_at() {
            at(t);
        }
        if let (Some(_), Some(t)) = (self.relay, self.direct_retry) {
            at(t);
        }
        if let Some(t) = self.ondemand_idle_at(timers) {
            at(t);
        }
        if let Some(t) = self.tunnel_retry_at() {
            at(t);
        }
        if let Some(t) = self.relay_check_at() {
            at(t);
        }
        if let Some(cur) = &self.sessions.current {
            if let Some(t) = self.ping_due(timers) {
                at(t);
            }
            if let Some(t) = self
                .watch
                .deadline(self.rtt)
                .filter(|_| self.watched_path())
            {
                at(t);
            }
            if self.pending.is_none() && self.wanted {
                at(cur.created + Self::rekey_age(cur.initiator, timers));
                if !self.routed {
                    let heard = self.last_rx.map_or(cur.created, |t| t.max(cur.created));
                    at(heard + timers.dead_after);
                }
            }
        } else if self.pending.is_none() && self.reachable() && self.wanted {
            // Now, or once an unconfirmed answered session has waited enough.
            at(self
                .sessions
                .next
                .as_ref()
                .map_or(Instant::ZERO, |n| n.created + timers.handshake_retry_max));
        }
        next
    }
}

#[cfg(test)]
mod size_tests {
    /// A member we talk to over the overlay costs its peer entry and one
    /// session (docs/PERFORMANCE: memory per routed session); `max-peers`
    /// is sized with it.
    #[test]
    fn a_routed_peer_costs_under_3_kib() {
        let peer = std::mem::size_of::<super::Peer>();
        let session = std::mem::size_of::<crate::crypto::session::Session>();
        eprintln!("peer {peer} B + session {session} B");
        assert!(peer + session <= 3 * 1024, "{peer} + {session}");
    }
}
