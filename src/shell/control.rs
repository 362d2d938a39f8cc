//! Small request-reply servers run by the reactor: the control socket
//! (see `crate::control` for the protocol) and the optional metrics HTTP
//! endpoint. A few short-lived connections, each one request (read up to
//! where the protocol says it ends, bounded) and one reply, then closed.

use crate::control::MAX_REQUEST_LEN;
use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use mio::{Interest, Registry, Token};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Concurrent connections per server; more wait in the listen backlog.
pub const MAX_CONNS: usize = 4;
/// The longest HTTP request head we read (a scraper's headers).
pub const MAX_HTTP_REQUEST: usize = 2048;

/// A listener the servers can accept from.
pub trait Listen: mio::event::Source {
    type Stream: Read + Write + mio::event::Source;
    fn accept_one(&self) -> io::Result<Self::Stream>;
}

impl Listen for UnixListener {
    type Stream = UnixStream;
    fn accept_one(&self) -> io::Result<UnixStream> {
        self.accept().map(|(s, _)| s)
    }
}

impl Listen for TcpListener {
    type Stream = TcpStream;
    fn accept_one(&self) -> io::Result<TcpStream> {
        self.accept().map(|(s, _)| s)
    }
}

struct Conn<S> {
    stream: S,
    request: Vec<u8>,
    reply: Option<Vec<u8>>,
    written: usize,
}

/// A server: its listener, its connections, and where a request ends.
pub struct Server<L: Listen> {
    listener: L,
    /// A socket file to remove when done (the control socket).
    path: Option<PathBuf>,
    conns: [Option<Conn<L::Stream>>; MAX_CONNS],
    first_token: usize,
    max_request: usize,
    /// The request's first line, once the whole request is in.
    complete: fn(&[u8]) -> Option<String>,
}

/// The control socket.
pub type Control = Server<UnixListener>;
/// The metrics endpoint.
pub type Http = Server<TcpListener>;

/// A control request: one line.
fn line_done(b: &[u8]) -> Option<String> {
    let end = b.iter().position(|&c| c == b'\n')?;
    Some(String::from_utf8_lossy(&b[..end]).trim().to_string())
}

/// An HTTP request: its head, up to the blank line (no body is read).
fn http_done(b: &[u8]) -> Option<String> {
    b.windows(4).position(|w| w == b"\r\n\r\n")?;
    line_done(b)
}

/// What to do with a connection event.
pub enum Request {
    /// Answer the request line with a reply from the caller.
    Line(usize, String),
    None,
}

impl Server<UnixListener> {
    /// Binds `path` owner-only, replacing a stale socket file — but not a
    /// live one: a second daemon on the same path would take over its
    /// control socket and delete it on exit.
    pub fn bind(path: &Path, first_token: usize) -> io::Result<Control> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                "another ringvpn daemon answers there (stop it, or give this one `control = PATH`)",
            ));
        }
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let listener = crate::sys::with_private_umask(|| UnixListener::bind(path))?;
        Ok(Server::new(
            listener,
            Some(path.to_path_buf()),
            first_token,
            MAX_REQUEST_LEN,
            line_done,
        ))
    }
}

impl Server<TcpListener> {
    /// Listens for HTTP on `addr`.
    pub fn bind_http(addr: std::net::SocketAddr, first_token: usize) -> io::Result<Http> {
        let listener = TcpListener::bind(addr)?;
        Ok(Server::new(
            listener,
            None,
            first_token,
            MAX_HTTP_REQUEST,
            http_done,
        ))
    }
}

impl<L: Listen> Server<L> {
    fn new(
        listener: L,
        path: Option<PathBuf>,
        first_token: usize,
        max_request: usize,
        complete: fn(&[u8]) -> Option<String>,
    ) -> Server<L> {
        Server {
            listener,
            path,
            conns: Default::default(),
            first_token: first_token + 1,
            max_request,
            complete,
        }
    }

    pub fn listener(&mut self) -> &mut L {
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
            match self.listener.accept_one() {
                Ok(mut stream) => {
                    let token = Token(self.first_token + slot);
                    if registry
                        .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                        .is_ok()
                    {
                        self.conns[slot] = Some(Conn {
                            stream,
                            request: Vec::new(),
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
        let mut chunk = [0u8; 512];
        loop {
            if c.request.len() >= self.max_request {
                self.close(slot, registry);
                return Request::None;
            }
            let room = (self.max_request - c.request.len()).min(chunk.len());
            match c.stream.read(&mut chunk[..room]) {
                Ok(0) => {
                    self.close(slot, registry);
                    return Request::None;
                }
                Ok(n) => {
                    c.request.extend_from_slice(&chunk[..n]);
                    if let Some(line) = (self.complete)(&c.request) {
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

impl<L: Listen> Drop for Server<L> {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The HTTP answer to a request line: `GET /metrics` gets `body(None)`,
/// `GET /metrics/NAME` (a network's node, in sub-ring mode)
/// `body(Some(NAME))` — computed only then, `None` for no such network —
/// anything else a 404 or 405.
pub fn http_reply(line: &str, body: impl FnOnce(Option<&str>) -> Option<String>) -> String {
    let mut words = line.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let network = match target.strip_prefix("/metrics") {
        Some("") => Some(None),
        Some(rest) => rest.strip_prefix('/').filter(|n| !n.is_empty()).map(Some),
        None => None,
    };
    let found = match (method, network) {
        ("GET", Some(n)) => body(n),
        _ => None,
    };
    let (status, body, kind) = match (method, found) {
        ("GET", Some(b)) => ("200 OK", b, "text/plain; version=0.0.4; charset=utf-8"),
        ("GET", None) => (
            "404 Not Found",
            "not found: try /metrics (or /metrics/NAME for a network)\n".into(),
            "text/plain",
        ),
        _ => ("405 Method Not Allowed", "GET only\n".into(), "text/plain"),
    };
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}
