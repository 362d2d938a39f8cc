//! Ring addresses: 128-bit positions on a ring modulo 2^128.
//!
//! A node's address is a hash of its public key, so a node cannot choose
//! where it sits on the ring. Naming differs from Brunet on purpose:
//! **right** is clockwise, towards larger addresses (the successor);
//! **left** is counter-clockwise, towards smaller addresses (the predecessor).

use super::key::NodeKey;
use core::fmt;

/// A position on the ring.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Addr(pub u128);

impl Addr {
    /// The address of a node key: the first 16 bytes of
    /// SHA-256("ringvpn-addr" ‖ key), big-endian.
    pub fn of_key(key: &NodeKey) -> Addr {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(b"ringvpn-addr");
        ctx.update(&key.0);
        let d = ctx.finish();
        let mut b = [0u8; 16];
        b.copy_from_slice(&d.as_ref()[..16]);
        Addr(u128::from_be_bytes(b))
    }

    /// All 32 hex digits (the form `ringvpn ring-ping` takes).
    pub fn to_hex(self) -> String {
        format!("{:032x}", self.0)
    }

    pub fn from_hex(s: &str) -> Option<Addr> {
        if s.len() != 32 {
            return None;
        }
        u128::from_str_radix(s, 16).ok().map(Addr)
    }

    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }

    pub fn from_bytes(b: [u8; 16]) -> Addr {
        Addr(u128::from_be_bytes(b))
    }

    /// Distance going right (clockwise) from `self` to `to`.
    pub fn right_dist(self, to: Addr) -> u128 {
        to.0.wrapping_sub(self.0)
    }

    /// Distance going left (counter-clockwise) from `self` to `to`.
    pub fn left_dist(self, to: Addr) -> u128 {
        self.0.wrapping_sub(to.0)
    }

    /// Ring distance: the shorter way round.
    pub fn distance(self, to: Addr) -> u128 {
        self.right_dist(to).min(self.left_dist(to))
    }

    /// Is `x` strictly inside the arc going right from `self` to `to`?
    pub fn arc_contains(self, to: Addr, x: Addr) -> bool {
        let d = self.right_dist(x);
        d != 0 && d < self.right_dist(to)
    }

    /// The address `d` to the right (negative: to the left).
    pub fn offset(self, d: i128) -> Addr {
        Addr(self.0.wrapping_add(d as u128))
    }
}

impl fmt::Debug for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Addr({:032x})", self.0)
    }
}

impl fmt::Display for Addr {
    /// The first 8 bytes in hex: enough to tell nodes apart in logs and status.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", (self.0 >> 64) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u128 = u128::MAX;

    #[test]
    fn distances_wrap_around() {
        let a = Addr(MAX - 5);
        let b = Addr(4);
        assert_eq!(a.right_dist(b), 10);
        assert_eq!(b.left_dist(a), 10);
        assert_eq!(a.distance(b), 10);
        assert_eq!(b.distance(a), 10);
        assert_eq!(a.left_dist(b), MAX - 9);
        assert_eq!(Addr(0).distance(Addr(1 << 127)), 1 << 127);
        assert_eq!(Addr(7).distance(Addr(7)), 0);
    }

    #[test]
    fn arcs_across_zero() {
        let (a, b) = (Addr(MAX - 1), Addr(3));
        assert!(a.arc_contains(b, Addr(MAX)));
        assert!(a.arc_contains(b, Addr(0)));
        assert!(a.arc_contains(b, Addr(2)));
        assert!(!a.arc_contains(b, Addr(3)), "end is exclusive");
        assert!(!a.arc_contains(b, a), "start is exclusive");
        assert!(!a.arc_contains(b, Addr(100)));
        assert!(b.arc_contains(a, Addr(100)));
    }

    #[test]
    fn offsets_and_bytes() {
        assert_eq!(Addr(1).offset(-2), Addr(MAX));
        assert_eq!(Addr(MAX).offset(3), Addr(2));
        let a = Addr(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10);
        assert_eq!(a.to_bytes()[0], 1);
        assert_eq!(Addr::from_bytes(a.to_bytes()), a);
        assert_eq!(a.to_string(), "0102030405060708");
        assert_eq!(Addr::from_hex(&a.to_hex()), Some(a));
        assert_eq!(Addr::from_hex("12"), None);
    }

    #[test]
    fn key_hash_is_stable_and_spread() {
        let a = Addr::of_key(&NodeKey([1; 32]));
        assert_eq!(a, Addr::of_key(&NodeKey([1; 32])));
        assert_ne!(a, Addr::of_key(&NodeKey([2; 32])));
    }
}
