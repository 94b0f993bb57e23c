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
//! - receive counts take the maximum seen;
//! - a message read from a log segment is kept as its location, so a
//!   restart with a deep backlog reads an index, not the bodies.
//!
//! Leases are not recovered: a message in flight at the crash is visible
//! again at once, with its durable receive count.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::{Hub, HubError};
use crate::model::{BodyLoc, MessageId, Millis, MsgRef, QueueName, TopicName, TopicSettings};
use crate::queue::{QueueState, RestoreOptions};
use crate::storage::{Record, ReplayReport};

/// What recovery found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreReport {
    pub storage: ReplayReport,
    pub topics: usize,
    pub queues: usize,
    pub messages: usize,
}

/// Sequence numbers deleted anywhere in the stream, as ranges (acks come
/// mostly in order, so a drained backlog is a handful of ranges).
#[derive(Default)]
struct SeqRanges(BTreeMap<u64, u64>);

impl SeqRanges {
    fn contains(&self, s: u64) -> bool {
        self.0
            .range(..=s)
            .next_back()
            .is_some_and(|(_, end)| s < *end)
    }

    fn insert(&mut self, s: u64) {
        if self.contains(s) {
            return;
        }
        let mut start = s;
        let mut end = s + 1;
        if let Some((&a, &b)) = self.0.range(..s).next_back() {
            if b == s {
                start = a;
                self.0.remove(&a);
            }
        }
        if let Some(&b) = self.0.get(&end) {
            self.0.remove(&end);
            end = b;
        }
        self.0.insert(start, end);
    }
}

struct QueueRebuild {
    engine: QueueState,
    temporary: bool,
    tombstones: SeqRanges,
    purged_below: u64,
    watermark: u64,
    max_seq: u64,
    /// Receive counts of messages not (yet) seen.
    received: HashMap<u64, (u32, Millis)>,
    dedup: Vec<(String, MessageId, Millis)>,
}

impl QueueRebuild {
    /// Whether a copy of `seq` from the stream should be put back.
    fn wants(&mut self, seq: u64) -> bool {
        self.max_seq = self.max_seq.max(seq);
        !(seq < self.watermark || seq < self.purged_below || self.tombstones.contains(seq))
    }

    fn put(&mut self, seq: u64, msg: MsgRef, mut opts: RestoreOptions, now: Millis) {
        if let Some((count, first)) = self.received.remove(&seq) {
            if count >= opts.receive_count {
                opts.receive_count = count;
                opts.first_received_at =
                    Some(opts.first_received_at.map_or(first, |f| f.min(first)));
            }
        }
        if !self.engine.is_fifo() {
            opts.group_id = None;
        }
        self.engine.restore(seq, msg, opts, now);
    }
}

/// The state being rebuilt: messages go straight into their queue engines
/// as records stream by (a deep backlog is never held twice).
struct Rebuild {
    now: Millis,
    topics: BTreeMap<TopicName, TopicSettings>,
    topic_dedup: HashMap<TopicName, Vec<(String, MessageId, Millis)>>,
    queues: HashMap<u64, QueueRebuild>,
    names: HashMap<QueueName, u64>,
    subs: BTreeMap<(TopicName, QueueName), Option<String>>,
    messages: usize,
}

impl Rebuild {
    fn new(now: Millis) -> Self {
        Self {
            now,
            topics: BTreeMap::new(),
            topic_dedup: HashMap::new(),
            queues: HashMap::new(),
            names: HashMap::new(),
            subs: BTreeMap::new(),
            messages: 0,
        }
    }

    fn queue(&mut self, uid: u64) -> Option<&mut QueueRebuild> {
        self.queues.get_mut(&uid)
    }

    fn apply(&mut self, r: Record, loc: Option<BodyLoc>) {
        let now = self.now;
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
                match self.queues.get_mut(&uid) {
                    Some(q) => {
                        q.engine.update_settings(settings);
                        q.temporary = temporary;
                    }
                    None => {
                        self.queues.insert(
                            uid,
                            QueueRebuild {
                                engine: QueueState::new(name, uid, settings),
                                temporary,
                                tombstones: SeqRanges::default(),
                                purged_below: 0,
                                watermark: 0,
                                max_seq: 0,
                                received: HashMap::new(),
                                dedup: Vec::new(),
                            },
                        );
                    }
                }
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
                // Read from a segment: keep the location, not the message.
                let msg = match loc {
                    Some(l) => MsgRef::Disk(l),
                    None => MsgRef::Mem(message.clone()),
                };
                for c in copies {
                    let Some(q) = self.queues.get_mut(&c.queue_uid) else {
                        continue;
                    };
                    // Only the original enqueue arms the window (a redrive or a
                    // dead-letter move skips dedup and is enqueued later).
                    let original = c.enqueued_at == message.sent_at;
                    let settings = q.engine.settings();
                    if settings.fifo && c.dead_letter_source.is_none() && original {
                        if let Some(key) = &message.dedup_id {
                            let exp =
                                c.enqueued_at + u64::from(settings.dedup_window_seconds) * 1000;
                            q.dedup.push((key.to_string(), message.id, exp));
                        }
                    }
                    if !q.wants(c.seq) {
                        continue;
                    }
                    let opts = RestoreOptions {
                        receive_count: c.receive_count,
                        first_received_at: None,
                        enqueued_at: c.enqueued_at,
                        visible_at: c.visible_at,
                        group_id: message.group_id.clone(),
                        dead_letter_source: c.dead_letter_source,
                    };
                    q.put(c.seq, msg.clone(), opts, now);
                    self.messages += 1;
                }
            }
            Record::Stored(r) => {
                let Some(q) = self.queues.get_mut(&r.queue_uid) else {
                    return;
                };
                if !q.wants(r.seq) {
                    return;
                }
                let opts = RestoreOptions {
                    receive_count: r.receive_count,
                    first_received_at: r.first_received_at,
                    enqueued_at: r.enqueued_at,
                    visible_at: r.visible_at,
                    group_id: r.group_id,
                    dead_letter_source: r.dead_letter_source,
                };
                q.put(r.seq, MsgRef::Disk(r.loc), opts, now);
                self.messages += 1;
            }
            Record::Delete { queue_uid, seqs } => {
                if let Some(q) = self.queue(queue_uid) {
                    for s in seqs {
                        q.max_seq = q.max_seq.max(s);
                        q.engine.restore_remove(s);
                        q.tombstones.insert(s);
                        q.received.remove(&s);
                    }
                }
            }
            Record::Received { queue_uid, entries } => {
                if let Some(q) = self.queue(queue_uid) {
                    for (seq, count, first) in entries {
                        q.max_seq = q.max_seq.max(seq);
                        if q.tombstones.contains(seq)
                            || q.engine.restore_received(seq, count, first)
                        {
                            continue;
                        }
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
                    q.engine.restore_purge_below(below_seq);
                    q.received.retain(|s, _| *s >= below_seq);
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
        let now = self.now();
        let (rebuild, report) = tokio::task::spawn_blocking(move || {
            let mut rb = Rebuild::new(now);
            let rep = storage.replay(&mut |r, loc| rb.apply(r, loc));
            rep.map(|rep| (rb, rep))
        })
        .await
        .map_err(|e| HubError::Storage(e.to_string()))??;
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
        for (_, q) in rebuild.queues {
            let mut engine = q.engine;
            engine.finish_restore(q.watermark.max(q.max_seq + 1).max(q.purged_below));
            for (key, id, exp) in q.dedup {
                engine.restore_dedup(Arc::from(key.as_str()), id, exp, now);
            }
            out.messages += engine.len();
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
