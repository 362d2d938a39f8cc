//! Long-term node identities (Ed25519), and the same keys in X25519 form
//! for sealing handshake credentials to a known responder.
//!
//! Every public-key operation of the project goes through this file, so
//! the simulator can swap them for cheap stand-ins on its own threads
//! ([`StandIns`]): a 100,000-node run spends most of its time in X25519
//! and Ed25519 otherwise. The daemon never installs any; the stand-ins
//! themselves live in `sim`, which its binary does not link.

use curve25519_dalek::{edwards::CompressedEdwardsY, montgomery::MontgomeryPoint};
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use std::cell::Cell;

pub use crate::wire::key::NodeKey;

/// Replacements for X25519 and Ed25519 with the same shapes (32-byte
/// publics and shares, 64-byte signatures), for the simulator only: a
/// key agreement that is symmetric in the two public halves, signatures
/// anyone can compute. What they keep is every message's size and every
/// decision the protocol takes; what they give up is all secrecy.
pub struct StandIns {
    /// The public half of an X25519 secret.
    pub public_of: fn(&Seed) -> [u8; 32],
    /// A node key's X25519 form.
    pub dh_public: fn(&NodeKey) -> [u8; 32],
    /// The shared secret of two X25519 public halves (ours, theirs).
    pub agree: fn(&[u8; 32], &[u8; 32]) -> Seed,
    pub sign: fn(&NodeKey, &[u8]) -> [u8; 64],
    pub verify: fn(&NodeKey, &[u8], &[u8]) -> bool,
}

thread_local! {
    static STAND_INS: Cell<Option<&'static StandIns>> = const { Cell::new(None) };
}

/// Runs this thread's public-key operations on `s` (`None`: the real ones).
pub fn install_stand_ins(s: Option<&'static StandIns>) {
    STAND_INS.with(|c| c.set(s));
}

fn stand_ins() -> Option<&'static StandIns> {
    STAND_INS.with(|c| c.get())
}

/// Whether this thread runs on stand-ins.
pub fn stand_ins_installed() -> bool {
    stand_ins().is_some()
}

/// X25519 (RFC 7748) of `secret` with `public`; `None` when the result is
/// all zeros (a small-order point: no secret is shared).
pub fn x25519(secret: &Seed, public: &[u8; 32]) -> Option<Seed> {
    let shared = match stand_ins() {
        Some(s) => (s.agree)(&(s.public_of)(secret), public),
        None => Seed(MontgomeryPoint(*public).mul_clamped(secret.0).to_bytes()),
    };
    (shared.0 != [0; 32]).then_some(shared)
}

/// The X25519 public key of `secret`.
pub fn x25519_public(secret: &Seed) -> [u8; 32] {
    match stand_ins() {
        Some(s) => (s.public_of)(secret),
        None => MontgomeryPoint::mul_base_clamped(secret.0).to_bytes(),
    }
}

/// What a public key can do (the type itself is the wire's).
impl NodeKey {
    /// The key as an X25519 public key (the birational map from Edwards to
    /// Montgomery form), to seal a credential to its holder; `None` if the
    /// bytes are not a curve point.
    pub fn dh_public(&self) -> Option<[u8; 32]> {
        if let Some(s) = stand_ins() {
            return Some((s.dh_public)(self));
        }
        let point = CompressedEdwardsY(self.0).decompress()?;
        Some(point.to_montgomery().to_bytes())
    }

    /// Checks an Ed25519 signature by this key.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        if let Some(s) = stand_ins() {
            return (s.verify)(self, msg, sig);
        }
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(msg, sig)
            .is_ok()
    }
}

/// A private key seed, wiped from memory when dropped.
pub struct Seed(pub [u8; 32]);

impl core::fmt::Debug for Seed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Seed(<redacted>)")
    }
}

impl Drop for Seed {
    fn drop(&mut self) {
        self.0.fill(0);
        // Keep the wipe: the buffer is observed after the fill, so the
        // optimiser cannot treat the zeroing as a dead store.
        core::hint::black_box(&self.0);
        core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
    }
}

impl Seed {
    /// A fresh random seed from the OS.
    pub fn generate() -> Seed {
        use ring::rand::SecureRandom;
        let mut s = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut s)
            .expect("the OS random source is unavailable");
        Seed(s)
    }
}

/// A node's key pair.
pub struct Identity {
    pair: Ed25519KeyPair,
    public: NodeKey,
    /// The same key as an X25519 secret (the Ed25519 secret scalar), so
    /// that an initiator who knows our node key can seal its credential
    /// to us. Wiped on drop like a seed.
    dh_secret: Seed,
}

impl Identity {
    pub fn from_seed(seed: &Seed) -> Identity {
        // from_seed_unchecked only fails on a wrong length, which the type rules out.
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed.0).expect("32-byte seed");
        let public = NodeKey(pair.public_key().as_ref().try_into().expect("32-byte key"));
        // RFC 8032: the secret scalar is the first half of SHA-512(seed),
        // clamped (X25519 clamps it again, the same way).
        let h = ring::digest::digest(&ring::digest::SHA512, &seed.0);
        let mut dh_secret = Seed([0; 32]);
        dh_secret.0.copy_from_slice(&h.as_ref()[..32]);
        Identity {
            pair,
            public,
            dh_secret,
        }
    }

    /// A secret for one purpose (`label`), derived from our private key:
    /// values only this node can compute, stable across restarts.
    pub fn derive_secret(&self, label: &[u8]) -> [u8; 32] {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(label);
        ctx.update(&self.dh_secret.0);
        ctx.finish().as_ref().try_into().expect("32 bytes")
    }

    /// X25519 of our key with `their_public` (a Montgomery u-coordinate);
    /// `None` for a point of small order (an all-zero secret).
    pub fn dh(&self, their_public: &[u8; 32]) -> Option<Seed> {
        if let Some(s) = stand_ins() {
            return Some((s.agree)(&(s.dh_public)(&self.public), their_public));
        }
        x25519(&self.dh_secret, their_public)
    }

    pub fn public(&self) -> NodeKey {
        self.public
    }

    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        if let Some(s) = stand_ins() {
            return (s.sign)(&self.public, msg);
        }
        let mut out = [0u8; 64];
        out.copy_from_slice(self.pair.sign(msg).as_ref());
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn x25519_matches_rfc7748() {
        // RFC 7748, section 5.2, the first test vector.
        let hex = |h: &str| -> [u8; 32] {
            let mut out = [0u8; 32];
            for (i, o) in out.iter_mut().enumerate() {
                *o = u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap();
            }
            out
        };
        let scalar = Seed(hex(
            "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
        ));
        let u = hex("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c");
        let want = hex("c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552");
        assert_eq!(x25519(&scalar, &u).unwrap().0, want);
        assert!(x25519(&scalar, &[0; 32]).is_none(), "small order refused");
    }

    #[test]
    fn node_keys_agree_in_x25519_form() {
        agreement_holds();
    }

    /// Two node keys agree in X25519 form, and an ephemeral sealed to a
    /// node key opens with it (also run on the simulator's stand-ins).
    pub(crate) fn agreement_holds() {
        let a = Identity::from_seed(&Seed([1; 32]));
        let b = Identity::from_seed(&Seed([2; 32]));
        let ab = a.dh(&b.public().dh_public().unwrap()).unwrap();
        let ba = b.dh(&a.public().dh_public().unwrap()).unwrap();
        assert_eq!(ab.0, ba.0);
        // An ephemeral against a node key: what sealing an init does.
        let e = Seed([7; 32]);
        let to_b = x25519(&e, &b.public().dh_public().unwrap()).unwrap();
        assert_eq!(b.dh(&x25519_public(&e)).unwrap().0, to_b.0);
    }

    #[test]
    fn sign_verify_and_text_form() {
        let id = Identity::from_seed(&Seed([1; 32]));
        let sig = id.sign(b"hello");
        assert!(id.public().verify(b"hello", &sig));
        assert!(!id.public().verify(b"hellO", &sig));
        let text = id.public().to_base64();
        assert_eq!(NodeKey::from_base64(&text), Some(id.public()));
        assert_eq!(NodeKey::from_base64("AAAA"), None);
    }
}
