//! Eight real daemons, each knowing one bootstrap endpoint, form the ring
//! overlay; a routed ring ping reaches every node; killing two is repaired.

mod common;

use ringvpn::lab::NodeOptions;
use std::time::Duration;

#[test]
fn eight_daemons_form_a_ring_route_and_repair() {
    let Some(mut lab) = common::lab_or_skip("eight_daemons_form_a_ring_route_and_repair", 8) else {
        return;
    };
    // Host i knows only host i-1 (host 0 knows host 1): one bootstrap each.
    for i in 0..8 {
        let boot = if i == 0 { 1 } else { i - 1 };
        let opts = NodeOptions {
            overlay: true,
            bootstrap: vec![boot],
            ..NodeOptions::default()
        };
        lab.configure(i, &opts).unwrap();
    }
    for i in 0..8 {
        lab.start(i).unwrap();
    }
    let all: Vec<usize> = (0..8).collect();
    let t = lab.wait_ring(&all, Duration::from_secs(30)).unwrap();
    eprintln!("8 daemons consistent after {t:?}");
    let st = lab.status_text(0).unwrap();
    assert!(st.contains("ring ") && st.contains("near"), "{st}");
    // A routed ring ping from host 0 reaches every other node by address.
    for j in 1..8 {
        let addr = lab.ring_addr(j).to_hex();
        let (hops, ms) =
            ringvpn::control::ring_ping(&lab.hosts[0].control, None, &addr, Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("ring ping to host {j}: {e}"));
        assert!(hops >= 1 && ms > 0.0);
    }
    // Kill two nodes without warning: the other six repair the ring.
    lab.stop_hard(3);
    lab.stop_hard(5);
    let live: Vec<usize> = vec![0, 1, 2, 4, 6, 7];
    let t = lab.wait_ring(&live, Duration::from_secs(45)).unwrap();
    eprintln!("ring repaired {t:?} after killing 2 of 8");
    for &j in &live[1..] {
        let addr = lab.ring_addr(j).to_hex();
        ringvpn::control::ring_ping(&lab.hosts[0].control, None, &addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("ring ping to host {j} after repair: {e}"));
    }
}
