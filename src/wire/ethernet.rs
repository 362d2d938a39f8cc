//! Ethernet II frames as read from and written to the TAP device.

use super::{get_u16, Error, Result};

pub const HEADER_LEN: usize = 14;

/// An 802.1Q tag's ethertype: four more bytes before the real one.
const ETHERTYPE_VLAN: u16 = 0x8100;

/// Where a frame's network header starts (14, or 18 behind one VLAN tag)
/// and its ethertype; `None` if the frame is too short for either.
pub fn network_start(frame: &[u8]) -> Option<(usize, u16)> {
    match super::get_u16(frame.get(..HEADER_LEN)?, 12) {
        ETHERTYPE_VLAN => Some((18, super::get_u16(frame.get(..18)?, 16))),
        t => Some((HEADER_LEN, t)),
    }
}

/// A 48-bit MAC address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    pub const BROADCAST: Mac = Mac([0xff; 6]);

    /// Group bit set: broadcast or multicast.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }
}

impl core::fmt::Display for Mac {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// An Ethernet II header to write (the smoltcp `Repr` style: a plain
/// value, `buffer_len` bytes emitted into the caller's buffer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub dst: Mac,
    pub src: Mac,
    pub ethertype: u16,
}

impl Repr {
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into `out[..HEADER_LEN]`.
    pub fn emit(&self, out: &mut [u8]) {
        out[..6].copy_from_slice(&self.dst.0);
        out[6..12].copy_from_slice(&self.src.0);
        out[12..14].copy_from_slice(&self.ethertype.to_be_bytes());
    }
}

/// A view of an Ethernet frame.
#[derive(Debug)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    pub fn new_unchecked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Frame<T>> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Error);
        }
        Ok(Frame { buffer })
    }

    fn mac_at(&self, at: usize) -> Mac {
        let mut m = [0u8; 6];
        m.copy_from_slice(&self.buffer.as_ref()[at..at + 6]);
        Mac(m)
    }

    pub fn dst(&self) -> Mac {
        self.mac_at(0)
    }

    pub fn src(&self) -> Mac {
        self.mac_at(6)
    }

    pub fn ethertype(&self) -> u16 {
        get_u16(self.buffer.as_ref(), 12)
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_start_skips_one_vlan_tag() {
        let mut f = [0u8; 18];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(network_start(&f), Some((14, 0x0800)));
        f[12..16].copy_from_slice(&[0x81, 0x00, 0x00, 0x07]);
        f[16..18].copy_from_slice(&[0x86, 0xdd]);
        assert_eq!(network_start(&f), Some((18, 0x86dd)));
        assert_eq!(network_start(&f[..17]), None);
        assert_eq!(network_start(&f[..13]), None);
    }

    #[test]
    fn deconstruct() {
        let mut f = [0u8; 20];
        f[..6].copy_from_slice(&[0xff; 6]);
        f[6..12].copy_from_slice(&[0x02, 1, 2, 3, 4, 5]);
        f[12..14].copy_from_slice(&[0x08, 0x06]);
        let fr = Frame::new_checked(&f[..]).unwrap();
        assert!(fr.dst().is_multicast());
        assert!(!fr.src().is_multicast());
        assert_eq!(fr.src().to_string(), "02:01:02:03:04:05");
        assert_eq!(fr.ethertype(), 0x0806);
        assert_eq!(fr.payload().len(), 6);
        assert!(Frame::new_checked(&f[..13]).is_err());
    }
}
