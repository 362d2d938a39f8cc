//! The node's side of the managing system: link-control task messages to
//! `manage::Manager`, the policy object, the node's facts for its maps
//! (`Local`), and what it asks carried out — a message on a link, a
//! finished task for the caller.

use super::{DropReason, Event, Node, PeerIdx};
use crate::manage::{Action, Auth, Local, Manager, Signer};
use crate::overlay::Addr;
use crate::time::Instant;
use crate::wire::describe::{Description, Link, LinkPath, MAX_LINKS};
use crate::wire::overlay::Mode;
use crate::wire::task::{Reduced, TaskKind};
use crate::wire::MsgType;

/// The node as the maps see it.
struct Facts<'a> {
    node: &'a Node,
}

impl Local for Facts<'_> {
    fn stats(&self, out: &mut Reduced) {
        let n = self.node;
        out.add("members", 1);
        out.add(concat!("version:", env!("CARGO_PKG_VERSION")), 1);
        out.add(&format!("nat:{}", n.nat_mapping().name()), 1);
        if let Some(ov) = n.overlay.as_ref() {
            out.add("links", ov.table().len() as u64);
        }
        for p in &n.peers {
            if p.sessions.current.is_some() && !p.is_linked() || p.relay().is_some() {
                out.add(&format!("path:{}", p.path_name()), 1);
            }
        }
        out.add("relayed_kib", n.relayed_bytes() / 1024);
        if n.relayed_bytes() > 0 {
            out.add("relays", 1);
        }
        for &r in DropReason::ALL.iter() {
            let c = n.stats.drops(r);
            if c > 0 {
                out.add(&format!("drop:{}", r.name()), c);
            }
        }
    }

    fn find(&self, query: &str) -> Option<String> {
        let n = self.node;
        let me = n.overlay.as_ref()?.addr().to_hex();
        let held = n.held_address();
        let hit = match query.split_once('=') {
            Some(("ip", ip)) => held.is_some_and(|h| h.to_string() == ip),
            Some(("version", v)) => v == env!("CARGO_PKG_VERSION"),
            Some(("nat", nat)) => n.nat_mapping().name() == nat,
            None if query == "relaying" => n.relayed_bytes() > 0,
            None if query == "relayed" => n.peers.iter().any(|p| p.relay().is_some()),
            _ => false,
        };
        hit.then(|| match held {
            Some(ip) => format!("{} {ip}", &me[..16]),
            None => me[..16].to_string(),
        })
    }

    fn describe(&self, task: u64) -> Option<Vec<u8>> {
        let n = self.node;
        let ov = n.overlay.as_ref()?;
        let prefix = |a: Addr| (a.0 >> 64) as u64;
        let mut links: Vec<Link> = Vec::new();
        for c in ov.table().iter() {
            let tunnel = n.peers[usize::from(c.peer.0)].relay().is_some();
            let path = if tunnel {
                LinkPath::Tunnel
            } else {
                LinkPath::Direct
            };
            links.push(Link {
                prefix: prefix(c.addr),
                path,
            });
        }
        // Sessions that are not ring links (VPN peers): the path their
        // traffic takes, as status names it.
        for p in n.peers.iter().filter(|p| !p.is_linked()) {
            if p.sessions.current.is_some() && links.len() < MAX_LINKS {
                let path = match p.path_name() {
                    "direct" => LinkPath::Direct,
                    "relayed" => LinkPath::Tunnel,
                    _ => LinkPath::Routed,
                };
                links.push(Link {
                    prefix: prefix(Addr::of_key(&p.key)),
                    path,
                });
            }
        }
        let ipv4 = n.held_address();
        let d = Description {
            task,
            key: n.identity.public(),
            left: ov.left(),
            right: ov.right(),
            ipv4,
            ipv6: n.vpn.as_ref().and_then(|v| v.config().v6_of(ipv4?)),
            name: n.own_name(),
            endpoints: ov.endpoints().iter().copied().collect(),
            links,
        };
        let mut msg = Vec::new();
        d.emit_unsigned(&mut msg);
        let sig = n.identity.sign(&Description::signed_bytes(&msg));
        msg.extend_from_slice(&sig);
        Some(msg)
    }
}

impl Node {
    /// Starts a map-reduce task over the whole ring; its result comes as
    /// [`Event::TaskDone`] with the returned id. `None` outside overlay
    /// mode.
    pub fn start_task(&mut self, now: Instant, kind: TaskKind, args: &[u8]) -> Option<u64> {
        self.with_manager(now, |m, node| {
            let ov = node.overlay.as_ref()?;
            Some(m.start(now, ov, &Facts { node }, &node.signer(), kind, args))
        })
        .flatten()
    }

    /// Starts the notes' sequential crawler (right neighbour after right
    /// neighbour, one routed request each), describing at most `limit`
    /// members; its result comes as [`Event::TaskDone`]. `None` outside
    /// overlay mode or while one is under way.
    pub fn start_walk(&mut self, now: Instant, limit: usize) -> Option<u64> {
        self.with_manager(now, |m, node| {
            let ov = node.overlay.as_ref()?;
            m.start_walk(now, ov, &Facts { node }, &node.signer(), limit)
        })
        .flatten()
    }

    /// Runs `f` on the manager (taken out so it can read the node), then
    /// carries out what it asked.
    fn with_manager<T>(
        &mut self,
        now: Instant,
        f: impl FnOnce(&mut Manager, &Node) -> T,
    ) -> Option<T> {
        let mut m = self.manager.take()?;
        let out = f(&mut m, self);
        self.manager = Some(m);
        self.run_manage_actions(now);
        self.settle(now);
        Some(out)
    }

    fn signer(&self) -> Signer<'_> {
        Signer {
            id: &self.identity,
            cert: self.certs.mine.as_deref(),
            wall_origin_us: self.env.wall_origin_us,
        }
    }

    /// Our certificate's name ("" in static-key mode).
    fn own_name(&self) -> String {
        let cert = self.certs.mine.as_deref();
        cert.and_then(|c| crate::crypto::cert::Cert::decode(c).ok())
            .map(|c| c.name)
            .unwrap_or_default()
    }

    /// A management message routed to us: a task for us alone, or a
    /// description for a crawl of ours.
    pub(super) fn task_routed(&mut self, now: Instant, src: Addr, request: bool, msg: &[u8]) {
        let refused = self.with_manager(now, |m, node| {
            if request {
                let auth = node.manage_auth();
                m.handle_routed_request(now, &Facts { node }, &auth, msg)
                    .is_err()
            } else {
                m.handle_description(now, &node.signer(), src, msg);
                false
            }
        });
        if refused == Some(true) {
            self.stats.count(DropReason::TaskRefused);
        }
    }

    fn manage_auth(&self) -> Auth<'_> {
        Auth {
            trust: self.certs.trust.as_ref(),
            admin_group: &self.settings.admin_group,
            wall_origin_us: self.env.wall_origin_us,
        }
    }

    /// A task message from link `p` (tasks travel only over links).
    pub(super) fn task_in(&mut self, now: Instant, p: PeerIdx, request: bool, msg: &[u8]) {
        if !self.peers[usize::from(p.0)].is_linked() {
            return self.stats.count(DropReason::Unsolicited);
        }
        let Some(mut m) = self.manager.take() else {
            return self.stats.count(DropReason::BadType);
        };
        if request {
            if let Some(ov) = self.overlay.as_ref() {
                let auth = self.manage_auth();
                let facts = Facts { node: self };
                if m.handle_request(now, ov, &facts, &auth, p, msg).is_err() {
                    self.stats.count(DropReason::TaskRefused);
                }
            }
        } else {
            m.handle_reply(now, p, msg);
        }
        self.manager = Some(m);
        self.run_manage_actions(now);
    }

    pub(super) fn manage_timers(&mut self, now: Instant) {
        if let Some(mut m) = self.manager.take() {
            m.handle_timeout(now, &self.signer());
            self.manager = Some(m);
        }
        self.run_manage_actions(now);
    }

    pub(super) fn manage_deadline(&self) -> Option<Instant> {
        self.manager.as_ref()?.poll_timeout()
    }

    /// A link went down: its subtrees will not answer.
    pub(super) fn manage_link_down(&mut self, now: Instant, p: PeerIdx) {
        if let (Some(m), Some(ov)) = (self.manager.as_mut(), self.overlay.as_ref()) {
            m.link_down(now, ov, p);
        }
        self.run_manage_actions(now);
    }

    fn run_manage_actions(&mut self, now: Instant) {
        let Some(m) = self.manager.as_mut() else {
            return;
        };
        let actions: Vec<Action> = m.drain_actions().collect();
        for a in actions {
            match a {
                Action::Send { peer, msg } => match self.pool.alloc_with(&msg) {
                    Some(buf) => self.send_to_peer(now, peer, MsgType::Control, buf),
                    None => self.stats.count(DropReason::PoolEmpty),
                },
                Action::Route { to, msg } => {
                    if let Some(ov) = self.overlay.as_mut() {
                        ov.send_routed(now, Mode::Exact, to, &msg);
                    }
                }
                Action::Counted {
                    id,
                    members,
                    started,
                } => {
                    self.with_manager(now, |m, node| {
                        if let Some(ov) = node.overlay.as_ref() {
                            let (facts, signer) = (Facts { node }, node.signer());
                            m.describe_phase(now, ov, &facts, &signer, id, members, started);
                        }
                    });
                }
                Action::Done {
                    id,
                    kind,
                    result,
                    took,
                } => self.push_event(Event::TaskDone {
                    id,
                    kind,
                    result,
                    took,
                }),
            }
        }
    }
}
