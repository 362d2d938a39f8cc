//! The managing system with real daemons (docs/MANAGE.md): eight
//! certificate-mode members in a ring; `ringvpn net stats` counts them,
//! `net check` says 1.0, `net crawl` (both ways) describes all eight and
//! `net map --svg` draws them (rendered with rsvg-convert); a member
//! outside the admin group is refused; two are killed and the next answer
//! is partial (or six); after repair six and 1.0 again.

mod common;

use common::Member;
use ringvpn::lab::Lab;
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

/// Renders `svg` to PNG with rsvg-convert (librsvg2-bin; CI installs
/// it): a picture that does not render is a failure.
fn render(svg: &std::path::Path) {
    let png = svg.with_extension("png");
    match Command::new("rsvg-convert")
        .arg("-o")
        .arg(&png)
        .arg(svg)
        .output()
    {
        Ok(out) => {
            assert!(
                out.status.success(),
                "rsvg-convert: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let bytes = std::fs::read(&png).unwrap();
            assert!(
                bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
                "{} bytes",
                bytes.len()
            );
            eprintln!("rendered {} ({} bytes)", png.display(), bytes.len());
        }
        Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("not rendered (rsvg-convert: {e}; apt-get install librsvg2-bin)")
        }
        Err(e) => panic!("rsvg-convert: {e}"),
    }
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
    let (ca, ca_cert) = common::ca("lab CA", 1);
    let ca_file = lab.dir.join("ca.crt");
    common::write_cert(&ca_file, &ca_cert);
    for i in 0..n {
        let m = Member {
            // Host 1 is a member but not an admin.
            groups: if i == 1 { &["staff"] } else { &["admin"] },
            // The README's example for the metrics endpoint.
            extra: if i == 0 {
                &["metrics = 127.0.0.1:9474"]
            } else {
                &[]
            },
            ..Member::default()
        };
        common::configure_signed(&lab, &ca, &ca_file, i, m);
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

    // Every member described, by map-reduce and by the sequential crawler.
    let crawl = net(&lab, 4, &["crawl"]);
    let walk = net(&lab, 2, &["crawl", "--sequential"]);
    eprintln!("crawl: {crawl}sequential: {walk}");
    for c in [&crawl, &walk] {
        assert_eq!(number(c, "described"), 8.0, "{c}");
        assert!(c.contains("\"partial\":false"), "{c}");
        assert_eq!(number(c, "consistency"), 1.0, "{c}");
        for i in 0..n {
            assert!(c.contains(&format!("\"name\":\"h{i}\"")), "h{i} in {c}");
            assert!(c.contains(&format!("\"ipv4\":\"{}\"", lab.hosts[i].vip)));
        }
    }
    // The picture: written, and rendered by a real SVG renderer.
    let svg = lab.dir.join("ring.svg");
    let out = Command::new(BIN)
        .args(["net", "map", "--svg"])
        .arg(&svg)
        .arg("-s")
        .arg(&lab.hosts[0].control)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let picture = std::fs::read_to_string(&svg).unwrap();
    assert_eq!(
        picture.matches("<circle").count(),
        8 + 2,
        "8 members, ring, legend"
    );
    assert!(picture.contains(">h5<"), "names as labels");
    render(&svg);

    // A member outside the admin group asks: everyone else refuses.
    let theirs = net(&lab, 1, &["stats"]);
    eprintln!("non-admin: {theirs}");
    assert!(theirs.contains("\"partial\":true"), "{theirs}");
    assert_eq!(
        number(&theirs, "members"),
        1.0,
        "only its own map: {theirs}"
    );

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
