//! Checkpoints: capturing the hub's state as records so storage can write a
//! snapshot and drop the log it covers. Recovery then replays only the tail.
//!
//! A message already in the log is captured as a reference (`Stored`:
//! queue, sequence, location, counts), so a checkpoint of a deep backlog
//! writes tens of bytes per message and the segments holding the bodies are
//! kept; only messages not yet written are captured whole.
//!
//! Consistency: the log is rotated first, then the state is captured. Every
//! change whose record went to an older segment was applied in memory before
//! the rotation, so the capture holds it. Changes racing with the capture land
//! in the new segment and replay idempotently (see `restore`): each queue's
//! captured `next_seq` marks which publishes the snapshot already covers.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::{Hub, HubError, QueueHandle};
use crate::model::MsgRef;
use crate::queue::SnapshotEntry;
use crate::storage::{CopyRec, Record, SnapshotSink, StorageError, StoredRec};

/// Receive counts per snapshot record (20 bytes each: well under the frame limit).
const RECEIVED_PER_RECORD: usize = 50_000;

/// How long a checkpoint waits for moves between queues it saw in flight.
const TRANSIT_WAIT: Duration = Duration::from_secs(2);

/// Messages captured per queue lock hold.
const CAPTURE_SLICE: usize = 16_384;

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
        let hub = self.clone();
        tokio::task::spawn_blocking(move || hub.write_checkpoint(base))
            .await
            .map_err(|e| HubError::Storage(e.to_string()))??;
        Ok(())
    }

    /// Streams the state into a snapshot with base `base` (blocking).
    fn write_checkpoint(&self, base: u64) -> Result<(), StorageError> {
        let storage = self.storage().clone();
        let mut sink = storage.begin_snapshot(base)?;
        let held = self.capture(&mut *sink)?;
        // Records appended before or during the capture (dead-letter moves
        // and redrives are not awaited) must be durable before the snapshot
        // makes the old segments go.
        futures::executor::block_on(storage.append(Vec::new()))?;
        sink.finish(&held.segments())?;
        let moved = self.relocate(&held.sparse(base));
        if moved > 0 {
            tracing::info!(messages = moved, "moved messages out of sparse segments");
        }
        Ok(())
    }

    /// Compaction: the few messages still held in a mostly-consumed old
    /// segment are written again at the head of the log (each under a record
    /// of its own) and their queues point at the new copy, so the next
    /// checkpoint deletes the segment. Disk use follows live data, not the
    /// oldest unacked message. A message that changed or went meanwhile is
    /// left alone. Answers how many moved.
    fn relocate(&self, sparse: &[(u64, Vec<(u64, u64)>)]) -> u64 {
        let mut moved = 0;
        for (segment, copies) in sparse {
            let mut records = Vec::new();
            let mut swaps = Vec::new();
            for &(uid, seq) in copies {
                let Some(q) = self.inner.by_uid.get(&uid).map(|q| q.clone()) else {
                    continue;
                };
                let Some(e) = q.lock().engine.entry_at(seq) else {
                    continue;
                };
                let Some(old) = e.message.loc().filter(|l| l.segment() == *segment) else {
                    continue;
                };
                let message = match self.load(&e.message) {
                    Ok(m) => m.relocated(),
                    Err(err) => {
                        tracing::warn!(segment, error = %err, "cannot move a message; segment kept");
                        continue;
                    }
                };
                records.push(Record::Publish {
                    message: message.clone(),
                    copies: vec![CopyRec {
                        queue_uid: uid,
                        seq,
                        receive_count: e.receive_count,
                        enqueued_at: e.enqueued_at,
                        visible_at: e.visible_at,
                        dead_letter_source: e.dead_letter_source,
                    }],
                });
                swaps.push((q, seq, old, message));
            }
            if records.is_empty() {
                continue;
            }
            // Not awaited: until the new record is written, the message keeps
            // its old location (the next snapshot captures whichever it has).
            self.storage().append(records).detach();
            for (q, seq, old, message) in swaps {
                let mut g = q.lock();
                if g.engine.swap_message(seq, old, MsgRef::Mem(message)) {
                    moved += 1;
                }
                q.resident
                    .store(g.engine.resident_bytes(), Ordering::Relaxed);
            }
        }
        moved
    }

    /// Writes the whole state as records: definitions first, then each
    /// queue's messages (a `Stored` reference for every message already in
    /// the log, the message itself otherwise), receive counts, dedup window
    /// and sequence watermark. Answers the segments the references need.
    ///
    /// Definitions are taken under the admin lock; each queue's messages in
    /// slices under its own lock (a deep queue is never held for long).
    /// Changes racing with the capture are in the new segment and replay
    /// idempotently.
    pub(crate) fn capture(&self, sink: &mut dyn SnapshotSink) -> Result<Held, StorageError> {
        let now = self.now();
        let mut head = Vec::new();
        let mut subs = Vec::new();
        let mut topic_dedup = Vec::new();
        let queues: Vec<Arc<QueueHandle>> = {
            let _admin = self.admin_lock();
            for t in self.inner.topics.iter() {
                head.push(Record::TopicPut {
                    name: t.key().clone(),
                    settings: t.settings(),
                });
                let dedup = t.dedup.lock().unwrap_or_else(|p| p.into_inner());
                for (key, id, expires_at) in dedup.entries() {
                    if expires_at > now {
                        topic_dedup.push(Record::Dedup {
                            queue_uid: 0,
                            topic: Some(t.key().clone()),
                            key: key.to_string(),
                            id,
                            expires_at,
                        });
                    }
                }
                for s in t.subscriptions().iter() {
                    subs.push(Record::Subscribe {
                        topic: t.key().clone(),
                        queue: s.queue.clone(),
                        filter_json: s.filter_json.as_ref().map(|v| v.to_string()),
                    });
                }
            }
            self.inner
                .queues
                .iter()
                .map(|q| {
                    head.push(Record::QueuePut {
                        name: q.key().clone(),
                        uid: q.uid(),
                        settings: q.lock().engine.settings().clone(),
                        temporary: q.temporary.load(Ordering::Relaxed),
                    });
                    q.clone()
                })
                .collect()
        };
        for r in head.iter().chain(&subs).chain(&topic_dedup) {
            sink.write(r)?;
        }
        let mut held = Held::default();
        // Moves between queues confirmed from here on are noted, so a
        // message in transit is captured exactly once (see below).
        *self.inner.moved.lock().unwrap_or_else(|p| p.into_inner()) = Some(HashMap::new());
        let mut watermarks = Vec::new();
        let mut departing = Vec::new();
        for q in queues {
            let uid = q.uid();
            let mut from = 0;
            let mut received = Vec::new();
            loop {
                let (slice, end) = {
                    let g = q.lock();
                    let slice = g.engine.snapshot_entries(from, CAPTURE_SLICE);
                    let end = (slice.len() < CAPTURE_SLICE).then(|| {
                        (
                            g.engine.dedup_entries(),
                            g.engine.next_seq(),
                            g.engine.departing().to_vec(),
                        )
                    });
                    (slice, end)
                };
                if let Some(last) = slice.last() {
                    from = last.seq + 1;
                }
                for e in slice {
                    if let Some(rec) = entry_record(uid, e, &mut held, &mut received) {
                        sink.write(&rec)?;
                    }
                }
                let Some((dedup, next_seq, leaving)) = end else {
                    continue;
                };
                write_received(sink, uid, &received)?;
                for (key, id, expires_at) in dedup {
                    sink.write(&Record::Dedup {
                        queue_uid: uid,
                        topic: None,
                        key: key.to_string(),
                        id,
                        expires_at,
                    })?;
                }
                departing.extend(leaving.into_iter().map(|e| (uid, e)));
                watermarks.push((uid, next_seq));
                break;
            }
        }
        // A message on its way to another queue (a dead-letter move or a
        // redrive whose records may still be lost in a crash) counts in its
        // source, unless it reached its destination before that queue was
        // captured (then the snapshot has it there).
        // A move confirms within microseconds; wait for those seen in flight
        // (bounded), so each is decided by where it arrived.
        let deadline = std::time::Instant::now() + TRANSIT_WAIT;
        loop {
            let unsettled =
                departing.iter().any(|(uid, e)| {
                    let confirmed = self
                        .inner
                        .moved
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .as_ref()
                        .is_some_and(|m| m.contains_key(&(*uid, e.seq)));
                    !confirmed
                        && self.inner.by_uid.get(uid).is_some_and(|q| {
                            q.lock().engine.departing().iter().any(|d| d.seq == e.seq)
                        })
                });
            if !unsettled || std::time::Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let moved = self
            .inner
            .moved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_default();
        let captured: HashMap<u64, u64> = watermarks.iter().copied().collect();
        let mut received: HashMap<u64, Vec<(u64, u32, u64)>> = HashMap::new();
        for (uid, e) in departing {
            let arrived = moved
                .get(&(uid, e.seq))
                .is_some_and(|(d_uid, d_seq)| captured.get(d_uid).is_some_and(|w| d_seq < w));
            if arrived {
                continue;
            }
            let r = received.entry(uid).or_default();
            if let Some(rec) = entry_record(uid, e, &mut held, r) {
                sink.write(&rec)?;
            }
        }
        for (uid, r) in received {
            write_received(sink, uid, &r)?;
        }
        // Watermarks last: every snapshot message of a queue is below it by
        // construction, and replay skips log publishes below it.
        for (queue_uid, next_seq) in watermarks {
            sink.write(&Record::QueueSeq {
                queue_uid,
                next_seq,
            })?;
        }
        Ok(held)
    }
}

/// Most copies a segment may still hold for its messages to be moved out
/// (see `relocate`); more, and the segment is simply kept.
const RELOCATE_MAX: usize = 1000;

/// The segments a snapshot's `Stored` records point into, with the copies
/// held in those with few enough to move out.
#[derive(Default)]
pub(crate) struct Held {
    segments: BTreeMap<u64, Option<Vec<(u64, u64)>>>,
}

impl Held {
    fn add(&mut self, segment: u64, uid: u64, seq: u64) {
        let e = self
            .segments
            .entry(segment)
            .or_insert_with(|| Some(Vec::new()));
        if let Some(v) = e {
            if v.len() < RELOCATE_MAX {
                v.push((uid, seq));
            } else {
                *e = None;
            }
        }
    }

    /// Every segment referred to.
    fn segments(&self) -> BTreeSet<u64> {
        self.segments.keys().copied().collect()
    }

    /// Segments below `base` holding at most `RELOCATE_MAX` copies.
    fn sparse(&self, base: u64) -> Vec<(u64, Vec<(u64, u64)>)> {
        self.segments
            .range(..base)
            .filter_map(|(s, v)| v.clone().map(|v| (*s, v)))
            .collect()
    }
}

/// One captured message as a snapshot record: a reference when it is in the
/// log already (its segment is noted in `held`), the message itself when not
/// (its receive count noted in `received`).
fn entry_record(
    uid: u64,
    e: SnapshotEntry,
    held: &mut Held,
    received: &mut Vec<(u64, u32, u64)>,
) -> Option<Record> {
    match (e.message.loc(), e.message) {
        (Some(loc), _) => {
            held.add(loc.segment(), uid, e.seq);
            Some(Record::Stored(StoredRec {
                queue_uid: uid,
                seq: e.seq,
                loc,
                receive_count: e.receive_count,
                first_received_at: e.first_received_at,
                enqueued_at: e.enqueued_at,
                visible_at: e.visible_at,
                group_id: e.group_id,
                dead_letter_source: e.dead_letter_source,
            }))
        }
        (None, MsgRef::Mem(message)) => {
            if let Some(first) = e.first_received_at {
                received.push((e.seq, e.receive_count, first));
            }
            Some(Record::Publish {
                message,
                copies: vec![CopyRec {
                    queue_uid: uid,
                    seq: e.seq,
                    receive_count: e.receive_count,
                    enqueued_at: e.enqueued_at,
                    visible_at: e.visible_at,
                    dead_letter_source: e.dead_letter_source,
                }],
            })
        }
        // A disk reference always has a location.
        (None, MsgRef::Disk(_)) => None,
    }
}

/// Receive counts of messages captured whole, chunked (one record per queue
/// could pass the log's frame limit).
fn write_received(
    sink: &mut dyn SnapshotSink,
    uid: u64,
    received: &[(u64, u32, u64)],
) -> Result<(), StorageError> {
    for chunk in received.chunks(RECEIVED_PER_RECORD) {
        sink.write(&Record::Received {
            queue_uid: uid,
            entries: chunk.to_vec(),
        })?;
    }
    Ok(())
}
