//! Queue admin: create, describe, merge on update, delete, purge, names,
//! setting ranges, `QueueInUse`, and concurrent create/delete.

use std::sync::Arc;

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{assert_error, receipt, Server};

fn default_settings() -> Value {
    json!({
        "fifo": false,
        "content_based_dedup": false,
        "dedup_window_seconds": 300,
        "delay_seconds": 0,
        "visibility_timeout_seconds": 30,
        "retention_seconds": 345600,
        "max_message_bytes": 1048576,
        "receive_wait_seconds": 0,
        "dead_letter": null,
        "retry_backoff": null,
    })
}

#[tokio::test]
async fn put_creates_a_queue_with_the_contract_defaults() {
    let s = Server::start().await;
    let created = s.create_queue("jobs", json!({})).await;
    assert_eq!(created["name"], "jobs");
    assert_eq!(created["settings"], default_settings());
    let v = s.queue("jobs").await;
    assert_eq!(v["name"], "jobs");
    assert_eq!(v["settings"], default_settings());
    assert_eq!(v["temporary"], false);
    for field in [
        "visible",
        "delayed",
        "in_flight",
        "oldest_age_seconds",
        "sent",
        "received",
        "acked",
        "dead_lettered",
        "expired",
    ] {
        assert_eq!(v["stats"][field], 0, "stats.{field} of a new queue: {v}");
    }
    assert_eq!(
        s.get("/v1/queues").await,
        (200, json!({"queues": ["jobs"]}))
    );
}

#[tokio::test]
async fn put_without_a_body_creates_with_defaults() {
    let s = Server::start().await;
    let (status, text) = s.raw(Method::PUT, "/v1/queues/bare", "").await;
    assert_eq!(status, 201, "{text}");
    assert_eq!(s.queue("bare").await["settings"], default_settings());
}

#[tokio::test]
async fn describe_counts_every_stage_of_a_message() {
    let s = Server::start().await;
    s.create_queue("q", json!({})).await;
    for b in ["a", "b", "c"] {
        s.send_text("q", b).await;
    }
    s.send("q", json!({"body": "later", "delay_seconds": 600}))
        .await;
    let got = s.receive("q", json!({"max": 2})).await;
    assert_eq!(got.len(), 2);
    s.ack("q", &[receipt(&got[0])]).await;
    let st = s.stats("q").await;
    assert_eq!(st["visible"], 1, "{st}");
    assert_eq!(st["delayed"], 1, "{st}");
    assert_eq!(st["in_flight"], 1, "{st}");
    assert_eq!(st["sent"], 4, "{st}");
    assert_eq!(st["received"], 2, "{st}");
    assert_eq!(st["acked"], 1, "{st}");
    assert_eq!(st["dead_lettered"], 0, "{st}");
    assert_eq!(st["expired"], 0, "{st}");
    assert!(st["oldest_age_seconds"].is_u64(), "{st}");
}

#[tokio::test]
async fn put_of_an_existing_queue_merges_omitted_settings() {
    let s = Server::start().await;
    s.create_queue(
        "q",
        json!({"visibility_timeout_seconds": 60, "delay_seconds": 5, "receive_wait_seconds": 2}),
    )
    .await;
    let (status, v) = s.put("/v1/queues/q", json!({"delay_seconds": 0})).await;
    assert_eq!(status, 200, "{v}");
    let mut want = default_settings();
    want["visibility_timeout_seconds"] = json!(60);
    want["receive_wait_seconds"] = json!(2);
    assert_eq!(v["settings"], want);
    assert_eq!(s.queue("q").await["settings"], want);
    // An empty body, or `fifo` restated as it is, changes nothing.
    assert_eq!(s.put("/v1/queues/q", json!({})).await.0, 200);
    assert_eq!(s.put("/v1/queues/q", json!({"fifo": false})).await.0, 200);
    assert_eq!(s.queue("q").await["settings"], want);
}

#[tokio::test]
async fn put_updates_keep_the_stored_messages() {
    let s = Server::start().await;
    s.create_queue("q", json!({})).await;
    let id = s.send_text("q", "kept").await;
    s.put("/v1/queues/q", json!({"visibility_timeout_seconds": 5}))
        .await;
    let m = s.receive_one("q").await;
    assert_eq!(
        (m["id"].as_str(), m["body"].as_str()),
        (Some(&*id), Some("kept"))
    );
}

#[tokio::test]
async fn changing_fifo_is_409_queue_exists_and_changes_nothing() {
    let s = Server::start().await;
    s.create_queue("std", json!({"delay_seconds": 3})).await;
    s.create_queue("fif", json!({"fifo": true})).await;
    let before_std = s.queue("std").await["settings"].clone();
    let before_fif = s.queue("fif").await["settings"].clone();
    let answer = s
        .put("/v1/queues/std", json!({"fifo": true, "delay_seconds": 7}))
        .await;
    assert_error(&answer, 409, "QueueExists");
    let answer = s.put("/v1/queues/fif", json!({"fifo": false})).await;
    assert_error(&answer, 409, "QueueExists");
    assert_eq!(s.queue("std").await["settings"], before_std);
    assert_eq!(s.queue("fif").await["settings"], before_fif);
}

/// Every setting's range, at both ends: the edge is accepted, one past it is
/// `InvalidSetting`, and a refused create leaves no queue behind.
#[tokio::test]
async fn settings_out_of_range_are_invalid_setting_and_create_nothing() {
    let s = Server::start().await;
    let ranges: [(&str, i64, i64); 6] = [
        ("dedup_window_seconds", 60, 86400),
        ("delay_seconds", 0, 900),
        ("visibility_timeout_seconds", 0, 43200),
        ("retention_seconds", 60, 1209600),
        ("max_message_bytes", 1024, 1048576),
        ("receive_wait_seconds", 0, 20),
    ];
    for (field, lo, hi) in ranges {
        for ok in [lo, hi] {
            let name = format!("ok-{field}-{ok}");
            let v = s.create_queue(&name, json!({ field: ok })).await;
            assert_eq!(v["settings"][field], ok, "{field}={ok}: {v}");
        }
        let mut bad = vec![hi + 1];
        if lo > 0 {
            bad.push(lo - 1);
        }
        for b in bad {
            let answer = s.put("/v1/queues/bad", json!({ field: b })).await;
            assert_error(&answer, 400, "InvalidSetting");
        }
    }
    for body in [
        json!({"content_based_dedup": true}),
        json!({"retry_backoff": {"initial_seconds": 0, "max_seconds": 5}}),
        json!({"retry_backoff": {"initial_seconds": 10, "max_seconds": 5}}),
        json!({"retry_backoff": {"initial_seconds": 1, "max_seconds": 43201}}),
    ] {
        let answer = s.put("/v1/queues/bad", body.clone()).await;
        assert_error(&answer, 400, "InvalidSetting");
    }
    assert_error(&s.get("/v1/queues/bad").await, 404, "QueueNotFound");
}

#[tokio::test]
async fn a_refused_update_leaves_the_settings_as_they_were() {
    let s = Server::start().await;
    s.create_queue("q", json!({"delay_seconds": 4})).await;
    let before = s.queue("q").await["settings"].clone();
    for body in [
        json!({"delay_seconds": 1, "visibility_timeout_seconds": 43201}),
        json!({"delay_seconds": 1, "retention_seconds": 1}),
        json!({"delay_seconds": 1, "bogus": 1}),
        json!({"delay_seconds": "1"}),
    ] {
        let (status, _) = s.put("/v1/queues/q", body.clone()).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(s.queue("q").await["settings"], before, "after {body}");
    }
}

#[tokio::test]
async fn settings_of_the_wrong_type_or_unknown_are_invalid_request() {
    let s = Server::start().await;
    for body in [
        json!({"delay_seconds": "5"}),
        json!({"delay_seconds": -1}),
        json!({"delay_seconds": 1.5}),
        json!({"fifo": "yes"}),
        json!({"visibility_timeout_seconds": 4294967296u64}),
        json!({"dead_letter": "dlq"}),
        json!({"dead_letter": {"queue": "dlq"}}),
        json!({"retry_backoff": [1, 2]}),
        json!({"delay": 5}),
        json!([]),
    ] {
        let answer = s.put("/v1/queues/q", body.clone()).await;
        assert_error(&answer, 400, "InvalidRequest");
    }
    for raw in ["{", "not json", "{\"delay_seconds\": 1,}", "null"] {
        let (status, text) = s.raw(Method::PUT, "/v1/queues/q", raw).await;
        assert_eq!(status, 400, "{raw}: {text}");
        let v: Value = serde_json::from_str(&text).expect("JSON error");
        assert_eq!(v["error"]["code"], "InvalidRequest", "{raw}");
    }
    assert_eq!(s.get("/v1/queues").await.1, json!({"queues": []}));
}

#[tokio::test]
async fn invalid_names_are_invalid_name_on_every_queue_endpoint() {
    let s = Server::start().await;
    let long = "a".repeat(81);
    let bad = [
        long.as_str(),
        "a%20b",
        "a*b",
        "%C3%A9",
        "a%2Fb",
        "a:b",
        "a%00",
    ];
    for name in bad {
        let cases = [
            (Method::PUT, format!("/v1/queues/{name}"), Some(json!({}))),
            (Method::GET, format!("/v1/queues/{name}"), None),
            (Method::DELETE, format!("/v1/queues/{name}"), None),
            (Method::POST, format!("/v1/queues/{name}/purge"), None),
            (
                Method::POST,
                format!("/v1/queues/{name}/send"),
                Some(json!({"body": "x"})),
            ),
            (
                Method::POST,
                format!("/v1/queues/{name}/receive"),
                Some(json!({})),
            ),
            (
                Method::POST,
                format!("/v1/queues/{name}/ack"),
                Some(json!({"receipts": ["x"]})),
            ),
            (
                Method::POST,
                format!("/v1/queues/{name}/redrive"),
                Some(json!({})),
            ),
        ];
        for (method, path, body) in cases {
            let answer = s.request(method.clone(), &path, body).await;
            assert_error(&answer, 400, "InvalidName");
        }
    }
    assert_eq!(s.get("/v1/queues").await.1, json!({"queues": []}));
    // The longest name and every allowed character are fine.
    let longest = "b".repeat(80);
    s.create_queue(&longest, json!({})).await;
    s.create_queue("Az09_.-", json!({})).await;
}

#[tokio::test]
async fn list_shows_every_queue_by_name() {
    let s = Server::start().await;
    for q in ["b", "a", "c"] {
        s.create_queue(q, json!({})).await;
    }
    let (status, v) = s.get("/v1/queues").await;
    assert_eq!(status, 200);
    let mut names: Vec<&str> = v["queues"]
        .as_array()
        .expect("queues")
        .iter()
        .map(|n| n.as_str().expect("name"))
        .collect();
    names.sort();
    assert_eq!(names, ["a", "b", "c"]);
}

#[tokio::test]
async fn delete_removes_the_queue_and_a_second_delete_is_404() {
    let s = Server::start().await;
    s.create_queue("q", json!({})).await;
    s.send_text("q", "gone with it").await;
    let (status, v) = s.delete("/v1/queues/q").await;
    assert_eq!(status, 200, "{v}");
    assert_error(&s.get("/v1/queues/q").await, 404, "QueueNotFound");
    assert_error(&s.delete("/v1/queues/q").await, 404, "QueueNotFound");
    assert_error(
        &s.send_raw("q", json!({"body": "x"})).await,
        404,
        "QueueNotFound",
    );
    assert_error(&s.receive_raw("q", json!({})).await, 404, "QueueNotFound");
    // A new queue of the same name starts empty.
    s.create_queue("q", json!({})).await;
    assert_eq!(s.stats("q").await["sent"], 0);
    assert!(s.drain("q").await.is_empty());
}

#[tokio::test]
async fn missing_queues_are_404_queue_not_found_everywhere() {
    let s = Server::start().await;
    let cases = [
        (Method::GET, "/v1/queues/nope", None),
        (Method::DELETE, "/v1/queues/nope", None),
        (Method::POST, "/v1/queues/nope/purge", None),
        (
            Method::POST,
            "/v1/queues/nope/send",
            Some(json!({"body": "x"})),
        ),
        (Method::POST, "/v1/queues/nope/receive", Some(json!({}))),
        (Method::POST, "/v1/queues/nope/redrive", Some(json!({}))),
    ];
    for (method, path, body) in cases {
        let answer = s.request(method.clone(), path, body).await;
        assert_error(&answer, 404, "QueueNotFound");
    }
    // A receipt-shaped string for a missing queue: the queue is what is missing.
    let fake = "A".repeat(43);
    for op in ["ack", "nack"] {
        let answer = s
            .post(
                &format!("/v1/queues/nope/{op}"),
                json!({"receipts": [fake]}),
            )
            .await;
        assert_error(&answer, 404, "QueueNotFound");
    }
    assert_eq!(s.get("/v1/queues").await.1, json!({"queues": []}));
}

#[tokio::test]
async fn deleting_a_dead_letter_queue_in_use_is_409_queue_in_use() {
    let s = Server::start().await;
    s.create_queue("dlq", json!({})).await;
    s.create_queue(
        "work",
        json!({"dead_letter": {"queue": "dlq", "max_receives": 3}}),
    )
    .await;
    s.send_text("dlq", "kept").await;
    assert_error(&s.delete("/v1/queues/dlq").await, 409, "QueueInUse");
    assert_eq!(s.stats("dlq").await["visible"], 1);
    // Once no queue names it, it can go.
    let (status, v) = s.put("/v1/queues/work", json!({"dead_letter": null})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["settings"]["dead_letter"], Value::Null);
    assert_eq!(s.delete("/v1/queues/dlq").await.0, 200);
}

#[tokio::test]
async fn deleting_a_subscribed_queue_is_409_queue_in_use() {
    let s = Server::start().await;
    s.create_topic("t", json!({})).await;
    s.create_queue("q", json!({})).await;
    s.subscribe("t", "q", None).await;
    assert_error(&s.delete("/v1/queues/q").await, 409, "QueueInUse");
    // Still there, still subscribed.
    s.publish("t", json!({"body": "still delivered"})).await;
    assert_eq!(s.drain_bodies("q").await, ["still delivered"]);
    assert_eq!(s.delete("/v1/topics/t/subscriptions/q").await.0, 200);
    assert_eq!(s.delete("/v1/queues/q").await.0, 200);
}

#[tokio::test]
async fn purge_drops_every_message_including_those_in_flight() {
    let s = Server::start().await;
    s.create_queue("q", json!({})).await;
    for b in ["a", "b", "c"] {
        s.send_text("q", b).await;
    }
    s.send("q", json!({"body": "d", "delay_seconds": 600}))
        .await;
    let leased = s.receive_one("q").await;
    let (status, v) = s.post("/v1/queues/q/purge", json!({})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["purged"], 4);
    let st = s.stats("q").await;
    assert_eq!(
        (&st["visible"], &st["delayed"], &st["in_flight"]),
        (&json!(0), &json!(0), &json!(0)),
        "{st}"
    );
    // The purged message's receipt finds nothing to return.
    let r = s.nack("q", &[receipt(&leased)], None).await;
    assert_eq!(r[0]["error"]["code"], "ReceiptStale", "{r:?}");
    assert!(s.drain("q").await.is_empty());
    // The queue keeps working.
    s.send_text("q", "after").await;
    assert_eq!(s.drain_bodies("q").await, ["after"]);
}

/// Many tasks create and delete one resource (`/v1/queues/race` or
/// `/v1/topics/race`) at once. Every answer is one the contract documents,
/// creations and deletions alternate (admin changes are serialised), and the
/// final describe agrees with the list and with the counts.
pub(crate) async fn churn_create_and_delete(s: Arc<Server>, kind: &str, not_found: &'static str) {
    let path = format!("/v1/{kind}/race");
    let mut tasks = Vec::new();
    for t in 0..32u32 {
        let (s, path) = (s.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for i in 0..30u32 {
                let answer = if (t + i) % 2 == 0 {
                    let (st, v) = s.put(&path, json!({})).await;
                    ("put", st, v)
                } else {
                    let (st, v) = s.delete(&path).await;
                    ("delete", st, v)
                };
                seen.push(answer);
            }
            seen
        }));
    }
    let (mut created, mut deleted) = (0i64, 0i64);
    for t in tasks {
        for (op, status, v) in t.await.expect("task") {
            match (op, status) {
                ("put", 201) => {
                    created += 1;
                    assert_eq!(v["name"], "race", "{v}");
                }
                ("put", 200) => assert_eq!(v["name"], "race", "{v}"),
                ("delete", 200) => deleted += 1,
                ("delete", 404) => assert_eq!(v["error"]["code"], not_found, "{v}"),
                _ => panic!("undocumented answer to {op} {path}: {status} {v}"),
            }
        }
    }
    let (status, _) = s.get(&path).await;
    assert!(status == 200 || status == 404, "{status}");
    let exists = status == 200;
    let listed = s.get(&format!("/v1/{kind}")).await.1[kind] == json!(["race"]);
    assert_eq!(listed, exists, "list and describe disagree");
    assert_eq!(
        created - deleted,
        i64::from(exists),
        "{created} created, {deleted} deleted"
    );
    // One more PUT agrees with that state.
    let (status, v) = s.put(&path, json!({})).await;
    assert_eq!(status, if exists { 200 } else { 201 }, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_create_and_delete_of_one_queue_stay_consistent() {
    let s = Arc::new(Server::start().await);
    churn_create_and_delete(s.clone(), "queues", "QueueNotFound").await;
    s.send_text("race", "works").await;
    assert_eq!(s.drain_bodies("race").await, ["works"]);
}
