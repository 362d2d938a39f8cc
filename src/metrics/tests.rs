//! The exposition checked against the text format's rules by a small
//! parser (no promtool in Debian's base packages): HELP and TYPE before
//! samples, once per family; legal names; counters ending in `_total`;
//! histogram buckets cumulative up to `+Inf` = count; every drop reason
//! present.

use super::*;
use crate::node::DropReason;
use crate::sim::{endpoint_of, NetConfig, Sim};
use std::collections::BTreeMap;
use std::time::Duration;

fn legal_name(n: &str) -> bool {
    let mut c = n.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
}

/// Checks `text` and returns samples by name (labels as written).
fn check_format(text: &str) -> BTreeMap<String, f64> {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helped: Vec<String> = Vec::new();
    let mut samples = BTreeMap::new();
    let mut last_bucket: Option<(String, f64)> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(legal_name(name), "{line}");
            assert!(!helped.contains(&name.to_string()), "HELP twice: {line}");
            helped.push(name.to_string());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(
                helped.last().is_some_and(|h| h == name),
                "TYPE without HELP: {line}"
            );
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            if kind == "counter" {
                assert!(name.ends_with("_total"), "a counter's name: {line}");
            }
            assert!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "{line}"
            );
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment: {line}");
        let (series, value) = line.rsplit_once(' ').unwrap();
        let v: f64 = value.parse().unwrap_or_else(|_| panic!("value in {line}"));
        let name = series.split('{').next().unwrap();
        assert!(legal_name(name), "{line}");
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
                for pair in labels[1..labels.len() - 1].split("\",") {
                    let (k, v) = pair.split_once('=').unwrap();
                    assert!(legal_name(k) && v.starts_with('"'), "{line}");
                }
            }
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| types.get(*f).is_some_and(|k| k == "histogram"))
            })
            .unwrap_or(name);
        assert!(types.contains_key(family), "sample before its TYPE: {line}");
        if name.ends_with("_bucket") {
            if let Some((f, prev)) = &last_bucket {
                if f == family {
                    assert!(v >= *prev, "buckets not cumulative: {line}");
                }
            }
            last_bucket = Some((family.to_string(), v));
        }
        samples.insert(series.to_string(), v);
    }
    samples
}

#[test]
fn the_exposition_follows_the_text_format_and_has_every_counter() {
    let mut sim = Sim::new(3, NetConfig::default());
    sim.vpn = Some(crate::vpn::VpnConfig::new("m"));
    for i in 0..8 {
        let boot = if i == 0 { vec![] } else { vec![endpoint_of(0)] };
        sim.add_node(boot);
    }
    // Long enough for the address claims (DHT operations).
    sim.run_for(Duration::from_secs(30));
    let st = sim.node(0).status(sim.now());
    let text = render(&st);
    let samples = check_format(&text);
    for r in DropReason::ALL {
        let series = format!("ringvpn_drops_total{{reason=\"{}\"}}", r.name());
        assert!(samples.contains_key(&series), "{series} missing");
    }
    assert_eq!(
        samples["ringvpn_dht_latency_seconds_bucket{le=\"+Inf\"}"],
        samples["ringvpn_dht_latency_seconds_count"]
    );
    assert!(
        samples["ringvpn_dht_latency_seconds_count"] > 0.0,
        "the join made DHT requests? {text}"
    );
    assert!(samples["ringvpn_peers{state=\"up\"}"] > 0.0);
    assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
}
