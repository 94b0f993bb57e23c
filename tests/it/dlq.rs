//! Dead-letter queues: the settings' cross-queue rules (existence, kind,
//! loops), moving a message after `max_receives`, and redrive.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{assert_error, eventually, receipt, Server};

fn dl(queue: &str, max: u32) -> Value {
    json!({"dead_letter": {"queue": queue, "max_receives": max}})
}

#[tokio::test]
async fn a_missing_dead_letter_queue_is_invalid_setting() {
    let s = Server::start().await;
    assert_error(
        &s.put("/v1/queues/q", dl("nope", 3)).await,
        400,
        "InvalidSetting",
    );
    assert_error(&s.get("/v1/queues/q").await, 404, "QueueNotFound");
    s.create_queue("q", json!({"delay_seconds": 2})).await;
    assert_error(
        &s.put("/v1/queues/q", dl("nope", 3)).await,
        400,
        "InvalidSetting",
    );
    let v = s.queue("q").await;
    assert_eq!(v["settings"]["dead_letter"], Value::Null);
    assert_eq!(v["settings"]["delay_seconds"], 2);
}

#[tokio::test]
async fn a_queue_cannot_be_its_own_dead_letter_queue() {
    let s = Server::start().await;
    assert_error(
        &s.put("/v1/queues/q", dl("q", 3)).await,
        400,
        "InvalidSetting",
    );
    assert_error(&s.get("/v1/queues/q").await, 404, "QueueNotFound");
    s.create_queue("q", json!({})).await;
    assert_error(
        &s.put("/v1/queues/q", dl("q", 3)).await,
        400,
        "InvalidSetting",
    );
    assert_eq!(s.queue("q").await["settings"]["dead_letter"], Value::Null);
}

#[tokio::test]
async fn dead_letter_loops_are_invalid_setting() {
    let s = Server::start().await;
    s.create_queue("a", json!({})).await;
    s.create_queue("b", dl("a", 3)).await;
    // a -> b -> a
    assert_error(
        &s.put("/v1/queues/a", dl("b", 3)).await,
        400,
        "InvalidSetting",
    );
    assert_eq!(s.queue("a").await["settings"]["dead_letter"], Value::Null);
    // c -> b -> a, then a -> c closes a longer loop.
    s.create_queue("c", dl("b", 3)).await;
    assert_error(
        &s.put("/v1/queues/a", dl("c", 3)).await,
        400,
        "InvalidSetting",
    );
    assert_eq!(s.queue("a").await["settings"]["dead_letter"], Value::Null);
    // A chain without a loop is fine: d -> c -> b -> a.
    s.create_queue("d", dl("c", 3)).await;
}

#[tokio::test]
async fn a_dead_letter_queue_must_be_of_the_same_kind() {
    let s = Server::start().await;
    s.create_queue("std-dlq", json!({})).await;
    s.create_queue("fifo-dlq", json!({"fifo": true})).await;
    let mut fifo_with_std = dl("std-dlq", 3);
    fifo_with_std["fifo"] = json!(true);
    assert_error(
        &s.put("/v1/queues/f", fifo_with_std).await,
        400,
        "InvalidSetting",
    );
    assert_error(
        &s.put("/v1/queues/q", dl("fifo-dlq", 3)).await,
        400,
        "InvalidSetting",
    );
    assert_eq!(
        s.get("/v1/queues").await.1,
        json!({"queues": ["fifo-dlq", "std-dlq"]})
    );
    let mut fifo_with_fifo = dl("fifo-dlq", 3);
    fifo_with_fifo["fifo"] = json!(true);
    s.create_queue("f", fifo_with_fifo).await;
}

#[tokio::test]
async fn bad_dead_letter_settings_are_refused() {
    let s = Server::start().await;
    s.create_queue("dlq", json!({})).await;
    for n in [0, 1001] {
        assert_error(
            &s.put("/v1/queues/q", dl("dlq", n)).await,
            400,
            "InvalidSetting",
        );
    }
    for body in [
        json!({"dead_letter": {"queue": "dlq"}}),
        json!({"dead_letter": {"max_receives": 3}}),
        json!({"dead_letter": {"queue": "dlq", "max_receives": "3"}}),
        json!({"dead_letter": {"queue": "dlq", "max_receives": 3, "extra": 1}}),
        json!({"dead_letter": "dlq"}),
    ] {
        assert_error(&s.put("/v1/queues/q", body).await, 400, "InvalidRequest");
    }
    assert_error(&s.get("/v1/queues/q").await, 404, "QueueNotFound");
    for n in [1, 1000] {
        s.create_queue(&format!("q{n}"), dl("dlq", n)).await;
    }
}

/// "An invalid name anywhere: 400 InvalidName", the body included.
#[tokio::test]
async fn an_invalid_dead_letter_queue_name_is_invalid_name() {
    let s = Server::start().await;
    let long = "d".repeat(81);
    for name in ["bad name", "a/b", "", long.as_str()] {
        assert_error(
            &s.put("/v1/queues/q", dl(name, 3)).await,
            400,
            "InvalidName",
        );
    }
    assert_error(&s.get("/v1/queues/q").await, 404, "QueueNotFound");
}

/// Receives `queue`'s one message and nacks it, `times` times.
async fn receive_and_nack(s: &Server, queue: &str, times: u32) -> Value {
    let mut last = Value::Null;
    for _ in 0..times {
        last = s.receive_one(queue).await;
        s.nack(queue, &[receipt(&last)], None).await;
    }
    last
}

#[tokio::test]
async fn a_message_nacked_after_max_receives_moves_to_the_dlq_whole() {
    let s = Server::start().await;
    s.create_queue("dlq", json!({})).await;
    s.create_queue("work", dl("dlq", 2)).await;
    let id = s
        .send("work", json!({"body": "bad", "attributes": {"k": "v"}}))
        .await;
    let last = receive_and_nack(&s, "work", 2).await;
    assert_eq!(last["receive_count"], 2);
    let st = s.stats("work").await;
    assert_eq!(
        (&st["visible"], &st["in_flight"], &st["dead_lettered"]),
        (&json!(0), &json!(0), &json!(1)),
        "{st}"
    );
    assert_eq!(s.stats("dlq").await["visible"], 1);
    let m = s.receive_one("dlq").await;
    assert_eq!(m["id"], json!(id));
    assert_eq!(m["body"], "bad");
    assert_eq!(m["attributes"], json!({"k": "v"}));
    assert_eq!(m["dead_letter_source"], "work");
    // It kept its two receives; this receive is the third.
    assert_eq!(m["receive_count"], 3);
    // The old receipt no longer finds it in its first queue.
    let r = s.ack("work", &[receipt(&last)]).await;
    assert_eq!(r[0]["ok"], true, "acking a gone message is ok: {r:?}");
}

#[tokio::test]
async fn a_message_whose_visibility_lapses_after_max_receives_moves_to_the_dlq() {
    let s = Server::start().await;
    s.create_queue("dlq", json!({})).await;
    let mut settings = dl("dlq", 1);
    settings["visibility_timeout_seconds"] = json!(1);
    s.create_queue("work", settings).await;
    let id = s.send_text("work", "slow").await;
    s.receive_one("work").await;
    let got = s.receive("dlq", json!({"wait_seconds": 5})).await;
    assert_eq!(got.len(), 1, "the lapsed message reaches the DLQ");
    assert_eq!(got[0]["id"], json!(id));
    assert_eq!(got[0]["dead_letter_source"], "work");
    assert!(s.drain("work").await.is_empty());
}

#[tokio::test]
async fn a_fifo_dead_letter_keeps_its_group() {
    let s = Server::start().await;
    s.create_queue("fdlq", json!({"fifo": true})).await;
    let mut settings = dl("fdlq", 1);
    settings["fifo"] = json!(true);
    s.create_queue("f", settings).await;
    s.send("f", json!({"body": "1", "group_id": "g", "dedup_id": "1"}))
        .await;
    s.send("f", json!({"body": "2", "group_id": "g", "dedup_id": "2"}))
        .await;
    receive_and_nack(&s, "f", 1).await;
    let m = s.receive_one("fdlq").await;
    assert_eq!(
        (m["body"].as_str(), m["group_id"].as_str()),
        (Some("1"), Some("g"))
    );
    assert_eq!(s.receive_one("f").await["body"], "2");
}

#[tokio::test]
async fn redrive_moves_dead_letters_back_with_receive_count_zero() {
    let s = Server::start().await;
    s.create_queue("dlq", json!({})).await;
    s.create_queue("a", dl("dlq", 1)).await;
    s.create_queue("b", dl("dlq", 1)).await;
    let ida = s.send_text("a", "from a").await;
    let idb = s.send_text("b", "from b").await;
    receive_and_nack(&s, "a", 1).await;
    receive_and_nack(&s, "b", 1).await;
    assert_eq!(s.stats("dlq").await["visible"], 2);
    let (status, v) = s.post("/v1/queues/dlq/redrive", json!({})).await;
    assert_eq!(status, 202, "{v}");
    assert!(v["task_id"].as_str().is_some_and(|t| !t.is_empty()), "{v}");
    assert_eq!(v["messages"], 2);
    let task = v["task_id"].clone();
    let done = eventually(Duration::from_secs(5), || async {
        let d = s.queue("dlq").await;
        d["redrive"]["task_id"] == task && d["redrive"]["state"] == "done"
    })
    .await;
    assert!(done, "redrive did not finish: {}", s.queue("dlq").await);
    assert_eq!(s.stats("dlq").await["visible"], 0);
    for (q, id, body) in [("a", &ida, "from a"), ("b", &idb, "from b")] {
        let m = s.receive_one(q).await;
        assert_eq!(m["id"], json!(id));
        assert_eq!(m["body"], body);
        assert_eq!(m["receive_count"], 1, "counted from 0 again: {m}");
        assert!(
            m.get("dead_letter_source").is_none_or(Value::is_null),
            "{m}"
        );
    }
}

#[tokio::test]
async fn redrive_with_a_rate_limit_finishes_too() {
    let s = Server::start().await;
    s.create_queue("dlq", json!({})).await;
    s.create_queue("a", dl("dlq", 1)).await;
    for i in 0..3 {
        s.send_text("a", &i.to_string()).await;
    }
    for m in s.drain("a").await {
        s.nack("a", &[receipt(&m)], None).await;
    }
    let (status, v) = s
        .post("/v1/queues/dlq/redrive", json!({"max_per_second": 100}))
        .await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(v["messages"], 3);
    let done = eventually(Duration::from_secs(5), || async {
        s.queue("dlq").await["redrive"]["state"] == "done"
    })
    .await;
    assert!(done);
    assert_eq!(s.drain_bodies("a").await, ["0", "1", "2"]);
}

#[tokio::test]
async fn a_second_redrive_while_one_runs_is_invalid_request() {
    let s = Server::start().await;
    s.create_queue("dlq", json!({})).await;
    s.create_queue("a", dl("dlq", 1)).await;
    for i in 0..3 {
        s.send_text("a", &i.to_string()).await;
    }
    for m in s.drain("a").await {
        s.nack("a", &[receipt(&m)], None).await;
    }
    // One message a second: the first redrive runs for about three seconds.
    let (status, first) = s
        .post("/v1/queues/dlq/redrive", json!({"max_per_second": 1}))
        .await;
    assert_eq!(status, 202, "{first}");
    let answer = s.post("/v1/queues/dlq/redrive", json!({})).await;
    assert_error(&answer, 400, "InvalidRequest");
    let d = s.queue("dlq").await;
    assert_eq!(d["redrive"]["task_id"], first["task_id"], "{d}");
    assert_eq!(d["redrive"]["state"], "running", "{d}");
    assert_eq!(d["redrive"]["total"], 3, "{d}");
}

#[tokio::test]
async fn redrive_of_a_queue_that_is_no_dlq_is_not_a_dead_letter_queue() {
    let s = Server::start().await;
    s.create_queue("plain", json!({})).await;
    s.send_text("plain", "stays").await;
    assert_error(
        &s.post("/v1/queues/plain/redrive", json!({})).await,
        400,
        "NotADeadLetterQueue",
    );
    assert_eq!(s.drain_bodies("plain").await, ["stays"]);
    assert_error(
        &s.post("/v1/queues/missing/redrive", json!({})).await,
        404,
        "QueueNotFound",
    );
}

#[tokio::test]
async fn bad_redrive_bodies_are_invalid_request() {
    let s = Server::start().await;
    s.create_queue("dlq", json!({})).await;
    s.create_queue("a", dl("dlq", 1)).await;
    for body in [
        json!({"max_per_second": 0}),
        json!({"max_per_second": -1}),
        json!({"max_per_second": "fast"}),
        json!({"rate": 1}),
    ] {
        assert_error(
            &s.post("/v1/queues/dlq/redrive", body).await,
            400,
            "InvalidRequest",
        );
    }
    assert!(s
        .queue("dlq")
        .await
        .get("redrive")
        .is_none_or(Value::is_null));
}
