//! `pubq bench fanout`: one topic fanned out to Q queues, P publishers as fast
//! as the server answers, consumers on every queue. Also the shared
//! publish-and-consume run that `latency` and `fifo` reuse with other pacing
//! and checks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;

use super::consumer;
use super::harness::{self, Consumers, Publishers, RunState};
use super::payload::Kind;
use super::progress::Progress;
use super::publisher::{self, Pace, PublishSpec, Target};
use super::report::Report;
use super::stats::{Counters, Latency};
use super::topology::Topology;
use super::verify::DeliveryLedger;
use super::{
    parse_duration, run_id, server_label, with_topology, CommonFlags, ConsumerFlags, PublisherFlags,
};
use crate::client::Client;

/// `pubq bench fanout`
#[derive(Debug, Args)]
pub struct FanoutArgs {
    /// Queues subscribed to the topic.
    #[arg(long, value_name = "Q", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub queues: u32,
    /// Messages to publish in total.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 100_000,
        conflicts_with = "duration"
    )]
    pub messages: u64,
    /// Publish for this long instead of a number of messages (e.g. 10s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    #[command(flatten)]
    pub publisher: PublisherFlags,
    #[command(flatten)]
    pub consumer: ConsumerFlags,
    #[command(flatten)]
    pub common: CommonFlags,
}

pub async fn run(client: &Client, args: &FanoutArgs) -> anyhow::Result<Report> {
    let topology = Topology::named(
        &args.common.prefix,
        &run_id(),
        true,
        args.queues as usize,
        false,
    )?;
    let pace = Pace::Saturate {
        messages: args.duration.is_none().then_some(args.messages),
        duration: args.duration,
    };
    let spec = publish_spec(&topology, &args.publisher, Kind::Standard, 0, pace);
    let amount = match args.duration {
        Some(d) => format!("{d:?}"),
        None => format!("{} msgs", super::report::thousands(args.messages)),
    };
    let setup = format!(
        "1 topic → {} queues · {amount} · {} · {}",
        args.queues,
        describe_publishers(&args.publisher),
        args.consumer.describe()
    );
    let settings = json!({
        "queues": args.queues,
        "messages": args.duration.is_none().then_some(args.messages),
        "duration_seconds": args.duration.map(|d| d.as_secs_f64()),
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
        Ok(Report::from_run(
            "fanout",
            server_label(client),
            setup,
            settings,
            &run.state,
            &run.latency,
        ))
    })
    .await
}

/// "2 publishers × batch 100 · 256 B"
pub(super) fn describe_publishers(p: &PublisherFlags) -> String {
    format!(
        "{} publisher{} × batch {} · {} B",
        p.publishers,
        if p.publishers == 1 { "" } else { "s" },
        p.batch,
        p.size
    )
}

/// Publishers aimed at the topology's topic.
pub(super) fn publish_spec(
    topology: &Topology,
    flags: &PublisherFlags,
    kind: Kind,
    groups: u32,
    pace: Pace,
) -> PublishSpec {
    let target = match &topology.topic {
        Some(t) => Target::Topic(t.clone()),
        None => Target::Queue(topology.queues[0].clone()),
    };
    PublishSpec {
        target,
        publishers: flags.publishers,
        batch: flags.batch as usize,
        size: flags.size,
        kind,
        groups,
        pace,
    }
}

/// A finished publish-and-consume run.
pub(super) struct PubSubRun {
    pub state: Arc<RunState>,
    pub latency: Latency,
}

/// Starts consumers on every queue, waits until they are subscribed, runs
/// the publishers to the end, drains, stops the consumers.
pub(super) async fn run_pubsub(
    client: &Client,
    topology: &Topology,
    spec: PublishSpec,
    consumer_flags: &ConsumerFlags,
    order_check: bool,
    common: &CommonFlags,
) -> anyhow::Result<PubSubRun> {
    let ledgers = topology
        .queues
        .iter()
        .map(|_| {
            if order_check {
                DeliveryLedger::with_order_check()
            } else {
                DeliveryLedger::new()
            }
        })
        .collect();
    let state = RunState::new(spec.publishers as usize, ledgers);
    let mut progress = Progress::new(!common.no_progress && !common.json);
    let mut consumers = Consumers::new();
    for (index, queue) in topology.queues.iter().enumerate() {
        for _ in 0..consumer_flags.consumers {
            consumers.spawn(consumer::run(
                state.clone(),
                client.clone(),
                consumer_flags.spec(),
                index,
                queue.clone(),
            ));
        }
    }
    let consumer_count = topology.queues.len() as u64 * u64::from(consumer_flags.consumers);
    harness::wait_ready(&state, consumer_count, &mut consumers).await?;

    let spec = Arc::new(spec);
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
    match spec.pace {
        Pace::Saturate {
            messages: Some(n), ..
        } => progress.phase(&state, "publish", n, |s| {
            Counters::get(&s.counters.published) + Counters::get(&s.counters.publish_errors)
        }),
        Pace::Saturate {
            duration: Some(d), ..
        }
        | Pace::Rate { duration: d, .. } => {
            progress.phase(&state, "publish", d.as_millis() as u64, move |_| {
                start.elapsed().as_millis() as u64
            })
        }
        Pace::Interval { messages, .. } => progress.phase(&state, "publish", messages, |s| {
            Counters::get(&s.counters.published)
        }),
        Pace::Saturate { .. } => {}
    }
    tokio::select! {
        result = publishers.join() => result?,
        e = consumers.failure() => return Err(e),
    }

    let expected = state.publish_ledger().confirmed() * topology.queues.len() as u64;
    progress.phase(&state, "drain", expected, |s| {
        Counters::get(&s.counters.delivered)
    });
    let drained = tokio::select! {
        drained = harness::drain(&state, common.drain_timeout) => drained,
        e = consumers.failure() => return Err(e),
    };
    if !drained {
        tracing::warn!(
            missing = state.missing(),
            "nothing arrived for the drain timeout; counting what is missing as lost"
        );
    }
    let latency = consumers.finish(&state).await?;
    drop(progress);
    Ok(PubSubRun { state, latency })
}
