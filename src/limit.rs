//! Token buckets: the one rate-limiting primitive, for handshakes, overlay
//! messages per peer and DHT requests per source.

use crate::time::Instant;

/// A token bucket.
#[derive(Clone, Copy, Debug)]
pub struct Bucket {
    /// Tokens in millitokens, so slow rates refill smoothly.
    milli: u64,
    last: Instant,
}

impl Bucket {
    pub fn full(burst: u32, now: Instant) -> Bucket {
        Bucket {
            milli: u64::from(burst) * 1000,
            last: now,
        }
    }

    /// Takes a token if there is one (refilled at `rate` per second, up to `burst`).
    pub fn take(&mut self, now: Instant, rate: u32, burst: u32) -> bool {
        self.take_n(now, 1, rate, burst)
    }

    /// Whole tokens there would be now (nothing is taken).
    pub fn level(&self, now: Instant, rate: u32, burst: u32) -> u32 {
        let elapsed_us = now.saturating_since(self.last).as_micros() as u64;
        let refill = elapsed_us.saturating_mul(u64::from(rate)) / 1000;
        ((self.milli + refill).min(u64::from(burst) * 1000) / 1000) as u32
    }

    /// Takes `n` tokens if there are (a byte budget: `n` bytes).
    pub fn take_n(&mut self, now: Instant, n: u32, rate: u32, burst: u32) -> bool {
        let elapsed_us = now.saturating_since(self.last).as_micros() as u64;
        let refill = elapsed_us.saturating_mul(u64::from(rate)) / 1000;
        self.milli = (self.milli + refill).min(u64::from(burst) * 1000);
        self.last = now;
        let need = u64::from(n) * 1000;
        if self.milli >= need {
            self.milli -= need;
            true
        } else {
            false
        }
    }
}

/// Buckets for up to `slots` keys in a fixed table: a key not seen
/// before takes a free slot or the least recently used one, so memory is
/// bounded whatever the number of sources.
#[derive(Debug)]
pub struct KeyedBuckets<K> {
    slots: usize,
    table: Vec<(K, Bucket)>,
}

impl<K: PartialEq + Copy> KeyedBuckets<K> {
    pub fn new(slots: usize) -> KeyedBuckets<K> {
        KeyedBuckets {
            slots,
            table: Vec::new(),
        }
    }

    /// Takes a token from `key`'s bucket (a new key starts full).
    pub fn take(&mut self, key: K, now: Instant, rate: u32, burst: u32) -> bool {
        self.take_n(key, now, 1, rate, burst)
    }

    /// Takes `n` tokens from `key`'s bucket (a new key starts full).
    pub fn take_n(&mut self, key: K, now: Instant, n: u32, rate: u32, burst: u32) -> bool {
        let slot = match self.table.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None if self.table.len() < self.slots => {
                self.table.push((key, Bucket::full(burst, now)));
                self.table.len() - 1
            }
            None => {
                let oldest = (0..self.table.len())
                    .min_by_key(|&i| self.table[i].1.last)
                    .unwrap_or(0);
                self.table[oldest] = (key, Bucket::full(burst, now));
                oldest
            }
        };
        self.table[slot].1.take_n(now, n, rate, burst)
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}
