//! Crawls: every member's description, gathered at the origin.
//!
//! A description (ring address, name, virtual addresses, endpoints,
//! links) is hundreds of bytes, so N of them cannot ride up the task
//! tree in bounded replies, and an inner node should not hold its
//! subtree's. The map-reduce crawl therefore splits the work: the tree
//! carries the task down and the member count up as for `stats`, while
//! each member routes its signed description straight to the origin
//! (O(log N) hops). All at once, 10,000 of them overran the per-link
//! budgets of the origin's neighbours (100 overlay messages/s per link)
//! and 70% were dropped (30% of 3,000). So a crawl has two phases: the
//! tree first counts the members (as `stats` does, O(log N) round trips),
//! then the origin starts the describing phase with a spread — the count
//! over [`RATE`] — in the (signed) task, and each member sends after the
//! share of the spread its ring distance from the origin says (addresses
//! are uniform, so arrivals are too). The origin's result is complete
//! when it holds as many descriptions as the tree counted members; it
//! waits out the spread and a moment for stragglers ([`SETTLE`]) and
//! otherwise says how many are missing. (The origin's own size estimate
//! would save the first phase, but it is a local density guess, off by
//! 1.5–2× in the simulator, and the crawl took that much longer.)
//!
//! The sequential crawler is the design notes' baseline: ask the right
//! neighbour for its description (a task routed to that member alone),
//! take the right neighbour it names, and so on round the ring — one
//! routed round trip per member, so O(N) of them where map-reduce needs
//! O(log N). It stops where a member does not answer twice, or back at
//! the start.

use super::{Action, Local, Manager, Outcome, Signer};
use crate::overlay::{Addr, Overlay};
use crate::time::Instant;
use crate::wire::describe::Description;
use crate::wire::overlay::OverlayMsg;
use crate::wire::task::{Reduced, Request, Task, TaskKind};
use std::time::Duration;

/// How long the origin waits for descriptions after the tree answered.
pub const SETTLE: Duration = Duration::from_secs(2);
/// How long the sequential crawler waits for one member (and tries it
/// twice).
pub const STEP: Duration = Duration::from_secs(2);
/// Descriptions one crawl keeps at most (the origin's memory: ~300 B each).
pub const MAX_DESCRIBED: usize = 100_000;
/// Descriptions per second the origin asks for. They arrive over a few
/// of its links, each allowed 100 overlay messages a second (burst 200):
/// at 400/s the origin itself refused 428 of 5,000 in the simulator, at
/// 200/s none. ~140 KB/s into its socket.
pub const RATE: f64 = 200.0;

/// The spread for a crawl of `members`.
pub(super) fn spread_for(members: u64) -> Duration {
    Duration::from_secs_f64((members as f64 / RATE).min(3_600.0))
}

/// A crawl's arguments: empty in the counting phase, the spread
/// (milliseconds, big-endian) in the describing one.
pub(super) fn spread_of(args: &[u8]) -> Option<Duration> {
    match args {
        [a, b, c, d] => Some(Duration::from_millis(u64::from(u32::from_be_bytes([
            *a, *b, *c, *d,
        ])))),
        _ => None,
    }
}

/// When a member at `me` sends its description for a crawl from
/// `origin`: its share of the spread.
pub(super) fn turn(origin: Addr, me: Addr, spread: Duration) -> Duration {
    let share = (origin.right_dist(me) >> 64) as f64 / 2f64.powi(64);
    spread.mul_f64(share)
}

/// A description waiting for its turn.
pub(super) struct Delayed {
    pub at: Instant,
    pub to: Addr,
    pub msg: Vec<u8>,
}

/// A sequential crawl under way.
pub(super) struct Walk {
    id: u64,
    /// The id of the request out now (each step is a task of its own).
    step: u64,
    target: Addr,
    started: Instant,
    deadline: Instant,
    tries: u8,
    limit: usize,
    described: Vec<Description>,
}

/// Checks a description's signature and that it comes from the member
/// it describes.
pub(super) fn verified(src: Addr, bytes: &[u8]) -> Option<Description> {
    let (d, covered, sig) = Description::parse(bytes).ok()?;
    (d.addr() == src && d.key.verify(&Description::signed_bytes(covered), &sig)).then_some(d)
}

impl Manager {
    /// Starts the sequential crawler from here, describing at most
    /// `limit` members. `None` while one is under way (one at a time:
    /// each takes O(N) round trips).
    pub fn start_walk(
        &mut self,
        now: Instant,
        ov: &Overlay,
        local: &impl Local,
        signer: &Signer,
        limit: usize,
    ) -> Option<u64> {
        if self.walk.is_some() {
            return None;
        }
        let id = self.new_id();
        self.stats.started += 1;
        let own = local
            .describe(id)
            .and_then(|b| verified(self.me, &b))
            .into_iter()
            .collect();
        let mut w = Walk {
            id,
            step: 0,
            target: self.me,
            started: now,
            deadline: now,
            tries: 0,
            limit: limit.clamp(1, MAX_DESCRIBED),
            described: own,
        };
        match ov.right() {
            Some(right) if limit > 1 => {
                w.target = right;
                self.ask(now, signer, &mut w);
                self.walk = Some(w);
            }
            _ => self.finish_walk(now, w, None),
        }
        Some(id)
    }

    /// Routes a task for `w.target` alone.
    fn ask(&mut self, now: Instant, signer: &Signer, w: &mut Walk) {
        w.step = self.new_id();
        w.deadline = now + STEP;
        let req = self.signed_request(now, signer, TaskKind::Crawl, w.step, &[], w.target, STEP);
        self.remember(req.task.origin, w.step);
        let mut msg = Vec::new();
        req.emit(&mut msg);
        self.actions.push(Action::Route {
            to: w.target,
            msg: Box::new(OverlayMsg::Task(msg)),
        });
    }

    /// A description routed to us by `src`: for a crawl of ours (the
    /// map-reduce one or the sequential one), or unmatched.
    pub fn handle_description(&mut self, now: Instant, signer: &Signer, src: Addr, bytes: &[u8]) {
        let Some(d) = verified(src, bytes) else {
            self.stats.malformed += 1;
            return;
        };
        if let Some(i) = self
            .running
            .iter()
            .position(|r| r.parent.is_none() && r.id == d.task && r.kind == TaskKind::Crawl)
        {
            let r = &mut self.running[i];
            if r.described.len() < MAX_DESCRIBED && !r.described.iter().any(|o| o.key == d.key) {
                r.described.push(d);
            }
            if r.settling && r.described.len() as u64 >= r.result.get("members") {
                let r = self.running.swap_remove(i);
                self.answer(now, r);
            }
            return;
        }
        let Some(mut w) = self.walk.take() else {
            self.stats.replies_unmatched += 1;
            return;
        };
        if d.task != w.step || d.addr() != w.target {
            self.stats.replies_unmatched += 1;
            self.walk = Some(w);
            return;
        }
        let next = d.right;
        w.described.push(d);
        match next {
            Some(next)
                if next != self.me
                    && w.described.len() < w.limit
                    && !w.described.iter().any(|o| o.addr() == next) =>
            {
                w.target = next;
                w.tries = 0;
                self.ask(now, signer, &mut w);
                self.walk = Some(w);
            }
            _ => self.finish_walk(now, w, None),
        }
    }

    /// The sequential crawler's step timed out: ask again once, then stop
    /// there (the member after it is unknown).
    pub(super) fn walk_timeout(&mut self, now: Instant, signer: &Signer) {
        if self.walk.as_ref().map_or(true, |w| now < w.deadline) {
            return;
        }
        let Some(mut w) = self.walk.take() else {
            return;
        };
        w.tries += 1;
        if w.tries < 2 {
            self.ask(now, signer, &mut w);
            self.walk = Some(w);
        } else {
            let at = w.target;
            self.finish_walk(now, w, Some(at));
        }
    }

    fn finish_walk(&mut self, now: Instant, w: Walk, stuck: Option<Addr>) {
        let mut reduced = Reduced::default();
        reduced.add("members", w.described.len() as u64);
        if let Some(at) = stuck {
            // Everything from the silent member round to the start.
            reduced.lost((at, self.me));
        }
        self.actions.push(Action::Done {
            id: w.id,
            kind: TaskKind::Crawl,
            result: Box::new(Outcome {
                reduced,
                described: w.described,
            }),
            took: now.saturating_since(w.started),
        });
    }

    /// Routes the descriptions whose turn has come.
    pub(super) fn send_due(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.delayed.len() {
            if self.delayed[i].at <= now {
                let d = self.delayed.swap_remove(i);
                self.route_description(d.to, d.msg);
            } else {
                i += 1;
            }
        }
    }

    pub(super) fn route_description(&mut self, to: Addr, msg: Vec<u8>) {
        self.actions.push(Action::Route {
            to,
            msg: Box::new(OverlayMsg::Description(msg)),
        });
    }

    /// The count is in (`counted`, from the first phase of crawl `id`
    /// started at `started`): starts the describing phase, whose result
    /// is reported under `id`.
    #[allow(clippy::too_many_arguments)]
    pub fn describe_phase(
        &mut self,
        now: Instant,
        ov: &Overlay,
        local: &impl Local,
        signer: &Signer,
        id: u64,
        counted: u64,
        started: Instant,
    ) {
        let step = self.new_id();
        let spread = (spread_for(counted).as_millis() as u32).to_be_bytes();
        let req = self.signed_request(
            now,
            signer,
            TaskKind::Crawl,
            step,
            &spread,
            self.me,
            super::TASK_BUDGET,
        );
        self.remember(req.task.origin, step);
        self.run(now, ov, local, None, req, Some((id, started)));
    }

    pub(super) fn walk_deadline(&self) -> Option<Instant> {
        self.walk.as_ref().map(|w| w.deadline)
    }

    /// A task signed by us: a request for `arc_end` with `budget`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn signed_request(
        &self,
        now: Instant,
        signer: &Signer,
        kind: TaskKind,
        id: u64,
        args: &[u8],
        arc_end: Addr,
        budget: Duration,
    ) -> Request {
        let task = Task {
            kind,
            id,
            origin: signer.id.public(),
            issued: crate::time::unix_secs(signer.wall_origin_us, now),
            args: args[..args.len().min(crate::wire::task::MAX_ARGS)].to_vec(),
            cred_type: if signer.cert.is_some() { 2 } else { 1 },
            cred: signer.cert.unwrap_or(&[]).to_vec(),
        };
        let signature = signer.id.sign(&task.signed_bytes());
        Request {
            task,
            signature,
            arc_end,
            budget_ms: budget.as_millis() as u32,
            depth: 0,
        }
    }
}
