//! The TAP device: Ethernet frames to and from the kernel, with offloads.
//!
//! Without offloads a frame is one `read` into a pool buffer and one
//! `write` from it. With them the TAP is opened with `IFF_VNET_HDR` and
//! every frame carries a virtio-net header (`wire::vnet`):
//!
//! - **tap-tso**: the kernel hands over TCP (and, with USO, UDP)
//!   super-frames of up to 64 KiB. Each read is a `readv` into the
//!   header, a pool slot and, behind it, one 64 KiB buffer: a plain frame
//!   lands in the slot as before (zero copy), a super-frame spills over;
//!   its head is copied in front of the spill and `wire::tso` cuts it into
//!   pool buffers, one per segment, each handed to the node as if the TAP
//!   had given it. Partial checksums of plain frames are finished here.
//! - **tap-gro**: frames the node emits that continue one TCP flow
//!   (`wire::gro`) are gathered, and the run is written with one `writev`
//!   straight from their pool buffers (the first frame's headers rewritten
//!   in place, the others' payloads after it): one system call and one
//!   pass through the kernel's stack per run instead of per segment.
//!   Only frames emitted together are joined: nothing waits for a run.
//!
//! Each falls back to the plain path where the kernel (or an emulator)
//! refuses the ioctls, with the reason in `status`.

use super::udp::{Count, State};
use crate::buf::{PacketBuf, MAX_PAYLOAD};
use crate::config::Offload;
use crate::node::{DropReason, Node};
use crate::sys::{self, TapOffloads};
use crate::time::Instant;
use crate::wire::gro::{Run, Segment, MAX_FRAMES};
use crate::wire::tso::Plan;
use crate::wire::vnet::{self, Gso, VnetHdr};
use smallvec::SmallVec;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// What a super-frame may hold beyond the pool slot it starts in.
const SPILL: usize = 65_536 + 1024;

pub struct Tap {
    fd: OwnedFd,
    name: String,
    /// Frames carry a virtio-net header.
    vnet: bool,
    tso: State,
    /// The kernel may also hand over UDP super-frames.
    uso: bool,
    gro: State,
    /// Where super-frames are put together to be cut (TSO on): a slot's
    /// worth for the part that landed in the pool, then the spill.
    big: Vec<u8>,
    /// Free pool buffers a read needs before it starts: what the largest
    /// super-frame at this MTU is cut into.
    reserve: u32,
    /// The run being gathered, and its frames (the first keeps the headers).
    run: Option<Run>,
    run_bufs: SmallVec<[PacketBuf; MAX_FRAMES]>,
    /// Super-frames read, and the segments they were cut into.
    cut: Count,
    /// Runs written as one super-frame, and the frames in them.
    joined: Count,
}

impl Tap {
    /// Creates (or attaches to) `name` and configures it through ioctls.
    pub fn open(
        name: &str,
        mtu: u16,
        mac: [u8; 6],
        addr: Option<(std::net::Ipv4Addr, u8)>,
        offload: Offload,
    ) -> io::Result<Tap> {
        let mut tap = if offload.tap_tso || offload.tap_gro {
            // A kernel or emulator refusing the header's ioctls gets the
            // device reopened plain (closing it removes what we created).
            let vnet = sys::tap_open(name, true).and_then(|(fd, name)| {
                let kind = sys::tap_vnet(&fd, offload.tap_tso)?;
                Ok((fd, name, kind))
            });
            match vnet {
                Ok((fd, name, kind)) => Tap::with_vnet(fd, name, kind, offload, mtu),
                Err(e) => {
                    log::info!("TAP offloads not used: {e}");
                    let (fd, name) = sys::tap_open(name, false)?;
                    let why = State::Off("the kernel refused IFF_VNET_HDR");
                    Tap::plain(fd, name, why)
                }
            }
        } else {
            let (fd, name) = sys::tap_open(name, false)?;
            Tap::plain(fd, name, State::Off("offload setting"))
        };
        sys::configure_interface(&sys::IfConfig {
            name: &tap.name,
            mtu,
            mac,
            addr,
        })?;
        tap.name.shrink_to_fit();
        Ok(tap)
    }

    /// A TAP device a program embedding the daemon opened itself (the C
    /// API); `name` is its interface, configured here as ours are. Opened
    /// with `IFF_VNET_HDR`, its offloads are set up as ours would be.
    pub fn adopt(
        fd: OwnedFd,
        name: &str,
        mtu: u16,
        mac: [u8; 6],
        addr: Option<(std::net::Ipv4Addr, u8)>,
        offload: Offload,
    ) -> io::Result<Tap> {
        socket2::SockRef::from(&fd).set_nonblocking(true)?;
        sys::configure_interface(&sys::IfConfig {
            name,
            mtu,
            mac,
            addr,
        })?;
        if sys::tap_has_vnet(&fd)? {
            let kind = sys::tap_vnet(&fd, offload.tap_tso)?;
            Ok(Tap::with_vnet(fd, name.to_string(), kind, offload, mtu))
        } else {
            let why = State::Off("the TAP given has no IFF_VNET_HDR");
            Ok(Tap::plain(fd, name.to_string(), why))
        }
    }

    fn plain(fd: OwnedFd, name: String, why: State) -> Tap {
        Tap {
            fd,
            name,
            vnet: false,
            tso: why,
            uso: false,
            gro: why,
            big: Vec::new(),
            reserve: 0,
            run: None,
            run_bufs: SmallVec::new(),
            cut: Count::default(),
            joined: Count::default(),
        }
    }

    fn with_vnet(fd: OwnedFd, name: String, kind: TapOffloads, offload: Offload, mtu: u16) -> Tap {
        let tso = match (offload.tap_tso, kind) {
            (false, _) => State::Off("offload setting"),
            (true, TapOffloads::None) => State::Off("the kernel refused TUNSETOFFLOAD"),
            (true, _) => State::On,
        };
        let gro = match offload.tap_gro {
            true => State::On,
            false => State::Off("offload setting"),
        };
        // The smallest segment payload at this MTU (IPv6 and TCP with
        // options take the most header).
        let min_payload = u32::from(mtu).saturating_sub(40 + 60).max(256);
        Tap {
            fd,
            name,
            vnet: true,
            tso,
            uso: kind == TapOffloads::TsoUso,
            gro,
            big: if tso.on() {
                vec![0; MAX_PAYLOAD + SPILL]
            } else {
                Vec::new()
            },
            reserve: if tso.on() {
                65_536u32.div_ceil(min_payload)
            } else {
                0
            },
            run: None,
            run_bufs: SmallVec::new(),
            cut: Count::default(),
            joined: Count::default(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The offloads in use, for `status`.
    pub fn offloads(&self) -> String {
        // USO: the kernel also hands over UDP super-frames.
        let tso = if self.uso { "tso/uso" } else { "tso" };
        format!(
            "tap {tso} {}, tap gro {}",
            self.cut.describe_as(self.tso, "super-frames", "segments"),
            self.joined.describe_as(self.gro, "runs", "frames")
        )
    }

    /// Reads up to one batch of frames into the node. Returns whether the
    /// TAP may hold more.
    pub fn read_into(&mut self, node: &mut Node, now: Instant) -> bool {
        for _ in 0..sys::BATCH {
            let free = node.pool().capacity() - node.pool().in_use();
            if free < self.reserve {
                // A super-frame's segments must all find a buffer: flush first.
                return true;
            }
            let Some(buf) = node.pool_mut().alloc() else {
                node.count_drop(DropReason::PoolEmpty);
                return true;
            };
            match self.read_one(node, now, buf) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    }

    /// One read into `buf` (freed or handed on whatever happens).
    fn read_one(&mut self, node: &mut Node, now: Instant, mut buf: PacketBuf) -> io::Result<()> {
        let fd = self.fd.as_raw_fd();
        let mut hdr = [0u8; vnet::LEN];
        let space = node.pool_mut().space_mut(&buf);
        let cap = MAX_PAYLOAD.min(space.len());
        let read = if !self.vnet {
            sys::read(fd, &mut space[..cap])
        } else {
            // Without TSO there is no spill (an empty iovec takes nothing).
            let spill = self.big.get_mut(MAX_PAYLOAD..).unwrap_or_default();
            let mut iov = [
                IoSliceMut::new(&mut hdr),
                IoSliceMut::new(&mut space[..cap]),
                IoSliceMut::new(spill),
            ];
            sys::readv(fd, &mut iov).map(|n| n.saturating_sub(vnet::LEN))
        };
        let len = match read {
            Ok(n) => n,
            Err(e) => {
                node.pool_mut().free(buf);
                return Err(e);
            }
        };
        if !self.vnet {
            node.pool().set_len(&mut buf, len);
            node.handle_frame(now, buf);
            return Ok(());
        }
        let Ok(h) = VnetHdr::parse(&hdr) else {
            return drop_frame(node, buf, DropReason::BadFrame);
        };
        if h.gso == Gso::None {
            if len > cap {
                return drop_frame(node, buf, DropReason::BadFrame);
            }
            node.pool().set_len(&mut buf, len);
            if h.needs_csum() {
                let frame = node.pool_mut().data_mut(&buf);
                let (start, offset) = (usize::from(h.csum_start), usize::from(h.csum_offset));
                if vnet::complete_checksum(frame, start, offset).is_err() {
                    return drop_frame(node, buf, DropReason::BadFrame);
                }
            }
            node.handle_frame(now, buf);
            return Ok(());
        }
        if self.big.is_empty() {
            // A super-frame we never asked for.
            return drop_frame(node, buf, DropReason::BadFrame);
        }
        // Put the super-frame together: its head is in the slot, the rest spilled.
        let head = len.min(cap);
        self.big[MAX_PAYLOAD - head..MAX_PAYLOAD]
            .copy_from_slice(&node.pool_mut().space_mut(&buf)[..head]);
        let frame = &self.big[MAX_PAYLOAD - head..MAX_PAYLOAD - head + len];
        let segments = cut(node, now, buf, frame, &h);
        if segments > 0 {
            self.cut.add(segments);
        }
        Ok(())
    }

    /// Writes every frame the node has for the TAP, joining runs where
    /// tap-gro is on.
    pub fn write_from(&mut self, node: &mut Node) {
        while let Some(f) = node.poll_frame() {
            if !self.gro.on() {
                self.write_one(node, f);
                continue;
            }
            let seg = Segment::parse(node.pool().data(&f));
            if let (Some(run), Some(s)) = (self.run.as_mut(), seg.as_ref()) {
                let pool = node.pool();
                if run.join(pool.data(&self.run_bufs[0]), pool.data(&f), s) {
                    self.run_bufs.push(f);
                    if run.is_closed() {
                        self.write_run(node);
                    }
                    continue;
                }
            }
            self.write_run(node);
            match seg {
                Some(s) => {
                    let run = Run::new(s);
                    self.run_bufs.push(f);
                    self.run = Some(run);
                    if run.is_closed() {
                        self.write_run(node);
                    }
                }
                None => self.write_one(node, f),
            }
        }
        self.write_run(node);
    }

    fn write_one(&self, node: &mut Node, f: PacketBuf) {
        let frame = node.pool().data(&f);
        let wrote = if self.vnet {
            let hdr = IoSlice::new(&VnetHdr::PLAIN_BYTES);
            sys::writev(self.raw_fd(), &[hdr, IoSlice::new(frame)])
        } else {
            sys::write(self.raw_fd(), frame)
        };
        if wrote.is_err() {
            node.count_drop(DropReason::QueueFull);
        }
        node.pool_mut().free(f);
    }

    /// Writes the run gathered so far, if any, as one super-frame.
    fn write_run(&mut self, node: &mut Node) {
        let Some(run) = self.run.take() else {
            return;
        };
        let h = run.finish(node.pool_mut().data_mut(&self.run_bufs[0]));
        let mut hdr = [0u8; vnet::LEN];
        h.emit(&mut hdr);
        let start = run.payload_start();
        let pool = node.pool();
        let mut iov = [IoSlice::new(&[]); MAX_FRAMES + 1];
        iov[0] = IoSlice::new(&hdr);
        iov[1] = IoSlice::new(pool.data(&self.run_bufs[0]));
        for (slot, b) in iov[2..].iter_mut().zip(&self.run_bufs[1..]) {
            *slot = IoSlice::new(&pool.data(b)[start..]);
        }
        match sys::writev(self.fd.as_raw_fd(), &iov[..self.run_bufs.len() + 1]) {
            Ok(_) if run.frames() > 1 => self.joined.add(run.frames()),
            Ok(_) => {}
            Err(_) => {
                for _ in 0..run.frames() {
                    node.count_drop(DropReason::QueueFull);
                }
            }
        }
        for b in self.run_bufs.drain(..) {
            node.pool_mut().free(b);
        }
    }
}

fn drop_frame(node: &mut Node, buf: PacketBuf, why: DropReason) -> io::Result<()> {
    node.pool_mut().free(buf);
    node.count_drop(why);
    Ok(())
}

/// Cuts a super-frame into pool buffers (the first is `first`) and hands
/// each to the node. Returns the segments made.
fn cut(node: &mut Node, now: Instant, first: PacketBuf, frame: &[u8], h: &VnetHdr) -> usize {
    let plan = match Plan::parse(frame, h) {
        Ok(p) if p.max_segment_len() <= MAX_PAYLOAD => p,
        _ => {
            let _ = drop_frame(node, first, DropReason::BadFrame);
            return 0;
        }
    };
    let mut next = Some(first);
    for i in 0..plan.count() {
        let Some(mut buf) = next.take().or_else(|| node.pool_mut().alloc()) else {
            // The reserve makes this rare; TCP resends what is lost.
            node.count_drop(DropReason::PoolEmpty);
            return i;
        };
        let n = plan.write_segment(frame, i, node.pool_mut().space_mut(&buf));
        node.pool().set_len(&mut buf, n);
        node.handle_frame(now, buf);
    }
    plan.count()
}
