//! The virtio-net header a TAP opened with `IFF_VNET_HDR` puts before every
//! frame it hands us, and expects before every frame we write.
//!
//! Layout (10 bytes; the shell sets `TUNSETVNETLE`, so the 16-bit fields are
//! little-endian on every host, big-endian MIPS included — unlike the rest of
//! `wire/`, this is a host interface, not our protocol):
//!
//! ```text
//! 0 flags (1: NEEDS_CSUM) | 1 gso_type (0 none, 1 TCPv4, 4 TCPv6, 5 UDP; |0x80 ECN)
//! 2 hdr_len | 4 gso_size | 6 csum_start | 8 csum_offset
//! ```
//!
//! `NEEDS_CSUM` means the checksum at `csum_start + csum_offset` holds only
//! the pseudo-header's sum and the rest is left to whoever sends the frame
//! on (a NIC, or us: [`complete_checksum`]). A `gso_type` other than none
//! marks a super-frame of up to 64 KiB that is to be cut into `gso_size`
//! payloads (`crate::wire::tso`).

use super::ip::{checksum_add, checksum_finish};
use super::{Error, Result};

/// Bytes of the header (`struct virtio_net_hdr`, without `num_buffers`).
pub const LEN: usize = 10;

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`.
pub const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_ECN`: the flow uses ECN, so CWR goes on the first segment only.
pub const GSO_ECN: u8 = 0x80;

/// What kind of super-frame, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gso {
    None,
    Tcp4,
    Tcp6,
    /// `VIRTIO_NET_HDR_GSO_UDP_L4` (USO), IPv4 or IPv6.
    Udp,
}

impl Gso {
    fn code(self) -> u8 {
        match self {
            Gso::None => 0,
            Gso::Tcp4 => 1,
            Gso::Tcp6 => 4,
            Gso::Udp => 5,
        }
    }
}

/// A parsed virtio-net header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso: Gso,
    pub ecn: bool,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VnetHdr {
    /// The header of a plain frame with a complete checksum.
    pub const PLAIN: VnetHdr = VnetHdr {
        flags: 0,
        gso: Gso::None,
        ecn: false,
        hdr_len: 0,
        gso_size: 0,
        csum_start: 0,
        csum_offset: 0,
    };

    /// Reads a header; an unknown GSO type (UFO, or one a future kernel
    /// adds that we never asked for) is an error.
    pub fn parse(b: &[u8]) -> Result<VnetHdr> {
        if b.len() < LEN {
            return Err(Error);
        }
        let le = |at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
        let gso = match b[1] & !GSO_ECN {
            0 => Gso::None,
            1 => Gso::Tcp4,
            4 => Gso::Tcp6,
            5 => Gso::Udp,
            _ => return Err(Error),
        };
        Ok(VnetHdr {
            flags: b[0],
            gso,
            ecn: b[1] & GSO_ECN != 0,
            hdr_len: le(2),
            gso_size: le(4),
            csum_start: le(6),
            csum_offset: le(8),
        })
    }

    pub fn emit(&self, out: &mut [u8; LEN]) {
        out[0] = self.flags;
        out[1] = self.gso.code() | if self.ecn { GSO_ECN } else { 0 };
        out[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        out[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        out[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        out[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
    }

    /// [`VnetHdr::PLAIN`] as written: all zeros.
    pub const PLAIN_BYTES: [u8; LEN] = [0; LEN];

    pub fn needs_csum(&self) -> bool {
        self.flags & F_NEEDS_CSUM != 0
    }
}

/// Finishes a checksum the kernel left partial (`NEEDS_CSUM` on a plain
/// frame): the field holds the pseudo-header's sum, the rest of the sum
/// covers everything from `start` to the end of the frame. A result of
/// zero is sent as 0xffff, as the kernel does (zero means "no checksum" in
/// UDP over IPv4, and the two are the same number to TCP).
pub fn complete_checksum(frame: &mut [u8], start: usize, offset: usize) -> Result<()> {
    let at = start.checked_add(offset).ok_or(Error)?;
    if at.checked_add(2).map_or(true, |end| end > frame.len()) {
        return Err(Error);
    }
    let c = match checksum_finish(checksum_add(0, &frame[start..])) {
        0 => 0xffff,
        c => c,
    };
    frame[at..at + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_little_endian() {
        let raw = [1, 0x81, 66, 0, 0x50, 5, 34, 0, 16, 0];
        let h = VnetHdr::parse(&raw).unwrap();
        assert_eq!(
            h,
            VnetHdr {
                flags: F_NEEDS_CSUM,
                gso: Gso::Tcp4,
                ecn: true,
                hdr_len: 66,
                gso_size: 1360,
                csum_start: 34,
                csum_offset: 16,
            }
        );
        let mut out = [0; LEN];
        h.emit(&mut out);
        assert_eq!(out, raw);
        VnetHdr::PLAIN.emit(&mut out);
        assert_eq!(out, VnetHdr::PLAIN_BYTES);
    }

    #[test]
    fn unknown_gso_types_and_short_headers_are_refused() {
        assert_eq!(VnetHdr::parse(&[0, 3, 0, 0, 0, 0, 0, 0, 0, 0]), Err(Error));
        assert_eq!(VnetHdr::parse(&[0; 9]), Err(Error));
    }

    #[test]
    fn completes_a_partial_checksum() {
        // A UDP datagram over IPv4 whose checksum field holds the pseudo-header sum.
        let mut f = [0u8; 14 + 20 + 8 + 5];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[14 + 9] = 17;
        f[14 + 12..14 + 16].copy_from_slice(&[198, 18, 0, 1]);
        f[14 + 16..14 + 20].copy_from_slice(&[198, 18, 0, 2]);
        f[34 + 4..34 + 6].copy_from_slice(&13u16.to_be_bytes());
        f[42..].copy_from_slice(b"hello");
        let mut pseudo = checksum_add(0, &f[14 + 12..14 + 20]);
        pseudo = checksum_add(pseudo, &[0, 17, 0, 13]);
        let folded = !checksum_finish(pseudo);
        f[34 + 6..34 + 8].copy_from_slice(&folded.to_be_bytes());
        complete_checksum(&mut f, 34, 6).unwrap();
        // Verifies: pseudo-header plus the datagram sums to all ones.
        assert_eq!(checksum_finish(checksum_add(pseudo, &f[34..])), 0);
        assert_eq!(complete_checksum(&mut f, 34, 100), Err(Error));
        assert_eq!(complete_checksum(&mut f, usize::MAX, 6), Err(Error));
    }
}
