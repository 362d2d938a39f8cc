#![no_main]
//! Members' descriptions (`wire::describe`): parse strictly, and what
//! parsed reads back the same once written again (with its signature).
use libfuzzer_sys::fuzz_target;
use ringvpn::wire::describe::Description;

fuzz_target!(|bytes: &[u8]| {
    if let Ok((d, covered, sig)) = Description::parse(bytes) {
        assert!(covered.len() + sig.len() == bytes.len());
        let mut out = Vec::new();
        d.emit_unsigned(&mut out);
        out.extend_from_slice(&sig);
        assert!(out.len() <= 963);
        let (back, _, back_sig) = Description::parse(&out).expect("what we wrote parses");
        assert_eq!((back, back_sig), (d, sig));
    }
});
