//! The TAP device's system calls: opening it, the virtio-net header and
//! offloads, and the vectored reads and writes that carry that header.

use super::{cvt, ifreq_for};
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Opens (creating if needed) the TAP device `name`, non-blocking, without
/// packet information headers; with `vnet`, every frame carries a
/// virtio-net header (`IFF_VNET_HDR`, then [`tap_vnet`]). Returns the fd and
/// the kernel's name for it.
pub fn tap_open(name: &str, vnet: bool) -> io::Result<(OwnedFd, String)> {
    // SAFETY: a NUL-terminated path literal and valid flags.
    let fd = cvt(unsafe {
        libc::open(
            c"/dev/net/tun".as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: fd was just returned by open and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut ifr = ifreq_for(name)?;
    let vnet_flag = if vnet { libc::IFF_VNET_HDR } else { 0 };
    ifr.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI | vnet_flag) as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes one ifreq, which outlives the call.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF as libc::Ioctl, &mut ifr) })?;
    // SAFETY: the kernel NUL-terminates ifr_name.
    let actual = unsafe { CStr::from_ptr(ifr.ifr_name.as_ptr()) };
    Ok((fd, actual.to_string_lossy().into_owned()))
}

/// Whether a TAP someone else opened carries virtio-net headers.
pub fn tap_has_vnet(fd: &OwnedFd) -> io::Result<bool> {
    // SAFETY: an all-zero ifreq is valid.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    // SAFETY: TUNGETIFF writes one ifreq, which outlives the call.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNGETIFF as libc::Ioctl, &mut ifr) })?;
    // SAFETY: TUNGETIFF filled ifru_flags.
    let flags = unsafe { ifr.ifr_ifru.ifru_flags };
    Ok(i32::from(flags) & libc::IFF_VNET_HDR != 0)
}

/// What the kernel agreed to hand a TAP with virtio-net headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapOffloads {
    /// Plain frames with complete checksums.
    None,
    /// Partial checksums and TCP super-frames.
    Tso,
    /// Those, and UDP super-frames (USO, Linux 6.2).
    TsoUso,
}

/// Sets up a TAP opened with `vnet`: the 10-byte header, little-endian on
/// every host (so a big-endian router reads it as the code does), and,
/// with `tso`, the offloads the kernel may use towards us.
pub fn tap_vnet(fd: &OwnedFd, tso: bool) -> io::Result<TapOffloads> {
    let raw = fd.as_raw_fd();
    let size: libc::c_int = crate::wire::vnet::LEN as libc::c_int;
    // SAFETY: both ioctls read one int, which outlives the call.
    cvt(unsafe { libc::ioctl(raw, libc::TUNSETVNETHDRSZ as libc::Ioctl, &size) })?;
    let le: libc::c_int = 1;
    // SAFETY: as above.
    cvt(unsafe { libc::ioctl(raw, libc::TUNSETVNETLE as libc::Ioctl, &le) })?;
    let set = |flags: libc::c_uint| {
        // SAFETY: TUNSETOFFLOAD takes its flags by value.
        cvt(unsafe {
            libc::ioctl(
                raw,
                libc::TUNSETOFFLOAD as libc::Ioctl,
                flags as libc::c_ulong,
            )
        })
    };
    if !tso {
        set(0)?;
        return Ok(TapOffloads::None);
    }
    let tcp = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | libc::TUN_F_TSO_ECN;
    if set(tcp | libc::TUN_F_USO4 | libc::TUN_F_USO6).is_ok() {
        return Ok(TapOffloads::TsoUso);
    }
    set(tcp)?;
    Ok(TapOffloads::Tso)
}

/// One `readv`: a TAP frame's virtio-net header, then the frame, spilling
/// into later buffers.
pub fn readv(fd: RawFd, bufs: &mut [io::IoSliceMut<'_>]) -> io::Result<usize> {
    // SAFETY: IoSliceMut is ABI-compatible with iovec; each is valid for writes.
    let n = unsafe { libc::readv(fd, bufs.as_ptr().cast(), bufs.len() as libc::c_int) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// One `writev`: a header and a frame, or a super-frame gathered from
/// several pool buffers.
pub fn writev(fd: RawFd, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: IoSlice is ABI-compatible with iovec; each is valid for reads.
    let n = unsafe { libc::writev(fd, bufs.as_ptr().cast(), bufs.len() as libc::c_int) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}
