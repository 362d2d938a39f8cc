//! Renders a node's status for people (`ringvpn status`) and scripts (`--json`).

use crate::json::Object;
use crate::node::status::NodeStatus;
use std::fmt::Write;
use std::time::Duration;

/// What the daemon adds to the core's view: its interface and socket.
#[derive(Debug, Clone)]
pub struct DaemonInfo {
    pub tap: String,
    /// This member's name (`name =`, or its certificate's).
    pub name: Option<String>,
    pub address: Option<String>,
    pub mtu: u16,
    pub listen: String,
    /// The kernel offloads in use ("udp gso on, udp gro off (…)").
    pub offloads: String,
    /// The process's resident set (read when status is asked for).
    pub rss_bytes: Option<u64>,
}

/// `memory` figures: RSS, heap now/peak (`crate::heap`), the pool's
/// slab as touched so far and at most.
fn memory(st: &NodeStatus, d: &DaemonInfo) -> (Option<u64>, Option<(u64, u64)>, u64, u64) {
    let slot = crate::buf::SLOT_LEN as u64;
    (
        d.rss_bytes,
        crate::heap::usage(),
        u64::from(st.pool_high_water) * slot,
        u64::from(st.pool_capacity) * slot,
    )
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn ago(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s} s ago"),
        120..=7199 => format!("{} min ago", s / 60),
        _ => format!("{} h ago", s / 3600),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// The version of `status --json`'s layout: raised when a field changes
/// meaning or goes (new fields alone do not raise it).
pub const STATUS_SCHEMA: u32 = 1;

/// `ringvpn peers`: one line per peer, as `wg show` gives them — name,
/// virtual IPs, state, path, round-trip time, last handshake, bytes.
pub fn render_peers(st: &NodeStatus) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:<16}  {:<15}  {:<16}  {:<28}  {:>9}  {:>10}  {:>10}  {:>10}",
        "NAME", "VIRTUAL IP", "STATE", "PATH", "RTT", "HANDSHAKE", "RX", "TX"
    );
    for p in &st.peers {
        let vip = match p.virtual_ips.as_slice() {
            [] => "-".to_string(),
            [one] => one.to_string(),
            [one, rest @ ..] => format!("{one} +{}", rest.len()),
        };
        let path = match (p.path, &p.relay, p.endpoint) {
            ("relayed", Some(r), _) => format!("via {r}"),
            ("direct", _, Some(ep)) => format!("direct {ep}"),
            ("overlay", _, _) => format!("overlay, {} hops", p.hops.max(1)),
            (other, _, _) => other.to_string(),
        };
        let rtt = p.rtt.map_or("-".into(), ms);
        let hs = p.last_handshake_ago.map_or("-".into(), ago);
        let _ = writeln!(
            o,
            "{:<16}  {vip:<15}  {:<16}  {path:<28}  {rtt:>9}  {hs:>10}  {:>10}  {:>10}",
            p.name,
            p.state,
            bytes(p.rx_bytes),
            bytes(p.tx_bytes)
        );
    }
    o
}

pub fn render_text(st: &NodeStatus, d: &DaemonInfo) -> String {
    let mut o = String::new();
    let up = st.peers.iter().filter(|p| p.state == "up").count();
    if let Some(w) = &st.warning {
        let _ = writeln!(o, "WARNING   {w}");
    }
    match &d.name {
        Some(n) => writeln!(o, "node      {n}  {}", st.key),
        None => writeln!(o, "node      {}", st.key),
    }
    .ok();
    let _ = writeln!(
        o,
        "tap       {}  {}  mtu {}",
        d.tap,
        d.address.as_deref().unwrap_or("(no address)"),
        d.mtu
    );
    let _ = writeln!(o, "listen    {}", d.listen);
    if !d.offloads.is_empty() {
        let _ = writeln!(o, "offload   {}", d.offloads);
    }
    let _ = writeln!(o, "nat       {}", st.nat);
    if !st.advertised.is_empty() {
        let a: Vec<String> = st.advertised.iter().map(|e| e.to_string()).collect();
        let _ = writeln!(o, "advertise {}", a.join(" "));
    }
    if !st.underlay_excluded.is_empty() {
        let a: Vec<String> = st.underlay_excluded.iter().map(|p| p.to_string()).collect();
        let _ = writeln!(
            o,
            "never     {}  (the VPN's own: no underlay there)",
            a.join(" ")
        );
    }
    if st.relayed_bytes > 0 {
        let _ = writeln!(o, "relayed   {} for others", bytes(st.relayed_bytes));
    }
    if st.transit_bytes > 0 {
        let _ = writeln!(o, "transit   {} routed for others", bytes(st.transit_bytes));
    }
    let _ = writeln!(o, "peers     {} ({} up)", st.peers.len(), up);
    for p in &st.peers {
        let _ = writeln!(o, "\npeer {}  {}", p.name, p.key);
        let ep = p
            .endpoint
            .map_or("(unknown)".to_string(), |e| e.to_string());
        let _ = writeln!(o, "  endpoint   {ep}");
        let _ = writeln!(o, "  state      {}", p.state);
        let via = match (&p.relay, p.path) {
            (Some(r), _) => format!(" via {r}"),
            (None, "overlay") if p.hops > 0 => format!(" ({} hops)", p.hops),
            _ => String::new(),
        };
        let _ = writeln!(
            o,
            "  path       {}{via}{}",
            p.path,
            if p.linked { " (ring link)" } else { "" }
        );
        if !p.why_not_direct.is_empty() {
            let _ = writeln!(o, "  why        {}", p.why_not_direct);
        }
        if !p.candidates.is_empty() && p.path != "direct" {
            let c: Vec<String> = p.candidates.iter().map(|e| e.to_string()).collect();
            let _ = writeln!(o, "  candidates {}", c.join(" "));
        }
        let hs = p.last_handshake_ago.map_or("never".to_string(), ago);
        let _ = match p.cipher {
            Some(c) => writeln!(o, "  handshake  {hs}, {c}"),
            None => writeln!(o, "  handshake  {hs}"),
        };
        let _ = writeln!(o, "  rtt        {}", p.rtt.map_or("-".to_string(), ms));
        if let Some(obs) = p.observed {
            let _ = writeln!(o, "  seen as    {obs}");
        }
        let _ = writeln!(
            o,
            "  transfer   {} received, {} sent ({} / {} packets)",
            bytes(p.rx_bytes),
            bytes(p.tx_bytes),
            p.rx_packets,
            p.tx_packets
        );
    }
    if let Some(v) = &st.vpn {
        let ip = v
            .address
            .map_or("-".to_string(), |a| format!("{a}/{}", v.prefix));
        let _ = writeln!(
            o,
            "\nvpn       network {}  address {ip}  ({})",
            v.network, v.state
        );
        if let Some(h) = v.holder {
            let _ = writeln!(o, "  held by  {}", h.to_hex());
        }
        if let Some(v6) = v.ipv6 {
            let _ = writeln!(o, "  ipv6     {v6}/96");
        }
        let _ = writeln!(
            o,
            "  resolver {} cached, {} resolving; {} lookups ({} found nothing, {} bad records)",
            v.cached, v.resolving, v.stats.lookups, v.stats.lookups_failed, v.stats.records_refused
        );
        dns_text(&mut o, &v.dns, &d.tap);
        let _ = writeln!(
            o,
            "  packets  {} out, {} in; broadcasts {} sent, {} delivered; {} local answers",
            v.stats.packets_out,
            v.stats.packets_in,
            v.stats.broadcasts_sent,
            v.stats.broadcasts_delivered,
            v.stats.local_answers
        );
    }
    if let Some(r) = &st.routes {
        routes_text(&mut o, r);
    }
    if let Some(t) = &st.tasks {
        let _ = writeln!(
            o,
            "\ntasks     {} started, {} served; refused: {} not allowed, {} over rate, {} replayed, {} busy, {} malformed",
            t.started, t.served, t.refused_auth, t.refused_rate, t.refused_replay, t.refused_busy, t.malformed
        );
    }
    if let Some(f) = &st.firewall {
        let _ = writeln!(
            o,
            "\nfirewall  {} flows; {} packets of open flows, {} denied, {} flows evicted",
            f.flows, f.stats.established, f.stats.denied, f.stats.evicted
        );
        for (rule, hits) in &f.rules {
            let _ = writeln!(o, "  inbound  {rule:<36} {hits} let in");
        }
    }
    if let Some(ov) = &st.overlay {
        let side = |a: Option<crate::overlay::Addr>| a.map_or("-".to_string(), |a| a.to_string());
        let _ = writeln!(
            o,
            "\nring      {}  left {}  right {}  (~{:.0} nodes)",
            ov.addr,
            side(ov.left),
            side(ov.right),
            ov.size_estimate
        );
        for c in &ov.conns {
            let _ = writeln!(
                o,
                "  conn {}  {:<20} {:<16} theirs: {}",
                c.addr, c.endpoint, c.reasons, c.their_reasons
            );
        }
    }
    let drops: Vec<String> = st
        .drops
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(r, n)| format!("{r} {n}"))
        .collect();
    let _ = writeln!(
        o,
        "\ndrops     {}",
        if drops.is_empty() {
            "none".to_string()
        } else {
            drops.join(", ")
        }
    );
    let _ = writeln!(
        o,
        "buffers   {} of {} in use, at most {} so far",
        st.pool_in_use, st.pool_capacity, st.pool_high_water
    );
    let (rss, heap, pool, pool_max) = memory(st, d);
    let mut parts = Vec::new();
    if let Some(r) = rss {
        parts.push(format!("rss {}", bytes(r)));
    }
    if let Some((now, peak)) = heap {
        parts.push(format!("heap {} (peak {})", bytes(now), bytes(peak)));
    }
    // The slab is reserved on the heap at start and touched as the
    // pool reaches new depths: RSS sees only the touched part.
    parts.push(format!(
        "pool {} touched of its {}",
        bytes(pool),
        bytes(pool_max)
    ));
    let _ = writeln!(o, "memory    {}", parts.join(", "));
    o
}

pub fn render_json(st: &NodeStatus, d: &DaemonInfo) -> String {
    let (rss, heap, pool, _) = memory(st, d);
    let mut out = String::new();
    let mut node = String::new();
    let advertised: Vec<String> = st
        .advertised
        .iter()
        .map(|e| crate::json::quote(&e.to_string()))
        .collect();
    let excluded: Vec<String> = st
        .underlay_excluded
        .iter()
        .map(|p| crate::json::quote(&p.to_string()))
        .collect();
    let mut n = Object::new(&mut node);
    n.str("key", &st.key.to_base64())
        .opt_str("name", d.name.as_deref())
        .str("tap", &d.tap)
        .opt_str("address", d.address.as_deref())
        .num("mtu", d.mtu)
        .str("listen", &d.listen)
        .str("offloads", &d.offloads)
        .num("handshakes_completed", st.handshakes_completed)
        .num("pool_in_use", st.pool_in_use)
        .num("pool_capacity", st.pool_capacity)
        .num("pool_high_water", st.pool_high_water)
        .opt_num("rss_bytes", rss)
        .opt_num("heap_bytes", heap.map(|h| h.0))
        .opt_num("heap_peak_bytes", heap.map(|h| h.1))
        .opt_num("heap_allocations", crate::heap::allocations())
        .num("pool_bytes", pool)
        .str("nat", st.nat)
        .raw("advertised", &format!("[{}]", advertised.join(",")))
        .raw("underlay_excluded", &format!("[{}]", excluded.join(",")))
        .num("relayed_bytes", st.relayed_bytes)
        .num("transit_bytes", st.transit_bytes)
        .opt_str("warning", st.warning.as_deref());
    n.end();
    let mut peers = String::from("[");
    for (i, p) in st.peers.iter().enumerate() {
        if i > 0 {
            peers.push(',');
        }
        let mut o = Object::new(&mut peers);
        let endpoint = p.endpoint.map(|e| e.to_string());
        let observed = p.observed.map(|e| e.to_string());
        let candidates: Vec<String> = p
            .candidates
            .iter()
            .map(|e| crate::json::quote(&e.to_string()))
            .collect();
        let vips: Vec<String> = p
            .virtual_ips
            .iter()
            .map(|a| crate::json::quote(&a.to_string()))
            .collect();
        o.str("name", &p.name)
            .str("key", &p.key.to_base64())
            .raw("virtual_ips", &format!("[{}]", vips.join(",")))
            .opt_str("endpoint", endpoint.as_deref())
            .str("state", &p.state)
            .str("path", p.path)
            .opt_str("relay", p.relay.as_deref())
            .num("hops", p.hops)
            .raw("candidates", &format!("[{}]", candidates.join(",")))
            .str("why_not_direct", &p.why_not_direct)
            .raw("linked", if p.linked { "true" } else { "false" })
            .raw(
                "last_handshake_s",
                &p.last_handshake_ago
                    .map_or("null".into(), |d| d.as_secs().to_string()),
            )
            .raw(
                "rtt_ms",
                &p.rtt
                    .map_or("null".into(), |d| format!("{:.3}", d.as_secs_f64() * 1e3)),
            )
            .opt_str("observed", observed.as_deref())
            .opt_str("cipher", p.cipher)
            .num("rx_bytes", p.rx_bytes)
            .num("tx_bytes", p.tx_bytes)
            .num("rx_packets", p.rx_packets)
            .num("tx_packets", p.tx_packets);
        o.end();
    }
    peers.push(']');
    let mut drops = String::new();
    let mut dr = Object::new(&mut drops);
    for (r, c) in &st.drops {
        dr.num(r, c);
    }
    dr.end();
    let overlay = st.overlay.as_ref().map_or("null".to_string(), overlay_json);
    let vpn = st.vpn.as_ref().map_or("null".to_string(), vpn_json);
    let routes = st.routes.as_ref().map_or("null".to_string(), routes_json);
    let firewall = st
        .firewall
        .as_ref()
        .map_or("null".to_string(), firewall_json);
    let mut o = Object::new(&mut out);
    o.num("schema", STATUS_SCHEMA)
        .raw("node", &node)
        .raw("peers", &peers)
        .raw("drops", &drops)
        .raw("overlay", &overlay)
        .raw("vpn", &vpn)
        .raw("routes", &routes)
        .raw("firewall", &firewall);
    o.end();
    out.push('\n');
    out
}

fn routes_text(o: &mut String, r: &crate::node::status::RoutesStatus) {
    let list = |p: &[crate::net::Prefix]| {
        let v: Vec<String> = p.iter().map(|p| p.to_string()).collect();
        if v.is_empty() {
            "nothing".to_string()
        } else {
            v.join(", ")
        }
    };
    let _ = writeln!(o, "\nroutes    advertising {}", list(&r.advertised));
    let via = r.exit_via.as_deref().unwrap_or("-");
    let _ = writeln!(o, "  exit     {} via {via}: {}", r.exit, r.exit_why);
    for rt in &r.routes {
        let rtt = rt.rtt.map_or("-".to_string(), ms);
        let used = if rt.in_use { "  in use" } else { "" };
        let _ = write!(
            o,
            "  route    {:<18} {:<16} {:<10} rtt {rtt}{used}",
            rt.prefix.to_string(),
            rt.advertiser,
            rt.state
        );
        match &rt.refused {
            Some(why) => {
                let _ = writeln!(o, "  REFUSED: overlaps {why}");
            }
            None => o.push('\n'),
        }
    }
    let s = &r.stats;
    let _ = writeln!(
        o,
        "  records  {} reads, {} refused, {} overlaps refused, {} switches",
        s.refreshes, s.records_refused, s.overlaps_refused, s.switches
    );
}

fn routes_json(r: &crate::node::status::RoutesStatus) -> String {
    let mut routes = String::from("[");
    for (i, rt) in r.routes.iter().enumerate() {
        if i > 0 {
            routes.push(',');
        }
        let mut o = Object::new(&mut routes);
        o.str("prefix", &rt.prefix.to_string())
            .str("advertiser", &rt.advertiser)
            .str("state", rt.state)
            .raw(
                "rtt_ms",
                &rt.rtt
                    .map_or("null".into(), |d| format!("{:.3}", d.as_secs_f64() * 1e3)),
            )
            .raw("in_use", if rt.in_use { "true" } else { "false" })
            .opt_str("refused_overlap", rt.refused.as_deref());
        o.end();
    }
    routes.push(']');
    let mut adv = String::from("[");
    for (i, p) in r.advertised.iter().enumerate() {
        if i > 0 {
            adv.push(',');
        }
        adv.push_str(&crate::json::quote(&p.to_string()));
    }
    adv.push(']');
    let mut out = String::new();
    let mut o = Object::new(&mut out);
    o.raw("advertised", &adv)
        .str("exit", r.exit)
        .opt_str("exit_via", r.exit_via.as_deref())
        .str("exit_why", r.exit_why)
        .raw("routes", &routes)
        .num("reads", r.stats.refreshes)
        .num("records_refused", r.stats.records_refused)
        .num("overlaps_refused", r.stats.overlaps_refused)
        .num("switches", r.stats.switches);
    o.end();
    out
}

fn firewall_json(f: &crate::node::status::FirewallStatus) -> String {
    let mut rules = String::from("[");
    for (i, (rule, hits)) in f.rules.iter().enumerate() {
        if i > 0 {
            rules.push(',');
        }
        let mut o = Object::new(&mut rules);
        o.str("rule", rule).num("hits", hits);
        o.end();
    }
    rules.push(']');
    let mut out = String::new();
    let mut o = Object::new(&mut out);
    o.raw("inbound", &rules)
        .num("flows", f.flows)
        .num("established", f.stats.established)
        .num("denied", f.stats.denied)
        .num("evicted", f.stats.evicted);
    o.end();
    out
}

fn vpn_json(v: &crate::node::status::VpnStatus) -> String {
    let address = v.address.map(|a| a.to_string());
    let ipv6 = v.ipv6.map(|a| a.to_string());
    let holder = v.holder.map(|a| a.to_hex());
    let mut out = String::new();
    let mut o = Object::new(&mut out);
    o.str("network", &v.network)
        .opt_str("address", address.as_deref())
        .num("prefix", v.prefix)
        .opt_str("ipv6", ipv6.as_deref())
        .str("state", v.state)
        .opt_str("holder", holder.as_deref())
        .num("cached", v.cached)
        .num("resolving", v.resolving)
        .num("lookups", v.stats.lookups)
        .num("lookups_failed", v.stats.lookups_failed)
        .num("records_refused", v.stats.records_refused)
        .num("packets_out", v.stats.packets_out)
        .num("packets_in", v.stats.packets_in)
        .num("broadcasts_sent", v.stats.broadcasts_sent)
        .num("broadcasts_delivered", v.stats.broadcasts_delivered)
        .num("local_answers", v.stats.local_answers)
        .raw("dns", &dns_json(&v.dns));
    o.end();
    out
}

/// The DNS server's line, and how to point the host's resolver at it.
fn dns_text(o: &mut String, d: &crate::node::status::DnsStatus, tap: &str) {
    let s = &d.stats;
    let _ = writeln!(
        o,
        "  dns      {}:53 answers for {} and its reverse zone; name {} ({})",
        d.server,
        d.zone,
        d.name.as_deref().unwrap_or("-"),
        d.registration
    );
    let _ = writeln!(
        o,
        "           {} queries: {} answered, {} not found, {} refused, {} failed; {} lookups, {} cached",
        s.queries, s.answered, s.nxdomain, s.refused, s.servfail, s.lookups, d.cached
    );
    let _ = writeln!(
        o,
        "           use it: resolvectl dns {tap} {} && resolvectl domain {tap} '~{}'",
        d.server,
        d.zone.trim_end_matches('.')
    );
}

fn dns_json(d: &crate::node::status::DnsStatus) -> String {
    let s = &d.stats;
    let mut out = String::new();
    let mut o = Object::new(&mut out);
    o.str("server", &d.server.to_string())
        .str("zone", &d.zone)
        .opt_str("name", d.name.as_deref())
        .str("registration", &d.registration)
        .num("queries", s.queries)
        .num("answered", s.answered)
        .num("nxdomain", s.nxdomain)
        .num("refused", s.refused)
        .num("servfail", s.servfail)
        .num("malformed", s.malformed)
        .num("lookups", s.lookups)
        .num("cache_hits", s.cache_hits)
        .num("records_refused", s.records_refused)
        .num("cached", d.cached);
    o.end();
    out
}

fn overlay_json(ov: &crate::node::status::OverlayStatus) -> String {
    let mut conns = String::from("[");
    for (i, c) in ov.conns.iter().enumerate() {
        if i > 0 {
            conns.push(',');
        }
        let mut o = Object::new(&mut conns);
        o.str("addr", &c.addr.to_hex())
            .str("endpoint", &c.endpoint.to_string())
            .str("reasons", &c.reasons)
            .str("their_reasons", &c.their_reasons);
        o.end();
    }
    conns.push(']');
    let left = ov.left.map(|a| a.to_hex());
    let right = ov.right.map(|a| a.to_hex());
    let mut out = String::new();
    let mut o = Object::new(&mut out);
    o.str("addr", &ov.addr.to_hex())
        .opt_str("left", left.as_deref())
        .opt_str("right", right.as_deref())
        .num("size_estimate", format!("{:.1}", ov.size_estimate))
        .raw("connections", &conns);
    o.end();
    out
}

/// A map-reduce task's result for people (`ringvpn net …`) or scripts.
pub fn render_task(
    r: &crate::wire::task::Reduced,
    took: std::time::Duration,
    json: bool,
) -> String {
    let members = r.get("members");
    let share: f64 = r
        .missing
        .iter()
        .map(|(s, e)| s.right_dist(*e) as f64 / 2f64.powi(128))
        .sum::<f64>()
        + 0.0; // an empty sum is -0.0
    let hits = r.get("left1_hits") + r.get("left2_hits");
    let consistency = (members > 0 && r.counters.iter().any(|(n, _)| n.starts_with("left")))
        .then(|| hits as f64 / (2 * members) as f64);
    if json {
        let mut counters = String::new();
        let mut c = Object::new(&mut counters);
        for (n, v) in &r.counters {
            c.num(n, v);
        }
        c.end();
        let items: Vec<String> = r.items.iter().map(|i| crate::json::quote(i)).collect();
        let mut out = String::new();
        let mut o = Object::new(&mut out);
        o.num("members", members)
            .raw("counters", &counters)
            .raw("items", &format!("[{}]", items.join(",")))
            .raw(
                "consistency",
                &consistency.map_or("null".into(), |c| format!("{c:.4}")),
            )
            .raw(
                "partial",
                if r.missing_arcs() > 0 {
                    "true"
                } else {
                    "false"
                },
            )
            .num("missing_arcs", r.missing_arcs())
            .raw("missing_share", &format!("{share:.4}"))
            .num("took_ms", took.as_millis());
        o.end();
        out.push('\n');
        return out;
    }
    let mut o = String::new();
    let _ = writeln!(o, "members   {members}  ({} ms)", took.as_millis());
    if let Some(c) = consistency {
        let _ = writeln!(
            o,
            "consistency {c:.4}  (left1 {} + left2 {} of {})",
            r.get("left1_hits"),
            r.get("left2_hits"),
            2 * members
        );
    }
    for (n, v) in r
        .counters
        .iter()
        .filter(|(n, _)| n != "members" && !n.starts_with("left"))
    {
        let _ = writeln!(o, "  {n:<28} {v}");
    }
    for i in &r.items {
        let _ = writeln!(o, "  {i}");
    }
    if r.missing_arcs() > 0 {
        let _ = writeln!(
            o,
            "PARTIAL: {} arcs did not answer in time (~{:.1}% of the ring)",
            r.missing_arcs(),
            share * 100.0
        );
        for (s, e) in &r.missing {
            let _ = writeln!(o, "  missing {}..{}", &s.to_hex()[..16], &e.to_hex()[..16]);
        }
    }
    o
}
