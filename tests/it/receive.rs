//! Receive, ack, nack and visibility: receipts, receive counts, redelivery,
//! retry backoff, and the parameters' ranges.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{assert_entry_error, assert_error, receipt, Server};

#[tokio::test]
async fn receive_on_an_empty_queue_answers_no_messages() {
    let s = Server::start().await;
    s.create_queue("q", json!({})).await;
    let (status, v) = s.receive_raw("q", json!({})).await;
    assert_eq!((status, v), (200, json!({"messages": []})));
    let (status, text) = s
        .raw(reqwest::Method::POST, "/v1/queues/q/receive", "")
        .await;
    assert_eq!((status, text.as_str()), (200, r#"{"messages":[]}"#));
}

#[tokio::test]
async fn receive_takes_one_by_default_and_up_to_max() {
    let s = Server::start().await;
    s.create_queue("q", json!({})).await;
    for i in 0..5 {
        s.send_text("q", &i.to_string()).await;
    }
    assert_eq!(s.receive("q", json!({})).await.len(), 1);
    assert_eq!(s.receive("q", json!({"max": 3})).await.len(), 3);
    assert_eq!(s.receive("q", json!({"max": 100})).await.len(), 1);
    let st = s.stats("q").await;
    assert_eq!(
        (&st["visible"], &st["in_flight"]),
        (&json!(0), &json!(5)),
        "{st}"
    );
}

#[tokio::test]
async fn bad_receive_parameters_are_400_invalid_request_and_lease_nothing() {
    let s = Server::start().await;
    s.create_queue("q", json!({})).await;
    s.send_text("q", "untouched").await;
    for body in [
        json!({"max": 0}),
        json!({"max": 101}),
        json!({"max": -1}),
        json!({"max": "1"}),
        json!({"wait_seconds": 21}),
        json!({"wait_seconds": 1.5}),
        json!({"visibility_timeout_seconds": 43201}),
        json!({"visibility_timeout_seconds": -1}),
        json!({"maximum": 1}),
        json!([1]),
    ] {
        assert_error(&s.receive_raw("q", body).await, 400, "InvalidRequest");
    }
    let st = s.stats("q").await;
    assert_eq!(
        (&st["visible"], &st["received"]),
        (&json!(1), &json!(0)),
        "{st}"
    );
    // The edges are fine.
    assert_eq!(
        s.receive(
            "q",
            json!({"max": 100, "wait_seconds": 0, "visibility_timeout_seconds": 43200})
        )
        .await
        .len(),
        1
    );
}

#[tokio::test]
async fn a_lapsed_visibility_redelivers_with_a_higher_receive_count() {
    let s = Server::start().await;
    s.create_queue("q", json!({"visibility_timeout_seconds": 1}))
        .await;
    let id = s.send_text("q", "again").await;
    let first = s.receive_one("q").await;
    assert_eq!(first["receive_count"], 1);
    // Hidden while leased.
    assert!(s.drain("q").await.is_empty());
    assert_eq!(s.stats("q").await["in_flight"], 1);
    let start = Instant::now();
    let got = s.receive("q", json!({"wait_seconds": 5})).await;
    let waited = start.elapsed();
    assert_eq!(got.len(), 1);
    let second = &got[0];
    assert!(
        waited > Duration::from_millis(500),
        "redelivered after {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(4),
        "redelivered after {waited:?}"
    );
    assert_eq!(second["id"], json!(id));
    assert_eq!(second["receive_count"], 2);
    assert_eq!(second["first_received_at"], first["first_received_at"]);
    assert_ne!(
        second["receipt"], first["receipt"],
        "a receipt is new on every receive"
    );
    assert_eq!(s.stats("q").await["received"], 2);
}

#[tokio::test]
async fn the_visibility_override_of_a_receive_applies_to_that_receive() {
    let s = Server::start().await;
    s.create_queue("q", json!({"visibility_timeout_seconds": 600}))
        .await;
    s.send_text("q", "x").await;
    let m = s
        .receive("q", json!({"visibility_timeout_seconds": 0}))
        .await;
    assert_eq!(m.len(), 1);
    // Zero seconds: visible again at once.
    let again = s.receive_one("q").await;
    assert_eq!(again["receive_count"], 2);
}

#[tokio::test]
async fn an_older_receipt_is_stale_and_changes_nothing() {
    let s = Server::start().await;
    s.create_queue("q", json!({})).await;
    s.send_text("q", "x").await;
    let old = s
        .receive("q", json!({"visibility_timeout_seconds": 0}))
        .await
        .remove(0);
    let new = s.receive_one("q").await;
    for op in ["ack", "nack"] {
        let r = s
            .receipts_op("q", op, json!({"receipts": [receipt(&old)]}))
            .await;
        assert_eq!(r[0]["receipt"], old["receipt"]);
        assert_entry_error(&r[0], "ReceiptStale");
    }
    let r = s.visibility("q", &[receipt(&old)], 0).await;
    assert_entry_error(&r[0], "ReceiptStale");
    let st = s.stats("q").await;
    assert_eq!(
        (&st["in_flight"], &st["acked"]),
        (&json!(1), &json!(0)),
        "{st}"
    );
    // The newest receipt works.
    let r = s.ack("q", &[receipt(&new)]).await;
    assert_eq!(r, [json!({"receipt": new["receipt"], "ok": true})]);
    assert_eq!(s.stats("q").await["acked"], 1);
}

#[tokio::test]
async fn a_receipt_stays_valid_after_its_visibility_lapsed_until_received_again() {
    let s = Server::start().await;
    s.create_queue("q", json!({})).await;
    s.send_text("q", "x").await;
    let m = s
        .receive("q", json!({"visibility_timeout_seconds": 0}))
        .await
        .remove(0);
    assert_eq!(s.stats("q").await["visible"], 1, "the lease has lapsed");
    let r = s.ack("q", &[receipt(&m)]).await;
    assert_eq!(r[0]["ok"], true, "{r:?}");
    assert!(s.drain("q").await.is_empty());
}

#[tokio::test]
async fn garbage_receipts_are_receipt_invalid() {
    let s = Server::start().await;
    s.create_queue("q", json!({})).await;
    s.send_text("q", "x").await;
    let m = s.receive_one("q").await;
    let mut forged = receipt(&m).to_string().into_bytes();
    forged[10] = if forged[10] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).expect("ascii");
    let garbage = [
        "",
        "garbage",
        "A",
        &"A".repeat(43),
        &"!".repeat(43),
        &forged,
    ];
    for op in ["ack", "nack"] {
        let r = s.receipts_op("q", op, json!({ "receipts": garbage })).await;
        assert_eq!(r.len(), garbage.len());
        for (entry, text) in r.iter().zip(garbage) {
            assert_eq!(entry["receipt"], text);
            assert_entry_error(entry, "ReceiptInvalid");
        }
    }
    let r = s.visibility("q", &garbage, 10).await;
    assert!(
        r.iter().all(|e| e["error"]["code"] == "ReceiptInvalid"),
        "{r:?}"
    );
    let st = s.stats("q").await;
    assert_eq!(
        (&st["in_flight"], &st["acked"]),
        (&json!(1), &json!(0)),
        "{st}"
    );
}

#[tokio::test]
async fn another_queues_receipt_is_receipt_invalid_and_leaves_both_alone() {
    let s = Server::start().await;
    s.create_queue("a", json!({})).await;
    s.create_queue("b", json!({})).await;
    s.send_text("a", "in a").await;
    s.send_text("b", "in b").await;
    let from_a = s.receive_one("a").await;
    s.receive_one("b").await;
    for op in ["ack", "nack"] {
        let r = s
            .receipts_op("b", op, json!({"receipts": [receipt(&from_a)]}))
            .await;
        assert_entry_error(&r[0], "ReceiptInvalid");
    }
    let r = s.visibility("b", &[receipt(&from_a)], 0).await;
    assert_entry_error(&r[0], "ReceiptInvalid");
    for q in ["a", "b"] {
        let st = s.stats(q).await;
        assert_eq!(
            (&st["in_flight"], &st["acked"]),
            (&json!(1), &json!(0)),
            "{q}: {st}"
        );
    }
}

#[tokio::test]
async fn a_receipt_of_a_deleted_and_recreated_queue_is_receipt_invalid() {
    let s = Server::start().await;
    s.create_queue("q", json!({})).await;
    s.send_text("q", "old").await;
    let m = s.receive_one("q").await;
    s.delete("/v1/queues/q").await;
    s.create_queue("q", json!({})).await;
    s.send_text("q", "new").await;
    s.receive_one("q").await;
    let r = s.ack("q", &[receipt(&m)]).await;
    assert_entry_error(&r[0], "ReceiptInvalid");
    assert_eq!(s.stats("q").await["in_flight"], 1);
}

#[tokio::test]
async fn acking_twice_is_ok_and_nack_or_visibility_after_ack_is_stale() {
    let s = Server::start().await;
    s.create_queue("q", json!({})).await;
    s.send_text("q", "x").await;
    let m = s.receive_one("q").await;
    let r = receipt(&m);
    assert_eq!(s.ack("q", &[r]).await[0]["ok"], true);
    assert_eq!(s.ack("q", &[r]).await[0]["ok"], true);
    assert_entry_error(&s.nack("q", &[r], None).await[0], "ReceiptStale");
    assert_entry_error(&s.nack("q", &[r], Some(5)).await[0], "ReceiptStale");
    assert_entry_error(&s.visibility("q", &[r], 30).await[0], "ReceiptStale");
    let st = s.stats("q").await;
    assert_eq!(
        (&st["acked"], &st["visible"], &st["delayed"]),
        (&json!(1), &json!(0), &json!(0)),
        "{st}"
    );
}

#[tokio::test]
async fn results_follow_the_order_of_the_receipts() {
    let s = Server::start().await;
    s.create_queue("q", json!({})).await;
    s.send_text("q", "a").await;
    s.send_text("q", "b").await;
    let got = s.receive("q", json!({"max": 2})).await;
    let r = s
        .ack("q", &[receipt(&got[0]), "junk", receipt(&got[1])])
        .await;
    assert_eq!(r.len(), 3);
    assert_eq!(r[0], json!({"receipt": got[0]["receipt"], "ok": true}));
    assert_entry_error(&r[1], "ReceiptInvalid");
    assert_eq!(r[2], json!({"receipt": got[1]["receipt"], "ok": true}));
    assert_eq!(s.stats("q").await["acked"], 2);
}

#[tokio::test]
async fn nack_makes_a_message_visible_at_once() {
    let s = Server::start().await;
    s.create_queue("q", json!({})).await;
    s.send_text("q", "x").await;
    let m = s.receive_one("q").await;
    assert_eq!(s.nack("q", &[receipt(&m)], None).await[0]["ok"], true);
    let again = s.receive_one("q").await;
    assert_eq!(
        (&again["id"], &again["receive_count"]),
        (&m["id"], &json!(2))
    );
}

#[tokio::test]
async fn nack_with_a_delay_hides_the_message_that_long() {
    let s = Server::start().await;
    s.create_queue("q", json!({})).await;
    s.send_text("q", "x").await;
    let m = s.receive_one("q").await;
    assert_eq!(s.nack("q", &[receipt(&m)], Some(1)).await[0]["ok"], true);
    let st = s.stats("q").await;
    assert_eq!(
        (&st["delayed"], &st["in_flight"]),
        (&json!(1), &json!(0)),
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
}

#[tokio::test]
async fn visibility_can_extend_a_lease() {
    let s = Server::start().await;
    s.create_queue("q", json!({"visibility_timeout_seconds": 1}))
        .await;
    s.send_text("q", "x").await;
    let m = s.receive_one("q").await;
    assert_eq!(s.visibility("q", &[receipt(&m)], 60).await[0]["ok"], true);
    // Without the extension it would be back after one second.
    let got = s.receive("q", json!({"wait_seconds": 2})).await;
    assert!(got.is_empty(), "{got:?}");
    let st = s.stats("q").await;
    assert_eq!(st["in_flight"], 1, "{st}");
    assert!(st["oldest_age_seconds"].as_u64() >= Some(2), "{st}");
    assert_eq!(s.ack("q", &[receipt(&m)]).await[0]["ok"], true);
}

#[tokio::test]
async fn visibility_zero_makes_a_message_visible_at_once() {
    let s = Server::start().await;
    s.create_queue("q", json!({})).await;
    s.send_text("q", "x").await;
    let m = s.receive_one("q").await;
    assert_eq!(s.visibility("q", &[receipt(&m)], 0).await[0]["ok"], true);
    assert_eq!(s.receive_one("q").await["receive_count"], 2);
}

#[tokio::test]
async fn bad_receipt_bodies_are_400_and_change_nothing() {
    let s = Server::start().await;
    s.create_queue("q", json!({})).await;
    s.send_text("q", "x").await;
    let m = s.receive_one("q").await;
    let r = receipt(&m);
    let many: Vec<&str> = vec![r; 101];
    let cases: Vec<(&str, Value, &str)> = vec![
        ("ack", json!({"receipts": []}), "InvalidRequest"),
        ("ack", json!({}), "InvalidRequest"),
        ("ack", json!({"receipts": r}), "InvalidRequest"),
        ("ack", json!({"receipts": [1]}), "InvalidRequest"),
        (
            "ack",
            json!({"receipts": [r], "delay_seconds": 1}),
            "InvalidRequest",
        ),
        (
            "ack",
            json!({"receipts": [r], "extra": 1}),
            "InvalidRequest",
        ),
        ("ack", json!({ "receipts": many }), "BatchTooLarge"),
        (
            "nack",
            json!({"receipts": [r], "seconds": 1}),
            "InvalidRequest",
        ),
        (
            "nack",
            json!({"receipts": [r], "delay_seconds": -1}),
            "InvalidRequest",
        ),
        (
            "nack",
            json!({"receipts": [r], "delay_seconds": 43201}),
            "InvalidRequest",
        ),
        ("visibility", json!({"receipts": [r]}), "InvalidRequest"),
        (
            "visibility",
            json!({"receipts": [r], "seconds": 43201}),
            "InvalidRequest",
        ),
        (
            "visibility",
            json!({"receipts": [r], "delay_seconds": 1}),
            "InvalidRequest",
        ),
        (
            "visibility",
            json!({"receipts": [], "seconds": 1}),
            "InvalidRequest",
        ),
    ];
    for (op, body, code) in cases {
        let answer = s.post(&format!("/v1/queues/q/{op}"), body).await;
        assert_error(&answer, 400, code);
    }
    let st = s.stats("q").await;
    assert_eq!(
        (&st["in_flight"], &st["acked"]),
        (&json!(1), &json!(0)),
        "{st}"
    );
    assert_eq!(s.ack("q", &[r]).await[0]["ok"], true);
}

#[tokio::test]
async fn retry_backoff_delays_a_nacked_message_and_an_explicit_delay_wins() {
    let s = Server::start().await;
    s.create_queue(
        "q",
        json!({"retry_backoff": {"initial_seconds": 1, "max_seconds": 1}}),
    )
    .await;
    s.send_text("q", "x").await;
    let m = s.receive_one("q").await;
    s.nack("q", &[receipt(&m)], None).await;
    assert_eq!(s.stats("q").await["delayed"], 1, "backoff holds it back");
    assert!(s.drain("q").await.is_empty());
    let start = Instant::now();
    let got = s.receive("q", json!({"wait_seconds": 5})).await;
    assert_eq!(got.len(), 1);
    assert!(
        start.elapsed() > Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    // An explicit delay of 0 wins over the backoff.
    s.nack("q", &[receipt(&got[0])], Some(0)).await;
    assert_eq!(s.receive_one("q").await["receive_count"], 3);
}

#[tokio::test]
async fn retry_backoff_applies_to_a_lapsed_visibility() {
    let s = Server::start().await;
    s.create_queue(
        "q",
        json!({"retry_backoff": {"initial_seconds": 1, "max_seconds": 10}}),
    )
    .await;
    s.send_text("q", "x").await;
    s.receive("q", json!({"visibility_timeout_seconds": 0}))
        .await;
    // The lease lapsed at once; the backoff still holds it for a second.
    let st = s.stats("q").await;
    assert_eq!(
        (&st["visible"], &st["delayed"]),
        (&json!(0), &json!(1)),
        "{st}"
    );
    let got = s.receive("q", json!({"wait_seconds": 5})).await;
    assert_eq!(got.len(), 1);
}

#[tokio::test]
async fn the_queues_receive_wait_seconds_is_the_default_wait() {
    let s = Server::start().await;
    s.create_queue("q", json!({"receive_wait_seconds": 1}))
        .await;
    let start = Instant::now();
    assert!(s.receive("q", json!({})).await.is_empty());
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );
    let start = Instant::now();
    assert!(s.receive("q", json!({"wait_seconds": 0})).await.is_empty());
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
}
