#![no_main]
//! Map-reduce task messages (`wire::task`): requests and replies parse
//! strictly, read back what they wrote, and a parsed reply merges within
//! its bounds.
use libfuzzer_sys::fuzz_target;
use ringvpn::wire::task::{Reduced, Reply, Request};

fuzz_target!(|bytes: &[u8]| {
    if let Ok(r) = Request::parse(bytes) {
        let mut out = Vec::new();
        r.emit(&mut out);
        assert_eq!(out, bytes, "a request reads back as it was");
        let _ = r.task.signed_bytes();
    }
    if let Ok(r) = Reply::parse(bytes) {
        let mut out = Vec::new();
        r.emit(&mut out);
        assert_eq!(Reply::parse(&out).as_ref(), Ok(&r));
        let mut sum = Reduced::default();
        sum.merge(&r.result);
        sum.merge(&r.result);
        let mut again = Vec::new();
        Reply { result: sum, ..r }.emit(&mut again);
        assert!(again.len() <= 1183);
    }
});
