//! The sans-IO node: the whole protocol, driven by its caller.
//!
//! Inputs are `handle_*(now, …)` calls: a frame read from the TAP, a datagram
//! received from an endpoint, or a timer. Outputs are drained with `poll_*`
//! after every input: datagrams to send ([`Node::poll_transmit`]), frames to
//! write to the TAP ([`Node::poll_frame`]), everything else the caller
//! should know ([`Node::poll_event`]) and the next deadline
//! ([`Node::poll_timeout`]). The node owns the buffer pool; handles travel
//! through it and back to [`Pool::free`] when the caller has done the I/O.
//! No socket, file or clock is touched here, which is why the same node runs
//! in the mio shell, in the benchmarks and in the simulator.
//!
//! The node is a dispatcher: the ring's policy is `Overlay`'s and the
//! VPN's is `vpn::Vpn`'s; both answer with actions the node carries out
//! (`links`, `vpn`), drained once per input by `settle` (`events`). What
//! the node keeps itself — peers and their sessions, handshakes, paths,
//! tunnels — lives in one file per job; a peer's link and path are the
//! state machines in `peer/path.rs`.

mod attempts;
mod boots;
mod carry;
pub use boots::LEARNED_BOOTS;
mod completion;
pub mod config;
pub mod cookies;
mod events;
mod failover;
mod handshakes;
pub mod limiter;
mod links;
mod manage;
pub mod nat;
pub mod ondemand;
pub mod peer;
mod peers;
pub mod ping;
mod receive;
pub(crate) mod relay;
mod routes;
mod send;
pub mod stats;
pub mod status;
mod switch;
mod timers;
pub mod trust;
mod tunnel;
mod underlay;
pub mod vpn;
mod wakeups;
pub mod watch;

use crate::buf::{PacketBuf, Pool};
use crate::crypto::{Identity, NodeKey};
use crate::overlay::Overlay;
use crate::rand::SeededRng;
use crate::time::Instant;
pub use crate::wire::endpoint::Endpoint;
use crate::wire::MsgType;
use boots::Boot;
use config::Settings;
pub use config::{Carriage, NodeConfig, PeerConfig, Timers};

/// How big the peer table is (see `Node::peer_table`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerTable {
    pub present: usize,
    pub places: usize,
    pub tombstones: usize,
    pub forgotten: u64,
}
pub use events::Event;
use limiter::HandshakeLimiter;
use peer::Peer;
pub use stats::{DropReason, Stats};
use std::collections::{BTreeMap, VecDeque};
use switch::MacTable;
use wakeups::Wakeups;

pub use crate::ids::PeerIdx;

/// How a sealed message reached us: the receive path's facts about it,
/// passed along (by reference: the hot path compares the endpoint in
/// place) rather than kept in the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Arrival {
    /// Straight from this endpoint (one link crossed); `None`: routed.
    from: Option<Endpoint>,
    /// Links crossed.
    hops: u8,
    /// Routed as tunnel data through this link of ours (a tunnel's relay).
    tunnel: Option<PeerIdx>,
}

impl Arrival {
    fn direct(from: Endpoint) -> Arrival {
        Arrival {
            from: Some(from),
            hops: 1,
            tunnel: None,
        }
    }

    fn routed(hops: u8, tunnel: Option<PeerIdx>) -> Arrival {
        Arrival {
            from: None,
            hops,
            tunnel,
        }
    }

    /// Came through `relay`, our tunnel's relay for the sender.
    fn through_relay(self, relay: Option<PeerIdx>) -> bool {
        self.tunnel.is_some() && self.tunnel == relay
    }
}

/// How a handshake reached us, or goes out: to an underlay endpoint, or
/// routed over the overlay to (from) a ring address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Path {
    Direct(Endpoint),
    Overlay(crate::overlay::Addr),
}

/// What a local session index (or pending handshake) belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Peer(PeerIdx),
    /// A handshake to a bootstrap endpoint whose key we do not know yet.
    Boot(u16),
    /// A handshake init sent inside a connect-to-me request (slot).
    Ctm(u8),
}

/// A datagram to send.
#[derive(Debug)]
pub struct Transmit {
    pub dst: Endpoint,
    pub buf: PacketBuf,
}

/// How long a peer must have sent nothing valid (and had no handshake)
/// before messages from it on an unknown session start a new handshake.
const RESYNC_QUIET: std::time::Duration = std::time::Duration::from_millis(500);

/// Extra rounds of peer timers in one `handle_timeout` (see there).
const TIMER_ROUNDS: usize = 3;

/// Output queue bound: a full batch in each direction with room to spare.
/// The shell drains after every input, so a full queue means it is stuck.
pub const MAX_QUEUED: usize = 1024;

/// A member of the network, sans IO: datagrams, frames and the clock go
/// in; datagrams, frames, events and the next deadline come out. Its
/// state is grouped by concern; each group's type lives with the module
/// that owns it.
pub struct Node {
    identity: Identity,
    timers: Timers,
    settings: Settings,
    pool: Pool,
    peers: Vec<peer::PeerSlot>,
    /// Ways to find a peer: by key, session index, MAC, deadline.
    index: peers::PeerIndex,
    /// Handshakes with nodes not in the peer table yet.
    strangers: boots::Strangers,
    overlay: Option<Overlay>,
    /// The VPN over the overlay (overlay mode with a virtual network).
    vpn: Option<Box<crate::vpn::Vpn>>,
    /// Exit gateways and subnet routes (with the VPN, when configured).
    routes: Option<Box<crate::routes::Routes>>,
    /// Map-reduce tasks over the ring (with the overlay).
    manager: Option<crate::manage::Manager>,
    underlay: underlay::Underlay,
    certs: trust::Certs,
    guards: limiter::Guards,
    out: Outbox,
    stats: Stats,
    env: Env,
}

/// What the node has produced and the caller has not taken yet. Every
/// queued datagram and frame holds a pool buffer: never more than the pool.
struct Outbox {
    transmits: VecDeque<Transmit>,
    frames: VecDeque<PacketBuf>,
    /// Sub-rings (`carry`): the public node's datagrams carried to us for
    /// the host's networks; a network node's datagrams for its host to
    /// carry.
    carried: VecDeque<PacketBuf>,
    to_carry: VecDeque<Transmit>,
    /// Everything else for the caller (see `events`).
    events: VecDeque<Event>,
}

/// What the node draws from its surroundings: randomness, and the wall
/// clock's origin for handshake timestamps.
struct Env {
    rng: SeededRng,
    sysrand: ring::rand::SystemRandom,
    wall_origin_us: u64,
    last_timestamp: u64,
}

impl Node {
    pub fn new(identity: Identity, cfg: NodeConfig, now: Instant) -> Node {
        let mut by_key = BTreeMap::new();
        let mut peers = Vec::new();
        for pc in cfg.peers.iter().take(usize::from(u16::MAX)) {
            if pc.key == identity.public() || by_key.contains_key(&pc.key) {
                continue;
            }
            by_key.insert(pc.key, PeerIdx(peers.len() as u16));
            peers.push(peer::PeerSlot::new(Peer::new(pc)));
        }
        let overlay = cfg.overlay.clone().map(|oc| {
            let mut ov = Overlay::new(
                identity.public(),
                &cfg.endpoints,
                oc,
                cfg.rng_seed ^ 0x6f76,
                now,
            );
            ov.set_wall_origin(cfg.wall_origin_us);
            // Per start (the seed) and per node (the private key).
            let mut label = b"ringvpn request ids".to_vec();
            label.extend_from_slice(&cfg.rng_seed.to_be_bytes());
            ov.set_id_key(identity.derive_secret(&label));
            ov
        });
        let boots = cfg
            .bootstrap
            .iter()
            .map(|&endpoint| Boot::new(Endpoint::udp(endpoint), now, None))
            .collect();
        let public = identity.public();
        let underlay_guard = underlay::guard(&cfg);
        // The firewall's flow hash: per start and per node, like the
        // overlay's id key.
        let mut label = b"ringvpn firewall".to_vec();
        label.extend_from_slice(&cfg.rng_seed.to_be_bytes());
        let s = identity.derive_secret(&label);
        let flow_secret = u64::from_be_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]);
        let mut node = Node {
            identity,
            settings: Settings::from(&cfg),
            timers: cfg.timers,
            vpn: cfg.vpn.clone().filter(|_| overlay.is_some()).map(|v| {
                let joining = !cfg.bootstrap.is_empty() || cfg.bootstrap_pending;
                Box::new(crate::vpn::Vpn::new(v, &public, now, joining, flow_secret))
            }),
            routes: cfg
                .routes
                .clone()
                .filter(|r| r.active() && overlay.is_some() && cfg.vpn.is_some())
                .map(|r| Box::new(crate::routes::Routes::new(r, public, now))),
            manager: overlay
                .as_ref()
                .map(|ov| crate::manage::Manager::new(ov.addr(), flow_secret.rotate_left(32))),
            overlay,
            underlay: underlay::Underlay {
                local: Vec::new(),
                guard: underlay_guard,
                nat: nat::NatObserver::default(),
            },
            certs: trust::Certs {
                trust: cfg.trust,
                crl_in: Vec::new(),
                mine: cfg.cert,
                refused: None,
            },
            guards: limiter::Guards {
                limiter: HandshakeLimiter::new(now),
                probes: limiter::Probes::default(),
                cookies: cookies::Cookies::new(&ring::rand::SystemRandom::new(), now),
                relay_budget: relay::RelayBudget::new(
                    cfg.overlay.as_ref().map_or(0, |o| o.relay_kib),
                    now,
                ),
            },
            pool: Pool::new(cfg.pool_slots),
            peers,
            index: peers::PeerIndex {
                by_key,
                by_session: BTreeMap::new(),
                macs: MacTable::default(),
                wakeups: Wakeups::default(),
                linked: 0,
                tombstones: Default::default(),
                evicted: 0,
            },
            strangers: boots::Strangers {
                boots,
                boot_wake: None,
                boots_dirty: true,
                alone_since: None,
                silent: None,
                ctm_inits: Default::default(),
                ctm_ids: Default::default(),
            },
            out: Outbox {
                transmits: VecDeque::with_capacity(MAX_QUEUED.min(cfg.pool_slots as usize)),
                frames: VecDeque::with_capacity(MAX_QUEUED.min(cfg.pool_slots as usize)),
                carried: VecDeque::new(),
                to_carry: VecDeque::new(),
                events: VecDeque::new(),
            },
            stats: Stats::default(),
            env: Env {
                rng: SeededRng::new(cfg.rng_seed),
                sysrand: ring::rand::SystemRandom::new(),
                wall_origin_us: cfg.wall_origin_us,
                last_timestamp: 0,
            },
        };
        for i in 0..node.peers.len() {
            node.touch(PeerIdx(i as u16));
        }
        node.underlay.local = node.outside_guard(&cfg.endpoints);
        node.rearm();
        node.update_advertised();
        node.vpn_start();
        node
    }

    /// What peers' answers say about the NAT in front of us.
    pub fn nat_mapping(&self) -> nat::NatMapping {
        self.underlay.nat.mapping(&self.local_udp())
    }

    pub fn public_key(&self) -> NodeKey {
        self.identity.public()
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn pool_mut(&mut self) -> &mut Pool {
        &mut self.pool
    }

    /// The peer table's size: peers present, places (present and
    /// vacant), tombstones, and peers forgotten so far.
    pub fn peer_table(&self) -> PeerTable {
        PeerTable {
            present: self.peers.iter().filter(|p| !p.is_vacant()).count(),
            places: self.peers.len(),
            tombstones: self.index.tombstones.len(),
            forgotten: self.index.evicted,
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn timers(&self) -> &Timers {
        &self.timers
    }

    /// Counts a drop the shell observed (e.g. the pool was empty on read).
    pub fn count_drop(&mut self, reason: DropReason) {
        self.stats.count(reason);
    }

    fn drop_buf(&mut self, buf: PacketBuf, reason: DropReason) {
        self.stats.count(reason);
        self.pool.free(buf);
    }

    // ----- outputs -----

    /// Next datagram to send. Drain after every `handle_*` call.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.transmits.pop_front()
    }

    /// Puts back a datagram the shell could not send yet (socket full), to
    /// be sent first next time.
    pub fn unpoll_transmit(&mut self, t: Transmit) {
        self.out.transmits.push_front(t);
    }

    /// Datagrams waiting to be sent.
    pub fn transmits_queued(&self) -> usize {
        self.out.transmits.len()
    }

    /// Next frame to write to the TAP. Drain after every `handle_*` call.
    pub fn poll_frame(&mut self) -> Option<PacketBuf> {
        self.out.frames.pop_front()
    }

    /// When [`Node::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        // Actions left after `settle`'s rounds (a long cascade) run at once.
        if self.overlay.as_ref().is_some_and(Overlay::has_output) {
            return Some(Instant::ZERO);
        }
        let overlay = self.overlay.as_ref().map(Overlay::poll_timeout);
        let peers = self.index.wakeups.next();
        let t = crate::time::earliest(
            crate::time::earliest(peers, overlay),
            self.strangers.boot_wake,
        );
        let t = crate::time::earliest(t, self.vpn_deadline());
        let t = crate::time::earliest(t, self.manage_deadline());
        crate::time::earliest(t, self.routes_deadline())
    }

    // ----- inputs: TAP side -----

    /// A frame read from the TAP device.
    pub fn handle_frame(&mut self, now: Instant, buf: PacketBuf) {
        self.frame_in(now, buf);
        self.settle(now);
    }

    // ----- inputs: network side -----

    /// A datagram received from `from`.
    pub fn handle_datagram(&mut self, now: Instant, from: impl Into<Endpoint>, buf: PacketBuf) {
        self.datagram_in(now, from.into(), buf);
        self.settle(now);
    }

    // ----- timers -----

    /// Runs every timer that is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.due_peer_timers(now);
        self.run_bootstraps(now);
        if let Some(ov) = self.overlay.as_mut() {
            ov.handle_timeout(now);
        }
        self.vpn_timers(now);
        self.routes_timers(now);
        self.manage_timers(now);
        self.settle(now);
        // A timer can change another peer (a relay given up moves the
        // tunnels through it): what that made due runs now, not after a
        // wake-up of its own. Bounded: each round only runs what the last
        // one changed.
        for _ in 0..TIMER_ROUNDS {
            if !self.index.wakeups.next().is_some_and(|t| t <= now) {
                break;
            }
            self.due_peer_timers(now);
            self.settle(now);
        }
    }
}

#[cfg(test)]
mod tests;
