//! Signed address records: the value a member registers in the DHT under
//! an address's key, saying "this node holds this address". The holder
//! signs it, so no other node (a storing node, a node repairing a replica,
//! a routing node) can forge or alter one. Storing nodes check a record
//! before they keep it, and every resolver checks it again before sending
//! anything to the holder; in certificate mode both also check that the
//! holder's certificate (carried in the record) lists the address.
//!
//! ```text
//!  0 version=2 | 1 endpoint count n (≤ 4) | 2 credential type (1 key, 2 certificate) | 3 reserved
//!  4 holder's node key (32)
//! 36 the address (IPv4, 4)
//! 40 n × 20-byte endpoints (where the holder was last seen: a hint)
//! 40+20n credential length L (2; 0 for type 1) | credential (L ≤ 1024)
//! then 64 Ed25519 signature by the holder over "ringvpn-addr" ‖ all before
//! ```
//!
//! A record carries no time: a replayed old record names the same holder
//! for the same address, and expires with its TTL like any other.

use crate::crypto::cert::{Cert, CertError, Trust};
use crate::crypto::{signed, Identity, NodeKey};
use crate::overlay::dht::RecordPolicy;
use crate::overlay::Addr;
use crate::time::Instant;
use crate::wire::dht::Record;
use crate::wire::endpoint::{self, Endpoint};
use std::net::{IpAddr, Ipv4Addr};

pub const VERSION: u8 = 2;
pub const MAX_ENDPOINTS: usize = 4;
const LABEL: &[u8] = b"ringvpn-addr";
const FIXED: usize = 40;

/// A checked record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressRecord {
    pub holder: NodeKey,
    pub ip: Ipv4Addr,
    pub endpoints: Vec<Endpoint>,
    pub cert: Option<Cert>,
}

/// Why a record is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordError {
    Malformed,
    BadSignature,
    /// Stored under another owner than its holder, or under another key
    /// than its address's.
    Misplaced,
    /// Certificate mode: no certificate, or one that does not check out.
    Cert(CertError),
    /// The holder's certificate does not list the address.
    NotCertified,
}

/// The record for `ip` held by `id`, signed; `cert`: the holder's
/// certificate (certificate mode). `None` if the certificate is too long.
pub fn sign(
    id: &Identity,
    ip: Ipv4Addr,
    endpoints: &[Endpoint],
    cert: Option<&[u8]>,
) -> Option<Vec<u8>> {
    let n = endpoints.len().min(MAX_ENDPOINTS);
    let mut v = Vec::with_capacity(FIXED + n * endpoint::LEN);
    v.extend_from_slice(&[VERSION, n as u8, signed::cred_type(cert), 0]);
    v.extend_from_slice(&id.public().0);
    v.extend_from_slice(&ip.octets());
    for ep in &endpoints[..n] {
        let mut b = [0u8; endpoint::LEN];
        endpoint::emit_endpoint(ep, &mut b);
        v.extend_from_slice(&b);
    }
    signed::finish(id, LABEL, v, cert)
}

/// Parses a record strictly and verifies its signature (nothing else).
pub fn verify(v: &[u8]) -> Result<AddressRecord, RecordError> {
    if v.len() < FIXED + signed::MIN_TAIL || v[0] != VERSION || v[3] != 0 {
        return Err(RecordError::Malformed);
    }
    let n = usize::from(v[1]);
    if n > MAX_ENDPOINTS {
        return Err(RecordError::Malformed);
    }
    let holder = NodeKey(v[4..36].try_into().map_err(|_| RecordError::Malformed)?);
    let ip = Ipv4Addr::new(v[36], v[37], v[38], v[39]);
    let cred_at = FIXED + n * endpoint::LEN;
    let endpoints = (0..n)
        .map(|i| endpoint::parse_endpoint(v.get(FIXED + i * endpoint::LEN..).unwrap_or(&[])))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| RecordError::Malformed)?;
    let cert = signed::open(v, cred_at, v[2], LABEL, &holder).map_err(|e| match e {
        signed::TailError::Malformed => RecordError::Malformed,
        signed::TailError::BadSignature => RecordError::BadSignature,
    })?;
    Ok(AddressRecord {
        holder,
        ip,
        endpoints,
        cert,
    })
}

/// The checks every storing node and resolver makes on an address record:
/// signature, place (its key is its address's, its owner its holder), and
/// in certificate mode the holder's certificate and that it lists the
/// address.
#[derive(Clone, Copy, Debug)]
pub struct Checker<'a> {
    /// The VPN network's name (address keys depend on it).
    pub network: &'a str,
    pub trust: Option<&'a Trust>,
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
    ) -> Result<AddressRecord, RecordError> {
        let r = verify(value)?;
        if Addr::of_key(&r.holder) != owner || super::ip_key(self.network, r.ip) != key {
            return Err(RecordError::Misplaced);
        }
        if let Some(trust) = self.trust {
            let cert =
                signed::certified(trust, r.cert.as_ref(), &r.holder, self.wall_origin_us, now)
                    .map_err(RecordError::Cert)?;
            if !cert.allows(IpAddr::V4(r.ip)) {
                return Err(RecordError::NotCertified);
            }
        }
        Ok(r)
    }
}

/// A storing node's policy: a [`Checker`] that owns what it checks with.
#[derive(Clone, Debug)]
pub struct AddressPolicy {
    pub network: String,
    pub trust: Option<Trust>,
    pub wall_origin_us: u64,
}

impl AddressPolicy {
    pub fn checker(&self) -> Checker<'_> {
        Checker {
            network: &self.network,
            trust: self.trust.as_ref(),
            wall_origin_us: self.wall_origin_us,
        }
    }
}

impl RecordPolicy for AddressPolicy {
    /// Address and name records must check out. Other values are stored only in an
    /// open overlay (the DHT is generic there); a private one stores
    /// nothing its members did not sign.
    fn admit(&self, key: Addr, record: &Record, now: Instant) -> bool {
        if record.value.first() == Some(&VERSION) {
            self.checker()
                .check(key, record.owner, &record.value, now)
                .is_ok()
        } else if record.value.first() == Some(&super::name::VERSION) {
            super::name::check(&self.checker(), key, record.owner, &record.value, now).is_ok()
        } else {
            self.trust.is_none()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::cert::Prefix;
    use crate::crypto::Seed;
    use crate::wire::handshake::SIG_LEN;

    fn id(n: u8) -> Identity {
        Identity::from_seed(&Seed([n; 32]))
    }

    const UNIX: u64 = 1_800_000_000;

    fn policy(trust: Option<Trust>) -> AddressPolicy {
        AddressPolicy {
            network: "net".into(),
            trust,
            wall_origin_us: UNIX * 1_000_000,
        }
    }

    fn stored(holder: &Identity, value: Vec<u8>) -> Record {
        Record {
            owner: Addr::of_key(&holder.public()),
            ttl_secs: 300,
            value,
        }
    }

    #[test]
    fn a_record_is_checked_for_signature_place_and_bounds() {
        let (a, b) = (id(1), id(2));
        let ip = Ipv4Addr::new(100, 64, 0, 7);
        let eps = [Endpoint::udp("198.18.0.1:5140".parse().unwrap())];
        let v = sign(&a, ip, &eps, None).unwrap();
        let r = verify(&v).unwrap();
        assert_eq!((r.holder, r.ip, r.endpoints.len()), (a.public(), ip, 1));
        let p = policy(None);
        let key = super::super::ip_key("net", ip);
        let rec = stored(&a, v.clone());
        assert!(p.admit(key, &rec, Instant::ZERO));
        // Under another address's key, or another owner: misplaced.
        let other_key = super::super::ip_key("net", Ipv4Addr::new(100, 64, 0, 8));
        assert!(!p.admit(other_key, &rec, Instant::ZERO));
        let theirs = stored(&b, v.clone());
        assert_eq!(
            p.checker().check(key, theirs.owner, &v, Instant::ZERO),
            Err(RecordError::Misplaced)
        );
        // Any changed byte breaks it; so does any length change.
        for i in 0..v.len() {
            let mut bad = v.clone();
            bad[i] ^= 1;
            assert!(
                p.checker()
                    .check(key, rec.owner, &bad, Instant::ZERO)
                    .is_err(),
                "byte {i}"
            );
        }
        assert_eq!(verify(&v[..v.len() - 1]), Err(RecordError::Malformed));
        let mut longer = v.clone();
        longer.push(0);
        assert_eq!(verify(&longer), Err(RecordError::Malformed));
        // B cannot make a record that says A holds the address.
        let mut forged = v.clone();
        let sig_at = forged.len() - SIG_LEN;
        let sig = b.sign(&[LABEL, &forged[..sig_at]].concat());
        forged[sig_at..].copy_from_slice(&sig);
        assert_eq!(verify(&forged), Err(RecordError::BadSignature));
        // Open overlay: other values are stored; a private one refuses them.
        let plain = Record {
            owner: rec.owner,
            ttl_secs: 1,
            value: b"any value".to_vec(),
        };
        assert!(p.admit(key, &plain, Instant::ZERO));
        assert!(!policy(Some(Trust::default())).admit(key, &plain, Instant::ZERO));
    }

    #[test]
    fn certificate_mode_wants_a_certificate_that_lists_the_address() {
        let ca = id(9);
        let member = id(3);
        let ca_cert = Cert::new_ca(&ca, "lab", "ca", (UNIX - 60, UNIX + 86_400)).unwrap();
        let ip = Ipv4Addr::new(100, 64, 0, 10);
        let cert = Cert::new_node(
            &ca,
            member.public(),
            "lab",
            "m",
            vec![Prefix::parse("100.64.0.10").unwrap()],
            vec![],
            (UNIX - 60, UNIX + 86_400),
        )
        .unwrap();
        let trust = Trust {
            network: "lab".into(),
            cas: vec![ca_cert],
            revocations: vec![],
        };
        let p = AddressPolicy {
            network: "net".into(),
            trust: Some(trust),
            wall_origin_us: UNIX * 1_000_000,
        };
        let owner = Addr::of_key(&member.public());
        let bytes = cert.encode().unwrap();
        let good = sign(&member, ip, &[], Some(&bytes)).unwrap();
        let key = super::super::ip_key("net", ip);
        assert!(p.checker().check(key, owner, &good, Instant::ZERO).is_ok());
        // Another address than the certificate's.
        let other = Ipv4Addr::new(100, 64, 0, 11);
        let claim = sign(&member, other, &[], Some(&bytes)).unwrap();
        let other_key = super::super::ip_key("net", other);
        assert_eq!(
            p.checker().check(other_key, owner, &claim, Instant::ZERO),
            Err(RecordError::NotCertified)
        );
        // No certificate at all.
        let bare = sign(&member, ip, &[], None).unwrap();
        assert!(matches!(
            p.checker().check(key, owner, &bare, Instant::ZERO),
            Err(RecordError::Cert(_))
        ));
        // Expired by the time it is checked.
        let late = Instant::from_millis(2 * 86_400 * 1000);
        assert_eq!(
            p.checker().check(key, owner, &good, late),
            Err(RecordError::Cert(CertError::Expired))
        );
    }
}
