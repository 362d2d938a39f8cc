//! Endpoints, and the 20-byte encoding shared by handshake and overlay
//! messages: family (4 or 6), transport (0 UDP, 1 TCP, 2 carried), port,
//! 16 address bytes (IPv4 in the first 4).
//!
//! A *carried* endpoint is not an underlay address: it names a daemon on
//! the public ring by its 128-bit ring address (family 6, port 0), and a
//! datagram to it travels as routed data over the public overlay
//! (docs/SUBRINGS.md). Only a sub-ring's node, whose host carries such
//! datagrams, may use one; every other node refuses them as candidates.

use super::{get_u16, Error, Result};
use core::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub const LEN: usize = 20;
/// How a datagram reaches an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Transport {
    /// The norm.
    Udp = 0,
    /// The fallback for networks that drop UDP.
    Tcp = 1,
    /// Routed data over the public overlay to the daemon whose ring
    /// address the endpoint holds (a sub-ring's edge of last resort).
    Carried = 2,
}

/// Where a node can be reached: an underlay address and the transport.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub transport: Transport,
}

impl Endpoint {
    pub const fn udp(addr: SocketAddr) -> Endpoint {
        Endpoint {
            addr,
            transport: Transport::Udp,
        }
    }

    pub const fn tcp(addr: SocketAddr) -> Endpoint {
        Endpoint {
            addr,
            transport: Transport::Tcp,
        }
    }

    /// The daemon at public-ring address `ring`, over the public overlay.
    pub fn carried(ring: [u8; 16]) -> Endpoint {
        Endpoint {
            addr: SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ring)), 0),
            transport: Transport::Carried,
        }
    }

    pub fn ip(&self) -> IpAddr {
        self.addr.ip()
    }

    pub fn is_udp(&self) -> bool {
        self.transport == Transport::Udp
    }

    pub fn is_tcp(&self) -> bool {
        self.transport == Transport::Tcp
    }

    pub fn is_carried(&self) -> bool {
        self.transport == Transport::Carried
    }

    /// The public-ring address a carried endpoint names.
    pub fn ring_addr(&self) -> Option<[u8; 16]> {
        match (self.transport, self.addr.ip()) {
            (Transport::Carried, IpAddr::V6(a)) => Some(a.octets()),
            _ => None,
        }
    }
}

impl From<SocketAddr> for Endpoint {
    fn from(addr: SocketAddr) -> Endpoint {
        Endpoint::udp(addr)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.transport {
            Transport::Udp => write!(f, "{}", self.addr),
            Transport::Tcp => write!(f, "tcp:{}", self.addr),
            Transport::Carried => {
                write!(f, "carried:")?;
                self.ring_addr()
                    .unwrap_or_default()
                    .iter()
                    .try_for_each(|b| write!(f, "{b:02x}"))
            }
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
    out[1] = ep.transport as u8;
}

/// Parses `b[..20]` as an endpoint; an unknown transport, or a carried
/// one that is not a bare IPv6 ring address, is an error.
pub fn parse_endpoint(b: &[u8]) -> Result<Endpoint> {
    let addr = parse(b)?;
    match b[1] {
        0 => Ok(Endpoint::udp(addr)),
        1 => Ok(Endpoint::tcp(addr)),
        2 => match addr {
            SocketAddr::V6(a) if a.port() == 0 => Ok(Endpoint::carried(a.ip().octets())),
            _ => Err(Error),
        },
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
        // Carried: only a bare IPv6 ring address.
        b[1] = 2;
        assert!(parse_endpoint(&b).is_err());
        b[1] = 3;
        assert!(parse_endpoint(&b).is_err());
        let c = Endpoint::carried([0xab; 16]);
        emit_endpoint(&c, &mut b);
        assert_eq!(&b[..4], &[6, 2, 0, 0]);
        assert_eq!(parse_endpoint(&b).unwrap(), c);
        assert_eq!(c.ring_addr(), Some([0xab; 16]));
        assert_eq!(c.to_string(), format!("carried:{}", "ab".repeat(16)));
        b[3] = 1;
        assert!(parse_endpoint(&b).is_err());
    }
}
