//! The hub: the registry of topics and queues, fan-out through filter
//! policies, and the async shell around each queue engine (long-poll waiters,
//! timers, dead-letter forwarding, redrive).
//!
//! Admin changes (create, update, delete, subscribe) are serialised by one
//! `admin` lock so cross-resource rules (a DLQ exists, no DLQ loops, a queue in
//! use is not deleted) are checked and applied atomically. The hot path
//! (publish, receive, ack) never takes it: it looks names up in `DashMap`s and
//! locks only the queues it touches, one at a time.

mod error;
pub mod filter;
mod paging;
mod publish;
mod queue_handle;
mod redrive;
mod restore;
mod snapshot;
mod temp;
mod topic;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use dashmap::DashMap;
use rand::Rng;

pub use error::HubError;
pub use paging::Delivery;
pub use publish::{EntryResult, NewMessage};
pub use queue_handle::QueueHandle;
pub use redrive::{RedriveProgress, RedriveStarted};
pub use restore::RestoreReport;
pub use snapshot::CHECKPOINT_POLL;
pub use topic::{Subscription, TopicHandle, TopicStats};

use crate::config::Limits;
use crate::model::{
    Clock, Millis, QueueName, QueueSettings, QueueSettingsPatch, TopicName, TopicSettings,
    TopicSettingsPatch, MAX_VISIBILITY_SECONDS, MAX_WAIT_SECONDS,
};
use crate::queue::ReceiptError;
use crate::queue::{
    self as engine, DeadLetterMove, EnqueueOptions, QueueState, QueueStats, Receipt,
};
use crate::storage::{Commit, CopyRec, MemoryStorage, Record, Storage};
use filter::FilterPolicy;
use queue_handle::{Handoff, Waiter};

/// `wait_seconds` of a push subscription's receive (crate-internal): park
/// until a message arrives, the queue is deleted or the server shuts down.
pub(crate) const PARK_UNTIL_MESSAGE: u32 = u32::MAX;

/// Most messages one receive returns, and most entries in one batch.
pub const MAX_BATCH: usize = 100;

/// What `describe` of a queue shows.
#[derive(Debug, Clone)]
pub struct QueueInfo {
    pub name: QueueName,
    pub settings: QueueSettings,
    pub stats: QueueStats,
    pub temporary: bool,
    /// Queues that use this one as their dead-letter queue.
    pub dead_letter_sources: Vec<QueueName>,
    /// Topics this queue is subscribed to.
    pub subscribed_to: Vec<TopicName>,
    /// The latest redrive out of this queue, if any.
    pub redrive: Option<RedriveProgress>,
}

/// What `describe` of a topic shows.
#[derive(Debug, Clone)]
pub struct TopicInfo {
    pub name: TopicName,
    pub settings: TopicSettings,
    pub subscriptions: Vec<Subscription>,
    pub stats: TopicStats,
}

/// A receive request, validated by [`Hub::receive`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ReceiveRequest {
    /// 1..=100; default 1.
    pub max: Option<u32>,
    /// 0..=20 seconds; default the queue's `receive_wait_seconds`.
    pub wait_seconds: Option<u32>,
    /// 0..=43200 seconds; default the queue's visibility timeout.
    pub visibility_timeout_seconds: Option<u32>,
}

/// (source queue uid, seq) -> (destination queue uid, seq).
type MovedDuringCapture = std::collections::HashMap<(u64, u64), (u64, u64)>;

/// The hub. Cheap to clone; every clone is the same hub.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

/// A weak reference to a [`Hub`].
#[derive(Clone)]
pub struct WeakHub(Weak<HubInner>);

pub(crate) struct HubInner {
    topics: DashMap<TopicName, Arc<TopicHandle>>,
    queues: DashMap<QueueName, Arc<QueueHandle>>,
    /// Serialises admin changes; never held across `.await`.
    admin: Mutex<()>,
    clock: Arc<dyn Clock>,
    limits: Limits,
    /// Source of queue incarnation ids (receipts name them).
    next_uid: AtomicU64,
    redrives: DashMap<QueueName, Arc<redrive::RedriveTask>>,
    /// Queue incarnation id -> queue, for receipts that name no queue (WebSocket acks).
    by_uid: DashMap<u64, Arc<QueueHandle>>,
    /// Temporary queues not attached to a connection, with the time they were
    /// left; deleted once older than the resume window.
    temps: DashMap<QueueName, Millis>,
    /// Temporary queues held by connections, with how many hold each.
    attached: DashMap<QueueName, usize>,
    /// Serialises attach, detach and reaping of temporary queues.
    temp_lock: Mutex<()>,
    /// Signals parked receives to return at shutdown.
    shutdown: tokio::sync::watch::Sender<bool>,
    /// Where changes are made durable.
    storage: Arc<dyn Storage>,
    /// While a checkpoint captures: moves between queues confirmed since it
    /// began, (source uid, seq) -> (destination uid, seq).
    moved: Mutex<Option<MovedDuringCapture>>,
    /// Whether `storage` keeps anything (else no records are built).
    durable: bool,
}

impl Hub {
    /// An empty hub. Must be created inside a tokio runtime (queues spawn
    /// their timer tasks there).
    pub fn new(clock: Arc<dyn Clock>, limits: Limits) -> Self {
        Self::with_storage(clock, limits, Arc::new(MemoryStorage))
    }

    /// A hub that records its changes in `storage` (call
    /// [`restore`](Self::restore) first to load what it holds).
    pub fn with_storage(clock: Arc<dyn Clock>, limits: Limits, storage: Arc<dyn Storage>) -> Self {
        let (shutdown, _) = tokio::sync::watch::channel(false);
        let durable = storage.is_durable();
        Self {
            inner: Arc::new(HubInner {
                topics: DashMap::new(),
                queues: DashMap::new(),
                admin: Mutex::new(()),
                clock,
                limits,
                next_uid: AtomicU64::new(rand::thread_rng().gen::<u64>() >> 16),
                redrives: DashMap::new(),
                by_uid: DashMap::new(),
                temps: DashMap::new(),
                attached: DashMap::new(),
                temp_lock: Mutex::new(()),
                shutdown,
                storage,
                durable,
                moved: Mutex::new(None),
            }),
        }
    }

    /// A handle that does not keep the hub alive (for background tasks).
    pub fn downgrade(&self) -> WeakHub {
        WeakHub(Arc::downgrade(&self.inner))
    }

    pub fn upgrade(w: &WeakHub) -> Option<Hub> {
        w.0.upgrade().map(|inner| Hub { inner })
    }

    pub fn now(&self) -> Millis {
        self.inner.clock.now_ms()
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Becomes true when the server starts shutting down.
    pub fn shutdown_watch(&self) -> tokio::sync::watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }

    /// Makes parked receives return (empty) at once; used at shutdown.
    pub fn begin_shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// Appends records when storage keeps anything.
    pub(crate) fn log(&self, build: impl FnOnce() -> Vec<Record>) -> Commit {
        if self.inner.durable {
            self.inner.storage.append(build())
        } else {
            Commit::ready(())
        }
    }

    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.inner.storage
    }

    fn admin_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.inner.admin.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ---- topics ----

    /// Creates a topic, or checks an existing one. Returns whether it was
    /// created. Changing `fifo` of an existing topic is `TopicExists`.
    pub async fn put_topic(
        &self,
        name: &TopicName,
        patch: &TopicSettingsPatch,
    ) -> Result<bool, HubError> {
        let (created, commit) = self.put_topic_now(name, patch)?;
        commit.await?;
        Ok(created)
    }

    fn put_topic_now(
        &self,
        name: &TopicName,
        patch: &TopicSettingsPatch,
    ) -> Result<(bool, Commit), HubError> {
        let _admin = self.admin_lock();
        if let Some(t) = self.inner.topics.get(name) {
            let mut cur = t.settings.lock().unwrap_or_else(|p| p.into_inner());
            if patch.fifo.is_some_and(|f| f != cur.fifo) {
                return Err(HubError::TopicExists(format!(
                    "topic {name} exists with fifo={}; fifo cannot change",
                    cur.fifo
                )));
            }
            let next = patch.apply(&cur);
            next.validate()?;
            *cur = next.clone();
            let commit = self.log(|| {
                vec![Record::TopicPut {
                    name: name.clone(),
                    settings: next,
                }]
            });
            return Ok((false, commit));
        }
        let settings = patch.apply(&TopicSettings::default());
        settings.validate()?;
        if self.inner.topics.len() >= self.inner.limits.max_topics {
            return Err(HubError::LimitExceeded(format!(
                "at most {} topics may exist (--max-topics)",
                self.inner.limits.max_topics
            )));
        }
        let commit = self.log(|| {
            vec![Record::TopicPut {
                name: name.clone(),
                settings: settings.clone(),
            }]
        });
        self.inner
            .topics
            .insert(name.clone(), TopicHandle::new(name.clone(), settings));
        tracing::info!(topic = %name, "topic created");
        Ok((true, commit))
    }

    pub fn list_topics(&self) -> Vec<TopicName> {
        let mut v: Vec<_> = self.inner.topics.iter().map(|e| e.key().clone()).collect();
        v.sort();
        v
    }

    pub fn topic(&self, name: &TopicName) -> Result<Arc<TopicHandle>, HubError> {
        self.inner
            .topics
            .get(name)
            .map(|t| t.clone())
            .ok_or_else(|| HubError::TopicNotFound(name.clone()))
    }

    pub fn describe_topic(&self, name: &TopicName) -> Result<TopicInfo, HubError> {
        let t = self.topic(name)?;
        Ok(TopicInfo {
            name: name.clone(),
            settings: t.settings(),
            subscriptions: t.subscriptions().as_ref().clone(),
            stats: t.stats(),
        })
    }

    /// Deletes a topic and its subscriptions (the queues stay).
    pub async fn delete_topic(&self, name: &TopicName) -> Result<(), HubError> {
        let commit = {
            let _admin = self.admin_lock();
            self.inner
                .topics
                .remove(name)
                .ok_or_else(|| HubError::TopicNotFound(name.clone()))?;
            tracing::info!(topic = %name, "topic deleted");
            self.log(|| vec![Record::TopicDelete { name: name.clone() }])
        };
        commit.await?;
        Ok(())
    }

    // ---- queues ----

    /// Creates a queue or updates an existing one's mutable settings.
    /// Returns whether it was created.
    pub async fn put_queue(
        &self,
        name: &QueueName,
        patch: &QueueSettingsPatch,
    ) -> Result<bool, HubError> {
        let (created, commit) = self.put_queue_now(name, patch, false)?;
        commit.await?;
        Ok(created)
    }

    pub(crate) fn put_queue_now(
        &self,
        name: &QueueName,
        patch: &QueueSettingsPatch,
        temporary: bool,
    ) -> Result<(bool, Commit), HubError> {
        let _admin = self.admin_lock();
        let existing = self.inner.queues.get(name).map(|q| q.clone());
        let base = match &existing {
            Some(q) => q.lock().engine.settings().clone(),
            None => QueueSettings::default(),
        };
        if existing.is_some() && patch.fifo.is_some_and(|f| f != base.fifo) {
            return Err(HubError::QueueExists(format!(
                "queue {name} exists with fifo={}; fifo cannot change",
                base.fifo
            )));
        }
        let settings = patch.apply(&base);
        settings.validate()?;
        self.check_dead_letter(name, &settings)?;
        if let Some(q) = existing {
            let now = self.now();
            let commit = self.log(|| {
                vec![Record::QueuePut {
                    name: name.clone(),
                    uid: q.uid(),
                    settings: settings.clone(),
                    temporary: q.temporary.load(Ordering::Relaxed),
                }]
            });
            let moves = q.update_settings(now, settings);
            self.forward_dead_letters(moves);
            tracing::info!(queue = %name, "queue settings updated");
            return Ok((false, commit));
        }
        if self.inner.queues.len() >= self.inner.limits.max_queues {
            return Err(HubError::LimitExceeded(format!(
                "at most {} queues may exist (--max-queues)",
                self.inner.limits.max_queues
            )));
        }
        let uid = self.inner.next_uid.fetch_add(1, Ordering::Relaxed);
        let commit = self.log(|| {
            vec![Record::QueuePut {
                name: name.clone(),
                uid,
                settings: settings.clone(),
                temporary,
            }]
        });
        self.install_queue(QueueState::new(name.clone(), uid, settings), temporary);
        tracing::info!(queue = %name, "queue created");
        Ok((true, commit))
    }

    /// Registers a queue engine and starts its timer.
    pub(crate) fn install_queue(&self, engine: QueueState, temporary: bool) -> Arc<QueueHandle> {
        let name = engine.name().clone();
        self.inner
            .next_uid
            .fetch_max(engine.uid().saturating_add(1), Ordering::Relaxed);
        let handle = QueueHandle::new(engine);
        handle.temporary.store(temporary, Ordering::Relaxed);
        if temporary {
            // Recovered or new: detached until a connection attaches.
            self.inner.temps.insert(name.clone(), self.now());
        }
        self.inner.by_uid.insert(handle.uid(), handle.clone());
        self.inner.queues.insert(name, handle.clone());
        self.spawn_timer(handle.clone());
        handle
    }

    /// Cross-queue rules of `dead_letter`: the DLQ exists, matches the kind
    /// (FIFO with FIFO, standard with standard) and no chain loops back.
    fn check_dead_letter(&self, name: &QueueName, s: &QueueSettings) -> Result<(), HubError> {
        let Some(dl) = &s.dead_letter else {
            return Ok(());
        };
        if &dl.queue == name {
            return Err(HubError::InvalidSetting(format!(
                "queue {name} cannot be its own dead-letter queue"
            )));
        }
        let target = self
            .inner
            .queues
            .get(&dl.queue)
            .map(|q| q.clone())
            .ok_or_else(|| {
                HubError::InvalidSetting(format!("dead-letter queue {} does not exist", dl.queue))
            })?;
        let target_fifo = target.is_fifo();
        if target_fifo != s.fifo {
            let kind = |f: bool| if f { "FIFO" } else { "standard" };
            return Err(HubError::InvalidSetting(format!(
                "the dead-letter queue of a {} queue must be {} too; {} is {}",
                kind(s.fifo),
                kind(s.fifo),
                dl.queue,
                kind(target_fifo)
            )));
        }
        // Follow the chain from the DLQ; reaching `name` again is a loop.
        let mut seen = vec![name.clone()];
        let mut cur = dl.queue.clone();
        loop {
            if seen.contains(&cur) {
                return Err(HubError::InvalidSetting(format!(
                    "dead-letter chain {} -> {} loops",
                    seen.iter()
                        .map(|q| q.as_str())
                        .collect::<Vec<_>>()
                        .join(" -> "),
                    cur
                )));
            }
            seen.push(cur.clone());
            let next = self
                .inner
                .queues
                .get(&cur)
                .and_then(|q| q.lock().engine.settings().dead_letter.clone());
            match next {
                Some(d) => cur = d.queue,
                None => return Ok(()),
            }
        }
    }

    pub fn list_queues(&self) -> Vec<QueueName> {
        let mut v: Vec<_> = self.inner.queues.iter().map(|e| e.key().clone()).collect();
        v.sort();
        v
    }

    pub fn queue(&self, name: &QueueName) -> Result<Arc<QueueHandle>, HubError> {
        self.inner
            .queues
            .get(name)
            .map(|q| q.clone())
            .ok_or_else(|| HubError::QueueNotFound(name.clone()))
    }

    pub fn describe_queue(&self, name: &QueueName) -> Result<QueueInfo, HubError> {
        let q = self.queue(name)?;
        let now = self.now();
        let ((settings, stats), moves) =
            q.with(now, |g| (g.engine.settings().clone(), g.engine.stats(now)));
        self.forward_dead_letters(moves);
        Ok(QueueInfo {
            name: name.clone(),
            settings,
            stats,
            temporary: q.temporary.load(Ordering::Relaxed),
            dead_letter_sources: self.dead_letter_sources(name),
            subscribed_to: self.subscribed_topics(name),
            redrive: self.inner.redrives.get(name).map(|r| r.progress()),
        })
    }

    fn dead_letter_sources(&self, name: &QueueName) -> Vec<QueueName> {
        let mut v: Vec<QueueName> = self
            .inner
            .queues
            .iter()
            .filter(|e| {
                e.value()
                    .lock()
                    .engine
                    .settings()
                    .dead_letter
                    .as_ref()
                    .is_some_and(|d| &d.queue == name)
            })
            .map(|e| e.key().clone())
            .collect();
        v.sort();
        v
    }

    /// Topics a queue is subscribed to.
    pub fn subscribed_topics_of(&self, name: &QueueName) -> Vec<TopicName> {
        self.subscribed_topics(name)
    }

    fn subscribed_topics(&self, name: &QueueName) -> Vec<TopicName> {
        let mut v: Vec<TopicName> = self
            .inner
            .topics
            .iter()
            .filter(|t| t.subscriptions().iter().any(|s| &s.queue == name))
            .map(|t| t.key().clone())
            .collect();
        v.sort();
        v
    }

    /// Deletes a queue. Refused while it is another queue's DLQ or is
    /// subscribed to a topic. Parked receives return empty; push consumers
    /// see the queue end.
    pub async fn delete_queue(&self, name: &QueueName) -> Result<(), HubError> {
        let commit = self.delete_queue_now(name)?;
        commit.await?;
        Ok(())
    }

    pub(crate) fn delete_queue_now(&self, name: &QueueName) -> Result<Commit, HubError> {
        let _admin = self.admin_lock();
        if !self.inner.queues.contains_key(name) {
            return Err(HubError::QueueNotFound(name.clone()));
        }
        let sources = self.dead_letter_sources(name);
        if !sources.is_empty() {
            return Err(HubError::QueueInUse(format!(
                "queue {name} is the dead-letter queue of {}",
                join(&sources)
            )));
        }
        let topics = self.subscribed_topics(name);
        if !topics.is_empty() {
            return Err(HubError::QueueInUse(format!(
                "queue {name} is subscribed to topic {}; unsubscribe first",
                join(&topics)
            )));
        }
        let mut commit = Commit::ready(());
        if let Some((_, q)) = self.inner.queues.remove(name) {
            q.mark_deleted();
            self.inner.by_uid.remove(&q.uid());
            self.inner.temps.remove(name);
            self.inner.attached.remove(name);
            commit = self.log(|| {
                vec![Record::QueueDelete {
                    name: name.clone(),
                    uid: q.uid(),
                }]
            });
        }
        self.inner.redrives.remove(name);
        tracing::info!(queue = %name, "queue deleted");
        Ok(commit)
    }

    /// Drops every message of a queue, in flight or not.
    pub async fn purge(&self, name: &QueueName) -> Result<u64, HubError> {
        let q = self.queue(name)?;
        let ((n, below_seq), moves) =
            q.with(self.now(), |g| (g.engine.purge(), g.engine.next_seq()));
        self.forward_dead_letters(moves);
        let commit = self.log(|| {
            vec![Record::Purge {
                queue_uid: q.uid(),
                below_seq,
            }]
        });
        commit.await?;
        tracing::info!(queue = %name, purged = n, "queue purged");
        Ok(n)
    }

    // ---- subscriptions ----

    /// Subscribes a queue to a topic; subscribing again replaces the filter.
    pub async fn subscribe(
        &self,
        topic: &TopicName,
        queue: &QueueName,
        filter: Option<serde_json::Value>,
    ) -> Result<bool, HubError> {
        let (created, commit) = self.subscribe_now(topic, queue, filter)?;
        commit.await?;
        Ok(created)
    }

    pub(crate) fn subscribe_now(
        &self,
        topic: &TopicName,
        queue: &QueueName,
        filter: Option<serde_json::Value>,
    ) -> Result<(bool, Commit), HubError> {
        let _admin = self.admin_lock();
        let t = self.topic(topic)?;
        let q = self.queue(queue)?;
        let topic_fifo = t.settings().fifo;
        let queue_fifo = q.is_fifo();
        if queue_fifo && !topic_fifo {
            return Err(HubError::InvalidSetting(format!(
                "standard topic {topic} cannot feed FIFO queue {queue}"
            )));
        }
        let compiled = match &filter {
            Some(v) if !v.is_null() => Some(Arc::new(
                FilterPolicy::parse(v).map_err(|e| HubError::InvalidSetting(e.0))?,
            )),
            _ => None,
        };
        let mut subs = t.subscriptions().as_ref().clone();
        let sub = Subscription {
            queue: queue.clone(),
            filter: compiled,
            filter_json: filter.filter(|v| !v.is_null()).map(Arc::new),
        };
        let created = match subs.iter_mut().find(|s| &s.queue == queue) {
            Some(s) => {
                *s = sub;
                false
            }
            None => {
                if subs.len() >= self.inner.limits.max_subscriptions_per_topic {
                    return Err(HubError::LimitExceeded(format!(
                        "topic {topic} has {} subscriptions, the most allowed \
                         (--max-subscriptions-per-topic)",
                        subs.len()
                    )));
                }
                subs.push(sub);
                true
            }
        };
        let filter_json = subs
            .iter()
            .find(|s| &s.queue == queue)
            .and_then(|s| s.filter_json.as_ref())
            .map(|v| v.to_string());
        t.set_subscriptions(subs);
        let commit = self.log(|| {
            vec![Record::Subscribe {
                topic: topic.clone(),
                queue: queue.clone(),
                filter_json,
            }]
        });
        tracing::info!(topic = %topic, queue = %queue, "subscribed");
        Ok((created, commit))
    }

    pub async fn unsubscribe(&self, topic: &TopicName, queue: &QueueName) -> Result<(), HubError> {
        let commit = self.unsubscribe_now(topic, queue)?;
        commit.await?;
        Ok(())
    }

    pub(crate) fn unsubscribe_now(
        &self,
        topic: &TopicName,
        queue: &QueueName,
    ) -> Result<Commit, HubError> {
        let _admin = self.admin_lock();
        let t = self.topic(topic)?;
        let mut subs = t.subscriptions().as_ref().clone();
        let before = subs.len();
        subs.retain(|s| &s.queue != queue);
        if subs.len() == before {
            if !self.inner.queues.contains_key(queue) {
                return Err(HubError::QueueNotFound(queue.clone()));
            }
            return Err(HubError::SubscriptionNotFound {
                topic: topic.clone(),
                queue: queue.clone(),
            });
        }
        t.set_subscriptions(subs);
        tracing::info!(topic = %topic, queue = %queue, "unsubscribed");
        Ok(self.log(|| {
            vec![Record::Unsubscribe {
                topic: topic.clone(),
                queue: queue.clone(),
            }]
        }))
    }

    // ---- consuming ----

    /// Receives up to `max` messages, waiting up to `wait_seconds` for the
    /// first one. Returns as soon as anything is available.
    pub async fn receive(
        &self,
        queue: &QueueName,
        req: ReceiveRequest,
    ) -> Result<Vec<Delivery>, HubError> {
        let max = req.max.unwrap_or(1);
        if !(1..=MAX_BATCH as u32).contains(&max) {
            return Err(HubError::InvalidRequest(format!(
                "max is {max}; it must be between 1 and {MAX_BATCH}"
            )));
        }
        if let Some(w) = req.wait_seconds {
            if w > MAX_WAIT_SECONDS {
                return Err(HubError::InvalidRequest(format!(
                    "wait_seconds is {w}; it must be between 0 and {MAX_WAIT_SECONDS}"
                )));
            }
        }
        if let Some(v) = req.visibility_timeout_seconds {
            if v > MAX_VISIBILITY_SECONDS {
                return Err(HubError::InvalidRequest(format!(
                    "visibility_timeout_seconds is {v}; it must be between 0 and \
                     {MAX_VISIBILITY_SECONDS}"
                )));
            }
        }
        let q = self.queue(queue)?;
        self.receive_on(&q, req).await
    }

    /// [`receive`](Self::receive) on a queue handle the caller holds (a push
    /// subscription), skipping the name lookup. `req` must be valid.
    pub(crate) async fn receive_on(
        &self,
        q: &Arc<QueueHandle>,
        req: ReceiveRequest,
    ) -> Result<Vec<Delivery>, HubError> {
        self.lease_on(q, req).await?.durable().await
    }

    /// The first half of [`receive_on`](Self::receive_on): leases messages
    /// and hands their receive counts to the log, without waiting for the
    /// disk. A push subscription leases its next batch while this one's
    /// counts sync; [`Leased::durable`] hands the messages out once they
    /// are durable (or gives them back).
    pub(crate) async fn lease_on(
        &self,
        q: &Arc<QueueHandle>,
        req: ReceiveRequest,
    ) -> Result<Leased, HubError> {
        if q.is_deleted() {
            return Err(HubError::QueueNotFound(q.name().clone()));
        }
        let queue = q.name();
        let max = req.max.unwrap_or(1);
        let vis = req.visibility_timeout_seconds.map(|s| u64::from(s) * 1000);
        let mut shutdown = self.inner.shutdown.subscribe();
        let now = self.now();
        let limit = self.inner.limits.max_waiters_per_queue;
        let (outcome, moves) = q.with(now, |g| {
            // Checked under the lock: `mark_deleted` sets the flag before it
            // takes the lock to drop the waiters, so a receive either sees the
            // flag or parks a waiter that is then dropped.
            if q.is_deleted() {
                return Err(HubError::QueueNotFound(q.name().clone()));
            }
            let got = g.engine.receive(max as usize, vis, now);
            if !got.is_empty() {
                return Ok(Ok(got));
            }
            let wait = req
                .wait_seconds
                .unwrap_or(g.engine.settings().receive_wait_seconds);
            if wait == 0 {
                return Ok(Ok(Vec::new()));
            }
            // Waiters that timed out leave in arrival order; drop them here.
            while g.waiters.front().is_some_and(|w| w.tx.is_closed()) {
                g.waiters.pop_front();
            }
            if g.waiters.len() >= limit {
                g.prune_waiters();
                // Waiters that timed out leave in arrival order; drop them here.
                while g.waiters.front().is_some_and(|w| w.tx.is_closed()) {
                    g.waiters.pop_front();
                }
                if g.waiters.len() >= limit {
                    return Err(HubError::Throttled(format!(
                        "{limit} receives are already waiting on queue {queue} \
                         (--max-waiters-per-queue)"
                    )));
                }
            }
            let (tx, rx) = tokio::sync::oneshot::channel();
            g.waiters.push_back(Waiter {
                max: max as usize,
                visibility_ms: vis,
                tx,
            });
            Ok(Err((rx, wait)))
        });
        self.forward_dead_letters(moves);
        let Handoff { got, logged } = match outcome? {
            Ok(got) => Handoff { got, logged: None },
            Err((rx, wait)) => {
                // If this future is dropped while parked, the guard takes back
                // anything handed over in the meantime.
                let mut parked = Parked {
                    hub: self,
                    queue: q,
                    rx: Some(rx),
                };
                match parked.rx.as_mut() {
                    Some(rx) if !*shutdown.borrow() => {
                        // A push subscription parks without a deadline: no
                        // timer to set and cancel per delivery (thousands of
                        // subscribers).
                        let deadline = async {
                            if wait == PARK_UNTIL_MESSAGE {
                                std::future::pending::<()>().await;
                            } else {
                                tokio::time::sleep(Duration::from_secs(u64::from(wait))).await;
                            }
                        };
                        tokio::select! {
                            r = rx => {
                                parked.rx = None;
                                r.unwrap_or_default()
                            }
                            () = deadline => parked.give_up(),
                            _ = shutdown.changed() => parked.give_up(),
                        }
                    }
                    // Shutting down: only what was already handed over.
                    _ => parked.give_up(),
                }
            }
        };
        let got = self.resolve(q, got)?;
        // Until the receive counts are durable and the messages handed out,
        // dropping this undoes the leases rather than leaving them to lapse.
        let guard = ReleaseOnDrop {
            hub: self.clone(),
            queue: q.clone(),
            deliveries: Some(got.iter().map(Delivery::lease).collect()),
        };
        let commit = match logged {
            // The enqueue that handed them over logs their receive counts
            // with the messages.
            Some(rx) => LeaseCommit::Handed(rx),
            None => LeaseCommit::Own(self.log_received(q.uid(), &got)),
        };
        Ok(Leased { got, commit, guard })
    }

    /// Makes receive counts durable before the messages are handed out, so a
    /// message that kills its consumers still reaches its dead-letter queue.
    pub(crate) fn log_received(&self, uid: u64, got: &[Delivery]) -> Commit {
        if got.is_empty() {
            return Commit::ready(());
        }
        self.log(|| {
            vec![Record::Received {
                queue_uid: uid,
                entries: got
                    .iter()
                    .map(|d| (d.seq, d.receive_count, d.first_received_at))
                    .collect(),
            }]
        })
    }

    /// Acks receipts; per-receipt results.
    pub async fn ack(
        &self,
        queue: &QueueName,
        receipts: &[Receipt],
    ) -> Result<Vec<Result<(), ReceiptError>>, HubError> {
        let (r, commit) = self.ack_now(queue, receipts)?;
        commit.await?;
        Ok(r)
    }

    /// Acks in memory now; the commit completes once the acks are durable
    /// (answer only then). Lets a caller keep reading while the disk syncs.
    pub fn ack_now(
        &self,
        queue: &QueueName,
        receipts: &[Receipt],
    ) -> Result<(Vec<Result<(), ReceiptError>>, Commit), HubError> {
        let q = self.queue(queue)?;
        Ok(self.ack_on(&q, receipts))
    }

    /// [`ack_now`](Self::ack_now) on a queue handle the caller holds.
    pub(crate) fn ack_on(
        &self,
        q: &QueueHandle,
        receipts: &[Receipt],
    ) -> (Vec<Result<(), ReceiptError>>, Commit) {
        let (r, moves): (Vec<Result<(), ReceiptError>>, _) = q.with(self.now(), |g| {
            receipts.iter().map(|r| g.engine.ack(r)).collect()
        });
        self.forward_dead_letters(moves);
        let commit = self.log(|| {
            vec![Record::Delete {
                queue_uid: q.uid(),
                seqs: receipts
                    .iter()
                    .zip(&r)
                    .filter(|(_, r)| r.is_ok())
                    .map(|(rc, _)| rc.seq)
                    .collect(),
            }]
        });
        (r, commit)
    }

    /// Nacks receipts: visible again after `delay_seconds` (explicit delay wins
    /// over the queue's retry backoff).
    pub fn nack(
        &self,
        queue: &QueueName,
        receipts: &[Receipt],
        delay_seconds: Option<u32>,
    ) -> Result<Vec<Result<(), ReceiptError>>, HubError> {
        if let Some(d) = delay_seconds {
            if d > MAX_VISIBILITY_SECONDS {
                return Err(HubError::InvalidRequest(format!(
                    "delay_seconds is {d}; it must be between 0 and {MAX_VISIBILITY_SECONDS}"
                )));
            }
        }
        let q = self.queue(queue)?;
        let now = self.now();
        let delay = delay_seconds.map(|s| u64::from(s) * 1000);
        let mut dead = Vec::new();
        let (r, mut moves) = q.with(now, |g| {
            receipts
                .iter()
                .map(|r| {
                    let m = g.engine.nack(r, delay, now)?;
                    dead.extend(m);
                    Ok(())
                })
                .collect()
        });
        moves.extend(dead);
        self.forward_dead_letters(moves);
        Ok(r)
    }

    /// Sets receipts' remaining hidden time to `seconds` from now.
    pub fn change_visibility(
        &self,
        queue: &QueueName,
        receipts: &[Receipt],
        seconds: u32,
    ) -> Result<Vec<Result<(), ReceiptError>>, HubError> {
        if seconds > MAX_VISIBILITY_SECONDS {
            return Err(HubError::InvalidRequest(format!(
                "seconds is {seconds}; it must be between 0 and {MAX_VISIBILITY_SECONDS}"
            )));
        }
        let q = self.queue(queue)?;
        let now = self.now();
        let ms = u64::from(seconds) * 1000;
        let (r, moves) = q.with(now, |g| {
            receipts
                .iter()
                .map(|r| g.engine.change_visibility(r, ms, now))
                .collect()
        });
        self.forward_dead_letters(moves);
        Ok(r)
    }

    // ---- internals ----

    fn spawn_timer(&self, q: Arc<QueueHandle>) {
        let weak: Weak<HubInner> = Arc::downgrade(&self.inner);
        let clock = self.inner.clock.clone();
        tokio::spawn(queue_handle::run_timer(q, clock, move |moves| {
            if let Some(inner) = weak.upgrade() {
                Hub { inner }.forward_dead_letters(moves);
            }
        }));
    }

    /// Puts dead letters into their target queues (which may produce more,
    /// from the targets' own deadlines).
    pub(crate) fn forward_dead_letters(&self, moves: Vec<DeadLetterMove>) {
        // In order: several messages of one FIFO group moving together must
        // reach the dead-letter queue in their group order.
        let mut moves: std::collections::VecDeque<DeadLetterMove> = moves.into();
        while let Some(m) = moves.pop_front() {
            let now = self.now();
            let opts = EnqueueOptions {
                visible_at: Some(now),
                group_id: m.group_id.clone(),
                dedup_id: None,
                receive_count: m.receive_count,
                dead_letter_source: Some(m.source.clone()),
                skip_dedup: true,
            };
            let target = self.inner.queues.get(&m.target).map(|q| q.clone());
            // A DLQ cannot be deleted while in use, but settings may have
            // changed under a message in flight: then it stays where it was.
            let dest = match target {
                Some(t) => t,
                None => match self.inner.queues.get(&m.source).map(|q| q.clone()) {
                    Some(src) => {
                        tracing::warn!(queue = %m.source, dlq = %m.target,
                            "dead-letter queue is gone; message stays in its queue");
                        src
                    }
                    None => {
                        tracing::error!(queue = %m.source, dlq = %m.target,
                            "dead-letter queue and source are gone; message dropped");
                        self.departed(m.source_uid, m.source_seq, None);
                        continue;
                    }
                },
            };
            // The move is logged with the message itself (read back if it
            // was paged out), and the copy in the dead-letter queue refers to
            // that new record, not the source's: a checkpoint racing with the
            // move may drop the source's segment.
            let loaded = if self.inner.durable {
                match self.load(&m.message) {
                    Ok(a) => Some(a.relocated()),
                    Err(e) => {
                        tracing::error!(queue = %m.source, error = %e,
                            "cannot read a message moving to its dead-letter queue");
                        None
                    }
                }
            } else {
                None
            };
            let msg = match &loaded {
                Some(a) => crate::model::MsgRef::Mem(a.clone()),
                None => m.message.clone(),
            };
            let dead_letter_source = opts.dead_letter_source.clone();
            let receive_count = opts.receive_count;
            let (r, more) = dest.with(now, |g| g.engine.enqueue(msg, opts, now));
            let arrived = match &r {
                Ok(crate::queue::EnqueueOutcome::Enqueued { seq }) => Some((dest.uid(), *seq)),
                _ => None,
            };
            match (r, loaded) {
                (Ok(crate::queue::EnqueueOutcome::Enqueued { .. }), None) => {}
                (Ok(crate::queue::EnqueueOutcome::Enqueued { seq }), Some(message)) => {
                    // Not awaited: if lost in a crash the message is still in
                    // its source with its count, and moves again.
                    self.log(|| {
                        vec![
                            Record::Publish {
                                message,
                                copies: vec![CopyRec {
                                    queue_uid: dest.uid(),
                                    seq,
                                    receive_count,
                                    enqueued_at: now,
                                    visible_at: None,
                                    dead_letter_source,
                                }],
                            },
                            Record::Delete {
                                queue_uid: m.source_uid,
                                seqs: vec![m.source_seq],
                            },
                        ]
                    })
                    .detach();
                }
                (Ok(_), _) => {}
                (Err(e), _) => {
                    tracing::error!(queue = %m.target, error = %e, "dead-letter enqueue refused");
                }
            }
            // Placed and logged: a checkpoint finds it in its new queue now.
            self.departed(m.source_uid, m.source_seq, arrived);
            moves.extend(more);
        }
    }
}

impl Hub {
    /// A message moved out of queue `uid` arrived where it was going
    /// (`dest`: that queue and its sequence number there).
    pub(crate) fn departed(&self, uid: u64, seq: u64, dest: Option<(u64, u64)>) {
        if let Some(q) = self.inner.by_uid.get(&uid).map(|q| q.clone()) {
            let mut g = q.lock();
            g.engine.departed(seq);
            // While a checkpoint runs, remember where it went (see `capture`).
            if let (Some(dest), Some(moved)) = (
                dest,
                self.inner
                    .moved
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_mut(),
            ) {
                moved.insert((uid, seq), dest);
            }
        }
    }
}

/// A parked receive. Giving up (or being dropped) closes the channel first,
/// then takes anything handed over in the meantime: a message leased to a
/// receive that went away is never stranded in flight.
struct Parked<'a> {
    hub: &'a Hub,
    queue: &'a QueueHandle,
    rx: Option<tokio::sync::oneshot::Receiver<Handoff>>,
}

impl Parked<'_> {
    fn give_up(&mut self) -> Handoff {
        match self.rx.take() {
            Some(mut rx) => {
                rx.close();
                rx.try_recv().unwrap_or_default()
            }
            None => Handoff::default(),
        }
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        let got = self.give_up().got;
        if !got.is_empty() {
            self.hub.release(self.queue, &got);
        }
    }
}

impl Hub {
    /// Undoes leases that never reached a consumer and hands the messages to
    /// the next waiter at once.
    fn release(&self, q: &QueueHandle, got: &[engine::Delivery]) {
        let ((), moves) = q.with(self.now(), |g| g.engine.release(got));
        self.forward_dead_letters(moves);
    }
}

/// Undoes leases that were never handed out (see `Hub::receive`).
struct ReleaseOnDrop {
    hub: Hub,
    queue: Arc<QueueHandle>,
    deliveries: Option<Vec<engine::Delivery>>,
}

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        if let Some(d) = self.deliveries.take() {
            if !d.is_empty() {
                self.hub.release(&self.queue, &d);
            }
        }
    }
}

/// Leased messages whose receive counts are on their way to disk (see
/// [`Hub::lease_on`]). Dropped before [`durable`](Self::durable) completes,
/// the leases are undone: nothing counts as received.
pub(crate) struct Leased {
    got: Vec<Delivery>,
    commit: LeaseCommit,
    guard: ReleaseOnDrop,
}

/// Where a lease's receive counts are logged.
enum LeaseCommit {
    /// By the receive itself.
    Own(Commit),
    /// By the enqueue that handed the messages over (its commit comes here).
    Handed(tokio::sync::oneshot::Receiver<Commit>),
}

impl Leased {
    pub(crate) fn is_empty(&self) -> bool {
        self.got.is_empty()
    }

    /// Whether a poison pill is among them.
    pub(crate) fn has_poison(&self) -> bool {
        self.got.iter().any(|d| d.message.poison)
    }

    pub(crate) fn receipts(&self) -> impl Iterator<Item = Receipt> + '_ {
        self.got.iter().map(|d| d.receipt)
    }

    /// The messages, once their receive counts are durable; if the log
    /// fails, the leases are undone and the error returned.
    pub(crate) async fn durable(mut self) -> Result<Vec<Delivery>, HubError> {
        match &mut self.commit {
            LeaseCommit::Own(c) => c.await?,
            LeaseCommit::Handed(rx) => match rx.await {
                Ok(c) => c.await?,
                // The enqueue failed before it could log them.
                Err(_) => return Err(crate::storage::StorageError::Closed.into()),
            },
        }
        self.guard.deliveries = None;
        Ok(std::mem::take(&mut self.got))
    }
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests;
