//! The local control protocol, client side.
//!
//! A Unix stream socket (owner-only) served by the daemon's reactor. The
//! client writes one request line and reads the reply until EOF. Requests:
//! `status` (text), `status --json`, `ring-ping <addr> <nonce>` (start a
//! routed echo to a ring address) and `ring-result <nonce>` (`hops H rtt_ms
//! R`, or `pending`).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Longest request line the daemon accepts (with a network's `@NAME`).
pub const MAX_REQUEST_LEN: usize = 192;

/// `request` for network `network`'s node in a daemon that runs
/// networks (sub-ring mode: `@NAME request`), or for the daemon's own.
pub fn scoped(network: Option<&str>, request: &str) -> String {
    match network {
        Some(n) => format!("@{n} {request}"),
        None => request.to_string(),
    }
}

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

/// Sends a routed echo to ring address `addr` (32 hex digits) through the
/// daemon at `socket` and waits up to `timeout` for the answer.
/// Returns (hops, round-trip milliseconds).
pub fn ring_ping(
    socket: &Path,
    network: Option<&str>,
    addr: &str,
    timeout: Duration,
) -> std::io::Result<(u32, f64)> {
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let started = query(
        socket,
        &scoped(network, &format!("ring-ping {addr} {nonce}")),
    )?;
    if started.trim() != "ok" {
        return Err(std::io::Error::other(started.trim().to_string()));
    }
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        let r = query(socket, &scoped(network, &format!("ring-result {nonce}")))?;
        let w: Vec<&str> = r.split_whitespace().collect();
        if let ["hops", h, "rtt_ms", ms] = w.as_slice() {
            let hops = h.parse().map_err(std::io::Error::other)?;
            let ms = ms.parse().map_err(std::io::Error::other)?;
            return Ok((hops, ms));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no answer from {addr}"),
    ))
}

/// A pong as the daemon reports it.
pub struct PingReply {
    pub name: String,
    pub ms: f64,
    /// "direct", "relayed" or "overlay".
    pub path: String,
    /// The relay's name ("-": none).
    pub relay: String,
    pub hops: u32,
}

/// One `ringvpn ping`: a ping to the member `target` names, on its
/// current path; `None` when no pong came within `timeout`.
pub fn ping_member(
    socket: &Path,
    network: Option<&str>,
    target: &str,
    timeout: Duration,
) -> std::io::Result<Option<PingReply>> {
    let started = query(socket, &scoped(network, &format!("ping-start {target}")))?;
    let Some(key) = started.trim().strip_prefix("key ") else {
        return Err(std::io::Error::other(
            started.trim().trim_start_matches("error: ").to_string(),
        ));
    };
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        let r = query(socket, &scoped(network, &format!("ping-result {key}")))?;
        let w: Vec<&str> = r.split_whitespace().collect();
        if let ["pong", name, ms, path, relay, hops] = w.as_slice() {
            let ms = ms.parse().map_err(std::io::Error::other)?;
            let hops = hops.parse().map_err(std::io::Error::other)?;
            return Ok(Some(PingReply {
                name: name.to_string(),
                ms,
                path: path.to_string(),
                relay: relay.to_string(),
                hops,
            }));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(None)
}

/// Runs a task (`stats`, `check`, `find QUERY`, `crawl`, `crawl
/// --sequential`) through the daemon at `socket` and returns its rendered
/// result (`format`: "" for text, "--json" or, for a crawl, "--svg"),
/// waiting up to `timeout` (the task's own budget bounds it).
pub fn net_task(
    socket: &Path,
    network: Option<&str>,
    task: &str,
    format: &str,
    timeout: Duration,
) -> std::io::Result<String> {
    let started = query(socket, &scoped(network, &format!("net-start {task}")))?;
    let Some(id) = started.trim().strip_prefix("task ") else {
        return Err(std::io::Error::other(started.trim().to_string()));
    };
    let ask = format!("net-result {id} {format}");
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        let r = query(socket, &scoped(network, &ask))?;
        if r.trim() != "pending" {
            return Ok(r);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "the task did not finish",
    ))
}
