//! The simulator's shortcuts change nothing the overlay does: the same
//! seed gives the same run on one thread or two, and with the cheap
//! stand-ins for X25519/Ed25519 or the real thing.

use ringvpn::sim::{scenario, NetConfig, Sim};
use std::time::Duration;

/// Everything a run decided, as text: ring consistency and links, each
/// node's neighbours and bytes sent, routing, the event count.
fn run(nodes: usize, seed: u64, threads: usize, cheap: bool) -> (String, u64) {
    let mut s: Sim = scenario::mass_join(nodes, seed, 5, NetConfig::default());
    s.set_cheap_crypto(cheap);
    s.threads = threads;
    let joined =
        scenario::run_until_consistent(&mut s, Duration::from_secs(1), Duration::from_secs(60));
    s.run_for(Duration::from_secs(20));
    let routes = s.route_test(200, Duration::from_secs(10));
    let mut out = format!(
        "joined {joined:?} consistency {:.4} connections {:.2} routes {}\n",
        s.consistency(),
        s.mean_connections(),
        scenario::describe(&routes)
    );
    for i in 0..s.len() {
        let ov = s.node(i).overlay().expect("overlay");
        out += &format!(
            "{i} {:?} {:?} {} {} {}\n",
            ov.left(),
            ov.right(),
            ov.table().len(),
            s.tx_bytes(i),
            s.tx_datagrams(i)
        );
    }
    out += &format!("events {}\n", s.events);
    (out, s.parallel_windows)
}

/// Panics at the first line where two runs' reports differ.
fn assert_same(a: &str, b: &str, names: (&str, &str)) {
    if let Some((x, y)) = a.lines().zip(b.lines()).find(|(x, y)| x != y) {
        panic!(
            "the runs differ, first at\n{}: {x}\n{}: {y}",
            names.0, names.1
        );
    }
    assert_eq!(a.lines().count(), b.lines().count());
}

#[test]
fn one_thread_and_two_run_the_same() {
    let (one, _) = run(400, 7, 1, true);
    let (two, parallel) = run(400, 7, 2, true);
    assert!(parallel > 10, "windows ran on two threads: {parallel}");
    assert_same(&one, &two, ("one thread", "two threads"));
}

#[test]
fn cheap_crypto_changes_no_decision() {
    let (real, _) = run(1000, 3, 1, false);
    let (cheap, _) = run(1000, 3, 1, true);
    assert_same(&real, &cheap, ("real crypto", "stand-ins"));
}
