//! The records this node stores for others: bounded, soft state.

use crate::overlay::Addr;
use crate::time::Instant;
use crate::wire::dht::{Record, Records, Status, MAX_RECORDS_PER_MSG, MAX_TTL_SECS, MAX_VALUE};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

struct Stored {
    value: Vec<u8>,
    expires: Instant,
}

/// Records one owner may keep at this node: one member cannot fill a
/// store that serves every member (the VPN needs one or two per member).
pub const OWNER_QUOTA: usize = 64;
/// Records looked at for a stray one when the store is full: a put to a
/// full store costs this much at most, not a scan of every record.
pub const STRAY_SCAN: usize = 32;

/// Records by (key, owner): one value per owner per key, so an owner's
/// renewal replaces its value (a node that moved updates its endpoints)
/// and `create` can tell "mine" from "someone else's".
pub struct Store {
    records: BTreeMap<(Addr, Addr), Stored>,
    /// The same records by expiry: expired ones are found in O(log n).
    by_expiry: BTreeSet<(Instant, Addr, Addr)>,
    /// Records per owner (for [`OWNER_QUOTA`]).
    per_owner: BTreeMap<Addr, usize>,
    /// Where the next stray scan starts (it goes round the store).
    scan_from: (Addr, Addr),
    limit: usize,
}

impl Store {
    pub fn new(limit: usize) -> Store {
        Store {
            records: BTreeMap::new(),
            by_expiry: BTreeSet::new(),
            per_owner: BTreeMap::new(),
            scan_from: (Addr(0), Addr(0)),
            limit,
        }
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Stores `r` under `key`. `create`: only if no other owner holds the
    /// key. When full, an expired record, or one this node is no longer
    /// responsible for (`stray`, among the next [`STRAY_SCAN`]) makes room;
    /// otherwise the put is refused with `Full`, as is an owner's put
    /// beyond its [`OWNER_QUOTA`].
    pub fn put(
        &mut self,
        now: Instant,
        key: Addr,
        r: &Record,
        create: bool,
        stray: impl FnMut(Addr) -> bool,
    ) -> Status {
        if r.value.len() > MAX_VALUE || r.ttl_secs > MAX_TTL_SECS {
            return Status::TooBig;
        }
        if create {
            let holder = self
                .records
                .range((key, Addr(0))..=(key, Addr(u128::MAX)))
                .find(|(&(_, owner), s)| owner != r.owner && s.expires > now)
                .map(|(&(_, owner), _)| owner);
            if let Some(holder) = holder {
                return Status::Exists(holder);
            }
        }
        let id = (key, r.owner);
        if !self.records.contains_key(&id) {
            if self.per_owner.get(&r.owner).copied().unwrap_or(0) >= OWNER_QUOTA {
                return Status::Full;
            }
            if self.records.len() >= self.limit {
                match self.victim(now, stray) {
                    Some(v) => self.remove(v.0, v.1),
                    None => return Status::Full,
                }
            }
        }
        self.remove(key, r.owner);
        let expires = now + Duration::from_secs(u64::from(r.ttl_secs));
        self.records.insert(
            id,
            Stored {
                value: r.value.clone(),
                expires,
            },
        );
        self.by_expiry.insert((expires, key, r.owner));
        *self.per_owner.entry(r.owner).or_default() += 1;
        Status::Ok
    }

    /// A record that may go to make room: the first to expire if it has,
    /// else a stray among the next few (the scan goes round the store).
    fn victim(
        &mut self,
        now: Instant,
        mut stray: impl FnMut(Addr) -> bool,
    ) -> Option<(Addr, Addr)> {
        if let Some(&(t, k, o)) = self.by_expiry.first() {
            if t <= now {
                return Some((k, o));
            }
        }
        let from = self.scan_from;
        let ids = self
            .records
            .range(from..)
            .chain(self.records.range(..from))
            .map(|(&id, _)| id)
            .take(STRAY_SCAN);
        let mut last = from;
        let mut found = None;
        for id in ids {
            last = id;
            if stray(id.0) {
                found = Some(id);
                break;
            }
        }
        self.scan_from = (last.0, Addr(last.1 .0.wrapping_add(1)));
        found
    }

    /// The live records under `key` (at most one message's worth).
    pub fn get(&self, now: Instant, key: Addr) -> Records {
        self.records
            .range((key, Addr(0))..=(key, Addr(u128::MAX)))
            .filter(|(_, s)| s.expires > now)
            .take(MAX_RECORDS_PER_MSG)
            .map(|(&(_, owner), s)| Record {
                owner,
                ttl_secs: remaining(now, s.expires),
                value: s.value.clone(),
            })
            .collect()
    }

    pub fn remove(&mut self, key: Addr, owner: Addr) {
        if let Some(s) = self.records.remove(&(key, owner)) {
            self.by_expiry.remove(&(s.expires, key, owner));
            if let Some(n) = self.per_owner.get_mut(&owner) {
                *n -= 1;
                if *n == 0 {
                    self.per_owner.remove(&owner);
                }
            }
        }
    }

    /// Drops expired records.
    pub fn expire(&mut self, now: Instant) {
        while let Some(&(t, k, o)) = self.by_expiry.first() {
            if t > now {
                break;
            }
            self.remove(k, o);
        }
    }

    /// Every live record, as (key, record), for hand-off.
    pub fn iter(&self, now: Instant) -> impl Iterator<Item = (Addr, Record)> + '_ {
        self.records
            .iter()
            .filter(move |(_, s)| s.expires > now)
            .map(move |(&(key, owner), s)| {
                (
                    key,
                    Record {
                        owner,
                        ttl_secs: remaining(now, s.expires),
                        value: s.value.clone(),
                    },
                )
            })
    }

    /// The record (key, owner), if live.
    pub fn record(&self, now: Instant, key: Addr, owner: Addr) -> Option<Record> {
        let s = self
            .records
            .get(&(key, owner))
            .filter(|s| s.expires > now)?;
        Some(Record {
            owner,
            ttl_secs: remaining(now, s.expires),
            value: s.value.clone(),
        })
    }
}

fn remaining(now: Instant, expires: Instant) -> u32 {
    expires
        .saturating_since(now)
        .as_secs()
        .min(u64::from(MAX_TTL_SECS)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(owner: u128, v: &[u8]) -> Record {
        Record {
            owner: Addr(owner),
            ttl_secs: 10,
            value: v.to_vec(),
        }
    }

    #[test]
    fn create_is_put_if_absent_per_owner() {
        let t = Instant::ZERO;
        let mut s = Store::new(10);
        assert_eq!(
            s.put(t, Addr(1), &rec(7, b"a"), true, |_| false),
            Status::Ok
        );
        // The same owner renews (and may change its value).
        assert_eq!(
            s.put(t, Addr(1), &rec(7, b"b"), true, |_| false),
            Status::Ok
        );
        assert_eq!(s.get(t, Addr(1))[0].value, b"b");
        // Another owner cannot create, but may put (a set of values).
        assert_eq!(
            s.put(t, Addr(1), &rec(8, b"c"), true, |_| false),
            Status::Exists(Addr(7))
        );
        assert_eq!(
            s.put(t, Addr(1), &rec(8, b"c"), false, |_| false),
            Status::Ok
        );
        assert_eq!(s.get(t, Addr(1)).len(), 2);
        // Once the holder's record expires, the key is free again.
        let later = t + Duration::from_secs(11);
        assert!(s.get(later, Addr(1)).is_empty());
        assert_eq!(
            s.put(later, Addr(1), &rec(9, b"d"), true, |_| false),
            Status::Ok
        );
        s.remove(Addr(1), Addr(9));
        assert!(s.get(later, Addr(1)).is_empty());
    }

    #[test]
    fn limits_are_explicit() {
        let t = Instant::ZERO;
        let mut s = Store::new(2);
        assert_eq!(
            s.put(t, Addr(1), &rec(1, b""), false, |_| false),
            Status::Ok
        );
        assert_eq!(
            s.put(t, Addr(2), &rec(1, b""), false, |_| false),
            Status::Ok
        );
        assert_eq!(
            s.put(t, Addr(3), &rec(1, b""), false, |_| false),
            Status::Full
        );
        // A stray record (no longer ours to keep) makes room.
        assert_eq!(
            s.put(t, Addr(3), &rec(1, b""), false, |k| k == Addr(1)),
            Status::Ok
        );
        assert_eq!(s.len(), 2);
        let big = rec(1, &[0; MAX_VALUE + 1]);
        assert_eq!(s.put(t, Addr(4), &big, false, |_| true), Status::TooBig);
    }

    /// One member filling a store that serves everyone (issue 13): its
    /// quota stops it, others still store, and a put to a full store looks
    /// at a bounded number of records however big the store is.
    #[test]
    fn one_owner_cannot_fill_the_store_and_refusal_is_cheap() {
        let t = Instant::ZERO;
        let mut s = Store::new(4096);
        let big = |owner| Record {
            owner: Addr(owner),
            ttl_secs: 3600,
            value: vec![7; MAX_VALUE],
        };
        let mut stored = 0;
        for k in 0..1000u128 {
            if s.put(t, Addr(k), &big(666), false, |_| false) == Status::Ok {
                stored += 1;
            }
        }
        assert_eq!(stored, OWNER_QUOTA);
        assert_eq!(
            s.put(t, Addr(5000), &rec(1, b"mine"), false, |_| false),
            Status::Ok
        );
        // Renewing a record it has is not a new one.
        assert_eq!(s.put(t, Addr(0), &big(666), false, |_| false), Status::Ok);
        // Many owners fill it; a put then looks at STRAY_SCAN records.
        for o in 0..4096u128 {
            s.put(t, Addr(10_000 + o), &big(1000 + o), false, |_| false);
        }
        assert_eq!(s.len(), 4096);
        let mut looked = 0;
        let st = s.put(t, Addr(99_999), &big(1), false, |_| {
            looked += 1;
            false
        });
        assert_eq!((st, looked), (Status::Full, STRAY_SCAN));
        // Expired records make room first, found without a scan.
        let later = t + Duration::from_secs(3601);
        let mut looked = 0;
        let st = s.put(later, Addr(99_999), &big(1), false, |_| {
            looked += 1;
            false
        });
        assert_eq!((st, looked), (Status::Ok, 0));
        s.expire(later);
        assert_eq!(s.len(), 1);
    }
}
