//! The hub's error type. Each variant corresponds to one error code of the
//! contract; `api::error` is the one place that maps them to HTTP statuses.

use crate::model::{NameError, QueueName, SettingsError, TopicName};

/// Why a hub operation was refused. Nothing is changed when one is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    #[error("topic {0} does not exist")]
    TopicNotFound(TopicName),
    #[error("queue {0} does not exist")]
    QueueNotFound(QueueName),
    #[error("queue {queue} is not subscribed to topic {topic}")]
    SubscriptionNotFound { topic: TopicName, queue: QueueName },
    #[error("{0}")]
    QueueExists(String),
    #[error("{0}")]
    TopicExists(String),
    #[error("{0}")]
    QueueInUse(String),
    #[error("{0}")]
    InvalidSetting(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    BatchTooLarge(String),
    #[error("invalid name: {0}")]
    InvalidName(#[from] NameError),
    #[error("message is {size} bytes; {} takes at most {max}", queue.as_ref().map_or("a message".to_string(), |q| format!("queue {q}")))]
    MessageTooLarge {
        size: usize,
        max: usize,
        queue: Option<QueueName>,
    },
    #[error("queue {0} is not the dead-letter queue of any queue")]
    NotADeadLetterQueue(QueueName),
    #[error("{0}")]
    LimitExceeded(String),
    #[error("{0}")]
    Throttled(String),
    #[error("the resume token is unknown or its window has passed; messages may have been missed")]
    ResumeExpired,
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("storage failed: {0}")]
    Storage(String),
}

impl From<crate::storage::StorageError> for HubError {
    fn from(e: crate::storage::StorageError) -> Self {
        HubError::Storage(e.to_string())
    }
}

impl From<SettingsError> for HubError {
    fn from(e: SettingsError) -> Self {
        HubError::InvalidSetting(e.0)
    }
}
