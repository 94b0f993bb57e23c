//! `pubq bench backlog`: fill one queue with N messages (sent straight to it,
//! no topic) while nobody consumes, then drain it with the consumers.
//! Reports the fill rate and the drain rate separately; latency is left out
//! (it would only measure how long the fill took).

use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use serde_json::json;

use super::consumer;
use super::fanout::{describe_publishers, publish_spec};
use super::harness::{self, Consumers, Publishers, RunState};
use super::payload::Kind;
use super::progress::Progress;
use super::publisher::{self, Pace};
use super::report::{thousands, BacklogReport, Report};
use super::stats::{rate, Counters, Latency};
use super::topology::Topology;
use super::verify::DeliveryLedger;
use super::{run_id, server_label, with_topology, CommonFlags, ConsumerFlags, PublisherFlags};
use crate::client::Client;

/// `pubq bench backlog`
#[derive(Debug, Args)]
pub struct BacklogArgs {
    /// Messages to fill the queue with.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub messages: u64,
    #[command(flatten)]
    pub publisher: PublisherFlags,
    #[command(flatten)]
    pub consumer: ConsumerFlags,
    #[command(flatten)]
    pub common: CommonFlags,
}

pub async fn run(client: &Client, args: &BacklogArgs) -> anyhow::Result<Report> {
    let topology = Topology::named(&args.common.prefix, &run_id(), false, 1, false)?;
    let pace = Pace::Saturate {
        messages: Some(args.messages),
        duration: None,
    };
    let spec = Arc::new(publish_spec(
        &topology,
        &args.publisher,
        Kind::Standard,
        0,
        pace,
    ));
    let setup = format!(
        "1 queue · fill {} msgs by send · {} · drain {}",
        thousands(args.messages),
        describe_publishers(&args.publisher),
        args.consumer.describe()
    );
    let settings = json!({
        "messages": args.messages,
        "publishers": args.publisher.publishers,
        "batch": args.publisher.batch,
        "size": args.publisher.size,
        "consumer": args.consumer.consumer,
        "prefetch": args.consumer.prefetch,
        "ack": args.consumer.ack,
        "consumers": args.consumer.consumers,
    });
    with_topology(client, &args.common, &topology, async {
        let state = RunState::new(spec.publishers as usize, vec![DeliveryLedger::new()]);
        let mut progress = Progress::new(!args.common.no_progress && !args.common.json);

        // Fill, with nobody consuming.
        let start = Instant::now();
        let mut publishers = Publishers::new();
        for p in 0..spec.publishers {
            publishers.spawn(publisher::run(
                state.clone(),
                client.clone(),
                spec.clone(),
                p,
                start,
            ));
        }
        progress.phase(&state, "fill", args.messages, |s| {
            Counters::get(&s.counters.published) + Counters::get(&s.counters.publish_errors)
        });
        publishers.join().await?;
        let c = &state.counters;
        let fill_ns =
            Counters::get(&c.last_confirm_ns).saturating_sub(Counters::get(&c.first_publish_ns));

        // Drain.
        let drain_start_ns = state.clock.now_ns();
        let mut consumers = Consumers::new();
        for _ in 0..args.consumer.consumers {
            consumers.spawn(consumer::run(
                state.clone(),
                client.clone(),
                args.consumer.spec(),
                0,
                topology.queues[0].clone(),
            ));
        }
        let expected = state.publish_ledger().confirmed();
        progress.phase(&state, "drain", expected, |s| {
            Counters::get(&s.counters.delivered)
        });
        let drained = tokio::select! {
            drained = harness::drain(&state, args.common.drain_timeout) => drained,
            e = consumers.failure() => return Err(e),
        };
        if !drained {
            tracing::warn!(missing = state.missing(), "drain timed out");
        }
        consumers.finish(&state).await?;
        drop(progress);
        let drain_ns = Counters::get(&c.last_delivery_ns).saturating_sub(drain_start_ns);

        let mut report = Report::from_run(
            "backlog",
            server_label(client),
            setup,
            settings,
            &state,
            &Latency::new(),
        );
        report.publish_rate = rate(report.published, fill_ns);
        report.delivered_rate = rate(report.delivered, drain_ns);
        report.backlog = Some(BacklogReport {
            fill_seconds: fill_ns as f64 / 1e9,
            fill_rate: report.publish_rate,
            drain_seconds: drain_ns as f64 / 1e9,
            drain_rate: report.delivered_rate,
        });
        Ok(report)
    })
    .await
}
