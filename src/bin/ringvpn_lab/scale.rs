//! The DHT and the managing system at scale in the simulator
//! (`ringvpn-lab dht`, `ringvpn-lab manage`).

use super::parse_options;
use getopts::Options;
use std::process::ExitCode;

pub fn dht(args: &[String]) -> ExitCode {
    use ringvpn::sim::{scenario, NetConfig};
    use std::time::{Duration, Instant};
    let mut o = Options::new();
    o.optopt("n", "nodes", "number of nodes (default 1000)", "N");
    o.optopt("k", "keys", "records (default 10000)", "K");
    o.optopt(
        "c",
        "crash",
        "fraction of nodes to crash (default 0.1)",
        "F",
    );
    o.optopt("s", "seed", "random seed (default 1)", "S");
    let Some(m) = parse_options(&o, args) else {
        return ExitCode::from(2);
    };
    let num = |k: &str, d: f64| -> Result<f64, String> {
        m.opt_str(k).map_or(Ok(d), |v| {
            v.parse().map_err(|_| format!("--{k} {v}: not a number"))
        })
    };
    let (n, keys, crash, seed) = match (
        num("n", 1000.0),
        num("k", 10000.0),
        num("c", 0.1),
        num("s", 1.0),
    ) {
        (Ok(n), Ok(k), Ok(c), Ok(s)) if n >= 10.0 && (0.0..1.0).contains(&c) => {
            (n as usize, k as usize, c, s as u64)
        }
        (Err(e), ..) | (_, Err(e), ..) | (_, _, Err(e), _) | (.., Err(e)) => {
            eprintln!("ringvpn-lab: {e}");
            return ExitCode::from(2);
        }
        _ => {
            eprintln!("ringvpn-lab: --nodes must be at least 10 and --crash below 1");
            return ExitCode::from(2);
        }
    };
    let wall = Instant::now();
    let mut s = scenario::mass_join(n, seed, 5, NetConfig::default());
    if scenario::run_until_consistent(&mut s, Duration::from_secs(1), Duration::from_secs(120))
        .is_none()
    {
        println!("ring not consistent after 120 s; going on anyway");
    }
    s.run_for(Duration::from_secs(30));
    println!("DHT on {n} nodes (8 replica points, each on the 2 bracketing nodes; quorum 5), {keys} records:");
    let r = scenario::dht_churn(&mut s, keys, crash);
    let line = |what: &str, g: &scenario::GetStats| {
        println!(
            "  {what}: {}/{} found ({:.2}%), mean {:.2} overlay hops and {:.0} ms per get",
            g.found,
            g.asked,
            g.rate() * 100.0,
            g.mean_hops,
            g.mean_latency.as_secs_f64() * 1e3
        )
    };
    println!(
        "  registered: {}/{} puts reached a quorum",
        r.stored, r.keys
    );
    line("get every key", &r.before);
    println!(
        "  crashed {} nodes at once; {} keys have a live owner",
        r.crashed, r.owners_alive
    );
    line("30 s later, get every key with a live owner", &r.after);
    println!(
        "  records stored per node: mean {:.0}, max {}; keys lost: {}",
        r.per_node.0,
        r.per_node.1,
        r.after.asked - r.after.found
    );
    println!(
        "(simulated in {:.1} s of wall time)",
        wall.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}

/// Map-reduce tasks at scale: `stats` and `check` from one member,
/// against the simulator's own count and crawl; then a crash and repair.
pub fn manage(args: &[String]) -> ExitCode {
    use ringvpn::sim::{scenario, NetConfig, Sim};
    use ringvpn::wire::task::{Reduced, TaskKind};
    use std::time::{Duration, Instant};
    let mut o = Options::new();
    o.optopt("n", "nodes", "number of nodes (default 1000)", "N");
    o.optopt("s", "seed", "random seed (default 1)", "S");
    let Some(m) = parse_options(&o, args) else {
        return ExitCode::from(2);
    };
    let (Ok(n), Ok(seed)) = (
        m.opt_str("n").map_or(Ok(1000usize), |v| v.parse()),
        m.opt_str("s").map_or(Ok(1u64), |v| v.parse()),
    ) else {
        eprintln!("ringvpn-lab: --nodes and --seed take numbers");
        return ExitCode::from(2);
    };
    let wall = Instant::now();
    let mut s = scenario::mass_join(n, seed, 5, NetConfig::default());
    let t =
        scenario::run_until_consistent(&mut s, Duration::from_secs(1), Duration::from_secs(180));
    match t {
        Some(t) => println!("{n} nodes, 100 ms links: ring consistent after {t:?}; settling 60 s"),
        None => println!("{n} nodes, 100 ms links: ring not consistent after 180 s; going on"),
    }
    s.run_for(Duration::from_secs(60));
    let run = |s: &mut Sim, kind: TaskKind| -> Option<(Reduced, Duration)> {
        let id = s.start_task(0, kind, b"")?;
        let until = s.now() + ringvpn::manage::TASK_BUDGET + Duration::from_secs(1);
        while s.task_result(0, id).is_none() && s.now() < until {
            s.run_for(Duration::from_millis(100));
        }
        s.task_result(0, id).cloned()
    };
    let show = |what: &str, r: &Option<(Reduced, Duration)>, live: usize| match r {
        Some((r, took)) => println!(
            "  {what}: {} of {live} members in {:.2} s, {} arcs missing",
            r.get("members"),
            took.as_secs_f64(),
            r.missing_arcs()
        ),
        None => println!("  {what}: no result"),
    };
    let truth = s.crawl_consistency();
    show("stats", &run(&mut s, TaskKind::Stats), n);
    let check = run(&mut s, TaskKind::Check);
    show("check", &check, n);
    if let Some((r, _)) = &check {
        let hits = r.get("left1_hits") + r.get("left2_hits");
        println!(
            "    consistency {:.4}; the simulator's crawl {truth:.4}",
            hits as f64 / (2 * r.get("members").max(1)) as f64
        );
    }
    let crashed = n / 10;
    for i in (0..n).filter(|i| i % 10 == 3).take(crashed) {
        s.crash(i);
    }
    s.run_for(Duration::from_millis(200));
    show(
        "stats 200 ms after a 10% crash",
        &run(&mut s, TaskKind::Stats),
        n - crashed,
    );
    let _ =
        scenario::run_until_consistent(&mut s, Duration::from_secs(1), Duration::from_secs(120));
    s.run_for(Duration::from_secs(40));
    show(
        "stats after repair",
        &run(&mut s, TaskKind::Stats),
        n - crashed,
    );
    println!(
        "(simulated in {:.1} s of wall time)",
        wall.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}
