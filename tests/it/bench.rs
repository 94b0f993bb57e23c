//! `pubq bench` as a user runs it: the real binary against a real server,
//! each workload with tiny sizes, `--json` parsed and checked for sane
//! figures (every confirmed message delivered to every queue, nothing lost or
//! doubled), and the server left as it was found. The verifier's handling of
//! gaps and duplicates is unit-tested beside it (`src/cli/bench/verify.rs`),
//! since a server that loses messages is hard to come by here.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::support::{pubq_command, Server};

/// The longest one bench child may run.
const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

/// What a finished `pubq bench` left behind.
#[derive(Debug)]
struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Output {
    /// Exit 0 and one JSON object on stdout; answers it.
    #[track_caller]
    fn report(&self) -> Value {
        assert_eq!(self.code, Some(0), "expected success: {self:#?}");
        let lines: Vec<&str> = self.stdout.lines().collect();
        assert_eq!(lines.len(), 1, "--json prints one line: {self:#?}");
        let report: Value =
            serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("not JSON ({e}): {self:#?}"));
        assert_eq!(report["ok"], true, "{report:#}");
        assert_eq!(report["problems"], serde_json::json!([]), "{report:#}");
        report
    }
}

/// `pubq bench ARGS --server BASE --no-progress`.
async fn bench(server: &Server, args: &[&str]) -> Output {
    bench_at(&server.base, args).await
}

async fn bench_at(base: &str, args: &[&str]) -> Output {
    let mut cmd = pubq_command();
    cmd.arg("bench")
        .args(args)
        .args(["--server", base, "--no-progress"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("spawn pubq bench");
    let out = tokio::time::timeout(CHILD_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("pubq bench did not finish within {CHILD_TIMEOUT:?}: {args:?}"))
        .expect("wait for pubq bench");
    Output {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

fn n(report: &Value, field: &str) -> u64 {
    report[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} is not a count: {report:#}"))
}

/// Every confirmed message reached every queue exactly once, and the
/// figures that follow from that hold.
#[track_caller]
fn assert_complete(report: &Value, published: u64, queues: u64) {
    assert_eq!(n(report, "published"), published, "{report:#}");
    assert_eq!(n(report, "queues"), queues, "{report:#}");
    assert_eq!(n(report, "expected"), published * queues, "{report:#}");
    assert_eq!(n(report, "delivered"), published * queues, "{report:#}");
    for zero in ["losses", "duplicates", "unexpected"] {
        assert_eq!(n(report, zero), 0, "{zero}: {report:#}");
    }
    for kind in ["publish", "receive", "ack"] {
        assert_eq!(report["errors"][kind], 0, "{kind} errors: {report:#}");
    }
    assert!(
        report["publish_rate"].as_f64().unwrap_or(0.0) > 0.0,
        "{report:#}"
    );
    assert!(
        report["delivered_rate"].as_f64().unwrap_or(0.0) > 0.0,
        "{report:#}"
    );
}

/// The bench removed everything it created.
async fn assert_nothing_left(server: &Server) {
    let (_, queues) = server.get("/v1/queues").await;
    assert_eq!(
        queues["queues"],
        serde_json::json!([]),
        "queues left behind"
    );
    let (_, topics) = server.get("/v1/topics").await;
    assert_eq!(
        topics["topics"],
        serde_json::json!([]),
        "topics left behind"
    );
}

#[tokio::test]
async fn fanout_over_websocket_delivers_every_message_to_every_queue() {
    let server = Server::start().await;
    let out = bench(
        &server,
        &[
            "fanout",
            "--messages",
            "300",
            "--queues",
            "3",
            "--publishers",
            "2",
            "--batch",
            "50",
            "--size",
            "64",
            "--json",
        ],
    )
    .await;
    let report = out.report();
    assert_eq!(report["workload"], "fanout");
    assert_complete(&report, 300, 3);
    assert_eq!(report["latency_us"]["count"], 900, "one latency per copy");
    let p50 = report["latency_us"]["p50"].as_f64().expect("p50");
    let p99 = report["latency_us"]["p99"].as_f64().expect("p99");
    assert!(0.0 < p50 && p50 <= p99, "{report:#}");
    assert_eq!(report["settings"]["consumer"], "ws");
    assert_nothing_left(&server).await;
}

#[tokio::test]
async fn fanout_over_long_polling_with_one_ack_per_message() {
    let server = Server::start().await;
    let out = bench(
        &server,
        &[
            "fanout",
            "--messages",
            "200",
            "--queues",
            "2",
            "--consumer",
            "longpoll",
            "--ack",
            "each",
            "--consumers",
            "2",
            "--json",
        ],
    )
    .await;
    let report = out.report();
    assert_complete(&report, 200, 2);
    assert_eq!(report["settings"]["ack"], "each");
    assert_nothing_left(&server).await;
}

#[tokio::test]
async fn fanout_keep_leaves_the_prefixed_topic_and_queues() {
    let server = Server::start().await;
    let out = bench(
        &server,
        &[
            "fanout",
            "--messages",
            "100",
            "--queues",
            "2",
            "--keep",
            "--prefix",
            "kept",
            "--json",
        ],
    )
    .await;
    assert_complete(&out.report(), 100, 2);
    let (_, topics) = server.get("/v1/topics").await;
    let topics = topics["topics"].as_array().expect("topic list").clone();
    assert_eq!(topics.len(), 1, "{topics:?}");
    let topic = topics[0].as_str().expect("a name");
    assert!(topic.starts_with("kept-"), "{topic}");
    let (_, queues) = server.get("/v1/queues").await;
    let queues = queues["queues"].as_array().expect("queue list").clone();
    assert_eq!(queues.len(), 2, "{queues:?}");
    assert!(queues
        .iter()
        .all(|q| q.as_str().is_some_and(|q| q.starts_with(topic))));
}

#[tokio::test]
async fn latency_publishes_at_the_requested_rate_and_reports_percentiles() {
    let server = Server::start().await;
    let out = bench(
        &server,
        &[
            "latency",
            "--rate",
            "300",
            "--duration",
            "1s",
            "--queues",
            "2",
            "--json",
        ],
    )
    .await;
    let report = out.report();
    assert_eq!(report["workload"], "latency");
    assert_complete(&report, 300, 2);
    assert_eq!(report["paced"]["target_rate"], 300);
    let latency = &report["latency_us"];
    assert_eq!(latency["count"], 600);
    assert!(
        latency["p50"].as_f64() <= latency["p999"].as_f64(),
        "{report:#}"
    );
    assert!(
        latency["p999"].as_f64() <= latency["max"].as_f64(),
        "{report:#}"
    );
    assert_nothing_left(&server).await;
}

#[tokio::test]
async fn fifo_keeps_every_group_in_order_on_every_queue() {
    let server = Server::start().await;
    let out = bench(
        &server,
        &[
            "fifo",
            "--messages",
            "300",
            "--groups",
            "4",
            "--publishers",
            "2",
            "--queues",
            "2",
            "--batch",
            "20",
            "--consumer",
            "longpoll",
            "--json",
        ],
    )
    .await;
    let report = out.report();
    assert_eq!(report["workload"], "fifo");
    assert_complete(&report, 300, 2);
    assert_eq!(report["fifo"]["groups"], 4);
    assert_eq!(report["fifo"]["order_violations"], 0);
    assert_nothing_left(&server).await;
}

#[tokio::test]
async fn backlog_fills_then_drains_one_queue() {
    let server = Server::start().await;
    let out = bench(
        &server,
        &[
            "backlog",
            "--messages",
            "400",
            "--publishers",
            "2",
            "--consumers",
            "2",
            "--json",
        ],
    )
    .await;
    let report = out.report();
    assert_eq!(report["workload"], "backlog");
    assert_complete(&report, 400, 1);
    let backlog = &report["backlog"];
    for field in ["fill_seconds", "fill_rate", "drain_seconds", "drain_rate"] {
        assert!(
            backlog[field].as_f64().unwrap_or(0.0) > 0.0,
            "{field}: {report:#}"
        );
    }
    assert!(
        report["latency_us"].is_null(),
        "a backlog has no meaningful latency"
    );
    assert_nothing_left(&server).await;
}

#[tokio::test]
async fn subscribers_each_get_every_publish() {
    let server = Server::start().await;
    let out = bench(
        &server,
        &[
            "subscribers",
            "--subscribers",
            "20",
            "--publishes",
            "2",
            "--interval",
            "50ms",
            "--json",
        ],
    )
    .await;
    let report = out.report();
    assert_eq!(report["workload"], "subscribers");
    assert_complete(&report, 2, 20);
    assert_eq!(report["subscribers"]["subscribers"], 20);
    assert_eq!(report["subscribers"]["all_delivered_us"]["count"], 2);
    assert_eq!(report["latency_us"]["count"], 40);
    // Unsubscribing deleted the temporary queues; the topic went at cleanup.
    assert_nothing_left(&server).await;
}

#[tokio::test]
async fn the_table_ends_with_the_verdict() {
    let server = Server::start().await;
    let out = bench(&server, &["fanout", "--messages", "50", "--queues", "1"]).await;
    assert_eq!(out.code, Some(0), "{out:#?}");
    assert!(
        out.stdout.starts_with("pubq bench fanout against "),
        "{out:#?}"
    );
    assert!(out.stdout.contains("losses 0"), "{out:#?}");
    assert!(
        out.stdout.trim_end().ends_with("result      OK"),
        "{out:#?}"
    );
}

#[tokio::test]
async fn fifo_with_fewer_groups_than_publishers_is_a_usage_error() {
    let server = Server::start().await;
    let out = bench(&server, &["fifo", "--groups", "1", "--publishers", "2"]).await;
    assert_eq!(out.code, Some(2), "{out:#?}");
    assert!(out.stderr.contains("--groups"), "{out:#?}");
    assert_nothing_left(&server).await;
}

#[tokio::test]
async fn an_unreachable_server_exits_3() {
    // Bind then drop a listener so the port is (very likely) closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("ephemeral port");
    let out = bench_at(
        &format!("http://127.0.0.1:{port}"),
        &["fanout", "--messages", "10"],
    )
    .await;
    assert_eq!(out.code, Some(3), "{out:#?}");
    assert!(out.stdout.is_empty(), "{out:#?}");
}
