//! A real WebSocket client (tokio-tungstenite) for `GET /v1/ws`, for the
//! WebSocket tests. Every read is bounded by a timeout, so a server that
//! stays silent fails a test instead of hanging it.
//!
//! `call` sends a frame with a fresh `ref` and answers the `ok`/`error` frame
//! that echoes it; frames that arrive meanwhile (pushed messages, `end`) are
//! kept, in order, and handed out first by `next`.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{client_async, WebSocketStream};

use super::Server;

/// How long a frame the test expects may take to come.
pub const WAIT: Duration = Duration::from_secs(5);

type Socket = WebSocketStream<Conn>;

/// The client's TCP stream, which can be muted: then everything the client
/// would write (pongs, frames, its close) is dropped, so it reads but is
/// silent (tungstenite answers pings on every read; a muted one cannot).
pub struct Conn {
    tcp: TcpStream,
    muted: Arc<AtomicBool>,
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.muted.load(Ordering::Relaxed) {
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.muted.load(Ordering::Relaxed) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.muted.load(Ordering::Relaxed) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// How a connection ended, as the client saw it.
#[derive(Debug, PartialEq, Eq)]
pub enum Closed {
    /// A close frame with its code and reason.
    Frame(u16, String),
    /// A close frame without a code.
    NoCode,
    /// The stream ended (or failed) without a close frame.
    Gone(String),
}

/// One client connection.
pub struct Ws {
    socket: Socket,
    /// Frames read while waiting for an answer, not yet handed out.
    pending: VecDeque<Value>,
    next_ref: u64,
    muted: Arc<AtomicBool>,
}

/// `ws://HOST:PORT/v1/ws` of a server.
pub fn ws_url(server: &Server) -> String {
    format!("{}/v1/ws", server.base.replace("http://", "ws://"))
}

impl Ws {
    /// Connects to the server's `/v1/ws` (with `TCP_NODELAY`, so any
    /// batching delay seen is the server's).
    pub async fn connect(server: &Server) -> Self {
        let url = ws_url(server);
        Self::try_connect(server, "", None)
            .await
            .unwrap_or_else(|e| panic!("connect to {url}: {e:?}"))
    }

    /// Connects with a query string (`"?token=..."` or `""`) and an optional
    /// `Authorization: Bearer` token; a refused upgrade answers its HTTP
    /// status and body.
    pub async fn try_connect(
        server: &Server,
        query: &str,
        bearer: Option<&str>,
    ) -> Result<Self, (u16, String)> {
        let url = format!("{}{query}", ws_url(server));
        let addr = server.base.trim_start_matches("http://").to_string();
        let muted = Arc::new(AtomicBool::new(false));
        let mut request = url
            .as_str()
            .into_client_request()
            .expect("a valid WebSocket URL");
        if let Some(t) = bearer {
            request.headers_mut().insert(
                "authorization",
                format!("Bearer {t}").parse().expect("a valid header"),
            );
        }
        let socket = tokio::time::timeout(WAIT, async {
            let tcp = TcpStream::connect(&addr)
                .await
                .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
            tcp.set_nodelay(true).expect("set TCP_NODELAY");
            let conn = Conn {
                tcp,
                muted: muted.clone(),
            };
            client_async(request, conn).await.map(|(ws, _)| ws)
        })
        .await
        .unwrap_or_else(|_| panic!("connecting to {url} timed out"));
        match socket {
            Ok(socket) => Ok(Self {
                socket,
                pending: VecDeque::new(),
                next_ref: 1,
                muted,
            }),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                let body = resp
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                Err((resp.status().as_u16(), body))
            }
            Err(e) => panic!("connect to {url}: {e}"),
        }
    }

    /// From now on the client writes nothing: no frames, no pongs.
    pub fn mute(&self) {
        self.muted.store(true, Ordering::Relaxed);
    }

    /// Sends any WebSocket message.
    pub async fn send_message(&mut self, m: Message) {
        tokio::time::timeout(WAIT, self.socket.send(m))
            .await
            .expect("sending a frame timed out")
            .expect("send a frame");
    }

    /// Sends a text frame as is.
    pub async fn send_text(&mut self, text: &str) {
        self.send_message(Message::text(text.to_string())).await;
    }

    /// Sends a JSON frame as is (no `ref` added).
    pub async fn send(&mut self, frame: Value) {
        self.send_text(&frame.to_string()).await;
    }

    /// Reads the next text frame from the socket (not from `pending`) within
    /// `limit`: `Ok(Some(frame))`, `Ok(None)` when nothing came in time,
    /// `Err(how it closed)` when the connection ended.
    async fn read(&mut self, limit: Duration) -> Result<Option<Value>, Closed> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let m = match tokio::time::timeout_at(deadline, self.socket.next()).await {
                Err(_) => return Ok(None),
                Ok(None) => return Err(Closed::Gone("end of stream".into())),
                Ok(Some(Err(e))) => return Err(Closed::Gone(e.to_string())),
                Ok(Some(Ok(m))) => m,
            };
            match m {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(t.as_str())
                        .unwrap_or_else(|e| panic!("server sent non-JSON text {t:?}: {e}"));
                    return Ok(Some(v));
                }
                Message::Close(Some(f)) => {
                    return Err(Closed::Frame(u16::from(f.code), f.reason.to_string()))
                }
                Message::Close(None) => return Err(Closed::NoCode),
                Message::Binary(b) => panic!("server sent a binary frame ({} bytes)", b.len()),
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    }

    /// The next frame (kept ones first) within `limit`, or `None`.
    pub async fn next_within(&mut self, limit: Duration) -> Option<Value> {
        if let Some(v) = self.pending.pop_front() {
            return Some(v);
        }
        match self.read(limit).await {
            Ok(v) => v,
            Err(c) => panic!("connection ended while a frame was expected: {c:?}"),
        }
    }

    /// The next frame (kept ones first), or how the connection ended; fails
    /// the test if neither happens within `limit`.
    pub async fn next_frame_or_close(&mut self, limit: Duration) -> Result<Value, Closed> {
        if let Some(v) = self.pending.pop_front() {
            return Ok(v);
        }
        match self.read(limit).await {
            Ok(Some(v)) => Ok(v),
            Ok(None) => panic!("no frame within {limit:?}"),
            Err(c) => Err(c),
        }
    }

    /// The next frame; fails the test if none comes within [`WAIT`].
    pub async fn next(&mut self) -> Value {
        self.next_within(WAIT)
            .await
            .unwrap_or_else(|| panic!("no frame within {WAIT:?}"))
    }

    /// The next frame, which must be a pushed `message` (of any `sub`).
    pub async fn message(&mut self) -> Value {
        let v = self.next().await;
        assert_eq!(v["op"], "message", "expected a pushed message, got {v}");
        v
    }

    /// `n` pushed messages.
    pub async fn messages(&mut self, n: usize) -> Vec<Value> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.message().await);
        }
        out
    }

    /// Asserts that no frame comes within `d`.
    pub async fn silent_for(&mut self, d: Duration) {
        if let Some(v) = self.next_within(d).await {
            panic!("expected no frame for {d:?}, got {v}");
        }
    }

    /// Sends `frame` with a fresh numeric `ref` and answers the `ok` or
    /// `error` frame carrying that `ref`; asserts the `ref` is echoed.
    pub async fn call(&mut self, mut frame: Value) -> Value {
        let r = self.next_ref;
        self.next_ref += 1;
        frame["ref"] = json!(r);
        self.send(frame.clone()).await;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let v = match self.read(left).await {
                Ok(Some(v)) => v,
                Ok(None) => panic!("no answer to {frame} within {WAIT:?}"),
                Err(c) => panic!("connection ended before the answer to {frame}: {c:?}"),
            };
            if (v["op"] == "ok" || v["op"] == "error") && v["ref"] == json!(r) {
                return v;
            }
            self.pending.push_back(v);
        }
    }

    /// `call`, asserting `ok`; answers the frame.
    pub async fn ok(&mut self, frame: Value) -> Value {
        let v = self.call(frame.clone()).await;
        assert_eq!(v["op"], "ok", "{frame} answered {v}");
        v
    }

    /// `call`, asserting an `error` with `code` and a message; answers it.
    pub async fn error(&mut self, frame: Value, code: &str) -> Value {
        let v = self.call(frame.clone()).await;
        assert_error_frame(&v, code);
        v
    }

    /// Subscribes `sub` to a queue with a prefetch; asserts the exact `ok`.
    pub async fn subscribe_queue(&mut self, sub: &str, queue: &str, prefetch: u32) {
        let v = self
            .call(json!({"op": "subscribe", "sub": sub, "queue": queue, "prefetch": prefetch}))
            .await;
        let r = v["ref"].clone();
        assert_eq!(
            v,
            json!({"op": "ok", "ref": r, "sub": sub, "queue": queue}),
            "subscribe {sub} to queue {queue}"
        );
    }

    /// Subscribes `sub` to a topic (extra fields merged into the frame);
    /// asserts the `ok` shape and answers it (`queue`, `resume`).
    pub async fn subscribe_topic(&mut self, sub: &str, topic: &str, extra: Value) -> Value {
        let mut frame = json!({"op": "subscribe", "sub": sub, "topic": topic});
        if let Value::Object(m) = extra {
            for (k, v) in m {
                frame[k] = v;
            }
        }
        let v = self.ok(frame).await;
        assert_eq!(v["sub"], sub, "{v}");
        assert_eq!(v["topic"], topic, "{v}");
        assert!(v["queue"].as_str().is_some_and(|q| !q.is_empty()), "{v}");
        assert!(v["resume"].as_str().is_some_and(|t| !t.is_empty()), "{v}");
        let mut keys: Vec<&String> = v.as_object().expect("object").keys().collect();
        keys.sort();
        assert_eq!(
            keys,
            ["op", "queue", "ref", "resume", "sub", "topic"],
            "topic subscribe ok: {v}"
        );
        v
    }

    /// Acks receipts over the socket; asserts `ok` and answers `results`.
    pub async fn ack(&mut self, receipts: &[&str]) -> Vec<Value> {
        let v = self.ok(json!({"op": "ack", "receipts": receipts})).await;
        results_of(&v, receipts.len())
    }

    /// Nacks receipts over the socket; asserts `ok` and answers `results`.
    pub async fn nack(&mut self, receipts: &[&str], delay_seconds: u32) -> Vec<Value> {
        let v = self
            .ok(json!({"op": "nack", "receipts": receipts, "delay_seconds": delay_seconds}))
            .await;
        results_of(&v, receipts.len())
    }

    /// Sends a clean close and waits (bounded) for the server's close.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(WAIT, self.socket.close(None)).await;
        let _ = tokio::time::timeout(WAIT, async {
            while let Some(Ok(_)) = self.socket.next().await {}
        })
        .await;
    }

    /// Reads (and drops) frames until the connection ends, within `limit`;
    /// answers how it ended. Fails the test if it is still open then.
    pub async fn closed_within(&mut self, limit: Duration) -> Closed {
        self.pending.clear();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.read(left).await {
                Ok(Some(_)) => {}
                Ok(None) => panic!("the connection is still open after {limit:?}"),
                Err(c) => return c,
            }
        }
    }

    /// Reads for `d`: the frames that came if the connection is still open
    /// then, or how it ended.
    pub async fn open_for(&mut self, d: Duration) -> Result<Vec<Value>, Closed> {
        let mut frames: Vec<Value> = self.pending.drain(..).collect();
        let deadline = tokio::time::Instant::now() + d;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.read(left).await {
                Ok(Some(v)) => frames.push(v),
                Ok(None) => return Ok(frames),
                Err(c) => return Err(c),
            }
        }
    }

    /// Like `closed_within`, but also answers the text frames read on the way.
    pub async fn frames_until_closed(&mut self, limit: Duration) -> (Vec<Value>, Closed) {
        let mut frames: Vec<Value> = self.pending.drain(..).collect();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.read(left).await {
                Ok(Some(v)) => frames.push(v),
                Ok(None) => panic!("the connection is still open after {limit:?}: {frames:?}"),
                Err(c) => return (frames, c),
            }
        }
    }
}

/// The `results` of an ack/nack `ok`, checked to have one entry per receipt.
fn results_of(v: &Value, n: usize) -> Vec<Value> {
    let r = v["results"]
        .as_array()
        .unwrap_or_else(|| panic!("answer without results: {v}"))
        .clone();
    assert_eq!(r.len(), n, "one result per receipt: {v}");
    r
}

/// Asserts `{"op": "error", "error": {"code": code, "message": non-empty}}`.
#[track_caller]
pub fn assert_error_frame(v: &Value, code: &str) {
    assert_eq!(v["op"], "error", "expected an error frame: {v}");
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "error without a message: {v}"
    );
}

/// The body of a message (pushed or received).
pub fn body(m: &Value) -> &str {
    m["body"].as_str().expect("a message body is a string")
}

/// Bodies of messages, in the order given.
pub fn bodies(ms: &[Value]) -> Vec<String> {
    ms.iter().map(|m| body(m).to_string()).collect()
}
