#![no_main]
//! A VPN member's two untrusted inputs after its link is up: a frame from
//! its host (ARP/ND/DHCP answers, resolution, broadcast) and an overlay
//! control payload from a linked peer, sealed properly so that routed
//! data, broadcasts, DHT copies and routed messages are all reached. The
//! node must never panic, and hold no pool buffer beyond the bounded
//! queues of packets waiting for a lookup.
use libfuzzer_sys::fuzz_target;
use ringvpn::crypto::{Identity, Seed};
use ringvpn::node::{Node, NodeConfig};
use ringvpn::time::Instant;
use std::net::SocketAddr;

/// Both members are in certificate mode (one CA, network "fuzz"), so
/// revocation list parts and certificate checks are reached too.
fn node(me: u8, ep: SocketAddr, boot: Option<SocketAddr>) -> Node {
    use ringvpn::crypto::cert::{Cert, Prefix, Trust};
    let id = Identity::from_seed(&Seed([me; 32]));
    let ca = Identity::from_seed(&Seed([99; 32]));
    let valid = (1_000, 4_000_000_000);
    let ca_cert = Cert::new_ca(&ca, "fuzz", "CA", valid).unwrap();
    let ips = vec![Prefix::parse("100.64.0.0/10").unwrap()];
    let mine = Cert::new_node(&ca, id.public(), "fuzz", "m", ips, vec![], valid).unwrap();
    let cfg = NodeConfig {
        trust: Some(Trust {
            network: "fuzz".into(),
            cas: vec![ca_cert],
            revocations: vec![],
        }),
        cert: Some(mine.encode().unwrap()),
        wall_origin_us: 2_000_000_000_000_000,
        overlay: Some(ringvpn::overlay::OverlayConfig::default()),
        timers: ringvpn::node::Timers::overlay_links(),
        bootstrap: boot.into_iter().collect(),
        endpoints: vec![ep.into()],
        trust_any: true,
        pool_slots: 128,
        vpn: Some(ringvpn::vpn::VpnConfig::new("fuzz")),
        ..NodeConfig::default()
    };
    Node::new(id, cfg, Instant::ZERO)
}

fn pump(nodes: &mut [(SocketAddr, Node); 2], now: Instant) {
    for _ in 0..20 {
        let mut moved = false;
        for i in 0..2 {
            while let Some(t) = nodes[i].1.poll_transmit() {
                let bytes = nodes[i].1.pool().data(&t.buf).to_vec();
                nodes[i].1.pool_mut().free(t.buf);
                let from = nodes[i].0;
                let j = 1 - i;
                if t.dst.addr == nodes[j].0 {
                    if let Some(b) = nodes[j].1.pool_mut().alloc_with(&bytes) {
                        nodes[j].1.handle_datagram(now, from, b);
                    }
                }
                moved = true;
            }
            while let Some(f) = nodes[i].1.poll_frame() {
                nodes[i].1.pool_mut().free(f);
            }
        }
        if !moved {
            return;
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let (ea, eb): (SocketAddr, SocketAddr) = (
        "198.18.0.1:5140".parse().unwrap(),
        "198.18.0.2:5140".parse().unwrap(),
    );
    let mut nodes = [(ea, node(1, ea, None)), (eb, node(2, eb, Some(ea)))];
    let mut now = Instant::ZERO;
    for _ in 0..5 {
        now = now + std::time::Duration::from_millis(500);
        for (_, n) in nodes.iter_mut() {
            n.handle_timeout(now);
        }
        pump(&mut nodes, now);
    }
    let Some((&which, rest)) = input.split_first() else {
        return;
    };
    let b = &mut nodes[1].1;
    if which & 1 == 0 {
        // From the host.
        let Some(buf) = b.pool_mut().alloc_with(rest) else {
            return;
        };
        b.handle_frame(now, buf);
    } else {
        // From the linked peer, as an overlay control payload.
        nodes[0].1.inject_control_for_fuzzing(now, rest);
        pump(&mut nodes, now);
    }
    pump(&mut nodes, now);
    for (_, n) in nodes.iter_mut() {
        while let Some(f) = n.poll_frame() {
            n.pool_mut().free(f);
        }
        while let Some(t) = n.poll_transmit() {
            n.pool_mut().free(t.buf);
        }
    }
    // Parked packets (a lookup under way) are the only buffers held.
    for (_, n) in nodes.iter() {
        assert!(
            n.pool().in_use() <= 40,
            "pool buffers leaked: {}",
            n.pool().in_use()
        );
    }
});
