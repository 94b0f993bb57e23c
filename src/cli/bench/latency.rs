//! `pubq bench latency`: publish at a fixed rate, well below saturation, and
//! measure publish → delivery latency per copy (p50/p99/p99.9). Each message
//! is stamped when its request is built; how late the publishers ran behind
//! their schedule is reported next to the percentiles.

use std::time::Duration;

use clap::Args;
use serde_json::json;

use super::fanout::{describe_publishers, publish_spec, run_pubsub};
use super::payload::Kind;
use super::publisher::Pace;
use super::report::{thousands, PacedReport, Report};
use super::stats::Counters;
use super::topology::Topology;
use super::{
    parse_duration, run_id, server_label, with_topology, CommonFlags, ConsumerFlags, PublisherFlags,
};
use crate::client::Client;

/// `pubq bench latency`
#[derive(Debug, Args)]
pub struct LatencyArgs {
    /// Messages per second, over all publishers.
    #[arg(long, value_name = "MSGS_PER_SECOND", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
    pub rate: u64,
    /// How long to publish.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Queues subscribed to the topic.
    #[arg(long, value_name = "Q", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub queues: u32,
    #[command(flatten)]
    pub publisher: PublisherFlags,
    #[command(flatten)]
    pub consumer: ConsumerFlags,
    #[command(flatten)]
    pub common: CommonFlags,
}

pub async fn run(client: &Client, args: &LatencyArgs) -> anyhow::Result<Report> {
    let topology = Topology::named(
        &args.common.prefix,
        &run_id(),
        true,
        args.queues as usize,
        false,
    )?;
    let pace = Pace::Rate {
        rate: args.rate,
        duration: args.duration,
    };
    let spec = publish_spec(&topology, &args.publisher, Kind::Standard, 0, pace);
    let setup = format!(
        "1 topic → {} queue{} · {} msg/s for {:?} · {} · {}",
        args.queues,
        if args.queues == 1 { "" } else { "s" },
        thousands(args.rate),
        args.duration,
        describe_publishers(&args.publisher),
        args.consumer.describe()
    );
    let settings = json!({
        "rate": args.rate,
        "duration_seconds": args.duration.as_secs_f64(),
        "queues": args.queues,
        "publishers": args.publisher.publishers,
        "batch": args.publisher.batch,
        "size": args.publisher.size,
        "consumer": args.consumer.consumer,
        "prefetch": args.consumer.prefetch,
        "ack": args.consumer.ack,
        "consumers_per_queue": args.consumer.consumers,
    });
    with_topology(client, &args.common, &topology, async {
        let run = run_pubsub(client, &topology, spec, &args.consumer, false, &args.common).await?;
        let mut report = Report::from_run(
            "latency",
            server_label(client),
            setup,
            settings,
            &run.state,
            &run.latency,
        );
        report.paced = Some(PacedReport {
            target_rate: args.rate,
            publisher_max_lag_ms: Counters::get(&run.state.counters.max_lag_ns) as f64 / 1e6,
        });
        Ok(report)
    })
    .await
}
