//! Unguessable request ids: a keyed hash of a counter.
//!
//! A routed answer names its source, but anyone may write any source
//! there, so an answer is matched to our request by an id only the
//! request's path has seen. Counted-up ids let a member guess the next
//! one from any it saw; a hash of the counter under a key only this node
//! holds (derived from its private key and a per-start seed) does not.

use ring::digest::{Context, SHA256};

pub struct Tokens {
    key: [u8; 32],
    made: u64,
}

impl Tokens {
    /// Ids under `key`; `domain` keeps two users of one key apart.
    pub fn new(key: [u8; 32], domain: u8) -> Tokens {
        let mut t = Tokens { key, made: 0 };
        t.set_key(key, domain);
        t
    }

    /// Keys the ids (the node calls this once it holds its secret).
    pub fn set_key(&mut self, key: [u8; 32], domain: u8) {
        let mut ctx = Context::new(&SHA256);
        ctx.update(&key);
        ctx.update(&[domain]);
        self.key.copy_from_slice(ctx.finish().as_ref());
    }

    /// The next id.
    pub fn next(&mut self) -> u64 {
        self.made += 1;
        let mut ctx = Context::new(&SHA256);
        ctx.update(&self.key);
        ctx.update(&self.made.to_be_bytes());
        u64::from_be_bytes(ctx.finish().as_ref()[..8].try_into().expect("8 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_differ_by_key_domain_and_count() {
        let mut a = Tokens::new([1; 32], 0);
        let mut b = Tokens::new([1; 32], 1);
        let mut c = Tokens::new([2; 32], 0);
        let (a1, a2) = (a.next(), a.next());
        assert_ne!(a1, a2);
        assert_ne!(a1, b.next());
        assert_ne!(a1, c.next());
        let mut again = Tokens::new([1; 32], 0);
        assert_eq!(again.next(), a1, "deterministic under one key");
    }
}
