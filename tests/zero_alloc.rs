//! Proves the data path allocates nothing per packet: a counting global
//! allocator watches 10,000 frames each way through two nodes after warm-up.

use ringvpn::crypto::{Identity, Seed};
use ringvpn::node::{Node, NodeConfig, PeerConfig};
use ringvpn::time::Instant;
use ringvpn::wire::gro::{Run, Segment};
use ringvpn::wire::tso::Plan;
use ringvpn::wire::vnet::{Gso, VnetHdr};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;

struct Counting;

thread_local! {
    /// Allocations made by this thread (tests run on threads of their own,
    /// so each counts only its own).
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A static node's config: one peer, `other`'s key at `other_ep`.
fn one_peer(other: u8, other_ep: SocketAddr) -> NodeConfig {
    NodeConfig {
        peers: vec![PeerConfig {
            name: "peer".into(),
            key: Identity::from_seed(&Seed([other; 32])).public(),
            endpoint: Some(other_ep),
        }],
        ..NodeConfig::default()
    }
}

fn node(me: u8, other: u8, other_ep: SocketAddr) -> Node {
    let cfg = one_peer(other, other_ep);
    Node::new(Identity::from_seed(&Seed([me; 32])), cfg, Instant::ZERO)
}

/// Moves every queued datagram from `a` to `b` the way the shell does:
/// bytes leave one pool and land in a buffer of the other (a stack copy
/// stands in for the kernel).
fn pump(a: &mut Node, a_ep: SocketAddr, b: &mut Node, now: Instant) -> usize {
    let mut n = 0;
    let mut wire = [0u8; 2048];
    while let Some(t) = a.poll_transmit() {
        let len = a.pool().data(&t.buf).len();
        wire[..len].copy_from_slice(a.pool().data(&t.buf));
        a.pool_mut().free(t.buf);
        let mut buf = b.pool_mut().alloc().expect("pool");
        b.pool_mut().space_mut(&buf)[..len].copy_from_slice(&wire[..len]);
        b.pool().set_len(&mut buf, len);
        b.handle_datagram(now, a_ep, buf);
        n += 1;
    }
    n
}

fn drain_frames(n: &mut Node) -> usize {
    let mut count = 0;
    while let Some(f) = n.poll_frame() {
        n.pool_mut().free(f);
        count += 1;
    }
    count
}

fn send(n: &mut Node, frame: &[u8], now: Instant) {
    let mut buf = n.pool_mut().alloc().expect("pool");
    n.pool_mut().space_mut(&buf)[..frame.len()].copy_from_slice(frame);
    n.pool().set_len(&mut buf, frame.len());
    n.handle_frame(now, buf);
}

/// Two static nodes that have finished their handshake: (a, b, a's
/// endpoint, b's endpoint, the time they run at).
fn linked_pair() -> (Node, Node, SocketAddr, SocketAddr, Instant) {
    let (ea, eb): (SocketAddr, SocketAddr) = (
        "198.18.0.1:1".parse().unwrap(),
        "198.18.0.2:1".parse().unwrap(),
    );
    let mut a = node(1, 2, eb);
    let mut b = node(2, 1, ea);
    let now = Instant::from_millis(1);
    a.handle_timeout(now);
    b.handle_timeout(now);
    for _ in 0..4 {
        pump(&mut a, ea, &mut b, now);
        pump(&mut b, eb, &mut a, now);
    }
    (a, b, ea, eb, now)
}

#[test]
fn forwarding_allocates_nothing_per_packet() {
    let (mut a, mut b, ea, eb, now) = linked_pair();
    let mut ab = [0x42u8; 1414];
    ab[..6].copy_from_slice(&[2, 0, 0, 0, 0, 0xb]);
    ab[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0xa]);
    let mut ba = ab;
    ba[..6].copy_from_slice(&[2, 0, 0, 0, 0, 0xa]);
    ba[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0xb]);
    // Warm-up: MAC learning and queue capacity settle, and the session
    // gets busy enough to keep expanded keys (`HOT_AFTER` messages).
    for _ in 0..ringvpn::crypto::session::HOT_AFTER {
        send(&mut a, &ab, now);
        pump(&mut a, ea, &mut b, now);
        send(&mut b, &ba, now);
        pump(&mut b, eb, &mut a, now);
        drain_frames(&mut a);
        drain_frames(&mut b);
    }
    let before = allocs();
    let (mut to_b, mut to_a) = (0, 0);
    for _ in 0..10_000 {
        send(&mut a, &ab, now);
        pump(&mut a, ea, &mut b, now);
        to_b += drain_frames(&mut b);
        send(&mut b, &ba, now);
        pump(&mut b, eb, &mut a, now);
        to_a += drain_frames(&mut a);
    }
    let allocs = allocs() - before;
    assert_eq!((to_a, to_b), (10_000, 10_000), "every frame delivered");
    assert_eq!(allocs, 0, "heap allocations during 20,000 forwarded frames");
    println!("20000 frames forwarded, {allocs} heap allocations");
}

/// A TCP super-frame from `a` to `b` as the TAP hands it over with TSO:
/// `payload` bytes behind one set of headers, checksum left partial.
fn super_frame(payload: usize, seq: u32) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20 + 20 + payload];
    f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 0xb]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0xa]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14] = 0x45;
    let ip_len = (20 + 20 + payload).min(65_535) as u16;
    f[16..18].copy_from_slice(&ip_len.to_be_bytes());
    f[20] = 0x40;
    f[22] = 64;
    f[23] = 6;
    f[26..30].copy_from_slice(&[100, 64, 0, 1]);
    f[30..34].copy_from_slice(&[100, 64, 0, 2]);
    f[34..36].copy_from_slice(&40000u16.to_be_bytes());
    f[36..38].copy_from_slice(&5201u16.to_be_bytes());
    f[38..42].copy_from_slice(&seq.to_be_bytes());
    f[46] = 5 << 4;
    f[47] = 0x18;
    f[48..50].copy_from_slice(&512u16.to_be_bytes());
    for (i, b) in f[54..].iter_mut().enumerate() {
        *b = i as u8;
    }
    f
}

/// Cuts `sf` into `n`'s pool buffers and hands each to the node, as the
/// shell does with a TAP super-frame.
fn send_cut(n: &mut Node, sf: &[u8], hdr: &VnetHdr, now: Instant) -> usize {
    let plan = Plan::parse(sf, hdr).expect("a valid super-frame");
    for i in 0..plan.count() {
        let mut buf = n.pool_mut().alloc().expect("pool");
        let len = plan.write_segment(sf, i, n.pool_mut().space_mut(&buf));
        n.pool().set_len(&mut buf, len);
        n.handle_frame(now, buf);
    }
    plan.count()
}

/// Joins the frames `n` emits into runs, as the shell does before a TAP
/// write; returns (frames, runs).
fn join_frames(n: &mut Node, held: &mut Vec<ringvpn::buf::PacketBuf>) -> (usize, usize) {
    let (mut frames, mut runs) = (0, 0);
    let mut run: Option<Run> = None;
    while let Some(f) = n.poll_frame() {
        frames += 1;
        let seg = Segment::parse(n.pool().data(&f)).expect("a joinable segment");
        let joined = match run.as_mut() {
            Some(r) => r.join(n.pool().data(&held[0]), n.pool().data(&f), &seg),
            None => false,
        };
        if !joined {
            if let Some(r) = run.take() {
                r.finish(n.pool_mut().data_mut(&held[0]));
                runs += 1;
                for b in held.drain(..) {
                    n.pool_mut().free(b);
                }
            }
            run = Some(Run::new(seg));
        }
        held.push(f);
    }
    if let Some(r) = run {
        r.finish(n.pool_mut().data_mut(&held[0]));
        runs += 1;
        for b in held.drain(..) {
            n.pool_mut().free(b);
        }
    }
    (frames, runs)
}

#[test]
fn tap_offloads_cut_and_join_allocating_nothing() {
    let (mut a, mut b, ea, _, now) = linked_pair();
    let hdr = VnetHdr {
        flags: ringvpn::wire::vnet::F_NEEDS_CSUM,
        gso: Gso::Tcp4,
        ecn: false,
        hdr_len: 54,
        gso_size: 1348,
        csum_start: 34,
        csum_offset: 16,
    };
    let payload = 45 * 1348;
    let mut held = Vec::with_capacity(ringvpn::wire::gro::MAX_FRAMES);
    let mut seq = 1u32;
    let mut sf = super_frame(payload, seq);
    let mut round = |a: &mut Node, b: &mut Node, held: &mut Vec<_>| {
        sf[38..42].copy_from_slice(&seq.to_be_bytes());
        seq = seq.wrapping_add(payload as u32);
        let cut = send_cut(a, &sf, &hdr, now);
        pump(a, ea, b, now);
        let (frames, runs) = join_frames(b, held);
        (cut, frames, runs)
    };
    for _ in 0..20 {
        round(&mut a, &mut b, &mut held);
    }
    let before = allocs();
    let (mut cut, mut frames, mut runs) = (0, 0, 0);
    for _ in 0..200 {
        let (c, f, r) = round(&mut a, &mut b, &mut held);
        cut += c;
        frames += f;
        runs += r;
    }
    let allocs = allocs() - before;
    assert_eq!((cut, frames), (9_000, 9_000), "every segment delivered");
    assert_eq!(runs, 200, "each super-frame joined back into one run");
    assert_eq!(
        allocs, 0,
        "heap allocations cutting, forwarding and joining"
    );
}

/// A tiny in-memory network of overlay VPN nodes for the VPN-mode proof:
/// datagrams move through a stack buffer, as the kernel would copy them.
struct Net {
    nodes: Vec<(SocketAddr, Node)>,
}

impl Net {
    /// `n` members; member `gateway` is an exit gateway (0.0.0.0/0, in
    /// the config's `[peer] routes` of member 0, which uses it as its exit).
    /// Every member has firewall rules: member 0 lets nothing in but the
    /// answers to its own flows, the others the test's UDP port.
    fn new(n: u8, gateway: u8) -> Net {
        // bench/callgrind-vpn.sh also counts without rules.
        let rules = std::env::var("RINGVPN_VPN_FIREWALL").map_or(true, |v| v != "off");
        let firewall = |i: u8| {
            if !rules {
                return Vec::new();
            }
            let rule = if i == 0 {
                "tcp 22 group:admin"
            } else {
                "udp 12345 any"
            };
            vec![ringvpn::firewall::Rule::parse(rule).unwrap()]
        };
        let ep = |i: u8| -> SocketAddr { format!("198.18.0.{}:5140", 10 + i).parse().unwrap() };
        let key = |i: u8| Identity::from_seed(&Seed([i + 1; 32])).public();
        let default = ringvpn::net::Prefix::parse("0.0.0.0/0").unwrap();
        let nodes = (0..n)
            .map(|i| {
                let mut routes = ringvpn::routes::RoutesConfig::new("zero");
                if i == gateway {
                    routes.advertise = vec![default];
                }
                if i == 0 {
                    routes.exit = ringvpn::routes::Exit::Auto;
                    routes.listed = vec![(key(gateway), vec![default])];
                }
                let cfg = NodeConfig {
                    overlay: Some(ringvpn::overlay::OverlayConfig::default()),
                    timers: ringvpn::node::Timers::overlay_links(),
                    bootstrap: if i == 0 { vec![] } else { vec![ep(i - 1)] },
                    endpoints: vec![ep(i).into()],
                    trust_any: true,
                    rng_seed: u64::from(i),
                    wall_origin_us: 1_700_000_000_000_000,
                    vpn: Some(ringvpn::vpn::VpnConfig {
                        firewall: firewall(i),
                        ..ringvpn::vpn::VpnConfig::new("zero")
                    }),
                    routes: Some(routes),
                    ..NodeConfig::default()
                };
                (
                    ep(i),
                    Node::new(Identity::from_seed(&Seed([i + 1; 32])), cfg, Instant::ZERO),
                )
            })
            .collect();
        Net { nodes }
    }

    /// Delivers queued datagrams until none are left; returns TAP frames
    /// written per node (freed).
    fn pump(&mut self, now: Instant) -> [usize; 16] {
        let mut frames = [0; 16];
        let mut wire = [0u8; 2048];
        loop {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                while let Some(t) = self.nodes[i].1.poll_transmit() {
                    let len = self.nodes[i].1.pool().data(&t.buf).len();
                    wire[..len].copy_from_slice(self.nodes[i].1.pool().data(&t.buf));
                    self.nodes[i].1.pool_mut().free(t.buf);
                    let from = self.nodes[i].0;
                    if let Some(j) = self.nodes.iter().position(|(e, _)| *e == t.dst.addr) {
                        let b = &mut self.nodes[j].1;
                        let mut buf = b.pool_mut().alloc().expect("pool");
                        b.pool_mut().space_mut(&buf)[..len].copy_from_slice(&wire[..len]);
                        b.pool().set_len(&mut buf, len);
                        b.handle_datagram(now, from, buf);
                    }
                    moved = true;
                }
            }
            for (i, (_, n)) in self.nodes.iter_mut().enumerate() {
                frames[i] += drain_frames(n);
            }
            if !moved {
                return frames;
            }
        }
    }

    fn tick(&mut self, now: Instant) {
        for (_, n) in &mut self.nodes {
            if n.poll_timeout().is_some_and(|t| t <= now) {
                n.handle_timeout(now);
            }
        }
        self.pump(now);
    }

    fn ip(&self, i: usize) -> std::net::Ipv4Addr {
        self.nodes[i].1.held_address().expect("address held")
    }
}

/// An IPv4 UDP packet from `src` to `dst` as the host's frame to the node.
fn ip_frame(n: &Node, src: std::net::Ipv4Addr, dst: std::net::Ipv4Addr) -> Vec<u8> {
    ringvpn::sim::udp_frame(&n.public_key(), src, dst, &[0x5au8; 1300])
}

#[test]
fn vpn_packets_allocate_nothing_direct_routed_or_through_a_gateway() {
    // Ten members: each links two ring neighbours on each side (no
    // shortcuts at this size), so some are reached end to end over the
    // overlay. Member 5 is an exit gateway for member 0. Firewalls on.
    const GATEWAY: usize = 5;
    let mut net = Net::new(10, GATEWAY as u8);
    let mut now = Instant::ZERO;
    for _ in 0..600 {
        now = now + std::time::Duration::from_millis(100);
        net.tick(now);
    }
    let n = net.nodes.len();
    for i in 0..n {
        assert!(
            net.nodes[i].1.held_address().is_some(),
            "node {i} holds an address"
        );
    }
    // Node 0 and a node it links (direct), and one it does not (routed).
    let linked = |i: usize, j: usize| {
        let st = net.nodes[i].1.status(now);
        let key = net.nodes[j].1.public_key();
        st.peers.iter().any(|p| p.key == key && p.linked)
    };
    let direct = (1..n).find(|&j| linked(0, j)).expect("a linked node");
    let routed = (1..n)
        .find(|&j| !linked(0, j))
        .expect("a node without a link");
    // The internet: a server the gateway's host reaches (its frames to
    // the TAP stand in for the forwarding).
    let server = std::net::Ipv4Addr::new(198, 19, 200, 1);
    // bench/callgrind-vpn.sh counts one case at a time (read before
    // counting: reading the environment allocates).
    let only = std::env::var("RINGVPN_VPN_CASE").ok();
    let count: usize = std::env::var("RINGVPN_VPN_PACKETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    for (peer, what) in [(direct, "direct"), (routed, "routed"), (GATEWAY, "gateway")] {
        if only.as_deref().is_some_and(|o| o != what) {
            continue;
        }
        let (ip0, ipp) = (net.ip(0), net.ip(peer));
        let far = if peer == GATEWAY { server } else { ipp };
        let out = ip_frame(&net.nodes[0].1, ip0, far);
        let back = ip_frame(&net.nodes[peer].1, far, ip0);
        // Warm-up: resolution, the sessions, queue capacities, and every
        // session busy enough to keep expanded keys: HOT_AFTER messages,
        // which a session carrying one direction only (crossed handshakes
        // of a routed pair) reaches after as many frames, less the first
        // few that wait for the handshake.
        for _ in 0..2 * ringvpn::crypto::session::HOT_AFTER {
            send(&mut net.nodes[0].1, &out, now);
            send(&mut net.nodes[peer].1, &back, now);
            net.pump(now);
        }
        let before = allocs();
        let (mut got_peer, mut got_0) = (0, 0);
        for _ in 0..count {
            send(&mut net.nodes[0].1, &out, now);
            let f = net.pump(now);
            got_peer += f[peer];
            send(&mut net.nodes[peer].1, &back, now);
            let f = net.pump(now);
            got_0 += f[0];
        }
        let allocs = allocs() - before;
        assert_eq!(
            (got_peer, got_0),
            (count, count),
            "{what}: every packet delivered"
        );
        assert_eq!(
            allocs,
            0,
            "{what}: heap allocations during {} VPN packets",
            2 * count
        );
        println!(
            "{what}: {} VPN packets, {allocs} heap allocations",
            2 * count
        );
    }
}

/// Sub-rings (docs/SUBRINGS.md): two daemons' nodes of one network
/// exchange frames over the shared socket — tagged by the sending node,
/// taken off the public node's pool and handed to the network's node by
/// the receiving host — allocating nothing per packet either.
#[test]
fn sub_ring_tagged_datagrams_allocate_nothing() {
    use ringvpn::host::{NetworkSpec, Networks};
    let (ea, eb): (SocketAddr, SocketAddr) = (
        "198.18.0.1:1".parse().unwrap(),
        "198.18.0.2:1".parse().unwrap(),
    );
    let host = |me: u8, other: u8, other_ep: SocketAddr| {
        let mut public = Node::new(
            Identity::from_seed(&Seed([me + 100; 32])),
            NodeConfig::default(),
            Instant::ZERO,
        );
        let mut nets = Networks::new(&mut public, 0);
        let spec = NetworkSpec {
            name: "net".into(),
            ca: Vec::new(),
            seed: Seed([me; 32]),
            cfg: one_peer(other, other_ep),
        };
        nets.add(&public, spec, Instant::ZERO);
        (public, nets)
    };
    let (mut pa, mut na) = host(1, 2, eb);
    let (mut pb, mut nb) = host(2, 1, ea);
    // The shell's way: a network's datagrams out of its pool, into the
    // other daemon's public pool, and through its host.
    let pump = |na: &mut Networks, from: SocketAddr, pb: &mut Node, nb: &mut Networks, now| {
        let mut wire = [0u8; 2048];
        let mut n = 0;
        while let Some(t) = na.get_mut(0).node.poll_transmit() {
            let node = &mut na.get_mut(0).node;
            let len = node.pool().data(&t.buf).len();
            wire[..len].copy_from_slice(node.pool().data(&t.buf));
            node.pool_mut().free(t.buf);
            let mut buf = pb.pool_mut().alloc().expect("pool");
            pb.pool_mut().space_mut(&buf)[..len].copy_from_slice(&wire[..len]);
            pb.pool().set_len(&mut buf, len);
            assert!(
                nb.handle_datagram(now, pb, from.into(), buf).is_none(),
                "tagged"
            );
            n += 1;
        }
        n
    };
    let now = Instant::from_millis(1);
    na.get_mut(0).node.handle_timeout(now);
    nb.get_mut(0).node.handle_timeout(now);
    for _ in 0..4 {
        pump(&mut na, ea, &mut pb, &mut nb, now);
        pump(&mut nb, eb, &mut pa, &mut na, now);
    }
    let mut ab = [0x42u8; 1400];
    ab[..6].copy_from_slice(&[2, 0, 0, 0, 0, 0xb]);
    ab[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0xa]);
    let mut ba = ab;
    ba[..6].copy_from_slice(&[2, 0, 0, 0, 0, 0xa]);
    ba[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0xb]);
    let round = |na: &mut Networks, pa: &mut Node, nb: &mut Networks, pb: &mut Node| {
        send(&mut na.get_mut(0).node, &ab, now);
        pump(na, ea, pb, nb, now);
        let to_b = drain_frames(&mut nb.get_mut(0).node);
        send(&mut nb.get_mut(0).node, &ba, now);
        pump(nb, eb, pa, na, now);
        (drain_frames(&mut na.get_mut(0).node), to_b)
    };
    // Warm-up, with the sessions busy enough to keep expanded keys.
    for _ in 0..ringvpn::crypto::session::HOT_AFTER {
        round(&mut na, &mut pa, &mut nb, &mut pb);
    }
    let before = allocs();
    let (mut to_a, mut to_b) = (0, 0);
    for _ in 0..10_000 {
        let (a, b) = round(&mut na, &mut pa, &mut nb, &mut pb);
        to_a += a;
        to_b += b;
    }
    let allocs = allocs() - before;
    assert_eq!((to_a, to_b), (10_000, 10_000), "every frame delivered");
    assert_eq!(
        allocs, 0,
        "heap allocations during 20,000 frames over tagged datagrams"
    );
    assert_eq!(nb.stats.tagged_in, na.stats.tagged_in);
    assert!(nb.stats.tagged_in >= 10_000);
}
