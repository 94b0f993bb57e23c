//! `consume` and `tail`: receive, print each message as one JSON line, then ack
//! what was printed. With `--follow` (and always for `tail`) this repeats as a
//! long poll until a poison message, Ctrl-C/SIGTERM, or stdout closing.
//!
//! A message is acked only after its line is written, so a consumer that dies
//! or whose reader goes away leaves unprinted messages to be delivered again
//! (at-least-once). Messages received but not printed (after a poison message,
//! or once stdout closed) are nacked with no delay so other consumers get them
//! at once instead of after the visibility timeout.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use clap::Args;
use serde_json::Value;

use super::output::{JsonLines, OutputError};
use super::values::{parse_json_object, parse_seconds};
use super::ConnectArgs;
use crate::client::{Client, ClientError, ReceiveOptions, ReceivedMessage};
use crate::model::names::MAX_NAME_LEN;
use crate::model::{NameError, QueueName, TopicName};

/// Long-poll wait of each receive in follow mode unless `--wait` says otherwise.
pub const FOLLOW_WAIT_SECONDS: u64 = 20;

/// Batch size of `tail`'s receives: it drains a busy topic faster than one
/// message per request, and a tail consumer is the only one on its queue.
pub const TAIL_BATCH: u32 = 10;

/// First and longest pause before polling again after a transient failure
/// (server restarting, 503, 429) in follow mode.
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// `pubq consume QUEUE ...`
#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// Queue name.
    pub queue: QueueName,
    /// Receive up to N messages per request (1..100; server default 1).
    #[arg(long, value_name = "N")]
    pub max: Option<u32>,
    /// Long-poll wait per request (at most 20s) [default: the queue's; 20s with --follow].
    #[arg(long, value_name = "DURATION", value_parser = parse_seconds)]
    pub wait: Option<u64>,
    /// Hide received messages this long instead of the queue's visibility timeout.
    #[arg(long, value_name = "DURATION", value_parser = parse_seconds)]
    pub visibility: Option<u64>,
    /// Keep receiving until a poison message or Ctrl-C.
    #[arg(long)]
    pub follow: bool,
    /// Print messages without acking them (ack later with `pubq ack` and the receipt).
    #[arg(long)]
    pub no_ack: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `pubq tail TOPIC`
#[derive(Debug, Args)]
pub struct TailArgs {
    /// Topic name.
    pub topic: TopicName,
    /// Only show messages matching this filter policy (JSON object or @FILE).
    #[arg(long, value_name = "JSON", value_parser = parse_json_object)]
    pub filter: Option<Value>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Why a follow loop stopped without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// A poison message was printed (and acked unless `--no-ack`).
    Poison,
    /// Ctrl-C or SIGTERM.
    Signal,
    /// Nobody reads stdout any more.
    OutputClosed,
}

pub async fn consume(client: &Client, args: &ConsumeArgs) -> anyhow::Result<()> {
    let queue = args.queue.as_str();
    let mut out = JsonLines::stdout();
    let options = ReceiveOptions {
        max: args.max,
        wait_seconds: args.wait.or(args.follow.then_some(FOLLOW_WAIT_SECONDS)),
        visibility_timeout_seconds: args.visibility,
    };
    if !args.follow {
        let messages = client.receive(queue, &options).await?;
        deliver(client, queue, messages, !args.no_ack, &mut out).await?;
        return Ok(());
    }
    let signal = std::pin::pin!(shutdown_signal());
    let stop = follow(client, queue, &options, !args.no_ack, &mut out, signal).await?;
    tracing::debug!(queue, ?stop, "consume stopped");
    Ok(())
}

/// Creates a temporary queue, subscribes it to the topic, follows it, and
/// removes both on the way out, whatever ended the loop. A `kill -9` leaves
/// them behind: their names start with `tail-` so they are easy to find.
pub async fn tail(client: &Client, args: &TailArgs) -> anyhow::Result<()> {
    let topic = args.topic.as_str();
    let queue = tail_queue_name(&args.topic, rand::random::<u64>())?;
    let queue = queue.as_str();
    // Listen for Ctrl-C before the queue exists: one pressed during setup then
    // stops the loop at once, through the cleanup, instead of killing the
    // process and leaving the queue behind.
    let mut signal = std::pin::pin!(shutdown_signal());
    if futures::poll!(signal.as_mut()).is_ready() {
        return Ok(());
    }
    client.put_queue(queue, &serde_json::json!({})).await?;
    let outcome = match client.subscribe(topic, queue, args.filter.as_ref()).await {
        Ok(_) => {
            tracing::info!(topic, queue, "tailing through a temporary queue");
            let options = ReceiveOptions {
                max: Some(TAIL_BATCH),
                wait_seconds: Some(FOLLOW_WAIT_SECONDS),
                visibility_timeout_seconds: None,
            };
            let mut out = JsonLines::stdout();
            follow(client, queue, &options, true, &mut out, signal)
                .await
                .map(|_| ())
        }
        Err(e) => Err(e.into()),
    };
    // The handler for Ctrl-C stays installed, so a second Ctrl-C would
    // otherwise be ignored while cleanup waits on an unreachable server: let it
    // abandon the cleanup instead.
    tokio::select! {
        () = remove_tail_queue(client, topic, queue) => {}
        () = shutdown_signal() => {
            tracing::warn!(queue, "interrupted again: leaving the temporary queue behind");
        }
    }
    outcome
}

/// `tail-<topic>-<16 hex digits>`, with the topic cut short so the whole name
/// stays within the contract's 80 characters.
pub fn tail_queue_name(topic: &TopicName, random: u64) -> Result<QueueName, NameError> {
    const PREFIX: &str = "tail-";
    let suffix = format!("-{random:016x}");
    let room = MAX_NAME_LEN - PREFIX.len() - suffix.len();
    let topic_part: String = topic.as_str().chars().take(room).collect();
    QueueName::new(&format!("{PREFIX}{topic_part}{suffix}"))
}

async fn remove_tail_queue(client: &Client, topic: &str, queue: &str) {
    // Unsubscribe first: the server refuses to delete a subscribed queue.
    match client.unsubscribe(topic, queue).await {
        Ok(_) => {}
        // Never subscribed (subscribe failed), or the topic went away.
        Err(e) if e.status() == Some(404) => {}
        Err(e) => {
            tracing::warn!(topic, queue, error = %e, "cannot unsubscribe the temporary queue")
        }
    }
    if let Err(e) = client.delete_queue(queue).await {
        tracing::warn!(queue, error = %e, "cannot delete the temporary queue; delete it with `pubq queue delete`");
    }
}

/// Long-polls `queue` and delivers each batch until a [`Stop`]; `signal`
/// resolving is [`Stop::Signal`]. Transient
/// failures (the server restarting, 429, 503) are retried with backoff once a
/// first receive has worked; before that they are reported, so a wrong
/// `--server` fails fast with exit code 3 instead of hanging.
async fn follow<W: std::io::Write>(
    client: &Client,
    queue: &str,
    options: &ReceiveOptions,
    ack: bool,
    out: &mut JsonLines<W>,
    mut signal: Pin<&mut impl Future<Output = ()>>,
) -> anyhow::Result<Stop> {
    let closed = stdout_closed();
    tokio::pin!(closed);
    let mut reached = false;
    let mut pause = RETRY_FIRST;
    loop {
        // Dropping an in-flight receive on a signal is safe: anything the
        // server leased to it becomes visible again after the visibility timeout.
        let received = tokio::select! {
            biased;
            () = &mut signal => return Ok(Stop::Signal),
            () = &mut closed => return Ok(Stop::OutputClosed),
            r = client.receive(queue, options) => r,
        };
        match received {
            Ok(messages) => {
                reached = true;
                pause = RETRY_FIRST;
                if let Some(stop) = deliver(client, queue, messages, ack, out).await? {
                    return Ok(stop);
                }
            }
            Err(e) if reached && e.is_transient() => {
                tracing::warn!(queue, error = %e, retry_in = ?pause, "receive failed; retrying");
                tokio::select! {
                    biased;
                    () = &mut signal => return Ok(Stop::Signal),
                    () = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(RETRY_MAX);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Prints `messages` in order up to the first poison message, acks what was
/// printed (if `ack`), and nacks what was not. Answers why to stop, if so.
async fn deliver<W: std::io::Write>(
    client: &Client,
    queue: &str,
    messages: Vec<ReceivedMessage>,
    ack: bool,
    out: &mut JsonLines<W>,
) -> anyhow::Result<Option<Stop>> {
    let mut printed = Vec::with_capacity(messages.len());
    let mut outcome = Ok(None);
    // Index of the first message not printed.
    let mut next = messages.len();
    for (i, message) in messages.iter().enumerate() {
        match out.emit(message) {
            Ok(()) => printed.push(message.receipt.clone()),
            Err(e) => {
                outcome = match e {
                    OutputError::Closed => Ok(Some(Stop::OutputClosed)),
                    other => Err(other.into()),
                };
                next = i;
                break;
            }
        }
        if message.poison {
            outcome = Ok(Some(Stop::Poison));
            next = i + 1;
            break;
        }
    }
    let unprinted: Vec<String> = messages[next..].iter().map(|m| m.receipt.clone()).collect();
    settle(client, queue, &printed, &unprinted, ack).await?;
    outcome
}

/// Acks the printed receipts (if `ack`) and nacks the unprinted ones at once.
/// Per-receipt failures are warnings: the message will simply come again. A
/// transient failure of the whole call is a warning for the same reason; any
/// other failure (the queue is gone, the token lost its grant) ends the command.
async fn settle(
    client: &Client,
    queue: &str,
    printed: &[String],
    unprinted: &[String],
    ack: bool,
) -> Result<(), ClientError> {
    if ack && !printed.is_empty() {
        report(queue, "ack", client.ack(queue, printed).await)?;
    }
    if !unprinted.is_empty() {
        report(queue, "nack", client.nack(queue, unprinted, 0).await)?;
    }
    Ok(())
}

fn report(
    queue: &str,
    what: &str,
    result: Result<Vec<crate::client::ReceiptOutcome>, ClientError>,
) -> Result<(), ClientError> {
    match result {
        Ok(outcomes) => {
            for o in outcomes.iter().filter(|o| !o.is_ok()) {
                let code = o.error.as_ref().map_or("", |e| e.code.as_str());
                tracing::warn!(queue, receipt = %o.receipt, code, "{what} refused; the message will be delivered again");
            }
            Ok(())
        }
        Err(e) if e.is_transient() => {
            tracing::warn!(queue, error = %e, "{what} failed; the messages will be delivered again");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Resolves once nobody can read stdout any more (the reader of a pipe exited,
/// as in `pubq tail t | head -1`), so an idle follow loop stops then rather
/// than at its next message. Linux reports that as an error condition on the
/// pipe's write end; where stdout cannot be watched (a regular file, another
/// OS) this never resolves and a closed stdout is noticed at the next write.
async fn stdout_closed() {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsFd;
        use tokio::io::{unix::AsyncFd, Interest};
        // A duplicate of fd 1 that this function owns, so nothing else can
        // close it while it is registered with the reactor.
        if let Ok(owned) = std::io::stdout().as_fd().try_clone_to_owned() {
            // SAFETY: `owned` is an open descriptor moved into the `AsyncFd`; it
            // stays open and unchanged until the `AsyncFd` drops it.
            let registered = unsafe { AsyncFd::register_with_interest(owned, Interest::ERROR) };
            if let Ok(fd) = registered {
                if fd.ready(Interest::ERROR).await.is_ok() {
                    return;
                }
            }
        }
    }
    std::future::pending::<()>().await;
}

/// Resolves on Ctrl-C or (on Unix) SIGTERM. If a handler cannot be installed
/// the default signal behaviour (terminate) stays, so it never resolves.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::debug!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_queue_names_fit_in_80_characters() {
        let short = TopicName::new("orders").expect("valid");
        let name = tail_queue_name(&short, 0xab).expect("valid queue name");
        assert_eq!(name.as_str(), "tail-orders-00000000000000ab");

        let long = TopicName::new(&"t".repeat(80)).expect("valid");
        let name = tail_queue_name(&long, u64::MAX).expect("valid queue name");
        assert_eq!(name.as_str().len(), MAX_NAME_LEN);
        assert!(name.as_str().starts_with("tail-ttt"));
        assert!(name.as_str().ends_with("-ffffffffffffffff"));
    }
}
