//! Sub-ring mode (docs/SUBRINGS.md): the daemon's networks beside its
//! public node — one node and one TAP per `[network NAME]` section,
//! all on the public node's UDP socket. The sans-IO part (tagging,
//! carrying, the groups) is `host::Networks`; this is the fds: the
//! TAPs, and per network what the daemon keeps for its node (the
//! address watch, ring-ping answers, task results).

use super::{daemon::node_config, load_trust, tap, AddressWatch, Echoes, Tasks};
use crate::config::Config;
use crate::host::{NetworkSpec, Networks};
use crate::node::{Event, Node};
use crate::time::Instant;
use crate::wire::endpoint::Endpoint;
use mio::unix::SourceFd;
use mio::{Interest, Token};

/// Networks one daemon runs at most (each takes a poll token).
pub const MAX_NETWORKS: usize = 32;
/// The first network TAP's token (the next ones follow).
const TAP_FIRST: usize = 40;

/// Every network's subnets (IPv4 and the IPv6 /96): inside the underlay
/// guard of every node of the daemon (`node::underlay`).
pub(super) fn network_prefixes(cfg: &Config) -> Vec<crate::net::Prefix> {
    let mut out = Vec::new();
    for n in &cfg.networks {
        let (ip, len) = n.cfg.subnet;
        out.push(crate::net::Prefix::new(ip.into(), len));
        if let Some(v6) = n.cfg.ipv6 {
            out.push(crate::net::Prefix::new(v6.into(), 96));
        }
    }
    out
}

/// What the shell keeps for one network.
struct Local {
    tap: tap::Tap,
    /// The TAP may have more to read.
    tap_more: bool,
    vpn: Option<crate::vpn::VpnConfig>,
    addresses: AddressWatch,
    echoes: Echoes,
    tasks: Tasks,
}

pub(super) struct Subrings {
    pub(super) nets: Networks,
    local: Vec<Local>,
}

impl Subrings {
    /// Opens every network's TAP and builds its node next to `public`;
    /// any failure is a clear error naming the network.
    pub(super) fn setup(
        cfg: &Config,
        public: &mut Node,
        endpoints: &[Endpoint],
        wall_origin_us: u64,
    ) -> Result<Subrings, String> {
        if cfg.networks.len() > MAX_NETWORKS {
            return Err(format!("at most {MAX_NETWORKS} networks per daemon"));
        }
        let mut nets = Networks::new(public, wall_origin_us);
        let mut local = Vec::new();
        for n in &cfg.networks {
            let mut ncfg = n.cfg.clone();
            let what = |e: String| format!("[network {}]: {e}", n.name);
            let seed = crate::config::load_key(&ncfg.key_file).map_err(what)?;
            let identity = crate::crypto::Identity::from_seed(&seed);
            let key = identity.public();
            drop(identity);
            let trust = load_trust(&mut ncfg, &key, true).map_err(what)?;
            // The group's key depends on its CA: outsiders cannot name it.
            let ca = trust
                .as_ref()
                .and_then(|(t, _)| t.cas.first())
                .map_or(Vec::new(), |c| c.subject.0.to_vec());
            let vpn = ncfg.vpn();
            let tap_addr = if ncfg.dhcp { None } else { ncfg.address };
            let mac = crate::vpn::host_mac(&key).0;
            let tap = tap::Tap::open(&ncfg.tap, ncfg.mtu, mac, tap_addr, cfg.offload)
                .map_err(|e| what(format!("cannot create TAP device {}: {e}", ncfg.tap)))?;
            let mut nc = node_config(&ncfg, &vpn, trust, endpoints.to_vec());
            nc.tcp_fallback = false;
            // Nor is another network's address ever this one's underlay.
            nc.tap_prefixes.extend(network_prefixes(cfg));
            nets.add(
                public,
                NetworkSpec {
                    name: n.name.clone(),
                    ca,
                    seed,
                    cfg: nc,
                },
                Instant::ZERO,
            );
            log::info!("network {} on {}", n.name, tap.name());
            local.push(Local {
                addresses: AddressWatch {
                    v4_done: tap_addr.is_some() || ncfg.dhcp,
                    v6_done: !vpn.as_ref().is_some_and(|v| v.ipv6.is_some()),
                },
                tap,
                tap_more: true,
                vpn,
                echoes: Echoes::default(),
                tasks: Tasks::default(),
            });
        }
        Ok(Subrings { nets, local })
    }

    pub(super) fn register(&self, reg: &mio::Registry) -> std::io::Result<()> {
        for (k, l) in self.local.iter().enumerate() {
            let token = Token(TAP_FIRST + k);
            reg.register(&mut SourceFd(&l.tap.raw_fd()), token, Interest::READABLE)?;
        }
        Ok(())
    }

    /// A network TAP's token: it may be read.
    pub(super) fn ready(&mut self, t: Token) -> bool {
        match t
            .0
            .checked_sub(TAP_FIRST)
            .and_then(|k| self.local.get_mut(k))
        {
            Some(l) => {
                l.tap_more = true;
                true
            }
            None => false,
        }
    }

    pub(super) fn tap_more(&self) -> bool {
        self.local.iter().any(|l| l.tap_more)
    }

    /// Reads a batch from each TAP that may have more into its node.
    pub(super) fn read_taps(&mut self, now: Instant) {
        for (k, l) in self.local.iter_mut().enumerate() {
            if l.tap_more {
                l.tap_more = l.tap.read_into(&mut self.nets.get_mut(k).node, now);
            }
        }
    }

    /// The networks' frames to their TAPs, carried datagrams moved, and
    /// their datagrams to the socket. False if the socket filled up.
    pub(super) fn flush(
        &mut self,
        udp: &mut super::udp::Udp,
        public: &mut Node,
        now: Instant,
    ) -> Result<bool, String> {
        self.nets.settle(now, public);
        let mut writable = true;
        for (k, l) in self.local.iter_mut().enumerate() {
            let node = &mut self.nets.get_mut(k).node;
            l.tap.write_from(node);
            // A network's node never has TCP endpoints (no fallback).
            writable &= udp
                .flush(node, &mut |n, t| n.pool_mut().free(t.buf))
                .map_err(|e| format!("UDP send failed: {e}"))?;
        }
        Ok(writable)
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.nets.poll_timeout()
    }

    /// What is due, and the networks' events.
    pub(super) fn upkeep(&mut self, now: Instant, public: &mut Node) -> Result<(), String> {
        if self.nets.poll_timeout().is_some_and(|d| d <= now) {
            self.nets.handle_timeout(now, public);
        }
        for (k, l) in self.local.iter_mut().enumerate() {
            let net = self.nets.get_mut(k);
            while let Some(e) = net.node.poll_event() {
                match e {
                    Event::AddressHeld(ip) => l.addresses.held(ip, l.tap.name(), l.vpn.as_ref())?,
                    Event::AddressConflict { ip, holder } => {
                        return Err(format!(
                            "[network {}]: virtual address {ip} is already held by node {}; choose another address or `address = auto`",
                            net.name,
                            holder.to_hex()
                        ))
                    }
                    Event::Echo { nonce, hops, rtt } => l.echoes.insert(nonce, hops, rtt),
                    Event::TaskDone { id, result, took, .. } => l.tasks.done(id, *result, took),
                    // Routes are not offered inside networks yet.
                    Event::Dht(_) | Event::RouteAdded(_) | Event::RouteRemoved(_) => {}
                }
            }
        }
        Ok(())
    }

    /// Our interfaces' addresses changed: every network's node shares
    /// them (and keeps its carried endpoint).
    pub(super) fn set_local_endpoints(&mut self, now: Instant, public: &Node, eps: &[Endpoint]) {
        let carried =
            Endpoint::carried(crate::overlay::Addr::of_key(&public.public_key()).to_bytes());
        let mut all = eps.to_vec();
        all.push(carried);
        for k in 0..self.nets.len() {
            self.nets.get_mut(k).node.set_local_endpoints(now, &all);
        }
    }

    /// A control request for network `name` (`ringvpn --network NAME …`).
    pub(super) fn control(
        &mut self,
        name: &str,
        line: &str,
        info: &crate::status::DaemonInfo,
        now: Instant,
    ) -> String {
        let Some(k) = self.nets.by_name(name) else {
            let names: Vec<&str> = self.nets.iter().map(|n| n.name.as_str()).collect();
            return format!(
                "error: no network {name} here (this daemon runs: {})\n",
                names.join(", ")
            );
        };
        let l = &self.local[k];
        let info = crate::status::DaemonInfo {
            tap: l.tap.name().to_string(),
            offloads: format!("{}, {}", info.offloads, l.tap.offloads()),
            ..info.clone()
        };
        let node = &mut self.nets.get_mut(k).node;
        super::control_request(node, line, &info, &l.echoes, &l.tasks, now)
    }

    /// One line per network for the public node's status.
    pub(super) fn summary(&self) -> String {
        let mut s = String::new();
        for (k, l) in self.local.iter().enumerate() {
            let net = self.nets.get(k);
            let links = net.node.overlay().map_or(0, |o| o.table().len());
            let address = net
                .node
                .vpn_status()
                .and_then(|v| v.address)
                .map_or("-".to_string(), |a| a.to_string());
            s += &format!(
                "network   {} on {}: {address}, {links} sub-ring links, {} members found\n",
                net.name,
                l.tap.name(),
                net.group.known()
            );
        }
        let st = &self.nets.stats;
        s += &format!(
            "carriage  {} tagged in, {} carried in, {} carried out, {} for no network of ours\n",
            st.tagged_in, st.carried_in, st.carried_out, st.unknown_network
        );
        s
    }
}
