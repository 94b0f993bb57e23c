//! Filter policies (a subscription body, a WebSocket `subscribe`, a
//! `pubq.toml` subscription): compiling any JSON, and matching a compiled
//! policy against any message.

use serde_json::Value;

use crate::hub::filter::FilterPolicy;
use crate::model::Attributes;

/// Compiles `v`, then compiles it again from the text the hub stores it as
/// (the log, snapshots, a describe), as recovery does: both must give the
/// same policy, or a restart would change which messages a queue gets.
pub(super) fn compiles_again(v: &Value) -> Option<FilterPolicy> {
    let policy = FilterPolicy::parse(v).ok()?;
    let stored = v.to_string();
    let back: Value = serde_json::from_str(&stored).expect("a stored policy is JSON");
    let again = FilterPolicy::parse(&back).expect("a stored policy compiles again");
    assert_eq!(policy, again, "policy {stored}");
    Some(policy)
}

/// `filter_policy`: three parts split by NUL bytes (JSON text has none):
/// the policy, the message's attributes as a JSON object of strings (else
/// none), and its body. Compiling never panics and gives the same policy
/// from its stored text; matching never panics.
pub fn filter_policy(data: &[u8]) -> bool {
    let mut parts = data.splitn(3, |b| *b == 0);
    let policy = parts.next().unwrap_or_default();
    let attributes = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    let Ok(v) = serde_json::from_slice::<Value>(policy) else {
        return false;
    };
    let Some(compiled) = compiles_again(&v) else {
        return false;
    };
    let attributes: Attributes = serde_json::from_slice(attributes).unwrap_or_default();
    let body = String::from_utf8_lossy(body);
    // As the publish path does: the body is parsed only for a body policy,
    // and a body that is not JSON is `None`.
    let json = compiled
        .needs_body()
        .then(|| serde_json::from_str::<Value>(&body).ok())
        .flatten();
    for body in [json.as_ref(), None] {
        compiled.matches(&attributes, body);
    }
    true
}
