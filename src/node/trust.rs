//! Certificate mode at run time: revocation lists taken, spread over the
//! links, and enforced (links to revoked members close at once).
//!
//! A list travels as link control (kind 10): a node that takes a newer
//! list from its file or from a peer passes it to every link, and sends
//! what it holds to each new link, so a list reaches every member within
//! the overlay's diameter and late joiners get it on their first link. An
//! older or equal list is ignored, so the flood stops by itself.

use super::{DropReason, MsgType, Node, PeerIdx};
use crate::crypto::cert::{CertError, Revocations};
use crate::time::Instant;

/// Link control kind of a revocation list.
pub const CTRL_REVOCATIONS: u8 = 10;
/// Kind, 3 reserved bytes, then the encoded list.
const HEADER: usize = 4;
/// Lists up to this many keys travel over the links (one datagram);
/// bigger ones are distributed as files.
pub const MAX_GOSSIP_KEYS: usize = 32;

impl Node {
    /// Offers a revocation list (from the file, or from link `from`).
    /// Taken if a trusted CA signed it and it is newer than what we hold
    /// from that CA; then links to revoked members close and the list goes
    /// to every other link. Returns whether it was taken.
    pub fn offer_revocations(
        &mut self,
        now: Instant,
        list: Revocations,
        from: Option<PeerIdx>,
    ) -> Result<bool, CertError> {
        let Some(trust) = self.trust.as_mut() else {
            return Ok(false);
        };
        let (serial, count) = (list.serial, list.revoked.len());
        if !trust.offer_revocations(list)? {
            return Ok(false);
        }
        log::info!("revocation list serial {serial} taken: {count} revoked key(s)");
        self.update_record_policy();
        for i in 0..self.peers.len() {
            let p = PeerIdx(i as u16);
            if self
                .trust
                .as_ref()
                .is_some_and(|t| t.is_revoked(&self.peers[i].key))
            {
                self.cut_off_revoked(now, p);
            }
        }
        for i in 0..self.peers.len() {
            let p = PeerIdx(i as u16);
            if self.peers[i].linked && Some(p) != from {
                self.send_revocations(now, p);
            }
        }
        self.rearm();
        Ok(true)
    }

    /// A revoked member: its sessions end now (no grace), nothing more is
    /// sent to it, and the overlay forgets the link. Its handshakes are
    /// refused from now on.
    fn cut_off_revoked(&mut self, now: Instant, p: PeerIdx) {
        let peer = &mut self.peers[usize::from(p.0)];
        log::warn!("{} is revoked: link closed", peer.name);
        peer.wanted = false;
        peer.closing_since = None;
        if let Some(pending) = peer.pending.take() {
            self.by_index.remove(&pending.local_index);
        }
        let by_index = &mut self.by_index;
        peer.sessions.clear(|idx| {
            by_index.remove(&idx);
        });
        for buf in core::mem::take(&mut peer.waiting) {
            self.drop_buf(buf, DropReason::CertRevoked);
        }
        self.touch(p);
        self.unlink(now, p);
    }

    /// Sends the lists we hold to link `p` (those small enough).
    pub(super) fn send_revocations(&mut self, now: Instant, p: PeerIdx) {
        let Some(trust) = self.trust.as_ref() else {
            return;
        };
        let lists: Vec<Vec<u8>> = trust
            .revocations
            .iter()
            .filter(|r| r.revoked.len() <= MAX_GOSSIP_KEYS)
            .filter_map(|r| r.encode().ok())
            .collect();
        for bytes in lists {
            let mut msg = Vec::with_capacity(HEADER + bytes.len());
            msg.extend_from_slice(&[CTRL_REVOCATIONS, 0, 0, 0]);
            msg.extend_from_slice(&bytes);
            match self.pool.alloc_with(&msg) {
                Some(buf) => self.send_to_peer(now, p, MsgType::Control, buf),
                None => self.stats.count(DropReason::PoolEmpty),
            }
        }
    }

    /// A revocation list from link `p` (link control kind 10).
    pub(super) fn revocations_from(&mut self, now: Instant, p: PeerIdx, msg: &[u8]) {
        let list = match msg.get(HEADER..).map(Revocations::decode) {
            Some(Ok(l)) if l.revoked.len() <= MAX_GOSSIP_KEYS => l,
            _ => return self.stats.count(DropReason::CertInvalid),
        };
        match self.offer_revocations(now, list, Some(p)) {
            Ok(_) => {}
            Err(e) => self.stats.count(DropReason::of_cert(e)),
        }
    }
}
