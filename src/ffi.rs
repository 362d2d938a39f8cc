//! The C API (`include/ringvpn.h`): a ringvpn node inside another program.
//!
//! Two levels, as the header explains to C programmers:
//!
//! 1. **The sans-IO core** (`rv_node_*`): the same `Node` the daemon and
//!    the simulator drive. The program owns sockets, the TAP (or whatever
//!    carries its frames) and the clock; it feeds datagrams, frames and
//!    timeouts in with `now` in microseconds from any origin it likes
//!    (monotonic), and drains datagrams to send, frames to deliver, events
//!    and the next deadline.
//! 2. **The daemon loop** (`rv_daemon_*`): the mio reactor of `ringvpn
//!    run` on a TAP fd and a UDP socket the program may pass in, blocking
//!    in `rv_daemon_run` until another thread calls `rv_daemon_stop`.
//!
//! Rules of the boundary: handles are opaque pointers; every call checks
//! its pointers and sizes and answers with an `RV_*` code (errors with a
//! message in the caller's `rv_error`); option structs start with their
//! own size and end with reserved fields, so later versions can grow them
//! without breaking programs built against this one. Nothing unwinds into
//! C: each entry point runs under `catch_unwind` and turns a panic into
//! `RV_ERR_PANIC` — in builds with `panic = "abort"` (the release profile)
//! a panic aborts the process instead, as it would the daemon.
//!
//! Built only with `--features ffi` (`cargo rustc --release --lib
//! --features ffi --crate-type staticlib`), so the daemon carries none of
//! it. docs/EMBEDDING.md is the guide.
#![allow(unsafe_code)]

use crate::buf::{PacketBuf, MAX_PAYLOAD};
use crate::config::Config;
use crate::node::{Event, Node};
use crate::time::Instant;
use crate::wire::endpoint::Endpoint;
use std::ffi::{c_char, c_int, CStr};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

mod daemon;
pub use daemon::*;

/// Bumped when a struct or call changes incompatibly (`RV_ABI_VERSION`).
pub const ABI_VERSION: u32 = 1;

pub const RV_OK: c_int = 0;
/// Nothing to drain (`rv_node_poll_*`, no deadline).
pub const RV_EMPTY: c_int = 1;
/// A null pointer, a wrong `struct_size`, a value out of range.
pub const RV_ERR_INVALID: c_int = -1;
/// The config text (the message names `NAME:LINE`).
pub const RV_ERR_CONFIG: c_int = -2;
/// The private key, certificate or CA files.
pub const RV_ERR_KEY: c_int = -3;
/// The caller's buffer is too small; the item stays for the next call
/// and `*len` says how much it needs.
pub const RV_ERR_TOO_SMALL: c_int = -4;
/// Opening or running the daemon (TAP, sockets, poll).
pub const RV_ERR_IO: c_int = -5;
/// A bug in ringvpn (caught, not unwound into C).
pub const RV_ERR_PANIC: c_int = -6;
/// A call out of order (`rv_daemon_run` twice).
pub const RV_ERR_STATE: c_int = -7;
/// The node's packet pool is exhausted: the input was dropped (counted).
pub const RV_ERR_FULL: c_int = -8;

/// The largest datagram or frame the node takes or gives.
pub const RV_MAX_PACKET: usize = MAX_PAYLOAD;

pub const RV_EVENT_ADDRESS_HELD: u32 = 1;
pub const RV_EVENT_ADDRESS_CONFLICT: u32 = 2;
pub const RV_EVENT_ROUTE_ADDED: u32 = 3;
pub const RV_EVENT_ROUTE_REMOVED: u32 = 4;

/// Which struct `rv_struct_size` measures (the header check).
pub const RV_STRUCT_ERROR: c_int = 1;
pub const RV_STRUCT_ENDPOINT: c_int = 2;
pub const RV_STRUCT_NODE_OPTIONS: c_int = 3;
pub const RV_STRUCT_EVENT: c_int = 4;
pub const RV_STRUCT_DAEMON_OPTIONS: c_int = 5;

const MESSAGE_LEN: usize = 256;

#[repr(C)]
pub struct RvError {
    pub code: i32,
    pub message: [c_char; MESSAGE_LEN],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct RvEndpoint {
    /// 4 or 6.
    pub family: u8,
    /// 1: a TCP endpoint (`tcp = on`); 0: UDP.
    pub tcp: u8,
    /// Host byte order.
    pub port: u16,
    /// IPv4 in the first four bytes.
    pub addr: [u8; 16],
    pub scope_id: u32,
}

#[repr(C)]
pub struct RvNodeOptions {
    pub struct_size: u32,
    pub reserved0: u32,
    pub config: *const c_char,
    pub config_name: *const c_char,
    pub private_key: *const c_char,
    pub endpoints: *const RvEndpoint,
    pub endpoints_len: usize,
    pub wall_clock_us: u64,
    pub random_seed: u64,
    pub reserved: [u64; 4],
}

#[repr(C)]
pub struct RvEvent {
    pub kind: u32,
    pub family: u8,
    pub prefix_len: u8,
    pub reserved0: u16,
    pub addr: [u8; 16],
    pub reserved: [u64; 2],
}

#[repr(C)]
pub struct RvDaemonOptions {
    pub struct_size: u32,
    pub reserved0: u32,
    pub config: *const c_char,
    pub config_name: *const c_char,
    pub private_key: *const c_char,
    pub tap_fd: i32,
    pub udp_fd: i32,
    pub reserved: [u64; 4],
}

/// `rv_node`: the core and what its calls need between them.
pub struct RvNode {
    node: Node,
    cfg: Config,
    /// A frame the caller had no room for (given again next time).
    held_frame: Option<PacketBuf>,
}

/// Runs an entry point; a panic becomes `RV_ERR_PANIC`.
fn guard(f: impl FnOnce() -> c_int) -> c_int {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(RV_ERR_PANIC)
}

/// Fills the caller's `rv_error` (if given) and returns `code`.
fn fail(err: *mut RvError, code: c_int, msg: &str) -> c_int {
    // SAFETY: the caller passes a valid rv_error or null.
    if let Some(e) = unsafe { err.as_mut() } {
        e.code = code;
        let n = msg.len().min(MESSAGE_LEN - 1);
        for (dst, &b) in e.message.iter_mut().zip(&msg.as_bytes()[..n]) {
            *dst = b as c_char;
        }
        e.message[n] = 0;
    }
    code
}

fn succeed(err: *mut RvError) -> c_int {
    fail(err, RV_OK, "")
}

/// A C string argument, or None when null or not UTF-8.
unsafe fn text<'a>(p: *const c_char) -> Option<&'a str> {
    if p.is_null() {
        return None;
    }
    CStr::from_ptr(p).to_str().ok()
}

fn endpoint_in(e: &RvEndpoint) -> Option<Endpoint> {
    let ip: IpAddr = match e.family {
        4 => Ipv4Addr::new(e.addr[0], e.addr[1], e.addr[2], e.addr[3]).into(),
        6 => Ipv6Addr::from(e.addr).into(),
        _ => return None,
    };
    let addr = match ip {
        IpAddr::V6(v6) => SocketAddr::V6(SocketAddrV6::new(v6, e.port, 0, e.scope_id)),
        v4 => SocketAddr::new(v4, e.port),
    };
    Some(match e.tcp {
        0 => Endpoint::udp(addr),
        _ => Endpoint::tcp(addr),
    })
}

fn endpoint_out(e: &Endpoint) -> RvEndpoint {
    let mut out = RvEndpoint {
        family: 4,
        tcp: u8::from(e.is_tcp()),
        port: e.addr.port(),
        addr: [0; 16],
        scope_id: 0,
    };
    match e.addr {
        SocketAddr::V4(a) => out.addr[..4].copy_from_slice(&a.ip().octets()),
        SocketAddr::V6(a) => {
            out.family = 6;
            out.addr = a.ip().octets();
            out.scope_id = a.scope_id();
        }
    }
    out
}

/// The caller's options struct, checked: not null, `out` not null, and
/// `struct_size` at least ours (a program built against an older header
/// passes a smaller one).
unsafe fn options<'a, T: HasSize>(
    opts: *const T,
    out_is_null: bool,
    name: &str,
    err: *mut RvError,
) -> Result<&'a T, c_int> {
    let (Some(o), false) = (opts.as_ref(), out_is_null) else {
        return Err(fail(err, RV_ERR_INVALID, "opts and out must not be null"));
    };
    if (o.struct_size() as usize) < std::mem::size_of::<T>() {
        let msg = format!("opts.struct_size: set it to sizeof({name})");
        return Err(fail(err, RV_ERR_INVALID, &msg));
    }
    Ok(o)
}

/// Option structs begin with their own size.
trait HasSize {
    fn struct_size(&self) -> u32;
}

impl HasSize for RvNodeOptions {
    fn struct_size(&self) -> u32 {
        self.struct_size
    }
}

impl HasSize for RvDaemonOptions {
    fn struct_size(&self) -> u32 {
        self.struct_size
    }
}

/// Config text (named `name` in messages) and the key, if given.
unsafe fn config_and_key(
    config: *const c_char,
    config_name: *const c_char,
    private_key: *const c_char,
    err: *mut RvError,
) -> Result<(Config, Option<crate::crypto::Seed>), c_int> {
    let Some(text_in) = text(config) else {
        return Err(fail(err, RV_ERR_INVALID, "config: null or not UTF-8"));
    };
    let name = text(config_name).unwrap_or("config");
    let cfg = crate::config::parse_embedded(Path::new(name), text_in)
        .map_err(|e| fail(err, RV_ERR_CONFIG, &e.to_string()))?;
    let key = match text(private_key) {
        Some(k) => Some(crate::config::parse_key(k).ok_or_else(|| {
            fail(
                err,
                RV_ERR_KEY,
                "private_key: not a key (base64 of 32 bytes, as `ringvpn genkey -` prints)",
            )
        })?),
        None if private_key.is_null() && cfg.key_file.as_os_str().is_empty() => {
            return Err(fail(
                err,
                RV_ERR_KEY,
                "no key: give private_key or `key = FILE` in [node]",
            ))
        }
        None if private_key.is_null() => None,
        None => return Err(fail(err, RV_ERR_INVALID, "private_key: not UTF-8")),
    };
    Ok((cfg, key))
}

// ---- version and header checks ----

/// The ABI version of this library (`RV_ABI_VERSION` of its header).
#[no_mangle]
pub extern "C" fn rv_abi_version() -> u32 {
    ABI_VERSION
}

/// The crate version, a static NUL-terminated string.
#[no_mangle]
pub extern "C" fn rv_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The library's size of one of the API's structs (`RV_STRUCT_*`), so a
/// program (and our test) can check its header matches; 0 if unknown.
#[no_mangle]
pub extern "C" fn rv_struct_size(which: c_int) -> usize {
    use std::mem::size_of;
    match which {
        RV_STRUCT_ERROR => size_of::<RvError>(),
        RV_STRUCT_ENDPOINT => size_of::<RvEndpoint>(),
        RV_STRUCT_NODE_OPTIONS => size_of::<RvNodeOptions>(),
        RV_STRUCT_EVENT => size_of::<RvEvent>(),
        RV_STRUCT_DAEMON_OPTIONS => size_of::<RvDaemonOptions>(),
        _ => 0,
    }
}

// ---- keys ----

/// The public key of a private key (`ringvpn pubkey`), base64 and NUL.
///
/// # Safety
/// `private_key` is a C string; `buf` writable for `cap`; `len` null or writable.
#[no_mangle]
pub unsafe extern "C" fn rv_key_public(
    private_key: *const c_char,
    buf: *mut c_char,
    cap: usize,
    len: *mut usize,
) -> c_int {
    guard(|| {
        let Some(seed) = text(private_key).and_then(crate::config::parse_key) else {
            return RV_ERR_KEY;
        };
        let public = crate::crypto::Identity::from_seed(&seed).public();
        copy_text(&public.to_base64(), buf, cap, len)
    })
}

/// A new private key from the OS's randomness (`ringvpn genkey -`).
///
/// # Safety
/// `buf` writable for `cap`; `len` null or writable.
#[no_mangle]
pub unsafe extern "C" fn rv_key_generate(buf: *mut c_char, cap: usize, len: *mut usize) -> c_int {
    guard(|| {
        let seed = crate::crypto::Seed::generate();
        copy_text(&crate::base64::encode(&seed.0), buf, cap, len)
    })
}

// ---- level 1: the sans-IO node ----

/// Creates a node from `opts` at time `now_us`.
///
/// # Safety
/// `opts` points to an initialised `rv_node_options`; `out` to a
/// writable `rv_node *`; `err` is null or writable.
#[no_mangle]
pub unsafe extern "C" fn rv_node_new(
    opts: *const RvNodeOptions,
    now_us: u64,
    out: *mut *mut RvNode,
    err: *mut RvError,
) -> c_int {
    guard(|| {
        let o = match options(opts, out.is_null(), "rv_node_options", err) {
            Ok(o) => o,
            Err(code) => return code,
        };
        let (mut cfg, key) = match config_and_key(o.config, o.config_name, o.private_key, err) {
            Ok(v) => v,
            Err(code) => return code,
        };
        let endpoints: Vec<Endpoint> = if o.endpoints.is_null() || o.endpoints_len == 0 {
            Vec::new()
        } else {
            let given = std::slice::from_raw_parts(o.endpoints, o.endpoints_len);
            match given.iter().map(endpoint_in).collect::<Option<Vec<_>>>() {
                Some(v) => v,
                None => return fail(err, RV_ERR_INVALID, "endpoints: family must be 4 or 6"),
            }
        };
        let now = Instant::from_micros(now_us);
        match crate::shell::embedded_node(
            &mut cfg,
            key,
            endpoints,
            o.wall_clock_us,
            o.random_seed,
            now,
        ) {
            Ok(node) => {
                *out = Box::into_raw(Box::new(RvNode {
                    node,
                    cfg,
                    held_frame: None,
                }));
                succeed(err)
            }
            Err(msg) => fail(err, RV_ERR_KEY, &msg),
        }
    })
}

/// Frees a node (null is allowed).
///
/// # Safety
/// `node` came from `rv_node_new` and is not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn rv_node_free(node: *mut RvNode) {
    if !node.is_null() {
        drop(Box::from_raw(node));
    }
}

/// Copies `s` and a NUL into `buf` (capacity `cap`); `*len` (if given)
/// is the length without the NUL, also when it did not fit.
unsafe fn copy_text(s: &str, buf: *mut c_char, cap: usize, len: *mut usize) -> c_int {
    if let Some(l) = len.as_mut() {
        *l = s.len();
    }
    if buf.is_null() || cap < s.len() + 1 {
        return RV_ERR_TOO_SMALL;
    }
    std::ptr::copy_nonoverlapping(s.as_ptr(), buf.cast::<u8>(), s.len());
    *buf.add(s.len()) = 0;
    RV_OK
}

/// The node's public key (base64, as `ringvpn pubkey` prints it).
///
/// # Safety
/// `node` is live; `buf` is writable for `cap` bytes; `len` null or writable.
#[no_mangle]
pub unsafe extern "C" fn rv_node_public_key(
    node: *const RvNode,
    buf: *mut c_char,
    cap: usize,
    len: *mut usize,
) -> c_int {
    guard(|| match node.as_ref() {
        Some(n) => copy_text(&n.node.public_key().to_base64(), buf, cap, len),
        None => RV_ERR_INVALID,
    })
}

/// Copies `data` into a pool buffer of the node; None when the pool is
/// empty (counted) or `data` is larger than a packet.
fn take_in(n: &mut RvNode, data: &[u8]) -> Result<PacketBuf, c_int> {
    if data.len() > MAX_PAYLOAD {
        return Err(RV_ERR_INVALID);
    }
    n.node.pool_mut().alloc_with(data).ok_or_else(|| {
        n.node.count_drop(crate::node::DropReason::PoolEmpty);
        RV_ERR_FULL
    })
}

/// A datagram that arrived from `from`.
///
/// # Safety
/// `node` is live; `from` valid; `data` readable for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn rv_node_handle_datagram(
    node: *mut RvNode,
    now_us: u64,
    from: *const RvEndpoint,
    data: *const u8,
    len: usize,
) -> c_int {
    guard(|| {
        let (Some(n), Some(from), false) = (node.as_mut(), from.as_ref(), data.is_null()) else {
            return RV_ERR_INVALID;
        };
        let Some(from) = endpoint_in(from) else {
            return RV_ERR_INVALID;
        };
        match take_in(n, std::slice::from_raw_parts(data, len)) {
            Ok(buf) => {
                n.node
                    .handle_datagram(Instant::from_micros(now_us), from, buf);
                RV_OK
            }
            Err(code) => code,
        }
    })
}

/// An Ethernet frame from the local side (what a TAP read would give).
///
/// # Safety
/// `node` is live; `frame` readable for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn rv_node_handle_frame(
    node: *mut RvNode,
    now_us: u64,
    frame: *const u8,
    len: usize,
) -> c_int {
    guard(|| {
        let (Some(n), false) = (node.as_mut(), frame.is_null()) else {
            return RV_ERR_INVALID;
        };
        match take_in(n, std::slice::from_raw_parts(frame, len)) {
            Ok(buf) => {
                n.node.handle_frame(Instant::from_micros(now_us), buf);
                RV_OK
            }
            Err(code) => code,
        }
    })
}

/// Runs what is due at `now_us` (call it at the deadline, or any time).
///
/// # Safety
/// `node` is live.
#[no_mangle]
pub unsafe extern "C" fn rv_node_handle_timeout(node: *mut RvNode, now_us: u64) -> c_int {
    guard(|| match node.as_mut() {
        Some(n) => {
            n.node.handle_timeout(Instant::from_micros(now_us));
            RV_OK
        }
        None => RV_ERR_INVALID,
    })
}

/// The next datagram to send: `RV_OK` with `*to` and `buf[..*len]`,
/// `RV_EMPTY`, or `RV_ERR_TOO_SMALL` (kept; `*len` is its size).
///
/// # Safety
/// `node` is live; `to` and `len` writable; `buf` writable for `cap` bytes.
#[no_mangle]
pub unsafe extern "C" fn rv_node_poll_transmit(
    node: *mut RvNode,
    to: *mut RvEndpoint,
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
) -> c_int {
    guard(|| {
        let (Some(n), Some(to), Some(len), false) =
            (node.as_mut(), to.as_mut(), len.as_mut(), buf.is_null())
        else {
            return RV_ERR_INVALID;
        };
        let Some(t) = n.node.poll_transmit() else {
            return RV_EMPTY;
        };
        let data = n.node.pool().data(&t.buf);
        *len = data.len();
        if data.len() > cap {
            n.node.unpoll_transmit(t);
            return RV_ERR_TOO_SMALL;
        }
        std::ptr::copy_nonoverlapping(data.as_ptr(), buf, data.len());
        *to = endpoint_out(&t.dst);
        n.node.pool_mut().free(t.buf);
        RV_OK
    })
}

/// The next Ethernet frame for the local side (a TAP write): as
/// `rv_node_poll_transmit`.
///
/// # Safety
/// `node` is live; `len` writable; `buf` writable for `cap` bytes.
#[no_mangle]
pub unsafe extern "C" fn rv_node_poll_frame(
    node: *mut RvNode,
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
) -> c_int {
    guard(|| {
        let (Some(n), Some(len), false) = (node.as_mut(), len.as_mut(), buf.is_null()) else {
            return RV_ERR_INVALID;
        };
        let Some(f) = n.held_frame.take().or_else(|| n.node.poll_frame()) else {
            return RV_EMPTY;
        };
        let data = n.node.pool().data(&f);
        *len = data.len();
        if data.len() > cap {
            n.held_frame = Some(f);
            return RV_ERR_TOO_SMALL;
        }
        std::ptr::copy_nonoverlapping(data.as_ptr(), buf, data.len());
        n.node.pool_mut().free(f);
        RV_OK
    })
}

/// The next event the program may act on (an address to put on its
/// interface, a route to add or remove), or `RV_EMPTY`. Events of calls
/// the C API does not offer are skipped.
///
/// # Safety
/// `node` is live; `ev` writable.
#[no_mangle]
pub unsafe extern "C" fn rv_node_poll_event(node: *mut RvNode, ev: *mut RvEvent) -> c_int {
    guard(|| {
        let (Some(n), Some(ev)) = (node.as_mut(), ev.as_mut()) else {
            return RV_ERR_INVALID;
        };
        while let Some(e) = n.node.poll_event() {
            let (kind, ip, len) = match e {
                Event::AddressHeld(ip) => (RV_EVENT_ADDRESS_HELD, IpAddr::V4(ip), 32),
                Event::AddressConflict { ip, .. } => {
                    (RV_EVENT_ADDRESS_CONFLICT, IpAddr::V4(ip), 32)
                }
                Event::RouteAdded(p) => (RV_EVENT_ROUTE_ADDED, p.addr, p.len),
                Event::RouteRemoved(p) => (RV_EVENT_ROUTE_REMOVED, p.addr, p.len),
                _ => continue,
            };
            *ev = RvEvent {
                kind,
                family: if ip.is_ipv4() { 4 } else { 6 },
                prefix_len: len,
                reserved0: 0,
                addr: [0; 16],
                reserved: [0; 2],
            };
            match ip {
                IpAddr::V4(v4) => ev.addr[..4].copy_from_slice(&v4.octets()),
                IpAddr::V6(v6) => ev.addr = v6.octets(),
            }
            return RV_OK;
        }
        RV_EMPTY
    })
}

/// When to call `rv_node_handle_timeout` next (`RV_EMPTY`: no deadline).
///
/// # Safety
/// `node` is live; `deadline_us` writable.
#[no_mangle]
pub unsafe extern "C" fn rv_node_next_deadline(
    node: *const RvNode,
    deadline_us: *mut u64,
) -> c_int {
    guard(|| {
        let (Some(n), Some(d)) = (node.as_ref(), deadline_us.as_mut()) else {
            return RV_ERR_INVALID;
        };
        match n.node.poll_timeout() {
            Some(t) => {
                *d = t.as_micros();
                RV_OK
            }
            None => RV_EMPTY,
        }
    })
}

/// `ringvpn status --json` of this node, NUL-terminated (`*len` without
/// the NUL; `RV_ERR_TOO_SMALL` says how much is needed).
///
/// # Safety
/// `node` is live; `buf` writable for `cap` bytes; `len` null or writable.
#[no_mangle]
pub unsafe extern "C" fn rv_node_status_json(
    node: *const RvNode,
    now_us: u64,
    buf: *mut c_char,
    cap: usize,
    len: *mut usize,
) -> c_int {
    guard(|| match node.as_ref() {
        Some(n) => {
            let json = crate::shell::embedded_status(&n.node, &n.cfg, Instant::from_micros(now_us));
            copy_text(&json, buf, cap, len)
        }
        None => RV_ERR_INVALID,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_problem_and_fit_the_buffer() {
        let mut e = RvError {
            code: 0,
            message: [1; MESSAGE_LEN],
        };
        let long = "x".repeat(1000);
        assert_eq!(fail(&mut e, RV_ERR_CONFIG, &long), RV_ERR_CONFIG);
        assert_eq!(e.code, RV_ERR_CONFIG);
        assert_eq!(e.message[MESSAGE_LEN - 1], 0);
        // SAFETY: test pointers.
        let r = unsafe { rv_node_new(std::ptr::null(), 0, std::ptr::null_mut(), &mut e) };
        assert_eq!(r, RV_ERR_INVALID);
    }

    #[test]
    fn endpoints_cross_the_boundary_unchanged() {
        for a in ["198.18.0.1:5140", "[2001:db8::1]:7"] {
            let ep = Endpoint::udp(a.parse().unwrap());
            assert_eq!(endpoint_in(&endpoint_out(&ep)), Some(ep));
        }
    }
}
