//! Map-reduce tasks over the ring's links (docs/MANAGE.md): a request
//! goes down the bounded-broadcast tree, each node's answer comes back up
//! to its parent, reduced on the way.
//!
//! A request carries the task as its origin signed it — kind, id, the
//! origin's key, the wall-clock second it was issued, arguments, and in
//! certificate mode the origin's certificate — and, unsigned because
//! every hop rewrites them, the arc the receiver covers, the time budget
//! left and the depth:
//!
//! ```text
//!  0 kind 13 | 1 version 1 | 2 task | 3 depth
//!  4 id (8)
//! 12 arc end: ring address (16)
//! 28 budget, ms (4)
//! 32 origin's node key (32)
//! 64 issued, unix seconds (8)
//! 72 argument length A (1, ≤ 64) | arguments
//!    credential type (1: key, 2: certificate) | length L (2, ≤ 1024) | credential
//!    64 Ed25519 signature by the origin over "ringvpn-task" ‖ task ‖ id ‖ key ‖ issued ‖ A ‖ arguments ‖ type ‖ L ‖ credential
//! ```
//!
//! A reply is a bag of named counters (summed by name when reduced:
//! `members`, `nat:cone`, `drop:unknown_session` …), a few named items
//! (members matching a query, members that see a wrong neighbour) and
//! what is missing — arcs whose subtree did not answer in time:
//!
//! ```text
//!  0 kind 14 | 1 version 1 | 2 task | 3 reserved
//!  4 id (8)
//! 12 counters n (1, ≤ 24) | n × (name length (1, ≤ 24) | name | value (8))
//!    items m (1, ≤ 6) | m × (length (1, ≤ 40) | text)
//!    missing arcs k (1, ≤ 4) | k × (start (16) | end (16)) | missing beyond those (2)
//! ```
//! Everything is bounded — at most 1,183 bytes — so a reply fits one
//! datagram whatever the ring's size; counters past the bound are summed
//! under `other`.

use super::control::{KIND_TASK, KIND_TASK_REPLY};
use super::handshake::{MAX_CRED_LEN, SIG_LEN};
use super::{get_u64, Error, Result};
use crate::wire::addr::Addr;
use crate::wire::key::NodeKey;
use smallvec::SmallVec;

pub const VERSION: u8 = 1;
pub const MAX_ARGS: usize = 64;
pub const MAX_COUNTERS: usize = 24;
pub const MAX_NAME: usize = 24;
pub const MAX_ITEMS: usize = 6;
pub const MAX_ITEM: usize = 40;
/// Where counters past [`MAX_COUNTERS`] are summed.
pub const OTHER: &str = "other";
pub const MAX_ARCS: usize = 4;
pub const LABEL: &[u8] = b"ringvpn-task";
const REQUEST_FIXED: usize = 73;

/// What a task asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    /// Members, versions, NAT types, paths, relay load, links, drops.
    Stats = 1,
    /// Ring consistency by the design notes' left1/left2 method.
    Check = 2,
    /// Members matching a property (the arguments say which).
    Find = 3,
    /// Every member's description (`wire::describe`), routed to the
    /// origin; the reply counts members.
    Crawl = 4,
}

impl TaskKind {
    pub fn from_u8(b: u8) -> Option<TaskKind> {
        match b {
            1 => Some(TaskKind::Stats),
            2 => Some(TaskKind::Check),
            3 => Some(TaskKind::Find),
            4 => Some(TaskKind::Crawl),
            _ => None,
        }
    }
}

/// The signed part of a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub kind: TaskKind,
    pub id: u64,
    pub origin: NodeKey,
    pub issued: u64,
    pub args: Vec<u8>,
    /// 1: bare key, 2: certificate.
    pub cred_type: u8,
    pub cred: Vec<u8>,
}

impl Task {
    /// The bytes the origin signs.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(LABEL.len() + 56 + self.args.len() + self.cred.len());
        m.extend_from_slice(LABEL);
        m.push(self.kind as u8);
        m.extend_from_slice(&self.id.to_be_bytes());
        m.extend_from_slice(&self.origin.0);
        m.extend_from_slice(&self.issued.to_be_bytes());
        m.push(self.args.len() as u8);
        m.extend_from_slice(&self.args);
        m.push(self.cred_type);
        m.extend_from_slice(&(self.cred.len() as u16).to_be_bytes());
        m.extend_from_slice(&self.cred);
        m
    }
}

/// A request as it travels: the task, its signature, and this hop's arc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub task: Task,
    pub signature: [u8; SIG_LEN],
    /// The receiver covers the ring from itself (inclusive) up to here
    /// (exclusive); its own address: the whole ring.
    pub arc_end: Addr,
    pub budget_ms: u32,
    pub depth: u8,
}

impl Request {
    pub fn emit(&self, out: &mut Vec<u8>) {
        let t = &self.task;
        out.extend_from_slice(&[KIND_TASK, VERSION, t.kind as u8, self.depth]);
        out.extend_from_slice(&t.id.to_be_bytes());
        out.extend_from_slice(&self.arc_end.to_bytes());
        out.extend_from_slice(&self.budget_ms.to_be_bytes());
        out.extend_from_slice(&t.origin.0);
        out.extend_from_slice(&t.issued.to_be_bytes());
        out.push(t.args.len() as u8);
        out.extend_from_slice(&t.args);
        out.push(t.cred_type);
        out.extend_from_slice(&(t.cred.len() as u16).to_be_bytes());
        out.extend_from_slice(&t.cred);
        out.extend_from_slice(&self.signature);
    }

    /// Parses a request strictly (the signature is the receiver's to check).
    pub fn parse(b: &[u8]) -> Result<Request> {
        if b.len() < REQUEST_FIXED || b[0] != KIND_TASK || b[1] != VERSION {
            return Err(Error);
        }
        let kind = TaskKind::from_u8(b[2]).ok_or(Error)?;
        let n = usize::from(b[72]);
        let cred_at = REQUEST_FIXED + n;
        if n > MAX_ARGS || b.len() < cred_at + 3 {
            return Err(Error);
        }
        let cred_type = b[cred_at];
        let cred_len = usize::from(u16::from_be_bytes([b[cred_at + 1], b[cred_at + 2]]));
        let sig_at = cred_at + 3 + cred_len;
        if !(1..=2).contains(&cred_type) || cred_len > MAX_CRED_LEN || b.len() != sig_at + SIG_LEN {
            return Err(Error);
        }
        let mut addr = [0u8; 16];
        addr.copy_from_slice(&b[12..28]);
        Ok(Request {
            task: Task {
                kind,
                id: get_u64(b, 4),
                origin: NodeKey(b[32..64].try_into().map_err(|_| Error)?),
                issued: get_u64(b, 64),
                args: b[REQUEST_FIXED..cred_at].to_vec(),
                cred_type,
                cred: b[cred_at + 3..sig_at].to_vec(),
            },
            signature: b[sig_at..].try_into().map_err(|_| Error)?,
            arc_end: Addr::from_bytes(addr),
            budget_ms: u32::from_be_bytes([b[28], b[29], b[30], b[31]]),
            depth: b[3],
        })
    }
}

/// A ring arc no answer came from: `[start, end)`.
pub type Arc = (Addr, Addr);

/// A (partial) result: what a subtree reduced to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reduced {
    pub counters: SmallVec<[(String, u64); 16]>,
    pub items: SmallVec<[String; 4]>,
    /// Arcs whose subtree did not answer (the first few), and how many
    /// more beyond those.
    pub missing: SmallVec<[Arc; MAX_ARCS]>,
    pub missing_more: u16,
}

impl Reduced {
    /// Adds `value` to counter `name` (past the bound, to `other`: the
    /// bound keeps replies one datagram).
    pub fn add(&mut self, name: &str, value: u64) {
        let mut end = name.len().min(MAX_NAME);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        let name = &name[..end];
        if let Some((_, v)) = self.counters.iter_mut().find(|(n, _)| n == name) {
            *v = v.saturating_add(value);
        } else if self.counters.len() + 1 < MAX_COUNTERS {
            self.counters.push((name.to_string(), value));
        } else if name != OTHER {
            self.add(OTHER, value);
        } else {
            self.counters.push((OTHER.to_string(), value));
        }
    }

    pub fn get(&self, name: &str) -> u64 {
        self.counters
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, v)| *v)
    }

    /// Adds an item (bounded; the first ones stay).
    pub fn item(&mut self, text: &str) {
        if self.items.len() < MAX_ITEMS {
            let mut end = text.len().min(MAX_ITEM);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            self.items.push(text[..end].to_string());
        }
    }

    /// Notes an arc that did not answer.
    pub fn lost(&mut self, arc: Arc) {
        if self.missing.len() < MAX_ARCS {
            self.missing.push(arc);
        } else {
            self.missing_more = self.missing_more.saturating_add(1);
        }
    }

    /// Folds a child's result into ours.
    pub fn merge(&mut self, other: &Reduced) {
        for (n, v) in &other.counters {
            self.add(n, *v);
        }
        for i in &other.items {
            self.item(i);
        }
        for a in &other.missing {
            self.lost(*a);
        }
        self.missing_more = self.missing_more.saturating_add(other.missing_more);
    }

    /// Arcs missing in all.
    pub fn missing_arcs(&self) -> usize {
        self.missing.len() + usize::from(self.missing_more)
    }
}

/// A reply: a subtree's reduced result for task `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub kind: TaskKind,
    pub id: u64,
    pub result: Reduced,
}

impl Reply {
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[KIND_TASK_REPLY, VERSION, self.kind as u8, 0]);
        out.extend_from_slice(&self.id.to_be_bytes());
        let r = &self.result;
        let counters = &r.counters[..r.counters.len().min(MAX_COUNTERS)];
        out.push(counters.len() as u8);
        for (n, v) in counters {
            let n = &n.as_bytes()[..n.len().min(MAX_NAME)];
            out.push(n.len() as u8);
            out.extend_from_slice(n);
            out.extend_from_slice(&v.to_be_bytes());
        }
        let items = &r.items[..r.items.len().min(MAX_ITEMS)];
        out.push(items.len() as u8);
        for i in items {
            let i = &i.as_bytes()[..i.len().min(MAX_ITEM)];
            out.push(i.len() as u8);
            out.extend_from_slice(i);
        }
        out.push(r.missing.len() as u8);
        for (s, e) in &r.missing {
            out.extend_from_slice(&s.to_bytes());
            out.extend_from_slice(&e.to_bytes());
        }
        out.extend_from_slice(&r.missing_more.to_be_bytes());
    }

    /// Parses a reply strictly.
    pub fn parse(b: &[u8]) -> Result<Reply> {
        if b.len() < 13 || b[0] != KIND_TASK_REPLY || b[1] != VERSION || b[3] != 0 {
            return Err(Error);
        }
        let kind = TaskKind::from_u8(b[2]).ok_or(Error)?;
        let id = get_u64(b, 4);
        let mut at = 12;
        let mut take = |n: usize| -> Result<&[u8]> {
            let s = b.get(at..at + n).ok_or(Error)?;
            at += n;
            Ok(s)
        };
        let text = |s: &[u8]| {
            std::str::from_utf8(s)
                .map(str::to_string)
                .map_err(|_| Error)
        };
        let mut r = Reduced::default();
        let n = usize::from(take(1)?[0]);
        if n > MAX_COUNTERS {
            return Err(Error);
        }
        for _ in 0..n {
            let len = usize::from(take(1)?[0]);
            if len > MAX_NAME {
                return Err(Error);
            }
            let name = text(take(len)?)?;
            let v = u64::from_be_bytes(take(8)?.try_into().map_err(|_| Error)?);
            r.counters.push((name, v));
        }
        let m = usize::from(take(1)?[0]);
        if m > MAX_ITEMS {
            return Err(Error);
        }
        for _ in 0..m {
            let len = usize::from(take(1)?[0]);
            if len > MAX_ITEM {
                return Err(Error);
            }
            r.items.push(text(take(len)?)?);
        }
        let k = usize::from(take(1)?[0]);
        if k > MAX_ARCS {
            return Err(Error);
        }
        for _ in 0..k {
            let s: [u8; 16] = take(16)?.try_into().map_err(|_| Error)?;
            let e: [u8; 16] = take(16)?.try_into().map_err(|_| Error)?;
            r.missing.push((Addr::from_bytes(s), Addr::from_bytes(e)));
        }
        r.missing_more = u16::from_be_bytes(take(2)?.try_into().map_err(|_| Error)?);
        if at != b.len() {
            return Err(Error);
        }
        Ok(Reply {
            kind,
            id,
            result: r,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Request {
        Request {
            task: Task {
                kind: TaskKind::Check,
                id: 0x1122_3344_5566_7788,
                origin: NodeKey([7; 32]),
                issued: 1_800_000_000,
                args: b"x".to_vec(),
                cred_type: 2,
                cred: vec![9; 100],
            },
            signature: [3; SIG_LEN],
            arc_end: Addr(0x1234 << 100),
            budget_ms: 8000,
            depth: 2,
        }
    }

    #[test]
    fn a_request_reads_back_and_rejects_any_cut() {
        let r = request();
        let mut b = Vec::new();
        r.emit(&mut b);
        assert_eq!(Request::parse(&b).unwrap(), r);
        for cut in 0..b.len() {
            assert!(Request::parse(&b[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = b.clone();
        longer.push(0);
        assert!(Request::parse(&longer).is_err());
    }

    #[test]
    fn a_reply_reads_back_bounded_and_merges_by_name() {
        let mut r = Reduced::default();
        r.add("members", 3);
        r.add("nat:cone", 2);
        r.item("abc node");
        r.lost((Addr(1), Addr(2)));
        let reply = Reply {
            kind: TaskKind::Stats,
            id: 5,
            result: r.clone(),
        };
        let mut b = Vec::new();
        reply.emit(&mut b);
        assert_eq!(Reply::parse(&b).unwrap(), reply);
        for cut in 0..b.len() {
            assert!(Reply::parse(&b[..cut]).is_err(), "cut at {cut}");
        }
        let mut sum = r.clone();
        sum.merge(&r);
        assert_eq!((sum.get("members"), sum.missing_arcs()), (6, 2));
        // Bounded: however much is merged, a reply stays one datagram.
        let mut big = Reduced::default();
        for i in 0u32..200 {
            big.add(&format!("{i:0>24}"), 1);
            big.item(&"x".repeat(100));
            big.lost((Addr(u128::from(i)), Addr(u128::from(i) + 1)));
        }
        let mut b = Vec::new();
        Reply {
            kind: TaskKind::Stats,
            id: 1,
            result: big,
        }
        .emit(&mut b);
        assert!(b.len() <= 1183, "{} bytes", b.len());
        let back = Reply::parse(&b).unwrap().result;
        assert_eq!(back.counters.len(), MAX_COUNTERS);
        let total: u64 = back.counters.iter().map(|(_, v)| v).sum();
        assert_eq!(total, 200, "nothing lost: the rest under `other`");
    }
}
