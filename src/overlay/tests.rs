//! Routing decisions of one overlay node, from hand-built tables.

use super::*;
use crate::wire::overlay::{
    emit_routed_header, ConnList, Mode, Neighbours, NodeRecord, FLAG_FINAL, MSG_ECHO_REQUEST,
};
use std::time::Duration;

const EP: &str = "198.18.0.1:5140";

fn key(i: u32) -> NodeKey {
    let mut k = [0u8; 32];
    k[..4].copy_from_slice(&i.to_be_bytes());
    NodeKey(k)
}

fn prefix(a: Addr) -> u64 {
    (a.0 >> 64) as u64
}

/// An overlay for `me` linked to `conns` (peer index = position).
fn node(me: NodeKey, conns: &[NodeKey], lookahead: bool) -> Overlay {
    let cfg = OverlayConfig {
        lookahead,
        ..OverlayConfig::default()
    };
    let mut ov = Overlay::new(me, &[EP.parse().unwrap()], cfg, 1, Instant::ZERO);
    for (i, k) in conns.iter().enumerate() {
        ov.on_link_up(
            Instant::ZERO,
            PeerIdx(i as u16),
            *k,
            EP.parse().unwrap(),
            false,
        );
    }
    ov.take_actions().into_iter().for_each(drop);
    ov
}

fn tell_list(ov: &mut Overlay, peer: usize, addrs: &[Addr]) {
    let mut msg = Vec::new();
    ConnList {
        prefixes: addrs.iter().map(|&a| prefix(a)).collect(),
        relay_kib: 0,
    }
    .emit(&mut msg);
    ov.handle_conn_list(PeerIdx(peer as u16), &msg).unwrap();
}

fn routed(mode: Mode, src: Addr, dst: Addr) -> Vec<u8> {
    let mut b = Vec::new();
    emit_routed_header(&mut b, mode, 64, src, dst, MSG_ECHO_REQUEST);
    b.extend_from_slice(&[0; 16]);
    b
}

/// Keys 1.. sorted by their ring distance to `dst`, nearest first.
fn by_distance(dst: Addr, n: u32) -> Vec<NodeKey> {
    let mut keys: Vec<NodeKey> = (1..=n).map(key).collect();
    keys.sort_by_key(|k| Addr::of_key(k).distance(dst));
    keys
}

#[test]
fn lookahead_prefers_the_neighbour_whose_neighbours_are_closer() {
    let me = key(0);
    let dst = Addr::of_key(&me).offset(i128::MAX);
    let keys = by_distance(dst, 400);
    // a and b about as close (a list may choose between those), a closer.
    let d = |k: &NodeKey| Addr::of_key(k).distance(dst);
    let (a, b) = keys
        .windows(2)
        .map(|w| (w[0], w[1]))
        .find(|(a, b)| d(b) <= 2 * d(a))
        .expect("two nodes about as close");
    let src = Addr(7);
    for (lookahead, want) in [(false, 0), (true, 1)] {
        let mut ov = node(me, &[a, b], lookahead);
        // b knows a node right at the destination; a knows nobody useful.
        tell_list(&mut ov, 1, &[dst.offset(1 << 70)]);
        tell_list(&mut ov, 0, &[Addr::of_key(&me)]);
        let mut msg = routed(Mode::Closest, src, dst);
        assert_eq!(
            ov.route(&mut msg),
            Route::Forward(PeerIdx(want)),
            "lookahead {lookahead}"
        );
    }
}

#[test]
fn lookahead_never_moves_away_from_the_destination() {
    let dst = Addr(1 << 100);
    let keys = by_distance(dst, 400);
    // We sit 10th nearest; the far connection knows the destination itself.
    let (me, near, far) = (keys[10], keys[3], keys[300]);
    let mut ov = node(me, &[far, near], true);
    tell_list(&mut ov, 0, &[dst]);
    let mut msg = routed(Mode::Closest, Addr(7), dst);
    assert_eq!(ov.route(&mut msg), Route::Forward(PeerIdx(1)));
    // With only the far one we are the closest node: the message stops here.
    let mut ov = node(me, &[far], true);
    tell_list(&mut ov, 0, &[dst]);
    let mut msg = routed(Mode::Closest, Addr(7), dst);
    assert_eq!(ov.route(&mut msg), Route::Deliver);
}

#[test]
fn a_list_cannot_pull_a_message_to_a_connection_much_farther_than_the_closest() {
    // Lists are unchecked claims: one that names the destination itself
    // only reorders connections about as close as the closest one.
    let dst = Addr(1 << 100);
    let keys = by_distance(dst, 400);
    let (me, near, far) = (keys[200], keys[0], keys[100]);
    let spread = crate::overlay::routing::LOOKAHEAD_SPREAD;
    assert!(Addr::of_key(&far).distance(dst) > spread * Addr::of_key(&near).distance(dst));
    let mut ov = node(me, &[far, near], true);
    tell_list(&mut ov, 0, &[dst]);
    let mut msg = routed(Mode::Closest, Addr(7), dst);
    assert_eq!(ov.route(&mut msg), Route::Forward(PeerIdx(1)));
}

#[test]
fn last_resort_follows_the_claim_from_next_door() {
    // We are the closest node to `target` we know, and not linked to it.
    // A connection next door that lists it is the way in (a node behind a
    // NAT its ring neighbours cannot reach); a far one that lists it too
    // (every node, say) does not draw the message away.
    let target = key(1000);
    let dst = Addr::of_key(&target);
    let keys = by_distance(dst, 400);
    let (me, near) = (keys[0], keys[1]);
    // The far liar sorts before the honest one in the table.
    let far = *keys[300..]
        .iter()
        .find(|k| Addr::of_key(k) < Addr::of_key(&near))
        .expect("a far node sorting first");
    let mut ov = node(me, &[far, near], true);
    tell_list(&mut ov, 0, &[dst]);
    tell_list(&mut ov, 1, &[dst]);
    let mut msg = routed(Mode::Exact, Addr(7), dst);
    assert_eq!(ov.route(&mut msg), Route::Forward(PeerIdx(1)));
}

#[test]
fn next_door_to_a_node_we_cannot_link_a_link_that_lists_it_is_the_way_in() {
    // Our right ring neighbour T cannot be linked by us or by its own
    // right neighbour R (a symmetric NAT between port-restricted ones).
    // Greedy would hand the message to R, a dead end; a far connection
    // that lists T gets it there.
    let t = Addr::of_key(&key(1000));
    let mut keys: Vec<NodeKey> = (1..=400).map(key).collect();
    keys.sort_by_key(|k| t.distance(Addr::of_key(k)));
    let left = *keys
        .iter()
        .find(|k| t.left_dist(Addr::of_key(k)) < 1 << 127)
        .unwrap();
    let right = *keys
        .iter()
        .find(|k| t.right_dist(Addr::of_key(k)) < 1 << 127)
        .unwrap();
    // We sit on the side farther from T, so greedy prefers the other one.
    let (me, other) = if t.distance(Addr::of_key(&left)) > t.distance(Addr::of_key(&right)) {
        (left, right)
    } else {
        (right, left)
    };
    let far = *keys
        .iter()
        .rev()
        .find(|k| **k != me && **k != other)
        .unwrap();
    let mut ov = node(me, &[other, far], true);
    tell_list(&mut ov, 1, &[t]);
    let mut msg = routed(Mode::Exact, Addr(7), t);
    assert_eq!(ov.route(&mut msg), Route::Forward(PeerIdx(1)));
    // Not next door (a connection lies between us and it): greedy as ever.
    let mut ov = node(me, &[other, far], true);
    tell_list(&mut ov, 1, &[Addr::of_key(&far).offset(1 << 70)]);
    let beyond = Addr::of_key(&other).offset(if other == right { 1 << 90 } else { -(1 << 90) });
    let mut msg = routed(Mode::Exact, Addr(7), beyond);
    assert_eq!(ov.route(&mut msg), Route::Forward(PeerIdx(0)));
}

#[test]
fn a_direct_connection_beats_the_same_node_seen_in_a_list() {
    // Lists carry 64-bit prefixes, which sit just below the full address;
    // the direct link must still win, or every last hop costs one more.
    let keys = by_distance(Addr(0), 50);
    let (me, r, r2) = (keys[40], keys[0], keys[1]);
    // Just below the prefix: the prefix looks closer than the full address.
    let dst = Addr(u128::from(prefix(Addr::of_key(&r))) << 64).offset(-5);
    let mut ov = node(me, &[r2, r], true);
    tell_list(&mut ov, 0, &[Addr::of_key(&r)]);
    let mut msg = routed(Mode::Closest, Addr(7), dst);
    assert_eq!(ov.route(&mut msg), Route::Forward(PeerIdx(1)));
}

#[test]
fn right_of_runs_two_sided_then_crosses_once() {
    let me = key(0);
    let m = Addr::of_key(&me);
    // A newcomer just right of us: we are its closest node but not its
    // right neighbour; our nearest connection to its right is.
    let x = m.offset(1000);
    let mut keys: Vec<NodeKey> = (1..=200).map(key).collect();
    keys.sort_by_key(|k| x.right_dist(Addr::of_key(k)));
    let (right, other) = (keys[0], keys[100]);
    let mut ov = node(me, &[other, right], true);
    let mut msg = routed(Mode::RightOf, x, x);
    assert_eq!(ov.route(&mut msg), Route::Forward(PeerIdx(1)));
    assert_eq!(msg[37] & FLAG_FINAL, FLAG_FINAL, "final approach recorded");
    // Far away, the same message travels by plain ring distance first.
    let far = m.offset(i128::MAX);
    let mut msg = routed(Mode::RightOf, far, far);
    let _ = ov.route(&mut msg);
    assert_eq!(msg[37] & FLAG_FINAL, 0);
}

#[test]
fn conn_lists_are_sent_once_per_change() {
    let mut ov = node(key(0), &[key(1), key(2)], true);
    let lists = |ov: &mut Overlay| {
        ov.take_actions().into_iter()
            .filter(|a| matches!(a, Action::Send { msg, .. } if msg[0] == crate::wire::control::KIND_CONN_LIST))
            .count()
    };
    let t = Instant::ZERO + Duration::from_secs(3);
    ov.handle_timeout(t);
    assert_eq!(lists(&mut ov), 2, "one to each link after a change");
    ov.handle_timeout(t + Duration::from_secs(3));
    assert_eq!(lists(&mut ov), 0, "nothing when nothing changed");
    ov.on_link_down(t, PeerIdx(0));
    ov.handle_timeout(t + Duration::from_secs(6));
    assert_eq!(lists(&mut ov), 1);
}

#[test]
fn hop_limits_are_ours_and_enforced() {
    let dst = Addr(1 << 100);
    let keys = by_distance(dst, 400);
    let (me, near) = (keys[10], keys[3]);
    let mut ov = node(me, &[near], true);
    // A peer asking for 255 hops gets our 64.
    let mut msg = routed(Mode::Closest, Addr(7), dst);
    msg[3] = 255;
    assert_eq!(ov.route(&mut msg), Route::Forward(PeerIdx(0)));
    assert_eq!((msg[2], msg[3]), (1, 64));
    assert_eq!(ov.stats.ttl_clamped, 1);
    // One that has used its hops is not forwarded.
    let mut msg = routed(Mode::Closest, Addr(7), dst);
    msg[2] = 64;
    assert_eq!(ov.route(&mut msg), Route::Drop(Refused::HopLimit));
    // Nor is anything claiming to be ours, or a header that does not parse.
    let mut msg = routed(Mode::Closest, Addr::of_key(&me), dst);
    assert_eq!(ov.route(&mut msg), Route::Drop(Refused::Forged));
    let mut msg = routed(Mode::Closest, Addr(7), dst);
    msg[1] = 0;
    assert_eq!(ov.route(&mut msg), Route::Drop(Refused::Malformed));
    assert_eq!(ov.route(&mut [3u8; 39]), Route::Drop(Refused::Malformed));
}

/// Gossip naming `n` nodes, all of them nearer to `me` than anyone linked.
fn fake_gossip(me: Addr, n: u32) -> Vec<u8> {
    gossip(&nearest(me)[..n as usize])
}

/// Keys 1000..1400, nearest `me` first.
fn nearest(me: Addr) -> Vec<NodeKey> {
    let mut keys: Vec<NodeKey> = (1000..1400).map(key).collect();
    keys.sort_by_key(|k| Addr::of_key(k).distance(me));
    keys
}

/// A neighbours message naming `keys`.
fn gossip(keys: &[NodeKey]) -> Vec<u8> {
    let mut msg = Vec::new();
    Neighbours {
        reasons: 0,
        records: keys
            .iter()
            .map(|&key| NodeRecord {
                key,
                endpoint: "198.18.9.9:5140".parse().unwrap(),
            })
            .collect(),
    }
    .emit(&mut msg);
    msg
}

#[test]
fn fake_neighbour_claims_cost_one_attempt_each() {
    let me = key(0);
    let m = Addr::of_key(&me);
    let far: Vec<NodeKey> = by_distance(m.offset(i128::MAX), 4);
    let mut ov = node(me, &far, true);
    let links = |ov: &mut Overlay| {
        ov.take_actions()
            .into_iter()
            .filter(|a| matches!(a, Action::Link { .. }))
            .count()
    };
    let t0 = Instant::ZERO + Duration::from_secs(1);
    // Eight records nearer than anyone we know: only the near slots (two
    // a side at most) are tried, however many are claimed.
    ov.handle_neighbours(t0, PeerIdx(0), &fake_gossip(m, 8))
        .unwrap();
    ov.handle_timeout(t0 + OFFER_WINDOW);
    let tried = links(&mut ov);
    assert!((1..=4).contains(&tried), "{tried} links");
    // While those are being tried, repeating the claim starts nothing.
    let t0 = t0 + OFFER_WINDOW;
    ov.handle_neighbours(t0, PeerIdx(1), &fake_gossip(m, 8))
        .unwrap();
    ov.handle_timeout(t0 + OFFER_WINDOW);
    assert_eq!(links(&mut ov), 0);
    // They never come up: once given up on they are remembered, and the
    // same claims are ignored (for FAILED_FOR), not retried.
    let t1 = t0 + ov.config().link_timeout + Duration::from_secs(1);
    ov.handle_timeout(t1);
    ov.take_actions().into_iter().for_each(drop);
    ov.handle_neighbours(t1, PeerIdx(0), &fake_gossip(m, 8))
        .unwrap();
    ov.handle_timeout(t1 + OFFER_WINDOW);
    let retried = links(&mut ov);
    assert!(retried <= 4, "{retried}");
    assert!(ov.stats.records_ignored >= tried as u64);
    assert!(ov.linking.wanted.len() <= MAX_WANTED);
}

#[test]
fn offers_heard_together_link_only_the_nearest() {
    // A joining node hears from its bootstraps at about the same time:
    // one names fair candidates, the next better ones. Only the nearest
    // two a side of all those offered get a link, not every offer that
    // beat what was known when it came.
    let me = key(0);
    let m = Addr::of_key(&me);
    let far: Vec<NodeKey> = by_distance(m.offset(i128::MAX), 4);
    let mut ov = node(me, &far, true);
    let keys = nearest(m);
    let t0 = Instant::ZERO + Duration::from_secs(1);
    ov.handle_neighbours(t0, PeerIdx(0), &gossip(&keys[40..48]))
        .unwrap();
    ov.handle_neighbours(
        t0 + Duration::from_millis(100),
        PeerIdx(1),
        &gossip(&keys[..8]),
    )
    .unwrap();
    let linked_now = |ov: &mut Overlay| {
        ov.take_actions()
            .into_iter()
            .filter_map(|a| match a {
                Action::Link { key, .. } => Some(key),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert!(linked_now(&mut ov).is_empty(), "offers wait for the window");
    assert!(ov.poll_timeout() <= t0 + OFFER_WINDOW);
    ov.handle_timeout(t0 + OFFER_WINDOW);
    let linked = linked_now(&mut ov);
    // The best two on each side among all 16 offered.
    let side = |right: bool| {
        let mut k: Vec<NodeKey> = keys[..8].iter().chain(&keys[40..48]).copied().collect();
        k.sort_by_key(|k| {
            let a = Addr::of_key(k);
            if right {
                m.right_dist(a)
            } else {
                m.left_dist(a)
            }
        });
        k.truncate(2);
        k
    };
    let mut best: Vec<NodeKey> = side(true).into_iter().chain(side(false)).collect();
    best.sort();
    best.dedup();
    let mut linked_sorted = linked.clone();
    linked_sorted.sort();
    assert_eq!(linked_sorted, best, "linked {linked:?}");
}

#[test]
fn a_crowded_node_trims_its_surplus_links_early() {
    let closes = |ov: &mut Overlay| {
        ov.take_actions()
            .into_iter()
            .filter(|a| matches!(a, Action::Close { .. }))
            .count()
    };
    let at = |s: u64| Instant::ZERO + Duration::from_secs(s);
    // 40 links (a mass join's burst): beyond the near and shortcut slots,
    // the surplus goes once `trim_crowded` old, a burst per heartbeat.
    let keys: Vec<NodeKey> = (1..=40).map(key).collect();
    let mut ov = node(key(0), &keys, true);
    assert!(ov.table().len() > ov.crowd_limit());
    ov.handle_timeout(at(1));
    assert_eq!(closes(&mut ov), 0, "too young");
    ov.handle_timeout(at(ov.config().trim_crowded.as_secs()));
    assert_eq!(closes(&mut ov), TRIM_BURST);
    // A node with a ring's worth of links keeps the same surplus for
    // `trim_after`: in a small ring links are cheap.
    let mut ov = node(key(0), &keys[..CROWD_MIN], true);
    ov.handle_timeout(at(ov.config().trim_crowded.as_secs()));
    assert_eq!(closes(&mut ov), 0);
    ov.handle_timeout(at(ov.config().trim_after.as_secs()));
    assert!(closes(&mut ov) > 0);
}

/// A crowded node trims an open link after `trim_crowded_open`, but one
/// whose other end said it is behind a NAT (or any link, when we are) only
/// after `trim_crowded`: such a link may still be earning its reasons.
#[test]
fn a_link_through_a_nat_is_trimmed_later_than_an_open_one() {
    let at = |ms: u64| Instant::ZERO + Duration::from_millis(ms);
    let closed = |ov: &mut Overlay| -> Vec<u16> {
        ov.take_actions()
            .into_iter()
            .filter_map(|a| match a {
                Action::Close { peer } => Some(peer.0),
                _ => None,
            })
            .collect()
    };
    let keys: Vec<NodeKey> = (1..=40).map(key).collect();
    let mut ov = node(key(0), &keys, true);
    let cfg = ov.config().clone();
    let (open, nat) = (
        cfg.trim_crowded_open.as_millis() as u64,
        cfg.trim_crowded.as_millis() as u64,
    );
    assert!(open < nat);
    // Every peer says it is behind a NAT but the last four.
    let mut msg = Vec::new();
    Neighbours {
        reasons: reason::BEHIND_NAT,
        records: Default::default(),
    }
    .emit(&mut msg);
    for p in 0..36 {
        ov.handle_neighbours(at(0), PeerIdx(p), &msg).unwrap();
    }
    ov.handle_timeout(at(open));
    let gone = closed(&mut ov);
    assert!(
        !gone.is_empty() && gone.iter().all(|&p| p >= 36),
        "only open links go early (those with no reason): {gone:?}"
    );
    ov.handle_timeout(at(nat));
    let gone = closed(&mut ov);
    assert_eq!(gone.len(), TRIM_BURST, "the others at trim_crowded");
    assert!(gone.iter().all(|&p| p < 36), "{gone:?}");

    // Behind a NAT ourselves: nothing goes early, and we say so.
    let mut ov = node(key(0), &keys, true);
    ov.set_behind_nat(true);
    ov.handle_timeout(at(open));
    let actions = ov.take_actions();
    assert!(!actions.iter().any(|a| matches!(a, Action::Close { .. })));
    let told = actions.iter().find_map(|a| match a {
        Action::Send { msg, .. } => Neighbours::parse(msg).ok().map(|n| n.reasons),
        _ => None,
    });
    assert_eq!(
        told.map(|r| r & reason::BEHIND_NAT),
        Some(reason::BEHIND_NAT)
    );
    ov.handle_timeout(at(nat));
    assert!(!closed(&mut ov).is_empty());
}

/// A forward goes on, unchanged, to the link it names, and to nothing else.
#[test]
fn a_forward_goes_on_only_to_a_link_of_ours() {
    use crate::wire::overlay::MSG_FORWARD;
    let me = key(0);
    let links = [key(1), key(2)];
    let mut ov = node(me, &links, true);
    let stranger = Addr::of_key(&key(9));
    let forward = |ov: &mut Overlay, to: Addr| {
        let inner = routed(Mode::Exact, stranger, to);
        let mut outer = Vec::new();
        emit_routed_header(&mut outer, Mode::Exact, 64, stranger, ov.me, MSG_FORWARD);
        outer.extend_from_slice(&inner);
        (
            ov.handle_delivered(Instant::ZERO, PeerIdx(0), &outer),
            inner,
        )
    };
    let (result, inner) = forward(&mut ov, Addr::of_key(&links[1]));
    assert_eq!(result, Ok(()));
    let sent: Vec<(PeerIdx, Vec<u8>)> = ov
        .take_actions()
        .into_iter()
        .filter_map(|a| match a {
            Action::Send { peer, msg } => Some((peer, msg)),
            _ => None,
        })
        .collect();
    assert_eq!(sent, vec![(PeerIdx(1), inner)]);
    let (result, _) = forward(&mut ov, Addr::of_key(&key(5)));
    assert_eq!(result, Err(Refused::NoRoute));
    assert!(ov.take_actions().is_empty());
}

/// A connect-to-me from a member behind a NAT names its first hop: the
/// reply goes there in a forward, since nobody near the requester's
/// address may know it yet.
#[test]
fn a_reply_goes_through_the_hop_the_request_names() {
    use crate::wire::overlay::{Routed, MSG_CTM_REQUEST, MSG_FORWARD};
    let me = key(0);
    let mut ov = node(me, &[key(1), key(2)], true);
    let requester = key(7);
    let first_hop = Addr::of_key(&key(8));
    let at = ov.me;
    let request = |via: Option<Addr>| {
        let mut b = Vec::new();
        emit_routed_header(
            &mut b,
            Mode::Exact,
            64,
            Addr::of_key(&requester),
            at,
            MSG_CTM_REQUEST,
        );
        OverlayMsg::CtmRequest {
            purpose: reason::NEAR | CTM_BEHIND_NAT,
            key: requester,
            token: 5,
            endpoints: [EP.parse().unwrap()].into_iter().collect(),
            via,
            init: Vec::new(),
        }
        .emit(&mut b);
        b
    };
    let replies = |ov: &mut Overlay| -> Vec<(u8, Addr)> {
        ov.take_actions()
            .into_iter()
            .filter_map(|a| match a {
                Action::Send { msg, .. } => {
                    let r = Routed::new_checked(&msg[..]).ok()?;
                    Some((r.msg_type(), r.dst()))
                }
                _ => None,
            })
            .collect()
    };
    ov.handle_delivered(Instant::ZERO, PeerIdx(0), &request(Some(first_hop)))
        .unwrap();
    assert_eq!(replies(&mut ov), vec![(MSG_FORWARD, first_hop)]);
    // Without a named hop the reply is routed to the requester itself.
    ov.handle_delivered(Instant::ZERO, PeerIdx(0), &request(None))
        .unwrap();
    assert_eq!(
        replies(&mut ov),
        vec![(
            crate::wire::overlay::MSG_CTM_REPLY,
            Addr::of_key(&requester)
        )]
    );
}
