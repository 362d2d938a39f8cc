//! The core's own notion of time.
//!
//! The sans-IO core never reads a clock: every `handle_*` call is given `now`.
//! An [`Instant`] is an integer count of microseconds from an arbitrary origin
//! chosen by whoever drives the core (the mio shell uses process start, the
//! simulator uses zero), so virtual time and real time look the same to the core.

use core::ops::{Add, Sub};
use std::time::Duration;

/// A point in monotonic time, in microseconds from the driver's origin.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Instant(u64);

impl Instant {
    pub const ZERO: Instant = Instant(0);

    pub const fn from_micros(us: u64) -> Instant {
        Instant(us)
    }

    pub const fn from_millis(ms: u64) -> Instant {
        Instant(ms * 1000)
    }

    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// Time elapsed since `earlier`, or zero if `earlier` is in the future.
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        Instant(
            self.0
                .saturating_add(d.as_micros().min(u64::MAX as u128) as u64),
        )
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_since(earlier)
    }
}

/// Unix seconds at `now`, for a clock whose `Instant::ZERO` was
/// `origin_us` µs after 1970 (the shell reads the wall clock once; the
/// core only ever adds to it).
pub fn unix_secs(origin_us: u64, now: Instant) -> u64 {
    origin_us.saturating_add(now.as_micros()) / 1_000_000
}

/// The earlier of two optional deadlines.
pub fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Instant::from_millis(5);
        assert_eq!((t + Duration::from_millis(3)).as_micros(), 8000);
        assert_eq!(Instant::ZERO - t, Duration::ZERO);
        assert_eq!(t - Instant::ZERO, Duration::from_millis(5));
        assert_eq!(earliest(Some(t), None), Some(t));
        assert_eq!(earliest(Some(t), Some(Instant::ZERO)), Some(Instant::ZERO));
    }
}
