//! The structured ring overlay (see docs/OVERLAY.md).
//!
//! [`Overlay`] is pure policy: it sees link-up/link-down events and overlay
//! messages from the node, and answers with [`Action`]s (send a control
//! payload on a link, link to a node, close a link) that the node carries
//! out. It keeps the ring in shape the Brunet way, with cheaper linking:
//!
//! - **near**: the 2 nearest nodes on each side are wanted, up to 4 kept;
//!   found by a connect-to-me (CTM) routed to our own address and by
//!   neighbour gossip on every new link;
//! - **shortcuts**: ceil(0.5·log2 N) Symphony-style harmonic long links once
//!   N > 10, N estimated from the spacing of the near neighbours;
//! - **leaves**: bootstrap links, kept until we have our place in the ring.
//!
//! Routing is greedy with neighbour-of-neighbour lookahead: among the
//! connections closer to the destination than we are, forward to the one
//! whose own connections (learnt from its connection list) get closest.
//! Every hop still moves strictly closer, so a message cannot loop.

pub mod dht;
mod linking;
mod maintain;
mod routing;
pub mod table;
mod tokens;

pub use crate::wire::addr::Addr;
use table::{reason, Conn, ConnTable};

use crate::crypto::NodeKey;
use crate::ids::PeerIdx;
use crate::rand::SeededRng;
use crate::time::Instant;
use crate::wire::overlay::Endpoint;
use crate::wire::overlay::{Endpoints, Mode, OverlayMsg, MAX_ENDPOINTS};
use std::collections::BTreeMap;
use std::time::Duration;

/// Overlay parameters; each default is explained in docs/OVERLAY.md.
#[derive(Debug, Clone)]
pub struct OverlayConfig {
    /// Near neighbours wanted on each side (Brunet: 2).
    pub near_wanted: usize,
    /// Near neighbours spared from trimming on each side while the
    /// neighbourhood is settling (Brunet keeps up to 4).
    pub near_kept: usize,
    /// Shortcuts = ceil(factor · log2 N) …
    pub shortcut_factor: f64,
    /// … once the estimated size exceeds this (Brunet: 10).
    pub shortcut_min_nodes: f64,
    /// How often the maintenance runs.
    pub heartbeat: Duration,
    /// How often a node re-checks its ring neighbours with a CTM to itself
    /// while its neighbourhood is settling (new node, or a near change) …
    pub near_check_fast: Duration,
    /// … for how long after the last change …
    pub settle_time: Duration,
    /// … and how often once it is stable.
    pub near_check: Duration,
    /// A CTM without an answer by then is given up (and retried later).
    pub ctm_timeout: Duration,
    /// A link asked for but not up by then stops counting as a near
    /// neighbour-to-be, so a dead node offered by stale gossip does not
    /// hold a near slot for the whole handshake retry schedule.
    pub link_timeout: Duration,
    /// A link nobody has a reason for is closed once this old …
    pub trim_after: Duration,
    /// … or once this old while the node holds more links than its near
    /// and shortcut slots (`crowd_limit`): after a mass join every node
    /// holds dozens of surplus links and leaves, which cost memory and
    /// upkeep until they go. Leaves give up their reason as early.
    pub trim_crowded: Duration,
    /// … or this old, when crowded, if neither end is behind a NAT: such
    /// a link is made in one round trip and its reasons are known within
    /// a heartbeat, where one through a NAT may still be earning them
    /// (a punch, a tunnel relayed over it).
    pub trim_crowded_open: Duration,
    /// Hop limit of routed messages.
    pub ttl: u8,
    /// Route with neighbour-of-neighbour lookahead (off: plain greedy).
    pub lookahead: bool,
    /// A changed connection list is sent to the links at most this often.
    pub conn_list_interval: Duration,
    /// DHT records this node stores for others at most (values ≤ 1 KiB).
    pub dht_records: usize,
    /// What this node relays for others' tunnel edges, KiB/s (0: never);
    /// advertised in connection lists.
    pub relay_kib: u16,
}

/// What a node relays for others by default: 16 MiB/s (128 Mbit/s) in
/// all, half of it for one pair. Enough for a video call or a file copy
/// between two members that cannot punch, and far below what a router's
/// uplink or CPU would give up; 0 (config `relay = 0`) opts out.
pub const DEFAULT_RELAY_KIB: u16 = 16384;

impl Default for OverlayConfig {
    fn default() -> OverlayConfig {
        OverlayConfig {
            near_wanted: 2,
            near_kept: 4,
            shortcut_factor: 0.45,
            shortcut_min_nodes: 10.0,
            heartbeat: Duration::from_secs(1),
            near_check_fast: Duration::from_secs(2),
            settle_time: Duration::from_secs(30),
            near_check: Duration::from_secs(30),
            ctm_timeout: Duration::from_secs(5),
            link_timeout: Duration::from_secs(3),
            trim_after: Duration::from_secs(30),
            trim_crowded: Duration::from_secs(5),
            trim_crowded_open: Duration::from_millis(2000),
            ttl: 64,
            lookahead: true,
            conn_list_interval: Duration::from_secs(2),
            dht_records: 4096,
            relay_kib: DEFAULT_RELAY_KIB,
        }
    }
}

/// How old a link must be to be trimmed: one with a member behind a NAT
/// (either end), and an open one.
#[derive(Clone, Copy)]
struct TrimAges {
    nat: Duration,
    open: Duration,
}

impl TrimAges {
    fn of(&self, c: &Conn) -> Duration {
        if c.nat {
            self.nat
        } else {
            self.open
        }
    }
}

/// Which connect-to-me of ours an embedded init belongs to: the node
/// hands it back with the handshake that answers the init.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CtmId {
    pub purpose: u8,
    pub token: u64,
}

/// What the overlay asks the node to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this link-control payload to the peer.
    Send { peer: PeerIdx, msg: Vec<u8> },
    /// Send this routed connect-to-me request to the peer after attaching
    /// a fresh handshake init for whoever accepts it.
    SendCtm {
        peer: PeerIdx,
        msg: Vec<u8>,
        ctm: CtmId,
    },
    /// Answer a handshake init that came inside a connect-to-me request,
    /// sending the response straight to each of the requester's candidate
    /// endpoints (the first that gets through makes the link).
    AnswerInit {
        init: Vec<u8>,
        candidates: Endpoints,
    },
    /// Establish a link to this node, trying each candidate endpoint (no-op
    /// if it is up or linking). `hearsay`: nobody asked for it — gossip or
    /// a request passing through named the node and its endpoints — so
    /// handshakes go there sparingly (`node::limiter::Probes`).
    Link {
        key: NodeKey,
        candidates: Endpoints,
        hearsay: bool,
    },
    /// Close the link to the peer (a leave message was queued before).
    Close { peer: PeerIdx },
    /// A handshake message routed to us by the node at `src` (the node
    /// holds the keys, so it answers).
    Handshake {
        src: Addr,
        via: Option<PeerIdx>,
        bytes: Vec<u8>,
    },
    /// A relay query or offer from the node at `src` (the node knows the
    /// round-trip times of its links, so it answers).
    Relay { src: Addr, msg: Box<OverlayMsg> },
    /// A management message routed to us by the node at `src`: a task
    /// for us alone (`request`) or a member's description (the node
    /// holds the manager, which checks both).
    Manage {
        src: Addr,
        request: bool,
        bytes: Vec<u8>,
    },
    /// An echo we sent came back (for the caller: a ring ping).
    Echoed { nonce: u64, hops: u8, rtt: Duration },
}

/// What to do with a routed message that arrived on a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Forward(PeerIdx),
    Deliver,
    Drop(Refused),
}

/// Why the overlay refused a message from a link (the node counts each
/// as a drop by reason; none is logged per message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Lengths, counts or a mode that do not parse.
    Malformed,
    /// A connect-to-me whose key does not hash to its source address, or
    /// a message that claims to come from us.
    Forged,
    /// A connect-to-me reply to no request of ours (never sent, already
    /// answered or given up on): it could make us link wherever a
    /// stranger says.
    Unsolicited,
    /// The hop limit was reached.
    HopLimit,
    /// Exact mode, and no node has the address.
    NoRoute,
}

/// Overlay counters (for status, the simulator and tests).
#[derive(Debug, Clone, Default)]
pub struct OverlayStats {
    pub forwarded: u64,
    pub delivered: u64,
    /// Messages we started that had nowhere to go (no links yet).
    pub unroutable: u64,
    /// Messages whose TTL exceeded ours, cut down to it.
    pub ttl_clamped: u64,
    /// Gossiped node records not acted on because a link to the same node
    /// recently failed (a fake or dead claim).
    pub records_ignored: u64,
    pub ctm_sent: u64,
    /// Links made to a node whose near check passed through us.
    pub stitched: u64,
    pub echo_replies: u64,
    /// Hops of the echo replies received (sum), for mean hop counts.
    pub echo_reply_hops: u64,
}

struct PendingCtm {
    purpose: u8,
    /// The node asked, for a request to an exact address: only its answer
    /// counts (two on-demand requests must not take each other's).
    target: Option<Addr>,
    /// The id the reply must echo (`tokens`): a reply in a made-up name
    /// would send our handshakes to endpoints of the forger's choosing.
    token: u64,
    sent: Instant,
}

pub struct Overlay {
    me: Addr,
    key: NodeKey,
    cfg: OverlayConfig,
    table: ConnTable,
    endpoints: Endpoints,
    /// Links being made: wanted, failed, connect-to-me requests out.
    linking: linking::Linking,
    /// The heartbeat's schedule and what it last saw and sent.
    upkeep: maintain::Upkeep,
    rng: SeededRng,
    actions: Vec<Action>,
    pub stats: OverlayStats,
    dht: dht::Dht,
}

/// Requests under way (on the heap: a node has none most of the time).
type PendingCtms = Vec<PendingCtm>;
/// Requests answered once that may still get their second answer.
const ANSWERED_KEPT: usize = 8;

/// Keeps connect-to-me ids apart from DHT operation ids (one key).
const CTM_ID_DOMAIN: u8 = 1;

/// Links being set up at once at most (near candidates, shortcuts and
/// stitching need a handful; the cap bounds what gossip can start).
pub(super) const MAX_WANTED: usize = 32;
/// Near-neighbour offers weighed together at most (more are dropped:
/// only the nearest few get a link anyway).
pub(super) const MAX_OFFERS: usize = 32;
/// How long offers gather before they are weighed: a joining node's
/// bootstrap links come up within a round trip or two of each other.
pub(super) const OFFER_WINDOW: Duration = Duration::from_millis(250);
/// Recently failed link targets remembered (the oldest is forgotten first).
pub(super) const FAILED_SLOTS: usize = 16;
/// How long a failed target is not linked again on hearsay.
pub(super) const FAILED_FOR: Duration = Duration::from_secs(30);
/// Connect-to-me purpose flag: the requester is behind a NAT, so the
/// acceptor replies (with its endpoints) even when it answers the init.
pub(super) const CTM_BEHIND_NAT: u8 = 0x80;

/// Connection lists sent per heartbeat at most.
pub(super) const CONN_LIST_BURST: usize = 8;
/// Links a node holds before it counts as crowded, whatever its size: in
/// a ring of a few dozen nodes links are cheap, and trimming them early
/// only has them made again.
pub(super) const CROWD_MIN: usize = 16;
/// Links trimmed per heartbeat at most (after a mass join a node may hold
/// dozens of surplus links that all expire together).
pub(super) const TRIM_BURST: usize = 4;

impl Overlay {
    pub fn new(
        key: NodeKey,
        endpoints: &[Endpoint],
        cfg: OverlayConfig,
        seed: u64,
        now: Instant,
    ) -> Overlay {
        let mut dht = dht::Dht::new(cfg.dht_records, now);
        // Unguessable DHT operation ids even before the node keys them.
        let id_key: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, &seed.to_be_bytes())
            .as_ref()
            .try_into()
            .expect("32 bytes");
        dht.set_id_key(id_key);
        Overlay {
            me: Addr::of_key(&key),
            key,
            cfg,
            table: ConnTable::default(),
            endpoints: endpoints.iter().take(MAX_ENDPOINTS).copied().collect(),
            linking: linking::Linking {
                wanted: BTreeMap::new(),
                failed: Vec::new(),
                pending: PendingCtms::new(),
                answered_once: PendingCtms::new(),
                ctm_ids: tokens::Tokens::new(id_key, CTM_ID_DOMAIN),
                offers: Vec::new(),
                offers_due: None,
            },
            upkeep: maintain::Upkeep {
                next_heartbeat: now,
                next_near_check: now,
                near_changed: now,
                near_snapshot: [None, None],
                conns_dirty: false,
                conns_sent: now,
                behind_nat: false,
                relay_offered: true,
            },
            rng: SeededRng::new(seed),
            actions: Vec::new(),
            stats: OverlayStats::default(),
            dht,
        }
    }

    pub fn addr(&self) -> Addr {
        self.me
    }

    /// Our own endpoints, as we advertise them.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    pub fn table(&self) -> &ConnTable {
        &self.table
    }

    pub fn config(&self) -> &OverlayConfig {
        &self.cfg
    }

    /// Whether anything waits for the node: actions or finished DHT
    /// operations (a few loads: asked after every input).
    #[inline]
    pub fn has_output(&self) -> bool {
        !self.actions.is_empty() || self.has_events()
    }

    /// The actions, taken with their buffer: a burst (a join) leaves no
    /// room behind, since an action is a few hundred bytes.
    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    pub fn poll_timeout(&self) -> Instant {
        match self.linking.offers_due {
            Some(t) => t.min(self.upkeep.next_heartbeat),
            None => self.upkeep.next_heartbeat,
        }
    }

    /// The nearest connection on the right (successor) and left (predecessor).
    pub fn right(&self) -> Option<Addr> {
        self.table.right_of(self.me, 1).next().map(|c| c.addr)
    }

    pub fn left(&self) -> Option<Addr> {
        self.table.left_of(self.me, 1).next().map(|c| c.addr)
    }

    /// Fewer links than the near neighbours a ring position needs.
    pub fn is_thin(&self) -> bool {
        self.table.len() < 2 * self.cfg.near_wanted
    }

    /// The network size estimated from the spacing of the near neighbours.
    pub fn estimate_size(&self) -> f64 {
        let k = self.cfg.near_wanted;
        let right: Vec<Addr> = self.table.right_of(self.me, k).map(|c| c.addr).collect();
        let left: Vec<Addr> = self.table.left_of(self.me, k).map(|c| c.addr).collect();
        let n = self.table.len();
        if n < 2 * k {
            return (n + 1) as f64;
        }
        let (Some(far_l), Some(far_r)) = (left.last(), right.last()) else {
            return (n + 1) as f64;
        };
        let span = far_l.right_dist(*far_r) as f64;
        let gaps = (left.len() + right.len()) as f64;
        (gaps * 2f64.powi(128) / span).max((n + 1) as f64)
    }

    /// Links beyond which surplus ones go early (`trim_crowded`): the
    /// near slots kept on both sides, and our shortcuts and about as many
    /// of others' towards us; never below `CROWD_MIN`.
    fn crowd_limit(&self) -> usize {
        (2 * self.cfg.near_kept + 2 * self.desired_shortcuts()).max(CROWD_MIN)
    }

    /// How old links nobody has a reason for (and leaves) must be to go.
    fn trim_ages(&self) -> TrimAges {
        if self.table.len() > self.crowd_limit() {
            TrimAges {
                nat: self.cfg.trim_crowded,
                open: if self.upkeep.behind_nat {
                    self.cfg.trim_crowded
                } else {
                    self.cfg.trim_crowded_open
                },
            }
        } else {
            TrimAges {
                nat: self.cfg.trim_after,
                open: self.cfg.trim_after,
            }
        }
    }

    /// The reasons byte we announce on a link: our reasons, and whether
    /// we are behind a NAT (`reason::BEHIND_NAT`).
    pub(super) fn announced(&self, mine: u8) -> u8 {
        if self.upkeep.behind_nat {
            mine | reason::BEHIND_NAT
        } else {
            mine
        }
    }

    fn desired_shortcuts(&self) -> usize {
        let n = self.estimate_size();
        if n <= self.cfg.shortcut_min_nodes {
            0
        } else {
            (self.cfg.shortcut_factor * n.log2()).ceil() as usize
        }
    }

    // ----- links -----

    /// A link to `key` is up (first session on it).
    /// `leaf`: the link came from a bootstrap endpoint.
    pub fn on_link_up(
        &mut self,
        now: Instant,
        peer: PeerIdx,
        key: NodeKey,
        endpoint: Endpoint,
        leaf: bool,
    ) {
        let addr = Addr::of_key(&key);
        let first = self.table.is_empty();
        self.table.insert(key, peer, endpoint, now);
        self.upkeep.conns_dirty = true;
        if leaf {
            if let Some(c) = self.table.get_mut(addr) {
                c.mine |= reason::LEAF;
            }
        }
        self.linking.failed.retain(|(f, _)| *f != addr);
        if let Some((reasons, _)) = self.linking.wanted.remove(&addr) {
            if let Some(c) = self.table.get_mut(addr) {
                c.mine |= reasons;
            }
        }
        self.update_reasons(now);
        // Tell the new neighbour why we keep it and who we know near it.
        self.send_neighbours(peer, addr, true);
        if first {
            // Our first link (a bootstrap): find our place at once.
            self.upkeep.next_near_check = now;
            self.upkeep.next_heartbeat = now;
        }
    }

    /// The peer on the other end of a link moved (authenticated traffic
    /// came from a new endpoint): what we tell others about it follows.
    pub fn on_peer_moved(&mut self, peer: PeerIdx, endpoint: Endpoint) {
        if let Some(c) = self.table.by_peer_mut(peer) {
            c.endpoint = endpoint;
        }
    }

    /// The link to `peer` stopped answering, or answers again (the node's
    /// watch says): routing goes around a suspect link.
    pub fn set_suspect(&mut self, peer: PeerIdx, suspect: bool) {
        if let Some(c) = self.table.by_peer_mut(peer) {
            c.suspect = suspect;
        }
    }

    /// The link to `peer` is gone (dead, closed or refused).
    pub fn on_link_down(&mut self, now: Instant, peer: PeerIdx) {
        if let Some(addr) = self.table.by_peer(peer).map(|c| c.addr) {
            self.table.remove(addr);
            self.upkeep.conns_dirty = true;
            self.update_reasons(now);
            // A hole next to us: look again soon.
            self.upkeep.next_near_check = self
                .upkeep
                .next_near_check
                .min(now + Duration::from_millis(200));
        }
    }

    /// Records reasons for a link we are about to make.
    fn want(
        &mut self,
        now: Instant,
        key: NodeKey,
        candidates: Endpoints,
        reasons: u8,
        hearsay: bool,
    ) {
        let addr = Addr::of_key(&key);
        if key == self.key || candidates.is_empty() {
            return;
        }
        if let Some(c) = self.table.get_mut(addr) {
            c.mine |= reasons;
            return;
        }
        if self.linking.wanted.len() >= MAX_WANTED && !self.linking.wanted.contains_key(&addr) {
            return;
        }
        self.linking.wanted.entry(addr).or_insert((0, now)).0 |= reasons;
        self.actions.push(Action::Link {
            key,
            candidates,
            hearsay,
        });
    }

    /// Asks for a link to the node at exactly `addr` (which must exist): a
    /// connect-to-me routed to it, carrying our candidates and an init, so
    /// both sides punch. `reason` is the link's purpose (on-demand, relay).
    pub fn connect_to(&mut self, now: Instant, addr: Addr, reason: u8) {
        if !self.is_linked(addr) {
            self.ctm(now, Mode::Exact, addr, reason);
        }
    }

    /// Asks `addr` to link again, with our current endpoints: they changed
    /// (our NAT rebound) while a punch to it was running on the old ones.
    /// The purpose is what we want the link for, else `fallback`.
    pub fn relink(&mut self, now: Instant, addr: Addr, fallback: u8) {
        let mine = self
            .linking
            .wanted
            .get(&addr)
            .map(|w| w.0)
            .or_else(|| self.table.get(addr).map(|c| c.mine))
            .filter(|&r| r != 0)
            .unwrap_or(fallback);
        self.ctm(now, Mode::Exact, addr, mine);
    }

    /// Links to `key` at `candidates` for `reasons` (a relay we chose).
    pub fn link(&mut self, now: Instant, key: NodeKey, candidates: Endpoints, reasons: u8) {
        self.want(now, key, candidates, reasons, false);
    }

    /// Sets or clears one of our reasons for the link to `addr`.
    pub fn set_reason(&mut self, addr: Addr, bit: u8, on: bool) {
        if let Some(c) = self.table.get_mut(addr) {
            if on {
                c.mine |= bit;
            } else {
                c.mine &= !bit;
            }
        }
    }

    /// Our endpoints changed (a reflexive one learnt, say): what we
    /// advertise from now on.
    pub fn set_endpoints(&mut self, endpoints: &[Endpoint]) {
        self.endpoints = endpoints.iter().take(MAX_ENDPOINTS).copied().collect();
    }

    /// Whether our relay budget is offered to others (see `relay_kib`).
    pub fn set_relay_offered(&mut self, offered: bool) {
        if self.upkeep.relay_offered != offered {
            self.upkeep.relay_offered = offered;
            self.upkeep.conns_dirty = true;
        }
    }

    /// Whether we are behind a NAT (the node says): our connect-to-me
    /// requests then ask for a reply even when they carry an init, so that
    /// we learn the acceptor's endpoints and punch towards it.
    pub fn set_behind_nat(&mut self, behind: bool) {
        self.upkeep.behind_nat = behind;
    }
}

#[cfg(test)]
mod tests;
