//! A proptest strategy for arbitrary log records (every type a segment can
//! hold, with bodies large enough to fill small segments).

use std::sync::Arc;

use proptest::prelude::*;

use crate::model::{
    BodyEncoding, DeadLetterSettings, MessageData, MessageId, QueueName, QueueSettings, TopicName,
    TopicSettings,
};
use crate::storage::{CopyRec, Record};

fn queue_name() -> impl Strategy<Value = QueueName> {
    "[a-z][a-z0-9_.-]{0,11}".prop_map(|s| QueueName::new(&s).expect("the regex makes valid names"))
}

fn topic_name() -> impl Strategy<Value = TopicName> {
    "[a-z][a-z0-9_.-]{0,11}".prop_map(|s| TopicName::new(&s).expect("the regex makes valid names"))
}

fn queue_settings() -> impl Strategy<Value = QueueSettings> {
    (
        any::<bool>(),
        0u32..900,
        proptest::option::of((queue_name(), 1u32..10)),
    )
        .prop_map(|(fifo, delay, dl)| QueueSettings {
            fifo,
            delay_seconds: delay,
            dead_letter: dl.map(|(queue, max_receives)| DeadLetterSettings {
                queue,
                max_receives,
            }),
            ..QueueSettings::default()
        })
}

fn copy_rec() -> impl Strategy<Value = CopyRec> {
    (
        any::<u64>(),
        1u64..1_000_000,
        0u32..10,
        any::<u64>(),
        proptest::option::of(any::<u64>()),
        proptest::option::of(queue_name()),
    )
        .prop_map(
            |(queue_uid, seq, receive_count, enqueued_at, visible_at, dead_letter_source)| {
                CopyRec {
                    queue_uid,
                    seq,
                    receive_count,
                    enqueued_at,
                    visible_at,
                    dead_letter_source,
                }
            },
        )
}

fn message() -> impl Strategy<Value = Arc<MessageData>> {
    (
        any::<u128>(),
        prop_oneof![
            3 => "\\PC{0,40}",
            1 => "[a-z]{200,1500}",
        ],
        any::<bool>(),
        proptest::collection::btree_map("[a-z]{1,6}", "\\PC{0,8}", 0..3),
        proptest::option::of("[a-z0-9]{1,8}"),
        proptest::option::of("[a-z0-9]{1,8}"),
        proptest::option::of(topic_name()),
        (any::<bool>(), any::<u64>(), 0usize..2_000_000),
        proptest::option::of(any::<u64>()),
    )
        .prop_map(
            |(id, body, base64, attributes, group, dedup, topic, (poison, sent_at, size), vis)| {
                Arc::new(MessageData {
                    id: MessageId(id),
                    body,
                    body_encoding: if base64 {
                        BodyEncoding::Base64
                    } else {
                        BodyEncoding::Text
                    },
                    attributes,
                    group_id: group.map(|g| Arc::from(g.as_str())),
                    dedup_id: dedup.map(|d| Arc::from(d.as_str())),
                    topic,
                    poison,
                    sent_at,
                    size,
                    visible_at: vis,
                    loc: Default::default(),
                    copies: 1,
                })
            },
        )
}

/// Any record a segment or snapshot holds, except `SnapshotEnd` (the log
/// writes that one itself).
pub fn record() -> impl Strategy<Value = Record> {
    prop_oneof![
        1 => (topic_name(), any::<bool>(), 60u32..86_400).prop_map(|(name, fifo, w)| {
            Record::TopicPut {
                name,
                settings: TopicSettings {
                    fifo,
                    content_based_dedup: false,
                    dedup_window_seconds: w,
                },
            }
        }),
        1 => topic_name().prop_map(|name| Record::TopicDelete { name }),
        1 => (queue_name(), any::<u64>(), queue_settings(), any::<bool>()).prop_map(
            |(name, uid, settings, temporary)| Record::QueuePut {
                name,
                uid,
                settings,
                temporary,
            }
        ),
        1 => (queue_name(), any::<u64>()).prop_map(|(name, uid)| Record::QueueDelete { name, uid }),
        1 => (
            topic_name(),
            queue_name(),
            proptest::option::of("\\{\"[a-z]{1,4}\": \\[\"[a-z]{1,4}\"\\]\\}")
        )
            .prop_map(|(topic, queue, filter_json)| Record::Subscribe {
                topic,
                queue,
                filter_json,
            }),
        1 => (topic_name(), queue_name()).prop_map(|(topic, queue)| Record::Unsubscribe { topic, queue }),
        4 => (message(), proptest::collection::vec(copy_rec(), 0..4))
            .prop_map(|(message, copies)| Record::Publish { message, copies }),
        2 => (any::<u64>(), proptest::collection::vec(any::<u64>(), 0..6))
            .prop_map(|(queue_uid, seqs)| Record::Delete { queue_uid, seqs }),
        2 => (
            any::<u64>(),
            proptest::collection::vec((any::<u64>(), any::<u32>(), any::<u64>()), 0..6)
        )
            .prop_map(|(queue_uid, entries)| Record::Received { queue_uid, entries }),
        1 => (any::<u64>(), any::<u64>()).prop_map(|(queue_uid, below_seq)| Record::Purge {
            queue_uid,
            below_seq
        }),
        1 => (any::<u64>(), any::<u64>()).prop_map(|(queue_uid, next_seq)| Record::QueueSeq {
            queue_uid,
            next_seq
        }),
        1 => (
            any::<u64>(),
            proptest::option::of(topic_name()),
            "[a-z0-9]{1,12}",
            any::<u128>(),
            any::<u64>()
        )
            .prop_map(|(queue_uid, topic, key, id, expires_at)| Record::Dedup {
                queue_uid,
                topic,
                key,
                id: MessageId(id),
                expires_at,
            }),
    ]
}
