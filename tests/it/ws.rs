//! WebSocket `GET /v1/ws` with a real client (tokio-tungstenite): queue and
//! topic push subscriptions, flow control by `prefetch`, acks and nacks over
//! the socket, sharing a queue with HTTP pullers, redelivery on disconnect,
//! resume tokens and their window, poison pills, frame errors and limits,
//! slow and silent clients, and SIGTERM. The contract is the WebSocket
//! section of `/work/shared/API.md` and its fine points; `docs/api.md`
//! records the close codes and `end` reasons this holds the server to.
//!
//! Queues that must not redeliver on their own get a visibility timeout of
//! 300 s, so a message seen again within a test was given back by the
//! server, never lapsed.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::support::ws::{assert_error_frame, bodies, body, Closed, Ws, WAIT};
use crate::support::{eventually, receipt, Server};

/// How long "nothing more comes" is watched.
const QUIET: Duration = Duration::from_millis(300);

/// A queue whose leases never lapse within a test.
async fn long_lease_queue(s: &Server, name: &str) {
    s.create_queue(name, json!({"visibility_timeout_seconds": 300}))
        .await;
}

/// `GET /v1/queues` names.
async fn queue_names(s: &Server) -> Vec<String> {
    let (st, v) = s.get("/v1/queues").await;
    assert_eq!(st, 200, "{v}");
    v["queues"]
        .as_array()
        .expect("queues list")
        .iter()
        .map(|q| q.as_str().expect("a queue name").to_string())
        .collect()
}

/// Receives (HTTP) until `n` messages are in hand or `limit` passes.
async fn receive_n(s: &Server, queue: &str, n: usize, limit: Duration) -> Vec<Value> {
    let start = Instant::now();
    let mut got = Vec::new();
    while got.len() < n && start.elapsed() < limit {
        let more = s
            .receive(queue, json!({"max": 10, "wait_seconds": 1}))
            .await;
        got.extend(more);
    }
    got
}

fn ids(ms: &[Value]) -> BTreeSet<String> {
    ms.iter()
        .map(|m| m["id"].as_str().expect("id").to_string())
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

// ---- queue subscriptions: flow control, acks, nacks ----

#[tokio::test]
async fn queue_subscription_pushes_at_most_prefetch_until_acks_free_credit() {
    let s = Server::start().await;
    long_lease_queue(&s, "q").await;
    for i in 0..5 {
        s.send_text("q", &format!("m{i}")).await;
    }
    let mut ws = Ws::connect(&s).await;
    ws.subscribe_queue("s1", "q", 2).await;
    let first = ws.messages(2).await;
    assert!(first.iter().all(|m| m["sub"] == "s1"), "{first:?}");
    ws.silent_for(QUIET).await;
    let st = s.stats("q").await;
    assert_eq!(
        (st["in_flight"].clone(), st["visible"].clone()),
        (json!(2), json!(3)),
        "{st}"
    );

    // One ack frees one unit of credit: exactly one more comes.
    let r0 = receipt(&first[0]).to_string();
    assert_eq!(
        ws.ack(&[&r0]).await,
        vec![json!({"receipt": r0, "ok": true})]
    );
    let third = ws.message().await;
    ws.silent_for(QUIET).await;

    // Two acks free two.
    ws.ack(&[receipt(&first[1]), receipt(&third)]).await;
    let last = ws.messages(2).await;
    ws.silent_for(QUIET).await;
    ws.ack(&[receipt(&last[0]), receipt(&last[1])]).await;

    let all: Vec<Value> = first.into_iter().chain([third]).chain(last).collect();
    assert_eq!(
        sorted(bodies(&all)),
        strings(&["m0", "m1", "m2", "m3", "m4"])
    );
    assert_eq!(ids(&all).len(), 5, "no message pushed twice");
    let st = s.stats("q").await;
    assert_eq!(
        (&st["visible"], &st["in_flight"], &st["acked"]),
        (&json!(0), &json!(0), &json!(5)),
        "{st}"
    );
}

#[tokio::test]
async fn ws_acks_answer_ok_stale_and_invalid_per_receipt_like_http() {
    let s = Server::start().await;
    long_lease_queue(&s, "q").await;
    long_lease_queue(&s, "other").await;
    s.send_text("q", "m").await;
    let mut ws = Ws::connect(&s).await;
    ws.subscribe_queue("s", "q", 1).await;
    let m1 = ws.message().await;
    let r1 = receipt(&m1).to_string();
    // Give it back at once: it is pushed again with a new receipt.
    assert_eq!(
        ws.nack(&[&r1], 0).await,
        vec![json!({"receipt": r1, "ok": true})]
    );
    let m2 = ws.message().await;
    let r2 = receipt(&m2).to_string();
    assert_eq!(m2["id"], m1["id"]);
    assert_eq!(m2["receive_count"], 2);
    assert_ne!(r1, r2);

    let stale = ws.ack(&[&r1]).await;
    assert_eq!(stale[0]["receipt"], r1.as_str(), "{stale:?}");
    assert_error_frame(
        &json!({"op": "error", "error": stale[0]["error"]}),
        "ReceiptStale",
    );

    let mixed = ws.ack(&[&r2, "garbage"]).await;
    assert_eq!(mixed[0], json!({"receipt": r2, "ok": true}));
    assert_eq!(mixed[1]["receipt"], "garbage");
    assert_error_frame(
        &json!({"op": "error", "error": mixed[1]["error"]}),
        "ReceiptInvalid",
    );
    // Acking an acked message again is ok.
    assert_eq!(
        ws.ack(&[&r2]).await,
        vec![json!({"receipt": r2, "ok": true})]
    );

    // Receipts of any queue, received over HTTP, ack over the socket.
    s.send_text("other", "o").await;
    let o = s.receive_one("other").await;
    assert_eq!(
        ws.ack(&[receipt(&o)]).await,
        vec![json!({"receipt": receipt(&o), "ok": true})]
    );
    assert_eq!(s.stats("other").await["acked"], 1);
    assert_eq!(s.stats("q").await["acked"], 1);
}

#[tokio::test]
async fn nack_over_ws_with_a_delay_pushes_the_message_again_after_the_delay() {
    let s = Server::start().await;
    long_lease_queue(&s, "q").await;
    let id = s.send_text("q", "later").await;
    let mut ws = Ws::connect(&s).await;
    ws.subscribe_queue("s", "q", 1).await;
    let m = ws.message().await;
    assert_eq!(m["receive_count"], 1);
    let nacked = Instant::now();
    let r = ws.nack(&[receipt(&m)], 1).await;
    assert_eq!(r, vec![json!({"receipt": receipt(&m), "ok": true})]);
    ws.silent_for(Duration::from_millis(600)).await;
    let again = ws.message().await;
    let waited = nacked.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "pushed again after {waited:?}, before the 1 s nack delay"
    );
    assert_eq!(again["id"], id.as_str());
    assert_eq!(again["receive_count"], 2);
    assert_eq!(again["sub"], "s");
}

#[tokio::test]
async fn a_push_is_a_receive_it_counts_and_its_receipt_acks_over_http() {
    let s = Server::start().await;
    long_lease_queue(&s, "q").await;
    let id = s
        .send("q", json!({"body": "hello", "attributes": {"k": "v"}}))
        .await;
    let mut ws = Ws::connect(&s).await;
    ws.subscribe_queue("s", "q", 5).await;
    let m = ws.message().await;
    assert_eq!(m["op"], "message");
    assert_eq!(m["sub"], "s");
    assert_eq!(m["id"], id.as_str());
    assert_eq!(m["body"], "hello");
    assert_eq!(m["attributes"], json!({"k": "v"}));
    assert_eq!(m["receive_count"], 1);
    assert_eq!(m["poison"], false);
    for f in ["receipt", "sent_at", "first_received_at"] {
        assert!(m[f].as_str().is_some_and(|t| !t.is_empty()), "{f}: {m}");
    }
    assert!(m["sequence"].is_u64(), "{m}");
    let st = s.stats("q").await;
    assert_eq!(
        (&st["received"], &st["in_flight"], &st["visible"]),
        (&json!(1), &json!(1), &json!(0)),
        "{st}"
    );
    // The pushed receipt is a queue receipt: HTTP ack takes it.
    let r = s.ack("q", &[receipt(&m)]).await;
    assert_eq!(r, vec![json!({"receipt": receipt(&m), "ok": true})]);
    let st = s.stats("q").await;
    assert_eq!(
        (&st["acked"], &st["in_flight"]),
        (&json!(1), &json!(0)),
        "{st}"
    );
}

// ---- sharing a queue with HTTP ----

#[tokio::test]
async fn a_ws_consumer_and_an_http_long_poller_share_a_queue_each_message_once() {
    let s = Server::start().await;
    long_lease_queue(&s, "q").await;
    let mut ws = Ws::connect(&s).await;
    ws.subscribe_queue("s", "q", 100).await;

    // An HTTP long-poller, receiving one at a time until the queue stays empty.
    let http = s.http.clone();
    let url = s.url("/v1/queues/q/receive");
    let poller = tokio::spawn(async move {
        let mut got = Vec::new();
        loop {
            let v: Value = http
                .post(&url)
                .json(&json!({"max": 1, "wait_seconds": 1}))
                .send()
                .await
                .expect("receive")
                .json()
                .await
                .expect("receive answer");
            let ms = v["messages"].as_array().expect("messages").clone();
            if ms.is_empty() {
                return got;
            }
            got.extend(ms);
        }
    });
    // Let the poller park (behind the subscription).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut sent = BTreeSet::new();
    for i in 0..20 {
        sent.insert(s.send_text("q", &format!("m{i}")).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut pushed = Vec::new();
    while let Some(f) = ws.next_within(Duration::from_millis(500)).await {
        assert_eq!(f["op"], "message", "{f}");
        pushed.push(f);
    }
    let polled = tokio::time::timeout(Duration::from_secs(10), poller)
        .await
        .expect("the poller ends")
        .expect("the poller task");
    let (p, h) = (ids(&pushed), ids(&polled));
    assert_eq!(p.len(), pushed.len(), "a message pushed twice");
    assert_eq!(h.len(), polled.len(), "a message polled twice");
    assert!(
        p.is_disjoint(&h),
        "a message went to both: {:?}",
        p.intersection(&h)
    );
    let all: BTreeSet<String> = p.union(&h).cloned().collect();
    assert_eq!(all, sent, "every message went to one of them");
    assert!(
        !p.is_empty() && !h.is_empty(),
        "both consumers were served: ws {} http {}",
        p.len(),
        h.len()
    );
}

// ---- redelivery on disconnect ----

/// Subscribes, takes 3 messages, acks one; answers the socket, the acked id
/// and the two unacked ids.
async fn hold_two_unacked(s: &Server) -> (Ws, String, BTreeSet<String>) {
    long_lease_queue(s, "q").await;
    for b in ["a", "b", "c"] {
        s.send_text("q", b).await;
    }
    let mut ws = Ws::connect(s).await;
    ws.subscribe_queue("s", "q", 10).await;
    let got = ws.messages(3).await;
    ws.ack(&[receipt(&got[0])]).await;
    let acked = got[0]["id"].as_str().expect("id").to_string();
    (ws, acked, ids(&got[1..]))
}

#[tokio::test]
async fn unacked_messages_are_visible_at_once_after_a_clean_close() {
    let s = Server::start().await;
    let (ws, _acked, unacked) = hold_two_unacked(&s).await;
    ws.close().await;
    let closed = Instant::now();
    let again = receive_n(&s, "q", 2, Duration::from_secs(3)).await;
    assert_eq!(ids(&again), unacked, "{again:?}");
    assert!(again.iter().all(|m| m["receive_count"] == 2), "{again:?}");
    assert!(
        closed.elapsed() < Duration::from_secs(4),
        "well before the 300 s lease"
    );
    assert_eq!(s.receive("q", json!({"max": 10})).await.len(), 0);
}

#[tokio::test]
async fn unacked_messages_are_visible_at_once_after_the_connection_drops() {
    let s = Server::start().await;
    let (ws, _acked, unacked) = hold_two_unacked(&s).await;
    drop(ws); // TCP goes away without a close handshake
    let again = receive_n(&s, "q", 2, Duration::from_secs(3)).await;
    assert_eq!(ids(&again), unacked, "{again:?}");
}

// ---- topic subscriptions, temporary queues, resume ----

#[tokio::test]
async fn a_topic_subscription_makes_a_listed_temporary_queue_and_pushes_publishes() {
    let s = Server::start().await;
    s.create_topic("t", json!({})).await;
    long_lease_queue(&s, "plain").await;
    let mut ws = Ws::connect(&s).await;
    let ok = ws.subscribe_topic("all", "t", json!({"prefetch": 5})).await;
    let q = ok["queue"].as_str().expect("queue").to_string();

    assert!(queue_names(&s).await.contains(&q), "temporary queue listed");
    let d = s.queue(&q).await;
    assert_eq!(d["temporary"], true, "{d}");
    assert_eq!(s.queue("plain").await["temporary"], false);
    let subs = s.topic("t").await["subscriptions"].clone();
    assert!(
        subs.as_array()
            .expect("subscriptions")
            .iter()
            .any(|x| x["queue"] == q.as_str()),
        "{subs}"
    );

    // A second subscription on the same connection, with a filter.
    let ok2 = ws
        .subscribe_topic("red", "t", json!({"filter": {"color": ["red"]}}))
        .await;
    assert_ne!(ok2["queue"], ok["queue"]);
    assert_ne!(ok2["resume"], ok["resume"]);

    let blue = s
        .publish("t", json!({"body": "b", "attributes": {"color": "blue"}}))
        .await;
    let m = ws.message().await;
    assert_eq!(
        (&m["sub"], &m["id"], &m["body"], &m["topic"]),
        (&json!("all"), &json!(blue), &json!("b"), &json!("t")),
        "{m}"
    );
    assert_eq!(m["attributes"], json!({"color": "blue"}));
    ws.silent_for(QUIET).await;
    ws.ack(&[receipt(&m)]).await;

    let red = s
        .publish("t", json!({"body": "r", "attributes": {"color": "red"}}))
        .await;
    let two = ws.messages(2).await;
    let subs: BTreeSet<&str> = two
        .iter()
        .map(|m| m["sub"].as_str().expect("sub"))
        .collect();
    assert_eq!(subs, BTreeSet::from(["all", "red"]));
    assert!(
        two.iter().all(|m| m["id"] == red.as_str()),
        "one id in every copy"
    );
}

#[tokio::test]
async fn resume_delivers_the_gap_in_order_and_nothing_acked_comes_again() {
    let s = Server::start().await;
    s.create_topic("t", json!({})).await;
    let mut a = Ws::connect(&s).await;
    let ok = a.subscribe_topic("a", "t", json!({"prefetch": 100})).await;
    let (queue, token) = (ok["queue"].clone(), ok["resume"].clone());
    s.publish("t", json!({"body": "m1"})).await;
    s.publish("t", json!({"body": "m2"})).await;
    let got = a.messages(2).await;
    assert_eq!(bodies(&got), strings(&["m1", "m2"]));
    a.ack(&[receipt(&got[0])]).await; // m1 acked, m2 not
    a.close().await;

    let gap: Vec<String> = (1..=5).map(|i| format!("g{i}")).collect();
    for g in &gap {
        s.publish("t", json!({ "body": g })).await;
    }
    let mut b = Ws::connect(&s).await;
    let ok = b
        .subscribe_topic("x", "t", json!({"resume": token, "prefetch": 100}))
        .await;
    assert_eq!(ok["queue"], queue, "the same temporary queue");
    let again = b.messages(6).await;
    assert!(again.iter().all(|m| m["sub"] == "x"), "{again:?}");
    // The unacked m2 first (given back at the disconnect), then the gap in
    // publish order; m1, acked before, never again.
    let mut want = vec!["m2".to_string()];
    want.extend(gap);
    assert_eq!(bodies(&again), want);
    assert_eq!(again[0]["id"], got[1]["id"]);
    assert_eq!(again[0]["receive_count"], 2);
    assert!(again[1..].iter().all(|m| m["receive_count"] == 1));
    b.silent_for(QUIET).await;

    // Still live: a publish now arrives too.
    s.publish("t", json!({"body": "after"})).await;
    assert_eq!(body(&b.message().await), "after");
}

#[tokio::test]
async fn an_unresumed_temporary_queue_is_deleted_after_the_window_and_its_token_expires() {
    let s = Server::start_with(&["--resume-seconds", "1"]).await;
    s.create_topic("t", json!({})).await;
    let mut a = Ws::connect(&s).await;
    let ok = a.subscribe_topic("a", "t", json!({})).await;
    let (queue, token) = (
        ok["queue"].as_str().expect("queue").to_string(),
        ok["resume"].clone(),
    );
    a.close().await;
    let gone = eventually(Duration::from_secs(5), || async {
        !queue_names(&s).await.contains(&queue)
    })
    .await;
    assert!(
        gone,
        "temporary queue {queue} still there after the 1 s window"
    );
    assert_eq!(s.topic("t").await["subscriptions"], json!([]));

    let mut b = Ws::connect(&s).await;
    let e = b
        .error(
            json!({"op": "subscribe", "sub": "x", "topic": "t", "resume": token}),
            "ResumeExpired",
        )
        .await;
    let r = e["ref"].clone();
    assert_eq!(
        e,
        json!({"op": "error", "ref": r, "error": {"code": "ResumeExpired", "message": e["error"]["message"]}})
    );
    // Nothing was re-created.
    assert!(!queue_names(&s).await.contains(&queue));
}

#[tokio::test]
async fn unsubscribing_a_topic_subscription_deletes_its_queue_and_expires_its_token() {
    let s = Server::start().await;
    s.create_topic("t", json!({})).await;
    let mut ws = Ws::connect(&s).await;
    let ok = ws.subscribe_topic("a", "t", json!({})).await;
    let queue = ok["queue"].as_str().expect("queue").to_string();
    ws.ok(json!({"op": "unsubscribe", "sub": "a"})).await;
    assert_eq!(s.get(&format!("/v1/queues/{queue}")).await.0, 404);
    ws.error(
        json!({"op": "subscribe", "sub": "b", "topic": "t", "resume": ok["resume"]}),
        "ResumeExpired",
    )
    .await;
}

#[tokio::test]
async fn made_up_tokens_bare_queue_names_and_another_topic_answer_resume_expired() {
    let s = Server::start().await;
    s.create_topic("t", json!({})).await;
    s.create_topic("t2", json!({})).await;
    let mut a = Ws::connect(&s).await;
    let ok = a.subscribe_topic("a", "t", json!({})).await;
    let queue = ok["queue"].as_str().expect("queue").to_string();
    let token = ok["resume"].as_str().expect("token").to_string();
    a.close().await;

    let mut b = Ws::connect(&s).await;
    for (i, bad) in ["made-up", queue.as_str(), "", &format!("{token}x")]
        .into_iter()
        .enumerate()
    {
        b.error(
            json!({"op": "subscribe", "sub": format!("s{i}"), "topic": "t", "resume": bad}),
            "ResumeExpired",
        )
        .await;
    }
    // A good token for another topic.
    b.error(
        json!({"op": "subscribe", "sub": "other", "topic": "t2", "resume": token}),
        "ResumeExpired",
    )
    .await;
    // The real one still works on its own topic.
    let ok = b
        .subscribe_topic("real", "t", json!({"resume": token}))
        .await;
    assert_eq!(ok["queue"], queue.as_str());
    s.publish("t", json!({"body": "still here"})).await;
    let m = b.message().await;
    assert_eq!(
        (&m["sub"], &m["body"]),
        (&json!("real"), &json!("still here"))
    );
}

#[tokio::test]
async fn a_temporary_queue_is_refused_to_plain_subscribe_and_http_receive() {
    let s = Server::start().await;
    s.create_topic("t", json!({})).await;
    let mut a = Ws::connect(&s).await;
    let ok = a.subscribe_topic("a", "t", json!({})).await;
    let queue = ok["queue"].as_str().expect("queue").to_string();
    s.publish("t", json!({"body": "mine"})).await;
    let m = a.message().await;

    let mut b = Ws::connect(&s).await;
    b.error(
        json!({"op": "subscribe", "sub": "steal", "queue": queue, "prefetch": 10}),
        "InvalidRequest",
    )
    .await;
    let r = s
        .receive_raw(&queue, json!({"max": 10, "wait_seconds": 0}))
        .await;
    crate::support::assert_error(&r, 400, "InvalidRequest");
    // Nothing was taken from the subscriber: its message is still held by it.
    a.silent_for(QUIET).await;
    assert_eq!(a.ack(&[receipt(&m)]).await[0]["ok"], true);
}

#[tokio::test]
async fn a_resume_while_the_old_connection_is_open_takes_over() {
    let s = Server::start_with(&["--resume-seconds", "1"]).await;
    s.create_topic("t", json!({})).await;
    let mut a = Ws::connect(&s).await;
    let ok = a.subscribe_topic("a", "t", json!({"prefetch": 10})).await;
    let queue = ok["queue"].clone();
    s.publish("t", json!({"body": "p1"})).await;
    let p1 = a.message().await;

    let mut b = Ws::connect(&s).await;
    let okb = b
        .subscribe_topic("b", "t", json!({"resume": ok["resume"], "prefetch": 10}))
        .await;
    assert_eq!(okb["queue"], queue);

    // The old connection goes: what it held comes to the new one at once.
    a.close().await;
    let m = b.message().await;
    assert_eq!((&m["id"], &m["body"]), (&p1["id"], &json!("p1")), "{m}");
    assert_eq!(m["receive_count"], 2);
    b.ack(&[receipt(&m)]).await;

    // The new connection holds the queue: it outlives the old one's window
    // (1 s, checked every second).
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert!(queue_names(&s)
        .await
        .contains(&queue.as_str().expect("name").to_string()));
    s.publish("t", json!({"body": "p2"})).await;
    let m = b.message().await;
    assert_eq!((&m["sub"], &m["body"]), (&json!("b"), &json!("p2")));
}

#[tokio::test]
async fn a_fifo_topic_subscription_pushes_a_group_in_order() {
    let s = Server::start().await;
    s.create_topic("f", json!({"fifo": true})).await;
    let mut ws = Ws::connect(&s).await;
    let ok = ws.subscribe_topic("a", "f", json!({"prefetch": 10})).await;
    let queue = ok["queue"].as_str().expect("queue").to_string();
    assert_eq!(s.queue(&queue).await["settings"]["fifo"], true);
    // Same body, distinct dedup ids: three messages, not duplicates.
    for i in 0..3 {
        s.publish(
            "f",
            json!({"body": "same", "group_id": "g", "dedup_id": format!("d{i}")}),
        )
        .await;
    }
    for i in 0..3 {
        let m = ws.message().await;
        assert_eq!(
            (&m["dedup_id"], &m["group_id"], &m["body"]),
            (&json!(format!("d{i}")), &json!("g"), &json!("same")),
            "{m}"
        );
        ws.ack(&[receipt(&m)]).await;
    }
    ws.silent_for(QUIET).await;
}

#[tokio::test]
async fn auto_ack_topic_subscriptions_are_acked_on_push() {
    let s = Server::start().await;
    s.create_topic("t", json!({})).await;
    let mut ws = Ws::connect(&s).await;
    let ok = ws
        .subscribe_topic("s", "t", json!({"auto_ack": true, "prefetch": 2}))
        .await;
    let queue = ok["queue"].as_str().expect("queue").to_string();
    for i in 0..5 {
        s.publish("t", json!({ "body": format!("m{i}") })).await;
    }
    // Acked on push, so none counts against the prefetch of 2.
    let got = ws.messages(5).await;
    assert_eq!(
        sorted(bodies(&got)),
        strings(&["m0", "m1", "m2", "m3", "m4"])
    );
    let done = eventually(Duration::from_secs(3), || async {
        let st = s.stats(&queue).await;
        st["acked"] == 5 && st["in_flight"] == 0 && st["visible"] == 0
    })
    .await;
    assert!(done, "{}", s.stats(&queue).await);
    // Acking them again is fine (already acked).
    assert_eq!(ws.ack(&[receipt(&got[0])]).await[0]["ok"], true);
    ws.silent_for(QUIET).await;
}

// ---- publish over the socket ----

#[tokio::test]
async fn publish_over_ws_answers_ids_to_a_topic_and_with_queue_sends() {
    let s = Server::start().await;
    s.create_topic("t", json!({})).await;
    long_lease_queue(&s, "fan").await;
    long_lease_queue(&s, "direct").await;
    s.subscribe("t", "fan", None).await;
    let mut ws = Ws::connect(&s).await;

    let ok = ws
        .ok(json!({"op": "publish", "topic": "t", "body": "to topic", "attributes": {"k": "v"}}))
        .await;
    let id = ok["ids"][0].as_str().expect("an id").to_string();
    assert_eq!(ok, json!({"op": "ok", "ref": ok["ref"], "ids": [id]}));
    let m = s.receive_one("fan").await;
    assert_eq!(
        (&m["id"], &m["body"], &m["topic"], &m["attributes"]),
        (
            &json!(id),
            &json!("to topic"),
            &json!("t"),
            &json!({"k": "v"})
        )
    );

    let ok = ws
        .ok(json!({"op": "publish", "queue": "direct", "body": "to queue"}))
        .await;
    let id = ok["ids"][0].as_str().expect("an id").to_string();
    assert_eq!(ok, json!({"op": "ok", "ref": ok["ref"], "ids": [id]}));
    let m = s.receive_one("direct").await;
    assert_eq!((&m["id"], &m["body"]), (&json!(id), &json!("to queue")));
    assert!(
        s.receive("fan", json!({})).await.is_empty(),
        "a send is no publish"
    );

    ws.error(
        json!({"op": "publish", "topic": "nope", "body": "x"}),
        "TopicNotFound",
    )
    .await;
    ws.error(
        json!({"op": "publish", "queue": "nope", "body": "x"}),
        "QueueNotFound",
    )
    .await;
    ws.error(
        json!({"op": "publish", "topic": "t", "queue": "direct", "body": "x"}),
        "InvalidRequest",
    )
    .await;
    ws.error(json!({"op": "publish", "body": "x"}), "InvalidRequest")
        .await;
    ws.error(json!({"op": "publish", "topic": "t"}), "InvalidRequest")
        .await;
    assert!(s.receive("direct", json!({})).await.is_empty());
}

// ---- many subscriptions, unsubscribe, limits ----

#[tokio::test]
async fn many_subscriptions_on_one_connection_each_push_under_its_own_sub() {
    let s = Server::start().await;
    long_lease_queue(&s, "q1").await;
    long_lease_queue(&s, "q2").await;
    s.create_topic("t", json!({})).await;
    let mut ws = Ws::connect(&s).await;
    ws.subscribe_queue("s1", "q1", 10).await;
    ws.subscribe_queue("s2", "q2", 10).await;
    ws.subscribe_topic("s3", "t", json!({})).await;
    s.send_text("q1", "one").await;
    s.send_text("q2", "two").await;
    s.publish("t", json!({"body": "three"})).await;
    let got = ws.messages(3).await;
    let by_sub: HashMap<String, String> = got
        .iter()
        .map(|m| {
            (
                m["sub"].as_str().expect("sub").to_string(),
                body(m).to_string(),
            )
        })
        .collect();
    assert_eq!(
        by_sub,
        HashMap::from([
            ("s1".to_string(), "one".to_string()),
            ("s2".to_string(), "two".to_string()),
            ("s3".to_string(), "three".to_string()),
        ])
    );
    // One ack frame settles receipts of three queues.
    let rs: Vec<&str> = got.iter().map(receipt).collect();
    let results = ws.ack(&rs).await;
    assert!(results.iter().all(|r| r["ok"] == true), "{results:?}");
    assert_eq!(s.stats("q1").await["acked"], 1);
    assert_eq!(s.stats("q2").await["acked"], 1);
    ws.silent_for(QUIET).await;
}

#[tokio::test]
async fn unsubscribe_makes_unacked_visible_at_once_and_unknown_subs_are_not_found() {
    let s = Server::start().await;
    long_lease_queue(&s, "q").await;
    s.send_text("q", "a").await;
    s.send_text("q", "b").await;
    let mut ws = Ws::connect(&s).await;
    ws.subscribe_queue("s1", "q", 10).await;
    let held = ws.messages(2).await;
    let ok = ws.ok(json!({"op": "unsubscribe", "sub": "s1"})).await;
    assert_eq!(ok, json!({"op": "ok", "ref": ok["ref"], "sub": "s1"}));
    let back = s.receive("q", json!({"max": 10})).await;
    assert_eq!(ids(&back), ids(&held), "visible again at once");
    assert!(back.iter().all(|m| m["receive_count"] == 2));

    // Nothing more is pushed to it.
    s.send_text("q", "c").await;
    ws.silent_for(QUIET).await;

    for sub in ["s1", "never"] {
        let e = ws
            .error(
                json!({"op": "unsubscribe", "sub": sub}),
                "SubscriptionNotFound",
            )
            .await;
        assert_eq!(e["ref"], json!(e["ref"].as_u64().expect("numeric ref")));
    }
    // The id is free again.
    ws.subscribe_queue("s1", "q", 10).await;
    assert_eq!(body(&ws.message().await), "c");
}

#[tokio::test]
async fn a_duplicate_sub_id_is_invalid_request_and_the_first_keeps_working() {
    let s = Server::start().await;
    long_lease_queue(&s, "q").await;
    long_lease_queue(&s, "q2").await;
    s.create_topic("t", json!({})).await;
    let mut ws = Ws::connect(&s).await;
    ws.subscribe_queue("s", "q", 10).await;
    ws.error(
        json!({"op": "subscribe", "sub": "s", "queue": "q2"}),
        "InvalidRequest",
    )
    .await;
    ws.error(
        json!({"op": "subscribe", "sub": "s", "topic": "t"}),
        "InvalidRequest",
    )
    .await;
    assert_eq!(
        s.topic("t").await["subscriptions"],
        json!([]),
        "no temporary queue made"
    );
    s.send_text("q2", "not mine").await;
    s.send_text("q", "mine").await;
    let m = ws.message().await;
    assert_eq!((&m["sub"], &m["body"]), (&json!("s"), &json!("mine")));
    ws.silent_for(QUIET).await;
}

#[tokio::test]
async fn subscriptions_past_ws_max_subscriptions_answer_limit_exceeded() {
    let s = Server::start_with(&["--ws-max-subscriptions", "2"]).await;
    long_lease_queue(&s, "q").await;
    s.create_topic("t", json!({})).await;
    let mut ws = Ws::connect(&s).await;
    ws.subscribe_queue("s1", "q", 1).await;
    ws.subscribe_topic("s2", "t", json!({})).await;
    ws.error(
        json!({"op": "subscribe", "sub": "s3", "queue": "q"}),
        "LimitExceeded",
    )
    .await;
    ws.error(
        json!({"op": "subscribe", "sub": "s4", "topic": "t"}),
        "LimitExceeded",
    )
    .await;
    assert_eq!(
        s.topic("t").await["subscriptions"].as_array().map(Vec::len),
        Some(1),
        "a refused topic subscription makes no queue"
    );
    // The limit is per connection.
    let mut other = Ws::connect(&s).await;
    other.subscribe_queue("s1", "q", 1).await;
    other.subscribe_queue("s2", "q", 1).await;
    // An unsubscribe frees a slot.
    ws.ok(json!({"op": "unsubscribe", "sub": "s1"})).await;
    ws.subscribe_queue("s3", "q", 1).await;
}

// ---- end: poison pills and deleted queues ----

#[tokio::test]
async fn a_poison_pill_is_pushed_then_end_and_what_came_after_is_visible_at_once() {
    let s = Server::start().await;
    long_lease_queue(&s, "q").await;
    s.send_text("q", "work").await;
    let pill = s.send("q", json!({"body": "stop", "poison": true})).await;
    s.send_text("q", "after").await;
    let mut ws = Ws::connect(&s).await;
    ws.subscribe_queue("s", "q", 10).await;
    let work = ws.message().await;
    assert_eq!(
        (&work["body"], &work["poison"]),
        (&json!("work"), &json!(false))
    );
    let stop = ws.message().await;
    assert_eq!(
        (&stop["id"], &stop["poison"], &stop["sub"]),
        (&json!(pill), &json!(true), &json!("s"))
    );
    assert_eq!(
        ws.next().await,
        json!({"op": "end", "sub": "s", "reason": "poison"})
    );
    ws.silent_for(QUIET).await;
    // The one after the pill is not held by the ended subscription.
    let after = s.receive("q", json!({"max": 10})).await;
    assert_eq!(bodies(&after), strings(&["after"]));
    // The pill needs an ack like any message.
    assert_eq!(
        s.stats("q").await["in_flight"],
        3,
        "work, stop, and 'after' by HTTP"
    );
    assert_eq!(ws.ack(&[receipt(&stop), receipt(&work)]).await.len(), 2);
    assert_eq!(s.stats("q").await["acked"], 2);
}

#[tokio::test]
async fn deleting_a_subscribed_queue_ends_the_subscription() {
    let s = Server::start().await;
    long_lease_queue(&s, "q").await;
    let mut ws = Ws::connect(&s).await;
    ws.subscribe_queue("s", "q", 10).await;
    let (st, v) = s.delete("/v1/queues/q").await;
    assert_eq!(st, 200, "WebSocket consumers do not hold a queue: {v}");
    assert_eq!(
        ws.next().await,
        json!({"op": "end", "sub": "s", "reason": "queue deleted"})
    );
    // The connection stays usable.
    ws.error(
        json!({"op": "subscribe", "sub": "s2", "queue": "q"}),
        "QueueNotFound",
    )
    .await;
}

#[tokio::test]
async fn a_prefetch_1_consumer_gets_the_next_message_right_after_its_ack() {
    // 20 messages, prefetch 1, each acked on arrival: 20 loopback round
    // trips, a few ms each. The server writes the ack's `ok` and then the
    // next message as two small frames: without TCP_NODELAY on the server,
    // Nagle holds the message until the client's delayed ACK (40 ms on
    // Linux), ~45 ms a message. (The client sets TCP_NODELAY.)
    let s = Server::start().await;
    long_lease_queue(&s, "q").await;
    let batch: Vec<Value> = (0..20)
        .map(|i| json!({ "body": format!("m{i}") }))
        .collect();
    assert_eq!(s.send_raw("q", json!({ "messages": batch })).await.0, 200);
    let mut ws = Ws::connect(&s).await;
    ws.subscribe_queue("s", "q", 1).await;
    let start = Instant::now();
    for _ in 0..20 {
        let m = ws.message().await;
        ws.ack(&[receipt(&m)]).await;
    }
    let took = start.elapsed();
    assert!(
        took < Duration::from_millis(400),
        "20 push+ack round trips took {took:?} ({:?} each)",
        took / 20
    );
}

// ---- bad frames and limits ----

#[tokio::test]
async fn bad_frames_answer_invalid_request_and_the_connection_stays() {
    let s = Server::start().await;
    long_lease_queue(&s, "q").await;
    s.create_topic("t", json!({})).await;
    let mut ws = Ws::connect(&s).await;

    // Without a readable ref, the error carries none.
    for text in ["not json", "[1, 2]", "{\"op\": \"subscribe\"", ""] {
        ws.send_text(text).await;
        let e = ws.next().await;
        assert_error_frame(&e, "InvalidRequest");
        assert!(e.get("ref").is_none(), "{text:?}: {e}");
    }
    ws.send_message(Message::binary(b"{\"op\":\"ack\"}".to_vec()))
        .await;
    assert_error_frame(&ws.next().await, "InvalidRequest");

    // With a ref, any JSON value, echoed as is.
    ws.send(json!({"op": "dance", "ref": {"any": ["json", 1]}}))
        .await;
    let e = ws.next().await;
    assert_error_frame(&e, "InvalidRequest");
    assert_eq!(e["ref"], json!({"any": ["json", 1]}));

    for bad in [
        json!({"sub": "s", "queue": "q"}),
        json!({"op": 7}),
        json!({"op": "subscribe", "sub": "s", "queue": "q", "prefetch": 1001}),
        json!({"op": "subscribe", "sub": "s", "queue": "q", "prefetch": 0}),
        json!({"op": "subscribe", "sub": "s", "queue": "q", "prefetch": "10"}),
        json!({"op": "subscribe", "sub": "s", "queue": "q", "topic": "t"}),
        json!({"op": "subscribe", "sub": "s"}),
        json!({"op": "subscribe", "queue": "q"}),
        json!({"op": "subscribe", "sub": "", "queue": "q"}),
        json!({"op": "subscribe", "sub": "s", "queue": "q", "color": "red"}),
        json!({"op": "subscribe", "sub": "s", "queue": "q", "resume": "tok"}),
        json!({"op": "ack", "receipts": []}),
        json!({"op": "ack", "receipts": "r"}),
        json!({"op": "ack"}),
        json!({"op": "nack", "receipts": ["r"], "delay_seconds": -1}),
        json!({"op": "unsubscribe"}),
    ] {
        ws.error(bad, "InvalidRequest").await;
    }
    // A frame settles up to a whole prefetch window (1000 receipts).
    let many: Vec<String> = (0..1001).map(|i| format!("r{i}")).collect();
    ws.error(json!({"op": "ack", "receipts": many}), "BatchTooLarge")
        .await;
    ws.error(
        json!({"op": "subscribe", "sub": "s", "queue": "missing"}),
        "QueueNotFound",
    )
    .await;
    ws.error(
        json!({"op": "subscribe", "sub": "s", "topic": "missing"}),
        "TopicNotFound",
    )
    .await;
    ws.error(
        json!({"op": "subscribe", "sub": "s", "queue": "bad name!"}),
        "InvalidName",
    )
    .await;
    ws.error(
        json!({"op": "subscribe", "sub": "s", "topic": "t", "filter": {"k": "not a list"}}),
        "InvalidSetting",
    )
    .await;

    // Still usable: prefetch 1000 is the largest allowed, and it pushes.
    ws.subscribe_queue("s", "q", 1000).await;
    s.send_text("q", "fine").await;
    assert_eq!(body(&ws.message().await), "fine");
}

#[tokio::test]
async fn a_frame_over_max_frame_bytes_closes_with_1009() {
    let s = Server::start_with(&["--max-frame-bytes", "1024"]).await;
    long_lease_queue(&s, "q").await;
    let mut ws = Ws::connect(&s).await;
    let small = json!({"op": "publish", "queue": "q", "body": "x".repeat(900)});
    assert!(small.to_string().len() < 1024);
    ws.ok(small).await;
    let big = json!({"op": "publish", "queue": "q", "body": "x".repeat(2000)});
    ws.send(big).await;
    match ws.closed_within(WAIT).await {
        Closed::Frame(code, _) => assert_eq!(code, 1009),
        other => panic!("expected close 1009, got {other:?}"),
    }
    assert_eq!(
        s.stats("q").await["visible"],
        1,
        "the big frame stored nothing"
    );
}

#[tokio::test]
async fn a_slow_reader_is_closed_1008_its_messages_come_back_and_others_are_served() {
    let s = Server::start_with(&["--ws-outbox-bytes", "262144"]).await;
    long_lease_queue(&s, "big").await;
    long_lease_queue(&s, "small").await;
    // 12 MB: more than the kernel's socket buffers plus the 256 KiB outbox.
    const N: usize = 120;
    let text = "x".repeat(100_000);
    for _ in 0..N / 30 {
        let batch: Vec<Value> = (0..30).map(|_| json!({ "body": text })).collect();
        let (st, v) = s.send_raw("big", json!({ "messages": batch })).await;
        assert_eq!(st, 200, "{v}");
    }
    let mut slow = Ws::connect(&s).await;
    slow.subscribe_queue("s", "big", 1000).await;
    // From here on `slow` is not read.

    // Closed for it, the server gives back everything it pushed.
    let back = eventually(Duration::from_secs(10), || async {
        let st = s.stats("big").await;
        st["received"].as_u64() >= Some(1) && st["visible"] == N as u64 && st["in_flight"] == 0
    })
    .await;
    assert!(back, "not all visible again: {}", s.stats("big").await);

    // Another client is served normally meanwhile.
    let mut fast = Ws::connect(&s).await;
    fast.subscribe_queue("f", "small", 1).await;
    s.send_text("small", "hi").await;
    let m = fast.message().await;
    assert_eq!(body(&m), "hi");
    assert_eq!(fast.ack(&[receipt(&m)]).await[0]["ok"], true);

    // Reading at last (writing nothing back): what was in the pipe, then
    // close 1008.
    slow.mute();
    assert_eq!(
        slow.closed_within(Duration::from_secs(15)).await,
        Closed::Frame(1008, "slow consumer".into())
    );
    let got = s.receive("big", json!({"max": 10})).await;
    assert_eq!(got.len(), 10);
    assert!(got.iter().all(|m| body(m).len() == 100_000));
}

#[tokio::test]
async fn a_reader_keeping_up_with_a_batch_bigger_than_the_outbox_is_not_closed() {
    // Default limits (4 MiB outbox, 1 MiB messages): 10 messages of 500 kB
    // and prefetch 10, read as fast as they come. The push loop queues the
    // whole batch at once (5 MB) and the outbox limit trips although the
    // client reads everything: today 8 messages, then `end` "connection
    // closing", then close 1008 "slow consumer"; every reconnect does it again.
    let s = Server::start().await;
    long_lease_queue(&s, "q").await;
    let text = "x".repeat(500_000);
    let batch: Vec<Value> = (0..10).map(|_| json!({ "body": text })).collect();
    assert_eq!(s.send_raw("q", json!({ "messages": batch })).await.0, 200);
    let mut ws = Ws::connect(&s).await;
    ws.subscribe_queue("s", "q", 10).await;
    let mut frames = Vec::new();
    for _ in 0..10 {
        match ws.next_frame_or_close(WAIT).await {
            Ok(f) if f["op"] == "message" => frames.push("message".to_string()),
            Ok(f) => frames.push(f.to_string()),
            Err(closed) => panic!("a reading client was closed: {frames:?} then {closed:?}"),
        }
    }
    assert_eq!(frames, vec!["message"; 10]);
}

#[tokio::test]
async fn a_client_that_does_not_answer_pings_is_closed_1001_idle_timeout() {
    let s = Server::start_with(&["--idle-timeout", "1s"]).await;
    long_lease_queue(&s, "q").await;
    let mut ws = Ws::connect(&s).await;
    ws.subscribe_queue("s", "q", 1).await;
    // It still reads, but answers nothing: no pongs.
    ws.mute();
    let quiet_from = Instant::now();
    let (frames, closed) = ws.frames_until_closed(Duration::from_secs(5)).await;
    let after = quiet_from.elapsed();
    assert!(frames.is_empty(), "{frames:?}");
    assert_eq!(closed, Closed::Frame(1001, "idle timeout".into()));
    assert!(
        after >= Duration::from_millis(900),
        "closed after {after:?}, before the 1 s idle timeout"
    );
}

#[tokio::test]
async fn a_client_that_only_reads_and_answers_pings_stays_open_past_the_idle_timeout() {
    let s = Server::start_with(&["--idle-timeout", "1s"]).await;
    long_lease_queue(&s, "q").await;
    let mut ws = Ws::connect(&s).await;
    ws.subscribe_queue("s", "q", 1).await;
    // Reading answers the server's pings (tungstenite sends the pongs).
    match ws.open_for(Duration::from_millis(2500)).await {
        Ok(frames) => assert!(frames.is_empty(), "{frames:?}"),
        Err(closed) => panic!("a client answering pings was closed: {closed:?}"),
    }
    s.send_text("q", "still here").await;
    assert_eq!(body(&ws.message().await), "still here");
}

// ---- shutdown ----

#[tokio::test]
async fn sigterm_closes_1001_and_a_restart_keeps_unacked_and_drops_acked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Server::start_on_disk(dir.path(), &[]).await;
    long_lease_queue(&s, "q").await;
    let acked = s.send_text("q", "acked").await;
    let unacked = s.send_text("q", "unacked").await;
    let mut ws = Ws::connect(&s).await;
    ws.subscribe_queue("s", "q", 10).await;
    let got = ws.messages(2).await;
    let a = got
        .iter()
        .find(|m| m["id"] == acked.as_str())
        .expect("acked");
    assert_eq!(ws.ack(&[receipt(a)]).await[0]["ok"], true);

    let (exit, (frames, closed)) = tokio::join!(
        s.terminate(),
        ws.frames_until_closed(Duration::from_secs(15))
    );
    assert_eq!(exit, Some(0));
    assert_eq!(closed, Closed::Frame(1001, "server shutting down".into()));
    for f in &frames {
        assert_eq!(
            f,
            &json!({"op": "end", "sub": "s", "reason": "server shutting down"}),
            "only an end may come before the close"
        );
    }

    let s = Server::start_on_disk(dir.path(), &[]).await;
    let again = s.receive("q", json!({"max": 10})).await;
    assert_eq!(ids(&again), BTreeSet::from([unacked]), "{again:?}");
    assert_eq!(again[0]["receive_count"], 2);
}

/// A durable server leases a push consumer's next batch while the last
/// one's receive counts sync: batches still arrive in queue order, each
/// message once, with sends going on while the consumer acks one by one.
#[tokio::test]
async fn durable_push_delivers_in_order_once_while_batches_pipeline() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Server::start_on_disk(dir.path(), &[]).await;
    long_lease_queue(&s, "pipe").await;
    let send_batch = |from: usize| {
        let messages: Vec<Value> = (from..from + 100)
            .map(|i| json!({ "body": format!("m{i}") }))
            .collect();
        json!({ "messages": messages })
    };
    for chunk in 0..5 {
        let (st, v) = s.send_raw("pipe", send_batch(chunk * 100)).await;
        assert_eq!(st, 200, "{v}");
    }
    let mut ws = Ws::connect(&s).await;
    ws.subscribe_queue("s", "pipe", 64).await;
    let mut bodies = Vec::new();
    let mut last_seq = 0;
    let mut acks = 0;
    let mut sent = 500;
    while bodies.len() < 1000 {
        let v = ws.next().await;
        if v["op"] == "ok" {
            assert_eq!(v["results"][0]["ok"], true, "{v}");
            acks += 1;
            continue;
        }
        assert_eq!(v["op"], "message", "{v}");
        let seq = v["sequence"].as_u64().expect("a sequence");
        assert!(
            seq > last_seq,
            "pushed out of order: {seq} after {last_seq}"
        );
        last_seq = seq;
        assert_eq!(v["receive_count"], 1, "{v}");
        bodies.push(v["body"].as_str().expect("a body").to_string());
        ws.send(json!({"op": "ack", "receipts": [v["receipt"]], "ref": bodies.len()}))
            .await;
        if bodies.len() % 100 == 0 && sent < 1000 {
            // More arrives while the consumer is busy.
            let (st, v) = s.send_raw("pipe", send_batch(sent)).await;
            assert_eq!(st, 200, "{v}");
            sent += 100;
        }
    }
    let want: Vec<String> = (0..1000).map(|i| format!("m{i}")).collect();
    assert_eq!(bodies, want, "every message once, in send order");
    while acks < 1000 {
        let v = ws.next().await;
        assert_eq!(v["op"], "ok", "nothing more is pushed: {v}");
        acks += 1;
    }
    let st = s.stats("pipe").await;
    assert_eq!(
        (st["visible"].as_u64(), st["in_flight"].as_u64()),
        (Some(0), Some(0)),
        "{st}"
    );
}

/// Ack frames sent back to back, one receipt each (a client acking every
/// message), are settled together by the server but each is answered, in
/// order, with its own `ref` and result; a frame with a bad receipt among
/// them gets its own per-receipt error and the others still settle.
#[tokio::test]
async fn back_to_back_ack_frames_are_each_answered_in_order() {
    let s = Server::start().await;
    long_lease_queue(&s, "burst").await;
    for chunk in 0..2 {
        let messages: Vec<Value> = (0..100)
            .map(|i| json!({"body": format!("m{}", chunk * 100 + i)}))
            .collect();
        let (st, v) = s.send_raw("burst", json!({ "messages": messages })).await;
        assert_eq!(st, 200, "{v}");
    }
    let mut ws = Ws::connect(&s).await;
    ws.subscribe_queue("s", "burst", 1000).await;
    let pushed = ws.messages(200).await;
    let mut want = Vec::new();
    for (i, m) in pushed.iter().enumerate() {
        ws.send(json!({"op": "ack", "receipts": [m["receipt"]], "ref": i}))
            .await;
        want.push(json!(i));
        if i == 100 {
            ws.send(json!({"op": "ack", "receipts": ["garbage"], "ref": "bad"}))
                .await;
            want.push(json!("bad"));
        }
    }
    let mut got = Vec::new();
    while got.len() < want.len() {
        let v = ws.next().await;
        assert_eq!(v["op"], "ok", "every ack frame is answered ok: {v}");
        let r = &v["results"][0];
        if v["ref"] == json!("bad") {
            assert_eq!(r["error"]["code"], "ReceiptInvalid", "{v}");
        } else {
            assert_eq!(r["ok"], true, "{v}");
        }
        got.push(v["ref"].clone());
    }
    assert_eq!(got, want, "answers come in the order the frames were sent");
    let st = s.stats("burst").await;
    assert_eq!(
        (st["visible"].as_u64(), st["in_flight"].as_u64()),
        (Some(0), Some(0)),
        "{st}"
    );
}
