//! What tests, the demo and benchmarks read off a running lab: status,
//! links, the ring, held addresses, ping and iperf3 figures, memory.

use super::{err, Lab};
use std::io;
use std::time::{Duration, Instant};

impl Lab {
    pub fn status_json(&self, i: usize) -> io::Result<String> {
        crate::control::query(&self.hosts[i].control, "status --json")
    }

    pub fn status_text(&self, i: usize) -> io::Result<String> {
        crate::control::query(&self.hosts[i].control, "status")
    }

    /// How many of host `i`'s peers are up.
    pub fn links_up(&self, i: usize) -> usize {
        self.status_json(i)
            .map(|s| s.matches("\"state\":\"up\"").count())
            .unwrap_or(0)
    }

    /// Waits until host `i` has `n` links up; returns the time it took.
    pub fn wait_links_up(&self, i: usize, n: usize, timeout: Duration) -> io::Result<Duration> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if crate::sys::interrupted() {
                return Err(err("interrupted"));
            }
            if self.links_up(i) >= n {
                return Ok(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(err(format!(
            "host {i}: {} of {n} links up after {timeout:?}\n{}",
            self.links_up(i),
            self.log_tail(i)
        )))
    }

    /// Pings `dst` from host `i`: `count` echo requests of `size` bytes of
    /// payload, optionally with Don't Fragment set.
    pub fn ping(
        &self,
        i: usize,
        dst: impl Into<std::net::IpAddr>,
        count: u32,
        size: u16,
        dont_fragment: bool,
    ) -> io::Result<Ping> {
        let dst = dst.into();
        let (c, s, d) = (count.to_string(), size.to_string(), dst.to_string());
        let mut args = vec![
            "ping", "-n", "-q", "-c", &c, "-i", "0.2", "-W", "3", "-s", &s,
        ];
        if dont_fragment {
            args.extend(["-M", "do"]);
        }
        args.push(&d);
        let out = self.exec(i, &args)?;
        Ok(Ping::parse(&String::from_utf8_lossy(&out.stdout)))
    }

    /// A string field of the `"vpn"` object in host `i`'s status.
    pub fn vpn_field(&self, i: usize, field: &str) -> Option<String> {
        let st = self.status_json(i).ok()?;
        let vpn = &st[st.find("\"vpn\":{")?..];
        let key = format!("\"{field}\":\"");
        let rest = &vpn[vpn.find(&key)? + key.len()..];
        Some(rest[..rest.find('"')?].to_string())
    }

    /// Host `i`'s kernel offloads as its status reports them ("udp gso on
    /// (…), udp gro on (…), tap tso on (…), tap gro on (…)").
    pub fn offloads(&self, i: usize) -> io::Result<String> {
        let st = self.status_json(i)?;
        let key = "\"offloads\":\"";
        let at = st.find(key).map(|a| a + key.len());
        let end = at.and_then(|a| st[a..].find('"').map(|e| a + e));
        match (at, end) {
            (Some(a), Some(e)) => Ok(st[a..e].to_string()),
            _ => Err(io::Error::other(format!("no offloads in status: {st}"))),
        }
    }

    /// Waits until every host in `hosts` holds its virtual address.
    pub fn wait_vpn_held(&self, hosts: &[usize], timeout: Duration) -> io::Result<Duration> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if crate::sys::interrupted() {
                return Err(err("interrupted"));
            }
            if hosts
                .iter()
                .all(|&i| self.vpn_field(i, "state").as_deref() == Some("held"))
            {
                return Ok(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let states: Vec<String> = hosts
            .iter()
            .map(|&i| format!("h{i}: {:?}", self.vpn_field(i, "state")))
            .collect();
        Err(err(format!(
            "addresses not held after {timeout:?}: {}",
            states.join(", ")
        )))
    }

    /// Host `i`'s daemon's resident memory in KiB (VmRSS), if it runs.
    pub fn rss_kib(&self, i: usize) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid(i)?)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// KiB of host `i`'s process resident in mappings of `file` (smaps):
    /// for a daemon under qemu-user, the target binary's pages it touched
    /// — the text a router would hold in memory, apart from qemu's own.
    pub fn mapped_rss_kib(&self, i: usize, file: &std::path::Path) -> Option<u64> {
        let smaps = std::fs::read_to_string(format!("/proc/{}/smaps", self.pid(i)?)).ok()?;
        let name = file.to_str()?;
        let mut inside = false;
        let mut total = 0;
        for line in smaps.lines() {
            let first = line.split_whitespace().next().unwrap_or_default();
            if first.contains('-') && !first.ends_with(':') {
                // A mapping's header: "start-end perms offset dev inode path".
                inside = line.split_whitespace().nth(5) == Some(name);
            } else if inside && first == "Rss:" {
                total += line.split_whitespace().nth(1)?.parse::<u64>().ok()?;
            }
        }
        Some(total)
    }

    /// TCP throughput from host `i` to host `j` over the VPN (iperf3), in bit/s.
    pub fn iperf3(&self, i: usize, j: usize, secs: u32, reverse: bool) -> io::Result<f64> {
        let vip = self.hosts[j].vip.to_string();
        let mut server = self.spawn(j, &["iperf3", "-s", "-1", "-B", &vip])?;
        std::thread::sleep(Duration::from_millis(300));
        let t = secs.to_string();
        let mut args = vec!["iperf3", "-c", &vip, "-t", &t, "-J"];
        if reverse {
            args.push("-R");
        }
        let out = self.exec(i, &args);
        let _ = server.kill();
        let _ = server.wait();
        let text = String::from_utf8_lossy(&out?.stdout).into_owned();
        json_number_after(&text, "\"sum_received\"", "\"bits_per_second\"").ok_or_else(|| {
            err(format!(
                "iperf3 gave no result: {}",
                text.chars().take(300).collect::<String>()
            ))
        })
    }

    /// Host `i`'s ring address (from its key).
    pub fn ring_addr(&self, i: usize) -> crate::overlay::Addr {
        crate::overlay::Addr::of_key(&self.hosts[i].key)
    }

    /// Whether host `i`'s status shows its true ring neighbours among the
    /// `live` hosts (by ring address).
    pub fn ring_consistent(&self, i: usize, live: &[usize]) -> bool {
        let mut ring: Vec<crate::overlay::Addr> = live.iter().map(|&j| self.ring_addr(j)).collect();
        ring.sort();
        let me = self.ring_addr(i);
        let Some(k) = ring.iter().position(|&a| a == me) else {
            return false;
        };
        let n = ring.len();
        let (left, right) = (ring[(k + n - 1) % n].to_hex(), ring[(k + 1) % n].to_hex());
        self.status_json(i).is_ok_and(|s| {
            s.contains(&format!("\"left\":\"{left}\""))
                && s.contains(&format!("\"right\":\"{right}\""))
        })
    }

    /// Waits until every host in `live` shows its true ring neighbours.
    pub fn wait_ring(&self, live: &[usize], timeout: Duration) -> io::Result<Duration> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if crate::sys::interrupted() {
                return Err(err("interrupted"));
            }
            if live.iter().all(|&i| self.ring_consistent(i, live)) {
                return Ok(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let bad: Vec<usize> = live
            .iter()
            .copied()
            .filter(|&i| !self.ring_consistent(i, live))
            .collect();
        let first = bad
            .first()
            .map_or(String::new(), |&i| self.status_json(i).unwrap_or_default());
        Err(err(format!(
            "ring not consistent after {timeout:?}; wrong neighbours at hosts {bad:?}; status of the first: {first}"
        )))
    }
}

/// Finds `"key": NUMBER` after `anchor` in a JSON text.
pub fn json_number_after(text: &str, anchor: &str, key: &str) -> Option<f64> {
    let rest = &text[text.find(anchor)?..];
    let rest = &rest[rest.find(key)? + key.len()..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || "+-.eE".contains(c)))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The summary lines of `ping -q`.
#[derive(Debug, Clone, Default)]
pub struct Ping {
    pub sent: u32,
    pub received: u32,
    pub min_ms: f64,
    pub avg_ms: f64,
}

impl Ping {
    pub fn parse(out: &str) -> Ping {
        let mut p = Ping::default();
        for line in out.lines() {
            if line.contains("packets transmitted") {
                let nums: Vec<u32> = line
                    .split(|c: char| !c.is_ascii_digit())
                    .filter_map(|s| s.parse().ok())
                    .collect();
                if nums.len() >= 2 {
                    p.sent = nums[0];
                    p.received = nums[1];
                }
            }
            if let Some(stats) = line.split(" = ").nth(1).filter(|_| line.starts_with("rtt")) {
                let v: Vec<f64> = stats
                    .split(['/', ' '])
                    .filter_map(|s| s.parse().ok())
                    .collect();
                if v.len() >= 2 {
                    p.min_ms = v[0];
                    p.avg_ms = v[1];
                }
            }
        }
        p
    }

    pub fn all_ok(&self) -> bool {
        self.sent > 0 && self.received == self.sent
    }
}
