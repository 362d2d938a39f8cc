//! The two handshake messages.
//!
//! Init (initiator → responder), 148 + L bytes:
//! ```text
//!  0 version | 1 type=1 | 2..4 reserved
//!  4..8    sender index (initiator's session index)
//!  8..40   responder hint: the responder's node key, or zeros for "whoever is there"
//!  40..72  initiator's ephemeral X25519 public key
//!  72..80  timestamp (µs since the Unix epoch; strictly increasing per initiator)
//!  80 credential type | 81 flags | 82..84 credential length L
//!  84..84+L credential (type 3: sealed to the responder, see below)
//!  then 64  Ed25519 signature over "ringvpn-init" ‖ [sealing key] ‖ bytes 0..84+L
//!  then, optionally, 16  cookie (from a cookie reply; not signed, not
//!        part of the init proper: the same init goes to several endpoints,
//!        and a cookie is for one)
//! ```
//! Resp (responder → initiator), 132 + L bytes:
//! ```text
//!  0 version | 1 type=2 | 2..4 reserved
//!  4..8    sender index (responder's session index)
//!  8..12   receiver index (the initiator's sender index)
//!  12..44  responder's ephemeral X25519 public key
//!  44 observed family (4 or 6) | 45 reserved | 46..48 observed port
//!  48..64  observed address (IPv4 in 48..52, rest zero)
//!  64 credential type | 65 flags | 66..68 credential length L
//!  68..68+L credential (type 3: sealed, see below)
//!  then 64  Ed25519 signature over "ringvpn-resp" ‖ SHA-256(init) ‖ [sealing key] ‖ bytes 0..68+L
//! ```
//! A sealed credential (type 3) is the inner credential type (1) and the
//! credential, ChaCha20-Poly1305-encrypted with the 16-byte tag appended
//! (L = inner + 17), the message's bytes before it as associated data; the
//! key comes from the handshake's Diffie-Hellman (crypto::handshake), and
//! the signature covers it, so neither the credential nor the signer can
//! be read or tested by a passive observer. Init flag 1: "seal your
//! credential in the response" (set by every node that reads type 3).
//! Init flag 2: "AES-256-GCM is fast here" (the initiator's CPU has AES
//! instructions); response flag 1: "this session uses AES-256-GCM", set
//! only in answer to init flag 2 by a responder whose CPU has them too.
//! Both flags are signed and part of the transcript the keys come from,
//! so a path that flips one breaks the handshake rather than the choice.
//! Nodes from before the flag leave both bytes' new bits zero and get
//! ChaCha20-Poly1305, as before.
//! Cookie reply (responder under load → initiator), 24 bytes:
//! ```text
//!  0 version | 1 type=6 | 2..4 reserved
//!  4..8    receiver index (the initiator's sender index)
//!  8..24   cookie: a MAC of the initiator's address and port
//! ```
//! Refusal (responder → initiator, in answer to an authenticated-looking
//! init it will not take), 16 bytes:
//! ```text
//!  0 version | 1 type=7 | 2 reason (1: the certificate is revoked) | 3 reserved
//!  4..8    receiver index (the initiator's sender index)
//!  8..16   serial of the revocation list that revokes it
//! ```
//! Not signed: it is a hint for the refused node's operator (logged and
//! shown in its status), never acted on, so a forged one costs nothing
//! but a misleading line.
//! The observed endpoint is where the responder saw the init come from: how
//! a node behind a NAT learns its public mapping without a STUN server.

use super::{endpoint, get_u16, get_u32, get_u64, Error, MsgType, Result, VERSION};
use std::net::SocketAddr;

pub const SIG_LEN: usize = 64;
pub const KEY_LEN: usize = 32;
/// Upper bound on a credential; keeps every handshake inside one datagram.
pub const MAX_CRED_LEN: usize = 1024;
/// What sealing adds to a credential: its inner type and the AEAD tag.
pub const SEAL_OVERHEAD: usize = 1 + 16;
/// Init flag: the initiator reads a sealed credential in the response.
pub const FLAG_SEALED_REPLY: u8 = 1;
/// Init flag: the initiator would rather use AES-256-GCM (hardware AES).
pub const FLAG_AES_OFFERED: u8 = 2;
/// Response flag: the session's cipher is AES-256-GCM.
pub const RESP_FLAG_AES: u8 = 1;
pub const INIT_FIXED_LEN: usize = 84 + SIG_LEN;
pub const RESP_FIXED_LEN: usize = 68 + SIG_LEN;
pub const COOKIE_LEN: usize = 16;
pub const COOKIE_REPLY_LEN: usize = 8 + COOKIE_LEN;

/// What a credential field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CredType {
    /// A bare Ed25519 public key, trusted because it is in the config.
    PublicKey = 1,
    /// A CA-signed node certificate.
    Certificate = 2,
    /// Either of the above, sealed (encrypted) for the other side.
    Sealed = 3,
}

impl CredType {
    pub fn from_u8(v: u8) -> Option<CredType> {
        match v {
            1 => Some(CredType::PublicKey),
            2 => Some(CredType::Certificate),
            3 => Some(CredType::Sealed),
            _ => None,
        }
    }
}

/// The credential whose length field is at `len_at` (bytes follow it).
fn cred_at(b: &[u8], len_at: usize) -> &[u8] {
    let len = usize::from(get_u16(b, len_at));
    &b[len_at + 2..len_at + 2 + len]
}

/// Everything before the trailing signature, and the signature.
fn split_signature(b: &[u8]) -> (&[u8], &[u8]) {
    b.split_at(b.len() - SIG_LEN)
}

/// The init proper (signed part and signature) of an init whose
/// credential length field is valid, without any cookie.
fn init_proper(b: &[u8]) -> &[u8] {
    &b[..INIT_FIXED_LEN + usize::from(get_u16(b, 82))]
}

fn key_at(b: &[u8], at: usize) -> &[u8; KEY_LEN] {
    b[at..at + KEY_LEN].try_into().expect("checked length")
}

/// Checks `len` against fixed part + credential length field, exactly.
fn check_exact(b: &[u8], fixed: usize, cred_len_at: usize) -> Result<usize> {
    if b.len() < fixed {
        return Err(Error);
    }
    let cred_len = usize::from(get_u16(b, cred_len_at));
    if cred_len > MAX_CRED_LEN + SEAL_OVERHEAD || b.len() != fixed + cred_len {
        return Err(Error);
    }
    Ok(cred_len)
}

/// A view of a handshake init.
#[derive(Debug)]
pub struct InitPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> InitPacket<T> {
    /// Accepts only a well-formed init with no trailing bytes but a cookie.
    pub fn new_checked(buffer: T) -> Result<InitPacket<T>> {
        let b = buffer.as_ref();
        if b.len() < 2 || b[0] != VERSION || b[1] != MsgType::HandshakeInit as u8 {
            return Err(Error);
        }
        let bare = b.len().checked_sub(COOKIE_LEN).map(|n| &b[..n]);
        if check_exact(b, INIT_FIXED_LEN, 82).is_err()
            && bare.map_or(true, |x| check_exact(x, INIT_FIXED_LEN, 82).is_err())
        {
            return Err(Error);
        }
        Ok(InitPacket { buffer })
    }

    /// The init without its cookie: what is signed and hashed.
    pub fn proper(&self) -> &[u8] {
        init_proper(self.b())
    }
    /// The cookie the initiator attached, if any.
    pub fn cookie(&self) -> Option<&[u8; COOKIE_LEN]> {
        self.b()[self.proper().len()..].try_into().ok()
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    pub fn sender(&self) -> u32 {
        get_u32(self.b(), 4)
    }
    pub fn responder_hint(&self) -> &[u8; KEY_LEN] {
        key_at(self.b(), 8)
    }
    pub fn ephemeral(&self) -> &[u8; KEY_LEN] {
        key_at(self.b(), 40)
    }
    pub fn timestamp(&self) -> u64 {
        get_u64(self.b(), 72)
    }
    pub fn cred_type(&self) -> u8 {
        self.b()[80]
    }
    pub fn flags(&self) -> u8 {
        self.b()[81]
    }
    pub fn cred(&self) -> &[u8] {
        cred_at(self.b(), 82)
    }
    /// The bytes before the credential: a sealed credential's associated data.
    pub fn before_cred(&self) -> &[u8] {
        &self.b()[..84]
    }
    /// The bytes covered by the signature (after its label).
    pub fn signed(&self) -> &[u8] {
        split_signature(self.proper()).0
    }
    pub fn signature(&self) -> &[u8] {
        split_signature(self.proper()).1
    }
}

/// A cookie reply's receiver index and cookie, if `b` is exactly one.
pub fn parse_cookie_reply(b: &[u8]) -> Result<(u32, [u8; COOKIE_LEN])> {
    if b.len() != COOKIE_REPLY_LEN || b[0] != VERSION || b[1] != MsgType::CookieReply as u8 {
        return Err(Error);
    }
    let cookie = b[8..].try_into().map_err(|_| Error)?;
    Ok((get_u32(b, 4), cookie))
}

/// Writes a cookie reply.
pub fn emit_cookie_reply(receiver: u32, cookie: &[u8; COOKIE_LEN]) -> [u8; COOKIE_REPLY_LEN] {
    let mut out = [0u8; COOKIE_REPLY_LEN];
    out[0] = VERSION;
    out[1] = MsgType::CookieReply as u8;
    out[4..8].copy_from_slice(&receiver.to_be_bytes());
    out[8..].copy_from_slice(cookie);
    out
}

pub const REFUSAL_LEN: usize = 16;
/// Refusal reason: the initiator's certificate is revoked.
pub const REFUSED_REVOKED: u8 = 1;

/// A refusal: (receiver index, reason, revocation list serial).
pub fn parse_refusal(b: &[u8]) -> Result<(u32, u8, u64)> {
    if b.len() != REFUSAL_LEN || b[0] != VERSION || b[1] != MsgType::Refusal as u8 || b[3] != 0 {
        return Err(Error);
    }
    Ok((get_u32(b, 4), b[2], get_u64(b, 8)))
}

/// Writes a refusal.
pub fn emit_refusal(receiver: u32, reason: u8, serial: u64) -> [u8; REFUSAL_LEN] {
    let mut out = [0u8; REFUSAL_LEN];
    out[0] = VERSION;
    out[1] = MsgType::Refusal as u8;
    out[2] = reason;
    out[4..8].copy_from_slice(&receiver.to_be_bytes());
    out[8..].copy_from_slice(&serial.to_be_bytes());
    out
}

/// The fields of an init, for emitting one.
#[derive(Debug, Clone)]
pub struct InitRepr<'a> {
    pub sender: u32,
    pub responder_hint: [u8; KEY_LEN],
    pub ephemeral: [u8; KEY_LEN],
    pub timestamp: u64,
    pub cred_type: CredType,
    pub flags: u8,
    pub cred: &'a [u8],
}

impl InitRepr<'_> {
    pub fn buffer_len(&self) -> usize {
        INIT_FIXED_LEN + self.cred.len()
    }

    /// Writes everything but the signature; returns where the signature goes.
    pub fn emit_unsigned(&self, out: &mut [u8]) -> usize {
        out[0] = VERSION;
        out[1] = MsgType::HandshakeInit as u8;
        out[2..4].fill(0);
        out[4..8].copy_from_slice(&self.sender.to_be_bytes());
        out[8..40].copy_from_slice(&self.responder_hint);
        out[40..72].copy_from_slice(&self.ephemeral);
        out[72..80].copy_from_slice(&self.timestamp.to_be_bytes());
        out[80] = self.cred_type as u8;
        out[81] = self.flags;
        out[82..84].copy_from_slice(&(self.cred.len() as u16).to_be_bytes());
        out[84..84 + self.cred.len()].copy_from_slice(self.cred);
        84 + self.cred.len()
    }
}

/// A view of a handshake response.
#[derive(Debug)]
pub struct RespPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> RespPacket<T> {
    /// Accepts only a well-formed response with no trailing bytes.
    pub fn new_checked(buffer: T) -> Result<RespPacket<T>> {
        let b = buffer.as_ref();
        if b.len() < 2 || b[0] != VERSION || b[1] != MsgType::HandshakeResp as u8 {
            return Err(Error);
        }
        check_exact(b, RESP_FIXED_LEN, 66)?;
        endpoint::parse(&b[44..64])?;
        Ok(RespPacket { buffer })
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    pub fn sender(&self) -> u32 {
        get_u32(self.b(), 4)
    }
    pub fn receiver(&self) -> u32 {
        get_u32(self.b(), 8)
    }
    pub fn ephemeral(&self) -> &[u8; KEY_LEN] {
        key_at(self.b(), 12)
    }
    /// Where the responder saw our init come from.
    pub fn observed(&self) -> SocketAddr {
        endpoint::parse(&self.b()[44..64]).expect("family checked in new_checked")
    }
    pub fn cred_type(&self) -> u8 {
        self.b()[64]
    }
    pub fn flags(&self) -> u8 {
        self.b()[65]
    }
    pub fn cred(&self) -> &[u8] {
        cred_at(self.b(), 66)
    }
    /// The bytes before the credential: a sealed credential's associated data.
    pub fn before_cred(&self) -> &[u8] {
        &self.b()[..68]
    }
    pub fn signed(&self) -> &[u8] {
        split_signature(self.b()).0
    }
    pub fn signature(&self) -> &[u8] {
        split_signature(self.b()).1
    }
}

/// The fields of a response, for emitting one.
#[derive(Debug, Clone)]
pub struct RespRepr<'a> {
    pub sender: u32,
    pub receiver: u32,
    pub ephemeral: [u8; KEY_LEN],
    pub observed: SocketAddr,
    pub cred_type: CredType,
    pub flags: u8,
    pub cred: &'a [u8],
}

impl RespRepr<'_> {
    pub fn buffer_len(&self) -> usize {
        RESP_FIXED_LEN + self.cred.len()
    }

    /// Writes everything but the signature; returns where the signature goes.
    pub fn emit_unsigned(&self, out: &mut [u8]) -> usize {
        out[0] = VERSION;
        out[1] = MsgType::HandshakeResp as u8;
        out[2..4].fill(0);
        out[4..8].copy_from_slice(&self.sender.to_be_bytes());
        out[8..12].copy_from_slice(&self.receiver.to_be_bytes());
        out[12..44].copy_from_slice(&self.ephemeral);
        endpoint::emit(&self.observed, &mut out[44..64]);
        out[64] = self.cred_type as u8;
        out[65] = self.flags;
        out[66..68].copy_from_slice(&(self.cred.len() as u16).to_be_bytes());
        out[68..68 + self.cred.len()].copy_from_slice(self.cred);
        68 + self.cred.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_construct_and_deconstruct() {
        let cred = [7u8; 32];
        let repr = InitRepr {
            sender: 0x0102_0304,
            responder_hint: [0; 32],
            ephemeral: [9; 32],
            timestamp: 0x1122_3344_5566_7788,
            cred_type: CredType::PublicKey,
            flags: FLAG_SEALED_REPLY,
            cred: &cred,
        };
        let mut out = vec![0u8; repr.buffer_len()];
        let at = repr.emit_unsigned(&mut out);
        assert_eq!(at, 116);
        out[at..].fill(0x55);
        assert_eq!(&out[..8], &[1, 1, 0, 0, 1, 2, 3, 4]);
        assert_eq!(
            &out[72..84],
            &[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 1, 1, 0, 32]
        );
        let p = InitPacket::new_checked(&out[..]).unwrap();
        assert_eq!(p.sender(), 0x0102_0304);
        assert_eq!(p.ephemeral(), &[9; 32]);
        assert_eq!(p.timestamp(), 0x1122_3344_5566_7788);
        assert_eq!(p.cred_type(), 1);
        assert_eq!(p.flags(), FLAG_SEALED_REPLY);
        assert_eq!(p.cred(), &cred);
        assert_eq!(p.signature(), &[0x55; 64]);
        assert_eq!(p.signed().len(), 116);
        assert_eq!(p.cookie(), None);
        // Trailing or missing bytes are refused.
        let mut longer = out.clone();
        longer.push(0);
        assert!(InitPacket::new_checked(&longer[..]).is_err());
        assert!(InitPacket::new_checked(&out[..out.len() - 1]).is_err());
        // A cookie after the signature: the same init, with its cookie.
        let mut with = out.clone();
        with.extend_from_slice(&[0xc0; COOKIE_LEN]);
        let c = InitPacket::new_checked(&with[..]).unwrap();
        assert_eq!(c.cookie(), Some(&[0xc0; COOKIE_LEN]));
        assert_eq!(c.proper(), &out[..]);
        assert_eq!(c.signature(), &[0x55; 64]);
        with.push(0);
        assert!(InitPacket::new_checked(&with[..]).is_err());
        // Cookie replies are exactly 24 bytes.
        let r = emit_cookie_reply(0xdead_beef, &[7; COOKIE_LEN]);
        assert_eq!(parse_cookie_reply(&r), Ok((0xdead_beef, [7; COOKIE_LEN])));
        assert!(parse_cookie_reply(&r[..23]).is_err());
    }

    #[test]
    fn resp_round_trip_v4_and_v6() {
        for observed in ["198.18.0.7:5140", "[2001:db8::1]:9"] {
            let observed: SocketAddr = observed.parse().unwrap();
            let repr = RespRepr {
                sender: 5,
                receiver: 6,
                ephemeral: [3; 32],
                observed,
                cred_type: CredType::PublicKey,
                flags: RESP_FLAG_AES,
                cred: &[1; 32],
            };
            let mut out = vec![0u8; repr.buffer_len()];
            repr.emit_unsigned(&mut out);
            assert_eq!(out[65], RESP_FLAG_AES);
            let p = RespPacket::new_checked(&out[..]).unwrap();
            assert_eq!((p.sender(), p.receiver()), (5, 6));
            assert_eq!(p.flags(), RESP_FLAG_AES);
            assert_eq!(p.observed(), observed);
            assert_eq!(p.cred(), &[1; 32]);
        }
    }

    #[test]
    fn bad_family_and_huge_cred_are_refused() {
        let mut out = [0u8; RESP_FIXED_LEN];
        out[0] = 1;
        out[1] = 2;
        out[44] = 5;
        assert!(RespPacket::new_checked(&out[..]).is_err());
        // A sealed credential may be SEAL_OVERHEAD longer; no more.
        let max = MAX_CRED_LEN + SEAL_OVERHEAD;
        for (len, ok) in [(max, true), (max + 1, false)] {
            let mut init = vec![0u8; INIT_FIXED_LEN + len];
            init[0] = 1;
            init[1] = 1;
            init[82..84].copy_from_slice(&(len as u16).to_be_bytes());
            assert_eq!(InitPacket::new_checked(&init[..]).is_ok(), ok, "{len}");
        }
    }

    #[test]
    fn refusal_round_trips() {
        let b = emit_refusal(0x0102_0304, REFUSED_REVOKED, 7);
        assert_eq!(&b[..8], &[1, 7, 1, 0, 1, 2, 3, 4]);
        assert_eq!(parse_refusal(&b), Ok((0x0102_0304, REFUSED_REVOKED, 7)));
        assert_eq!(parse_refusal(&b[..15]), Err(Error));
        let mut bad = b;
        bad[1] = 6;
        assert_eq!(parse_refusal(&bad), Err(Error));
    }
}
