//! Tokens as a request carries them (an `Authorization` header, `?token=`,
//! an `auth` frame) and the grant patterns they come with (`pubq.toml`, a
//! JWT's `pubq` claim).

use std::sync::OnceLock;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::api::error::ApiError;
use crate::auth::{
    hash_key, Action, ApiKeyDecl, Auth, AuthConfig, ClaimRules, GrantLists, Grants, JwtVerifier,
    Kind, Pattern, Resource,
};

/// The API key the targets' `Auth` knows (`key:fuzz`).
pub const API_KEY: &str = "pubq_fuzzing-key-not-a-secret-AAAAAAAAAAAAAAAAAAAAA";
/// The HS256 secret of the targets' JWT verifier: inputs are signed with it
/// so that they get past the signature to the claims.
pub const HS256_SECRET: &[u8] = b"the HS256 secret of the fuzz targets";
/// The audience the verifier requires.
pub const AUDIENCE: &str = "pubq";

struct Fixtures {
    auth: Auth,
    jwt: JwtVerifier,
}

fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| {
        let cfg = AuthConfig {
            keys: vec![ApiKeyDecl {
                id: "fuzz".into(),
                sha256: hash_key(API_KEY),
                grants: GrantLists {
                    publish: vec!["topic:orders.*".into()],
                    consume: vec!["queue:email-*".into()],
                    admin: vec!["queue:admin".into()],
                },
                publish_rate: None,
                receive_rate: None,
            }],
            ..AuthConfig::default()
        };
        let mut jwt = JwtVerifier::new(ClaimRules {
            audience: Some(AUDIENCE.into()),
            issuer: None,
            leeway: Duration::from_secs(30),
        });
        jwt.add_hs256(HS256_SECRET);
        Fixtures {
            auth: Auth::from_config(&cfg).expect("the fixture's key is valid"),
            jwt,
        }
    })
}

/// Authenticates a token as the server would (an API key, else a JWT):
/// never a panic, and a refusal is a 401. Whether it was accepted.
pub(super) fn authenticate(token: &str) -> bool {
    let f = fixtures();
    match f.auth.authenticate(Some(token)) {
        Ok(p) => {
            assert_eq!(p.id(), "key:fuzz");
            assert!(p
                .grants()
                .allows(Action::Publish, Resource::topic("orders.x")));
            return true;
        }
        Err(e) => assert_eq!(ApiError::from(e).status.as_u16(), 401),
    }
    match f.jwt.verify(token) {
        Ok(v) => {
            assert!(!v.sub.is_empty());
            let _ = v.grants.any_admin();
            true
        }
        Err(e) => {
            assert_eq!(ApiError::from(e).status.as_u16(), 401);
            false
        }
    }
}

/// A JWT of `header` and `claims` (any bytes), signed with the secret.
fn signed(header: &[u8], claims: &[u8]) -> String {
    let mut token = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(HS256_SECRET).expect("any key length");
    mac.update(token.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    token.push('.');
    token.push_str(&sig);
    token
}

/// `auth_token`: the first byte picks how the rest is used:
/// 0. a token as is (API key lookup, then JWT verification);
/// 1. a JWT's claims (JSON), signed with the verifier's secret under an
///    HS256 header, so they reach the claim checks and the grant parser;
/// 2. a header and claims split by a NUL byte, signed the same way;
/// 3. an `Authorization` header value (`Bearer TOKEN`);
/// 4. the query string of `/v1/ws?...` (`token=`, percent-encoded).
///
/// Never a panic; refusals are 401s.
pub fn auth_token(data: &[u8]) -> bool {
    let Some((&mode, rest)) = data.split_first() else {
        return false;
    };
    match mode % 5 {
        0 => std::str::from_utf8(rest).is_ok_and(authenticate),
        1 => authenticate(&signed(br#"{"alg":"HS256","typ":"JWT"}"#, rest)),
        2 => {
            let (header, claims) = match rest.iter().position(|b| *b == 0) {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &b"{}"[..]),
            };
            authenticate(&signed(header, claims))
        }
        3 => {
            let Ok(value) = axum::http::HeaderValue::from_bytes(rest) else {
                return false;
            };
            let mut headers = axum::http::HeaderMap::new();
            headers.insert(axum::http::header::AUTHORIZATION, value);
            match crate::api::access::bearer(&headers) {
                Ok(Some(token)) => authenticate(&token),
                Ok(None) => unreachable!("the header is there"),
                Err(e) => {
                    assert_eq!(ApiError::from(e).status.as_u16(), 401);
                    false
                }
            }
        }
        _ => {
            let mut uri = b"/v1/ws?".to_vec();
            uri.extend_from_slice(rest);
            let Ok(uri) = axum::http::Uri::try_from(uri) else {
                return false;
            };
            crate::api::access::query_token(&uri).is_some_and(|t| authenticate(&t))
        }
    }
}

/// `grant_pattern`: lines of text; the first is a pattern, the others names.
/// A pattern that parses prints as it was written and parses to itself
/// again; it matches a name exactly when a plain dynamic-programming glob
/// match says so; as a `publish` grant it allows publishing to exactly the
/// names it matches, and nothing else.
pub fn grant_pattern(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let mut lines = text.split('\n');
    let first = lines.next().unwrap_or_default();
    let Ok(p) = Pattern::parse(first) else {
        return false;
    };
    let shown = p.to_string();
    assert_eq!(shown, first);
    assert_eq!(Pattern::parse(&shown).as_ref(), Ok(&p));
    let (_, glob) = shown.split_once(':').expect("a kind prefix");
    let grants = Grants::parse(&GrantLists {
        publish: vec![first.to_string()],
        ..GrantLists::default()
    })
    .expect("a pattern that parses alone parses in a list");
    for name in lines {
        for kind in [Kind::Topic, Kind::Queue] {
            let r = Resource { kind, name };
            let want = p.kind() == kind && reference_glob(glob.as_bytes(), name.as_bytes());
            assert_eq!(p.matches(r), want, "{shown} on {r}");
            assert_eq!(grants.allows(Action::Publish, r), want);
            assert_eq!(grants.any_on(r), want);
            assert!(!grants.allows(Action::Consume, r));
            assert!(!grants.allows(Action::Admin, r));
        }
    }
    true
}

/// `*` matches any run of bytes, anything else itself: a table of which
/// prefix of the glob matches which prefix of the name.
fn reference_glob(glob: &[u8], name: &[u8]) -> bool {
    let mut row = vec![false; name.len() + 1];
    row[0] = true;
    for &g in glob {
        let mut next = vec![false; name.len() + 1];
        for j in 0..=name.len() {
            next[j] = if g == b'*' {
                row[j] || (j > 0 && next[j - 1])
            } else {
                j > 0 && row[j - 1] && name[j - 1] == g
            };
        }
        row = next;
    }
    row[name.len()]
}
