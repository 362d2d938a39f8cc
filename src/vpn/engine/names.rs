//! The engine's DNS glue: a question from the host answered now or after
//! a lookup, our own name registered once our address is held. The
//! policy (zones, cache, what waits) is `vpn::dns`; this file moves pool
//! buffers and DHT operations for it.

use super::{Action, Discard, Judge, Members, Out, Signer, Vpn};
use crate::buf::{PacketBuf, Pool};
use crate::overlay::dht::client::{Event as DhtEvent, Outcome};
use crate::overlay::Overlay;
use crate::time::Instant;
use crate::vpn::dns::{Found, Pending, Registration, Step};
use crate::vpn::local::{self, DnsAsk};
use crate::vpn::name;
use crate::vpn::resolve::Answer;
use crate::wire::dns::{self, Rdata, Reply};
use std::net::Ipv4Addr;

impl Vpn {
    /// A datagram for the virtual router's DNS port.
    pub(super) fn dns_in(
        &mut self,
        now: Instant,
        ov: &mut Overlay,
        pool: &mut Pool,
        buf: PacketBuf,
        ask: Result<DnsAsk, crate::wire::Error>,
    ) -> Out {
        let Ok(ask) = ask else {
            self.dns.stats.malformed += 1;
            return Out::Drop(buf, Discard::LocalOnly);
        };
        let own = self.claim.held();
        let lookup = match self.dns.ask(now, &self.cfg, &ask.question, own) {
            Step::Answer(rcode, found) => {
                return self.dns_answer(pool, buf, &ask, rcode, found.as_ref())
            }
            Step::Lookup(l) => l,
        };
        if !self.dns.can_wait() {
            return self.dns_answer(pool, buf, &ask, dns::RCODE_SERVFAIL, None);
        }
        let op = match self.dns.running(&lookup) {
            Some(op) => op,
            None => {
                self.dns.stats.lookups += 1;
                ov.dht_get(now, lookup.key(&self.cfg.network), false)
            }
        };
        self.dns.pending.push(Pending {
            op,
            lookup,
            ask,
            buf,
        });
        Out::Parked
    }

    /// Writes the answer over the question's buffer.
    fn dns_answer(
        &mut self,
        pool: &mut Pool,
        buf: PacketBuf,
        ask: &DnsAsk,
        rcode: u8,
        found: Option<&Found>,
    ) -> Out {
        let q = &ask.question;
        let mut ptr = None;
        let (records, n) = self.dns.records(&self.cfg, q, found, &mut ptr);
        let answers: smallvec::SmallVec<[Rdata; 2]> = records.into_iter().flatten().collect();
        debug_assert_eq!(answers.len(), n);
        let reply = Reply {
            question: q,
            rcode,
            answers: &answers,
            ttl: crate::vpn::dns::TTL_SECS,
        };
        let mut out = buf;
        match local::dns_reply(pool.space_mut(&out), &self.cfg, ask, &reply) {
            Some(len) => {
                pool.set_len(&mut out, len);
                self.dns.count(rcode);
                self.answer_host(out)
            }
            None => Out::Drop(out, Discard::LocalOnly),
        }
    }

    /// A finished DHT operation that was a DNS lookup or our name's
    /// registration. Gives the event back if it was neither.
    pub(super) fn dns_event(
        &mut self,
        now: Instant,
        ov: &mut Overlay,
        pool: &mut Pool,
        ctx: &Judge<impl Members>,
        e: DhtEvent,
    ) -> Option<DhtEvent> {
        if self.dns.owns_op(e.id) {
            let found = match &e.outcome {
                Outcome::Found(records) => Ok(self.best_name(now, ctx, e.key, records)),
                _ => Err(()),
            };
            let (rcode, found, done) = self.dns.complete(now, e.id, found);
            for p in done {
                let out = self.dns_answer(pool, p.buf, &p.ask, rcode, found.as_ref());
                self.actions.push(Action::Packet(out));
            }
            return None;
        }
        let own = self
            .dns
            .own_name()
            .map(|n| name::name_key(&self.cfg.network, n));
        if own != Some(e.key) {
            return Some(e);
        }
        match (&e.outcome, self.dns.registration.clone()) {
            (Outcome::Stored, Registration::Registering { ip }) => {
                log::info!(
                    "name {} registered",
                    self.dns.own_fqdn().unwrap_or_default()
                );
                self.dns.registration = Registration::Registered { ip };
            }
            (
                Outcome::Exists(holder),
                Registration::Registering { ip } | Registration::Registered { ip },
            ) => {
                log::error!(
                    "name {} is held by node {}: not in DNS",
                    self.dns.own_fqdn().unwrap_or_default(),
                    holder.to_hex()
                );
                self.dns.registration = Registration::Taken { holder: *holder };
                ov.dht_unregister(now, e.key, ctx.signer.identity);
                ov.dht_unregister(
                    now,
                    name::reverse_key(&self.cfg.network, ip),
                    ctx.signer.identity,
                );
            }
            _ => {}
        }
        None
    }

    /// The record among `records` that checks out (the longest-lived). In
    /// an open overlay, one whose address the resolver knows to be
    /// another member's is refused too.
    fn best_name(
        &mut self,
        now: Instant,
        ctx: &Judge<impl Members>,
        key: crate::overlay::Addr,
        records: &[crate::wire::dht::Record],
    ) -> Option<Found> {
        let checker = crate::vpn::record::Checker {
            network: &self.cfg.network,
            trust: ctx.trust,
            wall_origin_us: ctx.wall_origin_us,
        };
        let mut best: Option<(u32, Found)> = None;
        for r in records {
            match name::check(&checker, key, r.owner, &r.value, now) {
                Ok(rec) => {
                    let elsewhere = matches!(self.resolver.answer(now, rec.ip), Answer::Known(k) if k != rec.holder);
                    if elsewhere {
                        self.dns.stats.records_refused += 1;
                    } else if best.as_ref().map_or(true, |(ttl, _)| r.ttl_secs > *ttl) {
                        best = Some((r.ttl_secs, rec.into()));
                    }
                }
                Err(_) => self.dns.stats.records_refused += 1,
            }
        }
        best.map(|(_, f)| f)
    }

    /// Our address is held: register our name under it (forward and
    /// reverse), as DHT creates renewed for as long as we run.
    pub(in crate::vpn) fn register_name(
        &mut self,
        now: Instant,
        ov: &mut Overlay,
        signer: &Signer,
        ip: Ipv4Addr,
    ) {
        let Some(own) = self.dns.own_name().map(str::to_string) else {
            return;
        };
        let Some(value) = name::sign(signer.identity, &own, ip, signer.cert) else {
            log::warn!("name {own} could not be signed: not in DNS");
            return;
        };
        let ttl = super::super::claim::TTL_SECS;
        let forward = ov.dht_register(
            now,
            name::name_key(&self.cfg.network, &own),
            &value,
            ttl,
            true,
        );
        let reverse = ov.dht_register(
            now,
            name::reverse_key(&self.cfg.network, ip),
            &value,
            ttl,
            false,
        );
        if forward.is_some() && reverse.is_some() {
            self.dns.registration = Registration::Registering { ip };
        }
        self.dns.forget(ip);
    }
}
