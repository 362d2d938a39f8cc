//! The send path: a frame from the TAP to the peer that owns its MAC, and
//! any message to a peer by the path its state says — its endpoint, the
//! overlay, or a tunnel's relay — sealed in place in its pool buffer.

use super::peer::{self, Path};
use super::{DropReason, Node, PeerIdx, Target, Transmit, MAX_QUEUED};
use crate::buf::PacketBuf;
use crate::time::Instant;
use crate::wire::endpoint::Endpoint;
use crate::wire::{control, data, ethernet, MsgType};

/// Where a sealed message for a peer goes next.
enum Via {
    Endpoint(Endpoint),
    Overlay,
    Relay(PeerIdx),
}

impl Node {
    pub(super) fn frame_in(&mut self, now: Instant, buf: PacketBuf) {
        if self.vpn.is_some() {
            return self.vpn_frame_in(now, buf);
        }
        let dst = match ethernet::Frame::new_checked(self.pool.data(&buf)) {
            Ok(f) => f.dst(),
            Err(_) => return self.drop_buf(buf, DropReason::BadFrame),
        };
        if let Some(p) = self.index.macs.lookup(dst, now) {
            return self.send_to_peer(now, p, MsgType::Frame, buf);
        }
        // Broadcast, multicast or unknown unicast: flood to every peer
        // (not to the places of forgotten ones).
        let present = |i: &usize| !self.peers[*i].is_vacant();
        let Some(last) = (0..self.peers.len()).rev().find(present) else {
            return self.drop_buf(buf, DropReason::NoEndpoint);
        };
        for i in 0..last {
            if self.peers[i].is_vacant() {
                continue;
            }
            match self.pool.duplicate(&buf) {
                Some(copy) => self.send_to_peer(now, PeerIdx(i as u16), MsgType::Frame, copy),
                None => self.stats.count(DropReason::PoolEmpty),
            }
        }
        self.send_to_peer(now, PeerIdx(last as u16), MsgType::Frame, buf);
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
        let peer = &mut *self.peers[usize::from(p.0)];
        let data = ty != MsgType::Control;
        let ring = self.overlay.is_some();
        // A path that stopped answering (`watch`): its data takes the ring
        // while probes (link control) still go the path's way.
        let detour = data && ring && peer.reach.watch.is_suspect();
        let via = match peer.path() {
            // A tunnel goes through its relay, once proven and while it
            // answers; probes always do.
            Path::Tunnel { relay, proven } if !data || (proven && !detour) => Via::Relay(relay),
            Path::Tunnel { .. } => Via::Overlay,
            // Over the ring, unless we have a link with the peer (the
            // first hop would be itself).
            Path::Routed if !peer.is_linked() => Via::Overlay,
            // Straight to the endpoint; with the ring, not to one nothing
            // has come from yet (a punch candidate), nor on a detour, nor
            // without one (a session made over the ring while a punch
            // looks for it): the ring carries the traffic meanwhile.
            _ => match peer.reach.endpoint {
                Some(e) if !(ring && (peer.reach.proven != Some(e) || detour)) => Via::Endpoint(e),
                _ if ring => Via::Overlay,
                _ => return self.drop_buf(buf, DropReason::NoEndpoint),
            },
        };
        if ty != MsgType::Control {
            peer.live.last_tx = Some(now);
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
        if watched && expects && peer.reach.watch.sent(now) {
            self.index.wakeups.touch(p);
        }
        let Some(session) = peer.sessions.current.as_mut() else {
            if ty == MsgType::Control {
                // Link control is only meaningful on the session it was made for.
                return self.drop_buf(buf, DropReason::NoSession);
            }
            if peer.hs.waiting.len() >= peer::MAX_WAITING {
                let old = peer.hs.waiting.remove(0);
                self.drop_buf(old, DropReason::NoSession);
            }
            self.peers[usize::from(p.0)].hs.waiting.push(buf);
            if self.peers[usize::from(p.0)].hs.pending.is_none() {
                self.start_handshake(now, Target::Peer(p));
            }
            return;
        };
        let Some(counter) = session.next_counter(now) else {
            return self.drop_buf(buf, DropReason::NoSession);
        };
        let payload_len = buf.len();
        let Some(hdr) = self.pool.prepend(&mut buf, data::HEADER_LEN) else {
            return self.drop_buf(buf, DropReason::BadFrame);
        };
        data::HeaderRepr {
            ty,
            receiver: session.remote_index,
            counter,
        }
        .emit(hdr);
        let bytes = self.pool.data_mut(&buf);
        let (hdr, payload) = bytes.split_at_mut(data::HEADER_LEN);
        let tag = session.seal(counter, hdr, &mut payload[..payload_len]);
        let Some(t) = self.pool.append(&mut buf, data::TAG_LEN) else {
            return self.drop_buf(buf, DropReason::BadFrame);
        };
        t.copy_from_slice(&tag);
        let rekey = session.sent() >= self.timers.rekey_after_messages;
        peer.traffic.tx_bytes += payload_len as u64;
        peer.traffic.tx_packets += 1;
        let pending = peer.hs.pending.is_some();
        let to = peer.addr;
        match via {
            Via::Endpoint(dst) => self.queue_transmit(dst, buf),
            Via::Overlay => self.send_routed_data(now, to, buf, None, 0),
            Via::Relay(r) => self.send_routed_data(now, to, buf, Some(r), 0),
        }
        if rekey && !pending {
            self.start_handshake(now, Target::Peer(p));
        }
    }

    pub(super) fn queue_transmit(&mut self, dst: Endpoint, buf: PacketBuf) {
        if !self.underlay_ok(&dst) {
            self.drop_buf(buf, DropReason::UnderlayInVpn);
        } else if self.out.transmits.len() >= MAX_QUEUED {
            self.drop_buf(buf, DropReason::QueueFull);
        } else if let super::Carriage::Network(id) = self.settings.carriage {
            self.network_out(id, dst, buf);
        } else {
            self.out.transmits.push_back(Transmit { dst, buf });
        }
    }
}
