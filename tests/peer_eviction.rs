//! A long-running member forgets the peers it no longer talks to: 1,000
//! transient members link to one node in waves and vanish; afterwards its
//! peer table and its heap are back to where they started (a tombstone per
//! forgotten peer aside), and a forgotten peer's recorded init cannot move
//! its replay guard.
//!
//! Heap bytes are counted per thread by the allocator below: everything
//! here runs on the test's thread, and the transient nodes are dropped
//! when their wave ends, so what remains is the long-running node's.

use ringvpn::crypto::{Identity, Seed};
use ringvpn::node::{Node, NodeConfig, Timers};
use ringvpn::overlay::OverlayConfig;
use ringvpn::time::Instant;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::time::Duration;

struct Counting;

thread_local! {
    static LIVE: Cell<i64> = const { Cell::new(0) };
}

fn live() -> i64 {
    LIVE.with(Cell::get)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let _ = LIVE.try_with(|c| c.set(c.get() + l.size() as i64));
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        let _ = LIVE.try_with(|c| c.set(c.get() - l.size() as i64));
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        let _ = LIVE.try_with(|c| c.set(c.get() + n as i64 - l.size() as i64));
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const WAVES: usize = 10;
const PER_WAVE: usize = 100;

fn endpoint(i: usize) -> SocketAddr {
    let ip = std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(198, 18, 0, 1)) + i as u32);
    SocketAddr::new(ip.into(), 5140)
}

/// Member `id` (its key) at endpoint number `at`.
fn member(id: usize, at: usize, bootstrap: Vec<SocketAddr>, now: Instant) -> Node {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&(id as u64 + 1).to_be_bytes());
    let cfg = NodeConfig {
        overlay: Some(OverlayConfig::default()),
        trust_any: true,
        bootstrap,
        endpoints: vec![endpoint(at).into()],
        timers: Timers::overlay_links(),
        pool_slots: 64,
        rng_seed: id as u64,
        wall_origin_us: 1_800_000_000_000_000 + now.as_micros(),
        ..NodeConfig::default()
    };
    Node::new(Identity::from_seed(&Seed(seed)), cfg, now)
}

/// Moves datagrams among `nodes` (index = endpoint number) until quiet;
/// datagrams to a node not there are lost. `tap` sees each one first.
fn deliver(nodes: &mut [Option<Node>], now: Instant, tap: &mut dyn FnMut(usize, usize, &[u8])) {
    for _ in 0..50 {
        let mut moved = false;
        for i in 0..nodes.len() {
            while let Some(t) = nodes[i].as_mut().and_then(Node::poll_transmit) {
                let n = nodes[i].as_mut().expect("it sent");
                let bytes = n.pool().data(&t.buf).to_vec();
                n.pool_mut().free(t.buf);
                moved = true;
                let Some(j) = (0..nodes.len()).find(|&j| endpoint(j) == t.dst.addr) else {
                    continue;
                };
                tap(i, j, &bytes);
                if let Some(m) = nodes[j].as_mut() {
                    if let Some(b) = m.pool_mut().alloc_with(&bytes) {
                        m.handle_datagram(now, endpoint(i), b);
                    }
                }
            }
            if let Some(n) = nodes[i].as_mut() {
                while let Some(f) = n.poll_frame() {
                    n.pool_mut().free(f);
                }
                while n.poll_event().is_some() {}
            }
        }
        if !moved {
            break;
        }
    }
}

fn tick(nodes: &mut [Option<Node>], now: Instant) {
    for n in nodes.iter_mut().flatten() {
        if n.poll_timeout().is_some_and(|t| t <= now) {
            n.handle_timeout(now);
        }
    }
}

#[test]
fn a_thousand_transient_peers_leave_nothing_but_tombstones() {
    let mut now = Instant::ZERO;
    let step = Duration::from_millis(50);
    let mut nodes: Vec<Option<Node>> = (0..=PER_WAVE).map(|_| None).collect();
    nodes[0] = Some(member(0, 0, vec![], now));
    let mut nothing = |_: usize, _: usize, _: &[u8]| {};
    for _ in 0..20 {
        now = now + step;
        tick(&mut nodes, now);
        deliver(&mut nodes, now, &mut nothing);
    }
    let baseline = live();
    let start = nodes[0].as_ref().unwrap().peer_table();
    assert_eq!(start.present, 0);

    // Waves of members that bootstrap through node 0, link, and vanish
    // without a word. One recorded init is kept for the replay below.
    let mut peak = 0i64;
    let mut most_peers = 0;
    let mut recorded: Option<(usize, Vec<u8>, ringvpn::crypto::NodeKey)> = None;
    for wave in 0..WAVES {
        for (k, slot) in nodes.iter_mut().enumerate().skip(1) {
            let m = member(wave * PER_WAVE + k, k, vec![endpoint(0)], now);
            if recorded.is_none() {
                recorded = Some((k, Vec::new(), m.public_key()));
            }
            *slot = Some(m);
        }
        for _ in 0..100 {
            now = now + step;
            tick(&mut nodes, now);
            let mut tap = |from: usize, to: usize, bytes: &[u8]| {
                if let Some((k, first, _)) = recorded.as_mut() {
                    if wave == 0 && from == *k && to == 0 && first.is_empty() {
                        first.extend_from_slice(bytes);
                    }
                }
            };
            deliver(&mut nodes, now, &mut tap);
        }
        let t = nodes[0].as_ref().unwrap().peer_table();
        most_peers = most_peers.max(t.present);
        for slot in nodes.iter_mut().skip(1) {
            *slot = None;
        }
        // The wave's nodes are gone: what is left above the baseline is
        // node 0's, holding the wave's peers.
        peak = peak.max(live() - baseline);
        // Until the next wave, node 0 finds its links dead and forgets.
        for _ in 0..(90_000 / 50) {
            now = now + step;
            tick(&mut nodes, now);
            deliver(&mut nodes, now, &mut nothing);
        }
    }
    assert!(
        most_peers >= PER_WAVE / 2,
        "the waves linked: {most_peers} peers at most"
    );

    // Node 0 alone: dead links found, sessions expire, idle peers forgotten.
    for _ in 0..(300_000 / 50) {
        now = now + step;
        tick(&mut nodes, now);
        deliver(&mut nodes, now, &mut nothing);
    }
    let end = nodes[0].as_ref().unwrap().peer_table();
    let grown = live() - baseline;
    eprintln!(
        "peer table {start:?} -> {end:?}; heap above baseline: peak {} KiB, after {} KiB",
        peak / 1024,
        grown / 1024
    );
    let left: Vec<String> = nodes[0]
        .as_ref()
        .unwrap()
        .status(now)
        .peers
        .iter()
        .map(|p| {
            format!(
                "{} {} {}",
                p.name,
                p.state,
                nodes[0].as_ref().unwrap().debug_peer(&p.key)
            )
        })
        .collect();
    assert_eq!(end.present, 0, "every transient peer forgotten: {left:?}");
    assert_eq!(end.forgotten, (WAVES * PER_WAVE) as u64);
    assert_eq!(
        end.tombstones,
        WAVES * PER_WAVE,
        "bounded at 1,024, all kept here"
    );
    // Places are reused: the table is as long as the most peers at once
    // (a wave, and what it told node 0 of), 8 bytes each when vacant.
    assert!(
        end.places <= 2 * PER_WAVE + 1,
        "places reused: {}",
        end.places
    );
    // What stays: ~1,000 tombstones (key, timestamp, tree node) and the
    // empty places; everything else the waves brought is gone.
    assert!(grown < 160 * 1024, "heap {grown} B above its baseline");
    // A wave at its peak holds 100 peers with their sessions (raw keys,
    // ~400 B each: maintenance never makes them busy).
    assert!(grown * 3 < peak, "after {grown} B vs peak {peak} B");

    // A forgotten peer's recorded init, replayed: answered only
    // provisionally (the guard it left behind holds), so it moves nothing.
    let (_, init, key) = recorded.expect("recorded");
    assert!(!init.is_empty());
    let a = nodes[0].as_mut().unwrap();
    let b = a.pool_mut().alloc_with(&init).unwrap();
    a.handle_datagram(now, endpoint(1), b);
    let state = a.debug_peer(&key);
    assert!(state.contains("provisional true"), "{state}");
}
