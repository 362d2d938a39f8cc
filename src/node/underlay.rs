//! The underlay never runs through the VPN it carries.
//!
//! A node listening on `0.0.0.0` advertises its interface addresses, and
//! one of them is the TAP's own virtual address. A peer that punched
//! towards it found a "direct path" that its kernel routed into its own
//! TAP, over the overlay, to us — and both sides then moved their traffic
//! onto a path that ran through the path it replaced, and lost it all
//! (issue 21). The same holds for any address inside the VPN's subnets
//! (IPv4 and the IPv6 /96) and anything else ringvpn routes into the TAP.
//!
//! So those prefixes (the *guard*) are never an underlay address, in
//! four places:
//! - what we advertise: our own endpoints and reflexive ones are filtered
//!   before the overlay sees them;
//! - what peers advertise: candidates in connect-to-me messages, gossip
//!   and endpoint lists are refused (`candidate_in_vpn`);
//! - what we send: a datagram to such an address is dropped
//!   (`underlay_in_vpn`) — the last line, whatever path produced it;
//! - what we receive: a datagram from such a source is dropped too, so a
//!   tunnel through itself can never become a proven path, whatever a
//!   peer advertises.
//!
//! The checks are a few prefix comparisons on values already at hand: no
//! allocation, nothing per packet beyond them.
//!
//! Our endpoints change while we run (the shell reads the interfaces again
//! when the kernel says an address came or went). A change is advertised
//! as reflexive changes are — the overlay's next connect-to-me and gossip
//! carry it, and punches under way start again from it — and every peer we
//! have a session with gets the whole new set in an *endpoints* message, so
//! a withdrawn address disappears from its candidates.
//!
//! Nor is the underlay aimed by others: an address that only gossip or a
//! passing request named, and that no authenticated packet has come from,
//! gets one handshake per `limiter::PROBE_SPACING` (`aim_unproven`), so no
//! member can turn our handshakes on a host (issue 13, reflection).

use super::limiter::{OVERLAY_BURST, OVERLAY_RATE_PER_S};
use super::nat::NatObserver;
use super::peer::Peer;
use super::{DropReason, Endpoint, MsgType, Node, NodeConfig, Path, PeerIdx};
use crate::buf::PacketBuf;
use crate::net::{Prefix, PrefixSet};
use crate::time::Instant;
use crate::wire::overlay::{EndpointList, Endpoints};

/// Our side of the underlay.
pub(super) struct Underlay {
    /// Our endpoints as configured (bound addresses, TCP listener) …
    pub(super) local: Vec<Endpoint>,
    /// … and as peers see them.
    pub(super) nat: NatObserver,
    /// Prefixes the underlay never uses: the VPN's own.
    pub(super) guard: PrefixSet,
}

/// The prefixes the underlay must never use, from the configuration.
pub(super) fn guard(cfg: &NodeConfig) -> PrefixSet {
    let mut g = PrefixSet::default();
    if let Some(v) = cfg.vpn.as_ref().filter(|_| cfg.overlay.is_some()) {
        g.insert(Prefix::new(v.subnet.0.into(), v.subnet.1));
        if let Some(v6) = v.ipv6 {
            g.insert(Prefix::new(v6.into(), 96));
        }
    }
    for p in &cfg.tap_prefixes {
        g.insert(*p);
    }
    g
}

impl Node {
    /// Whether underlay traffic may go to (or come from) `ep`.
    #[inline]
    pub(super) fn underlay_ok(&self, ep: &Endpoint) -> bool {
        if ep.is_carried() {
            // Not an underlay address at all: only a network's node, whose
            // host carries it over the public ring, may use one.
            return matches!(self.settings.carriage, super::config::Carriage::Network(_));
        }
        !self.underlay.guard.contains(ep.addr.ip())
    }

    /// The prefixes the underlay never uses (shown by `status`).
    /// Whether an authenticated link runs over endpoint `e` (a peer's
    /// traffic has come from it): the shell never closes such a TCP
    /// connection to make room for a new one.
    pub fn carries_link(&self, e: Endpoint) -> bool {
        self.peers.iter().any(|p| {
            p.reach.proven == Some(e)
                || (p.reach.endpoint == Some(e) && p.sessions.current.is_some())
        })
    }

    pub fn underlay_guard(&self) -> &PrefixSet {
        &self.underlay.guard
    }

    /// `eps` without the ones inside the guard.
    pub(super) fn outside_guard(&self, eps: &[Endpoint]) -> Vec<Endpoint> {
        eps.iter()
            .filter(|e| self.underlay_ok(e))
            .copied()
            .collect()
    }

    /// The shell read our interface addresses again. If our endpoints
    /// changed, they are advertised (and announced to every peer we have
    /// a session with) at once.
    pub fn set_local_endpoints(&mut self, now: Instant, eps: &[Endpoint]) {
        let eps = self.outside_guard(eps);
        if eps == self.underlay.local {
            return;
        }
        log::info!(
            "our endpoints changed: {}",
            eps.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        );
        if self.underlay.local.iter().any(|e| !eps.contains(e)) {
            // An address went: what peers saw of us may have been its
            // mapping, which nobody can reach now.
            self.underlay.nat.forget();
        }
        self.underlay.local = eps;
        self.update_advertised();
        self.moved(now);
        self.settle(now);
    }

    /// We can be reached somewhere else now (our addresses changed, or our
    /// NAT rebound): punches under way start again from the new
    /// endpoints, and every peer with a session learns the new set.
    pub(super) fn moved(&mut self, now: Instant) {
        if let Some(ov) = self.overlay.as_mut() {
            for peer in &self.peers {
                if peer.reach.punching && peer.role.dynamic {
                    log::info!(
                        "punch to {} starts again from our new endpoints",
                        peer.name()
                    );
                    ov.relink(now, peer.addr, crate::overlay::table::reason::ONDEMAND);
                }
            }
        }
        for i in 0..self.peers.len() {
            if self.peers[i].sessions.current.is_some() {
                self.send_endpoints(now, PeerIdx(i as u16));
            }
        }
    }

    /// Tells peer `p` every endpoint we advertise.
    pub(super) fn send_endpoints(&mut self, now: Instant, p: PeerIdx) {
        let mut msg = Vec::new();
        EndpointList {
            endpoints: self.advertised().into_iter().collect(),
        }
        .emit(&mut msg);
        match self.pool.alloc_with(&msg) {
            Some(buf) => self.send_to_peer(now, p, MsgType::Control, buf),
            None => self.stats.count(DropReason::PoolEmpty),
        }
    }

    /// Peer `p` told us every endpoint it has now: they replace what we
    /// knew (a withdrawn one is no longer tried). Charged to the peer's
    /// overlay budget, like gossip.
    pub(super) fn endpoints_from(&mut self, now: Instant, p: PeerIdx, buf: PacketBuf) {
        let budget = &mut self.peers[usize::from(p.0)].budget.overlay;
        if !budget.take(now, OVERLAY_RATE_PER_S, OVERLAY_BURST) {
            return self.drop_buf(buf, DropReason::OverlayRateLimited);
        }
        let Ok(list) = EndpointList::parse(self.pool.data(&buf)) else {
            return self.drop_buf(buf, DropReason::BadLength);
        };
        self.pool.free(buf);
        self.strangers.boots_dirty = true;
        let mut kept = smallvec::SmallVec::<[Endpoint; 8]>::new();
        for e in list.endpoints {
            if self.underlay_ok(&e) {
                kept.push(e);
            } else {
                self.stats.count(DropReason::CandidateInVpn);
            }
        }
        self.index.wakeups.touch(p);
        let peer = &mut *self.peers[usize::from(p.0)];
        log::debug!("{} can be reached at {:?}", peer.name(), kept);
        // Where we send now stays until traffic shows otherwise (roaming);
        // an endpoint nothing has come from yet gives way to the new set.
        if peer
            .reach
            .endpoint
            .is_some_and(|e| peer.reach.proven != Some(e) && !kept.contains(&e))
        {
            peer.reach.endpoint = kept.iter().find(|c| !c.is_tcp()).copied();
        }
        // An address we knew nothing at (not just another port of one we
        // tried: a NAT's other mappings are no better).
        let fresh = kept.iter().any(|e| !peer.knows_address(e.addr.ip()));
        peer.reach.candidates = kept.into_iter().collect();
        // Through a tunnel, a new address gets a punch now (the tunnel
        // stays until it works): two members behind one NAT, each known to
        // the other only by gossip, reach each other at home this way.
        if fresh && peer.relay().is_some() && !peer.reach.punching && peer.hs.pending.is_none() {
            peer.reach.punching = true;
            self.start_handshake(now, super::Target::Peer(p));
        }
    }

    /// A first link to `peer` that gossip or a request passing through
    /// asked for: its candidates are what a message said, no more.
    pub(super) fn on_hearsay(peer: &Peer) -> bool {
        peer.reach.heard
            && peer.role.dynamic
            && !peer.reach.punching
            && !peer.is_routed()
            && !peer.tunnel.wanted
            && peer.relay().is_none()
            && !peer.is_linked()
    }

    /// An attempt's destinations less the unproven addresses whose turn
    /// has not come (`limiter::Probes`), one endpoint per address and
    /// transport; `None` if none is left (the attempt still counts, so a
    /// link to a made-up node fails in its usual time). One turn covers a
    /// UDP init and a TCP connection to the same address: where UDP is
    /// blocked, the TCP candidate is the only one that can work (and a
    /// connection sends nothing but a SYN until the address answers).
    pub(super) fn aim_unproven(
        &mut self,
        now: Instant,
        dst: Path,
        also: &[Endpoint],
    ) -> Option<(Path, Endpoints)> {
        let Path::Direct(first) = dst else {
            return Some((dst, also.iter().copied().collect()));
        };
        let mut kept = Endpoints::new();
        for &e in core::iter::once(&first).chain(also) {
            let ip = e.ip();
            if kept
                .iter()
                .any(|k| k.ip() == ip && k.transport == e.transport)
            {
                continue;
            }
            let turn_taken = kept.iter().any(|k| k.ip() == ip);
            if turn_taken || self.address_proven(ip) || self.guards.probes.allow(ip, now) {
                kept.push(e);
            } else {
                self.stats.count(DropReason::ProbeLimited);
            }
        }
        let first = *kept.first()?;
        Some((Path::Direct(first), kept.into_iter().skip(1).collect()))
    }

    /// An authenticated packet has come from `ip` (some peer's proven path).
    fn address_proven(&self, ip: std::net::IpAddr) -> bool {
        self.peers
            .iter()
            .any(|p| p.reach.proven.is_some_and(|e| e.ip() == ip))
    }

    /// What we advertise: our bound endpoints, the reflexive ones peers
    /// report, then TCP; none inside the underlay guard.
    pub(super) fn advertised(&self) -> Vec<Endpoint> {
        let local = self.local_udp();
        let mut eps: Vec<Endpoint> = self
            .underlay
            .local
            .iter()
            .filter(|e| !e.is_tcp())
            .copied()
            .collect();
        for r in self.underlay.nat.reflexive(&local) {
            eps.push(Endpoint::udp(r));
        }
        eps.extend(self.underlay.local.iter().filter(|e| e.is_tcp()).copied());
        eps.retain(|e| self.underlay_ok(e));
        eps
    }

    /// Tells the overlay what to advertise (and whether we look NATed).
    pub(super) fn update_advertised(&mut self) {
        let eps = self.advertised();
        let mapping = self.underlay.nat.mapping(&self.local_udp());
        if let Some(ov) = self.overlay.as_mut() {
            ov.set_endpoints(&eps);
            ov.set_behind_nat(mapping != super::nat::NatMapping::None);
            // Behind a symmetric NAT a stranger cannot link to us to use
            // us as a relay: we do not offer.
            ov.set_relay_offered(mapping != super::nat::NatMapping::EndpointDependent);
        }
    }

    /// Our reflexive endpoints changed: advertise the new ones. If our NAT
    /// rebound, we moved (see `underlay::moved`).
    pub(super) fn endpoints_changed(&mut self, now: Instant) {
        self.update_advertised();
        if self.underlay.nat.take_rebound() {
            self.moved(now);
        }
    }

    /// A direct link went silent while we sent on it: our own NAT may have
    /// lost its mappings. Pings to every other direct link bring pongs
    /// that say where they see us now.
    pub(super) fn ping_direct_links(&mut self, now: Instant, except: PeerIdx) {
        for i in 0..self.peers.len() {
            let p = &*self.peers[i];
            let direct = p.is_linked()
                && !p.is_routed()
                && p.relay().is_none()
                && p.sessions.current.is_some();
            if direct && i != usize::from(except.0) {
                self.send_ping(now, PeerIdx(i as u16));
                self.index.wakeups.touch(PeerIdx(i as u16));
            }
        }
    }

    /// The UDP addresses we bound (what "no NAT" looks like to peers).
    pub(super) fn local_udp(&self) -> Vec<std::net::SocketAddr> {
        self.underlay
            .local
            .iter()
            .filter(|e| e.is_udp())
            .map(|e| e.addr)
            .collect()
    }
}
