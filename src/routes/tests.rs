//! The routes policy object alone: a bare overlay for its DHT operations,
//! slot reads answered by hand, liveness as the test says.

use super::*;
use crate::crypto::Seed;
use crate::overlay::OverlayConfig;
use crate::wire::dht::Record;
use std::cell::RefCell;
use std::collections::BTreeMap;

fn id(n: u8) -> Identity {
    Identity::from_seed(&Seed([n; 32]))
}

fn p(s: &str) -> Prefix {
    Prefix::parse(s).unwrap()
}

fn secs(s: u64) -> Instant {
    Instant::from_millis(s * 1000)
}

/// Who answered when, as the node would report.
#[derive(Default)]
struct Heard(RefCell<BTreeMap<NodeKey, (Instant, Duration)>>);

impl Heard {
    fn answer(&self, key: NodeKey, at: Instant, rtt_ms: u64) {
        self.0
            .borrow_mut()
            .insert(key, (at, Duration::from_millis(rtt_ms)));
    }
}

impl Liveness for Heard {
    fn heard(&self, key: &NodeKey) -> (Option<Instant>, Option<Duration>) {
        match self.0.borrow().get(key) {
            Some(&(t, rtt)) => (Some(t), Some(rtt)),
            None => (None, None),
        }
    }
}

struct World {
    routes: Routes,
    ov: Overlay,
    me: Identity,
    heard: Heard,
    /// Advertisers' identities and what they sign.
    ads: Vec<(Identity, Vec<Prefix>)>,
}

impl World {
    fn new(cfg: RoutesConfig) -> World {
        let me = id(1);
        let ov = Overlay::new(me.public(), &[], OverlayConfig::default(), 1, Instant::ZERO);
        let mut w = World {
            routes: Routes::new(cfg, me.public(), Instant::ZERO),
            ov,
            me,
            heard: Heard::default(),
            ads: Vec::new(),
        };
        w.tick(Instant::ZERO); // our first link: slots read 2 s later
        w
    }

    fn tick(&mut self, now: Instant) -> Vec<Action> {
        let signer = Signer {
            identity: &self.me,
            cert: None,
            ip: Some(Ipv4Addr::new(100, 64, 0, 2)),
        };
        self.routes
            .handle_timeout(now, &mut self.ov, &signer, &self.heard, true);
        self.routes.drain_actions().collect()
    }

    /// Answers every slot read in flight with the advertisers' records.
    fn answer_reads(&mut self, now: Instant) -> Vec<Action> {
        let net = self.routes.cfg.network.clone();
        let reads: Vec<u32> = self.routes.reads.to_vec();
        for (slot, op) in reads.into_iter().enumerate() {
            let key = record::slot_key(&net, slot as u8);
            let records = self
                .ads
                .iter()
                .filter(|(a, _)| record::slot_key(&net, record::slot_of(&a.public())) == key)
                .map(|(a, prefixes)| Record {
                    owner: Addr::of_key(&a.public()),
                    ttl_secs: TTL_SECS,
                    value: record::sign(a, None, prefixes, None).unwrap(),
                })
                .collect();
            let e = DhtEvent {
                id: op,
                key,
                outcome: Outcome::Found(records),
                latency: Duration::ZERO,
                hops: 1,
            };
            let judge = Judge {
                trust: None,
                wall_origin_us: 0,
            };
            assert!(self.routes.dht_event(now, &judge, e).is_none());
        }
        self.routes.drain_actions().collect()
    }
}

fn listed(ads: &[(u8, &str)]) -> Vec<(NodeKey, Vec<Prefix>)> {
    ads.iter()
        .map(|(n, s)| (id(*n).public(), vec![p(s)]))
        .collect()
}

fn client(exit: Exit, allowed: &[(u8, &str)]) -> RoutesConfig {
    let mut cfg = RoutesConfig::new("net");
    cfg.exit = exit;
    cfg.listed = listed(allowed);
    cfg.vpn = vec![p("100.64.0.0/10")];
    cfg
}

#[test]
fn a_client_uses_the_fastest_live_gateway_and_fails_over_when_it_dies() {
    let mut w = World::new(client(Exit::Auto, &[(2, "0.0.0.0/0"), (3, "0.0.0.0/0")]));
    w.ads = vec![(id(2), vec![p("0.0.0.0/0")]), (id(3), vec![p("0.0.0.0/0")])];
    let (g2, g3) = (id(2).public(), id(3).public());
    w.tick(secs(2));
    assert_eq!(w.routes.reads.len(), 8, "all slots read");
    w.answer_reads(secs(2));
    assert_eq!(w.routes.advertisers().len(), 2);
    assert_eq!(w.routes.exit(), None, "nobody answered a probe yet");
    let out = w.tick(secs(3));
    assert!(out.contains(&Action::Probe(g2)) && out.contains(&Action::Probe(g3)));
    w.heard.answer(g2, secs(3), 40);
    w.heard.answer(g3, secs(3), 2);
    w.tick(secs(4));
    let outside = "198.19.200.1".parse().unwrap();
    assert_eq!(w.routes.next_hop(outside), Some(g3), "lowest RTT");
    assert!(w.routes.accepts(outside, &g3) && !w.routes.accepts(outside, &g2));
    // g3 stops answering: dead 2 s after it was last heard, then g2.
    w.heard.answer(g2, secs(4), 40);
    w.tick(secs(4));
    assert_eq!(w.routes.exit(), Some(g3), "still within the dead time");
    w.heard.answer(g2, secs(5), 40);
    w.tick(secs(5));
    assert_eq!(w.routes.exit(), Some(g2), "moved");
    assert_eq!(w.routes.stats().switches, 1);
    // g3 comes back faster: moved back only once it has answered 10 s.
    for t in 6..=15 {
        w.heard.answer(g2, secs(t), 40);
        w.heard.answer(g3, secs(t), 1);
        w.tick(secs(t));
        assert_eq!(w.routes.exit(), Some(g2), "g3 not stable yet at {t} s");
    }
    for t in 16..=17 {
        w.heard.answer(g2, secs(t), 40);
        w.heard.answer(g3, secs(t), 1);
        w.tick(secs(t));
    }
    assert_eq!(w.routes.exit(), Some(g3), "back to the faster one");
}

#[test]
fn equally_fast_gateways_are_not_swapped() {
    let mut w = World::new(client(Exit::Auto, &[(2, "0.0.0.0/0"), (3, "0.0.0.0/0")]));
    w.ads = vec![(id(2), vec![p("0.0.0.0/0")]), (id(3), vec![p("0.0.0.0/0")])];
    w.tick(secs(2));
    w.answer_reads(secs(2));
    let (g2, g3) = (id(2).public(), id(3).public());
    w.heard.answer(g2, secs(3), 4);
    w.tick(secs(3));
    assert_eq!(w.routes.exit(), Some(g2), "the only live one");
    for t in 4..40 {
        // The one in use carries our traffic: its pings queue behind it
        // now and then, while the idle one answers at once.
        let busy = if t % 3 == 0 { 30 } else { 4 };
        w.heard.answer(g2, secs(t), busy);
        w.heard.answer(g3, secs(t), 3);
        w.tick(secs(t));
    }
    assert_eq!(
        w.routes.exit(),
        Some(g2),
        "3 ms is not clearly faster than 4"
    );
}

#[test]
fn a_named_exit_is_the_only_one_used() {
    let mut cfg = client(
        Exit::Named("gw-b".into()),
        &[(2, "0.0.0.0/0"), (3, "0.0.0.0/0")],
    );
    cfg.names = vec![
        (id(2).public(), "gw-a".into()),
        (id(3).public(), "gw-b".into()),
    ];
    let mut w = World::new(cfg);
    w.ads = vec![(id(2), vec![p("0.0.0.0/0")]), (id(3), vec![p("0.0.0.0/0")])];
    w.tick(secs(2));
    w.answer_reads(secs(2));
    let out = w.tick(secs(3));
    assert_eq!(
        out,
        vec![Action::Probe(id(3).public())],
        "only gw-b is probed"
    );
    w.heard.answer(id(2).public(), secs(4), 1);
    w.heard.answer(id(3).public(), secs(4), 9);
    w.tick(secs(4));
    assert_eq!(w.routes.exit(), Some(id(3).public()));
}

#[test]
fn subnet_routes_are_installed_and_an_unlisted_advertiser_is_refused() {
    let mut w = World::new(client(Exit::Off, &[(2, "198.19.5.0/24")]));
    // 3 is not listed for anything: its record is refused.
    w.ads = vec![
        (id(2), vec![p("198.19.5.0/24")]),
        (id(3), vec![p("198.19.6.0/24"), p("0.0.0.0/0")]),
    ];
    w.tick(secs(2));
    let out = w.answer_reads(secs(2));
    assert_eq!(out, vec![Action::Install(p("198.19.5.0/24"))]);
    assert_eq!(w.routes.stats().records_refused, 1);
    assert_eq!(w.routes.advertisers().len(), 1);
    w.heard.answer(id(2).public(), secs(3), 1);
    w.tick(secs(3));
    let lan_host = "198.19.5.9".parse().unwrap();
    assert_eq!(w.routes.next_hop(lan_host), Some(id(2).public()));
    assert_eq!(w.routes.next_hop("198.19.6.1".parse().unwrap()), None);
    assert!(
        !w.routes.accepts(lan_host, &id(3).public()),
        "only from the router"
    );
    // The router's record lapses: the route goes.
    w.ads.clear();
    let mut removed = Vec::new();
    for t in 4..=100 {
        w.heard.answer(id(2).public(), secs(t), 1);
        removed.extend(w.tick(secs(t)));
        removed.extend(w.answer_reads(secs(t)));
    }
    assert!(removed.contains(&Action::Remove(p("198.19.5.0/24"))));
    assert_eq!(w.routes.next_hop(lan_host), None);
}

#[test]
fn overlapping_sites_are_both_refused_but_two_routers_for_one_lan_fail_over() {
    let mut w = World::new(client(
        Exit::Off,
        &[
            (2, "198.19.0.0/16"),
            (3, "198.19.0.0/16"),
            (4, "198.19.0.0/16"),
        ],
    ));
    w.ads = vec![
        (id(2), vec![p("198.19.5.0/24")]),
        (id(3), vec![p("198.19.5.0/24")]),
        (id(4), vec![p("198.19.0.0/20")]),
    ];
    w.tick(secs(2));
    let out = w.answer_reads(secs(2));
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(w.routes.overlaps().len(), 3);
    assert!(w.routes.stats().overlaps_refused >= 3);
    // Without the overlapping site, the two routers share the LAN.
    w.ads.pop();
    for t in 3..=80 {
        w.heard.answer(id(2).public(), secs(t), 1);
        w.heard.answer(id(3).public(), secs(t), 1);
        w.tick(secs(t));
        w.answer_reads(secs(t));
    }
    assert!(w.routes.overlaps().is_empty());
    let host = "198.19.5.9".parse().unwrap();
    let first = w.routes.next_hop(host).unwrap();
    let other = if first == id(2).public() {
        id(3)
    } else {
        id(2)
    };
    for t in 81..=85 {
        w.heard.answer(other.public(), secs(t), 1);
        w.tick(secs(t));
    }
    assert_eq!(w.routes.next_hop(host), Some(other.public()));
}

#[test]
fn a_route_inside_the_vpn_is_refused_and_a_gateway_carries_only_what_it_advertises() {
    let mut w = World::new(client(Exit::Off, &[(2, "100.64.0.0/10")]));
    w.ads = vec![(id(2), vec![p("100.100.0.0/16")])];
    w.tick(secs(2));
    assert!(w.answer_reads(secs(2)).is_empty());
    assert_eq!(w.routes.overlaps()[0].other_advertiser, "the VPN itself");
    let mut cfg = RoutesConfig::new("net");
    cfg.advertise = vec![p("0.0.0.0/0"), p("198.19.5.0/24")];
    let gw = Routes::new(cfg, id(5).public(), Instant::ZERO);
    assert!(gw.carries("198.19.200.1".parse().unwrap()));
    assert!(
        !gw.carries("fd00::1".parse().unwrap()),
        "no ::/0 advertised"
    );
}

#[test]
fn a_gateway_registers_its_record_once_its_address_is_held() {
    let me = id(1);
    let mut cfg = RoutesConfig::new("net");
    cfg.advertise = vec![p("0.0.0.0/0")];
    cfg.accept = false;
    let mut ov = Overlay::new(me.public(), &[], OverlayConfig::default(), 1, Instant::ZERO);
    let mut routes = Routes::new(cfg, me.public(), Instant::ZERO);
    let heard = Heard::default();
    let mut signer = Signer {
        identity: &me,
        cert: None,
        ip: None,
    };
    routes.handle_timeout(secs(1), &mut ov, &signer, &heard, true);
    assert!(routes.registered.is_none(), "no address yet");
    signer.ip = Some(Ipv4Addr::new(100, 64, 0, 2));
    routes.handle_timeout(secs(2), &mut ov, &signer, &heard, true);
    assert_eq!(
        routes.registered,
        Some(record::slot_key("net", record::slot_of(&me.public())))
    );
    routes.handle_timeout(secs(4), &mut ov, &signer, &heard, true);
    assert!(
        routes.reads.is_empty(),
        "accepts nothing, exit off: reads nothing"
    );
}
