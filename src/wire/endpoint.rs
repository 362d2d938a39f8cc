//! Endpoints, and the 20-byte encoding shared by handshake and overlay
//! messages: family (4 or 6), flags (bit 0: TCP), port, 16 address bytes
//! (IPv4 in the first 4).

use super::{get_u16, Error, Result};
use core::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub const LEN: usize = 20;
const FLAG_TCP: u8 = 1;

/// Where a node can be reached: an underlay address and the transport.
/// UDP is the norm; TCP is the fallback for networks that drop UDP.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub tcp: bool,
}

impl Endpoint {
    pub const fn udp(addr: SocketAddr) -> Endpoint {
        Endpoint { addr, tcp: false }
    }

    pub const fn tcp(addr: SocketAddr) -> Endpoint {
        Endpoint { addr, tcp: true }
    }

    pub fn ip(&self) -> IpAddr {
        self.addr.ip()
    }
}

impl From<SocketAddr> for Endpoint {
    fn from(addr: SocketAddr) -> Endpoint {
        Endpoint::udp(addr)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.tcp {
            write!(f, "tcp:{}", self.addr)
        } else {
            write!(f, "{}", self.addr)
        }
    }
}

impl std::str::FromStr for Endpoint {
    type Err = std::net::AddrParseError;

    /// `ADDRESS:PORT` (UDP) or `tcp:ADDRESS:PORT`.
    fn from_str(s: &str) -> core::result::Result<Endpoint, Self::Err> {
        match s.strip_prefix("tcp:") {
            Some(rest) => rest.parse().map(Endpoint::tcp),
            None => s.trim_start_matches("udp:").parse().map(Endpoint::udp),
        }
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Writes `ep` into `out[..20]`.
pub fn emit_endpoint(ep: &Endpoint, out: &mut [u8]) {
    emit(&ep.addr, out);
    out[1] = if ep.tcp { FLAG_TCP } else { 0 };
}

/// Parses `b[..20]` as an endpoint; unknown flags are an error.
pub fn parse_endpoint(b: &[u8]) -> Result<Endpoint> {
    let addr = parse(b)?;
    match b[1] {
        0 => Ok(Endpoint::udp(addr)),
        FLAG_TCP => Ok(Endpoint::tcp(addr)),
        _ => Err(Error),
    }
}

/// Writes an address (no transport: the handshake's observed address).
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

    #[test]
    fn transports() {
        let mut b = [0u8; LEN];
        let t = Endpoint::tcp("198.18.0.7:5140".parse().unwrap());
        emit_endpoint(&t, &mut b);
        assert_eq!(&b[..2], &[4, 1]);
        assert_eq!(parse_endpoint(&b).unwrap(), t);
        assert_eq!(t.to_string(), "tcp:198.18.0.7:5140");
        let u = Endpoint::udp("198.18.0.7:5140".parse().unwrap());
        emit_endpoint(&u, &mut b);
        assert_eq!(parse_endpoint(&b).unwrap(), u);
        b[1] = 2;
        assert!(parse_endpoint(&b).is_err());
    }
}
