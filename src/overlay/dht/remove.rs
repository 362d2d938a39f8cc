//! Signed removes: only a record's owner can remove it.
//!
//! A routed message's source is whatever its sender wrote, so a remove
//! carries its own proof ([`RemoveProof`]): the owner's key (its ring
//! address is derived from it), the owner's wall clock, and its signature
//! over both and the DHT key. A replica accepts a proof within
//! [`REMOVE_FRESH_SECS`] of its own clock and remembers the latest remove
//! it applied per (key, owner) for as long, so a proof sent again (a
//! resend, or a replay after the owner registered anew) changes nothing;
//! beyond the window the time refuses it.

use crate::crypto::{Identity, NodeKey};
use crate::overlay::Addr;
use crate::wire::dht::RemoveProof;
use std::collections::BTreeMap;

/// A remove is accepted this far from the replica's clock, either way
/// (clocks of members without NTP drift).
pub const REMOVE_FRESH_SECS: u64 = 300;
/// Removes remembered against replay (a bound: beyond it the oldest go).
const MAX_REMOVED: usize = 4096;

/// What a remove's proof allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveCheck {
    /// Not the owner's signature, or not recent.
    Refused,
    /// The owner's, but no newer than a remove already applied: a replay
    /// or a resend, answered without effect.
    Stale,
    /// Remove `owner`'s record.
    Apply(Addr),
}

/// `id`'s proof for removing its record under `key` at `unix_secs`.
pub fn sign(id: &Identity, key: Addr, unix_secs: u64) -> RemoveProof {
    let owner_key = id.public().0;
    RemoveProof {
        owner_key,
        unix_secs,
        sig: id.sign(&RemoveProof::signed_bytes(key, &owner_key, unix_secs)),
    }
}

/// The removes this replica applied lately, by (key, owner): their time.
#[derive(Default)]
pub struct Removals {
    applied: BTreeMap<(Addr, Addr), u64>,
}

impl Removals {
    /// Checks `proof` for `key` against the clock `wall` (unix seconds).
    pub fn check(&self, key: Addr, proof: &RemoveProof, wall: u64) -> RemoveCheck {
        let owner_key = NodeKey(proof.owner_key);
        let fresh = wall.abs_diff(proof.unix_secs) <= REMOVE_FRESH_SECS;
        let signed = || {
            let m = RemoveProof::signed_bytes(key, &proof.owner_key, proof.unix_secs);
            owner_key.verify(&m, &proof.sig)
        };
        if !fresh || !signed() {
            return RemoveCheck::Refused;
        }
        let owner = Addr::of_key(&owner_key);
        match self.applied.get(&(key, owner)) {
            Some(&t) if t >= proof.unix_secs => RemoveCheck::Stale,
            _ => RemoveCheck::Apply(owner),
        }
    }

    /// Remembers a remove applied at `unix_secs`.
    pub fn remember(&mut self, key: Addr, owner: Addr, unix_secs: u64, wall: u64) {
        if self.applied.len() >= MAX_REMOVED {
            self.expire(wall);
            if self.applied.len() >= MAX_REMOVED {
                // All within the window: the oldest proof goes (a replay of
                // it could remove a renewed record once; its owner's next
                // renewal brings the record back).
                let oldest = self
                    .applied
                    .iter()
                    .min_by_key(|(_, t)| **t)
                    .map(|(k, _)| *k);
                if let Some(k) = oldest {
                    self.applied.remove(&k);
                }
            }
        }
        self.applied.insert((key, owner), unix_secs);
    }

    /// Forgets removes older than the window: the time refuses their
    /// replays now.
    pub fn expire(&mut self, wall: u64) {
        self.applied
            .retain(|_, t| wall.saturating_sub(*t) <= REMOVE_FRESH_SECS);
    }
}
