//! The audit log: failed authentications, refused (forbidden) requests and
//! admin changes, as `tracing` events with target `pubq::audit`, so they can
//! be filtered or routed on their own (`PUBQ_LOG=warn,pubq::audit=info`).
//! Events name the principal (`key:ID`, `jwt:SUB`) and, for a token that did
//! not authenticate, the first 8 hex digits of its SHA-256; never a token.

use super::error::AuthError;
use super::grants::{Action, Resource};
use super::Principal;

/// The target every audit event carries.
pub const TARGET: &str = "pubq::audit";

/// A token was missing or did not authenticate.
pub fn auth_failed(e: &AuthError, token_fingerprint: Option<&str>, via: &str) {
    tracing::warn!(
        target: TARGET,
        event = "auth_failed",
        reason = e.reason(),
        token = token_fingerprint.unwrap_or("-"),
        via,
        "authentication failed: {e}"
    );
}

/// A valid principal was refused an action.
pub fn forbidden(p: &Principal, action: Action, r: Resource<'_>) {
    tracing::warn!(
        target: TARGET,
        event = "forbidden",
        principal = p.id(),
        action = action.as_str(),
        resource = %r,
        "request refused: no grant"
    );
}

/// A refusal of something other than one resource (the live page, metrics,
/// a WebSocket identity change).
pub fn refused(p: &Principal, what: &str, e: &AuthError) {
    tracing::warn!(
        target: TARGET,
        event = "forbidden",
        principal = p.id(),
        what,
        "request refused: {e}"
    );
}

/// An admin change took effect.
pub fn admin_change(p: &Principal, change: &str, r: Resource<'_>) {
    tracing::info!(
        target: TARGET,
        event = "admin",
        principal = p.id(),
        change,
        resource = %r,
        "admin change"
    );
}

/// A subscription (topic → queue) was created, changed or removed.
pub fn subscription_change(p: &Principal, change: &str, topic: &str, queue: &str) {
    tracing::info!(
        target: TARGET,
        event = "admin",
        principal = p.id(),
        change,
        topic,
        queue,
        "admin change"
    );
}
