#![no_main]
//! Certificate mode's link control: revocation list parts and announced
//! serials parse within bounds, and what parses re-emits byte for byte.
use libfuzzer_sys::fuzz_target;
use ringvpn::wire::trust::{RevocationPart, RevocationSerials};

fuzz_target!(|bytes: &[u8]| {
    if let Ok(p) = RevocationPart::parse(bytes) {
        let mut out = Vec::new();
        p.emit(&mut out);
        assert_eq!(RevocationPart::parse(&out), Ok(p));
    }
    if let Ok(s) = RevocationSerials::parse(bytes) {
        let mut out = Vec::new();
        s.emit(&mut out);
        assert_eq!(RevocationSerials::parse(&out).as_ref(), Ok(&s));
    }
});
