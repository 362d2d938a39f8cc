//! `ringvpn lab nat-matrix`: two hosts behind every pair of NAT types,
//! with two public members as the ring's other nodes (and the only
//! possible relays). Each cell is a fresh lab: what path the pair ends on,
//! how soon the first ping crosses, how soon the final path is reached,
//! and the ping RTT and iperf3 throughput over it.

use super::nat::{NatLab, NatType};
use super::trace::{PingTrace, Trace};
use super::{err, LabAddress, NodeOptions};
use crate::net::{Prefix, PrefixSet};
use crate::wire::endpoint::Endpoint;
use std::fmt::Write;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

/// The path a pair must end on: direct where the NAT lab says a hole can
/// be punched (or, for a UDP-blocked host, where the other side takes
/// inbound TCP), else relayed through a public member.
pub fn expected_path(a: NatType, b: NatType) -> &'static str {
    let tcp_reachable = |t: NatType| t == NatType::Open;
    let udp_blocked = |t: NatType| t == NatType::UdpBlock;
    if NatType::can_punch(a, b)
        || (udp_blocked(a) && tcp_reachable(b))
        || (udp_blocked(b) && tcp_reachable(a))
    {
        "direct"
    } else {
        "relayed"
    }
}

/// Every unordered pair of NAT types (36 with the same type twice).
pub fn all_pairs() -> Vec<(NatType, NatType)> {
    let mut out = Vec::new();
    for (i, &a) in NatType::ALL.iter().enumerate() {
        for &b in &NatType::ALL[i..] {
            out.push((a, b));
        }
    }
    out
}

/// One cell of the matrix.
#[derive(Debug, Clone)]
pub struct Cell {
    pub a: NatType,
    pub b: NatType,
    pub expected: &'static str,
    /// The path host A's status shows for B at the end ("relayed via X").
    pub path: String,
    /// From the start of the steady ping to its first reply.
    pub first_ping: Option<Duration>,
    /// When the expected path was reached (from the start of the ping).
    pub final_after: Option<Duration>,
    /// The steady ping (every 100 ms while the path settles).
    pub trace: Trace,
    /// Endpoints inside the VPN that either host's status showed at any
    /// time (a peer's endpoint or candidate, an advertised one): must be
    /// none (issue 21).
    pub in_vpn: Vec<String>,
    pub rtt_ms: Option<f64>,
    pub iperf_mbit: Option<f64>,
    /// A's explanation, when the path is not direct.
    pub why: String,
}

/// The first reply may take this long: the ring carries traffic from the
/// start, whatever the punch does (issue 12).
pub const FIRST_PING_LIMIT: Duration = Duration::from_millis(200);
/// A relayed cell reaches its tunnel within this (the tunnel is built
/// alongside the punch, 0.75 s in).
pub const RELAYED_FINAL_LIMIT: Duration = Duration::from_secs(4);

impl Cell {
    pub fn ok(&self) -> bool {
        self.first_ping.is_some_and(|t| t <= FIRST_PING_LIMIT)
            && (self.expected != "relayed"
                || self.final_after.is_some_and(|t| t < RELAYED_FINAL_LIMIT))
            && self.path.starts_with(self.expected)
            && self.trace.sent > 0
            && self.trace.lost() == 0
            && self.in_vpn.is_empty()
    }
}

#[derive(Debug, Clone)]
pub struct CellOptions {
    pub iperf_secs: u32,
    /// How long the pair may take to reach its final path.
    pub path_timeout: Duration,
    /// Every member listens on `0.0.0.0` (the README's example).
    pub listen_any: bool,
    /// Pings (one per 100 ms) sent while the path settles.
    pub pings: u32,
}

impl Default for CellOptions {
    fn default() -> CellOptions {
        CellOptions {
            iperf_secs: 3,
            path_timeout: Duration::from_secs(45),
            listen_any: false,
            pings: 200,
        }
    }
}

/// A string field of the peer object holding `key` in a status JSON.
pub fn peer_field(status: &str, key_b64: &str, field: &str) -> Option<String> {
    let at = status.find(&format!("\"key\":\"{key_b64}\""))?;
    let obj = &status[at..];
    let obj = &obj[..obj.find('}').unwrap_or(obj.len())];
    let k = format!("\"{field}\":\"");
    let rest = &obj[obj.find(&k)? + k.len()..];
    Some(rest[..rest.find('"')?].to_string())
}

/// The prefixes of the lab's VPN (network `lab`): IPv4 and IPv6.
pub fn lab_vpn_prefixes() -> PrefixSet {
    let mut set = PrefixSet::default();
    set.insert(Prefix::new(
        std::net::Ipv4Addr::new(100, 64, 0, 0).into(),
        10,
    ));
    set.insert(Prefix::new(
        crate::vpn::default_ipv6_prefix("lab").into(),
        96,
    ));
    set
}

/// Every endpoint a status JSON names (any quoted `ADDR:PORT` or
/// `tcp:ADDR:PORT`) that lies inside `vpn`.
pub fn endpoints_inside(status: &str, vpn: &PrefixSet) -> Vec<String> {
    status
        .split('"')
        .skip(1)
        .step_by(2)
        .filter_map(|s| s.parse::<Endpoint>().ok().map(|e| (s, e)))
        .filter(|(_, e)| vpn.contains(e.addr.ip()))
        .map(|(s, _)| s.to_string())
        .collect()
}

/// Runs one cell in a fresh lab (torn down when it ends).
pub fn run_cell(bin: &Path, a: NatType, b: NatType, o: &CellOptions) -> io::Result<Cell> {
    let mut nl = NatLab::new(bin, 2, &[(a, 1), (b, 1)])?;
    let (p0, p1) = (nl.public[0], nl.public[1]);
    let (ha, hb) = (nl.sites[0].hosts[0], nl.sites[1].hosts[0]);
    let lab = &mut nl.lab;
    for (h, boot) in [(p0, p1), (p1, p0), (ha, p0), (hb, p1)] {
        lab.configure(
            h,
            &NodeOptions {
                overlay: true,
                bootstrap: vec![boot],
                address: LabAddress::Static,
                listen_any: o.listen_any,
                ..NodeOptions::default()
            },
        )?;
    }
    for h in [p0, p1, ha, hb] {
        lab.start(h)?;
    }
    lab.wait_vpn_held(&[ha, hb], Duration::from_secs(40))?;
    let vip_b = lab.hosts[hb].vip;
    let key_b = lab.hosts[hb].key.to_base64();
    let expected = expected_path(a, b);
    let vpn = lab_vpn_prefixes();
    let mut in_vpn: Vec<String> = Vec::new();
    let mut check = |status: &str| {
        for e in endpoints_inside(status, &vpn) {
            if !in_vpn.contains(&e) {
                in_vpn.push(e);
            }
        }
    };
    // A steady ping from the moment both addresses are held: traffic must
    // not wait for the punch or the tunnel, and nothing may be lost while
    // the path moves.
    let interval = Duration::from_millis(100);
    let pinger = PingTrace::start(lab, ha, vip_b, o.pings, interval)?;
    let start = Instant::now();
    let mut final_after = None;
    let mut path = String::from("-");
    let mut why = String::new();
    let verbose = std::env::var_os("RINGVPN_LAB_VERBOSE").is_some();
    let mut last_path = String::new();
    let ping_time = interval * o.pings;
    let mut trickle = None;
    while start.elapsed() < o.path_timeout.max(ping_time) {
        if crate::sys::interrupted() {
            break;
        }
        if let Ok(st) = lab.status_json(hb) {
            check(&st);
        }
        if let Ok(st) = lab.status_json(ha) {
            check(&st);
            path = peer_field(&st, &key_b, "path").unwrap_or_else(|| "-".into());
            why = peer_field(&st, &key_b, "why_not_direct").unwrap_or_default();
            if let Some(r) = peer_field(&st, &key_b, "relay") {
                path = format!("{path} via {r}");
            }
            if verbose && path != last_path {
                eprintln!("  {:.1} s: {path} ({why})", start.elapsed().as_secs_f64());
                last_path = path.clone();
            }
            if path.starts_with(expected) && final_after.is_none() {
                final_after = Some(start.elapsed());
            }
        }
        if final_after.is_some() && start.elapsed() >= ping_time {
            break;
        }
        if start.elapsed() >= ping_time && trickle.is_none() {
            // Still settling: keep traffic flowing (an on-demand link
            // needs it) until the path is reached or time is up.
            trickle = Some(lab.spawn(ha, &["ping", "-n", "-q", "-i", "0.2", &vip_b.to_string()])?);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if let Some(mut t) = trickle {
        let _ = t.kill();
        let _ = t.wait();
    }
    let trace = pinger.finish()?;
    let ping = lab.ping(ha, vip_b, 10, 56, false)?;
    let rtt_ms = (ping.received > 0).then_some(ping.avg_ms);
    let iperf_mbit = if o.iperf_secs > 0 && ping.received > 0 {
        lab.iperf3(ha, hb, o.iperf_secs, false)
            .ok()
            .map(|b| b / 1e6)
    } else {
        None
    };
    for h in [ha, hb] {
        if let Ok(st) = lab.status_json(h) {
            check(&st);
        }
    }
    if verbose {
        eprintln!("  unanswered pings (seq): {:?}", trace.unanswered);
        for h in [ha, hb] {
            eprintln!(
                "--- host {h} status\n{}",
                lab.status_text(h).unwrap_or_default()
            );
            let log = std::fs::read_to_string(&lab.hosts[h].log).unwrap_or_default();
            let all = std::env::var("RINGVPN_LAB_VERBOSE").as_deref() == Ok("2");
            for line in log.lines().filter(|l| {
                all || ["tunnel", "relay", "direct", "session with", "moved"]
                    .iter()
                    .any(|w| l.contains(w))
            }) {
                eprintln!("  {line}");
            }
        }
    }
    Ok(Cell {
        a,
        b,
        expected,
        path,
        first_ping: trace.first_reply,
        final_after,
        trace,
        in_vpn,
        rtt_ms,
        iperf_mbit,
        why,
    })
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.1} s", d.as_secs_f64()))
}

/// The matrix as a table.
pub fn render(cells: &[Cell]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:<16} {:<16} {:<8} {:<28} {:>8} {:>7} {:>8} {:>6} {:>9} {:>10}  ok",
        "A", "B", "expect", "path", "1st ping", "final", "replies", "gap", "rtt", "iperf3"
    );
    for c in cells {
        let _ = writeln!(
            o,
            "{:<16} {:<16} {:<8} {:<28} {:>8} {:>7} {:>8} {:>6} {:>9} {:>10}  {}",
            c.a.name(),
            c.b.name(),
            c.expected,
            c.path,
            secs(c.first_ping),
            secs(c.final_after),
            format!("{}/{}", c.trace.received, c.trace.sent),
            secs(Some(c.trace.longest_gap)),
            c.rtt_ms.map_or("-".into(), |r| format!("{r:.2} ms")),
            c.iperf_mbit.map_or("-".into(), |m| format!("{m:.0} Mb/s")),
            if c.ok() { "yes" } else { "NO" }
        );
        if !c.in_vpn.is_empty() {
            let _ = writeln!(o, "    endpoints inside the VPN: {}", c.in_vpn.join(" "));
        }
    }
    o
}

/// Parses `a:b,c:d` into pairs of NAT types.
pub fn parse_pairs(s: &str) -> io::Result<Vec<(NatType, NatType)>> {
    s.split(',')
        .map(|p| {
            let (a, b) = p
                .split_once(':')
                .ok_or_else(|| err(format!("{p}: expected TYPE:TYPE")))?;
            let t = |n: &str| {
                NatType::parse(n.trim()).ok_or_else(|| {
                    let names: Vec<&str> = NatType::ALL.iter().map(|t| t.name()).collect();
                    err(format!("{n}: not a NAT type ({})", names.join(", ")))
                })
            };
            Ok((t(a)?, t(b)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_and_expectations() {
        assert_eq!(all_pairs().len(), 36);
        assert_eq!(expected_path(NatType::Open, NatType::UdpBlock), "direct");
        assert_eq!(
            expected_path(NatType::Firewall, NatType::UdpBlock),
            "relayed"
        );
        assert_eq!(
            expected_path(NatType::Symmetric, NatType::PortRestricted),
            "relayed"
        );
        assert_eq!(
            expected_path(NatType::FullCone, NatType::Symmetric),
            "direct"
        );
        let p = parse_pairs("open:symmetric,udpblock:fullcone").unwrap();
        assert_eq!(p[1], (NatType::UdpBlock, NatType::FullCone));
        assert!(parse_pairs("open").is_err() && parse_pairs("open:nope").is_err());
        let st = r#"{"peers":[{"name":"x","key":"AAA","path":"direct"},{"name":"y","key":"BBB","path":"relayed","relay":"x"}]}"#;
        assert_eq!(peer_field(st, "BBB", "path").as_deref(), Some("relayed"));
        assert_eq!(peer_field(st, "BBB", "relay").as_deref(), Some("x"));
        assert_eq!(peer_field(st, "AAA", "relay"), None);
        let st = r#"{"advertised":["198.19.2.2:5140","tcp:100.64.0.13:5140"],"peers":[{"endpoint":"100.100.0.102:5140","candidates":["[fd6d:347f:a583::6440:d]:5140","198.18.2.1:5140"]}]}"#;
        let vpn = lab_vpn_prefixes();
        assert_eq!(
            endpoints_inside(st, &vpn),
            [
                "tcp:100.64.0.13:5140",
                "100.100.0.102:5140",
                "[fd6d:347f:a583::6440:d]:5140"
            ]
        );
    }
}
