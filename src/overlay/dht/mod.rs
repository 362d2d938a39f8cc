//! The DHT on the ring: soft-state records replicated at 8 points.
//!
//! A key is a ring address. Its record lives at [`REPLICAS`] points spread
//! evenly round the ring (key + k·2^125), each held by the two nodes that
//! bracket the point: the node a `closest`-routed request reaches stores it
//! and copies it to its neighbour on the other side of the point (Brunet's
//! scheme). So a record survives the loss of
//! any minority of its replicas, and of either node of each pair.
//!
//! - **put / create / remove** go to all 8 points; a put is stored once
//!   [`QUORUM`] (5) replicas confirm. `create` is put-if-absent: a replica
//!   holding the key for another owner answers "exists", and 4 such answers
//!   decide against us (two creators cannot both reach 5 of 8).
//! - **get** returns the union of what the first 5 replicas to answer hold
//!   (one record per owner); replicas that lacked a record get it back
//!   (read repair). A *lookup* is done at the first answer holding a record.
//! - **Soft state:** every record has a TTL (≤ 1 h); owners renew theirs
//!   at half the TTL ([`Overlay::dht_register`]).
//! - **Hand-off:** when a node gets a new ring neighbour it copies to it the
//!   records whose points that neighbour now brackets with it, so records
//!   follow joins and survive crashes without waiting for renewal.
//! - **Removes are signed** by the owner (`remove`): a replica, and the
//!   pair's other node, which gets the proof in the zero-TTL copy, checks
//!   it. The routed source is never the authority: it is whatever the
//!   sender wrote (docs/SECURITY.md).
//! - **Bounds:** values ≤ 1 KiB, records per node (`max_records`), requests
//!   per source per second; each refusal is an explicit reply (`full`,
//!   `too big`, `rate limited`), never a silently dropped accepted record.

pub mod client;
pub mod remove;
mod replicas;
use replicas::{bracket_of, responsible_of};
pub mod store;

use super::tokens::Tokens;
use super::{Action, Overlay, Refused};
use crate::crypto::Identity;
use crate::ids::PeerIdx;
use crate::limit::KeyedBuckets;
use crate::overlay::Addr;
use crate::time::Instant;
use crate::wire::dht::{Copy, DhtMsg, Record, Records, RemoveProof, Status, MAX_TTL_SECS};
use crate::wire::overlay::{Mode, OverlayMsg};
use client::{Event, Op, OpKind, Outcome, Reply};
pub use remove::REMOVE_FRESH_SECS;
use remove::{Removals, RemoveCheck};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;
use store::Store;

/// Replica points per key (Brunet: 8).
pub const REPLICAS: usize = 8;
/// Replicas that must confirm a put, or answer a get (a majority).
pub const QUORUM: usize = 5;
/// Unanswered replicas are asked again after this…
const RESEND_AFTER: Duration = Duration::from_secs(2);
/// … and the operation is decided with what it has after this.
const OP_TIMEOUT: Duration = Duration::from_secs(5);
/// Operations in flight at once; beyond, a new one fails at once.
const MAX_OPS: usize = 512;
/// A registration is first renewed this soon (then at half its TTL).
const FIRST_RENEWAL: Duration = Duration::from_secs(15);
/// Records this node keeps alive for itself.
const MAX_REGISTRATIONS: usize = 64;
/// Requests per second (and burst) one source may make of this replica.
/// The source is what the sender wrote, so requests are also metered by
/// the link they arrive on (which a sender cannot choose): rotating
/// sources then buys nothing beyond the link's budget.
const SOURCE_RATE_PER_S: u32 = 20;
const SOURCE_BURST: u32 = 60;
const SOURCE_SLOTS: usize = 64;
pub const LINK_RATE_PER_S: u32 = 50;
pub const LINK_BURST: u32 = 150;
/// Hand-off copy messages sent per heartbeat (4 records each).
const HANDOFF_BURST: usize = 16;
/// Records routed to their replicas per sweep at most (the rest wait for
/// their owners' renewal).
const MAX_STRAYS_ROUTED: usize = 256;
/// Hand-off items waiting at most (a bound, not a working figure).
const MAX_HANDOFF: usize = 8192;
/// The `k`-th replica point of `key`.
pub fn replica_point(key: Addr, k: usize) -> Addr {
    Addr(key.0.wrapping_add((k as u128) << 125))
}

/// A DHT key for application bytes: the first 16 bytes of
/// SHA-256("ringvpn-dht" ‖ name).
pub fn key_of(name: &[u8]) -> Addr {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"ringvpn-dht");
    ctx.update(name);
    let mut b = [0u8; 16];
    b.copy_from_slice(&ctx.finish().as_ref()[..16]);
    Addr::from_bytes(b)
}

/// DHT counters.
#[derive(Debug, Clone, Default)]
pub struct DhtStats {
    pub puts_served: u64,
    pub gets_served: u64,
    pub refused_full: u64,
    pub refused_too_big: u64,
    pub refused_rate: u64,
    /// Puts and copies the record policy refused.
    pub refused_policy: u64,
    /// Removes (and removal copies) whose proof did not check out: no
    /// owner's signature, another owner, or a time outside the window.
    pub refused_remove: u64,
    pub copies_sent: u64,
    pub copies_received: u64,
    pub repairs_sent: u64,
    pub ops_started: u64,
    pub ops_failed: u64,
    /// Replies that answer no operation of ours (late, repairs' answers,
    /// duplicates, or forged with a guessed id or another key).
    pub replies_unmatched: u64,
}

struct Registration {
    value: Vec<u8>,
    ttl_secs: u32,
    create: bool,
    next_renew: Instant,
}

/// What a storing node accepts, beyond size and rate: the layer above
/// the DHT knows what its values mean (the VPN checks its signed address
/// records, see `vpn::record`). `Send`: the simulator runs nodes on two
/// threads.
pub trait RecordPolicy: Send {
    fn admit(&self, key: Addr, record: &Record, now: Instant) -> bool;
}

/// Keeps DHT operation ids apart from other ids under the same key.
const ID_DOMAIN: u8 = 0;

pub struct Dht {
    store: Store,
    policy: Option<Box<dyn RecordPolicy>>,
    ops: BTreeMap<u32, Op>,
    /// Operation ids (unguessable: see `overlay::tokens`).
    ids: Tokens,
    events: Vec<Event>,
    regs: BTreeMap<Addr, Registration>,
    sources: KeyedBuckets<Addr>,
    links: KeyedBuckets<PeerIdx>,
    removed: Removals,
    /// This node's wall clock at `Instant::ZERO` (µs since 1970).
    wall_origin_us: u64,
    handoff: VecDeque<(PeerIdx, Addr, Addr)>,
    /// Ring neighbours at the last hand-off sweep.
    swept: [Option<Addr>; 2],
    next_expire: Instant,
    pub stats: DhtStats,
}

impl Dht {
    /// Keys the operation ids with a secret only this node knows (the
    /// node derives it from its private key and a per-start seed), so
    /// that nobody can tell our next id from the ones it saw.
    pub fn set_id_key(&mut self, key: [u8; 32]) {
        self.ids.set_key(key, ID_DOMAIN);
    }

    fn next_op_id(&mut self) -> u32 {
        (self.ids.next() >> 32) as u32
    }

    pub fn new(max_records: usize, now: Instant) -> Dht {
        Dht {
            store: Store::new(max_records),
            policy: None,
            ops: BTreeMap::new(),
            ids: Tokens::new([0; 32], ID_DOMAIN),
            events: Vec::new(),
            regs: BTreeMap::new(),
            sources: KeyedBuckets::new(SOURCE_SLOTS),
            links: KeyedBuckets::new(SOURCE_SLOTS),
            removed: Removals::default(),
            wall_origin_us: 0,
            handoff: VecDeque::new(),
            swept: [None, None],
            next_expire: now,
            stats: DhtStats::default(),
        }
    }

    /// Records stored here for others.
    pub fn stored(&self) -> usize {
        self.store.len()
    }

    pub fn ops_in_flight(&self) -> usize {
        self.ops.len()
    }
}

impl Overlay {
    /// Keys our request ids — DHT operations and connect-to-me requests —
    /// with a secret only this node knows (see `overlay::tokens`).
    pub fn set_id_key(&mut self, key: [u8; 32]) {
        self.dht.set_id_key(key);
        self.linking.ctm_ids.set_key(key, super::CTM_ID_DOMAIN);
    }

    pub fn dht(&self) -> &Dht {
        &self.dht
    }

    /// Sets what this node stores for others (see [`RecordPolicy`]).
    pub fn set_record_policy(&mut self, policy: Box<dyn RecordPolicy>) {
        self.dht.policy = Some(policy);
    }

    /// `owner`'s live record under `key` in this node's store (tests).
    #[cfg(test)]
    pub(crate) fn dht_stored(&self, now: Instant, key: Addr, owner: Addr) -> Option<Record> {
        self.dht.store.record(now, key, owner)
    }

    /// Stores a record here as a storing node that ignores the policy
    /// would (tests: what resolvers do with what a liar returns).
    #[cfg(test)]
    pub(crate) fn dht_store_unchecked(&mut self, now: Instant, key: Addr, record: &Record) {
        self.dht.store.put(now, key, record, false, |_| false);
    }

    /// Whether the record policy lets `record` be stored under `key`.
    fn admitted(&mut self, key: Addr, record: &Record, now: Instant) -> bool {
        let ok = self
            .dht
            .policy
            .as_ref()
            .map_or(true, |p| p.admit(key, record, now));
        if !ok {
            self.dht.stats.refused_policy += 1;
        }
        ok
    }

    #[inline]
    pub(in crate::overlay) fn has_events(&self) -> bool {
        !self.dht.events.is_empty()
    }

    /// Finished operations since the last call.
    pub fn dht_events(&mut self) -> std::vec::Drain<'_, Event> {
        self.dht.events.drain(..)
    }

    /// Stores `value` under `key` with this node as owner (`create`: only
    /// if no other owner holds the key). Returns the operation id.
    pub fn dht_put(
        &mut self,
        now: Instant,
        key: Addr,
        value: &[u8],
        ttl: u32,
        create: bool,
    ) -> u32 {
        let record = Record {
            owner: self.me,
            ttl_secs: ttl.min(MAX_TTL_SECS),
            value: value.to_vec(),
        };
        self.start_op(now, key, OpKind::Put { record, create })
    }

    /// Reads every owner's record under `key`; `first`: done at the first
    /// replica that holds one.
    pub fn dht_get(&mut self, now: Instant, key: Addr, first: bool) -> u32 {
        self.start_op(now, key, OpKind::Get { first })
    }

    /// Removes this node's record under `key`, signed with its identity
    /// (`id`, the key this overlay was made with).
    pub fn dht_remove(&mut self, now: Instant, key: Addr, id: &Identity) -> u32 {
        let proof = remove::sign(id, key, self.wall_secs(now));
        self.start_op(now, key, OpKind::Remove(proof))
    }

    /// Sets the wall clock removes are signed and checked with: the unix
    /// time at `Instant::ZERO`, in µs (the node's clock comes from its
    /// shell, like every time).
    pub fn set_wall_origin(&mut self, origin_us: u64) {
        self.dht.wall_origin_us = origin_us;
    }

    fn wall_secs(&self, now: Instant) -> u64 {
        crate::time::unix_secs(self.dht.wall_origin_us, now)
    }

    /// Checks a remove's proof for `key` (a bad one is counted).
    fn remove_checked(&mut self, now: Instant, key: Addr, proof: &RemoveProof) -> RemoveCheck {
        let check = self.dht.removed.check(key, proof, self.wall_secs(now));
        if check == RemoveCheck::Refused {
            self.dht.stats.refused_remove += 1;
        }
        check
    }

    /// Applies a checked remove: the record goes, the proof is remembered.
    fn apply_remove(&mut self, now: Instant, key: Addr, owner: Addr, unix_secs: u64) {
        self.dht.store.remove(key, owner);
        let wall = self.wall_secs(now);
        self.dht.removed.remember(key, owner, unix_secs, wall);
    }

    /// Puts `value` now and renews it at half its TTL for as long as this
    /// node lives (or until [`Overlay::dht_unregister`]). Returns the id of
    /// the first put; renewals report under their own ids.
    pub fn dht_register(
        &mut self,
        now: Instant,
        key: Addr,
        value: &[u8],
        ttl: u32,
        create: bool,
    ) -> Option<u32> {
        if !self.dht.regs.contains_key(&key) && self.dht.regs.len() >= MAX_REGISTRATIONS {
            return None;
        }
        let ttl = ttl.clamp(2, MAX_TTL_SECS);
        // The first renewal comes early: a put made while the ring was
        // still settling may have reached nodes that are not the replicas
        // once it has settled.
        let first = Duration::from_secs(u64::from(ttl / 2)).min(FIRST_RENEWAL);
        self.dht.regs.insert(
            key,
            Registration {
                value: value.to_vec(),
                ttl_secs: ttl,
                create,
                next_renew: now + first,
            },
        );
        Some(self.dht_put(now, key, value, ttl, create))
    }

    /// Stops renewing `key` and removes our record (signed with `id`).
    pub fn dht_unregister(&mut self, now: Instant, key: Addr, id: &Identity) {
        if self.dht.regs.remove(&key).is_some() {
            self.dht_remove(now, key, id);
        }
    }

    fn start_op(&mut self, now: Instant, key: Addr, kind: OpKind) -> u32 {
        // Random, not counted up: a reply is matched to its operation by
        // id, and a member that could guess the next id could answer our
        // requests before the replicas do (it takes a replica's slot).
        // Only a node the request passes through learns the id.
        let id = loop {
            let id = self.dht.next_op_id();
            if id != 0 && !self.dht.ops.contains_key(&id) {
                break id;
            }
        };
        self.dht.stats.ops_started += 1;
        if self.dht.ops.len() >= MAX_OPS {
            self.dht.stats.ops_failed += 1;
            self.dht.events.push(Event {
                id,
                key,
                outcome: Outcome::Failed,
                latency: Duration::ZERO,
                hops: 0,
            });
            return id;
        }
        self.dht.ops.insert(id, Op::new(kind, key, now));
        for k in 0..REPLICAS {
            self.send_request(now, id, k);
        }
        id
    }

    /// Sends operation `id`'s request to replica `k`.
    fn send_request(&mut self, now: Instant, id: u32, k: usize) {
        let Some(op) = self.dht.ops.get(&id) else {
            return;
        };
        let (key, replica) = (op.key, k as u8);
        let msg = match &op.kind {
            OpKind::Put { record, create } => DhtMsg::Put {
                id,
                replica,
                key,
                create: *create,
                record: record.clone(),
            },
            OpKind::Get { .. } => DhtMsg::Get { id, replica, key },
            OpKind::Remove(proof) => DhtMsg::Remove {
                id,
                replica,
                key,
                proof: *proof,
            },
        };
        self.send_routed(
            now,
            Mode::Closest,
            replica_point(key, k),
            &OverlayMsg::Dht(msg),
        );
    }

    fn bracket(&self, p: Addr) -> (Addr, Addr) {
        bracket_of(self.me, &self.table, p)
    }

    /// A DHT message routed to us.
    pub(super) fn deliver_dht(
        &mut self,
        now: Instant,
        via: Option<PeerIdx>,
        src: Addr,
        hops: u8,
        msg: DhtMsg,
    ) {
        match msg {
            DhtMsg::Put {
                id,
                replica,
                key,
                create,
                record,
            } => {
                let status = if !self.dht_allow(now, via, src) {
                    Status::RateLimited
                } else if !self.admitted(key, &record, now) {
                    Status::Refused
                } else {
                    self.dht.stats.puts_served += 1;
                    // The owner may put for itself; anyone may repair a
                    // record with its owner's value (read repair).
                    let me = self.me;
                    let table = &self.table;
                    let stray = |k: Addr| !responsible_of(me, table, k);
                    let s = self.dht.store.put(now, key, &record, create, stray);
                    if s == Status::Ok {
                        self.copy_to_pair(key, usize::from(replica), &record);
                    }
                    self.count_refusal(s);
                    s
                };
                let reply = DhtMsg::PutReply {
                    id,
                    replica,
                    key,
                    status,
                };
                self.send_routed(now, Mode::Exact, src, &OverlayMsg::Dht(reply));
            }
            DhtMsg::Remove {
                id,
                replica,
                key,
                proof,
            } => {
                let status = if !self.dht_allow(now, via, src) {
                    Status::RateLimited
                } else {
                    match self.remove_checked(now, key, &proof) {
                        RemoveCheck::Refused => Status::Refused,
                        RemoveCheck::Stale => Status::Ok,
                        RemoveCheck::Apply(owner) => {
                            self.apply_remove(now, key, owner, proof.unix_secs);
                            // The pair's other node holds a copy: it goes
                            // too, on the same proof.
                            self.copy_removal(key, usize::from(replica), owner, &proof);
                            Status::Ok
                        }
                    }
                };
                let reply = DhtMsg::PutReply {
                    id,
                    replica,
                    key,
                    status,
                };
                self.send_routed(now, Mode::Exact, src, &OverlayMsg::Dht(reply));
            }
            DhtMsg::Get { id, replica, key } => {
                let (status, records) = if self.dht_allow(now, via, src) {
                    self.dht.stats.gets_served += 1;
                    (Status::Ok, self.dht.store.get(now, key))
                } else {
                    (Status::RateLimited, Records::new())
                };
                let reply = DhtMsg::GetReply {
                    id,
                    replica,
                    key,
                    status,
                    records,
                };
                self.send_routed(now, Mode::Exact, src, &OverlayMsg::Dht(reply));
            }
            DhtMsg::PutReply {
                id,
                replica,
                key,
                status,
            } => self.on_reply(now, id, key, usize::from(replica), Reply::Put(status), hops),
            DhtMsg::GetReply {
                id,
                replica,
                key,
                status,
                records,
            } => {
                // A rate-limited replica has not answered the question.
                if status == Status::Ok {
                    let r = Reply::Get(records.into_vec());
                    self.on_reply(now, id, key, usize::from(replica), r, hops);
                }
            }
        }
    }

    fn dht_allow(&mut self, now: Instant, via: Option<PeerIdx>, src: Addr) -> bool {
        let link_ok = via.map_or(true, |l| {
            self.dht.links.take(l, now, LINK_RATE_PER_S, LINK_BURST)
        });
        let ok = link_ok
            && self
                .dht
                .sources
                .take(src, now, SOURCE_RATE_PER_S, SOURCE_BURST);
        if !ok {
            self.dht.stats.refused_rate += 1;
        }
        ok
    }

    fn count_refusal(&mut self, s: Status) {
        match s {
            Status::Full => self.dht.stats.refused_full += 1,
            Status::TooBig => self.dht.stats.refused_too_big += 1,
            _ => {}
        }
    }

    /// The DHT's part of the heartbeat: retries and deadlines of our
    /// operations, renewals, expiry, and hand-off to new neighbours.
    pub(in crate::overlay) fn dht_timers(&mut self, now: Instant) {
        let due: Vec<(u32, bool)> = self
            .dht
            .ops
            .iter()
            .filter_map(|(&id, op)| {
                let age = now.saturating_since(op.started);
                if age >= OP_TIMEOUT {
                    Some((id, true))
                } else if age >= RESEND_AFTER && !op.resent {
                    Some((id, false))
                } else {
                    None
                }
            })
            .collect();
        for (id, timed_out) in due {
            if timed_out {
                let outcome = self.dht.ops[&id].decide(true).unwrap_or(Outcome::Failed);
                self.finish_op(now, id, outcome, OP_TIMEOUT, 0);
            } else if let Some(op) = self.dht.ops.get_mut(&id) {
                op.resent = true;
                let unanswered: Vec<usize> =
                    (0..REPLICAS).filter(|&k| op.replies[k].is_none()).collect();
                for k in unanswered {
                    self.send_request(now, id, k);
                }
            }
        }
        let renew: Vec<Addr> = self
            .dht
            .regs
            .iter()
            .filter(|(_, r)| now >= r.next_renew)
            .map(|(&k, _)| k)
            .collect();
        for key in renew {
            let Some(r) = self.dht.regs.get_mut(&key) else {
                continue;
            };
            r.next_renew = now + Duration::from_secs(u64::from(r.ttl_secs / 2));
            let (value, ttl, create) = (r.value.clone(), r.ttl_secs, r.create);
            self.dht_put(now, key, &value, ttl, create);
        }
        if now >= self.dht.next_expire {
            self.dht.next_expire = now + Duration::from_secs(10);
            self.dht.store.expire(now);
            let wall = self.wall_secs(now);
            self.dht.removed.expire(wall);
        }
        self.handoff_sweep(now);
        self.send_handoff(now);
    }

    fn on_reply(&mut self, now: Instant, id: u32, key: Addr, k: usize, reply: Reply, hops: u8) {
        let Some(op) = self.dht.ops.get_mut(&id) else {
            // Late, a repair's answer, or a guess at an id.
            self.dht.stats.replies_unmatched += 1;
            return;
        };
        if k >= REPLICAS || op.replies[k].is_some() || op.key != key {
            self.dht.stats.replies_unmatched += 1;
            return;
        }
        op.replies[k] = Some(reply);
        if let Some(outcome) = op.decide(false) {
            let latency = now.saturating_since(op.started);
            self.finish_op(now, id, outcome, latency, hops);
        }
    }

    fn finish_op(&mut self, now: Instant, id: u32, outcome: Outcome, latency: Duration, hops: u8) {
        let Some(op) = self.dht.ops.remove(&id) else {
            return;
        };
        if outcome == Outcome::Failed {
            self.dht.stats.ops_failed += 1;
        }
        if let Outcome::Found(records) = &outcome {
            // Read repair: replicas that answered without a record get it.
            for r in records {
                let missing: Vec<u8> = op.missing(r.owner).collect();
                for k in missing {
                    self.dht.stats.repairs_sent += 1;
                    let msg = DhtMsg::Put {
                        id: 0,
                        replica: k,
                        key: op.key,
                        create: false,
                        record: r.clone(),
                    };
                    let point = replica_point(op.key, usize::from(k));
                    self.send_routed(now, Mode::Closest, point, &OverlayMsg::Dht(msg));
                }
            }
        }
        self.dht.events.push(Event {
            id,
            key: op.key,
            outcome,
            latency,
            hops,
        });
    }
}
