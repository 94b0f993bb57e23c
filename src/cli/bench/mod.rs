//! `pubq bench WORKLOAD`: a load generator against any running pubq server,
//! like `nats bench` or `redis-benchmark`. It creates its own topic and
//! queues under a run-unique name, drives publishers and consumers, verifies
//! that every confirmed message reached every queue (losses, duplicates,
//! FIFO order), prints a report and removes what it created.
//!
//! One file per workload; the shared parts are the run state and drain
//! (`harness`), publisher and consumer tasks, the verifier (`verify`),
//! measuring (`stats`), the report and the progress bar. Exit code 1 when the
//! verification finds a problem (the report is printed first).

mod backlog;
mod consumer;
mod fanout;
mod fifo;
mod harness;
mod latency;
mod payload;
mod progress;
mod publisher;
mod report;
mod stats;
mod subscribers;
mod topology;
mod verify;
mod ws;

use std::future::Future;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::ConnectArgs;
use crate::client::Client;
use consumer::{AckMode, ConsumerKind};
use report::Report;
use topology::Topology;

pub use backlog::BacklogArgs;
pub use fanout::FanoutArgs;
pub use fifo::FifoArgs;
pub use latency::LatencyArgs;
pub use subscribers::SubscribersArgs;

/// `pubq bench WORKLOAD ...`
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub workload: Workload,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// The workloads.
#[derive(Debug, Subcommand)]
pub enum Workload {
    /// One topic fanned out to Q queues: publish throughput and delivered copies/s.
    Fanout(FanoutArgs),
    /// Publish at a fixed rate and measure publish → delivery latency.
    Latency(LatencyArgs),
    /// A FIFO topic and FIFO queues with G message groups; checks order per group.
    Fifo(FifoArgs),
    /// Fill one queue with N messages, then drain it: fill and drain rates.
    Backlog(BacklogArgs),
    /// K WebSocket topic subscribers: fan-out latency of a publish to all of them.
    Subscribers(SubscribersArgs),
}

/// Flags every workload takes.
#[derive(Debug, Clone, Args)]
pub struct CommonFlags {
    /// Print the result as one JSON object on stdout instead of a table.
    #[arg(long, help_heading = "Output")]
    pub json: bool,
    /// No progress bar (it is drawn on stderr, and only on a terminal).
    #[arg(long, help_heading = "Output")]
    pub no_progress: bool,
    /// Keep the topic and queues the run created instead of deleting them.
    #[arg(long)]
    pub keep: bool,
    /// Name prefix of what the run creates; a run-unique id follows it.
    #[arg(long, value_name = "PREFIX", default_value = "bench")]
    pub prefix: String,
    /// After publishing, how long to wait with nothing arriving before what
    /// is still missing counts as lost.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
}

/// How messages are published.
#[derive(Debug, Clone, Args)]
pub struct PublisherFlags {
    /// Concurrent publisher tasks (each one request in flight).
    #[arg(long, value_name = "P", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub publishers: u32,
    /// Messages per publish request (the most a paced publisher sends at once).
    #[arg(long, value_name = "B", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub batch: u32,
    /// Body bytes per message (the stamp takes about 30; smaller bodies are the stamp alone).
    #[arg(long, value_name = "BYTES", default_value_t = 256)]
    pub size: usize,
}

/// How copies are consumed.
#[derive(Debug, Clone, Args)]
pub struct ConsumerFlags {
    /// HTTP long polling, or WebSocket push.
    #[arg(long, value_enum, default_value_t = ConsumerKind::Ws)]
    pub consumer: ConsumerKind,
    /// WebSocket prefetch (1..1000); a long poll receives min(prefetch, 100) at a time.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub prefetch: u32,
    /// One ack per message, or one per received batch.
    #[arg(long, value_enum, default_value_t = AckMode::Batch)]
    pub ack: AckMode,
    /// Consumers per queue.
    #[arg(long, value_name = "C", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub consumers: u32,
}

impl ConsumerFlags {
    fn spec(&self) -> consumer::ConsumeSpec {
        consumer::ConsumeSpec {
            kind: self.consumer,
            prefetch: self.prefetch,
            ack: self.ack,
        }
    }

    fn describe(&self) -> String {
        let how = match self.consumer {
            ConsumerKind::Ws => format!("ws prefetch {}", self.prefetch),
            ConsumerKind::Longpoll => format!("longpoll max {}", self.prefetch.min(100)),
        };
        let ack = match self.ack {
            AckMode::Each => "each",
            AckMode::Batch => "batch",
        };
        format!("{} × {how}, ack {ack}", self.consumers)
    }
}

/// The verification found a problem; the report says which.
#[derive(Debug, thiserror::Error)]
#[error("the bench found problems: {0}")]
pub struct BenchFailed(String);

/// Runs one workload and prints its report.
pub async fn run(client: &Client, args: &BenchArgs) -> anyhow::Result<()> {
    let (report, json) = match &args.workload {
        Workload::Fanout(a) => (fanout::run(client, a).await?, a.common.json),
        Workload::Latency(a) => (latency::run(client, a).await?, a.common.json),
        Workload::Fifo(a) => (fifo::run(client, a).await?, a.common.json),
        Workload::Backlog(a) => (backlog::run(client, a).await?, a.common.json),
        Workload::Subscribers(a) => (subscribers::run(client, a).await?, a.common.json),
    };
    if json {
        let mut out = super::output::JsonLines::stdout();
        out.emit(&report)?;
    } else {
        print!("{}", report.table());
    }
    if report.ok {
        Ok(())
    } else {
        Err(BenchFailed(report.problems.join("; ")).into())
    }
}

/// A fresh id for this run's names.
fn run_id() -> String {
    format!("{:08x}", rand::random::<u32>())
}

/// Creates `topology`, runs `body`, and removes the topology again (unless
/// `--keep`) whatever happened: success, failure or Ctrl-C. Dropping `body`
/// on Ctrl-C drops its task sets, which aborts their tasks.
async fn with_topology<Fut>(
    client: &Client,
    common: &CommonFlags,
    topology: &Topology,
    body: Fut,
) -> anyhow::Result<Report>
where
    Fut: Future<Output = anyhow::Result<Report>>,
{
    let created = topology.create(client).await;
    let outcome = match created {
        Ok(()) => tokio::select! {
            outcome = body => outcome,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        },
        Err(e) => Err(e),
    };
    if common.keep {
        tracing::info!(topic = ?topology.topic, queues = ?topology.queues, "keeping the bench's resources");
    } else {
        topology.remove(client).await;
    }
    outcome
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::config::parse_duration(s).map_err(|e| e.to_string())
}

/// The server as the report names it: the base URL without a trailing slash.
fn server_label(client: &Client) -> &str {
    client.base_url().as_str().trim_end_matches('/')
}
