//! Checkpoints: capturing the hub's state as records so storage can write a
//! snapshot and drop the log it covers. Recovery then replays only the tail.
//!
//! Consistency: the log is rotated first, then the state is captured. Every
//! change whose record went to an older segment was applied in memory before
//! the rotation, so the capture holds it. Changes racing with the capture land
//! in the new segment and replay idempotently (see `restore`): each queue's
//! captured `next_seq` marks which publishes the snapshot already covers.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::{Hub, HubError};
use crate::model::MessageData;
use crate::storage::{CopyRec, Record};

/// Receive counts per snapshot record (20 bytes each: well under the frame limit).
const RECEIVED_PER_RECORD: usize = 50_000;

/// How often the hub asks storage whether a checkpoint is due.
pub const CHECKPOINT_POLL: Duration = Duration::from_secs(2);

impl Hub {
    /// Takes a checkpoint if storage says one is due.
    pub async fn checkpoint_if_due(&self) -> Result<bool, HubError> {
        if !self.inner.durable || !self.storage().checkpoint_due() {
            return Ok(false);
        }
        self.checkpoint().await?;
        Ok(true)
    }

    /// Rotates the log, captures the state and writes it as a snapshot.
    pub async fn checkpoint(&self) -> Result<(), HubError> {
        let base = self.storage().rotate().await?;
        let records = self.capture();
        // Records appended before or during the capture (dead-letter moves and
        // redrives are not awaited) must be durable before the snapshot makes
        // the old segments go.
        self.storage().append(Vec::new()).await?;
        let storage = self.storage().clone();
        tokio::task::spawn_blocking(move || storage.write_snapshot(base, records))
            .await
            .map_err(|e| HubError::Storage(e.to_string()))??;
        Ok(())
    }

    /// The whole state as records: definitions first, then messages (each
    /// body once, with all its copies), then each queue's sequence watermark.
    pub(crate) fn capture(&self) -> Vec<Record> {
        let _admin = self.admin_lock();
        let now = self.now();
        let mut out = Vec::new();
        let mut tail = Vec::new();
        for t in self.inner.topics.iter() {
            out.push(Record::TopicPut {
                name: t.key().clone(),
                settings: t.settings(),
            });
            let dedup = t.dedup.lock().unwrap_or_else(|p| p.into_inner());
            for (key, id, expires_at) in dedup.entries() {
                if expires_at > now {
                    tail.push(Record::Dedup {
                        queue_uid: 0,
                        topic: Some(t.key().clone()),
                        key: key.to_string(),
                        id,
                        expires_at,
                    });
                }
            }
        }
        // Messages shared by several queues are gathered by pointer.
        let mut bodies: HashMap<*const MessageData, (Arc<MessageData>, Vec<CopyRec>)> =
            HashMap::new();
        for q in self.inner.queues.iter() {
            let g = q.lock();
            let uid = q.uid();
            out.push(Record::QueuePut {
                name: q.key().clone(),
                uid,
                settings: g.engine.settings().clone(),
                temporary: q.temporary.load(Ordering::Relaxed),
            });
            let mut received = Vec::new();
            for e in g.engine.snapshot_entries() {
                if let Some(first) = e.first_received_at {
                    received.push((e.seq, e.receive_count, first));
                }
                let copy = CopyRec {
                    queue_uid: uid,
                    seq: e.seq,
                    receive_count: e.receive_count,
                    enqueued_at: e.enqueued_at,
                    visible_at: e.visible_at,
                    dead_letter_source: e.dead_letter_source,
                };
                bodies
                    .entry(Arc::as_ptr(&e.message))
                    .or_insert_with(|| (e.message.clone(), Vec::new()))
                    .1
                    .push(copy);
            }
            // Chunked: one record per queue could pass the log's frame limit.
            for chunk in received.chunks(RECEIVED_PER_RECORD) {
                tail.push(Record::Received {
                    queue_uid: uid,
                    entries: chunk.to_vec(),
                });
            }
            for (key, id, expires_at) in g.engine.dedup_entries() {
                tail.push(Record::Dedup {
                    queue_uid: uid,
                    topic: None,
                    key: key.to_string(),
                    id,
                    expires_at,
                });
            }
            tail.push(Record::QueueSeq {
                queue_uid: uid,
                next_seq: g.engine.next_seq(),
            });
        }
        for t in self.inner.topics.iter() {
            for s in t.subscriptions().iter() {
                out.push(Record::Subscribe {
                    topic: t.key().clone(),
                    queue: s.queue.clone(),
                    filter_json: s.filter_json.as_ref().map(|v| v.to_string()),
                });
            }
        }
        let mut messages: Vec<_> = bodies.into_values().collect();
        messages.sort_by_key(|(m, _)| m.id);
        out.extend(
            messages
                .into_iter()
                .map(|(message, copies)| Record::Publish { message, copies }),
        );
        // Watermarks last: snapshot publishes are below them by construction.
        out.extend(tail);
        out
    }
}
