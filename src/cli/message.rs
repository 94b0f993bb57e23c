//! Message commands: publish to a topic, send to a queue, and ack, nack or
//! change the visibility of received messages by receipt.

use std::collections::BTreeMap;

use anyhow::Context;
use base64::Engine;
use clap::Args;
use tokio::io::{AsyncBufReadExt, AsyncReadExt};

use super::output::JsonLines;
use super::values::{parse_attr, parse_rfc3339, parse_seconds, Attr};
use super::{ConnectArgs, PartialFailure, UsageError};
use crate::client::{Client, EntryError, OutgoingMessage, ReceiptOutcome};
use crate::model::{QueueName, TopicName};

/// The most messages one publish request may carry (the contract's batch limit).
const MAX_BATCH: usize = 100;

/// `pubq publish TOPIC [BODY | -] ...`
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Topic name.
    pub topic: TopicName,
    #[command(flatten)]
    pub message: MessageArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `pubq send QUEUE [BODY | -] ...`
#[derive(Debug, Args)]
pub struct SendArgs {
    /// Queue name.
    pub queue: QueueName,
    #[command(flatten)]
    pub message: MessageArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// The message flags shared by `publish` and `send`.
#[derive(Debug, Clone, Default, Args)]
pub struct MessageArgs {
    /// Message body; `-` reads it from stdin. Omitted: an empty body.
    pub body: Option<String>,
    /// An attribute (repeatable).
    #[arg(long = "attr", value_name = "KEY=VALUE", value_parser = parse_attr)]
    pub attrs: Vec<Attr>,
    /// FIFO message group (required on FIFO, refused on standard).
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    /// FIFO deduplication id.
    #[arg(long, value_name = "ID", conflicts_with = "lines")]
    pub dedup: Option<String>,
    /// Keep the message invisible this long (standard only; e.g. 5s).
    #[arg(long, value_name = "DURATION", value_parser = parse_seconds)]
    pub delay: Option<u64>,
    /// Deliver at this RFC 3339 time (standard only).
    #[arg(
        long,
        value_name = "TIME",
        value_parser = parse_rfc3339,
        conflicts_with = "delay"
    )]
    pub deliver_at: Option<String>,
    /// Mark it as the end-of-work marker: consumers stop after it.
    #[arg(long)]
    pub poison: bool,
    /// The body is binary: send its bytes base64-encoded (`body_encoding: base64`).
    #[arg(long)]
    pub base64: bool,
    /// Read stdin and send each line as its own message (in batches of 100).
    #[arg(long)]
    pub lines: bool,
}

/// `pubq ack QUEUE RECEIPT...`
#[derive(Debug, Args)]
pub struct AckArgs {
    /// Queue name.
    pub queue: QueueName,
    #[arg(required = true, value_name = "RECEIPT")]
    pub receipts: Vec<String>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `pubq nack QUEUE RECEIPT... [--delay 5s]`
#[derive(Debug, Args)]
pub struct NackArgs {
    /// Queue name.
    pub queue: QueueName,
    #[arg(required = true, value_name = "RECEIPT")]
    pub receipts: Vec<String>,
    /// Stay invisible this long before being delivered again.
    #[arg(long, value_name = "DURATION", value_parser = parse_seconds, default_value = "0")]
    pub delay: u64,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `pubq visibility QUEUE RECEIPT... --timeout 60s`
#[derive(Debug, Args)]
pub struct VisibilityArgs {
    /// Queue name.
    pub queue: QueueName,
    #[arg(required = true, value_name = "RECEIPT")]
    pub receipts: Vec<String>,
    /// Hide the messages this long from now (0 makes them visible at once).
    #[arg(long, value_name = "DURATION", value_parser = parse_seconds)]
    pub timeout: u64,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Where a message goes: the two endpoints take the same body.
enum Target<'a> {
    Topic(&'a str),
    Queue(&'a str),
}

pub async fn publish(client: &Client, args: &PublishArgs) -> anyhow::Result<()> {
    post(client, Target::Topic(args.topic.as_str()), &args.message).await
}

pub async fn send(client: &Client, args: &SendArgs) -> anyhow::Result<()> {
    post(client, Target::Queue(args.queue.as_str()), &args.message).await
}

pub async fn ack(client: &Client, args: &AckArgs) -> anyhow::Result<()> {
    let outcomes = client.ack(args.queue.as_str(), &args.receipts).await?;
    print_outcomes(&outcomes)
}

pub async fn nack(client: &Client, args: &NackArgs) -> anyhow::Result<()> {
    let outcomes = client
        .nack(args.queue.as_str(), &args.receipts, args.delay)
        .await?;
    print_outcomes(&outcomes)
}

pub async fn visibility(client: &Client, args: &VisibilityArgs) -> anyhow::Result<()> {
    let outcomes = client
        .visibility(args.queue.as_str(), &args.receipts, args.timeout)
        .await?;
    print_outcomes(&outcomes)
}

impl MessageArgs {
    /// The message for `body` bytes, with every flag applied.
    pub fn to_message(&self, body: Vec<u8>) -> Result<OutgoingMessage, UsageError> {
        let (body, body_encoding) = if self.base64 {
            (
                base64::engine::general_purpose::STANDARD.encode(body),
                Some("base64".to_string()),
            )
        } else {
            let text = String::from_utf8(body).map_err(|_| {
                UsageError("the body is not UTF-8 text; pass --base64 to send binary data".into())
            })?;
            (text, None)
        };
        Ok(OutgoingMessage {
            body,
            body_encoding,
            attributes: self.attributes()?,
            group_id: self.group.clone(),
            dedup_id: self.dedup.clone(),
            delay_seconds: self.delay,
            deliver_at: self.deliver_at.clone(),
            poison: self.poison,
        })
    }

    /// The attributes; a key given twice is a mistake, not "last one wins".
    pub fn attributes(&self) -> Result<BTreeMap<String, String>, UsageError> {
        let mut map = BTreeMap::new();
        for Attr { key, value } in &self.attrs {
            if map.insert(key.clone(), value.clone()).is_some() {
                return Err(UsageError(format!("attribute {key:?} is given twice")));
            }
        }
        Ok(map)
    }

    /// Whether the body comes from stdin.
    fn reads_stdin(&self) -> Result<bool, UsageError> {
        match (self.body.as_deref(), self.lines) {
            (Some("-"), _) => Ok(true),
            (None, true) => Ok(true),
            (Some(_), true) => Err(UsageError(
                "--lines reads stdin: give `-` or no BODY".into(),
            )),
            _ => Ok(false),
        }
    }
}

async fn post(client: &Client, target: Target<'_>, args: &MessageArgs) -> anyhow::Result<()> {
    // Check everything that does not need stdin before reading it, so a typo
    // does not swallow a pipe.
    let from_stdin = args.reads_stdin()?;
    args.attributes()?;
    if args.lines {
        return post_lines(client, &target, args).await;
    }
    let body = if from_stdin {
        let mut bytes = Vec::new();
        tokio::io::stdin()
            .read_to_end(&mut bytes)
            .await
            .context("cannot read the body from stdin")?;
        bytes
    } else {
        args.body.clone().unwrap_or_default().into_bytes()
    };
    let message = args.to_message(body)?;
    let id = match target {
        Target::Topic(topic) => client.publish(topic, &message).await?,
        Target::Queue(queue) => client.send(queue, &message).await?,
    };
    JsonLines::stdout().emit(&serde_json::json!({ "id": id }))?;
    Ok(())
}

/// `--lines`: each stdin line (without its line ending) is one message. Lines
/// go out in batches of [`MAX_BATCH`] as they are read, so an endless pipe
/// streams; each entry prints `{"id"}` or `{"error"}` in input order.
async fn post_lines(
    client: &Client,
    target: &Target<'_>,
    args: &MessageArgs,
) -> anyhow::Result<()> {
    let mut out = JsonLines::stdout();
    let mut input = tokio::io::BufReader::new(tokio::io::stdin());
    let (mut total, mut failed) = (0usize, 0usize);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = input
            .read_until(b'\n', &mut line)
            .await
            .context("cannot read stdin")?;
        if n > 0 {
            let text = line.strip_suffix(b"\n").unwrap_or(&line);
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            batch.push(args.to_message(text.to_vec())?);
        }
        if batch.len() == MAX_BATCH || (n == 0 && !batch.is_empty()) {
            let results = match target {
                Target::Topic(topic) => client.publish_batch(topic, &batch).await?,
                Target::Queue(queue) => client.send_batch(queue, &batch).await?,
            };
            total += results.len();
            for result in results {
                match result {
                    Ok(id) => out.emit(&serde_json::json!({ "id": id }))?,
                    Err(error) => {
                        failed += 1;
                        out.emit(&entry_error(&error))?;
                    }
                }
            }
            batch.clear();
        }
        if n == 0 {
            break;
        }
    }
    if failed > 0 {
        return Err(PartialFailure {
            failed,
            total,
            what: "messages",
        }
        .into());
    }
    Ok(())
}

fn entry_error(error: &EntryError) -> serde_json::Value {
    serde_json::json!({ "error": error })
}

/// One line per receipt, `{"receipt", "ok": true}` or `{"receipt", "error"}`,
/// as the server answers; exit code 1 if any failed.
fn print_outcomes(outcomes: &[ReceiptOutcome]) -> anyhow::Result<()> {
    let mut out = JsonLines::stdout();
    let mut failed = 0;
    for outcome in outcomes {
        match &outcome.error {
            None => out.emit(&serde_json::json!({ "receipt": outcome.receipt, "ok": true }))?,
            Some(error) => {
                failed += 1;
                out.emit(&serde_json::json!({ "receipt": outcome.receipt, "error": error }))?;
            }
        }
    }
    if failed > 0 {
        return Err(PartialFailure {
            failed,
            total: outcomes.len(),
            what: "receipts",
        }
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> MessageArgs {
        MessageArgs::default()
    }

    #[test]
    fn base64_flag_encodes_the_bytes() {
        let m = MessageArgs {
            base64: true,
            ..args()
        }
        .to_message(vec![0xff, 0x00])
        .expect("binary is fine with --base64");
        assert_eq!(m.body, "/wA=");
        assert_eq!(m.body_encoding.as_deref(), Some("base64"));
    }

    #[test]
    fn binary_without_base64_is_a_usage_error() {
        assert!(args().to_message(vec![0xff]).is_err());
    }

    #[test]
    fn a_repeated_attribute_key_is_a_usage_error() {
        let a = MessageArgs {
            attrs: vec![
                Attr {
                    key: "k".into(),
                    value: "1".into(),
                },
                Attr {
                    key: "k".into(),
                    value: "2".into(),
                },
            ],
            ..args()
        };
        assert!(a.attributes().is_err());
    }

    #[test]
    fn lines_take_stdin_only() {
        let with_body = MessageArgs {
            body: Some("x".into()),
            lines: true,
            ..args()
        };
        assert!(with_body.reads_stdin().is_err());
        let dash = MessageArgs {
            body: Some("-".into()),
            ..args()
        };
        assert_eq!(dash.reads_stdin().ok(), Some(true));
        assert_eq!(args().reads_stdin().ok(), Some(false));
    }
}
