//! Handshakes we start: where each attempt goes, when it is retried, when
//! a punch gives way to a tunnel, and the inits that ride in connect-to-me
//! requests. Answering inits is `handshakes`; completing our own,
//! `completion`.

use super::boots::BOOT_PAUSE;
use super::handshakes::{
    BOOT_TCP_AFTER_ATTEMPTS, CARRIED_AFTER_ATTEMPTS, CTM_INITS, DYNAMIC_ATTEMPTS, MAX_CANDIDATES,
    PUNCH_ATTEMPTS, PUNCH_RETRY_BASE, PUNCH_RETRY_MAX, ROUTED_RETRY_BASE, TCP_AFTER_ATTEMPTS,
    TUNNEL_ALONGSIDE_ATTEMPT,
};
use super::peer::{self, Peer, Pending};
use super::{DropReason, Node, Path, PeerIdx, Target};
use crate::buf::PacketBuf;
use crate::crypto::handshake::{self, HandshakeError};
use crate::overlay::{Addr, CtmId};
use crate::rand::Rng;
use crate::time::Instant;
use crate::wire::endpoint::Endpoint;
use crate::wire::overlay::Endpoints;
use std::time::Duration;

impl Node {
    pub(super) fn pending_slot(&mut self, t: Target) -> &mut Option<Box<Pending>> {
        match t {
            Target::Peer(p) => &mut self.peers[usize::from(p.0)].hs.pending,
            Target::Boot(b) => &mut self.strangers.boots[usize::from(b)].pending,
            Target::Ctm(k) => &mut self.strangers.ctm_inits[usize::from(k)],
        }
    }

    /// Sends a routed connect-to-me with a fresh init for whoever accepts
    /// it attached; the answer is a handshake response from that node.
    pub(super) fn send_ctm(&mut self, now: Instant, peer: PeerIdx, mut msg: Vec<u8>, ctm: CtmId) {
        // A free slot, else the oldest (its answer, if any, is now ignored).
        let k = (0..CTM_INITS)
            .min_by_key(|&k| self.strangers.ctm_inits[k].as_ref().map(|p| p.sent_at))
            .unwrap_or(0);
        if let Some(old) = self.strangers.ctm_inits[k].take() {
            self.index.by_session.remove(&old.local_index);
        }
        let t = Target::Ctm(k as u8);
        let local_index = self.new_index(t);
        let Some(scratch) = self.pool.alloc() else {
            self.index.by_session.remove(&local_index);
            return self.stats.count(DropReason::PoolEmpty);
        };
        let made = self.write_init(now, &scratch, local_index, None);
        let space = self.pool.space_mut(&scratch);
        let attached = made.and_then(|(state, len)| {
            crate::wire::overlay::attach_init(&mut msg, &space[..len])
                .map(|()| state)
                .map_err(|_| HandshakeError::Malformed)
        });
        self.pool.free(scratch);
        let Ok(state) = attached else {
            self.index.by_session.remove(&local_index);
            return;
        };
        self.strangers.ctm_inits[k] = Some(Box::new(Pending {
            state: Some(state),
            local_index,
            sent_at: now,
            next_retry: now,
            attempts: 1,
        }));
        self.strangers.ctm_ids[k] = ctm;
        match self.pool.alloc_with(&msg) {
            Some(buf) => self.send_to_peer(now, peer, crate::wire::MsgType::Control, buf),
            None => self.stats.count(DropReason::PoolEmpty),
        }
    }

    /// Writes a fresh init (our credential, a new timestamp) into `buf`'s
    /// space; returns the initiator state and the init's length.
    fn write_init(
        &mut self,
        now: Instant,
        buf: &PacketBuf,
        local_index: u32,
        hint: Option<crate::crypto::NodeKey>,
    ) -> Result<(handshake::Initiator, usize), HandshakeError> {
        let timestamp = self.next_timestamp(now);
        let (ty, cred) = self.credential();
        let space = self.pool.space_mut(buf);
        let cred = handshake::Credential { ty, bytes: &cred };
        handshake::create_init_with(
            &self.identity,
            cred,
            self.settings.fast_aes,
            &self.env.sysrand,
            local_index,
            hint,
            timestamp,
            space,
        )
    }

    /// Init timestamps strictly increase, also across restarts (wall clock).
    fn next_timestamp(&mut self, now: Instant) -> u64 {
        let timestamp =
            (self.env.wall_origin_us + now.as_micros()).max(self.env.last_timestamp + 1);
        self.env.last_timestamp = timestamp;
        timestamp
    }

    fn retry_delay(&mut self, attempts: u32, routed: bool) -> Duration {
        // A routed round trip crosses several overlay hops (~1 s at 1,000
        // nodes with 100 ms links): retrying sooner only crosses answers.
        let base = if routed {
            self.timers.handshake_retry_base.max(ROUTED_RETRY_BASE)
        } else {
            self.timers.handshake_retry_base
        };
        let d = base
            .saturating_mul(1 << attempts.saturating_sub(1).min(16))
            .min(self.timers.handshake_retry_max);
        // Up to 25% jitter so peers that started together do not stay in lockstep.
        let jitter = self.env.rng.below(d.as_micros() as u64 / 4 + 1);
        d + Duration::from_micros(jitter)
    }

    /// Where the next init to `t` goes: its endpoint, the overlay, or
    /// (linking a node for the first time) every candidate at once, which
    /// is our half of a hole punch. TCP candidates join from the third
    /// attempt, when UDP has had its chance.
    fn handshake_destinations(&self, t: Target, attempts: u32) -> Option<(Path, Endpoints)> {
        // Where every link we have runs over TCP, UDP has had its chance.
        let udp_blocked = self.settings.tcp_fallback && self.tcp_only();
        let tcp_now = udp_blocked || (self.settings.tcp_fallback && attempts >= TCP_AFTER_ATTEMPTS);
        match t {
            Target::Peer(p) => {
                let peer = &*self.peers[usize::from(p.0)];
                // A routed session, or a tunnel's (its handshake takes the
                // overlay; the relay carries only sealed messages).
                let over_overlay = (peer.is_routed() && !peer.is_linked())
                    || peer.relay().is_some()
                    || peer.tunnel.wanted;
                if over_overlay && !peer.reach.punching {
                    return self
                        .overlay
                        .is_some()
                        .then(|| (Path::Overlay(Addr::of_key(&peer.key)), Endpoints::new()));
                }
                let linking =
                    peer.reach.punching || (!peer.is_linked() && peer.sessions.current.is_none());
                let mut all = Endpoints::new();
                all.extend(peer.reach.endpoint);
                if linking {
                    let carried_now = attempts >= CARRIED_AFTER_ATTEMPTS
                        || all
                            .iter()
                            .chain(&peer.reach.candidates)
                            .all(|c| c.is_carried());
                    for c in &peer.reach.candidates {
                        if !all.contains(c)
                            && (!c.is_tcp() || tcp_now)
                            && (!c.is_carried() || carried_now)
                            && all.len() < MAX_CANDIDATES
                        {
                            all.push(*c);
                        }
                    }
                    // A member listens for TCP on its UDP port: when UDP
                    // gets nowhere from here, its UDP candidates are worth
                    // a TCP connection even if nobody has told us so.
                    if udp_blocked {
                        let udp = peer
                            .reach
                            .endpoint
                            .iter()
                            .chain(&peer.reach.candidates)
                            .filter(|c| c.is_udp());
                        for c in udp.map(|c| Endpoint::tcp(c.addr)) {
                            if !all.contains(&c) && all.len() < MAX_CANDIDATES {
                                all.push(c);
                            }
                        }
                    }
                }
                let first = *all.first()?;
                Some((Path::Direct(first), all.into_iter().skip(1).collect()))
            }
            Target::Boot(b) => {
                // No UDP answer from a bootstrap and no link at all: the
                // network may drop UDP; try its TCP port too.
                let ep = self.strangers.boots[usize::from(b)].endpoint;
                let mut also = Endpoints::new();
                let boot_tcp = self.settings.tcp_fallback && attempts >= BOOT_TCP_AFTER_ATTEMPTS;
                if boot_tcp && ep.is_udp() && self.index.linked == 0 {
                    also.push(Endpoint::tcp(ep.addr));
                }
                Some((Path::Direct(ep), also))
            }
            // Sent once inside a request (see send_ctm); the overlay retries.
            Target::Ctm(_) => None,
        }
    }

    /// Whether the traffic (or the ring) needs the link being punched to
    /// `p` enough to build a tunnel for it (`punching`: the attempt was a
    /// punch for a routed peer's traffic).
    fn punch_needed(&self, p: PeerIdx, punching: bool) -> bool {
        let peer = &*self.peers[usize::from(p.0)];
        peer.relay().is_some()
            || peer.demand.linked
            || (peer.is_routed() && punching)
            || self
                .overlay
                .as_ref()
                .is_some_and(|ov| ov.would_keep(peer.addr))
    }

    /// Whether our own side makes a punch unlikely to work: a NAT that maps
    /// each destination to a new port (only an open or cone peer could
    /// answer it), or a network where only TCP gets through (every link we
    /// have is over TCP).
    fn punch_unlikely(&self) -> bool {
        let symmetric = self.nat_mapping() == super::nat::NatMapping::EndpointDependent;
        symmetric || self.tcp_only()
    }

    /// Whether every link we have runs over TCP (a network that drops UDP).
    fn tcp_only(&self) -> bool {
        let mut links = self
            .peers
            .iter()
            .filter(|q| q.is_linked() && q.relay().is_none());
        self.index.linked > 0 && links.all(|q| q.reach.endpoint.is_some_and(|e| e.is_tcp()))
    }

    /// The punch to `p` has not worked yet: a tunnel is built alongside it
    /// (if the link is needed), so that the traffic does not wait for the
    /// punch to give up. The punch goes on; if it succeeds, the pair moves
    /// to the direct path and the tunnel ends.
    fn tunnel_alongside(&mut self, now: Instant, p: PeerIdx) {
        let peer = &*self.peers[usize::from(p.0)];
        if peer.relay().is_none() && self.punch_needed(p, peer.reach.punching) {
            self.start_tunnel(now, p);
        }
    }

    /// Our inits to `p` went unanswered. A punch that failed leaves the
    /// traffic where it is (routed, or in a tunnel) and, for a peer the
    /// overlay or the VPN needs, asks for a tunnel; other attempts give up.
    fn punch_failed(&mut self, now: Instant, p: PeerIdx, punching: bool) {
        let peer = &mut *self.peers[usize::from(p.0)];
        let was_punching = peer.reach.punching;
        peer.reach.punching = false;
        if !punching {
            peer.role.wanted = false;
            return;
        }
        peer.reach.punch_failed = Some(now);
        let needed = self.punch_needed(p, was_punching);
        log::info!(
            "no direct path to {} after {} attempts{}",
            self.peers[usize::from(p.0)].name(),
            PUNCH_ATTEMPTS,
            if needed { "" } else { ": giving up" }
        );
        if !needed {
            self.peers[usize::from(p.0)].role.wanted = false;
            return;
        }
        if self.peers[usize::from(p.0)].relay().is_none() {
            self.start_tunnel(now, p);
        }
        // Meanwhile a session over the overlay carries the traffic (and
        // is the tunnel's once a relay is found).
        let peer = &*self.peers[usize::from(p.0)];
        if peer.sessions.current.is_none() && peer.hs.pending.is_none() {
            self.start_handshake(now, Target::Peer(p));
        }
    }

    /// Our pending handshake with `peer` goes only to its endpoints (a
    /// first link, not a punch that copies its inits over the overlay).
    pub(super) fn linking_directly(peer: &Peer) -> bool {
        peer.role.dynamic
            && !peer.reach.punching
            && !peer.is_routed()
            && !peer.tunnel.wanted
            && peer.relay().is_none()
            && peer.hs.pending.is_some()
    }

    /// A punch towards a peer we have no session with also sends its init
    /// over the overlay: whichever answer comes first makes the session,
    /// so traffic flows at once (routed) while the punch goes on.
    fn copy_over_overlay(&mut self, now: Instant, p: PeerIdx, dst: Path, out: &PacketBuf) {
        let peer = &*self.peers[usize::from(p.0)];
        if !matches!(dst, Path::Direct(_))
            || !peer.reach.punching
            || peer.sessions.current.is_some()
            || self.overlay.is_none()
        {
            return;
        }
        let to = Path::Overlay(Addr::of_key(&peer.key));
        match self.pool.duplicate(out) {
            Some(copy) => self.send_handshake(now, to, copy),
            None => self.stats.count(DropReason::PoolEmpty),
        }
    }

    /// Sends a fresh init (a retransmission is a new init with a newer
    /// timestamp, so the responder never mistakes it for a replay).
    pub(super) fn start_handshake(&mut self, now: Instant, t: Target) {
        let attempts_so_far = self.pending_slot(t).as_ref().map_or(0, |x| x.attempts);
        let Some((dst, also)) = self.handshake_destinations(t, attempts_so_far + 1) else {
            return;
        };
        let (hint, dynamic, punching) = match t {
            Target::Peer(p) => {
                let peer = &*self.peers[usize::from(p.0)];
                let linking = peer.role.dynamic
                    && (peer.reach.punching
                        || (!peer.is_linked() && peer.sessions.current.is_none()));
                (
                    Some(peer.key),
                    peer.role.dynamic,
                    linking && matches!(dst, Path::Direct(_)),
                )
            }
            _ => (None, true, false),
        };
        match t {
            Target::Peer(p) => self.touch(p),
            _ => self.strangers.boots_dirty = true,
        }
        let attempts = self.pending_slot(t).as_ref().map_or(0, |x| x.attempts) + 1;
        if let Some(old) = self.pending_slot(t).take() {
            self.index.by_session.remove(&old.local_index);
        }
        if let Target::Peer(p) = t {
            if attempts > peer::WAIT_ATTEMPTS {
                for buf in core::mem::take(&mut self.peers[usize::from(p.0)].hs.waiting) {
                    self.drop_buf(buf, DropReason::NoSession);
                }
            }
        }
        // Only a punch both sides make (traffic asked for the link, both
        // got each other's candidates): a one-sided attempt to link a
        // ring node that failed gives way to a connect-to-me, not a tunnel.
        let two_sided = matches!(t, Target::Peer(p) if self.peers[usize::from(p.0)].reach.punching);
        if let (Target::Peer(p), true) = (t, punching && two_sided) {
            let alongside = if self.punch_unlikely() {
                2
            } else {
                TUNNEL_ALONGSIDE_ATTEMPT
            };
            if attempts == alongside {
                self.tunnel_alongside(now, p);
            }
        }
        let limit = if punching {
            PUNCH_ATTEMPTS
        } else {
            DYNAMIC_ATTEMPTS
        };
        if dynamic && attempts > limit {
            match t {
                Target::Peer(p) => self.punch_failed(now, p, punching),
                Target::Boot(b) => {
                    let boot = &mut self.strangers.boots[usize::from(b)];
                    boot.next_try = now + BOOT_PAUSE;
                    if let Some(l) = boot.learned.as_mut() {
                        l.failures += 1;
                    }
                }
                Target::Ctm(_) => {}
            }
            return;
        }
        let local_index = self.new_index(t);
        let next_retry = now
            + if punching {
                // Both sides send at once; a quick rhythm lets the second
                // side's packets meet the first side's open pinholes.
                PUNCH_RETRY_BASE
                    .saturating_mul(1 << attempts.saturating_sub(1).min(8))
                    .min(PUNCH_RETRY_MAX)
            } else {
                self.retry_delay(attempts, matches!(dst, Path::Overlay(_)))
            };
        *self.pending_slot(t) = Some(Box::new(Pending {
            state: None,
            local_index,
            sent_at: now,
            next_retry,
            attempts,
        }));
        // A link the overlay asked for on someone's say-so: addresses
        // nobody proved get a handshake now and then, not one per attempt.
        let hearsay =
            matches!(t, Target::Peer(p) if Self::on_hearsay(&self.peers[usize::from(p.0)]));
        let Some((dst, also)) = (if hearsay {
            self.aim_unproven(now, dst, &also)
        } else {
            Some((dst, also))
        }) else {
            return;
        };
        let Some(mut out) = self.pool.alloc() else {
            return self.stats.count(DropReason::PoolEmpty);
        };
        match self.write_init(now, &out, local_index, hint) {
            Ok((state, len)) => {
                self.pool.set_len(&mut out, len);
                if let Some(pending) = self.pending_slot(t).as_mut() {
                    pending.state = Some(state);
                }
                log::debug!("handshake attempt {attempts} to {dst:?} and {also:?}");
                if let Target::Peer(p) = t {
                    self.copy_over_overlay(now, p, dst, &out);
                }
                self.send_handshake_to_all(now, dst, &also, out);
            }
            Err(_) => self.pool.free(out),
        }
    }
}
