//! What the bench checks about delivery: every message a publish confirmed
//! reaches every queue at least once, nothing arrives twice except as a
//! redelivery, nothing arrives that nobody published, and (FIFO) each group
//! arrives in publish order.
//!
//! Messages are identified by the (publisher, sequence) pair their body's
//! stamp carries, kept in bitsets: a few bits per message, no per-message
//! allocation. This module is pure bookkeeping: no IO, no clock, no locking
//! (the harness wraps each ledger in its own mutex and records whole batches
//! under one lock).

use super::payload::Stamp;

/// A growable set of small integers.
#[derive(Debug, Clone, Default)]
pub struct BitSet {
    words: Vec<u64>,
    /// Number of set bits, kept so counting is O(1).
    ones: u64,
}

impl BitSet {
    /// Sets bit `i`; answers whether it was clear before.
    pub fn insert(&mut self, i: u64) -> bool {
        let (word, bit) = split(i);
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        let mask = 1u64 << bit;
        let was_clear = self.words[word] & mask == 0;
        self.words[word] |= mask;
        self.ones += u64::from(was_clear);
        was_clear
    }

    pub fn contains(&self, i: u64) -> bool {
        let (word, bit) = split(i);
        self.words.get(word).is_some_and(|w| w & (1u64 << bit) != 0)
    }

    pub fn len(&self) -> u64 {
        self.ones
    }

    /// How many bits are set here and clear in `other`.
    pub fn count_not_in(&self, other: &BitSet) -> u64 {
        self.words
            .iter()
            .enumerate()
            .map(|(i, w)| u64::from((w & !other.words.get(i).copied().unwrap_or(0)).count_ones()))
            .sum()
    }
}

fn split(i: u64) -> (usize, u32) {
    // A bench run never approaches 2^64 / 64 words; usize is 64-bit here.
    ((i / 64) as usize, (i % 64) as u32)
}

/// What the publishers know: which of their messages the server confirmed.
/// A message in a failed request may or may not have been stored, so it is
/// neither expected nor, if it arrives, a surprise.
#[derive(Debug, Clone, Default)]
pub struct PublishLedger {
    /// Per publisher: the sequence numbers the server answered with an id.
    confirmed: Vec<BitSet>,
    /// Per publisher: one past the highest sequence number sent in any request.
    attempted: Vec<u64>,
}

impl PublishLedger {
    pub fn new(publishers: usize) -> Self {
        Self {
            confirmed: vec![BitSet::default(); publishers],
            attempted: vec![0; publishers],
        }
    }

    /// A request carrying sequence numbers below `end` is about to go out.
    pub fn attempt(&mut self, publisher: u32, end: u64) {
        if let Some(a) = self.attempted.get_mut(publisher as usize) {
            *a = (*a).max(end);
        }
    }

    /// The server accepted this message.
    pub fn confirm(&mut self, publisher: u32, seq: u64) {
        if let Some(set) = self.confirmed.get_mut(publisher as usize) {
            set.insert(seq);
        }
    }

    /// Messages the server accepted, over all publishers.
    pub fn confirmed(&self) -> u64 {
        self.confirmed.iter().map(BitSet::len).sum()
    }

    fn is_confirmed(&self, publisher: u32, seq: u64) -> bool {
        self.confirmed
            .get(publisher as usize)
            .is_some_and(|s| s.contains(seq))
    }

    fn was_attempted(&self, publisher: u32, seq: u64) -> bool {
        self.attempted
            .get(publisher as usize)
            .is_some_and(|&end| seq < end)
    }
}

/// How one delivery compares with what this queue delivered before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The first copy of this message on this queue.
    First,
    /// Seen before, and the server says it delivered it again
    /// (`receive_count` > 1: a lapsed visibility, a nack, a reconnect).
    /// At-least-once allows this.
    Redelivery,
    /// Seen before with `receive_count` 1: a second copy of one message in
    /// one queue, which the contract does not allow.
    Duplicate,
}

/// What one queue (or one WebSocket topic subscriber) delivered.
#[derive(Debug, Clone, Default)]
pub struct DeliveryLedger {
    /// Per publisher: the sequence numbers delivered at least once.
    seen: Vec<BitSet>,
    pub duplicates: u64,
    pub redeliveries: u64,
    /// Bodies without a bench stamp.
    pub malformed: u64,
    /// Per-group order check, for FIFO runs.
    order: Option<OrderCheck>,
}

impl DeliveryLedger {
    pub fn new() -> Self {
        Self::default()
    }

    /// A ledger that also checks that each group arrives in publish order.
    pub fn with_order_check() -> Self {
        Self {
            order: Some(OrderCheck::default()),
            ..Self::default()
        }
    }

    /// Records one delivered message.
    pub fn record(&mut self, stamp: &Stamp, receive_count: u32) -> Delivery {
        let p = stamp.publisher as usize;
        if p >= self.seen.len() {
            self.seen.resize(p + 1, BitSet::default());
        }
        if self.seen[p].insert(stamp.seq) {
            if let Some(order) = &mut self.order {
                order.check(stamp.group, stamp.group_seq);
            }
            Delivery::First
        } else if receive_count > 1 {
            self.redeliveries += 1;
            Delivery::Redelivery
        } else {
            self.duplicates += 1;
            Delivery::Duplicate
        }
    }

    pub fn record_malformed(&mut self) {
        self.malformed += 1;
    }

    /// Confirmed messages not delivered (yet).
    pub fn missing(&self, published: &PublishLedger) -> u64 {
        let empty = BitSet::default();
        published
            .confirmed
            .iter()
            .enumerate()
            .map(|(p, confirmed)| confirmed.count_not_in(self.seen.get(p).unwrap_or(&empty)))
            .sum()
    }

    pub fn order_violations(&self) -> u64 {
        self.order.as_ref().map_or(0, |o| o.violations)
    }
}

/// Per FIFO group, one past the highest position delivered so far. A first
/// delivery below it arrived after a message published later: an order
/// violation. A jump ahead is not one by itself: the skipped messages either
/// arrive later (then they are the violations) or never (then they are losses).
#[derive(Debug, Clone, Default)]
pub struct OrderCheck {
    next: Vec<u64>,
    pub violations: u64,
}

impl OrderCheck {
    /// Checks the first delivery of a message at `group_seq` in `group`.
    pub fn check(&mut self, group: u32, group_seq: u64) {
        let g = group as usize;
        if g >= self.next.len() {
            self.next.resize(g + 1, 0);
        }
        if group_seq < self.next[g] {
            self.violations += 1;
        } else {
            self.next[g] = group_seq + 1;
        }
    }
}

/// The tally of a run over every queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Confirmed publishes.
    pub published: u64,
    /// Confirmed publishes × queues.
    pub expected: u64,
    /// Copies of confirmed messages delivered at least once.
    pub delivered: u64,
    /// Copies of confirmed messages never delivered.
    pub losses: u64,
    pub duplicates: u64,
    pub redeliveries: u64,
    /// Copies of messages from failed publish requests that arrived anyway
    /// (the request took effect although its answer was lost). Not an error.
    pub unconfirmed_delivered: u64,
    /// Messages nobody published in this run: malformed bodies, or stamps
    /// beyond anything sent.
    pub unexpected: u64,
    pub order_violations: u64,
}

impl Verdict {
    /// Nothing lost, nothing doubled, nothing foreign, nothing out of order.
    pub fn is_clean(&self) -> bool {
        self.losses == 0
            && self.duplicates == 0
            && self.unexpected == 0
            && self.order_violations == 0
    }
}

/// Compares what every queue delivered with what was published.
pub fn verify(published: &PublishLedger, queues: &[&DeliveryLedger]) -> Verdict {
    let confirmed = published.confirmed();
    let mut v = Verdict {
        published: confirmed,
        expected: confirmed * queues.len() as u64,
        ..Verdict::default()
    };
    for q in queues {
        let missing = q.missing(published);
        v.losses += missing;
        v.delivered += confirmed - missing;
        v.duplicates += q.duplicates;
        v.redeliveries += q.redeliveries;
        v.unexpected += q.malformed;
        v.order_violations += q.order_violations();
        for (p, seen) in q.seen.iter().enumerate() {
            let p = p as u32;
            for (w, word) in seen.words.iter().enumerate() {
                let mut bits = *word;
                while bits != 0 {
                    let seq = w as u64 * 64 + u64::from(bits.trailing_zeros());
                    bits &= bits - 1;
                    if published.is_confirmed(p, seq) {
                        continue;
                    }
                    if published.was_attempted(p, seq) {
                        v.unconfirmed_delivered += 1;
                    } else {
                        v.unexpected += 1;
                    }
                }
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(publisher: u32, seq: u64) -> Stamp {
        Stamp {
            publisher,
            seq,
            group: 0,
            group_seq: 0,
            sent_ns: 0,
        }
    }

    fn published(publishers: usize, per_publisher: u64) -> PublishLedger {
        let mut ledger = PublishLedger::new(publishers);
        for p in 0..publishers as u32 {
            ledger.attempt(p, per_publisher);
            for s in 0..per_publisher {
                ledger.confirm(p, s);
            }
        }
        ledger
    }

    #[test]
    fn bitset_counts_and_differences() {
        let mut a = BitSet::default();
        assert!(a.insert(3));
        assert!(!a.insert(3));
        assert!(a.insert(200));
        assert_eq!(a.len(), 2);
        assert!(a.contains(200) && !a.contains(4) && !a.contains(10_000));
        let mut b = BitSet::default();
        b.insert(3);
        assert_eq!(a.count_not_in(&b), 1);
        assert_eq!(b.count_not_in(&a), 0);
    }

    #[test]
    fn a_complete_delivery_to_every_queue_is_clean() {
        let pubs = published(2, 100);
        let mut queues = vec![DeliveryLedger::new(), DeliveryLedger::new()];
        for q in &mut queues {
            for p in 0..2 {
                for s in 0..100 {
                    assert_eq!(q.record(&stamp(p, s), 1), Delivery::First);
                }
            }
        }
        let v = verify(&pubs, &queues.iter().collect::<Vec<_>>());
        assert_eq!(v.published, 200);
        assert_eq!(v.expected, 400);
        assert_eq!(v.delivered, 400);
        assert_eq!(v.losses, 0);
        assert!(v.is_clean(), "{v:?}");
    }

    #[test]
    fn gaps_are_losses_on_the_queue_that_has_them() {
        let pubs = published(1, 10);
        let mut full = DeliveryLedger::new();
        let mut gappy = DeliveryLedger::new();
        for s in 0..10 {
            full.record(&stamp(0, s), 1);
            if s != 4 && s != 7 {
                gappy.record(&stamp(0, s), 1);
            }
        }
        assert_eq!(gappy.missing(&pubs), 2);
        let v = verify(&pubs, &[&full, &gappy]);
        assert_eq!(v.losses, 2);
        assert_eq!(v.delivered, 18);
        assert!(!v.is_clean());
    }

    #[test]
    fn a_second_first_receive_is_a_duplicate_and_a_higher_count_a_redelivery() {
        let pubs = published(1, 3);
        let mut q = DeliveryLedger::new();
        for s in 0..3 {
            q.record(&stamp(0, s), 1);
        }
        assert_eq!(q.record(&stamp(0, 1), 2), Delivery::Redelivery);
        assert_eq!(q.record(&stamp(0, 2), 1), Delivery::Duplicate);
        let v = verify(&pubs, &[&q]);
        assert_eq!((v.duplicates, v.redeliveries, v.losses), (1, 1, 0));
        assert_eq!(v.delivered, 3, "repeats do not count as more copies");
        assert!(!v.is_clean(), "a duplicate breaks the contract");
    }

    #[test]
    fn unconfirmed_and_foreign_messages_are_told_apart() {
        let mut pubs = PublishLedger::new(1);
        pubs.attempt(0, 10);
        for s in 0..5 {
            pubs.confirm(0, s);
        }
        // 5..10 went out in a request whose answer was lost.
        let mut q = DeliveryLedger::new();
        for s in 0..7 {
            q.record(&stamp(0, s), 1);
        }
        q.record(&stamp(0, 50), 1); // never sent
        q.record(&stamp(9, 0), 1); // no such publisher
        q.record_malformed();
        let v = verify(&pubs, &[&q]);
        assert_eq!(v.published, 5);
        assert_eq!(v.losses, 0, "unconfirmed messages are not expected");
        assert_eq!(v.unconfirmed_delivered, 2);
        assert_eq!(v.unexpected, 3);
        assert!(!v.is_clean());
    }

    #[test]
    fn fifo_order_is_checked_per_group() {
        let mut q = DeliveryLedger::with_order_check();
        let at = |seq, group, group_seq| Stamp {
            publisher: 0,
            seq,
            group,
            group_seq,
            sent_ns: 0,
        };
        // Groups interleave freely; within each, positions must follow.
        q.record(&at(0, 0, 0), 1);
        q.record(&at(1, 1, 0), 1);
        q.record(&at(2, 0, 1), 1);
        q.record(&at(3, 1, 1), 1);
        assert_eq!(q.order_violations(), 0);
        // A redelivery of an earlier message is no violation.
        q.record(&at(2, 0, 1), 2);
        assert_eq!(q.order_violations(), 0);
        // Group 0 skips position 2 (not yet a violation: it may be lost),
        // then position 2 arrives after position 3: one violation.
        q.record(&at(5, 0, 3), 1);
        assert_eq!(q.order_violations(), 0);
        q.record(&at(4, 0, 2), 1);
        assert_eq!(q.order_violations(), 1);
        // Group 1 is unaffected.
        q.record(&at(6, 1, 2), 1);
        assert_eq!(q.order_violations(), 1);
    }
}
