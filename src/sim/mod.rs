//! A deterministic many-node simulator running the real [`Node`].
//!
//! One process, no threads, no sockets: a virtual clock and an event heap of
//! datagram deliveries and node wake-ups. Every node is the same sans-IO core
//! the daemon runs, with real handshakes and encryption. Given the same seed
//! a run replays exactly (ephemeral keys differ, but they never steer a
//! decision). Latency, loss, partitions and crashes are the network's; the
//! metrics (ring consistency, route success, hops, bytes) read the nodes.

mod certs;
pub mod failover;
pub mod metrics;
pub mod nat;
pub mod scenario;
pub mod subring;

use crate::crypto::{Identity, Seed};
use crate::node::{Event as NodeEvent, Node, NodeConfig, Timers};
use crate::overlay::{Addr, OverlayConfig};
use crate::rand::{Rng, SeededRng};
use crate::time::Instant;
pub use certs::SimCerts;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
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

#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Deliver {
        to: u32,
        from: SocketAddr,
        bytes: Vec<u8>,
    },
    Wake {
        node: u32,
    },
}

pub struct Sim {
    now: Instant,
    nodes: Vec<SimNode>,
    by_endpoint: BTreeMap<SocketAddr, u32>,
    queue: BinaryHeap<Reverse<(Instant, u64, Event)>>,
    seq: u64,
    rng: SeededRng,
    pub net: NetConfig,
    pub overlay: OverlayConfig,
    pub timers: Timers,
    /// Pool buffers per simulated node. The sim carries no data, only
    /// control bursts (peak ~30, see `pool_high_water`); 60 leaves twice
    /// that and stays under glibc's mmap threshold, so pools come from the
    /// heap, where untouched pages cost nothing (100,000 separate mappings
    /// would exceed the kernel's default map count).
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

fn set_context(node: u32, now: Instant) {
    CONTEXT.with(|c| c.set((node, now.as_micros())));
}

/// The simulated underlay address of node `i` (inside 198.18.0.0/15).
pub fn endpoint_of(i: u32) -> SocketAddr {
    let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 1)) + i);
    SocketAddr::new(ip.into(), 5140)
}

impl Sim {
    pub fn new(seed: u64, net: NetConfig) -> Sim {
        Sim {
            now: Instant::ZERO,
            nodes: Vec::new(),
            by_endpoint: BTreeMap::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            rng: SeededRng::new(seed),
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
        }
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
            pool_slots: self.pool_slots,
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
        self.nodes
            .iter()
            .position(|n| n.endpoint == endpoint)
            .unwrap_or(self.nodes.len()) as u32
    }

    /// Adds and starts a node that knows the given bootstrap endpoints.
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
            tx_bytes: 0,
            tx_datagrams: 0,
            tap: Vec::new(),
            dht: Vec::new(),
            echoes: Default::default(),
            tasks: Default::default(),
            nets: None,
            net_taps: Vec::new(),
        });
        self.by_endpoint.insert(endpoint, i);
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

    /// The node a datagram from `src` to `dst` reaches, if any: a public
    /// node at its endpoint, or a NATed one through its mapping.
    fn route_datagram(&self, src: SocketAddr, dst: SocketAddr) -> Option<u32> {
        match self.by_endpoint.get(&dst) {
            Some(&to) if self.is_public(to as usize) => Some(to),
            // A private endpoint: unreachable from outside its NAT.
            Some(_) => None,
            None => self.nat.as_ref()?.inbound(dst, src),
        }
    }

    /// Stops node `i` at once (no goodbye): its packets vanish.
    pub fn crash(&mut self, i: usize) {
        self.nodes[i].alive = false;
        self.nodes[i].wake = None;
    }

    /// Stops node `i` gracefully: it tells its links it is leaving.
    pub fn leave(&mut self, i: usize) {
        let now = self.now;
        let n = &mut self.nodes[i];
        if let Some(nets) = n.nets.as_mut() {
            nets.leave(now);
        }
        n.node.leave(now);
        self.flush(i as u32);
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
        let now = self.now;
        let r = self.nodes[i].node.with_overlay(now, |ov| f(ov, now));
        self.flush(i as u32);
        r
    }

    /// Runs `f` on node `i` and sends what it produced.
    pub fn with_node<R>(&mut self, i: usize, f: impl FnOnce(&mut Node, Instant) -> R) -> R {
        let now = self.now;
        set_context(i as u32, now);
        let r = f(&mut self.nodes[i].node, now);
        self.flush(i as u32);
        r
    }

    /// Has node `i` read `frame` from its TAP (the host sent it).
    pub fn inject_frame(&mut self, i: usize, frame: &[u8]) {
        let now = self.now;
        let n = &mut self.nodes[i];
        match n.node.pool_mut().alloc_with(frame) {
            Some(buf) => n.node.handle_frame(now, buf),
            None => self.lost += 1,
        }
        self.flush(i as u32);
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
        self.seq += 1;
        self.queue.push(Reverse((
            self.now,
            self.seq,
            Event::Deliver {
                to: to as u32,
                from,
                bytes,
            },
        )));
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
        let now = self.now;
        let id = self.nodes[i].node.start_task(now, kind, args);
        self.flush(i as u32);
        id
    }

    /// Starts the sequential crawler at node `i` (at most `limit` members).
    pub fn start_walk(&mut self, i: usize, limit: usize) -> Option<u64> {
        let now = self.now;
        let id = self.nodes[i].node.start_walk(now, limit);
        self.flush(i as u32);
        id
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
        let now = self.now;
        self.nodes[src]
            .node
            .overlay_echo(now, dst, crate::wire::overlay::Mode::Exact, nonce);
        self.flush(src as u32);
    }

    fn schedule_wake(&mut self, i: impl Into<u32> + Copy, at: Instant) {
        let i: u32 = i.into();
        let n = &mut self.nodes[i as usize];
        if n.wake.is_some_and(|w| w <= at) {
            return;
        }
        n.wake = Some(at);
        self.seq += 1;
        self.queue
            .push(Reverse((at, self.seq, Event::Wake { node: i })));
    }

    /// Moves node `i`'s outputs (its networks' first) onto the network
    /// and re-arms its timer.
    fn flush(&mut self, i: u32) {
        let from = self.nodes[i as usize].endpoint;
        loop {
            let now = self.now;
            let n = &mut self.nodes[i as usize];
            let mut t = None;
            if let Some(nets) = n.nets.as_mut() {
                nets.settle(now, &mut n.node);
                for k in 0..nets.len() {
                    let node = &mut nets.get_mut(k).node;
                    if let Some(tx) = node.poll_transmit() {
                        let bytes = node.pool().data(&tx.buf).to_vec();
                        node.pool_mut().free(tx.buf);
                        t = Some((tx.dst, bytes));
                        break;
                    }
                }
            }
            let t = t.or_else(|| {
                let t = n.node.poll_transmit()?;
                let bytes = n.node.pool().data(&t.buf).to_vec();
                n.node.pool_mut().free(t.buf);
                Some((t.dst, bytes))
            });
            let Some((dst, bytes)) = t else {
                if self.flush_events(i) {
                    continue;
                }
                break;
            };
            let n = &mut self.nodes[i as usize];
            n.tx_bytes += bytes.len() as u64;
            n.tx_datagrams += 1;
            if self.watch == Some(dst.addr.ip()) {
                self.watched += 1;
            }
            let lost = self.net.loss > 0.0
                && (self.rng.next_u64() as f64 / u64::MAX as f64) < self.net.loss;
            let src = match self.nat.as_mut() {
                Some(m) => m.outbound(i, from, dst.addr),
                None => from,
            };
            let cut = |to: u32| {
                !self.blocked.is_empty() && self.blocked.contains(&(i.min(to), i.max(to)))
            };
            match self.route_datagram(src, dst.addr) {
                Some(to) if self.hold == Some((i, to)) => self.held.push((src, bytes)),
                Some(to) if !lost && !cut(to) => {
                    let jitter = self.rng.below(self.net.jitter.as_micros() as u64 + 1);
                    let latency = self.latency(i as usize, to as usize);
                    let at = self.now + latency + Duration::from_micros(jitter);
                    self.seq += 1;
                    self.queue.push(Reverse((
                        at,
                        self.seq,
                        Event::Deliver {
                            to,
                            from: src,
                            bytes,
                        },
                    )));
                }
                _ => self.lost += 1,
            }
        }
        let n = &mut self.nodes[i as usize];
        let net_due = n.nets.as_ref().and_then(|nets| nets.poll_timeout());
        if let Some(d) = crate::time::earliest(n.node.poll_timeout(), net_due) {
            // Never in the past: a deadline the node did not clear is
            // retried a millisecond later rather than spinning.
            let at = d.max(self.now + Duration::from_millis(1));
            self.schedule_wake(i, at);
        }
    }

    /// Takes node `i`'s frames and events (and its networks'); true if
    /// that gave its networks something to send.
    fn flush_events(&mut self, i: u32) -> bool {
        let now = self.now;
        let keep = self.keep_frames;
        let n = &mut self.nodes[i as usize];
        if let Some(nets) = n.nets.as_mut() {
            n.net_taps.resize(nets.len(), Vec::new());
            for k in 0..nets.len() {
                let node = &mut nets.get_mut(k).node;
                while let Some(f) = node.poll_frame() {
                    if n.net_taps[k].len() < keep {
                        n.net_taps[k].push(node.pool().data(&f).to_vec());
                    }
                    node.pool_mut().free(f);
                }
                while node.poll_event().is_some() {}
            }
        }
        while let Some(f) = n.node.poll_frame() {
            if n.tap.len() < keep {
                n.tap.push(n.node.pool().data(&f).to_vec());
            }
            n.node.pool_mut().free(f);
        }
        while let Some(e) = n.node.poll_event() {
            let e = match n.nets.as_mut() {
                Some(nets) => match nets.public_event(now, &mut n.node, e) {
                    Some(e) => e,
                    None => continue,
                },
                None => e,
            };
            match e {
                NodeEvent::Dht(e) => n.dht.push(e),
                NodeEvent::Echo { nonce, hops, rtt } => {
                    n.echoes.insert(nonce, (hops, rtt));
                }
                // A simulated host has no kernel routes to change: the
                // node's own table is what carries the traffic.
                NodeEvent::TaskDone {
                    id, result, took, ..
                } => {
                    n.tasks.insert(id, (*result, took));
                }
                NodeEvent::AddressHeld(_)
                | NodeEvent::AddressConflict { .. }
                | NodeEvent::RouteAdded(_)
                | NodeEvent::RouteRemoved(_) => {}
            }
        }
        let nets_queued = n.nets.as_mut().is_some_and(|nets| {
            nets.settle(now, &mut n.node);
            nets.iter().any(|net| net.node.transmits_queued() > 0)
        });
        nets_queued || n.node.transmits_queued() > 0
    }

    /// Runs events up to and including time `until`.
    pub fn run_until(&mut self, until: Instant) {
        while let Some(Reverse((at, _, _))) = self.queue.peek() {
            if *at > until {
                break;
            }
            let Some(Reverse((at, _, ev))) = self.queue.pop() else {
                break;
            };
            self.now = at;
            set_context(
                match &ev {
                    Event::Deliver { to, .. } => *to,
                    Event::Wake { node } => *node,
                },
                at,
            );
            match ev {
                Event::Deliver { to, from, bytes } => {
                    let n = &mut self.nodes[to as usize];
                    if !n.alive {
                        self.lost += 1;
                        continue;
                    }
                    match n.node.pool_mut().alloc_with(&bytes) {
                        Some(buf) => {
                            let buf = match n.nets.as_mut() {
                                Some(nets) => {
                                    nets.handle_datagram(at, &mut n.node, from.into(), buf)
                                }
                                None => Some(buf),
                            };
                            if let Some(buf) = buf {
                                n.node.handle_datagram(at, from, buf);
                            }
                        }
                        None => self.lost += 1,
                    }
                    self.flush(to);
                }
                Event::Wake { node } => {
                    let n = &mut self.nodes[node as usize];
                    if !n.alive || n.wake != Some(at) {
                        continue; // stale
                    }
                    n.wake = None;
                    if n.node.poll_timeout().is_some_and(|d| d <= at) {
                        n.node.handle_timeout(at);
                    }
                    if let Some(nets) = n.nets.as_mut() {
                        nets.handle_timeout(at, &mut n.node);
                        if nets.poll_timeout().is_some_and(|d| d <= at) {
                            self.stuck_wakes += 1;
                            self.stuck_node = Some(node as usize);
                        }
                    }
                    if n.node.poll_timeout().is_some_and(|d| d <= at) {
                        self.stuck_wakes += 1;
                        self.stuck_node = Some(node as usize);
                        if self.stuck_debug.is_none() {
                            self.stuck_debug = Some(n.node.debug_deadlines(at));
                        }
                    }
                    self.flush(node);
                }
            }
        }
        self.now = self.now.max(until);
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
