//! Subscription filter policies over HTTP: each operator on attributes, body
//! scope, and refused policies. The matching rules themselves are unit-tested
//! in `src/hub/filter.rs`; here a topic with one queue per policy shows which
//! publishes each queue gets.

use serde_json::{json, Value};

use crate::support::{assert_error, Server};

/// Publishes each `(body, attributes)` to a new topic with one queue per
/// policy, then answers the bodies each queue got, in policy order.
async fn route(policies: &[Value], messages: &[(&str, Value)]) -> Vec<Vec<String>> {
    let s = Server::start().await;
    s.create_topic("t", json!({})).await;
    for (i, p) in policies.iter().enumerate() {
        let q = format!("q{i}");
        s.create_queue(&q, json!({})).await;
        s.subscribe("t", &q, Some(p.clone())).await;
    }
    for (body, attrs) in messages {
        s.publish("t", json!({"body": body, "attributes": attrs}))
            .await;
    }
    let mut out = Vec::new();
    for i in 0..policies.len() {
        out.push(s.drain_bodies(&format!("q{i}")).await);
    }
    out
}

#[tokio::test]
async fn attribute_policies_match_by_exact_prefix_anything_but_numeric_and_exists() {
    let got = route(
        &[
            json!({"type": ["order_placed", "order_paid"]}),
            json!({"region": [{"prefix": "eu-"}]}),
            json!({"channel": [{"anything-but": ["test"]}]}),
            json!({"amount": [{"numeric": [">=", 100]}]}),
            json!({"amount": [{"numeric": [">", 0, "<", 10]}]}),
            json!({"tag": [{"exists": true}]}),
            json!({"tag": [{"exists": false}]}),
            json!({"type": ["order_paid"], "region": [{"prefix": "eu-"}]}),
        ],
        &[
            ("1", json!({"type": "order_placed", "region": "eu-west", "amount": "150", "channel": "web"})),
            ("2", json!({"type": "order_paid", "region": "us-east", "amount": "5", "tag": ""})),
            ("3", json!({"type": "order_cancelled", "channel": "test", "amount": "abc"})),
            ("4", json!({"type": "order_paid", "region": "eu-north", "amount": "100", "tag": "x"})),
            ("5", json!({})),
        ],
    )
    .await;
    assert_eq!(got[0], ["1", "2", "4"], "exact");
    assert_eq!(got[1], ["1", "4"], "prefix");
    assert_eq!(
        got[2],
        ["1"],
        "anything-but does not match a missing attribute"
    );
    assert_eq!(got[3], ["1", "4"], "numeric >=");
    assert_eq!(got[4], ["2"], "numeric range");
    assert_eq!(got[5], ["2", "4"], "exists true");
    assert_eq!(got[6], ["1", "3", "5"], "exists false");
    assert_eq!(got[7], ["4"], "every key must match");
}

#[tokio::test]
async fn body_policies_match_nested_json_fields_and_never_a_non_json_body() {
    let got = route(
        &[
            json!({"scope": "body", "kind": ["order"]}),
            json!({"scope": "body", "order": {"region": [{"prefix": "eu-"}], "total": [{"numeric": [">", 10]}]}}),
            json!({"scope": "body", "missing": [{"exists": false}]}),
        ],
        &[
            (r#"{"kind": "order", "order": {"region": "eu-west", "total": 20}}"#, json!({"kind": "other"})),
            (r#"{"kind": "refund", "order": {"region": "eu-west", "total": 5}}"#, json!({})),
            (r#"{"kind": "order", "order": {"region": "us-east", "total": 50}}"#, json!({})),
            ("kind: order", json!({"kind": "order"})),
            ("[1, 2]", json!({})),
        ],
    )
    .await;
    assert_eq!(
        got[0],
        [
            r#"{"kind": "order", "order": {"region": "eu-west", "total": 20}}"#,
            r#"{"kind": "order", "order": {"region": "us-east", "total": 50}}"#,
        ]
    );
    assert_eq!(
        got[1],
        [r#"{"kind": "order", "order": {"region": "eu-west", "total": 20}}"#]
    );
    assert_eq!(
        got[2].len(),
        3,
        "only the JSON objects match exists:false: {:?}",
        got[2]
    );
}

#[tokio::test]
async fn bad_filter_policies_are_invalid_setting_and_subscribe_nothing() {
    let s = Server::start().await;
    s.create_topic("t", json!({})).await;
    s.create_queue("q", json!({})).await;
    for filter in [
        json!([]),
        json!("type"),
        json!({}),
        json!({"type": "order"}),
        json!({"type": []}),
        json!({"type": [{"regex": ".*"}]}),
        json!({"amount": [{"numeric": ["!=", 1]}]}),
        json!({"amount": [{"numeric": [">", "one"]}]}),
        json!({"tag": [{"exists": "yes"}]}),
        json!({"scope": "headers", "type": ["a"]}),
        json!({"order": {"region": ["eu"]}}),
    ] {
        let answer = s
            .put("/v1/topics/t/subscriptions/q", json!({ "filter": filter }))
            .await;
        assert_error(&answer, 400, "InvalidSetting");
    }
    assert_error(
        &s.put("/v1/topics/t/subscriptions/q", json!({"filters": {}}))
            .await,
        400,
        "InvalidRequest",
    );
    assert_eq!(s.topic("t").await["subscriptions"], json!([]));
    // A bad filter on an existing subscription keeps the old one.
    s.subscribe("t", "q", Some(json!({"type": ["a"]}))).await;
    let answer = s
        .put(
            "/v1/topics/t/subscriptions/q",
            json!({"filter": {"type": "b"}}),
        )
        .await;
    assert_error(&answer, 400, "InvalidSetting");
    assert_eq!(
        s.topic("t").await["subscriptions"],
        json!([{"queue": "q", "filter": {"type": ["a"]}}])
    );
}
