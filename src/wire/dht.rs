//! DHT messages. Requests and replies travel as routed overlay messages
//! (type [`MSG_DHT`](super::overlay::MSG_DHT)); hand-off copies between ring
//! neighbours travel on the link (kind [`KIND_DHT_COPY`](super::control::KIND_DHT_COPY)).
//!
//! ```text
//! request / reply (routed body):
//!   0 op | 1 replica index | 2 status | 3 record count n | 4 request id (4) | 8 key (16)
//!   op 1 put, 2 create: 24 owner (16) | 40 ttl secs (4) | 44 value length L (2) | 46 reserved (2) | 48 value
//!   op 3 get: nothing more
//!   op 4 remove: 24 remove proof (104)
//! remove proof: owner's node key (32) | unix secs (8) | Ed25519 signature (64)
//!   by that key over "ringvpn-dht-remove" ‖ DHT key (16) ‖ owner's key ‖ unix secs
//!   op 5 put reply: status (0 ok, 1 exists, 2 full, 3 too big, 4 rate limited,
//!     5 refused by policy); status 1 (exists) adds 24 holder (16)
//!   op 6 get reply: n × record
//! record: owner (16) | ttl secs remaining (4) | value length L (2) | reserved (2) | value
//! copy (link kind 9): 0 kind | 1 count n | 2 reserved (2) | n × (key (16) | record)
//!   a record with ttl 0 is a removal: its value is the owner's remove proof
//! ```
//!
//! A remove is the owner's word, signed: the routed source of a message is
//! whatever its sender wrote, so a remove authorised by it let any member
//! delete any other's records (docs/SECURITY.md).
//! Counts, lengths and the TTL are bounded; lengths must add up exactly.

use super::addr::Addr;
use super::{get_u16, get_u32, Error, Result};
use smallvec::SmallVec;

/// The largest value a record holds (Brunet's limit).
pub const MAX_VALUE: usize = 1024;
/// The longest a record lives without renewal.
pub const MAX_TTL_SECS: u32 = 3600;
/// Records in one get reply or copy message: enough for the values a key
/// holds in practice, small enough for one datagram.
pub const MAX_RECORDS_PER_MSG: usize = 4;

pub const OP_PUT: u8 = 1;
pub const OP_CREATE: u8 = 2;
pub const OP_GET: u8 = 3;
pub const OP_REMOVE: u8 = 4;
pub const OP_PUT_REPLY: u8 = 5;
pub const OP_GET_REPLY: u8 = 6;

/// Outcome of a put, create or remove at one replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Create: another owner holds the key.
    Exists(Addr),
    /// The replica's record limit is reached.
    Full,
    /// The value is over [`MAX_VALUE`] or the TTL over [`MAX_TTL_SECS`].
    TooBig,
    /// The sender is over its request rate at this replica.
    RateLimited,
    /// The replica's policy refuses the record (a signed address record
    /// whose signature, key or certificate does not check out; in
    /// certificate mode, anything else).
    Refused,
}

impl Status {
    fn code(&self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Exists(_) => 1,
            Status::Full => 2,
            Status::TooBig => 3,
            Status::RateLimited => 4,
            Status::Refused => 5,
        }
    }
}

/// What the owner signs to remove its record: see [`RemoveProof`].
pub const REMOVE_LABEL: &[u8] = b"ringvpn-dht-remove";
pub const REMOVE_PROOF_LEN: usize = 32 + 8 + 64;
const REMOVE_SIGNED_LEN: usize = REMOVE_LABEL.len() + 16 + 32 + 8;

/// A remove's proof of origin: the owner's key (its ring address is
/// derived from it), the owner's wall clock, and its signature over both
/// and the DHT key. The time bounds replays (docs/SECURITY.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoveProof {
    pub owner_key: [u8; 32],
    pub unix_secs: u64,
    pub sig: [u8; 64],
}

impl RemoveProof {
    /// The bytes the owner signs for removing its record under `key`.
    pub fn signed_bytes(
        key: Addr,
        owner_key: &[u8; 32],
        unix_secs: u64,
    ) -> [u8; REMOVE_SIGNED_LEN] {
        let mut m = [0u8; REMOVE_SIGNED_LEN];
        let (label, rest) = m.split_at_mut(REMOVE_LABEL.len());
        label.copy_from_slice(REMOVE_LABEL);
        rest[..16].copy_from_slice(&key.to_bytes());
        rest[16..48].copy_from_slice(owner_key);
        rest[48..].copy_from_slice(&unix_secs.to_be_bytes());
        m
    }

    /// Parses exactly one proof.
    pub fn parse(b: &[u8]) -> Result<RemoveProof> {
        if b.len() != REMOVE_PROOF_LEN {
            return Err(Error);
        }
        let mut p = RemoveProof {
            owner_key: [0; 32],
            unix_secs: u64::from_be_bytes(b[32..40].try_into().map_err(|_| Error)?),
            sig: [0; 64],
        };
        p.owner_key.copy_from_slice(&b[..32]);
        p.sig.copy_from_slice(&b[40..]);
        Ok(p)
    }

    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.owner_key);
        out.extend_from_slice(&self.unix_secs.to_be_bytes());
        out.extend_from_slice(&self.sig);
    }

    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(REMOVE_PROOF_LEN);
        self.emit(&mut v);
        v
    }
}

/// One stored value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub owner: Addr,
    pub ttl_secs: u32,
    pub value: Vec<u8>,
}

pub type Records = SmallVec<[Record; MAX_RECORDS_PER_MSG]>;

/// A parsed DHT message (parsed once per delivery, never stored in bulk;
/// a get reply's records live inline).
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DhtMsg {
    Put {
        id: u32,
        replica: u8,
        key: Addr,
        /// Only if no other owner holds the key.
        create: bool,
        record: Record,
    },
    Get {
        id: u32,
        replica: u8,
        key: Addr,
    },
    Remove {
        id: u32,
        replica: u8,
        key: Addr,
        proof: RemoveProof,
    },
    PutReply {
        id: u32,
        replica: u8,
        key: Addr,
        status: Status,
    },
    GetReply {
        id: u32,
        replica: u8,
        key: Addr,
        /// `RateLimited` refuses the get; otherwise `Ok`.
        status: Status,
        records: Records,
    },
}

const RECORD_HEADER: usize = 24;

fn emit_record(r: &Record, out: &mut Vec<u8>) {
    out.extend_from_slice(&r.owner.to_bytes());
    out.extend_from_slice(&r.ttl_secs.to_be_bytes());
    out.extend_from_slice(&(r.value.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&r.value);
}

/// Parses one record at the start of `b`; returns it and its length.
fn parse_record(b: &[u8]) -> Result<(Record, usize)> {
    if b.len() < RECORD_HEADER {
        return Err(Error);
    }
    let ttl_secs = get_u32(b, 16);
    let len = usize::from(get_u16(b, 20));
    if len > MAX_VALUE || ttl_secs > MAX_TTL_SECS || b.len() < RECORD_HEADER + len {
        return Err(Error);
    }
    let owner = Addr::from_bytes(b[..16].try_into().map_err(|_| Error)?);
    let value = b[RECORD_HEADER..RECORD_HEADER + len].to_vec();
    Ok((
        Record {
            owner,
            ttl_secs,
            value,
        },
        RECORD_HEADER + len,
    ))
}

impl DhtMsg {
    pub fn id(&self) -> u32 {
        match self {
            DhtMsg::Put { id, .. }
            | DhtMsg::Get { id, .. }
            | DhtMsg::Remove { id, .. }
            | DhtMsg::PutReply { id, .. }
            | DhtMsg::GetReply { id, .. } => *id,
        }
    }

    /// Parses a routed DHT body; lengths must add up exactly.
    pub fn parse(b: &[u8]) -> Result<DhtMsg> {
        if b.len() < 24 {
            return Err(Error);
        }
        let (op, replica, status, count) = (b[0], b[1], b[2], usize::from(b[3]));
        let id = get_u32(b, 4);
        let key = Addr::from_bytes(b[8..24].try_into().map_err(|_| Error)?);
        let rest = &b[24..];
        match op {
            OP_PUT | OP_CREATE => {
                if rest.len() < RECORD_HEADER {
                    return Err(Error);
                }
                let (record, used) = parse_record(rest)?;
                if used != rest.len() {
                    return Err(Error);
                }
                Ok(DhtMsg::Put {
                    id,
                    replica,
                    key,
                    create: op == OP_CREATE,
                    record,
                })
            }
            OP_GET if rest.is_empty() => Ok(DhtMsg::Get { id, replica, key }),
            OP_REMOVE => Ok(DhtMsg::Remove {
                id,
                replica,
                key,
                proof: RemoveProof::parse(rest)?,
            }),
            OP_PUT_REPLY => {
                let status = match (status, rest.len()) {
                    (0, 0) => Status::Ok,
                    (1, 16) => {
                        Status::Exists(Addr::from_bytes(rest.try_into().map_err(|_| Error)?))
                    }
                    (2, 0) => Status::Full,
                    (3, 0) => Status::TooBig,
                    (4, 0) => Status::RateLimited,
                    (5, 0) => Status::Refused,
                    _ => return Err(Error),
                };
                Ok(DhtMsg::PutReply {
                    id,
                    replica,
                    key,
                    status,
                })
            }
            OP_GET_REPLY => {
                let status = match status {
                    0 => Status::Ok,
                    4 if count == 0 => Status::RateLimited,
                    _ => return Err(Error),
                };
                if count > MAX_RECORDS_PER_MSG {
                    return Err(Error);
                }
                let mut records = Records::new();
                let mut at = 0;
                for _ in 0..count {
                    let (r, used) = parse_record(&rest[at..])?;
                    records.push(r);
                    at += used;
                }
                if at != rest.len() {
                    return Err(Error);
                }
                Ok(DhtMsg::GetReply {
                    id,
                    replica,
                    key,
                    status,
                    records,
                })
            }
            _ => Err(Error),
        }
    }

    /// Appends the routed body to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let head =
            |out: &mut Vec<u8>, op: u8, replica: u8, status: u8, n: u8, id: u32, key: Addr| {
                out.extend_from_slice(&[op, replica, status, n]);
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(&key.to_bytes());
            };
        match self {
            DhtMsg::Put {
                id,
                replica,
                key,
                create,
                record,
            } => {
                let op = if *create { OP_CREATE } else { OP_PUT };
                head(out, op, *replica, 0, 0, *id, *key);
                emit_record(record, out);
            }
            DhtMsg::Get { id, replica, key } => head(out, OP_GET, *replica, 0, 0, *id, *key),
            DhtMsg::Remove {
                id,
                replica,
                key,
                proof,
            } => {
                head(out, OP_REMOVE, *replica, 0, 0, *id, *key);
                proof.emit(out);
            }
            DhtMsg::PutReply {
                id,
                replica,
                key,
                status,
            } => {
                head(out, OP_PUT_REPLY, *replica, status.code(), 0, *id, *key);
                if let Status::Exists(holder) = status {
                    out.extend_from_slice(&holder.to_bytes());
                }
            }
            DhtMsg::GetReply {
                id,
                replica,
                key,
                status,
                records,
            } => {
                let n = records.len().min(MAX_RECORDS_PER_MSG);
                head(
                    out,
                    OP_GET_REPLY,
                    *replica,
                    status.code(),
                    n as u8,
                    *id,
                    *key,
                );
                for r in &records[..n] {
                    emit_record(r, out);
                }
            }
        }
    }
}

/// A hand-off copy: records a neighbour now shares responsibility for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    pub items: SmallVec<[(Addr, Record); MAX_RECORDS_PER_MSG]>,
}

impl Copy {
    pub fn parse(b: &[u8]) -> Result<Copy> {
        if b.len() < 4 || b[0] != super::control::KIND_DHT_COPY {
            return Err(Error);
        }
        let n = usize::from(b[1]);
        if n > MAX_RECORDS_PER_MSG {
            return Err(Error);
        }
        let mut items = SmallVec::new();
        let mut at = 4;
        for _ in 0..n {
            let key = Addr::from_bytes(
                b.get(at..at + 16)
                    .ok_or(Error)?
                    .try_into()
                    .map_err(|_| Error)?,
            );
            let (r, used) = parse_record(&b[at + 16..])?;
            items.push((key, r));
            at += 16 + used;
        }
        if at != b.len() {
            return Err(Error);
        }
        Ok(Copy { items })
    }

    pub fn emit(&self, out: &mut Vec<u8>) {
        let n = self.items.len().min(MAX_RECORDS_PER_MSG);
        out.extend_from_slice(&[super::control::KIND_DHT_COPY, n as u8, 0, 0]);
        for (key, r) in &self.items[..n] {
            out.extend_from_slice(&key.to_bytes());
            emit_record(r, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(owner: u128, v: &[u8]) -> Record {
        Record {
            owner: Addr(owner),
            ttl_secs: 300,
            value: v.to_vec(),
        }
    }

    #[test]
    fn put_fixture() {
        let m = DhtMsg::Put {
            id: 0x01020304,
            replica: 7,
            key: Addr(5),
            create: true,
            record: rec(9, b"ab"),
        };
        let mut b = Vec::new();
        m.emit(&mut b);
        assert_eq!(&b[..8], &[OP_CREATE, 7, 0, 0, 1, 2, 3, 4]);
        assert_eq!(b[23], 5);
        assert_eq!(b[39], 9);
        assert_eq!(&b[40..48], &[0, 0, 1, 44, 0, 2, 0, 0]);
        assert_eq!(&b[48..], b"ab");
        assert_eq!(DhtMsg::parse(&b).unwrap(), m);
    }

    #[test]
    fn every_message_round_trips_and_rejects_bad_lengths() {
        let msgs = [
            DhtMsg::Put {
                id: 1,
                replica: 0,
                key: Addr(1),
                create: false,
                record: rec(2, &[7; 100]),
            },
            DhtMsg::Get {
                id: 2,
                replica: 3,
                key: Addr(u128::MAX),
            },
            DhtMsg::Remove {
                id: 3,
                replica: 1,
                key: Addr(4),
                proof: RemoveProof {
                    owner_key: [9; 32],
                    unix_secs: 1_800_000_000,
                    sig: [3; 64],
                },
            },
            DhtMsg::PutReply {
                id: 4,
                replica: 2,
                key: Addr(4),
                status: Status::Exists(Addr(77)),
            },
            DhtMsg::PutReply {
                id: 4,
                replica: 2,
                key: Addr(4),
                status: Status::Full,
            },
            DhtMsg::GetReply {
                id: 5,
                replica: 5,
                key: Addr(6),
                status: Status::Ok,
                records: [rec(1, b"x"), rec(2, b"")].into_iter().collect(),
            },
            DhtMsg::GetReply {
                id: 5,
                replica: 5,
                key: Addr(6),
                status: Status::RateLimited,
                records: Records::new(),
            },
        ];
        for m in msgs {
            let mut b = Vec::new();
            m.emit(&mut b);
            assert_eq!(DhtMsg::parse(&b).unwrap(), m, "{m:?}");
            assert!(DhtMsg::parse(&b[..b.len() - 1]).is_err());
            b.push(0);
            assert!(DhtMsg::parse(&b).is_err());
        }
    }

    #[test]
    fn bounds_are_enforced() {
        let mut b = Vec::new();
        DhtMsg::Put {
            id: 1,
            replica: 0,
            key: Addr(1),
            create: false,
            record: rec(2, &[0; MAX_VALUE + 1]),
        }
        .emit(&mut b);
        assert!(DhtMsg::parse(&b).is_err(), "value over the limit");
        let mut b = Vec::new();
        DhtMsg::Put {
            id: 1,
            replica: 0,
            key: Addr(1),
            create: false,
            record: Record {
                ttl_secs: MAX_TTL_SECS + 1,
                ..rec(2, b"")
            },
        }
        .emit(&mut b);
        assert!(DhtMsg::parse(&b).is_err(), "TTL over the limit");
        let mut b = vec![OP_GET_REPLY, 0, 0, 5, 0, 0, 0, 1];
        b.extend_from_slice(&[0; 16]);
        assert!(DhtMsg::parse(&b).is_err(), "too many records");
        assert!(DhtMsg::parse(&[9; 24]).is_err(), "unknown op");
    }

    #[test]
    fn copies_round_trip() {
        let c = Copy {
            items: [(Addr(1), rec(2, b"v")), (Addr(3), rec(4, b""))]
                .into_iter()
                .collect(),
        };
        let mut b = Vec::new();
        c.emit(&mut b);
        assert_eq!(&b[..4], &[super::super::control::KIND_DHT_COPY, 2, 0, 0]);
        assert_eq!(Copy::parse(&b).unwrap(), c);
        assert!(Copy::parse(&b[..b.len() - 1]).is_err());
    }
}
