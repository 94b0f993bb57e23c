//! Filter policies of subscriptions (SNS style): attribute- or body-scoped.
//! PLACEHOLDER: interface only; to be implemented.

use crate::model::Attributes;

/// Why a policy was refused (the API answers 400 `InvalidSetting`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FilterError(pub String);

/// A compiled filter policy.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterPolicy {}

impl FilterPolicy {
    /// Compiles a policy from its JSON form.
    pub fn parse(_v: &serde_json::Value) -> Result<Self, FilterError> {
        Ok(Self {})
    }

    /// Whether the policy matches on the JSON body (`"scope": "body"`).
    pub fn needs_body(&self) -> bool {
        false
    }

    /// Whether a message matches. `body` is the body parsed as JSON, given
    /// when `needs_body()` and the body is JSON; `None` otherwise.
    pub fn matches(&self, _attributes: &Attributes, _body: Option<&serde_json::Value>) -> bool {
        true
    }
}
