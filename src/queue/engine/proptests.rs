//! Property tests of [`QueueState`] against a reference model. Random operation
//! sequences (enqueue, receive, ack, nack, visibility change, time passing,
//! purge, release, return_now) run on both, and after every step the engine
//! must agree with the model on every stored message, every delivery, every
//! receipt answer, every dead-letter move and every counter. Each run ends with
//! a consumer that acks everything, which must empty the queue.
//!
//! A second property runs thousands of operations with time nearly frozen, so
//! the engine's lazy timer heap and arrival list cross their compaction
//! thresholds, which short runs never reach.
//!
//! The model is naive on purpose: one `Vec` entry per message ever stored, each
//! with its fate and (while stored) its state and deadline; every question is a
//! linear scan of the stored ones. Where the engine's choice is free (which standard message a
//! receive returns, which FIFO groups it serves first) only validity is checked.
//!
//! Deadlines take effect when `tick` runs, in the model as in the engine: a lease
//! that lapsed between two ticks ends at the later one, and any backoff counts
//! from there. `Advance` either ticks once at the end (a timer that fired late)
//! or at every `next_deadline` on the way (what the hub's timer loop does).

use std::collections::BTreeSet;
use std::sync::Arc;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;

use super::*;
use crate::model::{
    Attributes, BodyEncoding, DeadLetterSettings, MessageData, MessageId, MsgRef, QueueName,
    QueueSettings, RetryBackoff,
};

const T0: Millis = 1_000_000;
const UID: u64 = 7;
const GROUPS: [&str; 4] = ["g0", "g1", "g2", "sentinel"];
/// Generated sends use the first three groups; the last is the churn runs' own.
const SEND_GROUPS: usize = 3;
/// Dedup ids shared between sends, so duplicates are common.
const SHARED_DEDUP_IDS: u8 = 6;

// ---------------------------------------------------------------- model ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MState {
    Delayed(Millis),
    Ready,
    InFlight(Millis),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Stored(MState),
    Acked,
    DeadLettered,
    Expired,
    Purged,
}

#[derive(Debug)]
struct MMsg {
    /// Sequence numbers are issued densely from 1, so `seq == index + 1`.
    seq: u64,
    group: Option<usize>,
    enqueued_at: Millis,
    fate: Fate,
    receive_count: u32,
    first_received_at: Option<Millis>,
    /// Never reset (unlike `receive_count` on release): for "first delivered
    /// in enqueue order".
    ever_delivered: bool,
}

/// What the model says a receipt is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Invalid,
    Stale,
    /// A real receipt of a message no longer stored.
    Gone,
    /// The newest receipt of the stored message at this index.
    Current(usize),
}

#[derive(Debug)]
struct Model {
    settings: QueueSettings,
    /// Index == `MessageId.0` of the stored message.
    msgs: Vec<MMsg>,
    /// Indices whose fate is `Stored`, so scans skip messages long gone.
    live: BTreeSet<usize>,
    /// (dedup id, index of the first message, expires_at), never pruned.
    dedup: Vec<(String, usize, Millis)>,
    totals: QueueTotals,
    /// Per FIFO group, the seq of the newest first-ever delivery.
    last_first_delivery: [Option<u64>; GROUPS.len()],
}

impl Model {
    fn new(settings: QueueSettings) -> Self {
        Self {
            settings,
            msgs: Vec::new(),
            live: BTreeSet::new(),
            dedup: Vec::new(),
            totals: QueueTotals::default(),
            last_first_delivery: [None; GROUPS.len()],
        }
    }

    fn state(&self, i: usize) -> Option<MState> {
        match self.msgs[i].fate {
            Fate::Stored(s) => Some(s),
            _ => None,
        }
    }

    /// Stored messages in sequence order.
    fn stored(&self) -> impl Iterator<Item = (usize, MState)> + '_ {
        self.live
            .iter()
            .filter_map(|&i| self.state(i).map(|s| (i, s)))
    }

    fn store(&mut self, msg: MMsg) {
        assert!(matches!(msg.fate, Fate::Stored(_)));
        self.live.insert(self.msgs.len());
        self.msgs.push(msg);
    }

    /// The one place a message stops being stored.
    fn retire(&mut self, i: usize, fate: Fate) {
        assert!(self.live.remove(&i), "model: {i} retired twice");
        assert!(!matches!(fate, Fate::Stored(_)));
        self.msgs[i].fate = fate;
    }

    fn set_state(&mut self, i: usize, s: MState) {
        assert!(
            self.state(i).is_some(),
            "model: state change of a gone message"
        );
        self.msgs[i].fate = Fate::Stored(s);
    }

    fn count(&self, pred: impl Fn(MState) -> bool) -> u64 {
        self.stored().filter(|(_, s)| pred(*s)).count() as u64
    }

    fn dedup_lookup(&self, key: &str, now: Millis) -> Option<usize> {
        self.dedup
            .iter()
            .rev()
            .find(|(k, _, exp)| k == key && *exp > now)
            .map(|(_, i, _)| *i)
    }

    fn backoff_ms(&self, receive_count: u32) -> Option<Millis> {
        // Written out again rather than calling `RetryBackoff::delay_ms`, so a
        // mistake there shows up here.
        self.settings.retry_backoff.map(|b| {
            let doubled = u64::from(b.initial_seconds) << receive_count.saturating_sub(1).min(30);
            doubled.min(u64::from(b.max_seconds)) * 1000
        })
    }

    fn classify(&self, r: &Receipt) -> Class {
        if r.queue_uid != UID || r.seq == 0 || r.seq > self.msgs.len() as u64 || r.lease == 0 {
            return Class::Invalid;
        }
        let i = (r.seq - 1) as usize;
        let m = &self.msgs[i];
        match m.fate {
            Fate::Stored(_) if r.lease == m.receive_count => Class::Current(i),
            Fate::Stored(_) if r.lease < m.receive_count => Class::Stale,
            Fate::Stored(_) => Class::Invalid,
            _ => Class::Gone,
        }
    }

    /// A lease ended (nack or lapse). Returns the index if it dead-letters.
    fn end_lease(
        &mut self,
        i: usize,
        explicit_delay: Option<Millis>,
        now: Millis,
    ) -> Option<usize> {
        let count = self.msgs[i].receive_count;
        if let Some(dl) = &self.settings.dead_letter {
            if count >= dl.max_receives {
                self.retire(i, Fate::DeadLettered);
                self.totals.dead_lettered += 1;
                return Some(i);
            }
        }
        let delay = explicit_delay.or(self.backoff_ms(count)).unwrap_or(0);
        let s = if delay == 0 {
            MState::Ready
        } else {
            MState::Delayed(now + delay)
        };
        self.set_state(i, s);
        None
    }

    /// Returns (dead-lettered indices, expired count, became_visible).
    fn tick(&mut self, now: Millis) -> (Vec<usize>, u64, bool) {
        let retention = self.settings.retention_ms();
        let mut expired = 0;
        let live: Vec<usize> = self.live.iter().copied().collect();
        for &i in &live {
            if self.msgs[i].enqueued_at + retention <= now {
                self.retire(i, Fate::Expired);
                expired += 1;
            }
        }
        self.totals.expired += expired;
        let visible_before = self.count(|s| s == MState::Ready);
        let mut dead = Vec::new();
        let live: Vec<usize> = self.live.iter().copied().collect();
        for i in live {
            match self.state(i) {
                Some(MState::Delayed(t)) if t <= now => self.set_state(i, MState::Ready),
                Some(MState::InFlight(t)) if t <= now => dead.extend(self.end_lease(i, None, now)),
                _ => {}
            }
        }
        let became_visible = self.count(|s| s == MState::Ready) > visible_before;
        (dead, expired, became_visible)
    }

    /// What a receive may return: one list per FIFO group (its visible prefix,
    /// empty while anything of the group is in flight), or one list of every
    /// visible message on a standard queue.
    fn eligible(&self) -> Vec<Vec<usize>> {
        if !self.settings.fifo {
            return vec![self
                .stored()
                .filter(|(_, s)| *s == MState::Ready)
                .map(|(i, _)| i)
                .collect()];
        }
        (0..GROUPS.len())
            .map(|g| {
                let members: Vec<(usize, MState)> = self
                    .stored()
                    .filter(|(i, _)| self.msgs[*i].group == Some(g))
                    .collect();
                if members
                    .iter()
                    .any(|(_, s)| matches!(s, MState::InFlight(_)))
                {
                    return Vec::new();
                }
                members
                    .iter()
                    .take_while(|(_, s)| *s == MState::Ready)
                    .map(|(i, _)| *i)
                    .collect()
            })
            .collect()
    }

    /// The earliest moment something is due, if anything is.
    fn earliest_deadline(&self, now: Millis) -> Option<Millis> {
        let retention = self.settings.retention_ms();
        let msgs = self.stored().flat_map(|(i, s)| {
            let timer = match s {
                MState::Delayed(t) | MState::InFlight(t) => Some(t),
                MState::Ready => None,
            };
            [timer, Some(self.msgs[i].enqueued_at + retention)]
        });
        let dedup = self
            .dedup
            .iter()
            .filter(|(_, _, exp)| *exp > now)
            .map(|(_, _, exp)| Some(*exp));
        msgs.chain(dedup).flatten().min()
    }
}

// ------------------------------------------------------------------ ops ----

/// How a receipt from the pool is spoiled before use.
#[derive(Debug, Clone, Copy)]
enum Corrupt {
    None,
    WrongUid,
    LeaseZero,
    LeasePlus(u32),
    SeqZero,
    FutureSeq(u64),
}

/// Where a receipt comes from.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// Any receipt ever handed out: old ones exercise staleness.
    Any,
    /// One of the newest few handed out: what consumers mostly hold.
    Newest(usize),
    /// The current receipt of a stored message that has been received.
    Current,
}

#[derive(Debug, Clone)]
struct Pick {
    from: Source,
    idx: Index,
    corrupt: Corrupt,
}

#[derive(Debug, Clone)]
enum Op {
    Send {
        /// `visible_at = now + this`; `None` applies the queue delay. FIFO
        /// queues get it too: a later message may then be visible before an
        /// earlier one of its group, which must still wait.
        visible_in: Option<Millis>,
        group: usize,
        /// FIFO: a shared dedup id, or `None` for a fresh one.
        dedup: Option<u8>,
    },
    Receive {
        max: usize,
        visibility: Option<Millis>,
    },
    Ack(Pick),
    Nack(Pick, Option<Millis>),
    ChangeVisibility(Pick, Millis),
    Advance {
        ms: Millis,
        /// Tick at every `next_deadline` on the way, as the hub does.
        stepwise: bool,
    },
    Purge,
    Release,
    /// A push consumer went away: its lease ends now, the receive still counts.
    ReturnNow(Pick),
}

fn corrupt() -> impl Strategy<Value = Corrupt> {
    prop_oneof![
        12 => Just(Corrupt::None),
        1 => Just(Corrupt::WrongUid),
        1 => Just(Corrupt::LeaseZero),
        1 => (1u32..3).prop_map(Corrupt::LeasePlus),
        1 => Just(Corrupt::SeqZero),
        1 => (1u64..4).prop_map(Corrupt::FutureSeq),
    ]
}

fn pick_from(from: impl Strategy<Value = Source>) -> impl Strategy<Value = Pick> {
    (from, any::<Index>(), corrupt()).prop_map(|(from, idx, corrupt)| Pick { from, idx, corrupt })
}

fn pick() -> impl Strategy<Value = Pick> {
    pick_from(prop_oneof![
        Just(Source::Any),
        Just(Source::Newest(5)),
        Just(Source::Current)
    ])
}

fn short_ms(max: Millis) -> impl Strategy<Value = Millis> {
    // Zero is special everywhere (immediate visibility, immediate lapse).
    prop_oneof![1 => Just(0), 3 => 0..max]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => (
            prop::option::weighted(0.3, short_ms(20_000)),
            0..SEND_GROUPS,
            prop::option::weighted(0.7, 0..SHARED_DEDUP_IDS),
        )
            .prop_map(|(visible_in, group, dedup)| Op::Send { visible_in, group, dedup }),
        25 => (1usize..=5, prop::option::weighted(0.3, short_ms(15_000)))
            .prop_map(|(max, visibility)| Op::Receive { max, visibility }),
        12 => pick().prop_map(Op::Ack),
        8 => (pick(), prop::option::weighted(0.5, short_ms(10_000)))
            .prop_map(|(p, d)| Op::Nack(p, d)),
        8 => (pick(), short_ms(20_000)).prop_map(|(p, ms)| Op::ChangeVisibility(p, ms)),
        12 => (0u64..=40_000, any::<bool>())
            .prop_map(|(ms, stepwise)| Op::Advance { ms, stepwise }),
        1 => Just(Op::Purge),
        2 => Just(Op::Release),
        2 => pick().prop_map(Op::ReturnNow),
    ]
}

/// Send, receive, ack the newest, extend leases, with time almost standing
/// still: few messages are live while dead timer entries and removed arrivals
/// pile up past the engine's compaction thresholds (1024 more than twice the
/// live ones).
fn churn_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        34 => (0..SEND_GROUPS, prop::option::weighted(0.2, 0..SHARED_DEDUP_IDS))
            .prop_map(|(group, dedup)| Op::Send { visible_in: None, group, dedup }),
        40 => prop::option::weighted(0.8, 30_000u64..60_000)
            .prop_map(|visibility| Op::Receive { max: 1, visibility }),
        40 => pick_from(Just(Source::Current)).prop_map(Op::Ack),
        15 => (pick_from(Just(Source::Current)), 20_000u64..60_000)
            .prop_map(|(p, ms)| Op::ChangeVisibility(p, ms)),
        3 => (0u64..50, any::<bool>()).prop_map(|(ms, stepwise)| Op::Advance { ms, stepwise }),
    ]
}

fn settings() -> impl Strategy<Value = QueueSettings> {
    (
        any::<bool>(),
        0u32..=10,
        0u32..=5,
        prop::option::of(1u32..=4),
        prop::option::of((1u32..=3, 0u32..=5)),
        60u32..=400,
        60u32..=300,
    )
        .prop_map(
            |(fifo, visibility, delay, max_receives, backoff, retention, dedup_window)| {
                QueueSettings {
                    fifo,
                    visibility_timeout_seconds: visibility,
                    delay_seconds: delay,
                    dead_letter: max_receives.map(|max_receives| DeadLetterSettings {
                        queue: QueueName::new("dlq").expect("valid"),
                        max_receives,
                    }),
                    retry_backoff: backoff.map(|(initial, extra)| RetryBackoff {
                        initial_seconds: initial,
                        max_seconds: initial + extra,
                    }),
                    retention_seconds: retention,
                    dedup_window_seconds: dedup_window,
                    ..QueueSettings::default()
                }
            },
        )
}

// -------------------------------------------------------------- harness ----

fn message(id: usize, group: Option<&str>, now: Millis) -> Arc<MessageData> {
    Arc::new(MessageData {
        id: MessageId(id as u128),
        body: format!("m{id}"),
        body_encoding: BodyEncoding::Text,
        attributes: Attributes::new(),
        group_id: group.map(Arc::from),
        dedup_id: None,
        topic: None,
        poison: false,
        sent_at: now,
        size: 2,
        visible_at: None,
        loc: Default::default(),
        copies: 1,
    })
}

fn index_of(msg: &MsgRef) -> usize {
    msg.mem().expect("the engine keeps what it was given").id.0 as usize
}

/// The engine and the model side by side, with the test's clock.
struct Harness {
    q: QueueState,
    m: Model,
    now: Millis,
    /// Every receipt ever handed out (released ones too).
    pool: Vec<Receipt>,
    last_receive: Vec<Delivery>,
    fresh_dedup: u64,
    /// Compare whole states every this many steps (answers are checked always).
    check_every: usize,
    steps: usize,
}

impl Harness {
    fn new(settings: QueueSettings, check_every: usize) -> Self {
        assert_eq!(settings.validate(), Ok(()));
        Self {
            q: QueueState::new(QueueName::new("q").expect("valid"), UID, settings.clone()),
            m: Model::new(settings),
            now: T0,
            pool: Vec::new(),
            last_receive: Vec::new(),
            fresh_dedup: 0,
            check_every,
            steps: 0,
        }
    }

    fn fifo(&self) -> bool {
        self.m.settings.fifo
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::Send {
                visible_in,
                group,
                dedup,
            } => self.send(*visible_in, *group, *dedup),
            Op::Receive { max, visibility } => self.receive(*max, *visibility).map(|_| ()),
            Op::Ack(p) => {
                let r = self.receipt(p);
                self.ack(r)
            }
            Op::Nack(p, delay) => {
                let r = self.receipt(p);
                self.nack(r, *delay)
            }
            Op::ChangeVisibility(p, ms) => {
                let r = self.receipt(p);
                self.change_visibility(r, *ms)
            }
            Op::Advance { ms, stepwise } => self.advance(*ms, *stepwise),
            Op::Purge => self.purge(),
            Op::Release => self.release(),
            Op::ReturnNow(p) => {
                let r = self.receipt(p);
                self.return_now(r)
            }
        }?;
        self.step_done()
    }

    fn step_done(&mut self) -> Result<(), TestCaseError> {
        self.steps += 1;
        if self.steps.is_multiple_of(self.check_every) {
            self.check_all()?;
        }
        Ok(())
    }

    fn receipt(&self, p: &Pick) -> Receipt {
        let current: Vec<Receipt> = match p.from {
            Source::Current => self
                .m
                .stored()
                .filter(|(i, _)| self.m.msgs[*i].receive_count > 0)
                .map(|(i, _)| Receipt {
                    queue_uid: UID,
                    seq: self.m.msgs[i].seq,
                    lease: self.m.msgs[i].receive_count,
                })
                .collect(),
            _ => Vec::new(),
        };
        let mut r = if !current.is_empty() {
            current[p.idx.index(current.len())]
        } else if self.pool.is_empty() {
            // With nothing received yet, a plausible receipt still has an answer.
            Receipt {
                queue_uid: UID,
                seq: 1,
                lease: 1,
            }
        } else {
            let from = match p.from {
                Source::Newest(n) => self.pool.len().saturating_sub(n),
                Source::Any | Source::Current => 0,
            };
            self.pool[from + p.idx.index(self.pool.len() - from)]
        };
        match p.corrupt {
            Corrupt::None => {}
            Corrupt::WrongUid => r.queue_uid = UID + 1,
            Corrupt::LeaseZero => r.lease = 0,
            Corrupt::LeasePlus(n) => r.lease += n,
            Corrupt::SeqZero => r.seq = 0,
            Corrupt::FutureSeq(n) => r.seq = self.m.msgs.len() as u64 + n,
        }
        r
    }

    fn send(
        &mut self,
        visible_in: Option<Millis>,
        group: usize,
        dedup: Option<u8>,
    ) -> Result<(), TestCaseError> {
        let now = self.now;
        let id = self.m.msgs.len();
        let fifo = self.fifo();
        let (opts, dedup_key) = if fifo {
            let key = match dedup {
                Some(k) => format!("d{k}"),
                None => {
                    self.fresh_dedup += 1;
                    format!("fresh{}", self.fresh_dedup)
                }
            };
            let opts = EnqueueOptions {
                visible_at: visible_in.map(|d| now + d),
                group_id: Some(Arc::from(GROUPS[group])),
                dedup_id: Some(Arc::from(key.as_str())),
                ..EnqueueOptions::default()
            };
            (opts, Some(key))
        } else {
            let opts = EnqueueOptions {
                visible_at: visible_in.map(|d| now + d),
                ..EnqueueOptions::default()
            };
            (opts, None)
        };
        let group_name = fifo.then_some(GROUPS[group]);
        let got = self.q.enqueue(message(id, group_name, now), opts, now);

        if let Some(first) = dedup_key
            .as_deref()
            .and_then(|k| self.m.dedup_lookup(k, now))
        {
            prop_assert_eq!(
                got,
                Ok(EnqueueOutcome::Duplicate {
                    first_id: MessageId(first as u128)
                }),
                "dedup id {:?} was first used by message {}",
                dedup_key,
                first
            );
            self.m.totals.deduplicated += 1;
            return Ok(());
        }
        prop_assert_eq!(got, Ok(EnqueueOutcome::Enqueued { seq: id as u64 + 1 }));
        if let Some(k) = dedup_key {
            self.m
                .dedup
                .push((k, id, now + self.m.settings.dedup_window_ms()));
        }
        let visible_at = now + visible_in.unwrap_or(self.m.settings.delay_ms());
        let state = if visible_at > now {
            MState::Delayed(visible_at)
        } else {
            MState::Ready
        };
        self.m.store(MMsg {
            seq: id as u64 + 1,
            group: fifo.then_some(group),
            enqueued_at: now,
            fate: Fate::Stored(state),
            receive_count: 0,
            first_received_at: None,
            ever_delivered: false,
        });
        self.m.totals.sent += 1;
        Ok(())
    }

    /// Ticks both at `self.now` and compares what the tick did.
    fn tick(&mut self) -> Result<(), TestCaseError> {
        let now = self.now;
        let out = self.q.tick(now);
        let (dead, expired, became_visible) = self.m.tick(now);
        prop_assert_eq!(out.expired, expired, "expired at {}", now);
        prop_assert_eq!(
            out.became_visible,
            became_visible,
            "became_visible at {}",
            now
        );
        let mut got: Vec<(usize, u32, Option<Arc<str>>)> = out
            .dead_letters
            .iter()
            .map(|mv| (index_of(&mv.message), mv.receive_count, mv.group_id.clone()))
            .collect();
        got.sort();
        let want: Vec<_> = dead.iter().map(|&i| self.expected_move(i)).collect();
        prop_assert_eq!(got, want, "dead letters at tick {}", now);
        for mv in &out.dead_letters {
            self.check_move_target(mv)?;
        }
        // Everything due has been done, so the next deadline lies ahead.
        if let Some(d) = self.q.next_deadline() {
            prop_assert!(d > now, "next_deadline {} not after tick at {}", d, now);
        }
        Ok(())
    }

    fn expected_move(&self, i: usize) -> (usize, u32, Option<Arc<str>>) {
        let m = &self.m.msgs[i];
        (i, m.receive_count, m.group.map(|g| Arc::from(GROUPS[g])))
    }

    fn check_move_target(&self, mv: &DeadLetterMove) -> Result<(), TestCaseError> {
        prop_assert_eq!(mv.target.as_str(), "dlq");
        prop_assert_eq!(mv.source.as_str(), "q");
        Ok(())
    }

    fn receive(
        &mut self,
        max: usize,
        visibility: Option<Millis>,
    ) -> Result<Vec<Delivery>, TestCaseError> {
        // The server ticks before serving a receive.
        self.tick()?;
        let now = self.now;
        let eligible = self.m.eligible();
        let got = self.q.receive(max, visibility, now);
        let available: usize = eligible.iter().map(Vec::len).sum();
        // Nothing visible is held back from a receive with room for it.
        prop_assert_eq!(got.len(), max.min(available), "eligible {:?}", eligible);

        let ids: Vec<usize> = got.iter().map(|d| index_of(&d.message)).collect();
        if self.fifo() {
            // Per group, what was delivered is a prefix of the visible run at
            // the group's head, in order: nothing skipped, nothing behind an
            // in-flight message.
            for (g, run) in eligible.iter().enumerate() {
                let of_group: Vec<usize> = ids
                    .iter()
                    .copied()
                    .filter(|&i| self.m.msgs.get(i).and_then(|m| m.group) == Some(g))
                    .collect();
                prop_assert!(
                    run.starts_with(&of_group),
                    "group {} delivered {:?}, eligible run {:?}",
                    g,
                    of_group,
                    run
                );
            }
            prop_assert!(
                ids.iter()
                    .all(|&i| self.m.msgs.get(i).is_some_and(|m| m.group.is_some())),
                "delivered unknown {:?}",
                ids
            );
        } else {
            let mut seen = vec![false; self.m.msgs.len()];
            for &i in &ids {
                prop_assert!(
                    eligible[0].contains(&i),
                    "message {} delivered but model state {:?}",
                    i,
                    self.m.msgs.get(i).map(|m| m.fate)
                );
                prop_assert!(!seen[i], "message {} delivered twice in one receive", i);
                seen[i] = true;
            }
        }

        let vis = visibility.unwrap_or(self.m.settings.visibility_ms());
        for d in &got {
            let i = index_of(&d.message);
            prop_assert!(
                self.m.msgs[i].fate != Fate::Acked,
                "acked message {} delivered again",
                i
            );
            let m = &mut self.m.msgs[i];
            m.receive_count += 1;
            let first_at = *m.first_received_at.get_or_insert(now);
            if let Some(g) = m.group.filter(|_| !m.ever_delivered) {
                // First deliveries within a group follow enqueue order.
                let last = self.m.last_first_delivery[g];
                prop_assert!(
                    last.is_none_or(|l| l < m.seq),
                    "group {} first-delivered seq {} after {:?}",
                    g,
                    m.seq,
                    last
                );
                self.m.last_first_delivery[g] = Some(m.seq);
            }
            m.ever_delivered = true;
            let want = Receipt {
                queue_uid: UID,
                seq: m.seq,
                lease: m.receive_count,
            };
            prop_assert_eq!(d.receipt, want);
            prop_assert_eq!(d.seq, m.seq);
            prop_assert_eq!(d.receive_count, m.receive_count);
            prop_assert_eq!(d.first_received_at, first_at);
            let group = m.group.map(|g| Arc::<str>::from(GROUPS[g]));
            prop_assert_eq!(&d.group_id, &group);
            prop_assert!(d.dead_letter_source.is_none());
            self.m.set_state(i, MState::InFlight(now + vis));
            self.m.totals.received += 1;
            self.pool.push(d.receipt);
        }
        self.last_receive = got.clone();
        Ok(got)
    }

    fn ack(&mut self, r: Receipt) -> Result<(), TestCaseError> {
        let got = self.q.ack(&r);
        match self.m.classify(&r) {
            Class::Invalid => prop_assert_eq!(got, Err(ReceiptError::Invalid), "ack {:?}", r),
            Class::Stale => prop_assert_eq!(got, Err(ReceiptError::Stale), "ack {:?}", r),
            Class::Gone => prop_assert_eq!(got, Ok(()), "ack of gone {:?}", r),
            Class::Current(i) => {
                prop_assert_eq!(got, Ok(()), "ack {:?}", r);
                self.m.retire(i, Fate::Acked);
                self.m.totals.acked += 1;
            }
        }
        Ok(())
    }

    fn nack(&mut self, r: Receipt, delay: Option<Millis>) -> Result<(), TestCaseError> {
        let now = self.now;
        let got = self.q.nack(&r, delay, now);
        match self.m.classify(&r) {
            Class::Invalid => {
                prop_assert_eq!(got.err(), Some(ReceiptError::Invalid), "nack {:?}", r)
            }
            Class::Stale | Class::Gone => {
                prop_assert_eq!(got.err(), Some(ReceiptError::Stale), "nack {:?}", r)
            }
            Class::Current(i) => {
                let want = self.m.end_lease(i, delay, now);
                let got = match got {
                    Ok(mv) => mv,
                    Err(e) => return Err(TestCaseError::fail(format!("nack {r:?}: {e:?}"))),
                };
                if let Some(mv) = &got {
                    self.check_move_target(mv)?;
                }
                let got = got.map(|mv| (index_of(&mv.message), mv.receive_count, mv.group_id));
                prop_assert_eq!(got, want.map(|i| self.expected_move(i)), "nack {:?}", r);
            }
        }
        Ok(())
    }

    fn change_visibility(&mut self, r: Receipt, ms: Millis) -> Result<(), TestCaseError> {
        let now = self.now;
        let got = self.q.change_visibility(&r, ms, now);
        match self.m.classify(&r) {
            Class::Invalid => prop_assert_eq!(got, Err(ReceiptError::Invalid), "cv {:?}", r),
            Class::Stale | Class::Gone => {
                prop_assert_eq!(got, Err(ReceiptError::Stale), "cv {:?}", r)
            }
            Class::Current(i) => {
                prop_assert_eq!(got, Ok(()), "cv {:?}", r);
                self.m.set_state(i, MState::InFlight(now + ms));
            }
        }
        Ok(())
    }

    fn advance(&mut self, ms: Millis, stepwise: bool) -> Result<(), TestCaseError> {
        let target = self.now + ms;
        if stepwise {
            let mut steps = 0;
            while let Some(d) = self.q.next_deadline().filter(|d| *d <= target) {
                steps += 1;
                prop_assert!(steps < 10_000, "next_deadline does not advance");
                self.now = self.now.max(d);
                self.tick()?;
            }
        }
        self.now = target;
        self.tick()
    }

    fn purge(&mut self) -> Result<(), TestCaseError> {
        let n = self.q.purge();
        let stored: Vec<usize> = self.m.stored().map(|(i, _)| i).collect();
        prop_assert_eq!(n, stored.len() as u64);
        for i in stored {
            self.m.retire(i, Fate::Purged);
        }
        self.m.totals.purged += n;
        Ok(())
    }

    fn release(&mut self) -> Result<(), TestCaseError> {
        let deliveries = std::mem::take(&mut self.last_receive);
        self.q.release(&deliveries);
        for d in &deliveries {
            let i = index_of(&d.message);
            let m = &self.m.msgs[i];
            let in_flight = matches!(m.fate, Fate::Stored(MState::InFlight(_)));
            if !in_flight || m.receive_count != d.receipt.lease {
                continue;
            }
            let m = &mut self.m.msgs[i];
            m.receive_count -= 1;
            if m.receive_count == 0 {
                m.first_received_at = None;
            }
            self.m.set_state(i, MState::Ready);
            self.m.totals.received -= 1;
        }
        self.last_receive = deliveries;
        Ok(())
    }

    fn return_now(&mut self, r: Receipt) -> Result<(), TestCaseError> {
        // No answer to check: the engine skips what it cannot return.
        self.q.return_now(&[r]);
        if let Class::Current(i) = self.m.classify(&r) {
            if matches!(self.m.state(i), Some(MState::InFlight(_))) {
                self.m.set_state(i, MState::Ready);
            }
        }
        Ok(())
    }

    /// Everything observable at rest agrees with the model.
    fn check_all(&mut self) -> Result<(), TestCaseError> {
        let now = self.now;
        // 1: no message lost or invented; receive counts exact.
        let snap: Vec<(u64, usize, u32)> = self
            .q
            .snapshot()
            .iter()
            .map(|(seq, msg, count)| (*seq, index_of(msg), *count))
            .collect();
        let want: Vec<(u64, usize, u32)> = self
            .m
            .stored()
            .map(|(i, _)| (self.m.msgs[i].seq, i, self.m.msgs[i].receive_count))
            .collect();
        prop_assert_eq!(&snap, &want, "snapshot vs model at {}", now);
        prop_assert_eq!(self.q.len(), snap.len());
        prop_assert_eq!(self.q.is_empty(), snap.is_empty());

        // 7: counters.
        let st = self.q.stats(now);
        let visible = self.m.count(|s| s == MState::Ready);
        let delayed = self.m.count(|s| matches!(s, MState::Delayed(_)));
        let in_flight = self.m.count(|s| matches!(s, MState::InFlight(_)));
        prop_assert_eq!(
            (st.visible, st.delayed, st.in_flight),
            (visible, delayed, in_flight),
            "visible/delayed/in_flight"
        );
        prop_assert_eq!(st.visible + st.delayed + st.in_flight, snap.len() as u64);
        prop_assert_eq!(self.q.has_visible(), visible > 0);
        prop_assert_eq!(st.totals, self.m.totals);
        let t = st.totals;
        prop_assert_eq!(
            t.sent,
            snap.len() as u64 + t.acked + t.dead_lettered + t.expired + t.purged,
            "the engine's own totals do not balance"
        );
        let oldest = self
            .m
            .stored()
            .map(|(i, _)| now - self.m.msgs[i].enqueued_at)
            .max()
            .unwrap_or(0);
        prop_assert_eq!(st.oldest_age_ms, oldest);

        // The engine may wake early (lazy deletion) but never late.
        if let Some(due) = self.m.earliest_deadline(now) {
            let next = self.q.next_deadline();
            prop_assert!(
                next.is_some_and(|n| n <= due),
                "next_deadline {:?} later than {}",
                next,
                due
            );
        }

        // 9: the dedup window as the hub sees it.
        if self.fifo() {
            for k in 0..SHARED_DEDUP_IDS {
                let key = format!("d{k}");
                let want = self.m.dedup_lookup(&key, now).map(|i| MessageId(i as u128));
                prop_assert_eq!(self.q.dedup_lookup(&key, now), want, "dedup {}", key);
            }
        }
        Ok(())
    }

    /// Liveness: a consumer that acks everything empties the queue.
    fn drain(&mut self) -> Result<(), TestCaseError> {
        // Each round acks at least one message or lets a deadline pass, and
        // every message has at most a few deadlines left (delay, lease, backoff)
        // before retention ends it.
        for _ in 0..10 * self.m.msgs.len() + 10 {
            if self.q.is_empty() {
                return self.check_all();
            }
            let got = self.receive(5, None)?;
            self.step_done()?;
            for d in &got {
                self.ack(d.receipt)?;
                self.step_done()?;
            }
            // The receive's tick may have dead-lettered or expired the rest.
            if got.is_empty() && !self.q.is_empty() {
                let next = self.q.next_deadline();
                prop_assert!(next.is_some(), "stored messages but no deadline");
                let ms = next.unwrap_or(self.now).saturating_sub(self.now);
                self.advance(ms, false)?;
                self.step_done()?;
            }
        }
        Err(TestCaseError::fail("queue did not drain"))
    }
}

fn run(settings: QueueSettings, ops: &[Op], check_every: usize) -> Result<(), TestCaseError> {
    let mut h = Harness::new(settings, check_every);
    for op in ops {
        h.apply(op)?;
    }
    h.drain()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 300,
        // Failures are kept as deterministic tests below, not as files.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn engine_agrees_with_the_model(
        settings in settings(),
        ops in prop::collection::vec(op(), 1..200),
    ) {
        run(settings, &ops, 1)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 8,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn engine_agrees_with_the_model_across_compactions(
        // Time hardly moves in these runs: a queue delay would hide everything.
        settings in settings().prop_map(|s| QueueSettings { delay_seconds: 0, ..s }),
        ops in prop::collection::vec(churn_op(), 5_000..6_000),
    ) {
        // One message that stays stored (delayed past the end of the run, in a
        // group of its own) keeps removed arrivals from leaving the front.
        let sentinel = Op::Send {
            visible_in: Some(3_600_000),
            group: GROUPS.len() - 1,
            dedup: None,
        };
        let ops: Vec<Op> = std::iter::once(sentinel).chain(ops).collect();
        run(settings, &ops, 50)?;
    }
}

// ------------------------------------------- interleavings, pinned down ----

fn queue(settings: QueueSettings) -> QueueState {
    QueueState::new(QueueName::new("q").expect("valid"), UID, settings)
}

fn send_standard(q: &mut QueueState, id: usize) {
    q.enqueue(message(id, None, T0), EnqueueOptions::default(), T0)
        .expect("enqueue");
}

fn send_fifo(q: &mut QueueState, id: usize, group: &str) {
    let opts = EnqueueOptions {
        group_id: Some(Arc::from(group)),
        dedup_id: Some(Arc::from(format!("d{id}").as_str())),
        ..EnqueueOptions::default()
    };
    q.enqueue(message(id, Some(group), T0), opts, T0)
        .expect("enqueue");
}

fn ids(deliveries: &[Delivery]) -> Vec<usize> {
    deliveries.iter().map(|d| index_of(&d.message)).collect()
}

#[test]
fn fifo_visibility_change_on_a_lapsed_message_hides_it_again_and_blocks_its_group() {
    let mut q = queue(QueueSettings {
        fifo: true,
        ..QueueSettings::default()
    });
    send_fifo(&mut q, 0, "g");
    send_fifo(&mut q, 1, "g");
    let first = q.receive(1, Some(1_000), T0);
    q.tick(T0 + 1_000);
    assert_eq!(q.stats(T0 + 1_000).visible, 2, "the lease lapsed");
    // Nobody received it since, so the lapsed receipt is still the newest and
    // may hide the message again: in flight once more, with no receive counted.
    assert_eq!(
        q.change_visibility(&first[0].receipt, 5_000, T0 + 1_000),
        Ok(())
    );
    q.tick(T0 + 1_000);
    // Its group waits for it, the message behind it included.
    assert!(q.receive(10, None, T0 + 1_000).is_empty());
    assert_eq!(q.stats(T0 + 1_000).in_flight, 1);
    q.tick(T0 + 6_000);
    let again = q.receive(10, None, T0 + 6_000);
    assert_eq!(ids(&again), [0, 1]);
    assert_eq!(again[0].receive_count, 2);
}

#[test]
fn nack_after_the_lease_lapsed_applies_its_delay_and_counts_no_receive() {
    let mut q = queue(QueueSettings {
        dead_letter: Some(DeadLetterSettings {
            queue: QueueName::new("dlq").expect("valid"),
            max_receives: 2,
        }),
        ..QueueSettings::default()
    });
    send_standard(&mut q, 0);
    let first = q.receive(1, Some(1_000), T0);
    assert!(q.tick(T0 + 1_000).dead_letters.is_empty(), "1 receive of 2");
    // Visible again, yet the receipt is still the newest: the nack applies.
    let mv = q.nack(&first[0].receipt, Some(3_000), T0 + 1_000);
    assert!(matches!(mv, Ok(None)), "{mv:?}");
    q.tick(T0 + 3_999);
    assert!(q.receive(1, None, T0 + 3_999).is_empty());
    q.tick(T0 + 4_000);
    let second = q.receive(1, Some(1_000), T0 + 4_000);
    assert_eq!(second[0].receive_count, 2);
    // The second lapse reaches max_receives.
    let out = q.tick(T0 + 5_000);
    assert_eq!(out.dead_letters.len(), 1);
    assert_eq!(out.dead_letters[0].receive_count, 2);
}

#[test]
fn release_after_a_redelivery_makes_the_previous_receipt_current_again() {
    let mut q = queue(QueueSettings::default());
    send_standard(&mut q, 0);
    let first = q.receive(1, Some(1_000), T0);
    q.tick(T0 + 1_000);
    let handed = q.receive(1, None, T0 + 1_000);
    assert_eq!(q.ack(&first[0].receipt), Err(ReceiptError::Stale));
    // The long-poll waiter left before the hand-off, so that receive never
    // happened: the first consumer's receipt is the newest again, and the
    // released one names a lease not (yet) issued.
    q.release(&handed);
    assert_eq!(q.ack(&handed[0].receipt), Err(ReceiptError::Invalid));
    assert_eq!(q.ack(&first[0].receipt), Ok(()));
    assert!(q.is_empty());
    assert_eq!(q.stats(T0 + 1_000).totals.received, 1);
}

// Regression: every change into Ready used to push the seq onto `ready`, even
// from Ready (a nack of a lapsed, still visible message), so whoever held one
// receipt could grow it by one entry per call, without bound.
#[test]
fn nacking_a_visible_message_repeatedly_keeps_the_ready_list_bounded() {
    let mut q = queue(QueueSettings::default());
    send_standard(&mut q, 0);
    let d = q.receive(1, Some(0), T0);
    q.tick(T0);
    for _ in 0..10_000 {
        q.nack(&d[0].receipt, Some(0), T0).expect("nack");
    }
    assert_eq!(q.stats(T0).visible, 1);
    assert!(
        q.ready.len() <= 1024 + 2,
        "`ready` holds {} entries for 1 visible message",
        q.ready.len()
    );
}
