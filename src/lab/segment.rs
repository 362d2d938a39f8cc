//! Networks beside the underlay, for routes: a "segment" is a namespace
//! holding one bridge whose own address is a host that runs no ringvpn (a
//! server on a simulated internet, a printer on a LAN); lab hosts are
//! plugged into it with a second interface. A segment has no route
//! anywhere else: it answers only what reaches it through a member that
//! forwards (a gateway masquerading, a router), so whatever it sees came
//! through ringvpn.
//!
//! ```text
//!   member h0 ── up0 198.19.200.10 ─┐
//!                                   ├─ bridge br0 198.19.200.1 (the server)
//!   member h1 ── up0 198.19.200.11 ─┘
//! ```

use super::{ip, run_cmd, Lab};
use std::io;
use std::net::Ipv4Addr;
use std::process::{Child, Command, Output, Stdio};

/// A segment: its namespace and the address of the host it stands for.
#[derive(Debug, Clone)]
pub struct Segment {
    pub ns: String,
    pub host: Ipv4Addr,
    pub prefix: u8,
}

impl Lab {
    /// A new segment `name` whose bridge holds `host/prefix`.
    pub fn add_segment(&mut self, name: &str, host: Ipv4Addr, prefix: u8) -> io::Result<Segment> {
        let ns = format!("{}{name}", self.prefix);
        self.add_ns(&ns)?;
        ip(&["-n", &ns, "link", "add", "br0", "type", "bridge"])?;
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{host}/{prefix}"),
            "dev",
            "br0",
        ])?;
        ip(&["-n", &ns, "link", "set", "br0", "up"])?;
        Ok(Segment { ns, host, prefix })
    }

    /// Plugs host `i` into `seg` as interface `ifname` with `addr`.
    pub fn plug(&self, i: usize, seg: &Segment, ifname: &str, addr: Ipv4Addr) -> io::Result<()> {
        let ns = &self.hosts[i].ns;
        let port = format!("{ifname}h{i}");
        ip(&[
            "-n", ns, "link", "add", ifname, "type", "veth", "peer", "name", &port, "netns",
            &seg.ns,
        ])?;
        ip(&["-n", &seg.ns, "link", "set", &port, "master", "br0"])?;
        ip(&["-n", &seg.ns, "link", "set", &port, "up"])?;
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{addr}/{}", seg.prefix),
            "dev",
            ifname,
        ])?;
        ip(&["-n", ns, "link", "set", ifname, "up"])
    }

    /// Runs a command in a segment's namespace (as its host).
    pub fn exec_in(&self, seg: &Segment, args: &[&str]) -> io::Result<Output> {
        run_cmd(
            Command::new("ip")
                .args(["netns", "exec", &seg.ns])
                .args(args)
                .stdin(Stdio::null()),
        )
    }

    /// Spawns a command in a segment's namespace, output piped.
    pub fn spawn_in(&self, seg: &Segment, args: &[&str]) -> io::Result<Child> {
        Command::new("ip")
            .args(["netns", "exec", &seg.ns])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    }

    /// Host `i`'s policy rules and routing tables, as `ip` prints them
    /// (IPv4 and IPv6): compared before and after a daemon ran.
    pub fn routing_snapshot(&self, i: usize) -> io::Result<String> {
        let mut out = String::new();
        for args in [
            &["ip", "-4", "rule"][..],
            &["ip", "-6", "rule"],
            &["ip", "-4", "route", "show", "table", "all"],
            &["ip", "-6", "route", "show", "table", "all"],
        ] {
            let o = self.exec(i, args)?;
            out.push_str(&format!("$ {}\n", args.join(" ")));
            out.push_str(&String::from_utf8_lossy(&o.stdout));
        }
        Ok(out)
    }

    /// TCP throughput from host `i` to `server` (an iperf3 server started
    /// in segment `seg`), in bit/s, and the address the server saw the
    /// client connect from.
    pub fn iperf3_to_segment(
        &self,
        i: usize,
        seg: &Segment,
        secs: u32,
        reverse: bool,
    ) -> io::Result<(f64, String)> {
        let server = self.spawn_in(seg, &["iperf3", "-s", "-1", "-J"])?;
        std::thread::sleep(std::time::Duration::from_millis(300));
        let (t, dst) = (secs.to_string(), seg.host.to_string());
        let mut args = vec!["iperf3", "-c", &dst, "-t", &t, "-J"];
        if reverse {
            args.push("-R");
        }
        let out = self.exec(i, &args)?;
        let seen = server.wait_with_output()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let bps = super::json_number_after(&text, "\"sum_received\"", "\"bits_per_second\"")
            .ok_or_else(|| {
                super::err(format!(
                    "iperf3 gave no result: {}",
                    text.chars().take(300).collect::<String>()
                ))
            })?;
        let server_text = String::from_utf8_lossy(&seen.stdout);
        let key = "\"remote_host\":";
        let remote = server_text
            .find(key)
            .map(|at| {
                let rest = server_text[at + key.len()..].trim_start();
                rest.trim_start_matches('"')
                    .split('"')
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .unwrap_or_default();
        Ok((bps, remote))
    }
}
