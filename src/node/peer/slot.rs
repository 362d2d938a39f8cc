//! A place in the peer table, and what is left of a peer forgotten.
//!
//! A member that talks to many others over its life (a relay, an exit, a
//! busy DHT replica) would otherwise keep every one of them: the table
//! only grew. A dynamic peer with nothing left (no link, session,
//! handshake or tunnel) and idle for [`EVICT_IDLE`] is dropped; its place
//! stays (other modules name peers by their index, and a stale index must
//! never reach another member's state) but costs one pointer, and the
//! next new peer takes it. What must outlive the peer is its handshake
//! replay guard, the newest init timestamp it used: kept in a bounded
//! table of tombstones and handed back if the peer returns, so an init
//! recorded on the wire cannot be replayed to it after it was forgotten.

use super::Peer;
use crate::crypto::NodeKey;
use std::collections::BTreeMap;
use std::time::Duration;

/// Idle time (nothing sent or heard, no session) before a dynamic peer
/// is forgotten: long enough that a peer between two bursts keeps its
/// state, short enough that a join's hundreds of passing contacts leave
/// within a minute.
pub const EVICT_IDLE: Duration = Duration::from_secs(30);

/// Idle time before a dynamic peer whose link we closed is forgotten: the
/// overlay let it go (a join's surplus links, trimmed by the dozen), so
/// only what crossed the close is still to come. Its sessions end after
/// `CLOSE_GRACE`; the entry follows a second after the last word instead
/// of holding the join's peak for [`EVICT_IDLE`].
pub const EVICT_CLOSED: Duration = Duration::from_secs(1);

/// Tombstones kept at most (the oldest go first): ~64 KiB.
pub const MAX_TOMBSTONES: usize = 1024;

/// A peer table entry: a peer, or the place of one forgotten. Derefs to
/// the peer; a vacant place reads as a peer with nothing (no link, not
/// wanted, not dynamic), and writing to it makes it one again (a stale
/// index then changes a blank peer, never someone else's).
pub struct PeerSlot(Option<Box<Peer>>);

impl PeerSlot {
    pub fn new(peer: Peer) -> PeerSlot {
        PeerSlot(Some(Box::new(peer)))
    }

    pub fn is_vacant(&self) -> bool {
        self.0.is_none()
    }

    /// Drops the peer, keeping the place.
    pub fn vacate(&mut self) -> Option<Box<Peer>> {
        self.0.take()
    }

    fn blank() -> Peer {
        let mut p = Peer::new(&crate::node::PeerConfig {
            name: String::new(),
            key: NodeKey([0; 32]),
            endpoint: None,
        });
        p.role.wanted = false;
        p
    }
}

impl core::ops::Deref for PeerSlot {
    type Target = Peer;

    #[inline(always)]
    fn deref(&self) -> &Peer {
        match &self.0 {
            Some(p) => p,
            None => vacant(),
        }
    }
}

impl core::ops::DerefMut for PeerSlot {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut Peer {
        match self.0 {
            Some(ref mut p) => p,
            None => refill(&mut self.0),
        }
    }
}

/// A write to a vacant place (a stale index): a blank peer there.
#[cold]
#[inline(never)]
fn refill(place: &mut Option<Box<Peer>>) -> &mut Peer {
    log::debug!("a forgotten peer's place written to: a blank peer there");
    place.insert(Box::new(PeerSlot::blank()))
}

/// What a vacant place reads as: one blank peer per thread that ever
/// reads one (a peer is not `Sync`).
#[cold]
#[inline(never)]
fn vacant() -> &'static Peer {
    thread_local! {
        static VACANT: &'static Peer = Box::leak(Box::new(PeerSlot::blank()));
    }
    VACANT.with(|v| *v)
}

/// Forgotten peers' newest init timestamps.
#[derive(Default)]
pub struct Tombstones {
    by_key: BTreeMap<NodeKey, u64>,
}

impl Tombstones {
    /// Remembers `key`'s newest init timestamp (the oldest tombstone
    /// goes when full).
    pub fn bury(&mut self, key: NodeKey, last_init: u64) {
        if self.by_key.len() >= MAX_TOMBSTONES && !self.by_key.contains_key(&key) {
            if let Some(oldest) = self.by_key.iter().min_by_key(|(_, &t)| t).map(|(k, _)| *k) {
                self.by_key.remove(&oldest);
            }
        }
        self.by_key.insert(key, last_init);
    }

    /// The timestamp `key` left behind, if it was forgotten.
    pub fn raise(&mut self, key: &NodeKey) -> Option<u64> {
        self.by_key.remove(key)
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vacant_place_reads_blank_and_writes_a_blank_peer() {
        let mut s = PeerSlot::new(PeerSlot::blank());
        assert!(s.vacate().is_some() && s.is_vacant());
        assert!(!s.is_linked() && !s.role.wanted && !s.role.dynamic);
        assert_eq!(s.evict_at(), None, "a vacant place is never due");
        s.live.last_rx = None;
        assert!(!s.is_vacant());
    }

    /// A peer whose link we closed goes `EVICT_CLOSED` after its last
    /// word; a handshake after the close makes it an ordinary idle peer.
    #[test]
    fn a_peer_whose_link_we_closed_is_forgotten_sooner() {
        use crate::time::Instant;
        let t = Instant::from_micros(60_000_000);
        let mut p = PeerSlot::blank();
        p.role.dynamic = true;
        p.live.last_rx = Some(t);
        assert_eq!(p.evict_at(), Some(t + EVICT_IDLE));
        p.role.closed_at = Some(t);
        assert_eq!(p.evict_at(), Some(t + EVICT_CLOSED));
        let later = t + Duration::from_secs(1);
        p.hs.last_handshake = Some(later);
        assert_eq!(p.evict_at(), Some(later + EVICT_IDLE));
        p.role.wanted = true;
        assert_eq!(p.evict_at(), None, "a wanted peer stays");
    }

    #[test]
    fn tombstones_are_bounded_and_the_oldest_go_first() {
        let mut t = Tombstones::default();
        for i in 0..MAX_TOMBSTONES as u64 + 10 {
            let mut k = [0u8; 32];
            k[..8].copy_from_slice(&i.to_be_bytes());
            t.bury(NodeKey(k), 1000 + i);
        }
        assert_eq!(t.len(), MAX_TOMBSTONES);
        assert_eq!(t.raise(&NodeKey([0; 32])), None, "the oldest went");
        let mut k = [0u8; 32];
        k[..8].copy_from_slice(&(MAX_TOMBSTONES as u64 + 9).to_be_bytes());
        assert_eq!(t.raise(&NodeKey(k)), Some(1000 + MAX_TOMBSTONES as u64 + 9));
        assert_eq!(t.raise(&NodeKey(k)), None, "raised once");
    }
}
