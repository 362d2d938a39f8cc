//! The firewall: inbound rules by certificate group, member name or
//! address, with stateful return traffic — Nebula's model on ringvpn's
//! certificates.
//!
//! Without rules everything within the network passes (as before rules
//! existed). Once rules are given, a packet that reaches this host from a
//! member — for the host itself, or to be forwarded by it as a gateway or
//! router — passes only if it answers a flow the host started, or a rule
//! allows it; everything else is dropped and counted (`firewall_denied`).
//! A rule says what (`tcp`, `udp`, `icmp` or `any`, and a destination
//! port or range) and from whom: `group:NAME` and `name:NAME` (the
//! sender's certificate, checked in the handshake; in static-key mode the
//! `[peer]` name), a prefix (the packet's source address: for traffic that
//! came through a route, the outside host's), or `any`.
//!
//! State is a fixed table of flows the host started ([`MAX_FLOWS`], set
//! up once): each outbound packet refreshes its flow, and an inbound
//! packet that is its reverse passes. A full table forgets the least
//! recently used flow of the few a key may live in, so the table never
//! grows and never allocates per packet. ICMP errors pass (path MTU
//! discovery needs them); ring broadcasts and multicast are not filtered.

use crate::net::Prefix;
use crate::time::Instant;
use crate::wire::ip::{Transport, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};
use std::net::IpAddr;
use std::time::Duration;

/// Flows remembered at most (~48 bytes each: 192 KiB).
pub const MAX_FLOWS: usize = 4096;
/// Slots a flow may live in (its hash's and the next ones).
const WAYS: usize = 8;
/// A TCP flow nothing crossed for this long is forgotten.
const TCP_IDLE: Duration = Duration::from_secs(600);
/// Other flows (UDP, ICMP echo).
const OTHER_IDLE: Duration = Duration::from_secs(120);

/// Which protocol a rule is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Any,
    Tcp,
    Udp,
    /// ICMP and ICMPv6.
    Icmp,
}

/// Who a rule is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    Any,
    Group(String),
    Name(String),
    Prefix(Prefix),
}

/// One inbound rule: `PROTO PORT WHO`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub proto: Proto,
    /// Destination ports, inclusive (`0..=65535`: any).
    pub ports: (u16, u16),
    pub who: Who,
}

impl Rule {
    /// `tcp 22 group:admin`, `udp 5000-5100 198.19.5.0/24`, `icmp any any`.
    pub fn parse(s: &str) -> Result<Rule, String> {
        let wrong = "PROTO PORT WHO: tcp|udp|icmp|any, a port, LOW-HIGH or any, and group:NAME, name:NAME, a prefix or any";
        let parts: Vec<&str> = s.split_whitespace().collect();
        let [proto, port, who] = parts[..] else {
            return Err(wrong.into());
        };
        let proto = match proto {
            "any" => Proto::Any,
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            "icmp" => Proto::Icmp,
            _ => return Err(wrong.into()),
        };
        let ports = match port {
            "any" => (0, u16::MAX),
            p => {
                let (lo, hi) = p.split_once('-').unwrap_or((p, p));
                let lo: u16 = lo.parse().map_err(|_| wrong)?;
                let hi: u16 = hi.parse().map_err(|_| wrong)?;
                if lo > hi || matches!(proto, Proto::Icmp | Proto::Any) {
                    return Err(format!("{wrong} (ports only with tcp or udp)"));
                }
                (lo, hi)
            }
        };
        let who = match who.split_once(':') {
            _ if who == "any" => Who::Any,
            Some(("group", g)) if !g.is_empty() => Who::Group(g.to_string()),
            Some(("name", n)) if !n.is_empty() => Who::Name(n.to_string()),
            _ => Who::Prefix(Prefix::parse(who).filter(Prefix::is_network).ok_or(wrong)?),
        };
        Ok(Rule { proto, ports, who })
    }

    fn matches(&self, t: &Transport, from: &Origin) -> bool {
        let proto = match self.proto {
            Proto::Any => true,
            Proto::Tcp => t.proto == PROTO_TCP,
            Proto::Udp => t.proto == PROTO_UDP,
            Proto::Icmp => t.proto == PROTO_ICMP || t.proto == PROTO_ICMPV6,
        };
        let port =
            self.ports == (0, u16::MAX) || (self.ports.0..=self.ports.1).contains(&t.dst_port);
        proto
            && port
            && match &self.who {
                Who::Any => true,
                Who::Group(g) => from.groups.iter().any(|x| x == g),
                Who::Name(n) => from.name == Some(n.as_str()),
                Who::Prefix(p) => p.contains(t.src),
            }
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let proto = match self.proto {
            Proto::Any => "any",
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
        };
        match self.ports {
            (0, u16::MAX) => write!(f, "{proto} any ")?,
            (a, b) if a == b => write!(f, "{proto} {a} ")?,
            (a, b) => write!(f, "{proto} {a}-{b} ")?,
        }
        match &self.who {
            Who::Any => write!(f, "any"),
            Who::Group(g) => write!(f, "group:{g}"),
            Who::Name(n) => write!(f, "name:{n}"),
            Who::Prefix(p) => write!(f, "{p}"),
        }
    }
}

/// Who sent a packet, as far as rules can tell: the member's certificate
/// groups and name (none for a packet from an outside host, which only
/// prefix and `any` rules match).
#[derive(Debug, Clone, Copy, Default)]
pub struct Origin<'a> {
    pub groups: &'a [String],
    pub name: Option<&'a str>,
}

/// Counters for status.
#[derive(Debug, Clone, Default)]
pub struct FirewallStats {
    /// Inbound packets of open flows (answers to ours, and the rest of a
    /// flow a rule let in once the host answered it).
    pub established: u64,
    pub denied: u64,
    /// Flows forgotten to make room (the table was full where they lived).
    pub evicted: u64,
}

/// A flow as the host sees it: (protocol, our address and port, theirs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct FlowKey {
    proto: u8,
    local: [u8; 16],
    remote: [u8; 16],
    local_port: u16,
    remote_port: u16,
}

fn octets(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

impl FlowKey {
    /// The flow of a packet the host sends.
    fn outbound(t: &Transport) -> FlowKey {
        FlowKey {
            proto: t.proto,
            local: octets(t.src),
            remote: octets(t.dst),
            local_port: t.src_port,
            remote_port: t.dst_port,
        }
    }

    /// The flow a packet for the host would answer.
    fn inbound(t: &Transport) -> FlowKey {
        FlowKey {
            proto: t.proto,
            local: octets(t.dst),
            remote: octets(t.src),
            local_port: t.dst_port,
            remote_port: t.src_port,
        }
    }

    /// A multiply-rotate hash over the key's words, seeded with a secret
    /// of this firewall: a peer that picks its ports cannot aim its
    /// flows at the slots of ours (and the table bounds the harm of a
    /// collision to one key's few slots anyway).
    fn hash(&self, seed: u64) -> usize {
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        let word = |b: &[u8; 16], i: usize| {
            u64::from_ne_bytes([
                b[i],
                b[i + 1],
                b[i + 2],
                b[i + 3],
                b[i + 4],
                b[i + 5],
                b[i + 6],
                b[i + 7],
            ])
        };
        let ports = u64::from(self.proto) << 32
            | u64::from(self.local_port) << 16
            | u64::from(self.remote_port);
        let mut h = (seed ^ ports).wrapping_mul(K);
        for x in [
            word(&self.local, 0),
            word(&self.local, 8),
            word(&self.remote, 0),
            word(&self.remote, 8),
        ] {
            h = (h ^ x).wrapping_mul(K).rotate_left(29);
        }
        (h ^ (h >> 32)) as usize
    }
}

#[derive(Clone, Copy, Default)]
struct Slot {
    key: FlowKey,
    /// Last packet of the flow; `None`: free.
    seen: Option<Instant>,
}

/// The inbound rules, their hits, and the flows the host started.
pub struct Firewall {
    rules: Vec<Rule>,
    hits: Vec<u64>,
    /// Empty without rules (nothing is remembered then).
    flows: Box<[Slot]>,
    /// The flow hash's secret.
    seed: u64,
    stats: FirewallStats,
}

fn idle(proto: u8) -> Duration {
    if proto == PROTO_TCP {
        TCP_IDLE
    } else {
        OTHER_IDLE
    }
}

impl Firewall {
    /// `seed`: a secret for the flow hash (random per start).
    pub fn new(rules: Vec<Rule>, seed: u64) -> Firewall {
        let flows = if rules.is_empty() {
            Box::default()
        } else {
            vec![Slot::default(); MAX_FLOWS].into_boxed_slice()
        };
        Firewall {
            hits: vec![0; rules.len()],
            rules,
            flows,
            seed,
            stats: FirewallStats::default(),
        }
    }

    /// New rules (a reload): the flows the host opened stay open, the
    /// hit counts start again.
    pub fn set_rules(&mut self, rules: Vec<Rule>) {
        if self.flows.is_empty() && !rules.is_empty() {
            self.flows = vec![Slot::default(); MAX_FLOWS].into_boxed_slice();
        }
        self.hits = vec![0; rules.len()];
        self.rules = rules;
    }

    /// Whether rules were given (without, every packet passes and
    /// nothing is looked at).
    #[inline]
    pub fn enabled(&self) -> bool {
        !self.rules.is_empty()
    }

    pub fn rules(&self) -> impl Iterator<Item = (&Rule, u64)> {
        self.rules.iter().zip(self.hits.iter().copied())
    }

    pub fn stats(&self) -> &FirewallStats {
        &self.stats
    }

    /// Flows remembered now.
    pub fn flows(&self, now: Instant) -> usize {
        self.flows
            .iter()
            .filter(|s| {
                s.seen
                    .is_some_and(|t| now.saturating_since(t) < idle(s.key.proto))
            })
            .count()
    }

    /// A packet the host sends: its flow is remembered, so that the
    /// answers pass.
    pub fn outbound(&mut self, now: Instant, t: &Transport) {
        if !self.enabled() || is_icmp_error(t) {
            return;
        }
        let key = FlowKey::outbound(t);
        let start = key.hash(self.seed) % self.flows.len();
        let mut victim = start;
        let mut oldest = None::<Instant>;
        for w in 0..WAYS {
            let i = (start + w) % self.flows.len();
            let s = &mut self.flows[i];
            if s.seen.is_some() && s.key == key {
                s.seen = Some(now);
                return;
            }
            let live = s
                .seen
                .filter(|&t| now.saturating_since(t) < idle(s.key.proto));
            match live {
                None => {
                    victim = i;
                    oldest = None;
                    break;
                }
                Some(t) if oldest.map_or(true, |o| t < o) => {
                    victim = i;
                    oldest = Some(t);
                }
                Some(_) => {}
            }
        }
        if oldest.is_some() {
            self.stats.evicted += 1;
        }
        self.flows[victim] = Slot {
            key,
            seen: Some(now),
        };
    }

    /// A packet for the host (or through it) from a member or through a
    /// route: whether it passes.
    pub fn inbound(&mut self, now: Instant, t: &Transport, from: &Origin) -> bool {
        if !self.enabled() || is_icmp_error(t) {
            return true;
        }
        if self.answers_a_flow(now, t) {
            self.stats.established += 1;
            return true;
        }
        if let Some(i) = self.rules.iter().position(|r| r.matches(t, from)) {
            self.hits[i] += 1;
            return true;
        }
        self.stats.denied += 1;
        false
    }

    fn answers_a_flow(&mut self, now: Instant, t: &Transport) -> bool {
        let key = FlowKey::inbound(t);
        let start = key.hash(self.seed) % self.flows.len();
        for w in 0..WAYS {
            let s = &mut self.flows[(start + w) % self.flows.len()];
            if s.key == key {
                if let Some(seen) = s.seen {
                    if now.saturating_since(seen) < idle(key.proto) {
                        s.seen = Some(now);
                        return true;
                    }
                }
            }
        }
        false
    }
}

/// ICMP errors (unreachable, time exceeded, parameter problem, IPv6's
/// packet too big): they pass both ways, stateless.
fn is_icmp_error(t: &Transport) -> bool {
    matches!(
        (t.proto, t.icmp_type),
        (PROTO_ICMP, Some(3 | 11 | 12)) | (PROTO_ICMPV6, Some(1..=4))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn t(proto: u8, src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16) -> Transport {
        Transport {
            src: IpAddr::V4(Ipv4Addr::from(src)),
            dst: IpAddr::V4(Ipv4Addr::from(dst)),
            proto,
            src_port: sp,
            dst_port: dp,
            icmp_type: None,
        }
    }

    const ME: [u8; 4] = [100, 64, 0, 10];
    const THEM: [u8; 4] = [100, 64, 0, 11];

    fn ops() -> Vec<String> {
        vec!["ops".to_string()]
    }

    #[test]
    fn rules_parse_and_print_back() {
        for s in [
            "tcp 22 group:admin",
            "udp 5000-5100 198.19.5.0/24",
            "icmp any any",
            "any any name:printer",
        ] {
            assert_eq!(Rule::parse(s).unwrap().to_string(), s);
        }
        for bad in [
            "tcp 22",
            "sctp 1 any",
            "tcp 9-1 any",
            "icmp 8 any",
            "tcp 22 group:",
            "tcp 22 198.19.5.7/24",
            "tcp 22 any extra",
        ] {
            assert!(Rule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn without_rules_everything_passes_and_nothing_is_kept() {
        let mut fw = Firewall::new(vec![], 1);
        let p = t(PROTO_TCP, THEM, 999, ME, 22);
        assert!(fw.inbound(Instant::ZERO, &p, &Origin::default()));
        fw.outbound(Instant::ZERO, &p);
        assert_eq!(fw.flows(Instant::ZERO), 0);
    }

    #[test]
    fn rules_allow_by_group_name_and_prefix_and_deny_the_rest() {
        let rules = [
            "tcp 22 group:ops",
            "udp 53 name:dns",
            "icmp any 198.19.0.0/16",
        ];
        let mut fw = Firewall::new(rules.iter().map(|r| Rule::parse(r).unwrap()).collect(), 1);
        let groups = ops();
        let ops = Origin {
            groups: &groups,
            name: Some("h1"),
        };
        let dns = Origin {
            groups: &[],
            name: Some("dns"),
        };
        let now = Instant::ZERO;
        assert!(fw.inbound(now, &t(PROTO_TCP, THEM, 999, ME, 22), &ops));
        assert!(!fw.inbound(now, &t(PROTO_TCP, THEM, 999, ME, 22), &dns));
        assert!(!fw.inbound(now, &t(PROTO_TCP, THEM, 999, ME, 23), &ops));
        assert!(fw.inbound(now, &t(PROTO_UDP, THEM, 999, ME, 53), &dns));
        let outside = Origin::default();
        assert!(fw.inbound(now, &t(PROTO_ICMP, [198, 19, 5, 1], 7, ME, 7), &outside));
        assert!(!fw.inbound(now, &t(PROTO_ICMP, THEM, 7, ME, 7), &outside));
        let hits: Vec<u64> = fw.rules().map(|(_, h)| h).collect();
        assert_eq!(hits, vec![1, 1, 1]);
        assert_eq!(fw.stats().denied, 3);
    }

    #[test]
    fn answers_to_our_own_flows_pass_until_they_idle_out() {
        let mut fw = Firewall::new(vec![Rule::parse("tcp 22 group:ops").unwrap()], 1);
        let nobody = Origin::default();
        let out = t(PROTO_TCP, ME, 40000, THEM, 80);
        let answer = t(PROTO_TCP, THEM, 80, ME, 40000);
        assert!(!fw.inbound(Instant::ZERO, &answer, &nobody), "no flow yet");
        fw.outbound(Instant::ZERO, &out);
        assert!(fw.inbound(Instant::from_millis(1), &answer, &nobody));
        // Another port of theirs is another flow.
        let other = t(PROTO_TCP, THEM, 81, ME, 40000);
        assert!(!fw.inbound(Instant::from_millis(2), &other, &nobody));
        let late = Instant::ZERO + TCP_IDLE + Duration::from_secs(2);
        assert!(
            !fw.inbound(late, &answer, &nobody),
            "idle flows are forgotten"
        );
        // ICMP errors pass regardless.
        let mut err = t(PROTO_ICMP, THEM, 0, ME, 0);
        err.icmp_type = Some(3);
        assert!(fw.inbound(late, &err, &nobody));
    }

    #[test]
    fn a_full_table_forgets_the_least_recently_used_flow_and_never_grows() {
        let mut fw = Firewall::new(vec![Rule::parse("tcp 22 any").unwrap()], 1);
        let n = MAX_FLOWS * 2;
        for i in 0..n {
            let out = t(
                PROTO_UDP,
                ME,
                (i % 60000) as u16 + 1,
                [198, 19, (i >> 8) as u8, i as u8],
                53,
            );
            fw.outbound(Instant::from_millis(i as u64), &out);
        }
        let now = Instant::from_millis(n as u64);
        assert!(fw.flows(now) <= MAX_FLOWS);
        assert!(fw.stats().evicted > 0);
        assert_eq!(fw.flows.len(), MAX_FLOWS);
        // The newest flow is still known.
        let i = n - 1;
        let answer = t(
            PROTO_UDP,
            [198, 19, (i >> 8) as u8, i as u8],
            53,
            ME,
            (i % 60000) as u16 + 1,
        );
        assert!(fw.inbound(now, &answer, &Origin::default()));
    }
}
