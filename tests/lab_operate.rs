//! Running it day to day, with real daemons: a reload (`ringvpn reload`
//! or SIGHUP) applies a firewall change under a running link, refuses a
//! broken config with its line while the daemon runs on, and names what
//! needs a restart; a second daemon on a live control socket is refused.

mod common;

use ringvpn::lab::{Lab, NodeOptions};
use std::process::Command;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_ringvpn");

fn reload(lab: &Lab, i: usize) -> std::process::Output {
    Command::new(BIN)
        .args(["reload", "-s"])
        .arg(&lab.hosts[i].control)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn reload_applies_a_change_refuses_a_broken_config_and_one_daemon_per_socket() {
    let Some(mut lab) = common::lab_or_skip("reload_applies_a_change", 2) else {
        return;
    };
    for i in 0..2 {
        let opts = NodeOptions {
            overlay: true,
            bootstrap: vec![1 - i],
            ..NodeOptions::default()
        };
        lab.configure(i, &opts).unwrap();
        lab.start(i).unwrap();
    }
    lab.wait_vpn_held(&[0, 1], Duration::from_secs(30)).unwrap();
    let vip0 = lab.hosts[0].vip;
    assert_eq!(lab.ping(1, vip0, 3, 56, false).unwrap().received, 3);
    // `ringvpn peers`: the one peer, by its virtual IP, direct.
    let out = Command::new(BIN)
        .args(["peers", "-s"])
        .arg(&lab.hosts[0].control)
        .output()
        .unwrap();
    let peers = text(&out.stdout);
    eprintln!("{peers}");
    let line = peers.lines().nth(1).unwrap_or_default();
    assert!(line.contains(&lab.hosts[1].vip.to_string()), "{peers}");
    assert!(line.contains(" up ") && line.contains("direct"), "{peers}");
    // `ringvpn ping` by virtual IP and by key: the path and the RTT.
    let key1 = lab.hosts[1].key.to_base64();
    for target in [lab.hosts[1].vip.to_string(), key1] {
        let out = Command::new(BIN)
            .args(["ping", "-n", "2", "-s"])
            .arg(&lab.hosts[0].control)
            .arg(&target)
            .output()
            .unwrap();
        let said = text(&out.stdout);
        eprintln!("ping {target}: {said}");
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(said.matches("pong from").count(), 2, "{said}");
        assert!(said.contains(" direct in "), "{said}");
    }
    let out = Command::new(BIN)
        .args(["ping", "-n", "1", "-s"])
        .arg(&lab.hosts[0].control)
        .arg("nobody")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no member known as nobody"));
    let conf = lab.hosts[0].config.clone();
    let original = std::fs::read_to_string(&conf).unwrap();

    // A firewall letting in only TCP 22: pings are refused now, the link
    // stays as it was.
    std::fs::write(
        &conf,
        format!("{original}\n[firewall]\ninbound = tcp 22 any\n"),
    )
    .unwrap();
    let out = reload(&lab, 0);
    let said = text(&out.stdout);
    eprintln!("reload: {said}");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(said.contains("applied: firewall (1 rules)"), "{said}");
    assert!(!said.contains("restart"), "{said}");
    assert_eq!(lab.ping(1, vip0, 3, 56, false).unwrap().received, 0);
    assert!(common::drops(&lab, 0, "firewall_denied") > 0.0);
    assert_eq!(lab.links_up(0), 1, "the link is untouched");

    // A broken config is refused with its line; the daemon runs on.
    std::fs::write(&conf, format!("{original}\n[node]\ntap = rv1\n")).unwrap();
    let out = reload(&lab, 0);
    let err = text(&out.stderr);
    eprintln!("broken: {err}");
    assert_eq!(out.status.code(), Some(2));
    assert!(err.contains("tap given twice (first on line"), "{err}");
    assert!(err.contains(&format!("{}:", conf.display())), "{err}");
    assert!(lab.exited(0).is_none(), "still running");
    assert!(lab.status_text(0).is_ok());

    // SIGHUP reloads (the firewall goes again) instead of killing.
    std::fs::write(&conf, &original).unwrap();
    let pid = lab.pid(0).unwrap().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    std::thread::sleep(Duration::from_millis(500));
    assert!(lab.exited(0).is_none(), "SIGHUP must not stop the daemon");
    assert_eq!(lab.ping(1, vip0, 3, 56, false).unwrap().received, 3);
    let log = std::fs::read_to_string(&lab.hosts[0].log).unwrap();
    assert!(
        log.contains("applied: firewall (0 rules)"),
        "{}",
        lab.log_tail(0)
    );

    // What cannot change under a running daemon is named, not applied.
    let moved = original.replace(":5140", ":5141");
    std::fs::write(&conf, &moved).unwrap();
    let said = text(&reload(&lab, 0).stdout);
    assert!(said.contains("needs a restart: listen"), "{said}");
    std::fs::write(&conf, &original).unwrap();

    // A second daemon with the same control socket stops before it
    // touches anything, naming the socket; the first still answers.
    let conf_s = conf.display().to_string();
    let out = lab
        .exec(0, &["timeout", "10", BIN, "run", "-c", &conf_s])
        .unwrap();
    let err = text(&out.stderr);
    eprintln!("second daemon: {err}");
    assert!(!out.status.success());
    assert!(
        err.contains("another ringvpn daemon answers there"),
        "{err}"
    );
    assert!(err.contains(&lab.hosts[0].control.display().to_string()));
    assert!(lab.status_text(0).is_ok());
    assert_eq!(lab.ping(1, vip0, 2, 56, false).unwrap().received, 2);

    // A daemon killed outright leaves its socket behind: the next start
    // finds nobody answering there and takes it over.
    lab.stop_hard(0);
    assert!(lab.hosts[0].control.exists());
    lab.start(0).unwrap();
    assert!(lab.status_text(0).is_ok());
}

/// `bootstrap = HOST:PORT`: the name is resolved by the daemon (here
/// through the namespace's own /etc/hosts) and the member joins.
#[test]
fn a_bootstrap_given_by_name_is_resolved_and_joined() {
    let Some(mut lab) = common::lab_or_skip("a_bootstrap_given_by_name", 2) else {
        return;
    };
    let first = NodeOptions {
        overlay: true,
        ..NodeOptions::default()
    };
    lab.configure(0, &first).unwrap();
    let by_name = NodeOptions {
        overlay: true,
        extra: vec!["bootstrap = first.ringvpn.test:5140".into()],
        ..NodeOptions::default()
    };
    lab.configure(1, &by_name).unwrap();
    lab.hosts_entries(1, &[("first.ringvpn.test", lab.hosts[0].underlay)])
        .unwrap();
    lab.start(0).unwrap();
    lab.start(1).unwrap();
    lab.wait_vpn_held(&[0, 1], Duration::from_secs(30)).unwrap();
    let vip0 = lab.hosts[0].vip;
    assert_eq!(lab.ping(1, vip0, 3, 56, false).unwrap().received, 3);
    let log = std::fs::read_to_string(&lab.hosts[1].log).unwrap();
    let said = format!(
        "bootstrap first.ringvpn.test:5140: {}:5140",
        lab.hosts[0].underlay
    );
    assert!(log.contains(&said), "{}", lab.log_tail(1));
}

/// The peer cache: a member restarted after its only bootstrap is gone
/// finds the ring again through the endpoints it linked to before.
#[test]
fn a_restart_with_every_bootstrap_gone_rejoins_through_the_peer_cache() {
    let Some(mut lab) = common::lab_or_skip("a_restart_with_every_bootstrap_gone", 3) else {
        return;
    };
    common::start_overlay(&mut lab, 3);
    lab.wait_ring(&[0, 1, 2], Duration::from_secs(30)).unwrap();
    let cache = lab.dir.join("h2-state");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let written = loop {
        let text = std::fs::read_dir(&cache)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| std::fs::read_to_string(e.ok()?.path()).ok())
            .unwrap_or_default();
        if text.contains(&lab.hosts[1].underlay.to_string()) {
            break text;
        }
        assert!(std::time::Instant::now() < deadline, "no cache: {text:?}");
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!("peer cache:\n{written}");
    lab.stop(2);
    lab.stop(0);
    lab.start(2).unwrap();
    let t = lab.wait_ring(&[1, 2], Duration::from_secs(40)).unwrap();
    eprintln!("rejoined through the cache in {t:?}");
    let log = std::fs::read_to_string(&lab.hosts[2].log).unwrap();
    assert!(
        log.contains("past peers as extra bootstraps"),
        "{}",
        lab.log_tail(2)
    );
}

/// The README's way: no `control` in the config. Two members in two
/// network namespaces of one host get a default control socket each
/// (`TAP@NETNS`), both start, and `ringvpn status -c` in each namespace
/// finds its own daemon; the sockets go when the daemons stop.
#[test]
fn default_control_sockets_differ_per_namespace() {
    let Some(lab) = common::lab_or_skip("default_control_sockets", 2) else {
        return;
    };
    let mut daemons = Vec::new();
    let mut confs = Vec::new();
    for i in 0..2 {
        let conf = lab.dir.join(format!("plain{i}.conf"));
        let join = match i {
            0 => "overlay = on".to_string(),
            _ => format!("bootstrap = {}:5140", lab.hosts[0].underlay),
        };
        std::fs::write(
            &conf,
            format!(
                "[node]\nkey = {}\nlisten = 0.0.0.0:5140\ntap = rv0\nstate-dir = {}\n{join}\n",
                lab.hosts[i].key_file.display(),
                lab.dir.display()
            ),
        )
        .unwrap();
        let c = conf.to_str().unwrap().to_string();
        daemons.push(lab.spawn(i, &[BIN, "run", "-c", &c]).unwrap());
        confs.push(c);
    }
    let start = std::time::Instant::now();
    for (i, conf) in confs.iter().enumerate() {
        loop {
            let out = lab.exec(i, &[BIN, "status", "-c", conf]).unwrap();
            let st = text(&out.stdout);
            if st.contains(&lab.hosts[i].key.to_base64()) {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "h{i}: {st}{}",
                text(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    for d in &daemons {
        unsafe { libc::kill(d.id() as i32, libc::SIGTERM) };
    }
    for mut d in daemons {
        let _ = d.wait();
    }
    let left: Vec<String> = std::fs::read_dir("/run/ringvpn")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("rv0@"))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}");
}
