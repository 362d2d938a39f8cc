//! Virtual IPv4 → the node holding it: a bounded cache with positive and
//! negative entries, and bounded queues of the packets that wait for a
//! lookup (Brunet dropped them, so a TCP SYN then waited a second).
//!
//! Packets wait in both directions: going out (to the address being
//! resolved) and coming in (from a peer whose claim to its source address
//! is being checked, see `node::vpn`).

use crate::buf::PacketBuf;
use crate::crypto::NodeKey;
use crate::ids::PeerIdx;
use crate::time::Instant;
use smallvec::SmallVec;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

/// How long a resolved address is trusted before it is looked up again:
/// a node that leaves is forgotten this long after (its packets are then
/// dropped, never sent to whoever claims the address next).
pub const CACHE_TTL: Duration = Duration::from_secs(60);
/// How long "nobody holds it" is remembered: briefly at first (a node
/// that just claimed its address may not be findable everywhere yet, and
/// a ping retried after a second should then get through), doubling with
/// each miss in a row up to the max (a scan of unused addresses costs
/// little).
pub const NEGATIVE_TTL: Duration = Duration::from_secs(1);
pub const NEGATIVE_TTL_MAX: Duration = Duration::from_secs(8);
/// Cache entries at most (the oldest expiring first goes).
pub const MAX_CACHE: usize = 1024;
/// Addresses being resolved at once, and packets kept for each.
pub const MAX_LOOKUPS: usize = 32;
pub const PACKETS_PER_LOOKUP: usize = 8;
/// Lookups started to check the source of packets coming in, at most: a
/// member sending from many addresses must not take every lookup (our own
/// traffic going out keeps the other half)…
pub const MAX_INBOUND_LOOKUPS: usize = MAX_LOOKUPS / 2;
/// … nor more than its share of those.
pub const INBOUND_LOOKUPS_PER_PEER: usize = 2;

/// Which way a waiting packet goes once the lookup is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// From the TAP, to the address's holder.
    Out,
    /// From peer `p`, whose source address is being checked.
    In(PeerIdx),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    Known {
        key: NodeKey,
        expires: Instant,
    },
    /// `misses`: lookups in a row that found nobody.
    Absent {
        expires: Instant,
        misses: u8,
    },
}

/// A cache lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Known(NodeKey),
    Absent,
    /// Not cached: a lookup is needed (or already running).
    Unknown,
}

struct Lookup {
    op: u32,
    /// Started for a packet from this peer (checking its source).
    for_peer: Option<PeerIdx>,
    packets: SmallVec<[(PacketBuf, Dir); PACKETS_PER_LOOKUP]>,
}

#[derive(Default)]
pub struct Resolver {
    cache: BTreeMap<Ipv4Addr, Entry>,
    lookups: BTreeMap<Ipv4Addr, Lookup>,
}

impl Resolver {
    pub fn answer(&self, now: Instant, ip: Ipv4Addr) -> Answer {
        match self.cache.get(&ip) {
            Some(Entry::Known { key, expires }) if *expires > now => Answer::Known(*key),
            Some(Entry::Absent { expires, .. }) if *expires > now => Answer::Absent,
            _ => Answer::Unknown,
        }
    }

    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    pub fn resolving(&self) -> usize {
        self.lookups.len()
    }

    /// Whether a lookup for `ip` runs.
    pub fn is_resolving(&self, ip: Ipv4Addr) -> bool {
        self.lookups.contains_key(&ip)
    }

    /// Room for another lookup for a packet going `dir`?
    pub fn can_start(&self, dir: Dir) -> bool {
        if self.lookups.len() >= MAX_LOOKUPS {
            return false;
        }
        let Dir::In(p) = dir else {
            return true;
        };
        let inbound = self.lookups.values().filter_map(|l| l.for_peer);
        let (mut all, mut mine) = (0, 0);
        for q in inbound {
            all += 1;
            mine += usize::from(q == p);
        }
        all < MAX_INBOUND_LOOKUPS && mine < INBOUND_LOOKUPS_PER_PEER
    }

    /// Records that DHT operation `op` looks `ip` up, for a packet going
    /// `dir`.
    pub fn start(&mut self, ip: Ipv4Addr, op: u32, dir: Dir) {
        let for_peer = match dir {
            Dir::In(p) => Some(p),
            Dir::Out => None,
        };
        self.lookups.insert(
            ip,
            Lookup {
                op,
                for_peer,
                packets: SmallVec::new(),
            },
        );
    }

    /// Parks a packet until `ip` is resolved; gives it back if that
    /// lookup's queue is full (or none runs).
    pub fn park(&mut self, ip: Ipv4Addr, buf: PacketBuf, dir: Dir) -> Result<(), PacketBuf> {
        match self.lookups.get_mut(&ip) {
            Some(l) if l.packets.len() < PACKETS_PER_LOOKUP => {
                l.packets.push((buf, dir));
                Ok(())
            }
            _ => Err(buf),
        }
    }

    /// The address DHT operation `op` was looking up.
    pub fn ip_of_op(&self, op: u32) -> Option<Ipv4Addr> {
        self.lookups
            .iter()
            .find(|(_, l)| l.op == op)
            .map(|(&ip, _)| ip)
    }

    /// The lookup for `ip` ended: caches the answer and hands back the
    /// packets that waited for it, oldest first.
    pub fn complete(
        &mut self,
        now: Instant,
        ip: Ipv4Addr,
        holder: Option<NodeKey>,
    ) -> SmallVec<[(PacketBuf, Dir); PACKETS_PER_LOOKUP]> {
        self.insert(now, ip, holder);
        self.lookups
            .remove(&ip)
            .map(|l| l.packets)
            .unwrap_or_default()
    }

    /// Caches an answer.
    pub fn insert(&mut self, now: Instant, ip: Ipv4Addr, holder: Option<NodeKey>) {
        if !self.cache.contains_key(&ip) && self.cache.len() >= MAX_CACHE {
            self.cache.retain(|_, e| match e {
                Entry::Known { expires, .. } | Entry::Absent { expires, .. } => *expires > now,
            });
            if self.cache.len() >= MAX_CACHE {
                let oldest = self
                    .cache
                    .iter()
                    .min_by_key(|(_, e)| match e {
                        Entry::Known { expires, .. } | Entry::Absent { expires, .. } => *expires,
                    })
                    .map(|(&ip, _)| ip);
                if let Some(o) = oldest {
                    self.cache.remove(&o);
                }
            }
        }
        let e = match holder {
            Some(key) => Entry::Known {
                key,
                expires: now + CACHE_TTL,
            },
            None => {
                let misses = match self.cache.get(&ip) {
                    Some(Entry::Absent { misses, .. }) => misses.saturating_add(1),
                    _ => 1,
                };
                let ttl = NEGATIVE_TTL.saturating_mul(1 << (misses - 1).min(8));
                Entry::Absent {
                    expires: now + ttl.min(NEGATIVE_TTL_MAX),
                    misses,
                }
            }
        };
        self.cache.insert(ip, e);
    }

    /// Forgets what is cached for `ip` (its holder turned out to be gone).
    pub fn forget(&mut self, ip: Ipv4Addr) {
        self.cache.remove(&ip);
    }

    /// Cached entries, for status.
    pub fn entries(&self) -> impl Iterator<Item = (&Ipv4Addr, &Entry)> {
        self.cache.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::Pool;

    #[test]
    fn cache_queues_and_bounds() {
        let mut pool = Pool::new(32);
        let mut r = Resolver::default();
        let t = Instant::ZERO;
        let ip = Ipv4Addr::new(100, 64, 0, 12);
        assert_eq!(r.answer(t, ip), Answer::Unknown);
        // No lookup running: nothing can wait.
        let b = pool.alloc().unwrap();
        let b = r.park(ip, b, Dir::Out).unwrap_err();
        pool.free(b);
        r.start(ip, 7, Dir::Out);
        assert_eq!(r.ip_of_op(7), Some(ip));
        for _ in 0..PACKETS_PER_LOOKUP {
            r.park(ip, pool.alloc().unwrap(), Dir::Out).unwrap();
        }
        let extra = pool.alloc().unwrap();
        let extra = r.park(ip, extra, Dir::In(PeerIdx(3))).unwrap_err();
        pool.free(extra);
        let waiting = r.complete(t, ip, Some(NodeKey([1; 32])));
        assert_eq!(waiting.len(), PACKETS_PER_LOOKUP);
        for (b, _) in waiting {
            pool.free(b);
        }
        assert_eq!(pool.in_use(), 0);
        assert_eq!(r.answer(t, ip), Answer::Known(NodeKey([1; 32])));
        assert_eq!(r.answer(t + CACHE_TTL, ip), Answer::Unknown, "expires");
        r.insert(t, ip, None);
        assert_eq!(r.answer(t, ip), Answer::Absent);
        assert_eq!(r.answer(t + NEGATIVE_TTL, ip), Answer::Unknown);
        // Misses in a row are remembered longer, up to the max.
        let mut ttls = Vec::new();
        for _ in 0..6 {
            r.insert(t, ip, None);
            let ttl = (1..=60u64)
                .map(Duration::from_secs)
                .find(|&d| r.answer(t + d, ip) == Answer::Unknown)
                .unwrap();
            ttls.push(ttl.as_secs());
        }
        assert_eq!(ttls, [2, 4, 8, 8, 8, 8]);
        r.insert(t, ip, Some(NodeKey([1; 32])));
        r.insert(t, ip, None);
        assert_eq!(
            r.answer(t + NEGATIVE_TTL, ip),
            Answer::Unknown,
            "found resets"
        );
        for i in 0..MAX_CACHE as u32 + 10 {
            r.insert(t, Ipv4Addr::from(0x6440_0000 + i), None);
        }
        assert!(r.cached() <= MAX_CACHE);
    }

    /// A member sending from many addresses (issue 13): its lookups are
    /// capped, so are all inbound ones, and our own outgoing resolution
    /// keeps room.
    #[test]
    fn inbound_lookups_are_budgeted_per_member() {
        let mut r = Resolver::default();
        let spoofer = Dir::In(PeerIdx(5));
        let mut started = 0;
        for i in 0..100u32 {
            if r.can_start(spoofer) {
                r.start(Ipv4Addr::from(0x6440_1000 + i), i, spoofer);
                started += 1;
            }
        }
        assert_eq!(started, INBOUND_LOOKUPS_PER_PEER);
        // Many members at once fill only the inbound half.
        for (i, p) in (100..200u32).zip(6..) {
            let d = Dir::In(PeerIdx(p));
            if r.can_start(d) {
                r.start(Ipv4Addr::from(0x6440_1000 + i), i, d);
            }
        }
        assert_eq!(r.resolving(), MAX_INBOUND_LOOKUPS);
        assert!(r.can_start(Dir::Out), "outgoing resolution keeps room");
    }
}
