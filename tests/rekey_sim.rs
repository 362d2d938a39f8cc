//! The first rekey after a mass join, in the simulator: every link
//! rekeys within seconds of the others, many of them after crossed
//! handshakes (each side's current session is the other's previous).
//! Nothing sent on a link may be lost to it — it was: the rekey evicted
//! the session the peer was still sending on, and map-reduce tasks
//! started then came back partial.

use ringvpn::sim::{scenario, NetConfig, Sim};
use std::time::Duration;

fn unknown_session(sim: &Sim) -> u64 {
    (0..sim.len())
        .map(|i| sim.node_drops(i, "unknown_session"))
        .sum()
}

#[test]
fn no_message_is_lost_to_the_first_rekey_after_a_mass_join() {
    let mut sim = scenario::mass_join(300, 1, 5, NetConfig::default());
    scenario::run_until_consistent(&mut sim, Duration::from_secs(1), Duration::from_secs(120))
        .expect("ring");
    // Past the join's own churn, then through the rekeys (120 s after
    // each session was made, 120–135 s into the run).
    sim.run_for(Duration::from_secs(60));
    let before = unknown_session(&sim);
    sim.run_for(Duration::from_secs(90));
    let lost = unknown_session(&sim) - before;
    eprintln!("messages on an unknown session across the rekeys: {lost}");
    assert_eq!(lost, 0);
}
