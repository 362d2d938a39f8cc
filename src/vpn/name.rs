//! Signed name records: "member NAME is at this address", the DHT's part
//! of DNS in the overlay. The holder signs the record and registers it
//! twice, under the name's key (forward: `NAME.NETWORK.` → address) and
//! under its address's name key (reverse: address → `NAME.NETWORK.`).
//! Both are DHT creates: a name another member holds is refused, the
//! way an address is.
//!
//! ```text
//!  0 version=3 | 1 name length N (1..=63) | 2 credential type (1 key, 2 certificate) | 3 reserved
//!  4 holder's node key (32)
//! 36 the holder's virtual IPv4 address (4)
//! 40 the name (N bytes: a DNS label, lower case)
//! 40+N credential length L (2; 0 for type 1) | credential (L ≤ 1024)
//! then 64 Ed25519 signature by the holder over "ringvpn-name" ‖ all before
//! ```
//!
//! In certificate mode the name must be the certificate's and the address
//! one it lists, so no member can take another's name. In an open overlay
//! a name belongs to whoever registered it first; a resolver there also
//! refuses a record whose address it knows to be held by someone else.

use super::record::Checker;
use crate::crypto::cert::CertError;
use crate::crypto::{signed, Identity, NodeKey};
use crate::overlay::Addr;
use crate::time::Instant;
use std::net::{IpAddr, Ipv4Addr};

pub const VERSION: u8 = 3;
const LABEL: &[u8] = b"ringvpn-name";
const FIXED: usize = 40;

/// A checked record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameRecord {
    pub holder: NodeKey,
    pub ip: Ipv4Addr,
    pub name: String,
}

/// Why a record is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    Malformed,
    BadSignature,
    /// Not under its name's or its address's key, or not by its holder.
    Misplaced,
    Cert(CertError),
    /// The certificate names someone else or does not list the address.
    NotCertified,
}

/// Whether `name` can be a member's DNS name: one label of letters,
/// digits and inner hyphens (RFC 1123), at most 63 bytes.
pub fn valid(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= crate::wire::dns::MAX_LABEL
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// The DHT key of `name` in `network` (case-insensitive).
pub fn name_key(network: &str, name: &str) -> Addr {
    let mut k = Vec::with_capacity(8 + network.len() + name.len());
    k.extend_from_slice(b"name\0");
    k.extend_from_slice(network.as_bytes());
    k.push(0);
    k.extend_from_slice(name.to_ascii_lowercase().as_bytes());
    crate::overlay::dht::key_of(&k)
}

/// The DHT key of the name that goes with `ip` (the reverse zone).
pub fn reverse_key(network: &str, ip: Ipv4Addr) -> Addr {
    let mut k = Vec::with_capacity(8 + network.len());
    k.extend_from_slice(b"ptr4\0");
    k.extend_from_slice(network.as_bytes());
    k.push(0);
    k.extend_from_slice(&ip.octets());
    crate::overlay::dht::key_of(&k)
}

/// The record naming `id`'s holder `name` at `ip`, signed. `None` if the
/// name is not a valid label or the certificate too long.
pub fn sign(id: &Identity, name: &str, ip: Ipv4Addr, cert: Option<&[u8]>) -> Option<Vec<u8>> {
    if !valid(name) {
        return None;
    }
    let name = name.to_ascii_lowercase();
    let mut v = Vec::with_capacity(FIXED + name.len());
    v.extend_from_slice(&[VERSION, name.len() as u8, signed::cred_type(cert), 0]);
    v.extend_from_slice(&id.public().0);
    v.extend_from_slice(&ip.octets());
    v.extend_from_slice(name.as_bytes());
    signed::finish(id, LABEL, v, cert)
}

/// Parses a record strictly and verifies its signature (nothing else).
pub fn verify(v: &[u8]) -> Result<(NameRecord, Option<crate::crypto::cert::Cert>), NameError> {
    if v.len() < FIXED + signed::MIN_TAIL || v[0] != VERSION || v[3] != 0 {
        return Err(NameError::Malformed);
    }
    let n = usize::from(v[1]);
    let name = v
        .get(FIXED..FIXED + n)
        .and_then(|b| std::str::from_utf8(b).ok())
        .filter(|s| valid(s) && !s.bytes().any(|c| c.is_ascii_uppercase()))
        .ok_or(NameError::Malformed)?
        .to_string();
    let holder = NodeKey(v[4..36].try_into().map_err(|_| NameError::Malformed)?);
    let ip = Ipv4Addr::new(v[36], v[37], v[38], v[39]);
    let cert = signed::open(v, FIXED + n, v[2], LABEL, &holder).map_err(|e| match e {
        signed::TailError::Malformed => NameError::Malformed,
        signed::TailError::BadSignature => NameError::BadSignature,
    })?;
    Ok((NameRecord { holder, ip, name }, cert))
}

/// The checks every storing node and resolver makes on a name record,
/// with the address records' checker (same network, trust and clock).
pub fn check(
    c: &Checker,
    key: Addr,
    owner: Addr,
    value: &[u8],
    now: Instant,
) -> Result<NameRecord, NameError> {
    let (r, cert) = verify(value)?;
    let placed = name_key(c.network, &r.name) == key || reverse_key(c.network, r.ip) == key;
    if Addr::of_key(&r.holder) != owner || !placed {
        return Err(NameError::Misplaced);
    }
    if let Some(trust) = c.trust {
        let cert = signed::certified(trust, cert.as_ref(), &r.holder, c.wall_origin_us, now)
            .map_err(NameError::Cert)?;
        if !cert.name.eq_ignore_ascii_case(&r.name) || !cert.allows(IpAddr::V4(r.ip)) {
            return Err(NameError::NotCertified);
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::cert::{Cert, Prefix};
    use crate::crypto::Seed;

    fn id(n: u8) -> Identity {
        Identity::from_seed(&Seed([n; 32]))
    }

    const UNIX: u64 = 1_800_000_000;
    const IP: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 7);

    fn checker(trust: Option<&crate::crypto::cert::Trust>) -> Checker<'_> {
        Checker {
            network: "office",
            trust,
            wall_origin_us: UNIX * 1_000_000,
        }
    }

    #[test]
    fn a_record_checks_out_under_both_keys_only() {
        let me = id(1);
        let v = sign(&me, "H1", IP, None).unwrap();
        let owner = Addr::of_key(&me.public());
        let c = checker(None);
        let r = check(&c, name_key("office", "h1"), owner, &v, Instant::ZERO).unwrap();
        assert_eq!((r.name.as_str(), r.ip), ("h1", IP));
        assert!(check(&c, reverse_key("office", IP), owner, &v, Instant::ZERO).is_ok());
        let elsewhere = name_key("office", "h2");
        assert_eq!(
            check(&c, elsewhere, owner, &v, Instant::ZERO),
            Err(NameError::Misplaced)
        );
        let other = Addr::of_key(&id(2).public());
        let key = name_key("office", "h1");
        assert_eq!(
            check(&c, key, other, &v, Instant::ZERO),
            Err(NameError::Misplaced)
        );
        let mut forged = v.clone();
        forged[39] ^= 1;
        assert_eq!(
            check(&c, key, owner, &forged, Instant::ZERO),
            Err(NameError::BadSignature)
        );
        assert!(sign(&me, "not a label", IP, None).is_none());
        assert!(sign(&me, "-x", IP, None).is_none());
    }

    #[test]
    fn in_certificate_mode_the_name_is_the_certificates() {
        let ca = id(9);
        let me = id(1);
        let valid = (UNIX - 60, UNIX + 86_400);
        let ca_cert = Cert::new_ca(&ca, "office", "ca", valid).unwrap();
        let cert = |name: &str| {
            let prefixes = vec![Prefix::parse("100.64.0.0/24").unwrap()];
            Cert::new_node(&ca, me.public(), "office", name, prefixes, vec![], valid)
                .unwrap()
                .encode()
                .unwrap()
        };
        let trust = crate::crypto::cert::Trust {
            network: "office".into(),
            cas: vec![ca_cert],
            revocations: vec![],
        };
        let c = checker(Some(&trust));
        let owner = Addr::of_key(&me.public());
        let key = name_key("office", "h1");
        let good = sign(&me, "h1", IP, Some(&cert("h1"))).unwrap();
        assert!(check(&c, key, owner, &good, Instant::ZERO).is_ok());
        let stolen = sign(&me, "h1", IP, Some(&cert("h2"))).unwrap();
        assert_eq!(
            check(&c, key, owner, &stolen, Instant::ZERO),
            Err(NameError::NotCertified)
        );
        let outside = sign(&me, "h1", Ipv4Addr::new(100, 64, 1, 1), Some(&cert("h1"))).unwrap();
        let key2 = reverse_key("office", Ipv4Addr::new(100, 64, 1, 1));
        assert_eq!(
            check(&c, key2, owner, &outside, Instant::ZERO),
            Err(NameError::NotCertified)
        );
        let bare = sign(&me, "h1", IP, None).unwrap();
        assert!(matches!(
            check(&c, key, owner, &bare, Instant::ZERO),
            Err(NameError::Cert(_))
        ));
    }
}
