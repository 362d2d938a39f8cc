//! Small address types shared by every layer: IP prefixes and sets of them.
//!
//! They sit at the bottom (beside `time` and `rand`) because the wire
//! encoding of certificates, the VPN's subnets, the underlay guard and
//! (later) routes all speak of prefixes, and none of those may import
//! another's module to get one.

use core::fmt;
use smallvec::SmallVec;
use std::net::IpAddr;

/// An address range: `addr/len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefix {
    pub addr: IpAddr,
    pub len: u8,
}

impl Prefix {
    pub fn new(addr: IpAddr, len: u8) -> Prefix {
        Prefix { addr, len }
    }

    /// Whether `ip` lies in the range. An IPv4-mapped IPv6 address (what a
    /// dual-stack socket reports for an IPv4 peer) counts as its IPv4 self.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(p), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                u32::from(p) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(p), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                u128::from(p) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }

    /// Parses `ADDR` (a single address) or `ADDR/LEN`.
    pub fn parse(s: &str) -> Option<Prefix> {
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match l {
            Some(l) => l.parse().ok().filter(|&l| l <= max)?,
            None => max,
        };
        Some(Prefix { addr, len })
    }

    /// Whether the address has no bits set past the length (198.19.5.0/24,
    /// not 198.19.5.7/24): a route names a network, not a host in it.
    pub fn is_network(&self) -> bool {
        match self.addr {
            IpAddr::V4(a) => {
                let host = u32::MAX.checked_shr(u32::from(self.len)).unwrap_or(0);
                u32::from(a) & host == 0
            }
            IpAddr::V6(a) => {
                let host = u128::MAX.checked_shr(u32::from(self.len)).unwrap_or(0);
                u128::from(a) & host == 0
            }
        }
    }
}

impl Prefix {
    /// Whether all of `other` lies inside this prefix (same family, as
    /// long or longer): 0.0.0.0/0 covers every IPv4 prefix.
    pub fn covers(&self, other: &Prefix) -> bool {
        self.addr.is_ipv4() == other.addr.is_ipv4()
            && self.len <= other.len
            && self.contains(other.addr)
    }

    /// Whether the two share any address.
    pub fn overlaps(&self, other: &Prefix) -> bool {
        self.covers(other) || other.covers(self)
    }

    /// 0.0.0.0/0 or ::/0: a default route (an exit).
    pub fn is_default(&self) -> bool {
        self.len == 0
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// A handful of prefixes, checked in order. Inline up to four (a VPN's
/// IPv4 and IPv6 subnets and a route or two) so that asking costs no
/// allocation and no pointer chase on the data path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrefixSet {
    prefixes: SmallVec<[Prefix; 4]>,
}

impl PrefixSet {
    /// Adds `p` (once).
    pub fn insert(&mut self, p: Prefix) {
        if !self.prefixes.contains(&p) {
            self.prefixes.push(p);
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.prefixes.iter().any(|p| p.contains(ip))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Prefix> {
        self.prefixes.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.prefixes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_contain_their_addresses_and_mapped_ones() {
        let p = Prefix::parse("100.64.0.0/10").unwrap();
        assert!(p.contains("100.100.0.102".parse().unwrap()));
        assert!(p.contains("::ffff:100.64.0.9".parse().unwrap()));
        assert!(!p.contains("198.18.2.1".parse().unwrap()));
        assert!(!p.contains("100.128.0.1".parse().unwrap()));
        let v6 = Prefix::parse("fd6d:347f:a583::/96").unwrap();
        assert!(v6.contains("fd6d:347f:a583::6440:d".parse().unwrap()));
        assert!(!v6.contains("fd6d:347f:a584::1".parse().unwrap()));
        assert!(Prefix::parse("0.0.0.0/0")
            .unwrap()
            .contains("198.18.0.1".parse().unwrap()));
        assert_eq!(Prefix::parse("1.2.3.4").unwrap().len, 32);
        assert!(Prefix::parse("1.2.3.4/33").is_none());
        let mut set = PrefixSet::default();
        assert!(!set.contains("100.64.0.1".parse().unwrap()));
        set.insert(p);
        set.insert(p);
        set.insert(v6);
        assert_eq!(set.iter().count(), 2);
        assert!(set.contains("100.64.0.1".parse().unwrap()));
        assert!(!set.contains("198.18.0.1".parse().unwrap()));
    }
}
