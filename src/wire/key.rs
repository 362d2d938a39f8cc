//! A node's public key as the wire carries it. The type lives here, at the
//! bottom, because messages name keys; what a key can *do* (verify a
//! signature, seal to its holder) is crypto's, in `crypto::keys`.

use crate::base64;

/// A node's public key (Ed25519): its identity on the wire and in configs.
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
