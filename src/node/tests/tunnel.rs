//! VPN members behind NATs in the simulator: a tunnel edge between two
//! whose NATs cannot be punched (symmetric and port-restricted) goes
//! through a public member, which sees only the routed header and
//! ciphertext and cannot alter it; a direct link survives a NAT that loses
//! its mappings.

use crate::sim::nat::{Geography, NatModel, SimNat};
use crate::sim::{scenario, NetConfig, Sim};
use crate::vpn::VpnConfig;
use std::net::Ipv4Addr;
use std::time::Duration;

const A: usize = 4;
const B: usize = 5;

/// VPN members behind NATs of `kinds`, in geography, not yet run; each
/// added with the bootstraps `boots` gives it.
fn nat_members(
    seed: u64,
    kinds: &[SimNat],
    mut boots: impl FnMut(&mut Sim, usize) -> Vec<std::net::SocketAddr>,
) -> Sim {
    let mut sim = Sim::new(seed, NetConfig::default());
    sim.nat = Some(NatModel::new(seed));
    sim.geo = Some(Geography::new());
    sim.vpn = Some(VpnConfig::new("sim"));
    sim.keep_frames = 64;
    for (i, &k) in kinds.iter().enumerate() {
        sim.nat.as_mut().unwrap().set_kind(i as u32, k);
        let b = boots(&mut sim, i);
        sim.add_node(b);
    }
    sim
}

/// Four public members, then A and B behind NATs `a` and `b`.
fn nat_vpn_sim(a: SimNat, b: SimNat, seed: u64) -> Sim {
    use SimNat::Public;
    let kinds = [Public, Public, Public, Public, a, b];
    let mut sim = nat_members(seed, &kinds, |sim, _| sim.random_bootstraps(3, None));
    scenario::run_until_consistent(&mut sim, Duration::from_secs(1), Duration::from_secs(90))
        .expect("a consistent ring, tunnel edges included");
    sim.run_for(Duration::from_secs(20));
    sim
}

pub(super) fn vip(sim: &Sim, i: usize) -> Ipv4Addr {
    sim.node(i).vpn_status().unwrap().address.unwrap()
}

pub(super) fn udp_frame(sim: &Sim, i: usize, dst: Ipv4Addr, body: &[u8]) -> Vec<u8> {
    sim.host_udp_frame(i, vip(sim, i), dst, body)
}

pub(super) fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

pub(super) fn received_marker(sim: &mut Sim, i: usize, marker: &[u8]) -> bool {
    sim.take_frames(i).iter().any(|f| contains(f, marker))
}

#[test]
fn relay_forwards_only_ciphertext_and_cannot_alter_it() {
    let mut sim = nat_vpn_sim(SimNat::Symmetric, SimNat::PortRestricted, 11);
    let kb = sim.node(B).public_key();
    // Whether or not the ring made them neighbours, A asks for a link.
    sim.with_node(A, |n, now| n.link_on_demand(now, kb));
    sim.run_for(Duration::from_secs(30));
    let (path, relay) = sim.node(A).peer_path(&kb).expect("B is a peer of A");
    assert_eq!(
        path, "relayed",
        "symmetric and port-restricted cannot punch"
    );
    let relay = relay.unwrap();
    let r = (0..sim.len())
        .find(|&i| sim.node(i).public_key() == relay)
        .unwrap();
    assert!(r < A, "the relay is a public member");
    let ka = sim.node(A).public_key();
    assert_eq!(
        sim.node(B).peer_path(&ka),
        Some(("relayed", Some(relay))),
        "both directions use the same relay"
    );
    // A packet crosses the tunnel.
    let marker = b"through-the-relay";
    let dst = vip(&sim, B);
    let f = udp_frame(&sim, A, dst, marker);
    sim.inject_frame(A, &f);
    sim.run_for(Duration::from_secs(2));
    assert!(
        received_marker(&mut sim, B, marker),
        "delivered through the relay"
    );
    assert!(sim.node(r).relayed_bytes() > 0);
    // What the relay reads, seen on the wire: A's datagrams to it opened
    // with the relay's own link session. Tunnel data, not the marker.
    let (ka, kr, kb) = (
        sim.node(A).public_key(),
        sim.node(r).public_key(),
        sim.node(B).public_key(),
    );
    sim.hold = Some((A as u32, r as u32));
    let marker = b"the-relay-reads-only-this-much";
    let f = udp_frame(&sim, A, dst, marker);
    sim.inject_frame(A, &f);
    sim.run_for(Duration::from_millis(300));
    let held = std::mem::take(&mut sim.held);
    sim.hold = None;
    let read: Vec<Vec<u8>> = held
        .iter()
        .filter_map(|(_, d)| open_as(sim.node(r), &ka, d))
        .collect();
    assert!(
        read.iter().any(|m| is_tunnel_data(m)),
        "tunnel data went to the relay"
    );
    assert!(
        read.iter().all(|m| !contains(m, marker)),
        "the relay read plaintext"
    );
    for (from, d) in held {
        sim.deliver_raw(r, from, d);
    }
    sim.run_for(Duration::from_secs(2));
    assert!(received_marker(&mut sim, B, marker), "then delivered");
    // A relay that alters what it forwards (one bit of the inner message,
    // its link to B sealed again properly): B refuses it and counts it.
    let auth_before = sim.node_drops(B, "auth_failure");
    sim.hold = Some((r as u32, B as u32));
    let f = udp_frame(&sim, A, dst, b"tampered-in-flight");
    sim.inject_frame(A, &f);
    sim.run_for(Duration::from_millis(300));
    let held = std::mem::take(&mut sim.held);
    sim.hold = None;
    let mut altered = 0;
    for (from, d) in held {
        let d = match open_as(sim.node(B), &kr, &d) {
            Some(mut m) if is_tunnel_data(&m) => {
                *m.last_mut().unwrap() ^= 1;
                altered += 1;
                seal_as(sim.node(r), &kb, &d, &m)
            }
            _ => d,
        };
        sim.deliver_raw(B, from, d);
    }
    sim.run_for(Duration::from_secs(2));
    assert!(altered > 0, "tunnel data came through the relay");
    assert!(!received_marker(&mut sim, B, b"tampered-in-flight"));
    assert!(sim.node_drops(B, "auth_failure") > auth_before);
}

/// Whether a link-control payload is tunnel data (routed data with the
/// tunnel flag).
fn is_tunnel_data(m: &[u8]) -> bool {
    use crate::wire::overlay::DATA_FLAG_TUNNEL;
    m.first() == Some(&crate::wire::control::KIND_ROUTED_DATA)
        && m.get(3).is_some_and(|f| f & DATA_FLAG_TUNNEL != 0)
}

/// What `n` reads in a datagram its link with `from` carried: opened with
/// its own session, its replay window untouched.
fn open_as(
    n: &crate::node::Node,
    from: &crate::crypto::NodeKey,
    datagram: &[u8],
) -> Option<Vec<u8>> {
    use crate::wire::data::{Packet, HEADER_LEN, TAG_LEN};
    let p = Packet::new_checked(datagram).ok()?;
    let (receiver, counter) = (p.receiver(), p.counter());
    let peer = &n.peers[usize::from(n.index.by_key.get(from)?.0)];
    let s = [&peer.sessions.current, &peer.sessions.previous]
        .into_iter()
        .flatten()
        .find(|s| s.local_index == receiver)?;
    let (hdr, body) = datagram.split_at(HEADER_LEN);
    let mut body = body.to_vec();
    s.peek_open(counter, hdr, &mut body).ok()?;
    body.truncate(body.len() - TAG_LEN);
    Some(body)
}

/// `plain` sealed again by `n` for its link with `to`, with the header of
/// `original` (same counter: it replaces that datagram).
fn seal_as(
    n: &crate::node::Node,
    to: &crate::crypto::NodeKey,
    original: &[u8],
    plain: &[u8],
) -> Vec<u8> {
    use crate::wire::data::{Packet, HEADER_LEN};
    let counter = Packet::new_checked(original).unwrap().counter();
    let peer = &n.peers[usize::from(n.index.by_key[to].0)];
    let s = peer.sessions.current.as_ref().unwrap();
    let hdr = &original[..HEADER_LEN];
    let mut body = plain.to_vec();
    let tag = s.seal(counter, hdr, &mut body);
    [hdr, &body[..], &tag[..]].concat()
}

/// Sends one numbered VPN packet each way every 100 ms for `steps` steps
/// (numbers from `first`); marks the numbers that arrive in `got_ab` and
/// `got_ba`.
fn exchange(sim: &mut Sim, first: usize, steps: usize, got: &mut [Vec<bool>; 2]) {
    let (va, vb) = (vip(sim, A), vip(sim, B));
    for k in first..first + steps {
        let f = udp_frame(sim, A, vb, format!("seq-ab-{k:05}").as_bytes());
        sim.inject_frame(A, &f);
        let f = udp_frame(sim, B, va, format!("seq-ba-{k:05}").as_bytes());
        sim.inject_frame(B, &f);
        sim.run_for(Duration::from_millis(100));
        for (dir, at) in [(0, B), (1, A)] {
            let tag: &[u8] = if dir == 0 { b"seq-ab-" } else { b"seq-ba-" };
            for f in sim.take_frames(at) {
                if let Some(i) = f.windows(tag.len()).position(|w| w == tag) {
                    let digits = f.get(i + tag.len()..i + tag.len() + 5).unwrap_or(&[]);
                    let n = std::str::from_utf8(digits)
                        .ok()
                        .and_then(|d| d.parse::<usize>().ok());
                    if let Some(slot) = n.and_then(|n| got[dir].get_mut(n)) {
                        *slot = true;
                    }
                }
            }
        }
    }
}

/// B's NAT loses every mapping mid-transfer (a router reboot): B's packets
/// leave from a new port, and nothing comes in through the old one.
/// Traffic must resume by itself and end on a direct path again. Returns
/// the loss window (first to last lost packet, either way) and the count.
fn survives_a_rebind(a: SimNat, b: SimNat, seed: u64) -> (Duration, usize) {
    trace_logs();
    let mut sim = nat_vpn_sim(a, b, seed);
    let kb = sim.node(B).public_key();
    let (warm, run) = (100, 600);
    let mut got = [vec![false; warm + run + 30], vec![false; warm + run + 30]];
    exchange(&mut sim, 0, warm, &mut got);
    assert_eq!(sim.node(A).peer_path(&kb).map(|p| p.0), Some("direct"));
    sim.nat.as_mut().unwrap().rebind(B as u32);
    exchange(&mut sim, warm, run, &mut got);
    // The last ones have time to land; they are not counted as lost.
    sim.run_for(Duration::from_secs(2));
    let lost: Vec<usize> = (warm..warm + run - 5)
        .filter(|&k| !got[0][k] || !got[1][k])
        .collect();
    let ka = sim.node(A).public_key();
    assert_eq!(sim.node(A).peer_path(&kb).map(|p| p.0), Some("direct"));
    assert_eq!(sim.node(B).peer_path(&ka).map(|p| p.0), Some("direct"));
    let window = match (lost.first(), lost.last()) {
        (Some(f), Some(l)) => Duration::from_millis(100 * (l - f + 1) as u64),
        _ => Duration::ZERO,
    };
    (window, lost.len())
}

#[test]
fn a_direct_link_survives_a_nat_that_loses_its_mappings() {
    // To a public member: B's next packet comes from the new port and A
    // follows it (authenticated roaming).
    let (gap, lost) = survives_a_rebind(SimNat::Public, SimNat::PortRestricted, 12);
    eprintln!("public <-> port-restricted: loss window {gap:?} ({lost} of 600 steps)");
    assert!(gap <= Duration::from_secs(1), "{gap:?}");
    // Both port-restricted: A's NAT filters B's new port, so the pair falls
    // back to the overlay and punches again.
    let (gap, lost) = survives_a_rebind(SimNat::PortRestricted, SimNat::PortRestricted, 13);
    eprintln!("port-restricted <-> port-restricted: loss window {gap:?} ({lost} of 600 steps)");
    assert!(gap < Duration::from_secs(3), "{gap:?}");
}

/// Log lines prefixed with the simulated node and time (RUST_LOG=ringvpn=info
/// and --nocapture to follow them).
fn trace_logs() {
    use std::io::Write;
    let _ = env_logger::builder()
        .is_test(true)
        .format(|buf, r| {
            let (node, us) = crate::sim::trace_context();
            writeln!(buf, "{:>9.3} n{node:<4} {}", us as f64 / 1e6, r.args())
        })
        .try_init();
}

/// Traffic does not wait for the punch: two members that cannot punch
/// (symmetric and port-restricted) exchange their first packet over the
/// ring while their direct attempts run, long before a tunnel could exist
/// (the punch alone takes ~8 s to give up). Counted from the moment both
/// hold their addresses, in ten ring orders.
#[test]
fn first_packet_does_not_wait_for_the_punch() {
    let mut waits = Vec::new();
    for seed in 1..=10u64 {
        use SimNat::{PortRestricted, Public, Symmetric};
        let kinds = [Public, Public, Symmetric, PortRestricted];
        // Everyone joins through node 0.
        let mut sim = nat_members(seed, &kinds, |_, i| {
            (i > 0)
                .then(|| crate::sim::endpoint_of(0))
                .into_iter()
                .collect()
        });
        let holds = |sim: &Sim, i: usize| sim.node(i).vpn_status().and_then(|s| s.address);
        for _ in 0..600 {
            if holds(&sim, 2).is_some() && holds(&sim, 3).is_some() {
                break;
            }
            sim.run_for(Duration::from_millis(100));
        }
        let dst = vip(&sim, 3);
        // A packet every 100 ms (a ping retried), until one arrives.
        let mut steps = 0u64;
        while steps < 200 {
            let f = udp_frame(&sim, 2, dst, b"first-packet-marker");
            sim.inject_frame(2, &f);
            sim.run_for(Duration::from_millis(100));
            steps += 1;
            if received_marker(&mut sim, 3, b"first-packet-marker") {
                break;
            }
        }
        waits.push(Duration::from_millis(100 * steps));
    }
    eprintln!("first packet after {waits:?}");
    let worst = waits.iter().max().copied().unwrap_or_default();
    assert!(worst <= Duration::from_secs(2), "{waits:?}");
}

/// The direct path between two members goes dark in the middle (both
/// still reach everyone else): their traffic moves to the overlay within
/// the watch's bound (`node::watch`), then to whatever path forms.
#[test]
fn a_black_holed_direct_path_fails_over_within_seconds() {
    trace_logs();
    for (seed, a, b) in [
        (21, SimNat::Public, SimNat::Public),
        (22, SimNat::PortRestricted, SimNat::Public),
    ] {
        let mut sim = nat_vpn_sim(a, b, seed);
        let kb = sim.node(B).public_key();
        let (warm, run) = (50, 300);
        let mut got = [vec![false; warm + run + 30], vec![false; warm + run + 30]];
        sim.with_node(A, |n, now| n.link_on_demand(now, kb));
        exchange(&mut sim, 0, warm, &mut got);
        assert_eq!(sim.node(A).peer_path(&kb).map(|p| p.0), Some("direct"));
        sim.blocked.insert((A as u32, B as u32));
        exchange(&mut sim, warm, run, &mut got);
        let lost: Vec<usize> = (warm..warm + run - 5)
            .filter(|&k| !got[0][k] || !got[1][k])
            .collect();
        let gap = longest_run(&lost);
        eprintln!(
            "{a:?} <-> {b:?}: black hole: longest gap {gap:?}, {} of {run} steps lost",
            lost.len()
        );
        assert!(gap < Duration::from_secs(3), "{gap:?}");
    }
}

/// The longest run of consecutive step numbers in `lost`, as time.
fn longest_run(lost: &[usize]) -> Duration {
    let (mut best, mut run, mut prev) = (0, 0, None);
    for &k in lost {
        run = if prev == Some(k.wrapping_sub(1)) {
            run + 1
        } else {
            1
        };
        best = best.max(run);
        prev = Some(k);
    }
    Duration::from_millis(100 * best as u64)
}
