use super::*;
use crate::wire::describe::Link;
use crate::wire::key::NodeKey;

/// Four members with their true neighbours, all linked to their right
/// neighbour directly and member 0 to member 2 through a tunnel.
fn ring() -> Outcome {
    let keys: Vec<NodeKey> = (1..=4u8).map(|k| NodeKey([k; 32])).collect();
    let mut order: Vec<NodeKey> = keys.clone();
    order.sort_by_key(Addr::of_key);
    let addr = |i: usize| Addr::of_key(&order[i % 4]);
    let prefix = |i: usize| (addr(i).0 >> 64) as u64;
    let described = (0..4)
        .map(|i| {
            let mut links = vec![
                Link {
                    prefix: prefix(i + 1),
                    path: LinkPath::Direct,
                },
                Link {
                    prefix: prefix(i + 3),
                    path: LinkPath::Direct,
                },
            ];
            if i == 0 {
                links.push(Link {
                    prefix: prefix(2),
                    path: LinkPath::Tunnel,
                });
            }
            Description {
                task: 1,
                key: order[i],
                left: Some(addr(i + 3)),
                right: Some(addr(i + 1)),
                ipv4: Some(std::net::Ipv4Addr::new(100, 64, 0, i as u8 + 1)),
                ipv6: None,
                name: format!("m{i}<&>"),
                endpoints: Default::default(),
                links,
            }
        })
        .collect();
    let mut reduced = crate::wire::task::Reduced::default();
    reduced.add("members", 4);
    Outcome { reduced, described }
}

#[test]
fn a_true_ring_is_consistent_and_each_pair_is_one_chord() {
    let o = ring();
    let v = RingView::new(&o);
    assert_eq!((v.inconsistent(), v.consistency()), (0, 1.0));
    assert_eq!(
        v.chords.len(),
        5,
        "4 ring links, both ends reporting, and one tunnel"
    );
    assert_eq!(v.paths(), [4, 1, 0]);
    assert!(!o.partial());
}

#[test]
fn a_wrong_neighbour_is_named_and_drawn_red() {
    let mut o = ring();
    let mut order: Vec<Addr> = o.described.iter().map(Description::addr).collect();
    order.sort();
    let i = o
        .described
        .iter()
        .position(|d| d.addr() == order[1])
        .unwrap();
    o.described[i].right = Some(order[3]);
    let v = RingView::new(&o);
    assert_eq!(v.inconsistent(), 1);
    assert_eq!(v.consistency(), 7.0 / 8.0);
    let text = render_text(&o, Duration::from_millis(5));
    assert!(text.contains("sees right"), "{text}");
    let svg = render_svg(&o, Duration::from_millis(5));
    assert_eq!(svg.matches(&format!("stroke=\"{WRONG}\"")).count(), 1);
    assert!(svg.contains("m1&lt;&amp;&gt;"), "names are escaped");
    assert!(!svg.contains("m1<&>"));
    let json = render_json(&o, Duration::from_millis(5));
    assert!(json.contains("\"inconsistent\":1"), "{json}");
}

#[test]
fn a_crawl_short_of_its_count_is_partial_everywhere() {
    let mut o = ring();
    o.described.pop();
    assert!(o.partial());
    assert!(render_text(&o, Duration::ZERO).contains("PARTIAL"));
    assert!(render_json(&o, Duration::ZERO).contains("\"partial\":true"));
    assert!(render_svg(&o, Duration::ZERO).contains("PARTIAL"));
}

#[test]
fn a_claim_naming_an_undescribed_member_is_not_judged() {
    let mut o = ring();
    // Drop one member: its two neighbours name it, and cannot be judged
    // on that side; the rest is consistent.
    let mut order: Vec<Addr> = o.described.iter().map(Description::addr).collect();
    order.sort();
    o.described.retain(|d| d.addr() != order[2]);
    let v = RingView::new(&o);
    assert_eq!(v.inconsistent(), 0);
    assert_eq!(v.judged, 4, "6 claims, 2 name the missing member");
    assert_eq!(v.consistency(), 1.0);
    // A claim naming a described member that is not adjacent is wrong.
    let i = o
        .described
        .iter()
        .position(|d| d.addr() == order[0])
        .unwrap();
    o.described[i].right = Some(order[3]);
    assert_eq!(RingView::new(&o).inconsistent(), 1);
}
