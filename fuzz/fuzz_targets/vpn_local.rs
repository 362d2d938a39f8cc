#![no_main]
//! What the host sends on the TAP, as the node's local answers read it:
//! ARP, neighbour discovery, DHCP, the IP header views and the firewall's
//! transport view. Answers are
//! written in place and must stay within the frame.
use libfuzzer_sys::fuzz_target;
use ringvpn::vpn::local::{answer_arp, answer_ndp, dhcp_reply, dhcp_request};
use ringvpn::vpn::VpnConfig;
use ringvpn::wire::{arp, dhcp, ip, ndp};

fuzz_target!(|bytes: &[u8]| {
    let vpn = VpnConfig::new("fuzz");
    let own = Some("100.64.0.10".parse().unwrap());
    let own6 = vpn.v6_of("100.64.0.10".parse().unwrap());
    let mut f = bytes.to_vec();
    let len = f.len();
    let _ = answer_arp(&mut f, &vpn, own);
    assert_eq!(f.len(), len);
    let mut f = bytes.to_vec();
    let _ = answer_ndp(&mut f, &vpn, own6);
    assert_eq!(f.len(), len);
    if let Some(req) = dhcp_request(bytes) {
        let mut out = [0u8; 2048];
        if let Some(n) = dhcp_reply(&mut out, &vpn, req, "100.64.3.7".parse().unwrap()) {
            assert!(n <= out.len());
        }
    }
    let _ =
        dhcp::Message::new_checked(bytes).map(|m| (m.msg_type(), m.requested_ip(), m.server_id()));
    let _ = arp::Packet::new_checked(bytes).map(|p| (p.op(), p.sender_ip(), p.target_ip()));
    let _ = ndp::Solicit::new_checked(bytes).map(|s| s.target());
    let _ = (
        ip::destination(bytes),
        ip::source(bytes),
        ip::addresses(bytes),
    );
    // The firewall's view, and a firewall judging it both ways.
    if let Some(t) = ip::transport(bytes) {
        let mut fw = ringvpn::firewall::Firewall::new(
            vec![ringvpn::firewall::Rule::parse("tcp 22 group:ops").unwrap()],
            1,
        );
        let now = ringvpn::time::Instant::ZERO;
        fw.outbound(now, &t);
        let _ = fw.inbound(now, &t, &ringvpn::firewall::Origin::default());
    }
    let _ = ip::V4::new_checked(bytes).map(|p| p.payload().len());
    let _ = ip::V6::new_checked(bytes).map(|p| p.payload().len());
    let _ = ip::Udp::new_checked(bytes).map(|u| u.payload().len());
});
