//! The records this node stores for others: bounded, soft state.

use crate::overlay::Addr;
use crate::time::Instant;
use crate::wire::dht::{Record, Records, Status, MAX_RECORDS_PER_MSG, MAX_TTL_SECS, MAX_VALUE};
use std::collections::BTreeMap;
use std::time::Duration;

struct Stored {
    value: Vec<u8>,
    expires: Instant,
}

/// Records by (key, owner): one value per owner per key, so an owner's
/// renewal replaces its value (a node that moved updates its endpoints)
/// and `create` can tell "mine" from "someone else's".
pub struct Store {
    records: BTreeMap<(Addr, Addr), Stored>,
    limit: usize,
}

impl Store {
    pub fn new(limit: usize) -> Store {
        Store {
            records: BTreeMap::new(),
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
    /// key. When full, a record this node is no longer responsible for
    /// (`stray`) makes room; otherwise the put is refused with `Full`.
    pub fn put(
        &mut self,
        now: Instant,
        key: Addr,
        r: &Record,
        create: bool,
        mut stray: impl FnMut(Addr) -> bool,
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
        if !self.records.contains_key(&id) && self.records.len() >= self.limit {
            let victim = self
                .records
                .iter()
                .find(|(&(k, _), s)| s.expires <= now || stray(k))
                .map(|(&id, _)| id);
            match victim {
                Some(v) => {
                    self.records.remove(&v);
                }
                None => return Status::Full,
            }
        }
        self.records.insert(
            id,
            Stored {
                value: r.value.clone(),
                expires: now + Duration::from_secs(u64::from(r.ttl_secs)),
            },
        );
        Status::Ok
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
        self.records.remove(&(key, owner));
    }

    /// Drops expired records.
    pub fn expire(&mut self, now: Instant) {
        self.records.retain(|_, s| s.expires > now);
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
}
