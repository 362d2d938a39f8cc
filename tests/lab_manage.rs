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
            // The README's example for the metrics endpoint.
            extra: if i == 0 {
                vec!["metrics = 127.0.0.1:9474".into()]
            } else {
                vec![]
            },
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

    // Metrics: from the command, and over HTTP inside host 0's namespace.
    let out = Command::new(BIN)
        .args(["metrics", "-s"])
        .arg(&lab.hosts[1].control)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("# TYPE ringvpn_drops_total counter"),
        "{text}"
    );
    assert!(text.contains("ringvpn_drops_total{reason=\"bad_length\"}"));
    let get = "exec 3<>/dev/tcp/127.0.0.1/9474; printf 'GET /metrics HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n' >&3; cat <&3";
    let http = lab.exec(0, &["timeout", "5", "bash", "-c", get]).unwrap();
    let http = String::from_utf8_lossy(&http.stdout);
    assert!(http.starts_with("HTTP/1.1 200 OK"), "{http}");
    assert!(http.contains("ringvpn_peers{state=\"up\"}"), "{http}");
    let wrong = "exec 3<>/dev/tcp/127.0.0.1/9474; printf 'GET / HTTP/1.1\\r\\n\\r\\n' >&3; cat <&3";
    let http = lab.exec(0, &["timeout", "5", "bash", "-c", wrong]).unwrap();
    assert!(String::from_utf8_lossy(&http.stdout).starts_with("HTTP/1.1 404"));
}
