//! Routes without a server: exit gateways and subnet routes, learned from
//! the DHT and chosen by each member for itself.
//!
//! A member that carries traffic for prefixes outside the VPN — an exit
//! gateway (0.0.0.0/0, ::/0) or a router for a LAN behind it — signs a
//! route record (`record`) and keeps it registered in the DHT under its
//! slot. Every member that wants routes (a client with `exit` set, or one
//! that accepts subnet routes) reads the network's few slot keys now and
//! then, checks each record as it checks an address record (signature,
//! place, and the advertiser's authority: its certificate's routes, or the
//! config's `[peer] routes`), and keeps a table of advertisers.
//!
//! Choosing is local and continuous. Every advertiser a member might use
//! is probed twice a second over its end-to-end session (a ping; the node
//! does it when asked with [`Action::Probe`]); one that has not been heard
//! for [`DEAD_AFTER`] is dead. For each prefix the member uses the
//! advertiser it already uses while that one lives; otherwise the live one
//! with the lowest RTT (the floor of its last probes' RTTs: pings queued
//! behind our own traffic do not count). It moves to another live one
//! only when that one is clearly faster (by a third and
//! [`WORTH_MOVING`]) and has answered for [`STABLE_FOR`]: a move costs every
//! open connection through a masquerading gateway its NAT state, so
//! equally good gateways are not swapped back and forth. A dead gateway
//! thus costs at most [`DEAD_AFTER`] plus a probe interval of traffic.
//!
//! The data path asks two questions, both a scan of a small inline table
//! with no allocation: where does a packet for an outside address go
//! ([`Routes::next_hop`]), and may this member send us packets from that
//! outside address ([`Routes::accepts`]) — only the member we chose for
//! it. The gateway's side is [`Routes::carries`]: a member's packet for an
//! outside address is taken only by a member that advertises it.
//!
//! Two sites that advertise overlapping but different prefixes (one's
//! 198.19.5.0/24 inside the other's 198.19.0.0/16) are both refused, with
//! an error naming both advertisers: silently preferring one would send a
//! site's traffic to the other. Identical prefixes from several
//! advertisers are redundancy, and fail over.

mod choose;
pub mod record;

use crate::crypto::{Identity, NodeKey};
use crate::net::Prefix;
use crate::overlay::dht::client::{Event as DhtEvent, Outcome};
use crate::overlay::{Addr, Overlay};
use crate::time::Instant;
use record::{Authority, Checker, RouteError};
use smallvec::SmallVec;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

/// How often advertisers in use (or candidates) are probed.
pub const PROBE_EVERY: Duration = Duration::from_millis(500);
/// Unheard this long while probed (four probes): dead.
pub const DEAD_AFTER: Duration = Duration::from_secs(2);
/// A faster advertiser must have answered this long before we move to it.
pub const STABLE_FOR: Duration = Duration::from_secs(10);
/// How often the slots are read again (records live [`TTL_SECS`]).
pub const REFRESH_EVERY: Duration = Duration::from_secs(30);
/// Our record's lifetime in the DHT (renewed at half).
pub const TTL_SECS: u32 = 120;
/// An advertiser no refresh returned for this long is forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(75);
/// Advertisers kept (a bound, well above the 32 the slots can show).
pub const MAX_ADVERTISERS: usize = 64;
/// Probes whose RTTs are remembered.
const RTT_SAMPLES: usize = 8;
/// A faster advertiser is worth a move only if it saves this much (and a
/// third): moving breaks every connection a gateway masquerades, so a
/// LAN's fraction of a millisecond never is.
const WORTH_MOVING: Duration = Duration::from_millis(10);
/// Advertisers probed at once.
const MAX_PROBED: usize = 8;
/// The first refreshes come quickly (the ring may still be settling).
const FIRST_REFRESHES: [Duration; 3] = [
    Duration::from_secs(2),
    Duration::from_secs(6),
    Duration::from_secs(15),
];

/// Which gateway carries our traffic for the internet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    Off,
    /// The live one with the lowest RTT, with failover.
    Auto,
    /// This member only: its name (certificate or `[peer]` name) or its
    /// virtual IPv4 address. No failover: the user chose it.
    Named(String),
}

/// What the routes need to know.
#[derive(Debug, Clone)]
pub struct RoutesConfig {
    pub network: String,
    /// Prefixes we carry for others (a gateway's 0.0.0.0/0 and ::/0, a
    /// router's LAN).
    pub advertise: Vec<Prefix>,
    pub exit: Exit,
    /// Use other members' subnet routes.
    pub accept: bool,
    /// Static-key mode: who may route what (`[peer] routes`).
    pub listed: Vec<(NodeKey, Vec<Prefix>)>,
    /// Names for keys we know (static `[peer]` names).
    pub names: Vec<(NodeKey, String)>,
    /// The VPN's own ranges: a route inside them is refused.
    pub vpn: Vec<Prefix>,
}

impl RoutesConfig {
    pub fn new(network: &str) -> RoutesConfig {
        RoutesConfig {
            network: network.to_string(),
            advertise: Vec::new(),
            exit: Exit::Off,
            accept: true,
            listed: Vec::new(),
            names: Vec::new(),
            vpn: Vec::new(),
        }
    }

    /// Whether the routes have anything to do at all.
    pub fn active(&self) -> bool {
        !self.advertise.is_empty() || self.exit != Exit::Off || self.accept
    }
}

/// How sure we are that an advertiser answers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Health {
    /// First probe sent.
    pub probing_since: Option<Instant>,
    /// Last heard from (any authenticated message), as the node reports.
    pub heard: Option<Instant>,
    /// The last RTT measured.
    pub rtt: Option<Duration>,
    /// The RTTs of the last probes: their minimum is what choosing
    /// compares (a path busy with our own traffic queues its pings; its
    /// floor is what it costs).
    samples: [Option<Duration>; RTT_SAMPLES],
    next_sample: usize,
    /// Alive without a break since.
    pub up_since: Option<Instant>,
}

impl Health {
    pub fn alive(&self) -> bool {
        self.up_since.is_some()
    }

    /// The lowest recent RTT.
    pub fn floor_rtt(&self) -> Option<Duration> {
        self.samples.iter().flatten().min().copied()
    }

    fn sample(&mut self, rtt: Option<Duration>) {
        if let Some(r) = rtt {
            self.rtt = Some(r);
            self.samples[self.next_sample] = Some(r);
            self.next_sample = (self.next_sample + 1) % RTT_SAMPLES;
        }
    }
}

/// A member that advertises routes.
#[derive(Debug, Clone)]
pub struct Advertiser {
    pub key: NodeKey,
    pub name: String,
    pub ip: Option<Ipv4Addr>,
    pub prefixes: Vec<Prefix>,
    /// Last refresh that returned its record.
    pub seen: Instant,
    pub health: Health,
}

/// What the node asks of the member behind a key.
pub trait Liveness {
    /// When we last heard from `key`, and its RTT.
    fn heard(&self, key: &NodeKey) -> (Option<Instant>, Option<Duration>);
}

/// What the routes ask of the node (and, through it, the shell).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Ping this member (over a session: make one if needed).
    Probe(NodeKey),
    /// A subnet route is usable now: the shell points it at the TAP.
    Install(Prefix),
    /// No one advertises it any more.
    Remove(Prefix),
}

/// Counters for status.
#[derive(Debug, Clone, Default)]
pub struct RouteStats {
    pub refreshes: u64,
    /// Records that did not check out (forged, misplaced, not allowed).
    pub records_refused: u64,
    /// Prefixes refused for overlapping another site's or the VPN's.
    pub overlaps_refused: u64,
    /// Moves from one advertiser to another (failover or a faster one).
    pub switches: u64,
}

/// The prefix an overlap refusal is about, for status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlap {
    pub prefix: Prefix,
    pub advertiser: String,
    pub other: Prefix,
    pub other_advertiser: String,
}

/// One prefix in use: where its packets go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InUse {
    pub prefix: Prefix,
    pub via: NodeKey,
}

pub struct Routes {
    cfg: RoutesConfig,
    me: NodeKey,
    advertisers: Vec<Advertiser>,
    /// The data path's table: prefix → member, longest match wins.
    table: SmallVec<[InUse; 8]>,
    /// Subnet prefixes the shell has been told to install.
    installed: Vec<Prefix>,
    overlaps: Vec<Overlap>,
    /// Why the exit is what it is, for status.
    exit_why: &'static str,
    /// Slot reads in flight (DHT operation ids).
    reads: SmallVec<[u32; 8]>,
    first_link: Option<Instant>,
    refreshes_done: usize,
    next_refresh: Option<Instant>,
    next_probe: Instant,
    registered: Option<Addr>,
    stats: RouteStats,
    actions: Vec<Action>,
}

/// Our own record's parts, for signing.
pub struct Signer<'a> {
    pub identity: &'a Identity,
    pub cert: Option<&'a [u8]>,
    pub ip: Option<Ipv4Addr>,
}

/// What DHT results are checked with.
pub struct Judge<'a> {
    /// Certificate mode's trust; `None`: static keys (`[peer] routes`).
    pub trust: Option<&'a crate::crypto::cert::Trust>,
    pub wall_origin_us: u64,
}

impl Routes {
    pub fn new(cfg: RoutesConfig, me: NodeKey, now: Instant) -> Routes {
        Routes {
            cfg,
            me,
            advertisers: Vec::new(),
            table: SmallVec::new(),
            installed: Vec::new(),
            overlaps: Vec::new(),
            exit_why: "no gateway known yet",
            reads: SmallVec::new(),
            first_link: None,
            refreshes_done: 0,
            next_refresh: None,
            next_probe: now,
            registered: None,
            stats: RouteStats::default(),
            actions: Vec::new(),
        }
    }

    pub fn config(&self) -> &RoutesConfig {
        &self.cfg
    }

    pub fn advertisers(&self) -> &[Advertiser] {
        &self.advertisers
    }

    pub fn in_use(&self) -> &[InUse] {
        &self.table
    }

    pub fn overlaps(&self) -> &[Overlap] {
        &self.overlaps
    }

    pub fn stats(&self) -> &RouteStats {
        &self.stats
    }

    pub fn exit_why(&self) -> &'static str {
        self.exit_why
    }

    /// The gateway our internet traffic goes to.
    pub fn exit(&self) -> Option<NodeKey> {
        self.table
            .iter()
            .find(|u| u.prefix.is_default())
            .map(|u| u.via)
    }

    pub fn drain_actions(&mut self) -> std::vec::Drain<'_, Action> {
        self.actions.drain(..)
    }

    // ----- the data path -----

    /// The member a packet for `dst` (outside the VPN) goes to: the
    /// longest prefix in use that holds it.
    #[inline]
    pub fn next_hop(&self, dst: IpAddr) -> Option<NodeKey> {
        let mut best: Option<&InUse> = None;
        for u in &self.table {
            if u.prefix.contains(dst) && best.map_or(true, |b| u.prefix.len > b.prefix.len) {
                best = Some(u);
            }
        }
        best.map(|u| u.via)
    }

    /// Whether a packet from the outside address `src` may come from
    /// `from`: only from the member we send that address's traffic to.
    #[inline]
    pub fn accepts(&self, src: IpAddr, from: &NodeKey) -> bool {
        self.next_hop(src).as_ref() == Some(from)
    }

    /// Whether we carry traffic for `dst` (a member's packet for an
    /// outside address is ours to forward).
    #[inline]
    pub fn carries(&self, dst: IpAddr) -> bool {
        self.cfg.advertise.iter().any(|p| p.contains(dst))
    }

    // ----- timers -----

    /// Registers our record (once our address is known, and again when
    /// it changes), reads the slots when due, probes advertisers, and
    /// re-chooses.
    pub fn handle_timeout(
        &mut self,
        now: Instant,
        ov: &mut Overlay,
        signer: &Signer,
        live: &impl Liveness,
        linked: bool,
    ) {
        if linked && self.first_link.is_none() {
            self.first_link = Some(now);
            self.next_refresh = Some(now + FIRST_REFRESHES[0]);
        }
        self.register(now, ov, signer);
        if self.wants_routes() && self.next_refresh.is_some_and(|t| now >= t) {
            self.refresh(now, ov);
        }
        if now >= self.next_probe {
            self.next_probe = now + PROBE_EVERY;
            // Advertisers no read returned for long are gone.
            let known = self.advertisers.len();
            self.advertisers
                .retain(|a| now.saturating_since(a.seen) < FORGET_AFTER);
            if self.advertisers.len() != known {
                self.find_overlaps();
            }
            self.probe(now, live);
            self.choose(now);
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let refresh = self.next_refresh.filter(|_| self.wants_routes());
        let probe =
            (!self.advertisers.is_empty() || self.registered.is_none()).then_some(self.next_probe);
        crate::time::earliest(refresh, probe)
    }

    fn wants_routes(&self) -> bool {
        self.cfg.exit != Exit::Off || self.cfg.accept
    }

    /// Our record is signed again at the next timer (a renewed
    /// certificate): the new value replaces the registered one.
    pub fn resign(&mut self) {
        self.registered = None;
    }

    /// Keeps our record registered once our address is held (it names
    /// the address, for `exit = IP`).
    fn register(&mut self, now: Instant, ov: &mut Overlay, signer: &Signer) {
        if self.cfg.advertise.is_empty() || self.registered.is_some() || signer.ip.is_none() {
            return;
        }
        let Some(value) =
            record::sign(signer.identity, signer.ip, &self.cfg.advertise, signer.cert)
        else {
            log::error!("routes: too many prefixes or too long a certificate: not advertised");
            self.cfg.advertise.clear();
            return;
        };
        let key = record::slot_key(&self.cfg.network, record::slot_of(&self.me));
        if ov.dht_register(now, key, &value, TTL_SECS, false).is_some() {
            log::info!("routes: advertising {}", list(&self.cfg.advertise));
            self.registered = Some(key);
        }
    }

    fn refresh(&mut self, now: Instant, ov: &mut Overlay) {
        self.stats.refreshes += 1;
        self.reads.clear();
        for slot in 0..record::SLOTS {
            let key = record::slot_key(&self.cfg.network, slot);
            self.reads.push(ov.dht_get(now, key, false));
        }
        let next = FIRST_REFRESHES
            .get(self.refreshes_done + 1)
            .zip(FIRST_REFRESHES.get(self.refreshes_done))
            .map_or(REFRESH_EVERY, |(b, a)| *b - *a);
        self.refreshes_done += 1;
        self.next_refresh = Some(now + next);
    }

    // ----- DHT results -----

    /// A finished DHT operation: a slot read gives its advertisers. Gives
    /// the event back if it was not ours.
    pub fn dht_event(&mut self, now: Instant, judge: &Judge, e: DhtEvent) -> Option<DhtEvent> {
        let Some(i) = self.reads.iter().position(|&op| op == e.id) else {
            return Some(e);
        };
        self.reads.swap_remove(i);
        let Outcome::Found(records) = &e.outcome else {
            return None;
        };
        let authority = match judge.trust {
            Some(t) => Authority::Certificates(t),
            None => Authority::Listed(&self.cfg.listed),
        };
        let checker = Checker {
            network: &self.cfg.network,
            authority,
            wall_origin_us: judge.wall_origin_us,
        };
        let mut fresh = Vec::new();
        for r in records {
            match checker.check(e.key, r.owner, &r.value, now) {
                Ok(rec) if rec.advertiser == self.me => {}
                Ok(rec) => fresh.push(rec),
                Err(why) => {
                    self.stats.records_refused += 1;
                    if let RouteError::NotAllowed(p) = why {
                        log::warn!(
                            "routes: {} advertises {p}, which it may not route: refused",
                            r.owner.to_hex()
                        );
                    }
                }
            }
        }
        for rec in fresh {
            self.learn(now, rec);
        }
        // Judged once the whole refresh is in: an overlap between two
        // slots must not install one side for a moment.
        if self.reads.is_empty() {
            self.find_overlaps();
            self.choose(now);
        }
        None
    }

    fn learn(&mut self, now: Instant, rec: record::RouteRecord) {
        let name = rec
            .cert
            .as_ref()
            .map(|c| c.name.clone())
            .or_else(|| {
                let n = self.cfg.names.iter().find(|(k, _)| *k == rec.advertiser);
                n.map(|(_, n)| n.clone())
            })
            .unwrap_or_else(|| Addr::of_key(&rec.advertiser).to_hex()[..16].to_string());
        let full = self.advertisers.len() >= MAX_ADVERTISERS;
        match self
            .advertisers
            .iter_mut()
            .find(|a| a.key == rec.advertiser)
        {
            Some(a) => {
                a.seen = now;
                a.prefixes = rec.prefixes;
                a.ip = rec.ip;
                a.name = name;
            }
            None if !full => {
                log::info!("routes: {name} advertises {}", list(&rec.prefixes));
                self.advertisers.push(Advertiser {
                    key: rec.advertiser,
                    name,
                    ip: rec.ip,
                    prefixes: rec.prefixes,
                    seen: now,
                    health: Health::default(),
                });
            }
            None => {}
        }
    }

    pub fn name_of(&self, key: &NodeKey) -> String {
        self.advertisers.iter().find(|a| a.key == *key).map_or_else(
            || Addr::of_key(key).to_hex()[..16].to_string(),
            |a| a.name.clone(),
        )
    }
}

fn list(p: &[Prefix]) -> String {
    p.iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests;
