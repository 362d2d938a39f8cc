//! NAT types in network namespaces, made with nftables (each type's rules
//! below were checked on this kind of machine against the classification
//! they claim).
//!
//! ```text
//!         public members 198.18.0.10, .11 …            (ring members, relays)
//!                     |  bridge br0 in <prefix>pub = "internet" 198.18.0.0/16
//!        +------------+-------------+
//!   router ra wan 198.18.1.1       router rb wan 198.18.2.1     (nft NAT types)
//!        lan 198.19.1.1/24              lan 198.19.2.1/24
//!   site hosts 198.19.1.2 …         site hosts 198.19.2.2 …
//! ```
//! No namespace has a default route or a link to the root namespace: lab
//! traffic cannot leave the machine. Routers drop unsolicited traffic in
//! INPUT: otherwise a peer's punch that arrives before our host has sent
//! is taken by the router itself, its conntrack entry then clashes with
//! the host's own punch, which NAT moves to another port, and
//! port-restricted pairs fail about half the time.

use super::{err, ip, run_cmd, Lab};
use std::io;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

/// The NAT (or firewall) in front of a site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatType {
    /// Routed, no NAT, no filter.
    Open,
    /// Endpoint-independent mapping and filtering.
    FullCone,
    /// Endpoint-independent mapping, address-dependent filtering.
    Restricted,
    /// Endpoint-independent mapping, address-and-port-dependent filtering
    /// (Linux masquerade).
    PortRestricted,
    /// No NAT, a stateful firewall (address-and-port-dependent filtering).
    Firewall,
    /// Endpoint-dependent mapping (masquerade fully-random).
    Symmetric,
    /// Endpoint-dependent mapping (masquerade random).
    SymmetricRandom,
    /// Masquerade, and all UDP dropped (TCP works).
    UdpBlock,
}

impl NatType {
    pub const ALL: [NatType; 8] = [
        NatType::Open,
        NatType::FullCone,
        NatType::Restricted,
        NatType::PortRestricted,
        NatType::Firewall,
        NatType::Symmetric,
        NatType::SymmetricRandom,
        NatType::UdpBlock,
    ];

    pub fn name(self) -> &'static str {
        match self {
            NatType::Open => "open",
            NatType::FullCone => "fullcone",
            NatType::Restricted => "restricted",
            NatType::PortRestricted => "portrestricted",
            NatType::Firewall => "firewall",
            NatType::Symmetric => "symmetric",
            NatType::SymmetricRandom => "symmetric-random",
            NatType::UdpBlock => "udpblock",
        }
    }

    pub fn parse(s: &str) -> Option<NatType> {
        NatType::ALL.into_iter().find(|t| t.name() == s)
    }

    fn symmetric(self) -> bool {
        matches!(self, NatType::Symmetric | NatType::SymmetricRandom)
    }

    /// Whether a direct UDP path can form between hosts behind `a` and `b`
    /// (the recipe's verified matrix; "direct*" cells need the open side to
    /// answer the symmetric side's new port, which ringvpn does).
    pub fn can_punch(a: NatType, b: NatType) -> bool {
        use NatType::*;
        if a == UdpBlock || b == UdpBlock {
            return false;
        }
        let strict = |t: NatType| matches!(t, PortRestricted | Firewall) || t.symmetric();
        !(a.symmetric() && strict(b) || b.symmetric() && strict(a))
    }

    fn routed(self) -> bool {
        matches!(self, NatType::Open | NatType::Firewall)
    }

    /// The nft ruleset for a site with this WAN address and LAN.
    fn rules(self, wan: Ipv4Addr, lan: &str) -> String {
        use NatType::*;
        let forward_policy = if self == Open { "accept" } else { "drop" };
        let mut forward = format!(
            "chain forward {{ type filter hook forward priority filter; policy {forward_policy};\n"
        );
        if self == UdpBlock {
            forward += "    meta l4proto udp counter drop\n";
        }
        forward += "    ct state established,related accept\n    iifname \"lan\" accept\n";
        if matches!(self, FullCone | Restricted) {
            forward += "    iifname \"wan\" ct status dnat accept\n";
        }
        forward += "}\n";
        let input = "chain input { type filter hook input priority filter; policy drop;\n    \
                     iif \"lo\" accept\n    ct state established,related accept\n    \
                     iifname \"lan\" accept\n    icmp type echo-request accept\n}\n";
        let masq = match self {
            Symmetric => "masquerade fully-random",
            SymmetricRandom => "masquerade random",
            _ => "masquerade",
        };
        let postrouting = if self.routed() {
            String::new()
        } else {
            format!(
                "chain postrouting {{ type nat hook postrouting priority srcnat; policy accept;\n    \
                 oifname \"wan\" ip saddr {lan} {masq}\n}}\n"
            )
        };
        let cone = match self {
            FullCone => format!(
                "map fc {{ type inet_service : ipv4_addr . inet_service; flags dynamic,timeout; timeout 120s; size 65535; }}\n\
                 chain prerouting {{ type nat hook prerouting priority dstnat; policy accept;\n    \
                 iifname \"wan\" ip daddr {wan} dnat ip to udp dport map @fc\n}}\n\
                 chain record {{ type filter hook postrouting priority srcnat + 1; policy accept;\n    \
                 oifname \"wan\" meta l4proto udp ct status snat update @fc {{ ct reply proto-dst : ct original ip saddr . ct original proto-src }}\n    \
                 oifname \"wan\" meta l4proto udp ct status dnat ct direction reply update @fc {{ ct original proto-dst : ct reply ip saddr . ct reply proto-src }}\n}}\n"
            ),
            Restricted => format!(
                "map rc {{ type inet_service . ipv4_addr : ipv4_addr . inet_service; flags dynamic,timeout; timeout 120s; size 65535; }}\n\
                 chain prerouting {{ type nat hook prerouting priority dstnat; policy accept;\n    \
                 iifname \"wan\" ip daddr {wan} dnat ip to udp dport . ip saddr map @rc\n}}\n\
                 chain record {{ type filter hook postrouting priority srcnat + 1; policy accept;\n    \
                 oifname \"wan\" meta l4proto udp ct status snat update @rc {{ ct reply proto-dst . ip daddr : ct original ip saddr . ct original proto-src }}\n    \
                 oifname \"wan\" meta l4proto udp ct status dnat ct direction reply update @rc {{ ct original proto-dst . ip daddr : ct reply ip saddr . ct reply proto-src }}\n}}\n"
            ),
            _ => String::new(),
        };
        format!("table ip natlab {{\n{cone}{forward}{input}{postrouting}}}\n")
    }
}

/// A NAT site: its router namespace and addresses.
#[derive(Debug, Clone)]
pub struct Site {
    pub router: String,
    pub wan: Ipv4Addr,
    pub lan_gateway: Ipv4Addr,
    pub nat: NatType,
    /// Indices of its hosts in `Lab::hosts`.
    pub hosts: Vec<usize>,
}

/// A lab with public members and NAT sites.
pub struct NatLab {
    pub lab: Lab,
    /// Indices of the public members in `lab.hosts`.
    pub public: Vec<usize>,
    pub sites: Vec<Site>,
}

fn sysctl(ns: &str, kv: &str) -> io::Result<()> {
    run_cmd(Command::new("ip").args(["netns", "exec", ns, "sysctl", "-q", "-w", kv])).map(|_| ())
}

/// Whether nft can be run (the NAT lab needs it).
pub fn unavailable() -> Option<String> {
    if let Some(why) = super::unavailable() {
        return Some(why);
    }
    (!super::have("nft")).then(|| "the `nft` command (nftables) is not installed".into())
}

impl NatLab {
    /// Builds `public` members on the "internet" and one site per entry of
    /// `sites` (its NAT type and number of hosts).
    pub fn new(bin: &Path, public: usize, sites: &[(NatType, usize)]) -> io::Result<NatLab> {
        if let Some(why) = unavailable() {
            return Err(err(why));
        }
        let mut lab = Lab::empty(bin)?;
        let pubns = format!("{}pub", lab.prefix);
        lab.add_ns(&pubns)?;
        ip(&["-n", &pubns, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &pubns, "link", "set", "br0", "up"])?;
        // Frames bridged inside a namespace must not meet its IP rules.
        let _ = sysctl(&pubns, "net.bridge.bridge-nf-call-iptables=0");
        let mut nat = NatLab {
            public: Vec::new(),
            sites: Vec::new(),
            lab,
        };
        for i in 0..public {
            nat.public.push(nat.lab.hosts.len());
            let addr = Ipv4Addr::new(198, 18, 0, 10 + i as u8);
            nat.lab.add_host(&pubns, "br0", addr, 16, None)?;
        }
        for (s, &(kind, n)) in sites.iter().enumerate() {
            nat.add_site(&pubns, s, kind, n)?;
        }
        // Routed (no-NAT) sites are reached through their router.
        for s in 0..nat.sites.len() {
            if !nat.sites[s].nat.routed() {
                continue;
            }
            let (lan, via) = (
                format!("198.19.{}.0/24", s + 1),
                nat.sites[s].wan.to_string(),
            );
            let mut spots: Vec<String> = nat
                .public
                .iter()
                .map(|&h| nat.lab.hosts[h].ns.clone())
                .collect();
            spots.extend(
                (0..nat.sites.len())
                    .filter(|&o| o != s)
                    .map(|o| nat.sites[o].router.clone()),
            );
            for ns in spots {
                ip(&["-n", &ns, "route", "add", &lan, "via", &via])?;
            }
        }
        Ok(nat)
    }

    /// Drops every packet between hosts `a` and `b` at `a`'s router (a
    /// path gone dark in the middle; both still reach everyone else).
    pub fn cut(&self, a: usize, b: usize) -> io::Result<()> {
        let site = self
            .sites
            .iter()
            .find(|s| s.hosts.contains(&a))
            .ok_or_else(|| err(format!("host {a} is not behind a site's router")))?;
        let (x, y) = (self.lab.hosts[a].underlay, self.lab.hosts[b].underlay);
        for (src, dst) in [(x, y), (y, x)] {
            run_cmd(Command::new("ip").args([
                "netns",
                "exec",
                &site.router,
                "nft",
                "insert",
                "rule",
                "ip",
                "natlab",
                "forward",
                "ip",
                "saddr",
                &src.to_string(),
                "ip",
                "daddr",
                &dst.to_string(),
                "drop",
            ]))?;
        }
        Ok(())
    }

    fn add_site(&mut self, pubns: &str, s: usize, kind: NatType, n: usize) -> io::Result<()> {
        let lab = &mut self.lab;
        let router = format!("{}r{s}", lab.prefix);
        lab.add_ns(&router)?;
        let wan = Ipv4Addr::new(198, 18, 1 + s as u8, 1);
        let gw = Ipv4Addr::new(198, 19, 1 + s as u8, 1);
        let port = format!("w{s}");
        ip(&[
            "-n", &router, "link", "add", "wan", "type", "veth", "peer", "name", &port, "netns",
            pubns,
        ])?;
        ip(&["-n", pubns, "link", "set", &port, "master", "br0"])?;
        ip(&["-n", pubns, "link", "set", &port, "up"])?;
        ip(&[
            "-n",
            &router,
            "addr",
            "add",
            &format!("{wan}/16"),
            "dev",
            "wan",
        ])?;
        ip(&["-n", &router, "link", "set", "wan", "up"])?;
        ip(&["-n", &router, "link", "add", "lan", "type", "bridge"])?;
        ip(&[
            "-n",
            &router,
            "addr",
            "add",
            &format!("{gw}/24"),
            "dev",
            "lan",
        ])?;
        ip(&["-n", &router, "link", "set", "lan", "up"])?;
        for kv in [
            "net.ipv4.ip_forward=1",
            "net.ipv4.conf.all.rp_filter=1",
            "net.ipv4.conf.all.send_redirects=0",
        ] {
            sysctl(&router, kv)?;
        }
        let _ = sysctl(&router, "net.bridge.bridge-nf-call-iptables=0");
        let mut hosts = Vec::new();
        for k in 0..n {
            hosts.push(lab.hosts.len());
            let addr = Ipv4Addr::new(198, 19, 1 + s as u8, 2 + k as u8);
            lab.add_host(&router, "lan", addr, 24, Some(gw))?;
        }
        let rules = lab.dir.join(format!("nat{s}.nft"));
        std::fs::write(&rules, kind.rules(wan, &format!("198.19.{}.0/24", s + 1)))?;
        run_cmd(
            Command::new("ip")
                .args(["netns", "exec", &router, "nft", "-f"])
                .arg(&rules),
        )?;
        self.sites.push(Site {
            router,
            wan,
            lan_gateway: gw,
            nat: kind,
            hosts,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recipe_matrix() {
        use NatType::*;
        assert!(NatType::can_punch(PortRestricted, PortRestricted));
        assert!(NatType::can_punch(Open, Symmetric));
        assert!(NatType::can_punch(FullCone, SymmetricRandom));
        assert!(!NatType::can_punch(Symmetric, PortRestricted));
        assert!(!NatType::can_punch(Firewall, Symmetric));
        assert!(!NatType::can_punch(Symmetric, SymmetricRandom));
        assert!(!NatType::can_punch(UdpBlock, Open));
        assert_eq!(NatType::parse("fullcone"), Some(FullCone));
        // Every rule set names its table and, for NATs, masquerades.
        for t in NatType::ALL {
            let r = t.rules(Ipv4Addr::new(198, 18, 1, 1), "198.19.1.0/24");
            assert!(r.starts_with("table ip natlab {"));
            assert_eq!(r.contains("masquerade"), !t.routed(), "{t:?}");
        }
    }
}
