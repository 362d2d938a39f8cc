//! The mio shell: the only code that owns file descriptors and reads the clock.
//!
//! One thread, one `mio::Poll`. Sources: the TAP fd, the UDP socket, the
//! control socket and a signalfd. mio is edge-triggered, so each source has a
//! "maybe more" flag that is cleared only when a read comes back short or
//! with `WouldBlock`; the loop alternates batches from TAP and UDP (neither
//! direction starves the other) and flushes the node's outputs after every
//! batch. The poll timeout is the node's next deadline.

mod control;
mod ifwatch;
use crate::sys;
mod tap;
mod tcp;
mod udp;

use crate::buf::MAX_PAYLOAD;
use crate::config::Config;
use crate::crypto::Identity;
use crate::node::{DropReason, Event, Node, NodeConfig};
use crate::status::{render_json, render_text, DaemonInfo};
use crate::time::Instant;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const TAP: Token = Token(0);
const UDP: Token = Token(1);
const SIGNAL: Token = Token(2);
const CONTROL: Token = Token(3);
const TCP_LISTEN: Token = Token(10);
/// Interface address changes (netlink).
const ADDRESSES: Token = Token(8);
/// TCP connection tokens start here (control connections take 4 to 7).
const TCP_FIRST: usize = 100;

/// Batches per direction per loop turn before timers and control get a look.
const TURN_BUDGET: usize = 16;

/// Runs the daemon until SIGINT or SIGTERM.
pub fn run(mut cfg: Config) -> Result<(), String> {
    let seed = crate::config::load_key(&cfg.key_file)?;
    let identity = Identity::from_seed(&seed);
    drop(seed);
    let key = identity.public();
    let trust = load_trust(&mut cfg, &key)?;
    let vpn = cfg.vpn();
    // In overlay mode a static address is configured at once (the claim
    // runs meanwhile; a conflict stops the daemon); an automatic one once
    // claimed; with DHCP the host configures it.
    let tap_addr = if cfg.dhcp { None } else { cfg.address };
    // Derived from the key: it survives restarts, so neighbours' caches
    // stay valid.
    let mac = crate::vpn::host_mac(&key).0;
    let tap = tap::Tap::open(&cfg.tap, cfg.mtu, mac, tap_addr)
        .map_err(|e| format!("cannot create TAP device {}: {e}", cfg.tap))?;
    let mut addresses = AddressWatch {
        v4_done: tap_addr.is_some() || cfg.dhcp,
        v6_done: !vpn.as_ref().is_some_and(|v| v.ipv6.is_some()),
    };
    let mut udp = udp::Udp::bind(cfg.listen, cfg.fwmark)
        .map_err(|e| format!("cannot bind UDP {}: {e}", cfg.listen))?;
    let tcp_addr = cfg.tcp.then(|| udp.local_addr().unwrap_or(cfg.listen));
    let mut tcp = tcp::Tcp::bind(tcp_addr, TCP_FIRST)
        .map_err(|e| format!("cannot listen on TCP {}: {e}", cfg.listen))?;
    let mut ctl = control::Control::bind(&cfg.control, CONTROL.0)
        .map_err(|e| format!("cannot bind control socket {}: {e}", cfg.control.display()))?;
    let signals = sys::termination_signalfd().map_err(|e| format!("cannot set up signals: {e}"))?;

    let mut poll = Poll::new().map_err(|e| format!("cannot create poll: {e}"))?;
    let reg = poll.registry();
    let setup = |e: io::Error| format!("cannot register with poll: {e}");
    reg.register(&mut SourceFd(&tap.raw_fd()), TAP, Interest::READABLE)
        .map_err(setup)?;
    reg.register(udp.source(), UDP, Interest::READABLE | Interest::WRITABLE)
        .map_err(setup)?;
    reg.register(
        &mut SourceFd(&signals.as_raw_fd()),
        SIGNAL,
        Interest::READABLE,
    )
    .map_err(setup)?;
    reg.register(ctl.listener(), CONTROL, Interest::READABLE)
        .map_err(setup)?;
    if let Some(l) = tcp.listener() {
        reg.register(l, TCP_LISTEN, Interest::READABLE)
            .map_err(setup)?;
    }

    let mut revocations = cfg.revocations.clone().map(RevocationFile::new);

    let clock = std::time::Instant::now();
    let now = || Instant::from_micros(clock.elapsed().as_micros() as u64);
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let listen = udp.local_addr().unwrap_or(cfg.listen);
    let local = ifwatch::LocalEndpoints::new(listen, tcp.local_addr(), tap.name());
    if let Some(fd) = local.fd() {
        reg.register(&mut SourceFd(&fd), ADDRESSES, Interest::READABLE)
            .map_err(setup)?;
    }
    let node_cfg = NodeConfig {
        peers: cfg.peers.clone(),
        wall_origin_us: wall.as_micros() as u64,
        rng_seed: crate::rand::SeededRng::from_os().next_seed(),
        overlay: cfg.overlay.then(|| crate::overlay::OverlayConfig {
            relay_kib: cfg.relay_kib,
            ..Default::default()
        }),
        ondemand_threshold: cfg.ondemand,
        max_peers: usize::from(cfg.max_peers),
        bootstrap: cfg.bootstrap.clone(),
        endpoints: local.current(),
        tap_prefixes: cfg
            .address
            .map(|(ip, len)| crate::net::Prefix::new(ip.into(), len))
            .into_iter()
            .collect(),
        trust_any: cfg.overlay,
        vpn: vpn.clone(),
        tcp_fallback: cfg.tcp,
        timers: cfg.timers(),
        trust: trust.as_ref().map(|(t, _)| t.clone()),
        cert: trust.map(|(_, c)| c),
        ..NodeConfig::default()
    };
    let mut node = Node::new(identity, node_cfg, now());
    let info = DaemonInfo {
        tap: tap.name().to_string(),
        address: cfg.address.map(|(ip, p)| format!("{ip}/{p}")),
        mtu: cfg.mtu,
        listen: udp
            .local_addr()
            .map_or(cfg.listen.to_string(), |a| a.to_string()),
    };
    log::info!(
        "node {} up on {} ({}), {} peers",
        key,
        info.tap,
        info.listen,
        cfg.peers.len()
    );

    let mut local = local;
    let mut addresses_notified = false;
    let mut echoes = Echoes::default();
    let mut events = Events::with_capacity(64);
    let (mut tap_more, mut udp_more, mut udp_writable) = (true, true, true);
    loop {
        // Spin again at once only if there is work we are allowed to do: TAP
        // data waits while the socket is full (the writable event wakes us).
        let timeout = if udp_more || (tap_more && udp_writable) {
            Some(Duration::ZERO)
        } else {
            let watch = revocations.as_ref().map(|_| REVOCATIONS_EVERY);
            let node_t = node.poll_timeout().map(|t| t.saturating_since(now()));
            [watch, local.timeout()]
                .into_iter()
                .fold(node_t, |a, b| match (a, b) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                })
        };
        match poll.poll(&mut events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("poll failed: {e}")),
        }
        for ev in events.iter() {
            match ev.token() {
                TAP => tap_more = true,
                UDP => {
                    udp_more |= ev.is_readable();
                    udp_writable |= ev.is_writable();
                }
                SIGNAL => {
                    if let Some(sig) = sys::read_signal(signals.as_raw_fd()) {
                        log::info!("signal {sig}: shutting down");
                        return Ok(());
                    }
                }
                CONTROL => ctl.accept(poll.registry()),
                ADDRESSES => addresses_notified = true,
                TCP_LISTEN => tcp.accept(poll.registry(), &mut node, now()),
                t if tcp.owns(t) => {
                    tcp.ready(poll.registry(), t, &mut node, now());
                    udp_writable =
                        flush(&tap, &mut udp, &mut tcp, poll.registry(), &mut node, now())?;
                }
                t if ctl.owns(t) => {
                    if ev.is_readable() {
                        if let control::Request::Line(slot, line) = ctl.readable(t, poll.registry())
                        {
                            let reply = control_request(&mut node, &line, &info, &echoes, now());
                            ctl.reply(slot, reply, poll.registry());
                        }
                    }
                    if ev.is_writable() {
                        ctl.writable(t, poll.registry());
                    }
                }
                _ => {}
            }
        }

        for _ in 0..TURN_BUDGET {
            if !(udp_more || (tap_more && udp_writable)) {
                break;
            }
            let t = now();
            if udp_more {
                udp_more = matches!(
                    udp.recv_into(&mut node, t)
                        .map_err(|e| format!("UDP receive failed: {e}"))?,
                    udp::Recv::More
                );
            }
            // Read the TAP only while the socket can take what we send:
            // backpressure reaches the kernel's TAP queue, not our pool.
            if tap_more && udp_writable {
                tap_more = read_tap(&tap, &mut node, t);
            }
            udp_writable = flush(&tap, &mut udp, &mut tcp, poll.registry(), &mut node, t)?;
        }
        let t = now();
        if node.poll_timeout().is_some_and(|d| d <= t) {
            node.handle_timeout(t);
            tcp.expire(poll.registry(), t);
        }
        if let Some(r) = revocations.as_mut() {
            r.check(&mut node, t);
        }
        if local.due(std::mem::take(&mut addresses_notified)) {
            node.set_local_endpoints(t, &local.current());
        }
        while let Some(e) = node.poll_event() {
            match e {
                Event::AddressHeld(ip) => addresses.held(ip, tap.name(), vpn.as_ref())?,
                Event::AddressConflict { ip, holder } => {
                    return Err(format!(
                        "virtual address {ip} is already held by node {} (ring address); choose another address or `address = auto`",
                        holder.to_hex()
                    ))
                }
                Event::Echo { nonce, hops, rtt } => echoes.insert(nonce, hops, rtt),
                // The daemon starts no DHT operations of its own.
                Event::Dht(_) => {}
            }
        }
        udp_writable = flush(&tap, &mut udp, &mut tcp, poll.registry(), &mut node, t)?;
    }
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
                // No duplicate-address detection: the DHT claim made the
                // address ours, and DAD would hold it back for a second or two.
                let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{tap}/accept_dad"), "0");
                sys::add_ipv6(tap, v6, 96)
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

/// Answers one control request line (see `crate::control`).
fn control_request(
    node: &mut Node,
    line: &str,
    info: &DaemonInfo,
    echoes: &Echoes,
    now: Instant,
) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["status"] => render_text(&node.status(now), info),
        ["status", "--json"] => render_json(&node.status(now), info),
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
        _ => format!("error: unknown request {line:?}\n"),
    }
}

/// Reads up to one batch of frames from the TAP into the node. Returns
/// whether the TAP may hold more.
fn read_tap(tap: &tap::Tap, node: &mut Node, now: Instant) -> bool {
    for _ in 0..sys::BATCH {
        let Some(mut buf) = node.pool_mut().alloc() else {
            node.count_drop(DropReason::PoolEmpty);
            return true;
        };
        let space = node.pool_mut().space_mut(&buf);
        let cap = MAX_PAYLOAD.min(space.len());
        match tap.read(&mut space[..cap]) {
            Ok(n) => {
                node.pool().set_len(&mut buf, n);
                node.handle_frame(now, buf);
            }
            Err(e) => {
                node.pool_mut().free(buf);
                if e.kind() != io::ErrorKind::Interrupted {
                    return false;
                }
            }
        }
    }
    true
}

/// Writes frames to the TAP and datagrams to the sockets. Returns whether
/// the UDP socket took everything.
fn flush(
    tap: &tap::Tap,
    udp: &mut udp::Udp,
    tcp: &mut tcp::Tcp,
    reg: &mio::Registry,
    node: &mut Node,
    now: Instant,
) -> Result<bool, String> {
    while let Some(f) = node.poll_frame() {
        if tap.write(node.pool().data(&f)).is_err() {
            node.count_drop(DropReason::QueueFull);
        }
        node.pool_mut().free(f);
    }
    udp.flush(node, &mut |n, t| tcp.send(reg, n, t, now))
        .map_err(|e| format!("UDP send failed: {e}"))
}
