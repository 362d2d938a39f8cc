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
  ringvpn genkey FILE             write a new private key to FILE (mode 0600), print its public key
  ringvpn pubkey FILE             print the public key of private key FILE
  ringvpn status [-c FILE | -s SOCKET] [--json]
                                  show a running node's links and counters
  ringvpn ring-ping [-c FILE | -s SOCKET] ADDR
                                  send a routed echo over the ring overlay to ring
                                  address ADDR (32 hex digits, from status --json)
  ringvpn lab demo [--nodes N]    build a network-namespace lab (root), run N nodes,
                                  ping and measure across the VPN, tear down
                                  (runs the companion binary ringvpn-lab)
  ringvpn --help | --version

Logging: RUST_LOG=info (or debug) ringvpn run -c FILE
";

enum Failure {
    Usage(String),
    Runtime(String),
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp_millis()
        .init();
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
    let Some((cmd, rest)) = args.split_first() else {
        print!("{USAGE}");
        return Err(Failure::Usage("no command given".into()));
    };
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
            ringvpn::shell::run(cfg).map_err(Failure::Runtime)
        }
        "genkey" => {
            let m = parse(&Options::new(), rest)?;
            let path = one_free(&m, "key file")?;
            let seed = Seed::generate();
            ringvpn::config::write_new_key(&path, &seed).map_err(Failure::Runtime)?;
            println!("{}", Identity::from_seed(&seed).public());
            Ok(())
        }
        "pubkey" => {
            let m = parse(&Options::new(), rest)?;
            let path = one_free(&m, "key file")?;
            let seed = ringvpn::config::load_key(&path).map_err(Failure::Usage)?;
            println!("{}", Identity::from_seed(&seed).public());
            Ok(())
        }
        "status" => {
            let mut o = Options::new();
            o.optopt("c", "config", "find the socket through this config", "FILE");
            o.optopt("s", "socket", "control socket path", "SOCKET");
            o.optflag("", "json", "machine-readable output");
            let m = parse(&o, rest)?;
            let socket = control_socket(&m)?;
            let req = if m.opt_present("json") {
                "status --json"
            } else {
                "status"
            };
            let reply = ringvpn::control::query(&socket, req).map_err(|e| {
                Failure::Runtime(format!(
                    "cannot reach the daemon at {}: {e}",
                    socket.display()
                ))
            })?;
            print!("{reply}");
            Ok(())
        }
        "ring-ping" => {
            let mut o = Options::new();
            o.optopt("c", "config", "find the socket through this config", "FILE");
            o.optopt("s", "socket", "control socket path", "SOCKET");
            let m = parse(&o, rest)?;
            let socket = control_socket(&m)?;
            let addr = one_free(&m, "ring address")?;
            let addr = addr.to_string_lossy();
            let (hops, ms) =
                ringvpn::control::ring_ping(&socket, &addr, std::time::Duration::from_secs(5))
                    .map_err(|e| Failure::Runtime(format!("ring-ping {addr}: {e}")))?;
            println!("reply from {addr}: {hops} overlay hops, {ms:.2} ms");
            Ok(())
        }
        "lab" => lab(rest),
        other => Err(Failure::Usage(format!(
            "unknown command {other:?} (see ringvpn --help)"
        ))),
    }
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
        (None, None) => PathBuf::from("/run/ringvpn/ringvpn0.sock"),
    })
}

/// `ringvpn lab …` runs the companion `ringvpn-lab` binary installed beside
/// this one, so the daemon itself links no lab code.
fn lab(args: &[String]) -> Result<(), Failure> {
    let exe = std::env::current_exe().map_err(|e| Failure::Runtime(e.to_string()))?;
    let lab = exe.with_file_name("ringvpn-lab");
    let err = ringvpn::shell::sys::exec(&lab, args);
    Err(Failure::Runtime(format!(
        "cannot run {}: {err}",
        lab.display()
    )))
}
