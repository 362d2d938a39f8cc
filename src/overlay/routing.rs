//! Greedy routing: choosing the next hop, with neighbour-of-neighbour
//! lookahead, for messages we start and messages we forward.

use super::{Action, CtmId, Overlay, Refused, Route};
use crate::ids::PeerIdx;
use crate::time::Instant;
use crate::wire::addr::Addr;
use crate::wire::overlay::{emit_routed_header, Mode, OverlayMsg, Routed, RoutedData, FLAG_FINAL};

/// How much farther from the destination than the closest connection a
/// connection may be and still win by its neighbour list (lookahead).
pub const LOOKAHEAD_SPREAD: u128 = 16;

impl Overlay {
    /// Starts a routed message from this node.
    pub fn send_routed(&mut self, now: Instant, mode: Mode, dst: Addr, msg: &OverlayMsg) {
        self.send_routed_via(now, mode, dst, msg, None, None);
    }

    /// Sends `msg` for `dst` through `via`, a node linked to it (Brunet's
    /// forwarding sender): the whole routed message rides in a forward to
    /// `via`, which passes it on over its link.
    pub fn send_forwarded(&mut self, now: Instant, via: Addr, dst: Addr, msg: &OverlayMsg) {
        let mut inner = Vec::with_capacity(128);
        emit_routed_header(
            &mut inner,
            Mode::Exact,
            self.cfg.ttl,
            self.me,
            dst,
            msg.msg_type(),
        );
        msg.emit(&mut inner);
        self.send_routed(now, Mode::Exact, via, &OverlayMsg::Forward(inner));
    }

    /// Starts a routed message, optionally through a chosen first hop
    /// (greedy routing takes over from there); `init_for`: a connect-to-me
    /// that is to carry a handshake init, for this purpose.
    pub(super) fn send_routed_via(
        &mut self,
        now: Instant,
        mode: Mode,
        dst: Addr,
        msg: &OverlayMsg,
        via: Option<PeerIdx>,
        init_for: Option<CtmId>,
    ) {
        let mut bytes = Vec::with_capacity(128);
        emit_routed_header(&mut bytes, mode, self.cfg.ttl, self.me, dst, msg.msg_type());
        msg.emit(&mut bytes);
        let skip = Self::skips_source(mode).then_some(self.me);
        let hop = match via {
            Some(peer) => Some(peer),
            None => {
                let (hop, final_) = self.pick_hop(mode, dst, skip, false);
                if let (true, Ok(mut r)) = (final_, Routed::new_checked(&mut bytes[..])) {
                    r.set_flags(r.flags() | FLAG_FINAL);
                }
                hop
            }
        };
        match hop {
            Some(peer) => self.actions.push(match init_for {
                Some(ctm) => Action::SendCtm {
                    peer,
                    msg: bytes,
                    ctm,
                },
                None => Action::Send { peer, msg: bytes },
            }),
            None => match mode {
                Mode::Exact if dst != self.me => self.stats.unroutable += 1,
                _ if Self::skips_source(mode) => self.stats.unroutable += 1,
                // Our own message, which we accept ourselves.
                _ => {
                    let _ = self.deliver(now, None, self.me, 0, msg.clone());
                }
            },
        }
    }

    /// How far `a` is from `dst` in the sense of `mode`: ring distance, or
    /// the one-sided distance for right-of / left-of.
    pub(super) fn metric(mode: Mode, dst: Addr, a: Addr) -> u128 {
        match mode {
            Mode::RightOf => dst.right_dist(a),
            Mode::LeftOf => dst.left_dist(a),
            _ => a.distance(dst),
        }
    }

    /// Modes in which the source does not count as a destination.
    pub(super) fn skips_source(mode: Mode) -> bool {
        matches!(mode, Mode::ClosestOther | Mode::RightOf | Mode::LeftOf)
    }

    /// The next hop, and whether the message is now on its final approach.
    ///
    /// Right-of and left-of messages first travel by the ordinary two-sided
    /// distance, which can use every connection; only from the node closest
    /// to the destination do they switch to the one-sided distance (one hop
    /// across, at most). Routed by the one-sided distance all the way, they
    /// could use only the shortcuts pointing one way and took ~1.5 more
    /// hops. The switch is recorded in the message so that it never goes
    /// back, keeping both phases loop-free.
    pub(super) fn pick_hop(
        &self,
        mode: Mode,
        dst: Addr,
        skip: Option<Addr>,
        final_: bool,
    ) -> (Option<PeerIdx>, bool) {
        let one_sided = matches!(mode, Mode::RightOf | Mode::LeftOf);
        if one_sided && !final_ {
            if let Some(peer) = self.next_hop(Mode::ClosestOther, dst, skip) {
                return (Some(peer), false);
            }
        }
        (self.next_hop(mode, dst, skip), one_sided)
    }

    /// The connection to forward to, if one is closer to `dst` than we
    /// are (ignoring `skip`, which may not accept).
    ///
    /// Plain greedy takes the closest connection. With lookahead, each
    /// closer connection is scored by the best of itself and its own
    /// connections, so a message goes to the neighbour with the best
    /// two-hop view (Manku, Naor and Wieder, "Know thy neighbor's
    /// neighbor"). Only connections closer than we are qualify, so every
    /// hop still makes progress and stale lists cost hops, never loops.
    pub(super) fn next_hop(&self, mode: Mode, dst: Addr, skip: Option<Addr>) -> Option<PeerIdx> {
        let mine = if skip == Some(self.me) {
            u128::MAX
        } else {
            Self::metric(mode, dst, self.me)
        };
        // A suspect link (it stopped answering) is routed around.
        let usable = |c: &&super::table::Conn| Some(c.addr) != skip && !c.suspect;
        // Next door to a node we cannot link (a symmetric NAT's ring
        // neighbour), the greedy hop is its neighbour on the other side,
        // which cannot either: a link that lists it is the way in.
        if mode == Mode::Exact && dst != self.me && self.next_door(dst) {
            let direct = self.table.get(dst).filter(usable);
            if let (None, Some(p)) = (direct, self.last_resort(mode, dst, skip)) {
                return Some(p);
            }
        }
        if !self.cfg.lookahead {
            let best = self
                .table
                .iter()
                .filter(usable)
                .min_by_key(|c| Self::metric(mode, dst, c.addr))?;
            return (Self::metric(mode, dst, best.addr) < mine).then_some(best.peer);
        }
        let prefix = |a: Addr| (a.0 >> 64) as u64;
        let (skip_p, me_p) = (skip.map(prefix), prefix(self.me));
        let dst_p = Addr(u128::from(prefix(dst)) << 64);
        // Lists are claims nobody checked: they may only reorder the
        // connections about as close as the closest one, so a member that
        // lists the whole ring gains a bounded share, not the ring's traffic.
        let closest = self
            .table
            .iter()
            .filter(usable)
            .map(|c| Self::metric(mode, dst, c.addr))
            .min()
            .unwrap_or(u128::MAX);
        let reach = closest
            .saturating_mul(LOOKAHEAD_SPREAD)
            .min(mine.saturating_sub(1));
        let mut best: Option<(u128, u128, PeerIdx)> = None;
        for c in self.table.iter().filter(usable) {
            let m = Self::metric(mode, dst, c.addr);
            if m > reach {
                continue;
            }
            // Scored at the lists' 64-bit precision, so that a connection
            // and the same node seen in another's list tie (and the direct
            // one, with the smaller exact metric, wins the tie).
            let mut score = Self::metric(mode, dst_p, Addr(u128::from(prefix(c.addr)) << 64));
            for &p in &c.nbrs {
                if Some(p) != skip_p && p != me_p {
                    score = score.min(Self::metric(mode, dst_p, Addr(u128::from(p) << 64)));
                }
            }
            if best.map_or(true, |(bs, bm, _)| (score, m) < (bs, bm)) {
                best = Some((score, m, c.peer));
            }
        }
        best.map(|(_, _, peer)| peer)
            .or_else(|| self.last_resort(mode, dst, skip))
    }

    /// No connection is closer, yet one of them lists the destination as
    /// its own connection: the only way in to a node whose ring neighbours
    /// cannot link to it (a symmetric NAT's, before its tunnel edges are
    /// up). The one hop that does not get closer is followed by the last
    /// hop; a stale list costs a bounce that the hop limit ends.
    ///
    /// Lists are unchecked claims, so the claimer nearest the destination
    /// is chosen: the honest ones are the destination's other neighbours,
    /// next door, and a member elsewhere that lists everyone wins only
    /// where nobody else knows the way (and the message had no route).
    fn last_resort(&self, mode: Mode, dst: Addr, skip: Option<Addr>) -> Option<PeerIdx> {
        if mode != Mode::Exact || dst == self.me {
            return None;
        }
        let want = (dst.0 >> 64) as u64;
        self.table
            .iter()
            .filter(|c| Some(c.addr) != skip && !c.suspect && c.nbrs.contains(&want))
            .min_by_key(|c| c.addr.distance(dst))
            .map(|c| c.peer)
    }

    /// Whether `dst` would be our ring neighbour: no connection of ours
    /// lies between us and it, on its side.
    fn next_door(&self, dst: Addr) -> bool {
        let (me, table) = (self.me, &self.table);
        if me.right_dist(dst) <= me.left_dist(dst) {
            let nearest = table.right_of(me, 1).next();
            nearest.map_or(true, |c| me.right_dist(c.addr) >= me.right_dist(dst))
        } else {
            let nearest = table.left_of(me, 1).next();
            nearest.map_or(true, |c| me.left_dist(c.addr) >= me.left_dist(dst))
        }
    }

    /// Switches neighbour-of-neighbour lookahead (to compare with plain greedy).
    pub fn set_lookahead(&mut self, on: bool) {
        self.cfg.lookahead = on;
    }

    /// Decides what to do with a routed message that arrived on a link;
    /// bumps its hop count in place when it is to be forwarded.
    pub fn route(&mut self, msg: &mut [u8]) -> Route {
        let Ok(mut r) = Routed::new_checked(&mut *msg) else {
            return Route::Drop(Refused::Malformed);
        };
        // A peer cannot make a message live longer than we allow.
        if r.ttl() > self.cfg.ttl {
            r.set_ttl(self.cfg.ttl);
            self.stats.ttl_clamped += 1;
        }
        let (mode, dst, src) = (r.mode(), r.dst(), r.src());
        if src == self.me {
            // Nothing of ours comes back (every hop gets strictly closer
            // to the destination, and modes that skip the source never
            // return to it): a message claiming to be ours is forged.
            return Route::Drop(Refused::Forged);
        }
        let skip = Self::skips_source(mode).then_some(src);
        if skip.is_some() && r.msg_type() == crate::wire::overlay::MSG_CTM_REQUEST {
            self.link_if_nearer(src, r.payload());
        }
        let (hop, final_) = self.pick_hop(mode, dst, skip, r.flags() & FLAG_FINAL != 0);
        if final_ {
            r.set_flags(r.flags() | FLAG_FINAL);
        }
        if let Some(peer) = hop {
            if r.hops() >= r.ttl() {
                return Route::Drop(Refused::HopLimit);
            }
            r.set_hops(r.hops() + 1);
            self.stats.forwarded += 1;
            return Route::Forward(peer);
        }
        match mode {
            Mode::Exact if dst != self.me => Route::Drop(Refused::NoRoute),
            _ => Route::Deliver,
        }
    }

    /// Decides what to do with a routed data message (exact mode, compact
    /// header) that arrived on a link; bumps its hop count in place.
    pub fn route_data(&mut self, msg: &mut [u8]) -> Route {
        let Ok(mut r) = RoutedData::new_checked(&mut *msg) else {
            return Route::Drop(Refused::Malformed);
        };
        if r.ttl() > self.cfg.ttl {
            r.set_ttl(self.cfg.ttl);
            self.stats.ttl_clamped += 1;
        }
        let dst = r.dst();
        if dst == self.me {
            return Route::Deliver;
        }
        match self.pick_hop(Mode::Exact, dst, None, false).0 {
            Some(peer) if r.hops() < r.ttl() => {
                r.set_hops(r.hops() + 1);
                self.stats.forwarded += 1;
                Route::Forward(peer)
            }
            Some(_) => Route::Drop(Refused::HopLimit),
            None => Route::Drop(Refused::NoRoute),
        }
    }

    /// The first hop towards the node at `dst`, for routed data we start;
    /// `None` if no connection is closer than we are (nobody there). Never
    /// the link to `dst` itself: we route our own data to a node we link
    /// to only when that link does not carry it (suspect, or a tunnel not
    /// proven yet), so the ring takes it around.
    pub fn first_hop(&self, dst: Addr) -> Option<PeerIdx> {
        self.pick_hop(Mode::Exact, dst, Some(dst), false).0
    }

    /// The hop limit routed messages start with.
    pub fn ttl(&self) -> u8 {
        self.cfg.ttl
    }
}
