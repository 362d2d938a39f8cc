//! What each extra peer costs a node (run with `cargo bench --bench cost`).
//!
//! One hub node links with N spoke nodes (N = 1,000 unless given as the
//! first argument), all in this process, datagrams carried between them by
//! copying pool buffers. A tagging global allocator charges every heap
//! allocation to the node that made it (a thread-local says which is
//! running), so the hub's bytes are counted exactly even though its
//! peers live beside it. Reported for static keys and certificates:
//! heap per configured peer (before any handshake), per linked peer
//! (session keys, replay window, addresses), and the hub's CPU time per
//! link it answers (the handshake and the initiator's first message; one
//! core; its peers' work not counted).
//! The pool (2 KiB slots, reserved once) does not grow with peers.
//!
//! Routed sessions: a ring of 1,000 VPN members in the simulator; the hub
//! (member 0) sends one packet to every other member's virtual IP. Most
//! are not linked to it, so each packet is resolved in the DHT and routed
//! over the overlay; what the hub holds per destination afterwards (the
//! resolved address, a peer entry and the end-to-end session) is charged
//! to it through the simulator's record of which node it is running.

use ringvpn::crypto::cert::{Cert, Prefix, Trust};
use ringvpn::crypto::{Identity, Seed};
use ringvpn::node::{Node, NodeConfig, PeerConfig};
use ringvpn::rand::Rng;
use ringvpn::time::Instant;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicIsize, AtomicU32, Ordering::Relaxed};
use std::time::Instant as Clock;

/// Heap bytes live per tag: 0 = everything else, 1 = the hub.
static LIVE: [AtomicIsize; 2] = [AtomicIsize::new(0), AtomicIsize::new(0)];

thread_local! {
    static TAG: Cell<usize> = const { Cell::new(0) };
}

/// The system allocator with a header in front of each block naming who
/// allocated it, so a free is charged back to the same node.
struct Tagging;

fn header(layout: Layout) -> usize {
    layout.align().max(16)
}

unsafe impl GlobalAlloc for Tagging {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let h = header(layout);
        let outer = Layout::from_size_align_unchecked(layout.size() + h, h);
        let p = System.alloc(outer);
        if p.is_null() {
            return p;
        }
        let tag = current_tag();
        LIVE[tag].fetch_add(layout.size() as isize, Relaxed);
        let user = p.add(h);
        user.sub(8).cast::<usize>().write(tag);
        user
    }

    unsafe fn dealloc(&self, user: *mut u8, layout: Layout) {
        let h = header(layout);
        let tag = user.sub(8).cast::<usize>().read();
        LIVE[tag].fetch_sub(layout.size() as isize, Relaxed);
        let outer = Layout::from_size_align_unchecked(layout.size() + h, h);
        System.dealloc(user.sub(h), outer);
    }
}

#[global_allocator]
static GLOBAL: Tagging = Tagging;

/// The simulator index whose allocations count as the hub's (`u32::MAX`:
/// none; the in-process hub of [`measure`] is tagged by [`as_hub`]).
static SIM_HUB: AtomicU32 = AtomicU32::new(u32::MAX);

fn current_tag() -> usize {
    let hub = SIM_HUB.load(Relaxed);
    if hub != u32::MAX && ringvpn::sim::trace_context().0 == hub {
        return 1;
    }
    TAG.with(Cell::get)
}

/// Runs `f` with its allocations charged to the hub.
fn as_hub<T>(f: impl FnOnce() -> T) -> T {
    TAG.with(|t| t.set(1));
    let r = f();
    TAG.with(|t| t.set(0));
    r
}

fn hub_bytes() -> isize {
    LIVE[1].load(Relaxed)
}

const HUB: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 0, 1)),
    5140,
);

/// Spoke `i`'s endpoint: each its own address (the hub meters
/// handshakes per source address).
fn spoke_addr(i: usize) -> SocketAddr {
    SocketAddr::from(([198, 18, 1 + (i / 250) as u8, (i % 250) as u8 + 1], 5140))
}

fn spoke_index(a: SocketAddr) -> usize {
    match a.ip() {
        std::net::IpAddr::V4(ip) => {
            let o = ip.octets();
            usize::from(o[2] - 1) * 250 + usize::from(o[3] - 1)
        }
        std::net::IpAddr::V6(_) => unreachable!("spokes are IPv4"),
    }
}

fn seed(i: usize) -> Seed {
    let mut s = [7u8; 32];
    s[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
    Seed(s)
}

/// A CA's trust and a certificate for `id` (network "cost").
fn certified(ca: &Identity, id: &Identity, i: usize) -> (Trust, Vec<u8>) {
    let valid = (1_000, 4_000_000_000);
    let ca_cert = Cert::new_ca(ca, "cost", "CA", valid).unwrap();
    let ip = format!("100.64.{}.{}", i / 250, i % 250 + 2);
    let ips = vec![Prefix::parse(&ip).unwrap()];
    let name = format!("n{i}");
    let mine = Cert::new_node(ca, id.public(), "cost", &name, ips, vec![], valid).unwrap();
    let trust = Trust {
        network: "cost".into(),
        cas: vec![ca_cert],
        revocations: vec![],
    };
    (trust, mine.encode().unwrap())
}

fn config(cert: Option<(Trust, Vec<u8>)>, peers: Vec<PeerConfig>, slots: u32) -> NodeConfig {
    let (trust, mine) = cert.unzip();
    NodeConfig {
        max_peers: peers.len() + 16,
        peers,
        pool_slots: slots,
        wall_origin_us: 2_000_000_000_000_000,
        trust,
        cert: mine,
        ..NodeConfig::default()
    }
}

struct Figures {
    configured: f64,
    linked: f64,
    handshake_us: f64,
}

fn measure(n: usize, certs: bool) -> Figures {
    let ca = Identity::from_seed(&Seed([9; 32]));
    let hub_id = Identity::from_seed(&Seed([1; 32]));
    let ids: Vec<Identity> = (0..n).map(|i| Identity::from_seed(&seed(i))).collect();
    let cert = |id: &Identity, i: usize| certs.then(|| certified(&ca, id, i));
    // The hub knows every spoke's key but no endpoint: the spokes start
    // the handshakes, the hub answers (a server's view).
    let peers: Vec<PeerConfig> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| PeerConfig {
            name: format!("n{i}"),
            key: id.public(),
            endpoint: None,
        })
        .collect();
    let now = Instant::from_millis(1);
    let base = hub_bytes();
    let empty = as_hub(|| {
        Node::new(
            Identity::from_seed(&Seed([1; 32])),
            config(cert(&hub_id, 0), vec![], 512),
            now,
        )
    });
    let empty_bytes = hub_bytes() - base;
    as_hub(|| drop(empty));
    let base = hub_bytes();
    let mut hub = as_hub(|| {
        Node::new(
            Identity::from_seed(&Seed([1; 32])),
            config(cert(&hub_id, 0), peers, 512),
            now,
        )
    });
    let configured = (hub_bytes() - base - empty_bytes) as f64 / n as f64;
    let mut spokes: Vec<Node> = ids
        .into_iter()
        .enumerate()
        .map(|(i, id)| {
            let me = cert(&id, i + 1);
            let hub_peer = PeerConfig {
                name: "hub".into(),
                key: hub_id.public(),
                endpoint: Some(HUB),
            };
            Node::new(id, config(me, vec![hub_peer], 16), now)
        })
        .collect();
    let before_links = hub_bytes();
    let mut hub_time = 0.0;
    // Spokes start in waves the hub's handshake budget admits (200/s,
    // bursts of 50); a refused one retries on its own timer.
    for wave in 0..n.div_ceil(40) + 40 {
        let now = Instant::from_millis(1 + 250 * wave as u64);
        for s in spokes.iter_mut().skip(wave * 40).take(40) {
            s.handle_timeout(now);
        }
        for s in spokes.iter_mut().take(wave * 40) {
            if s.poll_timeout().is_some_and(|t| t <= now) {
                s.handle_timeout(now);
            }
        }
        as_hub(|| hub.handle_timeout(now));
        hub_time += carry(&mut hub, &mut spokes, now);
        if up(&hub, now) == n {
            break;
        }
    }
    let now = Instant::from_millis(1 + 250 * (n.div_ceil(40) + 40) as u64);
    assert_eq!(up(&hub, now), n, "every spoke linked");
    Figures {
        configured,
        linked: (hub_bytes() - before_links) as f64 / n as f64,
        handshake_us: hub_time * 1e6 / n as f64,
    }
}

/// Peers the hub has a session with.
fn up(hub: &Node, now: Instant) -> usize {
    as_hub(|| {
        hub.status(now)
            .peers
            .iter()
            .filter(|p| p.state == "up")
            .count()
    })
}

/// Carries datagrams between the hub and the spokes until nothing moves;
/// returns the hub's time spent on what it received.
fn carry(hub: &mut Node, spokes: &mut [Node], now: Instant) -> f64 {
    let mut hub_time = 0.0;
    loop {
        let mut moved = 0;
        for (i, s) in spokes.iter_mut().enumerate() {
            while let Some(t) = s.poll_transmit() {
                let data = s.pool().data(&t.buf);
                let t0 = Clock::now();
                as_hub(|| {
                    if let Some(b) = hub.pool_mut().alloc_with(data) {
                        hub.handle_datagram(now, spoke_addr(i), b);
                    }
                });
                hub_time += t0.elapsed().as_secs_f64();
                s.pool_mut().free(t.buf);
                moved += 1;
            }
        }
        while let Some(t) = as_hub(|| hub.poll_transmit()) {
            let s = &mut spokes[spoke_index(t.dst.addr)];
            if let Some(b) = s.pool_mut().alloc_with(hub.pool().data(&t.buf)) {
                s.handle_datagram(now, HUB, b);
            }
            as_hub(|| hub.pool_mut().free(t.buf));
            moved += 1;
        }
        if moved == 0 {
            return hub_time;
        }
    }
}

/// Heap the hub holds per routed session, the share of its destinations
/// it reached without a link, and the packets delivered.
struct Routed {
    per_session: f64,
    routed: usize,
    delivered: usize,
}

fn routed_sessions(n: usize) -> Routed {
    use ringvpn::sim::{endpoint_of, scenario, NetConfig, Sim};
    use std::time::Duration;
    let mut sim = Sim::new(11, NetConfig::default());
    sim.vpn = Some(ringvpn::vpn::VpnConfig::new("cost"));
    // Room for every destination (the default, 256, would refuse the rest).
    sim.max_peers = n + 64;
    sim.keep_frames = 4;
    // As scenario::mass_join (three random bootstraps each), with the VPN on.
    for i in 0..n {
        let mut boot = Vec::new();
        while boot.len() < 3 {
            let j = sim.rng().below(n as u64) as u32;
            if j as usize != i && !boot.contains(&endpoint_of(j)) {
                boot.push(endpoint_of(j));
            }
        }
        sim.add_node(boot);
    }
    scenario::run_until_consistent(&mut sim, Duration::from_secs(5), Duration::from_secs(600))
        .expect("the ring forms");
    let held = |sim: &Sim, i: usize| sim.node(i).vpn_status().and_then(|v| v.address);
    for _ in 0..60 {
        if (0..n).all(|i| held(&sim, i).is_some()) {
            break;
        }
        sim.run_for(Duration::from_secs(1));
    }
    let ips: Vec<_> = (0..n)
        .map(|i| held(&sim, i).expect("every member holds an address"))
        .collect();
    sim.run_for(Duration::from_secs(10));
    for i in 0..n {
        sim.take_frames(i);
    }
    SIM_HUB.store(0, Relaxed);
    let before = hub_bytes();
    let linked = |sim: &Sim| {
        sim.node(0)
            .status(sim.now())
            .peers
            .iter()
            .filter(|p| p.linked)
            .count()
    };
    let arrived = |sim: &mut Sim, j: usize| {
        let frames = sim.take_frames(j);
        frames
            .iter()
            .filter(|f| f.ends_with(b"routed session"))
            .count()
    };
    let linked_before = linked(&sim);
    // In waves below the resolver's 32 lookups at a time, as a host opening
    // connections would: each destination is resolved once and then
    // reached over the overlay.
    let mut delivered = 0;
    for wave in (1..n).collect::<Vec<_>>().chunks(25) {
        for &j in wave {
            let f = sim.host_udp_frame(0, ips[0], ips[j], b"routed session");
            // Charged to the hub while it runs (the simulator says which
            // node that is), not the simulator's own queues.
            sim.inject_frame(0, &f);
        }
        sim.run_for(Duration::from_secs(2));
        for &j in wave {
            delivered += arrived(&mut sim, j);
        }
    }
    sim.run_for(Duration::from_secs(5));
    // Those whose end-to-end handshake took longer than their wave.
    for j in 1..n {
        delivered += arrived(&mut sim, j);
    }
    let grown = hub_bytes() - before;
    SIM_HUB.store(u32::MAX, Relaxed);
    let linked_after = linked(&sim);
    Routed {
        per_session: grown as f64 / (n - 1) as f64,
        routed: (n - 1) - (linked_after - linked_before.min(linked_after)),
        delivered,
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if std::env::args().any(|a| a == "--list") {
        return; // cargo test --benches asks for a listing
    }
    let n = args.first().and_then(|a| a.parse().ok()).unwrap_or(1000);
    println!("cost per peer at a node with {n} peers (heap bytes the node itself allocated)");
    println!("| credentials | configured peer | linked peer (+) | hub CPU per link answered | links answered/s per core |");
    println!("|---|---:|---:|---:|---:|");
    for certs in [false, true] {
        let f = measure(n, certs);
        println!(
            "| {} | {:.0} B | {:.0} B | {:.1} µs | {:.0} |",
            if certs { "certificates" } else { "static keys" },
            f.configured,
            f.linked,
            f.handshake_us,
            1e6 / f.handshake_us
        );
    }
    let r = routed_sessions(n);
    println!();
    println!(
        "routed sessions: the hub of a {n}-member VPN ring sent one packet to each other member: {} delivered, {} of the {} destinations without a link of their own; hub heap per destination {:.0} B",
        r.delivered,
        r.routed,
        n - 1,
        r.per_session
    );
}
