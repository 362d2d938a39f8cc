//! The `ringvpn` command: argument parsing and exit codes live here only.
//! 0 = success, 1 = runtime failure, 2 = usage or configuration error.

use getopts::Options;
use ringvpn::crypto::{Identity, Seed};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "\
ringvpn — a fully decentralized peer-to-peer VPN

Usage:
  ringvpn run -c FILE             run the daemon with config FILE
  ringvpn check -c FILE           check config FILE and the files it names (key,
                                  certificates) as `run` would, without running
  ringvpn genkey FILE             write a new private key to FILE (mode 0600), print its public key
  ringvpn pubkey FILE             print the public key of private key FILE
  ringvpn status [-c FILE | -s SOCKET] [--json]
                                  show a running node's links and counters
  ringvpn ring-ping [-c FILE | -s SOCKET] ADDR
                                  send a routed echo over the ring overlay to ring
                                  address ADDR (32 hex digits, from status --json)
  ringvpn ping [-c FILE | -s SOCKET] [-n COUNT] NAME|VIRTUAL-IP|KEY
                                  ping a member on the path its traffic takes now:
                                  direct, via a relay, or over the overlay, and RTT
  ringvpn peers [-c FILE | -s SOCKET]
                                  one line per peer: name, virtual IP, state, path
                                  (direct, via a relay, over the overlay), RTT,
                                  last handshake, bytes (as `wg show`)
  ringvpn reload [-c FILE | -s SOCKET]
                                  re-read the config and its files (as SIGHUP does):
                                  log level, firewall, revocation list and a renewed
                                  certificate or CA list apply at once; other changes
                                  are named as needing a restart
  ringvpn metrics [-c FILE | -s SOCKET]
                                  the node's counters in the Prometheus text format
  ringvpn net stats|check|find QUERY|crawl [-c FILE | -s SOCKET] [--json]
                                  ask every member at once over the ring (map-reduce):
                                  members, versions, NAT types, paths, drops; ring
                                  consistency; members matching QUERY (ip=ADDR,
                                  nat=TYPE, version=V, relaying, relayed); every
                                  member's address, name, IPs, endpoints and links
  ringvpn net crawl --sequential [-c FILE | -s SOCKET] [--json]
                                  the same crawl one member after another (slow: a
                                  round trip per member; for comparison)
  ringvpn net map --svg FILE [-c FILE | -s SOCKET]
                                  crawl, and draw the ring: members in ring order,
                                  links coloured by path, wrong neighbours in red
  ringvpn ca init --network NET [--name NAME] [--days D] KEYFILE CERTFILE
                                  a new group CA: private key (mode 0600) and CA certificate
  ringvpn cert sign --ca-key KEY --ca CERT --pubkey NODEKEY --name NAME
                    [--ip ADDR[/LEN] ...] [--group G ...] [--routes PREFIX,...]
                    [--days D] [--not-before UNIX] OUT
                                  sign a node certificate (for the CA's network)
                                  (warns when it is expired or an address is outside
                                  the default subnet)
  ringvpn cert show [--json] FILE show a certificate (each one in a CA file, with its
                                  fingerprint) or a revocation list
  ringvpn cert verify --ca CA [--crl LIST] CERT
                                  check a certificate as members do (CA, network,
                                  validity now, revocation); exit 1 with the reason
  ringvpn cert revoke --ca-key KEY [--list FILE] NODEKEY... 
                                  add keys to the CA's revocation list FILE (a new,
                                  higher serial; written in place, default revoked.crl)
  ringvpn lab demo [--nodes N]    build a network-namespace lab (root), run N nodes,
                                  ping and measure across the VPN, tear down
                                  (runs the companion binary ringvpn-lab)
  ringvpn --help | --version

Logging: to stderr, with UTC times; `log = debug` in the config (default
info), or RUST_LOG=debug ringvpn run -c FILE
";

enum Failure {
    Usage(String),
    Runtime(String),
}

/// Logs to stderr, each line with its UTC time (milliseconds), level and
/// module. The level: RUST_LOG if set, else `default` (the daemon's
/// `log =`, info unless set; warn for the other commands).
fn init_logging(default: &str) {
    let from_env = std::env::var_os("RUST_LOG").is_some();
    let mut b = env_logger::Builder::from_env(env_logger::Env::default());
    if !from_env {
        // Everything passes the logger; the level is the `log` crate's
        // maximum, which a reload (`log =`) can move either way.
        b.filter_level(log::LevelFilter::Trace);
    }
    let _ = b
        .format(|buf, r| {
            use std::io::Write;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64);
            writeln!(
                buf,
                "{} {:<5} {}: {}",
                ringvpn::time::utc_rfc3339(now),
                r.level(),
                r.target(),
                r.args()
            )
        })
        .try_init();
    if !from_env {
        log::set_max_level(default.parse().unwrap_or(log::LevelFilter::Info));
    }
    let asked = default.parse().unwrap_or(log::LevelFilter::Info);
    if asked > log::STATIC_MAX_LEVEL {
        // A router build (feature `router`) leaves the lower levels out.
        log::warn!(
            "`log = {default}`: this build logs {} and above",
            log::STATIC_MAX_LEVEL
        );
    }
}

/// Counted, so `ringvpn status` can say what the daemon's heap holds.
#[global_allocator]
static HEAP: ringvpn::heap::Counting = ringvpn::heap::Counting;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match dispatch(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(m)) => {
            eprintln!("ringvpn: {m}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(m)) => {
            eprintln!("ringvpn: {m}");
            ExitCode::from(1)
        }
    }
}

/// The usage lines of command `cmd` (its entries in `USAGE`, with their
/// explanations), or all of them.
fn help_for(cmd: &str) -> String {
    let start = format!("  ringvpn {cmd} ");
    let mut out = String::from("Usage:\n");
    let mut inside = false;
    for line in USAGE.lines() {
        if line.starts_with("  ringvpn ") {
            inside = line.starts_with(&start) || line == start.trim_end();
        } else if !line.starts_with("      ") {
            inside = false;
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    if out.lines().count() == 1 {
        return USAGE.to_string();
    }
    out
}

fn parse(opts: &Options, args: &[String]) -> Result<getopts::Matches, Failure> {
    let m = opts
        .parse(args)
        .map_err(|e| Failure::Usage(format!("{e} (see ringvpn --help)")))?;
    Ok(m)
}

fn one_free(m: &getopts::Matches, what: &str) -> Result<PathBuf, Failure> {
    match m.free.as_slice() {
        [one] => Ok(PathBuf::from(one)),
        _ => Err(Failure::Usage(format!(
            "expected exactly one {what} (see ringvpn --help)"
        ))),
    }
}

fn dispatch(args: &[String]) -> Result<(), Failure> {
    if args.first().map(String::as_str) != Some("run") {
        init_logging("warn");
    }
    let Some((cmd, rest)) = args.split_first() else {
        print!("{USAGE}");
        return Err(Failure::Usage("no command given".into()));
    };
    if rest.iter().any(|a| a == "-h" || a == "--help") {
        print!("{}", help_for(cmd));
        return Ok(());
    }
    match cmd.as_str() {
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            Ok(())
        }
        "-V" | "--version" | "version" => {
            println!("ringvpn {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        "run" => {
            let mut o = Options::new();
            o.reqopt("c", "config", "config file", "FILE");
            let m = parse(&o, rest)?;
            let path = PathBuf::from(m.opt_str("c").unwrap_or_default());
            let cfg = ringvpn::config::load(&path).map_err(|e| Failure::Usage(e.to_string()))?;
            init_logging(&cfg.log);
            ringvpn::shell::check_files(&cfg).map_err(Failure::Usage)?;
            ringvpn::shell::run(cfg).map_err(Failure::Runtime)
        }
        "check" => {
            let mut o = Options::new();
            o.reqopt("c", "config", "config file", "FILE");
            let m = parse(&o, rest)?;
            let path = PathBuf::from(m.opt_str("c").unwrap_or_default());
            let cfg = ringvpn::config::load(&path).map_err(|e| Failure::Usage(e.to_string()))?;
            ringvpn::shell::check_files(&cfg).map_err(Failure::Usage)?;
            println!("{}: ok", path.display());
            Ok(())
        }
        "genkey" => {
            let m = parse(&Options::new(), rest)?;
            let path = one_free(&m, "key file")?;
            let seed = Seed::generate();
            if path == Path::new("-") {
                // As `wg genkey`: the private key to stdout.
                println!("{}", ringvpn::base64::encode(&seed.0));
                return Ok(());
            }
            ringvpn::config::write_new_key(&path, &seed).map_err(Failure::Runtime)?;
            println!("{}", Identity::from_seed(&seed).public());
            Ok(())
        }
        "pubkey" => {
            let m = parse(&Options::new(), rest)?;
            let path = one_free(&m, "key file")?;
            let seed = if path == Path::new("-") {
                // As `wg pubkey`: the private key from stdin.
                let mut text = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                    .map_err(|e| Failure::Runtime(format!("stdin: {e}")))?;
                ringvpn::config::parse_key(&text).ok_or_else(|| {
                    Failure::Usage(
                        "stdin: not a ringvpn private key (expected 32 bytes of base64)".into(),
                    )
                })?
            } else {
                ringvpn::config::load_key(&path).map_err(Failure::Usage)?
            };
            println!("{}", Identity::from_seed(&seed).public());
            Ok(())
        }
        "status" => {
            let mut o = socket_options();
            o.optflag("", "json", "machine-readable output");
            let m = parse(&o, rest)?;
            let socket = control_socket(&m)?;
            let req = if m.opt_present("json") {
                "status --json"
            } else {
                "status"
            };
            print!("{}", ask(&socket, &scoped(&m, req))?);
            Ok(())
        }
        "ring-ping" => {
            let m = parse(&socket_options(), rest)?;
            let socket = control_socket(&m)?;
            let addr = one_free(&m, "ring address")?;
            let addr = addr.to_string_lossy();
            if addr.len() != 32 || !addr.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Failure::Usage(format!(
                    "ring-ping {addr:?}: a ring address is 32 hex digits (ringvpn status --json); to ping a member by name, virtual IP or key: ringvpn ping {addr}"
                )));
            }
            let (hops, ms) = ringvpn::control::ring_ping(
                &socket,
                network(&m).as_deref(),
                &addr,
                std::time::Duration::from_secs(5),
            )
            .map_err(|e| Failure::Runtime(format!("ring-ping {addr}: {e}")))?;
            println!("reply from {addr}: {hops} overlay hops, {ms:.2} ms");
            Ok(())
        }
        "ping" => {
            let mut o = socket_options();
            o.optopt("n", "count", "pings to send (default 4)", "N");
            let m = parse(&o, rest)?;
            let socket = control_socket(&m)?;
            let target = one_free(&m, "member (name, virtual IP or key)")?;
            let target = target.to_string_lossy();
            let count: u32 = m
                .opt_str("n")
                .map_or(Ok(4), |v| v.parse())
                .map_err(|_| Failure::Usage("--count takes a number".into()))?;
            let mut last_path = String::new();
            let mut answered = 0;
            for i in 0..count {
                let t0 = std::time::Instant::now();
                let pong = ringvpn::control::ping_member(
                    &socket,
                    network(&m).as_deref(),
                    &target,
                    std::time::Duration::from_secs(2),
                )
                .map_err(|e| Failure::Runtime(format!("ping {target}: {e}")))?;
                match pong {
                    Some(r) => {
                        answered += 1;
                        let via = match r.path.as_str() {
                            "relayed" => format!("via relay {}", r.relay),
                            "overlay" => format!("over the overlay ({} hops)", r.hops),
                            p => p.to_string(),
                        };
                        if !last_path.is_empty() && via != last_path {
                            println!("path changed: {last_path} -> {via}");
                        }
                        println!("pong from {} {via} in {:.2} ms", r.name, r.ms);
                        last_path = via;
                    }
                    None => println!("no pong from {target} in 2 s (linking?)"),
                }
                if i + 1 < count {
                    std::thread::sleep(
                        std::time::Duration::from_secs(1).saturating_sub(t0.elapsed()),
                    );
                }
            }
            if answered == 0 {
                return Err(Failure::Runtime(format!("no pong from {target}")));
            }
            Ok(())
        }
        "peers" => {
            let m = parse(&socket_options(), rest)?;
            print!("{}", ask(&control_socket(&m)?, &scoped(&m, "peers"))?);
            Ok(())
        }
        "reload" => {
            let m = parse(&socket_options(), rest)?;
            let said = ask(&control_socket(&m)?, "reload")?;
            match said.strip_prefix("error: ") {
                Some(e) => Err(Failure::Usage(format!("reload refused: {}", e.trim()))),
                None => {
                    print!("{said}");
                    Ok(())
                }
            }
        }
        "metrics" => {
            let m = parse(&socket_options(), rest)?;
            print!("{}", ask(&control_socket(&m)?, &scoped(&m, "metrics"))?);
            Ok(())
        }
        "net" => {
            let mut o = socket_options();
            o.optflag("", "json", "JSON output");
            o.optflag("", "sequential", "crawl: one member after another");
            o.optopt("", "svg", "map: write the picture to FILE", "FILE");
            let m = parse(&o, rest)?;
            let socket = control_socket(&m)?;
            let words: Vec<String> = m.free.clone();
            let sequential = m.opt_present("sequential");
            let svg = m.opt_str("svg");
            let task = match (&words.iter().map(String::as_str).collect::<Vec<_>>()[..], sequential) {
                (["stats"], false) => "stats".to_string(),
                (["check"], false) => "check".to_string(),
                (["find", q], false) => format!("find {q}"),
                (["crawl"], false) => "crawl".to_string(),
                (["crawl"], true) => "crawl --sequential".to_string(),
                (["map"], false) if svg.is_some() => "crawl".to_string(),
                _ => {
                    return Err(Failure::Usage(
                        "expected net stats, net check, net find QUERY, net crawl [--sequential] or net map --svg FILE".into(),
                    ))
                }
            };
            if svg.is_some() && words[0] != "map" {
                return Err(Failure::Usage("--svg goes with net map".into()));
            }
            let format = match (&svg, m.opt_present("json")) {
                (Some(_), _) => "--svg",
                (None, true) => "--json",
                (None, false) => "",
            };
            // A sequential crawl takes a round trip per member (up to two
            // 2 s timeouts each), a map-reduce crawl spreads the answers
            // over N / 200 s: both end by themselves.
            let secs = match task.as_str() {
                "crawl --sequential" => 24 * 3600,
                "crawl" => 3600,
                _ => 20,
            };
            let timeout = std::time::Duration::from_secs(secs);
            let out =
                ringvpn::control::net_task(&socket, network(&m).as_deref(), &task, format, timeout)
                    .map_err(|e| Failure::Runtime(format!("net {task}: {e}")))?;
            match svg {
                Some(file) => {
                    std::fs::write(&file, &out)
                        .map_err(|e| Failure::Runtime(format!("{file}: {e}")))?;
                    println!("wrote {file}");
                }
                None => print!("{out}"),
            }
            Ok(())
        }
        "ca" => ca(rest),
        "cert" => cert(rest),
        "lab" => lab(rest),
        other => Err(Failure::Usage(format!(
            "unknown command {other:?} (see ringvpn --help)"
        ))),
    }
}

/// `-c FILE | -s SOCKET`: how commands find a running daemon; `-N
/// NAME`: which of its networks (sub-ring mode) they are about.
fn socket_options() -> Options {
    let mut o = Options::new();
    o.optopt("c", "config", "find the socket through this config", "FILE");
    o.optopt("s", "socket", "control socket path", "SOCKET");
    o.optopt(
        "N",
        "network",
        "a network of the daemon's ([network NAME])",
        "NAME",
    );
    o
}

/// `-N NAME`, if given.
fn network(m: &getopts::Matches) -> Option<String> {
    m.opt_str("N")
}

/// `request` for the network `-N` names, if any.
fn scoped(m: &getopts::Matches, request: &str) -> String {
    ringvpn::control::scoped(network(m).as_deref(), request)
}

/// One request to the daemon's control socket.
fn ask(socket: &Path, request: &str) -> Result<String, Failure> {
    ringvpn::control::query(socket, request).map_err(|e| {
        Failure::Runtime(format!(
            "cannot reach the daemon at {}: {e}",
            socket.display()
        ))
    })
}

/// The control socket named by `-s`, or found through `-c`, or the default.
fn control_socket(m: &getopts::Matches) -> Result<PathBuf, Failure> {
    Ok(match (m.opt_str("s"), m.opt_str("c")) {
        (Some(s), _) => PathBuf::from(s),
        (None, Some(c)) => {
            ringvpn::config::load(Path::new(&c))
                .map_err(|e| Failure::Usage(e.to_string()))?
                .control
        }
        (None, None) => ringvpn::config::default_control("ringvpn0"),
    })
}

/// `ringvpn ca init`.
fn ca(args: &[String]) -> Result<(), Failure> {
    use ringvpn::pki;
    let Some(("init", rest)) = args.split_first().map(|(c, r)| (c.as_str(), r)) else {
        return Err(Failure::Usage(
            "expected `ca init` (see ringvpn --help)".into(),
        ));
    };
    let mut o = Options::new();
    o.reqopt("", "network", "the network the CA certifies for", "NET");
    o.optopt("", "name", "the CA's name (default: NET CA)", "NAME");
    o.optopt("", "days", "validity in days (default 3650)", "D");
    let m = parse(&o, rest)?;
    let [key, cert] = m.free.as_slice() else {
        return Err(Failure::Usage(
            "expected KEYFILE CERTFILE (see ringvpn --help)".into(),
        ));
    };
    let network = m.opt_str("network").unwrap_or_default();
    pki::check_network_name(&network).map_err(Failure::Usage)?;
    let name = m.opt_str("name").unwrap_or_else(|| format!("{network} CA"));
    let days = number(&m, "days", 3650)?;
    let c = pki::ca_init(Path::new(key), Path::new(cert), &network, &name, days)
        .map_err(Failure::Runtime)?;
    print!("{}", pki::show_text(&c, pki::unix_now()));
    Ok(())
}

fn number(m: &getopts::Matches, opt: &str, default: u64) -> Result<u64, Failure> {
    match m.opt_str(opt) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| Failure::Usage(format!("--{opt} expects a number, not {v:?}"))),
    }
}

/// `ringvpn cert sign | show | revoke`.
fn cert(args: &[String]) -> Result<(), Failure> {
    use ringvpn::crypto::cert::Prefix;
    use ringvpn::crypto::NodeKey;
    use ringvpn::pki;
    let (cmd, rest) = match args.split_first() {
        Some((c, r)) => (c.as_str(), r),
        None => ("", args),
    };
    let key_arg = |s: &str| {
        NodeKey::from_base64(s)
            .ok_or_else(|| Failure::Usage(format!("{s:?} is not a public key (base64)")))
    };
    match cmd {
        "sign" => {
            let mut o = Options::new();
            o.reqopt("", "ca-key", "the CA's private key", "FILE");
            o.reqopt("", "ca", "the CA's certificate", "FILE");
            o.reqopt(
                "",
                "pubkey",
                "the node's public key (ringvpn pubkey)",
                "KEY",
            );
            o.reqopt("", "name", "the node's name", "NAME");
            o.optmulti("", "ip", "an address or prefix it may claim", "ADDR[/LEN]");
            o.optmulti("", "group", "a group it belongs to", "G");
            o.optmulti(
                "",
                "routes",
                "prefixes it may carry traffic for (0.0.0.0/0,::/0: an exit gateway)",
                "PREFIX,...",
            );
            o.optopt("", "days", "validity in days (default 365)", "D");
            o.optopt(
                "",
                "not-before",
                "start of validity, Unix seconds (default now)",
                "T",
            );
            let m = parse(&o, rest)?;
            let out = one_free(&m, "output file")?;
            let prefixes = m
                .opt_strs("ip")
                .iter()
                .map(|s| {
                    Prefix::parse(s)
                        .ok_or_else(|| Failure::Usage(format!("--ip {s:?}: not ADDR[/LEN]")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let routes = m
                .opt_strs("routes")
                .iter()
                .flat_map(|s| s.split(','))
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    Prefix::parse(s)
                        .filter(|p| s.contains('/') && p.is_network())
                        .ok_or_else(|| {
                            Failure::Usage(format!(
                                "--routes {s:?}: not a network prefix (e.g. 198.19.5.0/24, 0.0.0.0/0, ::/0)"
                            ))
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let req = pki::SignRequest {
                subject: key_arg(&m.opt_str("pubkey").unwrap_or_default())?,
                name: m.opt_str("name").unwrap_or_default(),
                prefixes,
                groups: m.opt_strs("group"),
                routes,
                not_before: number(&m, "not-before", pki::unix_now())?,
                days: number(&m, "days", 365)?,
            };
            let ca_key = PathBuf::from(m.opt_str("ca-key").unwrap_or_default());
            let ca_cert = PathBuf::from(m.opt_str("ca").unwrap_or_default());
            let c = pki::sign(&ca_key, &ca_cert, req).map_err(Failure::Usage)?;
            for w in pki::sign_warnings(&c, pki::unix_now()) {
                eprintln!("warning: {w}");
            }
            pki::write_cert(&out, &c).map_err(Failure::Runtime)?;
            print!("{}", pki::show_text(&c, pki::unix_now()));
            Ok(())
        }
        "show" => {
            let mut o = Options::new();
            o.optflag("", "json", "machine-readable output");
            let m = parse(&o, rest)?;
            let path = one_free(&m, "certificate or revocation list file")?;
            if pki::is_revocation_file(&path) {
                let list = pki::load_revocations(&path).map_err(Failure::Usage)?;
                match m.opt_present("json") {
                    true => print!("{}", pki::show_revocations_json(&list)),
                    false => print!("{}", pki::show_revocations_text(&list)),
                }
                return Ok(());
            }
            for c in pki::load_certs(&path).map_err(Failure::Usage)? {
                if m.opt_present("json") {
                    print!("{}", pki::show_json(&c));
                } else {
                    print!("{}", pki::show_text(&c, pki::unix_now()));
                }
            }
            Ok(())
        }
        "revoke" => {
            let mut o = Options::new();
            o.reqopt("", "ca-key", "the CA's private key", "FILE");
            o.optopt(
                "",
                "list",
                "the revocation list to extend (default revoked.crl)",
                "FILE",
            );
            let m = parse(&o, rest)?;
            let keys = m
                .free
                .iter()
                .map(|k| key_arg(k))
                .collect::<Result<Vec<_>, _>>()?;
            if keys.is_empty() {
                return Err(Failure::Usage("expected NODEKEY... to revoke".into()));
            }
            let list = PathBuf::from(m.opt_str("list").unwrap_or_else(|| "revoked.crl".into()));
            let previous = if list.exists() {
                Some(pki::load_revocations(&list).map_err(Failure::Usage)?)
            } else {
                None
            };
            let ca_key = PathBuf::from(m.opt_str("ca-key").unwrap_or_default());
            let new = pki::revoke(&ca_key, previous.as_ref(), &keys).map_err(Failure::Usage)?;
            pki::write_revocations(&list, &new).map_err(Failure::Runtime)?;
            println!(
                "{}: serial {}, {} revoked key(s)",
                list.display(),
                new.serial,
                new.revoked.len()
            );
            Ok(())
        }
        "verify" => {
            let mut o = Options::new();
            o.reqopt("", "ca", "the CA certificate(s) to trust", "FILE");
            o.optopt("", "crl", "a revocation list to apply", "FILE");
            let m = parse(&o, rest)?;
            let path = one_free(&m, "certificate file")?;
            let ca = PathBuf::from(m.opt_str("ca").unwrap_or_default());
            let crl = m.opt_str("crl").map(PathBuf::from);
            let said = pki::verify(&path, &ca, crl.as_deref(), pki::unix_now())
                .map_err(Failure::Runtime)?;
            println!("{said}");
            Ok(())
        }
        _ => Err(Failure::Usage(
            "expected `cert sign`, `cert show`, `cert verify` or `cert revoke` (see ringvpn --help)"
                .into(),
        )),
    }
}

/// `ringvpn lab …` runs the companion `ringvpn-lab` binary installed beside
/// this one, so the daemon itself links no lab code.
fn lab(args: &[String]) -> Result<(), Failure> {
    let exe = std::env::current_exe().map_err(|e| Failure::Runtime(e.to_string()))?;
    let lab = exe.with_file_name("ringvpn-lab");
    let err = ringvpn::sys::exec(&lab, args);
    Err(Failure::Runtime(format!(
        "cannot run {}: {err}",
        lab.display()
    )))
}
