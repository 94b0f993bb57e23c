//! The HTTP side of authentication: where a request's token comes from
//! (`Authorization: Bearer`, or `?token=` on the WebSocket and the live
//! page), the middleware that turns it into a [`Principal`] in the request's
//! extensions (401 when it cannot), the gates of `/metrics` and the live
//! page, and the grant checks handlers call (403, 429). The rules live in
//! [`crate::auth`].

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Uri};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::AppState;
use crate::auth::{audit, fingerprint, Action, AuthError, Principal, RateKind, Resource};
use crate::model::QueueName;

/// How a path is guarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Guard {
    /// `/healthz`, `/readyz`: no token.
    Open,
    /// `/metrics`: admin on every topic and queue, unless `--public-metrics`.
    Metrics,
    /// The live page and its assets: any admin grant, unless
    /// `--public-metrics`; the token may come as `?token=`.
    Page,
    /// `/v1/ws`: the token may come as `?token=`, or later as an `auth` frame.
    WebSocket,
    /// Everything else: a bearer token.
    Api,
}

impl Guard {
    fn of(path: &str) -> Self {
        match path {
            "/healthz" | "/readyz" => Self::Open,
            "/metrics" => Self::Metrics,
            "/" | "/ui/app.js" | "/ui/style.css" => Self::Page,
            "/v1/ws" => Self::WebSocket,
            _ => Self::Api,
        }
    }

    fn takes_query_token(self) -> bool {
        matches!(self, Self::Page | Self::WebSocket)
    }
}

/// The bearer token of an `Authorization` header, if there is one.
pub(crate) fn bearer(headers: &HeaderMap) -> Result<Option<String>, AuthError> {
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let v = v.to_str().map_err(|_| AuthError::BadHeader)?;
    let (scheme, token) = v.trim().split_once(' ').ok_or(AuthError::BadHeader)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::BadHeader);
    }
    Ok(Some(token.trim().to_string()))
}

/// `?token=` of a URI (percent-decoded).
pub(crate) fn query_token(uri: &Uri) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Q {
        token: Option<String>,
    }
    axum::extract::Query::<Q>::try_from_uri(uri)
        .ok()
        .and_then(|q| q.0.token)
}

/// Authenticates every request but the open ones; handlers find the
/// [`Principal`] in the extensions.
pub(super) async fn authenticate(
    State(s): State<AppState>,
    mut req: Request,
    next: axum::middleware::Next,
) -> Response {
    let guard = Guard::of(req.uri().path());
    if guard == Guard::Open
        || (matches!(guard, Guard::Metrics | Guard::Page) && s.auth.public_metrics())
    {
        return next.run(req).await;
    }
    let token = match bearer(req.headers()) {
        Ok(Some(t)) => Some(t),
        Ok(None) if guard.takes_query_token() => query_token(req.uri()),
        Ok(None) => None,
        Err(e) => return refuse_unauthenticated(&e, None, "http"),
    };
    // A WebSocket without a token authenticates with its first frame.
    if guard == Guard::WebSocket && token.is_none() && s.auth.enabled() {
        return next.run(req).await;
    }
    let p = match s.auth.authenticate(token.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            let fp = token.as_deref().map(fingerprint);
            return refuse_unauthenticated(&e, fp.as_deref(), "http");
        }
    };
    let gate = match guard {
        Guard::Metrics if !p.grants().admin_everywhere() => Some("metrics"),
        Guard::Page if !p.grants().any_admin() => Some("live page"),
        _ => None,
    };
    if let Some(what) = gate {
        let e = AuthError::Forbidden {
            principal: p.id().to_string(),
            action: "admin".into(),
            resource: match what {
                "metrics" => "every topic and queue (the metrics name them all)".into(),
                _ => "anything (the live page is for admins)".into(),
            },
        };
        audit::refused(&p, what, &e);
        return ApiError::from(e).into_response();
    }
    req.extensions_mut().insert(p);
    next.run(req).await
}

fn refuse_unauthenticated(e: &AuthError, fp: Option<&str>, via: &str) -> Response {
    audit::auth_failed(e, fp, via);
    ApiError::from(e.clone()).into_response()
}

/// 403 unless `p` may take `action` on `r`.
pub(crate) fn allow(
    s: &AppState,
    p: &Principal,
    action: Action,
    r: Resource<'_>,
) -> Result<(), ApiError> {
    Ok(s.auth.authorize(p, action, r)?)
}

/// [`allow`] for a queue. The temporary queue of a WebSocket topic
/// subscription is named by the server, so no pattern anticipates it:
/// consuming from it needs `consume` on a topic it is subscribed to.
pub(crate) fn allow_queue(
    s: &AppState,
    p: &Principal,
    action: Action,
    name: &QueueName,
) -> Result<(), ApiError> {
    let r = Resource::queue(name.as_str());
    if action == Action::Consume && !p.grants().allows(action, r) {
        let temporary = s.hub.queue(name).is_ok_and(|q| q.is_temporary());
        if temporary
            && s.hub
                .subscribed_topics_of(name)
                .iter()
                .any(|t| p.grants().allows(action, Resource::topic(t.as_str())))
        {
            return Ok(());
        }
    }
    allow(s, p, action, r)
}

/// 429 when `p` is over its rate for `kind`.
pub(crate) fn throttle(s: &AppState, p: &Principal, kind: RateKind) -> Result<(), ApiError> {
    Ok(s.auth.throttle(p, kind)?)
}

/// `%XX` for everything but unreserved characters, so a token can go into a
/// URL inside HTML without breaking out of it.
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_headers_parse_and_others_are_refused() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), Ok(None));
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().expect("header"));
        assert_eq!(bearer(&h), Ok(Some("abc".into())));
        h.insert(
            header::AUTHORIZATION,
            "bearer  abc ".parse().expect("header"),
        );
        assert_eq!(bearer(&h), Ok(Some("abc".into())));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().expect("header"));
        assert_eq!(bearer(&h), Err(AuthError::BadHeader));
        h.insert(header::AUTHORIZATION, "abc".parse().expect("header"));
        assert_eq!(bearer(&h), Err(AuthError::BadHeader));
    }

    #[test]
    fn query_tokens_are_decoded_and_encoded_back() {
        let uri: Uri = "/v1/ws?token=a%2Bb.c&x=1".parse().expect("uri");
        assert_eq!(query_token(&uri), Some("a+b.c".into()));
        let uri: Uri = "/v1/ws".parse().expect("uri");
        assert_eq!(query_token(&uri), None);
        assert_eq!(percent_encode("a+b.c_d\"<"), "a%2Bb.c_d%22%3C");
    }
}
