//! Recovery: rebuilding the hub from storage's record stream (snapshot, then
//! log tail).
//!
//! Definitions (topics, queues, subscriptions) replay in order: they were
//! appended under the admin lock. Message records replay order-independently,
//! because records of one queue can reach the log in a different order than
//! their changes happened (an ack's record may overtake its publish's):
//! - a publish of (queue, seq) is applied unless that seq was deleted or
//!   purged anywhere in the stream, or is below the snapshot's watermark for
//!   the queue (the snapshot already holds it, or its deletion);
//! - deletes are remembered as tombstones for the whole replay;
//! - receive counts take the maximum seen.
//!
//! Leases are not recovered: a message in flight at the crash is visible
//! again at once, with its durable receive count.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use super::{Hub, HubError};
use crate::model::{
    MessageData, MessageId, Millis, QueueName, QueueSettings, TopicName, TopicSettings,
};
use crate::queue::{QueueState, RestoreOptions};
use crate::storage::{CopyRec, Record, ReplayReport};

/// What recovery found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreReport {
    pub storage: ReplayReport,
    pub topics: usize,
    pub queues: usize,
    pub messages: usize,
}

#[derive(Default)]
struct QueueRebuild {
    name: Option<QueueName>,
    settings: QueueSettings,
    temporary: bool,
    messages: BTreeMap<u64, (Arc<MessageData>, CopyRec)>,
    tombstones: HashSet<u64>,
    purged_below: u64,
    watermark: u64,
    max_seq: u64,
    received: HashMap<u64, (u32, Millis)>,
    dedup: Vec<(String, MessageId, Millis)>,
}

#[derive(Default)]
struct Rebuild {
    topics: BTreeMap<TopicName, TopicSettings>,
    topic_dedup: HashMap<TopicName, Vec<(String, MessageId, Millis)>>,
    queues: HashMap<u64, QueueRebuild>,
    names: HashMap<QueueName, u64>,
    subs: BTreeMap<(TopicName, QueueName), Option<String>>,
}

impl Rebuild {
    fn queue(&mut self, uid: u64) -> Option<&mut QueueRebuild> {
        self.queues.get_mut(&uid).filter(|q| q.name.is_some())
    }

    fn apply(&mut self, r: Record) {
        match r {
            Record::TopicPut { name, settings } => {
                self.topics.insert(name, settings);
            }
            Record::TopicDelete { name } => {
                self.topics.remove(&name);
                self.topic_dedup.remove(&name);
                self.subs.retain(|(t, _), _| t != &name);
            }
            Record::QueuePut {
                name,
                uid,
                settings,
                temporary,
            } => {
                if let Some(old) = self.names.insert(name.clone(), uid) {
                    if old != uid {
                        self.queues.remove(&old);
                    }
                }
                let q = self.queues.entry(uid).or_default();
                q.name = Some(name);
                q.settings = settings;
                q.temporary = temporary;
            }
            Record::QueueDelete { name, uid } => {
                self.queues.remove(&uid);
                if self.names.get(&name) == Some(&uid) {
                    self.names.remove(&name);
                }
                self.subs.retain(|(_, q), _| q != &name);
            }
            Record::Subscribe {
                topic,
                queue,
                filter_json,
            } => {
                self.subs.insert((topic, queue), filter_json);
            }
            Record::Unsubscribe { topic, queue } => {
                self.subs.remove(&(topic, queue));
            }
            Record::Publish { message, copies } => {
                if let (Some(topic), Some(key)) = (&message.topic, &message.dedup_id) {
                    if let Some(ts) = self.topics.get(topic).filter(|t| t.fifo) {
                        let exp = message.sent_at + u64::from(ts.dedup_window_seconds) * 1000;
                        self.topic_dedup.entry(topic.clone()).or_default().push((
                            key.to_string(),
                            message.id,
                            exp,
                        ));
                    }
                }
                for c in copies {
                    let Some(q) = self.queue(c.queue_uid) else {
                        continue;
                    };
                    q.max_seq = q.max_seq.max(c.seq);
                    // Only the original enqueue arms the window (a redrive or a
                    // dead-letter move skips dedup and is enqueued later).
                    let original = c.enqueued_at == message.sent_at;
                    if q.settings.fifo && c.dead_letter_source.is_none() && original {
                        if let Some(key) = &message.dedup_id {
                            let exp =
                                c.enqueued_at + u64::from(q.settings.dedup_window_seconds) * 1000;
                            q.dedup.push((key.to_string(), message.id, exp));
                        }
                    }
                    if c.seq < q.watermark
                        || c.seq < q.purged_below
                        || q.tombstones.contains(&c.seq)
                    {
                        continue;
                    }
                    q.messages.insert(c.seq, (message.clone(), c));
                }
            }
            Record::Delete { queue_uid, seqs } => {
                if let Some(q) = self.queue(queue_uid) {
                    for s in seqs {
                        q.max_seq = q.max_seq.max(s);
                        q.messages.remove(&s);
                        q.tombstones.insert(s);
                    }
                }
            }
            Record::Received { queue_uid, entries } => {
                if let Some(q) = self.queue(queue_uid) {
                    for (seq, count, first) in entries {
                        q.max_seq = q.max_seq.max(seq);
                        let e = q.received.entry(seq).or_insert((count, first));
                        if count > e.0 {
                            *e = (count, e.1.min(first));
                        }
                    }
                }
            }
            Record::Purge {
                queue_uid,
                below_seq,
            } => {
                if let Some(q) = self.queue(queue_uid) {
                    q.purged_below = q.purged_below.max(below_seq);
                    q.max_seq = q.max_seq.max(below_seq.saturating_sub(1));
                    q.messages = q.messages.split_off(&below_seq);
                }
            }
            Record::QueueSeq {
                queue_uid,
                next_seq,
            } => {
                if let Some(q) = self.queue(queue_uid) {
                    q.watermark = q.watermark.max(next_seq);
                    q.max_seq = q.max_seq.max(next_seq.saturating_sub(1));
                }
            }
            Record::Dedup {
                queue_uid,
                topic,
                key,
                id,
                expires_at,
            } => match topic {
                Some(t) => self
                    .topic_dedup
                    .entry(t)
                    .or_default()
                    .push((key, id, expires_at)),
                None => {
                    if let Some(q) = self.queue(queue_uid) {
                        q.dedup.push((key, id, expires_at));
                    }
                }
            },
            Record::SnapshotEnd { .. } => {}
        }
    }
}

impl Hub {
    /// Loads everything storage holds into this (empty) hub. Blocking reads
    /// run on the blocking pool.
    pub async fn restore(&self) -> Result<RestoreReport, HubError> {
        let storage = self.storage().clone();
        let (rebuild, report) = tokio::task::spawn_blocking(move || {
            let mut rb = Rebuild::default();
            let rep = storage.replay(&mut |r| rb.apply(r));
            rep.map(|rep| (rb, rep))
        })
        .await
        .map_err(|e| HubError::Storage(e.to_string()))??;
        let now = self.now();
        let mut out = RestoreReport {
            storage: report,
            ..RestoreReport::default()
        };
        let _admin = self.admin_lock();
        for (name, settings) in rebuild.topics {
            let t = super::TopicHandle::new(name.clone(), settings);
            if let Some(entries) = rebuild.topic_dedup.get(&name) {
                let mut d = t.dedup.lock().unwrap_or_else(|p| p.into_inner());
                for (key, id, exp) in entries {
                    if *exp > now {
                        d.insert(Arc::from(key.as_str()), *id, now, exp - now);
                    }
                }
            }
            self.inner.topics.insert(name, t);
            out.topics += 1;
        }
        for (uid, q) in rebuild.queues {
            let Some(name) = q.name else { continue };
            let fifo = q.settings.fifo;
            let mut engine = QueueState::new(name, uid, q.settings);
            for (seq, (message, copy)) in q.messages {
                let (count, first) = q
                    .received
                    .get(&seq)
                    .map_or((copy.receive_count, None), |(c, f)| {
                        (copy.receive_count.max(*c), Some(*f))
                    });
                let group_id = if fifo { message.group_id.clone() } else { None };
                engine.restore(
                    seq,
                    message,
                    RestoreOptions {
                        receive_count: count,
                        first_received_at: first.filter(|_| count > 0),
                        enqueued_at: copy.enqueued_at,
                        visible_at: copy.visible_at,
                        group_id,
                        dead_letter_source: copy.dead_letter_source,
                    },
                    now,
                );
                out.messages += 1;
            }
            engine.finish_restore(q.watermark.max(q.max_seq + 1).max(q.purged_below));
            for (key, id, exp) in q.dedup {
                engine.restore_dedup(Arc::from(key.as_str()), id, exp, now);
            }
            self.install_queue(engine, q.temporary);
            out.queues += 1;
        }
        // A message that used up its receives must not be delivered again:
        // finish dead-letter moves a crash cut short (their records are not
        // awaited). All queues exist now, so every target does too.
        let queues: Vec<_> = self.inner.queues.iter().map(|q| q.clone()).collect();
        for q in queues {
            let ((), moves) = {
                let moves = q.lock().engine.take_exhausted();
                ((), moves)
            };
            if !moves.is_empty() {
                tracing::info!(queue = %q.name(), moved = moves.len(),
                    "finishing dead-letter moves interrupted by a crash");
                self.forward_dead_letters(moves);
            }
        }
        for ((topic, queue), filter_json) in rebuild.subs {
            let Some(t) = self.inner.topics.get(&topic).map(|t| t.clone()) else {
                continue;
            };
            if !self.inner.queues.contains_key(&queue) {
                continue;
            }
            let filter_value = filter_json.and_then(|s| serde_json::from_str(&s).ok());
            let compiled = match &filter_value {
                Some(v) => match super::filter::FilterPolicy::parse(v) {
                    Ok(f) => Some(Arc::new(f)),
                    Err(e) => {
                        tracing::error!(topic = %topic, queue = %queue, error = %e,
                            "stored filter no longer parses; subscription kept without it");
                        None
                    }
                },
                None => None,
            };
            let mut subs = t.subscriptions().as_ref().clone();
            subs.push(super::Subscription {
                queue,
                filter: compiled,
                filter_json: filter_value.map(Arc::new),
            });
            t.set_subscriptions(subs);
        }
        Ok(out)
    }
}
