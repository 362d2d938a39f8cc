//! The README's own configuration, `listen = 0.0.0.0:5140`, with real
//! daemons: a member then advertises every interface address, and none of
//! them may ever be one inside the VPN (issue 21: a relayed pair punched
//! "directly" to the other's virtual address, through its own tunnel, and
//! lost all its traffic). And addresses that change under a running
//! member reach its peers: the new one is a candidate, the old one is gone.

mod common;

use ringvpn::lab::matrix::{self, CellOptions};
use ringvpn::lab::nat::NatType;
use ringvpn::lab::{LabAddress, NodeOptions, PORT};
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ringvpn");

#[test]
fn listen_any_relayed_and_tcp_pairs_lose_nothing() {
    if let Some(why) = ringvpn::lab::nat::unavailable() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("cannot run under CI: {why}");
        }
        eprintln!("SKIPPED listen_any_relayed_and_tcp_pairs_lose_nothing: {why}");
        return;
    }
    let opts = CellOptions {
        iperf_secs: 0,
        listen_any: true,
        ..CellOptions::default()
    };
    let mut done = Vec::new();
    for (a, b) in [
        (NatType::Symmetric, NatType::Symmetric),
        (NatType::Open, NatType::UdpBlock),
    ] {
        done.push(matrix::run_cell(Path::new(BIN), a, b, &opts).expect("cell"));
    }
    let table = matrix::render(&done);
    eprintln!("{table}");
    for c in &done {
        assert!(c.in_vpn.is_empty(), "endpoints inside the VPN:\n{table}");
        assert_eq!(c.trace.lost(), 0, "lost pings:\n{table}");
        assert!(c.ok(), "{}\n{table}", c.why);
    }
}

/// Host `i`'s candidates for host `j`, from `status --json`.
fn candidates(lab: &ringvpn::lab::Lab, i: usize, j: usize) -> Vec<String> {
    let st = lab.status_json(i).unwrap_or_default();
    let key = format!("\"key\":\"{}\"", lab.hosts[j].key.to_base64());
    let Some(at) = st.find(&key) else {
        return Vec::new();
    };
    let obj = &st[at..];
    let Some(c) = obj.find("\"candidates\":[") else {
        return Vec::new();
    };
    let list = &obj[c + 14..];
    list[..list.find(']').unwrap_or(0)]
        .split(',')
        .map(|s| s.trim_matches('"').to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

#[test]
fn a_new_interface_address_reaches_peers_and_the_old_one_is_withdrawn() {
    let Some(mut lab) = common::lab_or_skip("interface_address_change", 3) else {
        return;
    };
    for i in 0..3 {
        let o = NodeOptions {
            overlay: true,
            bootstrap: if i == 0 { vec![] } else { vec![0] },
            address: LabAddress::Static,
            listen_any: true,
            ..NodeOptions::default()
        };
        lab.configure(i, &o).unwrap();
        lab.start(i).unwrap();
    }
    let all = [0, 1, 2];
    lab.wait_ring(&all, Duration::from_secs(30)).unwrap();
    lab.wait_vpn_held(&all, Duration::from_secs(30)).unwrap();
    let (m, p) = (2, 0);
    let old = format!("{}:{PORT}", lab.hosts[m].underlay);
    let new_ip = Ipv4Addr::new(198, 18, 0, 50);
    let new = format!("{new_ip}:{PORT}");
    // A second address on the member's interface: advertised to the peer.
    // (Linux removes an interface's secondary addresses with its primary
    // unless told to promote them, as a DHCP client's change would.)
    lab.sysctl(m, "net.ipv4.conf.eth0.promote_secondaries", "1")
        .unwrap();
    lab.add_address(m, new_ip).unwrap();
    let added = wait_for(Duration::from_secs(10), || {
        candidates(&lab, p, m).contains(&new)
    });
    eprintln!(
        "added {new}: peer's candidates after {added:?}: {:?}",
        candidates(&lab, p, m)
    );
    assert!(
        added.is_some(),
        "{}",
        lab.status_text(p).unwrap_or_default()
    );
    // The old address goes: withdrawn from the peer's candidates, and
    // traffic carries on from the new one.
    let ns = lab.hosts[m].ns.clone();
    let del = std::process::Command::new("ip")
        .args([
            "-n",
            &ns,
            "addr",
            "del",
            &format!("{}/16", lab.hosts[m].underlay),
            "dev",
            "eth0",
        ])
        .status()
        .unwrap();
    assert!(del.success());
    let withdrawn = wait_for(Duration::from_secs(10), || {
        let c = candidates(&lab, p, m);
        c.contains(&new) && !c.contains(&old)
    });
    eprintln!(
        "removed {old}: peer's candidates after {withdrawn:?}: {:?}",
        candidates(&lab, p, m)
    );
    assert!(
        withdrawn.is_some(),
        "{}",
        lab.status_text(p).unwrap_or_default()
    );
    let ping = lab.ping(p, lab.hosts[m].vip, 5, 56, false).unwrap();
    assert!(ping.all_ok(), "{ping:?}");
    let st = lab.status_json(p).unwrap();
    assert!(
        matrix::endpoints_inside(&st, &matrix::lab_vpn_prefixes()).is_empty(),
        "{st}"
    );
    lab.stop(m);
}
