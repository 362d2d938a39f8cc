//! Reflection (issue 13): a member must not be able to make others send
//! handshakes to an address of its choosing. Each attack names a victim
//! outside the ring as its endpoints; the simulator counts every datagram
//! any member sends there. The goal is at most one per attacker message.

use super::*;
use crate::crypto::{Identity, Seed};
use crate::overlay::table::reason;
use crate::overlay::Addr;
use crate::sim::Sim;
use crate::wire::endpoint::Endpoint;
use crate::wire::overlay::{
    emit_routed_header, Endpoints, Mode, Neighbours, NodeRecord, OverlayMsg, Records,
    MSG_CTM_REPLY, MSG_CTM_REQUEST,
};

const ATTACKER: usize = 5;
/// Not a member: a host the attacker wants flooded.
const VICTIM_IP: [u8; 4] = [198, 19, 66, 6];

fn members(n: usize, seed: u64) -> Sim {
    let mut sim = super::hostile_members::certified_members(n, seed);
    sim.run_for(Duration::from_secs(5));
    sim.watch = Some(std::net::IpAddr::from(VICTIM_IP));
    sim
}

/// Eight endpoints at the victim (every port a candidate of its own).
fn victim_endpoints() -> Endpoints {
    (0..8)
        .map(|i| Endpoint::udp(SocketAddr::from((VICTIM_IP, 7000 + i))))
        .collect()
}

/// The attacker's first link: where its routed messages enter the ring.
fn first_link(sim: &Sim) -> PeerIdx {
    let n = sim.node(ATTACKER);
    let i = n.peers.iter().position(|p| p.is_linked()).unwrap();
    PeerIdx(i as u16)
}

fn send_once(sim: &mut Sim, via: PeerIdx, bytes: &[u8]) {
    sim.with_node(ATTACKER, |n, now| {
        let buf = n.pool_mut().alloc_with(bytes).unwrap();
        n.send_to_peer(now, via, MsgType::Control, buf);
    });
}

/// The goal: no more datagrams at the victim than the attacker sent
/// messages (printed, for the closing figures).
fn at_most_one_per_message(sim: &Sim, messages: u64) {
    let at_victim = sim.watched;
    eprintln!("{at_victim} datagrams at the victim for {messages} messages");
    assert!(
        at_victim <= messages,
        "{at_victim} datagrams at the victim for {messages} messages"
    );
}

/// A key whose ring address `i`'s overlay would link to as a neighbour.
fn key_near(sim: &Sim, i: usize, from_seed: &mut u8) -> NodeKey {
    loop {
        *from_seed = from_seed.wrapping_add(1);
        let k = Identity::from_seed(&Seed([*from_seed; 32])).public();
        let ov = sim.node(i).overlay.as_ref().unwrap();
        if ov.would_keep(Addr::of_key(&k)) {
            return k;
        }
    }
}

/// Connect-to-me requests without an init, in made-up names, to ten
/// members: before issue 13 each acceptor punched the eight endpoints
/// (560 datagrams in all). Now the endpoints are hearsay: one handshake
/// per unproven address per 10 s.
#[test]
fn connect_to_me_without_an_init_draws_one_datagram_per_message_at_most() {
    let mut sim = members(12, 31);
    let via = first_link(&sim);
    let targets: Vec<usize> = (0..12).filter(|&i| i != ATTACKER).take(10).collect();
    for (k, &t) in targets.iter().enumerate() {
        let key = Identity::from_seed(&Seed([150 + k as u8; 32])).public();
        let mut b = Vec::new();
        emit_routed_header(
            &mut b,
            Mode::Exact,
            64,
            Addr::of_key(&key),
            sim.addr(t),
            MSG_CTM_REQUEST,
        );
        OverlayMsg::CtmRequest {
            purpose: reason::NEAR,
            key,
            token: 0,
            endpoints: victim_endpoints(),
            via: None,
            init: Vec::new(),
        }
        .emit(&mut b);
        send_once(&mut sim, via, &b);
    }
    sim.run_for(Duration::from_secs(30));
    let messages = targets.len() as u64;
    at_most_one_per_message(&sim, messages);
}

/// Connect-to-me requests that carry the attacker's own valid init and
/// the victim's endpoints: the acceptor answers the init, once per
/// address (it had answered at all eight).
#[test]
fn connect_to_me_with_an_init_is_answered_once_per_address() {
    let mut sim = members(12, 32);
    let via = first_link(&sim);
    let me = sim.node(ATTACKER).public_key();
    let targets: Vec<usize> = (0..12).filter(|&i| i != ATTACKER).take(10).collect();
    for &t in &targets {
        let mut b = Vec::new();
        let (src, dst) = (sim.addr(ATTACKER), sim.addr(t));
        emit_routed_header(&mut b, Mode::Exact, 64, src, dst, MSG_CTM_REQUEST);
        OverlayMsg::CtmRequest {
            purpose: reason::SHORTCUT,
            key: me,
            token: 0,
            endpoints: victim_endpoints(),
            via: None,
            init: Vec::new(),
        }
        .emit(&mut b);
        let ctm = crate::overlay::CtmId {
            purpose: reason::SHORTCUT,
            token: 0,
        };
        sim.with_node(ATTACKER, |n, now| n.send_ctm(now, via, b, ctm));
        sim.run_for(Duration::from_millis(200));
    }
    sim.run_for(Duration::from_secs(30));
    let messages = targets.len() as u64;
    assert!(sim.watched > 0, "the answers do go out");
    at_most_one_per_message(&sim, messages);
}

/// Neighbour gossip naming made-up nodes near each receiver, all at the
/// victim: three sweeps over every link of the attacker. Before issue 13
/// each record drew up to four inits from each receiver.
#[test]
fn gossip_naming_a_victim_draws_at_most_one_datagram_per_message() {
    let mut sim = members(12, 33);
    let mut seed = 0u8;
    let mut messages = 0u64;
    for _ in 0..3 {
        let links: Vec<(PeerIdx, NodeKey)> = {
            let n = sim.node(ATTACKER);
            (0..n.peers.len())
                .filter(|&i| n.peers[i].is_linked())
                .map(|i| (PeerIdx(i as u16), n.peers[i].key))
                .collect()
        };
        for (p, key) in links {
            let r = (0..sim.len())
                .find(|&i| sim.node(i).public_key() == key)
                .unwrap();
            let records: Records = victim_endpoints()
                .iter()
                .take(4)
                .map(|&endpoint| NodeRecord {
                    key: key_near(&sim, r, &mut seed),
                    endpoint,
                })
                .collect();
            let mut b = Vec::new();
            Neighbours {
                reasons: 0,
                records,
            }
            .emit(&mut b);
            send_once(&mut sim, p, &b);
            messages += 1;
        }
        sim.run_for(Duration::from_secs(5));
    }
    sim.run_for(Duration::from_secs(20));
    at_most_one_per_message(&sim, messages);
    // The ring is none the worse for it.
    assert_eq!(sim.consistency(), 1.0);
}

/// Connect-to-me replies in the name of the member each target has just
/// asked for a link, naming the victim: a reply had been taken for the
/// outstanding request, and its endpoints got a full link attempt (seven
/// rounds at all eight). Now a reply must echo the request's token, which
/// only the request's path has seen: the forgeries get nothing at all.
#[test]
fn a_forged_connect_to_me_reply_draws_nothing() {
    let mut sim = members(12, 34);
    let via = first_link(&sim);
    let mut messages = 0u64;
    for t in (0..12).filter(|&i| i != ATTACKER) {
        // A member `t` has no link to, which `t` now asks for one.
        let Some(asked) = (0..12).find(|&j| {
            let ov = sim.node(t).overlay.as_ref().unwrap();
            j != t && j != ATTACKER && ov.table().get(sim.addr(j)).is_none()
        }) else {
            continue;
        };
        let (dst, src) = (sim.addr(t), sim.addr(asked));
        sim.with_node(t, |n, now| {
            n.with_overlay(now, |ov| ov.connect_to(now, src, reason::SHORTCUT));
        });
        for token in [0, 1, u64::MAX] {
            let mut b = Vec::new();
            emit_routed_header(&mut b, Mode::Exact, 64, src, dst, MSG_CTM_REPLY);
            OverlayMsg::CtmReply {
                purpose: reason::SHORTCUT,
                key: sim.node(asked).public_key(),
                token,
                endpoints: victim_endpoints(),
                neighbours: Records::new(),
            }
            .emit(&mut b);
            send_once(&mut sim, via, &b);
            messages += 1;
        }
    }
    sim.run_for(Duration::from_secs(30));
    assert!(messages >= 20, "{messages} forged replies");
    eprintln!(
        "{} datagrams at the victim for {messages} forged replies",
        sim.watched
    );
    assert_eq!(sim.watched, 0);
}
