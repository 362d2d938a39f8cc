//! The control socket, server side: a few short-lived connections served by
//! the reactor (see `crate::control` for the protocol).

use crate::control::MAX_REQUEST_LEN;
use mio::net::{UnixListener, UnixStream};
use mio::{Interest, Registry, Token};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Concurrent control connections; more wait in the listen backlog.
pub const MAX_CONNS: usize = 4;

struct Conn {
    stream: UnixStream,
    request: [u8; MAX_REQUEST_LEN],
    request_len: usize,
    reply: Option<Vec<u8>>,
    written: usize,
}

pub struct Control {
    listener: UnixListener,
    path: PathBuf,
    conns: [Option<Conn>; MAX_CONNS],
    first_token: usize,
}

/// What to do with a connection event.
pub enum Request {
    /// Answer the request line with a reply from the caller.
    Line(usize, String),
    None,
}

impl Control {
    /// Binds `path` owner-only, replacing a stale socket file.
    pub fn bind(path: &Path, first_token: usize) -> io::Result<Control> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let listener = crate::sys::with_private_umask(|| UnixListener::bind(path))?;
        Ok(Control {
            listener,
            path: path.to_path_buf(),
            conns: Default::default(),
            first_token: first_token + 1,
        })
    }

    pub fn listener(&mut self) -> &mut UnixListener {
        &mut self.listener
    }

    pub fn owns(&self, token: Token) -> bool {
        (self.first_token..self.first_token + MAX_CONNS).contains(&token.0)
    }

    /// Accepts waiting connections into free slots.
    pub fn accept(&mut self, registry: &Registry) {
        loop {
            let Some(slot) = self.conns.iter().position(Option::is_none) else {
                return; // full: the rest wait in the backlog
            };
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    let token = Token(self.first_token + slot);
                    if registry
                        .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                        .is_ok()
                    {
                        self.conns[slot] = Some(Conn {
                            stream,
                            request: [0; MAX_REQUEST_LEN],
                            request_len: 0,
                            reply: None,
                            written: 0,
                        });
                    }
                }
                Err(_) => return,
            }
        }
    }

    /// Reads from the connection; returns a complete request line if any.
    pub fn readable(&mut self, token: Token, registry: &Registry) -> Request {
        let slot = token.0 - self.first_token;
        let Some(c) = self.conns[slot].as_mut() else {
            return Request::None;
        };
        if c.reply.is_some() {
            self.writable(token, registry);
            return Request::None;
        }
        loop {
            if c.request_len == MAX_REQUEST_LEN {
                self.close(slot, registry);
                return Request::None;
            }
            match c.stream.read(&mut c.request[c.request_len..]) {
                Ok(0) => {
                    self.close(slot, registry);
                    return Request::None;
                }
                Ok(n) => {
                    c.request_len += n;
                    if let Some(end) = c.request[..c.request_len].iter().position(|&b| b == b'\n') {
                        let line = String::from_utf8_lossy(&c.request[..end])
                            .trim()
                            .to_string();
                        return Request::Line(slot, line);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Request::None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.close(slot, registry);
                    return Request::None;
                }
            }
        }
    }

    /// Queues the reply for a request and starts writing it.
    pub fn reply(&mut self, slot: usize, reply: String, registry: &Registry) {
        if let Some(c) = self.conns[slot].as_mut() {
            c.reply = Some(reply.into_bytes());
            self.writable(Token(self.first_token + slot), registry);
        }
    }

    /// Continues writing a reply; closes when done.
    pub fn writable(&mut self, token: Token, registry: &Registry) {
        let slot = token.0 - self.first_token;
        let Some(c) = self.conns[slot].as_mut() else {
            return;
        };
        let Some(reply) = &c.reply else {
            return;
        };
        while c.written < reply.len() {
            match c.stream.write(&reply[c.written..]) {
                Ok(n) => c.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        self.close(slot, registry);
    }

    fn close(&mut self, slot: usize, registry: &Registry) {
        if let Some(mut c) = self.conns[slot].take() {
            let _ = registry.deregister(&mut c.stream);
        }
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
