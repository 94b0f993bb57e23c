//! FIFO queues: required ids, deduplication, order per group, group blocking.

use serde_json::{json, Value};

use crate::support::{assert_error, receipt, Server};

fn bodies(msgs: &[Value]) -> Vec<&str> {
    msgs.iter()
        .map(|m| m["body"].as_str().expect("body"))
        .collect()
}

#[tokio::test]
async fn a_fifo_message_without_group_or_dedup_is_400_invalid_request() {
    let s = Server::start().await;
    s.create_queue("f", json!({"fifo": true})).await;
    for body in [
        json!({"body": "x"}),
        json!({"body": "x", "dedup_id": "d"}),
        json!({"body": "x", "group_id": "g"}),
        json!({"body": "x", "group_id": "", "dedup_id": "d"}),
        json!({"body": "x", "group_id": "g", "dedup_id": ""}),
        json!({"body": "x", "group_id": "g".repeat(129), "dedup_id": "d"}),
        json!({"body": "x", "group_id": "has space", "dedup_id": "d"}),
    ] {
        assert_error(&s.send_raw("f", body).await, 400, "InvalidRequest");
    }
    assert_eq!(s.stats("f").await["sent"], 0);
}

#[tokio::test]
async fn a_delay_on_a_fifo_message_is_400_invalid_request() {
    let s = Server::start().await;
    s.create_queue("f", json!({"fifo": true})).await;
    for body in [
        json!({"body": "x", "group_id": "g", "dedup_id": "d", "delay_seconds": 1}),
        json!({"body": "x", "group_id": "g", "dedup_id": "d", "delay_seconds": 0}),
        json!({"body": "x", "group_id": "g", "dedup_id": "d", "deliver_at": "2001-01-01T00:00:00Z"}),
    ] {
        assert_error(&s.send_raw("f", body).await, 400, "InvalidRequest");
    }
    assert_eq!(s.stats("f").await["sent"], 0);
    // The queue's own delay applies instead.
    s.put("/v1/queues/f", json!({"delay_seconds": 600})).await;
    s.send("f", json!({"body": "x", "group_id": "g", "dedup_id": "d"}))
        .await;
    assert_eq!(s.stats("f").await["delayed"], 1);
}

#[tokio::test]
async fn a_duplicate_answers_the_first_id_and_enqueues_nothing() {
    let s = Server::start().await;
    s.create_queue("f", json!({"fifo": true})).await;
    let first = s
        .send(
            "f",
            json!({"body": "one", "group_id": "g", "dedup_id": "d"}),
        )
        .await;
    let dup = s
        .send(
            "f",
            json!({"body": "two", "group_id": "g", "dedup_id": "d"}),
        )
        .await;
    assert_eq!(dup, first);
    let st = s.stats("f").await;
    assert_eq!(
        (&st["sent"], &st["visible"]),
        (&json!(1), &json!(1)),
        "{st}"
    );
    // Still a duplicate after the first was received and acked.
    let m = s.receive_one("f").await;
    assert_eq!(
        (m["body"].as_str(), m["dedup_id"].as_str()),
        (Some("one"), Some("d"))
    );
    s.ack("f", &[receipt(&m)]).await;
    let again = s
        .send(
            "f",
            json!({"body": "three", "group_id": "g", "dedup_id": "d"}),
        )
        .await;
    assert_eq!(again, first);
    assert!(s.drain("f").await.is_empty());
}

#[tokio::test]
async fn duplicates_inside_one_batch_share_the_first_id() {
    let s = Server::start().await;
    s.create_queue("f", json!({"fifo": true})).await;
    let (status, v) = s
        .send_raw(
            "f",
            json!({"messages": [
                {"body": "a", "group_id": "g", "dedup_id": "1"},
                {"body": "b", "group_id": "g", "dedup_id": "1"},
                {"body": "c", "group_id": "g", "dedup_id": "2"},
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["results"][0]["id"], v["results"][1]["id"], "{v}");
    assert_ne!(v["results"][0]["id"], v["results"][2]["id"], "{v}");
    assert_eq!(bodies(&s.drain("f").await), ["a", "c"]);
}

#[tokio::test]
async fn content_based_dedup_uses_the_body() {
    let s = Server::start().await;
    s.create_queue("f", json!({"fifo": true, "content_based_dedup": true}))
        .await;
    let a = s.send("f", json!({"body": "same", "group_id": "g1"})).await;
    let b = s.send("f", json!({"body": "same", "group_id": "g2"})).await;
    let c = s
        .send("f", json!({"body": "other", "group_id": "g1"}))
        .await;
    // An explicit dedup id overrides the body.
    let d = s
        .send(
            "f",
            json!({"body": "same", "group_id": "g1", "dedup_id": "own"}),
        )
        .await;
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_ne!(a, d);
    assert_eq!(s.stats("f").await["visible"], 3);
}

#[tokio::test]
async fn content_based_dedup_on_a_standard_queue_is_invalid_setting() {
    let s = Server::start().await;
    assert_error(
        &s.put("/v1/queues/q", json!({"content_based_dedup": true}))
            .await,
        400,
        "InvalidSetting",
    );
    s.create_queue("q", json!({})).await;
    assert_error(
        &s.put("/v1/queues/q", json!({"content_based_dedup": true}))
            .await,
        400,
        "InvalidSetting",
    );
    assert_eq!(s.queue("q").await["settings"]["content_based_dedup"], false);
}

#[tokio::test]
async fn messages_of_a_group_come_in_order_and_one_receive_may_take_several() {
    let s = Server::start().await;
    s.create_queue("f", json!({"fifo": true, "content_based_dedup": true}))
        .await;
    for (g, b) in [
        ("g1", "a1"),
        ("g2", "b1"),
        ("g1", "a2"),
        ("g2", "b2"),
        ("g1", "a3"),
    ] {
        s.send("f", json!({"body": b, "group_id": g})).await;
    }
    let got = s.drain("f").await;
    assert_eq!(got.len(), 5);
    let of = |g: &str| -> Vec<&str> {
        got.iter()
            .filter(|m| m["group_id"] == g)
            .map(|m| m["body"].as_str().expect("body"))
            .collect()
    };
    assert_eq!(of("g1"), ["a1", "a2", "a3"]);
    assert_eq!(of("g2"), ["b1", "b2"]);
    let seqs: Vec<u64> = got
        .iter()
        .map(|m| m["sequence"].as_u64().expect("seq"))
        .collect();
    let mut sorted = seqs.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 5, "sequences are distinct: {seqs:?}");
}

#[tokio::test]
async fn a_group_is_blocked_while_one_of_its_messages_is_in_flight() {
    let s = Server::start().await;
    s.create_queue("f", json!({"fifo": true, "content_based_dedup": true}))
        .await;
    s.send("f", json!({"body": "a1", "group_id": "a"})).await;
    s.send("f", json!({"body": "a2", "group_id": "a"})).await;
    s.send("f", json!({"body": "b1", "group_id": "b"})).await;
    let first = s.receive_one("f").await;
    assert_eq!(first["body"], "a1");
    // Group a is blocked behind a1; only b's head is available.
    assert_eq!(bodies(&s.drain("f").await), ["b1"]);
    assert!(s.drain("f").await.is_empty());
    s.ack("f", &[receipt(&first)]).await;
    assert_eq!(bodies(&s.drain("f").await), ["a2"]);
}

#[tokio::test]
async fn a_nacked_fifo_message_comes_back_before_the_rest_of_its_group() {
    let s = Server::start().await;
    s.create_queue("f", json!({"fifo": true, "content_based_dedup": true}))
        .await;
    s.send("f", json!({"body": "1", "group_id": "g"})).await;
    s.send("f", json!({"body": "2", "group_id": "g"})).await;
    let m = s.receive_one("f").await;
    s.nack("f", &[receipt(&m)], None).await;
    let got = s.drain("f").await;
    assert_eq!(bodies(&got), ["1", "2"]);
    assert_eq!(got[0]["receive_count"], 2);
}
