//! A daemon's networks beside its public node (docs/SUBRINGS.md).
//!
//! A daemon in sub-ring mode runs one `Node` on the public ring and one
//! per network, all sans IO. They share one UDP socket, so every network
//! uses the public node's NAT mappings and reflexive endpoints. The
//! networks' nodes do not know they share anything; `Networks` sits
//! between them and the socket and does three jobs:
//!
//! - **Demultiplexing.** A network's node tags what it sends with its
//!   network id (`wire::subring::Tagged`, prepended in place); a tagged
//!   datagram that comes in is copied from the public node's pool (where
//!   the socket read it) into its network's node; everything else is the
//!   public node's.
//! - **Carrying.** What a network's node sends to a carried endpoint goes
//!   (`Node::poll_to_carry`) to the public node as routed data for the
//!   host that endpoint names (`Node::send_carried`); what the public node takes for us
//!   (`Node::poll_carried`) goes to the network it is tagged for, from the
//!   sender's carried endpoint.
//! - **Groups.** Each network's `subring::Group` registers its record and
//!   reads the member list through the public node's DHT, and links the
//!   network's node to the members it finds.
//!
//! The one copy per datagram in each direction (between the pools) is
//! the price of separate nodes with separate pools; no heap is touched.

use crate::buf::PacketBuf;
use crate::crypto::{Identity, Seed};
use crate::node::{Carriage, Event, Node, NodeConfig, Transmit};
use crate::overlay::dht::client::Outcome;
use crate::overlay::Addr;
use crate::subring::{self, Action, Facts, Group};
use crate::time::Instant;
use crate::wire::endpoint::Endpoint;
use crate::wire::subring::{Carried, CarriedRepr, Tagged};

/// One network as configured: its name, its CA's public key (the group's
/// key depends on it; empty without a CA), our key in it and its node's
/// configuration.
pub struct NetworkSpec {
    pub name: String,
    pub ca: Vec<u8>,
    pub seed: Seed,
    pub cfg: NodeConfig,
}

/// One network we are a member of.
pub struct Network {
    pub name: String,
    pub id: u64,
    pub node: Node,
    pub group: Group,
}

/// Counters for status.
#[derive(Debug, Clone, Default)]
pub struct HostStats {
    pub tagged_in: u64,
    pub carried_in: u64,
    pub carried_out: u64,
    /// Tagged or carried datagrams for a network we do not run.
    pub unknown_network: u64,
    /// Datagrams lost for want of a buffer in the other node's pool.
    pub pool_empty: u64,
}

/// The networks of one daemon, beside its public node.
pub struct Networks {
    nets: Vec<Network>,
    /// Our public node's ring address: the source of what we carry.
    ring: [u8; 16],
    wall_origin_us: u64,
    pub stats: HostStats,
}

impl Networks {
    /// Networks beside `public`, which from now on takes carried
    /// datagrams for them and stores group records for others.
    pub fn new(public: &mut Node, wall_origin_us: u64) -> Networks {
        public.carry_for_networks();
        if let Some(ov) = public.overlay_mut() {
            ov.set_record_policy(Box::new(subring::record::GroupPolicy));
        }
        Networks {
            nets: Vec::new(),
            ring: Addr::of_key(&public.public_key()).to_bytes(),
            wall_origin_us,
            stats: HostStats::default(),
        }
    }

    /// Joins a network: its node starts now (its group waits for the
    /// public node's links). Returns its index.
    pub fn add(&mut self, public: &Node, spec: NetworkSpec, now: Instant) -> usize {
        let mut cfg = spec.cfg;
        let id = subring::network_id(&spec.name, &spec.ca);
        cfg.carriage = Carriage::Network(id);
        cfg.bootstrap_pending = true;
        cfg.endpoints.push(Endpoint::carried(self.ring));
        let seed = cfg.rng_seed.rotate_left(17) ^ 0x5eed;
        let key = subring::group_key(&spec.name, &spec.ca);
        let host = public.public_key();
        self.nets.push(Network {
            id,
            group: Group::new(key, Identity::from_seed(&spec.seed), host, seed, now),
            node: Node::new(Identity::from_seed(&spec.seed), cfg, now),
            name: spec.name,
        });
        self.nets.len() - 1
    }

    pub fn len(&self) -> usize {
        self.nets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    pub fn get(&self, i: usize) -> &Network {
        &self.nets[i]
    }

    pub fn get_mut(&mut self, i: usize) -> &mut Network {
        &mut self.nets[i]
    }

    pub fn iter(&self) -> impl Iterator<Item = &Network> {
        self.nets.iter()
    }

    /// The network named `name`.
    pub fn by_name(&self, name: &str) -> Option<usize> {
        self.nets.iter().position(|n| n.name == name)
    }

    fn by_id(&self, id: u64) -> Option<usize> {
        self.nets.iter().position(|n| n.id == id)
    }

    /// A datagram the shared socket read into the public node's pool:
    /// a network's (taken, handed on) or the public node's (given back).
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        public: &mut Node,
        from: Endpoint,
        buf: PacketBuf,
    ) -> Option<PacketBuf> {
        let Ok(tagged) = Tagged::new_checked(public.pool().data(&buf)) else {
            return Some(buf);
        };
        self.stats.tagged_in += 1;
        let to = self.by_id(tagged.network());
        let payload = tagged.payload();
        self.hand_on(now, to, from, payload);
        public.pool_mut().free(buf);
        None
    }

    /// `payload` to network `to`'s node, as a datagram from `from`.
    fn hand_on(&mut self, now: Instant, to: Option<usize>, from: Endpoint, payload: &[u8]) {
        let Some(i) = to else {
            self.stats.unknown_network += 1;
            return;
        };
        let node = &mut self.nets[i].node;
        match node.pool_mut().alloc_with(payload) {
            Some(b) => node.handle_datagram(now, from, b),
            None => self.stats.pool_empty += 1,
        }
    }

    /// What the public node took for us, to the networks' nodes.
    fn carried_in(&mut self, now: Instant, public: &mut Node) {
        while let Some(buf) = public.poll_carried() {
            if let Ok(c) = Carried::new_checked(public.pool().data(&buf)) {
                self.stats.carried_in += 1;
                let to = self.by_id(c.network());
                let from = Endpoint::carried(c.src());
                self.hand_on(now, to, from, c.payload());
            }
            public.pool_mut().free(buf);
        }
    }

    /// Network `i`'s datagram for a carried endpoint, to the public node.
    fn carry_out(&mut self, now: Instant, public: &mut Node, i: usize, t: Transmit) {
        let net = &mut self.nets[i];
        let dst = t.dst.ring_addr().map(Addr::from_bytes);
        let copy = public.pool_mut().alloc_with(net.node.pool().data(&t.buf));
        net.node.pool_mut().free(t.buf);
        let (Some(dst), Some(mut buf)) = (dst, copy) else {
            self.stats.pool_empty += 1;
            return;
        };
        let repr = CarriedRepr {
            network: net.id,
            src: self.ring,
        };
        match public.pool_mut().prepend(&mut buf, repr.buffer_len()) {
            Some(hdr) => {
                repr.emit(hdr);
                self.stats.carried_out += 1;
                public.send_carried(now, dst, buf);
            }
            None => public.pool_mut().free(buf),
        }
    }

    /// Moves carried datagrams between the public node and the
    /// networks' nodes: what was carried to us, to its network; what a
    /// network's node wants carried, to the public node. Call after every
    /// input, before draining the nodes' transmits (each network's node's
    /// own, already tagged, and the public node's).
    pub fn settle(&mut self, now: Instant, public: &mut Node) {
        self.carried_in(now, public);
        for i in 0..self.nets.len() {
            while let Some(t) = self.nets[i].node.poll_to_carry() {
                self.carry_out(now, public, i, t);
            }
        }
    }

    /// The earliest deadline of the networks' nodes and groups.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.nets
            .iter()
            .flat_map(|n| [n.node.poll_timeout(), Some(n.group.poll_timeout())])
            .flatten()
            .min()
    }

    /// Runs what is due: the networks' nodes' timers, and the groups'
    /// registrations and lookups.
    pub fn handle_timeout(&mut self, now: Instant, public: &mut Node) {
        let endpoints: Vec<Endpoint> = public
            .overlay()
            .map(|ov| {
                ov.endpoints()
                    .iter()
                    .filter(|e| e.is_udp())
                    .copied()
                    .collect()
            })
            .unwrap_or_default();
        for i in 0..self.nets.len() {
            let net = &mut self.nets[i];
            if net.node.poll_timeout().is_some_and(|t| t <= now) {
                net.node.handle_timeout(now);
            }
            if net.group.poll_timeout() <= now {
                let facts = Facts {
                    public_linked: public.has_links(),
                    network_linked: net.node.has_links(),
                    endpoints: &endpoints,
                    unix_secs: crate::time::unix_secs(self.wall_origin_us, now),
                };
                net.group.on_timeout(now, &facts);
                self.run_group(now, public, i);
            }
        }
    }

    /// The public node's event: a group's lookup result is taken here;
    /// anything else is given back.
    pub fn public_event(&mut self, now: Instant, public: &mut Node, e: Event) -> Option<Event> {
        let Event::Dht(d) = &e else {
            return Some(e);
        };
        let Some(i) = self.nets.iter().position(|n| n.group.owns(d.id)) else {
            return Some(e);
        };
        let net = &mut self.nets[i];
        let records = match &d.outcome {
            Outcome::Found(r) => Some(r.as_slice()),
            _ => None,
        };
        let node = &net.node;
        let linked = |k: &crate::crypto::NodeKey| {
            node.overlay()
                .is_some_and(|ov| ov.table().get(Addr::of_key(k)).is_some())
        };
        net.group.found(records, node.has_links(), &linked);
        self.run_group(now, public, i);
        None
    }

    /// Carries out what network `i`'s group asked for.
    fn run_group(&mut self, now: Instant, public: &mut Node, i: usize) {
        let net = &mut self.nets[i];
        let actions: Vec<Action> = net.group.drain_actions().collect();
        for a in actions {
            match a {
                Action::Register { key, value, ttl } => {
                    public.with_overlay(now, |ov| ov.dht_register(now, key, &value, ttl, false));
                }
                Action::Lookup { key } => {
                    if let Some(id) = public.with_overlay(now, |ov| ov.dht_get(now, key, false)) {
                        net.group.lookup_started(id);
                    }
                }
                Action::Link { key, candidates } => {
                    let leaf = crate::overlay::table::reason::LEAF;
                    net.node
                        .with_overlay(now, |ov| ov.link(now, key, candidates, leaf));
                }
            }
        }
    }

    /// Leaving: every network's node says goodbye; the public node's
    /// registrations end with it.
    pub fn leave(&mut self, now: Instant) {
        for n in &mut self.nets {
            n.node.leave(now);
        }
    }
}
