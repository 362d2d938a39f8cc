//! The mio shell: the only code that owns file descriptors and reads the clock.
//!
//! One thread, one `mio::Poll`. Sources: the TAP fd, the UDP socket, the
//! control socket and a signalfd. mio is edge-triggered, so each source has a
//! "maybe more" flag that is cleared only when a read comes back short or
//! with `WouldBlock`; the loop alternates batches from TAP and UDP (neither
//! direction starves the other) and flushes the node's outputs after every
//! batch. The poll timeout is the node's next deadline.

mod control;
pub mod sys;
mod tap;
mod udp;

use crate::buf::MAX_PAYLOAD;
use crate::config::Config;
use crate::crypto::Identity;
use crate::node::{DropReason, Node, NodeConfig};
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

/// Batches per direction per loop turn before timers and control get a look.
const TURN_BUDGET: usize = 16;

/// A locally administered unicast MAC derived from the node key, so the
/// address survives restarts and peers' ARP caches stay valid.
pub fn mac_for(key: &crate::crypto::NodeKey) -> [u8; 6] {
    let k = key.0;
    [(k[0] & 0xfc) | 0x02, k[1], k[2], k[3], k[4], k[5]]
}

/// Runs the daemon until SIGINT or SIGTERM.
pub fn run(cfg: Config) -> Result<(), String> {
    let seed = crate::config::load_key(&cfg.key_file)?;
    let identity = Identity::from_seed(&seed);
    drop(seed);
    let key = identity.public();
    let tap = tap::Tap::open(&cfg.tap, cfg.mtu, mac_for(&key), cfg.address)
        .map_err(|e| format!("cannot create TAP device {}: {e}", cfg.tap))?;
    let mut udp = udp::Udp::bind(cfg.listen, cfg.fwmark)
        .map_err(|e| format!("cannot bind UDP {}: {e}", cfg.listen))?;
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

    let clock = std::time::Instant::now();
    let now = || Instant::from_micros(clock.elapsed().as_micros() as u64);
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let listen = udp.local_addr().unwrap_or(cfg.listen);
    let node_cfg = NodeConfig {
        peers: cfg.peers.clone(),
        wall_origin_us: wall.as_micros() as u64,
        rng_seed: crate::rand::SeededRng::from_os().next_seed(),
        overlay: cfg.overlay.then(crate::overlay::OverlayConfig::default),
        bootstrap: cfg.bootstrap.clone(),
        // A wildcard listen address is not advertised; the reflexive
        // endpoints learned from handshakes will be (NAT issue).
        endpoints: if listen.ip().is_unspecified() {
            Vec::new()
        } else {
            vec![listen]
        },
        trust_any: cfg.overlay,
        timers: if cfg.overlay {
            crate::overlay::link_timers()
        } else {
            Default::default()
        },
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

    let mut events = Events::with_capacity(64);
    let (mut tap_more, mut udp_more, mut udp_writable) = (true, true, true);
    loop {
        // Spin again at once only if there is work we are allowed to do: TAP
        // data waits while the socket is full (the writable event wakes us).
        let timeout = if udp_more || (tap_more && udp_writable) {
            Some(Duration::ZERO)
        } else {
            node.poll_timeout().map(|t| t.saturating_since(now()))
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
                t if ctl.owns(t) => {
                    if ev.is_readable() {
                        if let control::Request::Line(slot, line) = ctl.readable(t, poll.registry())
                        {
                            let reply = control_request(&mut node, &line, &info, now());
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
            udp_writable = flush(&tap, &mut udp, &mut node)?;
        }
        let t = now();
        if node.poll_timeout().is_some_and(|d| d <= t) {
            node.handle_timeout(t);
        }
        udp_writable = flush(&tap, &mut udp, &mut node)?;
    }
}

/// Answers one control request line (see `crate::control`).
fn control_request(node: &mut Node, line: &str, info: &DaemonInfo, now: Instant) -> String {
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
            let result = nonce
                .parse::<u64>()
                .ok()
                .and_then(|n| node.overlay()?.echo_results.get(&n).copied());
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

/// Writes frames to the TAP and datagrams to the socket. Returns whether
/// the socket took everything.
fn flush(tap: &tap::Tap, udp: &mut udp::Udp, node: &mut Node) -> Result<bool, String> {
    while let Some(f) = node.poll_frame() {
        if tap.write(node.pool().data(&f)).is_err() {
            node.count_drop(DropReason::QueueFull);
        }
        node.pool_mut().free(f);
    }
    udp.flush(node).map_err(|e| format!("UDP send failed: {e}"))
}
