#![no_main]
//! Certificates and revocation lists: the strict binary decoders, the
//! text armour, re-encoding (a parsed certificate encodes to the same
//! bytes), the trust check and handshake inits carrying them.
use libfuzzer_sys::fuzz_target;
use ringvpn::crypto::cert::{dearmour, Cert, Revocations, Trust, CERT_ARMOUR};
use ringvpn::crypto::handshake::check_init_with;
use ringvpn::crypto::{Identity, Seed};

fuzz_target!(|bytes: &[u8]| {
    if let Ok(c) = Cert::decode(bytes) {
        assert_eq!(c.encode().as_deref(), Ok(bytes), "decode/encode round trip");
        let trust = Trust {
            network: "lab".into(),
            cas: vec![c.clone()],
            revocations: vec![],
        };
        let _ = trust.check(&c, &c.subject, 1_800_000_000);
        let _ = c.allows("100.64.0.1".parse().unwrap());
    }
    if let Ok(r) = Revocations::decode(bytes) {
        assert_eq!(r.encode().as_deref(), Ok(bytes), "decode/encode round trip");
        let _ = r.signature_ok();
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = dearmour(CERT_ARMOUR, text);
    }
    let me = Identity::from_seed(&Seed([7; 32]));
    let _ = check_init_with(bytes, &me, |_, c| {
        let _ = c.map(|c| c.signature_ok());
        Ok(())
    });
});
