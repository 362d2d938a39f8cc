//! Signed route records: "this member carries traffic for these
//! prefixes", the value a router (or exit gateway) registers in the DHT.
//! The advertiser signs it, so no storing or routing node can forge or
//! alter one; storing nodes check it before they keep it and every member
//! checks it again before it sends a packet its way — in certificate mode
//! against the routes the advertiser's certificate lists, in static-key
//! mode against the prefixes the config lists for that peer (WireGuard's
//! AllowedIPs).
//!
//! ```text
//!  0 version=0x10 | 1 prefix count n (1..16) | 2 credential type (1 key, 2 certificate) | 3 reserved
//!  4 advertiser's node key (32)
//! 36 advertiser's virtual IPv4 address (4; 0.0.0.0 while it has none): a hint for `exit = IP`
//! 40 n × prefix: family (4 | 6), length, address (4 | 16 bytes)
//!    credential length L (2; 0 for type 1) | credential (L ≤ 1024)
//! then 64 Ed25519 signature by the advertiser over "ringvpn-route" ‖ all before
//! ```
//!
//! A record lives under one of [`SLOTS`] keys of the network (chosen by
//! the advertiser's key), so a member finds every router by asking those
//! few keys; the DHT returns up to four owners per key, so a network
//! sees up to 4 × 8 routers at once (more share slots by luck, not
//! design). Like address records, a record carries no time: a replayed
//! one says what its advertiser once signed and lapses with its TTL.

use crate::crypto::cert::{Cert, CertError, Trust};
use crate::crypto::{signed, Identity, NodeKey};
use crate::net::Prefix;
use crate::overlay::Addr;
use crate::time::Instant;
use std::net::{IpAddr, Ipv4Addr};

/// First byte of a route record (address records start with 2).
pub const VERSION: u8 = 0x10;
/// Prefixes in one record (as many as a certificate may list).
pub const MAX_PREFIXES: usize = 16;
/// DHT keys route records are spread over.
pub const SLOTS: u8 = 8;
const LABEL: &[u8] = b"ringvpn-route";
const FIXED: usize = 40;

/// A record whose signature checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRecord {
    pub advertiser: NodeKey,
    /// Its virtual IPv4 address, as it says (checked against its
    /// certificate in certificate mode).
    pub ip: Option<Ipv4Addr>,
    pub prefixes: Vec<Prefix>,
    pub cert: Option<Cert>,
}

/// Why a route record is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteError {
    Malformed,
    BadSignature,
    /// Under another key than its advertiser's slot, or another owner.
    Misplaced,
    Cert(CertError),
    /// The advertiser may not route this prefix (its certificate, or in
    /// static-key mode the config, does not list it).
    NotAllowed(Prefix),
}

/// The slot an advertiser's record lives in.
pub fn slot_of(advertiser: &NodeKey) -> u8 {
    advertiser.0[31] % SLOTS
}

/// The DHT key of route slot `slot` in `network`.
pub fn slot_key(network: &str, slot: u8) -> Addr {
    let mut name = Vec::with_capacity(8 + network.len());
    name.extend_from_slice(b"route\0");
    name.extend_from_slice(network.as_bytes());
    name.push(0);
    name.push(slot);
    crate::overlay::dht::key_of(&name)
}

/// The record for `prefixes` (1 to 16) advertised by `id`, signed.
/// `None` if there are no prefixes, too many, or the certificate is too
/// long.
pub fn sign(
    id: &Identity,
    ip: Option<Ipv4Addr>,
    prefixes: &[Prefix],
    cert: Option<&[u8]>,
) -> Option<Vec<u8>> {
    if prefixes.is_empty() || prefixes.len() > MAX_PREFIXES {
        return None;
    }
    let mut v = Vec::with_capacity(FIXED + prefixes.len() * 18);
    v.extend_from_slice(&[VERSION, prefixes.len() as u8, signed::cred_type(cert), 0]);
    v.extend_from_slice(&id.public().0);
    v.extend_from_slice(&ip.unwrap_or(Ipv4Addr::UNSPECIFIED).octets());
    for p in prefixes {
        let (family, addr) = match p.addr {
            IpAddr::V4(a) => (4, a.octets().to_vec()),
            IpAddr::V6(a) => (6, a.octets().to_vec()),
        };
        v.extend_from_slice(&[family, p.len]);
        v.extend_from_slice(&addr);
    }
    signed::finish(id, LABEL, v, cert)
}

/// Parses a record strictly and verifies its signature (nothing else).
pub fn verify(v: &[u8]) -> Result<RouteRecord, RouteError> {
    let bad = RouteError::Malformed;
    if v.len() < FIXED + signed::MIN_TAIL || v[0] != VERSION || v[3] != 0 {
        return Err(bad);
    }
    let n = usize::from(v[1]);
    if n == 0 || n > MAX_PREFIXES {
        return Err(bad);
    }
    let mut at = FIXED;
    let mut prefixes = Vec::with_capacity(n);
    for _ in 0..n {
        let (family, len) = (*v.get(at).ok_or(bad)?, *v.get(at + 1).ok_or(bad)?);
        let size = match family {
            4 if len <= 32 => 4,
            6 if len <= 128 => 16,
            _ => return Err(bad),
        };
        let raw = v.get(at + 2..at + 2 + size).ok_or(bad)?;
        let addr = match <[u8; 4]>::try_from(raw) {
            Ok(a) => IpAddr::from(a),
            Err(_) => IpAddr::from(<[u8; 16]>::try_from(raw).map_err(|_| bad)?),
        };
        let p = Prefix::new(addr, len);
        if !p.is_network() {
            return Err(bad);
        }
        prefixes.push(p);
        at += 2 + size;
    }
    let advertiser = NodeKey(v[4..36].try_into().map_err(|_| bad)?);
    let ip = Ipv4Addr::new(v[36], v[37], v[38], v[39]);
    let cert = signed::open(v, at, v[2], LABEL, &advertiser).map_err(|e| match e {
        signed::TailError::Malformed => bad,
        signed::TailError::BadSignature => RouteError::BadSignature,
    })?;
    Ok(RouteRecord {
        advertiser,
        ip: (!ip.is_unspecified()).then_some(ip),
        prefixes,
        cert,
    })
}

/// Who may route what.
#[derive(Clone, Copy, Debug)]
pub enum Authority<'a> {
    /// Certificate mode: the advertiser's certificate must check out and
    /// list every prefix (and the address it gives).
    Certificates(&'a Trust),
    /// Static-key mode, as a member judges: only these keys, for these
    /// prefixes (the config's `[peer] routes`).
    Listed(&'a [(NodeKey, Vec<Prefix>)]),
    /// Static-key mode, as a storing node: the signature and place only
    /// (members judge the authority themselves).
    Open,
}

/// The checks a storing node and every member make on a route record.
#[derive(Clone, Copy, Debug)]
pub struct Checker<'a> {
    pub network: &'a str,
    pub authority: Authority<'a>,
    /// Unix time at `Instant::ZERO`, in µs (certificates use wall time).
    pub wall_origin_us: u64,
}

impl Checker<'_> {
    pub fn check(
        &self,
        key: Addr,
        owner: Addr,
        value: &[u8],
        now: Instant,
    ) -> Result<RouteRecord, RouteError> {
        let r = verify(value)?;
        if Addr::of_key(&r.advertiser) != owner
            || slot_key(self.network, slot_of(&r.advertiser)) != key
        {
            return Err(RouteError::Misplaced);
        }
        match self.authority {
            Authority::Certificates(trust) => {
                let cert = signed::certified(
                    trust,
                    r.cert.as_ref(),
                    &r.advertiser,
                    self.wall_origin_us,
                    now,
                )
                .map_err(RouteError::Cert)?;
                if let Some(p) = r.prefixes.iter().find(|p| !cert.may_route(p)) {
                    return Err(RouteError::NotAllowed(*p));
                }
                if r.ip.is_some_and(|ip| !cert.allows(IpAddr::V4(ip))) {
                    return Err(RouteError::Malformed);
                }
            }
            Authority::Listed(list) => {
                let allowed = list.iter().find(|(k, _)| *k == r.advertiser);
                let may = |p: &Prefix| allowed.is_some_and(|(_, a)| a.iter().any(|a| a.covers(p)));
                if let Some(p) = r.prefixes.iter().find(|p| !may(p)) {
                    return Err(RouteError::NotAllowed(*p));
                }
            }
            Authority::Open => {}
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Seed;

    fn id(n: u8) -> Identity {
        Identity::from_seed(&Seed([n; 32]))
    }

    fn p(s: &str) -> Prefix {
        Prefix::parse(s).unwrap()
    }

    const UNIX: u64 = 1_800_000_000;

    fn placed(a: &Identity) -> (Addr, Addr) {
        (
            slot_key("net", slot_of(&a.public())),
            Addr::of_key(&a.public()),
        )
    }

    #[test]
    fn a_route_record_is_checked_for_signature_place_and_bounds() {
        let (a, b) = (id(1), id(2));
        let routes = [p("0.0.0.0/0"), p("::/0"), p("198.19.5.0/24")];
        let ip = Some(Ipv4Addr::new(100, 64, 0, 7));
        let v = sign(&a, ip, &routes, None).unwrap();
        let r = verify(&v).unwrap();
        assert_eq!((r.advertiser, r.ip), (a.public(), ip));
        assert_eq!(r.prefixes, routes);
        let open = Checker {
            network: "net",
            authority: Authority::Open,
            wall_origin_us: 0,
        };
        let (key, owner) = placed(&a);
        assert!(open.check(key, owner, &v, Instant::ZERO).is_ok());
        // Another owner, another slot, another network: misplaced.
        let (_, theirs) = placed(&b);
        assert_eq!(
            open.check(key, theirs, &v, Instant::ZERO),
            Err(RouteError::Misplaced)
        );
        let other_slot = slot_key("net", (slot_of(&a.public()) + 1) % SLOTS);
        assert_eq!(
            open.check(other_slot, owner, &v, Instant::ZERO),
            Err(RouteError::Misplaced)
        );
        // Any changed byte breaks it, and so does any length change.
        for i in 0..v.len() {
            let mut bad = v.clone();
            bad[i] ^= 1;
            assert!(
                open.check(key, owner, &bad, Instant::ZERO).is_err(),
                "byte {i}"
            );
        }
        assert_eq!(verify(&v[..v.len() - 1]), Err(RouteError::Malformed));
        // No prefixes, too many, or a host inside a network: not signed or not read.
        assert!(sign(&a, None, &[], None).is_none());
        assert!(sign(&a, None, &[p("10.0.0.0/8"); 17], None).is_none());
        let host = sign(&a, None, &[p("198.19.5.7/24")], None).unwrap();
        assert_eq!(verify(&host), Err(RouteError::Malformed));
    }

    #[test]
    fn static_mode_members_judge_by_the_listed_prefixes() {
        let (a, b) = (id(1), id(2));
        let list = vec![(a.public(), vec![p("198.19.0.0/16")])];
        let member = Checker {
            network: "net",
            authority: Authority::Listed(&list),
            wall_origin_us: 0,
        };
        let inside = sign(&a, None, &[p("198.19.5.0/24")], None).unwrap();
        let (key, owner) = placed(&a);
        assert!(member.check(key, owner, &inside, Instant::ZERO).is_ok());
        let exit = sign(&a, None, &[p("0.0.0.0/0")], None).unwrap();
        assert_eq!(
            member.check(key, owner, &exit, Instant::ZERO),
            Err(RouteError::NotAllowed(p("0.0.0.0/0")))
        );
        let unlisted = sign(&b, None, &[p("198.19.5.0/24")], None).unwrap();
        let (key, owner) = placed(&b);
        assert!(matches!(
            member.check(key, owner, &unlisted, Instant::ZERO),
            Err(RouteError::NotAllowed(_))
        ));
    }

    #[test]
    fn certificate_mode_wants_the_routes_in_the_certificate() {
        let ca = id(9);
        let gw = id(3);
        let ca_cert = Cert::new_ca(&ca, "lab", "ca", (UNIX - 60, UNIX + 86_400)).unwrap();
        let cert = Cert::new_node(
            &ca,
            gw.public(),
            "lab",
            "gw",
            vec![p("100.64.0.10")],
            vec![],
            (UNIX - 60, UNIX + 86_400),
        )
        .unwrap()
        .with_routes(vec![p("0.0.0.0/0")], &ca)
        .unwrap();
        let trust = Trust {
            network: "lab".into(),
            cas: vec![ca_cert],
            revocations: vec![],
        };
        let c = Checker {
            network: "net",
            authority: Authority::Certificates(&trust),
            wall_origin_us: UNIX * 1_000_000,
        };
        let bytes = cert.encode().unwrap();
        let (key, owner) = placed(&gw);
        let ip = Some(Ipv4Addr::new(100, 64, 0, 10));
        let good = sign(&gw, ip, &[p("0.0.0.0/0"), p("198.19.5.0/24")], Some(&bytes)).unwrap();
        assert!(c.check(key, owner, &good, Instant::ZERO).is_ok());
        let v6 = sign(&gw, ip, &[p("::/0")], Some(&bytes)).unwrap();
        assert_eq!(
            c.check(key, owner, &v6, Instant::ZERO),
            Err(RouteError::NotAllowed(p("::/0")))
        );
        let bare = sign(&gw, ip, &[p("0.0.0.0/0")], None).unwrap();
        assert!(matches!(
            c.check(key, owner, &bare, Instant::ZERO),
            Err(RouteError::Cert(_))
        ));
        let wrong_ip = sign(
            &gw,
            Some(Ipv4Addr::new(100, 64, 0, 11)),
            &[p("0.0.0.0/0")],
            Some(&bytes),
        );
        assert!(c
            .check(key, owner, &wrong_ip.unwrap(), Instant::ZERO)
            .is_err());
    }
}
