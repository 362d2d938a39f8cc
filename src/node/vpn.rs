//! The node's side of the VPN (overlay mode): it hands TAP frames, member
//! packets, broadcasts and DHT results to `vpn::Vpn`, the policy object,
//! and carries out what comes back — seal a packet for a member, write a
//! frame, pass a broadcast along the ring, count a drop. Peers, sessions
//! and certificates are the node's; the VPN asks about them through
//! [`Members`].

use super::peer::Peer;
use super::{DropReason, Event, Node, PeerIdx, Target};
use crate::buf::PacketBuf;
use crate::crypto::cert::Trust;
use crate::crypto::NodeKey;
use crate::net::Prefix;
use crate::overlay::dht::RecordPolicy;
use crate::overlay::Addr;
use crate::routes;
use crate::time::Instant;
use crate::vpn::claim::Claim;
use crate::vpn::{broadcast, record, Action, Discard, Dst, Judge, Members, Out, Sender, Signer};
use crate::wire::dht::Record;
use crate::wire::overlay::{Broadcast, BROADCAST_HEADER_LEN};
use crate::wire::MsgType;
use std::net::{IpAddr, Ipv4Addr};

/// The peer table as the VPN sees it.
struct PeerView<'a> {
    peers: &'a [super::peer::PeerSlot],
    trust: Option<&'a Trust>,
}

impl Members for PeerView<'_> {
    fn key(&self, p: PeerIdx) -> NodeKey {
        self.peers[usize::from(p.0)].key
    }

    fn may_hold(&self, p: PeerIdx, ip: Ipv4Addr) -> bool {
        may_hold(self.trust, &self.peers[usize::from(p.0)], Some(ip))
    }

    fn origin(&self, p: PeerIdx) -> crate::firewall::Origin<'_> {
        let peer = &*self.peers[usize::from(p.0)];
        match &peer.trust.cert {
            Some(c) => crate::firewall::Origin {
                groups: &c.groups,
                name: Some(&c.name),
            },
            // Static keys: the `[peer]` name (a dynamic peer has none a
            // rule could name).
            None => crate::firewall::Origin {
                groups: &[],
                name: peer.given_name(),
            },
        }
    }
}

/// Certificate mode: whether `peer` may hold `ip`, by the addresses its
/// certificate lists. Yes while its certificate is not known yet (no
/// handshake): packets then wait for the session, and are checked again
/// when they are released.
fn may_hold(trust: Option<&Trust>, peer: &Peer, ip: Option<Ipv4Addr>) -> bool {
    if trust.is_none() {
        return true;
    }
    match (&peer.trust.cert, ip) {
        (Some(c), Some(ip)) => c.allows(IpAddr::V4(ip)),
        (Some(_), None) => false,
        (None, _) => true,
    }
}

/// What a storing node keeps: address records and route records that
/// check out (a route record's authority, in static-key mode, is judged
/// by the members that use it: they know their `[peer] routes`).
struct StoredRecords(record::AddressPolicy);

impl RecordPolicy for StoredRecords {
    fn admit(&self, key: Addr, r: &Record, now: Instant) -> bool {
        if r.value.first() != Some(&routes::record::VERSION) {
            return self.0.admit(key, r, now);
        }
        let checker = routes::record::Checker {
            network: &self.0.network,
            authority: match &self.0.trust {
                Some(t) => routes::record::Authority::Certificates(t),
                None => routes::record::Authority::Open,
            },
            wall_origin_us: self.0.wall_origin_us,
        };
        checker.check(key, r.owner, &r.value, now).is_ok()
    }
}

impl From<Discard> for DropReason {
    fn from(d: Discard) -> DropReason {
        match d {
            Discard::BadFrame => DropReason::BadFrame,
            Discard::LocalOnly => DropReason::LocalOnly,
            Discard::NotInNetwork => DropReason::NotInNetwork,
            Discard::OutsideSource => DropReason::OutsideSource,
            Discard::NotOurRoute => DropReason::NotOurRoute,
            Discard::UnknownIp => DropReason::UnknownIp,
            Discard::ResolveQueueFull => DropReason::ResolveQueueFull,
            Discard::SpoofedSource => DropReason::SpoofedSource,
            Discard::NotCertified(_) => DropReason::ClaimNotCertified,
            Discard::BroadcastDuplicate => DropReason::BroadcastDuplicate,
            Discard::BroadcastRateLimited => DropReason::BroadcastRateLimited,
            Discard::BroadcastMalformed => DropReason::OverlayMalformed,
            Discard::PoolEmpty => DropReason::PoolEmpty,
            Discard::FirewallDenied => DropReason::FirewallDenied,
        }
    }
}

fn dns_status(v: &crate::vpn::Vpn) -> crate::node::status::DnsStatus {
    use crate::vpn::dns::Registration;
    let d = v.dns();
    crate::node::status::DnsStatus {
        server: v.config().gateway(),
        zone: format!("{}.", v.config().network),
        name: d.own_fqdn(),
        registration: match d.registration() {
            Registration::Nameless => "no name".into(),
            Registration::Waiting => "waiting for our address".into(),
            Registration::Registering { .. } => "registering".into(),
            Registration::Registered { .. } => "registered".into(),
            Registration::Taken { holder } => format!("taken by node {}", holder.to_hex()),
        },
        cached: d.cached(),
        stats: d.stats.clone(),
    }
}

impl Node {
    /// Replaces the inbound firewall rules (a reload); `false` outside
    /// VPN mode.
    pub fn set_firewall_rules(&mut self, rules: Vec<crate::firewall::Rule>) -> bool {
        match self.vpn.as_mut() {
            Some(v) => {
                v.firewall_mut().set_rules(rules);
                true
            }
            None => false,
        }
    }

    /// The claimed (or configured) virtual IPv4 address and the VPN's
    /// state, for status; `None` outside overlay VPN mode.
    pub fn vpn_status(&self) -> Option<crate::node::status::VpnStatus> {
        let v = self.vpn.as_ref()?;
        let (state, holder) = match v.claim() {
            Claim::Waiting => ("waiting for the ring", None),
            Claim::Claiming { .. } => ("claiming", None),
            Claim::Held { .. } => ("held", None),
            Claim::Conflict { holder, .. } => ("conflict", Some(holder)),
            Claim::Exhausted => ("no free address found", None),
        };
        let cfg = v.config();
        let ip = v.claim().ip().or(v.own_v4());
        Some(crate::node::status::VpnStatus {
            network: cfg.network.clone(),
            address: ip,
            prefix: cfg.subnet.1,
            ipv6: ip.and_then(|ip| cfg.v6_of(ip)),
            state,
            holder,
            cached: v.resolver().cached(),
            resolving: v.resolver().resolving(),
            stats: v.stats().clone(),
            dns: dns_status(v),
        })
    }

    /// The virtual IPv4 address we hold (claimed in the DHT), if any: a
    /// query (status, tests); the shell acts on [`Event::AddressHeld`].
    pub fn held_address(&self) -> Option<Ipv4Addr> {
        self.vpn.as_ref()?.claim().held()
    }

    /// Sets the DHT record policy and writes the gratuitous ARP that
    /// announces the virtual router.
    pub(super) fn vpn_start(&mut self) {
        self.update_record_policy();
        if let Some(buf) = self.vpn.as_ref().and_then(|v| v.announce(&mut self.pool)) {
            self.out.frames.push_back(buf);
        }
    }

    /// What this node stores in the DHT for others: signed address
    /// records that check out against the current trust (called again
    /// when a revocation list is taken).
    pub(super) fn update_record_policy(&mut self) {
        let network = self.vpn.as_ref().map(|v| v.config().network.clone());
        let Some(ov) = self.overlay.as_mut() else {
            return;
        };
        ov.set_record_policy(Box::new(StoredRecords(record::AddressPolicy {
            network: network.unwrap_or_default(),
            trust: self.certs.trust.clone(),
            wall_origin_us: self.env.wall_origin_us,
        })));
    }

    /// Certificate mode: whether peer `p` may hold the address `buf` is
    /// for (checked on the send path, before sealing).
    pub(super) fn may_receive(&self, p: PeerIdx, buf: &PacketBuf) -> bool {
        let trust = self.certs.trust.as_ref();
        if trust.is_none() {
            return true;
        }
        let peer = &*self.peers[usize::from(p.0)];
        let dst = self
            .vpn
            .as_ref()
            .and_then(|v| v.packet_dst(self.pool.data(buf)));
        match (dst, &peer.trust.cert) {
            // Outside: the gateway's certificate must cover the address.
            (Some(Dst::Outside(ip)), Some(c)) => {
                c.may_route(&Prefix::new(ip, if ip.is_ipv4() { 32 } else { 128 }))
            }
            (Some(Dst::Outside(_)), None) => true,
            (Some(Dst::Member(ip)), _) => may_hold(trust, peer, Some(ip)),
            (None, _) => may_hold(trust, peer, None),
        }
    }

    /// A frame the host sent.
    pub(super) fn vpn_frame_in(&mut self, now: Instant, buf: PacketBuf) {
        let (Some(v), Some(ov)) = (self.vpn.as_mut(), self.overlay.as_mut()) else {
            return self.drop_buf(buf, DropReason::BadFrame);
        };
        let out = v.from_host(now, ov, &mut self.pool, self.routes.as_deref(), buf);
        self.vpn_out(now, out);
    }

    /// An IP packet from peer `p`.
    pub(super) fn packet_from_peer(&mut self, now: Instant, p: PeerIdx, buf: PacketBuf) {
        let (Some(v), Some(ov)) = (self.vpn.as_mut(), self.overlay.as_mut()) else {
            return self.drop_buf(buf, DropReason::BadType);
        };
        let view = PeerView {
            peers: &self.peers,
            trust: self.certs.trust.as_ref(),
        };
        let from = Sender {
            members: &view,
            routes: self.routes.as_deref(),
            peer: p,
        };
        let out = v.from_member(now, ov, &mut self.pool, from, buf);
        self.vpn_out(now, out);
    }

    /// A ring broadcast from a link.
    pub(super) fn broadcast_in(&mut self, now: Instant, buf: PacketBuf) {
        let Some(v) = self.vpn.as_mut() else {
            return self.drop_buf(buf, DropReason::BadType);
        };
        let out = v.broadcast_in(now, &self.pool, buf);
        self.vpn_out(now, out);
    }

    /// A finished DHT operation for the VPN (a lookup, our claim); gives
    /// it back if it was neither.
    pub(super) fn vpn_dht_event(
        &mut self,
        now: Instant,
        e: crate::overlay::dht::client::Event,
    ) -> Option<crate::overlay::dht::client::Event> {
        let (Some(v), Some(ov)) = (self.vpn.as_mut(), self.overlay.as_mut()) else {
            return Some(e);
        };
        let judge = Judge {
            members: &PeerView {
                peers: &self.peers,
                trust: self.certs.trust.as_ref(),
            },
            trust: self.certs.trust.as_ref(),
            wall_origin_us: self.env.wall_origin_us,
            signer: Signer {
                identity: &self.identity,
                cert: self.certs.mine.as_deref(),
            },
        };
        let e = v.dht_event(now, ov, &mut self.pool, &judge, e);
        self.run_vpn_actions(now);
        e
    }

    /// The VPN's timer: the address claim.
    pub(super) fn vpn_timers(&mut self, now: Instant) {
        let linked = self.index.linked > 0;
        let (Some(v), Some(ov)) = (self.vpn.as_mut(), self.overlay.as_mut()) else {
            return;
        };
        let signer = Signer {
            identity: &self.identity,
            cert: self.certs.mine.as_deref(),
        };
        v.handle_timeout(now, ov, &signer, linked);
        self.run_vpn_actions(now);
    }

    pub(super) fn vpn_deadline(&self) -> Option<Instant> {
        self.vpn.as_ref()?.poll_timeout(self.index.linked > 0)
    }

    /// Carries out what the VPN asked for besides the packet at hand.
    fn run_vpn_actions(&mut self, now: Instant) {
        let Some(v) = self.vpn.as_mut() else {
            return;
        };
        let actions: Vec<Action> = v.drain_actions().collect();
        for a in actions {
            match a {
                Action::Packet(out) => self.vpn_out(now, out),
                Action::Held(ip) => self.push_event(Event::AddressHeld(ip)),
                Action::Conflict { ip, holder } => {
                    self.push_event(Event::AddressConflict { ip, holder })
                }
            }
        }
    }

    /// Carries out what the VPN decided for one packet.
    fn vpn_out(&mut self, now: Instant, out: Out) {
        match out {
            Out::Send { key, buf } => self.send_packet_to(now, key, buf),
            Out::Frame(buf) => self.push_frame(buf),
            Out::Broadcast { buf, end, deliver } => self.pass_broadcast_on(now, buf, end, deliver),
            Out::Parked => {}
            Out::Drop(buf, Discard::NotCertified(p)) => self.refuse_claim(p, buf),
            Out::Drop(buf, why) => self.drop_buf(buf, why.into()),
        }
    }

    fn push_frame(&mut self, buf: PacketBuf) {
        if self.out.frames.len() >= super::MAX_QUEUED {
            return self.drop_buf(buf, DropReason::QueueFull);
        }
        self.out.frames.push_back(buf);
    }

    /// A packet to or from an address peer `p` is not certified for.
    pub(super) fn refuse_claim(&mut self, p: PeerIdx, buf: PacketBuf) {
        self.drop_buf(buf, DropReason::ClaimNotCertified);
        let n = self.stats.drops(DropReason::ClaimNotCertified);
        if n <= 8 || n % 1024 == 0 {
            log::warn!(
                "{} holds an address its certificate does not list: refused ({n} packets so far)",
                self.peers[usize::from(p.0)].name()
            );
        }
    }

    /// Sends an IP packet to the node with `key`: over our link to it if we
    /// have one, else over an end-to-end session routed over the overlay.
    fn send_packet_to(&mut self, now: Instant, key: NodeKey, buf: PacketBuf) {
        if key == self.identity.public() {
            return self.drop_buf(buf, DropReason::UnknownIp);
        }
        let Some(p) = self.find_or_add_peer(key, None) else {
            return self.drop_buf(buf, DropReason::TooManyPeers);
        };
        if !self.may_receive(p, &buf) {
            return self.refuse_claim(p, buf);
        }
        let peer = &mut *self.peers[usize::from(p.0)];
        if !peer.is_linked() && peer.sessions.current.is_none() {
            if peer.hs.pending.is_none() {
                // No link: an end-to-end session over the overlay.
                peer.route();
            } else if Self::linking_directly(peer) && self.overlay.is_some() {
                // A direct link is being punched and traffic must not wait
                // for it: the punch goes on, its inits now also over the
                // overlay, and the first answer carries the traffic.
                peer.reach.punching = true;
                self.start_handshake(now, Target::Peer(p));
            }
        }
        let peer = &mut *self.peers[usize::from(p.0)];
        if !peer.role.wanted {
            peer.role.wanted = true;
            self.touch(p);
        }
        self.send_to_peer(now, p, MsgType::Packet, buf);
        self.count_demand(now, p);
    }

    /// Sends copies of a broadcast (header in front) to our links within
    /// the arc up to `end`, and hands one back to the VPN for the host if
    /// `deliver`.
    fn pass_broadcast_on(&mut self, now: Instant, buf: PacketBuf, end: Addr, deliver: bool) {
        let Some(ov) = self.overlay.as_ref() else {
            return self.drop_buf(buf, DropReason::BadType);
        };
        let targets = broadcast::targets(ov.table(), ov.addr(), end);
        let hops = Broadcast::new_checked(self.pool.data(&buf)).map_or(0, |b| b.hops());
        for &(peer, arc_end) in &targets {
            let Some(copy) = self.pool.duplicate(&buf) else {
                self.stats.count(DropReason::PoolEmpty);
                continue;
            };
            if let Ok(mut b) = Broadcast::new_checked(self.pool.data_mut(&copy)) {
                b.set_hops(hops.saturating_add(1));
                b.set_end(arc_end);
            }
            self.send_to_peer(now, peer, MsgType::Control, copy);
        }
        let Some(v) = self.vpn.as_mut().filter(|_| deliver) else {
            return self.pool.free(buf);
        };
        let mut buf = buf;
        self.pool.trim_front(&mut buf, BROADCAST_HEADER_LEN);
        let out = v.deliver_group(&mut self.pool, buf);
        self.vpn_out(now, out);
    }
}
