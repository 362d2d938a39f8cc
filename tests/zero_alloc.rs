//! Proves the data path allocates nothing per packet: a counting global
//! allocator watches 10,000 frames each way through two nodes after warm-up.

use ringvpn::crypto::{Identity, Seed};
use ringvpn::node::{Node, NodeConfig, PeerConfig};
use ringvpn::time::Instant;
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

fn node(me: u8, other: u8, other_ep: SocketAddr) -> Node {
    let cfg = NodeConfig {
        peers: vec![PeerConfig {
            name: "peer".into(),
            key: Identity::from_seed(&Seed([other; 32])).public(),
            endpoint: Some(other_ep),
        }],
        ..NodeConfig::default()
    };
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

#[test]
fn forwarding_allocates_nothing_per_packet() {
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
    let mut ab = [0x42u8; 1414];
    ab[..6].copy_from_slice(&[2, 0, 0, 0, 0, 0xb]);
    ab[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0xa]);
    let mut ba = ab;
    ba[..6].copy_from_slice(&[2, 0, 0, 0, 0, 0xa]);
    ba[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0xb]);
    // Warm-up: MAC learning and queue capacity settle.
    for _ in 0..100 {
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
    let mut f = Vec::new();
    f.extend_from_slice(&ringvpn::vpn::VIRTUAL_MAC.0);
    f.extend_from_slice(&ringvpn::vpn::host_mac(&n.public_key()).0);
    f.extend_from_slice(&[8, 0]);
    let body = [0x5au8; 1300];
    let mut v4 = [0u8; 20];
    ringvpn::wire::ip::V4Repr {
        src,
        dst,
        proto: 17,
        payload_len: 8 + body.len(),
    }
    .emit(&mut v4);
    f.extend_from_slice(&v4);
    f.extend_from_slice(&[0x30, 0x39, 0x30, 0x39]);
    f.extend_from_slice(&((8 + body.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&body);
    f
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
        // Warm-up: resolution, the session, queue capacities.
        for _ in 0..50 {
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
