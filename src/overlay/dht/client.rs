//! Operations this node started: one request per replica point, replies
//! counted against the quorum, completion reported as an event.

use super::{QUORUM, REPLICAS};
use crate::overlay::Addr;
use crate::time::Instant;
use crate::wire::dht::{Record, RemoveProof, Status};
use std::collections::BTreeMap;
use std::time::Duration;

/// What an operation asks for.
#[derive(Debug, Clone)]
pub enum OpKind {
    Put {
        record: Record,
        create: bool,
    },
    /// `first`: done at the first reply holding a record (a lookup whose
    /// values are checked by other means), else at the quorum.
    Get {
        first: bool,
    },
    /// Carries the owner's signed word for every replica.
    Remove(RemoveProof),
}

/// How a finished operation went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A quorum of replicas stored (or removed) it.
    Stored,
    /// Create: a quorum of replicas has the key under another owner.
    Exists(Addr),
    /// Neither, by the deadline (replicas full, unreachable, or split).
    Failed,
    /// Get: the union of the records the replicas returned (possibly none).
    Found(Vec<Record>),
}

/// A finished operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: u32,
    pub key: Addr,
    pub outcome: Outcome,
    /// From start to the reply that completed it.
    pub latency: Duration,
    /// Overlay hops of that reply.
    pub hops: u8,
}

#[derive(Debug, Clone)]
pub(super) enum Reply {
    Put(Status),
    Get(Vec<Record>),
}

pub(super) struct Op {
    pub kind: OpKind,
    pub key: Addr,
    pub started: Instant,
    pub resent: bool,
    pub replies: [Option<Reply>; REPLICAS],
}

impl Op {
    pub fn new(kind: OpKind, key: Addr, now: Instant) -> Op {
        Op {
            kind,
            key,
            started: now,
            resent: false,
            replies: Default::default(),
        }
    }

    fn answered(&self) -> usize {
        self.replies.iter().filter(|r| r.is_some()).count()
    }

    /// The outcome if this op is decided (`timed_out`: no more replies
    /// will be waited for).
    pub fn decide(&self, timed_out: bool) -> Option<Outcome> {
        match &self.kind {
            OpKind::Put { .. } | OpKind::Remove(_) => {
                let mut ok = 0;
                let mut exists: BTreeMap<Addr, usize> = BTreeMap::new();
                for r in self.replies.iter().flatten() {
                    match r {
                        Reply::Put(Status::Ok) => ok += 1,
                        Reply::Put(Status::Exists(h)) => *exists.entry(*h).or_default() += 1,
                        _ => {}
                    }
                }
                if ok >= QUORUM {
                    return Some(Outcome::Stored);
                }
                // Enough replicas hold another owner that a quorum can no
                // longer agree with us.
                let taken: usize = exists.values().sum();
                if taken > REPLICAS - QUORUM {
                    let holder = exists.iter().max_by_key(|(_, n)| **n).map(|(h, _)| *h);
                    return holder.map(Outcome::Exists);
                }
                (timed_out || self.answered() == REPLICAS).then_some(Outcome::Failed)
            }
            OpKind::Get { first } => {
                let got = self.union();
                if *first && !got.is_empty() {
                    return Some(Outcome::Found(got));
                }
                (timed_out || self.answered() >= QUORUM).then_some(Outcome::Found(got))
            }
        }
    }

    /// Every record any replica returned, one per owner (the longest TTL).
    pub fn union(&self) -> Vec<Record> {
        let mut by_owner: BTreeMap<Addr, Record> = BTreeMap::new();
        for r in self.replies.iter().flatten() {
            if let Reply::Get(records) = r {
                for rec in records {
                    let e = by_owner.entry(rec.owner).or_insert_with(|| rec.clone());
                    if rec.ttl_secs > e.ttl_secs {
                        *e = rec.clone();
                    }
                }
            }
        }
        by_owner.into_values().collect()
    }

    /// Replicas that answered a get without `owner`'s record: read repair
    /// sends it to them.
    pub fn missing(&self, owner: Addr) -> impl Iterator<Item = u8> + '_ {
        self.replies
            .iter()
            .enumerate()
            .filter_map(move |(k, r)| match r {
                Some(Reply::Get(records)) if !records.iter().any(|x| x.owner == owner) => {
                    Some(k as u8)
                }
                _ => None,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(kind: OpKind) -> Op {
        Op::new(kind, Addr(1), Instant::ZERO)
    }

    fn put() -> OpKind {
        OpKind::Put {
            record: Record {
                owner: Addr(5),
                ttl_secs: 60,
                value: vec![],
            },
            create: true,
        }
    }

    #[test]
    fn puts_need_a_quorum() {
        let mut o = op(put());
        for k in 0..QUORUM - 1 {
            o.replies[k] = Some(Reply::Put(Status::Ok));
        }
        assert_eq!(o.decide(false), None);
        assert_eq!(o.decide(true), Some(Outcome::Failed));
        o.replies[QUORUM - 1] = Some(Reply::Put(Status::Ok));
        assert_eq!(o.decide(false), Some(Outcome::Stored));
    }

    #[test]
    fn a_create_loses_once_a_quorum_is_out_of_reach() {
        let mut o = op(put());
        for k in 0..=REPLICAS - QUORUM {
            o.replies[k] = Some(Reply::Put(Status::Exists(Addr(9))));
        }
        assert_eq!(o.decide(false), Some(Outcome::Exists(Addr(9))));
    }

    #[test]
    fn gets_take_the_union_and_know_who_lacks_what() {
        let r = |owner, ttl| Record {
            owner: Addr(owner),
            ttl_secs: ttl,
            value: vec![owner as u8],
        };
        let mut o = op(OpKind::Get { first: false });
        o.replies[0] = Some(Reply::Get(vec![r(1, 10)]));
        o.replies[1] = Some(Reply::Get(vec![r(1, 30), r(2, 5)]));
        o.replies[2] = Some(Reply::Get(vec![]));
        assert_eq!(o.decide(false), None);
        o.replies[3] = Some(Reply::Get(vec![]));
        o.replies[4] = Some(Reply::Get(vec![r(2, 5)]));
        match o.decide(false) {
            Some(Outcome::Found(v)) => assert_eq!(v, vec![r(1, 30), r(2, 5)]),
            x => panic!("{x:?}"),
        }
        assert_eq!(o.missing(Addr(1)).collect::<Vec<_>>(), vec![2, 3, 4]);
        // A lookup is done at the first reply that holds something.
        let mut o = op(OpKind::Get { first: true });
        o.replies[6] = Some(Reply::Get(vec![r(3, 1)]));
        assert!(matches!(o.decide(false), Some(Outcome::Found(v)) if v.len() == 1));
    }
}
