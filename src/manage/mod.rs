//! The managing system: map-reduce tasks over the ring, from any member,
//! without a server (the design notes' "Managing System"; docs/MANAGE.md).
//!
//! A task covers an arc of the ring. Its node splits the arc along the
//! bounded-broadcast tree the VPN already uses — each of its links
//! inside the arc covers the part up to the next one — sends each child
//! its part over the link, runs the map itself, and waits for the
//! children's reduced answers, merging each into its own. The origin
//! covers the whole ring, so the tree is O(log N) deep and the answer is
//! back in O(log N) round trips, where following right neighbours one
//! RPC at a time takes N.
//!
//! Nobody waits forever (the notes' choice: "return the available reduce
//! result"). A request carries a time budget; a child gets the parent's
//! less a margin for the way back, and a node answers when all its
//! children have, or when its own budget runs out — naming the arcs whose
//! subtree did not answer. The origin's result says how much is missing.
//!
//! The tasks are a fixed set (no code is shipped): `stats` (members,
//! versions, NAT types, paths, relay load, links, drops by reason — as
//! counters summed by name), `check` (ring consistency by the notes'
//! left1/left2 method: my left neighbour's right neighbour is me, my
//! second left's second right is me; value = hits / 2N), `find`
//! (members with a property) and `crawl` (every member's description,
//! routed to the origin: `crawl`, which also has the notes' sequential
//! crawler). The map's facts come from the node through
//! [`Local`]; the consistency map reads the connection table, where each
//! link's last connection list says who its neighbours are.
//!
//! Only members start tasks: the origin signs each, and every node checks
//! the signature, that it is fresh and not replayed, and — in certificate
//! mode — that the origin's certificate checks out and names the admin
//! group. Tasks travel only over links (members), each origin is rate
//! limited at every node, and replies are bounded (`wire::task`). A
//! refused task is answered at once with the refuser's arc missing (and a
//! `refused` count), so its origin learns it without waiting out the
//! budget; a replayed one is not answered (the first copy is served).

use crate::crypto::cert::{Cert, Trust};
use crate::crypto::{Identity, NodeKey};
use crate::ids::PeerIdx;
use crate::limit::KeyedBuckets;
use crate::overlay::{Addr, Overlay};
use crate::time::Instant;
use crate::wire::describe::Description;
use crate::wire::overlay::OverlayMsg;
use crate::wire::task::{Arc, Reduced, Reply, Request, Task, TaskKind};
use smallvec::SmallVec;

mod crawl;
mod maps;
pub use crawl::{MAX_DESCRIBED, RATE, SETTLE, STEP};
use maps::map;
use std::collections::VecDeque;
use std::time::Duration;

/// The origin's budget for a whole task.
pub const TASK_BUDGET: Duration = Duration::from_secs(12);
/// What each level keeps for the way back: a child's budget is its
/// parent's less this, and a node answers this much before its parent
/// gives up on it (half of it, to be safe).
pub const LEVEL_MARGIN: Duration = Duration::from_millis(400);
/// Below this a node maps but forwards no further: its arc is missing.
const MIN_FORWARD: Duration = Duration::from_millis(500);
/// Tasks one node takes part in at once.
const MAX_RUNNING: usize = 32;
/// Tasks remembered against replays.
const SEEN: usize = 512;
/// An origin's tasks accepted per second (and burst), at every node.
const ORIGIN_RATE_PER_S: u32 = 1;
const ORIGIN_BURST: u32 = 5;
const ORIGINS: usize = 64;
/// A task issued further than this from our clock is refused.
const FRESH_SECS: u64 = 120;

/// What the node knows that maps need.
pub trait Local {
    /// This member's counters for `stats`.
    fn stats(&self, out: &mut Reduced);
    /// Whether this member has the property `find` asks about, and how
    /// to name it in the answer.
    fn find(&self, query: &str) -> Option<String>;
    /// This member's signed description (`wire::describe`) for crawl
    /// `task`; `None` outside the overlay.
    fn describe(&self, task: u64) -> Option<Vec<u8>>;
}

/// What signs our tasks: our identity, and our certificate in
/// certificate mode.
pub struct Signer<'a> {
    pub id: &'a Identity,
    pub cert: Option<&'a [u8]>,
    pub wall_origin_us: u64,
}

/// A finished task: the reduced result, and for a crawl the members'
/// descriptions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub reduced: Reduced,
    pub described: Vec<Description>,
}

impl Outcome {
    /// A crawl that counted more members than it heard describe
    /// themselves, or whose tree missed arcs.
    pub fn partial(&self) -> bool {
        self.reduced.missing_arcs() > 0
            || (self.described.len() as u64) < self.reduced.get("members")
    }
}

/// Who may start tasks.
pub struct Auth<'a> {
    /// Certificate mode's trust (`None`: static keys or an open overlay:
    /// any member may).
    pub trust: Option<&'a Trust>,
    /// The certificate group whose members may start tasks.
    pub admin_group: &'a str,
    pub wall_origin_us: u64,
}

/// What the node does for the manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this link-control message to this link.
    Send { peer: PeerIdx, msg: Vec<u8> },
    /// Route this message over the ring to the member at `to`.
    Route { to: Addr, msg: Box<OverlayMsg> },
    /// A crawl's first phase counted `members`: start the describing
    /// phase ([`Manager::describe_phase`]).
    Counted {
        id: u64,
        members: u64,
        started: Instant,
    },
    /// A task we started is done (complete or partial).
    Done {
        id: u64,
        kind: TaskKind,
        result: Box<Outcome>,
        took: Duration,
    },
}

/// Counters for status.
#[derive(Debug, Clone, Default)]
pub struct ManageStats {
    pub started: u64,
    pub served: u64,
    pub refused_auth: u64,
    pub refused_rate: u64,
    pub refused_replay: u64,
    pub refused_busy: u64,
    /// Replies for no task of ours (late, or not from a child).
    pub replies_unmatched: u64,
    pub malformed: u64,
}

/// Why a request was not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Malformed,
    Auth,
    Replay,
    Rate,
    Busy,
}

/// A task this node takes part in.
struct Running {
    id: u64,
    kind: TaskKind,
    /// Who to answer (`None`: we started it).
    parent: Option<PeerIdx>,
    started: Instant,
    /// Answer by then, children or not.
    deadline: Instant,
    /// Children that have not answered, with the arcs they cover.
    waiting: SmallVec<[(PeerIdx, Arc); 16]>,
    result: Reduced,
    /// The request as we got it (children's are made from it).
    req: Request,
    /// The budget left for children, as of `started`.
    child_budget: Duration,
    /// A crawl's descriptions (at its origin).
    described: Vec<Description>,
    /// A crawl whose tree has answered, waiting for descriptions.
    settling: bool,
    /// A crawl's describing phase: the id and start of the crawl it
    /// finishes (its first phase counted).
    reports_as: Option<(u64, Instant)>,
}

pub struct Manager {
    me: Addr,
    running: Vec<Running>,
    seen: VecDeque<(NodeKey, u64)>,
    rate: KeyedBuckets<NodeKey>,
    next_id: u64,
    stats: ManageStats,
    actions: Vec<Action>,
    walk: Option<crawl::Walk>,
    /// Crawl descriptions waiting for their turn.
    delayed: Vec<crawl::Delayed>,
}

impl Manager {
    pub fn new(me: Addr, id_seed: u64) -> Manager {
        Manager {
            me,
            running: Vec::new(),
            seen: VecDeque::new(),
            rate: KeyedBuckets::new(ORIGINS),
            next_id: id_seed | 1,
            stats: ManageStats::default(),
            actions: Vec::new(),
            walk: None,
            delayed: Vec::new(),
        }
    }

    fn new_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(0x9e37_79b9_7f4a_7c15);
        id
    }

    pub fn stats(&self) -> &ManageStats {
        &self.stats
    }

    pub fn drain_actions(&mut self) -> std::vec::Drain<'_, Action> {
        self.actions.drain(..)
    }

    /// Starts `kind` over the whole ring from here, signed by `signer`.
    /// Its result comes back as [`Action::Done`] with the returned id.
    pub fn start(
        &mut self,
        now: Instant,
        ov: &Overlay,
        local: &impl Local,
        signer: &Signer,
        kind: TaskKind,
        args: &[u8],
    ) -> u64 {
        let task_id = self.new_id();
        // A crawl starts by counting (`crawl::describe_phase` follows).
        let args = if kind == TaskKind::Crawl {
            &[][..]
        } else {
            args
        };
        let req = self.signed_request(now, signer, kind, task_id, args, self.me, TASK_BUDGET);
        self.remember(req.task.origin, task_id);
        self.stats.started += 1;
        self.run(now, ov, local, None, req, None);
        task_id
    }

    /// A task request from link `from`.
    pub fn handle_request(
        &mut self,
        now: Instant,
        ov: &Overlay,
        local: &impl Local,
        auth: &Auth,
        from: PeerIdx,
        msg: &[u8],
    ) -> Result<(), Refusal> {
        let req = self.parse_new(msg, |_| true)?;
        let t = &req.task;
        let refusal = self.refusal(now, auth, &req);
        if let Some(why) = refusal {
            // Said at once (our arc is missing, and refused), so the
            // parent need not wait for its deadline to know.
            let mut result = Reduced::default();
            result.add("refused", 1);
            result.lost((self.me, req.arc_end));
            let mut msg = Vec::new();
            Reply {
                kind: t.kind,
                id: t.id,
                result,
            }
            .emit(&mut msg);
            self.actions.push(Action::Send { peer: from, msg });
            return Err(why);
        }
        self.remember(t.origin, t.id);
        self.stats.served += 1;
        self.run(now, ov, local, Some(from), req, None);
        Ok(())
    }

    /// A task routed to us alone (the sequential crawler's step): mapped
    /// here, never split. Only crawls come this way; a refusal is not
    /// answered (the crawler's timeout says it).
    pub fn handle_routed_request(
        &mut self,
        now: Instant,
        local: &impl Local,
        auth: &Auth,
        msg: &[u8],
    ) -> Result<(), Refusal> {
        let req = self.parse_new(msg, |k| k == TaskKind::Crawl)?;
        let t = &req.task;
        if let Some(why) = self.refusal(now, auth, &req) {
            return Err(why);
        }
        self.remember(t.origin, t.id);
        self.stats.served += 1;
        if let Some(msg) = local.describe(t.id) {
            self.route_description(Addr::of_key(&t.origin), msg);
        }
        Ok(())
    }

    /// A request of a kind `allowed` that we have not seen (counted if
    /// not).
    fn parse_new(
        &mut self,
        msg: &[u8],
        allowed: impl Fn(TaskKind) -> bool,
    ) -> Result<Request, Refusal> {
        let req = match Request::parse(msg) {
            Ok(r) if allowed(r.task.kind) => r,
            _ => {
                self.stats.malformed += 1;
                return Err(Refusal::Malformed);
            }
        };
        if self.seen.contains(&(req.task.origin, req.task.id)) {
            self.stats.refused_replay += 1;
            return Err(Refusal::Replay);
        }
        Ok(req)
    }

    /// Why `req` is not served, if it is not (counted).
    fn refusal(&mut self, now: Instant, auth: &Auth, req: &Request) -> Option<Refusal> {
        let t = &req.task;
        if !authorized(t, &req.signature, auth, now) {
            self.stats.refused_auth += 1;
            Some(Refusal::Auth)
        } else if !self
            .rate
            .take(t.origin, now, ORIGIN_RATE_PER_S, ORIGIN_BURST)
        {
            self.stats.refused_rate += 1;
            Some(Refusal::Rate)
        } else if self.running.len() >= MAX_RUNNING {
            self.stats.refused_busy += 1;
            Some(Refusal::Busy)
        } else {
            None
        }
    }

    fn remember(&mut self, origin: NodeKey, id: u64) {
        if self.seen.len() >= SEEN {
            self.seen.pop_front();
        }
        self.seen.push_back((origin, id));
    }

    /// Splits the arc among our links in it, maps, and answers at once
    /// if there is nobody to wait for.
    fn run(
        &mut self,
        now: Instant,
        ov: &Overlay,
        local: &impl Local,
        parent: Option<PeerIdx>,
        req: Request,
        reports_as: Option<(u64, Instant)>,
    ) {
        let budget = Duration::from_millis(u64::from(req.budget_ms));
        let mut result = Reduced::default();
        map(req.task.kind, &req.task.args, ov, local, &mut result);
        let mut described = Vec::new();
        let spread = crawl::spread_of(&req.task.args);
        if let (TaskKind::Crawl, Some(spread)) = (req.task.kind, spread) {
            if let Some(msg) = local.describe(req.task.id) {
                let to = Addr::of_key(&req.task.origin);
                match parent {
                    None => described.extend(crawl::verified(self.me, &msg)),
                    // Our turn, or the oldest waiting goes now (bounded).
                    Some(_) => {
                        if self.delayed.len() >= MAX_RUNNING {
                            let d = self.delayed.remove(0);
                            self.route_description(d.to, d.msg);
                        }
                        let at = now + crawl::turn(to, self.me, spread);
                        self.delayed.push(crawl::Delayed { at, to, msg });
                        self.send_due(now);
                    }
                }
            }
        }
        let child_budget = budget.saturating_sub(LEVEL_MARGIN);
        let mut r = Running {
            id: req.task.id,
            kind: req.task.kind,
            parent,
            started: now,
            deadline: now + budget.saturating_sub(LEVEL_MARGIN / 2),
            waiting: SmallVec::new(),
            result,
            req,
            child_budget,
            described,
            settling: false,
            reports_as,
        };
        let arc = (self.me, r.req.arc_end);
        self.split(now, ov, &mut r, arc);
        if r.waiting.is_empty() {
            self.answer(now, r);
        } else {
            self.running.push(r);
        }
    }

    /// Hands the parts of `arc` (from its start, exclusive) to our links
    /// inside it, each up to the next; an arc nobody can take is missing.
    fn split(&mut self, now: Instant, ov: &Overlay, r: &mut Running, arc: Arc) {
        let children = crate::vpn::broadcast::targets(ov.table(), arc.0, arc.1);
        let elapsed = now.saturating_since(r.started);
        let child_budget = r.child_budget.saturating_sub(elapsed);
        for &(peer, arc_end) in &children {
            let Some(start) = ov.table().iter().find(|c| c.peer == peer).map(|c| c.addr) else {
                continue;
            };
            if child_budget < MIN_FORWARD || r.req.depth == u8::MAX {
                r.result.lost((start, arc_end));
                continue;
            }
            let mut msg = Vec::new();
            Request {
                budget_ms: child_budget.as_millis() as u32,
                arc_end,
                depth: r.req.depth + 1,
                ..r.req.clone()
            }
            .emit(&mut msg);
            self.actions.push(Action::Send { peer, msg });
            r.waiting.push((peer, (start, arc_end)));
        }
    }

    /// A subtree's answer from link `from`.
    pub fn handle_reply(&mut self, now: Instant, from: PeerIdx, msg: &[u8]) {
        let Ok(reply) = Reply::parse(msg) else {
            self.stats.malformed += 1;
            return;
        };
        let Some(i) = self.running.iter().position(|r| {
            r.id == reply.id && r.kind == reply.kind && r.waiting.iter().any(|(p, _)| *p == from)
        }) else {
            self.stats.replies_unmatched += 1;
            return;
        };
        let r = &mut self.running[i];
        r.waiting.retain(|(p, _)| *p != from);
        r.result.merge(&reply.result);
        if r.waiting.is_empty() {
            let r = self.running.swap_remove(i);
            self.answer(now, r);
        }
    }

    /// Gives up on children past the deadline: their arcs are missing.
    pub fn handle_timeout(&mut self, now: Instant, signer: &Signer) {
        self.walk_timeout(now, signer);
        self.send_due(now);
        while let Some(i) = self.running.iter().position(|r| now >= r.deadline) {
            let mut r = self.running.swap_remove(i);
            for (_, arc) in std::mem::take(&mut r.waiting) {
                r.result.lost(arc);
            }
            self.answer(now, r);
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let tasks = self.running.iter().map(|r| r.deadline).min();
        let delayed = self.delayed.iter().map(|d| d.at).min();
        tasks
            .into_iter()
            .chain(self.walk_deadline())
            .chain(delayed)
            .min()
    }

    /// A link went down: its subtree will not answer. Its arc goes to
    /// our links inside it (its start and beyond), or is missing.
    pub fn link_down(&mut self, now: Instant, ov: &Overlay, peer: PeerIdx) {
        let mut i = 0;
        while i < self.running.len() {
            let Some(k) = self.running[i].waiting.iter().position(|(p, _)| *p == peer) else {
                i += 1;
                continue;
            };
            let mut r = self.running.swap_remove(i);
            let (_, (start, end)) = r.waiting.remove(k);
            // The arc from just before its lost start: links at the start
            // and beyond take it over.
            let from = Addr(start.0.wrapping_sub(1));
            let before = r.waiting.len();
            self.split(now, ov, &mut r, (from, end));
            if r.waiting.len() == before {
                r.result.lost((start, end));
            }
            if r.waiting.is_empty() {
                self.answer(now, r);
            } else {
                self.running.push(r);
                i += 1;
            }
        }
    }

    fn answer(&mut self, now: Instant, mut r: Running) {
        let spread = crawl::spread_of(&r.req.task.args);
        if r.parent.is_none() && r.kind == TaskKind::Crawl {
            let Some(spread) = spread else {
                // The count is in: now the descriptions.
                self.actions.push(Action::Counted {
                    id: r.id,
                    members: r.result.get("members"),
                    started: r.started,
                });
                return;
            };
            if !r.settling && (r.described.len() as u64) < r.result.get("members") {
                // Descriptions may still be waiting their turn, or on
                // their way.
                r.settling = true;
                r.deadline = (now + SETTLE).max(r.started + spread + SETTLE);
                self.running.push(r);
                return;
            }
        }
        let (id, started) = r.reports_as.unwrap_or((r.id, r.started));
        match r.parent {
            Some(peer) => {
                let mut msg = Vec::new();
                Reply {
                    kind: r.kind,
                    id: r.id,
                    result: r.result,
                }
                .emit(&mut msg);
                self.actions.push(Action::Send { peer, msg });
            }
            None => self.actions.push(Action::Done {
                id,
                kind: r.kind,
                result: Box::new(Outcome {
                    reduced: r.result,
                    described: r.described,
                }),
                took: now.saturating_since(started),
            }),
        }
    }
}

/// Whether the origin signed this task, recently, and may start tasks.
fn authorized(t: &Task, signature: &[u8], auth: &Auth, now: Instant) -> bool {
    let unix = crate::time::unix_secs(auth.wall_origin_us, now);
    if t.issued.abs_diff(unix) > FRESH_SECS || !t.origin.verify(&t.signed_bytes(), signature) {
        return false;
    }
    let Some(trust) = auth.trust else {
        return t.cred_type == 1 || t.cred_type == 2;
    };
    let Ok(cert) = Cert::decode(&t.cred) else {
        return false;
    };
    t.cred_type == 2
        && trust.check(&cert, &t.origin, unix).is_ok()
        && cert.groups.iter().any(|g| g == auth.admin_group)
}

#[cfg(test)]
mod tests;
