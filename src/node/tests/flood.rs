//! A handshake flood from spoofed addresses: once the handshake budget
//! runs low, the node answers inits with cookies instead of checking
//! signatures, its state stays bounded, and a real peer still links by
//! proving its address with the cookie it is given.

use super::*;
use crate::crypto::handshake;
use crate::node::limiter::{GLOBAL_BURST, GLOBAL_RATE_PER_S};

/// A well-formed init from a key nobody trusts (checking it costs a
/// signature verification, the work a flood wants to cause).
fn outsider_init(timestamp: u64) -> Vec<u8> {
    let rng = ring::rand::SystemRandom::new();
    let mut out = vec![0u8; 512];
    let (_, len) =
        handshake::create_init(&identity(99), &rng, 7, None, timestamp, &mut out).unwrap();
    out.truncate(len);
    out
}

#[test]
fn a_peer_links_through_a_spoofed_init_flood() {
    let mut net = Net::pair(Timers::default());
    // Node 1 knows node 0's key but not where it is: only node 0 can
    // start the link, and its init meets node 1 under load.
    let mut passive = node(2, &[(1, EP_A)], Timers::default());
    passive.peers[0].reach.endpoint = None;
    net.nodes[1].1 = passive;
    let init = outsider_init(1);
    // 10,000 inits a second, each from another address, for 2 s; node 0
    // starts its handshake with node 1 after 0.5 s of it.
    let mut linked_at = None;
    for step in 0..200u32 {
        for k in 0..100u32 {
            let i = step * 100 + k;
            let from = SocketAddr::from(([198, 19, (i >> 8) as u8, i as u8], 40000));
            let b = &mut net.nodes[1].1;
            let buf = b.pool_mut().alloc_with(&init).unwrap();
            b.handle_datagram(net.now, from, buf);
            if k % 32 == 31 {
                // The shell sends what a batch of reads produced.
                net.deliver(|_, _| true);
            }
        }
        if step >= 50 {
            net.tick(Duration::from_millis(10));
        } else {
            net.now = net.now + Duration::from_millis(10);
        }
        net.deliver(|_, _| true);
        if linked_at.is_none() && step >= 50 && net.up(0) && net.up(1) {
            linked_at = Some(step);
        }
    }
    let b = net.nodes[1].1.stats();
    let (cookies, refused) = (
        b.drops(DropReason::CookieSent),
        b.drops(DropReason::UnknownPeer),
    );
    eprintln!(
        "cookie_sent {cookies}, unknown_peer {refused}, rate_limited {}, linked after {:?} steps",
        b.drops(DropReason::RateLimited),
        linked_at.map(|s| s - 50)
    );
    // Only what the budget allows was checked (burst plus 2 s of refill);
    // every other init got a cookie or, beyond the cookie budget, nothing.
    assert!(
        refused <= u64::from(GLOBAL_BURST + 2 * GLOBAL_RATE_PER_S),
        "{refused}"
    );
    assert!(cookies > 15_000, "{cookies}");
    let limited = b.drops(DropReason::RateLimited);
    // The flood's 20,000 inits, and node 0's first one (it got a cookie).
    assert_eq!(refused + cookies + limited, 20_001);
    let steps = linked_at.expect("node 0 links despite the flood") - 50;
    assert!(steps <= 10, "linked after {steps} steps of 10 ms");
    // Node 0 got there by proving its address.
    let ep_b = Endpoint::udp(ep(EP_B));
    assert!(net.nodes[0]
        .1
        .guards
        .cookies
        .for_endpoint(net.now, &ep_b)
        .is_some());
    // Nothing of the flood is held: pool buffers, peers, sessions.
    assert!(net.nodes[1].1.pool().in_use() <= 1);
    assert_eq!(net.nodes[1].1.peers.len(), 1);
}

#[test]
fn without_load_no_cookie_is_asked() {
    let net = established();
    for (_, n) in &net.nodes {
        assert_eq!(n.stats().drops(DropReason::CookieSent), 0);
    }
}
