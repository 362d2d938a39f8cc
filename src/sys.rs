//! The OS glue: every `unsafe` block of the crate lives here.
//!
//! TAP creation and interface configuration by ioctl (no `ip` binary
//! needed on a router), batched datagram I/O with recvmmsg/sendmmsg, a
//! signalfd for SIGINT/SIGTERM and the umask around the control socket.
//! Every wrapper returns `io::Result` and checks its lengths.
#![allow(unsafe_code)]

use crate::buf::{PacketBuf, Pool};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

mod tap;
mod udp_offload;
use std::path::Path;
pub use tap::*;
pub use udp_offload::*;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn ifreq_for(name: &str) -> io::Result<libc::ifreq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface name {name:?} must be 1 to 15 bytes"),
        ));
    }
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(ifr)
}

/// A socket for interface ioctls.
fn ctl_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call.
    let fd = cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: fresh fd, owned here.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn if_ioctl(sock: &OwnedFd, req: libc::c_ulong, ifr: &mut libc::ifreq) -> io::Result<()> {
    // SAFETY: each SIOC*IF* request used here reads/writes exactly one ifreq.
    cvt(unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            req as libc::Ioctl,
            ifr as *mut libc::ifreq,
        )
    })?;
    Ok(())
}

fn sockaddr_v4(ip: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(ip.octets()),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size on Linux; the
    // kernel reads the family to interpret it.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

fn set_ipv4(sock: &OwnedFd, ifr: &mut libc::ifreq, ip: Ipv4Addr, prefix: u8) -> io::Result<()> {
    ifr.ifr_ifru.ifru_addr = sockaddr_v4(ip);
    if_ioctl(sock, libc::SIOCSIFADDR, ifr)?;
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    };
    ifr.ifr_ifru.ifru_netmask = sockaddr_v4(Ipv4Addr::from(mask));
    if_ioctl(sock, libc::SIOCSIFNETMASK, ifr)
}

/// Gives interface `name` the IPv4 address `ip/prefix` (an address
/// claimed after start-up).
pub fn add_ipv4(name: &str, ip: Ipv4Addr, prefix: u8) -> io::Result<()> {
    let sock = ctl_socket()?;
    let mut ifr = ifreq_for(name)?;
    set_ipv4(&sock, &mut ifr, ip, prefix)
}

/// Interface settings applied at start-up.
pub struct IfConfig<'a> {
    pub name: &'a str,
    pub mtu: u16,
    pub mac: [u8; 6],
    pub addr: Option<(Ipv4Addr, u8)>,
}

/// Sets MAC, MTU, IPv4 address and prefix, and brings the link up.
pub fn configure_interface(c: &IfConfig<'_>) -> io::Result<()> {
    let sock = ctl_socket()?;
    let mut ifr = ifreq_for(c.name)?;
    // SAFETY (union writes below): each write sets the member the request reads.
    let mut hw: libc::sockaddr = unsafe { std::mem::zeroed() };
    hw.sa_family = libc::ARPHRD_ETHER;
    for (d, s) in hw.sa_data.iter_mut().zip(c.mac) {
        *d = s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_hwaddr = hw;
    if_ioctl(&sock, libc::SIOCSIFHWADDR, &mut ifr)?;
    ifr.ifr_ifru.ifru_mtu = libc::c_int::from(c.mtu);
    if_ioctl(&sock, libc::SIOCSIFMTU, &mut ifr)?;
    if let Some((ip, prefix)) = c.addr {
        set_ipv4(&sock, &mut ifr, ip, prefix)?;
    }
    if_ioctl(&sock, libc::SIOCGIFFLAGS, &mut ifr)?;
    // SAFETY: SIOCGIFFLAGS filled ifru_flags.
    let flags = unsafe { ifr.ifr_ifru.ifru_flags };
    ifr.ifr_ifru.ifru_flags = flags | (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    if_ioctl(&sock, libc::SIOCSIFFLAGS, &mut ifr)
}

pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is valid for writes of buf.len() bytes.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

pub fn write(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: buf is valid for reads of buf.len() bytes.
    let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Datagrams per recvmmsg/sendmmsg call. 32 amortises the syscall well past
/// the point of diminishing returns while keeping the batch in L1/L2.
pub const BATCH: usize = 32;

/// Scratch arrays for one batched syscall, allocated once.
pub struct MsgBatch {
    hdrs: [libc::mmsghdr; BATCH],
    iovs: [libc::iovec; BATCH],
    addrs: [libc::sockaddr_storage; BATCH],
}

impl MsgBatch {
    pub fn new() -> Box<MsgBatch> {
        // SAFETY: all three are plain C structs/pointers; zero is valid
        // (null pointers are never dereferenced before being set).
        Box::new(unsafe { std::mem::zeroed() })
    }
}

impl MsgBatch {
    /// Points iovec `i` at `len` bytes at `base`, and header `i` at
    /// address slot `i` and that iovec.
    fn point(&mut self, i: usize, base: *mut libc::c_void, len: usize, namelen: libc::socklen_t) {
        self.iovs[i] = libc::iovec {
            iov_base: base,
            iov_len: len,
        };
        header(
            &mut self.hdrs[i],
            &mut self.addrs[i],
            namelen,
            (&mut self.iovs[i], 1),
            (std::ptr::null_mut(), 0),
        );
    }
}

/// Points one mmsghdr at its address, iovecs and control buffer.
fn header(
    h: &mut libc::mmsghdr,
    addr: &mut libc::sockaddr_storage,
    namelen: libc::socklen_t,
    (iov, iovlen): (*mut libc::iovec, usize),
    (control, controllen): (*mut u8, usize),
) {
    h.msg_hdr.msg_name = (addr as *mut libc::sockaddr_storage).cast();
    h.msg_hdr.msg_namelen = namelen;
    h.msg_hdr.msg_iov = iov;
    h.msg_hdr.msg_iovlen = iovlen as _;
    h.msg_hdr.msg_control = control.cast();
    h.msg_hdr.msg_controllen = controllen as _;
    h.msg_hdr.msg_flags = 0;
    h.msg_len = 0;
}

/// recvmmsg(2) into headers set up by [`header`], without blocking.
///
/// # Safety
/// Each header must point at live iovecs, an address and a control buffer,
/// each valid for writes of the length it gives.
unsafe fn recv_mmsg(fd: RawFd, hdrs: &mut [libc::mmsghdr]) -> io::Result<usize> {
    // SAFETY: the caller's promise.
    let got = cvt(unsafe {
        libc::recvmmsg(
            fd,
            hdrs.as_mut_ptr(),
            hdrs.len() as libc::c_uint,
            libc::MSG_DONTWAIT as _,
            std::ptr::null_mut(),
        )
    })?;
    Ok(got as usize)
}

fn to_std(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: family says this storage holds a sockaddr_in.
            let a = unsafe { &*(ss as *const _ as *const libc::sockaddr_in) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(a.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: family says this storage holds a sockaddr_in6.
            let a = unsafe { &*(ss as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                a.sin6_addr.s6_addr.into(),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

fn from_std(addr: &SocketAddr, ss: &mut libc::sockaddr_storage) -> libc::socklen_t {
    let sa = socket2::SockAddr::from(*addr);
    let len = sa.len() as usize;
    // SAFETY: SockAddr holds at most a sockaddr_storage; we copy `len` bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(
            sa.as_ptr().cast::<u8>(),
            (ss as *mut libc::sockaddr_storage).cast::<u8>(),
            len,
        );
    }
    len as libc::socklen_t
}

/// Receives up to `bufs.len()` datagrams into the spaces of pool buffers
/// `bufs` (distinct slots: the pool lends them all at once, and `&mut`
/// on the pool keeps anything else off them during the call). Fills
/// `lens` and `froms`; returns how many datagrams arrived.
pub fn recv_batch(
    fd: RawFd,
    batch: &mut MsgBatch,
    pool: &mut Pool,
    bufs: &[PacketBuf],
    lens: &mut [usize],
    froms: &mut [Option<SocketAddr>],
) -> io::Result<usize> {
    let mut spaces: smallvec::SmallVec<[(*mut u8, usize); BATCH]> = smallvec::SmallVec::new();
    pool.spaces_raw(&bufs[..bufs.len().min(BATCH)], &mut spaces);
    if spaces.len() < bufs.len().min(BATCH) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not this pool's buffers",
        ));
    }
    let n = spaces.len().min(lens.len()).min(froms.len());
    let namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    for (i, &(ptr, cap)) in spaces.iter().take(n).enumerate() {
        batch.point(i, ptr.cast(), cap, namelen);
    }
    // SAFETY: hdrs[..n] point at addresses inside `batch` and at pool
    // slots, each valid for writes of its capacity (`spaces_raw` checked
    // them against the slab, which `&mut Pool` keeps in place).
    let got = unsafe { recv_mmsg(fd, &mut batch.hdrs[..n]) }?;
    for i in 0..got {
        let h = &batch.hdrs[i];
        // A truncated datagram is larger than any message we accept: flag it
        // with a length past the buffer so the caller counts a drop.
        lens[i] = if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
            usize::MAX
        } else {
            h.msg_len as usize
        };
        froms[i] = to_std(&batch.addrs[i]);
    }
    Ok(got)
}

/// Blocks SIGINT, SIGTERM and SIGHUP for this thread and returns a
/// non-blocking signalfd that becomes readable when one arrives:
/// shutdown and reload become ordinary reactor events.
pub fn termination_signalfd() -> io::Result<OwnedFd> {
    // SAFETY: sigset manipulation on a local, zeroed set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        cvt(libc::pthread_sigmask(
            libc::SIG_BLOCK,
            &set,
            std::ptr::null_mut(),
        ))?;
        let fd = cvt(libc::signalfd(
            -1,
            &set,
            libc::SFD_NONBLOCK | libc::SFD_CLOEXEC,
        ))?;
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// Reads one pending signal from a signalfd, if any.
pub fn read_signal(fd: RawFd) -> Option<u32> {
    // SAFETY: signalfd_siginfo is plain data; read fills at most its size.
    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    let want = std::mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: &mut info is valid for `want` bytes.
    let n = unsafe { libc::read(fd, (&mut info as *mut libc::signalfd_siginfo).cast(), want) };
    (n as usize == want).then_some(info.ssi_signo)
}

/// Runs `f` with the umask set to 077, so files it creates (the control
/// socket) are owner-only from the first instant.
pub fn with_private_umask<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: umask cannot fail; the old value is restored below.
    let old = unsafe { libc::umask(0o077) };
    let r = f();
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    r
}

/// Gives the heap's free pages back to the kernel (glibc keeps freed
/// memory for reuse otherwise): the simulator measures what its nodes
/// hold, not the peak of a mass join. A no-op off glibc.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// An address configured on one of this host's interfaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceAddress {
    pub interface: String,
    pub ip: std::net::IpAddr,
    pub up: bool,
    pub loopback: bool,
}

/// Every address configured on this host's interfaces (getifaddrs).
pub fn interface_addresses() -> Vec<InterfaceAddress> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        let ip = if ifa.ifa_addr.is_null() {
            None
        } else {
            // SAFETY: ifa_addr points to a sockaddr whose family says its type.
            let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
            if family == libc::AF_INET {
                // SAFETY: an AF_INET address is a sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                Some(std::net::IpAddr::V4(Ipv4Addr::from(u32::from_be(
                    sin.sin_addr.s_addr,
                ))))
            } else if family == libc::AF_INET6 {
                // SAFETY: an AF_INET6 address is a sockaddr_in6.
                let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                Some(std::net::IpAddr::V6(std::net::Ipv6Addr::from(
                    sin6.sin6_addr.s6_addr,
                )))
            } else {
                None
            }
        };
        if let Some(ip) = ip {
            // SAFETY: ifa_name is a NUL-terminated string owned by the list.
            let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
            let flags = ifa.ifa_flags as libc::c_int;
            out.push(InterfaceAddress {
                interface: name.to_string_lossy().into_owned(),
                ip,
                up: flags & libc::IFF_UP != 0,
                loopback: flags & libc::IFF_LOOPBACK != 0,
            });
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: the list came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    out
}

/// A netlink socket that becomes readable when an interface address is
/// added or removed (IPv4 or IPv6). What the messages say is not read:
/// they only tell the shell to look at the addresses again.
pub fn address_change_socket() -> io::Result<OwnedFd> {
    netlink_socket(
        (libc::RTMGRP_IPV4_IFADDR | libc::RTMGRP_IPV6_IFADDR) as u32,
        true,
    )
}

/// A blocking rtnetlink socket for requests (routes, rules): the kernel
/// answers each at once.
pub fn netlink_request_socket() -> io::Result<OwnedFd> {
    netlink_socket(0, false)
}

fn netlink_socket(groups: u32, nonblocking: bool) -> io::Result<OwnedFd> {
    let flags = if nonblocking { libc::SOCK_NONBLOCK } else { 0 };
    // SAFETY: plain socket(2); the fd is owned by the OwnedFd below.
    let fd = cvt(unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | flags | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    })?;
    // SAFETY: fd is a fresh descriptor we own.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_nl is plain data; zeroed is a valid start.
    let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    sa.nl_groups = groups;
    // SAFETY: &sa is a valid sockaddr_nl of the size passed.
    cvt(unsafe {
        libc::bind(
            fd,
            (&sa as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    })?;
    Ok(owned)
}

/// The index of interface `name`.
pub fn ifindex(name: &str) -> io::Result<u32> {
    let c =
        std::ffi::CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: c is a valid NUL-terminated string.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(io::Error::last_os_error()),
        i => Ok(i),
    }
}

/// This process's resident set in bytes (/proc/self/statm).
pub fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

/// A non-blocking eventfd (the embedded daemon's stop signal).
pub fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain eventfd(2) call.
    let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
    // SAFETY: fresh fd, owned here.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds one to an eventfd (async-signal-safe: a single write).
pub fn signal_eventfd(fd: RawFd) -> io::Result<()> {
    write(fd, &1u64.to_ne_bytes()).map(|_| ())
}

/// Reads an eventfd's counter; true when it was non-zero.
pub fn drain_eventfd(fd: RawFd) -> bool {
    let mut count = [0u8; 8];
    read(fd, &mut count).is_ok_and(|n| n == 8) && count != [0; 8]
}

/// Reads and discards everything queued on a non-blocking socket.
/// Returns whether anything was there (an overrun counts: something
/// changed, we just do not know what).
pub fn drain(fd: RawFd) -> bool {
    let mut any = false;
    let mut scratch = [0u8; 4096];
    loop {
        // SAFETY: scratch is valid for its length.
        let n = unsafe { libc::recv(fd, scratch.as_mut_ptr().cast(), scratch.len(), 0) };
        if n > 0 {
            any = true;
            continue;
        }
        if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOBUFS) {
            any = true;
            continue;
        }
        return any;
    }
}

/// The effective user id (tests and the lab check for root).
pub fn euid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// Sends `sig` to the process `pid` (the lab ends only what it started).
pub fn kill(pid: u32, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: plain kill(2); pid comes from a Child we spawned.
    cvt(unsafe { libc::kill(pid as libc::pid_t, sig) }).map(|_| ())
}

/// setsockopt for an int-valued option.
pub fn set_int_sockopt(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: passes a pointer to a live c_int and its exact size.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Makes SIGINT/SIGTERM set a flag instead of killing the process, so a
/// tool (the lab) can clean up. Only async-signal-safe work in the handler.
pub fn catch_interrupts() {
    let handler = on_interrupt as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: installs a handler that only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

/// Whether SIGINT/SIGTERM arrived since [`catch_interrupts`].
pub fn interrupted() -> bool {
    INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst)
}

/// Replaces this process with `program args…`; returns only on failure.
pub fn exec(program: &Path, args: &[String]) -> io::Error {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let Ok(prog) = CString::new(program.as_os_str().as_bytes()) else {
        return io::Error::new(io::ErrorKind::InvalidInput, "NUL in program path");
    };
    let mut owned = vec![prog.clone()];
    for a in args {
        match CString::new(a.as_bytes()) {
            Ok(c) => owned.push(c),
            Err(_) => return io::Error::new(io::ErrorKind::InvalidInput, "NUL in argument"),
        }
    }
    let mut argv: Vec<*const libc::c_char> = owned.iter().map(|c| c.as_ptr()).collect();
    argv.push(std::ptr::null());
    // SAFETY: argv is a NULL-terminated array of pointers to live C strings.
    unsafe { libc::execv(prog.as_ptr(), argv.as_ptr()) };
    io::Error::last_os_error()
}

/// Whether this CPU has the instructions ring's AES-GCM runs fast with
/// (AES-NI and carry-less multiply on x86, AES and PMULL on ARMv8). Other
/// CPUs seal with table-driven AES at a fraction of ChaCha20's speed.
pub fn hardware_aes() -> bool {
    #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "x86", target_arch = "aarch64")))]
    {
        false
    }
}
