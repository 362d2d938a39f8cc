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

/// Two peers that changed what they see within this are a rebinding.
const REBIND_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

/// One vote per peer: a member can report anything about where it sees
/// us, so what we advertise, the mapping we conclude and a rebinding all
/// need two peers to agree (or no other peer to ask).
#[derive(Default)]
pub struct NatObserver {
    /// (peer endpoint, our endpoint as it saw it, when), oldest first.
    seen: SmallVec<[(SocketAddr, SocketAddr, Instant); KEPT]>,
    /// Peers whose view of us changed lately (not yet a rebinding).
    changed: SmallVec<[(SocketAddr, Instant); 2]>,
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
        // reboot, a flush), and every older observation is stale — once a
        // second peer says so too (one peer's word could be a lie meant
        // to move us), or if it is the only peer we have.
        let moved = self
            .seen
            .iter()
            .any(|(p, o, _)| *p == peer && *o != observed);
        if moved {
            self.changed
                .retain(|(p, t)| *p != peer && now.saturating_since(*t) < REBIND_WINDOW);
            let others = self.seen.iter().any(|(p, _, _)| *p != peer);
            if !self.changed.is_empty() || !others {
                log::info!("our NAT mapping changed: {peer} now sees us at {observed}");
                let agreeing: SmallVec<[SocketAddr; 2]> =
                    self.changed.drain(..).map(|(p, _)| p).collect();
                // The peers that saw the move keep their new views.
                self.seen.retain(|(p, _, _)| agreeing.contains(p));
                self.rebound = true;
            } else {
                if self.changed.len() >= 2 {
                    self.changed.remove(0);
                }
                self.changed.push((peer, now));
            }
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
        self.changed.clear();
    }

    /// Whether our NAT rebound since the last call.
    pub fn take_rebound(&mut self) -> bool {
        std::mem::take(&mut self.rebound)
    }

    /// The endpoint a majority of peers (at least two) see us at.
    fn agreed(&self) -> Option<SocketAddr> {
        let n = self.seen.len();
        self.seen
            .iter()
            .map(|&(_, o, _)| (o, self.seen.iter().filter(|(_, x, _)| *x == o).count()))
            .find(|&(_, c)| c >= 2 && c * 2 > n)
            .map(|(o, _)| o)
    }

    /// The newest observation whose address at least two peers (or the
    /// only one) report: the address of a symmetric NAT, whose ports
    /// differ per peer.
    fn agreed_ip(&self) -> Option<SocketAddr> {
        let votes = |ip| self.seen.iter().filter(|(_, o, _)| o.ip() == ip).count();
        let need = self.seen.len().min(2);
        self.seen
            .iter()
            .rev()
            .map(|&(_, o, _)| o)
            .find(|o| votes(o.ip()) >= need)
    }

    /// The mapping, given the addresses we bound (`local`).
    pub fn mapping(&self, local: &[SocketAddr]) -> NatMapping {
        match (self.seen.len(), self.agreed()) {
            (0, _) => NatMapping::Unknown,
            (1, _) if local.contains(&self.seen[0].1) => NatMapping::None,
            (1, _) => NatMapping::Unknown,
            (_, Some(o)) if local.contains(&o) => NatMapping::None,
            (_, Some(_)) => NatMapping::EndpointIndependent,
            (_, None) => NatMapping::EndpointDependent,
        }
    }

    /// The reflexive endpoints worth advertising (not among `local`): the
    /// one peers agree on, or (a symmetric NAT) the newest at the agreed
    /// address, with up to two predicted ports.
    pub fn reflexive(&self, local: &[SocketAddr]) -> SmallVec<[SocketAddr; 3]> {
        let mut out = SmallVec::new();
        let Some(last) = self.agreed().or_else(|| self.agreed_ip()) else {
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
    fn a_peer_seeing_us_move_means_our_nat_rebound_once_another_agrees() {
        let t = Instant::ZERO;
        let local: SocketAddr = "198.19.1.2:5140".parse().unwrap();
        let mut n = NatObserver::default();
        n.observe(ip(1), ep(40000), t);
        n.observe(ip(2), ep(40000), t);
        assert_eq!(n.mapping(&[local]), NatMapping::EndpointIndependent);
        // The NAT rebooted: peer 1 sees a new port. One peer's word is not
        // enough; a second one's is: that is not a symmetric NAT, and the
        // old observations are dropped.
        n.observe(ip(1), ep(41234), t);
        assert!(!n.take_rebound());
        n.observe(ip(2), ep(41234), t);
        assert!(n.take_rebound());
        assert_eq!(n.reflexive(&[local]).as_slice(), &[ep(41234)]);
        assert_eq!(n.mapping(&[local]), NatMapping::EndpointIndependent);
        // With a single peer, its word is all there is.
        let mut n = NatObserver::default();
        n.observe(ip(1), ep(40000), t);
        n.observe(ip(1), ep(41234), t);
        assert!(n.take_rebound());
        assert_eq!(n.reflexive(&[local]).as_slice(), &[ep(41234)]);
    }

    /// One member reporting whatever it likes about where it sees us
    /// (issue 13): what we advertise, the mapping and our punches do not
    /// move while the others agree.
    #[test]
    fn one_lying_peer_does_not_steer_our_nat_view() {
        let t = Instant::ZERO;
        let local: SocketAddr = "198.19.1.2:5140".parse().unwrap();
        let mut n = NatObserver::default();
        for i in 1..=3 {
            n.observe(ip(i), ep(40000), t);
        }
        for (k, lie) in [
            ep(1111),
            ep(2222),
            "198.18.9.9:3333".parse().unwrap(),
            ep(4444),
        ]
        .into_iter()
        .enumerate()
        {
            let later = t + std::time::Duration::from_secs(20 * k as u64);
            n.observe(ip(9), lie, later);
            assert_eq!(n.reflexive(&[local]).as_slice(), &[ep(40000)], "{lie}");
            assert_eq!(n.mapping(&[local]), NatMapping::EndpointIndependent);
            assert!(!n.take_rebound(), "{lie}");
        }
    }
}
