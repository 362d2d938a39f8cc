//! The VPN side of the node (overlay mode): frames from the TAP become IP
//! packets to the node holding their destination, answers to the host's
//! ARP/ND/DHCP, or ring broadcasts; packets from peers are checked (does
//! the sender hold its source address?) and written to the TAP with an
//! Ethernet header prepended in place. Policy lives in `crate::vpn`; our
//! own address's claim is `claims`.

use super::{DropReason, Node, PeerIdx, Target};
use crate::buf::PacketBuf;
use crate::crypto::NodeKey;
use crate::overlay::Addr;
use crate::time::Instant;
use crate::vpn::broadcast::{self, BroadcastState, Refusal};
use crate::vpn::claim::Claim;
use crate::vpn::local::{self, Local};
use crate::vpn::resolve::{Answer, Dir, Resolver};
use crate::vpn::{group_mac, AddressMode, VpnConfig, VIRTUAL_MAC};
use crate::wire::ethernet::{Frame, Mac, HEADER_LEN as ETH_LEN};
use crate::wire::ip::{self, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6};
use crate::wire::overlay::{emit_broadcast_header, Broadcast, BROADCAST_HEADER_LEN};
use crate::wire::MsgType;
use std::net::{IpAddr, Ipv4Addr};

/// VPN counters for status.
#[derive(Debug, Clone, Default)]
pub struct VpnStats {
    pub lookups: u64,
    pub lookups_failed: u64,
    /// Address records a lookup returned that did not check out (forged,
    /// misplaced, or not certified for the address).
    pub records_refused: u64,
    pub packets_out: u64,
    pub packets_in: u64,
    pub broadcasts_sent: u64,
    pub broadcasts_delivered: u64,
    pub local_answers: u64,
}

pub(super) struct VpnState {
    pub cfg: VpnConfig,
    pub claim: Claim,
    pub(super) resolver: Resolver,
    bcast: BroadcastState,
    host_mac: Mac,
    pub(super) first_link: Option<Instant>,
    pub(super) started: Instant,
    pub(super) next_claim: Instant,
    /// Bootstraps were configured: wait for the ring before claiming.
    pub(super) joining: bool,
    pub stats: VpnStats,
}

impl VpnState {
    pub fn new(cfg: VpnConfig, key: &NodeKey, now: Instant, joining: bool) -> VpnState {
        VpnState {
            cfg,
            claim: Claim::Waiting,
            resolver: Resolver::default(),
            bcast: BroadcastState::default(),
            host_mac: crate::vpn::host_mac(key),
            first_link: None,
            started: now,
            next_claim: now,
            joining,
            stats: VpnStats::default(),
        }
    }

    fn own_v4(&self) -> Option<Ipv4Addr> {
        match (self.claim.held(), self.cfg.address) {
            (Some(ip), _) => Some(ip),
            (None, AddressMode::Static(ip)) => Some(ip),
            _ => None,
        }
    }
}

/// Whether `dst` is a broadcast or multicast destination for `vpn`.
fn is_group(vpn: &VpnConfig, dst: IpAddr) -> bool {
    match dst {
        IpAddr::V4(v4) => v4.is_multicast() || v4.is_broadcast() || v4 == vpn.broadcast(),
        IpAddr::V6(v6) => v6.is_multicast(),
    }
}

impl Node {
    /// The claimed (or configured) virtual IPv4 address and the VPN's
    /// state, for status; `None` outside overlay VPN mode.
    pub fn vpn_status(&self) -> Option<crate::node::status::VpnStatus> {
        let v = self.vpn.as_ref()?;
        let (state, holder) = match v.claim {
            Claim::Waiting => ("waiting for the ring", None),
            Claim::Claiming { .. } => ("claiming", None),
            Claim::Held { .. } => ("held", None),
            Claim::Conflict { holder, .. } => ("conflict", Some(holder)),
            Claim::Exhausted => ("no free address found", None),
        };
        let ip = v.claim.ip().or(v.own_v4());
        Some(crate::node::status::VpnStatus {
            network: v.cfg.network.clone(),
            address: ip,
            prefix: v.cfg.subnet.1,
            ipv6: ip.and_then(|ip| v.cfg.v6_of(ip)),
            state,
            holder,
            cached: v.resolver.cached(),
            resolving: v.resolver.resolving(),
            stats: v.stats.clone(),
        })
    }

    // ----- from the TAP -----

    /// A frame the host sent (overlay VPN mode).
    pub(super) fn vpn_frame_in(&mut self, now: Instant, mut buf: PacketBuf) {
        let Some(v) = self.vpn.as_mut() else {
            return self.drop_buf(buf, DropReason::BadFrame);
        };
        let own4 = v.own_v4();
        let own6 = own4.and_then(|ip| v.cfg.v6_of(ip));
        let Ok(ethertype) = Frame::new_checked(self.pool.data(&buf)).map(|f| f.ethertype()) else {
            return self.drop_buf(buf, DropReason::BadFrame);
        };
        match ethertype {
            ETHERTYPE_ARP => {
                return match local::answer_arp(self.pool.data_mut(&buf), &v.cfg, own4) {
                    Local::Answered => self.answer_host(buf),
                    Local::Ignored => self.drop_buf(buf, DropReason::LocalOnly),
                };
            }
            ETHERTYPE_IPV6 => match local::answer_ndp(self.pool.data_mut(&buf), &v.cfg, own6) {
                Some(Local::Answered) => return self.answer_host(buf),
                Some(Local::Ignored) => return self.drop_buf(buf, DropReason::LocalOnly),
                None => {}
            },
            ETHERTYPE_IPV4 => {
                if let Some(req) = local::dhcp_request(self.pool.data(&buf)) {
                    return self.answer_dhcp(buf, req);
                }
            }
            _ => return self.drop_buf(buf, DropReason::BadFrame),
        }
        self.pool.trim_front(&mut buf, ETH_LEN);
        let Some(dst) = ip::destination(self.pool.data(&buf)) else {
            return self.drop_buf(buf, DropReason::BadFrame);
        };
        let v = self.vpn.as_ref().expect("checked above");
        if is_group(&v.cfg, dst) {
            return self.broadcast_out(now, buf);
        }
        let v4 = match dst {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(v6) => v.cfg.v4_of(v6),
        };
        match v4 {
            Some(ip) if v.cfg.assignable(ip) => self.send_to_ip(now, ip, buf),
            Some(ip) if ip == v.cfg.gateway() => self.drop_buf(buf, DropReason::LocalOnly),
            _ => self.drop_buf(buf, DropReason::NotInNetwork),
        }
    }

    /// Writes an answer (rewritten in place) back to the host.
    fn answer_host(&mut self, buf: PacketBuf) {
        if let Some(v) = self.vpn.as_mut() {
            v.stats.local_answers += 1;
        }
        self.push_frame(buf);
    }

    fn push_frame(&mut self, buf: PacketBuf) {
        if self.out.frames.len() >= super::MAX_QUEUED {
            return self.drop_buf(buf, DropReason::QueueFull);
        }
        self.out.frames.push_back(buf);
    }

    fn answer_dhcp(&mut self, request: PacketBuf, req: local::DhcpRequest) {
        let Some(v) = self.vpn.as_ref() else {
            return self.drop_buf(request, DropReason::LocalOnly);
        };
        // Only once the address is ours: the client retries until then.
        let Some(ip) = v.claim.held().filter(|_| v.cfg.dhcp) else {
            return self.drop_buf(request, DropReason::LocalOnly);
        };
        let cfg = v.cfg.clone();
        self.pool.free(request);
        let Some(mut out) = self.pool.alloc() else {
            return self.stats.count(DropReason::PoolEmpty);
        };
        match local::dhcp_reply(self.pool.space_mut(&out), &cfg, req, ip) {
            Some(n) => {
                self.pool.set_len(&mut out, n);
                self.answer_host(out);
            }
            None => self.drop_buf(out, DropReason::LocalOnly),
        }
    }

    /// The IPv4 address an IP packet is for (an IPv6 one's embedded
    /// address in the network's /96).
    pub(super) fn packet_dst(&self, buf: &PacketBuf) -> Option<Ipv4Addr> {
        let v = self.vpn.as_ref()?;
        match ip::destination(self.pool.data(buf))? {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(a) => v.cfg.v4_of(a),
        }
    }

    /// Certificate mode: whether peer `p` may hold `ip`, by the addresses
    /// its certificate lists. Yes while its certificate is not known yet
    /// (no handshake): packets then wait for the session, and are checked
    /// again when they are released.
    pub(super) fn may_hold(&self, p: PeerIdx, ip: Option<Ipv4Addr>) -> bool {
        if self.certs.trust.is_none() {
            return true;
        }
        match (&self.peers[usize::from(p.0)].trust.cert, ip) {
            (Some(c), Some(ip)) => c.allows(IpAddr::V4(ip)),
            (Some(_), None) => false,
            (None, _) => true,
        }
    }

    /// A packet to or from an address peer `p` is not certified for.
    pub(super) fn refuse_claim(&mut self, p: PeerIdx, buf: PacketBuf) {
        self.drop_buf(buf, DropReason::ClaimNotCertified);
        let n = self.stats.drops(DropReason::ClaimNotCertified);
        if n <= 8 || n % 1024 == 0 {
            log::warn!(
                "{} holds an address its certificate does not list: refused ({n} packets so far)",
                self.peers[usize::from(p.0)].name
            );
        }
    }

    /// An IP packet for the holder of `ip`: sent if known, parked while
    /// the DHT is asked, dropped if nobody holds it.
    fn send_to_ip(&mut self, now: Instant, ip: Ipv4Addr, buf: PacketBuf) {
        let Some(v) = self.vpn.as_mut() else {
            return self.drop_buf(buf, DropReason::NotInNetwork);
        };
        match v.resolver.answer(now, ip) {
            Answer::Known(key) => self.send_packet_to(now, key, buf),
            Answer::Absent => self.drop_buf(buf, DropReason::UnknownIp),
            Answer::Unknown => self.resolve_then(now, ip, buf, Dir::Out),
        }
    }

    /// Parks `buf` until `ip` is resolved, starting the lookup if needed.
    fn resolve_then(&mut self, now: Instant, ip: Ipv4Addr, buf: PacketBuf, dir: Dir) {
        let Some(v) = self.vpn.as_mut() else {
            return self.drop_buf(buf, DropReason::NotInNetwork);
        };
        if !v.resolver.is_resolving(ip) {
            if !v.resolver.can_start(dir) {
                return self.drop_buf(buf, DropReason::ResolveQueueFull);
            }
            let key = v.cfg.ip_key(ip);
            v.stats.lookups += 1;
            let Some(op) = self.overlay.as_mut().map(|ov| ov.dht_get(now, key, true)) else {
                return self.drop_buf(buf, DropReason::NotInNetwork);
            };
            // The requests go out, and a replica of our own answers, when
            // the input settles.
            if let Some(v) = self.vpn.as_mut() {
                v.resolver.start(ip, op, dir);
            }
        }
        let v = self.vpn.as_mut().expect("checked above");
        if let Err(buf) = v.resolver.park(ip, buf, dir) {
            self.drop_buf(buf, DropReason::ResolveQueueFull);
        }
    }

    /// Sends an IP packet to the node with `key`: over our link to it if we
    /// have one, else over an end-to-end session routed over the overlay.
    pub(super) fn send_packet_to(&mut self, now: Instant, key: NodeKey, buf: PacketBuf) {
        if key == self.identity.public() {
            return self.drop_buf(buf, DropReason::UnknownIp);
        }
        let Some(p) = self.find_or_add_peer(key, None) else {
            return self.drop_buf(buf, DropReason::TooManyPeers);
        };
        // Certificate mode only: parsing the destination costs nothing else.
        if self.certs.trust.is_some() && !self.may_hold(p, self.packet_dst(&buf)) {
            return self.refuse_claim(p, buf);
        }
        let peer = &mut self.peers[usize::from(p.0)];
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
        let peer = &mut self.peers[usize::from(p.0)];
        if !peer.role.wanted {
            peer.role.wanted = true;
            self.touch(p);
        }
        if let Some(v) = self.vpn.as_mut() {
            v.stats.packets_out += 1;
        }
        self.send_to_peer(now, p, MsgType::Packet, buf);
        self.count_demand(now, p);
    }

    // ----- from peers -----

    /// An IP packet from peer `p`: delivered to the host only if `p`
    /// holds the packet's source address.
    pub(super) fn packet_from_peer(&mut self, now: Instant, p: PeerIdx, buf: PacketBuf) {
        let Some(v) = self.vpn.as_mut() else {
            return self.drop_buf(buf, DropReason::BadType);
        };
        let src = match ip::source(self.pool.data(&buf)) {
            Some(IpAddr::V4(v4)) => Some(v4),
            Some(IpAddr::V6(v6)) => v.cfg.v4_of(v6),
            None => return self.drop_buf(buf, DropReason::BadFrame),
        };
        let Some(src) = src.filter(|ip| v.cfg.assignable(*ip)) else {
            return self.drop_buf(buf, DropReason::SpoofedSource);
        };
        // A source the sender's certificate does not list is refused
        // before any lookup: a member sending from many addresses costs
        // nothing but its own packets.
        if !self.may_hold(p, Some(src)) {
            return self.refuse_claim(p, buf);
        }
        let Some(v) = self.vpn.as_mut() else {
            return self.drop_buf(buf, DropReason::BadType);
        };
        match v.resolver.answer(now, src) {
            Answer::Known(key) if key == self.peers[usize::from(p.0)].key => {
                if !self.may_hold(p, Some(src)) {
                    return self.refuse_claim(p, buf);
                }
                self.deliver_packet(buf)
            }
            Answer::Known(_) | Answer::Absent => self.drop_buf(buf, DropReason::SpoofedSource),
            Answer::Unknown => self.resolve_then(now, src, buf, Dir::In(p)),
        }
    }

    /// Writes an IP packet to the TAP: an Ethernet header goes in front in
    /// place, from the virtual MAC to the host (or to the group's MAC).
    pub(super) fn deliver_packet(&mut self, mut buf: PacketBuf) {
        let Some(v) = self.vpn.as_mut() else {
            return self.drop_buf(buf, DropReason::BadType);
        };
        let (dst, ethertype) = match ip::destination(self.pool.data(&buf)) {
            Some(d @ IpAddr::V4(_)) => (d, ETHERTYPE_IPV4),
            Some(d @ IpAddr::V6(_)) => (d, ETHERTYPE_IPV6),
            None => return self.drop_buf(buf, DropReason::BadFrame),
        };
        let to = if is_group(&v.cfg, dst) {
            group_mac(dst)
        } else {
            v.host_mac
        };
        v.stats.packets_in += 1;
        let Some(hdr) = self.pool.prepend(&mut buf, ETH_LEN) else {
            return self.drop_buf(buf, DropReason::BadFrame);
        };
        local::emit_ethernet(hdr, to, VIRTUAL_MAC, ethertype);
        self.push_frame(buf);
    }

    // ----- broadcast -----

    /// A broadcast or multicast packet from the host: to every member.
    fn broadcast_out(&mut self, now: Instant, mut buf: PacketBuf) {
        let (Some(v), Some(ov)) = (self.vpn.as_mut(), self.overlay.as_ref()) else {
            return self.drop_buf(buf, DropReason::NotInNetwork);
        };
        let me = ov.addr();
        let seq = v.bcast.next_seq();
        if v.bcast.accept(now, me, seq).is_err() {
            return self.drop_buf(buf, DropReason::BroadcastRateLimited);
        }
        v.stats.broadcasts_sent += 1;
        let Some(hdr) = self.pool.prepend(&mut buf, BROADCAST_HEADER_LEN) else {
            return self.drop_buf(buf, DropReason::BadFrame);
        };
        emit_broadcast_header(hdr, me, seq, me);
        self.pass_broadcast_on(now, buf, me, false);
    }

    /// A ring broadcast from a link: passed on within its arc, delivered
    /// to the host if it is a group packet from a member's address.
    pub(super) fn broadcast_in(&mut self, now: Instant, buf: PacketBuf) {
        let (Some(v), Some(ov)) = (self.vpn.as_mut(), self.overlay.as_ref()) else {
            return self.drop_buf(buf, DropReason::BadType);
        };
        let Ok(b) = Broadcast::new_checked(self.pool.data(&buf)) else {
            return self.drop_buf(buf, DropReason::OverlayMalformed);
        };
        let (src, seq, end) = (b.src(), b.seq(), b.end());
        if src == ov.addr() {
            return self.drop_buf(buf, DropReason::BroadcastDuplicate);
        }
        match v.bcast.accept(now, src, seq) {
            Ok(()) => self.pass_broadcast_on(now, buf, end, true),
            Err(Refusal::Duplicate) => self.drop_buf(buf, DropReason::BroadcastDuplicate),
            Err(Refusal::RateLimited) => self.drop_buf(buf, DropReason::BroadcastRateLimited),
        }
    }

    /// Sends copies of a broadcast (header in front) to our links within
    /// the arc up to `end`, and delivers one to the host if `deliver`.
    fn pass_broadcast_on(&mut self, now: Instant, buf: PacketBuf, end: Addr, deliver: bool) {
        let Some(ov) = self.overlay.as_ref() else {
            return self.drop_buf(buf, DropReason::BadType);
        };
        let targets = broadcast::targets(ov.table(), ov.addr(), end);
        let hops = self.pool.data(&buf)[1].saturating_add(1);
        for &(peer, arc_end) in &targets {
            let Some(copy) = self.pool.duplicate(&buf) else {
                self.stats.count(DropReason::PoolEmpty);
                continue;
            };
            if let Ok(mut b) = Broadcast::new_checked(self.pool.data_mut(&copy)) {
                b.set_hops(hops);
                b.set_end(arc_end);
            }
            self.send_to_peer(now, peer, MsgType::Control, copy);
        }
        if !deliver {
            return self.pool.free(buf);
        }
        let mut buf = buf;
        self.pool.trim_front(&mut buf, BROADCAST_HEADER_LEN);
        let Some(v) = self.vpn.as_mut() else {
            return self.pool.free(buf);
        };
        // Only group packets travel this way: a unicast one would bypass
        // the check that its sender holds its source address.
        let group = ip::destination(self.pool.data(&buf)).is_some_and(|d| is_group(&v.cfg, d));
        if !group {
            return self.drop_buf(buf, DropReason::SpoofedSource);
        }
        v.stats.broadcasts_delivered += 1;
        self.deliver_packet(buf);
    }

    // ----- DHT results and timers -----
}
