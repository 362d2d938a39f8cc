//! Bootstrap endpoints: the configured ones and those learnt from members
//! that linked to us, tried until the node has its place in the ring (and
//! again when it is cut off).

use super::peer::Pending;
use super::{Node, PeerIdx, Target};
use crate::time::Instant;
use crate::wire::endpoint::Endpoint;
use std::time::Duration;

/// Pause between bootstrap rounds while we have no link at all.
pub const BOOT_PAUSE: Duration = Duration::from_secs(5);
/// Bootstrap (leaf) links to keep while joining (Brunet: 3). One is not
/// enough: if every node links only its first bootstrap, nodes started
/// together form separate components, each growing its own ring.
pub const LEAVES: usize = 3;

/// With bootstraps and no link this long, the node says so (at the
/// default log level, and in status): a wrong address or a dead
/// bootstrap is otherwise a member that sits alone, silent.
pub const SILENT_AFTER: Duration = Duration::from_secs(60);

/// Endpoints of past overlay links kept as extra bootstraps.
pub const LEARNED_BOOTS: usize = 8;
/// Failed rounds after which a learned endpoint is forgotten.
pub const LEARNED_ROUNDS: u8 = 2;

/// Handshakes with nodes not in the peer table yet: bootstrap endpoints
/// (we know where, not who) and inits riding in connect-to-me requests.
pub(super) struct Strangers {
    pub(super) boots: Vec<Boot>,
    /// When a bootstrap needs a handshake next, recomputed after an input
    /// that may change it (`boots_dirty`: a link or a bootstrap handshake
    /// changed), so that data packets never pay for it.
    pub(super) boot_wake: Option<Instant>,
    pub(super) boots_dirty: bool,
    /// Handshakes riding in connect-to-me requests, and their purposes.
    pub(super) ctm_inits: [Option<Box<Pending>>; super::handshakes::CTM_INITS],
    pub(super) ctm_ids: [crate::overlay::CtmId; super::handshakes::CTM_INITS],
    /// Since when we have bootstraps and no link; and the warning said
    /// once that had lasted [`SILENT_AFTER`].
    pub(super) alone_since: Option<Instant>,
    pub(super) silent: Option<String>,
}

/// A bootstrap endpoint: we know where, not who.
pub struct Boot {
    pub endpoint: Endpoint,
    pub pending: Option<Box<Pending>>,
    pub next_try: Instant,
    /// The peer this endpoint turned out to be, once linked.
    pub peer: Option<PeerIdx>,
    /// This endpoint answered once (its peer may since have been
    /// forgotten): tried again only when we are stranded.
    pub answered: bool,
    /// Learned from a past link rather than configured: tried only when we
    /// are cut off (no links, or too few to be in a ring). A node whose
    /// configured bootstraps are gone, or that joined through a node that
    /// was itself cut off, finds its way back this way.
    pub learned: Option<Learned>,
}

#[derive(Clone, Copy)]
pub struct Learned {
    pub at: Instant,
    /// Failed rounds in a row; at LEARNED_ROUNDS the slot is free again.
    pub failures: u8,
}

impl Boot {
    pub fn new(endpoint: Endpoint, now: Instant, learned: Option<Learned>) -> Boot {
        Boot {
            endpoint,
            pending: None,
            next_try: now,
            peer: None,
            answered: false,
            learned,
        }
    }

    pub fn forgotten(&self) -> bool {
        self.learned.is_some_and(|l| l.failures >= LEARNED_ROUNDS)
    }
}

impl Node {
    /// Remembers where an overlay link reached its peer, as a bootstrap
    /// for later (the most recent LEARNED_BOOTS, configured ones aside).
    pub(super) fn learn_boot(&mut self, now: Instant, endpoint: Endpoint) {
        self.strangers.boots_dirty = true;
        if let Some(b) = self
            .strangers
            .boots
            .iter_mut()
            .find(|b| b.endpoint == endpoint)
        {
            if let Some(l) = b.learned.as_mut() {
                *l = Learned {
                    at: now,
                    failures: 0,
                };
            }
            return;
        }
        let learned = Some(Learned {
            at: now,
            failures: 0,
        });
        let slots = self
            .strangers
            .boots
            .iter()
            .filter(|b| b.learned.is_some())
            .count();
        if slots < LEARNED_BOOTS {
            self.strangers.boots.push(Boot::new(endpoint, now, learned));
            return;
        }
        // Reuse a forgotten slot, else the oldest idle one.
        let victim = (0..self.strangers.boots.len())
            .filter(|&b| {
                self.strangers.boots[b].learned.is_some()
                    && self.strangers.boots[b].pending.is_none()
            })
            .min_by_key(|&b| {
                let boot = &self.strangers.boots[b];
                (!boot.forgotten(), boot.learned.map(|l| l.at))
            });
        if let Some(b) = victim {
            self.strangers.boots[b] = Boot::new(endpoint, now, learned);
        }
    }

    /// A bootstrap endpoint found after the start (a name resolved).
    pub fn add_bootstrap(&mut self, now: Instant, endpoint: std::net::SocketAddr) {
        let ep = Endpoint::udp(endpoint);
        match self.strangers.boots.iter_mut().find(|b| b.endpoint == ep) {
            // Learned from a link before: configured now.
            Some(b) => b.learned = None,
            None => self.strangers.boots.push(Boot::new(ep, now, None)),
        }
        self.strangers.boots_dirty = true;
        self.settle(now);
    }

    /// Where our overlay links reach their peers straight over UDP, at
    /// most [`LEARNED_BOOTS`], in a stable order: what the shell keeps
    /// in the peer cache for the next start.
    pub fn cache_endpoints(&self) -> Vec<Endpoint> {
        let mut eps: Vec<Endpoint> = self
            .peers
            .iter()
            .filter(|p| p.is_linked() && p.relay().is_none())
            .filter_map(|p| p.reach.proven.filter(|e| e.is_udp()))
            .collect();
        eps.sort();
        eps.dedup();
        eps.truncate(LEARNED_BOOTS);
        eps
    }

    /// An endpoint from the peer cache: a bootstrap tried when we are
    /// cut off (as one learned from a link).
    pub fn remember_bootstrap(&mut self, now: Instant, endpoint: Endpoint) {
        self.learn_boot(now, endpoint);
        self.settle(now);
    }

    /// Whether any overlay or static link is up (the shell re-resolves
    /// bootstrap names while none is).
    pub fn has_links(&self) -> bool {
        self.any_linked()
    }

    /// Whether any link is up.
    pub(super) fn any_linked(&self) -> bool {
        self.index.linked > 0
    }

    /// No links, or too few to have a place in a ring: we may be on an
    /// island (say, joined through a node that had itself lost the ring).
    pub(super) fn cut_off(&self) -> bool {
        !self.any_linked() || self.overlay.as_ref().is_some_and(|ov| ov.is_thin())
    }

    /// When bootstrap `b` needs a handshake next, if at all. Configured
    /// endpoints are tried until `LEAVES` of them are linked; one that
    /// failed is retried only while we have no link at all. Learned ones
    /// are tried only while we are cut off. `leaves` and `cut_off` are the
    /// node-wide facts, computed once by the caller.
    pub(super) fn boot_due(&self, b: usize, leaves: usize, cut_off: bool) -> Option<Instant> {
        let boot = &self.strangers.boots[b];
        if let Some(pending) = &boot.pending {
            return Some(pending.next_retry);
        }
        if boot
            .peer
            .is_some_and(|p| self.peers[usize::from(p.0)].is_linked())
        {
            return None;
        }
        if boot.learned.is_some() {
            let usable = cut_off
                && !boot.forgotten()
                && !self
                    .peers
                    .iter()
                    .any(|p| p.is_linked() && p.reach.endpoint == Some(boot.endpoint));
            return usable.then_some(boot.next_try);
        }
        let stranded = !self.any_linked();
        (stranded || (leaves < LEAVES && !boot.answered)).then_some(boot.next_try)
    }

    /// Bootstrap leaves linked, and whether we are cut off.
    pub(super) fn boot_context(&self) -> (usize, bool) {
        let leaves = self
            .strangers
            .boots
            .iter()
            .filter(|b| {
                b.peer
                    .is_some_and(|p| self.peers[usize::from(p.0)].is_linked())
            })
            .count();
        (leaves, self.cut_off())
    }

    /// The earliest bootstrap deadline.
    pub(super) fn boot_deadline(&self) -> Option<Instant> {
        let (leaves, cut_off) = self.boot_context();
        (0..self.strangers.boots.len())
            .filter_map(|b| self.boot_due(b, leaves, cut_off))
            .min()
    }

    /// Says, once, when no bootstrap has answered for [`SILENT_AFTER`];
    /// forgets it when a link comes up.
    fn watch_silence(&mut self, now: Instant) {
        if self.strangers.boots.is_empty() || self.any_linked() {
            if self.strangers.silent.take().is_some() {
                log::info!("linked again");
            }
            self.strangers.alone_since = None;
            return;
        }
        let since = *self.strangers.alone_since.get_or_insert(now);
        if self.strangers.silent.is_none() && now.saturating_since(since) >= SILENT_AFTER {
            let tried: Vec<String> = self
                .strangers
                .boots
                .iter()
                .map(|b| b.endpoint.to_string())
                .collect();
            let said = format!(
                "no bootstrap answered in {} s: tried {} (a wrong address or port, a firewall, or none of them running?)",
                SILENT_AFTER.as_secs(),
                tried.join(", ")
            );
            log::warn!("{said}");
            self.strangers.silent = Some(said);
        }
    }

    /// The warning about silent bootstraps, while it holds.
    pub(super) fn silent_bootstraps(&self) -> Option<&str> {
        self.strangers.silent.as_deref()
    }

    pub(super) fn run_bootstraps(&mut self, now: Instant) {
        self.watch_silence(now);
        // `boot_wake` is kept exact (checked after every input in debug
        // builds; brought up to date here if this input changed it, a
        // link going down, say): nothing due, nothing to scan.
        if self.strangers.boots_dirty {
            self.strangers.boots_dirty = false;
            self.strangers.boot_wake = self.boot_deadline();
        }
        if !self.strangers.boot_wake.is_some_and(|t| t <= now) {
            return;
        }
        for b in 0..self.strangers.boots.len() {
            let (leaves, cut_off) = self.boot_context();
            if self.boot_due(b, leaves, cut_off).is_some_and(|t| now >= t) {
                self.start_handshake(now, Target::Boot(b as u16));
            }
        }
    }
}
