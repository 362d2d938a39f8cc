//! The sub-ring scenario: groups over a public ring behind NATs form
//! their own rings, broadcast only to their members, reach members behind
//! symmetric NATs, and ride out churn in the public ring.

use super::super::Sim;
use crate::rand::{Rng, SeededRng};
use std::time::Duration;

/// The sub-ring scenario's knobs.
#[derive(Debug, Clone)]
pub struct GroupsConfig {
    /// Members of the public ring, behind `mix`'s NATs.
    pub public: usize,
    pub groups: usize,
    /// Group sizes, uniform in `min..=max`.
    pub min: usize,
    pub max: usize,
    pub seed: u64,
    pub mix: crate::sim::scenario::NatMix,
    /// Churn: every 10 s this fraction of the public members that are in
    /// no group crash, and those crashed 10 s before come back.
    pub churn: f64,
    pub churn_time: Duration,
}

/// One group's outcome.
#[derive(Debug, Clone, Default)]
pub struct GroupOutcome {
    pub size: usize,
    /// Members behind symmetric NATs.
    pub symmetric: usize,
    pub consistent_after: Option<Duration>,
    /// Sub-ring links (once per pair) straight over UDP / over the public
    /// ring, at the end.
    pub links_direct: usize,
    pub links_carried: usize,
    /// A broadcast from one member: members other than the sender that
    /// got it, and nodes of other groups that did (must be 0).
    pub broadcast_reached: usize,
    pub broadcast_leaked: usize,
    /// Pairs of members both behind symmetric NATs that were tried, and
    /// those whose VPN packet arrived.
    pub symmetric_pairs: usize,
    pub symmetric_reached: usize,
    pub final_consistency: f64,
}

/// What the sub-ring scenario saw.
#[derive(Debug, Clone, Default)]
pub struct GroupsReport {
    pub kinds: [usize; 4],
    pub public_consistent_after: Option<Duration>,
    pub groups: Vec<GroupOutcome>,
    /// During churn, every 10 s: (time since churn began, lowest and mean
    /// group consistency, public ring consistency).
    pub churn: Vec<(Duration, f64, f64, f64)>,
    pub crashed: usize,
}

/// Runs it: the public ring forms; the groups' members (drawn at random,
/// a host may be in several) all start their networks at once; each
/// group is then checked — a consistent sub-ring, a broadcast that
/// reaches exactly its members, VPN packets between members behind
/// symmetric NATs — and the public ring churns under them.
pub fn groups(cfg: &GroupsConfig) -> GroupsReport {
    use crate::sim::scenario::{nat_kinds, nat_sim, run_until_consistent};
    let mut report = GroupsReport::default();
    let kinds = nat_kinds(cfg.public, cfg.seed, cfg.mix);
    for &k in &kinds {
        report.kinds[k as usize] += 1;
    }
    let mut sim = nat_sim(&kinds, cfg.seed);
    sim.keep_frames = 64;
    report.public_consistent_after =
        run_until_consistent(&mut sim, Duration::from_secs(1), Duration::from_secs(240));
    let mut members: Vec<Vec<(usize, usize)>> = Vec::new();
    let mut pick = SeededRng::new(cfg.seed ^ 0x0067_726f_7570);
    for g in 0..cfg.groups {
        let size = cfg.min + pick.below((cfg.max - cfg.min + 1) as u64) as usize;
        let group = super::SimGroup {
            name: format!("group{g}"),
            ca_seed: [g as u8 + 1; 32],
            vpn: Some(crate::vpn::VpnConfig::new(&format!("group{g}"))),
        };
        let mut hosts: Vec<usize> = Vec::new();
        while hosts.len() < size.min(cfg.public) {
            let h = pick.below(cfg.public as u64) as usize;
            if !hosts.contains(&h) {
                hosts.push(h);
            }
        }
        members.push(
            hosts
                .iter()
                .map(|&h| (h, sim.join_group(h, &group)))
                .collect(),
        );
    }
    let start = sim.now();
    let mut outcomes: Vec<GroupOutcome> = members
        .iter()
        .map(|m| GroupOutcome {
            size: m.len(),
            symmetric: m
                .iter()
                .filter(|&&(h, _)| !sim.is_public(h) && is_symmetric(&sim, h))
                .count(),
            ..GroupOutcome::default()
        })
        .collect();
    while sim.now().saturating_since(start) < Duration::from_secs(300) {
        sim.run_for(Duration::from_secs(1));
        let mut all = true;
        for (g, m) in members.iter().enumerate() {
            if outcomes[g].consistent_after.is_none() {
                if sim.group_consistency(m) >= 1.0 {
                    outcomes[g].consistent_after = Some(sim.now().saturating_since(start));
                } else {
                    all = false;
                }
            }
        }
        if all {
            break;
        }
    }
    // Addresses claimed, tunnels settled.
    sim.run_for(Duration::from_secs(20));
    if std::env::var_os("RINGVPN_SIM_VERBOSE").is_some() {
        for (g, m) in members.iter().enumerate() {
            if outcomes[g].consistent_after.is_none() {
                eprintln!("group {g}: {}", describe_group(&sim, m));
            }
        }
    }
    broadcasts(&mut sim, &members, &mut outcomes);
    symmetric_pairs(&mut sim, &members, &mut outcomes);
    churn(&mut sim, cfg, &members, &mut report);
    for (g, m) in members.iter().enumerate() {
        outcomes[g].final_consistency = sim.group_consistency(m);
        let (direct, carried) = links(&sim, m);
        outcomes[g].links_direct = direct;
        outcomes[g].links_carried = carried;
    }
    report.groups = outcomes;
    report
}

/// A group's members for RINGVPN_SIM_VERBOSE: NAT, public links,
/// sub-ring links (carried), the group's view, and drops.
fn describe_group(sim: &Sim, m: &[(usize, usize)]) -> String {
    let mut s = String::new();
    let mut order: Vec<(crate::overlay::Addr, usize, usize)> = m
        .iter()
        .map(|&(h, k)| {
            (
                sim.net_node(h, k)
                    .overlay()
                    .map_or(crate::overlay::Addr(0), |o| o.addr()),
                h,
                k,
            )
        })
        .collect();
    order.sort();
    for (addr, h, k) in order {
        let node = sim.net_node(h, k);
        let ov = node.overlay().expect("an overlay");
        let carried = ov
            .table()
            .iter()
            .filter(|c| c.endpoint.is_carried())
            .count();
        let drops: Vec<String> = crate::node::DropReason::ALL
            .iter()
            .filter(|r| node.stats().drops(**r) > 0)
            .map(|r| format!("{}={}", r.name(), node.stats().drops(*r)))
            .collect();
        let nets = sim.networks(h).expect("networks");
        s += &format!(
            "\n  {addr} host {h} {:?}: public links {}, sub-ring links {} ({carried} carried), left {:?} right {:?}, known {}, {:?}, drops {}, public uncarried {} no_route {}",
            sim.nat.as_ref().map(|n| n.kind(h as u32)),
            sim.node(h).overlay().map_or(0, |o| o.table().len()),
            ov.table().len(),
            ov.left(),
            ov.right(),
            nets.get(k).group.known(),
            nets.stats,
            drops.join(" "),
            sim.node_drops(h, "uncarried"),
            sim.node_drops(h, "no_route"),
        );
    }
    s
}

fn is_symmetric(sim: &Sim, h: usize) -> bool {
    sim.nat
        .as_ref()
        .is_some_and(|m| m.kind(h as u32) == crate::sim::nat::SimNat::Symmetric)
}

pub(super) fn vip(sim: &Sim, (h, k): (usize, usize)) -> Option<std::net::Ipv4Addr> {
    sim.net_node(h, k).vpn_status()?.address
}

/// Has member `(h, k)`'s host send a UDP datagram to `dst` on its TAP.
pub(super) fn send(sim: &mut Sim, (h, k): (usize, usize), dst: std::net::Ipv4Addr, body: &[u8]) {
    let Some(src) = vip(sim, (h, k)) else {
        return;
    };
    let f = crate::sim::udp_frame(&sim.net_node(h, k).public_key(), src, dst, body);
    sim.with_net_node(h, k, |node, now| {
        if let Some(buf) = node.pool_mut().alloc_with(&f) {
            node.handle_frame(now, buf);
        }
    });
}

pub(super) fn contains(frames: &[Vec<u8>], tag: &[u8]) -> bool {
    frames
        .iter()
        .any(|f| f.windows(tag.len()).any(|w| w == tag))
}

/// Each group's first member broadcasts; who got it?
fn broadcasts(sim: &mut Sim, members: &[Vec<(usize, usize)>], out: &mut [GroupOutcome]) {
    for m in members {
        for &(h, k) in m {
            sim.take_net_frames(h, k);
        }
    }
    for (g, m) in members.iter().enumerate() {
        let tag = format!("broadcast-of-group-{g:03}");
        send(sim, m[0], std::net::Ipv4Addr::BROADCAST, tag.as_bytes());
    }
    sim.run_for(Duration::from_secs(5));
    let frames: Vec<Vec<(usize, Vec<Vec<u8>>)>> = members
        .iter()
        .enumerate()
        .map(|(g, m)| {
            m.iter()
                .map(|&(h, k)| (g, sim.take_net_frames(h, k)))
                .collect()
        })
        .collect();
    let verbose = std::env::var_os("RINGVPN_SIM_VERBOSE").is_some();
    for (g, o) in out.iter_mut().enumerate() {
        let tag = format!("broadcast-of-group-{g:03}");
        for (mg, taps) in frames.iter().enumerate() {
            for (j, (_, f)) in taps.iter().enumerate() {
                let got = contains(f, tag.as_bytes());
                if mg == g && j > 0 && !got && verbose {
                    eprintln!(
                        "group {g}: member {j} missed the broadcast:{}",
                        describe_group(sim, &members[g][j..=j])
                    );
                }
                if mg == g && j > 0 {
                    o.broadcast_reached += usize::from(got);
                } else if mg != g {
                    o.broadcast_leaked += usize::from(got);
                }
            }
        }
    }
}

/// Up to three pairs per group of members both behind symmetric NATs
/// send each other a VPN packet (three tries, 2 s apart).
fn symmetric_pairs(sim: &mut Sim, members: &[Vec<(usize, usize)>], out: &mut [GroupOutcome]) {
    let mut pairs = Vec::new();
    for (g, m) in members.iter().enumerate() {
        let sym: Vec<(usize, usize)> = m
            .iter()
            .copied()
            .filter(|&(h, _)| is_symmetric(sim, h))
            .collect();
        for (a, b) in sym.iter().zip(sym.iter().skip(1)).take(3) {
            if let Some(vb) = vip(sim, *b) {
                pairs.push((g, *a, *b, vb));
            }
        }
    }
    for &(_, _, b, _) in &pairs {
        sim.take_net_frames(b.0, b.1);
    }
    for _ in 0..3 {
        for (n, &(_, a, _, vb)) in pairs.iter().enumerate() {
            send(sim, a, vb, format!("symmetric-pair-{n:05}").as_bytes());
        }
        sim.run_for(Duration::from_secs(2));
    }
    sim.run_for(Duration::from_secs(3));
    for (n, &(g, _, b, _)) in pairs.iter().enumerate() {
        out[g].symmetric_pairs += 1;
        let f = sim.take_net_frames(b.0, b.1);
        out[g].symmetric_reached +=
            usize::from(contains(&f, format!("symmetric-pair-{n:05}").as_bytes()));
    }
}

/// Public members in no group crash and come back, 10 s at a time.
fn churn(
    sim: &mut Sim,
    cfg: &GroupsConfig,
    members: &[Vec<(usize, usize)>],
    report: &mut GroupsReport,
) {
    let in_group = |h: usize| members.iter().any(|m| m.iter().any(|&(x, _)| x == h));
    let bystanders: Vec<usize> = (5..cfg.public).filter(|&h| !in_group(h)).collect();
    let start = sim.now();
    let mut down: Vec<usize> = Vec::new();
    let step = Duration::from_secs(10);
    while sim.now().saturating_since(start) < cfg.churn_time {
        for h in down.drain(..) {
            let boots = sim.random_bootstraps(5, Some(h));
            sim.restart(h, boots);
        }
        let k = (bystanders.len() as f64 * cfg.churn).round() as usize;
        while down.len() < k.min(bystanders.len()) {
            let h = bystanders[sim.rng().below(bystanders.len() as u64) as usize];
            if !down.contains(&h) {
                sim.crash(h);
                down.push(h);
            }
        }
        report.crashed += down.len();
        sim.run_for(step);
        let per: Vec<f64> = members.iter().map(|m| sim.group_consistency(m)).collect();
        let min = per.iter().copied().fold(1.0, f64::min);
        let mean = per.iter().sum::<f64>() / per.len().max(1) as f64;
        report.churn.push((
            sim.now().saturating_since(start),
            min,
            mean,
            sim.consistency(),
        ));
    }
    for h in down {
        let boots = sim.random_bootstraps(5, Some(h));
        sim.restart(h, boots);
    }
    sim.run_for(Duration::from_secs(30));
}

/// A group's sub-ring links, once per pair: over UDP, or carried.
fn links(sim: &Sim, m: &[(usize, usize)]) -> (usize, usize) {
    let (mut direct, mut carried) = (0, 0);
    for &(h, k) in m {
        let Some(ov) = sim.net_node(h, k).overlay() else {
            continue;
        };
        for c in ov.table().iter() {
            if c.addr < ov.addr() {
                continue;
            }
            if c.endpoint.is_carried() {
                carried += 1;
            } else {
                direct += 1;
            }
        }
    }
    (direct, carried)
}

impl GroupsReport {
    /// The report as the lab tool prints it: a line per group, then the
    /// consistency during churn.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let [p, f, r, y] = self.kinds;
        s += &format!(
            "public ring: {p} public, {f} full cone, {r} port-restricted, {y} symmetric NAT"
        );
        match self.public_consistent_after {
            Some(t) => s += &format!("; 100% consistent after {} s\n", t.as_secs()),
            None => s += "; not consistent\n",
        }
        s += "group | members | symmetric | consistent after | links direct / carried | broadcast reached / leaked | symmetric pairs reached | consistency at end\n";
        s += "---:|---:|---:|---:|---|---|---|---:\n";
        for (g, o) in self.groups.iter().enumerate() {
            let after = o
                .consistent_after
                .map_or("never".into(), |t| format!("{} s", t.as_secs()));
            s += &format!(
                "{g} | {} | {} | {after} | {} / {} | {} of {} / {} | {} of {} | {:.3}\n",
                o.size,
                o.symmetric,
                o.links_direct,
                o.links_carried,
                o.broadcast_reached,
                o.size - 1,
                o.broadcast_leaked,
                o.symmetric_reached,
                o.symmetric_pairs,
                o.final_consistency
            );
        }
        if !self.churn.is_empty() {
            s += &format!(
                "churn ({} crashes of public members in no group):\n",
                self.crashed
            );
            s += "time | lowest group consistency | mean | public ring\n";
            for (t, min, mean, public) in &self.churn {
                s += &format!("{} s | {min:.3} | {mean:.3} | {public:.3}\n", t.as_secs());
            }
        }
        s
    }
}
