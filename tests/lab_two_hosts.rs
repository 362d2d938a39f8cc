//! The foundation's end-to-end checks, on real daemons in network namespaces.

mod common;

use ringvpn::lab::NodeOptions;
use std::time::{Duration, Instant};

const UP_TIMEOUT: Duration = Duration::from_secs(10);

#[test]
fn ping_both_ways_and_full_mtu_frames() {
    let Some(mut lab) = common::lab_or_skip("ping_both_ways_and_full_mtu_frames", 2) else {
        return;
    };
    lab.configure_full_mesh().unwrap();
    lab.start(0).unwrap();
    lab.start(1).unwrap();
    lab.wait_links_up(0, 1, UP_TIMEOUT).unwrap();
    lab.wait_links_up(1, 1, UP_TIMEOUT).unwrap();
    let (a, b) = (lab.hosts[0].vip, lab.hosts[1].vip);
    assert!(lab.ping(0, b, 3, 56, false).unwrap().all_ok(), "h0 -> h1");
    assert!(lab.ping(1, a, 3, 56, false).unwrap().all_ok(), "h1 -> h0");
    // 1372 bytes of ICMP payload = a 1400-byte IP packet, the full TAP MTU,
    // with Don't Fragment set: it must pass unfragmented.
    assert!(
        lab.ping(0, b, 3, 1372, true).unwrap().all_ok(),
        "MTU-sized h0 -> h1"
    );
    assert!(
        lab.ping(1, a, 3, 1372, true).unwrap().all_ok(),
        "MTU-sized h1 -> h0"
    );
    // One byte more does not fit the MTU and is refused locally, not lost.
    assert_eq!(lab.ping(0, b, 1, 1373, true).unwrap().received, 0);
    let st = lab.status_json(0).unwrap();
    assert!(st.contains("\"state\":\"up\""), "{st}");
    // The control socket is owner-only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&lab.hosts[0].control)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "control socket mode {mode:o}");
    assert!(st.contains("\"auth_failure\":0"), "{st}");
    // The daemon's own memory figures: its heap (counted), the pool's
    // slab, the resident set.
    let text = lab.status_text(0).unwrap();
    let memory = text
        .lines()
        .find(|l| l.starts_with("memory"))
        .unwrap_or_default();
    assert!(
        memory.contains("rss ") && memory.contains("heap ") && memory.contains("(peak "),
        "{text}"
    );
    assert!(
        st.contains("\"heap_bytes\":") && !st.contains("\"heap_bytes\":null"),
        "{st}"
    );
    eprintln!("{memory}");
}

#[test]
fn restart_reestablishes_the_link() {
    let Some(mut lab) = common::lab_or_skip("restart_reestablishes_the_link", 2) else {
        return;
    };
    lab.configure_full_mesh().unwrap();
    lab.start(0).unwrap();
    lab.start(1).unwrap();
    lab.wait_links_up(0, 1, UP_TIMEOUT).unwrap();
    let b = lab.hosts[1].vip;
    assert!(lab.ping(0, b, 2, 56, false).unwrap().all_ok());
    let old_pid = lab.pid(1);
    lab.stop(1);
    lab.start(1).unwrap();
    assert_ne!(lab.pid(1), old_pid);
    let t = Instant::now();
    lab.wait_links_up(1, 1, UP_TIMEOUT).unwrap();
    // h0 still holds the old session; the restarted node's new handshake
    // (with a newer timestamp) must replace it.
    let mut ok = false;
    while t.elapsed() < UP_TIMEOUT && !ok {
        ok = lab.ping(0, b, 1, 56, false).unwrap().all_ok();
    }
    assert!(ok, "no ping after restart:\n{}", lab.log_tail(0));
    eprintln!(
        "link re-established and pinging {:?} after restart",
        t.elapsed()
    );
}

#[test]
fn a_peer_with_an_unknown_key_is_refused() {
    let Some(mut lab) = common::lab_or_skip("a_peer_with_an_unknown_key_is_refused", 3) else {
        return;
    };
    // h0 and h1 know each other; h2 knows h0, but h0 does not know h2.
    let opts = |peers: Vec<usize>| NodeOptions {
        peers,
        ..NodeOptions::default()
    };
    lab.configure(0, &opts(vec![1])).unwrap();
    lab.configure(1, &opts(vec![0])).unwrap();
    lab.configure(2, &opts(vec![0])).unwrap();
    for i in 0..3 {
        lab.start(i).unwrap();
    }
    lab.wait_links_up(0, 1, UP_TIMEOUT).unwrap();
    let a = lab.hosts[0].vip;
    assert_eq!(lab.ping(2, a, 2, 56, false).unwrap().received, 0);
    assert_eq!(lab.links_up(2), 0);
    let st = lab.status_json(0).unwrap();
    assert!(
        !st.contains("\"unknown_peer\":0"),
        "h0 should count refused handshakes: {st}"
    );
    // The legitimate link is unaffected.
    assert!(lab.ping(1, a, 2, 56, false).unwrap().all_ok());
}

#[test]
fn links_use_aes_gcm_only_where_both_ends_offer_it() {
    let Some(mut lab) = common::lab_or_skip("links_use_aes_gcm_only_where_both_ends_offer_it", 2)
    else {
        return;
    };
    let configure = |lab: &ringvpn::lab::Lab, i: usize, cipher: &str| {
        lab.configure(
            i,
            &NodeOptions {
                peers: vec![1 - i],
                extra: vec![format!("cipher = {cipher}")],
                ..NodeOptions::default()
            },
        )
        .unwrap()
    };
    // `aes-256-gcm` offers AES whatever the CPU, so the test holds on any.
    configure(&lab, 0, "aes-256-gcm");
    configure(&lab, 1, "aes-256-gcm");
    lab.start(0).unwrap();
    lab.start(1).unwrap();
    lab.wait_links_up(0, 1, UP_TIMEOUT).unwrap();
    let b = lab.hosts[1].vip;
    assert!(lab.ping(0, b, 3, 1372, true).unwrap().all_ok());
    for i in [0, 1] {
        let st = lab.status_json(i).unwrap();
        assert!(st.contains("\"cipher\":\"aes-256-gcm\""), "h{i}: {st}");
    }
    assert!(lab.status_text(0).unwrap().contains(", aes-256-gcm"));
    // One end refuses AES: the new session is ChaCha20-Poly1305 on both.
    configure(&lab, 1, "chacha20-poly1305");
    lab.stop(1);
    lab.start(1).unwrap();
    lab.wait_links_up(1, 1, UP_TIMEOUT).unwrap();
    let t = Instant::now();
    let mut ok = false;
    while t.elapsed() < UP_TIMEOUT && !ok {
        ok = lab.ping(0, b, 1, 1372, true).unwrap().all_ok();
    }
    assert!(ok, "no ping after restart:\n{}", lab.log_tail(0));
    for i in [0, 1] {
        let st = lab.status_json(i).unwrap();
        assert!(
            st.contains("\"cipher\":\"chacha20-poly1305\""),
            "h{i}: {st}"
        );
        assert!(st.contains("\"auth_failure\":0"), "h{i}: {st}");
    }
}
