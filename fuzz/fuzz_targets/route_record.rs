#![no_main]
//! Signed route records (prefixes a member routes, in the DHT): the strict
//! parser and signature check, and the whole check a storing node and a
//! member make, under each authority (certificates, the config's list,
//! open).
use libfuzzer_sys::fuzz_target;
use ringvpn::crypto::cert::Trust;
use ringvpn::net::Prefix;
use ringvpn::overlay::Addr;
use ringvpn::routes::record::{slot_key, slot_of, verify, Authority, Checker};
use ringvpn::time::Instant;

fuzz_target!(|bytes: &[u8]| {
    let parsed = verify(bytes);
    let (owner, key) = match &parsed {
        Ok(r) => (
            Addr::of_key(&r.advertiser),
            slot_key("net", slot_of(&r.advertiser)),
        ),
        Err(_) => (Addr(7), Addr(9)),
    };
    let trust = Trust::default();
    let listed = match &parsed {
        Ok(r) => vec![(r.advertiser, vec![Prefix::parse("0.0.0.0/0").unwrap()])],
        Err(_) => Vec::new(),
    };
    for authority in [
        Authority::Open,
        Authority::Certificates(&trust),
        Authority::Listed(&listed),
    ] {
        let checker = Checker {
            network: "net",
            authority,
            wall_origin_us: 1_800_000_000_000_000,
        };
        let _ = checker.check(key, owner, bytes, Instant::ZERO);
    }
});
