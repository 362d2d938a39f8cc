//! The sans-IO node: the whole protocol, driven by its caller.
//!
//! Inputs are `handle_*(now, …)` calls: a frame read from the TAP, a datagram
//! received from an endpoint, or a timer. Outputs are drained with `poll_*`
//! after every input: datagrams to send ([`Node::poll_transmit`]), frames to
//! write to the TAP ([`Node::poll_frame`]) and the next deadline
//! ([`Node::poll_timeout`]). The node owns the buffer pool; handles travel
//! through it and back to [`Pool::free`] when the caller has done the I/O.
//! No socket, file or clock is touched here, which is why the same node runs
//! in the mio shell, in the benchmarks and in the simulator.

mod attempts;
pub mod config;
pub mod cookies;
mod failover;
mod handshakes;
pub mod limiter;
mod links;
pub mod nat;
pub mod ondemand;
pub mod peer;
pub(crate) mod relay;
pub mod stats;
pub mod status;
mod switch;
pub mod trust;
mod underlay;
pub mod vpn;
mod wakeups;
pub mod watch;

use crate::buf::{PacketBuf, Pool};
use crate::crypto::session::OpenError;
use crate::crypto::{Identity, NodeKey};
use crate::overlay::Overlay;
use crate::rand::SeededRng;
use crate::time::Instant;
pub use crate::wire::endpoint::Endpoint;
use crate::wire::{self, control, data, ethernet, MsgType, PeekError};
pub use config::{NodeConfig, PeerConfig, Timers};
use handshakes::Boot;
use limiter::HandshakeLimiter;
use peer::{Peer, Pending, Slot};
pub use stats::{DropReason, Stats};
use std::collections::{BTreeMap, VecDeque};
use switch::MacTable;
use wakeups::Wakeups;

pub use crate::ids::PeerIdx;

/// How a handshake reached us, or goes out: to an underlay endpoint, or
/// routed over the overlay to (from) a ring address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Path {
    Direct(Endpoint),
    Overlay(crate::overlay::Addr),
}

/// What a local session index (or pending handshake) belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Peer(PeerIdx),
    /// A handshake to a bootstrap endpoint whose key we do not know yet.
    Boot(u16),
    /// A handshake init sent inside a connect-to-me request (slot).
    Ctm(u8),
}

/// A datagram to send.
#[derive(Debug)]
pub struct Transmit {
    pub dst: Endpoint,
    pub buf: PacketBuf,
}

/// How long a peer must have sent nothing valid (and had no handshake)
/// before messages from it on an unknown session start a new handshake.
const RESYNC_QUIET: std::time::Duration = std::time::Duration::from_millis(500);

/// Extra rounds of peer timers in one `handle_timeout` (see there).
const TIMER_ROUNDS: usize = 3;

/// Output queue bound: a full batch in each direction with room to spare.
/// The shell drains after every input, so a full queue means it is stuck.
pub const MAX_QUEUED: usize = 1024;

pub struct Node {
    identity: Identity,
    timers: Timers,
    pool: Pool,
    peers: Vec<Peer>,
    /// Links up (peers with `linked`), so "any link?" costs nothing.
    linked_count: usize,
    /// Peer deadlines, so timers visit only the peers that are due.
    wakeups: Wakeups,
    /// When a bootstrap needs a handshake next, recomputed after an input
    /// that may change it (`boots_dirty`: a link or a bootstrap handshake
    /// changed), so that data packets never pay for it.
    boot_wake: Option<Instant>,
    boots_dirty: bool,
    by_key: BTreeMap<NodeKey, PeerIdx>,
    /// Our session (and pending handshake) indices → peer or bootstrap.
    by_index: BTreeMap<u32, Target>,
    boots: Vec<Boot>,
    /// Handshakes riding in connect-to-me requests, and their purposes.
    ctm_inits: [Option<Pending>; handshakes::CTM_INITS],
    ctm_ids: [crate::overlay::CtmId; handshakes::CTM_INITS],
    overlay: Option<Overlay>,
    /// The VPN over the overlay (overlay mode with a virtual network).
    vpn: Option<vpn::VpnState>,
    /// Our endpoints as configured (bound addresses, TCP listener) …
    local_endpoints: Vec<Endpoint>,
    /// Prefixes the underlay never uses: the VPN's own (see `underlay`).
    underlay_guard: crate::net::PrefixSet,
    /// … and as peers see them.
    nat: nat::NatObserver,
    /// Try TCP endpoints when UDP gets no answer.
    tcp_fallback: bool,
    /// Certificate mode (see `NodeConfig::trust`).
    trust: Option<crate::crypto::cert::Trust>,
    /// A revocation list arriving in parts (see `trust`).
    crl_in: Vec<trust::Reassembly>,
    my_cert: Option<Vec<u8>>,
    /// Links crossed by the routed message being received, and the relay
    /// (the link) it came through if it came through a tunnel.
    routed_hops: u8,
    routed_tunnel: Option<PeerIdx>,
    /// Tests: what this node saw of the tunnel messages it relayed (after
    /// its link's decryption), and whether to corrupt them.
    #[cfg(test)]
    relay_seen: Vec<Vec<u8>>,
    #[cfg(test)]
    relay_tamper: bool,
    /// What we spend relaying others' tunnels.
    relay_budget: relay::RelayBudget,
    /// Finished DHT operations for the caller (see `take_dht_results`).
    dht_results: VecDeque<crate::overlay::dht::client::Event>,
    /// Accept any key (an open overlay until certificates arrive).
    trust_any: bool,
    max_peers: usize,
    /// Bytes per second of others' routed data one link may have us
    /// forward (`links::TRANSIT_BYTES_PER_S`; tests set less).
    transit_rate: u32,
    /// VPN packets within 2 s that bring an on-demand link (0: off).
    ondemand_threshold: u16,
    macs: MacTable,
    transmits: VecDeque<Transmit>,
    frames: VecDeque<PacketBuf>,
    stats: Stats,
    limiter: HandshakeLimiter,
    /// Handshakes to addresses only the overlay named (see `Probes`).
    probes: limiter::Probes,
    cookies: cookies::Cookies,
    rng: SeededRng,
    sysrand: ring::rand::SystemRandom,
    wall_origin_us: u64,
    last_timestamp: u64,
}

impl Node {
    pub fn new(identity: Identity, cfg: NodeConfig, now: Instant) -> Node {
        let mut by_key = BTreeMap::new();
        let mut peers = Vec::new();
        for pc in cfg.peers.iter().take(usize::from(u16::MAX)) {
            if pc.key == identity.public() || by_key.contains_key(&pc.key) {
                continue;
            }
            by_key.insert(pc.key, PeerIdx(peers.len() as u16));
            peers.push(Peer::new(pc));
        }
        let overlay = cfg.overlay.clone().map(|oc| {
            let mut ov = Overlay::new(
                identity.public(),
                &cfg.endpoints,
                oc,
                cfg.rng_seed ^ 0x6f76,
                now,
            );
            ov.set_wall_origin(cfg.wall_origin_us);
            // Per start (the seed) and per node (the private key).
            let mut label = b"ringvpn request ids".to_vec();
            label.extend_from_slice(&cfg.rng_seed.to_be_bytes());
            ov.set_id_key(identity.derive_secret(&label));
            ov
        });
        let boots = cfg
            .bootstrap
            .iter()
            .map(|&endpoint| Boot::new(Endpoint::udp(endpoint), now, None))
            .collect();
        let public = identity.public();
        let underlay_guard = underlay::guard(&cfg);
        let mut node = Node {
            identity,
            timers: cfg.timers,
            linked_count: 0,
            wakeups: Wakeups::default(),
            boot_wake: None,
            boots_dirty: true,
            boots,
            ctm_inits: Default::default(),
            ctm_ids: Default::default(),
            vpn: cfg
                .vpn
                .clone()
                .filter(|_| overlay.is_some())
                .map(|v| vpn::VpnState::new(v, &public, now, !cfg.bootstrap.is_empty())),
            overlay,
            dht_results: VecDeque::new(),
            local_endpoints: Vec::new(),
            underlay_guard,
            nat: nat::NatObserver::default(),
            tcp_fallback: cfg.tcp_fallback,
            trust: cfg.trust,
            crl_in: Vec::new(),
            my_cert: cfg.cert,
            routed_hops: 0,
            routed_tunnel: None,
            #[cfg(test)]
            relay_seen: Vec::new(),
            #[cfg(test)]
            relay_tamper: false,
            relay_budget: relay::RelayBudget::new(
                cfg.overlay.as_ref().map_or(0, |o| o.relay_kib),
                now,
            ),
            trust_any: cfg.trust_any,
            max_peers: cfg.max_peers,
            transit_rate: links::TRANSIT_BYTES_PER_S,
            ondemand_threshold: cfg.ondemand_threshold,
            pool: Pool::new(cfg.pool_slots),
            peers,
            by_key,
            by_index: BTreeMap::new(),
            macs: MacTable::default(),
            // Every queued item holds a pool buffer: never more than the pool.
            transmits: VecDeque::with_capacity(MAX_QUEUED.min(cfg.pool_slots as usize)),
            frames: VecDeque::with_capacity(MAX_QUEUED.min(cfg.pool_slots as usize)),
            stats: Stats::default(),
            limiter: HandshakeLimiter::new(now),
            probes: limiter::Probes::default(),
            cookies: cookies::Cookies::new(&ring::rand::SystemRandom::new(), now),
            rng: SeededRng::new(cfg.rng_seed),
            sysrand: ring::rand::SystemRandom::new(),
            wall_origin_us: cfg.wall_origin_us,
            last_timestamp: 0,
        };
        for i in 0..node.peers.len() {
            node.touch(PeerIdx(i as u16));
        }
        node.local_endpoints = node.outside_guard(&cfg.endpoints);
        node.rearm();
        node.update_advertised();
        node.vpn_start();
        node
    }

    /// Peer `p`'s timers may be due sooner than before (see `wakeups`).
    /// Its state changed, so the bootstraps' may have too (they look at
    /// which peers are linked, and where).
    fn touch(&mut self, p: PeerIdx) {
        self.wakeups.touch(p);
        self.boots_dirty = true;
    }

    /// What we advertise: our bound endpoints, the reflexive ones peers
    /// report, then TCP; none inside the underlay guard.
    fn advertised(&self) -> Vec<Endpoint> {
        let local = self.local_udp();
        let mut eps: Vec<Endpoint> = self
            .local_endpoints
            .iter()
            .filter(|e| !e.tcp)
            .copied()
            .collect();
        for r in self.nat.reflexive(&local) {
            eps.push(Endpoint::udp(r));
        }
        eps.extend(self.local_endpoints.iter().filter(|e| e.tcp).copied());
        eps.retain(|e| self.underlay_ok(e));
        eps
    }

    /// Tells the overlay what to advertise (and whether we look NATed).
    pub(super) fn update_advertised(&mut self) {
        let eps = self.advertised();
        let mapping = self.nat.mapping(&self.local_udp());
        if let Some(ov) = self.overlay.as_mut() {
            ov.set_endpoints(&eps);
            ov.set_behind_nat(mapping != nat::NatMapping::None);
            // Behind a symmetric NAT a stranger cannot link to us to use
            // us as a relay: we do not offer.
            ov.set_relay_offered(mapping != nat::NatMapping::EndpointDependent);
        }
    }

    /// Our reflexive endpoints changed: advertise the new ones. If our NAT
    /// rebound, we moved (see `underlay::moved`).
    pub(super) fn endpoints_changed(&mut self, now: Instant) {
        self.update_advertised();
        if self.nat.take_rebound() {
            self.moved(now);
        }
    }

    /// A direct link went silent while we sent on it: our own NAT may have
    /// lost its mappings. Pings to every other direct link bring pongs
    /// that say where they see us now.
    fn ping_direct_links(&mut self, now: Instant, except: PeerIdx) {
        for i in 0..self.peers.len() {
            let p = &self.peers[i];
            let direct = p.linked && !p.routed && p.relay.is_none() && p.sessions.current.is_some();
            if direct && i != usize::from(except.0) {
                self.send_ping(now, PeerIdx(i as u16));
                self.wakeups.touch(PeerIdx(i as u16));
            }
        }
    }

    /// What peers' answers say about the NAT in front of us.
    pub fn nat_mapping(&self) -> nat::NatMapping {
        self.nat.mapping(&self.local_udp())
    }

    /// The UDP addresses we bound (what "no NAT" looks like to peers).
    fn local_udp(&self) -> Vec<std::net::SocketAddr> {
        self.local_endpoints
            .iter()
            .filter(|e| !e.tcp)
            .map(|e| e.addr)
            .collect()
    }

    /// Re-arms the touched peers and the bootstrap timer. Runs at the end
    /// of every input, so `poll_timeout` is a lookup.
    fn rearm(&mut self) {
        let (peers, timers) = (&self.peers, &self.timers);
        self.wakeups
            .rearm(|p| peers[usize::from(p.0)].deadline(timers));
        #[cfg(debug_assertions)]
        self.wakeups
            .check(|p| peers[usize::from(p.0)].deadline(timers), peers.len());
        if self.boots_dirty {
            self.boots_dirty = false;
            self.boot_wake = self.boot_deadline();
        }
        debug_assert_eq!(
            self.boot_wake,
            self.boot_deadline(),
            "bootstrap state changed without boots_dirty: linked {} thin {:?} boots {:?}",
            self.linked_count,
            self.overlay.as_ref().map(|o| o.table().len()),
            self.boots
                .iter()
                .map(|b| (
                    b.endpoint,
                    b.peer,
                    b.learned.is_some(),
                    b.pending.is_some(),
                    b.next_try
                ))
                .collect::<Vec<_>>()
        );
    }

    pub fn public_key(&self) -> NodeKey {
        self.identity.public()
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn pool_mut(&mut self) -> &mut Pool {
        &mut self.pool
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn timers(&self) -> &Timers {
        &self.timers
    }

    /// Counts a drop the shell observed (e.g. the pool was empty on read).
    pub fn count_drop(&mut self, reason: DropReason) {
        self.stats.count(reason);
    }

    fn drop_buf(&mut self, buf: PacketBuf, reason: DropReason) {
        self.stats.count(reason);
        self.pool.free(buf);
    }

    // ----- outputs -----

    /// Next datagram to send. Drain after every `handle_*` call.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Puts back a datagram the shell could not send yet (socket full), to
    /// be sent first next time.
    pub fn unpoll_transmit(&mut self, t: Transmit) {
        self.transmits.push_front(t);
    }

    /// Datagrams waiting to be sent.
    pub fn transmits_queued(&self) -> usize {
        self.transmits.len()
    }

    /// Next frame to write to the TAP. Drain after every `handle_*` call.
    pub fn poll_frame(&mut self) -> Option<PacketBuf> {
        self.frames.pop_front()
    }

    /// When [`Node::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let overlay = self.overlay.as_ref().map(Overlay::poll_timeout);
        let peers = self.wakeups.next();
        let t = crate::time::earliest(crate::time::earliest(peers, overlay), self.boot_wake);
        crate::time::earliest(t, self.vpn_deadline())
    }

    fn queue_transmit(&mut self, dst: Endpoint, buf: PacketBuf) {
        if !self.underlay_ok(&dst) {
            self.drop_buf(buf, DropReason::UnderlayInVpn);
        } else if self.transmits.len() >= MAX_QUEUED {
            self.drop_buf(buf, DropReason::QueueFull);
        } else {
            self.transmits.push_back(Transmit { dst, buf });
        }
    }

    // ----- inputs: TAP side -----

    /// A frame read from the TAP device.
    pub fn handle_frame(&mut self, now: Instant, buf: PacketBuf) {
        self.frame_in(now, buf);
        self.rearm();
    }

    fn frame_in(&mut self, now: Instant, buf: PacketBuf) {
        if self.vpn.is_some() {
            return self.vpn_frame_in(now, buf);
        }
        let dst = match ethernet::Frame::new_checked(self.pool.data(&buf)) {
            Ok(f) => f.dst(),
            Err(_) => return self.drop_buf(buf, DropReason::BadFrame),
        };
        if let Some(p) = self.macs.lookup(dst, now) {
            return self.send_to_peer(now, p, MsgType::Frame, buf);
        }
        // Broadcast, multicast or unknown unicast: flood to every peer.
        let n = self.peers.len();
        if n == 0 {
            return self.drop_buf(buf, DropReason::NoEndpoint);
        }
        for i in 1..n {
            match self.pool.duplicate(&buf) {
                Some(copy) => self.send_to_peer(now, PeerIdx(i as u16), MsgType::Frame, copy),
                None => self.stats.count(DropReason::PoolEmpty),
            }
        }
        self.send_to_peer(now, PeerIdx(0), MsgType::Frame, buf);
    }

    /// Seals `buf` for `p` and queues it (straight to its endpoint, or
    /// routed over the overlay for a routed peer), or parks it until a
    /// session exists.
    fn send_to_peer(&mut self, now: Instant, p: PeerIdx, ty: MsgType, mut buf: PacketBuf) {
        let peer = &mut self.peers[usize::from(p.0)];
        // A tunnel goes through its relay; a routed peer over the overlay
        // (unless we have a link with it: the first hop would be itself);
        // anything else straight to its endpoint.
        enum Via {
            Endpoint(Endpoint),
            Overlay,
            Relay(PeerIdx),
        }
        // With the overlay, an endpoint nothing has come from yet (a punch
        // candidate) is not used: the ring carries the traffic meanwhile;
        // nor is a direct path that stopped answering (`watch`): its data
        // takes the ring while probes (link control) still go straight.
        let unproven = self.overlay.is_some()
            && peer.relay.is_none()
            && peer.endpoint.is_some()
            && peer.proven != peer.endpoint;
        let detour = ty != MsgType::Control && peer.watch.is_suspect() && self.overlay.is_some();
        let (relay, detour) = match peer.relay {
            // A suspect or unproven tunnel: data takes the overlay, probes
            // (link control) the tunnel.
            Some(_) if detour || (ty != MsgType::Control && !peer.relay_proven) => (None, true),
            r => (r, detour),
        };
        // A peer with no endpoint yet (a session made over the ring while
        // a punch is still looking for one) is reached over the ring too.
        let no_endpoint = peer.endpoint.is_none() && self.overlay.is_some();
        let via = match (
            relay,
            (peer.routed && !peer.linked) || unproven || detour || no_endpoint,
            peer.endpoint,
        ) {
            (Some(r), _, _) => Via::Relay(r),
            (None, true, _) => Via::Overlay,
            (None, false, Some(e)) => Via::Endpoint(e),
            (None, false, None) => return self.drop_buf(buf, DropReason::NoEndpoint),
        };
        if ty != MsgType::Control {
            peer.last_tx = Some(now);
        }
        // Traffic (ours, or routed data we forward) and pings expect the
        // path to answer; ring upkeep (one-way gossip) does not, and would
        // only cost probes on quiet links.
        let expects = ty != MsgType::Control
            || matches!(
                self.pool.data(&buf).first(),
                Some(&(control::KIND_PING | control::KIND_ROUTED_DATA))
            );
        let watched = matches!(via, Via::Endpoint(_) | Via::Relay(_));
        if watched && expects && peer.watch.sent(now) {
            self.wakeups.touch(p);
        }
        let Some(session) = peer.sessions.current.as_mut() else {
            if ty == MsgType::Control {
                // Link control is only meaningful on the session it was made for.
                return self.drop_buf(buf, DropReason::NoSession);
            }
            if peer.waiting.len() >= peer::MAX_WAITING {
                let old = peer.waiting.remove(0);
                self.drop_buf(old, DropReason::NoSession);
            }
            self.peers[usize::from(p.0)].waiting.push(buf);
            if self.peers[usize::from(p.0)].pending.is_none() {
                self.start_handshake(now, Target::Peer(p));
            }
            return;
        };
        let Some(counter) = session.next_counter() else {
            return self.drop_buf(buf, DropReason::NoSession);
        };
        let payload_len = buf.len();
        let Some(hdr) = self.pool.prepend(&mut buf, data::HEADER_LEN) else {
            return self.drop_buf(buf, DropReason::BadFrame);
        };
        data::emit_header(hdr, ty, session.remote_index, counter);
        let bytes = self.pool.data_mut(&buf);
        let (hdr, payload) = bytes.split_at_mut(data::HEADER_LEN);
        let tag = session.seal(counter, hdr, &mut payload[..payload_len]);
        let Some(t) = self.pool.append(&mut buf, data::TAG_LEN) else {
            return self.drop_buf(buf, DropReason::BadFrame);
        };
        t.copy_from_slice(&tag);
        let rekey = session.sent() >= self.timers.rekey_after_messages;
        peer.tx_bytes += payload_len as u64;
        peer.tx_packets += 1;
        let pending = peer.pending.is_some();
        let to = peer.addr;
        match via {
            Via::Endpoint(dst) => self.queue_transmit(dst, buf),
            Via::Overlay => self.send_routed_data(now, to, buf, None),
            Via::Relay(r) => self.send_routed_data(now, to, buf, Some(r)),
        }
        if rekey && !pending {
            self.start_handshake(now, Target::Peer(p));
        }
    }

    // ----- inputs: network side -----

    /// A datagram received from `from`.
    pub fn handle_datagram(&mut self, now: Instant, from: impl Into<Endpoint>, buf: PacketBuf) {
        self.datagram_in(now, from.into(), buf);
        self.rearm();
    }

    fn datagram_in(&mut self, now: Instant, from: Endpoint, buf: PacketBuf) {
        if !self.underlay_ok(&from) {
            // It came through our own VPN: never a path (see `underlay`).
            return self.drop_buf(buf, DropReason::UnderlayInVpn);
        }
        match wire::peek(self.pool.data(&buf)) {
            Err(PeekError::Truncated) => self.drop_buf(buf, DropReason::BadLength),
            Err(PeekError::Version) => self.drop_buf(buf, DropReason::BadVersion),
            Err(PeekError::Type) => self.drop_buf(buf, DropReason::BadType),
            Ok(MsgType::HandshakeInit) => self.handle_init(now, Path::Direct(from), buf),
            Ok(MsgType::HandshakeResp) => self.handle_resp(now, Path::Direct(from), buf),
            Ok(MsgType::CookieReply) => self.handle_cookie_reply(now, from, buf),
            Ok(MsgType::Frame | MsgType::Control | MsgType::Packet) => {
                self.handle_sealed(now, Some(from), buf)
            }
        }
    }

    /// A sealed message, from an endpoint or (`from` = `None`) routed to
    /// us over the overlay.
    fn handle_sealed(&mut self, now: Instant, from: Option<Endpoint>, mut buf: PacketBuf) {
        let (receiver, counter, ty) = match data::Packet::new_checked(self.pool.data(&buf)) {
            Ok(pkt) => (pkt.receiver(), pkt.counter(), pkt.msg_type()),
            Err(_) => return self.drop_buf(buf, DropReason::BadLength),
        };
        let Some(&Target::Peer(p)) = self.by_index.get(&receiver) else {
            self.resync_from(now, from);
            return self.drop_buf(buf, DropReason::UnknownSession);
        };
        let peer = &mut self.peers[usize::from(p.0)];
        let Some((slot, session)) = peer.sessions.find_mut(receiver) else {
            return self.drop_buf(buf, DropReason::UnknownSession);
        };
        let bytes = self.pool.data_mut(&buf);
        let (hdr, body) = bytes.split_at_mut(data::HEADER_LEN);
        if let Err(e) = session.open(now, counter, hdr, body) {
            let reason = match e {
                OpenError::Replay => DropReason::Replay,
                OpenError::Auth => DropReason::AuthFailure,
            };
            return self.drop_buf(buf, reason);
        }
        let promoted = matches!(slot, Slot::Next | Slot::NextAlt);
        if promoted {
            self.wakeups.touch(p);
            if let Some(old) = peer.sessions.promote(slot) {
                self.by_index.remove(&old);
            }
            // A session answered for an init from an older clock, now used
            // by the key's holder: its time is the peer's time.
            if let Some(a) = peer
                .answer
                .as_mut()
                .filter(|a| a.provisional == Some(receiver))
            {
                peer.last_init_timestamp = a.timestamp;
                a.provisional = None;
            }

            // The first message on a session we answered comes one round
            // trip after our answer: the responder's RTT sample.
            if let (None, Some(cur)) = (peer.rtt, &peer.sessions.current) {
                peer.rtt = Some(now.saturating_since(cur.created));
            }
        }
        peer.last_rx = Some(now);
        peer.rx_hops = if from.is_some() { 1 } else { self.routed_hops };
        // What came over the path we send on (straight, or through the
        // tunnel's relay) shows it works; the peer's data coming over the
        // overlay instead says it may not (see `watch`).
        // Through our tunnel's relay, that is: the other side may still
        // send through another (a relay being changed).
        let tunnelled =
            from.is_none() && self.routed_tunnel.is_some() && self.routed_tunnel == peer.relay;
        if tunnelled {
            peer.watch.heard(now);
            peer.relay_proven = true;
            peer.relay_chose = None;
        }
        let detoured = from.is_none()
            && !tunnelled
            && ty != MsgType::Control as u8
            && peer.linked
            && peer.watched_path()
            && peer.watch.peer_detoured(now);
        let mut direct_now = false;
        if let Some(from) = from {
            // The first authenticated packet straight from this endpoint:
            // the path is proven, and the link can be up.
            direct_now |= peer.proven != Some(from) && !peer.linked;
            peer.proven = Some(from);
            peer.watch.heard(now);
            if peer.endpoint != Some(from) {
                // Authenticated traffic from a new address: the peer moved.
                log::info!("peer {} moved to {}", peer.name, from);
                peer.endpoint = Some(from);
                self.boots_dirty = true;
                if let (true, Some(ov)) = (peer.linked, self.overlay.as_mut()) {
                    ov.on_peer_moved(p, from);
                }
            }
            // It reached us directly: a direct path exists, whatever the
            // session was made over (a routed or tunnelled peer moves to it).
            if peer.routed || peer.relay.is_some() {
                peer.routed = false;
                peer.punching = false;
                peer.watch.reset();
                direct_now = true;
            }
        }
        self.pool.trim_front(&mut buf, data::HEADER_LEN);
        self.pool.trim_back(&mut buf, data::TAG_LEN);
        peer.rx_bytes += buf.len() as u64;
        peer.rx_packets += 1;
        if detoured {
            // The peer sends over the overlay what could come straight:
            // does our way still reach it? (See `watch`.)
            self.wakeups.touch(p);
            self.send_ping(now, p);
        }
        if direct_now {
            // The path changed: its watch (and other deadlines) with it.
            self.wakeups.touch(p);
            self.end_tunnel(p);
        }
        if promoted || direct_now {
            self.release_waiting(now, p);
            self.link_up(now, p);
        }
        if ty == MsgType::Control as u8 {
            return self.handle_control(now, p, buf);
        }
        if buf.is_empty() {
            return self.pool.free(buf); // keepalive
        }
        if ty == MsgType::Packet as u8 {
            return self.packet_from_peer(now, p, buf);
        }
        if self.vpn.is_some() {
            // Ethernet frames are the static-peer switch's; a VPN member
            // carries IP packets.
            return self.drop_buf(buf, DropReason::BadType);
        }
        let src = match ethernet::Frame::new_checked(self.pool.data(&buf)) {
            Ok(f) => f.src(),
            Err(_) => return self.drop_buf(buf, DropReason::BadFrame),
        };
        self.macs.learn(src, p, now);
        if self.frames.len() >= MAX_QUEUED {
            return self.drop_buf(buf, DropReason::QueueFull);
        }
        self.frames.push_back(buf);
    }

    /// A sealed message for a session we do not have, from `from`. If a
    /// peer of ours sends from there and nothing valid has come from it for
    /// a while, it is using a session we dropped (crossed handshakes can
    /// evict one side's): a fresh handshake puts the two on one session
    /// again, instead of the peer's traffic vanishing until a timeout. The
    /// bytes are unauthenticated, so this only ever starts one handshake
    /// (as a timer would), and never while the peer talks to us validly.
    fn resync_from(&mut self, now: Instant, from: Option<Endpoint>) {
        let Some(from) = from else {
            return;
        };
        let Some(i) = self.peers.iter().position(|q| {
            q.endpoint == Some(from)
                && q.pending.is_none()
                && q.sessions.current.is_some()
                && q.last_rx
                    .map_or(true, |t| now.saturating_since(t) >= RESYNC_QUIET)
                && q.last_handshake
                    .map_or(true, |t| now.saturating_since(t) >= RESYNC_QUIET)
        }) else {
            return;
        };
        log::info!(
            "{} sends on a session we do not have: handshaking again",
            self.peers[i].name
        );
        self.start_handshake(now, Target::Peer(PeerIdx(i as u16)));
    }

    fn handle_control(&mut self, now: Instant, p: PeerIdx, mut buf: PacketBuf) {
        let kind = self.pool.data(&buf).first().copied();
        if kind == Some(control::KIND_ENDPOINTS) {
            return self.endpoints_from(now, p, buf);
        }
        if kind == Some(control::KIND_REVOCATION_PART) {
            let msg = self.pool.data(&buf).to_vec();
            self.pool.free(buf);
            return self.revocations_from(now, p, &msg);
        }
        if kind == Some(control::KIND_REVOCATION_SERIALS) {
            let msg = self.pool.data(&buf).to_vec();
            self.pool.free(buf);
            return self.serials_from(now, p, &msg);
        }
        if !matches!(kind, Some(control::KIND_PING | control::KIND_PONG)) {
            if let Some(buf) = self.handle_overlay_control(now, p, buf) {
                self.drop_buf(buf, DropReason::BadType);
            }
            return;
        }
        let Ok(ping) = control::Ping::parse(self.pool.data(&buf)) else {
            return self.drop_buf(buf, DropReason::BadLength);
        };
        let stamp = ping.stamp;
        // Where the message came from, when it came straight over UDP.
        let peer = &self.peers[usize::from(p.0)];
        let direct_udp = peer.endpoint.filter(|e| peer.rx_hops == 1 && !e.tcp);
        match ping.pong {
            false => {
                control::ping_to_pong(self.pool.data_mut(&buf));
                if let Some(from) = direct_udp {
                    if let Some(out) = self.pool.append(&mut buf, wire::endpoint::LEN) {
                        control::emit_observed(&from.addr, out);
                    }
                }
                self.send_to_peer(now, p, MsgType::Control, buf);
            }
            true => {
                let observed = ping.observed;
                self.pool.free(buf);
                let peer = &self.peers[usize::from(p.0)];
                if peer.rx_hops == 1 || (peer.relay.is_some() && self.routed_tunnel == peer.relay) {
                    self.path_answered(now, p);
                }
                if let (Some(seen), Some(peer_ep)) = (observed, direct_udp) {
                    if self.nat.observe(peer_ep.addr, seen, now) {
                        self.endpoints_changed(now);
                    }
                }
                if stamp <= now.as_micros() {
                    let rtt = now.saturating_since(Instant::from_micros(stamp));
                    let first = self.peers[usize::from(p.0)]
                        .rtt_pinged
                        .replace(rtt)
                        .is_none();
                    self.peers[usize::from(p.0)].rtt = Some(rtt);
                    // The watch's bounds scale with the RTT.
                    self.wakeups.touch(p);
                    if first {
                        self.relay_rtt_known(now, p);
                    }
                }
            }
        }
    }

    fn send_ping(&mut self, now: Instant, p: PeerIdx) {
        self.peers[usize::from(p.0)].last_ping = Some(now);
        match self.pool.alloc_with(&control::Ping::ping(now.as_micros())) {
            Some(buf) => self.send_to_peer(now, p, MsgType::Control, buf),
            None => self.stats.count(DropReason::PoolEmpty),
        }
    }

    // ----- timers -----

    /// Runs every timer that is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.due_peer_timers(now);
        self.run_bootstraps(now);
        if let Some(ov) = self.overlay.as_mut() {
            ov.handle_timeout(now);
        }
        self.vpn_timers(now);
        self.run_overlay_actions(now);
        self.boots_dirty = true;
        self.rearm();
        // A timer can change another peer (a relay given up moves the
        // tunnels through it): what that made due runs now, not after a
        // wake-up of its own. Bounded: each round only runs what the last
        // one changed.
        for _ in 0..TIMER_ROUNDS {
            if !self.wakeups.next().is_some_and(|t| t <= now) {
                break;
            }
            self.due_peer_timers(now);
            self.run_overlay_actions(now);
            self.rearm();
        }
    }

    fn due_peer_timers(&mut self, now: Instant) {
        while let Some(p) = self.wakeups.pop_due(now) {
            self.peer_timers(now, p);
            self.touch(p);
        }
    }

    /// One peer's timers: session expiry, the end of a closing grace, a
    /// silent link, handshake retries and rekeys, pings.
    fn peer_timers(&mut self, now: Instant, p: PeerIdx) {
        let i = usize::from(p.0);
        let timers = &self.timers;
        let by_index = &mut self.by_index;
        let peer = &mut self.peers[i];
        peer.sessions.expire(now, timers.reject_after_time, |idx| {
            by_index.remove(&idx);
        });
        if peer.closing_since.is_some() {
            self.end_closing(now, p);
        }
        let timers = &self.timers;
        let by_index = &mut self.by_index;
        let peer = &mut self.peers[i];
        let mut relink = false;
        if peer.is_silent(now, timers) {
            log::info!("link to {} silent, re-handshaking", peer.name);
            peer.sessions.clear(|idx| {
                by_index.remove(&idx);
            });
            // Our traffic needs it: a NAT on the way may have lost its
            // mapping, and only a fresh exchange of candidates over the
            // overlay (both sides punching again) finds the new one.
            relink = peer.ondemand
                || peer
                    .last_tx
                    .is_some_and(|t| now.saturating_since(t) < timers.dead_after);
        }
        self.link_down(now, p);
        if relink && self.overlay.is_some() {
            self.ping_direct_links(now, p);
            self.peers[i].ondemand_asked = None;
            self.ask_ondemand(now, p);
        }
        self.watch_timers(now, p);
        // Tunnel and on-demand steps first: they can change what the
        // handshake below is for.
        self.tunnel_timers(now, p);
        self.ondemand_timers(now, p);
        let peer = &self.peers[i];
        match &peer.pending {
            Some(pending) if now >= pending.next_retry => {
                self.start_handshake(now, Target::Peer(p))
            }
            Some(_) => {}
            None if peer.needs_handshake(now, &self.timers) => {
                self.start_handshake(now, Target::Peer(p))
            }
            None => {}
        }
        if self.peers[i]
            .ping_due(&self.timers)
            .is_some_and(|t| now >= t)
        {
            self.send_ping(now, p);
        }
        self.tell_serials(now, p);
        if self.peers[i].idle_at().is_some_and(|t| now >= t) {
            // A routed session the VPN no longer uses: no more rekeys.
            self.peers[i].wanted = false;
        }
    }

    /// One peer's path state, for diagnosing the simulator's pairs.
    pub fn debug_peer(&self, key: &NodeKey) -> String {
        let Some(&p) = self.by_key.get(key) else {
            return "not a peer".into();
        };
        let q = &self.peers[usize::from(p.0)];
        format!(
            "linked {} routed {} relay {:?} endpoint {:?} proven {:?} punching {} tunnel_wanted {} pending {} current {} watch {:?} last_rx {:?} last_tx {:?}",
            q.linked,
            q.routed,
            q.relay.map(|r| self.peers[usize::from(r.0)].name.clone()),
            q.endpoint,
            q.proven,
            q.punching,
            q.tunnel_wanted,
            q.pending.is_some(),
            q.sessions.current.is_some(),
            q.watch,
            q.last_rx,
            q.last_tx
        )
    }

    /// Which timer is due when (for diagnosing a timer that never clears).
    pub fn debug_deadlines(&self, now: Instant) -> String {
        let mut out = format!(
            "now {now:?} overlay {:?}\n",
            self.overlay.as_ref().map(Overlay::poll_timeout)
        );
        for (i, p) in self.peers.iter().enumerate() {
            if let Some(d) = p.deadline(&self.timers).filter(|d| *d <= now) {
                out += &format!(
                    "peer {i} {} due {d:?} ping_due {:?} last_rx {:?} last_ping {:?} created {:?}: wanted {} linked {} dynamic {} pending {} current {} endpoint {:?} relay {:?} tunnel_wanted {} relay_asked {:?} direct_retry {:?} ondemand {} punching {}\n",
                    p.name,
                    p.ping_due(&self.timers),
                    p.last_rx,
                    p.last_ping,
                    p.sessions.current.as_ref().map(|c| c.created),
                    p.wanted,
                    p.linked,
                    p.dynamic,
                    p.pending.is_some(),
                    p.sessions.current.is_some(),
                    p.endpoint,
                    p.relay,
                    p.tunnel_wanted,
                    p.relay_asked,
                    p.direct_retry,
                    p.ondemand,
                    p.punching
                );
            }
        }
        for b in 0..self.boots.len() {
            out += &format!(
                "boot {b} due {:?} peer {:?}\n",
                self.boot_due(b, self.boot_context().0, self.boot_context().1),
                self.boots[b].peer
            );
        }
        out
    }

    /// Whether any link is up.
    fn any_linked(&self) -> bool {
        self.linked_count > 0
    }

    /// No links, or too few to have a place in a ring: we may be on an
    /// island (say, joined through a node that had itself lost the ring).
    fn cut_off(&self) -> bool {
        !self.any_linked() || self.overlay.as_ref().is_some_and(|ov| ov.is_thin())
    }

    /// When bootstrap `b` needs a handshake next, if at all. Configured
    /// endpoints are tried until `LEAVES` of them are linked; one that
    /// failed is retried only while we have no link at all. Learned ones
    /// are tried only while we are cut off. `leaves` and `cut_off` are the
    /// node-wide facts, computed once by the caller.
    fn boot_due(&self, b: usize, leaves: usize, cut_off: bool) -> Option<Instant> {
        let boot = &self.boots[b];
        if let Some(pending) = &boot.pending {
            return Some(pending.next_retry);
        }
        if boot
            .peer
            .is_some_and(|p| self.peers[usize::from(p.0)].linked)
        {
            return None;
        }
        if boot.learned.is_some() {
            let usable = cut_off
                && !boot.forgotten()
                && !self
                    .peers
                    .iter()
                    .any(|p| p.linked && p.endpoint == Some(boot.endpoint));
            return usable.then_some(boot.next_try);
        }
        let stranded = !self.any_linked();
        (stranded || (leaves < handshakes::LEAVES && boot.peer.is_none())).then_some(boot.next_try)
    }

    /// Bootstrap leaves linked, and whether we are cut off.
    fn boot_context(&self) -> (usize, bool) {
        let leaves = self
            .boots
            .iter()
            .filter(|b| b.peer.is_some_and(|p| self.peers[usize::from(p.0)].linked))
            .count();
        (leaves, self.cut_off())
    }

    /// The earliest bootstrap deadline.
    fn boot_deadline(&self) -> Option<Instant> {
        let (leaves, cut_off) = self.boot_context();
        (0..self.boots.len())
            .filter_map(|b| self.boot_due(b, leaves, cut_off))
            .min()
    }

    fn run_bootstraps(&mut self, now: Instant) {
        for b in 0..self.boots.len() {
            let (leaves, cut_off) = self.boot_context();
            if self.boot_due(b, leaves, cut_off).is_some_and(|t| now >= t) {
                self.start_handshake(now, Target::Boot(b as u16));
            }
        }
    }
}

#[cfg(test)]
mod tests;
