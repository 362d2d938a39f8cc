//! Sliding anti-replay window over 64-bit message counters (RFC 6479 style:
//! a ring of bitmap words, so advancing never shifts the whole bitmap).

const WORDS: usize = 33;
/// Counters more than this far behind the newest are refused. 2048 tolerates
/// the reordering of batched, multi-queue paths at multi-gigabit rates.
pub const WINDOW: u64 = ((WORDS - 1) * 64) as u64;

#[derive(Clone, Debug)]
pub struct ReplayWindow {
    /// One past the highest accepted counter (0: nothing accepted yet).
    top: u64,
    bits: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        ReplayWindow {
            top: 0,
            bits: [0; WORDS],
        }
    }
}

impl ReplayWindow {
    fn slot(c: u64) -> (usize, u64) {
        (((c >> 6) % WORDS as u64) as usize, 1u64 << (c & 63))
    }

    /// One past the highest counter accepted (0: none yet).
    pub fn top(&self) -> u64 {
        self.top
    }

    /// Would `counter` be accepted? Cheap: run it before decrypting.
    pub fn check(&self, counter: u64) -> bool {
        if counter >= self.top {
            return true;
        }
        if self.top - 1 - counter >= WINDOW {
            return false;
        }
        let (w, bit) = Self::slot(counter);
        self.bits[w] & bit == 0
    }

    /// Records an authenticated counter; false if it is a replay or too old.
    #[inline]
    pub fn accept(&mut self, counter: u64) -> bool {
        if !self.check(counter) {
            return false;
        }
        if counter >= self.top {
            let new_word = counter >> 6;
            let fresh = if self.top == 0 {
                0
            } else {
                (new_word - ((self.top - 1) >> 6)).min(WORDS as u64)
            };
            for i in 0..fresh {
                self.bits[((new_word - i) % WORDS as u64) as usize] = 0;
            }
            self.top = counter + 1;
        }
        let (w, bit) = Self::slot(counter);
        self.bits[w] |= bit;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_and_duplicates() {
        let mut w = ReplayWindow::default();
        for c in 0..5000 {
            assert!(w.accept(c));
            assert!(!w.accept(c));
        }
    }

    #[test]
    fn reordering_inside_window_is_accepted_once() {
        let mut w = ReplayWindow::default();
        assert!(w.accept(3000));
        assert!(w.accept(3000 - WINDOW + 1));
        assert!(!w.accept(3000 - WINDOW)); // just outside
        assert!(w.accept(2999));
        assert!(!w.accept(2999));
        assert!(w.accept(0) == (3000 - 1 < WINDOW));
    }

    #[test]
    fn big_jump_clears_stale_bits() {
        let mut w = ReplayWindow::default();
        for c in 0..100 {
            assert!(w.accept(c));
        }
        // Jump far ahead: the old bits must not alias onto new counters.
        assert!(w.accept(1_000_000));
        for c in (1_000_000 - WINDOW + 1)..1_000_000 {
            assert!(w.check(c), "counter {c} wrongly marked seen");
        }
        // Jump by exactly one word boundary many times.
        let mut w = ReplayWindow::default();
        let mut c = 0;
        for _ in 0..200 {
            assert!(w.accept(c));
            assert!(w.check(c + 1));
            c += 64;
        }
    }

    #[test]
    fn matches_a_simple_model() {
        use crate::rand::{Rng, SeededRng};
        use std::collections::BTreeSet;
        let mut rng = SeededRng::new(42);
        let mut w = ReplayWindow::default();
        let mut seen = BTreeSet::new();
        let mut top = 0u64;
        for _ in 0..20_000 {
            let c = (top + rng.below(100)).saturating_sub(rng.below(2300));
            let model = !seen.contains(&c) && (c >= top || top - 1 - c < WINDOW);
            assert_eq!(w.accept(c), model, "counter {c} top {top}");
            if model {
                seen.insert(c);
                top = top.max(c + 1);
            }
        }
    }
}
