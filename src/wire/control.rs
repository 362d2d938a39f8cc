//! Link control: what travels sealed in a `Control` message on a link,
//! told apart by its first byte, the kind. Every kind is listed here; the
//! messages of the overlay (`wire::overlay`, `wire::dht`) and of
//! certificate mode (`wire::trust`) are defined beside their users, the
//! ping and pong below.
//!
//! A ping is `kind, 3 reserved bytes, 8-byte echo timestamp (µs)`; the pong
//! echoes it with the kind changed, in place, and — when the ping came
//! straight from the peer over UDP — the 20-byte endpoint it came from
//! appended: how a node sees its NAT mapping change (a router reboot) with
//! no new handshake.

use super::{endpoint, get_u64, Error, Result};
use std::net::SocketAddr;

pub const KIND_PING: u8 = 1;
pub const KIND_PONG: u8 = 2;
/// A routed overlay message (`wire::overlay::Routed`).
pub const KIND_ROUTED: u8 = 3;
pub const KIND_NEIGHBOURS: u8 = 4;
/// "I am closing this link" (kind and 3 zero bytes).
pub const KIND_LEAVE: u8 = 5;
pub const KIND_CONN_LIST: u8 = 6;
/// Routed data: the compact exact-mode header (`wire::overlay::RoutedData`).
pub const KIND_ROUTED_DATA: u8 = 7;
pub const KIND_BROADCAST: u8 = 8;
/// A DHT record copied to a neighbour (`wire::dht`).
pub const KIND_DHT_COPY: u8 = 9;
/// Certificate mode: one part of a revocation list (`wire::trust`).
pub const KIND_REVOCATION_PART: u8 = 10;
/// Our candidate endpoints, sent when they change.
pub const KIND_ENDPOINTS: u8 = 11;
/// Certificate mode: the revocation list serials a node holds.
pub const KIND_REVOCATION_SERIALS: u8 = 12;
/// A map-reduce task for the receiver's arc of the ring (`wire::task`).
pub const KIND_TASK: u8 = 13;
/// A subtree's reduced answer to a task (`wire::task`).
pub const KIND_TASK_REPLY: u8 = 14;

/// A ping's length (and a pong's without an observed endpoint).
pub const PING_LEN: usize = 12;
/// A pong with the endpoint the ping came from.
pub const PONG_OBSERVED_LEN: usize = PING_LEN + endpoint::LEN;
/// The message `leave` sends.
pub const LEAVE: [u8; 4] = [KIND_LEAVE, 0, 0, 0];

/// A checked ping or pong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ping {
    pub pong: bool,
    /// The pinger's clock when it sent the ping (µs), echoed.
    pub stamp: u64,
    /// A pong's view of where the ping came from (`None`: not straight
    /// from us over UDP, or unreadable).
    pub observed: Option<SocketAddr>,
}

impl Ping {
    /// A ping or pong, lengths checked; anything else is an error.
    pub fn parse(b: &[u8]) -> Result<Ping> {
        let pong = match b.first() {
            Some(&KIND_PING) if b.len() == PING_LEN => false,
            Some(&KIND_PONG) if b.len() == PING_LEN || b.len() == PONG_OBSERVED_LEN => true,
            _ => return Err(Error),
        };
        Ok(Ping {
            pong,
            stamp: get_u64(b, 4),
            observed: (b.len() == PONG_OBSERVED_LEN)
                .then(|| endpoint::parse(&b[PING_LEN..]).ok())
                .flatten(),
        })
    }

    /// A ping stamped `stamp`.
    pub fn ping(stamp: u64) -> [u8; PING_LEN] {
        let mut b = [0u8; PING_LEN];
        b[0] = KIND_PING;
        b[4..].copy_from_slice(&stamp.to_be_bytes());
        b
    }
}

/// Turns a checked ping (in its buffer) into its pong.
pub fn ping_to_pong(b: &mut [u8]) {
    b[0] = KIND_PONG;
}

/// Writes the observed endpoint a pong carries into the 20 bytes appended
/// after it.
pub fn emit_observed(from: &SocketAddr, out: &mut [u8]) {
    endpoint::emit(from, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_pong_fixture_and_bounds() {
        let mut b = Ping::ping(0x0102_0304_0506_0708).to_vec();
        assert_eq!(b, [1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
        let p = Ping::parse(&b).unwrap();
        assert_eq!(
            (p.pong, p.stamp, p.observed),
            (false, 0x0102_0304_0506_0708, None)
        );
        ping_to_pong(&mut b);
        assert!(Ping::parse(&b).unwrap().pong);
        let from: SocketAddr = "198.18.0.1:5140".parse().unwrap();
        b.extend_from_slice(&[0; endpoint::LEN]);
        emit_observed(&from, &mut b[PING_LEN..]);
        assert_eq!(Ping::parse(&b).unwrap().observed, Some(from));
        // A ping with an endpoint, a short pong, another kind: refused.
        let mut long_ping = b.clone();
        long_ping[0] = KIND_PING;
        assert!(Ping::parse(&long_ping).is_err());
        assert!(Ping::parse(&b[..PING_LEN - 1]).is_err());
        assert!(Ping::parse(&[KIND_LEAVE, 0, 0, 0]).is_err());
        assert!(Ping::parse(&[]).is_err());
    }
}
