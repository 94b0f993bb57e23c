//! Backlogs larger than memory: queues hold a message in memory only while
//! it is likely to be delivered soon; the rest is a disk location
//! ([`MsgRef::Disk`]) read back when a consumer receives it.
//!
//! - The log writer tells each message where it landed (`MessageData::loc`).
//! - The pager (one task) watches the bytes queues hold in memory; above the
//!   budget (`--message-cache-bytes`) it swaps written messages for their
//!   location, largest queues first, a bounded slice per lock.
//! - A receive resolves disk locations outside the queue lock
//!   ([`Hub::resolve`]).
//!
//! With `--memory` nothing is written, so nothing is paged.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::{Hub, HubError, QueueHandle};
use crate::model::{MessageData, Millis, MsgRef, QueueName};
use crate::queue::{self, Receipt};

/// How often the pager looks at the budget.
const PAGER_TICK: Duration = Duration::from_millis(50);
/// Entries swapped per lock hold, so a deep queue is never held for long.
const PAGE_STEP: usize = 4096;

/// A received message, ready to hand out.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub receipt: Receipt,
    pub message: Arc<MessageData>,
    pub seq: u64,
    pub receive_count: u32,
    pub first_received_at: Millis,
    pub group_id: Option<Arc<str>>,
    pub dead_letter_source: Option<QueueName>,
}

impl Delivery {
    /// The engine's view of this lease (to undo it).
    pub(crate) fn lease(&self) -> queue::Delivery {
        queue::Delivery {
            receipt: self.receipt,
            message: MsgRef::Mem(self.message.clone()),
            seq: self.seq,
            receive_count: self.receive_count,
            first_received_at: self.first_received_at,
            group_id: self.group_id.clone(),
            dead_letter_source: self.dead_letter_source.clone(),
        }
    }
}

impl Hub {
    /// Reads a message held by location. Blocking (a positioned read, from
    /// the page cache unless the backlog outgrew it).
    pub(crate) fn load(&self, m: &MsgRef) -> Result<Arc<MessageData>, HubError> {
        match m {
            MsgRef::Mem(m) => Ok(m.clone()),
            MsgRef::Disk(loc) => self.storage().read(*loc).map_err(HubError::from),
        }
    }

    /// Turns leased messages into deliveries, reading those held by
    /// location. Any that cannot be read are answered back (their leases
    /// undone) and logged; an error only if none could be read.
    pub(crate) fn resolve(
        &self,
        q: &QueueHandle,
        got: Vec<queue::Delivery>,
    ) -> Result<Vec<Delivery>, HubError> {
        let mut out = Vec::with_capacity(got.len());
        let mut failed = Vec::new();
        let mut first_err = None;
        for d in got {
            // Compaction may have moved the message since it was leased (and
            // a later checkpoint dropped its old segment): read where the
            // queue holds it now.
            let loaded = self.load(&d.message).or_else(|e| {
                let now = q.lock().engine.entry_at(d.seq).map(|x| x.message);
                match now {
                    Some(m) if m.loc() != d.message.loc() => self.load(&m),
                    _ => Err(e),
                }
            });
            match loaded {
                Ok(message) => out.push(Delivery {
                    receipt: d.receipt,
                    message,
                    seq: d.seq,
                    receive_count: d.receive_count,
                    first_received_at: d.first_received_at,
                    group_id: d.group_id,
                    dead_letter_source: d.dead_letter_source,
                }),
                Err(e) => {
                    tracing::error!(queue = %q.name(), seq = d.seq, error = %e,
                        "cannot read a stored message");
                    first_err.get_or_insert(e);
                    failed.push(d);
                }
            }
        }
        if !failed.is_empty() {
            self.release(q, &failed);
        }
        match first_err {
            Some(e) if out.is_empty() => Err(e),
            _ => Ok(out),
        }
    }

    /// Every message a queue holds, in sequence order, with its receive
    /// count (read back from the log where paged out). For tests and tools:
    /// it reads the whole queue.
    pub fn stored_messages(
        &self,
        queue: &QueueName,
    ) -> Result<Vec<(u64, Arc<MessageData>, u32)>, HubError> {
        let held = self.queue(queue)?.lock().engine.snapshot();
        held.into_iter()
            .map(|(seq, m, count)| Ok((seq, self.load(&m)?, count)))
            .collect()
    }

    /// Bytes of messages all queues hold in memory (as of their last change).
    pub fn resident_bytes(&self) -> u64 {
        self.inner
            .queues
            .iter()
            .map(|q| q.resident.load(Ordering::Relaxed))
            .sum()
    }

    /// One pager pass: while queues hold more than the budget, swap written
    /// messages for their location, largest queues first, down to half the
    /// budget. Answers the bytes freed.
    pub fn page_out(&self) -> u64 {
        let budget = self.inner.limits.message_cache_bytes;
        let total = self.resident_bytes();
        if total <= budget {
            return 0;
        }
        let mut excess = total - budget / 2;
        let mut queues: Vec<(u64, Arc<QueueHandle>)> = self
            .inner
            .queues
            .iter()
            .map(|q| (q.resident.load(Ordering::Relaxed), q.clone()))
            .filter(|(r, _)| *r > 0)
            .collect();
        queues.sort_unstable_by_key(|q| std::cmp::Reverse(q.0));
        let mut freed = 0;
        for (resident, q) in queues {
            if excess == 0 {
                break;
            }
            let target = resident.saturating_sub(excess);
            loop {
                let (n, left) = {
                    let mut g = q.lock();
                    let n = g.engine.page_out(target, PAGE_STEP);
                    let left = g.engine.resident_bytes();
                    q.resident.store(left, Ordering::Relaxed);
                    (n, left)
                };
                freed += n;
                excess = excess.saturating_sub(n);
                if n == 0 || left <= target {
                    break;
                }
            }
        }
        freed
    }

    /// Runs the pager until the hub is gone (durable hubs only).
    pub fn spawn_pager(&self) {
        if !self.inner.durable {
            return;
        }
        let weak = self.downgrade();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PAGER_TICK).await;
                let Some(hub) = Hub::upgrade(&weak) else {
                    return;
                };
                let freed = tokio::task::spawn_blocking(move || hub.page_out())
                    .await
                    .unwrap_or(0);
                if freed > 0 {
                    tracing::debug!(freed, "paged messages out to the log");
                }
            }
        });
    }
}
