//! A deduplication window: dedup id -> the first message's id, until the window
//! passes. Entries outlive their messages (as in SQS), so a duplicate sent after
//! the first copy was acked is still recognised.

use std::collections::VecDeque;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::model::{MessageId, Millis};

/// Dedup ids seen within the window, with expiry in arrival order.
#[derive(Debug, Default, Clone)]
pub struct DedupWindow {
    seen: FxHashMap<Arc<str>, (MessageId, Millis)>,
    /// (expires_at, id) in insertion order. Expiry is monotone while the window
    /// setting is unchanged; after a change, lookups still compare `expires_at`,
    /// so a late prune costs memory only, never correctness.
    order: VecDeque<(Millis, Arc<str>)>,
}

impl DedupWindow {
    /// The first message's id if `key` was seen and has not expired.
    pub fn lookup(&self, key: &str, now: Millis) -> Option<MessageId> {
        match self.seen.get(key) {
            Some((id, exp)) if *exp > now => Some(*id),
            _ => None,
        }
    }

    /// Records `key` for `window_ms` from `now`.
    pub fn insert(&mut self, key: Arc<str>, id: MessageId, now: Millis, window_ms: Millis) {
        let exp = now.saturating_add(window_ms);
        self.seen.insert(key.clone(), (id, exp));
        self.order.push_back((exp, key));
    }

    /// Drops expired entries.
    pub fn expire(&mut self, now: Millis) {
        while let Some((exp, _)) = self.order.front() {
            if *exp > now {
                break;
            }
            let Some((exp, key)) = self.order.pop_front() else {
                break;
            };
            if matches!(self.seen.get(&key), Some((_, e)) if *e == exp) {
                self.seen.remove(&key);
            }
        }
    }

    /// The earliest time an entry expires, if any.
    pub fn next_expiry(&self) -> Option<Millis> {
        self.order.front().map(|(e, _)| *e)
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Every live entry: (key, first id, expires_at); for checkpoints and tests.
    pub fn entries(&self) -> impl Iterator<Item = (&Arc<str>, MessageId, Millis)> {
        self.seen.iter().map(|(k, (id, e))| (k, *id, *e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_within_window_returns_first_id_and_expires_after() {
        let mut d = DedupWindow::default();
        let id = MessageId(7);
        d.insert(Arc::from("k"), id, 1000, 300_000);
        assert_eq!(d.lookup("k", 1000), Some(id));
        assert_eq!(d.lookup("k", 300_999), Some(id));
        assert_eq!(d.lookup("k", 301_000), None);
        d.expire(301_000);
        assert!(d.is_empty());
    }
}
