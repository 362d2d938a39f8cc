//! Sealed handshake credentials.
//!
//! A credential (a node key, or a certificate with a name, addresses and
//! groups) says who is talking; sent in clear, any observer on the path
//! learns it. So, as Noise and WireGuard do with the
//! static key, it travels encrypted (`CredType::Sealed`):
//!
//! - in an init to a responder whose key we know, under X25519 of our
//!   ephemeral and the responder's node key in Montgomery form (the
//!   responder hint is then left empty: the sealing names the responder);
//! - in every response to an initiator that asks for it (init flag 1),
//!   under X25519 of the two ephemerals.
//!
//! Each signature also covers its sealing key, so an observer who holds a
//! member's public key cannot test a handshake against it either. What is
//! left in clear: indices, ephemerals, the init's timestamp, the observed
//! endpoint, lengths — and the credential of an init to a responder whose
//! key the initiator does not know (a bootstrap endpoint; inits riding in
//! connect-to-me requests travel inside sealed overlay links). Nodes from
//! before sealed credentials refuse type 3 as malformed; they send no
//! flag, so they get clear responses, and a new node reads both.

use super::keys::{NodeKey, Seed};
use crate::wire::handshake::{CredType, MAX_CRED_LEN, SEAL_OVERHEAD};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use ring::hkdf;

const SEAL_INIT: &[u8] = b"ringvpn sealed initiator credential";
const SEAL_RESP: &[u8] = b"ringvpn sealed responder credential";
const TAG_LEN: usize = 16;

/// A 32-byte key from `ikm`, for one purpose (`info`), salted.
pub(super) fn kdf32(salt: &[u8], ikm: &[u8], info: &[u8]) -> [u8; 32] {
    struct Len32;
    impl hkdf::KeyType for Len32 {
        fn len(&self) -> usize {
            32
        }
    }
    let mut out = [0u8; 32];
    hkdf::Salt::new(hkdf::HKDF_SHA256, salt)
        .extract(ikm)
        .expand(&[info], Len32)
        .and_then(|okm| okm.fill(&mut out))
        .expect("32 bytes is within HKDF's limit");
    out
}

/// The key an init's credential is sealed with: X25519 of the initiator's
/// ephemeral and the responder's node key, bound to both.
pub(super) fn init_seal_key(shared: &Seed, ephemeral: &[u8; 32], responder: &NodeKey) -> [u8; 32] {
    let mut salt = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [SEAL_INIT, &ephemeral[..], &responder.0[..]] {
        salt.update(part);
    }
    kdf32(salt.finish().as_ref(), &shared.0, SEAL_INIT)
}

/// The key a response's credential is sealed with: from the ephemerals'
/// shared secret, bound to the init.
pub(super) fn resp_seal_key(shared: &Seed, init_hash: &[u8; 32]) -> [u8; 32] {
    kdf32(init_hash, &shared.0, SEAL_RESP)
}

/// Seals `body` (the inner credential type and credential, then
/// [`TAG_LEN`] bytes of room) in place. Each key seals exactly one
/// message, so the nonce is zero.
pub(super) fn seal(key: &[u8; 32], aad: &[u8], body: &mut [u8]) {
    let key = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, key).expect("32-byte key"));
    let (plain, tag_out) = body.split_at_mut(body.len() - TAG_LEN);
    let tag = key
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key([0; 12]), Aad::from(aad), plain)
        .expect("a credential is far below the AEAD's limit");
    tag_out.copy_from_slice(tag.as_ref());
}

/// Opens a sealed credential into `out`: its inner type and bytes.
pub(super) fn open<'o>(
    key: &[u8; 32],
    aad: &[u8],
    sealed: &[u8],
    out: &'o mut [u8; MAX_CRED_LEN + SEAL_OVERHEAD],
) -> Option<(u8, &'o [u8])> {
    if sealed.len() < SEAL_OVERHEAD {
        return None;
    }
    let buf = &mut out[..sealed.len()];
    buf.copy_from_slice(sealed);
    let key = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, key).expect("32-byte key"));
    let plain = key
        .open_in_place(Nonce::assume_unique_for_key([0; 12]), Aad::from(aad), buf)
        .ok()?;
    plain.split_first().map(|(&ty, cred)| (ty, cred))
}

/// The body of a credential to seal: inner type, bytes, room for the tag.
pub(super) fn sealable(ty: CredType, cred: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(cred.len() + SEAL_OVERHEAD);
    body.push(ty as u8);
    body.extend_from_slice(cred);
    body.resize(cred.len() + SEAL_OVERHEAD, 0);
    body
}
