//! Timers: which peers are due (the lazy deadline heap in `wakeups`), what
//! each due peer needs (rekey, ping, retry, expiry, tunnel checks), and the
//! node's next deadline.

use super::{Node, PeerIdx, Target};
use crate::time::Instant;

impl Node {
    pub(super) fn due_peer_timers(&mut self, now: Instant) {
        while let Some(p) = self.index.wakeups.pop_due(now) {
            self.peer_timers(now, p);
            if !self.evict_if_stale(now, p) {
                self.touch(p);
            }
        }
    }

    /// One peer's timers: session expiry, the end of a closing grace, a
    /// silent link, handshake retries and rekeys, pings.
    pub(super) fn peer_timers(&mut self, now: Instant, p: PeerIdx) {
        let i = usize::from(p.0);
        let timers = &self.timers;
        let by_index = &mut self.index.by_session;
        let peer = &mut *self.peers[i];
        peer.sessions.expire(now, timers.reject_after_time, |idx| {
            by_index.remove(&idx);
        });
        if peer.closing_since().is_some() {
            self.end_closing(now, p);
        }
        let timers = &self.timers;
        let by_index = &mut self.index.by_session;
        let peer = &mut *self.peers[i];
        let mut relink = false;
        if peer.is_silent(now, timers) {
            log::info!("link to {} silent, re-handshaking", peer.name());
            peer.sessions.clear(|idx| {
                by_index.remove(&idx);
            });
            // Our traffic needs it: a NAT on the way may have lost its
            // mapping, and only a fresh exchange of candidates over the
            // overlay (both sides punching again) finds the new one.
            relink = peer.demand.linked
                || peer
                    .live
                    .last_tx
                    .is_some_and(|t| now.saturating_since(t) < timers.dead_after);
        }
        self.link_down(now, p);
        if relink && self.overlay.is_some() {
            self.ping_direct_links(now, p);
            self.peers[i].demand.asked = None;
            self.ask_ondemand(now, p);
        }
        self.watch_timers(now, p);
        // Tunnel and on-demand steps first: they can change what the
        // handshake below is for.
        self.tunnel_timers(now, p);
        self.ondemand_timers(now, p);
        let peer = &*self.peers[i];
        match &peer.hs.pending {
            Some(pending) if now >= pending.next_retry => {
                self.start_handshake(now, Target::Peer(p))
            }
            Some(_) => {}
            None if peer.needs_handshake(now, &self.timers) => {
                self.start_handshake(now, Target::Peer(p))
            }
            None => {}
        }
        if self.peers[i]
            .ping_due(&self.timers)
            .is_some_and(|t| now >= t)
        {
            self.send_ping(now, p);
        }
        self.tell_serials(now, p);
        if self.peers[i].idle_at().is_some_and(|t| now >= t) {
            // A routed session the VPN no longer uses: no more rekeys.
            self.peers[i].role.wanted = false;
        }
    }

    /// Re-arms the touched peers and the bootstrap timer. Runs at the end
    /// of every input, so `poll_timeout` is a lookup.
    pub(super) fn rearm(&mut self) {
        let (peers, timers) = (&self.peers, &self.timers);
        self.index
            .wakeups
            .rearm(|p| peers[usize::from(p.0)].deadline(timers));
        #[cfg(debug_assertions)]
        self.index
            .wakeups
            .check(|p| peers[usize::from(p.0)].deadline(timers), peers.len());
        if self.strangers.boots_dirty {
            self.strangers.boots_dirty = false;
            self.strangers.boot_wake = self.boot_deadline();
        }
        debug_assert_eq!(
            self.strangers.boot_wake,
            self.boot_deadline(),
            "bootstrap state changed without boots_dirty: linked {} thin {:?} boots {:?}",
            self.index.linked,
            self.overlay.as_ref().map(|o| o.table().len()),
            self.strangers
                .boots
                .iter()
                .map(|b| (
                    b.endpoint,
                    b.peer,
                    b.learned.is_some(),
                    b.pending.is_some(),
                    b.next_try
                ))
                .collect::<Vec<_>>()
        );
    }
}
