//! Hostile overlay input from a linked peer: floods, forgeries, bad bytes.
//! Each is refused by a counted drop, costs bounded work, and leaks no
//! buffer.

use super::*;
use crate::overlay::{Addr, OverlayConfig};
use crate::wire::overlay::{emit_routed_header, Mode, OverlayMsg, MSG_ECHO_REQUEST};

/// Two overlay nodes: 1 at EP_A, 2 at EP_B bootstrapping through EP_A.
fn overlay_pair() -> Net {
    let mk = |me: u8, boot: Vec<SocketAddr>, at: &str| {
        let cfg = NodeConfig {
            timers: crate::node::Timers::overlay_links(),
            pool_slots: 256,
            wall_origin_us: 1_700_000_000_000_000,
            rng_seed: u64::from(me),
            overlay: Some(OverlayConfig::default()),
            bootstrap: boot,
            endpoints: vec![ep(at).into()],
            trust_any: true,
            ..NodeConfig::default()
        };
        Node::new(identity(me), cfg, Instant::ZERO)
    };
    let mut net = Net {
        nodes: vec![
            (ep(EP_A), mk(1, vec![], EP_A)),
            (ep(EP_B), mk(2, vec![ep(EP_A)], EP_B)),
        ],
        now: Instant::ZERO,
    };
    for _ in 0..5 {
        net.tick(Duration::from_millis(100));
        net.deliver(|_, _| true);
    }
    assert_eq!(net.nodes[0].1.overlay().unwrap().table().len(), 1, "linked");
    net
}

/// Has node `i` send a raw overlay control payload to its only peer.
fn send_raw(net: &mut Net, i: usize, payload: &[u8]) {
    let now = net.now;
    let n = &mut net.nodes[i].1;
    let buf = n.pool_mut().alloc_with(payload).unwrap();
    n.send_to_peer(now, PeerIdx(0), MsgType::Control, buf);
}

fn echo_to(dst: Addr, src: Addr) -> Vec<u8> {
    let mut b = Vec::new();
    emit_routed_header(&mut b, Mode::Exact, 64, src, dst, MSG_ECHO_REQUEST);
    OverlayMsg::EchoRequest { nonce: 1, stamp: 0 }.emit(&mut b);
    b
}

#[test]
fn a_peer_flooding_overlay_messages_is_held_to_its_budget() {
    use crate::node::limiter::OVERLAY_BURST;
    let mut net = overlay_pair();
    let a = net.nodes[0].1.overlay().unwrap().addr();
    let b = net.nodes[1].1.overlay().unwrap().addr();
    let replies_before = net.nodes[1].1.overlay().unwrap().stats.echo_replies;
    // 1,000 routed echoes at one instant, in bursts the pools can hold.
    for _ in 0..10 {
        for _ in 0..100 {
            send_raw(&mut net, 1, &echo_to(a, b));
        }
        net.deliver(|_, _| true);
    }
    let st = net.nodes[0].1.stats();
    let limited = st.drops(DropReason::OverlayRateLimited);
    assert!(limited >= 1000 - u64::from(OVERLAY_BURST) - 5, "{limited}");
    let replies = net.nodes[1].1.overlay().unwrap().stats.echo_replies - replies_before;
    assert!(
        replies <= u64::from(OVERLAY_BURST) + 5 && replies >= 100,
        "{replies} answered"
    );
    // The budget refills: a second later the peer is heard again.
    net.tick(Duration::from_secs(1));
    send_raw(&mut net, 1, &echo_to(a, b));
    net.deliver(|_, _| true);
    assert_eq!(
        net.nodes[0].1.stats().drops(DropReason::OverlayRateLimited),
        limited
    );
    for (_, n) in &net.nodes {
        assert_eq!(n.pool().in_use(), 0);
    }
}

#[test]
fn malformed_and_forged_overlay_messages_are_counted_drops() {
    let mut net = overlay_pair();
    let a = net.nodes[0].1.overlay().unwrap().addr();
    let b = net.nodes[1].1.overlay().unwrap().addr();
    // Bad mode; a body that does not add up; an unknown routed type.
    let mut bad_mode = echo_to(a, b);
    bad_mode[1] = 9;
    let mut short = echo_to(a, b);
    short.pop();
    let mut unknown = echo_to(a, b);
    unknown[36] = 99;
    let bad_lists = [vec![4, 9, 0, 0], vec![6, 1, 0, 0, 1]];
    for m in [&bad_mode, &short, &unknown, &bad_lists[0], &bad_lists[1]] {
        send_raw(&mut net, 1, m);
    }
    // Forged: a message claiming to come from the receiver itself, a
    // connect-to-me whose key is not its source's, and a reply nobody asked for.
    send_raw(&mut net, 1, &echo_to(a, a));
    let ctm = |ty| {
        let mut m = Vec::new();
        let msg = match ty {
            1 => OverlayMsg::CtmRequest {
                purpose: 1,
                key: identity(9).public(),
                token: 0,
                endpoints: [ep(EP_C).into()].into_iter().collect(),
                via: None,
                init: Vec::new(),
            },
            _ => OverlayMsg::CtmReply {
                purpose: 2,
                key: identity(2).public(),
                token: 0,
                endpoints: [ep(EP_C).into()].into_iter().collect(),
                neighbours: Default::default(),
            },
        };
        emit_routed_header(&mut m, Mode::Exact, 64, b, a, msg.msg_type());
        msg.emit(&mut m);
        m
    };
    send_raw(&mut net, 1, &ctm(1));
    send_raw(&mut net, 1, &ctm(2));
    // Exact mode to an address nobody has.
    send_raw(&mut net, 1, &echo_to(a.offset(1), b));
    net.deliver(|_, _| true);
    let st = net.nodes[0].1.stats();
    assert_eq!(st.drops(DropReason::OverlayMalformed), 5);
    assert_eq!(st.drops(DropReason::OverlayForged), 2);
    assert_eq!(st.drops(DropReason::Unsolicited), 1);
    assert_eq!(st.drops(DropReason::NoRoute), 1);
    // Nothing was linked on a forged say-so.
    assert_eq!(net.nodes[0].1.peers.len(), 1);
    for (_, n) in &net.nodes {
        assert_eq!(n.pool().in_use(), 0);
    }
}

/// A peer writing a new routed source on each DHT request (issue 13): the
/// per-source limit never sees the same source twice, but the requests
/// share the budget of the link they come on.
#[test]
fn dht_requests_with_rotating_sources_share_their_links_budget() {
    use crate::overlay::dht::LINK_BURST;
    use crate::wire::dht::DhtMsg;
    use crate::wire::overlay::MSG_DHT;
    let mut net = overlay_pair();
    let a = net.nodes[0].1.overlay().unwrap().addr();
    let served = |net: &Net| net.nodes[0].1.overlay().unwrap().dht().stats.gets_served;
    let before = served(&net);
    for batch in 0..4u128 {
        for i in 0..45u128 {
            let mut m = Vec::new();
            let src = Addr(0x5eed_0000 + batch * 1000 + i);
            emit_routed_header(&mut m, Mode::Exact, 64, src, a, MSG_DHT);
            OverlayMsg::Dht(DhtMsg::Get {
                id: i as u32,
                replica: 0,
                key: a,
            })
            .emit(&mut m);
            send_raw(&mut net, 1, &m);
        }
        net.deliver(|_, _| true);
    }
    let got = served(&net) - before;
    assert!(got <= u64::from(LINK_BURST) + 1, "{got} of 180 served");
    assert!(got >= 100, "{got}: honest volumes pass");
    assert!(net.nodes[0].1.overlay().unwrap().dht().stats.refused_rate >= 25);
}
