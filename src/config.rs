//! The daemon's configuration file.
//!
//! ```text
//! # Lines are `key = value`; `#` starts a comment. Sections: [node], [peer].
//! [node]
//! key      = node.key            # private key file (mode 0600), relative to this file
//! listen   = 0.0.0.0:5140        # UDP address to bind
//! tap      = ringvpn0            # TAP device name
//! address  = 100.64.0.10/10      # virtual IPv4 address and prefix (overlay: or `auto`)
//! mtu      = 1400                # TAP MTU (default 1400; 1360 in overlay mode)
//! control  = /run/ringvpn/ringvpn0.sock
//! fwmark   = 51820               # optional SO_MARK on the UDP socket
//! overlay  = on                  # join the ring overlay (implied by bootstrap)
//! bootstrap = 198.18.0.10:5140   # any member(s), comma-separated (HOST:PORT too)
//! network  = ringvpn             # overlay: the virtual network's name
//! subnet   = 100.64.0.0/10       # overlay: its IPv4 range
//! ipv6     = auto                # overlay: auto (a ULA /96 from the name), off, or PREFIX/96
//! dhcp     = off                 # overlay: answer the host's DHCP with our address
//! tcp      = on                  # also link over TCP on the listen address (UDP-hostile networks)
//! keepalive = 5                  # seconds between pings on an idle link (overlay default 5,
//!                                # static 10: below the 30 s UDP timeout of common NATs)
//! relay    = 16384               # overlay: KiB/s we relay for others' tunnel edges (0: never)
//! ondemand = 8                   # overlay: VPN packets to a peer within 2 s that bring a
//!                                # direct link (0: never)
//! ondemand-idle = 60             # overlay: seconds without packets before it is let go
//! max-peers = 1024               # members we hold a session with at once (each ~2.6 KiB)
//! ca       = ca.crt              # certificate mode: trust this group CA (a file may hold
//!                                # two CA certificates during a rollover)
//! cert     = node.crt            # certificate mode: our certificate (needs `ca`)
//! revocations = revoked.crl      # certificate mode: the CA's revocation list (re-read
//!                                # when it changes)
//!
//! [peer]                         # one section per peer
//! name       = b
//! public-key = <base64 from `ringvpn pubkey`>
//! endpoint   = 198.18.0.2:5140   # optional: a peer without one waits to be contacted
//! ```
//! Every mistake is reported as `FILE:LINE: what is wrong`.

mod parse;

pub use parse::{parse, parse_embedded};

use crate::crypto::Seed;
use crate::node::PeerConfig;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

pub const DEFAULT_PORT: u16 = 5140;
/// 1400 keeps the outer datagram within a 1500-byte underlay even over IPv6:
/// 1400 (IP packet) + 14 (Ethernet header inside) + 32 (link header and tag)
/// + 8 (UDP) + 40 (IPv6) = 1494.
pub const DEFAULT_MTU: u16 = 1400;
pub use crate::vpn::DEFAULT_OVERLAY_MTU;
/// MTU bounds: IPv4's minimum, and what a pool slot can hold.
pub const MIN_MTU: u16 = 576;
pub const MAX_MTU: u16 = 1800;

/// Members a node holds a session with at once, unless `max-peers` says
/// otherwise: a node many members talk to (a file server, a gateway)
/// needs hundreds; each costs ~2.6 KiB (2.6 MiB in all).
pub const DEFAULT_MAX_PEERS: u16 = 1024;

#[derive(Debug, Clone)]
pub struct Config {
    /// The file this came from (a reload reads it again).
    pub source: PathBuf,
    pub key_file: PathBuf,
    pub listen: SocketAddr,
    pub tap: String,
    /// A static virtual address (and prefix).
    pub address: Option<(Ipv4Addr, u8)>,
    /// `address = auto`: claim a free one (overlay mode).
    pub auto_address: bool,
    pub mtu: u16,
    /// Overlay mode: the virtual network's name, range, IPv6 /96 prefix
    /// (`None`: off) and whether to serve DHCP.
    pub network: String,
    /// `network =` was given; otherwise certificate mode takes the
    /// certificate's network.
    pub network_given: bool,
    /// This member's name (`name =`; in certificate mode, the
    /// certificate's): shown in status and registered in DNS.
    pub name: Option<String>,
    pub subnet: (Ipv4Addr, u8),
    pub ipv6: Option<Ipv6Addr>,
    /// `ipv6 = auto` (the prefix follows the network's name).
    pub ipv6_auto: bool,
    pub dhcp: bool,
    /// Also listen for (and link over) TCP on the listen address, for
    /// networks that drop UDP.
    pub tcp: bool,
    /// Which AEAD this node offers and accepts in handshakes.
    pub cipher: Cipher,
    /// Which kernel offloads the shell may use.
    pub offload: Offload,
    pub control: PathBuf,
    /// SO_MARK for the UDP socket (policy routing, e.g. to keep tunnel
    /// traffic out of a full-tunnel route); `None` leaves it unset.
    pub fwmark: Option<u32>,
    /// `metrics = ADDRESS:PORT`: serve GET /metrics (Prometheus text) there.
    pub metrics: Option<SocketAddr>,
    /// The peer cache: endpoints of recently linked members, extra
    /// bootstraps after a restart (`state-dir = DIR`: DIR/INSTANCE.peers).
    pub peer_cache: PathBuf,
    /// `log = LEVEL` (off, error, warn, info, debug, trace; default
    /// info): the daemon's log level when RUST_LOG is not set.
    pub log: String,
    /// Seconds between pings on an idle link (`None`: the mode's default).
    pub keepalive: Option<u16>,
    /// KiB/s relayed for others' tunnel edges (0: never).
    pub relay_kib: u16,
    /// On-demand links: packets within 2 s (0: off), and idle seconds.
    pub ondemand: u16,
    pub ondemand_idle: u32,
    /// Members with a session at once (each costs ~2.6 KiB).
    pub max_peers: u16,
    /// Certificate mode: the CA certificate file(s), our certificate, and
    /// the revocation list file (see docs/SECURITY.md).
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub revocations: Option<PathBuf>,
    /// Join the ring overlay (an open overlay: any key may link, until
    /// certificates arrive).
    pub overlay: bool,
    /// Endpoints of any overlay members to join through.
    pub bootstrap: Vec<SocketAddr>,
    /// Bootstraps given by name (`HOST:PORT`): resolved by the shell at
    /// start, and again while no bootstrap answers.
    pub bootstrap_names: Vec<String>,
    pub peers: Vec<PeerConfig>,
    /// Static-key mode: what each listed peer may route (`[peer] routes`).
    pub peer_routes: Vec<(crate::crypto::NodeKey, Vec<crate::net::Prefix>)>,
    pub routing: Routing,
    /// `[firewall] inbound = …` rules, in order (docs/ROUTES.md).
    pub firewall: Vec<crate::firewall::Rule>,
    /// Sub-ring mode (docs/SUBRINGS.md): the `[network NAME]` sections.
    /// Then the rest of this config is the public ring's node (`[public]`)
    /// and has no TAP of its own.
    pub networks: Vec<NetworkConfig>,
}

/// A `[network NAME]` section: a private ring of the network's members
/// over the public one, with its own key, certificate, TAP and VPN.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    pub name: String,
    /// The section's line (for errors found later, e.g. a key file).
    pub line: usize,
    /// The network's node, as a `[node]` section would describe it.
    pub cfg: Config,
}

/// Exit gateways and subnet routes (docs/ROUTES.md).
#[derive(Debug, Clone, PartialEq)]
pub struct Routing {
    /// `gateway = on`: carry members' internet traffic (advertises
    /// 0.0.0.0/0, and ::/0 with IPv6), with source NAT.
    pub gateway: bool,
    /// `routes = …`: LAN prefixes behind this member.
    pub advertise: Vec<crate::net::Prefix>,
    /// `route-masquerade`: members' traffic into those LANs leaves with
    /// this member's LAN address (on by default: LAN hosts need no route
    /// back).
    pub masquerade: bool,
    pub exit: crate::routes::Exit,
    /// `exit-lan = allow`: the local LAN stays reachable outside the exit.
    pub exit_lan: bool,
    /// `accept-routes`: use other members' subnet routes.
    pub accept: bool,
}

impl Default for Routing {
    fn default() -> Routing {
        Routing {
            gateway: false,
            advertise: Vec::new(),
            masquerade: true,
            exit: crate::routes::Exit::Off,
            exit_lan: false,
            accept: true,
        }
    }
}

/// A configuration error, located in its file.
#[derive(Debug)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 0 when the problem is the file as a whole.
    pub line: usize,
    pub msg: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.msg)
        } else {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.msg)
        }
    }
}

impl std::error::Error for ConfigError {}

pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        line: 0,
        msg: format!("cannot read: {e}"),
    })?;
    parse(path, &text)
}

/// Parses `address/prefix`.
pub fn parse_cidr(v: &str) -> Option<(Ipv4Addr, u8)> {
    let (ip, prefix) = v.split_once('/')?;
    let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32)?;
    Some((ip.parse().ok()?, prefix))
}

impl Config {
    /// The link timers: the mode's defaults, with `keepalive` if given (a
    /// link is dead after about 2.4 missed pings' worth of silence).
    pub fn timers(&self) -> crate::node::Timers {
        let mut t = if self.overlay {
            crate::node::Timers::overlay_links()
        } else {
            crate::node::Timers::default()
        };
        if let Some(k) = self.keepalive {
            let k = std::time::Duration::from_secs(u64::from(k));
            t.keepalive_interval = k;
            t.dead_after = (k * 12 / 5).max(k + std::time::Duration::from_secs(2));
        }
        t.ondemand_idle = std::time::Duration::from_secs(u64::from(self.ondemand_idle));
        t
    }

    /// The VPN over the overlay, in overlay mode.
    pub fn vpn(&self) -> Option<crate::vpn::VpnConfig> {
        // In sub-ring mode this config is the public ring's: no VPN (each
        // network has its own).
        if !self.overlay || !self.networks.is_empty() {
            return None;
        }
        Some(crate::vpn::VpnConfig {
            network: self.network.clone(),
            subnet: self.subnet,
            address: match (self.address, self.auto_address || self.dhcp) {
                (Some((ip, _)), _) => crate::vpn::AddressMode::Static(ip),
                _ => crate::vpn::AddressMode::Auto,
            },
            ipv6: self.ipv6,
            dhcp: self.dhcp,
            mtu: self.mtu,
            firewall: self.firewall.clone(),
            name: self.name.clone(),
        })
    }

    /// What the routes policy needs (overlay mode).
    pub fn routes(&self) -> Option<crate::routes::RoutesConfig> {
        use crate::net::Prefix;
        use std::net::IpAddr;
        if !self.overlay {
            return None;
        }
        let r = &self.routing;
        let mut advertise = Vec::new();
        if r.gateway {
            advertise.push(Prefix::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0));
            if self.ipv6.is_some() {
                advertise.push(Prefix::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0));
            }
        }
        for p in &r.advertise {
            if !advertise.contains(p) {
                advertise.push(*p);
            }
        }
        let mut vpn = vec![Prefix::new(IpAddr::V4(self.subnet.0), self.subnet.1)];
        vpn.extend(self.ipv6.map(|p| Prefix::new(IpAddr::V6(p), 96)));
        Some(crate::routes::RoutesConfig {
            network: self.network.clone(),
            advertise,
            exit: r.exit.clone(),
            accept: r.accept,
            listed: self.peer_routes.clone(),
            names: self.peers.iter().map(|p| (p.key, p.name.clone())).collect(),
            vpn,
        })
    }
}

/// Reads a private key file, refusing one that others can read.
/// The control socket when the config names none: `/run/ringvpn/TAP.sock`,
/// and in a network namespace other than the host's
/// `/run/ringvpn/TAP@NETNS.sock` (NETNS: the namespace's inode), so
/// daemons with the same TAP name in two namespaces — which share
/// /run — do not meet on one path. The CLI, run in the same namespace,
/// finds the same path (as root: reading /proc/1/ns/net needs it; a user
/// who cannot gets the plain path).
pub fn default_control(tap: &str) -> PathBuf {
    PathBuf::from(format!("/run/ringvpn/{}.sock", instance(tap)))
}

/// The initial network namespace's inode (`PROC_NET_INIT_INO`, fixed
/// since Linux 5.8): what the host's namespace is when PID 1's cannot be
/// read (a sandbox's init, an unprivileged caller).
const INIT_NET: &str = "net:[4026531833]";

/// A daemon's name among others on this host: its TAP's, and in a
/// network namespace other than the host's `TAP@NETNS` (the namespace's
/// inode).
pub fn instance(tap: &str) -> String {
    let ns = |p: &str| std::fs::read_link(p).ok();
    let host = ns("/proc/1/ns/net").unwrap_or_else(|| PathBuf::from(INIT_NET));
    match (ns("/proc/self/ns/net"), Some(host)) {
        (Some(mine), Some(host)) if mine != host => {
            let id: String = mine
                .to_string_lossy()
                .chars()
                .filter(char::is_ascii_digit)
                .collect();
            format!("{tap}@{id}")
        }
        _ => tap.to_string(),
    }
}

/// Where `state-dir` is when the config names none.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/ringvpn";

pub fn load_key(path: &Path) -> Result<Seed, String> {
    use std::os::unix::fs::PermissionsExt;
    let meta =
        std::fs::metadata(path).map_err(|e| format!("{}: cannot read key: {e}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{}: private key is accessible by other users (mode {mode:04o}); run `chmod 600 {}`",
            path.display(),
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read key: {e}", path.display()))?;
    parse_key(&text).ok_or_else(|| {
        format!(
            "{}: not a ringvpn private key (expected 32 bytes of base64)",
            path.display()
        )
    })
}

/// A private key's text (one line of base64).
pub fn parse_key(text: &str) -> Option<Seed> {
    let bytes = crate::base64::decode(text.trim()).filter(|b| b.len() == 32)?;
    let mut seed = Seed([0; 32]);
    seed.0.copy_from_slice(&bytes);
    Some(seed)
}

/// Writes a new private key file with mode 0600 (refusing to overwrite).
pub fn write_new_key(path: &Path, seed: &Seed) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: cannot create key file: {e}", path.display()))?;
    writeln!(f, "{}", crate::base64::encode(&seed.0))
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "O2onvM62pC1io6jQKm8Nc2UyFXcd4kOmOsBIoYtZ2ik=";

    fn p(text: &str) -> Result<Config, String> {
        parse(Path::new("/etc/ringvpn/a.conf"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn certificate_mode_means_the_overlay_and_names_are_labels() {
        let first = p("[node]\nkey = k\nca = ca.crt\ncert = n.crt\n").unwrap();
        assert!(first.overlay && first.auto_address && !first.network_given);
        let off = p("[node]\nkey = k\nca = ca.crt\ncert = n.crt\noverlay = off\n").unwrap();
        assert!(!off.overlay);
        let listed = format!("[node]\nkey = k\nca = c\ncert = n\n[peer]\npublic-key = {KEY}\n");
        assert!(!p(&listed).unwrap().overlay);
        assert_eq!(
            p("[node]\nkey = k\nname = h-1\n").unwrap().name.as_deref(),
            Some("h-1")
        );
        let e = p("[node]\nkey = k\nname = h_1\n").unwrap_err();
        assert!(
            e.contains(":3: invalid name") && e.contains("DNS label"),
            "{e}"
        );
    }

    #[test]
    fn bootstraps_by_name_duplicates_and_the_log_level() {
        let c = p(
            "[node]\nkey = k\nbootstrap = 198.18.0.9:5140, vpn.example-1.org:5140\nlog = debug\n",
        )
        .unwrap();
        assert_eq!(c.bootstrap.len(), 1);
        assert_eq!(
            c.bootstrap_names,
            vec!["vpn.example-1.org:5140".to_string()]
        );
        assert_eq!(c.log, "debug");
        assert_eq!(p("[node]\nkey = k\n").unwrap().log, "info");
        for bad in ["-x.org:5140", "host:0", "host", "ho_st:5140", "host:99999"] {
            let e = p(&format!("[node]\nkey = k\nbootstrap = {bad}\n")).unwrap_err();
            assert!(e.contains(":3: invalid bootstrap"), "{bad}: {e}");
        }
        let e = p("[node]\nkey = k\nlog = loud\n").unwrap_err();
        assert!(
            e.contains("expected off, error, warn, info, debug or trace"),
            "{e}"
        );
        // A key given twice is refused, in [node] and in one [peer]; lists
        // may continue over lines, and two [peer]s each have a name.
        let e = p("[node]\nkey = k\nmtu = 1400\nmtu = 1300\n").unwrap_err();
        assert!(e.contains(":4: mtu given twice (first on line 3)"), "{e}");
        let ok = format!(
            "[node]\nkey = k\nbootstrap = 198.18.0.1:1\nbootstrap = 198.18.0.2:1\n[peer]\nname = a\npublic-key = {KEY}\n[peer]\nname = b\npublic-key = {KEY}\n"
        );
        assert_eq!(p(&ok).map(|c| c.bootstrap.len()), Ok(2));
        let e = p(&format!(
            "[node]\nkey = k\n[peer]\nname = a\nname = b\npublic-key = {KEY}\n"
        ))
        .unwrap_err();
        assert!(e.contains(":5: name given twice"), "{e}");
    }

    #[test]
    fn full_config() {
        let c = p(&format!(
            "# demo\n[node]\nkey = a.key\nlisten = 198.18.0.1:5000\ntap = rv0\naddress = 100.64.0.10/10\nmtu = 1300\nfwmark = 7\nbootstrap = 198.18.0.9:1, 198.18.0.8:2\n\n[peer]\nname = b\npublic-key = {KEY}\nendpoint = 198.18.0.2:5140 # b\n[peer]\npublic-key = {KEY}\n"
        ))
        .unwrap();
        assert_eq!(c.key_file, Path::new("/etc/ringvpn/a.key"));
        assert_eq!(c.listen.port(), 5000);
        assert_eq!(c.address, Some(("100.64.0.10".parse().unwrap(), 10)));
        assert_eq!(c.mtu, 1300);
        assert_eq!(c.fwmark, Some(7));
        assert!(c.overlay);
        assert_eq!(c.bootstrap.len(), 2);
        assert_eq!(c.control, Path::new("/run/ringvpn/rv0.sock"));
        assert_eq!(c.peers.len(), 2);
        assert_eq!(c.peers[0].name, "b");
        assert_eq!(c.peers[1].endpoint, None);
        assert_eq!(c.max_peers, DEFAULT_MAX_PEERS);
        let c = p("[node]\nkey = k\nmax-peers = 4096\n").unwrap();
        assert_eq!(c.max_peers, 4096);
    }

    #[test]
    fn sub_ring_mode_takes_public_and_network_sections() {
        let c = p("[public]\nkey = pub.key\nbootstrap = 198.18.0.1:5140\n\n[network office]\nkey = office.key\nca = office-ca.crt\ncert = office.crt\naddress = 100.64.1.10/24\n\n[network lab]\nkey = lab.key\ntap = rvlab\nsubnet = 100.65.0.0/16\n").unwrap();
        assert!(
            c.overlay && c.vpn().is_none(),
            "the public ring's node has no VPN"
        );
        assert_eq!(c.networks.len(), 2);
        let office = &c.networks[0];
        assert_eq!((office.name.as_str(), office.line), ("office", 5));
        assert_eq!(office.cfg.tap, "rv-office");
        assert_eq!(office.cfg.network, "office");
        assert_eq!(office.cfg.key_file, Path::new("/etc/ringvpn/office.key"));
        assert_eq!(office.cfg.subnet.1, 24);
        assert!(office.cfg.vpn().is_some());
        assert_eq!(c.networks[1].cfg.tap, "rvlab");
        assert!(c.networks[1].cfg.auto_address);
        let cases = [
            (
                "[node]\nkey = k\n[network a]\nkey = a\n",
                ":3: [network NAME] needs a [public] section",
            ),
            (
                "[public]\nkey = k\ntap = x\n",
                ":3: tap is a network's: in [public] there is no TAP",
            ),
            (
                "[public]\nkey = k\n[network a]\nkey = a\nlisten = 0.0.0.0:1\n",
                ":5: listen is the daemon's: put it in [public]",
            ),
            (
                "[public]\nkey = k\n[network a]\nkey = a\nbogus = 1\n",
                ":5: unknown key bogus",
            ),
            (
                "[public]\nkey = k\n[network a]\n",
                ":3: [network a] needs `key = FILE`",
            ),
            (
                "[public]\nkey = k\n[network a]\nkey = a\n[network a]\nkey = b\n",
                ":5: [network a] given twice (first on line 3)",
            ),
            (
                "[public]\nkey = k\n[network a b]\n",
                ":3: invalid network name \"a b\"",
            ),
            (
                "[public]\nkey = k\n[network a]\nkey = k\n",
                ":3: [network a]: its key must not be the public node's",
            ),
            (
                "[public]\nkey = k\n[network a]\nkey = a\ntap = t\n[network b]\nkey = b\ntap = t\nsubnet = 100.65.0.0/16\n",
                ":6: [network b]: tap t is another network's",
            ),
            (
                "[public]\nkey = k\n[network a]\nkey = a\naddress = 100.64.1.9/24\n[network b]\nkey = b\n",
                ":6: [network b]: its subnet 100.64.0.0/10 overlaps network a's 100.64.1.0/24",
            ),
            (
                "[public]\nkey = k\n[node]\nkey = k\n",
                ":3: [node] and [public] both given",
            ),
            (
                "[public]\nkey = k\n[network a]\nkey = a\nca = x\n",
                ":3: [network a]: certificate mode needs both",
            ),
        ];
        for (text, want) in cases {
            let got = p(text).unwrap_err();
            assert!(
                got.starts_with("/etc/ringvpn/a.conf") && got.contains(want),
                "{text:?}: {got}"
            );
        }
    }

    #[test]
    fn errors_name_file_and_line() {
        let cases = [
            (
                "[node]\nkey = k\nbogus = 1\n",
                "/etc/ringvpn/a.conf:3: unknown key bogus",
            ),
            (
                "[node]\nkey = k\nmtu = 99\n",
                "/etc/ringvpn/a.conf:3: invalid mtu \"99\"",
            ),
            (
                "[nodes]\n",
                "/etc/ringvpn/a.conf:1: unknown section [nodes]",
            ),
            ("key = k\n", "/etc/ringvpn/a.conf:1: key outside a section"),
            (
                "[node]\nlisten = x\n",
                "/etc/ringvpn/a.conf:2: invalid listen",
            ),
            ("[node]\n", "/etc/ringvpn/a.conf: [node] needs `key = FILE`"),
            (
                "[node]\nkey=k\n[peer]\nname = x\n",
                "/etc/ringvpn/a.conf:3: [peer] needs `public-key`",
            ),
            (
                "[node]\nkey=k\n[peer]\npublic-key = zz\n",
                "/etc/ringvpn/a.conf:4: invalid public-key",
            ),
            (
                "[node]\nkey=k\naddress = 100.64.0.1/33\n",
                "/etc/ringvpn/a.conf:3: invalid address",
            ),
            (
                "[node]\nkey=k\nmax-peers = 3\n",
                "/etc/ringvpn/a.conf:3: invalid max-peers",
            ),
            (
                "[node]\nkey=k\nnonsense\n",
                "/etc/ringvpn/a.conf:3: expected `key = value`",
            ),
            // Checks across keys still name the line of the key at fault.
            (
                "[node]\nkey=k\noverlay = on\n\naddress = 100.64.0.0/10\n",
                "/etc/ringvpn/a.conf:5: address 100.64.0.0 is not a host address",
            ),
            (
                "[node]\nkey=k\naddress = auto\n",
                "/etc/ringvpn/a.conf:3: `address = auto` and `dhcp` need the overlay",
            ),
            (
                "[node]\nkey=k\ncert = c\n",
                "/etc/ringvpn/a.conf: certificate mode needs both",
            ),
            (
                "[node]\nkey=k\noverlay = on\nroutes = 198.19.5.7/24\n",
                "/etc/ringvpn/a.conf:4: invalid routes \"198.19.5.7/24\": expected PREFIX",
            ),
            (
                "[node]\nkey=k\nexit = auto\n",
                "/etc/ringvpn/a.conf:3: routes and exits need the overlay",
            ),
            (
                "[node]\nkey=k\noverlay = on\ngateway = on\nexit = auto\n",
                "/etc/ringvpn/a.conf:4: a gateway (`gateway = on`) cannot also use an exit",
            ),
            (
                "[node]\nkey=k\noverlay = on\n[firewall]\ninbound = tcp 22\n",
                "/etc/ringvpn/a.conf:5: invalid inbound \"tcp 22\": expected PROTO PORT WHO",
            ),
            (
                "[node]\nkey=k\n[firewall]\ninbound = any any any\n",
                "/etc/ringvpn/a.conf:3: [firewall] needs the overlay",
            ),
        ];
        for (text, want) in cases {
            let got = p(text).unwrap_err();
            assert!(got.starts_with(want), "{got:?} should start with {want:?}");
        }
    }

    #[test]
    fn routes_and_firewall_keys() {
        let c = p(
            "[node]\nkey=k\nbootstrap = 198.18.0.1:5140\ngateway = on\nroutes = 198.19.5.0/24, 198.19.6.0/24\nroute-masquerade = off\n[firewall]\ninbound = tcp 22 group:admin\ninbound = icmp any any\n[peer]\npublic-key = IMlgEotby0lCLjxjmUITFLprAecx++jBny4DoKSxUC0=\nroutes = 198.19.0.0/16\n",
        )
        .unwrap();
        let r = c.routes().unwrap();
        let shown: Vec<String> = r.advertise.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            shown,
            ["0.0.0.0/0", "::/0", "198.19.5.0/24", "198.19.6.0/24"],
            "a gateway advertises both defaults, then its LANs"
        );
        assert!(!c.routing.masquerade && r.exit == crate::routes::Exit::Off);
        assert_eq!(c.firewall.len(), 2);
        assert_eq!(c.vpn().unwrap().firewall.len(), 2);
        assert_eq!(r.listed.len(), 1);
        let client = p("[node]\nkey=k\noverlay = on\nexit = gw-b\nexit-lan = allow\n").unwrap();
        assert_eq!(
            client.routing.exit,
            crate::routes::Exit::Named("gw-b".into())
        );
        assert!(client.routing.exit_lan && client.routing.accept);
    }

    #[test]
    fn key_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("ringvpn-key-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("k");
        let _ = std::fs::remove_file(&path);
        write_new_key(&path, &Seed([5; 32])).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(load_key(&path).unwrap().0, [5; 32]);
        assert!(
            write_new_key(&path, &Seed([6; 32])).is_err(),
            "never overwrites"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load_key(&path).unwrap_err().contains("chmod 600"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// `cipher =`: which AEAD handshakes may pick (`crypto::session`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cipher {
    /// AES-256-GCM with a peer when both CPUs have AES instructions,
    /// ChaCha20-Poly1305 otherwise.
    Auto,
    /// ChaCha20-Poly1305 always (never offers or accepts AES).
    ChaCha20Poly1305,
    /// Offers and accepts AES-256-GCM even without AES instructions (tests,
    /// or a peer set whose routers all have them but hide it).
    Aes256Gcm,
}

impl Cipher {
    /// Whether handshakes offer and accept AES-256-GCM, given whether this
    /// CPU has AES instructions.
    pub fn offers_aes(self, hardware_aes: bool) -> bool {
        match self {
            Cipher::Auto => hardware_aes,
            Cipher::ChaCha20Poly1305 => false,
            Cipher::Aes256Gcm => true,
        }
    }
}

/// `offload =`: the kernel offloads the daemon may use where the kernel
/// has them (`auto`: all; `off`: none; or a list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offload {
    /// Send trains of same-size datagrams as one (UDP_SEGMENT).
    pub udp_gso: bool,
    /// Receive such trains as one (UDP_GRO).
    pub udp_gro: bool,
    /// Take TCP (and UDP) super-frames from the TAP and cut them here.
    pub tap_tso: bool,
    /// Write runs of one TCP flow's segments to the TAP as one super-frame.
    pub tap_gro: bool,
}

impl Offload {
    pub const ALL: Offload = Offload {
        udp_gso: true,
        udp_gro: true,
        tap_tso: true,
        tap_gro: true,
    };
    pub const NONE: Offload = Offload {
        udp_gso: false,
        udp_gro: false,
        tap_tso: false,
        tap_gro: false,
    };

    /// `auto`, `off`, or a space-separated list of `udp-gso`, `udp-gro`,
    /// `tap-tso`, `tap-gro`.
    pub fn parse(v: &str) -> Result<Offload, String> {
        match v {
            "auto" => return Ok(Offload::ALL),
            "off" => return Ok(Offload::NONE),
            _ => {}
        }
        let mut o = Offload::NONE;
        for w in v.split_whitespace() {
            match w {
                "udp-gso" => o.udp_gso = true,
                "udp-gro" => o.udp_gro = true,
                "tap-tso" => o.tap_tso = true,
                "tap-gro" => o.tap_gro = true,
                _ => {
                    return Err(format!(
                        "auto, off, or a list of udp-gso, udp-gro, tap-tso and tap-gro (not {w:?})"
                    ))
                }
            }
        }
        Ok(o)
    }
}
