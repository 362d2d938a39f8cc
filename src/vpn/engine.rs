//! The VPN as a policy object, in the shape of `Overlay`: it owns the
//! address claim, resolution, the answers to the host's ARP/ND/DHCP and
//! the broadcast policy, and knows nothing of peers, sessions or sockets.
//!
//! Packets are the data path, so each input returns what to do with its
//! packet by value ([`Out`]: send it to a member, write it to the TAP,
//! pass a broadcast on, drop it) and never queues or allocates for it.
//! Work that is not about the packet at hand — packets a finished lookup
//! released, our address held or lost — comes back as [`Action`]s the
//! node drains after each input. The DHT is asked directly (the overlay
//! is the layer below; its messages go out with the overlay's actions),
//! and what only the node knows — which member a peer is, what its
//! certificate allows — is asked through [`Members`].
//!
//! Headers are added in place in the packet's pool buffer: the Ethernet
//! header in front of a packet for the host, the broadcast header in front
//! of a group packet for the ring.

use super::broadcast::{BroadcastState, Refusal};
use super::claim::Claim;
use super::local::{self, Local};
use super::resolve::{Answer, Dir, Resolver};
use super::{group_mac, AddressMode, VpnConfig, VIRTUAL_MAC};
use crate::buf::{PacketBuf, Pool};
use crate::crypto::{Identity, NodeKey};
use crate::firewall::{Firewall, Origin};
use crate::ids::PeerIdx;
use crate::overlay::dht::client::Event as DhtEvent;
use crate::overlay::{Addr, Overlay};
use crate::routes::Routes;
use crate::time::Instant;
use crate::wire::ethernet::{self, Frame, Mac, HEADER_LEN as ETH_LEN};
use crate::wire::ip::{self, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6};
use crate::wire::overlay::{Broadcast, BroadcastRepr, BROADCAST_HEADER_LEN};
use std::net::{IpAddr, Ipv4Addr};

/// VPN counters for status.
#[derive(Debug, Clone, Default)]
pub struct VpnStats {
    pub lookups: u64,
    pub lookups_failed: u64,
    /// Address records a lookup returned that did not check out (forged,
    /// misplaced, or not certified for the address).
    pub records_refused: u64,
    /// Packets handed on for a member, and delivered to the host.
    pub packets_out: u64,
    pub packets_in: u64,
    pub broadcasts_sent: u64,
    pub broadcasts_delivered: u64,
    pub local_answers: u64,
}

/// Why the VPN let a packet go (the node counts each by reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discard {
    BadFrame,
    /// For the virtual router itself, or a host question we do not answer.
    LocalOnly,
    /// Outside the network, and no route in use covers it.
    NotInNetwork,
    /// From an outside address, but not from the member we route it to.
    OutsideSource,
    /// A member's packet for an outside address we do not route.
    NotOurRoute,
    /// Nobody holds the destination (or it is ours).
    UnknownIp,
    ResolveQueueFull,
    /// The sender does not hold the source address.
    SpoofedSource,
    /// Member `from` sent from (or was sent to at) an address its
    /// certificate does not list.
    NotCertified(PeerIdx),
    BroadcastDuplicate,
    BroadcastRateLimited,
    BroadcastMalformed,
    PoolEmpty,
    /// No firewall rule lets it in, and it answers no flow of ours.
    FirewallDenied,
}

/// Who a packet is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dst {
    Member(Ipv4Addr),
    /// Outside the network: for a gateway or router.
    Outside(IpAddr),
}

/// What to do with a packet now.
pub enum Out {
    /// Seal it for the member with this key and send it.
    Send {
        key: NodeKey,
        buf: PacketBuf,
    },
    /// Write it to the TAP.
    Frame(PacketBuf),
    /// Pass this ring broadcast on to our links in the arc up to `end`,
    /// then (if `deliver`) give it back through [`Vpn::deliver_group`].
    Broadcast {
        buf: PacketBuf,
        end: Addr,
        deliver: bool,
    },
    /// It waits for a lookup of its address.
    Parked,
    Drop(PacketBuf, Discard),
}

/// What the VPN asks of the node besides the packet at hand.
pub enum Action {
    /// A packet a finished lookup released.
    Packet(Out),
    /// Our virtual IPv4 address is ours (for the caller).
    Held(Ipv4Addr),
    /// Another member holds our static address (for the caller).
    Conflict { ip: Ipv4Addr, holder: Addr },
}

/// What the node knows of its peers that VPN policy depends on.
pub trait Members {
    /// The member behind peer `p`.
    fn key(&self, p: PeerIdx) -> NodeKey;
    /// Whether `p` may hold `ip` (certificate mode; yes otherwise, and
    /// while its certificate is not known yet).
    fn may_hold(&self, p: PeerIdx, ip: Ipv4Addr) -> bool;
    /// Who `p` is to the firewall: its certificate's groups and name.
    fn origin(&self, p: PeerIdx) -> Origin<'_>;
}

/// Who sent a member's packet, and what it is judged by: what the node
/// knows of its peers, and the routes (an outside address is only taken
/// from the member we route it to).
pub struct Sender<'a, M> {
    pub members: &'a M,
    pub routes: Option<&'a Routes>,
    pub peer: PeerIdx,
}

/// The node's own credentials, for signing our address record.
pub struct Signer<'a> {
    pub identity: &'a Identity,
    pub cert: Option<&'a [u8]>,
}

/// What DHT results are judged and acted on with: who our peers are,
/// what records must check out against (certificate mode's trust, the
/// wall clock's origin), how to sign ours.
pub struct Judge<'a, M> {
    pub members: &'a M,
    pub trust: Option<&'a crate::crypto::cert::Trust>,
    pub wall_origin_us: u64,
    pub signer: Signer<'a>,
}

pub struct Vpn {
    pub(super) cfg: VpnConfig,
    /// Our ring address: the source of our broadcasts.
    me: Addr,
    pub(super) claim: Claim,
    pub(super) timing: super::claim::Timing,
    pub(super) resolver: Resolver,
    bcast: BroadcastState,
    host_mac: Mac,
    firewall: Firewall,
    pub(super) stats: VpnStats,
    pub(super) actions: Vec<Action>,
    /// The DNS server on the virtual router's address.
    pub(super) dns: super::dns::Dns,
}

impl Vpn {
    /// `joining`: bootstraps were configured, so the claim waits for the
    /// ring. `secret`: random per start (the firewall's flow hash).
    pub fn new(cfg: VpnConfig, key: &NodeKey, now: Instant, joining: bool, secret: u64) -> Vpn {
        Vpn {
            firewall: Firewall::new(cfg.firewall.clone(), secret),
            dns: super::dns::Dns::new(&cfg),
            cfg,
            me: Addr::of_key(key),
            claim: Claim::Waiting,
            timing: super::claim::Timing::new(now, joining),
            resolver: Resolver::default(),
            bcast: BroadcastState::default(),
            host_mac: super::host_mac(key),
            stats: VpnStats::default(),
            actions: Vec::new(),
        }
    }

    pub fn config(&self) -> &VpnConfig {
        &self.cfg
    }

    pub fn claim(&self) -> Claim {
        self.claim
    }

    pub fn resolver(&self) -> &Resolver {
        &self.resolver
    }

    pub fn stats(&self) -> &VpnStats {
        &self.stats
    }

    pub fn dns(&self) -> &super::dns::Dns {
        &self.dns
    }

    pub fn firewall(&self) -> &Firewall {
        &self.firewall
    }

    pub fn firewall_mut(&mut self) -> &mut Firewall {
        &mut self.firewall
    }

    /// Work for the node: drained after every input.
    pub fn drain_actions(&mut self) -> std::vec::Drain<'_, Action> {
        self.actions.drain(..)
    }

    /// Our IPv4 address: held, or configured while the claim runs.
    pub fn own_v4(&self) -> Option<Ipv4Addr> {
        match (self.claim.held(), self.cfg.address) {
            (Some(ip), _) => Some(ip),
            (None, AddressMode::Static(ip)) => Some(ip),
            _ => None,
        }
    }

    /// The gratuitous ARP that announces the virtual router, at start.
    pub fn announce(&self, pool: &mut Pool) -> Option<PacketBuf> {
        let mut buf = pool.alloc()?;
        let n = local::gratuitous_arp(pool.space_mut(&buf), &self.cfg);
        pool.set_len(&mut buf, n);
        Some(buf)
    }

    /// Whether `dst` is a broadcast or multicast destination.
    fn is_group(&self, dst: IpAddr) -> bool {
        match dst {
            IpAddr::V4(v4) => v4.is_multicast() || v4.is_broadcast() || v4 == self.cfg.broadcast(),
            IpAddr::V6(v6) => v6.is_multicast(),
        }
    }

    /// Whether `ip` is one of the network's own addresses (its IPv4
    /// subnet or IPv6 /96), or link-local: never routed out.
    fn in_network(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => self.cfg.contains(a) || a.is_link_local(),
            IpAddr::V6(a) => self.cfg.v4_of(a).is_some() || (a.segments()[0] & 0xffc0) == 0xfe80,
        }
    }

    /// Who an IP packet is for: a member's IPv4 address (an IPv6 one's
    /// embedded address in the network's /96), or an outside address.
    pub fn packet_dst(&self, packet: &[u8]) -> Option<Dst> {
        let dst = ip::destination(packet)?;
        Some(match dst {
            IpAddr::V4(a) if self.cfg.contains(a) => Dst::Member(a),
            IpAddr::V6(a) => match self.cfg.v4_of(a) {
                Some(v4) => Dst::Member(v4),
                None => Dst::Outside(dst),
            },
            _ => Dst::Outside(dst),
        })
    }

    // ----- from the host -----

    /// A frame the host wrote to the TAP.
    pub fn from_host(
        &mut self,
        now: Instant,
        ov: &mut Overlay,
        pool: &mut Pool,
        routes: Option<&Routes>,
        mut buf: PacketBuf,
    ) -> Out {
        let own4 = self.own_v4();
        let own6 = own4.and_then(|ip| self.cfg.v6_of(ip));
        let Ok(ethertype) = Frame::new_checked(pool.data(&buf)).map(|f| f.ethertype()) else {
            return Out::Drop(buf, Discard::BadFrame);
        };
        match ethertype {
            ETHERTYPE_ARP => {
                return match local::answer_arp(pool.data_mut(&buf), &self.cfg, own4) {
                    Local::Answered => self.answer_host(buf),
                    Local::Ignored => Out::Drop(buf, Discard::LocalOnly),
                };
            }
            ETHERTYPE_IPV6 => match local::answer_ndp(pool.data_mut(&buf), &self.cfg, own6) {
                Some(Local::Answered) => return self.answer_host(buf),
                Some(Local::Ignored) => return Out::Drop(buf, Discard::LocalOnly),
                None => {}
            },
            ETHERTYPE_IPV4 => {
                if let Some(req) = local::dhcp_request(pool.data(&buf)) {
                    return self.answer_dhcp(pool, buf, req);
                }
                if let Some(ask) = local::dns_question(pool.data(&buf), &self.cfg) {
                    return self.dns_in(now, ov, pool, buf, ask);
                }
            }
            _ => return Out::Drop(buf, Discard::BadFrame),
        }
        pool.trim_front(&mut buf, ETH_LEN);
        let Some(dst) = ip::destination(pool.data(&buf)) else {
            return Out::Drop(buf, Discard::BadFrame);
        };
        if self.is_group(dst) {
            return self.broadcast_out(now, pool, buf);
        }
        // What the host starts, its answers may come back through.
        if self.firewall.enabled() {
            if let Some(t) = ip::transport(pool.data(&buf)) {
                self.firewall.outbound(now, &t);
            }
        }
        let v4 = match dst {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(v6) => self.cfg.v4_of(v6),
        };
        match v4 {
            Some(ip) if self.cfg.assignable(ip) => self.toward_member(now, ov, ip, buf),
            Some(ip) if ip == self.cfg.gateway() => Out::Drop(buf, Discard::LocalOnly),
            _ if self.in_network(dst) => Out::Drop(buf, Discard::NotInNetwork),
            // Outside: to the gateway or router we use for it.
            _ => match routes.and_then(|r| r.next_hop(dst)) {
                Some(key) => self.send(key, buf),
                None => Out::Drop(buf, Discard::NotInNetwork),
            },
        }
    }

    /// An answer (rewritten in place) back to the host.
    pub(super) fn answer_host(&mut self, buf: PacketBuf) -> Out {
        self.stats.local_answers += 1;
        Out::Frame(buf)
    }

    fn answer_dhcp(&mut self, pool: &mut Pool, request: PacketBuf, req: local::DhcpRequest) -> Out {
        // Only once the address is ours: the client retries until then.
        let Some(ip) = self.claim.held().filter(|_| self.cfg.dhcp) else {
            return Out::Drop(request, Discard::LocalOnly);
        };
        // The reply is written over the request (what it asked is in `req`).
        let mut out = request;
        match local::dhcp_reply(pool.space_mut(&out), &self.cfg, req, ip) {
            Some(n) => {
                pool.set_len(&mut out, n);
                self.answer_host(out)
            }
            None => Out::Drop(out, Discard::LocalOnly),
        }
    }

    /// An IP packet for the holder of `ip`: to it if known, parked while
    /// the DHT is asked, dropped if nobody holds it.
    fn toward_member(
        &mut self,
        now: Instant,
        ov: &mut Overlay,
        ip: Ipv4Addr,
        buf: PacketBuf,
    ) -> Out {
        match self.resolver.answer(now, ip) {
            Answer::Known(key) => self.send(key, buf),
            Answer::Absent => Out::Drop(buf, Discard::UnknownIp),
            Answer::Unknown => self.resolve_then(now, ov, ip, buf, Dir::Out),
        }
    }

    fn send(&mut self, key: NodeKey, buf: PacketBuf) -> Out {
        self.stats.packets_out += 1;
        Out::Send { key, buf }
    }

    /// Parks `buf` until `ip` is resolved, starting the lookup if needed
    /// (its requests go out with the overlay's actions).
    fn resolve_then(
        &mut self,
        now: Instant,
        ov: &mut Overlay,
        ip: Ipv4Addr,
        buf: PacketBuf,
        dir: Dir,
    ) -> Out {
        if !self.resolver.is_resolving(ip) {
            if !self.resolver.can_start(dir) {
                return Out::Drop(buf, Discard::ResolveQueueFull);
            }
            self.stats.lookups += 1;
            let op = ov.dht_get(now, self.cfg.ip_key(ip), true);
            self.resolver.start(ip, op, dir);
        }
        match self.resolver.park(ip, buf, dir) {
            Ok(()) => Out::Parked,
            Err(buf) => Out::Drop(buf, Discard::ResolveQueueFull),
        }
    }

    // ----- from members -----

    /// An IP packet from peer `p`: for the host only if `p` holds the
    /// packet's source address — or, from an outside address, if `p` is
    /// the gateway or router we use for it. A packet for an outside
    /// address is taken only if we route it (the host forwards it).
    pub fn from_member(
        &mut self,
        now: Instant,
        ov: &mut Overlay,
        pool: &mut Pool,
        from: Sender<'_, impl Members>,
        buf: PacketBuf,
    ) -> Out {
        let (members, routes, p) = (from.members, from.routes, from.peer);
        let Some((src, dst)) = ip::addresses(pool.data(&buf)) else {
            return Out::Drop(buf, Discard::BadFrame);
        };
        let ours = self.in_network(dst) || self.is_group(dst);
        if !self.in_network(src) {
            return if ours && routes.is_some_and(|r| r.accepts(src, &members.key(p))) {
                // From an outside host: only its address says who it is.
                self.admit(now, pool, buf, dst, &Origin::default())
            } else {
                Out::Drop(buf, Discard::OutsideSource)
            };
        }
        if !ours && !routes.is_some_and(|r| r.carries(dst)) {
            return Out::Drop(buf, Discard::NotOurRoute);
        }
        let src = match src {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(v6) => self.cfg.v4_of(v6),
        };
        let Some(src) = src.filter(|ip| self.cfg.assignable(*ip)) else {
            return Out::Drop(buf, Discard::SpoofedSource);
        };
        // A source the sender's certificate does not list is refused
        // before any lookup: a member sending from many addresses costs
        // nothing but its own packets.
        if !members.may_hold(p, src) {
            return Out::Drop(buf, Discard::NotCertified(p));
        }
        match self.resolver.answer(now, src) {
            Answer::Known(key) if key == members.key(p) => {
                self.admit(now, pool, buf, dst, &members.origin(p))
            }
            Answer::Known(_) | Answer::Absent => Out::Drop(buf, Discard::SpoofedSource),
            Answer::Unknown => self.resolve_then(now, ov, src, buf, Dir::In(p)),
        }
    }

    /// A member's packet whose sender checked out: to the host if the
    /// firewall lets it in.
    fn admit(
        &mut self,
        now: Instant,
        pool: &mut Pool,
        buf: PacketBuf,
        dst: IpAddr,
        from: &Origin,
    ) -> Out {
        if self.firewall.enabled() {
            let pass = match ip::transport(pool.data(&buf)) {
                Some(t) => self.firewall.inbound(now, &t, from),
                None => false,
            };
            if !pass {
                return Out::Drop(buf, Discard::FirewallDenied);
            }
        }
        self.host_frame(pool, buf, dst)
    }

    /// An IP packet for the host: an Ethernet header goes in front in
    /// place, from the virtual MAC to the host (or to the group's MAC).
    pub fn to_host(&mut self, pool: &mut Pool, buf: PacketBuf) -> Out {
        match ip::destination(pool.data(&buf)) {
            Some(dst) => self.host_frame(pool, buf, dst),
            None => Out::Drop(buf, Discard::BadFrame),
        }
    }

    /// [`Vpn::to_host`] for a packet whose destination is read already.
    fn host_frame(&mut self, pool: &mut Pool, mut buf: PacketBuf, dst: IpAddr) -> Out {
        let (to, ethertype) = match dst {
            IpAddr::V4(_) if self.is_group(dst) => (group_mac(dst), ETHERTYPE_IPV4),
            IpAddr::V4(_) => (self.host_mac, ETHERTYPE_IPV4),
            IpAddr::V6(_) if self.is_group(dst) => (group_mac(dst), ETHERTYPE_IPV6),
            IpAddr::V6(_) => (self.host_mac, ETHERTYPE_IPV6),
        };
        self.stats.packets_in += 1;
        let Some(hdr) = pool.prepend(&mut buf, ETH_LEN) else {
            return Out::Drop(buf, Discard::BadFrame);
        };
        ethernet::Repr {
            dst: to,
            src: VIRTUAL_MAC,
            ethertype,
        }
        .emit(hdr);
        Out::Frame(buf)
    }

    // ----- broadcast -----

    /// A group packet from the host: to every member, from us.
    fn broadcast_out(&mut self, now: Instant, pool: &mut Pool, mut buf: PacketBuf) -> Out {
        let seq = self.bcast.next_seq();
        if self.bcast.accept(now, self.me, seq).is_err() {
            return Out::Drop(buf, Discard::BroadcastRateLimited);
        }
        self.stats.broadcasts_sent += 1;
        let Some(hdr) = pool.prepend(&mut buf, BROADCAST_HEADER_LEN) else {
            return Out::Drop(buf, Discard::BadFrame);
        };
        BroadcastRepr {
            src: self.me,
            seq,
            end: self.me,
        }
        .emit(hdr);
        Out::Broadcast {
            buf,
            end: self.me,
            deliver: false,
        }
    }

    /// A ring broadcast from a link: passed on within its arc, and
    /// delivered if it is new.
    pub fn broadcast_in(&mut self, now: Instant, pool: &Pool, buf: PacketBuf) -> Out {
        let Ok(b) = Broadcast::new_checked(pool.data(&buf)) else {
            return Out::Drop(buf, Discard::BroadcastMalformed);
        };
        let (src, seq, end) = (b.src(), b.seq(), b.end());
        if src == self.me {
            return Out::Drop(buf, Discard::BroadcastDuplicate);
        }
        match self.bcast.accept(now, src, seq) {
            Ok(()) => Out::Broadcast {
                buf,
                end,
                deliver: true,
            },
            Err(Refusal::Duplicate) => Out::Drop(buf, Discard::BroadcastDuplicate),
            Err(Refusal::RateLimited) => Out::Drop(buf, Discard::BroadcastRateLimited),
        }
    }

    /// A broadcast passed on, header stripped, for the host: only group
    /// packets travel this way (a unicast one would bypass the check that
    /// its sender holds its source address).
    pub fn deliver_group(&mut self, pool: &mut Pool, buf: PacketBuf) -> Out {
        let group = ip::destination(pool.data(&buf)).is_some_and(|d| self.is_group(d));
        if !group {
            return Out::Drop(buf, Discard::SpoofedSource);
        }
        self.stats.broadcasts_delivered += 1;
        self.to_host(pool, buf)
    }

    // ----- DHT results -----

    /// A finished DHT operation: a lookup or our address claim (the
    /// packets it releases and what it changes become actions). Gives
    /// the event back if it was neither.
    pub fn dht_event(
        &mut self,
        now: Instant,
        ov: &mut Overlay,
        pool: &mut Pool,
        ctx: &Judge<impl Members>,
        e: DhtEvent,
    ) -> Option<DhtEvent> {
        if let Some(ip) = self.resolver.ip_of_op(e.id) {
            self.lookup_done(now, pool, ctx, ip, &e);
            return None;
        }
        let e = self.dns_event(now, ov, pool, ctx, e)?;
        self.claim_event(now, ov, &ctx.signer, e)
    }

    fn lookup_done(
        &mut self,
        now: Instant,
        pool: &mut Pool,
        ctx: &Judge<impl Members>,
        ip: Ipv4Addr,
        e: &DhtEvent,
    ) {
        use crate::overlay::dht::client::Outcome;
        let members = ctx.members;
        // Every record is checked again here: a storing node may lie.
        let checker = super::record::Checker {
            network: &self.cfg.network,
            trust: ctx.trust,
            wall_origin_us: ctx.wall_origin_us,
        };
        let mut forged = 0;
        let holder = match &e.outcome {
            Outcome::Found(records) => records
                .iter()
                .filter_map(|r| match checker.check(e.key, r.owner, &r.value, now) {
                    Ok(rec) => Some((r.ttl_secs, rec.holder)),
                    Err(_) => {
                        forged += 1;
                        None
                    }
                })
                .max_by_key(|(ttl, _)| *ttl)
                .map(|(_, key)| key),
            _ => None,
        };
        self.stats.records_refused += forged;
        if holder.is_none() {
            self.stats.lookups_failed += 1;
        }
        for (buf, dir) in self.resolver.complete(now, ip, holder) {
            let out = match (dir, holder) {
                (Dir::Out, Some(key)) => self.send(key, buf),
                (Dir::Out, None) => Out::Drop(buf, Discard::UnknownIp),
                (Dir::In(p), Some(key)) if members.key(p) == key => {
                    match ip::destination(pool.data(&buf)) {
                        Some(dst) if members.may_hold(p, ip) => {
                            self.admit(now, pool, buf, dst, &members.origin(p))
                        }
                        Some(_) => Out::Drop(buf, Discard::NotCertified(p)),
                        None => Out::Drop(buf, Discard::BadFrame),
                    }
                }
                (Dir::In(_), _) => Out::Drop(buf, Discard::SpoofedSource),
            };
            self.actions.push(Action::Packet(out));
        }
    }
}

mod names;
#[cfg(test)]
mod tests;
