#![no_main]
//! DHT requests, replies, hand-off copies and remove proofs: bounded
//! counts and lengths, and what parses re-emits to a message that parses
//! the same.
use libfuzzer_sys::fuzz_target;
use ringvpn::wire::dht::{Copy, DhtMsg, RemoveProof};

fuzz_target!(|bytes: &[u8]| {
    if let Ok(m) = DhtMsg::parse(bytes) {
        let mut out = Vec::new();
        m.emit(&mut out);
        assert_eq!(DhtMsg::parse(&out).as_ref(), Ok(&m));
    }
    if let Ok(c) = Copy::parse(bytes) {
        let mut out = Vec::new();
        c.emit(&mut out);
        assert_eq!(Copy::parse(&out).as_ref(), Ok(&c));
    }
    if let Ok(p) = RemoveProof::parse(bytes) {
        assert_eq!(p.to_vec(), bytes);
    }
});
