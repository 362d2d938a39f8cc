//! Holding a virtual IPv4 address: a DHT `create` of ip → this node, kept
//! alive by renewal. Static addresses are claimed as configured (a holder
//! elsewhere is an error naming it); automatic ones start from a guess
//! derived from the ring address and move on when taken.
//!
//! The registered value says who holds the address and where it was last
//! seen (a hint for later direct links):
//! ```text
//! 0 version=1 | 1 endpoint count n (≤ 4) | 2 reserved (2) | 4 node key (32) | 36 n × 20-byte endpoints
//! ```

use crate::crypto::NodeKey;
use crate::overlay::Addr;
use crate::wire::endpoint;
use crate::wire::endpoint::Endpoint;
use std::net::Ipv4Addr;

/// Automatic guesses before giving up (each taken one costs a DHT round).
pub const MAX_ATTEMPTS: u32 = 16;
/// How long an address registration lives without renewal (renewed at half).
pub const TTL_SECS: u32 = 300;

/// Where the claim stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Not in the ring yet: a claim now would land in our own store only.
    Waiting,
    /// A create for `ip` is out (DHT operation `op`).
    Claiming { ip: Ipv4Addr, op: u32, attempt: u32 },
    /// We hold `ip`; the DHT registration renews it.
    Held { ip: Ipv4Addr },
    /// Another node holds our (static) address: a configuration error.
    Conflict { ip: Ipv4Addr, holder: Addr },
    /// Every automatic guess was taken.
    Exhausted,
}

impl Claim {
    pub fn held(&self) -> Option<Ipv4Addr> {
        match self {
            Claim::Held { ip } => Some(*ip),
            _ => None,
        }
    }

    /// The address being claimed or held.
    pub fn ip(&self) -> Option<Ipv4Addr> {
        match self {
            Claim::Held { ip } | Claim::Claiming { ip, .. } | Claim::Conflict { ip, .. } => {
                Some(*ip)
            }
            _ => None,
        }
    }
}

/// The value registered under an address's key.
pub fn encode_holder(key: &NodeKey, endpoints: &[Endpoint]) -> Vec<u8> {
    let n = endpoints.len().min(4);
    let mut v = Vec::with_capacity(36 + n * endpoint::LEN);
    v.extend_from_slice(&[1, n as u8, 0, 0]);
    v.extend_from_slice(&key.0);
    for ep in &endpoints[..n] {
        let mut b = [0u8; endpoint::LEN];
        endpoint::emit_endpoint(ep, &mut b);
        v.extend_from_slice(&b);
    }
    v
}

/// The holder's key and endpoints, if `v` is a well-formed value.
pub fn decode_holder(v: &[u8]) -> Option<(NodeKey, Vec<Endpoint>)> {
    if v.len() < 36 || v[0] != 1 {
        return None;
    }
    let n = usize::from(v[1]);
    if n > 4 || v.len() != 36 + n * endpoint::LEN {
        return None;
    }
    let key = NodeKey(v[4..36].try_into().ok()?);
    let eps = (0..n)
        .map(|i| endpoint::parse_endpoint(&v[36 + i * endpoint::LEN..]))
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    Some((key, eps))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holder_values_round_trip() {
        let eps: Vec<Endpoint> = vec![Endpoint::udp("198.18.0.10:5140".parse().unwrap())];
        let v = encode_holder(&NodeKey([7; 32]), &eps);
        assert_eq!(v.len(), 56);
        assert_eq!(decode_holder(&v), Some((NodeKey([7; 32]), eps)));
        assert_eq!(decode_holder(&v[..55]), None);
        let mut bad = v.clone();
        bad[0] = 2;
        assert_eq!(decode_holder(&bad), None);
        assert_eq!(
            decode_holder(&encode_holder(&NodeKey([1; 32]), &[])),
            Some((NodeKey([1; 32]), vec![]))
        );
    }
}
