//! The integration tests: one binary that spawns the real `pubq` server (see
//! `support`) and holds it to the contract in `/work/shared/API.md` over HTTP
//! and WebSocket (`ws`, with a real tokio-tungstenite client),
//! one module per area. `docs/bad-input.md` lists every bad input tested here
//! and the test that holds it.

mod support;

mod at_rest;
mod auth;
mod bench;
mod cli;
mod config;
mod dlq;
mod durability;
mod errors;
mod fifo;
mod filters;
mod health;
mod limits;
mod longpoll;
mod publish;
mod queues;
mod receive;
mod tls;
mod topics;
mod ws;
