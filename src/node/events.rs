//! The node's one way out besides datagrams and frames (which stay on
//! their zero-copy queues): events the caller drains with
//! [`Node::poll_event`] after each input, as it drains datagrams.
//!
//! Every public entry point ends in [`Node::settle`]: what the overlay
//! asked for is carried out there (its actions can cause more, each round
//! runs what the last produced), its results become events, and the
//! timers are re-armed. Nothing inside the node drains the overlay by
//! hand, so no input can leave work behind by forgetting to.

use super::Node;
use crate::net::Prefix;
use crate::overlay::dht::client::Event as DhtEvent;
use crate::overlay::Addr;
use crate::overlay::Overlay;
use crate::time::Instant;
use std::net::Ipv4Addr;
use std::time::Duration;

/// Events kept for the caller; the oldest go first if nobody collects
/// them (a daemon that never asks for DHT results, say).
pub const MAX_EVENTS: usize = 4096;

/// Something the node tells its caller.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A DHT operation the caller started (through `Node::with_overlay`)
    /// finished.
    Dht(DhtEvent),
    /// A routed echo the caller sent (`Node::overlay_echo`) came back:
    /// links it crossed on the way there, and the round trip.
    Echo { nonce: u64, hops: u8, rtt: Duration },
    /// Our virtual IPv4 address is ours now (claimed in the DHT): the
    /// shell puts it on the TAP.
    AddressHeld(Ipv4Addr),
    /// Another member holds our static address: the daemon stops.
    AddressConflict { ip: Ipv4Addr, holder: Addr },
    /// A subnet route is offered by a member: the shell points the
    /// prefix at the TAP.
    RouteAdded(Prefix),
    /// Nobody offers it any more: the shell takes the route away.
    RouteRemoved(Prefix),
    /// A map-reduce task we started (`Node::start_task`) is done:
    /// complete, or partial with the missing arcs named.
    TaskDone {
        id: u64,
        kind: crate::wire::task::TaskKind,
        result: Box<crate::manage::Outcome>,
        took: Duration,
    },
}

impl Node {
    /// Next event for the caller. Drain after every `handle_*` call.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.out.events.pop_front()
    }

    pub(super) fn push_event(&mut self, e: Event) {
        if self.out.events.len() >= MAX_EVENTS {
            self.out.events.pop_front();
        }
        self.out.events.push_back(e);
    }

    /// Ends every public entry point: runs what the overlay asked for,
    /// takes its results, re-arms the timers. A data packet usually leaves
    /// the overlay nothing to do: that case is a few loads, inline.
    #[inline]
    pub(super) fn settle(&mut self, now: Instant) {
        if self.overlay.as_ref().is_some_and(Overlay::has_output) {
            self.run_overlay_actions(now);
        }
        self.rearm();
    }
}
