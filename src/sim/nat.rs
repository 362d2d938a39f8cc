//! NATs and geography for the simulator.
//!
//! A NATed node binds a private endpoint that nobody can reach; its
//! datagrams leave from an external endpoint its NAT picks, and come back
//! only through a mapping, filtered as the NAT type says (the same types
//! as the namespace lab's, without TCP):
//! - full cone: one external port; anyone may send to it once it exists;
//! - port-restricted cone: one external port; only endpoints the node has
//!   sent to may answer (Linux masquerade);
//! - symmetric: a new random external port per destination, answered only
//!   by that destination.
//!
//! Geography: nodes sit in a few regions on a plane; one-way latency is
//! each end's access delay plus distance, so a relay's detour costs what
//! it would on the Internet (a relay next door is nearly free, one across
//! the ocean is not).

use crate::rand::{Rng, SeededRng};
use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// The NAT in front of a simulated node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimNat {
    Public,
    FullCone,
    PortRestricted,
    Symmetric,
}

impl SimNat {
    pub fn name(self) -> &'static str {
        match self {
            SimNat::Public => "public",
            SimNat::FullCone => "full cone",
            SimNat::PortRestricted => "port-restricted",
            SimNat::Symmetric => "symmetric",
        }
    }

    /// Whether two nodes behind these can punch a direct path.
    pub fn can_punch(a: SimNat, b: SimNat) -> bool {
        use SimNat::*;
        !matches!(
            (a, b),
            (Symmetric, Symmetric | PortRestricted) | (PortRestricted, Symmetric)
        )
    }
}

/// The external IP of node `i`'s NAT (inside 198.18.0.0/15, above the
/// nodes' own addresses; models up to 65,535 nodes).
pub fn external_ip(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, 0, 1)) + i)
}

/// The NATs of every node and their mappings.
pub struct NatModel {
    kinds: Vec<SimNat>,
    /// A symmetric NAT's external port per (node, destination).
    ports: HashMap<(u32, SocketAddr), u16>,
    /// External endpoint → node.
    owner: HashMap<SocketAddr, u32>,
    /// Added to a cone NAT's external port: bumped when its mappings are
    /// lost (a router reboot or conntrack flush), so it comes back on a
    /// new port.
    shift: HashMap<u32, u16>,
    /// (external endpoint, remote endpoint) pairs a reply may come from.
    allowed: HashSet<(SocketAddr, SocketAddr)>,
    rng: SeededRng,
}

impl NatModel {
    pub fn new(seed: u64) -> NatModel {
        NatModel {
            kinds: Vec::new(),
            ports: HashMap::new(),
            owner: HashMap::new(),
            shift: HashMap::new(),
            allowed: HashSet::new(),
            rng: SeededRng::new(seed),
        }
    }

    pub fn set_kind(&mut self, i: u32, kind: SimNat) {
        let i = i as usize;
        if self.kinds.len() <= i {
            self.kinds.resize(i + 1, SimNat::Public);
        }
        self.kinds[i] = kind;
    }

    pub fn kind(&self, i: u32) -> SimNat {
        self.kinds
            .get(i as usize)
            .copied()
            .unwrap_or(SimNat::Public)
    }

    /// Node `i` sends to `dst`: the source endpoint the world sees.
    pub fn outbound(&mut self, i: u32, private: SocketAddr, dst: SocketAddr) -> SocketAddr {
        let ext = match self.kind(i) {
            SimNat::Public => return private,
            SimNat::FullCone | SimNat::PortRestricted => {
                let shift = self.shift.get(&i).copied().unwrap_or(0);
                let port = private.port().wrapping_add(shift).max(1024);
                SocketAddr::new(external_ip(i).into(), port)
            }
            SimNat::Symmetric => {
                let rng = &mut self.rng;
                let port = *self
                    .ports
                    .entry((i, dst))
                    .or_insert_with(|| 1024 + rng.below(64_000) as u16);
                SocketAddr::new(external_ip(i).into(), port)
            }
        };
        self.owner.insert(ext, i);
        self.allowed.insert((ext, dst));
        ext
    }

    /// A datagram from `src` to external endpoint `dst`: the node it
    /// reaches, if a mapping and the filter let it through.
    pub fn inbound(&self, dst: SocketAddr, src: SocketAddr) -> Option<u32> {
        let &i = self.owner.get(&dst)?;
        match self.kind(i) {
            SimNat::Public => None,
            SimNat::FullCone => Some(i),
            SimNat::PortRestricted | SimNat::Symmetric => {
                self.allowed.contains(&(dst, src)).then_some(i)
            }
        }
    }

    /// Node `i`'s NAT forgets every mapping (as after a reboot or a
    /// conntrack flush): its next datagrams leave from new external ports,
    /// and nothing comes in through the old ones.
    pub fn rebind(&mut self, i: u32) {
        *self.shift.entry(i).or_insert(0) += 7919;
        self.ports.retain(|&(node, _), _| node != i);
        let gone: HashSet<SocketAddr> = self
            .owner
            .iter()
            .filter(|&(_, &node)| node == i)
            .map(|(&ext, _)| ext)
            .collect();
        self.owner.retain(|ext, _| !gone.contains(ext));
        self.allowed.retain(|(ext, _)| !gone.contains(ext));
    }

    /// Mappings held (memory check).
    pub fn mappings(&self) -> usize {
        self.allowed.len()
    }
}

/// Where nodes are, for latencies.
pub struct Geography {
    /// Position in ms of one-way delay, and the access link's delay.
    spots: Vec<(f32, f32, f32)>,
}

/// Region centres (ms of one-way delay apart on a plane, roughly: two
/// continents close to each other, one far, one farther).
const REGIONS: [(f32, f32); 5] = [
    (0.0, 0.0),
    (35.0, 5.0),
    (80.0, 40.0),
    (20.0, 60.0),
    (120.0, 10.0),
];

impl Geography {
    /// No two nodes are closer than their two access links (1 ms each):
    /// the simulator's lookahead (`engine`).
    pub const MIN_LATENCY: Duration = Duration::from_millis(2);

    pub fn new() -> Geography {
        Geography { spots: Vec::new() }
    }

    /// Places node `i` in a random region, spread ±10 ms around its
    /// centre, with an access delay of 1 to 10 ms.
    pub fn place(&mut self, i: u32, rng: &mut SeededRng) {
        let (cx, cy) = REGIONS[rng.below(REGIONS.len() as u64) as usize];
        let r = |rng: &mut SeededRng| (rng.below(2001) as f32 / 100.0) - 10.0;
        let spot = (
            cx + r(rng),
            cy + r(rng),
            1.0 + rng.below(901) as f32 / 100.0,
        );
        let i = i as usize;
        if self.spots.len() <= i {
            self.spots.resize(i + 1, (0.0, 0.0, 1.0));
        }
        self.spots[i] = spot;
    }

    /// One-way latency between nodes `a` and `b`.
    pub fn latency(&self, a: u32, b: u32) -> Duration {
        let (Some(p), Some(q)) = (self.spots.get(a as usize), self.spots.get(b as usize)) else {
            return Duration::from_millis(100);
        };
        let d = ((p.0 - q.0).powi(2) + (p.1 - q.1).powi(2)).sqrt();
        Duration::from_micros(((p.2 + q.2 + d) * 1000.0) as u64)
    }
}

impl Default for Geography {
    fn default() -> Geography {
        Geography::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn filters_like_the_lab_nats() {
        let mut m = NatModel::new(1);
        m.set_kind(0, SimNat::PortRestricted);
        m.set_kind(1, SimNat::Symmetric);
        m.set_kind(2, SimNat::FullCone);
        let (a, peer, other) = (
            ep("198.18.0.1:5140"),
            ep("198.18.0.9:5140"),
            ep("198.18.0.8:5140"),
        );
        let ext = m.outbound(0, a, peer);
        assert_eq!(ext, ep("198.19.0.1:5140"));
        assert_eq!(m.inbound(ext, peer), Some(0));
        assert_eq!(m.inbound(ext, other), None, "port-restricted filters");
        let s1 = m.outbound(1, ep("198.18.0.2:5140"), peer);
        let s2 = m.outbound(1, ep("198.18.0.2:5140"), other);
        assert_eq!(
            s1,
            m.outbound(1, ep("198.18.0.2:5140"), peer),
            "stable per destination"
        );
        assert_ne!(s1.port(), s2.port(), "a new port per destination");
        assert_eq!(m.inbound(s1, other), None);
        let c = m.outbound(2, ep("198.18.0.3:5140"), peer);
        assert_eq!(m.inbound(c, other), Some(2), "full cone lets anyone in");
        assert!(SimNat::can_punch(SimNat::FullCone, SimNat::Symmetric));
        assert!(!SimNat::can_punch(
            SimNat::PortRestricted,
            SimNat::Symmetric
        ));
    }

    #[test]
    fn a_rebound_nat_uses_new_ports_and_forgets_the_old() {
        let mut m = NatModel::new(1);
        m.set_kind(1, SimNat::PortRestricted);
        let (private, other) = (ep("198.18.0.2:5140"), ep("198.18.0.9:5140"));
        let before = m.outbound(1, private, other);
        assert_eq!(m.inbound(before, other), Some(1));
        m.rebind(1);
        assert_eq!(m.inbound(before, other), None, "the old mapping is gone");
        let after = m.outbound(1, private, other);
        assert_ne!(after.port(), before.port());
        assert_eq!(m.inbound(after, other), Some(1));
    }

    #[test]
    fn latency_grows_with_distance() {
        let mut g = Geography::new();
        let mut rng = SeededRng::new(3);
        for i in 0..50 {
            g.place(i, &mut rng);
        }
        let l = g.latency(0, 1);
        assert_eq!(l, g.latency(1, 0));
        assert!(l >= Duration::from_millis(2) && l < Duration::from_millis(200));
    }
}
