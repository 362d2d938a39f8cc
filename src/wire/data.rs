//! Sealed session messages: Ethernet frames and link control.
//!
//! ```text
//!  0       1       2       4               8                              16
//!  +-------+-------+-------+---------------+-------------------------------+
//!  |version| type  | rsvd  | receiver idx  |        counter (nonce)        |
//!  +-------+-------+-------+---------------+-------------------------------+
//!  | ciphertext ...                                 | 16-byte Poly1305 tag |
//! ```
//! The 16 header bytes are the AEAD's associated data, so the type cannot be
//! changed in flight. The nonce is four zero bytes followed by the counter.

use super::{get_u32, get_u64, Error, MsgType, Result, VERSION};

pub const HEADER_LEN: usize = 16;
pub const TAG_LEN: usize = 16;
/// Bytes a sealed message adds to its payload.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;

mod field {
    use core::ops::Range;
    pub const RECEIVER: Range<usize> = 4..8;
    pub const COUNTER: Range<usize> = 8..16;
}

/// A view of a sealed message.
#[derive(Debug)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Accepts the buffer only if it holds a header and a tag.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Packet::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < OVERHEAD {
            Err(Error)
        } else {
            Ok(())
        }
    }

    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[1]
    }

    pub fn receiver(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::RECEIVER.start)
    }

    pub fn counter(&self) -> u64 {
        get_u64(self.buffer.as_ref(), field::COUNTER.start)
    }

    /// The header, which is the associated data of the AEAD.
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..HEADER_LEN]
    }
}

/// A data message header to write (prepended in place before sealing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderRepr {
    pub ty: MsgType,
    /// The receiver's session index.
    pub receiver: u32,
    pub counter: u64,
}

impl HeaderRepr {
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into `out[..HEADER_LEN]`.
    #[inline]
    pub fn emit(&self, out: &mut [u8]) {
        out[0] = VERSION;
        out[1] = self.ty as u8;
        out[2] = 0;
        out[3] = 0;
        out[field::RECEIVER].copy_from_slice(&self.receiver.to_be_bytes());
        out[field::COUNTER].copy_from_slice(&self.counter.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: [u8; 32] = [
        0x01, 0x03, 0x00, 0x00, // version 1, frame, reserved
        0xde, 0xad, 0xbe, 0xef, // receiver index
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, // counter 258
        0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, // tag only: empty payload
        0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa,
    ];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&FIXTURE[..]).unwrap();
        assert_eq!(p.msg_type(), 3);
        assert_eq!(p.receiver(), 0xdead_beef);
        assert_eq!(p.counter(), 258);
        assert_eq!(p.header(), &FIXTURE[..16]);
    }

    #[test]
    fn construct() {
        let mut out = [0xaau8; 32];
        HeaderRepr {
            ty: MsgType::Frame,
            receiver: 0xdead_beef,
            counter: 258,
        }
        .emit(&mut out);
        assert_eq!(out, FIXTURE);
    }

    #[test]
    fn short_is_error() {
        assert_eq!(Packet::new_checked(&FIXTURE[..31]).unwrap_err(), Error);
    }
}
