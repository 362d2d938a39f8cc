//! Links as the overlay sees them: up/down events, the overlay's actions
//! (send, link, close) and the overlay's control messages on links.

use super::limiter::{OVERLAY_BURST, OVERLAY_RATE_PER_S};
use super::Event;
use super::{DropReason, Node, PeerIdx};
use crate::buf::PacketBuf;
use crate::crypto::NodeKey;
use crate::overlay::dht::client::Event as DhtEvent;
use crate::overlay::{Action, Addr, Overlay, Route};
use crate::time::Instant;
use crate::wire::control::{
    KIND_BROADCAST, KIND_CONN_LIST, KIND_DHT_COPY, KIND_LEAVE, KIND_NEIGHBOURS, KIND_ROUTED,
    KIND_ROUTED_DATA, LEAVE,
};
use crate::wire::overlay::{
    Endpoints, Mode, RoutedData, RoutedDataRepr, DATA_FLAG_CARRIED, DATA_FLAG_TUNNEL,
    ROUTED_DATA_HEADER_LEN,
};
use crate::wire::MsgType;

/// Rounds of overlay actions run per input (actions can cause actions).
const ACTION_ROUNDS: usize = 8;

/// Others' routed data (not tunnels: those have the relay budget) one
/// link may have us forward, bytes per second and burst: far above what
/// ring routing carries before a busy pair gets its own link, and a bound
/// on what one member can make us carry.
pub const TRANSIT_BYTES_PER_S: u32 = 64 << 20;

impl Node {
    pub fn overlay(&self) -> Option<&Overlay> {
        self.overlay.as_ref()
    }

    pub fn overlay_mut(&mut self) -> Option<&mut Overlay> {
        self.overlay.as_mut()
    }

    /// Sends `payload` as a link-control message to our first linked peer,
    /// sealed in its session: lets a fuzz target reach the peer's overlay
    /// parsers with arbitrary bytes.
    #[cfg(feature = "fuzzing")]
    pub fn inject_control_for_fuzzing(&mut self, now: Instant, payload: &[u8]) {
        let Some(p) = (0..self.peers.len()).find(|&i| self.peers[i].is_linked()) else {
            return;
        };
        if let Some(buf) = self.pool.alloc_with(payload) {
            self.send_to_peer(now, PeerIdx(p as u16), MsgType::Control, buf);
        }
    }

    /// Runs `f` on the overlay (a DHT operation, say), then carries out
    /// what it asked for. `None` if this node is not in an overlay.
    pub fn with_overlay<R>(
        &mut self,
        now: Instant,
        f: impl FnOnce(&mut Overlay) -> R,
    ) -> Option<R> {
        let r = f(self.overlay.as_mut()?);
        self.settle(now);
        Some(r)
    }

    /// Sends a routed echo towards `dst` (a ring ping); the reply comes
    /// back as [`Event::Echo`] with `nonce`.
    pub fn overlay_echo(&mut self, now: Instant, dst: Addr, mode: Mode, nonce: u64) {
        if let Some(ov) = self.overlay.as_mut() {
            ov.echo(now, dst, mode, nonce);
        }
        self.settle(now);
    }

    /// Tells every linked peer we are leaving (a graceful shutdown).
    pub fn leave(&mut self, now: Instant) {
        let linked: Vec<PeerIdx> = (0..self.peers.len())
            .filter(|&i| self.peers[i].is_linked())
            .map(|i| PeerIdx(i as u16))
            .collect();
        for p in linked {
            if let Some(buf) = self.pool.alloc_with(&LEAVE) {
                self.send_to_peer(now, p, MsgType::Control, buf);
            }
        }
        self.settle(now);
    }

    /// Sends the frames that waited for a session, in order.
    pub(super) fn release_waiting(&mut self, now: Instant, p: PeerIdx) {
        let waiting = core::mem::take(&mut self.peers[usize::from(p.0)].hs.waiting);
        // What waits is the TAP's traffic: IP packets for a VPN member,
        // Ethernet frames for the static switch.
        let ty = if self.vpn.is_some() {
            MsgType::Packet
        } else {
            MsgType::Frame
        };
        for buf in waiting {
            // Its certificate is known now: the address must be in it.
            if ty == MsgType::Packet && !self.may_receive(p, &buf) {
                self.refuse_claim(p, buf);
                continue;
            }
            self.send_to_peer(now, p, ty, buf);
        }
    }

    /// The peer has a current session: tell the overlay once.
    pub(super) fn link_up(&mut self, now: Instant, p: PeerIdx) {
        let peer = &mut *self.peers[usize::from(p.0)];
        // A routed session is end to end over the overlay, not a link of
        // it; nor is a session made over the overlay whose direct path is
        // not proven yet (a punch candidate): the ring would route into it.
        let unproven = self.overlay.is_some()
            && peer.relay().is_none()
            && peer.reach.endpoint.is_some()
            && peer.reach.proven != peer.reach.endpoint;
        if peer.is_linked()
            || peer.is_routed()
            || unproven
            || peer.sessions.current.is_none()
            || peer.closing_since().is_some()
        {
            return;
        }
        peer.mark_linked();
        self.index.linked += 1;
        self.strangers.boots_dirty = true;
        self.index.wakeups.touch(p);
        // A tunnel's peer is known by an endpoint it advertised, though
        // we cannot reach it there.
        let endpoint = peer
            .reach
            .endpoint
            .or_else(|| peer.reach.candidates.first().copied());
        let (key, leaf) = (peer.key, peer.role.leaf);
        log::debug!(
            "{} link up {}",
            Addr::of_key(&self.identity.public()),
            Addr::of_key(&key)
        );
        if let (Some(ov), Some(ep)) = (self.overlay.as_mut(), endpoint) {
            ov.on_link_up(now, p, key, ep, leaf);
            self.learn_boot(now, ep);
        }
        if self.peers[usize::from(p.0)].demand.linked {
            if let Some(ov) = self.overlay.as_mut() {
                ov.set_reason(
                    Addr::of_key(&key),
                    crate::overlay::table::reason::ONDEMAND,
                    true,
                );
            }
        }
        self.relay_link_up(now, p);
        if self.certs.trust.is_some() {
            self.send_revocations(now, p);
        }
        let peer = &*self.peers[usize::from(p.0)];
        if peer.relay().is_some()
            && self
                .advertised()
                .iter()
                .any(|o| peer.knows_address(o.addr.ip()))
        {
            // A tunnel to a member that gossip placed at our own public
            // address: it is behind our NAT, which does not hairpin, and
            // each of us knows the other only by that mapping. Our own
            // endpoints let it reach us at home (`endpoints_from`).
            self.send_endpoints(now, p);
        }
    }

    /// The peer lost its current session: tell the overlay once.
    pub(super) fn link_down(&mut self, now: Instant, p: PeerIdx) {
        let peer = &*self.peers[usize::from(p.0)];
        if !peer.is_linked() || peer.sessions.current.is_some() {
            return;
        }
        self.unlink(now, p);
    }

    /// Takes the link out of the overlay's table (and the MAC table).
    pub(super) fn unlink(&mut self, now: Instant, p: PeerIdx) {
        self.unlink_into(now, p, None);
    }

    /// `unlink`, the link then closing since `closing` if given.
    fn unlink_into(&mut self, now: Instant, p: PeerIdx, closing: Option<Instant>) {
        let peer = &mut *self.peers[usize::from(p.0)];
        if !peer.mark_unlinked(closing) {
            return;
        }
        self.index.linked -= 1;
        self.strangers.boots_dirty = true;
        self.index.wakeups.touch(p);
        log::debug!(
            "{} link down {}",
            Addr::of_key(&self.identity.public()),
            Addr::of_key(&peer.key)
        );
        self.index.macs.forget_peer(p);
        if let Some(ov) = self.overlay.as_mut() {
            ov.on_link_down(now, p);
        }
        // After the overlay let the link go: its arc goes to the others.
        self.manage_link_down(now, p);
        self.end_tunnel(p);
        self.relay_link_down(now, p);
    }

    /// Closes a dynamic link: out of the overlay at once, no more
    /// handshakes or pings; the sessions go after a grace period.
    pub(super) fn close_link(&mut self, now: Instant, p: PeerIdx) {
        let peer = &mut *self.peers[usize::from(p.0)];
        if !peer.role.dynamic {
            return; // configured peers are always wanted
        }
        peer.role.wanted = false;
        peer.role.closed_at = Some(now);
        self.index.wakeups.touch(p);
        log::debug!(
            "{} closing link {}",
            Addr::of_key(&self.identity.public()),
            Addr::of_key(&peer.key)
        );
        if let Some(pending) = peer.hs.pending.take() {
            self.index.by_session.remove(&pending.local_index);
        }
        let closing =
            (peer.sessions.current.is_some() || peer.sessions.next.is_some()).then_some(now);
        for buf in core::mem::take(&mut peer.hs.waiting) {
            self.drop_buf(buf, DropReason::NoSession);
        }
        self.unlink_into(now, p, closing);
    }

    /// Drops a closed link's sessions once its grace is over.
    pub(super) fn end_closing(&mut self, now: Instant, p: PeerIdx) {
        let peer = &mut *self.peers[usize::from(p.0)];
        let Some(since) = peer.closing_since() else {
            return;
        };
        if now < since + super::peer::CLOSE_GRACE {
            return;
        }
        self.index.wakeups.touch(p);
        peer.end_closing();
        let by_index = &mut self.index.by_session;
        peer.sessions.clear(|idx| {
            by_index.remove(&idx);
        });
    }

    /// Links to a node the overlay asked for, trying each of its candidate
    /// endpoints at once (our half of a hole punch).
    fn link_to(&mut self, now: Instant, key: NodeKey, candidates: Endpoints, hearsay: bool) {
        log::debug!(
            "{} link_to {} at {:?}",
            Addr::of_key(&self.identity.public()),
            Addr::of_key(&key),
            candidates
        );
        let Some(p) = self.find_or_add_peer(key, None) else {
            return self.stats.count(DropReason::TooManyPeers);
        };
        // Linking again to a node we just closed: a fresh handshake, while
        // the old sessions still take what is in flight on them.
        self.touch(p);
        let peer = &*self.peers[usize::from(p.0)];
        // A direct link needs no candidates; what others say of a linked
        // peer's endpoints (gossip) may be older than what the peer told
        // us itself.
        let fresh =
            !(peer.is_linked() && peer.relay().is_none()) && self.add_candidates(p, &candidates);
        let peer = &mut *self.peers[usize::from(p.0)];
        let reopen = peer.end_closing();
        peer.role.wanted = true;
        // Hearsay only while nothing better vouched for the peer.
        peer.reach.heard = hearsay && (peer.reach.heard || peer.sessions.current.is_none());
        if peer.tunnel.wanted || peer.relay().is_some() {
            // No direct path: a tunnel carries the link, or is on its way,
            // and retries direct by itself. Candidates we did not have get
            // a punch of their own now (the tunnel stays until it works).
            if fresh && !peer.reach.punching && peer.hs.pending.is_none() {
                peer.reach.punching = true;
                self.start_handshake(now, super::Target::Peer(p));
            }
            if self.peers[usize::from(p.0)].is_linked() {
                self.link_up(now, p);
            }
            return;
        }
        if peer.is_routed() && !peer.is_linked() {
            // A VPN peer reached over the overlay: traffic stays on the
            // overlay while a direct link is punched; it moves when the
            // direct handshake completes.
            if !peer.reach.punching {
                peer.reach.punching = true;
                if let Some(pending) = peer.hs.pending.take() {
                    self.index.by_session.remove(&pending.local_index);
                }
                return self.start_handshake(now, super::Target::Peer(p));
            }
            return;
        }
        if peer.is_linked() {
            // Already linked: make sure the overlay has it.
            return self.link_up(now, p);
        }
        let answered = peer.sessions.next.is_some();
        let idle = peer.sessions.current.is_none() && !answered;
        if peer.hs.pending.is_none() && (reopen || idle) {
            if !self.guards.limiter.allow_link(now) {
                self.peers[usize::from(p.0)].role.wanted = false;
                return self.stats.count(DropReason::RateLimited);
            }
            self.start_handshake(now, super::Target::Peer(p));
        }
    }

    /// Remembers endpoints where `p` may be reached (the newest kept).
    /// Returns whether any was new.
    pub(super) fn add_candidates(
        &mut self,
        p: PeerIdx,
        candidates: &[crate::wire::endpoint::Endpoint],
    ) -> bool {
        self.strangers.boots_dirty = true;
        let peer = &mut *self.peers[usize::from(p.0)];
        let mut fresh = false;
        for &c in candidates {
            if self.underlay.guard.contains(c.addr.ip()) {
                self.stats.count(DropReason::CandidateInVpn);
                continue;
            }
            if !peer.reach.candidates.contains(&c) {
                if peer.reach.candidates.len() >= super::handshakes::MAX_CANDIDATES {
                    peer.reach.candidates.remove(0);
                }
                peer.reach.candidates.push(c);
                fresh = true;
            }
        }
        if peer.reach.endpoint.is_none() {
            peer.reach.endpoint = peer.reach.candidates.iter().find(|c| !c.is_tcp()).copied();
        }
        fresh
    }

    /// Carries out what the overlay asked for; only `settle` calls it.
    #[inline(never)]
    pub(super) fn run_overlay_actions(&mut self, now: Instant) {
        for _ in 0..ACTION_ROUNDS {
            let Some(ov) = self.overlay.as_mut().filter(|ov| ov.has_output()) else {
                return;
            };
            let events: Vec<DhtEvent> = ov.dht_events().collect();
            let actions = ov.take_actions();
            for e in events {
                self.stats.dht_latency.record(e.latency);
                let e = self.vpn_dht_event(now, e);
                if let Some(e) = e.and_then(|e| self.routes_dht_event(now, e)) {
                    self.push_event(Event::Dht(e));
                }
            }
            for a in actions {
                match a {
                    Action::Send { peer, msg } => match self.pool.alloc_with(&msg) {
                        Some(buf) => self.send_to_peer(now, peer, MsgType::Control, buf),
                        None => self.stats.count(DropReason::PoolEmpty),
                    },
                    Action::SendCtm { peer, msg, ctm } => self.send_ctm(now, peer, msg, ctm),
                    Action::AnswerInit { init, candidates } => {
                        self.answer_embedded_init(now, &candidates, &init)
                    }
                    Action::Link {
                        key,
                        candidates,
                        hearsay,
                    } => self.link_to(now, key, candidates, hearsay),
                    Action::Close { peer } => self.close_link(now, peer),
                    Action::Handshake { src, via, bytes } => {
                        self.routed_handshake(now, src, via, &bytes)
                    }
                    Action::Relay { src, msg } => self.relay_message(now, src, *msg),
                    Action::Manage {
                        src,
                        request,
                        bytes,
                    } => self.task_routed(now, src, request, &bytes),
                    Action::Echoed { nonce, hops, rtt } => {
                        self.push_event(Event::Echo { nonce, hops, rtt })
                    }
                }
            }
        }
    }

    /// A routed data message from a link: forwarded (re-sealed in place
    /// for the next link), or ours: the end-to-end sealed message inside
    /// goes to the receive path.
    fn routed_data_in(&mut self, now: Instant, from: PeerIdx, mut buf: PacketBuf) {
        let Some(ov) = self.overlay.as_mut() else {
            return self.drop_buf(buf, DropReason::NoRoute);
        };
        let flags = self.pool.data(&buf).get(3).copied().unwrap_or(0);
        let tunnel = flags & DATA_FLAG_TUNNEL != 0;
        match ov.route_data(self.pool.data_mut(&buf)) {
            Route::Forward(next) if tunnel => {
                // A tunnel's relay: only to the destination itself, over
                // a direct link, and only within our budget.
                let len = buf.len();
                let dst = RoutedData::new_checked(self.pool.data(&buf)).map(|r| r.dst());
                if dst.is_ok_and(|dst| self.relay_allowed(now, from, next, dst, len)) {
                    self.send_to_peer(now, next, MsgType::Control, buf)
                } else {
                    self.drop_buf(buf, DropReason::RelayRefused)
                }
            }
            Route::Forward(next) => {
                // Transit for others, metered by the link it came on: a
                // member cannot have us carry more than this for it.
                let n = buf.len();
                let budget = &mut self.peers[usize::from(from.0)].budget.transit;
                let rate = self.settings.transit_rate;
                if !budget.take_n(now, n as u32, rate, rate) {
                    return self.drop_buf(buf, DropReason::TransitLimited);
                }
                self.stats.transit_bytes += n as u64;
                self.send_to_peer(now, next, MsgType::Control, buf)
            }
            Route::Deliver => {
                // Links crossed: each forward added a hop.
                let hops = RoutedData::new_checked(self.pool.data(&buf))
                    .map_or(0, |r| r.hops())
                    .saturating_add(1);
                let arrival = super::Arrival::routed(hops, tunnel.then_some(from));
                self.pool.trim_front(&mut buf, ROUTED_DATA_HEADER_LEN);
                if flags & DATA_FLAG_CARRIED != 0 {
                    return self.carried_in(buf);
                }
                match crate::wire::peek(self.pool.data(&buf)) {
                    Ok(MsgType::Frame | MsgType::Packet | MsgType::Control) => {
                        self.handle_sealed(now, &arrival, buf)
                    }
                    _ => self.drop_buf(buf, DropReason::OverlayMalformed),
                }
            }
            Route::Drop(r) => self.drop_buf(buf, DropReason::of_refusal(r)),
        }
    }

    /// A handshake message routed to us over the overlay.
    fn routed_handshake(&mut self, now: Instant, src: Addr, via: Option<PeerIdx>, bytes: &[u8]) {
        // Metered by the link it came on: the routed source is the
        // sender's word, and rotating it must not buy more.
        if via.is_some_and(|l| !self.guards.limiter.allow_routed_via(l, now)) {
            return self.stats.count(DropReason::RateLimited);
        }
        let Some(buf) = self.pool.alloc_with(bytes) else {
            return self.stats.count(DropReason::PoolEmpty);
        };
        let from = super::Path::Overlay(src);
        match crate::wire::peek(bytes) {
            Ok(MsgType::HandshakeInit) => self.handle_init(now, from, buf),
            Ok(MsgType::HandshakeResp) => self.handle_resp(now, from, buf),
            _ => self.drop_buf(buf, DropReason::OverlayMalformed),
        }
    }

    /// Sends a sealed message to the node at `dst` over the overlay (or,
    /// for a tunnel, through the `relay` link): the routed data header goes
    /// in front, in place, and the first hop's link seals it again.
    /// `flags`: `DATA_FLAG_CARRIED` for a network's datagram (`carry`).
    pub(super) fn send_routed_data(
        &mut self,
        now: Instant,
        dst: Addr,
        mut buf: PacketBuf,
        relay: Option<PeerIdx>,
        flags: u8,
    ) {
        let Some(ov) = self.overlay.as_ref() else {
            return self.drop_buf(buf, DropReason::NoRoute);
        };
        let (hop, ttl, flags) = match relay {
            Some(r) => (Some(r), 2, flags | DATA_FLAG_TUNNEL),
            None => (ov.first_hop(dst), ov.ttl(), flags),
        };
        let Some(hop) = hop else {
            return self.drop_buf(buf, DropReason::NoRoute);
        };
        let Some(hdr) = self.pool.prepend(&mut buf, ROUTED_DATA_HEADER_LEN) else {
            return self.drop_buf(buf, DropReason::BadFrame);
        };
        RoutedDataRepr { ttl, flags, dst }.emit(hdr);
        self.send_to_peer(now, hop, MsgType::Control, buf);
    }

    /// Overlay control messages arriving on the link from `p`.
    /// Returns the buffer if it is not an overlay message.
    pub(super) fn handle_overlay_control(
        &mut self,
        now: Instant,
        p: PeerIdx,
        buf: PacketBuf,
    ) -> Option<PacketBuf> {
        let kind = self.pool.data(&buf).first().copied();
        if kind == Some(KIND_ROUTED_DATA) && self.overlay.is_some() {
            self.routed_data_in(now, p, buf);
            return None;
        }
        if kind == Some(KIND_BROADCAST) && self.vpn.is_some() {
            self.broadcast_in(now, buf);
            return None;
        }
        if self.overlay.is_none()
            || !matches!(
                kind,
                Some(KIND_ROUTED | KIND_NEIGHBOURS | KIND_CONN_LIST | KIND_LEAVE | KIND_DHT_COPY)
            )
        {
            return Some(buf);
        }
        let budget = &mut self.peers[usize::from(p.0)].budget.overlay;
        if !budget.take(now, OVERLAY_RATE_PER_S, OVERLAY_BURST) {
            self.drop_buf(buf, DropReason::OverlayRateLimited);
            return None;
        }
        let ov = self.overlay.as_mut()?;
        let refused = match kind {
            Some(KIND_ROUTED) => match ov.route(self.pool.data_mut(&buf)) {
                Route::Forward(next) => {
                    self.send_to_peer(now, next, MsgType::Control, buf);
                    return None;
                }
                Route::Deliver => ov.handle_delivered(now, p, self.pool.data(&buf)),
                Route::Drop(r) => Err(r),
            },
            Some(KIND_NEIGHBOURS) => ov.handle_neighbours(now, p, self.pool.data(&buf)),
            Some(KIND_CONN_LIST) => ov.handle_conn_list(p, self.pool.data(&buf)),
            Some(KIND_DHT_COPY) => ov.handle_dht_copy(now, self.pool.data(&buf)),
            _ => {
                self.pool.free(buf);
                self.close_link(now, p);
                return None;
            }
        };
        match refused {
            Ok(()) => self.pool.free(buf),
            Err(r) => self.drop_buf(buf, DropReason::of_refusal(r)),
        }
        None
    }
}
