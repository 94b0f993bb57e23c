//! Publisher tasks: each builds batch bodies straight into a buffer, posts
//! them one request at a time over the shared client's keep-alive pool, and
//! records what the server confirmed. Concurrency comes from running several
//! publishers (`--publishers`).
//!
//! Pacing: as fast as answers come (`Pace::Saturate`), or at a fixed rate
//! (`Pace::Rate`), sending whatever is due in one batch, so a slow answer
//! makes the next batch bigger instead of the schedule later. Messages are
//! stamped with the moment their request is built; how far a paced publisher
//! fell behind its schedule is reported as the publisher lag.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Deserialize;

use super::harness::RunState;
use super::payload::{self, Kind, Stamp};
use super::stats::Counters;
use crate::client::{Client, ClientError, DEFAULT_REQUEST_TIMEOUT};

/// The most messages one publish request may carry (the contract's limit).
pub const MAX_BATCH: usize = 100;

/// How long a publisher keeps retrying through transient failures (server
/// unreachable, 429, 503) before it gives the run up.
const GIVE_UP_AFTER: Duration = Duration::from_secs(10);

/// Pause after a transient failure.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Where messages go.
#[derive(Debug, Clone)]
pub enum Target {
    /// `POST /v1/topics/{topic}/publish`
    Topic(String),
    /// `POST /v1/queues/{queue}/send`
    Queue(String),
}

impl Target {
    fn segments(&self) -> [&str; 4] {
        match self {
            Self::Topic(t) => ["v1", "topics", t, "publish"],
            Self::Queue(q) => ["v1", "queues", q, "send"],
        }
    }
}

/// How fast publishers go and when they stop.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// As fast as the server answers, until `messages` are out (split over the
    /// publishers) or `duration` is over, whichever is set.
    Saturate {
        messages: Option<u64>,
        duration: Option<Duration>,
    },
    /// `rate` messages per second over all publishers, for `duration`.
    Rate { rate: u64, duration: Duration },
    /// One message, then a pause of `interval`, `messages` times.
    Interval { messages: u64, interval: Duration },
}

/// What every publisher of a run does.
#[derive(Debug, Clone)]
pub struct PublishSpec {
    pub target: Target,
    pub publishers: u32,
    /// Messages per request, 1..=100.
    pub batch: usize,
    /// Body bytes per message.
    pub size: usize,
    pub kind: Kind,
    /// FIFO groups over all publishers (publisher `p` owns the groups `g`
    /// with `g % publishers == p`, so each group has one publisher and a
    /// well-defined order). Ignored on standard.
    pub groups: u32,
    pub pace: Pace,
}

impl PublishSpec {
    /// How many messages publisher `p` sends when the total is fixed.
    fn quota(&self, p: u32, total: u64) -> u64 {
        let n = u64::from(self.publishers);
        total / n + u64::from(u64::from(p) < total % n)
    }
}

/// A batch publish answer, read without building a JSON tree.
#[derive(Deserialize)]
struct PublishAnswer<'a> {
    #[serde(borrow, default)]
    results: Option<Vec<PublishEntry<'a>>>,
    #[serde(default)]
    ids: Option<Vec<serde::de::IgnoredAny>>,
}

#[derive(Deserialize)]
struct PublishEntry<'a> {
    #[serde(borrow, default)]
    error: Option<EntryErrorRef<'a>>,
}

#[derive(Deserialize)]
struct EntryErrorRef<'a> {
    #[serde(borrow)]
    code: Cow<'a, str>,
}

/// One publisher's loop. `start` is the moment all publishers begin (the
/// schedule of a paced run counts from it).
pub async fn run(
    state: Arc<RunState>,
    client: Client,
    spec: Arc<PublishSpec>,
    p: u32,
    start: Instant,
) -> anyhow::Result<()> {
    let segments = spec.target.segments();
    let groups = owned_groups(&spec, p);
    let mut group_next = vec![0u64; groups.len()];
    let mut seq: u64 = 0;
    let mut failing_since: Option<Instant> = None;
    let per_message = spec.size + 64;
    loop {
        let n = match spec.pace {
            Pace::Saturate { messages, duration } => {
                if duration.is_some_and(|d| start.elapsed() >= d) {
                    break;
                }
                let left = messages.map_or(u64::MAX, |m| spec.quota(p, m).saturating_sub(seq));
                left.min(spec.batch as u64)
            }
            Pace::Rate { rate, duration } => {
                let my_rate = rate as f64 / f64::from(spec.publishers);
                let total = (my_rate * duration.as_secs_f64()).round() as u64;
                if seq >= total {
                    break;
                }
                // Message k is due at k / rate after the start.
                let due_at = |k: u64| start + Duration::from_secs_f64(k as f64 / my_rate);
                let now = Instant::now();
                let due = ((now - start).as_secs_f64() * my_rate) as u64 + 1;
                if due <= seq {
                    tokio::time::sleep_until(due_at(seq).into()).await;
                    continue;
                }
                let lag = now.saturating_duration_since(due_at(seq));
                Counters::mark_max(&state.counters.max_lag_ns, lag.as_nanos() as u64);
                (due.min(total) - seq).min(spec.batch as u64)
            }
            Pace::Interval { messages, interval } => {
                if seq >= messages {
                    break;
                }
                if seq > 0 {
                    tokio::time::sleep(interval).await;
                }
                1
            }
        };
        if n == 0 {
            break;
        }

        let mut body = Vec::with_capacity(n as usize * per_message + 16);
        payload::begin_batch(&mut body);
        let sent_ns = state.clock.now_ns();
        for i in 0..n {
            let (group, group_seq) = if groups.is_empty() {
                (0, 0)
            } else {
                let slot = ((seq + i) % groups.len() as u64) as usize;
                let at = group_next[slot];
                group_next[slot] += 1;
                (groups[slot], at)
            };
            let stamp = Stamp {
                publisher: p,
                seq: seq + i,
                group,
                group_seq,
                sent_ns,
            };
            payload::push_message(&mut body, i == 0, &stamp, spec.size, spec.kind);
        }
        payload::end_batch(&mut body);
        state.publish_ledger().attempt(p, seq + n);
        state.counters.mark_first_publish(sent_ns);

        let answer = client
            .post_raw(&segments, body, DEFAULT_REQUEST_TIMEOUT)
            .await;
        let first = seq;
        seq += n;
        match answer {
            Ok(bytes) => {
                failing_since = None;
                confirm(&state, p, first, n, &bytes)?;
            }
            Err(e) if e.is_transient() => {
                Counters::add(&state.counters.publish_errors, n);
                let since = *failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= GIVE_UP_AFTER {
                    return Err(e).context("publishing kept failing");
                }
                log_error(&state, &e);
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            Err(e) => return Err(e).context("publish refused"),
        }
    }
    Ok(())
}

/// The groups publisher `p` owns (empty on standard).
fn owned_groups(spec: &PublishSpec, p: u32) -> Vec<u32> {
    if spec.kind == Kind::Standard {
        return Vec::new();
    }
    (0..spec.groups)
        .filter(|g| g % spec.publishers == p)
        .collect()
}

/// Marks the accepted entries of a batch answer as confirmed.
fn confirm(state: &RunState, p: u32, first: u64, n: u64, bytes: &[u8]) -> anyhow::Result<()> {
    let answer: PublishAnswer<'_> =
        serde_json::from_slice(bytes).context("a publish answer that is not the contract's")?;
    let now = state.clock.now_ns();
    let mut ok = 0u64;
    let mut failed = 0u64;
    {
        let mut ledger = state.publish_ledger();
        match (answer.results, answer.ids) {
            (Some(entries), _) if entries.len() as u64 == n => {
                for (i, entry) in entries.iter().enumerate() {
                    match &entry.error {
                        None => {
                            ledger.confirm(p, first + i as u64);
                            ok += 1;
                        }
                        Some(err) => {
                            failed += 1;
                            if Counters::get(&state.counters.publish_errors) < 5 {
                                tracing::warn!(code = %err.code, "a batch entry was refused");
                            }
                        }
                    }
                }
            }
            (None, Some(ids)) if ids.len() as u64 == n => {
                for i in 0..n {
                    ledger.confirm(p, first + i);
                }
                ok = n;
            }
            _ => anyhow::bail!("a publish of {n} messages answered a different number of results"),
        }
    }
    Counters::add(&state.counters.published, ok);
    Counters::add(&state.counters.publish_errors, failed);
    Counters::mark_max(&state.counters.last_confirm_ns, now);
    Ok(())
}

fn log_error(state: &RunState, e: &ClientError) {
    // The first few are worth a line each; the rest are counted in the report.
    if Counters::get(&state.counters.publish_errors) <= (5 * MAX_BATCH) as u64 {
        tracing::warn!(error = %e, "publish failed; retrying");
    }
}
