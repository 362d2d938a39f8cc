//! The firewall with real daemons (docs/ROUTES.md): certificate mode,
//! host 0 lets in ICMP and TCP port 5201 from group `ops` only; host 1 is
//! in `ops`, host 2 in `guest`. Host 2 is refused (counted), host 1 gets
//! through, and host 0's own connections to host 2 get their answers
//! (stateful), with the rules' hit counters in status.

mod common;

use common::{ca, configure_signed, write_cert, Member};
use ringvpn::crypto::Identity;
use ringvpn::lab::Lab;
use std::path::Path;
use std::time::Duration;

/// Host `i` in certificate mode, in `group`.
fn member(lab: &Lab, ca: &Identity, ca_file: &Path, i: usize, group: &str, extra: &[&str]) {
    let m = Member {
        groups: &[group],
        extra,
        ..Member::default()
    };
    configure_signed(lab, ca, ca_file, i, m);
}

/// Whether a TCP connection from host `i` to `ip:port` is accepted
/// within 3 s.
fn connects(lab: &Lab, i: usize, ip: std::net::Ipv4Addr, port: u16) -> bool {
    let script = format!("exec 3<>/dev/tcp/{ip}/{port}");
    lab.exec(i, &["timeout", "3", "bash", "-c", &script])
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn the_firewall_lets_in_by_group_and_answers_our_own_flows() {
    let Some(mut lab) =
        common::lab_or_skip("the_firewall_lets_in_by_group_and_answers_our_own_flows", 3)
    else {
        return;
    };
    let (ca_id, ca_cert) = ca("lab-ca", 1);
    let ca_file = lab.dir.join("ca.crt");
    write_cert(&ca_file, &ca_cert);
    member(
        &lab,
        &ca_id,
        &ca_file,
        0,
        "ops",
        &[
            "[firewall]",
            "inbound = icmp any group:ops",
            "inbound = tcp 5201 group:ops",
        ],
    );
    member(&lab, &ca_id, &ca_file, 1, "ops", &[]);
    member(&lab, &ca_id, &ca_file, 2, "guest", &[]);
    for i in 0..3 {
        lab.start(i).unwrap();
    }
    lab.wait_vpn_held(&[0, 1, 2], Duration::from_secs(40))
        .unwrap();
    let (h0, h2) = (lab.hosts[0].vip, lab.hosts[2].vip);
    let mut servers = Vec::new();
    for i in [0, 2] {
        let vip = lab.hosts[i].vip.to_string();
        servers.push(lab.spawn(i, &["iperf3", "-s", "-B", &vip]).unwrap());
    }
    std::thread::sleep(Duration::from_millis(300));

    let ops = lab.ping(1, h0, 3, 56, false).unwrap();
    let guest = lab.ping(2, h0, 3, 56, false).unwrap();
    let ops_tcp = connects(&lab, 1, h0, 5201);
    let guest_tcp = connects(&lab, 2, h0, 5201);
    let other_port = connects(&lab, 1, h0, 5202);
    // Host 0's own flows: its pings and connections to host 2 are answered.
    let out = lab.ping(0, h2, 3, 56, false).unwrap();
    let out_tcp = connects(&lab, 0, h2, 5201);
    let status = lab.status_text(0).unwrap_or_default();
    for mut s in servers {
        let _ = s.kill();
        let _ = s.wait();
    }
    assert!(ops.all_ok(), "ops ping: {ops:?}\n{status}");
    assert_eq!(guest.received, 0, "guest ping let in\n{status}");
    assert!(ops_tcp, "ops TCP 5201 refused\n{status}");
    assert!(!guest_tcp, "guest TCP 5201 let in\n{status}");
    assert!(!other_port, "a port no rule names let in\n{status}");
    assert!(out.all_ok(), "answers to our own pings: {out:?}\n{status}");
    assert!(out_tcp, "answers to our own connection\n{status}");
    let denied = common::drops(&lab, 0, "firewall_denied");
    assert!(denied >= 3.0, "denied packets counted: {denied}\n{status}");
    assert!(status.contains("inbound  icmp any group:ops"), "{status}");
    eprintln!(
        "{}",
        status
            .lines()
            .skip_while(|l| !l.starts_with("firewall"))
            .take(3)
            .collect::<Vec<_>>()
            .join("\n")
    );
}
