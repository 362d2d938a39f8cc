//! Certificate mode: a node links only to peers whose certificate its CA
//! signed, for its network, in its validity window and not revoked; each
//! refusal is a counted drop by reason.

use super::*;
use crate::crypto::cert::{Cert, Prefix, Revocations, Trust, SIG_LEN};
use crate::node::trust::PART;

/// The Unix time the test nodes' clocks start at (see `node`).
const T0: u64 = 1_700_000_000;

fn ca(n: u8, network: &str) -> (Identity, Cert) {
    let id = identity(n);
    let cert = Cert::new_ca(
        &id,
        network,
        &format!("ca{n}"),
        (T0 - 1000, T0 + 10_000_000),
    )
    .unwrap();
    (id, cert)
}

fn node_cert(ca: &Identity, me: u8, network: &str, valid: (u64, u64)) -> Vec<u8> {
    let prefixes = vec![Prefix::parse(&format!("100.64.0.{me}")).unwrap()];
    let key = identity(me).public();
    Cert::new_node(ca, key, network, &format!("n{me}"), prefixes, vec![], valid)
        .unwrap()
        .encode()
        .unwrap()
}

const VALID: (u64, u64) = (T0 - 100, T0 + 100_000);

/// A (node 1) in certificate mode for network "office" under CA 100; B
/// (node 2) presents `b_cert` (none: a bare key) and accepts anyone.
fn pair(b_cert: Option<Vec<u8>>, revoked: Option<Revocations>) -> Net {
    let (ca_id, ca_cert) = ca(100, "office");
    let trust = Trust {
        network: "office".into(),
        cas: vec![ca_cert],
        revocations: revoked.into_iter().collect(),
    };
    let mut a = node(1, &[(2, EP_B)], Timers::default());
    a.certs.trust = Some(trust);
    a.certs.mine = Some(node_cert(&ca_id, 1, "office", VALID));
    let mut b = node(2, &[(1, EP_A)], Timers::default());
    b.certs.mine = b_cert;
    let mut net = Net {
        nodes: vec![(ep(EP_A), a), (ep(EP_B), b)],
        now: Instant::ZERO,
    };
    net.tick(Duration::ZERO);
    net.deliver(|_, _| true);
    net
}

fn refused(net: &Net, reason: DropReason) -> bool {
    !net.up(0) && net.nodes[0].1.stats().drops(reason) >= 1
}

#[test]
fn a_certified_peer_links_and_the_certificate_crosses_the_handshake() {
    let (ca_id, _) = ca(100, "office");
    let net = pair(Some(node_cert(&ca_id, 2, "office", VALID)), None);
    assert!(net.up(0) && net.up(1));
}

#[test]
fn peers_without_a_good_certificate_cannot_link() {
    let (ca_id, _) = ca(100, "office");
    let (other_ca, _) = ca(101, "office");
    let net = pair(None, None);
    assert!(refused(&net, DropReason::CertMissing), "a bare key");
    let expired = node_cert(&ca_id, 2, "office", (T0 - 100_000, T0 - 1_000));
    assert!(refused(&pair(Some(expired), None), DropReason::CertExpired));
    let early = node_cert(&ca_id, 2, "office", (T0 + 1_000, T0 + 100_000));
    assert!(refused(&pair(Some(early), None), DropReason::CertExpired));
    let lab = node_cert(&ca_id, 2, "lab", VALID);
    assert!(refused(
        &pair(Some(lab), None),
        DropReason::CertWrongNetwork
    ));
    let foreign = node_cert(&other_ca, 2, "office", VALID);
    assert!(refused(
        &pair(Some(foreign), None),
        DropReason::CertUnknownCa
    ));
    // B presents a certificate of node 3's: the certified key did not sign
    // B's handshake.
    let stolen = node_cert(&ca_id, 3, "office", VALID);
    assert!(refused(&pair(Some(stolen), None), DropReason::AuthFailure));
    let mut tampered = node_cert(&ca_id, 2, "office", VALID);
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert!(refused(
        &pair(Some(tampered), None),
        DropReason::CertInvalid
    ));
    let list = Revocations {
        issuer: NodeKey::default(),
        serial: 1,
        issued_at: T0,
        revoked: vec![identity(2).public()],
        signature: [0; SIG_LEN],
    }
    .sign(&ca_id)
    .unwrap();
    let good = node_cert(&ca_id, 2, "office", VALID);
    assert!(refused(
        &pair(Some(good), Some(list)),
        DropReason::CertRevoked
    ));
}

fn revoke(ca: &Identity, serial: u64, who: &[u8]) -> Revocations {
    Revocations {
        issuer: NodeKey::default(),
        serial,
        issued_at: T0,
        revoked: who.iter().map(|&n| identity(n).public()).collect(),
        signature: [0; SIG_LEN],
    }
    .sign(ca)
    .unwrap()
}

/// A – B – C in a line, all certified by CA 100.
fn line() -> (Net, Identity) {
    line_seen_by(|_, _| true)
}

/// `line`, with every datagram of the set-up shown to `tap` first.
fn line_seen_by(tap: impl FnMut(usize, &mut Vec<u8>) -> bool) -> (Net, Identity) {
    let (ca_id, ca_cert) = ca(100, "office");
    let mk = |me: u8, peers: &[(u8, &str)]| {
        let mut n = node(me, peers, Timers::default());
        n.certs.trust = Some(Trust {
            network: "office".into(),
            cas: vec![ca_cert.clone()],
            revocations: vec![],
        });
        n.certs.mine = Some(node_cert(&ca_id, me, "office", VALID));
        n
    };
    let mut net = Net {
        nodes: vec![
            (ep(EP_A), mk(1, &[(2, EP_B)])),
            (ep(EP_B), mk(2, &[(1, EP_A), (3, EP_C)])),
            (ep(EP_C), mk(3, &[(2, EP_B)])),
        ],
        now: Instant::ZERO,
    };
    net.tick(Duration::ZERO);
    net.deliver(tap);
    assert!(net.up(0) && net.up(1) && net.up(2));
    (net, ca_id)
}

/// Members that know each other's keys link without a certificate (name,
/// addresses, groups) or a node key crossing the wire in clear (issue 13:
/// both handshake messages carried them).
#[test]
fn certificates_never_cross_the_wire_in_clear() {
    let (ca_id, _) = ca(100, "office");
    let secrets: Vec<Vec<u8>> = (1..=3u8)
        .flat_map(|n| {
            [
                node_cert(&ca_id, n, "office", VALID),
                identity(n).public().0.to_vec(),
            ]
        })
        .collect();
    let mut seen = 0;
    let mut leaked = Vec::new();
    line_seen_by(|_, b| {
        seen += 1;
        for s in &secrets {
            if b.windows(s.len()).any(|w| w == &s[..]) {
                leaked.push(b.len());
            }
        }
        true
    });
    assert!(seen >= 4, "two handshakes at least");
    assert!(
        leaked.is_empty(),
        "in clear in datagrams of {leaked:?} bytes"
    );
}

fn serial(net: &Net, i: usize) -> Option<u64> {
    let t = net.nodes[i].1.certs.trust.as_ref()?;
    t.revocations.first().map(|r| r.serial)
}

#[test]
fn a_revocation_list_spreads_over_the_links_and_cuts_the_revoked_off() {
    let (mut net, ca_id) = line();
    // A list revoking nobody here reaches C through B.
    let now = net.now;
    assert_eq!(
        net.nodes[0]
            .1
            .offer_revocations(now, revoke(&ca_id, 1, &[9]), None),
        Ok(true)
    );
    net.deliver(|_, _| true);
    assert_eq!(serial(&net, 2), Some(1), "C got the list from B");
    // Revoking C: B drops its link to C at once; C cannot link again.
    assert_eq!(
        net.nodes[0]
            .1
            .offer_revocations(now, revoke(&ca_id, 2, &[3]), None),
        Ok(true)
    );
    net.deliver(|_, _| true);
    assert_eq!(serial(&net, 1), Some(2));
    let b = &net.nodes[1].1;
    let c_key = identity(3).public();
    let to_c = b
        .status(net.now)
        .peers
        .into_iter()
        .find(|p| p.key == c_key)
        .unwrap();
    assert_ne!(to_c.state, "up", "B cut C off");
    for _ in 0..20 {
        net.tick(Duration::from_secs(2));
        net.deliver(|_, _| true);
    }
    let to_c = net.nodes[1]
        .1
        .status(net.now)
        .peers
        .into_iter()
        .find(|p| p.key == c_key)
        .unwrap();
    assert_ne!(to_c.state, "up", "C stays out");
    assert!(net.nodes[1].1.stats().drops(DropReason::CertRevoked) >= 1);
    // An older list never replaces a newer one.
    assert_eq!(
        net.nodes[1]
            .1
            .offer_revocations(net.now, revoke(&ca_id, 1, &[]), None),
        Ok(false)
    );
    assert_eq!(serial(&net, 1), Some(2));
    // A list from another CA is refused.
    let (other, _) = ca(101, "office");
    assert!(net.nodes[1]
        .1
        .offer_revocations(net.now, revoke(&other, 5, &[]), None)
        .is_err());
}

/// Six VPN members with certificates; node 5's lists only 100.64.99.99,
/// but it claims the address the VPN gives it like everyone else.
#[test]
fn a_member_claiming_an_address_outside_its_certificate_is_refused() {
    use super::tunnel::{received_marker, udp_frame, vip};
    use crate::sim::{scenario, NetConfig, Sim, SimCerts};
    use crate::wire::dht::Record;
    let mut sim = Sim::new(21, NetConfig::default());
    sim.vpn = Some(crate::vpn::VpnConfig::new("sim"));
    sim.keep_frames = 64;
    let mut prefixes = std::collections::HashMap::new();
    prefixes.insert(5u32, vec![Prefix::parse("100.64.99.99").unwrap()]);
    sim.certs = Some(SimCerts {
        ca_seed: [100; 32],
        network: "sim".into(),
        prefixes,
        routes: Default::default(),
        groups: Default::default(),
    });
    for _ in 0..6 {
        let boots = sim.random_bootstraps(3, None);
        sim.add_node(boots);
    }
    scenario::run_until_consistent(&mut sim, Duration::from_secs(1), Duration::from_secs(60))
        .expect("a ring of certified members");
    sim.run_for(Duration::from_secs(20));
    // The storing nodes refuse node 5's record: it holds no address.
    let held = |sim: &Sim, i: usize| sim.node(i).vpn_status().and_then(|s| s.address);
    assert_eq!(held(&sim, 5), None);
    let refused = super::hostile_members::dht_stat_sum(&sim, |s| s.refused_policy);
    assert!(refused > 0);
    // An honest member is reached.
    let v1 = vip(&sim, 1);
    let f = udp_frame(&sim, 0, v1, b"to-an-honest-member");
    sim.inject_frame(0, &f);
    sim.run_for(Duration::from_secs(3));
    assert!(received_marker(&mut sim, 1, b"to-an-honest-member"));
    // Storing nodes that lie: every store gets node 5's own signed record
    // for an address its certificate does not list. Resolvers check it
    // again and refuse: nothing goes to node 5 for that address.
    let squatted: std::net::Ipv4Addr = "100.64.7.7".parse().unwrap();
    let key = crate::vpn::ip_key("sim", squatted);
    let cert5 = sim.node(5).certs.mine.clone();
    let value = crate::vpn::record::sign(&sim.node(5).identity, squatted, &[], cert5.as_deref());
    let record = Record {
        owner: crate::overlay::Addr::of_key(&sim.node(5).public_key()),
        ttl_secs: 300,
        value: value.unwrap(),
    };
    for i in 0..6 {
        sim.with_node(i, |n, now| {
            let ov = n.overlay.as_mut().unwrap();
            ov.dht_store_unchecked(now, key, &record);
        });
    }
    for k in 0..3 {
        let f = udp_frame(&sim, 0, squatted, format!("to-the-squatter-{k}").as_bytes());
        sim.inject_frame(0, &f);
        sim.run_for(Duration::from_secs(3));
    }
    assert!(!received_marker(&mut sim, 5, b"to-the-squatter"));
    let records_refused = |sim: &Sim, i: usize| {
        let v = sim.node(i).vpn.as_ref().unwrap();
        v.stats().records_refused
    };
    assert!(records_refused(&sim, 0) > 0);
    // Nor is what node 5 sends from that address delivered: the receiver
    // sees that node 5's certificate does not list the source, before
    // any lookup.
    let lookups = |sim: &Sim| sim.node(1).vpn.as_ref().unwrap().stats().lookups;
    let before = lookups(&sim);
    let f = sim.host_udp_frame(5, squatted, v1, b"from-the-squatter");
    sim.inject_frame(5, &f);
    sim.run_for(Duration::from_secs(3));
    assert!(!received_marker(&mut sim, 1, b"from-the-squatter"));
    assert!(sim.node(1).stats().drops(DropReason::ClaimNotCertified) > 0);
    assert_eq!(lookups(&sim), before, "no lookup for it");
}

/// A list too big for one datagram (1,000 keys, 32 KiB) travels in parts
/// and is put back together at each hop; a part that does not fit its
/// list is refused.
#[test]
fn a_list_of_a_thousand_keys_travels_in_parts() {
    let (mut net, ca_id) = line();
    let mut revoked: Vec<NodeKey> = (0..999u32)
        .map(|i| {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&i.to_be_bytes());
            k[4] = 0xee;
            NodeKey(k)
        })
        .collect();
    revoked.push(identity(3).public());
    revoked.sort();
    let list = Revocations {
        issuer: NodeKey::default(),
        serial: 7,
        issued_at: T0,
        revoked,
        signature: [0; SIG_LEN],
    }
    .sign(&ca_id)
    .unwrap();
    assert!(list.encode().unwrap().len() > 32 * 1000);
    let now = net.now;
    assert_eq!(net.nodes[0].1.offer_revocations(now, list, None), Ok(true));
    net.deliver(|_, _| true);
    assert_eq!(serial(&net, 1), Some(7), "B put the parts together");
    let b = &net.nodes[1].1;
    assert!(b
        .certs
        .trust
        .as_ref()
        .unwrap()
        .is_revoked(&identity(3).public()));
    let to_c = b
        .status(net.now)
        .peers
        .into_iter()
        .find(|p| p.key == identity(3).public())
        .unwrap();
    assert_ne!(to_c.state, "up", "B cut C off");
    // A part claiming more parts than a list can have is refused.
    let a = &mut net.nodes[0].1;
    let before = a.stats().drops(DropReason::CertInvalid);
    a.revocations_from(now, PeerIdx(0), &[10, 0, 200, 0, 1, 2, 3]);
    assert_eq!(a.stats().drops(DropReason::CertInvalid), before + 1);
    // So is a last part longer than a part can be (it would not fit).
    let mut long = vec![10, 1, 2, 0];
    long.extend_from_slice(&[0u8; PART + 1]);
    a.revocations_from(now, PeerIdx(0), &long);
    assert_eq!(a.stats().drops(DropReason::CertInvalid), before + 2);
}

/// A signed list of 200 made-up keys: several parts.
fn list_of_200(ca_id: &Identity, serial: u64) -> Revocations {
    Revocations {
        issuer: NodeKey::default(),
        serial,
        issued_at: T0,
        revoked: (0..200u32)
            .map(|i| {
                let mut k = [0u8; 32];
                k[..4].copy_from_slice(&i.to_be_bytes());
                NodeKey(k)
            })
            .collect(),
        signature: [0; SIG_LEN],
    }
    .sign(ca_id)
    .unwrap()
}

/// C keeps sending B first parts of a list that never comes whole (issue
/// 13: one reassembly at a time let a member stall every list). A's real
/// list, in parts, still gets through B, which has a slot per link.
#[test]
fn bogus_parts_from_one_link_do_not_stall_anothers_list() {
    let (mut net, ca_id) = line();
    let now = net.now;
    let b_from_c = {
        let b = &net.nodes[1].1;
        PeerIdx(
            b.peers
                .iter()
                .position(|p| p.key == identity(3).public())
                .unwrap() as u16,
        )
    };
    let mut bogus = vec![10, 0, 30, 0];
    bogus.extend_from_slice(&[0x55; PART]);
    net.nodes[1].1.revocations_from(now, b_from_c, &bogus);
    let list = list_of_200(&ca_id, 9);
    assert!(list.encode().unwrap().len() > 2 * PART, "several parts");
    assert_eq!(net.nodes[0].1.offer_revocations(now, list, None), Ok(true));
    net.deliver(|_, _| true);
    assert_eq!(serial(&net, 1), Some(9), "B took A's list");
}

/// A list whose parts were lost on the way is not lost for good (issue
/// 13: neighbours sent a list once, at the change or the link's start):
/// each link tells the other the serials it holds about once a minute, and
/// the one holding the newer list sends it; nothing is resent otherwise.
#[test]
fn a_list_whose_parts_were_lost_arrives_with_the_next_serials() {
    let (mut net, ca_id) = line();
    let list = list_of_200(&ca_id, 5);
    let now = net.now;
    assert_eq!(net.nodes[0].1.offer_revocations(now, list, None), Ok(true));
    // The network loses A's second part.
    let mut from_a = 0;
    net.deliver(|i, _| {
        from_a += usize::from(i == 0);
        !(i == 0 && from_a == 2)
    });
    assert_eq!(serial(&net, 1), None, "B missed a part");
    assert_eq!(serial(&net, 2), None);
    for _ in 0..40 {
        net.tick(Duration::from_secs(2));
        net.deliver(|_, _| true);
    }
    assert_eq!(serial(&net, 1), Some(5), "B asked again by its serials");
    assert_eq!(serial(&net, 2), Some(5), "and passed the list on");
    // Everyone agrees now: a few minutes of serials, and no list again.
    let mut parts = 0;
    for _ in 0..100 {
        net.tick(Duration::from_secs(2));
        net.deliver(|_, b| {
            parts += usize::from(b.len() > PART);
            true
        });
    }
    assert_eq!(parts, 0, "no list is sent blindly");
}

/// A CA rollover: during the transition every node trusts both CAs, so a
/// member already certified by the new CA links with one still on the
/// old; a node that trusts only the old CA refuses the new certificate
/// (which is why both stay in every CA file until every node has moved).
#[test]
fn during_a_ca_rollover_members_of_both_cas_link() {
    let (old_id, old_cert) = ca(100, "office");
    let (new_id, new_cert) = ca(101, "office");
    let member = |me: u8, peer: (u8, &str), signer: &Identity, cas: Vec<Cert>| {
        let mut n = node(me, &[peer], Timers::default());
        n.certs.trust = Some(Trust {
            network: "office".into(),
            cas,
            revocations: vec![],
        });
        n.certs.mine = Some(node_cert(signer, me, "office", VALID));
        n
    };
    let both = vec![old_cert.clone(), new_cert.clone()];
    let mut net = Net {
        nodes: vec![
            (ep(EP_A), member(1, (2, EP_B), &old_id, both.clone())),
            (ep(EP_B), member(2, (1, EP_A), &new_id, both)),
        ],
        now: Instant::ZERO,
    };
    net.tick(Duration::ZERO);
    net.deliver(|_, _| true);
    assert!(net.up(0) && net.up(1), "old and new certificates link");
    // Each side trusting only its own CA: refused.
    let mut net = Net {
        nodes: vec![
            (ep(EP_A), member(1, (2, EP_B), &old_id, vec![old_cert])),
            (ep(EP_B), member(2, (1, EP_A), &new_id, vec![new_cert])),
        ],
        now: Instant::ZERO,
    };
    net.tick(Duration::ZERO);
    net.deliver(|_, _| true);
    assert!(refused(&net, DropReason::CertUnknownCa));
}
