//! Server configuration: defaults, then `pubq.toml`, then `PUBQ_*` environment
//! variables, then command-line flags (each overriding the one before). The file
//! may also declare topics, queues and subscriptions that exist at boot, so a
//! deployment is reproducible.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::auth::{AuthArgs, AuthConfig, AuthSection};
use crate::model::{QueueName, QueueSettingsPatch, TopicName, TopicSettingsPatch};

/// Default listen address of the contract.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7733";

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid duration {0:?}: use 30s, 5m, 1h or plain seconds")]
    Duration(String),
    #[error("invalid setting: {0}")]
    Invalid(String),
}

/// When the storage layer makes writes durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// Answer only after the write is on disk (group commit).
    #[default]
    Always,
    /// Answer after the write, sync every `--fsync-interval`: a process crash
    /// loses nothing, a machine crash up to one interval.
    Interval,
    /// Answer after the write; syncing is left to the operating system.
    Never,
}

/// Command-line flags of `pubq serve`. Every field is optional so that an
/// absent flag leaves the file's (or the default) value alone.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:7733].
    #[arg(long, env = "PUBQ_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory for durable data [default: ./pubq-data].
    #[arg(long, env = "PUBQ_DATA_DIR", conflicts_with = "memory")]
    pub data_dir: Option<PathBuf>,
    /// Keep everything in memory only (lost on restart).
    #[arg(long, env = "PUBQ_MEMORY")]
    pub memory: bool,
    /// Configuration file (TOML).
    #[arg(long, env = "PUBQ_CONFIG")]
    pub config: Option<PathBuf>,
    /// When writes are made durable [default: always].
    #[arg(long, env = "PUBQ_FSYNC", value_enum)]
    pub fsync: Option<FsyncPolicy>,
    /// With `--fsync interval`: how often to sync (e.g. 10ms) [default: 10ms].
    #[arg(long, env = "PUBQ_FSYNC_INTERVAL", value_parser = parse_duration)]
    pub fsync_interval: Option<Duration>,
    /// Largest request body in bytes [default: 16 MiB].
    #[arg(long, env = "PUBQ_MAX_REQUEST_BYTES")]
    pub max_request_bytes: Option<usize>,
    /// Most long-poll receives parked on one queue at once [default: 10000].
    #[arg(long, env = "PUBQ_MAX_WAITERS_PER_QUEUE")]
    pub max_waiters_per_queue: Option<usize>,
    /// Most queues, temporary ones included [default: 100000].
    #[arg(long, env = "PUBQ_MAX_QUEUES")]
    pub max_queues: Option<usize>,
    /// Most topics [default: 100000].
    #[arg(long, env = "PUBQ_MAX_TOPICS")]
    pub max_topics: Option<usize>,
    /// Most subscriptions on one topic, WebSocket topic subscribers included
    /// [default: 100000].
    #[arg(long, env = "PUBQ_MAX_SUBSCRIPTIONS_PER_TOPIC")]
    pub max_subscriptions_per_topic: Option<usize>,
    /// Bytes of queued messages kept in memory; past it, messages already
    /// on disk are read back from the log when delivered (durable mode)
    /// [default: 128 MiB].
    #[arg(long, env = "PUBQ_MESSAGE_CACHE_BYTES")]
    pub message_cache_bytes: Option<u64>,
    /// How long a shutdown waits for requests in progress (e.g. 10s).
    #[arg(long, env = "PUBQ_SHUTDOWN_GRACE", value_parser = parse_duration)]
    pub shutdown_grace: Option<Duration>,
    /// How long a WebSocket topic subscription can be resumed after its
    /// connection went away [default: 60s].
    #[arg(long, env = "PUBQ_RESUME_SECONDS", value_parser = parse_duration)]
    pub resume_seconds: Option<Duration>,
    /// Largest WebSocket frame accepted; larger ones close with 1009 [default: 2 MiB].
    #[arg(long, env = "PUBQ_MAX_FRAME_BYTES")]
    pub max_frame_bytes: Option<usize>,
    /// Bytes queued for one WebSocket client before it is closed with 1008
    /// "slow consumer" [default: 4 MiB].
    #[arg(long, env = "PUBQ_WS_OUTBOX_BYTES")]
    pub ws_outbox_bytes: Option<usize>,
    /// A WebSocket peer silent this long is closed [default: 60s].
    #[arg(long, env = "PUBQ_IDLE_TIMEOUT", value_parser = parse_duration)]
    pub idle_timeout: Option<Duration>,
    /// Most subscriptions on one WebSocket connection [default: 100].
    #[arg(long, env = "PUBQ_WS_MAX_SUBSCRIPTIONS")]
    pub ws_max_subscriptions: Option<usize>,
    #[command(flatten)]
    pub auth: AuthArgs,
    /// Serve HTTPS and WSS with this PEM certificate chain (leaf first);
    /// needs --tls-key. Both files are read again on SIGHUP.
    #[arg(long, env = "PUBQ_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(long, env = "PUBQ_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Most client connections open at once, WebSocket ones included; a
    /// connection past it is closed as soon as it is accepted [default: 10000].
    #[arg(long, env = "PUBQ_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Time a client has to send a request's headers, counted from when the
    /// server starts waiting for them (a new connection, or the previous
    /// answer on a keep-alive one); then the connection is closed [default: 10s].
    #[arg(long, env = "PUBQ_HEADER_TIMEOUT", value_parser = parse_duration)]
    pub header_timeout: Option<Duration>,
    /// Time a client has to complete the TLS handshake [default: 10s].
    #[arg(long, env = "PUBQ_TLS_HANDSHAKE_TIMEOUT", value_parser = parse_duration)]
    pub tls_handshake_timeout: Option<Duration>,
    /// Encrypt message bodies, attributes, group and dedup ids in the data
    /// directory with the 32-byte key in this file (raw, 64 hex digits or
    /// base64; `pubq encryption-key` makes one). It becomes the active key;
    /// older keys for reading are listed in `[storage.encryption]`.
    #[arg(
        long,
        env = "PUBQ_ENCRYPTION_KEY_FILE",
        value_name = "FILE",
        help_heading = "Encryption at rest"
    )]
    pub encryption_key_file: Option<PathBuf>,
    /// The active key itself: 64 hex digits or base64 of 32 bytes. Prefer the
    /// environment variable or a file: a flag shows in process lists.
    #[arg(
        long,
        env = "PUBQ_ENCRYPTION_KEY",
        hide_env_values = true,
        value_name = "KEY",
        conflicts_with = "encryption_key_file",
        help_heading = "Encryption at rest"
    )]
    pub encryption_key: Option<SecretText>,
    /// The id records written with the active key carry [default: "k" and
    /// 8 hex digits of a fingerprint of the key].
    #[arg(
        long,
        env = "PUBQ_ENCRYPTION_KEY_ID",
        value_name = "ID",
        help_heading = "Encryption at rest"
    )]
    pub encryption_key_id: Option<String>,
}

/// A secret given as text (an encryption key in an environment variable):
/// never printed by `Debug`, wiped from memory when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretText(String);

impl SecretText {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretText(<redacted>)")
    }
}

impl std::str::FromStr for SecretText {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_string()))
    }
}

impl Drop for SecretText {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// Parses `30s`, `5m`, `1h`, `250ms` or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, ConfigError> {
    let t = s.trim();
    let err = || ConfigError::Duration(s.to_string());
    let (num, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let n: u64 = num.parse().map_err(|_| err())?;
    let ms = match unit {
        "ms" => n,
        "s" => n.checked_mul(1000).ok_or_else(err)?,
        "m" => n.checked_mul(60_000).ok_or_else(err)?,
        "h" => n.checked_mul(3_600_000).ok_or_else(err)?,
        _ => return Err(err()),
    };
    Ok(Duration::from_millis(ms))
}

/// `[server]` table of `pubq.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub memory: Option<bool>,
    pub fsync: Option<FsyncPolicy>,
    pub fsync_interval_ms: Option<u64>,
    pub max_request_bytes: Option<usize>,
    pub max_waiters_per_queue: Option<usize>,
    pub max_queues: Option<usize>,
    pub max_topics: Option<usize>,
    pub max_subscriptions_per_topic: Option<usize>,
    pub message_cache_bytes: Option<u64>,
    pub shutdown_grace_seconds: Option<u64>,
    pub resume_seconds: Option<u64>,
    pub max_frame_bytes: Option<usize>,
    pub ws_outbox_bytes: Option<usize>,
    pub idle_timeout_seconds: Option<u64>,
    pub ws_max_subscriptions: Option<usize>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub max_connections: Option<usize>,
    pub header_timeout_seconds: Option<u64>,
    pub tls_handshake_timeout_seconds: Option<u64>,
}

/// `[storage]` table of `pubq.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    /// Encryption at rest (see `docs/security.md`).
    pub encryption: Option<EncryptionSection>,
}

/// `[storage.encryption]`: the keys records are sealed with.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionSection {
    /// Id of the key new records are sealed with; the others are kept for
    /// reading what they sealed. Overridden by `--encryption-key-file` /
    /// `PUBQ_ENCRYPTION_KEY`.
    pub active: Option<String>,
    #[serde(default)]
    pub keys: Vec<EncryptionKeyDecl>,
}

/// `[[storage.encryption.keys]]`: one key, from a file or an environment
/// variable (exactly one of them).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionKeyDecl {
    /// The id records sealed with this key carry: `[A-Za-z0-9_.-]`, at most
    /// 64 characters. Never reuse an id for another key.
    pub id: String,
    /// A file holding the key: 32 raw bytes, 64 hex digits or base64.
    pub file: Option<PathBuf>,
    /// The name of an environment variable holding the key (hex or base64).
    pub env: Option<String>,
}

/// A topic declared in `pubq.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicDecl {
    pub name: TopicName,
    #[serde(flatten)]
    pub settings: TopicSettingsPatch,
}

/// A queue declared in `pubq.toml`.
#[derive(Debug, Clone)]
pub struct QueueDecl {
    pub name: QueueName,
    pub settings: QueueSettingsPatch,
}

impl<'de> Deserialize<'de> for QueueDecl {
    /// `name` plus the settings, with unknown keys refused: `#[serde(flatten)]`
    /// would silently drop a misspelt setting.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            name: QueueName,
            #[serde(flatten)]
            rest: toml::Table,
        }
        let raw = Raw::deserialize(d)?;
        let settings = QueueSettingsPatch::deserialize(toml::Value::Table(raw.rest))
            .map_err(|e| serde::de::Error::custom(format!("queue {}: {e}", raw.name)))?;
        Ok(Self {
            name: raw.name,
            settings,
        })
    }
}

/// A subscription declared in `pubq.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionDecl {
    pub topic: TopicName,
    pub queue: QueueName,
    /// A filter policy, as in the HTTP API (TOML tables map to JSON objects).
    pub filter: Option<serde_json::Value>,
}

/// The whole of `pubq.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub topics: Vec<TopicDecl>,
    #[serde(default)]
    pub queues: Vec<QueueDecl>,
    #[serde(default)]
    pub subscriptions: Vec<SubscriptionDecl>,
    /// API keys, JWT keys, rates (see `docs/security.md`).
    #[serde(default)]
    pub auth: AuthSection,
    /// Storage settings beyond `[server]`: encryption at rest.
    #[serde(default)]
    pub storage: StorageSection,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }
}

/// Where the hub keeps its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageConfig {
    Memory,
    Disk {
        dir: PathBuf,
        fsync: FsyncPolicy,
        fsync_interval: Duration,
    },
}

/// Where one encryption key's 32 bytes come from. Key material is read
/// when the server starts (`storage::Keyring::load`), not here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A file: 32 raw bytes, 64 hex digits or base64 (whitespace around it
    /// is ignored).
    File(PathBuf),
    /// An environment variable holding hex or base64, by name.
    Env(String),
    /// The text itself (`PUBQ_ENCRYPTION_KEY`).
    Value(SecretText),
}

/// One encryption key as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    /// `None`: derived from the key (`k` + 8 hex digits of a fingerprint).
    pub id: Option<String>,
    pub source: KeySource,
}

/// Encryption at rest, resolved: the key new records are sealed with and
/// the older ones kept for reading. No active key: records are written in
/// clear (and a directory holding sealed ones is refused).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncryptionConfig {
    pub active: Option<KeySpec>,
    pub older: Vec<KeySpec>,
}

impl EncryptionConfig {
    /// Flags and environment (the active key) over `[storage.encryption]`.
    pub fn resolve(
        file: Option<&EncryptionSection>,
        args: &ServeArgs,
    ) -> Result<Self, ConfigError> {
        let invalid = |m: String| ConfigError::Invalid(m);
        let mut older = Vec::new();
        let mut declared_active = None;
        if let Some(sec) = file {
            for k in &sec.keys {
                let source = match (&k.file, &k.env) {
                    (Some(f), None) => KeySource::File(f.clone()),
                    (None, Some(e)) => KeySource::Env(e.clone()),
                    _ => {
                        return Err(invalid(format!(
                            "[[storage.encryption.keys]] id = {:?}: give exactly one of `file` \
                             and `env`",
                            k.id
                        )))
                    }
                };
                let spec = KeySpec {
                    id: Some(k.id.clone()),
                    source,
                };
                if sec.active.as_deref() == Some(k.id.as_str()) && declared_active.is_none() {
                    declared_active = Some(spec);
                } else {
                    older.push(spec);
                }
            }
            if let Some(a) = &sec.active {
                if declared_active.is_none() {
                    return Err(invalid(format!(
                        "[storage.encryption] active = {a:?} names no key of \
                         [[storage.encryption.keys]]"
                    )));
                }
            }
        }
        let flag = match (&args.encryption_key_file, &args.encryption_key) {
            (Some(f), _) => Some(KeySource::File(f.clone())),
            (None, Some(v)) => Some(KeySource::Value(v.clone())),
            (None, None) => None,
        };
        let active = match flag {
            Some(source) => {
                // The flag's key is the active one; a key `active` named in
                // the file stays readable.
                older.extend(declared_active);
                Some(KeySpec {
                    id: args.encryption_key_id.clone(),
                    source,
                })
            }
            None if args.encryption_key_id.is_some() => {
                return Err(invalid(
                    "--encryption-key-id needs --encryption-key-file or PUBQ_ENCRYPTION_KEY".into(),
                ))
            }
            None if declared_active.is_none() && !older.is_empty() => {
                return Err(invalid(
                    "[storage.encryption] lists keys but no `active` one: name the key new \
                     records are written with (active = \"...\"), or pass \
                     --encryption-key-file"
                        .into(),
                ))
            }
            None => declared_active,
        };
        Ok(Self { active, older })
    }

    /// Whether records are sealed.
    pub fn enabled(&self) -> bool {
        self.active.is_some()
    }
}

/// Named limits that keep one client from hurting others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// 413 `RequestTooLarge` past this.
    pub max_request_bytes: usize,
    /// 429 `Throttled` for a receive that would park past this.
    pub max_waiters_per_queue: usize,
    /// 409 `LimitExceeded` for a create past these.
    pub max_queues: usize,
    pub max_topics: usize,
    pub max_subscriptions_per_topic: usize,
    /// Bytes of queued messages held in memory before the pager swaps
    /// written ones for their disk location.
    pub message_cache_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_bytes: 16 * 1024 * 1024,
            max_waiters_per_queue: 10_000,
            max_queues: 100_000,
            max_topics: 100_000,
            max_subscriptions_per_topic: 100_000,
            message_cache_bytes: 128 * 1024 * 1024,
        }
    }
}

/// WebSocket limits and timers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsConfig {
    /// Frames larger than this close the connection with 1009.
    pub max_frame_bytes: usize,
    /// Queued outgoing bytes past this close the connection with 1008.
    pub outbox_bytes: usize,
    /// The server pings this often.
    pub ping_every: Duration,
    /// A peer silent this long is closed.
    pub idle_timeout: Duration,
    /// How long a topic subscription's temporary queue waits for a resume.
    pub resume_window: Duration,
    /// Most subscriptions per connection.
    pub max_subscriptions: usize,
    /// Without a token in the header or query, the `auth` frame must come
    /// within this long (when authentication is configured).
    pub auth_timeout: Duration,
}

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            max_frame_bytes: 2 * 1024 * 1024,
            outbox_bytes: 4 * 1024 * 1024,
            ping_every: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            resume_window: Duration::from_secs(60),
            max_subscriptions: 100,
            auth_timeout: Duration::from_secs(10),
        }
    }
}

/// The certificate and key files of TLS. Relative paths are relative to the
/// server's working directory, as `data_dir` is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key of the leaf.
    pub key: PathBuf,
}

/// Connection-level settings: TLS and the bounds the accept loop enforces
/// (see `crate::net`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// `None`: plain HTTP.
    pub tls: Option<TlsFiles>,
    /// Open connections (WebSocket ones included) past which a newly
    /// accepted connection is closed at once.
    pub max_connections: usize,
    /// A connection that has not sent a whole request head this long after
    /// the server started waiting for one is closed (slowloris, idle
    /// keep-alive connections).
    pub header_timeout: Duration,
    /// A TLS handshake that takes longer is abandoned.
    pub tls_handshake_timeout: Duration,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            tls: None,
            max_connections: 10_000,
            header_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
        }
    }
}

impl NetConfig {
    /// `https` with TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

/// Everything `pubq serve` needs, resolved.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub storage: StorageConfig,
    pub limits: Limits,
    pub shutdown_grace: Duration,
    pub ws: WsConfig,
    /// Keys, grants, rates.
    pub auth: AuthConfig,
    /// TLS and connection limits.
    pub net: NetConfig,
    /// Encryption at rest of the data directory.
    pub encryption: EncryptionConfig,
    /// Resources to declare at boot.
    pub declare: FileConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().expect("constant address parses"),
            storage: StorageConfig::Memory,
            limits: Limits::default(),
            shutdown_grace: Duration::from_secs(10),
            ws: WsConfig::default(),
            auth: AuthConfig::default(),
            net: NetConfig::default(),
            encryption: EncryptionConfig::default(),
            declare: FileConfig::default(),
        }
    }
}

impl ServerConfig {
    /// Defaults ← file ← environment and flags (clap has merged those two).
    pub fn resolve(args: &ServeArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(p) => FileConfig::load(p)?,
            None => FileConfig::default(),
        };
        Self::resolve_with(args, file)
    }

    /// [`resolve`](Self::resolve) with the file already parsed: no IO.
    pub fn resolve_with(args: &ServeArgs, file: FileConfig) -> Result<Self, ConfigError> {
        let s = &file.server;
        let d = Limits::default();
        let listen = args
            .listen
            .or(s.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("constant address parses"));
        let memory = args.memory || (args.data_dir.is_none() && s.memory.unwrap_or(false));
        let storage = if memory {
            StorageConfig::Memory
        } else {
            StorageConfig::Disk {
                dir: args
                    .data_dir
                    .clone()
                    .or_else(|| s.data_dir.clone())
                    .unwrap_or_else(|| PathBuf::from("./pubq-data")),
                fsync: args.fsync.or(s.fsync).unwrap_or_default(),
                fsync_interval: args
                    .fsync_interval
                    .or(s.fsync_interval_ms.map(Duration::from_millis))
                    .unwrap_or(Duration::from_millis(10)),
            }
        };
        let limits = Limits {
            max_request_bytes: args
                .max_request_bytes
                .or(s.max_request_bytes)
                .unwrap_or(d.max_request_bytes),
            max_waiters_per_queue: args
                .max_waiters_per_queue
                .or(s.max_waiters_per_queue)
                .unwrap_or(d.max_waiters_per_queue),
            max_queues: args.max_queues.or(s.max_queues).unwrap_or(d.max_queues),
            max_topics: args.max_topics.or(s.max_topics).unwrap_or(d.max_topics),
            max_subscriptions_per_topic: args
                .max_subscriptions_per_topic
                .or(s.max_subscriptions_per_topic)
                .unwrap_or(d.max_subscriptions_per_topic),
            message_cache_bytes: args
                .message_cache_bytes
                .or(s.message_cache_bytes)
                .unwrap_or(d.message_cache_bytes),
        };
        let shutdown_grace = args
            .shutdown_grace
            .or(s.shutdown_grace_seconds.map(Duration::from_secs))
            .unwrap_or(Duration::from_secs(10));
        let w = WsConfig::default();
        let ws = WsConfig {
            max_frame_bytes: args
                .max_frame_bytes
                .or(s.max_frame_bytes)
                .unwrap_or(w.max_frame_bytes),
            outbox_bytes: args
                .ws_outbox_bytes
                .or(s.ws_outbox_bytes)
                .unwrap_or(w.outbox_bytes),
            idle_timeout: args
                .idle_timeout
                .or(s.idle_timeout_seconds.map(Duration::from_secs))
                .unwrap_or(w.idle_timeout),
            resume_window: args
                .resume_seconds
                .or(s.resume_seconds.map(Duration::from_secs))
                .unwrap_or(w.resume_window),
            max_subscriptions: args
                .ws_max_subscriptions
                .or(s.ws_max_subscriptions)
                .unwrap_or(w.max_subscriptions),
            auth_timeout: args.auth.ws_auth_timeout.unwrap_or(w.auth_timeout),
            ..w
        };
        let auth = AuthConfig::resolve(&file.auth, &args.auth);
        let net = resolve_net(args, s)?;
        let encryption = EncryptionConfig::resolve(file.storage.encryption.as_ref(), args)?;
        Ok(Self {
            listen,
            storage,
            limits,
            shutdown_grace,
            ws,
            auth,
            net,
            encryption,
            declare: file,
        })
    }
}

/// The `[server]` TLS and connection settings under the flags.
fn resolve_net(args: &ServeArgs, s: &ServerSection) -> Result<NetConfig, ConfigError> {
    let d = NetConfig::default();
    let cert = args.tls_cert.clone().or_else(|| s.tls_cert.clone());
    let key = args.tls_key.clone().or_else(|| s.tls_key.clone());
    let tls = match (cert, key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        (None, None) => None,
        (Some(_), None) => {
            return Err(ConfigError::Invalid(
                "--tls-cert needs --tls-key (the certificate's private key)".into(),
            ))
        }
        (None, Some(_)) => {
            return Err(ConfigError::Invalid(
                "--tls-key needs --tls-cert (the certificate chain)".into(),
            ))
        }
    };
    let net = NetConfig {
        tls,
        max_connections: args
            .max_connections
            .or(s.max_connections)
            .unwrap_or(d.max_connections),
        header_timeout: args
            .header_timeout
            .or(s.header_timeout_seconds.map(Duration::from_secs))
            .unwrap_or(d.header_timeout),
        tls_handshake_timeout: args
            .tls_handshake_timeout
            .or(s.tls_handshake_timeout_seconds.map(Duration::from_secs))
            .unwrap_or(d.tls_handshake_timeout),
    };
    if net.max_connections == 0 {
        return Err(ConfigError::Invalid(
            "--max-connections must be at least 1".into(),
        ));
    }
    if net.header_timeout.is_zero() || net.tls_handshake_timeout.is_zero() {
        return Err(ConfigError::Invalid(
            "--header-timeout and --tls-handshake-timeout must be longer than zero".into(),
        ));
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_or_plain_seconds() {
        assert_eq!(parse_duration("30").ok(), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("30s").ok(), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m").ok(), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h").ok(), Some(Duration::from_secs(3600)));
        assert_eq!(
            parse_duration("250ms").ok(),
            Some(Duration::from_millis(250))
        );
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn file_declares_resources_and_flags_override_it() {
        let file = FileConfig::parse(
            r#"
            [server]
            listen = "127.0.0.1:9000"
            max_request_bytes = 1000

            [[topics]]
            name = "orders"

            [[queues]]
            name = "email"
            visibility_timeout_seconds = 60
            dead_letter = { queue = "email-dlq", max_receives = 5 }

            [[queues]]
            name = "email-dlq"

            [[subscriptions]]
            topic = "orders"
            queue = "email"
            filter = { type = ["order_placed"] }
            "#,
        )
        .expect("valid config");
        assert_eq!(file.queues.len(), 2);
        assert_eq!(file.queues[0].settings.visibility_timeout_seconds, Some(60));
        assert!(file.subscriptions[0].filter.is_some());
    }

    #[test]
    fn unknown_keys_in_the_file_are_errors() {
        assert!(FileConfig::parse("[server]\nlisten_on = \"x\"").is_err());
        let typo = FileConfig::parse("[[queues]]\nname = \"q\"\ndelay_secs = 5");
        assert!(typo.is_err_and(|e| e.contains("delay_secs")));
        assert!(FileConfig::parse("[[topics]]\nname = \"bad name\"").is_err());
    }

    #[test]
    fn tls_and_connection_limits_resolve_from_file_and_flags() {
        let file = FileConfig::parse(
            r#"
            [server]
            tls_cert = "cert.pem"
            tls_key = "key.pem"
            max_connections = 50
            header_timeout_seconds = 3
            "#,
        )
        .expect("valid config");
        let args = ServeArgs {
            max_connections: Some(7),
            ..ServeArgs::default()
        };
        let net = resolve_net(&args, &file.server).expect("resolves");
        assert_eq!(
            net.tls,
            Some(TlsFiles {
                cert: "cert.pem".into(),
                key: "key.pem".into()
            })
        );
        assert_eq!(net.scheme(), "https");
        assert_eq!(net.max_connections, 7);
        assert_eq!(net.header_timeout, Duration::from_secs(3));
        assert_eq!(net.tls_handshake_timeout, Duration::from_secs(10));

        let plain = resolve_net(&ServeArgs::default(), &ServerSection::default()).expect("ok");
        assert_eq!(plain, NetConfig::default());
        assert_eq!(plain.scheme(), "http");
    }

    #[test]
    fn encryption_keys_resolve_from_the_file_and_the_flags() {
        let file = FileConfig::parse(
            r#"
            [storage.encryption]
            active = "k2"
            [[storage.encryption.keys]]
            id = "k1"
            file = "/etc/pubq/k1.key"
            [[storage.encryption.keys]]
            id = "k2"
            env = "PUBQ_K2"
            "#,
        )
        .expect("valid config");
        let sec = file.storage.encryption.as_ref();
        let c = EncryptionConfig::resolve(sec, &ServeArgs::default()).expect("resolves");
        assert_eq!(
            c.active,
            Some(KeySpec {
                id: Some("k2".into()),
                source: KeySource::Env("PUBQ_K2".into())
            })
        );
        assert_eq!(c.older.len(), 1);
        assert_eq!(c.older[0].id.as_deref(), Some("k1"));

        // A flag's key is the active one; every key of the file is kept for reading.
        let args = ServeArgs {
            encryption_key_file: Some("/etc/pubq/k3.key".into()),
            encryption_key_id: Some("k3".into()),
            ..ServeArgs::default()
        };
        let c = EncryptionConfig::resolve(sec, &args).expect("resolves");
        assert_eq!(c.active.as_ref().and_then(|k| k.id.as_deref()), Some("k3"));
        assert_eq!(c.older.len(), 2);

        let env_only = ServeArgs {
            encryption_key: Some(SecretText::new("00".repeat(32))),
            ..ServeArgs::default()
        };
        let c = EncryptionConfig::resolve(None, &env_only).expect("resolves");
        assert!(c.enabled());
        assert_eq!(c.active.as_ref().and_then(|k| k.id.clone()), None);
        assert!(!format!("{c:?}").contains("0000"), "no key in Debug output");

        let none = EncryptionConfig::resolve(None, &ServeArgs::default()).expect("resolves");
        assert!(!none.enabled());
    }

    #[test]
    fn inconsistent_encryption_settings_are_refused() {
        let parse = |t: &str| FileConfig::parse(t).expect("valid toml");
        let resolve = |f: &FileConfig, a: &ServeArgs| {
            EncryptionConfig::resolve(f.storage.encryption.as_ref(), a)
        };
        let no_active = parse("[[storage.encryption.keys]]\nid = \"k1\"\nfile = \"k\"");
        assert!(resolve(&no_active, &ServeArgs::default()).is_err());
        let bad_active = parse(
            "[storage.encryption]\nactive = \"k9\"\n[[storage.encryption.keys]]\nid = \"k1\"\nfile = \"k\"",
        );
        assert!(resolve(&bad_active, &ServeArgs::default()).is_err());
        let both = parse("[[storage.encryption.keys]]\nid = \"k1\"\nfile = \"k\"\nenv = \"E\"");
        let flag = ServeArgs {
            encryption_key_file: Some("k".into()),
            ..ServeArgs::default()
        };
        assert!(resolve(&both, &flag).is_err());
        let id_only = ServeArgs {
            encryption_key_id: Some("k1".into()),
            ..ServeArgs::default()
        };
        assert!(resolve(&FileConfig::default(), &id_only).is_err());
        assert!(FileConfig::parse("[storage.encryption]\nactiv = \"k1\"").is_err());
        assert!(FileConfig::parse("[storage]\nencrypt = true").is_err());
    }

    #[test]
    fn half_a_tls_pair_or_a_zero_limit_is_refused() {
        let cert_only = ServeArgs {
            tls_cert: Some("cert.pem".into()),
            ..ServeArgs::default()
        };
        assert!(resolve_net(&cert_only, &ServerSection::default()).is_err());
        let key_only = ServerSection {
            tls_key: Some("key.pem".into()),
            ..ServerSection::default()
        };
        assert!(resolve_net(&ServeArgs::default(), &key_only).is_err());
        let zero = ServeArgs {
            max_connections: Some(0),
            ..ServeArgs::default()
        };
        assert!(resolve_net(&zero, &ServerSection::default()).is_err());
        let zero = ServeArgs {
            header_timeout: Some(Duration::ZERO),
            ..ServeArgs::default()
        };
        assert!(resolve_net(&zero, &ServerSection::default()).is_err());
    }
}
