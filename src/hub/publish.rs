//! Publish (to a topic, fanned out) and send (straight to a queue): message
//! validation, deduplication ids, filter matching and the all-or-nothing
//! fan-out. A batch is validated entry by entry, then each target queue is
//! locked once for all of its entries.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::oneshot;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::queue_handle::{Handed, QueueInner};
use super::{Hub, HubError, QueueHandle, MAX_BATCH};
use crate::model::{
    Attributes, BodyEncoding, MessageData, MessageId, Millis, QueueName, TopicName,
    MAX_DELAY_SECONDS,
};
use crate::queue::{EnqueueOptions, EnqueueOutcome};
use crate::storage::{Commit, CopyRec, Record};

/// Largest message (decoded body plus attributes) anywhere: the top of the
/// `max_message_bytes` range.
pub const MAX_MESSAGE_BYTES: usize = 1_048_576;

/// Longest `group_id` or `dedup_id`, in characters.
pub const MAX_ID_LEN: usize = 128;
/// Most attributes on one message.
pub const MAX_ATTRIBUTES: usize = 50;

/// A message as a client submitted it (the API has checked JSON types and
/// decoded base64 to count its bytes).
#[derive(Debug, Clone, Default)]
pub struct NewMessage {
    pub body: String,
    pub body_encoding: BodyEncoding,
    /// Decoded body length in bytes.
    pub body_len: usize,
    pub attributes: Attributes,
    pub group_id: Option<String>,
    pub dedup_id: Option<String>,
    pub delay_seconds: Option<u32>,
    pub deliver_at: Option<Millis>,
    pub poison: bool,
}

/// One entry's result: the message id (the first one's, for a duplicate).
pub type EntryResult = Result<MessageId, HubError>;

/// A validated entry bound for one queue.
struct Copy {
    index: usize,
    message: Arc<MessageData>,
    opts: EnqueueOptions,
}

impl Hub {
    /// Publishes to a topic: one copy into every subscribed queue whose filter
    /// matches. Per-entry results; the whole call fails only for a missing
    /// topic or a bad batch size.
    pub async fn publish(
        &self,
        topic_name: &TopicName,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<EntryResult>, HubError> {
        let (results, commit) = self.publish_now(topic_name, messages)?;
        commit.await?;
        Ok(results)
    }

    /// Publishes and returns the commit to wait on before answering.
    pub(crate) fn publish_now(
        &self,
        topic_name: &TopicName,
        messages: Vec<NewMessage>,
    ) -> Result<(Vec<EntryResult>, Commit), HubError> {
        check_batch(messages.len())?;
        let topic = self.topic(topic_name)?;
        let settings = topic.settings();
        let subs = topic.subscriptions();
        let queues: Vec<Option<Arc<QueueHandle>>> = subs
            .iter()
            .map(|s| self.inner.queues.get(&s.queue).map(|q| q.clone()))
            .collect();
        let now = self.now();
        let mut results = Vec::with_capacity(messages.len());
        let mut copies: Vec<Vec<Copy>> = (0..subs.len()).map(|_| Vec::new()).collect();
        // Messages a FIFO topic must remember even with no copy (its dedup
        // window is durable too).
        let mut uncopied: Vec<Arc<MessageData>> = Vec::new();
        let mut dedup = settings
            .fifo
            .then(|| topic.dedup.lock().unwrap_or_else(|p| p.into_inner()));
        if let Some(d) = dedup.as_mut() {
            d.expire(now);
        }
        for (index, m) in messages.into_iter().enumerate() {
            let r = (|| {
                check_common(&m)?;
                let dedup_key = check_kind(&m, settings.fifo, settings.content_based_dedup)?;
                if let (Some(d), Some(k)) = (dedup.as_ref(), &dedup_key) {
                    if let Some(first) = d.lookup(k, now) {
                        topic.counters.deduplicated.fetch_add(1, Ordering::Relaxed);
                        return Ok(first);
                    }
                }
                let mut message = build(m, Some(topic_name.clone()), dedup_key.clone(), now);
                let body_json = subs
                    .iter()
                    .any(|s| s.filter.as_ref().is_some_and(|f| f.needs_body()))
                    .then(|| parse_json_body(&message))
                    .flatten();
                let matched: Vec<usize> = subs
                    .iter()
                    .enumerate()
                    .filter(|(i, s)| {
                        queues[*i].is_some()
                            && s.filter
                                .as_ref()
                                .is_none_or(|f| f.matches(&message.attributes, body_json.as_ref()))
                    })
                    .map(|(i, _)| i)
                    .collect();
                for &i in &matched {
                    if let Some(q) = &queues[i] {
                        check_fits(&message, q, now)?;
                    }
                }
                message.copies = u32::try_from(matched.len()).unwrap_or(u32::MAX).max(1);
                let message = Arc::new(message);
                if let (Some(d), Some(k)) = (dedup.as_mut(), dedup_key.clone()) {
                    d.insert(
                        k,
                        message.id,
                        now,
                        u64::from(settings.dedup_window_seconds) * 1000,
                    );
                }
                topic.counters.published.fetch_add(1, Ordering::Relaxed);
                if matched.is_empty() {
                    topic.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    if dedup_key.is_some() {
                        uncopied.push(message.clone());
                    }
                }
                let id = message.id;
                for i in matched {
                    let fifo_queue = queues[i].as_ref().is_some_and(|q| q.is_fifo());
                    let opts = if fifo_queue {
                        EnqueueOptions {
                            group_id: message.group_id.clone(),
                            dedup_id: dedup_key.clone(),
                            ..EnqueueOptions::default()
                        }
                    } else {
                        EnqueueOptions {
                            visible_at: message.visible_at,
                            ..EnqueueOptions::default()
                        }
                    };
                    copies[i].push(Copy {
                        index,
                        message: message.clone(),
                        opts,
                    });
                }
                Ok(id)
            })();
            results.push(r);
        }
        let mut stored = Stored::default();
        for (i, batch) in copies.into_iter().enumerate() {
            if batch.is_empty() {
                continue;
            }
            if let Some(q) = &queues[i] {
                let _ = self.enqueue_all(q, batch, now, &mut results, &mut stored, false);
            }
        }
        topic
            .counters
            .delivered
            .fetch_add(stored.copies, Ordering::Relaxed);
        for m in uncopied {
            stored.records.push(Record::Publish {
                message: m,
                copies: Vec::new(),
            });
        }
        let commit = self.log_stored(stored);
        // Held until the records are on their way: a duplicate publish waits
        // for the log behind them, so it is never answered before the first
        // copy is durable.
        drop(dedup);
        Ok((results, commit))
    }

    /// Sends straight to a queue. Per-entry results.
    pub async fn send(
        &self,
        queue_name: &QueueName,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<EntryResult>, HubError> {
        let (results, commit) = self.send_now(queue_name, messages)?;
        commit.await?;
        Ok(results)
    }

    /// Sends and returns the commit to wait on before answering.
    pub(crate) fn send_now(
        &self,
        queue_name: &QueueName,
        messages: Vec<NewMessage>,
    ) -> Result<(Vec<EntryResult>, Commit), HubError> {
        check_batch(messages.len())?;
        let q = self.queue(queue_name)?;
        let content_dedup = q.lock().engine.settings().content_based_dedup;
        let now = self.now();
        let mut results = Vec::with_capacity(messages.len());
        let mut batch = Vec::with_capacity(messages.len());
        for (index, m) in messages.into_iter().enumerate() {
            let r = (|| {
                check_common(&m)?;
                let dedup_key = check_kind(&m, q.is_fifo(), content_dedup)?;
                let message = Arc::new(build(m, None, dedup_key.clone(), now));
                check_fits(&message, &q, now)?;
                let opts = EnqueueOptions {
                    visible_at: message.visible_at,
                    group_id: message.group_id.clone(),
                    dedup_id: dedup_key,
                    ..EnqueueOptions::default()
                };
                let id = message.id;
                batch.push(Copy {
                    index,
                    message,
                    opts,
                });
                Ok(id)
            })();
            results.push(r);
        }
        let mut stored = Stored::default();
        // A FIFO queue logs under its lock, so a duplicate (caught under
        // that lock) is answered only behind the first copy's record.
        let logged = if batch.is_empty() {
            None
        } else {
            self.enqueue_all(&q, batch, now, &mut results, &mut stored, q.is_fifo())
        };
        let commit = match logged {
            Some(c) => c,
            None => self.log_stored(stored),
        };
        Ok((results, commit))
    }

    /// Enqueues a batch into one queue under one lock. A queue-level duplicate
    /// turns the entry's id into the first message's id. Stored copies are
    /// added to `stored` for the log.
    fn enqueue_all(
        &self,
        q: &QueueHandle,
        batch: Vec<Copy>,
        now: Millis,
        results: &mut [EntryResult],
        stored: &mut Stored,
        log_under_lock: bool,
    ) -> Option<Commit> {
        let durable = self.inner.durable;
        let uid = q.uid();
        let mut handed = Handed::default();
        let enqueue = |g: &mut QueueInner| {
            for c in batch {
                let direct = c.message.topic.is_none();
                // The queue's own delay is applied inside the engine; log the
                // time it computes so a restart keeps the message hidden.
                let queue_delay = g.engine.settings().delay_ms();
                let visible_at = c
                    .opts
                    .visible_at
                    .or((queue_delay > 0).then(|| now + queue_delay));
                let message = durable.then(|| c.message.clone());
                match g.engine.enqueue(c.message, c.opts, now) {
                    Ok(EnqueueOutcome::Enqueued { seq }) => {
                        stored.copies += 1;
                        if let Some(message) = message {
                            stored.add(
                                c.index,
                                message,
                                CopyRec {
                                    queue_uid: uid,
                                    seq,
                                    receive_count: 0,
                                    enqueued_at: now,
                                    visible_at,
                                    dead_letter_source: None,
                                },
                            );
                        }
                    }
                    Ok(EnqueueOutcome::Duplicate { first_id }) => {
                        // For a direct send the client sees the first id; for
                        // a fan-out the topic's id stays (other queues have it).
                        if direct {
                            if let Some(Ok(id)) = results.get_mut(c.index) {
                                *id = first_id;
                            }
                        }
                    }
                    Err(e) => {
                        tracing::error!(queue = %q.name(), error = %e, "validated enqueue refused");
                        if let Some(r) = results.get_mut(c.index) {
                            *r = Err(HubError::InvalidRequest(e.to_string()));
                        }
                    }
                }
            }
            log_under_lock.then(|| self.log(|| std::mem::take(stored).into_records()))
        };
        let (commit, moves) = if log_under_lock || !durable {
            // Logged under the lock, before waiters are served: they log
            // their receive counts themselves.
            q.with(now, enqueue)
        } else {
            let r = q.with_handing(now, &mut handed, enqueue);
            if !handed.commits.is_empty() {
                stored.handed.push((uid, handed));
            }
            r
        };
        self.forward_dead_letters(moves);
        commit
    }

    /// Logs what a publish or send stored, with the receive counts of the
    /// messages it handed to waiting consumers after them, in one write;
    /// each of those consumers gets its own commit of that write.
    fn log_stored(&self, stored: Stored) -> Commit {
        if !self.inner.durable {
            return Commit::ready(());
        }
        let (records, handed) = stored.into_records_and_handed();
        let mut commits = self.storage().append_shared(records, 1 + handed.len());
        for (tx, commit) in handed.into_iter().zip(commits.drain(1..)) {
            let _ = tx.send(commit);
        }
        commits
            .pop()
            .unwrap_or_else(|| Commit::failed(crate::storage::StorageError::Closed))
    }
}

/// Copies stored by one publish or send, gathered per message so each body
/// is written to the log once with the list of queues it went to.
#[derive(Default)]
struct Stored {
    copies: u64,
    by_entry: Vec<Option<(Arc<MessageData>, Vec<CopyRec>)>>,
    records: Vec<Record>,
    /// Receive counts of messages handed to waiters, by queue uid.
    handed: Vec<(u64, Handed)>,
}

impl Stored {
    fn add(&mut self, index: usize, message: Arc<MessageData>, copy: CopyRec) {
        if self.by_entry.len() <= index {
            self.by_entry.resize_with(index + 1, || None);
        }
        match &mut self.by_entry[index] {
            Some((_, copies)) => copies.push(copy),
            slot @ None => *slot = Some((message, vec![copy])),
        }
    }

    fn into_records(self) -> Vec<Record> {
        self.into_records_and_handed().0
    }

    /// The records (messages first, then the receive counts of those handed
    /// to waiters), and the waiters to send the commit to.
    fn into_records_and_handed(mut self) -> (Vec<Record>, Vec<oneshot::Sender<Commit>>) {
        let mut out: Vec<Record> = self
            .by_entry
            .into_iter()
            .flatten()
            .map(|(message, copies)| Record::Publish { message, copies })
            .collect();
        out.append(&mut self.records);
        let mut commits = Vec::new();
        for (queue_uid, h) in self.handed {
            out.push(Record::Received {
                queue_uid,
                entries: h.entries,
            });
            commits.extend(h.commits);
        }
        (out, commits)
    }
}

fn check_batch(n: usize) -> Result<(), HubError> {
    if n == 0 {
        return Err(HubError::InvalidRequest(
            "a batch needs at least one message".into(),
        ));
    }
    if n > MAX_BATCH {
        return Err(HubError::BatchTooLarge(format!(
            "a batch has at most {MAX_BATCH} messages; this one has {n}"
        )));
    }
    Ok(())
}

fn check_id(field: &str, v: &str) -> Result<(), HubError> {
    let n = v.chars().count();
    if n == 0 || n > MAX_ID_LEN {
        return Err(HubError::InvalidRequest(format!(
            "{field} must be 1 to {MAX_ID_LEN} characters; it has {n}"
        )));
    }
    if v.chars().any(|c| !c.is_ascii_graphic()) {
        return Err(HubError::InvalidRequest(format!(
            "{field} may hold only printable ASCII characters without spaces"
        )));
    }
    Ok(())
}

/// Rules that hold on any queue or topic.
fn check_common(m: &NewMessage) -> Result<(), HubError> {
    // The largest any queue takes, enforced even where no queue is matched
    // (a FIFO topic logs unmatched publishes for its dedup window).
    let size = MessageData::compute_size(m.body_len, &m.attributes);
    if size > MAX_MESSAGE_BYTES {
        return Err(HubError::MessageTooLarge {
            size,
            max: MAX_MESSAGE_BYTES,
            queue: None,
        });
    }
    if let Some(g) = &m.group_id {
        check_id("group_id", g)?;
    }
    if let Some(d) = &m.dedup_id {
        check_id("dedup_id", d)?;
    }
    if m.attributes.len() > MAX_ATTRIBUTES {
        return Err(HubError::InvalidRequest(format!(
            "a message has at most {MAX_ATTRIBUTES} attributes; this one has {}",
            m.attributes.len()
        )));
    }
    if m.attributes.keys().any(|k| k.is_empty()) {
        return Err(HubError::InvalidRequest(
            "attribute names must not be empty".into(),
        ));
    }
    if let Some(d) = m.delay_seconds {
        if d > MAX_DELAY_SECONDS {
            return Err(HubError::InvalidRequest(format!(
                "delay_seconds is {d}; it must be between 0 and {MAX_DELAY_SECONDS}"
            )));
        }
    }
    if m.delay_seconds.is_some() && m.deliver_at.is_some() {
        return Err(HubError::InvalidRequest(
            "give delay_seconds or deliver_at, not both".into(),
        ));
    }
    Ok(())
}

/// FIFO or standard rules; returns the dedup id a FIFO target uses.
fn check_kind(
    m: &NewMessage,
    fifo: bool,
    content_based_dedup: bool,
) -> Result<Option<Arc<str>>, HubError> {
    if !fifo {
        if m.group_id.is_some() || m.dedup_id.is_some() {
            return Err(HubError::InvalidRequest(
                "group_id and dedup_id are for FIFO queues and topics only".into(),
            ));
        }
        return Ok(None);
    }
    if m.group_id.is_none() {
        return Err(HubError::InvalidRequest(
            "group_id is required on a FIFO queue or topic".into(),
        ));
    }
    if m.delay_seconds.is_some() || m.deliver_at.is_some() {
        return Err(HubError::InvalidRequest(
            "delay_seconds and deliver_at are for standard queues and topics; \
             a FIFO queue applies its own delay"
                .into(),
        ));
    }
    match &m.dedup_id {
        Some(d) => Ok(Some(Arc::from(d.as_str()))),
        None if content_based_dedup => Ok(Some(Arc::from(content_hash(m).as_str()))),
        None => Err(HubError::InvalidRequest(
            "dedup_id is required: this FIFO queue or topic has no content-based dedup".into(),
        )),
    }
}

/// SHA-256 of the decoded body, in hex.
fn content_hash(m: &NewMessage) -> String {
    let mut h = Sha256::new();
    match m.body_encoding {
        BodyEncoding::Text => h.update(m.body.as_bytes()),
        BodyEncoding::Base64 => match base64::engine::general_purpose::STANDARD.decode(&m.body) {
            Ok(bytes) => h.update(&bytes),
            Err(_) => h.update(m.body.as_bytes()),
        },
    }
    let digest = h.finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn build(
    m: NewMessage,
    topic: Option<TopicName>,
    dedup: Option<Arc<str>>,
    now: Millis,
) -> MessageData {
    let size = MessageData::compute_size(m.body_len, &m.attributes);
    let visible_at = match (m.delay_seconds, m.deliver_at) {
        (Some(d), _) => Some(now + u64::from(d) * 1000),
        (None, Some(at)) => Some(at.max(now)),
        (None, None) => None,
    };
    MessageData {
        id: MessageId::generate(now),
        body: m.body,
        body_encoding: m.body_encoding,
        attributes: m.attributes,
        group_id: m.group_id.map(|g| Arc::from(g.as_str())),
        dedup_id: dedup,
        topic,
        poison: m.poison,
        sent_at: now,
        size,
        visible_at,
        loc: Default::default(),
        copies: 1,
    }
}

/// The message fits the queue: size, and `deliver_at` within retention.
fn check_fits(m: &MessageData, q: &QueueHandle, now: Millis) -> Result<(), HubError> {
    let max = q.max_message_bytes.load(Ordering::Relaxed) as usize;
    if m.size > max {
        return Err(HubError::MessageTooLarge {
            size: m.size,
            max,
            queue: Some(q.name().clone()),
        });
    }
    let retention_ms = u64::from(q.retention_seconds.load(Ordering::Relaxed)) * 1000;
    if let Some(at) = m.visible_at {
        if at > now + retention_ms {
            return Err(HubError::InvalidRequest(format!(
                "deliver_at is further ahead than queue {}'s retention ({} s)",
                q.name(),
                retention_ms / 1000
            )));
        }
    }
    Ok(())
}

/// The body as JSON, for body-scoped filters; `None` when it is not JSON.
fn parse_json_body(m: &MessageData) -> Option<serde_json::Value> {
    match m.body_encoding {
        BodyEncoding::Text => serde_json::from_str(&m.body).ok(),
        BodyEncoding::Base64 => None,
    }
}
