//! TLS with real clients: the server is started with a certificate made by
//! `pubq dev-cert` (`--tls-cert`/`--tls-key`), and spoken to over HTTPS with
//! reqwest (rustls, trusting that certificate), over WSS with
//! tokio-tungstenite, with raw tokio-rustls handshakes (to see which
//! certificate the server presents), and with the CLI (`--ca-cert`).
//! `docs/tls.md` is the reference.
//!
//! The harness in `support` speaks plain HTTP; [`TlsServer`] here starts the
//! same binary with TLS and reads its `listening on https://ADDR` line.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Child;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::Connector;

use crate::support::{capture_stderr, pubq_command};

/// How long a server may take to print its address, and a frame or an
/// answer to come.
const WAIT: Duration = Duration::from_secs(20);

/// A `pubq serve --tls-cert .. --tls-key ..` child process.
struct TlsServer {
    /// `127.0.0.1:PORT`.
    addr: String,
    pid: u32,
    stderr: Arc<Mutex<String>>,
    child: Child,
}

impl TlsServer {
    async fn start(files: &CertFiles, extra: &[&str]) -> Self {
        let mut cmd = pubq_command();
        cmd.arg("serve")
            .args(["--memory", "--listen", "127.0.0.1:0"])
            .arg("--tls-cert")
            .arg(&files.cert)
            .arg("--tls-key")
            .arg(&files.key)
            .args(extra)
            .env("PUBQ_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn the pubq binary");
        let pid = child.id().expect("a running child has a pid");
        let stderr = capture_stderr(&mut child);
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let addr = tokio::time::timeout(WAIT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(addr) = line.trim().strip_prefix("listening on https://") {
                    return Some(addr.to_string());
                }
                assert!(
                    !line.contains("http://"),
                    "a TLS server announced plain http: {line}"
                );
            }
            None
        })
        .await;
        let Ok(Some(addr)) = addr else {
            panic!(
                "pubq serve with TLS did not print an https address; stderr:\n{}",
                stderr.lock().unwrap_or_else(|p| p.into_inner())
            );
        };
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            addr,
            pid,
            stderr,
            child,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn signal(&self, which: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{which}"), &self.pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{which} {}", self.pid);
    }

    /// Sends SIGTERM and answers the exit code.
    async fn terminate(mut self) -> Option<i32> {
        self.signal("TERM");
        tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("the server exits after SIGTERM")
            .expect("wait for the server")
            .code()
    }

    /// The server's Prometheus counter or gauge `name` (with its labels, as
    /// printed), or `None` when absent.
    async fn metric(&self, client: &reqwest::Client, name: &str) -> Option<f64> {
        let text = client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("read /metrics");
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }
}

/// A certificate and key written by `pubq dev-cert`.
struct CertFiles {
    dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl CertFiles {
    /// The certificate as DER, as a handshake presents it.
    fn der(&self) -> CertificateDer<'static> {
        let pem = std::fs::read(&self.cert).expect("read cert.pem");
        CertificateDer::from_pem_slice(&pem).expect("cert.pem holds a certificate")
    }

    fn pem(&self) -> Vec<u8> {
        std::fs::read(&self.cert).expect("read cert.pem")
    }
}

/// Runs `pubq dev-cert --out DIR --name ...` (replacing what is there).
async fn dev_cert(dir: &Path, names: &[&str]) -> CertFiles {
    let mut cmd = pubq_command();
    cmd.arg("dev-cert")
        .arg("--out")
        .arg(dir)
        .arg("--force")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for n in names {
        cmd.args(["--name", n]);
    }
    let out = tokio::time::timeout(WAIT, cmd.output())
        .await
        .expect("dev-cert finishes")
        .expect("run pubq dev-cert");
    assert!(out.status.success(), "pubq dev-cert failed: {out:?}");
    let line: Value = serde_json::from_slice(&out.stdout).expect("dev-cert prints one JSON line");
    assert!(line["fingerprint_sha256"].is_string(), "{line}");
    CertFiles {
        dir: dir.to_path_buf(),
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    }
}

/// A reqwest client trusting `ca` (and nothing of the system's).
fn https_client(ca: &CertFiles) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca.pem()).expect("PEM certificate"))
        .timeout(WAIT)
        .build()
        .expect("build the HTTPS client")
}

/// A rustls client configuration trusting these certificates.
fn rustls_client(trusted: &[CertificateDer<'static>]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for c in trusted {
        roots.add(c.clone()).expect("a usable trust anchor");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// Opens a new TLS connection and answers the certificate the server
/// presented.
async fn presented_cert(
    addr: &str,
    trusted: &[CertificateDer<'static>],
) -> CertificateDer<'static> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("127.0.0.1").expect("an IP server name");
    let tls = tokio::time::timeout(
        WAIT,
        TlsConnector::from(rustls_client(trusted)).connect(name, tcp),
    )
    .await
    .expect("handshake in time")
    .expect("handshake succeeds");
    let (_, conn) = tls.get_ref();
    conn.peer_certificates()
        .and_then(|c| c.first())
        .expect("the server presents a certificate")
        .clone()
        .into_owned()
}

type Wss = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// The next text frame, parsed.
async fn next_text(ws: &mut Wss) -> Value {
    loop {
        let m = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame in time")
            .expect("the socket stays open")
            .expect("a good frame");
        if let Message::Text(t) = m {
            return serde_json::from_str(t.as_str()).expect("a JSON frame");
        }
    }
}

async fn json(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let v = resp.json().await.expect("a JSON answer");
    (status, v)
}

#[tokio::test]
async fn https_publish_receive_and_ack_work_with_a_dev_certificate() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The default names: localhost, 127.0.0.1 and ::1.
    let certs = dev_cert(dir.path(), &[]).await;
    let server = TlsServer::start(&certs, &[]).await;
    let http = https_client(&certs);

    let (s, _) = json(
        http.put(server.url("/v1/topics/t"))
            .send()
            .await
            .expect("PUT"),
    )
    .await;
    assert_eq!(s, 201);
    let (s, _) = json(
        http.put(server.url("/v1/queues/q"))
            .send()
            .await
            .expect("PUT"),
    )
    .await;
    assert_eq!(s, 201);
    let (s, _) = json(
        http.put(server.url("/v1/topics/t/subscriptions/q"))
            .json(&json!({}))
            .send()
            .await
            .expect("subscribe"),
    )
    .await;
    assert_eq!(s, 201);
    let (s, v) = json(
        http.post(server.url("/v1/topics/t/publish"))
            .json(&json!({"messages": [{"body": "one"}, {"body": "two"}]}))
            .send()
            .await
            .expect("publish"),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = json(
        http.post(server.url("/v1/queues/q/receive"))
            .json(&json!({"max": 10, "wait_seconds": 1}))
            .send()
            .await
            .expect("receive"),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let messages = v["messages"].as_array().expect("messages");
    let mut bodies: Vec<&str> = messages.iter().filter_map(|m| m["body"].as_str()).collect();
    bodies.sort();
    assert_eq!(bodies, ["one", "two"]);
    let receipts: Vec<&str> = messages
        .iter()
        .filter_map(|m| m["receipt"].as_str())
        .collect();
    let (s, v) = json(
        http.post(server.url("/v1/queues/q/ack"))
            .json(&json!({ "receipts": receipts }))
            .send()
            .await
            .expect("ack"),
    )
    .await;
    assert_eq!(s, 200);
    assert!(
        v["results"]
            .as_array()
            .is_some_and(|r| r.len() == 2 && r.iter().all(|e| e["ok"] == true)),
        "{v}"
    );
    let (_, q) = json(
        http.get(server.url("/v1/queues/q"))
            .send()
            .await
            .expect("GET"),
    )
    .await;
    assert_eq!(q["stats"]["acked"], 2, "{q}");
    assert_eq!(q["stats"]["visible"], 0, "{q}");
}

#[tokio::test]
async fn a_websocket_over_tls_subscribes_and_receives_a_pushed_message() {
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = dev_cert(dir.path(), &["127.0.0.1"]).await;
    let server = TlsServer::start(&certs, &[]).await;
    let http = https_client(&certs);
    let put = http.put(server.url("/v1/queues/jobs")).send().await;
    assert_eq!(put.expect("create queue").status().as_u16(), 201);

    let url = format!("wss://{}/v1/ws", server.addr);
    let (mut ws, _) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::connect_async_tls_with_config(
            url.as_str(),
            None,
            true,
            Some(Connector::Rustls(rustls_client(&[certs.der()]))),
        ),
    )
    .await
    .expect("WSS connect in time")
    .expect("WSS connect");
    let subscribe = json!({"op": "subscribe", "sub": "s1", "queue": "jobs", "ref": 1});
    ws.send(Message::text(subscribe.to_string()))
        .await
        .expect("send subscribe");

    let ok = next_text(&mut ws).await;
    assert_eq!(
        (ok["op"].as_str(), ok["ref"].as_u64()),
        (Some("ok"), Some(1)),
        "{ok}"
    );

    let sent = http
        .post(server.url("/v1/queues/jobs/send"))
        .json(&json!({"body": "over wss"}))
        .send()
        .await
        .expect("send");
    assert_eq!(sent.status().as_u16(), 200);
    let pushed = next_text(&mut ws).await;
    assert_eq!(pushed["op"], "message", "{pushed}");
    assert_eq!(pushed["sub"], "s1");
    assert_eq!(pushed["body"], "over wss");
    let ack = json!({"op": "ack", "receipts": [pushed["receipt"]], "ref": 2});
    ws.send(Message::text(ack.to_string()))
        .await
        .expect("send ack");
}

#[tokio::test]
async fn plain_http_and_silent_clients_on_the_tls_port_fail_cleanly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = dev_cert(dir.path(), &["127.0.0.1"]).await;
    let server = TlsServer::start(&certs, &["--tls-handshake-timeout", "1s"]).await;
    let http = https_client(&certs);

    // A plain HTTP client gets a plain answer saying to use https.
    let plain = reqwest::Client::builder()
        .timeout(WAIT)
        .build()
        .expect("client");
    let resp = plain
        .get(format!("http://{}/healthz", server.addr))
        .send()
        .await
        .expect("plain HTTP gets an answer, not a hang or a reset");
    assert_eq!(resp.status().as_u16(), 400);
    let v: Value = resp.json().await.expect("a JSON error");
    assert_eq!(v["error"]["code"], "InvalidRequest", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("https")),
        "{v}"
    );

    // Garbage that is neither HTTP nor TLS: the connection is closed.
    let mut raw = TcpStream::connect(&server.addr).await.expect("connect");
    raw.write_all(&[0x16, 0x03, 0x01, 0xff, 0xff, 0, 0, 0, 1, 2, 3])
        .await
        .expect("write garbage");
    let mut buf = [0u8; 256];
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            match raw.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {} // a TLS alert
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "a garbage handshake is closed");

    // A client that connects and says nothing is closed after the
    // handshake timeout (1 s), while others are served meanwhile.
    let started = Instant::now();
    let mut silent = TcpStream::connect(&server.addr).await.expect("connect");
    let served = http
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(served.status().as_u16(), 200);
    let n = tokio::time::timeout(WAIT, silent.read(&mut buf))
        .await
        .expect("the silent client is closed in time");
    assert!(matches!(n, Ok(0) | Err(_)), "closed, not answered: {n:?}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(8),
        "closed after {took:?}, expected about 1 s"
    );

    assert!(
        server
            .metric(&http, "pubq_tls_handshake_failures_total")
            .await
            .is_some_and(|n| n >= 2.0),
        "plain HTTP and garbage count as failed handshakes"
    );
    assert_eq!(
        server
            .metric(&http, "pubq_tls_handshake_timeouts_total")
            .await,
        Some(1.0)
    );
    assert!(!server.stderr().contains("panicked"), "{}", server.stderr());
}

#[tokio::test]
async fn sighup_reloads_the_certificate_and_a_broken_one_keeps_the_old() {
    let live = tempfile::tempdir().expect("temp dir");
    let spare = tempfile::tempdir().expect("temp dir");
    let first = dev_cert(live.path(), &["127.0.0.1", "first.test"]).await;
    let first_der = first.der();
    let server = TlsServer::start(&first, &[]).await;
    let second = dev_cert(spare.path(), &["127.0.0.1", "second.test"]).await;
    let second_der = second.der();
    assert_ne!(first_der, second_der);
    // A client that trusts either, to see which one is presented.
    let trusted = [first_der.clone(), second_der.clone()];
    assert_eq!(presented_cert(&server.addr, &trusted).await, first_der);

    // An HTTPS connection opened before the reload.
    let before = https_client(&first);
    let r = before.get(server.url("/healthz")).send().await;
    assert_eq!(r.expect("healthz").status().as_u16(), 200);

    // Replace the live files with the second pair, then SIGHUP.
    std::fs::copy(&second.cert, &first.cert).expect("copy cert");
    std::fs::copy(&second.key, &first.key).expect("copy key");
    server.signal("HUP");
    let deadline = Instant::now() + WAIT;
    loop {
        if presented_cert(&server.addr, &trusted).await == second_der {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was not served after SIGHUP; stderr:\n{}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The connection from before keeps working (its session is unchanged).
    let r = before.get(server.url("/healthz")).send().await;
    assert_eq!(
        r.expect("healthz on the old connection").status().as_u16(),
        200
    );

    // A broken certificate file: the reload fails, is logged, and the
    // second certificate keeps serving.
    std::fs::write(&first.cert, "-----BEGIN CERTIFICATE-----\nbroken\n").expect("break");
    server.signal("HUP");
    let deadline = Instant::now() + WAIT;
    while !server.stderr().contains("TLS reload failed") {
        assert!(
            Instant::now() < deadline,
            "no reload error logged; stderr:\n{}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(presented_cert(&server.addr, &trusted).await, second_der);
    // A key that does not match the certificate is refused too.
    std::fs::copy(&second.cert, &first.cert).expect("copy cert");
    let other = dev_cert(&spare.path().join("other"), &["127.0.0.1"]).await;
    std::fs::copy(&other.key, &first.key).expect("copy a foreign key");
    server.signal("HUP");
    let deadline = Instant::now() + WAIT;
    while server.stderr().matches("TLS reload failed").count() < 2 {
        assert!(Instant::now() < deadline, "{}", server.stderr());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        server.stderr().contains("does not belong"),
        "{}",
        server.stderr()
    );
    assert_eq!(presented_cert(&server.addr, &trusted).await, second_der);

    let http = https_client(&second);
    assert_eq!(
        server
            .metric(&http, "pubq_tls_reloads_total{result=\"ok\"}")
            .await,
        Some(1.0)
    );
    assert_eq!(
        server
            .metric(&http, "pubq_tls_reloads_total{result=\"error\"}")
            .await,
        Some(2.0)
    );
    let _ = other.dir;
}

#[tokio::test]
async fn the_cli_talks_to_an_https_server_with_ca_cert() {
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = dev_cert(dir.path(), &["127.0.0.1"]).await;
    let server = TlsServer::start(&certs, &[]).await;
    let base = format!("https://{}", server.addr);
    let cli = |args: &[&str], ca: Option<&Path>| {
        let mut cmd = pubq_command();
        cmd.args(args).args(["--server", &base]);
        if let Some(ca) = ca {
            cmd.env("PUBQ_CA_CERT", ca);
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        async move {
            tokio::time::timeout(WAIT, cmd.output())
                .await
                .expect("the CLI finishes")
                .expect("run pubq")
        }
    };
    let ca = Some(certs.cert.as_path());
    for args in [
        &["queue", "create", "q"][..],
        &["send", "q", "hello over tls"][..],
    ] {
        let out = cli(args, ca).await;
        assert!(out.status.success(), "{args:?}: {out:?}");
    }
    let out = cli(&["consume", "q", "--wait", "1s"], ca).await;
    assert!(out.status.success(), "{out:?}");
    let line: Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!(line["body"], "hello over tls");

    // The flag works as well as the environment variable.
    let cert = certs.cert.to_str().expect("utf-8 path");
    let out = cli(&["health", "--ca-cert", cert], None).await;
    assert!(out.status.success(), "{out:?}");

    // Without trusting the certificate: cannot connect (3), with a hint.
    let out = cli(&["queue", "list"], None).await;
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--ca-cert"), "{stderr}");
}

/// `pubq bench` against an `https://` server: WebSocket consumers go over
/// `wss://`, trusting the same `--ca-cert` as the HTTP side, and every copy
/// arrives.
#[tokio::test]
async fn bench_websocket_consumers_speak_wss_with_ca_cert() {
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = dev_cert(dir.path(), &["127.0.0.1"]).await;
    let server = TlsServer::start(&certs, &[]).await;
    let base = format!("https://{}", server.addr);
    let run = |ca: Option<&Path>| {
        let mut cmd = pubq_command();
        cmd.args([
            "bench",
            "fanout",
            "--messages",
            "200",
            "--queues",
            "2",
            "--consumer",
            "ws",
            "--json",
            "--no-progress",
            "--server",
            &base,
        ]);
        if let Some(ca) = ca {
            cmd.arg("--ca-cert").arg(ca);
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        async move {
            tokio::time::timeout(WAIT, cmd.output())
                .await
                .expect("the bench finishes")
                .expect("run pubq bench")
        }
    };
    let out = run(Some(certs.cert.as_path())).await;
    assert!(out.status.success(), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    assert_eq!(report["settings"]["consumer"], "ws", "{report}");
    assert_eq!(report["delivered"], 400, "{report}");
    assert_eq!(report["losses"], 0, "{report}");
    assert_eq!(report["duplicates"], 0, "{report}");

    // Without the certificate the bench cannot connect.
    let out = run(None).await;
    assert!(!out.status.success(), "{out:?}");
}

#[tokio::test]
async fn serve_refuses_to_start_with_unusable_tls_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = dev_cert(dir.path(), &["127.0.0.1"]).await;
    let run = |args: Vec<String>| async move {
        let mut cmd = pubq_command();
        cmd.args(["serve", "--memory", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        tokio::time::timeout(WAIT, cmd.output())
            .await
            .expect("serve exits at once")
            .expect("run pubq")
    };
    let cert = certs.cert.display().to_string();
    let key = certs.key.display().to_string();
    let missing = dir.path().join("missing.pem").display().to_string();

    let out = run(vec!["--tls-cert".into(), cert.clone()]).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--tls-key"),
        "{out:?}"
    );

    let out = run(vec![
        "--tls-cert".into(),
        missing,
        "--tls-key".into(),
        key.clone(),
    ])
    .await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("missing.pem"),
        "{out:?}"
    );

    // The key where the certificate should be.
    let out = run(vec![
        "--tls-cert".into(),
        key.clone(),
        "--tls-key".into(),
        key,
    ])
    .await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no PEM certificate"),
        "{out:?}"
    );
    let _ = cert;
}

#[tokio::test]
async fn sigterm_closes_wss_with_1001_and_answers_a_long_poll_in_progress() {
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = dev_cert(dir.path(), &["127.0.0.1"]).await;
    let server = TlsServer::start(&certs, &[]).await;
    let http = https_client(&certs);
    let put = http.put(server.url("/v1/queues/q")).send().await;
    assert_eq!(put.expect("create queue").status().as_u16(), 201);

    let url = format!("wss://{}/v1/ws", server.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async_tls_with_config(
        url.as_str(),
        None,
        true,
        Some(Connector::Rustls(rustls_client(&[certs.der()]))),
    )
    .await
    .expect("WSS connect");
    let subscribe = json!({"op": "subscribe", "sub": "s", "queue": "q", "ref": 1});
    ws.send(Message::text(subscribe.to_string()))
        .await
        .expect("send subscribe");
    assert_eq!(next_text(&mut ws).await["op"], "ok");

    // A long poll parked on another queue when the signal comes.
    let put = http.put(server.url("/v1/queues/idle")).send().await;
    assert_eq!(put.expect("create queue").status().as_u16(), 201);
    let poll = http
        .post(server.url("/v1/queues/idle/receive"))
        .json(&json!({"wait_seconds": 15}))
        .send();
    let poll = tokio::spawn(poll);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    let exit = server.terminate().await;
    assert_eq!(exit, Some(0));
    let answer = poll
        .await
        .expect("poll task")
        .expect("the long poll is answered");
    assert_eq!(answer.status().as_u16(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let close = loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame in time")
        {
            Some(Ok(Message::Close(Some(f)))) => break (u16::from(f.code), f.reason.to_string()),
            Some(Ok(_)) => {}
            other => panic!("the WSS session ended without a close frame: {other:?}"),
        }
    };
    assert_eq!(close, (1001, "server shutting down".to_string()));
}
