//! NAT traversal in the simulator: nodes behind modelled NATs (full cone,
//! port-restricted, symmetric) join a ring of public members; pairs that
//! can punch end direct, the rest on a tunnel edge through a relay.

use ringvpn::sim::nat::SimNat::{self, *};
use ringvpn::sim::{scenario, Sim};
use std::time::Duration;

fn path(sim: &Sim, a: usize, b: usize) -> Option<(&'static str, Option<ringvpn::crypto::NodeKey>)> {
    sim.node(a).peer_path(&sim.node(b).public_key())
}

/// Six public members, then `a` and `b`; `a` asks for a link to `b`.
fn pair(ka: SimNat, kb: SimNat, seed: u64) -> (Sim, usize, usize) {
    trace_logs();
    let mut kinds = vec![Public; 6];
    kinds.extend([ka, kb]);
    let mut sim = scenario::nat_sim(&kinds, seed);
    scenario::run_until_consistent(&mut sim, Duration::from_secs(1), Duration::from_secs(120))
        .expect("ring");
    let (a, b) = (6, 7);
    let key = sim.node(b).public_key();
    sim.with_node(a, |n, now| n.link_on_demand(now, key));
    sim.run_for(Duration::from_secs(30));
    (sim, a, b)
}

#[test]
fn public_to_port_restricted_ends_direct() {
    let (sim, a, b) = pair(Public, PortRestricted, 1);
    assert_eq!(path(&sim, a, b).map(|p| p.0), Some("direct"));
    assert_eq!(path(&sim, b, a).map(|p| p.0), Some("direct"));
}

#[test]
fn symmetric_and_port_restricted_share_one_relay() {
    let (sim, a, b) = pair(Symmetric, PortRestricted, 2);
    let ab = path(&sim, a, b).expect("a knows b");
    assert_eq!(ab.0, "relayed");
    assert_eq!(path(&sim, b, a), Some(ab), "the same relay both ways");
}

/// 300 nodes behind the default NAT mix, four seeds: the ring is whole
/// (tunnel edges where its neighbours cannot punch), every pair that can
/// punch ends direct, nearly every other pair on a tunnel edge, and relays
/// cost at most 1.6x the direct latency on average. The stretch is pooled
/// over the seeds: one seed has only 9 to 25 relayed pairs, and its mean
/// swings from 1.25 to 1.9 with any change to timing (which pairs are
/// sampled moves with it). Pooled over seeds 1–8 it is 1.51 (docs/NAT.md):
/// the bound was 1.5 and passed on the sample's luck.
#[test]
fn nat_mix_at_300_nodes() {
    trace_logs();
    let (mut stretch, mut relayed) = (0.0, 0);
    for seed in 1..=4 {
        let r = scenario::nat_paths(300, seed, scenario::NatMix::default(), 120);
        eprintln!("seed {seed}: {r:?}");
        assert_eq!(r.consistency, 1.0, "seed {seed}: ring consistency");
        assert!(
            r.links_relayed > 0,
            "seed {seed}: some ring links need tunnels"
        );
        assert!(
            r.punchable_direct * 100 >= r.punchable * 97,
            "seed {seed}: {} of {} punchable pairs direct",
            r.punchable_direct,
            r.punchable
        );
        assert!(
            r.pairs_other * 100 <= r.pairs * 3,
            "seed {seed}: {} pairs on neither path",
            r.pairs_other
        );
        assert!(r.pairs_relayed > 0);
        stretch += r.stretch_mean * r.pairs_relayed as f64;
        relayed += r.pairs_relayed;
    }
    let stretch = stretch / relayed as f64;
    assert!(
        stretch <= 1.6,
        "relay stretch {stretch:.2} over {relayed} pairs"
    );
}

/// VPN pairs with traffic in a 200-node NAT mix (issue 12's scenarios in
/// the simulator): the first packet crosses at once, the final path comes
/// within seconds, and when a direct path goes dark or a relay crashes the
/// traffic moves within the watch's bound (max(1 s, 4 RTT); RTTs here
/// reach 0.6 s). `ringvpn-lab sim-failover --nodes 1000` runs it at scale.
#[test]
fn failover_at_200_nodes() {
    use ringvpn::sim::failover::{failover, spread};
    let r = failover(200, 3, 30);
    let q = |v: &[Duration], pct: usize| v[(v.len() - 1) * pct / 100];
    eprintln!(
        "first {} / final {} / black hole {} / relay crash {}",
        spread(&r.first_packet),
        spread(&r.settle),
        spread(&r.blackhole_gap),
        spread(&r.relay_gap)
    );
    assert_eq!(
        r.first_packet.len(),
        r.pairs,
        "every pair's traffic crossed"
    );
    assert!(q(&r.first_packet, 90) <= Duration::from_millis(200));
    assert_eq!(r.unsettled, 0);
    assert!(q(&r.settle, 100) < Duration::from_secs(4));
    assert!(r.blackhole_gap.len() >= 10 && r.relay_gap.len() >= 5);
    assert!(q(&r.blackhole_gap, 90) < Duration::from_secs(3));
    assert!(q(&r.relay_gap, 90) < Duration::from_secs(3));
}

/// A member behind a symmetric NAT whose ring neighbours are behind
/// port-restricted NATs (seeds 5 and 6 of the 300-node mix): nobody near
/// its address can link to it, so the replies that place it in the ring
/// come through its first hop (a forward, docs/NAT.md). Without that it
/// kept only its bootstrap leaves and the ring never closed (0.9917).
#[test]
fn a_member_no_neighbour_can_reach_still_joins() {
    for seed in [5, 6] {
        let r = scenario::nat_paths(300, seed, scenario::NatMix::default(), 20);
        eprintln!("seed {seed}: {r:?}");
        assert_eq!(r.consistency, 1.0, "seed {seed}: ring consistency");
    }
}

/// Log lines prefixed with the simulated node and time (run with
/// RUST_LOG=ringvpn=debug and --nocapture to follow one node).
fn trace_logs() {
    use std::io::Write;
    let _ = env_logger::builder()
        .is_test(true)
        .format(|buf, r| {
            let (node, us) = ringvpn::sim::trace_context();
            writeln!(buf, "{:>9.3} n{node:<4} {}", us as f64 / 1e6, r.args())
        })
        .try_init();
}
