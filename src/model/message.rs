//! A published message: immutable once accepted, shared by every queue it fans
//! out to (one allocation per publish, not per copy).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use rand::Rng;

use super::names::TopicName;
use super::time::Millis;

/// Attribute map. Keys and values are strings (the contract's rule); sorted so
/// output is stable.
pub type Attributes = BTreeMap<String, String>;

/// How the body string is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyEncoding {
    /// The body is the text itself.
    #[default]
    Text,
    /// The body is standard base64 of binary data (kept as sent, decoded only
    /// where the bytes matter: size, content dedup).
    Base64,
}

/// A message id: 128 bits, shown as 32 lowercase hex digits. The high 48 bits
/// are the creation time in ms, so ids sort roughly by time; the rest is a
/// per-process random prefix and a counter, so ids never repeat within a run and
/// are unlikely to collide across runs.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub u128);

impl MessageId {
    /// A fresh id for a message accepted at `now`.
    pub fn generate(now: Millis) -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::sync::OnceLock;
        static PREFIX: OnceLock<u64> = OnceLock::new();
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let prefix = *PREFIX.get_or_init(|| rand::thread_rng().gen::<u64>() & 0xFFFF);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let v =
            (u128::from(now & 0xFFFF_FFFF_FFFF) << 80) | (u128::from(prefix) << 64) | u128::from(n);
        Self(v)
    }

    /// Parses the 32-hex-digit form.
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() != 32 {
            return None;
        }
        u128::from_str_radix(s, 16).ok().map(Self)
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({self})")
    }
}

/// The immutable part of a message, shared by all of its copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageData {
    pub id: MessageId,
    /// The body exactly as the client sent it (text, or base64 text).
    pub body: String,
    pub body_encoding: BodyEncoding,
    pub attributes: Attributes,
    /// FIFO group as published; a standard queue ignores it.
    pub group_id: Option<Arc<str>>,
    /// Deduplication id as published or derived from the content.
    pub dedup_id: Option<Arc<str>>,
    /// The topic it was published to, if any.
    pub topic: Option<TopicName>,
    /// End-of-work marker.
    pub poison: bool,
    /// When the hub accepted it.
    pub sent_at: Millis,
    /// Decoded body bytes plus attribute keys and values: what size limits count.
    pub size: usize,
    /// The delivery time a standard message asked for (`delay_seconds` or
    /// `deliver_at`); `None` applies each queue's own delay.
    pub visible_at: Option<Millis>,
}

impl MessageData {
    /// The size the contract counts: decoded body plus attribute keys and values.
    pub fn compute_size(decoded_body_len: usize, attributes: &Attributes) -> usize {
        decoded_body_len
            + attributes
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_round_trip() {
        let a = MessageId::generate(1_700_000_000_000);
        let b = MessageId::generate(1_700_000_000_000);
        assert_ne!(a, b);
        assert_eq!(MessageId::parse(&a.to_string()), Some(a));
        assert_eq!(MessageId::parse("xyz"), None);
    }

    #[test]
    fn size_counts_body_and_attributes() {
        let mut attrs = Attributes::new();
        attrs.insert("ab".into(), "cde".into());
        assert_eq!(MessageData::compute_size(10, &attrs), 15);
    }
}
