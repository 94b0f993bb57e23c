//! `pubq bench subscribers`: K WebSocket topic subscribers (each its own
//! connection and temporary queue, `auto_ack`), then N publishes one at a
//! time; measures the fan-out latency of each publish to every subscriber,
//! and per publish the time until the last subscriber had it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use super::harness::{self, Publishers, RunState};
use super::payload::{self, Kind};
use super::progress::Progress;
use super::publisher::{self, Pace, PublishSpec, Target};
use super::report::{thousands, Report, SubscribersReport};
use super::stats::{Counters, Latency};
use super::topology::Topology;
use super::verify::DeliveryLedger;
use super::ws::{self, ServerFrame, Ws};
use super::{parse_duration, run_id, server_label, with_topology, CommonFlags};
use crate::client::Client;

/// How long one subscriber may take to connect and be subscribed.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

const SUB: &str = "bench";
const SUBSCRIBE_REF: &str = "subscribe";

/// `pubq bench subscribers`
#[derive(Debug, Args)]
pub struct SubscribersArgs {
    /// WebSocket topic subscribers, one connection each.
    #[arg(long, value_name = "K", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub subscribers: u64,
    /// Messages to publish, one at a time.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub publishes: u64,
    /// Pause between publishes.
    #[arg(long, value_name = "DURATION", default_value = "200ms", value_parser = parse_duration)]
    pub interval: Duration,
    /// Body bytes per message.
    #[arg(long, value_name = "BYTES", default_value_t = 256)]
    pub size: usize,
    /// Prefetch of each subscription.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub prefetch: u32,
    /// Connections opened at once while connecting.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub connect_concurrency: u32,
    #[command(flatten)]
    pub common: CommonFlags,
}

pub async fn run(client: &Client, args: &SubscribersArgs) -> anyhow::Result<Report> {
    let topology = Topology::named(&args.common.prefix, &run_id(), true, 0, false)?;
    let topic = topology
        .topic
        .clone()
        .expect("a subscribers topology has a topic");
    let setup = format!(
        "1 topic → {} WebSocket subscribers (auto_ack, prefetch {}) · {} publish{} every {:?} · {} B",
        thousands(args.subscribers),
        args.prefetch,
        thousands(args.publishes),
        if args.publishes == 1 { "" } else { "es" },
        args.interval,
        args.size
    );
    let settings = json!({
        "subscribers": args.subscribers,
        "publishes": args.publishes,
        "interval_seconds": args.interval.as_secs_f64(),
        "size": args.size,
        "prefetch": args.prefetch,
        "connect_concurrency": args.connect_concurrency,
    });
    with_topology(client, &args.common, &topology, async {
        let k = args.subscribers as usize;
        let state = RunState::new(1, vec![DeliveryLedger::new(); k]);
        let mut progress = Progress::new(!args.common.no_progress && !args.common.json);

        let connect_start = Instant::now();
        let mut sockets = Vec::with_capacity(k);
        let mut connecting = futures::stream::iter(0..k)
            .map(|_| subscribe(client, &topic, args.prefetch))
            .buffer_unordered(args.connect_concurrency as usize);
        while let Some(socket) = connecting.next().await {
            sockets.push(socket?);
            progress.count("connect", sockets.len() as u64, k as u64);
        }
        drop(connecting);
        let connect_seconds = connect_start.elapsed().as_secs_f64();

        let mut tasks = JoinSet::new();
        for (index, socket) in sockets.into_iter().enumerate() {
            tasks.spawn(listen(state.clone(), socket, index));
        }

        let spec = Arc::new(PublishSpec {
            target: Target::Topic(topic.clone()),
            publishers: 1,
            batch: 1,
            size: args.size,
            kind: Kind::Standard,
            groups: 0,
            pace: Pace::Interval {
                messages: args.publishes,
                interval: args.interval,
            },
        });
        let mut publishers = Publishers::new();
        publishers.spawn(publisher::run(
            state.clone(),
            client.clone(),
            spec,
            0,
            Instant::now(),
        ));
        progress.phase(&state, "publish", args.publishes, |s| {
            Counters::get(&s.counters.published)
        });
        publishers.join().await?;
        let expected = state.publish_ledger().confirmed() * k as u64;
        progress.phase(&state, "deliver", expected, |s| {
            Counters::get(&s.counters.delivered)
        });
        if !harness::drain(&state, args.common.drain_timeout).await {
            tracing::warn!(missing = state.missing(), "drain timed out");
        }
        state.stop_consumers();

        let mut latency = Latency::new();
        let mut last_per_publish = vec![0u64; args.publishes as usize];
        while let Some(done) = tasks.join_next().await {
            let deliveries = done.context("a subscriber task failed")??;
            for (seq, ns) in deliveries {
                latency.record_ns(ns);
                if let Some(last) = last_per_publish.get_mut(seq as usize) {
                    *last = (*last).max(ns);
                }
            }
        }
        drop(progress);
        let mut all = Latency::new();
        for ns in last_per_publish.into_iter().filter(|&ns| ns > 0) {
            all.record_ns(ns);
        }
        let mut report = Report::from_run(
            "subscribers",
            server_label(client),
            setup,
            settings,
            &state,
            &latency,
        );
        report.subscribers = Some(SubscribersReport {
            subscribers: args.subscribers,
            connect_seconds,
            publishes: report.published,
            all_delivered_us: all.summary(),
        });
        Ok(report)
    })
    .await
}

/// Connects one subscriber and waits until its subscription is confirmed.
async fn subscribe(client: &Client, topic: &str, prefetch: u32) -> anyhow::Result<Ws> {
    let mut socket = ws::connect(client).await?;
    let frame = json!({
        "op": "subscribe", "ref": SUBSCRIBE_REF, "sub": SUB, "topic": topic,
        "auto_ack": true, "prefetch": prefetch,
    });
    socket
        .send(Message::text(frame.to_string()))
        .await
        .context("sending subscribe")?;
    let confirmed = async {
        while let Some(frame) = socket.next().await {
            let Message::Text(text) = frame.context("WebSocket read")? else {
                continue;
            };
            let frame: ServerFrame<'_> = serde_json::from_str(text.as_str())
                .context("a frame that is not the contract's")?;
            if frame.reference.as_deref() != Some(SUBSCRIBE_REF) {
                continue;
            }
            match &*frame.op {
                "ok" => return Ok(()),
                _ => anyhow::bail!("subscribe refused: {}", frame.error.unwrap_or_default()),
            }
        }
        anyhow::bail!("the server closed the WebSocket before the subscribe answer")
    };
    tokio::time::timeout(SUBSCRIBE_TIMEOUT, confirmed)
        .await
        .context("no subscribe answer in time")??;
    Ok(socket)
}

/// One subscriber's reader: records each message into ledger `index` and
/// answers (sequence number, latency in ns) of its first deliveries when
/// told to stop, after unsubscribing (which deletes its temporary queue).
async fn listen(
    state: Arc<RunState>,
    mut socket: Ws,
    index: usize,
) -> anyhow::Result<Vec<(u64, u64)>> {
    let mut stop = state.consumer_stop();
    let mut deliveries = Vec::new();
    loop {
        let frame = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            frame = socket.next() => frame,
        };
        let received_ns = state.clock.now_ns();
        let text = match frame {
            None => anyhow::bail!("the server closed a subscriber's WebSocket"),
            Some(Err(e)) => return Err(e).context("WebSocket read"),
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(close))) => {
                anyhow::bail!("the server closed a subscriber: {close:?}")
            }
            Some(Ok(_)) => continue,
        };
        let frame: ServerFrame<'_> =
            serde_json::from_str(text.as_str()).context("a frame that is not the contract's")?;
        match &*frame.op {
            "message" => {
                let body = frame.body.as_deref().unwrap_or_default();
                match payload::parse_body(body) {
                    Some(stamp) => state.record_batch(
                        index,
                        &[(stamp, frame.receive_count)],
                        0,
                        received_ns,
                        |stamp, ns| deliveries.push((stamp.seq, ns)),
                    ),
                    None => state.record_batch(index, &[], 1, received_ns, |_, _| {}),
                }
            }
            "end" => anyhow::bail!(
                "the server ended a subscription ({})",
                frame.reason.as_deref().unwrap_or("no reason given")
            ),
            "error" => {
                Counters::add(&state.counters.receive_errors, 1);
                tracing::warn!(error = %frame.error.unwrap_or_default(), "error frame");
            }
            _ => {}
        }
    }
    let unsubscribe = json!({ "op": "unsubscribe", "sub": SUB });
    let _ = socket.send(Message::text(unsubscribe.to_string())).await;
    let _ = socket.close(None).await;
    Ok(deliveries)
}
