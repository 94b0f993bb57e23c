//! The harness: spawns the real `pubq` binary (`serve --memory --listen
//! 127.0.0.1:0`) as a child process, learns its port from the `listening on
//! http://ADDR` line it prints, and talks HTTP to it. Every test starts its own
//! server; the child is killed when the [`Server`] is dropped.
//!
//! It does not know the server's rules: helpers only send requests and hand
//! back `(status, JSON)`, or assert the one status a happy path must have.

pub mod ws;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long a server may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `pubq serve` child process.
pub struct Server {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The child's process id (for `/proc/<pid>/stat`).
    pub pid: u32,
    pub http: reqwest::Client,
    /// Everything the child wrote to stderr so far (its logs).
    stderr: Arc<Mutex<String>>,
    child: Child,
}

/// A `pubq` command with the environment cleared of `PUBQ_*` variables, so a
/// developer's settings cannot change what a test sees.
/// Collects a child's stderr in the background (for assertions on logs).
pub fn capture_stderr(child: &mut tokio::process::Child) -> Arc<Mutex<String>> {
    let stderr = Arc::new(Mutex::new(String::new()));
    if let Some(mut err) = child.stderr.take() {
        let sink = stderr.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_str(&text);
            }
        });
    }
    stderr
}

/// A Prometheus sample of `/metrics` text: `name` with its labels, as
/// printed.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

pub fn pubq_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pubq"));
    for (k, _) in std::env::vars() {
        if k.starts_with("PUBQ_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("PUBQ_LOG", "warn");
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    cmd
}

impl Server {
    /// A server with default settings.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// A server with extra `serve` flags.
    pub async fn start_with(extra: &[&str]) -> Self {
        Self::spawn(&["--memory"], extra).await
    }

    /// A server with extra `serve` flags and environment variables (e.g.
    /// `PUBQ_LOG` to see the audit log).
    pub async fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn_env(&["--memory"], extra, env).await
    }

    /// A durable server keeping its data in `dir` (`--data-dir`).
    pub async fn start_on_disk(dir: &std::path::Path, extra: &[&str]) -> Self {
        let dir = dir.to_str().expect("utf-8 temp dir");
        Self::spawn(&["--data-dir", dir], extra).await
    }

    /// A durable server with extra flags and environment variables (e.g.
    /// `PUBQ_ENCRYPTION_KEY`).
    pub async fn start_on_disk_env(
        dir: &std::path::Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let dir = dir.to_str().expect("utf-8 temp dir");
        Self::spawn_env(&["--data-dir", dir], extra, env).await
    }

    async fn spawn(storage: &[&str], extra: &[&str]) -> Self {
        Self::spawn_env(storage, extra, &[]).await
    }

    async fn spawn_env(storage: &[&str], extra: &[&str], env: &[(&str, &str)]) -> Self {
        let mut cmd = pubq_command();
        cmd.envs(env.iter().copied());
        cmd.arg("serve")
            .args(storage)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn the pubq binary");
        let pid = child.id().expect("a running child has a pid");
        let stderr = capture_stderr(&mut child);
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let addr = tokio::time::timeout(START_TIMEOUT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(addr) = line.trim().strip_prefix("listening on http://") {
                    return Some(addr.to_string());
                }
            }
            None
        })
        .await;
        let addr = match addr {
            Ok(Some(a)) => a,
            other => panic!(
                "pubq serve {extra:?} did not print its address ({other:?}); stderr:\n{}",
                stderr.lock().unwrap_or_else(|p| p.into_inner())
            ),
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            base: format!("http://{addr}"),
            pid,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("build the HTTP client"),
            stderr,
            child,
        }
    }

    /// Sends SIGTERM and waits for the process to exit; answers its exit code.
    pub async fn terminate(mut self) -> Option<i32> {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {}", self.pid);
        let exit = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("the server exits after SIGTERM")
            .expect("wait for the server");
        exit.code()
    }

    /// Kills the process with SIGKILL (a crash) and waits until it is gone.
    pub async fn crash(mut self) {
        self.child.kill().await.expect("kill the server");
    }

    /// What the server logged to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends a request with a raw body; answers (status, body text).
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> (u16, String) {
        let resp = self
            .http
            .request(method, self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("request to {path} failed: {e}\n{}", self.stderr()));
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("read the answer");
        (status, text)
    }

    /// The `/metrics` text.
    pub async fn metrics_text(&self) -> String {
        let (status, text) = self.raw(Method::GET, "/metrics", "").await;
        assert_eq!(status, 200, "GET /metrics: {text}");
        text
    }

    /// Sends a request and parses the answer as JSON (every pubq answer but
    /// `/metrics` is JSON).
    pub async fn request(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method.clone(), self.url(path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path} failed: {e}\n{}", self.stderr()));
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("read the answer");
        let v = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path} answered {status} non-JSON {text:?}: {e}"));
        (status, v)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.request(Method::GET, path, None).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.request(Method::PUT, path, Some(body)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.request(Method::POST, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.request(Method::DELETE, path, None).await
    }

    // ---- resources ----

    /// Creates a queue; asserts 201.
    pub async fn create_queue(&self, name: &str, settings: Value) -> Value {
        let (s, v) = self.put(&format!("/v1/queues/{name}"), settings).await;
        assert_eq!(s, 201, "create queue {name}: {v}");
        v
    }

    /// Creates a topic; asserts 201.
    pub async fn create_topic(&self, name: &str, settings: Value) -> Value {
        let (s, v) = self.put(&format!("/v1/topics/{name}"), settings).await;
        assert_eq!(s, 201, "create topic {name}: {v}");
        v
    }

    /// Subscribes a queue to a topic; asserts 201.
    pub async fn subscribe(&self, topic: &str, queue: &str, filter: Option<Value>) {
        let body = match filter {
            Some(f) => json!({ "filter": f }),
            None => json!({}),
        };
        let (s, v) = self
            .put(&format!("/v1/topics/{topic}/subscriptions/{queue}"), body)
            .await;
        assert_eq!(s, 201, "subscribe {queue} to {topic}: {v}");
    }

    /// Queue describe; asserts 200.
    pub async fn queue(&self, name: &str) -> Value {
        let (s, v) = self.get(&format!("/v1/queues/{name}")).await;
        assert_eq!(s, 200, "describe queue {name}: {v}");
        v
    }

    /// A queue's `stats` object.
    pub async fn stats(&self, name: &str) -> Value {
        self.queue(name).await["stats"].clone()
    }

    /// Topic describe; asserts 200.
    pub async fn topic(&self, name: &str) -> Value {
        let (s, v) = self.get(&format!("/v1/topics/{name}")).await;
        assert_eq!(s, 200, "describe topic {name}: {v}");
        v
    }

    // ---- messages ----

    /// `POST /v1/queues/{queue}/send` with any body.
    pub async fn send_raw(&self, queue: &str, body: Value) -> (u16, Value) {
        self.post(&format!("/v1/queues/{queue}/send"), body).await
    }

    /// Sends one message; asserts 200 and answers its id.
    pub async fn send(&self, queue: &str, message: Value) -> String {
        let (s, v) = self.send_raw(queue, message).await;
        assert_eq!(s, 200, "send to {queue}: {v}");
        single_id(&v)
    }

    /// Sends a body of text; answers its id.
    pub async fn send_text(&self, queue: &str, body: &str) -> String {
        self.send(queue, json!({ "body": body })).await
    }

    /// `POST /v1/topics/{topic}/publish` with any body.
    pub async fn publish_raw(&self, topic: &str, body: Value) -> (u16, Value) {
        self.post(&format!("/v1/topics/{topic}/publish"), body)
            .await
    }

    /// Publishes one message; asserts 200 and answers its id.
    pub async fn publish(&self, topic: &str, message: Value) -> String {
        let (s, v) = self.publish_raw(topic, message).await;
        assert_eq!(s, 200, "publish to {topic}: {v}");
        single_id(&v)
    }

    /// `POST /v1/queues/{queue}/receive` with any body.
    pub async fn receive_raw(&self, queue: &str, body: Value) -> (u16, Value) {
        self.post(&format!("/v1/queues/{queue}/receive"), body)
            .await
    }

    /// Receives; asserts 200 and answers the messages.
    pub async fn receive(&self, queue: &str, body: Value) -> Vec<Value> {
        let (s, v) = self.receive_raw(queue, body).await;
        assert_eq!(s, 200, "receive from {queue}: {v}");
        v["messages"]
            .as_array()
            .unwrap_or_else(|| panic!("receive answer without messages: {v}"))
            .clone()
    }

    /// Receives exactly one message without waiting.
    pub async fn receive_one(&self, queue: &str) -> Value {
        let got = self.receive(queue, json!({})).await;
        assert_eq!(got.len(), 1, "expected one message in {queue}: {got:?}");
        got[0].clone()
    }

    /// Receives everything visible now (up to 100).
    pub async fn drain(&self, queue: &str) -> Vec<Value> {
        self.receive(queue, json!({"max": 100})).await
    }

    /// Bodies of everything visible now, sorted.
    pub async fn drain_bodies(&self, queue: &str) -> Vec<String> {
        let mut b: Vec<String> = self
            .drain(queue)
            .await
            .iter()
            .map(|m| m["body"].as_str().expect("body is a string").to_string())
            .collect();
        b.sort();
        b
    }

    /// ack, nack or visibility with any body; asserts 200 and answers `results`.
    pub async fn receipts_op(&self, queue: &str, op: &str, body: Value) -> Vec<Value> {
        let (s, v) = self.post(&format!("/v1/queues/{queue}/{op}"), body).await;
        assert_eq!(s, 200, "{op} on {queue}: {v}");
        v["results"]
            .as_array()
            .unwrap_or_else(|| panic!("{op} answer without results: {v}"))
            .clone()
    }

    pub async fn ack(&self, queue: &str, receipts: &[&str]) -> Vec<Value> {
        self.receipts_op(queue, "ack", json!({ "receipts": receipts }))
            .await
    }

    pub async fn nack(&self, queue: &str, receipts: &[&str], delay: Option<u32>) -> Vec<Value> {
        let body = match delay {
            Some(d) => json!({ "receipts": receipts, "delay_seconds": d }),
            None => json!({ "receipts": receipts }),
        };
        self.receipts_op(queue, "nack", body).await
    }

    pub async fn visibility(&self, queue: &str, receipts: &[&str], seconds: u32) -> Vec<Value> {
        self.receipts_op(
            queue,
            "visibility",
            json!({ "receipts": receipts, "seconds": seconds }),
        )
        .await
    }

    /// The server's CPU time (user + system) so far, from `/proc/<pid>/stat`.
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .expect("read /proc/<pid>/stat");
        // Fields after the command name (which may hold spaces) start at
        // field 3; utime and stime are fields 14 and 15.
        let rest = &stat[stat.rfind(')').expect("stat has a command name") + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 =
            f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime");
        // The kernel reports in USER_HZ, 100 on every Linux this runs on.
        Duration::from_millis(ticks * 10)
    }
}

/// The one id of a single publish or send answer `{"ids": [id]}`.
pub fn single_id(v: &Value) -> String {
    let ids = v["ids"]
        .as_array()
        .unwrap_or_else(|| panic!("answer without ids: {v}"));
    assert_eq!(ids.len(), 1, "one id expected: {v}");
    let id = ids[0].as_str().expect("ids are strings").to_string();
    assert!(!id.is_empty());
    id
}

/// Asserts an error answer: the status, `error.code`, and a non-empty
/// `error.message`.
#[track_caller]
pub fn assert_error(answer: &(u16, Value), status: u16, code: &str) {
    let (s, v) = answer;
    assert_eq!(
        (*s, v["error"]["code"].as_str()),
        (status, Some(code)),
        "expected {status} {code}, got {s} {v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "error without a message: {v}"
    );
}

/// Asserts a per-entry error object `{"code": .., "message": ..}`.
#[track_caller]
pub fn assert_entry_error(entry: &Value, code: &str) {
    assert_eq!(
        entry["error"]["code"].as_str(),
        Some(code),
        "expected entry error {code}: {entry}"
    );
}

/// The receipt of a received message.
pub fn receipt(m: &Value) -> &str {
    m["receipt"]
        .as_str()
        .expect("a received message has a receipt")
}

/// Polls `check` every 20 ms until it holds or `limit` passes; for state that
/// changes in the background with nothing to long-poll on (redrive progress).
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `pubq serve ARGS` (plus `--listen 127.0.0.1:0`) expecting it to
/// refuse to start; answers (exit code, stderr). Panics if it starts.
pub async fn serve_refused(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = pubq_command();
    cmd.envs(env.iter().copied())
        .arg("serve")
        .args(args)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run pubq");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
    // A server that starts prints its address and keeps running: fail fast
    // instead of waiting for an exit that will not come.
    let started = tokio::time::timeout(START_TIMEOUT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("listening on") {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(true);
    if started {
        let _ = child.kill().await;
        panic!("pubq serve {args:?} was expected to refuse to start");
    }
    let out = tokio::time::timeout(START_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("pubq serve {args:?} did not exit"))
        .expect("wait for pubq");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
