//! `pubq bench fifo`: a FIFO topic fanned out to FIFO queues, messages spread
//! over G message groups. Besides delivery it checks that each group arrives
//! in publish order on every queue. Each group belongs to one publisher (so
//! its order is well defined): `--groups` must be at least `--publishers`.

use clap::Args;
use serde_json::json;

use super::fanout::{describe_publishers, publish_spec, run_pubsub};
use super::payload::Kind;
use super::publisher::Pace;
use super::report::{thousands, FifoReport, Report};
use super::topology::Topology;
use super::{run_id, server_label, with_topology, CommonFlags, ConsumerFlags, PublisherFlags};
use crate::cli::UsageError;
use crate::client::Client;

/// `pubq bench fifo`
#[derive(Debug, Args)]
pub struct FifoArgs {
    /// Message groups (at least --publishers).
    #[arg(long, value_name = "G", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub groups: u32,
    /// FIFO queues subscribed to the FIFO topic.
    #[arg(long, value_name = "Q", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub queues: u32,
    /// Messages to publish in total.
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    pub messages: u64,
    #[command(flatten)]
    pub publisher: PublisherFlags,
    #[command(flatten)]
    pub consumer: ConsumerFlags,
    #[command(flatten)]
    pub common: CommonFlags,
}

pub async fn run(client: &Client, args: &FifoArgs) -> anyhow::Result<Report> {
    if args.groups < args.publisher.publishers {
        return Err(UsageError(format!(
            "--groups ({}) must be at least --publishers ({}): each group has one publisher",
            args.groups, args.publisher.publishers
        ))
        .into());
    }
    let topology = Topology::named(
        &args.common.prefix,
        &run_id(),
        true,
        args.queues as usize,
        true,
    )?;
    let pace = Pace::Saturate {
        messages: Some(args.messages),
        duration: None,
    };
    let spec = publish_spec(&topology, &args.publisher, Kind::Fifo, args.groups, pace);
    let setup = format!(
        "1 FIFO topic → {} FIFO queues · {} groups · {} msgs · {} · {}",
        args.queues,
        args.groups,
        thousands(args.messages),
        describe_publishers(&args.publisher),
        args.consumer.describe()
    );
    let settings = json!({
        "groups": args.groups,
        "queues": args.queues,
        "messages": args.messages,
        "publishers": args.publisher.publishers,
        "batch": args.publisher.batch,
        "size": args.publisher.size,
        "consumer": args.consumer.consumer,
        "prefetch": args.consumer.prefetch,
        "ack": args.consumer.ack,
        "consumers_per_queue": args.consumer.consumers,
    });
    with_topology(client, &args.common, &topology, async {
        let run = run_pubsub(client, &topology, spec, &args.consumer, true, &args.common).await?;
        let mut report = Report::from_run(
            "fifo",
            server_label(client),
            setup,
            settings,
            &run.state,
            &run.latency,
        );
        report.fifo = Some(FifoReport {
            groups: args.groups,
            order_violations: run.state.verdict().order_violations,
        });
        Ok(report)
    })
    .await
}
