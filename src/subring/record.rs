//! Signed group records: "this member of the network is hosted by this
//! public node, reachable at these endpoints". The member signs with its
//! key in the network, so neither a storing node nor anyone repairing a
//! replica can forge or alter one; the DHT record's owner must be the
//! host named inside, so a record cannot be planted under another
//! public node's name either. The layout is `wire::subring`'s; the tail
//! (credential, signature) is `crypto::signed`'s, with no credential: a
//! record does not show the member's certificate to storing nodes —
//! the sub-ring's handshake checks it before anything else is sent.
//!
//! A record carries the time it was issued: a member that reads several
//! (a replayed old one, a host that moved) uses the newest per member.

use crate::crypto::{signed, Identity, NodeKey};
use crate::overlay::dht::RecordPolicy;
use crate::overlay::Addr;
use crate::time::Instant;
use crate::wire::dht::Record;
use crate::wire::endpoint::Endpoint;
use crate::wire::subring::{RecordBody, RECORD_VERSION};

const LABEL: &[u8] = b"ringvpn-group";

/// A checked group record.
pub type GroupRecord = RecordBody;

/// The record for `member` (signing) hosted by `host`, issued at
/// `issued` (unix seconds), with the host's underlay endpoints.
pub fn sign(member: &Identity, host: NodeKey, issued: u64, endpoints: &[Endpoint]) -> Vec<u8> {
    let body = RecordBody {
        issued,
        member: member.public(),
        host,
        endpoints: endpoints
            .iter()
            .filter(|e| !e.is_carried())
            .take(crate::wire::subring::RECORD_MAX_ENDPOINTS)
            .copied()
            .collect(),
    };
    let mut v = Vec::with_capacity(crate::wire::subring::RECORD_FIXED_LEN + 256);
    body.emit(&mut v);
    signed::finish(member, LABEL, v, None).expect("no credential to be too long")
}

/// Parses a record strictly and checks its signature and that `owner`
/// (the DHT record's) is the host it names.
pub fn verify(v: &[u8], owner: Addr) -> Option<GroupRecord> {
    let (body, tail) = RecordBody::parse(v).ok()?;
    let ty = crate::wire::handshake::CredType::PublicKey as u8;
    signed::open(v, tail, ty, LABEL, &body.member).ok()?;
    (Addr::of_key(&body.host) == owner).then_some(body)
}

/// What a public node stores: group records that check out, and — the
/// public ring's DHT being generic where it is open — anything else
/// that is not dressed as one.
pub struct GroupPolicy;

impl RecordPolicy for GroupPolicy {
    fn admit(&self, _key: Addr, record: &Record, _now: Instant) -> bool {
        record.value.first() != Some(&RECORD_VERSION)
            || verify(&record.value, record.owner).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Seed;

    fn id(n: u8) -> Identity {
        Identity::from_seed(&Seed([n; 32]))
    }

    #[test]
    fn signed_records_check_out_and_forgeries_do_not() {
        let (member, host) = (id(1), id(2).public());
        let owner = Addr::of_key(&host);
        let ep = Endpoint::udp("198.18.0.9:5140".parse().unwrap());
        let v = sign(
            &member,
            host,
            1_800_000_000,
            &[ep, Endpoint::carried([1; 16])],
        );
        let r = verify(&v, owner).expect("a good record");
        assert_eq!(
            (r.member, r.host, r.issued),
            (member.public(), host, 1_800_000_000)
        );
        assert_eq!(r.endpoints.as_slice(), &[ep]);
        // Stored under another public node's name.
        assert!(verify(&v, Addr::of_key(&id(3).public())).is_none());
        // Any byte changed.
        for i in 0..v.len() {
            let mut w = v.clone();
            w[i] ^= 1;
            assert!(verify(&w, owner).is_none(), "byte {i}");
        }
        let p = GroupPolicy;
        let now = Instant::ZERO;
        let rec = |value: Vec<u8>, owner| Record {
            owner,
            ttl_secs: 60,
            value,
        };
        assert!(p.admit(Addr(1), &rec(v.clone(), owner), now));
        assert!(!p.admit(Addr(1), &rec(v.clone(), Addr(5)), now));
        assert!(p.admit(Addr(1), &rec(b"generic".to_vec(), Addr(5)), now));
    }
}
