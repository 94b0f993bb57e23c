//! A WebSocket subscriber (tokio-tungstenite) on a topic: subscribes with a
//! prefetch, acks every message, keeps the resume token from the subscribe
//! answer, and after a disconnect reconnects with that token so that what
//! arrived meanwhile is delivered and nothing is lost. The disconnect is
//! simulated: after `--drop-after` messages the first connection is dropped
//! without a close handshake. It stops on `end` (a poison pill was published).
//!
//! ```text
//! cargo run --example ws_subscriber -- [TOPIC] [--prefetch N] [--drop-after N] [--away SECONDS]
//! ```
//!
//! `TOPIC` defaults to `orders`, the prefetch to 5, `--drop-after` to 3
//! (0 = never drop), `--away` (the pause before reconnecting) to 1 s; past
//! the server's `--resume-seconds` the token has expired, the server answers
//! `ResumeExpired`, and the subscriber says so and subscribes afresh. The server is `PUBQ_URL` (default
//! `http://127.0.0.1:7733`, turned into `ws://127.0.0.1:7733/v1/ws`); a
//! `PUBQ_TOKEN` goes in the `?token=` query.
//!
//! Delivery is at least once: messages pushed but not yet acked when the
//! connection went are pushed again after the resume (with a higher
//! `receive_count`). The subscriber keeps the ids it acked and says when one
//! comes twice, so a run shows what the resume did.
//!
//! A standard queue does not keep order: messages given back at the
//! disconnect queue up behind everything already waiting. So a poison pill
//! published before the reconnect can overtake them, and the subscriber then
//! stops (and unsubscribes, deleting its temporary queue) without them.
//! Publish the pill once the work has been delivered.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// The `sub` id of our one subscription on each connection.
const SUB: &str = "orders";
/// Reconnect attempts in a row before giving up.
const MAX_RETRIES: u32 = 10;

struct Args {
    url: String,
    topic: String,
    prefetch: u32,
    drop_after: usize,
    away: Duration,
}

/// What lives across connections.
#[derive(Default)]
struct State {
    /// From the subscribe `ok`; good for `--resume-seconds` after a disconnect.
    resume: Option<String>,
    /// Ids acked so far (to spot redeliveries).
    acked: HashSet<String>,
    /// Messages pushed again (receive_count > 1), and ids acked twice.
    redelivered: u32,
    duplicates: u32,
    /// Whether the simulated disconnect already happened.
    dropped: bool,
}

/// Why a connection ended.
enum Ended {
    /// The server sent `end`: stop.
    End(String),
    /// We dropped it on purpose: reconnect at once.
    Dropped,
    /// It went away: reconnect after a pause.
    Lost(String),
    /// The server refused the subscription (e.g. `TopicNotFound`): give up.
    Refused(Value),
}

fn parse_args() -> Result<Args> {
    let mut topic = None;
    let mut prefetch = 5;
    let mut drop_after = 3;
    let mut away = 1;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--prefetch" => prefetch = args.next().context("--prefetch needs N")?.parse()?,
            "--drop-after" => drop_after = args.next().context("--drop-after needs N")?.parse()?,
            "--away" => away = args.next().context("--away needs SECONDS")?.parse()?,
            "-h" | "--help" => {
                println!(
                    "usage: ws_subscriber [TOPIC] [--prefetch N] [--drop-after N] [--away SECONDS]"
                );
                std::process::exit(0);
            }
            s if s.starts_with("--") => bail!("unknown flag {s}"),
            _ if topic.is_none() => topic = Some(arg),
            _ => bail!("one TOPIC only"),
        }
    }
    let server = std::env::var("PUBQ_URL").unwrap_or_else(|_| "http://127.0.0.1:7733".into());
    let token = std::env::var("PUBQ_TOKEN").ok().filter(|t| !t.is_empty());
    Ok(Args {
        url: ws_url(&server, token.as_deref())?,
        topic: topic.unwrap_or_else(|| "orders".into()),
        prefetch,
        drop_after,
        away: Duration::from_secs(away),
    })
}

/// `http://host:port[/prefix]` -> `ws://host:port[/prefix]/v1/ws[?token=..]`.
fn ws_url(server: &str, token: Option<&str>) -> Result<String> {
    let server = server.trim_end_matches('/');
    let base = if let Some(rest) = server.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if let Some(rest) = server.strip_prefix("https://") {
        // Needs one of tokio-tungstenite's TLS features, which this example
        // does not turn on.
        format!("wss://{rest}")
    } else if server.starts_with("ws://") || server.starts_with("wss://") {
        server.to_string()
    } else if server.contains("://") {
        bail!("PUBQ_URL {server:?}: the scheme must be http or https");
    } else {
        format!("ws://{server}")
    };
    Ok(match token {
        // API keys and JWTs are URL-safe characters; no escaping needed.
        Some(t) => format!("{base}/v1/ws?token={t}"),
        None => format!("{base}/v1/ws"),
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    let mut state = State::default();
    let mut retries = 0;
    loop {
        let ended = match connect_async(args.url.as_str()).await {
            Ok((socket, _)) => {
                println!("connected to {}", args.url);
                session(socket, &args, &mut state).await
            }
            Err(e) => Ended::Lost(format!("cannot connect: {e}")),
        };
        match ended {
            Ended::End(reason) => {
                println!("end ({reason})");
                break;
            }
            Ended::Refused(error) if error["code"] == "TopicNotFound" => bail!(
                "no topic {:?}: create it first (`pubq topic create {0}`, or run the publisher example)",
                args.topic
            ),
            Ended::Refused(error) => bail!("subscribe refused: {error}"),
            Ended::Dropped => {
                retries = 0;
                println!(
                    "connection dropped on purpose; reconnecting with the resume token in {:?}",
                    args.away
                );
                tokio::time::sleep(args.away).await;
            }
            Ended::Lost(why) => {
                retries += 1;
                if retries > MAX_RETRIES {
                    bail!("giving up after {MAX_RETRIES} failed reconnects: {why}");
                }
                let pause = Duration::from_millis(250 * 2u64.pow(retries.min(5)));
                eprintln!("connection lost ({why}); reconnecting in {pause:?}");
                tokio::time::sleep(pause).await;
            }
        }
    }
    println!(
        "acked {} distinct messages; {} pushed again after the reconnect (pushed but not acked when it dropped); {} acked twice",
        state.acked.len(),
        state.redelivered,
        state.duplicates
    );
    Ok(())
}

/// One connection: subscribe (resuming when we have a token), then ack
/// messages until `end`, a drop, or the connection goes.
async fn session(mut ws: Socket, args: &Args, state: &mut State) -> Ended {
    match run(&mut ws, args, state).await {
        Ok(Ended::Dropped) => {
            // Simulated network failure: no close frame, the socket just goes.
            drop(ws);
            Ended::Dropped
        }
        Ok(ended) => ended,
        Err(e) => Ended::Lost(format!("{e:#}")),
    }
}

async fn run(ws: &mut Socket, args: &Args, state: &mut State) -> Result<Ended> {
    send(ws, subscribe_frame(args, state.resume.as_deref())).await?;
    let mut received_here = 0;
    let mut next_ref = 0u64;
    // Set once we decide to drop: the ref of the last ack to wait for.
    let mut drop_at_ref: Option<u64> = None;
    // Set after `end`: the ref of our unsubscribe.
    let mut ending: Option<String> = None;

    while let Some(frame) = ws.next().await {
        let text = match frame.context("reading from the server")? {
            Message::Text(t) => t,
            Message::Close(c) => {
                return Ok(Ended::Lost(format!(
                    "server closed: {}",
                    c.map_or("no reason".into(), |c| format!("{} {}", c.code, c.reason))
                )))
            }
            // Pings are answered by tungstenite itself.
            _ => continue,
        };
        let frame: Value = match serde_json::from_str(text.as_str()) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("ignoring a frame that is not JSON ({e})");
                continue;
            }
        };
        match frame["op"].as_str().unwrap_or_default() {
            "ok" if frame["ref"] == "subscribe" => {
                let resumed = state.resume.is_some();
                state.resume = frame["resume"].as_str().map(str::to_string);
                println!(
                    "{} topic {:?} (resume token {})",
                    if resumed { "resumed" } else { "subscribed to" },
                    args.topic,
                    state.resume.as_deref().unwrap_or("none")
                );
            }
            "ok" if frame["ref"] == "unsubscribe" => {
                // Answered in order, so every ack before it is done too.
                let _ = ws.close(None).await;
                return Ok(Ended::End(ending.unwrap_or_default()));
            }
            "ok" => {
                for r in frame["results"].as_array().into_iter().flatten() {
                    if let Some(code) = r["error"]["code"].as_str() {
                        eprintln!("ack refused: {code}");
                    }
                }
                if drop_at_ref.is_some() && frame["ref"] == json!(drop_at_ref) {
                    return Ok(Ended::Dropped);
                }
            }
            "error" if frame["ref"] == "subscribe" => {
                let code = frame["error"]["code"].as_str().unwrap_or("?");
                if code == "ResumeExpired" && state.resume.is_some() {
                    // The server says so plainly: messages may have been missed.
                    eprintln!("resume token expired: what was not acked, and what was published while away, is lost; subscribing afresh");
                    state.resume = None;
                    send(ws, subscribe_frame(args, None)).await?;
                } else {
                    return Ok(Ended::Refused(frame["error"].clone()));
                }
            }
            "error" => eprintln!("server error: {}", frame["error"]),
            "message" => {
                let id = frame["id"].as_str().unwrap_or_default().to_string();
                let Some(receipt) = frame["receipt"].as_str() else {
                    eprintln!("message without a receipt: {frame}");
                    continue;
                };
                if drop_at_ref.is_some() {
                    println!("  (not acking {id}: about to drop the connection)");
                    continue;
                }
                let again = state.acked.contains(&id);
                if again {
                    state.duplicates += 1;
                }
                if frame["receive_count"].as_u64().is_some_and(|n| n > 1) {
                    state.redelivered += 1;
                }
                println!(
                    "message {id} #{} receive_count={}{}{}: {}",
                    frame["attributes"]["seq"].as_str().unwrap_or("-"),
                    frame["receive_count"],
                    if frame["poison"] == true {
                        " POISON"
                    } else {
                        ""
                    },
                    if again { " (acked before!)" } else { "" },
                    frame["body"].as_str().unwrap_or_default()
                );
                next_ref += 1;
                send(
                    ws,
                    json!({"op": "ack", "receipts": [receipt], "ref": next_ref}),
                )
                .await?;
                state.acked.insert(id);
                received_here += 1;
                if !state.dropped && args.drop_after > 0 && received_here == args.drop_after {
                    state.dropped = true;
                    drop_at_ref = Some(next_ref);
                }
            }
            "end" if frame["sub"] == SUB => {
                // Unsubscribing deletes the temporary queue now instead of
                // after the resume window.
                ending = Some(frame["reason"].as_str().unwrap_or("end").to_string());
                send(
                    ws,
                    json!({"op": "unsubscribe", "sub": SUB, "ref": "unsubscribe"}),
                )
                .await?;
            }
            other => eprintln!("ignoring a {other:?} frame"),
        }
    }
    Ok(Ended::Lost("connection closed".into()))
}

fn subscribe_frame(args: &Args, resume: Option<&str>) -> Value {
    let mut frame = json!({
        "op": "subscribe", "sub": SUB, "topic": args.topic,
        "prefetch": args.prefetch, "ref": "subscribe",
    });
    if let Some(token) = resume {
        frame["resume"] = json!(token);
    }
    frame
}

async fn send(ws: &mut Socket, frame: Value) -> Result<()> {
    ws.send(Message::text(frame.to_string()))
        .await
        .context("sending to the server")
}
