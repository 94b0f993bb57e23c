//! End-to-end throughput of the real server over HTTP/1.1 on loopback, client
//! and server in one process: publishers batch-publish to a topic with four
//! subscribed queues while one consumer per queue receives and acks. Prints
//! copies per second, the same workload against a trivial axum server (the
//! transport's ceiling on this machine, measured in the same run) and the
//! ratio, and checks that every copy reached every queue exactly once.
//!
//! Not criterion: a plain `main`. `cargo bench --bench http [-- --seconds N
//! --publishers P --max-backlog M]`. Without `--bench` (as `cargo test
//! --benches` runs it) it does a one-second smoke run.
//!
//! `--tls` and `--auth`: the pubq phase runs once per cell of a matrix,
//! each against a fresh server: plain HTTP, and with `--tls` over HTTPS (a
//! self-signed certificate the clients trust), with `--auth` with an API key
//! and with an HS256 JWT (`Authorization: Bearer` on every request), with
//! both also TLS plus each kind of token. The report adds each cell's ratio
//! to plain; the trivial-server baseline is skipped.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::routing::post;
use axum::Router;
use serde::{Deserialize, Serialize};

use pubq::config::{FsyncPolicy, NetConfig, ServerConfig, StorageConfig};

#[path = "support/cpu.rs"]
mod cpu;
#[path = "support/security.rs"]
mod security;

use cpu::{Cores, CpuSample, SERVER_THREAD};
use security::{Cell, Security};

/// Queues subscribed to the topic (the fan-out).
const QUEUES: usize = 4;
/// Messages per publish, per receive and receipts per ack.
const BATCH: usize = 100;
/// Bytes in every message body.
const BODY_BYTES: usize = 256;
/// How long consumers may take to drain the queues once publishing stops.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// Command line. Unknown arguments (criterion's `--bench`, a filter) are ignored.
#[derive(Debug, Clone)]
struct Args {
    /// Length of each measured phase.
    seconds: u64,
    /// Publisher tasks, each with its own client (one keep-alive connection).
    publishers: usize,
    /// Publishers pause while this many published messages are not yet acked
    /// by every queue, so the run is a closed loop and memory stays bounded.
    max_backlog: u64,
    /// Skip the trivial-server phase.
    no_baseline: bool,
    /// Warm-up before each phase's measured window.
    warmup: Duration,
    /// `None`: memory storage (the default). Otherwise the durable log in a
    /// temporary directory with this fsync policy.
    fsync: Option<FsyncPolicy>,
    /// Also run the pubq phase over TLS and compare (instead of the baseline).
    tls: bool,
    /// Also run it with an API key and with a JWT and compare.
    auth: bool,
    /// With `--tls`/`--auth`: how many times the matrix runs; each cell's
    /// figures are the medians over its rounds.
    rounds: usize,
}

impl Args {
    fn parse() -> Self {
        let argv: Vec<String> = std::env::args().skip(1).collect();
        let bench = argv.iter().any(|a| a == "--bench");
        let mut args = Args {
            // `cargo test --benches` runs bench binaries without `--bench`:
            // then a short smoke run is enough.
            seconds: if bench { 10 } else { 1 },
            publishers: 2,
            max_backlog: 10_000,
            no_baseline: false,
            warmup: if bench {
                Duration::from_secs(1)
            } else {
                Duration::ZERO
            },
            fsync: None,
            tls: false,
            auth: false,
            rounds: 1,
        };
        let mut it = argv.iter();
        while let Some(a) = it.next() {
            let mut num = |name: &str| -> u64 {
                it.next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("{name} needs a number"))
            };
            match a.as_str() {
                "--seconds" => args.seconds = num("--seconds").max(1),
                "--publishers" => args.publishers = num("--publishers").max(1) as usize,
                "--max-backlog" => args.max_backlog = num("--max-backlog").max(BATCH as u64),
                "--no-baseline" => args.no_baseline = true,
                "--tls" => args.tls = true,
                "--auth" => args.auth = true,
                "--rounds" => args.rounds = num("--rounds").max(1) as usize,
                "--fsync" => {
                    args.fsync = Some(match it.next().map(String::as_str) {
                        Some("always") => FsyncPolicy::Always,
                        Some("interval") => FsyncPolicy::Interval,
                        Some("never") => FsyncPolicy::Never,
                        _ => panic!("--fsync needs always, interval or never"),
                    })
                }
                _ => {}
            }
        }
        args
    }
}

/// Which server a phase talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The real pubq server: consumers long-poll and ids are checked.
    Pubq,
    /// The trivial server answers fixed bytes; consumers take a batch only
    /// when publishers have published that much (a queue kept in counters).
    Baseline,
}

/// Counters shared by the tasks of one phase.
#[derive(Default)]
struct Counters {
    /// Messages whose publish was answered 200.
    published: AtomicU64,
    received: [AtomicU64; QUEUES],
    acked: [AtomicU64; QUEUES],
    requests: AtomicU64,
    errors: AtomicU64,
    /// Set at the end of the measured window: publishers stop.
    stop: AtomicBool,
    publishers_done: AtomicUsize,
}

impl Counters {
    fn backlog(&self) -> u64 {
        let acked = self
            .acked
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0);
        self.published.load(Ordering::Relaxed).saturating_sub(acked)
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            at: Instant::now(),
            published: self.published.load(Ordering::Relaxed),
            received: self
                .received
                .iter()
                .map(|r| r.load(Ordering::Relaxed))
                .sum(),
            acked: self.acked.iter().map(|a| a.load(Ordering::Relaxed)).sum(),
            requests: self.requests.load(Ordering::Relaxed),
            cpu: CpuSample::read(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Snapshot {
    at: Instant,
    published: u64,
    received: u64,
    acked: u64,
    requests: u64,
    cpu: Option<CpuSample>,
}

/// Per-second rates over a window.
#[derive(Debug, Clone, Copy)]
struct Rates {
    published: f64,
    delivered: f64,
    acked: f64,
    requests: f64,
    /// `None` where `/proc` is missing.
    cores: Option<Cores>,
}

impl Rates {
    fn between(a: Snapshot, b: Snapshot) -> Self {
        let secs = b.at.duration_since(a.at).as_secs_f64();
        let per = |x: u64, y: u64| (y - x) as f64 / secs;
        Rates {
            published: per(a.published, b.published),
            delivered: per(a.received, b.received),
            acked: per(a.acked, b.acked),
            requests: per(a.requests, b.requests),
            cores: Cores::between(a.cpu, b.cpu),
        }
    }

    /// Acked copies per second of the server's CPU time.
    fn per_server_cpu(&self) -> Option<f64> {
        let c = self.cores?;
        (c.server > 0.0).then(|| self.acked / c.server)
    }

    /// Acked copies per second of the whole process's CPU time.
    fn per_process_cpu(&self) -> Option<f64> {
        let c = self.cores?;
        let p = c.server + c.client;
        (p > 0.0).then(|| self.acked / p)
    }
}

/// Request and answer bytes of the real server, replayed by the trivial one.
#[derive(Debug, Clone, Default)]
struct Captured {
    publish_answer: Bytes,
    receive_answer: Bytes,
    ack_answer: Bytes,
}

/// URLs of one phase.
#[derive(Debug, Clone)]
struct Target {
    mode: Mode,
    /// The server's self-signed certificate (PEM), for `https://` targets.
    ca_pem: Option<String>,
    /// Sent as `Authorization: Bearer` when the server wants a token.
    token: Option<String>,
    publish: String,
    receive: Vec<String>,
    ack: Vec<String>,
}

#[derive(Deserialize)]
struct PublishAnswer<'a> {
    #[serde(borrow)]
    ids: Vec<&'a str>,
}

#[derive(Deserialize)]
struct ReceiveAnswer<'a> {
    #[serde(borrow)]
    messages: Vec<Received<'a>>,
}

#[derive(Deserialize)]
struct Received<'a> {
    id: &'a str,
    receipt: &'a str,
}

#[derive(Deserialize)]
struct AckAnswer {
    results: Vec<AckResult>,
}

#[derive(Deserialize)]
struct AckResult {
    #[serde(default)]
    ok: Option<bool>,
}

#[derive(Serialize)]
struct AckBody<'a> {
    receipts: Vec<&'a str>,
}

/// What a consumer saw: every message id it received (sorted and compared
/// after the measured window, so the check costs the client little), and the
/// ids it could not read.
#[derive(Debug, Default)]
struct Seen {
    ids: Vec<u128>,
    bad_ids: u64,
}

/// Integrity of one queue after the drain.
#[derive(Debug, Default)]
struct Integrity {
    received: u64,
    duplicates: u64,
    lost: u64,
    unknown: u64,
    bad_ids: u64,
}

fn main() {
    let args = Args::parse();
    // Server and client run on runtimes of their own, with named threads, so
    // the CPU time of each can be told apart. Both have a worker per core
    // and share the cores, as a server and its clients on one machine would.
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
    let clean = client_rt.block_on(run(args, server_rt.handle().clone()));
    server_rt.shutdown_timeout(Duration::from_secs(1));
    if !clean {
        std::process::exit(1);
    }
}

/// Runs both phases and prints the report; returns whether the integrity
/// check passed.
async fn run(args: Args, server_rt: tokio::runtime::Handle) -> bool {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "pubq http bench: {cores} cores, {} s per phase (+{} ms warm-up), {} publishers, \
         {QUEUES} queues, batches of {BATCH}, {BODY_BYTES}-byte bodies, max backlog {}, \
         storage {}",
        args.seconds,
        args.warmup.as_millis(),
        args.publishers,
        args.max_backlog,
        match args.fsync {
            None => "memory".to_string(),
            Some(f) => format!("disk (fsync {f:?})"),
        }
    );
    let publish_body = Bytes::from(publish_body());

    // The real server first: its answers become the trivial server's.
    let captured = Arc::new(Mutex::new(Captured::default()));
    let plain = Security::new(Cell::PLAIN);
    let (pubq, stats) = pubq_phase(
        &args,
        &server_rt,
        &plain,
        publish_body.clone(),
        Some(captured.clone()),
    )
    .await;

    if args.tls || args.auth {
        // Round after round of every cell, so that drift in the machine's
        // load spreads over all of them; the first plain phase counts.
        let cells = security::cells(args.tls, args.auth);
        let mut runs: Vec<Vec<Rates>> = vec![Vec::new(); cells.len()];
        let mut clean = phase_line(Cell::PLAIN, 1, &pubq, &stats);
        runs[0].push(pubq.rates);
        for round in 1..=args.rounds {
            for (i, cell) in cells.iter().enumerate() {
                if round == 1 && i == 0 {
                    continue;
                }
                let sec = Security::new(*cell);
                let (r, s) = pubq_phase(&args, &server_rt, &sec, publish_body.clone(), None).await;
                clean &= phase_line(*cell, round, &r, &s);
                runs[i].push(r.rates);
            }
        }
        let medians: Vec<(Cell, Rates)> = cells
            .iter()
            .zip(&runs)
            .map(|(c, r)| (*c, median_rates(r)))
            .collect();
        compare_cells(&medians, args.rounds);
        token_costs(&cells);
        return clean;
    }

    let baseline = if args.no_baseline {
        None
    } else {
        let c = captured.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if c.receive_answer.is_empty() {
            println!("no full receive was captured; skipping the baseline");
            None
        } else {
            Some(baseline_phase(&args, &server_rt, c, publish_body.clone()).await)
        }
    };

    report(&pubq, baseline.as_ref(), &stats)
}

/// Starts a pubq server with the cell's TLS and authentication settings,
/// sets it up, runs one phase against it, reads its queue stats and shuts
/// it down.
async fn pubq_phase(
    args: &Args,
    server_rt: &tokio::runtime::Handle,
    sec: &Security,
    publish_body: Bytes,
    capture: Option<Arc<Mutex<Captured>>>,
) -> (PhaseResult, Vec<(u64, u64, u64)>) {
    // Kept alive until the end of the phase: dropping it deletes the directory.
    let data_dir = args.fsync.map(|_| {
        tempfile::tempdir().expect("a temporary directory for the durable log can be made")
    });
    let storage = match (&data_dir, args.fsync) {
        (Some(dir), Some(fsync)) => StorageConfig::Disk {
            dir: dir.path().to_path_buf(),
            fsync,
            fsync_interval: Duration::from_millis(10),
        },
        _ => StorageConfig::Memory,
    };
    let config = ServerConfig {
        storage,
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
    setup(&base, sec).await;
    let target = Target {
        mode: Mode::Pubq,
        ca_pem: sec.cert_pem.clone(),
        token: sec.token.clone(),
        publish: format!("{base}/v1/topics/bench/publish"),
        receive: (0..QUEUES)
            .map(|i| format!("{base}/v1/queues/q{i}/receive"))
            .collect(),
        ack: (0..QUEUES)
            .map(|i| format!("{base}/v1/queues/q{i}/ack"))
            .collect(),
    };
    let result = phase(args, &target, publish_body, capture).await;
    let stats = queue_stats(&base, sec).await;
    server_rt
        .spawn(server.shutdown())
        .await
        .expect("server shutdown does not panic")
        .expect("the server shuts down cleanly");
    (result, stats)
}

/// One line per phase of the matrix; the full report when its integrity
/// check fails.
fn phase_line(cell: Cell, round: usize, r: &PhaseResult, stats: &[(u64, u64, u64)]) -> bool {
    let clean = integrity_clean(r, stats);
    println!(
        "round {round} {:<12} acked copies/s {:>9.0}, server cores {}, {} messages: integrity {}",
        cell.label(),
        r.rates.acked,
        r.rates
            .cores
            .map_or("n/a".into(), |c| format!("{:.2}", c.server)),
        r.published_total,
        if clean { "OK" } else { "FAILED" }
    );
    if !clean {
        report(r, None, stats);
    }
    clean
}

/// What the server spends on a token per request, measured in process.
fn token_costs(cells: &[Cell]) {
    for cell in cells.iter().filter(|c| !c.tls && c.auth.is_some()) {
        if let Some(us) = Security::new(*cell).token_check_us() {
            println!(
                "token check per request ({}: authenticate + one grant, CPU time in process): {us:.2} us",
                cell.label()
            );
        }
    }
}

/// The median of each figure over a cell's rounds.
fn median_rates(runs: &[Rates]) -> Rates {
    fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    }
    let of = |f: &dyn Fn(&Rates) -> f64| median(runs.iter().map(f).collect());
    let cores: Vec<Cores> = runs.iter().filter_map(|r| r.cores).collect();
    let core = |f: &dyn Fn(&Cores) -> f64| median(cores.iter().map(f).collect());
    Rates {
        published: of(&|r| r.published),
        delivered: of(&|r| r.delivered),
        acked: of(&|r| r.acked),
        requests: of(&|r| r.requests),
        cores: (!cores.is_empty()).then(|| Cores {
            server: core(&|c| c.server),
            client: core(&|c| c.client),
            machine: core(&|c| c.machine),
        }),
    }
}

/// Each cell's figures (medians over `rounds`) and their ratio to plain
/// (the first cell).
fn compare_cells(results: &[(Cell, Rates)], rounds: usize) {
    println!();
    println!("medians over {rounds} round(s):");
    print!("{:<36}", "");
    for (cell, _) in results {
        print!(" {:>13}", cell.label());
    }
    println!();
    let plain = &results[0].1;
    let line = |name: &str, f: &dyn Fn(&Rates) -> Option<f64>, digits: usize, ratio: bool| {
        print!("{name:<36}");
        for (_, r) in results {
            let v = f(r).map_or("n/a".to_string(), |v| format!("{v:.digits$}"));
            print!(" {v:>13}");
        }
        println!();
        if ratio {
            print!("{:<36}", "  / plain");
            for (_, r) in results {
                let v = match (f(r), f(plain)) {
                    (Some(v), Some(p)) if p > 0.0 => format!("{:.2}", v / p),
                    _ => "n/a".to_string(),
                };
                print!(" {v:>13}");
            }
            println!();
        }
    };
    line("acked copies/s", &|r| Some(r.acked), 0, true);
    line("HTTP requests/s", &|r| Some(r.requests), 0, false);
    line(
        "server CPU per request (us)",
        &|r| r.cores.map(|c| c.server * 1e6 / r.requests),
        1,
        true,
    );
    line(
        "server cores busy",
        &|r| r.cores.map(|c| c.server),
        2,
        false,
    );
    line(
        "client cores busy",
        &|r| r.cores.map(|c| c.client),
        2,
        false,
    );
    line(
        "acked copies per server CPU-second",
        &|r| r.per_server_cpu(),
        0,
        true,
    );
    line(
        "acked copies per CPU-second (both)",
        &|r| r.per_process_cpu(),
        0,
        true,
    );
}

/// Creates the topic, the queues and the subscriptions.
async fn setup(base: &str, sec: &Security) {
    let client = sec.http_client();
    let put = |url: String| {
        let client = client.clone();
        async move {
            let r = client
                .put(&url)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap_or_else(|e| panic!("PUT {url}: {e}"));
            assert!(r.status().is_success(), "PUT {url}: {}", r.status());
        }
    };
    put(format!("{base}/v1/topics/bench")).await;
    for i in 0..QUEUES {
        put(format!("{base}/v1/queues/q{i}")).await;
        put(format!("{base}/v1/topics/bench/subscriptions/q{i}")).await;
    }
}

/// `{"messages": [{"body": "..."}, ...]}` with [`BATCH`] messages.
fn publish_body() -> Vec<u8> {
    let text: String = "pubq bench message "
        .chars()
        .cycle()
        .take(BODY_BYTES)
        .collect();
    #[derive(Serialize)]
    struct Msg<'a> {
        body: &'a str,
    }
    #[derive(Serialize)]
    struct Body<'a> {
        messages: Vec<Msg<'a>>,
    }
    let body = Body {
        messages: (0..BATCH).map(|_| Msg { body: &text }).collect(),
    };
    serde_json::to_vec(&body).expect("a plain struct serialises")
}

/// What one phase measured.
struct PhaseResult {
    mode: Mode,
    rates: Rates,
    /// Per queue, after the drain (pubq mode only).
    integrity: Vec<Integrity>,
    published_total: u64,
    errors: u64,
    drain: Duration,
    drained: bool,
}

/// Runs publishers and consumers for warm-up plus the measured window, then
/// lets consumers drain (pubq mode) and checks ids.
async fn phase(
    args: &Args,
    target: &Target,
    publish_body: Bytes,
    capture: Option<Arc<Mutex<Captured>>>,
) -> PhaseResult {
    let counters = Arc::new(Counters::default());
    let mut publishers = Vec::new();
    for _ in 0..args.publishers {
        publishers.push(tokio::spawn(publisher(
            target.clone(),
            counters.clone(),
            publish_body.clone(),
            args.max_backlog,
            capture.clone(),
        )));
    }
    let mut consumers = Vec::new();
    for q in 0..QUEUES {
        consumers.push(tokio::spawn(consumer(
            target.clone(),
            q,
            counters.clone(),
            args.publishers,
            capture.clone(),
        )));
    }
    tokio::time::sleep(args.warmup).await;
    let start = counters.snapshot();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let end = counters.snapshot();
    counters.stop.store(true, Ordering::Release);
    let rates = Rates::between(start, end);

    let mut published: Vec<u128> = Vec::new();
    let mut bad_published = 0u64;
    for p in publishers {
        let (ids, bad) = p.await.expect("a publisher task does not panic");
        published.extend(ids);
        bad_published += bad;
    }
    published.sort_unstable();
    let drain_start = Instant::now();
    let mut seen = Vec::new();
    let mut drained = true;
    for c in consumers {
        let left = DRAIN_LIMIT.saturating_sub(drain_start.elapsed());
        match tokio::time::timeout(left, c).await {
            Ok(r) => seen.push(r.expect("a consumer task does not panic")),
            Err(_) => {
                drained = false;
                seen.push(Seen::default());
            }
        }
    }
    let drain = drain_start.elapsed();
    counters.errors.fetch_add(bad_published, Ordering::Relaxed);
    let integrity = if target.mode == Mode::Pubq {
        seen.into_iter().map(|s| check(&published, s)).collect()
    } else {
        Vec::new()
    };
    PhaseResult {
        mode: target.mode,
        rates,
        integrity,
        published_total: counters.published.load(Ordering::Relaxed),
        errors: counters.errors.load(Ordering::Relaxed),
        drain,
        drained,
    }
}

/// Compares one queue's received ids with the published ones (both sorted).
fn check(published: &[u128], mut seen: Seen) -> Integrity {
    seen.ids.sort_unstable();
    let mut i = Integrity {
        received: seen.ids.len() as u64,
        bad_ids: seen.bad_ids,
        ..Integrity::default()
    };
    let (mut p, mut r) = (0, 0);
    while p < published.len() || r < seen.ids.len() {
        match (published.get(p), seen.ids.get(r)) {
            (Some(a), Some(b)) if a == b => {
                // Any further copies of the same id are duplicates.
                r += 1;
                while seen.ids.get(r) == Some(b) {
                    i.duplicates += 1;
                    r += 1;
                }
                p += 1;
            }
            (Some(a), Some(b)) if a < b => {
                i.lost += 1;
                p += 1;
            }
            (Some(_), None) => {
                i.lost += 1;
                p += 1;
            }
            _ => {
                i.unknown += 1;
                r += 1;
            }
        }
    }
    i
}

/// One client per task: one keep-alive connection each.
fn client(target: &Target) -> reqwest::Client {
    security::http_client(target.ca_pem.as_deref(), target.token.as_deref())
}

/// Publishes batches until told to stop. Returns the ids it was given and the
/// number of ids that did not parse.
async fn publisher(
    target: Target,
    counters: Arc<Counters>,
    body: Bytes,
    max_backlog: u64,
    capture: Option<Arc<Mutex<Captured>>>,
) -> (Vec<u128>, u64) {
    let client = client(&target);
    let mut ids = Vec::new();
    let mut bad = 0u64;
    let mut captured = capture.is_none();
    while !counters.stop.load(Ordering::Acquire) {
        if counters.backlog() > max_backlog {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        let r = client
            .post(&target.publish)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await;
        counters.requests.fetch_add(1, Ordering::Relaxed);
        let bytes = match r {
            Ok(r) if r.status().is_success() => r.bytes().await,
            Ok(r) => {
                fail(&counters, format!("publish answered {}", r.status()));
                continue;
            }
            Err(e) => {
                fail(&counters, format!("publish failed: {e}"));
                continue;
            }
        };
        let Ok(bytes) = bytes else {
            fail(&counters, "publish answer unreadable".into());
            continue;
        };
        let Ok(answer) = serde_json::from_slice::<PublishAnswer>(&bytes) else {
            fail(
                &counters,
                "publish answer is not the contract's JSON".into(),
            );
            continue;
        };
        if answer.ids.len() != BATCH {
            fail(
                &counters,
                format!("publish answered {} ids for {BATCH}", answer.ids.len()),
            );
        }
        if target.mode == Mode::Pubq {
            for id in &answer.ids {
                match u128::from_str_radix(id, 16) {
                    Ok(v) => ids.push(v),
                    Err(_) => bad += 1,
                }
            }
        }
        counters
            .published
            .fetch_add(answer.ids.len() as u64, Ordering::Relaxed);
        if !captured {
            if let Some(c) = &capture {
                c.lock().unwrap_or_else(|p| p.into_inner()).publish_answer = bytes.clone();
                captured = true;
            }
        }
    }
    counters.publishers_done.fetch_add(1, Ordering::AcqRel);
    (ids, bad)
}

/// Receives and acks one queue. In pubq mode it stops once publishers are
/// done and a long poll comes back empty (the queue is drained); in baseline
/// mode it stops with the publishers.
async fn consumer(
    target: Target,
    q: usize,
    counters: Arc<Counters>,
    publishers: usize,
    capture: Option<Arc<Mutex<Captured>>>,
) -> Seen {
    let client = client(&target);
    let receive_body = Bytes::from(format!(r#"{{"max":{BATCH},"wait_seconds":1}}"#));
    let mut seen = Seen::default();
    let mut captured = capture.is_none();
    loop {
        let publishers_done = counters.publishers_done.load(Ordering::Acquire) == publishers;
        if target.mode == Mode::Baseline {
            if counters.stop.load(Ordering::Acquire) {
                break;
            }
            // A queue kept in counters: take a batch only once it is published.
            let taken = counters.received[q].load(Ordering::Relaxed);
            if counters.published.load(Ordering::Relaxed) < taken + BATCH as u64 {
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
        }
        let r = client
            .post(&target.receive[q])
            .header("content-type", "application/json")
            .body(receive_body.clone())
            .send()
            .await;
        counters.requests.fetch_add(1, Ordering::Relaxed);
        let bytes = match r {
            Ok(r) if r.status().is_success() => r.bytes().await,
            Ok(r) => {
                fail(&counters, format!("receive answered {}", r.status()));
                continue;
            }
            Err(e) => {
                fail(&counters, format!("receive failed: {e}"));
                continue;
            }
        };
        let Ok(bytes) = bytes else {
            fail(&counters, "receive answer unreadable".into());
            continue;
        };
        let Ok(answer) = serde_json::from_slice::<ReceiveAnswer>(&bytes) else {
            fail(
                &counters,
                "receive answer is not the contract's JSON".into(),
            );
            continue;
        };
        if answer.messages.is_empty() {
            if publishers_done {
                break;
            }
            continue;
        }
        if !captured && answer.messages.len() == BATCH {
            if let Some(c) = &capture {
                c.lock().unwrap_or_else(|p| p.into_inner()).receive_answer = bytes.clone();
            }
        }
        counters.received[q].fetch_add(answer.messages.len() as u64, Ordering::Relaxed);
        if target.mode == Mode::Pubq {
            for m in &answer.messages {
                match u128::from_str_radix(m.id, 16) {
                    Ok(v) => seen.ids.push(v),
                    Err(_) => seen.bad_ids += 1,
                }
            }
        }
        let ack = AckBody {
            receipts: answer.messages.iter().map(|m| m.receipt).collect(),
        };
        let ack = serde_json::to_vec(&ack).expect("a list of strings serialises");
        let r = client
            .post(&target.ack[q])
            .header("content-type", "application/json")
            .body(ack)
            .send()
            .await;
        counters.requests.fetch_add(1, Ordering::Relaxed);
        let bytes = match r {
            Ok(r) if r.status().is_success() => r.bytes().await,
            Ok(r) => {
                fail(&counters, format!("ack answered {}", r.status()));
                continue;
            }
            Err(e) => {
                fail(&counters, format!("ack failed: {e}"));
                continue;
            }
        };
        let Ok(bytes) = bytes else {
            fail(&counters, "ack answer unreadable".into());
            continue;
        };
        let Ok(answer) = serde_json::from_slice::<AckAnswer>(&bytes) else {
            fail(&counters, "ack answer is not the contract's JSON".into());
            continue;
        };
        let ok = answer.results.iter().filter(|r| r.ok == Some(true)).count() as u64;
        let refused = answer.results.len() as u64 - ok;
        if refused > 0 {
            fail(&counters, format!("{refused} receipts were refused"));
        }
        counters.acked[q].fetch_add(ok, Ordering::Relaxed);
        if !captured && answer.results.len() == BATCH {
            if let Some(c) = &capture {
                let mut c = c.lock().unwrap_or_else(|p| p.into_inner());
                if !c.receive_answer.is_empty() {
                    c.ack_answer = bytes.clone();
                    captured = true;
                }
            }
        }
    }
    seen
}

/// Counts an error and prints the first few.
fn fail(counters: &Counters, what: String) {
    let n = counters.errors.fetch_add(1, Ordering::Relaxed);
    if n < 5 {
        eprintln!("error: {what}");
    }
}

/// The same workload against a trivial axum server that reads each request
/// body and answers bytes the real server gave.
async fn baseline_phase(
    args: &Args,
    server_rt: &tokio::runtime::Handle,
    captured: Captured,
    publish_body: Bytes,
) -> PhaseResult {
    let c = Arc::new(captured);
    let (p, r, a) = (c.clone(), c.clone(), c);
    let app = Router::new()
        .route(
            "/publish",
            post(move |_body: Bytes| {
                let p = p.clone();
                async move { json_bytes(p.publish_answer.clone()) }
            }),
        )
        .route(
            "/receive/{q}",
            post(move |_body: Bytes| {
                let r = r.clone();
                async move { json_bytes(r.receive_answer.clone()) }
            }),
        )
        .route(
            "/ack/{q}",
            post(move |_body: Bytes| {
                let a = a.clone();
                async move { json_bytes(a.ack_answer.clone()) }
            }),
        );
    // Bound on the server runtime: a listener belongs to the runtime that
    // made it.
    let listener = server_rt
        .spawn(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .await
        .expect("binding does not panic")
        .expect("an ephemeral port binds");
    let addr = listener
        .local_addr()
        .expect("a bound socket has an address");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = server_rt.spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .await
    });
    let base = format!("http://{addr}");
    let target = Target {
        mode: Mode::Baseline,
        ca_pem: None,
        token: None,
        publish: format!("{base}/publish"),
        receive: (0..QUEUES).map(|i| format!("{base}/receive/{i}")).collect(),
        ack: (0..QUEUES).map(|i| format!("{base}/ack/{i}")).collect(),
    };
    let result = phase(args, &target, publish_body, None).await;
    let _ = stop_tx.send(());
    let _ = server.await;
    result
}

fn json_bytes(b: Bytes) -> axum::response::Response {
    use axum::response::IntoResponse;
    ([(axum::http::header::CONTENT_TYPE, "application/json")], b).into_response()
}

/// Per-queue (visible, in flight, acked) as the server counts them.
async fn queue_stats(base: &str, sec: &Security) -> Vec<(u64, u64, u64)> {
    let client = sec.http_client();
    let mut out = Vec::new();
    for i in 0..QUEUES {
        let v: serde_json::Value = match client.get(format!("{base}/v1/queues/q{i}")).send().await {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => serde_json::Value::Null,
        };
        let n = |k: &str| v["stats"][k].as_u64().unwrap_or(u64::MAX);
        out.push((n("visible"), n("in_flight"), n("acked")));
    }
    out
}

/// Whether every copy reached every queue exactly once and was acked, and
/// the server agrees.
fn integrity_clean(pubq: &PhaseResult, stats: &[(u64, u64, u64)]) -> bool {
    let mut clean = pubq.drained && pubq.errors == 0;
    for (q, i) in pubq.integrity.iter().enumerate() {
        let (visible, in_flight, acked) = stats.get(q).copied().unwrap_or_default();
        clean &= i.duplicates == 0
            && i.lost == 0
            && i.unknown == 0
            && i.bad_ids == 0
            && i.received == pubq.published_total
            && acked == pubq.published_total
            && visible == 0
            && in_flight == 0;
    }
    clean
}

fn report(pubq: &PhaseResult, baseline: Option<&PhaseResult>, stats: &[(u64, u64, u64)]) -> bool {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!();
    println!(
        "{:<36} {:>12} {:>12} {:>14}",
        "", "baseline", "pubq", "pubq/baseline"
    );
    let line = |name: &str, f: &dyn Fn(&Rates) -> Option<f64>, digits: usize| {
        let show = |v: Option<f64>| match v {
            Some(v) => format!("{v:.digits$}"),
            None => "n/a".into(),
        };
        let b = baseline.and_then(|b| f(&b.rates));
        let p = f(&pubq.rates);
        let ratio = match (p, b) {
            (Some(p), Some(b)) if b > 0.0 => format!("{:.2}", p / b),
            _ => String::new(),
        };
        let b = if baseline.is_some() {
            show(b)
        } else {
            "-".into()
        };
        println!("{name:<36} {b:>12} {:>12} {ratio:>14}", show(p));
    };
    line("published msg/s", &|r| Some(r.published), 0);
    line("delivered copies/s", &|r| Some(r.delivered), 0);
    line("acked copies/s", &|r| Some(r.acked), 0);
    line("HTTP requests/s", &|r| Some(r.requests), 0);
    line("server cores busy", &|r| r.cores.map(|c| c.server), 2);
    line("client cores busy", &|r| r.cores.map(|c| c.client), 2);
    line(
        &format!("machine cores busy (of {cpus})"),
        &|r| r.cores.map(|c| c.machine),
        2,
    );
    line(
        "acked copies per server CPU-second",
        &|r| r.per_server_cpu(),
        0,
    );
    line(
        "acked copies per CPU-second (both)",
        &|r| r.per_process_cpu(),
        0,
    );
    println!(
        "errors: baseline {}, pubq {}",
        baseline.map_or(0, |b| b.errors),
        pubq.errors
    );
    println!(
        "(machine cores busy beyond server + client is other work on the machine; \
         per-CPU-second figures are what one dedicated core would carry.)"
    );
    if let Some(b) = baseline {
        debug_assert_eq!(b.mode, Mode::Baseline);
    }
    println!();
    println!(
        "integrity: {} messages published in all; drain took {:.2} s{}",
        pubq.published_total,
        pubq.drain.as_secs_f64(),
        if pubq.drained {
            ""
        } else {
            " and did NOT finish"
        }
    );
    for (q, i) in pubq.integrity.iter().enumerate() {
        let (visible, in_flight, acked) = stats.get(q).copied().unwrap_or_default();
        println!(
            "  q{q}: received {} copies, duplicates {}, lost {}, unknown {}, bad ids {}; \
             server: acked {acked}, visible {visible}, in flight {in_flight}",
            i.received, i.duplicates, i.lost, i.unknown, i.bad_ids
        );
    }
    let clean = integrity_clean(pubq, stats);
    println!(
        "integrity: {}",
        if clean {
            "OK: every copy received exactly once per queue"
        } else {
            "FAILED"
        }
    );
    clean
}
