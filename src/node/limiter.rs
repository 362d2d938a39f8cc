//! Token buckets bounding the work others can cause.
//!
//! Verifying an Ed25519 signature costs tens of microseconds on x86 and
//! milliseconds on a router CPU, so inits are metered before any crypto:
//! one global bucket, and one per source address in a fixed-size table
//! (the oldest entry is recycled) so a single source cannot starve others.
//! Links the overlay starts on others' say-so (connect-to-me requests,
//! gossip) share one more bucket, and each peer's overlay messages have
//! their own (see [`Bucket`] in `Peer`).

pub use crate::limit::Bucket;
use crate::limit::KeyedBuckets;
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
/// Routed handshakes per second (and burst) arriving on one link: a ring
/// neighbour forwards others' handshakes too, so several sources' worth.
pub const ROUTED_VIA_RATE_PER_S: u32 = 50;
pub const ROUTED_VIA_BURST: u32 = 100;
/// New overlay links started per second, and burst: a node joining a
/// ring makes ~15 links over a few seconds, a settled node ~1 a minute;
/// a flood of connect-to-me requests or fake gossip cannot make it send
/// handshakes faster than this.
pub const LINK_RATE_PER_S: u32 = 20;
pub const LINK_BURST: u32 = 60;
/// Overlay messages (routed, gossip, lists) per second and burst from one
/// peer. A link carries a few per second at most in steady state (the
/// simulator's busiest node forwards ~10/s spread over ~15 links), so this
/// only stops a peer that floods.
pub const OVERLAY_RATE_PER_S: u32 = 100;
pub const OVERLAY_BURST: u32 = 200;

/// Below this many tokens in the global bucket a node is under load:
/// inits from sources that have not proven their address get a cookie
/// reply instead of an answer (see `cookies`). One: load starts only when
/// the budget is spent, where inits would otherwise be dropped, so a crowd
/// of honest joiners (the simulator's 300 nodes started at once never
/// empty it) costs no extra round trip.
pub const LOAD_MARK: u32 = 1;
/// Load lasts this long after the budget was last seen low: unproven
/// inits then cost no budget, so without a hold the budget would refill,
/// the flood drain it again, and load flicker on and off.
pub const LOAD_HOLD: std::time::Duration = std::time::Duration::from_secs(1);

/// Handshakes to one address that nobody has proved (no authenticated
/// packet ever came from it) and that only the overlay named: one per
/// this long. A ring link to a real node needs one init (the answer proves
/// the address, and retries to it are free again); a member naming a
/// victim's address in gossip or a forged reply gets one datagram sent
/// there per message at most, not an init per candidate and attempt.
pub const PROBE_SPACING: std::time::Duration = std::time::Duration::from_secs(10);
/// Handshakes per unproven address in one `PROBE_SPACING`.
pub const PROBES_PER_SPACING: u8 = 1;
/// Unproven addresses remembered (the oldest recycled): a fixed table.
pub const PROBE_SLOTS: usize = 256;

/// When we last sent a handshake to each unproven address (see
/// `PROBE_SPACING`).
#[derive(Debug, Default)]
pub struct Probes {
    last: Vec<(IpAddr, Instant, u8)>,
}

impl Probes {
    /// May a handshake go to unproven `ip` now? (Taking the turn if so.)
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if let Some((_, t, n)) = self.last.iter_mut().find(|(a, _, _)| *a == ip) {
            if now.saturating_since(*t) >= PROBE_SPACING {
                (*t, *n) = (now, 0);
            }
            if *n >= PROBES_PER_SPACING {
                return false;
            }
            *n += 1;
        } else if self.last.len() < PROBE_SLOTS {
            self.last.push((ip, now, 1));
        } else if let Some(oldest) = self.last.iter_mut().min_by_key(|(_, t, _)| *t) {
            *oldest = (ip, now, 1);
        }
        true
    }
}

/// What keeps the node from being spent by others: handshake rates,
/// probes at unproven addresses, cookies, and relaying for others.
pub(super) struct Guards {
    pub(super) limiter: HandshakeLimiter,
    /// Handshakes to addresses only the overlay named (see `Probes`).
    pub(super) probes: Probes,
    pub(super) cookies: super::cookies::Cookies,
    /// What we spend relaying others' tunnels.
    pub(super) relay_budget: super::relay::RelayBudget,
}

#[derive(Debug)]
pub struct HandshakeLimiter {
    global: Bucket,
    sources: KeyedBuckets<IpAddr>,
    /// Sources that proved their address with a cookie: a table and a
    /// global budget of their own, which spoofed inits cannot use up.
    proven_global: Bucket,
    proven: KeyedBuckets<IpAddr>,
    loaded_until: Option<Instant>,
    /// Handshakes routed to us over the overlay, by claimed source address
    /// (what the sender wrote)…
    routed: KeyedBuckets<crate::overlay::Addr>,
    /// … and by the link they arrived on (which it cannot choose), with a
    /// global budget of their own: routed inits have no cookie path, so
    /// they must not drain the budget of inits that come directly.
    routed_via: KeyedBuckets<super::PeerIdx>,
    routed_global: Bucket,
    links: Bucket,
}

impl HandshakeLimiter {
    pub fn new(now: Instant) -> HandshakeLimiter {
        HandshakeLimiter {
            global: Bucket::full(GLOBAL_BURST, now),
            sources: KeyedBuckets::new(SOURCE_SLOTS),
            proven_global: Bucket::full(GLOBAL_BURST, now),
            proven: KeyedBuckets::new(SOURCE_SLOTS),
            loaded_until: None,
            routed: KeyedBuckets::new(SOURCE_SLOTS),
            routed_via: KeyedBuckets::new(SOURCE_SLOTS),
            routed_global: Bucket::full(GLOBAL_BURST, now),
            links: Bucket::full(LINK_BURST, now),
        }
    }

    /// May the overlay start one more link?
    pub fn allow_link(&mut self, now: Instant) -> bool {
        self.links.take(now, LINK_RATE_PER_S, LINK_BURST)
    }

    /// May we spend handshake work on a message that came this way?
    pub(crate) fn allow_path(&mut self, from: super::Path, now: Instant) -> bool {
        match from {
            super::Path::Direct(ep) => self.allow(ep.ip(), now),
            super::Path::Overlay(src) => {
                self.routed.take(src, now, SOURCE_RATE_PER_S, SOURCE_BURST)
                    && self
                        .routed_global
                        .take(now, GLOBAL_RATE_PER_S, GLOBAL_BURST)
            }
        }
    }

    /// May a handshake routed to us through link `via` be looked at?
    pub fn allow_routed_via(&mut self, via: super::PeerIdx, now: Instant) -> bool {
        self.routed_via
            .take(via, now, ROUTED_VIA_RATE_PER_S, ROUTED_VIA_BURST)
    }

    /// Whether the handshake budget runs low (a flood, or a crowd).
    pub fn under_load(&mut self, now: Instant) -> bool {
        if self.global.level(now, GLOBAL_RATE_PER_S, GLOBAL_BURST) < LOAD_MARK {
            self.loaded_until = Some(now + LOAD_HOLD);
        }
        self.loaded_until.is_some_and(|t| now < t)
    }

    /// May we spend handshake work on an init from `src`, which proved
    /// its address with a cookie?
    pub fn allow_proven(&mut self, src: IpAddr, now: Instant) -> bool {
        self.proven.take(src, now, SOURCE_RATE_PER_S, SOURCE_BURST)
            && self
                .proven_global
                .take(now, GLOBAL_RATE_PER_S, GLOBAL_BURST)
    }

    /// May we spend handshake work on a message from `src`?
    pub fn allow(&mut self, src: IpAddr, now: Instant) -> bool {
        self.sources.take(src, now, SOURCE_RATE_PER_S, SOURCE_BURST)
            && self.global.take(now, GLOBAL_RATE_PER_S, GLOBAL_BURST)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Routed inits with a new claimed source each (issue 13): held to the
    /// budget of the link they come on, and never at the expense of inits
    /// that come directly.
    #[test]
    fn routed_inits_are_held_to_their_link_and_their_own_budget() {
        use crate::node::{Path, PeerIdx};
        use crate::overlay::Addr;
        let t0 = Instant::ZERO;
        let mut l = HandshakeLimiter::new(t0);
        let via = PeerIdx(3);
        let granted = (0..1000u128)
            .filter(|&i| l.allow_routed_via(via, t0) && l.allow_path(Path::Overlay(Addr(i)), t0))
            .count();
        assert_eq!(granted, GLOBAL_BURST.min(ROUTED_VIA_BURST) as usize);
        assert!(
            l.allow_routed_via(PeerIdx(4), t0),
            "another link has its own"
        );
        let direct: IpAddr = "198.18.0.7".parse().unwrap();
        assert!(l.allow(direct, t0), "direct inits keep their budget");
    }

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
        // The budget ran low: load holds a while, then ends.
        assert!(l.under_load(t0));
        assert!(l.under_load(t0 + LOAD_HOLD / 2 + LOAD_HOLD / 4));
        assert!(!l.under_load(t0 + LOAD_HOLD * 2));
        // Proven sources draw on their own budget.
        let mut l = HandshakeLimiter::new(t0);
        for i in 0..1000u32 {
            l.allow(IpAddr::from((0xc612_0000u32 + i).to_be_bytes()), t0);
        }
        assert!(l.under_load(t0));
        assert!(l.allow_proven(a, t0));
    }
}
