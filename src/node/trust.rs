//! Certificate mode at run time: revocation lists taken, spread over the
//! links, and enforced (links to revoked members close at once).
//!
//! A list travels as link control in parts (`wire::trust`): a node that
//! takes a newer list from its file or from a peer passes it to every
//! link, and sends what it holds to each new link, so a list reaches every
//! member within the overlay's diameter and late joiners get it on their
//! first link. An older or equal list is ignored, so the flood stops by
//! itself.
//!
//! Parts can be lost, so pushing alone is not enough: every
//! [`SERIALS_EVERY`] each node tells each link the serials it holds (at
//! the link's next timer), and a link holding a newer list sends it, at
//! most once per [`RESEND_SPACING`] per link. A list whose parts were lost
//! arrives within about a minute; a member never pays more than one list
//! per link per spacing for another's asking.
//!
//! A node reassembles a list per link, for up to [`REASSEMBLY_SLOTS`]
//! links at once (bounded memory); a link that starts a list and never
//! finishes it holds only its own slot, so one member sending bogus first
//! parts cannot keep every other link's list out.

use super::{DropReason, MsgType, Node, PeerIdx};
use crate::buf::PacketBuf;
use crate::crypto::cert::{CertError, Revocations, MAX_REVOKED};
use crate::time::Instant;
use crate::wire::endpoint::Endpoint;
pub use crate::wire::trust::PART;
use crate::wire::trust::{RevocationPart, RevocationSerials, MAX_SERIALS};
use std::time::Duration;

/// Parts of the largest list (MAX_REVOKED keys of 32 bytes, and its header).
pub const MAX_PARTS: usize = (MAX_REVOKED * 32 + 256) / PART + 1;
/// A list whose parts stop coming is given up after this.
pub const REASSEMBLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Links whose lists are put together at once (each at most one list's
/// worth of memory, ~33 KiB); a further link takes the slot of the one
/// that started longest ago once it has timed out.
pub const REASSEMBLY_SLOTS: usize = 3;
/// How often a link is told the serials we hold.
pub const SERIALS_EVERY: Duration = Duration::from_secs(60);
/// A link asking again gets our lists again only after this.
pub const RESEND_SPACING: Duration = Duration::from_secs(30);

/// Certificate mode's state (`None` trust: open or static-key mode).
pub(super) struct Certs {
    /// The CAs we trust and their revocation lists (`NodeConfig::trust`).
    pub(super) trust: Option<crate::crypto::cert::Trust>,
    /// A revocation list arriving in parts.
    pub(super) crl_in: Vec<Reassembly>,
    /// Our own certificate, encoded.
    pub(super) mine: Option<Vec<u8>>,
    /// A member told us our certificate is revoked.
    pub(super) refused: Option<Refused>,
}

/// Per link: when it was last told our serials and last sent our lists.
#[derive(Debug, Default, Clone, Copy)]
pub struct ListSync {
    told: Option<Instant>,
    sent: Option<Instant>,
}

/// A list being put back together from its parts.
pub struct Reassembly {
    from: PeerIdx,
    started: Instant,
    /// One flag per part (their count is the list's).
    got: Vec<bool>,
    bytes: Vec<u8>,
    last_len: usize,
}

impl Reassembly {
    fn new(from: PeerIdx, started: Instant, count: usize) -> Reassembly {
        Reassembly {
            from,
            started,
            got: vec![false; count],
            bytes: vec![0; count * PART],
            last_len: 0,
        }
    }
}

/// What a refusal told us: our certificate is revoked.
#[derive(Debug, Clone)]
pub struct Refused {
    /// The serial of the list that revokes us.
    pub serial: u64,
    /// Who said so (a member's name, or the endpoint of a bootstrap).
    pub by: String,
    pub at: Instant,
}

impl Node {
    /// A handshake from a member whose certificate is revoked: counted,
    /// and logged naming it (the first few times, then every 1024th).
    pub(super) fn refused_revoked(&mut self, key: &crate::crypto::NodeKey) {
        self.stats.count(DropReason::CertRevoked);
        let n = self.stats.drops(DropReason::CertRevoked);
        if n <= 8 || n % 1024 == 0 {
            let serial = self.revoked_by(key).unwrap_or(0);
            log::warn!(
                "handshake refused: {} presents a revoked certificate (revocation list {serial}; {n} refused so far)",
                self.name_of_key(key)
            );
        }
    }

    /// The serial of the list that revokes `key`, if we hold one.
    pub(super) fn revoked_by(&self, key: &crate::crypto::NodeKey) -> Option<u64> {
        self.certs.trust.as_ref()?.revoked_by(key)
    }

    /// A peer's name if we know it, else its key (shortened).
    pub(super) fn name_of_key(&self, key: &crate::crypto::NodeKey) -> String {
        match self.index.by_key.get(key) {
            Some(p) => self.peers[usize::from(p.0)].name().to_string(),
            None => format!("key {}…", &key.to_base64()[..12]),
        }
    }

    /// Tells a revoked member so (one short datagram, only in answer to an
    /// init that came straight from it, under the init rate limits).
    pub(super) fn send_refusal(
        &mut self,
        to: Endpoint,
        key: &crate::crypto::NodeKey,
        receiver: u32,
    ) {
        use crate::wire::handshake::{emit_refusal, REFUSED_REVOKED};
        let serial = self.revoked_by(key).unwrap_or(0);
        match self
            .pool
            .alloc_with(&emit_refusal(receiver, REFUSED_REVOKED, serial))
        {
            Some(b) => self.queue_transmit(to, b),
            None => self.stats.count(DropReason::PoolEmpty),
        }
    }

    /// A refusal: if it answers one of our pending inits, our certificate
    /// is revoked; say so (once per list) and show it in status. Our
    /// attempts go on: a new certificate in place is taken at a restart.
    pub(super) fn handle_refusal(&mut self, now: Instant, from: Endpoint, buf: PacketBuf) {
        use crate::wire::handshake::{parse_refusal, REFUSED_REVOKED};
        let parsed = parse_refusal(self.pool.data(&buf));
        self.pool.free(buf);
        let Ok((receiver, REFUSED_REVOKED, serial)) = parsed else {
            return self.stats.count(DropReason::BadLength);
        };
        let target = match self.index.by_session.get(&receiver) {
            Some(&t) => t,
            None => return self.stats.count(DropReason::UnknownSession),
        };
        let pending = self
            .pending_slot(target)
            .as_ref()
            .is_some_and(|x| x.local_index == receiver);
        if !pending {
            return self.stats.count(DropReason::UnknownSession);
        }
        let by = match target {
            crate::node::Target::Peer(p) => self.peers[usize::from(p.0)].name().to_string(),
            _ => from.to_string(),
        };
        if self
            .certs
            .refused
            .as_ref()
            .map_or(true, |r| r.serial != serial)
        {
            log::error!(
                "our certificate is revoked: {by} refused it (revocation list {serial}); the network's CA must sign a new one"
            );
        }
        self.certs.refused = Some(Refused {
            serial,
            by,
            at: now,
        });
    }

    /// Our certificate (encoded) and the CAs we trust, in certificate mode.
    pub fn credentials(&self) -> Option<(&[u8], &[crate::crypto::cert::Cert])> {
        Some((self.certs.mine.as_deref()?, &self.certs.trust.as_ref()?.cas))
    }

    /// A reload's renewed certificate (the caller checked that it names us
    /// as the old one did) or changed CA list: new handshakes present the
    /// certificate and are judged by the CAs, and our DHT records
    /// (address, name, routes) are signed again with it. Links stay up;
    /// a peer whose CA is gone is refused at its next handshake.
    pub fn renew_credentials(
        &mut self,
        now: Instant,
        cert: Vec<u8>,
        cas: Vec<crate::crypto::cert::Cert>,
    ) {
        if let Some(t) = self.certs.trust.as_mut() {
            let crate::crypto::cert::Trust {
                cas: held,
                revocations,
                ..
            } = t;
            *held = cas;
            revocations.retain(|r| held.iter().any(|c| c.subject == r.issuer));
        }
        self.certs.mine = Some(cert);
        self.update_record_policy();
        let signer = crate::vpn::Signer {
            identity: &self.identity,
            cert: self.certs.mine.as_deref(),
        };
        if let (Some(v), Some(ov)) = (self.vpn.as_mut(), self.overlay.as_mut()) {
            v.resign(now, ov, &signer);
        }
        if let Some(r) = self.routes.as_mut() {
            r.resign();
        }
        self.settle(now);
    }

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
        let Some(trust) = self.certs.trust.as_mut() else {
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
                .certs
                .trust
                .as_ref()
                .is_some_and(|t| t.is_revoked(&self.peers[i].key))
            {
                self.cut_off_revoked(now, p);
            }
        }
        for i in 0..self.peers.len() {
            let p = PeerIdx(i as u16);
            if self.peers[i].is_linked() && Some(p) != from {
                self.send_revocations(now, p);
            }
        }
        self.settle(now);
        Ok(true)
    }

    /// A revoked member: its sessions end now (no grace), nothing more is
    /// sent to it, and the overlay forgets the link. Its handshakes are
    /// refused from now on.
    fn cut_off_revoked(&mut self, now: Instant, p: PeerIdx) {
        let peer = &mut *self.peers[usize::from(p.0)];
        log::warn!("{} is revoked: link closed", peer.name());
        peer.role.wanted = false;
        peer.end_closing();
        if let Some(pending) = peer.hs.pending.take() {
            self.index.by_session.remove(&pending.local_index);
        }
        let by_index = &mut self.index.by_session;
        peer.sessions.clear(|idx| {
            by_index.remove(&idx);
        });
        for buf in core::mem::take(&mut peer.hs.waiting) {
            self.drop_buf(buf, DropReason::CertRevoked);
        }
        self.touch(p);
        self.unlink(now, p);
    }

    /// Sends the lists we hold to link `p`, each in parts.
    pub(super) fn send_revocations(&mut self, now: Instant, p: PeerIdx) {
        let Some(trust) = self.certs.trust.as_ref() else {
            return;
        };
        self.peers[usize::from(p.0)].trust.lists.sent = Some(now);
        let lists: Vec<Vec<u8>> = trust
            .revocations
            .iter()
            .filter_map(|r| r.encode().ok())
            .collect();
        for bytes in lists {
            let count = bytes.len().div_ceil(PART);
            for (i, part) in bytes.chunks(PART).enumerate() {
                let mut msg = Vec::with_capacity(PART + 4);
                RevocationPart {
                    index: i as u8,
                    count: count as u8,
                    part,
                }
                .emit(&mut msg);
                match self.pool.alloc_with(&msg) {
                    Some(buf) => self.send_to_peer(now, p, MsgType::Control, buf),
                    None => self.stats.count(DropReason::PoolEmpty),
                }
            }
        }
    }

    /// Tells link `p` the serials of the lists we hold, if a while has
    /// passed since we last did (called from the link's timers).
    pub(super) fn tell_serials(&mut self, now: Instant, p: PeerIdx) {
        let Some(trust) = self.certs.trust.as_ref() else {
            return;
        };
        let peer = &mut *self.peers[usize::from(p.0)];
        let due = peer
            .trust
            .lists
            .told
            .map_or(true, |t| now.saturating_since(t) >= SERIALS_EVERY);
        if !peer.is_linked() || !due {
            return;
        }
        peer.trust.lists.told = Some(now);
        let serials = RevocationSerials {
            lists: trust
                .revocations
                .iter()
                .take(MAX_SERIALS)
                .map(|r| (r.issuer, r.serial))
                .collect(),
        };
        let mut msg = Vec::with_capacity(4 + MAX_SERIALS * 40);
        serials.emit(&mut msg);
        match self.pool.alloc_with(&msg) {
            Some(buf) => self.send_to_peer(now, p, MsgType::Control, buf),
            None => self.stats.count(DropReason::PoolEmpty),
        }
    }

    /// Link `p` told us the serials it holds: if we hold a newer list (or
    /// one it lacks), it gets our lists, unless it got them a moment ago.
    pub(super) fn serials_from(&mut self, now: Instant, p: PeerIdx, msg: &[u8]) {
        let Some(trust) = self.certs.trust.as_ref() else {
            return self.stats.count(DropReason::BadType);
        };
        let Ok(theirs) = RevocationSerials::parse(msg) else {
            return self.stats.count(DropReason::BadLength);
        };
        let behind = trust
            .revocations
            .iter()
            .any(|r| theirs.serial(&r.issuer).map_or(true, |s| s < r.serial));
        let peer = &*self.peers[usize::from(p.0)];
        let spaced = peer
            .trust
            .lists
            .sent
            .map_or(true, |t| now.saturating_since(t) >= RESEND_SPACING);
        if behind && spaced && peer.is_linked() {
            self.send_revocations(now, p);
        }
    }

    /// A part of a revocation list from link `p`.
    pub(super) fn revocations_from(&mut self, now: Instant, p: PeerIdx, msg: &[u8]) {
        if self.certs.trust.is_none() {
            // Lists mean nothing without certificates: nothing is kept.
            return self.stats.count(DropReason::BadType);
        }
        let Ok(RevocationPart { index, count, part }) = RevocationPart::parse(msg) else {
            return self.stats.count(DropReason::CertInvalid);
        };
        let (index, count) = (usize::from(index), usize::from(count));
        if count > MAX_PARTS {
            return self.stats.count(DropReason::CertInvalid);
        }
        // This link's slot (a new list from it starts over), a free
        // one, or the one of a link whose list stopped coming.
        let slots = &mut self.certs.crl_in;
        let at = match slots.iter().position(|r| r.from == p) {
            Some(i) if slots[i].got.len() == count => i,
            Some(i) => {
                slots[i] = Reassembly::new(p, now, count);
                i
            }
            None if slots.len() < REASSEMBLY_SLOTS => {
                slots.push(Reassembly::new(p, now, count));
                slots.len() - 1
            }
            None => {
                let stale = (0..slots.len())
                    .filter(|&i| now.saturating_since(slots[i].started) >= REASSEMBLY_TIMEOUT)
                    .min_by_key(|&i| slots[i].started);
                let Some(i) = stale else {
                    // Every slot busy: this list comes again from another
                    // neighbour, or on the next link.
                    return;
                };
                slots[i] = Reassembly::new(p, now, count);
                i
            }
        };
        let r = &mut slots[at];
        r.bytes[index * PART..index * PART + part.len()].copy_from_slice(part);
        r.got[index] = true;
        if index + 1 == count {
            r.last_len = part.len();
        }
        if !r.got.iter().all(|&g| g) {
            return;
        }
        let r = self.certs.crl_in.swap_remove(at);
        let len = (r.got.len() - 1) * PART + r.last_len;
        let list = match Revocations::decode(&r.bytes[..len]) {
            Ok(l) => l,
            Err(_) => return self.stats.count(DropReason::CertInvalid),
        };
        match self.offer_revocations(now, list, Some(p)) {
            Ok(_) => {}
            Err(e) => self.stats.count(DropReason::of_cert(e)),
        }
    }
}
