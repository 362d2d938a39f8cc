//! Cutting a TAP super-frame into the segments a NIC would have sent.
//!
//! With `TUNSETOFFLOAD` the kernel stops segmenting TCP (and, where it has
//! USO, UDP) for the TAP: it hands over one Ethernet frame of up to 64 KiB
//! whose headers describe the whole run and whose virtio-net header
//! ([`super::vnet`]) says how large each piece must be. One read then does
//! the work of ~45, and the kernel's stack runs once per 64 KiB instead of
//! once per 1.4 KB. The price is that we do the NIC's job here:
//!
//! - every segment gets the super-frame's headers with its own lengths,
//!   IPv4 id (first + i) and header checksum, TCP sequence number
//!   (first + i × gso_size);
//! - FIN and PSH stay only on the last segment, CWR only on the first;
//! - the TCP or UDP checksum is computed whole (the kernel left it partial),
//!   because the peer's kernel may check it — a peer without offloads
//!   writes our segments to its TAP as they are.
//!
//! [`Plan::parse`] checks the super-frame once (every offset the writes use
//! is proven in bounds there); [`Plan::write_segment`] then fills one pool
//! buffer per segment, so the sealed datagrams are the ordinary ones and
//! nothing downstream knows offloads exist.

use super::ethernet::network_start;
use super::ip::{checksum_add, checksum_finish, ETHERTYPE_IPV4, ETHERTYPE_IPV6};
use super::vnet::{Gso, VnetHdr};
use super::{get_u16, get_u32, Error, Result};

const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

/// Most segments one super-frame may be cut into: 64 KiB at the smallest
/// `gso_size` we accept.
pub const MAX_SEGMENTS: usize = 65_536 / MIN_GSO_SIZE;
/// Smaller pieces are no one's real MSS (IPv4's minimum MTU leaves 536).
const MIN_GSO_SIZE: usize = 256;

/// Where a super-frame's headers are and how it is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Start of the IP header (14, or 18 behind a VLAN tag).
    l3: usize,
    /// Start of the TCP/UDP header.
    l4: usize,
    /// End of the headers every segment repeats.
    hdr_len: usize,
    gso_size: usize,
    /// Length of the whole super-frame.
    len: usize,
    v6: bool,
    tcp: bool,
}

impl Plan {
    /// Checks a super-frame against its virtio-net header. The header's own
    /// `hdr_len` is not trusted (the kernel may report more than the
    /// headers); the TCP header's data offset says where the payload starts.
    pub fn parse(frame: &[u8], h: &VnetHdr) -> Result<Plan> {
        let len = frame.len();
        let gso_size = usize::from(h.gso_size);
        if !h.needs_csum() || gso_size < MIN_GSO_SIZE {
            return Err(Error);
        }
        let (l3, ethertype) = network_start(frame).ok_or(Error)?;
        let v6 = match (h.gso, ethertype) {
            (Gso::Tcp4 | Gso::Udp, ETHERTYPE_IPV4) => false,
            (Gso::Tcp6 | Gso::Udp, ETHERTYPE_IPV6) => true,
            _ => return Err(Error),
        };
        let tcp = h.gso != Gso::Udp;
        let proto = if tcp { 6 } else { 17 };
        let l4 = usize::from(h.csum_start);
        if v6 {
            // Extension headers may sit between; the checksum start says where they end.
            if len < l3 + 40 || frame[l3] >> 4 != 6 || l4 < l3 + 40 {
                return Err(Error);
            }
        } else {
            if len < l3 + 20 || frame[l3] >> 4 != 4 || frame[l3 + 9] != proto {
                return Err(Error);
            }
            if l4 != l3 + usize::from(frame[l3] & 0x0f) * 4 || l4 < l3 + 20 {
                return Err(Error);
            }
        }
        let (l4_len, csum_offset) = if tcp {
            if len < l4 + 20 {
                return Err(Error);
            }
            (usize::from(frame[l4 + 12] >> 4) * 4, 16)
        } else {
            (8, 6)
        };
        let hdr_len = l4 + l4_len;
        if l4_len < 8 || usize::from(h.csum_offset) != csum_offset || hdr_len >= len {
            return Err(Error);
        }
        let plan = Plan {
            l3,
            l4,
            hdr_len,
            gso_size,
            len,
            v6,
            tcp,
        };
        if plan.count() > MAX_SEGMENTS {
            return Err(Error);
        }
        Ok(plan)
    }

    /// Segments this super-frame becomes.
    pub fn count(&self) -> usize {
        (self.len - self.hdr_len).div_ceil(self.gso_size)
    }

    /// Bytes segment `i` takes.
    pub fn segment_len(&self, i: usize) -> usize {
        let start = self.hdr_len + i * self.gso_size;
        self.hdr_len + (self.len - start).min(self.gso_size)
    }

    /// The largest segment: what a pool buffer must hold.
    pub fn max_segment_len(&self) -> usize {
        self.segment_len(0)
    }

    /// Writes segment `i` (< [`Plan::count`]) of `frame` (the one
    /// [`Plan::parse`] checked) into `out`, which holds at least
    /// [`Plan::segment_len`] bytes. Returns its length.
    pub fn write_segment(&self, frame: &[u8], i: usize, out: &mut [u8]) -> usize {
        let (l3, l4, hl) = (self.l3, self.l4, self.hdr_len);
        let start = hl + i * self.gso_size;
        let payload = (self.len - start).min(self.gso_size);
        let seg_len = hl + payload;
        let out = &mut out[..seg_len];
        out[..hl].copy_from_slice(&frame[..hl]);
        out[hl..].copy_from_slice(&frame[start..start + payload]);
        let last = start + payload == self.len;

        if self.v6 {
            put_u16(out, l3 + 4, (seg_len - l3 - 40) as u16);
        } else {
            put_u16(out, l3 + 2, (seg_len - l3) as u16);
            let id = get_u16(frame, l3 + 4).wrapping_add(i as u16);
            put_u16(out, l3 + 4, id);
            put_u16(out, l3 + 10, 0);
            let c = checksum_finish(checksum_add(0, &out[l3..l4]));
            put_u16(out, l3 + 10, c);
        }
        let l4_len = seg_len - l4;
        if self.tcp {
            let seq = get_u32(frame, l4 + 4).wrapping_add((i * self.gso_size) as u32);
            out[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
            if !last {
                out[l4 + 13] &= !(TCP_FIN | TCP_PSH);
            }
            if i > 0 {
                out[l4 + 13] &= !TCP_CWR;
            }
        } else {
            put_u16(out, l4 + 4, l4_len as u16);
        }
        let at = l4 + if self.tcp { 16 } else { 6 };
        put_u16(out, at, 0);
        let sum = checksum_add(pseudo_sum(out, l3, self.v6, self.tcp, l4_len), &out[l4..]);
        let c = match checksum_finish(sum) {
            0 if !self.tcp => 0xffff,
            c => c,
        };
        put_u16(out, at, c);
        seg_len
    }
}

/// Cuts `frame` into one `Vec` per segment: for tests, benches and the
/// fuzz target (the data path writes into pool buffers instead).
pub fn cut_to_vecs(frame: &[u8], h: &VnetHdr) -> Result<Vec<Vec<u8>>> {
    let plan = Plan::parse(frame, h)?;
    Ok((0..plan.count())
        .map(|i| {
            let mut out = vec![0; plan.segment_len(i)];
            plan.write_segment(frame, i, &mut out);
            out
        })
        .collect())
}

/// The pseudo-header's sum (addresses, protocol, upper-layer length) of
/// the IP header at `l3` of `frame`.
pub(crate) fn pseudo_sum(frame: &[u8], l3: usize, v6: bool, tcp: bool, l4_len: usize) -> u32 {
    let addrs = if v6 {
        &frame[l3 + 8..l3 + 40]
    } else {
        &frame[l3 + 12..l3 + 20]
    };
    let proto: u32 = if tcp { 6 } else { 17 };
    let len = l4_len as u32;
    checksum_add(0, addrs) + proto + (len >> 16) + (len & 0xffff)
}

pub(crate) fn put_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::wire::vnet::F_NEEDS_CSUM;

    /// A TCP super-frame as the kernel hands it over: Ethernet, IPv4 or
    /// IPv6, TCP with a 12-byte timestamp option, `payload` bytes.
    pub fn super_frame(v6: bool, payload: usize, flags: u8) -> Vec<u8> {
        let l3 = 14;
        let ip_len = if v6 { 40 } else { 20 };
        let l4 = l3 + ip_len;
        let mut f = vec![0u8; l4 + 32 + payload];
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        if v6 {
            put_u16(&mut f, 12, ETHERTYPE_IPV6);
            f[l3] = 0x60;
            put_u16(&mut f, l3 + 4, (32 + payload) as u16);
            f[l3 + 6] = 6;
            f[l3 + 7] = 64;
            f[l3 + 8] = 0xfd;
            f[l3 + 23] = 1;
            f[l3 + 24] = 0xfd;
            f[l3 + 39] = 2;
        } else {
            put_u16(&mut f, 12, ETHERTYPE_IPV4);
            f[l3] = 0x45;
            put_u16(&mut f, l3 + 2, (20 + 32 + payload).min(65535) as u16);
            put_u16(&mut f, l3 + 4, 0xfffe); // the ids wrap inside the run
            f[l3 + 6] = 0x40;
            f[l3 + 8] = 64;
            f[l3 + 9] = 6;
            f[l3 + 12..l3 + 16].copy_from_slice(&[100, 64, 0, 1]);
            f[l3 + 16..l3 + 20].copy_from_slice(&[100, 64, 0, 2]);
        }
        put_u16(&mut f, l4, 40000);
        put_u16(&mut f, l4 + 2, 5201);
        f[l4 + 4..l4 + 8].copy_from_slice(&0xffff_f000u32.to_be_bytes());
        f[l4 + 8..l4 + 12].copy_from_slice(&77u32.to_be_bytes());
        f[l4 + 12] = 8 << 4;
        f[l4 + 13] = flags;
        put_u16(&mut f, l4 + 14, 500);
        f[l4 + 20..l4 + 32].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 7]);
        for (i, b) in f[l4 + 32..].iter_mut().enumerate() {
            *b = (i * 7 + i / 251) as u8;
        }
        f
    }

    pub fn tcp_hdr(v6: bool, gso_size: u16) -> VnetHdr {
        VnetHdr {
            flags: F_NEEDS_CSUM,
            gso: if v6 { Gso::Tcp6 } else { Gso::Tcp4 },
            ecn: false,
            hdr_len: 0,
            gso_size,
            csum_start: if v6 { 54 } else { 34 },
            csum_offset: 16,
        }
    }

    /// Whether the IPv4 header and the TCP/UDP checksum of a frame verify.
    pub fn verifies(f: &[u8], v6: bool, tcp: bool) -> bool {
        let l4 = if v6 { 54 } else { 34 };
        if !v6 && checksum_finish(checksum_add(0, &f[14..34])) != 0 {
            return false;
        }
        checksum_finish(checksum_add(
            pseudo_sum(f, 14, v6, tcp, f.len() - l4),
            &f[l4..],
        )) == 0
    }

    fn cut(f: &[u8], h: &VnetHdr) -> Vec<Vec<u8>> {
        let plan = Plan::parse(f, h).unwrap();
        let mut out = [0u8; 2048];
        for i in 0..plan.count() {
            assert_eq!(plan.write_segment(f, i, &mut out), plan.segment_len(i));
        }
        cut_to_vecs(f, h).unwrap()
    }

    #[test]
    fn cuts_tcp_over_ipv4_as_a_nic_would() {
        let f = super_frame(false, 4000, 0x18 | TCP_FIN | TCP_CWR);
        let segs = cut(&f, &tcp_hdr(false, 1348));
        assert_eq!(segs.len(), 3);
        let mut payload = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            assert!(verifies(s, false, true), "segment {i}");
            assert_eq!(usize::from(get_u16(s, 16)), s.len() - 14, "IP length");
            assert_eq!(get_u16(s, 18), 0xfffeu16.wrapping_add(i as u16), "IP id");
            let seq = get_u32(s, 38);
            assert_eq!(seq, 0xffff_f000u32.wrapping_add(1348 * i as u32));
            let flags = s[47];
            assert_eq!(flags & TCP_CWR != 0, i == 0, "CWR on the first only");
            assert_eq!(
                flags & (TCP_FIN | TCP_PSH) != 0,
                i == 2,
                "FIN/PSH on the last only"
            );
            assert_eq!(&s[54..66], &f[54..66], "options kept");
            payload.extend_from_slice(&s[66..]);
        }
        assert_eq!(segs[2].len(), 66 + 4000 - 2 * 1348);
        assert_eq!(payload, &f[66..]);
    }

    #[test]
    fn cuts_tcp_over_ipv6() {
        let f = super_frame(true, 3000, 0x10);
        let segs = cut(&f, &tcp_hdr(true, 1000));
        assert_eq!(segs.len(), 3);
        for s in &segs {
            assert!(verifies(s, true, true));
            assert_eq!(usize::from(get_u16(s, 18)), s.len() - 54, "payload length");
        }
    }

    #[test]
    fn cuts_udp_with_its_own_lengths() {
        let mut f = super_frame(false, 2500, 0);
        f[23] = 17;
        put_u16(&mut f, 34 + 4, (8 + 24 + 2500) as u16);
        let h = VnetHdr {
            gso: Gso::Udp,
            csum_offset: 6,
            ..tcp_hdr(false, 1200)
        };
        let segs = cut(&f, &h);
        // The UDP header is 8 bytes: what followed it is payload now.
        assert_eq!(segs.len(), 3);
        for s in &segs {
            assert!(verifies(s, false, false));
            assert_eq!(usize::from(get_u16(s, 38)), s.len() - 34);
        }
        assert_eq!(segs[2].len(), 42 + 2524 - 2400);
    }

    #[test]
    fn refuses_what_does_not_add_up() {
        let f = super_frame(false, 3000, 0x10);
        let ok = tcp_hdr(false, 1348);
        assert!(Plan::parse(&f, &ok).is_ok());
        let bad = [
            VnetHdr { flags: 0, ..ok },
            VnetHdr { gso_size: 0, ..ok },
            VnetHdr {
                gso_size: 100,
                ..ok
            },
            VnetHdr {
                csum_start: 30,
                ..ok
            },
            VnetHdr {
                csum_offset: 6,
                ..ok
            },
            VnetHdr {
                gso: Gso::Tcp6,
                ..ok
            },
            VnetHdr {
                gso: Gso::Udp,
                ..ok
            },
        ];
        for h in bad {
            assert_eq!(Plan::parse(&f, &h), Err(Error), "{h:?}");
        }
        for len in 0..67 {
            assert_eq!(Plan::parse(&f[..len], &ok), Err(Error), "{len} bytes");
        }
        let mut long_doff = f.clone();
        long_doff[46] = 15 << 4;
        assert!(Plan::parse(&long_doff[..34 + 60], &ok).is_err());
    }
}
