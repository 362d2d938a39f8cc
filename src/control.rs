//! The local control protocol, client side.
//!
//! A Unix stream socket (owner-only) served by the daemon's reactor. The
//! client writes one request line and reads the reply until EOF. Requests:
//! `status` (text) and `status --json`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Longest request line the daemon accepts.
pub const MAX_REQUEST_LEN: usize = 128;

/// Sends `request` and returns the daemon's reply.
pub fn query(socket: &Path, request: &str) -> std::io::Result<String> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(request.as_bytes())?;
    s.write_all(b"\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}
