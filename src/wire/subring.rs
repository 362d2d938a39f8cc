//! Sub-ring messages (docs/SUBRINGS.md): how one daemon's several
//! networks share its public node's socket and links.
//!
//! **Tagged datagram** — a sub-ring node's datagram sent straight over
//! the shared UDP socket (type 8), so the receiving daemon hands it to
//! the node of the right network; the inner datagram is that network's
//! own message, sealed by its sessions:
//! ```text
//!  0 version=1 | 1 type=8 | 2..4 reserved (0) | 4..12 network id | inner datagram
//! ```
//!
//! **Carried header** — a sub-ring node's datagram to a *carried*
//! endpoint (`wire::endpoint::Transport::Carried`) travels over the
//! public ring as routed data with `DATA_FLAG_CARRIED`; after the routed
//! data header comes:
//! ```text
//!  0..8 network id | 8..24 sender's public-ring address | inner datagram
//! ```
//! The sender's address is its word, like a UDP source address: the
//! inner datagram is authenticated by the network's session, and an
//! answer to a forged source goes to that source.
//!
//! **Group record** — the body of what a member registers in the public
//! ring's DHT under its group's key (`subring::record` signs and checks
//! it; this module only lays out the bytes):
//! ```text
//!  0 version=0x20 | 1 endpoint count n (≤ 8) | 2..4 reserved (0)
//!  4 issued (unix seconds, 8)
//! 12 member's node key in the network (32)
//! 44 host's node key on the public ring (32; the DHT record's owner)
//! 76 n × 20-byte endpoints (the host's underlay endpoints)
//! then the signature tail of `crypto::signed` (by the member's key)
//! ```

use super::endpoint::{self, Endpoint};
use super::key::NodeKey;
use super::{get_u64, Error, Result, COMMON_HEADER_LEN, VERSION};

/// `MsgType::Network`'s header: common header, network id.
pub const TAGGED_HEADER_LEN: usize = COMMON_HEADER_LEN + 8;
/// The carried header after the routed data header.
pub const CARRIED_HEADER_LEN: usize = 24;
pub const RECORD_VERSION: u8 = 0x20;
/// The fixed part of a group record.
pub const RECORD_FIXED_LEN: usize = 76;
/// Endpoints a group record carries at most.
pub const RECORD_MAX_ENDPOINTS: usize = 8;

/// A view of a tagged datagram.
#[derive(Debug)]
pub struct Tagged<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Tagged<T> {
    pub fn new_checked(buffer: T) -> Result<Tagged<T>> {
        let b = buffer.as_ref();
        let network_type = super::MsgType::Network as u8;
        if b.len() < TAGGED_HEADER_LEN
            || b[0] != VERSION
            || b[1] != network_type
            || b[2..4] != [0, 0]
        {
            return Err(Error);
        }
        Ok(Tagged { buffer })
    }

    pub fn network(&self) -> u64 {
        get_u64(self.buffer.as_ref(), COMMON_HEADER_LEN)
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[TAGGED_HEADER_LEN..]
    }
}

/// A tagged datagram's header to write (prepended in place).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaggedRepr {
    pub network: u64,
}

impl TaggedRepr {
    pub const fn buffer_len(&self) -> usize {
        TAGGED_HEADER_LEN
    }

    /// Writes the header into `out[..TAGGED_HEADER_LEN]`.
    pub fn emit(&self, out: &mut [u8]) {
        out[..4].copy_from_slice(&[VERSION, super::MsgType::Network as u8, 0, 0]);
        out[4..12].copy_from_slice(&self.network.to_be_bytes());
    }
}

/// A view of a carried header and the datagram behind it.
#[derive(Debug)]
pub struct Carried<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Carried<T> {
    pub fn new_checked(buffer: T) -> Result<Carried<T>> {
        if buffer.as_ref().len() < CARRIED_HEADER_LEN + COMMON_HEADER_LEN {
            return Err(Error);
        }
        Ok(Carried { buffer })
    }

    pub fn network(&self) -> u64 {
        get_u64(self.buffer.as_ref(), 0)
    }

    /// The sender's public-ring address (its word).
    pub fn src(&self) -> [u8; 16] {
        self.buffer.as_ref()[8..24]
            .try_into()
            .expect("checked length")
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[CARRIED_HEADER_LEN..]
    }
}

/// A carried header to write (prepended in place).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CarriedRepr {
    pub network: u64,
    pub src: [u8; 16],
}

impl CarriedRepr {
    pub const fn buffer_len(&self) -> usize {
        CARRIED_HEADER_LEN
    }

    pub fn emit(&self, out: &mut [u8]) {
        out[..8].copy_from_slice(&self.network.to_be_bytes());
        out[8..24].copy_from_slice(&self.src);
    }
}

/// A group record's body (what the signature covers, before the tail).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordBody {
    pub issued: u64,
    pub member: NodeKey,
    pub host: NodeKey,
    pub endpoints: smallvec::SmallVec<[Endpoint; RECORD_MAX_ENDPOINTS]>,
}

impl RecordBody {
    /// Appends the body (at most `RECORD_MAX_ENDPOINTS` endpoints).
    pub fn emit(&self, out: &mut Vec<u8>) {
        let n = self.endpoints.len().min(RECORD_MAX_ENDPOINTS);
        out.extend_from_slice(&[RECORD_VERSION, n as u8, 0, 0]);
        out.extend_from_slice(&self.issued.to_be_bytes());
        out.extend_from_slice(&self.member.0);
        out.extend_from_slice(&self.host.0);
        for ep in &self.endpoints[..n] {
            let mut b = [0u8; endpoint::LEN];
            endpoint::emit_endpoint(ep, &mut b);
            out.extend_from_slice(&b);
        }
    }

    /// Parses the body at the start of `b`; returns it and where the
    /// signature tail starts. Carried endpoints are refused: a record
    /// names underlay endpoints; the carried one follows from `host`.
    pub fn parse(b: &[u8]) -> Result<(RecordBody, usize)> {
        if b.len() < RECORD_FIXED_LEN || b[0] != RECORD_VERSION || b[2..4] != [0, 0] {
            return Err(Error);
        }
        let n = usize::from(b[1]);
        let end = RECORD_FIXED_LEN + n * endpoint::LEN;
        if n > RECORD_MAX_ENDPOINTS || b.len() < end {
            return Err(Error);
        }
        let key = |at: usize| NodeKey(b[at..at + 32].try_into().expect("checked length"));
        let mut endpoints = smallvec::SmallVec::new();
        for i in 0..n {
            let ep = endpoint::parse_endpoint(&b[RECORD_FIXED_LEN + i * endpoint::LEN..])?;
            if ep.is_carried() {
                return Err(Error);
            }
            endpoints.push(ep);
        }
        Ok((
            RecordBody {
                issued: get_u64(b, 4),
                member: key(12),
                host: key(44),
                endpoints,
            },
            end,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagged_fixture() {
        let mut b = [0xaau8; 14];
        TaggedRepr {
            network: 0x0102_0304_0506_0708,
        }
        .emit(&mut b);
        assert_eq!(&b[..12], &[1, 8, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
        let t = Tagged::new_checked(&b[..]).unwrap();
        assert_eq!(t.network(), 0x0102_0304_0506_0708);
        assert_eq!(t.payload(), &[0xaa, 0xaa]);
        assert_eq!(crate::wire::peek(&b), Ok(crate::wire::MsgType::Network));
        for bad in [0usize, 1, 2] {
            let mut c = b;
            c[bad] ^= 0x40;
            assert!(Tagged::new_checked(&c[..]).is_err());
        }
        assert!(Tagged::new_checked(&b[..11]).is_err());
    }

    #[test]
    fn carried_fixture() {
        let mut b = [0u8; 28];
        CarriedRepr {
            network: 9,
            src: [7; 16],
        }
        .emit(&mut b);
        assert_eq!(&b[..8], &[0, 0, 0, 0, 0, 0, 0, 9]);
        let c = Carried::new_checked(&b[..]).unwrap();
        assert_eq!((c.network(), c.src()), (9, [7; 16]));
        assert_eq!(c.payload().len(), 4);
        assert!(Carried::new_checked(&b[..27]).is_err());
    }

    #[test]
    fn record_body_round_trip_and_bounds() {
        let body = RecordBody {
            issued: 1_800_000_000,
            member: NodeKey([1; 32]),
            host: NodeKey([2; 32]),
            endpoints: [Endpoint::udp("198.18.0.1:5140".parse().unwrap())]
                .into_iter()
                .collect(),
        };
        let mut v = Vec::new();
        body.emit(&mut v);
        assert_eq!(v.len(), RECORD_FIXED_LEN + 20);
        assert_eq!(&v[..4], &[0x20, 1, 0, 0]);
        v.extend_from_slice(b"tail");
        assert_eq!(RecordBody::parse(&v), Ok((body.clone(), 96)));
        let mut many = v.clone();
        many[1] = 9;
        assert!(RecordBody::parse(&many).is_err());
        assert!(RecordBody::parse(&v[..95]).is_err());
        let mut carried = Vec::new();
        RecordBody {
            endpoints: [Endpoint::carried([3; 16])].into_iter().collect(),
            ..body
        }
        .emit(&mut carried);
        assert!(RecordBody::parse(&carried).is_err());
    }
}
