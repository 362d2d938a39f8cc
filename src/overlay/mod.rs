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

pub mod addr;
pub mod table;

pub use addr::Addr;
use table::{reason, ConnTable};

use crate::crypto::NodeKey;
use crate::node::PeerIdx;
use crate::rand::{Rng, SeededRng};
use crate::time::Instant;
use crate::wire::overlay::{
    emit_routed_header, ConnList, Endpoints, Mode, Neighbours, NodeRecord, OverlayMsg, Records,
    Routed, FLAG_FINAL, KIND_LEAVE, MAX_CONN_LIST, MAX_ENDPOINTS, MAX_NEIGHBOURS,
};
use smallvec::SmallVec;
use std::collections::BTreeMap;
use std::net::SocketAddr;
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
    /// A link nobody has a reason for is closed once this old.
    pub trim_after: Duration,
    /// Hop limit of routed messages.
    pub ttl: u8,
    /// Route with neighbour-of-neighbour lookahead (off: plain greedy).
    pub lookahead: bool,
    /// A changed connection list is sent to the links at most this often.
    pub conn_list_interval: Duration,
}

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
            ttl: 64,
            lookahead: true,
            conn_list_interval: Duration::from_secs(2),
        }
    }
}

/// Link timers for overlay nodes: a link idle for 5 s is pinged, one
/// silent for 12 s (two missed pings) is dead, so a crashed neighbour is
/// replaced well within 30 s. Pings go only over idle links, keeping the
/// cost near one small datagram per link per 5 s.
pub fn link_timers() -> crate::node::Timers {
    crate::node::Timers {
        keepalive_interval: Duration::from_secs(5),
        dead_after: Duration::from_secs(12),
        ..crate::node::Timers::default()
    }
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
        purpose: u8,
    },
    /// Answer a handshake init that came inside a connect-to-me request,
    /// sending the response straight to the requester's endpoint.
    AnswerInit { init: Vec<u8>, endpoint: SocketAddr },
    /// Establish a link to this node (no-op if it is up or linking).
    Link { node: NodeRecord },
    /// Close the link to the peer (a leave message was queued before).
    Close { peer: PeerIdx },
}

/// What to do with a routed message that arrived on a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Forward(PeerIdx),
    Deliver,
    /// Dropped: hop limit reached, or no node has the exact address.
    Drop,
}

/// Overlay counters (for status, the simulator and tests).
#[derive(Debug, Clone, Default)]
pub struct OverlayStats {
    pub forwarded: u64,
    pub delivered: u64,
    pub dropped_ttl: u64,
    pub dropped_no_route: u64,
    pub dropped_malformed: u64,
    pub ctm_sent: u64,
    /// Links made to a node whose near check passed through us.
    pub stitched: u64,
    pub echo_replies: u64,
    /// Hops of the echo replies received (sum), for mean hop counts.
    pub echo_reply_hops: u64,
}

struct PendingCtm {
    purpose: u8,
    sent: Instant,
}

pub struct Overlay {
    me: Addr,
    key: NodeKey,
    cfg: OverlayConfig,
    table: ConnTable,
    endpoints: Endpoints,
    /// Reasons to give links that are being set up, by address.
    wanted: BTreeMap<Addr, (u8, Instant)>,
    pending: SmallPending,
    next_heartbeat: Instant,
    next_near_check: Instant,
    /// When our nearest neighbours last changed.
    near_changed: Instant,
    near_snapshot: [Option<Addr>; 2],
    /// Our connection list changed since we last sent it …
    conns_dirty: bool,
    /// … which was then.
    conns_sent: Instant,
    rng: SeededRng,
    actions: Vec<Action>,
    pub stats: OverlayStats,
    /// Echo replies by nonce: (hops, rtt) for probes the caller started.
    pub echo_results: BTreeMap<u64, (u8, Duration)>,
}

type SmallPending = SmallVec<[PendingCtm; 8]>;

/// Connection lists sent per heartbeat at most.
const CONN_LIST_BURST: usize = 8;
/// Links trimmed per heartbeat at most (after a mass join a node may hold
/// dozens of surplus links that all expire together).
const TRIM_BURST: usize = 4;

impl Overlay {
    pub fn new(
        key: NodeKey,
        endpoints: &[SocketAddr],
        cfg: OverlayConfig,
        seed: u64,
        now: Instant,
    ) -> Overlay {
        Overlay {
            me: Addr::of_key(&key),
            key,
            cfg,
            table: ConnTable::default(),
            endpoints: endpoints.iter().take(MAX_ENDPOINTS).copied().collect(),
            wanted: BTreeMap::new(),
            pending: SmallPending::new(),
            next_heartbeat: now,
            next_near_check: now,
            near_changed: now,
            near_snapshot: [None, None],
            conns_dirty: false,
            conns_sent: now,
            rng: SeededRng::new(seed),
            actions: Vec::new(),
            stats: OverlayStats::default(),
            echo_results: BTreeMap::new(),
        }
    }

    pub fn addr(&self) -> Addr {
        self.me
    }

    pub fn table(&self) -> &ConnTable {
        &self.table
    }

    pub fn config(&self) -> &OverlayConfig {
        &self.cfg
    }

    /// Takes the actions produced so far.
    pub fn drain_actions(&mut self) -> std::vec::Drain<'_, Action> {
        self.actions.drain(..)
    }

    pub fn poll_timeout(&self) -> Instant {
        self.next_heartbeat
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
        endpoint: SocketAddr,
        leaf: bool,
    ) {
        let addr = Addr::of_key(&key);
        let first = self.table.is_empty();
        self.table.insert(key, peer, endpoint, now);
        self.conns_dirty = true;
        if leaf {
            if let Some(c) = self.table.get_mut(addr) {
                c.mine |= reason::LEAF;
            }
        }
        if let Some((reasons, _)) = self.wanted.remove(&addr) {
            if let Some(c) = self.table.get_mut(addr) {
                c.mine |= reasons;
            }
        }
        self.update_reasons(now);
        // Tell the new neighbour why we keep it and who we know near it.
        self.send_neighbours(peer, addr, true);
        if first {
            // Our first link (a bootstrap): find our place at once.
            self.next_near_check = now;
            self.next_heartbeat = now;
        }
    }

    /// The link to `peer` is gone (dead, closed or refused).
    pub fn on_link_down(&mut self, now: Instant, peer: PeerIdx) {
        if let Some(addr) = self.table.by_peer(peer).map(|c| c.addr) {
            self.table.remove(addr);
            self.conns_dirty = true;
            self.update_reasons(now);
            // A hole next to us: look again soon.
            self.next_near_check = self.next_near_check.min(now + Duration::from_millis(200));
        }
    }

    /// Records reasons for a link we are about to make.
    fn want(&mut self, now: Instant, node: NodeRecord, reasons: u8) {
        let addr = Addr::of_key(&node.key);
        if node.key == self.key {
            return;
        }
        if let Some(c) = self.table.get_mut(addr) {
            c.mine |= reasons;
            return;
        }
        self.wanted.entry(addr).or_insert((0, now)).0 |= reasons;
        self.actions.push(Action::Link { node });
    }

    // ----- routing -----

    /// Starts a routed message from this node.
    pub fn send_routed(&mut self, now: Instant, mode: Mode, dst: Addr, msg: &OverlayMsg) {
        self.send_routed_via(now, mode, dst, msg, None, None);
    }

    /// Starts a routed message, optionally through a chosen first hop
    /// (greedy routing takes over from there); `init_for`: a connect-to-me
    /// that is to carry a handshake init, for this purpose.
    fn send_routed_via(
        &mut self,
        now: Instant,
        mode: Mode,
        dst: Addr,
        msg: &OverlayMsg,
        via: Option<PeerIdx>,
        init_for: Option<u8>,
    ) {
        let mut bytes = Vec::with_capacity(128);
        emit_routed_header(&mut bytes, mode, self.cfg.ttl, self.me, dst, msg.msg_type());
        msg.emit(&mut bytes);
        let skip = Self::skips_source(mode).then_some(self.me);
        let hop = match via {
            Some(peer) => Some(peer),
            None => {
                let (hop, final_) = self.pick_hop(mode, dst, skip, false);
                if final_ {
                    bytes[37] |= FLAG_FINAL;
                }
                hop
            }
        };
        match hop {
            Some(peer) => self.actions.push(match init_for {
                Some(purpose) => Action::SendCtm {
                    peer,
                    msg: bytes,
                    purpose,
                },
                None => Action::Send { peer, msg: bytes },
            }),
            None => match mode {
                Mode::Exact if dst != self.me => self.stats.dropped_no_route += 1,
                _ if Self::skips_source(mode) => self.stats.dropped_no_route += 1,
                _ => self.deliver(now, self.me, 0, msg.clone()),
            },
        }
    }

    /// How far `a` is from `dst` in the sense of `mode`: ring distance, or
    /// the one-sided distance for right-of / left-of.
    fn metric(mode: Mode, dst: Addr, a: Addr) -> u128 {
        match mode {
            Mode::RightOf => dst.right_dist(a),
            Mode::LeftOf => dst.left_dist(a),
            _ => a.distance(dst),
        }
    }

    /// Modes in which the source does not count as a destination.
    fn skips_source(mode: Mode) -> bool {
        matches!(mode, Mode::ClosestOther | Mode::RightOf | Mode::LeftOf)
    }

    /// The next hop, and whether the message is now on its final approach.
    ///
    /// Right-of and left-of messages first travel by the ordinary two-sided
    /// distance, which can use every connection; only from the node closest
    /// to the destination do they switch to the one-sided distance (one hop
    /// across, at most). Routed by the one-sided distance all the way, they
    /// could use only the shortcuts pointing one way and took ~1.5 more
    /// hops. The switch is recorded in the message so that it never goes
    /// back, keeping both phases loop-free.
    fn pick_hop(
        &self,
        mode: Mode,
        dst: Addr,
        skip: Option<Addr>,
        final_: bool,
    ) -> (Option<PeerIdx>, bool) {
        let one_sided = matches!(mode, Mode::RightOf | Mode::LeftOf);
        if one_sided && !final_ {
            if let Some(peer) = self.next_hop(Mode::ClosestOther, dst, skip) {
                return (Some(peer), false);
            }
        }
        (self.next_hop(mode, dst, skip), one_sided)
    }

    /// The connection to forward to, if one is closer to `dst` than we
    /// are (ignoring `skip`, which may not accept).
    ///
    /// Plain greedy takes the closest connection. With lookahead, each
    /// closer connection is scored by the best of itself and its own
    /// connections, so a message goes to the neighbour with the best
    /// two-hop view (Manku, Naor and Wieder, "Know thy neighbor's
    /// neighbor"). Only connections closer than we are qualify, so every
    /// hop still makes progress and stale lists cost hops, never loops.
    fn next_hop(&self, mode: Mode, dst: Addr, skip: Option<Addr>) -> Option<PeerIdx> {
        let mine = if skip == Some(self.me) {
            u128::MAX
        } else {
            Self::metric(mode, dst, self.me)
        };
        if !self.cfg.lookahead {
            let best = match mode {
                Mode::RightOf | Mode::LeftOf => self
                    .table
                    .iter()
                    .filter(|c| Some(c.addr) != skip)
                    .min_by_key(|c| Self::metric(mode, dst, c.addr)),
                _ => self.table.closest_excluding(dst, skip),
            }?;
            return (Self::metric(mode, dst, best.addr) < mine).then_some(best.peer);
        }
        let prefix = |a: Addr| (a.0 >> 64) as u64;
        let (skip_p, me_p) = (skip.map(prefix), prefix(self.me));
        let mut best: Option<(u128, u128, PeerIdx)> = None;
        for c in self.table.iter().filter(|c| Some(c.addr) != skip) {
            let m = Self::metric(mode, dst, c.addr);
            if m >= mine {
                continue;
            }
            // Scored at the lists' 64-bit precision, so that a connection
            // and the same node seen in another's list tie (and the direct
            // one, with the smaller exact metric, wins the tie).
            let mut score = Self::metric(mode, dst, Addr(u128::from(prefix(c.addr)) << 64));
            for &p in &c.nbrs {
                if Some(p) != skip_p && p != me_p {
                    score = score.min(Self::metric(mode, dst, Addr(u128::from(p) << 64)));
                }
            }
            if best.map_or(true, |(bs, bm, _)| (score, m) < (bs, bm)) {
                best = Some((score, m, c.peer));
            }
        }
        best.map(|(_, _, peer)| peer)
    }

    /// Switches neighbour-of-neighbour lookahead (to compare with plain greedy).
    pub fn set_lookahead(&mut self, on: bool) {
        self.cfg.lookahead = on;
    }

    /// Decides what to do with a routed message that arrived on a link;
    /// bumps its hop count in place when it is to be forwarded.
    pub fn route(&mut self, msg: &mut [u8]) -> Route {
        let Ok(mut r) = Routed::new_checked(&mut *msg) else {
            self.stats.dropped_malformed += 1;
            return Route::Drop;
        };
        let (mode, dst, src) = (r.mode(), r.dst(), r.src());
        let skip = Self::skips_source(mode).then_some(src);
        if skip.is_some() && r.msg_type() == crate::wire::overlay::MSG_CTM_REQUEST {
            self.link_if_nearer(src, r.payload());
        }
        let (hop, final_) = self.pick_hop(mode, dst, skip, r.flags() & FLAG_FINAL != 0);
        if final_ {
            r.set_flags(r.flags() | FLAG_FINAL);
        }
        if let Some(peer) = hop {
            if r.hops() >= r.ttl() {
                self.stats.dropped_ttl += 1;
                return Route::Drop;
            }
            r.set_hops(r.hops() + 1);
            self.stats.forwarded += 1;
            return Route::Forward(peer);
        }
        match mode {
            Mode::Exact if dst != self.me => {
                self.stats.dropped_no_route += 1;
                Route::Drop
            }
            _ => Route::Deliver,
        }
    }

    /// Handles a routed message delivered to this node.
    pub fn handle_delivered(&mut self, now: Instant, msg: &[u8]) {
        let Ok(r) = Routed::new_checked(msg) else {
            self.stats.dropped_malformed += 1;
            return;
        };
        match OverlayMsg::parse(r.msg_type(), r.payload()) {
            Ok(m) => self.deliver(now, r.src(), r.hops(), m),
            Err(_) => self.stats.dropped_malformed += 1,
        }
    }

    fn deliver(&mut self, now: Instant, src: Addr, hops: u8, msg: OverlayMsg) {
        self.stats.delivered += 1;
        match msg {
            OverlayMsg::CtmRequest {
                purpose,
                key,
                endpoints,
                init,
            } => {
                if key == self.key || Addr::of_key(&key) != src {
                    self.stats.dropped_malformed += 1;
                    return;
                }
                if let (false, false, Some(&endpoint)) =
                    (init.is_empty(), self.is_linked(src), endpoints.first())
                {
                    // A new link in one round trip: answer the init. Our
                    // neighbours go to the requester once the link is up.
                    self.actions.push(Action::AnswerInit { init, endpoint });
                    return;
                }
                let reply = OverlayMsg::CtmReply {
                    purpose,
                    key: self.key,
                    endpoints: self.endpoints.clone(),
                    neighbours: self.records_near(src, Some(src)),
                };
                self.send_routed(now, Mode::Exact, src, &reply);
                // Link from this side too: with NATs, both sides sending at
                // once is the hole punch.
                if let Some(&ep) = endpoints.first() {
                    self.actions.push(Action::Link {
                        node: NodeRecord { key, endpoint: ep },
                    });
                }
            }
            OverlayMsg::CtmReply {
                purpose,
                key,
                endpoints,
                neighbours,
            } => {
                if Addr::of_key(&key) != src {
                    self.stats.dropped_malformed += 1;
                    return;
                }
                self.pending.retain(|p| p.purpose != purpose);
                if let Some(&ep) = endpoints.first() {
                    let reasons = if purpose == reason::SHORTCUT {
                        reason::SHORTCUT
                    } else {
                        0
                    };
                    self.want(now, NodeRecord { key, endpoint: ep }, reasons);
                }
                self.consider_neighbours(now, &neighbours);
            }
            OverlayMsg::EchoRequest { nonce, stamp } => {
                self.send_routed(
                    now,
                    Mode::Exact,
                    src,
                    &OverlayMsg::EchoReply { nonce, stamp },
                );
            }
            OverlayMsg::EchoReply { nonce, stamp } => {
                self.stats.echo_replies += 1;
                self.stats.echo_reply_hops += u64::from(hops);
                let rtt = now.saturating_since(Instant::from_micros(stamp));
                if self.echo_results.len() < 100_000 {
                    self.echo_results.insert(nonce, (hops, rtt));
                }
            }
        }
    }

    fn is_linked(&self, a: Addr) -> bool {
        self.table.get(a).is_some()
    }

    /// A connect-to-me we sent was answered by a handshake with `key`: the
    /// link that comes up gets the reasons the request was for.
    pub fn ctm_linked(&mut self, now: Instant, key: NodeKey, purpose: u8) {
        self.pending.retain(|p| p.purpose != purpose);
        let reasons = if purpose == reason::SHORTCUT {
            reason::SHORTCUT
        } else {
            0
        };
        let addr = Addr::of_key(&key);
        match self.table.get_mut(addr) {
            Some(c) => c.mine |= reasons,
            None => self.wanted.entry(addr).or_insert((0, now)).0 |= reasons,
        }
    }

    /// Starts an echo to the node closest to `dst` (a routed ping).
    pub fn echo(&mut self, now: Instant, dst: Addr, mode: Mode, nonce: u64) {
        let msg = OverlayMsg::EchoRequest {
            nonce,
            stamp: now.as_micros(),
        };
        self.send_routed(now, mode, dst, &msg);
    }

    /// A node looking for its own neighbours passed through us: if it
    /// would be one of our nearest, link to it. This is what stitches the
    /// two chains of a loopy ring together: the last hops of a greedy route
    /// to an address run through the nodes next to it.
    fn link_if_nearer(&mut self, src: Addr, payload: &[u8]) {
        if src == self.me || self.table.get(src).is_some() || self.wanted.contains_key(&src) {
            return;
        }
        if !self.would_be_near(src) {
            return;
        }
        if let Ok(OverlayMsg::CtmRequest { key, endpoints, .. }) =
            OverlayMsg::parse(crate::wire::overlay::MSG_CTM_REQUEST, payload)
        {
            if let (true, Some(&endpoint)) = (Addr::of_key(&key) == src, endpoints.first()) {
                self.stats.stitched += 1;
                log::debug!("{} stitching {}", self.me, src);
                self.actions.push(Action::Link {
                    node: NodeRecord { key, endpoint },
                });
            }
        }
    }

    // ----- direct link messages -----

    /// A neighbours message from `peer`.
    pub fn handle_neighbours(&mut self, now: Instant, peer: PeerIdx, msg: &[u8]) {
        let Ok(n) = Neighbours::parse(msg) else {
            self.stats.dropped_malformed += 1;
            return;
        };
        if let Some(c) = self.table.by_peer_mut(peer) {
            c.theirs = n.reasons;
        }
        self.consider_neighbours(now, &n.records);
    }

    /// A connection list from `peer`: kept for lookahead routing.
    pub fn handle_conn_list(&mut self, peer: PeerIdx, msg: &[u8]) {
        let Ok(l) = ConnList::parse(msg) else {
            self.stats.dropped_malformed += 1;
            return;
        };
        if let Some(c) = self.table.by_peer_mut(peer) {
            c.nbrs = l.prefixes;
        }
    }

    /// Sends our connection list to the links that have not seen its
    /// latest version: a change marks every link (at most once per
    /// `conn_list_interval`), and each heartbeat serves a few of them, so a
    /// busy moment costs a bounded burst of messages and buffers.
    fn send_conn_lists(&mut self, now: Instant) {
        if self.conns_dirty && now >= self.conns_sent + self.cfg.conn_list_interval {
            self.conns_dirty = false;
            self.conns_sent = now;
            self.table.iter_mut().for_each(|c| c.list_stale = true);
        }
        let stale: SmallVec<[PeerIdx; CONN_LIST_BURST]> = self
            .table
            .iter_mut()
            .filter(|c| c.list_stale)
            .take(CONN_LIST_BURST)
            .map(|c| {
                c.list_stale = false;
                c.peer
            })
            .collect();
        if stale.is_empty() {
            return;
        }
        let list = ConnList {
            prefixes: self
                .table
                .iter()
                .take(MAX_CONN_LIST)
                .map(|c| (c.addr.0 >> 64) as u64)
                .collect(),
        };
        let mut msg = Vec::with_capacity(4 + list.prefixes.len() * 8);
        list.emit(&mut msg);
        for peer in stale {
            self.actions.push(Action::Send {
                peer,
                msg: msg.clone(),
            });
        }
    }

    /// Links to any offered node that would be among our wanted near neighbours.
    fn consider_neighbours(&mut self, now: Instant, records: &[NodeRecord]) {
        for rec in records {
            let a = Addr::of_key(&rec.key);
            if rec.key == self.key || self.table.get(a).is_some() || self.wanted.contains_key(&a) {
                continue;
            }
            if self.would_be_near(a) {
                self.want(now, *rec, reason::NEAR);
            }
        }
    }

    /// Would `a` be among the `near_wanted` nearest going right or going
    /// left, counting the links already being set up? (By rank on each
    /// side, as the near reasons are given: in a small ring a node can be
    /// our second on the left yet nearer by the right-hand way round.)
    fn would_be_near(&self, a: Addr) -> bool {
        let me = self.me;
        let (rd, ld) = (me.right_dist(a), me.left_dist(a));
        let known = || {
            self.table
                .iter()
                .map(|c| c.addr)
                .chain(self.wanted.keys().copied())
        };
        let closer_right = known().filter(|&x| me.right_dist(x) < rd).count();
        let closer_left = known().filter(|&x| me.left_dist(x) < ld).count();
        closer_right < self.cfg.near_wanted || closer_left < self.cfg.near_wanted
    }

    /// Up to 8 of our connections nearest `target` (4 each side), as records.
    fn records_near(&self, target: Addr, skip: Option<Addr>) -> Records {
        let mut out = Records::new();
        let per_side = MAX_NEIGHBOURS / 2;
        for c in self
            .table
            .right_of(target, per_side)
            .chain(self.table.left_of(target, per_side))
        {
            if Some(c.addr) == skip || out.len() >= MAX_NEIGHBOURS {
                continue;
            }
            let rec = NodeRecord {
                key: c.key,
                endpoint: c.endpoint,
            };
            if !out.contains(&rec) {
                out.push(rec);
            }
        }
        out
    }

    fn send_neighbours(&mut self, peer: PeerIdx, addr: Addr, with_records: bool) {
        let reasons = self.table.get(addr).map_or(0, |c| c.mine);
        let records = if with_records {
            self.records_near(addr, Some(addr))
        } else {
            Records::new()
        };
        let mut msg = Vec::with_capacity(4 + records.len() * 52);
        Neighbours { reasons, records }.emit(&mut msg);
        if let Some(c) = self.table.get_mut(addr) {
            c.announced = reasons;
        }
        self.actions.push(Action::Send { peer, msg });
    }

    // ----- maintenance -----

    /// Recomputes our reasons for every link.
    fn update_reasons(&mut self, now: Instant) {
        let k = self.cfg.near_wanted;
        let near: Vec<Addr> = self
            .table
            .right_of(self.me, k)
            .chain(self.table.left_of(self.me, k))
            .map(|c| c.addr)
            .collect();
        let settled = self.table.len() >= 2 * self.cfg.near_wanted;
        for c in self.table.iter_mut() {
            if near.contains(&c.addr) {
                c.mine |= reason::NEAR;
            } else {
                c.mine &= !reason::NEAR;
            }
            if settled
                && c.mine & reason::LEAF != 0
                && now.saturating_since(c.since) >= self.cfg.trim_after
            {
                c.mine &= !reason::LEAF;
            }
        }
    }

    /// Runs the maintenance if it is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now < self.next_heartbeat {
            return;
        }
        self.next_heartbeat = now + self.cfg.heartbeat;
        self.update_reasons(now);
        let timeout = self.cfg.ctm_timeout;
        self.pending
            .retain(|p| now.saturating_since(p.sent) < timeout);
        self.wanted
            .retain(|_, (_, t)| now.saturating_since(*t) < self.cfg.link_timeout);
        if self.table.is_empty() {
            return;
        }
        // Announce changed reasons.
        let changed: Vec<(PeerIdx, Addr)> = self
            .table
            .iter()
            .filter(|c| c.mine != c.announced)
            .map(|c| (c.peer, c.addr))
            .collect();
        for (peer, addr) in changed {
            self.send_neighbours(peer, addr, false);
        }
        // Near: ask the ring who is closest to us; often while our
        // neighbourhood is changing, rarely once it has been stable.
        let snapshot = [self.left(), self.right()];
        if snapshot != self.near_snapshot {
            self.near_snapshot = snapshot;
            self.near_changed = now;
        }
        if now >= self.next_near_check && !self.pending.iter().any(|p| p.purpose == reason::NEAR) {
            let settling = now.saturating_since(self.near_changed) < self.cfg.settle_time;
            let every = if settling {
                self.cfg.near_check_fast
            } else {
                self.cfg.near_check
            };
            let jitter = self.rng.below(every.as_micros() as u64 / 4 + 1);
            self.next_near_check = now + every + Duration::from_micros(jitter);
            // Both sides separately: "closest to me" alone is answered by
            // the nearer side and never crosses a gap on the other.
            self.ctm(now, Mode::RightOf, self.me, reason::NEAR);
            self.ctm(now, Mode::LeftOf, self.me, reason::NEAR);
        }
        // Shortcuts: top up towards the desired count, one at a time.
        let have = self
            .table
            .iter()
            .filter(|c| c.mine & reason::SHORTCUT != 0)
            .count();
        let asking = self.pending.iter().any(|p| p.purpose == reason::SHORTCUT);
        if have < self.desired_shortcuts() && !asking {
            let target = self.shortcut_target();
            self.ctm(now, Mode::Closest, target, reason::SHORTCUT);
        }
        self.send_conn_lists(now);
        // Trim links nobody needs. While the neighbourhood is settling the
        // next nearest (up to near_kept a side) are spared: they are the
        // spares a crash of a near neighbour falls back on.
        let settling = now.saturating_since(self.near_changed) < self.cfg.settle_time;
        let k = self.cfg.near_kept;
        let spare: Vec<Addr> = if settling {
            self.table
                .right_of(self.me, k)
                .chain(self.table.left_of(self.me, k))
                .map(|c| c.addr)
                .collect()
        } else {
            Vec::new()
        };
        let trim: Vec<PeerIdx> = self
            .table
            .iter()
            .filter(|c| {
                c.mine == 0
                    && c.theirs == 0
                    && now.saturating_since(c.since) >= self.cfg.trim_after
                    && !spare.contains(&c.addr)
            })
            .map(|c| c.peer)
            .take(TRIM_BURST)
            .collect();
        for peer in trim {
            self.actions.push(Action::Send {
                peer,
                msg: vec![KIND_LEAVE, 0, 0, 0],
            });
            self.actions.push(Action::Close { peer });
        }
    }

    /// A harmonic (1/d) shortcut target, Symphony style.
    fn shortcut_target(&mut self) -> Addr {
        let n = self.estimate_size().max(2.0);
        let p = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let exp = 128.0 - (1.0 - p) * n.log2();
        // At most half the ring: beyond that the other way round is shorter.
        let d = 2f64.powf(exp).min(2f64.powi(127)) as u128;
        if self.rng.next_u64() & 1 == 0 {
            Addr(self.me.0.wrapping_add(d))
        } else {
            Addr(self.me.0.wrapping_sub(d))
        }
    }

    fn ctm(&mut self, now: Instant, mode: Mode, target: Addr, purpose: u8) {
        self.stats.ctm_sent += 1;
        self.pending.push(PendingCtm { purpose, sent: now });
        let msg = OverlayMsg::CtmRequest {
            purpose,
            key: self.key,
            endpoints: self.endpoints.clone(),
            init: Vec::new(),
        };
        // A handshake init rides along when the answer is likely a node we
        // are not linked to yet: shortcuts, and near checks while settling.
        // Stable near checks find the neighbours we have, so they save the
        // ~190 bytes per hop.
        let settling = now.saturating_since(self.near_changed) < self.cfg.settle_time;
        let init_for = (purpose == reason::SHORTCUT || settling).then_some(purpose);
        // Looking for our own neighbours, start from a random connection:
        // greedy routing from our nearest link could end in the same false
        // pocket of a loopy ring that we are trying to get out of.
        let via = if purpose == reason::NEAR && !self.table.is_empty() {
            let k = self.rng.below(self.table.len() as u64) as usize;
            self.table.iter().nth(k).map(|c| c.peer)
        } else {
            None
        };
        self.send_routed_via(now, mode, target, &msg, via, init_for);
    }
}

#[cfg(test)]
mod tests;
