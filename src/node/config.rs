//! What the core needs to know to run: peers and protocol timers.

use crate::crypto::NodeKey;
use crate::overlay::OverlayConfig;
use std::net::SocketAddr;
use std::time::Duration;

/// A statically configured peer.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    pub name: String,
    pub key: NodeKey,
    pub endpoint: Option<SocketAddr>,
}

/// Protocol timers. The defaults follow WireGuard's, whose reasoning holds
/// here too; tests shrink them to exercise rekeying in virtual time.
#[derive(Debug, Clone)]
pub struct Timers {
    /// Start a new handshake when the current session is this old.
    pub rekey_after_time: Duration,
    /// ...or has sent this many messages.
    pub rekey_after_messages: u64,
    /// Never use a session older than this (bounds the damage of a key leak).
    pub reject_after_time: Duration,
    /// Ping an established link this often: measures RTT, keeps NAT mappings
    /// open (Linux drops idle unreplied UDP mappings after 30 s) and detects
    /// dead peers.
    pub keepalive_interval: Duration,
    /// A link with nothing heard for this long is re-handshaken (3 missed pings).
    pub dead_after: Duration,
    /// First handshake retransmission delay; doubles per attempt.
    pub handshake_retry_base: Duration,
    /// Cap on the retransmission delay (we keep trying static peers forever).
    pub handshake_retry_max: Duration,
    /// An on-demand link with no VPN packets sent for this long is let go.
    pub ondemand_idle: Duration,
}

impl Default for Timers {
    fn default() -> Timers {
        Timers {
            rekey_after_time: Duration::from_secs(120),
            rekey_after_messages: 1 << 60,
            reject_after_time: Duration::from_secs(180),
            keepalive_interval: Duration::from_secs(10),
            dead_after: Duration::from_secs(35),
            handshake_retry_base: Duration::from_secs(1),
            handshake_retry_max: Duration::from_secs(16),
            ondemand_idle: super::ondemand::IDLE,
        }
    }
}

impl Timers {
    /// Link timers for overlay nodes: a link idle for 5 s is pinged, one
    /// silent for 12 s (two missed pings) is dead, so a crashed neighbour
    /// is replaced well within 30 s. Pings go only over idle links, keeping
    /// the cost near one small datagram per link per 5 s.
    pub fn overlay_links() -> Timers {
        Timers {
            keepalive_interval: Duration::from_secs(5),
            dead_after: Duration::from_secs(12),
            ..Timers::default()
        }
    }
}

/// The policy knobs a running node consults (from `NodeConfig`).
pub(super) struct Settings {
    pub(super) trust_any: bool,
    pub(super) max_peers: usize,
    /// Bytes per second of others' routed data one link may have us
    /// forward (`links::TRANSIT_BYTES_PER_S`; tests set less).
    pub(super) transit_rate: u32,
    pub(super) ondemand_threshold: u16,
    pub(super) tcp_fallback: bool,
    pub(super) fast_aes: bool,
    pub(super) admin_group: String,
    pub(super) carriage: Carriage,
}

impl From<&NodeConfig> for Settings {
    fn from(cfg: &NodeConfig) -> Settings {
        Settings {
            trust_any: cfg.trust_any,
            max_peers: cfg.max_peers,
            transit_rate: super::links::TRANSIT_BYTES_PER_S,
            ondemand_threshold: cfg.ondemand_threshold,
            tcp_fallback: cfg.tcp_fallback,
            fast_aes: cfg.fast_aes,
            admin_group: cfg.admin_group.clone(),
            carriage: cfg.carriage,
        }
    }
}

/// Everything the core is built from.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub peers: Vec<PeerConfig>,
    pub timers: Timers,
    /// Packet buffers in the pool. 512 × 2 KiB = 1 MiB of address space, of
    /// which only the buffers actually in flight become resident.
    pub pool_slots: u32,
    /// Wall-clock time (µs since the Unix epoch) at `Instant::ZERO`: handshake
    /// timestamps must keep increasing across restarts.
    pub wall_origin_us: u64,
    /// Seed for protocol randomness (indices, jitter).
    pub rng_seed: u64,
    /// Join the ring overlay with these parameters (`None`: static links only).
    pub overlay: Option<OverlayConfig>,
    /// Endpoints of any members, to join through (their keys are learned).
    pub bootstrap: Vec<SocketAddr>,
    /// More bootstraps will come ([`crate::node::Node::add_bootstrap`]:
    /// names the shell resolves): the node is joining a ring, not
    /// starting one, even while `bootstrap` is empty.
    pub bootstrap_pending: bool,
    /// Our own endpoints, as advertised to the overlay.
    pub endpoints: Vec<crate::wire::endpoint::Endpoint>,
    /// Accept links from any key. An open overlay, until the certificate
    /// issue brings group membership; off for the static-peer mode.
    pub trust_any: bool,
    /// VPN packets to a routed peer within 2 s that bring an on-demand
    /// direct link (0: never).
    pub ondemand_threshold: u16,
    /// Bound on the peer table (static + dynamic).
    pub max_peers: usize,
    /// Be a VPN over the overlay (virtual IPs, DHT resolution, ARP/ND/DHCP
    /// answers); needs `overlay`. `None`: frames are switched between
    /// static peers.
    pub vpn: Option<crate::vpn::VpnConfig>,
    /// Exit gateways and subnet routes (overlay VPN mode only).
    pub routes: Option<crate::routes::RoutesConfig>,
    /// Certificate mode: the group whose members may start map-reduce
    /// tasks (`ringvpn net …`).
    pub admin_group: String,
    /// Try a node's TCP endpoints when UDP gets no answer (the shell
    /// listens on TCP too).
    pub tcp_fallback: bool,
    /// Offer and accept AES-256-GCM in handshakes (the shell sets it when
    /// this CPU has AES instructions; `crypto::session` says why).
    pub fast_aes: bool,
    /// Certificate mode: the CA(s) we trust and their revocation lists.
    /// Every peer must then present a certificate that checks out.
    pub trust: Option<crate::crypto::cert::Trust>,
    /// Our own certificate (encoded), presented in every handshake.
    pub cert: Option<Vec<u8>>,
    /// Networks the TAP device carries beyond the VPN's own subnets (the
    /// static mode's `address`, routes we install): like those subnets,
    /// never an underlay address (see `node::underlay`).
    pub tap_prefixes: Vec<crate::net::Prefix>,
    /// This node's part in sub-rings (`host`, docs/SUBRINGS.md).
    pub carriage: Carriage,
}

/// A node's part in carrying sub-rings' datagrams over the public ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Carriage {
    /// A daemon without networks: carried endpoints are refused like any
    /// address that is not an underlay address, carried datagrams dropped.
    #[default]
    None,
    /// The public node of a daemon with networks: it takes carried
    /// datagrams for its host to hand on.
    Public,
    /// A network's node (this network id): its datagrams go out tagged
    /// with the id, and what it sends to carried endpoints goes to its
    /// host to carry (`Node::poll_to_carry`).
    Network(u64),
}

impl Default for NodeConfig {
    fn default() -> NodeConfig {
        NodeConfig {
            peers: Vec::new(),
            timers: Timers::default(),
            pool_slots: 512,
            wall_origin_us: 0,
            rng_seed: 0,
            overlay: None,
            bootstrap: Vec::new(),
            bootstrap_pending: false,
            endpoints: Vec::new(),
            trust_any: false,
            trust: None,
            cert: None,
            ondemand_threshold: super::ondemand::THRESHOLD,
            max_peers: 256,
            vpn: None,
            routes: None,
            admin_group: "admin".into(),
            tcp_fallback: false,
            fast_aes: false,
            tap_prefixes: Vec::new(),
            carriage: Carriage::None,
        }
    }
}
