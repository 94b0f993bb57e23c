//! Binding, running and draining the server.
//!
//! Start-up order: load the TLS files (if any), open storage, build the hub,
//! bind, serve (503 until recovered), recover, declare the resources of
//! `pubq.toml`, mark ready. Shutdown order (SIGINT/SIGTERM or
//! [`ServerHandle::shutdown`]): stop accepting, make parked long polls
//! return, let requests in progress finish (up to the grace period), return.
//! The accept loop itself, TLS and the connection limits live in
//! [`crate::net`].

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::{self, receipt::ReceiptCodec, AppState};
use crate::config::{FileConfig, ServerConfig, StorageConfig};
use crate::hub::{Hub, HubError};
use crate::model::{QueueSettingsPatch, SystemClock};
use crate::net::{self, Endpoint, TlsError};
use crate::storage::{DiskLog, DiskLogConfig, Keyring, KeyringError, MemoryStorage, Storage};

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("config declares {what}: {source}")]
    Declare { what: String, source: HubError },
    #[error("server failed: {0}")]
    Serve(std::io::Error),
    #[error("storage: {0}")]
    Storage(String),
    #[error("authentication settings: {0}")]
    Auth(#[from] crate::auth::AuthConfigError),
    #[error(
        "refusing to listen on {addr} without authentication: anyone who can reach it could \
         do everything. Configure API keys or JWT keys ([auth] in pubq.toml, see \
         docs/security.md), listen on a loopback address (127.0.0.1), or pass \
         --insecure-no-auth if this is really wanted"
    )]
    InsecureListen { addr: SocketAddr },
    #[error("{0}")]
    Tls(#[from] TlsError),
    #[error("encryption at rest: {0}")]
    Encryption(#[from] KeyringError),
}

/// A running server.
pub struct ServerHandle {
    /// The address it listens on (the real port when bound to port 0).
    pub addr: SocketAddr,
    pub hub: Hub,
    /// `https` with TLS, else `http`.
    pub scheme: &'static str,
    /// TLS state, for [`ServerHandle::reload_tls`].
    tls: Option<Arc<net::Tls>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), ServerError>>,
}

impl ServerHandle {
    /// `scheme://addr`, the base URL of the API.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// Reads the TLS files again, as SIGHUP does. `Ok(false)` without TLS;
    /// on an error the previous certificate keeps serving.
    pub async fn reload_tls(&self) -> Result<bool, TlsError> {
        let Some(tls) = self.tls.clone() else {
            return Ok(false);
        };
        tokio::task::spawn_blocking(move || tls.reload())
            .await
            .map_err(|e| TlsError::Task(e.to_string()))??;
        Ok(true)
    }

    /// Starts shutting down and waits until the server has stopped.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        self.stop.send_replace(true);
        self.wait().await
    }

    /// Waits until the server stops by itself (a signal).
    pub async fn wait(self) -> Result<(), ServerError> {
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(ServerError::Serve(std::io::Error::other(e))),
        }
    }
}

/// Opens storage, binds, recovers and serves; the server runs in a spawned
/// task. `/readyz` (and every `/v1` route) answers 503 `NotReady` until
/// recovery is done.
pub async fn start(config: ServerConfig) -> Result<ServerHandle, ServerError> {
    let auth = Arc::new(check_auth(&config)?);
    // First, so a bad certificate stops the start before storage is opened.
    let endpoint = Endpoint::new(&config.net)?;
    let scheme = config.net.scheme();
    let tls = endpoint.tls().cloned();
    let storage: Arc<dyn Storage> = match &config.storage {
        StorageConfig::Memory => {
            if config.encryption.enabled() {
                tracing::warn!("an encryption key is configured, but --memory writes nothing");
            }
            Arc::new(MemoryStorage)
        }
        StorageConfig::Disk {
            dir,
            fsync,
            fsync_interval,
        } => {
            let mut cfg = DiskLogConfig::new(dir.clone(), *fsync, *fsync_interval);
            let encryption = config.encryption.clone();
            let log = tokio::task::spawn_blocking(move || {
                cfg.encryption = Keyring::load(&encryption)?.map(Arc::new);
                if let Some(k) = &cfg.encryption {
                    let ids: Vec<&str> = k.ids().map(|i| i.as_str()).collect();
                    tracing::info!(active_key = %k.active_id(), keys = ?ids, "encryption at rest");
                }
                DiskLog::open(cfg).map_err(|e| ServerError::Storage(e.to_string()))
            })
            .await
            .map_err(|e| ServerError::Storage(e.to_string()))??;
            tracing::info!(data_dir = %dir.display(), fsync = ?fsync, "durable storage");
            Arc::new(log)
        }
    };
    let receipts = match storage.receipt_key() {
        Some(k) => ReceiptCodec::with_key(&k),
        None => ReceiptCodec::random(),
    };
    let hub = Hub::with_storage(
        Arc::new(SystemClock::new()),
        config.limits.clone(),
        storage.clone(),
    );
    let state = AppState::new(hub.clone(), receipts, config.ws.clone(), auth.clone());
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(ServerError::Serve)?;
    if !auth.enabled() && !addr.ip().is_loopback() {
        tracing::warn!(%addr, "listening beyond loopback without authentication (--insecure-no-auth)");
    }
    let (stop, mut stop_rx) = watch::channel(false);
    if let Some(tls) = &tls {
        net::tls::spawn_reload_on_sighup(tls.clone(), endpoint.stats().clone(), stop.subscribe());
    }
    let app = api::router(state.clone());
    let drain_hub = hub.clone();
    let grace = config.shutdown_grace;
    let serve_storage = storage.clone();
    let task = tokio::spawn(async move {
        let (drained_tx, drained_rx) = tokio::sync::oneshot::channel::<()>();
        let signal = async move {
            tokio::select! {
                _ = stop_rx.wait_for(|s| *s) => {}
                () = shutdown_signal() => {}
            }
            tracing::info!("shutting down");
            drain_hub.begin_shutdown();
            let _ = drained_tx.send(());
        };
        let serve = async move {
            endpoint.serve(listener, app, signal).await;
            Ok(())
        };
        tokio::pin!(serve);
        let r = tokio::select! {
            r = &mut serve => r,
            _ = async {
                let _ = drained_rx.await;
                tokio::time::sleep(grace).await;
            } => {
                tracing::warn!("requests still open after the grace period; closing them");
                Ok(())
            }
        };
        let _ = tokio::task::spawn_blocking(move || serve_storage.close()).await;
        r
    });
    // Recovery runs while the listener already answers /healthz and 503s.
    let report = hub
        .restore()
        .await
        .map_err(|e| ServerError::Storage(e.to_string()))?;
    if storage.is_durable() {
        tracing::info!(
            topics = report.topics,
            queues = report.queues,
            messages = report.messages,
            snapshot_records = report.storage.snapshot_records,
            log_records = report.storage.log_records,
            truncated_bytes = report.storage.truncated_bytes,
            "recovered"
        );
    }
    declare(&hub, &config.declare).await?;
    state.ready.store(true, Ordering::Release);
    spawn_checkpoints(hub.clone());
    hub.spawn_pager();
    hub.spawn_temp_reaper(config.ws.resume_window);
    Ok(ServerHandle {
        addr,
        hub,
        scheme,
        tls,
        stop,
        task,
    })
}

/// Loads the keys, and refuses to serve beyond loopback without them unless
/// `--insecure-no-auth` says so.
fn check_auth(config: &ServerConfig) -> Result<crate::auth::Auth, ServerError> {
    let auth = crate::auth::Auth::from_config(&config.auth)?;
    if auth.enabled() {
        tracing::info!("{}", auth.summary());
    } else if config.listen.ip().is_loopback() {
        tracing::warn!(
            "{}; every request is allowed, so listening on loopback only",
            auth.summary()
        );
    } else if !auth.insecure_no_auth() {
        return Err(ServerError::InsecureListen {
            addr: config.listen,
        });
    }
    Ok(auth)
}

/// Takes a checkpoint whenever storage says one is due.
fn spawn_checkpoints(hub: Hub) {
    if !hub.storage().is_durable() {
        return;
    }
    let weak = hub.downgrade();
    drop(hub);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(crate::hub::CHECKPOINT_POLL).await;
            let Some(hub) = crate::hub::Hub::upgrade(&weak) else {
                return;
            };
            if let Err(e) = hub.checkpoint_if_due().await {
                tracing::error!(error = %e, "checkpoint failed");
            }
        }
    });
}

/// Runs the server until SIGINT/SIGTERM. Prints `listening on http://ADDR`
/// (`https://` with TLS) on stdout once bound (tests and scripts read the
/// port from that line). With TLS, SIGHUP reloads the certificate and key.
pub async fn run(config: ServerConfig) -> Result<(), ServerError> {
    let secured = config.auth.has_keys();
    let handle = start(config).await?;
    if !secured {
        eprintln!(
            "warning: no API key or JWT key configured: every request is allowed{}",
            if handle.addr.ip().is_loopback() {
                "; listening on loopback only"
            } else {
                " from anywhere (--insecure-no-auth)"
            }
        );
    }
    println!("listening on {}", handle.url());
    tracing::info!(url = %handle.url(), "pubq ready");
    handle.wait().await
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Creates what `pubq.toml` declares: topics, then queues (dead-letter
/// settings in a second pass, so a queue may name a DLQ declared after it),
/// then subscriptions. Existing resources are updated, as `PUT` would.
pub async fn declare(hub: &Hub, file: &FileConfig) -> Result<(), ServerError> {
    let err = |what: String| move |source| ServerError::Declare { what, source };
    for t in &file.topics {
        hub.put_topic(&t.name, &t.settings)
            .await
            .map_err(err(format!("topic {}", t.name)))?;
    }
    for q in &file.queues {
        let first = QueueSettingsPatch {
            dead_letter: None,
            ..q.settings.clone()
        };
        hub.put_queue(&q.name, &first)
            .await
            .map_err(err(format!("queue {}", q.name)))?;
    }
    for q in file
        .queues
        .iter()
        .filter(|q| q.settings.dead_letter.is_some())
    {
        let dl = QueueSettingsPatch {
            dead_letter: q.settings.dead_letter.clone(),
            ..QueueSettingsPatch::default()
        };
        hub.put_queue(&q.name, &dl)
            .await
            .map_err(err(format!("queue {}", q.name)))?;
    }
    for s in &file.subscriptions {
        hub.subscribe(&s.topic, &s.queue, s.filter.clone())
            .await
            .map_err(err(format!("subscription {} -> {}", s.topic, s.queue)))?;
    }
    Ok(())
}
