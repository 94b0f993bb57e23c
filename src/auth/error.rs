//! Why a request was refused by authentication, authorization or a rate
//! limit. `api/error.rs` maps these to 401 `Unauthenticated`, 403
//! `Forbidden` and 429 `Throttled`. Messages never quote a token.

use std::time::Duration;

/// A refusal.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AuthError {
    /// No token where one is needed.
    #[error("this server needs a token: send \"Authorization: Bearer TOKEN\"")]
    Missing,
    /// An `Authorization` header that is not `Bearer TOKEN`.
    #[error("the Authorization header must be \"Bearer TOKEN\"")]
    BadHeader,
    /// Neither a configured API key nor a JWT.
    #[error("the token is not a configured API key or a JWT")]
    Unknown,
    /// A JWT that cannot be read, or whose claims have the wrong shape.
    #[error("the JWT is malformed: {0}")]
    Malformed(String),
    /// A JWT signed with an algorithm this server has no key for.
    #[error("the JWT's algorithm {0} has no configured key")]
    Algorithm(String),
    /// No configured key verifies the signature.
    #[error("the JWT's signature does not verify")]
    BadSignature,
    /// Past `exp` (plus the leeway).
    #[error("the token has expired")]
    Expired,
    /// Before `nbf` (minus the leeway).
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    /// `aud` missing or not the configured audience.
    #[error("the token is not meant for this server (aud)")]
    WrongAudience,
    /// `iss` missing or not the configured issuer.
    #[error("the token comes from an issuer this server does not trust (iss)")]
    WrongIssuer,
    /// A valid token whose grants do not cover the request.
    #[error("{principal} has no {action} grant on {resource}")]
    Forbidden {
        principal: String,
        action: String,
        resource: String,
    },
    /// A WebSocket may re-authenticate only as the same principal.
    #[error("a connection keeps its identity: {now} cannot become {new}")]
    IdentityChange { now: String, new: String },
    /// Over the principal's rate.
    #[error("more than {rate} {what} calls per second for this token; retry in {}s", retry_after_seconds(*.retry_after))]
    Throttled {
        what: &'static str,
        rate: f64,
        retry_after: Duration,
    },
}

impl AuthError {
    /// 401 (who are you?) as opposed to 403 and 429.
    pub fn is_unauthenticated(&self) -> bool {
        !matches!(
            self,
            Self::Forbidden { .. } | Self::IdentityChange { .. } | Self::Throttled { .. }
        )
    }

    /// A short stable word for the audit log.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::BadHeader => "bad_header",
            Self::Unknown => "unknown_token",
            Self::Malformed(_) => "malformed",
            Self::Algorithm(_) => "algorithm",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongAudience => "wrong_audience",
            Self::WrongIssuer => "wrong_issuer",
            Self::Forbidden { .. } => "forbidden",
            Self::IdentityChange { .. } => "identity_change",
            Self::Throttled { .. } => "throttled",
        }
    }
}

/// Whole seconds a client should wait: `Retry-After` takes integers, and
/// rounding down would send it back too early.
pub fn retry_after_seconds(d: Duration) -> u64 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    s.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(10)), 1);
        assert_eq!(retry_after_seconds(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_seconds(Duration::from_secs(4)), 4);
    }
}
