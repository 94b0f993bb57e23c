//! Throughput of the WebSocket push path, and what TLS and authentication
//! cost on it: one queue, filled with N messages beforehand, drained by one
//! WebSocket push consumer (`prefetch` 1000, acks in frames of 100
//! receipts) against the real server in process, once per cell of a matrix,
//! each on a fresh server: plain `ws://`, `wss://` with a self-signed
//! certificate the client trusts, an API key in the upgrade's
//! `Authorization: Bearer`, an HS256 JWT in `?token=`, and TLS with each
//! token. Prints messages per second, the CPU each side used per message,
//! and every cell's ratio to plain; checks that every message was pushed
//! once and acked.
//!
//! A warm-up cell (plain, not counted) comes first: the first server of the
//! process pays for growing its heap. Then the matrix runs `--rounds` times
//! (default 3), and each cell's figures are the medians over its rounds.
//!
//! Not criterion: a plain `main`. `cargo bench --bench ws_push [-- --messages
//! N --rounds R --no-tls --no-auth]`. Without `--bench` (as `cargo test
//! --benches` runs it) it does a small smoke run: one round, no warm-up.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::Connector;

use pubq::config::{NetConfig, ServerConfig};
use pubq::hub::NewMessage;
use pubq::model::QueueName;

#[path = "support/cpu.rs"]
mod cpu;
#[path = "support/security.rs"]
mod security;

use cpu::{Cores, CpuSample, SERVER_THREAD};
use security::{AuthKind, Cell, Security};

/// The queue drained.
const QUEUE: &str = "push";
/// Bytes in every message body.
const BODY_BYTES: usize = 256;
/// Unacked messages the server may push ahead.
const PREFETCH: usize = 1000;
/// Receipts per `ack` frame.
const ACK_BATCH: usize = 100;
/// A cell that takes longer than this has failed.
const CELL_LIMIT: Duration = Duration::from_secs(120);

struct Args {
    messages: usize,
    rounds: usize,
    warmup: bool,
    tls: bool,
    auth: bool,
}

impl Args {
    fn parse() -> Self {
        let argv: Vec<String> = std::env::args().skip(1).collect();
        let bench = argv.iter().any(|a| a == "--bench");
        let mut args = Args {
            messages: if bench { 500_000 } else { 2_000 },
            rounds: if bench { 3 } else { 1 },
            warmup: bench,
            tls: true,
            auth: true,
        };
        let mut it = argv.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--messages" => {
                    args.messages = it
                        .next()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or_else(|| panic!("--messages needs a number"));
                }
                "--rounds" => {
                    args.rounds = it
                        .next()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or_else(|| panic!("--rounds needs a number"));
                }
                "--no-tls" => args.tls = false,
                "--no-auth" => args.auth = false,
                _ => {}
            }
        }
        args.messages = args.messages.max(ACK_BATCH);
        args.rounds = args.rounds.max(1);
        args
    }
}

/// What one cell measured.
struct CellResult {
    cell: Cell,
    secs: f64,
    pushed: usize,
    acked: usize,
    duplicates: usize,
    cores: Option<Cores>,
    /// Server stats after the drain: (visible, in flight, acked).
    stats: (u64, u64, u64),
}

impl CellResult {
    fn rate(&self) -> f64 {
        self.acked as f64 / self.secs
    }

    fn clean(&self, n: usize) -> bool {
        self.pushed == n
            && self.acked == n
            && self.duplicates == 0
            && self.stats == (0, 0, n as u64)
    }
}

fn main() {
    let args = Args::parse();
    // As in `http`: the server's runtime has named threads, so its CPU time
    // can be told from the client's.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name(SERVER_THREAD)
        .enable_all()
        .build()
        .expect("a multi-thread runtime builds");
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name("bench-client")
        .enable_all()
        .build()
        .expect("a multi-thread runtime builds");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "pubq ws_push bench: {cores} cores, {} messages of {BODY_BYTES} bytes per cell, \
         one push consumer (prefetch {PREFETCH}, acks of {ACK_BATCH}), memory storage",
        args.messages
    );
    let cells = security::cells(args.tls, args.auth);
    let mut clean = true;
    if args.warmup {
        let sec = Security::new(Cell::PLAIN);
        let r = client_rt.block_on(run_cell(&sec, args.messages, server_rt.handle().clone()));
        clean &= cell_line("warm-up", &r, args.messages);
    }
    // Round after round of every cell, so that drift in the machine's load
    // spreads over all of them.
    let mut runs: Vec<Vec<CellResult>> = cells.iter().map(|_| Vec::new()).collect();
    for round in 1..=args.rounds {
        for (i, cell) in cells.iter().enumerate() {
            let sec = Security::new(*cell);
            let r = client_rt.block_on(run_cell(&sec, args.messages, server_rt.handle().clone()));
            clean &= cell_line(&format!("round {round}"), &r, args.messages);
            runs[i].push(r);
        }
    }
    server_rt.shutdown_timeout(Duration::from_secs(1));
    let medians: Vec<Median> = cells
        .iter()
        .zip(&runs)
        .map(|(c, r)| Median::of(*c, r))
        .collect();
    report(&medians, args.rounds);
    println!(
        "integrity: {}",
        if clean {
            "OK: every message pushed once and acked, in every run"
        } else {
            "FAILED"
        }
    );
    if !clean {
        std::process::exit(1);
    }
}

/// One line per run; whether its integrity check passed.
fn cell_line(what: &str, r: &CellResult, n: usize) -> bool {
    let clean = r.clean(n);
    println!(
        "{what:<8} {:<12} {:>9.0} msg/s in {:.2} s; pushed {}, acked {}, duplicates {}; \
         server: visible {}, in flight {}, acked {}: {}",
        r.cell.label(),
        r.rate(),
        r.secs,
        r.pushed,
        r.acked,
        r.duplicates,
        r.stats.0,
        r.stats.1,
        r.stats.2,
        if clean { "OK" } else { "FAILED" }
    );
    clean
}

/// A cell's figures: the median of each over its rounds.
struct Median {
    cell: Cell,
    rate: f64,
    server_cores: Option<f64>,
    client_cores: Option<f64>,
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

impl Median {
    fn of(cell: Cell, runs: &[CellResult]) -> Self {
        let cores = |f: &dyn Fn(&Cores) -> f64| {
            median(
                runs.iter()
                    .filter_map(|r| r.cores.as_ref().map(f))
                    .collect(),
            )
        };
        Median {
            cell,
            rate: median(runs.iter().map(CellResult::rate).collect()).unwrap_or(0.0),
            server_cores: cores(&|c| c.server),
            client_cores: cores(&|c| c.client),
        }
    }

    /// Messages per second of the server's CPU time.
    fn per_server_cpu(&self) -> Option<f64> {
        let c = self.server_cores?;
        (c > 0.0).then(|| self.rate / c)
    }

    /// Messages per second of the whole process's CPU time.
    fn per_process_cpu(&self) -> Option<f64> {
        let p = self.server_cores? + self.client_cores?;
        (p > 0.0).then(|| self.rate / p)
    }
}

/// The frames the consumer reads: only what it needs.
#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(borrow)]
    op: &'a str,
    #[serde(borrow, default)]
    id: Option<&'a str>,
    #[serde(default)]
    receipt: Option<String>,
    #[serde(default)]
    results: Option<Vec<AckResult>>,
}

#[derive(Deserialize)]
struct AckResult {
    #[serde(default)]
    ok: Option<bool>,
}

/// One cell: a fresh server, a filled queue, one push consumer until every
/// message is acked.
async fn run_cell(sec: &Security, n: usize, server_rt: tokio::runtime::Handle) -> CellResult {
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().expect("constant address parses"),
        net: NetConfig {
            tls: sec.tls.clone(),
            ..NetConfig::default()
        },
        auth: sec.auth.clone(),
        ..ServerConfig::default()
    };
    let server = server_rt
        .spawn(pubq::server::start(config))
        .await
        .expect("server start-up does not panic")
        .expect("the server starts on an ephemeral port");
    let base = server.url();
    let http = sec.http_client();
    let put = http
        .put(format!("{base}/v1/queues/{QUEUE}"))
        .body("{}")
        .send()
        .await
        .expect("create the queue");
    assert!(put.status().is_success(), "PUT queue: {}", put.status());

    // Filled through the hub, in process: the fill is not what is measured.
    let queue = QueueName::new(QUEUE).expect("a valid name");
    let body: String = "pubq push bench "
        .chars()
        .cycle()
        .take(BODY_BYTES)
        .collect();
    let mut left = n;
    while left > 0 {
        let batch = left.min(100);
        let messages = (0..batch)
            .map(|_| NewMessage {
                body: body.clone(),
                body_len: body.len(),
                ..NewMessage::default()
            })
            .collect();
        let results = server.hub.send(&queue, messages).await.expect("fill");
        assert!(results.iter().all(|r| r.is_ok()), "fill refused");
        left -= batch;
    }

    // The connection: `wss://` with TLS; an API key in the header, a JWT in
    // the query (both ways the server takes a token at the upgrade).
    let scheme = if sec.cell.tls { "wss" } else { "ws" };
    let query = match (sec.cell.auth, &sec.token) {
        (Some(AuthKind::Jwt), Some(t)) => format!("?token={t}"),
        _ => String::new(),
    };
    let url = format!("{scheme}://{}/v1/ws{query}", server.addr);
    let mut request = url.as_str().into_client_request().expect("a WebSocket URL");
    if let (Some(AuthKind::ApiKey), Some(t)) = (sec.cell.auth, &sec.token) {
        let value = format!("Bearer {t}").parse().expect("a header value");
        request.headers_mut().insert("authorization", value);
    }
    let connector = sec.rustls_client().map(Connector::Rustls);

    let cpu0 = CpuSample::read();
    let start = Instant::now();
    let (mut ws, _) =
        tokio_tungstenite::connect_async_tls_with_config(request, None, true, connector)
            .await
            .expect("WebSocket connect");
    let subscribe =
        serde_json::json!({"op": "subscribe", "sub": "d", "queue": QUEUE, "prefetch": PREFETCH});
    ws.send(Message::Text(subscribe.to_string().into()))
        .await
        .expect("send subscribe");
    let mut seen: HashSet<String> = HashSet::with_capacity(n);
    let (mut pushed, mut acked, mut duplicates) = (0usize, 0usize, 0usize);
    let mut receipts: Vec<String> = Vec::with_capacity(ACK_BATCH);
    let drained = tokio::time::timeout(CELL_LIMIT, async {
        while acked < n {
            let Some(Ok(m)) = ws.next().await else {
                eprintln!("error: the connection ended after {pushed} pushes");
                return;
            };
            let Message::Text(t) = m else { continue };
            let f: Frame<'_> = match serde_json::from_str(t.as_str()) {
                Ok(f) => f,
                Err(e) => {
                    eprintln!("error: a frame is not the contract's JSON: {e}");
                    continue;
                }
            };
            match f.op {
                "message" => {
                    pushed += 1;
                    if !seen.insert(f.id.unwrap_or_default().to_string()) {
                        duplicates += 1;
                    }
                    receipts.extend(f.receipt);
                    if receipts.len() == ACK_BATCH || pushed == n {
                        let ack = serde_json::json!({"op": "ack", "receipts": receipts});
                        receipts.clear();
                        ws.send(Message::Text(ack.to_string().into()))
                            .await
                            .expect("send ack");
                    }
                }
                "ok" => {
                    if let Some(results) = f.results {
                        acked += results.iter().filter(|r| r.ok == Some(true)).count();
                    }
                }
                "error" => eprintln!("error frame: {t}"),
                _ => {}
            }
        }
    })
    .await;
    let secs = start.elapsed().as_secs_f64();
    let cpu1 = CpuSample::read();
    if drained.is_err() {
        eprintln!("error: the drain did not finish in {CELL_LIMIT:?}");
    }
    let _ = ws.close(None).await;

    let describe: serde_json::Value = http
        .get(format!("{base}/v1/queues/{QUEUE}"))
        .send()
        .await
        .expect("describe the queue")
        .json()
        .await
        .unwrap_or_default();
    let stat = |k: &str| describe["stats"][k].as_u64().unwrap_or(u64::MAX);
    let stats = (stat("visible"), stat("in_flight"), stat("acked"));
    server_rt
        .spawn(server.shutdown())
        .await
        .expect("server shutdown does not panic")
        .expect("the server shuts down cleanly");
    CellResult {
        cell: sec.cell,
        secs,
        pushed,
        acked,
        duplicates,
        cores: Cores::between(cpu0, cpu1),
        stats,
    }
}

/// Each cell's figures (medians over `rounds`) and their ratio to plain
/// (the first cell).
fn report(results: &[Median], rounds: usize) {
    println!();
    println!("medians over {rounds} round(s):");
    print!("{:<34}", "");
    for r in results {
        print!(" {:>13}", r.cell.label());
    }
    println!();
    let plain = &results[0];
    let line = |name: &str, f: &dyn Fn(&Median) -> Option<f64>, digits: usize, ratio: bool| {
        print!("{name:<34}");
        for r in results {
            let v = f(r).map_or("n/a".to_string(), |v| format!("{v:.digits$}"));
            print!(" {v:>13}");
        }
        println!();
        if ratio {
            print!("{:<34}", "  / plain");
            for r in results {
                let v = match (f(r), f(plain)) {
                    (Some(v), Some(p)) if p > 0.0 => format!("{:.2}", v / p),
                    _ => "n/a".to_string(),
                };
                print!(" {v:>13}");
            }
            println!();
        }
    };
    line("pushed and acked msg/s", &|r| Some(r.rate), 0, true);
    line(
        "server CPU per message (us)",
        &|r| r.server_cores.map(|c| c * 1e6 / r.rate),
        2,
        true,
    );
    line("server cores busy", &|r| r.server_cores, 2, false);
    line("client cores busy", &|r| r.client_cores, 2, false);
    line(
        "msgs per server CPU-second",
        &|r| r.per_server_cpu(),
        0,
        true,
    );
    line(
        "msgs per CPU-second (both)",
        &|r| r.per_process_cpu(),
        0,
        true,
    );
    for r in results
        .iter()
        .filter(|r| !r.cell.tls && r.cell.auth.is_some())
    {
        if let Some(us) = Security::new(r.cell).token_check_us() {
            println!(
                "token check per upgrade ({}: authenticate + one grant, CPU time in process): {us:.2} us",
                r.cell.label()
            );
        }
    }
}
