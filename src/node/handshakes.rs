//! Handshakes: answering inits, completing our own, and the peer table
//! behind them (static peers, and dynamic ones met through the overlay or
//! a bootstrap endpoint whose key we did not know). Starting and retrying
//! our own attempts is `attempts`.

use super::peer::{self, Peer, Pending};
use super::{DropReason, Node, Path, PeerConfig, PeerIdx, Target};
use crate::buf::PacketBuf;
use crate::crypto::handshake::{self, Completed, HandshakeError};
use crate::crypto::NodeKey;
use crate::overlay::Addr;
use crate::rand::Rng;
use crate::time::Instant;
use crate::wire::endpoint::Endpoint;
use crate::wire::overlay::Endpoints;
use std::net::SocketAddr;
use std::time::Duration;

/// Attempts before a dynamic peer (or one bootstrap round) is given up.
pub const DYNAMIC_ATTEMPTS: u32 = 4;
/// Attempts while linking a node through NATs (~8 s of punching).
pub const PUNCH_ATTEMPTS: u32 = 7;
/// Pause between bootstrap rounds while we have no link at all.
pub const BOOT_PAUSE: Duration = Duration::from_secs(5);
/// Bootstrap (leaf) links to keep while joining (Brunet: 3). One is not
/// enough: if every node links only its first bootstrap, nodes started
/// together form separate components, each growing its own ring.
pub const LEAVES: usize = 3;
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

/// Endpoints of past overlay links kept as extra bootstraps.
pub const LEARNED_BOOTS: usize = 8;
/// Failed rounds after which a learned endpoint is forgotten.
pub const LEARNED_ROUNDS: u8 = 2;

/// A bootstrap endpoint: we know where, not who.
pub struct Boot {
    pub endpoint: Endpoint,
    pub pending: Option<Pending>,
    pub next_try: Instant,
    /// The peer this endpoint turned out to be, once linked.
    pub peer: Option<PeerIdx>,
    /// Learned from a past link rather than configured: tried only when we
    /// are cut off (no links, or too few to be in a ring). A node whose
    /// configured bootstraps are gone, or that joined through a node that
    /// was itself cut off, finds its way back this way.
    pub learned: Option<Learned>,
}

#[derive(Clone, Copy)]
pub struct Learned {
    pub at: Instant,
    /// Failed rounds in a row; at LEARNED_ROUNDS the slot is free again.
    pub failures: u8,
}

impl Boot {
    pub fn new(endpoint: Endpoint, now: Instant, learned: Option<Learned>) -> Boot {
        Boot {
            endpoint,
            pending: None,
            next_try: now,
            peer: None,
            learned,
        }
    }

    pub fn forgotten(&self) -> bool {
        self.learned.is_some_and(|l| l.failures >= LEARNED_ROUNDS)
    }
}

impl Node {
    /// Remembers where an overlay link reached its peer, as a bootstrap
    /// for later (the most recent LEARNED_BOOTS, configured ones aside).
    pub(super) fn learn_boot(&mut self, now: Instant, endpoint: Endpoint) {
        self.boots_dirty = true;
        if let Some(b) = self.boots.iter_mut().find(|b| b.endpoint == endpoint) {
            if let Some(l) = b.learned.as_mut() {
                *l = Learned {
                    at: now,
                    failures: 0,
                };
            }
            return;
        }
        let learned = Some(Learned {
            at: now,
            failures: 0,
        });
        let slots = self.boots.iter().filter(|b| b.learned.is_some()).count();
        if slots < LEARNED_BOOTS {
            self.boots.push(Boot::new(endpoint, now, learned));
            return;
        }
        // Reuse a forgotten slot, else the oldest idle one.
        let victim = (0..self.boots.len())
            .filter(|&b| self.boots[b].learned.is_some() && self.boots[b].pending.is_none())
            .min_by_key(|&b| {
                let boot = &self.boots[b];
                (!boot.forgotten(), boot.learned.map(|l| l.at))
            });
        if let Some(b) = victim {
            self.boots[b] = Boot::new(endpoint, now, learned);
        }
    }

    pub(super) fn handshake_drop(&mut self, e: HandshakeError) {
        let reason = match e {
            HandshakeError::Malformed => DropReason::BadLength,
            HandshakeError::UnknownPeer => DropReason::UnknownPeer,
            HandshakeError::NotForUs => DropReason::NotForUs,
            HandshakeError::Auth => DropReason::AuthFailure,
            HandshakeError::NoCert => DropReason::CertMissing,
            HandshakeError::Cert(c) => DropReason::of_cert(c),
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
    fn unix_secs(&self, now: Instant) -> u64 {
        crate::time::unix_secs(self.wall_origin_us, now)
    }

    /// Whether a peer presenting `key` (and `cert`) may link: in
    /// certificate mode its certificate must check out against our CAs;
    /// otherwise its key must be listed (or any key, in an open overlay).
    fn trust_check(
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
        match &self.my_cert {
            Some(c) => (CredType::Certificate, c.clone()),
            None => (CredType::PublicKey, self.identity.public().0.to_vec()),
        }
    }

    fn is_trusted(&self, key: &NodeKey) -> bool {
        self.trust_any || self.by_key.contains_key(key)
    }

    /// The peer for `key`, creating a dynamic one if policy allows and
    /// there is room (reusing the slot of a forgotten dynamic peer).
    pub(super) fn find_or_add_peer(
        &mut self,
        key: NodeKey,
        endpoint: Option<Endpoint>,
    ) -> Option<PeerIdx> {
        if let Some(&p) = self.by_key.get(&key) {
            return Some(p);
        }
        if key == self.identity.public() || !self.is_trusted(&key) {
            return None;
        }
        let cfg = PeerConfig {
            name: crate::overlay::Addr::of_key(&key).to_string(),
            key,
            endpoint: None,
        };
        let mut fresh = Peer::new(&cfg);
        fresh.endpoint = endpoint;
        fresh.dynamic = true;
        let reusable = self.peers.iter().position(|p| {
            p.dynamic
                && !p.wanted
                && !p.linked
                && p.pending.is_none()
                && p.sessions.current.is_none()
                && p.sessions.next.is_none()
                && p.sessions.next_alt.is_none()
                && p.sessions.previous.is_none()
                && p.waiting.is_empty()
        });
        let p = match reusable {
            Some(i) => {
                let old = self.peers[i].key;
                self.by_key.remove(&old);
                self.macs.forget_peer(PeerIdx(i as u16));
                self.peers[i] = fresh;
                // A bootstrap that had turned out to be the old peer no
                // longer is.
                for b in &mut self.boots {
                    if b.peer == Some(PeerIdx(i as u16)) {
                        b.peer = None;
                    }
                }
                self.boots_dirty = true;
                PeerIdx(i as u16)
            }
            None if self.peers.len() < self.max_peers => {
                // Grown one at a time: peers are few and live long.
                self.peers.reserve_exact(1);
                self.peers.push(fresh);
                PeerIdx((self.peers.len() - 1) as u16)
            }
            None => return None,
        };
        self.by_key.insert(key, p);
        self.touch(p);
        Some(p)
    }

    pub(super) fn handle_init(&mut self, now: Instant, from: Path, buf: PacketBuf) {
        let admitted = match from {
            Path::Direct(ep) => self.init_admission(now, ep, &buf),
            Path::Overlay(_) => self
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
        let proven = from.tcp
            || init
                .cookie()
                .is_some_and(|c| self.cookies.valid(now, &self.sysrand, &from, c));
        let limited = |ok: bool| ok.then_some(()).ok_or(DropReason::RateLimited);
        if proven {
            return limited(self.limiter.allow_proven(from.ip(), now));
        }
        if !self.limiter.under_load(now) {
            return limited(self.limiter.allow(from.ip(), now));
        }
        let sender = init.sender();
        let Some(cookie) = self.cookies.reply(now, &self.sysrand, &from) else {
            return Err(DropReason::RateLimited);
        };
        match self.pool.alloc_with(&emit_cookie_reply(sender, &cookie)) {
            Some(reply) => self.queue_transmit(from, reply),
            None => self.stats.count(DropReason::PoolEmpty),
        }
        Err(DropReason::CookieSent)
    }

    /// A cookie reply to one of our inits: the responder is under load and
    /// wants our address proven. The cookie goes on our inits to that
    /// endpoint from now on. A new cookie has the handshake retried at once
    /// without using up an attempt (a punch's inits to other candidates
    /// may still be answered: the pending init stays valid); a cookie for
    /// an endpoint that already gave us one is only kept.
    pub(super) fn handle_cookie_reply(&mut self, now: Instant, from: Endpoint, buf: PacketBuf) {
        let parsed = crate::wire::handshake::parse_cookie_reply(self.pool.data(&buf));
        let Ok((receiver, cookie)) = parsed else {
            return self.drop_buf(buf, DropReason::BadLength);
        };
        self.pool.free(buf);
        let target = match self.by_index.get(&receiver) {
            Some(&Target::Ctm(_)) => return self.stats.count(DropReason::Unsolicited),
            Some(&t) => t,
            None => return self.stats.count(DropReason::UnknownSession),
        };
        let fresh = self.cookies.for_endpoint(now, &from).is_none();
        let Some(pending) = self
            .pending_slot(target)
            .as_mut()
            .filter(|x| x.local_index == receiver)
        else {
            return self.stats.count(DropReason::UnknownSession);
        };
        if fresh {
            log::debug!("cookie from {from}: handshake retried with it");
            pending.next_retry = now;
            pending.attempts = pending.attempts.saturating_sub(1);
        }
        self.cookies.remember(now, from, cookie);
        match target {
            Target::Peer(p) => self.touch(p),
            _ => self.boots_dirty = true,
        }
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
        let mut udp = candidates.iter().filter(|c| !c.tcp).copied();
        let Some(first) = udp.next() else {
            return self.stats.count(DropReason::NoEndpoint);
        };
        if !self.limiter.allow(first.ip(), now) {
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
        let (trust_any, by_key) = (self.trust_any, &self.by_key);
        let (trust, unix) = (self.trust.as_ref(), self.unix_secs(now));
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
            {
                self.stats.count(DropReason::TooManyPeers);
                return None;
            }
        };
        self.touch(p);
        let peer = &self.peers[usize::from(p.0)];
        let old = init.timestamp <= peer.last_init_timestamp;
        let quiet = peer
            .last_rx
            .map_or(true, |t| now.saturating_since(t) >= CLOCK_BACK_QUIET);
        let again = peer
            .answer
            .as_ref()
            .is_some_and(|a| a.timestamp == init.timestamp);
        if old && (again || !quiet) {
            return self.answer_again(now, p, init.timestamp, from, also);
        }
        let provisional = old;
        self.withdraw_if_crossed(now, p, &init.peer);
        let Some(mut out) = self.pool.alloc() else {
            {
                self.stats.count(DropReason::PoolEmpty);
                return None;
            }
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
            &self.sysrand,
            &init,
            local_index,
            observed,
            now,
            space,
        );
        let (session, len) = match result {
            Ok(r) => r,
            Err(e) => {
                self.by_index.remove(&local_index);
                self.pool.free(out);
                {
                    self.handshake_drop(e);
                    return None;
                }
            }
        };
        self.pool.set_len(&mut out, len);
        let peer = &mut self.peers[usize::from(p.0)];
        if !provisional {
            peer.last_init_timestamp = init.timestamp;
        }
        let overlay = matches!(from, Path::Overlay(_));
        let answer = peer::Answer {
            timestamp: init.timestamp,
            provisional: provisional.then_some(local_index),
            bytes: self.pool.data(&out).to_vec(),
            direct_sent: !overlay,
            overlay_sent: overlay,
        };
        peer.answer = Some(Box::new(answer));
        if init.cert.is_some() {
            peer.cert = init.cert.clone().map(Box::new);
        }
        match endpoint {
            // A provisional answer moves nothing: the session's first
            // message (authenticated) moves the endpoint if it must.
            _ if provisional => log::info!("{}: an init from an older clock, answered", peer.name),
            // An init that came over the overlay proves no path, and its
            // candidates are the request's word: traffic stays where it is
            // (routed, or in a tunnel, or nowhere yet) until the initiator's
            // first message arrives directly.
            Some(_) if embedded => {}
            // A tunnel stays until a direct path is proven (the initiator's
            // first message on this session, arriving directly, does it).
            Some(_) if peer.relay.is_some() => {}
            Some(ep) => {
                peer.endpoint = Some(ep);
                peer.proven = Some(ep);
                peer.routed = false;
                peer.punching = false;
            }
            // A routed handshake from a node we have a link with (or a
            // tunnel) keeps using it (the session is end to end either way).
            None => peer.routed = !peer.linked && peer.relay.is_none(),
        }
        let peer = &mut self.peers[usize::from(p.0)];
        peer.wanted = true;
        // The peer links again right after a close: a new link, not the old.
        peer.closing_since = None;
        if let Some(old) = peer.sessions.install_responded(session) {
            self.by_index.remove(&old);
        }
        log::debug!("handshake from {} ({:?}) answered", peer.name, from);
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
        let peer = &mut self.peers[usize::from(p.0)];
        let again = peer.answer.as_mut().filter(|a| {
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
        log::debug!("handshake from {} ({from:?}) answered again", peer.name);
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
        if let Some(cookie) = self.cookies.for_endpoint(now, &to).filter(|_| init) {
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
                self.run_overlay_actions(now);
            }
        }
    }

    /// Both sides started a handshake at once (an init from the peer while
    /// our own fresh one is out): one link, decided by key order. The
    /// smaller key withdraws its init and only answers; the larger key
    /// answers too, but the withdrawn side never completes that answer, so
    /// the pair ends with one live session instead of two crossed ones
    /// (which a third handshake could then split, each side sending on a
    /// session the other had just evicted). Only a fresh first attempt
    /// counts as a crossing, whichever way each init went: a punch sends
    /// its inits straight and over the overlay at once, and two sides that
    /// each complete their own over a different path end on sessions the
    /// other may evict (seen in the simulator as traffic lost for a second
    /// after a pair's punch).
    fn withdraw_if_crossed(&mut self, now: Instant, p: PeerIdx, theirs: &NodeKey) {
        let window = self.timers.handshake_retry_base;
        let ours = self.identity.public();
        let peer = &mut self.peers[usize::from(p.0)];
        let fresh = peer.pending.as_ref().is_some_and(|x| {
            x.attempts <= 1 && now.saturating_since(x.sent_at) < window && x.state.is_some()
        });
        if fresh && ours < *theirs {
            log::debug!("crossed handshake with {}: theirs goes ahead", peer.name);
            if let Some(pending) = peer.pending.take() {
                // Its index stays registered until the answer comes.
                if let Some(old) = peer.withdrawn.replace(pending.local_index) {
                    self.by_index.remove(&old);
                }
            }
        }
    }

    pub(super) fn handle_resp(&mut self, now: Instant, from: Path, buf: PacketBuf) {
        let receiver = match handshake::resp_receiver(self.pool.data(&buf)) {
            Ok(r) => r,
            Err(e) => {
                self.pool.free(buf);
                return self.handshake_drop(e);
            }
        };
        let Some(&target) = self.by_index.get(&receiver) else {
            return self.drop_buf(buf, DropReason::UnknownSession);
        };
        if let Target::Peer(p) = target {
            let peer = &mut self.peers[usize::from(p.0)];
            if peer.withdrawn == Some(receiver) {
                peer.withdrawn = None;
                self.by_index.remove(&receiver);
                return self.pool.free(buf);
            }
        }
        let expected = match target {
            Target::Peer(p) => Some(self.peers[usize::from(p.0)].key),
            Target::Boot(_) | Target::Ctm(_) => None,
        };
        let (trust_any, by_key) = (self.trust_any, &self.by_key);
        let (trust, unix) = (self.trust.as_ref(), self.unix_secs(now));
        let trusted = |k: &NodeKey, cert: Option<&crate::crypto::cert::Cert>| {
            if expected.is_some_and(|e| *k != e) {
                return Err(HandshakeError::UnknownPeer);
            }
            let listed = expected.is_some() || by_key.contains_key(k);
            Self::trust_check(trust, trust_any, listed, k, cert, unix)
        };
        let pending = match target {
            Target::Peer(p) => &mut self.peers[usize::from(p.0)].pending,
            Target::Boot(b) => &mut self.boots[usize::from(b)].pending,
            Target::Ctm(k) => &mut self.ctm_inits[usize::from(k)],
        };
        let Some(pend) = pending.as_mut().filter(|x| x.local_index == receiver) else {
            return self.drop_buf(buf, DropReason::UnknownSession);
        };
        let result = handshake::finish_with(&mut pend.state, self.pool.data(&buf), trusted, now);
        self.pool.free(buf);
        let done = match result {
            Ok(d) => d,
            Err(e) => return self.handshake_drop(e),
        };
        let endpoint = match from {
            Path::Direct(ep) => Some(ep),
            Path::Overlay(src) if Addr::of_key(&done.peer) == src => None,
            Path::Overlay(_) => return self.stats.count(DropReason::OverlayForged),
        };
        let sent_at = pend.sent_at;
        *pending = None;
        self.boots_dirty = true;
        let p = match target {
            Target::Peer(p) => p,
            Target::Boot(b) => match self.find_or_add_peer(done.peer, endpoint) {
                Some(p) => {
                    self.by_index.insert(receiver, Target::Peer(p));
                    self.peers[usize::from(p.0)].wanted = true;
                    self.peers[usize::from(p.0)].leaf = true;
                    self.boots[usize::from(b)].peer = Some(p);
                    if let Some(l) = self.boots[usize::from(b)].learned.as_mut() {
                        l.failures = 0;
                    }
                    p
                }
                None => {
                    self.by_index.remove(&receiver);
                    return self.stats.count(DropReason::TooManyPeers);
                }
            },
            Target::Ctm(k) => match self.find_or_add_peer(done.peer, endpoint) {
                Some(p) => {
                    self.by_index.insert(receiver, Target::Peer(p));
                    self.peers[usize::from(p.0)].wanted = true;
                    let ctm = self.ctm_ids[usize::from(k)];
                    if let Some(ov) = self.overlay.as_mut() {
                        ov.ctm_linked(now, done.peer, ctm);
                    }
                    p
                }
                None => {
                    self.by_index.remove(&receiver);
                    return self.stats.count(DropReason::TooManyPeers);
                }
            },
        };
        self.complete_handshake(now, p, done, endpoint, sent_at);
    }

    /// `endpoint`: where the answer came from, `None` if over the overlay.
    fn complete_handshake(
        &mut self,
        now: Instant,
        p: PeerIdx,
        done: Completed,
        endpoint: Option<Endpoint>,
        sent_at: Instant,
    ) {
        self.touch(p);
        let peer = &mut self.peers[usize::from(p.0)];
        if let Some(stale) = peer.pending.take() {
            self.by_index.remove(&stale.local_index);
        }
        if done.cert.is_some() {
            peer.cert = done.cert.clone().map(Box::new);
        }
        match endpoint {
            Some(ep) => {
                peer.endpoint = Some(ep);
                peer.proven = Some(ep);
                peer.routed = false;
                peer.punching = false;
                if !done.observed.ip().is_unspecified() {
                    peer.observed = Some(done.observed);
                }
            }
            None => peer.routed = !peer.linked && peer.relay.is_none(),
        }
        if endpoint.is_some() {
            // A direct path, proven both ways: a tunnel is no longer
            // needed, and whatever the old path's watch thought is moot.
            self.peers[usize::from(p.0)].watch.reset();
            if let Some(ov) = self.overlay.as_mut() {
                ov.set_suspect(p, false);
            }
            self.end_tunnel(p);
        }
        // The overlay copy of a punch's init answered first: the session
        // carries traffic over the overlay, and the punch goes on.
        let resume_punch = endpoint.is_none() && self.peers[usize::from(p.0)].punching;
        let peer = &mut self.peers[usize::from(p.0)];
        peer.last_handshake = Some(now);
        peer.rtt = Some(now.saturating_since(sent_at));
        if let Some(old) = peer.sessions.install_initiated(done.session) {
            self.by_index.remove(&old);
        }

        self.stats.handshakes_completed += 1;
        log::info!("session with {} ({:?}) established", peer.name, endpoint);
        if let Some(ep) = endpoint.filter(|e| !e.tcp) {
            // Where this peer saw us: our reflexive endpoint, if any.
            if self.nat.observe(ep.addr, done.observed, now) {
                self.endpoints_changed(now);
            }
        }
        // Confirm the session to the responder at once (it may not send on
        // it before hearing from us), then release what waited for it.
        self.send_ping(now, p);
        self.release_waiting(now, p);
        self.link_up(now, p);
        if resume_punch && self.peers[usize::from(p.0)].pending.is_none() {
            self.start_handshake(now, Target::Peer(p));
        }
    }

    pub(super) fn new_index(&mut self, t: Target) -> u32 {
        loop {
            let idx = self.rng.next_u32();
            if idx != 0 && !self.by_index.contains_key(&idx) {
                self.by_index.insert(idx, t);
                return idx;
            }
        }
    }
}
