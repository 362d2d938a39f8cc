//! Proves the data path allocates nothing per packet: a counting global
//! allocator watches 10,000 frames each way through two nodes after warm-up.

use ringvpn::crypto::{Identity, Seed};
use ringvpn::node::{Node, NodeConfig, PeerConfig};
use ringvpn::time::Instant;
use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
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
    let before = ALLOCS.load(Ordering::SeqCst);
    let (mut to_b, mut to_a) = (0, 0);
    for _ in 0..10_000 {
        send(&mut a, &ab, now);
        pump(&mut a, ea, &mut b, now);
        to_b += drain_frames(&mut b);
        send(&mut b, &ba, now);
        pump(&mut b, eb, &mut a, now);
        to_a += drain_frames(&mut a);
    }
    let allocs = ALLOCS.load(Ordering::SeqCst) - before;
    assert_eq!((to_a, to_b), (10_000, 10_000), "every frame delivered");
    assert_eq!(allocs, 0, "heap allocations during 20,000 forwarded frames");
    println!("20000 frames forwarded, {allocs} heap allocations");
}
