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
        .await
        .expect("topic");
    for name in ["a", "b", "eu"] {
        h.put_queue(&q(name), &QueueSettingsPatch::default())
            .await
            .expect("queue");
    }
    h.subscribe(&t("orders"), &q("a"), None).await.expect("sub");
    h.subscribe(&t("orders"), &q("b"), None).await.expect("sub");
    h.subscribe(
        &t("orders"),
        &q("eu"),
        Some(serde_json::json!({"region": [{"prefix": "eu-"}]})),
    )
    .await
    .expect("sub");
    let ids = h
        .publish(&t("orders"), vec![with_attr("x", "region", "us-east")])
        .await
        .expect("publish");
    let id = *ids[0].as_ref().expect("ok");
    let a = recv(&h, "a", 10).await;
    let b = recv(&h, "b", 10).await;
    assert_eq!(a[0].message.id, id);
    assert_eq!(b[0].message.id, id);
    assert!(Arc::ptr_eq(&a[0].message, &b[0].message), "one body shared");
    assert!(recv(&h, "eu", 10).await.is_empty());
    h.publish(&t("orders"), vec![with_attr("y", "region", "eu-west")])
        .await
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
        .await
        .expect("topic");
    let r = h.publish(&t("t"), vec![text("x")]).await.expect("publish");
    assert!(r[0].is_ok());
    assert_eq!(h.describe_topic(&t("t")).expect("topic").stats.dropped, 1);
}

#[tokio::test]
async fn too_large_for_one_queue_is_refused_everywhere() {
    let (h, _) = hub();
    h.put_topic(&t("t"), &TopicSettingsPatch::default())
        .await
        .expect("topic");
    h.put_queue(&q("big"), &QueueSettingsPatch::default())
        .await
        .expect("queue");
    h.put_queue(
        &q("small"),
        &QueueSettingsPatch {
            max_message_bytes: Some(1024),
            ..QueueSettingsPatch::default()
        },
    )
    .await
    .expect("queue");
    h.subscribe(&t("t"), &q("big"), None).await.expect("sub");
    h.subscribe(&t("t"), &q("small"), None).await.expect("sub");
    let r = h
        .publish(&t("t"), vec![text(&"x".repeat(2000))])
        .await
        .expect("publish");
    assert!(matches!(r[0], Err(HubError::MessageTooLarge { .. })));
    assert!(recv(&h, "big", 10).await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn long_poll_returns_as_soon_as_a_message_arrives() {
    let (h, _) = hub();
    h.put_queue(&q("w"), &QueueSettingsPatch::default())
        .await
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
    h.send(&q("w"), vec![text("hi")]).await.expect("send");
    let got = waiter.await.expect("join").expect("receive");
    assert_eq!(got.len(), 1);
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_in_arrival_order() {
    let (h, _) = hub();
    h.put_queue(&q("w"), &QueueSettingsPatch::default())
        .await
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
        h.send(&q("w"), vec![text(b)]).await.expect("send");
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
        .await
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
        .await
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
    h.send(&q("w"), vec![text("x")]).await.expect("send");
    assert_eq!(first.await.expect("join").expect("receive").len(), 1);
}

#[tokio::test]
async fn dead_letters_are_forwarded_with_source_and_count() {
    let (h, clock) = hub();
    h.put_queue(&q("dlq"), &QueueSettingsPatch::default())
        .await
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
    .await
    .expect("work");
    h.send(&q("work"), vec![text("poison-ish")])
        .await
        .expect("send");
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
        h.delete_queue(&q("dlq")).await,
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
        .await
        .expect("a");
    assert!(matches!(
        h.put_queue(&q("a"), &dl("a")).await,
        Err(HubError::InvalidSetting(_))
    ));
    h.put_queue(&q("b"), &dl("a")).await.expect("b -> a");
    assert!(matches!(
        h.put_queue(&q("a"), &dl("b")).await,
        Err(HubError::InvalidSetting(_))
    ));
    assert!(matches!(
        h.put_queue(&q("c"), &dl("missing")).await,
        Err(HubError::InvalidSetting(_))
    ));
    let fifo_with_std_dlq = QueueSettingsPatch {
        fifo: Some(true),
        ..dl("a")
    };
    assert!(matches!(
        h.put_queue(&q("f"), &fifo_with_std_dlq).await,
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
    .await
    .expect("topic");
    h.put_queue(
        &q("fq"),
        &QueueSettingsPatch {
            fifo: Some(true),
            ..QueueSettingsPatch::default()
        },
    )
    .await
    .expect("fifo queue");
    h.put_queue(&q("sq"), &QueueSettingsPatch::default())
        .await
        .expect("std queue");
    h.subscribe(&t("ft"), &q("fq"), None).await.expect("sub");
    h.subscribe(&t("ft"), &q("sq"), None).await.expect("sub");
    let m = |body: &str, dedup: &str| NewMessage {
        group_id: Some("g".into()),
        dedup_id: Some(dedup.into()),
        ..text(body)
    };
    let first = h
        .publish(&t("ft"), vec![m("a", "d1")])
        .await
        .expect("publish");
    let dup = h
        .publish(&t("ft"), vec![m("a2", "d1")])
        .await
        .expect("publish");
    assert_eq!(first[0], dup[0], "duplicate answers the first id");
    let fq = recv(&h, "fq", 10).await;
    assert_eq!(fq.len(), 1);
    assert_eq!(fq[0].group_id.as_deref(), Some("g"));
    let sq = recv(&h, "sq", 10).await;
    assert_eq!(sq.len(), 1);
    assert_eq!(sq[0].group_id, None, "standard queue drops the group");
    // A standard topic may not feed a FIFO queue.
    h.put_topic(&t("st"), &TopicSettingsPatch::default())
        .await
        .expect("topic");
    assert!(matches!(
        h.subscribe(&t("st"), &q("fq"), None).await,
        Err(HubError::InvalidSetting(_))
    ));
}

#[tokio::test]
async fn deleting_a_subscribed_queue_is_refused_until_unsubscribed() {
    let (h, _) = hub();
    h.put_topic(&t("t"), &TopicSettingsPatch::default())
        .await
        .expect("topic");
    h.put_queue(&q("x"), &QueueSettingsPatch::default())
        .await
        .expect("queue");
    h.subscribe(&t("t"), &q("x"), None).await.expect("sub");
    assert!(matches!(
        h.delete_queue(&q("x")).await,
        Err(HubError::QueueInUse(_))
    ));
    h.unsubscribe(&t("t"), &q("x")).await.expect("unsub");
    h.delete_queue(&q("x")).await.expect("delete");
    assert!(matches!(
        h.delete_queue(&q("x")).await,
        Err(HubError::QueueNotFound(_))
    ));
}

#[tokio::test]
async fn redrive_moves_dead_letters_home_with_count_reset() {
    let (h, _) = hub();
    h.put_queue(&q("dlq"), &QueueSettingsPatch::default())
        .await
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
    .await
    .expect("work");
    h.send(&q("work"), vec![text("a"), text("b")])
        .await
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

// ---- durability: restart tests with the disk log ----

mod durable {
    use super::*;
    use crate::config::FsyncPolicy;
    use crate::storage::{DiskLog, DiskLogConfig};

    fn open(dir: &std::path::Path, clock: Arc<ManualClock>) -> Hub {
        open_with(dir, clock, None, Limits::default())
    }

    /// A hub on the disk log in `dir`, with smaller segments if asked.
    fn open_with(
        dir: &std::path::Path,
        clock: Arc<ManualClock>,
        segment_bytes: Option<u64>,
        limits: Limits,
    ) -> Hub {
        let mut cfg = DiskLogConfig::new(
            dir.to_path_buf(),
            FsyncPolicy::Always,
            Duration::from_millis(10),
        );
        if let Some(b) = segment_bytes {
            cfg.segment_bytes = b;
        }
        let log = DiskLog::open(cfg).expect("open log");
        Hub::with_storage(clock, limits, Arc::new(log))
    }

    async fn reopen(dir: &std::path::Path, clock: Arc<ManualClock>) -> Hub {
        let h = open(dir, clock);
        h.restore().await.expect("restore");
        h
    }

    #[tokio::test]
    async fn definitions_messages_and_acks_survive_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = Arc::new(ManualClock::new(T0));
        let acked_id;
        {
            let h = reopen(dir.path(), clock.clone()).await;
            h.put_topic(&t("orders"), &TopicSettingsPatch::default())
                .await
                .expect("topic");
            h.put_queue(&q("dlq"), &QueueSettingsPatch::default())
                .await
                .expect("dlq");
            h.put_queue(
                &q("work"),
                &QueueSettingsPatch {
                    visibility_timeout_seconds: Some(60),
                    dead_letter: Some(Some(DeadLetterSettings {
                        queue: q("dlq"),
                        max_receives: 3,
                    })),
                    ..QueueSettingsPatch::default()
                },
            )
            .await
            .expect("work");
            h.subscribe(
                &t("orders"),
                &q("work"),
                Some(serde_json::json!({"k": ["v"]})),
            )
            .await
            .expect("sub");
            h.publish(
                &t("orders"),
                vec![
                    with_attr("one", "k", "v"),
                    with_attr("two", "k", "v"),
                    with_attr("three", "k", "v"),
                ],
            )
            .await
            .expect("publish");
            let got = recv(&h, "work", 2).await;
            acked_id = got[0].message.id;
            h.ack(&q("work"), &[got[0].receipt]).await.expect("ack");
            // got[1] stays in flight: it must come back visible with count 1.
        }
        let h = reopen(dir.path(), clock.clone()).await;
        let info = h.describe_queue(&q("work")).expect("work");
        assert_eq!(info.settings.visibility_timeout_seconds, 60);
        assert_eq!(info.stats.visible, 2);
        let topic = h.describe_topic(&t("orders")).expect("topic");
        assert_eq!(topic.subscriptions.len(), 1);
        assert!(topic.subscriptions[0].filter.is_some());
        let got = recv(&h, "work", 10).await;
        assert_eq!(got.len(), 2);
        assert!(
            got.iter().all(|d| d.message.id != acked_id),
            "acked stays acked"
        );
        let counts: Vec<u32> = got.iter().map(|d| d.receive_count).collect();
        assert_eq!(counts, vec![2, 1], "in-flight one kept its count");
        // Publishing after restart does not reuse sequence numbers.
        h.publish(&t("orders"), vec![with_attr("four", "k", "v")])
            .await
            .expect("publish");
        let four = recv(&h, "work", 10).await;
        assert!(four[0].seq > got.iter().map(|d| d.seq).max().unwrap_or(0));
    }

    /// A parked receive handed a message by a publish or send has its
    /// receive count logged in that write (standard queues) or by itself
    /// (FIFO, logged under the queue's lock): either way a restart keeps
    /// the count, so the next receive is the second.
    #[tokio::test]
    async fn receive_counts_of_messages_handed_to_parked_receives_survive_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = Arc::new(ManualClock::new(T0));
        {
            let h = reopen(dir.path(), clock.clone()).await;
            h.put_topic(&t("orders"), &TopicSettingsPatch::default())
                .await
                .expect("topic");
            let fifo = QueueSettingsPatch {
                fifo: Some(true),
                ..QueueSettingsPatch::default()
            };
            for (name, patch) in [
                ("a", QueueSettingsPatch::default()),
                ("b", QueueSettingsPatch::default()),
                ("direct", QueueSettingsPatch::default()),
                ("f.fifo", fifo),
            ] {
                h.put_queue(&q(name), &patch).await.expect("queue");
            }
            for name in ["a", "b"] {
                h.subscribe(&t("orders"), &q(name), None)
                    .await
                    .expect("sub");
            }
            let park = |name: &'static str| {
                let h = h.clone();
                tokio::spawn(async move {
                    h.receive(
                        &q(name),
                        ReceiveRequest {
                            max: Some(10),
                            wait_seconds: Some(20),
                            ..ReceiveRequest::default()
                        },
                    )
                    .await
                })
            };
            let waiters: Vec<_> = ["a", "b", "direct", "f.fifo"]
                .into_iter()
                .map(park)
                .collect();
            // Let all four park.
            for _ in 0..200 {
                if ["a", "b", "direct", "f.fifo"]
                    .iter()
                    .all(|n| h.queue(&q(n)).is_ok_and(|qh| !qh.lock().waiters.is_empty()))
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            h.publish(&t("orders"), vec![text("fanned")])
                .await
                .expect("publish");
            h.send(&q("direct"), vec![text("sent")])
                .await
                .expect("send");
            let mut grouped = text("grouped");
            grouped.group_id = Some("g".into());
            grouped.dedup_id = Some("d".into());
            h.send(&q("f.fifo"), vec![grouped]).await.expect("send");
            for w in waiters {
                let got = w.await.expect("join").expect("receive");
                assert_eq!(got.len(), 1);
                assert_eq!(got[0].receive_count, 1);
            }
            // Not acked: in flight at the "crash".
        }
        let h = reopen(dir.path(), clock.clone()).await;
        for name in ["a", "b", "direct", "f.fifo"] {
            let got = recv(&h, name, 10).await;
            assert_eq!(got.len(), 1, "{name}");
            assert_eq!(
                got[0].receive_count, 2,
                "{name}: the first receive was logged"
            );
        }
    }

    #[tokio::test]
    async fn fifo_order_dedup_and_dlq_survive_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = Arc::new(ManualClock::new(T0));
        let fifo = QueueSettingsPatch {
            fifo: Some(true),
            ..QueueSettingsPatch::default()
        };
        let m = |body: &str| NewMessage {
            group_id: Some("g".into()),
            dedup_id: Some(body.into()),
            ..text(body)
        };
        {
            let h = reopen(dir.path(), clock.clone()).await;
            h.put_queue(&q("fdlq"), &fifo).await.expect("dlq");
            h.put_queue(
                &q("f"),
                &QueueSettingsPatch {
                    dead_letter: Some(Some(DeadLetterSettings {
                        queue: q("fdlq"),
                        max_receives: 1,
                    })),
                    ..fifo.clone()
                },
            )
            .await
            .expect("f");
            h.send(&q("f"), vec![m("1"), m("2"), m("3")])
                .await
                .expect("send");
            let first = recv(&h, "f", 1).await;
            h.nack(&q("f"), &[first[0].receipt], None).expect("nack");
            // let the dead-letter record reach the log
            h.put_queue(&q("f"), &QueueSettingsPatch::default())
                .await
                .expect("barrier");
        }
        let h = reopen(dir.path(), clock.clone()).await;
        let dup = h.send(&q("f"), vec![m("2")]).await.expect("send");
        assert!(dup[0].is_ok());
        assert_eq!(h.describe_queue(&q("f")).expect("f").stats.visible, 2);
        let bodies: Vec<String> = recv(&h, "f", 10)
            .await
            .iter()
            .map(|d| d.message.body.clone())
            .collect();
        assert_eq!(bodies, vec!["2", "3"]);
        let dead = recv(&h, "fdlq", 10).await;
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].message.body, "1");
        assert_eq!(
            dead[0].dead_letter_source.as_ref().map(|s| s.as_str()),
            Some("f")
        );
    }

    #[tokio::test]
    async fn delays_purges_and_deletes_survive_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = Arc::new(ManualClock::new(T0));
        {
            let h = reopen(dir.path(), clock.clone()).await;
            h.put_queue(&q("d"), &QueueSettingsPatch::default())
                .await
                .expect("d");
            h.put_queue(&q("p"), &QueueSettingsPatch::default())
                .await
                .expect("p");
            h.put_queue(&q("gone"), &QueueSettingsPatch::default())
                .await
                .expect("gone");
            let mut late = text("late");
            late.delay_seconds = Some(100);
            h.send(&q("d"), vec![late]).await.expect("send");
            h.send(&q("p"), vec![text("x"), text("y")])
                .await
                .expect("send");
            h.purge(&q("p")).await.expect("purge");
            h.send(&q("p"), vec![text("after")]).await.expect("send");
            h.delete_queue(&q("gone")).await.expect("delete");
        }
        let h = reopen(dir.path(), clock.clone()).await;
        assert!(h.queue(&q("gone")).is_err());
        let d = h.describe_queue(&q("d")).expect("d");
        assert_eq!((d.stats.delayed, d.stats.visible), (1, 0));
        clock.advance(100_000);
        assert_eq!(recv(&h, "d", 10).await.len(), 1);
        let p: Vec<String> = recv(&h, "p", 10)
            .await
            .iter()
            .map(|d| d.message.body.clone())
            .collect();
        assert_eq!(p, vec!["after"]);
    }

    #[tokio::test]
    async fn checkpoint_then_tail_recovers_the_same_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = Arc::new(ManualClock::new(T0));
        {
            let h = reopen(dir.path(), clock.clone()).await;
            h.put_topic(&t("t"), &TopicSettingsPatch::default())
                .await
                .expect("topic");
            for name in ["a", "b"] {
                h.put_queue(&q(name), &QueueSettingsPatch::default())
                    .await
                    .expect("queue");
                h.subscribe(&t("t"), &q(name), None).await.expect("sub");
            }
            h.publish(&t("t"), vec![text("before-1"), text("before-2")])
                .await
                .expect("publish");
            let got = recv(&h, "a", 1).await;
            h.ack(&q("a"), &[got[0].receipt]).await.expect("ack");
            h.checkpoint().await.expect("checkpoint");
            h.publish(&t("t"), vec![text("after")])
                .await
                .expect("publish");
            let got = recv(&h, "b", 1).await;
            h.ack(&q("b"), &[got[0].receipt]).await.expect("ack");
        }
        let h = reopen(dir.path(), clock.clone()).await;
        let a: Vec<String> = recv(&h, "a", 10)
            .await
            .iter()
            .map(|d| d.message.body.clone())
            .collect();
        let b: Vec<String> = recv(&h, "b", 10)
            .await
            .iter()
            .map(|d| d.message.body.clone())
            .collect();
        assert_eq!(a, vec!["before-2", "after"]);
        assert_eq!(b, vec!["before-2", "after"]);
        // One shared body per message in the snapshot, not one per queue.
        let snaps: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".snap"))
            .collect();
        assert_eq!(snaps.len(), 1);
    }

    #[tokio::test]
    async fn queue_delay_survives_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = Arc::new(ManualClock::new(T0));
        {
            let h = reopen(dir.path(), clock.clone()).await;
            h.put_queue(
                &q("slow"),
                &QueueSettingsPatch {
                    delay_seconds: Some(600),
                    ..QueueSettingsPatch::default()
                },
            )
            .await
            .expect("queue");
            h.send(&q("slow"), vec![text("later")]).await.expect("send");
        }
        let h = reopen(dir.path(), clock.clone()).await;
        let st = h.describe_queue(&q("slow")).expect("slow").stats;
        assert_eq!((st.delayed, st.visible), (1, 0));
        clock.advance(600_000);
        assert_eq!(recv(&h, "slow", 1).await.len(), 1);
    }

    fn oldest_segment(dir: &std::path::Path) -> u64 {
        std::fs::read_dir(dir.join("log"))
            .expect("log dir")
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                u64::from_str_radix(name.strip_suffix(".seg")?, 16).ok()
            })
            .min()
            .unwrap_or(0)
    }

    fn segments(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir.join("log")).expect("log dir").count()
    }

    /// One old message left unacked does not pin its whole segment: the
    /// checkpoint after moves it to the head of the log and the next one
    /// deletes the segment; the message survives a restart from either.
    #[tokio::test]
    async fn a_few_old_messages_do_not_pin_their_segments() {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = Arc::new(ManualClock::new(T0));
        let body = |i: usize| format!("{i:06}-{}", "y".repeat(300));
        let open = |clock: Arc<ManualClock>| {
            open_with(dir.path(), clock, Some(64 * 1024), Limits::default())
        };
        {
            let h = open(clock.clone());
            h.restore().await.expect("restore");
            h.put_queue(&q("w"), &QueueSettingsPatch::default())
                .await
                .expect("queue");
            for chunk in (0..2000).collect::<Vec<_>>().chunks(100) {
                let batch = chunk.iter().map(|i| text(&body(*i))).collect();
                h.send(&q("w"), batch).await.expect("send");
            }
            loop {
                let got = recv(&h, "w", 100).await;
                if got.is_empty() {
                    break;
                }
                let receipts: Vec<_> = got
                    .iter()
                    .filter(|d| d.message.body != body(5))
                    .map(|d| d.receipt)
                    .collect();
                h.ack(&q("w"), &receipts).await.expect("ack");
            }
            h.checkpoint().await.expect("checkpoint");
            let pinned = oldest_segment(dir.path());
            assert_eq!(pinned, 1, "the first segment holds the old message");
            // The first checkpoint moved the message; the next drops its
            // old segment (the mover's record is awaited by the barrier).
            h.checkpoint().await.expect("checkpoint");
            let after = oldest_segment(dir.path());
            assert!(
                after > pinned,
                "the old segment went: oldest is now {after}"
            );
            assert!(segments(dir.path()) <= 3);
            let held = h.stored_messages(&q("w")).expect("held");
            assert_eq!(held.len(), 1);
            assert_eq!(held[0].1.body, body(5));
        }
        let h = open(clock.clone());
        h.restore().await.expect("restore");
        let held = h.stored_messages(&q("w")).expect("held");
        assert_eq!(held.len(), 1, "the moved message survives a restart");
        assert_eq!(held[0].1.body, body(5));
    }

    /// A backlog past the message cache is paged out to the log, read back
    /// in order when received, checkpointed as references (not bodies),
    /// recovered without loading bodies, and its segments go once drained.
    #[tokio::test]
    async fn a_backlog_larger_than_the_cache_is_read_back_from_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = Arc::new(ManualClock::new(T0));
        let body = |i: usize| format!("{i:06}-{}", "x".repeat(250));
        let limits = Limits {
            message_cache_bytes: 64 * 1024,
            ..Limits::default()
        };
        let open = |clock: Arc<ManualClock>| {
            open_with(dir.path(), clock, Some(256 * 1024), limits.clone())
        };
        let n = 3000;
        {
            let h = open(clock.clone());
            h.restore().await.expect("restore");
            h.put_queue(&q("deep"), &QueueSettingsPatch::default())
                .await
                .expect("queue");
            for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
                let batch = chunk.iter().map(|i| text(&body(*i))).collect();
                h.send(&q("deep"), batch).await.expect("send");
            }
            assert!(
                h.resident_bytes() > 64 * 1024,
                "the backlog starts in memory"
            );
            let freed = h.page_out();
            assert!(freed > 0);
            assert!(
                h.resident_bytes() <= 64 * 1024,
                "paged down to the budget: {}",
                h.resident_bytes()
            );
            // Read back from the log, in order, bodies intact.
            let got = recv(&h, "deep", 100).await;
            let want: Vec<String> = (0..100).map(body).collect();
            let bodies: Vec<String> = got.iter().map(|d| d.message.body.clone()).collect();
            assert_eq!(bodies, want);
            let receipts: Vec<_> = got.iter().map(|d| d.receipt).collect();
            h.ack(&q("deep"), &receipts).await.expect("ack");
            // The snapshot refers to the log instead of copying bodies.
            h.checkpoint().await.expect("checkpoint");
            let snap_bytes: u64 = std::fs::read_dir(dir.path())
                .expect("dir")
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".snap"))
                .map(|e| e.metadata().map_or(0, |m| m.len()))
                .sum();
            assert!(
                snap_bytes < (n as u64 - 100) * 100,
                "snapshot holds references, not bodies: {snap_bytes} bytes"
            );
        }
        // Recovery keeps locations, not bodies.
        let h = open(clock.clone());
        h.restore().await.expect("restore");
        assert_eq!(h.resident_bytes(), 0, "nothing loaded at start-up");
        let held = h.stored_messages(&q("deep")).expect("held");
        assert_eq!(held.len(), n - 100);
        assert_eq!(held[0].1.body, body(100));
        assert_eq!(held[held.len() - 1].1.body, body(n - 1));
        let before = segments(dir.path());
        // Drain it all: the segments holding it are reclaimed.
        let mut next = 100;
        loop {
            let got = recv(&h, "deep", 100).await;
            if got.is_empty() {
                break;
            }
            for d in &got {
                assert_eq!(d.message.body, body(next));
                next += 1;
            }
            let receipts: Vec<_> = got.iter().map(|d| d.receipt).collect();
            h.ack(&q("deep"), &receipts).await.expect("ack");
        }
        assert_eq!(next, n);
        h.checkpoint().await.expect("checkpoint");
        let after = segments(dir.path());
        assert!(
            after < before,
            "drained segments are deleted: {before} before, {after} after"
        );
    }
}

#[tokio::test]
async fn oversized_publish_to_an_unmatched_fifo_topic_is_refused() {
    let (h, _) = hub();
    h.put_topic(
        &t("ft"),
        &TopicSettingsPatch {
            fifo: Some(true),
            ..TopicSettingsPatch::default()
        },
    )
    .await
    .expect("topic");
    let big = NewMessage {
        group_id: Some("g".into()),
        dedup_id: Some("d".into()),
        ..text(&"x".repeat(1_048_577))
    };
    let r = h.publish(&t("ft"), vec![big]).await.expect("publish");
    assert!(matches!(r[0], Err(HubError::MessageTooLarge { .. })));
}

#[tokio::test]
async fn receive_on_a_deleted_queue_handle_is_queue_not_found() {
    let (h, _) = hub();
    h.put_queue(&q("gone"), &QueueSettingsPatch::default())
        .await
        .expect("queue");
    let handle = h.queue(&q("gone")).expect("handle");
    h.delete_queue(&q("gone")).await.expect("delete");
    let r = h
        .receive_on(
            &handle,
            ReceiveRequest {
                wait_seconds: Some(PARK_UNTIL_MESSAGE),
                ..ReceiveRequest::default()
            },
        )
        .await;
    assert!(matches!(r, Err(HubError::QueueNotFound(_))));
}
