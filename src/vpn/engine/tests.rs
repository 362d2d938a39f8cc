//! The policy object alone: no node, no peers, a bare overlay for its
//! DHT. What the node does with each `Out` is the node's tests'.
use super::*;
use crate::overlay::OverlayConfig;
use crate::wire::ip::{UdpRepr, V4Repr, PROTO_UDP};

struct OneMember(NodeKey, bool);

impl Members for OneMember {
    fn key(&self, _: PeerIdx) -> NodeKey {
        self.0
    }
    fn may_hold(&self, _: PeerIdx, _: Ipv4Addr) -> bool {
        self.1
    }
    fn origin(&self, _: PeerIdx) -> Origin<'_> {
        Origin::default()
    }
}

fn setup() -> (Vpn, Overlay, Pool) {
    let key = Identity::from_seed(&crate::crypto::keys::Seed([7; 32])).public();
    let mut cfg = VpnConfig::new("test");
    cfg.address = AddressMode::Static(Ipv4Addr::new(100, 64, 0, 1));
    let vpn = Vpn::new(cfg, &key, Instant::ZERO, false, 1);
    let ov = Overlay::new(key, &[], OverlayConfig::default(), 1, Instant::ZERO);
    (vpn, ov, Pool::new(16))
}

/// An IPv4 UDP packet (no Ethernet header) from `src` to `dst`.
fn packet(src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let mut p = vec![0u8; 20 + 8 + 4];
    V4Repr {
        src,
        dst,
        proto: PROTO_UDP,
        payload_len: 12,
    }
    .emit(&mut p);
    UdpRepr {
        src_port: 9,
        dst_port: 9,
        payload_len: 4,
    }
    .emit(&mut p[20..]);
    p
}

fn frame(vpn: &Vpn, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0u8; 14];
    ethernet::Repr {
        dst: VIRTUAL_MAC,
        src: vpn.host_mac,
        ethertype: ETHERTYPE_IPV4,
    }
    .emit(&mut f);
    f.extend_from_slice(&packet(src, dst));
    f
}

#[test]
fn a_packet_for_an_unknown_member_waits_for_one_lookup() {
    let (mut vpn, mut ov, mut pool) = setup();
    let (me, them) = (Ipv4Addr::new(100, 64, 0, 1), Ipv4Addr::new(100, 64, 0, 2));
    for _ in 0..2 {
        let buf = pool.alloc_with(&frame(&vpn, me, them)).unwrap();
        let out = vpn.from_host(Instant::ZERO, &mut ov, &mut pool, None, buf);
        assert!(matches!(out, Out::Parked));
    }
    assert_eq!(vpn.stats().lookups, 1, "one lookup for both packets");
    assert_eq!(vpn.resolver().resolving(), 1);
}

#[test]
fn a_packet_for_the_virtual_router_or_outside_the_network_is_dropped() {
    let (mut vpn, mut ov, mut pool) = setup();
    let me = Ipv4Addr::new(100, 64, 0, 1);
    let gateway = vpn.config().gateway();
    for (dst, why) in [
        (gateway, Discard::LocalOnly),
        (Ipv4Addr::new(198, 18, 0, 1), Discard::NotInNetwork),
    ] {
        let buf = pool.alloc_with(&frame(&vpn, me, dst)).unwrap();
        match vpn.from_host(Instant::ZERO, &mut ov, &mut pool, None, buf) {
            Out::Drop(buf, got) => {
                assert_eq!(got, why);
                pool.free(buf);
            }
            _ => panic!("{dst} not dropped"),
        }
    }
}

#[test]
fn a_member_sending_from_an_address_it_may_not_hold_is_refused_before_a_lookup() {
    let (mut vpn, mut ov, mut pool) = setup();
    let them = OneMember(
        Identity::from_seed(&crate::crypto::keys::Seed([8; 32])).public(),
        false,
    );
    let p = packet(Ipv4Addr::new(100, 64, 0, 9), Ipv4Addr::new(100, 64, 0, 1));
    let buf = pool.alloc_with(&p).unwrap();
    let from = Sender {
        members: &them,
        routes: None,
        peer: PeerIdx(3),
    };
    let out = vpn.from_member(Instant::ZERO, &mut ov, &mut pool, from, buf);
    assert!(matches!(
        out,
        Out::Drop(_, Discard::NotCertified(PeerIdx(3)))
    ));
    assert_eq!(vpn.stats().lookups, 0);
}

#[test]
fn a_packet_for_the_host_gets_its_ethernet_header_in_place() {
    let (mut vpn, _, mut pool) = setup();
    let p = packet(Ipv4Addr::new(100, 64, 0, 9), Ipv4Addr::new(100, 64, 0, 1));
    let buf = pool.alloc_with(&p).unwrap();
    let Out::Frame(buf) = vpn.to_host(&mut pool, buf) else {
        panic!("not for the host");
    };
    let f = Frame::new_checked(pool.data(&buf)).unwrap();
    assert_eq!((f.dst(), f.src()), (vpn.host_mac, VIRTUAL_MAC));
    assert_eq!(&pool.data(&buf)[14..], &p[..]);
}
