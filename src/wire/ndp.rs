//! IPv6 neighbour discovery (RFC 4861): the neighbour solicitation the
//! host sends on the TAP, and the advertisement the node answers with,
//! written in place over the solicitation (same length).
//!
//! ```text
//! ICMPv6 NS (type 135): 0 type | 1 code=0 | 2 checksum (2) | 4 reserved (4)
//!                       8 target address (16) | 24 options (type, len in 8-byte units, …)
//! ICMPv6 NA (type 136): as NS, byte 4 holds the flags R=0x80 S=0x40 O=0x20;
//!                       option 2 = target link-layer address
//! ```

use super::ethernet::Mac;
use super::ip::{checksum_add, checksum_finish, pseudo_v6, PROTO_ICMPV6};
use super::{Error, Result};
use std::net::Ipv6Addr;

pub const TYPE_ROUTER_SOLICIT: u8 = 133;
pub const TYPE_NEIGHBOUR_SOLICIT: u8 = 135;
pub const TYPE_NEIGHBOUR_ADVERT: u8 = 136;
/// NS/NA without options.
pub const NS_LEN: usize = 24;
/// An advertisement with the target link-layer address option.
pub const NA_LEN: usize = 32;

const FLAG_SOLICITED: u8 = 0x40;
const FLAG_OVERRIDE: u8 = 0x20;
const OPT_TARGET_LLA: u8 = 2;

/// A view of a neighbour solicitation (ICMPv6 body, after the IPv6 header).
#[derive(Debug)]
pub struct Solicit<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Solicit<T> {
    /// Type 135, code 0, and options whose lengths are non-zero and fit.
    pub fn new_checked(buffer: T) -> Result<Solicit<T>> {
        let b = buffer.as_ref();
        if b.len() < NS_LEN || b[0] != TYPE_NEIGHBOUR_SOLICIT || b[1] != 0 {
            return Err(Error);
        }
        let mut at = NS_LEN;
        while at < b.len() {
            let len = usize::from(*b.get(at + 1).ok_or(Error)?) * 8;
            if len == 0 || at + len > b.len() {
                return Err(Error);
            }
            at += len;
        }
        Ok(Solicit { buffer })
    }

    pub fn target(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[8..24]);
        Ipv6Addr::from(a)
    }
}

/// A solicited advertisement "`target` is at `mac`", from `target` to
/// `to` (the checksum covers both addresses).
#[derive(Debug, Clone, Copy)]
pub struct AdvertRepr {
    pub target: Ipv6Addr,
    pub mac: Mac,
    pub to: Ipv6Addr,
}

impl AdvertRepr {
    pub const fn buffer_len(&self) -> usize {
        NA_LEN
    }

    /// Writes the ICMPv6 message into `icmp[..NA_LEN]` with its checksum.
    pub fn emit(&self, icmp: &mut [u8]) {
        let AdvertRepr { target, mac, to } = *self;
        icmp[..8].copy_from_slice(&[
            TYPE_NEIGHBOUR_ADVERT,
            0,
            0,
            0,
            FLAG_SOLICITED | FLAG_OVERRIDE,
            0,
            0,
            0,
        ]);
        icmp[8..24].copy_from_slice(&target.octets());
        icmp[24] = OPT_TARGET_LLA;
        icmp[25] = 1;
        icmp[26..32].copy_from_slice(&mac.0);
        let sum = checksum_add(
            pseudo_v6(&target, &to, PROTO_ICMPV6, NA_LEN as u32),
            &icmp[..NA_LEN],
        );
        icmp[2..4].copy_from_slice(&checksum_finish(sum).to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solicitation_and_advert() {
        let target: Ipv6Addr = "fd00::6440:c".parse().unwrap();
        let mut ns = vec![TYPE_NEIGHBOUR_SOLICIT, 0, 0, 0, 0, 0, 0, 0];
        ns.extend_from_slice(&target.octets());
        ns.extend_from_slice(&[1, 1, 2, 0, 0, 0, 0, 0x0a]);
        let s = Solicit::new_checked(&ns[..]).unwrap();
        assert_eq!(s.target(), target);
        // A zero-length option, or one running past the end, is refused.
        let mut bad = ns.clone();
        bad[25] = 0;
        assert!(Solicit::new_checked(&bad[..]).is_err());
        bad[25] = 2;
        assert!(Solicit::new_checked(&bad[..]).is_err());
        assert!(Solicit::new_checked(&ns[..23]).is_err());

        let to: Ipv6Addr = "fd00::6440:a".parse().unwrap();
        let mut na = [0u8; NA_LEN];
        AdvertRepr {
            target,
            mac: Mac([2, 1, 2, 3, 4, 5]),
            to,
        }
        .emit(&mut na);
        assert_eq!((na[0], na[4], na[24], na[25]), (136, 0x60, 2, 1));
        assert_eq!(&na[26..], &[2, 1, 2, 3, 4, 5]);
        // The checksum verifies over the pseudo-header.
        let sum = checksum_add(pseudo_v6(&target, &to, PROTO_ICMPV6, 32), &na);
        assert_eq!(checksum_finish(sum), 0);
    }
}
