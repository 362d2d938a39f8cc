//! Handshakes we answer: admission (rate limits, cookies), the trust
//! check of the initiator's credential, the replay guard (with the clock
//! that went back), and the answer — once per way an init came. Starting
//! and retrying our own is `attempts`, completing them `completion`, the
//! peer table `peers`.

use super::peer;
use super::{DropReason, Node, Path, PeerIdx, Target};
use crate::buf::PacketBuf;
use crate::crypto::handshake::{self, HandshakeError};
use crate::crypto::NodeKey;
use crate::overlay::Addr;
use crate::time::Instant;
use crate::wire::endpoint::Endpoint;
use crate::wire::overlay::Endpoints;
use std::net::SocketAddr;
use std::time::Duration;

/// Attempts before a dynamic peer (or one bootstrap round) is given up.
pub const DYNAMIC_ATTEMPTS: u32 = 4;
/// Attempts while linking a node through NATs (~8 s of punching).
pub const PUNCH_ATTEMPTS: u32 = 7;
/// Connect-to-me handshakes in flight (near right, near left, shortcut,
/// one spare); a new one replaces the oldest.
pub const CTM_INITS: usize = 4;

/// Candidate endpoints tried at once when linking a node (local, reflexive
/// and predicted ones, and TCP).
pub const MAX_CANDIDATES: usize = 8;
/// Hole punching: the first retry after this, doubling up to the max.
pub const PUNCH_RETRY_BASE: Duration = Duration::from_millis(250);
pub const PUNCH_RETRY_MAX: Duration = Duration::from_secs(2);
/// A punch that has not succeeded by this attempt (~0.75 s in) gets a
/// tunnel edge built alongside: most punches that work do so in the first
/// round trip, and the tunnel carries the traffic until the punch (which
/// goes on) succeeds, or for good. Started with the second attempt (a
/// quarter second in) when our own side makes a punch unlikely (see
/// `punch_unlikely`).
pub const TUNNEL_ALONGSIDE_ATTEMPT: u32 = 3;
/// TCP endpoints are tried from this attempt on (UDP first).
pub const TCP_AFTER_ATTEMPTS: u32 = 3;
/// A sub-ring member's carried endpoint (its host, over the public ring)
/// is tried from this attempt on, unless it is all we know: UDP gets the
/// first tries, since a punch needs both sides' inits and an answer over
/// the public ring would otherwise often come first and keep the pair on
/// the longer path.
pub const CARRIED_AFTER_ATTEMPTS: u32 = 3;
/// A bootstrap's TCP port is tried from this attempt on, while we have no
/// link: one unanswered UDP init (1 s) is enough to suspect a network that
/// drops UDP, and a node that cannot join is useless.
pub const BOOT_TCP_AFTER_ATTEMPTS: u32 = 2;
/// An init no newer than the newest seen from a peer is a replay, unless
/// nothing has come from the peer on any session for this long: then it
/// may be the peer with a clock that went back (a router without a
/// real-time clock, rebooted before NTP). Such an init is answered
/// provisionally: it moves nothing (endpoint, replay guard) until the
/// peer uses the session, which only the key's holder can. WireGuard
/// instead refuses until the responder restarts.
pub const CLOCK_BACK_QUIET: Duration = Duration::from_secs(15);
/// First retransmission delay of a handshake routed over the overlay.
pub const ROUTED_RETRY_BASE: Duration = Duration::from_secs(3);

impl Node {
    pub(super) fn handshake_drop(&mut self, e: HandshakeError) {
        let reason = match e {
            HandshakeError::Malformed => DropReason::BadLength,
            HandshakeError::UnknownPeer => DropReason::UnknownPeer,
            HandshakeError::NotForUs => DropReason::NotForUs,
            HandshakeError::Auth => DropReason::AuthFailure,
            HandshakeError::NoCert => DropReason::CertMissing,
            HandshakeError::Cert(c) => DropReason::of_cert(c),
            HandshakeError::Revoked { key, .. } => return self.refused_revoked(&key),
        };
        self.stats.count(reason);
        if matches!(e, HandshakeError::NoCert | HandshakeError::Cert(_)) {
            let n = self.stats.drops(reason);
            if n <= 8 || n % 1024 == 0 {
                let why = match e {
                    HandshakeError::Cert(c) => c.describe(),
                    _ => "no certificate (a bare key) while certificates are required",
                };
                log::warn!("handshake refused: {why} ({} so far: {n})", reason.name());
            }
        }
    }

    /// Unix seconds now (certificates' validity is wall-clock time).
    pub(super) fn unix_secs(&self, now: Instant) -> u64 {
        crate::time::unix_secs(self.env.wall_origin_us, now)
    }

    /// Whether a peer presenting `key` (and `cert`) may link: in
    /// certificate mode its certificate must check out against our CAs;
    /// otherwise its key must be listed (or any key, in an open overlay).
    pub(super) fn trust_check(
        trust: Option<&crate::crypto::cert::Trust>,
        open: bool,
        listed: bool,
        key: &NodeKey,
        cert: Option<&crate::crypto::cert::Cert>,
        unix: u64,
    ) -> Result<(), HandshakeError> {
        match (trust, cert) {
            (Some(t), Some(c)) => t.check(c, key, unix).map_err(HandshakeError::Cert),
            (Some(_), None) => Err(HandshakeError::NoCert),
            (None, _) if open || listed => Ok(()),
            (None, _) => Err(HandshakeError::UnknownPeer),
        }
    }

    /// What we present in handshakes: our certificate, or our key.
    pub(super) fn credential(&self) -> (crate::wire::handshake::CredType, Vec<u8>) {
        use crate::wire::handshake::CredType;
        match &self.certs.mine {
            Some(c) => (CredType::Certificate, c.clone()),
            None => (CredType::PublicKey, self.identity.public().0.to_vec()),
        }
    }

    pub(super) fn is_trusted(&self, key: &NodeKey) -> bool {
        self.settings.trust_any || self.index.by_key.contains_key(key)
    }

    pub(super) fn handle_init(&mut self, now: Instant, from: Path, buf: PacketBuf) {
        let admitted = match from {
            Path::Direct(ep) => self.init_admission(now, ep, &buf),
            Path::Overlay(_) => self
                .guards
                .limiter
                .allow_path(from, now)
                .then_some(())
                .ok_or(DropReason::RateLimited),
        };
        if let Err(reason) = admitted {
            return self.drop_buf(buf, reason);
        }
        let checked = self.check_init(now, self.pool.data(&buf));
        self.pool.free(buf);
        self.respond(now, from, checked);
    }

    /// Whether an init that came straight from `from` gets handshake work,
    /// checked before any: a valid cookie proves the source's address and
    /// draws on the proven budget; while under load, an unproven source
    /// gets a cookie reply instead; otherwise the usual limits apply. A
    /// TCP connection has proven its address already.
    fn init_admission(
        &mut self,
        now: Instant,
        from: Endpoint,
        buf: &PacketBuf,
    ) -> Result<(), DropReason> {
        use crate::wire::handshake::{emit_cookie_reply, InitPacket};
        let Ok(init) = InitPacket::new_checked(self.pool.data(buf)) else {
            return Err(DropReason::BadLength);
        };
        let proven = from.is_tcp()
            || init
                .cookie()
                .is_some_and(|c| self.guards.cookies.valid(now, &self.env.sysrand, &from, c));
        let limited = |ok: bool| ok.then_some(()).ok_or(DropReason::RateLimited);
        if proven {
            return limited(self.guards.limiter.allow_proven(from.ip(), now));
        }
        if !self.guards.limiter.under_load(now) {
            return limited(self.guards.limiter.allow(from.ip(), now));
        }
        let sender = init.sender();
        let Some(cookie) = self.guards.cookies.reply(now, &self.env.sysrand, &from) else {
            return Err(DropReason::RateLimited);
        };
        match self.pool.alloc_with(&emit_cookie_reply(sender, &cookie)) {
            Some(reply) => self.queue_transmit(from, reply),
            None => self.stats.count(DropReason::PoolEmpty),
        }
        Err(DropReason::CookieSent)
    }

    /// A handshake init that came inside a connect-to-me request: answered
    /// like one that came from its first candidate endpoint, under the same
    /// limits, and sent to every UDP candidate (one of them gets through;
    /// sending to all is also our half of a hole punch).
    pub(super) fn answer_embedded_init(&mut self, now: Instant, all: &[Endpoint], init: &[u8]) {
        let candidates: Endpoints = all
            .iter()
            .filter(|c| self.underlay_ok(c))
            .copied()
            .collect();
        for _ in candidates.len()..all.len() {
            self.stats.count(DropReason::CandidateInVpn);
        }
        // Datagram candidates; a carried one (a sub-ring member's host)
        // only if there is nothing else: its answer would often come first
        // and keep the pair on the public ring while the punch could work
        // (the requester adds it itself from its third attempt).
        let only_carried = candidates.iter().all(|c| c.is_carried());
        let mut udp = candidates
            .iter()
            .filter(|c| !c.is_tcp() && (!c.is_carried() || only_carried))
            .copied();
        let Some(first) = udp.next() else {
            return self.stats.count(DropReason::NoEndpoint);
        };
        if !self.guards.limiter.allow(first.ip(), now) {
            return self.stats.count(DropReason::RateLimited);
        }
        let checked = self.check_init(now, init);
        // One answer per address: the candidates are the request's word,
        // and an init copied into a request that names a victim's address
        // at eight ports must not make eight datagrams.
        let mut also = Endpoints::new();
        for c in udp {
            if c.ip() != first.ip() && also.iter().all(|a| a.ip() != c.ip()) {
                also.push(c);
            }
        }
        also.truncate(MAX_CANDIDATES - 1);
        // The candidates are kept for nothing more: they are the request's
        // word (the init is not bound to them), and the requester's first
        // message on the new session proves the path that works.
        self.respond_to(now, Path::Direct(first), checked, &also, true);
    }

    fn check_init(
        &self,
        now: Instant,
        init: &[u8],
    ) -> Result<handshake::ValidInit, HandshakeError> {
        let (trust_any, by_key) = (self.settings.trust_any, &self.index.by_key);
        let (trust, unix) = (self.certs.trust.as_ref(), self.unix_secs(now));
        handshake::check_init_with(init, &self.identity, |k, cert| {
            Self::trust_check(trust, trust_any, by_key.contains_key(k), k, cert, unix)
        })
    }

    fn respond(
        &mut self,
        now: Instant,
        from: Path,
        checked: Result<handshake::ValidInit, HandshakeError>,
    ) {
        self.respond_to(now, from, checked, &[], false);
    }

    /// Answers a valid init that came from `from`, also sending the answer
    /// to each of `also`. `embedded`: the init came inside a connect-to-me
    /// over the overlay and `from` is only the first candidate: nothing was
    /// observed, and no path is proven.
    fn respond_to(
        &mut self,
        now: Instant,
        from: Path,
        checked: Result<handshake::ValidInit, HandshakeError>,
        also: &[Endpoint],
        embedded: bool,
    ) -> Option<PeerIdx> {
        let init = match checked {
            Ok(init) => init,
            Err(e) => {
                if let (HandshakeError::Revoked { key, sender }, Path::Direct(ep)) = (e, from) {
                    self.send_refusal(ep, &key, sender);
                }
                self.handshake_drop(e);
                return None;
            }
        };
        let endpoint = match from {
            Path::Direct(ep) => Some(ep),
            Path::Overlay(src) if Addr::of_key(&init.peer) == src => None,
            // Routed from an address that is not the signer's.
            Path::Overlay(_) => {
                self.stats.count(DropReason::OverlayForged);
                return None;
            }
        };
        // Where an embedded init's answer goes is the request's word, not
        // the peer's address.
        let Some(p) = self.find_or_add_peer(init.peer, endpoint.filter(|_| !embedded)) else {
            self.stats.count(DropReason::TooManyPeers);
            return None;
        };
        self.touch(p);
        let peer = &*self.peers[usize::from(p.0)];
        let old = init.timestamp <= peer.hs.last_init_timestamp;
        let quiet = peer
            .live
            .last_rx
            .map_or(true, |t| now.saturating_since(t) >= CLOCK_BACK_QUIET);
        let again = peer
            .hs
            .answer
            .as_ref()
            .is_some_and(|a| a.timestamp == init.timestamp);
        if old && (again || !quiet) {
            return self.answer_again(now, p, init.timestamp, from, also);
        }
        let provisional = old;
        self.withdraw_if_crossed(now, p, &init.peer);
        let Some(mut out) = self.pool.alloc() else {
            self.stats.count(DropReason::PoolEmpty);
            return None;
        };
        let local_index = self.new_index(Target::Peer(p));
        let (cred_type, cred) = self.credential();
        let space = self.pool.space_mut(&out);
        // Over the overlay there is no underlay address to report.
        let observed = endpoint
            .filter(|_| !embedded)
            .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |e| e.addr);
        let result = handshake::respond_with(
            &self.identity,
            handshake::Credential {
                ty: cred_type,
                bytes: &cred,
            },
            self.settings.fast_aes,
            &self.env.sysrand,
            &init,
            local_index,
            observed,
            now,
            space,
        );
        let (session, len) = match result {
            Ok(r) => r,
            Err(e) => {
                self.index.by_session.remove(&local_index);
                self.pool.free(out);
                self.handshake_drop(e);
                return None;
            }
        };
        self.pool.set_len(&mut out, len);
        let peer = &mut *self.peers[usize::from(p.0)];
        if !provisional {
            peer.hs.last_init_timestamp = init.timestamp;
        }
        let overlay = matches!(from, Path::Overlay(_));
        let answer = peer::Answer {
            timestamp: init.timestamp,
            provisional: provisional.then_some(local_index),
            bytes: self.pool.data(&out).to_vec(),
            direct_sent: !overlay,
            overlay_sent: overlay,
        };
        peer.hs.answer = Some(Box::new(answer));
        if let Some(cert) = &init.cert {
            peer.take_cert(cert);
        }
        match endpoint {
            // A provisional answer moves nothing: the session's first
            // message (authenticated) moves the endpoint if it must.
            _ if provisional => {
                log::info!("{}: an init from an older clock, answered", peer.name())
            }
            // An init that came over the overlay proves no path, and its
            // candidates are the request's word: traffic stays where it is
            // (routed, or in a tunnel, or nowhere yet) until the initiator's
            // first message arrives directly.
            Some(_) if embedded => {}
            // A tunnel stays until a direct path is proven (the initiator's
            // first message on this session, arriving directly, does it).
            Some(_) if peer.relay().is_some() => {}
            Some(ep) => {
                peer.reach.endpoint = Some(ep);
                peer.reach.proven = Some(ep);
                peer.go_direct();
                peer.reach.punching = false;
            }
            // A routed handshake from a node we have a link with (or a
            // tunnel) keeps using it (the session is end to end either way).
            None => peer.settle_without_endpoint(),
        }
        // The peer's endpoint may have moved (learned bootstraps compare them).
        self.strangers.boots_dirty = true;
        let peer = &mut *self.peers[usize::from(p.0)];
        peer.role.wanted = true;
        // The peer links again right after a close: a new link, not the old.
        peer.end_closing();
        if let Some(old) = peer.sessions.install_responded(session) {
            self.index.by_session.remove(&old);
        }
        log::debug!("handshake from {} ({:?}) answered", peer.name(), from);
        self.send_handshake_to_all(now, from, also, out);
        Some(p)
    }

    /// An init we answered already came again. The copy of a punch's init
    /// that took the other way (overlay or direct) gets the same answer,
    /// once: that answer is what gets through where the first did not (and
    /// sent directly, it opens our NAT to the initiator). Nothing else is
    /// learned from it: a replayed init proves no path. Anything older is
    /// a replay.
    fn answer_again(
        &mut self,
        now: Instant,
        p: PeerIdx,
        timestamp: u64,
        from: Path,
        also: &[Endpoint],
    ) -> Option<PeerIdx> {
        let overlay = matches!(from, Path::Overlay(_));
        let peer = &mut *self.peers[usize::from(p.0)];
        let again = peer.hs.answer.as_mut().filter(|a| {
            a.timestamp == timestamp
                && !(if overlay {
                    a.overlay_sent
                } else {
                    a.direct_sent
                })
        });
        let Some(answer) = again else {
            self.stats.count(DropReason::HandshakeReplay);
            return None;
        };
        if overlay {
            answer.overlay_sent = true;
        } else {
            answer.direct_sent = true;
        }
        let Some(out) = self.pool.alloc_with(&answer.bytes) else {
            self.stats.count(DropReason::PoolEmpty);
            return None;
        };
        log::debug!("handshake from {} ({from:?}) answered again", peer.name());
        self.send_handshake_to_all(now, from, also, out);
        Some(p)
    }

    /// Sends a handshake message to `first` and a copy to each of `also`.
    pub(super) fn send_handshake_to_all(
        &mut self,
        now: Instant,
        first: Path,
        also: &[Endpoint],
        out: PacketBuf,
    ) {
        for &ep in also {
            match self.pool.duplicate(&out) {
                Some(copy) => self.queue_handshake(now, ep, copy),
                None => self.stats.count(DropReason::PoolEmpty),
            }
        }
        self.send_handshake(now, first, out);
    }

    /// Queues a handshake message for `to`; an init carries the cookie
    /// `to` gave us, if we hold one.
    fn queue_handshake(&mut self, now: Instant, to: Endpoint, mut out: PacketBuf) {
        let init =
            self.pool.data(&out).get(1) == Some(&(crate::wire::MsgType::HandshakeInit as u8));
        if let Some(cookie) = self.guards.cookies.for_endpoint(now, &to).filter(|_| init) {
            match self.pool.append(&mut out, cookie.len()) {
                Some(space) => space.copy_from_slice(&cookie),
                None => return self.drop_buf(out, DropReason::BadLength),
            }
        }
        self.queue_transmit(to, out);
    }

    /// Sends a handshake message: to an endpoint, or routed to a ring
    /// address (the message rides in a routed overlay message).
    pub(super) fn send_handshake(&mut self, now: Instant, to: Path, out: PacketBuf) {
        match to {
            Path::Direct(ep) => self.queue_handshake(now, ep, out),
            Path::Overlay(dst) => {
                let bytes = self.pool.data(&out).to_vec();
                self.pool.free(out);
                let msg = crate::wire::overlay::OverlayMsg::Handshake(bytes);
                if let Some(ov) = self.overlay.as_mut() {
                    ov.send_routed(now, crate::wire::overlay::Mode::Exact, dst, &msg);
                }
            }
        }
    }
}
