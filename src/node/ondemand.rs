//! On-demand direct links (Brunet's "chota"): VPN traffic between two
//! members that are not linked crosses several overlay hops; when it is
//! more than a trickle the two link directly (or through a tunnel edge if
//! no direct path forms), and the link goes again once the traffic stops.
//!
//! The sender counts its VPN packets to each routed peer over a window;
//! at the threshold it routes a connect-to-me to the peer's exact address,
//! which carries its candidates and an init, so both sides punch at once.
//! The link is kept for the on-demand reason while VPN packets flow, and
//! the reason is dropped after an idle time (the overlay then trims the
//! link unless it wants it for the ring). At most `MAX_LINKS` such links
//! are kept; the least recently used gives way.

use super::{Node, PeerIdx};
use crate::overlay::table::reason;
use crate::overlay::Addr;
use crate::time::Instant;
use std::time::Duration;

/// VPN packets within `WINDOW` that make a routed peer worth a direct
/// link: a ping a second stays on the overlay; a TCP transfer, an SSH
/// session's bursts or a video call move within a fraction of a second.
pub const THRESHOLD: u16 = 8;
pub const WINDOW: Duration = Duration::from_secs(2);
/// An on-demand link with no VPN packets sent for this long is let go
/// (long enough to ride out a pause in an interactive session).
pub const IDLE: Duration = Duration::from_secs(60);
/// On-demand links kept at most (each costs a session and keepalives).
pub const MAX_LINKS: usize = 16;
/// A request that brought no link is not repeated sooner.
const ASK_AGAIN: Duration = Duration::from_secs(30);

impl Node {
    /// A VPN packet went to peer `p`: counts it towards an on-demand link.
    pub(super) fn count_demand(&mut self, now: Instant, p: PeerIdx) {
        let threshold = self.settings.ondemand_threshold;
        let peer = &mut *self.peers[usize::from(p.0)];
        if peer.is_linked() || peer.relay().is_some() || threshold == 0 {
            return;
        }
        if now.saturating_since(peer.demand.since) > WINDOW {
            peer.demand.since = now;
            peer.demand.packets = 0;
        }
        peer.demand.packets = peer.demand.packets.saturating_add(1);
        if peer.demand.packets >= threshold {
            self.ask_ondemand(now, p);
        }
    }

    /// Asks for a direct link to the node with `key` at once, as heavy
    /// traffic to it would (the simulator's and the operator's handle).
    /// False if it cannot be a peer.
    pub fn link_on_demand(&mut self, now: Instant, key: crate::crypto::NodeKey) -> bool {
        let Some(p) = self.find_or_add_peer(key, None) else {
            return false;
        };
        let peer = &mut *self.peers[usize::from(p.0)];
        peer.live.last_tx = Some(now);
        self.ask_ondemand(now, p);
        self.settle(now);
        true
    }

    /// The path to the node with `key`: "direct", "relayed", "overlay" or
    /// "none", and the relay's key.
    pub fn peer_path(
        &self,
        key: &crate::crypto::NodeKey,
    ) -> Option<(&'static str, Option<crate::crypto::NodeKey>)> {
        let &p = self.index.by_key.get(key)?;
        let peer = &*self.peers[usize::from(p.0)];
        Some((
            peer.path_name(),
            peer.relay().map(|r| self.peers[usize::from(r.0)].key),
        ))
    }

    pub(super) fn ask_ondemand(&mut self, now: Instant, p: PeerIdx) {
        let peer = &mut *self.peers[usize::from(p.0)];
        let asked_lately = peer
            .demand
            .asked
            .is_some_and(|t| now.saturating_since(t) < ASK_AGAIN);
        if peer.is_linked() || asked_lately || peer.reach.punching || peer.tunnel.wanted {
            return;
        }
        peer.demand.asked = Some(now);
        peer.demand.linked = true;
        let addr = Addr::of_key(&peer.key);
        log::info!("traffic to {}: asking for a direct link", peer.name());
        self.make_room_for_ondemand(p);
        if let Some(ov) = self.overlay.as_mut() {
            ov.connect_to(now, addr, reason::ONDEMAND);
        }
        self.touch(p);
    }

    /// Keeps at most `MAX_LINKS` on-demand links: the one idle longest
    /// stops being on demand.
    fn make_room_for_ondemand(&mut self, except: PeerIdx) {
        let on: Vec<usize> = (0..self.peers.len())
            .filter(|&i| i != usize::from(except.0) && self.peers[i].demand.linked)
            .collect();
        if on.len() < MAX_LINKS {
            return;
        }
        if let Some(&lru) = on.iter().min_by_key(|&&i| self.peers[i].live.last_tx) {
            self.drop_ondemand(PeerIdx(lru as u16));
        }
    }

    fn drop_ondemand(&mut self, p: PeerIdx) {
        let peer = &mut *self.peers[usize::from(p.0)];
        peer.demand.linked = false;
        log::info!("on-demand link to {} is idle", peer.name());
        let addr = Addr::of_key(&peer.key);
        if let Some(ov) = self.overlay.as_mut() {
            ov.set_reason(addr, reason::ONDEMAND, false);
        }
        self.touch(p);
    }

    /// On-demand timers for peer `p`: the link lapses when idle.
    pub(super) fn ondemand_timers(&mut self, now: Instant, p: PeerIdx) {
        let idle_at = self.peers[usize::from(p.0)].ondemand_idle_at(&self.timers);
        if idle_at.is_some_and(|t| now >= t) {
            self.drop_ondemand(p);
        }
    }
}
