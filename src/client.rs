//! A typed async HTTP client for the pubq v1 API (`/work/shared/API.md`).
//!
//! It speaks only the wire contract: its request and answer types live here and
//! share nothing with the server's internals, so it can check a server the way
//! any other client would. It does no retries and keeps no state beyond the
//! connection pool; callers (the CLI, tests) decide what a failure means.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, Url};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Time allowed to open a TCP (and TLS) connection. Short: a server that does
/// not accept within this is down, and the CLI reports that as exit code 3.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Time allowed for a whole request that does not long-poll. Generous because a
/// publish answers only once the message is durable.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Added to a receive's long-poll wait to get its request timeout, so a slow
/// answer after a full wait is not mistaken for a dead server.
pub const LONG_POLL_MARGIN: Duration = Duration::from_secs(15);

/// The longest long-poll wait the contract allows; a receive without an explicit
/// wait may still park this long under the queue's `receive_wait_seconds`.
pub const MAX_WAIT_SECONDS: u64 = 20;

/// Longest piece of an unexpected answer body quoted in an error.
const QUOTED_BODY_CHARS: usize = 200;

/// Why a call did not produce the expected answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The base URL cannot address the API.
    #[error("invalid server URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// The HTTP client could not be set up (e.g. TLS initialisation).
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
    /// The server answered with the contract's error body.
    #[error("{code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// Nobody accepted the connection (refused, unreachable, DNS, connect
    /// timeout). The only case where the request certainly did nothing.
    #[error("cannot connect to {url}: {detail}")]
    Connect { url: String, detail: String },
    /// The request was sent but no answer came in time; it may have taken effect.
    #[error("request to {url} timed out")]
    Timeout { url: String },
    /// The connection failed mid-request; the request may have taken effect.
    #[error("request to {url} failed: {detail}")]
    Transport { url: String, detail: String },
    /// An answer that is not what the contract promises (wrong shape, not JSON,
    /// an error status without the contract's error body).
    #[error("unexpected answer from {url} (HTTP {status}): {detail}")]
    BadResponse {
        url: String,
        status: u16,
        detail: String,
    },
}

impl ClientError {
    /// The contract's error code, when the server sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The HTTP status, when an answer arrived.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } | Self::BadResponse { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether trying again later may succeed: the server was unreachable,
    /// overloaded (429) or not ready (503). Everything else is a verdict.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connect { .. } | Self::Timeout { .. } | Self::Transport { .. } => true,
            Self::Api { status, .. } | Self::BadResponse { status, .. } => {
                matches!(*status, 429 | 502 | 503 | 504)
            }
            Self::InvalidUrl { .. } | Self::Setup(_) => false,
        }
    }
}

/// A per-entry error inside a 200 answer (batch publish, ack, nack, visibility).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryError {
    pub code: String,
    /// Optional in the contract (receipt errors may carry only a code).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// A message to publish to a topic or send to a queue, as the wire spells it.
/// Absent fields are left out of the request, so the server's defaults apply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OutgoingMessage {
    /// Text, or standard base64 when `body_encoding` is `"base64"`.
    pub body: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_encoding: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dedup_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay_seconds: Option<u64>,
    /// RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deliver_at: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub poison: bool,
}

impl OutgoingMessage {
    /// A plain text message.
    pub fn text(body: impl Into<String>) -> Self {
        Self {
            body: body.into(),
            ..Self::default()
        }
    }
}

/// A message as received. The fields a consumer acts on are typed; everything
/// else the server sends (e.g. `dead_letter_source`) is kept in `extra`, so
/// printing a message loses nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceivedMessage {
    pub id: String,
    /// New on every receive; ack, nack and visibility take the newest one.
    pub receipt: String,
    pub body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_encoding: Option<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub receive_count: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_received_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// End-of-work marker: the consumer should stop after handling it.
    #[serde(default)]
    pub poison: bool,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

/// Parameters of one receive; absent ones take the server's (or queue's) default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ReceiveOptions {
    /// 1..100 messages at most (server default 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
    /// Long-poll wait, 0..20 (queue default `receive_wait_seconds`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_seconds: Option<u64>,
    /// Visibility override for these messages, 0..43200.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visibility_timeout_seconds: Option<u64>,
}

/// The outcome of ack, nack or visibility for one receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptOutcome {
    pub receipt: String,
    /// `None` means done (`"ok": true` on the wire).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<EntryError>,
}

impl ReceiptOutcome {
    pub fn is_ok(&self) -> bool {
        self.error.is_none()
    }
}

/// A cheap-to-clone handle on one pubq server. Clones share the connection pool.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    /// The API root; request paths are appended as percent-encoded segments, so
    /// a base with a path prefix (behind a proxy) works too.
    base: Arc<Url>,
    token: Option<Arc<str>>,
    /// The extra CA certificates (PEM) trusted for `https://`, kept for
    /// WebSocket connections (`wss://`) to the same server.
    ca_pem: Option<Arc<[u8]>>,
}

/// `{"error": {"code", "message"}}`, the contract's error body.
#[derive(Deserialize)]
struct ErrorAnswer {
    error: EntryError,
}

#[derive(Deserialize)]
struct IdsAnswer {
    ids: Vec<String>,
}

/// A batch answer: per-entry `results`, or (when every entry succeeded, as some
/// readings of the contract allow) plain `ids`.
#[derive(Deserialize)]
struct BatchAnswer {
    results: Option<Vec<BatchEntry>>,
    ids: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct BatchEntry {
    id: Option<String>,
    error: Option<EntryError>,
}

#[derive(Deserialize)]
struct MessagesAnswer {
    messages: Vec<ReceivedMessage>,
}

#[derive(Deserialize)]
struct ReceiptsAnswer {
    results: Vec<ReceiptOutcome>,
}

#[derive(Serialize)]
struct BatchRequest<'a> {
    messages: &'a [OutgoingMessage],
}

#[derive(Serialize)]
struct ReceiptsRequest<'a> {
    receipts: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    delay_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seconds: Option<u64>,
}

impl Client {
    /// A client for the server at `base_url` (e.g. `http://127.0.0.1:7733`; a
    /// missing scheme means `http://`). With a token, every request carries
    /// `Authorization: Bearer TOKEN`.
    pub fn new(base_url: &str, token: Option<String>) -> Result<Self, ClientError> {
        Self::with_ca(base_url, token, None)
    }

    /// As [`Client::new`], also trusting the CA certificates in `ca_pem` (one
    /// or more PEM certificates, e.g. a `pubq dev-cert` certificate) for
    /// `https://` servers, besides the built-in web roots.
    pub fn with_ca(
        base_url: &str,
        token: Option<String>,
        ca_pem: Option<&[u8]>,
    ) -> Result<Self, ClientError> {
        let with_scheme = if base_url.contains("://") {
            base_url.to_string()
        } else {
            format!("http://{base_url}")
        };
        let invalid = |reason: String| ClientError::InvalidUrl {
            url: base_url.to_string(),
            reason,
        };
        let base = Url::parse(&with_scheme).map_err(|e| invalid(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https".into()));
        }
        if base.cannot_be_a_base() || base.host().is_none() {
            return Err(invalid("it has no host".into()));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(invalid("it must not carry a query or fragment".into()));
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("pubq-client/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| ClientError::Setup(format!("CA certificate: {}", root_cause(&e))))?;
            if certs.is_empty() {
                return Err(ClientError::Setup(
                    "CA certificate: no PEM certificate in it".into(),
                ));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::Setup(root_cause(&e)))?;
        Ok(Self {
            http,
            base: Arc::new(base),
            token: token.map(Arc::from),
            ca_pem: ca_pem.map(Arc::from),
        })
    }

    /// The API root this client talks to.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// The extra CA certificates (PEM) this client trusts, if any.
    pub fn ca_pem(&self) -> Option<&[u8]> {
        self.ca_pem.as_deref()
    }

    // ---- topics -------------------------------------------------------------

    /// `PUT /v1/topics/{topic}`: create (idempotent). `settings` is the body,
    /// e.g. `{"fifo": true, "content_based_dedup": false}`.
    pub async fn put_topic(&self, topic: &str, settings: &Value) -> Result<Value, ClientError> {
        self.request(Method::PUT, &["v1", "topics", topic], Some(settings))
            .await
    }

    /// `GET /v1/topics`.
    pub async fn list_topics(&self) -> Result<Value, ClientError> {
        self.request(Method::GET, &["v1", "topics"], None).await
    }

    /// `GET /v1/topics/{topic}`: settings, subscriptions and counters.
    pub async fn get_topic(&self, topic: &str) -> Result<Value, ClientError> {
        self.request(Method::GET, &["v1", "topics", topic], None)
            .await
    }

    /// `DELETE /v1/topics/{topic}`.
    pub async fn delete_topic(&self, topic: &str) -> Result<Value, ClientError> {
        self.request(Method::DELETE, &["v1", "topics", topic], None)
            .await
    }

    // ---- queues -------------------------------------------------------------

    /// `PUT /v1/queues/{queue}`: create, or merge `settings` into an existing
    /// queue (omitted settings keep their values).
    pub async fn put_queue(&self, queue: &str, settings: &Value) -> Result<Value, ClientError> {
        self.request(Method::PUT, &["v1", "queues", queue], Some(settings))
            .await
    }

    /// `GET /v1/queues`.
    pub async fn list_queues(&self) -> Result<Value, ClientError> {
        self.request(Method::GET, &["v1", "queues"], None).await
    }

    /// `GET /v1/queues/{queue}`: settings plus stats.
    pub async fn get_queue(&self, queue: &str) -> Result<Value, ClientError> {
        self.request(Method::GET, &["v1", "queues", queue], None)
            .await
    }

    /// `DELETE /v1/queues/{queue}`.
    pub async fn delete_queue(&self, queue: &str) -> Result<Value, ClientError> {
        self.request(Method::DELETE, &["v1", "queues", queue], None)
            .await
    }

    /// `POST /v1/queues/{queue}/purge`: drop every message, in flight too.
    pub async fn purge_queue(&self, queue: &str) -> Result<Value, ClientError> {
        self.request(Method::POST, &["v1", "queues", queue, "purge"], None)
            .await
    }

    /// `POST /v1/queues/{dlq}/redrive`: move a DLQ's messages back to their
    /// sources in the background. Answers `{"task_id", "messages"}`.
    pub async fn redrive(
        &self,
        dlq: &str,
        max_per_second: Option<u32>,
    ) -> Result<Value, ClientError> {
        let body = match max_per_second {
            Some(n) => serde_json::json!({ "max_per_second": n }),
            None => serde_json::json!({}),
        };
        self.request(Method::POST, &["v1", "queues", dlq, "redrive"], Some(&body))
            .await
    }

    // ---- subscriptions ------------------------------------------------------

    /// `PUT /v1/topics/{topic}/subscriptions/{queue}`; re-subscribing replaces
    /// the filter.
    pub async fn subscribe(
        &self,
        topic: &str,
        queue: &str,
        filter: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let body = match filter {
            Some(f) => serde_json::json!({ "filter": f }),
            None => serde_json::json!({}),
        };
        self.request(
            Method::PUT,
            &["v1", "topics", topic, "subscriptions", queue],
            Some(&body),
        )
        .await
    }

    /// `DELETE /v1/topics/{topic}/subscriptions/{queue}`.
    pub async fn unsubscribe(&self, topic: &str, queue: &str) -> Result<Value, ClientError> {
        self.request(
            Method::DELETE,
            &["v1", "topics", topic, "subscriptions", queue],
            None,
        )
        .await
    }

    // ---- messages -----------------------------------------------------------

    /// `POST /v1/topics/{topic}/publish` of one message; answers its id.
    pub async fn publish(
        &self,
        topic: &str,
        message: &OutgoingMessage,
    ) -> Result<String, ClientError> {
        self.post_one(&["v1", "topics", topic, "publish"], message)
            .await
    }

    /// `POST /v1/topics/{topic}/publish` of a batch (1..100): one result per
    /// entry, in order, so one bad entry never hides the others.
    pub async fn publish_batch(
        &self,
        topic: &str,
        messages: &[OutgoingMessage],
    ) -> Result<Vec<Result<String, EntryError>>, ClientError> {
        self.post_batch(&["v1", "topics", topic, "publish"], messages)
            .await
    }

    /// `POST /v1/queues/{queue}/send` of one message; answers its id.
    pub async fn send(
        &self,
        queue: &str,
        message: &OutgoingMessage,
    ) -> Result<String, ClientError> {
        self.post_one(&["v1", "queues", queue, "send"], message)
            .await
    }

    /// `POST /v1/queues/{queue}/send` of a batch; see [`Client::publish_batch`].
    pub async fn send_batch(
        &self,
        queue: &str,
        messages: &[OutgoingMessage],
    ) -> Result<Vec<Result<String, EntryError>>, ClientError> {
        self.post_batch(&["v1", "queues", queue, "send"], messages)
            .await
    }

    /// `POST /v1/queues/{queue}/receive`. The request timeout covers the whole
    /// long-poll wait plus [`LONG_POLL_MARGIN`].
    pub async fn receive(
        &self,
        queue: &str,
        options: &ReceiveOptions,
    ) -> Result<Vec<ReceivedMessage>, ClientError> {
        let wait = options.wait_seconds.unwrap_or(MAX_WAIT_SECONDS);
        let timeout = Duration::from_secs(wait) + LONG_POLL_MARGIN;
        let body = to_value(options);
        let (url, answer) = self
            .exchange(
                Method::POST,
                &["v1", "queues", queue, "receive"],
                Some(&body),
                timeout,
            )
            .await?;
        Ok(decode::<MessagesAnswer>(&url, answer)?.messages)
    }

    /// `POST /v1/queues/{queue}/ack`: delete received messages.
    pub async fn ack(
        &self,
        queue: &str,
        receipts: &[String],
    ) -> Result<Vec<ReceiptOutcome>, ClientError> {
        let body = ReceiptsRequest {
            receipts,
            delay_seconds: None,
            seconds: None,
        };
        self.post_receipts(&["v1", "queues", queue, "ack"], &body)
            .await
    }

    /// `POST /v1/queues/{queue}/nack`: visible again after `delay_seconds`
    /// (0 = now).
    pub async fn nack(
        &self,
        queue: &str,
        receipts: &[String],
        delay_seconds: u64,
    ) -> Result<Vec<ReceiptOutcome>, ClientError> {
        let body = ReceiptsRequest {
            receipts,
            delay_seconds: Some(delay_seconds),
            seconds: None,
        };
        self.post_receipts(&["v1", "queues", queue, "nack"], &body)
            .await
    }

    /// `POST /v1/queues/{queue}/visibility`: hide the messages for `seconds`
    /// from now (extend or shorten).
    pub async fn visibility(
        &self,
        queue: &str,
        receipts: &[String],
        seconds: u64,
    ) -> Result<Vec<ReceiptOutcome>, ClientError> {
        let body = ReceiptsRequest {
            receipts,
            delay_seconds: None,
            seconds: Some(seconds),
        };
        self.post_receipts(&["v1", "queues", queue, "visibility"], &body)
            .await
    }

    // ---- operations ---------------------------------------------------------

    /// `GET /healthz`: the answer body when the server is alive.
    pub async fn healthz(&self) -> Result<String, ClientError> {
        self.get_text(&["healthz"]).await
    }

    /// `GET /readyz`: the answer body once recovery is done; `NotReady` before.
    pub async fn readyz(&self) -> Result<String, ClientError> {
        self.get_text(&["readyz"]).await
    }

    /// `GET /metrics`: Prometheus text.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        self.get_text(&["metrics"]).await
    }

    /// Any JSON call: `segments` are percent-encoded path segments under the
    /// base URL. The answer is the parsed JSON body, `Value::Null` when empty.
    /// Useful for endpoints this client does not wrap and for sending bodies the
    /// typed methods would never produce (tests of the server's refusals).
    pub async fn request(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let (_, answer) = self
            .exchange(method, segments, body, DEFAULT_REQUEST_TIMEOUT)
            .await?;
        Ok(answer)
    }

    /// A POST whose body the caller has already serialised, answering the raw
    /// bytes of a 2xx answer (errors are mapped as for every other call).
    ///
    /// For load generators (`pubq bench`): they build request bodies straight
    /// into one buffer and parse answers with borrowed types, skipping the
    /// `serde_json::Value` tree the typed methods go through, so the client
    /// spends its CPU on requests rather than on allocations.
    pub async fn post_raw(
        &self,
        segments: &[&str],
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<bytes::Bytes, ClientError> {
        let url = self.url(segments)?;
        let url_text = url.as_str();
        let response = self
            .authorized(self.http.post(url.clone()))
            .timeout(timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| transport_error(url_text, &e))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| transport_error(url_text, &e))?;
        if !status.is_success() {
            return Err(error_from_answer(url_text, status.as_u16(), &bytes));
        }
        Ok(bytes)
    }

    /// The token this client sends, if any (a WebSocket connection made next to
    /// it sends the same one).
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    // ---- plumbing -----------------------------------------------------------

    async fn post_one(
        &self,
        segments: &[&str],
        message: &OutgoingMessage,
    ) -> Result<String, ClientError> {
        let body = to_value(message);
        let (url, answer) = self
            .exchange(Method::POST, segments, Some(&body), DEFAULT_REQUEST_TIMEOUT)
            .await?;
        let ids = decode::<IdsAnswer>(&url, answer)?.ids;
        match <[String; 1]>::try_from(ids) {
            Ok([id]) => Ok(id),
            Err(ids) => Err(ClientError::BadResponse {
                url,
                status: 200,
                detail: format!("expected one id, got {}", ids.len()),
            }),
        }
    }

    async fn post_batch(
        &self,
        segments: &[&str],
        messages: &[OutgoingMessage],
    ) -> Result<Vec<Result<String, EntryError>>, ClientError> {
        let body = to_value(&BatchRequest { messages });
        let (url, answer) = self
            .exchange(Method::POST, segments, Some(&body), DEFAULT_REQUEST_TIMEOUT)
            .await?;
        let answer = decode::<BatchAnswer>(&url, answer)?;
        let bad = |detail: String| ClientError::BadResponse {
            url: url.clone(),
            status: 200,
            detail,
        };
        let results: Vec<Result<String, EntryError>> = match (answer.results, answer.ids) {
            (Some(entries), _) => entries
                .into_iter()
                .map(|e| match (e.id, e.error) {
                    (_, Some(err)) => Ok(Err(err)),
                    (Some(id), None) => Ok(Ok(id)),
                    (None, None) => Err(bad("a batch entry has neither id nor error".into())),
                })
                .collect::<Result<_, _>>()?,
            (None, Some(ids)) => ids.into_iter().map(Ok).collect(),
            (None, None) => return Err(bad("neither `results` nor `ids` in the answer".into())),
        };
        if results.len() != messages.len() {
            return Err(bad(format!(
                "{} results for {} messages",
                results.len(),
                messages.len()
            )));
        }
        Ok(results)
    }

    async fn post_receipts(
        &self,
        segments: &[&str],
        body: &ReceiptsRequest<'_>,
    ) -> Result<Vec<ReceiptOutcome>, ClientError> {
        let body = to_value(body);
        let (url, answer) = self
            .exchange(Method::POST, segments, Some(&body), DEFAULT_REQUEST_TIMEOUT)
            .await?;
        Ok(decode::<ReceiptsAnswer>(&url, answer)?.results)
    }

    async fn get_text(&self, segments: &[&str]) -> Result<String, ClientError> {
        let url = self.url(segments)?;
        let response = self
            .authorized(self.http.get(url.clone()))
            .timeout(DEFAULT_REQUEST_TIMEOUT)
            .send()
            .await
            .map_err(|e| transport_error(url.as_str(), &e))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| transport_error(url.as_str(), &e))?;
        if status.is_success() {
            return Ok(String::from_utf8_lossy(&bytes).into_owned());
        }
        Err(error_from_answer(url.as_str(), status.as_u16(), &bytes))
    }

    /// Sends one JSON request and reads its answer: the parsed body on 2xx, the
    /// contract's error otherwise. Also answers the URL, for error messages.
    async fn exchange(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<(String, Value), ClientError> {
        let url = self.url(segments)?;
        let url_text = url.to_string();
        let mut builder = self
            .authorized(self.http.request(method, url))
            .timeout(timeout)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(body) = body {
            builder = builder.json(body);
        }
        let response = builder
            .send()
            .await
            .map_err(|e| transport_error(&url_text, &e))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| transport_error(&url_text, &e))?;
        if !status.is_success() {
            return Err(error_from_answer(&url_text, status.as_u16(), &bytes));
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok((url_text, Value::Null));
        }
        match serde_json::from_slice(&bytes) {
            Ok(value) => Ok((url_text, value)),
            Err(e) => Err(ClientError::BadResponse {
                url: url_text,
                status: status.as_u16(),
                detail: format!("not JSON ({e}): {}", quote(&bytes)),
            }),
        }
    }

    fn authorized(&self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    fn url(&self, segments: &[&str]) -> Result<Url, ClientError> {
        let mut url = Url::clone(&self.base);
        // `new` refused bases that cannot take path segments, so this only fails
        // if that check is ever weakened; report it rather than panic.
        url.path_segments_mut()
            .map_err(|()| ClientError::InvalidUrl {
                url: self.base.to_string(),
                reason: "it cannot take a path".into(),
            })?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }
}

/// Our own request types always serialise (string keys, no fallible impls).
fn to_value<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

fn decode<T: serde::de::DeserializeOwned>(url: &str, answer: Value) -> Result<T, ClientError> {
    serde_json::from_value(answer).map_err(|e| ClientError::BadResponse {
        url: url.to_string(),
        status: 200,
        detail: format!("answer does not match the contract: {e}"),
    })
}

fn error_from_answer(url: &str, status: u16, bytes: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorAnswer>(bytes) {
        Ok(ErrorAnswer { error }) => ClientError::Api {
            status,
            code: error.code,
            message: error.message,
        },
        Err(_) => ClientError::BadResponse {
            url: url.to_string(),
            status,
            detail: format!("no error body: {}", quote(bytes)),
        },
    }
}

fn transport_error(url: &str, e: &reqwest::Error) -> ClientError {
    let url = url.to_string();
    if e.is_connect() {
        ClientError::Connect {
            url,
            detail: root_cause(e),
        }
    } else if e.is_timeout() {
        ClientError::Timeout { url }
    } else {
        ClientError::Transport {
            url,
            detail: root_cause(e),
        }
    }
}

/// reqwest's own message hides the cause ("error sending request for url
/// (...)"); the innermost source ("Connection refused") is what a person needs,
/// and the URL is already in our message.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut innermost = e;
    while let Some(next) = innermost.source() {
        innermost = next;
    }
    innermost.to_string()
}

fn quote(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut quoted: String = text.chars().take(QUOTED_BODY_CHARS).collect();
    if text.chars().count() > QUOTED_BODY_CHARS {
        quoted.push('…');
    }
    format!("{quoted:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_gets_a_scheme_and_paths_are_encoded_segments() {
        let client = Client::new("127.0.0.1:7733", None).expect("valid base");
        let url = client.url(&["v1", "queues", "a b/c"]).expect("url");
        assert_eq!(url.as_str(), "http://127.0.0.1:7733/v1/queues/a%20b%2Fc");

        let prefixed = Client::new("https://example.com/pubq/", None).expect("valid base");
        let url = prefixed.url(&["v1", "topics"]).expect("url");
        assert_eq!(url.as_str(), "https://example.com/pubq/v1/topics");
    }

    #[test]
    fn unusable_base_urls_are_refused() {
        for bad in [
            "ftp://host",
            "http://",
            "http://h/?q=1",
            "http://h/#f",
            "http://[::1",
        ] {
            assert!(
                matches!(Client::new(bad, None), Err(ClientError::InvalidUrl { .. })),
                "{bad} should be refused"
            );
        }
    }

    #[test]
    fn outgoing_message_leaves_out_absent_fields() {
        let m = OutgoingMessage::text("hi");
        assert_eq!(to_value(&m), serde_json::json!({ "body": "hi" }));
        let m = OutgoingMessage {
            poison: true,
            delay_seconds: Some(5),
            ..OutgoingMessage::text("")
        };
        assert_eq!(
            to_value(&m),
            serde_json::json!({ "body": "", "delay_seconds": 5, "poison": true })
        );
    }

    #[test]
    fn received_message_keeps_unknown_fields() {
        let wire = serde_json::json!({
            "id": "i", "receipt": "r", "body": "b", "attributes": {"k": "v"},
            "receive_count": 2, "poison": true, "dead_letter_source": "q"
        });
        let m: ReceivedMessage = serde_json::from_value(wire.clone()).expect("decodes");
        assert!(m.poison);
        assert_eq!(m.receive_count, 2);
        let back = serde_json::to_value(&m).expect("encodes");
        assert_eq!(back["dead_letter_source"], "q");
        assert_eq!(back["attributes"]["k"], "v");
    }

    #[test]
    fn error_bodies_become_api_errors_and_others_bad_responses() {
        let body = br#"{"error":{"code":"QueueNotFound","message":"no queue q"}}"#;
        let e = error_from_answer("u", 404, body);
        assert_eq!(e.code(), Some("QueueNotFound"));
        assert_eq!(e.to_string(), "QueueNotFound: no queue q");
        assert!(!e.is_transient());

        let e = error_from_answer("u", 502, b"<html>bad gateway</html>");
        assert!(matches!(e, ClientError::BadResponse { status: 502, .. }));
        assert!(e.is_transient());
    }

    #[test]
    fn receipt_outcomes_decode_ok_and_error_entries() {
        let wire = serde_json::json!({"results": [
            {"receipt": "a", "ok": true},
            {"receipt": "b", "error": {"code": "ReceiptStale"}}
        ]});
        let answer: ReceiptsAnswer = serde_json::from_value(wire).expect("decodes");
        assert!(answer.results[0].is_ok());
        assert_eq!(
            answer.results[1].error.as_ref().map(|e| e.code.as_str()),
            Some("ReceiptStale")
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_a_connect_error() {
        // Bind then drop a listener so the port is (very likely) closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("ephemeral port");
        let client = Client::new(&format!("http://127.0.0.1:{port}"), None).expect("client");
        let err = client.list_topics().await.expect_err("nothing listens");
        assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
    }
}
