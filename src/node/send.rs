//! The send path: a frame from the TAP to the peer that owns its MAC, and
//! any message to a peer by the path its state says — its endpoint, the
//! overlay, or a tunnel's relay — sealed in place in its pool buffer.

use super::{peer, DropReason, Node, PeerIdx, Target, Transmit, MAX_QUEUED};
use crate::buf::PacketBuf;
use crate::time::Instant;
use crate::wire::endpoint::Endpoint;
use crate::wire::{control, data, ethernet, MsgType};

impl Node {
    pub(super) fn frame_in(&mut self, now: Instant, buf: PacketBuf) {
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
    pub(super) fn send_to_peer(
        &mut self,
        now: Instant,
        p: PeerIdx,
        ty: MsgType,
        mut buf: PacketBuf,
    ) {
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

    pub(super) fn queue_transmit(&mut self, dst: Endpoint, buf: PacketBuf) {
        if !self.underlay_ok(&dst) {
            self.drop_buf(buf, DropReason::UnderlayInVpn);
        } else if self.transmits.len() >= MAX_QUEUED {
            self.drop_buf(buf, DropReason::QueueFull);
        } else {
            self.transmits.push_back(Transmit { dst, buf });
        }
    }
}
