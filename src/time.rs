//! The core's own notion of time.
//!
//! The sans-IO core never reads a clock: every `handle_*` call is given `now`.
//! An [`Instant`] is an integer count of microseconds from an arbitrary origin
//! chosen by whoever drives the core (the mio shell uses process start, the
//! simulator uses zero), so virtual time and real time look the same to the core.

use core::num::NonZeroU64;
use core::ops::{Add, Sub};
use std::time::Duration;

/// A point in monotonic time, in microseconds from the driver's origin.
///
/// Held as microseconds + 1 in a `NonZeroU64`: the niche makes an
/// `Option<Instant>` 8 bytes, not 16, and a peer holds a dozen of them.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Instant(NonZeroU64);

impl Default for Instant {
    fn default() -> Instant {
        Instant::ZERO
    }
}

impl Instant {
    pub const ZERO: Instant = Instant::from_micros(0);

    /// `us` microseconds after the origin (the last microsecond of `u64`
    /// is out of reach: it saturates one short of it).
    pub const fn from_micros(us: u64) -> Instant {
        match NonZeroU64::new(us.saturating_add(1)) {
            Some(v) => Instant(v),
            None => Instant(NonZeroU64::MIN), // unreachable: us + 1 > 0
        }
    }

    pub const fn from_millis(ms: u64) -> Instant {
        Instant::from_micros(ms.saturating_mul(1000))
    }

    pub const fn as_micros(self) -> u64 {
        self.0.get() - 1
    }

    /// Time elapsed since `earlier`, or zero if `earlier` is in the future.
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration::from_micros(self.0.get().saturating_sub(earlier.0.get()))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        Instant::from_micros(
            self.as_micros()
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
/// A duration of up to 71 minutes in 32 bits of microseconds (longer ones
/// saturate): what a peer entry keeps its round trips in, a quarter of an
/// `Option<Duration>`'s size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ShortDuration(u32);

impl From<Duration> for ShortDuration {
    fn from(d: Duration) -> ShortDuration {
        ShortDuration(u32::try_from(d.as_micros()).unwrap_or(u32::MAX))
    }
}

impl From<ShortDuration> for Duration {
    fn from(d: ShortDuration) -> Duration {
        Duration::from_micros(u64::from(d.0))
    }
}

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

/// A Unix time in UTC: (year, month, day, hour, minute, second), by
/// Howard Hinnant's civil-from-days (no date crate for two formatters).
pub fn utc_parts(unix_secs: u64) -> (i64, u64, u64, u64, u64, u64) {
    let (days, rem) = (unix_secs / 86_400, unix_secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month as u64,
        day as u64,
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
    )
}

/// `unix_us` (microseconds since the Unix epoch) as an RFC 3339 UTC time
/// with milliseconds, `2026-12-05T06:10:00.123Z` (log lines).
pub fn utc_rfc3339(unix_us: u64) -> String {
    let (y, mo, d, h, mi, s) = utc_parts(unix_us / 1_000_000);
    let ms = (unix_us / 1000) % 1000;
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_optional_instant_costs_no_more_than_one() {
        assert_eq!(std::mem::size_of::<Option<Instant>>(), 8);
        assert_eq!(Instant::default(), Instant::ZERO);
        assert_eq!(Instant::ZERO.as_micros(), 0);
        let t = Instant::from_micros(5) + Duration::from_micros(7);
        assert_eq!(t.as_micros(), 12);
        assert!(Instant::ZERO < t);
        assert_eq!(t - Instant::from_millis(1), Duration::ZERO);
        assert_eq!(t.saturating_since(Instant::from_micros(2)).as_micros(), 10);
        // Saturates one short of u64::MAX, never wraps.
        let end = Instant::from_micros(u64::MAX - 3) + Duration::from_secs(1);
        assert_eq!(end.as_micros(), u64::MAX - 1);
        assert_eq!(Instant::from_micros(u64::MAX), end);
    }

    #[test]
    fn arithmetic_saturates() {
        let t = Instant::from_millis(5);
        assert_eq!((t + Duration::from_millis(3)).as_micros(), 8000);
        assert_eq!(Instant::ZERO - t, Duration::ZERO);
        assert_eq!(t - Instant::ZERO, Duration::from_millis(5));
        assert_eq!(earliest(Some(t), None), Some(t));
        assert_eq!(earliest(Some(t), Some(Instant::ZERO)), Some(Instant::ZERO));
    }

    #[test]
    fn wall_times_read_as_utc() {
        assert_eq!(utc_rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc_rfc3339(951_782_400_000_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(
            utc_rfc3339(1_796_450_400_123_456),
            "2026-12-05T06:00:00.123Z"
        );
    }
}
