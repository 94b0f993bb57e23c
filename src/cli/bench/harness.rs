//! The shared machinery of a run: its state (clock, counters, ledgers), the
//! stop signals, the task sets of publishers and consumers, and the drain that
//! waits for every confirmed copy to arrive.
//!
//! Workloads compose these: fanout runs publishers and consumers together,
//! backlog runs them one after the other. What a publisher or a consumer does
//! on the wire lives in `publisher.rs` and `consumer.rs`.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::payload::Stamp;
use super::stats::{Counters, Latency, RunClock};
use super::verify::{self, Delivery, DeliveryLedger, PublishLedger, Verdict};

/// How often the drain looks at the ledgers.
const DRAIN_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// How long consumers may take to connect and subscribe.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything the tasks of one run share.
pub struct RunState {
    pub clock: RunClock,
    pub counters: Counters,
    /// Locked by publishers once per request.
    published: Mutex<PublishLedger>,
    /// One per queue (or per subscriber); locked by its consumers once per
    /// received batch.
    deliveries: Vec<Mutex<DeliveryLedger>>,
    /// Consumers wait on it while parked, so a stop interrupts a long poll.
    stop_consumers: watch::Sender<bool>,
}

impl RunState {
    /// State for `publishers` publisher tasks and `ledgers` delivery ledgers.
    pub fn new(publishers: usize, ledgers: Vec<DeliveryLedger>) -> Arc<Self> {
        Arc::new(Self {
            clock: RunClock::start(),
            counters: Counters::default(),
            published: Mutex::new(PublishLedger::new(publishers)),
            deliveries: ledgers.into_iter().map(Mutex::new).collect(),
            stop_consumers: watch::channel(false).0,
        })
    }

    pub fn publish_ledger(&self) -> MutexGuard<'_, PublishLedger> {
        // A panicking task poisons nothing we cannot still count.
        self.published.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn delivery_ledger(&self, index: usize) -> MutexGuard<'_, DeliveryLedger> {
        self.deliveries[index]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    pub fn ledgers(&self) -> usize {
        self.deliveries.len()
    }

    /// Records a received batch for ledger `index` under one lock; each first
    /// delivery is handed to `on_first` with its latency (`received_ns` minus
    /// its send stamp).
    pub fn record_batch(
        &self,
        index: usize,
        batch: &[(Stamp, u32)],
        malformed: u64,
        received_ns: u64,
        mut on_first: impl FnMut(&Stamp, u64),
    ) {
        let mut first = 0;
        {
            let mut ledger = self.delivery_ledger(index);
            for _ in 0..malformed {
                ledger.record_malformed();
            }
            for (stamp, receive_count) in batch {
                if ledger.record(stamp, *receive_count) == Delivery::First {
                    first += 1;
                    on_first(stamp, received_ns.saturating_sub(stamp.sent_ns));
                }
            }
        }
        if first > 0 {
            Counters::add(&self.counters.delivered, first);
            Counters::mark_max(&self.counters.last_delivery_ns, received_ns);
        }
    }

    pub fn stop_consumers(&self) {
        self.stop_consumers.send_replace(true);
    }

    /// A receiver whose `wait_for(|s| *s)` resolves once consumers must stop.
    pub fn consumer_stop(&self) -> watch::Receiver<bool> {
        self.stop_consumers.subscribe()
    }

    /// Confirmed copies not delivered yet, over every ledger.
    pub fn missing(&self) -> u64 {
        let published = self.publish_ledger();
        (0..self.deliveries.len())
            .map(|i| self.delivery_ledger(i).missing(&published))
            .sum()
    }

    /// The final tally. Call once the tasks are joined.
    pub fn verdict(&self) -> Verdict {
        let published = self.publish_ledger();
        let guards: Vec<_> = (0..self.deliveries.len())
            .map(|i| self.delivery_ledger(i))
            .collect();
        let ledgers: Vec<&DeliveryLedger> = guards.iter().map(|g| &**g).collect();
        verify::verify(&published, &ledgers)
    }
}

/// Running publisher tasks.
pub struct Publishers {
    set: JoinSet<anyhow::Result<()>>,
}

impl Publishers {
    pub fn new() -> Self {
        Self {
            set: JoinSet::new(),
        }
    }

    pub fn spawn(
        &mut self,
        task: impl std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    ) {
        self.set.spawn(task);
    }

    /// Waits for every publisher; the first failure aborts the others.
    pub async fn join(&mut self) -> anyhow::Result<()> {
        while let Some(done) = self.set.join_next().await {
            flatten(done)?;
        }
        Ok(())
    }
}

/// Running consumer tasks; each answers its latency histogram when it stops.
pub struct Consumers {
    set: JoinSet<anyhow::Result<Latency>>,
    latency: Latency,
}

impl Consumers {
    pub fn new() -> Self {
        Self {
            set: JoinSet::new(),
            latency: Latency::new(),
        }
    }

    pub fn spawn(
        &mut self,
        task: impl std::future::Future<Output = anyhow::Result<Latency>> + Send + 'static,
    ) {
        self.set.spawn(task);
    }

    /// Resolves only when a consumer fails (never while they all run), so it
    /// can race the publishers and the drain in a `select!`.
    pub async fn failure(&mut self) -> anyhow::Error {
        loop {
            match self.set.join_next().await {
                None => std::future::pending::<()>().await,
                Some(done) => match flatten(done) {
                    Ok(latency) => self.latency.merge(&latency),
                    Err(e) => return e,
                },
            }
        }
    }

    /// Stops the consumers and answers their merged latencies.
    pub async fn finish(mut self, state: &RunState) -> anyhow::Result<Latency> {
        state.stop_consumers();
        while let Some(done) = self.set.join_next().await {
            self.latency.merge(&flatten(done)?);
        }
        Ok(self.latency)
    }
}

fn flatten<T>(done: Result<anyhow::Result<T>, tokio::task::JoinError>) -> anyhow::Result<T> {
    match done {
        Ok(result) => result,
        Err(e) => Err(anyhow::anyhow!("a bench task failed: {e}")),
    }
}

/// Waits until `expected` consumers have said they are ready (subscribed),
/// so the first publish does not race the subscriptions.
pub async fn wait_ready(
    state: &RunState,
    expected: u64,
    consumers: &mut Consumers,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let ready = async {
        while Counters::get(&state.counters.consumers_ready) < expected {
            if Instant::now() >= deadline {
                anyhow::bail!("consumers not subscribed after {READY_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    };
    tokio::select! {
        result = ready => result,
        e = consumers.failure() => Err(e),
    }
}

/// Waits until every confirmed copy has arrived (true), or until nothing new
/// arrived for `timeout` (false: what is missing then is lost).
pub async fn drain(state: &RunState, timeout: Duration) -> bool {
    let mut last_delivered = Counters::get(&state.counters.delivered);
    let mut last_progress = Instant::now();
    loop {
        if state.missing() == 0 {
            return true;
        }
        let delivered = Counters::get(&state.counters.delivered);
        if delivered != last_delivered {
            last_delivered = delivered;
            last_progress = Instant::now();
        } else if last_progress.elapsed() >= timeout {
            tracing::debug!(missing = state.missing(), "drain timed out");
            return false;
        }
        tokio::time::sleep(DRAIN_CHECK_INTERVAL).await;
    }
}
