//! Hostile members with valid certificates: a member is only who it
//! proves to be. Each test plays one attack from a member of the ring and
//! checks that it changes nothing it should not, and is counted.

use super::tunnel::{received_marker, udp_frame, vip};
use super::*;
use crate::overlay::dht::client::Outcome;
use crate::overlay::dht::{remove, replica_point, DhtStats, REMOVE_FRESH_SECS, REPLICAS};
use crate::overlay::Addr;
use crate::sim::{scenario, NetConfig, Sim, SimCerts};
use crate::wire::dht::{DhtMsg, Record, RemoveProof};
use crate::wire::overlay::{emit_routed_header, Mode, OverlayMsg, MSG_DHT};

const ATTACKER: usize = 5;
const VICTIM: usize = 1;

/// `n` certified members, every one holding its address.
pub(super) fn certified_members(n: usize, seed: u64) -> Sim {
    let mut sim = Sim::new(seed, NetConfig::default());
    sim.vpn = Some(crate::vpn::VpnConfig::new("sim"));
    sim.keep_frames = 64;
    sim.certs = Some(SimCerts {
        ca_seed: [100; 32],
        network: "sim".into(),
        prefixes: Default::default(),
        routes: Default::default(),
        groups: Default::default(),
    });
    for _ in 0..n {
        let boots = sim.random_bootstraps(3, None);
        sim.add_node(boots);
    }
    scenario::run_until_consistent(&mut sim, Duration::from_secs(1), Duration::from_secs(60))
        .expect("a ring of certified members");
    for _ in 0..60 {
        let held = |i| sim.node(i).vpn_status().and_then(|s| s.address).is_some();
        if (0..n).all(held) {
            break;
        }
        sim.run_for(Duration::from_secs(1));
    }
    sim
}

/// Has `from` send a routed DHT message that claims `src` as its source
/// to `dst`, through every link it has.
fn send_forged(sim: &mut Sim, from: usize, mode: Mode, src: Addr, dst: Addr, msg: DhtMsg) {
    let mut b = Vec::new();
    emit_routed_header(&mut b, mode, 64, src, dst, MSG_DHT);
    OverlayMsg::Dht(msg).emit(&mut b);
    sim.with_node(from, |n, now| {
        for i in 0..n.peers.len() {
            if n.peers[i].is_linked() {
                let buf = n.pool_mut().alloc_with(&b).unwrap();
                n.send_to_peer(now, PeerIdx(i as u16), MsgType::Control, buf);
            }
        }
    });
}

/// A remove of `key` to every replica point, in the name of `src`.
fn remove_everywhere(sim: &mut Sim, from: usize, src: Addr, key: Addr, proof: RemoveProof) {
    for k in 0..REPLICAS {
        let msg = DhtMsg::Remove {
            id: 77 + k as u32,
            replica: k as u8,
            key,
            proof,
        };
        send_forged(sim, from, Mode::Closest, src, replica_point(key, k), msg);
    }
    sim.run_for(Duration::from_secs(2));
}

/// How many nodes store `owner`'s record under `key`.
fn replicas_holding(sim: &Sim, key: Addr, owner: Addr) -> usize {
    let now = sim.now();
    (0..sim.len())
        .filter(|&i| {
            let ov = sim.node(i).overlay.as_ref().unwrap();
            ov.dht_stored(now, key, owner).is_some()
        })
        .count()
}

/// The owners a DHT get of `key` by node `from` finds.
fn owners_found(sim: &mut Sim, from: usize, key: Addr) -> Vec<Addr> {
    let id = sim.with_node(from, |n, now| {
        n.overlay.as_mut().unwrap().dht_get(now, key, false)
    });
    sim.run_for(Duration::from_secs(6));
    let found = sim.take_dht_results(from).into_iter().find(|e| e.id == id);
    match found.map(|e| e.outcome) {
        Some(Outcome::Found(records)) => records.iter().map(|r| r.owner).collect(),
        other => panic!("get of {key:?}: {other:?}"),
    }
}

/// A DHT counter summed over every node.
pub(super) fn dht_stat_sum(sim: &Sim, stat: impl Fn(&DhtStats) -> u64) -> u64 {
    (0..sim.len())
        .map(|i| stat(&sim.node(i).overlay.as_ref().unwrap().dht().stats))
        .sum()
}

fn refused_removes(sim: &Sim) -> u64 {
    dht_stat_sum(sim, |s| s.refused_remove)
}

/// Twelve certified members; the victim's address, its DHT key, the
/// victim's ring address, and how many nodes store its record.
fn victims_record(seed: u64) -> (Sim, std::net::Ipv4Addr, Addr, Addr, usize) {
    let sim = certified_members(12, seed);
    let ip = vip(&sim, VICTIM);
    let key = crate::vpn::ip_key("sim", ip);
    let victim = sim.addr(VICTIM);
    let held = replicas_holding(&sim, key, victim);
    (sim, ip, key, victim, held)
}

fn wall_secs(sim: &Sim, i: usize) -> u64 {
    crate::time::unix_secs(sim.node(i).env.wall_origin_us, sim.now())
}

/// The attack: member 5 removes member 1's address record in
/// member 1's name, then creates the address for itself. Every form of
/// the forged remove is refused (and counted), the record stays at every
/// replica, a member that never talked to 1 reaches it, and 5's create
/// finds the address taken.
#[test]
fn a_member_cannot_remove_or_take_over_anothers_address() {
    let (mut sim, ip, key, victim, held) = victims_record(13);
    assert!(held >= 8, "the record is replicated: {held}");
    let attacker_id = &sim.node(ATTACKER).identity;
    let t = wall_secs(&sim, ATTACKER);
    // Signed by the attacker, in the victim's name (the routed source).
    let signed_by_attacker = remove::sign(attacker_id, key, t);
    // The victim's key with a signature the attacker cannot make.
    let victim_key = sim.node(VICTIM).public_key().0;
    let forged = RemoveProof {
        owner_key: victim_key,
        unix_secs: t,
        sig: attacker_id.sign(&RemoveProof::signed_bytes(key, &victim_key, t)),
    };
    remove_everywhere(&mut sim, ATTACKER, victim, key, signed_by_attacker);
    remove_everywhere(&mut sim, ATTACKER, victim, key, forged);
    assert_eq!(replicas_holding(&sim, key, victim), held, "nothing removed");
    assert_eq!(owners_found(&mut sim, 0, key), [victim]);
    assert!(
        refused_removes(&sim) >= REPLICAS as u64,
        "forgeries are counted"
    );
    // A member that never talked to the victim resolves it and gets through.
    let from = (0..sim.len())
        .find(|&i| i != VICTIM && i != ATTACKER)
        .unwrap();
    let f = udp_frame(&sim, from, ip, b"still-reachable");
    sim.inject_frame(from, &f);
    sim.run_for(Duration::from_secs(3));
    assert!(received_marker(&mut sim, VICTIM, b"still-reachable"));
    // The take-over: the attacker's certificate covers the whole range, so
    // its own record for the address is valid; the address is not free.
    let cert5 = sim.node(ATTACKER).certs.mine.clone();
    let value =
        crate::vpn::record::sign(&sim.node(ATTACKER).identity, ip, &[], cert5.as_deref()).unwrap();
    let id = sim.with_node(ATTACKER, |n, now| {
        n.overlay
            .as_mut()
            .unwrap()
            .dht_put(now, key, &value, 300, true)
    });
    sim.run_for(Duration::from_secs(6));
    let outcome = sim
        .take_dht_results(ATTACKER)
        .into_iter()
        .find(|e| e.id == id)
        .map(|e| e.outcome);
    assert_eq!(outcome, Some(Outcome::Exists(victim)));
}

/// The owner's own remove works; captured and sent again after the owner
/// registered anew (a replay), it changes nothing; one older than the
/// window is refused.
#[test]
fn a_signed_remove_works_once_and_cannot_be_replayed() {
    let (mut sim, _, key, victim, held) = victims_record(14);
    let now = sim.now();
    let record: Record = (0..sim.len())
        .find_map(|i| {
            sim.node(i)
                .overlay
                .as_ref()
                .unwrap()
                .dht_stored(now, key, victim)
        })
        .expect("a stored record");
    let sign = |sim: &Sim, t: u64| remove::sign(&sim.node(VICTIM).identity, key, t);
    // Too old: refused everywhere.
    let old = sign(&sim, wall_secs(&sim, VICTIM) - REMOVE_FRESH_SECS - 60);
    let before = refused_removes(&sim);
    remove_everywhere(&mut sim, ATTACKER, victim, key, old);
    assert_eq!(replicas_holding(&sim, key, victim), held);
    assert!(refused_removes(&sim) > before);
    // The owner gives the address up (stops renewing, removes): the
    // record goes. The attacker saw the remove go by (Ed25519 signatures
    // are deterministic: the same proof).
    let t = wall_secs(&sim, VICTIM);
    sim.with_node(VICTIM, |n, now| {
        let ov = n.overlay.as_mut().unwrap();
        ov.dht_unregister(now, key, &n.identity);
    });
    let proof = sign(&sim, t);
    sim.run_for(Duration::from_secs(3));
    assert_eq!(owners_found(&mut sim, 0, key), [], "removed");
    // The owner puts it back; the same remove again is a replay.
    sim.with_node(VICTIM, |n, now| {
        let ov = n.overlay.as_mut().unwrap();
        ov.dht_put(now, key, &record.value, 300, false)
    });
    sim.run_for(Duration::from_secs(3));
    let again = replicas_holding(&sim, key, victim);
    assert!(again >= 8, "put back: {again}");
    sim.run_for(Duration::from_secs(10));
    remove_everywhere(&mut sim, ATTACKER, victim, key, proof);
    assert_eq!(
        replicas_holding(&sim, key, victim),
        again,
        "a replay changes nothing"
    );
    assert_eq!(owners_found(&mut sim, 0, key), [victim]);
}

/// Member 5 sends a victim packets from 100 source addresses nobody holds
/// (within its certificate's range, so only a lookup can tell). Each
/// unknown source used to start a DHT lookup until all 32 were taken, and
/// the victim's own traffic to a member it had not resolved yet failed
/// with `resolve_queue_full`. Now the sender gets two lookups; the
/// victim's traffic goes through.
#[test]
fn a_member_sending_from_many_addresses_cannot_exhaust_lookups() {
    let (mut sim, ip1, _, _, _) = victims_record(15);
    let victim_key = sim.node(VICTIM).public_key();
    // A session between attacker and victim first.
    let f = udp_frame(&sim, ATTACKER, ip1, b"hello");
    sim.inject_frame(ATTACKER, &f);
    sim.run_for(Duration::from_secs(3));
    assert!(received_marker(&mut sim, VICTIM, b"hello"));
    let lookups_before = sim.node(VICTIM).vpn.as_ref().unwrap().stats().lookups;
    let packets: Vec<Vec<u8>> = (0..100u32)
        .map(|i| {
            let src = std::net::Ipv4Addr::from(0x6440_c800 + i);
            sim.host_udp_frame(ATTACKER, src, ip1, b"spoofed")[14..].to_vec()
        })
        .collect();
    for batch in packets.chunks(10) {
        sim.with_node(ATTACKER, |n, now| {
            let p = n.index.by_key[&victim_key];
            for pkt in batch {
                let buf = n.pool_mut().alloc_with(pkt).unwrap();
                n.send_to_peer(now, p, MsgType::Packet, buf);
            }
        });
        sim.run_for(Duration::from_millis(5));
    }
    // Meanwhile the victim talks to a member it never resolved.
    let to = (0..sim.len())
        .find(|&i| ![VICTIM, ATTACKER].contains(&i))
        .unwrap();
    let ip_to = vip(&sim, to);
    let f = udp_frame(&sim, VICTIM, ip_to, b"own-traffic");
    sim.inject_frame(VICTIM, &f);
    sim.run_for(Duration::from_secs(3));
    assert!(received_marker(&mut sim, to, b"own-traffic"));
    let v = sim.node(VICTIM).vpn.as_ref().unwrap();
    let started = v.stats().lookups - lookups_before;
    assert!(started <= 3, "{started} lookups started");
    assert!(!received_marker(&mut sim, VICTIM, b"spoofed"));
    assert!(sim.node(VICTIM).stats().drops(DropReason::ResolveQueueFull) >= 90);
}

/// Member 5 pushes routed data for a far node through one of its links
/// as fast as it can (issue 13: transit was unmetered). The link's node
/// forwards no more than its transit budget for that link, and counts the
/// rest.
#[test]
fn transit_through_a_member_is_metered_per_upstream_link() {
    use crate::wire::overlay::{RoutedDataRepr, ROUTED_DATA_HEADER_LEN};
    let (mut sim, _, _, _, _) = victims_record(16);
    let (via, via_key) = {
        let n = sim.node(ATTACKER);
        let i = n
            .peers
            .iter()
            .position(|p| p.is_linked() && p.relay().is_none())
            .unwrap();
        (PeerIdx(i as u16), n.peers[i].key)
    };
    let l = (0..sim.len())
        .find(|&i| sim.node(i).public_key() == via_key)
        .unwrap();
    let far = (0..sim.len())
        .find(|&i| ![ATTACKER, l].contains(&i))
        .map(|i| sim.addr(i))
        .unwrap();
    const RATE: u32 = 100_000;
    sim.with_node(l, |n, _| n.settings.transit_rate = RATE);
    let before = sim.node(l).stats().transit_bytes;
    let mut msg = vec![0u8; ROUTED_DATA_HEADER_LEN + 1000];
    RoutedDataRepr {
        ttl: 64,
        flags: 0,
        dst: far,
    }
    .emit(&mut msg);
    for _ in 0..40 {
        sim.with_node(ATTACKER, |n, now| {
            for _ in 0..10 {
                let buf = n.pool_mut().alloc_with(&msg).unwrap();
                n.send_to_peer(now, via, MsgType::Control, buf);
            }
        });
        sim.run_for(Duration::from_millis(2));
    }
    sim.run_for(Duration::from_millis(500));
    let forwarded = sim.node(l).stats().transit_bytes - before;
    let limited = sim.node(l).stats().drops(DropReason::TransitLimited);
    assert!(
        forwarded <= u64::from(RATE) * 12 / 10,
        "{forwarded} B forwarded"
    );
    assert!(limited >= 250, "{limited} refused of 400");
}

/// Member 5 sends routed data inside its end-to-end session with a member
/// it has no link with. Routed data rides on links (direct or tunnel
/// edges) only: the receiver does not forward the inner message, and
/// counts it. (The tunnel-edge case is `failover_at_200_nodes`'s and the
/// tunnel tests': ring traffic crosses tunnel edges.)
#[test]
fn routed_data_inside_an_end_to_end_session_is_refused() {
    use crate::wire::overlay::{RoutedDataRepr, ROUTED_DATA_HEADER_LEN};
    let (mut sim, _, _, _, _) = victims_record(17);
    // A member the attacker has no link with, reached over the ring.
    let target = (0..sim.len())
        .find(|&i| {
            let key = sim.node(i).public_key();
            i != ATTACKER
                && !sim
                    .node(ATTACKER)
                    .peers
                    .iter()
                    .any(|p| p.key == key && p.is_linked())
        })
        .expect("a member the attacker is not linked with");
    let ip = vip(&sim, target);
    let f = udp_frame(&sim, ATTACKER, ip, b"session");
    sim.inject_frame(ATTACKER, &f);
    sim.run_for(Duration::from_secs(3));
    assert!(received_marker(&mut sim, target, b"session"));
    let key = sim.node(target).public_key();
    let p = sim.node(ATTACKER).index.by_key[&key];
    assert!(sim.node(ATTACKER).peers[usize::from(p.0)].is_routed());
    let far = (0..sim.len())
        .find(|&i| ![ATTACKER, target].contains(&i))
        .map(|i| sim.addr(i))
        .unwrap();
    let mut msg = vec![0u8; ROUTED_DATA_HEADER_LEN + 100];
    RoutedDataRepr {
        ttl: 64,
        flags: 0,
        dst: far,
    }
    .emit(&mut msg);
    let (transit, refused) = {
        let n = sim.node(target);
        (
            n.stats().transit_bytes,
            n.stats().drops(DropReason::OverlayMalformed),
        )
    };
    sim.with_node(ATTACKER, |n, now| {
        for _ in 0..5 {
            let buf = n.pool_mut().alloc_with(&msg).unwrap();
            n.send_to_peer(now, p, MsgType::Control, buf);
        }
    });
    sim.run_for(Duration::from_secs(1));
    let n = sim.node(target);
    assert_eq!(n.stats().transit_bytes, transit, "nothing forwarded");
    assert!(n.stats().drops(DropReason::OverlayMalformed) >= refused + 5);
}

/// A member that saw one of our DHT request ids (they pass through it on
/// the way) answers our next requests before the replicas can: with ids
/// counted up, its empty answers took every replica's slot and member 3
/// found no owner for member 1's address. Ids are now a keyed hash only
/// the asker can compute, and an answer for an id or key we are not
/// waiting for is counted and dropped.
#[test]
fn a_member_cannot_answer_anothers_dht_requests_by_guessing_ids() {
    const ASKER: usize = 3;
    let (mut sim, _, key, victim, held) = victims_record(17);
    assert!(held >= 4);
    let seen = sim.node(ASKER).overlay().unwrap().dht().stats.ops_started;
    let unmatched = |sim: &Sim| {
        sim.node(ASKER)
            .overlay()
            .unwrap()
            .dht()
            .stats
            .replies_unmatched
    };
    let before = unmatched(&sim);
    let id = sim.with_node(ASKER, |n, now| {
        n.overlay.as_mut().unwrap().dht_get(now, key, false)
    });
    // The next few ids after the last one seen, at every replica: "no
    // record here".
    let asker = sim.addr(ASKER);
    let mut forged = 0;
    for guess in seen as u32 + 1..=seen as u32 + 4 {
        for k in 0..REPLICAS {
            let msg = DhtMsg::GetReply {
                id: guess,
                replica: k as u8,
                key,
                status: crate::wire::dht::Status::Ok,
                records: Default::default(),
            };
            send_forged(
                &mut sim,
                ATTACKER,
                Mode::Exact,
                replica_point(key, k),
                asker,
                msg,
            );
            forged += 1;
        }
    }
    sim.run_for(Duration::from_secs(6));
    let found = sim.take_dht_results(ASKER).into_iter().find(|e| e.id == id);
    match found.map(|e| e.outcome) {
        Some(Outcome::Found(records)) => {
            assert!(records.iter().any(|r| r.owner == victim), "{records:?}")
        }
        other => panic!("the get was answered by the forger: {other:?}"),
    }
    assert!(
        unmatched(&sim) >= before + forged,
        "forged answers counted: {} of {forged}",
        unmatched(&sim) - before
    );
}
