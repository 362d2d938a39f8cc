//! DNS in the overlay, with no server: every node answers its own host's
//! questions on the virtual router's address (port 53 of the subnet's
//! first address, reached over the TAP), from signed name records in the
//! DHT (`vpn::name`).
//!
//! The zone is the network's name: `NAME.NETWORK.` has the member's A
//! record (and AAAA, its address in the network's /96), the reverse zone
//! `d.c.b.a.in-addr.arpa.` of the subnet has PTR records back to
//! `NAME.NETWORK.`. Every other name is REFUSED: the node is
//! authoritative for its network and recursive for nothing, which is what
//! a per-link DNS domain (systemd-resolved `~NETWORK`) expects. A
//! question waits in a small bounded table for its DHT lookup (holding
//! the query's own pool buffer, which the answer is written over); the
//! answers, found and not found, are kept for a minute in a bounded cache.
//!
//! Our own name is registered once our address is held, and answered
//! without asking the DHT.

use super::name::{self, NameRecord};
use super::VpnConfig;
use crate::buf::PacketBuf;
use crate::overlay::Addr;
use crate::time::Instant;
use crate::wire::dns::{self, Name, Question, Rdata};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

/// TTL of our answers and of a found name in the cache.
pub const TTL_SECS: u32 = 60;
/// How long "no such name" is kept.
const NEGATIVE: Duration = Duration::from_secs(10);
pub const MAX_CACHE: usize = 256;
/// Questions waiting for the DHT at once (each holds a pool buffer).
pub const MAX_PENDING: usize = 32;

/// What a question is about, and the cache's key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Lookup {
    /// A member's name (one label, lower case).
    Name(String),
    /// The name of the member holding an address.
    Reverse(Ipv4Addr),
}

impl Lookup {
    pub fn key(&self, network: &str) -> Addr {
        match self {
            Lookup::Name(n) => name::name_key(network, n),
            Lookup::Reverse(ip) => name::reverse_key(network, *ip),
        }
    }
}

/// A member's name and address, as a checked record said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub name: String,
    pub ip: Ipv4Addr,
}

impl From<NameRecord> for Found {
    fn from(r: NameRecord) -> Found {
        Found {
            name: r.name,
            ip: r.ip,
        }
    }
}

/// Where our own name stands in the DHT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    /// No name to register (none configured, or not a DNS label).
    Nameless,
    /// Waiting for our address.
    Waiting,
    Registering {
        ip: Ipv4Addr,
    },
    Registered {
        ip: Ipv4Addr,
    },
    /// Another member holds the name.
    Taken {
        holder: Addr,
    },
}

/// Counters for status and metrics.
#[derive(Debug, Clone, Default)]
pub struct DnsStats {
    pub queries: u64,
    pub answered: u64,
    pub nxdomain: u64,
    pub refused: u64,
    pub servfail: u64,
    pub malformed: u64,
    pub lookups: u64,
    pub cache_hits: u64,
    /// Name records a lookup returned that did not check out.
    pub records_refused: u64,
}

/// A question waiting for a lookup.
pub struct Pending {
    pub op: u32,
    pub lookup: Lookup,
    pub ask: super::local::DnsAsk,
    pub buf: PacketBuf,
}

/// What to do with a question.
#[derive(Debug)]
pub enum Step {
    /// Answer now with this code and, if found, this member.
    Answer(u8, Option<Found>),
    /// Ask the DHT first.
    Lookup(Lookup),
}

pub struct Dns {
    /// `NETWORK.`; `None` if the network's name is no DNS name.
    zone: Option<Name>,
    /// Our name (lower case), if we have a valid one.
    own: Option<String>,
    pub(super) registration: Registration,
    cache: BTreeMap<Lookup, (Option<Found>, Instant)>,
    pub(super) pending: Vec<Pending>,
    pub stats: DnsStats,
}

impl Dns {
    pub fn new(cfg: &VpnConfig) -> Dns {
        let own = cfg
            .name
            .as_deref()
            .filter(|n| name::valid(n))
            .map(str::to_ascii_lowercase);
        if let Some(n) = cfg.name.as_deref().filter(|n| !name::valid(n)) {
            log::warn!("name {n:?} is not a DNS label (letters, digits, hyphens): not in DNS");
        }
        Dns {
            zone: Name::from_dotted(&cfg.network),
            registration: match own {
                Some(_) => Registration::Waiting,
                None => Registration::Nameless,
            },
            own,
            cache: BTreeMap::new(),
            pending: Vec::new(),
            stats: DnsStats::default(),
        }
    }

    /// Our name as the DNS has it (`h1.office.`), if any.
    pub fn own_fqdn(&self) -> Option<String> {
        Some(format!("{}.{}", self.own.as_ref()?, self.zone?))
    }

    pub fn own_name(&self) -> Option<&str> {
        self.own.as_deref()
    }

    pub fn registration(&self) -> &Registration {
        &self.registration
    }

    /// Decides what `q` needs: an answer now (REFUSED outside our zones,
    /// from ourselves or the cache) or a lookup. `own_ip`: the address we
    /// hold.
    pub fn ask(
        &mut self,
        now: Instant,
        cfg: &VpnConfig,
        q: &Question,
        own_ip: Option<Ipv4Addr>,
    ) -> Step {
        self.stats.queries += 1;
        if q.opcode != 0 {
            return Step::Answer(dns::RCODE_NOTIMP, None);
        }
        let lookup = match self.zone.as_ref().and_then(|z| q.name.strip_zone(z)) {
            Some(label) => match std::str::from_utf8(label) {
                Ok(l) if name::valid(l) => Lookup::Name(l.to_string()),
                _ => return Step::Answer(dns::RCODE_NXDOMAIN, None),
            },
            None if Some(&q.name) == self.zone.as_ref() => {
                return Step::Answer(dns::RCODE_NOERROR, None); // the apex: no records
            }
            None if self.zone.as_ref().is_some_and(|z| q.name.is_under(z)) => {
                return Step::Answer(dns::RCODE_NXDOMAIN, None);
            }
            None => match dns::reverse_v4(&q.name) {
                Some(ip) if cfg.assignable(ip) => Lookup::Reverse(ip),
                Some(ip) if cfg.contains(ip) => return Step::Answer(dns::RCODE_NXDOMAIN, None),
                _ => return Step::Answer(dns::RCODE_REFUSED, None),
            },
        };
        if q.qclass != dns::CLASS_IN && q.qclass != dns::TYPE_ANY {
            return Step::Answer(dns::RCODE_REFUSED, None);
        }
        // Our own name, unless another member holds it.
        let own = self
            .own
            .as_ref()
            .filter(|_| !matches!(self.registration, Registration::Taken { .. }));
        if let (Some(own), Some(ip)) = (own, own_ip) {
            let ours = match &lookup {
                Lookup::Name(n) => n == own,
                Lookup::Reverse(r) => *r == ip,
            };
            if ours {
                let found = Found {
                    name: own.clone(),
                    ip,
                };
                return Step::Answer(dns::RCODE_NOERROR, Some(found));
            }
        }
        match self.cache.get(&lookup) {
            Some((found, until)) if *until > now => {
                self.stats.cache_hits += 1;
                let rcode = if found.is_some() {
                    dns::RCODE_NOERROR
                } else {
                    dns::RCODE_NXDOMAIN
                };
                Step::Answer(rcode, found.clone())
            }
            _ => Step::Lookup(lookup),
        }
    }

    /// Whether another question may wait for the DHT.
    pub fn can_wait(&self) -> bool {
        self.pending.len() < MAX_PENDING
    }

    /// The lookup already running for `l`, if any.
    pub fn running(&self, l: &Lookup) -> Option<u32> {
        self.pending.iter().find(|p| p.lookup == *l).map(|p| p.op)
    }

    pub fn owns_op(&self, op: u32) -> bool {
        self.pending.iter().any(|p| p.op == op)
    }

    /// A lookup finished: `found` is the checked record, `None` for no
    /// such name, `Err` if the DHT could not tell. Returns the questions
    /// that waited for it.
    pub fn complete(
        &mut self,
        now: Instant,
        op: u32,
        found: Result<Option<Found>, ()>,
    ) -> (u8, Option<Found>, Vec<Pending>) {
        let (done, rest) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p: &Pending| p.op == op);
        self.pending = rest;
        let rcode = match &found {
            Ok(Some(_)) => dns::RCODE_NOERROR,
            Ok(None) => dns::RCODE_NXDOMAIN,
            Err(()) => dns::RCODE_SERVFAIL,
        };
        let found = found.ok().flatten();
        if let Some(l) = done.first().map(|p| p.lookup.clone()) {
            if rcode != dns::RCODE_SERVFAIL {
                let ttl = match found {
                    Some(_) => Duration::from_secs(u64::from(TTL_SECS)),
                    None => NEGATIVE,
                };
                self.remember(now, l, found.clone(), now + ttl);
            }
        }
        (rcode, found, done)
    }

    fn remember(&mut self, now: Instant, l: Lookup, found: Option<Found>, until: Instant) {
        if self.cache.len() >= MAX_CACHE {
            self.cache.retain(|_, (_, t)| *t > now);
        }
        if self.cache.len() >= MAX_CACHE {
            // Still full of live answers: the one that expires first goes.
            if let Some(k) = self
                .cache
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| k.clone())
            {
                self.cache.remove(&k);
            }
        }
        self.cache.insert(l, (found, until));
    }

    /// Forgets what the cache says of `ip` and of the name that had it
    /// (its holder changed).
    pub fn forget(&mut self, ip: Ipv4Addr) {
        self.cache.retain(|l, (f, _)| {
            *l != Lookup::Reverse(ip) && f.as_ref().map_or(true, |f| f.ip != ip)
        });
    }

    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// Counts an answer by its code.
    pub fn count(&mut self, rcode: u8) {
        let s = &mut self.stats;
        match rcode {
            dns::RCODE_NOERROR => s.answered += 1,
            dns::RCODE_NXDOMAIN => s.nxdomain += 1,
            dns::RCODE_REFUSED | dns::RCODE_NOTIMP => s.refused += 1,
            _ => s.servfail += 1,
        }
    }

    /// The records that answer `q` with `found` (none for another type).
    pub fn records<'a>(
        &self,
        cfg: &VpnConfig,
        q: &Question,
        found: Option<&Found>,
        ptr: &'a mut Option<Name>,
    ) -> ([Option<Rdata<'a>>; 2], usize) {
        let mut out = [None, None];
        let Some(f) = found else {
            return (out, 0);
        };
        let any = q.qtype == dns::TYPE_ANY;
        let mut n = 0;
        if dns::reverse_v4(&q.name).is_some() {
            if q.qtype == dns::TYPE_PTR || any {
                *ptr = self
                    .zone
                    .and_then(|z| Name::from_dotted(&format!("{}.{}", f.name, z)));
                if let Some(p) = ptr.as_ref() {
                    out[0] = Some(Rdata::Ptr(p));
                    n = 1;
                }
            }
            return (out, n);
        }
        if q.qtype == dns::TYPE_A || any {
            out[n] = Some(Rdata::A(f.ip));
            n += 1;
        }
        if q.qtype == dns::TYPE_AAAA || any {
            if let Some(v6) = cfg.v6_of(f.ip) {
                out[n] = Some(Rdata::Aaaa(v6));
                n += 1;
            }
        }
        (out, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::dns::{RCODE_NOERROR, RCODE_NXDOMAIN, RCODE_REFUSED};

    fn cfg() -> VpnConfig {
        let mut c = VpnConfig::new("office");
        c.name = Some("H1".into());
        c
    }

    fn q(name: &str, qtype: u16) -> Question {
        Question {
            id: 7,
            opcode: 0,
            recursion_desired: true,
            name: Name::from_dotted(name).unwrap(),
            qtype,
            qclass: dns::CLASS_IN,
        }
    }

    const ME: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 10);
    const T0: Instant = Instant::ZERO;

    #[test]
    fn questions_outside_the_zones_are_refused_and_ours_answered_locally() {
        let c = cfg();
        let mut d = Dns::new(&c);
        assert_eq!(d.own_fqdn().as_deref(), Some("h1.office."));
        let a = |d: &mut Dns, n: &str| match d.ask(T0, &c, &q(n, dns::TYPE_A), Some(ME)) {
            Step::Answer(rcode, f) => Some((rcode, f.map(|f| f.ip))),
            Step::Lookup(_) => None,
        };
        assert_eq!(a(&mut d, "example.com"), Some((RCODE_REFUSED, None)));
        assert_eq!(a(&mut d, "h1.office"), Some((RCODE_NOERROR, Some(ME))));
        assert_eq!(a(&mut d, "H1.OFFICE."), Some((RCODE_NOERROR, Some(ME))));
        assert_eq!(a(&mut d, "office"), Some((RCODE_NOERROR, None)));
        assert_eq!(a(&mut d, "a.b.office"), Some((RCODE_NXDOMAIN, None)));
        assert_eq!(
            a(&mut d, "10.0.64.100.in-addr.arpa"),
            Some((RCODE_NOERROR, Some(ME)))
        );
        assert_eq!(
            a(&mut d, "1.0.64.100.in-addr.arpa"),
            Some((RCODE_NXDOMAIN, None))
        );
        assert_eq!(
            a(&mut d, "1.0.0.10.in-addr.arpa"),
            Some((RCODE_REFUSED, None))
        );
        assert_eq!(a(&mut d, "h2.office"), None);
    }

    #[test]
    fn answers_are_cached_bounded_and_expire() {
        let c = cfg();
        let mut d = Dns::new(&c);
        let found = Found {
            name: "h2".into(),
            ip: Ipv4Addr::new(100, 64, 0, 2),
        };
        d.remember(
            T0,
            Lookup::Name("h2".into()),
            Some(found.clone()),
            T0 + Duration::from_secs(60),
        );
        d.remember(T0, Lookup::Name("nx".into()), None, T0 + NEGATIVE);
        let at = |s| T0 + Duration::from_secs(s);
        assert!(
            matches!(d.ask(at(1), &c, &q("h2.office", 1), None), Step::Answer(0, Some(f)) if f == found)
        );
        assert!(matches!(
            d.ask(at(1), &c, &q("nx.office", 1), None),
            Step::Answer(3, None)
        ));
        assert!(matches!(
            d.ask(at(11), &c, &q("nx.office", 1), None),
            Step::Lookup(_)
        ));
        assert!(matches!(
            d.ask(at(61), &c, &q("h2.office", 1), None),
            Step::Lookup(_)
        ));
        for i in 0..2 * MAX_CACHE as u32 {
            d.remember(
                at(1),
                Lookup::Reverse(Ipv4Addr::from(i)),
                None,
                at(100 + u64::from(i)),
            );
        }
        assert_eq!(d.cached(), MAX_CACHE);
        d.forget(Ipv4Addr::from(2 * MAX_CACHE as u32 - 1));
        assert_eq!(d.cached(), MAX_CACHE - 1);
    }

    #[test]
    fn records_follow_the_question_type() {
        let c = cfg();
        let d = Dns::new(&c);
        let f = Found {
            name: "h2".into(),
            ip: Ipv4Addr::new(100, 64, 0, 2),
        };
        let mut ptr = None;
        let (r, n) = d.records(&c, &q("h2.office", dns::TYPE_ANY), Some(&f), &mut ptr);
        assert_eq!(n, 2);
        assert_eq!(r[0], Some(Rdata::A(f.ip)));
        assert_eq!(r[1], Some(Rdata::Aaaa(c.v6_of(f.ip).unwrap())));
        let mut ptr = None;
        let (_, n) = d.records(&c, &q("h2.office", dns::TYPE_PTR), Some(&f), &mut ptr);
        assert_eq!(n, 0);
        let mut ptr = None;
        let (r, n) = d.records(
            &c,
            &q("2.0.64.100.in-addr.arpa", dns::TYPE_PTR),
            Some(&f),
            &mut ptr,
        );
        assert_eq!(n, 1);
        assert_eq!(
            r[0].map(|r| format!("{r:?}")),
            Some("Ptr(h2.office.)".into())
        );
    }
}
