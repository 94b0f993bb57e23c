//! The real server under load, killed with SIGKILL at random moments and
//! restarted on the same data directory (some restarts killed again while
//! they recover); then everything is drained and held against the
//! client-side ledger. The seed (random unless
//! `PUBQ_CRASH_SEED` is set) decides the round lengths and every client
//! choice; it is printed so a failure can be replayed.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::sync::{watch, Notify};

use crate::ledger::{Delivery, Ledger, MAX_RECEIVES, QUEUES};
use crate::server::ServerProcess;

/// Kills (each after 1 to 2 s of load), then one more with the clients
/// stopped, so the drain starts with no lease held.
const ROUNDS: usize = 5;
/// Publishers wait while this many confirmed messages are not yet acked.
const BACKLOG: usize = 200;
/// Most messages one publisher sends in the whole run.
const MAX_PER_PUBLISHER: u64 = 6000;
/// Share of deliveries a consumer acks; it nacks the rest.
const ACK_PERCENT: u32 = 80;
const FIFO_GROUPS: u64 = 4;

/// What every client task sees.
#[derive(Debug, Clone, Default)]
struct Phase {
    /// The server's address while it is up.
    url: Option<String>,
    stop: bool,
}

struct Shared {
    http: reqwest::Client,
    phase: watch::Sender<Phase>,
    ledger: Mutex<Ledger>,
    /// Woken when acks make room in the backlog.
    progress: Notify,
}

impl Shared {
    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The server's address once it is up; `None` once the run stops.
    async fn url(&self) -> Option<String> {
        let mut rx = self.phase.subscribe();
        let p = rx
            .wait_for(|p| p.stop || p.url.is_some())
            .await
            .expect("the phase sender lives as long as the test");
        (!p.stop).then(|| p.url.clone()).flatten()
    }

    /// After a request to `url` failed: waits until the server is back
    /// (a new address) or the run stops.
    async fn failed(&self, url: &str) {
        let mut rx = self.phase.subscribe();
        let _ = rx
            .wait_for(|p| p.stop || p.url.as_deref().is_some_and(|u| u != url))
            .await;
    }

    async fn until_stop(&self) {
        let mut rx = self.phase.subscribe();
        let _ = rx.wait_for(|p| p.stop).await;
    }

    fn stopped(&self) -> bool {
        self.phase.borrow().stop
    }

    async fn post(&self, url: &str, path: &str, body: &Value) -> Result<Value, String> {
        let r = self
            .http
            .post(format!("{url}{path}"))
            .json(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = r.status();
        let v: Value = r.json().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{status}: {v}"));
        }
        Ok(v)
    }

    /// Confirmed publishes to topic `t` not yet acked in `b` (which has no
    /// dead-letter queue, so everything published ends up acked there).
    fn backlog(&self) -> usize {
        let l = self.ledger();
        let acked_b = l.acked.keys().filter(|(q, _)| *q == "b").count();
        let fifo = l.published.values().filter(|(t, _)| *t == "ft").count();
        (l.published.len() - fifo).saturating_sub(acked_b)
    }
}

async fn admin(http: &reqwest::Client, url: &str, path: &str, body: Value) {
    let r = http
        .put(format!("{url}{path}"))
        .json(&body)
        .send()
        .await
        .expect("admin request");
    assert!(r.status().is_success(), "PUT {path}: {}", r.status());
}

async fn declare(http: &reqwest::Client, url: &str) {
    let dl = |q: &str| json!({"dead_letter": {"queue": q, "max_receives": MAX_RECEIVES}});
    admin(http, url, "/v1/queues/a-dlq", json!({})).await;
    admin(http, url, "/v1/queues/a", dl("a-dlq")).await;
    admin(http, url, "/v1/queues/b", json!({})).await;
    admin(http, url, "/v1/topics/t", json!({})).await;
    admin(http, url, "/v1/topics/t/subscriptions/a", json!({})).await;
    admin(http, url, "/v1/topics/t/subscriptions/b", json!({})).await;
    admin(http, url, "/v1/queues/f-dlq", json!({"fifo": true})).await;
    let mut f = dl("f-dlq");
    f["fifo"] = json!(true);
    admin(http, url, "/v1/queues/f", f).await;
    admin(http, url, "/v1/topics/ft", json!({"fifo": true})).await;
    admin(http, url, "/v1/topics/ft/subscriptions/f", json!({})).await;
}

/// Publishes batches to topic `t`, never retrying: a batch without an
/// answer may or may not have been stored.
async fn std_publisher(s: Arc<Shared>, p: u64, mut rng: StdRng) {
    let mut n = 0;
    while !s.stopped() && n < MAX_PER_PUBLISHER {
        let room = s.progress.notified();
        if s.backlog() >= BACKLOG {
            tokio::select! {
                () = room => {}
                () = s.until_stop() => {}
            }
            continue;
        }
        let Some(url) = s.url().await else { break };
        let bodies: Vec<String> = (0..rng.gen_range(1..=10))
            .map(|_| {
                n += 1;
                format!("s{p}-{n}")
            })
            .collect();
        let msgs: Vec<Value> = bodies.iter().map(|b| json!({"body": b})).collect();
        match s
            .post(&url, "/v1/topics/t/publish", &json!({"messages": msgs}))
            .await
        {
            Ok(v) => record_ids(&s, "t", &bodies, &v),
            Err(_) => {
                s.ledger().unanswered(bodies);
                s.failed(&url).await;
            }
        }
    }
}

fn record_ids(s: &Shared, topic: &'static str, bodies: &[String], v: &Value) {
    let results = v["results"].as_array().cloned().unwrap_or_default();
    let mut l = s.ledger();
    if results.len() != bodies.len() {
        l.violations
            .push(format!("publish answered {v} for {bodies:?}"));
        return;
    }
    for (b, r) in bodies.iter().zip(results) {
        match r["id"].as_str() {
            Some(id) => l.confirmed(topic, b, id),
            None => l.violations.push(format!("publish of {b} failed: {r}")),
        }
    }
}

/// Publishes batches to FIFO topic `ft`, groups in turn, each message's
/// dedup id its body; a batch without an answer is sent again as it was
/// (dedup makes the retry safe) until it is answered.
async fn fifo_publisher(s: Arc<Shared>, mut rng: StdRng) {
    let mut next = [0u64; FIFO_GROUPS as usize];
    let mut g = 0;
    let mut sent = 0;
    while !s.stopped() && sent < MAX_PER_PUBLISHER {
        let bodies: Vec<(String, String)> = (0..rng.gen_range(1..=5))
            .map(|_| {
                g = (g + 1) % FIFO_GROUPS;
                next[g as usize] += 1;
                (format!("g{g}"), format!("g{g}-{}", next[g as usize]))
            })
            .collect();
        sent += bodies.len() as u64;
        let msgs: Vec<Value> = bodies
            .iter()
            .map(|(g, b)| json!({"body": b, "group_id": g, "dedup_id": b}))
            .collect();
        let just_bodies: Vec<String> = bodies.iter().map(|(_, b)| b.clone()).collect();
        loop {
            let Some(url) = s.url().await else {
                s.ledger().unanswered(just_bodies.clone());
                return;
            };
            match s
                .post(&url, "/v1/topics/ft/publish", &json!({"messages": msgs}))
                .await
            {
                Ok(v) => {
                    record_ids(&s, "ft", &just_bodies, &v);
                    break;
                }
                Err(_) => {
                    s.ledger().unanswered(just_bodies.clone());
                    s.failed(&url).await;
                }
            }
        }
        // Keep the FIFO backlog near the standard one.
        let room = s.progress.notified();
        let waiting = {
            let l = s.ledger();
            let acked = l.acked.keys().filter(|(q, _)| *q == "f").count();
            let published = l.published.values().filter(|(t, _)| *t == "ft").count();
            published.saturating_sub(acked)
        };
        if waiting >= BACKLOG {
            tokio::select! {
                () = room => {}
                () = s.until_stop() => {}
            }
        }
    }
}

/// Receives from `queue`, acks most messages and nacks the rest.
async fn consumer(s: Arc<Shared>, queue: &'static str, mut rng: StdRng) {
    while let Some(url) = s.url().await {
        let sent_at = Instant::now();
        let path = format!("/v1/queues/{queue}/receive");
        let got = match s
            .post(&url, &path, &json!({"max": 10, "wait_seconds": 1}))
            .await
        {
            Ok(v) => v,
            Err(_) => {
                s.failed(&url).await;
                continue;
            }
        };
        let ds: Vec<Delivery> = got["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|m| Delivery::parse(queue, m))
            .collect();
        {
            let mut l = s.ledger();
            for d in &ds {
                l.delivered(d, sent_at);
            }
        }
        let (ack, nack): (Vec<&Delivery>, Vec<&Delivery>) =
            ds.iter().partition(|_| rng.gen_range(0..100) < ACK_PERCENT);
        if !ack.is_empty() {
            // An ack without an answer is sent again to the restarted server:
            // receipts survive restarts, so it answers `ok` (acked now, or
            // the first try was applied) or `ReceiptStale` (received again).
            let receipts: Vec<&str> = ack.iter().map(|d| d.receipt.as_str()).collect();
            let path = format!("/v1/queues/{queue}/ack");
            let mut url = url.clone();
            loop {
                match s.post(&url, &path, &json!({"receipts": receipts})).await {
                    Ok(v) => {
                        s.ledger().ack_results(&ack, &v);
                        break;
                    }
                    Err(_) => {
                        s.failed(&url).await;
                        match s.url().await {
                            Some(u) => url = u,
                            None => {
                                s.ledger().ack_unanswered(&ack);
                                return;
                            }
                        }
                    }
                }
            }
            s.progress.notify_waiters();
        }
        if !nack.is_empty() {
            let receipts: Vec<&str> = nack.iter().map(|d| d.receipt.as_str()).collect();
            let path = format!("/v1/queues/{queue}/nack");
            let body = json!({"receipts": receipts, "delay_seconds": 0});
            match s.post(&url, &path, &body).await {
                Ok(_) => {
                    let mut l = s.ledger();
                    l.stats.nacks += nack.len() as u64;
                    for d in &nack {
                        l.note(&d.id, format!("nacked in {queue}"));
                    }
                }
                Err(_) => s.failed(&url).await,
            }
        }
    }
}

/// Receives until every queue is empty, acking everything.
async fn drain(s: &Shared, url: &str) -> BTreeMap<&'static str, Vec<Delivery>> {
    let mut out = BTreeMap::new();
    for queue in QUEUES {
        let mut all = Vec::new();
        loop {
            let sent_at = Instant::now();
            let path = format!("/v1/queues/{queue}/receive");
            let v = s
                .post(url, &path, &json!({"max": 10, "wait_seconds": 0}))
                .await
                .expect("drain receive");
            let ds: Vec<Delivery> = v["messages"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter_map(|m| Delivery::parse(queue, m))
                .collect();
            if ds.is_empty() {
                break;
            }
            for d in &ds {
                s.ledger().delivered(d, sent_at);
            }
            let receipts: Vec<&str> = ds.iter().map(|d| d.receipt.as_str()).collect();
            let path = format!("/v1/queues/{queue}/ack");
            let v = s
                .post(url, &path, &json!({"receipts": receipts}))
                .await
                .expect("drain ack");
            let refs: Vec<&Delivery> = ds.iter().collect();
            s.ledger().ack_results(&refs, &v);
            all.extend(ds);
        }
        let info: Value = s
            .http
            .get(format!("{url}/v1/queues/{queue}"))
            .send()
            .await
            .expect("describe")
            .json()
            .await
            .expect("describe json");
        let st = &info["stats"];
        let left = ["visible", "delayed", "in_flight"].map(|k| st[k].as_u64().unwrap_or(0));
        assert_eq!(
            left,
            [0, 0, 0],
            "{queue} is not empty after the drain: {st}"
        );
        out.insert(queue, all);
    }
    out
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_work_survives_repeated_kill_9() {
    let seed: u64 = std::env::var("PUBQ_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen());
    println!("crash test seed: {seed} (rerun with PUBQ_CRASH_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let log = tmp.path().join("server.log");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client");

    let mut server = ServerProcess::start(&data, &log, &http).await;
    declare(&http, &server.url).await;
    let (phase, _) = watch::channel(Phase {
        url: Some(server.url.clone()),
        stop: false,
    });
    let s = Arc::new(Shared {
        http: http.clone(),
        phase,
        ledger: Mutex::new(Ledger::default()),
        progress: Notify::new(),
    });
    let mut tasks = Vec::new();
    let mut child_rng = || StdRng::seed_from_u64(rng.gen());
    for p in 0..2 {
        tasks.push(tokio::spawn(std_publisher(s.clone(), p, child_rng())));
    }
    tasks.push(tokio::spawn(fifo_publisher(s.clone(), child_rng())));
    for q in ["a", "a", "b", "f"] {
        tasks.push(tokio::spawn(consumer(s.clone(), q, child_rng())));
    }

    let mut restarts = Vec::new();
    let mut early_kills = 0;
    for round in 0..=ROUNDS {
        if round < ROUNDS {
            let ms = rng.gen_range(1000..2000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        } else {
            // Stop the clients, then kill once more so no lease survives
            // into the drain.
            s.phase.send_modify(|p| p.stop = true);
            for t in tasks.drain(..) {
                tokio::time::timeout(Duration::from_secs(15), t)
                    .await
                    .expect("client task stops")
                    .expect("client task does not panic");
            }
        }
        s.phase.send_modify(|p| p.url = None);
        server.kill().await;
        if rng.gen_bool(0.4) {
            // Crash the next start too, before or during its recovery.
            let after = Duration::from_millis(rng.gen_range(0..150));
            ServerProcess::start_and_kill(&data, &log, after).await;
            early_kills += 1;
        }
        let t = Instant::now();
        server = ServerProcess::start(&data, &log, &http).await;
        restarts.push(t.elapsed());
        s.phase.send_modify(|p| p.url = Some(server.url.clone()));
    }

    let drained = drain(&s, &server.url).await;
    let both = s.ledger().check_drain(&drained);
    server.kill().await;

    let l = s.ledger();
    let st = &l.stats;
    println!(
        "{} rounds ({} starts killed early) in {:.1?}: {} publishes confirmed, {} unanswered batches ({} bodies still \
         unconfirmed), {} deliveries, {} acks ok, {} stale acks, {} nacked; drained {}; \
         {} both in a queue and its dead-letter queue; restarts took {:?}",
        ROUNDS,
        early_kills,
        started.elapsed(),
        l.published.len(),
        st.publish_failures,
        l.unconfirmed.len(),
        st.deliveries,
        st.acks,
        st.stale_acks,
        st.nacks,
        drained
            .iter()
            .map(|(q, d)| format!("{q}={}", d.len()))
            .collect::<Vec<_>>()
            .join(" "),
        both,
        restarts,
    );
    assert!(
        l.violations.is_empty(),
        "seed {seed}: {} violations:\n{}\n--- server log ---\n{}",
        l.violations.len(),
        l.violations
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n"),
        log_tail(&log)
    );
    assert!(
        drained.get("a-dlq").is_some_and(|d| !d.is_empty())
            || drained.get("f-dlq").is_some_and(|d| !d.is_empty()),
        "seed {seed}: no message reached a dead-letter queue; the test lost its teeth"
    );
}
