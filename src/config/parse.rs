//! Reading the configuration file: a line loop, one method per section
//! that takes a key, and `finish`, where the defaults and checks that
//! depend on several keys are applied. Every error names its line.

use super::{
    parse_cidr, Config, ConfigError, DEFAULT_MAX_PEERS, DEFAULT_MTU, DEFAULT_OVERLAY_MTU,
    DEFAULT_PORT, MAX_MTU, MIN_MTU,
};
use crate::crypto::NodeKey;
use crate::net::Prefix;
use crate::node::PeerConfig;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

mod networks;
use networks::{NETWORK_KEYS, VPN_KEYS};

/// A [peer] section being read: its first line, name, key, endpoint.
#[derive(Default)]
struct PeerDraft {
    line: usize,
    name: Option<String>,
    key: Option<NodeKey>,
    endpoint: Option<SocketAddr>,
    routes: Vec<Prefix>,
}

#[derive(PartialEq)]
enum Section {
    None,
    Node,
    Peer,
    Firewall,
    /// `[network NAME]`: the last of `Draft::networks`.
    Network,
}

/// What the file said so far, before the defaults that depend on other
/// keys (the MTU and subnet on the mode, the IPv6 prefix on the name).
struct Draft {
    /// Relative paths are relative to the file's directory.
    base: PathBuf,
    key_file: Option<PathBuf>,
    listen: SocketAddr,
    tap: String,
    address: Option<(Ipv4Addr, u8)>,
    /// The line `address` was on, for errors found at the end.
    address_line: usize,
    auto_address: bool,
    mtu: Option<u16>,
    network: String,
    /// `network =` was given (otherwise a certificate's network is taken).
    network_given: bool,
    /// `name =`: this member's name where no certificate gives one.
    name: Option<String>,
    subnet: Option<(Ipv4Addr, u8)>,
    /// `None`: auto; `Some(None)`: off.
    ipv6: Option<Option<Ipv6Addr>>,
    dhcp: bool,
    tcp: bool,
    cipher: super::Cipher,
    offload: super::Offload,
    control: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    fwmark: Option<u32>,
    metrics: Option<SocketAddr>,
    log: String,
    keepalive: Option<u16>,
    relay_kib: u16,
    ondemand: u16,
    ondemand_idle: u32,
    max_peers: u16,
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    revocations: Option<PathBuf>,
    overlay: bool,
    /// `overlay =` was given (else certificate mode without `[peer]`s
    /// means the overlay: a CA's members find each other through it).
    overlay_set: bool,
    bootstrap: Vec<SocketAddr>,
    bootstrap_names: Vec<String>,
    peers: Vec<PeerDraft>,
    routing: super::Routing,
    /// The line of the first routing key, for errors found at the end.
    routing_line: usize,
    firewall: Vec<crate::firewall::Rule>,
    firewall_line: usize,
    /// `[public]` was the section (sub-ring mode), on this line.
    public_line: usize,
    node_line: usize,
    /// `[network NAME]` sections: name, line, their drafts.
    networks: Vec<(String, usize, Draft)>,
}

pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    parse_as(path, text, true)
}

/// A config for a node embedded in another program (the C API): the
/// program may hand over the private key itself, so `key = FILE` is
/// optional (an empty path when absent).
pub fn parse_embedded(path: &Path, text: &str) -> Result<Config, ConfigError> {
    parse_as(path, text, false)
}

fn parse_as(path: &Path, text: &str, need_key: bool) -> Result<Config, ConfigError> {
    let err = |line: usize, msg: String| ConfigError {
        file: path.to_path_buf(),
        line,
        msg,
    };
    let mut draft = Draft::new(path.parent().unwrap_or(Path::new(".")));
    let mut section = Section::None;
    // Keys seen, by section (a later one would silently win); each
    // [peer] is a section of its own.
    let mut seen: std::collections::HashMap<(usize, String), usize> = Default::default();
    let mut scope = 0;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            scope = match line {
                "[node]" | "[public]" => 1,
                "[firewall]" => 2,
                _ => n + 2,
            };
            if let Some(name) = line
                .strip_prefix("[network ")
                .and_then(|r| r.strip_suffix(']'))
            {
                let name = name.trim();
                if !crate::vpn::name::valid(name) || name.len() > 32 {
                    return Err(err(n, format!("invalid network name {name:?}: expected letters, digits and inner hyphens, at most 32")));
                }
                if let Some((_, first, _)) = draft.networks.iter().find(|(x, ..)| x == name) {
                    return Err(err(
                        n,
                        format!("[network {name}] given twice (first on line {first})"),
                    ));
                }
                let mut d = Draft::new(path.parent().unwrap_or(Path::new(".")));
                d.network = name.to_string();
                d.network_given = true;
                d.tap = format!("rv-{name}").chars().take(15).collect();
                draft.networks.push((name.to_string(), n, d));
                section = Section::Network;
                continue;
            }
            section = match line {
                "[node]" | "[public]" => {
                    if draft.public_line + draft.node_line != 0
                        && (line == "[public]") == (draft.node_line != 0)
                    {
                        return Err(err(n, "[node] and [public] both given: [public] is the daemon's section in sub-ring mode, [node] otherwise".into()));
                    }
                    if line == "[public]" {
                        draft.public_line = n;
                    } else {
                        draft.node_line = n;
                    }
                    Section::Node
                }
                "[firewall]" => {
                    draft.firewall_line = n;
                    Section::Firewall
                }
                "[peer]" => {
                    draft.peers.push(PeerDraft {
                        line: n,
                        ..PeerDraft::default()
                    });
                    Section::Peer
                }
                _ => {
                    return Err(err(
                        n,
                        format!("unknown section {line} (expected [node], [peer], [firewall], [public] or [network NAME])"),
                    ))
                }
            };
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(err(n, format!("expected `key = value`, found {line:?}")));
        };
        let (k, v) = (k.trim(), v.trim());
        // Lists may be given over several lines.
        if !matches!(k, "bootstrap" | "inbound") {
            if let Some(first) = seen.insert((scope, k.to_string()), n) {
                return Err(err(n, format!("{k} given twice (first on line {first})")));
            }
        }
        let taken = match section {
            Section::Node if draft.public_line != 0 && VPN_KEYS.contains(&k) => {
                return Err(err(n, format!("{k} is a network's: in [public] there is no TAP (put it in a [network NAME] section)")));
            }
            Section::Network if !NETWORK_KEYS.contains(&k) => {
                let msg = if Draft::new(Path::new("."))
                    .node(k, v, n)
                    .is_ok_and(|known| known)
                {
                    format!("{k} is the daemon's: put it in [public]")
                } else {
                    format!("unknown key {k}")
                };
                return Err(err(n, msg));
            }
            Section::Network => draft
                .networks
                .last_mut()
                .expect("in [network]")
                .2
                .node(k, v, n),
            Section::Node => draft.node(k, v, n),
            Section::Peer => draft.peer(k, v),
            Section::Firewall => draft.firewall(k, v),
            Section::None => return Err(err(n, format!("{k} outside a section"))),
        };
        match taken {
            Ok(true) => {}
            Ok(false) => return Err(err(n, format!("unknown key {k}"))),
            Err(what) => return Err(err(n, format!("invalid {k} {v:?}: expected {what}"))),
        }
    }
    let public = draft.public_line;
    let networks = networks::finish(&mut draft, path, need_key)?;
    let section = if public != 0 { "[public]" } else { "[node]" };
    let mut cfg = draft
        .finish(need_key, section)
        .map_err(|(line, msg)| err(line, msg))?;
    cfg.networks = networks;
    cfg.source = path.to_path_buf();
    Ok(cfg)
}

/// `PREFIX[, PREFIX …]`, each a network (no host bits set).
fn prefixes(v: &str) -> Result<Vec<Prefix>, String> {
    let wrong = "PREFIX[, PREFIX …] naming networks, e.g. 198.19.5.0/24, 0.0.0.0/0";
    let mut out = Vec::new();
    for part in v.split(',').map(str::trim) {
        let p = Prefix::parse(part)
            .filter(Prefix::is_network)
            .ok_or(wrong)?;
        if !out.contains(&p) {
            out.push(p);
        }
    }
    if out.is_empty() || out.len() > crate::routes::record::MAX_PREFIXES {
        return Err(wrong.into());
    }
    Ok(out)
}

/// `HOST:PORT` with a DNS name for a host (letters, digits, `-`, `.`).
fn host_port(v: &str) -> bool {
    let Some((host, port)) = v.rsplit_once(':') else {
        return false;
    };
    port.parse::<u16>().is_ok_and(|p| p > 0)
        && !host.is_empty()
        && host.len() <= 253
        && !host.starts_with(['-', '.'])
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// `on`/`off` and their usual spellings.
fn on_off(v: &str) -> Result<bool, String> {
    match v {
        "on" | "yes" | "true" => Ok(true),
        "off" | "no" | "false" => Ok(false),
        _ => Err("on or off".into()),
    }
}

impl Draft {
    fn new(base: &Path) -> Draft {
        Draft {
            base: base.to_path_buf(),
            key_file: None,
            listen: SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)),
            tap: String::from("ringvpn0"),
            address: None,
            address_line: 0,
            auto_address: false,
            mtu: None,
            network: String::from("ringvpn"),
            network_given: false,
            name: None,
            subnet: None,
            ipv6: None,
            dhcp: false,
            tcp: true,
            cipher: super::Cipher::Auto,
            offload: super::Offload::ALL,
            state_dir: None,
            control: None,
            fwmark: None,
            metrics: None,
            log: "info".into(),
            keepalive: None,
            relay_kib: crate::overlay::DEFAULT_RELAY_KIB,
            ondemand: crate::node::ondemand::THRESHOLD,
            ondemand_idle: crate::node::ondemand::IDLE.as_secs() as u32,
            max_peers: DEFAULT_MAX_PEERS,
            ca: None,
            cert: None,
            revocations: None,
            overlay: false,
            overlay_set: false,
            bootstrap: Vec::new(),
            bootstrap_names: Vec::new(),
            peers: Vec::new(),
            routing: super::Routing::default(),
            routing_line: 0,
            firewall: Vec::new(),
            firewall_line: 0,
            public_line: 0,
            node_line: 0,
            networks: Vec::new(),
        }
    }

    /// A `[node]` key on line `n`: false if there is no such key, the
    /// expected form if the value is wrong.
    fn node(&mut self, k: &str, v: &str, n: usize) -> Result<bool, String> {
        let path = || self.base.join(v);
        match k {
            "key" => self.key_file = Some(path()),
            "listen" => self.listen = v.parse().map_err(|_| "ADDRESS:PORT")?,
            "tap" => {
                if v.is_empty() || v.len() > 15 || v.contains('/') {
                    return Err("an interface name of 1 to 15 characters".into());
                }
                self.tap = v.to_string();
            }
            "address" => {
                self.address_line = n;
                if v == "auto" {
                    self.auto_address = true;
                } else {
                    self.address = Some(
                        parse_cidr(v)
                            .or_else(|| Some((v.parse().ok()?, 0)))
                            .ok_or("IPV4/PREFIX, e.g. 100.64.0.10/10, or auto")?,
                    );
                }
            }
            "mtu" => {
                self.mtu = Some(
                    v.parse()
                        .ok()
                        .filter(|m| (MIN_MTU..=MAX_MTU).contains(m))
                        .ok_or_else(|| format!("a number from {MIN_MTU} to {MAX_MTU}"))?,
                )
            }
            "network" => {
                if v.is_empty() || v.len() > 64 || !v.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err("a name of 1 to 64 printable characters".into());
                }
                self.network = v.to_string();
                self.network_given = true;
            }
            "name" => {
                if !crate::vpn::name::valid(v) {
                    return Err("a name of letters, digits and inner hyphens, at most 63 (it is a DNS label)".into());
                }
                self.name = Some(v.to_string());
            }
            "subnet" => {
                self.subnet = Some(
                    parse_cidr(v)
                        .filter(|(_, p)| (8..=30).contains(p))
                        .ok_or("IPV4/PREFIX with a prefix of 8 to 30")?,
                )
            }
            "ipv6" => {
                self.ipv6 = match v {
                    "auto" => None,
                    "off" => Some(None),
                    _ => {
                        let wrong = "auto, off or an IPv6 /96 prefix";
                        let (ip, p) = v.split_once('/').unwrap_or((v, "96"));
                        let ip: Ipv6Addr = ip.parse().map_err(|_| wrong)?;
                        if p != "96" {
                            return Err(wrong.into());
                        }
                        Some(Some(ip))
                    }
                }
            }
            "tcp" => self.tcp = on_off(v)?,
            "offload" => self.offload = super::Offload::parse(v)?,
            "cipher" => {
                self.cipher = match v {
                    "auto" => super::Cipher::Auto,
                    "chacha20-poly1305" => super::Cipher::ChaCha20Poly1305,
                    "aes-256-gcm" => super::Cipher::Aes256Gcm,
                    _ => return Err("auto, chacha20-poly1305 or aes-256-gcm".into()),
                }
            }
            "dhcp" => self.dhcp = on_off(v)?,
            "overlay" => {
                self.overlay = on_off(v)?;
                self.overlay_set = true;
            }
            "keepalive" => {
                self.keepalive = Some(
                    v.parse()
                        .ok()
                        .filter(|s| (1..=60).contains(s))
                        .ok_or("seconds from 1 to 60")?,
                )
            }
            "relay" => self.relay_kib = v.parse().map_err(|_| "KiB/s from 0 to 65535")?,
            "ondemand" => {
                self.ondemand = v.parse().map_err(|_| "a packet count (0 turns it off)")?
            }
            "max-peers" => {
                self.max_peers = v
                    .parse()
                    .ok()
                    .filter(|n| *n >= 16)
                    .ok_or("a count from 16 to 65535")?
            }
            "ondemand-idle" => {
                self.ondemand_idle = v
                    .parse()
                    .ok()
                    .filter(|s| *s >= 1)
                    .ok_or("seconds (at least 1)")?
            }
            "ca" => self.ca = Some(path()),
            "cert" => self.cert = Some(path()),
            "revocations" => self.revocations = Some(path()),
            "control" => self.control = Some(path()),
            "state-dir" => self.state_dir = Some(path()),
            "fwmark" => self.fwmark = Some(v.parse().map_err(|_| "a number")?),
            "log" => match v {
                "off" | "error" | "warn" | "info" | "debug" | "trace" => self.log = v.into(),
                _ => return Err("off, error, warn, info, debug or trace".into()),
            },
            "metrics" => {
                self.metrics = Some(v.parse().map_err(|_| "ADDRESS:PORT, e.g. 127.0.0.1:9474")?)
            }
            "gateway" | "routes" | "route-masquerade" | "exit" | "exit-lan" | "accept-routes" => {
                self.routing_line = if self.routing_line == 0 {
                    n
                } else {
                    self.routing_line
                };
                let r = &mut self.routing;
                match k {
                    "gateway" => r.gateway = on_off(v)?,
                    "routes" => r.advertise = prefixes(v)?,
                    "route-masquerade" => r.masquerade = on_off(v)?,
                    "exit" => {
                        r.exit = match v {
                            "off" => crate::routes::Exit::Off,
                            "auto" => crate::routes::Exit::Auto,
                            "" => return Err("off, auto, a member's name or virtual IPv4".into()),
                            name => crate::routes::Exit::Named(name.to_string()),
                        }
                    }
                    "exit-lan" => {
                        r.exit_lan = match v {
                            "allow" => true,
                            "deny" => false,
                            _ => return Err("allow or deny".into()),
                        }
                    }
                    _ => r.accept = on_off(v)?,
                }
            }
            "bootstrap" => {
                for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    match part.parse() {
                        Ok(ep) => self.bootstrap.push(ep),
                        Err(_) if host_port(part) => self.bootstrap_names.push(part.into()),
                        Err(_) => return Err("ADDRESS:PORT or HOST:PORT[, …]".into()),
                    }
                }
                self.overlay = true;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// A `[peer]` key (in the last section opened).
    fn peer(&mut self, k: &str, v: &str) -> Result<bool, String> {
        let peer = self.peers.last_mut().expect("in [peer]");
        match k {
            "name" => peer.name = Some(v.to_string()),
            "public-key" => {
                peer.key = Some(NodeKey::from_base64(v).ok_or("a base64 Ed25519 public key")?)
            }
            "endpoint" => peer.endpoint = Some(v.parse().map_err(|_| "ADDRESS:PORT")?),
            "routes" => peer.routes = prefixes(v)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// A `[firewall]` key: `inbound = PROTO PORT WHO`, once per rule.
    fn firewall(&mut self, k: &str, v: &str) -> Result<bool, String> {
        match k {
            "inbound" => self.firewall.push(crate::firewall::Rule::parse(v)?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The defaults and checks that depend on several keys. Errors are
    /// (line, message); line 0 is the file as a whole.
    fn finish(mut self, need_key: bool, section: &str) -> Result<Config, (usize, String)> {
        let key_file = match self.key_file.take() {
            Some(f) => f,
            None if !need_key => PathBuf::new(),
            None => return Err((0, format!("{section} needs `key = FILE`"))),
        };
        if self.ca.is_some() != self.cert.is_some() {
            return Err((
                0,
                "certificate mode needs both `ca = FILE` and `cert = FILE`".into(),
            ));
        }
        if self.revocations.is_some() && self.ca.is_none() {
            return Err((
                0,
                "`revocations` needs certificate mode (`ca`, `cert`)".into(),
            ));
        }
        if !self.overlay_set && self.ca.is_some() && self.cert.is_some() && self.peers.is_empty() {
            self.overlay = true;
        }
        let mut peers = Vec::new();
        let mut peer_routes = Vec::new();
        for p in self.peers {
            let key = p
                .key
                .ok_or((p.line, "[peer] needs `public-key`".to_string()))?;
            let name = p.name.unwrap_or_else(|| key.to_base64()[..8].to_string());
            if !p.routes.is_empty() {
                peer_routes.push((key, p.routes));
            }
            peers.push(PeerConfig {
                name,
                key,
                endpoint: p.endpoint,
            });
        }
        let tap = self.tap;
        let control = self.control.unwrap_or_else(|| super::default_control(&tap));
        let peer_cache = self
            .state_dir
            .unwrap_or_else(|| PathBuf::from(super::DEFAULT_STATE_DIR))
            .join(format!("{}.peers", super::instance(&tap)));
        // The virtual network (overlay mode): the subnet is given, or that
        // of a static address with a prefix, or the default 100.64.0.0/10.
        let subnet = match (self.subnet, self.address) {
            (Some(s), _) => s,
            (None, Some((ip, p))) if p >= 8 => (ip, p),
            _ => (Ipv4Addr::new(100, 64, 0, 0), 10),
        };
        let mut auto_address = self.auto_address;
        if self.overlay {
            if let Some((ip, p)) = self.address {
                let vpn = crate::vpn::VpnConfig {
                    subnet,
                    ..crate::vpn::VpnConfig::new(&self.network)
                };
                if !vpn.assignable(ip) || (p != 0 && p != subnet.1) {
                    return Err((
                        self.address_line,
                        format!(
                            "address {ip} is not a host address of the subnet {}/{} (the first address, {}, is the virtual router's)",
                            subnet.0,
                            subnet.1,
                            vpn.gateway()
                        ),
                    ));
                }
            }
            if self.address.is_none() && !auto_address && !self.dhcp {
                auto_address = true;
            }
        } else if auto_address || self.dhcp {
            let n = if auto_address { self.address_line } else { 0 };
            return Err((
                n,
                "`address = auto` and `dhcp` need the overlay (`overlay = on` or a bootstrap)"
                    .into(),
            ));
        }
        if self.firewall_line != 0 && !self.overlay {
            return Err((
                self.firewall_line,
                "[firewall] needs the overlay (`overlay = on` or a bootstrap)".into(),
            ));
        }
        if self.routing_line != 0 && !self.overlay {
            return Err((
                self.routing_line,
                "routes and exits need the overlay (`overlay = on` or a bootstrap)".into(),
            ));
        }
        if self.routing.gateway && self.routing.exit != crate::routes::Exit::Off {
            return Err((
                self.routing_line,
                "a gateway (`gateway = on`) cannot also use an exit (`exit`)".into(),
            ));
        }
        let address = self
            .address
            .map(|(ip, p)| (ip, if p == 0 { subnet.1 } else { p }));
        let ipv6_auto = self.ipv6.is_none();
        let ipv6 = match self.ipv6 {
            None => Some(crate::vpn::default_ipv6_prefix(&self.network)),
            Some(p) => p,
        };
        let mtu = self.mtu.unwrap_or(if self.overlay {
            DEFAULT_OVERLAY_MTU
        } else {
            DEFAULT_MTU
        });
        Ok(Config {
            key_file,
            listen: self.listen,
            tap,
            address,
            auto_address,
            mtu,
            network: self.network,
            network_given: self.network_given,
            name: self.name,
            subnet,
            ipv6,
            ipv6_auto,
            dhcp: self.dhcp,
            tcp: self.tcp,
            cipher: self.cipher,
            offload: self.offload,
            control,
            fwmark: self.fwmark,
            metrics: self.metrics,
            log: self.log,
            peer_cache,
            keepalive: self.keepalive,
            relay_kib: self.relay_kib,
            ondemand: self.ondemand,
            ondemand_idle: self.ondemand_idle,
            max_peers: self.max_peers,
            ca: self.ca,
            cert: self.cert,
            revocations: self.revocations,
            overlay: self.overlay,
            bootstrap: self.bootstrap,
            bootstrap_names: self.bootstrap_names,
            peers,
            peer_routes,
            routing: self.routing,
            firewall: self.firewall,
            source: PathBuf::new(),
            networks: Vec::new(),
        })
    }
}
