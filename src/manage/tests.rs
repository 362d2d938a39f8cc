//! The manager's checks alone; trees and timeouts run in the simulator
//! (tests/manage_sim.rs).

use super::*;
use crate::crypto::cert::Cert;
use crate::crypto::Seed;

const UNIX: u64 = 1_800_000_000;

fn task(origin: &Identity, cert: Option<&[u8]>, issued: u64) -> (Task, [u8; 64]) {
    let t = Task {
        kind: TaskKind::Stats,
        id: 7,
        origin: origin.public(),
        issued,
        args: Vec::new(),
        cred_type: if cert.is_some() { 2 } else { 1 },
        cred: cert.unwrap_or(&[]).to_vec(),
    };
    let sig = origin.sign(&t.signed_bytes());
    (t, sig)
}

#[test]
fn only_fresh_tasks_signed_by_an_admin_are_served_in_certificate_mode() {
    let ca = Identity::from_seed(&Seed([9; 32]));
    let window = (UNIX - 60, UNIX + 86_400);
    let ca_cert = Cert::new_ca(&ca, "lab", "ca", window).unwrap();
    let trust = Trust {
        network: "lab".into(),
        cas: vec![ca_cert],
        revocations: vec![],
    };
    let auth = Auth {
        trust: Some(&trust),
        admin_group: "admin",
        wall_origin_us: UNIX * 1_000_000,
    };
    let cert_for = |id: &Identity, groups: Vec<String>| {
        Cert::new_node(&ca, id.public(), "lab", "x", vec![], groups, window)
            .unwrap()
            .encode()
            .unwrap()
    };
    let admin = Identity::from_seed(&Seed([1; 32]));
    let user = Identity::from_seed(&Seed([2; 32]));
    let admin_cert = cert_for(&admin, vec!["admin".into()]);
    let user_cert = cert_for(&user, vec!["staff".into()]);
    let now = Instant::ZERO;
    let (t, sig) = task(&admin, Some(&admin_cert), UNIX);
    assert!(authorized(&t, &sig, &auth, now));
    let (t, sig) = task(&user, Some(&user_cert), UNIX);
    assert!(!authorized(&t, &sig, &auth, now), "not in the admin group");
    let (t, sig) = task(&admin, None, UNIX);
    assert!(!authorized(&t, &sig, &auth, now), "no certificate");
    let (t, sig) = task(&admin, Some(&admin_cert), UNIX - 600);
    assert!(!authorized(&t, &sig, &auth, now), "stale");
    let (mut t, sig) = task(&admin, Some(&admin_cert), UNIX);
    t.args = b"ip=100.64.0.1".to_vec();
    assert!(!authorized(&t, &sig, &auth, now), "altered after signing");
    // Someone else's certificate with the admin's name on the task.
    let (mut t, _) = task(&user, Some(&admin_cert), UNIX);
    let sig = user.sign(&t.signed_bytes());
    t.origin = user.public();
    assert!(
        !authorized(&t, &sig, &auth, now),
        "a certificate for another key"
    );
}

#[test]
fn a_crawl_spreads_its_descriptions_by_ring_distance_from_the_origin() {
    let spread = crawl::spread_for(2000);
    assert_eq!(spread, Duration::from_secs(10), "2,000 members at 200/s");
    let args = (spread.as_millis() as u32).to_be_bytes();
    assert_eq!(crawl::spread_of(&args), Some(spread));
    assert_eq!(crawl::spread_of(&[]), None, "the counting phase");
    let origin = Addr(u128::MAX - 5);
    let half = Addr(origin.0.wrapping_add(1 << 127));
    assert_eq!(crawl::turn(origin, half, spread), Duration::from_secs(5));
    assert_eq!(crawl::turn(origin, origin, spread), Duration::ZERO);
    assert!(crawl::turn(origin, Addr(origin.0 - 1), spread) <= spread);
}
