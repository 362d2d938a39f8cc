//! `ringvpn-lab`: the network-namespace test bed (needs root).
//! Also reached as `ringvpn lab …`. Exit codes as for `ringvpn`.

use getopts::Options;
use std::process::ExitCode;

const USAGE: &str = "\
ringvpn-lab — a real network on one machine, in network namespaces (root)

Usage:
  ringvpn-lab demo [--nodes N]    N hosts (2 to 16, default 2), each running ringvpn:
                                  links come up, every pair pings, iperf3 measures,
                                  everything is torn down (also on Ctrl-C)
  ringvpn-lab --help
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("demo") => demo(&args[1..]),
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
            None => 2,
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
    let bin = match std::env::current_exe() {
        Ok(p) => p.with_file_name("ringvpn"),
        Err(e) => {
            eprintln!("ringvpn-lab: {e}");
            return ExitCode::from(1);
        }
    };
    match ringvpn::lab::demo::run(&bin, n) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringvpn-lab: {e}");
            ExitCode::from(1)
        }
    }
}
