//! The heartbeat: reasons to keep each link, near checks, shortcut top-up
//! and trimming of links nobody needs.

use super::{reason, Action, Overlay, TRIM_BURST};
use crate::ids::PeerIdx;
use crate::rand::Rng;
use crate::time::Instant;
use crate::wire::addr::Addr;
use crate::wire::control::LEAVE;
use crate::wire::overlay::Mode;
use smallvec::SmallVec;
use std::time::Duration;

/// The heartbeat's schedule, and what it last saw and sent.
pub(super) struct Upkeep {
    pub(super) next_heartbeat: Instant,
    pub(super) next_near_check: Instant,
    /// When our nearest neighbours last changed.
    pub(super) near_changed: Instant,
    pub(super) near_snapshot: [Option<Addr>; 2],
    /// Our connection list changed since we last sent it …
    pub(super) conns_dirty: bool,
    /// … which was then.
    pub(super) conns_sent: Instant,
    pub(super) behind_nat: bool,
    /// Our relay budget is advertised (not behind a symmetric NAT).
    pub(super) relay_offered: bool,
}

impl Overlay {
    /// Recomputes our reasons for every link.
    pub(super) fn update_reasons(&mut self, now: Instant) {
        let k = self.cfg.near_wanted;
        let near: Vec<Addr> = self
            .table
            .right_of(self.me, k)
            .chain(self.table.left_of(self.me, k))
            .map(|c| c.addr)
            .collect();
        let settled = self.table.len() >= 2 * self.cfg.near_wanted;
        let trim = self.trim_ages();
        for c in self.table.iter_mut() {
            if near.contains(&c.addr) {
                c.mine |= reason::NEAR;
            } else {
                c.mine &= !reason::NEAR;
            }
            if settled && c.mine & reason::LEAF != 0 && now.saturating_since(c.since) >= trim.of(c)
            {
                c.mine &= !reason::LEAF;
            }
        }
    }

    /// Runs the maintenance if it is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.linking.offers_due.is_some_and(|t| now >= t) {
            self.link_offers(now);
        }
        if now < self.upkeep.next_heartbeat {
            return;
        }
        self.upkeep.next_heartbeat = now + self.cfg.heartbeat;
        self.update_reasons(now);
        let timeout = self.cfg.ctm_timeout;
        self.linking
            .pending
            .retain(|p| now.saturating_since(p.sent) < timeout);
        // Links asked for that did not come up in time stop holding their
        // place, and are remembered as failed.
        let link_timeout = self.cfg.link_timeout;
        let expired: SmallVec<[Addr; 8]> = self
            .linking
            .wanted
            .iter()
            .filter(|(_, (_, t))| now.saturating_since(*t) >= link_timeout)
            .map(|(&a, _)| a)
            .take(8)
            .collect();
        for a in expired {
            self.linking.wanted.remove(&a);
            self.note_failed(now, a);
        }
        if self.table.is_empty() {
            return;
        }
        // Announce changed reasons.
        let changed: Vec<(PeerIdx, Addr)> = self
            .table
            .iter()
            .filter(|c| self.announced(c.mine) != c.announced)
            .map(|c| (c.peer, c.addr))
            .collect();
        for (peer, addr) in changed {
            self.send_neighbours(peer, addr, false);
        }
        // Near: ask the ring who is closest to us; often while our
        // neighbourhood is changing, rarely once it has been stable.
        let snapshot = [self.left(), self.right()];
        if snapshot != self.upkeep.near_snapshot {
            self.upkeep.near_snapshot = snapshot;
            self.upkeep.near_changed = now;
        }
        if now >= self.upkeep.next_near_check
            && !self
                .linking
                .pending
                .iter()
                .any(|p| p.purpose == reason::NEAR)
        {
            let settling = now.saturating_since(self.upkeep.near_changed) < self.cfg.settle_time;
            let every = if settling {
                self.cfg.near_check_fast
            } else {
                self.cfg.near_check
            };
            let jitter = self.rng.below(every.as_micros() as u64 / 4 + 1);
            self.upkeep.next_near_check = now + every + Duration::from_micros(jitter);
            // Both sides separately: "closest to me" alone is answered by
            // the nearer side and never crosses a gap on the other.
            self.ctm(now, Mode::RightOf, self.me, reason::NEAR);
            self.ctm(now, Mode::LeftOf, self.me, reason::NEAR);
        }
        // Shortcuts: top up towards the desired count, one at a time.
        let have = self
            .table
            .iter()
            .filter(|c| c.mine & reason::SHORTCUT != 0)
            .count();
        let asking = self
            .linking
            .pending
            .iter()
            .any(|p| p.purpose == reason::SHORTCUT);
        if have < self.desired_shortcuts() && !asking {
            let target = self.shortcut_target();
            self.ctm(now, Mode::Closest, target, reason::SHORTCUT);
        }
        self.send_conn_lists(now);
        self.dht_timers(now);
        // Trim links nobody needs. While the neighbourhood is settling the
        // next nearest (up to near_kept a side) are spared: they are the
        // spares a crash of a near neighbour falls back on.
        let settling = now.saturating_since(self.upkeep.near_changed) < self.cfg.settle_time;
        let k = self.cfg.near_kept;
        let spare: Vec<Addr> = if settling {
            self.table
                .right_of(self.me, k)
                .chain(self.table.left_of(self.me, k))
                .map(|c| c.addr)
                .collect()
        } else {
            Vec::new()
        };
        let ages = self.trim_ages();
        let trim: Vec<PeerIdx> = self
            .table
            .iter()
            .filter(|c| {
                c.mine == 0
                    && c.theirs == 0
                    && now.saturating_since(c.since) >= ages.of(c)
                    && !spare.contains(&c.addr)
            })
            .map(|c| c.peer)
            .take(TRIM_BURST)
            .collect();
        for peer in trim {
            self.actions.push(Action::Send {
                peer,
                msg: LEAVE.to_vec(),
            });
            self.actions.push(Action::Close { peer });
        }
    }

    /// A harmonic (1/d) shortcut target, Symphony style.
    pub(super) fn shortcut_target(&mut self) -> Addr {
        let n = self.estimate_size().max(2.0);
        let p = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let exp = 128.0 - (1.0 - p) * n.log2();
        // At most half the ring: beyond that the other way round is shorter.
        let d = 2f64.powf(exp).min(2f64.powi(127)) as u128;
        if self.rng.next_u64() & 1 == 0 {
            Addr(self.me.0.wrapping_add(d))
        } else {
            Addr(self.me.0.wrapping_sub(d))
        }
    }

    /// Remembers a failed link target (the oldest entry makes room).
    fn note_failed(&mut self, now: Instant, a: Addr) {
        if let Some(e) = self.linking.failed.iter_mut().find(|(f, _)| *f == a) {
            e.1 = now;
            return;
        }
        if self.linking.failed.len() >= super::FAILED_SLOTS {
            let oldest = (0..self.linking.failed.len())
                .min_by_key(|&i| self.linking.failed[i].1)
                .unwrap_or(0);
            self.linking.failed.swap_remove(oldest);
        }
        self.linking.failed.push((a, now));
    }
}
