use super::*;
use crate::crypto::Seed;

fn id(n: u8) -> Identity {
    Identity::from_seed(&Seed([n; 32]))
}

fn ep(n: u8) -> Endpoint {
    Endpoint::udp(format!("198.18.0.{n}:5140").parse().unwrap())
}

fn stored(member: u8, host: u8, issued: u64) -> Record {
    let h = id(host).public();
    Record {
        owner: Addr::of_key(&h),
        ttl_secs: RECORD_TTL_SECS,
        value: record::sign(&id(member), h, issued, &[ep(host)]),
    }
}

fn facts(public_linked: bool, network_linked: bool, eps: &[Endpoint]) -> Facts<'_> {
    Facts {
        public_linked,
        network_linked,
        endpoints: eps,
        unix_secs: 1_800_000_000,
    }
}

#[test]
fn keys_depend_on_name_and_ca() {
    let k = group_key("lab", b"ca-1");
    assert_ne!(k, group_key("lab", b"ca-2"));
    assert_ne!(k, group_key("lab2", b"ca-1"));
    // Length-prefixed: "ab" + "c" is not "a" + "bc".
    assert_ne!(group_key("ab", b"c"), group_key("a", b"bc"));
    assert_ne!(network_id("lab", b"ca-1"), network_id("lab", b"ca-2"));
}

#[test]
fn registers_once_public_links_then_again_when_endpoints_change() {
    let mut g = Group::new(Addr(7), id(1), id(2).public(), 1, Instant::ZERO);
    let eps = [ep(2)];
    g.on_timeout(Instant::ZERO, &facts(false, false, &eps));
    assert!(
        g.drain_actions().next().is_none(),
        "nothing before the public ring"
    );
    let t = Instant::ZERO + LOOKUP_ALONE;
    g.on_timeout(t, &facts(true, false, &eps));
    let acts: Vec<Action> = g.drain_actions().collect();
    assert!(matches!(
        &acts[0],
        Action::Register {
            key: Addr(7),
            ttl: RECORD_TTL_SECS,
            ..
        }
    ));
    assert_eq!(acts[1], Action::Lookup { key: Addr(7) });
    g.lookup_started(42);
    assert!(g.owns(42));
    // Same endpoints, lookup in flight: nothing.
    g.on_timeout(t + LOOKUP_ALONE, &facts(true, false, &eps));
    assert!(g.drain_actions().next().is_none());
    // New endpoints: registered again.
    let moved = [ep(3)];
    g.on_timeout(t + LOOKUP_ALONE, &facts(true, false, &moved));
    let acts: Vec<Action> = g.drain_actions().collect();
    let Action::Register { value, .. } = &acts[0] else {
        panic!("{acts:?}")
    };
    let r = record::verify(value, Addr::of_key(&id(2).public())).unwrap();
    assert_eq!(r.endpoints.as_slice(), &moved);
}

#[test]
fn lookups_link_a_few_members_alone_and_one_unlinked_once_linked() {
    let mut g = Group::new(Addr(7), id(1), id(2).public(), 1, Instant::ZERO);
    let mut records: Vec<Record> = (10..20).map(|m| stored(m, m + 100, 5)).collect();
    // Our own record, an older record of member 10 and a forgery.
    records.push(stored(1, 2, 5));
    records.push(stored(10, 200, 1));
    let mut forged = stored(11, 111, 9);
    forged.owner = Addr(3);
    records.push(forged);
    g.found(Some(&records), false, &|_| false);
    assert_eq!(g.known(), 10);
    assert_eq!(g.stats.bad_records, 1);
    let links: Vec<Action> = g.drain_actions().collect();
    assert_eq!(links.len(), LEAVES);
    for a in &links {
        let Action::Link { key, candidates } = a else {
            panic!("{a:?}")
        };
        assert_ne!(*key, id(1).public());
        // UDP first, then the host over the public ring.
        assert!(candidates[0].is_udp());
        assert!(candidates.last().unwrap().is_carried());
    }
    // Member 10's newer record is kept (its host 110, not 200).
    let linked_all_but = |k: &NodeKey| *k != id(15).public();
    g.found(Some(&records), true, &linked_all_but);
    let links: Vec<Action> = g.drain_actions().collect();
    assert_eq!(links.len(), 1);
    assert!(matches!(&links[0], Action::Link { key, .. } if *key == id(15).public()));
    let carried = Endpoint::carried(Addr::of_key(&id(115).public()).to_bytes());
    assert!(matches!(&links[0], Action::Link { candidates, .. } if candidates.contains(&carried)));
    // Members whose records are gone are forgotten; a failed lookup
    // forgets nothing.
    g.found(None, true, &|_| true);
    assert_eq!(g.known(), 10);
    g.found(Some(&records[..3]), true, &|_| true);
    assert_eq!(g.known(), 3);
}
