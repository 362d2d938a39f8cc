//! The underlay never runs through the VPN (issue 21): a datagram from an
//! address inside our VPN is dropped and counted, nothing is sent to one,
//! and candidates inside it — in a connect-to-me reply or an endpoints
//! message — are refused and never tried.

use super::*;
use crate::net::Prefix;
use crate::sim::{NetConfig, Sim};
use crate::vpn::VpnConfig;
use crate::wire::overlay::EndpointList;

fn vpn_prefix() -> Prefix {
    Prefix::parse("100.64.0.0/10").unwrap()
}

#[test]
fn a_datagram_from_inside_our_vpn_is_dropped_and_counted() {
    let mut net = established();
    net.nodes[0].1.underlay.guard.insert(vpn_prefix());
    // Node 1's next frame, as if it had come through node 0's own tunnel
    // (from node 1's virtual address): dropped before anything looks at
    // it, so the peer does not "move" there.
    let f = frame(MAC_A, MAC_B, b"through the tunnel");
    net.send_frame(1, &f);
    let mut captured = Vec::new();
    net.deliver(|i, bytes| {
        if i == 1 {
            captured.push(bytes.clone());
        }
        false
    });
    assert_eq!(captured.len(), 1);
    let a = &mut net.nodes[0].1;
    let inside: SocketAddr = "100.64.0.2:5140".parse().unwrap();
    let buf = a.pool_mut().alloc_with(&captured[0]).unwrap();
    a.handle_datagram(net.now, inside, buf);
    assert_eq!(a.stats().drops(DropReason::UnderlayInVpn), 1);
    assert!(net.frames_out(0).is_empty());
    let a = &mut net.nodes[0].1;
    assert_eq!(a.peers[0].reach.endpoint, Some(Endpoint::udp(ep(EP_B))));
    // The same bytes from a real address are a genuine packet from a peer
    // that moved: accepted (the check above is what stopped them).
    let real: SocketAddr = "198.18.0.9:5140".parse().unwrap();
    let buf = a.pool_mut().alloc_with(&captured[0]).unwrap();
    a.handle_datagram(net.now, real, buf);
    assert_eq!(net.frames_out(0), vec![f]);
    assert_eq!(
        net.nodes[0].1.peers[0].reach.endpoint,
        Some(Endpoint::udp(real))
    );
}

#[test]
fn nothing_is_sent_to_an_address_inside_our_vpn() {
    let mut net = established();
    let a = &mut net.nodes[0].1;
    a.underlay.guard.insert(vpn_prefix());
    // A peer configured (or roamed, before the guard) inside the VPN.
    a.peers[0].reach.endpoint = Some(Endpoint::udp("100.64.0.2:5140".parse().unwrap()));
    net.send_frame(0, &frame(MAC_B, MAC_A, b"would loop"));
    let mut sent = 0;
    net.deliver(|_, _| {
        sent += 1;
        true
    });
    assert_eq!(sent, 0);
    assert_eq!(net.nodes[0].1.stats().drops(DropReason::UnderlayInVpn), 1);
}

/// Twelve public VPN members, settled.
fn vpn_ring(seed: u64) -> Sim {
    let mut sim = Sim::new(seed, NetConfig::default());
    sim.vpn = Some(VpnConfig::new("sim"));
    for _ in 0..12 {
        let b = sim.random_bootstraps(3, None);
        sim.add_node(b);
    }
    crate::sim::scenario::run_until_consistent(
        &mut sim,
        Duration::from_secs(1),
        Duration::from_secs(90),
    )
    .expect("a consistent ring");
    sim.run_for(Duration::from_secs(10));
    sim
}

#[test]
fn candidates_inside_our_vpn_are_refused_and_never_tried() {
    let mut sim = vpn_ring(3);
    let inside: SocketAddr = "100.64.0.77:5140".parse().unwrap();
    sim.watch = Some(inside.ip());
    // A pair with no link yet.
    let (a, b) = (0..sim.len())
        .flat_map(|a| (0..sim.len()).map(move |b| (a, b)))
        .find(|&(a, b)| {
            a != b && {
                let kb = sim.node(b).public_key();
                sim.node(a)
                    .peer_path(&kb)
                    .is_none_or(|(p, _)| p != "direct")
            }
        })
        .expect("some pair is not linked");
    let (ka, kb) = (sim.node(a).public_key(), sim.node(b).public_key());
    // A advertises an address inside the VPN (a peer with an older
    // version, or a hostile one) beside its real endpoint, and asks B for
    // a link: its connect-to-me carries both.
    let real = crate::sim::endpoint_of(a as u32);
    sim.with_overlay(a, |ov, _| {
        ov.set_endpoints(&[Endpoint::udp(inside), Endpoint::udp(real)])
    });
    sim.with_node(a, |n, now| n.link_on_demand(now, kb));
    sim.run_for(Duration::from_secs(5));
    assert_eq!(sim.node(b).peer_path(&ka).map(|p| p.0), Some("direct"));
    let cands = |sim: &Sim| {
        sim.node(b)
            .status(sim.now())
            .peers
            .into_iter()
            .find(|p| p.key == ka)
            .unwrap()
            .candidates
    };
    assert!(!cands(&sim).iter().any(|c| c.addr == inside));
    assert!(sim.node_drops(b, "candidate_in_vpn") >= 1);
    // An endpoints message naming it: refused too, the rest taken.
    let list = EndpointList {
        endpoints: [Endpoint::udp(inside), Endpoint::udp(real)]
            .into_iter()
            .collect(),
    };
    let mut msg = Vec::new();
    list.emit(&mut msg);
    let before = sim.node_drops(b, "candidate_in_vpn");
    sim.with_node(b, |n, now| {
        let p = n.index.by_key[&ka];
        let buf = n.pool_mut().alloc_with(&msg).unwrap();
        n.endpoints_from(now, p, buf);
    });
    assert_eq!(sim.node_drops(b, "candidate_in_vpn"), before + 1);
    assert_eq!(cands(&sim), vec![Endpoint::udp(real)]);
    sim.run_for(Duration::from_secs(5));
    assert_eq!(sim.watched, 0, "no datagram ever went inside the VPN");
    assert_eq!(sim.node_drops(b, "underlay_in_vpn"), 0);
}

/// Where UDP is blocked only TCP reaches a member, so an unproven
/// address's one turn covers its UDP and its TCP endpoint: the lab's
/// UDP-blocked pair, told of its second public member by gossip, tried
/// only UDP and stayed off the ring's other side until a tunnel formed.
#[test]
fn one_turn_at_an_unproven_address_covers_its_udp_and_tcp_endpoints() {
    let mut n = node(1, &[], Timers::default());
    let udp = Endpoint::udp(ep("198.18.0.11:5140"));
    let tcp = Endpoint::tcp(udp.addr);
    let (dst, also) = n
        .aim_unproven(Instant::ZERO, Path::Direct(udp), &[udp, tcp])
        .unwrap();
    assert_eq!(dst, Path::Direct(udp));
    assert_eq!(also.as_slice(), &[tcp]);
    // The turn is taken: the address gets nothing more for a while.
    assert!(n
        .aim_unproven(Instant::ZERO, Path::Direct(tcp), &[])
        .is_none());
    assert_eq!(n.stats().drops(DropReason::ProbeLimited), 1);
}
