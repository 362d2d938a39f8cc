//! Per-packet cost of the data path (run with `cargo bench`).
//!
//! Reports ns/packet and Gbit/s of payload for 64-, 512- and 1400-byte
//! frames on: seal (encapsulate + encrypt), open (replay check + decrypt +
//! decapsulate), and the full core path frame → datagram and datagram →
//! frame through `Node`, each with ChaCha20-Poly1305 and AES-256-GCM. Wall-clock figures on a shared machine are noisy;
//! bench/callgrind.sh gives repeatable instruction counts using the
//! `--callgrind SIZE COUNT` mode of this binary.

use ringvpn::buf::Pool;
use ringvpn::crypto::cert::{Cert, Prefix, Trust};
use ringvpn::crypto::handshake::{
    check_init, check_init_with, create_init, create_init_with, finish, finish_with, respond,
    respond_with, Credential, HandshakeError,
};
use ringvpn::crypto::{Identity, Seed, Session};
use ringvpn::node::{Node, NodeConfig, PeerConfig};
use ringvpn::time::Instant;
use ringvpn::wire::gro::{Run, Segment};
use ringvpn::wire::tso::{cut_to_vecs, Plan};
use ringvpn::wire::vnet::{Gso, VnetHdr};
use ringvpn::wire::{data, MsgType};
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Instant as Clock;

const SIZES: [usize; 3] = [64, 512, 1400];

fn sessions(aes: bool) -> (Session, Session) {
    let (a, b) = (
        Identity::from_seed(&Seed([1; 32])),
        Identity::from_seed(&Seed([2; 32])),
    );
    let rng = ring::rand::SystemRandom::new();
    let mut m1 = [0u8; 512];
    let mut m2 = [0u8; 512];
    let (ka, kb) = (a.public(), b.public());
    let (st, n1) =
        create_init_with(&a, Credential::key(&ka), aes, &rng, 1, None, 1, &mut m1).unwrap();
    let v = check_init(&m1[..n1], &b, |_| true).unwrap();
    let obs: SocketAddr = "198.18.0.1:1".parse().unwrap();
    let cb = Credential::key(&kb);
    let (sb, n2) = respond_with(&b, cb, aes, &rng, &v, 2, obs, Instant::ZERO, &mut m2).unwrap();
    let done = finish(&mut Some(st), &m2[..n2], |_| true, Instant::ZERO).unwrap();
    (done.session, sb)
}

fn cipher_name(aes: bool) -> &'static str {
    if aes {
        "aes-256-gcm"
    } else {
        "chacha20-poly1305"
    }
}

fn report(what: &str, size: usize, packets: u64, secs: f64) {
    let ns = secs * 1e9 / packets as f64;
    let gbps = (size as f64 * 8.0 * packets as f64) / secs / 1e9;
    println!("{what:<30} {size:>5} B  {ns:>8.1} ns/packet  {gbps:>7.2} Gbit/s");
}

/// Enough packets for ~0.3 s per measurement.
fn count_for(size: usize) -> u64 {
    (60_000_000 / (size as u64 + 200)).max(10_000)
}

fn bench_seal_open(size: usize, aes: bool) {
    let (mut a, mut b) = sessions(aes);
    let cipher = cipher_name(aes);
    let n = count_for(size);
    let mut pool = Pool::new(4);
    let mut frame = vec![0x5au8; size];
    let t = Clock::now();
    for _ in 0..n {
        // The copy in stands for the TAP read into a pool slot.
        let mut p = pool.alloc_with(&frame).unwrap();
        let c = a.next_counter(Instant::ZERO).unwrap();
        let hdr = pool.prepend(&mut p, data::HEADER_LEN).unwrap();
        data::HeaderRepr {
            ty: MsgType::Frame,
            receiver: a.remote_index,
            counter: c,
        }
        .emit(hdr);
        let bytes = pool.data_mut(&p);
        let (h, body) = bytes.split_at_mut(data::HEADER_LEN);
        let tag = a.seal(c, h, body);
        pool.append(&mut p, data::TAG_LEN)
            .unwrap()
            .copy_from_slice(&tag);
        black_box(pool.data(&p));
        pool.free(p);
    }
    report(
        &format!("seal, {cipher}"),
        size,
        n,
        t.elapsed().as_secs_f64(),
    );

    // Pre-seal a batch, then time only the opening side.
    let batch = 4096usize.min(n as usize);
    let mut sealed: Vec<Vec<u8>> = Vec::with_capacity(batch);
    let mut opened = 0u64;
    let mut total = 0.0;
    while opened < n {
        sealed.clear();
        for _ in 0..batch {
            let c = a.next_counter(Instant::ZERO).unwrap();
            let mut m = vec![0u8; data::HEADER_LEN + size + data::TAG_LEN];
            data::HeaderRepr {
                ty: MsgType::Frame,
                receiver: b.local_index,
                counter: c,
            }
            .emit(&mut m);
            let (h, body) = m.split_at_mut(data::HEADER_LEN);
            frame.copy_from_slice(&body[..size]);
            let tag = a.seal(c, h, &mut body[..size]);
            body[size..].copy_from_slice(&tag);
            sealed.push(m);
        }
        let t = Clock::now();
        for m in sealed.iter_mut() {
            let pkt = data::Packet::new_checked(&m[..]).unwrap();
            let c = pkt.counter();
            let (h, body) = m.split_at_mut(data::HEADER_LEN);
            b.open(ringvpn::time::Instant::ZERO, c, h, body).unwrap();
            black_box(&body[..size]);
        }
        total += t.elapsed().as_secs_f64();
        opened += batch as u64;
    }
    report(&format!("open, {cipher}"), size, opened, total);
}

/// Two linked nodes; `cert`: in certificate mode (a CA, a certificate
/// each), else with static keys; `aes`: their link runs AES-256-GCM.
fn nodes(cert: bool, aes: bool) -> (Node, Node, SocketAddr, SocketAddr) {
    let ea: SocketAddr = "198.18.0.1:5140".parse().unwrap();
    let eb: SocketAddr = "198.18.0.2:5140".parse().unwrap();
    let ca = Identity::from_seed(&Seed([9; 32]));
    let mk = |me: u8, other: u8, ep: SocketAddr| {
        let id = Identity::from_seed(&Seed([me; 32]));
        let (trust, mine) = certified(&ca, &id);
        let cfg = NodeConfig {
            peers: vec![PeerConfig {
                name: "p".into(),
                key: Identity::from_seed(&Seed([other; 32])).public(),
                endpoint: Some(ep),
            }],
            pool_slots: 8192,
            wall_origin_us: 2_000_000_000_000_000,
            trust: cert.then_some(trust),
            cert: cert.then_some(mine),
            fast_aes: aes,
            ..NodeConfig::default()
        };
        Node::new(id, cfg, Instant::ZERO)
    };
    let (mut a, mut b) = (mk(1, 2, eb), mk(2, 1, ea));
    let now = Instant::from_millis(1);
    a.handle_timeout(now);
    b.handle_timeout(now);
    for _ in 0..4 {
        move_all(&mut a, ea, &mut b);
        move_all(&mut b, eb, &mut a);
    }
    assert!(a.stats().handshakes_completed + b.stats().handshakes_completed > 0);
    (a, b, ea, eb)
}

fn mode_name(cert: bool, aes: bool) -> String {
    let keys = if cert { "certificates" } else { "static keys" };
    format!("{keys}, {}", cipher_name(aes))
}

fn move_all(from: &mut Node, from_ep: SocketAddr, to: &mut Node) {
    while let Some(t) = from.poll_transmit() {
        let copy = to.pool_mut().alloc_with(from.pool().data(&t.buf)).unwrap();
        from.pool_mut().free(t.buf);
        to.handle_datagram(Instant::from_millis(1), from_ep, copy);
    }
    while let Some(f) = to.poll_frame() {
        to.pool_mut().free(f);
    }
}

fn frame(size: usize) -> Vec<u8> {
    let mut f = vec![0x42u8; size];
    f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 0xb]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0xa]);
    f
}

/// Frame → datagram at A (TAP read handed to the node, datagram polled).
fn to_datagram(a: &mut Node, f: &[u8], now: Instant) -> ringvpn::node::Transmit {
    let mut buf = a.pool_mut().alloc().unwrap();
    a.pool_mut().space_mut(&buf)[..f.len()].copy_from_slice(f);
    a.pool().set_len(&mut buf, f.len());
    a.handle_frame(now, buf);
    a.poll_transmit().unwrap()
}

fn bench_node_path(size: usize, cert: bool, aes: bool) {
    let (mut a, mut b, ea, _) = nodes(cert, aes);
    let mode = mode_name(cert, aes);
    let f = frame(size);
    let n = count_for(size);
    let now = Instant::from_millis(1);
    let t = Clock::now();
    for _ in 0..n {
        let tx = to_datagram(&mut a, &f, now);
        black_box(a.pool().data(&tx.buf));
        a.pool_mut().free(tx.buf);
    }
    report(
        &format!("frame->datagram, {mode}"),
        size,
        n,
        t.elapsed().as_secs_f64(),
    );

    let batch = 4096u64.min(n);
    let (mut done, mut total) = (0u64, 0.0);
    let mut bufs = Vec::with_capacity(batch as usize);
    while done < n {
        for _ in 0..batch {
            let tx = to_datagram(&mut a, &f, now);
            bufs.push(b.pool_mut().alloc_with(a.pool().data(&tx.buf)).unwrap());
            a.pool_mut().free(tx.buf);
        }
        let t = Clock::now();
        for buf in bufs.drain(..) {
            b.handle_datagram(now, ea, buf);
            let fr = b.poll_frame().unwrap();
            black_box(b.pool().data(&fr));
            b.pool_mut().free(fr);
        }
        total += t.elapsed().as_secs_f64();
        done += batch;
    }
    report(&format!("datagram->frame, {mode}"), size, done, total);
}

/// `--callgrind SIZE COUNT [--cert] [--aes]`: COUNT full round trips
/// (frame → datagram at A, datagram → frame at B), nothing else, for
/// instruction counting; `--cert`: the nodes are in certificate mode;
/// `--aes`: their link runs AES-256-GCM.
fn callgrind(size: usize, count: u64, cert: bool, aes: bool) {
    let (mut a, mut b, ea, _) = nodes(cert, aes);
    let f = frame(size);
    let now = Instant::from_millis(1);
    for _ in 0..count {
        let tx = to_datagram(&mut a, &f, now);
        let mut buf = b.pool_mut().alloc().unwrap();
        let len = a.pool().data(&tx.buf).len();
        b.pool_mut().space_mut(&buf)[..len].copy_from_slice(a.pool().data(&tx.buf));
        b.pool().set_len(&mut buf, len);
        a.pool_mut().free(tx.buf);
        b.handle_datagram(now, ea, buf);
        let fr = b.poll_frame().unwrap();
        black_box(b.pool().data(&fr));
        b.pool_mut().free(fr);
    }
}

/// A TCP super-frame as the TAP hands it over with TSO (45 segments of
/// 1,348 B behind Ethernet, IPv4 and TCP with timestamps), its virtio-net
/// header, and the segments it is cut into.
fn offload_fixture() -> (Vec<u8>, VnetHdr, Vec<Vec<u8>>) {
    let payload = 45 * 1348;
    let mut f = vec![0u8; 66 + payload];
    f[..12].copy_from_slice(&[2, 0, 0, 0, 0, 0xb, 2, 0, 0, 0, 0, 0xa]);
    f[12..16].copy_from_slice(&[0x08, 0x00, 0x45, 0]);
    f[16..18].copy_from_slice(&(52 + payload as u16).to_be_bytes());
    f[20..24].copy_from_slice(&[0x40, 0, 64, 6]);
    f[26..34].copy_from_slice(&[100, 64, 0, 1, 100, 64, 0, 2]);
    f[34..38].copy_from_slice(&[0x9c, 0x40, 0x14, 0x51]);
    f[46..48].copy_from_slice(&[8 << 4, 0x18]);
    f[54..66].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 7]);
    for (i, b) in f[66..].iter_mut().enumerate() {
        *b = (i * 7) as u8;
    }
    let h = VnetHdr {
        flags: ringvpn::wire::vnet::F_NEEDS_CSUM,
        gso: Gso::Tcp4,
        ecn: false,
        hdr_len: 66,
        gso_size: 1348,
        csum_start: 34,
        csum_offset: 16,
    };
    let segs = cut_to_vecs(&f, &h).unwrap();
    (f, h, segs)
}

/// Cuts the super-frame `count` times into one reused buffer.
fn offload_cut(sf: &[u8], h: &VnetHdr, count: u64) -> u64 {
    let mut out = [0u8; 2048];
    let mut segments = 0;
    for _ in 0..count {
        let plan = Plan::parse(black_box(sf), h).unwrap();
        for i in 0..plan.count() {
            black_box(plan.write_segment(sf, i, &mut out));
        }
        segments += plan.count() as u64;
    }
    segments
}

/// Joins the segments back into one run `count` times (the head's copy
/// stands in for the pool buffer the shell rewrites in place).
fn offload_join(segs: &[Vec<u8>], count: u64) -> u64 {
    let mut head = [0u8; 2048];
    let len = segs[0].len();
    let mut joined = 0;
    for _ in 0..count {
        head[..len].copy_from_slice(&segs[0]);
        let mut run = Run::new(Segment::parse(&head[..len]).unwrap());
        for s in &segs[1..] {
            let seg = Segment::parse(black_box(s)).unwrap();
            assert!(run.join(&head[..len], s, &seg));
        }
        black_box(run.finish(&mut head[..len]));
        joined += run.frames() as u64;
    }
    joined
}

fn bench_offload() {
    let (sf, h, segs) = offload_fixture();
    for (what, f) in [
        ("cut a TAP super-frame", 0),
        ("join segments into a run", 1),
    ] {
        let count = 4_000;
        let start = Clock::now();
        let n = if f == 0 {
            offload_cut(&sf, &h, count)
        } else {
            offload_join(&segs, count)
        };
        let secs = start.elapsed().as_secs_f64();
        report(&format!("{what}, per segment"), 1414, n, secs);
    }
}

/// A CA, its trust, and a certificate for `id` (network "bench").
fn certified(ca: &Identity, id: &Identity) -> (Trust, Vec<u8>) {
    let valid = (1_000, 4_000_000_000);
    let ca_cert = Cert::new_ca(ca, "bench", "CA", valid).unwrap();
    let ip = vec![Prefix::parse("100.64.0.10").unwrap()];
    let mine = Cert::new_node(ca, id.public(), "bench", "node", ip, vec![], valid).unwrap();
    let trust = Trust {
        network: "bench".into(),
        cas: vec![ca_cert],
        revocations: vec![],
    };
    (trust, mine.encode().unwrap())
}

/// One full handshake (init, check, respond, finish) in both modes: the
/// CPU time of linking two nodes, on one core.
fn bench_handshake() {
    let (a, b) = (
        Identity::from_seed(&Seed([1; 32])),
        Identity::from_seed(&Seed([2; 32])),
    );
    let ca = Identity::from_seed(&Seed([9; 32]));
    let (trust, cert_a) = certified(&ca, &a);
    let (_, cert_b) = certified(&ca, &b);
    let rng = ring::rand::SystemRandom::new();
    let obs: SocketAddr = "198.18.0.1:1".parse().unwrap();
    let now = 2_000_000_000;
    let check = |k: &ringvpn::crypto::NodeKey, c: Option<&Cert>| match c {
        Some(c) => trust.check(c, k, now).map_err(HandshakeError::Cert),
        None => Err(HandshakeError::NoCert),
    };
    let n = 2_000;
    // "to whoever": the init's credential in clear (a bootstrap endpoint),
    // the response's sealed; "to a known key": both sealed.
    for (mode, to) in [
        ("static keys", None),
        ("static keys", Some(b.public())),
        ("certificates", None),
        ("certificates", Some(b.public())),
    ] {
        let t = Clock::now();
        for _ in 0..n {
            let mut m1 = [0u8; 2048];
            let mut m2 = [0u8; 2048];
            let done = if mode == "static keys" {
                let (st, n1) = create_init(&a, &rng, 1, to, 1, &mut m1).unwrap();
                let v = check_init(&m1[..n1], &b, |_| true).unwrap();
                let (_, n2) = respond(&b, &rng, &v, 2, obs, Instant::ZERO, &mut m2).unwrap();
                finish(&mut Some(st), &m2[..n2], |_| true, Instant::ZERO)
            } else {
                let ca_ = Credential::cert(&cert_a);
                let (st, n1) = create_init_with(&a, ca_, false, &rng, 1, to, 1, &mut m1).unwrap();
                let v = check_init_with(&m1[..n1], &b, check).unwrap();
                let cb = Credential::cert(&cert_b);
                let (_, n2) =
                    respond_with(&b, cb, false, &rng, &v, 2, obs, Instant::ZERO, &mut m2).unwrap();
                finish_with(&mut Some(st), &m2[..n2], check, Instant::ZERO)
            };
            black_box(done.unwrap());
        }
        let us = t.elapsed().as_secs_f64() * 1e6 / f64::from(n);
        let to = if to.is_some() {
            "to a known key"
        } else {
            "to whoever"
        };
        println!("handshake, {mode:<13} {to:<15} {us:>8.1} µs CPU (both sides, one core)");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--callgrind") {
        let size = args.get(i + 1).and_then(|s| s.parse().ok()).unwrap_or(1400);
        let count = args
            .get(i + 2)
            .and_then(|s| s.parse().ok())
            .unwrap_or(10_000);
        let flag = |f: &str| args.iter().any(|a| a == f);
        return callgrind(size, count, flag("--cert"), flag("--aes"));
    }
    if let Some(i) = args.iter().position(|a| a == "--callgrind-offload") {
        // `--callgrind-offload cut|join COUNT`: COUNT super-frames of 45 segments.
        let count = args.get(i + 2).and_then(|s| s.parse().ok()).unwrap_or(100);
        let (sf, h, segs) = offload_fixture();
        match args.get(i + 1).map(String::as_str) {
            Some("join") => black_box(offload_join(&segs, count)),
            _ => black_box(offload_cut(&sf, &h, count)),
        };
        return;
    }
    if args.iter().any(|a| a == "--list") {
        return; // cargo test --benches asks for a listing
    }
    bench_handshake();
    println!("ringvpn data path, one core (payload = frame bytes)");
    bench_offload();
    for size in SIZES {
        for aes in [false, true] {
            bench_seal_open(size, aes);
            bench_node_path(size, false, aes);
        }
        bench_node_path(size, true, false);
    }
}
