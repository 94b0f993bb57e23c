//! Long polling: a parked receive returns as soon as a message arrives,
//! waiters are served in arrival order, idle waiters cost no CPU, and the
//! waiter bound answers 429.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{assert_error, Server};

#[tokio::test]
async fn a_long_poll_returns_as_soon_as_a_message_is_published() {
    let s = Arc::new(Server::start().await);
    s.create_topic("t", json!({})).await;
    s.create_queue("q", json!({})).await;
    s.subscribe("t", "q", None).await;
    let publisher = {
        let s = s.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            s.publish("t", json!({"body": "wake up"})).await
        })
    };
    let start = Instant::now();
    let got = s.receive("q", json!({"wait_seconds": 10})).await;
    let took = start.elapsed();
    let id = publisher.await.expect("publisher");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["id"], json!(id));
    assert!(
        took >= Duration::from_millis(250),
        "returned before the publish: {took:?}"
    );
    assert!(
        took < Duration::from_secs(5),
        "returned only after {took:?}"
    );
}

#[tokio::test]
async fn a_long_poll_returns_as_soon_as_a_message_is_sent() {
    let s = Arc::new(Server::start().await);
    s.create_queue("q", json!({})).await;
    let sender = {
        let s = s.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            s.send_text("q", "direct").await
        })
    };
    let start = Instant::now();
    let got = s.receive("q", json!({"wait_seconds": 10, "max": 10})).await;
    sender.await.expect("sender");
    assert_eq!(got.len(), 1);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn a_long_poll_with_nothing_to_receive_ends_empty_after_its_wait() {
    let s = Server::start().await;
    s.create_queue("q", json!({})).await;
    let start = Instant::now();
    assert!(s.receive("q", json!({"wait_seconds": 1})).await.is_empty());
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[tokio::test]
async fn waiters_are_served_in_arrival_order() {
    let s = Arc::new(Server::start().await);
    s.create_queue("q", json!({})).await;
    let mut waiters = Vec::new();
    for _ in 0..3 {
        let s2 = s.clone();
        waiters.push(tokio::spawn(async move {
            s2.receive("q", json!({"wait_seconds": 10})).await
        }));
        // Let this waiter park before the next one arrives.
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    for b in ["first", "second", "third"] {
        s.send_text("q", b).await;
    }
    let mut got = Vec::new();
    for w in waiters {
        let msgs = w.await.expect("waiter");
        assert_eq!(msgs.len(), 1, "{msgs:?}");
        got.push(msgs[0]["body"].as_str().expect("body").to_string());
    }
    assert_eq!(got, ["first", "second", "third"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_waiters_cost_almost_no_cpu() {
    let s = Arc::new(Server::start().await);
    s.create_queue("q", json!({})).await;
    let cpu_before = s.cpu_time();
    let start = Instant::now();
    let mut waiters = Vec::new();
    for _ in 0..1000 {
        let s = s.clone();
        waiters.push(tokio::spawn(async move {
            s.receive_raw("q", json!({"wait_seconds": 2})).await
        }));
    }
    for w in waiters {
        let (status, v) = w.await.expect("waiter");
        assert_eq!((status, &v), (200, &json!({"messages": []})));
    }
    let took = start.elapsed();
    let cpu = s.cpu_time() - cpu_before;
    assert!(took >= Duration::from_secs(2), "{took:?}");
    assert!(
        cpu < Duration::from_millis(500),
        "the server burned {cpu:?} of CPU for 1000 idle waiters over {took:?}"
    );
    // The queue still works afterwards.
    s.send_text("q", "after").await;
    assert_eq!(s.drain_bodies("q").await, ["after"]);
}

#[tokio::test]
async fn a_receive_past_the_waiter_limit_is_429_throttled() {
    let s = Arc::new(Server::start_with(&["--max-waiters-per-queue", "1"]).await);
    s.create_queue("q", json!({})).await;
    let parked = {
        let s = s.clone();
        tokio::spawn(async move { s.receive("q", json!({"wait_seconds": 3})).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let resp = s
        .http
        .post(s.url("/v1/queues/q/receive"))
        .json(&json!({"wait_seconds": 3}))
        .send()
        .await
        .expect("second receive");
    assert!(
        resp.headers().contains_key("retry-after"),
        "{:?}",
        resp.headers()
    );
    let status = resp.status().as_u16();
    let v: serde_json::Value = resp.json().await.expect("JSON error");
    assert_error(&(status, v), 429, "Throttled");
    // A receive that does not wait is not a waiter.
    assert!(s.receive("q", json!({"wait_seconds": 0})).await.is_empty());
    s.send_text("q", "for the parked one").await;
    let got = parked.await.expect("parked receive");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["body"], "for the parked one");
}

#[tokio::test]
async fn deleting_a_queue_releases_its_parked_receives_at_once() {
    let s = Arc::new(Server::start().await);
    s.create_queue("q", json!({})).await;
    let parked = {
        let s = s.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            let answer = s.receive_raw("q", json!({"wait_seconds": 10})).await;
            (answer, start.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(s.delete("/v1/queues/q").await.0, 200);
    let ((status, v), took) = parked.await.expect("parked receive");
    assert_eq!((status, &v), (200, &json!({"messages": []})));
    assert!(took < Duration::from_secs(5), "released after {took:?}");
}

#[tokio::test]
async fn a_fifo_waiter_is_not_handed_a_blocked_group_but_wakes_for_another() {
    let s = Arc::new(Server::start().await);
    s.create_queue("f", json!({"fifo": true, "content_based_dedup": true}))
        .await;
    s.send("f", json!({"body": "a1", "group_id": "a"})).await;
    let a1 = s.receive_one("f").await;
    let waiter = {
        let s = s.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            let got = s.receive("f", json!({"wait_seconds": 10, "max": 10})).await;
            (got, start.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    // Group a is blocked behind a1: a2 must not wake the waiter with it.
    s.send("f", json!({"body": "a2", "group_id": "a"})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.send("f", json!({"body": "b1", "group_id": "b"})).await;
    let (got, took) = waiter.await.expect("waiter");
    let bodies: Vec<&str> = got
        .iter()
        .map(|m| m["body"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(bodies, ["b1"]);
    assert!(
        took >= Duration::from_millis(400),
        "woke before b1 was sent: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    s.ack("f", &[crate::support::receipt(&a1)]).await;
    assert_eq!(s.receive_one("f").await["body"], "a2");
}

#[tokio::test]
async fn a_nack_wakes_a_parked_waiter() {
    let s = Arc::new(Server::start().await);
    s.create_queue("q", json!({})).await;
    s.send_text("q", "retry me").await;
    let m = s.receive_one("q").await;
    let waiter = {
        let s = s.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            (
                s.receive("q", json!({"wait_seconds": 10})).await,
                start.elapsed(),
            )
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.nack("q", &[crate::support::receipt(&m)], None).await;
    let (got, took) = waiter.await.expect("waiter");
    assert_eq!(got.len(), 1);
    assert_eq!(
        (&got[0]["id"], &got[0]["receive_count"]),
        (&m["id"], &json!(2))
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
}
