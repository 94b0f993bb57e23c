//! Topic and queue names: `[A-Za-z0-9_.-]{1,80}`, validated on construction so an
//! invalid name cannot exist anywhere past the edge of the server.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest name the contract allows.
pub const MAX_NAME_LEN: usize = 80;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("name is empty")]
    Empty,
    #[error("name is {0} characters long; at most 80 are allowed")]
    TooLong(usize),
    #[error("name contains {0:?}; only A-Z, a-z, 0-9, '_', '.' and '-' are allowed")]
    BadChar(char),
}

fn validate(s: &str) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty);
    }
    let len = s.chars().count();
    if len > MAX_NAME_LEN {
        return Err(NameError::TooLong(len));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(NameError::BadChar(c));
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Validates `s` and wraps it.
            pub fn new(s: &str) -> Result<Self, NameError> {
                validate(s)?;
                Ok(Self(Arc::from(s)))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", &*self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::new(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_type!(
    /// The name of a topic (its own namespace, apart from queues).
    TopicName
);
name_type!(
    /// The name of a queue.
    QueueName
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_contract_alphabet() {
        assert!(QueueName::new("Orders_v2.eu-west").is_ok());
        assert!(QueueName::new(&"a".repeat(80)).is_ok());
    }

    #[test]
    fn refuses_empty_long_and_bad_characters() {
        assert_eq!(QueueName::new(""), Err(NameError::Empty));
        assert_eq!(QueueName::new(&"a".repeat(81)), Err(NameError::TooLong(81)));
        assert_eq!(TopicName::new("a/b"), Err(NameError::BadChar('/')));
        assert_eq!(TopicName::new("é"), Err(NameError::BadChar('é')));
        assert_eq!(TopicName::new("a b"), Err(NameError::BadChar(' ')));
    }
}
