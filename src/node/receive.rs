//! The receive path: a datagram from the underlay (or routed data that
//! reached us) is told apart by type, opened by its session and handed on —
//! frames and packets to the VPN, link control to its handler (ping and
//! pong here, the overlay's and certificate mode's kinds to theirs).

use super::peer::Slot;
use super::{Arrival, DropReason, Node, Path, PeerIdx, Target, MAX_QUEUED, RESYNC_QUIET};
use crate::buf::PacketBuf;
use crate::crypto::session::OpenError;
use crate::time::Instant;
use crate::wire::endpoint::Endpoint;
use crate::wire::{self, control, data, ethernet, MsgType, PeekError};

impl Node {
    pub(super) fn datagram_in(&mut self, now: Instant, from: Endpoint, buf: PacketBuf) {
        if !self.underlay_ok(&from) {
            // It came through our own VPN: never a path (see `underlay`).
            return self.drop_buf(buf, DropReason::UnderlayInVpn);
        }
        match wire::peek(self.pool.data(&buf)) {
            Err(PeekError::Truncated) => self.drop_buf(buf, DropReason::BadLength),
            Err(PeekError::Version) => self.drop_buf(buf, DropReason::BadVersion),
            // A network's tagged datagram is its host's to hand on: one
            // that reaches a node is for no network this daemon runs.
            Err(PeekError::Type) | Ok(MsgType::Network) => self.drop_buf(buf, DropReason::BadType),
            Ok(MsgType::HandshakeInit) => self.handle_init(now, Path::Direct(from), buf),
            Ok(MsgType::HandshakeResp) => self.handle_resp(now, Path::Direct(from), buf),
            Ok(MsgType::CookieReply) => self.handle_cookie_reply(now, from, buf),
            Ok(MsgType::Refusal) => self.handle_refusal(now, from, buf),
            Ok(MsgType::Frame | MsgType::Control | MsgType::Packet) => {
                self.handle_sealed(now, &Arrival::direct(from), buf)
            }
        }
    }

    /// A sealed message, straight from an endpoint or routed to us over
    /// the overlay (`arrival` says which).
    pub(super) fn handle_sealed(&mut self, now: Instant, arrival: &Arrival, mut buf: PacketBuf) {
        let from = &arrival.from;
        let (receiver, counter, ty) = match data::Packet::new_checked(self.pool.data(&buf)) {
            Ok(pkt) => (pkt.receiver(), pkt.counter(), pkt.msg_type()),
            Err(_) => return self.drop_buf(buf, DropReason::BadLength),
        };
        let Some(&Target::Peer(p)) = self.index.by_session.get(&receiver) else {
            self.resync_from(now, *from);
            return self.drop_buf(buf, DropReason::UnknownSession);
        };
        let peer = &mut *self.peers[usize::from(p.0)];
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
            self.index.wakeups.touch(p);
            if let Some(old) = peer.sessions.promote(slot) {
                self.index.by_session.remove(&old);
            }
            // A session answered for an init from an older clock, now used
            // by the key's holder: its time is the peer's time.
            if let Some(a) = peer
                .hs
                .answer
                .as_mut()
                .filter(|a| a.provisional == Some(receiver))
            {
                peer.hs.last_init_timestamp = a.timestamp;
                a.provisional = None;
            }
            // The initiator has our answer, and it went out directly (the
            // copy that opens our NAT): a late copy of the init has nothing
            // left to get, so the answer's bytes need not be kept.
            if peer
                .hs
                .answer
                .as_ref()
                .is_some_and(|a| a.direct_sent && a.provisional.is_none())
            {
                peer.hs.answer = None;
            }

            // The first message on a session we answered comes one round
            // trip after our answer: the responder's RTT sample.
            if let (None, Some(cur)) = (peer.live.rtt(), &peer.sessions.current) {
                let rtt = now.saturating_since(cur.created);
                peer.live.set_rtt(rtt);
            }
        }
        peer.live.last_rx = Some(now);
        peer.live.rx_hops = arrival.hops;
        // What came over the path we send on (straight, or through the
        // tunnel's relay) shows it works; the peer's data coming over the
        // overlay instead says it may not (see `watch`).
        // Through our tunnel's relay, that is: the other side may still
        // send through another (a relay being changed).
        let tunnelled = arrival.through_relay(peer.relay());
        if tunnelled {
            peer.reach.watch.heard(now);
            peer.prove_tunnel();
            peer.tunnel.chose = None;
        }
        let detoured = from.is_none()
            && !tunnelled
            && ty != MsgType::Control as u8
            && peer.is_linked()
            && peer.watched_path()
            && peer.reach.watch.peer_detoured(now);
        let mut direct_now = false;
        // (`from` is compared and stored as the `Option` it is: rebuilding
        // `Some(ep)` copied the endpoint each time, ~40 instructions a packet.)
        if let Some(ep) = *from {
            // The first authenticated packet straight from this endpoint:
            // the path is proven, and the link can be up.
            direct_now |= peer.reach.proven != *from && !peer.is_linked();
            peer.reach.proven = *from;
            peer.reach.watch.heard(now);
            if peer.reach.endpoint != *from {
                // Authenticated traffic from a new address: the peer moved.
                log::info!("peer {} moved to {}", peer.name(), ep);
                peer.reach.endpoint = *from;
                self.strangers.boots_dirty = true;
                if let (true, Some(ov)) = (peer.is_linked(), self.overlay.as_mut()) {
                    ov.on_peer_moved(p, ep);
                }
            }
            // It reached us directly: a direct path exists, whatever the
            // session was made over (a routed or tunnelled peer moves to it).
            if peer.is_routed() || peer.relay().is_some() {
                peer.go_direct();
                peer.reach.punching = false;
                peer.reach.watch.reset();
                direct_now = true;
            }
        }
        self.pool.trim_front(&mut buf, data::HEADER_LEN);
        self.pool.trim_back(&mut buf, data::TAG_LEN);
        peer.traffic.rx_bytes += buf.len() as u64;
        peer.traffic.rx_packets += 1;
        if detoured {
            // The peer sends over the overlay what could come straight:
            // does our way still reach it? (See `watch`.)
            self.index.wakeups.touch(p);
            self.send_ping(now, p);
        }
        if direct_now {
            // The path changed: its watch (and other deadlines) with it.
            self.index.wakeups.touch(p);
            self.end_tunnel(p);
        }
        if promoted || direct_now {
            self.release_waiting(now, p);
            self.link_up(now, p);
        }
        if ty == MsgType::Control as u8 {
            return self.handle_control(now, p, *arrival, buf);
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
        self.index.macs.learn(src, p, now);
        if self.out.frames.len() >= MAX_QUEUED {
            return self.drop_buf(buf, DropReason::QueueFull);
        }
        self.out.frames.push_back(buf);
    }

    /// A sealed message for a session we do not have, from `from`. If a
    /// peer of ours sends from there and nothing valid has come from it for
    /// a while, it is using a session we dropped (crossed handshakes can
    /// evict one side's): a fresh handshake puts the two on one session
    /// again, instead of the peer's traffic vanishing until a timeout. The
    /// bytes are unauthenticated, so this only ever starts one handshake
    /// (as a timer would), and never while the peer talks to us validly.
    pub(super) fn resync_from(&mut self, now: Instant, from: Option<Endpoint>) {
        let Some(from) = from else {
            return;
        };
        let Some(i) = self.peers.iter().position(|q| {
            q.reach.endpoint == Some(from)
                && q.hs.pending.is_none()
                && q.sessions.current.is_some()
                && q.live
                    .last_rx
                    .map_or(true, |t| now.saturating_since(t) >= RESYNC_QUIET)
                && q.hs
                    .last_handshake
                    .map_or(true, |t| now.saturating_since(t) >= RESYNC_QUIET)
        }) else {
            return;
        };
        log::info!(
            "{} sends on a session we do not have: handshaking again",
            self.peers[i].name()
        );
        self.start_handshake(now, Target::Peer(PeerIdx(i as u16)));
    }

    pub(super) fn handle_control(
        &mut self,
        now: Instant,
        p: PeerIdx,
        arrival: Arrival,
        mut buf: PacketBuf,
    ) {
        let kind = self.pool.data(&buf).first().copied();
        if kind == Some(control::KIND_ENDPOINTS) {
            return self.endpoints_from(now, p, buf);
        }
        if kind == Some(control::KIND_REVOCATION_PART) {
            let msg = self.pool.data(&buf).to_vec();
            self.pool.free(buf);
            return self.revocations_from(now, p, &msg);
        }
        if matches!(kind, Some(control::KIND_TASK | control::KIND_TASK_REPLY)) {
            let msg = self.pool.data(&buf).to_vec();
            self.pool.free(buf);
            return self.task_in(now, p, kind == Some(control::KIND_TASK), &msg);
        }
        if kind == Some(control::KIND_REVOCATION_SERIALS) {
            let msg = self.pool.data(&buf).to_vec();
            self.pool.free(buf);
            return self.serials_from(now, p, &msg);
        }
        // Routed data is carried by links: direct ones, and tunnel edges
        // (whose messages arrive as tunnel data through the relay). Inside
        // an end-to-end session routed over the ring it would have the
        // receive path open yet another seal for nothing a link needs.
        if kind == Some(control::KIND_ROUTED_DATA)
            && arrival.from.is_none()
            && arrival.tunnel.is_none()
        {
            return self.drop_buf(buf, DropReason::OverlayMalformed);
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
        let peer = &*self.peers[usize::from(p.0)];
        let direct_udp = peer
            .reach
            .endpoint
            .filter(|e| peer.live.rx_hops == 1 && e.is_udp());
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
                let peer = &*self.peers[usize::from(p.0)];
                if peer.live.rx_hops == 1 || arrival.through_relay(peer.relay()) {
                    self.path_answered(now, p);
                }
                if let (Some(seen), Some(peer_ep)) = (observed, direct_udp) {
                    if self.underlay.nat.observe(peer_ep.addr, seen, now) {
                        self.endpoints_changed(now);
                    }
                }
                if stamp <= now.as_micros() {
                    let rtt = now.saturating_since(Instant::from_micros(stamp));
                    let first = self.peers[usize::from(p.0)].live.ponged(now, rtt);
                    // The watch's bounds scale with the RTT.
                    self.index.wakeups.touch(p);
                    if first {
                        self.relay_rtt_known(now, p);
                    }
                }
            }
        }
    }

    pub(super) fn send_ping(&mut self, now: Instant, p: PeerIdx) {
        self.peers[usize::from(p.0)].live.last_ping = Some(now);
        match self.pool.alloc_with(&control::Ping::ping(now.as_micros())) {
            Some(buf) => self.send_to_peer(now, p, MsgType::Control, buf),
            None => self.stats.count(DropReason::PoolEmpty),
        }
    }
}
