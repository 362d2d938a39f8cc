//! The TAP device: Ethernet frames to and from the kernel.

use crate::sys;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

pub struct Tap {
    fd: OwnedFd,
    name: String,
}

impl Tap {
    /// Creates (or attaches to) `name` and configures it through ioctls.
    pub fn open(
        name: &str,
        mtu: u16,
        mac: [u8; 6],
        addr: Option<(std::net::Ipv4Addr, u8)>,
    ) -> io::Result<Tap> {
        let (fd, name) = sys::tap_open(name)?;
        sys::configure_interface(&sys::IfConfig {
            name: &name,
            mtu,
            mac,
            addr,
        })?;
        Ok(Tap { fd, name })
    }

    /// A TAP device a program embedding the daemon opened itself (the C
    /// API); `name` is its interface, configured here as ours are.
    pub fn adopt(
        fd: OwnedFd,
        name: &str,
        mtu: u16,
        mac: [u8; 6],
        addr: Option<(std::net::Ipv4Addr, u8)>,
    ) -> io::Result<Tap> {
        socket2::SockRef::from(&fd).set_nonblocking(true)?;
        sys::configure_interface(&sys::IfConfig {
            name,
            mtu,
            mac,
            addr,
        })?;
        Ok(Tap {
            fd,
            name: name.to_string(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        sys::read(self.fd.as_raw_fd(), buf)
    }

    pub fn write(&self, frame: &[u8]) -> io::Result<usize> {
        sys::write(self.fd.as_raw_fd(), frame)
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
