//! The slab pool and its packet handles.

use super::{HEADROOM, SLOT_LEN};

/// A packet held in a [`Pool`] slot: the bytes `head..tail` of the slot.
///
/// Deliberately not `Clone`/`Copy`: a handle is owned by exactly one queue at
/// a time and must be given back with [`Pool::free`].
#[derive(Debug, PartialEq, Eq)]
pub struct PacketBuf {
    slot: u32,
    head: u16,
    tail: u16,
}

impl PacketBuf {
    pub fn len(&self) -> usize {
        usize::from(self.tail - self.head)
    }

    pub fn is_empty(&self) -> bool {
        self.head == self.tail
    }

    /// Free bytes in front of the payload.
    pub fn headroom(&self) -> usize {
        usize::from(self.head)
    }

    pub fn slot(&self) -> u32 {
        self.slot
    }
}

/// A fixed set of equally sized buffers allocated once.
pub struct Pool {
    /// Reserved for every slot up front and never reallocated; its length
    /// grows (zero-filled) only as far as the highest slot ever handed out,
    /// so a pool costs resident memory for the buffers it has used, not for
    /// its capacity.
    slab: Vec<u8>,
    free: Vec<u32>,
    slots: u32,
    /// Most buffers ever in use at once (sizing evidence for `slots`).
    high_water: u32,
}

impl Pool {
    /// A pool of `slots` buffers.
    pub fn new(slots: u32) -> Pool {
        let slab = Vec::with_capacity(slots as usize * SLOT_LEN);
        // Pop from the end: low slots are reused first, keeping the hot set small.
        let free = (0..slots).rev().collect();
        Pool {
            slab,
            free,
            slots,
            high_water: 0,
        }
    }

    /// A handle to an empty buffer with the standard headroom, or `None`
    /// when every slot is in use (the caller counts a drop).
    pub fn alloc(&mut self) -> Option<PacketBuf> {
        let slot = self.free.pop()?;
        self.high_water = self.high_water.max(self.in_use());
        let end = (slot as usize + 1) * SLOT_LEN;
        if end > self.slab.len() {
            // Low slots are handed out first, so this runs only when the
            // pool reaches a new depth; within capacity: no allocation.
            self.slab.resize(end, 0);
        }
        Some(PacketBuf {
            slot,
            head: HEADROOM as u16,
            tail: HEADROOM as u16,
        })
    }

    /// A new buffer holding a copy of `data` (for control messages built
    /// elsewhere and for tests; the data path never copies).
    pub fn alloc_with(&mut self, data: &[u8]) -> Option<PacketBuf> {
        if data.len() > super::MAX_PAYLOAD {
            return None;
        }
        let mut buf = self.alloc()?;
        self.space_mut(&buf)[..data.len()].copy_from_slice(data);
        self.set_len(&mut buf, data.len());
        Some(buf)
    }

    /// A new buffer with the same payload and offsets (for flooding one
    /// frame to several peers). Copies inside the slab; no heap.
    pub fn duplicate(&mut self, buf: &PacketBuf) -> Option<PacketBuf> {
        let slot = self.free.pop()?;
        self.high_water = self.high_water.max(self.in_use());
        let end = (slot as usize + 1) * SLOT_LEN;
        if end > self.slab.len() {
            // Low slots are handed out first, so this runs only when the
            // pool reaches a new depth; within capacity: no allocation.
            self.slab.resize(end, 0);
        }
        let copy = PacketBuf {
            slot,
            head: buf.head,
            tail: buf.tail,
        };
        let from = self.range(buf);
        let to = self.range(&copy).start;
        self.slab.copy_within(from, to);
        Some(copy)
    }

    /// Returns a buffer to the pool.
    pub fn free(&mut self, buf: PacketBuf) {
        debug_assert!(buf.slot < self.slots && !self.free.contains(&buf.slot));
        self.free.push(buf.slot);
    }

    pub fn capacity(&self) -> u32 {
        self.slots
    }

    pub fn in_use(&self) -> u32 {
        self.slots - self.free.len() as u32
    }

    pub fn high_water(&self) -> u32 {
        self.high_water
    }

    #[inline]
    fn range(&self, buf: &PacketBuf) -> core::ops::Range<usize> {
        let base = buf.slot as usize * SLOT_LEN;
        base + usize::from(buf.head)..base + usize::from(buf.tail)
    }

    /// The packet bytes.
    #[inline]
    pub fn data(&self, buf: &PacketBuf) -> &[u8] {
        &self.slab[self.range(buf)]
    }

    #[inline]
    pub fn data_mut(&mut self, buf: &PacketBuf) -> &mut [u8] {
        let r = self.range(buf);
        &mut self.slab[r]
    }

    /// Everything from `head` to the end of the slot: where a read lands.
    /// Follow with [`Pool::set_len`].
    pub fn space_mut(&mut self, buf: &PacketBuf) -> &mut [u8] {
        let base = buf.slot as usize * SLOT_LEN;
        &mut self.slab[base + usize::from(buf.head)..base + SLOT_LEN]
    }

    /// Where a read into each of `bufs` lands, as (pointer, capacity)
    /// pairs all taken from one borrow of the slab: a batched receive hands
    /// the kernel many buffers at once, which `&mut` slices cannot express.
    /// The regions are the slots' spaces (distinct slots never overlap);
    /// a handle from another pool that lies past this slab is left out.
    /// The pointers are valid while the pool is not touched otherwise —
    /// the caller holds `&mut Pool` for as long as it uses them.
    pub fn spaces_raw(&mut self, bufs: &[PacketBuf], out: &mut impl Extend<(*mut u8, usize)>) {
        let len = self.slab.len();
        let base = self.slab.as_mut_ptr();
        out.extend(bufs.iter().filter_map(|b| {
            let start = b.slot as usize * SLOT_LEN + usize::from(b.head);
            let end = (b.slot as usize + 1) * SLOT_LEN;
            (end <= len).then(|| (base.wrapping_add(start), end - start))
        }));
    }

    /// Sets the payload length after a read into [`Pool::space_mut`].
    pub fn set_len(&self, buf: &mut PacketBuf, len: usize) {
        debug_assert!(usize::from(buf.head) + len <= SLOT_LEN);
        buf.tail = buf.head + len.min(SLOT_LEN - usize::from(buf.head)) as u16;
    }

    /// Grows the packet by `n` bytes at the front and returns them, or
    /// `None` if the headroom is too small.
    pub fn prepend<'a>(&'a mut self, buf: &mut PacketBuf, n: usize) -> Option<&'a mut [u8]> {
        if n > usize::from(buf.head) {
            return None;
        }
        buf.head -= n as u16;
        let base = buf.slot as usize * SLOT_LEN + usize::from(buf.head);
        Some(&mut self.slab[base..base + n])
    }

    /// Grows the packet by `n` bytes at the end and returns them, or `None`
    /// if the tailroom is too small.
    pub fn append<'a>(&'a mut self, buf: &mut PacketBuf, n: usize) -> Option<&'a mut [u8]> {
        if usize::from(buf.tail) + n > SLOT_LEN {
            return None;
        }
        let base = buf.slot as usize * SLOT_LEN + usize::from(buf.tail);
        buf.tail += n as u16;
        Some(&mut self.slab[base..base + n])
    }

    /// Drops `n` bytes from the front (a parsed header); saturates at empty.
    pub fn trim_front(&self, buf: &mut PacketBuf, n: usize) {
        buf.head = (usize::from(buf.head) + n).min(usize::from(buf.tail)) as u16;
    }

    /// Drops `n` bytes from the end (a verified tag); saturates at empty.
    pub fn trim_back(&self, buf: &mut PacketBuf, n: usize) {
        buf.tail = usize::from(buf.tail)
            .saturating_sub(n)
            .max(usize::from(buf.head)) as u16;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::{MAX_PAYLOAD, TAILROOM};

    #[test]
    fn alloc_until_empty_then_reuse() {
        let mut pool = Pool::new(2);
        let a = pool.alloc().unwrap();
        let b = pool.alloc().unwrap();
        assert!(pool.alloc().is_none());
        assert_eq!(pool.in_use(), 2);
        pool.free(a);
        let c = pool.alloc().unwrap();
        assert_eq!(pool.in_use(), 2);
        pool.free(b);
        pool.free(c);
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn prepend_and_append_stay_in_slot() {
        let mut pool = Pool::new(2);
        let mut p = pool.alloc_with(b"payload").unwrap();
        pool.prepend(&mut p, 4).unwrap().copy_from_slice(b"HDR:");
        pool.append(&mut p, 4).unwrap().copy_from_slice(b":TAG");
        assert_eq!(pool.data(&p), b"HDR:payload:TAG");
        assert!(pool.prepend(&mut p, HEADROOM).is_none());
        assert!(pool.append(&mut p, TAILROOM + MAX_PAYLOAD).is_none());
        pool.trim_front(&mut p, 4);
        pool.trim_back(&mut p, 4);
        assert_eq!(pool.data(&p), b"payload");
        let d = pool.duplicate(&p).unwrap();
        assert_eq!(pool.data(&d), b"payload");
        pool.free(d);
        pool.trim_back(&mut p, 1000);
        assert!(p.is_empty());
        // Filling the neighbouring slot entirely leaves this packet intact.
        let q = pool.alloc().unwrap();
        pool.space_mut(&q).fill(0xff);
        assert_eq!(pool.data(&p), b"");
        let d = pool.duplicate(&p);
        assert!(d.is_none(), "pool of two is full");
        pool.free(q);
        pool.free(p);
    }

    #[test]
    fn oversized_copy_is_refused() {
        let mut pool = Pool::new(1);
        assert!(pool.alloc_with(&[0u8; MAX_PAYLOAD + 1]).is_none());
        assert_eq!(pool.in_use(), 0);
    }
}
