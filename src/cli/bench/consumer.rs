//! Consumer tasks on one queue: HTTP long polling (`receive` then `ack`) or a
//! WebSocket push subscription with a prefetch window. Each records what it
//! got into its queue's ledger, one lock per received batch, keeps its own
//! latency histogram, and acks one receipt per call/frame (`--ack each`) or a
//! whole batch at once (`--ack batch`).
//!
//! A consumer runs until the harness says stop; a stop interrupts a parked
//! long poll or a WebSocket read at once.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{FutureExt, SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::Message;

use super::harness::RunState;
use super::payload::{self, Stamp};
use super::stats::{Counters, Latency};
use super::ws::{self, ReceiptResult, ServerFrame};
use crate::client::{Client, ClientError, DEFAULT_REQUEST_TIMEOUT, LONG_POLL_MARGIN};

/// Long-poll wait of each receive. A stop cancels a parked receive, so this
/// only bounds how long an idle consumer's request lives.
const LONG_POLL_WAIT_SECONDS: u64 = 5;

/// The most messages one HTTP receive may answer (the contract's limit).
const MAX_RECEIVE: u32 = 100;

/// How long a consumer keeps retrying through transient failures before it
/// gives the run up.
const GIVE_UP_AFTER: Duration = Duration::from_secs(10);
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// The subscription id and the `ref` of the subscribe frame.
const SUB: &str = "bench";
const SUBSCRIBE_REF: &str = "subscribe";

/// How consumers get messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsumerKind {
    /// HTTP `POST .../receive` (long poll) and `POST .../ack`.
    Longpoll,
    /// WebSocket push: a queue subscription with `--prefetch`.
    Ws,
}

/// How received messages are acked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AckMode {
    /// One ack call (HTTP) or frame (WebSocket) per message.
    Each,
    /// One ack call or frame per received batch.
    Batch,
}

/// What every consumer of a run does.
#[derive(Debug, Clone, Copy)]
pub struct ConsumeSpec {
    pub kind: ConsumerKind,
    /// WebSocket prefetch (1..1000); an HTTP receive asks for at most
    /// `min(prefetch, 100)`.
    pub prefetch: u32,
    pub ack: AckMode,
}

#[derive(Deserialize)]
struct ReceiveAnswer<'a> {
    #[serde(borrow)]
    messages: Vec<Received<'a>>,
}

#[derive(Deserialize)]
struct Received<'a> {
    #[serde(borrow)]
    receipt: Cow<'a, str>,
    #[serde(borrow)]
    body: Cow<'a, str>,
    #[serde(default)]
    receive_count: u32,
}

#[derive(Deserialize)]
struct AckAnswer<'a> {
    #[serde(borrow)]
    results: Vec<ReceiptResult<'a>>,
}

#[derive(Serialize)]
struct AckBody<'a> {
    receipts: &'a [String],
}

#[derive(Serialize)]
struct AckFrame<'a> {
    op: &'static str,
    receipts: &'a [String],
}

/// What one received batch held.
#[derive(Default)]
struct Inbox {
    stamps: Vec<(Stamp, u32)>,
    receipts: Vec<String>,
    malformed: u64,
}

impl Inbox {
    fn clear(&mut self) {
        self.stamps.clear();
        self.receipts.clear();
        self.malformed = 0;
    }

    fn push(&mut self, body: &str, receive_count: u32, receipt: String) {
        match payload::parse_body(body) {
            Some(stamp) => self.stamps.push((stamp, receive_count)),
            None => self.malformed += 1,
        }
        self.receipts.push(receipt);
    }
}

/// One consumer on queue `queue`, recording into ledger `index`.
pub async fn run(
    state: Arc<RunState>,
    client: Client,
    spec: ConsumeSpec,
    index: usize,
    queue: String,
) -> anyhow::Result<Latency> {
    match spec.kind {
        ConsumerKind::Longpoll => long_poll(&state, &client, spec, index, &queue).await,
        ConsumerKind::Ws => push(&state, &client, spec, index, &queue).await,
    }
    .with_context(|| format!("consumer of queue {queue}"))
}

async fn long_poll(
    state: &RunState,
    client: &Client,
    spec: ConsumeSpec,
    index: usize,
    queue: &str,
) -> anyhow::Result<Latency> {
    let receive = ["v1", "queues", queue, "receive"];
    let request = format!(
        "{{\"max\":{},\"wait_seconds\":{LONG_POLL_WAIT_SECONDS}}}",
        spec.prefetch.clamp(1, MAX_RECEIVE)
    )
    .into_bytes();
    let timeout = Duration::from_secs(LONG_POLL_WAIT_SECONDS) + LONG_POLL_MARGIN;
    let mut stop = state.consumer_stop();
    let mut latency = Latency::new();
    let mut inbox = Inbox::default();
    let mut failing_since: Option<Instant> = None;
    Counters::add(&state.counters.consumers_ready, 1);
    loop {
        let answer = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            answer = client.post_raw(&receive, request.clone(), timeout) => answer,
        };
        let received_ns = state.clock.now_ns();
        let bytes = match answer {
            Ok(bytes) => {
                failing_since = None;
                bytes
            }
            Err(e) if e.is_transient() => {
                retry_or_give_up(state, &mut failing_since, e, "receive").await?;
                continue;
            }
            Err(e) => return Err(e).context("receive refused"),
        };
        let answer: ReceiveAnswer<'_> = serde_json::from_slice(&bytes)
            .context("a receive answer that is not the contract's")?;
        if answer.messages.is_empty() {
            continue;
        }
        inbox.clear();
        for m in answer.messages {
            inbox.push(&m.body, m.receive_count, m.receipt.into_owned());
        }
        state.record_batch(
            index,
            &inbox.stamps,
            inbox.malformed,
            received_ns,
            |_, ns| latency.record_ns(ns),
        );
        match spec.ack {
            AckMode::Batch => http_ack(state, client, queue, &inbox.receipts).await?,
            AckMode::Each => {
                let acks = inbox
                    .receipts
                    .chunks(1)
                    .map(|one| http_ack(state, client, queue, one));
                for result in futures::future::join_all(acks).await {
                    result?;
                }
            }
        }
    }
    Ok(latency)
}

/// Acks receipts over HTTP. A transient failure counts them as ack errors
/// (they come back as redeliveries after the visibility timeout).
async fn http_ack(
    state: &RunState,
    client: &Client,
    queue: &str,
    receipts: &[String],
) -> anyhow::Result<()> {
    let body = serde_json::to_vec(&AckBody { receipts }).context("encoding an ack")?;
    let n = receipts.len() as u64;
    match client
        .post_raw(
            &["v1", "queues", queue, "ack"],
            body,
            DEFAULT_REQUEST_TIMEOUT,
        )
        .await
    {
        Ok(bytes) => {
            let answer: AckAnswer<'_> = serde_json::from_slice(&bytes)
                .context("an ack answer that is not the contract's")?;
            count_ack_failures(state, &answer.results);
            Ok(())
        }
        Err(e) if e.is_transient() => {
            Counters::add(&state.counters.ack_errors, n);
            tracing::debug!(error = %e, "ack failed");
            Ok(())
        }
        Err(e) => Err(e).context("ack refused"),
    }
}

fn count_ack_failures(state: &RunState, results: &[ReceiptResult<'_>]) {
    let failed = results.iter().filter(|r| r.error.is_some()).count() as u64;
    if failed > 0 {
        if let Some(code) = results.iter().find_map(|r| r.error.as_ref()) {
            tracing::debug!(code = %code.code, failed, "acks refused");
        }
        Counters::add(&state.counters.ack_errors, failed);
    }
}

async fn retry_or_give_up(
    state: &RunState,
    failing_since: &mut Option<Instant>,
    e: ClientError,
    what: &str,
) -> anyhow::Result<()> {
    Counters::add(&state.counters.receive_errors, 1);
    let since = *failing_since.get_or_insert_with(Instant::now);
    if since.elapsed() >= GIVE_UP_AFTER {
        return Err(e).with_context(|| format!("{what} kept failing"));
    }
    tracing::warn!(error = %e, "{what} failed; retrying");
    tokio::time::sleep(RETRY_PAUSE).await;
    Ok(())
}

async fn push(
    state: &RunState,
    client: &Client,
    spec: ConsumeSpec,
    index: usize,
    queue: &str,
) -> anyhow::Result<Latency> {
    let mut socket = ws::connect(client).await?;
    let subscribe = serde_json::json!({
        "op": "subscribe", "ref": SUBSCRIBE_REF, "sub": SUB,
        "queue": queue, "prefetch": spec.prefetch,
    });
    socket
        .send(Message::text(subscribe.to_string()))
        .await
        .context("sending subscribe")?;
    let window = spec.prefetch as usize;
    let mut stop = state.consumer_stop();
    let mut latency = Latency::new();
    let mut inbox = Inbox::default();
    loop {
        let first = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            frame = socket.next() => frame,
        };
        let received_ns = state.clock.now_ns();
        inbox.clear();
        read_frame(state, first, &mut inbox)?;
        // Take whatever else is already buffered, up to a window, so a busy
        // queue is recorded and acked in batches.
        while inbox.receipts.len() < window {
            match socket.next().now_or_never() {
                Some(frame) => read_frame(state, frame, &mut inbox)?,
                None => break,
            }
        }
        if inbox.receipts.is_empty() {
            continue;
        }
        state.record_batch(
            index,
            &inbox.stamps,
            inbox.malformed,
            received_ns,
            |_, ns| latency.record_ns(ns),
        );
        match spec.ack {
            AckMode::Batch => {
                // The server takes up to 1000 receipts per frame: one window.
                for chunk in inbox.receipts.chunks(1000) {
                    let frame = serde_json::to_string(&AckFrame {
                        op: "ack",
                        receipts: chunk,
                    })?;
                    socket
                        .feed(Message::text(frame))
                        .await
                        .context("sending ack")?;
                }
            }
            AckMode::Each => {
                for one in inbox.receipts.chunks(1) {
                    let frame = serde_json::to_string(&AckFrame {
                        op: "ack",
                        receipts: one,
                    })?;
                    socket
                        .feed(Message::text(frame))
                        .await
                        .context("sending ack")?;
                }
            }
        }
        socket.flush().await.context("sending acks")?;
    }
    // Unacked messages go back to the queue at once on close.
    let _ = socket.close(None).await;
    Ok(latency)
}

/// Handles one frame of a queue subscription: messages go into the inbox,
/// ack answers are checked, anything that ends the subscription is an error.
fn read_frame(
    state: &RunState,
    frame: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    inbox: &mut Inbox,
) -> anyhow::Result<()> {
    let text = match frame {
        None => anyhow::bail!("the server closed the WebSocket"),
        Some(Err(e)) => return Err(e).context("WebSocket read"),
        Some(Ok(Message::Text(text))) => text,
        Some(Ok(Message::Close(close))) => {
            anyhow::bail!("the server closed the WebSocket: {close:?}")
        }
        Some(Ok(_)) => return Ok(()), // pings are answered by tungstenite
    };
    let frame: ServerFrame<'_> =
        serde_json::from_str(text.as_str()).context("a frame that is not the contract's")?;
    match &*frame.op {
        "message" => {
            let (Some(receipt), Some(body)) = (frame.receipt, frame.body) else {
                anyhow::bail!("a message frame without receipt or body");
            };
            inbox.push(&body, frame.receive_count, receipt.into_owned());
        }
        "ok" if frame.reference.as_deref() == Some(SUBSCRIBE_REF) => {
            Counters::add(&state.counters.consumers_ready, 1);
        }
        "ok" => {
            if let Some(results) = &frame.results {
                count_ack_failures(state, results);
            }
        }
        "error" if frame.reference.as_deref() == Some(SUBSCRIBE_REF) => {
            anyhow::bail!("subscribe refused: {}", frame.error.unwrap_or_default());
        }
        "error" => {
            Counters::add(&state.counters.receive_errors, 1);
            tracing::warn!(error = %frame.error.unwrap_or_default(), "error frame");
        }
        "end" => anyhow::bail!(
            "the server ended the subscription ({})",
            frame.reason.as_deref().unwrap_or("no reason given")
        ),
        _ => {}
    }
    Ok(())
}
