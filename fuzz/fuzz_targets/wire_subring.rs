#![no_main]
//! Sub-ring messages (`wire::subring`, `subring::record`): tagged
//! datagrams, carried headers, group records and endpoints parse
//! strictly; what parsed emits back to the same bytes (headers) or to
//! bytes that read back as the same value (records, endpoints).
use libfuzzer_sys::fuzz_target;
use ringvpn::overlay::Addr;
use ringvpn::wire::endpoint;
use ringvpn::wire::subring::{Carried, CarriedRepr, RecordBody, Tagged, TaggedRepr};

fuzz_target!(|bytes: &[u8]| {
    if let Ok(t) = Tagged::new_checked(bytes) {
        let mut out = [0u8; 12];
        TaggedRepr { network: t.network() }.emit(&mut out);
        assert_eq!(&out[..], &bytes[..12]);
        let _ = t.payload();
    }
    if let Ok(c) = Carried::new_checked(bytes) {
        let mut out = [0u8; 24];
        CarriedRepr {
            network: c.network(),
            src: c.src(),
        }
        .emit(&mut out);
        assert_eq!(&out[..], &bytes[..24]);
    }
    if let Ok((body, _)) = RecordBody::parse(bytes) {
        // Emitted again, it reads back as itself (an IPv4 endpoint's unused
        // bytes need not be zero on the way in: the signature covers the
        // bytes as sent).
        let mut out = Vec::new();
        body.emit(&mut out);
        assert_eq!(RecordBody::parse(&out), Ok((body, out.len())));
    }
    if let Ok(ep) = endpoint::parse_endpoint(bytes) {
        let mut out = [0u8; endpoint::LEN];
        endpoint::emit_endpoint(&ep, &mut out);
        assert_eq!(endpoint::parse_endpoint(&out), Ok(ep));
    }
    let owner = Addr::from_bytes(bytes.get(..16).and_then(|b| b.try_into().ok()).unwrap_or_default());
    let _ = ringvpn::subring::record::verify(bytes, owner);
});
