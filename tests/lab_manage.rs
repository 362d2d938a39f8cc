//! The managing system with real daemons (docs/MANAGE.md): eight members
//! in a ring; `ringvpn net stats` counts them, `net check` says 1.0; two
//! are killed and the next answer is partial (or six); after repair six
//! and 1.0 again.

mod common;

use ringvpn::lab::{Lab, NodeOptions};
use std::process::Command;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_ringvpn");

fn net(lab: &Lab, i: usize, task: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("net")
        .args(task)
        .args(["--json", "-s"])
        .arg(&lab.hosts[i].control)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "net {task:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn number(json: &str, key: &str) -> f64 {
    ringvpn::lab::json_number_after(json, "{", &format!("\"{key}\"")).unwrap_or(-1.0)
}

#[test]
fn net_stats_and_check_see_the_whole_ring_and_say_what_is_missing() {
    let Some(mut lab) = common::lab_or_skip("net_stats_and_check_see_the_whole_ring", 8) else {
        return;
    };
    let n = 8;
    for i in 0..n {
        let opts = NodeOptions {
            overlay: true,
            bootstrap: vec![if i == 0 { 1 } else { i - 1 }],
            ..NodeOptions::default()
        };
        lab.configure(i, &opts).unwrap();
    }
    for i in 0..n {
        lab.start(i).unwrap();
    }
    let all: Vec<usize> = (0..n).collect();
    lab.wait_ring(&all, Duration::from_secs(40)).unwrap();
    // Connection lists (what `check` reads) follow the ring by a few
    // seconds.
    std::thread::sleep(Duration::from_secs(6));
    let stats = net(&lab, 3, &["stats"]);
    let check = net(&lab, 5, &["check"]);
    eprintln!("stats: {stats}check: {check}");
    assert_eq!(number(&stats, "members"), 8.0, "{stats}");
    assert!(stats.contains("\"partial\":false"), "{stats}");
    assert_eq!(number(&check, "consistency"), 1.0, "{check}");

    lab.stop_hard(6);
    lab.stop_hard(7);
    let after = net(&lab, 0, &["stats"]);
    eprintln!("right after two were killed: {after}");
    let members = number(&after, "members");
    assert!(
        after.contains("\"partial\":true") || members == 6.0,
        "neither partial nor six: {after}"
    );
    let live: Vec<usize> = (0..6).collect();
    lab.wait_ring(&live, Duration::from_secs(60)).unwrap();
    std::thread::sleep(Duration::from_secs(6));
    let stats = net(&lab, 0, &["stats"]);
    let check = net(&lab, 2, &["check"]);
    eprintln!("after repair: {stats}{check}");
    assert_eq!(number(&stats, "members"), 6.0, "{stats}");
    assert!(stats.contains("\"partial\":false"), "{stats}");
    assert_eq!(number(&check, "consistency"), 1.0, "{check}");
    // The text form too.
    let out = Command::new(BIN)
        .args(["net", "stats", "-s"])
        .arg(&lab.hosts[0].control)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("members   6"));
}
