//! A pull worker on one queue with the typed HTTP client: long-polls
//! (`wait_seconds` 20, up to 10 messages), runs each job, keeps a slow job's
//! message hidden by extending its visibility from a background heartbeat
//! while the job runs, acks on success, nacks with a delay on failure, stops
//! at a poison pill, and on Ctrl-C finishes the job in hand, hands the rest
//! of its batch back and exits.
//!
//! ```text
//! cargo run --example pull_worker -- [QUEUE]
//! ```
//!
//! `QUEUE` defaults to `orders-jobs` (what `publisher` creates for the topic
//! `orders`). The server is `PUBQ_URL` (default `http://127.0.0.1:7733`);
//! `PUBQ_TOKEN`, when set, is sent as a bearer token.
//!
//! A job is simulated from the message's attributes: `work_ms` is how long it
//! takes (default 200), and `fail_first=true` makes its first attempt fail.
//!
//! A standard queue keeps no strict order: a nacked job waits behind what is
//! already visible, so a poison pill published with the work can overtake the
//! retries (the next worker gets them). Publish the pill once the work is done.

use std::time::Duration;

use anyhow::{bail, Result};
use pubq::client::{Client, ReceiveOptions, ReceivedMessage};
use tokio::sync::{oneshot, watch};
use tokio::time::{interval_at, sleep, Instant, MissedTickBehavior};

/// How long a received message stays hidden from other consumers. Asked for
/// on every receive (overriding the queue's setting), so the heartbeat below
/// knows the lease it has to keep alive.
const VISIBILITY_SECONDS: u64 = 6;
/// The heartbeat extends the lease this often, well before it lapses.
const EXTEND_EVERY: Duration = Duration::from_secs(2);
/// A failed job comes back after this long.
const RETRY_DELAY_SECONDS: u64 = 3;
/// Pause after a transient failure (server down, throttled, not ready).
const BACKOFF: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Stats {
    done: u32,
    failed: u32,
    extensions: u32,
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let queue = args.next().unwrap_or_else(|| "orders-jobs".into());
    if queue.starts_with('-') || args.next().is_some() {
        bail!("usage: pull_worker [QUEUE]");
    }
    let server = std::env::var("PUBQ_URL").unwrap_or_else(|_| "http://127.0.0.1:7733".into());
    let token = std::env::var("PUBQ_TOKEN").ok().filter(|t| !t.is_empty());
    let client = Client::new(&server, token)?;

    let stop = watch_ctrl_c();
    let options = ReceiveOptions {
        max: Some(10),
        wait_seconds: Some(20),
        visibility_timeout_seconds: Some(VISIBILITY_SECONDS),
    };
    let mut stats = Stats::default();
    println!("worker on queue {queue:?} at {server}; Ctrl-C to stop");

    let why = 'work: loop {
        if *stop.borrow() {
            break "Ctrl-C";
        }
        // Long poll, but give up the wait at once on Ctrl-C. (Should the
        // server lease messages to a receive we abandon, they come back after
        // VISIBILITY_SECONDS, as with any consumer that goes away.)
        let received = tokio::select! {
            r = client.receive(&queue, &options) => r,
            () = stopped(stop.clone()) => break "Ctrl-C",
        };
        let batch = match received {
            Ok(batch) => batch,
            Err(e) if e.is_transient() => {
                eprintln!("receive failed ({e}); retrying in {BACKOFF:?}");
                sleep(BACKOFF).await;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if batch.is_empty() {
            println!("(no messages in 20 s; polling again)");
            continue;
        }

        let mut batch = batch.into_iter();
        while let Some(message) = batch.next() {
            if *stop.borrow() {
                // Not started: give it and the rest back to other workers now
                // rather than after their visibility timeout.
                let rest: Vec<_> = std::iter::once(message).chain(batch).collect();
                hand_back(&client, &queue, &rest).await;
                break 'work "Ctrl-C";
            }
            if message.poison {
                let outcome = client
                    .ack(&queue, std::slice::from_ref(&message.receipt))
                    .await?;
                accepted(&message, &outcome);
                println!("poison pill {}: no more work", message.id);
                hand_back(&client, &queue, &batch.collect::<Vec<_>>()).await;
                break 'work "poison pill";
            }
            run_job(&client, &queue, message, &mut stats).await?;
        }
    };
    println!(
        "stopping ({why}): {} jobs done, {} attempts failed and retried later, {} visibility extensions",
        stats.done, stats.failed, stats.extensions
    );
    Ok(())
}

/// Runs one job under a heartbeat, then acks or nacks its message.
async fn run_job(
    client: &Client,
    queue: &str,
    message: ReceivedMessage,
    stats: &mut Stats,
) -> Result<()> {
    let work_ms: u64 = message
        .attributes
        .get("work_ms")
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let fail = message.attributes.get("fail_first").map(String::as_str) == Some("true")
        && message.receive_count == 1;
    let seq = message.attributes.get("seq").map_or("?", String::as_str);
    println!(
        "job #{seq} id={} attempt {}: {} ({work_ms} ms of work)",
        message.id, message.receive_count, message.body
    );

    // The heartbeat runs beside the job and stops when told (after any
    // extension call it has in flight, so none races the ack below).
    let (done_tx, done_rx) = oneshot::channel();
    let heartbeat = tokio::spawn(heartbeat(
        client.clone(),
        queue.to_string(),
        message.receipt.clone(),
        done_rx,
    ));
    let outcome = simulate_job(work_ms, fail).await;
    let _ = done_tx.send(());
    stats.extensions += heartbeat.await?;

    let receipts = [message.receipt.clone()];
    match outcome {
        Ok(()) => {
            let results = client.ack(queue, &receipts).await?;
            if accepted(&message, &results) {
                println!("  job #{seq} done, acked");
                stats.done += 1;
            }
        }
        Err(reason) => {
            stats.failed += 1;
            let results = client.nack(queue, &receipts, RETRY_DELAY_SECONDS).await?;
            if accepted(&message, &results) {
                println!("  job #{seq} failed ({reason}); nacked, back in {RETRY_DELAY_SECONDS} s");
            }
        }
    }
    Ok(())
}

/// Keeps a message hidden while its job runs: every `EXTEND_EVERY`, sets its
/// remaining visibility back to `VISIBILITY_SECONDS`. Answers how many
/// extensions it made.
async fn heartbeat(
    client: Client,
    queue: String,
    receipt: String,
    mut done: oneshot::Receiver<()>,
) -> u32 {
    let mut tick = interval_at(Instant::now() + EXTEND_EVERY, EXTEND_EVERY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let receipts = [receipt];
    let mut extensions = 0;
    loop {
        tokio::select! {
            _ = &mut done => return extensions,
            _ = tick.tick() => {}
        }
        match client
            .visibility(&queue, &receipts, VISIBILITY_SECONDS)
            .await
        {
            Ok(results) => match results.first().and_then(|r| r.error.as_ref()) {
                None => {
                    extensions += 1;
                    println!("  still working: hidden for another {VISIBILITY_SECONDS} s");
                }
                Some(e) => {
                    // Stale: the lease lapsed and someone else received it.
                    eprintln!("  lease lost ({}); the job's result will not count", e.code);
                    return extensions;
                }
            },
            // Keep trying: the lease has VISIBILITY_SECONDS of slack.
            Err(e) => eprintln!("  visibility extension failed: {e}"),
        }
    }
}

/// Stands in for real work.
async fn simulate_job(work_ms: u64, fail: bool) -> Result<(), &'static str> {
    sleep(Duration::from_millis(work_ms)).await;
    if fail {
        return Err("simulated failure on the first attempt");
    }
    Ok(())
}

/// Makes received messages visible again at once (nack with no delay).
async fn hand_back(client: &Client, queue: &str, messages: &[ReceivedMessage]) {
    if messages.is_empty() {
        return;
    }
    let receipts: Vec<String> = messages.iter().map(|m| m.receipt.clone()).collect();
    match client.nack(queue, &receipts, 0).await {
        Ok(_) => println!("handed {} unstarted messages back", receipts.len()),
        Err(e) => eprintln!(
            "could not hand back {} messages ({e}); they return after their visibility timeout",
            receipts.len()
        ),
    }
}

/// True when the receipt was accepted; otherwise says why not.
fn accepted(message: &ReceivedMessage, results: &[pubq::client::ReceiptOutcome]) -> bool {
    match results.first().and_then(|r| r.error.as_ref()) {
        None => true,
        Some(e) => {
            eprintln!(
                "  message {}: {} (its lease lapsed and it was received again)",
                message.id, e.code
            );
            false
        }
    }
}

/// A flag that turns true on the first Ctrl-C; a second Ctrl-C exits at once.
fn watch_ctrl_c() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_err() {
            // No signal handling here: never stop. Keep the sender alive so
            // receivers do not see it dropped.
            std::future::pending::<()>().await;
        }
        eprintln!("Ctrl-C: finishing the job in hand (Ctrl-C again to quit at once)");
        let _ = tx.send(true);
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("quitting; messages in hand come back after their visibility timeout");
            std::process::exit(130);
        }
        std::future::pending::<()>().await;
    });
    rx
}

/// Completes once the flag is true.
async fn stopped(mut stop: watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}
