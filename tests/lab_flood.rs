//! Hardening with real daemons: a member in certificate mode takes a 60 s
//! flood of hostile datagrams at full speed (random bytes, replayed inits
//! from unknown keys, sealed messages, responses and cookie replies for
//! random sessions, cut-short inits) from 32 source addresses. Its memory
//! stays flat, every datagram is a counted drop, the ring keeps carrying
//! traffic, and a member that joins through it during the flood links.

mod common;

use common::{ca, configure_member, drops, write_cert};
use ringvpn::lab::PORT;
use std::net::Ipv4Addr;
use std::time::Duration;

const FLOOD_SECS: u64 = 60;
const SOURCES: u8 = 32;

#[test]
fn a_member_under_a_60_s_flood_keeps_its_memory_and_its_links() {
    let Some(mut lab) = common::lab_or_skip("flood", 4) else {
        return;
    };
    let (ca_id, ca_cert) = ca("lab CA", 30);
    let ca_file = lab.dir.join("ca.crt");
    write_cert(&ca_file, &ca_cert);
    // Hosts 0, 1 and 2 are members (2 joins during the flood, through 0);
    // host 3 runs no daemon: it floods host 0.
    for i in 0..3 {
        configure_member(&lab, i, &ca_id, &ca_file, &[]);
    }
    lab.start(0).unwrap();
    lab.start(1).unwrap();
    lab.wait_ring(&[0, 1], Duration::from_secs(30)).unwrap();
    lab.wait_vpn_held(&[0, 1], Duration::from_secs(30)).unwrap();
    let sources: Vec<String> = (0..SOURCES)
        .map(|k| Ipv4Addr::new(198, 18, 3, 1 + k).to_string())
        .collect();
    for s in &sources {
        lab.add_address(3, s.parse().unwrap()).unwrap();
    }
    std::thread::sleep(Duration::from_secs(2));
    let rss_before = lab.rss_kib(0).expect("host 0 runs");
    let target = format!("{}:{PORT}", lab.hosts[0].underlay);
    let secs = FLOOD_SECS.to_string();
    let mut args = vec![env!("CARGO_BIN_EXE_ringvpn-lab"), "flood", &target, &secs];
    args.extend(sources.iter().map(String::as_str));
    let flooder = lab.spawn_piped(3, &args).unwrap();
    // During the flood: the ring keeps carrying traffic, and a new member
    // joins through the flooded one.
    std::thread::sleep(Duration::from_secs(5));
    let during = lab.ping(1, lab.hosts[0].vip, 20, 56, false).unwrap();
    lab.start(2).unwrap();
    let joined = lab.wait_ring(&[0, 1, 2], Duration::from_secs(40));
    let held = lab.wait_vpn_held(&[2], Duration::from_secs(20));
    let ping_new = lab.ping(2, lab.hosts[0].vip, 3, 56, false).unwrap();
    let rss_mid = lab.rss_kib(0).unwrap_or(0);
    let out = flooder.wait_with_output().unwrap();
    let sent = String::from_utf8_lossy(&out.stdout).trim().to_string();
    std::thread::sleep(Duration::from_secs(1));
    let rss_after = lab.rss_kib(0).expect("host 0 survived the flood");
    let reasons = [
        "bad_length",
        "bad_version",
        "bad_type",
        "unknown_session",
        "auth_failure",
        "cert_missing",
        "cookie_sent",
        "rate_limited",
        "handshake_replay",
    ];
    let counted: Vec<(&str, f64)> = reasons.iter().map(|r| (*r, drops(&lab, 0, r))).collect();
    eprintln!("flood from {SOURCES} addresses for {FLOOD_SECS} s: {sent}");
    eprintln!("host 0 RSS: {rss_before} KiB before, {rss_mid} KiB during, {rss_after} KiB after");
    eprintln!("host 0 drops: {counted:?}");
    eprintln!(
        "during the flood: ring pings {}/{} (avg {:.2} ms); new member joined in {joined:?}, \
         address held in {held:?}, pings it {}/{}",
        during.received, during.sent, during.avg_ms, ping_new.received, ping_new.sent
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    joined.expect("a member joins through the flooded node");
    held.expect("the new member holds its address");
    assert!(ping_new.all_ok());
    assert!(during.received * 10 >= during.sent * 9, "{during:?}");
    // Flat: everything the node holds is preallocated or in bounded tables.
    assert!(
        rss_after <= rss_before + 2048,
        "RSS {rss_before} → {rss_after} KiB"
    );
    let total: f64 = counted.iter().map(|(_, n)| n).sum();
    assert!(total > 100_000.0, "{counted:?}");
    for r in ["bad_version", "unknown_session", "cookie_sent"] {
        assert!(drops(&lab, 0, r) > 0.0, "{r}: {counted:?}");
    }
    assert!(lab.exited(0).is_none(), "host 0 still runs");
}
