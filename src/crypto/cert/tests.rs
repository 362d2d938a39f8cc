//! Certificates and revocation lists: encoding, strictness, trust.
use super::*;
use crate::crypto::keys::Seed;

fn ca(n: u8) -> (Identity, Cert) {
    let id = Identity::from_seed(&Seed([n; 32]));
    let cert = Cert::new_ca(&id, "office", &format!("ca{n}"), (1_000, 1_000_000)).unwrap();
    (id, cert)
}

fn node_cert(ca: &Identity, key: NodeKey, network: &str) -> Cert {
    let prefixes = vec![
        Prefix::parse("100.64.0.10").unwrap(),
        Prefix::parse("fd00::/64").unwrap(),
    ];
    let groups = vec!["staff".into()];
    Cert::new_node(
        ca,
        key,
        network,
        "laptop",
        prefixes,
        groups,
        (1_000, 100_000),
    )
    .unwrap()
}

/// A certificate that routes nothing is encoded as before (version 1):
/// certificates signed before routes existed still verify, and older
/// nodes read new ones.
#[test]
fn routes_are_version_2_and_only_when_present() {
    let (id, _) = ca(1);
    let member = Identity::from_seed(&Seed([9; 32])).public();
    let plain = node_cert(&id, member, "office");
    let bytes = plain.encode().unwrap();
    assert_eq!(bytes[0], VERSION);
    let routes = vec![
        Prefix::parse("0.0.0.0/0").unwrap(),
        Prefix::parse("198.19.5.0/24").unwrap(),
    ];
    let gw = plain.clone().with_routes(routes.clone(), &id).unwrap();
    let gw_bytes = gw.encode().unwrap();
    assert_eq!(gw_bytes[0], VERSION_ROUTES);
    let back = Cert::decode(&gw_bytes).unwrap();
    assert_eq!(back, gw);
    assert!(back.signature_ok());
    assert_eq!(back.routes, routes);
    // The routes are signed: changing one breaks the signature.
    let mut forged = back.clone();
    forged.routes[1] = Prefix::parse("198.19.6.0/24").unwrap();
    assert!(!forged.signature_ok());
    // Removing every route makes a version 1 body the CA never signed.
    let mut stripped = back;
    stripped.routes.clear();
    assert!(!stripped.signature_ok());
}

#[test]
fn a_route_covers_its_own_family_and_longer_prefixes_only() {
    let (id, _) = ca(1);
    let member = Identity::from_seed(&Seed([9; 32])).public();
    let p = |s: &str| Prefix::parse(s).unwrap();
    let site = node_cert(&id, member, "office")
        .with_routes(vec![p("198.19.5.0/24")], &id)
        .unwrap();
    assert!(site.may_route(&p("198.19.5.0/24")));
    assert!(site.may_route(&p("198.19.5.128/25")));
    assert!(!site.may_route(&p("198.19.0.0/16")), "wider than granted");
    assert!(!site.may_route(&p("198.19.6.0/24")));
    assert!(!site.may_route(&p("0.0.0.0/0")));
    let exit = node_cert(&id, member, "office")
        .with_routes(vec![p("0.0.0.0/0")], &id)
        .unwrap();
    assert!(exit.may_route(&p("0.0.0.0/0")));
    assert!(exit.may_route(&p("198.19.200.0/24")));
    assert!(!exit.may_route(&p("::/0")), "IPv4 default route, not IPv6");
    assert!(!exit.may_route(&p("::ffff:0:0/96")));
    assert!(!node_cert(&id, member, "office").may_route(&p("198.19.5.0/24")));
}

/// The largest certificate the bounds allow still fits a handshake's
/// credential (and so an address record).
#[test]
fn the_largest_certificate_fits_a_handshake() {
    let (id, _) = ca(1);
    let member = Identity::from_seed(&Seed([9; 32])).public();
    let v6 = |i: usize| Prefix::parse(&format!("fd00:{i:x}::/64")).unwrap();
    let text = |c: char, n: usize| std::iter::repeat(c).take(n).collect::<String>();
    let big = Cert::new_node(
        &id,
        member,
        &text('n', MAX_TEXT),
        &text('m', MAX_TEXT),
        (0..MAX_PREFIXES).map(v6).collect(),
        (0..MAX_GROUPS)
            .map(|i| format!("{i}{}", text('g', MAX_GROUP - 1)))
            .collect(),
        (1_000, 100_000),
    )
    .unwrap()
    .with_routes((0..MAX_ROUTES).map(|i| v6(100 + i)).collect(), &id)
    .unwrap();
    let len = big.encode().unwrap().len();
    assert!(len <= crate::wire::handshake::MAX_CRED_LEN, "{len} B");
}

#[test]
fn route_encodings_are_strict() {
    let (id, ca_cert) = ca(1);
    let member = Identity::from_seed(&Seed([9; 32])).public();
    let p = |s: &str| Prefix::parse(s).unwrap();
    // Version 2 with no routes: not the one encoding of that certificate.
    let mut b = node_cert(&id, member, "office").encode().unwrap();
    b[0] = VERSION_ROUTES;
    let sig = b.split_off(b.len() - SIG_LEN);
    b.push(0);
    b.extend_from_slice(&sig);
    assert_eq!(Cert::decode(&b), Err(CertError::Malformed));
    // A CA routes nothing.
    assert!(ca_cert
        .clone()
        .with_routes(vec![p("0.0.0.0/0")], &id)
        .is_err());
    // At most MAX_ROUTES.
    let many = (0..=MAX_ROUTES as u8)
        .map(|i| p(&format!("198.19.{i}.0/24")))
        .collect();
    assert!(node_cert(&id, member, "office")
        .with_routes(many, &id)
        .is_err());
}

#[test]
fn round_trip_armour_and_strictness() {
    let (ca_id, _) = ca(1);
    let key = Identity::from_seed(&Seed([9; 32])).public();
    let c = node_cert(&ca_id, key, "office");
    let bytes = c.encode().unwrap();
    assert_eq!(Cert::decode(&bytes).unwrap(), c);
    let text = armour(CERT_ARMOUR, &bytes);
    assert_eq!(dearmour(CERT_ARMOUR, &text).unwrap(), vec![bytes.clone()]);
    // Trailing bytes, truncation and a bad version are refused.
    let mut long = bytes.clone();
    long.push(0);
    assert_eq!(Cert::decode(&long), Err(CertError::Malformed));
    for n in 0..bytes.len() {
        assert_eq!(Cert::decode(&bytes[..n]), Err(CertError::Malformed));
    }
    let mut v = bytes.clone();
    v[0] = 2;
    assert_eq!(Cert::decode(&v), Err(CertError::Malformed));
    assert!(dearmour(CERT_ARMOUR, "junk").is_err());
}

#[test]
fn trust_checks_each_reason() {
    let (ca1, ca1_cert) = ca(1);
    let (ca2, _) = ca(2);
    let key = Identity::from_seed(&Seed([9; 32])).public();
    let other = Identity::from_seed(&Seed([8; 32])).public();
    let mut trust = Trust {
        network: "office".into(),
        cas: vec![ca1_cert],
        revocations: vec![],
    };
    let good = node_cert(&ca1, key, "office");
    assert_eq!(trust.check(&good, &key, 5_000), Ok(()));
    assert_eq!(trust.check(&good, &key, 1_000 - CLOCK_SKEW), Ok(()), "skew");
    assert_eq!(trust.check(&good, &other, 5_000), Err(CertError::WrongKey));
    assert_eq!(trust.check(&good, &key, 200_000), Err(CertError::Expired));
    assert_eq!(trust.check(&good, &key, 10), Err(CertError::Expired));
    let foreign = node_cert(&ca2, key, "office");
    assert_eq!(
        trust.check(&foreign, &key, 5_000),
        Err(CertError::UnknownCa)
    );
    let wrong_net = node_cert(&ca1, key, "lab");
    assert_eq!(
        trust.check(&wrong_net, &key, 5_000),
        Err(CertError::WrongNetwork)
    );
    let mut forged = good.clone();
    forged
        .prefixes
        .push(Prefix::parse("100.64.0.0/10").unwrap());
    assert_eq!(
        trust.check(&forged, &key, 5_000),
        Err(CertError::BadSignature)
    );
    // Revocation: a newer list wins, an older one never replaces it.
    let list = |serial, revoked: Vec<NodeKey>, by: &Identity| {
        Revocations {
            issuer: NodeKey::default(),
            serial,
            issued_at: 5_000,
            revoked,
            signature: [0; SIG_LEN],
        }
        .sign(by)
        .unwrap()
    };
    assert_eq!(trust.offer_revocations(list(2, vec![key], &ca1)), Ok(true));
    assert_eq!(trust.check(&good, &key, 5_000), Err(CertError::Revoked));
    assert_eq!(trust.offer_revocations(list(1, vec![], &ca1)), Ok(false));
    assert!(trust.is_revoked(&key));
    assert_eq!(trust.offer_revocations(list(3, vec![], &ca1)), Ok(true));
    assert!(!trust.is_revoked(&key));
    assert_eq!(
        trust.offer_revocations(list(9, vec![key], &ca2)),
        Err(CertError::UnknownCa)
    );
    let bytes = list(4, vec![key, other], &ca1).encode().unwrap();
    assert!(Revocations::decode(&bytes).unwrap().signature_ok());
    assert!(Revocations::decode(&bytes[..bytes.len() - 1]).is_err());
}

#[test]
fn prefixes_contain_their_addresses() {
    let p = Prefix::parse("100.64.0.0/10").unwrap();
    assert!(p.contains("100.127.255.255".parse().unwrap()));
    assert!(!p.contains("100.128.0.0".parse().unwrap()));
    assert!(Prefix::parse("100.64.0.10")
        .unwrap()
        .contains("100.64.0.10".parse().unwrap()));
    assert!(Prefix::parse("0.0.0.0/0")
        .unwrap()
        .contains("198.18.0.1".parse().unwrap()));
    assert!(Prefix::parse("100.64.0.0/33").is_none());
}
