//! Publish and send: single messages and batches, per-entry errors, sizes
//! (message and request), delays, `deliver_at`, poison, base64 bodies.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{assert_entry_error, assert_error, single_id, Server};

fn is_rfc3339(s: &str) -> bool {
    // 2025-01-02T03:04:05.678Z or with an offset: a date, a 'T', a time.
    s.len() >= 20 && s.as_bytes()[4] == b'-' && s.as_bytes()[10] == b'T'
}

#[tokio::test]
async fn send_answers_one_id_and_the_message_arrives_whole() {
    let s = Server::start().await;
    s.create_queue("q", json!({})).await;
    let (status, v) = s
        .send_raw(
            "q",
            json!({"body": "hello", "attributes": {"a": "1", "b": "2"}}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let id = single_id(&v);
    assert_eq!(id.len(), 32);
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    let m = s.receive_one("q").await;
    assert_eq!(m["id"], json!(id));
    assert_eq!(m["body"], "hello");
    assert_eq!(m["attributes"], json!({"a": "1", "b": "2"}));
    assert_eq!(m["receive_count"], 1);
    assert_eq!(m["poison"], false);
    assert!(m["sequence"].is_u64(), "{m}");
    assert!(m["sent_at"].as_str().is_some_and(is_rfc3339), "{m}");
    assert!(
        m["first_received_at"].as_str().is_some_and(is_rfc3339),
        "{m}"
    );
    assert!(m.get("topic").is_none_or(Value::is_null), "{m}");
}

#[tokio::test]
async fn sequence_increases_per_queue() {
    let s = Server::start().await;
    s.create_queue("q", json!({})).await;
    for i in 0..5 {
        s.send_text("q", &i.to_string()).await;
    }
    let got = s.drain("q").await;
    let seqs: Vec<u64> = got
        .iter()
        .map(|m| m["sequence"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs.len(), 5);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
}

#[tokio::test]
async fn a_batch_answers_per_entry_and_stores_every_good_entry() {
    let s = Server::start().await;
    s.create_queue("q", json!({})).await;
    let (status, v) = s
        .send_raw(
            "q",
            json!({"messages": [
                {"body": "a"},
                {"body": "b", "group_id": "g"},
                {"body": "c", "colour": "red"},
                {"body": 5},
                {"body": "d", "delay_seconds": 901},
                {"body": "e", "attributes": {"k": 1}},
                {"body": "f"},
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let results = v["results"].as_array().expect("results");
    assert_eq!(results.len(), 7, "{v}");
    for (i, r) in results.iter().enumerate() {
        if i == 0 || i == 6 {
            assert!(r["id"].as_str().is_some_and(|id| id.len() == 32), "{r}");
        } else {
            assert_entry_error(r, "InvalidRequest");
            assert!(r["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()));
        }
    }
    assert_eq!(s.drain_bodies("q").await, ["a", "f"]);
}

#[tokio::test]
async fn a_batch_of_100_is_accepted() {
    let s = Server::start().await;
    s.create_queue("q", json!({})).await;
    let entries: Vec<Value> = (0..100).map(|i| json!({"body": i.to_string()})).collect();
    let (status, v) = s.send_raw("q", json!({ "messages": entries })).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["results"].as_array().map(Vec::len), Some(100));
    assert_eq!(s.stats("q").await["visible"], 100);
}

#[tokio::test]
async fn a_batch_of_101_is_400_batch_too_large_and_stores_nothing() {
    let s = Server::start().await;
    s.create_queue("q", json!({})).await;
    s.create_topic("t", json!({})).await;
    s.subscribe("t", "q", None).await;
    let entries: Vec<Value> = (0..101).map(|i| json!({"body": i.to_string()})).collect();
    let batch = json!({ "messages": entries });
    assert_error(&s.send_raw("q", batch.clone()).await, 400, "BatchTooLarge");
    assert_error(&s.publish_raw("t", batch).await, 400, "BatchTooLarge");
    assert_eq!(s.stats("q").await["sent"], 0);
    assert_eq!(s.topic("t").await["stats"]["published"], 0);
}

#[tokio::test]
async fn an_empty_batch_is_400_invalid_request() {
    let s = Server::start().await;
    s.create_queue("q", json!({})).await;
    s.create_topic("t", json!({})).await;
    assert_error(
        &s.send_raw("q", json!({"messages": []})).await,
        400,
        "InvalidRequest",
    );
    assert_error(
        &s.publish_raw("t", json!({"messages": []})).await,
        400,
        "InvalidRequest",
    );
    assert_eq!(s.stats("q").await["sent"], 0);
}

#[tokio::test]
async fn malformed_publish_bodies_are_400_invalid_request() {
    let s = Server::start().await;
    s.create_queue("q", json!({})).await;
    for body in [
        json!({}),
        json!({"body": null}),
        json!({"body": 1}),
        json!({"body": "x", "attributes": ["a"]}),
        json!({"body": "x", "attributes": {"n": 1}}),
        json!({"body": "x", "attributes": {"": "empty key"}}),
        json!({"body": "x", "attributes": (0..51).map(|i| (format!("k{i}"), json!("v"))).collect::<serde_json::Map<_, _>>()}),
        json!({"body": "x", "poison": "yes"}),
        json!({"body": "x", "delay_seconds": -1}),
        json!({"body": "x", "unknown": true}),
        json!({"messages": {"body": "x"}}),
        json!({"messages": [{"body": "x"}], "extra": 1}),
        json!([{"body": "x"}]),
        json!("x"),
    ] {
        assert_error(&s.send_raw("q", body).await, 400, "InvalidRequest");
    }
    for raw in ["", "{", "{\"body\": \"x\"", "body=x"] {
        let (status, text) = s.raw(Method::POST, "/v1/queues/q/send", raw).await;
        assert_eq!(status, 400, "{raw:?}: {text}");
        let v: Value = serde_json::from_str(&text).expect("JSON error");
        assert_eq!(v["error"]["code"], "InvalidRequest", "{raw:?}");
    }
    assert_eq!(s.stats("q").await["sent"], 0);
}

#[tokio::test]
async fn group_or_dedup_id_on_a_standard_queue_is_400_invalid_request() {
    let s = Server::start().await;
    s.create_queue("q", json!({})).await;
    s.create_topic("t", json!({})).await;
    s.subscribe("t", "q", None).await;
    for body in [
        json!({"body": "x", "group_id": "g"}),
        json!({"body": "x", "dedup_id": "d"}),
    ] {
        assert_error(&s.send_raw("q", body.clone()).await, 400, "InvalidRequest");
        assert_error(&s.publish_raw("t", body).await, 400, "InvalidRequest");
    }
    assert_eq!(s.stats("q").await["sent"], 0);
}

#[tokio::test]
async fn a_message_over_the_queues_max_is_413_message_too_large() {
    let s = Server::start().await;
    s.create_queue("q", json!({"max_message_bytes": 1024}))
        .await;
    s.send_text("q", &"x".repeat(1024)).await;
    assert_error(
        &s.send_raw("q", json!({"body": "x".repeat(1025)})).await,
        413,
        "MessageTooLarge",
    );
    // Attribute keys and values count too: 1000 + 10 + 15 = 1025.
    let attrs = json!({ "k".repeat(10): "v".repeat(15) });
    assert_error(
        &s.send_raw("q", json!({"body": "x".repeat(1000), "attributes": attrs}))
            .await,
        413,
        "MessageTooLarge",
    );
    // Multi-byte characters count in bytes: 513 two-byte characters.
    assert_error(
        &s.send_raw("q", json!({"body": "é".repeat(513)})).await,
        413,
        "MessageTooLarge",
    );
    assert_eq!(s.stats("q").await["sent"], 1);
}

#[tokio::test]
async fn lowering_max_message_bytes_applies_to_the_next_send_and_publish() {
    let s = Server::start().await;
    s.create_topic("t", json!({})).await;
    s.create_queue("q", json!({})).await;
    s.subscribe("t", "q", None).await;
    let body = json!({"body": "x".repeat(2000)});
    s.send("q", body.clone()).await;
    s.put("/v1/queues/q", json!({"max_message_bytes": 1024}))
        .await;
    assert_error(&s.send_raw("q", body.clone()).await, 413, "MessageTooLarge");
    assert_error(&s.publish_raw("t", body).await, 413, "MessageTooLarge");
    // The message stored before the change stays.
    assert_eq!(s.stats("q").await["visible"], 1);
}

#[tokio::test]
async fn a_base64_body_is_counted_decoded_and_round_trips() {
    let s = Server::start().await;
    s.create_queue("q", json!({"max_message_bytes": 1024}))
        .await;
    // 1024 bytes of 0xff is 1368 base64 characters: it fits decoded.
    let encoded = format!("{}/w==", "/".repeat(1364));
    s.send("q", json!({"body": encoded, "body_encoding": "base64"}))
        .await;
    let m = s.receive_one("q").await;
    assert_eq!(m["body"], json!(encoded));
    assert_eq!(m["body_encoding"], "base64");
    // 1026 bytes.
    let over = "/".repeat(1368);
    assert_error(
        &s.send_raw("q", json!({"body": over, "body_encoding": "base64"}))
            .await,
        413,
        "MessageTooLarge",
    );
    for body in [
        json!({"body": "not base64!", "body_encoding": "base64"}),
        json!({"body": "x", "body_encoding": "rot13"}),
    ] {
        assert_error(&s.send_raw("q", body).await, 400, "InvalidRequest");
    }
    assert_eq!(s.stats("q").await["sent"], 1);
}

#[tokio::test]
async fn fan_out_is_all_or_nothing_when_one_queue_refuses_the_size() {
    let s = Server::start().await;
    s.create_topic("t", json!({})).await;
    s.create_queue("big", json!({})).await;
    s.create_queue("small", json!({"max_message_bytes": 1024}))
        .await;
    s.subscribe("t", "big", None).await;
    s.subscribe("t", "small", None).await;
    let answer = s.publish_raw("t", json!({"body": "x".repeat(2000)})).await;
    assert_error(&answer, 413, "MessageTooLarge");
    assert_eq!(
        s.stats("big").await["sent"],
        0,
        "no queue may get a refused publish"
    );
    assert_eq!(s.stats("small").await["sent"], 0);
    assert_eq!(s.topic("t").await["stats"]["published"], 0);
    // In a batch the refused entry is refused for every queue; the others go to all.
    let (status, v) = s
        .publish_raw(
            "t",
            json!({"messages": [{"body": "ok1"}, {"body": "x".repeat(2000)}, {"body": "ok2"}]}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_entry_error(&v["results"][1], "MessageTooLarge");
    assert_eq!(s.drain_bodies("big").await, ["ok1", "ok2"]);
    assert_eq!(s.drain_bodies("small").await, ["ok1", "ok2"]);
}

#[tokio::test]
async fn a_queue_whose_filter_does_not_match_cannot_refuse_a_publish() {
    let s = Server::start().await;
    s.create_topic("t", json!({})).await;
    s.create_queue("big", json!({})).await;
    s.create_queue("small", json!({"max_message_bytes": 1024}))
        .await;
    s.subscribe("t", "big", None).await;
    s.subscribe("t", "small", Some(json!({"size": ["small"]})))
        .await;
    s.publish(
        "t",
        json!({"body": "x".repeat(2000), "attributes": {"size": "big"}}),
    )
    .await;
    assert_eq!(s.stats("big").await["visible"], 1);
    assert_eq!(s.stats("small").await["sent"], 0);
}

#[tokio::test]
async fn a_request_over_max_request_bytes_is_413_request_too_large() {
    let s = Server::start_with(&["--max-request-bytes", "2048"]).await;
    s.create_queue("q", json!({})).await;
    s.create_topic("t", json!({})).await;
    s.subscribe("t", "q", None).await;
    let big = json!({"body": "x".repeat(3000)});
    assert_error(&s.send_raw("q", big.clone()).await, 413, "RequestTooLarge");
    assert_error(&s.publish_raw("t", big).await, 413, "RequestTooLarge");
    let entries: Vec<Value> = (0..30).map(|_| json!({"body": "x".repeat(100)})).collect();
    assert_error(
        &s.send_raw("q", json!({ "messages": entries })).await,
        413,
        "RequestTooLarge",
    );
    let padded = json!({"delay_seconds": 5, "pad": "x".repeat(3000)});
    assert_error(
        &s.put("/v1/queues/q", padded.clone()).await,
        413,
        "RequestTooLarge",
    );
    assert_error(
        &s.put("/v1/queues/other", padded).await,
        413,
        "RequestTooLarge",
    );
    let receipts: Vec<String> = (0..100).map(|_| "r".repeat(43)).collect();
    assert_error(
        &s.post("/v1/queues/q/ack", json!({ "receipts": receipts }))
            .await,
        413,
        "RequestTooLarge",
    );
    // Nothing changed, and a request under the limit still works.
    assert_eq!(s.stats("q").await["sent"], 0);
    assert_eq!(s.queue("q").await["settings"]["delay_seconds"], 0);
    assert_error(&s.get("/v1/queues/other").await, 404, "QueueNotFound");
    s.send_text("q", &"x".repeat(1500)).await;
}

#[tokio::test]
async fn a_request_of_exactly_max_request_bytes_is_accepted() {
    let s = Server::start_with(&["--max-request-bytes", "2048"]).await;
    s.create_queue("q", json!({})).await;
    let frame = r#"{"body":""}"#.len();
    let exact = format!(r#"{{"body":"{}"}}"#, "x".repeat(2048 - frame));
    assert_eq!(exact.len(), 2048);
    let (status, text) = s.raw(Method::POST, "/v1/queues/q/send", exact).await;
    assert_eq!(status, 200, "{text}");
    let over = format!(r#"{{"body":"{}"}}"#, "x".repeat(2049 - frame));
    let (status, text) = s.raw(Method::POST, "/v1/queues/q/send", over).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("RequestTooLarge"), "{text}");
    assert_eq!(s.stats("q").await["sent"], 1);
}

#[tokio::test]
async fn delay_seconds_hides_a_message_until_it_passes() {
    let s = Server::start().await;
    s.create_queue("q", json!({})).await;
    s.send("q", json!({"body": "later", "delay_seconds": 1}))
        .await;
    let st = s.stats("q").await;
    assert_eq!(
        (&st["visible"], &st["delayed"]),
        (&json!(0), &json!(1)),
        "{st}"
    );
    assert!(s.drain("q").await.is_empty());
    let start = Instant::now();
    let got = s.receive("q", json!({"wait_seconds": 5})).await;
    assert_eq!(got.len(), 1);
    assert!(
        start.elapsed() > Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(got[0]["body"], "later");
}

#[tokio::test]
async fn the_queues_delay_applies_to_every_new_message() {
    let s = Server::start().await;
    s.create_queue("q", json!({"delay_seconds": 1})).await;
    s.send_text("q", "held").await;
    assert_eq!(s.stats("q").await["delayed"], 1);
    assert!(s.drain("q").await.is_empty());
    let got = s.receive("q", json!({"wait_seconds": 5})).await;
    assert_eq!(got.len(), 1);
}

#[tokio::test]
async fn out_of_range_delays_are_400_invalid_request() {
    let s = Server::start().await;
    s.create_queue("q", json!({})).await;
    for body in [
        json!({"body": "x", "delay_seconds": 901}),
        json!({"body": "x", "delay_seconds": 1, "deliver_at": "2030-01-01T00:00:00Z"}),
        json!({"body": "x", "deliver_at": "tomorrow"}),
        json!({"body": "x", "deliver_at": 1700000000}),
    ] {
        assert_error(&s.send_raw("q", body).await, 400, "InvalidRequest");
    }
    s.send("q", json!({"body": "edge", "delay_seconds": 900}))
        .await;
    assert_eq!(s.stats("q").await["delayed"], 1);
}

#[tokio::test]
async fn deliver_at_in_the_past_delivers_at_once() {
    let s = Server::start().await;
    s.create_queue("q", json!({"delay_seconds": 900})).await;
    s.send(
        "q",
        json!({"body": "now", "deliver_at": "2001-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(s.drain_bodies("q").await, ["now"]);
}

#[tokio::test]
async fn deliver_at_beyond_retention_is_refused_and_within_it_is_delayed() {
    let s = Server::start().await;
    s.create_queue("q", json!({"retention_seconds": 60})).await;
    s.create_topic("t", json!({})).await;
    s.subscribe("t", "q", None).await;
    let far = "2999-01-01T00:00:00Z";
    assert_error(
        &s.send_raw("q", json!({"body": "x", "deliver_at": far}))
            .await,
        400,
        "InvalidRequest",
    );
    assert_error(
        &s.publish_raw("t", json!({"body": "x", "deliver_at": far}))
            .await,
        400,
        "InvalidRequest",
    );
    assert_eq!(s.stats("q").await["sent"], 0);
    // delay_seconds past retention is refused as well (900 > 60).
    assert_error(
        &s.send_raw("q", json!({"body": "x", "delay_seconds": 120}))
            .await,
        400,
        "InvalidRequest",
    );
    let soon = time_in(Duration::from_secs(1));
    s.send("q", json!({"body": "soon", "deliver_at": soon}))
        .await;
    assert_eq!(s.stats("q").await["delayed"], 1);
    let got = s.receive("q", json!({"wait_seconds": 5})).await;
    assert_eq!(got.len(), 1);
}

/// RFC 3339 for now + `d`, computed without a date crate: the server takes
/// any offset, so a UTC time built from the epoch seconds is enough.
fn time_in(d: Duration) -> String {
    let secs = (std::time::SystemTime::now() + d)
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
}

#[tokio::test]
async fn the_poison_flag_round_trips() {
    let s = Server::start().await;
    s.create_queue("q", json!({})).await;
    s.create_topic("t", json!({})).await;
    s.subscribe("t", "q", None).await;
    s.send("q", json!({"body": "work"})).await;
    s.send("q", json!({"body": "stop", "poison": true})).await;
    s.publish("t", json!({"body": "stop too", "poison": true}))
        .await;
    let got = s.drain("q").await;
    let flags: Vec<(&str, bool)> = got
        .iter()
        .map(|m| {
            (
                m["body"].as_str().expect("body"),
                m["poison"].as_bool().expect("poison"),
            )
        })
        .collect();
    assert_eq!(flags, [("work", false), ("stop", true), ("stop too", true)]);
}

#[tokio::test]
async fn publish_to_a_topic_answers_ids_and_a_batch_answers_per_entry() {
    let s = Server::start().await;
    s.create_topic("t", json!({})).await;
    s.create_queue("q", json!({})).await;
    s.subscribe("t", "q", None).await;
    let (status, v) = s
        .publish_raw(
            "t",
            json!({"messages": [{"body": "a"}, {"body": "b", "group_id": "g"}, {"body": "c"}]}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let results = v["results"].as_array().expect("results");
    assert!(
        results[0]["id"].is_string() && results[2]["id"].is_string(),
        "{v}"
    );
    assert_entry_error(&results[1], "InvalidRequest");
    let got = s.drain("q").await;
    let ids: Vec<&Value> = got.iter().map(|m| &m["id"]).collect();
    assert_eq!(ids, [&results[0]["id"], &results[2]["id"]]);
}
