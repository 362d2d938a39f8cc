//! The node's counters and gauges in the Prometheus text exposition
//! format (version 0.0.4): `ringvpn metrics`, and `GET /metrics` when
//! `metrics = ADDRESS:PORT` is configured.
//!
//! Every family has a `# HELP` and a `# TYPE` line before its samples;
//! counters end in `_total`; label values are escaped. Built from the
//! same snapshot as `ringvpn status`, on request (never per packet).

use crate::node::status::NodeStatus;
use std::fmt::Write;

use crate::node::stats::DHT_LATENCY_BUCKETS;

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

/// A label value as the format wants it: backslash, quote and newline escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The whole exposition.
pub fn render(st: &NodeStatus) -> String {
    let mut o = Out(String::new());
    o.family(
        "ringvpn_drops_total",
        "counter",
        "Packets and messages dropped, by reason.",
    );
    for (reason, n) in &st.drops {
        o.sample("ringvpn_drops_total", &[("reason", reason)], n);
    }
    o.one(
        "ringvpn_handshakes_completed_total",
        "counter",
        "Handshakes completed.",
        st.handshakes_completed,
    );
    o.family("ringvpn_peers", "gauge", "Peers by state.");
    for state in ["up", "connecting", "down"] {
        let n = st.peers.iter().filter(|p| p.state == state).count();
        o.sample("ringvpn_peers", &[("state", state)], n);
    }
    o.family(
        "ringvpn_sessions",
        "gauge",
        "Peers with a session, by the path their traffic takes.",
    );
    for path in ["direct", "relayed", "overlay"] {
        let n = st.peers.iter().filter(|p| p.path == path).count();
        o.sample("ringvpn_sessions", &[("path", path)], n);
    }
    for (name, help, pick) in [
        (
            "ringvpn_rx_bytes_total",
            "Payload bytes received, by path.",
            0,
        ),
        ("ringvpn_tx_bytes_total", "Payload bytes sent, by path.", 1),
        ("ringvpn_rx_packets_total", "Messages received, by path.", 2),
        ("ringvpn_tx_packets_total", "Messages sent, by path.", 3),
    ] {
        o.family(name, "counter", help);
        for path in ["direct", "relayed", "overlay", "none"] {
            let sum: u64 = st
                .peers
                .iter()
                .filter(|p| p.path == path)
                .map(|p| [p.rx_bytes, p.tx_bytes, p.rx_packets, p.tx_packets][pick])
                .sum();
            o.sample(name, &[("path", path)], sum);
        }
    }
    if let Some(ov) = &st.overlay {
        o.family("ringvpn_links", "gauge", "Ring links, by why we keep them.");
        for kind in ["near", "shortcut", "leaf", "on-demand", "relay"] {
            let n = ov.conns.iter().filter(|c| c.reasons.contains(kind)).count();
            o.sample("ringvpn_links", &[("kind", kind)], n);
        }
        o.one(
            "ringvpn_ring_size_estimate",
            "gauge",
            "Members in the ring, as estimated from our neighbours' spacing.",
            format!("{:.1}", ov.size_estimate),
        );
    }
    if let Some(d) = &st.dht {
        for (name, help, v) in [
            (
                "ringvpn_dht_ops_started_total",
                "DHT operations started.",
                d.ops_started,
            ),
            (
                "ringvpn_dht_ops_failed_total",
                "DHT operations that failed.",
                d.ops_failed,
            ),
            (
                "ringvpn_dht_puts_served_total",
                "DHT puts served for others.",
                d.puts_served,
            ),
            (
                "ringvpn_dht_gets_served_total",
                "DHT gets served for others.",
                d.gets_served,
            ),
            (
                "ringvpn_dht_refused_total",
                "DHT requests refused (full, too big, rate, policy).",
                d.refused_full + d.refused_too_big + d.refused_rate + d.refused_policy,
            ),
        ] {
            o.one(name, "counter", help, v);
        }
    }
    let h = &st.dht_latency;
    o.family(
        "ringvpn_dht_latency_seconds",
        "histogram",
        "Time from a DHT operation's start to the reply that completed it.",
    );
    let mut cumulative = 0u64;
    for (i, le) in DHT_LATENCY_BUCKETS.iter().enumerate() {
        cumulative += h.buckets[i];
        o.sample(
            "ringvpn_dht_latency_seconds_bucket",
            &[("le", &format!("{le}"))],
            cumulative,
        );
    }
    o.sample(
        "ringvpn_dht_latency_seconds_bucket",
        &[("le", "+Inf")],
        h.count,
    );
    o.sample(
        "ringvpn_dht_latency_seconds_sum",
        &[],
        format!("{:.6}", h.sum_secs),
    );
    o.sample("ringvpn_dht_latency_seconds_count", &[], h.count);
    if let Some(v) = &st.vpn {
        for (name, help, val) in [
            (
                "ringvpn_vpn_lookups_total",
                "Address lookups started.",
                v.stats.lookups,
            ),
            (
                "ringvpn_vpn_lookups_failed_total",
                "Address lookups that found nobody.",
                v.stats.lookups_failed,
            ),
            (
                "ringvpn_vpn_records_refused_total",
                "Address records that did not check out.",
                v.stats.records_refused,
            ),
            (
                "ringvpn_vpn_packets_out_total",
                "VPN packets handed on for members.",
                v.stats.packets_out,
            ),
            (
                "ringvpn_vpn_packets_in_total",
                "VPN packets delivered to the host.",
                v.stats.packets_in,
            ),
            (
                "ringvpn_vpn_broadcasts_sent_total",
                "Ring broadcasts sent.",
                v.stats.broadcasts_sent,
            ),
            (
                "ringvpn_vpn_broadcasts_delivered_total",
                "Ring broadcasts delivered.",
                v.stats.broadcasts_delivered,
            ),
        ] {
            o.one(name, "counter", help, val);
        }
        o.one(
            "ringvpn_vpn_resolver_cached",
            "gauge",
            "Addresses in the resolver's cache.",
            v.cached,
        );
        o.one(
            "ringvpn_vpn_address_held",
            "gauge",
            "1 when our virtual address is held.",
            u8::from(v.state == "held"),
        );
    }
    if let Some(r) = &st.routes {
        o.one(
            "ringvpn_route_switches_total",
            "counter",
            "Moves from one gateway or router to another.",
            r.stats.switches,
        );
        o.one(
            "ringvpn_route_records_refused_total",
            "counter",
            "Route records that did not check out.",
            r.stats.records_refused,
        );
        o.one(
            "ringvpn_routes_in_use",
            "gauge",
            "Prefixes with an advertiser in use.",
            r.routes.iter().filter(|x| x.in_use).count(),
        );
    }
    if let Some(f) = &st.firewall {
        o.one(
            "ringvpn_firewall_flows",
            "gauge",
            "Flows the firewall remembers.",
            f.flows,
        );
        o.family(
            "ringvpn_firewall_rule_hits_total",
            "counter",
            "Packets each inbound rule let in.",
        );
        for (rule, hits) in &f.rules {
            o.sample("ringvpn_firewall_rule_hits_total", &[("rule", rule)], hits);
        }
    }
    if let Some(t) = &st.tasks {
        o.one(
            "ringvpn_tasks_started_total",
            "counter",
            "Map-reduce tasks started here.",
            t.started,
        );
        o.one(
            "ringvpn_tasks_served_total",
            "counter",
            "Map-reduce tasks served for others.",
            t.served,
        );
        o.family(
            "ringvpn_tasks_refused_total",
            "counter",
            "Map-reduce tasks refused, by reason.",
        );
        for (why, n) in [
            ("not_allowed", t.refused_auth),
            ("rate", t.refused_rate),
            ("replay", t.refused_replay),
            ("busy", t.refused_busy),
            ("malformed", t.malformed),
        ] {
            o.sample("ringvpn_tasks_refused_total", &[("reason", why)], n);
        }
    }
    o.one(
        "ringvpn_pool_buffers_in_use",
        "gauge",
        "Packet buffers in use.",
        st.pool_in_use,
    );
    o.one(
        "ringvpn_pool_buffers_high_water",
        "gauge",
        "The most packet buffers in use at once so far.",
        st.pool_high_water,
    );
    o.one(
        "ringvpn_pool_buffers_capacity",
        "gauge",
        "Packet buffers in the pool.",
        st.pool_capacity,
    );
    o.one(
        "ringvpn_relayed_bytes_total",
        "counter",
        "Bytes relayed for others' tunnel edges.",
        st.relayed_bytes,
    );
    o.one(
        "ringvpn_transit_bytes_total",
        "counter",
        "Bytes of others' routed data forwarded.",
        st.transit_bytes,
    );
    o.0
}

#[cfg(test)]
mod tests;
