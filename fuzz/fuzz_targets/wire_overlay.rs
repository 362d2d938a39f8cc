#![no_main]
//! Overlay messages: the routed header view, every routed message type, the
//! neighbours, connection-list and endpoints messages, and the routed data and ring
//! broadcast headers, and the link's ping and pong; what parses must
//! re-emit to the same bytes.
use libfuzzer_sys::fuzz_target;
use ringvpn::wire::control::{self, Ping};
use ringvpn::wire::overlay::{
    Broadcast, ConnList, EndpointList, Neighbours, OverlayMsg, Routed, RoutedData,
};

fuzz_target!(|bytes: &[u8]| {
    if let Ok(r) = Routed::new_checked(bytes) {
        let _ = (r.mode(), r.hops(), r.ttl(), r.src(), r.dst());
        if let Ok(m) = OverlayMsg::parse(r.msg_type(), r.payload()) {
            let mut out = Vec::new();
            m.emit(&mut out);
            assert_eq!(OverlayMsg::parse(r.msg_type(), &out).as_ref(), Ok(&m));
        }
    }
    for ty in 1..=6 {
        let _ = OverlayMsg::parse(ty, bytes);
    }
    if let Ok(p) = Ping::parse(bytes) {
        let mut out = Ping::ping(p.stamp).to_vec();
        if p.pong {
            control::ping_to_pong(&mut out);
            if let Some(from) = p.observed {
                out.extend_from_slice(&[0; ringvpn::wire::endpoint::LEN]);
                control::emit_observed(&from, &mut out[control::PING_LEN..]);
            }
        }
        assert_eq!(Ping::parse(&out), Ok(p));
    }
    if let Ok(n) = Neighbours::parse(bytes) {
        let mut out = Vec::new();
        n.emit(&mut out);
        assert_eq!(Neighbours::parse(&out), Ok(n));
    }
    if let Ok(l) = ConnList::parse(bytes) {
        let mut out = Vec::new();
        l.emit(&mut out);
        assert_eq!(ConnList::parse(&out), Ok(l));
    }
    if let Ok(l) = EndpointList::parse(bytes) {
        let mut out = Vec::new();
        l.emit(&mut out);
        assert_eq!(EndpointList::parse(&out), Ok(l));
    }
    if let Ok(d) = RoutedData::new_checked(bytes) {
        let _ = (d.hops(), d.ttl(), d.dst());
    }
    if let Ok(b) = Broadcast::new_checked(bytes) {
        let _ = (b.hops(), b.src(), b.seq(), b.end(), b.payload().len());
    }
});
