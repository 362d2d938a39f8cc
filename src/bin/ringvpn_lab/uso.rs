//! `udp-train` and `udp-count`: an application that sends UDP with GSO
//! (`UDP_SEGMENT`, as QUIC stacks do) through the VPN, and a receiver that
//! checks every datagram arrived whole — the lab's test of the TAP's UDP
//! super-frames (USO), which iperf3 cannot produce.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// linux/udp.h; fixed since Linux 4.18.
const UDP_SEGMENT: libc::c_int = 103;

/// The byte at `i` of datagram `n`: the receiver recomputes it.
fn pattern(n: u32, i: usize) -> u8 {
    (n as usize).wrapping_mul(31).wrapping_add(i) as u8
}

/// Sends `trains` sends of `per` datagrams of `seg` bytes each (the last
/// datagram of a send may be shorter: `tail` bytes) to `to`. Each
/// datagram starts with its 4-byte number.
pub fn send(to: SocketAddr, seg: usize, per: usize, trains: usize) -> io::Result<u32> {
    let s = UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], 0)))?;
    let size = seg as libc::c_int;
    // SAFETY: setsockopt reads one int, which outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_UDP,
            UDP_SEGMENT,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut n = 0u32;
    let mut buf = vec![0u8; seg * per];
    for _ in 0..trains {
        for d in 0..per {
            let dgram = &mut buf[d * seg..(d + 1) * seg];
            for (i, b) in dgram.iter_mut().enumerate() {
                *b = pattern(n, i);
            }
            dgram[..4].copy_from_slice(&n.to_be_bytes());
            n += 1;
        }
        s.send_to(&buf, to)?;
        // Let the receiver keep up: this tests shape, not speed.
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(n)
}

/// Receives on `port` for `secs` seconds; prints how many datagrams of
/// `seg` bytes arrived intact and how many did not.
pub fn count(port: u16, seg: usize, secs: u64) -> io::Result<(u64, u64)> {
    let s = UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], port)))?;
    let end = Instant::now() + Duration::from_secs(secs);
    let mut buf = vec![0u8; 65_536];
    let (mut good, mut bad) = (0, 0);
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok((good, bad));
        }
        s.set_read_timeout(Some(left))?;
        match s.recv(&mut buf) {
            Ok(len) => {
                let d = &buf[..len];
                let n = u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
                let intact = len == seg
                    && d[4..]
                        .iter()
                        .enumerate()
                        .all(|(i, &b)| b == pattern(n, i + 4));
                if intact {
                    good += 1;
                } else {
                    bad += 1;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e),
        }
    }
}
