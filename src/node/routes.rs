//! The node's side of the routes (overlay mode): it runs `routes::Routes`,
//! the policy object, on its timer and its DHT results, tells it when
//! members were last heard from, and carries out what comes back — a
//! probe over a session (made if needed), a subnet route for the shell.
//! The data path asks the routes directly (`vpn`).

use super::{Event, Node, PeerIdx};
use crate::crypto::NodeKey;
use crate::overlay::dht::client::Event as DhtEvent;
use crate::routes::{Action, Judge, Liveness, Signer};
use crate::time::Instant;
use std::collections::BTreeMap;
use std::time::Duration;

/// The peer table as the routes see it.
struct Heard<'a> {
    by_key: &'a BTreeMap<NodeKey, PeerIdx>,
    peers: &'a [super::peer::PeerSlot],
}

impl Liveness for Heard<'_> {
    fn heard(&self, key: &NodeKey) -> (Option<Instant>, Option<Duration>) {
        match self.by_key.get(key) {
            Some(&p) => {
                let live = &self.peers[usize::from(p.0)].live;
                (live.last_rx, live.rtt())
            }
            None => (None, None),
        }
    }
}

impl Node {
    /// The routes' timer: our record, slot reads, probes, the choice.
    pub(super) fn routes_timers(&mut self, now: Instant) {
        let (Some(routes), Some(ov)) = (self.routes.as_mut(), self.overlay.as_mut()) else {
            return;
        };
        let signer = Signer {
            identity: &self.identity,
            cert: self.certs.mine.as_deref(),
            ip: self.vpn.as_ref().and_then(|v| v.claim().held()),
        };
        let heard = Heard {
            by_key: &self.index.by_key,
            peers: &self.peers,
        };
        routes.handle_timeout(now, ov, &signer, &heard, self.index.linked > 0);
        self.run_route_actions(now);
    }

    /// The routes as status shows them.
    pub fn routes_status(&self) -> Option<super::status::RoutesStatus> {
        use super::status::{RouteStatus, RoutesStatus};
        use crate::routes::Exit;
        let r = self.routes.as_ref()?;
        let mut routes = Vec::new();
        for a in r.advertisers() {
            for p in &a.prefixes {
                let refused = r
                    .overlaps()
                    .iter()
                    .find(|o| o.prefix == *p && o.advertiser == a.name)
                    .map(|o| format!("{} from {}", o.other, o.other_advertiser));
                routes.push(RouteStatus {
                    prefix: *p,
                    advertiser: a.name.clone(),
                    state: match (a.health.probing_since, a.health.alive()) {
                        (None, _) => "not probed",
                        (_, true) => "alive",
                        (_, false) => "dead",
                    },
                    rtt: a.health.rtt,
                    in_use: r.in_use().iter().any(|u| u.prefix == *p && u.via == a.key),
                    refused,
                });
            }
        }
        Some(RoutesStatus {
            advertised: r.config().advertise.clone(),
            exit: match r.config().exit {
                Exit::Off => "off",
                Exit::Auto => "auto",
                Exit::Named(_) => "named",
            },
            exit_via: r.exit().map(|k| r.name_of(&k)),
            exit_why: r.exit_why(),
            routes,
            stats: r.stats().clone(),
        })
    }

    pub(super) fn routes_deadline(&self) -> Option<Instant> {
        self.routes.as_ref()?.poll_timeout()
    }

    /// A finished DHT operation that may be a slot read; given back if not.
    pub(super) fn routes_dht_event(&mut self, now: Instant, e: DhtEvent) -> Option<DhtEvent> {
        let Some(routes) = self.routes.as_mut() else {
            return Some(e);
        };
        let judge = Judge {
            trust: self.certs.trust.as_ref(),
            wall_origin_us: self.env.wall_origin_us,
        };
        let e = routes.dht_event(now, &judge, e);
        self.run_route_actions(now);
        e
    }

    fn run_route_actions(&mut self, now: Instant) {
        let Some(routes) = self.routes.as_mut() else {
            return;
        };
        let actions: Vec<Action> = routes.drain_actions().collect();
        for a in actions {
            match a {
                Action::Probe(key) => self.probe_member(now, key),
                Action::Install(p) => self.push_event(Event::RouteAdded(p)),
                Action::Remove(p) => self.push_event(Event::RouteRemoved(p)),
            }
        }
    }

    /// Pings the member with `key` over our session with it, starting
    /// one (end to end over the overlay, or our link) if there is none.
    fn probe_member(&mut self, now: Instant, key: NodeKey) {
        let Some(p) = self.find_or_add_peer(key, None) else {
            return;
        };
        let peer = &mut *self.peers[usize::from(p.0)];
        if !peer.role.wanted {
            peer.role.wanted = true;
            self.touch(p);
        }
        let peer = &mut *self.peers[usize::from(p.0)];
        if peer.sessions.current.is_some() {
            return self.send_ping(now, p);
        }
        if peer.hs.pending.is_none() {
            if !peer.is_linked() {
                peer.route();
            }
            self.start_handshake(now, super::Target::Peer(p));
        }
    }
}
