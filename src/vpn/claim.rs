//! Holding a virtual IPv4 address: a DHT `create` of ip → this node, kept
//! alive by renewal. Static addresses are claimed as configured (a holder
//! elsewhere is an error naming it); automatic ones start from a guess
//! derived from the ring address and move on when taken.
//!
//! The registered value is a signed address record (`vpn::record`): who
//! holds the address, where it was last seen (a hint for later direct
//! links) and, in certificate mode, the holder's certificate.

use crate::overlay::Addr;
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
