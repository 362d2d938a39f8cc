#![no_main]
//! Handshake init/response views, cookie replies, refusals, and the full checking
//! functions (credential extraction, certificate decoding, signature
//! verification) on arbitrary bytes; and arbitrary credentials sealed for
//! real, so that what is inside a sealed credential is fuzzed too.
use libfuzzer_sys::fuzz_target;
use ringvpn::crypto::handshake::{
    check_init, check_init_with, create_init_with, resp_receiver, Credential,
};
use ringvpn::crypto::{Identity, Seed};
use ringvpn::wire::handshake::{
    emit_refusal, parse_cookie_reply, parse_refusal, CredType, InitPacket, RespPacket,
    INIT_FIXED_LEN, MAX_CRED_LEN, SEAL_OVERHEAD,
};

fuzz_target!(|bytes: &[u8]| {
    if let Ok(p) = InitPacket::new_checked(bytes) {
        let _ = (p.sender(), p.responder_hint(), p.ephemeral(), p.timestamp());
        let _ = (p.cred_type(), p.cred(), p.signed(), p.signature());
        let _ = (p.proper(), p.cookie());
    }
    if let Ok(p) = RespPacket::new_checked(bytes) {
        let _ = (p.sender(), p.receiver(), p.ephemeral(), p.observed());
        let _ = (p.cred_type(), p.cred(), p.signed(), p.signature());
    }
    let _ = parse_cookie_reply(bytes);
    if let Ok((receiver, reason, serial)) = parse_refusal(bytes) {
        assert_eq!(&emit_refusal(receiver, reason, serial)[..], bytes);
    }
    let me = Identity::from_seed(&Seed([7; 32]));
    let _ = check_init(bytes, &me, |_| true);
    // A trust that takes any certificate: the certificate is decoded.
    let _ = check_init_with(bytes, &me, |_, _| Ok(()));
    let _ = resp_receiver(bytes);
    // Any credential, sealed to `me` by a real initiator.
    if let Some((&ty, cred)) = bytes.split_first() {
        let ty =
            [CredType::PublicKey, CredType::Certificate, CredType::Sealed][usize::from(ty % 3)];
        let them = Identity::from_seed(&Seed([8; 32]));
        let rng = ring::rand::SystemRandom::new();
        let mut out = [0u8; INIT_FIXED_LEN + MAX_CRED_LEN + SEAL_OVERHEAD];
        let cred = Credential {
            ty,
            bytes: &cred[..cred.len().min(MAX_CRED_LEN)],
        };
        if let Ok((_, n)) = create_init_with(&them, cred, &rng, 1, Some(me.public()), 1, &mut out) {
            let _ = check_init_with(&out[..n], &me, |_, c| {
                let _ = c.map(|c| c.signature_ok());
                Ok(())
            });
        }
    }
});
