//! [`QueueState`]: one queue's messages and every rule about them.
//!
//! Layout: `entries` holds each message's per-queue state by sequence number
//! (a chunked array, see `store.rs`; about 56 bytes per message, the body
//! itself either shared in memory or left on disk, see [`MsgRef`]).
//! Standard queues keep visible messages in `ready` (a min-heap of sequence
//! numbers, so a message given back goes out before later ones,
//! validated lazily on pop). FIFO queues keep one ordered list per group and a
//! list of groups that are ready (head visible, nothing in flight), so a
//! receive costs O(messages returned), never O(backlog). Every deadline (delay,
//! lease, backoff) sits in one heap with lazy deletion; retention uses the
//! arrival order, which is also sequence order: the lowest live entry.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::dedup::DedupWindow;
use super::receipt::{Receipt, ReceiptError};
use super::store::SeqStore;
use crate::model::{BodyLoc, MessageId, Millis, MsgRef, QueueName, QueueSettings};

/// How a message enters a queue.
#[derive(Debug, Clone, Default)]
pub struct EnqueueOptions {
    /// When it becomes visible; `None` applies the queue's delay.
    pub visible_at: Option<Millis>,
    /// FIFO group (required on FIFO queues, ignored on standard ones).
    pub group_id: Option<Arc<str>>,
    /// FIFO dedup id (required on FIFO queues unless `skip_dedup`).
    pub dedup_id: Option<Arc<str>>,
    /// Receive count carried over (dead-letter moves keep it).
    pub receive_count: u32,
    /// Set on messages moved here as dead letters.
    pub dead_letter_source: Option<QueueName>,
    /// Dead-letter moves and redrives are not deduplicated again.
    pub skip_dedup: bool,
}

/// What an enqueue did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnqueueOutcome {
    /// Stored under this sequence number.
    Enqueued { seq: u64 },
    /// A duplicate within the dedup window: nothing stored.
    Duplicate { first_id: MessageId },
}

/// Why the engine refused an enqueue (the hub validates first; this is defence).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EnqueueError {
    #[error("a FIFO queue needs a group_id")]
    GroupRequired,
    #[error("a FIFO queue needs a dedup_id or content-based deduplication")]
    DedupRequired,
}

/// One message handed to a consumer.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub receipt: Receipt,
    pub message: MsgRef,
    pub seq: u64,
    pub receive_count: u32,
    pub first_received_at: Millis,
    pub group_id: Option<Arc<str>>,
    pub dead_letter_source: Option<QueueName>,
}

/// A message leaving this queue for its dead-letter queue.
#[derive(Debug, Clone)]
pub struct DeadLetterMove {
    pub target: QueueName,
    pub source: QueueName,
    /// Where it was in the source queue (for the log's delete record).
    pub source_uid: u64,
    pub source_seq: u64,
    pub message: MsgRef,
    pub receive_count: u32,
    pub group_id: Option<Arc<str>>,
}

/// A message taken out of a dead-letter queue by redrive.
#[derive(Debug, Clone)]
pub struct RedriveItem {
    /// Its sequence number in the dead-letter queue.
    pub seq: u64,
    pub source: Option<QueueName>,
    pub message: MsgRef,
    pub group_id: Option<Arc<str>>,
}

/// How a recovered message is put back.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    pub receive_count: u32,
    pub first_received_at: Option<Millis>,
    pub enqueued_at: Millis,
    pub visible_at: Option<Millis>,
    pub group_id: Option<Arc<str>>,
    pub dead_letter_source: Option<QueueName>,
}

/// One stored message as a snapshot records it.
#[derive(Debug, Clone)]
pub struct SnapshotEntry {
    pub seq: u64,
    pub message: MsgRef,
    pub receive_count: u32,
    pub first_received_at: Option<Millis>,
    pub enqueued_at: Millis,
    pub visible_at: Option<Millis>,
    pub group_id: Option<Arc<str>>,
    pub dead_letter_source: Option<QueueName>,
}

/// What time passing did.
#[derive(Debug, Default)]
pub struct TickOutcome {
    pub dead_letters: Vec<DeadLetterMove>,
    pub expired: u64,
    /// Messages became visible: waiters may be served.
    pub became_visible: bool,
}

/// Running totals since the queue was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueTotals {
    pub sent: u64,
    pub received: u64,
    pub acked: u64,
    pub dead_lettered: u64,
    pub expired: u64,
    pub purged: u64,
    pub deduplicated: u64,
}

/// A snapshot for describe and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub visible: u64,
    pub delayed: u64,
    pub in_flight: u64,
    pub oldest_age_ms: Millis,
    pub totals: QueueTotals,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Invisible until the deadline (queue delay, nack delay, backoff).
    Delayed(Millis),
    /// Visible: may be received.
    Ready,
    /// Leased to a consumer until the deadline.
    InFlight(Millis),
}

const DELAYED: u8 = 0;
const READY: u8 = 1;
const IN_FLIGHT: u8 = 2;

/// One message in this queue. Kept small (a backlog is millions of these):
/// the state is a tag plus one deadline, rarely used fields sit in `extra`.
#[derive(Debug)]
struct Entry {
    msg: MsgRef,
    /// The deadline of `Delayed` and `InFlight`.
    deadline: Millis,
    enqueued_at: Millis,
    /// First receive time plus one; 0: never received.
    first_received: Millis,
    /// Also the lease number of the newest receipt.
    receive_count: u32,
    /// Bumped whenever a deadline is set, so older heap entries are ignored
    /// (together with the deadline itself, so wrapping is harmless).
    timer_gen: u16,
    tag: u8,
    extra: Option<Box<Extra>>,
}

#[derive(Debug, Default)]
struct Extra {
    /// FIFO only.
    group: Option<Arc<str>>,
    dead_letter_source: Option<QueueName>,
}

impl Entry {
    fn new(
        msg: MsgRef,
        enqueued_at: Millis,
        receive_count: u32,
        first_received_at: Option<Millis>,
        group: Option<Arc<str>>,
        dead_letter_source: Option<QueueName>,
    ) -> Self {
        let extra = (group.is_some() || dead_letter_source.is_some()).then(|| {
            Box::new(Extra {
                group,
                dead_letter_source,
            })
        });
        Self {
            msg,
            // Placeholder so `set_state` counts the first transition.
            deadline: 0,
            tag: DELAYED,
            enqueued_at,
            first_received: first_received_at.map_or(0, |t| t.saturating_add(1)),
            receive_count,
            timer_gen: 0,
            extra,
        }
    }

    fn state(&self) -> State {
        match self.tag {
            READY => State::Ready,
            IN_FLIGHT => State::InFlight(self.deadline),
            _ => State::Delayed(self.deadline),
        }
    }

    fn put_state(&mut self, s: State) {
        (self.tag, self.deadline) = match s {
            State::Delayed(t) => (DELAYED, t),
            State::Ready => (READY, 0),
            State::InFlight(t) => (IN_FLIGHT, t),
        };
    }

    fn group(&self) -> Option<&Arc<str>> {
        self.extra.as_ref().and_then(|x| x.group.as_ref())
    }

    fn dead_letter_source(&self) -> Option<&QueueName> {
        self.extra
            .as_ref()
            .and_then(|x| x.dead_letter_source.as_ref())
    }

    fn first_received_at(&self) -> Option<Millis> {
        self.first_received.checked_sub(1)
    }

    fn snapshot(&self, seq: u64) -> SnapshotEntry {
        SnapshotEntry {
            seq,
            message: self.msg.clone(),
            receive_count: self.receive_count,
            first_received_at: self.first_received_at(),
            visible_at: (self.tag == DELAYED).then_some(self.deadline),
            group_id: self.group().cloned(),
            dead_letter_source: self.dead_letter_source().cloned(),
            enqueued_at: self.enqueued_at,
        }
    }
}

#[derive(Debug, Default)]
struct Group {
    /// Sequence numbers in order, including those in flight.
    pending: VecDeque<u64>,
    in_flight: u32,
    /// Whether the group sits in `ready_groups` (possibly stale).
    queued: bool,
}

/// One queue's state. See the module comment for the layout.
#[derive(Debug)]
pub struct QueueState {
    name: QueueName,
    uid: u64,
    settings: QueueSettings,
    entries: SeqStore<Entry>,
    next_seq: u64,
    /// Standard: visible sequence numbers; may hold stale ones (checked on pop).
    ready: BinaryHeap<Reverse<u64>>,
    groups: FxHashMap<Arc<str>, Group>,
    ready_groups: VecDeque<Arc<str>>,
    timers: BinaryHeap<Reverse<(Millis, u64, u16)>>,
    dedup: DedupWindow,
    visible: u64,
    delayed: u64,
    in_flight: u64,
    totals: QueueTotals,
    /// Bytes of message data held in memory by `Mem` references.
    resident: u64,
    /// Paging: entries below this were already considered.
    page_cursor: u64,
    /// Messages handed out as dead-letter moves or redrives whose arrival
    /// the hub has not confirmed ([`departed`](Self::departed)). A
    /// checkpoint still counts them here, so a message in transit between
    /// two queues is never in neither.
    departing: Vec<SnapshotEntry>,
}

impl QueueState {
    /// An empty queue. `uid` names this incarnation in receipts.
    pub fn new(name: QueueName, uid: u64, settings: QueueSettings) -> Self {
        Self {
            name,
            uid,
            settings,
            entries: SeqStore::default(),
            next_seq: 1,
            ready: BinaryHeap::new(),
            groups: FxHashMap::default(),
            ready_groups: VecDeque::new(),
            timers: BinaryHeap::new(),
            dedup: DedupWindow::default(),
            visible: 0,
            delayed: 0,
            in_flight: 0,
            totals: QueueTotals::default(),
            resident: 0,
            page_cursor: 0,
            departing: Vec::new(),
        }
    }

    pub fn name(&self) -> &QueueName {
        &self.name
    }

    pub fn uid(&self) -> u64 {
        self.uid
    }

    pub fn settings(&self) -> &QueueSettings {
        &self.settings
    }

    pub fn is_fifo(&self) -> bool {
        self.settings.fifo
    }

    /// Replaces mutable settings. `fifo` never changes (the hub refuses it).
    /// New delays and timeouts apply to messages from now on.
    pub fn update_settings(&mut self, mut settings: QueueSettings) {
        settings.fifo = self.settings.fifo;
        self.settings = settings;
    }

    /// The sequence number the next enqueue gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Recovery: puts back a stored message under its original sequence
    /// number, in any order; then [`finish_restore`](Self::finish_restore).
    /// A sequence number already present is left as it is.
    /// Leases are not restored: a message in flight at the crash is visible.
    pub fn restore(&mut self, seq: u64, msg: MsgRef, r: RestoreOptions, now: Millis) {
        if self.entries.contains(seq) || seq == 0 {
            return;
        }
        self.next_seq = self.next_seq.max(seq + 1);
        let group = if self.settings.fifo {
            Some(r.group_id.unwrap_or_else(|| Arc::from("")))
        } else {
            None
        };
        let state = match r.visible_at {
            Some(t) if t > now => State::Delayed(t),
            _ => State::Ready,
        };
        self.resident += msg.resident_bytes();
        let first = r.first_received_at.filter(|_| r.receive_count > 0);
        let entry = Entry::new(
            msg,
            r.enqueued_at,
            r.receive_count,
            first,
            group.clone(),
            r.dead_letter_source,
        );
        if self.entries.insert(seq, entry).is_err() {
            return;
        }
        self.delayed += 1;
        if let Some(g) = group {
            // Records may replay slightly out of order: keep groups sorted.
            let pending = &mut self.groups.entry(g).or_default().pending;
            let at = pending.partition_point(|s| *s < seq);
            pending.insert(at, seq);
        }
        self.set_state(seq, state);
    }

    /// Recovery: a message the log says is gone (acked, moved, expired).
    pub fn restore_remove(&mut self, seq: u64) {
        self.remove_entry(seq);
    }

    /// Recovery: every message below `seq` was purged.
    pub fn restore_purge_below(&mut self, seq: u64) {
        while let Some((s, _)) = self.entries.first() {
            if s >= seq {
                break;
            }
            self.remove_entry(s);
        }
    }

    /// Recovery: a durable receive count; the highest seen wins. Answers
    /// whether the message is here.
    pub fn restore_received(&mut self, seq: u64, count: u32, first: Millis) -> bool {
        let Some(e) = self.entries.get_mut(seq) else {
            return false;
        };
        if count > e.receive_count {
            e.receive_count = count;
        }
        let first = first.saturating_add(1);
        if e.first_received == 0 || first < e.first_received {
            e.first_received = first;
        }
        true
    }

    /// Recovery: messages that used up their receives but whose move to the
    /// dead-letter queue was lost in a crash move now, before anyone can
    /// receive them again.
    pub fn take_exhausted(&mut self) -> Vec<DeadLetterMove> {
        let Some(dl) = self.settings.dead_letter.clone() else {
            return Vec::new();
        };
        let seqs: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, e)| e.receive_count >= dl.max_receives && e.tag != IN_FLIGHT)
            .map(|(s, _)| s)
            .collect();
        seqs.into_iter()
            .filter_map(|seq| {
                let e = self.depart(seq)?;
                self.totals.dead_lettered += 1;
                Some(DeadLetterMove {
                    target: dl.queue.clone(),
                    source: self.name.clone(),
                    source_uid: self.uid,
                    source_seq: seq,
                    receive_count: e.receive_count,
                    group_id: e.extra.and_then(|x| x.group),
                    message: e.msg,
                })
            })
            .collect()
    }

    /// Recovery: sequence numbers below `next_seq` are never reused, even of
    /// messages that are gone (their receipts must stay stale, not valid).
    pub fn finish_restore(&mut self, next_seq: u64) {
        self.next_seq = self.next_seq.max(next_seq);
    }

    /// Recovery: a dedup window entry.
    pub fn restore_dedup(&mut self, key: Arc<str>, id: MessageId, expires_at: Millis, now: Millis) {
        if expires_at > now {
            let window = expires_at - now;
            self.dedup.insert(key, id, now, window);
        }
    }

    /// The dedup window's live entries (for snapshots).
    pub fn dedup_entries(&self) -> Vec<(Arc<str>, MessageId, Millis)> {
        self.dedup
            .entries()
            .map(|(k, id, e)| (k.clone(), id, e))
            .collect()
    }

    /// Stored messages with what a snapshot needs: up to `max` from `from`
    /// on, in sequence order (a checkpoint takes a deep queue in slices so
    /// it never holds the lock for long).
    pub fn snapshot_entries(&self, from: u64, max: usize) -> Vec<SnapshotEntry> {
        let mut out = Vec::with_capacity(max.min(self.entries.len()));
        let mut at = from;
        while out.len() < max {
            let Some((seq, e)) = self.entries.next_from(at) else {
                break;
            };
            out.push(e.snapshot(seq));
            at = seq + 1;
        }
        out
    }

    /// Messages in transit out of this queue (see `departing`), as they
    /// were here.
    pub fn departing(&self) -> &[SnapshotEntry] {
        &self.departing
    }

    /// The hub placed a dead-letter move or redrive of `seq` (enqueued at
    /// its destination and logged): it no longer counts here.
    pub fn departed(&mut self, seq: u64) {
        if let Some(i) = self.departing.iter().position(|d| d.seq == seq) {
            self.departing.swap_remove(i);
        }
    }

    /// Takes an entry out to move it elsewhere, keeping it in `departing`.
    fn depart(&mut self, seq: u64) -> Option<Entry> {
        let snap = self.entries.get(seq)?.snapshot(seq);
        self.departing.push(snap);
        self.remove_entry(seq)
    }

    /// One stored message as a snapshot records it.
    pub fn entry_at(&self, seq: u64) -> Option<SnapshotEntry> {
        self.entries.get(seq).map(|e| e.snapshot(seq))
    }

    /// Points a stored message at another copy of its data, if it still
    /// refers to `expect` (compaction moved it). Answers whether it did.
    pub fn swap_message(&mut self, seq: u64, expect: BodyLoc, to: MsgRef) -> bool {
        let Some(e) = self.entries.get_mut(seq) else {
            return false;
        };
        if e.msg.loc() != Some(expect) {
            return false;
        }
        self.resident -= e.msg.resident_bytes();
        self.resident += to.resident_bytes();
        e.msg = to;
        true
    }

    /// Bytes of message data this queue holds in memory.
    pub fn resident_bytes(&self) -> u64 {
        self.resident
    }

    /// Swaps in-memory messages that are already on disk for their disk
    /// location, oldest first, until at most `target` bytes stay resident
    /// (or `max_steps` entries were looked at).
    /// Stops at the first message not yet written. Answers the bytes freed.
    /// Each message is looked at once (a cursor remembers where it stopped).
    pub fn page_out(&mut self, target: u64, max_steps: usize) -> u64 {
        let before = self.resident;
        let mut at = self
            .page_cursor
            .max(self.entries.first().map_or(0, |(s, _)| s));
        let mut steps = 0;
        while self.resident > target && steps < max_steps {
            steps += 1;
            let Some((seq, _)) = self.entries.next_from(at) else {
                break;
            };
            let Some(e) = self.entries.get_mut(seq) else {
                break;
            };
            if let MsgRef::Mem(m) = &e.msg {
                let Some(loc) = m.loc.get() else {
                    break;
                };
                self.resident -= m.resident_bytes();
                e.msg = MsgRef::Disk(loc);
            }
            at = seq + 1;
        }
        self.page_cursor = at;
        before - self.resident
    }

    /// Number of messages stored (any state).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether a receive now would return something (after `tick`).
    pub fn has_visible(&self) -> bool {
        self.visible > 0
    }

    /// The dedup id's first message, if seen within the window.
    pub fn dedup_lookup(&self, dedup_id: &str, now: Millis) -> Option<MessageId> {
        self.dedup.lookup(dedup_id, now)
    }

    /// Stores a message.
    pub fn enqueue(
        &mut self,
        msg: impl Into<MsgRef>,
        opts: EnqueueOptions,
        now: Millis,
    ) -> Result<EnqueueOutcome, EnqueueError> {
        let msg = msg.into();
        let group = if self.settings.fifo {
            let g = opts.group_id.ok_or(EnqueueError::GroupRequired)?;
            if !opts.skip_dedup {
                let d = opts.dedup_id.ok_or(EnqueueError::DedupRequired)?;
                if let Some(first_id) = self.dedup.lookup(&d, now) {
                    self.totals.deduplicated += 1;
                    return Ok(EnqueueOutcome::Duplicate { first_id });
                }
                // Only a message just published is deduplicated (in memory).
                if let Some(m) = msg.mem() {
                    self.dedup
                        .insert(d, m.id, now, self.settings.dedup_window_ms());
                }
            }
            Some(g)
        } else {
            None
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        let visible_at = opts
            .visible_at
            .unwrap_or_else(|| now.saturating_add(self.settings.delay_ms()));
        let state = if visible_at > now {
            State::Delayed(visible_at)
        } else {
            State::Ready
        };
        self.resident += msg.resident_bytes();
        let entry = Entry::new(
            msg,
            now,
            opts.receive_count,
            None,
            group.clone(),
            opts.dead_letter_source,
        );
        // `seq` is new: the slot is free.
        let _ = self.entries.insert(seq, entry);
        self.delayed += 1;
        if let Some(g) = group {
            self.groups.entry(g).or_default().pending.push_back(seq);
        }
        self.totals.sent += 1;
        self.set_state(seq, state);
        Ok(EnqueueOutcome::Enqueued { seq })
    }

    /// Leases up to `max` visible messages for `visibility_ms` (the queue's
    /// timeout when `None`). Call [`tick`](Self::tick) first.
    pub fn receive(
        &mut self,
        max: usize,
        visibility_ms: Option<Millis>,
        now: Millis,
    ) -> Vec<Delivery> {
        let vis = visibility_ms.unwrap_or_else(|| self.settings.visibility_ms());
        let mut out = Vec::with_capacity(max.min(self.visible as usize));
        if self.settings.fifo {
            while out.len() < max {
                let Some(key) = self.ready_groups.pop_front() else {
                    break;
                };
                let Some(g) = self.groups.get_mut(&key) else {
                    continue;
                };
                g.queued = false;
                if g.in_flight > 0 {
                    continue;
                }
                let room = max - out.len();
                let entries = &self.entries;
                let take: Vec<u64> = g
                    .pending
                    .iter()
                    .copied()
                    .take_while(|s| matches!(entries.get(*s), Some(e) if e.tag == READY))
                    .take(room)
                    .collect();
                for seq in take {
                    out.push(self.lease(seq, vis, now));
                }
            }
        } else {
            while out.len() < max {
                let Some(Reverse(seq)) = self.ready.pop() else {
                    break;
                };
                if matches!(self.entries.get(seq), Some(e) if e.tag == READY) {
                    out.push(self.lease(seq, vis, now));
                }
            }
        }
        out
    }

    /// Deletes a received message. Acking one that is already gone is fine.
    pub fn ack(&mut self, receipt: &Receipt) -> Result<(), ReceiptError> {
        match self.check_receipt(receipt)? {
            None => Ok(()),
            Some(seq) => {
                self.remove_entry(seq);
                self.totals.acked += 1;
                Ok(())
            }
        }
    }

    /// Gives a received message back: visible after `delay_ms` (an explicit
    /// delay wins over retry backoff), or to the dead-letter queue if it has
    /// been received `max_receives` times.
    pub fn nack(
        &mut self,
        receipt: &Receipt,
        delay_ms: Option<Millis>,
        now: Millis,
    ) -> Result<Option<DeadLetterMove>, ReceiptError> {
        let seq = self.check_receipt(receipt)?.ok_or(ReceiptError::Stale)?;
        Ok(self.return_message(seq, delay_ms, now))
    }

    /// Sets a received message's remaining hidden time to `ms` from now.
    pub fn change_visibility(
        &mut self,
        receipt: &Receipt,
        ms: Millis,
        now: Millis,
    ) -> Result<(), ReceiptError> {
        let seq = self.check_receipt(receipt)?.ok_or(ReceiptError::Stale)?;
        self.set_state(seq, State::InFlight(now.saturating_add(ms)));
        Ok(())
    }

    /// Undoes deliveries that never reached a consumer (a long-poll waiter left
    /// between the lease and the hand-off): no receive is counted.
    pub fn release(&mut self, deliveries: &[Delivery]) {
        for d in deliveries {
            let Some(e) = self.entries.get_mut(d.seq) else {
                continue;
            };
            if e.receive_count != d.receipt.lease || e.tag != IN_FLIGHT {
                continue;
            }
            e.receive_count -= 1;
            if e.receive_count == 0 {
                e.first_received = 0;
            }
            self.totals.received = self.totals.received.saturating_sub(1);
            self.set_state(d.seq, State::Ready);
        }
    }

    /// Makes leased messages visible again at once, without backoff or
    /// dead-lettering (a push consumer went away; the receive still counts).
    pub fn return_now(&mut self, receipts: &[Receipt]) {
        for r in receipts {
            if let Ok(Some(seq)) = self.check_receipt(r) {
                if matches!(self.entries.get(seq), Some(e) if e.tag == IN_FLIGHT) {
                    self.set_state(seq, State::Ready);
                }
            }
        }
    }

    /// Drops every message, in flight or not. Dedup history stays.
    pub fn purge(&mut self) -> u64 {
        let n = self.entries.len() as u64;
        self.entries.clear();
        self.ready.clear();
        self.groups.clear();
        self.ready_groups.clear();
        self.timers.clear();
        self.visible = 0;
        self.delayed = 0;
        self.in_flight = 0;
        self.resident = 0;
        self.totals.purged += n;
        n
    }

    /// Takes up to `max` messages that are not in flight and whose source
    /// queue `movable` accepts, oldest first, for a redrive back to their
    /// source queues.
    pub fn take_for_redrive(
        &mut self,
        max: usize,
        movable: impl Fn(&QueueName) -> bool,
    ) -> Vec<RedriveItem> {
        let mut picked = Vec::new();
        for (seq, e) in self.entries.iter() {
            if picked.len() >= max {
                break;
            }
            let idle = e.tag != IN_FLIGHT;
            if idle && e.dead_letter_source().is_some_and(&movable) {
                picked.push(seq);
            }
        }
        picked
            .into_iter()
            .filter_map(|seq| {
                let e = self.depart(seq)?;
                let extra = e.extra.map(|x| *x).unwrap_or_default();
                Some(RedriveItem {
                    seq,
                    source: extra.dead_letter_source,
                    message: e.msg,
                    group_id: extra.group,
                })
            })
            .collect()
    }

    /// Applies everything due at `now`: delays end, leases lapse (maybe into
    /// the dead-letter queue), retention drops old messages, dedup entries expire.
    pub fn tick(&mut self, now: Millis) -> TickOutcome {
        let mut out = TickOutcome::default();
        let retention = self.settings.retention_ms();
        while let Some((seq, e)) = self.entries.first() {
            if e.enqueued_at.saturating_add(retention) > now {
                break;
            }
            if self.remove_entry(seq).is_some() {
                self.totals.expired += 1;
                out.expired += 1;
            }
        }
        let visible_before = self.visible;
        while let Some(&Reverse((at, seq, gen))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(e) = self.entries.get(seq) else {
                continue;
            };
            if e.timer_gen != gen {
                continue;
            }
            match e.state() {
                State::Delayed(t) if t == at => self.set_state(seq, State::Ready),
                State::InFlight(t) if t == at => {
                    if let Some(m) = self.return_message(seq, None, now) {
                        out.dead_letters.push(m);
                    }
                }
                _ => {}
            }
        }
        out.became_visible = self.visible > visible_before;
        self.dedup.expire(now);
        out
    }

    /// The earliest moment `tick` has something to do.
    pub fn next_deadline(&self) -> Option<Millis> {
        let timer = self.timers.peek().map(|Reverse((at, _, _))| *at);
        let retention = self
            .entries
            .first()
            .map(|(_, e)| e.enqueued_at.saturating_add(self.settings.retention_ms()));
        [timer, retention, self.dedup.next_expiry()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Counters and the age of the oldest message.
    pub fn stats(&mut self, now: Millis) -> QueueStats {
        let oldest_age_ms = self
            .entries
            .first()
            .map(|(_, e)| now.saturating_sub(e.enqueued_at))
            .unwrap_or(0);
        QueueStats {
            visible: self.visible,
            delayed: self.delayed,
            in_flight: self.in_flight,
            oldest_age_ms,
            totals: self.totals,
        }
    }

    /// Every stored message in sequence order with its receive count; for
    /// tests and checkpoints.
    pub fn snapshot(&self) -> Vec<(u64, MsgRef, u32)> {
        self.entries
            .iter()
            .map(|(s, e)| (s, e.msg.clone(), e.receive_count))
            .collect()
    }

    // ---- internals ----

    /// `Ok(Some(seq))` for the current receipt of a stored message, `Ok(None)`
    /// for a message that is gone, errors otherwise.
    fn check_receipt(&self, r: &Receipt) -> Result<Option<u64>, ReceiptError> {
        if r.queue_uid != self.uid || r.seq == 0 || r.seq >= self.next_seq || r.lease == 0 {
            return Err(ReceiptError::Invalid);
        }
        match self.entries.get(r.seq) {
            None => Ok(None),
            Some(e) if e.receive_count == r.lease => Ok(Some(r.seq)),
            Some(e) if r.lease < e.receive_count => Err(ReceiptError::Stale),
            Some(_) => Err(ReceiptError::Invalid),
        }
    }

    fn lease(&mut self, seq: u64, vis: Millis, now: Millis) -> Delivery {
        let until = now.saturating_add(vis);
        self.set_state(seq, State::InFlight(until));
        self.totals.received += 1;
        let uid = self.uid;
        let e = self
            .entries
            .get_mut(seq)
            .expect("lease is called for stored messages only");
        e.receive_count += 1;
        if e.first_received == 0 {
            e.first_received = now.saturating_add(1);
        }
        Delivery {
            receipt: Receipt {
                queue_uid: uid,
                seq,
                lease: e.receive_count,
            },
            message: e.msg.clone(),
            seq,
            receive_count: e.receive_count,
            first_received_at: e.first_received - 1,
            group_id: e.group().cloned(),
            dead_letter_source: e.dead_letter_source().cloned(),
        }
    }

    /// A lease ended (nack or lapse): dead-letter, delay or make visible.
    fn return_message(
        &mut self,
        seq: u64,
        explicit_delay: Option<Millis>,
        now: Millis,
    ) -> Option<DeadLetterMove> {
        let receive_count = self.entries.get(seq)?.receive_count;
        if let Some(dl) = &self.settings.dead_letter {
            if receive_count >= dl.max_receives {
                let target = dl.queue.clone();
                let e = self.depart(seq)?;
                self.totals.dead_lettered += 1;
                return Some(DeadLetterMove {
                    target,
                    source: self.name.clone(),
                    source_uid: self.uid,
                    source_seq: seq,
                    receive_count: e.receive_count,
                    group_id: e.extra.and_then(|x| x.group),
                    message: e.msg,
                });
            }
        }
        let delay = explicit_delay
            .or_else(|| {
                self.settings
                    .retry_backoff
                    .map(|b| b.delay_ms(receive_count))
            })
            .unwrap_or(0);
        let state = if delay == 0 {
            State::Ready
        } else {
            State::Delayed(now.saturating_add(delay))
        };
        self.set_state(seq, state);
        None
    }

    fn count_mut(&mut self, s: State) -> &mut u64 {
        match s {
            State::Delayed(_) => &mut self.delayed,
            State::Ready => &mut self.visible,
            State::InFlight(_) => &mut self.in_flight,
        }
    }

    /// The one place a message changes state: keeps counters, the ready list,
    /// FIFO group accounting and timers in step.
    fn set_state(&mut self, seq: u64, new: State) {
        let Some(e) = self.entries.get_mut(seq) else {
            return;
        };
        let old = e.state();
        e.put_state(new);
        let group = e.group().cloned();
        let timer = match new {
            State::Delayed(t) | State::InFlight(t) => {
                e.timer_gen = e.timer_gen.wrapping_add(1);
                Some((t, e.timer_gen))
            }
            State::Ready => None,
        };
        *self.count_mut(old) -= 1;
        *self.count_mut(new) += 1;
        if let Some((t, gen)) = timer {
            self.timers.push(Reverse((t, seq, gen)));
            self.maybe_compact_timers();
        }
        match group {
            None => {
                if new == State::Ready && old != State::Ready {
                    self.ready.push(Reverse(seq));
                    self.maybe_compact_ready();
                }
            }
            Some(key) => {
                if let Some(g) = self.groups.get_mut(&key) {
                    if matches!(old, State::InFlight(_)) {
                        g.in_flight -= 1;
                    }
                    if matches!(new, State::InFlight(_)) {
                        g.in_flight += 1;
                    }
                }
                self.maybe_ready_group(key);
            }
        }
    }

    fn maybe_ready_group(&mut self, key: Arc<str>) {
        let Some(g) = self.groups.get_mut(&key) else {
            return;
        };
        if g.queued || g.in_flight > 0 {
            return;
        }
        let head_ready = g
            .pending
            .front()
            .and_then(|s| self.entries.get(*s))
            .is_some_and(|e| e.tag == READY);
        if head_ready {
            g.queued = true;
            self.ready_groups.push_back(key);
        }
    }

    fn remove_entry(&mut self, seq: u64) -> Option<Entry> {
        let e = self.entries.remove(seq)?;
        self.resident -= e.msg.resident_bytes();
        *self.count_mut(e.state()) -= 1;
        if let Some(key) = e.group() {
            if let Some(g) = self.groups.get_mut(key) {
                // Usually the head (FIFO acks go in order).
                if let Some(pos) = g.pending.iter().position(|s| *s == seq) {
                    g.pending.remove(pos);
                }
                if e.tag == IN_FLIGHT {
                    g.in_flight -= 1;
                }
                if g.pending.is_empty() {
                    self.groups.remove(key);
                } else {
                    self.maybe_ready_group(key.clone());
                }
            }
        }
        Some(e)
    }

    /// A message hidden again while visible (a visibility change) leaves its
    /// entry in `ready`; rebuild once stale entries outnumber live ones.
    fn maybe_compact_ready(&mut self) {
        if self.ready.len() <= 2 * self.visible as usize + 1024 {
            return;
        }
        let entries = &self.entries;
        let mut seen = rustc_hash::FxHashSet::default();
        self.ready.retain(|Reverse(s)| {
            matches!(entries.get(*s), Some(e) if e.tag == READY) && seen.insert(*s)
        });
    }

    /// Lazy deletion leaves dead heap entries behind; rebuild when they
    /// outnumber the live ones, so the heap stays O(live deadlines).
    fn maybe_compact_timers(&mut self) {
        let live = (self.delayed + self.in_flight) as usize;
        if self.timers.len() <= 2 * live + 1024 {
            return;
        }
        let entries = &self.entries;
        self.timers.retain(|Reverse((at, seq, gen))| {
            matches!(entries.get(*seq), Some(e) if e.timer_gen == *gen
                && e.tag != READY && e.deadline == *at)
        });
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;
