//! Running the nodes: one event at a time, on one thread or two.
//!
//! A datagram never arrives sooner than the shortest link latency after it
//! was sent (`lookahead`). So within a window of that length starting at
//! the earliest queued event, nothing one node does can reach another:
//! every event of the window is already queued, except the nodes' own
//! timer wake-ups. The window's events are split by node, each part runs
//! in time order (on its own thread when there are enough of them: a
//! conservative parallel discrete-event simulation), and what the nodes
//! sent is queued for later windows.
//!
//! The result cannot depend on the split: each node sees the same events
//! in the same order whichever thread runs it, ties are broken by a key
//! naming who made the event (not by who queued it first), and every
//! random draw of the network (loss, jitter) comes from the sending
//! node's own generator. One thread and two print the same run
//! (`tests/sim_threads.rs`). NAT models and held datagrams are shared
//! state between nodes: runs with them stay on one thread.
//!
//! The node being run borrows its packet pool from the thread (`lend`):
//! between inputs a simulated node holds no buffer, so 100,000 nodes share
//! two pools instead of keeping 100,000 (a node that does keep a buffer
//! keeps the pool with it until it lets go).

use super::nat::{Geography, NatModel};
use super::queue::{Entry, WAKE};
use super::{set_context, NetConfig, SimNode};
use crate::buf::Pool;
use crate::node::Event as NodeEvent;
use crate::rand::Rng;
use crate::time::Instant;
use std::collections::{BinaryHeap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// A datagram on its way: where it came from (as the receiver sees it).
pub(super) type Datagram = (SocketAddr, Vec<u8>);

/// The tie-breaking key of the `n`th event node `origin` made.
pub(super) fn key(origin: u32, n: u64) -> u64 {
    (u64::from(origin) << 40) | (n & ((1 << 40) - 1))
}

/// The maker of events the test driver queues itself (`deliver_raw`).
pub(super) const DRIVER: u32 = (1 << 24) - 1;

/// Counters a part of a run adds up (merged after each window).
#[derive(Default)]
pub(super) struct Tally {
    pub lost: u64,
    pub watched: u64,
    pub stuck_wakes: u64,
    /// The first stuck wake-up (time, node) and the node's timers then.
    pub stuck: Option<(u64, u32, Option<String>)>,
    pub held: Vec<Datagram>,
    pub pool_high_water: u32,
    pub events: u64,
}

/// What the nodes of one part made, and the part's reusable buffers.
#[derive(Default)]
pub(super) struct Outbox {
    /// Events for the calendar; a delivery's `slot` indexes `payloads`.
    pub entries: Vec<Entry>,
    pub payloads: Vec<Option<Datagram>>,
    /// Wake-ups just scheduled (a window keeps those due within it).
    pub wakes: Vec<Entry>,
    /// The pool lent to the node being run.
    pub pool: Option<Pool>,
    pub tally: Tally,
}

impl Outbox {
    /// A datagram's bytes, in a buffer of their size: a mass join has
    /// dozens per node in flight at once, and a reused buffer would keep
    /// the room of the largest it ever held.
    fn buffer(&mut self, bytes: &[u8]) -> Vec<u8> {
        super::outside_node(|| bytes.to_vec())
    }

    /// Lets a delivered datagram's bytes go (on the simulator's account).
    pub fn discard(&mut self, v: Vec<u8>) {
        super::outside_node(|| drop(v))
    }

    /// Queues an event (and the datagram it delivers).
    fn send(&mut self, e: Entry, datagram: Option<Datagram>) {
        super::outside_node(|| match datagram {
            Some(d) => {
                let slot = self.payloads.len() as u32;
                self.payloads.push(Some(d));
                self.entries.push(Entry { slot, ..e });
            }
            None => self.wakes.push(e),
        })
    }
}

/// The network's fixed facts while nodes run.
pub(super) struct Wire<'a> {
    pub net: &'a NetConfig,
    pub geo: Option<&'a Geography>,
    /// Nodes in the simulation (their endpoints are `endpoint_of(i)`).
    pub nodes: u32,
    pub blocked: &'a HashSet<(u32, u32)>,
    pub watch: Option<IpAddr>,
    pub hold: Option<(u32, u32)>,
    pub keep_frames: usize,
    pub pool_slots: u32,
}

impl Wire<'_> {
    /// The shortest time between sending a datagram and its arrival (µs).
    pub fn lookahead(&self) -> u64 {
        let min = match self.geo {
            Some(_) => Geography::MIN_LATENCY,
            None => self.net.latency,
        };
        (min.as_micros() as u64).max(1)
    }

    fn latency(&self, a: u32, b: u32) -> Duration {
        match self.geo {
            Some(g) => g.latency(a, b),
            None => self.net.latency,
        }
    }

    fn is_public(nat: Option<&NatModel>, i: u32) -> bool {
        nat.map_or(true, |m| m.kind(i) == super::nat::SimNat::Public)
    }

    /// The node a datagram from `src` to `dst` reaches, if any: a public
    /// node at its endpoint, or a NATed one through its mapping.
    pub fn route(&self, nat: Option<&NatModel>, src: SocketAddr, dst: SocketAddr) -> Option<u32> {
        match super::node_at(dst, self.nodes) {
            Some(to) if Self::is_public(nat, to) => Some(to),
            // A private endpoint: unreachable from outside its NAT.
            Some(_) => None,
            None => nat?.inbound(dst, src),
        }
    }
}

/// Lends the part's pool to node `n` for one input (unless it still
/// holds one of its own).
pub(super) fn lend(n: &mut SimNode, out: &mut Outbox, slots: u32) {
    if n.node.pool().capacity() == 0 {
        let mut pool = out.pool.take().unwrap_or_else(|| Pool::new(slots));
        std::mem::swap(n.node.pool_mut(), &mut pool);
    }
}

/// Takes the lent pool back, if the node holds no buffer of it.
pub(super) fn take_back(n: &mut SimNode, out: &mut Outbox) {
    let pool = n.node.pool();
    if pool.capacity() > 0 && pool.in_use() == 0 {
        out.tally.pool_high_water = out.tally.pool_high_water.max(pool.high_water());
        let mut empty = Pool::new(0);
        std::mem::swap(n.node.pool_mut(), &mut empty);
        out.pool.get_or_insert(empty);
    }
}

/// Queues a wake-up of node `i` at `at`, unless one is due no later.
pub(super) fn schedule_wake(n: &mut SimNode, i: u32, at: Instant, out: &mut Outbox) {
    if n.wake.is_some_and(|w| w <= at) {
        return;
    }
    n.wake = Some(at);
    n.made += 1;
    let e = Entry {
        at: at.as_micros(),
        key: key(i, n.made),
        node: i,
        slot: WAKE,
    };
    out.send(e, None);
}

/// Runs one event at node `i` (`n`) and flushes what it made.
pub(super) fn run_event(
    n: &mut SimNode,
    e: Entry,
    payload: Option<Datagram>,
    wire: &Wire,
    nat: &mut Option<&mut NatModel>,
    out: &mut Outbox,
) {
    let at = Instant::ZERO + Duration::from_micros(e.at);
    let i = e.node;
    set_context(i, at);
    out.tally.events += 1;
    match payload {
        Some((from, bytes)) => {
            if !n.alive {
                out.tally.lost += 1;
                return out.discard(bytes);
            }
            lend(n, out, wire.pool_slots);
            match n.node.pool_mut().alloc_with(&bytes) {
                Some(buf) => {
                    let buf = match n.nets.as_mut() {
                        Some(nets) => nets.handle_datagram(at, &mut n.node, from.into(), buf),
                        None => Some(buf),
                    };
                    if let Some(buf) = buf {
                        n.node.handle_datagram(at, from, buf);
                    }
                }
                None => out.tally.lost += 1,
            }
            out.discard(bytes);
        }
        None => {
            if !n.alive || n.wake != Some(at) {
                return; // stale
            }
            n.wake = None;
            lend(n, out, wire.pool_slots);
            if n.node.poll_timeout().is_some_and(|d| d <= at) {
                n.node.handle_timeout(at);
            }
            let mut stuck = false;
            if let Some(nets) = n.nets.as_mut() {
                nets.handle_timeout(at, &mut n.node);
                stuck |= nets.poll_timeout().is_some_and(|d| d <= at);
            }
            if n.node.poll_timeout().is_some_and(|d| d <= at) {
                stuck = true;
            }
            if stuck {
                out.tally.stuck_wakes += 1;
                if out.tally.stuck.is_none() {
                    out.tally.stuck = Some((e.at, i, Some(n.node.debug_deadlines(at))));
                }
            }
        }
    }
    flush(n, i, at, wire, nat, out);
    take_back(n, out);
}

/// Moves node `i`'s outputs (its networks' first) onto the network and
/// re-arms its timer.
pub(super) fn flush(
    n: &mut SimNode,
    i: u32,
    now: Instant,
    wire: &Wire,
    nat: &mut Option<&mut NatModel>,
    out: &mut Outbox,
) {
    let from = n.endpoint;
    loop {
        let mut t = None;
        if let Some(nets) = n.nets.as_mut() {
            nets.settle(now, &mut n.node);
            for k in 0..nets.len() {
                let node = &mut nets.get_mut(k).node;
                if let Some(tx) = node.poll_transmit() {
                    let bytes = out.buffer(node.pool().data(&tx.buf));
                    node.pool_mut().free(tx.buf);
                    t = Some((tx.dst, bytes));
                    break;
                }
            }
        }
        if t.is_none() {
            if let Some(tx) = n.node.poll_transmit() {
                let bytes = out.buffer(n.node.pool().data(&tx.buf));
                n.node.pool_mut().free(tx.buf);
                t = Some((tx.dst, bytes));
            }
        }
        let Some((dst, bytes)) = t else {
            if flush_events(n, now, wire.keep_frames) {
                continue;
            }
            break;
        };
        n.tx_bytes += bytes.len() as u64;
        n.tx_datagrams += 1;
        if wire.watch == Some(dst.addr.ip()) {
            out.tally.watched += 1;
        }
        let lost =
            wire.net.loss > 0.0 && (n.rng.next_u64() as f64 / u64::MAX as f64) < wire.net.loss;
        let src = match nat.as_deref_mut() {
            Some(m) => m.outbound(i, from, dst.addr),
            None => from,
        };
        let cut =
            |to: u32| !wire.blocked.is_empty() && wire.blocked.contains(&(i.min(to), i.max(to)));
        match wire.route(nat.as_deref(), src, dst.addr) {
            Some(to) if wire.hold == Some((i, to)) => {
                super::outside_node(|| out.tally.held.push((src, bytes)))
            }
            Some(to) if !lost && !cut(to) => {
                let jitter = n.rng.below(wire.net.jitter.as_micros() as u64 + 1);
                let at = now + wire.latency(i, to) + Duration::from_micros(jitter);
                n.made += 1;
                let e = Entry {
                    at: at.as_micros(),
                    key: key(i, n.made),
                    node: to,
                    slot: 0,
                };
                out.send(e, Some((src, bytes)));
            }
            _ => {
                out.tally.lost += 1;
                out.discard(bytes);
            }
        }
    }
    let net_due = n.nets.as_ref().and_then(|nets| nets.poll_timeout());
    if let Some(d) = crate::time::earliest(n.node.poll_timeout(), net_due) {
        // Never in the past: a deadline the node did not clear is
        // retried a millisecond later rather than spinning.
        let at = d.max(now + Duration::from_millis(1));
        schedule_wake(n, i, at, out);
    }
}

/// Takes node `n`'s frames and events (and its networks'); true if that
/// gave its networks something to send.
fn flush_events(n: &mut SimNode, now: Instant, keep: usize) -> bool {
    if let Some(nets) = n.nets.as_mut() {
        n.net_taps.resize(nets.len(), Vec::new());
        for k in 0..nets.len() {
            let node = &mut nets.get_mut(k).node;
            while let Some(f) = node.poll_frame() {
                if n.net_taps[k].len() < keep {
                    n.net_taps[k].push(node.pool().data(&f).to_vec());
                }
                node.pool_mut().free(f);
            }
            while node.poll_event().is_some() {}
        }
    }
    while let Some(f) = n.node.poll_frame() {
        if n.tap.len() < keep {
            n.tap.push(n.node.pool().data(&f).to_vec());
        }
        n.node.pool_mut().free(f);
    }
    while let Some(e) = n.node.poll_event() {
        let e = match n.nets.as_mut() {
            Some(nets) => match nets.public_event(now, &mut n.node, e) {
                Some(e) => e,
                None => continue,
            },
            None => e,
        };
        match e {
            NodeEvent::Dht(e) => n.dht.push(e),
            NodeEvent::Echo { nonce, hops, rtt } => {
                n.echoes.insert(nonce, (hops, rtt));
            }
            NodeEvent::TaskDone {
                id, result, took, ..
            } => {
                n.tasks.insert(id, (*result, took));
            }
            // A simulated host has no kernel routes to change: the
            // node's own table is what carries the traffic.
            NodeEvent::AddressHeld(_)
            | NodeEvent::AddressConflict { .. }
            | NodeEvent::RouteAdded(_)
            | NodeEvent::RouteRemoved(_) => {}
        }
    }
    let nets_queued = n.nets.as_mut().is_some_and(|nets| {
        nets.settle(now, &mut n.node);
        nets.iter().any(|net| net.node.transmits_queued() > 0)
    });
    nets_queued || n.node.transmits_queued() > 0
}

/// Runs one part of a window: `events` (in time order, all for nodes
/// `base..base + nodes.len()`) and the wake-ups they schedule before `end`.
pub(super) fn run_part(
    nodes: &mut [SimNode],
    base: u32,
    events: Vec<(Entry, Option<Datagram>)>,
    end: u64,
    wire: &Wire,
    mut nat: Option<&mut NatModel>,
    out: &mut Outbox,
) {
    let mut soon: BinaryHeap<std::cmp::Reverse<Entry>> = BinaryHeap::new();
    let mut events = events.into_iter().peekable();
    loop {
        let from_queue = match (events.peek(), soon.peek()) {
            (Some((e, _)), Some(std::cmp::Reverse(w))) => e < w,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let (e, payload) = if from_queue {
            events.next().expect("peeked")
        } else {
            (soon.pop().expect("peeked").0, None)
        };
        run_event(
            &mut nodes[(e.node - base) as usize],
            e,
            payload,
            wire,
            &mut nat,
            out,
        );
        for w in out.wakes.drain(..) {
            if w.at < end {
                soon.push(std::cmp::Reverse(w));
            } else {
                out.entries.push(w);
            }
        }
    }
}
