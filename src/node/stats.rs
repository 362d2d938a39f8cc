//! Counters. Drops are counted by reason and never logged per packet: a
//! flood of bad packets must not become a flood of log lines.

/// Why a packet or frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Shorter than its header, or lengths that do not add up.
    BadLength,
    /// Unknown protocol version.
    BadVersion,
    /// Unknown message type.
    BadType,
    /// AEAD tag or handshake signature did not verify.
    AuthFailure,
    /// A data counter seen before or too old for the window.
    Replay,
    /// A handshake init whose timestamp is not newer than the last accepted.
    HandshakeReplay,
    /// A handshake from a key that is not in the trusted set.
    UnknownPeer,
    /// A handshake init addressed to another node key.
    NotForUs,
    /// A sealed message or response for a session index we do not have.
    UnknownSession,
    /// Handshake work refused by the rate limiter.
    RateLimited,
    /// No session to the peer and the wait queue is full or timed out.
    NoSession,
    /// No known underlay endpoint for the peer.
    NoEndpoint,
    /// An output queue is full (the shell is not draining fast enough).
    QueueFull,
    /// Every pool buffer is in use.
    PoolEmpty,
    /// A frame that is too short to be Ethernet, or too large to send.
    BadFrame,
    /// The peer table is full: a new peer could not be added.
    TooManyPeers,
    /// An overlay message whose lengths, counts or mode do not parse.
    OverlayMalformed,
    /// An overlay message claiming a source it cannot be from (a
    /// connect-to-me whose key does not hash to its source, or our own
    /// address).
    OverlayForged,
    /// A connect-to-me reply to no request of ours (never sent, already
    /// answered, or timed out).
    Unsolicited,
    /// A routed message that reached its hop limit.
    HopLimit,
    /// A routed message for an exact address no node has.
    NoRoute,
    /// A sub-ring's carried datagram for a daemon that runs no networks,
    /// or more than its host has taken (see `node::carry`).
    Uncarried,
    /// A peer sent overlay messages faster than its budget.
    OverlayRateLimited,
    /// A frame for the host's link only (ARP/ND/DHCP not answered, router
    /// solicitations, MLD), or for the virtual router's own address.
    LocalOnly,
    /// An IP packet for an address outside the virtual network that no
    /// route in use covers (no exit chosen, no subnet route, or none alive).
    NotInNetwork,
    /// A packet from an outside address, from a member that is not the
    /// gateway or router we use for it (a spoofed outside source).
    OutsideSource,
    /// A member's packet for an outside address we do not route.
    NotOurRoute,
    /// No firewall rule lets it in, and it answers no flow of ours.
    FirewallDenied,
    /// A map-reduce task refused: malformed, not signed by a member
    /// allowed to start tasks, replayed, over its origin's rate, or too
    /// many at once.
    TaskRefused,
    /// An IP packet for a virtual address nobody holds.
    UnknownIp,
    /// An IP packet from a peer that does not hold its source address.
    SpoofedSource,
    /// Too many addresses being resolved, or too many packets waiting for one.
    ResolveQueueFull,
    /// A ring broadcast seen before.
    BroadcastDuplicate,
    /// A ring broadcast over its source's rate.
    BroadcastRateLimited,
    /// Tunnel traffic we would not relay: not to a node we are linked to,
    /// or over our relay budget (0: we never relay).
    RelayRefused,
    /// Certificate mode: a handshake with a bare key, no certificate.
    CertMissing,
    /// A certificate that does not parse, whose signature does not verify,
    /// or that certifies another key than the handshake's.
    CertInvalid,
    /// A certificate from a CA we do not trust.
    CertUnknownCa,
    /// A certificate outside its validity window (or its CA's).
    CertExpired,
    /// A certificate for another network.
    CertWrongNetwork,
    /// A certificate on the revocation list.
    CertRevoked,
    /// An IP packet for (or from) an address the peer's certificate does
    /// not let it hold: a member claiming someone else's address.
    ClaimNotCertified,
    /// A handshake init set aside while under load: its source has not
    /// proven its address, and got a cookie reply instead of an answer.
    CookieSent,
    /// A datagram to or from an underlay address inside our own VPN (its
    /// subnets, the TAP's address, routes we install): underlay traffic
    /// there would run through the tunnel it carries.
    UnderlayInVpn,
    /// An endpoint a peer advertised (or gossip named) inside our own
    /// VPN: never tried, never used.
    CandidateInVpn,
    /// A TCP connection refused (or a datagram for a new one dropped):
    /// every connection slot carries a link.
    TcpSlotsFull,
    /// Routed data we would forward for others over the ring, beyond the
    /// budget of the link it came on (`TRANSIT_BYTES_PER_S`).
    TransitLimited,
    /// A handshake not sent to an address nobody proved (a candidate a
    /// connect-to-me reply or gossip named): one per address per
    /// `limiter::PROBE_SPACING`, so nobody can aim our handshakes.
    ProbeLimited,
}

impl DropReason {
    /// How the node counts a refused certificate.
    pub fn of_cert(e: crate::crypto::cert::CertError) -> DropReason {
        use crate::crypto::cert::CertError;
        match e {
            CertError::Malformed | CertError::BadSignature | CertError::WrongKey => {
                DropReason::CertInvalid
            }
            CertError::UnknownCa => DropReason::CertUnknownCa,
            CertError::Expired => DropReason::CertExpired,
            CertError::WrongNetwork => DropReason::CertWrongNetwork,
            CertError::Revoked => DropReason::CertRevoked,
        }
    }

    /// How the node counts an overlay refusal.
    pub fn of_refusal(r: crate::overlay::Refused) -> DropReason {
        use crate::overlay::Refused;
        match r {
            Refused::Malformed => DropReason::OverlayMalformed,
            Refused::Forged => DropReason::OverlayForged,
            Refused::Unsolicited => DropReason::Unsolicited,
            Refused::HopLimit => DropReason::HopLimit,
            Refused::NoRoute => DropReason::NoRoute,
        }
    }

    pub const ALL: [DropReason; 48] = [
        DropReason::BadLength,
        DropReason::BadVersion,
        DropReason::BadType,
        DropReason::AuthFailure,
        DropReason::Replay,
        DropReason::HandshakeReplay,
        DropReason::UnknownPeer,
        DropReason::NotForUs,
        DropReason::UnknownSession,
        DropReason::RateLimited,
        DropReason::NoSession,
        DropReason::NoEndpoint,
        DropReason::QueueFull,
        DropReason::PoolEmpty,
        DropReason::BadFrame,
        DropReason::TooManyPeers,
        DropReason::OverlayMalformed,
        DropReason::OverlayForged,
        DropReason::Unsolicited,
        DropReason::HopLimit,
        DropReason::NoRoute,
        DropReason::Uncarried,
        DropReason::OverlayRateLimited,
        DropReason::LocalOnly,
        DropReason::NotInNetwork,
        DropReason::OutsideSource,
        DropReason::NotOurRoute,
        DropReason::FirewallDenied,
        DropReason::TaskRefused,
        DropReason::UnknownIp,
        DropReason::SpoofedSource,
        DropReason::ResolveQueueFull,
        DropReason::BroadcastDuplicate,
        DropReason::BroadcastRateLimited,
        DropReason::RelayRefused,
        DropReason::CertMissing,
        DropReason::CertInvalid,
        DropReason::CertUnknownCa,
        DropReason::CertExpired,
        DropReason::CertWrongNetwork,
        DropReason::CertRevoked,
        DropReason::ClaimNotCertified,
        DropReason::CookieSent,
        DropReason::UnderlayInVpn,
        DropReason::CandidateInVpn,
        DropReason::TcpSlotsFull,
        DropReason::TransitLimited,
        DropReason::ProbeLimited,
    ];

    /// Stable snake_case name used by `ringvpn status` and its JSON.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::BadLength => "bad_length",
            DropReason::BadVersion => "bad_version",
            DropReason::BadType => "bad_type",
            DropReason::AuthFailure => "auth_failure",
            DropReason::Replay => "replay",
            DropReason::HandshakeReplay => "handshake_replay",
            DropReason::UnknownPeer => "unknown_peer",
            DropReason::NotForUs => "not_for_us",
            DropReason::UnknownSession => "unknown_session",
            DropReason::RateLimited => "rate_limited",
            DropReason::NoSession => "no_session",
            DropReason::NoEndpoint => "no_endpoint",
            DropReason::QueueFull => "queue_full",
            DropReason::PoolEmpty => "pool_empty",
            DropReason::BadFrame => "bad_frame",
            DropReason::TooManyPeers => "too_many_peers",
            DropReason::OverlayMalformed => "overlay_malformed",
            DropReason::OverlayForged => "overlay_forged",
            DropReason::Unsolicited => "unsolicited",
            DropReason::HopLimit => "hop_limit",
            DropReason::NoRoute => "no_route",
            DropReason::Uncarried => "uncarried",
            DropReason::OverlayRateLimited => "overlay_rate_limited",
            DropReason::LocalOnly => "local_only",
            DropReason::NotInNetwork => "not_in_network",
            DropReason::OutsideSource => "outside_source",
            DropReason::NotOurRoute => "not_our_route",
            DropReason::FirewallDenied => "firewall_denied",
            DropReason::TaskRefused => "task_refused",
            DropReason::UnknownIp => "unknown_ip",
            DropReason::SpoofedSource => "spoofed_source",
            DropReason::ResolveQueueFull => "resolve_queue_full",
            DropReason::BroadcastDuplicate => "broadcast_duplicate",
            DropReason::BroadcastRateLimited => "broadcast_rate_limited",
            DropReason::RelayRefused => "relay_refused",
            DropReason::CertMissing => "cert_missing",
            DropReason::CertInvalid => "cert_invalid",
            DropReason::CertUnknownCa => "cert_unknown_ca",
            DropReason::CertExpired => "cert_expired",
            DropReason::CertWrongNetwork => "cert_wrong_network",
            DropReason::CertRevoked => "cert_revoked",
            DropReason::ClaimNotCertified => "claim_not_certified",
            DropReason::CookieSent => "cookie_sent",
            DropReason::UnderlayInVpn => "underlay_in_vpn",
            DropReason::CandidateInVpn => "candidate_in_vpn",
            DropReason::TcpSlotsFull => "tcp_slots_full",
            DropReason::TransitLimited => "transit_limited",
            DropReason::ProbeLimited => "probe_limited",
        }
    }
}

/// Node-wide counters.
#[derive(Debug, Clone)]
pub struct Stats {
    drops: [u64; DropReason::ALL.len()],
    pub handshakes_completed: u64,
    /// How long DHT operations took (metrics).
    pub dht_latency: LatencyHistogram,
    /// Routed data forwarded for others over the ring (not tunnels: those
    /// are `relayed`).
    pub transit_bytes: u64,
}

/// Upper bounds (seconds) of the DHT latency histogram's buckets.
pub const DHT_LATENCY_BUCKETS: [f64; 8] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0];

/// Latencies counted in fixed buckets (no allocation, ever).
#[derive(Debug, Clone, Default)]
pub struct LatencyHistogram {
    /// Per bucket (not cumulative); slower than the last bound count only
    /// in `count`.
    pub buckets: [u64; DHT_LATENCY_BUCKETS.len()],
    pub count: u64,
    pub sum_secs: f64,
}

impl LatencyHistogram {
    pub fn record(&mut self, d: std::time::Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = DHT_LATENCY_BUCKETS.iter().position(|&le| s <= le) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum_secs += s;
    }
}

impl Default for Stats {
    fn default() -> Stats {
        Stats {
            drops: [0; DropReason::ALL.len()],
            handshakes_completed: 0,
            dht_latency: LatencyHistogram::default(),
            transit_bytes: 0,
        }
    }
}

impl Stats {
    pub fn count(&mut self, reason: DropReason) {
        self.drops[reason as usize] += 1;
    }

    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }

    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }
}
