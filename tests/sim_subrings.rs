//! Sub-rings in the simulator (docs/SUBRINGS.md): groups over a public
//! ring behind NATs form their own rings, broadcast only to their
//! members, reach members behind symmetric NATs, and survive churn in
//! the public ring. `ringvpn-lab sim-subrings` runs it at 1,000 nodes
//! and 20 groups; this is the same scenario at a size for every test run.

use ringvpn::sim::scenario::NatMix;
use ringvpn::sim::subring::{groups, GroupsConfig};
use std::time::Duration;

#[test]
fn groups_form_sub_rings_scoped_and_through_symmetric_nats() {
    let cfg = GroupsConfig {
        public: 200,
        groups: 6,
        min: 5,
        max: 15,
        seed: 3,
        mix: NatMix {
            symmetric: 0.25,
            ..NatMix::default()
        },
        churn: 0.05,
        churn_time: Duration::from_secs(60),
    };
    let r = groups(&cfg);
    eprintln!("{}", r.render());
    assert!(r.public_consistent_after.is_some());
    let mut symmetric_pairs = 0;
    for (g, o) in r.groups.iter().enumerate() {
        assert!(o.consistent_after.is_some(), "group {g} never consistent");
        assert_eq!(o.broadcast_reached, o.size - 1, "group {g}'s broadcast");
        assert_eq!(
            o.broadcast_leaked, 0,
            "group {g}'s broadcast left the group"
        );
        assert_eq!(
            o.symmetric_reached, o.symmetric_pairs,
            "group {g}'s symmetric pairs"
        );
        assert_eq!(o.final_consistency, 1.0, "group {g} after churn");
        symmetric_pairs += o.symmetric_pairs;
    }
    assert!(
        symmetric_pairs > 0,
        "no pair behind symmetric NATs was tried"
    );
    assert!(
        r.groups.iter().any(|o| o.links_carried > 0),
        "nothing carried"
    );
    for (t, min, _, _) in &r.churn {
        assert!(
            *min >= 0.9,
            "group consistency {min} at {} s of churn",
            t.as_secs()
        );
    }
}
