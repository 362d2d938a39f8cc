//! Answers to the host's link-local questions, written on the TAP: ARP and
//! neighbour solicitations for virtual addresses (never sent over the
//! overlay), DHCP, DNS questions to the virtual router, and the
//! gratuitous ARP at start.

use super::{VpnConfig, VIRTUAL_MAC};
use crate::wire::ethernet::{self, Frame, Mac, HEADER_LEN as ETH_LEN};
use crate::wire::ip::{self, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, PROTO_ICMPV6};
use crate::wire::{arp, dhcp, dns, ndp};
use std::net::{Ipv4Addr, Ipv6Addr};

/// The Ethernet header of an answer from the virtual router.
fn header_to(dst: Mac, ethertype: u16) -> ethernet::Repr {
    ethernet::Repr {
        dst,
        src: VIRTUAL_MAC,
        ethertype,
    }
}

/// What the frame asked and whether it was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    /// The frame was rewritten in place into the answer (same length).
    Answered,
    /// A local question that needs no answer (a duplicate-address probe,
    /// a router solicitation, an MLD report, a question about ourselves).
    Ignored,
}

/// Answers an ARP request for a virtual address other than the host's
/// own, in place: "it is at the virtual MAC". `own`: the host's address.
pub fn answer_arp(frame: &mut [u8], vpn: &VpnConfig, own: Option<Ipv4Addr>) -> Local {
    let Some(body) = frame.get_mut(ETH_LEN..) else {
        return Local::Ignored;
    };
    let Ok(mut p) = arp::Packet::new_checked(&mut *body) else {
        return Local::Ignored;
    };
    let (target, sender) = (p.target_ip(), p.sender_ip());
    if p.op() != arp::OP_REQUEST
        || !vpn.contains(target)
        || Some(target) == own
        || sender.is_unspecified()
        || sender == target
    {
        return Local::Ignored;
    }
    let asker = p.sender_mac();
    p.make_reply(VIRTUAL_MAC);
    header_to(asker, ETHERTYPE_ARP).emit(frame);
    Local::Answered
}

/// A gratuitous ARP for the virtual router's address (`vpn.gateway()`),
/// sent when the node starts so the host learns the virtual MAC at once.
pub fn gratuitous_arp(out: &mut [u8], vpn: &VpnConfig) -> usize {
    header_to(Mac::BROADCAST, ETHERTYPE_ARP).emit(out);
    arp::GratuitousRepr {
        mac: VIRTUAL_MAC,
        ip: vpn.gateway(),
    }
    .emit(&mut out[ETH_LEN..]);
    ETH_LEN + arp::LEN
}

/// Answers a neighbour solicitation for an address of our IPv6 prefix
/// other than the host's own, in place (an advertisement is exactly as
/// long as a solicitation carrying the source link-layer option, which is
/// what Linux sends; a shorter one is ignored). Returns `None` when the
/// frame is not a neighbour-discovery message at all.
pub fn answer_ndp(frame: &mut [u8], vpn: &VpnConfig, own: Option<Ipv6Addr>) -> Option<Local> {
    let eth = Frame::new_checked(&*frame).ok()?;
    let asker = eth.src();
    let v6 = ip::V6::new_checked(eth.payload()).ok()?;
    if v6.next_header() != PROTO_ICMPV6 {
        return None;
    }
    let icmp_type = *v6.payload().first()?;
    // Router solicitation/advertisement, NS/NA, redirect, and MLD.
    if !(ndp::TYPE_ROUTER_SOLICIT..=137).contains(&icmp_type)
        && !matches!(icmp_type, 130..=132 | 143)
    {
        return None;
    }
    if icmp_type != ndp::TYPE_NEIGHBOUR_SOLICIT {
        return Some(Local::Ignored);
    }
    let (src, hops, len) = (v6.src(), v6.hop_limit(), v6.payload_len());
    let Ok(ns) = ndp::Solicit::new_checked(v6.payload()) else {
        return Some(Local::Ignored);
    };
    let target = ns.target();
    // Members' addresses, and the virtual router's (routes into the TAP
    // go through it).
    let wanted = vpn.ipv6.is_some()
        && vpn
            .v4_of(target)
            .is_some_and(|v4| vpn.assignable(v4) || v4 == vpn.gateway());
    // A duplicate-address probe comes from "::"; hop limit 255 proves it
    // was not forwarded from elsewhere (RFC 4861).
    if !wanted || Some(target) == own || src.is_unspecified() || hops != 255 || len != ndp::NA_LEN {
        return Some(Local::Ignored);
    }
    let total = ETH_LEN + ip::V6_HEADER_LEN + ndp::NA_LEN;
    if frame.len() < total {
        return Some(Local::Ignored);
    }
    header_to(asker, ETHERTYPE_IPV6).emit(frame);
    ip::V6Repr {
        src: target,
        dst: src,
        next_header: PROTO_ICMPV6,
        hop_limit: 255,
        payload_len: ndp::NA_LEN as u16,
    }
    .emit(&mut frame[ETH_LEN..]);
    ndp::AdvertRepr {
        target,
        mac: VIRTUAL_MAC,
        to: src,
    }
    .emit(&mut frame[ETH_LEN + ip::V6_HEADER_LEN..]);
    Some(Local::Answered)
}

/// What the node needs from a host's DHCP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DhcpRequest {
    pub msg_type: u8,
    pub xid: u32,
    pub flags: u16,
    pub chaddr: Mac,
    /// Requested address (option 50), or the client's current one.
    pub requested: Option<Ipv4Addr>,
    /// The server the client chose (option 54), in a REQUEST.
    pub server: Option<Ipv4Addr>,
}

/// A DHCP request from the host, if `frame` is one (IPv4, UDP 68 → 67).
pub fn dhcp_request(frame: &[u8]) -> Option<DhcpRequest> {
    let eth = Frame::new_checked(frame).ok()?;
    if eth.ethertype() != ETHERTYPE_IPV4 {
        return None;
    }
    let v4 = ip::V4::new_checked(eth.payload()).ok()?;
    if v4.protocol() != ip::PROTO_UDP {
        return None;
    }
    let udp = ip::Udp::new_checked(v4.payload()).ok()?;
    if udp.dst_port() != dhcp::SERVER_PORT || udp.src_port() != dhcp::CLIENT_PORT {
        return None;
    }
    let m = dhcp::Message::new_checked(udp.payload()).ok()?;
    let requested = m.requested_ip().or_else(|| {
        let c = m.ciaddr();
        (!c.is_unspecified()).then_some(c)
    });
    Some(DhcpRequest {
        msg_type: m.msg_type()?,
        xid: m.xid(),
        flags: m.flags(),
        chaddr: m.chaddr(),
        requested,
        server: m.server_id(),
    })
}

/// Writes the whole reply frame (Ethernet, IPv4, UDP, DHCP) for a request
/// of type `msg_type`, offering `ip`: OFFER for a DISCOVER, ACK for a
/// REQUEST of `ip`, NAK for a REQUEST of anything else or to another
/// server. Returns its length, or `None` for a message we do not answer.
pub fn dhcp_reply(
    out: &mut [u8],
    vpn: &VpnConfig,
    request: DhcpRequest,
    ip: Ipv4Addr,
) -> Option<usize> {
    let DhcpRequest {
        msg_type,
        xid,
        flags,
        chaddr,
        requested,
        server,
    } = request;
    let gateway = vpn.gateway();
    let answer = match msg_type {
        dhcp::DISCOVER => dhcp::OFFER,
        dhcp::REQUEST if server.is_some_and(|s| s != gateway) => return None,
        dhcp::REQUEST if requested == Some(ip) => dhcp::ACK,
        dhcp::REQUEST => dhcp::NAK,
        _ => return None,
    };
    let reply = dhcp::Reply {
        msg_type: answer,
        xid,
        flags,
        chaddr,
        yiaddr: if answer == dhcp::NAK {
            Ipv4Addr::UNSPECIFIED
        } else {
            ip
        },
        server: gateway,
        prefix: vpn.subnet.1,
        lease_secs: 3600,
        mtu: vpn.mtu,
    };
    let dhcp_len = reply.buffer_len();
    let udp_len = ip::UDP_HEADER_LEN + dhcp_len;
    let total = ETH_LEN + ip::V4_HEADER_LEN + udp_len;
    if out.len() < total {
        return None;
    }
    // To the client's MAC; the IP destination is the limited broadcast
    // (the client has no address yet), which every client accepts.
    header_to(chaddr, ETHERTYPE_IPV4).emit(out);
    ip::V4Repr {
        src: gateway,
        dst: Ipv4Addr::BROADCAST,
        proto: ip::PROTO_UDP,
        payload_len: udp_len,
    }
    .emit(&mut out[ETH_LEN..]);
    let u = &mut out[ETH_LEN + ip::V4_HEADER_LEN..];
    ip::UdpRepr {
        src_port: dhcp::SERVER_PORT,
        dst_port: dhcp::CLIENT_PORT,
        payload_len: dhcp_len,
    }
    .emit(u);
    reply.emit(&mut u[ip::UDP_HEADER_LEN..]);
    Some(total)
}

/// A DNS question the host sent to the virtual router (UDP port 53), and
/// where the answer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsAsk {
    pub mac: Mac,
    pub ip: Ipv4Addr,
    pub port: u16,
    pub question: dns::Question,
}

/// If `frame` is a UDP datagram for the virtual router's port 53: the
/// question it asks (`Err` if it is no query we can read).
pub fn dns_question(frame: &[u8], vpn: &VpnConfig) -> Option<Result<DnsAsk, crate::wire::Error>> {
    let eth = Frame::new_checked(frame).ok()?;
    let v4 = ip::V4::new_checked(eth.payload()).ok()?;
    if v4.protocol() != ip::PROTO_UDP || v4.dst() != vpn.gateway() {
        return None;
    }
    let udp = ip::Udp::new_checked(v4.payload()).ok()?;
    if udp.dst_port() != dns::PORT {
        return None;
    }
    Some(dns::Question::parse(udp.payload()).map(|question| DnsAsk {
        mac: eth.src(),
        ip: v4.src(),
        port: udp.src_port(),
        question,
    }))
}

/// Writes the whole answer frame (Ethernet, IPv4, UDP, DNS) for `ask`;
/// returns its length, or `None` if `out` is too short.
pub fn dns_reply(
    out: &mut [u8],
    vpn: &VpnConfig,
    ask: &DnsAsk,
    reply: &dns::Reply,
) -> Option<usize> {
    let dns_len = reply.buffer_len();
    let udp_len = ip::UDP_HEADER_LEN + dns_len;
    let total = ETH_LEN + ip::V4_HEADER_LEN + udp_len;
    if out.len() < total {
        return None;
    }
    header_to(ask.mac, ETHERTYPE_IPV4).emit(out);
    ip::V4Repr {
        src: vpn.gateway(),
        dst: ask.ip,
        proto: ip::PROTO_UDP,
        payload_len: udp_len,
    }
    .emit(&mut out[ETH_LEN..]);
    let u = &mut out[ETH_LEN + ip::V4_HEADER_LEN..];
    ip::UdpRepr {
        src_port: dns::PORT,
        dst_port: ask.port,
        payload_len: dns_len,
    }
    .emit(u);
    reply.emit(&mut u[ip::UDP_HEADER_LEN..]);
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    const HOST: Mac = Mac([2, 0, 0, 0, 0, 0x0a]);

    fn vpn() -> VpnConfig {
        VpnConfig::new("test")
    }

    fn arp_request(sender: [u8; 4], target: [u8; 4]) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&HOST.0);
        f.extend_from_slice(&[8, 6, 0, 1, 8, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&HOST.0);
        f.extend_from_slice(&sender);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&target);
        f
    }

    #[test]
    fn arp_for_virtual_addresses_is_answered_in_place() {
        let own = Some(Ipv4Addr::new(100, 64, 0, 10));
        let mut f = arp_request([100, 64, 0, 10], [100, 64, 0, 12]);
        assert_eq!(answer_arp(&mut f, &vpn(), own), Local::Answered);
        assert_eq!(&f[..6], &HOST.0, "back to the asker");
        assert_eq!(&f[6..12], &VIRTUAL_MAC.0);
        let p = arp::Packet::new_checked(&f[14..]).unwrap();
        assert_eq!(p.op(), arp::OP_REPLY);
        assert_eq!(p.sender_mac(), VIRTUAL_MAC);
        assert_eq!(p.sender_ip(), Ipv4Addr::new(100, 64, 0, 12));
        // Our own address, a probe, and an address outside the subnet.
        for (s, t) in [
            ([100, 64, 0, 11], [100, 64, 0, 10]),
            ([0, 0, 0, 0], [100, 64, 0, 12]),
            ([100, 64, 0, 10], [10, 0, 0, 1]),
        ] {
            assert_eq!(
                answer_arp(&mut arp_request(s, t), &vpn(), own),
                Local::Ignored
            );
        }
    }

    fn ns(src: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
        let mut f = vec![0x33, 0x33, 0xff, 0, 0, 0x0c];
        f.extend_from_slice(&HOST.0);
        f.extend_from_slice(&[0x86, 0xdd]);
        let mut body = vec![ndp::TYPE_NEIGHBOUR_SOLICIT, 0, 0, 0, 0, 0, 0, 0];
        body.extend_from_slice(&target.octets());
        body.extend_from_slice(&[1, 1]);
        body.extend_from_slice(&HOST.0);
        let mut v6 = [0u8; 40];
        ip::V6Repr {
            src,
            dst: "ff02::1:ff00:c".parse().unwrap(),
            next_header: 58,
            hop_limit: 255,
            payload_len: 32,
        }
        .emit(&mut v6);
        f.extend_from_slice(&v6);
        f.extend_from_slice(&body);
        f
    }

    #[test]
    fn neighbour_solicitations_are_answered_in_place() {
        let c = vpn();
        let me = c.v6_of(Ipv4Addr::new(100, 64, 0, 10)).unwrap();
        let target = c.v6_of(Ipv4Addr::new(100, 64, 0, 12)).unwrap();
        let mut f = ns(me, target);
        assert_eq!(answer_ndp(&mut f, &c, Some(me)), Some(Local::Answered));
        assert_eq!(&f[..6], &HOST.0);
        let v6 = ip::V6::new_checked(&f[14..]).unwrap();
        assert_eq!((v6.src(), v6.dst(), v6.hop_limit()), (target, me, 255));
        let icmp = v6.payload();
        assert_eq!(icmp[0], ndp::TYPE_NEIGHBOUR_ADVERT);
        let sum = ip::checksum_add(ip::pseudo_v6(&target, &me, 58, 32), icmp);
        assert_eq!(ip::checksum_finish(sum), 0, "checksum verifies");
        assert_eq!(&icmp[26..32], &VIRTUAL_MAC.0);
        // A duplicate-address probe and a question about ourselves.
        let mut dad = ns(Ipv6Addr::UNSPECIFIED, target);
        assert_eq!(answer_ndp(&mut dad, &c, Some(me)), Some(Local::Ignored));
        let mut mine = ns(target, me);
        assert_eq!(answer_ndp(&mut mine, &c, Some(me)), Some(Local::Ignored));
        // Not neighbour discovery at all.
        let mut arp = arp_request([100, 64, 0, 10], [100, 64, 0, 12]);
        assert_eq!(answer_ndp(&mut arp, &c, Some(me)), None);
    }

    fn dhcp_frame(msg_type: u8, requested: Option<[u8; 4]>) -> Vec<u8> {
        let mut d = vec![0u8; dhcp::FIXED_LEN];
        d[..4].copy_from_slice(&[1, 1, 6, 0]);
        d[4..8].copy_from_slice(&42u32.to_be_bytes());
        d[28..34].copy_from_slice(&HOST.0);
        d[236..240].copy_from_slice(&[99, 130, 83, 99]);
        d.extend_from_slice(&[53, 1, msg_type]);
        if let Some(r) = requested {
            d.extend_from_slice(&[50, 4]);
            d.extend_from_slice(&r);
        }
        d.push(255);
        let mut u = vec![0, 68, 0, 67];
        u.extend_from_slice(&((8 + d.len()) as u16).to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend_from_slice(&d);
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&HOST.0);
        f.extend_from_slice(&[8, 0]);
        let mut v4 = [0u8; 20];
        ip::V4Repr {
            src: Ipv4Addr::UNSPECIFIED,
            dst: Ipv4Addr::BROADCAST,
            proto: 17,
            payload_len: u.len(),
        }
        .emit(&mut v4);
        f.extend_from_slice(&v4);
        f.extend_from_slice(&u);
        f
    }

    #[test]
    fn dhcp_offers_and_acknowledges_the_claimed_address() {
        let c = vpn();
        let ip4 = Ipv4Addr::new(100, 64, 3, 7);
        let mut out = [0u8; 600];
        let req = dhcp_request(&dhcp_frame(dhcp::DISCOVER, None)).unwrap();
        let n = dhcp_reply(&mut out, &c, req, ip4).unwrap();
        let eth = Frame::new_checked(&out[..n]).unwrap();
        assert_eq!(eth.dst(), HOST);
        let v4 = ip::V4::new_checked(eth.payload()).unwrap();
        assert_eq!((v4.src(), v4.dst()), (c.gateway(), Ipv4Addr::BROADCAST));
        let udp = ip::Udp::new_checked(v4.payload()).unwrap();
        assert_eq!((udp.src_port(), udp.dst_port()), (67, 68));
        let d = udp.payload();
        assert_eq!((d[0], &d[16..20]), (2, &ip4.octets()[..]));
        assert_eq!(&d[240..243], &[53, 1, dhcp::OFFER]);
        // REQUEST for the offered address: ACK; for another: NAK.
        let req = dhcp_request(&dhcp_frame(dhcp::REQUEST, Some(ip4.octets()))).unwrap();
        let n = dhcp_reply(&mut out, &c, req, ip4).unwrap();
        assert!(out[..n].windows(3).any(|w| w == [53, 1, dhcp::ACK]));
        let req = dhcp_request(&dhcp_frame(dhcp::REQUEST, Some([100, 64, 9, 9]))).unwrap();
        let n = dhcp_reply(&mut out, &c, req, ip4).unwrap();
        assert!(out[..n].windows(3).any(|w| w == [53, 1, dhcp::NAK]));
        // Not DHCP.
        assert!(dhcp_request(&arp_request([1, 2, 3, 4], [5, 6, 7, 8])).is_none());
    }

    #[test]
    fn gratuitous_arp_announces_the_router() {
        let mut out = [0u8; 64];
        let n = gratuitous_arp(&mut out, &vpn());
        let p = arp::Packet::new_checked(&out[14..n]).unwrap();
        assert_eq!(p.sender_ip(), vpn().gateway());
        assert_eq!(p.sender_mac(), VIRTUAL_MAC);
    }
}
