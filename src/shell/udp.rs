//! The UDP socket that carries every link, with batched I/O.
//!
//! Sends go out as trains (`trains`): with UDP GSO a train of same-size
//! datagrams to one peer is one packet through the kernel. Receives, with
//! UDP GRO, take such trains whole into a 64 KiB buffer and hand each
//! datagram to the node in a pool buffer (one copy: the node's buffers
//! are 2 KiB slots, and a train's datagram boundaries are known only
//! once it has arrived). Without GRO, datagrams land straight in pool
//! buffers. At start a train goes over loopback to check both (an old
//! kernel lacks them; qemu-user passes their control messages through
//! in the wrong byte order, which would cut datagrams apart silently);
//! each is turned off, with the reason shown in `status`, where the
//! kernel lacks, fails or later refuses it.

use crate::buf::MAX_PAYLOAD;
use crate::config::Offload;
use crate::host::Networks;
use crate::node::{DropReason, Node, Transmit};
use crate::sys::{
    self, GroBatch, MsgBatch, OffloadProbe as Probe, Train, TrainBatch, BATCH, TRAIN_DATAGRAMS,
};
use crate::time::Instant;
use smallvec::SmallVec;
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

/// Socket buffer size asked for: absorbs bursts of a 1 Gbit/s link for ~30 ms.
const SOCKET_BUFFER: usize = 4 << 20;

pub struct Udp {
    sock: mio::net::UdpSocket,
    rx: Box<MsgBatch>,
    tx: Box<TrainBatch>,
    /// Receive buffers for coalesced trains, when GRO is on.
    gro_rx: Option<GroBatch>,
    gso: State,
    gro: State,
    /// Datagrams at the queue's head to send one by one (a train the
    /// kernel refused).
    singles: usize,
    /// Largest datagram a train may carry (lowered when the kernel
    /// refuses a train as larger than the route's MTU).
    gso_max_seg: usize,
    /// Trains of more than one datagram sent, and the datagrams in them.
    gso_trains: Count,
    /// Coalesced trains received, and the datagrams in them.
    gro_trains: Count,
}

/// Trains (or super-frames) and the datagrams (or frames) they carried.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Count {
    trains: u64,
    datagrams: u64,
}

impl Count {
    pub(super) fn add(&mut self, datagrams: usize) {
        self.trains += 1;
        self.datagrams += datagrams as u64;
    }

    fn describe(&self, state: State) -> String {
        self.describe_as(state, "trains", "datagrams")
    }

    /// "on (N trains, x datagrams each)", with other nouns.
    pub(super) fn describe_as(&self, state: State, whole: &str, part: &str) -> String {
        match state {
            State::On if self.trains > 0 => format!(
                "on ({} {whole}, {:.1} {part} each)",
                self.trains,
                self.datagrams as f64 / self.trains as f64
            ),
            s => s.to_string(),
        }
    }
}

/// Whether an offload is in use, and if not, why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    On,
    Off(&'static str),
}

impl State {
    pub(super) fn on(self) -> bool {
        self == State::On
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            State::On => f.write_str("on"),
            State::Off(why) => write!(f, "off ({why})"),
        }
    }
}

/// What a receive pass found.
pub enum Recv {
    /// The socket may hold more.
    More,
    /// Drained (or the pool is empty).
    Drained,
}

impl Udp {
    pub fn bind(addr: SocketAddr, fwmark: Option<u32>, offload: Offload) -> io::Result<Udp> {
        let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        Udp::setup(sock, Some(addr), fwmark, offload)
    }

    /// A socket a program embedding the daemon has bound itself (the C
    /// API): set up as ours are, then used as it is.
    pub fn adopt(
        fd: std::os::fd::OwnedFd,
        fwmark: Option<u32>,
        offload: Offload,
    ) -> io::Result<Udp> {
        let sock = Socket::from(fd);
        if sock.r#type()? != Type::DGRAM {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the socket given is not a datagram socket",
            ));
        }
        Udp::setup(sock, None, fwmark, offload)
    }

    fn setup(
        sock: Socket,
        bind: Option<SocketAddr>,
        fwmark: Option<u32>,
        offload: Offload,
    ) -> io::Result<Udp> {
        let addr = match bind {
            Some(a) => a,
            None => sock
                .local_addr()?
                .as_socket()
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not an IP socket"))?,
        };
        if bind.is_some() && addr.is_ipv6() {
            // Dual-stack on [::]: one socket serves IPv4 and IPv6 peers.
            let _ = sock.set_only_v6(false);
        }
        // Best effort: the kernel caps these at net.core.[rw]mem_max.
        let _ = sock.set_recv_buffer_size(SOCKET_BUFFER);
        let _ = sock.set_send_buffer_size(SOCKET_BUFFER);
        if addr.is_ipv4() {
            // The TAP MTU already keeps datagrams within 1500 bytes; on a
            // path with a smaller MTU, letting routers fragment beats a
            // black hole (WireGuard makes the same choice).
            let _ = set_pmtudisc_dont(&sock);
        }
        if let Some(mark) = fwmark {
            sock.set_mark(mark)?;
        }
        sock.set_nonblocking(true)?;
        if let Some(a) = bind {
            sock.bind(&a.into())?;
        }
        let fd = sock.as_raw_fd();
        let wanted = offload.udp_gso || offload.udp_gro;
        let probe = match (wanted, sys::udp_gso_available(fd)) {
            (false, _) => Probe::Failed("offload setting"),
            (true, false) => Probe::Failed("the kernel lacks UDP_SEGMENT"),
            (true, true) => sys::probe_udp_offloads(),
        };
        let gso = match (offload.udp_gso, probe) {
            (false, _) => State::Off("offload setting"),
            (true, Probe::Both | Probe::GsoOnly) => State::On,
            (true, Probe::Failed(why)) => State::Off(why),
        };
        let gro = match (offload.udp_gro, probe) {
            (false, _) => State::Off("offload setting"),
            (true, Probe::Both) => match sys::enable_udp_gro(fd) {
                Ok(()) => State::On,
                Err(_) => State::Off("the kernel lacks UDP_GRO"),
            },
            (true, Probe::GsoOnly) => State::Off("a test train arrived cut on loopback"),
            (true, Probe::Failed(why)) => State::Off(why),
        };
        if let (State::Off(why), true) = (gso, offload.udp_gso) {
            log::info!("UDP GSO not used: {why}");
        }
        Ok(Udp {
            sock: mio::net::UdpSocket::from_std(sock.into()),
            rx: MsgBatch::new(),
            tx: TrainBatch::new(),
            gro_rx: gro.on().then(GroBatch::default),
            gso,
            gro,
            singles: 0,
            gso_max_seg: usize::MAX,
            gso_trains: Count::default(),
            gro_trains: Count::default(),
        })
    }

    /// The offloads in use, for `status`.
    pub fn offloads(&self) -> String {
        let above = match self.gso_max_seg {
            usize::MAX => String::new(),
            max => format!(" (datagrams above {max} B go alone: the route's MTU)"),
        };
        format!(
            "udp gso {}{above}, udp gro {}",
            self.gso_trains.describe(self.gso),
            self.gro_trains.describe(self.gro)
        )
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_addr()
    }

    pub fn source(&mut self) -> &mut mio::net::UdpSocket {
        &mut self.sock
    }

    /// Receives one batch of datagrams into pool buffers and hands each to the node.
    pub fn recv_into(
        &mut self,
        node: &mut Node,
        mut nets: Option<&mut Networks>,
        now: Instant,
    ) -> io::Result<Recv> {
        if self.gro_rx.is_some() {
            return self.recv_trains(node, nets, now);
        }
        let mut bufs: SmallVec<[_; BATCH]> = SmallVec::new();
        while bufs.len() < BATCH {
            let Some(b) = node.pool_mut().alloc() else {
                break;
            };
            bufs.push(b);
        }
        if bufs.is_empty() {
            node.count_drop(DropReason::PoolEmpty);
            return Ok(Recv::Drained);
        }
        let mut lens = [0usize; BATCH];
        let mut froms = [None; BATCH];
        let got = match sys::recv_batch(
            self.sock.as_raw_fd(),
            &mut self.rx,
            node.pool_mut(),
            &bufs,
            &mut lens,
            &mut froms,
        ) {
            Ok(n) => n,
            Err(e) => {
                for b in bufs {
                    node.pool_mut().free(b);
                }
                return if e.kind() == io::ErrorKind::WouldBlock {
                    Ok(Recv::Drained)
                } else {
                    Err(e)
                };
            }
        };
        let full = got == bufs.len();
        for (i, mut b) in bufs.into_iter().enumerate() {
            match (i < got, froms[i]) {
                (true, Some(from)) if lens[i] <= MAX_PAYLOAD => {
                    node.pool().set_len(&mut b, lens[i]);
                    deliver(node, nets.as_deref_mut(), now, from, b);
                }
                (true, _) => {
                    node.count_drop(DropReason::BadLength);
                    node.pool_mut().free(b);
                }
                (false, _) => node.pool_mut().free(b),
            }
        }
        Ok(if full { Recv::More } else { Recv::Drained })
    }

    /// Receives up to [`sys::GRO_MESSAGES`] messages (datagrams or
    /// coalesced trains) and hands each datagram to the node in a pool
    /// buffer; takes no more messages than the pool can hold whole.
    fn recv_trains(
        &mut self,
        node: &mut Node,
        mut nets: Option<&mut Networks>,
        now: Instant,
    ) -> io::Result<Recv> {
        let Some(batch) = self.gro_rx.as_mut() else {
            return Ok(Recv::Drained);
        };
        let free = (node.pool().capacity() - node.pool().in_use()) as usize;
        let want = (free / crate::shell::trains::MAX_SEGMENTS).min(sys::GRO_MESSAGES);
        if want == 0 {
            node.count_drop(DropReason::PoolEmpty);
            return Ok(Recv::Drained);
        }
        let got = match sys::recv_gro(self.sock.as_raw_fd(), batch, want) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Recv::Drained),
            Err(e) => return Err(e),
        };
        for i in 0..got {
            let m = batch.message(i);
            let Some(from) = m.from.filter(|_| !m.truncated) else {
                node.count_drop(DropReason::BadLength);
                continue;
            };
            let seg = m.seg.unwrap_or(m.bytes.len()).max(1);
            if m.bytes.len() > seg {
                self.gro_trains.add(m.bytes.len().div_ceil(seg));
            }
            for datagram in m.bytes.chunks(seg) {
                if datagram.len() > MAX_PAYLOAD {
                    node.count_drop(DropReason::BadLength);
                    continue;
                }
                match node.pool_mut().alloc_with(datagram) {
                    Some(b) => deliver(node, nets.as_deref_mut(), now, from, b),
                    None => node.count_drop(DropReason::PoolEmpty),
                }
            }
        }
        Ok(if got == want {
            Recv::More
        } else {
            Recv::Drained
        })
    }

    /// Sends everything the node has queued, handing datagrams for TCP
    /// endpoints to `tcp`. Returns false if the socket filled up (the rest
    /// stays queued until the socket is writable).
    pub fn flush(
        &mut self,
        node: &mut Node,
        tcp: &mut dyn FnMut(&mut Node, Transmit),
    ) -> io::Result<bool> {
        let mut plan: SmallVec<[Train; BATCH]> = SmallVec::new();
        loop {
            let mut batch: SmallVec<[Transmit; TRAIN_DATAGRAMS]> = SmallVec::new();
            while batch.len() < TRAIN_DATAGRAMS {
                match node.poll_transmit() {
                    Some(t) if t.dst.is_tcp() => tcp(node, t),
                    Some(t) => batch.push(t),
                    None => break,
                }
            }
            if batch.is_empty() {
                return Ok(true);
            }
            let limits = super::trains::Limits {
                count: if self.gso.on() {
                    super::trains::MAX_SEGMENTS
                } else {
                    1
                },
                seg: self.gso_max_seg,
            };
            let result = {
                let pool = node.pool();
                let msgs: SmallVec<[(&[u8], SocketAddr); TRAIN_DATAGRAMS]> = batch
                    .iter()
                    .map(|t| (pool.data(&t.buf), t.dst.addr))
                    .collect();
                super::trains::plan(&msgs, limits, self.singles, &mut plan);
                sys::send_trains(self.sock.as_raw_fd(), &mut self.tx, &msgs, &plan)
            };
            let sent = match result {
                Ok(n) => {
                    for t in plan.iter().take(n).filter(|t| t.count > 1) {
                        self.gso_trains.add(t.count);
                    }
                    super::trains::datagrams(&plan, n)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
                Err(e) if plan[0].count > 1 => {
                    // The kernel refused the train: EIO where the route
                    // cannot do GSO at all (then never again), EINVAL for
                    // this train (its datagrams are above the route's MTU:
                    // alone they fragment, so that size never trains again).
                    // Its datagrams go again one by one.
                    if e.raw_os_error() == Some(libc::EIO) {
                        log::warn!(
                            "UDP GSO refused by the kernel ({e}); sending datagrams one by one"
                        );
                        self.gso = State::Off("the kernel refused a train (EIO)");
                    } else {
                        log::debug!(
                            "a train of {} B datagrams refused ({e}): those go alone",
                            plan[0].seg
                        );
                        self.gso_max_seg = plan[0].seg - 1;
                    }
                    self.singles = plan[0].count;
                    for t in batch.into_iter().rev() {
                        node.unpoll_transmit(t);
                    }
                    continue;
                }
                Err(_) => {
                    // A per-destination error (unreachable, EMSGSIZE): drop
                    // the first datagram and carry on with the rest.
                    node.count_drop(DropReason::NoEndpoint);
                    self.singles = self.singles.saturating_sub(1);
                    let mut it = batch.into_iter();
                    if let Some(t) = it.next() {
                        node.pool_mut().free(t.buf);
                    }
                    for t in it.rev() {
                        node.unpoll_transmit(t);
                    }
                    continue;
                }
            };
            self.singles = self.singles.saturating_sub(sent);
            let mut rest: SmallVec<[Transmit; TRAIN_DATAGRAMS]> = SmallVec::new();
            for (i, t) in batch.into_iter().enumerate() {
                if i < sent {
                    node.pool_mut().free(t.buf);
                } else {
                    rest.push(t);
                }
            }
            if !rest.is_empty() {
                for t in rest.into_iter().rev() {
                    node.unpoll_transmit(t);
                }
                // Fewer than planned: the socket is full. All planned
                // went: the rest did not fit this send's trains.
                if sent < super::trains::datagrams(&plan, plan.len()) {
                    return Ok(false);
                }
            }
        }
    }
}

fn set_pmtudisc_dont(sock: &Socket) -> io::Result<()> {
    // socket2 has no wrapper for IP_MTU_DISCOVER; set it with setsockopt.
    crate::sys::set_int_sockopt(
        sock.as_raw_fd(),
        libc::IPPROTO_IP,
        libc::IP_MTU_DISCOVER,
        libc::IP_PMTUDISC_DONT,
    )
}

/// A received datagram to its node: a network's, if the daemon runs
/// networks and it is tagged for one, else the (public) node's.
#[inline]
fn deliver(
    node: &mut Node,
    nets: Option<&mut Networks>,
    now: Instant,
    from: std::net::SocketAddr,
    buf: crate::buf::PacketBuf,
) {
    let buf = match nets {
        Some(nets) => nets.handle_datagram(now, node, from.into(), buf),
        None => Some(buf),
    };
    if let Some(buf) = buf {
        node.handle_datagram(now, from, buf);
    }
}
