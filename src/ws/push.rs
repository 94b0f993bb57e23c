//! One push subscription: a loop that long-polls its queue for as many
//! messages as it has credit (prefetch minus unacked), pushes them as
//! `message` frames, and parks while the client holds `prefetch` unacked.
//! A message whose visibility lapses stops counting against credit.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{mpsc, Notify};

use super::frames;
use super::Outbox;
use crate::api::receipt::ReceiptCodec;
use crate::auth::{Auth, AuthError, Principal, RateKind};
use crate::hub::{Hub, HubError, Leased, QueueHandle, ReceiveRequest, MAX_BATCH};
use crate::model::{Millis, QueueName};
use crate::queue::Receipt;

/// Receipts pushed and not yet acked or nacked, with their visibility deadline.
#[derive(Default)]
pub(crate) struct Outstanding {
    held: Mutex<HashMap<Receipt, Millis>>,
    /// Woken when credit comes back.
    freed: Notify,
}

impl Outstanding {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Receipt, Millis>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Unacked messages whose lease has not lapsed.
    fn live(&self, now: Millis) -> usize {
        let mut held = self.lock();
        held.retain(|_, until| *until > now);
        held.len()
    }

    fn next_lapse(&self) -> Option<Millis> {
        self.lock().values().copied().min()
    }

    pub(crate) fn remove_all(&self, receipts: &[Receipt]) {
        let mut held = self.lock();
        let before = held.len();
        for r in receipts {
            held.remove(r);
        }
        if held.len() != before {
            self.freed.notify_one();
        }
    }

    /// Everything held, emptied (on unsubscribe or disconnect).
    pub(crate) fn drain(&self) -> Vec<Receipt> {
        self.lock().drain().map(|(r, _)| r).collect()
    }
}

pub(crate) struct PushSub {
    pub hub: Hub,
    pub codec: ReceiptCodec,
    pub out: Outbox,
    pub sub: String,
    pub queue: QueueName,
    pub prefetch: u32,
    pub auto_ack: bool,
    pub outstanding: std::sync::Arc<Outstanding>,
    /// Each receive draws on the principal's receive rate; over it, the
    /// subscription waits (pushes slow down, nothing is refused).
    pub auth: std::sync::Arc<Auth>,
    pub principal: Principal,
}

impl PushSub {
    pub(crate) async fn run(self) {
        let reason = self.deliver().await;
        if let Some(reason) = reason {
            self.out.send(frames::end(&self.sub, reason));
        }
    }

    /// Pushes until the subscription ends; returns why (`None`: the
    /// connection is closing, there is no one to tell).
    ///
    /// Two loops in one task: `lease` takes batches from the queue as credit
    /// allows and hands their receive counts to the log; `push` sends each
    /// batch, in order, once its counts are durable. So the next batch is
    /// leased while this one's counts sync, and a consumer is not held to
    /// one disk sync per batch.
    async fn deliver(&self) -> Option<&'static str> {
        // The handle stays valid while the queue lives; a deleted queue says so.
        let Ok(queue) = self.hub.queue(&self.queue) else {
            return Some("queue deleted");
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let lease = self.lease(&queue, tx);
        let push = self.push(&queue, rx);
        tokio::pin!(lease, push);
        tokio::select! {
            // The push loop ends first only if the connection is closing;
            // batches still syncing are dropped with it, which undoes their
            // leases.
            reason = &mut push => reason,
            reason = &mut lease => {
                // Whatever was leased still goes out (up to a poison pill),
                // then the end.
                push.await.or(reason)
            }
        }
    }

    /// Leases batches while there is credit; each goes to `push` with its
    /// receive counts on their way to disk. Stops after a batch with a
    /// poison pill (the push loop ends the subscription there).
    async fn lease(
        &self,
        queue: &Arc<QueueHandle>,
        tx: mpsc::UnboundedSender<Box<Leased>>,
    ) -> Option<&'static str> {
        let mut shutdown = self.hub.shutdown_watch();
        loop {
            if *shutdown.borrow() {
                return Some("server shutting down");
            }
            let now = self.hub.now();
            let held = self.outstanding.live(now);
            let credit = (self.prefetch as usize).saturating_sub(held);
            if credit == 0 {
                // Wait for an ack, or for the earliest lease to lapse.
                let lapse = self
                    .outstanding
                    .next_lapse()
                    .map_or(1_000, |t| t.saturating_sub(now).max(1));
                tokio::select! {
                    () = self.outstanding.freed.notified() => {}
                    () = tokio::time::sleep(Duration::from_millis(lapse)) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            if let Err(AuthError::Throttled { retry_after, .. }) =
                self.auth.throttle(&self.principal, RateKind::Receive)
            {
                tokio::select! {
                    () = tokio::time::sleep(retry_after) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            let req = ReceiveRequest {
                max: Some(credit.min(MAX_BATCH) as u32),
                wait_seconds: Some(crate::hub::PARK_UNTIL_MESSAGE),
                visibility_timeout_seconds: None,
            };
            let leased = match self.hub.lease_on(queue, req).await {
                Ok(leased) => leased,
                Err(HubError::QueueNotFound(_)) => return Some("queue deleted"),
                Err(e) => {
                    tracing::warn!(queue = %self.queue, sub = %self.sub, error = %e,
                        "push receive failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            if leased.is_empty() {
                if queue.is_deleted() {
                    return Some("queue deleted");
                }
                continue;
            }
            {
                // Held until acked (auto-ack included), so a disconnect in
                // the middle of a batch gives everything back at once.
                let until = self.hub.now() + queue.visibility_ms();
                let mut held = self.outstanding.lock();
                for r in leased.receipts() {
                    held.insert(r, until);
                }
            }
            let poison = leased.has_poison();
            // Boxed: the channel's first block holds 32 slots, and an idle
            // subscription (thousands per server) should not pay for them.
            if tx.send(Box::new(leased)).is_err() || poison {
                // At a poison pill the push loop ends the subscription.
                return None;
            }
        }
    }

    /// Sends leased batches in order, each once its receive counts are
    /// durable.
    async fn push(
        &self,
        queue: &Arc<QueueHandle>,
        mut rx: mpsc::UnboundedReceiver<Box<Leased>>,
    ) -> Option<&'static str> {
        while let Some(leased) = rx.recv().await {
            let receipts: Vec<Receipt> = leased.receipts().collect();
            let got = match leased.durable().await {
                Ok(got) => got,
                Err(e) => {
                    // The leases were undone; they no longer count as credit.
                    tracing::warn!(queue = %self.queue, sub = %self.sub, error = %e,
                        "push receive failed; retrying");
                    self.outstanding.remove_all(&receipts);
                    // A failed log fails every lease at once: pace the retries,
                    // unless the server is going (then nothing is retried).
                    if !*self.hub.shutdown_watch().borrow() {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    continue;
                }
            };
            let mut poison = false;
            let mut acks = Vec::new();
            for d in &got {
                let text = frames::message(&self.sub, d, &self.codec);
                if !self.out.push(text).await {
                    // The connection is closing; what is held goes back visible.
                    return None;
                }
                if self.auto_ack {
                    acks.push(d.receipt);
                }
                if d.message.poison {
                    poison = true;
                    break;
                }
            }
            if !acks.is_empty() {
                let (_, commit) = self.hub.ack_on(queue, &acks);
                let _ = commit.await;
                self.outstanding.remove_all(&acks);
            }
            if poison {
                // Anything received after the poison pill goes back at once.
                let after: Vec<Receipt> = got
                    .iter()
                    .skip_while(|d| !d.message.poison)
                    .skip(1)
                    .map(|d| d.receipt)
                    .collect();
                self.outstanding.remove_all(&after);
                self.hub.return_now(&after);
                return Some("poison");
            }
        }
        None
    }
}
