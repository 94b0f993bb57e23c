//! The queue engine: pure, synchronous state for one queue. No IO, no tokio, no
//! JSON. Every call takes `now`; the engine reports its next deadline so the
//! shell (`hub`) can sleep until exactly then.
//!
//! What it owns: standard and FIFO ordering, leases (visibility), receipts,
//! delays, retry backoff, dead-letter decisions, retention, deduplication and
//! counters. What it does not: moving messages between queues (it hands the
//! caller [`DeadLetterMove`]s), waking waiters, persistence.

mod dedup;
mod engine;
mod receipt;
mod store;

pub use dedup::DedupWindow;
pub use engine::{
    DeadLetterMove, Delivery, EnqueueError, EnqueueOptions, EnqueueOutcome, QueueState, QueueStats,
    QueueTotals, RedriveItem, RestoreOptions, SnapshotEntry, TickOutcome,
};
pub use receipt::{Receipt, ReceiptError};
