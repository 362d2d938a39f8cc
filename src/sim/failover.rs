//! Failover at scale: VPN pairs behind modelled NATs exchange a numbered
//! packet each way every 100 ms, and the scenario measures what the
//! traffic lost while its path was made, when a direct path went dark,
//! and when a relay crashed (issue 12's three lab scenarios, with 1,000
//! nodes instead of five).
//!
//! A step is lost when either direction's packet of that step never
//! arrives; a gap is the longest run of lost steps. Times are virtual, so
//! the figures are exact and repeat for a seed.

use super::nat::SimNat;
use super::scenario::{nat_kinds, nat_sim_with, run_until_consistent, NatMix};
use super::Sim;
use crate::crypto::NodeKey;
use crate::rand::Rng;
use std::net::Ipv4Addr;
use std::time::Duration;

/// One step of traffic.
const STEP: Duration = Duration::from_millis(100);
/// Steps a phase runs (20 s).
const PHASE_STEPS: usize = 200;
/// Relays crashed at once (a few percent of the public members: more is
/// an outage of the ring itself, not of a path).
const MAX_CRASHED: usize = 10;

/// What the scenario saw, per pair (each list sorted).
#[derive(Debug, Clone, Default)]
pub struct FailoverReport {
    pub nodes: usize,
    pub pairs: usize,
    pub consistent_after: Option<Duration>,
    /// From the first packet sent to the first that arrived (both ways).
    pub first_packet: Vec<Duration>,
    /// From the first packet sent until the pair's final path was in use
    /// (direct where the NATs let a hole be punched, else relayed).
    pub settle: Vec<Duration>,
    /// Pairs that never reached their final path in the setup phase.
    pub unsettled: usize,
    /// Steps lost while the path was made (after the first delivery).
    pub setup_lost: Vec<usize>,
    /// Longest gap after the direct path of a direct pair went dark.
    pub blackhole_gap: Vec<Duration>,
    /// Longest gap after the relay of a relayed pair crashed.
    pub relay_gap: Vec<Duration>,
}

/// A distribution as "p50 / p90 / max (n)".
pub fn spread(v: &[Duration]) -> String {
    if v.is_empty() {
        return "- (0)".into();
    }
    let at = |q: usize| v[(v.len() - 1) * q / 100].as_secs_f64();
    format!(
        "{:.1} / {:.1} / {:.1} s ({})",
        at(50),
        at(90),
        at(100),
        v.len()
    )
}

struct Pair {
    a: usize,
    b: usize,
    va: Ipv4Addr,
    vb: Ipv4Addr,
    punchable: bool,
    /// Per step: whether each direction's packet arrived.
    got: [Vec<bool>; 2],
}

/// The pair's path as `a` sees it ("direct", "relayed", …) and the relay.
fn path(sim: &Sim, a: usize, b: usize) -> (&'static str, Option<NodeKey>) {
    let kb = sim.node(b).public_key();
    sim.node(a).peer_path(&kb).unwrap_or(("none", None))
}

/// Sends step `k` of every pair, runs one step, and marks what arrived.
fn step(sim: &mut Sim, pairs: &mut [Pair], k: usize) {
    for (n, p) in pairs.iter().enumerate() {
        let f = sim.host_udp_frame(p.a, p.va, p.vb, format!("fo{n:05}ab{k:06}").as_bytes());
        sim.inject_frame(p.a, &f);
        let f = sim.host_udp_frame(p.b, p.vb, p.va, format!("fo{n:05}ba{k:06}").as_bytes());
        sim.inject_frame(p.b, &f);
    }
    sim.run_for(STEP);
    let mut seen = Vec::new();
    for p in pairs.iter() {
        for at in [p.a, p.b] {
            if !seen.contains(&at) {
                seen.push(at);
            }
        }
    }
    for at in seen {
        for f in sim.take_frames(at) {
            // The marker ends the frame (a MAC or address may hold "fo").
            let Some(i) = f
                .len()
                .checked_sub(15)
                .filter(|&i| f[i..].starts_with(b"fo"))
            else {
                continue;
            };
            let Some(text) = f
                .get(i + 2..i + 15)
                .and_then(|t| std::str::from_utf8(t).ok())
            else {
                continue;
            };
            let (n, dir, k) = (text.get(..5), text.get(5..7), text.get(7..13));
            let (Some(Ok(n)), Some(dir), Some(Ok(k))) =
                (n.map(str::parse::<usize>), dir, k.map(str::parse::<usize>))
            else {
                continue;
            };
            let d = usize::from(dir == "ba");
            if let Some(slot) = pairs.get_mut(n).and_then(|p| p.got[d].get_mut(k)) {
                *slot = true;
            }
        }
    }
}

/// The longest run of steps in `from..to` where either direction lost
/// its packet (the last few steps, still in flight, are not counted).
fn longest_gap(p: &Pair, from: usize, to: usize) -> Duration {
    let (mut best, mut run) = (0, 0);
    for k in from..to.saturating_sub(10) {
        if p.got[0][k] && p.got[1][k] {
            run = 0;
        } else {
            run += 1;
            best = best.max(run);
        }
    }
    STEP * best as u32
}

/// Runs the scenario: `n` nodes behind the default NAT mix, `pairs` random
/// pairs of VPN members with traffic; their direct paths black-holed,
/// then their relays crashed.
pub fn failover(n: usize, seed: u64, pairs: usize) -> FailoverReport {
    let kinds = nat_kinds(n, seed, NatMix::default());
    let mut sim = nat_sim_with(&kinds, seed, Some(crate::vpn::VpnConfig::new("sim")));
    sim.keep_frames = 64;
    let mut report = FailoverReport {
        nodes: n,
        consistent_after: run_until_consistent(
            &mut sim,
            Duration::from_secs(1),
            Duration::from_secs(180),
        ),
        ..FailoverReport::default()
    };
    sim.run_for(Duration::from_secs(20));
    let total = 3 * PHASE_STEPS;
    let mut chosen: Vec<Pair> = Vec::new();
    while chosen.len() < pairs.min(n / 4) {
        let a = sim.rng().below(n as u64) as usize;
        let b = sim.rng().below(n as u64) as usize;
        let busy = |x: usize| chosen.iter().any(|p| p.a == x || p.b == x);
        let (Some(va), Some(vb)) = (vip(&sim, a), vip(&sim, b)) else {
            continue;
        };
        if a == b || busy(a) || busy(b) {
            continue;
        }
        chosen.push(Pair {
            a,
            b,
            va,
            vb,
            punchable: SimNat::can_punch(kinds[a], kinds[b]),
            got: [vec![false; total], vec![false; total]],
        });
    }
    report.pairs = chosen.len();
    // Setup: traffic from the first step; when does each pair reach its
    // final path?
    let verbose = std::env::var_os("RINGVPN_SIM_VERBOSE").is_some();
    let mut settled: Vec<Option<usize>> = vec![None; chosen.len()];
    for k in 0..PHASE_STEPS {
        step(&mut sim, &mut chosen, k);
        for (i, p) in chosen.iter().enumerate() {
            let want = if p.punchable { "direct" } else { "relayed" };
            if settled[i].is_none() && path(&sim, p.a, p.b).0 == want {
                settled[i] = Some(k + 1);
            }
        }
    }
    for (i, p) in chosen.iter().enumerate() {
        let first = (0..PHASE_STEPS).find(|&k| p.got[0][k] && p.got[1][k]);
        if let Some(f) = first {
            report.first_packet.push(STEP * (f as u32 + 1));
            let lost = (f..PHASE_STEPS - 10)
                .filter(|&k| !(p.got[0][k] && p.got[1][k]))
                .count();
            report.setup_lost.push(lost);
        }
        if verbose {
            eprintln!(
                "setup pair {i}: first {first:?} settled {:?}\n{}",
                settled[i],
                describe(&sim, &kinds, p, 0)
            );
        }
        match settled[i] {
            Some(k) => report.settle.push(STEP * k as u32),
            None => report.unsettled += 1,
        }
    }
    // Direct paths go dark in the middle (both still reach the others).
    let direct: Vec<usize> = (0..chosen.len())
        .filter(|&i| path(&sim, chosen[i].a, chosen[i].b).0 == "direct")
        .collect();
    for &i in &direct {
        let (a, b) = (chosen[i].a as u32, chosen[i].b as u32);
        sim.blocked.insert((a.min(b), a.max(b)));
    }
    for k in PHASE_STEPS..2 * PHASE_STEPS {
        step(&mut sim, &mut chosen, k);
    }
    for &i in &direct {
        let gap = longest_gap(&chosen[i], PHASE_STEPS, 2 * PHASE_STEPS);
        if verbose {
            let d = describe(&sim, &kinds, &chosen[i], PHASE_STEPS);
            eprintln!("black-hole pair {i}: gap {gap:?}\n{d}");
        }
        report.blackhole_gap.push(gap);
    }
    sim.blocked.clear();
    // Relays crash: up to `MAX_CRASHED` of those the relayed pairs use
    // (never a measured pair's own member), all at once.
    let index: std::collections::BTreeMap<NodeKey, usize> = (0..sim.len())
        .map(|i| (sim.node(i).public_key(), i))
        .collect();
    let mut relayed = Vec::new();
    let mut crashed = Vec::new();
    for (i, p) in chosen.iter().enumerate() {
        if let ("relayed", Some(r)) = path(&sim, p.a, p.b) {
            let Some(&r) = index.get(&r) else {
                continue;
            };
            if chosen.iter().any(|q| q.a == r || q.b == r) {
                continue;
            }
            if !crashed.contains(&r) {
                if crashed.len() >= MAX_CRASHED {
                    continue;
                }
                crashed.push(r);
            }
            relayed.push(i);
        }
    }
    for &r in &crashed {
        sim.crash(r);
    }
    for k in 2 * PHASE_STEPS..total {
        step(&mut sim, &mut chosen, k);
    }
    for &i in &relayed {
        let gap = longest_gap(&chosen[i], 2 * PHASE_STEPS, total);
        if verbose {
            let d = describe(&sim, &kinds, &chosen[i], 2 * PHASE_STEPS);
            eprintln!("relay pair {i}: gap {gap:?}\n{d}");
        }
        report.relay_gap.push(gap);
    }
    for v in [
        &mut report.first_packet,
        &mut report.settle,
        &mut report.blackhole_gap,
        &mut report.relay_gap,
    ] {
        v.sort();
    }
    report.setup_lost.sort();
    report
}

fn vip(sim: &Sim, i: usize) -> Option<Ipv4Addr> {
    sim.node(i).vpn_status()?.address
}

/// A pair for RINGVPN_SIM_VERBOSE: its NATs, each side's path and drops,
/// and the phase from step `from` as one character per step ('.' both
/// ways, 'a' or 'b' that side's packet lost, 'X' both).
fn describe(sim: &Sim, kinds: &[SimNat], p: &Pair, from: usize) -> String {
    let steps: String = (from..from + PHASE_STEPS)
        .map(|k| match (p.got[0][k], p.got[1][k]) {
            (true, true) => '.',
            (false, true) => 'a',
            (true, false) => 'b',
            _ => 'X',
        })
        .collect();
    let side = |x: usize, y: usize| {
        let drops: Vec<String> = sim
            .node(x)
            .status(sim.now())
            .drops
            .iter()
            .filter(|d| d.1 > 0)
            .map(|d| format!("{} {}", d.0, d.1))
            .collect();
        format!(
            "  n{x} ({:?}): {}; drops: {}",
            kinds[x],
            sim.node(x).debug_peer(&sim.node(y).public_key()),
            drops.join(", ")
        )
    };
    format!("  steps: {steps}\n{}\n{}", side(p.a, p.b), side(p.b, p.a))
}
