//! A flood of hostile datagrams at one node, at full speed, for the
//! hardening test (`ringvpn-lab flood`, run inside a lab namespace).
//!
//! Each datagram is one of these, in turn, from each source address in
//! turn (so per-source tables see many sources):
//! - random bytes of random length (bad version, type or length);
//! - well-formed handshake inits from throwaway keys, a fixed set sent
//!   over and over (replayed: checking one costs a signature);
//! - sealed messages (frame, control, packet) for random session indices;
//! - handshake responses and cookie replies for random indices;
//! - inits cut short.

use crate::crypto::handshake;
use crate::crypto::{Identity, Seed};
use crate::rand::{Rng, SeededRng};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// Distinct inits replayed by the flood.
pub const INITS: usize = 64;

/// What a flood sent.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sent {
    pub datagrams: u64,
    pub bytes: u64,
    /// Sends the kernel refused (its buffers full): not counted as sent.
    pub refused: u64,
}

fn outsider_inits(rng: &mut SeededRng) -> Vec<Vec<u8>> {
    let sys = ring::rand::SystemRandom::new();
    (0..INITS)
        .filter_map(|i| {
            let id = Identity::from_seed(&Seed::generate());
            let mut out = vec![0u8; 512];
            let ts = 1_700_000_000_000_000 + rng.below(1 << 40);
            let (_, len) =
                handshake::create_init(&id, &sys, i as u32 + 1, None, ts, &mut out).ok()?;
            out.truncate(len);
            Some(out)
        })
        .collect()
}

/// Fills `buf` with datagram number `n` of the flood; returns its length.
fn datagram(n: u64, rng: &mut SeededRng, inits: &[Vec<u8>], buf: &mut [u8; 1500]) -> usize {
    let random = |buf: &mut [u8], rng: &mut SeededRng| {
        for chunk in buf.chunks_mut(8) {
            let r = rng.next_u64().to_be_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
    };
    match n % 6 {
        0 => {
            let len = 1 + rng.below(1400) as usize;
            random(&mut buf[..len], rng);
            len
        }
        1 => {
            let init = &inits[(n / 6) as usize % inits.len()];
            buf[..init.len()].copy_from_slice(init);
            init.len()
        }
        2 => {
            // Sealed: version 1, type 3, 4 or 5, random index and body.
            let len = 32 + rng.below(1368) as usize;
            random(&mut buf[..len], rng);
            buf[0] = 1;
            buf[1] = 3 + (n / 6 % 3) as u8;
            len
        }
        3 => {
            let len = crate::wire::handshake::RESP_FIXED_LEN + 32;
            random(&mut buf[..len], rng);
            buf[..4].copy_from_slice(&[1, 2, 0, 0]);
            buf[64..68].copy_from_slice(&[1, 0, 0, 32]);
            buf[44] = 4;
            len
        }
        4 => {
            let len = crate::wire::handshake::COOKIE_REPLY_LEN;
            random(&mut buf[..len], rng);
            buf[..4].copy_from_slice(&[1, 6, 0, 0]);
            len
        }
        _ => {
            let init = &inits[(n / 6) as usize % inits.len()];
            let len = 1 + rng.below(init.len() as u64 - 1) as usize;
            buf[..len].copy_from_slice(&init[..len]);
            len
        }
    }
}

/// Sends the flood from each of `sources` to `target` for `secs` seconds.
pub fn run(sources: &[Ipv4Addr], target: SocketAddr, secs: u64) -> io::Result<Sent> {
    let mut rng = SeededRng::from_os();
    let inits = outsider_inits(&mut rng);
    if inits.is_empty() {
        return Err(io::Error::other("could not make handshake inits"));
    }
    let sockets = sources
        .iter()
        .map(|ip| UdpSocket::bind(SocketAddr::from((*ip, 0))))
        .collect::<io::Result<Vec<_>>>()?;
    if sockets.is_empty() {
        return Err(io::Error::other("no source address"));
    }
    let end = Instant::now() + Duration::from_secs(secs);
    let mut sent = Sent::default();
    let mut buf = [0u8; 1500];
    let mut n = 0u64;
    while Instant::now() < end {
        // The clock is read once per 256 datagrams.
        for _ in 0..256 {
            let len = datagram(n, &mut rng, &inits, &mut buf);
            let socket = &sockets[(n as usize / 6) % sockets.len()];
            match socket.send_to(&buf[..len], target) {
                Ok(_) => {
                    sent.datagrams += 1;
                    sent.bytes += len as u64;
                }
                Err(_) => sent.refused += 1,
            }
            n += 1;
        }
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{self, MsgType};

    #[test]
    fn the_flood_mixes_every_kind() {
        let mut rng = SeededRng::new(1);
        let inits = outsider_inits(&mut rng);
        assert_eq!(inits.len(), INITS);
        let mut buf = [0u8; 1500];
        let mut seen = Vec::new();
        for n in 0..600 {
            let len = datagram(n, &mut rng, &inits, &mut buf);
            assert!((1..=1400).contains(&len));
            if let Ok(ty) = wire::peek(&buf[..len]) {
                seen.push(ty);
            }
        }
        for ty in [
            MsgType::HandshakeInit,
            MsgType::HandshakeResp,
            MsgType::Frame,
            MsgType::Control,
            MsgType::Packet,
            MsgType::CookieReply,
        ] {
            assert!(seen.contains(&ty), "{ty:?}");
        }
    }
}

/// What [`tcp_hold`] saw.
#[derive(Debug, Default, Clone, Copy)]
pub struct Held {
    pub connected: usize,
    /// Connections the target closed while they were held.
    pub closed: usize,
}

/// Opens `count` TCP connections to `target` (an outsider filling a
/// member's TCP slots: they never send a byte) and holds them for `hold`.
pub fn tcp_hold(target: SocketAddr, count: usize, hold: Duration) -> Held {
    let mut streams = Vec::new();
    for _ in 0..count {
        if let Ok(s) = std::net::TcpStream::connect_timeout(&target, Duration::from_secs(1)) {
            let _ = s.set_nonblocking(true);
            streams.push(s);
        }
    }
    let mut held = Held {
        connected: streams.len(),
        closed: 0,
    };
    let end = std::time::Instant::now() + hold;
    let mut open = vec![true; streams.len()];
    while std::time::Instant::now() < end {
        for (s, o) in streams.iter_mut().zip(open.iter_mut()) {
            let mut b = [0u8; 64];
            let gone = match std::io::Read::read(s, &mut b) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
            };
            if *o && gone {
                *o = false;
                held.closed += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    held
}
