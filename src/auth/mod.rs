//! Authentication, authorization, per-token rate limits and the audit log.
//!
//! A token (an API key or a JWT) becomes a [`Principal`]: an identity
//! (`key:ID`, `jwt:SUB`, or `anonymous` on a server without keys), its
//! [`Grants`] (actions on typed name patterns), its expiry and its rates.
//! `api` and `ws` ask [`Auth`] three questions: who is this
//! ([`Auth::authenticate`]), may it do this ([`Auth::authorize`]), and may it
//! do it now ([`Auth::throttle`]). This module knows nothing of HTTP or
//! WebSocket: reading headers and mapping refusals to statuses is theirs.

pub mod audit;
mod error;
mod grants;
mod jwt;
mod keys;
mod rate;
mod settings;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use error::{retry_after_seconds, AuthError};
pub use grants::{Action, GrantLists, Grants, Kind, Pattern, PatternError, Resource};
pub use jwt::{ClaimRules, JwtVerifier, KeyError};
pub use keys::{fingerprint, generate_key, hash_key, KEY_PREFIX};
pub use rate::{RateKind, RateLimiter, RateLimits, MAX_BUCKETS};
pub use settings::{ApiKeyDecl, AuthArgs, AuthConfig, AuthSection, JwtSection, DEFAULT_LEEWAY};

/// Longest token read (an `Authorization` header, a `?token=`, an `auth`
/// frame); longer ones are refused before any hashing or parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Who a request is, and what it may do. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Principal(Arc<PrincipalInner>);

#[derive(Debug)]
struct PrincipalInner {
    /// `key:ID`, `jwt:SUB` or `anonymous`: logs and rate-limit buckets.
    id: Arc<str>,
    grants: Grants,
    /// `exp` of a JWT, seconds since the Unix epoch.
    expires_at: Option<u64>,
    limits: RateLimits,
}

impl Principal {
    fn new(id: String, grants: Grants, expires_at: Option<u64>, limits: RateLimits) -> Self {
        Self(Arc::new(PrincipalInner {
            id: Arc::from(id),
            grants,
            expires_at,
            limits,
        }))
    }

    pub fn id(&self) -> &str {
        &self.0.id
    }

    pub fn grants(&self) -> &Grants {
        &self.0.grants
    }

    /// When the token stops being valid (JWTs only), seconds since the epoch.
    pub fn expires_at(&self) -> Option<u64> {
        self.0.expires_at
    }
}

/// Why the authentication settings cannot be used (the server does not start).
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error("[[auth.keys]] {id:?}: sha256 must be 64 hex digits (use `pubq auth hash-key`)")]
    BadHash { id: String },
    #[error("[[auth.keys]]: an id must be 1 to 128 characters of A-Z a-z 0-9 _ . - @")]
    BadId,
    #[error("[[auth.keys]] {0:?} appears twice")]
    DuplicateId(String),
    #[error("[[auth.keys]] {0:?} has the same key as another entry")]
    DuplicateKey(String),
    #[error("[[auth.keys]] {id:?}: {source}")]
    BadGrant { id: String, source: PatternError },
    #[error("{what} must be a number above 0, not {value}")]
    BadRate { what: String, value: f64 },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("[auth.jwt] hs256_secret_env: the environment variable {0} is not set")]
    MissingEnv(String),
    #[error("[auth.jwt] the HS256 secret from {0} is empty")]
    EmptySecret(String),
    #[error("[auth.jwt] {0}")]
    Key(#[from] KeyError),
}

/// The authentication front door. Shared by every request (`Arc`).
#[derive(Debug)]
pub struct Auth {
    /// False when no key of any kind is configured: every request is the
    /// anonymous principal, with every grant.
    enabled: bool,
    /// API keys by the SHA-256 of the key.
    keys: HashMap<keys::KeyHash, Principal>,
    jwt: JwtVerifier,
    /// Rates of principals without their own (JWTs, anonymous).
    defaults: RateLimits,
    public_metrics: bool,
    insecure_no_auth: bool,
    limiter: RateLimiter,
    anonymous: Principal,
}

fn check_rate(what: &str, r: Option<f64>) -> Result<Option<f64>, AuthConfigError> {
    match r {
        Some(v) if !(v.is_finite() && v > 0.0) => Err(AuthConfigError::BadRate {
            what: what.to_string(),
            value: v,
        }),
        other => Ok(other),
    }
}

fn valid_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '@'))
}

fn read_file(path: &Path) -> Result<Vec<u8>, AuthConfigError> {
    std::fs::read(path).map_err(|source| AuthConfigError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// A secret as written to a file or variable, without one trailing newline
/// (`echo secret > file` adds one).
fn trim_newline(mut s: Vec<u8>) -> Vec<u8> {
    if s.last() == Some(&b'\n') {
        s.pop();
        if s.last() == Some(&b'\r') {
            s.pop();
        }
    }
    s
}

impl Auth {
    /// A server without keys: everything allowed, no rate limits.
    pub fn disabled() -> Self {
        Self::from_config(&AuthConfig::default()).expect("an empty configuration is valid")
    }

    /// Checks the settings and reads the key files and the secret.
    pub fn from_config(cfg: &AuthConfig) -> Result<Self, AuthConfigError> {
        let defaults = RateLimits {
            publish: check_rate("publish_rate", cfg.publish_rate)?,
            receive: check_rate("receive_rate", cfg.receive_rate)?,
        };
        let mut keys = HashMap::new();
        let mut ids = std::collections::HashSet::new();
        for k in &cfg.keys {
            if !valid_id(&k.id) {
                return Err(AuthConfigError::BadId);
            }
            if !ids.insert(k.id.clone()) {
                return Err(AuthConfigError::DuplicateId(k.id.clone()));
            }
            let hash = keys::parse_hash(&k.sha256)
                .ok_or_else(|| AuthConfigError::BadHash { id: k.id.clone() })?;
            let grants = Grants::parse(&k.grants).map_err(|source| AuthConfigError::BadGrant {
                id: k.id.clone(),
                source,
            })?;
            let limits = RateLimits {
                publish: check_rate(&format!("key {:?} publish_rate", k.id), k.publish_rate)?
                    .or(defaults.publish),
                receive: check_rate(&format!("key {:?} receive_rate", k.id), k.receive_rate)?
                    .or(defaults.receive),
            };
            let p = Principal::new(format!("key:{}", k.id), grants, None, limits);
            if keys.insert(hash, p).is_some() {
                return Err(AuthConfigError::DuplicateKey(k.id.clone()));
            }
        }
        let j = &cfg.jwt;
        let mut jwt = JwtVerifier::new(ClaimRules {
            audience: j.audience.clone(),
            issuer: j.issuer.clone(),
            leeway: cfg.leeway.unwrap_or(DEFAULT_LEEWAY),
        });
        if let Some(path) = &j.hs256_secret_file {
            let secret = trim_newline(read_file(path)?);
            if secret.is_empty() {
                return Err(AuthConfigError::EmptySecret(path.display().to_string()));
            }
            jwt.add_hs256(&secret);
        }
        if let Some(name) = &j.hs256_secret_env {
            let secret =
                std::env::var_os(name).ok_or_else(|| AuthConfigError::MissingEnv(name.clone()))?;
            let secret = trim_newline(secret.into_encoded_bytes());
            if secret.is_empty() {
                return Err(AuthConfigError::EmptySecret(format!("${name}")));
            }
            jwt.add_hs256(&secret);
        }
        for path in &j.rs256_public_keys {
            jwt.add_rs256_pem(&path.display().to_string(), &read_file(path)?)?;
        }
        for path in &j.eddsa_public_keys {
            jwt.add_eddsa_pem(&path.display().to_string(), &read_file(path)?)?;
        }
        let enabled = !keys.is_empty() || !jwt.is_empty();
        Ok(Self {
            enabled,
            keys,
            jwt,
            defaults,
            public_metrics: cfg.public_metrics,
            insecure_no_auth: cfg.insecure_no_auth,
            limiter: RateLimiter::default(),
            anonymous: Principal::new("anonymous".into(), Grants::everything(), None, defaults),
        })
    }

    /// Whether requests need a token.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Whether `/metrics` and the live page are open.
    pub fn public_metrics(&self) -> bool {
        self.public_metrics
    }

    /// Whether listening beyond loopback without keys was asked for.
    pub fn insecure_no_auth(&self) -> bool {
        self.insecure_no_auth
    }

    /// Clock leeway for JWT expiry.
    pub fn leeway(&self) -> Duration {
        self.jwt.leeway()
    }

    /// One line for the start-up log.
    pub fn summary(&self) -> String {
        if !self.enabled {
            return "no authentication: no API key or JWT key configured".into();
        }
        let algs = self.jwt.algorithms();
        format!(
            "authentication on: {} API key(s), JWT {}",
            self.keys.len(),
            if algs.is_empty() {
                "off".to_string()
            } else {
                algs.join(", ")
            }
        )
    }

    /// Who a token is. Without keys configured every request is the
    /// anonymous principal, token or not.
    pub fn authenticate(&self, token: Option<&str>) -> Result<Principal, AuthError> {
        if !self.enabled {
            return Ok(self.anonymous.clone());
        }
        let token = match token {
            None | Some("") => return Err(AuthError::Missing),
            Some(t) if t.len() > MAX_TOKEN_BYTES => {
                return Err(AuthError::Malformed(format!(
                    "a token is at most {MAX_TOKEN_BYTES} bytes"
                )))
            }
            Some(t) => t,
        };
        if let Some(p) = self.keys.get(&keys::digest(token)) {
            return Ok(p.clone());
        }
        if token.starts_with(KEY_PREFIX) || token.split('.').count() != 3 || self.jwt.is_empty() {
            return Err(AuthError::Unknown);
        }
        let v = self.jwt.verify(token)?;
        Ok(Principal::new(
            format!("jwt:{}", v.sub),
            v.grants,
            Some(v.exp),
            self.defaults,
        ))
    }

    /// Whether `p` may take `action` on `r`; a refusal is audit-logged.
    pub fn authorize(
        &self,
        p: &Principal,
        action: Action,
        r: Resource<'_>,
    ) -> Result<(), AuthError> {
        if p.grants().allows(action, r) {
            return Ok(());
        }
        audit::forbidden(p, action, r);
        Err(AuthError::Forbidden {
            principal: p.id().to_string(),
            action: action.as_str().to_string(),
            resource: r.to_string(),
        })
    }

    /// Takes one call of `kind` from `p`'s budget, or says how long to wait.
    pub fn throttle(&self, p: &Principal, kind: RateKind) -> Result<(), AuthError> {
        let Some(rate) = p.0.limits.of(kind) else {
            return Ok(());
        };
        self.limiter
            .take(&p.0.id, kind, rate, Instant::now())
            .map_err(|retry_after| {
                tracing::debug!(principal = p.id(), kind = kind.as_str(), "throttled");
                AuthError::Throttled {
                    what: kind.as_str(),
                    rate,
                    retry_after,
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, secret: &str, grants: GrantLists) -> ApiKeyDecl {
        ApiKeyDecl {
            id: id.into(),
            sha256: hash_key(secret),
            grants,
            publish_rate: None,
            receive_rate: None,
        }
    }

    #[test]
    fn without_keys_everyone_is_anonymous_with_every_grant() {
        let a = Auth::disabled();
        assert!(!a.enabled());
        for t in [None, Some("anything")] {
            let p = a.authenticate(t).expect("open server");
            assert_eq!(p.id(), "anonymous");
            assert!(a.authorize(&p, Action::Admin, Resource::queue("q")).is_ok());
        }
    }

    #[test]
    fn api_keys_authenticate_by_hash() {
        let cfg = AuthConfig {
            keys: vec![key(
                "ci",
                "pubq_secret",
                GrantLists {
                    publish: vec!["topic:orders".into()],
                    ..GrantLists::default()
                },
            )],
            ..AuthConfig::default()
        };
        let a = Auth::from_config(&cfg).expect("valid config");
        assert!(a.enabled());
        let p = a.authenticate(Some("pubq_secret")).expect("known key");
        assert_eq!(p.id(), "key:ci");
        assert!(a
            .authorize(&p, Action::Publish, Resource::topic("orders"))
            .is_ok());
        assert!(matches!(
            a.authorize(&p, Action::Consume, Resource::topic("orders")),
            Err(AuthError::Forbidden { .. })
        ));
        assert_eq!(a.authenticate(None).err(), Some(AuthError::Missing));
        assert_eq!(a.authenticate(Some("")).err(), Some(AuthError::Missing));
        assert_eq!(
            a.authenticate(Some("pubq_other")).err(),
            Some(AuthError::Unknown)
        );
        // JWT-shaped, but no JWT key is configured.
        assert_eq!(
            a.authenticate(Some("a.b.c")).err(),
            Some(AuthError::Unknown)
        );
        let huge = "x".repeat(MAX_TOKEN_BYTES + 1);
        assert!(matches!(
            a.authenticate(Some(&huge)),
            Err(AuthError::Malformed(_))
        ));
    }

    #[test]
    fn bad_key_settings_stop_the_server() {
        let bad_hash = AuthConfig {
            keys: vec![ApiKeyDecl {
                sha256: "abc".into(),
                ..key("ci", "k", GrantLists::default())
            }],
            ..AuthConfig::default()
        };
        assert!(matches!(
            Auth::from_config(&bad_hash),
            Err(AuthConfigError::BadHash { .. })
        ));
        let twice = AuthConfig {
            keys: vec![
                key("ci", "a", GrantLists::default()),
                key("ci", "b", GrantLists::default()),
            ],
            ..AuthConfig::default()
        };
        assert!(matches!(
            Auth::from_config(&twice),
            Err(AuthConfigError::DuplicateId(_))
        ));
        let same_key = AuthConfig {
            keys: vec![
                key("a", "k", GrantLists::default()),
                key("b", "k", GrantLists::default()),
            ],
            ..AuthConfig::default()
        };
        assert!(matches!(
            Auth::from_config(&same_key),
            Err(AuthConfigError::DuplicateKey(_))
        ));
        let bad_grant = AuthConfig {
            keys: vec![key(
                "a",
                "k",
                GrantLists {
                    admin: vec!["orders".into()],
                    ..GrantLists::default()
                },
            )],
            ..AuthConfig::default()
        };
        assert!(matches!(
            Auth::from_config(&bad_grant),
            Err(AuthConfigError::BadGrant { .. })
        ));
        let bad_rate = AuthConfig {
            publish_rate: Some(0.0),
            ..AuthConfig::default()
        };
        assert!(matches!(
            Auth::from_config(&bad_rate),
            Err(AuthConfigError::BadRate { .. })
        ));
        let missing_file = AuthConfig {
            jwt: JwtSection {
                rs256_public_keys: vec!["/nonexistent/key.pem".into()],
                ..JwtSection::default()
            },
            ..AuthConfig::default()
        };
        assert!(matches!(
            Auth::from_config(&missing_file),
            Err(AuthConfigError::Read { .. })
        ));
    }

    #[test]
    fn per_key_rates_override_the_default() {
        let cfg = AuthConfig {
            keys: vec![
                ApiKeyDecl {
                    publish_rate: Some(1.0),
                    ..key("slow", "s", GrantLists::default())
                },
                key("fast", "f", GrantLists::default()),
            ],
            publish_rate: Some(1000.0),
            ..AuthConfig::default()
        };
        let a = Auth::from_config(&cfg).expect("valid config");
        let slow = a.authenticate(Some("s")).expect("known");
        let fast = a.authenticate(Some("f")).expect("known");
        assert!(a.throttle(&slow, RateKind::Publish).is_ok());
        assert!(matches!(
            a.throttle(&slow, RateKind::Publish),
            Err(AuthError::Throttled { .. })
        ));
        for _ in 0..10 {
            assert!(a.throttle(&fast, RateKind::Publish).is_ok());
        }
        // No receive rate anywhere: unlimited.
        for _ in 0..10 {
            assert!(a.throttle(&slow, RateKind::Receive).is_ok());
        }
    }
}
