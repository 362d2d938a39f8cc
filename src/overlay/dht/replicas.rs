//! Replica pairs and hand-off: each replica point is held by the two
//! nodes that bracket it. A stored record is copied to the pair's other
//! node, a signed remove goes with its proof, and when our neighbours
//! change we hand the records whose points moved to the node that holds
//! them now (docs/OVERLAY.md, "DHT").

use super::*;

impl Overlay {
    /// The other node of the pair bracketing replica point `k` of `key`.
    pub(in crate::overlay) fn pair_partner(&self, key: Addr, k: usize) -> Option<PeerIdx> {
        let (a, b) = self.bracket(replica_point(key, k));
        let other = if a == self.me { b } else { a };
        (other != self.me)
            .then(|| self.table.get(other).map(|c| c.peer))
            .flatten()
    }

    /// Sends a stored record to the other node of its pair.
    pub(in crate::overlay) fn copy_to_pair(&mut self, key: Addr, k: usize, record: &Record) {
        let Some(peer) = self.pair_partner(key, k) else {
            return;
        };
        let mut msg = Vec::with_capacity(64 + record.value.len());
        Copy {
            items: [(key, record.clone())].into_iter().collect(),
        }
        .emit(&mut msg);
        self.dht.stats.copies_sent += 1;
        self.actions.push(Action::Send { peer, msg });
    }

    /// Tells the pair's other node that `owner` removed its record (a copy
    /// with a zero TTL, carrying the owner's proof).
    pub(in crate::overlay) fn copy_removal(
        &mut self,
        key: Addr,
        k: usize,
        owner: Addr,
        proof: &RemoveProof,
    ) {
        let Some(peer) = self.pair_partner(key, k) else {
            return;
        };
        let mut msg = Vec::with_capacity(64);
        Copy {
            items: [(
                key,
                Record {
                    owner,
                    ttl_secs: 0,
                    value: proof.to_vec(),
                },
            )]
            .into_iter()
            .collect(),
        }
        .emit(&mut msg);
        self.actions.push(Action::Send { peer, msg });
    }

    /// A hand-off copy from a neighbour (a zero TTL removes).
    pub fn handle_dht_copy(&mut self, now: Instant, msg: &[u8]) -> Result<(), Refused> {
        let c = Copy::parse(msg).map_err(|_| Refused::Malformed)?;
        for (key, r) in c.items {
            self.dht.stats.copies_received += 1;
            if r.ttl_secs == 0 {
                // A removal: only on the owner's proof.
                let proof = RemoveProof::parse(&r.value).ok();
                match proof.map(|p| (self.remove_checked(now, key, &p), p)) {
                    Some((RemoveCheck::Apply(owner), p)) if owner == r.owner => {
                        self.apply_remove(now, key, owner, p.unix_secs);
                    }
                    Some((RemoveCheck::Refused | RemoveCheck::Stale, _)) => {}
                    _ => self.dht.stats.refused_remove += 1,
                }
                continue;
            }
            if !self.admitted(key, &r, now) {
                continue;
            }
            // Keep what we have if it lives longer (a fresher renewal).
            if self
                .dht
                .store
                .record(now, key, r.owner)
                .is_some_and(|have| have.ttl_secs >= r.ttl_secs)
            {
                continue;
            }
            let me = self.me;
            let table = &self.table;
            let s = self
                .dht
                .store
                .put(now, key, &r, false, |k| !responsible_of(me, table, k));
            self.count_refusal(s);
        }
        Ok(())
    }

    /// Queues, for each new ring neighbour, the records whose replica
    /// points it now brackets with us.
    ///
    /// Points that left our arc for a pair that includes no new neighbour
    /// (we were alone, or in a false position while the ring formed) are
    /// sent to their replicas by routing, so no record stays only where
    /// nobody will look for it.
    pub(in crate::overlay) fn handoff_sweep(&mut self, now: Instant) {
        let current = [self.left(), self.right()];
        if current == self.dht.swept {
            return;
        }
        let old = self.dht.swept;
        let fresh: Vec<(Addr, PeerIdx)> = current
            .iter()
            .flatten()
            .filter(|a| !old.contains(&Some(**a)))
            .filter_map(|&a| self.table.get(a).map(|c| (a, c.peer)))
            .collect();
        self.dht.swept = current;
        // The arc [left, right) we bracketed points in before the change
        // (all of the ring without two distinct neighbours).
        let was_ours = |p: Addr| match old {
            [Some(l), Some(r)] if l != r => l.right_dist(p) < l.right_dist(r),
            _ => true,
        };
        let mut pushes: Vec<(PeerIdx, Addr, Addr)> = Vec::new();
        let mut strays: Vec<(Addr, usize, Record)> = Vec::new();
        for (key, record) in self.dht.store.iter(now) {
            for k in 0..REPLICAS {
                let p = replica_point(key, k);
                let (a, b) = self.bracket(p);
                let mut covered = a == self.me || b == self.me;
                for &(n, peer) in &fresh {
                    if a == n || b == n {
                        covered = true;
                        if !pushes.contains(&(peer, key, record.owner)) {
                            pushes.push((peer, key, record.owner));
                        }
                    }
                }
                if !covered && was_ours(p) {
                    strays.push((key, k, record.clone()));
                }
            }
        }
        for item in pushes {
            if self.dht.handoff.len() < MAX_HANDOFF {
                self.dht.handoff.push_back(item);
            }
        }
        for (key, k, record) in strays.into_iter().take(MAX_STRAYS_ROUTED) {
            self.dht.stats.repairs_sent += 1;
            let msg = DhtMsg::Put {
                id: 0,
                replica: k as u8,
                key,
                create: false,
                record,
            };
            self.send_routed(
                now,
                Mode::Closest,
                replica_point(key, k),
                &OverlayMsg::Dht(msg),
            );
        }
    }

    /// Sends a bounded burst of queued hand-off copies.
    pub(in crate::overlay) fn send_handoff(&mut self, now: Instant) {
        for _ in 0..HANDOFF_BURST {
            let Some(&(peer, _, _)) = self.dht.handoff.front() else {
                return;
            };
            let mut c = Copy {
                items: Default::default(),
            };
            while c.items.len() < crate::wire::dht::MAX_RECORDS_PER_MSG {
                match self.dht.handoff.front() {
                    Some(&(p, key, owner)) if p == peer => {
                        self.dht.handoff.pop_front();
                        if let Some(r) = self.dht.store.record(now, key, owner) {
                            c.items.push((key, r));
                        }
                    }
                    _ => break,
                }
            }
            if c.items.is_empty() || self.table.by_peer(peer).is_none() {
                continue;
            }
            self.dht.stats.copies_sent += c.items.len() as u64;
            let mut msg = Vec::with_capacity(256);
            c.emit(&mut msg);
            self.actions.push(Action::Send { peer, msg });
        }
    }
}

/// The nodes bracketing `p` as far as `me` (with connections `table`)
/// knows: the last at or before it going right, and the first after it.
pub(super) fn bracket_of(
    me: Addr,
    table: &crate::overlay::table::ConnTable,
    p: Addr,
) -> (Addr, Addr) {
    let known = || table.iter().map(|c| c.addr).chain([me]);
    let pred = known().min_by_key(|&x| x.right_dist(p)).unwrap_or(me);
    let succ = known()
        .filter(|&x| x != p)
        .min_by_key(|&x| p.right_dist(x))
        .unwrap_or(me);
    (pred, succ)
}

/// Whether `me` (with connections `table`) brackets a replica point of
/// `key`: records for which this is false are strays, kept only while
/// there is room.
pub(super) fn responsible_of(
    me: Addr,
    table: &crate::overlay::table::ConnTable,
    key: Addr,
) -> bool {
    (0..REPLICAS).any(|k| {
        let (a, b) = bracket_of(me, table, replica_point(key, k));
        a == me || b == me
    })
}
