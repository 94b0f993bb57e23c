//! Unit tests of the engine's rules, one behaviour each, with time advanced by hand.

use std::sync::Arc;

use super::*;
use crate::model::{
    Attributes, BodyEncoding, DeadLetterSettings, MessageData, MessageId, QueueName, QueueSettings,
    RetryBackoff,
};

const T0: Millis = 1_000_000;

fn msg(body: &str) -> Arc<MessageData> {
    Arc::new(MessageData {
        id: MessageId::generate(T0),
        body: body.to_string(),
        body_encoding: BodyEncoding::Text,
        attributes: Attributes::new(),
        group_id: None,
        dedup_id: None,
        topic: None,
        poison: false,
        sent_at: T0,
        size: body.len(),
        visible_at: None,
        loc: Default::default(),
        copies: 1,
    })
}

fn std_queue(settings: QueueSettings) -> QueueState {
    QueueState::new(QueueName::new("q").expect("valid"), 1, settings)
}

fn fifo_queue() -> QueueState {
    std_queue(QueueSettings {
        fifo: true,
        ..QueueSettings::default()
    })
}

fn send(q: &mut QueueState, body: &str) -> u64 {
    match q.enqueue(msg(body), EnqueueOptions::default(), T0) {
        Ok(EnqueueOutcome::Enqueued { seq }) => seq,
        other => panic!("unexpected {other:?}"),
    }
}

fn send_group(q: &mut QueueState, body: &str, group: &str, now: Millis) -> EnqueueOutcome {
    q.enqueue(
        msg(body),
        EnqueueOptions {
            group_id: Some(Arc::from(group)),
            dedup_id: Some(Arc::from(body)),
            ..EnqueueOptions::default()
        },
        now,
    )
    .expect("fifo enqueue")
}

fn bodies(d: &[Delivery]) -> Vec<&str> {
    d.iter()
        .map(|d| d.message.mem().expect("in memory").body.as_str())
        .collect()
}

#[test]
fn standard_queue_delivers_in_arrival_order_and_ack_deletes() {
    let mut q = std_queue(QueueSettings::default());
    send(&mut q, "a");
    send(&mut q, "b");
    let got = q.receive(10, None, T0);
    assert_eq!(bodies(&got), ["a", "b"]);
    assert_eq!(got[0].receive_count, 1);
    for d in &got {
        q.ack(&d.receipt).expect("ack");
    }
    assert!(q.is_empty());
    assert_eq!(q.stats(T0).totals.acked, 2);
}

#[test]
fn received_message_is_hidden_until_visibility_lapses() {
    let mut q = std_queue(QueueSettings::default());
    send(&mut q, "a");
    let first = q.receive(1, Some(5_000), T0);
    assert_eq!(first.len(), 1);
    q.tick(T0 + 4_999);
    assert!(q.receive(1, None, T0 + 4_999).is_empty());
    let out = q.tick(T0 + 5_000);
    assert!(out.became_visible);
    let again = q.receive(1, None, T0 + 5_000);
    assert_eq!(again[0].receive_count, 2);
    assert_eq!(again[0].first_received_at, T0);
    assert_eq!(q.ack(&first[0].receipt), Err(ReceiptError::Stale));
    assert_eq!(q.ack(&again[0].receipt), Ok(()));
}

#[test]
fn receipt_stays_valid_after_lapse_until_received_again() {
    let mut q = std_queue(QueueSettings::default());
    send(&mut q, "a");
    let d = q.receive(1, Some(1_000), T0);
    q.tick(T0 + 2_000);
    assert_eq!(q.ack(&d[0].receipt), Ok(()));
    assert!(q.receive(1, None, T0 + 2_000).is_empty());
}

#[test]
fn acking_twice_is_ok_but_nack_after_ack_is_stale() {
    let mut q = std_queue(QueueSettings::default());
    send(&mut q, "a");
    let d = q.receive(1, None, T0);
    assert_eq!(q.ack(&d[0].receipt), Ok(()));
    assert_eq!(q.ack(&d[0].receipt), Ok(()));
    assert_eq!(
        q.nack(&d[0].receipt, None, T0).err(),
        Some(ReceiptError::Stale)
    );
    assert_eq!(
        q.change_visibility(&d[0].receipt, 10, T0),
        Err(ReceiptError::Stale)
    );
}

#[test]
fn receipts_of_another_queue_or_unissued_are_invalid() {
    let mut q = std_queue(QueueSettings::default());
    send(&mut q, "a");
    let d = q.receive(1, None, T0);
    let mut other = d[0].receipt;
    other.queue_uid = 99;
    assert_eq!(q.ack(&other), Err(ReceiptError::Invalid));
    let mut future = d[0].receipt;
    future.seq = 50;
    assert_eq!(q.ack(&future), Err(ReceiptError::Invalid));
    let mut ahead = d[0].receipt;
    ahead.lease = 7;
    assert_eq!(q.ack(&ahead), Err(ReceiptError::Invalid));
}

#[test]
fn queue_delay_and_per_message_delay_hide_new_messages() {
    let mut q = std_queue(QueueSettings {
        delay_seconds: 10,
        ..QueueSettings::default()
    });
    send(&mut q, "queue-delay");
    q.enqueue(
        msg("at"),
        EnqueueOptions {
            visible_at: Some(T0 + 3_000),
            ..EnqueueOptions::default()
        },
        T0,
    )
    .expect("enqueue");
    assert_eq!(q.stats(T0).delayed, 2);
    assert_eq!(q.next_deadline(), Some(T0 + 3_000));
    q.tick(T0 + 3_000);
    assert_eq!(bodies(&q.receive(10, None, T0 + 3_000)), ["at"]);
    q.tick(T0 + 10_000);
    assert_eq!(bodies(&q.receive(10, None, T0 + 10_000)), ["queue-delay"]);
}

#[test]
fn nack_with_delay_hides_then_redelivers() {
    let mut q = std_queue(QueueSettings::default());
    send(&mut q, "a");
    let d = q.receive(1, None, T0);
    assert!(q
        .nack(&d[0].receipt, Some(2_000), T0)
        .expect("nack")
        .is_none());
    q.tick(T0 + 1_999);
    assert!(q.receive(1, None, T0 + 1_999).is_empty());
    q.tick(T0 + 2_000);
    assert_eq!(q.receive(1, None, T0 + 2_000).len(), 1);
}

#[test]
fn retry_backoff_applies_to_lapses_and_plain_nacks_but_explicit_delay_wins() {
    let mut q = std_queue(QueueSettings {
        retry_backoff: Some(RetryBackoff {
            initial_seconds: 2,
            max_seconds: 5,
        }),
        ..QueueSettings::default()
    });
    send(&mut q, "a");
    let d1 = q.receive(1, Some(1_000), T0);
    q.tick(T0 + 1_000); // lapse after receive 1: wait 2 s
    q.tick(T0 + 2_999);
    assert!(q.receive(1, None, T0 + 2_999).is_empty());
    q.tick(T0 + 3_000);
    let d2 = q.receive(1, None, T0 + 3_000);
    assert_eq!(d2.len(), 1);
    assert_eq!(q.ack(&d1[0].receipt), Err(ReceiptError::Stale));
    // plain nack after receive 2: wait 4 s
    q.nack(&d2[0].receipt, None, T0 + 3_000).expect("nack");
    q.tick(T0 + 6_999);
    assert!(q.receive(1, None, T0 + 6_999).is_empty());
    q.tick(T0 + 7_000);
    let d3 = q.receive(1, None, T0 + 7_000);
    // explicit zero delay wins over backoff
    q.nack(&d3[0].receipt, Some(0), T0 + 7_000).expect("nack");
    assert_eq!(q.receive(1, None, T0 + 7_000).len(), 1);
}

#[test]
fn message_moves_to_dead_letter_after_max_receives() {
    let mut q = std_queue(QueueSettings {
        dead_letter: Some(DeadLetterSettings {
            queue: QueueName::new("dlq").expect("valid"),
            max_receives: 2,
        }),
        ..QueueSettings::default()
    });
    send(&mut q, "a");
    let d1 = q.receive(1, None, T0);
    assert!(q.nack(&d1[0].receipt, None, T0).expect("nack").is_none());
    let d2 = q.receive(1, Some(1_000), T0);
    assert_eq!(d2[0].receive_count, 2);
    let out = q.tick(T0 + 1_000);
    assert_eq!(out.dead_letters.len(), 1);
    let mv = &out.dead_letters[0];
    assert_eq!(mv.target.as_str(), "dlq");
    assert_eq!(mv.receive_count, 2);
    assert!(q.is_empty());
    assert_eq!(q.stats(T0).totals.dead_lettered, 1);
}

#[test]
fn retention_drops_old_messages_including_in_flight() {
    let mut q = std_queue(QueueSettings {
        retention_seconds: 60,
        ..QueueSettings::default()
    });
    send(&mut q, "a");
    send(&mut q, "b");
    let _ = q.receive(1, Some(100_000), T0);
    let out = q.tick(T0 + 60_000);
    assert_eq!(out.expired, 2);
    assert!(q.is_empty());
}

#[test]
fn purge_drops_everything_in_flight_too() {
    let mut q = std_queue(QueueSettings::default());
    send(&mut q, "a");
    send(&mut q, "b");
    let d = q.receive(1, None, T0);
    assert_eq!(q.purge(), 2);
    assert_eq!(
        q.stats(T0),
        QueueStats {
            totals: QueueTotals {
                sent: 2,
                received: 1,
                purged: 2,
                ..QueueTotals::default()
            },
            ..QueueStats::default()
        }
    );
    assert_eq!(q.ack(&d[0].receipt), Ok(()));
}

#[test]
fn fifo_group_blocks_while_in_flight() {
    let mut q = fifo_queue();
    send_group(&mut q, "a1", "a", T0);
    send_group(&mut q, "a2", "a", T0);
    send_group(&mut q, "b1", "b", T0);
    let first = q.receive(1, None, T0);
    assert_eq!(bodies(&first), ["a1"]);
    // group a is blocked; b proceeds
    assert_eq!(bodies(&q.receive(10, None, T0)), ["b1"]);
    assert!(q.receive(10, None, T0).is_empty());
    q.ack(&first[0].receipt).expect("ack");
    assert_eq!(bodies(&q.receive(10, None, T0)), ["a2"]);
}

#[test]
fn fifo_receive_may_return_several_of_one_group_in_order() {
    let mut q = fifo_queue();
    for b in ["1", "2", "3"] {
        send_group(&mut q, b, "g", T0);
    }
    assert_eq!(bodies(&q.receive(10, None, T0)), ["1", "2", "3"]);
}

#[test]
fn fifo_lapsed_message_is_redelivered_before_later_ones() {
    let mut q = fifo_queue();
    send_group(&mut q, "1", "g", T0);
    send_group(&mut q, "2", "g", T0);
    let d = q.receive(1, Some(1_000), T0);
    assert_eq!(bodies(&d), ["1"]);
    q.tick(T0 + 1_000);
    assert_eq!(bodies(&q.receive(10, None, T0 + 1_000)), ["1", "2"]);
}

#[test]
fn fifo_nack_with_delay_keeps_group_blocked_and_order() {
    let mut q = fifo_queue();
    send_group(&mut q, "1", "g", T0);
    send_group(&mut q, "2", "g", T0);
    let d = q.receive(1, None, T0);
    q.nack(&d[0].receipt, Some(5_000), T0).expect("nack");
    assert!(q.receive(10, None, T0).is_empty());
    q.tick(T0 + 5_000);
    assert_eq!(bodies(&q.receive(10, None, T0 + 5_000)), ["1", "2"]);
}

#[test]
fn fifo_dedup_answers_first_id_and_enqueues_nothing() {
    let mut q = fifo_queue();
    let first = send_group(&mut q, "x", "g", T0);
    assert!(matches!(first, EnqueueOutcome::Enqueued { .. }));
    let dup = send_group(&mut q, "x", "g", T0 + 1_000);
    assert!(matches!(dup, EnqueueOutcome::Duplicate { .. }));
    assert_eq!(q.len(), 1);
    // after the window (300 s) the same id is new again
    q.tick(T0 + 300_000);
    let later = send_group(&mut q, "x", "g", T0 + 300_000);
    assert!(matches!(later, EnqueueOutcome::Enqueued { .. }));
}

#[test]
fn fifo_requires_group_and_dedup() {
    let mut q = fifo_queue();
    assert_eq!(
        q.enqueue(msg("a"), EnqueueOptions::default(), T0),
        Err(EnqueueError::GroupRequired)
    );
    assert_eq!(
        q.enqueue(
            msg("a"),
            EnqueueOptions {
                group_id: Some(Arc::from("g")),
                ..EnqueueOptions::default()
            },
            T0
        ),
        Err(EnqueueError::DedupRequired)
    );
}

#[test]
fn fifo_dead_letter_unblocks_the_group() {
    let mut q = QueueState::new(
        QueueName::new("f").expect("valid"),
        1,
        QueueSettings {
            fifo: true,
            dead_letter: Some(DeadLetterSettings {
                queue: QueueName::new("dlq").expect("valid"),
                max_receives: 1,
            }),
            ..QueueSettings::default()
        },
    );
    send_group(&mut q, "1", "g", T0);
    send_group(&mut q, "2", "g", T0);
    let d = q.receive(1, None, T0);
    let mv = q.nack(&d[0].receipt, None, T0).expect("nack");
    assert_eq!(mv.map(|m| m.group_id), Some(Some(Arc::from("g"))));
    assert_eq!(bodies(&q.receive(10, None, T0)), ["2"]);
}

#[test]
fn release_undoes_a_receive_without_counting_it() {
    let mut q = fifo_queue();
    send_group(&mut q, "1", "g", T0);
    let d = q.receive(1, None, T0);
    q.release(&d);
    let again = q.receive(1, None, T0);
    assert_eq!(again[0].receive_count, 1);
    assert_eq!(q.stats(T0).totals.received, 1);
}

#[test]
fn visibility_change_extends_and_shortens() {
    let mut q = std_queue(QueueSettings::default());
    send(&mut q, "a");
    let d = q.receive(1, Some(1_000), T0);
    q.change_visibility(&d[0].receipt, 10_000, T0 + 500)
        .expect("extend");
    q.tick(T0 + 5_000);
    assert!(q.receive(1, None, T0 + 5_000).is_empty());
    q.change_visibility(&d[0].receipt, 0, T0 + 5_000)
        .expect("shorten");
    q.tick(T0 + 5_000);
    assert_eq!(q.receive(1, None, T0 + 5_000).len(), 1);
}

#[test]
fn redrive_takes_messages_not_in_flight_with_their_source() {
    let mut q = std_queue(QueueSettings::default());
    q.enqueue(
        msg("dead"),
        EnqueueOptions {
            dead_letter_source: Some(QueueName::new("src").expect("valid")),
            receive_count: 3,
            ..EnqueueOptions::default()
        },
        T0,
    )
    .expect("enqueue");
    send(&mut q, "busy");
    let _busy = q.receive(10, None, T0);
    // both are in flight now; release the first back
    q.return_now(&[_busy[0].receipt]);
    let items = q.take_for_redrive(10, |_| true);
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].source.as_ref().map(|s| s.as_str()), Some("src"));
}

#[test]
fn timer_heap_stays_bounded_under_ack_churn() {
    let mut q = std_queue(QueueSettings::default());
    for i in 0..10_000u64 {
        send(&mut q, "x");
        let d = q.receive(1, None, T0 + i);
        q.ack(&d[0].receipt).expect("ack");
    }
    assert!(q.timers.len() <= 1024 + 2, "heap {}", q.timers.len());
    assert!(q.entries.is_empty(), "nothing left behind");
}

#[test]
fn page_out_swaps_written_messages_for_their_location_and_stops_at_unwritten() {
    use crate::model::{BodyLoc, MsgRef};
    let mut q = std_queue(QueueSettings::default());
    let msgs: Vec<_> = (0..10).map(|i| msg(&format!("m{i}"))).collect();
    for m in &msgs {
        q.enqueue(m.clone(), EnqueueOptions::default(), T0)
            .expect("enqueue");
    }
    let all = q.resident_bytes();
    assert!(all > 0);
    // The first six are written; the seventh is not (yet).
    for (i, m) in msgs.iter().take(6).enumerate() {
        m.loc.set(BodyLoc::new(1, 100 + i as u64).expect("fits"));
    }
    let freed = q.page_out(0, usize::MAX);
    assert_eq!(freed + q.resident_bytes(), all);
    let d = q.receive(10, None, T0);
    let disk = d
        .iter()
        .filter(|d| matches!(d.message, MsgRef::Disk(_)))
        .count();
    assert_eq!(disk, 6, "written ones are held by location");
    assert!(
        matches!(&d[6].message, MsgRef::Mem(_)),
        "unwritten ones stay"
    );
    // The rest is paged once written; the cursor does not rescan.
    for (i, m) in msgs.iter().enumerate().skip(6) {
        m.loc.set(BodyLoc::new(2, i as u64).expect("fits"));
    }
    q.page_out(0, usize::MAX);
    assert_eq!(q.resident_bytes(), 0);
    for x in &d {
        q.ack(&x.receipt).expect("ack");
    }
    assert!(q.is_empty());
}
