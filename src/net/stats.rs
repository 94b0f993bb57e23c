//! Counters of the accept loop, read by `GET /metrics` at scrape time (the
//! accept loop pays one relaxed atomic add per event, nothing per request).
//!
//! The handle travels to the metrics handler in each request's extensions
//! (`crate::net::accept` puts it there), so `api` needs no field for it and a
//! router served without this accept loop (unit tests) simply has none.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use metrics::{counter, gauge};
use tokio::sync::Semaphore;

/// A cheap-to-clone handle on one server's connection counters.
#[derive(Debug, Clone)]
pub struct ConnStats(Arc<Counters>);

#[derive(Debug)]
struct Counters {
    /// `--max-connections`.
    limit: usize,
    /// One permit per open connection; the open count is read from it, so
    /// there is no second counter to keep in step.
    permits: Arc<Semaphore>,
    accepted: AtomicU64,
    /// Closed at once because `limit` connections were open.
    refused: AtomicU64,
    header_timeouts: AtomicU64,
    tls_handshake_failures: AtomicU64,
    tls_handshake_timeouts: AtomicU64,
    tls_reloads: AtomicU64,
    tls_reload_failures: AtomicU64,
}

/// One kind of event the accept loop counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnEvent {
    Accepted,
    Refused,
    HeaderTimeout,
    TlsHandshakeFailed,
    TlsHandshakeTimedOut,
    TlsReloaded,
    TlsReloadFailed,
}

impl ConnStats {
    /// Counters for a server whose open connections hold `permits` (at most
    /// `limit` of them).
    pub fn new(limit: usize, permits: Arc<Semaphore>) -> Self {
        Self(Arc::new(Counters {
            limit,
            permits,
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            header_timeouts: AtomicU64::new(0),
            tls_handshake_failures: AtomicU64::new(0),
            tls_handshake_timeouts: AtomicU64::new(0),
            tls_reloads: AtomicU64::new(0),
            tls_reload_failures: AtomicU64::new(0),
        }))
    }

    pub fn count(&self, event: ConnEvent) {
        let c = &self.0;
        let counter = match event {
            ConnEvent::Accepted => &c.accepted,
            ConnEvent::Refused => &c.refused,
            ConnEvent::HeaderTimeout => &c.header_timeouts,
            ConnEvent::TlsHandshakeFailed => &c.tls_handshake_failures,
            ConnEvent::TlsHandshakeTimedOut => &c.tls_handshake_timeouts,
            ConnEvent::TlsReloaded => &c.tls_reloads,
            ConnEvent::TlsReloadFailed => &c.tls_reload_failures,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Connections open now (accepted and not yet closed).
    pub fn open(&self) -> usize {
        self.0
            .limit
            .saturating_sub(self.0.permits.available_permits())
    }

    /// Writes the figures into the current `metrics` recorder (the metrics
    /// handler's scrape-local one).
    pub fn record(&self) {
        let c = &self.0;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        gauge!("pubq_connections_open").set(self.open() as f64);
        gauge!("pubq_connections_max").set(c.limit as f64);
        counter!("pubq_connections_accepted_total").absolute(get(&c.accepted));
        counter!("pubq_connections_refused_total").absolute(get(&c.refused));
        counter!("pubq_connections_header_timeout_total").absolute(get(&c.header_timeouts));
        counter!("pubq_tls_handshake_failures_total").absolute(get(&c.tls_handshake_failures));
        counter!("pubq_tls_handshake_timeouts_total").absolute(get(&c.tls_handshake_timeouts));
        counter!("pubq_tls_reloads_total", "result" => "ok").absolute(get(&c.tls_reloads));
        counter!("pubq_tls_reloads_total", "result" => "error")
            .absolute(get(&c.tls_reload_failures));
    }
}
