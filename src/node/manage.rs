//! The node's side of the managing system: link-control task messages to
//! `manage::Manager`, the policy object, the node's facts for its maps
//! (`Local`), and what it asks carried out — a message on a link, a
//! finished task for the caller.

use super::{DropReason, Event, Node, PeerIdx};
use crate::manage::{Action, Auth, Local};
use crate::time::Instant;
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
}

impl Node {
    /// Starts a map-reduce task over the whole ring; its result comes as
    /// [`Event::TaskDone`] with the returned id. `None` outside overlay
    /// mode.
    pub fn start_task(&mut self, now: Instant, kind: TaskKind, args: &[u8]) -> Option<u64> {
        let mut m = self.manager.take()?;
        let id = match self.overlay.as_ref() {
            Some(ov) => {
                let facts = Facts { node: self };
                Some(m.start(
                    now,
                    ov,
                    &facts,
                    &self.identity,
                    self.certs.mine.as_deref(),
                    self.env.wall_origin_us,
                    kind,
                    args,
                ))
            }
            None => None,
        };
        self.manager = Some(m);
        self.run_manage_actions(now);
        self.settle(now);
        id
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
                let auth = Auth {
                    trust: self.certs.trust.as_ref(),
                    admin_group: &self.settings.admin_group,
                    wall_origin_us: self.env.wall_origin_us,
                };
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
        if let Some(m) = self.manager.as_mut() {
            m.handle_timeout(now);
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
