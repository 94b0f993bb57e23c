//! WebSocket sessions (`GET /v1/ws`): the frame protocol, push consumers on
//! queues and topics, and the per-connection outbox.
//!
//! One connection = one reader loop (this module) + one writer task that owns
//! the socket's sink + one task per subscription. A push subscription is a
//! long-poll receive that re-parks while it has credit (prefetch minus
//! unacked), so WebSocket consumers and HTTP long-pollers share a queue through
//! the same FIFO of waiters. The outbox is bounded in bytes: a client that
//! stops reading first stops getting credit (its acks stop), and past
//! `--ws-outbox-bytes` it is closed with 1008 "slow consumer"; the queue keeps
//! the messages, which become visible again at once.
//!
//! Authentication: a connection opened with a token (header or `?token=`)
//! has its [`Principal`] from the start; otherwise its first frame must be
//! `auth` within `--ws-auth-timeout`, else it closes with 1008. Every op
//! checks its grant; a refused op gets an `error` frame and changes nothing.
//! A JWT's connection closes with 1008 "token expired" at `exp` plus the
//! leeway, unless an `auth` frame with a fresh token of the same principal
//! came first.

pub mod frames;
mod push;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, State};
use axum::response::Response;
use futures::{FutureExt, SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::mpsc;

use crate::api::access::{allow, allow_queue, throttle};
use crate::api::error::ApiError;
use crate::api::AppState;
use crate::auth::{audit, fingerprint, Action, AuthError, Principal, RateKind, Resource};
use crate::config::WsConfig;
use crate::hub::HubError;
use crate::model::{QueueName, TopicName};
use crate::queue::Receipt;
use frames::{ClientFrame, Op};
use push::{Outstanding, PushSub};

/// Close codes this server uses.
pub mod close {
    pub const GOING_AWAY: u16 = 1001;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
}

/// `GET /v1/ws`. The principal is there when the upgrade request carried a
/// token (the middleware checked it); otherwise the first frame is `auth`.
pub async fn handler(
    State(s): State<AppState>,
    principal: Option<Extension<Principal>>,
    ws: WebSocketUpgrade,
) -> Response {
    let principal = principal.map(|Extension(p)| p);
    let max = s.ws.max_frame_bytes;
    // A small read buffer: an idle connection must stay cheap (thousands of
    // subscribers per server), and tungstenite fills the whole buffer with
    // zeros before its first read, so all of it is resident. 2 KiB holds
    // ~25 ack frames per read; 4 KiB cost 2 KiB more per idle subscriber
    // (benches/README.md). The write buffer is empty until used; the
    // writer fills it with a burst of frames and flushes once, so it only
    // goes to the socket on its own past 64 KiB.
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(2 * 1024)
        .write_buffer_size(64 * 1024)
        .on_upgrade(move |socket| run(socket, s, principal))
}

/// What the writer task sends.
enum Out {
    Text(String),
    Ping,
    Close(u16, String),
}

/// How long pushes wait for a client to read before it is a slow consumer.
const STALL: Duration = Duration::from_secs(5);

/// The sending half of a connection: frames queued for the writer, with the
/// queued bytes counted against `--ws-outbox-bytes`.
#[derive(Clone)]
pub(crate) struct Outbox {
    tx: mpsc::UnboundedSender<Out>,
    queued: Arc<AtomicUsize>,
    limit: usize,
    overflowed: Arc<tokio::sync::Notify>,
    /// Woken whenever the writer has sent a frame.
    drained: Arc<tokio::sync::Notify>,
}

impl Outbox {
    /// Queues an answer frame; false once the connection is closing or the
    /// outbox overflowed (the session then closes with 1008).
    pub(crate) fn send(&self, text: String) -> bool {
        let n = text.len();
        let total = self.queued.fetch_add(n, Ordering::AcqRel) + n;
        // Pushes stop at `limit`; answers get as much again on top, so a
        // client reading at its pace is never closed for an ack's answer.
        if total > self.limit.saturating_mul(2) {
            self.queued.fetch_sub(n, Ordering::AcqRel);
            self.overflowed.notify_one();
            return false;
        }
        self.enqueue(text, n)
    }

    fn enqueue(&self, text: String, n: usize) -> bool {
        if self.tx.send(Out::Text(text)).is_ok() {
            true
        } else {
            self.queued.fetch_sub(n, Ordering::AcqRel);
            false
        }
    }

    /// Queues a pushed message once there is room: a client that keeps
    /// reading is never closed for the size of a batch, however large its
    /// messages. A client that reads nothing for `STALL` while a push waits is
    /// a slow consumer: the session closes with 1008 and its messages go back.
    pub(crate) async fn push(&self, text: String) -> bool {
        let n = text.len();
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            let queued = self.queued.load(Ordering::Acquire);
            // One frame larger than the whole outbox still goes, alone.
            if queued == 0 || queued + n <= self.limit {
                self.queued.fetch_add(n, Ordering::AcqRel);
                return self.enqueue(text, n);
            }
            if tokio::time::timeout(STALL, drained).await.is_err() {
                self.overflowed.notify_one();
                return false;
            }
        }
    }

    fn control(&self, o: Out) {
        let _ = self.tx.send(o);
    }
}

async fn writer(
    mut sink: futures::stream::SplitSink<WebSocket, Message>,
    mut rx: mpsc::UnboundedReceiver<Out>,
    queued: Arc<AtomicUsize>,
    drained: Arc<tokio::sync::Notify>,
) {
    while let Some(first) = rx.recv().await {
        // Everything already queued goes out with one flush (one `send`
        // syscall for a burst of pushes and answers, not one per frame).
        let mut next = Some(first);
        let mut bytes = 0;
        let mut frames = 0;
        while let Some(o) = next.take() {
            let r = match o {
                Out::Text(t) => {
                    let n = t.len();
                    bytes += n;
                    let r = sink.feed(Message::Text(t.into())).await;
                    queued.fetch_sub(n, Ordering::AcqRel);
                    r
                }
                Out::Ping => sink.feed(Message::Ping(Default::default())).await,
                Out::Close(code, reason) => {
                    let _ = sink
                        .send(Message::Close(Some(CloseFrame {
                            code,
                            reason: reason.into(),
                        })))
                        .await;
                    let _ = sink.close().await;
                    return;
                }
            };
            if r.is_err() {
                return;
            }
            frames += 1;
            if frames < MAX_FRAMES_PER_FLUSH && bytes < MAX_BYTES_PER_FLUSH {
                next = rx.try_recv().ok();
            }
        }
        let r = sink.flush().await;
        drained.notify_waiters();
        if r.is_err() {
            return;
        }
    }
}

/// A burst the writer gathers before it flushes the socket.
const MAX_FRAMES_PER_FLUSH: usize = 512;
const MAX_BYTES_PER_FLUSH: usize = 256 * 1024;

/// One subscription of a connection.
struct Sub {
    queue: QueueName,
    temporary: bool,
    outstanding: Arc<Outstanding>,
    task: tokio::task::JoinHandle<()>,
}

struct Session {
    state: AppState,
    out: Outbox,
    subs: HashMap<String, Sub>,
    /// `None` until the `auth` frame (when the upgrade carried no token).
    principal: Option<Principal>,
    /// Answers that wait for their records to be durable, in frame order.
    /// Boxed: an idle connection should not pay for the channel's first
    /// block of 32 slots.
    durable: mpsc::UnboundedSender<Box<Durable>>,
}

/// Answers to send once `commits` are durable (`ok` frames), or, if one
/// fails, an error frame for each `refs`.
struct Durable {
    commits: Vec<crate::storage::Commit>,
    ok: Vec<String>,
    refs: Vec<Option<serde_json::Value>>,
}

/// Sends durable answers in the order their frames came: commits complete
/// in log order, so waiting for each in turn costs nothing, and a client
/// acking every message sees its answers in order.
async fn answer_durably(mut rx: mpsc::UnboundedReceiver<Box<Durable>>, out: Outbox) {
    while let Some(d) = rx.recv().await {
        let mut failed = None;
        for c in d.commits {
            if let Err(e) = c.await {
                failed = Some(e);
                break;
            }
        }
        match failed {
            None => {
                for ok in d.ok {
                    out.send(ok);
                }
            }
            Some(e) => {
                let e: ApiError = HubError::from(e).into();
                for r in d.refs {
                    out.send(frames::error(r, &e.body()));
                }
            }
        }
    }
}

/// Why a connection without a principal is closed.
const AUTH_REQUIRED: &str = "authentication required: the first frame must be auth";

/// Far enough ahead to stand for "never" without overflowing an `Instant`.
/// Most ack frames settled together (see [`gather_acks`]).
const MAX_GATHERED_ACKS: usize = 256;

/// An `ack` frame's `ref` and receipts.
type AckFrame = (Option<serde_json::Value>, Vec<String>);

/// `first` and the `ack` frames already received behind it, without
/// waiting; answers them and the first other frame read, to handle next.
fn gather_acks(
    first: AckFrame,
    stream: &mut futures::stream::SplitStream<WebSocket>,
) -> (Vec<AckFrame>, Option<Option<Result<Message, axum::Error>>>) {
    let mut acks = vec![first];
    while acks.len() < MAX_GATHERED_ACKS {
        let Some(next) = stream.next().now_or_never() else {
            break;
        };
        if let Some(Ok(Message::Text(t))) = &next {
            if let Ok(ClientFrame {
                reference,
                op: Op::Ack { receipts },
            }) = frames::parse(t.as_str())
            {
                acks.push((reference, receipts));
                continue;
            }
        }
        return (acks, Some(next));
    }
    (acks, None)
}

const NEVER: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

async fn run(socket: WebSocket, state: AppState, principal: Option<Principal>) {
    let cfg: WsConfig = state.ws.as_ref().clone();
    let (sink, mut stream) = socket.split();
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let overflowed = Arc::new(tokio::sync::Notify::new());
    let drained = Arc::new(tokio::sync::Notify::new());
    let writer_task = tokio::spawn(writer(sink, rx, queued.clone(), drained.clone()));
    let out = Outbox {
        tx,
        queued,
        limit: cfg.outbox_bytes,
        overflowed: overflowed.clone(),
        drained,
    };
    let (durable, durable_rx) = mpsc::unbounded_channel();
    tokio::spawn(answer_durably(durable_rx, out.clone()));
    let mut session = Session {
        state: state.clone(),
        out: out.clone(),
        subs: HashMap::new(),
        principal,
        durable,
    };
    let auth_wait = tokio::time::sleep(cfg.auth_timeout);
    tokio::pin!(auth_wait);
    let expiry = tokio::time::sleep(NEVER);
    tokio::pin!(expiry);
    let mut expiry_at = session.expiry_deadline();
    if let Some(at) = expiry_at {
        expiry.as_mut().reset(at);
    }
    let last_seen = Arc::new(AtomicU64::new(state.hub.now()));
    // Ping often enough that a peer which only listens still answers within
    // the idle timeout.
    let mut ping = tokio::time::interval(
        cfg.ping_every
            .min(cfg.idle_timeout / 2)
            .max(Duration::from_millis(50)),
    );
    ping.tick().await;
    let mut idle_check = tokio::time::interval(Duration::from_millis(
        (cfg.idle_timeout.as_millis() as u64 / 4).clamp(50, 5_000),
    ));
    let mut shutdown = state.shutdown.clone();
    // A frame read ahead while gathering acks, handled next.
    let mut pending = None;
    let close: Option<(u16, String)> = loop {
        let msg = match pending.take() {
            Some(m) => m,
            None => tokio::select! {
                msg = stream.next() => msg,
                _ = ping.tick() => {
                    out.control(Out::Ping);
                    continue;
                }
                _ = idle_check.tick() => {
                    let silent = state.hub.now().saturating_sub(last_seen.load(Ordering::Relaxed));
                    if silent > cfg.idle_timeout.as_millis() as u64 {
                        break Some((close::GOING_AWAY, "idle timeout".into()));
                    }
                    continue;
                }
                () = overflowed.notified() => {
                    break Some((close::POLICY, "slow consumer".into()));
                }
                () = &mut auth_wait, if session.principal.is_none() => {
                    audit::auth_failed(&AuthError::Missing, None, "websocket");
                    break Some((close::POLICY, AUTH_REQUIRED.into()));
                }
                () = &mut expiry, if expiry_at.is_some() => {
                    break Some((close::POLICY, "token expired".into()));
                }
                () = shutting_down(&mut shutdown) => {
                    break Some((close::GOING_AWAY, "server shutting down".into()));
                }
            },
        };
        match msg {
            None => break None,
            Some(Err(e)) => {
                let text = e.to_string();
                if text.contains("too long")
                    || text.contains("too big")
                    || text.contains("Space limit")
                    || text.contains("size")
                {
                    break Some((
                        close::TOO_BIG,
                        format!("frame larger than {} bytes", cfg.max_frame_bytes),
                    ));
                }
                break None;
            }
            Some(Ok(m)) => {
                last_seen.store(state.hub.now(), Ordering::Relaxed);
                match m {
                    Message::Text(t) => {
                        let close = match frames::parse(t.as_str()) {
                            // Acks already waiting behind this one are settled
                            // together: one lock per queue, one log record and
                            // one disk sync for the lot.
                            Ok(ClientFrame {
                                reference,
                                op: Op::Ack { receipts },
                            }) if session.principal.is_some() => {
                                let (acks, next) = gather_acks((reference, receipts), &mut stream);
                                pending = next;
                                session.ack_frames(acks);
                                None
                            }
                            // Boxed: a subscribe or publish is rare next to acks, and
                            // its future inline would make every idle connection
                            // carry its size.
                            parsed => Box::pin(session.handle(parsed)).await,
                        };
                        if let Some(c) = close {
                            break Some(c);
                        }
                        // An `auth` frame may have changed the expiry.
                        let at = session.expiry_deadline();
                        if at != expiry_at {
                            expiry_at = at;
                            expiry
                                .as_mut()
                                .reset(at.unwrap_or_else(|| tokio::time::Instant::now() + NEVER));
                        }
                    }
                    Message::Binary(_) if session.principal.is_none() => {
                        break Some((close::POLICY, AUTH_REQUIRED.into()));
                    }
                    Message::Binary(_) => {
                        session.reply_error(
                            None,
                            &ApiError::invalid_request(
                                "binary frames are not accepted; send JSON text frames",
                            ),
                        );
                    }
                    Message::Close(_) => break None,
                    Message::Ping(_) | Message::Pong(_) => {}
                }
            }
        }
    };
    Box::pin(session.leave()).await;
    if let Some((code, reason)) = close {
        tracing::info!(code, %reason, "closing WebSocket");
        out.control(Out::Close(code, reason));
    }
    drop(out);
    drop(session);
    let _ = tokio::time::timeout(Duration::from_secs(5), writer_task).await;
}

/// A topic subscription's temporary queue is consumed only through that
/// subscription (its resume token), never as a plain queue.
pub(crate) fn refuse_temporary(q: &crate::hub::QueueHandle) -> Result<(), ApiError> {
    if q.is_temporary() {
        return Err(ApiError::invalid_request(format!(
            "queue {} belongs to a WebSocket topic subscription; resume it with its token",
            q.name()
        )));
    }
    Ok(())
}

/// Completes once the server is shutting down.
async fn shutting_down(rx: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

impl Session {
    fn reply(&self, text: String) {
        self.out.send(text);
    }

    fn reply_error(&self, reference: Option<serde_json::Value>, e: &ApiError) {
        self.reply(frames::error(reference, &e.body()));
    }

    /// When the principal's token stops being valid: `exp` plus the leeway.
    fn expiry_deadline(&self) -> Option<tokio::time::Instant> {
        let exp = self.principal.as_ref()?.expires_at()?;
        let until = exp.saturating_add(self.state.auth.leeway().as_secs());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let left = Duration::from_secs(until).saturating_sub(now);
        Some(tokio::time::Instant::now() + left.min(NEVER))
    }

    /// Handles one text frame; answers a close when the connection must end.
    async fn handle(
        &mut self,
        parsed: Result<ClientFrame, frames::FrameError>,
    ) -> Option<(u16, String)> {
        let ClientFrame { reference, op } = match parsed {
            Ok(f) => f,
            Err(_) if self.principal.is_none() => {
                return Some((close::POLICY, AUTH_REQUIRED.into()))
            }
            Err(e) => {
                self.reply_error(e.reference, &e.error);
                return None;
            }
        };
        let who = match (&op, &self.principal) {
            (Op::Auth { token }, _) => return self.authenticate(reference, token),
            (_, None) => return Some((close::POLICY, AUTH_REQUIRED.into())),
            (_, Some(p)) => p.clone(),
        };
        let r = match op {
            Op::Subscribe(s) => self.subscribe(&who, s).await,
            Op::Unsubscribe { sub } => self.unsubscribe(&sub).await,
            // Acks and publishes are applied now and answered once durable,
            // without holding up the frames behind them: a client acking one
            // message per frame shares disk syncs instead of waiting for each.
            Op::Ack { receipts } => {
                self.ack_frames(vec![(reference, receipts)]);
                return None;
            }
            Op::Nack {
                receipts,
                delay_seconds,
            } => self.nack(&who, receipts, delay_seconds),
            Op::Publish {
                topic,
                queue,
                message,
            } => match self.publish(&who, topic, queue, message) {
                Ok((extra, commit)) => {
                    self.answer_when_durable(reference, extra, vec![commit]);
                    return None;
                }
                Err(e) => Err(e),
            },
            Op::Auth { .. } => return None,
        };
        match r {
            Ok(extra) => self.reply(frames::ok(reference, extra)),
            Err(e) => self.reply_error(reference, &e),
        }
        None
    }

    /// The `auth` frame: the first one names the connection's principal; a
    /// later one (a fresh token before the old expires) must name the same.
    /// A failed first one closes the connection.
    fn authenticate(
        &mut self,
        reference: Option<serde_json::Value>,
        token: &str,
    ) -> Option<(u16, String)> {
        let p = match self.state.auth.authenticate(Some(token)) {
            Ok(p) => p,
            Err(e) => {
                audit::auth_failed(&e, Some(&fingerprint(token)), "websocket");
                self.reply_error(reference, &e.into());
                return self
                    .principal
                    .is_none()
                    .then(|| (close::POLICY, "authentication failed".into()));
            }
        };
        if let Some(now) = &self.principal {
            if now.id() != p.id() {
                let e = AuthError::IdentityChange {
                    now: now.id().to_string(),
                    new: p.id().to_string(),
                };
                audit::refused(now, "websocket auth", &e);
                self.reply_error(reference, &e.into());
                return None;
            }
        }
        let mut extra = json!({ "principal": p.id() });
        if let Some(exp) = p.expires_at() {
            extra["expires_at"] = json!(exp);
        }
        self.principal = Some(p);
        self.reply(frames::ok(reference, extra));
        None
    }

    /// Sends `ok` once every commit is durable (or the error if one fails).
    fn answer_when_durable(
        &self,
        reference: Option<serde_json::Value>,
        extra: serde_json::Value,
        commits: Vec<crate::storage::Commit>,
    ) {
        let _ = self.durable.send(Box::new(Durable {
            commits,
            ok: vec![frames::ok(reference.clone(), extra)],
            refs: vec![reference],
        }));
    }

    async fn subscribe(
        &mut self,
        who: &Principal,
        s: frames::Subscribe,
    ) -> Result<serde_json::Value, ApiError> {
        self.forget_ended();
        if self.subs.contains_key(&s.sub) {
            return Err(ApiError::invalid_request(format!(
                "subscription {:?} already exists on this connection",
                s.sub
            )));
        }
        if self.subs.len() >= self.state.ws.max_subscriptions {
            return Err(HubError::LimitExceeded(format!(
                "at most {} subscriptions per connection (--ws-max-subscriptions)",
                self.state.ws.max_subscriptions
            ))
            .into());
        }
        let hub = &self.state.hub;
        let prefetch = s.prefetch.unwrap_or(frames::DEFAULT_PREFETCH);
        let (queue, temporary, extra) = match (&s.queue, &s.topic) {
            (Some(q), _) => {
                let name = QueueName::new(q)?;
                allow_queue(&self.state, who, Action::Consume, &name)?;
                refuse_temporary(&*hub.queue(&name)?)?;
                (name, false, json!({"sub": s.sub, "queue": q}))
            }
            (None, Some(t)) => {
                let topic = TopicName::new(t)?;
                allow(&self.state, who, Action::Consume, Resource::topic(t))?;
                let name = match &s.resume {
                    Some(token) => {
                        let name = self
                            .state
                            .receipts
                            .check_resume_token(token)
                            .and_then(|n| QueueName::new(n).ok())
                            .ok_or(HubError::ResumeExpired)?;
                        let q = hub.attach_temp_queue(&name)?;
                        if !hub.subscribed_topics_of(&name).contains(&topic) {
                            hub.detach_temp_queue(&name);
                            return Err(HubError::ResumeExpired.into());
                        }
                        q.name().clone()
                    }
                    None => hub.create_temp_queue(&topic, s.filter.clone()).await?,
                };
                let token = self.state.receipts.resume_token(name.as_str());
                let extra = json!({"sub": s.sub, "topic": t, "queue": name, "resume": token});
                (name, true, extra)
            }
            (None, None) => return Err(ApiError::invalid_request("nothing to subscribe to")),
        };
        let outstanding = Arc::new(Outstanding::default());
        let push = PushSub {
            hub: hub.clone(),
            codec: self.state.receipts.clone(),
            out: self.out.clone(),
            sub: s.sub.clone(),
            queue: queue.clone(),
            prefetch,
            auto_ack: s.auto_ack.unwrap_or(false),
            outstanding: outstanding.clone(),
            auth: self.state.auth.clone(),
            principal: who.clone(),
        };
        let task = tokio::spawn(push.run());
        self.subs.insert(
            s.sub,
            Sub {
                queue,
                temporary,
                outstanding,
                task,
            },
        );
        Ok(extra)
    }

    async fn unsubscribe(&mut self, sub: &str) -> Result<serde_json::Value, ApiError> {
        let s = self.subs.remove(sub).ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "SubscriptionNotFound",
                format!("no subscription {sub:?} on this connection"),
            )
        })?;
        s.task.abort();
        let _ = s.task.await;
        self.state.hub.return_now(&s.outstanding.drain());
        if s.temporary {
            self.state.hub.drop_temp_queue(&s.queue).await?;
        }
        Ok(json!({"sub": sub}))
    }

    /// Subscriptions that sent `end` free their `sub` id and their place
    /// under `--ws-max-subscriptions`; what they held goes back at once.
    fn forget_ended(&mut self) {
        let ended: Vec<String> = self
            .subs
            .iter()
            .filter(|(_, s)| s.task.is_finished())
            .map(|(k, _)| k.clone())
            .collect();
        for k in ended {
            if let Some(s) = self.subs.remove(&k) {
                self.state.hub.return_now(&s.outstanding.drain());
                if s.temporary {
                    self.state.hub.detach_temp_queue(&s.queue);
                }
            }
        }
    }

    /// Decodes a frame's receipts and checks `consume` on the queue of
    /// every valid one (a receipt of a queue that is gone answers
    /// `ReceiptInvalid` later).
    fn check_receipts(
        &self,
        who: &Principal,
        receipts: &[String],
    ) -> Result<Vec<Option<Receipt>>, ApiError> {
        let mut decoded = Vec::with_capacity(receipts.len());
        self.check_receipts_into(who, receipts, &mut Vec::new(), &mut decoded)?;
        Ok(decoded)
    }

    /// [`Self::check_receipts`] appending to `decoded`; `allowed` holds the
    /// queues already checked (one check per queue, not per receipt). On
    /// an error `decoded` is left as it was.
    fn check_receipts_into(
        &self,
        who: &Principal,
        receipts: &[String],
        allowed: &mut Vec<u64>,
        decoded: &mut Vec<Option<Receipt>>,
    ) -> Result<(), ApiError> {
        if receipts.is_empty() {
            return Err(ApiError::invalid_request("receipts must not be empty"));
        }
        // One frame may settle a whole prefetch window (up to 1000).
        if receipts.len() > frames::MAX_PREFETCH as usize {
            return Err(HubError::BatchTooLarge(format!(
                "at most {} receipts per frame",
                frames::MAX_PREFETCH
            ))
            .into());
        }
        let start = decoded.len();
        decoded.extend(receipts.iter().map(|r| self.state.receipts.decode(r)));
        for i in start..decoded.len() {
            let Some(r) = decoded[i] else { continue };
            if allowed.contains(&r.queue_uid) {
                continue;
            }
            if let Some(q) = self.state.hub.queue_by_uid(r.queue_uid) {
                if let Err(e) = allow_queue(&self.state, who, Action::Consume, q.name()) {
                    decoded.truncate(start);
                    return Err(e);
                }
            }
            allowed.push(r.queue_uid);
        }
        Ok(())
    }

    /// Settled receipts stop counting against prefetch.
    fn release_credit(
        &self,
        valid: &[Receipt],
        results: &[Result<(), crate::queue::ReceiptError>],
    ) {
        let settled: Vec<Receipt> = valid
            .iter()
            .zip(results)
            .filter(|(_, r)| r.is_ok())
            .map(|(rc, _)| *rc)
            .collect();
        for s in self.subs.values() {
            s.outstanding.remove_all(&settled);
        }
    }

    /// Acks the receipts of one or more `ack` frames (needs `consume` on the
    /// queue of every receipt of a frame, or nothing of that frame is
    /// settled). All frames are applied together, and each is answered
    /// once the acks are durable. The hot path of a client acking every
    /// message: a few allocations per frame, not per receipt.
    fn ack_frames(&mut self, frames_in: Vec<(Option<serde_json::Value>, Vec<String>)>) {
        let Some(who) = self.principal.clone() else {
            return;
        };
        let mut frames_ok = Vec::with_capacity(frames_in.len());
        let mut decoded: Vec<Option<Receipt>> = Vec::with_capacity(frames_in.len());
        let mut allowed: Vec<u64> = Vec::new();
        for (reference, receipts) in frames_in {
            let start = decoded.len();
            match self.check_receipts_into(&who, &receipts, &mut allowed, &mut decoded) {
                Ok(()) => frames_ok.push((reference, receipts, start..decoded.len())),
                Err(e) => self.reply_error(reference, &e),
            }
        }
        if frames_ok.is_empty() {
            return;
        }
        let valid: Vec<Receipt> = decoded.iter().flatten().copied().collect();
        let (results, commits) = self.state.hub.ack_any_now(&valid);
        self.release_credit(&valid, &results);
        let mut ok = Vec::with_capacity(frames_ok.len());
        let mut refs = Vec::with_capacity(frames_ok.len());
        let mut results = results.into_iter();
        for (reference, receipts, range) in frames_ok {
            ok.push(frames::settle_answer(
                reference.as_ref(),
                &receipts,
                &decoded[range],
                &mut results,
            ));
            refs.push(reference);
        }
        let _ = self.durable.send(Box::new(Durable { commits, ok, refs }));
    }

    /// Nacks receipts of any of this connection's queues.
    fn nack(
        &mut self,
        who: &Principal,
        receipts: Vec<String>,
        delay_seconds: Option<u32>,
    ) -> Result<serde_json::Value, ApiError> {
        let decoded = self.check_receipts(who, &receipts)?;
        let valid: Vec<Receipt> = decoded.iter().flatten().copied().collect();
        let results = self.state.hub.nack_any(&valid, delay_seconds)?;
        self.release_credit(&valid, &results);
        let out = crate::api::dto::receipt_results(&receipts, &decoded, results);
        Ok(json!({ "results": out }))
    }

    fn publish(
        &mut self,
        who: &Principal,
        topic: Option<String>,
        queue: Option<String>,
        message: crate::api::dto::WireMessage,
    ) -> Result<(serde_json::Value, crate::storage::Commit), ApiError> {
        enum Target {
            Topic(TopicName),
            Queue(QueueName),
        }
        let target = match (topic, queue) {
            (Some(t), _) => {
                let t = TopicName::new(&t)?;
                allow(
                    &self.state,
                    who,
                    Action::Publish,
                    Resource::topic(t.as_str()),
                )?;
                Target::Topic(t)
            }
            (None, Some(q)) => {
                let q = QueueName::new(&q)?;
                allow_queue(&self.state, who, Action::Publish, &q)?;
                Target::Queue(q)
            }
            (None, None) => {
                return Err(ApiError::invalid_request("publish needs a topic or queue"))
            }
        };
        throttle(&self.state, who, RateKind::Publish)?;
        let m = message.into_new_message()?;
        let (results, commit) = match target {
            Target::Topic(t) => self.state.hub.publish_now(&t, vec![m])?,
            Target::Queue(q) => self.state.hub.send_now(&q, vec![m])?,
        };
        match results.into_iter().next() {
            Some(Ok(id)) => Ok((json!({"ids": [id.to_string()]}), commit)),
            Some(Err(e)) => Err(e.into()),
            None => Err(ApiError::invalid_request("nothing published")),
        }
    }

    /// The connection is going: stop every subscription (waiting until each
    /// task has stopped, so nothing more is leased to it), make what it held
    /// visible again at once, and leave topic queues resumable.
    async fn leave(&mut self) {
        for (_, s) in self.subs.drain() {
            s.task.abort();
            let _ = s.task.await;
            self.state.hub.return_now(&s.outstanding.drain());
            if s.temporary {
                self.state.hub.detach_temp_queue(&s.queue);
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Only reached without `leave` if the session task itself was
        // cancelled: still give everything back.
        for (_, s) in self.subs.drain() {
            s.task.abort();
            self.state.hub.return_now(&s.outstanding.drain());
            if s.temporary {
                self.state.hub.detach_temp_queue(&s.queue);
            }
        }
    }
}
