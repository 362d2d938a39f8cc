//! The daemon: set up once (key, trust, TAP, sockets, poll, node), then
//! one loop turn after another — wait, take the ready sources, move
//! batches between TAP, sockets and node, run what is due, act on the
//! node's events.

use super::{
    control, flush, ifwatch, load_trust, routing, sys, tap, tcp, udp, AddressWatch, Echoes,
    RevocationFile, Tasks, ADDRESSES, CONTROL, METRICS, SIGNAL, TAP, TCP_FIRST, TCP_LISTEN,
    TURN_BUDGET, UDP,
};
use crate::config::Config;
use crate::crypto::Identity;
use crate::node::{Event, Node, NodeConfig};
use crate::status::DaemonInfo;
use crate::time::Instant;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod reload;

/// Everything the loop owns.
pub(super) struct Daemon {
    node: Node,
    /// The config running (a reload compares the file with it).
    cfg: Config,
    /// Routes, rules and nft table we added (taken back when dropped).
    routing: routing::HostRouting,
    /// The TAP (none in sub-ring mode: each network has its own).
    tap: Option<tap::Tap>,
    /// Sub-ring mode: the networks beside the public node.
    subrings: Option<super::subrings::Subrings>,
    udp: udp::Udp,
    tcp: tcp::Tcp,
    ctl: control::Control,
    /// `metrics = ADDRESS:PORT`: GET /metrics over HTTP.
    http: Option<control::Http>,
    /// SIGINT/SIGTERM/SIGHUP as a signalfd, or the embedding program's
    /// stop eventfd.
    stop: Stop,
    poll: Poll,
    local: ifwatch::LocalEndpoints,
    revocations: Option<RevocationFile>,
    boot_names: super::names::BootNames,
    peer_cache: super::peercache::PeerCache,
    vpn: Option<crate::vpn::VpnConfig>,
    addresses: AddressWatch,
    echoes: Echoes,
    tasks: Tasks,
    info: DaemonInfo,
    clock: std::time::Instant,
    /// "Maybe more" flags of the edge-triggered sources, and whether the
    /// UDP socket can take more.
    tap_more: bool,
    udp_more: bool,
    udp_writable: bool,
    addresses_notified: bool,
}

impl Daemon {
    /// Opens and registers everything; any failure is a clear error.
    pub(super) fn setup(mut cfg: Config, embed: super::Embedding) -> Result<Daemon, String> {
        let seed = match embed.key {
            Some(seed) => seed,
            None => crate::config::load_key(&cfg.key_file)?,
        };
        let identity = Identity::from_seed(&seed);
        drop(seed);
        let key = identity.public();
        let trust = load_trust(&mut cfg, &key, true)?;
        // First of what we open: a daemon already running on this path
        // stops us before we touch its TAP, routes or rules.
        let ctl = control::Control::bind(&cfg.control, CONTROL.0)
            .map_err(|e| format!("control socket {}: {e}", cfg.control.display()))?;
        let subring_mode = !cfg.networks.is_empty();
        let vpn = cfg.vpn();
        // In overlay mode a static address is configured at once (the
        // claim runs meanwhile; a conflict stops the daemon); an automatic
        // one once claimed; with DHCP the host configures it.
        let tap_addr = if cfg.dhcp { None } else { cfg.address };
        // Derived from the key: it survives restarts, so neighbours'
        // caches stay valid.
        let mac = crate::vpn::host_mac(&key).0;
        let tap = match embed.tap {
            Some(_) if subring_mode => {
                return Err("an embedded daemon runs no networks (sub-ring mode)".into())
            }
            Some(fd) => Some(
                tap::Tap::adopt(fd, &cfg.tap, cfg.mtu, mac, tap_addr, cfg.offload).map_err(
                    |e| format!("cannot set up the TAP device given ({}): {e}", cfg.tap),
                )?,
            ),
            None if subring_mode => None,
            None => Some(
                tap::Tap::open(&cfg.tap, cfg.mtu, mac, tap_addr, cfg.offload)
                    .map_err(|e| format!("cannot create TAP device {}: {e}", cfg.tap))?,
            ),
        };
        let tap_name = tap.as_ref().map_or("-", |t| t.name()).to_string();
        let addresses = AddressWatch {
            v4_done: tap_addr.is_some() || cfg.dhcp,
            v6_done: !vpn.as_ref().is_some_and(|v| v.ipv6.is_some()),
        };
        // A full tunnel keeps our own links out of itself by this mark:
        // every socket carries it before the rules go in.
        let mark = routing::socket_mark(&cfg);
        let udp = match embed.udp {
            Some(fd) => udp::Udp::adopt(fd, mark, cfg.offload)
                .map_err(|e| format!("cannot use the UDP socket given: {e}"))?,
            None => udp::Udp::bind(cfg.listen, mark, cfg.offload)
                .map_err(|e| format!("cannot bind UDP {}: {e}", cfg.listen))?,
        };
        let tcp_addr = cfg.tcp.then(|| udp.local_addr().unwrap_or(cfg.listen));
        let tcp = tcp::Tcp::bind(tcp_addr, TCP_FIRST, mark)
            .map_err(|e| format!("cannot listen on TCP {}: {e}", cfg.listen))?;
        let routing = routing::HostRouting::setup(&cfg, &tap_name)?;
        let http = match cfg.metrics {
            Some(addr) => Some(
                control::Http::bind_http(addr, METRICS.0)
                    .map_err(|e| format!("cannot listen for metrics on {addr}: {e}"))?,
            ),
            None => None,
        };
        let stop = match embed.stop {
            Some(fd) => Stop::Event(fd),
            None => Stop::Signals(
                sys::termination_signalfd().map_err(|e| format!("cannot set up signals: {e}"))?,
            ),
        };
        let listen = udp.local_addr().unwrap_or(cfg.listen);
        let taps = match subring_mode {
            true => cfg.networks.iter().map(|n| n.cfg.tap.clone()).collect(),
            false => vec![tap_name.clone()],
        };
        let local = ifwatch::LocalEndpoints::new(listen, tcp.local_addr(), taps);
        let mut nc = node_config(&cfg, &vpn, trust, local.current());
        // Every network's addresses are the VPN's: never the public
        // ring's underlay (a path through a network that runs over it).
        nc.tap_prefixes
            .extend(super::subrings::network_prefixes(&cfg));
        let wall_origin_us = nc.wall_origin_us;
        let mut node = Node::new(identity, nc, Instant::ZERO);
        let subrings = match subring_mode {
            true => Some(super::subrings::Subrings::setup(
                &cfg,
                &mut node,
                &local.current(),
                wall_origin_us,
            )?),
            false => None,
        };
        let peer_cache =
            super::peercache::PeerCache::load(cfg.peer_cache.clone(), &mut node, Instant::ZERO);
        let mut d = Daemon {
            cfg: cfg.clone(),
            node,
            routing,
            info: DaemonInfo {
                tap: tap_name.clone(),
                name: cfg.name.clone(),
                address: cfg.address.map(|(ip, p)| format!("{ip}/{p}")),
                mtu: cfg.mtu,
                listen: listen.to_string(),
                offloads: offloads(&udp, tap.as_ref()),
                rss_bytes: None,
            },
            tap,
            subrings,
            udp,
            tcp,
            ctl,
            http,
            stop,
            poll: Poll::new().map_err(|e| format!("cannot create poll: {e}"))?,
            local,
            revocations: cfg.revocations.clone().map(RevocationFile::new),
            boot_names: super::names::BootNames::new(cfg.bootstrap_names.clone()),
            peer_cache,
            vpn,
            addresses,
            echoes: Echoes::default(),
            tasks: Tasks::default(),
            clock: std::time::Instant::now(),
            tap_more: true,
            udp_more: true,
            udp_writable: true,
            addresses_notified: false,
        };
        d.register()?;
        log::info!(
            "node {} up on {} ({}), {} peers",
            key,
            d.info.tap,
            d.info.listen,
            cfg.peers.len()
        );
        Ok(d)
    }

    fn register(&mut self) -> Result<(), String> {
        let reg = self.poll.registry();
        let setup = |e: io::Error| format!("cannot register with poll: {e}");
        if let Some(tap) = &self.tap {
            reg.register(&mut SourceFd(&tap.raw_fd()), TAP, Interest::READABLE)
                .map_err(setup)?;
        }
        if let Some(s) = &self.subrings {
            s.register(reg).map_err(setup)?;
        }
        // Writability is asked for only while a send is blocked: a UDP
        // socket reports it again each time a sent datagram leaves, which
        // would wake the loop once more per packet.
        reg.register(self.udp.source(), UDP, Interest::READABLE)
            .map_err(setup)?;
        reg.register(
            &mut SourceFd(&self.stop.raw_fd()),
            SIGNAL,
            Interest::READABLE,
        )
        .map_err(setup)?;
        reg.register(self.ctl.listener(), CONTROL, Interest::READABLE)
            .map_err(setup)?;
        if let Some(h) = self.http.as_mut() {
            reg.register(h.listener(), METRICS, Interest::READABLE)
                .map_err(setup)?;
        }
        if let Some(l) = self.tcp.listener() {
            reg.register(l, TCP_LISTEN, Interest::READABLE)
                .map_err(setup)?;
        }
        if let Some(fd) = self.local.fd() {
            reg.register(&mut SourceFd(&fd), ADDRESSES, Interest::READABLE)
                .map_err(setup)?;
        }
        Ok(())
    }

    fn now(&self) -> Instant {
        Instant::from_micros(self.clock.elapsed().as_micros() as u64)
    }

    /// Loop turns until SIGINT or SIGTERM (Ok) or a fatal error.
    pub(super) fn run(mut self) -> Result<(), String> {
        let mut events = Events::with_capacity(64);
        loop {
            match self.poll.poll(&mut events, self.wait()) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("poll failed: {e}")),
            }
            for ev in events.iter() {
                if self.ready(ev)? {
                    return Ok(());
                }
            }
            self.pump()?;
            self.upkeep()?;
        }
    }

    /// How long the poll may wait: not at all while there is work we are
    /// allowed to do (TAP data waits while the socket is full: the
    /// writable event wakes us), else until the next deadline.
    fn wait(&self) -> Option<Duration> {
        if self.udp_more || (self.taps_more() && self.udp_writable) {
            return Some(Duration::ZERO);
        }
        let watch = self.revocations.as_ref().map(|_| super::REVOCATIONS_EVERY);
        let now = self.now();
        let nets = self.subrings.as_ref().and_then(|s| s.poll_timeout());
        let node_t =
            crate::time::earliest(self.node.poll_timeout(), nets).map(|t| t.saturating_since(now));
        [watch, self.local.timeout(), Some(super::peercache::EVERY)]
            .into_iter()
            .fold(node_t, |a, b| match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            })
    }

    /// Whether a TAP (ours, or a network's) may have more to read.
    fn taps_more(&self) -> bool {
        (self.tap.is_some() && self.tap_more)
            || self.subrings.as_ref().is_some_and(|s| s.tap_more())
    }

    /// A control request: `@NAME …` is for network NAME's node (sub-ring
    /// mode), anything else for ours; our status names the networks.
    fn control(&mut self, line: &str, now: Instant) -> String {
        if let Some(rest) = line.trim_start().strip_prefix('@') {
            let (name, rest) = rest.split_once(' ').unwrap_or((rest, ""));
            return match self.subrings.as_mut() {
                Some(s) => s.control(name, rest, &self.info, now),
                None => "error: this daemon runs no networks (no [network NAME] sections)\n".into(),
            };
        }
        let mut reply = super::control_request(
            &mut self.node,
            line,
            &self.info,
            &self.echoes,
            &self.tasks,
            now,
        );
        if let (Some(s), "status") = (&self.subrings, line.trim()) {
            reply += &s.summary();
        }
        reply
    }

    /// One ready source. True when a signal says stop.
    fn ready(&mut self, ev: &mio::event::Event) -> Result<bool, String> {
        let now = self.now();
        match ev.token() {
            TAP => self.tap_more = true,
            UDP => {
                self.udp_more |= ev.is_readable();
                self.udp_writable |= ev.is_writable();
            }
            SIGNAL => {
                if let Stop::Event(fd) = &self.stop {
                    if sys::drain_eventfd(fd.as_raw_fd()) {
                        log::info!("asked to stop: shutting down");
                        return Ok(true);
                    }
                }
                while let Some(sig) = self.stop.signal() {
                    if sig == libc::SIGHUP as u32 {
                        self.reload_logged();
                        continue;
                    }
                    log::info!("signal {sig}: shutting down");
                    return Ok(true);
                }
            }
            CONTROL => self.ctl.accept(self.poll.registry()),
            METRICS => {
                if let Some(h) = self.http.as_mut() {
                    h.accept(self.poll.registry());
                }
            }
            t if self.http.as_ref().is_some_and(|h| h.owns(t)) => self.metrics_ready(ev, now),
            ADDRESSES => self.addresses_notified = true,
            t if self.subrings.as_mut().is_some_and(|s| s.ready(t)) => {}
            TCP_LISTEN => self.tcp.accept(self.poll.registry(), &mut self.node, now),
            t if self.tcp.owns(t) => {
                self.tcp.ready(self.poll.registry(), t, &mut self.node, now);
                self.flush(now)?;
            }
            t if self.ctl.owns(t) => {
                if ev.is_readable() {
                    if let control::Request::Line(slot, line) =
                        self.ctl.readable(t, self.poll.registry())
                    {
                        let reply = if line.trim() == "reload" {
                            match self.reload() {
                                Ok(said) => {
                                    log::info!("{said}");
                                    format!("{said}\n")
                                }
                                Err(e) => {
                                    log::error!("reload refused, running as before: {e}");
                                    format!("error: {e}\n")
                                }
                            }
                        } else {
                            // A refused train can turn GSO off at any time.
                            self.info.offloads = offloads(&self.udp, self.tap.as_ref());
                            self.control(&line, now)
                        };
                        self.ctl.reply(slot, reply, self.poll.registry());
                    }
                }
                if ev.is_writable() {
                    self.ctl.writable(t, self.poll.registry());
                }
            }
            _ => {}
        }
        Ok(false)
    }

    /// A metrics HTTP connection is ready.
    fn metrics_ready(&mut self, ev: &mio::event::Event, now: Instant) {
        let (Some(h), reg) = (self.http.as_mut(), self.poll.registry()) else {
            return;
        };
        let t = ev.token();
        if ev.is_readable() {
            if let control::Request::Line(slot, line) = h.readable(t, reg) {
                let (node, nets) = (&self.node, self.subrings.as_ref().map(|s| &s.nets));
                let reply = control::http_reply(&line, |network| {
                    let node = match network {
                        None => node,
                        Some(n) => &nets?.get(nets?.by_name(n)?).node,
                    };
                    Some(crate::metrics::render(&node.status(now)))
                });
                h.reply(slot, reply, reg);
            }
        }
        if ev.is_writable() {
            h.writable(t, reg);
        }
    }

    /// Moves batches between the sockets, the TAP and the node, a bounded
    /// number per turn so timers and control get a look.
    fn pump(&mut self) -> Result<(), String> {
        for _ in 0..TURN_BUDGET {
            if !(self.udp_more || (self.taps_more() && self.udp_writable)) {
                break;
            }
            let t = self.now();
            if self.udp_more {
                let nets = self.subrings.as_mut().map(|s| &mut s.nets);
                let more = self
                    .udp
                    .recv_into(&mut self.node, nets, t)
                    .map_err(|e| format!("UDP receive failed: {e}"))?;
                self.udp_more = matches!(more, udp::Recv::More);
            }
            // Read the TAPs only while the socket can take what we send:
            // backpressure reaches the kernel's TAP queue, not our pool.
            if self.udp_writable {
                if let Some(tap) = self.tap.as_mut().filter(|_| self.tap_more) {
                    self.tap_more = tap.read_into(&mut self.node, t);
                }
                if let Some(s) = self.subrings.as_mut() {
                    s.read_taps(t);
                }
            }
            self.flush(t)?;
        }
        Ok(())
    }

    /// What is due: the node's timers, the revocation file, our
    /// addresses; then the node's events, and what all that produced.
    fn upkeep(&mut self) -> Result<(), String> {
        let t = self.now();
        if self.node.poll_timeout().is_some_and(|d| d <= t) {
            self.node.handle_timeout(t);
            self.tcp.expire(self.poll.registry(), t);
        }
        if let Some(r) = self.revocations.as_mut() {
            r.check(&mut self.node, t);
        }
        self.boot_names.check(&mut self.node, t);
        self.peer_cache.check(&self.node);
        if self.local.due(std::mem::take(&mut self.addresses_notified)) {
            let eps = self.local.current();
            self.node.set_local_endpoints(t, &eps);
            if let Some(s) = self.subrings.as_mut() {
                s.set_local_endpoints(t, &self.node, &eps);
            }
        }
        if let Some(s) = self.subrings.as_mut() {
            s.upkeep(t, &mut self.node)?;
        }
        while let Some(e) = self.node.poll_event() {
            let e = match self.subrings.as_mut() {
                Some(s) => s.nets.public_event(t, &mut self.node, e),
                None => Some(e),
            };
            if let Some(e) = e {
                self.event(e)?;
            }
        }
        self.flush(t)
    }

    fn event(&mut self, e: Event) -> Result<(), String> {
        match e {
            Event::AddressHeld(ip) => match &self.tap {
                Some(tap) => self.addresses.held(ip, tap.name(), self.vpn.as_ref()),
                None => Ok(()),
            },
            Event::AddressConflict { ip, holder } => Err(format!(
                "virtual address {ip} is already held by node {} (ring address); choose another address or `address = auto`",
                holder.to_hex()
            )),
            Event::Echo { nonce, hops, rtt } => {
                self.echoes.insert(nonce, hops, rtt);
                Ok(())
            }
            // The daemon starts no DHT operations of its own.
            Event::Dht(_) => Ok(()),
            Event::RouteAdded(p) => {
                self.routing.add_route(p);
                Ok(())
            }
            Event::RouteRemoved(p) => {
                self.routing.remove_route(p);
                Ok(())
            }
            Event::TaskDone { id, result, took, .. } => {
                self.tasks.done(id, *result, took);
                Ok(())
            }
        }
    }

    fn flush(&mut self, now: Instant) -> Result<(), String> {
        let mut writable = true;
        if let Some(s) = self.subrings.as_mut() {
            writable &= s.flush(&mut self.udp, &mut self.node, now)?;
        }
        writable &= flush(
            self.tap.as_mut(),
            &mut self.udp,
            &mut self.tcp,
            self.poll.registry(),
            &mut self.node,
            now,
        )?;
        if writable != self.udp_writable {
            let interest = if writable {
                Interest::READABLE
            } else {
                Interest::READABLE | Interest::WRITABLE
            };
            self.poll
                .registry()
                .reregister(self.udp.source(), UDP, interest)
                .map_err(|e| format!("cannot register with poll: {e}"))?;
        }
        self.udp_writable = writable;
        Ok(())
    }
}

/// How the loop learns it should stop.
enum Stop {
    /// `ringvpn run`: SIGINT/SIGTERM stop, SIGHUP reloads.
    Signals(OwnedFd),
    /// Embedded (the C API): the program's eventfd; its signals are its own.
    Event(OwnedFd),
}

impl Stop {
    fn raw_fd(&self) -> std::os::fd::RawFd {
        match self {
            Stop::Signals(fd) | Stop::Event(fd) => fd.as_raw_fd(),
        }
    }

    fn signal(&self) -> Option<u32> {
        match self {
            Stop::Signals(fd) => sys::read_signal(fd.as_raw_fd()),
            Stop::Event(_) => None,
        }
    }
}

/// The core's configuration from the file's.
pub(super) fn node_config(
    cfg: &Config,
    vpn: &Option<crate::vpn::VpnConfig>,
    trust: Option<(crate::crypto::cert::Trust, Vec<u8>)>,
    endpoints: Vec<crate::wire::endpoint::Endpoint>,
) -> NodeConfig {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    NodeConfig {
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
        bootstrap_pending: !cfg.bootstrap_names.is_empty(),
        endpoints,
        tap_prefixes: cfg
            .address
            .map(|(ip, len)| crate::net::Prefix::new(ip.into(), len))
            .into_iter()
            .collect(),
        trust_any: cfg.overlay,
        vpn: vpn.clone(),
        routes: cfg.routes(),
        tcp_fallback: cfg.tcp,
        fast_aes: cfg.cipher.offers_aes(sys::hardware_aes()),
        timers: cfg.timers(),
        trust: trust.as_ref().map(|(t, _)| t.clone()),
        cert: trust.map(|(_, c)| c),
        ..NodeConfig::default()
    }
}

/// The offloads in use, for status.
fn offloads(udp: &udp::Udp, tap: Option<&tap::Tap>) -> String {
    match tap {
        Some(t) => format!("{}, {}", udp.offloads(), t.offloads()),
        None => udp.offloads(),
    }
}
