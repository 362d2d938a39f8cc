//! What the simulator measures, from the nodes' own tables.

use super::Sim;
use crate::overlay::Addr;
use crate::rand::Rng;
use std::collections::BTreeMap;
use std::time::Duration;

impl Sim {
    fn addr_index(&self) -> BTreeMap<Addr, usize> {
        self.alive().map(|i| (self.addr(i), i)).collect()
    }

    /// Ring consistency: the fraction of (node, side, rank ≤ 2) checks that
    /// match the true ring. Each node's two nearest connections on each
    /// side must be its true neighbours: the design notes' four-way check
    /// ("my left's right is me", and for the second neighbours), taken from
    /// both ends of every link so that a link one side has dropped counts,
    /// and measured against the real order. (Their crawl cannot see a loopy
    /// ring: two interleaved chains that are each consistent on their own.)
    pub fn consistency(&self) -> f64 {
        let overlays: Vec<&crate::overlay::Overlay> = self
            .alive()
            .filter_map(|i| self.node(i).overlay())
            .collect();
        ring_consistency(&overlays)
    }

    /// Ring consistency as the design notes' crawl measures it: each node
    /// asks its left neighbour for that node's right neighbour, and its
    /// second left for that one's second right; a hit is an answer naming
    /// the asking node. Consistency = hits / (2N). Blind to a loopy ring
    /// (see [`Sim::consistency`]), so it is reported beside it, not instead.
    pub fn crawl_consistency(&self) -> f64 {
        let index = self.addr_index();
        let n = index.len();
        if n < 2 {
            return 1.0;
        }
        let nth = |a: Addr, left: bool, k: usize| -> Option<Addr> {
            let ov = self.node(*index.get(&a)?).overlay()?;
            let it: Vec<Addr> = if left {
                ov.table().left_of(a, k).map(|c| c.addr).collect()
            } else {
                ov.table().right_of(a, k).map(|c| c.addr).collect()
            };
            it.get(k - 1).copied()
        };
        let mut hits = 0usize;
        for &me in index.keys() {
            for k in 1..=2 {
                let answer = nth(me, true, k).and_then(|l| nth(l, false, k));
                hits += usize::from(answer == Some(me));
            }
        }
        hits as f64 / (2 * n) as f64
    }

    /// The true ring order of live nodes, for checks.
    pub fn ring_order(&self) -> Vec<usize> {
        self.addr_index().into_values().collect()
    }

    /// Mean peer table per live node: peers present, places, tombstones,
    /// peers forgotten so far.
    pub fn peer_tables(&self) -> (f64, f64, f64, f64) {
        let mut sum = (0usize, 0usize, 0usize, 0u64);
        let mut live = 0usize;
        for n in self.nodes.iter().filter(|n| n.alive) {
            let t = n.node.peer_table();
            sum = (
                sum.0 + t.present,
                sum.1 + t.places,
                sum.2 + t.tombstones,
                sum.3 + t.forgotten,
            );
            live += 1;
        }
        let d = live.max(1) as f64;
        (
            sum.0 as f64 / d,
            sum.1 as f64 / d,
            sum.2 as f64 / d,
            sum.3 as f64 / d,
        )
    }

    /// The most pool buffers any node has had in use at once.
    pub fn pool_high_water(&self) -> u32 {
        self.nodes
            .iter()
            .map(|n| n.node.pool().high_water())
            .max()
            .unwrap_or(0)
            .max(self.lent_high_water)
    }

    /// Drops of one reason summed over all nodes (live or not).
    pub fn drops(&self, reason: crate::node::DropReason) -> u64 {
        self.nodes
            .iter()
            .map(|n| n.node.stats().drops(reason))
            .sum()
    }

    /// Mean number of connections per live node.
    pub fn mean_connections(&self) -> f64 {
        let (mut sum, mut n) = (0usize, 0usize);
        for i in self.alive() {
            sum += self.node(i).overlay().map_or(0, |o| o.table().len());
            n += 1;
        }
        sum as f64 / n.max(1) as f64
    }

    /// Mean connections per live node by why they exist: (near, our
    /// shortcuts, others' shortcuts only, leaves, no reason yet).
    pub fn connection_mix(&self) -> [f64; 5] {
        use crate::overlay::table::reason;
        let mut sum = [0usize; 5];
        let mut n = 0usize;
        for i in self.alive() {
            let Some(ov) = self.node(i).overlay() else {
                continue;
            };
            n += 1;
            for c in ov.table().iter() {
                let k = if c.mine & reason::NEAR != 0 {
                    0
                } else if c.mine & reason::SHORTCUT != 0 {
                    1
                } else if c.theirs & reason::SHORTCUT != 0 {
                    2
                } else if (c.mine | c.theirs) & reason::LEAF != 0 {
                    3
                } else {
                    4
                };
                sum[k] += 1;
            }
        }
        sum.map(|s| s as f64 / n.max(1) as f64)
    }

    /// Sends `pairs` routed echoes between random live nodes and waits
    /// `wait` for the replies. Returns the route statistics.
    pub fn route_test(&mut self, pairs: usize, wait: Duration) -> RouteStats {
        let alive: Vec<usize> = self.alive().collect();
        let mut sent = Vec::with_capacity(pairs);
        for k in 0..pairs {
            let s = alive[self.rng().below(alive.len() as u64) as usize];
            let mut d = alive[self.rng().below(alive.len() as u64) as usize];
            if d == s {
                d = alive[(alive.iter().position(|&x| x == s).unwrap_or(0) + 1) % alive.len()];
            }
            let nonce = 0x5eed_0000_0000 + k as u64;
            let dst = self.addr(d);
            self.echo(s, dst, nonce);
            sent.push((s, nonce));
        }
        self.run_for(wait);
        let mut hops = Vec::new();
        let mut rtts = Vec::new();
        for (s, nonce) in sent {
            if let Some((h, rtt)) = self.echo_result(s, nonce) {
                hops.push(u32::from(h) + 1);
                rtts.push(rtt);
            }
        }
        hops.sort_unstable();
        let ok = hops.len();
        RouteStats {
            sent: pairs,
            delivered: ok,
            mean_hops: hops.iter().sum::<u32>() as f64 / ok.max(1) as f64,
            p99_hops: hops
                .get((ok * 99 / 100).min(ok.saturating_sub(1)))
                .copied()
                .unwrap_or(0),
            mean_rtt: rtts.iter().sum::<Duration>() / ok.max(1) as u32,
        }
    }
}

/// Results of a batch of routed echoes.
#[derive(Debug, Clone)]
pub struct RouteStats {
    pub sent: usize,
    pub delivered: usize,
    /// Overlay hops of the return route (source to destination and back
    /// are both greedy; the reply's count is reported).
    pub mean_hops: f64,
    pub p99_hops: u32,
    pub mean_rtt: Duration,
}

impl RouteStats {
    pub fn success(&self) -> f64 {
        self.delivered as f64 / self.sent.max(1) as f64
    }
}

/// [`Sim::consistency`] over any set of live nodes' overlays (a ring, or
/// a sub-ring's members): each one's two nearest connections on each
/// side must be its true neighbours among them.
pub fn ring_consistency(overlays: &[&crate::overlay::Overlay]) -> f64 {
    let index: BTreeMap<Addr, usize> = overlays
        .iter()
        .enumerate()
        .map(|(k, ov)| (ov.addr(), k))
        .collect();
    let order: Vec<Addr> = index.keys().copied().collect();
    let n = order.len();
    if n < 2 {
        return 1.0;
    }
    let checks = if n > 2 { 2 } else { 1 };
    let mut hits = 0usize;
    for (k, me) in order.iter().enumerate() {
        let ov = overlays[index[me]];
        let lefts = ov.table().left_of(*me, checks).map(|c| c.addr);
        for (j, l) in lefts.enumerate() {
            hits += usize::from(l == order[(k + n - 1 - j) % n]);
        }
        let rights = ov.table().right_of(*me, checks).map(|c| c.addr);
        for (j, r) in rights.enumerate() {
            hits += usize::from(r == order[(k + 1 + j) % n]);
        }
    }
    hits as f64 / (2 * checks * n) as f64
}
