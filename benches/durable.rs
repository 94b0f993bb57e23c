//! Durable fan-out benchmark (not a test): the hub in process, 1 topic -> 4
//! queues, 256-byte bodies, P concurrent publishers sending batches, one
//! consumer per queue receiving and acking batches of 100. The same workload
//! runs on the disk log with `--fsync always` and on memory storage in the same
//! process, so the figure to read is the ratio.
//!
//! `cargo bench --bench durable -- [--seconds 5] [--publishers 8] [--batch 100] [--encrypt]`
//!
//! `--encrypt` adds a run on a disk log with encryption at rest (every
//! `Publish` sealed with XChaCha20-Poly1305), to read against the plain one.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pubq::config::{FsyncPolicy, Limits};
use pubq::hub::{Hub, NewMessage, ReceiveRequest};
use pubq::model::{QueueName, QueueSettingsPatch, SystemClock, TopicName, TopicSettingsPatch};
use pubq::storage::{DiskLog, DiskLogConfig, KeyId, Keyring, MemoryStorage, Storage};

/// Publishers wait while more copies than this are unacked.
const MAX_BACKLOG_COPIES: u64 = 200_000;

struct Args {
    seconds: u64,
    publishers: usize,
    batch: usize,
    encrypt: bool,
}

fn args() -> Args {
    let mut a = Args {
        seconds: 5,
        publishers: 8,
        batch: 100,
        encrypt: false,
    };
    let v: Vec<String> = std::env::args().collect();
    a.encrypt = v.iter().any(|x| x == "--encrypt");
    for w in v.windows(2) {
        let n = w[1].parse().ok();
        match w[0].as_str() {
            "--seconds" => a.seconds = n.map_or(a.seconds, |x: usize| x as u64),
            "--publishers" => a.publishers = n.unwrap_or(a.publishers),
            "--batch" => a.batch = n.unwrap_or(a.batch),
            _ => {}
        }
    }
    a
}

struct Outcome {
    published: u64,
    delivered: u64,
    p50_us: u64,
    p99_us: u64,
}

async fn run(storage: Arc<dyn Storage>, a: &Args) -> Outcome {
    let hub = Hub::with_storage(Arc::new(SystemClock::new()), Limits::default(), storage);
    hub.restore().await.expect("restore");
    let topic = TopicName::new("fan").expect("name");
    hub.put_topic(&topic, &TopicSettingsPatch::default())
        .await
        .expect("topic");
    let queues: Vec<QueueName> = (0..4)
        .map(|i| QueueName::new(&format!("q{i}")).expect("name"))
        .collect();
    for q in &queues {
        hub.put_queue(q, &QueueSettingsPatch::default())
            .await
            .expect("queue");
        hub.subscribe(&topic, q, None).await.expect("subscribe");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let published = Arc::new(AtomicU64::new(0));
    let delivered = Arc::new(AtomicU64::new(0));
    let body = "x".repeat(256);
    let mut pubs = Vec::new();
    for _ in 0..a.publishers {
        let (hub, topic, stop, published, delivered, body) = (
            hub.clone(),
            topic.clone(),
            stop.clone(),
            published.clone(),
            delivered.clone(),
            body.clone(),
        );
        let batch = a.batch;
        pubs.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                // Keep the backlog bounded so the figure is throughput, not
                // how fast memory fills.
                let backlog = published.load(Ordering::Relaxed) * 4
                    - delivered
                        .load(Ordering::Relaxed)
                        .min(published.load(Ordering::Relaxed) * 4);
                if backlog > MAX_BACKLOG_COPIES {
                    tokio::time::sleep(Duration::from_micros(200)).await;
                    continue;
                }
                let msgs: Vec<NewMessage> = (0..batch)
                    .map(|_| NewMessage {
                        body: body.clone(),
                        body_len: body.len(),
                        ..NewMessage::default()
                    })
                    .collect();
                let t = Instant::now();
                hub.publish(&topic, msgs).await.expect("publish");
                lat.push(t.elapsed().as_micros() as u64);
                published.fetch_add(batch as u64, Ordering::Relaxed);
            }
            lat
        }));
    }
    let mut cons = Vec::new();
    for q in &queues {
        let (hub, q, stop, delivered) = (hub.clone(), q.clone(), stop.clone(), delivered.clone());
        cons.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let got = hub
                    .receive(
                        &q,
                        ReceiveRequest {
                            max: Some(100),
                            wait_seconds: Some(1),
                            ..ReceiveRequest::default()
                        },
                    )
                    .await
                    .expect("receive");
                let receipts: Vec<_> = got.iter().map(|d| d.receipt).collect();
                if !receipts.is_empty() {
                    hub.ack(&q, &receipts).await.expect("ack");
                    delivered.fetch_add(receipts.len() as u64, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(a.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    for p in pubs {
        lat.extend(p.await.expect("publisher"));
    }
    for c in cons {
        let _ = c.await;
    }
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0)
    };
    let storage = hub.storage().clone();
    let _ = tokio::task::spawn_blocking(move || storage.close()).await;
    Outcome {
        published: published.load(Ordering::Relaxed),
        delivered: delivered.load(Ordering::Relaxed),
        p50_us: pct(0.5),
        p99_us: pct(0.99),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    let disk = |keys: Option<Keyring>| {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = DiskLogConfig::new(
            dir.path().to_path_buf(),
            FsyncPolicy::Always,
            Duration::from_millis(10),
        );
        cfg.encryption = keys.map(Arc::new);
        (dir, DiskLog::open(cfg).expect("open log"))
    };
    let (_dir, log) = disk(None);
    let d = run(Arc::new(log), &a).await;
    let e = if a.encrypt {
        let id = KeyId::new("bench").expect("valid id");
        let (_dir, log) = disk(Some(Keyring::new((id, [7; 32]), []).expect("keyring")));
        Some(run(Arc::new(log), &a).await)
    } else {
        None
    };
    let m = run(Arc::new(MemoryStorage), &a).await;
    let secs = a.seconds as f64;
    println!(
        "## Durable fan-out, hub in process: 1 topic -> 4 queues, 256 B bodies, {} publishers x batches of {}, {} s each",
        a.publishers, a.batch, a.seconds
    );
    println!("| storage | published msg/s | delivered copies/s | publish p50 | publish p99 |");
    println!("| --- | --- | --- | --- | --- |");
    let mut rows = vec![("disk, fsync always", &d)];
    if let Some(e) = &e {
        rows.push(("disk, fsync always, encrypted", e));
    }
    rows.push(("memory", &m));
    for (name, o) in rows {
        println!(
            "| {name} | {:.0} | {:.0} | {:.2} ms | {:.2} ms |",
            o.published as f64 / secs,
            o.delivered as f64 / secs,
            o.p50_us as f64 / 1000.0,
            o.p99_us as f64 / 1000.0
        );
    }
    println!(
        "durable / memory delivered copies: {:.2}",
        d.delivered as f64 / m.delivered.max(1) as f64
    );
    if let Some(e) = &e {
        println!(
            "encrypted / plain durable delivered copies: {:.2}",
            e.delivered as f64 / d.delivered.max(1) as f64
        );
    }
}
