//! The peer table: peers by index, by key and by session index. A peer
//! is found or added here (configured ones first, dynamic ones in free or
//! reclaimed slots), and every local session index is handed out here.

use super::peer::{Peer, PeerSlot, Tombstones};
use super::switch::MacTable;
use super::wakeups::Wakeups;
use super::{Node, PeerConfig, PeerIdx, Target};
use crate::crypto::NodeKey;
use crate::rand::Rng;
use crate::time::Instant;
use crate::wire::endpoint::Endpoint;
use std::collections::BTreeMap;

/// Ways to find a peer other than its place in the table.
pub(super) struct PeerIndex {
    pub(super) by_key: BTreeMap<NodeKey, PeerIdx>,
    /// Our session (and pending handshake) indices → peer or bootstrap.
    pub(super) by_session: BTreeMap<u32, Target>,
    /// Which peer a MAC was last seen behind (switch mode).
    pub(super) macs: MacTable,
    /// Peer deadlines, so timers visit only the peers that are due.
    pub(super) wakeups: Wakeups,
    /// Links up (peers whose link is `Up`), so "any link?" costs nothing.
    pub(super) linked: usize,
    /// What forgotten peers left behind (see `peer::slot`), and how many
    /// were forgotten.
    pub(super) tombstones: Tombstones,
    pub(super) evicted: u64,
}

impl Node {
    /// The peer for `key`, creating a dynamic one if policy allows and
    /// there is room (reusing the slot of a forgotten dynamic peer).
    pub(super) fn find_or_add_peer(
        &mut self,
        key: NodeKey,
        endpoint: Option<Endpoint>,
    ) -> Option<PeerIdx> {
        if let Some(&p) = self.index.by_key.get(&key) {
            return Some(p);
        }
        if key == self.identity.public() || !self.is_trusted(&key) {
            return None;
        }
        let cfg = PeerConfig {
            // Shown by its certificate's name or its ring address.
            name: String::new(),
            key,
            endpoint: None,
        };
        let mut fresh = Peer::new(&cfg);
        fresh.reach.endpoint = endpoint;
        fresh.role.dynamic = true;
        // A peer we forgot comes back with its replay guard.
        if let Some(t) = self.index.tombstones.raise(&key) {
            fresh.hs.last_init_timestamp = t;
        }
        // A vacant place first (a scan of pointers); only a full table
        // looks through the peers themselves for one with nothing left
        // that has not been forgotten yet.
        let vacant = self.peers.iter().position(PeerSlot::is_vacant);
        let full = self.peers.len() >= self.settings.max_peers;
        let reusable = vacant.or_else(|| {
            full.then_some(())?;
            self.peers.iter().position(|p| {
                p.role.dynamic
                    && !p.role.wanted
                    && !p.is_linked()
                    && p.hs.pending.is_none()
                    && p.sessions.current.is_none()
                    && p.sessions.next.is_none()
                    && p.sessions.next_alt.is_none()
                    && p.sessions.previous.is_none()
                    && p.sessions.older.is_none()
                    && p.hs.waiting.is_empty()
            })
        });
        let p = match reusable {
            Some(i) => {
                if !self.peers[i].is_vacant() {
                    self.forget_peer(PeerIdx(i as u16));
                }
                self.peers[i] = PeerSlot::new(fresh);
                PeerIdx(i as u16)
            }
            None if self.peers.len() < self.settings.max_peers => {
                // Grown one at a time: peers are few and live long.
                self.peers.reserve_exact(1);
                self.peers.push(PeerSlot::new(fresh));
                PeerIdx((self.peers.len() - 1) as u16)
            }
            None => return None,
        };
        self.index.by_key.insert(key, p);
        self.touch(p);
        Some(p)
    }

    /// Drops what refers to peer `p` (its key, MAC entries, a
    /// bootstrap's link to it, session indices) and leaves its replay
    /// guard in a tombstone, so its place can go to another peer.
    fn forget_peer(&mut self, p: PeerIdx) {
        let peer = &*self.peers[usize::from(p.0)];
        self.index.by_key.remove(&peer.key);
        self.index
            .tombstones
            .bury(peer.key, peer.hs.last_init_timestamp);
        self.index.macs.forget_peer(p);
        self.index
            .by_session
            .retain(|_, t| !matches!(t, Target::Peer(q) if *q == p));
        // A bootstrap that had turned out to be the old peer no longer is.
        for b in &mut self.strangers.boots {
            if b.peer == Some(p) {
                b.peer = None;
            }
        }
        self.strangers.boots_dirty = true;
    }

    /// Forgets peer `p` if it has been idle with nothing left long
    /// enough (`Peer::evict_at`); its place stays, vacant, for the next.
    pub(super) fn evict_if_stale(&mut self, now: Instant, p: PeerIdx) -> bool {
        let i = usize::from(p.0);
        if !self.peers[i].evict_at().is_some_and(|t| now >= t) {
            return false;
        }
        log::debug!("forgetting idle peer {}", self.peers[i].name());
        self.forget_peer(p);
        self.index.wakeups.forget(p);
        self.peers[i].vacate();
        self.index.evicted += 1;
        true
    }

    pub(super) fn new_index(&mut self, t: Target) -> u32 {
        loop {
            let idx = self.env.rng.next_u32();
            if idx != 0 && !self.index.by_session.contains_key(&idx) {
                self.index.by_session.insert(idx, t);
                return idx;
            }
        }
    }

    /// Peer `p`'s timers may be due sooner than before (see `wakeups`).
    /// The bootstraps' deadline is not recomputed here: it depends only on
    /// links coming and going, peers' endpoints and the bootstraps' own
    /// handshakes, whose transitions mark it (`boots_dirty`); recomputing
    /// it on every touched peer cost a scan per received message.
    pub(super) fn touch(&mut self, p: PeerIdx) {
        self.index.wakeups.touch(p);
    }
}
