#![no_main]
//! The TAP offload paths: a virtio-net header and a super-frame from the
//! kernel are cut (tso), the segments joined back (gro), partial checksums
//! finished (vnet). None may panic or write out of bounds on any input.
use libfuzzer_sys::fuzz_target;
use ringvpn::wire::gro::{Run, Segment};
use ringvpn::wire::tso::{cut_to_vecs, Plan};
use ringvpn::wire::vnet::{complete_checksum, VnetHdr, LEN};

fuzz_target!(|bytes: &[u8]| {
    if bytes.len() < LEN {
        return;
    }
    let (hdr, frame) = bytes.split_at(LEN);
    let Ok(h) = VnetHdr::parse(hdr) else {
        return;
    };
    let mut copy = frame.to_vec();
    let _ = complete_checksum(&mut copy, usize::from(h.csum_start), usize::from(h.csum_offset));
    let Ok(plan) = Plan::parse(frame, &h) else {
        // Not a super-frame: still a candidate for a run of one.
        if let Some(seg) = Segment::parse(frame) {
            let mut head = frame.to_vec();
            Run::new(seg).finish(&mut head);
        }
        return;
    };
    let segs = cut_to_vecs(frame, &h).expect("parsed once, parses again");
    assert_eq!(segs.len(), plan.count());
    assert!(segs.iter().all(|s| s.len() <= plan.max_segment_len()));
    let mut run: Option<(Run, Vec<u8>)> = None;
    for s in &segs {
        let Some(seg) = Segment::parse(s) else {
            continue;
        };
        let joined = match run.as_mut() {
            Some((r, head)) => r.join(head, s, &seg),
            None => false,
        };
        if !joined {
            run = Some((Run::new(seg), s.clone()));
        }
    }
    if let Some((r, mut head)) = run {
        r.finish(&mut head);
    }
});
