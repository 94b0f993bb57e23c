//! Redrive: moving a dead-letter queue's messages back to the queues they came
//! from, in the background, optionally rate-limited. Moved messages start over
//! with a receive count of 0. Progress shows in the DLQ's describe.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{Hub, HubError};
use crate::model::{MessageId, Millis, MsgRef, QueueName};
use crate::queue::{EnqueueOptions, EnqueueOutcome};
use crate::storage::{CopyRec, Record};

/// Most messages moved per step.
const REDRIVE_STEP: usize = 100;

/// The answer to a redrive request (202).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedriveStarted {
    pub task_id: String,
    /// Messages eligible when it started.
    pub messages: u64,
}

/// A redrive's progress, for describe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedriveProgress {
    pub task_id: String,
    pub running: bool,
    pub total: u64,
    pub moved: u64,
    pub started_at: Millis,
    pub max_per_second: Option<u32>,
}

pub(crate) struct RedriveTask {
    task_id: String,
    total: u64,
    moved: AtomicU64,
    running: AtomicBool,
    started_at: Millis,
    max_per_second: Option<u32>,
}

impl RedriveTask {
    pub(crate) fn progress(&self) -> RedriveProgress {
        RedriveProgress {
            task_id: self.task_id.clone(),
            running: self.running.load(Ordering::Relaxed),
            total: self.total,
            moved: self.moved.load(Ordering::Relaxed),
            started_at: self.started_at,
            max_per_second: self.max_per_second,
        }
    }
}

impl Hub {
    /// Starts moving `dlq`'s messages back to their sources.
    pub fn redrive(
        &self,
        dlq: &QueueName,
        max_per_second: Option<u32>,
    ) -> Result<RedriveStarted, HubError> {
        if max_per_second == Some(0) {
            return Err(HubError::InvalidRequest(
                "max_per_second must be at least 1".into(),
            ));
        }
        let q = self.queue(dlq)?;
        if self.dead_letter_sources(dlq).is_empty() {
            return Err(HubError::NotADeadLetterQueue(dlq.clone()));
        }
        if let Some(t) = self.inner.redrives.get(dlq) {
            if t.running.load(Ordering::Relaxed) {
                return Err(HubError::InvalidRequest(format!(
                    "a redrive of {dlq} is already running (task {})",
                    t.task_id
                )));
            }
        }
        let now = self.now();
        let (stats, moves) = q.with(now, |g| g.engine.stats(now));
        self.forward_dead_letters(moves);
        let total = stats.visible + stats.delayed;
        let task = Arc::new(RedriveTask {
            task_id: MessageId::generate(now).to_string(),
            total,
            moved: AtomicU64::new(0),
            running: AtomicBool::new(true),
            started_at: now,
            max_per_second,
        });
        self.inner.redrives.insert(dlq.clone(), task.clone());
        let hub = self.clone();
        let name = dlq.clone();
        tokio::spawn(async move { hub.run_redrive(name, task).await });
        Ok(RedriveStarted {
            task_id: self
                .inner
                .redrives
                .get(dlq)
                .map(|t| t.task_id.clone())
                .unwrap_or_default(),
            messages: total,
        })
    }

    async fn run_redrive(&self, dlq: QueueName, task: Arc<RedriveTask>) {
        let step = match task.max_per_second {
            Some(r) => (r as usize).clamp(1, REDRIVE_STEP),
            None => REDRIVE_STEP,
        };
        while task.moved.load(Ordering::Relaxed) < task.total {
            let Ok(q) = self.queue(&dlq) else { break };
            let now = self.now();
            let inner = self.inner.clone();
            let (items, moves) = q.with(now, |g| {
                g.engine
                    .take_for_redrive(step, |src| inner.queues.contains_key(src))
            });
            self.forward_dead_letters(moves);
            if items.is_empty() {
                break;
            }
            let n = items.len() as u64;
            for item in items {
                let Some(src) = item.source.clone() else {
                    continue;
                };
                let dest = self.queue(&src).unwrap_or_else(|_| q.clone());
                let back_home = !Arc::ptr_eq(&dest, &q);
                let opts = EnqueueOptions {
                    visible_at: Some(now),
                    group_id: item.group_id.clone(),
                    dedup_id: None,
                    receive_count: 0,
                    // A message whose source vanished mid-step stays a dead letter.
                    dead_letter_source: (!back_home).then(|| src.clone()),
                    skip_dedup: true,
                };
                let dead_letter_source = opts.dead_letter_source.clone();
                // Logged with the message itself (read back if paged out).
                let message = match self.load(&item.message) {
                    // Its own record: see `forward_dead_letters`.
                    Ok(m) => m.relocated(),
                    Err(e) => {
                        tracing::error!(queue = %dlq, error = %e,
                            "cannot read a message to redrive; it stays");
                        let back = EnqueueOptions {
                            dead_letter_source: Some(src.clone()),
                            ..opts
                        };
                        let ((), more) = q.with(now, |g| {
                            let _ = g.engine.enqueue(item.message, back, now);
                        });
                        self.departed(q.uid(), item.seq, None);
                        self.forward_dead_letters(more);
                        continue;
                    }
                };
                let (r, more) = dest.with(now, |g| {
                    g.engine.enqueue(MsgRef::Mem(message.clone()), opts, now)
                });
                let arrived = match &r {
                    Ok(EnqueueOutcome::Enqueued { seq }) => Some((dest.uid(), *seq)),
                    _ => None,
                };
                match r {
                    Ok(EnqueueOutcome::Enqueued { seq }) => {
                        // Not awaited: a move lost in a crash leaves the
                        // message in the DLQ, to be redriven again.
                        self.log(|| {
                            vec![
                                Record::Publish {
                                    message,
                                    copies: vec![CopyRec {
                                        queue_uid: dest.uid(),
                                        seq,
                                        receive_count: 0,
                                        enqueued_at: now,
                                        visible_at: None,
                                        dead_letter_source,
                                    }],
                                },
                                Record::Delete {
                                    queue_uid: q.uid(),
                                    seqs: vec![item.seq],
                                },
                            ]
                        })
                        .detach();
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::error!(queue = %dlq, error = %e, "redrive enqueue refused");
                    }
                }
                self.departed(q.uid(), item.seq, arrived);
                self.forward_dead_letters(more);
            }
            task.moved.fetch_add(n, Ordering::Relaxed);
            match task.max_per_second {
                Some(r) => {
                    tokio::time::sleep(Duration::from_millis(n * 1000 / u64::from(r))).await;
                }
                None => tokio::task::yield_now().await,
            }
        }
        task.running.store(false, Ordering::Relaxed);
        tracing::info!(queue = %dlq, moved = task.moved.load(Ordering::Relaxed), "redrive finished");
    }
}
