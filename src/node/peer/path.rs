//! A peer's link and path: the two small state machines behind "how do
//! we reach this member", written down in one place.
//!
//! **Link** — whether the overlay counts the peer as one of its links:
//!
//! ```text
//!   Down --link_up--> Up --unlink--> Down
//!                      \--close-------> Closing(since) --grace over / reopen--> Down
//!   Down (sessions left) --close--> Closing(since)
//! ```
//!
//! A closing link keeps its sessions for `CLOSE_GRACE` so that what the
//! peer sent before it heard of the close still lands; it is never linked
//! again until the grace ends or a new link to it is asked for (reopen).
//!
//! **Path** — how data reaches the peer:
//!
//! ```text
//!   Direct --route--> Routed --go_direct--> Direct
//!     |  \                 \
//!     |   enter_tunnel      enter_tunnel
//!     v        v                v
//!   Tunnel{relay, proven} --drop_tunnel--> Direct (--route--> Routed
//!                                          when a session remains)
//! ```
//!
//! `Direct` is the default: straight to the endpoint (or nowhere yet, when
//! there is no session). `Routed` seals end to end and sends over the
//! ring: a VPN peer with no link of ours. `Tunnel` sends through our link
//! to a relay; until something from the peer came through it (`proven`),
//! data still takes the ring and only probes use the relay. A punch for a
//! direct link (`Reach::punching`) can run under any path; the path moves
//! when its handshake completes.

use super::Peer;
use crate::ids::PeerIdx;
use crate::time::Instant;

/// Whether the overlay counts the peer as a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(in crate::node) enum Link {
    #[default]
    Down,
    Up,
    /// Closed then: sessions kept for a grace (`CLOSE_GRACE`).
    Closing(Instant),
}

/// How data reaches the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(in crate::node) enum Path {
    /// Straight to the peer's endpoint (or nowhere yet).
    #[default]
    Direct,
    /// Sealed end to end and routed over the ring.
    Routed,
    /// Through our link to `relay`; `proven` once the peer's traffic came
    /// through it.
    Tunnel { relay: PeerIdx, proven: bool },
}

impl Peer {
    pub(in crate::node) fn is_linked(&self) -> bool {
        self.link == Link::Up
    }

    /// When the link was closed, while its grace runs.
    pub(in crate::node) fn closing_since(&self) -> Option<Instant> {
        match self.link {
            Link::Closing(since) => Some(since),
            _ => None,
        }
    }

    /// Down → Up. False if the link was not down.
    pub(in crate::node) fn mark_linked(&mut self) -> bool {
        let down = self.link == Link::Down;
        if down {
            self.link = Link::Up;
        }
        down
    }

    /// Up → Down, or → Closing when `closing` (a close keeps the first
    /// moment it began). True if the link was up.
    pub(in crate::node) fn mark_unlinked(&mut self, closing: Option<Instant>) -> bool {
        let was_up = self.link == Link::Up;
        self.link = match (self.link, closing) {
            (Link::Closing(since), Some(_)) => Link::Closing(since),
            (_, Some(now)) => Link::Closing(now),
            (Link::Closing(since), None) => Link::Closing(since),
            (_, None) => Link::Down,
        };
        was_up
    }

    /// Closing → Down (grace over, or the link is wanted again). True if
    /// it was closing.
    pub(in crate::node) fn end_closing(&mut self) -> bool {
        let closing = matches!(self.link, Link::Closing(_));
        if closing {
            self.link = Link::Down;
        }
        closing
    }

    pub(in crate::node) fn path(&self) -> Path {
        self.path
    }

    pub(in crate::node) fn is_routed(&self) -> bool {
        self.path == Path::Routed
    }

    /// The tunnel's relay, if the peer is reached through one.
    pub(in crate::node) fn relay(&self) -> Option<PeerIdx> {
        match self.path {
            Path::Tunnel { relay, .. } => Some(relay),
            _ => None,
        }
    }

    /// Whether the peer's traffic came through the tunnel's relay.
    pub(in crate::node) fn relay_proven(&self) -> bool {
        matches!(self.path, Path::Tunnel { proven: true, .. })
    }

    /// Direct → Routed: no link, an end-to-end session over the ring.
    /// (A tunnel stays a tunnel.)
    pub(in crate::node) fn route(&mut self) {
        if self.path == Path::Direct {
            self.path = Path::Routed;
        }
    }

    /// Routed → Direct: a direct path formed (or was never needed).
    pub(in crate::node) fn go_direct(&mut self) {
        if self.path == Path::Routed {
            self.path = Path::Direct;
        }
    }

    /// A handshake completed with no direct endpoint to show for it: a
    /// linked peer keeps its path, any other goes over the ring.
    pub(in crate::node) fn settle_without_endpoint(&mut self) {
        if self.relay().is_none() {
            self.path = if self.is_linked() {
                Path::Direct
            } else {
                Path::Routed
            };
        }
    }

    /// → Tunnel through `relay`. Returns the relay before, if any; a new
    /// relay is unproven.
    pub(in crate::node) fn enter_tunnel(&mut self, relay: PeerIdx) -> Option<PeerIdx> {
        let before = self.relay();
        if before != Some(relay) {
            self.path = Path::Tunnel {
                relay,
                proven: false,
            };
        }
        before
    }

    /// Tunnel{proven: false} → Tunnel{proven: true}.
    pub(in crate::node) fn prove_tunnel(&mut self) {
        if let Path::Tunnel { proven, .. } = &mut self.path {
            *proven = true;
        }
    }

    /// Tunnel → Direct: the tunnel ended because a direct path formed or
    /// the link is gone. Returns the relay left.
    pub(in crate::node) fn drop_tunnel(&mut self) -> Option<PeerIdx> {
        let relay = self.relay()?;
        self.path = Path::Direct;
        Some(relay)
    }
}
