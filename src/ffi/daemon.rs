//! Level 2 of the C API: the daemon loop (`rv_daemon_*`) on a TAP fd and a
//! UDP socket the program may hand over — `ringvpn run` inside a C
//! program. Level 1, the sans-IO node, and the shared helpers are in
//! `ffi.rs`.

use super::{
    config_and_key, fail, guard, options, succeed, RvDaemonOptions, RvError, RV_ERR_INVALID,
    RV_ERR_IO, RV_ERR_STATE, RV_OK,
};
use std::ffi::c_int;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `rv_daemon`: the set-up loop until `rv_daemon_run` takes it, and the
/// eventfd `rv_daemon_stop` writes (read-only after creation, so another
/// thread may use it while `run` blocks).
pub struct RvDaemon {
    stop_fd: OwnedFd,
    daemon: Option<crate::shell::Embedded>,
}

/// Sets up the daemon's loop: the TAP fd and UDP socket given (each -1:
/// opened from the config as `ringvpn run` would), taking ownership of
/// them. The process's signals stay the program's.
///
/// # Safety
/// `opts` points to an initialised `rv_daemon_options`; `out` writable;
/// `err` null or writable; fds given are open and not used elsewhere.
#[no_mangle]
pub unsafe extern "C" fn rv_daemon_new(
    opts: *const RvDaemonOptions,
    out: *mut *mut RvDaemon,
    err: *mut RvError,
) -> c_int {
    guard(|| {
        let o = match options(opts, out.is_null(), "rv_daemon_options", err) {
            Ok(o) => o,
            Err(code) => return code,
        };
        let (cfg, key) = match config_and_key(o.config, o.config_name, o.private_key, err) {
            Ok(v) => v,
            Err(code) => return code,
        };
        let own = |fd: i32| (fd >= 0).then(|| OwnedFd::from_raw_fd(fd));
        let (tap, udp) = (own(o.tap_fd), own(o.udp_fd));
        let stop = match crate::sys::eventfd() {
            Ok(fd) => fd,
            Err(e) => return fail(err, RV_ERR_IO, &format!("eventfd: {e}")),
        };
        let stop_fd = match stop.try_clone() {
            Ok(fd) => fd,
            Err(e) => return fail(err, RV_ERR_IO, &format!("eventfd: {e}")),
        };
        let embed = crate::shell::Embedding {
            key,
            tap,
            udp,
            stop: Some(stop),
        };
        match crate::shell::Embedded::setup(cfg, embed) {
            Ok(d) => {
                *out = Box::into_raw(Box::new(RvDaemon {
                    stop_fd,
                    daemon: Some(d),
                }));
                succeed(err)
            }
            Err(msg) => fail(err, RV_ERR_IO, &msg),
        }
    })
}

/// Runs the loop on this thread until `rv_daemon_stop` (then `RV_OK`) or
/// a fatal error. Once per daemon.
///
/// # Safety
/// `daemon` is live; `err` null or writable. Other threads may call only
/// `rv_daemon_stop` on it meanwhile.
#[no_mangle]
pub unsafe extern "C" fn rv_daemon_run(daemon: *mut RvDaemon, err: *mut RvError) -> c_int {
    guard(|| {
        if daemon.is_null() {
            return fail(err, RV_ERR_INVALID, "daemon is null");
        }
        // Only the `daemon` field is touched (no reference to the whole
        // struct): `rv_daemon_stop` reads `stop_fd` concurrently.
        let slot = std::ptr::addr_of_mut!((*daemon).daemon);
        let Some(d) = (*slot).take() else {
            return fail(err, RV_ERR_STATE, "rv_daemon_run: already run");
        };
        match d.run() {
            Ok(()) => succeed(err),
            Err(msg) => fail(err, RV_ERR_IO, &msg),
        }
    })
}

/// Asks the loop to stop; safe from any thread and from a signal handler
/// (one write to an eventfd). `rv_daemon_run` returns soon after.
///
/// # Safety
/// `daemon` is live (not yet freed).
#[no_mangle]
pub unsafe extern "C" fn rv_daemon_stop(daemon: *const RvDaemon) -> c_int {
    if daemon.is_null() {
        return RV_ERR_INVALID;
    }
    let fd = (*std::ptr::addr_of!((*daemon).stop_fd)).as_raw_fd();
    match crate::sys::signal_eventfd(fd) {
        Ok(()) => RV_OK,
        Err(_) => RV_ERR_IO,
    }
}

/// Frees a daemon after `rv_daemon_run` returned (or instead of running
/// it): its TAP, sockets and routes go with it.
///
/// # Safety
/// `daemon` came from `rv_daemon_new`; no thread uses it any more.
#[no_mangle]
pub unsafe extern "C" fn rv_daemon_free(daemon: *mut RvDaemon) {
    if !daemon.is_null() {
        drop(Box::from_raw(daemon));
    }
}
