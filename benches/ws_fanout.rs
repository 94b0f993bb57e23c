//! WebSocket scale benchmark (not a test): K topic subscribers held by one
//! server process, the server's memory per idle connection, fan-out latency
//! of a publish to all K, and one queue drained by a single WebSocket push
//! consumer versus the HTTP batch path in the same run.
//!
//! `cargo bench --bench ws_fanout -- [--subscribers 10000] [--publishes 20] [--drain 100000]`
//! The server is the real binary in its own process (`--memory`), so its RSS
//! (from /proc) is its own; client and server share this machine's cores.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Args {
    subscribers: usize,
    publishes: usize,
    drain: usize,
}

fn args() -> Args {
    let mut a = Args {
        subscribers: 10_000,
        publishes: 20,
        drain: 100_000,
    };
    let v: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < v.len() {
        let next = v.get(i + 1).and_then(|s| s.parse().ok());
        match v[i].as_str() {
            "--subscribers" => a.subscribers = next.unwrap_or(a.subscribers),
            "--publishes" => a.publishes = next.unwrap_or(a.publishes),
            "--drain" => a.drain = next.unwrap_or(a.drain),
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// CPU seconds (user + system) a process has used, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn own_cpu_seconds() -> f64 {
    cpu_seconds(std::process::id())
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// The server, with room for `subscribers` connections besides the bench's
/// own (the default `--max-connections` is 10 000).
async fn start_server(subscribers: usize) -> (Child, String) {
    let max_connections = (subscribers + 1_000).max(10_000).to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pubq"))
        .args([
            "serve",
            "--memory",
            "--listen",
            "127.0.0.1:0",
            "--idle-timeout",
            "10m",
            "--max-connections",
            &max_connections,
        ])
        .env("PUBQ_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start pubq");
    let out = child.stdout.take().expect("stdout piped");
    let mut lines = BufReader::new(out).lines();
    while let Ok(Some(l)) = lines.next_line().await {
        if let Some(url) = l.strip_prefix("listening on ") {
            return (child, url.trim().to_string());
        }
    }
    panic!("server did not say where it listens");
}

async fn http(
    c: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: serde_json::Value,
) -> serde_json::Value {
    let r = c
        .request(method, url)
        .json(&body)
        .send()
        .await
        .expect("request");
    r.json().await.unwrap_or(serde_json::Value::Null)
}

async fn connect(ws_url: &str) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(ws_url)
        .await
        .expect("ws connect");
    ws
}

async fn next_json(ws: &mut Ws) -> Option<serde_json::Value> {
    while let Some(m) = ws.next().await {
        match m.ok()? {
            Message::Text(t) => return serde_json::from_str(t.as_str()).ok(),
            Message::Close(_) => return None,
            _ => {}
        }
    }
    None
}

fn pct(v: &mut [u64], p: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

#[tokio::main]
async fn main() {
    let a = args();
    let (child, base) = start_server(a.subscribers).await;
    let pid = child.id().expect("pid");
    let ws_url = format!("{}/v1/ws", base.replace("http://", "ws://"));
    let c = reqwest::Client::new();
    http(
        &c,
        reqwest::Method::PUT,
        format!("{base}/v1/topics/fan"),
        serde_json::json!({}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss0 = rss_kib(pid);

    // 1. K idle topic subscribers.
    let t0 = Instant::now();
    let latencies = Arc::new(Mutex::new(Vec::<u64>::new()));
    let mut tasks = Vec::new();
    let sem = Arc::new(tokio::sync::Semaphore::new(200));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    for i in 0..a.subscribers {
        let permit = sem.clone().acquire_owned().await.expect("semaphore");
        let url = ws_url.clone();
        let lat = latencies.clone();
        let ready = ready_tx.clone();
        let expect = a.publishes;
        tasks.push(tokio::spawn(async move {
            let mut ws = connect(&url).await;
            let sub = serde_json::json!({"op": "subscribe", "sub": format!("s{i}"), "topic": "fan", "auto_ack": true, "prefetch": 10});
            ws.send(Message::Text(sub.to_string().into())).await.expect("send");
            let ok = next_json(&mut ws).await;
            assert_eq!(ok.as_ref().and_then(|v| v["op"].as_str()), Some("ok"), "{ok:?}");
            drop(permit);
            let _ = ready.send(());
            let mut got = 0;
            let mut mine = Vec::with_capacity(expect);
            // Read only what the measurement needs: the client shares the
            // machine's two cores with the server it measures.
            #[derive(serde::Deserialize)]
            struct Frame<'a> {
                #[serde(borrow)]
                op: std::borrow::Cow<'a, str>,
                #[serde(borrow, default)]
                body: Option<std::borrow::Cow<'a, str>>,
            }
            while got < expect {
                let Some(Ok(m)) = ws.next().await else { break };
                let Message::Text(t) = m else { continue };
                let Ok(f) = serde_json::from_str::<Frame<'_>>(t.as_str()) else {
                    continue;
                };
                if f.op == "message" {
                    let sent: u64 = f.body.and_then(|b| b.parse().ok()).unwrap_or(0);
                    mine.push(now_us().saturating_sub(sent));
                    got += 1;
                }
            }
            lat.lock().await.extend(mine);
            ws
        }));
    }
    for _ in 0..a.subscribers {
        ready_rx.recv().await;
    }
    let connect_s = t0.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss1 = rss_kib(pid);
    let per_conn = (rss1.saturating_sub(rss0)) as f64 * 1024.0 / a.subscribers as f64;

    // 2. Fan-out latency: each publish goes to all K.
    let (server_cpu0, client_cpu0) = (cpu_seconds(pid), own_cpu_seconds());
    for _ in 0..a.publishes {
        let body = now_us().to_string();
        http(
            &c,
            reqwest::Method::POST,
            format!("{base}/v1/topics/fan/publish"),
            serde_json::json!({"body": body}),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut conns = Vec::new();
    for t in tasks {
        if let Ok(ws) = tokio::time::timeout(Duration::from_secs(30), t).await {
            conns.extend(ws.ok());
        }
    }
    let server_cpu = cpu_seconds(pid) - server_cpu0;
    let client_cpu = own_cpu_seconds() - client_cpu0;
    let mut lat = latencies.lock().await.clone();
    let delivered = lat.len();
    let (p50, p99, max) = (pct(&mut lat, 0.5), pct(&mut lat, 0.99), pct(&mut lat, 1.0));
    drop(conns);

    // 3. One queue: HTTP batch drain vs one WebSocket push consumer.
    let n = a.drain;
    let fill = |q: &'static str| {
        let c = c.clone();
        let base = base.clone();
        async move {
            http(
                &c,
                reqwest::Method::PUT,
                format!("{base}/v1/queues/{q}"),
                serde_json::json!({}),
            )
            .await;
            let body: Vec<_> = (0..100)
                .map(|_| serde_json::json!({"body": "x".repeat(256)}))
                .collect();
            for _ in 0..n / 100 {
                http(
                    &c,
                    reqwest::Method::POST,
                    format!("{base}/v1/queues/{q}/send"),
                    serde_json::json!({"messages": body}),
                )
                .await;
            }
        }
    };
    fill("drain-http").await;
    fill("drain-ws").await;
    let t = Instant::now();
    let mut drained = 0;
    while drained < n {
        let r = http(
            &c,
            reqwest::Method::POST,
            format!("{base}/v1/queues/drain-http/receive"),
            serde_json::json!({"max": 100}),
        )
        .await;
        let msgs = r["messages"].as_array().cloned().unwrap_or_default();
        if msgs.is_empty() {
            break;
        }
        let receipts: Vec<_> = msgs.iter().map(|m| m["receipt"].clone()).collect();
        drained += msgs.len();
        http(
            &c,
            reqwest::Method::POST,
            format!("{base}/v1/queues/drain-http/ack"),
            serde_json::json!({"receipts": receipts}),
        )
        .await;
    }
    let http_rate = drained as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut ws = connect(&ws_url).await;
    ws.send(Message::Text(
        serde_json::json!({"op": "subscribe", "sub": "d", "queue": "drain-ws", "prefetch": 1000})
            .to_string()
            .into(),
    ))
    .await
    .expect("send");
    let mut pushed = 0;
    let mut batch = Vec::new();
    while pushed < n {
        let Some(f) = next_json(&mut ws).await else {
            break;
        };
        if f["op"] == "message" {
            pushed += 1;
            batch.push(f["receipt"].clone());
            if batch.len() == 100 {
                let ack = serde_json::json!({"op": "ack", "receipts": std::mem::take(&mut batch)});
                ws.send(Message::Text(ack.to_string().into()))
                    .await
                    .expect("ack");
            }
        }
    }
    let ws_rate = pushed as f64 / t.elapsed().as_secs_f64();

    println!("## WebSocket scale (server in its own process, --memory; 2-core machine shared with the client)");
    println!("subscribers held           {}", a.subscribers);
    println!("connect+subscribe time     {connect_s:.2} s");
    println!(
        "server RSS                 {} KiB idle -> {} KiB with subscribers",
        rss0, rss1
    );
    println!(
        "server memory per idle sub {:.1} KiB (target < 16 KiB)",
        per_conn / 1024.0
    );
    println!(
        "fan-out publishes          {} x {} subscribers, delivered {} of {}",
        a.publishes,
        a.subscribers,
        delivered,
        a.publishes * a.subscribers
    );
    println!(
        "fan-out latency            p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (target p99 < 100 ms)",
        p50 as f64 / 1000.0,
        p99 as f64 / 1000.0,
        max as f64 / 1000.0
    );
    println!(
        "fan-out CPU per delivery    server {:.1} us, client {:.1} us",
        server_cpu * 1e6 / delivered.max(1) as f64,
        client_cpu * 1e6 / delivered.max(1) as f64
    );
    println!("one queue, {n} msgs: HTTP batch drain {http_rate:.0} msg/s, WebSocket push {ws_rate:.0} msg/s, ratio ws/http {:.2}", ws_rate / http_rate.max(1.0));
}
