//! Administration commands: topics, queues (with their settings flags),
//! subscriptions and the health check. Each prints the server's answer.

use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

use super::output::JsonLines;
use super::values::{parse_json_object, parse_seconds};
use super::ConnectArgs;
use crate::client::Client;
use crate::model::{QueueName, TopicName};

/// `pubq topic ...`
#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create a topic (idempotent).
    Create {
        /// Topic name.
        name: TopicName,
        /// A FIFO topic: ordered per group, deduplicated. Cannot change later.
        #[arg(long)]
        fifo: bool,
        /// FIFO only: deduplicate by the SHA-256 of the body when no --dedup id is given.
        #[arg(long)]
        content_based_dedup: bool,
    },
    /// Delete a topic.
    Delete {
        /// Topic name.
        name: TopicName,
    },
    /// List topics, one per line.
    List,
    /// Describe a topic: settings, subscriptions, counters.
    Show {
        /// Topic name.
        name: TopicName,
    },
}

/// `pubq queue ...`
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Create a queue, or update an existing one's given settings.
    Create {
        /// Queue name.
        name: QueueName,
        /// A FIFO queue: strict order per group, exactly-once enqueue. Cannot
        /// change later.
        #[arg(long)]
        fifo: bool,
        #[command(flatten)]
        settings: QueueSettingsArgs,
    },
    /// Change the given settings of an existing queue; the others keep their values.
    Update {
        /// Queue name.
        name: QueueName,
        #[command(flatten)]
        settings: QueueSettingsArgs,
    },
    /// Delete a queue (refused while it is a DLQ or subscribed to a topic).
    Delete {
        /// Queue name.
        name: QueueName,
    },
    /// List queues, one per line.
    List,
    /// Describe a queue: settings and stats.
    Show {
        /// Queue name.
        name: QueueName,
    },
    /// Drop every message of a queue, in flight too.
    Purge {
        /// Queue name.
        name: QueueName,
    },
    /// Move a dead-letter queue's messages back to the queues they came from.
    Redrive {
        /// The dead-letter queue.
        dlq: QueueName,
        /// Move at most this many messages per second.
        #[arg(long, value_name = "N")]
        max_per_second: Option<u32>,
    },
}

/// The settings flags of `queue create` and `queue update`. A flag left out is
/// left out of the request, so the server keeps (or defaults) that setting.
#[derive(Debug, Clone, Default, Args)]
pub struct QueueSettingsArgs {
    /// Every new message stays invisible this long (e.g. 10s).
    #[arg(long, value_name = "DURATION", value_parser = parse_seconds)]
    pub delay: Option<u64>,
    /// How long a received message stays hidden before it is delivered again.
    #[arg(long, value_name = "DURATION", value_parser = parse_seconds)]
    pub visibility: Option<u64>,
    /// Messages older than this are dropped (e.g. 4d).
    #[arg(long, value_name = "DURATION", value_parser = parse_seconds)]
    pub retention: Option<u64>,
    /// Largest message (body plus attributes), in bytes.
    #[arg(long, value_name = "N")]
    pub max_message_bytes: Option<u64>,
    /// Default long-poll wait of a receive (at most 20s).
    #[arg(long, value_name = "DURATION", value_parser = parse_seconds)]
    pub receive_wait: Option<u64>,
    /// FIFO only: deduplicate by the SHA-256 of the body. `=false` turns it off.
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub content_based_dedup: Option<bool>,
    /// How long a dedup id is remembered (e.g. 5m).
    #[arg(long, value_name = "DURATION", value_parser = parse_seconds)]
    pub dedup_window: Option<u64>,
    /// Dead-letter queue for messages received more than --max-receives times.
    #[arg(long, value_name = "QUEUE", requires = "max_receives")]
    pub dlq: Option<QueueName>,
    /// Receives before a message moves to the --dlq.
    #[arg(long, value_name = "N", requires = "dlq")]
    pub max_receives: Option<u32>,
    /// First redelivery delay after a nack or lapsed visibility; doubles each time.
    #[arg(
        long,
        value_name = "DURATION",
        value_parser = parse_seconds,
        requires = "backoff_max"
    )]
    pub backoff_initial: Option<u64>,
    /// Longest redelivery delay of the backoff.
    #[arg(
        long,
        value_name = "DURATION",
        value_parser = parse_seconds,
        requires = "backoff_initial"
    )]
    pub backoff_max: Option<u64>,
}

impl QueueSettingsArgs {
    /// The `PUT /v1/queues/{queue}` body: only the settings that were given.
    pub fn to_json(&self, fifo: Option<bool>) -> Value {
        let mut body = Map::new();
        let mut set = |key: &str, value: Option<Value>| {
            if let Some(v) = value {
                body.insert(key.to_string(), v);
            }
        };
        set("fifo", fifo.map(Value::from));
        set(
            "content_based_dedup",
            self.content_based_dedup.map(Value::from),
        );
        set("dedup_window_seconds", self.dedup_window.map(Value::from));
        set("delay_seconds", self.delay.map(Value::from));
        set(
            "visibility_timeout_seconds",
            self.visibility.map(Value::from),
        );
        set("retention_seconds", self.retention.map(Value::from));
        set("max_message_bytes", self.max_message_bytes.map(Value::from));
        set("receive_wait_seconds", self.receive_wait.map(Value::from));
        // clap's `requires` makes these pairs all-or-nothing.
        if let (Some(queue), Some(max_receives)) = (&self.dlq, self.max_receives) {
            set(
                "dead_letter",
                Some(json!({ "queue": queue.as_str(), "max_receives": max_receives })),
            );
        }
        if let (Some(initial), Some(max)) = (self.backoff_initial, self.backoff_max) {
            set(
                "retry_backoff",
                Some(json!({ "initial_seconds": initial, "max_seconds": max })),
            );
        }
        Value::Object(body)
    }
}

/// `pubq subscribe TOPIC QUEUE [--filter JSON]`
#[derive(Debug, Args)]
pub struct SubscribeArgs {
    /// Topic name.
    pub topic: TopicName,
    /// Queue name.
    pub queue: QueueName,
    /// Filter policy: a JSON object, or @FILE to read one.
    #[arg(long, value_name = "JSON", value_parser = parse_json_object)]
    pub filter: Option<Value>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `pubq unsubscribe TOPIC QUEUE`
#[derive(Debug, Args)]
pub struct UnsubscribeArgs {
    /// Topic name.
    pub topic: TopicName,
    /// Queue name.
    pub queue: QueueName,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `pubq health`
#[derive(Debug, Args)]
pub struct HealthArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
}

pub async fn topic(client: &Client, command: TopicCommand) -> anyhow::Result<()> {
    let mut out = JsonLines::stdout();
    match command {
        TopicCommand::Create {
            name,
            fifo,
            content_based_dedup,
        } => {
            // `fifo` is always sent: creating "a standard topic" over a FIFO one
            // should be refused (409), not silently succeed.
            let mut body = json!({ "fifo": fifo });
            if content_based_dedup {
                body["content_based_dedup"] = Value::Bool(true);
            }
            out.emit_answer(&client.put_topic(name.as_str(), &body).await?)?;
        }
        TopicCommand::Delete { name } => {
            out.emit_answer(&client.delete_topic(name.as_str()).await?)?;
        }
        TopicCommand::List => out.emit_list(client.list_topics().await?, "topics")?,
        TopicCommand::Show { name } => out.emit_answer(&client.get_topic(name.as_str()).await?)?,
    }
    Ok(())
}

pub async fn queue(client: &Client, command: QueueCommand) -> anyhow::Result<()> {
    let mut out = JsonLines::stdout();
    let answer = match command {
        // As for topics, `create` states the kind so a mismatch is a 409;
        // `update` leaves it out, which the contract reads as "no change".
        QueueCommand::Create {
            name,
            fifo,
            settings,
        } => {
            client
                .put_queue(name.as_str(), &settings.to_json(Some(fifo)))
                .await?
        }
        QueueCommand::Update { name, settings } => {
            client
                .put_queue(name.as_str(), &settings.to_json(None))
                .await?
        }
        QueueCommand::Delete { name } => client.delete_queue(name.as_str()).await?,
        QueueCommand::List => {
            out.emit_list(client.list_queues().await?, "queues")?;
            return Ok(());
        }
        QueueCommand::Show { name } => client.get_queue(name.as_str()).await?,
        QueueCommand::Purge { name } => client.purge_queue(name.as_str()).await?,
        QueueCommand::Redrive {
            dlq,
            max_per_second,
        } => client.redrive(dlq.as_str(), max_per_second).await?,
    };
    out.emit_answer(&answer)?;
    Ok(())
}

pub async fn subscribe(client: &Client, args: &SubscribeArgs) -> anyhow::Result<()> {
    let answer = client
        .subscribe(
            args.topic.as_str(),
            args.queue.as_str(),
            args.filter.as_ref(),
        )
        .await?;
    JsonLines::stdout().emit_answer(&answer)?;
    Ok(())
}

pub async fn unsubscribe(client: &Client, args: &UnsubscribeArgs) -> anyhow::Result<()> {
    let answer = client
        .unsubscribe(args.topic.as_str(), args.queue.as_str())
        .await?;
    JsonLines::stdout().emit_answer(&answer)?;
    Ok(())
}

/// Prints `{"live": bool, "ready": bool}`; succeeds only when both hold, so
/// scripts can wait for a server with `until pubq health; do sleep 1; done`.
pub async fn health(client: &Client) -> anyhow::Result<()> {
    let mut out = JsonLines::stdout();
    client.healthz().await?;
    match client.readyz().await {
        Ok(_) => {
            out.emit(&json!({ "live": true, "ready": true }))?;
            Ok(())
        }
        Err(e) => {
            out.emit(&json!({ "live": true, "ready": false }))?;
            Err(e.into())
        }
    }
}
