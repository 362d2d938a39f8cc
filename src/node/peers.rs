//! The peer table: peers by index, by key and by session index. A peer
//! is found or added here (configured ones first, dynamic ones in free or
//! reclaimed slots), and every local session index is handed out here.

use super::peer::Peer;
use super::switch::MacTable;
use super::wakeups::Wakeups;
use super::{Node, PeerConfig, PeerIdx, Target};
use crate::crypto::NodeKey;
use crate::rand::Rng;
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
            name: crate::overlay::Addr::of_key(&key).to_string(),
            key,
            endpoint: None,
        };
        let mut fresh = Peer::new(&cfg);
        fresh.reach.endpoint = endpoint;
        fresh.role.dynamic = true;
        let reusable = self.peers.iter().position(|p| {
            p.role.dynamic
                && !p.role.wanted
                && !p.is_linked()
                && p.hs.pending.is_none()
                && p.sessions.current.is_none()
                && p.sessions.next.is_none()
                && p.sessions.next_alt.is_none()
                && p.sessions.previous.is_none()
                && p.hs.waiting.is_empty()
        });
        let p = match reusable {
            Some(i) => {
                let old = self.peers[i].key;
                self.index.by_key.remove(&old);
                self.index.macs.forget_peer(PeerIdx(i as u16));
                self.peers[i] = fresh;
                // A bootstrap that had turned out to be the old peer no
                // longer is.
                for b in &mut self.strangers.boots {
                    if b.peer == Some(PeerIdx(i as u16)) {
                        b.peer = None;
                    }
                }
                self.strangers.boots_dirty = true;
                PeerIdx(i as u16)
            }
            None if self.peers.len() < self.settings.max_peers => {
                // Grown one at a time: peers are few and live long.
                self.peers.reserve_exact(1);
                self.peers.push(fresh);
                PeerIdx((self.peers.len() - 1) as u16)
            }
            None => return None,
        };
        self.index.by_key.insert(key, p);
        self.touch(p);
        Some(p)
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
    /// Its state changed, so the bootstraps' may have too (they look at
    /// which peers are linked, and where).
    pub(super) fn touch(&mut self, p: PeerIdx) {
        self.index.wakeups.touch(p);
        self.strangers.boots_dirty = true;
    }
}
