//! IPv4 and IPv6 headers, UDP, and the Internet checksum: the parts of the
//! IP layer the node reads (to route a packet by its destination, to check
//! a source) and writes (ARP/ND/DHCP answers on the TAP).

use super::{get_u16, Error, Result};
use std::net::{Ipv4Addr, Ipv6Addr};

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;

/// The Internet checksum (RFC 1071) of `data`, continuing from `sum`.
///
/// Eight bytes at a time in the host's byte order, then swapped: the
/// one's-complement sum does not care about byte order (RFC 1071 §2(B)),
/// and segmenting a TAP super-frame sums every byte it sends.
pub fn checksum_add(sum: u32, data: &[u8]) -> u32 {
    let word = |w: &[u8]| {
        u128::from(u64::from_ne_bytes([
            w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7],
        ]))
    };
    // Wide enough that no carry is lost; folded once at the end. Four
    // words per turn keep the loop's own overhead small.
    let mut wide = 0u128;
    let mut blocks = data.chunks_exact(32);
    for b in &mut blocks {
        wide += word(&b[..8]) + word(&b[8..16]) + word(&b[16..24]) + word(&b[24..]);
    }
    let mut words = blocks.remainder().chunks_exact(8);
    for w in &mut words {
        wide += word(w);
    }
    let mut acc = (wide & 0xffff_ffff_ffff_ffff) as u64;
    let (s, carry) = acc.overflowing_add((wide >> 64) as u64);
    acc = s + u64::from(carry);
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    let mut folded = acc as u16;
    if cfg!(target_endian = "little") {
        folded = folded.swap_bytes();
    }
    let mut tail = u32::from(folded);
    let mut pairs = words.remainder().chunks_exact(2);
    for c in &mut pairs {
        tail += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = pairs.remainder() {
        tail += u32::from(*last) << 8;
    }
    // Fold before adding so that long chains of calls cannot overflow.
    let s = u64::from(sum) + u64::from(tail);
    ((s & 0xffff_ffff) + (s >> 32)) as u32
}

/// Folds a running sum into the final one's-complement checksum.
pub fn checksum_finish(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The IPv6 pseudo-header sum for an upper-layer checksum.
pub fn pseudo_v6(src: &Ipv6Addr, dst: &Ipv6Addr, proto: u8, len: u32) -> u32 {
    let mut sum = checksum_add(0, &src.octets());
    sum = checksum_add(sum, &dst.octets());
    sum = checksum_add(sum, &len.to_be_bytes());
    checksum_add(sum, &[0, 0, 0, proto])
}

/// A view of an IPv4 packet (header and payload, without Ethernet).
#[derive(Debug)]
pub struct V4<T: AsRef<[u8]>> {
    buffer: T,
}

pub const V4_HEADER_LEN: usize = 20;

impl<T: AsRef<[u8]>> V4<T> {
    /// Version 4, a header length within the buffer and a total length
    /// between the header and the buffer (Ethernet may pad beyond it).
    pub fn new_checked(buffer: T) -> Result<V4<T>> {
        let b = buffer.as_ref();
        if b.len() < V4_HEADER_LEN || b[0] >> 4 != 4 {
            return Err(Error);
        }
        let hl = usize::from(b[0] & 0x0f) * 4;
        let total = usize::from(get_u16(b, 2));
        if hl < V4_HEADER_LEN || total < hl || total > b.len() {
            return Err(Error);
        }
        Ok(V4 { buffer })
    }

    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[0] & 0x0f) * 4
    }

    pub fn total_len(&self) -> usize {
        usize::from(get_u16(self.buffer.as_ref(), 2))
    }

    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[9]
    }

    pub fn src(&self) -> Ipv4Addr {
        let b = self.buffer.as_ref();
        Ipv4Addr::new(b[12], b[13], b[14], b[15])
    }

    pub fn dst(&self) -> Ipv4Addr {
        let b = self.buffer.as_ref();
        Ipv4Addr::new(b[16], b[17], b[18], b[19])
    }

    /// The payload, without any Ethernet padding after the total length.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..self.total_len()]
    }
}

/// An IPv4 header to write: no options, DF clear, TTL 64, checksummed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V4Repr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    /// Bytes after the header.
    pub payload_len: usize,
}

impl V4Repr {
    pub const fn buffer_len(&self) -> usize {
        V4_HEADER_LEN
    }

    /// Writes the header into `out[..V4_HEADER_LEN]`.
    pub fn emit(&self, out: &mut [u8]) {
        let total = (V4_HEADER_LEN + self.payload_len) as u16;
        out[..V4_HEADER_LEN].copy_from_slice(&[
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, self.proto, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ]);
        out[2..4].copy_from_slice(&total.to_be_bytes());
        out[12..16].copy_from_slice(&self.src.octets());
        out[16..20].copy_from_slice(&self.dst.octets());
        let c = checksum_finish(checksum_add(0, &out[..V4_HEADER_LEN]));
        out[10..12].copy_from_slice(&c.to_be_bytes());
    }
}

/// A UDP header to write, without a checksum (allowed over IPv4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpRepr {
    pub src_port: u16,
    pub dst_port: u16,
    /// Bytes after the header.
    pub payload_len: usize,
}

impl UdpRepr {
    pub const fn buffer_len(&self) -> usize {
        UDP_HEADER_LEN
    }

    /// Writes the header into `out[..UDP_HEADER_LEN]`.
    pub fn emit(&self, out: &mut [u8]) {
        out[..2].copy_from_slice(&self.src_port.to_be_bytes());
        out[2..4].copy_from_slice(&self.dst_port.to_be_bytes());
        out[4..6].copy_from_slice(&((UDP_HEADER_LEN + self.payload_len) as u16).to_be_bytes());
        out[6..8].copy_from_slice(&[0, 0]);
    }
}

/// A view of an IPv6 packet (fixed header and payload; extension headers
/// are part of the payload).
#[derive(Debug)]
pub struct V6<T: AsRef<[u8]>> {
    buffer: T,
}

pub const V6_HEADER_LEN: usize = 40;

impl<T: AsRef<[u8]>> V6<T> {
    pub fn new_checked(buffer: T) -> Result<V6<T>> {
        let b = buffer.as_ref();
        if b.len() < V6_HEADER_LEN || b[0] >> 4 != 6 {
            return Err(Error);
        }
        if V6_HEADER_LEN + usize::from(get_u16(b, 4)) > b.len() {
            return Err(Error);
        }
        Ok(V6 { buffer })
    }

    pub fn payload_len(&self) -> usize {
        usize::from(get_u16(self.buffer.as_ref(), 4))
    }

    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[6]
    }

    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[7]
    }

    fn addr_at(&self, at: usize) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[at..at + 16]);
        Ipv6Addr::from(a)
    }

    pub fn src(&self) -> Ipv6Addr {
        self.addr_at(8)
    }

    pub fn dst(&self) -> Ipv6Addr {
        self.addr_at(24)
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[V6_HEADER_LEN..V6_HEADER_LEN + self.payload_len()]
    }
}

/// An IPv6 fixed header to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V6Repr {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub next_header: u8,
    pub hop_limit: u8,
    /// Bytes after the header.
    pub payload_len: u16,
}

impl V6Repr {
    pub const fn buffer_len(&self) -> usize {
        V6_HEADER_LEN
    }

    /// Writes the header into `out[..V6_HEADER_LEN]`.
    pub fn emit(&self, out: &mut [u8]) {
        out[..8].copy_from_slice(&[0x60, 0, 0, 0, 0, 0, self.next_header, self.hop_limit]);
        out[4..6].copy_from_slice(&self.payload_len.to_be_bytes());
        out[8..24].copy_from_slice(&self.src.octets());
        out[24..40].copy_from_slice(&self.dst.octets());
    }
}

/// The destination of an IP packet (what the node routes on), if the bytes
/// are IPv4 or IPv6 with a consistent header.
pub fn destination(packet: &[u8]) -> Option<std::net::IpAddr> {
    match packet.first()? >> 4 {
        4 => V4::new_checked(packet).ok().map(|p| p.dst().into()),
        6 => V6::new_checked(packet).ok().map(|p| p.dst().into()),
        _ => None,
    }
}

/// Source and destination of an IP packet, read once.
pub fn addresses(packet: &[u8]) -> Option<(std::net::IpAddr, std::net::IpAddr)> {
    match packet.first()? >> 4 {
        4 => V4::new_checked(packet)
            .ok()
            .map(|p| (p.src().into(), p.dst().into())),
        6 => V6::new_checked(packet)
            .ok()
            .map(|p| (p.src().into(), p.dst().into())),
        _ => None,
    }
}

/// What a firewall reads of a packet: its addresses, protocol and ports.
/// ICMP echo carries its identifier as both ports (the reply then matches
/// the request's flow); other ICMP, fragments after the first and IPv6
/// packets with extension headers carry port 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transport {
    pub src: std::net::IpAddr,
    pub dst: std::net::IpAddr,
    pub proto: u8,
    pub src_port: u16,
    pub dst_port: u16,
    /// ICMP (or ICMPv6) type.
    pub icmp_type: Option<u8>,
}

/// Reads a packet's [`Transport`] (`None`: not IPv4 or IPv6).
pub fn transport(packet: &[u8]) -> Option<Transport> {
    let (src, dst, proto, l4, first): (std::net::IpAddr, std::net::IpAddr, u8, &[u8], bool) =
        match packet.first()? >> 4 {
            4 => {
                let p = V4::new_checked(packet).ok()?;
                let offset = get_u16(packet, 6) & 0x1fff;
                let (hl, total) = (p.header_len(), p.total_len());
                let l4 = packet.get(hl..total).unwrap_or(&[]);
                (
                    p.src().into(),
                    p.dst().into(),
                    p.protocol(),
                    l4,
                    offset == 0,
                )
            }
            6 => {
                let p = V6::new_checked(packet).ok()?;
                let l4 = packet
                    .get(V6_HEADER_LEN..V6_HEADER_LEN + p.payload_len())
                    .unwrap_or(&[]);
                (p.src().into(), p.dst().into(), p.next_header(), l4, true)
            }
            _ => return None,
        };
    let mut t = Transport {
        src,
        dst,
        proto,
        src_port: 0,
        dst_port: 0,
        icmp_type: None,
    };
    if !first {
        return Some(t);
    }
    match proto {
        PROTO_TCP | PROTO_UDP if l4.len() >= 4 => {
            t.src_port = get_u16(l4, 0);
            t.dst_port = get_u16(l4, 2);
        }
        PROTO_ICMP | PROTO_ICMPV6 if !l4.is_empty() => {
            t.icmp_type = Some(l4[0]);
            // Echo request/reply (ICMP 8/0, ICMPv6 128/129): the identifier.
            if matches!(
                (proto, l4[0]),
                (PROTO_ICMP, 0 | 8) | (PROTO_ICMPV6, 128 | 129)
            ) && l4.len() >= 6
            {
                t.src_port = get_u16(l4, 4);
                t.dst_port = t.src_port;
            }
        }
        _ => {}
    }
    Some(t)
}

/// The source of an IP packet (what the receiver checks against the sender).
pub fn source(packet: &[u8]) -> Option<std::net::IpAddr> {
    match packet.first()? >> 4 {
        4 => V4::new_checked(packet).ok().map(|p| p.src().into()),
        6 => V6::new_checked(packet).ok().map(|p| p.src().into()),
        _ => None,
    }
}

/// A UDP header view.
#[derive(Debug)]
pub struct Udp<T: AsRef<[u8]>> {
    buffer: T,
}

pub const UDP_HEADER_LEN: usize = 8;

impl<T: AsRef<[u8]>> Udp<T> {
    pub fn new_checked(buffer: T) -> Result<Udp<T>> {
        let b = buffer.as_ref();
        if b.len() < UDP_HEADER_LEN {
            return Err(Error);
        }
        let len = usize::from(get_u16(b, 4));
        if len < UDP_HEADER_LEN || len > b.len() {
            return Err(Error);
        }
        Ok(Udp { buffer })
    }

    pub fn src_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), 0)
    }

    pub fn dst_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), 2)
    }

    pub fn payload(&self) -> &[u8] {
        let len = usize::from(get_u16(self.buffer.as_ref(), 4));
        &self.buffer.as_ref()[UDP_HEADER_LEN..len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4 UDP packet captured from `echo hi | nc -u 100.64.0.12 9`.
    const V4_UDP: [u8; 31] = [
        0x45, 0x00, 0x00, 0x1f, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 100, 64, 0, 10,
        100, 64, 0, 12, 0xc0, 0x01, 0x00, 0x09, 0x00, 0x0b, 0x00, 0x00, b'h', b'i', b'\n',
    ];

    #[test]
    fn deconstruct_v4_and_udp() {
        let p = V4::new_checked(&V4_UDP[..]).unwrap();
        assert_eq!((p.header_len(), p.total_len(), p.protocol()), (20, 31, 17));
        assert_eq!(p.src(), Ipv4Addr::new(100, 64, 0, 10));
        assert_eq!(p.dst(), Ipv4Addr::new(100, 64, 0, 12));
        let u = Udp::new_checked(p.payload()).unwrap();
        assert_eq!((u.src_port(), u.dst_port()), (49153, 9));
        assert_eq!(u.payload(), b"hi\n");
        assert_eq!(
            destination(&V4_UDP),
            Some(Ipv4Addr::new(100, 64, 0, 12).into())
        );
        // Ethernet padding after the total length is not payload.
        let mut padded = V4_UDP.to_vec();
        padded.extend_from_slice(&[0; 15]);
        assert_eq!(V4::new_checked(&padded[..]).unwrap().payload().len(), 11);
        // Lengths that do not add up.
        assert!(V4::new_checked(&V4_UDP[..30]).is_err());
        let mut bad = V4_UDP;
        bad[0] = 0x44;
        assert!(V4::new_checked(&bad[..]).is_err());
        assert!(Udp::new_checked(&[0u8; 7][..]).is_err());
    }

    #[test]
    fn construct_v4_header_with_a_valid_checksum() {
        let mut out = [0u8; 20];
        V4Repr {
            src: Ipv4Addr::new(100, 64, 0, 1),
            dst: Ipv4Addr::new(255, 255, 255, 255),
            proto: PROTO_UDP,
            payload_len: 300,
        }
        .emit(&mut out);
        assert_eq!(checksum_finish(checksum_add(0, &out)), 0, "verifies");
        let p = V4::new_checked(&[&out[..], &[0u8; 300][..]].concat()).map(|p| p.total_len());
        assert_eq!(p, Ok(320));
    }

    #[test]
    fn v6_header_round_trip() {
        let (s, d): (Ipv6Addr, Ipv6Addr) =
            ("fd00::1".parse().unwrap(), "ff02::fb".parse().unwrap());
        let mut b = [0u8; 48];
        V6Repr {
            src: s,
            dst: d,
            next_header: PROTO_UDP,
            hop_limit: 255,
            payload_len: 8,
        }
        .emit(&mut b);
        let p = V6::new_checked(&b[..]).unwrap();
        assert_eq!(
            (p.src(), p.dst(), p.next_header(), p.hop_limit()),
            (s, d, 17, 255)
        );
        assert_eq!(p.payload().len(), 8);
        assert!(V6::new_checked(&b[..47]).is_err());
        assert_eq!(source(&b), Some(s.into()));
    }

    #[test]
    fn checksum_of_an_odd_length() {
        // RFC 1071's example words, then one odd byte.
        let sum = checksum_add(0, &[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]);
        assert_eq!(checksum_finish(sum), !0xddf2);
        assert_eq!(checksum_add(0, &[0xab]), 0xab00);
    }

    #[test]
    fn fast_checksum_matches_word_by_word() {
        fn reference(mut sum: u32, data: &[u8]) -> u32 {
            for c in data.chunks(2) {
                sum += u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0));
            }
            sum
        }
        let mut x: u32 = 0x1234_5678;
        let data: Vec<u8> = (0..3000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        for len in (0..80).chain([1399, 1400, 1401, 2997]) {
            for start in 0..3 {
                let d = &data[start..start + len];
                assert_eq!(
                    checksum_finish(checksum_add(7, d)),
                    checksum_finish(reference(7, d)),
                    "{len} bytes from {start}"
                );
            }
        }
        assert_eq!(checksum_finish(checksum_add(0, &[0xff; 65536])), 0);
    }

    #[test]
    fn transport_reads_ports_echo_ids_and_skips_later_fragments() {
        let mut p = vec![0u8; 20 + 8];
        V4Repr {
            src: Ipv4Addr::new(100, 64, 0, 1),
            dst: Ipv4Addr::new(198, 19, 200, 1),
            proto: PROTO_UDP,
            payload_len: 8,
        }
        .emit(&mut p);
        p[20..24].copy_from_slice(&[0x30, 0x39, 0, 53]);
        let t = transport(&p).unwrap();
        assert_eq!((t.proto, t.src_port, t.dst_port), (PROTO_UDP, 12345, 53));
        // A later fragment: no ports.
        p[6] = 0x00;
        p[7] = 0x10;
        assert_eq!(transport(&p).unwrap().dst_port, 0);
        // An ICMP echo: its identifier both ways.
        p[6..8].copy_from_slice(&[0, 0]);
        p[9] = PROTO_ICMP;
        p[20..26].copy_from_slice(&[8, 0, 0, 0, 0x12, 0x34]);
        let t = transport(&p).unwrap();
        assert_eq!(
            (t.icmp_type, t.src_port, t.dst_port),
            (Some(8), 0x1234, 0x1234)
        );
        for cut in 0..p.len() {
            let _ = transport(&p[..cut]);
        }
    }
}
