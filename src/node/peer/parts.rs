//! The parts of a peer's state, one per concern. Each is plain data read
//! and written by the node module named on it; the link and path, whose
//! changes must be seen together, live in `path`.

use super::Pending;
use crate::buf::PacketBuf;
use crate::node::limiter::Bucket;
use crate::node::trust::ListSync;
use crate::node::watch::PathWatch;
use crate::time::{Instant, ShortDuration};
use crate::wire::endpoint::Endpoint;
use crate::wire::key::NodeKey;
use crate::wire::overlay::RelayCandidates;
use smallvec::SmallVec;
use std::net::SocketAddr;
use std::time::Duration;

/// Why we know the peer and whether we want it (`links`, `peers`).
pub(in crate::node) struct Role {
    /// Met through the overlay or a bootstrap, not configured.
    pub(in crate::node) dynamic: bool,
    /// Whether we want a link (configured peers always do).
    pub(in crate::node) wanted: bool,
    /// Reached through a bootstrap endpoint: a leaf link for the overlay.
    pub(in crate::node) leaf: bool,
    /// When we last closed its link (the overlay let it go): such a peer
    /// is forgotten sooner than one merely idle (`slot::EVICT_CLOSED`).
    pub(in crate::node) closed_at: Option<Instant>,
}

/// Where the peer can be reached directly, and the punch that looks for
/// it (`underlay`, `attempts`, `watch`).
#[derive(Default)]
pub(in crate::node) struct Reach {
    /// Where to send: configured, then updated by authenticated traffic
    /// (roaming).
    pub(in crate::node) endpoint: Option<Endpoint>,
    /// The endpoint authenticated traffic last came from directly: data
    /// goes straight to `endpoint` only if it is this one (with the
    /// overlay on; else it goes over the ring while a punch runs, so it
    /// never waits for the punch nor vanishes into a candidate that does
    /// not answer).
    pub(in crate::node) proven: Option<Endpoint>,
    /// Whether the direct path still answers (see `node::watch`).
    pub(in crate::node) watch: PathWatch,
    /// Endpoints to try when linking (local, reflexive and predicted ones,
    /// TCP): an init goes to all of them at once.
    pub(in crate::node) candidates: SmallVec<[Endpoint; 2]>,
    /// Only gossip (or a request passing through) named its candidates:
    /// handshakes to them are rationed (`limiter::Probes`).
    pub(in crate::node) heard: bool,
    /// A direct link is being punched while traffic takes another path
    /// (the ring or a tunnel) until the direct handshake completes.
    pub(in crate::node) punching: bool,
    /// When the last direct attempt gave up.
    pub(in crate::node) punch_failed: Option<Instant>,
    /// Our endpoint as this peer sees it.
    pub(in crate::node) observed: Option<SocketAddr>,
}

/// A part of a peer's state most peers never use (a tunnel plan, an
/// on-demand link's counters, written once VPN traffic goes to it): one
/// pointer until first written, so the ring's dozens of plain links do not
/// each carry it. Reads of an absent part see its blank value.
pub(in crate::node) struct Cold<T: Blank>(Option<Box<T>>);

/// The value an absent [`Cold`] part reads as.
pub(in crate::node) trait Blank: Default + 'static {
    const BLANK: &'static Self;
}

impl<T: Blank> Default for Cold<T> {
    fn default() -> Self {
        Cold(None)
    }
}

impl<T: Blank> Cold<T> {
    /// The part if it was ever written: changes that only clear it need
    /// not allocate it.
    pub(in crate::node) fn present_mut(&mut self) -> Option<&mut T> {
        self.0.as_deref_mut()
    }
}

impl<T: Blank> core::ops::Deref for Cold<T> {
    type Target = T;

    #[inline(always)]
    fn deref(&self) -> &T {
        self.0.as_deref().unwrap_or(T::BLANK)
    }
}

impl<T: Blank> core::ops::DerefMut for Cold<T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        self.0.get_or_insert_with(Box::default)
    }
}

/// A tunnel through a relay: the asking and choosing around it
/// (`relay`, `tunnel`). The relay in use is in the path.
#[derive(Default)]
pub(in crate::node) struct TunnelPlan {
    /// No direct path formed: a tunnel is wanted (asked for or in use).
    pub(in crate::node) wanted: bool,
    /// The relay we are linking to for this peer's tunnel.
    pub(in crate::node) linking_to: Option<NodeKey>,
    /// When we last asked this peer for a relay.
    pub(in crate::node) asked: Option<Instant>,
    /// When we chose a relay for the pair ourselves, answering its query
    /// while ours was out: settles crossed queries (see `relay`); cleared
    /// once the tunnel carries the peer's traffic.
    pub(in crate::node) chose: Option<Instant>,
    /// Relay queries sent without an answer (a dead peer is given up).
    pub(in crate::node) queries: u8,
    /// The other side's relay candidates and its RTTs to them, from its
    /// offer: what a tunnel could switch to once we measure ours.
    pub(in crate::node) offer: Option<Box<RelayCandidates>>,
    /// When a quiet tunnel last checked on its relay.
    pub(in crate::node) probed: Option<Instant>,
    /// When a tunnel next tries a direct punch.
    pub(in crate::node) direct_retry: Option<Instant>,
    /// When this peer failed as a relay for another (not offered again
    /// for a while).
    pub(in crate::node) failed_as_relay: Option<Instant>,
}

impl Blank for TunnelPlan {
    const BLANK: &'static TunnelPlan = &TunnelPlan {
        wanted: false,
        linking_to: None,
        asked: None,
        chose: None,
        queries: 0,
        offer: None,
        probed: None,
        direct_retry: None,
        failed_as_relay: None,
    };
}

/// An on-demand link asked for because VPN traffic flows (`ondemand`).
#[derive(Default)]
pub(in crate::node) struct Demand {
    /// We asked for an on-demand link (kept while VPN packets flow).
    pub(in crate::node) linked: bool,
    /// When we last asked for one.
    pub(in crate::node) asked: Option<Instant>,
    /// VPN packets sent in the current window, and its start.
    pub(in crate::node) packets: u16,
    pub(in crate::node) since: Instant,
}

impl Blank for Demand {
    const BLANK: &'static Demand = &Demand {
        linked: false,
        asked: None,
        packets: 0,
        since: Instant::ZERO,
    };
}

/// Handshakes under way with the peer and what they leave behind
/// (`handshakes`, `completion`, `attempts`).
#[derive(Default)]
pub(in crate::node) struct HandshakeState {
    pub(in crate::node) pending: Option<Box<Pending>>,
    /// Our init withdrawn for the peer's crossing one: its answer is
    /// expected and ignored, not counted as an unknown session.
    pub(in crate::node) withdrawn: Option<u32>,
    /// Newest init timestamp accepted from this peer (init replay guard).
    pub(in crate::node) last_init_timestamp: u64,
    /// Our answer to that init, for the copy of it that comes the other
    /// way (a punch sends each init directly and over the overlay).
    pub(in crate::node) answer: Option<Box<super::Answer>>,
    pub(in crate::node) last_handshake: Option<Instant>,
    /// Frames waiting for a session. Allocated only while something
    /// waits, never on the data path of a live session.
    pub(in crate::node) waiting: Vec<PacketBuf>,
}

/// What we last heard and sent, and round trips (`receive`, `send`).
#[derive(Default)]
pub(in crate::node) struct Liveness {
    /// Last VPN data sent to the peer (idle routed sessions lapse).
    pub(in crate::node) last_tx: Option<Instant>,
    pub(in crate::node) last_rx: Option<Instant>,
    pub(in crate::node) last_ping: Option<Instant>,
    /// Round trips in 32 bits (`rtt()`, `rtt_pinged()`): a peer entry
    /// is kept per member met, by the dozen on a ring node.
    rtt: Option<ShortDuration>,
    /// The first RTT a ping measured on this link (handshake RTTs of
    /// links made by a connect-to-me include the overlay route).
    rtt_pinged: Option<ShortDuration>,
    /// Links the last message from the peer crossed (1: direct).
    pub(in crate::node) rx_hops: u8,
    /// The last pong: when, its round trip, the links it crossed.
    pong: Option<(Instant, ShortDuration, u8)>,
}

impl Liveness {
    /// The latest round trip measured (a handshake's or a ping's).
    pub(in crate::node) fn rtt(&self) -> Option<Duration> {
        self.rtt.map(Duration::from)
    }

    pub(in crate::node) fn set_rtt(&mut self, rtt: Duration) {
        self.rtt = Some(rtt.into());
    }

    /// The first round trip a ping measured on this link.
    pub(in crate::node) fn rtt_pinged(&self) -> Option<Duration> {
        self.rtt_pinged.map(Duration::from)
    }

    /// A pong came back after `rtt`: the link's round trip now. Returns
    /// whether it is the first a ping measured.
    pub(in crate::node) fn ponged(&mut self, now: Instant, rtt: Duration) -> bool {
        let first = self.rtt_pinged.replace(rtt.into()).is_none();
        self.rtt = Some(rtt.into());
        self.pong = Some((now, rtt.into(), self.rx_hops));
        first
    }

    /// The last pong: when, its round trip, the links it crossed.
    pub(in crate::node) fn pong(&self) -> Option<(Instant, Duration, u8)> {
        self.pong.map(|(at, rtt, hops)| (at, rtt.into(), hops))
    }
}

/// Data counters shown by `status`.
#[derive(Default)]
pub(in crate::node) struct Traffic {
    pub(in crate::node) rx_bytes: u64,
    pub(in crate::node) tx_bytes: u64,
    pub(in crate::node) rx_packets: u64,
    pub(in crate::node) tx_packets: u64,
}

/// What this peer may have us do (`limiter`, `links`).
pub(in crate::node) struct Budgets {
    /// Overlay messages this peer may still send us.
    pub(in crate::node) overlay: Bucket,
    /// Bytes of others' routed data this link may have us forward.
    pub(in crate::node) transit: Bucket,
}

/// Certificate mode (`trust`).
#[derive(Default)]
pub(in crate::node) struct PeerTrust {
    /// The certificate the peer presented in its last handshake (what it
    /// may claim).
    pub(in crate::node) cert: Option<Box<crate::crypto::cert::Cert>>,
    /// Revocation list serials told and lists sent on this link.
    pub(in crate::node) lists: ListSync,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cold_part_is_allocated_only_when_written() {
        let mut plan: Cold<TunnelPlan> = Cold::default();
        assert!(!plan.wanted && plan.offer.is_none(), "absent reads blank");
        assert!(plan.present_mut().is_none());
        plan.queries = 2;
        assert_eq!(plan.present_mut().map(|p| p.queries), Some(2));
    }
}
