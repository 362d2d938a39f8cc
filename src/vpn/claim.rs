//! Holding a virtual IPv4 address: a DHT `create` of ip → this node, kept
//! alive by renewal. Static addresses are claimed as configured (a holder
//! elsewhere is an error naming it); automatic ones start from a guess
//! derived from the ring address and move on when taken.
//!
//! The registered value is a signed address record (`vpn::record`): who
//! holds the address, where it was last seen (a hint for later direct
//! links) and, in certificate mode, the holder's certificate.

use super::engine::{Action, Signer, Vpn};
use super::{record, AddressMode};
use crate::overlay::dht::client::{Event as DhtEvent, Outcome};
use crate::overlay::{Addr, Overlay};
use crate::time::Instant;
use std::net::Ipv4Addr;
use std::time::Duration;

/// Automatic guesses before giving up (each taken one costs a DHT round).
pub const MAX_ATTEMPTS: u32 = 16;
/// How long an address registration lives without renewal (renewed at half).
pub const TTL_SECS: u32 = 300;

/// Where the claim stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Not in the ring yet: a claim now would land in our own store only.
    Waiting,
    /// A create for `ip` is out (DHT operation `op`).
    Claiming { ip: Ipv4Addr, op: u32, attempt: u32 },
    /// We hold `ip`; the DHT registration renews it.
    Held { ip: Ipv4Addr },
    /// Another node holds our (static) address: a configuration error.
    Conflict { ip: Ipv4Addr, holder: Addr },
    /// Every automatic guess was taken.
    Exhausted,
}

impl Claim {
    pub fn held(&self) -> Option<Ipv4Addr> {
        match self {
            Claim::Held { ip } => Some(*ip),
            _ => None,
        }
    }

    /// The address being claimed or held.
    pub fn ip(&self) -> Option<Ipv4Addr> {
        match self {
            Claim::Held { ip } | Claim::Claiming { ip, .. } | Claim::Conflict { ip, .. } => {
                Some(*ip)
            }
            _ => None,
        }
    }
}

/// When the claim may start and when it is tried again.
pub struct Timing {
    /// Our first link: the claim starts once the ring had time to settle.
    first_link: Option<Instant>,
    started: Instant,
    /// An undecided claim is tried again then.
    next_claim: Instant,
    /// Bootstraps were configured: wait for the ring before claiming.
    joining: bool,
}

impl Timing {
    pub fn new(now: Instant, joining: bool) -> Timing {
        Timing {
            first_link: None,
            started: now,
            next_claim: now,
            joining,
        }
    }
}

/// After the first link, wait this long before claiming an address: the
/// near checks have then found our place, so the claim reaches the
/// replicas the rest of the ring uses.
const CLAIM_SETTLE: Duration = Duration::from_secs(2);
/// With bootstraps configured but none answering, claim alone after this
/// (we may be the first member up; hand-off spreads the record later).
const CLAIM_ALONE_AFTER: Duration = Duration::from_secs(10);
/// A claim the DHT could not decide is tried again after this.
const CLAIM_RETRY: Duration = Duration::from_secs(5);

impl Vpn {
    /// The claim's timer: it starts once we have our place in the ring
    /// (`linked`: we have a link).
    pub fn handle_timeout(
        &mut self,
        now: Instant,
        ov: &mut Overlay,
        signer: &Signer,
        linked: bool,
    ) {
        let t = &mut self.timing;
        if linked && t.first_link.is_none() {
            t.first_link = Some(now);
        }
        if self.claim != Claim::Waiting || now < t.next_claim {
            return;
        }
        let ready = match t.first_link {
            Some(first) => now >= first + CLAIM_SETTLE,
            None => !t.joining || now >= t.started + CLAIM_ALONE_AFTER,
        };
        if ready {
            self.claim_next(now, ov, signer, 0);
        }
    }

    /// When the claim's timer next needs a look (start or retry).
    pub fn poll_timeout(&self, linked: bool) -> Option<Instant> {
        if self.claim != Claim::Waiting {
            return None;
        }
        let t = &self.timing;
        let at = match t.first_link {
            Some(first) => first + CLAIM_SETTLE,
            None if t.joining && !linked => t.started + CLAIM_ALONE_AFTER,
            None if t.joining => Instant::ZERO,
            None => t.started,
        };
        Some(at.max(t.next_claim))
    }

    /// A finished DHT operation that may be our claim (or its renewal).
    pub(super) fn claim_event(
        &mut self,
        now: Instant,
        ov: &mut Overlay,
        signer: &Signer,
        e: DhtEvent,
    ) -> Option<DhtEvent> {
        match self.claim {
            Claim::Claiming { ip, op, attempt } if op == e.id => {
                self.claim_result(now, ov, signer, ip, attempt, &e.outcome);
                None
            }
            Claim::Held { ip } if e.key == self.cfg.ip_key(ip) => {
                // A renewal: someone else won the address meanwhile.
                if let Outcome::Exists(_) = e.outcome {
                    self.claim_result(now, ov, signer, ip, 0, &e.outcome);
                }
                None
            }
            _ => Some(e),
        }
    }

    fn claim_result(
        &mut self,
        now: Instant,
        ov: &mut Overlay,
        signer: &Signer,
        ip: Ipv4Addr,
        attempt: u32,
        outcome: &Outcome,
    ) {
        let key = self.cfg.ip_key(ip);
        match (outcome, self.cfg.address) {
            (Outcome::Stored, _) => {
                log::info!("virtual address {ip} claimed");
                self.claim = Claim::Held { ip };
                self.actions.push(Action::Held(ip));
                self.register_name(now, ov, signer, ip);
            }
            (Outcome::Exists(holder), AddressMode::Static(_)) => {
                log::error!("virtual address {ip} is held by node {}", holder.to_hex());
                self.claim = Claim::Conflict {
                    ip,
                    holder: *holder,
                };
                ov.dht_unregister(now, key, signer.identity);
                self.actions.push(Action::Conflict {
                    ip,
                    holder: *holder,
                });
            }
            (Outcome::Exists(_), AddressMode::Auto) => {
                log::info!("virtual address {ip} is taken, trying another");
                ov.dht_unregister(now, key, signer.identity);
                self.claim_next(now, ov, signer, attempt + 1);
            }
            _ => {
                // Undecided (no quorum): try the same address again soon.
                self.claim = Claim::Waiting;
                self.timing.next_claim = now + CLAIM_RETRY;
                ov.dht_unregister(now, key, signer.identity);
            }
        }
    }

    /// Signs our records again (a renewed certificate) and registers them
    /// in place of the old ones: the address we hold, and our name.
    pub fn resign(&mut self, now: Instant, ov: &mut Overlay, signer: &Signer) {
        let Claim::Held { ip } = self.claim else {
            return;
        };
        if let Some(value) = record::sign(signer.identity, ip, ov.endpoints(), signer.cert) {
            ov.dht_register(now, self.cfg.ip_key(ip), &value, TTL_SECS, true);
        }
        if !matches!(
            self.dns.registration,
            super::dns::Registration::Taken { .. } | super::dns::Registration::Nameless
        ) {
            self.register_name(now, ov, signer, ip);
        }
    }

    /// Starts claiming the static address, or automatic guess `attempt`.
    fn claim_next(&mut self, now: Instant, ov: &mut Overlay, signer: &Signer, attempt: u32) {
        let ip = match self.cfg.address {
            AddressMode::Static(ip) => ip,
            AddressMode::Auto if attempt >= MAX_ATTEMPTS => {
                self.claim = Claim::Exhausted;
                return;
            }
            AddressMode::Auto => self.cfg.guess(ov.addr().0, attempt),
        };
        let Some(value) = record::sign(signer.identity, ip, ov.endpoints(), signer.cert) else {
            log::error!("certificate too long for an address record: address not claimed");
            self.claim = Claim::Exhausted;
            return;
        };
        let key = self.cfg.ip_key(ip);
        match ov.dht_register(now, key, &value, TTL_SECS, true) {
            Some(op) => self.claim = Claim::Claiming { ip, op, attempt },
            None => {
                self.claim = Claim::Waiting;
                self.timing.next_claim = now + CLAIM_RETRY;
            }
        }
    }
}
