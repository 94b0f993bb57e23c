//! The result of a run: one struct, printed as a table for a person or as
//! one JSON object (`--json`) for a script. Field names are the JSON's and
//! are documented in `docs/bench.md`.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use super::harness::RunState;
use super::stats::{rate, Counters, Latency, LatencySummary};
use super::verify::Verdict;

/// Everything a run measured and checked.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub workload: &'static str,
    /// No losses, no duplicates, nothing unexpected, FIFO order kept.
    pub ok: bool,
    /// Why `ok` is false, one sentence each.
    pub problems: Vec<String>,
    pub server: String,
    /// The shape of the run in words (also the table's first line).
    pub setup: String,
    /// The effective settings, flag by flag.
    pub settings: Value,
    /// Messages the server confirmed.
    pub published: u64,
    /// `published` per second, from the first request to the last answer.
    pub publish_rate: f64,
    /// Queues (or subscribers) each message should reach.
    pub queues: u64,
    /// `published × queues`.
    pub expected: u64,
    /// Distinct copies of confirmed messages delivered.
    pub delivered: u64,
    /// `delivered` per second, from the first publish to the last first delivery.
    pub delivered_rate: f64,
    /// Publish → first delivery, per copy, in microseconds.
    pub latency_us: Option<LatencySummary>,
    pub losses: u64,
    pub duplicates: u64,
    pub redeliveries: u64,
    pub unexpected: u64,
    pub unconfirmed_delivered: u64,
    pub errors: ErrorCounts,
    pub elapsed_seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paced: Option<PacedReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fifo: Option<FifoReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backlog: Option<BacklogReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscribers: Option<SubscribersReport>,
}

/// Failed operations. A failed publish counts its messages; they are then
/// not expected anywhere.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ErrorCounts {
    pub publish: u64,
    pub receive: u64,
    pub ack: u64,
}

/// The `latency` workload's pacing.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PacedReport {
    pub target_rate: u64,
    /// How far publishers fell behind their schedule at worst.
    pub publisher_max_lag_ms: f64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct FifoReport {
    pub groups: u32,
    pub order_violations: u64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct BacklogReport {
    pub fill_seconds: f64,
    pub fill_rate: f64,
    pub drain_seconds: f64,
    pub drain_rate: f64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct SubscribersReport {
    pub subscribers: u64,
    pub connect_seconds: f64,
    pub publishes: u64,
    /// Per publish, the time until the last subscriber had it, in microseconds.
    pub all_delivered_us: Option<LatencySummary>,
}

impl Report {
    /// The common part of every report, from a finished run's state.
    pub fn from_run(
        workload: &'static str,
        server: &str,
        setup: String,
        settings: Value,
        state: &RunState,
        latency: &Latency,
    ) -> Self {
        let verdict = state.verdict();
        let c = &state.counters;
        let first = Counters::get(&c.first_publish_ns);
        let publish_span = Counters::get(&c.last_confirm_ns).saturating_sub(first);
        let delivery_span = Counters::get(&c.last_delivery_ns).saturating_sub(first);
        let mut report = Self {
            workload,
            ok: true,
            problems: Vec::new(),
            server: server.to_string(),
            setup,
            settings,
            published: verdict.published,
            publish_rate: rate(verdict.published, publish_span),
            queues: state.ledgers() as u64,
            expected: verdict.expected,
            delivered: verdict.delivered,
            delivered_rate: rate(verdict.delivered, delivery_span),
            latency_us: latency.summary(),
            losses: verdict.losses,
            duplicates: verdict.duplicates,
            redeliveries: verdict.redeliveries,
            unexpected: verdict.unexpected,
            unconfirmed_delivered: verdict.unconfirmed_delivered,
            errors: ErrorCounts {
                publish: Counters::get(&c.publish_errors),
                receive: Counters::get(&c.receive_errors),
                ack: Counters::get(&c.ack_errors),
            },
            elapsed_seconds: state.clock.now_ns() as f64 / 1e9,
            paced: None,
            fifo: None,
            backlog: None,
            subscribers: None,
        };
        report.judge(&verdict);
        report
    }

    fn judge(&mut self, v: &Verdict) {
        let mut problems = Vec::new();
        if v.published == 0 {
            problems.push("nothing was published".to_string());
        }
        if v.losses > 0 {
            problems.push(format!("{} never delivered", copies(v.losses)));
        }
        if v.duplicates > 0 {
            problems.push(format!("{} delivered twice", copies(v.duplicates)));
        }
        if v.unexpected > 0 {
            problems.push(format!(
                "{} arrived that this run did not publish",
                messages(v.unexpected)
            ));
        }
        if v.order_violations > 0 {
            problems.push(format!(
                "{} arrived out of group order",
                messages(v.order_violations)
            ));
        }
        self.ok = v.is_clean() && v.published > 0;
        self.problems = problems;
    }

    /// The report as a table, one line per aspect.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(t, "pubq bench {} against {}", self.workload, self.server);
        let _ = writeln!(t, "  {:<12}{}", "setup", self.setup);
        if let Some(s) = &self.subscribers {
            let _ = writeln!(
                t,
                "  {:<12}{} WebSocket subscribers in {:.2} s",
                "connected",
                thousands(s.subscribers),
                s.connect_seconds
            );
        }
        if let Some(b) = &self.backlog {
            let _ = writeln!(
                t,
                "  {:<12}{} msgs in {:.2} s, {} msg/s",
                "fill",
                thousands(self.published),
                b.fill_seconds,
                thousands(b.fill_rate as u64)
            );
            let _ = writeln!(
                t,
                "  {:<12}{} msgs in {:.2} s, {} msg/s",
                "drain",
                thousands(self.delivered),
                b.drain_seconds,
                thousands(b.drain_rate as u64)
            );
        } else {
            let _ = writeln!(
                t,
                "  {:<12}{} msgs, {} msg/s",
                "published",
                thousands(self.published),
                thousands(self.publish_rate as u64)
            );
            let _ = writeln!(
                t,
                "  {:<12}{} of {} copies, {} copies/s",
                "delivered",
                thousands(self.delivered),
                thousands(self.expected),
                thousands(self.delivered_rate as u64)
            );
        }
        if let Some(l) = &self.latency_us {
            let _ = writeln!(
                t,
                "  {:<12}p50 {} · p90 {} · p99 {} · p99.9 {} · max {}",
                "latency",
                micros(l.p50),
                micros(l.p90),
                micros(l.p99),
                micros(l.p999),
                micros(l.max)
            );
        }
        if let Some(s) = self.subscribers.as_ref().and_then(|s| s.all_delivered_us) {
            let _ = writeln!(
                t,
                "  {:<12}p50 {} · p99 {} · max {} (per publish, until the last subscriber had it)",
                "all have it",
                micros(s.p50),
                micros(s.p99),
                micros(s.max)
            );
        }
        if let Some(p) = &self.paced {
            let _ = writeln!(
                t,
                "  {:<12}target {} msg/s, publishers at most {:.1} ms behind",
                "pacing",
                thousands(p.target_rate),
                p.publisher_max_lag_ms
            );
        }
        if let Some(f) = &self.fifo {
            let _ = writeln!(
                t,
                "  {:<12}{} groups, {} order violations",
                "fifo", f.groups, f.order_violations
            );
        }
        let _ = writeln!(
            t,
            "  {:<12}losses {} · duplicates {} · redeliveries {} · unexpected {}",
            "integrity", self.losses, self.duplicates, self.redeliveries, self.unexpected
        );
        let _ = writeln!(
            t,
            "  {:<12}publish {} · receive {} · ack {}",
            "errors", self.errors.publish, self.errors.receive, self.errors.ack
        );
        let verdict = if self.ok {
            "OK".to_string()
        } else {
            format!("FAILED: {}", self.problems.join("; "))
        };
        let _ = writeln!(t, "  {:<12}{verdict}", "result");
        t
    }
}

fn copies(n: u64) -> String {
    format!("{} cop{}", thousands(n), if n == 1 { "y" } else { "ies" })
}

fn messages(n: u64) -> String {
    format!("{} message{}", thousands(n), if n == 1 { "" } else { "s" })
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A duration in microseconds, in the unit that reads best.
pub fn micros(us: f64) -> String {
    if us < 1_000.0 {
        format!("{us:.0} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1_000.0)
    } else {
        format!("{:.2} s", us / 1_000_000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::bench::payload::Stamp;
    use crate::cli::bench::verify::DeliveryLedger;

    fn stamp(seq: u64) -> Stamp {
        Stamp {
            publisher: 0,
            seq,
            group: 0,
            group_seq: 0,
            sent_ns: 0,
        }
    }

    /// Three messages confirmed; the queue got `delivered` of them, each
    /// `times` times with receive count 1.
    fn report_after(delivered: u64, times: usize) -> Report {
        let state = RunState::new(1, vec![DeliveryLedger::new()]);
        {
            let mut published = state.publish_ledger();
            published.attempt(0, 3);
            for seq in 0..3 {
                published.confirm(0, seq);
            }
        }
        let batch: Vec<(Stamp, u32)> = (0..delivered).map(|s| (stamp(s), 1)).collect();
        for _ in 0..times {
            state.record_batch(0, &batch, 0, 1_000, |_, _| {});
        }
        let latency = Latency::new();
        Report::from_run(
            "fanout",
            "http://x",
            String::new(),
            Value::Null,
            &state,
            &latency,
        )
    }

    #[test]
    fn a_complete_run_is_ok() {
        let r = report_after(3, 1);
        assert!(r.ok, "{r:?}");
        assert_eq!(
            (r.published, r.expected, r.delivered, r.losses),
            (3, 3, 3, 0)
        );
        assert!(r.table().trim_end().ends_with("result      OK"));
    }

    #[test]
    fn a_run_with_losses_fails_and_says_how_many() {
        let r = report_after(2, 1);
        assert!(!r.ok);
        assert_eq!(r.losses, 1);
        assert_eq!(r.problems, vec!["1 copy never delivered".to_string()]);
        assert!(r.table().contains("FAILED: 1 copy never delivered"));
    }

    #[test]
    fn a_run_with_duplicates_fails() {
        let r = report_after(3, 2);
        assert!(!r.ok);
        assert_eq!((r.losses, r.duplicates), (0, 3));
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(micros(850.0), "850 µs");
        assert_eq!(micros(1_210.0), "1.21 ms");
        assert_eq!(micros(2_500_000.0), "2.50 s");
    }
}
