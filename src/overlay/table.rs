//! The connection table: linked overlay nodes sorted by ring address.
//!
//! Every connection, whatever made it, is used for greedy routing. Each
//! side records why it keeps a link (its *reasons*) and learns the other
//! side's; a link is closed only when neither side has a reason, so two
//! nodes never fight over one link.

use crate::crypto::NodeKey;
use crate::ids::PeerIdx;
use crate::time::Instant;
use crate::wire::addr::Addr;
use crate::wire::overlay::Endpoint;

/// Why a node keeps a connection (bit set).
pub mod reason {
    /// Among our nearest neighbours on one side.
    pub const NEAR: u8 = 1;
    /// A small-world shortcut we created.
    pub const SHORTCUT: u8 = 2;
    /// A bootstrap link, kept until we have our place in the ring.
    pub const LEAF: u8 = 4;
    /// An on-demand direct link: VPN traffic flows between the two nodes.
    pub const ONDEMAND: u8 = 8;
    /// A link that relays a tunnel edge of ours.
    pub const RELAY: u8 = 16;
    /// Not a reason: set beside them when the sender is behind a NAT, so
    /// that neither end trims the link as early as an open one
    /// (`OverlayConfig::trim_crowded_open`).
    pub const BEHIND_NAT: u8 = 0x80;
}

#[derive(Debug, Clone)]
pub struct Conn {
    pub addr: Addr,
    pub peer: PeerIdx,
    pub key: NodeKey,
    /// Where the link reaches the peer (what we tell others about it).
    pub endpoint: Endpoint,
    pub since: Instant,
    /// Our reasons to keep it.
    pub mine: u8,
    /// The reasons the other side announced.
    pub theirs: u8,
    /// What we last told the other side.
    pub announced: u8,
    /// Address prefixes of the peer's own connections (its last
    /// connection list), for neighbour-of-neighbour routing.
    pub nbrs: Vec<u64>,
    /// Our latest connection list has not been sent on this link yet.
    pub list_stale: bool,
    /// What the peer relays for others (KiB/s, 0: never), from its list.
    pub relay_kib: u16,
    /// The link stopped answering (the node says): routing goes around
    /// it while it is probed.
    pub suspect: bool,
    /// The peer said it is behind a NAT.
    pub nat: bool,
}

impl Conn {
    fn new(addr: Addr, key: NodeKey, peer: PeerIdx, endpoint: Endpoint, since: Instant) -> Conn {
        Conn {
            addr,
            peer,
            key,
            endpoint,
            since,
            mine: 0,
            theirs: 0,
            announced: 0,
            nbrs: Vec::new(),
            list_stale: false,
            relay_kib: 0,
            suspect: false,
            nat: false,
        }
    }
}

#[derive(Debug, Default)]
pub struct ConnTable {
    conns: Vec<Conn>,
}

impl ConnTable {
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Conn> {
        self.conns.iter()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Conn> {
        self.conns.iter_mut()
    }

    pub fn get(&self, addr: Addr) -> Option<&Conn> {
        self.position(addr).ok().map(|i| &self.conns[i])
    }

    pub fn get_mut(&mut self, addr: Addr) -> Option<&mut Conn> {
        self.position(addr).ok().map(|i| &mut self.conns[i])
    }

    pub fn by_peer(&self, peer: PeerIdx) -> Option<&Conn> {
        self.conns.iter().find(|c| c.peer == peer)
    }

    pub fn by_peer_mut(&mut self, peer: PeerIdx) -> Option<&mut Conn> {
        self.conns.iter_mut().find(|c| c.peer == peer)
    }

    fn position(&self, addr: Addr) -> Result<usize, usize> {
        self.conns.binary_search_by(|c| c.addr.cmp(&addr))
    }

    /// Adds a connection (or refreshes the peer of an existing one).
    pub fn insert(&mut self, key: NodeKey, peer: PeerIdx, endpoint: Endpoint, now: Instant) {
        let addr = Addr::of_key(&key);
        match self.position(addr) {
            Ok(i) => {
                self.conns[i].peer = peer;
                self.conns[i].endpoint = endpoint;
            }
            Err(i) => self.insert_new(i, Conn::new(addr, key, peer, endpoint, now)),
        }
    }

    /// Adds a connection at a chosen address (tests build rings this way;
    /// real addresses are hashes of keys).
    #[cfg(test)]
    pub fn insert_at(&mut self, addr: Addr, key: NodeKey, peer: PeerIdx) {
        if let Err(i) = self.position(addr) {
            let endpoint = Endpoint::udp(([198, 18, 0, 1], 5140).into());
            self.insert_new(i, Conn::new(addr, key, peer, endpoint, Instant::ZERO));
        }
    }

    fn insert_new(&mut self, i: usize, conn: Conn) {
        // Grown by a quarter, not doubled: a join's burst would leave
        // room for twice the links the ring keeps.
        if self.conns.len() == self.conns.capacity() {
            self.conns.reserve_exact((self.conns.len() / 4).max(4));
        }
        self.conns.insert(i, conn);
    }

    pub fn remove(&mut self, addr: Addr) -> Option<Conn> {
        let conn = self.position(addr).ok().map(|i| self.conns.remove(i))?;
        // A join's burst of links leaves far more room than the ring keeps.
        if self.conns.capacity() > 8 && self.conns.len() * 2 <= self.conns.capacity() {
            self.conns
                .shrink_to(self.conns.len() + self.conns.len() / 4);
        }
        Some(conn)
    }

    /// The `k` nearest connections going right from `me` (nearest first).
    pub fn right_of(&self, me: Addr, k: usize) -> impl Iterator<Item = &Conn> {
        let n = self.conns.len();
        let start = match self.position(me) {
            Ok(i) => i + 1,
            Err(i) => i,
        };
        (0..n.min(k)).map(move |j| &self.conns[(start + j) % n])
    }

    /// The `k` nearest connections going left from `me` (nearest first).
    pub fn left_of(&self, me: Addr, k: usize) -> impl Iterator<Item = &Conn> {
        let n = self.conns.len();
        let start = match self.position(me) {
            Ok(i) | Err(i) => i + n,
        };
        (0..n.min(k)).map(move |j| &self.conns[(start - 1 - j) % n])
    }

    /// The connection closest to `target`, if any.
    pub fn closest_to(&self, target: Addr) -> Option<&Conn> {
        self.closest_excluding(target, None)
    }

    /// The connection closest to `target`, ignoring address `skip`.
    pub fn closest_excluding(&self, target: Addr, skip: Option<Addr>) -> Option<&Conn> {
        if self.conns.is_empty() {
            return None;
        }
        // The closest is one of the two connections bracketing the target.
        // The closest is among the two connections on each side of the
        // target's position (two, so that skipping one still leaves a bracket).
        let n = self.conns.len();
        let (Ok(i) | Err(i)) = self.position(target);
        [i % n, (i + n - 1) % n, (i + 1) % n, (i + 2 * n - 2) % n]
            .iter()
            .map(|&j| &self.conns[j])
            .filter(|c| Some(c.addr) != skip)
            .min_by_key(|c| c.addr.distance(target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(addrs: &[u128]) -> ConnTable {
        let mut t = ConnTable::default();
        for (i, &a) in addrs.iter().enumerate() {
            t.insert(
                NodeKey([i as u8; 32]),
                PeerIdx(i as u16),
                "198.18.0.1:1".parse().unwrap(),
                Instant::ZERO,
            );
            // Place it at the chosen address (keys hash elsewhere).
            let pos = t
                .conns
                .iter()
                .position(|c| c.peer == PeerIdx(i as u16))
                .unwrap();
            let mut c = t.conns.remove(pos);
            c.addr = Addr(a);
            let at = t.position(c.addr).unwrap_err();
            t.conns.insert(at, c);
        }
        t
    }

    fn addrs<'a>(it: impl Iterator<Item = &'a Conn>) -> Vec<u128> {
        it.map(|c| c.addr.0).collect()
    }

    #[test]
    fn neighbours_wrap_around() {
        let t = table(&[10, 20, 30, u128::MAX - 1]);
        assert_eq!(addrs(t.right_of(Addr(25), 2)), vec![30, u128::MAX - 1]);
        assert_eq!(addrs(t.right_of(Addr(30), 3)), vec![u128::MAX - 1, 10, 20]);
        assert_eq!(addrs(t.left_of(Addr(25), 3)), vec![20, 10, u128::MAX - 1]);
        assert_eq!(addrs(t.left_of(Addr(5), 2)), vec![u128::MAX - 1, 30]);
        assert_eq!(
            addrs(t.left_of(Addr(20), 1)),
            vec![10],
            "an existing address is skipped"
        );
        assert_eq!(
            t.right_of(Addr(5), 10).count(),
            4,
            "never more than the table"
        );
    }

    #[test]
    fn closest_bracket_and_skip() {
        let t = table(&[10, 20, 30, u128::MAX - 1]);
        assert_eq!(t.closest_to(Addr(24)).unwrap().addr, Addr(20));
        assert_eq!(t.closest_to(Addr(26)).unwrap().addr, Addr(30));
        assert_eq!(t.closest_to(Addr(1)).unwrap().addr, Addr(u128::MAX - 1));
        assert_eq!(t.closest_to(Addr(20)).unwrap().addr, Addr(20));
        assert_eq!(
            t.closest_excluding(Addr(20), Some(Addr(20))).unwrap().addr,
            Addr(10)
        );
        assert_eq!(
            t.closest_excluding(Addr(24), Some(Addr(20))).unwrap().addr,
            Addr(30)
        );
        assert!(ConnTable::default().closest_to(Addr(1)).is_none());
        // One and two entries (index arithmetic must not underflow).
        for n in 1..=2 {
            let t = table(&[10, 20][..n]);
            for x in [0, 10, 15, 25, u128::MAX] {
                assert!(t.closest_to(Addr(x)).is_some());
                let _ = t.closest_excluding(Addr(x), Some(Addr(10)));
                assert_eq!(t.left_of(Addr(x), 3).count(), n);
                assert_eq!(t.right_of(Addr(x), 3).count(), n);
            }
        }
    }

    #[test]
    fn closest_matches_a_full_scan() {
        use crate::rand::{Rng, SeededRng};
        let mut rng = SeededRng::new(3);
        let a: Vec<u128> = (0..50)
            .map(|_| (rng.next_u64() as u128) << 64 | rng.next_u64() as u128)
            .collect();
        let t = table(&a);
        for _ in 0..1000 {
            let x = Addr((rng.next_u64() as u128) << 64);
            let skip = Some(Addr(a[rng.below(50) as usize]));
            let want = a
                .iter()
                .filter(|&&v| Some(Addr(v)) != skip)
                .min_by_key(|&&v| Addr(v).distance(x))
                .unwrap();
            assert_eq!(
                t.closest_excluding(x, skip).unwrap().addr.distance(x),
                Addr(*want).distance(x)
            );
        }
    }
}
