#![no_main]
//! Handshake init/response views and the full checking functions
//! (credential extraction, signature verification) on arbitrary bytes.
use libfuzzer_sys::fuzz_target;
use ringvpn::crypto::handshake::{check_init, resp_receiver};
use ringvpn::crypto::NodeKey;
use ringvpn::wire::handshake::{InitPacket, RespPacket};

fuzz_target!(|bytes: &[u8]| {
    if let Ok(p) = InitPacket::new_checked(bytes) {
        let _ = (p.sender(), p.responder_hint(), p.ephemeral(), p.timestamp());
        let _ = (p.cred_type(), p.cred(), p.signed(), p.signature());
    }
    if let Ok(p) = RespPacket::new_checked(bytes) {
        let _ = (p.sender(), p.receiver(), p.ephemeral(), p.observed());
        let _ = (p.cred_type(), p.cred(), p.signed(), p.signature());
    }
    let _ = check_init(bytes, NodeKey([7; 32]), |_| true);
    let _ = resp_receiver(bytes);
});
