//! Joining consecutive TCP segments of one flow back into a super-frame
//! for the TAP: GRO in userspace.
//!
//! The receive side's mirror of [`super::tso`]. Frames leave the node one
//! by one; written one by one, each costs a system call and a trip
//! through the kernel's stack. A run of segments of one TCP flow —
//! consecutive sequence numbers, identical headers but for lengths, ids
//! and checksums — is instead written once, with a virtio-net header
//! saying "TCP super-frame, cut at gso_size, checksum partial": the kernel
//! takes it as if its own GRO had merged it.
//!
//! Linux's GRO rules, kept deliberately strict (anything else goes alone,
//! which is always correct):
//!
//! - IPv4 without options or fragments, ids counting up by one; IPv6
//!   without extension headers; the same addresses, TTL, TOS/traffic class
//!   and flow label;
//! - TCP with only ACK set (PSH allowed, and it ends the run), the same
//!   ports, ack number, window and options (timestamps included);
//! - every segment as large as the first but the last, which may be
//!   shorter and then ends the run;
//! - every segment's checksums verify. The frames arrived authenticated,
//!   but a peer bridging a LAN forwards what that LAN gave it, and once
//!   merged under `NEEDS_CSUM` no one would check them again.
//!
//! Only neighbours are joined (the order the node emits), not a table of
//! flows: one bulk flow at a time is what a tunnel carries when it
//! matters, and an interleaved flow just starts a new run.

use super::ethernet::network_start;
use super::ip::{checksum_add, checksum_finish, ETHERTYPE_IPV4, ETHERTYPE_IPV6};
use super::tso::{pseudo_sum, put_u16};
use super::vnet::{Gso, VnetHdr, F_NEEDS_CSUM};
use super::{get_u16, get_u32};

const TCP_ACK: u8 = 0x10;
const TCP_PSH: u8 = 0x08;

/// Most frames in one run (the shell keeps their handles in a fixed array).
pub const MAX_FRAMES: usize = 64;
/// A run's IP length may not pass the 16-bit length field.
const MAX_IP_LEN: usize = 65_535;

/// A frame that may join a run: a TCP segment with data, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    l3: usize,
    l4: usize,
    hdr_len: usize,
    v6: bool,
    seq: u32,
    payload: usize,
    psh: bool,
}

impl Segment {
    /// Reads `frame` as a joinable TCP segment, or `None` if it is
    /// anything else (which is written to the TAP as it is).
    pub fn parse(frame: &[u8]) -> Option<Segment> {
        let len = frame.len();
        let (l3, ethertype) = network_start(frame)?;
        let (v6, l4) = match ethertype {
            ETHERTYPE_IPV4 => {
                let ip = frame.get(l3..l3 + 20)?;
                let fragment = get_u16(ip, 6) & 0x3fff != 0;
                if ip[0] != 0x45
                    || ip[9] != 6
                    || fragment
                    || usize::from(get_u16(ip, 2)) != len - l3
                {
                    return None;
                }
                if checksum_finish(checksum_add(0, ip)) != 0 {
                    return None;
                }
                (false, l3 + 20)
            }
            ETHERTYPE_IPV6 => {
                let ip = frame.get(l3..l3 + 40)?;
                if ip[0] >> 4 != 6 || ip[6] != 6 || usize::from(get_u16(ip, 4)) != len - l3 - 40 {
                    return None;
                }
                (true, l3 + 40)
            }
            _ => return None,
        };
        let tcp = frame.get(l4..l4 + 20)?;
        let hdr_len = l4 + usize::from(tcp[12] >> 4) * 4;
        let flags = tcp[13];
        if hdr_len < l4 + 20 || hdr_len >= len || flags & !TCP_PSH != TCP_ACK {
            return None;
        }
        let l4_len = len - l4;
        if checksum_finish(checksum_add(
            pseudo_sum(frame, l3, v6, true, l4_len),
            &frame[l4..],
        )) != 0
        {
            return None;
        }
        Some(Segment {
            l3,
            l4,
            hdr_len,
            v6,
            seq: get_u32(tcp, 4),
            payload: len - hdr_len,
            psh: flags & TCP_PSH != 0,
        })
    }
}

/// A run being gathered: its first segment (whose headers the
/// super-frame keeps) and what the next one must look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    first: Segment,
    frames: usize,
    next_seq: u32,
    ip_len: usize,
    /// A short segment or PSH ended it.
    closed: bool,
    psh: bool,
}

impl Run {
    pub fn new(first: Segment) -> Run {
        Run {
            first,
            frames: 1,
            next_seq: first.seq.wrapping_add(first.payload as u32),
            ip_len: first.hdr_len - first.l3 + first.payload,
            closed: first.psh,
            psh: first.psh,
        }
    }

    /// Frames in the run.
    pub fn frames(&self) -> usize {
        self.frames
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Bytes of `frame`'s payload (what follows the run's headers).
    pub fn payload_start(&self) -> usize {
        self.first.hdr_len
    }

    /// Adds `seg` (parsed from `frame`) if it continues the run whose first
    /// frame is `head`. On `false` the run is unchanged.
    pub fn join(&mut self, head: &[u8], frame: &[u8], seg: &Segment) -> bool {
        let f = &self.first;
        if self.closed
            || self.frames >= MAX_FRAMES
            || seg.l3 != f.l3
            || seg.hdr_len != f.hdr_len
            || seg.v6 != f.v6
            || seg.seq != self.next_seq
            || seg.payload > f.payload
            || self.ip_len + seg.payload > MAX_IP_LEN
            || !same_flow(head, frame, f, self.frames)
        {
            return false;
        }
        self.frames += 1;
        self.next_seq = seg.seq.wrapping_add(seg.payload as u32);
        self.ip_len += seg.payload;
        self.closed = seg.payload < f.payload || seg.psh;
        self.psh = seg.psh;
        true
    }

    /// Rewrites `head` (the first frame, whose headers now speak for the
    /// whole run: lengths, IPv4 checksum, PSH, the TCP checksum left
    /// partial as `NEEDS_CSUM` asks) and returns the virtio-net header to
    /// write before it. A run of one frame is left as it was and gets the
    /// plain header.
    pub fn finish(&self, head: &mut [u8]) -> VnetHdr {
        if self.frames == 1 {
            return VnetHdr::PLAIN;
        }
        let f = &self.first;
        let (l3, l4) = (f.l3, f.l4);
        if f.v6 {
            put_u16(head, l3 + 4, (self.ip_len - 40) as u16);
        } else {
            put_u16(head, l3 + 2, self.ip_len as u16);
            put_u16(head, l3 + 10, 0);
            let c = checksum_finish(checksum_add(0, &head[l3..l4]));
            put_u16(head, l3 + 10, c);
        }
        if self.psh {
            head[l4 + 13] |= TCP_PSH;
        }
        let l4_len = self.ip_len - (l4 - l3);
        // The pseudo-header's sum, folded, not complemented: the kernel adds the rest.
        let partial = !checksum_finish(pseudo_sum(head, l3, f.v6, true, l4_len));
        put_u16(head, l4 + 16, partial);
        VnetHdr {
            flags: F_NEEDS_CSUM,
            gso: if f.v6 { Gso::Tcp6 } else { Gso::Tcp4 },
            ecn: false,
            hdr_len: f.hdr_len as u16,
            gso_size: f.payload as u16,
            csum_start: l4 as u16,
            csum_offset: 16,
        }
    }
}

/// Whether `frame`'s headers match `head`'s in every byte a merge keeps
/// (everything but lengths, IPv4 id and checksum, sequence number, PSH and
/// the TCP checksum), and its IPv4 id is `head`'s plus `index`.
fn same_flow(head: &[u8], frame: &[u8], f: &Segment, index: usize) -> bool {
    let (l3, l4, hl) = (f.l3, f.l4, f.hdr_len);
    let eq = |a: usize, b: usize| head[a..b] == frame[a..b];
    if !eq(0, l3) {
        return false;
    }
    let ip_same = if f.v6 {
        eq(l3, l3 + 4) && eq(l3 + 6, l3 + 40)
    } else {
        let id = get_u16(head, l3 + 4).wrapping_add(index as u16);
        eq(l3, l3 + 2)
            && get_u16(frame, l3 + 4) == id
            && eq(l3 + 6, l3 + 10)
            && eq(l3 + 12, l3 + 20)
    };
    ip_same
        && eq(l4, l4 + 4)
        && eq(l4 + 8, l4 + 13)
        && head[l4 + 13] & !TCP_PSH == frame[l4 + 13] & !TCP_PSH
        && eq(l4 + 14, l4 + 16)
        && eq(l4 + 18, hl)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tso::cut_to_vecs;
    use crate::wire::tso::tests::{super_frame, tcp_hdr, verifies};

    fn segments(v6: bool, payload: usize, gso: u16, flags: u8) -> (Vec<u8>, Vec<Vec<u8>>) {
        let f = super_frame(v6, payload, flags);
        let segs = cut_to_vecs(&f, &tcp_hdr(v6, gso)).unwrap();
        (f, segs)
    }

    /// Joins `segs` into runs; returns each run's super-frame and header.
    fn join_all(segs: &[Vec<u8>]) -> Vec<(VnetHdr, Vec<u8>)> {
        let mut out = Vec::new();
        let mut run: Option<(Run, Vec<u8>)> = None;
        for s in segs {
            let seg = Segment::parse(s);
            if let (Some((r, head)), Some(seg)) = (run.as_mut(), seg.as_ref()) {
                if r.join(head, s, seg) {
                    let start = r.payload_start();
                    head.extend_from_slice(&s[start..]);
                    continue;
                }
            }
            if let Some((r, mut head)) = run.take() {
                let h = r.finish(&mut head);
                out.push((h, head));
            }
            match seg {
                Some(seg) => run = Some((Run::new(seg), s.clone())),
                None => out.push((VnetHdr::PLAIN, s.clone())),
            }
        }
        if let Some((r, mut head)) = run {
            let h = r.finish(&mut head);
            out.push((h, head));
        }
        out
    }

    /// What the kernel does with a super-frame we write: cut it again.
    fn recut(h: &VnetHdr, f: &[u8]) -> Vec<Vec<u8>> {
        if h.gso == Gso::None {
            return vec![f.to_vec()];
        }
        // The kernel's segmentation recomputes the partial checksum, as
        // write_segment does.
        cut_to_vecs(f, h).unwrap()
    }

    #[test]
    fn a_cut_run_joins_back_into_what_it_was() {
        for v6 in [false, true] {
            let (_, segs) = segments(v6, 20_000, 1348, 0x18);
            let runs = join_all(&segs);
            assert_eq!(runs.len(), 1, "v6 {v6}");
            let (h, f) = &runs[0];
            assert_eq!(h.gso, if v6 { Gso::Tcp6 } else { Gso::Tcp4 });
            assert_eq!(h.gso_size, 1348);
            assert_eq!(usize::from(h.csum_start), if v6 { 54 } else { 34 });
            // Cutting the super-frame again gives back the very segments.
            assert_eq!(recut(h, f), segs, "v6 {v6}");
        }
    }

    #[test]
    fn runs_end_at_psh_a_short_segment_a_gap_or_another_flow() {
        let (_, segs) = segments(false, 5 * 1000 + 10, 1000, 0x18);
        // PSH rides on the last (short) segment only: one run.
        assert_eq!(join_all(&segs).len(), 1);
        // A gap in the sequence splits the run.
        let gap: Vec<_> = [0, 1, 3, 4].iter().map(|&i| segs[i].clone()).collect();
        let runs = join_all(&gap);
        assert_eq!(
            runs.iter().map(|(_, f)| f.len()).collect::<Vec<_>>(),
            [2066, 2066]
        );
        // Another port in the middle: three runs.
        let mut other = segs.clone();
        other[2][35] ^= 1; // (its checksum is now wrong too: it goes alone either way)
        let runs = join_all(&other);
        assert_eq!(runs.len(), 3);
        assert_eq!(
            runs[1].0,
            VnetHdr::PLAIN,
            "the odd one out is left as it was"
        );
        // A corrupted payload does not join.
        let mut bad = segs.clone();
        bad[1][100] ^= 0x40;
        assert!(Segment::parse(&bad[1]).is_none());
        // A larger segment after a smaller one does not join.
        let (_, big) = segments(false, 2000, 1000, 0x10);
        let mut small = big[0].clone();
        small.truncate(small.len() - 400);
        let ip_len = (small.len() - 14) as u16;
        small[16..18].copy_from_slice(&ip_len.to_be_bytes());
        refresh_checksums(&mut small);
        let mut next = big[1].clone();
        next[38..42].copy_from_slice(&(0xffff_f000u32 + 600).to_be_bytes());
        refresh_checksums(&mut next);
        let (s0, s1) = (
            Segment::parse(&small).unwrap(),
            Segment::parse(&next).unwrap(),
        );
        assert!(!Run::new(s0).join(&small, &next, &s1));
        // The same pair the other way round joins (and ends the run: shorter).
        let mut next = small.clone();
        next[38..42].copy_from_slice(&(0xffff_f000u32 + 1000).to_be_bytes());
        next[18..20].copy_from_slice(&0xffffu16.to_be_bytes());
        refresh_checksums(&mut next);
        let mut r = Run::new(Segment::parse(&big[0]).unwrap());
        assert!(r.join(&big[0], &next, &Segment::parse(&next).unwrap()));
        assert!(r.is_closed());
    }

    /// Recomputes the IPv4 header and TCP checksums of an edited frame.
    fn refresh_checksums(f: &mut [u8]) {
        put_u16(f, 24, 0);
        let c = checksum_finish(checksum_add(0, &f[14..34]));
        put_u16(f, 24, c);
        put_u16(f, 50, 0);
        let c = checksum_finish(checksum_add(
            pseudo_sum(f, 14, false, true, f.len() - 34),
            &f[34..],
        ));
        put_u16(f, 50, c);
        assert!(verifies(f, false, true));
    }

    #[test]
    fn single_segments_and_other_frames_stay_untouched() {
        let (_, segs) = segments(true, 700, 1000, 0x10);
        let runs = join_all(&segs);
        assert_eq!(runs, vec![(VnetHdr::PLAIN, segs[0].clone())]);
        assert!(verifies(&runs[0].1, true, true));
        // SYN, pure ACKs (no payload), UDP, ARP: not candidates.
        let (_, mut syn) = segments(false, 500, 1000, 0x02);
        assert!(Segment::parse(&syn[0]).is_none());
        syn[0][47] = 0x10;
        assert!(Segment::parse(&syn[0]).is_none(), "checksum now wrong");
        assert!(Segment::parse(&[0u8; 60]).is_none());
        let mut ack = super_frame(false, 0, 0x10);
        refresh_checksums(&mut ack);
        assert!(Segment::parse(&ack).is_none(), "no payload");
    }

    #[test]
    fn a_run_stops_below_64_kib_and_64_frames() {
        let (_, segs) = segments(false, 60 * 1400, 1400, 0x10);
        let runs = join_all(&segs);
        assert_eq!(runs.len(), 2, "(65,535 - 52) / 1,400 = 46, then 14");
        for (h, f) in &runs {
            assert!(f.len() - 14 <= MAX_IP_LEN);
            if h.gso != Gso::None {
                assert!(recut(h, f).iter().all(|s| verifies(s, false, true)));
            }
        }
        let (_, many) = segs_of(300, 80);
        assert_eq!(join_all(&many).len(), 2, "64 + 16");
    }

    fn segs_of(size: u16, n: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
        // Plan refuses pieces below 256 bytes; 300 is the smallest we use.
        segments(false, usize::from(size) * n, size, 0x10)
    }
}
