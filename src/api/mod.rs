//! HTTP: the router, its shared state, and one handler per endpoint of the
//! contract. Handlers translate wire shapes to hub calls and back; the rules
//! live in the hub and the engine.

pub(crate) mod access;
pub(crate) mod body;
pub mod dto;
pub mod error;
mod metrics;
pub mod receipt;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Extension, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::json;

use body::{read_body, JsonBody};
use dto::{EntryOut, PublishInput, ReceiptOut, ReceiptsBody};
use error::ApiError;
use receipt::ReceiptCodec;

use access::{allow, allow_queue, throttle};

use crate::auth::{audit, Action, Auth, Principal, RateKind, Resource};
use crate::hub::{Hub, HubError, NewMessage, ReceiveRequest, MAX_BATCH};
use crate::model::{QueueName, TopicName, TopicSettingsPatch};
use crate::queue::{Receipt, ReceiptError};

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub hub: Hub,
    pub receipts: ReceiptCodec,
    /// False until recovery is done; `/readyz` answers 503 until then.
    pub ready: Arc<AtomicBool>,
    pub ws: Arc<crate::config::WsConfig>,
    /// Becomes true at shutdown (WebSocket sessions close with 1001).
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Tokens, grants and rates.
    pub auth: Arc<Auth>,
}

impl AppState {
    pub fn new(
        hub: Hub,
        receipts: ReceiptCodec,
        ws: crate::config::WsConfig,
        auth: Arc<Auth>,
    ) -> Self {
        Self {
            shutdown: hub.shutdown_watch(),
            hub,
            receipts,
            ready: Arc::new(AtomicBool::new(false)),
            ws: Arc::new(ws),
            auth,
        }
    }
}

/// The whole HTTP API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(crate::ui::index))
        .route("/ui/app.js", get(crate::ui::app_js))
        .route("/ui/style.css", get(crate::ui::style_css))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::render))
        .route("/v1/topics", get(list_topics))
        .route(
            "/v1/topics/{topic}",
            put(put_topic).get(get_topic).delete(delete_topic),
        )
        .route("/v1/topics/{topic}/publish", post(publish))
        .route(
            "/v1/topics/{topic}/subscriptions/{queue}",
            put(subscribe).delete(unsubscribe),
        )
        .route("/v1/queues", get(list_queues))
        .route(
            "/v1/queues/{queue}",
            put(put_queue).get(get_queue).delete(delete_queue),
        )
        .route("/v1/queues/{queue}/purge", post(purge))
        .route("/v1/queues/{queue}/send", post(send))
        .route("/v1/queues/{queue}/receive", post(receive))
        .route("/v1/queues/{queue}/ack", post(ack))
        .route("/v1/queues/{queue}/nack", post(nack))
        .route("/v1/queues/{queue}/visibility", post(visibility))
        .route("/v1/queues/{queue}/redrive", post(redrive))
        .route("/v1/ws", get(crate::ws::handler))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Inner: authentication runs once the server is ready.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::authenticate,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            ready_gate,
        ))
        .with_state(state)
}

/// Until recovery is done, everything but the health endpoints answers 503
/// `NotReady` (nothing is served from a half-loaded state).
async fn ready_gate(
    State(s): State<AppState>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let open = matches!(req.uri().path(), "/healthz" | "/readyz");
    if open || s.ready.load(Ordering::Acquire) {
        return next.run(req).await;
    }
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "NotReady",
        "the server is recovering its state",
    )
    .into_response()
}

type ApiResult = Result<Response, ApiError>;

/// 403 unless the token has some grant on `r` (describe).
fn allow_any(who: &Principal, r: Resource<'_>) -> Result<(), ApiError> {
    if who.grants().any_on(r) {
        return Ok(());
    }
    let e = crate::auth::AuthError::Forbidden {
        principal: who.id().to_string(),
        action: "any".into(),
        resource: r.to_string(),
    };
    audit::refused(who, "describe", &e);
    Err(e.into())
}

fn topic_name(p: Result<Path<String>, PathRejection>) -> Result<TopicName, ApiError> {
    let Path(s) = p.map_err(|e| HubError::InvalidRequest(e.body_text()))?;
    Ok(TopicName::new(&s)?)
}

fn queue_name(p: Result<Path<String>, PathRejection>) -> Result<QueueName, ApiError> {
    let Path(s) = p.map_err(|e| HubError::InvalidRequest(e.body_text()))?;
    Ok(QueueName::new(&s)?)
}

fn two_names(
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<(TopicName, QueueName), ApiError> {
    let Path((t, q)) = p.map_err(|e| HubError::InvalidRequest(e.body_text()))?;
    Ok((TopicName::new(&t)?, QueueName::new(&q)?))
}

/// 201 for a resource a `PUT` created, 200 for one it updated.
fn created_status(created: bool) -> StatusCode {
    if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}

fn ok_json(status: StatusCode, v: serde_json::Value) -> ApiResult {
    Ok((status, Json(v)).into_response())
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "NotFound", "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        "this endpoint does not take that method",
    )
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(s): State<AppState>) -> ApiResult {
    if s.ready.load(Ordering::Acquire) {
        ok_json(StatusCode::OK, json!({"status": "ready"}))
    } else {
        Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "NotReady",
            "the server is recovering its state",
        ))
    }
}

// ---- topics ----

/// Lists only what the token has some grant on.
async fn list_topics(State(s): State<AppState>, Extension(p): Extension<Principal>) -> ApiResult {
    let mut topics = s.hub.list_topics();
    topics.retain(|t| p.grants().any_on(Resource::topic(t.as_str())));
    ok_json(StatusCode::OK, json!({ "topics": topics }))
}

async fn put_topic(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Result<Path<String>, PathRejection>,
    JsonBody(patch): JsonBody<TopicSettingsPatch>,
) -> ApiResult {
    let name = topic_name(p)?;
    let r = Resource::topic(name.as_str());
    allow(&s, &who, Action::Admin, r)?;
    let created = s.hub.put_topic(&name, &patch).await?;
    audit::admin_change(&who, if created { "create" } else { "update" }, r);
    let status = created_status(created);
    match s.hub.describe_topic(&name) {
        Ok(info) => ok_json(status, dto::topic_json(&info)),
        // See `put_queue`: a concurrent DELETE came in between.
        Err(HubError::TopicNotFound(_)) => ok_json(status, json!({"name": name, "deleted": true})),
        Err(e) => Err(e.into()),
    }
}

async fn get_topic(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let name = topic_name(p)?;
    allow_any(&who, Resource::topic(name.as_str()))?;
    ok_json(
        StatusCode::OK,
        dto::topic_json(&s.hub.describe_topic(&name)?),
    )
}

async fn delete_topic(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let name = topic_name(p)?;
    let r = Resource::topic(name.as_str());
    allow(&s, &who, Action::Admin, r)?;
    s.hub.delete_topic(&name).await?;
    audit::admin_change(&who, "delete", r);
    ok_json(StatusCode::OK, json!({"deleted": name}))
}

async fn subscribe(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Result<Path<(String, String)>, PathRejection>,
    JsonBody(b): JsonBody<dto::SubscribeBody>,
) -> ApiResult {
    let (topic, queue) = two_names(p)?;
    allow(&s, &who, Action::Admin, Resource::topic(topic.as_str()))?;
    let created = s.hub.subscribe(&topic, &queue, b.filter.clone()).await?;
    audit::subscription_change(
        &who,
        if created { "subscribe" } else { "resubscribe" },
        topic.as_str(),
        queue.as_str(),
    );
    let status = created_status(created);
    ok_json(
        status,
        json!({"topic": topic, "queue": queue, "filter": b.filter}),
    )
}

async fn unsubscribe(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult {
    let (topic, queue) = two_names(p)?;
    allow(&s, &who, Action::Admin, Resource::topic(topic.as_str()))?;
    s.hub.unsubscribe(&topic, &queue).await?;
    audit::subscription_change(&who, "unsubscribe", topic.as_str(), queue.as_str());
    ok_json(
        StatusCode::OK,
        json!({"topic": topic, "queue": queue, "deleted": true}),
    )
}

// ---- publish and send ----

/// Converts a parsed body into hub messages, keeping per-entry wire errors.
pub(crate) fn to_messages(
    input: PublishInput,
) -> Result<(bool, Vec<Result<NewMessage, ApiError>>), ApiError> {
    match input {
        PublishInput::Single(m) => Ok((false, vec![Ok(m.into_new_message()?)])),
        PublishInput::Batch(entries) => {
            if entries.is_empty() {
                return Err(
                    HubError::InvalidRequest("a batch needs at least one message".into()).into(),
                );
            }
            if entries.len() > MAX_BATCH {
                return Err(HubError::BatchTooLarge(format!(
                    "a batch has at most {MAX_BATCH} messages; this one has {}",
                    entries.len()
                ))
                .into());
            }
            Ok((
                true,
                entries
                    .into_iter()
                    .map(|e| e.and_then(|m| m.into_new_message()))
                    .collect(),
            ))
        }
    }
}

/// Splits entries into wire errors (kept in place) and valid messages.
fn split_entries(
    entries: Vec<Result<NewMessage, ApiError>>,
) -> (Vec<Option<ApiError>>, Vec<NewMessage>) {
    let mut slots: Vec<Option<ApiError>> = Vec::with_capacity(entries.len());
    let mut valid = Vec::with_capacity(entries.len());
    for e in entries {
        match e {
            Ok(m) => {
                slots.push(None);
                valid.push(m);
            }
            Err(err) => slots.push(Some(err)),
        }
    }
    (slots, valid)
}

/// Merges the hub's per-entry results with the wire errors, in order.
fn publish_answer(
    batch: bool,
    slots: Vec<Option<ApiError>>,
    hub_results: Vec<crate::hub::EntryResult>,
) -> ApiResult {
    let mut hub_results = hub_results.into_iter();
    let mut results: Vec<Result<String, ApiError>> = Vec::with_capacity(slots.len());
    for slot in slots {
        match slot {
            Some(err) => results.push(Err(err)),
            None => match hub_results.next() {
                Some(Ok(id)) => results.push(Ok(id.to_string())),
                Some(Err(e)) => results.push(Err(e.into())),
                None => results.push(Err(ApiError::invalid_request("entry was not processed"))),
            },
        }
    }
    if !batch {
        return match results.pop() {
            Some(Ok(id)) => ok_json(StatusCode::OK, json!({"ids": [id]})),
            Some(Err(e)) => Err(e),
            None => Err(ApiError::invalid_request("no message")),
        };
    }
    let ids: Vec<&str> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().map(|s| s.as_str()))
        .collect();
    let out: Vec<EntryOut> = results
        .iter()
        .map(|r| match r {
            Ok(id) => EntryOut::Ok { id: id.clone() },
            Err(e) => EntryOut::Err { error: e.body() },
        })
        .collect();
    #[derive(serde::Serialize)]
    struct BatchAnswer<'a> {
        ids: Vec<&'a str>,
        results: Vec<EntryOut>,
    }
    Ok(Json(BatchAnswer { ids, results: out }).into_response())
}

async fn publish(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Result<Path<String>, PathRejection>,
    req: Request,
) -> ApiResult {
    let topic = topic_name(p)?;
    allow(&s, &who, Action::Publish, Resource::topic(topic.as_str()))?;
    throttle(&s, &who, RateKind::Publish)?;
    let bytes = read_body(req, s.hub.limits().max_request_bytes).await?;
    let (batch, entries) = to_messages(dto::parse_publish(&bytes)?)?;
    let (slots, valid) = split_entries(entries);
    let results = if valid.is_empty() {
        Vec::new()
    } else {
        s.hub.publish(&topic, valid).await?
    };
    publish_answer(batch, slots, results)
}

async fn send(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Result<Path<String>, PathRejection>,
    req: Request,
) -> ApiResult {
    let queue = queue_name(p)?;
    allow_queue(&s, &who, Action::Publish, &queue)?;
    throttle(&s, &who, RateKind::Publish)?;
    let bytes = read_body(req, s.hub.limits().max_request_bytes).await?;
    let (batch, entries) = to_messages(dto::parse_publish(&bytes)?)?;
    let (slots, valid) = split_entries(entries);
    let results = if valid.is_empty() {
        Vec::new()
    } else {
        s.hub.send(&queue, valid).await?
    };
    publish_answer(batch, slots, results)
}

// ---- queues ----

/// Lists only what the token has some grant on.
async fn list_queues(State(s): State<AppState>, Extension(p): Extension<Principal>) -> ApiResult {
    let mut queues = s.hub.list_queues();
    queues.retain(|q| p.grants().any_on(Resource::queue(q.as_str())));
    ok_json(StatusCode::OK, json!({ "queues": queues }))
}

async fn put_queue(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Result<Path<String>, PathRejection>,
    req: Request,
) -> ApiResult {
    let name = queue_name(p)?;
    let r = Resource::queue(name.as_str());
    allow(&s, &who, Action::Admin, r)?;
    let bytes = read_body(req, s.hub.limits().max_request_bytes).await?;
    // Wrong types are `InvalidRequest`; a well-formed but out-of-range value
    // is `InvalidSetting` (from the hub).
    let patch = dto::parse_queue_settings(&bytes)?;
    let created = s.hub.put_queue(&name, &patch).await?;
    audit::admin_change(&who, if created { "create" } else { "update" }, r);
    let status = created_status(created);
    // The describe is a second step: a concurrent DELETE may remove the
    // queue right after this PUT took effect. The PUT still succeeded and is
    // answered so (a 404 would tell the client its PUT failed); there is just
    // nothing left to describe.
    match s.hub.describe_queue(&name) {
        Ok(info) => ok_json(status, dto::queue_json(&info)),
        Err(HubError::QueueNotFound(_)) => ok_json(status, json!({"name": name, "deleted": true})),
        Err(e) => Err(e.into()),
    }
}

async fn get_queue(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let name = queue_name(p)?;
    allow_any(&who, Resource::queue(name.as_str()))?;
    ok_json(
        StatusCode::OK,
        dto::queue_json(&s.hub.describe_queue(&name)?),
    )
}

async fn delete_queue(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let name = queue_name(p)?;
    let r = Resource::queue(name.as_str());
    allow(&s, &who, Action::Admin, r)?;
    s.hub.delete_queue(&name).await?;
    audit::admin_change(&who, "delete", r);
    ok_json(StatusCode::OK, json!({"deleted": name}))
}

async fn purge(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let name = queue_name(p)?;
    let r = Resource::queue(name.as_str());
    allow(&s, &who, Action::Admin, r)?;
    let n = s.hub.purge(&name).await?;
    audit::admin_change(&who, "purge", r);
    ok_json(StatusCode::OK, json!({"purged": n}))
}

async fn redrive(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Result<Path<String>, PathRejection>,
    JsonBody(b): JsonBody<dto::RedriveBody>,
) -> ApiResult {
    let name = queue_name(p)?;
    let r = Resource::queue(name.as_str());
    allow(&s, &who, Action::Admin, r)?;
    let started = s.hub.redrive(&name, b.max_per_second)?;
    audit::admin_change(&who, "redrive", r);
    ok_json(
        StatusCode::ACCEPTED,
        json!({"task_id": started.task_id, "messages": started.messages}),
    )
}

// ---- consuming ----

async fn receive(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Result<Path<String>, PathRejection>,
    JsonBody(b): JsonBody<dto::ReceiveBody>,
) -> ApiResult {
    let name = queue_name(p)?;
    allow_queue(&s, &who, Action::Consume, &name)?;
    throttle(&s, &who, RateKind::Receive)?;
    crate::ws::refuse_temporary(&*s.hub.queue(&name)?)?;
    let got = s
        .hub
        .receive(
            &name,
            ReceiveRequest {
                max: b.max,
                wait_seconds: b.wait_seconds,
                visibility_timeout_seconds: b.visibility_timeout_seconds,
            },
        )
        .await?;
    let bytes = dto::received_json(&got, &s.receipts);
    Ok(([(header::CONTENT_TYPE, "application/json")], bytes).into_response())
}

/// Decodes receipts; undecodable ones are answered `ReceiptInvalid` without
/// reaching the queue.
fn decode_receipts(s: &AppState, receipts: &[String]) -> Result<Vec<Option<Receipt>>, ApiError> {
    if receipts.is_empty() {
        return Err(ApiError::invalid_request("receipts must not be empty"));
    }
    if receipts.len() > MAX_BATCH {
        return Err(HubError::BatchTooLarge(format!(
            "at most {MAX_BATCH} receipts per call; this one has {}",
            receipts.len()
        ))
        .into());
    }
    Ok(receipts.iter().map(|r| s.receipts.decode(r)).collect())
}

fn valid_receipts(decoded: &[Option<Receipt>]) -> Vec<Receipt> {
    decoded.iter().flatten().copied().collect()
}

/// Answers per receipt, in the order given.
fn receipts_answer(
    receipts: &[String],
    decoded: Vec<Option<Receipt>>,
    results: Vec<Result<(), ReceiptError>>,
) -> ApiResult {
    let out = dto::receipt_results(receipts, &decoded, results);
    #[derive(serde::Serialize)]
    struct Results {
        results: Vec<ReceiptOut>,
    }
    Ok(Json(Results { results: out }).into_response())
}

async fn ack(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Result<Path<String>, PathRejection>,
    JsonBody(b): JsonBody<ReceiptsBody>,
) -> ApiResult {
    let name = queue_name(p)?;
    allow_queue(&s, &who, Action::Consume, &name)?;
    if b.delay_seconds.is_some() || b.seconds.is_some() {
        return Err(ApiError::invalid_request("ack takes only \"receipts\""));
    }
    let decoded = decode_receipts(&s, &b.receipts)?;
    let results = s.hub.ack(&name, &valid_receipts(&decoded)).await?;
    receipts_answer(&b.receipts, decoded, results)
}

async fn nack(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Result<Path<String>, PathRejection>,
    JsonBody(b): JsonBody<ReceiptsBody>,
) -> ApiResult {
    let name = queue_name(p)?;
    allow_queue(&s, &who, Action::Consume, &name)?;
    if b.seconds.is_some() {
        return Err(ApiError::invalid_request(
            "nack takes \"receipts\" and \"delay_seconds\"",
        ));
    }
    let decoded = decode_receipts(&s, &b.receipts)?;
    let results = s
        .hub
        .nack(&name, &valid_receipts(&decoded), b.delay_seconds)?;
    receipts_answer(&b.receipts, decoded, results)
}

async fn visibility(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    p: Result<Path<String>, PathRejection>,
    JsonBody(b): JsonBody<ReceiptsBody>,
) -> ApiResult {
    let name = queue_name(p)?;
    allow_queue(&s, &who, Action::Consume, &name)?;
    if b.delay_seconds.is_some() {
        return Err(ApiError::invalid_request(
            "visibility takes \"receipts\" and \"seconds\"",
        ));
    }
    let seconds = b
        .seconds
        .ok_or_else(|| ApiError::invalid_request("visibility needs \"seconds\""))?;
    let decoded = decode_receipts(&s, &b.receipts)?;
    let results = s
        .hub
        .change_visibility(&name, &valid_receipts(&decoded), seconds)?;
    receipts_answer(&b.receipts, decoded, results)
}
