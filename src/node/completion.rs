//! Handshakes we started, completed: a response is checked against our
//! pending init, the session installed, and the peer's link (or routed
//! session, or tunnel) brought up; crossed inits settle on one session.

use super::{DropReason, Node, Path, PeerIdx, Target};
use crate::buf::PacketBuf;
use crate::crypto::handshake::{self, Completed, HandshakeError};
use crate::crypto::NodeKey;
use crate::overlay::Addr;
use crate::time::Instant;
use crate::wire::endpoint::Endpoint;

impl Node {
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
    pub(super) fn withdraw_if_crossed(&mut self, now: Instant, p: PeerIdx, theirs: &NodeKey) {
        let window = self.timers.handshake_retry_base;
        let ours = self.identity.public();
        let peer = &mut *self.peers[usize::from(p.0)];
        let fresh = peer.hs.pending.as_ref().is_some_and(|x| {
            x.attempts <= 1 && now.saturating_since(x.sent_at) < window && x.state.is_some()
        });
        if fresh && ours < *theirs {
            log::debug!("crossed handshake with {}: theirs goes ahead", peer.name());
            if let Some(pending) = peer.hs.pending.take() {
                // Its index stays registered until the answer comes.
                if let Some(old) = peer.hs.withdrawn.replace(pending.local_index) {
                    self.index.by_session.remove(&old);
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
        let Some(&target) = self.index.by_session.get(&receiver) else {
            return self.drop_buf(buf, DropReason::UnknownSession);
        };
        if let Target::Peer(p) = target {
            let peer = &mut *self.peers[usize::from(p.0)];
            if peer.hs.withdrawn == Some(receiver) {
                peer.hs.withdrawn = None;
                self.index.by_session.remove(&receiver);
                return self.pool.free(buf);
            }
        }
        let expected = match target {
            Target::Peer(p) => Some(self.peers[usize::from(p.0)].key),
            Target::Boot(_) | Target::Ctm(_) => None,
        };
        let (trust_any, by_key) = (self.settings.trust_any, &self.index.by_key);
        let (trust, unix) = (self.certs.trust.as_ref(), self.unix_secs(now));
        let trusted = |k: &NodeKey, cert: Option<&crate::crypto::cert::Cert>| {
            if expected.is_some_and(|e| *k != e) {
                return Err(HandshakeError::UnknownPeer);
            }
            let listed = expected.is_some() || by_key.contains_key(k);
            Self::trust_check(trust, trust_any, listed, k, cert, unix)
        };
        let pending = match target {
            Target::Peer(p) => &mut self.peers[usize::from(p.0)].hs.pending,
            Target::Boot(b) => &mut self.strangers.boots[usize::from(b)].pending,
            Target::Ctm(k) => &mut self.strangers.ctm_inits[usize::from(k)],
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
        self.strangers.boots_dirty = true;
        let p = match target {
            Target::Peer(p) => p,
            Target::Boot(b) => match self.find_or_add_peer(done.peer, endpoint) {
                Some(p) => {
                    self.index.by_session.insert(receiver, Target::Peer(p));
                    self.peers[usize::from(p.0)].role.wanted = true;
                    self.peers[usize::from(p.0)].role.leaf = true;
                    self.strangers.boots[usize::from(b)].peer = Some(p);
                    self.strangers.boots[usize::from(b)].answered = true;
                    if let Some(l) = self.strangers.boots[usize::from(b)].learned.as_mut() {
                        l.failures = 0;
                    }
                    p
                }
                None => {
                    self.index.by_session.remove(&receiver);
                    return self.stats.count(DropReason::TooManyPeers);
                }
            },
            Target::Ctm(k) => match self.find_or_add_peer(done.peer, endpoint) {
                Some(p) => {
                    self.index.by_session.insert(receiver, Target::Peer(p));
                    self.peers[usize::from(p.0)].role.wanted = true;
                    let ctm = self.strangers.ctm_ids[usize::from(k)];
                    if let Some(ov) = self.overlay.as_mut() {
                        ov.ctm_linked(now, done.peer, ctm);
                    }
                    p
                }
                None => {
                    self.index.by_session.remove(&receiver);
                    return self.stats.count(DropReason::TooManyPeers);
                }
            },
        };
        self.complete_handshake(now, p, done, endpoint, sent_at);
    }

    /// `endpoint`: where the answer came from, `None` if over the overlay.
    pub(super) fn complete_handshake(
        &mut self,
        now: Instant,
        p: PeerIdx,
        done: Completed,
        endpoint: Option<Endpoint>,
        sent_at: Instant,
    ) {
        self.touch(p);
        // The peer's endpoint may move (learned bootstraps compare them).
        self.strangers.boots_dirty = true;
        let peer = &mut *self.peers[usize::from(p.0)];
        if let Some(stale) = peer.hs.pending.take() {
            self.index.by_session.remove(&stale.local_index);
        }
        if let Some(cert) = &done.cert {
            peer.take_cert(cert);
        }
        match endpoint {
            Some(ep) => {
                peer.reach.endpoint = Some(ep);
                peer.reach.proven = Some(ep);
                peer.go_direct();
                peer.reach.punching = false;
                if !done.observed.ip().is_unspecified() {
                    peer.reach.observed = Some(done.observed);
                }
            }
            None => peer.settle_without_endpoint(),
        }
        if endpoint.is_some() {
            // A direct path, proven both ways: a tunnel is no longer
            // needed, and whatever the old path's watch thought is moot.
            self.peers[usize::from(p.0)].reach.watch.reset();
            if let Some(ov) = self.overlay.as_mut() {
                ov.set_suspect(p, false);
            }
            self.end_tunnel(p);
        }
        // The overlay copy of a punch's init answered first: the session
        // carries traffic over the overlay, and the punch goes on.
        let resume_punch = endpoint.is_none() && self.peers[usize::from(p.0)].reach.punching;
        let peer = &mut *self.peers[usize::from(p.0)];
        peer.hs.last_handshake = Some(now);
        peer.live.set_rtt(now.saturating_since(sent_at));
        if let Some(old) = peer.sessions.install_initiated(done.session) {
            self.index.by_session.remove(&old);
        }

        self.stats.handshakes_completed += 1;
        match endpoint {
            Some(ep) => log::info!("session with {} at {ep} established", peer.name()),
            None => log::info!("session with {} over the overlay established", peer.name()),
        }
        if let Some(ep) = endpoint.filter(|e| e.is_udp()) {
            // Where this peer saw us: our reflexive endpoint, if any.
            if self.underlay.nat.observe(ep.addr, done.observed, now) {
                self.endpoints_changed(now);
            }
        }
        // Confirm the session to the responder at once (it may not send on
        // it before hearing from us), then release what waited for it.
        self.send_ping(now, p);
        self.release_waiting(now, p);
        self.link_up(now, p);
        if resume_punch && self.peers[usize::from(p.0)].hs.pending.is_none() {
            self.start_handshake(now, Target::Peer(p));
        }
    }
}
