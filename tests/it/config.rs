//! `pubq serve --config pubq.toml`: declared resources exist at boot, and a
//! bad file stops the server with a clear message and a non-zero exit.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use serde_json::json;

use crate::support::{pubq_command, Server};

fn write_config(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .expect("temp file");
    f.write_all(text.as_bytes()).expect("write config");
    f
}

const GOOD: &str = r#"
[server]
max_request_bytes = 4096

[[topics]]
name = "orders"

[[topics]]
name = "events"
fifo = true
content_based_dedup = true

[[queues]]
name = "email"
visibility_timeout_seconds = 60
dead_letter = { queue = "email-dlq", max_receives = 2 }

[[queues]]
name = "audit"
fifo = true

[[queues]]
name = "email-dlq"

[[subscriptions]]
topic = "orders"
queue = "email"
filter = { type = ["order_placed"] }

[[subscriptions]]
topic = "events"
queue = "audit"
"#;

#[tokio::test]
async fn a_config_file_declares_topics_queues_and_subscriptions() {
    let file = write_config(GOOD);
    let path = file.path().to_str().expect("utf-8 path");
    let s = Server::start_with(&["--config", path]).await;
    assert_eq!(
        s.get("/v1/topics").await.1,
        json!({"topics": ["events", "orders"]})
    );
    assert_eq!(
        s.get("/v1/queues").await.1,
        json!({"queues": ["audit", "email", "email-dlq"]})
    );
    let email = s.queue("email").await;
    assert_eq!(email["settings"]["visibility_timeout_seconds"], 60);
    assert_eq!(
        email["settings"]["dead_letter"],
        json!({"queue": "email-dlq", "max_receives": 2})
    );
    assert_eq!(s.queue("audit").await["settings"]["fifo"], true);
    assert_eq!(
        s.topic("events").await["settings"]["content_based_dedup"],
        true
    );
    assert_eq!(
        s.topic("orders").await["subscriptions"],
        json!([{"queue": "email", "filter": {"type": ["order_placed"]}}])
    );
    // The declared filter routes.
    s.publish(
        "orders",
        json!({"body": "yes", "attributes": {"type": "order_placed"}}),
    )
    .await;
    s.publish(
        "orders",
        json!({"body": "no", "attributes": {"type": "other"}}),
    )
    .await;
    assert_eq!(s.drain_bodies("email").await, ["yes"]);
    s.publish("events", json!({"body": "e", "group_id": "g"}))
        .await;
    assert_eq!(s.drain_bodies("audit").await, ["e"]);
    // The [server] section applies.
    let answer = s.send_raw("email", json!({"body": "x".repeat(5000)})).await;
    assert_eq!(answer.1["error"]["code"], "RequestTooLarge", "{:?}", answer);
}

/// Runs `pubq serve` with `text` as its config; answers (exit code, stderr).
async fn serve_bad(text: &str) -> (Option<i32>, String) {
    let file = write_config(text);
    serve_with_config(file.path().to_str().expect("utf-8 path")).await
}

async fn serve_with_config(path: &str) -> (Option<i32>, String) {
    let mut cmd = pubq_command();
    cmd.args([
        "serve",
        "--memory",
        "--listen",
        "127.0.0.1:0",
        "--config",
        path,
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run pubq");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
    // A server that starts prints its address and keeps running: fail fast
    // instead of waiting for an exit that will not come.
    let mut stdout = String::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(line)) = lines.next_line().await {
            stdout.push_str(&line);
            if line.contains("listening on") {
                return true;
            }
        }
        false
    });
    let started = read.await.unwrap_or(true);
    if started {
        let _ = child.kill().await;
        panic!("a bad config ({path}) must not start the server; stdout: {stdout}");
    }
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("pubq serve with a bad config ({path}) did not exit"))
        .expect("wait for pubq");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_bad_config_file_makes_serve_exit_non_zero_with_a_clear_message() {
    let cases: [(&str, &str); 8] = [
        ("[[topics]\nname = \"t\"", "config file"),
        ("[server]\nlisten_on = \"127.0.0.1:1\"", "listen_on"),
        ("[[topics]]\nname = \"bad name\"", "bad name"),
        ("[[queues]]\nname = \"q\"\ndelay_seconds = \"soon\"", "soon"),
        ("[[queues]]\nname = \"q\"\ndelay_seconds = 901", "delay_seconds"),
        (
            "[[queues]]\nname = \"q\"\ndead_letter = { queue = \"nope\", max_receives = 3 }",
            "nope",
        ),
        (
            "[[topics]]\nname = \"t\"\n[[subscriptions]]\ntopic = \"t\"\nqueue = \"missing\"",
            "missing",
        ),
        (
            "[[topics]]\nname = \"t\"\n[[queues]]\nname = \"q\"\n[[subscriptions]]\ntopic = \"t\"\nqueue = \"q\"\nfilter = { type = \"not a list\" }",
            "type",
        ),
    ];
    for (text, mention) in cases {
        let (code, stderr) = serve_bad(text).await;
        assert!(
            code.is_some_and(|c| c != 0),
            "exit {code:?} for config:\n{text}\nstderr: {stderr}"
        );
        assert!(
            stderr.contains(mention),
            "the message should mention {mention:?} for config:\n{text}\nstderr: {stderr}"
        );
    }
}

#[tokio::test]
async fn a_missing_config_file_makes_serve_exit_non_zero() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("absent.toml");
    let path = path.to_str().expect("utf-8 path");
    let (code, stderr) = serve_with_config(path).await;
    assert!(code.is_some_and(|c| c != 0), "exit {code:?}: {stderr}");
    assert!(stderr.contains("absent.toml"), "{stderr}");
}

/// The file rejects unknown keys everywhere (`[server]`, `[[topics]]`), so a
/// typo in a queue's settings must not be silently dropped either: it would
/// leave a production queue with a default the operator meant to change.
#[tokio::test]
async fn a_typo_in_a_queue_setting_makes_serve_exit_non_zero() {
    let (code, stderr) = serve_bad("[[queues]]\nname = \"q\"\ndelay_secs = 5").await;
    assert!(code.is_some_and(|c| c != 0), "exit {code:?}: {stderr}");
    assert!(stderr.contains("delay_secs"), "{stderr}");
}
