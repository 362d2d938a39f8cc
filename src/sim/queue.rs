//! The simulator's event queue: a calendar of one-millisecond buckets.
//!
//! Nearly every event is a datagram delivery one link latency ahead or a
//! node's timer a few seconds ahead, and they are consumed in time order,
//! a bucket at a time. A binary heap of a million entries pays a cache miss
//! per level on every push and pop; here a push appends to its bucket and a
//! bucket is sorted once, when the clock reaches it (a few hundred entries
//! at 100,000 nodes). Events beyond the calendar's horizon (four seconds:
//! keepalives, rekeys) wait in a small heap and move into their bucket as
//! the calendar turns.
//!
//! An event for a time the calendar has already turned past (the clock
//! jumped to the next busy bucket; a node then scheduled something
//! between) waits in a second small heap, `early`, consulted first.
//!
//! Entries are 24 bytes: time, a tie-breaking key, the target node and
//! the datagram's slot (payloads stay where they are, see `engine`). The
//! key, not insertion order, breaks ties, so any order of pushes replays
//! the same run.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Bucket width (µs).
const WIDTH: u64 = 1_000;
/// Buckets in the calendar (a power of two): a 4.096 s horizon.
const BUCKETS: usize = 4_096;

/// One scheduled event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    /// Virtual time (µs).
    pub at: u64,
    /// Breaks ties between events at the same time: who made the event
    /// and its number there (see `engine::key`), the same however the
    /// run is split across threads.
    pub key: u64,
    pub node: u32,
    /// The datagram's slot, or [`WAKE`].
    pub slot: u32,
}

/// The `slot` of a timer wake-up.
pub const WAKE: u32 = u32::MAX;

pub struct Calendar {
    buckets: Vec<Vec<Entry>>,
    /// The bucket (absolute number) the clock is in.
    current: u64,
    /// Whether `buckets[current]` is sorted (descending: pop from the end).
    sorted: bool,
    /// Entries in the calendar (not in `far`).
    near: usize,
    far: BinaryHeap<Reverse<Entry>>,
    /// Entries for buckets the calendar has turned past, or for the
    /// current one once it is sorted.
    early: BinaryHeap<Reverse<Entry>>,
}

impl Default for Calendar {
    fn default() -> Calendar {
        Calendar {
            buckets: (0..BUCKETS).map(|_| Vec::new()).collect(),
            current: 0,
            sorted: false,
            near: 0,
            far: BinaryHeap::new(),
            early: BinaryHeap::new(),
        }
    }
}

impl Calendar {
    #[cfg(test)]
    fn len(&self) -> usize {
        self.near + self.far.len() + self.early.len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Gives every datagram entry its new slot, `remap(old)`: the
    /// simulator compacts its slab of datagrams in flight after a burst.
    pub fn remap_slots(&mut self, mut remap: impl FnMut(u32) -> u32) {
        let mut fix = |e: &mut Entry| {
            if e.slot != WAKE {
                e.slot = remap(e.slot);
            }
        };
        for b in &mut self.buckets {
            b.iter_mut().for_each(&mut fix);
        }
        for heap in [&mut self.far, &mut self.early] {
            let mut v = std::mem::take(heap).into_vec();
            v.iter_mut().for_each(|Reverse(e)| fix(e));
            *heap = BinaryHeap::from(v);
        }
    }

    fn slot(b: u64) -> usize {
        (b % BUCKETS as u64) as usize
    }

    pub fn push(&mut self, e: Entry) {
        let b = e.at / WIDTH;
        if b < self.current || (b == self.current && self.sorted) {
            return self.early.push(Reverse(e));
        }
        if b >= self.current + BUCKETS as u64 {
            return self.far.push(Reverse(e));
        }
        self.near += 1;
        self.buckets[Self::slot(b)].push(e);
    }

    /// The earliest entry's time.
    pub fn peek_at(&mut self) -> Option<u64> {
        let bucket = self
            .settle()
            .and_then(|_| self.buckets[Self::slot(self.current)].last());
        let early = self.early.peek().map(|Reverse(e)| e);
        match (bucket, early) {
            (Some(b), Some(e)) => Some(b.min(e).at),
            (b, e) => b.or(e).map(|x| x.at),
        }
    }

    pub fn pop(&mut self) -> Option<Entry> {
        let bucket = self
            .settle()
            .and_then(|_| self.buckets[Self::slot(self.current)].last());
        let from_early = match (bucket, self.early.peek()) {
            (Some(b), Some(Reverse(e))) => e < b,
            (None, Some(_)) => true,
            (_, None) => false,
        };
        if from_early {
            return self.early.pop().map(|Reverse(e)| e);
        }
        let e = self.buckets[Self::slot(self.current)].pop()?;
        self.near -= 1;
        Some(e)
    }

    /// Turns the calendar to the first non-empty bucket and sorts it;
    /// `None` when nothing is queued.
    fn settle(&mut self) -> Option<()> {
        loop {
            let bucket = &mut self.buckets[Self::slot(self.current)];
            if !bucket.is_empty() {
                if !self.sorted {
                    bucket.sort_unstable_by(|a, b| b.cmp(a));
                    self.sorted = true;
                }
                return Some(());
            }
            // A bucket keeps room for about what it last held: the join's
            // burst does not stay allocated for the rest of the run.
            if bucket.capacity() > 256 {
                bucket.shrink_to(64);
            }
            if self.near == 0 {
                // Jump straight to the far heap's first bucket.
                let Reverse(first) = self.far.peek()?;
                self.current = self.current.max(first.at / WIDTH);
            } else {
                self.current += 1;
            }
            self.sorted = false;
            // Far entries that are now within the horizon join their bucket.
            let horizon = self.current + BUCKETS as u64;
            while self
                .far
                .peek()
                .is_some_and(|Reverse(e)| e.at / WIDTH < horizon)
            {
                let Some(Reverse(e)) = self.far.pop() else {
                    break;
                };
                let b = (e.at / WIDTH).max(self.current);
                self.near += 1;
                self.buckets[Self::slot(b)].push(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rand::{Rng, SeededRng};

    #[test]
    fn pops_in_time_then_key_order_like_a_heap() {
        let mut rng = SeededRng::new(7);
        let mut cal = Calendar::default();
        let mut heap = BinaryHeap::new();
        let mut now = 0u64;
        let mut key = 0u64;
        for round in 0..20_000 {
            // Pushes at the clock, within the horizon and far beyond it,
            // interleaved with pops.
            for _ in 0..rng.below(4) {
                let ahead = match rng.below(4) {
                    0 => 0,
                    1 => rng.below(3_000),
                    2 => rng.below(200_000),
                    _ => rng.below(30_000_000),
                };
                key += 1;
                let e = Entry {
                    at: now + ahead,
                    key: key ^ 0x5555,
                    node: round,
                    slot: WAKE,
                };
                cal.push(e);
                heap.push(Reverse(e));
            }
            if rng.below(3) > 0 {
                let a = cal.pop();
                let b = heap.pop().map(|Reverse(e)| e);
                assert_eq!(a, b);
                if let Some(e) = a {
                    now = e.at;
                }
            }
            assert_eq!(cal.len(), heap.len());
        }
        while let Some(Reverse(e)) = heap.pop() {
            assert_eq!(cal.pop(), Some(e));
        }
        assert!(cal.is_empty() && cal.pop().is_none());
    }
}
