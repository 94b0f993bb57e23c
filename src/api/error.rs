//! The one place that maps errors to HTTP statuses and the contract's error
//! codes: `{"error": {"code": "PascalCase", "message": "human sentence"}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::auth::{retry_after_seconds, AuthError};
use crate::hub::HubError;
use crate::queue::ReceiptError;

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// `Retry-After` of a 429, in seconds (1 when not set).
    pub retry_after_seconds: Option<u64>,
}

/// The `{"code", "message"}` object, also used per entry inside 200 answers.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorBody {
    pub code: &'static str,
    pub message: String,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: &'a ErrorBody,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after_seconds: None,
        }
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidRequest", message)
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code,
            message: self.message.clone(),
        }
    }
}

impl From<HubError> for ApiError {
    fn from(e: HubError) -> Self {
        use StatusCode as S;
        let (status, code) = match &e {
            HubError::TopicNotFound(_) => (S::NOT_FOUND, "TopicNotFound"),
            HubError::QueueNotFound(_) => (S::NOT_FOUND, "QueueNotFound"),
            HubError::SubscriptionNotFound { .. } => (S::NOT_FOUND, "SubscriptionNotFound"),
            HubError::QueueExists(_) => (S::CONFLICT, "QueueExists"),
            HubError::TopicExists(_) => (S::CONFLICT, "TopicExists"),
            HubError::QueueInUse(_) => (S::CONFLICT, "QueueInUse"),
            HubError::InvalidSetting(_) => (S::BAD_REQUEST, "InvalidSetting"),
            HubError::InvalidRequest(_) => (S::BAD_REQUEST, "InvalidRequest"),
            HubError::BatchTooLarge(_) => (S::BAD_REQUEST, "BatchTooLarge"),
            HubError::InvalidName(_) => (S::BAD_REQUEST, "InvalidName"),
            HubError::MessageTooLarge { .. } => (S::PAYLOAD_TOO_LARGE, "MessageTooLarge"),
            HubError::NotADeadLetterQueue(_) => (S::BAD_REQUEST, "NotADeadLetterQueue"),
            HubError::LimitExceeded(_) => (S::CONFLICT, "LimitExceeded"),
            HubError::Throttled(_) => (S::TOO_MANY_REQUESTS, "Throttled"),
            HubError::ResumeExpired => (S::NOT_FOUND, "ResumeExpired"),
            HubError::ShuttingDown => (S::SERVICE_UNAVAILABLE, "NotReady"),
            HubError::Storage(_) => (S::SERVICE_UNAVAILABLE, "StorageFailed"),
        };
        Self::new(status, code, e.to_string())
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        use StatusCode as S;
        let (status, code) = match &e {
            AuthError::Throttled { .. } => (S::TOO_MANY_REQUESTS, "Throttled"),
            AuthError::Forbidden { .. } | AuthError::IdentityChange { .. } => {
                (S::FORBIDDEN, "Forbidden")
            }
            _ => (S::UNAUTHORIZED, "Unauthenticated"),
        };
        let mut out = Self::new(status, code, e.to_string());
        if let AuthError::Throttled { retry_after, .. } = e {
            out.retry_after_seconds = Some(retry_after_seconds(retry_after));
        }
        out
    }
}

impl From<crate::model::NameError> for ApiError {
    fn from(e: crate::model::NameError) -> Self {
        HubError::InvalidName(e).into()
    }
}

/// Per-entry code of a receipt error.
pub fn receipt_error_body(e: ReceiptError) -> ErrorBody {
    let code = match e {
        ReceiptError::Stale => "ReceiptStale",
        ReceiptError::Invalid => "ReceiptInvalid",
    };
    ErrorBody {
        code,
        message: e.to_string(),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.body();
        let mut resp = (self.status, axum::Json(Envelope { error: &body })).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(self.retry_after_seconds.unwrap_or(1)),
            );
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"pubq\""),
            );
        }
        resp
    }
}
