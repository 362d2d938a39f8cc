//! ARP for IPv4 over Ethernet (RFC 826), the 28-byte form the host's
//! kernel sends on the TAP. The node answers requests itself, turning the
//! request into the reply in place.
//!
//! ```text
//!  0 htype=1 (2) | 2 ptype=0x0800 (2) | 4 hlen=6 | 5 plen=4 | 6 oper (2)
//!  8 sender MAC (6) | 14 sender IP (4) | 18 target MAC (6) | 24 target IP (4)
//! ```

use super::ethernet::Mac;
use super::{get_u16, Error, Result};
use std::net::Ipv4Addr;

pub const LEN: usize = 28;
pub const OP_REQUEST: u16 = 1;
pub const OP_REPLY: u16 = 2;

/// A view of an Ethernet/IPv4 ARP packet.
#[derive(Debug)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Only Ethernet/IPv4 ARP with the right address lengths.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let b = buffer.as_ref();
        if b.len() < LEN || b[..6] != [0, 1, 8, 0, 6, 4] {
            return Err(Error);
        }
        Ok(Packet { buffer })
    }

    pub fn op(&self) -> u16 {
        get_u16(self.buffer.as_ref(), 6)
    }

    fn ip_at(&self, at: usize) -> Ipv4Addr {
        let b = self.buffer.as_ref();
        Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
    }

    pub fn sender_mac(&self) -> Mac {
        let mut m = [0u8; 6];
        m.copy_from_slice(&self.buffer.as_ref()[8..14]);
        Mac(m)
    }

    pub fn sender_ip(&self) -> Ipv4Addr {
        self.ip_at(14)
    }

    pub fn target_ip(&self) -> Ipv4Addr {
        self.ip_at(24)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Turns a request into the reply "`target IP` is at `mac`", in place.
    pub fn make_reply(&mut self, mac: Mac) {
        let b = self.buffer.as_mut();
        let mut sender = [0u8; 10];
        sender.copy_from_slice(&b[8..18]);
        let mut target_ip = [0u8; 4];
        target_ip.copy_from_slice(&b[24..28]);
        b[6..8].copy_from_slice(&OP_REPLY.to_be_bytes());
        b[8..14].copy_from_slice(&mac.0);
        b[14..18].copy_from_slice(&target_ip);
        b[18..28].copy_from_slice(&sender);
    }
}

/// A gratuitous ARP reply announcing `ip` at `mac`.
#[derive(Debug, Clone, Copy)]
pub struct GratuitousRepr {
    pub mac: Mac,
    pub ip: Ipv4Addr,
}

impl GratuitousRepr {
    pub const fn buffer_len(&self) -> usize {
        28
    }

    /// Writes the ARP body into `out[..28]`.
    pub fn emit(&self, out: &mut [u8]) {
        out[..8].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, OP_REPLY as u8]);
        out[8..14].copy_from_slice(&self.mac.0);
        out[14..18].copy_from_slice(&self.ip.octets());
        out[18..24].copy_from_slice(&[0xff; 6]);
        out[24..28].copy_from_slice(&self.ip.octets());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// "Who has 100.64.0.12? Tell 100.64.0.10" from 02:00:00:00:00:0a.
    const REQUEST: [u8; 28] = [
        0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 0x0a, 100, 64, 0, 10, 0, 0, 0, 0, 0, 0, 100, 64, 0,
        12,
    ];

    #[test]
    fn deconstruct_and_answer() {
        let mut b = REQUEST;
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        assert_eq!(p.op(), OP_REQUEST);
        assert_eq!(p.sender_ip(), Ipv4Addr::new(100, 64, 0, 10));
        assert_eq!(p.target_ip(), Ipv4Addr::new(100, 64, 0, 12));
        assert_eq!(p.sender_mac(), Mac([2, 0, 0, 0, 0, 0x0a]));
        p.make_reply(Mac([2, 0x72, 0x76, 0, 0, 1]));
        assert_eq!(
            b,
            [
                0, 1, 8, 0, 6, 4, 0, 2, 2, 0x72, 0x76, 0, 0, 1, 100, 64, 0, 12, 2, 0, 0, 0, 0,
                0x0a, 100, 64, 0, 10
            ]
        );
        assert!(Packet::new_checked(&REQUEST[..27]).is_err());
        let mut other = REQUEST;
        other[5] = 16;
        assert!(Packet::new_checked(&other[..]).is_err());
    }

    #[test]
    fn gratuitous() {
        let mut b = [0u8; 28];
        GratuitousRepr {
            mac: Mac([2; 6]),
            ip: Ipv4Addr::new(100, 64, 0, 10),
        }
        .emit(&mut b);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.op(), OP_REPLY);
        assert_eq!(p.sender_ip(), p.target_ip());
    }
}
