//! DHCP (RFC 2131/2132): the client's DISCOVER and REQUEST as read from the
//! TAP, and the OFFER/ACK/NAK the node answers with.
//!
//! ```text
//!   0 op | 1 htype=1 | 2 hlen=6 | 3 hops | 4 xid (4) | 8 secs (2) | 10 flags (2)
//!  12 ciaddr | 16 yiaddr | 20 siaddr | 24 giaddr | 28 chaddr (16)
//!  44 sname (64) | 108 file (128) | 236 magic cookie 99.130.83.99 | 240 options
//! ```
//! Options are (code, length, value) up to END (255); PAD (0) is one byte.

use super::ethernet::Mac;
use super::{get_u16, get_u32, Error, Result};
use std::net::Ipv4Addr;

pub const SERVER_PORT: u16 = 67;
pub const CLIENT_PORT: u16 = 68;
pub const FIXED_LEN: usize = 240;
const COOKIE: [u8; 4] = [99, 130, 83, 99];

pub const DISCOVER: u8 = 1;
pub const OFFER: u8 = 2;
pub const REQUEST: u8 = 3;
pub const ACK: u8 = 5;
pub const NAK: u8 = 6;

const OPT_PAD: u8 = 0;
const OPT_SUBNET_MASK: u8 = 1;
const OPT_MTU: u8 = 26;
const OPT_BROADCAST: u8 = 28;
const OPT_REQUESTED_IP: u8 = 50;
const OPT_LEASE_TIME: u8 = 51;
const OPT_MSG_TYPE: u8 = 53;
const OPT_SERVER_ID: u8 = 54;
const OPT_END: u8 = 255;

/// A view of a DHCP message (the UDP payload).
#[derive(Debug)]
pub struct Message<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Message<T> {
    /// A request from an Ethernet client (op 1, htype 1, hlen 6) with the
    /// magic cookie and options whose lengths fit the buffer.
    pub fn new_checked(buffer: T) -> Result<Message<T>> {
        let b = buffer.as_ref();
        if b.len() < FIXED_LEN || b[0] != 1 || b[1] != 1 || b[2] != 6 || b[236..240] != COOKIE {
            return Err(Error);
        }
        let mut at = FIXED_LEN;
        while at < b.len() {
            match b[at] {
                OPT_END => break,
                OPT_PAD => at += 1,
                _ => {
                    let len = usize::from(*b.get(at + 1).ok_or(Error)?);
                    if at + 2 + len > b.len() {
                        return Err(Error);
                    }
                    at += 2 + len;
                }
            }
        }
        Ok(Message { buffer })
    }

    pub fn xid(&self) -> u32 {
        get_u32(self.buffer.as_ref(), 4)
    }

    pub fn flags(&self) -> u16 {
        get_u16(self.buffer.as_ref(), 10)
    }

    pub fn ciaddr(&self) -> Ipv4Addr {
        let b = self.buffer.as_ref();
        Ipv4Addr::new(b[12], b[13], b[14], b[15])
    }

    pub fn chaddr(&self) -> Mac {
        let mut m = [0u8; 6];
        m.copy_from_slice(&self.buffer.as_ref()[28..34]);
        Mac(m)
    }

    /// The value of option `code`, if present.
    fn option(&self, code: u8) -> Option<&[u8]> {
        let b = self.buffer.as_ref();
        let mut at = FIXED_LEN;
        while at < b.len() {
            match b[at] {
                OPT_END => return None,
                OPT_PAD => at += 1,
                c => {
                    let len = usize::from(b[at + 1]);
                    if c == code {
                        return Some(&b[at + 2..at + 2 + len]);
                    }
                    at += 2 + len;
                }
            }
        }
        None
    }

    pub fn msg_type(&self) -> Option<u8> {
        self.option(OPT_MSG_TYPE)
            .filter(|v| v.len() == 1)
            .map(|v| v[0])
    }

    fn ip_option(&self, code: u8) -> Option<Ipv4Addr> {
        self.option(code)
            .filter(|v| v.len() == 4)
            .map(|v| Ipv4Addr::new(v[0], v[1], v[2], v[3]))
    }

    pub fn requested_ip(&self) -> Option<Ipv4Addr> {
        self.ip_option(OPT_REQUESTED_IP)
    }

    pub fn server_id(&self) -> Option<Ipv4Addr> {
        self.ip_option(OPT_SERVER_ID)
    }
}

/// An answer from the node's DHCP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub msg_type: u8,
    pub xid: u32,
    pub flags: u16,
    pub chaddr: Mac,
    /// The address offered (0.0.0.0 in a NAK).
    pub yiaddr: Ipv4Addr,
    pub server: Ipv4Addr,
    pub prefix: u8,
    pub lease_secs: u32,
    pub mtu: u16,
}

impl Reply {
    /// Bytes [`Reply::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        FIXED_LEN
            + 3
            + 6
            + if self.msg_type == NAK {
                0
            } else {
                6 + 6 + 4 + 6
            }
            + 1
    }

    /// Writes the message into `out[..buffer_len()]`.
    pub fn emit(&self, out: &mut [u8]) {
        let out = &mut out[..self.buffer_len()];
        out.fill(0);
        out[..4].copy_from_slice(&[2, 1, 6, 0]);
        out[4..8].copy_from_slice(&self.xid.to_be_bytes());
        out[10..12].copy_from_slice(&self.flags.to_be_bytes());
        out[16..20].copy_from_slice(&self.yiaddr.octets());
        out[28..34].copy_from_slice(&self.chaddr.0);
        out[236..240].copy_from_slice(&COOKIE);
        let mut at = FIXED_LEN;
        let mut put = |code: u8, value: &[u8]| {
            out[at] = code;
            out[at + 1] = value.len() as u8;
            out[at + 2..at + 2 + value.len()].copy_from_slice(value);
            at += 2 + value.len();
        };
        put(OPT_MSG_TYPE, &[self.msg_type]);
        put(OPT_SERVER_ID, &self.server.octets());
        if self.msg_type != NAK {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(self.prefix))
                .unwrap_or(0);
            let bcast = u32::from(self.yiaddr) | !mask;
            put(OPT_SUBNET_MASK, &mask.to_be_bytes());
            put(OPT_BROADCAST, &bcast.to_be_bytes());
            put(OPT_MTU, &self.mtu.to_be_bytes());
            put(OPT_LEASE_TIME, &self.lease_secs.to_be_bytes());
        }
        out[at] = OPT_END;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DISCOVER as udhcpc sends it (requested IP, then END).
    fn discover() -> Vec<u8> {
        let mut b = vec![0u8; FIXED_LEN];
        b[..4].copy_from_slice(&[1, 1, 6, 0]);
        b[4..8].copy_from_slice(&0xdead_beefu32.to_be_bytes());
        b[10] = 0x80;
        b[28..34].copy_from_slice(&[2, 0, 0, 0, 0, 0x0b]);
        b[236..240].copy_from_slice(&COOKIE);
        b.extend_from_slice(&[53, 1, DISCOVER, 0, 50, 4, 100, 64, 0, 20, 255, 0, 0]);
        b
    }

    #[test]
    fn deconstruct_discover() {
        let b = discover();
        let m = Message::new_checked(&b[..]).unwrap();
        assert_eq!((m.xid(), m.flags()), (0xdead_beef, 0x8000));
        assert_eq!(m.msg_type(), Some(DISCOVER));
        assert_eq!(m.requested_ip(), Some(Ipv4Addr::new(100, 64, 0, 20)));
        assert_eq!(m.server_id(), None);
        assert_eq!(m.chaddr(), Mac([2, 0, 0, 0, 0, 0x0b]));
        // An option running past the end; a reply (op 2); no cookie.
        let mut bad = b.clone();
        bad.truncate(FIXED_LEN + 6);
        bad[FIXED_LEN + 4] = 50;
        bad[FIXED_LEN + 5] = 4;
        assert!(Message::new_checked(&bad[..]).is_err());
        let mut bad = b.clone();
        bad[0] = 2;
        assert!(Message::new_checked(&bad[..]).is_err());
        let mut bad = b;
        bad[236] = 0;
        assert!(Message::new_checked(&bad[..]).is_err());
    }

    #[test]
    fn construct_offer() {
        let r = Reply {
            msg_type: OFFER,
            xid: 7,
            flags: 0x8000,
            chaddr: Mac([2, 0, 0, 0, 0, 0x0b]),
            yiaddr: Ipv4Addr::new(100, 64, 0, 20),
            server: Ipv4Addr::new(100, 64, 0, 1),
            prefix: 10,
            lease_secs: 3600,
            mtu: 1360,
        };
        let mut out = vec![0u8; r.buffer_len()];
        r.emit(&mut out);
        assert_eq!(&out[..4], &[2, 1, 6, 0]);
        assert_eq!(&out[16..20], &[100, 64, 0, 20]);
        assert_eq!(
            &out[FIXED_LEN..],
            &[
                53, 1, 2, 54, 4, 100, 64, 0, 1, 1, 4, 255, 192, 0, 0, 28, 4, 100, 127, 255, 255,
                26, 2, 0x05, 0x50, 51, 4, 0, 0, 0x0e, 0x10, 255
            ]
        );
        let nak = Reply {
            msg_type: NAK,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            ..r
        };
        let mut out = vec![0u8; nak.buffer_len()];
        nak.emit(&mut out);
        assert_eq!(&out[FIXED_LEN..], &[53, 1, 6, 54, 4, 100, 64, 0, 1, 255]);
    }
}
