//! Per-principal rate limits: one token bucket per (principal, kind), holding
//! up to one second's worth of calls and refilled continuously. Time is a
//! parameter, so tests step it by hand.
//!
//! Bound: at most [`MAX_BUCKETS`] buckets. Past it, full buckets are dropped:
//! a full bucket is exactly what a new one would be, so nothing is forgotten.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Most buckets kept before full ones are swept.
pub const MAX_BUCKETS: usize = 100_000;

/// Which budget a call draws on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateKind {
    /// Publish, send, WebSocket `publish`.
    Publish,
    /// Receive, and each receive of a WebSocket push subscription.
    Receive,
}

impl RateKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Publish => "publish",
            Self::Receive => "receive",
        }
    }
}

/// Calls per second; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RateLimits {
    pub publish: Option<f64>,
    pub receive: Option<f64>,
}

impl RateLimits {
    pub fn of(&self, kind: RateKind) -> Option<f64> {
        match kind {
            RateKind::Publish => self.publish,
            RateKind::Receive => self.receive,
        }
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
    /// Calls per second (a principal's rate is fixed while the server runs).
    rate: f64,
}

/// Every principal's buckets.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<(Arc<str>, RateKind), Bucket>>,
}

impl RateLimiter {
    /// Takes one call from `key`'s bucket at `rate` per second, or answers
    /// how long until one is there.
    pub fn take(
        &self,
        key: &Arc<str>,
        kind: RateKind,
        rate: f64,
        now: Instant,
    ) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(&(key.clone(), kind)) {
            buckets.retain(|_, b| refilled(b, now) < capacity(b.rate));
        }
        let b = buckets.entry((key.clone(), kind)).or_insert(Bucket {
            tokens: capacity(rate),
            last: now,
            rate,
        });
        b.rate = rate;
        b.tokens = refilled(b, now);
        b.last = now.max(b.last);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / rate))
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.buckets.lock().map(|b| b.len()).unwrap_or(0)
    }
}

/// One second's worth of calls; a rate below one call per second still
/// allows one call at a time.
fn capacity(rate: f64) -> f64 {
    rate.max(1.0)
}

fn refilled(b: &Bucket, now: Instant) -> f64 {
    let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
    (b.tokens + elapsed * b.rate).min(capacity(b.rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_holds_one_second_and_refills() {
        let l = RateLimiter::default();
        let k: Arc<str> = Arc::from("key:ci");
        let t0 = Instant::now();
        assert!(l.take(&k, RateKind::Publish, 2.0, t0).is_ok());
        assert!(l.take(&k, RateKind::Publish, 2.0, t0).is_ok());
        let wait = l
            .take(&k, RateKind::Publish, 2.0, t0)
            .expect_err("the third call within the same instant is over");
        assert_eq!(wait, Duration::from_millis(500));
        // Half a second later one call is back.
        let t1 = t0 + Duration::from_millis(500);
        assert!(l.take(&k, RateKind::Publish, 2.0, t1).is_ok());
        assert!(l.take(&k, RateKind::Publish, 2.0, t1).is_err());
        // The receive budget is separate.
        assert!(l.take(&k, RateKind::Receive, 2.0, t1).is_ok());
    }

    #[test]
    fn principals_do_not_share_a_bucket() {
        let l = RateLimiter::default();
        let a: Arc<str> = Arc::from("key:a");
        let b: Arc<str> = Arc::from("key:b");
        let t0 = Instant::now();
        assert!(l.take(&a, RateKind::Publish, 1.0, t0).is_ok());
        assert!(l.take(&a, RateKind::Publish, 1.0, t0).is_err());
        assert!(l.take(&b, RateKind::Publish, 1.0, t0).is_ok());
    }

    #[test]
    fn slow_rates_wait_longer_than_a_second() {
        let l = RateLimiter::default();
        let k: Arc<str> = Arc::from("jwt:slow");
        let t0 = Instant::now();
        assert!(l.take(&k, RateKind::Receive, 0.25, t0).is_ok());
        let wait = l
            .take(&k, RateKind::Receive, 0.25, t0)
            .expect_err("one call per four seconds");
        assert_eq!(wait, Duration::from_secs(4));
        assert!(l
            .take(&k, RateKind::Receive, 0.25, t0 + Duration::from_secs(4))
            .is_ok());
    }

    #[test]
    fn full_buckets_are_swept_past_the_bound() {
        let l = RateLimiter::default();
        let t0 = Instant::now();
        for i in 0..MAX_BUCKETS {
            let k: Arc<str> = Arc::from(format!("jwt:{i}").as_str());
            assert!(l.take(&k, RateKind::Publish, 10.0, t0).is_ok());
        }
        assert_eq!(l.len(), MAX_BUCKETS);
        // A second later every bucket is full again and can go.
        let k: Arc<str> = Arc::from("jwt:new");
        let t1 = t0 + Duration::from_secs(1);
        assert!(l.take(&k, RateKind::Publish, 10.0, t1).is_ok());
        assert_eq!(l.len(), 1);
    }
}
