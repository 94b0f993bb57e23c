//! Authentication, authorization, rate limits and the audit log
//! (`docs/security.md`). Each server gets a `pubq.toml` with two API keys
//! and HS256, RS256 and EdDSA JWT keys (test-only fixtures in
//! `tests/fixtures/auth`); tokens are minted here with `jsonwebtoken`.
//!
//! The matrix tests send every HTTP endpoint and every WebSocket op a missing
//! token, an unknown key, a bad signature, an expired token, a wrong
//! audience, a valid token lacking the grant and one holding it, and check
//! the status or frame of each, and that no refusal changed any state.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::support::ws::{assert_error_frame, Closed, Ws};
use crate::support::{eventually, pubq_command, receipt, Server};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/auth");
/// API key with admin on every topic and queue.
const ADMIN_KEY: &str = "pubq_test-admin-key-0123456789";
/// API key that may publish to `orders` and consume `jobs`.
const CI_KEY: &str = "pubq_test-ci-key-0123456789";
const AUDIENCE: &str = "pubq-tests";
const ISSUER: &str = "pubq-test-issuer";

fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A `pubq.toml`: `auth_lines` go into `[auth]`, `keys` are more
/// `[[auth.keys]]` tables.
fn write_config(auth_lines: &str, keys: &str) -> tempfile::NamedTempFile {
    let text = format!(
        r#"
[auth]
{auth_lines}

[[auth.keys]]
id = "admin"
sha256 = "{admin}"
grants = {{ admin = ["topic:*", "queue:*"] }}

[[auth.keys]]
id = "ci"
sha256 = "{ci}"
grants = {{ publish = ["topic:orders"], consume = ["queue:jobs"] }}

{keys}

[auth.jwt]
hs256_secret_file = "{FIXTURES}/hs256.secret"
rs256_public_keys = ["{FIXTURES}/rsa-public.pem"]
eddsa_public_keys = ["{FIXTURES}/ed25519-public.pem"]
audience = "{AUDIENCE}"
issuer = "{ISSUER}"
leeway_seconds = 0
"#,
        admin = sha256_hex(ADMIN_KEY),
        ci = sha256_hex(CI_KEY),
    );
    let mut f = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .expect("temp file");
    f.write_all(text.as_bytes()).expect("write config");
    f
}

/// A server with the standard keys; the config file must outlive it.
async fn secured(
    auth_lines: &str,
    keys: &str,
    flags: &[&str],
) -> (Server, tempfile::NamedTempFile) {
    let file = write_config(auth_lines, keys);
    let path = file.path().to_str().expect("utf-8 path").to_string();
    let mut args = vec!["--config", path.as_str()];
    args.extend_from_slice(flags);
    let s = Server::start_with_env(&args, &[("PUBQ_LOG", "warn,pubq::audit=info")]).await;
    (s, file)
}

// ---- tokens ----

#[derive(Debug, Clone, Copy)]
enum Alg {
    Hs256,
    Rs256,
    EdDsa,
}

const ALGS: [Alg; 3] = [Alg::Hs256, Alg::Rs256, Alg::EdDsa];

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).expect("read a fixture")
}

fn sign(alg: Alg, claims: &Value) -> String {
    let (header, key) = match alg {
        Alg::Hs256 => {
            let mut secret = fixture("hs256.secret");
            // The server drops the file's trailing newline.
            if secret.last() == Some(&b'\n') {
                secret.pop();
            }
            (Algorithm::HS256, EncodingKey::from_secret(&secret))
        }
        Alg::Rs256 => (
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(&fixture("rsa-private.pem")).expect("RSA test key"),
        ),
        Alg::EdDsa => (
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(&fixture("ed25519-private.pem")).expect("Ed25519 test key"),
        ),
    };
    encode(&Header::new(header), claims, &key).expect("sign a test token")
}

/// Claims valid for an hour unless changed.
fn claims(sub: &str, grants: Value) -> Value {
    json!({"sub": sub, "exp": now() + 3600, "aud": AUDIENCE, "iss": ISSUER, "pubq": grants})
}

fn jwt(alg: Alg, sub: &str, grants: Value) -> String {
    sign(alg, &claims(sub, grants))
}

/// The same token with its signature altered.
fn tampered(token: &str) -> String {
    let (rest, sig) = token.rsplit_once('.').expect("a JWT has three parts");
    let mut sig: Vec<u8> = sig.bytes().collect();
    sig[0] = if sig[0] == b'A' { b'B' } else { b'A' };
    format!("{rest}.{}", String::from_utf8(sig).expect("ascii"))
}

/// Every way a token can fail to authenticate, for one algorithm.
fn unauthenticated_tokens(alg: Alg) -> Vec<(&'static str, Option<String>)> {
    let granted_everything = json!({"admin": ["topic:*", "queue:*"]});
    let mut expired = claims("late", granted_everything.clone());
    expired["exp"] = json!(now() - 60);
    let mut wrong_aud = claims("elsewhere", granted_everything.clone());
    wrong_aud["aud"] = json!("another-service");
    vec![
        ("no token", None),
        (
            "unknown API key",
            Some("pubq_not-a-configured-key".to_string()),
        ),
        (
            "bad signature",
            Some(tampered(&jwt(alg, "forger", granted_everything))),
        ),
        ("expired", Some(sign(alg, &expired))),
        ("wrong audience", Some(sign(alg, &wrong_aud))),
    ]
}

/// Grants on names no test resource has.
fn elsewhere() -> Value {
    json!(["topic:zz-*", "queue:zz-*"])
}

// ---- HTTP ----

/// Sends a request with an optional bearer token; answers the status, the
/// body (JSON, or the text as a JSON string) and the headers.
async fn call(
    s: &Server,
    method: Method,
    path: &str,
    body: Option<&Value>,
    token: Option<&str>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut req = s.http.request(method.clone(), s.url(path));
    if let Some(b) = body {
        req = req.json(b);
    }
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", s.stderr()));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("read the answer");
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v, headers)
}

async fn admin(s: &Server, method: Method, path: &str, body: Value) -> Value {
    let (st, v, _) = call(s, method.clone(), path, Some(&body), Some(ADMIN_KEY)).await;
    assert!(
        (200..300).contains(&st),
        "{method} {path} as admin: {st} {v}"
    );
    v
}

/// Everything a refused request could have changed: every topic and queue
/// described (ages left out: they move with the clock).
async fn snapshot(s: &Server) -> Value {
    let mut out = serde_json::Map::new();
    let topics = admin(s, Method::GET, "/v1/topics", json!(null)).await;
    for t in topics["topics"].as_array().expect("topics") {
        let name = t.as_str().expect("name");
        let d = admin(s, Method::GET, &format!("/v1/topics/{name}"), json!(null)).await;
        out.insert(format!("topic:{name}"), d);
    }
    let queues = admin(s, Method::GET, "/v1/queues", json!(null)).await;
    for q in queues["queues"].as_array().expect("queues") {
        let name = q.as_str().expect("name");
        let mut d = admin(s, Method::GET, &format!("/v1/queues/{name}"), json!(null)).await;
        if let Some(stats) = d["stats"].as_object_mut() {
            stats.remove("oldest_age_seconds");
        }
        // A redrive's progress moves in the background.
        if let Some(o) = d.as_object_mut() {
            o.remove("redrive");
        }
        out.insert(format!("queue:{name}"), d);
    }
    Value::Object(out)
}

/// One row of the HTTP matrix.
struct Endpoint {
    method: Method,
    path: String,
    body: Option<Value>,
    /// Grants that allow it.
    granted: Value,
    /// Grants that come closest without allowing it.
    lacking: Value,
    ok: u16,
}

/// Grants of `action` on `pattern`; the lacking set holds every action that
/// does not imply it on the same pattern, and everything elsewhere.
fn needs(action: &str, pattern: &str) -> (Value, Value) {
    let granted = json!({ action: [pattern] });
    let others: Vec<&str> = match action {
        "publish" => vec!["consume"],
        "consume" => vec!["publish"],
        _ => vec!["publish", "consume"],
    };
    let mut lacking = json!({"publish": elsewhere(), "consume": elsewhere(), "admin": elsewhere()});
    for o in others {
        lacking[o]
            .as_array_mut()
            .expect("list")
            .push(json!(pattern));
    }
    (granted, lacking)
}

fn endpoint(
    method: Method,
    path: &str,
    body: Option<Value>,
    need: (Value, Value),
    ok: u16,
) -> Endpoint {
    Endpoint {
        method,
        path: path.to_string(),
        body,
        granted: need.0,
        lacking: need.1,
        ok,
    }
}

/// Describe needs any grant: the lacking token has none on the resource.
fn needs_any(pattern: &str) -> (Value, Value) {
    (
        json!({ "consume": [pattern] }),
        json!({"publish": elsewhere(), "consume": elsewhere(), "admin": elsewhere()}),
    )
}

/// Resources every endpoint of the matrix acts on; answers the receipts of
/// three in-flight messages of `jobs`.
async fn set_up(s: &Server) -> Vec<String> {
    for t in ["orders", "t-del", "t-sub", "t-unsub"] {
        admin(s, Method::PUT, &format!("/v1/topics/{t}"), json!({})).await;
    }
    for q in ["jobs", "q-del", "q-purge", "q-sub", "q-unsub", "dlq"] {
        admin(s, Method::PUT, &format!("/v1/queues/{q}"), json!({})).await;
    }
    admin(
        s,
        Method::PUT,
        "/v1/queues/src",
        json!({"dead_letter": {"queue": "dlq", "max_receives": 1}}),
    )
    .await;
    admin(
        s,
        Method::PUT,
        "/v1/topics/t-unsub/subscriptions/q-unsub",
        json!({}),
    )
    .await;
    admin(
        s,
        Method::PUT,
        "/v1/topics/orders/subscriptions/jobs",
        json!({}),
    )
    .await;
    admin(
        s,
        Method::POST,
        "/v1/queues/q-purge/send",
        json!({"body": "p"}),
    )
    .await;
    for b in ["a", "b", "c"] {
        admin(
            s,
            Method::POST,
            "/v1/queues/jobs/send",
            json!({ "body": b }),
        )
        .await;
    }
    let got = admin(
        s,
        Method::POST,
        "/v1/queues/jobs/receive",
        json!({"max": 3, "visibility_timeout_seconds": 600}),
    )
    .await;
    let receipts: Vec<String> = got["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| receipt(m).to_string())
        .collect();
    assert_eq!(receipts.len(), 3, "{got}");
    receipts
}

#[tokio::test]
async fn every_http_endpoint_refuses_bad_tokens_and_missing_grants_and_changes_nothing() {
    let (s, _cfg) = secured("", "", &[]).await;
    let r = set_up(&s).await;
    let page_need = (
        json!({"admin": ["queue:zz-only"]}),
        json!({"publish": ["topic:*", "queue:*"], "consume": ["topic:*", "queue:*"]}),
    );
    let table = vec![
        endpoint(
            Method::PUT,
            "/v1/topics/t-new",
            Some(json!({})),
            needs("admin", "topic:t-new"),
            201,
        ),
        endpoint(
            Method::GET,
            "/v1/topics/orders",
            None,
            needs_any("topic:orders"),
            200,
        ),
        endpoint(
            Method::DELETE,
            "/v1/topics/t-del",
            None,
            needs("admin", "topic:t-del"),
            200,
        ),
        endpoint(
            Method::PUT,
            "/v1/topics/t-sub/subscriptions/q-sub",
            Some(json!({})),
            needs("admin", "topic:t-sub"),
            201,
        ),
        endpoint(
            Method::DELETE,
            "/v1/topics/t-unsub/subscriptions/q-unsub",
            None,
            needs("admin", "topic:t-unsub"),
            200,
        ),
        endpoint(
            Method::POST,
            "/v1/topics/orders/publish",
            Some(json!({"body": "published"})),
            needs("publish", "topic:orders"),
            200,
        ),
        endpoint(
            Method::PUT,
            "/v1/queues/q-new",
            Some(json!({})),
            needs("admin", "queue:q-new"),
            201,
        ),
        endpoint(
            Method::PUT,
            "/v1/queues/jobs",
            Some(json!({"visibility_timeout_seconds": 45})),
            needs("admin", "queue:jobs"),
            200,
        ),
        endpoint(
            Method::GET,
            "/v1/queues/jobs",
            None,
            needs_any("queue:jobs"),
            200,
        ),
        endpoint(
            Method::DELETE,
            "/v1/queues/q-del",
            None,
            needs("admin", "queue:q-del"),
            200,
        ),
        endpoint(
            Method::POST,
            "/v1/queues/q-purge/purge",
            Some(json!({})),
            needs("admin", "queue:q-purge"),
            200,
        ),
        endpoint(
            Method::POST,
            "/v1/queues/jobs/send",
            Some(json!({"body": "sent"})),
            needs("publish", "queue:jobs"),
            200,
        ),
        endpoint(
            Method::POST,
            "/v1/queues/jobs/receive",
            Some(json!({"max": 10})),
            needs("consume", "queue:jobs"),
            200,
        ),
        endpoint(
            Method::POST,
            "/v1/queues/jobs/ack",
            Some(json!({"receipts": [r[0]]})),
            needs("consume", "queue:jobs"),
            200,
        ),
        endpoint(
            Method::POST,
            "/v1/queues/jobs/nack",
            Some(json!({"receipts": [r[1]], "delay_seconds": 300})),
            needs("consume", "queue:jobs"),
            200,
        ),
        endpoint(
            Method::POST,
            "/v1/queues/jobs/visibility",
            Some(json!({"receipts": [r[2]], "seconds": 100})),
            needs("consume", "queue:jobs"),
            200,
        ),
        endpoint(
            Method::POST,
            "/v1/queues/dlq/redrive",
            Some(json!({})),
            needs("admin", "queue:dlq"),
            202,
        ),
        endpoint(
            Method::GET,
            "/metrics",
            None,
            (
                json!({"admin": ["topic:*", "queue:*"]}),
                json!({"admin": ["topic:*", "queue:jobs"], "publish": ["queue:*"], "consume": ["queue:*"]}),
            ),
            200,
        ),
        endpoint(Method::GET, "/", None, page_need.clone(), 200),
        endpoint(Method::GET, "/ui/app.js", None, page_need.clone(), 200),
        endpoint(Method::GET, "/ui/style.css", None, page_need, 200),
    ];
    for (i, e) in table.iter().enumerate() {
        let alg = ALGS[i % ALGS.len()];
        let what = format!("{} {} ({alg:?})", e.method, e.path);
        let before = snapshot(&s).await;
        for (case, token) in unauthenticated_tokens(alg) {
            let (st, v, h) = call(
                &s,
                e.method.clone(),
                &e.path,
                e.body.as_ref(),
                token.as_deref(),
            )
            .await;
            assert_eq!(
                (st, v["error"]["code"].as_str()),
                (401, Some("Unauthenticated")),
                "{what} with {case}: {v}"
            );
            assert!(
                h.get("www-authenticate").is_some(),
                "{what} with {case}: a 401 names its scheme"
            );
        }
        let lacking = jwt(alg, "lacking", e.lacking.clone());
        let (st, v, _) = call(
            &s,
            e.method.clone(),
            &e.path,
            e.body.as_ref(),
            Some(&lacking),
        )
        .await;
        assert_eq!(
            (st, v["error"]["code"].as_str()),
            (403, Some("Forbidden")),
            "{what} without its grant ({}): {v}",
            e.lacking
        );
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        assert_eq!(
            snapshot(&s).await,
            before,
            "{what}: a refused request changed state"
        );
        let granted = jwt(alg, "granted", e.granted.clone());
        let (st, v, _) = call(
            &s,
            e.method.clone(),
            &e.path,
            e.body.as_ref(),
            Some(&granted),
        )
        .await;
        assert_eq!(st, e.ok, "{what} with its grant ({}): {v}", e.granted);
    }
    // What the granted calls did, for the record.
    let jobs = admin(&s, Method::GET, "/v1/queues/jobs", json!(null)).await;
    assert_eq!(jobs["settings"]["visibility_timeout_seconds"], 45, "{jobs}");
    assert_eq!(jobs["stats"]["acked"], 1, "{jobs}");
}

#[tokio::test]
async fn lists_show_only_what_a_token_has_a_grant_on() {
    let (s, _cfg) = secured("", "", &[]).await;
    for t in ["orders", "orders.eu", "billing"] {
        admin(&s, Method::PUT, &format!("/v1/topics/{t}"), json!({})).await;
    }
    for q in ["jobs", "email-1", "email-2", "secret"] {
        admin(&s, Method::PUT, &format!("/v1/queues/{q}"), json!({})).await;
    }
    let t = jwt(
        Alg::Rs256,
        "lister",
        json!({"publish": ["topic:orders*"], "consume": ["queue:email-*"], "admin": ["queue:jobs"]}),
    );
    let (st, v, _) = call(&s, Method::GET, "/v1/topics", None, Some(&t)).await;
    assert_eq!((st, v), (200, json!({"topics": ["orders", "orders.eu"]})));
    let (st, v, _) = call(&s, Method::GET, "/v1/queues", None, Some(&t)).await;
    assert_eq!(
        (st, v),
        (200, json!({"queues": ["email-1", "email-2", "jobs"]}))
    );
    let none = jwt(Alg::EdDsa, "nobody", json!({}));
    let (st, v, _) = call(&s, Method::GET, "/v1/queues", None, Some(&none)).await;
    assert_eq!((st, v), (200, json!({"queues": []})));
    let (st, v, _) = call(&s, Method::GET, "/v1/topics", None, Some(ADMIN_KEY)).await;
    assert_eq!(
        (st, v),
        (200, json!({"topics": ["billing", "orders", "orders.eu"]}))
    );
    for path in ["/v1/topics", "/v1/queues"] {
        let (st, v, _) = call(&s, Method::GET, path, None, None).await;
        assert_eq!(
            (st, v["error"]["code"].as_str()),
            (401, Some("Unauthenticated"))
        );
    }
    // Describe of a missing resource: 403 without a grant (nothing learnt),
    // 404 with one.
    let (st, _, _) = call(&s, Method::GET, "/v1/queues/nope", None, Some(&t)).await;
    assert_eq!(st, 403);
    let (st, v, _) = call(&s, Method::GET, "/v1/queues/email-9", None, Some(&t)).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (404, Some("QueueNotFound"))
    );
}

#[tokio::test]
async fn api_keys_carry_their_configured_grants_and_health_stays_open() {
    let (s, _cfg) = secured("", "", &[]).await;
    admin(&s, Method::PUT, "/v1/topics/orders", json!({})).await;
    admin(&s, Method::PUT, "/v1/queues/jobs", json!({})).await;
    admin(
        &s,
        Method::PUT,
        "/v1/topics/orders/subscriptions/jobs",
        json!({}),
    )
    .await;
    let (st, _, _) = call(
        &s,
        Method::POST,
        "/v1/topics/orders/publish",
        Some(&json!({"body": "x"})),
        Some(CI_KEY),
    )
    .await;
    assert_eq!(st, 200);
    let (st, v, _) = call(
        &s,
        Method::POST,
        "/v1/queues/jobs/receive",
        Some(&json!({})),
        Some(CI_KEY),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(v["messages"][0]["body"], "x");
    let (st, v, _) = call(&s, Method::DELETE, "/v1/queues/jobs", None, Some(CI_KEY)).await;
    assert_eq!((st, v["error"]["code"].as_str()), (403, Some("Forbidden")));
    let (st, _, _) = call(
        &s,
        Method::POST,
        "/v1/queues/jobs/send",
        Some(&json!({"body": "y"})),
        Some(CI_KEY),
    )
    .await;
    assert_eq!(st, 403, "publish on topic:orders is not send on queue:jobs");
    // A malformed Authorization header is a 401 too.
    let resp = s
        .http
        .get(s.url("/v1/queues"))
        .header("authorization", format!("Basic {CI_KEY}"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 401);
    for path in ["/healthz", "/readyz"] {
        let (st, _, _) = call(&s, Method::GET, path, None, None).await;
        assert_eq!(st, 200, "{path} needs no token");
    }
}

#[tokio::test]
async fn the_live_page_takes_its_token_from_the_url_and_passes_it_to_its_assets() {
    let (s, _cfg) = secured("", "", &[]).await;
    let t = jwt(Alg::Hs256, "ops", json!({"admin": ["queue:*"]}));
    let resp = s
        .http
        .get(s.url(&format!("/?token={t}")))
        .send()
        .await
        .expect("GET /");
    assert_eq!(resp.status().as_u16(), 200);
    let html = resp.text().await.expect("page");
    assert!(html.contains(&format!("ui/app.js?token={t}")), "{html}");
    assert!(html.contains(&format!("ui/style.css?token={t}")));
    for asset in ["/ui/app.js", "/ui/style.css"] {
        let ok = s
            .http
            .get(s.url(&format!("{asset}?token={t}")))
            .send()
            .await
            .expect("asset");
        assert_eq!(ok.status().as_u16(), 200, "{asset}");
        let refused = s.http.get(s.url(asset)).send().await.expect("asset");
        assert_eq!(refused.status().as_u16(), 401, "{asset}");
    }
    // A query token is for the page and the WebSocket only.
    let (st, _, _) = call(
        &s,
        Method::GET,
        &format!("/v1/queues?token={t}"),
        None,
        None,
    )
    .await;
    assert_eq!(st, 401);
}

#[tokio::test]
async fn public_metrics_opens_metrics_and_the_page_but_nothing_else() {
    let (s, _cfg) = secured("", "", &["--public-metrics"]).await;
    for path in ["/metrics", "/", "/ui/app.js"] {
        let (st, _, _) = call(&s, Method::GET, path, None, None).await;
        assert_eq!(st, 200, "{path}");
    }
    let (st, _, _) = call(&s, Method::GET, "/v1/queues", None, None).await;
    assert_eq!(st, 401);
}

// ---- WebSocket ----

async fn ws_with(s: &Server, token: &str) -> Ws {
    Ws::try_connect(s, &format!("?token={token}"), None)
        .await
        .unwrap_or_else(|e| panic!("WebSocket with a valid token refused: {e:?}"))
}

#[tokio::test]
async fn websocket_upgrades_refuse_bad_tokens_in_the_query_and_the_header() {
    let (s, _cfg) = secured("", "", &[]).await;
    for alg in ALGS {
        for (case, token) in unauthenticated_tokens(alg) {
            let Some(token) = token else { continue };
            let r = Ws::try_connect(&s, &format!("?token={token}"), None).await;
            let (st, body) = r
                .err()
                .unwrap_or_else(|| panic!("{case} ({alg:?}) in the query was accepted"));
            assert_eq!(st, 401, "{case}");
            assert!(body.contains("Unauthenticated"), "{case}: {body}");
            let r = Ws::try_connect(&s, "", Some(&token)).await;
            assert_eq!(
                r.err().map(|e| e.0),
                Some(401),
                "{case} ({alg:?}) in the header"
            );
        }
        let good = jwt(alg, "viewer", json!({}));
        let mut ws = Ws::try_connect(&s, "", Some(&good))
            .await
            .expect("header token");
        let v = ws.ok(json!({"op": "auth", "token": good})).await;
        assert_eq!(v["principal"], "jwt:viewer");
    }
}

#[tokio::test]
async fn websocket_without_a_token_must_authenticate_with_its_first_frame() {
    let (s, _cfg) = secured("", "", &["--ws-auth-timeout", "1s"]).await;
    admin(&s, Method::PUT, "/v1/queues/jobs", json!({})).await;

    // The auth frame names the principal; then ops work.
    let mut ws = Ws::try_connect(&s, "", None)
        .await
        .expect("upgrade without a token");
    let t = jwt(Alg::EdDsa, "late-auth", json!({"consume": ["queue:jobs"]}));
    let v = ws.ok(json!({"op": "auth", "token": t})).await;
    assert_eq!(v["principal"], "jwt:late-auth", "{v}");
    assert!(v["expires_at"].as_u64().is_some(), "{v}");
    ws.subscribe_queue("s", "jobs", 1).await;

    // Any other first frame closes the connection.
    let mut ws = Ws::try_connect(&s, "", None).await.expect("upgrade");
    ws.send(json!({"op": "subscribe", "sub": "s", "queue": "jobs"}))
        .await;
    assert!(
        matches!(
            ws.closed_within(Duration::from_secs(5)).await,
            Closed::Frame(1008, _)
        ),
        "a first frame other than auth closes with 1008"
    );

    // A bad token in the auth frame: an error frame, then 1008.
    for (case, token) in unauthenticated_tokens(Alg::Rs256) {
        let Some(token) = token else { continue };
        let mut ws = Ws::try_connect(&s, "", None).await.expect("upgrade");
        let (frames, closed) = {
            ws.send(json!({"op": "auth", "token": token, "ref": 1}))
                .await;
            ws.frames_until_closed(Duration::from_secs(5)).await
        };
        assert_eq!(frames.len(), 1, "{case}: {frames:?}");
        assert_error_frame(&frames[0], "Unauthenticated");
        assert_eq!(frames[0]["ref"], 1);
        assert_eq!(
            closed,
            Closed::Frame(1008, "authentication failed".into()),
            "{case}"
        );
    }

    // Silence: closed after --ws-auth-timeout.
    let mut ws = Ws::try_connect(&s, "", None).await.expect("upgrade");
    match ws.closed_within(Duration::from_secs(5)).await {
        Closed::Frame(1008, reason) => assert!(reason.contains("auth"), "{reason}"),
        other => panic!("expected 1008, got {other:?}"),
    }

    // Re-authenticating as someone else is refused; the connection stays.
    let mut ws = ws_with(&s, &jwt(Alg::Hs256, "alice", json!({}))).await;
    let v = ws
        .error(
            json!({"op": "auth", "token": jwt(Alg::Hs256, "mallory", json!({}))}),
            "Forbidden",
        )
        .await;
    assert!(v["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("mallory")));
    ws.ok(json!({"op": "auth", "token": jwt(Alg::Rs256, "alice", json!({}))}))
        .await;
}

#[tokio::test]
async fn every_websocket_op_checks_its_grant_and_a_refused_op_changes_nothing() {
    let (s, _cfg) = secured("", "", &[]).await;
    admin(&s, Method::PUT, "/v1/topics/orders", json!({})).await;
    admin(&s, Method::PUT, "/v1/queues/jobs", json!({})).await;
    admin(&s, Method::PUT, "/v1/queues/other", json!({})).await;
    admin(
        &s,
        Method::POST,
        "/v1/queues/jobs/send",
        json!({"body": "held"}),
    )
    .await;
    let held = admin(
        &s,
        Method::POST,
        "/v1/queues/jobs/receive",
        json!({"visibility_timeout_seconds": 600}),
    )
    .await;
    let held = receipt(&held["messages"][0]).to_string();

    struct Op {
        name: &'static str,
        frame: Value,
        granted: Value,
        lacking: Value,
    }
    let ops = [
        Op {
            name: "subscribe queue",
            frame: json!({"op": "subscribe", "sub": "q", "queue": "jobs"}),
            granted: json!({"consume": ["queue:jobs"]}),
            lacking: json!({"publish": ["queue:jobs"], "consume": ["queue:other", "topic:*"]}),
        },
        Op {
            name: "subscribe topic",
            frame: json!({"op": "subscribe", "sub": "t", "topic": "orders"}),
            granted: json!({"consume": ["topic:orders"]}),
            lacking: json!({"publish": ["topic:orders"], "consume": ["queue:*"]}),
        },
        Op {
            name: "publish to a topic",
            frame: json!({"op": "publish", "topic": "orders", "body": "x"}),
            granted: json!({"publish": ["topic:orders"]}),
            lacking: json!({"consume": ["topic:orders"], "publish": ["queue:*"]}),
        },
        Op {
            name: "publish to a queue",
            frame: json!({"op": "publish", "queue": "jobs", "body": "x"}),
            granted: json!({"publish": ["queue:jobs"]}),
            lacking: json!({"consume": ["queue:jobs"], "publish": ["topic:*", "queue:other"]}),
        },
        Op {
            name: "nack",
            frame: json!({"op": "nack", "receipts": [held], "delay_seconds": 600}),
            granted: json!({"consume": ["queue:jobs"]}),
            lacking: json!({"publish": ["queue:jobs"], "consume": ["queue:other"]}),
        },
        Op {
            name: "ack",
            frame: json!({"op": "ack", "receipts": [held]}),
            granted: json!({"consume": ["queue:jobs"]}),
            lacking: json!({"publish": ["queue:jobs"], "admin": ["queue:other"]}),
        },
    ];
    for (i, op) in ops.iter().enumerate() {
        let alg = ALGS[i % ALGS.len()];
        let before = snapshot(&s).await;
        let mut ws = ws_with(&s, &jwt(alg, "lacking", op.lacking.clone())).await;
        ws.error(op.frame.clone(), "Forbidden").await;
        ws.silent_for(Duration::from_millis(200)).await;
        ws.close().await;
        assert_eq!(
            snapshot(&s).await,
            before,
            "{}: a refused op changed state",
            op.name
        );
        let mut ws = ws_with(&s, &jwt(alg, "granted", op.granted.clone())).await;
        ws.ok(op.frame.clone()).await;
        ws.close().await;
    }
    let jobs = admin(&s, Method::GET, "/v1/queues/jobs", json!(null)).await;
    assert_eq!(jobs["stats"]["acked"], 1, "{jobs}");
}

#[tokio::test]
async fn a_topic_subscription_acks_through_its_topic_grant() {
    let (s, _cfg) = secured("", "", &[]).await;
    admin(&s, Method::PUT, "/v1/topics/orders", json!({})).await;
    let mut ws = ws_with(
        &s,
        &jwt(Alg::Rs256, "watcher", json!({"consume": ["topic:orders"]})),
    )
    .await;
    ws.subscribe_topic("t", "orders", json!({})).await;
    admin(
        &s,
        Method::POST,
        "/v1/topics/orders/publish",
        json!({"body": "hello"}),
    )
    .await;
    let m = ws.message().await;
    let results = ws.ack(&[receipt(&m)]).await;
    assert_eq!(results[0]["ok"], true, "{results:?}");
}

#[tokio::test]
async fn an_expired_token_closes_its_websocket_unless_refreshed() {
    let (s, _cfg) = secured("", "", &[]).await;
    admin(&s, Method::PUT, "/v1/queues/jobs", json!({})).await;
    let short = |sub: &str, secs: u64| {
        let mut c = claims(sub, json!({"consume": ["queue:jobs"]}));
        c["exp"] = json!(now() + secs);
        sign(Alg::EdDsa, &c)
    };
    let mut ws = ws_with(&s, &short("brief", 2)).await;
    ws.subscribe_queue("s", "jobs", 1).await;
    assert_eq!(
        ws.closed_within(Duration::from_secs(6)).await,
        Closed::Frame(1008, "token expired".into())
    );

    // A fresh token of the same principal before expiry keeps it open.
    let mut ws = ws_with(&s, &short("renewer", 2)).await;
    ws.ok(json!({"op": "auth", "token": short("renewer", 3600)}))
        .await;
    let frames = ws.open_for(Duration::from_secs(4)).await;
    assert!(
        frames.is_ok(),
        "the refreshed connection closed: {frames:?}"
    );
}

// ---- rate limits ----

#[tokio::test]
async fn a_token_over_its_rate_is_throttled_while_others_are_served() {
    let keys = format!(
        r#"
[[auth.keys]]
id = "slow"
sha256 = "{}"
grants = {{ admin = ["topic:*", "queue:*"] }}
publish_rate = 1
receive_rate = 1
"#,
        sha256_hex("pubq_slow-key")
    );
    // The flag's default applies to JWTs; the admin key has no override.
    let (s, _cfg) = secured("", &keys, &["--publish-rate", "1000"]).await;
    admin(&s, Method::PUT, "/v1/topics/orders", json!({})).await;
    admin(&s, Method::PUT, "/v1/queues/jobs", json!({})).await;
    let publish = |token: &'static str| {
        let s = &s;
        async move {
            call(
                s,
                Method::POST,
                "/v1/topics/orders/publish",
                Some(&json!({"body": "x"})),
                Some(token),
            )
            .await
        }
    };
    let mut throttled = None;
    for _ in 0..5 {
        let (st, v, h) = publish("pubq_slow-key").await;
        if st == 429 {
            throttled = Some((v, h));
            break;
        }
        assert_eq!(st, 200, "{v}");
    }
    let (v, h) = throttled.expect("five publishes at once exceed one per second");
    assert_eq!(v["error"]["code"], "Throttled", "{v}");
    let retry: u64 = h
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After header in whole seconds");
    assert_eq!(retry, 1, "one call per second comes back within a second");
    // Another token on the same server is still served, again and again.
    for _ in 0..10 {
        let (st, v, _) = publish(ADMIN_KEY).await;
        assert_eq!(st, 200, "{v}");
    }
    // Receives have their own budget.
    let mut codes = Vec::new();
    for _ in 0..5 {
        let (st, _, _) = call(
            &s,
            Method::POST,
            "/v1/queues/jobs/receive",
            Some(&json!({})),
            Some("pubq_slow-key"),
        )
        .await;
        codes.push(st);
    }
    assert_eq!(codes[0], 200);
    assert!(codes.contains(&429), "{codes:?}");
    // Over WebSocket: an error frame.
    let mut ws = ws_with(&s, "pubq_slow-key").await;
    let mut frames = Vec::new();
    for _ in 0..5 {
        frames.push(
            ws.call(json!({"op": "publish", "topic": "orders", "body": "w"}))
                .await,
        );
    }
    let refused = frames
        .iter()
        .find(|f| f["op"] == "error")
        .unwrap_or_else(|| panic!("no Throttled frame: {frames:?}"));
    assert_error_frame(refused, "Throttled");
}

// ---- start-up ----

#[tokio::test]
async fn without_keys_the_server_refuses_to_listen_beyond_loopback() {
    let mut cmd = pubq_command();
    cmd.args(["serve", "--memory", "--listen", "0.0.0.0:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn pubq");
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("the server exits at once")
        .expect("wait for the server");
    assert!(!status.success(), "it must not start");
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut o) = child.stdout.take() {
        o.read_to_string(&mut out).await.expect("stdout");
    }
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut err).await.expect("stderr");
    }
    assert!(!out.contains("listening on"), "{out}");
    assert!(err.contains("--insecure-no-auth"), "{err}");
    assert!(err.contains("0.0.0.0"), "{err}");
}

#[tokio::test]
async fn without_keys_the_server_says_it_is_open_and_on_loopback() {
    let s = Server::start().await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            s.stderr().contains("no API key or JWT key configured")
                && s.stderr().contains("loopback only")
        })
        .await,
        "{}",
        s.stderr()
    );
    // Everything is allowed, with or without a token.
    let (st, _, _) = call(&s, Method::PUT, "/v1/queues/q", Some(&json!({})), None).await;
    assert_eq!(st, 201);
    let (st, _, _) = call(&s, Method::GET, "/v1/queues/q", None, Some("anything")).await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn bad_auth_settings_stop_the_server_with_a_clear_message() {
    let mut f = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .expect("temp file");
    f.write_all(b"[[auth.keys]]\nid = \"ci\"\nsha256 = \"not-hex\"\n")
        .expect("write");
    let out = pubq_command()
        .args(["serve", "--memory", "--listen", "127.0.0.1:0", "--config"])
        .arg(f.path())
        .output()
        .await
        .expect("run pubq");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sha256 must be 64 hex digits"), "{err}");
}

// ---- audit ----

#[tokio::test]
async fn the_audit_log_records_failures_refusals_and_admin_changes_but_never_a_token() {
    let (s, _cfg) = secured("", "", &[]).await;
    let weak = jwt(Alg::Hs256, "weakling", json!({}));
    let (st, _, _) = call(&s, Method::GET, "/v1/queues", None, Some("pubq_wrong-key")).await;
    assert_eq!(st, 401);
    let (st, _, _) = call(
        &s,
        Method::PUT,
        "/v1/queues/q",
        Some(&json!({})),
        Some(&weak),
    )
    .await;
    assert_eq!(st, 403);
    let (st, _, _) = call(
        &s,
        Method::PUT,
        "/v1/queues/q",
        Some(&json!({})),
        Some(ADMIN_KEY),
    )
    .await;
    assert_eq!(st, 201);
    let (st, _, _) = call(&s, Method::DELETE, "/v1/queues/q", None, Some(ADMIN_KEY)).await;
    assert_eq!(st, 200);
    let logged = eventually(Duration::from_secs(5), || async {
        let e = s.stderr();
        e.contains("auth_failed") && e.contains("jwt:weakling") && e.contains("key:admin")
    })
    .await;
    let log = s.stderr();
    assert!(logged, "{log}");
    let audit: Vec<&str> = log.lines().filter(|l| l.contains("pubq::audit")).collect();
    assert!(
        audit
            .iter()
            .any(|l| l.contains("auth_failed") && l.contains("unknown_token")),
        "{log}"
    );
    assert!(
        audit.iter().any(|l| l.contains("forbidden")
            && l.contains("jwt:weakling")
            && l.contains("queue:q")),
        "{log}"
    );
    assert!(
        audit
            .iter()
            .any(|l| l.contains("key:admin") && l.contains("create") && l.contains("queue:q")),
        "{log}"
    );
    assert!(
        audit
            .iter()
            .any(|l| l.contains("key:admin") && l.contains("delete")),
        "{log}"
    );
    for secret in [ADMIN_KEY, "pubq_wrong-key", weak.as_str()] {
        assert!(!log.contains(secret), "a token reached the log: {log}");
    }
}

// ---- CLI ----

async fn pubq(
    args: &[&str],
    stdin: Option<&str>,
    env: &[(&str, &str)],
) -> (Option<i32>, String, String) {
    let mut cmd = pubq_command();
    cmd.args(args)
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn pubq");
    if let (Some(text), Some(mut i)) = (stdin, child.stdin.take()) {
        use tokio::io::AsyncWriteExt;
        i.write_all(text.as_bytes()).await.expect("write stdin");
    }
    let out = tokio::time::timeout(Duration::from_secs(15), child.wait_with_output())
        .await
        .expect("pubq finishes")
        .expect("run pubq");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_cli_makes_keys_and_hashes_and_client_commands_send_the_token() {
    let (code, out, err) = pubq(&["auth", "gen-key", "--id", "ci"], None, &[]).await;
    assert_eq!(code, Some(0), "{err}");
    let v: Value = serde_json::from_str(out.trim()).expect("one JSON line");
    let key = v["key"].as_str().expect("a key");
    assert!(key.starts_with("pubq_"), "{v}");
    assert_eq!(v["sha256"], sha256_hex(key));
    assert!(v["toml"]
        .as_str()
        .is_some_and(|t| t.contains(&sha256_hex(key))));

    let (code, out, err) = pubq(&["auth", "hash-key"], Some(&format!("{ADMIN_KEY}\n")), &[]).await;
    assert_eq!(code, Some(0), "{err}");
    let v: Value = serde_json::from_str(out.trim()).expect("one JSON line");
    assert_eq!(v["sha256"], sha256_hex(ADMIN_KEY));

    let (s, _cfg) = secured("", "", &[]).await;
    let server = ["--server", s.base.as_str()];
    let (code, _, err) = pubq(
        &[&["queue", "create", "jobs"], &server[..]].concat(),
        None,
        &[],
    )
    .await;
    assert_eq!(code, Some(1));
    assert!(err.contains("Unauthenticated"), "{err}");
    let (code, _, err) = pubq(
        &[
            &["queue", "create", "jobs", "--token", ADMIN_KEY],
            &server[..],
        ]
        .concat(),
        None,
        &[],
    )
    .await;
    assert_eq!(code, Some(0), "{err}");
    let (code, out, err) = pubq(
        &[&["publish", "orders", "x"], &server[..]].concat(),
        None,
        &[("PUBQ_TOKEN", CI_KEY)],
    )
    .await;
    // The topic does not exist, but the token may publish there: 404, not 401/403.
    assert_eq!(code, Some(1), "{out}");
    assert!(err.contains("TopicNotFound"), "{err}");
    let (code, _, err) = pubq(
        &[&["queue", "delete", "jobs"], &server[..]].concat(),
        None,
        &[("PUBQ_TOKEN", CI_KEY)],
    )
    .await;
    assert_eq!(code, Some(1));
    assert!(err.contains("Forbidden"), "{err}");
}
