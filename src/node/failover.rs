//! Carrying out what a path's watch says (`node::watch`): probe it, move
//! traffic off it, give it up, or take it back.

use super::watch::Verdict;
use super::{Node, PeerIdx};
use crate::time::Instant;

impl Node {
    /// Peer `p`'s path (straight, or through a tunnel's relay): runs its
    /// watch.
    pub(super) fn watch_timers(&mut self, now: Instant, p: PeerIdx) {
        let peer = &mut *self.peers[usize::from(p.0)];
        if !peer.watched_path() {
            return;
        }
        let v = peer.reach.watch.poll(now, peer.live.rtt());
        if v != Verdict::Nothing {
            log::debug!(
                "watch {}: {v:?} ({:?}, rtt {:?})",
                peer.name(),
                peer.reach.watch,
                peer.live.rtt()
            );
        }
        match v {
            Verdict::Nothing => {}
            Verdict::Probe => self.send_ping(now, p),
            Verdict::Suspect => self.path_suspect(now, p),
            Verdict::Dead => self.path_dead(now, p),
        }
    }

    /// The path stopped answering: the overlay carries the peer's data
    /// and routes around the link; tunnels through the peer move.
    fn path_suspect(&mut self, now: Instant, p: PeerIdx) {
        let peer = &*self.peers[usize::from(p.0)];
        log::info!(
            "{} path to {} not answering: traffic takes the overlay",
            if peer.relay().is_some() {
                "tunnelled"
            } else {
                "direct"
            },
            peer.name()
        );
        self.send_ping(now, p);
        if self.overlay.is_none() || self.peers[usize::from(p.0)].relay().is_some() {
            return;
        }
        if let Some(ov) = self.overlay.as_mut() {
            ov.set_suspect(p, true);
        }
        if self.peers.iter().any(|q| q.relay() == Some(p)) {
            self.peers[usize::from(p.0)].tunnel.failed_as_relay = Some(now);
            self.relay_link_down(now, p);
        }
    }

    /// A pong came straight over the path: if it was suspect, it carries
    /// traffic again.
    pub(super) fn path_answered(&mut self, now: Instant, p: PeerIdx) {
        let peer = &mut *self.peers[usize::from(p.0)];
        if !peer.reach.watch.answered(now) {
            return;
        }
        log::info!("direct path to {} answers again", peer.name());
        self.index.wakeups.touch(p);
        if let Some(ov) = self.overlay.as_mut() {
            ov.set_suspect(p, false);
        }
    }

    /// A direct path we put traffic on stays silent: the ring lets the
    /// link go (and links again if it wants it: a fresh punch); the
    /// session, end to end, carries what the peer is still sent over the
    /// overlay, and a fresh direct link is asked for if traffic needs it.
    /// With static peers (no overlay) only the keepalive rule applies.
    fn path_dead(&mut self, now: Instant, p: PeerIdx) {
        if self.overlay.is_none() {
            return;
        }
        let i = usize::from(p.0);
        let peer = &mut *self.peers[i];
        peer.reach.watch.reset();
        if let Some(r) = peer.relay() {
            // The relay answers (else its own link's watch would have
            // moved us) but does not carry us to the peer: another relay,
            // not this one for a while.
            log::info!(
                "tunnel to {} through {} dead: traffic stays on the overlay, asking for another relay",
                self.peers[i].name(),
                self.peers[usize::from(r.0)].name()
            );
            self.peers[usize::from(r.0)].tunnel.failed_as_relay = Some(now);
            self.peers[i].drop_tunnel();
            self.release_relay(r);
            self.unlink(now, p);
            let peer = &mut *self.peers[i];
            if peer.sessions.current.is_some() {
                peer.route();
            }
            peer.tunnel.asked = None;
            return self.start_tunnel(now, p);
        }
        log::info!(
            "direct path to {} dead: traffic stays on the overlay, linking again",
            peer.name()
        );
        let needed = peer.demand.linked
            || peer
                .live
                .last_tx
                .is_some_and(|t| now.saturating_since(t) < self.timers.dead_after);
        peer.route();
        self.index.wakeups.touch(p);
        self.unlink(now, p);
        if needed {
            self.ping_direct_links(now, p);
            self.peers[i].demand.asked = None;
            self.ask_ondemand(now, p);
        }
    }
}
