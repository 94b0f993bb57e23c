//! The TLS and authentication cells of the benchmarks that measure what
//! security costs (`http --tls --auth`, `ws_push`): for each cell, the
//! server's settings (a self-signed certificate, an API key or an HS256 JWT
//! key) and what the client presents (the certificate to trust, a bearer
//! token). Shared by those benches through `#[path]`.

#![allow(dead_code)]

use std::path::PathBuf;

use pubq::auth::{ApiKeyDecl, AuthConfig, GrantLists, JwtSection};
use pubq::config::TlsFiles;

/// How a client authenticates in a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKind {
    /// An API key (`[[auth.keys]]`): a SHA-256 and a map lookup per request.
    ApiKey,
    /// An HS256 JWT (`[auth.jwt]`): signature and claims checked per request.
    Jwt,
}

/// One cell of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cell {
    pub tls: bool,
    pub auth: Option<AuthKind>,
}

impl Cell {
    pub const PLAIN: Cell = Cell {
        tls: false,
        auth: None,
    };

    pub fn label(&self) -> String {
        let auth = match self.auth {
            None => None,
            Some(AuthKind::ApiKey) => Some("API key"),
            Some(AuthKind::Jwt) => Some("JWT"),
        };
        match (self.tls, auth) {
            (false, None) => "plain".into(),
            (true, None) => "TLS".into(),
            (false, Some(a)) => a.into(),
            (true, Some(a)) => format!("TLS+{a}"),
        }
    }
}

/// The cells asked for: plain always; TLS with `tls`; API key and JWT with
/// `auth`; and both together when both are asked for.
pub fn cells(tls: bool, auth: bool) -> Vec<Cell> {
    let mut out = vec![Cell::PLAIN];
    if tls {
        out.push(Cell {
            tls: true,
            auth: None,
        });
    }
    if auth {
        for kind in [AuthKind::ApiKey, AuthKind::Jwt] {
            out.push(Cell {
                tls: false,
                auth: Some(kind),
            });
        }
        if tls {
            for kind in [AuthKind::ApiKey, AuthKind::Jwt] {
                out.push(Cell {
                    tls: true,
                    auth: Some(kind),
                });
            }
        }
    }
    out
}

/// What a cell's server is configured with and what its clients present.
pub struct Security {
    pub cell: Cell,
    /// Holds the certificate and secret files for the server's lifetime.
    _dir: tempfile::TempDir,
    pub tls: Option<TlsFiles>,
    /// The certificate to trust (PEM).
    pub cert_pem: Option<String>,
    /// `ServerConfig.auth`.
    pub auth: AuthConfig,
    /// What the client sends as `Authorization: Bearer` (or `?token=`).
    pub token: Option<String>,
}

/// Grants of the bench's token: everything, as a deployment's operator or
/// CI key would have (admin implies publish and consume).
fn grants() -> GrantLists {
    GrantLists {
        admin: vec!["topic:*".into(), "queue:*".into()],
        ..GrantLists::default()
    }
}

impl Security {
    pub fn new(cell: Cell) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory for keys");
        let mut s = Security {
            cell,
            tls: None,
            cert_pem: None,
            auth: AuthConfig::default(),
            token: None,
            _dir: dir,
        };
        if cell.tls {
            let cert =
                pubq::net::devcert::generate(&["127.0.0.1".to_string()], time::Duration::days(1))
                    .expect("a development certificate can be made");
            let files = TlsFiles {
                cert: s.path("cert.pem"),
                key: s.path("key.pem"),
            };
            std::fs::write(&files.cert, &cert.cert_pem).expect("write cert.pem");
            std::fs::write(&files.key, &cert.key_pem).expect("write key.pem");
            s.cert_pem = Some(cert.cert_pem);
            s.tls = Some(files);
        }
        match cell.auth {
            None => {}
            Some(AuthKind::ApiKey) => {
                let key = pubq::auth::generate_key();
                s.auth.keys = vec![ApiKeyDecl {
                    id: "bench".into(),
                    sha256: pubq::auth::hash_key(&key),
                    grants: grants(),
                    publish_rate: None,
                    receive_rate: None,
                }];
                s.token = Some(key);
            }
            Some(AuthKind::Jwt) => {
                let secret = pubq::auth::generate_key();
                let file = s.path("jwt.secret");
                std::fs::write(&file, &secret).expect("write jwt.secret");
                s.auth.jwt = JwtSection {
                    hs256_secret_file: Some(file),
                    ..JwtSection::default()
                };
                let exp = jsonwebtoken::get_current_timestamp() + 3600;
                let claims = serde_json::json!({"sub": "bench", "exp": exp, "pubq": grants_json()});
                let token = jsonwebtoken::encode(
                    &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
                    &claims,
                    &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
                )
                .expect("a JWT encodes");
                s.token = Some(token);
            }
        }
        s
    }

    fn path(&self, name: &str) -> PathBuf {
        self._dir.path().join(name)
    }

    /// CPU time (of this thread) the server spends on the cell's token per
    /// request: `Auth::authenticate` plus one grant check, as the API does
    /// for every HTTP request and the WebSocket for its upgrade. Measured in
    /// process over many calls, so it does not depend on the machine's load
    /// as the wall-clock figures do. `None` without a token.
    pub fn token_check_us(&self) -> Option<f64> {
        use pubq::auth::{Action, Resource};
        let token = self.token.as_deref()?;
        let auth =
            pubq::auth::Auth::from_config(&self.auth).expect("the cell's auth settings load");
        let calls = 20_000;
        let start = thread_cpu_ns();
        for _ in 0..calls {
            let p = auth
                .authenticate(Some(std::hint::black_box(token)))
                .expect("the cell's token authenticates");
            auth.authorize(&p, Action::Publish, Resource::topic("bench"))
                .expect("the token may publish");
            std::hint::black_box(p);
        }
        Some(thread_cpu_ns().saturating_sub(start) as f64 / calls as f64 / 1000.0)
    }

    /// A reqwest client for this cell (see [`http_client`]).
    pub fn http_client(&self) -> reqwest::Client {
        http_client(self.cert_pem.as_deref(), self.token.as_deref())
    }

    /// A rustls client configuration trusting the cell's certificate (for
    /// `wss://`).
    pub fn rustls_client(&self) -> Option<std::sync::Arc<tokio_rustls::rustls::ClientConfig>> {
        use tokio_rustls::rustls::{self, pki_types::pem::PemObject, pki_types::CertificateDer};
        let pem = self.cert_pem.as_ref()?;
        let der =
            CertificateDer::from_pem_slice(pem.as_bytes()).expect("cert.pem holds a certificate");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der).expect("a usable trust anchor");
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Some(std::sync::Arc::new(config))
    }
}

fn grants_json() -> serde_json::Value {
    let g = grants();
    serde_json::json!({"publish": g.publish, "consume": g.consume, "admin": g.admin})
}

/// A reqwest client: keep-alive (one idle connection kept), TCP_NODELAY,
/// trusting `cert_pem` and sending `Authorization: Bearer token`.
pub fn http_client(cert_pem: Option<&str>, token: Option<&str>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(1);
    if let Some(pem) = cert_pem {
        let ca = reqwest::Certificate::from_pem(pem.as_bytes()).expect("the certificate parses");
        b = b.add_root_certificate(ca);
    }
    if let Some(t) = token {
        let mut headers = reqwest::header::HeaderMap::new();
        let value = format!("Bearer {t}")
            .parse()
            .expect("a token is a header value");
        headers.insert(reqwest::header::AUTHORIZATION, value);
        b = b.default_headers(headers);
    }
    b.build().expect("an HTTP client builds")
}

/// CPU time of the calling thread, in nanoseconds.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
