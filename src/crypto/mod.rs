//! Link security: node identities, the signed-ephemeral handshake, sessions
//! with in-place AEAD, and the replay window.
//!
//! Design (see docs/PROTOCOL.md for bytes): each side signs its own X25519
//! ephemeral with its long-term Ed25519 key (ring has no static X25519, and
//! Ed25519 identities are what certificates will carry). The responder's
//! signature also covers a hash of the init, so both signatures bind the pair
//! of ephemerals; session keys come from HKDF-SHA256 over the ephemeral DH
//! with the transcript hash as salt. Ephemeral-only DH gives forward secrecy.
//! The init carries a strictly increasing timestamp so a replayed init cannot
//! reset a session. Identity is not hidden from passive observers (unlike
//! Noise IK); that is accepted for a VPN whose members are listed anyway.

pub mod cert;
pub mod handshake;
pub mod keys;
pub mod replay;
mod seal;
pub mod session;
pub mod signed;

pub use keys::{Identity, NodeKey, Seed};
pub use session::Session;
