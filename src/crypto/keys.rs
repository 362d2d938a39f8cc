//! Long-term node identities (Ed25519).

use crate::base64;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};

/// A node's public key: its identity on the wire and in configs.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NodeKey(pub [u8; 32]);

impl NodeKey {
    /// Parses the base64 text form used in configs and by `ringvpn pubkey`.
    pub fn from_base64(s: &str) -> Option<NodeKey> {
        let v = base64::decode(s)?;
        Some(NodeKey(v.try_into().ok()?))
    }

    pub fn to_base64(&self) -> String {
        base64::encode(&self.0)
    }

    /// Checks an Ed25519 signature by this key.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(msg, sig)
            .is_ok()
    }
}

impl core::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "NodeKey({})", self.to_base64())
    }
}

impl core::fmt::Display for NodeKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.to_base64())
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
}

impl Identity {
    pub fn from_seed(seed: &Seed) -> Identity {
        // from_seed_unchecked only fails on a wrong length, which the type rules out.
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed.0).expect("32-byte seed");
        let public = NodeKey(pair.public_key().as_ref().try_into().expect("32-byte key"));
        Identity { pair, public }
    }

    pub fn public(&self) -> NodeKey {
        self.public
    }

    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(self.pair.sign(msg).as_ref());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
