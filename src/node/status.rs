//! A snapshot of the node for `ringvpn status` (built on request, not per packet).

use super::{DropReason, Node};
use crate::crypto::NodeKey;
use crate::overlay::table::reason;
use crate::overlay::Addr;
use crate::time::Instant;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct PeerStatus {
    pub name: String,
    pub key: NodeKey,
    /// The virtual IPv4 addresses we know it holds (from the resolver's
    /// cache: those we have talked to).
    pub virtual_ips: Vec<std::net::Ipv4Addr>,
    pub endpoint: Option<crate::wire::endpoint::Endpoint>,
    /// "up", "connecting", …, or "revoked (list N)".
    pub state: String,
    /// How traffic reaches the peer: "direct" (straight to its endpoint),
    /// "relayed" (a tunnel edge through `relay`) or "overlay" (end to end,
    /// routed over the ring).
    pub path: &'static str,
    /// The tunnel's relay (its name).
    pub relay: Option<String>,
    /// Links the last message from the peer crossed (1: direct).
    pub hops: u8,
    /// Endpoints tried for a direct path.
    pub candidates: Vec<crate::wire::endpoint::Endpoint>,
    /// Why the path is not direct ("" when it is): the question users of
    /// every VPN ask.
    pub why_not_direct: String,
    /// A link of the ring overlay (not only a VPN peer).
    pub linked: bool,
    /// Time since the last completed handshake we initiated or answered.
    pub last_handshake_ago: Option<Duration>,
    /// The current session's AEAD ("chacha20-poly1305", "aes-256-gcm").
    pub cipher: Option<&'static str>,
    pub rtt: Option<Duration>,
    pub observed: Option<SocketAddr>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
}

/// One overlay connection.
#[derive(Debug, Clone)]
pub struct ConnStatus {
    pub addr: Addr,
    pub endpoint: crate::wire::endpoint::Endpoint,
    /// Why we keep it, and why the other side does ("near,shortcut").
    pub reasons: String,
    pub their_reasons: String,
}

/// The node's place in the ring.
#[derive(Debug, Clone)]
pub struct OverlayStatus {
    pub addr: Addr,
    pub left: Option<Addr>,
    pub right: Option<Addr>,
    pub size_estimate: f64,
    pub conns: Vec<ConnStatus>,
}

/// Reason bits as words.
pub fn reason_names(bits: u8) -> String {
    let names: Vec<&str> = [
        (reason::NEAR, "near"),
        (reason::SHORTCUT, "shortcut"),
        (reason::LEAF, "leaf"),
        (reason::ONDEMAND, "on-demand"),
        (reason::RELAY, "relay"),
    ]
    .iter()
    .filter(|(b, _)| bits & b != 0)
    .map(|(_, n)| *n)
    .collect();
    if names.is_empty() {
        "-".into()
    } else {
        names.join(",")
    }
}

/// The VPN over the overlay.
#[derive(Debug, Clone)]
pub struct VpnStatus {
    pub network: String,
    pub address: Option<std::net::Ipv4Addr>,
    pub prefix: u8,
    pub ipv6: Option<std::net::Ipv6Addr>,
    /// "held", "claiming", "waiting for the ring", "conflict", …
    pub state: &'static str,
    /// Who holds our address, in a conflict.
    pub holder: Option<Addr>,
    pub cached: usize,
    pub resolving: usize,
    pub stats: crate::vpn::VpnStats,
    pub dns: DnsStatus,
}

/// The DNS server on the virtual router's address.
#[derive(Debug, Clone)]
pub struct DnsStatus {
    pub server: std::net::Ipv4Addr,
    /// `NETWORK.`
    pub zone: String,
    /// Our name in it (`h1.office.`).
    pub name: Option<String>,
    /// "registered", "registering", "waiting for our address", "taken by …"
    pub registration: String,
    pub cached: usize,
    pub stats: crate::vpn::dns::DnsStats,
}

/// One route a member offers, as we see it.
#[derive(Debug, Clone)]
pub struct RouteStatus {
    pub prefix: crate::net::Prefix,
    pub advertiser: String,
    /// "alive", "dead", "not probed" (not a prefix we would use).
    pub state: &'static str,
    pub rtt: Option<std::time::Duration>,
    pub in_use: bool,
    /// Refused for overlapping this (prefix from advertiser).
    pub refused: Option<String>,
}

/// Exit gateways and subnet routes.
#[derive(Debug, Clone)]
pub struct RoutesStatus {
    /// What we carry for others.
    pub advertised: Vec<crate::net::Prefix>,
    pub exit: &'static str,
    /// The gateway in use, and why.
    pub exit_via: Option<String>,
    pub exit_why: &'static str,
    pub routes: Vec<RouteStatus>,
    pub stats: crate::routes::RouteStats,
}

/// The firewall, when rules are given.
#[derive(Debug, Clone)]
pub struct FirewallStatus {
    /// Each rule as written, and the packets it let in.
    pub rules: Vec<(String, u64)>,
    pub flows: usize,
    pub stats: crate::firewall::FirewallStats,
}

#[derive(Debug, Clone)]
pub struct NodeStatus {
    pub key: NodeKey,
    pub peers: Vec<PeerStatus>,
    pub drops: Vec<(&'static str, u64)>,
    pub handshakes_completed: u64,
    pub pool_in_use: u32,
    pub pool_high_water: u32,
    pub pool_capacity: u32,
    pub overlay: Option<OverlayStatus>,
    pub vpn: Option<VpnStatus>,
    pub routes: Option<RoutesStatus>,
    pub firewall: Option<FirewallStatus>,
    pub dht: Option<crate::overlay::dht::DhtStats>,
    /// Map-reduce tasks started here, served for others, refused.
    pub tasks: Option<crate::manage::ManageStats>,
    pub dht_latency: super::stats::LatencyHistogram,
    /// What peers' answers say about the NAT in front of us.
    pub nat: &'static str,
    /// Endpoints we advertise (local, reflexive, predicted, TCP).
    pub advertised: Vec<crate::wire::endpoint::Endpoint>,
    /// Bytes relayed for others' tunnels.
    pub relayed_bytes: u64,
    pub transit_bytes: u64,
    /// Prefixes the underlay never uses (the VPN's own; see
    /// `node::underlay`).
    pub underlay_excluded: Vec<crate::net::Prefix>,
    /// Something the operator should know (no bootstrap answers).
    pub warning: Option<String>,
}

impl Node {
    /// The virtual addresses the resolver has seen peer `p` hold, or
    /// else the single addresses its certificate lists.
    fn virtual_ips_of(&self, p: &super::peer::Peer) -> Vec<std::net::Ipv4Addr> {
        use crate::vpn::resolve::Entry;
        let Some(v) = self.vpn.as_ref() else {
            return Vec::new();
        };
        let seen: Vec<_> = v
            .resolver()
            .entries()
            .filter(|(_, e)| matches!(e, Entry::Known { key: k, .. } if *k == p.key))
            .map(|(ip, _)| *ip)
            .collect();
        if !seen.is_empty() {
            return seen;
        }
        let listed = p.trust.cert.iter().flat_map(|c| c.prefixes.iter());
        listed
            .filter_map(|pf| match pf.addr {
                std::net::IpAddr::V4(a) if pf.len == 32 => Some(a),
                _ => None,
            })
            .collect()
    }

    pub fn status(&self, now: Instant) -> NodeStatus {
        let peers = self
            .peers
            .iter()
            .filter(|p| !p.is_vacant())
            .map(|p| PeerStatus {
                name: p.name().to_string(),
                key: p.key,
                virtual_ips: self.virtual_ips_of(p),
                endpoint: p.reach.endpoint,
                state: match self.revoked_by(&p.key) {
                    Some(serial) => format!("revoked (list {serial})"),
                    None => p.state(now, &self.timers).name().to_string(),
                },
                path: p.path_name(),
                relay: p
                    .relay()
                    .map(|r| self.peers[usize::from(r.0)].name().to_string()),
                hops: p.live.rx_hops,
                candidates: p.reach.candidates.to_vec(),
                why_not_direct: self.why_not_direct(p, now),
                linked: p.is_linked(),
                last_handshake_ago: p
                    .hs
                    .last_handshake
                    .max(p.sessions.current.as_ref().map(|s| s.created))
                    .map(|t| now.saturating_since(t)),
                cipher: p.sessions.current.as_ref().map(|s| s.cipher().name()),
                rtt: p.live.rtt(),
                observed: p.reach.observed,
                rx_bytes: p.traffic.rx_bytes,
                tx_bytes: p.traffic.tx_bytes,
                rx_packets: p.traffic.rx_packets,
                tx_packets: p.traffic.tx_packets,
            })
            .collect();
        NodeStatus {
            key: self.public_key(),
            peers,
            drops: DropReason::ALL
                .iter()
                .map(|&r| (r.name(), self.stats.drops(r)))
                .collect(),
            handshakes_completed: self.stats.handshakes_completed,
            pool_in_use: self.pool.in_use(),
            pool_high_water: self.pool.high_water(),
            pool_capacity: self.pool.capacity(),
            overlay: self.overlay.as_ref().map(|ov| OverlayStatus {
                addr: ov.addr(),
                left: ov.left(),
                right: ov.right(),
                size_estimate: ov.estimate_size(),
                conns: ov
                    .table()
                    .iter()
                    .map(|c| ConnStatus {
                        addr: c.addr,
                        endpoint: c.endpoint,
                        reasons: reason_names(c.mine),
                        their_reasons: reason_names(c.theirs),
                    })
                    .collect(),
            }),
            vpn: self.vpn_status(),
            routes: self.routes_status(),
            firewall: self
                .vpn
                .as_ref()
                .map(|v| v.firewall())
                .filter(|f| f.enabled())
                .map(|f| FirewallStatus {
                    rules: f.rules().map(|(r, n)| (r.to_string(), n)).collect(),
                    flows: f.flows(now),
                    stats: f.stats().clone(),
                }),
            dht: self.overlay.as_ref().map(|ov| ov.dht().stats.clone()),
            tasks: self.manager.as_ref().map(|m| m.stats().clone()),
            dht_latency: self.stats.dht_latency.clone(),
            nat: self.nat_mapping().name(),
            advertised: self
                .overlay
                .as_ref()
                .map_or_else(Vec::new, |ov| ov.endpoints().to_vec()),
            relayed_bytes: self.relayed_bytes(),
            transit_bytes: self.stats.transit_bytes,
            underlay_excluded: self.underlay_guard().iter().copied().collect(),
            warning: match &self.certs.refused {
                Some(r) => Some(format!(
                    "our certificate is revoked (list {}): {} refused it {} s ago",
                    r.serial,
                    r.by,
                    now.saturating_since(r.at).as_secs()
                )),
                None => self.silent_bootstraps().map(str::to_string),
            },
        }
    }

    /// A sentence on why `p` is not reached directly.
    fn why_not_direct(&self, p: &super::peer::Peer, now: Instant) -> String {
        use super::handshakes::PUNCH_ATTEMPTS;
        if p.path_name() == "direct" {
            return String::new();
        }
        let tried = p.reach.candidates.len();
        let failed = p.reach.punch_failed.map(|t| {
            format!(
                "no answer to {PUNCH_ATTEMPTS} inits sent to {tried} candidate endpoint(s), {} s ago",
                now.saturating_since(t).as_secs()
            )
        });
        let retry = p
            .tunnel
            .direct_retry
            .filter(|_| p.relay().is_some())
            .map(|t| {
                format!(
                    "; next direct try in {} s",
                    t.saturating_since(now).as_secs()
                )
            });
        match (p.reach.punching, failed) {
            (true, _) => format!("punching: inits going to {tried} candidate endpoint(s)"),
            (false, Some(f)) => f + &retry.unwrap_or_default(),
            (false, None) if p.relay().is_some() => "tunnel asked for by the other side".into(),
            (false, None) => format!(
                "no direct link asked for yet (on-demand after {} packets in {} s)",
                super::ondemand::THRESHOLD,
                super::ondemand::WINDOW.as_secs()
            ),
        }
    }

    /// One peer's path state, for diagnosing the simulator's pairs.
    pub fn debug_peer(&self, key: &NodeKey) -> String {
        let Some(&p) = self.index.by_key.get(key) else {
            return "not a peer".into();
        };
        let q = &*self.peers[usize::from(p.0)];
        format!(
            "linked {} routed {} relay {:?} endpoint {:?} proven {:?} punching {} tunnel_wanted {} pending {} current {} watch {:?} last_rx {:?} last_tx {:?} init_guard {} provisional {}",
            q.is_linked(),
            q.is_routed(),
            q.relay().map(|r| self.peers[usize::from(r.0)].name().to_string()),
            q.reach.endpoint,
            q.reach.proven,
            q.reach.punching,
            q.tunnel.wanted,
            q.hs.pending.is_some(),
            q.sessions.current.is_some(),
            q.reach.watch,
            q.live.last_rx,
            q.live.last_tx,
            q.hs.last_init_timestamp,
            q.hs.answer.as_ref().is_some_and(|a| a.provisional.is_some())
        )
    }

    /// Which timer is due when (for diagnosing a timer that never clears).
    pub fn debug_deadlines(&self, now: Instant) -> String {
        let mut out = format!(
            "now {now:?} overlay {:?}\n",
            self.overlay
                .as_ref()
                .map(crate::overlay::Overlay::poll_timeout)
        );
        for (i, p) in self.peers.iter().enumerate() {
            if let Some(d) = p.deadline(&self.timers).filter(|d| *d <= now) {
                out += &format!(
                    "peer {i} {} due {d:?} ping_due {:?} last_rx {:?} last_ping {:?} created {:?}: wanted {} linked {} dynamic {} pending {} current {} endpoint {:?} relay {:?} tunnel_wanted {} relay_asked {:?} direct_retry {:?} ondemand {} punching {}\n",
                    p.name(),
                    p.ping_due(&self.timers),
                    p.live.last_rx,
                    p.live.last_ping,
                    p.sessions.current.as_ref().map(|c| c.created),
                    p.role.wanted,
                    p.is_linked(),
                    p.role.dynamic,
                    p.hs.pending.is_some(),
                    p.sessions.current.is_some(),
                    p.reach.endpoint,
                    p.relay(),
                    p.tunnel.wanted,
                    p.tunnel.asked,
                    p.tunnel.direct_retry,
                    p.demand.linked,
                    p.reach.punching
                );
            }
        }
        for b in 0..self.strangers.boots.len() {
            out += &format!(
                "boot {b} due {:?} peer {:?}\n",
                self.boot_due(b, self.boot_context().0, self.boot_context().1),
                self.strangers.boots[b].peer
            );
        }
        out
    }
}
