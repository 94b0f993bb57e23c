//! Measuring a run: one monotonic clock for the whole process, shared atomic
//! counters the progress bar and the report read, and latency histograms
//! (one per consumer task, merged at the end, so recording takes no lock).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency a histogram records exactly; longer ones are clamped to it
/// (and still counted). An hour is far beyond any sane bench run.
const MAX_TRACKED_NS: u64 = 3_600_000_000_000;

/// Significant figures of the histograms (0.1 % resolution).
const SIGNIFICANT_FIGURES: u8 = 3;

/// Nanoseconds since the run began, on a process-local monotonic clock.
/// Publishers stamp messages with it and consumers in the same process read
/// it back, so no clock synchronisation is involved.
#[derive(Debug, Clone, Copy)]
pub struct RunClock {
    origin: Instant,
}

impl RunClock {
    pub fn start() -> Self {
        Self {
            origin: Instant::now(),
        }
    }

    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A latency histogram in nanoseconds.
#[derive(Debug, Clone)]
pub struct Latency {
    histogram: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    pub fn new() -> Self {
        Self {
            histogram: Histogram::new_with_bounds(1, MAX_TRACKED_NS, SIGNIFICANT_FIGURES)
                .expect("constant histogram bounds are valid"),
        }
    }

    pub fn record_ns(&mut self, ns: u64) {
        self.histogram.saturating_record(ns.max(1));
    }

    pub fn merge(&mut self, other: &Latency) {
        // Both histograms have the same bounds, which is all `add` needs.
        let _ = self.histogram.add(&other.histogram);
    }

    /// Percentiles in microseconds; `None` when nothing was recorded.
    pub fn summary(&self) -> Option<LatencySummary> {
        if self.histogram.is_empty() {
            return None;
        }
        let us = |ns: u64| ns as f64 / 1_000.0;
        let h = &self.histogram;
        Some(LatencySummary {
            count: h.len(),
            min: us(h.min()),
            mean: h.mean() / 1_000.0,
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
        })
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

/// Counters shared by every task of a run. Relaxed ordering throughout: they
/// are tallies read for progress and at the end (after the tasks are joined),
/// never used to order other memory.
#[derive(Debug, Default)]
pub struct Counters {
    /// Messages the server confirmed.
    pub published: AtomicU64,
    /// Messages in failed publish requests or failed batch entries.
    pub publish_errors: AtomicU64,
    /// First deliveries of a copy (any message, any queue).
    pub delivered: AtomicU64,
    /// Failed receive calls (HTTP) or subscription failures (WebSocket).
    pub receive_errors: AtomicU64,
    /// Receipts whose ack failed (a failed call counts all its receipts).
    pub ack_errors: AtomicU64,
    /// [`RunClock`] times: first request out, last publish answered, last
    /// first delivery. 0 = not yet.
    pub first_publish_ns: AtomicU64,
    pub last_confirm_ns: AtomicU64,
    pub last_delivery_ns: AtomicU64,
    /// The worst lateness of a paced publisher behind its schedule.
    pub max_lag_ns: AtomicU64,
    /// Consumers connected and subscribed.
    pub consumers_ready: AtomicU64,
}

impl Counters {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Marks the first publish, once.
    pub fn mark_first_publish(&self, ns: u64) {
        let _ = self.first_publish_ns.compare_exchange(
            0,
            ns.max(1),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    pub fn mark_max(counter: &AtomicU64, ns: u64) {
        counter.fetch_max(ns, Ordering::Relaxed);
    }
}

/// `count` per second over `span_ns`; 0 for an empty span.
pub fn rate(count: u64, span_ns: u64) -> f64 {
    if span_ns == 0 {
        0.0
    } else {
        count as f64 * 1e9 / span_ns as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_out_in_microseconds() {
        let mut a = Latency::new();
        let mut b = Latency::new();
        for i in 1..=500u64 {
            a.record_ns(i * 1_000);
            b.record_ns((500 + i) * 1_000);
        }
        a.merge(&b);
        let s = a.summary().expect("recorded");
        assert_eq!(s.count, 1_000);
        assert!((s.p50 - 500.0).abs() < 1.0, "{s:?}");
        assert!((s.max - 1_000.0).abs() < 1.0, "{s:?}");
        assert!(Latency::new().summary().is_none());
    }

    #[test]
    fn rates_per_second() {
        assert_eq!(rate(500, 500_000_000), 1_000.0);
        assert_eq!(rate(5, 0), 0.0);
    }
}
