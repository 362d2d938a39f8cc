//! Handshakes: answering inits, completing our own, retransmitting, and the
//! peer table behind them (static peers, and dynamic ones met through the
//! overlay or a bootstrap endpoint whose key we did not know).

use super::peer::{self, Peer, Pending};
use super::{DropReason, Node, PeerConfig, PeerIdx, Target};
use crate::buf::PacketBuf;
use crate::crypto::handshake::{self, Completed, HandshakeError};
use crate::crypto::NodeKey;
use crate::rand::Rng;
use crate::time::Instant;
use std::net::SocketAddr;
use std::time::Duration;

/// Attempts before a dynamic peer (or one bootstrap round) is given up.
pub const DYNAMIC_ATTEMPTS: u32 = 4;
/// Pause between bootstrap rounds while we have no link at all.
pub const BOOT_PAUSE: Duration = Duration::from_secs(5);
/// Bootstrap (leaf) links to keep while joining (Brunet: 3). One is not
/// enough: if every node links only its first bootstrap, nodes started
/// together form separate components, each growing its own ring.
pub const LEAVES: usize = 3;

/// A bootstrap endpoint: we know where, not who.
pub struct Boot {
    pub endpoint: SocketAddr,
    pub pending: Option<Pending>,
    pub next_try: Instant,
    /// The peer this endpoint turned out to be, once linked.
    pub peer: Option<PeerIdx>,
}

impl Node {
    pub(super) fn handshake_drop(&mut self, e: HandshakeError) {
        self.stats.count(match e {
            HandshakeError::Malformed => DropReason::BadLength,
            HandshakeError::UnknownPeer => DropReason::UnknownPeer,
            HandshakeError::NotForUs => DropReason::NotForUs,
            HandshakeError::Auth => DropReason::AuthFailure,
        });
    }

    fn is_trusted(&self, key: &NodeKey) -> bool {
        self.trust_any || self.by_key.contains_key(key)
    }

    /// The peer for `key`, creating a dynamic one if policy allows and
    /// there is room (reusing the slot of a forgotten dynamic peer).
    pub(super) fn find_or_add_peer(
        &mut self,
        key: NodeKey,
        endpoint: SocketAddr,
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
            endpoint: Some(endpoint),
        };
        let mut fresh = Peer::new(&cfg);
        fresh.dynamic = true;
        let reusable = self.peers.iter().position(|p| {
            p.dynamic
                && !p.wanted
                && !p.linked
                && p.pending.is_none()
                && p.sessions.current.is_none()
                && p.sessions.next.is_none()
                && p.sessions.previous.is_none()
                && p.waiting.is_empty()
        });
        let p = match reusable {
            Some(i) => {
                let old = self.peers[i].key;
                self.by_key.remove(&old);
                self.macs.forget_peer(PeerIdx(i as u16));
                self.peers[i] = fresh;
                PeerIdx(i as u16)
            }
            None if self.peers.len() < self.max_peers => {
                self.peers.push(fresh);
                PeerIdx((self.peers.len() - 1) as u16)
            }
            None => return None,
        };
        self.by_key.insert(key, p);
        Some(p)
    }

    pub(super) fn handle_init(&mut self, now: Instant, from: SocketAddr, buf: PacketBuf) {
        if !self.limiter.allow(from.ip(), now) {
            return self.drop_buf(buf, DropReason::RateLimited);
        }
        let me = self.identity.public();
        let (trust_any, by_key) = (self.trust_any, &self.by_key);
        let checked = handshake::check_init(self.pool.data(&buf), me, |k| {
            trust_any || by_key.contains_key(k)
        });
        self.pool.free(buf);
        let init = match checked {
            Ok(init) => init,
            Err(e) => return self.handshake_drop(e),
        };
        let Some(p) = self.find_or_add_peer(init.peer, from) else {
            return self.stats.count(DropReason::TooManyPeers);
        };
        if init.timestamp <= self.peers[usize::from(p.0)].last_init_timestamp {
            return self.stats.count(DropReason::HandshakeReplay);
        }
        let Some(mut out) = self.pool.alloc() else {
            return self.stats.count(DropReason::PoolEmpty);
        };
        let local_index = self.new_index(Target::Peer(p));
        let space = self.pool.space_mut(&out);
        let result = handshake::respond(
            &self.identity,
            &self.sysrand,
            &init,
            local_index,
            from,
            now,
            space,
        );
        let (session, len) = match result {
            Ok(r) => r,
            Err(e) => {
                self.by_index.remove(&local_index);
                self.pool.free(out);
                return self.handshake_drop(e);
            }
        };
        self.pool.set_len(&mut out, len);
        let peer = &mut self.peers[usize::from(p.0)];
        peer.last_init_timestamp = init.timestamp;
        peer.endpoint = Some(from);
        peer.wanted = true;
        if let Some(old) = peer.sessions.install_responded(session) {
            self.by_index.remove(&old);
        }
        log::debug!("handshake from {} ({}) answered", peer.name, from);
        self.queue_transmit(from, out);
    }

    fn pending_slot(&mut self, t: Target) -> &mut Option<Pending> {
        match t {
            Target::Peer(p) => &mut self.peers[usize::from(p.0)].pending,
            Target::Boot(b) => &mut self.boots[usize::from(b)].pending,
        }
    }

    pub(super) fn handle_resp(&mut self, now: Instant, from: SocketAddr, buf: PacketBuf) {
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
        let expected = match target {
            Target::Peer(p) => Some(self.peers[usize::from(p.0)].key),
            Target::Boot(_) => None,
        };
        let (trust_any, by_key) = (self.trust_any, &self.by_key);
        let trusted =
            |k: &NodeKey| expected.map_or(trust_any || by_key.contains_key(k), |e| *k == e);
        let pending = match target {
            Target::Peer(p) => &mut self.peers[usize::from(p.0)].pending,
            Target::Boot(b) => &mut self.boots[usize::from(b)].pending,
        };
        let Some(pend) = pending.as_mut().filter(|x| x.local_index == receiver) else {
            return self.drop_buf(buf, DropReason::UnknownSession);
        };
        let result = handshake::finish(&mut pend.state, self.pool.data(&buf), trusted, now);
        self.pool.free(buf);
        let done = match result {
            Ok(d) => d,
            Err(e) => return self.handshake_drop(e),
        };
        let sent_at = pend.sent_at;
        *pending = None;
        let p = match target {
            Target::Peer(p) => p,
            Target::Boot(b) => match self.find_or_add_peer(done.peer, from) {
                Some(p) => {
                    self.by_index.insert(receiver, Target::Peer(p));
                    self.peers[usize::from(p.0)].wanted = true;
                    self.peers[usize::from(p.0)].leaf = true;
                    self.boots[usize::from(b)].peer = Some(p);
                    p
                }
                None => {
                    self.by_index.remove(&receiver);
                    return self.stats.count(DropReason::TooManyPeers);
                }
            },
        };
        self.complete_handshake(now, p, done, from, sent_at);
    }

    fn complete_handshake(
        &mut self,
        now: Instant,
        p: PeerIdx,
        done: Completed,
        from: SocketAddr,
        sent_at: Instant,
    ) {
        let peer = &mut self.peers[usize::from(p.0)];
        if let Some(stale) = peer.pending.take() {
            self.by_index.remove(&stale.local_index);
        }
        peer.endpoint = Some(from);
        peer.observed = Some(done.observed);
        peer.last_handshake = Some(now);
        peer.rtt = Some(now.saturating_since(sent_at));
        if let Some(old) = peer.sessions.install_initiated(done.session) {
            self.by_index.remove(&old);
        }
        self.stats.handshakes_completed += 1;
        log::info!("link to {} ({}) established", peer.name, from);
        // Confirm the session to the responder at once (it may not send on
        // it before hearing from us), then release what waited for it.
        self.send_ping(now, p);
        self.release_waiting(now, p);
        self.link_up(now, p);
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

    fn retry_delay(&mut self, attempts: u32) -> Duration {
        let base = self.timers.handshake_retry_base;
        let d = base
            .saturating_mul(1 << attempts.saturating_sub(1).min(16))
            .min(self.timers.handshake_retry_max);
        // Up to 25% jitter so peers that started together do not stay in lockstep.
        let jitter = self.rng.below(d.as_micros() as u64 / 4 + 1);
        d + Duration::from_micros(jitter)
    }

    /// Sends a fresh init (a retransmission is a new init with a newer
    /// timestamp, so the responder never mistakes it for a replay).
    pub(super) fn start_handshake(&mut self, now: Instant, t: Target) {
        let (dst, hint, dynamic) = match t {
            Target::Peer(p) => {
                let peer = &self.peers[usize::from(p.0)];
                let Some(dst) = peer.endpoint else { return };
                (dst, Some(peer.key), peer.dynamic)
            }
            Target::Boot(b) => (self.boots[usize::from(b)].endpoint, None, true),
        };
        let attempts = self.pending_slot(t).as_ref().map_or(0, |x| x.attempts) + 1;
        if let Some(old) = self.pending_slot(t).take() {
            self.by_index.remove(&old.local_index);
        }
        if let Target::Peer(p) = t {
            if attempts > peer::WAIT_ATTEMPTS {
                for buf in core::mem::take(&mut self.peers[usize::from(p.0)].waiting) {
                    self.drop_buf(buf, DropReason::NoSession);
                }
            }
        }
        if dynamic && attempts > DYNAMIC_ATTEMPTS {
            match t {
                Target::Peer(p) => self.peers[usize::from(p.0)].wanted = false,
                Target::Boot(b) => self.boots[usize::from(b)].next_try = now + BOOT_PAUSE,
            }
            return;
        }
        let local_index = self.new_index(t);
        let next_retry = now + self.retry_delay(attempts);
        *self.pending_slot(t) = Some(Pending {
            state: None,
            local_index,
            sent_at: now,
            next_retry,
            attempts,
        });
        let Some(mut out) = self.pool.alloc() else {
            return self.stats.count(DropReason::PoolEmpty);
        };
        let timestamp = (self.wall_origin_us + now.as_micros()).max(self.last_timestamp + 1);
        self.last_timestamp = timestamp;
        let space = self.pool.space_mut(&out);
        match handshake::create_init(
            &self.identity,
            &self.sysrand,
            local_index,
            hint,
            timestamp,
            space,
        ) {
            Ok((state, len)) => {
                self.pool.set_len(&mut out, len);
                if let Some(pending) = self.pending_slot(t).as_mut() {
                    pending.state = Some(state);
                }
                log::debug!("handshake attempt {attempts} to {dst}");
                self.queue_transmit(dst, out);
            }
            Err(_) => self.pool.free(out),
        }
    }
}
