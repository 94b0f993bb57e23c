//! pubq: one binary that is SNS + SQS + a WebSocket push server.
//!
//! Reading order: [`model`] (names, messages, settings) → [`queue`] (the pure
//! engine of one queue) → [`hub`] (registry, fan-out, filters, long-poll
//! waiters, timers) → [`storage`] (where state is kept) → [`api`] (HTTP) →
//! [`server`] (bind, run, drain) → [`config`] and [`cli`].

pub mod api;
pub mod config;
pub mod hub;
pub mod model;
pub mod queue;
pub mod server;
pub mod storage;
pub mod ui;
pub mod ws;
