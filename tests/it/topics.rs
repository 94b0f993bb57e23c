//! Topics and subscriptions: create, describe, delete, namespaces, FIFO
//! topics, fan-out and its ids.

use std::sync::Arc;

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{assert_error, Server};

#[tokio::test]
async fn put_creates_a_topic_and_is_idempotent() {
    let s = Server::start().await;
    let v = s.create_topic("orders", json!({})).await;
    assert_eq!(v["name"], "orders");
    assert_eq!(v["settings"]["fifo"], false);
    assert_eq!(v["settings"]["content_based_dedup"], false);
    let (status, again) = s.put("/v1/topics/orders", json!({})).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["settings"], v["settings"]);
    let (status, bare) = s.raw(Method::PUT, "/v1/topics/orders", "").await;
    assert_eq!(status, 200, "{bare}");
    assert_eq!(
        s.get("/v1/topics").await,
        (200, json!({"topics": ["orders"]}))
    );
}

#[tokio::test]
async fn changing_a_topics_fifo_is_409_topic_exists() {
    let s = Server::start().await;
    s.create_topic("std", json!({})).await;
    s.create_topic("fif", json!({"fifo": true})).await;
    assert_error(
        &s.put("/v1/topics/std", json!({"fifo": true})).await,
        409,
        "TopicExists",
    );
    assert_error(
        &s.put("/v1/topics/fif", json!({"fifo": false})).await,
        409,
        "TopicExists",
    );
    assert_eq!(s.topic("std").await["settings"]["fifo"], false);
    assert_eq!(s.topic("fif").await["settings"]["fifo"], true);
}

#[tokio::test]
async fn bad_topic_settings_are_refused_and_create_nothing() {
    let s = Server::start().await;
    for body in [
        json!({"dedup_window_seconds": 59}),
        json!({"dedup_window_seconds": 86401}),
        json!({"content_based_dedup": true}),
    ] {
        assert_error(&s.put("/v1/topics/t", body).await, 400, "InvalidSetting");
    }
    for body in [
        json!({"fifo": 1}),
        json!({"fifo": true, "delay_seconds": 3}),
        json!({"content_based_dedup": "yes"}),
    ] {
        assert_error(&s.put("/v1/topics/t", body).await, 400, "InvalidRequest");
    }
    let (status, text) = s.raw(Method::PUT, "/v1/topics/t", "{oops").await;
    assert_eq!(status, 400, "{text}");
    assert_eq!(s.get("/v1/topics").await.1, json!({"topics": []}));
}

#[tokio::test]
async fn invalid_topic_names_are_invalid_name() {
    let s = Server::start().await;
    let long = "t".repeat(81);
    for name in [long.as_str(), "a%20b", "a+b", "%C3%BC", "a%2Fb"] {
        let cases = [
            (Method::PUT, format!("/v1/topics/{name}"), Some(json!({}))),
            (Method::GET, format!("/v1/topics/{name}"), None),
            (Method::DELETE, format!("/v1/topics/{name}"), None),
            (
                Method::POST,
                format!("/v1/topics/{name}/publish"),
                Some(json!({"body": "x"})),
            ),
            (
                Method::PUT,
                format!("/v1/topics/{name}/subscriptions/q"),
                Some(json!({})),
            ),
            (
                Method::PUT,
                format!("/v1/topics/t/subscriptions/{name}"),
                Some(json!({})),
            ),
            (
                Method::DELETE,
                format!("/v1/topics/t/subscriptions/{name}"),
                None,
            ),
        ];
        for (method, path, body) in cases {
            let answer = s.request(method.clone(), &path, body).await;
            assert_error(&answer, 400, "InvalidName");
        }
    }
    assert_eq!(s.get("/v1/topics").await.1, json!({"topics": []}));
}

#[tokio::test]
async fn describe_shows_subscriptions_filters_and_counters() {
    let s = Server::start().await;
    s.create_topic("t", json!({})).await;
    s.create_queue("all", json!({})).await;
    s.create_queue("eu", json!({})).await;
    s.subscribe("t", "all", None).await;
    let f = json!({"region": [{"prefix": "eu-"}]});
    s.subscribe("t", "eu", Some(f.clone())).await;
    s.publish(
        "t",
        json!({"body": "1", "attributes": {"region": "eu-west"}}),
    )
    .await;
    s.publish(
        "t",
        json!({"body": "2", "attributes": {"region": "us-east"}}),
    )
    .await;
    let v = s.topic("t").await;
    assert_eq!(v["name"], "t");
    let mut subs = v["subscriptions"]
        .as_array()
        .expect("subscriptions")
        .clone();
    subs.sort_by_key(|x| x["queue"].as_str().map(String::from));
    assert_eq!(
        subs,
        [
            json!({"queue": "all", "filter": null}),
            json!({"queue": "eu", "filter": f})
        ]
    );
    assert_eq!(v["stats"]["published"], 2, "{v}");
    assert_eq!(v["stats"]["delivered"], 3, "{v}");
}

#[tokio::test]
async fn a_publish_that_matches_nothing_is_accepted_and_counted_as_dropped() {
    let s = Server::start().await;
    s.create_topic("t", json!({})).await;
    let id = s.publish("t", json!({"body": "nobody listens"})).await;
    assert_eq!(id.len(), 32);
    let v = s.topic("t").await;
    assert_eq!(
        (&v["stats"]["published"], &v["stats"]["dropped"]),
        (&json!(1), &json!(1))
    );
}

#[tokio::test]
async fn missing_topics_are_404_topic_not_found() {
    let s = Server::start().await;
    s.create_queue("q", json!({})).await;
    assert_error(&s.get("/v1/topics/nope").await, 404, "TopicNotFound");
    assert_error(&s.delete("/v1/topics/nope").await, 404, "TopicNotFound");
    assert_error(
        &s.publish_raw("nope", json!({"body": "x"})).await,
        404,
        "TopicNotFound",
    );
    assert_error(
        &s.put("/v1/topics/nope/subscriptions/q", json!({})).await,
        404,
        "TopicNotFound",
    );
    assert_error(
        &s.delete("/v1/topics/nope/subscriptions/q").await,
        404,
        "TopicNotFound",
    );
    assert_eq!(s.get("/v1/topics").await.1, json!({"topics": []}));
    assert_eq!(s.stats("q").await["sent"], 0);
}

#[tokio::test]
async fn subscribing_a_missing_queue_is_404_queue_not_found() {
    let s = Server::start().await;
    s.create_topic("t", json!({})).await;
    assert_error(
        &s.put("/v1/topics/t/subscriptions/nope", json!({})).await,
        404,
        "QueueNotFound",
    );
    assert_eq!(s.topic("t").await["subscriptions"], json!([]));
}

#[tokio::test]
async fn delete_topic_removes_its_subscriptions_but_not_its_queues() {
    let s = Server::start().await;
    s.create_topic("t", json!({})).await;
    s.create_queue("q", json!({})).await;
    s.subscribe("t", "q", None).await;
    s.publish("t", json!({"body": "before"})).await;
    let (status, v) = s.delete("/v1/topics/t").await;
    assert_eq!(status, 200, "{v}");
    assert_error(&s.get("/v1/topics/t").await, 404, "TopicNotFound");
    assert_error(&s.delete("/v1/topics/t").await, 404, "TopicNotFound");
    assert_eq!(s.drain_bodies("q").await, ["before"]);
    // The queue is no longer in use, so it may be deleted.
    assert_eq!(s.delete("/v1/queues/q").await.0, 200);
}

#[tokio::test]
async fn topics_and_queues_have_separate_namespaces() {
    let s = Server::start().await;
    s.create_topic("same", json!({})).await;
    s.create_queue("same", json!({"fifo": true, "content_based_dedup": true}))
        .await;
    assert_eq!(s.topic("same").await["settings"]["fifo"], false);
    assert_eq!(s.queue("same").await["settings"]["fifo"], true);
    assert_eq!(s.delete("/v1/topics/same").await.0, 200);
    assert_eq!(s.queue("same").await["name"], "same");
    s.create_topic("same", json!({})).await;
    assert_eq!(s.delete("/v1/queues/same").await.0, 200);
    assert_eq!(s.topic("same").await["name"], "same");
}

#[tokio::test]
async fn resubscribing_replaces_the_filter() {
    let s = Server::start().await;
    s.create_topic("t", json!({})).await;
    s.create_queue("q", json!({})).await;
    s.subscribe("t", "q", Some(json!({"kind": ["a"]}))).await;
    let (status, v) = s
        .put(
            "/v1/topics/t/subscriptions/q",
            json!({"filter": {"kind": ["b"]}}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        s.topic("t").await["subscriptions"],
        json!([{"queue": "q", "filter": {"kind": ["b"]}}])
    );
    s.publish("t", json!({"body": "a", "attributes": {"kind": "a"}}))
        .await;
    s.publish("t", json!({"body": "b", "attributes": {"kind": "b"}}))
        .await;
    assert_eq!(s.drain_bodies("q").await, ["b"]);
    // Subscribing without a filter takes everything.
    assert_eq!(
        s.put("/v1/topics/t/subscriptions/q", json!({})).await.0,
        200
    );
    s.publish("t", json!({"body": "a2", "attributes": {"kind": "a"}}))
        .await;
    assert_eq!(s.drain_bodies("q").await, ["a2"]);
}

#[tokio::test]
async fn unsubscribe_stops_delivery() {
    let s = Server::start().await;
    s.create_topic("t", json!({})).await;
    s.create_queue("q", json!({})).await;
    s.subscribe("t", "q", None).await;
    let (status, v) = s.delete("/v1/topics/t/subscriptions/q").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(s.topic("t").await["subscriptions"], json!([]));
    s.publish("t", json!({"body": "unheard"})).await;
    assert_eq!(s.stats("q").await["sent"], 0);
}

/// "DELETE of a missing resource: 404": a subscription that does not exist
/// is a missing resource even when its topic and queue both exist
/// (docs/api.md names the code `SubscriptionNotFound`).
#[tokio::test]
async fn unsubscribing_a_missing_subscription_is_404() {
    let s = Server::start().await;
    s.create_topic("t", json!({})).await;
    s.create_queue("q", json!({})).await;
    let answer = s.delete("/v1/topics/t/subscriptions/q").await;
    assert_error(&answer, 404, "SubscriptionNotFound");
    s.subscribe("t", "q", None).await;
    assert_eq!(s.delete("/v1/topics/t/subscriptions/q").await.0, 200);
    let answer = s.delete("/v1/topics/t/subscriptions/q").await;
    assert_error(&answer, 404, "SubscriptionNotFound");
    assert_eq!(s.topic("t").await["subscriptions"], json!([]));
    let answer = s.delete("/v1/topics/t/subscriptions/gone").await;
    assert_error(&answer, 404, "QueueNotFound");
}

#[tokio::test]
async fn a_standard_topic_cannot_feed_a_fifo_queue() {
    let s = Server::start().await;
    s.create_topic("t", json!({})).await;
    s.create_queue("f", json!({"fifo": true})).await;
    let answer = s.put("/v1/topics/t/subscriptions/f", json!({})).await;
    assert_error(&answer, 400, "InvalidSetting");
    assert_eq!(s.topic("t").await["subscriptions"], json!([]));
    assert_eq!(s.queue("f").await["subscribed_to"], json!([]));
}

#[tokio::test]
async fn every_copy_of_a_publish_carries_the_same_id_and_its_topic() {
    let s = Server::start().await;
    s.create_topic("orders", json!({})).await;
    for q in ["a", "b", "c"] {
        s.create_queue(q, json!({})).await;
        s.subscribe("orders", q, None).await;
    }
    let id = s
        .publish("orders", json!({"body": "x", "attributes": {"k": "v"}}))
        .await;
    for q in ["a", "b", "c"] {
        let m = s.receive_one(q).await;
        assert_eq!(m["id"], json!(id), "{q}: {m}");
        assert_eq!(m["topic"], "orders", "{q}: {m}");
        assert_eq!(m["attributes"], json!({"k": "v"}), "{q}: {m}");
    }
}

#[tokio::test]
async fn a_fifo_topic_needs_a_group_and_a_dedup_id() {
    let s = Server::start().await;
    s.create_topic("t", json!({"fifo": true})).await;
    s.create_queue("q", json!({"fifo": true})).await;
    s.subscribe("t", "q", None).await;
    for body in [
        json!({"body": "x"}),
        json!({"body": "x", "group_id": "g"}),
        json!({"body": "x", "dedup_id": "d"}),
        json!({"body": "x", "group_id": "g", "dedup_id": "d", "delay_seconds": 1}),
        json!({"body": "x", "group_id": "g", "dedup_id": "d", "deliver_at": "2030-01-01T00:00:00Z"}),
    ] {
        assert_error(&s.publish_raw("t", body).await, 400, "InvalidRequest");
    }
    assert_eq!(s.topic("t").await["stats"]["published"], 0);
    assert_eq!(s.stats("q").await["sent"], 0);
}

#[tokio::test]
async fn a_fifo_topic_dedups_its_own_publishes() {
    let s = Server::start().await;
    s.create_topic("t", json!({"fifo": true})).await;
    s.create_queue("f", json!({"fifo": true})).await;
    s.create_queue("plain", json!({})).await;
    s.subscribe("t", "f", None).await;
    s.subscribe("t", "plain", None).await;
    let first = s
        .publish("t", json!({"body": "1", "group_id": "g", "dedup_id": "d1"}))
        .await;
    let again = s
        .publish("t", json!({"body": "2", "group_id": "g", "dedup_id": "d1"}))
        .await;
    assert_eq!(first, again);
    // The standard queue sees the same dedup through the topic.
    assert_eq!(s.drain_bodies("f").await, ["1"]);
    assert_eq!(s.drain_bodies("plain").await, ["1"]);
}

#[tokio::test]
async fn a_fifo_topic_can_dedup_by_content() {
    let s = Server::start().await;
    s.create_topic("t", json!({"fifo": true, "content_based_dedup": true}))
        .await;
    s.create_queue("f", json!({"fifo": true})).await;
    s.subscribe("t", "f", None).await;
    let a = s
        .publish("t", json!({"body": "same", "group_id": "g"}))
        .await;
    let b = s
        .publish("t", json!({"body": "same", "group_id": "h"}))
        .await;
    let c = s
        .publish("t", json!({"body": "other", "group_id": "g"}))
        .await;
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(s.drain_bodies("f").await, ["other", "same"]);
}

#[tokio::test]
async fn a_fifo_queue_enqueues_a_dedup_id_once_whatever_path_it_came_by() {
    let s = Server::start().await;
    s.create_topic("t", json!({"fifo": true})).await;
    s.create_queue("f", json!({"fifo": true})).await;
    s.subscribe("t", "f", None).await;
    s.send(
        "f",
        json!({"body": "direct", "group_id": "g", "dedup_id": "d"}),
    )
    .await;
    s.publish(
        "t",
        json!({"body": "via topic", "group_id": "g", "dedup_id": "d"}),
    )
    .await;
    let got = s.drain("f").await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["body"], "direct");
    assert_eq!(got[0]["dedup_id"], "d");
}

#[tokio::test]
async fn a_fifo_topic_feeds_a_standard_queue_without_the_group() {
    let s = Server::start().await;
    s.create_topic("t", json!({"fifo": true})).await;
    s.create_queue("plain", json!({})).await;
    s.subscribe("t", "plain", None).await;
    s.publish("t", json!({"body": "x", "group_id": "g", "dedup_id": "d"}))
        .await;
    let m = s.receive_one("plain").await;
    assert_eq!(m["body"], "x");
    assert!(m.get("group_id").is_none_or(Value::is_null), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_create_and_delete_of_one_topic_stay_consistent() {
    let s = Arc::new(Server::start().await);
    crate::queues::churn_create_and_delete(s.clone(), "topics", "TopicNotFound").await;
    s.publish("race", json!({"body": "works"})).await;
}
