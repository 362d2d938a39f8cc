//! The mio shell: the only code that owns file descriptors and reads the clock.
//!
//! One thread, one `mio::Poll`. Sources: the TAP fd, the UDP socket, the
//! control socket and a signalfd. mio is edge-triggered, so each source has a
//! "maybe more" flag that is cleared only when a read comes back short or
//! with `WouldBlock`; the loop alternates batches from TAP and UDP (neither
//! direction starves the other) and flushes the node's outputs after every
//! batch. The poll timeout is the node's next deadline.

mod control;
mod daemon;
mod ifwatch;
mod names;
mod netlink;
mod peercache;
mod routing;
mod subrings;
use crate::sys;
mod tap;
mod tcp;
mod trains;
mod udp;

use crate::config::Config;
use crate::node::Node;
use crate::status::{render_json, render_text, DaemonInfo};
use crate::time::Instant;
use mio::Token;
use std::time::{Duration, SystemTime};

const TAP: Token = Token(0);
const UDP: Token = Token(1);
const SIGNAL: Token = Token(2);
const CONTROL: Token = Token(3);
const TCP_LISTEN: Token = Token(10);
/// The metrics HTTP listener (its connections take 21 to 24).
const METRICS: Token = Token(20);
/// Interface address changes (netlink).
const ADDRESSES: Token = Token(8);
/// TCP connection tokens start here (control connections take 4 to 7).
const TCP_FIRST: usize = 100;

/// Batches per direction per loop turn before timers and control get a look.
const TURN_BUDGET: usize = 16;

/// Runs the daemon until SIGINT or SIGTERM.
pub fn run(cfg: Config) -> Result<(), String> {
    daemon::Daemon::setup(cfg, Embedding::default())?.run()
}

/// What a program embedding the daemon (the C API) hands over in place
/// of what `ringvpn run` opens itself. Each is optional.
#[derive(Default)]
pub struct Embedding {
    /// The private key, instead of the config's `key = FILE`.
    pub key: Option<crate::crypto::Seed>,
    /// An open TAP device; the config's `tap =` names its interface,
    /// which is configured (MTU, MAC, address) as ours would be.
    pub tap: Option<std::os::fd::OwnedFd>,
    /// A bound UDP socket, instead of binding `listen`.
    pub udp: Option<std::os::fd::OwnedFd>,
    /// An eventfd that becomes readable when the program wants the loop
    /// to stop. With it, the daemon leaves the process's signals alone.
    pub stop: Option<std::os::fd::OwnedFd>,
}

/// The daemon set up for a program that embeds it: `run` blocks until
/// the stop eventfd is written (`Embedding::stop`).
pub struct Embedded(daemon::Daemon);

impl Embedded {
    pub fn setup(cfg: Config, embed: Embedding) -> Result<Embedded, String> {
        if embed.stop.is_none() {
            return Err("an embedded daemon needs a stop eventfd".into());
        }
        daemon::Daemon::setup(cfg, embed).map(Embedded)
    }

    pub fn run(self) -> Result<(), String> {
        self.0.run()
    }
}

/// A sans-IO node from a config (the C API's first level): the key given
/// or the config's, certificate files read as `ringvpn run` reads them,
/// `endpoints` advertised as ours. Nothing is opened: the caller moves
/// the datagrams and frames.
pub fn embedded_node(
    cfg: &mut Config,
    key: Option<crate::crypto::Seed>,
    endpoints: Vec<crate::wire::endpoint::Endpoint>,
    wall_us: u64,
    rng_seed: u64,
    now: Instant,
) -> Result<Node, String> {
    let seed = match key {
        Some(seed) => seed,
        None => crate::config::load_key(&cfg.key_file)?,
    };
    let identity = crate::crypto::Identity::from_seed(&seed);
    drop(seed);
    let trust = load_trust(cfg, &identity.public(), false)?;
    let vpn = cfg.vpn();
    let mut nc = daemon::node_config(cfg, &vpn, trust, endpoints);
    if wall_us != 0 {
        nc.wall_origin_us = wall_us;
    }
    if rng_seed != 0 {
        nc.rng_seed = rng_seed;
    }
    Ok(Node::new(identity, nc, now))
}

/// `status --json` of a node without a daemon around it (the C API).
pub fn embedded_status(node: &Node, cfg: &Config, now: Instant) -> String {
    let info = DaemonInfo {
        tap: String::new(),
        name: cfg.name.clone(),
        address: cfg.address.map(|(ip, p)| format!("{ip}/{p}")),
        mtu: cfg.mtu,
        listen: cfg.listen.to_string(),
        offloads: String::new(),
        rss_bytes: None,
    };
    render_json(&node.status(now), &info)
}

/// Reads and checks the files the config names — the key, and in
/// certificate mode the CA list, our certificate and the revocation
/// list — before anything is opened: a mistake there is the operator's
/// to fix (`ringvpn run` exits 2 with `FILE: what is wrong`), not a
/// failure of the running daemon.
pub fn check_files(cfg: &Config) -> Result<(), String> {
    let seed = crate::config::load_key(&cfg.key_file)?;
    let key = crate::crypto::Identity::from_seed(&seed).public();
    drop(seed);
    load_trust(&mut cfg.clone(), &key, false)?;
    for n in &cfg.networks {
        check_files(&n.cfg).map_err(|e| format!("[network {}]: {e}", n.name))?;
    }
    Ok(())
}

/// How often the revocation list file is looked at.
const REVOCATIONS_EVERY: Duration = Duration::from_secs(5);

/// Certificate mode: the CA certificate(s) and our own certificate, which
/// must be for our key, from one of those CAs, for our network and valid
/// now (a mistake here is a clear error at start, not silent refusals).
/// With `address = auto`, the certificate's first single IPv4 address is
/// the node's.
fn load_trust(
    cfg: &mut Config,
    key: &crate::crypto::NodeKey,
    announce: bool,
) -> Result<Option<(crate::crypto::cert::Trust, Vec<u8>)>, String> {
    let (Some(ca), Some(cert)) = (&cfg.ca, &cfg.cert) else {
        return Ok(None);
    };
    let cas = crate::pki::load_certs(ca)?;
    if cas
        .iter()
        .any(|c| c.kind != crate::crypto::cert::KIND_CA || !c.signature_ok())
    {
        return Err(format!("{}: not a valid CA certificate", ca.display()));
    }
    let (bytes, mine) = crate::pki::load_cert(cert)?;
    if mine.kind == crate::crypto::cert::KIND_CA {
        return Err(format!(
            "{}: this is a CA certificate; `cert =` takes this node's own (`ringvpn cert sign`), `ca =` the CA's",
            cert.display()
        ));
    }
    if !cfg.network_given {
        // The certificate says which network; the config need not repeat it.
        cfg.network = mine.network.clone();
        if cfg.ipv6_auto {
            cfg.ipv6 = Some(crate::vpn::default_ipv6_prefix(&cfg.network));
        }
    } else if mine.network != cfg.network {
        return Err(format!(
            "{}: the certificate is for network {:?}, the config says `network = {}`",
            cert.display(),
            mine.network,
            cfg.network
        ));
    }
    match &cfg.name {
        Some(n) if !n.eq_ignore_ascii_case(&mine.name) => {
            return Err(format!(
                "{}: the certificate names this member {:?}, the config says `name = {n}` (leave `name` out: the certificate's is used)",
                cert.display(),
                mine.name
            ));
        }
        _ => cfg.name = Some(mine.name.clone()),
    }
    let mut trust = crate::crypto::cert::Trust {
        network: cfg.network.clone(),
        cas,
        revocations: Vec::new(),
    };
    if let Some(path) = &cfg.revocations {
        if path.exists() {
            let list = crate::pki::load_revocations(path)?;
            trust
                .offer_revocations(list)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        } else if announce {
            // It may come later (the file is watched), but say so: a
            // typo here would otherwise revoke nobody, silently.
            log::warn!(
                "{}: no revocation list there (yet): none taken until it appears",
                path.display()
            );
        }
    }
    trust
        .check(&mine, key, crate::pki::unix_now())
        .map_err(|e| format!("{}: our own certificate: {e}", cert.display()))?;
    if cfg.auto_address {
        let single = mine.prefixes.iter().find_map(|p| match p.addr {
            std::net::IpAddr::V4(a) if p.len == 32 => Some(a),
            _ => None,
        });
        if let Some(a) = single {
            cfg.address = Some((a, cfg.subnet.1));
            cfg.auto_address = false;
        }
    }
    if let Some((ip, _)) = cfg.address.filter(|_| !cfg.auto_address) {
        if !mine.allows(std::net::IpAddr::V4(ip)) {
            return Err(format!(
                "{}: address {ip} is not among the certificate's addresses",
                cert.display()
            ));
        }
    }
    // Routes we would advertise must be ours to route: others refuse
    // them otherwise, silently from our side.
    if let Some(r) = cfg.routes() {
        if let Some(p) = r.advertise.iter().find(|p| !mine.may_route(p)) {
            return Err(format!(
                "{}: the certificate does not allow routing {p} (`gateway = on` advertises 0.0.0.0/0 and ::/0; sign it with `ringvpn cert sign --routes …`)",
                cert.display()
            ));
        }
    }
    if !announce {
        return Ok(Some((trust, bytes)));
    }
    log::info!(
        "certificate mode: {} in network {} ({} CA(s))",
        mine.name,
        mine.network,
        trust.cas.len()
    );
    Ok(Some((trust, bytes)))
}

/// The revocation list file: re-read when it changes, and offered to the
/// node (which takes it only if it is newer and signed by our CA).
struct RevocationFile {
    path: std::path::PathBuf,
    seen: Option<SystemTime>,
    next: Option<std::time::Instant>,
}

impl RevocationFile {
    /// One whose next look reads the file whatever its time (a reload).
    fn new_unread(path: std::path::PathBuf) -> RevocationFile {
        RevocationFile {
            path,
            seen: None,
            next: None,
        }
    }

    fn new(path: std::path::PathBuf) -> RevocationFile {
        let seen = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        RevocationFile {
            path,
            seen,
            next: None,
        }
    }

    fn check(&mut self, node: &mut Node, now: Instant) {
        let wall = std::time::Instant::now();
        if self.next.is_some_and(|n| wall < n) {
            return;
        }
        self.next = Some(wall + REVOCATIONS_EVERY);
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        if modified.is_none() || modified == self.seen {
            return;
        }
        self.seen = modified;
        match crate::pki::load_revocations(&self.path) {
            Ok(list) => match node.offer_revocations(now, list, None) {
                Ok(true) => {}
                Ok(false) => log::info!("{}: not newer than ours", self.path.display()),
                Err(e) => log::warn!("{}: refused: {e}", self.path.display()),
            },
            Err(e) => log::warn!("{e}"),
        }
    }
}

/// Puts the claimed virtual address on the TAP once the DHT says it is ours.
struct AddressWatch {
    v4_done: bool,
    v6_done: bool,
}

impl AddressWatch {
    /// Our address is claimed: it goes on the TAP (and its IPv6 twin),
    /// unless it was configured there at start.
    fn held(
        &mut self,
        ip: std::net::Ipv4Addr,
        tap: &str,
        vpn: Option<&crate::vpn::VpnConfig>,
    ) -> Result<(), String> {
        let Some(vpn) = vpn else {
            return Ok(());
        };
        if !self.v4_done {
            self.v4_done = true;
            sys::add_ipv4(tap, ip, vpn.subnet.1)
                .map_err(|e| format!("cannot set address {ip} on {tap}: {e}"))?;
            log::info!("{tap}: {ip}/{}", vpn.subnet.1);
        }
        if !self.v6_done {
            self.v6_done = true;
            if let Some(v6) = vpn.v6_of(ip) {
                let index = sys::ifindex(tap);
                index
                    .and_then(|i| netlink::Netlink::open()?.add_address(i, v6.into(), 96))
                    .map_err(|e| format!("cannot set address {v6} on {tap}: {e}"))?;
                log::info!("{tap}: {v6}/96");
            }
        }
        Ok(())
    }
}

/// Ring-ping answers, for `ring-result` (the oldest forgotten first).
#[derive(Default)]
struct Echoes(
    std::collections::BTreeMap<u64, (u8, Duration)>,
    std::collections::VecDeque<u64>,
);

impl Echoes {
    const KEPT: usize = 1024;

    fn insert(&mut self, nonce: u64, hops: u8, rtt: Duration) {
        if self.1.len() >= Self::KEPT {
            if let Some(old) = self.1.pop_front() {
                self.0.remove(&old);
            }
        }
        if self.0.insert(nonce, (hops, rtt)).is_none() {
            self.1.push_back(nonce);
        }
    }

    fn get(&self, nonce: u64) -> Option<(u8, Duration)> {
        self.0.get(&nonce).copied()
    }
}

/// Results of the map-reduce tasks asked through the control socket,
/// until read (the last few hundred; crawls' descriptions, which can be
/// megabytes, only for the last few).
#[derive(Default)]
struct Tasks(
    std::collections::BTreeMap<u64, (crate::manage::Outcome, Duration)>,
    std::collections::VecDeque<u64>,
);

impl Tasks {
    const KEPT: usize = 256;
    const CRAWLS_KEPT: usize = 3;

    fn done(&mut self, id: u64, result: crate::manage::Outcome, took: Duration) {
        if self.1.len() >= Self::KEPT {
            if let Some(old) = self.1.pop_front() {
                self.0.remove(&old);
            }
        }
        if !result.described.is_empty() {
            // Newest first: past the kept crawls, the descriptions go.
            let mut crawls = 0;
            for old in self.1.iter().rev() {
                let Some((o, _)) = self.0.get_mut(old) else {
                    continue;
                };
                if !o.described.is_empty() {
                    crawls += 1;
                    if crawls >= Self::CRAWLS_KEPT {
                        o.described = Vec::new();
                    }
                }
            }
        }
        if self.0.insert(id, (result, took)).is_none() {
            self.1.push_back(id);
        }
    }
}

/// The daemon's info with the resident set as of now.
fn with_rss(info: &DaemonInfo) -> DaemonInfo {
    DaemonInfo {
        rss_bytes: sys::rss_bytes(),
        ..info.clone()
    }
}

/// Answers one control request line (see `crate::control`).
fn control_request(
    node: &mut Node,
    line: &str,
    info: &DaemonInfo,
    echoes: &Echoes,
    tasks: &Tasks,
    now: Instant,
) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["status"] => render_text(&node.status(now), &with_rss(info)),
        ["metrics"] => crate::metrics::render(&node.status(now)),
        ["peers"] => crate::status::render_peers(&node.status(now)),
        ["ping-start", target] => match node.find_member(target) {
            Some(key) if node.ping_member(now, key) => format!("key {}\n", key.to_base64()),
            Some(_) => format!("error: {target} cannot be reached (not a member we may link to)\n"),
            None => format!("error: no member known as {target} (a name, a virtual IP we have talked to, or a key)\n"),
        },
        ["ping-result", key] => {
            let pong = crate::crypto::NodeKey::from_base64(key).and_then(|k| node.pong(&k));
            match pong {
                Some(p) => format!(
                    "pong {} {:.3} {} {} {}\n",
                    p.name,
                    p.rtt.as_secs_f64() * 1e3,
                    p.path,
                    p.relay.as_deref().unwrap_or("-"),
                    p.hops
                ),
                None => "pending\n".into(),
            }
        }
        ["status", "--json"] => render_json(&node.status(now), &with_rss(info)),
        ["ring-ping", addr, nonce] => {
            match (crate::overlay::Addr::from_hex(addr), nonce.parse::<u64>()) {
                (Some(a), Ok(n)) if node.overlay().is_some() => {
                    node.overlay_echo(now, a, crate::wire::overlay::Mode::Exact, n);
                    "ok\n".into()
                }
                (Some(_), Ok(_)) => "error: this node is not in an overlay\n".into(),
                _ => "error: expected ring-ping <32 hex digits> <nonce>\n".into(),
            }
        }
        ["ring-result", nonce] => {
            let result = nonce.parse::<u64>().ok().and_then(|n| echoes.get(n));
            match result {
                Some((hops, rtt)) => format!(
                    "hops {} rtt_ms {:.3}\n",
                    u32::from(hops) + 1,
                    rtt.as_secs_f64() * 1e3
                ),
                None => "pending\n".into(),
            }
        }
        ["net-start", "crawl", "--sequential"] => {
            if node.overlay().is_none() {
                return "error: this node is not in an overlay\n".into();
            }
            match node.start_walk(now, crate::manage::MAX_DESCRIBED) {
                Some(id) => format!("task {id}\n"),
                None => "error: a sequential crawl is under way\n".into(),
            }
        }
        ["net-start", kind, args @ ..] => {
            use crate::wire::task::TaskKind;
            let kind = match *kind {
                "stats" => TaskKind::Stats,
                "check" => TaskKind::Check,
                "find" => TaskKind::Find,
                "crawl" => TaskKind::Crawl,
                _ => return format!("error: unknown task {kind:?} (stats, check, find, crawl)\n"),
            };
            match node.start_task(now, kind, args.join(" ").as_bytes()) {
                Some(id) => format!("task {id}\n"),
                None => "error: this node is not in an overlay\n".into(),
            }
        }
        ["net-result", id, rest @ ..] => {
            let found = id.parse::<u64>().ok().and_then(|id| tasks.0.get(&id));
            let Some((o, took)) = found else {
                return "pending\n".into();
            };
            let crawl = !o.described.is_empty();
            match rest {
                ["--svg"] => crate::ringmap::render_svg(o, *took),
                ["--json"] if crawl => crate::ringmap::render_json(o, *took),
                _ if crawl => crate::ringmap::render_text(o, *took),
                _ => crate::status::render_task(&o.reduced, *took, rest == ["--json"]),
            }
        }
        _ => format!("error: unknown request {line:?}\n"),
    }
}

/// Writes frames to the TAP and datagrams to the sockets. Returns whether
/// the UDP socket took everything.
fn flush(
    tap: Option<&mut tap::Tap>,
    udp: &mut udp::Udp,
    tcp: &mut tcp::Tcp,
    reg: &mio::Registry,
    node: &mut Node,
    now: Instant,
) -> Result<bool, String> {
    if let Some(tap) = tap {
        tap.write_from(node);
    }
    udp.flush(node, &mut |n, t| tcp.send(reg, n, t, now))
        .map_err(|e| format!("UDP send failed: {e}"))
}
