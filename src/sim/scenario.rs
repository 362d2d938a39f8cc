//! Scenarios shared by the tests, `ringvpn-lab sim` and the benchmarks.

use super::metrics::RouteStats;
use super::{NetConfig, Sim};
use crate::rand::{Rng, SeededRng};
use std::time::Duration;

/// Builds `n` nodes that all start at once, each knowing `bootstraps`
/// random other nodes' endpoints (the design notes' bootstrap experiment).
pub fn mass_join(n: usize, seed: u64, bootstraps: usize, net: NetConfig) -> Sim {
    let mut sim = Sim::new(seed, net);
    sim.reserve_nodes(n);
    // Endpoints are known up front, so every node gets random bootstraps
    // among all the others (nodes that are not up yet simply do not answer).
    for i in 0..n {
        let mut b = Vec::new();
        while b.len() < bootstraps.min(n - 1) {
            let j = sim.rng().below(n as u64) as usize;
            let e = super::endpoint_of(j as u32);
            if j != i && !b.contains(&e) {
                b.push(e);
            }
        }
        sim.add_node(b);
    }
    sim
}

/// Runs until consistency reaches 1.0 (checked every `step`), or `limit`.
/// Returns the virtual time it took.
pub fn run_until_consistent(sim: &mut Sim, step: Duration, limit: Duration) -> Option<Duration> {
    let start = sim.now();
    while sim.now().saturating_since(start) < limit {
        sim.run_for(step);
        if sim.consistency() >= 1.0 {
            return Some(sim.now().saturating_since(start));
        }
    }
    None
}

/// Crashes a random `fraction` of the live nodes at once; returns how many.
pub fn crash_fraction(sim: &mut Sim, fraction: f64) -> usize {
    let alive: Vec<usize> = sim.alive().collect();
    let k = ((alive.len() as f64) * fraction).round() as usize;
    let mut victims = Vec::new();
    while victims.len() < k {
        let v = alive[sim.rng().below(alive.len() as u64) as usize];
        if !victims.contains(&v) {
            victims.push(v);
        }
    }
    for &v in &victims {
        sim.crash(v);
    }
    victims.len()
}

/// Adds one node (knowing one random member) and returns the virtual time
/// until it is linked to both of its true ring neighbours, secure
/// handshakes included.
pub fn join_one(sim: &mut Sim, limit: Duration) -> Option<Duration> {
    let boot = sim.random_bootstraps(1, None);
    let i = sim.add_node(boot);
    let start = sim.now();
    let step = Duration::from_millis(50);
    while sim.now().saturating_since(start) < limit {
        sim.run_for(step);
        let order = sim.ring_order();
        let k = order.iter().position(|&x| x == i)?;
        let n = order.len();
        let (l, r) = (
            sim.addr(order[(k + n - 1) % n]),
            sim.addr(order[(k + 1) % n]),
        );
        let ov = sim.node(i).overlay()?;
        if ov.left() == Some(l) && ov.right() == Some(r) {
            return Some(sim.now().saturating_since(start));
        }
    }
    None
}

/// Bytes and datagrams per live node per second sent over `window` of
/// steady state.
pub fn maintenance_rate(sim: &mut Sim, window: Duration) -> (f64, f64) {
    let sums = |sim: &Sim| -> (u64, u64) {
        sim.alive()
            .map(|i| (sim.tx_bytes(i), sim.tx_datagrams(i)))
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    };
    let before = sums(sim);
    sim.run_for(window);
    let after = sums(sim);
    let per = sim.alive().count().max(1) as f64 * window.as_secs_f64();
    (
        after.0.saturating_sub(before.0) as f64 / per,
        after.1.saturating_sub(before.1) as f64 / per,
    )
}

/// A one-line summary of a route test.
pub fn describe(r: &RouteStats) -> String {
    format!(
        "{}/{} routes delivered ({:.1}%), mean {:.2} hops, p99 {} hops, mean echo RTT {:.0} ms",
        r.delivered,
        r.sent,
        r.success() * 100.0,
        r.mean_hops,
        r.p99_hops,
        r.mean_rtt.as_secs_f64() * 1e3
    )
}

/// What a steady-churn run saw.
#[derive(Debug, Clone)]
pub struct ChurnReport {
    pub joins: usize,
    pub leaves: usize,
    pub crashes: usize,
    /// (seconds since the churn started, ring consistency) samples.
    pub samples: Vec<(f64, f64)>,
}

impl ChurnReport {
    pub fn mean(&self) -> f64 {
        self.samples.iter().map(|s| s.1).sum::<f64>() / self.samples.len().max(1) as f64
    }

    pub fn min(&self) -> f64 {
        self.samples.iter().map(|s| s.1).fold(1.0, f64::min)
    }
}

/// Steady churn for `duration`: every live node departs after an
/// exponentially distributed lifetime with mean `lifetime` (half of them
/// gracefully, half by crashing), and each departure is matched by a fresh
/// node joining through three random members, so departures and joins are
/// both Poisson processes and the size stays put. Consistency is sampled
/// every `sample_every`.
pub fn steady_churn(
    sim: &mut Sim,
    lifetime: Duration,
    duration: Duration,
    sample_every: Duration,
) -> ChurnReport {
    let start = sim.now();
    let mut report = ChurnReport {
        joins: 0,
        leaves: 0,
        crashes: 0,
        samples: Vec::new(),
    };
    let mut next_sample = start + sample_every;
    let end = start + duration;
    loop {
        // Memoryless lifetimes: the next departure among n live nodes comes
        // after an exponential time with mean lifetime / n.
        let n = sim.alive().count().max(1) as f64;
        let u = (sim.rng().next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let gap = Duration::from_secs_f64(-(1.0 - u).ln() * lifetime.as_secs_f64() / n);
        let at = sim.now() + gap;
        while next_sample <= at.min(end) {
            sim.run_until(next_sample);
            let t = next_sample.saturating_since(start).as_secs_f64();
            report.samples.push((t, sim.consistency()));
            next_sample = next_sample + sample_every;
        }
        if at > end {
            sim.run_until(end);
            return report;
        }
        sim.run_until(at);
        let alive: Vec<usize> = sim.alive().collect();
        let victim = alive[sim.rng().below(alive.len() as u64) as usize];
        if sim.rng().next_u64() & 1 == 0 {
            sim.leave(victim);
            report.leaves += 1;
        } else {
            sim.crash(victim);
            report.crashes += 1;
        }
        // Three bootstraps, as a deployment should list: with one, a
        // joiner whose only bootstrap crashes at once is left alone, and
        // later joiners that pick it form an island with it.
        let boot = sim.random_bootstraps(3, None);
        sim.add_node(boot);
        report.joins += 1;
    }
}

/// What the DHT scenario measured.
#[derive(Debug, Clone, Default)]
pub struct DhtReport {
    pub keys: usize,
    /// Puts (first registrations) that reached a quorum.
    pub stored: usize,
    /// Gets of every key before the crash: found / asked, mean hops and
    /// latency of the reply that completed each.
    pub before: GetStats,
    pub crashed: usize,
    /// Keys whose owner survived the crash.
    pub owners_alive: usize,
    /// Gets of those keys 30 s after the crash.
    pub after: GetStats,
    /// Records stored per live node (mean, max) at the end.
    pub per_node: (f64, usize),
}

#[derive(Debug, Clone, Default)]
pub struct GetStats {
    pub asked: usize,
    pub found: usize,
    pub mean_hops: f64,
    pub mean_latency: Duration,
}

impl GetStats {
    pub fn rate(&self) -> f64 {
        self.found as f64 / self.asked.max(1) as f64
    }
}

/// The DHT under churn: `keys` records, each registered (and renewed) by a
/// random live owner; every key read back from a random node; then a
/// `crash` fraction of the nodes crashes at once and, 30 s later, every key
/// whose owner lives is read again. A key is found when its owner's record
/// comes back (quorum reads, 5 of 8 replicas).
pub fn dht_churn(sim: &mut Sim, keys: usize, crash: f64) -> DhtReport {
    use crate::overlay::dht::client::Outcome;
    use crate::overlay::dht::key_of;
    let alive: Vec<usize> = sim.alive().collect();
    let mut owners = Vec::with_capacity(keys);
    let mut puts = std::collections::BTreeMap::new();
    for k in 0..keys {
        let owner = alive[sim.rng().below(alive.len() as u64) as usize];
        let key = key_of(format!("sim-key-{k}").as_bytes());
        let value = (k as u32).to_be_bytes();
        if let Some(Some(id)) = sim.with_overlay(owner, |ov, now| {
            ov.dht_register(now, key, &value, 300, false)
        }) {
            puts.insert((owner, id), k);
        }
        owners.push((owner, key));
        // Spread the registrations over a few seconds, as real starts are.
        if k % 200 == 199 {
            sim.run_for(Duration::from_millis(100));
        }
    }
    sim.run_for(Duration::from_secs(10));
    let mut report = DhtReport {
        keys,
        ..DhtReport::default()
    };
    for &(owner, _) in &owners {
        for e in sim.take_dht_results(owner) {
            if puts.remove(&(owner, e.id)).is_some() && e.outcome == Outcome::Stored {
                report.stored += 1;
            }
        }
    }
    let all: Vec<usize> = (0..keys).collect();
    report.before = get_all(sim, &owners, &all);
    report.crashed = crash_fraction(sim, crash);
    sim.run_for(Duration::from_secs(30));
    let living: Vec<usize> = (0..keys).filter(|&k| sim.is_alive(owners[k].0)).collect();
    report.owners_alive = living.len();
    report.after = get_all(sim, &owners, &living);
    let counts: Vec<usize> = sim
        .alive()
        .map(|i| sim.node(i).overlay().map_or(0, |o| o.dht().stored()))
        .collect();
    report.per_node = (
        counts.iter().sum::<usize>() as f64 / counts.len().max(1) as f64,
        counts.iter().copied().max().unwrap_or(0),
    );
    report
}

/// Gets keys `which` (of `owners`) from random live nodes, in batches.
fn get_all(sim: &mut Sim, owners: &[(usize, crate::overlay::Addr)], which: &[usize]) -> GetStats {
    use crate::overlay::dht::client::Outcome;
    let mut st = GetStats {
        asked: which.len(),
        ..GetStats::default()
    };
    let (mut hops, mut latency) = (0u64, Duration::ZERO);
    for batch in which.chunks(500) {
        let alive: Vec<usize> = sim.alive().collect();
        let mut pending = std::collections::BTreeMap::new();
        for &k in batch {
            let from = alive[sim.rng().below(alive.len() as u64) as usize];
            let key = owners[k].1;
            if let Some(id) = sim.with_overlay(from, |ov, now| ov.dht_get(now, key, false)) {
                pending.insert((from, id), k);
            }
        }
        sim.run_for(Duration::from_secs(6));
        let askers: std::collections::BTreeSet<usize> = pending.keys().map(|&(n, _)| n).collect();
        for n in askers {
            for e in sim.take_dht_results(n) {
                let Some(k) = pending.remove(&(n, e.id)) else {
                    continue;
                };
                let owner = sim.addr(owners[k].0);
                if let Outcome::Found(records) = &e.outcome {
                    if records.iter().any(|r| r.owner == owner) {
                        st.found += 1;
                        hops += u64::from(e.hops);
                        latency += e.latency;
                    }
                }
            }
        }
    }
    st.mean_hops = hops as f64 / st.found.max(1) as f64 + 1.0;
    st.mean_latency = latency / st.found.max(1) as u32;
    st
}

/// Shares of NAT types among simulated nodes (normalised when used).
#[derive(Debug, Clone, Copy)]
pub struct NatMix {
    pub public: f64,
    pub full_cone: f64,
    pub port_restricted: f64,
    pub symmetric: f64,
}

impl Default for NatMix {
    /// Roughly what NAT surveys report for home networks: most behind
    /// endpoint-independent NATs that filter, a tenth symmetric (mobile
    /// carriers, some enterprise firewalls), a fifth reachable.
    fn default() -> NatMix {
        NatMix {
            public: 0.2,
            full_cone: 0.1,
            port_restricted: 0.6,
            symmetric: 0.1,
        }
    }
}

/// What the NAT scenario saw.
#[derive(Debug, Clone, Default)]
pub struct NatReport {
    /// Nodes per NAT type: public, full cone, port-restricted, symmetric.
    pub kinds: [usize; 4],
    pub consistent_after: Option<Duration>,
    pub consistency: f64,
    /// Overlay links (counted once per pair) that are direct / tunnels.
    pub links_direct: usize,
    pub links_relayed: usize,
    /// On-demand pairs by the path they ended on.
    pub pairs: usize,
    pub pairs_direct: usize,
    pub pairs_relayed: usize,
    pub pairs_other: usize,
    /// Pairs the NAT types let punch, and how many of them ended direct.
    pub punchable: usize,
    pub punchable_direct: usize,
    /// Relayed pairs: mean of (relayed one-way latency / direct latency),
    /// with our relay choice and with the best relay among all nodes.
    pub stretch_mean: f64,
    pub stretch_best_mean: f64,
    /// The 90th percentile of the stretch with our relay choice.
    pub relay_p90: f64,
}

/// `n` NAT types drawn from `mix` (the first five public: somebody must
/// be a bootstrap).
pub fn nat_kinds(n: usize, seed: u64, mix: NatMix) -> Vec<super::nat::SimNat> {
    use super::nat::SimNat;
    let total = mix.public + mix.full_cone + mix.port_restricted + mix.symmetric;
    let mut pick = SeededRng::new(seed ^ 0x4b49_4e44);
    (0..n)
        .map(|i| {
            if i < 5 {
                return SimNat::Public;
            }
            let x = pick.below(1_000_000) as f64 / 1e6 * total;
            if x < mix.public {
                SimNat::Public
            } else if x < mix.public + mix.full_cone {
                SimNat::FullCone
            } else if x < mix.public + mix.full_cone + mix.port_restricted {
                SimNat::PortRestricted
            } else {
                SimNat::Symmetric
            }
        })
        .collect()
}

/// Nodes behind the given NATs in five regions of realistic latency, all
/// started at once, each knowing up to 5 public members that came before
/// it (the first node must be public).
pub fn nat_sim(kinds: &[super::nat::SimNat], seed: u64) -> Sim {
    nat_sim_with(kinds, seed, None)
}

/// [`nat_sim`], every node a member of `vpn` if given.
pub fn nat_sim_with(
    kinds: &[super::nat::SimNat],
    seed: u64,
    vpn: Option<crate::vpn::VpnConfig>,
) -> Sim {
    use super::nat::{Geography, NatModel};
    let mut sim = Sim::new(seed, NetConfig::default());
    sim.vpn = vpn;
    sim.nat = Some(NatModel::new(seed ^ 0x4e41_5400));
    sim.geo = Some(Geography::new());
    for (i, &kind) in kinds.iter().enumerate() {
        if let Some(m) = sim.nat.as_mut() {
            m.set_kind(i as u32, kind);
        }
        let boots = sim.random_bootstraps(5, None);
        sim.add_node(boots);
    }
    sim
}

/// The NAT scenario: `n` nodes behind a mix of NATs in five regions of
/// realistic latency start at once (each knowing 5 public members); then
/// `pairs` random pairs of members ask for on-demand links. Reports the
/// paths the overlay links and the pairs end on, and the latency cost of
/// the relays chosen.
pub fn nat_paths(n: usize, seed: u64, mix: NatMix, pairs: usize) -> NatReport {
    use super::nat::SimNat;
    let mut report = NatReport::default();
    let kinds = nat_kinds(n, seed, mix);
    for &kind in &kinds {
        report.kinds[kind as usize] += 1;
    }
    let mut sim = nat_sim(&kinds, seed);
    report.consistent_after =
        run_until_consistent(&mut sim, Duration::from_secs(1), Duration::from_secs(180));
    // Let tunnels for the last links settle.
    sim.run_for(Duration::from_secs(20));
    report.consistency = sim.consistency();
    if std::env::var_os("RINGVPN_SIM_VERBOSE").is_some() {
        for reason in [
            "cookie_sent",
            "rate_limited",
            "unknown_session",
            "handshake_replay",
        ] {
            let per: Vec<u64> = (0..sim.len()).map(|i| sim.node_drops(i, reason)).collect();
            let busiest = per.iter().enumerate().max_by_key(|(_, n)| **n);
            eprintln!(
                "{reason}: total {}, busiest {busiest:?}",
                per.iter().sum::<u64>()
            );
        }
        // Who misses which true neighbour, and what the link to it is.
        let order = sim.ring_order();
        let n = order.len();
        let kind = |i: usize| {
            sim.nat
                .as_ref()
                .map_or(SimNat::Public, |m| m.kind(i as u32))
        };
        for (k, &i) in order.iter().enumerate() {
            let right = order[(k + 1) % n];
            let linked = sim.node(i).overlay().is_some_and(|ov| {
                ov.table()
                    .iter()
                    .any(|c| c.key == sim.node(right).public_key())
            });
            if !linked {
                eprintln!(
                    "missing: {i} {} ({:?}) -> right {right} {} ({:?}): {:?} / back {:?}",
                    sim.addr(i),
                    kind(i),
                    sim.addr(right),
                    kind(right),
                    sim.node(i).peer_path(&sim.node(right).public_key()),
                    sim.node(right).peer_path(&sim.node(i).public_key()),
                );
            }
        }
    }
    let index: std::collections::BTreeMap<crate::crypto::NodeKey, usize> = (0..sim.len())
        .map(|i| (sim.node(i).public_key(), i))
        .collect();
    for i in sim.alive().collect::<Vec<_>>() {
        let Some(ov) = sim.node(i).overlay() else {
            continue;
        };
        for c in ov.table().iter() {
            if index.get(&c.key).is_some_and(|&j| j > i) {
                match sim.node(i).peer_path(&c.key) {
                    Some(("relayed", _)) => report.links_relayed += 1,
                    _ => report.links_direct += 1,
                }
            }
        }
    }
    let kind = |sim: &Sim, i: usize| {
        sim.nat
            .as_ref()
            .map_or(SimNat::Public, |m| m.kind(i as u32))
    };
    let mut chosen = Vec::new();
    while chosen.len() < pairs.min(n * (n - 1) / 2) {
        let a = sim.rng().below(n as u64) as usize;
        let b = sim.rng().below(n as u64) as usize;
        let linked = sim
            .node(a)
            .overlay()
            .is_some_and(|ov| ov.table().iter().any(|c| c.key == sim.node(b).public_key()));
        if a != b && !linked && !chosen.contains(&(a, b)) {
            chosen.push((a, b));
        }
    }
    for &(a, b) in &chosen {
        let key = sim.node(b).public_key();
        sim.with_node(a, |node, now| {
            node.link_on_demand(now, key);
        });
    }
    sim.run_for(Duration::from_secs(40));
    let mut stretches = Vec::new();
    let mut best = Vec::new();
    for &(a, b) in &chosen {
        report.pairs += 1;
        let punchable = SimNat::can_punch(kind(&sim, a), kind(&sim, b));
        report.punchable += usize::from(punchable);
        let key = sim.node(b).public_key();
        match sim.node(a).peer_path(&key) {
            Some(("direct", _)) => {
                report.pairs_direct += 1;
                report.punchable_direct += usize::from(punchable);
            }
            Some(("relayed", Some(r))) => {
                report.pairs_relayed += 1;
                let direct = sim.latency(a, b).as_secs_f64();
                if let Some(&r) = index.get(&r) {
                    let via = sim.latency(a, r) + sim.latency(r, b);
                    stretches.push(via.as_secs_f64() / direct);
                }
                // The best any node could do (a reference, not reachable
                // knowledge: it would take every pair's RTT).
                let ideal = (0..n)
                    .filter(|&x| x != a && x != b && kind(&sim, x) == SimNat::Public)
                    .map(|x| (sim.latency(a, x) + sim.latency(x, b)).as_secs_f64())
                    .fold(f64::INFINITY, f64::min);
                best.push(ideal / direct);
            }
            other => {
                report.pairs_other += 1;
                if std::env::var_os("RINGVPN_SIM_VERBOSE").is_some() {
                    eprintln!(
                        "pair {a} {} ({:?}) -> {b} ({:?}): {other:?}\n{}",
                        sim.addr(a),
                        kind(&sim, a),
                        kind(&sim, b),
                        sim.node(a)
                            .status(sim.now())
                            .peers
                            .iter()
                            .find(|p| p.key == key)
                            .map_or(String::new(), |p| format!("{p:?}"))
                    );
                }
            }
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    report.stretch_mean = mean(&stretches);
    report.stretch_best_mean = mean(&best);
    stretches.sort_by(f64::total_cmp);
    report.relay_p90 = stretches
        .get(stretches.len() * 9 / 10)
        .copied()
        .unwrap_or(0.0);
    report
}
