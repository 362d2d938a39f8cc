//! Our virtual address: claimed in the DHT when the node starts (static,
//! automatic or DHCP's), renewed, moved on a conflict, and what the shell
//! is told about it; the VPN's DHT events and timers.

use super::{DropReason, Event, Node};
use crate::overlay::dht::client::{Event as DhtEvent, Outcome};
use crate::time::Instant;
use crate::vpn::claim::{self, Claim};
use crate::vpn::local;
use crate::vpn::record;
use crate::vpn::resolve::Dir;
use crate::vpn::AddressMode;
use std::net::Ipv4Addr;
use std::time::Duration;

/// After the first link, wait this long before claiming an address: the
/// near checks have then found our place, so the claim reaches the
/// replicas the rest of the ring uses.
const CLAIM_SETTLE: Duration = Duration::from_secs(2);
/// With bootstraps configured but none answering, claim alone after this
/// (we may be the first member up; hand-off spreads the record later).
const CLAIM_ALONE_AFTER: Duration = Duration::from_secs(10);
/// A claim the DHT could not decide is tried again after this.
const CLAIM_RETRY: Duration = Duration::from_secs(5);

impl Node {
    /// The virtual IPv4 address we hold (claimed in the DHT), if any: a
    /// query (status, tests); the shell acts on [`Event::AddressHeld`].
    pub fn held_address(&self) -> Option<Ipv4Addr> {
        self.vpn.as_ref()?.claim.held()
    }

    /// What this node stores in the DHT for others: signed address
    /// records that check out against the current trust (called again
    /// when a revocation list is taken).
    pub(super) fn update_record_policy(&mut self) {
        let network = self.vpn.as_ref().map(|v| v.cfg.network.clone());
        let Some(ov) = self.overlay.as_mut() else {
            return;
        };
        ov.set_record_policy(Box::new(record::AddressPolicy {
            network: network.unwrap_or_default(),
            trust: self.certs.trust.clone(),
            wall_origin_us: self.env.wall_origin_us,
        }));
    }

    /// Sets the DHT record policy and queues the gratuitous ARP that
    /// announces the virtual router.
    pub(super) fn vpn_start(&mut self) {
        self.update_record_policy();
        let Some(v) = self.vpn.as_ref() else {
            return;
        };
        let Some(mut buf) = self.pool.alloc() else {
            return;
        };
        let n = local::gratuitous_arp(self.pool.space_mut(&buf), &v.cfg);
        self.pool.set_len(&mut buf, n);
        self.out.frames.push_back(buf);
    }

    /// A finished DHT operation: a lookup or our address claim. Returns the
    /// event if it was neither.
    pub(super) fn vpn_dht_event(&mut self, now: Instant, e: DhtEvent) -> Option<DhtEvent> {
        let Some(v) = self.vpn.as_mut() else {
            return Some(e);
        };
        if let Some(ip) = v.resolver.ip_of_op(e.id) {
            // Every record is checked again here: a storing node may lie.
            let checker = record::Checker {
                network: &v.cfg.network,
                trust: self.certs.trust.as_ref(),
                wall_origin_us: self.env.wall_origin_us,
            };
            let mut forged = 0;
            let holder = match &e.outcome {
                Outcome::Found(records) => records
                    .iter()
                    .filter_map(|r| match checker.check(e.key, r.owner, &r.value, now) {
                        Ok(rec) => Some((r.ttl_secs, rec.holder)),
                        Err(_) => {
                            forged += 1;
                            None
                        }
                    })
                    .max_by_key(|(ttl, _)| *ttl)
                    .map(|(_, key)| key),
                _ => None,
            };
            v.stats.records_refused += forged;
            if holder.is_none() {
                v.stats.lookups_failed += 1;
            }
            let waiting = v.resolver.complete(now, ip, holder);
            for (buf, dir) in waiting {
                match (dir, holder) {
                    (Dir::Out, Some(key)) => self.send_packet_to(now, key, buf),
                    (Dir::Out, None) => self.drop_buf(buf, DropReason::UnknownIp),
                    (Dir::In(p), Some(key)) if self.peers[usize::from(p.0)].key == key => {
                        if self.may_hold(p, Some(ip)) {
                            self.deliver_packet(buf)
                        } else {
                            self.refuse_claim(p, buf)
                        }
                    }
                    (Dir::In(_), _) => self.drop_buf(buf, DropReason::SpoofedSource),
                }
            }
            return None;
        }
        let v = self.vpn.as_mut()?;
        match v.claim {
            Claim::Claiming { ip, op, attempt } if op == e.id => {
                self.claim_result(now, ip, attempt, &e.outcome);
                None
            }
            Claim::Held { ip } if e.key == v.cfg.ip_key(ip) => {
                // A renewal: someone else won the address meanwhile.
                if let Outcome::Exists(_) = e.outcome {
                    self.claim_result(now, ip, 0, &e.outcome);
                }
                None
            }
            _ => Some(e),
        }
    }

    pub(super) fn claim_result(
        &mut self,
        now: Instant,
        ip: Ipv4Addr,
        attempt: u32,
        outcome: &Outcome,
    ) {
        let Some(v) = self.vpn.as_mut() else {
            return;
        };
        let key = v.cfg.ip_key(ip);
        match (outcome, v.cfg.address) {
            (Outcome::Stored, _) => {
                log::info!("virtual address {ip} claimed");
                v.claim = Claim::Held { ip };
                self.push_event(Event::AddressHeld(ip));
            }
            (Outcome::Exists(holder), AddressMode::Static(_)) => {
                log::error!("virtual address {ip} is held by node {}", holder.to_hex());
                v.claim = Claim::Conflict {
                    ip,
                    holder: *holder,
                };
                if let Some(ov) = self.overlay.as_mut() {
                    ov.dht_unregister(now, key, &self.identity);
                }
                self.push_event(Event::AddressConflict {
                    ip,
                    holder: *holder,
                });
            }
            (Outcome::Exists(_), AddressMode::Auto) => {
                log::info!("virtual address {ip} is taken, trying another");
                if let Some(ov) = self.overlay.as_mut() {
                    ov.dht_unregister(now, key, &self.identity);
                }
                self.claim_next(now, attempt + 1);
            }
            _ => {
                // Undecided (no quorum): try the same address again soon.
                v.claim = Claim::Waiting;
                v.next_claim = now + CLAIM_RETRY;
                if let Some(ov) = self.overlay.as_mut() {
                    ov.dht_unregister(now, key, &self.identity);
                }
            }
        }
    }

    /// Starts claiming the static address, or automatic guess `attempt`.
    pub(super) fn claim_next(&mut self, now: Instant, attempt: u32) {
        let (Some(v), Some(ov)) = (self.vpn.as_mut(), self.overlay.as_mut()) else {
            return;
        };
        let ip = match v.cfg.address {
            AddressMode::Static(ip) => ip,
            AddressMode::Auto if attempt >= claim::MAX_ATTEMPTS => {
                v.claim = Claim::Exhausted;
                return;
            }
            AddressMode::Auto => v.cfg.guess(ov.addr().0, attempt),
        };
        let cert = self.certs.mine.as_deref();
        let Some(value) = record::sign(&self.identity, ip, ov.endpoints(), cert) else {
            log::error!("certificate too long for an address record: address not claimed");
            v.claim = Claim::Exhausted;
            return;
        };
        let key = v.cfg.ip_key(ip);
        match ov.dht_register(now, key, &value, claim::TTL_SECS, true) {
            Some(op) => v.claim = Claim::Claiming { ip, op, attempt },
            None => {
                v.claim = Claim::Waiting;
                v.next_claim = now + CLAIM_RETRY;
            }
        }
    }

    /// The VPN's timers: start the claim once we have our place in the ring.
    pub(super) fn vpn_timers(&mut self, now: Instant) {
        let linked = self.index.linked > 0;
        let Some(v) = self.vpn.as_mut() else {
            return;
        };
        if linked && v.first_link.is_none() {
            v.first_link = Some(now);
        }
        if v.claim != Claim::Waiting || now < v.next_claim {
            return;
        }
        let ready = match v.first_link {
            Some(t) => now >= t + CLAIM_SETTLE,
            None => !v.joining || now >= v.started + CLAIM_ALONE_AFTER,
        };
        if ready {
            self.claim_next(now, 0);
        }
    }

    /// When the VPN's timers next need a look (claim start or retry).
    pub(super) fn vpn_deadline(&self) -> Option<Instant> {
        let v = self.vpn.as_ref()?;
        if v.claim != Claim::Waiting {
            return None;
        }
        let t = match v.first_link {
            Some(t) => t + CLAIM_SETTLE,
            None if v.joining && self.index.linked == 0 => v.started + CLAIM_ALONE_AFTER,
            None if v.joining => Instant::ZERO,
            None => v.started,
        };
        Some(t.max(v.next_claim))
    }
}
