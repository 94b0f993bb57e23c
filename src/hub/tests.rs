//! Hub tests: fan-out, filters, long-poll hand-off, dead-letter forwarding,
//! FIFO topics, with a manual clock and tokio's paused time.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::model::{DeadLetterSettings, ManualClock};

const T0: Millis = 1_700_000_000_000;

fn hub() -> (Hub, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(T0));
    (Hub::new(clock.clone(), Limits::default()), clock)
}

fn t(s: &str) -> TopicName {
    TopicName::new(s).expect("valid")
}

fn q(s: &str) -> QueueName {
    QueueName::new(s).expect("valid")
}

fn text(body: &str) -> NewMessage {
    NewMessage {
        body: body.into(),
        body_len: body.len(),
        ..NewMessage::default()
    }
}

fn with_attr(body: &str, k: &str, v: &str) -> NewMessage {
    let mut m = text(body);
    m.attributes.insert(k.into(), v.into());
    m
}

async fn recv(h: &Hub, queue: &str, max: u32) -> Vec<Delivery> {
    h.receive(
        &q(queue),
        ReceiveRequest {
            max: Some(max),
            ..ReceiveRequest::default()
        },
    )
    .await
    .expect("receive")
}

#[tokio::test]
async fn publish_fans_out_one_copy_per_matching_queue_with_one_id() {
    let (h, _) = hub();
    h.put_topic(&t("orders"), &TopicSettingsPatch::default())
        .expect("topic");
    for name in ["a", "b", "eu"] {
        h.put_queue(&q(name), &QueueSettingsPatch::default())
            .expect("queue");
    }
    h.subscribe(&t("orders"), &q("a"), None).expect("sub");
    h.subscribe(&t("orders"), &q("b"), None).expect("sub");
    h.subscribe(
        &t("orders"),
        &q("eu"),
        Some(serde_json::json!({"region": [{"prefix": "eu-"}]})),
    )
    .expect("sub");
    let ids = h
        .publish(&t("orders"), vec![with_attr("x", "region", "us-east")])
        .expect("publish");
    let id = *ids[0].as_ref().expect("ok");
    let a = recv(&h, "a", 10).await;
    let b = recv(&h, "b", 10).await;
    assert_eq!(a[0].message.id, id);
    assert_eq!(b[0].message.id, id);
    assert!(Arc::ptr_eq(&a[0].message, &b[0].message), "one body shared");
    assert!(recv(&h, "eu", 10).await.is_empty());
    h.publish(&t("orders"), vec![with_attr("y", "region", "eu-west")])
        .expect("publish");
    assert_eq!(recv(&h, "eu", 10).await.len(), 1);
    let stats = h.describe_topic(&t("orders")).expect("topic").stats;
    assert_eq!(stats.published, 2);
    assert_eq!(stats.delivered, 5, "2 copies, then 3");
}

#[tokio::test]
async fn publish_without_matching_subscription_is_accepted_and_counted() {
    let (h, _) = hub();
    h.put_topic(&t("t"), &TopicSettingsPatch::default())
        .expect("topic");
    let r = h.publish(&t("t"), vec![text("x")]).expect("publish");
    assert!(r[0].is_ok());
    assert_eq!(h.describe_topic(&t("t")).expect("topic").stats.dropped, 1);
}

#[tokio::test]
async fn too_large_for_one_queue_is_refused_everywhere() {
    let (h, _) = hub();
    h.put_topic(&t("t"), &TopicSettingsPatch::default())
        .expect("topic");
    h.put_queue(&q("big"), &QueueSettingsPatch::default())
        .expect("queue");
    h.put_queue(
        &q("small"),
        &QueueSettingsPatch {
            max_message_bytes: Some(1024),
            ..QueueSettingsPatch::default()
        },
    )
    .expect("queue");
    h.subscribe(&t("t"), &q("big"), None).expect("sub");
    h.subscribe(&t("t"), &q("small"), None).expect("sub");
    let r = h
        .publish(&t("t"), vec![text(&"x".repeat(2000))])
        .expect("publish");
    assert!(matches!(r[0], Err(HubError::MessageTooLarge { .. })));
    assert!(recv(&h, "big", 10).await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn long_poll_returns_as_soon_as_a_message_arrives() {
    let (h, _) = hub();
    h.put_queue(&q("w"), &QueueSettingsPatch::default())
        .expect("queue");
    let h2 = h.clone();
    let waiter = tokio::spawn(async move {
        h2.receive(
            &q("w"),
            ReceiveRequest {
                max: Some(10),
                wait_seconds: Some(20),
                ..ReceiveRequest::default()
            },
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let start = tokio::time::Instant::now();
    h.send(&q("w"), vec![text("hi")]).expect("send");
    let got = waiter.await.expect("join").expect("receive");
    assert_eq!(got.len(), 1);
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_in_arrival_order() {
    let (h, _) = hub();
    h.put_queue(&q("w"), &QueueSettingsPatch::default())
        .expect("queue");
    let mut tasks = Vec::new();
    for i in 0..3 {
        let h2 = h.clone();
        tasks.push(tokio::spawn(async move {
            let got = h2
                .receive(
                    &q("w"),
                    ReceiveRequest {
                        wait_seconds: Some(20),
                        ..ReceiveRequest::default()
                    },
                )
                .await
                .expect("receive");
            (i, got[0].message.body.clone())
        }));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for b in ["m0", "m1", "m2"] {
        h.send(&q("w"), vec![text(b)]).expect("send");
    }
    for task in tasks {
        let (i, body) = task.await.expect("join");
        assert_eq!(body, format!("m{i}"));
    }
}

#[tokio::test(start_paused = true)]
async fn long_poll_times_out_empty() {
    let (h, _) = hub();
    h.put_queue(&q("w"), &QueueSettingsPatch::default())
        .expect("queue");
    let got = h
        .receive(
            &q("w"),
            ReceiveRequest {
                wait_seconds: Some(2),
                ..ReceiveRequest::default()
            },
        )
        .await
        .expect("receive");
    assert!(got.is_empty());
    let queue = h.queue(&q("w")).expect("queue");
    assert!(queue.lock().waiters.iter().all(|w| w.tx.is_closed()));
}

#[tokio::test]
async fn waiter_limit_answers_throttled() {
    let clock = Arc::new(ManualClock::new(T0));
    let h = Hub::new(
        clock,
        Limits {
            max_waiters_per_queue: 1,
            ..Limits::default()
        },
    );
    h.put_queue(&q("w"), &QueueSettingsPatch::default())
        .expect("queue");
    let h2 = h.clone();
    let first = tokio::spawn(async move {
        h2.receive(
            &q("w"),
            ReceiveRequest {
                wait_seconds: Some(5),
                ..ReceiveRequest::default()
            },
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = h
        .receive(
            &q("w"),
            ReceiveRequest {
                wait_seconds: Some(5),
                ..ReceiveRequest::default()
            },
        )
        .await;
    assert!(matches!(second, Err(HubError::Throttled(_))));
    h.send(&q("w"), vec![text("x")]).expect("send");
    assert_eq!(first.await.expect("join").expect("receive").len(), 1);
}

#[tokio::test]
async fn dead_letters_are_forwarded_with_source_and_count() {
    let (h, clock) = hub();
    h.put_queue(&q("dlq"), &QueueSettingsPatch::default())
        .expect("dlq");
    h.put_queue(
        &q("work"),
        &QueueSettingsPatch {
            dead_letter: Some(Some(DeadLetterSettings {
                queue: q("dlq"),
                max_receives: 2,
            })),
            visibility_timeout_seconds: Some(1),
            ..QueueSettingsPatch::default()
        },
    )
    .expect("work");
    h.send(&q("work"), vec![text("poison-ish")]).expect("send");
    for _ in 0..2 {
        assert_eq!(recv(&h, "work", 1).await.len(), 1);
        clock.advance(1_000);
    }
    assert!(recv(&h, "work", 1).await.is_empty());
    let dead = recv(&h, "dlq", 1).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].receive_count, 3, "kept count plus this receive");
    assert_eq!(
        dead[0].dead_letter_source.as_ref().map(|s| s.as_str()),
        Some("work")
    );
    assert!(matches!(
        h.delete_queue(&q("dlq")),
        Err(HubError::QueueInUse(_))
    ));
}

#[tokio::test]
async fn dead_letter_loops_and_mismatched_kinds_are_refused() {
    let (h, _) = hub();
    let dl = |name: &str| QueueSettingsPatch {
        dead_letter: Some(Some(DeadLetterSettings {
            queue: q(name),
            max_receives: 3,
        })),
        ..QueueSettingsPatch::default()
    };
    h.put_queue(&q("a"), &QueueSettingsPatch::default())
        .expect("a");
    assert!(matches!(
        h.put_queue(&q("a"), &dl("a")),
        Err(HubError::InvalidSetting(_))
    ));
    h.put_queue(&q("b"), &dl("a")).expect("b -> a");
    assert!(matches!(
        h.put_queue(&q("a"), &dl("b")),
        Err(HubError::InvalidSetting(_))
    ));
    assert!(matches!(
        h.put_queue(&q("c"), &dl("missing")),
        Err(HubError::InvalidSetting(_))
    ));
    let fifo_with_std_dlq = QueueSettingsPatch {
        fifo: Some(true),
        ..dl("a")
    };
    assert!(matches!(
        h.put_queue(&q("f"), &fifo_with_std_dlq),
        Err(HubError::InvalidSetting(_))
    ));
    assert!(h.queue(&q("f")).is_err(), "refused create leaves nothing");
}

#[tokio::test]
async fn fifo_topic_dedups_and_feeds_fifo_and_standard_queues() {
    let (h, _) = hub();
    h.put_topic(
        &t("ft"),
        &TopicSettingsPatch {
            fifo: Some(true),
            ..TopicSettingsPatch::default()
        },
    )
    .expect("topic");
    h.put_queue(
        &q("fq"),
        &QueueSettingsPatch {
            fifo: Some(true),
            ..QueueSettingsPatch::default()
        },
    )
    .expect("fifo queue");
    h.put_queue(&q("sq"), &QueueSettingsPatch::default())
        .expect("std queue");
    h.subscribe(&t("ft"), &q("fq"), None).expect("sub");
    h.subscribe(&t("ft"), &q("sq"), None).expect("sub");
    let m = |body: &str, dedup: &str| NewMessage {
        group_id: Some("g".into()),
        dedup_id: Some(dedup.into()),
        ..text(body)
    };
    let first = h.publish(&t("ft"), vec![m("a", "d1")]).expect("publish");
    let dup = h.publish(&t("ft"), vec![m("a2", "d1")]).expect("publish");
    assert_eq!(first[0], dup[0], "duplicate answers the first id");
    let fq = recv(&h, "fq", 10).await;
    assert_eq!(fq.len(), 1);
    assert_eq!(fq[0].group_id.as_deref(), Some("g"));
    let sq = recv(&h, "sq", 10).await;
    assert_eq!(sq.len(), 1);
    assert_eq!(sq[0].group_id, None, "standard queue drops the group");
    // A standard topic may not feed a FIFO queue.
    h.put_topic(&t("st"), &TopicSettingsPatch::default())
        .expect("topic");
    assert!(matches!(
        h.subscribe(&t("st"), &q("fq"), None),
        Err(HubError::InvalidSetting(_))
    ));
}

#[tokio::test]
async fn deleting_a_subscribed_queue_is_refused_until_unsubscribed() {
    let (h, _) = hub();
    h.put_topic(&t("t"), &TopicSettingsPatch::default())
        .expect("topic");
    h.put_queue(&q("x"), &QueueSettingsPatch::default())
        .expect("queue");
    h.subscribe(&t("t"), &q("x"), None).expect("sub");
    assert!(matches!(
        h.delete_queue(&q("x")),
        Err(HubError::QueueInUse(_))
    ));
    h.unsubscribe(&t("t"), &q("x")).expect("unsub");
    h.delete_queue(&q("x")).expect("delete");
    assert!(matches!(
        h.delete_queue(&q("x")),
        Err(HubError::QueueNotFound(_))
    ));
}

#[tokio::test]
async fn redrive_moves_dead_letters_home_with_count_reset() {
    let (h, _) = hub();
    h.put_queue(&q("dlq"), &QueueSettingsPatch::default())
        .expect("dlq");
    h.put_queue(
        &q("work"),
        &QueueSettingsPatch {
            dead_letter: Some(Some(DeadLetterSettings {
                queue: q("dlq"),
                max_receives: 1,
            })),
            ..QueueSettingsPatch::default()
        },
    )
    .expect("work");
    h.send(&q("work"), vec![text("a"), text("b")])
        .expect("send");
    let got = recv(&h, "work", 10).await;
    let receipts: Vec<Receipt> = got.iter().map(|d| d.receipt).collect();
    h.nack(&q("work"), &receipts, None).expect("nack");
    assert!(matches!(
        h.redrive(&q("work"), None),
        Err(HubError::NotADeadLetterQueue(_))
    ));
    let started = h.redrive(&q("dlq"), None).expect("redrive");
    assert_eq!(started.messages, 2);
    for _ in 0..100 {
        if h.describe_queue(&q("dlq"))
            .expect("dlq")
            .redrive
            .is_some_and(|r| !r.running)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let back = recv(&h, "work", 10).await;
    assert_eq!(back.len(), 2);
    assert!(back.iter().all(|d| d.receive_count == 1));
}
