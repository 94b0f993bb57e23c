//! JWT verification (HS256, RS256, EdDSA) with the `jsonwebtoken` crate:
//! signature against every configured key of the token's algorithm (several
//! keys allow rotation), then `exp` (required), `nbf`, `aud` and `iss` with a
//! clock leeway, then pubq's claims: `sub` (required) and the `pubq` grants.

use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::error::AuthError;
use super::grants::{GrantLists, Grants};

/// A verified token.
#[derive(Debug, Clone)]
pub struct VerifiedJwt {
    pub sub: String,
    /// `exp`, seconds since the Unix epoch.
    pub exp: u64,
    pub grants: Grants,
}

/// The claims pubq reads; others are ignored.
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default)]
    pubq: GrantLists,
}

/// What a token's claims must satisfy besides the signature.
#[derive(Debug, Clone, Default)]
pub struct ClaimRules {
    pub audience: Option<String>,
    pub issuer: Option<String>,
    pub leeway: Duration,
}

/// The configured keys.
pub struct JwtVerifier {
    keys: Vec<(Algorithm, DecodingKey)>,
    rules: ClaimRules,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key material.
        let algs: Vec<Algorithm> = self.keys.iter().map(|(a, _)| *a).collect();
        f.debug_struct("JwtVerifier")
            .field("algorithms", &algs)
            .field("rules", &self.rules)
            .finish()
    }
}

/// Why a key could not be loaded (start-up).
#[derive(Debug, thiserror::Error)]
#[error("{what}: {message}")]
pub struct KeyError {
    pub what: String,
    pub message: String,
}

impl JwtVerifier {
    pub fn new(rules: ClaimRules) -> Self {
        Self {
            keys: Vec::new(),
            rules,
        }
    }

    /// Adds an HS256 secret.
    pub fn add_hs256(&mut self, secret: &[u8]) {
        self.keys
            .push((Algorithm::HS256, DecodingKey::from_secret(secret)));
    }

    /// Adds an RS256 public key (PEM: `PUBLIC KEY` or `RSA PUBLIC KEY`).
    pub fn add_rs256_pem(&mut self, what: &str, pem: &[u8]) -> Result<(), KeyError> {
        let key = DecodingKey::from_rsa_pem(pem).map_err(|e| KeyError {
            what: what.to_string(),
            message: format!("not an RSA public key in PEM form ({e})"),
        })?;
        self.keys.push((Algorithm::RS256, key));
        Ok(())
    }

    /// Adds an Ed25519 public key (PEM: `PUBLIC KEY`).
    pub fn add_eddsa_pem(&mut self, what: &str, pem: &[u8]) -> Result<(), KeyError> {
        let key = DecodingKey::from_ed_pem(pem).map_err(|e| KeyError {
            what: what.to_string(),
            message: format!("not an Ed25519 public key in PEM form ({e})"),
        })?;
        self.keys.push((Algorithm::EdDSA, key));
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The algorithms that have at least one key, for the start-up log.
    pub fn algorithms(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Vec::new();
        for (a, _) in &self.keys {
            let name = match a {
                Algorithm::HS256 => "HS256",
                Algorithm::RS256 => "RS256",
                Algorithm::EdDSA => "EdDSA",
                _ => "other",
            };
            if !out.contains(&name) {
                out.push(name);
            }
        }
        out
    }

    pub fn leeway(&self) -> Duration {
        self.rules.leeway
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = self.rules.leeway.as_secs();
        v.validate_exp = true;
        v.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        if let Some(aud) = &self.rules.audience {
            v.set_audience(&[aud]);
            required.push("aud");
        }
        if let Some(iss) = &self.rules.issuer {
            v.set_issuer(&[iss]);
            required.push("iss");
        }
        v.set_required_spec_claims(&required);
        v
    }

    /// Verifies a token: signature, then time and audience rules, then
    /// pubq's claims.
    pub fn verify(&self, token: &str) -> Result<VerifiedJwt, AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthError::Malformed(format!("unreadable header ({e})")))?;
        let alg = header.alg;
        let mut candidates = self.keys.iter().filter(|(a, _)| *a == alg).peekable();
        if candidates.peek().is_none() {
            return Err(AuthError::Algorithm(format!("{alg:?}")));
        }
        let validation = self.validation(alg);
        let mut last = AuthError::BadSignature;
        for (_, key) in candidates {
            match jsonwebtoken::decode::<Claims>(token, key, &validation) {
                Ok(data) => return self.accept(data.claims),
                Err(e) => {
                    last = map_error(e.kind());
                    // Another key may verify it; any other verdict is final,
                    // since claims are checked only after a signature verified.
                    if last != AuthError::BadSignature {
                        return Err(last);
                    }
                }
            }
        }
        Err(last)
    }

    fn accept(&self, c: Claims) -> Result<VerifiedJwt, AuthError> {
        if c.sub.is_empty() {
            return Err(AuthError::Malformed("\"sub\" is empty".into()));
        }
        let grants = Grants::parse(&c.pubq)
            .map_err(|e| AuthError::Malformed(format!("claim \"pubq\": {e}")))?;
        Ok(VerifiedJwt {
            sub: c.sub,
            exp: c.exp,
            grants,
        })
    }
}

fn map_error(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::MissingRequiredClaim(c) if c == "aud" => AuthError::WrongAudience,
        ErrorKind::MissingRequiredClaim(c) if c == "iss" => AuthError::WrongIssuer,
        ErrorKind::MissingRequiredClaim(c) => {
            AuthError::Malformed(format!("the \"{c}\" claim is required"))
        }
        ErrorKind::InvalidClaimFormat(c) => {
            AuthError::Malformed(format!("the \"{c}\" claim has the wrong type"))
        }
        ErrorKind::InvalidAlgorithm => AuthError::Algorithm("mismatch".into()),
        ErrorKind::Json(e) => AuthError::Malformed(format!("claims: {e}")),
        other => AuthError::Malformed(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::{json, Value};

    const SECRET: &[u8] = b"a test secret that is long enough to be reasonable";

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn hs(claims: &Value, secret: &[u8]) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret),
        )
        .expect("encode a test token")
    }

    fn verifier(rules: ClaimRules) -> JwtVerifier {
        let mut v = JwtVerifier::new(rules);
        v.add_hs256(SECRET);
        v
    }

    #[test]
    fn claims_become_grants() {
        let v = verifier(ClaimRules::default());
        let t = hs(
            &json!({"sub": "alice", "exp": now() + 60,
                "pubq": {"publish": ["topic:orders.*"], "admin": ["queue:email-*"]}}),
            SECRET,
        );
        let got = v.verify(&t).expect("valid token");
        assert_eq!(got.sub, "alice");
        use crate::auth::grants::{Action, Resource};
        assert!(got
            .grants
            .allows(Action::Publish, Resource::topic("orders.eu")));
        assert!(got
            .grants
            .allows(Action::Consume, Resource::queue("email-x")));
        assert!(!got
            .grants
            .allows(Action::Consume, Resource::topic("orders")));
        // No `pubq` claim: a valid identity with no grants.
        let bare = hs(&json!({"sub": "bob", "exp": now() + 60}), SECRET);
        let got = v.verify(&bare).expect("valid token");
        assert!(!got.grants.any_admin());
    }

    #[test]
    fn bad_claims_are_refused_with_their_reason() {
        let v = verifier(ClaimRules {
            audience: Some("pubq".into()),
            issuer: Some("idp".into()),
            leeway: Duration::from_secs(5),
        });
        let ok = json!({"sub": "a", "exp": now() + 60, "aud": "pubq", "iss": "idp"});
        assert!(v.verify(&hs(&ok, SECRET)).is_ok());
        let with = |k: &str, val: Value| {
            let mut c = ok.clone();
            c[k] = val;
            hs(&c, SECRET)
        };
        let without = |k: &str| {
            let mut c = ok.clone();
            c.as_object_mut().expect("object").remove(k);
            hs(&c, SECRET)
        };
        assert_eq!(
            v.verify(&hs(&ok, b"another secret")).err(),
            Some(AuthError::BadSignature)
        );
        assert_eq!(
            v.verify(&with("exp", json!(now() - 60))).err(),
            Some(AuthError::Expired)
        );
        // Within the leeway it still counts.
        assert!(v.verify(&with("exp", json!(now() - 2))).is_ok());
        assert_eq!(
            v.verify(&with("nbf", json!(now() + 60))).err(),
            Some(AuthError::NotYetValid)
        );
        assert_eq!(
            v.verify(&with("aud", json!("other"))).err(),
            Some(AuthError::WrongAudience)
        );
        assert_eq!(
            v.verify(&without("aud")).err(),
            Some(AuthError::WrongAudience)
        );
        assert_eq!(
            v.verify(&with("iss", json!("evil"))).err(),
            Some(AuthError::WrongIssuer)
        );
        assert_eq!(
            v.verify(&without("iss")).err(),
            Some(AuthError::WrongIssuer)
        );
        assert!(matches!(
            v.verify(&without("exp")),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(
            v.verify(&without("sub")),
            Err(AuthError::Malformed(_))
        ));
        // A string where a number belongs is refused, not skipped.
        assert!(matches!(
            v.verify(&with("nbf", json!("tomorrow"))),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(
            v.verify(&with("exp", json!("later"))),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(
            v.verify(&with("pubq", json!({"publish": ["orders"]}))),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(
            v.verify(&with("pubq", json!({"publsh": ["topic:x"]}))),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(
            v.verify("not.a.jwt"),
            Err(AuthError::Malformed(_))
        ));
    }

    #[test]
    fn without_a_configured_audience_a_token_with_one_is_refused() {
        let v = verifier(ClaimRules::default());
        let t = hs(&json!({"sub": "a", "exp": now() + 60, "aud": "x"}), SECRET);
        assert_eq!(v.verify(&t).err(), Some(AuthError::WrongAudience));
    }

    #[test]
    fn an_algorithm_without_a_key_is_refused() {
        let v = verifier(ClaimRules::default());
        // `alg: none` and algorithms with no key never verify.
        let none = format!(
            "{}.{}.",
            base64_url(r#"{"alg":"none","typ":"JWT"}"#),
            base64_url(&json!({"sub": "a", "exp": now() + 60}).to_string())
        );
        assert!(v.verify(&none).is_err());
        let rs_header = format!(
            "{}.{}.c2ln",
            base64_url(r#"{"alg":"RS256","typ":"JWT"}"#),
            base64_url(&json!({"sub": "a", "exp": now() + 60}).to_string())
        );
        assert!(matches!(v.verify(&rs_header), Err(AuthError::Algorithm(_))));
    }

    #[test]
    fn any_of_several_keys_may_sign() {
        let mut v = verifier(ClaimRules::default());
        v.add_hs256(b"the next secret after rotation");
        let t = hs(
            &json!({"sub": "a", "exp": now() + 60}),
            b"the next secret after rotation",
        );
        assert!(v.verify(&t).is_ok());
        assert_eq!(v.algorithms(), vec!["HS256"]);
    }

    fn base64_url(s: &str) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }
}
