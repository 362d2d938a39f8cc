//! TCP links, for networks that drop UDP: the same datagrams, each framed
//! by a 2-byte big-endian length. One connection per peer endpoint; links
//! never share a connection, so one slow link cannot hold up another.
//!
//! Inbound connections are accepted on the listen port; outbound ones are
//! opened when the node first sends to a TCP endpoint. Datagrams wait in a
//! bounded write buffer while a connection is being made or is full (over
//! the bound they are dropped and counted, as UDP would lose them).

use crate::buf::MAX_PAYLOAD;
use crate::node::{DropReason, Endpoint, Node, Transmit};
use crate::time::Instant;
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

/// Connections at most. When all are taken, the least recently active
/// one that carries no link makes room; a connection that carries an
/// authenticated link is never closed for a newcomer (64 connects from an
/// outsider would otherwise cut every TCP link): the newcomer is refused.
pub const MAX_CONNS: usize = 64;
/// Bytes waiting to be written per connection at most (~170 full frames).
const MAX_WRITE_BACKLOG: usize = 256 << 10;
/// A connection nothing crossed for this long is closed (the links it
/// carries have their own keepalives, so a live one never idles this long).
const IDLE_CLOSE: Duration = Duration::from_secs(120);
const LEN_PREFIX: usize = 2;

struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    /// Bytes read but not yet a whole frame.
    rbuf: Vec<u8>,
    wbuf: VecDeque<u8>,
    connected: bool,
    active: Instant,
}

pub struct Tcp {
    listener: Option<TcpListener>,
    /// SO_MARK for every connection (a full tunnel keeps our own links
    /// out of it by the mark).
    mark: Option<u32>,
    conns: Vec<Option<Conn>>,
    by_peer: BTreeMap<SocketAddr, usize>,
    first_token: usize,
}

impl Tcp {
    /// Listens on `addr` (`None`: no TCP at all). Connection tokens start
    /// at `first_token`.
    pub fn bind(
        addr: Option<SocketAddr>,
        first_token: usize,
        mark: Option<u32>,
    ) -> io::Result<Tcp> {
        let listener = match addr {
            Some(a) => {
                let s = socket(a, mark)?;
                s.set_reuse_address(true)?;
                s.bind(&a.into())?;
                s.listen(1024)?;
                Some(TcpListener::from_std(s.into()))
            }
            None => None,
        };
        Ok(Tcp {
            listener,
            mark,
            conns: (0..MAX_CONNS).map(|_| None).collect(),
            by_peer: BTreeMap::new(),
            first_token,
        })
    }

    pub fn listener(&mut self) -> Option<&mut TcpListener> {
        self.listener.as_mut()
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.as_ref()?.local_addr().ok()
    }

    pub fn owns(&self, t: Token) -> bool {
        (self.first_token..self.first_token + MAX_CONNS).contains(&t.0)
    }

    /// Accepts every pending connection.
    pub fn accept(&mut self, reg: &Registry, node: &mut Node, now: Instant) {
        loop {
            let Some(l) = self.listener.as_ref() else {
                return;
            };
            match l.accept() {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    // Refused: dropping the stream closes it.
                    self.insert(reg, node, stream, peer, true, now);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        }
    }

    fn insert(
        &mut self,
        reg: &Registry,
        node: &mut Node,
        mut stream: TcpStream,
        peer: SocketAddr,
        connected: bool,
        now: Instant,
    ) -> Option<usize> {
        if let Some(&old) = self.by_peer.get(&peer) {
            self.close(reg, old);
        }
        let slot = match self.conns.iter().position(Option::is_none) {
            Some(s) => s,
            None => {
                let slots = self.conns.iter().enumerate().filter_map(|(i, c)| {
                    let c = c.as_ref()?;
                    Some((i, c.active, node.carries_link(Endpoint::tcp(c.peer))))
                });
                let Some(victim) = evictable(slots) else {
                    node.count_drop(DropReason::TcpSlotsFull);
                    return None;
                };
                self.close(reg, victim);
                victim
            }
        };
        let token = Token(self.first_token + slot);
        if reg
            .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
            .is_err()
        {
            return None;
        }
        self.by_peer.insert(peer, slot);
        self.conns[slot] = Some(Conn {
            stream,
            peer,
            rbuf: Vec::new(),
            wbuf: VecDeque::new(),
            connected,
            active: now,
        });
        Some(slot)
    }

    fn close(&mut self, reg: &Registry, slot: usize) {
        if let Some(mut c) = self.conns[slot].take() {
            let _ = reg.deregister(&mut c.stream);
            self.by_peer.remove(&c.peer);
        }
    }

    /// Frames a datagram for its TCP endpoint, connecting if needed.
    pub fn send(&mut self, reg: &Registry, node: &mut Node, t: Transmit, now: Instant) {
        let slot = match self.by_peer.get(&t.dst.addr) {
            Some(&s) => Some(s),
            None => connect(t.dst.addr, self.mark)
                .ok()
                .and_then(|s| self.insert(reg, node, s, t.dst.addr, false, now)),
        };
        let Some(conn) = slot.and_then(|s| self.conns[s].as_mut()) else {
            node.count_drop(DropReason::NoEndpoint);
            return node.pool_mut().free(t.buf);
        };
        let data = node.pool().data(&t.buf);
        if conn.wbuf.len() + LEN_PREFIX + data.len() > MAX_WRITE_BACKLOG {
            node.count_drop(DropReason::QueueFull);
            return node.pool_mut().free(t.buf);
        }
        conn.wbuf.extend((data.len() as u16).to_be_bytes());
        conn.wbuf.extend(data.iter().copied());
        node.pool_mut().free(t.buf);
        conn.active = now;
        if conn.connected {
            let _ = write_out(conn);
        }
    }

    /// Serves an event on connection `token`: completes a connect, writes
    /// what waits, reads whole frames into the node.
    pub fn ready(&mut self, reg: &Registry, token: Token, node: &mut Node, now: Instant) {
        let slot = token.0 - self.first_token;
        let Some(conn) = self.conns[slot].as_mut() else {
            return;
        };
        if !conn.connected {
            match conn.stream.take_error() {
                Ok(None) if conn.stream.peer_addr().is_ok() => conn.connected = true,
                Ok(None) => return, // still connecting
                _ => return self.close(reg, slot),
            }
        }
        if write_out(conn).is_err() {
            return self.close(reg, slot);
        }
        let mut chunk = [0u8; 4096];
        loop {
            match conn.stream.read(&mut chunk) {
                Ok(0) => return self.close(reg, slot),
                Ok(n) => {
                    conn.active = now;
                    conn.rbuf.extend_from_slice(&chunk[..n]);
                    if deliver_frames(conn, node, now).is_err() {
                        return self.close(reg, slot);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return self.close(reg, slot),
            }
        }
    }

    /// Closes connections idle for too long.
    pub fn expire(&mut self, reg: &Registry, now: Instant) {
        for slot in 0..MAX_CONNS {
            if self.conns[slot]
                .as_ref()
                .is_some_and(|c| now.saturating_since(c.active) >= IDLE_CLOSE)
            {
                self.close(reg, slot);
            }
        }
    }
}

/// Which of the taken slots (slot, last active, carries a link) makes
/// room for a new connection: the least recently active that carries no
/// link; none if every one does.
/// A non-blocking TCP socket for `addr`'s family, with our mark.
fn socket(addr: SocketAddr, mark: Option<u32>) -> io::Result<socket2::Socket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        let _ = s.set_only_v6(false);
    }
    if let Some(m) = mark {
        s.set_mark(m)?;
    }
    s.set_nonblocking(true)?;
    Ok(s)
}

/// Starts connecting to `addr` (completion is a writable event).
fn connect(addr: SocketAddr, mark: Option<u32>) -> io::Result<TcpStream> {
    let s = socket(addr, mark)?;
    match s.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(s.into()))
}

fn evictable(slots: impl Iterator<Item = (usize, Instant, bool)>) -> Option<usize> {
    slots
        .filter(|&(_, _, link)| !link)
        .min_by_key(|&(_, active, _)| active)
        .map(|(i, _, _)| i)
}

/// Writes as much of the backlog as the socket takes.
fn write_out(conn: &mut Conn) -> io::Result<()> {
    while !conn.wbuf.is_empty() {
        let (a, _) = conn.wbuf.as_slices();
        match conn.stream.write(a) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                conn.wbuf.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Hands every whole frame in the read buffer to the node. A frame longer
/// than a datagram can be is a broken stream.
fn deliver_frames(conn: &mut Conn, node: &mut Node, now: Instant) -> Result<(), ()> {
    let mut at = 0;
    while conn.rbuf.len() >= at + LEN_PREFIX {
        let len = usize::from(u16::from_be_bytes([conn.rbuf[at], conn.rbuf[at + 1]]));
        if len > MAX_PAYLOAD {
            return Err(());
        }
        if conn.rbuf.len() < at + LEN_PREFIX + len {
            break;
        }
        let frame = &conn.rbuf[at + LEN_PREFIX..at + LEN_PREFIX + len];
        match node.pool_mut().alloc_with(frame) {
            Some(buf) => node.handle_datagram(now, Endpoint::tcp(conn.peer), buf),
            None => node.count_drop(DropReason::PoolEmpty),
        }
        at += LEN_PREFIX + len;
    }
    conn.rbuf.drain(..at);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_carrying_a_link_is_never_evicted() {
        let t = |ms| Instant::ZERO + Duration::from_millis(ms);
        // The oldest without a link goes, however old the links are.
        let slots = [
            (0, t(1), true),
            (1, t(5), false),
            (2, t(3), false),
            (3, t(2), true),
        ];
        assert_eq!(evictable(slots.into_iter()), Some(2));
        // Every slot a link: the newcomer is refused.
        let links = (0..MAX_CONNS).map(|i| (i, t(i as u64), true));
        assert_eq!(evictable(links), None);
    }
}
