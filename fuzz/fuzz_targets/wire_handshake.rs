#![no_main]
//! Handshake init/response views, cookie replies, and the full checking
//! functions (credential extraction, certificate decoding, signature
//! verification) on arbitrary bytes.
use libfuzzer_sys::fuzz_target;
use ringvpn::crypto::handshake::{check_init, check_init_with, resp_receiver};
use ringvpn::crypto::NodeKey;
use ringvpn::wire::handshake::{parse_cookie_reply, InitPacket, RespPacket};

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
    let _ = check_init(bytes, NodeKey([7; 32]), |_| true);
    // A trust that takes any certificate: the certificate is decoded.
    let _ = check_init_with(bytes, NodeKey([7; 32]), |_, _| Ok(()));
    let _ = resp_receiver(bytes);
});
