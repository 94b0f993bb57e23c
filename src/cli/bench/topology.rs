//! The topic and queues a bench run creates for itself, under a name unique
//! to the run, and removes again at the end (unless `--keep`).
//!
//! Removal order follows the server's rules: subscriptions first (a
//! subscribed queue cannot be deleted), then queues, then the topic. Anything
//! already gone (404) is fine; other failures are logged, not fatal: the
//! report is worth more than a tidy server, and the names say what to delete.

use anyhow::Context;
use serde_json::json;

use crate::cli::UsageError;
use crate::client::{Client, ClientError};
use crate::model::{QueueName, TopicName};

/// The resources of one run.
#[derive(Debug, Clone)]
pub struct Topology {
    /// `None` for a run that sends straight to its queue (backlog).
    pub topic: Option<String>,
    pub queues: Vec<String>,
    /// Whether the topic and queues are FIFO.
    pub fifo: bool,
}

impl Topology {
    /// Names for a run: `{prefix}-{run id}` for the topic and
    /// `{prefix}-{run id}-q{i}` for the queues. Checked here, so a bad
    /// `--prefix` is a usage error rather than a server refusal midway.
    pub fn named(
        prefix: &str,
        run_id: &str,
        with_topic: bool,
        queues: usize,
        fifo: bool,
    ) -> anyhow::Result<Self> {
        let base = format!("{prefix}-{run_id}");
        let topic = with_topic.then(|| base.clone());
        if let Some(t) = &topic {
            TopicName::new(t).map_err(|e| UsageError(format!("--prefix: {e}")))?;
        }
        let queues: Vec<String> = (0..queues).map(|i| format!("{base}-q{i}")).collect();
        for q in &queues {
            QueueName::new(q).map_err(|e| UsageError(format!("--prefix: {e}")))?;
        }
        Ok(Self {
            topic,
            queues,
            fifo,
        })
    }

    /// Creates the topic, the queues and the subscriptions.
    pub async fn create(&self, client: &Client) -> anyhow::Result<()> {
        let settings = if self.fifo {
            json!({ "fifo": true })
        } else {
            json!({})
        };
        if let Some(topic) = &self.topic {
            client
                .put_topic(topic, &settings)
                .await
                .with_context(|| format!("creating topic {topic}"))?;
        }
        for queue in &self.queues {
            client
                .put_queue(queue, &settings)
                .await
                .with_context(|| format!("creating queue {queue}"))?;
            if let Some(topic) = &self.topic {
                client
                    .subscribe(topic, queue, None)
                    .await
                    .with_context(|| format!("subscribing {queue} to {topic}"))?;
            }
        }
        tracing::debug!(topic = ?self.topic, queues = self.queues.len(), "bench resources created");
        Ok(())
    }

    /// Deletes what [`Topology::create`] made; a failure is logged and the
    /// rest is still attempted.
    pub async fn remove(&self, client: &Client) {
        if let Some(topic) = &self.topic {
            for queue in &self.queues {
                ignore_missing(client.unsubscribe(topic, queue).await, "unsubscribe", queue);
            }
        }
        for queue in &self.queues {
            ignore_missing(client.delete_queue(queue).await, "delete queue", queue);
        }
        if let Some(topic) = &self.topic {
            ignore_missing(client.delete_topic(topic).await, "delete topic", topic);
        }
    }
}

fn ignore_missing<T>(result: Result<T, ClientError>, what: &str, name: &str) {
    match result {
        Ok(_) => {}
        Err(e) if e.status() == Some(404) => {}
        Err(e) => tracing::warn!(name, error = %e, "cleanup: {what} failed; delete it by hand"),
    }
}
