#![no_main]
//! Sealed-message header view: any input either fails the check or yields
//! in-bounds fields.
use libfuzzer_sys::fuzz_target;
use ringvpn::wire::{data, peek};

fuzz_target!(|bytes: &[u8]| {
    let _ = peek(bytes);
    if let Ok(p) = data::Packet::new_checked(bytes) {
        let _ = (p.msg_type(), p.receiver(), p.counter(), p.header().len());
    }
});
