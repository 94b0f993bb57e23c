//! Backlog benchmark (not a test): a backlog far larger than the message
//! cache in one durable queue, against the real server binary over HTTP.
//!
//! 1. start `pubq serve --data-dir TMP` (fsync always) and note its idle RSS;
//! 2. fill N messages of 256 bytes (P publishers, batches of 100);
//! 3. `kill -9` the server, start it again and time it to `/readyz`;
//! 4. drain the queue (C consumers, receive 100 + ack) and check every
//!    message came back exactly once.
//!
//! The server's RSS is sampled from `/proc` all along; the report gives
//! fill/drain rates, peak RSS per phase and the restart time.
//!
//! `cargo bench --bench backlog -- [--messages 10000000] [--publishers 4] [--consumers 2]`

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Args {
    messages: u64,
    publishers: u64,
    consumers: u64,
}

fn args() -> Args {
    let mut a = Args {
        messages: 10_000_000,
        publishers: 4,
        consumers: 2,
    };
    let v: Vec<String> = std::env::args().collect();
    for w in v.windows(2) {
        let n: Option<u64> = w[1].parse().ok();
        match w[0].as_str() {
            "--messages" => a.messages = n.unwrap_or(a.messages),
            "--publishers" => a.publishers = n.unwrap_or(a.publishers),
            "--consumers" => a.consumers = n.unwrap_or(a.consumers),
            _ => {}
        }
    }
    a
}

struct Server {
    child: Child,
    addr: SocketAddr,
}

fn start(dir: &std::path::Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pubq"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start pubq");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the listening line");
    let addr = line
        .trim()
        .rsplit('/')
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"));
    Server { child, addr }
}

/// Resident set size of a process in bytes.
fn rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Samples a process's RSS every 100 ms; `peak()` is the highest seen.
struct RssProbe {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl RssProbe {
    fn start(pid: u32) -> Self {
        let peak = Arc::new(AtomicU64::new(rss(pid)));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Self { peak, stop }
    }

    fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for RssProbe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn mib(b: u64) -> String {
    format!("{:.0} MiB", b as f64 / (1024.0 * 1024.0))
}

async fn fill(http: &reqwest::Client, base: &str, a: &Args) -> Duration {
    let next = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..a.publishers {
        let (http, url, next, total) = (
            http.clone(),
            format!("{base}/v1/queues/backlog/send"),
            next.clone(),
            a.messages,
        );
        tasks.push(tokio::spawn(async move {
            let pad = "x".repeat(256 - 12);
            loop {
                let first = next.fetch_add(100, Ordering::Relaxed);
                if first >= total {
                    break;
                }
                let last = (first + 100).min(total);
                let mut body = String::with_capacity(30_000);
                body.push_str("{\"messages\":[");
                for i in first..last {
                    if i > first {
                        body.push(',');
                    }
                    body.push_str(&format!("{{\"body\":\"{i:012}{pad}\"}}"));
                }
                body.push_str("]}");
                let r = http.post(&url).body(body).send().await.expect("send");
                assert!(r.status().is_success(), "send: {}", r.status());
            }
        }));
    }
    for t in tasks {
        t.await.expect("publisher");
    }
    t0.elapsed()
}

/// Drains the queue; answers the time, messages seen and the sum of their
/// numbers (every message exactly once: sum = n(n-1)/2).
async fn drain(http: &reqwest::Client, base: &str, a: &Args) -> (Duration, u64, u128) {
    let seen = Arc::new(AtomicU64::new(0));
    let sum = Arc::new(std::sync::Mutex::new(0u128));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..a.consumers {
        let (http, base, seen, sum, total) = (
            http.clone(),
            base.to_string(),
            seen.clone(),
            sum.clone(),
            a.messages,
        );
        tasks.push(tokio::spawn(async move {
            let mut empty = 0;
            while seen.load(Ordering::Relaxed) < total && empty < 3 {
                let r: serde_json::Value = http
                    .post(format!("{base}/v1/queues/backlog/receive"))
                    .body(r#"{"max":100,"wait_seconds":1}"#)
                    .send()
                    .await
                    .expect("receive")
                    .json()
                    .await
                    .expect("receive answer");
                let msgs = r["messages"].as_array().cloned().unwrap_or_default();
                if msgs.is_empty() {
                    empty += 1;
                    continue;
                }
                empty = 0;
                let mut receipts = Vec::with_capacity(msgs.len());
                let mut s = 0u128;
                for m in &msgs {
                    let body = m["body"].as_str().unwrap_or("");
                    s += body
                        .get(..12)
                        .and_then(|d| d.parse::<u128>().ok())
                        .unwrap_or(0);
                    receipts.push(m["receipt"].clone());
                }
                let ack = serde_json::json!({ "receipts": receipts });
                let r = http
                    .post(format!("{base}/v1/queues/backlog/ack"))
                    .body(ack.to_string())
                    .send()
                    .await
                    .expect("ack");
                assert!(r.status().is_success());
                seen.fetch_add(msgs.len() as u64, Ordering::Relaxed);
                *sum.lock().unwrap_or_else(|p| p.into_inner()) += s;
            }
        }));
    }
    for t in tasks {
        t.await.expect("consumer");
    }
    let s = *sum.lock().unwrap_or_else(|p| p.into_inner());
    (t0.elapsed(), seen.load(Ordering::Relaxed), s)
}

async fn ready(http: &reqwest::Client, base: &str) {
    loop {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let http = reqwest::Client::new();
    rt.block_on(async {
        let mut s = start(dir.path());
        let base = format!("http://{}", s.addr);
        ready(&http, &base).await;
        let idle = rss(s.child.id());
        http.put(format!("{base}/v1/queues/backlog"))
            .body(r#"{"retention_seconds":1209600}"#)
            .send()
            .await
            .expect("create queue");
        let probe = RssProbe::start(s.child.id());
        let took = fill(&http, &base, &a).await;
        // Let the pager and a checkpoint catch up, as a real backlog would.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let fill_peak = probe.peak();
        let settled = rss(s.child.id());
        drop(probe);
        let disk = du(dir.path());
        println!(
            "fill:    {} messages in {:.1} s = {:.0} msg/s; server RSS idle {}, peak {}, settled {}; data dir {}",
            a.messages,
            took.as_secs_f64(),
            a.messages as f64 / took.as_secs_f64(),
            mib(idle),
            mib(fill_peak),
            mib(settled),
            mib(disk)
        );

        // A crash, then recovery of the whole backlog.
        s.child.kill().expect("kill -9");
        let _ = s.child.wait();
        let t0 = Instant::now();
        let mut s = start(dir.path());
        let base = format!("http://{}", s.addr);
        ready(&http, &base).await;
        let restart = t0.elapsed();
        println!(
            "restart: ready in {:.2} s after kill -9 with {} messages stored; RSS {}",
            restart.as_secs_f64(),
            a.messages,
            mib(rss(s.child.id()))
        );

        let probe = RssProbe::start(s.child.id());
        let (took, seen, sum) = drain(&http, &base, &a).await;
        let n = u128::from(a.messages);
        println!(
            "drain:   {} messages in {:.1} s = {:.0} msg/s; server RSS peak {}; every message once: {}",
            seen,
            took.as_secs_f64(),
            seen as f64 / took.as_secs_f64(),
            mib(probe.peak()),
            seen == a.messages && sum == n * (n - 1) / 2
        );
        drop(probe);
        let _ = s.child.kill();
        let _ = s.child.wait();
    });
}

fn du(p: &std::path::Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}
