//! Tunnel edges: when no direct path forms between two nodes, their link
//! runs through one common neighbour (the design notes' proxy tunnel).
//!
//! A node whose punch failed asks the other (over the overlay) for a relay,
//! sending its own links with their round-trip times and relay budgets; the
//! other picks the common neighbour with the lowest sum of round-trip times
//! (or, with none in common, its own lowest-latency link that relays) and
//! answers with the choice, so both directions use the same relay. The
//! asker links to the relay first if it must. Traffic between the two is
//! sealed end to end and goes to the relay inside a routed data header
//! flagged "tunnel"; the relay sees a destination address and ciphertext,
//! and forwards it only to a node it is linked to, within its budget. A
//! relay that goes away is replaced at once; a tunnel tries a direct punch
//! again every minute and moves to it when it forms.

use super::{DropReason, Node, PeerIdx};
use crate::crypto::NodeKey;
use crate::limit::{Bucket, KeyedBuckets};
use crate::overlay::table::reason;
use crate::overlay::Addr;
use crate::time::Instant;
use crate::wire::overlay::{
    Mode, NodeRecord, OverlayMsg, RelayCandidate, RelayCandidates, MAX_RELAY_CANDIDATES,
    RELAY_FLAG_SYMMETRIC,
};
use std::time::Duration;

/// A tunnel tries a direct punch again this often.
pub const DIRECT_RETRY: Duration = Duration::from_secs(60);
/// Relays of the other side's list linked to on trial, beyond its choice.
pub(super) const PROBES: usize = 2;
/// Unanswered relay queries after which the peer is given up (it is
/// likely gone; the ring asks for it again if it is not).
pub(super) const MAX_QUERIES: u8 = 3;
/// A tunnel that sends but has heard nothing back for this long checks
/// its relay: pings it, and gives it up if the relay link has been silent
/// for `RELAY_DEAD` (the loss window of a relay crash, instead of the
/// link's own dead-peer time).
pub(super) const RELAY_QUIET: Duration = Duration::from_millis(1500);
pub const RELAY_CHECK_EVERY: Duration = Duration::from_secs(1);
pub(super) const RELAY_DEAD: Duration = Duration::from_secs(3);
/// A relay given up is not offered or used again for this long.
pub(super) const RELAY_SHUNNED: Duration = Duration::from_secs(30);
/// A relay query unanswered by then is sent again. Not sooner: the other
/// side may have had no relay to offer yet (its links' budgets and RTTs
/// come with their first connection lists and pings), and a relay picked
/// before those are known is a far one (the simulator's relay stretch
/// went from 1.3 to 1.8 with 2 s).
pub const QUERY_RETRY: Duration = Duration::from_secs(5);
/// Time for a link to a chosen relay (a punch, at worst) beyond that.
const RELAY_LINK_WAIT: Duration = Duration::from_secs(10);
/// `chosen` in an offer: the relay is the answerer's own link, first in
/// its list.
pub(super) const OWN_CHOICE: u8 = 255;
/// Pairs tracked by the per-pair relay budget.
const PAIRS: usize = 64;

/// What this node spends relaying others' tunnels.
pub struct RelayBudget {
    /// KiB/s in total (0: never relay).
    kib: u32,
    total: Bucket,
    pairs: KeyedBuckets<(PeerIdx, PeerIdx)>,
    pub relayed_bytes: u64,
}

impl RelayBudget {
    pub fn new(kib: u16, now: Instant) -> RelayBudget {
        let kib = u32::from(kib);
        RelayBudget {
            kib,
            total: Bucket::full(kib.saturating_mul(1024), now),
            pairs: KeyedBuckets::new(PAIRS),
            relayed_bytes: 0,
        }
    }

    /// May `bytes` go from link `from` to link `to`? A pair gets at most
    /// half of the budget, so one pair cannot take it all.
    fn allow(&mut self, now: Instant, from: PeerIdx, to: PeerIdx, bytes: usize) -> bool {
        if self.kib == 0 {
            return false;
        }
        let rate = self.kib.saturating_mul(1024);
        let n = bytes as u32;
        let ok = self.pairs.take_n((from, to), now, n, rate / 2, rate / 2)
            && self.total.take_n(now, n, rate, rate);
        if ok {
            self.relayed_bytes += bytes as u64;
        }
        ok
    }
}

/// RTTs in relay candidates are milliseconds; unknown counts as slow.
pub(super) fn rtt_ms(rtt: Option<Duration>) -> u16 {
    rtt.map_or(u16::MAX, |d| {
        d.as_millis().min(u128::from(u16::MAX - 1)) as u16
    })
}

impl Node {
    /// Our links that could relay for a tunnel with `peer` (not the peer
    /// itself, not tunnels), with their RTTs and budgets, fastest first.
    pub(super) fn relay_candidates(&self, now: Instant, peer: PeerIdx) -> RelayCandidates {
        let Some(ov) = self.overlay.as_ref() else {
            return RelayCandidates::new();
        };
        let mut out: Vec<RelayCandidate> = ov
            .table()
            .iter()
            .filter(|c| {
                let link = &*self.peers[usize::from(c.peer.0)];
                c.peer != peer
                    && link.relay().is_none()
                    && link
                        .tunnel
                        .failed_as_relay
                        .map_or(true, |t| now.saturating_since(t) >= RELAY_SHUNNED)
            })
            .map(|c| RelayCandidate {
                node: crate::wire::overlay::NodeRecord {
                    key: c.key,
                    endpoint: c.endpoint,
                },
                rtt_ms: rtt_ms(self.peers[usize::from(c.peer.0)].live.rtt()),
                budget_kib: c.relay_kib,
            })
            .collect();
        out.sort_by_key(|c| c.rtt_ms);
        out.into_iter().take(MAX_RELAY_CANDIDATES).collect()
    }

    /// No direct path to `p` formed: ask it for a relay (again after
    /// `QUERY_RETRY` if nothing came of it).
    pub(super) fn start_tunnel(&mut self, now: Instant, p: PeerIdx) {
        let peer = &*self.peers[usize::from(p.0)];
        if peer.relay().is_some()
            || peer
                .tunnel
                .asked
                .is_some_and(|t| now.saturating_since(t) < QUERY_RETRY)
        {
            return;
        }
        let peer = &mut *self.peers[usize::from(p.0)];
        peer.tunnel.asked = Some(now);
        peer.tunnel.wanted = true;
        peer.tunnel.queries = peer.tunnel.queries.saturating_add(1);
        self.touch(p);
        let Some(from) = self.own_record() else {
            return;
        };
        let peer = &*self.peers[usize::from(p.0)];
        let dst = Addr::of_key(&peer.key);
        log::info!("no direct path to {}: asking it for a relay", peer.name());
        let symmetric = self.nat_mapping() == super::nat::NatMapping::EndpointDependent;
        let msg = OverlayMsg::RelayQuery {
            flags: if symmetric { RELAY_FLAG_SYMMETRIC } else { 0 },
            from,
            candidates: self.relay_candidates(now, p),
        };
        if let Some(ov) = self.overlay.as_mut() {
            ov.send_routed(now, Mode::Exact, dst, &msg);
        }
    }

    /// Our key and first advertised endpoint, for a relay query.
    fn own_record(&self) -> Option<NodeRecord> {
        let endpoint = *self.overlay.as_ref()?.endpoints().first()?;
        Some(NodeRecord {
            key: self.identity.public(),
            endpoint,
        })
    }

    /// A relay query or offer from the node at `src`.
    pub(super) fn relay_message(&mut self, now: Instant, src: Addr, msg: OverlayMsg) {
        match msg {
            OverlayMsg::RelayQuery {
                flags,
                from,
                candidates,
            } => {
                if Addr::of_key(&from.key) != src {
                    return self.stats.count(DropReason::OverlayForged);
                }
                let Some(p) = self.find_or_add_peer(from.key, None) else {
                    return self.stats.count(DropReason::TooManyPeers);
                };
                self.add_candidates(p, &[from.endpoint]);
                let symmetric = flags & RELAY_FLAG_SYMMETRIC != 0;
                self.answer_relay_query(now, p, src, &candidates, symmetric);
            }
            OverlayMsg::RelayOffer { chosen, candidates } => {
                let Some(p) = self.peer_at(src) else {
                    log::debug!("relay offer from unknown {src}");
                    return self.stats.count(DropReason::Unsolicited);
                };
                let peer = &mut *self.peers[usize::from(p.0)];
                peer.tunnel.queries = 0;
                let asked = peer.tunnel.asked.is_some();
                let has = peer.relay().is_some() || peer.tunnel.linking_to.is_some();
                if !asked && !has {
                    log::debug!("relay offer from {src} not asked for");
                    return self.stats.count(DropReason::Unsolicited);
                }
                let chose = peer
                    .tunnel
                    .chose
                    .is_some_and(|t| now.saturating_since(t) < QUERY_RETRY);
                if chose && has && self.identity.public() < peer.key {
                    // Our queries crossed and each side chose: the choice
                    // of the node with the lower key stands (ours; the
                    // other side takes our offer).
                    return;
                }
                let ours = self.relay_candidates(now, p);
                let pick = if chosen == OWN_CHOICE {
                    candidates.first().map(|c| c.node)
                } else {
                    ours.get(usize::from(chosen)).map(|c| c.node)
                };
                let Some(relay) = pick else {
                    log::debug!("relay offer from {src}: choice {chosen} not in the list");
                    return self.stats.count(DropReason::OverlayMalformed);
                };
                self.take_offer(now, p, src, relay, &candidates, asked);
                self.retry_if_no_relay(now, p);
            }
            _ => {}
        }
    }

    /// The other side chose `relay` for our tunnel (`answer`: in answer to
    /// our query, not a counter-offer). Used if we link to it directly, or
    /// linked to first; if our only link to it is itself a tunnel, the
    /// first of their list (or ours) that we link to directly is used
    /// instead and offered back, once.
    fn take_offer(
        &mut self,
        now: Instant,
        p: PeerIdx,
        src: Addr,
        relay: NodeRecord,
        theirs: &[RelayCandidate],
        answer: bool,
    ) {
        let direct = |n: &Node, k: &NodeKey| {
            n.index.by_key.get(k).is_some_and(|&r| {
                let r = &n.peers[usize::from(r.0)];
                r.is_linked() && r.relay().is_none()
            })
        };
        let tunnelled = self
            .index
            .by_key
            .get(&relay.key)
            .is_some_and(|&r| self.peers[usize::from(r.0)].relay().is_some());
        if !tunnelled {
            self.use_or_link_relay(now, p, relay);
            if answer {
                self.probe_relays(now, p, relay.key, theirs);
            }
            return;
        }
        if !answer {
            return;
        }
        let ours = self.relay_candidates(now, p);
        let alt = theirs
            .iter()
            .filter(|c| c.budget_kib > 0 && direct(self, &c.node.key))
            .chain(ours.iter().filter(|c| c.budget_kib > 0))
            .next()
            .copied();
        let Some(alt) = alt else {
            log::info!(
                "no relay for {} that both can reach",
                self.peers[usize::from(p.0)].name()
            );
            return;
        };
        let mut reply: RelayCandidates = [alt].into_iter().collect();
        reply.extend(ours.into_iter().filter(|c| c.node.key != alt.node.key));
        reply.truncate(MAX_RELAY_CANDIDATES);
        if let Some(ov) = self.overlay.as_mut() {
            let offer = OverlayMsg::RelayOffer {
                chosen: OWN_CHOICE,
                candidates: reply,
            };
            ov.send_routed(now, Mode::Exact, src, &offer);
        }
        self.use_relay(now, p, alt.node.key);
    }

    /// Picks the relay for both directions of a tunnel with `p`: the common
    /// neighbour with the lowest sum of round-trip times, else our own
    /// fastest link that relays; answers with the choice and uses it.
    fn answer_relay_query(
        &mut self,
        now: Instant,
        p: PeerIdx,
        src: Addr,
        theirs: &[RelayCandidate],
        they_symmetric: bool,
    ) {
        let ours = self.relay_candidates(now, p);
        let common = theirs
            .iter()
            .enumerate()
            .filter(|(_, c)| c.budget_kib > 0)
            .filter_map(|(i, c)| {
                let mine = ours.iter().find(|o| o.node.key == c.node.key)?;
                Some((u32::from(c.rtt_ms) + u32::from(mine.rtt_ms), i))
            })
            .min()
            .map(|(_, i)| i);
        // With no common neighbour one side must link to the relay. A node
        // behind a symmetric NAT links only to nodes that take inits from
        // anyone, so its own links are the ones anybody can reach: pick
        // from its list then; otherwise from ours, fastest first.
        let from_theirs = common.or_else(|| {
            they_symmetric
                .then(|| theirs.iter().position(|c| c.budget_kib > 0))
                .flatten()
        });
        // The choice goes first in the reply, by name: the asker's list
        // may have changed order since it asked.
        let (chosen, relay, mut reply) = match from_theirs {
            Some(i) => {
                let mut reply = ours;
                reply.retain(|o| o.node.key != theirs[i].node.key);
                reply.insert(0, theirs[i]);
                (OWN_CHOICE, theirs[i].node, reply)
            }
            None => {
                // Ours that relays.
                let Some(k) = ours.iter().position(|o| o.budget_kib > 0) else {
                    log::info!("no relay for {}", self.peers[usize::from(p.0)].name());
                    return;
                };
                let mut reply = ours;
                let c = reply.remove(k);
                reply.insert(0, c);
                (OWN_CHOICE, c.node, reply)
            }
        };
        reply.truncate(MAX_RELAY_CANDIDATES);
        // An asker behind a symmetric NAT may have no link near its own
        // address (its neighbours cannot take its punch: that is why it
        // asks), so nobody there could pass the offer on. Its own links
        // can: the offer goes through the first of them it listed.
        let via = theirs
            .first()
            .filter(|_| they_symmetric)
            .map(|c| Addr::of_key(&c.node.key));
        if let Some(ov) = self.overlay.as_mut() {
            let offer = OverlayMsg::RelayOffer {
                chosen,
                candidates: reply,
            };
            match via {
                Some(v) => ov.send_forwarded(now, v, src, &offer),
                None => ov.send_routed(now, Mode::Exact, src, &offer),
            }
        }
        let peer = &mut *self.peers[usize::from(p.0)];
        peer.tunnel.wanted = true;
        if peer.tunnel.asked.is_some() {
            // Our own query is out too: crossed (see the offer's handling).
            peer.tunnel.chose = Some(now);
        }
        self.use_or_link_relay(now, p, relay);
        self.retry_if_no_relay(now, p);
    }

    /// A tunnel step that left no relay in use or on its way: ask again
    /// after the usual wait.
    fn retry_if_no_relay(&mut self, now: Instant, p: PeerIdx) {
        let peer = &mut *self.peers[usize::from(p.0)];
        if peer.tunnel.wanted && peer.relay().is_none() && peer.tunnel.asked.is_none() {
            peer.tunnel.asked = Some(now);
            self.touch(p);
        }
    }

    /// Uses `relay` for the tunnel with `p` if we link to it directly, or
    /// links to it first (a connect-to-me, so that it punches towards us
    /// too) and tunnels when it is up, or asks again if it never is.
    fn use_or_link_relay(&mut self, now: Instant, p: PeerIdx, relay: NodeRecord) {
        let direct = self.index.by_key.get(&relay.key).is_some_and(|&r| {
            let r = &*self.peers[usize::from(r.0)];
            r.is_linked() && r.relay().is_none()
        });
        if direct {
            return self.use_relay(now, p, relay.key);
        }
        let peer = &mut *self.peers[usize::from(p.0)];
        peer.tunnel.linking_to = Some(relay.key);
        peer.tunnel.asked = Some(now + RELAY_LINK_WAIT);
        self.touch(p);
        if let Some(ov) = self.overlay.as_mut() {
            ov.connect_to(now, Addr::of_key(&relay.key), reason::RELAY);
        }
    }

    fn peer_at(&self, a: Addr) -> Option<PeerIdx> {
        self.peers
            .iter()
            .position(|peer| Addr::of_key(&peer.key) == a)
            .map(|i| PeerIdx(i as u16))
    }

    /// A tunnel data message passing through us: forwarded only to a node
    /// we are linked to, within our relay budget.
    pub(super) fn relay_allowed(
        &mut self,
        now: Instant,
        from: PeerIdx,
        to: PeerIdx,
        dst: Addr,
        bytes: usize,
    ) -> bool {
        let next = &*self.peers[usize::from(to.0)];
        if !next.is_linked() || next.relay().is_some() || Addr::of_key(&next.key) != dst {
            return false;
        }
        self.guards.relay_budget.allow(now, from, to, bytes)
    }

    /// Bytes relayed for others so far.
    pub fn relayed_bytes(&self) -> u64 {
        self.guards.relay_budget.relayed_bytes
    }
}
