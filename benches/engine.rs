//! In-process throughput of the hot path, single thread: the pure queue engine
//! (standard and FIFO) and the hub around it (publish fan-out, receive, ack).
//! Throughput is counted in message copies: one message fanned out to four
//! queues is four copies, each received once and acked once.
//!
//! Time is the CPU time of the benchmarking thread
//! (`CLOCK_THREAD_CPUTIME_ID`), not wall time, so a busy shared machine slows
//! the run down without skewing the figures much. Set `PUBQ_BENCH_WALL=1` for
//! wall time (also used where that clock is missing).
//!
//! What it does not measure: HTTP, JSON, or contention between threads (see
//! `benches/http.rs` for the whole server). Run with `cargo bench --bench engine`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use pubq::config::Limits;
use pubq::hub::{Hub, NewMessage, ReceiveRequest};
use pubq::model::{
    Attributes, BodyEncoding, MessageData, MessageId, Millis, QueueName, QueueSettings,
    QueueSettingsPatch, SystemClock, TopicName, TopicSettingsPatch,
};
use pubq::queue::{EnqueueOptions, QueueState, Receipt};

/// Bytes in every message body.
const BODY_BYTES: usize = 256;
/// Queues each message fans out to.
const FANOUT: usize = 4;
/// Messages per receive and receipts per ack (the contract's maximum batch).
const BATCH: usize = 100;
/// FIFO groups the FIFO variant spreads its messages over.
const FIFO_GROUPS: usize = 16;
/// Hub iterations whose inputs are built ahead of one timed stretch.
const INPUT_CHUNK: u64 = 32;
/// A fixed start time: the engine never reads a clock.
const START: Millis = 1_700_000_000_000;

/// CPU time the calling thread has run so far; `None` where the clock is
/// missing or when `PUBQ_BENCH_WALL` is set. (`/proc/thread-self/schedstat`
/// is no substitute: it is only brought up to date at scheduler ticks.)
#[cfg(unix)]
fn thread_cpu_time() -> Option<Duration> {
    if std::env::var_os("PUBQ_BENCH_WALL").is_some() {
        return None;
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return None;
    }
    Some(Duration::new(
        u64::try_from(ts.tv_sec).ok()?,
        u32::try_from(ts.tv_nsec).ok()?,
    ))
}

#[cfg(not(unix))]
fn thread_cpu_time() -> Option<Duration> {
    None
}

/// Runs `f` `iters` times; returns the thread's CPU time for it (wall time
/// when that is unavailable).
fn timed(iters: u64, mut f: impl FnMut()) -> Duration {
    let wall = Instant::now();
    let cpu = thread_cpu_time();
    for _ in 0..iters {
        f();
    }
    match (cpu, thread_cpu_time()) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => wall.elapsed(),
    }
}

fn body() -> String {
    "x".repeat(BODY_BYTES)
}

fn message(group: Option<Arc<str>>) -> Arc<MessageData> {
    Arc::new(MessageData {
        id: MessageId::generate(START),
        body: body(),
        body_encoding: BodyEncoding::Text,
        attributes: Attributes::new(),
        group_id: group,
        dedup_id: None,
        topic: None,
        poison: false,
        sent_at: START,
        size: BODY_BYTES,
        visible_at: None,
        loc: Default::default(),
        copies: 1,
    })
}

fn queues(fifo: bool) -> Vec<QueueState> {
    let settings = QueueSettings {
        fifo,
        ..QueueSettings::default()
    };
    (0..FANOUT)
        .map(|i| {
            let name = QueueName::new(&format!("q{i}")).expect("constant name is valid");
            QueueState::new(name, i as u64 + 1, settings.clone())
        })
        .collect()
}

/// Receives in batches of [`BATCH`] and acks each batch until the queue is
/// empty. Returns the copies acked.
fn drain(q: &mut QueueState, now: Millis, receipts: &mut Vec<Receipt>) -> u64 {
    let mut acked = 0;
    loop {
        q.tick(now);
        let got = q.receive(BATCH, None, now);
        if got.is_empty() {
            return acked;
        }
        receipts.clear();
        receipts.extend(got.iter().map(|d| d.receipt));
        drop(got);
        for r in receipts.iter() {
            q.ack(r).expect("a fresh receipt acks");
            acked += 1;
        }
    }
}

/// Scenario 1: N messages (one shared `Arc<MessageData>`) into 4 standard
/// queues, then receive and ack every copy.
fn engine_standard(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine_standard");
    for n in [BATCH, 10_000] {
        let copies = (n * FANOUT) as u64;
        g.throughput(Throughput::Elements(copies));
        g.bench_function(format!("{n}msgs_x{FANOUT}queues"), |b| {
            // The queues are reused: each iteration leaves them empty, so the
            // bench measures the steady state, not map growth.
            let mut qs = queues(false);
            let msg = message(None);
            let mut receipts = Vec::with_capacity(BATCH);
            let now = START;
            b.iter_custom(|iters| {
                timed(iters, || {
                    for _ in 0..n {
                        for q in qs.iter_mut() {
                            q.enqueue(msg.clone(), EnqueueOptions::default(), now)
                                .expect("a standard enqueue is accepted");
                        }
                    }
                    let mut acked = 0;
                    for q in qs.iter_mut() {
                        acked += drain(q, now, &mut receipts);
                    }
                    assert_eq!(acked, copies, "every copy is acked once");
                    black_box(acked);
                })
            });
        });
    }
    g.finish();
}

/// Scenario 3: as scenario 1 on FIFO queues, messages spread round-robin over
/// 16 groups, each with its own dedup id (as a publish would give it).
fn engine_fifo(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine_fifo");
    for n in [BATCH, 10_000] {
        let copies = (n * FANOUT) as u64;
        g.throughput(Throughput::Elements(copies));
        g.bench_function(
            format!("{n}msgs_x{FANOUT}queues_{FIFO_GROUPS}groups"),
            |b| {
                let mut qs = queues(true);
                let groups: Vec<Arc<str>> = (0..FIFO_GROUPS)
                    .map(|i| Arc::from(format!("group-{i}").as_str()))
                    .collect();
                let msg = message(None);
                let dedup_ids: Vec<Arc<str>> = (0..n)
                    .map(|i| Arc::from(format!("dedup-{i}").as_str()))
                    .collect();
                // Dedup ids repeat from one iteration to the next, so each
                // iteration starts a dedup window later (the first tick expires
                // the previous iteration's entries, a cost a real queue pays too).
                let window = QueueSettings::default().dedup_window_ms() + 1;
                let mut now = START;
                let mut receipts = Vec::with_capacity(BATCH);
                b.iter_custom(|iters| {
                    timed(iters, || {
                        now += window;
                        for q in qs.iter_mut() {
                            q.tick(now);
                        }
                        for (i, dedup) in dedup_ids.iter().enumerate() {
                            let group = &groups[i % FIFO_GROUPS];
                            for q in qs.iter_mut() {
                                let opts = EnqueueOptions {
                                    group_id: Some(group.clone()),
                                    dedup_id: Some(dedup.clone()),
                                    ..EnqueueOptions::default()
                                };
                                q.enqueue(msg.clone(), opts, now)
                                    .expect("a FIFO enqueue with group and dedup id is accepted");
                            }
                        }
                        let mut acked = 0;
                        for q in qs.iter_mut() {
                            acked += drain(q, now, &mut receipts);
                        }
                        assert_eq!(acked, copies, "every copy is acked once");
                        black_box(acked);
                    })
                });
            },
        );
    }
    g.finish();
}

/// Scenario 2: the hub. A topic with 4 subscribed queues; per iteration one
/// publish of 100 messages, then per queue one receive of up to 100 and one
/// ack of what came back.
fn hub_publish_receive_ack(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime builds");
    let topic = TopicName::new("bench").expect("constant name is valid");
    let queue_names: Vec<QueueName> = (0..FANOUT)
        .map(|i| QueueName::new(&format!("q{i}")).expect("constant name is valid"))
        .collect();
    // Queues spawn their timer tasks, so the hub is set up inside the runtime.
    let hub = rt.block_on(async {
        let hub = Hub::new(Arc::new(SystemClock::new()), Limits::default());
        hub.put_topic(&topic, &TopicSettingsPatch::default())
            .await
            .expect("topic is created");
        for q in &queue_names {
            hub.put_queue(q, &QueueSettingsPatch::default())
                .await
                .expect("queue is created");
            hub.subscribe(&topic, q, None)
                .await
                .expect("queue is subscribed");
        }
        hub
    });
    let template = NewMessage {
        body: body(),
        body_encoding: BodyEncoding::Text,
        body_len: BODY_BYTES,
        ..NewMessage::default()
    };
    let req = ReceiveRequest {
        max: Some(BATCH as u32),
        wait_seconds: Some(0),
        visibility_timeout_seconds: None,
    };
    let copies = (BATCH * FANOUT) as u64;

    let mut g = c.benchmark_group("hub");
    g.throughput(Throughput::Elements(copies));
    // One `block_on` per iteration: with memory storage nothing in here
    // waits, so this measures the hub's work, not the scheduler.
    let run = |hub: &Hub, batch: Vec<NewMessage>| {
        rt.block_on(async {
            let results = hub.publish(&topic, batch).await.expect("topic exists");
            debug_assert!(results.iter().all(|r| r.is_ok()));
            let mut acked = 0u64;
            for q in &queue_names {
                let got = hub
                    .receive(q, req)
                    .await
                    .expect("queue exists and the request is valid");
                let receipts: Vec<Receipt> = got.iter().map(|d| d.receipt).collect();
                let r = hub.ack(q, &receipts).await.expect("queue exists");
                acked += r.len() as u64;
            }
            assert_eq!(acked, copies, "every copy is received and acked once");
            black_box(acked)
        })
    };
    // The 100 owned messages a publish consumes are built outside the timed
    // part: producing them is the API layer's work (parsing the request).
    g.bench_function(format!("publish{BATCH}_x{FANOUT}queues_receive_ack"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                // Inputs are built in chunks, so memory stays small however
                // many iterations criterion asks for.
                let n = left.min(INPUT_CHUNK);
                let mut inputs = (0..n)
                    .map(|_| vec![template.clone(); BATCH])
                    .collect::<Vec<_>>()
                    .into_iter();
                total += timed(n, || {
                    run(&hub, inputs.next().expect("one input per iteration"));
                });
                left -= n;
            }
            total
        });
    });
    // The same with building the batch inside the timed part, for comparison.
    g.bench_function(
        format!("publish{BATCH}_x{FANOUT}queues_receive_ack_incl_build"),
        |b| {
            b.iter_custom(|iters| {
                timed(iters, || {
                    run(&hub, vec![template.clone(); BATCH]);
                })
            })
        },
    );
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = engine_standard, hub_publish_receive_ack, engine_fifo
}
criterion_main!(benches);
