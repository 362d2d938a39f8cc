//! Cheap stand-ins for X25519 and Ed25519, for runs where the overlay is
//! under test and cryptography is not (`--cheap-crypto`).
//!
//! At 100,000 nodes the mass join is a few million handshakes; with real
//! curve arithmetic (~300 µs per handshake) that alone is most of the run.
//! Here a key agreement is a hash of the two public halves in sorted order
//! (symmetric, so both ends still derive the same session keys) and a
//! signature is a hash of the signer's key and the message.
//!
//! What a run on stand-ins still proves: everything the overlay decides —
//! node keys and ring addresses are the real ones, every message has its
//! real size, handshakes succeed and fail where they would, sessions seal
//! and open with real AEAD keys. What it does not: anything about secrecy
//! or authenticity (anyone could compute these shares and signatures).
//! Tests of cryptographic properties (the hostile-member suite, handshake
//! and certificate tests) never install them.

use crate::crypto::keys::{install_stand_ins, StandIns};
use crate::crypto::{NodeKey, Seed};
use ring::digest::{Context, SHA256, SHA512};

/// Marks every stand-in hash (and lets a test check that the daemon's
/// binary carries none of this: the label is not in it).
const LABEL: &[u8] = b"ringvpn simulator stand-in crypto";

fn hash32(parts: &[&[u8]]) -> [u8; 32] {
    let mut c = Context::new(&SHA256);
    c.update(LABEL);
    for p in parts {
        c.update(&(p.len() as u32).to_be_bytes());
        c.update(p);
    }
    c.finish().as_ref().try_into().expect("32 bytes")
}

fn public_of(secret: &Seed) -> [u8; 32] {
    hash32(&[b"public", &secret.0])
}

fn dh_public(key: &NodeKey) -> [u8; 32] {
    hash32(&[b"node", &key.0])
}

fn agree(ours: &[u8; 32], theirs: &[u8; 32]) -> Seed {
    let (a, b) = if ours <= theirs {
        (ours, theirs)
    } else {
        (theirs, ours)
    };
    Seed(hash32(&[b"agree", a, b]))
}

fn sign(key: &NodeKey, msg: &[u8]) -> [u8; 64] {
    let mut c = Context::new(&SHA512);
    c.update(LABEL);
    c.update(&key.0);
    c.update(msg);
    c.finish().as_ref().try_into().expect("64 bytes")
}

fn verify(key: &NodeKey, msg: &[u8], sig: &[u8]) -> bool {
    sig == sign(key, msg)
}

static STAND_INS: StandIns = StandIns {
    public_of,
    dh_public,
    agree,
    sign,
    verify,
};

/// Runs this thread's public-key operations on the stand-ins (`false`:
/// on the real ones again).
pub fn install(on: bool) {
    install_stand_ins(on.then_some(&STAND_INS));
}

/// The label every stand-in hashes: a test looks for it in the daemon's
/// binary (it must not be there).
pub fn label() -> &'static [u8] {
    LABEL
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Identity;

    #[test]
    fn stand_ins_agree_like_x25519_and_sign_like_ed25519() {
        install(true);
        crate::crypto::keys::tests::agreement_holds();
        let a = Identity::from_seed(&Seed([1; 32]));
        let b = Identity::from_seed(&Seed([2; 32]));
        let sig = a.sign(b"hello");
        assert!(a.public().verify(b"hello", &sig));
        assert!(!a.public().verify(b"hellO", &sig));
        assert!(!b.public().verify(b"hello", &sig));
        install(false);
        assert!(!a.public().verify(b"hello", &sig), "real Ed25519 again");
    }
}
