//! Messages that make links: connect-to-me requests and replies, routed
//! echoes, neighbour gossip, connection lists and loop stitching.

use crate::wire::addr::Addr;
/// Connect-to-me purposes the new link keeps as a reason (near links are
/// judged by position, not by why they were made).
const LINK_PURPOSES: u8 = reason::SHORTCUT | reason::ONDEMAND | reason::RELAY;

use super::{
    reason, Action, CtmId, Overlay, PendingCtm, Refused, ANSWERED_KEPT, CONN_LIST_BURST,
    CTM_BEHIND_NAT, FAILED_FOR, MAX_OFFERS, OFFER_WINDOW,
};
use crate::crypto::NodeKey;
use crate::ids::PeerIdx;
use crate::rand::Rng;
use crate::time::Instant;
use crate::wire::overlay::{
    ConnList, Mode, Neighbours, NodeRecord, OverlayMsg, Records, Routed, MAX_CONN_LIST,
    MAX_NEIGHBOURS,
};
use smallvec::SmallVec;

/// Links being made.
pub(super) struct Linking {
    /// Reasons to give links that are being set up, by address (at most
    /// MAX_WANTED).
    pub(super) wanted: std::collections::BTreeMap<Addr, (u8, Instant)>,
    /// Nodes a link to which was asked for and never came up, and when:
    /// gossip naming them is ignored for FAILED_FOR (a fake or dead record
    /// costs one attempt, not one per message that repeats it).
    pub(super) failed: Vec<(Addr, Instant)>,
    /// Connect-to-me requests out.
    pub(super) pending: super::PendingCtms,
    /// Requests answered once (see `answered`), the oldest dropped first.
    pub(super) answered_once: super::PendingCtms,
    /// Connect-to-me ids.
    pub(super) ctm_ids: super::tokens::Tokens,
    /// Nodes gossip offered as near neighbours, weighed together once
    /// `offers_due` comes (`consider_neighbours`, `link_offers`).
    pub(super) offers: Vec<NodeRecord>,
    pub(super) offers_due: Option<Instant>,
}

impl Overlay {
    /// Handles a routed message delivered to this node, arriving on the
    /// link to `via`.
    pub fn handle_delivered(
        &mut self,
        now: Instant,
        via: PeerIdx,
        msg: &[u8],
    ) -> Result<(), Refused> {
        let r = Routed::new_checked(msg).map_err(|_| Refused::Malformed)?;
        let m = OverlayMsg::parse(r.msg_type(), r.payload()).map_err(|_| Refused::Malformed)?;
        self.deliver(now, Some(via), r.src(), r.hops(), m)
    }

    /// A routed message for us: `src` is what its sender wrote (see
    /// docs/SECURITY.md), `via` the link it came on (`None`: our own), the
    /// one thing about it we know; limits are keyed by that.
    pub(super) fn deliver(
        &mut self,
        now: Instant,
        via: Option<PeerIdx>,
        src: Addr,
        hops: u8,
        msg: OverlayMsg,
    ) -> Result<(), Refused> {
        self.stats.delivered += 1;
        match msg {
            OverlayMsg::CtmRequest {
                purpose,
                key,
                token,
                endpoints,
                via,
                init,
            } => {
                if key == self.key || Addr::of_key(&key) != src {
                    return Err(Refused::Forged);
                }
                if endpoints.is_empty() {
                    return Err(Refused::Malformed);
                }
                let nat = purpose & CTM_BEHIND_NAT != 0;
                let with_init = !init.is_empty();
                let answered = with_init && !self.is_linked(src);
                if answered {
                    // A new link in one round trip: answer the init at every
                    // candidate (that is our half of a hole punch, too). Our
                    // neighbours go to the requester once the link is up.
                    self.actions.push(Action::AnswerInit {
                        init,
                        candidates: endpoints.clone(),
                    });
                    if !nat {
                        return Ok(());
                    }
                }
                // A reply tells the requester where we are: it links to us,
                // and behind a NAT it punches towards us while our answer
                // punches towards it.
                let reply = OverlayMsg::CtmReply {
                    purpose,
                    key: self.key,
                    token,
                    endpoints: self.endpoints.clone(),
                    neighbours: self.records_near(src, Some(src)),
                };
                match via.filter(|&v| v != self.me && !self.is_linked(src)) {
                    Some(v) => self.send_forwarded(now, v, src, &reply),
                    None => self.send_routed(now, Mode::Exact, src, &reply),
                }
                if self.is_linked(src) {
                    // Linked already (over a tunnel, say, or on endpoints
                    // that have changed): new endpoints get a punch from
                    // this side too. Only a linked node's, and never more
                    // than a punch's worth at a time (see `link_to`).
                    self.actions.push(Action::Link {
                        key,
                        candidates: endpoints,
                        hearsay: false,
                    });
                } else if !with_init {
                    // Link from this side too: both sides sending at once
                    // is the hole punch. Its endpoints are only what the
                    // request says (anyone may write anyone's address
                    // there), so the attempt is hearsay: an address nobody
                    // proved gets one handshake per 10 s (docs/SECURITY.md).
                    self.actions.push(Action::Link {
                        key,
                        candidates: endpoints,
                        hearsay: true,
                    });
                }
            }
            OverlayMsg::CtmReply {
                purpose,
                key,
                token,
                endpoints,
                neighbours,
            } => {
                if Addr::of_key(&key) != src {
                    return Err(Refused::Forged);
                }
                let purpose = purpose & !CTM_BEHIND_NAT;
                if !self.answered(purpose, src, token) {
                    return Err(Refused::Unsolicited);
                }
                let reasons = purpose & LINK_PURPOSES;
                if self.is_linked(src) {
                    // The link our init made is up already.
                    if let Some(c) = self.table.get_mut(src) {
                        c.mine |= reasons;
                    }
                } else {
                    self.want(now, key, endpoints, reasons, false);
                }
                self.consider_neighbours(now, &neighbours);
            }
            OverlayMsg::EchoRequest { nonce, stamp } => {
                self.send_routed(
                    now,
                    Mode::Exact,
                    src,
                    &OverlayMsg::EchoReply { nonce, stamp },
                );
            }
            OverlayMsg::EchoReply { nonce, stamp } => {
                self.stats.echo_replies += 1;
                self.stats.echo_reply_hops += u64::from(hops);
                let rtt = now.saturating_since(Instant::from_micros(stamp));
                self.actions.push(Action::Echoed { nonce, hops, rtt });
            }
            OverlayMsg::Dht(m) => self.deliver_dht(now, via, src, hops, m),
            OverlayMsg::Handshake(bytes) => {
                self.actions.push(Action::Handshake { src, via, bytes })
            }
            m @ (OverlayMsg::RelayQuery { .. } | OverlayMsg::RelayOffer { .. }) => {
                self.actions.push(Action::Relay {
                    src,
                    msg: Box::new(m),
                })
            }
            OverlayMsg::Forward(inner) => {
                // Only to a link of ours, and on unchanged: anyone could
                // route it there anyway; this reaches a member nobody near
                // its address is linked to yet.
                let dst = Routed::new_checked(&inner[..])
                    .map_err(|_| Refused::Malformed)?
                    .dst();
                let peer = self
                    .table
                    .get(dst)
                    .map(|c| c.peer)
                    .ok_or(Refused::NoRoute)?;
                self.stats.forwarded += 1;
                self.actions.push(Action::Send { peer, msg: inner });
            }
            OverlayMsg::Task(bytes) => self.actions.push(Action::Manage {
                src,
                request: true,
                bytes,
            }),
            OverlayMsg::Description(bytes) => self.actions.push(Action::Manage {
                src,
                request: false,
                bytes,
            }),
        }
        Ok(())
    }

    pub(super) fn is_linked(&self, a: Addr) -> bool {
        self.table.get(a).is_some()
    }

    /// A connect-to-me we sent was answered by a handshake with `key`: the
    /// link that comes up gets the reasons the request was for.
    pub fn ctm_linked(&mut self, now: Instant, key: NodeKey, ctm: CtmId) {
        let addr = Addr::of_key(&key);
        let purpose = ctm.purpose;
        self.answered(purpose, addr, ctm.token);
        let reasons = purpose & LINK_PURPOSES;
        match self.table.get_mut(addr) {
            Some(c) => c.mine |= reasons,
            None => self.linking.wanted.entry(addr).or_insert((0, now)).0 |= reasons,
        }
    }

    /// Starts an echo to the node closest to `dst` (a routed ping).
    pub fn echo(&mut self, now: Instant, dst: Addr, mode: Mode, nonce: u64) {
        let msg = OverlayMsg::EchoRequest {
            nonce,
            stamp: now.as_micros(),
        };
        self.send_routed(now, mode, dst, &msg);
    }

    /// A node looking for its own neighbours passed through us: if it
    /// would be one of our nearest, link to it. This is what stitches the
    /// two chains of a loopy ring together: the last hops of a greedy route
    /// to an address run through the nodes next to it.
    pub(super) fn link_if_nearer(&mut self, src: Addr, payload: &[u8]) {
        if src == self.me || self.table.get(src).is_some() || self.linking.wanted.contains_key(&src)
        {
            return;
        }
        if !self.would_be_near(src) {
            return;
        }
        if let Ok(OverlayMsg::CtmRequest { key, endpoints, .. }) =
            OverlayMsg::parse(crate::wire::overlay::MSG_CTM_REQUEST, payload)
        {
            if Addr::of_key(&key) == src && !endpoints.is_empty() {
                self.stats.stitched += 1;
                log::debug!("{} stitching {}", self.me, src);
                self.actions.push(Action::Link {
                    key,
                    candidates: endpoints,
                    hearsay: true,
                });
            }
        }
    }

    // ----- direct link messages -----

    /// A neighbours message from `peer`.
    pub fn handle_neighbours(
        &mut self,
        now: Instant,
        peer: PeerIdx,
        msg: &[u8],
    ) -> Result<(), Refused> {
        let n = Neighbours::parse(msg).map_err(|_| Refused::Malformed)?;
        if let Some(c) = self.table.by_peer_mut(peer) {
            c.theirs = n.reasons & !reason::BEHIND_NAT;
            c.nat = n.reasons & reason::BEHIND_NAT != 0;
        }
        self.consider_neighbours(now, &n.records);
        Ok(())
    }

    /// A connection list from `peer`: kept for lookahead routing.
    pub fn handle_conn_list(&mut self, peer: PeerIdx, msg: &[u8]) -> Result<(), Refused> {
        let l = ConnList::parse(msg).map_err(|_| Refused::Malformed)?;
        if let Some(c) = self.table.by_peer_mut(peer) {
            c.nbrs = l.prefixes;
            c.relay_kib = l.relay_kib;
        }
        Ok(())
    }

    /// Sends our connection list to the links that have not seen its
    /// latest version: a change marks every link (at most once per
    /// `conn_list_interval`), and each heartbeat serves a few of them, so a
    /// busy moment costs a bounded burst of messages and buffers.
    pub(super) fn send_conn_lists(&mut self, now: Instant) {
        if self.upkeep.conns_dirty && now >= self.upkeep.conns_sent + self.cfg.conn_list_interval {
            self.upkeep.conns_dirty = false;
            self.upkeep.conns_sent = now;
            self.table.iter_mut().for_each(|c| c.list_stale = true);
        }
        let stale: SmallVec<[PeerIdx; CONN_LIST_BURST]> = self
            .table
            .iter_mut()
            .filter(|c| c.list_stale)
            .take(CONN_LIST_BURST)
            .map(|c| {
                c.list_stale = false;
                c.peer
            })
            .collect();
        if stale.is_empty() {
            return;
        }
        let list = ConnList {
            prefixes: self
                .table
                .iter()
                .take(MAX_CONN_LIST)
                .map(|c| (c.addr.0 >> 64) as u64)
                .collect(),
            relay_kib: if self.upkeep.relay_offered {
                self.cfg.relay_kib
            } else {
                0
            },
        };
        let mut msg = Vec::with_capacity(4 + list.prefixes.len() * 8);
        list.emit(&mut msg);
        for peer in stale {
            self.actions.push(Action::Send {
                peer,
                msg: msg.clone(),
            });
        }
    }

    /// Notes the nodes a neighbour offers as near ours. They are weighed
    /// together a moment later (`link_offers`): a joining node hears from
    /// all its bootstraps at once, and linking to every offer that beats
    /// what it has so far, message by message, made a dozen links that
    /// the next message's better offers left without a reason.
    pub(super) fn consider_neighbours(&mut self, now: Instant, records: &[NodeRecord]) {
        for rec in records {
            let a = Addr::of_key(&rec.key);
            if rec.key == self.key
                || self.table.get(a).is_some()
                || self.linking.wanted.contains_key(&a)
                || self.linking.offers.iter().any(|o| o.key == rec.key)
            {
                continue;
            }
            if self.recently_failed(now, a) {
                self.stats.records_ignored += 1;
                continue;
            }
            if self.would_be_near(a) && self.linking.offers.len() < MAX_OFFERS {
                self.linking.offers.push(*rec);
            }
        }
        if !self.linking.offers.is_empty() && self.linking.offers_due.is_none() {
            self.linking.offers_due = Some(now + OFFER_WINDOW);
        }
    }

    /// Links to the offered nodes that are among our wanted near
    /// neighbours, nearest first, so only the best few get a link.
    pub(super) fn link_offers(&mut self, now: Instant) {
        self.linking.offers_due = None;
        let mut offers = std::mem::take(&mut self.linking.offers);
        let me = self.me;
        offers.sort_by_key(|o| {
            let a = Addr::of_key(&o.key);
            me.right_dist(a).min(me.left_dist(a))
        });
        for rec in offers {
            let a = Addr::of_key(&rec.key);
            if self.table.get(a).is_none()
                && !self.linking.wanted.contains_key(&a)
                && self.would_be_near(a)
            {
                let candidates = [rec.endpoint].into_iter().collect();
                self.want(now, rec.key, candidates, reason::NEAR, true);
            }
        }
    }

    /// Takes the outstanding request for `purpose` that `token` names off
    /// the list (the near check sends two, right and left, each answered
    /// on its own); false if there was none. Only a node the request
    /// passed through knows its token, so a reply in a made-up name gets
    /// nothing (it would have had us punch its endpoints, `Unsolicited`).
    /// A request can be answered twice — by the handshake answering its
    /// init and by a reply (the requester is behind a NAT) — and the
    /// second, whose neighbour records are worth having, is let in once.
    pub(super) fn answered(&mut self, purpose: u8, from: Addr, token: u64) -> bool {
        let matches = |p: &PendingCtm| {
            p.purpose == purpose && p.token == token && p.target.map_or(true, |t| t == from)
        };
        if let Some(i) = self.linking.pending.iter().position(matches) {
            let p = self.linking.pending.remove(i);
            if self.linking.answered_once.len() >= ANSWERED_KEPT {
                self.linking.answered_once.remove(0);
            }
            self.linking.answered_once.push(p);
            return true;
        }
        match self.linking.answered_once.iter().position(matches) {
            Some(i) => {
                self.linking.answered_once.remove(i);
                true
            }
            None => false,
        }
    }

    /// A link to `a` was asked for lately and never came up.
    pub(super) fn recently_failed(&self, now: Instant, a: Addr) -> bool {
        self.linking
            .failed
            .iter()
            .any(|&(f, t)| f == a && now.saturating_since(t) < FAILED_FOR)
    }

    /// Is a link to `a` worth a tunnel when no direct path forms: a near
    /// neighbour's, or one asked for on demand (a shortcut is not: another
    /// target serves as well).
    pub fn would_keep(&self, a: Addr) -> bool {
        let keep = reason::NEAR | reason::ONDEMAND;
        self.would_be_near(a)
            || self.table.get(a).is_some_and(|c| c.mine & keep != 0)
            || self
                .linking
                .wanted
                .get(&a)
                .is_some_and(|(r, _)| r & keep != 0)
    }

    /// Would `a` be among the `near_wanted` nearest going right or going
    /// left, counting the links already being set up? (By rank on each
    /// side, as the near reasons are given: in a small ring a node can be
    /// our second on the left yet nearer by the right-hand way round.)
    pub(super) fn would_be_near(&self, a: Addr) -> bool {
        let me = self.me;
        let (rd, ld) = (me.right_dist(a), me.left_dist(a));
        let known = || {
            self.table
                .iter()
                .map(|c| c.addr)
                .chain(self.linking.wanted.keys().copied())
        };
        let closer_right = known().filter(|&x| me.right_dist(x) < rd).count();
        let closer_left = known().filter(|&x| me.left_dist(x) < ld).count();
        closer_right < self.cfg.near_wanted || closer_left < self.cfg.near_wanted
    }

    /// Up to 8 of our connections nearest `target` (4 each side), as records.
    pub(super) fn records_near(&self, target: Addr, skip: Option<Addr>) -> Records {
        let mut out = Records::new();
        let per_side = MAX_NEIGHBOURS / 2;
        for c in self
            .table
            .right_of(target, per_side)
            .chain(self.table.left_of(target, per_side))
        {
            if Some(c.addr) == skip || out.len() >= MAX_NEIGHBOURS {
                continue;
            }
            let rec = NodeRecord {
                key: c.key,
                endpoint: c.endpoint,
            };
            if !out.contains(&rec) {
                out.push(rec);
            }
        }
        out
    }

    pub(super) fn send_neighbours(&mut self, peer: PeerIdx, addr: Addr, with_records: bool) {
        let reasons = self.announced(self.table.get(addr).map_or(0, |c| c.mine));
        let records = if with_records {
            self.records_near(addr, Some(addr))
        } else {
            Records::new()
        };
        let mut msg = Vec::with_capacity(4 + records.len() * 52);
        Neighbours { reasons, records }.emit(&mut msg);
        if let Some(c) = self.table.get_mut(addr) {
            c.announced = reasons;
        }
        self.actions.push(Action::Send { peer, msg });
    }

    pub(super) fn ctm(&mut self, now: Instant, mode: Mode, target: Addr, purpose: u8) {
        self.stats.ctm_sent += 1;
        let token = self.linking.ctm_ids.next();
        self.linking.pending.push(PendingCtm {
            purpose,
            sent: now,
            target: (mode == Mode::Exact).then_some(target),
            token,
        });
        let flags = if self.upkeep.behind_nat {
            CTM_BEHIND_NAT
        } else {
            0
        };
        // Looking for our own neighbours, start from a random connection:
        // greedy routing from our nearest link could end in the same false
        // pocket of a loopy ring that we are trying to get out of.
        let via = if purpose == reason::NEAR && !self.table.is_empty() {
            let k = self.rng.below(self.table.len() as u64) as usize;
            self.table.iter().nth(k).map(|c| c.peer)
        } else {
            None
        };
        // Behind a NAT the nodes near our address may not be able to link
        // to us yet, so none of them would know where a reply routed to us
        // goes: it comes through our first hop instead.
        let reply_via = if self.upkeep.behind_nat {
            let skip = Self::skips_source(mode).then_some(self.me);
            via.or_else(|| self.pick_hop(mode, target, skip, false).0)
                .and_then(|p| self.table.by_peer(p))
                .map(|c| c.addr)
        } else {
            None
        };
        let msg = OverlayMsg::CtmRequest {
            purpose: purpose | flags,
            key: self.key,
            token,
            endpoints: self.endpoints.clone(),
            via: reply_via,
            init: Vec::new(),
        };
        // A handshake init rides along when the answer is likely a node we
        // are not linked to yet: shortcuts, and near checks while settling.
        // Stable near checks find the neighbours we have, so they save the
        // ~190 bytes per hop.
        let settling = now.saturating_since(self.upkeep.near_changed) < self.cfg.settle_time;
        let wants_new_link = reason::SHORTCUT | reason::ONDEMAND | reason::RELAY;
        let init_for =
            (purpose & wants_new_link != 0 || settling).then_some(CtmId { purpose, token });
        self.send_routed_via(now, mode, target, &msg, via, init_for);
    }
}
