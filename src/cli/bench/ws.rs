//! The bench's WebSocket side: connecting to `/v1/ws` next to the HTTP
//! client (same host, same token), and reading server frames with borrowed
//! fields, without a JSON tree per frame.

use std::borrow::Cow;
use std::sync::Arc;

use anyhow::Context;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::client::Client;

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A server frame; only what the bench reads. Unknown fields are skipped.
#[derive(Debug, Deserialize)]
pub struct ServerFrame<'a> {
    #[serde(borrow)]
    pub op: Cow<'a, str>,
    #[serde(borrow, default, rename = "ref")]
    pub reference: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub receipt: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub body: Option<Cow<'a, str>>,
    #[serde(default)]
    pub receive_count: u32,
    /// On `ok` answers to ack frames.
    #[serde(borrow, default)]
    pub results: Option<Vec<ReceiptResult<'a>>>,
    /// On `error` frames.
    #[serde(default)]
    pub error: Option<serde_json::Value>,
    /// On `end` frames.
    #[serde(borrow, default)]
    pub reason: Option<Cow<'a, str>>,
}

/// One entry of an ack answer.
#[derive(Debug, Deserialize)]
pub struct ReceiptResult<'a> {
    #[serde(borrow, default)]
    pub error: Option<ErrorRef<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct ErrorRef<'a> {
    #[serde(borrow)]
    pub code: Cow<'a, str>,
}

/// Opens a WebSocket to the server `client` talks to, with its token.
pub async fn connect(client: &Client) -> anyhow::Result<Ws> {
    let mut url = client.base_url().clone();
    let scheme = match url.scheme() {
        "http" => "ws",
        "https" => "wss",
        other => anyhow::bail!("cannot open a WebSocket to a {other} URL"),
    };
    url.set_scheme(scheme)
        .map_err(|()| anyhow::anyhow!("cannot make a WebSocket URL of {url}"))?;
    let base = url.to_string();
    url.path_segments_mut()
        .map_err(|()| anyhow::anyhow!("cannot make a WebSocket URL of {base}"))?
        .pop_if_empty()
        .extend(["v1", "ws"]);
    let mut request = url
        .as_str()
        .into_client_request()
        .with_context(|| format!("WebSocket request to {url}"))?;
    if let Some(token) = client.token() {
        let value = HeaderValue::from_str(&format!("Bearer {token}"))
            .context("the token is not a valid header value")?;
        request.headers_mut().insert("authorization", value);
    }
    // `wss://` trusts the built-in web roots, plus the CA the HTTP client
    // was given (`--ca-cert`), as the HTTP side does.
    let connector = match client.ca_pem() {
        Some(pem) if scheme == "wss" => Some(tls_connector(pem)?),
        _ => None,
    };
    // Nagle off: acks and small frames go out at once.
    let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(request, None, true, connector)
        .await
        .with_context(|| format!("WebSocket connect to {url}"))?;
    Ok(ws)
}

/// A TLS client setup trusting the web roots and the certificates in `pem`.
fn tls_connector(pem: &[u8]) -> anyhow::Result<tokio_tungstenite::Connector> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::CertificateDer;
    use tokio_rustls::rustls::{ClientConfig, RootCertStore};
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let mut added = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| anyhow::anyhow!("CA certificate: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| anyhow::anyhow!("CA certificate: {e}"))?;
        added += 1;
    }
    if added == 0 {
        anyhow::bail!("CA certificate: no PEM certificate in it");
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS client setup")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_tungstenite::Connector::Rustls(Arc::new(config)))
}
