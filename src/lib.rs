//! pubq: one binary that is SNS + SQS + a WebSocket push server.
//!
//! Reading order: [`model`] (names, messages, settings) → [`queue`] (the pure
//! engine of one queue) → [`hub`] (registry, fan-out, filters, long-poll
//! waiters, timers, recovery) → [`storage`] (the durable log) → [`api`]
//! (HTTP) and [`ws`] (WebSocket push), both asking [`auth`] (tokens, grants,
//! rate limits, audit) → [`net`] (accept loop, TLS, connection limits) →
//! [`server`] (bind, run, drain) → [`config`], [`client`] and [`cli`].

pub mod api;
pub mod auth;
pub mod cli;
pub mod client;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub mod hub;
pub mod model;
pub mod net;
pub mod queue;
pub mod server;
pub mod storage;
pub mod ui;
pub mod ws;
