//! Sub-ring hosts in the simulator: a group forms over a public ring;
//! what the public ring carries for it is sealed end to end.

use super::scenario::{contains, send, vip};
use super::*;
use crate::sim::{scenario, NetConfig};
use std::time::Duration;

#[test]
fn a_group_forms_its_own_ring_over_a_public_one() {
    let mut sim = scenario::mass_join(30, 7, 3, NetConfig::default());
    scenario::run_until_consistent(&mut sim, Duration::from_secs(5), Duration::from_secs(120))
        .expect("public ring");
    let g = SimGroup {
        name: "lab".into(),
        ca_seed: [9; 32],
        vpn: None,
    };
    let members: Vec<(usize, usize)> = [1, 5, 9, 13, 17, 21]
        .iter()
        .map(|&i| (i, sim.join_group(i, &g)))
        .collect();
    let mut took = None;
    for s in 0..60 {
        sim.run_for(Duration::from_secs(5));
        if sim.group_consistency(&members) >= 1.0 {
            took = Some(s * 5 + 5);
            break;
        }
    }
    assert!(took.is_some(), "{}", sim.group_consistency(&members));
    // Members link to members only, over tagged datagrams.
    let keys: Vec<_> = members
        .iter()
        .map(|&(i, k)| sim.net_node(i, k).public_key())
        .collect();
    for &(i, k) in &members {
        let ov = sim.net_node(i, k).overlay().unwrap();
        assert!(ov.table().iter().all(|c| keys.contains(&c.key)));
        assert!(sim.networks(i).unwrap().stats.tagged_in > 0);
    }
    // A datagram tagged for a network this host does not run.
    let (h, _) = members[0];
    let mut bytes = vec![0u8; 40];
    crate::wire::subring::TaggedRepr { network: 12345 }.emit(&mut bytes);
    sim.deliver_raw(h, crate::sim::endpoint_of(2), bytes);
    sim.run_for(Duration::from_millis(1));
    assert_eq!(sim.networks(h).unwrap().stats.unknown_network, 1);
}

/// Two members whose direct path is black-holed link over the public
/// ring; what the public nodes carry for them (`poll_to_carry`, all a
/// relay ever sees behind the carried header) never shows the frame,
/// and a datagram altered on the way is dropped, never delivered.
#[test]
fn carried_edges_are_sealed_end_to_end() {
    let mut sim = scenario::mass_join(12, 11, 3, NetConfig::default());
    scenario::run_until_consistent(&mut sim, Duration::from_secs(5), Duration::from_secs(120))
        .expect("public ring");
    sim.keep_frames = 16;
    sim.blocked.insert((1, 2));
    let g = SimGroup {
        name: "sealed".into(),
        ca_seed: [4; 32],
        vpn: Some(crate::vpn::VpnConfig::new("sealed")),
    };
    let a = (1, sim.join_group(1, &g));
    let b = (2, sim.join_group(2, &g));
    sim.run_for(Duration::from_secs(30));
    let vb = vip(&sim, b).expect("b's address");
    let ov = sim.net_node(a.0, a.1).overlay().unwrap();
    let link = ov.table().iter().next().expect("a sub-ring link");
    assert!(link.endpoint.is_carried(), "{:?}", link.endpoint);
    // Warm up: resolved, sent, delivered.
    send(&mut sim, a, vb, b"warm-up");
    sim.run_for(Duration::from_secs(2));
    assert!(contains(&sim.take_net_frames(b.0, b.1), b"warm-up"));
    // The next frame, as the public ring will carry it.
    let secret = b"the-secret-payload";
    let src = vip(&sim, a).unwrap();
    let f = crate::sim::udp_frame(&sim.net_node(a.0, a.1).public_key(), src, vb, secret);
    let carried = sim.with_net_node(a.0, a.1, |node, now| {
        let buf = node.pool_mut().alloc_with(&f).unwrap();
        node.handle_frame(now, buf);
        let t = node.poll_to_carry().expect("carried");
        let bytes = node.pool().data(&t.buf).to_vec();
        node.pool_mut().free(t.buf);
        (t.dst, bytes)
    });
    assert!(carried.0.is_carried());
    assert!(!carried.1.windows(secret.len()).any(|w| w == secret));
    let from = crate::wire::endpoint::Endpoint::carried(
        crate::overlay::Addr::of_key(&sim.node(a.0).public_key()).to_bytes(),
    );
    // Altered anywhere past the header: dropped.
    let auth = |sim: &Sim| {
        sim.net_node(b.0, b.1)
            .stats()
            .drops(crate::node::DropReason::AuthFailure)
    };
    let before = auth(&sim);
    for at in [20, carried.1.len() / 2, carried.1.len() - 1] {
        let mut bad = carried.1.clone();
        bad[at] ^= 0x20;
        sim.with_net_node(b.0, b.1, |node, now| {
            let buf = node.pool_mut().alloc_with(&bad).unwrap();
            node.handle_datagram(now, from, buf);
        });
    }
    assert_eq!(auth(&sim), before + 3);
    assert!(!contains(&sim.take_net_frames(b.0, b.1), secret));
    // As sent: delivered.
    sim.with_net_node(b.0, b.1, |node, now| {
        let buf = node.pool_mut().alloc_with(&carried.1).unwrap();
        node.handle_datagram(now, from, buf);
    });
    assert!(contains(&sim.take_net_frames(b.0, b.1), secret));
}
