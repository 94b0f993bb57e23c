//! The `[auth]` table of `pubq.toml` as users write it, and the resolved
//! [`AuthConfig`] (file, then environment and flags). Key material is read
//! when the server starts (`Auth::from_config`), not here.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::grants::GrantLists;

/// Default clock leeway for a JWT's `exp` and `nbf`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// `[auth]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// API keys, by hash.
    #[serde(default)]
    pub keys: Vec<ApiKeyDecl>,
    /// Keys that sign JWTs.
    #[serde(default)]
    pub jwt: Option<JwtSection>,
    /// Default publish calls per second per token (unset: unlimited).
    pub publish_rate: Option<f64>,
    /// Default receive calls per second per token (unset: unlimited).
    pub receive_rate: Option<f64>,
    /// `/metrics` and the live page without a token.
    pub public_metrics: Option<bool>,
    /// Allow listening beyond loopback with no keys configured.
    pub insecure_no_auth: Option<bool>,
}

/// `[[auth.keys]]`: one API key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyDecl {
    /// A name for logs and the rate limiter (never the key).
    pub id: String,
    /// SHA-256 of the key, 64 hex digits (`pubq auth hash-key`).
    pub sha256: String,
    #[serde(default)]
    pub grants: GrantLists,
    /// Overrides of the default rates for this key.
    pub publish_rate: Option<f64>,
    pub receive_rate: Option<f64>,
}

/// `[auth.jwt]`: the keys JWTs may be signed with and what their claims
/// must say.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSection {
    /// HS256 shared secret, read from this file (one trailing newline dropped).
    pub hs256_secret_file: Option<PathBuf>,
    /// HS256 shared secret, read from the environment variable of this name.
    pub hs256_secret_env: Option<String>,
    /// RS256 public keys (PEM), any of which may sign (key rotation).
    #[serde(default)]
    pub rs256_public_keys: Vec<PathBuf>,
    /// EdDSA (Ed25519) public keys (PEM).
    #[serde(default)]
    pub eddsa_public_keys: Vec<PathBuf>,
    /// Required `aud`. Unset: a token carrying any `aud` is refused.
    pub audience: Option<String>,
    /// Required `iss`. Unset: `iss` is not checked.
    pub issuer: Option<String>,
    /// Clock leeway for `exp` and `nbf` [default: 30].
    pub leeway_seconds: Option<u64>,
}

/// The flags of `pubq serve` that concern authentication (each overrides the
/// file).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AuthArgs {
    /// Publish calls (publish, send, WebSocket publish) per second per token;
    /// over it: 429 `Throttled` [default: unlimited].
    #[arg(long, env = "PUBQ_PUBLISH_RATE", help_heading = "Authentication")]
    pub publish_rate: Option<f64>,
    /// Receive calls (receive, WebSocket push receives) per second per token
    /// [default: unlimited].
    #[arg(long, env = "PUBQ_RECEIVE_RATE", help_heading = "Authentication")]
    pub receive_rate: Option<f64>,
    /// Serve `/metrics` and the live page without a token.
    #[arg(long, env = "PUBQ_PUBLIC_METRICS", help_heading = "Authentication")]
    pub public_metrics: bool,
    /// Allow listening beyond loopback although no API key or JWT key is
    /// configured (everyone who can connect may do everything).
    #[arg(long, env = "PUBQ_INSECURE_NO_AUTH", help_heading = "Authentication")]
    pub insecure_no_auth: bool,
    /// Clock leeway for JWT `exp` and `nbf` (e.g. 30s) [default: 30s].
    #[arg(long, env = "PUBQ_JWT_LEEWAY", value_parser = crate::config::parse_duration, help_heading = "Authentication")]
    pub jwt_leeway: Option<Duration>,
    /// Without a token in the header or query, how long a WebSocket client
    /// has to send its `auth` frame [default: 10s].
    #[arg(long, env = "PUBQ_WS_AUTH_TIMEOUT", value_parser = crate::config::parse_duration, help_heading = "Authentication")]
    pub ws_auth_timeout: Option<Duration>,
}

/// Everything authentication needs, resolved.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    pub keys: Vec<ApiKeyDecl>,
    pub jwt: JwtSection,
    pub leeway: Option<Duration>,
    pub publish_rate: Option<f64>,
    pub receive_rate: Option<f64>,
    pub public_metrics: bool,
    pub insecure_no_auth: bool,
}

impl AuthConfig {
    /// File ← environment and flags.
    pub fn resolve(file: &AuthSection, args: &AuthArgs) -> Self {
        let jwt = file.jwt.clone().unwrap_or_default();
        Self {
            keys: file.keys.clone(),
            leeway: args
                .jwt_leeway
                .or(jwt.leeway_seconds.map(Duration::from_secs)),
            jwt,
            publish_rate: args.publish_rate.or(file.publish_rate),
            receive_rate: args.receive_rate.or(file.receive_rate),
            public_metrics: args.public_metrics || file.public_metrics.unwrap_or(false),
            insecure_no_auth: args.insecure_no_auth || file.insecure_no_auth.unwrap_or(false),
        }
    }

    /// Whether any key (API key or JWT key) is configured.
    pub fn has_keys(&self) -> bool {
        let j = &self.jwt;
        !self.keys.is_empty()
            || j.hs256_secret_file.is_some()
            || j.hs256_secret_env.is_some()
            || !j.rs256_public_keys.is_empty()
            || !j.eddsa_public_keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_auth_table_parses_and_refuses_typos() {
        let s: AuthSection = toml::from_str(
            r#"
            publish_rate = 100
            [[keys]]
            id = "ci"
            sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
            grants = { publish = ["topic:orders.*"], admin = ["queue:email-*"] }
            publish_rate = 5
            [jwt]
            rs256_public_keys = ["rsa.pem"]
            audience = "pubq"
            leeway_seconds = 5
            "#,
        )
        .expect("valid auth table");
        assert_eq!(s.keys.len(), 1);
        assert_eq!(s.keys[0].grants.publish, vec!["topic:orders.*"]);
        assert_eq!(s.keys[0].publish_rate, Some(5.0));
        let c = AuthConfig::resolve(&s, &AuthArgs::default());
        assert!(c.has_keys());
        assert_eq!(c.leeway, Some(Duration::from_secs(5)));
        assert_eq!(c.publish_rate, Some(100.0));
        let flags = AuthArgs {
            publish_rate: Some(7.0),
            jwt_leeway: Some(Duration::from_secs(1)),
            ..AuthArgs::default()
        };
        let c = AuthConfig::resolve(&s, &flags);
        assert_eq!(c.publish_rate, Some(7.0));
        assert_eq!(c.leeway, Some(Duration::from_secs(1)));

        assert!(toml::from_str::<AuthSection>("[[keys]]\nid = \"x\"\nsha = \"y\"").is_err());
        assert!(toml::from_str::<AuthSection>(
            "[[keys]]\nid = \"x\"\nsha256 = \"y\"\ngrants = { publsh = [] }"
        )
        .is_err());
        assert!(!AuthConfig::default().has_keys());
    }
}
