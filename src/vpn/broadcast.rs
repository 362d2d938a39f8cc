//! The ring broadcast's bookkeeping: which links cover which part of the
//! ring, a duplicate filter, and a per-source rate limit.
//!
//! Bounded broadcast (Brunet's): the source owns the whole ring and hands
//! each of its links the arc from that link up to the next one; every
//! recipient does the same within its arc. Each member gets one copy when
//! tables are consistent; a copy that arrives twice anyway (tables in
//! flux) is recognised by (source, sequence) and dropped.

use crate::ids::PeerIdx;
use crate::limit::KeyedBuckets;
use crate::overlay::table::ConnTable;
use crate::overlay::Addr;
use crate::time::Instant;
use smallvec::SmallVec;

/// Broadcasts one source may send per second (and burst) before members
/// stop passing them on: mDNS, ARP-like chatter and service discovery fit
/// easily; a flooding member costs its neighbours a bounded amount.
pub const RATE_PER_S: u32 = 20;
pub const BURST: u32 = 50;
/// Sources tracked by the rate limit.
const SOURCES: usize = 64;
/// (source, sequence) pairs remembered for duplicate detection.
const SEEN: usize = 512;

/// The links a broadcast goes on to, each with the end of its arc.
pub type Targets = SmallVec<[(PeerIdx, Addr); 32]>;

/// The links strictly between `me` and `end` going right, each with the
/// end of the arc it covers (the next such link, the last one `end`).
/// `end == me` means the whole ring.
pub fn targets(table: &ConnTable, me: Addr, end: Addr) -> Targets {
    let span = if end == me {
        u128::MAX
    } else {
        me.right_dist(end)
    };
    let mut inside: SmallVec<[(Addr, PeerIdx); 32]> = table
        .iter()
        .filter(|c| {
            let d = me.right_dist(c.addr);
            d != 0 && d < span
        })
        .map(|c| (c.addr, c.peer))
        .collect();
    inside.sort_by_key(|(a, _)| me.right_dist(*a));
    let mut out = Targets::new();
    for i in 0..inside.len() {
        let arc_end = inside.get(i + 1).map_or(end, |n| n.0);
        out.push((inside[i].1, arc_end));
    }
    out
}

pub struct BroadcastState {
    next_seq: u32,
    seen: Vec<(Addr, u32)>,
    seen_at: usize,
    limit: KeyedBuckets<Addr>,
}

impl Default for BroadcastState {
    fn default() -> BroadcastState {
        BroadcastState {
            next_seq: 1,
            seen: Vec::new(),
            seen_at: 0,
            limit: KeyedBuckets::new(SOURCES),
        }
    }
}

/// Why a broadcast is not passed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Duplicate,
    RateLimited,
}

impl BroadcastState {
    /// A sequence number for our next broadcast.
    pub fn next_seq(&mut self) -> u32 {
        let s = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        s
    }

    /// Whether to deliver and pass on a broadcast (a new one, within its
    /// source's rate); remembers it.
    pub fn accept(&mut self, now: Instant, src: Addr, seq: u32) -> Result<(), Refusal> {
        if self.seen.contains(&(src, seq)) {
            return Err(Refusal::Duplicate);
        }
        if !self.limit.take(src, now, RATE_PER_S, BURST) {
            return Err(Refusal::RateLimited);
        }
        if self.seen.len() < SEEN {
            self.seen.push((src, seq));
        } else {
            self.seen[self.seen_at] = (src, seq);
            self.seen_at = (self.seen_at + 1) % SEEN;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::NodeKey;
    use crate::rand::{Rng, SeededRng};

    /// Every member of a ring whose tables hold the two nearest on each
    /// side plus a few random links gets exactly one copy.
    #[test]
    fn every_member_gets_one_copy() {
        let mut rng = SeededRng::new(9);
        let n = 200;
        let mut addrs: Vec<Addr> = (0..n)
            .map(|_| Addr(((rng.next_u64() as u128) << 64) | rng.next_u64() as u128))
            .collect();
        addrs.sort();
        let tables: Vec<ConnTable> = (0..n)
            .map(|i| {
                let mut t = ConnTable::default();
                let mut links = vec![(i + 1) % n, (i + 2) % n, (i + n - 1) % n, (i + n - 2) % n];
                for _ in 0..4 {
                    links.push(rng.below(n as u64) as usize);
                }
                for j in links.into_iter().filter(|&j| j != i) {
                    t.insert_at(addrs[j], NodeKey([0; 32]), PeerIdx(j as u16));
                }
                t
            })
            .collect();
        let mut copies = vec![0u32; n];
        let mut work = vec![(0usize, addrs[0])];
        copies[0] = 1;
        while let Some((at, end)) = work.pop() {
            for (peer, arc_end) in targets(&tables[at], addrs[at], end) {
                let j = usize::from(peer.0);
                copies[j] += 1;
                work.push((j, arc_end));
            }
        }
        assert!(copies.iter().all(|&c| c == 1), "{copies:?}");
    }

    #[test]
    fn duplicates_and_floods_are_refused() {
        let mut b = BroadcastState::default();
        let t = Instant::ZERO;
        assert_eq!(b.accept(t, Addr(1), 5), Ok(()));
        assert_eq!(b.accept(t, Addr(1), 5), Err(Refusal::Duplicate));
        let passed = (100..200)
            .filter(|&s| b.accept(t, Addr(2), s).is_ok())
            .count();
        assert_eq!(passed, BURST as usize);
        assert_eq!(b.accept(t, Addr(3), 1), Ok(()), "others are not held back");
    }
}
