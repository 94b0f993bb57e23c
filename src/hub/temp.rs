//! Temporary queues: one per WebSocket topic subscription. Created and
//! subscribed to the topic on `subscribe`; detached when the connection goes;
//! re-attached by a resume token within the resume window; deleted after it.
//! Receipts that name no queue (WebSocket acks) are routed here by uid.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

use super::{Hub, HubError, QueueHandle};
use crate::model::{QueueName, QueueSettingsPatch, TopicName};
use crate::queue::{Receipt, ReceiptError};

/// How often detached temporary queues are checked against the window.
const REAP_EVERY: Duration = Duration::from_secs(1);

impl Hub {
    /// Creates a temporary queue subscribed to `topic` (FIFO when the topic
    /// is), attached to the caller. Its name is also the resume token.
    pub async fn create_temp_queue(
        &self,
        topic: &TopicName,
        filter: Option<serde_json::Value>,
    ) -> Result<QueueName, HubError> {
        let t = self.topic(topic)?;
        if let Some(f) = &filter {
            super::filter::FilterPolicy::parse(f).map_err(|e| HubError::InvalidSetting(e.0))?;
        }
        let fifo = t.settings().fifo;
        let token: u128 = rand::thread_rng().gen();
        let prefix: String = topic.as_str().chars().take(40).collect();
        let name = QueueName::new(&format!("ws-{prefix}-{token:032x}"))?;
        let patch = QueueSettingsPatch {
            fifo: Some(fifo),
            content_based_dedup: Some(fifo),
            ..QueueSettingsPatch::default()
        };
        let (_, c1) = self.put_queue_now(&name, &patch, true)?;
        self.inner.temps.remove(&name);
        self.inner.attached.insert(name.clone(), 1);
        match self.subscribe_now(topic, &name, filter) {
            Ok((_, c2)) => {
                c1.await?;
                c2.await?;
                Ok(name)
            }
            Err(e) => {
                if let Ok(c) = self.delete_queue_now(&name) {
                    c.detach();
                }
                Err(e)
            }
        }
    }

    /// Attaches a temporary queue to one more connection (a resume; the
    /// token was checked by the caller). A resume while an old connection
    /// still holds the queue (a drop the server has not noticed yet) takes
    /// over: both consume until the old one goes, then its unacked messages
    /// come back at once.
    pub fn attach_temp_queue(&self, name: &QueueName) -> Result<Arc<QueueHandle>, HubError> {
        let _temp = self.temp_lock();
        let q = self.queue(name).map_err(|_| HubError::ResumeExpired)?;
        if !q.temporary.load(Ordering::Relaxed) {
            return Err(HubError::ResumeExpired);
        }
        *self.inner.attached.entry(name.clone()).or_insert(0) += 1;
        self.inner.temps.remove(name);
        Ok(q)
    }

    /// One connection let go of a temporary queue; when none holds it, the
    /// resume window starts.
    pub fn detach_temp_queue(&self, name: &QueueName) {
        let _temp = self.temp_lock();
        let left = match self.inner.attached.get_mut(name) {
            Some(mut n) => {
                *n = n.saturating_sub(1);
                *n
            }
            None => 0,
        };
        if left == 0 {
            self.inner.attached.remove(name);
            if self.inner.queues.contains_key(name) {
                self.inner.temps.insert(name.clone(), self.now());
            }
        }
    }

    /// Serialises attach, detach and the reaper's decision, so a resume and
    /// an expiry of the same queue cannot both win.
    fn temp_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.inner
            .temp_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Deletes a temporary queue at once (explicit unsubscribe). A queue
    /// that is already gone is fine.
    pub async fn drop_temp_queue(&self, name: &QueueName) -> Result<(), HubError> {
        let commits = {
            let _temp = self.temp_lock();
            self.drop_temp_queue_now(name)
        };
        match commits {
            Ok(cs) => {
                for c in cs {
                    c.await?;
                }
                Ok(())
            }
            Err(HubError::QueueNotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Unsubscribes and deletes a temporary queue; the commits to await.
    fn drop_temp_queue_now(
        &self,
        name: &QueueName,
    ) -> Result<Vec<crate::storage::Commit>, HubError> {
        let mut commits = Vec::new();
        for t in self.subscribed_topics(name) {
            match self.unsubscribe_now(&t, name) {
                Ok(c) => commits.push(c),
                Err(HubError::SubscriptionNotFound { .. } | HubError::TopicNotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        commits.push(self.delete_queue_now(name)?);
        self.inner.attached.remove(name);
        Ok(commits)
    }

    /// Deletes detached temporary queues older than `window`; runs until the
    /// hub is gone.
    pub fn spawn_temp_reaper(&self, window: Duration) {
        let weak = self.downgrade();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(REAP_EVERY).await;
                let Some(hub) = Hub::upgrade(&weak) else {
                    return;
                };
                let now = hub.now();
                let old: Vec<QueueName> = hub
                    .inner
                    .temps
                    .iter()
                    .filter(|e| now.saturating_sub(*e.value()) >= window.as_millis() as u64)
                    .map(|e| e.key().clone())
                    .collect();
                for name in old {
                    // Decide and delete under the temp lock (all synchronous):
                    // a resume either attached before (then nothing is
                    // reaped) or finds the queue gone (ResumeExpired).
                    let commits = {
                        let _temp = hub.temp_lock();
                        let still_detached = hub.inner.attached.get(&name).is_none_or(|n| *n == 0);
                        if !still_detached || hub.inner.temps.remove(&name).is_none() {
                            continue;
                        }
                        hub.drop_temp_queue_now(&name)
                    };
                    match commits {
                        Ok(cs) => {
                            for c in cs {
                                let _ = c.await;
                            }
                            tracing::info!(queue = %name, "temporary queue expired");
                        }
                        Err(e) => {
                            tracing::warn!(queue = %name, error = %e, "temporary queue not reaped");
                        }
                    }
                }
            }
        });
    }

    /// The queue a receipt belongs to, by the incarnation id it names.
    pub fn queue_by_uid(&self, uid: u64) -> Option<Arc<QueueHandle>> {
        self.inner.by_uid.get(&uid).map(|q| q.clone())
    }

    /// Acks receipts of any queues (WebSocket acks name no queue).
    pub async fn ack_any(&self, receipts: &[Receipt]) -> Vec<Result<(), ReceiptError>> {
        let (out, commits) = self.ack_any_now(receipts);
        for c in commits {
            if c.await.is_err() {
                return vec![Err(ReceiptError::Invalid); receipts.len()];
            }
        }
        out
    }

    /// Acks in memory now; every commit must complete before answering.
    pub fn ack_any_now(
        &self,
        receipts: &[Receipt],
    ) -> (Vec<Result<(), ReceiptError>>, Vec<crate::storage::Commit>) {
        let mut out = vec![Err(ReceiptError::Invalid); receipts.len()];
        let mut commits = Vec::new();
        for (name, idx) in self.group_by_queue(receipts) {
            let rs: Vec<Receipt> = idx.iter().map(|i| receipts[*i]).collect();
            if let Ok((results, commit)) = self.ack_now(&name, &rs) {
                commits.push(commit);
                for (i, r) in idx.into_iter().zip(results) {
                    out[i] = r;
                }
            }
        }
        (out, commits)
    }

    /// Nacks receipts of any queues.
    pub fn nack_any(
        &self,
        receipts: &[Receipt],
        delay_seconds: Option<u32>,
    ) -> Result<Vec<Result<(), ReceiptError>>, HubError> {
        let mut out = vec![Err(ReceiptError::Invalid); receipts.len()];
        for (name, idx) in self.group_by_queue(receipts) {
            let rs: Vec<Receipt> = idx.iter().map(|i| receipts[*i]).collect();
            if let Ok(results) = self.nack(&name, &rs, delay_seconds) {
                for (i, r) in idx.into_iter().zip(results) {
                    out[i] = r;
                }
            }
        }
        Ok(out)
    }

    fn group_by_queue(&self, receipts: &[Receipt]) -> Vec<(QueueName, Vec<usize>)> {
        let mut groups: Vec<(u64, QueueName, Vec<usize>)> = Vec::new();
        for (i, r) in receipts.iter().enumerate() {
            if let Some(g) = groups.iter_mut().find(|g| g.0 == r.queue_uid) {
                g.2.push(i);
            } else if let Some(q) = self.queue_by_uid(r.queue_uid) {
                groups.push((r.queue_uid, q.name().clone(), vec![i]));
            }
        }
        groups.into_iter().map(|(_, n, i)| (n, i)).collect()
    }

    /// Makes leased messages visible again at once (a push consumer left or
    /// unsubscribed): no backoff, no dead-lettering, the receive still counts.
    pub fn return_now(&self, receipts: &[Receipt]) {
        let now = self.now();
        for (name, idx) in self.group_by_queue(receipts) {
            if let Ok(q) = self.queue(&name) {
                let rs: Vec<Receipt> = idx.iter().map(|i| receipts[*i]).collect();
                let ((), moves) = q.with(now, |g| g.engine.return_now(&rs));
                self.forward_dead_letters(moves);
            }
        }
    }
}
