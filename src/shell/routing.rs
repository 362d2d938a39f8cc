//! The host's side of routes: what the kernel must be told so that the
//! node's routes carry real traffic, and taken back exactly at the end.
//!
//! - **A client with an exit** (wg-quick's full tunnel): a default route
//!   into the TAP in a table of ringvpn's own ([`TABLE`]); the daemon's
//!   sockets carry a firewall mark, and policy rules send every unmarked
//!   packet to that table — after a rule that lets the main table answer
//!   for anything more specific than a default route
//!   (`suppress_prefixlength 0`: the VPN's subnet, routes other software
//!   added). Without `exit-lan = allow`, the directly connected LANs go
//!   through the exit too (a rule per LAN prefix, ahead of the rest): on
//!   a café's network, the café sees nothing.
//! - **Subnet routes** offered by other members: `PREFIX via <virtual
//!   router> dev TAP` in the main table, added and removed as the node
//!   says.
//! - **A gateway or router**: IP forwarding on, and a masquerade rule in an
//!   nftables table of ringvpn's own (`nft -f -`; the one program the
//!   daemon runs).
//!
//! Everything carries ringvpn's marks (rule priorities [`PRIO_MARKED`] to
//! [`PRIO_EXIT`], table [`TABLE`], route protocol [`PROTO`], the nft
//! table's name), so a start cleans up what a crashed run left behind and
//! a stop removes exactly what it added. Routes through the TAP vanish
//! with it when the daemon dies; rules and the nft table do not, hence
//! the clean-up.

use super::netlink::{Netlink, Route, Rule, RT_SCOPE_LINK, RT_TABLE_MAIN};
use crate::config::Config;
use crate::net::Prefix;
use crate::routes::Exit;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::{Command, Stdio};

/// The routing table of the full tunnel (and the default firewall mark).
pub const TABLE: u32 = 0x7276;
pub const DEFAULT_MARK: u32 = 0x7276;
/// Rule priorities: our own (marked) traffic to the main table, LANs
/// through the exit, the main table without its default route,
/// everything unmarked to [`TABLE`].
pub const PRIO_MARKED: u32 = 29300;
pub const PRIO_LAN: u32 = 29301;
pub const PRIO_SUPPRESS: u32 = 29302;
pub const PRIO_EXIT: u32 = 29303;
/// Route protocol of our routes (iproute2 shows it as a number).
pub const PROTO: u8 = 76;

pub struct HostRouting {
    nl: Option<Netlink>,
    tap: String,
    oif: u32,
    /// The virtual router, the next hop of every route into the TAP.
    gw4: Ipv4Addr,
    gw6: Option<Ipv6Addr>,
    rules: Vec<Rule>,
    routes: Vec<Route>,
    nft_table: Option<String>,
    /// sysctl files we changed, and what they said before.
    sysctls: Vec<(String, String)>,
}

/// The firewall mark the daemon's sockets carry: the configured one, or
/// ours when a full tunnel needs one.
pub fn socket_mark(cfg: &Config) -> Option<u32> {
    cfg.fwmark
        .or((cfg.routing.exit != Exit::Off).then_some(DEFAULT_MARK))
}

fn nft_name(tap: &str) -> String {
    let clean: String = tap
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("ringvpn_{clean}")
}

fn sysctl_path(key: &str) -> String {
    format!("/proc/sys/{}", key.replace('.', "/"))
}

impl HostRouting {
    /// Cleans what an earlier run left, then sets up what the config
    /// asks for. Does nothing (and needs no netlink) outside overlay mode
    /// or without routes.
    pub fn setup(cfg: &Config, tap: &str) -> Result<HostRouting, String> {
        let vpn = cfg.vpn();
        let gw4 = vpn.as_ref().map_or(Ipv4Addr::UNSPECIFIED, |v| v.gateway());
        let gw6 = vpn.as_ref().and_then(|v| v.v6_of(v.gateway()));
        let mut h = HostRouting {
            nl: None,
            tap: tap.to_string(),
            oif: 0,
            gw4,
            gw6,
            rules: Vec::new(),
            routes: Vec::new(),
            nft_table: None,
            sysctls: Vec::new(),
        };
        if vpn.is_none() {
            return Ok(h);
        }
        let fail = |e: std::io::Error| format!("routes: netlink: {e}");
        h.nl = Some(Netlink::open().map_err(fail)?);
        h.oif = crate::sys::ifindex(tap).map_err(|e| format!("routes: {tap}: {e}"))?;
        h.clean_stale();
        let r = &cfg.routing;
        if r.exit != Exit::Off {
            h.full_tunnel(socket_mark(cfg).unwrap_or(DEFAULT_MARK), r.exit_lan)
                .map_err(|e| {
                    h.restore();
                    format!("exit: cannot set up the full tunnel: {e}")
                })?;
        }
        if r.gateway || !r.advertise.is_empty() {
            h.forward(cfg).inspect_err(|_| h.restore())?;
        }
        Ok(h)
    }

    /// Rules with our priorities and routes in our table from an earlier
    /// run (a crash, SIGKILL), and its nft table (replaced on setup).
    fn clean_stale(&mut self) {
        let Some(nl) = self.nl.as_mut() else {
            return;
        };
        for v6 in [false, true] {
            for r in nl.rules(v6).unwrap_or_default() {
                if (PRIO_MARKED..=PRIO_EXIT).contains(&r.priority) {
                    log::info!(
                        "routes: removing a rule left by an earlier run (pref {})",
                        r.priority
                    );
                    let _ = nl.del_rule(&r);
                }
            }
            for r in nl.routes(v6).unwrap_or_default() {
                if r.table == TABLE {
                    let _ = nl.del_route(&Route {
                        dst: r.dst,
                        table: TABLE,
                        gateway: None,
                        oif: r.oif.unwrap_or(0),
                        protocol: r.protocol,
                    });
                }
            }
        }
    }

    /// The full tunnel: the default routes into the TAP in [`TABLE`], and
    /// the rules that send unmarked traffic there.
    fn full_tunnel(&mut self, mark: u32, lan_allowed: bool) -> std::io::Result<()> {
        let mut families = vec![(false, IpAddr::V4(self.gw4))];
        families.extend(self.gw6.map(|g| (true, IpAddr::V6(g))));
        // Directly connected LANs (before our own routes exist).
        let lans = if lan_allowed { Vec::new() } else { self.lans() };
        let nl = self.nl.as_mut().expect("netlink");
        for &(v6, gw) in &families {
            let any = if v6 {
                IpAddr::V6(Ipv6Addr::UNSPECIFIED)
            } else {
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            };
            let route = Route {
                dst: Prefix::new(any, 0),
                table: TABLE,
                gateway: Some(gw),
                oif: self.oif,
                protocol: PROTO,
            };
            nl.add_route(&route)?;
            self.routes.push(route);
            let mut rules = Vec::new();
            let lans: Vec<&Prefix> = lans.iter().filter(|p| p.addr.is_ipv6() == v6).collect();
            if !lans.is_empty() {
                // Our own links first (a rule's `not` negates all of it,
                // so "to the LAN, unmarked" takes two rules).
                rules.push(Rule {
                    v6,
                    priority: PRIO_MARKED,
                    table: RT_TABLE_MAIN,
                    fwmark: Some(mark),
                    invert: false,
                    suppress_prefixlen: None,
                    dst: None,
                });
            }
            for lan in lans {
                rules.push(Rule {
                    v6,
                    priority: PRIO_LAN,
                    table: TABLE,
                    fwmark: None,
                    invert: false,
                    suppress_prefixlen: None,
                    dst: Some(*lan),
                });
            }
            rules.push(Rule {
                v6,
                priority: PRIO_SUPPRESS,
                table: RT_TABLE_MAIN,
                fwmark: None,
                invert: false,
                suppress_prefixlen: Some(0),
                dst: None,
            });
            rules.push(Rule {
                v6,
                priority: PRIO_EXIT,
                table: TABLE,
                fwmark: Some(mark),
                invert: true,
                suppress_prefixlen: None,
                dst: None,
            });
            for r in rules {
                nl.add_rule(&r)?;
                self.rules.push(r);
            }
        }
        log::info!(
            "exit: full tunnel through {} (table {TABLE}, fwmark {mark:#x}{})",
            self.tap,
            if lan_allowed { ", LAN allowed" } else { "" }
        );
        Ok(())
    }

    /// The prefixes of the LANs this host sits on: the main table's
    /// connected routes, not ours, not link-local.
    fn lans(&mut self) -> Vec<Prefix> {
        let Some(nl) = self.nl.as_mut() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for v6 in [false, true] {
            for r in nl.routes(v6).unwrap_or_default() {
                let link_local = match r.dst.addr {
                    IpAddr::V6(a) => a.segments()[0] & 0xffc0 == 0xfe80,
                    IpAddr::V4(a) => a.is_link_local(),
                };
                if r.table == RT_TABLE_MAIN
                    && r.scope == RT_SCOPE_LINK
                    && r.kind == 1
                    && r.dst.len > 0
                    && r.oif != Some(self.oif)
                    && !link_local
                    && !out.contains(&r.dst)
                {
                    out.push(r.dst);
                }
            }
        }
        out
    }

    /// A gateway or router: forwarding on, and the masquerade rules.
    fn forward(&mut self, cfg: &Config) -> Result<(), String> {
        let r = &cfg.routing;
        let mut keys = vec!["net.ipv4.conf.all.forwarding"];
        if cfg.ipv6.is_some() {
            keys.push("net.ipv6.conf.all.forwarding");
        }
        for key in keys {
            let path = sysctl_path(key);
            let before = std::fs::read_to_string(&path)
                .map_err(|e| format!("routes: cannot read {key}: {e}"))?;
            if before.trim() != "1" {
                std::fs::write(&path, "1")
                    .map_err(|e| format!("routes: cannot turn on {key}: {e}"))?;
                self.sysctls.push((path, before.trim().to_string()));
            }
        }
        let subnet = format!("{}/{}", cfg.subnet.0, cfg.subnet.1);
        let tap = &self.tap;
        let mut lines = Vec::new();
        if r.gateway {
            lines.push(format!("ip saddr {subnet} oifname != \"{tap}\" masquerade"));
            if let Some(p) = cfg.ipv6 {
                lines.push(format!("ip6 saddr {p}/96 oifname != \"{tap}\" masquerade"));
            }
        } else if r.masquerade {
            for p in &r.advertise {
                match p.addr {
                    IpAddr::V4(_) => lines.push(format!(
                        "ip saddr {subnet} ip daddr {p} oifname != \"{tap}\" masquerade"
                    )),
                    IpAddr::V6(_) => {
                        if let Some(v6) = cfg.ipv6 {
                            lines.push(format!(
                                "ip6 saddr {v6}/96 ip6 daddr {p} oifname != \"{tap}\" masquerade"
                            ))
                        }
                    }
                }
            }
        }
        if lines.is_empty() {
            return Ok(());
        }
        let name = nft_name(tap);
        let script = format!(
            "table inet {name}\ndelete table inet {name}\ntable inet {name} {{\n  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n    {}\n  }}\n}}\n",
            lines.join("\n    ")
        );
        nft(&script)?;
        log::info!("routes: forwarding on, masquerading in nftables table inet {name}");
        self.nft_table = Some(name);
        Ok(())
    }

    /// A subnet route another member offers: into the TAP.
    pub fn add_route(&mut self, p: Prefix) {
        let gw = match p.addr {
            IpAddr::V4(_) => Some(IpAddr::V4(self.gw4)),
            IpAddr::V6(_) => self.gw6.map(IpAddr::V6),
        };
        let (Some(nl), Some(gw)) = (self.nl.as_mut(), gw) else {
            return;
        };
        let route = Route {
            dst: p,
            table: RT_TABLE_MAIN,
            gateway: Some(gw),
            oif: self.oif,
            protocol: PROTO,
        };
        match nl.add_route(&route) {
            Ok(()) => {
                log::info!("routes: {p} into {}", self.tap);
                self.routes.push(route);
            }
            Err(e) => log::error!("routes: cannot add the route to {p}: {e}"),
        }
    }

    pub fn remove_route(&mut self, p: Prefix) {
        let Some(i) = self
            .routes
            .iter()
            .position(|r| r.dst == p && r.table == RT_TABLE_MAIN)
        else {
            return;
        };
        let route = self.routes.remove(i);
        if let Some(nl) = self.nl.as_mut() {
            let _ = nl.del_route(&route);
            log::info!("routes: {p} removed");
        }
    }

    /// Takes back everything we added, in reverse order.
    fn restore(&mut self) {
        if let Some(nl) = self.nl.as_mut() {
            for r in self.rules.drain(..).rev() {
                if let Err(e) = nl.del_rule(&r) {
                    log::warn!("routes: cannot remove rule pref {}: {e}", r.priority);
                }
            }
            for r in self.routes.drain(..).rev() {
                // Gone already if the TAP went first.
                let _ = nl.del_route(&r);
            }
        }
        if let Some(name) = self.nft_table.take() {
            if let Err(e) = nft(&format!("delete table inet {name}\n")) {
                log::warn!("{e}");
            }
        }
        for (path, before) in self.sysctls.drain(..).rev() {
            let _ = std::fs::write(&path, &before);
        }
    }
}

impl Drop for HostRouting {
    fn drop(&mut self) {
        self.restore();
    }
}

/// Runs `nft -f -` with `script`.
fn nft(script: &str) -> Result<(), String> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!("routes: cannot run nft ({e}); a gateway or router needs nftables (Debian: apt-get install nftables)")
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(script.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("routes: nft: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "routes: nft refused the rules: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}
