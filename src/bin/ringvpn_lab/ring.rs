//! The ring overlay at scale in the simulator (`ringvpn-lab sim`), and
//! the process's resident memory and heap, which it reports per node.

use super::parse_options;
use getopts::Options;
use std::process::ExitCode;

pub fn sim(args: &[String]) -> ExitCode {
    use ringvpn::sim::{scenario, NetConfig};
    use std::time::{Duration, Instant};
    let mut o = Options::new();
    o.optopt("n", "nodes", "number of nodes (default 1000)", "N");
    o.optopt("s", "seed", "random seed (default 1)", "S");
    o.optopt(
        "b",
        "bootstraps",
        "bootstrap endpoints per node (default 5)",
        "K",
    );
    o.optopt(
        "c",
        "crash",
        "fraction of nodes to crash at once (default 0.1)",
        "F",
    );
    o.optopt("p", "pairs", "routed echoes to measure (default 1000)", "P");
    o.optopt("j", "joins", "single joins to time (default 11)", "J");
    o.optopt(
        "l",
        "lifetime",
        "mean node lifetime under churn (default 600)",
        "SECS",
    );
    o.optopt(
        "t",
        "churn-time",
        "how long to churn (default 300, 0: skip)",
        "SECS",
    );
    o.optflag("", "cheap-crypto", "hashes stand in for X25519 and Ed25519");
    o.optopt("", "threads", "threads running the nodes (default 1)", "T");
    let Some(m) = parse_options(&o, args) else {
        return ExitCode::from(2);
    };
    fn num<T: std::str::FromStr>(m: &getopts::Matches, k: &str, d: T) -> Result<T, String> {
        match m.opt_str(k) {
            None => Ok(d),
            Some(v) => v.parse().map_err(|_| format!("--{k} {v}: not a number")),
        }
    }
    let parsed = (|| -> Result<_, String> {
        Ok((
            num(&m, "n", 1000usize)?,
            num(&m, "s", 1u64)?,
            num(&m, "b", 5usize)?,
            num(&m, "c", 0.1f64)?,
            num(&m, "p", 1000usize)?,
            num(&m, "j", 11usize)?,
            num(&m, "l", 600u64)?,
            num(&m, "t", 300u64)?,
            num(&m, "threads", 1usize)?,
        ))
    })();
    let (n, seed, boots, crash, pairs, join_count, lifetime, churn_time, threads) = match parsed {
        Ok(v) if v.8 == 0 || v.8 > 64 => {
            eprintln!("ringvpn-lab: --threads {}: 1 to 64", v.8);
            return ExitCode::from(2);
        }
        Ok(v) if v.0 >= 2 => v,
        Ok(_) => {
            eprintln!("ringvpn-lab: --nodes must be at least 2");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("ringvpn-lab: {e}");
            return ExitCode::from(2);
        }
    };
    let wall = Instant::now();
    let rss0 = rss_kib();
    let heap0 = heap_kib().0;
    let net = NetConfig::default();
    println!(
        "simulating {n} nodes, seed {seed}, {boots} bootstraps each, links {} ms one way",
        net.latency.as_millis()
    );
    let mut s = scenario::mass_join(n, seed, boots, net);
    s.set_cheap_crypto(m.opt_present("cheap-crypto"));
    s.threads = threads;
    let t =
        scenario::run_until_consistent(&mut s, Duration::from_secs(1), Duration::from_secs(300));
    match t {
        Some(t) => println!(
            "all started at once: 100% ring consistency after {:.0} s",
            t.as_secs_f64()
        ),
        None => println!(
            "all started at once: consistency {:.4} after 300 s (not 100%)",
            s.consistency()
        ),
    }
    // Let leaves and surplus links be trimmed and the peers they leave
    // idle be forgotten (30 s after the last word), then measure.
    s.run_for(Duration::from_secs(90));
    let per_node = |kib: u64, base: u64| kib.saturating_sub(base) as f64 / n as f64;
    let peak = per_node(peak_rss_kib(), rss0);
    ringvpn::sys::release_free_memory();
    let mem = per_node(rss_kib(), rss0);
    let (live, live_peak) = heap_kib();
    let (live, live_peak) = (per_node(live, heap0), per_node(live_peak, heap0));
    println!(
        "steady state: consistency {:.4} (design notes' crawl: {:.4}), {:.1} connections per node",
        s.consistency(),
        s.crawl_consistency(),
        s.mean_connections()
    );
    let t = s.peer_tables();
    println!(
        "memory per simulated node (process RSS / N): {mem:.0} KiB steady, {peak:.0} KiB peak (the join); peer tables: {:.1} peers, {:.1} places, {:.1} tombstones, {:.1} forgotten per node",
        t.0, t.1, t.2, t.3
    );
    println!(
        "  heap in use per node (nodes and the simulator's queues): {live:.0} KiB steady, {live_peak:.0} KiB peak"
    );
    let mix = s.connection_mix();
    println!(
        "  of which near {:.1}, own shortcuts {:.1}, others' shortcuts {:.1}, leaves {:.1}, other {:.1}",
        mix[0], mix[1], mix[2], mix[3], mix[4]
    );
    s.set_lookahead(false);
    let r = s.route_test(pairs, Duration::from_secs(20));
    println!("routing, plain greedy: {}", scenario::describe(&r));
    s.set_lookahead(true);
    let r = s.route_test(pairs, Duration::from_secs(20));
    println!("routing, with lookahead: {}", scenario::describe(&r));
    let (bytes, msgs) = scenario::maintenance_rate(&mut s, Duration::from_secs(60));
    println!(
        "maintenance traffic: {bytes:.0} bytes/s and {msgs:.2} messages/s per node (UDP payload, 60 s window)"
    );
    let mut joins = Vec::new();
    for _ in 0..join_count {
        if let Some(d) = scenario::join_one(&mut s, Duration::from_secs(30)) {
            joins.push(d);
        }
        // The newcomer leaves again, so every join is into a ring of N.
        let newest = s.len() - 1;
        s.run_for(Duration::from_secs(2));
        s.leave(newest);
        s.run_for(Duration::from_secs(3));
    }
    joins.sort();
    if let Some(med) = joins.get(joins.len() / 2) {
        println!(
            "one node joining a ring of {n}: linked to both ring neighbours in {:.2} s median of {} joins (p90 {:.2} s)",
            med.as_secs_f64(),
            joins.len(),
            joins[(joins.len() * 9 / 10).min(joins.len() - 1)].as_secs_f64()
        );
    }
    if crash > 0.0 {
        crash_and_recover(&mut s, crash, pairs);
    }
    if churn_time > 0 {
        let c = scenario::steady_churn(
            &mut s,
            Duration::from_secs(lifetime),
            Duration::from_secs(churn_time),
            Duration::from_secs(10),
        );
        println!(
            "steady churn, mean lifetime {lifetime} s, {churn_time} s: {} joins, {} graceful leaves, {} crashes; consistency mean {:.4}, min {:.4}",
            c.joins, c.leaves, c.crashes, c.mean(), c.min()
        );
        let curve: Vec<String> = c
            .samples
            .iter()
            .map(|(t, v)| format!("{t:.0}s:{v:.3}"))
            .collect();
        println!("  consistency every 10 s: {}", curve.join(" "));
        let r = s.route_test(pairs, Duration::from_secs(20));
        println!("  routing right after: {}", scenario::describe(&r));
        let t = scenario::run_until_consistent(
            &mut s,
            Duration::from_secs(1),
            Duration::from_secs(300),
        );
        match t {
            Some(t) => println!(
                "  churn stopped: 100% consistency {:.0} s later",
                t.as_secs_f64()
            ),
            None => println!(
                "  churn stopped: consistency {:.4} after 300 s",
                s.consistency()
            ),
        }
    }
    println!(
        "pool buffers: at most {} of {} in use on any node, {} allocations refused",
        s.pool_high_water(),
        s.pool_slots,
        s.drops(ringvpn::node::DropReason::PoolEmpty)
    );
    let secs = wall.elapsed().as_secs_f64();
    println!(
        "(simulated in {secs:.1} s of wall time on {threads} thread(s), {} events, {:.0} events/s; {} windows on two threads)",
        s.events,
        s.events as f64 / secs.max(1e-9),
        s.parallel_windows
    );
    ExitCode::SUCCESS
}

/// Crashes `fraction` of the nodes at once and reports the repair: the
/// time until the ring is whole again (checked every second), ring
/// consistency every 5 s until then, and routing afterwards.
fn crash_and_recover(s: &mut ringvpn::sim::Sim, fraction: f64, pairs: usize) {
    use ringvpn::sim::scenario;
    use std::time::Duration;
    let crashed = scenario::crash_fraction(s, fraction);
    let mut curve = vec![format!("0s:{:.3}", s.consistency())];
    let mut healed = None;
    for sec in 1..=300u64 {
        s.run_for(Duration::from_secs(1));
        let c = s.consistency();
        if sec % 5 == 0 {
            curve.push(format!("{sec}s:{c:.3}"));
        }
        if c >= 1.0 {
            healed = Some(sec);
            break;
        }
    }
    match healed {
        Some(t) => println!("crash {crashed} nodes at once: 100% consistency again after {t} s"),
        None => println!(
            "crash {crashed} nodes at once: consistency {:.4} after 300 s",
            s.consistency()
        ),
    }
    println!("  consistency after the crash: {}", curve.join(" "));
    let r = s.route_test(pairs, Duration::from_secs(20));
    println!("routing after the crash: {}", scenario::describe(&r));
}

/// This process's resident set in KiB (the simulator's memory figure).
pub fn rss_kib() -> u64 {
    proc_status_kib("VmRSS:")
}

/// Heap bytes in use now and at most so far, in KiB (0 without the
/// counting allocator).
fn heap_kib() -> (u64, u64) {
    ringvpn::heap::usage().map_or((0, 0), |(live, peak)| (live / 1024, peak / 1024))
}

/// The process's peak resident set so far.
fn peak_rss_kib() -> u64 {
    proc_status_kib("VmHWM:")
}

fn proc_status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}
