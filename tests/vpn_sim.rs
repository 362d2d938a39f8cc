//! The VPN over the overlay in the simulator: real node cores claim
//! addresses in the DHT, resolve each other by virtual IP, carry IP packets
//! end to end (routed over the overlay when not linked), answer ARP, and
//! broadcast to every member. Frames are injected as if the host sent them
//! and read back from the nodes' TAPs.

use ringvpn::sim::{scenario, NetConfig, Sim};
use ringvpn::vpn::{host_mac, VpnConfig, VIRTUAL_MAC};
use ringvpn::wire::ip;
use std::net::Ipv4Addr;
use std::time::Duration;

fn vpn_ring(n: usize, seed: u64) -> Sim {
    let mut sim = Sim::new(seed, NetConfig::default());
    sim.vpn = Some(VpnConfig::new("sim"));
    sim.keep_frames = 256;
    // As in scenario::mass_join, with the VPN on.
    let mut boots = Vec::new();
    for i in 0..n {
        let b = if i == 0 {
            vec![]
        } else {
            vec![ringvpn::sim::endpoint_of((i as u32 * 7919) % i as u32)]
        };
        boots.push(b);
    }
    for b in boots {
        sim.add_node(b);
    }
    scenario::run_until_consistent(&mut sim, Duration::from_secs(1), Duration::from_secs(60))
        .expect("ring");
    // Every node holds an address.
    for _ in 0..60 {
        if (0..n).all(|i| state(&sim, i) == "held") {
            break;
        }
        sim.run_for(Duration::from_secs(1));
    }
    for i in 0..n {
        assert_eq!(state(&sim, i), "held", "node {i}");
    }
    for i in 0..n {
        sim.take_frames(i);
    }
    sim
}

fn state(sim: &Sim, i: usize) -> &'static str {
    sim.node(i).vpn_status().unwrap().state
}

fn addr(sim: &Sim, i: usize) -> Ipv4Addr {
    sim.node(i).vpn_status().unwrap().address.unwrap()
}

/// The UDP bodies of IPv4 frames node `i` wrote to its TAP.
fn received(sim: &mut Sim, i: usize) -> Vec<Vec<u8>> {
    sim.take_frames(i)
        .into_iter()
        .filter_map(|f| {
            let eth = ringvpn::wire::ethernet::Frame::new_checked(&f[..]).ok()?;
            let v4 = ip::V4::new_checked(eth.payload()).ok()?;
            let u = ip::Udp::new_checked(v4.payload()).ok()?;
            Some(u.payload().to_vec())
        })
        .collect()
}

#[test]
fn members_reach_each_other_by_virtual_ip() {
    let n = 40;
    let mut sim = vpn_ring(n, 3);
    let ips: Vec<Ipv4Addr> = (0..n).map(|i| addr(&sim, i)).collect();
    let mut sorted = ips.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), n, "addresses are unique");
    // Every node sends to four others: most pairs are not linked, so the
    // packets go end to end over the overlay.
    for i in 0..n {
        for k in 1..=4 {
            let j = (i + k * 7) % n;
            let body = format!("{i}->{j}");
            let f = sim.host_udp_frame(i, ips[i], ips[j], body.as_bytes());
            sim.inject_frame(i, &f);
        }
    }
    sim.run_for(Duration::from_secs(10));
    let mut got = 0;
    for j in 0..n {
        for body in received(&mut sim, j) {
            let s = String::from_utf8(body).unwrap();
            assert!(s.ends_with(&format!("->{j}")), "{s} at {j}");
            got += 1;
        }
    }
    assert_eq!(
        got,
        4 * n,
        "every first packet arrives (parked, not dropped)"
    );
    // A second round, now resolved: arrives within a few round trips.
    for i in 0..n {
        let j = (i + 7) % n;
        let f = sim.host_udp_frame(i, ips[i], ips[j], b"again");
        sim.inject_frame(i, &f);
    }
    sim.run_for(Duration::from_secs(2));
    let again: usize = (0..n).map(|j| received(&mut sim, j).len()).sum();
    assert_eq!(again, n);
}

#[test]
fn a_packet_with_another_members_source_is_dropped() {
    let n = 20;
    let mut sim = vpn_ring(n, 5);
    let (a, b, c) = (addr(&sim, 0), addr(&sim, 1), addr(&sim, 2));
    // Node 0's host claims node 1's address as its source, towards node 2.
    let f = sim.host_udp_frame(0, b, c, b"forged");
    sim.inject_frame(0, &f);
    sim.run_for(Duration::from_secs(5));
    assert!(received(&mut sim, 2).is_empty());
    assert_eq!(sim.node_drops(2, "spoofed_source"), 1);
    // Its own address goes through.
    let f = sim.host_udp_frame(0, a, c, b"honest");
    sim.inject_frame(0, &f);
    sim.run_for(Duration::from_secs(5));
    assert_eq!(received(&mut sim, 2), vec![b"honest".to_vec()]);
    // An address nobody holds: dropped after the lookup, counted.
    let nobody = Ipv4Addr::new(100, 99, 99, 99);
    let f = sim.host_udp_frame(0, a, nobody, b"void");
    sim.inject_frame(0, &f);
    sim.run_for(Duration::from_secs(8));
    assert_eq!(sim.node_drops(0, "unknown_ip"), 1);
}

#[test]
fn broadcasts_reach_every_member_once() {
    let n = 60;
    let mut sim = vpn_ring(n, 7);
    let cfg = VpnConfig::new("sim");
    let src = addr(&sim, 0);
    let f = sim.host_udp_frame(0, src, cfg.broadcast(), b"hello all");
    sim.inject_frame(0, &f);
    let f = sim.host_udp_frame(0, src, Ipv4Addr::new(224, 0, 0, 251), b"mdns");
    sim.inject_frame(0, &f);
    sim.run_for(Duration::from_secs(5));
    for j in 1..n {
        let mut got = received(&mut sim, j);
        got.sort();
        assert_eq!(
            got,
            vec![b"hello all".to_vec(), b"mdns".to_vec()],
            "node {j}"
        );
    }
    assert!(received(&mut sim, 0).is_empty(), "not back to the sender");
    let dups: u64 = (0..n)
        .map(|j| sim.node_drops(j, "broadcast_duplicate"))
        .sum();
    assert_eq!(dups, 0, "one copy each");
}

#[test]
fn arp_is_answered_locally() {
    let mut sim = vpn_ring(6, 9);
    let (a, b) = (addr(&sim, 0), addr(&sim, 1));
    let mac = host_mac(&sim.node(0).public_key()).0;
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[8, 6, 0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&a.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&b.octets());
    sim.inject_frame(0, &f);
    let out = sim.take_frames(0);
    assert_eq!(out.len(), 1, "answered at once, nothing sent");
    assert_eq!(&out[0][22..28], &VIRTUAL_MAC.0);
    assert_eq!(&out[0][28..32], &b.octets());
}
