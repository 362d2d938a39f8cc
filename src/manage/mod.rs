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
//! second left's second right is me; value = hits / 2N) and `find`
//! (members with a property). The map's facts come from the node through
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
use crate::wire::task::{Arc, Reduced, Reply, Request, Task, TaskKind};
use smallvec::SmallVec;
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
    /// A task we started is done (complete or partial).
    Done {
        id: u64,
        kind: TaskKind,
        result: Box<Reduced>,
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
}

pub struct Manager {
    me: Addr,
    running: Vec<Running>,
    seen: VecDeque<(NodeKey, u64)>,
    rate: KeyedBuckets<NodeKey>,
    next_id: u64,
    stats: ManageStats,
    actions: Vec<Action>,
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
        }
    }

    pub fn stats(&self) -> &ManageStats {
        &self.stats
    }

    pub fn drain_actions(&mut self) -> std::vec::Drain<'_, Action> {
        self.actions.drain(..)
    }

    /// Starts `kind` over the whole ring from here: signed with `id` (and
    /// `cert` in certificate mode). Its result comes back as
    /// [`Action::Done`] with the returned id.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        &mut self,
        now: Instant,
        ov: &Overlay,
        local: &impl Local,
        id: &Identity,
        cert: Option<&[u8]>,
        wall_origin_us: u64,
        kind: TaskKind,
        args: &[u8],
    ) -> u64 {
        let task_id = self.next_id;
        self.next_id = self.next_id.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let task = Task {
            kind,
            id: task_id,
            origin: id.public(),
            issued: crate::time::unix_secs(wall_origin_us, now),
            args: args[..args.len().min(crate::wire::task::MAX_ARGS)].to_vec(),
            cred_type: if cert.is_some() { 2 } else { 1 },
            cred: cert.unwrap_or(&[]).to_vec(),
        };
        let signature = id.sign(&task.signed_bytes());
        let req = Request {
            task,
            signature,
            arc_end: self.me,
            budget_ms: TASK_BUDGET.as_millis() as u32,
            depth: 0,
        };
        self.remember(req.task.origin, task_id);
        self.stats.started += 1;
        self.run(now, ov, local, None, req);
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
        let Ok(req) = Request::parse(msg) else {
            self.stats.malformed += 1;
            return Err(Refusal::Malformed);
        };
        let t = &req.task;
        if self.seen.contains(&(t.origin, t.id)) {
            self.stats.refused_replay += 1;
            return Err(Refusal::Replay);
        }
        let refusal = if !authorized(t, &req.signature, auth, now) {
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
        };
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
        self.run(now, ov, local, Some(from), req);
        Ok(())
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
    ) {
        let budget = Duration::from_millis(u64::from(req.budget_ms));
        let mut result = Reduced::default();
        map(req.task.kind, &req.task.args, ov, local, &mut result);
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
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(i) = self.running.iter().position(|r| now >= r.deadline) {
            let mut r = self.running.swap_remove(i);
            for (_, arc) in std::mem::take(&mut r.waiting) {
                r.result.lost(arc);
            }
            self.answer(now, r);
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.running.iter().map(|r| r.deadline).min()
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

    fn answer(&mut self, now: Instant, r: Running) {
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
                id: r.id,
                kind: r.kind,
                result: Box::new(r.result),
                took: now.saturating_since(r.started),
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

/// This node's part of a task.
fn map(kind: TaskKind, args: &[u8], ov: &Overlay, local: &impl Local, out: &mut Reduced) {
    match kind {
        TaskKind::Stats => local.stats(out),
        TaskKind::Check => check(ov, out),
        TaskKind::Find => {
            out.add("members", 1);
            let query = std::str::from_utf8(args).unwrap_or("");
            if let Some(name) = local.find(query) {
                out.add("found", 1);
                out.item(&name);
            }
        }
    }
}

/// The notes' consistency map: is my left neighbour's right neighbour
/// me, and my second left's second right? What a neighbour's neighbours
/// are comes from its last connection list (address prefixes).
fn check(ov: &Overlay, out: &mut Reduced) {
    let me = ov.addr();
    out.add("members", 1);
    let mut left: SmallVec<[(u128, &crate::overlay::table::Conn); 4]> = ov
        .table()
        .iter()
        .map(|c| (c.addr.right_dist(me), c))
        .filter(|(d, _)| *d != 0)
        .collect();
    left.sort_by_key(|(d, _)| *d);
    let mine = (me.0 >> 64) as u64;
    let nth_right = |c: &crate::overlay::table::Conn, n: usize| {
        let from = (c.addr.0 >> 64) as u64;
        let mut r: SmallVec<[u64; 16]> = c.nbrs.iter().copied().filter(|&a| a != from).collect();
        r.sort_by_key(|&a| a.wrapping_sub(from));
        r.get(n).copied()
    };
    let mut misses = Vec::new();
    for (n, name) in [(0, "left1_hits"), (1, "left2_hits")] {
        let hit = left
            .get(n)
            .and_then(|(_, c)| nth_right(c, n))
            .is_some_and(|a| a == mine);
        if hit {
            out.add(name, 1);
        } else {
            misses.push(n + 1);
        }
    }
    if !misses.is_empty() {
        let which = if misses.len() == 2 {
            "left1,left2"
        } else if misses[0] == 1 {
            "left1"
        } else {
            "left2"
        };
        out.item(&format!("{} {which}", &me.to_hex()[..16]));
    }
}

#[cfg(test)]
mod tests;
