//! The lab: a real network on one machine, for the demo, tests and benchmarks.
//!
//! Each host is a network namespace with one veth into a "switch" namespace
//! holding a bridge; that bridge is the underlay "internet" 198.18.0.0/16.
//! Hosts get 198.18.0.(10+i) underlay and 100.64.0.(10+i)/10 VPN addresses
//! (100.64.0.1 is the virtual router's, in overlay mode).
//! No namespace has a default route and none is linked to the root
//! namespace, so lab traffic cannot leave the machine.
//!
//! Namespaces are named `rv<pid>-<n>-…`, unique per run; [`Lab`]'s `Drop`
//! stops the daemons it started (by PID) and deletes its namespaces on
//! success, failure or interrupt. Namespaces left by a lab process that no
//! longer exists (e.g. killed with SIGKILL) are reaped by the next lab.
//!
//! This module shells out to `ip`, `ping` and `iperf3`: it is a tool, not
//! part of the VPN core.

pub mod demo;
pub mod flood;
pub mod matrix;
pub mod nat;
mod observe;
pub mod segment;
pub mod trace;

pub use observe::{json_number_after, Ping};

use crate::config::write_new_key;
use crate::crypto::{Identity, NodeKey, Seed};
use std::fmt::Write as _;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// UDP port every lab node listens on.
pub const PORT: u16 = 5140;

static LAB_COUNTER: AtomicUsize = AtomicUsize::new(0);

fn err(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

/// Runs a command; an error carries the command line and its stderr.
pub fn run_cmd(cmd: &mut Command) -> io::Result<Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| err(format!("{cmd:?}: {e}")))?;
    if !out.status.success() {
        return Err(err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out)
}

fn ip(args: &[&str]) -> io::Result<()> {
    run_cmd(Command::new("ip").args(args)).map(|_| ())
}

/// Why the lab cannot run here, or `None` if it can.
pub fn unavailable() -> Option<String> {
    if crate::sys::euid() != 0 {
        return Some("the lab needs root (network namespaces, TAP devices)".into());
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun is missing".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("the `ip` command (iproute2) is not installed".into()),
    }
}

/// Whether a program is on PATH.
pub fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

/// One test host.
pub struct Host {
    pub ns: String,
    pub underlay: Ipv4Addr,
    pub vip: Ipv4Addr,
    pub key: NodeKey,
    pub key_file: PathBuf,
    pub config: PathBuf,
    pub control: PathBuf,
    pub log: PathBuf,
    /// How this host's daemon is run, if not by the lab's binary: e.g.
    /// `qemu-mips -L /usr/mips-linux-gnu target/…/ringvpn` (a cross build
    /// under emulation against native hosts).
    pub command: Option<Vec<String>>,
    child: Option<Child>,
}

/// How a lab node gets its virtual address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabAddress {
    /// The host's `vip`, configured statically.
    Static,
    /// Another host's `vip` (to test a duplicate).
    SameAs(usize),
    /// `address = auto`.
    Auto,
    /// `dhcp = on`: the host's DHCP client gets it from the node.
    Dhcp,
}

/// Options for one node's config.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// Indices of the hosts this node lists as peers.
    pub peers: Vec<usize>,
    /// Whether listed peers get their endpoint (false: wait to be contacted).
    pub with_endpoints: bool,
    /// TAP MTU (`None`: the daemon's default for its mode).
    pub mtu: Option<u16>,
    /// Join the ring overlay.
    pub overlay: bool,
    /// Indices of the hosts whose endpoints are given as bootstraps.
    pub bootstrap: Vec<usize>,
    pub address: LabAddress,
    /// `listen = 0.0.0.0:5140` (the README's example: every interface
    /// address is advertised) instead of the host's underlay address.
    pub listen_any: bool,
    /// More `key = value` lines for the `[node]` section (written last
    /// in it: they may end with a section of their own, `[firewall]`).
    pub extra: Vec<String>,
}

impl Default for NodeOptions {
    fn default() -> NodeOptions {
        NodeOptions {
            peers: Vec::new(),
            with_endpoints: true,
            mtu: None,
            overlay: false,
            bootstrap: Vec::new(),
            address: LabAddress::Static,
            listen_any: false,
            extra: Vec::new(),
        }
    }
}

pub struct Lab {
    pub prefix: String,
    pub dir: PathBuf,
    pub hosts: Vec<Host>,
    bin: PathBuf,
    namespaces: Vec<String>,
}

impl Lab {
    /// Builds `n` hosts on one bridge. `bin` is the ringvpn binary to run.
    pub fn new(bin: &Path, n: usize) -> io::Result<Lab> {
        let mut lab = Lab::empty(bin)?;
        lab.build(n)?;
        Ok(lab)
    }

    /// A lab with a fresh prefix and directory and no namespaces yet.
    fn empty(bin: &Path) -> io::Result<Lab> {
        if let Some(why) = unavailable() {
            return Err(err(why));
        }
        reap_stale();
        let prefix = format!(
            "rv{}-{}-",
            std::process::id(),
            LAB_COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let dir = std::env::temp_dir().join(format!("ringvpn-lab-{prefix}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(Lab {
            prefix,
            dir,
            hosts: Vec::new(),
            bin: bin.to_path_buf(),
            namespaces: Vec::new(),
        })
    }

    fn add_ns(&mut self, name: &str) -> io::Result<()> {
        ip(&["netns", "add", name])?;
        self.namespaces.push(name.to_string());
        ip(&["-n", name, "link", "set", "lo", "up"])
    }

    fn build(&mut self, n: usize) -> io::Result<()> {
        let sw = format!("{}sw", self.prefix);
        self.add_ns(&sw)?;
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &sw, "link", "set", "br0", "up"])?;
        for i in 0..n {
            let underlay = Ipv4Addr::new(198, 18, 0, 10 + i as u8);
            self.add_host(&sw, "br0", underlay, 16, None)?;
        }
        Ok(())
    }

    /// Adds host `hosts.len()`: a namespace with `eth0` plugged into bridge
    /// `bridge` of namespace `switch`, address `underlay/prefix`, an
    /// optional route to the public underlay (198.18.0.0/15) via `gateway`,
    /// a fresh key, and the virtual address 100.64.0.(10+i).
    fn add_host(
        &mut self,
        switch: &str,
        bridge: &str,
        underlay: Ipv4Addr,
        prefix: u8,
        gateway: Option<Ipv4Addr>,
    ) -> io::Result<()> {
        let i = self.hosts.len();
        let ns = format!("{}h{i}", self.prefix);
        self.add_ns(&ns)?;
        let port = format!("p{i}");
        ip(&[
            "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns",
            switch,
        ])?;
        ip(&["-n", switch, "link", "set", &port, "master", bridge])?;
        ip(&["-n", switch, "link", "set", &port, "up"])?;
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{underlay}/{prefix}"),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        if let Some(gw) = gateway {
            ip(&[
                "-n",
                &ns,
                "route",
                "add",
                "198.18.0.0/15",
                "via",
                &gw.to_string(),
            ])?;
        }
        let seed = Seed::generate();
        let key_file = self.dir.join(format!("h{i}.key"));
        write_new_key(&key_file, &seed).map_err(err)?;
        self.hosts.push(Host {
            ns,
            underlay,
            vip: Ipv4Addr::new(100, 64, 0, 10 + i as u8),
            key: Identity::from_seed(&seed).public(),
            key_file,
            config: self.dir.join(format!("h{i}.conf")),
            control: self.dir.join(format!("h{i}.sock")),
            log: self.dir.join(format!("h{i}.log")),
            command: None,
            child: None,
        });
        Ok(())
    }

    /// Writes host `i`'s config file.
    pub fn configure(&self, i: usize, o: &NodeOptions) -> io::Result<()> {
        let h = &self.hosts[i];
        let mut c = String::new();
        let _ = writeln!(c, "# ringvpn lab host {i}\n[node]");
        let _ = writeln!(c, "key = {}", h.key_file.display());
        if o.listen_any {
            let _ = writeln!(c, "listen = 0.0.0.0:{PORT}");
        } else {
            let _ = writeln!(c, "listen = {}:{PORT}", h.underlay);
        }
        let _ = writeln!(c, "tap = rv0");
        match o.address {
            LabAddress::Static => {
                let _ = writeln!(c, "address = {}/10", h.vip);
            }
            LabAddress::SameAs(j) => {
                let _ = writeln!(c, "address = {}/10", self.hosts[j].vip);
            }
            LabAddress::Auto => {
                let _ = writeln!(c, "address = auto");
            }
            LabAddress::Dhcp => {
                let _ = writeln!(c, "dhcp = on");
            }
        }
        if let Some(mtu) = o.mtu {
            let _ = writeln!(c, "mtu = {mtu}");
        }
        let _ = writeln!(c, "control = {}", h.control.display());
        // The peer cache in the lab's directory, not the host's /var/lib.
        let _ = writeln!(
            c,
            "state-dir = {}",
            self.dir.join(format!("h{i}-state")).display()
        );
        if o.overlay {
            let _ = writeln!(c, "overlay = on");
            // A certificate names its network: the config need not (and
            // the README's certificate example does not).
            if !o.extra.iter().any(|l| l.starts_with("cert =")) {
                let _ = writeln!(c, "network = lab");
            }
        }
        let boots: Vec<String> = o
            .bootstrap
            .iter()
            .map(|&j| format!("{}:{PORT}", self.hosts[j].underlay))
            .collect();
        if !boots.is_empty() {
            let _ = writeln!(c, "bootstrap = {}", boots.join(", "));
        }
        // Last in [node]: they may open a section of their own.
        for line in &o.extra {
            let _ = writeln!(c, "{line}");
        }
        for &j in &o.peers {
            let p = &self.hosts[j];
            let _ = writeln!(c, "\n[peer]\nname = h{j}\npublic-key = {}", p.key);
            if o.with_endpoints {
                let _ = writeln!(c, "endpoint = {}:{PORT}", p.underlay);
            }
        }
        std::fs::write(&h.config, c)
    }

    /// Every host lists every other, with endpoints.
    pub fn configure_full_mesh(&self) -> io::Result<()> {
        for i in 0..self.hosts.len() {
            let peers = (0..self.hosts.len()).filter(|&j| j != i).collect();
            self.configure(
                i,
                &NodeOptions {
                    peers,
                    ..NodeOptions::default()
                },
            )?;
        }
        Ok(())
    }

    /// Starts host `i`'s daemon (`RUST_LOG=info`, output to its log file).
    pub fn start(&mut self, i: usize) -> io::Result<()> {
        self.stop(i);
        let h = &mut self.hosts[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&h.log)?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &h.ns]);
        match &h.command {
            Some(c) => cmd.args(c),
            None => cmd.arg(&self.bin),
        };
        let child = cmd
            .args(["run", "-c"])
            .arg(&h.config)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        // An emulated daemon starts slower.
        let ready_within = Duration::from_secs(if h.command.is_some() { 30 } else { 5 });
        h.child = Some(child);
        // The daemon is ready once its control socket answers.
        let deadline = Instant::now() + ready_within;
        while Instant::now() < deadline {
            if self.status_json(i).is_ok() {
                return Ok(());
            }
            if let Some(st) = self.hosts[i]
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(err(format!(
                    "host {i}: daemon exited ({st}): {}",
                    self.log_tail(i)
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(err(format!(
            "host {i}: daemon did not open its control socket: {}",
            self.log_tail(i)
        )))
    }

    /// Stops host `i`'s daemon: SIGTERM, then SIGKILL after 3 s.
    pub fn stop(&mut self, i: usize) {
        let Some(mut child) = self.hosts[i].child.take() else {
            return;
        };
        let _ = crate::sys::kill(child.id(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Kills host `i`'s daemon with SIGKILL: no goodbye to its links.
    pub fn stop_hard(&mut self, i: usize) {
        if let Some(mut child) = self.hosts[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The PID of host `i`'s daemon, if running.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.hosts[i].child.as_ref().map(Child::id)
    }

    pub fn log_tail(&self, i: usize) -> String {
        let text = std::fs::read_to_string(&self.hosts[i].log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Runs a command inside host `i`'s namespace.
    pub fn exec(&self, i: usize, args: &[&str]) -> io::Result<Output> {
        Command::new("ip")
            .args(["netns", "exec", &self.hosts[i].ns])
            .args(args)
            .stdin(Stdio::null())
            .output()
    }

    /// Spawns a command inside host `i`'s namespace (for servers).
    pub fn spawn(&self, i: usize, args: &[&str]) -> io::Result<Child> {
        Command::new("ip")
            .args(["netns", "exec", &self.hosts[i].ns])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
    }

    /// Spawns a command inside host `i`'s namespace with its output piped.
    pub fn spawn_piped(&self, i: usize, args: &[&str]) -> io::Result<Child> {
        Command::new("ip")
            .args(["netns", "exec", &self.hosts[i].ns])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    }

    /// Runs busybox's DHCP client on host `i`'s TAP (`rv0`) until it has a
    /// lease, with a script of our own that only configures the interface
    /// (Debian's default one would write the machine's /etc/resolv.conf).
    pub fn dhcp_client(&self, i: usize) -> io::Result<Output> {
        use std::os::unix::fs::PermissionsExt;
        let script = self.dir.join("udhcpc.sh");
        std::fs::write(
            &script,
            "#!/bin/sh\n\
             case \"$1\" in\n\
             bound|renew)\n\
               ip -4 addr flush dev \"$interface\"\n\
               ip addr add \"$ip/$subnet\" dev \"$interface\"\n\
               [ -n \"$mtu\" ] && ip link set \"$interface\" mtu \"$mtu\"\n\
               echo \"lease $ip/$subnet mtu $mtu\" ;;\n\
             deconfig) ip link set \"$interface\" up; ip -4 addr flush dev \"$interface\" ;;\n\
             esac\n",
        )?;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
        let script = script.to_string_lossy().into_owned();
        self.exec(
            i,
            &[
                "udhcpc", "-i", "rv0", "-s", &script, "-n", "-q", "-f", "-t", "10", "-T", "1",
            ],
        )
    }

    /// Sets a sysctl inside host `i`'s namespace.
    pub fn sysctl(&self, i: usize, key: &str, value: &str) -> io::Result<()> {
        run_cmd(
            Command::new("ip")
                .args(["netns", "exec", &self.hosts[i].ns, "sysctl", "-q", "-w"])
                .arg(format!("{key}={value}")),
        )
        .map(|_| ())
    }

    /// Moves host `i` to a new underlay address (its daemon, if running,
    /// keeps the old socket: restart it to follow).
    pub fn move_host(&mut self, i: usize, underlay: Ipv4Addr) -> io::Result<()> {
        let ns = self.hosts[i].ns.clone();
        ip(&["-n", &ns, "addr", "flush", "dev", "eth0"])?;
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{underlay}/16"),
            "dev",
            "eth0",
        ])?;
        self.hosts[i].underlay = underlay;
        Ok(())
    }

    /// Adds another underlay address (in 198.18.0.0/16) to host `i`.
    pub fn add_address(&self, i: usize, addr: Ipv4Addr) -> io::Result<()> {
        let ns = &self.hosts[i].ns;
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{addr}/16"),
            "dev",
            "eth0",
        ])
    }

    /// Whether host `i`'s daemon has exited; its log tail if so.
    pub fn exited(&mut self, i: usize) -> Option<String> {
        let done = self.hosts[i]
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
            .is_some();
        if done {
            self.hosts[i].child = None;
            Some(self.log_tail(i))
        } else {
            None
        }
    }

    /// Names host `i`'s programs resolve (its own /etc/hosts: `ip netns
    /// exec` mounts /etc/netns/NS/hosts over /etc/hosts; removed at
    /// teardown).
    pub fn hosts_entries(&self, i: usize, entries: &[(&str, Ipv4Addr)]) -> io::Result<()> {
        let mut text = String::from("127.0.0.1 localhost\n");
        for (name, ip) in entries {
            let _ = writeln!(text, "{ip} {name}");
        }
        self.netns_file(i, "hosts", &text)
    }

    /// Host `i`'s own `/etc/FILE` (e.g. resolv.conf): `ip netns exec`
    /// mounts /etc/netns/NS/FILE over it (removed at teardown).
    pub fn netns_file(&self, i: usize, file: &str, text: &str) -> io::Result<()> {
        let dir = Path::new("/etc/netns").join(&self.hosts[i].ns);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(file), text)
    }

    /// Tears everything down (also done by `Drop`).
    pub fn teardown(&mut self) {
        for i in 0..self.hosts.len() {
            self.stop(i);
        }
        for ns in self.namespaces.drain(..).rev() {
            let _ = ip(&["netns", "del", &ns]);
            // Per-namespace files (`hosts_entries`), if any.
            let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(&ns));
        }
        // RINGVPN_LAB_KEEP=1 keeps configs and daemon logs for a post-mortem.
        if std::env::var_os("RINGVPN_LAB_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Deletes namespaces named by a lab process that no longer exists.
fn reap_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix("rv") else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if rest.split('-').count() >= 3 && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ping_and_iperf_output() {
        let out = "--- 100.64.0.2 ping statistics ---\n3 packets transmitted, 3 received, 0% packet loss, time 402ms\nrtt min/avg/max/mdev = 0.101/0.150/0.201/0.040 ms\n";
        let p = Ping::parse(out);
        assert_eq!((p.sent, p.received), (3, 3));
        assert!((p.min_ms - 0.101).abs() < 1e-9 && (p.avg_ms - 0.150).abs() < 1e-9);
        assert!(p.all_ok());
        let j = r#"{"end":{"sum_sent":{"bits_per_second":5.0},"sum_received":{"seconds":10, "bits_per_second": 9.5e8}}}"#;
        assert_eq!(
            json_number_after(j, "\"sum_received\"", "\"bits_per_second\""),
            Some(9.5e8)
        );
    }
}
