//! Two (or three) nodes wired back to back in memory, in virtual time.

use super::*;
use crate::crypto::Seed;
use std::net::SocketAddr;
use std::time::Duration;

const EP_A: &str = "198.18.0.1:5140";
const EP_B: &str = "198.18.0.2:5140";
const EP_C: &str = "198.18.0.3:5140";

fn ep(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn identity(n: u8) -> Identity {
    Identity::from_seed(&Seed([n; 32]))
}

fn node(me: u8, peers: &[(u8, &str)], timers: Timers) -> Node {
    let cfg = NodeConfig {
        peers: peers
            .iter()
            .map(|&(n, e)| PeerConfig {
                name: format!("n{n}"),
                key: identity(n).public(),
                endpoint: Some(ep(e)),
            })
            .collect(),
        timers,
        pool_slots: 64,
        wall_origin_us: 1_700_000_000_000_000,
        rng_seed: u64::from(me),
        ..NodeConfig::default()
    };
    Node::new(identity(me), cfg, Instant::ZERO)
}

/// A frame from `src` MAC to `dst` MAC with a payload.
fn frame(dst: [u8; 6], src: [u8; 6], payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(payload);
    f
}

const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];

/// A tiny network: delivers every queued datagram between the nodes
/// (optionally through a tap that may drop or mutate), until quiet.
struct Net {
    nodes: Vec<(SocketAddr, Node)>,
    now: Instant,
}

impl Net {
    fn pair(timers: Timers) -> Net {
        Net {
            nodes: vec![
                (ep(EP_A), node(1, &[(2, EP_B)], timers.clone())),
                (ep(EP_B), node(2, &[(1, EP_A)], timers)),
            ],
            now: Instant::ZERO,
        }
    }

    fn deliver(&mut self, mut tap: impl FnMut(usize, &mut Vec<u8>) -> bool) -> usize {
        let mut delivered = 0;
        for _ in 0..100 {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                while let Some(t) = self.nodes[i].1.poll_transmit() {
                    let mut bytes = self.nodes[i].1.pool().data(&t.buf).to_vec();
                    self.nodes[i].1.pool_mut().free(t.buf);
                    let from = self.nodes[i].0;
                    moved = true;
                    if !tap(i, &mut bytes) {
                        continue;
                    }
                    if let Some(j) = self.nodes.iter().position(|(a, _)| *a == t.dst.addr) {
                        let n = &mut self.nodes[j].1;
                        let b = n.pool_mut().alloc_with(&bytes).unwrap();
                        n.handle_datagram(self.now, from, b);
                        delivered += 1;
                    }
                }
            }
            if !moved {
                break;
            }
        }
        delivered
    }

    fn tick(&mut self, d: Duration) {
        self.now = self.now + d;
        for (_, n) in &mut self.nodes {
            n.handle_timeout(self.now);
        }
    }

    fn send_frame(&mut self, i: usize, f: &[u8]) {
        let n = &mut self.nodes[i].1;
        let b = n.pool_mut().alloc_with(f).unwrap();
        n.handle_frame(self.now, b);
    }

    fn frames_out(&mut self, i: usize) -> Vec<Vec<u8>> {
        let n = &mut self.nodes[i].1;
        let mut out = Vec::new();
        while let Some(b) = n.poll_frame() {
            out.push(n.pool().data(&b).to_vec());
            n.pool_mut().free(b);
        }
        out
    }

    fn up(&self, i: usize) -> bool {
        self.nodes[i]
            .1
            .status(self.now)
            .peers
            .iter()
            .all(|p| p.state == "up")
    }
}

/// Node 0's current session index with its first peer.
fn current_index(net: &Net) -> u32 {
    net.nodes[0].1.peers[0]
        .sessions
        .current
        .as_ref()
        .unwrap()
        .local_index
}

fn established() -> Net {
    let mut net = Net::pair(Timers::default());
    net.tick(Duration::ZERO);
    net.deliver(|_, _| true);
    assert!(
        net.up(0) && net.up(1),
        "link should come up on the first exchange"
    );
    net
}

#[test]
fn crossed_handshakes_settle_on_one_session() {
    // Both configured peers start at once: the smaller key withdraws its
    // init, so both sides send on the same session and nothing is dropped.
    let net = established();
    let cur = |i: usize| {
        let s = net.nodes[i].1.peers[0].sessions.current.as_ref().unwrap();
        (s.local_index, s.remote_index)
    };
    let ((l0, r0), (l1, r1)) = (cur(0), cur(1));
    assert_eq!((r0, r1), (l1, l0), "one session, seen from both ends");
    for (_, n) in &net.nodes {
        assert_eq!(n.stats().total_drops(), 0);
        assert!(
            n.status(net.now).peers[0].rtt.is_some(),
            "both ends measured the RTT"
        );
    }
}

#[test]
fn handshake_on_start_then_frames_both_ways() {
    let mut net = established();
    let f = frame(MAC_B, MAC_A, b"hello from a");
    net.send_frame(0, &f);
    net.deliver(|_, _| true);
    assert_eq!(net.frames_out(1), vec![f]);
    let g = frame(MAC_A, MAC_B, &[7u8; 1386]);
    net.send_frame(1, &g);
    net.deliver(|_, _| true);
    assert_eq!(net.frames_out(0), vec![g]);
    for (_, n) in &net.nodes {
        assert_eq!(n.stats().total_drops(), 0);
        assert_eq!(n.pool().in_use(), 0, "every buffer returned to the pool");
        assert!(n.status(net.now).peers[0].rtt.is_some());
    }
}

#[test]
fn frames_wait_for_the_handshake() {
    let mut net = Net::pair(Timers::default());
    // A frame before any handshake: queued, handshake started.
    let f = frame(MAC_B, MAC_A, b"early");
    net.send_frame(0, &f);
    net.deliver(|_, _| true);
    assert_eq!(net.frames_out(1), vec![f]);
}

#[test]
fn responder_releases_waiting_frames_when_the_session_is_confirmed() {
    let mut net = Net::pair(Timers::default());
    // B has a frame waiting; only A's handshake gets through (B's init is lost).
    let f = frame(MAC_A, MAC_B, b"waited");
    net.send_frame(1, &f);
    net.tick(Duration::ZERO);
    net.deliver(|i, b| !(i == 1 && b[1] == 1));
    assert_eq!(net.frames_out(0), vec![f]);
    assert_eq!(net.nodes[1].1.pool().in_use(), 0);
}

#[test]
fn lost_handshakes_are_retransmitted_with_backoff() {
    let mut net = Net::pair(Timers::default());
    net.tick(Duration::ZERO);
    // Lose everything for a while.
    let mut sent = 0;
    for _ in 0..40 {
        sent += net.deliver(|_, _| false);
        net.tick(Duration::from_millis(250));
    }
    assert_eq!(sent, 0);
    let attempts = net.nodes[0].1.peers[0]
        .hs
        .pending
        .as_ref()
        .unwrap()
        .attempts;
    // 10 s with 1, 2, 4, 8 s backoff (+ jitter): 4 or 5 attempts, not 40.
    assert!((3..=5).contains(&attempts), "attempts {attempts}");
    // When the network heals, the link comes up at the next retry.
    for _ in 0..80 {
        net.deliver(|_, _| true);
        net.tick(Duration::from_millis(250));
    }
    assert!(net.up(0) && net.up(1));
}

#[test]
fn rekey_by_count_keeps_traffic_flowing() {
    let timers = Timers {
        rekey_after_messages: 20,
        ..Timers::default()
    };
    let mut net = Net::pair(timers);
    net.tick(Duration::ZERO);
    net.deliver(|_, _| true);
    let first = current_index(&net);
    let mut received = 0;
    for i in 0..200u32 {
        // Several frames in flight per delivery round: rekey happens mid-batch.
        for _ in 0..3 {
            net.send_frame(0, &frame(MAC_B, MAC_A, &i.to_be_bytes()));
        }
        net.deliver(|_, _| true);
        received += net.frames_out(1).len();
        // Slow enough for the per-source handshake rate limit (10/s).
        net.tick(Duration::from_millis(50));
    }
    assert_eq!(received, 600, "no frame lost across rekeys");
    let now_idx = current_index(&net);
    assert_ne!(first, now_idx);
    assert!(net.nodes[0].1.stats().handshakes_completed >= 10);
    let drops = net.nodes[1].1.status(net.now).drops;
    assert_eq!(net.nodes[1].1.stats().total_drops(), 0, "{drops:?}");
}

#[test]
fn rekey_by_time_and_expiry() {
    let mut net = established();
    let first = current_index(&net);
    for s in 0..400 {
        net.tick(Duration::from_secs(1));
        net.deliver(|_, _| true);
        net.send_frame(0, &frame(MAC_B, MAC_A, &(s as u32).to_be_bytes()));
        net.deliver(|_, _| true);
        assert_eq!(net.frames_out(1).len(), 1, "frame lost at {s} s");
    }
    let cur = net.nodes[0].1.peers[0].sessions.current.as_ref().unwrap();
    assert_ne!(first, cur.local_index);
    assert!(net.now.saturating_since(cur.created) < Duration::from_secs(180));
    // Silence: sessions are dropped after the reject time, nothing leaks.
    for _ in 0..400 {
        net.tick(Duration::from_secs(1));
        net.deliver(|_, _| false);
    }
    assert!(net.nodes[0].1.peers[0].sessions.current.is_none());
    assert!(
        net.nodes[0].1.index.by_session.len() <= 1,
        "only the pending init index remains"
    );
}

#[test]
fn replayed_tampered_and_garbage_datagrams_are_counted_drops() {
    let mut net = established();
    let mut captured = Vec::new();
    net.send_frame(0, &frame(MAC_B, MAC_A, b"once"));
    net.deliver(|_, b| {
        captured.push(b.clone());
        true
    });
    assert_eq!(net.frames_out(1).len(), 1);
    let b = &mut net.nodes[1].1;
    let from = ep(EP_A);
    let inject = |n: &mut Node, bytes: &[u8]| {
        let buf = n.pool_mut().alloc_with(bytes).unwrap();
        n.handle_datagram(Instant::ZERO, from, buf);
    };
    inject(b, &captured[0]);
    assert_eq!(b.stats().drops(DropReason::Replay), 1);
    let mut t = captured[0].clone();
    let last = t.len() - 1;
    t[last] ^= 1;
    t[8..16].copy_from_slice(&99u64.to_be_bytes());
    inject(b, &t);
    assert_eq!(b.stats().drops(DropReason::AuthFailure), 1);
    inject(b, &[1, 3]);
    inject(b, &[9, 3, 0, 0, 0]);
    inject(b, &[1, 77, 0, 0]);
    inject(
        b,
        &[
            1, 3, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0,
        ],
    );
    inject(b, &[1, 1, 0, 0]);
    assert_eq!(b.stats().drops(DropReason::BadLength), 2);
    assert_eq!(b.stats().drops(DropReason::BadVersion), 1);
    assert_eq!(b.stats().drops(DropReason::BadType), 1);
    assert_eq!(b.stats().drops(DropReason::UnknownSession), 1);
    assert!(b.poll_frame().is_none());
    assert_eq!(b.pool().in_use(), 0);
}

/// The responder keeps its answer for a copy of the init coming the other
/// way, and lets it go once the initiator has used the session.
#[test]
fn the_answer_is_let_go_once_the_initiator_uses_the_session() {
    let mut net = Net::pair(Timers::default());
    net.tick(Duration::ZERO);
    // Only A's init and B's answer get through: B waits on A's first message.
    net.deliver(|i, b| (i == 0 && b[1] == 1) || (i == 1 && b[1] == 2));
    let answer = |net: &Net| net.nodes[1].1.peers[0].hs.answer.is_some();
    assert!(answer(&net), "kept while unconfirmed");
    let f = frame(MAC_B, MAC_A, b"confirm");
    net.send_frame(0, &f);
    net.deliver(|_, _| true);
    assert_eq!(net.frames_out(1), vec![f]);
    assert!(!answer(&net), "let go once used");
}

#[test]
fn replayed_init_does_not_reset_the_session() {
    let mut net = Net::pair(Timers::default());
    net.tick(Duration::ZERO);
    let mut inits = Vec::new();
    net.deliver(|i, b| {
        if i == 0 && b[1] == 1 {
            inits.push(b.clone());
        }
        true
    });
    let before = net.nodes[1].1.peers[0]
        .sessions
        .current
        .as_ref()
        .unwrap()
        .local_index;
    let b = &mut net.nodes[1].1;
    let buf = b.pool_mut().alloc_with(&inits[0]).unwrap();
    b.handle_datagram(net.now, ep(EP_A), buf);
    assert_eq!(b.stats().drops(DropReason::HandshakeReplay), 1);
    assert!(b.poll_transmit().is_none());
    let after = b.peers[0].sessions.current.as_ref().unwrap().local_index;
    assert_eq!(before, after);
}

/// B restarts with a clock an hour behind (a router without a real-time
/// clock, before NTP): its inits are older than the newest A has seen.
/// A refuses them as replays while the old session could still be B's,
/// then answers provisionally, and the link is back; nothing moved until
/// B used the session.
#[test]
fn a_peer_whose_clock_went_back_links_again() {
    let mut net = established();
    let mut b = node(2, &[(1, EP_A)], Timers::default());
    b.env.wall_origin_us -= 3_600_000_000;
    net.nodes[1].1 = b;
    let mut up_after = None;
    let mut inits = Vec::new();
    for s in 1..=40 {
        net.tick(Duration::from_secs(1));
        net.deliver(|i, b| {
            if i == 1 && b[1] == 1 {
                inits.push(b.clone());
            }
            true
        });
        if up_after.is_none() && net.up(0) && net.up(1) {
            up_after = Some(s);
        }
    }
    let replays = net.nodes[0].1.stats().drops(DropReason::HandshakeReplay);
    assert!(replays >= 1, "refused at first");
    let after = up_after.expect("linked again");
    assert!(after <= 20, "up after {after} s");
    net.send_frame(1, &frame(MAC_A, MAC_B, b"from the past"));
    net.deliver(|_, _| true);
    assert_eq!(net.frames_out(0).len(), 1);
    // The replay guard follows B's clock now: B's first init from the
    // older clock, sent again while the link is alive, is a replay.
    let a = &mut net.nodes[0].1;
    let buf = a.pool_mut().alloc_with(&inits[0]).unwrap();
    a.handle_datagram(net.now, ep(EP_B), buf);
    assert_eq!(a.stats().drops(DropReason::HandshakeReplay), replays + 1);
    assert!(net.up(0) && net.up(1));
}

#[test]
fn unknown_key_is_refused() {
    // C knows A, but A does not know C.
    let mut net = Net::pair(Timers::default());
    net.nodes
        .push((ep(EP_C), node(3, &[(1, EP_A)], Timers::default())));
    net.tick(Duration::ZERO);
    net.deliver(|_, _| true);
    assert!(!net.up(2));
    assert!(net.nodes[0].1.stats().drops(DropReason::UnknownPeer) >= 1);
    assert!(net.up(0) && net.up(1));
}

#[test]
fn restart_and_roaming_reestablish_the_link() {
    let mut net = established();
    // B restarts on a new endpoint with fresh state (same key).
    let new_b = ep("198.18.0.9:6000");
    net.nodes[1] = (new_b, node(2, &[(1, EP_A)], Timers::default()));
    net.tick(Duration::from_secs(1));
    net.deliver(|_, _| true);
    assert!(net.up(1));
    assert_eq!(net.nodes[0].1.peers[0].reach.endpoint, Some(new_b.into()));
    net.send_frame(0, &frame(MAC_B, MAC_A, b"after restart"));
    net.deliver(|_, _| true);
    assert_eq!(net.frames_out(1).len(), 1);
}

#[test]
fn silent_peer_is_detected_and_relinked() {
    let mut net = established();
    for _ in 0..40 {
        net.tick(Duration::from_secs(1));
        net.deliver(|i, _| i == 0); // B's packets are lost
    }
    let st = net.nodes[0].1.status(net.now);
    assert_eq!(st.peers[0].state, "connecting");
    for _ in 0..40 {
        net.tick(Duration::from_secs(1));
        net.deliver(|_, _| true);
    }
    assert!(net.up(0) && net.up(1));
}

#[test]
fn flood_to_several_peers_and_learn_macs() {
    let mut net = Net {
        nodes: vec![
            (
                ep(EP_A),
                node(1, &[(2, EP_B), (3, EP_C)], Timers::default()),
            ),
            (ep(EP_B), node(2, &[(1, EP_A)], Timers::default())),
            (ep(EP_C), node(3, &[(1, EP_A)], Timers::default())),
        ],
        now: Instant::ZERO,
    };
    net.tick(Duration::ZERO);
    net.deliver(|_, _| true);
    let bcast = frame([0xff; 6], MAC_A, b"who has");
    net.send_frame(0, &bcast);
    net.deliver(|_, _| true);
    assert_eq!(net.frames_out(1), vec![bcast.clone()]);
    assert_eq!(net.frames_out(2), vec![bcast]);
    // B answers: A learns B's MAC and unicasts from then on.
    net.send_frame(1, &frame(MAC_A, MAC_B, b"me"));
    net.deliver(|_, _| true);
    assert_eq!(net.frames_out(0).len(), 1);
    net.send_frame(0, &frame(MAC_B, MAC_A, b"just you"));
    net.deliver(|_, _| true);
    assert_eq!(net.frames_out(1).len(), 1);
    assert_eq!(net.frames_out(2).len(), 0);
}

#[test]
fn timeouts_are_reported() {
    let net = established();
    let t = net.nodes[0].1.poll_timeout().unwrap();
    assert!(t > net.now && t <= net.now + Duration::from_secs(10));
}

mod certs;
mod flood;
mod hostile_members;
mod hostile_overlay;
mod poisoning;
mod reflection;
mod tunnel;
mod underlay;
