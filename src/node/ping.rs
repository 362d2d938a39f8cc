//! `ringvpn ping NAME|VIRTUAL-IP|KEY`, as `tailscale ping`: a ping on the
//! path the peer's traffic takes now (straight, through a relay, or
//! routed over the ring), its round trip, and which path that was. The
//! target is found by certificate or `[peer]` name, by a virtual address
//! (the resolver's cache, or a certificate's addresses) or by key; a
//! member we have no session with gets an on-demand link, and the first
//! pings wait for it.

use super::{Node, PeerIdx};
use crate::crypto::NodeKey;
use crate::time::Instant;
use std::time::Duration;

/// A pong, as `ringvpn ping` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pong {
    pub name: String,
    pub rtt: Duration,
    /// "direct", "relayed" or "overlay", and the relay's name.
    pub path: &'static str,
    pub relay: Option<String>,
    /// Links the pong crossed (1: straight).
    pub hops: u8,
}

impl Node {
    /// The member `what` names: a peer's name, a virtual IPv4 address it
    /// holds, or its key (base64).
    pub fn find_member(&self, what: &str) -> Option<NodeKey> {
        if let Some(p) = self.peers.iter().find(|p| p.name() == what) {
            return Some(p.key);
        }
        if let Ok(ip) = what.parse::<std::net::Ipv4Addr>() {
            use crate::vpn::resolve::Entry;
            let cached = self.vpn.as_ref().and_then(|v| {
                v.resolver().entries().find_map(|(a, e)| match e {
                    Entry::Known { key, .. } if *a == ip => Some(*key),
                    _ => None,
                })
            });
            if cached.is_some() {
                return cached;
            }
            return self
                .peers
                .iter()
                .find(|p| {
                    p.trust
                        .cert
                        .as_ref()
                        .is_some_and(|c| c.allows(std::net::IpAddr::V4(ip)))
                })
                .map(|p| p.key);
        }
        NodeKey::from_base64(what)
    }

    /// Sends a ping to `key` on its current path (asking for a link
    /// first if there is no session). `false`: not a member we may reach.
    pub fn ping_member(&mut self, now: Instant, key: NodeKey) -> bool {
        let Some(&p) = self.index.by_key.get(&key) else {
            return self.link_on_demand(now, key);
        };
        if self.peers[usize::from(p.0)].sessions.current.is_none() {
            return self.link_on_demand(now, key);
        }
        self.send_ping(now, p);
        self.settle(now);
        true
    }

    /// The answer to our last ping to `key`, once it came.
    pub fn pong(&self, key: &NodeKey) -> Option<Pong> {
        let p: PeerIdx = *self.index.by_key.get(key)?;
        let peer = &*self.peers[usize::from(p.0)];
        let (at, rtt, hops) = peer.live.pong()?;
        if peer.live.last_ping.is_some_and(|sent| at < sent) {
            return None;
        }
        Some(Pong {
            name: peer.name().to_string(),
            rtt,
            path: peer.path_name(),
            relay: peer
                .relay()
                .map(|r| self.peers[usize::from(r.0)].name().to_string()),
            hops,
        })
    }
}
