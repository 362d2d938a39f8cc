//! The simulator's shortcuts change nothing the overlay does: the same
//! seed gives the same run on one thread or two, and with the cheap
//! stand-ins for X25519/Ed25519 or the real thing.

use ringvpn::sim::{scenario, NetConfig, Sim};
use std::time::Duration;

/// Everything a run decided, as text: ring consistency and links, each
/// node's neighbours and bytes sent, routing, the event count.
fn run(nodes: usize, seed: u64, threads: usize, cheap: bool) -> (String, u64) {
    run_with(nodes, seed, threads, cheap, |_| {})
}

fn run_with(
    nodes: usize,
    seed: u64,
    threads: usize,
    cheap: bool,
    set: impl FnOnce(&mut Sim),
) -> (String, u64) {
    let mut s: Sim = scenario::mass_join(nodes, seed, 5, NetConfig::default());
    s.set_cheap_crypto(cheap);
    s.threads = threads;
    set(&mut s);
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
    // How the simulator ran, not what the nodes did: not compared.
    out += &format!("compactions {}\n", s.compactions);
    (out, s.parallel_windows)
}

/// Panics at the first line where two runs' reports differ.
fn assert_same(a: &str, b: &str, names: (&str, &str)) {
    let decided = |r: &str| -> Vec<String> {
        r.lines()
            .filter(|l| !l.starts_with("compactions "))
            .map(String::from)
            .collect()
    };
    let (a, b) = (decided(a), decided(b));
    if let Some((x, y)) = a.iter().zip(b.iter()).find(|(x, y)| x != y) {
        panic!(
            "the runs differ, first at\n{}: {x}\n{}: {y}",
            names.0, names.1
        );
    }
    assert_eq!(a.len(), b.len());
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

#[test]
fn compacting_the_datagrams_in_flight_changes_nothing() {
    // Compacted whenever three quarters of the slab are free (a large
    // run waits for 65,536 slots): the datagrams move, nothing else.
    let (plain, _) = run(300, 11, 1, true);
    let (compacted, _) = run_with(300, 11, 1, true, |s| s.compact_min = 0);
    let runs = compacted
        .lines()
        .find_map(|l| l.strip_prefix("compactions "))
        .and_then(|n| n.parse::<u64>().ok())
        .expect("compactions reported");
    assert!(runs > 0, "the slab was compacted");
    assert_same(&plain, &compacted, ("plain", "compacted"));
}
