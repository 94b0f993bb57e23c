//! Crash points under real concurrency: publishers, consumers (ack and nack)
//! and checkpoints run at once on a multi-threaded runtime, so records reach
//! the log in the racy orders the replay rules exist for (an ack's `Delete`
//! ahead of its message's `Publish`, publishes racing a snapshot's capture).
//! Once the traffic has stopped, every queue's contents (sequence numbers,
//! ids, receive counts) are noted, the hub is dropped as in a crash, and the
//! recovered hub must hold exactly the same. No model is needed: whatever
//! the interleaving, the state before the crash is what must come back.
//!
//! The racy windows are narrow, so most runs do not hit them; the shuffled
//! restarts of `hub_restart` put records in those orders on purpose.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::{FsyncPolicy, Limits};
use crate::hub::{Hub, NewMessage, ReceiveRequest};
use crate::model::{
    DeadLetterSettings, ManualClock, MessageId, Millis, QueueName, QueueSettingsPatch, TopicName,
    TopicSettingsPatch,
};
use crate::storage::{DiskLog, DiskLogConfig};

const T0: Millis = 1_700_000_000_000;
/// Source queues and their dead-letter queues.
const QUEUES: [&str; 4] = ["a", "a-dlq", "f", "f-dlq"];

fn qn(s: &str) -> QueueName {
    QueueName::new(s).expect("valid")
}

async fn open(dir: &std::path::Path, clock: Arc<ManualClock>) -> Hub {
    let mut cfg = DiskLogConfig::new(
        dir.to_path_buf(),
        FsyncPolicy::Always,
        Duration::from_millis(10),
    );
    // Small segments, so rotations happen under the traffic too.
    cfg.segment_bytes = 16 * 1024;
    let log = DiskLog::open(cfg).expect("open log");
    let hub = Hub::with_storage(clock, Limits::default(), Arc::new(log));
    hub.restore().await.expect("restore");
    hub
}

async fn declare(h: &Hub) {
    let fifo = |f: bool| QueueSettingsPatch {
        fifo: Some(f),
        ..QueueSettingsPatch::default()
    };
    let with_dlq = |f: bool, dlq: &str| QueueSettingsPatch {
        dead_letter: Some(Some(DeadLetterSettings {
            queue: qn(dlq),
            max_receives: 2,
        })),
        ..fifo(f)
    };
    let t = TopicName::new("t").expect("valid");
    h.put_topic(&t, &TopicSettingsPatch::default())
        .await
        .expect("topic");
    h.put_queue(&qn("a-dlq"), &fifo(false))
        .await
        .expect("queue");
    h.put_queue(&qn("a"), &with_dlq(false, "a-dlq"))
        .await
        .expect("queue");
    h.put_queue(&qn("f-dlq"), &fifo(true)).await.expect("queue");
    h.put_queue(&qn("f"), &with_dlq(true, "f-dlq"))
        .await
        .expect("queue");
    h.subscribe(&t, &qn("a"), None).await.expect("subscribe");
}

/// Every queue's (seq -> (id, receive count)), and nothing in flight.
fn contents(h: &Hub) -> BTreeMap<&'static str, BTreeMap<u64, (MessageId, u32)>> {
    QUEUES
        .iter()
        .map(|q| {
            let held = h
                .stored_messages(&qn(q))
                .expect("queue")
                .into_iter()
                .map(|(seq, m, count)| (seq, (m.id, count)))
                .collect();
            (*q, held)
        })
        .collect()
}

async fn publisher(h: Hub, mut rng: StdRng, rounds: usize) {
    let t = TopicName::new("t").expect("valid");
    for i in 0..rounds {
        let n = rng.gen_range(1..5);
        if rng.gen_bool(0.5) {
            let msgs = (0..n)
                .map(|k| {
                    let body = format!("p{i}-{k}");
                    NewMessage {
                        body_len: body.len(),
                        body,
                        ..NewMessage::default()
                    }
                })
                .collect();
            h.publish(&t, msgs).await.expect("publish");
        } else {
            let msgs = (0..n)
                .map(|k| {
                    let body = format!("f{}-{i}-{k}", rng.gen::<u32>());
                    NewMessage {
                        body_len: body.len(),
                        group_id: Some(format!("g{}", rng.gen_range(0..3))),
                        dedup_id: Some(body.clone()),
                        body,
                        ..NewMessage::default()
                    }
                })
                .collect();
            h.send(&qn("f"), msgs).await.expect("send");
        }
        tokio::task::yield_now().await;
    }
}

/// Receives and, for each message, acks or nacks it; stops after `rounds`
/// receives. Everything it received is acked or nacked when it returns.
async fn consumer(h: Hub, queue: &'static str, mut rng: StdRng, rounds: usize) {
    for _ in 0..rounds {
        let got = h
            .receive(
                &qn(queue),
                ReceiveRequest {
                    max: Some(rng.gen_range(1..5)),
                    ..ReceiveRequest::default()
                },
            )
            .await
            .expect("receive");
        let (ack, nack): (Vec<_>, Vec<_>) = got
            .iter()
            .map(|d| d.receipt)
            .partition(|_| rng.gen_bool(0.6));
        if !ack.is_empty() {
            h.ack(&qn(queue), &ack).await.expect("ack");
        }
        if !nack.is_empty() {
            h.nack(&qn(queue), &nack, None).expect("nack");
        }
        tokio::task::yield_now().await;
    }
}

async fn checkpointer(h: Hub, rounds: usize) {
    for _ in 0..rounds {
        h.checkpoint().await.expect("checkpoint");
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_after_concurrent_traffic_and_checkpoints_survives_a_crash() {
    let seed: u64 = rand::thread_rng().gen();
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = super::crash_dir();
    let clock = Arc::new(ManualClock::new(T0));
    let mut hub = open(dir.path(), clock.clone()).await;
    declare(&hub).await;
    for round in 0..10 {
        let mut tasks = Vec::new();
        for _ in 0..2 {
            let r = StdRng::seed_from_u64(rng.gen());
            tasks.push(tokio::spawn(publisher(hub.clone(), r, 100)));
        }
        for q in QUEUES {
            let r = StdRng::seed_from_u64(rng.gen());
            tasks.push(tokio::spawn(consumer(hub.clone(), q, r, 100)));
        }
        tasks.push(tokio::spawn(checkpointer(hub.clone(), 5)));
        for t in tasks {
            t.await.expect("task");
        }
        // Dead-letter records are written in the background: one awaited
        // write behind them makes them durable.
        hub.put_queue(&qn("a-dlq"), &QueueSettingsPatch::default())
            .await
            .expect("barrier");
        let before = contents(&hub);
        for q in QUEUES {
            let st = hub.describe_queue(&qn(q)).expect("describe").stats;
            assert_eq!(st.in_flight, 0, "seed {seed}: every consumer answered");
        }
        drop(hub);
        hub = open(dir.path(), clock.clone()).await;
        let after = contents(&hub);
        for q in QUEUES {
            assert_eq!(
                after[q], before[q],
                "seed {seed}, round {round}: {q} after a crash differs from before it"
            );
        }
    }
}
