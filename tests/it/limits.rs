//! Connection-level limits (`docs/limits.md`): `--max-connections` (a
//! connection past it is closed at once while the others keep being
//! served; a WebSocket holds its slot), `--header-timeout` (a client
//! trickling its request head is cut off, an idle keep-alive connection is
//! closed, a long poll in progress is not). Raw TCP clients, so the test
//! controls exactly how many connections exist and what is on the wire.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::ws::Ws;
use crate::support::{eventually, metric, Server};

/// How long an answer or a close may take.
const WAIT: Duration = Duration::from_secs(10);

fn addr(server: &Server) -> String {
    server.base.trim_start_matches("http://").to_string()
}

/// Sends `GET path` on a keep-alive connection and reads the answer:
/// `Some((status, body))`, or `None` when the server closed the connection
/// instead of answering.
async fn get(conn: &mut TcpStream, path: &str) -> Option<(u16, String)> {
    let req = format!("GET {path} HTTP/1.1\r\nhost: pubq\r\n\r\n");
    if conn.write_all(req.as_bytes()).await.is_err() {
        return None;
    }
    tokio::time::timeout(WAIT, read_answer(conn))
        .await
        .expect("an answer or a close in time")
}

async fn read_answer(conn: &mut TcpStream) -> Option<(u16, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + len]).into_owned();
    Some((status, body))
}

/// Waits until the server closes `conn` (EOF or reset); fails the test if it
/// does not within `limit`.
async fn closed_within(conn: &mut TcpStream, limit: Duration) {
    let mut buf = [0u8; 1024];
    let r = tokio::time::timeout(limit, async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        r.is_ok(),
        "the server did not close the connection within {limit:?}"
    );
}

#[tokio::test]
async fn a_connection_past_max_connections_is_closed_while_the_others_are_served() {
    let server = Server::start_with(&["--max-connections", "3"]).await;
    let addr = addr(&server);
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = TcpStream::connect(&addr).await.expect("connect");
        assert_eq!(get(&mut c, "/healthz").await.map(|a| a.0), Some(200));
        held.push(c);
    }

    // The kernel completes the fourth connection; the server closes it.
    let mut extra = TcpStream::connect(&addr).await.expect("connect");
    assert_eq!(
        get(&mut extra, "/healthz").await,
        None,
        "refused, not served"
    );

    // Everyone already connected is still served.
    for c in &mut held {
        assert_eq!(get(c, "/healthz").await.map(|a| a.0), Some(200));
    }

    // A freed slot takes a new connection.
    drop(held.pop());
    let deadline = Instant::now() + WAIT;
    let mut fresh = loop {
        let mut c = TcpStream::connect(&addr).await.expect("connect");
        if get(&mut c, "/healthz").await.is_some() {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "a slot freed by a closed connection was not reused"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (status, text) = get(&mut fresh, "/metrics").await.expect("metrics");
    assert_eq!(status, 200);
    assert!(
        metric(&text, "pubq_connections_refused_total").is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert_eq!(metric(&text, "pubq_connections_open"), Some(3.0), "{text}");
    assert_eq!(metric(&text, "pubq_connections_max"), Some(3.0), "{text}");
    assert!(
        server.stderr().contains("--max-connections"),
        "the refusal is logged: {}",
        server.stderr()
    );
}

#[tokio::test]
async fn a_websocket_holds_its_connection_slot_until_it_closes() {
    let server = Server::start_with(&["--max-connections", "1"]).await;
    let addr = addr(&server);
    let mut ws = Ws::connect(&server).await;
    ws.call(json!({"op": "subscribe", "sub": "s", "topic": "nope"}))
        .await;

    let mut extra = TcpStream::connect(&addr).await.expect("connect");
    assert_eq!(
        get(&mut extra, "/healthz").await,
        None,
        "the WebSocket holds the only slot"
    );

    drop(ws);
    let served = eventually(WAIT, || {
        let addr = addr.clone();
        async move {
            let Ok(mut c) = TcpStream::connect(&addr).await else {
                return false;
            };
            get(&mut c, "/healthz").await.is_some()
        }
    })
    .await;
    assert!(served, "the WebSocket's slot was not given back");
}

#[tokio::test]
async fn a_slowloris_client_is_cut_off_after_the_header_timeout_while_others_are_served() {
    let server = Server::start_with(&["--header-timeout", "2s"]).await;
    let addr = addr(&server);
    let mut slow = TcpStream::connect(&addr).await.expect("connect");
    let started = Instant::now();
    let trickle = tokio::spawn(async move {
        let head = b"GET /healthz HTTP/1.1\r\nhost: pubq\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        let mut buf = [0u8; 1024];
        for b in head {
            if slow.write_all(&[*b]).await.is_err() {
                return Instant::now();
            }
            // One byte a second; any answer (hyper's 408) or a close ends it.
            match tokio::time::timeout(Duration::from_secs(1), slow.read(&mut buf)).await {
                Err(_) => {}
                Ok(_) => return Instant::now(),
            }
        }
        panic!("the slow client sent its whole head without being cut off");
    });

    // Meanwhile another client is served at once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let asked = Instant::now();
    let (status, _) = server.get("/healthz").await;
    assert_eq!(status, 200);
    assert!(asked.elapsed() < Duration::from_secs(1), "served promptly");

    let cut = tokio::time::timeout(WAIT, trickle)
        .await
        .expect("the slow client is cut off in time")
        .expect("the slow client task");
    let after = cut.duration_since(started);
    assert!(
        after >= Duration::from_millis(1500) && after < Duration::from_secs(6),
        "cut off after {after:?}, expected about 2 s"
    );
    let (_, text) = server.raw(reqwest::Method::GET, "/metrics", "").await;
    assert!(
        metric(&text, "pubq_connections_header_timeout_total").is_some_and(|n| n >= 1.0),
        "{text}"
    );
}

#[tokio::test]
async fn the_header_timeout_closes_idle_keep_alive_but_not_a_long_poll() {
    let server = Server::start_with(&["--header-timeout", "1s"]).await;
    server.create_queue("q", json!({})).await;
    let addr = addr(&server);

    // A long poll of 3 s on a connection whose head arrived: answered.
    let started = Instant::now();
    let got = server.receive("q", json!({"wait_seconds": 3})).await;
    assert!(got.is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(2900),
        "{:?}",
        started.elapsed()
    );

    // A keep-alive connection that is answered, then idle, is closed.
    let mut c = TcpStream::connect(&addr).await.expect("connect");
    assert_eq!(get(&mut c, "/healthz").await.map(|a| a.0), Some(200));
    let idle = Instant::now();
    closed_within(&mut c, Duration::from_secs(5)).await;
    assert!(
        idle.elapsed() >= Duration::from_millis(900),
        "{:?}",
        idle.elapsed()
    );
}
