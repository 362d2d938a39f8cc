//! The ring broadcast header: how one packet reaches every member once.
//!
//! Each recipient covers an arc of the ring, from itself to `end`: it
//! delivers the packet and passes it on to each of its links inside the
//! arc, giving each the sub-arc up to the next such link. With consistent
//! tables the arcs never overlap, so every member gets one copy.

use super::addr::Addr;
use super::control::KIND_BROADCAST;
use super::overlay::addr_at;
use super::{Error, Result};

/// Ring broadcast header (40 bytes), then the IP packet:
///
/// ```text
///  0 kind=8 | 1 hops | 2 reserved (2) | 4..20 source address | 20 sequence (4)
/// 24..40 end of the range the recipient covers (exclusive, going right)
/// ```
/// A recipient delivers the packet and passes it on to each of its links
/// strictly between itself and the end, giving each the sub-range up to
/// the next such link: with consistent tables every member gets one copy.
pub const BROADCAST_HEADER_LEN: usize = 40;

/// A view of a ring broadcast.
#[derive(Debug)]
pub struct Broadcast<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Broadcast<T> {
    pub fn new_checked(buffer: T) -> Result<Broadcast<T>> {
        let b = buffer.as_ref();
        if b.len() < BROADCAST_HEADER_LEN || b[0] != KIND_BROADCAST {
            return Err(Error);
        }
        Ok(Broadcast { buffer })
    }
    pub fn hops(&self) -> u8 {
        self.buffer.as_ref()[1]
    }
    pub fn src(&self) -> Addr {
        addr_at(self.buffer.as_ref(), 4)
    }
    pub fn seq(&self) -> u32 {
        super::get_u32(self.buffer.as_ref(), 20)
    }
    pub fn end(&self) -> Addr {
        addr_at(self.buffer.as_ref(), 24)
    }
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[BROADCAST_HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Broadcast<T> {
    pub fn set_hops(&mut self, hops: u8) {
        self.buffer.as_mut()[1] = hops;
    }
    pub fn set_end(&mut self, end: Addr) {
        self.buffer.as_mut()[24..40].copy_from_slice(&end.to_bytes());
    }
}

/// A ring broadcast header to write (prepended in place; hops start at 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BroadcastRepr {
    pub src: Addr,
    pub seq: u32,
    /// The end of the arc this copy covers.
    pub end: Addr,
}

impl BroadcastRepr {
    pub const fn buffer_len(&self) -> usize {
        BROADCAST_HEADER_LEN
    }

    /// Writes the header into `out[..BROADCAST_HEADER_LEN]`.
    pub fn emit(&self, out: &mut [u8]) {
        out[..4].copy_from_slice(&[KIND_BROADCAST, 0, 0, 0]);
        out[4..20].copy_from_slice(&self.src.to_bytes());
        out[20..24].copy_from_slice(&self.seq.to_be_bytes());
        out[24..40].copy_from_slice(&self.end.to_bytes());
    }
}
