//! Liveness, readiness, metrics, and the JSON errors of unknown routes and
//! wrong methods.

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{assert_error, metric, Server};

#[tokio::test]
async fn healthz_answers_ok() {
    let s = Server::start().await;
    assert_eq!(s.get("/healthz").await, (200, json!({"status": "ok"})));
}

#[tokio::test]
async fn readyz_answers_ready_once_the_server_listens() {
    let s = Server::start().await;
    let (status, v) = s.get("/readyz").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "ready");
}

#[tokio::test]
async fn metrics_are_prometheus_text_with_per_queue_gauges() {
    let s = Server::start().await;
    s.create_queue("jobs", json!({})).await;
    s.create_queue("idle", json!({})).await;
    s.send_text("jobs", "a").await;
    s.send_text("jobs", "b").await;
    let resp = s
        .http
        .get(s.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(resp.status().as_u16(), 200);
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(ctype.starts_with("text/plain"), "content-type {ctype}");
    let text = resp.text().await.expect("metrics body");
    let sample = |name: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    };
    assert_eq!(
        sample("pubq_queue_visible{queue=\"jobs\"}"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample("pubq_queue_visible{queue=\"idle\"}"),
        Some(0.0),
        "{text}"
    );
    assert!(text.contains("# TYPE pubq_queue_visible gauge"), "{text}");
}

#[tokio::test]
async fn metrics_forget_a_deleted_queue_or_topic() {
    let s = Server::start().await;
    s.create_queue("gone", json!({})).await;
    s.create_topic("old", json!({})).await;
    s.send_text("gone", "x").await;
    let scrape = || s.metrics_text();
    assert!(scrape().await.contains("queue=\"gone\""));
    assert_eq!(s.delete("/v1/queues/gone").await.0, 200);
    let text = scrape().await;
    let stale: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("queue=\"gone\""))
        .collect();
    assert!(
        stale.is_empty(),
        "deleted resources are still reported: {stale:?}"
    );
}

#[tokio::test]
async fn an_unknown_route_is_a_404_json_error() {
    let s = Server::start().await;
    for path in [
        "/v1/nothing",
        "/v2/queues",
        "/v1/queues/q/unknown",
        "/nothing.html",
    ] {
        let answer = s.get(path).await;
        assert_error(&answer, 404, "NotFound");
    }
    let (status, text) = s.raw(Method::POST, "/v1/queues/q/explode", "{}").await;
    assert_eq!(status, 404);
    let v: Value = serde_json::from_str(&text).expect("JSON error");
    assert_eq!(v["error"]["code"], "NotFound");
}

#[tokio::test]
async fn a_wrong_method_is_a_405_json_error() {
    let s = Server::start().await;
    s.create_queue("q", json!({})).await;
    let cases = [
        (Method::POST, "/v1/queues"),
        (Method::DELETE, "/v1/topics"),
        (Method::GET, "/v1/queues/q/receive"),
        (Method::PUT, "/v1/queues/q/send"),
        (Method::POST, "/v1/queues/q"),
        (Method::GET, "/v1/topics/t/publish"),
        (Method::POST, "/healthz"),
    ];
    for (method, path) in cases {
        let answer = s.request(method.clone(), path, None).await;
        assert_error(&answer, 405, "MethodNotAllowed");
    }
    // Nothing was created or consumed by the refused calls.
    assert_eq!(s.get("/v1/queues").await.1, json!({"queues": ["q"]}));
    assert_eq!(s.get("/v1/topics").await.1, json!({"topics": []}));
}

/// A durable server reports what its log did: appends, group writes, bytes
/// and syncs (`--fsync always`: at least one sync per acknowledged send);
/// a server without a log reports none of it.
#[tokio::test]
async fn metrics_count_the_logs_writes_and_syncs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Server::start_on_disk(dir.path(), &["--fsync", "always"]).await;
    s.create_queue("jobs", json!({})).await;
    let scrape = || s.metrics_text();
    let before = scrape().await;
    for i in 0..3 {
        s.send_text("jobs", &format!("m{i}")).await;
    }
    let after = scrape().await;
    let grew = |name: &str| {
        let b = metric(&before, name).unwrap_or_else(|| panic!("{name} missing: {before}"));
        let a = metric(&after, name).unwrap_or_else(|| panic!("{name} missing: {after}"));
        assert!(a >= b, "{name} went down");
        a - b
    };
    assert!(grew("pubq_log_appends_total") >= 3.0, "{after}");
    assert!(grew("pubq_log_syncs_total") >= 3.0, "{after}");
    assert!(grew("pubq_log_writes_total") >= 3.0, "{after}");
    assert!(grew("pubq_log_written_bytes_total") > 3.0 * 2.0, "{after}");
    assert!(metric(&after, "pubq_log_sync_microseconds_total").is_some());

    let mem = Server::start().await;
    let text = mem.metrics_text().await;
    assert!(!text.contains("pubq_log_"), "{text}");
}
