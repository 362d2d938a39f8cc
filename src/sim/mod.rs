//! A deterministic many-node simulator running the real [`Node`].
//!
//! One process, no sockets: a virtual clock and a calendar of datagram
//! deliveries and node wake-ups (`queue`), run a window at a time on one
//! thread or two (`engine`). Every node is the same sans-IO core the
//! daemon runs, with real handshakes and encryption (or, on request, cheap
//! stand-ins for the public-key operations: `cheap_crypto`). Given the
//! same seed a run replays exactly, on any number of threads (ephemeral
//! keys differ, but they never steer a decision). Latency, loss,
//! partitions and crashes are the network's; the metrics (ring
//! consistency, route success, hops, bytes) read the nodes.

mod certs;
pub mod cheap_crypto;
mod engine;
pub mod failover;
pub mod metrics;
pub mod nat;
mod queue;
pub mod scenario;
pub mod subring;

use crate::crypto::{Identity, Seed};
use crate::node::{Node, NodeConfig, Timers};
use crate::overlay::{Addr, OverlayConfig};
use crate::rand::{Rng, SeededRng};
use crate::time::Instant;
pub use certs::SimCerts;
use engine::{Datagram, Outbox, Wire};
use queue::{Calendar, Entry, WAKE};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// How the virtual network behaves.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// One-way latency of every link.
    pub latency: Duration,
    /// Extra random delay, uniform in 0..jitter (breaks ties, reorders a little).
    pub jitter: Duration,
    /// Probability that a datagram is lost.
    pub loss: f64,
}

impl Default for NetConfig {
    fn default() -> NetConfig {
        NetConfig {
            latency: Duration::from_millis(100),
            jitter: Duration::from_millis(2),
            loss: 0.0,
        }
    }
}

struct SimNode {
    node: Node,
    endpoint: SocketAddr,
    seed: u64,
    alive: bool,
    wake: Option<Instant>,
    /// Events this node made (the tie-breaking keys, `engine::key`).
    made: u64,
    /// The network's random draws for what this node sends (loss,
    /// jitter): its own, so no other node's order can change them.
    rng: SeededRng,
    tx_bytes: u64,
    tx_datagrams: u64,
    /// Frames written to the TAP, kept when `Sim::keep_frames` > 0.
    tap: Vec<Vec<u8>>,
    /// The node's events since the test last took them: DHT results and
    /// echo replies by nonce (the node's own queue is bounded; these are
    /// as many as the test asked for).
    dht: Vec<crate::overlay::dht::client::Event>,
    echoes: std::collections::BTreeMap<u64, (u8, Duration)>,
    /// Map-reduce tasks this node started, once done.
    tasks: std::collections::BTreeMap<u64, (crate::manage::Outcome, Duration)>,
    /// Sub-rings: the networks this host runs beside its public node,
    /// and the frames each network's node wrote (as `tap`).
    nets: Option<Box<crate::host::Networks>>,
    net_taps: Vec<Vec<Vec<u8>>>,
}

pub struct Sim {
    now: Instant,
    nodes: Vec<SimNode>,
    queue: Calendar,
    /// Datagrams in flight, by the calendar entries' slots.
    flight: Vec<Option<Datagram>>,
    free_flight: Vec<u32>,
    /// Where nodes run outside `run_until` (a test's call) put their
    /// output, and the main thread's reusable buffers.
    out: Outbox,
    /// Events the test driver queued itself.
    driver_made: u64,
    rng: SeededRng,
    /// Threads that run the nodes (1 or 2; same results either way).
    pub threads: usize,
    /// Events run so far, and windows run on two threads.
    pub events: u64,
    pub parallel_windows: u64,
    /// The slab of datagrams in flight is compacted once it has this many
    /// slots, three quarters of them free (`compact_flight`).
    pub compact_min: usize,
    /// Compactions so far.
    pub compactions: u64,
    pub net: NetConfig,
    pub overlay: OverlayConfig,
    pub timers: Timers,
    /// Pool buffers of the pool lent to the node being run (and of each
    /// sub-ring node's own pool). The sim carries no data, only control
    /// bursts (peak ~30, see `pool_high_water`); 60 leaves twice that.
    pub pool_slots: u32,
    /// Each node's peer table limit (the daemon's `max-peers`).
    pub max_peers: usize,
    /// Deliveries dropped because the target was down or the packet lost.
    pub lost: u64,
    /// Timer wake-ups after which the node's deadline was still not in the
    /// future: a node that does not clear its own timer (a bug detector).
    pub stuck_wakes: u64,
    pub stuck_node: Option<usize>,
    /// The first stuck node's timers, as it saw them then.
    pub stuck_debug: Option<String>,
    /// Run every node as a VPN member of this network (`None`: overlay only).
    pub vpn: Option<crate::vpn::VpnConfig>,
    /// Certificate mode: every node gets a certificate from this CA.
    pub certs: Option<SimCerts>,
    /// Routes (exit gateways, subnet routes, clients) for these nodes;
    /// the others have none.
    pub routes: HashMap<u32, crate::routes::RoutesConfig>,
    /// Keep frames the nodes write to their TAPs (for VPN tests), up to
    /// this many per node; 0 discards them.
    pub keep_frames: usize,
    /// NATs in front of nodes (`None`: every node is public).
    pub nat: Option<nat::NatModel>,
    /// Per-pair latencies from positions (`None`: `net.latency` for all).
    pub geo: Option<nat::Geography>,
    /// Count datagrams any node sends to this IP (tests: "nothing is ever
    /// sent there"), in `watched`.
    pub watch: Option<std::net::IpAddr>,
    pub watched: u64,
    /// Pairs of nodes (lower index first) whose direct datagrams vanish: a
    /// path black-holed in the middle (a firewall rule, a broken route),
    /// while both still reach everyone else.
    pub blocked: std::collections::HashSet<(u32, u32)>,
    /// Datagrams from node `.0` to node `.1` are held here instead of
    /// delivered (source as sent, bytes): a test reads or rewrites what is
    /// on the wire, then hands them on with `deliver_raw`.
    pub hold: Option<(u32, u32)>,
    pub held: Vec<(SocketAddr, Vec<u8>)>,
    /// Public-key operations on stand-ins (`cheap_crypto`): set with
    /// `set_cheap_crypto`.
    cheap_crypto: bool,
    /// The most buffers a lent pool had in use at once.
    lent_high_water: u32,
}

impl Drop for Sim {
    fn drop(&mut self) {
        if self.cheap_crypto {
            cheap_crypto::install(false);
        }
    }
}

thread_local! {
    /// The node whose input the simulator is running, and the virtual
    /// time: for log lines (`trace_context`), since every node logs into
    /// one stream.
    static CONTEXT: std::cell::Cell<(u32, u64)> = const { std::cell::Cell::new((u32::MAX, 0)) };
}

/// The node running (index; `u32::MAX` outside the simulator) and the
/// virtual time in µs, for a log format in tests.
pub fn trace_context() -> (u32, u64) {
    CONTEXT.with(|c| c.get())
}

pub(crate) fn set_context(node: u32, now: Instant) {
    CONTEXT.with(|c| c.set((node, now.as_micros())));
}

/// Runs `f` (the simulator's own bookkeeping: buffers for datagrams in
/// flight, its queues) outside the running node's context, so a tool
/// charging allocations to nodes (bench/cost.rs) does not charge it.
pub(crate) fn outside_node<R>(f: impl FnOnce() -> R) -> R {
    let was = CONTEXT.with(|c| c.replace((u32::MAX, c.get().1)));
    let r = f();
    CONTEXT.with(|c| c.set(was));
    r
}

/// The simulated underlay address of node `i` (inside 198.18.0.0/15).
pub fn endpoint_of(i: u32) -> SocketAddr {
    let ip = Ipv4Addr::from(u32::from(FIRST_NODE) + i);
    SocketAddr::new(ip.into(), SIM_PORT)
}

const FIRST_NODE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const SIM_PORT: u16 = 5140;

/// The node whose own endpoint `addr` is (of the first `nodes`): the
/// inverse of `endpoint_of`, by arithmetic (a lookup per datagram sent).
fn node_at(addr: SocketAddr, nodes: u32) -> Option<u32> {
    let SocketAddr::V4(a) = addr else {
        return None;
    };
    let i = u32::from(*a.ip()).wrapping_sub(u32::from(FIRST_NODE));
    (a.port() == SIM_PORT && i < nodes).then_some(i)
}

impl Sim {
    pub fn new(seed: u64, net: NetConfig) -> Sim {
        Sim {
            now: Instant::ZERO,
            nodes: Vec::new(),
            queue: Calendar::default(),
            flight: Vec::new(),
            free_flight: Vec::new(),
            out: Outbox::default(),
            driver_made: 0,
            rng: SeededRng::new(seed),
            threads: 1,
            events: 0,
            parallel_windows: 0,
            compact_min: 1 << 16,
            compactions: 0,
            net,
            overlay: OverlayConfig::default(),
            timers: crate::node::Timers::overlay_links(),
            pool_slots: 60,
            max_peers: NodeConfig::default().max_peers,
            lost: 0,
            stuck_wakes: 0,
            stuck_node: None,
            stuck_debug: None,
            vpn: None,
            certs: None,
            routes: HashMap::new(),
            keep_frames: 0,
            watch: None,
            watched: 0,
            blocked: Default::default(),
            hold: None,
            held: Vec::new(),
            nat: None,
            geo: None,
            cheap_crypto: false,
            lent_high_water: 0,
        }
    }

    /// Runs the nodes' public-key operations on cheap stand-ins (see
    /// `cheap_crypto`: same decisions, no secrecy) on this thread, the
    /// one that drives the simulator, until the simulator is dropped.
    pub fn set_cheap_crypto(&mut self, on: bool) {
        self.cheap_crypto = on;
        cheap_crypto::install(on);
    }

    pub fn now(&self) -> Instant {
        self.now
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i].node
    }

    pub fn is_alive(&self, i: usize) -> bool {
        self.nodes[i].alive
    }

    pub fn alive(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(|&i| self.nodes[i].alive)
    }

    pub fn addr(&self, i: usize) -> Addr {
        self.nodes[i].node.overlay().map_or(Addr(0), |o| o.addr())
    }

    pub fn rng(&mut self) -> &mut SeededRng {
        &mut self.rng
    }

    /// Bytes sent by node `i` since it (re)started.
    pub fn tx_bytes(&self, i: usize) -> u64 {
        self.nodes[i].tx_bytes
    }

    /// Node `i`'s drops for the reason called `name` (as in status).
    pub fn node_drops(&self, i: usize, name: &str) -> u64 {
        crate::node::DropReason::ALL
            .iter()
            .find(|r| r.name() == name)
            .map_or(0, |&r| self.nodes[i].node.stats().drops(r))
    }

    pub fn tx_datagrams(&self, i: usize) -> u64 {
        self.nodes[i].tx_datagrams
    }

    fn build(&self, seed: u64, endpoint: SocketAddr, bootstrap: Vec<SocketAddr>) -> Node {
        let mut s = SeededRng::new(seed);
        let mut key = [0u8; 32];
        for chunk in key.chunks_mut(8) {
            chunk.copy_from_slice(&s.next_u64().to_le_bytes());
        }
        let (trust, cert) = match &self.certs {
            Some(c) => {
                let me = Identity::from_seed(&Seed(key)).public();
                let (trust, cert) = c.for_node(me, self.index_of(endpoint));
                (Some(trust), Some(cert))
            }
            None => (None, None),
        };
        let cfg = NodeConfig {
            trust,
            cert,
            timers: self.timers.clone(),
            // Lent by the simulator while the node runs (`engine::lend`).
            pool_slots: 0,
            max_peers: self.max_peers,
            wall_origin_us: 1_800_000_000_000_000 + self.now.as_micros(),
            rng_seed: s.next_u64(),
            overlay: Some(self.overlay.clone()),
            bootstrap,
            endpoints: vec![endpoint.into()],
            trust_any: true,
            vpn: self.vpn.clone(),
            routes: self.routes.get(&self.index_of(endpoint)).cloned(),
            ..NodeConfig::default()
        };
        Node::new(Identity::from_seed(&Seed(key)), cfg, self.now)
    }

    /// The index of the node at `endpoint` (the next index for a new one).
    fn index_of(&self, endpoint: SocketAddr) -> u32 {
        node_at(endpoint, self.nodes.len() as u32).unwrap_or(self.nodes.len() as u32)
    }

    /// Adds and starts a node that knows the given bootstrap endpoints.
    /// Room for `n` more nodes at once: a mass join's node table is sized
    /// to fit, not doubled past it.
    pub fn reserve_nodes(&mut self, n: usize) {
        self.nodes.reserve_exact(n);
    }

    pub fn add_node(&mut self, bootstrap: Vec<SocketAddr>) -> usize {
        let i = self.nodes.len() as u32;
        let endpoint = endpoint_of(i);
        let seed = self.rng.next_u64();
        if let Some(g) = self.geo.as_mut() {
            g.place(i, &mut self.rng);
        }
        let node = self.build(seed, endpoint, bootstrap);
        self.nodes.push(SimNode {
            node,
            endpoint,
            seed,
            alive: true,
            wake: None,
            made: 0,
            rng: SeededRng::new(seed ^ 0x6e65_7477_6f72_6b00),
            tx_bytes: 0,
            tx_datagrams: 0,
            tap: Vec::new(),
            dht: Vec::new(),
            echoes: Default::default(),
            tasks: Default::default(),
            nets: None,
            net_taps: Vec::new(),
        });
        self.schedule_wake(i, self.now);
        i as usize
    }

    /// Replaces node `i`'s bootstrap list (before it has started linking).
    pub fn set_bootstrap(&mut self, i: usize, bootstrap: Vec<SocketAddr>) {
        let n = &self.nodes[i];
        self.nodes[i].node = self.build(n.seed, n.endpoint, bootstrap);
    }

    /// `k` distinct random endpoints of live nodes (other than `not`).
    pub fn random_bootstraps(&mut self, k: usize, not: Option<usize>) -> Vec<SocketAddr> {
        // Behind NATs only public nodes can be bootstraps.
        let alive: Vec<usize> = self
            .alive()
            .filter(|&i| Some(i) != not && self.is_public(i))
            .collect();
        let mut out = Vec::new();
        for _ in 0..k.min(alive.len()) * 4 {
            if out.len() >= k.min(alive.len()) {
                break;
            }
            let e = self.nodes[alive[self.rng.below(alive.len() as u64) as usize]].endpoint;
            if !out.contains(&e) {
                out.push(e);
            }
        }
        out
    }

    /// Whether node `i` is reachable at its own endpoint (no NAT).
    pub fn is_public(&self, i: usize) -> bool {
        self.nat
            .as_ref()
            .map_or(true, |m| m.kind(i as u32) == nat::SimNat::Public)
    }

    /// One-way latency from node `a` to node `b`.
    pub fn latency(&self, a: usize, b: usize) -> Duration {
        match &self.geo {
            Some(g) => g.latency(a as u32, b as u32),
            None => self.net.latency,
        }
    }

    /// Stops node `i` at once (no goodbye): its packets vanish.
    pub fn crash(&mut self, i: usize) {
        self.nodes[i].alive = false;
        self.nodes[i].wake = None;
    }

    /// Stops node `i` gracefully: it tells its links it is leaving.
    pub fn leave(&mut self, i: usize) {
        self.on_node(i, |n, now| {
            if let Some(nets) = n.nets.as_mut() {
                nets.leave(now);
            }
            n.node.leave(now);
        });
        self.crash(i);
    }

    /// Restarts node `i` with its old identity and fresh state.
    pub fn restart(&mut self, i: usize, bootstrap: Vec<SocketAddr>) {
        let n = &self.nodes[i];
        let node = self.build(n.seed, n.endpoint, bootstrap);
        let n = &mut self.nodes[i];
        n.node = node;
        n.nets = None;
        n.net_taps.clear();
        n.alive = true;
        n.wake = None;
        n.tx_bytes = 0;
        n.tx_datagrams = 0;
        self.schedule_wake(i as u32, self.now);
    }

    /// Switches neighbour-of-neighbour routing on every node.
    pub fn set_lookahead(&mut self, on: bool) {
        self.overlay.lookahead = on;
        for n in &mut self.nodes {
            if let Some(ov) = n.node.overlay_mut() {
                ov.set_lookahead(on);
            }
        }
    }

    /// Runs `f` on node `i`'s overlay (a DHT operation, say) and sends what
    /// it produced.
    pub fn with_overlay<R>(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut crate::overlay::Overlay, Instant) -> R,
    ) -> Option<R> {
        self.on_node(i, |n, now| n.node.with_overlay(now, |ov| f(ov, now)))
    }

    /// Runs `f` on node `i` and sends what it produced.
    pub fn with_node<R>(&mut self, i: usize, f: impl FnOnce(&mut Node, Instant) -> R) -> R {
        self.on_node(i, |n, now| f(&mut n.node, now))
    }

    /// Has node `i` read `frame` from its TAP (the host sent it).
    pub fn inject_frame(&mut self, i: usize, frame: &[u8]) {
        let taken = self.on_node(i, |n, now| match n.node.pool_mut().alloc_with(frame) {
            Some(buf) => {
                n.node.handle_frame(now, buf);
                true
            }
            None => false,
        });
        if !taken {
            self.lost += 1;
        }
    }

    /// A UDP datagram from `src` to `dst` as node `i`'s host would write
    /// it to its TAP: an Ethernet frame to the virtual router (or to
    /// everyone, for a broadcast or multicast address).
    pub fn host_udp_frame(&self, i: usize, src: Ipv4Addr, dst: Ipv4Addr, body: &[u8]) -> Vec<u8> {
        udp_frame(&self.node(i).public_key(), src, dst, body)
    }

    /// The frames node `i` wrote to its TAP since the last call.
    pub fn take_frames(&mut self, i: usize) -> Vec<Vec<u8>> {
        core::mem::take(&mut self.nodes[i].tap)
    }

    /// Delivers `bytes` to node `to` now, as if sent from `from`.
    pub fn deliver_raw(&mut self, to: usize, from: SocketAddr, bytes: Vec<u8>) {
        self.driver_made += 1;
        let slot = self.out.payloads.len() as u32;
        self.out.payloads.push(Some((from, bytes)));
        self.out.entries.push(Entry {
            at: self.now.as_micros(),
            key: engine::key(engine::DRIVER, self.driver_made),
            node: to as u32,
            slot,
        });
        self.merge_out();
    }

    /// Node `i`'s finished DHT operations since the last call.
    pub fn take_dht_results(&mut self, i: usize) -> Vec<crate::overlay::dht::client::Event> {
        core::mem::take(&mut self.nodes[i].dht)
    }

    /// Starts a map-reduce task at node `i` (over the whole ring).
    pub fn start_task(
        &mut self,
        i: usize,
        kind: crate::wire::task::TaskKind,
        args: &[u8],
    ) -> Option<u64> {
        self.on_node(i, |n, now| n.node.start_task(now, kind, args))
    }

    /// Starts the sequential crawler at node `i` (at most `limit` members).
    pub fn start_walk(&mut self, i: usize, limit: usize) -> Option<u64> {
        self.on_node(i, |n, now| n.node.start_walk(now, limit))
    }

    /// Task `id`'s reduced result at node `i`, once done, and how long it
    /// took.
    pub fn task_result(&self, i: usize, id: u64) -> Option<(crate::wire::task::Reduced, Duration)> {
        let (o, took) = self.nodes[i].tasks.get(&id)?;
        Some((o.reduced.clone(), *took))
    }

    /// Task `id`'s whole outcome at node `i` (a crawl's descriptions).
    pub fn task_outcome(&self, i: usize, id: u64) -> Option<&(crate::manage::Outcome, Duration)> {
        self.nodes[i].tasks.get(&id)
    }

    /// The echo reply node `i` got for `nonce`: links crossed and RTT.
    pub fn echo_result(&self, i: usize, nonce: u64) -> Option<(u8, Duration)> {
        self.nodes[i].echoes.get(&nonce).copied()
    }

    /// Sends a routed echo from `src` to the node with `dst`'s address.
    pub fn echo(&mut self, src: usize, dst: Addr, nonce: u64) {
        self.on_node(src, |n, now| {
            n.node
                .overlay_echo(now, dst, crate::wire::overlay::Mode::Exact, nonce)
        });
    }

    fn schedule_wake(&mut self, i: impl Into<u32> + Copy, at: Instant) {
        let i: u32 = i.into();
        engine::schedule_wake(&mut self.nodes[i as usize], i, at, &mut self.out);
        self.merge_out();
    }

    /// The nodes, and the network's facts and NATs they run against.
    fn split(&mut self) -> (&mut Vec<SimNode>, Wire<'_>, Option<&mut nat::NatModel>) {
        let wire = Wire {
            net: &self.net,
            geo: self.geo.as_ref(),
            nodes: self.nodes.len() as u32,
            blocked: &self.blocked,
            watch: self.watch,
            hold: self.hold,
            keep_frames: self.keep_frames,
            pool_slots: self.pool_slots,
        };
        (&mut self.nodes, wire, self.nat.as_mut())
    }

    /// Runs `f` on host `i` now (its pool lent), then moves what the node
    /// made onto the network.
    fn on_node<R>(&mut self, i: usize, f: impl FnOnce(&mut SimNode, Instant) -> R) -> R {
        let now = self.now;
        set_context(i as u32, now);
        let mut out = std::mem::take(&mut self.out);
        let (nodes, wire, mut nat) = self.split();
        let n = &mut nodes[i];
        engine::lend(n, &mut out, wire.pool_slots);
        let r = f(n, now);
        engine::flush(n, i as u32, now, &wire, &mut nat, &mut out);
        engine::take_back(n, &mut out);
        self.out = out;
        self.merge_out();
        r
    }

    /// Moves node `i`'s outputs onto the network and re-arms its timer.
    fn flush(&mut self, i: u32) {
        self.on_node(i as usize, |_, _| ());
    }

    /// Queues what `self.out` holds.
    fn merge_out(&mut self) {
        let mut out = std::mem::take(&mut self.out);
        self.merge(&mut out);
        self.out = out;
    }

    /// Queues an outbox's events (and its datagrams), and adds up its
    /// counters.
    fn merge(&mut self, out: &mut Outbox) {
        outside_node(|| self.merge_inner(out));
    }

    fn merge_inner(&mut self, out: &mut Outbox) {
        out.entries.append(&mut out.wakes);
        for mut e in out.entries.drain(..) {
            if e.slot != WAKE {
                let d = out.payloads[e.slot as usize].take();
                e.slot = match self.free_flight.pop() {
                    Some(k) => {
                        self.flight[k as usize] = d;
                        k
                    }
                    None => {
                        self.flight.push(d);
                        (self.flight.len() - 1) as u32
                    }
                };
            }
            self.queue.push(e);
        }
        out.payloads.clear();
        let t = std::mem::take(&mut out.tally);
        self.lost += t.lost;
        self.watched += t.watched;
        self.stuck_wakes += t.stuck_wakes;
        if let Some((_, node, debug)) = t.stuck {
            self.stuck_node.get_or_insert(node as usize);
            if self.stuck_debug.is_none() {
                self.stuck_debug = debug;
            }
        }
        self.held.extend(t.held);
        self.lent_high_water = self.lent_high_water.max(t.pool_high_water);
        self.events += t.events;
    }

    /// Runs events up to and including time `until`, a window at a time
    /// (see `engine`).
    pub fn run_until(&mut self, until: Instant) {
        let until_us = until.as_micros();
        let mut window: Vec<(Entry, Option<Datagram>)> = Vec::new();
        while let Some(first) = self.queue.peek_at() {
            if first > until_us {
                break;
            }
            let (_, wire, _) = self.split();
            let end = (first + wire.lookahead()).min(until_us + 1);
            outside_node(|| {
                while self.queue.peek_at().is_some_and(|t| t < end) {
                    let Some(e) = self.queue.pop() else {
                        break;
                    };
                    let payload = (e.slot != WAKE).then(|| {
                        self.free_flight.push(e.slot);
                        self.flight[e.slot as usize].take()
                    });
                    window.push((e, payload.flatten()));
                }
            });
            let last = window.last().map_or(first, |(e, _)| e.at);
            self.run_window(std::mem::take(&mut window), end);
            self.compact_flight();
            self.now = self.now.max(Instant::ZERO + Duration::from_micros(last));
        }
        self.now = self.now.max(until);
    }

    /// Once a burst (a mass join) is over, moves the datagrams still in
    /// flight to the front of their slab and gives the rest back: slots
    /// are reused last-freed first, so the few in use at steady state
    /// would otherwise keep the burst's whole slab.
    fn compact_flight(&mut self) {
        let (len, free) = (self.flight.len(), self.free_flight.len());
        if len == 0 || len < self.compact_min || free * 4 < len * 3 {
            return;
        }
        self.compactions += 1;
        outside_node(|| {
            let mut is_free = vec![false; len];
            for &k in &self.free_flight {
                is_free[k as usize] = true;
            }
            let mut new_slot = vec![WAKE; len];
            let mut kept = Vec::with_capacity((len - free) * 2);
            for (k, d) in self.flight.drain(..).enumerate() {
                if !is_free[k] {
                    new_slot[k] = kept.len() as u32;
                    kept.push(d);
                }
            }
            self.flight = kept;
            self.free_flight = Vec::new();
            self.queue.remap_slots(|k| new_slot[k as usize]);
        });
    }

    /// Runs one window's events (all before `end`), split over the
    /// threads when there are enough of them and nothing shared forbids it.
    fn run_window(&mut self, events: Vec<(Entry, Option<Datagram>)>, end: u64) {
        const PARALLEL_MIN: usize = 256;
        let parallel = self.threads > 1
            && events.len() >= PARALLEL_MIN
            && self.nat.is_none()
            && self.hold.is_none();
        let mut out = std::mem::take(&mut self.out);
        let cheap = self.cheap_crypto;
        let (nodes, wire, nat) = self.split();
        if !parallel {
            engine::run_part(nodes, 0, events, end, &wire, nat, &mut out);
            self.out = out;
            return self.merge_out();
        }
        let mid = nodes.len() / 2;
        let (low, high): (Vec<_>, Vec<_>) = events
            .into_iter()
            .partition(|(e, _)| (e.node as usize) < mid);
        let (lo_nodes, hi_nodes) = nodes.split_at_mut(mid);
        let mut other = Outbox::default();
        std::thread::scope(|scope| {
            let wire = &wire;
            let other = &mut other;
            scope.spawn(move || {
                cheap_crypto::install(cheap);
                engine::run_part(hi_nodes, mid as u32, high, end, wire, None, other);
            });
            engine::run_part(lo_nodes, 0, low, end, wire, None, &mut out);
        });
        self.parallel_windows += 1;
        self.merge(&mut other);
        self.out = out;
        self.merge_out();
    }

    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }
}

/// A UDP datagram from `src` to `dst` as the host of the node with key
/// `key` would write it to its TAP: an Ethernet frame to the virtual
/// router (or to everyone, for a broadcast or multicast address).
pub fn udp_frame(
    key: &crate::crypto::NodeKey,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    body: &[u8],
) -> Vec<u8> {
    use crate::wire::ip;
    let dst_mac = if dst.is_broadcast() || dst.is_multicast() {
        [0xff; 6]
    } else {
        crate::vpn::VIRTUAL_MAC.0
    };
    let mut f = Vec::with_capacity(14 + 28 + body.len());
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&crate::vpn::host_mac(key).0);
    f.extend_from_slice(&[8, 0]);
    let mut v4 = [0u8; 20];
    ip::V4Repr {
        src,
        dst,
        proto: ip::PROTO_UDP,
        payload_len: 8 + body.len(),
    }
    .emit(&mut v4);
    f.extend_from_slice(&v4);
    f.extend_from_slice(&[0x30, 0x39, 0x30, 0x39]);
    f.extend_from_slice(&((8 + body.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(body);
    f
}
