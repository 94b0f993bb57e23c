//! Time as milliseconds since the Unix epoch, and the clock that is injected into
//! everything with a deadline. The queue engine never reads a clock: each call
//! takes `now`, so tests advance a [`ManualClock`] instead of sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

/// A source of "now".
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> Millis;
}

/// Wall-clock time that never goes backwards within this process (a step back of
/// the system clock holds time still instead of reordering deadlines).
#[derive(Debug, Default)]
pub struct SystemClock {
    last: AtomicU64,
}

impl SystemClock {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> Millis {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let prev = self.last.fetch_max(wall, Ordering::Relaxed);
        prev.max(wall)
    }
}

/// A clock that moves only when told to; for tests.
#[derive(Debug)]
pub struct ManualClock {
    now: AtomicU64,
}

impl ManualClock {
    pub fn new(start: Millis) -> Self {
        Self {
            now: AtomicU64::new(start),
        }
    }

    pub fn advance(&self, ms: Millis) {
        self.now.fetch_add(ms, Ordering::Relaxed);
    }

    pub fn set(&self, ms: Millis) {
        self.now.store(ms, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> Millis {
        self.now.load(Ordering::Relaxed)
    }
}

/// Formats `ms` as RFC 3339 with millisecond precision in UTC
/// (`2025-11-24T16:00:00.123Z`). Hand-written because it runs twice per
/// delivered message; checked against the `time` crate in the tests.
pub fn format_rfc3339(ms: Millis) -> String {
    let mut out = String::with_capacity(24);
    write_rfc3339(&mut out, ms);
    out
}

/// Appends `ms` as `YYYY-MM-DDTHH:MM:SS.mmmZ` (no allocation).
pub fn write_rfc3339(out: &mut String, ms: Millis) {
    let secs = ms / 1000;
    let millis = ms % 1000;
    let days = (secs / 86_400) as i64;
    let sod = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    // Fixed-width decimal of a `v` with at most `width` digits.
    let push = |out: &mut String, v: u64, width: u32| {
        for i in (0..width).rev() {
            let digit = (v / 10u64.pow(i)) % 10;
            out.push(char::from(b'0' + digit as u8));
        }
    };
    let y = y.max(0) as u64;
    if y > 9999 {
        out.push_str(&y.to_string());
    } else {
        push(out, y, 4);
    }
    out.push('-');
    push(out, m, 2);
    out.push('-');
    push(out, d, 2);
    out.push('T');
    push(out, sod / 3600, 2);
    out.push(':');
    push(out, sod % 3600 / 60, 2);
    out.push(':');
    push(out, sod % 60, 2);
    out.push('.');
    push(out, millis, 3);
    out.push('Z');
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u64, u64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u64;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u64;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Parses an RFC 3339 timestamp (any offset) into epoch milliseconds.
/// Times before the epoch are clamped to 0.
pub fn parse_rfc3339(s: &str) -> Option<Millis> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    let ms = t.unix_timestamp_nanos() / 1_000_000;
    Some(ms.clamp(0, i128::from(u64::MAX)) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_milliseconds() {
        let ms = 1_764_000_000_123;
        let s = format_rfc3339(ms);
        assert_eq!(s, "2025-11-24T16:00:00.123Z");
        assert_eq!(parse_rfc3339(&s), Some(ms));
        assert_eq!(parse_rfc3339("2025-11-24T17:00:00.123+01:00"), Some(ms));
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn hand_written_formatter_agrees_with_the_time_crate() {
        let fmt = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        );
        let mut ms: u64 = 0;
        // Every ~3.7 days across 1970..2300, plus leap-day edges.
        while ms < 10_413_792_000_000 {
            let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
                .expect("in range");
            assert_eq!(format_rfc3339(ms), t.format(&fmt).expect("formats"), "{ms}");
            ms += 321_987_654;
        }
        assert_eq!(format_rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00.000Z");
        // A year past 9999 keeps all its digits.
        assert_eq!(
            format_rfc3339(253_402_300_800_000),
            "10000-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(1000);
        assert_eq!(c.now_ms(), 1000);
        c.advance(500);
        assert_eq!(c.now_ms(), 1500);
    }
}
