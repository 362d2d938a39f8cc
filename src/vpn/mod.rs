//! The VPN over the overlay: what unmodified hosts see on the TAP.
//!
//! In overlay mode the node is the host's router on a virtual link: it
//! answers ARP and neighbour solicitations for every virtual address itself
//! (with one virtual MAC, [`VIRTUAL_MAC`]), carries IP packets (not
//! Ethernet frames) to the node that holds the destination address — found
//! through the DHT — and delivers broadcast and multicast to every member
//! by a bounded broadcast over the ring. This module is policy and address
//! arithmetic; `node::vpn` carries it out on pool buffers.
//!
//! - `claim`: holding a virtual IPv4 address (static or automatic) in the DHT;
//! - `resolve`: virtual IP → node, with positive and negative caches and a
//!   bounded queue of the first packets while a lookup runs;
//! - `local`: ARP, neighbour discovery and DHCP answers on the TAP;
//! - `broadcast`: the ring broadcast's duplicate filter and rate limit;
//! - `name`, `dns`: members' names as signed DHT records, and the DNS
//!   server on the virtual router's address that answers from them.

pub mod broadcast;
pub mod claim;
pub mod dns;
mod engine;
pub mod local;
pub mod name;
pub mod record;
pub mod resolve;

pub use engine::{Action, Discard, Dst, Judge, Members, Out, Sender, Signer, Vpn, VpnStats};

use crate::crypto::NodeKey;
use crate::wire::ethernet::Mac;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The MAC every remote virtual address answers with. One address for all
/// keeps no per-peer state on the host, and a peer that moves or restarts
/// never invalidates the host's neighbour caches. Locally administered.
pub const VIRTUAL_MAC: Mac = Mac([0x02, 0x72, 0x76, 0x00, 0x00, 0x01]);

/// The TAP device's own MAC: locally administered, derived from the node
/// key so it survives restarts (and never equal to [`VIRTUAL_MAC`]).
pub fn host_mac(key: &NodeKey) -> Mac {
    let k = key.0;
    let mut m = [(k[0] & 0xfc) | 0x02, k[1], k[2], k[3], k[4], k[5]];
    if Mac(m) == VIRTUAL_MAC {
        m[5] ^= 0xff;
    }
    Mac(m)
}

/// How the node gets its virtual IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressMode {
    /// This address, claimed in the DHT; a holder elsewhere is a fatal
    /// configuration error.
    Static(Ipv4Addr),
    /// A free address of the subnet, claimed in the DHT.
    Auto,
}

/// What the VPN needs to know.
#[derive(Debug, Clone)]
pub struct VpnConfig {
    /// The network's name: part of every DHT key and of the default IPv6
    /// prefix, so networks sharing an overlay never mix.
    pub network: String,
    /// The virtual IPv4 subnet (default 100.64.0.0/10).
    pub subnet: (Ipv4Addr, u8),
    pub address: AddressMode,
    /// The /96 IPv6 prefix (each node's IPv6 address is the prefix with its
    /// IPv4 address in the low 32 bits); `None`: no IPv6.
    pub ipv6: Option<Ipv6Addr>,
    /// Answer the host's DHCP with the claimed address.
    pub dhcp: bool,
    /// TAP MTU (also sent in DHCP answers).
    pub mtu: u16,
    /// Inbound firewall rules (`[firewall]`; none: everything passes).
    pub firewall: Vec<crate::firewall::Rule>,
    /// This member's name in DNS (`NAME.NETWORK.`): its certificate's, or
    /// `name =` in the config.
    pub name: Option<String>,
}

/// In overlay mode the TAP carries IP packets and a packet may be routed
/// over the overlay: 1360 (IP packet) + 32 (end-to-end header and tag) +
/// 20 (routed data header) + 32 (link header and tag) + 8 (UDP) + 40
/// (IPv6) = 1492, within a 1500-byte underlay.
pub const DEFAULT_OVERLAY_MTU: u16 = 1360;

impl VpnConfig {
    pub fn new(network: &str) -> VpnConfig {
        VpnConfig {
            network: network.to_string(),
            subnet: (Ipv4Addr::new(100, 64, 0, 0), 10),
            address: AddressMode::Auto,
            ipv6: Some(default_ipv6_prefix(network)),
            dhcp: false,
            mtu: DEFAULT_OVERLAY_MTU,
            firewall: Vec::new(),
            name: None,
        }
    }

    fn mask(&self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.subnet.1))
            .unwrap_or(0)
    }

    /// Whether `ip` is in the subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.subnet.0) & self.mask()
    }

    /// The subnet's first host address: the virtual router (DHCP server,
    /// answered by ARP), never assigned to a node.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from((u32::from(self.subnet.0) & self.mask()) + 1)
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.subnet.0) | !self.mask())
    }

    /// Whether `ip` may be a node's address (in the subnet, not the
    /// network, broadcast or gateway address).
    pub fn assignable(&self, ip: Ipv4Addr) -> bool {
        let net = u32::from(self.subnet.0) & self.mask();
        self.contains(ip) && u32::from(ip) != net && ip != self.broadcast() && ip != self.gateway()
    }

    /// The `attempt`-th automatic guess for the node at ring address `seed`
    /// (deterministic, so a restart guesses the same address first).
    pub fn guess(&self, seed: u128, attempt: u32) -> Ipv4Addr {
        let hosts = (!self.mask()).saturating_sub(2).max(1); // minus gateway, broadcast
        let h = (seed
            ^ u128::from(attempt).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835))
        .wrapping_mul(0xd6e8_feb8_6659_fd93)
            >> 64;
        let offset = 2 + (h as u64 % u64::from(hosts)) as u32;
        Ipv4Addr::from((u32::from(self.subnet.0) & self.mask()) + offset)
    }

    /// The IPv6 address that goes with `v4`.
    pub fn v6_of(&self, v4: Ipv4Addr) -> Option<Ipv6Addr> {
        let mut o = self.ipv6?.octets();
        o[12..].copy_from_slice(&v4.octets());
        Some(Ipv6Addr::from(o))
    }

    /// The IPv4 address inside an IPv6 address of our prefix.
    pub fn v4_of(&self, v6: Ipv6Addr) -> Option<Ipv4Addr> {
        let p = self.ipv6?.octets();
        let o = v6.octets();
        (o[..12] == p[..12]).then(|| Ipv4Addr::new(o[12], o[13], o[14], o[15]))
    }

    /// The DHT key under which `ip`'s holder is registered.
    pub fn ip_key(&self, ip: Ipv4Addr) -> crate::overlay::Addr {
        ip_key(&self.network, ip)
    }
}

/// The DHT key under which `ip`'s holder is registered in `network`.
pub fn ip_key(network: &str, ip: Ipv4Addr) -> crate::overlay::Addr {
    let mut name = Vec::with_capacity(8 + network.len());
    name.extend_from_slice(b"ip4\0");
    name.extend_from_slice(network.as_bytes());
    name.push(0);
    name.extend_from_slice(&ip.octets());
    crate::overlay::dht::key_of(&name)
}

/// A unique-local /96 for the network: fd + 40 bits of
/// SHA-256("ringvpn-ula" ‖ name) (RFC 4193's random global ID, derived so
/// every member computes the same), subnet 0, then 32 bits for the IPv4.
pub fn default_ipv6_prefix(network: &str) -> Ipv6Addr {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"ringvpn-ula");
    ctx.update(network.as_bytes());
    let d = ctx.finish();
    let mut o = [0u8; 16];
    o[0] = 0xfd;
    o[1..6].copy_from_slice(&d.as_ref()[..5]);
    Ipv6Addr::from(o)
}

/// The Ethernet multicast MAC an IP multicast or broadcast destination
/// maps to (RFC 1112, RFC 2464).
pub fn group_mac(dst: std::net::IpAddr) -> Mac {
    match dst {
        std::net::IpAddr::V4(v4) if v4.is_multicast() => {
            let o = v4.octets();
            Mac([0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]])
        }
        std::net::IpAddr::V6(v6) => {
            let o = v6.octets();
            Mac([0x33, 0x33, o[12], o[13], o[14], o[15]])
        }
        _ => Mac::BROADCAST,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnet_arithmetic() {
        let c = VpnConfig::new("test");
        assert_eq!(c.gateway(), Ipv4Addr::new(100, 64, 0, 1));
        assert_eq!(c.broadcast(), Ipv4Addr::new(100, 127, 255, 255));
        assert!(c.contains(Ipv4Addr::new(100, 100, 1, 1)));
        assert!(!c.contains(Ipv4Addr::new(100, 128, 0, 1)));
        assert!(!c.assignable(c.gateway()) && !c.assignable(c.broadcast()));
        assert!(!c.assignable(Ipv4Addr::new(100, 64, 0, 0)));
        for a in 0..1000 {
            let g = c.guess(0x1234_5678_9abc_def0_1122_3344_5566_7788, a);
            assert!(c.assignable(g), "{g}");
        }
        assert_ne!(c.guess(1, 0), c.guess(1, 1));
        assert_eq!(c.guess(7, 3), c.guess(7, 3), "deterministic");
    }

    #[test]
    fn ipv6_embeds_ipv4() {
        let c = VpnConfig::new("test");
        let p = c.ipv6.unwrap();
        assert_eq!(p.octets()[0], 0xfd);
        assert_eq!(default_ipv6_prefix("test"), p, "derived, not random");
        assert_ne!(default_ipv6_prefix("other"), p);
        let v4 = Ipv4Addr::new(100, 64, 0, 12);
        let v6 = c.v6_of(v4).unwrap();
        assert_eq!(c.v4_of(v6), Some(v4));
        assert_eq!(c.v4_of("fe80::1".parse().unwrap()), None);
        assert_ne!(c.ip_key(v4), c.ip_key(Ipv4Addr::new(100, 64, 0, 13)));
        assert_ne!(c.ip_key(v4), VpnConfig::new("other").ip_key(v4));
    }

    #[test]
    fn group_macs() {
        assert_eq!(
            group_mac("224.0.0.251".parse().unwrap()),
            Mac([1, 0, 0x5e, 0, 0, 0xfb])
        );
        assert_eq!(
            group_mac("ff02::fb".parse().unwrap()),
            Mac([0x33, 0x33, 0, 0, 0, 0xfb])
        );
        assert_eq!(
            group_mac("100.127.255.255".parse().unwrap()),
            Mac::BROADCAST
        );
        assert_ne!(host_mac(&NodeKey([0; 32])), VIRTUAL_MAC);
    }
}
