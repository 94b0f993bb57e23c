//! [`QueueHandle`]: one queue engine behind a short `std::sync::Mutex`, with
//! its long-poll waiters and the timer task that applies its deadlines.
//!
//! Waiters are a FIFO of one-shot channels: an enqueue (or a delay ending)
//! hands messages straight to the oldest waiter, so waiters are served in
//! arrival order and an idle waiter costs a parked future, not CPU. A waiter
//! that has gone away is skipped; if it left between the lease and the
//! hand-off, the lease is undone without counting a receive.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{oneshot, Notify};

use crate::model::{Clock, Millis, QueueName};
use crate::queue::{DeadLetterMove, Delivery, QueueState};
use crate::storage::Commit;
// The engine-level delivery: a message reference, resolved by the hub.

/// A parked long-poll receive.
pub(crate) struct Waiter {
    pub max: usize,
    pub visibility_ms: Option<Millis>,
    pub tx: oneshot::Sender<Handoff>,
}

/// Messages handed to a parked receive.
#[derive(Default)]
pub(crate) struct Handoff {
    pub got: Vec<Delivery>,
    /// `Some` when the enqueue that handed them over logs their receive
    /// counts itself, in the same write as the messages (one disk sync
    /// before delivery instead of two): the commit to wait on comes here.
    /// `None`: the receiver logs them. A receiver that gives up in the same
    /// instant has its leases undone, but the logged counts stay: after a
    /// restart such a message may show one receive more than it had
    /// (receive counts are approximate in SQS too).
    pub logged: Option<oneshot::Receiver<Commit>>,
}

/// Receive counts an enqueue logs for the waiters it served (see
/// [`Handoff::logged`]): the entries, and where to send each commit.
#[derive(Default)]
pub(crate) struct Handed {
    pub entries: Vec<(u64, u32, Millis)>,
    pub commits: Vec<oneshot::Sender<Commit>>,
}

/// State behind the queue's lock.
pub(crate) struct QueueInner {
    pub engine: QueueState,
    /// Parked receives, oldest first. Bounded by `Limits::max_waiters_per_queue`
    /// (overflow: the new receive is refused with 429 `Throttled`).
    pub waiters: VecDeque<Waiter>,
    /// The engine's next deadline as of the last operation: `tick` has
    /// nothing to do before it.
    pub next_due: Millis,
}

impl QueueInner {
    /// Hands visible messages to waiters, oldest first. With `handed`, the
    /// caller logs their receive counts (and sends each waiter its commit).
    pub fn serve_waiters(&mut self, now: Millis, mut handed: Option<&mut Handed>) {
        while self.engine.has_visible() {
            let Some(w) = self.waiters.pop_front() else {
                break;
            };
            if w.tx.is_closed() {
                continue;
            }
            let got = self.engine.receive(w.max, w.visibility_ms, now);
            if got.is_empty() {
                self.waiters.push_front(w);
                break;
            }
            let entries: Vec<(u64, u32, Millis)> = match handed {
                Some(_) => got
                    .iter()
                    .map(|d| (d.seq, d.receive_count, d.first_received_at))
                    .collect(),
                None => Vec::new(),
            };
            let (logged, commit_tx) = match handed {
                Some(_) => {
                    let (tx, rx) = oneshot::channel();
                    (Some(rx), Some(tx))
                }
                None => (None, None),
            };
            match w.tx.send(Handoff { got, logged }) {
                Ok(()) => {
                    if let (Some(h), Some(tx)) = (handed.as_deref_mut(), commit_tx) {
                        h.entries.extend(entries);
                        h.commits.push(tx);
                    }
                }
                Err(back) => self.engine.release(&back.got),
            }
        }
    }

    /// Drops waiters that gave up, so a stream of timed-out polls on an empty
    /// queue cannot grow the list.
    pub fn prune_waiters(&mut self) {
        self.waiters.retain(|w| !w.tx.is_closed());
    }
}

/// The front door to one queue. Cheap to share (`Arc`).
pub struct QueueHandle {
    pub(crate) name: QueueName,
    pub(crate) uid: u64,
    pub(crate) inner: Mutex<QueueInner>,
    /// Set once the queue is deleted; the timer task exits and new operations
    /// answer `QueueNotFound`.
    pub(crate) deleted: AtomicBool,
    /// Wakes the timer task when a deadline earlier than `timer_due` appears,
    /// or on deletion.
    pub(crate) timer_wake: Notify,
    /// The deadline the timer task sleeps until (`u64::MAX`: none).
    pub(crate) timer_due: AtomicU64,
    /// Created for one WebSocket connection (listed with `"temporary": true`).
    pub(crate) temporary: AtomicBool,
    /// Copies of settings the publish path checks before taking any lock, so
    /// fan-out can refuse a too-large message before enqueueing anywhere.
    pub(crate) fifo: bool,
    pub(crate) max_message_bytes: AtomicU32,
    /// The visibility timeout in ms (push consumers count credit with it).
    pub(crate) visibility_ms: AtomicU64,
    pub(crate) retention_seconds: AtomicU32,
    /// Bytes of messages the engine holds in memory, as of its last change
    /// (the pager reads it without locking).
    pub(crate) resident: AtomicU64,
}

impl QueueHandle {
    pub(crate) fn new(engine: QueueState) -> Arc<Self> {
        let s = engine.settings().clone();
        let (fifo, max_bytes, retention) = (s.fifo, s.max_message_bytes, s.retention_seconds);
        Arc::new(Self {
            fifo,
            max_message_bytes: AtomicU32::new(max_bytes),
            visibility_ms: AtomicU64::new(s.visibility_ms()),
            retention_seconds: AtomicU32::new(retention),
            temporary: AtomicBool::new(false),
            resident: AtomicU64::new(engine.resident_bytes()),
            name: engine.name().clone(),
            uid: engine.uid(),
            inner: Mutex::new(QueueInner {
                engine,
                waiters: VecDeque::new(),
                next_due: 0,
            }),
            deleted: AtomicBool::new(false),
            timer_wake: Notify::new(),
            timer_due: AtomicU64::new(u64::MAX),
        })
    }

    pub fn name(&self) -> &QueueName {
        &self.name
    }

    /// The incarnation id receipts and log records name.
    pub fn uid(&self) -> u64 {
        self.uid
    }

    /// The queue's visibility timeout in milliseconds.
    pub fn visibility_ms(&self) -> Millis {
        self.visibility_ms.load(Ordering::Relaxed)
    }

    /// Created for a WebSocket topic subscription.
    pub fn is_temporary(&self) -> bool {
        self.temporary.load(Ordering::Relaxed)
    }

    pub fn is_fifo(&self) -> bool {
        self.fifo
    }

    /// Applies new settings (the hub has validated them).
    pub(crate) fn update_settings(
        &self,
        now: Millis,
        settings: crate::model::QueueSettings,
    ) -> Vec<DeadLetterMove> {
        self.max_message_bytes
            .store(settings.max_message_bytes, Ordering::Relaxed);
        self.retention_seconds
            .store(settings.retention_seconds, Ordering::Relaxed);
        self.visibility_ms
            .store(settings.visibility_ms(), Ordering::Relaxed);
        let ((), moves) = self.with(now, |g| g.engine.update_settings(settings));
        moves
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    /// Locks the queue. A poisoned lock means a panic inside the engine, which
    /// is a bug; the state is still consistent enough to keep serving.
    pub(crate) fn lock(&self) -> MutexGuard<'_, QueueInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` with time applied up to `now`, then serves waiters and nudges
    /// the timer task if the next deadline moved earlier. Returns `f`'s result
    /// and the dead-letter moves that time produced (the caller forwards them
    /// outside the lock).
    pub(crate) fn with<R>(
        &self,
        now: Millis,
        f: impl FnOnce(&mut QueueInner) -> R,
    ) -> (R, Vec<DeadLetterMove>) {
        self.with_inner(now, true, None, f)
    }

    /// [`with`](Self::with) for an enqueue that logs what it stores: the
    /// receive counts of messages handed to waiters go into `handed`, for
    /// the caller to log with the messages.
    pub(crate) fn with_handing<R>(
        &self,
        now: Millis,
        handed: &mut Handed,
        f: impl FnOnce(&mut QueueInner) -> R,
    ) -> (R, Vec<DeadLetterMove>) {
        self.with_inner(now, true, Some(handed), f)
    }

    /// `with`, optionally without waking the timer task (the timer task
    /// itself must not wake itself, or it would spin).
    fn with_inner<R>(
        &self,
        now: Millis,
        wake_timer: bool,
        handed: Option<&mut Handed>,
        f: impl FnOnce(&mut QueueInner) -> R,
    ) -> (R, Vec<DeadLetterMove>) {
        let mut g = self.lock();
        // Nothing is due before `next_due`: skip the tick (it runs on every
        // operation, so fan-out to thousands of queues pays it thousands of times).
        let dead_letters = if now >= g.next_due {
            g.engine.tick(now).dead_letters
        } else {
            Vec::new()
        };
        let r = f(&mut g);
        g.serve_waiters(now, handed);
        let next = g.engine.next_deadline().unwrap_or(u64::MAX);
        g.next_due = next;
        self.resident
            .store(g.engine.resident_bytes(), Ordering::Relaxed);
        drop(g);
        if wake_timer && next < self.timer_due.load(Ordering::Acquire) {
            self.timer_wake.notify_one();
        }
        (r, dead_letters)
    }

    /// Marks the queue deleted and releases everything waiting on it.
    pub(crate) fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::Release);
        let waiters = std::mem::take(&mut self.lock().waiters);
        drop(waiters);
        self.timer_wake.notify_one();
    }
}

/// Applies a queue's deadlines as they fall due; one task per queue, never
/// one per message. Exits when the queue is deleted or the hub is gone.
pub(crate) async fn run_timer(
    queue: Arc<QueueHandle>,
    clock: Arc<dyn Clock>,
    on_dead_letters: impl Fn(Vec<DeadLetterMove>) + Send + 'static,
) {
    loop {
        if queue.is_deleted() {
            return;
        }
        // While this runs, any operation that sets a deadline wakes the
        // timer again (nothing is earlier than MAX), so none is missed
        // between the tick below and the store of the next deadline.
        queue.timer_due.store(u64::MAX, Ordering::Release);
        let now = clock.now_ms();
        let ((), moves) = queue.with_inner(now, false, None, |_| ());
        // `with` leaves the next deadline in `next_due` (after serving
        // waiters, whose leases add deadlines).
        let next = queue.lock().next_due;
        queue.timer_due.store(next, Ordering::Release);
        if !moves.is_empty() {
            on_dead_letters(moves);
        }
        // Deadlines far away still get a periodic look so a clock jump cannot
        // strand messages for long.
        let wait = next.saturating_sub(clock.now_ms()).min(60_000);
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(wait)) => {}
            () = queue.timer_wake.notified() => {}
        }
    }
}
