#![no_main]
//! Signed address records (the DHT values of the VPN): the strict parser
//! and signature check, and the whole check a storing node and a resolver
//! make, in both trust modes.
use libfuzzer_sys::fuzz_target;
use ringvpn::crypto::cert::Trust;
use ringvpn::overlay::dht::RecordPolicy;
use ringvpn::overlay::Addr;
use ringvpn::time::Instant;
use ringvpn::vpn::record::{verify, AddressPolicy};
use ringvpn::wire::dht::Record;

fuzz_target!(|bytes: &[u8]| {
    let parsed = verify(bytes);
    let owner = match &parsed {
        Ok(r) => Addr::of_key(&r.holder),
        Err(_) => Addr(7),
    };
    let key = parsed
        .as_ref()
        .map_or(Addr(9), |r| ringvpn::vpn::ip_key("net", r.ip));
    let record = Record {
        owner,
        ttl_secs: 300,
        value: bytes.to_vec(),
    };
    for trust in [None, Some(Trust::default())] {
        let policy = AddressPolicy {
            network: "net".into(),
            trust,
            wall_origin_us: 1_800_000_000_000_000,
        };
        let _ = policy.admit(key, &record, Instant::ZERO);
    }
});
