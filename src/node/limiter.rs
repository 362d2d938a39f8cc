//! Token buckets bounding the handshake work strangers can cause.
//!
//! Verifying an Ed25519 signature costs tens of microseconds on x86 and
//! milliseconds on a router CPU, so inits are metered before any crypto:
//! one global bucket, and one per source address in a fixed-size table
//! (the oldest entry is recycled) so a single source cannot starve others.

use crate::time::Instant;
use std::net::IpAddr;

/// Global handshake budget: sustained inits per second and burst.
pub const GLOBAL_RATE_PER_S: u32 = 200;
pub const GLOBAL_BURST: u32 = 50;
/// Per-source budget: enough for retransmissions and rekeys of a few links.
pub const SOURCE_RATE_PER_S: u32 = 10;
pub const SOURCE_BURST: u32 = 10;
/// Distinct sources tracked; a fixed table, so memory is bounded.
pub const SOURCE_SLOTS: usize = 64;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    /// Tokens in millitokens, so slow rates refill smoothly.
    milli: u64,
    last: Instant,
}

impl Bucket {
    fn full(burst: u32, now: Instant) -> Bucket {
        Bucket {
            milli: u64::from(burst) * 1000,
            last: now,
        }
    }

    fn take(&mut self, now: Instant, rate: u32, burst: u32) -> bool {
        let elapsed_us = now.saturating_since(self.last).as_micros() as u64;
        let refill = elapsed_us.saturating_mul(u64::from(rate)) / 1000;
        self.milli = (self.milli + refill).min(u64::from(burst) * 1000);
        self.last = now;
        if self.milli >= 1000 {
            self.milli -= 1000;
            true
        } else {
            false
        }
    }
}

#[derive(Debug)]
pub struct HandshakeLimiter {
    global: Bucket,
    sources: Vec<(IpAddr, Bucket)>,
}

impl HandshakeLimiter {
    pub fn new(now: Instant) -> HandshakeLimiter {
        HandshakeLimiter {
            global: Bucket::full(GLOBAL_BURST, now),
            sources: Vec::with_capacity(SOURCE_SLOTS),
        }
    }

    /// May we spend handshake work on a message from `src`?
    pub fn allow(&mut self, src: IpAddr, now: Instant) -> bool {
        let slot = match self.sources.iter().position(|(ip, _)| *ip == src) {
            Some(i) => i,
            None if self.sources.len() < SOURCE_SLOTS => {
                self.sources.push((src, Bucket::full(SOURCE_BURST, now)));
                self.sources.len() - 1
            }
            None => {
                let oldest = (0..self.sources.len())
                    .min_by_key(|&i| self.sources[i].1.last)
                    .unwrap_or(0);
                self.sources[oldest] = (src, Bucket::full(SOURCE_BURST, now));
                oldest
            }
        };
        self.sources[slot]
            .1
            .take(now, SOURCE_RATE_PER_S, SOURCE_BURST)
            && self.global.take(now, GLOBAL_RATE_PER_S, GLOBAL_BURST)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_source_and_global_limits() {
        let t0 = Instant::ZERO;
        let mut l = HandshakeLimiter::new(t0);
        let a: IpAddr = "198.18.0.1".parse().unwrap();
        let granted = (0..100).filter(|_| l.allow(a, t0)).count();
        assert_eq!(granted, SOURCE_BURST as usize);
        // Refills at the per-source rate.
        let t1 = Instant::from_millis(1000);
        let granted = (0..100).filter(|_| l.allow(a, t1)).count();
        assert_eq!(granted, SOURCE_RATE_PER_S as usize);
        // Many sources together hit the global burst.
        let mut l = HandshakeLimiter::new(t0);
        let granted = (0..1000u32)
            .filter(|i| l.allow(IpAddr::from((0xc612_0000u32 + i).to_be_bytes()), t0))
            .count();
        assert_eq!(granted, GLOBAL_BURST as usize);
        assert!(l.sources.len() <= SOURCE_SLOTS);
    }
}
