//! Which peer is behind a MAC address: a learning switch.
//!
//! With statically configured peers the VPN behaves like an Ethernet switch
//! (as tinc's switch mode): source MACs of received frames are learned, known
//! unicast goes to one peer, broadcast and unknown unicast go to all.
//! The overlay VPN replaces this with local ARP answers and DHT lookups.

use super::PeerIdx;
use crate::time::Instant;
use crate::wire::ethernet::Mac;
use std::collections::BTreeMap;
use std::time::Duration;

/// Bound on learned addresses; beyond it new MACs are flooded, not learned.
pub const MAX_ENTRIES: usize = 1024;
/// A MAC not seen for this long is forgotten (as a switch ages entries).
pub const ENTRY_TTL: Duration = Duration::from_secs(300);

#[derive(Debug, Default)]
pub struct MacTable {
    map: BTreeMap<Mac, (PeerIdx, Instant)>,
}

impl MacTable {
    /// Records that `mac` lives behind `peer`. Allocates only for a new MAC.
    pub fn learn(&mut self, mac: Mac, peer: PeerIdx, now: Instant) {
        if mac.is_multicast() {
            return;
        }
        if let Some(e) = self.map.get_mut(&mac) {
            *e = (peer, now);
        } else if self.map.len() < MAX_ENTRIES {
            self.map.insert(mac, (peer, now));
        } else {
            self.map
                .retain(|_, (_, seen)| now.saturating_since(*seen) < ENTRY_TTL);
        }
    }

    pub fn lookup(&self, mac: Mac, now: Instant) -> Option<PeerIdx> {
        self.map
            .get(&mac)
            .filter(|(_, seen)| now.saturating_since(*seen) < ENTRY_TTL)
            .map(|(p, _)| *p)
    }

    /// Forgets everything learned from `peer` (its link went away).
    pub fn forget_peer(&mut self, peer: PeerIdx) {
        self.map.retain(|_, (p, _)| *p != peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_ages_and_ignores_multicast() {
        let mut t = MacTable::default();
        let m = Mac([2, 0, 0, 0, 0, 1]);
        t.learn(m, PeerIdx(3), Instant::ZERO);
        t.learn(Mac::BROADCAST, PeerIdx(1), Instant::ZERO);
        assert_eq!(t.lookup(m, Instant::ZERO), Some(PeerIdx(3)));
        assert_eq!(t.lookup(Mac::BROADCAST, Instant::ZERO), None);
        assert_eq!(t.lookup(m, Instant::ZERO + ENTRY_TTL), None);
        t.forget_peer(PeerIdx(3));
        assert_eq!(t.lookup(m, Instant::ZERO), None);
    }
}
