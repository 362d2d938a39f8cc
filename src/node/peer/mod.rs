//! One member we know: its identity, its link and path (the state
//! machines in `path`), and the state each concern keeps about it, in
//! small parts owned by the modules that use them: direct reachability
//! and punching (`Reach`), tunnels (`TunnelPlan`), on-demand links
//! (`Demand`), handshakes (`HandshakeState`, `Sessions`), liveness and
//! round trips (`Liveness`), counters and budgets.

mod parts;
mod path;
mod sessions;
mod slot;

pub(super) use parts::{
    Budgets, Cold, Demand, HandshakeState, Liveness, PeerTrust, Reach, Role, Traffic, TunnelPlan,
};
pub(super) use path::{Link, Path};
pub use sessions::{Answer, Pending, Sessions, Slot};
pub(super) use slot::{PeerSlot, Tombstones, EVICT_CLOSED, EVICT_IDLE};

use super::config::{PeerConfig, Timers};
use super::limiter::{Bucket, OVERLAY_BURST};
use crate::crypto::NodeKey;
use crate::time::Instant;
use crate::wire::addr::Addr;
use crate::wire::endpoint::Endpoint;
use std::time::Duration;

/// Frames kept while a handshake runs: enough for a TCP SYN and its
/// retransmissions or a ping burst, small enough to bound memory.
pub const MAX_WAITING: usize = 16;
/// How long a closed link's sessions still accept messages: more than a
/// round trip on a slow path (a satellite hop is ~0.6 s), so messages
/// crossing the leave are delivered rather than dropped as unknown
/// sessions; no longer, as a join closes its surplus links by the dozen
/// and each holds its peer entry until then.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);
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

/// A peer's name as shown (see [`Peer::name`]).
#[derive(Clone, Copy)]
pub enum PeerName<'a> {
    /// Configured, or the certificate's.
    Named(&'a str),
    /// Neither: the ring address.
    Addr(Addr),
}

impl core::fmt::Display for PeerName<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PeerName::Named(n) => f.write_str(n),
            PeerName::Addr(a) => a.fmt(f),
        }
    }
}

impl PartialEq<&str> for PeerName<'_> {
    fn eq(&self, other: &&str) -> bool {
        match self {
            PeerName::Named(n) => n == other,
            PeerName::Addr(a) => a.to_string() == *other,
        }
    }
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

/// A member we know. Link and path are private: they change only through
/// the transitions in `path`.
pub struct Peer {
    /// The name configured for the peer (see [`Peer::name`]).
    given_name: Option<Box<str>>,
    pub(super) key: NodeKey,
    /// The peer's ring address (a hash of its key: computed once, not
    /// per routed packet).
    pub(super) addr: Addr,
    pub(super) role: Role,
    link: Link,
    path: Path,
    pub(super) reach: Reach,
    pub(super) tunnel: Cold<TunnelPlan>,
    pub(super) demand: Cold<Demand>,
    pub(super) sessions: Sessions,
    pub(super) hs: HandshakeState,
    pub(super) live: Liveness,
    pub(super) traffic: Traffic,
    pub(super) budget: Budgets,
    pub(super) trust: PeerTrust,
}

impl Peer {
    pub fn new(cfg: &PeerConfig) -> Peer {
        Peer {
            given_name: (!cfg.name.is_empty()).then(|| cfg.name.as_str().into()),
            key: cfg.key,
            addr: Addr::of_key(&cfg.key),
            role: Role {
                dynamic: false,
                wanted: true,
                leaf: false,
                closed_at: None,
            },
            link: Link::Down,
            path: Path::Direct,
            reach: Reach {
                endpoint: cfg.endpoint.map(Endpoint::udp),
                ..Reach::default()
            },
            tunnel: Cold::default(),
            demand: Cold::default(),
            sessions: Sessions::default(),
            hs: HandshakeState::default(),
            live: Liveness::default(),
            traffic: Traffic::default(),
            budget: Budgets {
                overlay: Bucket::full(OVERLAY_BURST, Instant::ZERO),
                transit: Bucket::full(super::links::TRANSIT_BYTES_PER_S, Instant::ZERO),
            },
            trust: PeerTrust::default(),
        }
    }

    /// When a tunnel next looks at its relay (every `RELAY_CHECK_EVERY`;
    /// the data path never moves this deadline).
    pub fn relay_check_at(&self) -> Option<Instant> {
        self.relay()?;
        Some(
            self.tunnel
                .probed
                .map_or(Instant::ZERO, |t| t + super::relay::RELAY_CHECK_EVERY),
        )
    }

    /// When a wanted tunnel that has no relay yet asks again.
    pub fn tunnel_retry_at(&self) -> Option<Instant> {
        if !self.tunnel.wanted || self.relay().is_some() {
            return None;
        }
        self.tunnel.asked.map(|t| t + super::relay::QUERY_RETRY)
    }

    /// When an on-demand link with no VPN packets sent goes idle.
    pub fn ondemand_idle_at(&self, timers: &Timers) -> Option<Instant> {
        self.demand
            .linked
            .then(|| self.live.last_tx.unwrap_or(Instant::ZERO) + timers.ondemand_idle)
    }

    /// The certificate the peer presented (checked): kept, and its name
    /// becomes the peer's where we had only its ring address to call it
    /// by (configured peers keep the config's name).
    pub fn take_cert(&mut self, cert: &crate::crypto::cert::Cert) {
        self.trust.cert = Some(Box::new(cert.clone()));
    }

    /// How the peer is called in logs and status: the name configured for
    /// it, else the one its certificate gives, else its ring address.
    /// Built when shown: the dozens of peers a ring node meets hold no
    /// string of their own.
    pub fn name(&self) -> PeerName<'_> {
        if let Some(n) = self.given_name() {
            return PeerName::Named(n);
        }
        match &self.trust.cert {
            Some(c) if !c.name.is_empty() => PeerName::Named(&c.name),
            _ => PeerName::Addr(self.addr),
        }
    }

    /// The name configured for the peer, if any.
    pub fn given_name(&self) -> Option<&str> {
        self.given_name.as_deref()
    }

    /// How traffic reaches the peer: "direct", "relayed" or "overlay".
    pub fn path_name(&self) -> &'static str {
        // Data takes the overlay while the path is suspect (`watch`) or a
        // new tunnel is not proven yet.
        let detour = self.reach.watch.is_suspect();
        match self.path {
            Path::Tunnel { proven: true, .. } if !detour => "relayed",
            Path::Tunnel { .. } => "overlay",
            _ if self.is_linked() && detour => "overlay",
            _ if self.is_linked() => "direct",
            Path::Routed => "overlay",
            // A VPN peer with a direct session that is not (or no longer)
            // an overlay link; or none at all.
            Path::Direct if self.sessions.current.is_some() => "direct",
            Path::Direct => "none",
        }
    }

    pub fn state(&self, now: Instant, timers: &Timers) -> LinkState {
        let heard = self
            .live
            .last_rx
            .is_some_and(|t| now.saturating_since(t) < timers.dead_after);
        if self.sessions.current.is_some() && heard {
            LinkState::Up
        } else if self.hs.pending.is_some() {
            LinkState::Connecting
        } else {
            LinkState::Down
        }
    }

    /// Whether handshakes can go anywhere: an endpoint, or the overlay.
    pub fn reachable(&self) -> bool {
        self.reach.endpoint.is_some() || self.is_routed()
    }

    /// When a routed session goes idle (no data either way since).
    pub fn idle_at(&self) -> Option<Instant> {
        if !self.is_routed() || !self.role.wanted {
            return None;
        }
        let last = self.live.last_rx.max(self.live.last_tx)?;
        Some(last + ROUTED_IDLE)
    }

    /// Should we start a handshake now (absent a pending one)?
    pub fn needs_handshake(&self, now: Instant, timers: &Timers) -> bool {
        if !self.reachable() || !self.role.wanted {
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
        if self.is_routed() {
            return false; // the overlay's links are checked, not this path
        }
        let heard = self
            .live
            .last_rx
            .map_or(cur.created, |t| t.max(cur.created));
        now.saturating_since(heard) >= timers.dead_after
    }

    /// Whether we send straight to the peer's endpoint (not routed over the
    /// overlay, not through a relay).
    pub fn direct_path(&self) -> bool {
        self.relay().is_none() && self.reach.endpoint.is_some() && self.watched_path()
    }

    /// Whether we send to the peer over a path of our own choosing,
    /// straight or through a tunnel's relay (not routed hop by hop over
    /// the ring): the path its watch looks after.
    pub fn watched_path(&self) -> bool {
        !self.is_routed()
            && (self.relay().is_some() || self.reach.endpoint.is_some())
            && self.sessions.current.is_some()
            && self.closing_since().is_none()
    }

    /// When to ping: a keepalive interval after both our last ping and the
    /// last thing we heard. A link that carries traffic is never pinged,
    /// and one side's ping keeps the other side quiet.
    pub fn ping_due(&self, timers: &Timers) -> Option<Instant> {
        if self.closing_since().is_some() || self.is_routed() {
            return None;
        }
        let cur = self.sessions.current.as_ref()?;
        let heard = self
            .live
            .last_rx
            .map_or(cur.created, |t| t.max(cur.created));
        let pinged = self.live.last_ping.unwrap_or(cur.created);
        Some(heard.max(pinged) + timers.keepalive_interval)
    }

    /// Whether we know the peer at `ip` (its endpoint or a candidate),
    /// on any port.
    pub fn knows_address(&self, ip: std::net::IpAddr) -> bool {
        self.reach
            .candidates
            .iter()
            .chain(&self.reach.endpoint)
            .any(|e| e.addr.ip() == ip)
    }

    /// When this peer may be forgotten: a dynamic peer we no longer
    /// want, with no link, session, handshake, tunnel or waiting frame,
    /// once nothing has come or gone for [`EVICT_IDLE`] ([`EVICT_CLOSED`]
    /// if we closed its link and no handshake came since). Configured
    /// peers are never forgotten.
    pub fn evict_at(&self) -> Option<Instant> {
        let busy = !self.role.dynamic
            || self.role.wanted
            || self.is_linked()
            || self.closing_since().is_some()
            || self.hs.pending.is_some()
            || self.hs.withdrawn.is_some()
            || !self.hs.waiting.is_empty()
            || self.sessions.any()
            || self.demand.linked
            || self.tunnel.wanted
            || self.relay().is_some();
        if busy {
            return None;
        }
        let last = [self.live.last_rx, self.live.last_tx, self.hs.last_handshake]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(Instant::ZERO);
        let let_go = self
            .role
            .closed_at
            .is_some_and(|c| !matches!(self.hs.last_handshake, Some(h) if h > c));
        Some(last + if let_go { EVICT_CLOSED } else { EVICT_IDLE })
    }

    /// The earliest moment this peer's timers need attention.
    pub fn deadline(&self, timers: &Timers) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut at = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        if let Some(t) = self.evict_at() {
            at(t);
        }
        if let Some(p) = &self.hs.pending {
            at(p.next_retry);
        }
        if let Some(t) = self.closing_since() {
            at(t + CLOSE_GRACE);
        }
        if let Some(t) = self.sessions.oldest_created() {
            at(t + timers.reject_after_time);
        }
        if let Some(cur) = &self.sessions.current {
            for old in [&self.sessions.previous, &self.sessions.older]
                .into_iter()
                .flatten()
            {
                at(old.last_rx().max(cur.created) + PREVIOUS_KEEP);
            }
        }
        if let Some(t) = self.idle_at() {
            at(t);
        }
        if let (Some(_), Some(t)) = (self.relay(), self.tunnel.direct_retry) {
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
                .reach
                .watch
                .deadline(self.live.rtt())
                .filter(|_| self.watched_path())
            {
                at(t);
            }
            if self.hs.pending.is_none() && self.role.wanted {
                at(cur.created + Self::rekey_age(cur.initiator, timers));
                if !self.is_routed() {
                    let heard = self
                        .live
                        .last_rx
                        .map_or(cur.created, |t| t.max(cur.created));
                    at(heard + timers.dead_after);
                }
            }
        } else if self.hs.pending.is_none() && self.reachable() && self.role.wanted {
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
mod name_tests {
    use super::*;
    use crate::node::PeerConfig;

    /// A configured peer keeps its name; a dynamic one is called by its
    /// certificate's name once it has one, by its ring address before.
    #[test]
    fn a_peer_is_named_by_config_then_certificate_then_address() {
        let key = NodeKey([7; 32]);
        let cfg = |name: &str| PeerConfig {
            name: name.into(),
            key,
            endpoint: None,
        };
        let mut dynamic = Peer::new(&cfg(""));
        dynamic.role.dynamic = true;
        let addr = Addr::of_key(&key).to_string();
        assert_eq!(dynamic.name().to_string(), addr);
        assert!(dynamic.name() == addr.as_str() && dynamic.given_name().is_none());
        let cert = crate::crypto::cert::Cert {
            kind: 0,
            subject: key,
            issuer: key,
            not_before: 0,
            not_after: 0,
            network: "office".into(),
            name: "laptop".into(),
            prefixes: Vec::new(),
            groups: Vec::new(),
            routes: Vec::new(),
            signature: [0; crate::crypto::cert::SIG_LEN],
        };
        dynamic.take_cert(&cert);
        assert!(dynamic.name() == "laptop");
        let mut configured = Peer::new(&cfg("printer"));
        configured.take_cert(&cert);
        assert!(configured.name() == "printer" && configured.given_name() == Some("printer"));
    }

    #[test]
    fn a_round_trip_is_kept_to_the_microsecond_and_saturates() {
        let mut live = Liveness::default();
        live.set_rtt(Duration::from_micros(123_456));
        assert_eq!(live.rtt(), Some(Duration::from_micros(123_456)));
        let t = Instant::from_micros(5_000_000);
        assert!(
            live.ponged(t, Duration::from_secs(1 << 20)),
            "the first pong"
        );
        assert_eq!(live.rtt(), Some(Duration::from_micros(u64::from(u32::MAX))));
        assert!(!live.ponged(t, Duration::from_millis(20)));
        assert_eq!(live.pong().map(|p| p.1), Some(Duration::from_millis(20)));
        assert_eq!(live.rtt_pinged(), Some(Duration::from_millis(20)));
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
