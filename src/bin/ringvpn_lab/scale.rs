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
    o.optflag("", "cheap-crypto", "hashes stand in for X25519 and Ed25519");
    o.optopt("", "threads", "threads running the nodes (1 or 2)", "T");
    let Some(m) = parse_options(&o, args) else {
        return ExitCode::from(2);
    };
    let num = |k: &str, d: f64| number(&m, k, d);
    let threads = match num("threads", 1.0) {
        Ok(t) if (1.0..=64.0).contains(&t) => t as usize,
        _ => {
            eprintln!("ringvpn-lab: --threads: 1 to 64");
            return ExitCode::from(2);
        }
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
    s.set_cheap_crypto(m.opt_present("cheap-crypto"));
    s.threads = threads;
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
        "(simulated in {:.1} s of wall time on {threads} thread(s), {} events)",
        wall.elapsed().as_secs_f64(),
        s.events
    );
    ExitCode::SUCCESS
}

/// Map-reduce tasks at scale: `stats`, `check` and `crawl` from one
/// member, against the simulator's own count and crawl and against the
/// sequential crawler; then a crash and repair.
pub fn manage(args: &[String]) -> ExitCode {
    use ringvpn::sim::{scenario, NetConfig, Sim};
    use ringvpn::wire::task::{Reduced, TaskKind};
    use std::time::{Duration, Instant};
    let mut o = Options::new();
    o.optopt("n", "nodes", "number of nodes (default 1000)", "N");
    o.optopt("s", "seed", "random seed (default 1)", "S");
    o.optopt(
        "",
        "walk",
        "members the sequential crawler visits, then scaled (default 100; 0: all)",
        "N",
    );
    o.optopt(
        "",
        "svg",
        "write the crawl's map to FILE (and FILE-crash.svg after the crash)",
        "FILE",
    );
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
        s.task_result(0, id)
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
    let Ok(walk) = m.opt_str("walk").map_or(Ok(100usize), |v| v.parse()) else {
        eprintln!("ringvpn-lab: --walk takes a number");
        return ExitCode::from(2);
    };
    let walk = if walk == 0 { n } else { walk.min(n) };
    let svg = m.opt_str("svg");
    let truth = s.crawl_consistency();
    show("stats", &run(&mut s, TaskKind::Stats), n);
    let crawl_took = crawl(&mut s, n, svg.as_deref());
    if let Some(id) = s.start_walk(0, walk) {
        let until = s.now() + Duration::from_secs(4 * walk as u64 + 10);
        while s.task_outcome(0, id).is_none() && s.now() < until {
            s.run_for(Duration::from_millis(100));
        }
        if let Some((o, took)) = s.task_outcome(0, id) {
            let per = *took / o.described.len().max(1) as u32;
            println!(
                "  sequential crawl: {} members in {:.1} s, {:.3} s each: {:.0} s for {n} ({:.0}x the map-reduce crawl)",
                o.described.len(),
                took.as_secs_f64(),
                per.as_secs_f64(),
                per.as_secs_f64() * n as f64,
                per.as_secs_f64() * n as f64 / crawl_took.as_secs_f64().max(1e-9)
            );
        }
    }
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
    let crash_svg = svg
        .as_deref()
        .map(|f| format!("{}-crash.svg", f.trim_end_matches(".svg")));
    crawl(&mut s, n - crashed, crash_svg.as_deref());
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

/// A map-reduce crawl from member 0: how many described, how fast, and
/// the map written to `svg`. Returns how long it took.
fn crawl(s: &mut ringvpn::sim::Sim, live: usize, svg: Option<&str>) -> std::time::Duration {
    use std::time::Duration;
    let limited = |s: &ringvpn::sim::Sim| {
        let at = |i| s.node_drops(i, "overlay_rate_limited");
        (at(0), (1..s.len()).map(at).sum::<u64>())
    };
    let before = limited(s);
    let Some(id) = s.start_task(0, ringvpn::wire::task::TaskKind::Crawl, b"") else {
        return Duration::ZERO;
    };
    // Descriptions are spread over N / 200 s after a count.
    let spread = Duration::from_secs_f64(live as f64 * 2.0 / ringvpn::manage::RATE);
    let until = s.now() + ringvpn::manage::TASK_BUDGET + ringvpn::manage::SETTLE + spread;
    while s.task_outcome(0, id).is_none() && s.now() < until {
        s.run_for(Duration::from_millis(100));
    }
    let Some((o, took)) = s.task_outcome(0, id) else {
        println!("  crawl: no result");
        return Duration::ZERO;
    };
    let after = limited(s);
    println!(
        "    overlay messages over a peer's budget meanwhile: {} at the origin, {} elsewhere",
        after.0 - before.0,
        after.1 - before.1
    );
    let v = ringvpn::ringmap::RingView::new(o);
    println!(
        "  crawl: {} of {live} members described ({} counted{}) in {:.2} s; {} links; consistency {:.4}",
        o.described.len(),
        o.reduced.get("members"),
        if o.partial() { ", partial" } else { "" },
        took.as_secs_f64(),
        v.chords.len(),
        v.consistency()
    );
    if let Some(f) = svg {
        match std::fs::write(f, ringvpn::ringmap::render_svg(o, *took)) {
            Ok(()) => println!("    map: {f}"),
            Err(e) => println!("    map: {f}: {e}"),
        }
    }
    *took
}

/// `ringvpn-lab sim-subrings`: groups over a public ring behind NATs.
pub fn subrings(args: &[String]) -> ExitCode {
    use ringvpn::sim::scenario::NatMix;
    use ringvpn::sim::subring::{groups, GroupsConfig};
    use std::time::{Duration, Instant};
    let mut o = Options::new();
    o.optopt("n", "nodes", "public ring members (default 1000)", "N");
    o.optopt("g", "groups", "groups (default 20)", "G");
    o.optopt("", "min", "smallest group (default 5)", "M");
    o.optopt("", "max", "largest group (default 50)", "M");
    o.optopt(
        "",
        "symmetric",
        "share behind symmetric NATs (default 0.1)",
        "F",
    );
    o.optopt(
        "",
        "churn",
        "share of bystanders crashed per 10 s (default 0.02)",
        "F",
    );
    o.optopt("", "churn-time", "seconds of churn (default 120)", "S");
    o.optopt("s", "seed", "random seed (default 1)", "S");
    let Some(m) = parse_options(&o, args) else {
        return ExitCode::from(2);
    };
    let num = |k: &str, d: f64| number(&m, k, d);
    let values: Result<Vec<f64>, String> = [
        ("nodes", 1000.0),
        ("groups", 20.0),
        ("min", 5.0),
        ("max", 50.0),
        ("symmetric", 0.1),
        ("churn", 0.02),
        ("churn-time", 120.0),
        ("seed", 1.0),
    ]
    .iter()
    .map(|&(k, d)| num(k, d))
    .collect();
    let v = match values {
        Ok(v) => v,
        Err(e) => {
            eprintln!("ringvpn-lab: {e}");
            return ExitCode::from(2);
        }
    };
    let (n, g, min, max) = (v[0] as usize, v[1] as usize, v[2] as usize, v[3] as usize);
    if n < 20
        || g == 0
        || min < 2
        || max < min
        || max > n
        || !(0.0..=1.0).contains(&v[4])
        || !(0.0..1.0).contains(&v[5])
    {
        eprintln!("ringvpn-lab: need --nodes ≥ 20, --groups ≥ 1, 2 ≤ --min ≤ --max ≤ --nodes, shares in 0..1");
        return ExitCode::from(2);
    }
    let cfg = GroupsConfig {
        public: n,
        groups: g,
        min,
        max,
        seed: v[7] as u64,
        mix: NatMix {
            symmetric: v[4],
            ..NatMix::default()
        },
        churn: v[5],
        churn_time: Duration::from_secs(v[6] as u64),
    };
    let wall = Instant::now();
    let r = groups(&cfg);
    print!("{}", r.render());
    println!("wall time {:.1} s", wall.elapsed().as_secs_f64());
    let ok = r.groups.iter().all(|o| {
        o.consistent_after.is_some()
            && o.broadcast_reached + 1 == o.size
            && o.broadcast_leaked == 0
            && o.symmetric_reached == o.symmetric_pairs
            && o.final_consistency >= 1.0
    });
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Option `--k` as a number, `d` if absent.
fn number(m: &getopts::Matches, k: &str, d: f64) -> Result<f64, String> {
    m.opt_str(k).map_or(Ok(d), |v| {
        v.parse().map_err(|_| format!("--{k} {v}: not a number"))
    })
}
