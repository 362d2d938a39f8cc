//! Wire formats as zero-copy views.
//!
//! Each format follows smoltcp's contract: a `Packet<T: AsRef<[u8]>>` holds
//! only the buffer; `new_checked` is the only way to read untrusted bytes and
//! guarantees that every getter stays in bounds (getters may panic only on a
//! packet built with `new_unchecked` and never checked). Setters need
//! `AsMut<[u8]>`. All multi-byte fields are big-endian; no field is `usize`.
//! docs/PROTOCOL.md defines every byte; the tests at the end of each file are
//! byte fixtures of that document.

pub mod addr;
pub mod arp;
pub mod broadcast;
pub mod control;
pub mod data;
pub mod describe;
pub mod dhcp;
pub mod dht;
pub mod dns;
pub mod endpoint;
pub mod ethernet;
pub mod gro;
pub mod handshake;
pub mod ip;
pub mod key;
pub mod links;
pub mod ndp;
pub mod overlay;
pub mod subring;
pub mod task;
pub mod trust;
pub mod tso;
pub mod vnet;

/// A message failed to parse. Deliberately a unit: the caller turns it into a
/// counted drop, and a detailed reason would only help an attacker probe us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error;

pub type Result<T> = core::result::Result<T, Error>;

/// Protocol version carried in the first byte of every datagram.
pub const VERSION: u8 = 1;

/// Bytes common to every message: version, type, two reserved bytes.
pub const COMMON_HEADER_LEN: usize = 4;

/// The message type, the second byte of every datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MsgType {
    /// First handshake message, initiator → responder.
    HandshakeInit = 1,
    /// Second handshake message, responder → initiator.
    HandshakeResp = 2,
    /// An Ethernet frame sealed in a session.
    Frame = 3,
    /// A link-control message (ping/pong, later overlay) sealed in a session.
    Control = 4,
    /// An IP packet (IPv4 or IPv6, no Ethernet header) sealed in a session:
    /// VPN traffic in overlay mode.
    Packet = 5,
    /// "Prove your address first": a responder under load answers an init
    /// with a cookie instead of doing the expensive work.
    CookieReply = 6,
    /// "Your certificate is revoked": the refused node's operator is told.
    Refusal = 7,
    /// A sub-ring's datagram on its daemon's shared socket, tagged with
    /// its network (`wire::subring`): the daemon's host hands it on.
    Network = 8,
}

impl MsgType {
    pub fn from_u8(v: u8) -> Option<MsgType> {
        Some(match v {
            1 => MsgType::HandshakeInit,
            2 => MsgType::HandshakeResp,
            3 => MsgType::Frame,
            4 => MsgType::Control,
            5 => MsgType::Packet,
            6 => MsgType::CookieReply,
            7 => MsgType::Refusal,
            8 => MsgType::Network,
            _ => return None,
        })
    }
}

/// Reads version and type; the receive path dispatches on the result.
pub fn peek(bytes: &[u8]) -> core::result::Result<MsgType, PeekError> {
    if bytes.len() < COMMON_HEADER_LEN {
        return Err(PeekError::Truncated);
    }
    if bytes[0] != VERSION {
        return Err(PeekError::Version);
    }
    MsgType::from_u8(bytes[1]).ok_or(PeekError::Type)
}

/// Why [`peek`] refused a datagram (each maps to its own drop counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeekError {
    Truncated,
    Version,
    Type,
}

pub(crate) fn get_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

pub(crate) fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub(crate) fn get_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peek_classifies() {
        assert_eq!(peek(&[1, 3, 0, 0]), Ok(MsgType::Frame));
        assert_eq!(peek(&[1, 3, 0]), Err(PeekError::Truncated));
        assert_eq!(peek(&[2, 3, 0, 0]), Err(PeekError::Version));
        assert_eq!(peek(&[1, 9, 0, 0]), Err(PeekError::Type));
    }
}
