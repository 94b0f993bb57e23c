//! The `pubq` command line as a user types it: the real binary runs as a child
//! process against a real server (`--server URL`, or `PUBQ_URL`), and each test
//! checks what a shell would see: JSON lines on stdout, `error: Code: message`
//! on stderr, and the exit code (0 done, 1 refused, 2 usage, 3 unreachable).
//! `docs/cli.md` is the reference; the README walkthrough runs verbatim.
//!
//! Every child is bounded by [`CHILD_TIMEOUT`] and killed if it overstays.
//! State the CLI is not itself being tested on is checked over HTTP.

use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::task::JoinHandle;

use crate::support::{eventually, pubq_command, Server};

/// The longest any one `pubq` child may run before the test fails.
const CHILD_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a following child may take to print its next line.
const LINE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a finished `pubq` command left behind.
#[derive(Debug)]
struct Output {
    /// `None` when a signal ended it.
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Output {
    /// stdout parsed as JSON lines (each line one object).
    #[track_caller]
    fn lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("stdout line {l:?} is not JSON ({e}): {self:?}"));
                assert!(v.is_object(), "stdout line {l:?} is not an object");
                v
            })
            .collect()
    }

    /// Asserts exit 0 with nothing on stderr; answers the stdout lines.
    #[track_caller]
    fn ok(&self) -> Vec<Value> {
        assert_eq!(self.code, Some(0), "expected success: {self:?}");
        assert_eq!(self.stderr, "", "a success writes nothing to stderr");
        self.lines()
    }

    /// Asserts exit 0 and exactly one stdout line; answers it.
    #[track_caller]
    fn one(&self) -> Value {
        let lines = self.ok();
        assert_eq!(lines.len(), 1, "expected one line: {self:?}");
        lines[0].clone()
    }

    /// Asserts a server refusal: exit 1, nothing on stdout, and one line
    /// `error: CODE: message` on stderr.
    #[track_caller]
    fn refused(&self, code: &str) {
        assert_eq!(self.code, Some(1), "expected exit 1 ({code}): {self:?}");
        assert_eq!(self.stdout, "", "a refusal prints nothing on stdout");
        let prefix = format!("error: {code}: ");
        let line = self.stderr.trim_end();
        assert!(
            line.starts_with(&prefix) && line.len() > prefix.len() && !line.contains('\n'),
            "expected one stderr line {prefix:?} plus a message: {self:?}"
        );
    }

    /// Asserts a usage error: exit 2, nothing on stdout, a reason on stderr.
    #[track_caller]
    fn usage_error(&self) {
        assert_eq!(self.code, Some(2), "expected a usage error: {self:?}");
        assert_eq!(self.stdout, "", "a usage error prints nothing on stdout");
        assert!(self.stderr.contains("error"), "no reason given: {self:?}");
    }
}

/// Runs a prepared command to completion within [`CHILD_TIMEOUT`], feeding it
/// `stdin` (or the harness's empty stdin).
async fn run(mut cmd: Command, stdin: Option<&[u8]>) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().expect("spawn pubq");
    if let Some(bytes) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        pipe.write_all(bytes).await.expect("write stdin");
        // Dropping the pipe closes it: the command sees the end of its input.
    }
    let out = tokio::time::timeout(CHILD_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("pubq did not finish within {CHILD_TIMEOUT:?}: {cmd:?}"))
        .expect("wait for pubq");
    Output {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

/// `pubq ARGS` without a server: help texts and commands that fail early.
async fn pubq_alone(args: &[&str]) -> Output {
    let mut cmd = pubq_command();
    cmd.args(args);
    run(cmd, None).await
}

/// The command line pointed at one server.
struct Cli {
    base: String,
    /// Name the server in `PUBQ_URL` instead of `--server`.
    via_env: bool,
}

impl Cli {
    /// `--server URL` after the arguments.
    fn flag(server: &Server) -> Self {
        Self::at(&server.base)
    }

    /// `--server base` for a server the harness did not start.
    fn at(base: &str) -> Self {
        Self {
            base: base.to_string(),
            via_env: false,
        }
    }

    /// `PUBQ_URL=URL`, so commands run exactly as a user types them.
    fn env(server: &Server) -> Self {
        Self {
            base: server.base.clone(),
            via_env: true,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = pubq_command();
        cmd.args(args);
        if self.via_env {
            cmd.env("PUBQ_URL", &self.base);
        } else {
            cmd.args(["--server", &self.base]);
        }
        cmd
    }

    async fn run(&self, args: &[&str]) -> Output {
        run(self.command(args), None).await
    }

    async fn run_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        run(self.command(args), Some(stdin)).await
    }

    /// Starts a long-running command (`consume --follow`, `tail`).
    fn spawn(&self, args: &[&str]) -> Running {
        let mut cmd = self.command(args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn pubq");
        let stdout = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
        let mut err = child.stderr.take().expect("stderr is piped");
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text).await;
            text
        });
        Running {
            child,
            stdout: Some(stdout),
            stderr,
        }
    }
}

/// A `pubq` child still running, read line by line.
struct Running {
    child: Child,
    /// `None` once the test closed its end, as `| head -1` does.
    stdout: Option<Lines<BufReader<ChildStdout>>>,
    stderr: JoinHandle<String>,
}

impl Running {
    /// The next stdout line, as JSON; fails the test after [`LINE_TIMEOUT`].
    async fn next_line(&mut self) -> Value {
        let stdout = self.stdout.as_mut().expect("stdout is still open");
        let line = tokio::time::timeout(LINE_TIMEOUT, stdout.next_line())
            .await
            .expect("pubq printed its next line in time")
            .expect("read pubq's stdout")
            .expect("pubq's stdout ended early");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?} is not JSON: {e}"))
    }

    /// Sends SIGTERM, as `kill -TERM PID` does.
    fn terminate(&self) {
        self.signal("-TERM");
    }

    /// Sends SIGINT, as Ctrl-C in a terminal does.
    fn interrupt(&self) {
        self.signal("-INT");
    }

    fn signal(&self, which: &str) {
        let pid = self.child.id().expect("still running");
        let status = std::process::Command::new("kill")
            .args([which, &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {which} {pid}");
    }

    /// Closes the reading end of its stdout: the reader went away.
    fn close_stdout(&mut self) {
        self.stdout = None;
    }

    /// Waits for the exit; answers what it printed after the lines already read.
    async fn finish(mut self) -> Output {
        let done = tokio::time::timeout(CHILD_TIMEOUT, async {
            let mut rest = String::new();
            if let Some(stdout) = self.stdout.as_mut() {
                while let Ok(Some(line)) = stdout.next_line().await {
                    rest.push_str(&line);
                    rest.push('\n');
                }
            }
            let status = self.child.wait().await.expect("wait for pubq");
            (rest, status)
        })
        .await;
        let (stdout, status) = done.unwrap_or_else(|_| panic!("pubq did not exit in time"));
        let stderr = self.stderr.await.expect("stderr reader");
        Output {
            code: status.code(),
            stdout,
            stderr,
        }
    }
}

/// A URL where nothing listens (a port bound, then released).
fn closed_port_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("an ephemeral port");
    format!("http://127.0.0.1:{port}")
}

/// The sorted `name`s of list lines.
fn names(lines: &[Value]) -> Vec<String> {
    let mut names: Vec<String> = lines
        .iter()
        .map(|l| {
            l["name"]
                .as_str()
                .expect("a listed item has a name")
                .to_string()
        })
        .collect();
    names.sort();
    names
}

fn receipt_of(line: &Value) -> String {
    line["receipt"]
        .as_str()
        .expect("a printed message has its receipt")
        .to_string()
}

/// The `id` of a publish/send line, which must be `{"id": ..}` and nothing else.
#[track_caller]
fn id_of(line: &Value) -> String {
    let obj = line.as_object().expect("an object");
    assert_eq!(obj.len(), 1, "publish prints only the id: {line}");
    line["id"].as_str().expect("a string id").to_string()
}

/// Waits until `topic` has a subscription whose queue starts with `tail-`
/// (a `pubq tail` is set up); answers that queue's name.
async fn tail_queue(s: &Server, topic: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t = s.topic(topic).await;
        let queue = t["subscriptions"].as_array().and_then(|subs| {
            subs.iter()
                .filter_map(|sub| sub["queue"].as_str())
                .find(|q| q.starts_with("tail-"))
                .map(str::to_string)
        });
        if let Some(q) = queue {
            return q;
        }
        assert!(
            Instant::now() < deadline,
            "pubq tail never subscribed a queue to {topic}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every queue's name, over HTTP.
async fn queue_names(s: &Server) -> Vec<String> {
    let (status, v) = s.get("/v1/queues").await;
    assert_eq!(status, 200, "{v}");
    let items = v["queues"].as_array().or(v.as_array()).cloned();
    let mut names: Vec<String> = items
        .unwrap_or_default()
        .iter()
        .map(|q| q["name"].as_str().or(q.as_str()).unwrap_or("").to_string())
        .collect();
    names.sort();
    names
}

// ---- the README walkthrough -------------------------------------------------

#[tokio::test]
async fn the_readme_walkthrough_works_as_written() {
    let s = Server::start().await;
    let pubq = Cli::env(&s);

    let topic = pubq.run(&["topic", "create", "orders"]).await.one();
    assert_eq!(topic["name"], "orders");
    pubq.run(&["queue", "create", "email-dlq"]).await.one();
    let email = pubq
        .run(&[
            "queue",
            "create",
            "email",
            "--visibility",
            "30s",
            "--dlq",
            "email-dlq",
            "--max-receives",
            "5",
        ])
        .await
        .one();
    assert_eq!(email["settings"]["visibility_timeout_seconds"], 30);
    assert_eq!(
        email["settings"]["dead_letter"],
        json!({"queue": "email-dlq", "max_receives": 5})
    );
    pubq.run(&["queue", "create", "audit"]).await.one();
    pubq.run(&[
        "subscribe",
        "orders",
        "email",
        "--filter",
        r#"{"type": ["order_placed"]}"#,
    ])
    .await
    .one();
    pubq.run(&["subscribe", "orders", "audit"]).await.one();

    let order = id_of(
        &pubq
            .run(&[
                "publish",
                "orders",
                r#"{"order": 1}"#,
                "--attr",
                "type=order_placed",
            ])
            .await
            .one(),
    );
    let refund = id_of(
        &pubq
            .run(&["publish", "orders", "refund 7", "--attr", "type=refund"])
            .await
            .one(),
    );

    // "prints each message as a JSON line, acks it": only the order matched.
    let got = pubq
        .run(&["consume", "email", "--max", "10", "--wait", "5s"])
        .await
        .one();
    assert_eq!(got["id"], order.as_str());
    assert_eq!(got["body"], r#"{"order": 1}"#);
    assert_eq!(got["attributes"], json!({"type": "order_placed"}));
    assert_eq!(got["topic"], "orders");
    assert!(got["receipt"].is_string(), "{got}");
    let stats = s.stats("email").await;
    assert_eq!(
        (&stats["visible"], &stats["in_flight"], &stats["acked"]),
        (&json!(0), &json!(0), &json!(1)),
        "consume acked what it printed: {stats}"
    );

    // "keeps long-polling until a poison pill".
    let mut follow = pubq.spawn(&["consume", "audit", "--follow"]);
    assert_eq!(follow.next_line().await["id"], order.as_str());
    assert_eq!(follow.next_line().await["id"], refund.as_str());
    let stop = id_of(
        &pubq
            .run(&["publish", "orders", "stop", "--poison"])
            .await
            .one(),
    );
    let last = follow.next_line().await;
    assert_eq!((&last["id"], &last["poison"]), (&json!(stop), &json!(true)));
    let rest = follow.finish().await;
    assert_eq!(
        rest.code,
        Some(0),
        "--follow ends at the poison pill: {rest:?}"
    );
    assert_eq!(rest.stdout, "");
    let audit = s.stats("audit").await;
    assert_eq!(
        (&audit["visible"], &audit["in_flight"]),
        (&json!(0), &json!(0))
    );

    let shown = pubq.run(&["queue", "show", "email"]).await.one();
    assert_eq!(shown["name"], "email");
    assert_eq!(shown["settings"]["visibility_timeout_seconds"], 30);
    assert_eq!(shown["stats"]["sent"], 1, "only the order reached email");
    assert_eq!(shown["stats"]["acked"], 1);
}

// ---- consume ----------------------------------------------------------------

#[tokio::test]
async fn consume_follow_prints_as_messages_arrive_and_exits_0_after_the_poison() {
    let s = Server::start().await;
    s.create_queue("jobs", json!({})).await;
    let pubq = Cli::flag(&s);
    let mut follow = pubq.spawn(&["consume", "jobs", "--follow", "--max", "10"]);
    for body in ["one", "two"] {
        pubq.run(&["send", "jobs", body]).await.one();
        assert_eq!(follow.next_line().await["body"], body);
    }
    pubq.run(&["send", "jobs", "--poison"]).await.one();
    let poison = follow.next_line().await;
    assert_eq!(
        (&poison["poison"], &poison["body"]),
        (&json!(true), &json!(""))
    );
    let rest = follow.finish().await;
    assert_eq!(rest.code, Some(0), "{rest:?}");
    let stats = s.stats("jobs").await;
    assert_eq!(
        (&stats["acked"], &stats["visible"], &stats["in_flight"]),
        (&json!(3), &json!(0), &json!(0)),
        "every printed message, the poison too, is acked: {stats}"
    );
}

#[tokio::test]
async fn consume_follow_gives_back_what_came_after_the_poison_in_its_batch() {
    let s = Server::start().await;
    s.create_queue("jobs", json!({})).await;
    s.send_text("jobs", "before").await;
    s.send("jobs", json!({"body": "", "poison": true})).await;
    s.send_text("jobs", "after").await;
    let out = Cli::flag(&s)
        .run(&["consume", "jobs", "--follow", "--max", "10"])
        .await;
    let lines = out.ok();
    let bodies: Vec<&Value> = lines.iter().map(|l| &l["body"]).collect();
    assert_eq!(bodies, [&json!("before"), &json!("")], "{out:?}");
    let stats = s.stats("jobs").await;
    assert_eq!(
        (&stats["visible"], &stats["in_flight"]),
        (&json!(1), &json!(0)),
        "the unprinted message is visible again at once: {stats}"
    );
    assert_eq!(s.receive_one("jobs").await["body"], "after");
}

#[tokio::test]
async fn consume_follow_exits_0_on_sigterm() {
    let s = Server::start().await;
    s.create_queue("jobs", json!({})).await;
    let pubq = Cli::flag(&s);
    let mut follow = pubq.spawn(&["consume", "jobs", "--follow"]);
    s.send_text("jobs", "work").await;
    // A printed line proves the loop (and so its signal handler) is running.
    assert_eq!(follow.next_line().await["body"], "work");
    follow.terminate();
    let started = Instant::now();
    let out = follow.finish().await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "SIGTERM abandons the long poll at once"
    );
    assert_eq!(s.stats("jobs").await["acked"], 1);
}

#[tokio::test]
async fn consume_no_ack_leaves_messages_in_flight_for_ack_by_receipt() {
    let s = Server::start().await;
    s.create_queue("jobs", json!({})).await;
    let pubq = Cli::flag(&s);
    pubq.run(&["send", "jobs", "a"]).await.one();
    pubq.run(&["send", "jobs", "b"]).await.one();
    let lines = pubq
        .run(&["consume", "jobs", "--max", "10", "--no-ack"])
        .await
        .ok();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let stats = s.stats("jobs").await;
    assert_eq!(
        (&stats["in_flight"], &stats["acked"]),
        (&json!(2), &json!(0))
    );

    let receipts: Vec<String> = lines.iter().map(receipt_of).collect();
    let acked = pubq
        .run(&["ack", "jobs", &receipts[0], &receipts[1]])
        .await
        .ok();
    assert_eq!(
        acked,
        [
            json!({"receipt": receipts[0], "ok": true}),
            json!({"receipt": receipts[1], "ok": true})
        ]
    );
    let stats = s.stats("jobs").await;
    assert_eq!(
        (&stats["in_flight"], &stats["visible"], &stats["acked"]),
        (&json!(0), &json!(0), &json!(2))
    );
}

#[tokio::test]
async fn consume_of_an_empty_queue_prints_nothing_and_exits_0() {
    let s = Server::start().await;
    s.create_queue("jobs", json!({})).await;
    let lines = Cli::flag(&s).run(&["consume", "jobs"]).await.ok();
    assert!(lines.is_empty(), "{lines:?}");
}

#[tokio::test]
async fn consume_follow_exits_0_on_ctrl_c() {
    let s = Server::start().await;
    s.create_queue("jobs", json!({})).await;
    let mut follow = Cli::flag(&s).spawn(&["consume", "jobs", "--follow"]);
    s.send_text("jobs", "work").await;
    assert_eq!(follow.next_line().await["body"], "work");
    follow.interrupt();
    let out = follow.finish().await;
    assert_eq!(out.code, Some(0), "{out:?}");
}

#[tokio::test]
async fn consume_follow_exits_0_when_its_reader_goes_away_and_leaves_nothing_in_flight() {
    let s = Server::start().await;
    s.create_queue("jobs", json!({})).await;
    for body in ["a", "b", "c"] {
        s.send_text("jobs", body).await;
    }
    let mut follow = Cli::flag(&s).spawn(&["consume", "jobs", "--follow"]);
    assert_eq!(follow.next_line().await["body"], "a");
    // As `| head -1` does once it has its line.
    follow.close_stdout();
    let closed = Instant::now();
    let out = follow.finish().await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        closed.elapsed() < Duration::from_secs(5),
        "an idle follow notices a closed stdout without waiting out its long poll ({:?})",
        closed.elapsed()
    );
    let stats = s.stats("jobs").await;
    assert_eq!(
        stats["in_flight"], 0,
        "unprinted messages are given back: {stats}"
    );
    assert_eq!(
        stats["acked"].as_u64().unwrap_or(0) + stats["visible"].as_u64().unwrap_or(0),
        3,
        "every message was either printed and acked or given back: {stats}"
    );
}

/// `pubq serve --memory` on a given port; answers the child once it listens.
async fn serve_on(port: u16) -> Child {
    let mut cmd = pubq_command();
    cmd.args([
        "serve",
        "--memory",
        "--listen",
        &format!("127.0.0.1:{port}"),
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("spawn pubq serve");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
    let listening = tokio::time::timeout(CHILD_TIMEOUT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.starts_with("listening on") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        listening,
        Ok(true),
        "pubq serve on port {port} did not start"
    );
    child
}

#[tokio::test]
async fn consume_follow_rides_out_a_server_restart() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("an ephemeral port");
    let base = format!("http://127.0.0.1:{port}");
    let pubq = Cli::at(&base);
    let mut first = serve_on(port).await;
    pubq.run(&["queue", "create", "jobs"]).await.one();
    let mut follow = pubq.spawn(&["consume", "jobs", "--follow", "--wait", "1s"]);
    pubq.run(&["send", "jobs", "before"]).await.one();
    assert_eq!(follow.next_line().await["body"], "before");

    first.kill().await.expect("kill the first server");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _second = serve_on(port).await;
    pubq.run(&["queue", "create", "jobs"]).await.one();
    pubq.run(&["send", "jobs", "after"]).await.one();
    assert_eq!(follow.next_line().await["body"], "after");
    follow.terminate();
    let out = follow.finish().await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr.contains("retrying"),
        "it said it retried: {out:?}"
    );
}

// ---- publish and send -------------------------------------------------------

#[tokio::test]
async fn publish_dash_reads_the_body_from_stdin_exactly() {
    let s = Server::start().await;
    s.create_topic("notes", json!({})).await;
    s.create_queue("inbox", json!({})).await;
    s.subscribe("notes", "inbox", None).await;
    let pubq = Cli::flag(&s);
    let body = "line one\nline \"two\"\n";
    let id = id_of(
        &pubq
            .run_stdin(
                &["publish", "notes", "-", "--attr", "k=v=w"],
                body.as_bytes(),
            )
            .await
            .one(),
    );
    let got = pubq.run(&["consume", "inbox"]).await.one();
    assert_eq!(got["id"], id.as_str());
    assert_eq!(got["body"], body, "the trailing newline is kept");
    assert_eq!(
        got["attributes"],
        json!({"k": "v=w"}),
        "split at the first ="
    );
}

#[tokio::test]
async fn send_base64_carries_binary_stdin_and_raw_binary_is_a_usage_error() {
    let s = Server::start().await;
    s.create_queue("blobs", json!({})).await;
    let pubq = Cli::flag(&s);
    let bytes = [0xffu8, 0x00, 0x01, 0x80, b'\n'];
    pubq.run_stdin(&["send", "blobs", "-", "--base64"], &bytes)
        .await
        .one();
    let got = pubq.run(&["consume", "blobs"]).await.one();
    assert_eq!(got["body_encoding"], "base64", "{got}");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(got["body"].as_str().expect("a body"))
        .expect("valid base64");
    assert_eq!(decoded, bytes);

    pubq.run_stdin(&["send", "blobs", "-"], &bytes)
        .await
        .usage_error();
    assert_eq!(s.stats("blobs").await["sent"], 1, "nothing more was sent");
}

#[tokio::test]
async fn send_lines_sends_one_message_per_input_line() {
    let s = Server::start().await;
    s.create_queue("jobs", json!({})).await;
    let pubq = Cli::flag(&s);
    let lines = pubq
        .run_stdin(&["send", "jobs", "--lines"], b"a\nb\r\nc")
        .await
        .ok();
    assert_eq!(lines.len(), 3, "{lines:?}");
    for line in &lines {
        id_of(line);
    }
    assert_eq!(s.drain_bodies("jobs").await, ["a", "b", "c"]);

    // Each line gets its own answer; any failure makes the exit code 1.
    s.create_queue("jobs.fifo", json!({"fifo": true})).await;
    let out = pubq
        .run_stdin(&["send", "jobs.fifo", "--lines", "--group", "g"], b"x\ny\n")
        .await;
    assert_eq!(out.code, Some(1), "{out:?}");
    let codes: Vec<Value> = out
        .lines()
        .iter()
        .map(|l| l["error"]["code"].clone())
        .collect();
    assert_eq!(
        codes,
        [json!("InvalidRequest"), json!("InvalidRequest")],
        "no dedup id"
    );
    assert!(out.stderr.contains("2 of 2"), "{out:?}");
}

#[tokio::test]
async fn publish_group_and_dedup_reach_a_fifo_queue_once_and_in_order() {
    let s = Server::start().await;
    let pubq = Cli::flag(&s);
    let topic = pubq
        .run(&["topic", "create", "jobs.fifo", "--fifo"])
        .await
        .one();
    assert_eq!(topic["settings"]["fifo"], true);
    pubq.run(&["queue", "create", "work.fifo", "--fifo"])
        .await
        .one();
    pubq.run(&["subscribe", "jobs.fifo", "work.fifo"])
        .await
        .one();
    let publish = |body: &'static str, dedup: &'static str| {
        let pubq = &pubq;
        async move {
            let args = [
                "publish",
                "jobs.fifo",
                body,
                "--group",
                "g1",
                "--dedup",
                dedup,
            ];
            id_of(&pubq.run(&args).await.one())
        }
    };
    let first = publish("first", "d1").await;
    assert_eq!(
        publish("first again", "d1").await,
        first,
        "a duplicate answers the first id"
    );
    let second = publish("second", "d2").await;
    // send takes the same flags, straight into the queue.
    pubq.run(&[
        "send",
        "work.fifo",
        "third",
        "--group",
        "g1",
        "--dedup",
        "d3",
    ])
    .await
    .one();

    let got = pubq
        .run(&["consume", "work.fifo", "--max", "10"])
        .await
        .ok();
    let seen: Vec<(&Value, &Value)> = got.iter().map(|m| (&m["body"], &m["group_id"])).collect();
    assert_eq!(
        seen,
        [
            (&json!("first"), &json!("g1")),
            (&json!("second"), &json!("g1")),
            (&json!("third"), &json!("g1"))
        ]
    );
    assert_eq!(got[0]["id"], first.as_str());
    assert_eq!(got[1]["id"], second.as_str());

    pubq.run(&["publish", "jobs.fifo", "no group", "--dedup", "d9"])
        .await
        .refused("InvalidRequest");
}

#[tokio::test]
async fn publish_delay_holds_the_copy_back() {
    let s = Server::start().await;
    s.create_topic("t", json!({})).await;
    s.create_queue("q", json!({})).await;
    s.subscribe("t", "q", None).await;
    let pubq = Cli::flag(&s);
    let sent = Instant::now();
    pubq.run(&["publish", "t", "later", "--delay", "1s"])
        .await
        .one();
    assert!(pubq.run(&["consume", "q"]).await.ok().is_empty(), "not yet");
    assert_eq!(s.stats("q").await["delayed"], 1);
    let got = pubq.run(&["consume", "q", "--wait", "5s"]).await.one();
    assert_eq!(got["body"], "later");
    assert!(
        sent.elapsed() >= Duration::from_millis(900),
        "delivered after {:?}",
        sent.elapsed()
    );
}

#[tokio::test]
async fn send_deliver_at_in_the_past_delivers_at_once_and_in_the_future_waits() {
    let s = Server::start().await;
    s.create_queue("q", json!({})).await;
    let pubq = Cli::flag(&s);
    pubq.run(&["send", "q", "now", "--deliver-at", "2000-01-01T00:00:00Z"])
        .await
        .one();
    assert_eq!(pubq.run(&["consume", "q"]).await.one()["body"], "now");
    pubq.run(&["send", "q", "later", "--deliver-at", "2099-01-01T00:00:00Z"])
        .await
        .refused("InvalidRequest");
    let soon = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let soon = soon
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format a time");
    pubq.run(&["send", "q", "in an hour", "--deliver-at", &soon])
        .await
        .one();
    assert!(pubq.run(&["consume", "q"]).await.ok().is_empty());
    assert_eq!(s.stats("q").await["delayed"], 1);
}

// ---- receipts -----------------------------------------------------------------

#[tokio::test]
async fn nack_with_delay_redelivers_after_the_delay_and_without_at_once() {
    let s = Server::start().await;
    s.create_queue("q", json!({})).await;
    let pubq = Cli::flag(&s);
    pubq.run(&["send", "q", "retry me"]).await.one();
    let r = receipt_of(&pubq.run(&["consume", "q", "--no-ack"]).await.one());
    let nacked = Instant::now();
    let line = pubq.run(&["nack", "q", &r, "--delay", "1s"]).await.one();
    assert_eq!(line, json!({"receipt": r, "ok": true}));
    assert!(pubq.run(&["consume", "q"]).await.ok().is_empty(), "not yet");
    let again = pubq
        .run(&["consume", "q", "--wait", "5s", "--no-ack"])
        .await
        .one();
    assert!(nacked.elapsed() >= Duration::from_millis(900));
    assert_eq!(
        (&again["body"], &again["receive_count"]),
        (&json!("retry me"), &json!(2))
    );

    pubq.run(&["nack", "q", &receipt_of(&again)]).await.one();
    assert_eq!(pubq.run(&["consume", "q"]).await.one()["receive_count"], 3);
}

#[tokio::test]
async fn visibility_timeout_0_makes_a_received_message_visible_again() {
    let s = Server::start().await;
    s.create_queue("q", json!({})).await;
    let pubq = Cli::flag(&s);
    pubq.run(&["send", "q", "x"]).await.one();
    let r = receipt_of(&pubq.run(&["consume", "q", "--no-ack"]).await.one());
    assert!(pubq.run(&["consume", "q"]).await.ok().is_empty(), "hidden");
    let line = pubq
        .run(&["visibility", "q", &r, "--timeout", "0"])
        .await
        .one();
    assert_eq!(line, json!({"receipt": r, "ok": true}));
    let again = pubq.run(&["consume", "q", "--no-ack"]).await.one();
    assert_eq!(again["receive_count"], 2);
    pubq.run(&["visibility", "q", &r]).await.usage_error();

    // consume --visibility overrides the queue's 30 s for what it receives.
    pubq.run(&["nack", "q", &receipt_of(&again)]).await.one();
    let leased = Instant::now();
    pubq.run(&["consume", "q", "--no-ack", "--visibility", "1s"])
        .await
        .one();
    let back = pubq.run(&["consume", "q", "--wait", "5s"]).await.one();
    assert_eq!(back["receive_count"], 4);
    assert!(leased.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn refused_receipts_print_their_error_and_exit_1() {
    let s = Server::start().await;
    s.create_queue("q", json!({})).await;
    let pubq = Cli::flag(&s);
    pubq.run(&["send", "q", "x"]).await.one();
    let r = receipt_of(&pubq.run(&["consume", "q", "--no-ack"]).await.one());
    let out = pubq.run(&["ack", "q", "garbage", &r]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    let lines = out.lines();
    assert_eq!(lines.len(), 2, "one line per receipt: {out:?}");
    assert_eq!(
        (&lines[0]["receipt"], &lines[0]["error"]["code"]),
        (&json!("garbage"), &json!("ReceiptInvalid"))
    );
    assert_eq!(lines[1], json!({"receipt": r, "ok": true}));
    assert!(out.stderr.contains("1 of 2"), "{out:?}");
}

// ---- queues -------------------------------------------------------------------

#[tokio::test]
async fn queue_purge_drops_visible_and_in_flight_messages() {
    let s = Server::start().await;
    s.create_queue("q", json!({})).await;
    let pubq = Cli::flag(&s);
    for body in ["a", "b", "c"] {
        pubq.run(&["send", "q", body]).await.one();
    }
    pubq.run(&["consume", "q", "--no-ack"]).await.one();
    pubq.run(&["queue", "purge", "q"]).await.one();
    let stats = pubq.run(&["queue", "show", "q"]).await.one()["stats"].clone();
    assert_eq!(
        (&stats["visible"], &stats["in_flight"]),
        (&json!(0), &json!(0)),
        "{stats}"
    );
}

#[tokio::test]
async fn queue_redrive_moves_dead_letters_back_to_their_source() {
    let s = Server::start().await;
    let pubq = Cli::flag(&s);
    pubq.run(&["queue", "create", "dead"]).await.one();
    pubq.run(&[
        "queue",
        "create",
        "work",
        "--dlq",
        "dead",
        "--max-receives",
        "1",
    ])
    .await
    .one();
    pubq.run(&["send", "work", "troublesome"]).await.one();
    let r = receipt_of(&pubq.run(&["consume", "work", "--no-ack"]).await.one());
    pubq.run(&["nack", "work", &r]).await.one();
    assert_eq!(s.stats("dead").await["visible"], 1, "moved to the DLQ");

    let task = pubq.run(&["queue", "redrive", "dead"]).await.one();
    assert_eq!(task["messages"], 1, "{task}");
    assert!(task["task_id"].is_string(), "{task}");
    let back = eventually(Duration::from_secs(5), || async {
        s.stats("work").await["visible"] == 1
    })
    .await;
    assert!(back, "the message went back to work");
    let got = pubq.run(&["consume", "work"]).await.one();
    assert_eq!(got["body"], "troublesome");

    pubq.run(&["queue", "redrive", "work"])
        .await
        .refused("NotADeadLetterQueue");
}

#[tokio::test]
async fn queue_delete_is_refused_while_in_use_and_works_after_unsubscribe() {
    let s = Server::start().await;
    let pubq = Cli::flag(&s);
    pubq.run(&["topic", "create", "t"]).await.one();
    pubq.run(&["queue", "create", "dlq"]).await.one();
    pubq.run(&[
        "queue",
        "create",
        "q",
        "--dlq",
        "dlq",
        "--max-receives",
        "3",
    ])
    .await
    .one();
    pubq.run(&["subscribe", "t", "q"]).await.one();

    pubq.run(&["queue", "delete", "dlq"])
        .await
        .refused("QueueInUse");
    pubq.run(&["queue", "delete", "q"])
        .await
        .refused("QueueInUse");

    pubq.run(&["unsubscribe", "t", "q"]).await.one();
    pubq.run(&["queue", "delete", "q"]).await.one();
    pubq.run(&["queue", "delete", "dlq"]).await.one();
    assert!(pubq.run(&["queue", "list"]).await.ok().is_empty());
    pubq.run(&["queue", "delete", "q"])
        .await
        .refused("QueueNotFound");
}

#[tokio::test]
async fn queue_list_prints_one_line_per_queue_and_create_states_the_kind() {
    let s = Server::start().await;
    let pubq = Cli::flag(&s);
    assert!(pubq.run(&["queue", "list"]).await.ok().is_empty());
    pubq.run(&["queue", "create", "b"]).await.one();
    pubq.run(&["queue", "create", "a"]).await.one();
    let fifo = pubq
        .run(&["queue", "create", "c.fifo", "--fifo"])
        .await
        .one();
    assert_eq!(fifo["settings"]["fifo"], true);
    assert_eq!(
        names(&pubq.run(&["queue", "list"]).await.ok()),
        ["a", "b", "c.fifo"]
    );
    pubq.run(&["queue", "create", "a", "--fifo"])
        .await
        .refused("QueueExists");
    // update merges the given settings and leaves the kind alone.
    let updated = pubq
        .run(&["queue", "update", "c.fifo", "--visibility", "2m"])
        .await
        .one();
    assert_eq!(
        (
            &updated["settings"]["fifo"],
            &updated["settings"]["visibility_timeout_seconds"]
        ),
        (&json!(true), &json!(120))
    );
}

#[tokio::test]
async fn unsubscribe_stops_the_copies() {
    let s = Server::start().await;
    s.create_topic("t", json!({})).await;
    s.create_queue("q", json!({})).await;
    let pubq = Cli::flag(&s);
    pubq.run(&["subscribe", "t", "q"]).await.one();
    pubq.run(&["publish", "t", "before"]).await.one();
    pubq.run(&["unsubscribe", "t", "q"]).await.one();
    assert_eq!(s.topic("t").await["subscriptions"], json!([]));
    pubq.run(&["publish", "t", "after"]).await.one();
    assert_eq!(s.drain_bodies("q").await, ["before"]);
    let again = pubq.run(&["unsubscribe", "t", "q"]).await;
    assert_eq!(
        (again.code, again.stdout.as_str()),
        (Some(1), ""),
        "{again:?}"
    );
}

#[tokio::test]
async fn subscribe_reads_a_filter_from_a_file_and_again_replaces_it() {
    let s = Server::start().await;
    s.create_topic("t", json!({})).await;
    s.create_queue("q", json!({})).await;
    let pubq = Cli::flag(&s);
    let mut file = tempfile::NamedTempFile::new().expect("a temp file");
    std::io::Write::write_all(&mut file, br#"{"type": ["a"]}"#).expect("write the filter");
    let at = format!("@{}", file.path().to_str().expect("utf-8 path"));
    pubq.run(&["subscribe", "t", "q", "--filter", &at])
        .await
        .one();
    assert_eq!(
        s.topic("t").await["subscriptions"][0]["filter"],
        json!({"type": ["a"]})
    );
    pubq.run(&["publish", "t", "kept", "--attr", "type=a"])
        .await
        .one();
    pubq.run(&["publish", "t", "dropped", "--attr", "type=b"])
        .await
        .one();
    assert_eq!(s.drain_bodies("q").await, ["kept"]);

    pubq.run(&["subscribe", "t", "q", "--filter", r#"{"type": ["b"]}"#])
        .await
        .one();
    assert_eq!(
        s.topic("t").await["subscriptions"][0]["filter"],
        json!({"type": ["b"]})
    );
    pubq.run(&[
        "subscribe",
        "t",
        "q",
        "--filter",
        "@/nonexistent/filter.json",
    ])
    .await
    .usage_error();
}

// ---- topics -------------------------------------------------------------------

#[tokio::test]
async fn topic_list_show_and_delete() {
    let s = Server::start().await;
    let pubq = Cli::flag(&s);
    pubq.run(&["topic", "create", "orders"]).await.one();
    let pay = pubq
        .run(&[
            "topic",
            "create",
            "pay.fifo",
            "--fifo",
            "--content-based-dedup",
        ])
        .await
        .one();
    assert_eq!(
        (
            &pay["settings"]["fifo"],
            &pay["settings"]["content_based_dedup"]
        ),
        (&json!(true), &json!(true))
    );
    s.create_queue("q", json!({})).await;
    s.subscribe("orders", "q", Some(json!({"type": ["a"]})))
        .await;

    assert_eq!(
        names(&pubq.run(&["topic", "list"]).await.ok()),
        ["orders", "pay.fifo"]
    );
    let shown = pubq.run(&["topic", "show", "orders"]).await.one();
    assert_eq!(shown["name"], "orders");
    assert_eq!(shown["subscriptions"][0]["queue"], "q");
    assert_eq!(shown["subscriptions"][0]["filter"], json!({"type": ["a"]}));

    // create always states the kind: a standard topic over a FIFO one is refused.
    pubq.run(&["topic", "create", "pay.fifo"])
        .await
        .refused("TopicExists");

    pubq.run(&["topic", "delete", "orders"]).await.one();
    assert_eq!(
        names(&pubq.run(&["topic", "list"]).await.ok()),
        ["pay.fifo"]
    );
    pubq.run(&["topic", "show", "orders"])
        .await
        .refused("TopicNotFound");
}

// ---- tail -----------------------------------------------------------------------

#[tokio::test]
async fn tail_prints_what_is_published_and_removes_its_queue_on_sigterm() {
    let s = Server::start().await;
    s.create_topic("orders", json!({})).await;
    let pubq = Cli::flag(&s);
    let mut tail = pubq.spawn(&["tail", "orders"]);
    let queue = tail_queue(&s, "orders").await;
    let suffix = queue
        .strip_prefix("tail-orders-")
        .expect("named tail-<topic>-<hex>");
    assert!(
        suffix.len() == 16 && suffix.chars().all(|c| c.is_ascii_hexdigit()),
        "{queue}"
    );
    let id = id_of(
        &pubq
            .run(&["publish", "orders", "hello", "--attr", "type=x"])
            .await
            .one(),
    );
    let got = tail.next_line().await;
    assert_eq!(
        (&got["id"], &got["body"], &got["attributes"]),
        (&json!(id), &json!("hello"), &json!({"type": "x"}))
    );
    tail.terminate();
    let out = tail.finish().await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, "");
    assert!(
        !queue_names(&s).await.contains(&queue),
        "{queue} was left behind"
    );
    assert_eq!(s.topic("orders").await["subscriptions"], json!([]));
}

#[tokio::test]
async fn tail_with_a_filter_stops_at_a_poison_message_and_removes_its_queue() {
    let s = Server::start().await;
    s.create_topic("orders", json!({})).await;
    let pubq = Cli::flag(&s);
    let mut tail = pubq.spawn(&["tail", "orders", "--filter", r#"{"type": ["paid"]}"#]);
    let queue = tail_queue(&s, "orders").await;
    pubq.run(&["publish", "orders", "skipped", "--attr", "type=refund"])
        .await
        .one();
    pubq.run(&["publish", "orders", "shown", "--attr", "type=paid"])
        .await
        .one();
    assert_eq!(
        tail.next_line().await["body"],
        "shown",
        "the filter applies"
    );
    pubq.run(&["publish", "orders", "--poison", "--attr", "type=paid"])
        .await
        .one();
    assert_eq!(tail.next_line().await["poison"], true);
    let out = tail.finish().await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, "");
    assert!(
        !queue_names(&s).await.contains(&queue),
        "{queue} was left behind"
    );
}

#[tokio::test]
async fn tail_removes_its_queue_on_ctrl_c() {
    let s = Server::start().await;
    s.create_topic("orders", json!({})).await;
    let tail = Cli::flag(&s).spawn(&["tail", "orders"]);
    let queue = tail_queue(&s, "orders").await;
    tail.interrupt();
    let out = tail.finish().await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        !queue_names(&s).await.contains(&queue),
        "{queue} was left behind"
    );
}

#[tokio::test]
async fn tail_removes_its_queue_when_its_reader_goes_away() {
    let s = Server::start().await;
    s.create_topic("orders", json!({})).await;
    let pubq = Cli::flag(&s);
    let mut tail = pubq.spawn(&["tail", "orders"]);
    let queue = tail_queue(&s, "orders").await;
    pubq.run(&["publish", "orders", "first"]).await.one();
    assert_eq!(tail.next_line().await["body"], "first");
    // As `pubq tail orders | head -1` does once it has its line.
    tail.close_stdout();
    let out = tail.finish().await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        !queue_names(&s).await.contains(&queue),
        "{queue} was left behind"
    );
}

#[tokio::test]
async fn tail_of_a_missing_topic_exits_1_and_leaves_no_queue() {
    let s = Server::start().await;
    Cli::flag(&s)
        .run(&["tail", "nope"])
        .await
        .refused("TopicNotFound");
    assert_eq!(queue_names(&s).await, Vec::<String>::new());
}

// ---- errors and exit codes ----------------------------------------------------------

#[tokio::test]
async fn server_refusals_exit_1_with_code_and_message_on_stderr() {
    let s = Server::start().await;
    let pubq = Cli::flag(&s);
    pubq.run(&["publish", "missing", "x"])
        .await
        .refused("TopicNotFound");
    pubq.run(&["send", "missing", "x"])
        .await
        .refused("QueueNotFound");
    pubq.run(&["consume", "missing"])
        .await
        .refused("QueueNotFound");
    pubq.run(&["queue", "show", "missing"])
        .await
        .refused("QueueNotFound");
    // Ranges are the server's to check, not the CLI's.
    s.create_queue("q", json!({})).await;
    pubq.run(&["consume", "q", "--max", "101"])
        .await
        .refused("InvalidRequest");
    pubq.run(&["queue", "update", "q", "--visibility", "13h"])
        .await
        .refused("InvalidSetting");
    pubq.run(&["send", "q", "x", "--group", "g"])
        .await
        .refused("InvalidRequest");
}

#[tokio::test]
async fn usage_errors_exit_2_and_send_nothing() {
    let s = Server::start().await;
    s.create_topic("t", json!({})).await;
    s.create_queue("q", json!({})).await;
    let pubq = Cli::flag(&s);
    let long = "n".repeat(81);
    let cases: &[&[&str]] = &[
        &["publish", "t", "x", "--bogus"],
        &["frobnicate"],
        &["publish", "t", "x", "--attr", "novalue"],
        &["publish", "t", "x", "--attr", "=v"],
        &["publish", "t", "x", "--attr", "k=1", "--attr", "k=2"],
        &["send", "q", "x", "--delay", "ten"],
        &["send", "q", "x", "--delay", "1500ms"],
        &["send", "q", "x", "--deliver-at", "tomorrow"],
        &[
            "send",
            "q",
            "x",
            "--delay",
            "5s",
            "--deliver-at",
            "2030-01-02T12:00:00Z",
        ],
        &["queue", "create", "new", "--visibility", "1.5s"],
        &["queue", "create", "new", "--dlq", "q"],
        &["queue", "create", "bad name"],
        &["queue", "create", "a/b"],
        &["topic", "create", &long],
        &["subscribe", "t", "q", "--filter", "[1]"],
        &["subscribe", "t", "q", "--filter", "{nope"],
        &["consume", "q", "--max", "lots"],
        &["consume", "q", "--wait", "forever"],
        &["ack", "q"],
        &["send", "q", "x", "--lines"],
    ];
    for args in cases {
        let out = pubq.run(args).await;
        assert_eq!(out.code, Some(2), "{args:?} is a usage error: {out:?}");
        out.usage_error();
    }
    assert_eq!(queue_names(&s).await, ["q"], "no queue was created");
    assert_eq!(s.stats("q").await["sent"], 0, "nothing was sent");
    let t = s.topic("t").await;
    assert_eq!(t["subscriptions"], json!([]), "nothing was subscribed");
    assert_eq!(t["stats"]["published"], 0, "nothing was published");

    pubq_alone(&["topic", "list", "--server", "ftp://example.com"])
        .await
        .usage_error();
}

#[tokio::test]
async fn an_unreachable_server_exits_3() {
    let closed = closed_port_url();
    for args in [
        &["topic", "list"][..],
        &["publish", "t", "x"],
        &["consume", "q", "--follow"],
        &["tail", "t"],
        &["health"],
    ] {
        let mut cmd = pubq_command();
        cmd.args(args).args(["--server", &closed]);
        let out = run(cmd, None).await;
        assert_eq!(out.code, Some(3), "{args:?}: {out:?}");
        assert_eq!(out.stdout, "", "{args:?}");
        assert!(out.stderr.contains("cannot connect"), "{args:?}: {out:?}");
    }
}

// ---- where the server is -----------------------------------------------------------

#[tokio::test]
async fn pubq_url_names_the_server_and_the_server_flag_overrides_it() {
    let s = Server::start().await;
    let env = Cli::env(&s);
    env.run(&["queue", "create", "q"]).await.one();
    env.run(&["send", "q", "via env"]).await.one();
    assert_eq!(env.run(&["consume", "q"]).await.one()["body"], "via env");

    let mut cmd = pubq_command();
    cmd.env("PUBQ_URL", closed_port_url())
        .args(["queue", "list", "--server", &s.base]);
    assert_eq!(names(&run(cmd, None).await.ok()), ["q"], "the flag wins");

    // A URL without a scheme gets http://, and the flag may come right
    // after the command name.
    let bare = s.base.trim_start_matches("http://");
    let mut cmd = pubq_command();
    cmd.args(["queue", "--server", bare, "list"]);
    assert_eq!(names(&run(cmd, None).await.ok()), ["q"]);

    let mut cmd = pubq_command();
    cmd.args(["health", "--server", bare]);
    assert_eq!(
        run(cmd, None).await.one(),
        json!({"live": true, "ready": true})
    );
}

// ---- help ----------------------------------------------------------------------------

#[tokio::test]
async fn pubq_help_lists_every_command() {
    let out = pubq_alone(&["--help"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    for command in [
        "serve",
        "topic",
        "queue",
        "subscribe",
        "unsubscribe",
        "publish",
        "send",
        "consume",
        "ack",
        "nack",
        "visibility",
        "tail",
        "health",
    ] {
        assert!(
            out.stdout
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{command} "))),
            "`pubq --help` lists {command}:\n{}",
            out.stdout
        );
    }
}

#[tokio::test]
async fn pubq_serve_help_lists_the_documented_flags() {
    let out = pubq_alone(&["serve", "--help"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    for flag in [
        "--listen",
        "--data-dir",
        "--memory",
        "--config",
        "--fsync",
        "--fsync-interval",
        "--max-request-bytes",
        "--max-waiters-per-queue",
        "--max-queues",
        "--max-topics",
        "--max-subscriptions-per-topic",
        "--shutdown-grace",
        "--resume-seconds",
        "--max-frame-bytes",
        "--ws-outbox-bytes",
        "--idle-timeout",
        "always",
        "interval",
        "never",
    ] {
        assert!(out.stdout.contains(flag), "serve --help lacks {flag}");
    }
}

#[tokio::test]
async fn client_command_help_lists_the_documented_flags() {
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["publish", "--help"],
            &[
                "--attr",
                "--group",
                "--dedup",
                "--delay",
                "--deliver-at",
                "--poison",
                "--base64",
                "--lines",
                "--server",
                "--token",
            ],
        ),
        (
            &["consume", "--help"],
            &[
                "--max",
                "--wait",
                "--visibility",
                "--follow",
                "--no-ack",
                "--server",
            ],
        ),
        (
            &["queue", "create", "--help"],
            &[
                "--fifo",
                "--delay",
                "--visibility",
                "--retention",
                "--max-message-bytes",
                "--receive-wait",
                "--content-based-dedup",
                "--dedup-window",
                "--dlq",
                "--max-receives",
                "--backoff-initial",
                "--backoff-max",
            ],
        ),
        (&["tail", "--help"], &["--filter", "--server"]),
        (&["subscribe", "--help"], &["--filter"]),
        (&["nack", "--help"], &["--delay"]),
        (&["visibility", "--help"], &["--timeout"]),
    ];
    for (args, flags) in cases {
        let out = pubq_alone(args).await;
        assert_eq!(out.code, Some(0), "{args:?}: {out:?}");
        for flag in *flags {
            assert!(out.stdout.contains(flag), "{args:?} lacks {flag}");
        }
    }
}
