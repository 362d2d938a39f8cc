//! DNS in the overlay, in the simulator: members register their names as
//! signed DHT records once their addresses are held, and each node answers
//! its host's questions on the virtual router's address from them —
//! forward, reverse, not found, refused — with no server anywhere. A name
//! two members want goes to the first; the second is told.

use ringvpn::sim::{scenario, NetConfig, Sim};
use ringvpn::vpn::VpnConfig;
use ringvpn::wire::{dns, ip};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

const NET: &str = "office";

/// `n` members named m0, m1, …; member `n` (if `twin`) also wants "m1".
fn named_ring(n: usize, twin: bool) -> Sim {
    let mut sim = Sim::new(7, NetConfig::default());
    sim.keep_frames = 64;
    let total = if twin { n + 1 } else { n };
    for i in 0..total {
        let name = if i == n {
            "M1".to_string()
        } else {
            format!("m{i}")
        };
        if i == n {
            // The twin comes later: the name is m1's by then.
            sim.run_for(Duration::from_secs(20));
        }
        sim.vpn = Some(VpnConfig {
            name: Some(name),
            ..VpnConfig::new(NET)
        });
        let boots = match i {
            0 => vec![],
            _ => vec![ringvpn::sim::endpoint_of((i as u32 * 7919) % i as u32)],
        };
        sim.add_node(boots);
    }
    scenario::run_until_consistent(&mut sim, Duration::from_secs(1), Duration::from_secs(60))
        .expect("ring");
    for _ in 0..60 {
        if (0..total).all(|i| registration(&sim, i) != "waiting for our address") {
            break;
        }
        sim.run_for(Duration::from_secs(1));
    }
    sim.run_for(Duration::from_secs(5));
    for i in 0..total {
        sim.take_frames(i);
    }
    sim
}

fn registration(sim: &Sim, i: usize) -> String {
    sim.node(i).vpn_status().unwrap().dns.registration
}

fn addr(sim: &Sim, i: usize) -> Ipv4Addr {
    sim.node(i).vpn_status().unwrap().address.unwrap()
}

/// A query as `dig` sends it, from node `i`'s host to the virtual router.
fn query(sim: &Sim, i: usize, id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = vec![(id >> 8) as u8, id as u8, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.').filter(|l| !l.is_empty()) {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&dns::CLASS_IN.to_be_bytes());
    let router = VpnConfig::new(NET).gateway();
    let mut f = sim.host_udp_frame(i, addr(sim, i), router, &q);
    f[14 + 20 + 2..14 + 20 + 4].copy_from_slice(&dns::PORT.to_be_bytes());
    f
}

/// What came back: rcode and the answers' data (A/AAAA as addresses,
/// PTR as a dotted name).
fn answer(sim: &mut Sim, i: usize, id: u16) -> Option<(u8, Vec<String>)> {
    for f in sim.take_frames(i) {
        let eth = ringvpn::wire::ethernet::Frame::new_checked(&f[..]).ok()?;
        let v4 = ip::V4::new_checked(eth.payload()).ok()?;
        let u = ip::Udp::new_checked(v4.payload()).ok()?;
        let m = u.payload();
        if u.src_port() != dns::PORT || u16::from_be_bytes([m[0], m[1]]) != id {
            continue;
        }
        let (ancount, mut at) = (u16::from_be_bytes([m[6], m[7]]), 12);
        while m[at] != 0 {
            at += 1 + usize::from(m[at]);
        }
        at += 5;
        let mut out = Vec::new();
        for _ in 0..ancount {
            let (rtype, len) = (
                u16::from_be_bytes([m[at + 2], m[at + 3]]),
                usize::from(u16::from_be_bytes([m[at + 10], m[at + 11]])),
            );
            let data = &m[at + 12..at + 12 + len];
            out.push(match rtype {
                dns::TYPE_A => Ipv4Addr::new(data[0], data[1], data[2], data[3]).to_string(),
                dns::TYPE_AAAA => Ipv6Addr::from(<[u8; 16]>::try_from(data).unwrap()).to_string(),
                _ => {
                    let mut s = String::new();
                    let mut j = 0;
                    while data[j] != 0 {
                        let l = usize::from(data[j]);
                        s += &String::from_utf8_lossy(&data[j + 1..j + 1 + l]);
                        s.push('.');
                        j += 1 + l;
                    }
                    s
                }
            });
            at += 12 + len;
        }
        return Some((m[3] & 0xf, out));
    }
    None
}

fn ask(sim: &mut Sim, i: usize, name: &str, qtype: u16) -> (u8, Vec<String>) {
    let id = 0x4000 + qtype;
    let f = query(sim, i, id, name, qtype);
    sim.inject_frame(i, &f);
    sim.run_for(Duration::from_secs(3));
    answer(sim, i, id).unwrap_or_else(|| panic!("no answer to {name} from node {i}"))
}

#[test]
fn members_find_each_other_by_name_forward_and_reverse() {
    let mut sim = named_ring(24, false);
    for i in 0..24 {
        assert_eq!(registration(&sim, i), "registered", "node {i}");
    }
    let cfg = VpnConfig::new(NET);
    let (a7, a13) = (addr(&sim, 7), addr(&sim, 13));
    assert_eq!(
        ask(&mut sim, 0, "m7.office", dns::TYPE_A),
        (0, vec![a7.to_string()])
    );
    let v6 = cfg.v6_of(a13).unwrap().to_string();
    assert_eq!(
        ask(&mut sim, 5, "M13.Office.", dns::TYPE_AAAA),
        (0, vec![v6])
    );
    let reverse = format!("{}.in-addr.arpa", {
        let o = a7.octets();
        format!("{}.{}.{}.{}", o[3], o[2], o[1], o[0])
    });
    assert_eq!(
        ask(&mut sim, 3, &reverse, dns::TYPE_PTR),
        (0, vec!["m7.office.".into()])
    );
    // Our own name needs no lookup; a second question comes from the cache.
    assert_eq!(
        ask(&mut sim, 4, "m4.office", dns::TYPE_A).1,
        vec![addr(&sim, 4).to_string()]
    );
    let lookups = sim.node(0).vpn_status().unwrap().dns.stats.lookups;
    assert_eq!(
        ask(&mut sim, 0, "m7.office", dns::TYPE_A).1,
        vec![a7.to_string()]
    );
    let dns_status = sim.node(0).vpn_status().unwrap().dns;
    assert_eq!(dns_status.stats.lookups, lookups);
    assert!(dns_status.stats.cache_hits >= 1);
    // Nobody by that name; not our zone.
    assert_eq!(
        ask(&mut sim, 2, "nobody.office", dns::TYPE_A),
        (dns::RCODE_NXDOMAIN, vec![])
    );
    assert_eq!(
        ask(&mut sim, 2, "example.com", dns::TYPE_A),
        (dns::RCODE_REFUSED, vec![])
    );
    // A member that leaves: once the cache and records expire, not found.
    sim.crash(7);
    sim.run_for(Duration::from_secs(400));
    assert_eq!(
        ask(&mut sim, 9, "m7.office", dns::TYPE_A),
        (dns::RCODE_NXDOMAIN, vec![])
    );
}

#[test]
fn a_name_already_held_is_refused_to_the_second_member() {
    let mut sim = named_ring(8, true);
    assert_eq!(registration(&sim, 1), "registered");
    let twin = registration(&sim, 8);
    assert!(twin.starts_with("taken by node"), "{twin}");
    let a1 = addr(&sim, 1);
    assert_eq!(
        ask(&mut sim, 8, "m1.office", dns::TYPE_A),
        (0, vec![a1.to_string()])
    );
}
