//! [`TopicHandle`]: a topic's settings, its subscriptions and its counters.
//! The subscription list is an immutable `Arc<Vec<..>>` swapped on change, so
//! a publish takes a cheap snapshot and never holds a lock while fanning out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::model::{QueueName, TopicName, TopicSettings};
use crate::queue::DedupWindow;

use super::filter::FilterPolicy;

/// topic -> queue, with an optional filter.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub queue: QueueName,
    pub filter: Option<Arc<FilterPolicy>>,
    /// The policy as the user wrote it, for describe.
    pub filter_json: Option<Arc<serde_json::Value>>,
}

/// Counters of one topic.
#[derive(Debug, Default)]
pub struct TopicCounters {
    /// Publishes accepted (duplicates excluded).
    pub published: AtomicU64,
    /// Copies put into queues.
    pub delivered: AtomicU64,
    /// Publishes that matched no subscription.
    pub dropped: AtomicU64,
    /// Publishes recognised as duplicates by the topic's dedup window.
    pub deduplicated: AtomicU64,
}

/// A snapshot of [`TopicCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TopicStats {
    pub published: u64,
    pub delivered: u64,
    pub dropped: u64,
    pub deduplicated: u64,
}

/// The front door to one topic.
#[derive(Debug)]
pub struct TopicHandle {
    pub(crate) name: TopicName,
    pub(crate) settings: Mutex<TopicSettings>,
    pub(crate) subscriptions: Mutex<Arc<Vec<Subscription>>>,
    /// FIFO topics dedup their own publishes (as SNS FIFO does).
    pub(crate) dedup: Mutex<DedupWindow>,
    pub(crate) counters: TopicCounters,
}

impl TopicHandle {
    pub(crate) fn new(name: TopicName, settings: TopicSettings) -> Arc<Self> {
        Arc::new(Self {
            name,
            settings: Mutex::new(settings),
            subscriptions: Mutex::new(Arc::new(Vec::new())),
            dedup: Mutex::new(DedupWindow::default()),
            counters: TopicCounters::default(),
        })
    }

    pub fn name(&self) -> &TopicName {
        &self.name
    }

    pub fn settings(&self) -> TopicSettings {
        self.settings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The current subscriptions (a snapshot).
    pub fn subscriptions(&self) -> Arc<Vec<Subscription>> {
        self.subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn set_subscriptions(&self, subs: Vec<Subscription>) {
        *self.subscriptions.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(subs);
    }

    pub fn stats(&self) -> TopicStats {
        let c = &self.counters;
        TopicStats {
            published: c.published.load(Ordering::Relaxed),
            delivered: c.delivered.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            deduplicated: c.deduplicated.load(Ordering::Relaxed),
        }
    }
}
