//! Request bodies: read up to `--max-request-bytes` (past it: 413
//! `RequestTooLarge`), then parse JSON strictly (malformed JSON, wrong types
//! and unknown fields: 400 `InvalidRequest`). An empty body reads as `{}`, so
//! `curl -X PUT .../queues/q` works without `-d '{}'`.

use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::AppState;

/// A JSON request body of type `T`.
pub struct JsonBody<T>(pub T);

/// Reads the raw body, enforcing the request size limit.
pub async fn read_body(req: Request, limit: usize) -> Result<bytes::Bytes, ApiError> {
    axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|e| {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                || e.to_string().contains("length limit");
            if too_large {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "RequestTooLarge",
                    format!("request body is larger than {limit} bytes (--max-request-bytes)"),
                )
            } else {
                ApiError::invalid_request(format!("cannot read request body: {e}"))
            }
        })
}

/// Parses a JSON object body, mapping serde's message into an `InvalidRequest`.
///
/// Every body of the API is an object. serde would also build a struct from
/// a JSON array (its fields in order), so `[5]` would pass as `{"max": 5}`;
/// that is refused here as the wrong type it is.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    let bytes: &[u8] = match first {
        None => b"{}",
        Some(b'{') => bytes,
        Some(_) => {
            // Malformed JSON keeps serde's message; well-formed JSON of the
            // wrong type says what was expected.
            return Err(
                match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
                    Err(e) => ApiError::invalid_request(format!("invalid JSON body: {e}")),
                    Ok(_) => ApiError::invalid_request("the request body must be a JSON object"),
                },
            );
        }
    };
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::invalid_request(format!("invalid JSON body: {e}")))
}

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, state.hub.limits().max_request_bytes).await?;
        parse_json(&bytes).map(JsonBody)
    }
}
