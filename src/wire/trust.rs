//! Link control of certificate mode: revocation lists in parts, and the
//! serials a node holds (docs/PROTOCOL.md, "Revocation lists").
//!
//! A list (up to 1,024 revoked keys, ~33 KiB) travels in parts of at most
//! [`PART`] bytes, one per datagram. A node announces the serial of each
//! list it holds to every link about once a minute, so a link that holds
//! a newer one sends it: a list whose parts were lost, or that a node
//! missed while away, arrives without anyone resending blindly.

use super::control::{KIND_REVOCATION_PART, KIND_REVOCATION_SERIALS};
use super::key::NodeKey;
use super::{get_u64, Error, Result};
use smallvec::SmallVec;

/// Kind, part index, part count, reserved; then the part.
pub const PART_HEADER: usize = 4;
/// Bytes of a list in one part (every part but the last is this long).
pub const PART: usize = 1024;
/// Lists a node holds at most (one per CA it trusts).
pub const MAX_SERIALS: usize = 8;
/// Bytes of one announced serial: the issuing CA's key and the serial.
const SERIAL_LEN: usize = 32 + 8;

/// One part of a revocation list:
/// kind 10 | index (1) | count (1) | reserved (1) | the part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RevocationPart<'a> {
    pub index: u8,
    pub count: u8,
    pub part: &'a [u8],
}

impl<'a> RevocationPart<'a> {
    /// Checks the shape: a part within its count, full length unless it is
    /// the last, never empty or longer than [`PART`].
    pub fn parse(b: &'a [u8]) -> Result<RevocationPart<'a>> {
        if b.len() <= PART_HEADER || b[0] != KIND_REVOCATION_PART {
            return Err(Error);
        }
        let (index, count, part) = (b[1], b[2], &b[PART_HEADER..]);
        let last = u16::from(index) + 1 == u16::from(count);
        let fits = part.len() == PART || (last && part.len() < PART);
        if index >= count || !fits {
            return Err(Error);
        }
        Ok(RevocationPart { index, count, part })
    }

    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[KIND_REVOCATION_PART, self.index, self.count, 0]);
        out.extend_from_slice(self.part);
    }
}

/// The lists a node holds: kind 12 | count (1) | reserved (2) | count ×
/// (issuer key (32) | serial (8)).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RevocationSerials {
    pub lists: SmallVec<[(NodeKey, u64); 2]>,
}

impl RevocationSerials {
    pub fn parse(b: &[u8]) -> Result<RevocationSerials> {
        if b.len() < 4 || b[0] != KIND_REVOCATION_SERIALS {
            return Err(Error);
        }
        let n = usize::from(b[1]);
        if n > MAX_SERIALS || b.len() != 4 + n * SERIAL_LEN {
            return Err(Error);
        }
        let lists = b[4..]
            .chunks_exact(SERIAL_LEN)
            .map(|c| {
                let mut k = [0u8; 32];
                k.copy_from_slice(&c[..32]);
                (NodeKey(k), get_u64(c, 32))
            })
            .collect();
        Ok(RevocationSerials { lists })
    }

    /// Emits at most [`MAX_SERIALS`] entries.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let n = self.lists.len().min(MAX_SERIALS);
        out.extend_from_slice(&[KIND_REVOCATION_SERIALS, n as u8, 0, 0]);
        for (issuer, serial) in &self.lists[..n] {
            out.extend_from_slice(&issuer.0);
            out.extend_from_slice(&serial.to_be_bytes());
        }
    }

    /// The serial announced for lists from `issuer`, if any.
    pub fn serial(&self, issuer: &NodeKey) -> Option<u64> {
        self.lists
            .iter()
            .find(|(k, _)| k == issuer)
            .map(|&(_, s)| s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip_and_misshapen_ones_are_refused() {
        let body = [7u8; PART];
        let p = RevocationPart {
            index: 0,
            count: 2,
            part: &body,
        };
        let mut b = Vec::new();
        p.emit(&mut b);
        assert_eq!(&b[..4], &[10, 0, 2, 0]);
        assert_eq!(RevocationPart::parse(&b), Ok(p));
        // A short part that is not the last.
        assert!(RevocationPart::parse(&b[..100]).is_err());
        // The last part may be short; never empty, never beyond the count.
        assert!(RevocationPart::parse(&[10, 1, 2, 0, 9]).is_ok());
        assert!(RevocationPart::parse(&[10, 1, 2, 0]).is_err());
        assert!(RevocationPart::parse(&[10, 2, 2, 0, 9]).is_err());
        assert!(RevocationPart::parse(&[10, 0, 0, 0, 9]).is_err());
        let mut long = vec![10, 1, 2, 0];
        long.extend_from_slice(&[0; PART + 1]);
        assert!(RevocationPart::parse(&long).is_err());
    }

    #[test]
    fn serials_round_trip_byte_for_byte() {
        let s = RevocationSerials {
            lists: [(NodeKey([3; 32]), 0x0102_0304_0506_0708)]
                .into_iter()
                .collect(),
        };
        let mut b = Vec::new();
        s.emit(&mut b);
        let mut want = vec![12, 1, 0, 0];
        want.extend_from_slice(&[3; 32]);
        want.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(b, want);
        assert_eq!(RevocationSerials::parse(&b), Ok(s.clone()));
        assert_eq!(s.serial(&NodeKey([3; 32])), Some(0x0102_0304_0506_0708));
        assert_eq!(s.serial(&NodeKey([4; 32])), None);
        assert!(RevocationSerials::parse(&b[..b.len() - 1]).is_err());
        assert_eq!(
            RevocationSerials::parse(&[12, 0, 0, 0]),
            Ok(RevocationSerials::default())
        );
        assert!(RevocationSerials::parse(&[12, 9, 0, 0]).is_err());
    }
}
