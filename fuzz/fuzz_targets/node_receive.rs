#![no_main]
//! The node's whole receive path: a node with an established session gets
//! arbitrary datagrams (alone, or spliced behind a valid header so the
//! fuzzer reaches the AEAD and control parsing). It must never panic, never
//! leak a pool buffer, and count every refused datagram.
use libfuzzer_sys::fuzz_target;
use ringvpn::crypto::{Identity, Seed};
use ringvpn::node::{Node, NodeConfig, PeerConfig};
use ringvpn::time::Instant;
use std::net::SocketAddr;

fn node(me: u8, other: u8, ep: SocketAddr) -> Node {
    let cfg = NodeConfig {
        peers: vec![PeerConfig {
            name: "p".into(),
            key: Identity::from_seed(&Seed([other; 32])).public(),
            endpoint: Some(ep),
        }],
        pool_slots: 64,
        ..NodeConfig::default()
    };
    Node::new(Identity::from_seed(&Seed([me; 32])), cfg, Instant::ZERO)
}

fn pump(from: &mut Node, from_ep: SocketAddr, to: &mut Node) -> Option<Vec<u8>> {
    let mut last = None;
    while let Some(t) = from.poll_transmit() {
        let bytes = from.pool().data(&t.buf).to_vec();
        from.pool_mut().free(t.buf);
        let b = to.pool_mut().alloc_with(&bytes).unwrap();
        to.handle_datagram(Instant::ZERO, from_ep, b);
        last = Some(bytes);
    }
    last
}

fuzz_target!(|input: &[u8]| {
    let (ea, eb): (SocketAddr, SocketAddr) = (
        "198.18.0.1:1".parse().unwrap(),
        "198.18.0.2:1".parse().unwrap(),
    );
    let mut a = node(1, 2, eb);
    let mut b = node(2, 1, ea);
    a.handle_timeout(Instant::ZERO);
    for _ in 0..3 {
        pump(&mut a, ea, &mut b);
        pump(&mut b, eb, &mut a);
    }
    while let Some(f) = b.poll_frame() {
        b.pool_mut().free(f);
    }
    let drops_before = b.stats().total_drops();
    let Some(buf) = b.pool_mut().alloc_with(input) else {
        return;
    };
    b.handle_datagram(Instant::from_millis(1), ea, buf);
    let mut out = 0;
    while let Some(f) = b.poll_frame() {
        b.pool_mut().free(f);
        out += 1;
    }
    while let Some(t) = b.poll_transmit() {
        b.pool_mut().free(t.buf);
        out += 1;
    }
    // Random bytes cannot forge a session message: either dropped and
    // counted, or a handshake answered.
    assert!(out > 0 || b.stats().total_drops() > drops_before);
    assert_eq!(b.pool().in_use(), 0, "pool buffer leaked");
});
