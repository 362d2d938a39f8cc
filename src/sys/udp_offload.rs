//! UDP GSO and GRO: sending trains of datagrams in one message
//! (`UDP_SEGMENT`), receiving coalesced trains (`UDP_GRO`), and the
//! loopback self-test that decides whether to use them.

use super::{cvt, from_std, header, recv_mmsg, set_int_sockopt, to_std, BATCH};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};

/// Kernel ABI numbers (linux/udp.h): not defined for every target by the
/// libc crate, and fixed since Linux 4.18 (GSO) and 5.0 (GRO).
const UDP_SEGMENT: libc::c_int = 103;
const UDP_GRO: libc::c_int = 104;

/// Whether the kernel takes `UDP_SEGMENT` (UDP GSO): it answers the
/// option's getsockopt from Linux 4.18 on.
pub fn udp_gso_available(fd: RawFd) -> bool {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: passes a live c_int and its size.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_UDP,
            UDP_SEGMENT,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    r == 0
}

/// Asks the kernel to hand over trains of same-size datagrams from one
/// sender as one (UDP GRO); fails on kernels before 5.0.
pub fn enable_udp_gro(fd: RawFd) -> io::Result<()> {
    set_int_sockopt(fd, libc::SOL_UDP, UDP_GRO, 1)
}

/// Room for one control message holding an int, aligned as cmsghdr wants.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct Cmsg([u8; 32]);

/// Datagrams one send may carry (in up to [`BATCH`] messages).
pub const TRAIN_DATAGRAMS: usize = 64;

/// One message of a send: `count` datagrams from index `first`, all but
/// the last exactly `seg` bytes (the last at most), to the first's
/// destination. More than one goes as a UDP GSO train.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Train {
    pub first: usize,
    pub count: usize,
    pub seg: usize,
}

/// Scratch arrays for one sendmmsg of trains, allocated once.
pub struct TrainBatch {
    hdrs: [libc::mmsghdr; BATCH],
    iovs: [libc::iovec; TRAIN_DATAGRAMS],
    addrs: [libc::sockaddr_storage; BATCH],
    ctrl: [Cmsg; BATCH],
}

impl TrainBatch {
    pub fn new() -> Box<TrainBatch> {
        // SAFETY: plain C structs and byte arrays; zero is valid (null
        // pointers are set before use).
        Box::new(unsafe { std::mem::zeroed() })
    }
}

/// Sends `trains` of `msgs` (at most [`BATCH`] trains and
/// [`TRAIN_DATAGRAMS`] datagrams); returns how many trains the kernel
/// took. A train of one is an ordinary datagram.
pub fn send_trains(
    fd: RawFd,
    batch: &mut TrainBatch,
    msgs: &[(&[u8], SocketAddr)],
    trains: &[Train],
) -> io::Result<usize> {
    let n = trains.len().min(BATCH);
    let mut iov = 0;
    for (i, t) in trains.iter().take(n).enumerate() {
        if t.count == 0 || t.first + t.count > msgs.len() || iov + t.count > TRAIN_DATAGRAMS {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad train"));
        }
        let namelen = from_std(&msgs[t.first].1, &mut batch.addrs[i]);
        for (k, (bytes, _)) in msgs[t.first..t.first + t.count].iter().enumerate() {
            // The kernel only reads a datagram it sends.
            batch.iovs[iov + k] = libc::iovec {
                iov_base: bytes.as_ptr() as *mut libc::c_void,
                iov_len: bytes.len(),
            };
        }
        let h = &mut batch.hdrs[i];
        let space = if t.count > 1 {
            cmsg_space(std::mem::size_of::<u16>())
        } else {
            0
        };
        let control = if space > 0 {
            batch.ctrl[i].0.as_mut_ptr()
        } else {
            std::ptr::null_mut()
        };
        header(
            h,
            &mut batch.addrs[i],
            namelen,
            (&mut batch.iovs[iov], t.count),
            (control, space),
        );
        if space > 0 {
            // SAFETY: msg_control points at 32 aligned bytes, more than
            // CMSG_SPACE(2); the header and data stay inside them.
            unsafe {
                let c = libc::CMSG_FIRSTHDR(&h.msg_hdr);
                (*c).cmsg_level = libc::SOL_UDP;
                (*c).cmsg_type = UDP_SEGMENT;
                (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as _) as _;
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), t.seg as u16);
            }
        }
        iov += t.count;
    }
    // SAFETY: hdrs[..n] point at memory inside `batch` and at the
    // borrowed slices, which the kernel only reads.
    let sent = cvt(unsafe {
        libc::sendmmsg(
            fd,
            batch.hdrs.as_mut_ptr(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT as _,
        )
    })?;
    Ok(sent as usize)
}

fn cmsg_space(len: usize) -> usize {
    // SAFETY: pure arithmetic.
    unsafe { libc::CMSG_SPACE(len as _) as usize }
}

/// Messages one GRO receive takes, and the room for each: a coalesced
/// train is at most 64 KiB.
pub const GRO_MESSAGES: usize = 4;
pub const GRO_BUFFER: usize = 1 << 16;

/// Scratch arrays for one receive of coalesced trains.
struct GroArrays {
    hdrs: [libc::mmsghdr; GRO_MESSAGES],
    iovs: [libc::iovec; GRO_MESSAGES],
    addrs: [libc::sockaddr_storage; GRO_MESSAGES],
    ctrl: [Cmsg; GRO_MESSAGES],
}

/// Buffers and scratch arrays for receiving coalesced trains, allocated
/// once. The buffers' pages become resident only when a train fills them.
pub struct GroBatch {
    c: Box<GroArrays>,
    bufs: Vec<u8>,
}

/// One received message: its bytes, its sender, and the size of each
/// datagram in it (`None`: one datagram, not coalesced).
pub struct GroMessage<'a> {
    pub bytes: &'a [u8],
    pub from: Option<SocketAddr>,
    pub seg: Option<usize>,
    /// The message did not fit (never for a real train): dropped whole.
    pub truncated: bool,
}

impl Default for GroBatch {
    fn default() -> GroBatch {
        GroBatch {
            // SAFETY: plain C structs and byte arrays; zero is valid (null
            // pointers are set before use).
            c: Box::new(unsafe { std::mem::zeroed() }),
            bufs: vec![0u8; GRO_MESSAGES * GRO_BUFFER],
        }
    }
}

impl GroBatch {
    /// Message `i` of the last [`recv_gro`].
    pub fn message(&self, i: usize) -> GroMessage<'_> {
        let h = &self.c.hdrs[i];
        let len = (h.msg_len as usize).min(GRO_BUFFER);
        let mut seg = None;
        if h.msg_hdr.msg_controllen > 0 {
            // SAFETY: the kernel wrote msg_controllen bytes of cmsgs into
            // ctrl[i]; the CMSG_* walk stays inside them.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(&h.msg_hdr);
                while !c.is_null() {
                    if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == UDP_GRO {
                        let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                        seg = usize::try_from(v).ok().filter(|&s| s > 0);
                    }
                    c = libc::CMSG_NXTHDR(&h.msg_hdr, c);
                }
            }
        }
        GroMessage {
            bytes: &self.bufs[i * GRO_BUFFER..i * GRO_BUFFER + len],
            from: to_std(&self.c.addrs[i]),
            seg,
            truncated: h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
        }
    }
}

/// Receives up to `n` (≤ [`GRO_MESSAGES`]) messages, each a datagram or a
/// coalesced train; read them with [`GroBatch::message`].
pub fn recv_gro(fd: RawFd, batch: &mut GroBatch, n: usize) -> io::Result<usize> {
    let n = n.min(GRO_MESSAGES);
    let namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let base = batch.bufs.as_mut_ptr();
    let batch = &mut *batch.c;
    for i in 0..n {
        batch.iovs[i] = libc::iovec {
            // SAFETY: i * GRO_BUFFER + GRO_BUFFER ≤ bufs.len().
            iov_base: unsafe { base.add(i * GRO_BUFFER) }.cast(),
            iov_len: GRO_BUFFER,
        };
        header(
            &mut batch.hdrs[i],
            &mut batch.addrs[i],
            namelen,
            (&mut batch.iovs[i], 1),
            (batch.ctrl[i].0.as_mut_ptr(), std::mem::size_of::<Cmsg>()),
        );
    }
    // SAFETY: hdrs[..n] point at iovecs, addresses and control buffers
    // inside `batch` and at its 64 KiB buffers, each as long as given.
    unsafe { recv_mmsg(fd, &mut batch.hdrs[..n]) }
}

/// What the loopback self-test of the UDP offloads found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffloadProbe {
    /// A train left as one and arrived as one, cut where it was sent.
    Both,
    /// A train left as one and arrived as separate datagrams.
    GsoOnly,
    /// Something else (an old kernel, loopback down, an emulator that
    /// passes the control messages through unconverted): neither is used.
    Failed(&'static str),
}

/// Sends a train of two 258-byte datagrams with UDP GSO over loopback to a
/// socket with UDP GRO and checks what arrives. The kernel's own answer to
/// "is UDP_SEGMENT known" is not enough: qemu-user, for one, forwards
/// these control messages without converting their byte order, and a
/// wrong segment size would cut datagrams apart silently.
pub fn probe_udp_offloads() -> OffloadProbe {
    use std::net::UdpSocket;
    const SEG: usize = 258;
    let probe = || -> io::Result<OffloadProbe> {
        let rx = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        rx.set_nonblocking(true)?;
        if enable_udp_gro(rx.as_raw_fd()).is_err() {
            return Ok(OffloadProbe::Failed("the kernel lacks UDP_GRO"));
        }
        let tx = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        let to = rx.local_addr()?;
        let (a, b) = ([0xa5u8; SEG], [0x5au8; SEG]);
        let msgs = [(&a[..], to), (&b[..], to)];
        let train = [Train {
            first: 0,
            count: 2,
            seg: SEG,
        }];
        if send_trains(tx.as_raw_fd(), &mut TrainBatch::new(), &msgs, &train)? != 1 {
            return Ok(OffloadProbe::Failed("a train was not sent"));
        }
        let mut batch = GroBatch::default();
        let mut got: smallvec::SmallVec<[(usize, Option<usize>); 2]> = Default::default();
        for _ in 0..100 {
            match recv_gro(rx.as_raw_fd(), &mut batch, 2) {
                Ok(n) => {
                    for i in 0..n {
                        let m = batch.message(i);
                        got.push((m.bytes.len(), m.seg));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            let total: usize = got.iter().map(|g| g.0).sum();
            if total >= 2 * SEG {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        Ok(match got.as_slice() {
            [(len, Some(seg))] if *len == 2 * SEG && *seg == SEG => OffloadProbe::Both,
            [(l1, None), (l2, None)] if *l1 == SEG && *l2 == SEG => OffloadProbe::GsoOnly,
            [] => OffloadProbe::Failed("nothing arrived on loopback"),
            _ => OffloadProbe::Failed("a train arrived cut wrongly"),
        })
    };
    match probe() {
        Ok(p) => p,
        Err(e) if e.raw_os_error() == Some(libc::ENETUNREACH) => {
            OffloadProbe::Failed("loopback is down")
        }
        Err(_) => OffloadProbe::Failed("the kernel refused a test train"),
    }
}
