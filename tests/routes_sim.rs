//! Exit gateways in the simulator (docs/ROUTES.md): real node cores in
//! certificate mode, three gateways whose certificates allow 0.0.0.0/0,
//! one member that advertises it without that permission, and clients with
//! `exit = auto`. The clients converge on certified gateways only, their
//! internet packets reach the gateway they chose, and after 10% of the
//! members crash — the most used gateway among them — every client is on
//! a live gateway within the failover time and nothing it sends goes to
//! the dead one.

use ringvpn::crypto::cert::Prefix;
use ringvpn::routes::{Exit, RoutesConfig};
use ringvpn::sim::{scenario, NetConfig, Sim, SimCerts};
use ringvpn::vpn::VpnConfig;
use ringvpn::wire::ip;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

const N: usize = 100;
const GATEWAYS: [usize; 3] = [3, 40, 77];
const ROGUE: usize = 5;
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 19, 200, 1);

fn clients() -> impl Iterator<Item = usize> {
    (60..N).filter(|i| !GATEWAYS.contains(i))
}

fn network(seed: u64) -> Sim {
    let mut sim = Sim::new(seed, NetConfig::default());
    sim.vpn = Some(VpnConfig::new("sim"));
    sim.keep_frames = 64;
    let default = Prefix::parse("0.0.0.0/0").unwrap();
    let mut cert_routes = HashMap::new();
    for g in GATEWAYS {
        cert_routes.insert(g as u32, vec![default]);
    }
    sim.certs = Some(SimCerts {
        ca_seed: [42; 32],
        network: "sim".into(),
        prefixes: HashMap::new(),
        routes: cert_routes,
        groups: HashMap::new(),
    });
    for g in GATEWAYS.into_iter().chain([ROGUE]) {
        let mut r = RoutesConfig::new("sim");
        r.advertise = vec![default];
        r.accept = false;
        sim.routes.insert(g as u32, r);
    }
    for c in clients() {
        let mut r = RoutesConfig::new("sim");
        r.exit = Exit::Auto;
        r.accept = false;
        sim.routes.insert(c as u32, r);
    }
    for _ in 0..N {
        let boots = sim.random_bootstraps(3, None);
        sim.add_node(boots);
    }
    scenario::run_until_consistent(&mut sim, Duration::from_secs(1), Duration::from_secs(60))
        .expect("ring");
    sim
}

fn exit_of(sim: &Sim, i: usize) -> Option<String> {
    sim.node(i).routes_status()?.exit_via
}

/// Sends one packet from client `c`'s host to the server; the gateway
/// that writes it to its TAP.
fn send_to_server(sim: &mut Sim, c: usize) -> Option<usize> {
    let me = sim.node(c).held_address()?;
    let frame = sim.host_udp_frame(c, me, SERVER, b"to the internet");
    sim.inject_frame(c, &frame);
    // The gateway looks the client's address up first (100 ms links).
    sim.run_for(Duration::from_secs(3));
    GATEWAYS.into_iter().chain([ROGUE]).find(|&g| {
        sim.is_alive(g)
            && sim.take_frames(g).iter().any(|f| {
                ringvpn::wire::ethernet::Frame::new_checked(&f[..])
                    .ok()
                    .and_then(|e| ip::destination(e.payload()))
                    == Some(IpAddr::V4(SERVER))
            })
    })
}

#[test]
fn clients_use_certified_gateways_and_move_when_theirs_crashes() {
    let mut sim = network(7);
    sim.run_for(Duration::from_secs(40));
    let names: Vec<String> = GATEWAYS.iter().map(|g| format!("n{g}")).collect();
    let mut used: HashMap<String, usize> = HashMap::new();
    for c in clients() {
        let via = exit_of(&sim, c)
            .unwrap_or_else(|| panic!("client {c} has no exit: {:?}", sim.node(c).routes_status()));
        assert!(names.contains(&via), "client {c} exits through {via}");
        let st = sim.node(c).routes_status().unwrap();
        assert!(
            st.routes
                .iter()
                .all(|r| r.advertiser != format!("n{ROGUE}")),
            "client {c} learned the uncertified advertiser"
        );
        *used.entry(via.clone()).or_default() += 1;
        for g in 0..sim.len() {
            sim.take_frames(g);
        }
        let got = send_to_server(&mut sim, c);
        assert_eq!(
            got.map(|g| format!("n{g}")),
            Some(via),
            "client {c}'s packet"
        );
    }
    // Storing nodes refused the rogue's record (and it is renewed, so
    // refused again and again).
    let refused: u64 = (0..N)
        .filter_map(|i| sim.with_overlay(i, |ov, _| ov.dht().stats.refused_policy))
        .sum();
    assert!(refused > 0, "nobody refused the uncertified route record");
    let busiest = used.iter().max_by_key(|(_, n)| **n).unwrap().0.clone();
    let dead: usize = busiest.trim_start_matches('n').parse().unwrap();
    eprintln!(
        "exits in use: {used:?}; route records refused by storing nodes: {refused}; crashing {busiest} and 10% of the others"
    );
    // 10% of the members crash at once, the busiest gateway among them
    // (clients and the other gateways stay).
    let mut crashed = vec![dead];
    let mut k = 1;
    while crashed.len() < N / 10 {
        let i = (k * 37) % N;
        k += 1;
        if !GATEWAYS.contains(&i) && !clients().any(|c| c == i) && !crashed.contains(&i) {
            crashed.push(i);
        }
    }
    for &i in &crashed {
        sim.crash(i);
    }
    // The failover time: dead after 2 s unheard, judged at the next
    // probe round (500 ms); the next gateway is probed already.
    sim.run_for(Duration::from_secs(3));
    for c in clients() {
        let via = exit_of(&sim, c).unwrap_or_default();
        assert!(
            names.contains(&via) && via != busiest,
            "client {c} on {via:?} after the crash"
        );
        for g in 0..sim.len() {
            sim.take_frames(g);
        }
        let got = send_to_server(&mut sim, c);
        assert!(
            got.is_some_and(|g| g != dead && GATEWAYS.contains(&g)),
            "client {c}'s packet after the crash went to {got:?}"
        );
    }
}
