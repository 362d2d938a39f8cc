//! Sub-rings in the simulator: hosts that run networks beside their
//! public node (`host::Networks`), each network a group with its own CA;
//! `scenario` is the 1,000-node run (`ringvpn-lab sim-subrings`).

pub mod scenario;
pub use scenario::{groups, GroupOutcome, GroupsConfig, GroupsReport};

use super::Sim;
use crate::crypto::cert::{Cert, Prefix, Trust};
use crate::crypto::{Identity, Seed};
use crate::host::{NetworkSpec, Networks};
use crate::node::{Node, NodeConfig};
use crate::rand::{Rng, SeededRng};

/// A network as the simulator runs it: its name, CA and VPN.
#[derive(Clone)]
pub struct SimGroup {
    pub name: String,
    pub ca_seed: [u8; 32],
    /// Run the members as VPN members of this network (`None`: overlay
    /// only).
    pub vpn: Option<crate::vpn::VpnConfig>,
}

impl SimGroup {
    fn ca(&self) -> Identity {
        Identity::from_seed(&Seed(self.ca_seed))
    }
}

impl Sim {
    /// Makes node `i` a member of `group`: a network node beside its
    /// public node, with a certificate from the group's CA. Returns the
    /// network's index at that host.
    pub fn join_group(&mut self, i: usize, group: &SimGroup) -> usize {
        let now = self.now;
        let mut s = SeededRng::new(self.rng.next_u64());
        let mut key = [0u8; 32];
        for chunk in key.chunks_mut(8) {
            chunk.copy_from_slice(&s.next_u64().to_le_bytes());
        }
        let me = Identity::from_seed(&Seed(key)).public();
        let ca = group.ca();
        let valid = (1_700_000_000, 1_900_000_000);
        let ca_cert = Cert::new_ca(&ca, &group.name, "sim CA", valid).expect("a CA certificate");
        let all = vec![Prefix::parse("100.64.0.0/10").expect("a prefix")];
        let name = format!("n{i}");
        let cert =
            Cert::new_node(&ca, me, &group.name, &name, all, vec![], valid).expect("a certificate");
        let wall_origin_us = 1_800_000_000_000_000 + now.as_micros();
        let cfg = NodeConfig {
            trust: Some(Trust {
                network: group.name.clone(),
                cas: vec![ca_cert],
                revocations: vec![],
            }),
            cert: Some(cert.encode().expect("encodable")),
            timers: self.timers.clone(),
            pool_slots: self.pool_slots,
            max_peers: self.max_peers,
            wall_origin_us,
            rng_seed: s.next_u64(),
            overlay: Some(self.overlay.clone()),
            endpoints: vec![self.nodes[i].endpoint.into()],
            vpn: group.vpn.clone(),
            // Any key, as long as its certificate checks out.
            trust_any: true,
            ..NodeConfig::default()
        };
        let spec = NetworkSpec {
            name: group.name.clone(),
            ca: ca.public().0.to_vec(),
            seed: Seed(key),
            cfg,
        };
        let n = &mut self.nodes[i];
        let nets = n
            .nets
            .get_or_insert_with(|| Box::new(Networks::new(&mut n.node, wall_origin_us)));
        let k = nets.add(&n.node, spec, now);
        self.schedule_wake(i as u32, now);
        k
    }

    /// Host `i`'s networks, if it runs any.
    pub fn networks(&self, i: usize) -> Option<&Networks> {
        self.nodes[i].nets.as_deref()
    }

    /// Host `i`'s node in network `k`.
    pub fn net_node(&self, i: usize, k: usize) -> &Node {
        &self.nodes[i]
            .nets
            .as_ref()
            .expect("a host with networks")
            .get(k)
            .node
    }

    /// Runs `f` on host `i`'s node in network `k` and sends what it
    /// produced.
    pub fn with_net_node<R>(
        &mut self,
        i: usize,
        k: usize,
        f: impl FnOnce(&mut Node, crate::time::Instant) -> R,
    ) -> R {
        let now = self.now;
        let nets = self.nodes[i].nets.as_mut().expect("a host with networks");
        let r = f(&mut nets.get_mut(k).node, now);
        self.flush(i as u32);
        r
    }

    /// The frames host `i`'s node in network `k` wrote since the last
    /// call (kept up to `keep_frames`).
    pub fn take_net_frames(&mut self, i: usize, k: usize) -> Vec<Vec<u8>> {
        self.nodes[i]
            .net_taps
            .get_mut(k)
            .map(core::mem::take)
            .unwrap_or_default()
    }
}

impl Sim {
    /// Consistency of a group's sub-ring: `members` are (host, network
    /// index) pairs; hosts that are down are left out.
    pub fn group_consistency(&self, members: &[(usize, usize)]) -> f64 {
        let overlays: Vec<&crate::overlay::Overlay> = members
            .iter()
            .filter(|&&(i, _)| self.is_alive(i))
            .filter_map(|&(i, k)| self.net_node(i, k).overlay())
            .collect();
        super::metrics::ring_consistency(&overlays)
    }
}

#[cfg(test)]
mod tests;
