//! Sub-rings: private group rings over a shared public ring
//! (docs/SUBRINGS.md; the design notes' "Subring", "Private overlay
//! model" and "Group ring").
//!
//! A daemon joins one *public* ring — anyone may be a member; it offers
//! bootstrap, NAT traversal help and relaying — and runs one more node
//! per *network* it belongs to. Each network's nodes form a ring of
//! their own, with their own keys, certificates, DHT, VPN and broadcast:
//! a private ring whose members only ever talk to members. What the
//! public ring gives them is a way to find each other and a way to reach
//! each other when nothing else works:
//!
//! - **Finding the group.** Every member registers a signed group record
//!   (`record`) in the public ring's DHT under the group's key, derived
//!   from the network's name *and its CA's public key*, so nobody outside
//!   the network can name the key to enumerate it. A member reads the
//!   records and links its network node to a few of the members they name
//!   (the notes' RingLeafEdges); the network's own overlay then finds its
//!   place in the sub-ring exactly as in any ring. The list is read again
//!   now and then, and one member not linked is linked: two fragments
//!   that formed apart (members started at once, a partition healed) meet
//!   that way and merge.
//! - **Edges over the public ring.** Each record names the member's host
//!   (its public node), which gives the member a *carried* endpoint
//!   (`wire::endpoint::Transport::Carried`): a datagram to it goes as
//!   routed data over the public ring to that host, which hands it to its
//!   network's node (the notes' AHSender edge). A network node tries the
//!   UDP endpoints and the carried one alike, so a pair behind symmetric
//!   NATs on both sides still links — over the public ring — while
//!   everyone else links directly. The datagram is sealed by the
//!   network's session: public relays see ciphertext, metered by their
//!   transit budgets like any routed data.
//!
//! `Group` is the policy object for one network: it knows nothing of the
//! nodes, takes the facts it needs with `now`, and answers with
//! `Action`s its host carries out on the public node (register, look up)
//! and the network's node (link).

pub mod record;

use crate::crypto::{Identity, NodeKey};
use crate::overlay::Addr;
use crate::rand::{Rng, SeededRng};
use crate::time::Instant;
use crate::wire::dht::Record;
use crate::wire::endpoint::Endpoint;
use crate::wire::overlay::Endpoints;
use std::collections::BTreeMap;
use std::time::Duration;

/// A group record lives this long unless renewed (the DHT renews it at
/// half this).
pub const RECORD_TTL_SECS: u32 = 600;
/// Until the public node has links, whether it has is looked at this
/// often (nothing is sent meanwhile).
pub const PUBLIC_WAIT: Duration = Duration::from_secs(1);
/// The member list is read first this soon again while the network's
/// node has no link (members started together find nobody at first) …
pub const LOOKUP_FIRST_RETRY: Duration = Duration::from_secs(2);
/// … doubling up to this …
pub const LOOKUP_ALONE: Duration = Duration::from_secs(10);
/// … and this often once it has (to merge fragments).
pub const LOOKUP_LINKED: Duration = Duration::from_secs(60);
/// Members linked after a lookup while we have no link (Brunet's leaves).
pub const LEAVES: usize = 3;
/// Members we keep track of from lookups (a group bigger than this is
/// still found: any few members lead into its ring).
pub const MAX_KNOWN: usize = 256;

/// The DHT key of the group `name` whose CA has public key `ca` (empty
/// for a network without a CA: then anyone who guesses the name can
/// read its records).
pub fn group_key(name: &str, ca: &[u8]) -> Addr {
    Addr::from_bytes(
        digest(b"ringvpn-group-key", name, ca)[..16]
            .try_into()
            .expect("16"),
    )
}

/// The id that tags the network's datagrams on a shared socket and in
/// carried headers (another hash: the tag on the wire does not give away
/// the DHT key).
pub fn network_id(name: &str, ca: &[u8]) -> u64 {
    u64::from_be_bytes(
        digest(b"ringvpn-network-id", name, ca)[..8]
            .try_into()
            .expect("8"),
    )
}

fn digest(label: &[u8], name: &str, ca: &[u8]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(label);
    ctx.update(&(name.len() as u32).to_be_bytes());
    ctx.update(name.as_bytes());
    ctx.update(ca);
    ctx.finish().as_ref().try_into().expect("32 bytes")
}

/// What the group asks its host to do (a few per lookup, drained at
/// once: the inline candidate list is not worth a box).
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Keep this record registered under `key` on the public ring (it
    /// replaces the one before: our endpoints changed).
    Register { key: Addr, value: Vec<u8>, ttl: u32 },
    /// Read every record under `key`; the result comes back through
    /// [`Group::found`] with the operation id.
    Lookup { key: Addr },
    /// Link the network's node to this member at these candidates.
    Link { key: NodeKey, candidates: Endpoints },
}

/// The host's facts at a timeout.
pub struct Facts<'a> {
    /// The public node has links (a record or lookup can go anywhere).
    pub public_linked: bool,
    /// The network's node has links.
    pub network_linked: bool,
    /// The public node's advertised endpoints (what our record says).
    pub endpoints: &'a [Endpoint],
    /// The wall clock, for the record's issue time.
    pub unix_secs: u64,
}

/// Counters for status.
#[derive(Debug, Clone, Default)]
pub struct GroupStats {
    pub registrations: u64,
    pub lookups: u64,
    /// Records read that did not check out (forged, misplaced).
    pub bad_records: u64,
    pub links_asked: u64,
}

/// One network's presence on the public ring.
pub struct Group {
    key: Addr,
    member: Identity,
    host: NodeKey,
    /// What we registered last (endpoints), to register again on change.
    registered: Option<Vec<Endpoint>>,
    next_lookup: Instant,
    /// The next pause between lookups while alone (doubling).
    alone_every: Duration,
    /// The lookup in flight (operation id), if any.
    lookup: Option<u32>,
    /// Members from the last lookups: newest record per member.
    known: BTreeMap<NodeKey, record::GroupRecord>,
    rng: SeededRng,
    actions: Vec<Action>,
    pub stats: GroupStats,
}

impl Group {
    /// `member`: our identity in the network (it signs our record);
    /// `host`: our public node's key.
    pub fn new(key: Addr, member: Identity, host: NodeKey, seed: u64, now: Instant) -> Group {
        Group {
            key,
            member,
            host,
            registered: None,
            next_lookup: now,
            alone_every: LOOKUP_FIRST_RETRY,
            lookup: None,
            known: BTreeMap::new(),
            rng: SeededRng::new(seed),
            actions: Vec::new(),
            stats: GroupStats::default(),
        }
    }

    pub fn key(&self) -> Addr {
        self.key
    }

    /// Members known from lookups (ourselves aside).
    pub fn known(&self) -> usize {
        self.known.len()
    }

    pub fn poll_timeout(&self) -> Instant {
        self.next_lookup
    }

    pub fn drain_actions(&mut self) -> std::vec::Drain<'_, Action> {
        self.actions.drain(..)
    }

    /// Registers (again, if our endpoints changed) and looks the group
    /// up when due. Nothing until the public node has links.
    pub fn on_timeout(&mut self, now: Instant, facts: &Facts) {
        if !facts.public_linked {
            self.next_lookup = now + PUBLIC_WAIT;
            return;
        }
        if self.registered.as_deref() != Some(facts.endpoints) {
            let value = record::sign(&self.member, self.host, facts.unix_secs, facts.endpoints);
            self.actions.push(Action::Register {
                key: self.key,
                value,
                ttl: RECORD_TTL_SECS,
            });
            self.registered = Some(facts.endpoints.to_vec());
            self.stats.registrations += 1;
        }
        if now >= self.next_lookup && self.lookup.is_none() {
            self.actions.push(Action::Lookup { key: self.key });
            self.stats.lookups += 1;
        }
        if now >= self.next_lookup {
            let every = if facts.network_linked {
                self.alone_every = LOOKUP_FIRST_RETRY;
                LOOKUP_LINKED
            } else {
                let every = self.alone_every;
                self.alone_every = (every * 2).min(LOOKUP_ALONE);
                every
            };
            self.next_lookup = now + every;
        }
    }

    /// The host started our lookup as operation `id`.
    pub fn lookup_started(&mut self, id: u32) {
        self.lookup = Some(id);
    }

    /// Whether DHT operation `id` is our lookup.
    pub fn owns(&self, id: u32) -> bool {
        self.lookup == Some(id)
    }

    /// Our lookup finished with these records (`None`: it failed).
    /// `network_linked`: the network's node has links; `linked(key)`:
    /// it has one to that member. Without links we link to a few
    /// members; with links, to one we are not linked to (which merges
    /// two fragments if it is in the other one).
    pub fn found(
        &mut self,
        records: Option<&[Record]>,
        network_linked: bool,
        linked: &dyn Fn(&NodeKey) -> bool,
    ) {
        self.lookup = None;
        if let Some(records) = records {
            // The records under the key now: members whose records expired
            // (they left) are forgotten; the newest record per member wins.
            let me = self.member.public();
            let mut fresh: BTreeMap<NodeKey, record::GroupRecord> = BTreeMap::new();
            for r in records {
                match record::verify(&r.value, r.owner) {
                    Some(g) if g.member == me => {}
                    Some(g) => {
                        let newer = fresh.get(&g.member).map_or(true, |o| g.issued >= o.issued);
                        if newer && (fresh.len() < MAX_KNOWN || fresh.contains_key(&g.member)) {
                            fresh.insert(g.member, g);
                        }
                    }
                    None => self.stats.bad_records += 1,
                }
            }
            self.known = fresh;
        }
        let unlinked: Vec<&record::GroupRecord> =
            self.known.values().filter(|g| !linked(&g.member)).collect();
        let want = if network_linked { 1 } else { LEAVES };
        let mut chosen = Vec::new();
        for _ in 0..want.min(unlinked.len()) * 4 {
            if chosen.len() >= want.min(unlinked.len()) {
                break;
            }
            let g = unlinked[self.rng.below(unlinked.len() as u64) as usize];
            if !chosen
                .iter()
                .any(|c: &&record::GroupRecord| c.member == g.member)
            {
                chosen.push(g);
            }
        }
        for g in chosen {
            self.actions.push(Action::Link {
                key: g.member,
                candidates: candidates(g),
            });
            self.stats.links_asked += 1;
        }
    }
}

/// Where a member can be reached: its host's UDP endpoints, then its
/// host over the public ring.
pub fn candidates(g: &record::GroupRecord) -> Endpoints {
    let mut c: Endpoints = g
        .endpoints
        .iter()
        .filter(|e| e.is_udp())
        .take(crate::wire::overlay::MAX_ENDPOINTS - 1)
        .copied()
        .collect();
    c.push(Endpoint::carried(Addr::of_key(&g.host).to_bytes()));
    c
}

#[cfg(test)]
mod tests;
