//! Randomness for protocol decisions.
//!
//! Protocol choices (session indices, retry jitter) draw from the [`Rng`]
//! trait so that the simulator can seed them and replay a run bit for bit.
//! Key material never comes from here: ring's sealed `SecureRandom` is used
//! for ephemeral keys, the one place the core takes OS randomness.

/// A source of random numbers for protocol decisions (not for keys).
pub trait Rng {
    fn next_u64(&mut self) -> u64;

    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// A uniformly distributed value in `0..bound` (`bound > 0`).
    fn below(&mut self, bound: u64) -> u64 {
        // Lemire's multiply-shift: unbiased enough for jitter and indices.
        ((self.next_u64() as u128 * bound as u128) >> 64) as u64
    }
}

/// xoshiro256** seeded through splitmix64: fast, small, deterministic.
#[derive(Clone, Debug)]
pub struct SeededRng {
    s: [u64; 4],
}

impl SeededRng {
    pub fn new(seed: u64) -> SeededRng {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        SeededRng {
            s: [next(), next(), next(), next()],
        }
    }

    /// Seeded from the OS: the shell's choice for a real daemon.
    pub fn from_os() -> SeededRng {
        use ring::rand::SecureRandom;
        let mut seed = [0u8; 8];
        // SystemRandom only fails when the OS has no entropy source at all.
        let _ = ring::rand::SystemRandom::new().fill(&mut seed);
        SeededRng::new(u64::from_le_bytes(seed))
    }

    /// A seed for another generator (e.g. a node's, from the shell's).
    pub fn next_seed(&mut self) -> u64 {
        self.next_u64()
    }
}

impl Rng for SeededRng {
    fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_is_deterministic_and_bounded() {
        let mut a = SeededRng::new(7);
        let mut b = SeededRng::new(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
            assert!(a.below(10) < 10);
            b.below(10);
        }
        assert_ne!(SeededRng::new(1).next_u64(), SeededRng::new(2).next_u64());
    }
}
