//! `ringvpn-lab`: the network-namespace test bed (needs root).
//! Also reached as `ringvpn lab …`. Exit codes as for `ringvpn`.

#[path = "ringvpn_lab/ring.rs"]
mod ring;
#[path = "ringvpn_lab/scale.rs"]
mod scale;
#[path = "ringvpn_lab/uso.rs"]
mod uso;

use getopts::Options;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "\
ringvpn-lab — a real network on one machine, in network namespaces (root)

Usage:
  ringvpn-lab demo [--nodes N]    N hosts (2 to 16, default 4), each running ringvpn and
                                  knowing one other: the ring forms, addresses are claimed,
                                  every pair pings by virtual IP, iperf3 measures,
                                  everything is torn down (also on Ctrl-C)
  ringvpn-lab sim [--nodes N] [--seed S] [--bootstraps K] [--crash F] [--pairs P]
                  [--joins J] [--lifetime SECS] [--churn-time SECS] [--cheap-crypto]
                  [--threads T]
                                  the deterministic overlay simulator: N nodes start at
                                  once (K random bootstraps each), then: time to a
                                  consistent ring, routing (plain greedy and with
                                  lookahead), maintenance traffic, memory, J single
                                  joins, recovery from crashing F of them, and steady
                                  Poisson churn (mean lifetime SECS, default 600) for
                                  --churn-time seconds (default 300, 0 to skip);
                                  --cheap-crypto: hashes stand in for X25519 and
                                  Ed25519 (same ring results, no secrecy: docs/SIMULATOR.md);
                                  --threads 2: run the nodes on two threads (same output)
  ringvpn-lab dht [--nodes N] [--keys K] [--crash F] [--seed S] [--cheap-crypto] [--threads T]
                                  the DHT in the simulator: N nodes (default 1000) form
                                  a ring, K records (default 10000) are registered by
                                  random owners and read back, F of the nodes (default
                                  0.1) crash at once, and every key whose owner lives
                                  is read again 30 s later
  ringvpn-lab sim-nat [--nodes N] [--pairs P] [--seed S] [--mix PUB,CONE,PORT,SYM]
                                  the simulator with NATs (public, full cone,
                                  port-restricted, symmetric; default mix 0.2,0.1,0.6,0.1)
                                  and five regions of realistic latency: ring consistency,
                                  overlay links direct vs tunnels, P random pairs (default
                                  300) asking for on-demand links: direct vs relayed, and
                                  the relays' latency stretch (relayed / direct)
  ringvpn-lab nat-matrix [--pairs A:B,...] [--iperf SECS]
                                  two hosts behind every pair of NAT types (open, fullcone,
                                  restricted, portrestricted, firewall, symmetric,
                                  symmetric-random, udpblock; 36 pairs, or those given),
                                  with two public members: path reached (direct/relayed),
                                  time to the first ping and to the final path, ping RTT,
                                  iperf3 (default 3 s, 0 to skip); exit 1 if a cell fails
  ringvpn-lab sim-failover [--nodes N] [--pairs P] [--seed S]
                                  VPN pairs behind modelled NATs with traffic: time to
                                  the first packet and to the final path, then the loss
                                  gap when direct paths go dark and when relays crash
                                  (p50 / p90 / max); exit 1 if a gap reaches 3 s
  ringvpn-lab sim-subrings [--nodes N] [--groups G] [--min M] [--max M] [--symmetric F]
                  [--churn F] [--churn-time S] [--seed S]
                                  sub-rings: G groups (sizes M..M) over a public ring of N
                                  behind NATs: time to a consistent sub-ring, links direct
                                  vs carried over the public ring, a broadcast's reach and
                                  leaks, VPN packets between members behind symmetric
                                  NATs, group consistency while the public ring churns;
                                  exit 1 if a group fails any of them
  ringvpn-lab mdns-listen VIP SECS    (lab helper) join 224.0.0.251 on the interface
                                  holding VIP, print each mDNS datagram received on
                                  port 5353 for SECS seconds
  ringvpn-lab mdns-query VIP NAME     (lab helper) send one mDNS query for NAME from VIP
  ringvpn-lab tcp-hold TARGET COUNT SECS  (lab helper) open COUNT TCP connections to
                                  TARGET and hold them SECS seconds; print how many
                                  connected and how many the target closed
  ringvpn-lab udp-train ADDR:PORT SEG PER TRAINS  (lab helper) send TRAINS sends of PER
                                  datagrams of SEG bytes each with UDP GSO
  ringvpn-lab udp-count PORT SEG SECS  (lab helper) count datagrams of SEG bytes that
                                  arrive intact on PORT within SECS seconds
  ringvpn-lab flood TARGET SECS SOURCE...  (lab helper) send hostile datagrams at full
                                  speed to TARGET (ip:port) for SECS seconds from each
                                  SOURCE address in turn: random bytes, replayed inits
                                  from unknown keys, sealed messages, responses and
                                  cookie replies for random sessions, cut-short inits;
                                  prints what was sent
  ringvpn-lab manage [--nodes N] [--seed S]
                                  map-reduce stats and check from one member of a
                                  simulated ring, against the simulator's own count
                                  and crawl; then a 10% crash and repair
  ringvpn-lab --help
";

/// Counted, so `sim` can tell what the nodes hold from what the process
/// keeps (RSS includes what the join's peak left fragmented).
#[global_allocator]
static HEAP: ringvpn::heap::Counting = ringvpn::heap::Counting;

fn main() -> ExitCode {
    // Simulator runs log with the node and virtual time of each line
    // (RUST_LOG=ringvpn=info to follow them).
    let _ = env_logger::Builder::from_default_env()
        .format(|buf, r| {
            use std::io::Write;
            let (node, us) = ringvpn::sim::trace_context();
            if node == u32::MAX {
                writeln!(buf, "[{}] {}", r.level(), r.args())
            } else {
                writeln!(buf, "{:>9.3} n{node:<4} {}", us as f64 / 1e6, r.args())
            }
        })
        .try_init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("demo") => demo(&args[1..]),
        Some("sim") => ring::sim(&args[1..]),
        Some("dht") => scale::dht(&args[1..]),
        Some("manage") => scale::manage(&args[1..]),
        Some("nat-matrix") => nat_matrix(&args[1..]),
        Some("sim-nat") => sim_nat(&args[1..]),
        Some("sim-failover") => sim_failover(&args[1..]),
        Some("sim-subrings") => scale::subrings(&args[1..]),
        Some("mdns-listen") => mdns_listen(&args[1..]),
        Some("mdns-query") => mdns_query(&args[1..]),
        Some("flood") => flood(&args[1..]),
        Some("tcp-hold") => tcp_hold(&args[1..]),
        Some("udp-train") => udp_train(&args[1..]),
        Some("udp-count") => udp_count(&args[1..]),
        Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprint!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn demo(args: &[String]) -> ExitCode {
    let mut o = Options::new();
    o.optopt("n", "nodes", "number of nodes (2 to 16)", "N");
    let n = match o.parse(args) {
        Ok(m) => match m
            .opt_str("n")
            .map(|v| v.parse::<usize>().ok().filter(|n| (2..=16).contains(n)))
        {
            None => 4,
            Some(Some(n)) => n,
            Some(None) => {
                eprintln!("ringvpn-lab: --nodes expects 2 to 16");
                return ExitCode::from(2);
            }
        },
        Err(e) => {
            eprintln!("ringvpn-lab: {e}");
            return ExitCode::from(2);
        }
    };
    let Some(bin) = daemon_binary() else {
        return ExitCode::from(1);
    };
    match ringvpn::lab::demo::run(&bin, n) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringvpn-lab: {e}");
            ExitCode::from(1)
        }
    }
}

fn sim_failover(args: &[String]) -> ExitCode {
    use ringvpn::sim::failover::{failover, spread};
    let mut o = Options::new();
    o.optopt("n", "nodes", "number of nodes (default 1000)", "N");
    o.optopt("p", "pairs", "VPN pairs with traffic (default 100)", "P");
    o.optopt("s", "seed", "random seed (default 1)", "S");
    let Some(m) = parse_options(&o, args) else {
        return ExitCode::from(2);
    };
    let num = |k: &str, d: u64| -> Result<u64, String> {
        m.opt_str(k).map_or(Ok(d), |v| {
            v.parse().map_err(|_| format!("--{k} {v}: not a number"))
        })
    };
    let (n, pairs, seed) = match (num("n", 1000), num("p", 100), num("s", 1)) {
        (Ok(n), Ok(p), Ok(s)) if (20..=65_000).contains(&n) => (n as usize, p as usize, s),
        (Err(e), ..) | (_, Err(e), _) | (.., Err(e)) => {
            eprintln!("ringvpn-lab: {e}");
            return ExitCode::from(2);
        }
        _ => {
            eprintln!("ringvpn-lab: --nodes must be 20 to 65000");
            return ExitCode::from(2);
        }
    };
    let wall = std::time::Instant::now();
    let r = failover(n, seed, pairs);
    println!(
        "{} nodes behind the default NAT mix, {} VPN pairs, a packet each way every 100 ms",
        r.nodes, r.pairs
    );
    if let Some(t) = r.consistent_after {
        println!("ring 100% consistent after {} s", t.as_secs());
    }
    println!("figures: p50 / p90 / max (pairs)");
    println!("first packet through:          {}", spread(&r.first_packet));
    println!(
        "final path reached:            {} ({} never)",
        spread(&r.settle),
        r.unsettled
    );
    let lost: usize = r.setup_lost.iter().sum();
    println!(
        "packets lost while it was made: {lost} steps in all, worst pair {}",
        r.setup_lost.last().copied().unwrap_or(0)
    );
    println!(
        "direct path black-holed, gap:  {}",
        spread(&r.blackhole_gap)
    );
    println!("relay crashed, gap:            {}", spread(&r.relay_gap));
    println!("wall time {:.0} s", wall.elapsed().as_secs_f64());
    let worst = |v: &[std::time::Duration]| v.last().copied().unwrap_or_default();
    outcome(
        worst(&r.blackhole_gap) < std::time::Duration::from_secs(3)
            && worst(&r.relay_gap) < std::time::Duration::from_secs(3),
    )
}

fn sim_nat(args: &[String]) -> ExitCode {
    use ringvpn::sim::scenario::{nat_paths, NatMix};
    let mut o = Options::new();
    o.optopt("n", "nodes", "number of nodes (default 1000)", "N");
    o.optopt("p", "pairs", "on-demand pairs (default 300)", "P");
    o.optopt("s", "seed", "random seed (default 1)", "S");
    o.optopt(
        "m",
        "mix",
        "shares of public,fullcone,portrestricted,symmetric",
        "A,B,C,D",
    );
    let Some(m) = parse_options(&o, args) else {
        return ExitCode::from(2);
    };
    let num = |k: &str, d: u64| -> Result<u64, String> {
        m.opt_str(k).map_or(Ok(d), |v| {
            v.parse().map_err(|_| format!("--{k} {v}: not a number"))
        })
    };
    let (n, pairs, seed) = match (num("n", 1000), num("p", 300), num("s", 1)) {
        (Ok(n), Ok(p), Ok(s)) if (10..=65_000).contains(&n) => (n as usize, p as usize, s),
        (Err(e), ..) | (_, Err(e), _) | (.., Err(e)) => {
            eprintln!("ringvpn-lab: {e}");
            return ExitCode::from(2);
        }
        _ => {
            eprintln!("ringvpn-lab: --nodes must be 10 to 65000");
            return ExitCode::from(2);
        }
    };
    let mut mix = NatMix::default();
    if let Some(v) = m.opt_str("m") {
        let parts: Vec<f64> = v.split(',').filter_map(|x| x.trim().parse().ok()).collect();
        if parts.len() != 4 || parts.iter().any(|x| *x < 0.0) || parts.iter().sum::<f64>() <= 0.0 {
            eprintln!("ringvpn-lab: --mix expects four shares, e.g. 0.2,0.1,0.6,0.1");
            return ExitCode::from(2);
        }
        mix = NatMix {
            public: parts[0],
            full_cone: parts[1],
            port_restricted: parts[2],
            symmetric: parts[3],
        };
    }
    let wall = std::time::Instant::now();
    let r = nat_paths(n, seed, mix, pairs);
    println!(
        "{n} nodes: {} public, {} full cone, {} port-restricted, {} symmetric; five regions, 2-150 ms one way",
        r.kinds[0], r.kinds[1], r.kinds[2], r.kinds[3]
    );
    match r.consistent_after {
        Some(t) => println!("ring: 100% consistent after {} s", t.as_secs()),
        None => println!("ring: not consistent within 180 s"),
    }
    println!("ring consistency at the end: {:.4}", r.consistency);
    let links = (r.links_direct + r.links_relayed).max(1) as f64;
    println!(
        "overlay links: {} direct ({:.1}%), {} tunnel edges ({:.1}%)",
        r.links_direct,
        r.links_direct as f64 / links * 100.0,
        r.links_relayed,
        r.links_relayed as f64 / links * 100.0
    );
    let pairs_f = r.pairs.max(1) as f64;
    println!(
        "on-demand pairs: {} direct ({:.1}%), {} relayed ({:.1}%), {} neither",
        r.pairs_direct,
        r.pairs_direct as f64 / pairs_f * 100.0,
        r.pairs_relayed,
        r.pairs_relayed as f64 / pairs_f * 100.0,
        r.pairs_other
    );
    println!(
        "  pairs whose NATs allow a punch: {}, of which direct: {}",
        r.punchable, r.punchable_direct
    );
    println!(
        "  relayed latency / direct latency: mean {:.2}, p90 {:.2} (best relay among all public nodes: {:.2})",
        r.stretch_mean, r.relay_p90, r.stretch_best_mean
    );
    println!("({:.0} s wall time)", wall.elapsed().as_secs_f64());
    let ok = r.consistency >= 0.999 && r.pairs_other == 0 && r.punchable == r.punchable_direct;
    outcome(ok)
}

fn nat_matrix(args: &[String]) -> ExitCode {
    use ringvpn::lab::matrix;
    let mut o = Options::new();
    o.optopt("p", "pairs", "NAT type pairs (default: all 36)", "A:B,...");
    o.optopt("i", "iperf", "iperf3 seconds per cell (default 3)", "SECS");
    o.optflag("", "listen-any", "members listen on 0.0.0.0:5140");
    let Some(m) = parse_options(&o, args) else {
        return ExitCode::from(2);
    };
    let pairs = match m.opt_str("p").map(|p| matrix::parse_pairs(&p)) {
        None => matrix::all_pairs(),
        Some(Ok(p)) => p,
        Some(Err(e)) => {
            eprintln!("ringvpn-lab: --pairs {e}");
            return ExitCode::from(2);
        }
    };
    let mut opts = matrix::CellOptions {
        listen_any: m.opt_present("listen-any"),
        ..matrix::CellOptions::default()
    };
    match m.opt_str("i").map(|v| v.parse::<u32>()) {
        None => {}
        Some(Ok(s)) => opts.iperf_secs = s,
        Some(Err(_)) => {
            eprintln!("ringvpn-lab: --iperf expects seconds");
            return ExitCode::from(2);
        }
    }
    let Some(bin) = daemon_binary() else {
        return ExitCode::from(1);
    };
    ringvpn::sys::catch_interrupts();
    let mut cells = Vec::new();
    for (a, b) in pairs {
        if ringvpn::sys::interrupted() {
            break;
        }
        eprintln!("cell {} ↔ {} …", a.name(), b.name());
        match matrix::run_cell(&bin, a, b, &opts) {
            Ok(c) => {
                eprint!("{}", matrix::render(std::slice::from_ref(&c)));
                cells.push(c);
            }
            Err(e) => {
                eprintln!("ringvpn-lab: cell {} ↔ {}: {e}", a.name(), b.name());
                return ExitCode::from(1);
            }
        }
    }
    print!("{}", matrix::render(&cells));
    outcome(cells.iter().all(matrix::Cell::ok))
}

const MDNS_GROUP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(224, 0, 0, 251);

fn mdns_listen(args: &[String]) -> ExitCode {
    let (Some(vip), Some(secs)) = (
        args.first()
            .and_then(|v| v.parse::<std::net::Ipv4Addr>().ok()),
        args.get(1).and_then(|v| v.parse::<u64>().ok()),
    ) else {
        eprintln!("ringvpn-lab: mdns-listen VIP SECS");
        return ExitCode::from(2);
    };
    let run = || -> std::io::Result<()> {
        use socket2::{Domain, Protocol, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        s.set_reuse_address(true)?;
        s.bind(&std::net::SocketAddr::from(([0, 0, 0, 0], 5353)).into())?;
        s.join_multicast_v4(&MDNS_GROUP, &vip)?;
        let s: std::net::UdpSocket = s.into();
        let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        let mut buf = [0u8; 1500];
        loop {
            let left = end.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            s.set_read_timeout(Some(left))?;
            match s.recv_from(&mut buf) {
                Ok((n, from)) => println!("mdns {n} bytes from {from}"),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(())
                }
                Err(e) => return Err(e),
            }
        }
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringvpn-lab: mdns-listen: {e}");
            ExitCode::from(1)
        }
    }
}

fn mdns_query(args: &[String]) -> ExitCode {
    let (Some(vip), Some(name)) = (
        args.first()
            .and_then(|v| v.parse::<std::net::Ipv4Addr>().ok()),
        args.get(1),
    ) else {
        eprintln!("ringvpn-lab: mdns-query VIP NAME");
        return ExitCode::from(2);
    };
    // A standard query: header (id 0, one question), the name as labels,
    // type A, class IN.
    let mut q = vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.').filter(|l| !l.is_empty()) {
        q.push(label.len().min(63) as u8);
        q.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    let run = || -> std::io::Result<()> {
        use socket2::{Domain, Protocol, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        s.bind(&std::net::SocketAddr::from((vip, 0)).into())?;
        s.set_multicast_if_v4(&vip)?;
        s.set_multicast_ttl_v4(255)?;
        s.send_to(&q, &std::net::SocketAddr::from((MDNS_GROUP, 5353)).into())?;
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringvpn-lab: mdns-query: {e}");
            ExitCode::from(1)
        }
    }
}

/// The parsed options, or None after saying what is wrong (exit code 2).
fn parse_options(o: &Options, args: &[String]) -> Option<getopts::Matches> {
    o.parse(args)
        .map_err(|e| eprintln!("ringvpn-lab: {e}"))
        .ok()
}

/// Exit code 0 when a scenario met its goals, 1 when not.
fn outcome(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The `ringvpn` daemon next to this binary.
fn daemon_binary() -> Option<std::path::PathBuf> {
    std::env::current_exe()
        .map(|p| p.with_file_name("ringvpn"))
        .map_err(|e| eprintln!("ringvpn-lab: {e}"))
        .ok()
}

fn flood(args: &[String]) -> ExitCode {
    let target = args
        .first()
        .and_then(|t| t.parse::<std::net::SocketAddr>().ok());
    let secs = args.get(1).and_then(|s| s.parse::<u64>().ok());
    let sources: Option<Vec<std::net::Ipv4Addr>> =
        args.iter().skip(2).map(|a| a.parse().ok()).collect();
    let (Some(target), Some(secs), Some(sources)) = (target, secs, sources) else {
        eprintln!("ringvpn-lab: flood TARGET SECS SOURCE...");
        return ExitCode::from(2);
    };
    match ringvpn::lab::flood::run(&sources, target, secs) {
        Ok(sent) => {
            println!(
                "sent {} datagrams ({} bytes), {} refused by the kernel",
                sent.datagrams, sent.bytes, sent.refused
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ringvpn-lab: flood: {e}");
            ExitCode::from(1)
        }
    }
}

fn tcp_hold(args: &[String]) -> ExitCode {
    let target = args
        .first()
        .and_then(|t| t.parse::<std::net::SocketAddr>().ok());
    let count = args.get(1).and_then(|s| s.parse::<usize>().ok());
    let secs = args.get(2).and_then(|s| s.parse::<u64>().ok());
    let (Some(target), Some(count), Some(secs)) = (target, count, secs) else {
        eprintln!("ringvpn-lab: tcp-hold TARGET COUNT SECS");
        return ExitCode::from(2);
    };
    let held = ringvpn::lab::flood::tcp_hold(target, count, Duration::from_secs(secs));
    println!(
        "connected {}, closed by the target {}",
        held.connected, held.closed
    );
    ExitCode::SUCCESS
}

/// `udp-train ADDR:PORT SEG PER TRAINS`: UDP with GSO through the VPN.
fn udp_train(args: &[String]) -> ExitCode {
    let parsed = (
        args.first().and_then(|v| v.parse().ok()),
        args.get(1).and_then(|v| v.parse().ok()),
        args.get(2).and_then(|v| v.parse().ok()),
        args.get(3).and_then(|v| v.parse().ok()),
    );
    let (Some(to), Some(seg), Some(per), Some(trains)) = parsed else {
        eprintln!("ringvpn-lab: udp-train ADDR:PORT SEG PER TRAINS");
        return ExitCode::from(2);
    };
    match uso::send(to, seg, per, trains) {
        Ok(n) => {
            println!("sent {n} datagrams");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ringvpn-lab: udp-train: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `udp-count PORT SEG SECS`: counts intact datagrams of SEG bytes.
fn udp_count(args: &[String]) -> ExitCode {
    let parsed = (
        args.first().and_then(|v| v.parse().ok()),
        args.get(1).and_then(|v| v.parse().ok()),
        args.get(2).and_then(|v| v.parse().ok()),
    );
    let (Some(port), Some(seg), Some(secs)) = parsed else {
        eprintln!("ringvpn-lab: udp-count PORT SEG SECS");
        return ExitCode::from(2);
    };
    match uso::count(port, seg, secs) {
        Ok((good, bad)) => {
            println!("intact {good} damaged {bad}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ringvpn-lab: udp-count: {e}");
            ExitCode::FAILURE
        }
    }
}
