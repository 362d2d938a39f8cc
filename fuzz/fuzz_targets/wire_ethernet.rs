#![no_main]
use libfuzzer_sys::fuzz_target;
use ringvpn::wire::ethernet::Frame;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(f) = Frame::new_checked(bytes) {
        let _ = (
            f.dst().is_multicast(),
            f.src(),
            f.ethertype(),
            f.payload().len(),
        );
    }
});
