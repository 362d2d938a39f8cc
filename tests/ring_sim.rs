//! The overlay at scale, in the deterministic simulator (same Node core as
//! the daemon, real handshakes, 100 ms links).

use ringvpn::sim::{scenario, NetConfig, Sim};
use std::time::Duration;

fn assert_routes(sim: &mut Sim, pairs: usize) {
    let r = sim.route_test(pairs, Duration::from_secs(20));
    assert_eq!(r.delivered, r.sent, "{}", scenario::describe(&r));
    // Every node clears its own timers (no node spins on a past deadline).
    assert_eq!(
        sim.stuck_wakes,
        0,
        "node {:?} kept a past deadline:\n{}",
        sim.stuck_node,
        sim.stuck_debug.as_deref().unwrap_or_default()
    );
}

#[test]
fn thousand_nodes_started_at_once_form_one_consistent_ring() {
    let mut sim = scenario::mass_join(1000, 7, 5, NetConfig::default());
    let t =
        scenario::run_until_consistent(&mut sim, Duration::from_secs(1), Duration::from_secs(60))
            .unwrap_or_else(|| panic!("consistency only {:.4} after 60 s", sim.consistency()));
    eprintln!("1000 nodes consistent after {t:?}");
    assert!(t <= Duration::from_secs(30), "goal: consistent within 30 s");
    sim.run_for(Duration::from_secs(10));
    assert_routes(&mut sim, 300);
    // Surplus bootstrap links are trimmed; the ring stays whole.
    sim.run_for(Duration::from_secs(40));
    assert_eq!(sim.consistency(), 1.0);
    let conns = sim.mean_connections();
    assert!(conns < 17.0, "{conns} connections per node");
    assert_routes(&mut sim, 300);
    // Lookahead takes fewer hops than plain greedy over the same tables.
    sim.set_lookahead(false);
    let plain = sim.route_test(300, Duration::from_secs(20));
    sim.set_lookahead(true);
    let ahead = sim.route_test(300, Duration::from_secs(20));
    eprintln!(
        "plain {}\nlookahead {}",
        scenario::describe(&plain),
        scenario::describe(&ahead)
    );
    assert_eq!((plain.success(), ahead.success()), (1.0, 1.0));
    assert!(ahead.mean_hops < 0.85 * plain.mean_hops);
    // A newcomer links both ring neighbours one round trip after its
    // connect-to-me requests arrive (virtual time: deterministic).
    let mut joins: Vec<Duration> = (0..5)
        .map(|_| {
            let t = scenario::join_one(&mut sim, Duration::from_secs(10)).expect("joined");
            sim.run_for(Duration::from_secs(5));
            t
        })
        .collect();
    joins.sort();
    eprintln!("joins {joins:?}");
    assert!(
        joins[2] <= Duration::from_secs(1),
        "median join {:?}",
        joins[2]
    );
}

#[test]
fn ring_recovers_from_a_ten_percent_crash() {
    let mut sim = scenario::mass_join(500, 11, 5, NetConfig::default());
    scenario::run_until_consistent(&mut sim, Duration::from_secs(1), Duration::from_secs(60))
        .expect("initial ring");
    sim.run_for(Duration::from_secs(40));
    let crashed = scenario::crash_fraction(&mut sim, 0.1);
    assert_eq!(crashed, 50);
    assert!(
        sim.consistency() < 1.0,
        "the crash must break the ring first"
    );
    let t =
        scenario::run_until_consistent(&mut sim, Duration::from_secs(1), Duration::from_secs(90))
            .unwrap_or_else(|| {
                panic!(
                    "consistency only {:.4} 90 s after the crash",
                    sim.consistency()
                )
            });
    eprintln!("recovered from the crash in {t:?}");
    assert_routes(&mut sim, 300);
}

#[test]
fn steady_churn_keeps_the_ring_whole() {
    // Graceful leaves and restarts of old identities at new times: every
    // 2 s one node leaves and one that left earlier comes back.
    let mut sim = scenario::mass_join(200, 3, 3, NetConfig::default());
    scenario::run_until_consistent(&mut sim, Duration::from_secs(1), Duration::from_secs(60))
        .expect("initial ring");
    let mut gone = Vec::new();
    for round in 0..30u64 {
        let alive: Vec<usize> = sim.alive().collect();
        let victim = alive[(round as usize * 37) % alive.len()];
        sim.leave(victim);
        gone.push(victim);
        if gone.len() > 5 {
            let back = gone.remove(0);
            let boot = sim.random_bootstraps(2, Some(back));
            sim.restart(back, boot);
        }
        sim.run_for(Duration::from_secs(2));
    }
    scenario::run_until_consistent(&mut sim, Duration::from_secs(1), Duration::from_secs(60))
        .unwrap_or_else(|| panic!("consistency only {:.4} after churn", sim.consistency()));
    assert_routes(&mut sim, 200);
}

#[test]
fn poisson_churn_dents_consistency_and_the_ring_heals() {
    let mut sim = scenario::mass_join(300, 13, 3, NetConfig::default());
    scenario::run_until_consistent(&mut sim, Duration::from_secs(1), Duration::from_secs(60))
        .expect("initial ring");
    sim.run_for(Duration::from_secs(30));
    // Mean lifetime 2 minutes: a node leaves or crashes every 0.4 s.
    let c = scenario::steady_churn(
        &mut sim,
        Duration::from_secs(120),
        Duration::from_secs(120),
        Duration::from_secs(10),
    );
    eprintln!(
        "{} joins, {} leaves, {} crashes; consistency mean {:.4} min {:.4}",
        c.joins,
        c.leaves,
        c.crashes,
        c.mean(),
        c.min()
    );
    assert!(c.joins > 200 && c.leaves > 50 && c.crashes > 50);
    assert!(c.mean() > 0.9, "mean consistency {:.4}", c.mean());
    let t =
        scenario::run_until_consistent(&mut sim, Duration::from_secs(1), Duration::from_secs(60))
            .unwrap_or_else(|| panic!("consistency only {:.4} after churn", sim.consistency()));
    eprintln!("whole again {t:?} after the churn stopped");
    assert_routes(&mut sim, 300);
}

#[test]
fn simulation_is_deterministic() {
    let run = || {
        let mut sim = scenario::mass_join(60, 5, 3, NetConfig::default());
        sim.run_for(Duration::from_secs(20));
        (
            sim.consistency(),
            sim.mean_connections(),
            (0..60).map(|i| sim.tx_datagrams(i)).sum::<u64>(),
        )
    };
    assert_eq!(run(), run());
}

#[test]
fn two_adjacent_crashes_in_a_small_ring_are_bridged() {
    // Their two outer neighbours lose both near links on one side and must
    // find each other across the gap.
    for seed in 0..6 {
        let mut sim = scenario::mass_join(8, seed, 3, NetConfig::default());
        scenario::run_until_consistent(&mut sim, Duration::from_secs(1), Duration::from_secs(60))
            .expect("initial ring");
        sim.run_for(Duration::from_secs(40)); // settled: only near links left
        let order = sim.ring_order();
        sim.crash(order[2]);
        sim.crash(order[3]);
        scenario::run_until_consistent(&mut sim, Duration::from_secs(1), Duration::from_secs(60))
            .unwrap_or_else(|| {
                panic!(
                    "seed {seed}: consistency {:.3} after adjacent crashes",
                    sim.consistency()
                )
            });
        assert_routes(&mut sim, 50);
    }
}

#[test]
fn dht_keeps_every_record_of_a_live_owner_through_a_crash() {
    let mut sim = scenario::mass_join(300, 17, 5, NetConfig::default());
    scenario::run_until_consistent(&mut sim, Duration::from_secs(1), Duration::from_secs(60))
        .expect("initial ring");
    sim.run_for(Duration::from_secs(30));
    let r = scenario::dht_churn(&mut sim, 2000, 0.1);
    eprintln!("{r:?}");
    assert_eq!(r.stored, r.keys, "every registration reached a quorum");
    assert_eq!(r.before.found, r.before.asked);
    assert_eq!(r.crashed, 30);
    assert!(r.owners_alive < r.keys);
    assert_eq!(
        r.after.found, r.after.asked,
        "a record whose owner lives was lost"
    );
    // Eight points on two nodes each: ~16 copies per key spread over the ring.
    let expected = 16.0 * r.keys as f64 / 270.0;
    assert!(
        r.per_node.0 > 0.6 * expected && r.per_node.0 < 2.0 * expected,
        "{:?} records per node, expected about {expected:.0}",
        r.per_node
    );
}

/// A member whose bootstrap never answers says so after a minute — once,
/// at the default log level and in its status — naming what it tried,
/// and stops saying it when it is linked.
#[test]
fn a_dead_bootstrap_is_named_after_a_minute() {
    let mut sim = Sim::new(9, NetConfig::default());
    let first = sim.add_node(vec![]);
    // Nobody is at the second address: a typo in the config.
    let dead = ringvpn::sim::endpoint_of(40);
    let lone = sim.add_node(vec![dead]);
    sim.run_for(Duration::from_secs(30));
    assert_eq!(sim.node(lone).status(sim.now()).warning, None, "not yet");
    sim.run_for(Duration::from_secs(40));
    let warning = sim.node(lone).status(sim.now()).warning.expect("warned");
    assert!(warning.contains("no bootstrap answered"), "{warning}");
    assert!(warning.contains(&dead.to_string()), "{warning}");
    assert_eq!(
        sim.node(first).status(sim.now()).warning,
        None,
        "the first member has no bootstrap"
    );
}
