//! The managing system in the simulator (docs/MANAGE.md): map-reduce
//! tasks from one member over 1,000 real node cores on 100 ms links.
//! `stats` counts every member; `crawl` describes every member, far
//! faster than the sequential crawler; `check` equals the simulator's own
//! global-view crawl; with 10% crashed just before, the answer comes back
//! partial within the budget, naming what is missing, and complete again
//! after repair.

use ringvpn::manage::{SETTLE, STEP, TASK_BUDGET};
use ringvpn::sim::{scenario, NetConfig, Sim};
use ringvpn::wire::task::{Reduced, TaskKind};
use std::time::Duration;

const N: usize = 1000;

fn ring(seed: u64) -> Sim {
    let mut sim = scenario::mass_join(N, seed, 5, NetConfig::default());
    scenario::run_until_consistent(&mut sim, Duration::from_secs(1), Duration::from_secs(120))
        .expect("ring");
    // Connection lists (what `check` reads) trickle out a few per
    // heartbeat: every link has its peer's within about 25 s of the start;
    // and the links a mass join made beyond need are let go by about 35 s
    // (a link closed under a running task loses its subtree's answer).
    sim.run_for(Duration::from_secs(60));
    sim
}

fn run_task(sim: &mut Sim, from: usize, kind: TaskKind) -> (Reduced, Duration) {
    let id = sim.start_task(from, kind, b"").expect("an overlay node");
    let deadline = sim.now() + TASK_BUDGET + Duration::from_secs(1);
    while sim.task_result(from, id).is_none() && sim.now() < deadline {
        sim.run_for(Duration::from_millis(100));
    }
    sim.task_result(from, id)
        .unwrap_or_else(|| panic!("task {kind:?} did not finish within its budget"))
}

#[test]
fn stats_and_check_over_a_thousand_members_and_partial_after_a_crash() {
    let mut sim = ring(11);
    let (stats, took) = run_task(&mut sim, 0, TaskKind::Stats);
    eprintln!(
        "stats: {} members in {took:?} ({} arcs missing); nat {:?}",
        stats.get("members"),
        stats.missing_arcs(),
        stats
            .counters
            .iter()
            .filter(|(n, _)| n.starts_with("nat:"))
            .collect::<Vec<_>>()
    );
    assert_eq!(stats.get("members"), N as u64, "every member counted once");
    assert_eq!(stats.missing_arcs(), 0);
    // O(log N) round trips on 100 ms links, not N.
    assert!(took < Duration::from_secs(5), "took {took:?}");

    // `crawl`: every member's description, routed to the origin while
    // the tree counts; all of them, in about the time of `stats`.
    let id = sim.start_task(0, TaskKind::Crawl, b"").unwrap();
    // Descriptions are spread over N / 200 s after a count (docs/MANAGE.md).
    let until = sim.now() + TASK_BUDGET + SETTLE + Duration::from_secs(30);
    while sim.task_outcome(0, id).is_none() && sim.now() < until {
        sim.run_for(Duration::from_millis(100));
    }
    let (crawl, crawl_took) = sim.task_outcome(0, id).cloned().expect("crawl done");
    let view = ringvpn::ringmap::RingView::new(&crawl);
    eprintln!(
        "map-reduce crawl: {} described of {} in {crawl_took:?}; {} links; consistency {:.4}",
        crawl.described.len(),
        crawl.reduced.get("members"),
        view.chords.len(),
        view.consistency()
    );
    assert_eq!(crawl.described.len(), N, "every member described once");
    assert!(!crawl.partial());
    let mut order: Vec<_> = crawl.described.iter().map(|d| d.addr()).collect();
    order.sort();
    let mut truth_order: Vec<_> = (0..N).map(|i| sim.addr(i)).collect();
    truth_order.sort();
    assert_eq!(order, truth_order, "the crawl's members are the ring's");

    // The notes' sequential crawler for comparison: right neighbour after
    // right neighbour, one routed request each. The first 100 members
    // (the rest cost the same each: scaled).
    const CRAWLED: usize = 100;
    let id = sim.start_walk(0, CRAWLED).unwrap();
    let until = sim.now() + Duration::from_secs(4 * CRAWLED as u64);
    while sim.task_outcome(0, id).is_none() && sim.now() < until {
        sim.run_for(Duration::from_millis(100));
    }
    let (walk, walked) = sim.task_outcome(0, id).cloned().expect("walk done");
    assert_eq!(walk.described.len(), CRAWLED);
    // It follows the ring: each member is the right neighbour of the one
    // before.
    let at = |a| truth_order.iter().position(|&x| x == a).unwrap();
    for w in walk.described.windows(2) {
        assert_eq!(at(w[1].addr()), (at(w[0].addr()) + 1) % N);
    }
    let per_member = walked / CRAWLED as u32;
    let sequential = per_member * N as u32;
    eprintln!(
        "sequential crawl: {per_member:?} per member, {sequential:?} for {N}; map-reduce crawl: {crawl_took:?} ({:.0}x faster), stats {took:?}",
        sequential.as_secs_f64() / crawl_took.as_secs_f64()
    );
    assert!(sequential > 10 * crawl_took);

    let truth = sim.crawl_consistency();
    let (check, took) = run_task(&mut sim, 17, TaskKind::Check);
    let value = (check.get("left1_hits") + check.get("left2_hits")) as f64
        / (2 * check.get("members")) as f64;
    eprintln!("check: {value:.4} in {took:?}; the simulator's crawl: {truth:.4}");
    assert_eq!(check.get("members"), N as u64);
    assert!(
        (value - truth).abs() < 1e-9,
        "check {value} against {truth}"
    );

    // 10% crash at once, just before the task: the answer is partial,
    // within the budget, and says what is missing.
    let crashed: Vec<usize> = (0..N).filter(|i| i % 10 == 3).collect();
    for &i in &crashed {
        sim.crash(i);
    }
    sim.run_for(Duration::from_millis(200));
    let (partial, took) = run_task(&mut sim, 0, TaskKind::Stats);
    eprintln!(
        "after a 10% crash: {} members in {took:?}, {} arcs missing",
        partial.get("members"),
        partial.missing_arcs()
    );
    assert!(took <= TASK_BUDGET, "took {took:?}");
    assert!(partial.get("members") <= (N - crashed.len()) as u64);
    assert!(
        partial.missing_arcs() > 0 || partial.get("members") == (N - crashed.len()) as u64,
        "a short count must say what is missing"
    );
    // After repair: complete again.
    scenario::run_until_consistent(&mut sim, Duration::from_secs(1), Duration::from_secs(60))
        .expect("repaired");
    let (whole, took) = run_task(&mut sim, 0, TaskKind::Stats);
    eprintln!("after repair: {} members in {took:?}", whole.get("members"));
    assert_eq!(whole.get("members"), (N - crashed.len()) as u64);
    assert_eq!(whole.missing_arcs(), 0);
}

/// Certificate mode: 60 members, member 0 in group `admin`, member 1 not.
fn certified(seed: u64) -> Sim {
    let mut sim = Sim::new(seed, NetConfig::default());
    let mut groups = std::collections::HashMap::new();
    groups.insert(0u32, vec!["admin".to_string()]);
    groups.insert(1u32, vec!["staff".to_string()]);
    sim.certs = Some(ringvpn::sim::SimCerts {
        ca_seed: [77; 32],
        network: "sim".into(),
        prefixes: Default::default(),
        routes: Default::default(),
        groups,
    });
    for _ in 0..60 {
        let boots = sim.random_bootstraps(3, None);
        sim.add_node(boots);
    }
    scenario::run_until_consistent(&mut sim, Duration::from_secs(1), Duration::from_secs(60))
        .expect("ring");
    sim.run_for(Duration::from_secs(40));
    sim
}

fn refused(sim: &Sim) -> u64 {
    (0..sim.len())
        .map(|i| sim.node_drops(i, "task_refused"))
        .sum()
}

#[test]
fn only_admins_start_tasks_and_a_flood_is_rate_limited() {
    let mut sim = certified(5);
    let (ok, _) = run_task(&mut sim, 0, TaskKind::Stats);
    assert_eq!(ok.get("members"), 60, "the admin sees everyone");
    assert_eq!(refused(&sim), 0);
    // A member outside the admin group: every other member refuses.
    let (theirs, took) = run_task(&mut sim, 1, TaskKind::Stats);
    eprintln!(
        "non-admin: {} members answered, {} arcs missing, {} refusals",
        theirs.get("members"),
        theirs.missing_arcs(),
        refused(&sim)
    );
    assert_eq!(theirs.get("members"), 1, "only its own map");
    assert!(theirs.get("refused") > 0 && theirs.missing_arcs() > 0);
    assert!(
        took < Duration::from_secs(2),
        "refusals are said at once: {took:?}"
    );
    assert!(refused(&sim) > 0);
    // The sequential crawler's requests are checked the same way: the
    // non-admin's first step is refused, so it describes only itself.
    let walk = |sim: &mut Sim, from: usize| {
        let id = sim.start_walk(from, 5).unwrap();
        sim.run_for(STEP * 2 + Duration::from_secs(2));
        sim.task_outcome(from, id).cloned().expect("walk done").0
    };
    let theirs = walk(&mut sim, 1);
    assert_eq!(theirs.described.len(), 1);
    assert!(theirs.partial(), "it says where it stopped");
    let ours = walk(&mut sim, 0);
    assert_eq!((ours.described.len(), ours.partial()), (5, false));
    // The admin floods: past its burst, members refuse, counted.
    let before = refused(&sim);
    let ids: Vec<u64> = (0..20)
        .map(|_| sim.start_task(0, TaskKind::Check, b"").unwrap())
        .collect();
    sim.run_for(ringvpn::manage::TASK_BUDGET + Duration::from_secs(1));
    let complete = ids
        .iter()
        .filter(|&&id| {
            sim.task_result(0, id)
                .is_some_and(|(r, _)| r.get("members") == 60)
        })
        .count();
    eprintln!(
        "a flood of 20 tasks: {complete} complete, {} refusals",
        refused(&sim) - before
    );
    let members: Vec<u64> = ids
        .iter()
        .map(|&id| sim.task_result(0, id).map_or(0, |(r, _)| r.get("members")))
        .collect();
    eprintln!("members per flood task: {members:?}");
    assert!(complete <= 6, "the burst is 5 per origin");
    assert!(refused(&sim) - before > 0);
}
