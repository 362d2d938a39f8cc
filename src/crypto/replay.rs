//! Sliding anti-replay window over 64-bit message counters (RFC 6479 style:
//! a ring of bitmap words, so advancing never shifts the whole bitmap).
//!
//! Two sizes: a session starts with a [`QuietWindow`] of 256 counters (a
//! quiet session, overlay upkeep every few seconds, never reorders that
//! far, and one that has received fewer than 256 messages has every
//! counter it ever took inside it) and takes the full window of 2,048 with
//! its expanded keys once busy ([`ReplayWindow::widen`]). Most of a
//! member's sessions are quiet: the full window would be two thirds of
//! each.

/// Words of the full window.
const WORDS: usize = 33;
/// Counters more than this far behind the newest are refused. 2048 tolerates
/// the reordering of batched, multi-queue paths at multi-gigabit rates.
pub const WINDOW: u64 = ((WORDS - 1) * 64) as u64;

/// The window of a quiet session: 256 counters.
pub type QuietWindow = ReplayWindow<5>;

#[derive(Clone, Debug)]
pub struct ReplayWindow<const W: usize = WORDS> {
    /// One past the highest accepted counter (0: nothing accepted yet).
    top: u64,
    bits: [u64; W],
}

impl<const W: usize> Default for ReplayWindow<W> {
    fn default() -> Self {
        ReplayWindow {
            top: 0,
            bits: [0; W],
        }
    }
}

impl<const W: usize> ReplayWindow<W> {
    /// Counters more than this far behind the newest are refused.
    pub const SPAN: u64 = ((W - 1) * 64) as u64;

    fn slot(c: u64) -> (usize, u64) {
        (((c >> 6) % W as u64) as usize, 1u64 << (c & 63))
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
        if self.top - 1 - counter >= Self::SPAN {
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
                (new_word - ((self.top - 1) >> 6)).min(W as u64)
            };
            for i in 0..fresh {
                self.bits[((new_word - i) % W as u64) as usize] = 0;
            }
            self.top = counter + 1;
        }
        let (w, bit) = Self::slot(counter);
        self.bits[w] |= bit;
        true
    }

    /// The same history in a window of `V` words (`V` ≥ `W`): counters this
    /// one refused as too old stay refused, seen ones stay seen.
    pub fn widen<const V: usize>(&self) -> ReplayWindow<V> {
        debug_assert!(V >= W);
        let mut wide = ReplayWindow::<V>::default();
        if self.top == 0 {
            return wide;
        }
        wide.top = self.top;
        // Everything below our span counts as seen in the wider one.
        let low = self.top.saturating_sub(Self::SPAN);
        for c in self.top.saturating_sub(ReplayWindow::<V>::SPAN)..self.top {
            if c < low || !self.check(c) {
                let (w, bit) = ReplayWindow::<V>::slot(c);
                wide.bits[w] |= bit;
            }
        }
        wide
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_and_duplicates() {
        let mut w: ReplayWindow = ReplayWindow::default();
        for c in 0..5000 {
            assert!(w.accept(c));
            assert!(!w.accept(c));
        }
    }

    #[test]
    fn reordering_inside_window_is_accepted_once() {
        let mut w: ReplayWindow = ReplayWindow::default();
        assert!(w.accept(3000));
        assert!(w.accept(3000 - WINDOW + 1));
        assert!(!w.accept(3000 - WINDOW)); // just outside
        assert!(w.accept(2999));
        assert!(!w.accept(2999));
        assert!(w.accept(0) == (3000 - 1 < WINDOW));
    }

    #[test]
    fn big_jump_clears_stale_bits() {
        let mut w: ReplayWindow = ReplayWindow::default();
        for c in 0..100 {
            assert!(w.accept(c));
        }
        // Jump far ahead: the old bits must not alias onto new counters.
        assert!(w.accept(1_000_000));
        for c in (1_000_000 - WINDOW + 1)..1_000_000 {
            assert!(w.check(c), "counter {c} wrongly marked seen");
        }
        // Jump by exactly one word boundary many times.
        let mut w: ReplayWindow = ReplayWindow::default();
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
        let mut w: ReplayWindow = ReplayWindow::default();
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

    /// A quiet window widened mid-stream refuses exactly what it refused
    /// (seen, or older than its span) and then behaves as a full one.
    #[test]
    fn a_widened_window_keeps_its_history() {
        use crate::rand::{Rng, SeededRng};
        use std::collections::BTreeSet;
        for seed in 1..20 {
            let mut rng = SeededRng::new(seed);
            let mut quiet = QuietWindow::default();
            let mut seen = BTreeSet::new();
            let mut top = 0u64;
            let steps = rng.below(600);
            for _ in 0..steps {
                let c = (top + rng.below(40)).saturating_sub(rng.below(300));
                let model = !seen.contains(&c) && (c >= top || top - 1 - c < QuietWindow::SPAN);
                assert_eq!(quiet.accept(c), model, "counter {c} top {top}");
                if model {
                    seen.insert(c);
                    top = top.max(c + 1);
                }
            }
            let wide: ReplayWindow = quiet.widen();
            assert_eq!(wide.top(), quiet.top());
            for c in top.saturating_sub(2 * WINDOW)..top + 70 {
                assert_eq!(
                    wide.check(c),
                    quiet.check(c),
                    "seed {seed}: counter {c} top {top}"
                );
            }
            // From here on the wide window takes reordering the quiet
            // one could not: a counter 1,000 behind a new top.
            let mut wide = wide;
            assert!(wide.accept(top + 1500));
            let old = top + 1500 - 1000;
            assert_eq!(wide.accept(old), !seen.contains(&old));
        }
    }
}
