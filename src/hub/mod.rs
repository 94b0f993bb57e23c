//! The hub: registry of topics and queues, fan-out with filter policies, the
//! long-poll waiters and timers around each queue engine.

pub mod filter;
