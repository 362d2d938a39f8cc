//! `ringvpn lab nat-matrix`: two hosts behind every pair of NAT types,
//! with two public members as the ring's other nodes (and the only
//! possible relays). Each cell is a fresh lab: what path the pair ends on,
//! how soon the first ping crosses, how soon the final path is reached,
//! and the ping RTT and iperf3 throughput over it.

use super::nat::{NatLab, NatType};
use super::{err, LabAddress, NodeOptions};
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
    pub first_ping: Option<Duration>,
    /// When the expected path was reached (from the first ping attempt).
    pub final_after: Option<Duration>,
    pub rtt_ms: Option<f64>,
    pub iperf_mbit: Option<f64>,
    /// A's explanation, when the path is not direct.
    pub why: String,
}

impl Cell {
    pub fn ok(&self) -> bool {
        self.first_ping.is_some() && self.path.starts_with(self.expected)
    }
}

#[derive(Debug, Clone)]
pub struct CellOptions {
    pub iperf_secs: u32,
    /// How long the pair may take to reach its final path.
    pub path_timeout: Duration,
}

impl Default for CellOptions {
    fn default() -> CellOptions {
        CellOptions {
            iperf_secs: 3,
            path_timeout: Duration::from_secs(45),
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
                ..NodeOptions::default()
            },
        )?;
    }
    for h in [p0, p1, ha, hb] {
        lab.start(h)?;
    }
    lab.wait_vpn_held(&[ha, hb], Duration::from_secs(40))?;
    let vip_b = lab.hosts[hb].vip.to_string();
    let key_b = lab.hosts[hb].key.to_base64();
    let start = Instant::now();
    let mut first_ping = None;
    while start.elapsed() < Duration::from_secs(20) {
        let out = lab.exec(ha, &["ping", "-n", "-q", "-c", "1", "-W", "1", &vip_b])?;
        if out.status.success() {
            first_ping = Some(start.elapsed());
            break;
        }
    }
    let expected = expected_path(a, b);
    // Traffic while the path settles (enough for an on-demand link too).
    let mut pinger = lab.spawn(ha, &["ping", "-n", "-q", "-i", "0.2", &vip_b])?;
    let mut final_after = None;
    let mut path = String::from("-");
    let mut why = String::new();
    let verbose = std::env::var_os("RINGVPN_LAB_VERBOSE").is_some();
    let mut last_path = String::new();
    while start.elapsed() < o.path_timeout + Duration::from_secs(20) {
        if crate::shell::sys::interrupted() {
            break;
        }
        if let Ok(st) = lab.status_json(ha) {
            path = peer_field(&st, &key_b, "path").unwrap_or_else(|| "-".into());
            why = peer_field(&st, &key_b, "why_not_direct").unwrap_or_default();
            if let Some(r) = peer_field(&st, &key_b, "relay") {
                path = format!("{path} via {r}");
            }
            if verbose && path != last_path {
                eprintln!("  {:.1} s: {path} ({why})", start.elapsed().as_secs_f64());
                last_path = path.clone();
            }
            if path.starts_with(expected) && first_ping.is_some() {
                final_after = Some(start.elapsed());
                break;
            }
        }
        if first_ping.is_some() && start.elapsed() > o.path_timeout {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = pinger.kill();
    let _ = pinger.wait();
    let ping = lab.ping(ha, lab.hosts[hb].vip, 10, 56, false)?;
    let rtt_ms = (ping.received > 0).then_some(ping.avg_ms);
    let iperf_mbit = if o.iperf_secs > 0 && ping.received > 0 {
        lab.iperf3(ha, hb, o.iperf_secs, false)
            .ok()
            .map(|b| b / 1e6)
    } else {
        None
    };
    if verbose {
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
        first_ping,
        final_after,
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
        "{:<16} {:<16} {:<8} {:<28} {:>10} {:>10} {:>9} {:>10}  ok",
        "A", "B", "expect", "path", "1st ping", "final", "rtt", "iperf3"
    );
    for c in cells {
        let _ = writeln!(
            o,
            "{:<16} {:<16} {:<8} {:<28} {:>10} {:>10} {:>9} {:>10}  {}",
            c.a.name(),
            c.b.name(),
            c.expected,
            c.path,
            secs(c.first_ping),
            secs(c.final_after),
            c.rtt_ms.map_or("-".into(), |r| format!("{r:.2} ms")),
            c.iperf_mbit.map_or("-".into(), |m| format!("{m:.0} Mb/s")),
            if c.ok() { "yes" } else { "NO" }
        );
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
    }
}
