//! A tunnel edge in use (docs/NAT.md): the relay it runs through, moved
//! to a closer one once pings have measured the candidates, checked while
//! quiet, replaced when its link goes down or it stops answering, and left
//! for a direct path when a retry punches through. Negotiating one is
//! `relay`.

use super::relay::{
    rtt_ms, DIRECT_RETRY, MAX_QUERIES, OWN_CHOICE, PROBES, RELAY_DEAD, RELAY_QUIET, RELAY_SHUNNED,
};
use super::{Node, PeerIdx};
use crate::crypto::NodeKey;
use crate::overlay::table::reason;
use crate::overlay::Addr;
use crate::time::Instant;
use crate::wire::overlay::{
    Mode, OverlayMsg, RelayCandidate, RelayCandidates, MAX_RELAY_CANDIDATES,
};

impl Node {
    /// Runs the link to `p` through our link to the node with `relay_key`.
    pub(super) fn use_relay(&mut self, now: Instant, p: PeerIdx, relay_key: NodeKey) {
        let Some(&r) = self.index.by_key.get(&relay_key) else {
            return;
        };
        let relay = &*self.peers[usize::from(r.0)];
        let shunned = relay
            .tunnel
            .failed_as_relay
            .is_some_and(|t| now.saturating_since(t) < RELAY_SHUNNED);
        if r == p || !relay.is_linked() || relay.relay().is_some() || shunned {
            return;
        }
        let peer = &*self.peers[usize::from(p.0)];
        if peer.is_linked() && peer.direct_path() && peer.reach.proven == peer.reach.endpoint {
            // The punch the tunnel was built alongside got there first.
            return self.end_tunnel(p);
        }
        log::info!(
            "{} tunnels through {}",
            self.peers[usize::from(p.0)].name(),
            relay.name()
        );
        if let Some(ov) = self.overlay.as_mut() {
            ov.set_reason(Addr::of_key(&relay_key), reason::RELAY, true);
        }
        self.touch(p);
        let peer = &mut *self.peers[usize::from(p.0)];
        // A new relay is a new path: proven by the first message through
        // it (the other side may not use it yet, or the relay may not
        // reach it yet: a probe goes now), and watched afresh.
        let before = peer.enter_tunnel(r);
        if before != Some(r) {
            peer.reach.watch.reset();
        }
        peer.tunnel.asked = None;
        peer.tunnel.linking_to = None;
        peer.role.wanted = true;
        peer.tunnel.direct_retry = Some(now + DIRECT_RETRY);
        if let Some(old) = before.filter(|&o| o != r) {
            self.release_relay(old);
        }
        let peer = &*self.peers[usize::from(p.0)];
        if peer.sessions.current.is_some() {
            self.link_up(now, p);
            if !self.peers[usize::from(p.0)].relay_proven() {
                self.send_ping(now, p);
            }
        } else if peer.hs.pending.is_none() {
            self.start_handshake(now, super::Target::Peer(p));
        }
    }

    /// Our reason to keep the link to relay `r` lapses when no tunnel runs
    /// through it any more.
    pub(super) fn release_relay(&mut self, r: PeerIdx) {
        if self.peers.iter().any(|peer| peer.relay() == Some(r)) {
            return;
        }
        let addr = Addr::of_key(&self.peers[usize::from(r.0)].key);
        if let Some(ov) = self.overlay.as_mut() {
            ov.set_reason(addr, reason::RELAY, false);
        }
    }

    /// The tunnel with `p` is no longer needed (a direct path formed, or
    /// the link is gone).
    pub(super) fn end_tunnel(&mut self, p: PeerIdx) {
        let peer = &mut *self.peers[usize::from(p.0)];
        if let Some(plan) = peer.tunnel.present_mut() {
            plan.linking_to = None;
            plan.asked = None;
            plan.wanted = false;
            plan.queries = 0;
            plan.offer = None;
        }
        if let Some(r) = peer.drop_tunnel() {
            log::info!("{}: tunnel ended", peer.name());
            self.touch(p);
            self.release_relay(r);
        }
    }

    /// The relay the other side picked may be far from us (it knows only
    /// its own RTTs). Links to its next fastest candidates too; once a
    /// ping has measured ours, the tunnel moves to the one with the lowest
    /// RTT sum (see `relay_rtt_known`). Probes that do not win are let go.
    pub(super) fn probe_relays(
        &mut self,
        now: Instant,
        p: PeerIdx,
        chosen: NodeKey,
        theirs: &[RelayCandidate],
    ) {
        self.peers[usize::from(p.0)].tunnel.offer =
            Some(Box::new(theirs.iter().copied().collect()));
        let mut by_rtt: Vec<&RelayCandidate> = theirs
            .iter()
            .filter(|c| {
                c.budget_kib > 0 && c.node.key != chosen && c.node.key != self.identity.public()
            })
            .filter(|c| {
                !self
                    .index
                    .by_key
                    .get(&c.node.key)
                    .is_some_and(|&r| self.peers[usize::from(r.0)].is_linked())
            })
            .collect();
        by_rtt.sort_by_key(|c| c.rtt_ms);
        for c in by_rtt.into_iter().take(PROBES) {
            if let Some(ov) = self.overlay.as_mut() {
                ov.connect_to(now, Addr::of_key(&c.node.key), reason::RELAY);
            }
        }
    }

    /// The first ping on link `r` measured its RTT: a tunnel whose other
    /// side listed `r` moves to it if that makes the path at least 10%
    /// shorter, and tells the other side; a probe link that does not win
    /// loses its reason to be kept.
    pub(super) fn relay_rtt_known(&mut self, now: Instant, r: PeerIdx) {
        let key = self.peers[usize::from(r.0)].key;
        let sum = |n: &Node, p: PeerIdx, via: PeerIdx| -> Option<u32> {
            let offer = n.peers[usize::from(p.0)].tunnel.offer.as_ref()?;
            let via_peer = &n.peers[usize::from(via.0)];
            let theirs = offer.iter().find(|c| c.node.key == via_peer.key)?;
            let ours = via_peer.live.rtt_pinged().or(via_peer.live.rtt())?;
            Some(u32::from(theirs.rtt_ms) + rtt_ms(Some(ours)) as u32)
        };
        let tunnels: Vec<PeerIdx> = (0..self.peers.len())
            .map(|i| PeerIdx(i as u16))
            .filter(|&p| {
                self.peers[usize::from(p.0)]
                    .tunnel
                    .offer
                    .as_ref()
                    .is_some_and(|o| o.iter().any(|c| c.node.key == key))
            })
            .collect();
        let mut used = false;
        for p in tunnels {
            let Some(cur) = self.peers[usize::from(p.0)].relay() else {
                continue;
            };
            if cur == r {
                used = true;
                continue;
            }
            let (Some(new), Some(old)) = (sum(self, p, r), sum(self, p, cur)) else {
                continue;
            };
            if new * 10 >= old * 9 || !self.peers[usize::from(r.0)].is_linked() {
                continue;
            }
            log::info!(
                "{}: relay {} is closer ({new} ms vs {old} ms round trip)",
                self.peers[usize::from(p.0)].name(),
                self.peers[usize::from(r.0)].name()
            );
            self.use_relay(now, p, key);
            used = true;
            let mut list: RelayCandidates = self.relay_candidates(now, p);
            if let Some(k) = list.iter().position(|c| c.node.key == key) {
                let c = list.remove(k);
                list.insert(0, c);
                list.truncate(MAX_RELAY_CANDIDATES);
                let dst = Addr::of_key(&self.peers[usize::from(p.0)].key);
                if let Some(ov) = self.overlay.as_mut() {
                    ov.send_routed(
                        now,
                        Mode::Exact,
                        dst,
                        &OverlayMsg::RelayOffer {
                            chosen: OWN_CHOICE,
                            candidates: list,
                        },
                    );
                }
            }
        }
        if !used {
            self.release_relay(r);
        }
    }

    /// A link came up: tunnels that waited for it as their relay use it.
    pub(super) fn relay_link_up(&mut self, now: Instant, r: PeerIdx) {
        let key = self.peers[usize::from(r.0)].key;
        let waiting: Vec<PeerIdx> = (0..self.peers.len())
            .map(|i| PeerIdx(i as u16))
            .filter(|&p| self.peers[usize::from(p.0)].tunnel.linking_to == Some(key))
            .collect();
        for p in waiting {
            self.use_relay(now, p, key);
        }
    }

    /// A link went down: tunnels through it lose their relay and look for
    /// another at once (their traffic takes the overlay meanwhile).
    pub(super) fn relay_link_down(&mut self, now: Instant, r: PeerIdx) {
        let through: Vec<PeerIdx> = (0..self.peers.len())
            .map(|i| PeerIdx(i as u16))
            .filter(|&p| self.peers[usize::from(p.0)].relay() == Some(r))
            .collect();
        for p in through {
            log::info!("relay for {} is gone", self.peers[usize::from(p.0)].name());
            self.peers[usize::from(p.0)].drop_tunnel();
            self.unlink(now, p);
            // The session goes on over the overlay until a new relay (or a
            // direct path) is found.
            let peer = &mut *self.peers[usize::from(p.0)];
            if peer.sessions.current.is_some() {
                peer.route();
            }
            peer.tunnel.asked = None;
            self.start_tunnel(now, p);
        }
    }

    /// Tunnel timers for peer `p`: a periodic direct attempt.
    /// A quiet tunnel checks its relay (see `RELAY_QUIET`).
    pub(super) fn check_relay(&mut self, now: Instant, p: PeerIdx) {
        let peer = &*self.peers[usize::from(p.0)];
        let (Some(r), Some(t)) = (peer.relay(), peer.relay_check_at()) else {
            return;
        };
        if now < t {
            return;
        }
        let peer = &mut *self.peers[usize::from(p.0)];
        peer.tunnel.probed = Some(now);
        let heard_far = peer.live.last_rx.unwrap_or(Instant::ZERO);
        let sending = peer.live.last_tx.is_some_and(|t| t > heard_far);
        self.touch(p);
        if !sending || now.saturating_since(heard_far) < RELAY_QUIET {
            return; // traffic comes back through it
        }
        let relay = &*self.peers[usize::from(r.0)];
        let heard = relay.live.last_rx.unwrap_or(Instant::ZERO);
        if now.saturating_since(heard) < RELAY_QUIET {
            return; // the relay is alive: the far end is quiet, not it
        }
        if now.saturating_since(heard) >= RELAY_DEAD {
            log::info!(
                "relay {} silent for {:.1} s: tunnels move",
                relay.name(),
                now.saturating_since(heard).as_secs_f64()
            );
            self.peers[usize::from(r.0)].tunnel.failed_as_relay = Some(now);
            return self.relay_link_down(now, r);
        }
        self.send_ping(now, r);
    }

    pub(super) fn tunnel_timers(&mut self, now: Instant, p: PeerIdx) {
        self.check_relay(now, p);
        let peer = &*self.peers[usize::from(p.0)];
        if peer.tunnel.wanted
            && peer.relay().is_none()
            && peer.tunnel_retry_at().is_some_and(|t| now >= t)
        {
            // The query or offer was lost, or the relay could not be
            // linked: ask again, while the link is still wanted.
            let addr = Addr::of_key(&peer.key);
            let needed = peer.tunnel.queries < MAX_QUERIES
                && (peer.demand.linked
                    || peer.is_routed()
                    || self.overlay.as_ref().is_some_and(|ov| ov.would_keep(addr)));
            let peer = &mut *self.peers[usize::from(p.0)];
            peer.tunnel.asked = None;
            peer.tunnel.linking_to = None;
            self.touch(p);
            if needed {
                self.start_tunnel(now, p);
            } else {
                peer_gives_up(&mut self.peers[usize::from(p.0)]);
            }
        }
        let peer = &mut *self.peers[usize::from(p.0)];
        if peer.relay().is_some() && peer.tunnel.direct_retry.is_some_and(|t| now >= t) {
            peer.tunnel.direct_retry = Some(now + DIRECT_RETRY);
            self.touch(p);
            let peer = &mut *self.peers[usize::from(p.0)];
            if !peer.reach.candidates.is_empty() && peer.hs.pending.is_none() {
                peer.reach.punching = true;
                self.start_handshake(now, super::Target::Peer(p));
            }
        }
    }
}

/// A tunnel no longer needed (the ring moved on) is not asked for again.
fn peer_gives_up(peer: &mut super::peer::Peer) {
    if let Some(plan) = peer.tunnel.present_mut() {
        plan.wanted = false;
        plan.queries = 0;
    }
    if !peer.is_linked() && peer.sessions.current.is_none() {
        peer.role.wanted = false;
    }
}
