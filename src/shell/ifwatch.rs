//! Our own endpoints, kept current.
//!
//! A node listening on a specific address advertises that address. One
//! listening on `0.0.0.0` (or `[::]`) advertises every address of every
//! interface that is up, with the listen port — hosts behind the same NAT
//! reach each other on these — except loopback, IPv6 link-local, and the
//! TAP device's own addresses: underlay traffic to the VPN's addresses
//! would run through the tunnel it carries (the node also refuses such
//! addresses by prefix, whatever interface holds them).
//!
//! Addresses change under a running daemon (a laptop on a new Wi-Fi, a
//! DHCP renewal, an interface brought up), so the set is read again when
//! the kernel says an address was added or removed (a netlink socket
//! subscribed to the IPv4 and IPv6 address groups), or every
//! [`FALLBACK_EVERY`] where netlink is not available. Reading is cheap
//! (getifaddrs), and the node compares the new set with the old one.

use crate::node::Endpoint;
use crate::sys;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// How often addresses are read again without netlink.
pub const FALLBACK_EVERY: Duration = Duration::from_secs(10);

pub struct LocalEndpoints {
    udp: SocketAddr,
    tcp: Option<SocketAddr>,
    /// Our TAPs (one, or a network's each in sub-ring mode): their
    /// addresses are the VPN's, never underlay endpoints.
    taps: Vec<String>,
    /// Address-change notifications (only when listening on an
    /// unspecified address: a specific one does not change).
    notify: Option<OwnedFd>,
    /// Without notifications: when to read the addresses again.
    next_read: Option<Instant>,
}

impl LocalEndpoints {
    pub fn new(udp: SocketAddr, tcp: Option<SocketAddr>, taps: Vec<String>) -> LocalEndpoints {
        let wildcard = udp.ip().is_unspecified() || tcp.is_some_and(|t| t.ip().is_unspecified());
        let notify = if wildcard {
            sys::address_change_socket()
                .map_err(|e| log::warn!("no address-change notifications ({e}): reading interface addresses every {} s", FALLBACK_EVERY.as_secs()))
                .ok()
        } else {
            None
        };
        let next_read = (wildcard && notify.is_none()).then(|| Instant::now() + FALLBACK_EVERY);
        LocalEndpoints {
            udp,
            tcp,
            taps,
            notify,
            next_read,
        }
    }

    /// The notification socket, to register with the poll.
    pub fn fd(&self) -> Option<RawFd> {
        self.notify.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// How long the poll may sleep before the fallback reading is due.
    pub fn timeout(&self) -> Option<Duration> {
        self.next_read
            .map(|t| t.saturating_duration_since(Instant::now()))
    }

    /// Whether the addresses should be read again: the poll said the
    /// notification socket is readable (`notified`; it is drained here),
    /// or the fallback reading is due. Costs no system call otherwise.
    pub fn due(&mut self, notified: bool) -> bool {
        if let Some(fd) = self.fd() {
            return notified && sys::drain(fd);
        }
        match self.next_read {
            Some(t) if Instant::now() >= t => {
                self.next_read = Some(Instant::now() + FALLBACK_EVERY);
                true
            }
            _ => false,
        }
    }

    /// What we advertise now: the listen address if it is a specific
    /// one, else every usable interface address with the listen port;
    /// the TCP listener likewise.
    pub fn current(&self) -> Vec<Endpoint> {
        let interfaces = if self.udp.ip().is_unspecified()
            || self.tcp.is_some_and(|t| t.ip().is_unspecified())
        {
            sys::interface_addresses()
        } else {
            Vec::new()
        };
        let expand = |a: SocketAddr| -> Vec<SocketAddr> {
            if !a.ip().is_unspecified() {
                return vec![a];
            }
            interfaces
                .iter()
                .filter(|i| i.up && !i.loopback && !i.ip.is_loopback() && !self.taps.contains(&i.interface))
                .map(|i| i.ip)
                .filter(|ip| a.is_ipv6() || ip.is_ipv4())
                .filter(|ip| !matches!(ip, std::net::IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80))
                .map(|ip| SocketAddr::new(ip, a.port()))
                .collect()
        };
        let mut out: Vec<Endpoint> = expand(self.udp).into_iter().map(Endpoint::udp).collect();
        if let Some(t) = self.tcp {
            out.extend(expand(t).into_iter().map(Endpoint::tcp));
        }
        out
    }
}
