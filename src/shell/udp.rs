//! The UDP socket that carries every link, with batched I/O.

use crate::buf::MAX_PAYLOAD;
use crate::node::{DropReason, Node, Transmit};
use crate::sys::{self, MsgBatch, BATCH};
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
    tx: Box<MsgBatch>,
}

/// What a receive pass found.
pub enum Recv {
    /// The socket may hold more.
    More,
    /// Drained (or the pool is empty).
    Drained,
}

impl Udp {
    pub fn bind(addr: SocketAddr, fwmark: Option<u32>) -> io::Result<Udp> {
        let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        Udp::setup(sock, Some(addr), fwmark)
    }

    /// A socket a program embedding the daemon has bound itself (the C
    /// API): set up as ours are, then used as it is.
    pub fn adopt(fd: std::os::fd::OwnedFd, fwmark: Option<u32>) -> io::Result<Udp> {
        let sock = Socket::from(fd);
        if sock.r#type()? != Type::DGRAM {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the socket given is not a datagram socket",
            ));
        }
        Udp::setup(sock, None, fwmark)
    }

    fn setup(sock: Socket, bind: Option<SocketAddr>, fwmark: Option<u32>) -> io::Result<Udp> {
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
        Ok(Udp {
            sock: mio::net::UdpSocket::from_std(sock.into()),
            rx: MsgBatch::new(),
            tx: MsgBatch::new(),
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_addr()
    }

    pub fn source(&mut self) -> &mut mio::net::UdpSocket {
        &mut self.sock
    }

    /// Receives one batch of datagrams into pool buffers and hands each to the node.
    pub fn recv_into(&mut self, node: &mut Node, now: Instant) -> io::Result<Recv> {
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
                    node.handle_datagram(now, from, b);
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

    /// Sends everything the node has queued, handing datagrams for TCP
    /// endpoints to `tcp`. Returns false if the socket filled up (the rest
    /// stays queued until the socket is writable).
    pub fn flush(
        &mut self,
        node: &mut Node,
        tcp: &mut dyn FnMut(&mut Node, Transmit),
    ) -> io::Result<bool> {
        loop {
            let mut batch: SmallVec<[Transmit; BATCH]> = SmallVec::new();
            while batch.len() < BATCH {
                match node.poll_transmit() {
                    Some(t) if t.dst.tcp => tcp(node, t),
                    Some(t) => batch.push(t),
                    None => break,
                }
            }
            if batch.is_empty() {
                return Ok(true);
            }
            let result = {
                let pool = node.pool();
                let msgs: SmallVec<[(&[u8], SocketAddr); BATCH]> = batch
                    .iter()
                    .map(|t| (pool.data(&t.buf), t.dst.addr))
                    .collect();
                sys::send_batch(self.sock.as_raw_fd(), &mut self.tx, &msgs)
            };
            let sent = match result {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
                Err(_) => {
                    // A per-destination error (unreachable, EMSGSIZE): drop
                    // the first datagram and carry on with the rest.
                    node.count_drop(DropReason::NoEndpoint);
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
            let mut rest: SmallVec<[Transmit; BATCH]> = SmallVec::new();
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
                return Ok(false);
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
