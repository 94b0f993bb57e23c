//! The accept loop and one task per connection.
//!
//! Per accepted socket, in order: take a slot of `--max-connections` (none
//! free: close the socket at once, count and log it, keep accepting), set
//! TCP_NODELAY, spawn the connection's task. The task does the TLS handshake
//! (bounded by `--tls-handshake-timeout`), then serves HTTP/1.1 with upgrades
//! through hyper, which closes a connection whose request head has not fully
//! arrived `--header-timeout` after it began waiting for one.
//!
//! Shutdown, as `axum::serve`'s graceful shutdown did before: stop accepting,
//! tell every connection task (hyper finishes the request in progress, then
//! closes; idle keep-alive connections close at once; handshakes in progress
//! are dropped), and return once every task is done. Upgraded connections
//! (WebSocket) are no longer hyper's: their sessions close themselves with
//! 1001 on the hub's shutdown signal.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::server::TlsStream;
use tower::ServiceExt;

use super::stats::{ConnEvent, ConnStats};
use super::stream::ServerStream;
use super::tls::{Tls, TlsError};
use crate::config::NetConfig;

/// How often, at most, a burst of refused connections is logged.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(1);

/// How long the answer to plain HTTP on the TLS port waits for the request
/// head before answering anyway.
const PLAIN_HTTP_FIRST_READ: Duration = Duration::from_millis(200);

/// Most bytes of a plain HTTP request read (and dropped) on the TLS port.
const PLAIN_HTTP_DRAIN_BYTES: usize = 64 * 1024;

/// How long the loop pauses after an accept error that is not about one
/// connection (e.g. EMFILE: out of file descriptors), as hyper and axum do.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// The connection side of a server: TLS (when configured), the connection
/// slots and the counters. Made before binding, so bad TLS files stop the
/// start-up.
pub struct Endpoint {
    tls: Option<Arc<Tls>>,
    permits: Arc<Semaphore>,
    stats: ConnStats,
    header_timeout: Duration,
    tls_handshake_timeout: Duration,
}

/// What every connection task shares.
struct Shared {
    app: Router,
    tls: Option<Arc<Tls>>,
    http: http1::Builder,
    tls_handshake_timeout: Duration,
    stats: ConnStats,
}

impl Endpoint {
    /// Loads the TLS files, if any, and sets up the limits.
    pub fn new(config: &NetConfig) -> Result<Self, TlsError> {
        let tls = match &config.tls {
            Some(files) => {
                let (tls, summary) = Tls::load(files)?;
                tracing::info!(
                    cert = %files.cert.display(),
                    fingerprint = %summary.fingerprint,
                    chain = summary.chain_len,
                    "TLS on"
                );
                Some(Arc::new(tls))
            }
            None => None,
        };
        // Semaphore::MAX_PERMITS is far above any file-descriptor limit.
        let limit = config.max_connections.clamp(1, Semaphore::MAX_PERMITS);
        warn_if_fd_limit_below(limit);
        let permits = Arc::new(Semaphore::new(limit));
        Ok(Self {
            tls,
            stats: ConnStats::new(limit, permits.clone()),
            permits,
            header_timeout: config.header_timeout,
            tls_handshake_timeout: config.tls_handshake_timeout,
        })
    }

    /// The TLS state, for reloads.
    pub fn tls(&self) -> Option<&Arc<Tls>> {
        self.tls.as_ref()
    }

    pub fn stats(&self) -> &ConnStats {
        &self.stats
    }

    /// Accepts and serves until `signal` completes, then drains (see the
    /// module doc). Returns when every connection task has finished.
    pub async fn serve(
        self,
        listener: TcpListener,
        app: Router,
        signal: impl Future<Output = ()> + Send + 'static,
    ) {
        let mut http = http1::Builder::new();
        // hyper ignores the header timeout unless it has a timer.
        http.timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout);
        let shared = Arc::new(Shared {
            app,
            tls: self.tls,
            http,
            tls_handshake_timeout: self.tls_handshake_timeout,
            stats: self.stats.clone(),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(async move {
            signal.await;
            stop_tx.send_replace(true);
        });
        // Every connection task holds a receiver; `closed()` resolves once
        // all are dropped.
        let (done_tx, done_rx) = watch::channel(());
        let mut refusals = RefusalLog::default();
        let mut stopping = stop_rx.clone();
        loop {
            let accepted = tokio::select! {
                r = listener.accept() => r,
                _ = stopping.wait_for(|s| *s) => break,
            };
            let (tcp, remote) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    on_accept_error(e).await;
                    continue;
                }
            };
            let Ok(slot) = self.permits.clone().try_acquire_owned() else {
                // Closing at once keeps the slots for the clients already
                // served and tells the newcomer now, rather than leaving it
                // in the kernel's backlog until it times out.
                self.stats.count(ConnEvent::Refused);
                refusals.note(remote, &self.stats);
                drop(tcp);
                continue;
            };
            self.stats.count(ConnEvent::Accepted);
            // Small frames (a pushed message, an ack's answer) must not wait
            // for Nagle's algorithm: latency would jump to tens of ms.
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
            tokio::spawn(connection(
                shared.clone(),
                tcp,
                remote,
                slot,
                stop_rx.clone(),
                done_rx.clone(),
            ));
        }
        drop(done_rx);
        drop(listener);
        done_tx.closed().await;
    }
}

/// One connection, from handshake to close (or to its upgrade).
async fn connection(
    shared: Arc<Shared>,
    tcp: TcpStream,
    remote: SocketAddr,
    slot: OwnedSemaphorePermit,
    mut stop: watch::Receiver<bool>,
    _done: watch::Receiver<()>,
) {
    let stream = match &shared.tls {
        None => ServerStream::plain(tcp, slot),
        Some(tls) => {
            let handshake =
                tokio::time::timeout(shared.tls_handshake_timeout, handshake(tls, tcp, remote));
            let outcome = tokio::select! {
                r = handshake => r,
                _ = stop.wait_for(|s| *s) => return,
            };
            match outcome {
                Ok(Ok(s)) => ServerStream::tls(s, slot),
                Ok(Err(e)) => {
                    // Plain HTTP to the TLS port, an untrusting client, a
                    // scanner: the client's business, not an error of ours.
                    shared.stats.count(ConnEvent::TlsHandshakeFailed);
                    tracing::debug!(%remote, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    shared.stats.count(ConnEvent::TlsHandshakeTimedOut);
                    tracing::debug!(%remote, "TLS handshake timed out");
                    return;
                }
            }
        }
    };
    let app = shared.app.clone();
    let stats = shared.stats.clone();
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        // `ConnectInfo<SocketAddr>` works in handlers as with
        // `into_make_service_with_connect_info`; the counters reach /metrics.
        req.extensions_mut().insert(ConnectInfo(remote));
        req.extensions_mut().insert(stats.clone());
        app.clone().oneshot(req)
    });
    let conn = shared
        .http
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    if e.is_timeout() {
                        shared.stats.count(ConnEvent::HeaderTimeout);
                        tracing::debug!(%remote, "request head not received in time; closing");
                    } else {
                        tracing::trace!(%remote, error = %e, "connection ended with an error");
                    }
                }
                break;
            }
            _ = stop.wait_for(|s| *s), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// The TLS handshake, after a look at the first byte: a plain HTTP request
/// (an ASCII method where a TLS record type should be) gets a plain 400
/// saying to use https, rather than bytes of a TLS alert a client cannot
/// read.
async fn handshake(
    tls: &Tls,
    tcp: TcpStream,
    remote: SocketAddr,
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut first = [0u8; 1];
    if tcp.peek(&mut first).await? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    if first[0].is_ascii_uppercase() {
        tracing::debug!(%remote, "plain HTTP on the TLS port; answering 400");
        answer_plain_http(tcp).await;
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "plain HTTP request on the TLS port",
        ));
    }
    tls.acceptor().accept(tcp).await
}

/// Answers a plain HTTP request on the TLS port with 400 `InvalidRequest`
/// and closes. Reads the client's input before and after answering (up to
/// [`PLAIN_HTTP_DRAIN_BYTES`]): closing with unread input would reset the
/// connection and could destroy the answer before the client reads it. The
/// caller bounds the whole exchange by the handshake timeout.
async fn answer_plain_http(mut tcp: TcpStream) {
    let mut buf = [0u8; 4096];
    let mut drained = 0usize;
    // The request head usually arrives in one segment.
    if let Ok(Ok(n)) = tokio::time::timeout(PLAIN_HTTP_FIRST_READ, tcp.read(&mut buf)).await {
        drained += n;
    }
    let body = r#"{"error":{"code":"InvalidRequest","message":"this port speaks TLS: use https:// (or wss://)"}}"#;
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    if tcp.write_all(answer.as_bytes()).await.is_err() || tcp.shutdown().await.is_err() {
        return;
    }
    while drained < PLAIN_HTTP_DRAIN_BYTES {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}

/// Keeps the log readable under a flood of refused connections: the first
/// refusal is logged at once, later ones at most every
/// [`REFUSAL_LOG_EVERY`] with how many there were.
#[derive(Default)]
struct RefusalLog {
    last: Option<Instant>,
    since_last: u64,
}

impl RefusalLog {
    fn note(&mut self, remote: SocketAddr, stats: &ConnStats) {
        self.since_last += 1;
        let due = self.last.is_none_or(|t| t.elapsed() >= REFUSAL_LOG_EVERY);
        if due {
            tracing::warn!(
                %remote,
                refused = self.since_last,
                open = stats.open(),
                "connection limit (--max-connections) reached; closing new connections"
            );
            self.last = Some(Instant::now());
            self.since_last = 0;
        }
    }
}

/// File descriptors the server needs besides its connections: the
/// listener, log segments, snapshots, stdio, the runtime's own.
const FD_HEADROOM: u64 = 64;

/// Says so at start when the process may run out of file descriptors before
/// `--max-connections` is reached: accepts would then fail (EMFILE) and the
/// loop pause, instead of the limit's clean refusal.
fn warn_if_fd_limit_below(max_connections: usize) {
    let Some(soft) = open_files_limit() else {
        return;
    };
    let needed = max_connections as u64 + FD_HEADROOM;
    if soft < needed {
        tracing::warn!(
            open_files_limit = soft,
            max_connections,
            "the open-files limit (ulimit -n) is below --max-connections plus {FD_HEADROOM}; \
             raise it or lower --max-connections"
        );
    }
}

/// The soft `RLIMIT_NOFILE`, from `/proc/self/limits` (Linux only).
fn open_files_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

async fn on_accept_error(e: std::io::Error) {
    use std::io::ErrorKind::*;
    // Errors about one connection that went away before it was accepted.
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed; pausing before accepting again");
    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
}
