//! Bad input across the whole API, in one table: each request gets its
//! documented status and error code, every error has the contract's shape,
//! and none of them changes any state (compared by describing everything
//! before and after).

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{receipt, Server};

/// Everything a client can observe of the server's resources, minus the one
/// field that moves with the clock.
async fn snapshot(s: &Server) -> Value {
    let queues = s.get("/v1/queues").await.1;
    let topics = s.get("/v1/topics").await.1;
    let mut described = Vec::new();
    for q in queues["queues"].as_array().expect("queues") {
        let mut v = s.queue(q.as_str().expect("name")).await;
        v["stats"]
            .as_object_mut()
            .expect("stats")
            .remove("oldest_age_seconds");
        described.push(v);
    }
    for t in topics["topics"].as_array().expect("topics") {
        described.push(s.topic(t.as_str().expect("name")).await);
    }
    json!({"queues": queues, "topics": topics, "described": described})
}

/// method, path, raw body (sent as is) or JSON body, status, error code.
type Case = (
    Method,
    String,
    Option<&'static str>,
    Option<Value>,
    u16,
    &'static str,
);

/// A server with a little of everything: a standard topic feeding `q`, a FIFO
/// queue, and `q`'s DLQ; `q` holds one visible and one in-flight message.
async fn fixture() -> (Server, String) {
    let s = Server::start().await;
    s.create_topic("t", json!({})).await;
    s.create_topic("ft", json!({"fifo": true})).await;
    s.create_queue("dlq", json!({})).await;
    s.create_queue(
        "q",
        json!({"max_message_bytes": 1024, "dead_letter": {"queue": "dlq", "max_receives": 5}}),
    )
    .await;
    s.create_queue("f", json!({"fifo": true})).await;
    s.create_queue("b", json!({})).await;
    s.subscribe("t", "q", None).await;
    s.subscribe("ft", "f", None).await;
    s.send_text("q", "leased").await;
    s.send_text("q", "waiting").await;
    let m = s.receive_one("q").await;
    (s, receipt(&m).to_string())
}

#[tokio::test]
async fn bad_requests_get_their_documented_error_and_change_nothing() {
    let (s, _) = fixture().await;
    let before = snapshot(&s).await;
    let long = "n".repeat(81);
    let batch_101: Vec<Value> = (0..101).map(|_| json!({"body": "x"})).collect();
    let many_receipts: Vec<String> = (0..101).map(|_| "x".into()).collect();
    let p = |path: &str| path.to_string();
    let cases: Vec<Case> = vec![
        // Malformed JSON.
        (
            Method::PUT,
            p("/v1/queues/q"),
            Some("{"),
            None,
            400,
            "InvalidRequest",
        ),
        (
            Method::PUT,
            p("/v1/topics/t"),
            Some("[1,"),
            None,
            400,
            "InvalidRequest",
        ),
        (
            Method::POST,
            p("/v1/queues/q/send"),
            Some("body"),
            None,
            400,
            "InvalidRequest",
        ),
        (
            Method::POST,
            p("/v1/topics/t/publish"),
            Some("{\"body\":}"),
            None,
            400,
            "InvalidRequest",
        ),
        (
            Method::POST,
            p("/v1/queues/q/receive"),
            Some("{max: 1}"),
            None,
            400,
            "InvalidRequest",
        ),
        (
            Method::POST,
            p("/v1/queues/q/ack"),
            Some("receipts"),
            None,
            400,
            "InvalidRequest",
        ),
        (
            Method::PUT,
            p("/v1/topics/t/subscriptions/b"),
            Some("{"),
            None,
            400,
            "InvalidRequest",
        ),
        (
            Method::POST,
            p("/v1/queues/dlq/redrive"),
            Some("}"),
            None,
            400,
            "InvalidRequest",
        ),
        // Unknown fields.
        (
            Method::PUT,
            p("/v1/queues/q"),
            None,
            Some(json!({"visibility": 5})),
            400,
            "InvalidRequest",
        ),
        (
            Method::PUT,
            p("/v1/topics/t"),
            None,
            Some(json!({"fifo": false, "x": 1})),
            400,
            "InvalidRequest",
        ),
        (
            Method::POST,
            p("/v1/queues/q/send"),
            None,
            Some(json!({"body": "x", "ttl": 5})),
            400,
            "InvalidRequest",
        ),
        (
            Method::POST,
            p("/v1/queues/q/receive"),
            None,
            Some(json!({"limit": 5})),
            400,
            "InvalidRequest",
        ),
        (
            Method::PUT,
            p("/v1/topics/t/subscriptions/b"),
            None,
            Some(json!({"policy": {}})),
            400,
            "InvalidRequest",
        ),
        // Wrong types.
        (
            Method::PUT,
            p("/v1/queues/q"),
            None,
            Some(json!({"delay_seconds": "5"})),
            400,
            "InvalidRequest",
        ),
        (
            Method::PUT,
            p("/v1/queues/q"),
            None,
            Some(json!([])),
            400,
            "InvalidRequest",
        ),
        (
            Method::POST,
            p("/v1/queues/q/send"),
            None,
            Some(json!({"body": ["x"]})),
            400,
            "InvalidRequest",
        ),
        (
            Method::POST,
            p("/v1/queues/q/receive"),
            None,
            Some(json!({"max": true})),
            400,
            "InvalidRequest",
        ),
        (
            Method::POST,
            p("/v1/queues/q/ack"),
            None,
            Some(json!({"receipts": "r"})),
            400,
            "InvalidRequest",
        ),
        (
            Method::POST,
            p("/v1/queues/q/nack"),
            None,
            Some(json!({"receipts": ["r"], "delay_seconds": "1"})),
            400,
            "InvalidRequest",
        ),
        // Bad receive parameters.
        (
            Method::POST,
            p("/v1/queues/q/receive"),
            None,
            Some(json!({"max": 0})),
            400,
            "InvalidRequest",
        ),
        (
            Method::POST,
            p("/v1/queues/q/receive"),
            None,
            Some(json!({"max": 101})),
            400,
            "InvalidRequest",
        ),
        (
            Method::POST,
            p("/v1/queues/q/receive"),
            None,
            Some(json!({"wait_seconds": 21})),
            400,
            "InvalidRequest",
        ),
        (
            Method::POST,
            p("/v1/queues/q/receive"),
            None,
            Some(json!({"visibility_timeout_seconds": 43201})),
            400,
            "InvalidRequest",
        ),
        // Names.
        (
            Method::PUT,
            format!("/v1/queues/{long}"),
            None,
            Some(json!({})),
            400,
            "InvalidName",
        ),
        (
            Method::PUT,
            p("/v1/queues/b%40d"),
            None,
            Some(json!({})),
            400,
            "InvalidName",
        ),
        (
            Method::PUT,
            format!("/v1/topics/{long}"),
            None,
            Some(json!({})),
            400,
            "InvalidName",
        ),
        (
            Method::PUT,
            p("/v1/topics/sp%20ace"),
            None,
            Some(json!({})),
            400,
            "InvalidName",
        ),
        (
            Method::PUT,
            p("/v1/queues/q"),
            None,
            Some(json!({"dead_letter": {"queue": "d!", "max_receives": 1}})),
            400,
            "InvalidName",
        ),
        // Settings out of range.
        (
            Method::PUT,
            p("/v1/queues/q"),
            None,
            Some(json!({"visibility_timeout_seconds": 43201})),
            400,
            "InvalidSetting",
        ),
        (
            Method::PUT,
            p("/v1/queues/new"),
            None,
            Some(json!({"retention_seconds": 59})),
            400,
            "InvalidSetting",
        ),
        (
            Method::PUT,
            p("/v1/queues/q"),
            None,
            Some(json!({"max_message_bytes": 1048577})),
            400,
            "InvalidSetting",
        ),
        (
            Method::PUT,
            p("/v1/topics/t"),
            None,
            Some(json!({"dedup_window_seconds": 1})),
            400,
            "InvalidSetting",
        ),
        // Dead-letter rules.
        (
            Method::PUT,
            p("/v1/queues/q"),
            None,
            Some(json!({"dead_letter": {"queue": "q", "max_receives": 1}})),
            400,
            "InvalidSetting",
        ),
        (
            Method::PUT,
            p("/v1/queues/dlq"),
            None,
            Some(json!({"dead_letter": {"queue": "q", "max_receives": 1}})),
            400,
            "InvalidSetting",
        ),
        (
            Method::PUT,
            p("/v1/queues/q"),
            None,
            Some(json!({"dead_letter": {"queue": "ghost", "max_receives": 1}})),
            400,
            "InvalidSetting",
        ),
        (
            Method::PUT,
            p("/v1/queues/f"),
            None,
            Some(json!({"dead_letter": {"queue": "dlq", "max_receives": 1}})),
            400,
            "InvalidSetting",
        ),
        (
            Method::POST,
            p("/v1/queues/b/redrive"),
            None,
            Some(json!({})),
            400,
            "NotADeadLetterQueue",
        ),
        // Subscriptions.
        (
            Method::PUT,
            p("/v1/topics/t/subscriptions/f"),
            None,
            Some(json!({})),
            400,
            "InvalidSetting",
        ),
        (
            Method::PUT,
            p("/v1/topics/t/subscriptions/b"),
            None,
            Some(json!({"filter": {"k": "v"}})),
            400,
            "InvalidSetting",
        ),
        (
            Method::PUT,
            p("/v1/topics/t/subscriptions/ghost"),
            None,
            Some(json!({})),
            404,
            "QueueNotFound",
        ),
        (
            Method::PUT,
            p("/v1/topics/ghost/subscriptions/b"),
            None,
            Some(json!({})),
            404,
            "TopicNotFound",
        ),
        // Conflicts.
        (
            Method::PUT,
            p("/v1/queues/q"),
            None,
            Some(json!({"fifo": true})),
            409,
            "QueueExists",
        ),
        (
            Method::PUT,
            p("/v1/topics/t"),
            None,
            Some(json!({"fifo": true})),
            409,
            "TopicExists",
        ),
        (
            Method::DELETE,
            p("/v1/queues/dlq"),
            None,
            None,
            409,
            "QueueInUse",
        ),
        (
            Method::DELETE,
            p("/v1/queues/q"),
            None,
            None,
            409,
            "QueueInUse",
        ),
        // Missing resources.
        (
            Method::DELETE,
            p("/v1/queues/ghost"),
            None,
            None,
            404,
            "QueueNotFound",
        ),
        (
            Method::DELETE,
            p("/v1/topics/ghost"),
            None,
            None,
            404,
            "TopicNotFound",
        ),
        (
            Method::POST,
            p("/v1/queues/ghost/purge"),
            None,
            Some(json!({})),
            404,
            "QueueNotFound",
        ),
        (
            Method::POST,
            p("/v1/topics/ghost/publish"),
            None,
            Some(json!({"body": "x"})),
            404,
            "TopicNotFound",
        ),
        // Messages.
        (
            Method::POST,
            p("/v1/queues/q/send"),
            None,
            Some(json!({"messages": batch_101})),
            400,
            "BatchTooLarge",
        ),
        (
            Method::POST,
            p("/v1/topics/t/publish"),
            None,
            Some(json!({"messages": []})),
            400,
            "InvalidRequest",
        ),
        (
            Method::POST,
            p("/v1/queues/f/send"),
            None,
            Some(json!({"body": "x", "dedup_id": "d"})),
            400,
            "InvalidRequest",
        ),
        (
            Method::POST,
            p("/v1/queues/f/send"),
            None,
            Some(json!({"body": "x", "group_id": "g"})),
            400,
            "InvalidRequest",
        ),
        (
            Method::POST,
            p("/v1/topics/ft/publish"),
            None,
            Some(json!({"body": "x"})),
            400,
            "InvalidRequest",
        ),
        (
            Method::POST,
            p("/v1/queues/f/send"),
            None,
            Some(json!({"body": "x", "group_id": "g", "dedup_id": "d", "delay_seconds": 5})),
            400,
            "InvalidRequest",
        ),
        (
            Method::POST,
            p("/v1/queues/q/send"),
            None,
            Some(json!({"body": "x", "group_id": "g"})),
            400,
            "InvalidRequest",
        ),
        (
            Method::POST,
            p("/v1/topics/t/publish"),
            None,
            Some(json!({"body": "x", "dedup_id": "d"})),
            400,
            "InvalidRequest",
        ),
        (
            Method::POST,
            p("/v1/queues/q/send"),
            None,
            Some(json!({"body": "x", "delay_seconds": 901})),
            400,
            "InvalidRequest",
        ),
        (
            Method::POST,
            p("/v1/queues/q/send"),
            None,
            Some(json!({"body": "x", "deliver_at": "2999-01-01T00:00:00Z"})),
            400,
            "InvalidRequest",
        ),
        (
            Method::POST,
            p("/v1/queues/q/send"),
            None,
            Some(json!({"body": "x".repeat(1025)})),
            413,
            "MessageTooLarge",
        ),
        (
            Method::POST,
            p("/v1/topics/t/publish"),
            None,
            Some(json!({"body": "x".repeat(1025)})),
            413,
            "MessageTooLarge",
        ),
        // Receipt bodies.
        (
            Method::POST,
            p("/v1/queues/q/ack"),
            None,
            Some(json!({"receipts": []})),
            400,
            "InvalidRequest",
        ),
        (
            Method::POST,
            p("/v1/queues/q/ack"),
            None,
            Some(json!({"receipts": many_receipts})),
            400,
            "BatchTooLarge",
        ),
        (
            Method::POST,
            p("/v1/queues/q/visibility"),
            None,
            Some(json!({"receipts": ["r"]})),
            400,
            "InvalidRequest",
        ),
        (
            Method::POST,
            p("/v1/queues/q/visibility"),
            None,
            Some(json!({"receipts": ["r"], "seconds": 43201})),
            400,
            "InvalidRequest",
        ),
        (
            Method::POST,
            p("/v1/queues/q/nack"),
            None,
            Some(json!({"receipts": ["r"], "delay_seconds": 43201})),
            400,
            "InvalidRequest",
        ),
        (
            Method::POST,
            p("/v1/queues/dlq/redrive"),
            None,
            Some(json!({"max_per_second": 0})),
            400,
            "InvalidRequest",
        ),
    ];
    for (method, path, raw, body, status, code) in cases {
        let (got_status, v) = match raw {
            Some(text) => {
                let (st, t) = s.raw(method.clone(), &path, text.to_string()).await;
                (
                    st,
                    serde_json::from_str::<Value>(&t).unwrap_or_else(|e| panic!("{t}: {e}")),
                )
            }
            None => s.request(method.clone(), &path, body.clone()).await,
        };
        let what = format!(
            "{method} {path} {}",
            raw.map_or_else(|| format!("{body:?}"), String::from)
        );
        assert_eq!(
            (got_status, v["error"]["code"].as_str()),
            (status, Some(code)),
            "{what}: {v}"
        );
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "{what}: no message in {v}");
        assert_eq!(
            v.as_object().map(|o| o.len()),
            Some(1),
            "{what}: an error answer is just {{\"error\": ..}}: {v}"
        );
    }
    assert_eq!(snapshot(&s).await, before);
}

#[tokio::test]
async fn bad_receipts_are_per_entry_errors_that_change_nothing() {
    let (s, leased) = fixture().await;
    s.send_text("b", "in b").await;
    let other = receipt(&s.receive_one("b").await).to_string();
    let before = snapshot(&s).await;
    for op in ["ack", "nack"] {
        let r = s
            .receipts_op("q", op, json!({"receipts": ["garbage", other, ""]}))
            .await;
        let codes: Vec<&str> = r
            .iter()
            .map(|e| e["error"]["code"].as_str().unwrap_or("-"))
            .collect();
        assert_eq!(
            codes,
            ["ReceiptInvalid", "ReceiptInvalid", "ReceiptInvalid"],
            "{op}: {r:?}"
        );
    }
    assert_eq!(snapshot(&s).await, before);
    // The real receipt is still the one in force.
    assert_eq!(s.ack("q", &[&leased]).await[0]["ok"], true);
}
