//! The 20-byte endpoint encoding shared by handshake and overlay messages:
//! family (4 or 6), reserved, port, 16 address bytes (IPv4 in the first 4).

use super::{get_u16, Error, Result};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub const LEN: usize = 20;

pub fn emit(ep: &SocketAddr, out: &mut [u8]) {
    out[1] = 0;
    out[2..4].copy_from_slice(&ep.port().to_be_bytes());
    out[4..20].fill(0);
    match ep.ip() {
        IpAddr::V4(a) => {
            out[0] = 4;
            out[4..8].copy_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            out[0] = 6;
            out[4..20].copy_from_slice(&a.octets());
        }
    }
}

/// Parses `b[..20]`; an unknown family is an error.
pub fn parse(b: &[u8]) -> Result<SocketAddr> {
    let b = b.get(..LEN).ok_or(Error)?;
    let port = get_u16(b, 2);
    let ip = match b[0] {
        4 => IpAddr::V4(Ipv4Addr::new(b[4], b[5], b[6], b[7])),
        6 => {
            let a: [u8; 16] = b[4..20].try_into().map_err(|_| Error)?;
            IpAddr::V6(Ipv6Addr::from(a))
        }
        _ => return Err(Error),
    };
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_fixture() {
        let mut b = [0xaau8; LEN];
        emit(&"198.18.0.7:5140".parse().unwrap(), &mut b);
        assert_eq!(&b[..8], &[4, 0, 0x14, 0x14, 198, 18, 0, 7]);
        assert!(b[8..].iter().all(|&x| x == 0));
        assert_eq!(parse(&b).unwrap().to_string(), "198.18.0.7:5140");
        let v6: SocketAddr = "[2001:db8::1]:9".parse().unwrap();
        emit(&v6, &mut b);
        assert_eq!(parse(&b).unwrap(), v6);
        b[0] = 5;
        assert!(parse(&b).is_err());
        assert!(parse(&b[..19]).is_err());
    }
}
