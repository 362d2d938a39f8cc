//! UDP GSO/GRO end to end on real daemons: trains carry a TCP transfer,
//! the daemon allocates nothing per packet on the offload paths, and
//! every fallback (offloads off, a kernel without GSO or GRO, simulated
//! by the setting, on either end) still carries the same transfer.

mod common;

use ringvpn::lab::{json_number_after, Lab, NodeOptions};
use std::time::Duration;

const LAB_BIN: &str = env!("CARGO_BIN_EXE_ringvpn-lab");

const UP_TIMEOUT: Duration = Duration::from_secs(10);

fn two_hosts(name: &str, offload: [&str; 2]) -> Option<Lab> {
    let mut lab = common::lab_or_skip(name, 2)?;
    for (i, o) in offload.iter().enumerate() {
        lab.configure(
            i,
            &NodeOptions {
                peers: vec![1 - i],
                extra: vec![format!("offload = {o}")],
                ..NodeOptions::default()
            },
        )
        .unwrap();
    }
    lab.start(0).unwrap();
    lab.start(1).unwrap();
    lab.wait_links_up(0, 1, UP_TIMEOUT).unwrap();
    lab.wait_links_up(1, 1, UP_TIMEOUT).unwrap();
    Some(lab)
}

fn number(st: &str, key: &str) -> f64 {
    json_number_after(st, "{", key).unwrap_or_else(|| panic!("no {key} in {st}"))
}

/// The `offloads` string of host `i`'s status.
fn offloads(lab: &Lab, i: usize) -> String {
    lab.offloads(i).unwrap()
}

#[test]
fn trains_carry_a_transfer_and_allocate_nothing_per_packet() {
    let Some(lab) = two_hosts(
        "trains_carry_a_transfer_and_allocate_nothing_per_packet",
        ["auto", "auto"],
    ) else {
        return;
    };
    // Warm up: pool depth, socket buffers, the peer's queues.
    lab.iperf3(0, 1, 1, false).unwrap();
    let before: Vec<String> = (0..2).map(|i| lab.status_json(i).unwrap()).collect();
    let bits = lab.iperf3(0, 1, 2, false).unwrap();
    let after: Vec<String> = (0..2).map(|i| lab.status_json(i).unwrap()).collect();
    eprintln!("iperf3 h0 -> h1 with UDP GSO/GRO: {:.0} Mbit/s", bits / 1e6);
    assert!(bits > 50e6, "{bits} bit/s");
    for i in 0..2 {
        let packets = number(&after[i], "\"tx_packets\"") - number(&before[i], "\"tx_packets\"")
            + number(&after[i], "\"rx_packets\"")
            - number(&before[i], "\"rx_packets\"");
        let allocs =
            number(&after[i], "\"heap_allocations\"") - number(&before[i], "\"heap_allocations\"");
        eprintln!("h{i}: {packets} packets, {allocs} allocations (status requests included)");
        assert!(packets > 10_000.0, "h{i}: {packets} packets");
        // Two status requests' rendering and a few timers allocate; one
        // allocation per packet anywhere in the daemon would be 1,000×
        // this bound.
        assert!(
            allocs < packets / 1000.0 + 2_000.0,
            "h{i}: {allocs} allocations"
        );
    }
    // The sender's datagrams left in trains, the receiver took trains.
    let (tx, rx) = (offloads(&lab, 0), offloads(&lab, 1));
    eprintln!("h0: {tx}\nh1: {rx}");
    assert!(
        tx.starts_with("udp gso on (") && tx.contains(" trains, "),
        "{tx}"
    );
    assert!(rx.contains("udp gro on ("), "{rx}");
}

#[test]
fn every_offload_fallback_carries_the_same_transfer() {
    // h1 as a kernel without GSO (it receives trains, sends datagrams one
    // by one); then both off; then a sender with GSO to a receiver
    // without GRO (its kernel cuts the trains).
    for (offload, tx_state) in [
        (["udp-gro", "udp-gro"], "udp gso off (offload setting)"),
        (
            ["off", "off"],
            "udp gso off (offload setting), udp gro off (offload setting)",
        ),
        (["auto", "udp-gso"], "udp gso on ("),
    ] {
        let name = "every_offload_fallback_carries_the_same_transfer";
        let Some(lab) = two_hosts(name, offload) else {
            return;
        };
        let (a, b) = (lab.hosts[0].vip, lab.hosts[1].vip);
        assert!(
            lab.ping(0, b, 3, 1372, true).unwrap().all_ok(),
            "{offload:?}"
        );
        assert!(
            lab.ping(1, a, 3, 1372, true).unwrap().all_ok(),
            "{offload:?}"
        );
        let up = lab.iperf3(0, 1, 1, false).unwrap();
        let down = lab.iperf3(0, 1, 1, true).unwrap();
        eprintln!(
            "offload {offload:?}: {:.0} / {:.0} Mbit/s",
            up / 1e6,
            down / 1e6
        );
        assert!(up > 50e6 && down > 50e6, "{offload:?}: {up} / {down}");
        let state = offloads(&lab, 0);
        assert!(state.starts_with(tx_state), "{offload:?}: {state}");
        if offload[1] == "udp-gso" {
            assert!(offloads(&lab, 1).contains("udp gro off (offload setting), tap tso off"));
        }
        for i in 0..2 {
            let st = lab.status_json(i).unwrap();
            assert!(st.contains("\"auth_failure\":0"), "{offload:?} h{i}: {st}");
            assert!(st.contains("\"bad_length\":0"), "{offload:?} h{i}: {st}");
        }
    }
}

#[test]
fn trains_above_the_route_mtu_fall_back_to_fragments() {
    let name = "trains_above_the_route_mtu_fall_back_to_fragments";
    let Some(lab) = two_hosts(name, ["auto", "auto"]) else {
        return;
    };
    // Underlay MTUs below full-size datagrams (1,400 B frames + 32 B of
    // header and tag + 28 B of UDP/IPv4): the kernel refuses their trains
    // (EINVAL); alone, they go fragmented.
    for i in 0..2 {
        let out = lab
            .exec(i, &["ip", "link", "set", "dev", "eth0", "mtu", "1400"])
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    let bits = lab.iperf3(0, 1, 1, false).unwrap();
    eprintln!(
        "through a 1,400-byte underlay MTU: {:.0} Mbit/s",
        bits / 1e6
    );
    assert!(bits > 50e6, "{bits}");
    let (a, b) = (lab.hosts[0].vip, lab.hosts[1].vip);
    assert!(lab.ping(0, b, 3, 1372, true).unwrap().all_ok());
    assert!(lab.ping(1, a, 3, 1372, true).unwrap().all_ok());
    let state = offloads(&lab, 0);
    eprintln!("h0: {state}");
    assert!(state.starts_with("udp gso on"), "{state}");
    assert!(state.contains("go alone: the route's MTU"), "{state}");
}

/// A TCP transfer both ways over the VPN; returns (up, down) bit/s.
fn transfer_both_ways(lab: &Lab, what: &str) -> (f64, f64) {
    let (a, b) = (lab.hosts[0].vip, lab.hosts[1].vip);
    assert!(lab.ping(0, b, 3, 1372, true).unwrap().all_ok(), "{what}");
    assert!(lab.ping(1, a, 3, 1372, true).unwrap().all_ok(), "{what}");
    let up = lab.iperf3(0, 1, 1, false).unwrap();
    let down = lab.iperf3(0, 1, 1, true).unwrap();
    eprintln!("{what}: {:.0} / {:.0} Mbit/s", up / 1e6, down / 1e6);
    assert!(up > 50e6 && down > 50e6, "{what}: {up} / {down}");
    for i in 0..2 {
        let st = lab.status_json(i).unwrap();
        for counter in ["auth_failure", "bad_length", "bad_frame", "pool_empty"] {
            assert!(
                st.contains(&format!("\"{counter}\":0")),
                "{what} h{i}: {counter}: {st}"
            );
        }
    }
    (up, down)
}

#[test]
fn tap_super_frames_are_cut_and_runs_joined() {
    let name = "tap_super_frames_are_cut_and_runs_joined";
    let Some(lab) = two_hosts(name, ["auto", "auto"]) else {
        return;
    };
    transfer_both_ways(&lab, "TAP offloads on both ends");
    // Both directions: each end cut the kernel's super-frames and wrote
    // the peer's segments back as runs.
    for i in 0..2 {
        let state = offloads(&lab, i);
        eprintln!("h{i}: {state}");
        assert!(state.contains("super-frames, "), "h{i}: {state}");
        assert!(state.contains("tap gro on ("), "h{i}: {state}");
        assert!(state.contains(" runs, "), "h{i}: {state}");
    }
    // UDP with GSO, as a QUIC stack sends it: with USO the kernel hands
    // the TAP UDP super-frames; every datagram must arrive whole.
    let uso = offloads(&lab, 0).contains("tap tso/uso on");
    let to = format!("{}:7000", lab.hosts[1].vip);
    let rx = lab
        .spawn_piped(1, &[LAB_BIN, "udp-count", "7000", "1200", "4"])
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let before = offloads(&lab, 0);
    let tx = lab
        .exec(0, &[LAB_BIN, "udp-train", &to, "1200", "20", "50"])
        .unwrap();
    assert!(
        tx.status.success(),
        "{}",
        String::from_utf8_lossy(&tx.stderr)
    );
    let out = rx.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("UDP GSO through the VPN (USO {uso}): {text}");
    assert_eq!(text.trim(), "intact 1000 damaged 0");
    if uso {
        assert_ne!(offloads(&lab, 0), before, "UDP super-frames were cut");
    }
}

#[test]
fn tap_offloads_fall_back_on_either_end() {
    // One end without TAP offloads (a kernel or emulator refusing
    // IFF_VNET_HDR, simulated by the setting): segments cut on one side
    // are written one by one on the other, and plain frames are joined
    // there; then TSO without GRO and GRO without TSO.
    for (offload, h0, h1) in [
        (
            ["auto", "udp-gso udp-gro"],
            "tap gro on (",
            "tap tso off (offload setting), tap gro off (offload setting)",
        ),
        (
            ["udp-gso udp-gro tap-tso", "udp-gso udp-gro tap-gro"],
            "tap gro off (offload setting)",
            "tap tso off (offload setting), tap gro on (",
        ),
    ] {
        let name = "tap_offloads_fall_back_on_either_end";
        let Some(lab) = two_hosts(name, offload) else {
            return;
        };
        transfer_both_ways(&lab, &format!("{offload:?}"));
        let (s0, s1) = (offloads(&lab, 0), offloads(&lab, 1));
        eprintln!("h0: {s0}\nh1: {s1}");
        assert!(s0.contains(h0), "{offload:?}: {s0}");
        assert!(s1.contains(h1), "{offload:?}: {s1}");
    }
}
