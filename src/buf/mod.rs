//! Pooled packet buffers.
//!
//! One slab is allocated when the node starts; a packet is a small
//! [`PacketBuf`] handle (slot index plus head/tail offsets). Every slot has
//! [`HEADROOM`] bytes in front of where TAP frames and datagrams land, so link
//! and overlay headers are prepended by moving `head` instead of copying the
//! payload, and [`TAILROOM`] behind, where the AEAD tag is appended. The data
//! path therefore never copies a frame and never touches the heap: an empty
//! pool is a counted drop, not a fallback allocation.

mod pool;

pub use pool::{PacketBuf, Pool};

/// Size of one slot. Holds the largest frame the TAP gives us (MTU 1400 +
/// 14-byte Ethernet header + 4-byte VLAN tag) with room for every header we
/// prepend; a power of two keeps slots cache-line and page aligned.
pub const SLOT_LEN: usize = 2048;
/// Bytes reserved before the payload for headers prepended in place: the
/// 16-byte link header today, the overlay header later, with spare room.
pub const HEADROOM: usize = 128;
/// Bytes reserved after the payload for the 16-byte AEAD tag.
pub const TAILROOM: usize = 64;
/// Largest payload a fresh buffer accepts (what a TAP read or a datagram may fill).
pub const MAX_PAYLOAD: usize = SLOT_LEN - HEADROOM - TAILROOM;
