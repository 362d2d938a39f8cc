//! Where this node is, as its peers see it: the reflexive endpoints that
//! handshake answers report, and what they say about our NAT.
//!
//! Every handshake response carries the source address the responder saw
//! our init come from. With no STUN server, answers from peers at
//! different addresses tell the mapping apart:
//! - the address we bound: no NAT;
//! - one public ip:port for every peer: endpoint-independent mapping (a
//!   "cone"; the reflexive endpoint is worth advertising);
//! - a different port per peer: endpoint-dependent mapping ("symmetric"):
//!   the last one is advertised, plus a best-effort prediction of the next
//!   port when successive ports move by a steady step (Brunet's heuristic).

use crate::time::Instant;
use smallvec::SmallVec;
use std::net::SocketAddr;

/// Observations kept (the newest replace the oldest).
const KEPT: usize = 8;

/// What the observations say about the NAT in front of us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatMapping {
    /// Not enough answers yet (we need two peers at different addresses).
    Unknown,
    /// Peers see the address we bound.
    None,
    /// One public endpoint for every peer.
    EndpointIndependent,
    /// A different public port for each peer.
    EndpointDependent,
}

impl NatMapping {
    pub fn name(self) -> &'static str {
        match self {
            NatMapping::Unknown => "unknown",
            NatMapping::None => "none (public)",
            NatMapping::EndpointIndependent => "endpoint-independent (cone)",
            NatMapping::EndpointDependent => "endpoint-dependent (symmetric)",
        }
    }
}

#[derive(Default)]
pub struct NatObserver {
    /// (peer endpoint, our endpoint as it saw it, when), oldest first.
    seen: SmallVec<[(SocketAddr, SocketAddr, Instant); KEPT]>,
    /// A rebinding was seen and not yet acted upon.
    rebound: bool,
}

impl NatObserver {
    /// A peer at `peer` saw us as `observed`. Returns whether what we
    /// advertise may have changed.
    pub fn observe(&mut self, peer: SocketAddr, observed: SocketAddr, now: Instant) -> bool {
        if observed.ip().is_unspecified() || observed.port() == 0 {
            return false;
        }
        let before = (self.reflexive(&[]), self.mapping(&[]));
        // Even a symmetric NAT keeps one mapping per destination: the same
        // peer seeing us somewhere new means our NAT lost its mappings (a
        // reboot, a flush), and every older observation is stale.
        let rebound = self
            .seen
            .iter()
            .any(|(p, o, _)| *p == peer && *o != observed);
        if rebound {
            log::info!("our NAT mapping changed: {peer} now sees us at {observed}");
            self.seen.clear();
            self.rebound = true;
        }
        self.seen.retain(|(p, _, _)| *p != peer);
        if self.seen.len() >= KEPT {
            self.seen.remove(0);
        }
        self.seen.push((peer, observed, now));
        before != (self.reflexive(&[]), self.mapping(&[]))
    }

    /// Forgets every observation: they were made of an address we no
    /// longer have (new ones come with the next answers and pongs).
    pub fn forget(&mut self) {
        self.seen.clear();
    }

    /// Whether our NAT rebound since the last call.
    pub fn take_rebound(&mut self) -> bool {
        std::mem::take(&mut self.rebound)
    }

    /// The mapping, given the addresses we bound (`local`).
    pub fn mapping(&self, local: &[SocketAddr]) -> NatMapping {
        let Some(&(_, last, _)) = self.seen.last() else {
            return NatMapping::Unknown;
        };
        if self.seen.iter().all(|(_, o, _)| local.contains(o)) {
            return NatMapping::None;
        }
        if self.seen.len() < 2 {
            return NatMapping::Unknown;
        }
        if self.seen.iter().all(|(_, o, _)| *o == last) {
            NatMapping::EndpointIndependent
        } else {
            NatMapping::EndpointDependent
        }
    }

    /// The reflexive endpoints worth advertising (not among `local`): the
    /// newest mapping, and for a symmetric NAT up to two predicted ports.
    pub fn reflexive(&self, local: &[SocketAddr]) -> SmallVec<[SocketAddr; 3]> {
        let mut out = SmallVec::new();
        let Some(&(_, last, _)) = self.seen.last() else {
            return out;
        };
        if !local.contains(&last) {
            out.push(last);
        }
        // Ports of the same public address, in the order they were seen.
        let ports: SmallVec<[i32; KEPT]> = self
            .seen
            .iter()
            .filter(|(_, o, _)| o.ip() == last.ip())
            .map(|(_, o, _)| i32::from(o.port()))
            .collect();
        if ports.len() >= 3 {
            let deltas: SmallVec<[i32; KEPT]> = ports.windows(2).map(|w| w[1] - w[0]).collect();
            let mean = deltas.iter().sum::<i32>() / deltas.len() as i32;
            let steady = mean != 0 && deltas.iter().all(|d| (d - mean).abs() <= 2);
            if steady {
                for k in 1..=2 {
                    let p = i32::from(last.port()) + k * mean;
                    if (1024..=65535).contains(&p) {
                        out.push(SocketAddr::new(last.ip(), p as u16));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer's endpoint.
    fn ip(n: u8) -> SocketAddr {
        SocketAddr::new(std::net::IpAddr::from([198, 18, 0, n]), 5140)
    }

    /// Our endpoint as a peer sees it.
    fn ep(port: u16) -> SocketAddr {
        SocketAddr::new(std::net::IpAddr::from([198, 19, 0, 99]), port)
    }

    #[test]
    fn classifies_the_mapping() {
        let t = Instant::ZERO;
        let local: SocketAddr = "198.19.1.2:5140".parse().unwrap();
        let mut n = NatObserver::default();
        assert_eq!(n.mapping(&[local]), NatMapping::Unknown);
        // Public: peers see what we bound.
        n.observe(ip(1), local, t);
        n.observe(ip(2), local, t);
        assert_eq!(n.mapping(&[local]), NatMapping::None);
        assert!(n.reflexive(&[local]).is_empty());
        // A cone: one public endpoint for all.
        let mut n = NatObserver::default();
        assert!(n.observe(ip(1), ep(40000), t));
        assert_eq!(
            n.mapping(&[local]),
            NatMapping::Unknown,
            "one peer is not enough"
        );
        n.observe(ip(2), ep(40000), t);
        assert_eq!(n.mapping(&[local]), NatMapping::EndpointIndependent);
        assert_eq!(n.reflexive(&[local]).as_slice(), &[ep(40000)]);
        // Symmetric with a steady step: the next ports are predicted.
        let mut n = NatObserver::default();
        for (i, p) in [40000, 40002, 40004].into_iter().enumerate() {
            n.observe(ip(i as u8 + 1), ep(p), t);
        }
        assert_eq!(n.mapping(&[local]), NatMapping::EndpointDependent);
        assert_eq!(
            n.reflexive(&[local]).as_slice(),
            &[ep(40004), ep(40006), ep(40008)]
        );
        // Random ports: no prediction.
        let mut n = NatObserver::default();
        for (i, p) in [51234, 40321, 60555].into_iter().enumerate() {
            n.observe(ip(i as u8 + 1), ep(p), t);
        }
        assert_eq!(n.reflexive(&[local]).as_slice(), &[ep(60555)]);
        // The same peer seen again replaces its old observation.
        assert!(!n.observe(ip(3), ep(60555), t));
        assert!(!n.observe(ip(3), "0.0.0.0:0".parse().unwrap(), t));
    }

    #[test]
    fn a_peer_seeing_us_move_means_our_nat_rebound() {
        let t = Instant::ZERO;
        let local: SocketAddr = "198.19.1.2:5140".parse().unwrap();
        let mut n = NatObserver::default();
        n.observe(ip(1), ep(40000), t);
        n.observe(ip(2), ep(40000), t);
        assert_eq!(n.mapping(&[local]), NatMapping::EndpointIndependent);
        // The NAT rebooted: peer 1 sees a new port. That is not a
        // symmetric NAT; the old observations are dropped.
        assert!(n.observe(ip(1), ep(41234), t));
        assert_eq!(n.reflexive(&[local]).as_slice(), &[ep(41234)]);
        assert_eq!(n.mapping(&[local]), NatMapping::Unknown);
        n.observe(ip(2), ep(41234), t);
        assert_eq!(n.mapping(&[local]), NatMapping::EndpointIndependent);
    }
}
