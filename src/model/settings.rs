//! The settings users declare for queues and topics, their defaults and ranges
//! (the contract's table), and the merge rule for `PUT` of an existing queue:
//! omitted fields keep their values, `null` clears an optional setting.

use serde::{Deserialize, Deserializer, Serialize};

use super::names::QueueName;
use super::time::Millis;

/// Why settings were refused (the API answers 400 `InvalidSetting`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(pub String);

fn check_range(field: &str, v: u64, lo: u64, hi: u64) -> Result<(), SettingsError> {
    if v < lo || v > hi {
        return Err(SettingsError(format!(
            "{field} is {v}; it must be between {lo} and {hi}"
        )));
    }
    Ok(())
}

/// Where a queue's repeatedly failing messages go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterSettings {
    pub queue: QueueName,
    pub max_receives: u32,
}

/// Exponential wait before a redelivery: `min(max, initial * 2^(receives-1))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryBackoff {
    pub initial_seconds: u32,
    pub max_seconds: u32,
}

impl RetryBackoff {
    /// The wait before redelivering a message that has been received
    /// `receive_count` times.
    pub fn delay_ms(&self, receive_count: u32) -> Millis {
        let exp = receive_count.saturating_sub(1).min(40);
        let secs = u64::from(self.initial_seconds).saturating_mul(1u64 << exp);
        secs.min(u64::from(self.max_seconds)) * 1000
    }
}

/// A queue's effective settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueSettings {
    pub fifo: bool,
    pub content_based_dedup: bool,
    pub dedup_window_seconds: u32,
    pub delay_seconds: u32,
    pub visibility_timeout_seconds: u32,
    pub retention_seconds: u32,
    pub max_message_bytes: u32,
    pub receive_wait_seconds: u32,
    pub dead_letter: Option<DeadLetterSettings>,
    pub retry_backoff: Option<RetryBackoff>,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            fifo: false,
            content_based_dedup: false,
            dedup_window_seconds: 300,
            delay_seconds: 0,
            visibility_timeout_seconds: 30,
            retention_seconds: 345_600,
            max_message_bytes: 1_048_576,
            receive_wait_seconds: 0,
            dead_letter: None,
            retry_backoff: None,
        }
    }
}

/// Longest visibility timeout (and visibility change) in seconds: 12 hours.
pub const MAX_VISIBILITY_SECONDS: u32 = 43_200;
/// Longest per-message or queue delay in seconds.
pub const MAX_DELAY_SECONDS: u32 = 900;
/// Longest long-poll wait in seconds.
pub const MAX_WAIT_SECONDS: u32 = 20;

impl QueueSettings {
    /// Checks every range of the contract. Cross-queue rules (the DLQ exists,
    /// is FIFO when this is, no loops) are the hub's to check.
    pub fn validate(&self) -> Result<(), SettingsError> {
        check_range(
            "dedup_window_seconds",
            self.dedup_window_seconds.into(),
            60,
            86_400,
        )?;
        check_range(
            "delay_seconds",
            self.delay_seconds.into(),
            0,
            MAX_DELAY_SECONDS.into(),
        )?;
        check_range(
            "visibility_timeout_seconds",
            self.visibility_timeout_seconds.into(),
            0,
            MAX_VISIBILITY_SECONDS.into(),
        )?;
        check_range(
            "retention_seconds",
            self.retention_seconds.into(),
            60,
            1_209_600,
        )?;
        check_range(
            "max_message_bytes",
            self.max_message_bytes.into(),
            1024,
            1_048_576,
        )?;
        check_range(
            "receive_wait_seconds",
            self.receive_wait_seconds.into(),
            0,
            MAX_WAIT_SECONDS.into(),
        )?;
        if self.content_based_dedup && !self.fifo {
            return Err(SettingsError(
                "content_based_dedup is only for FIFO queues".into(),
            ));
        }
        if let Some(dl) = &self.dead_letter {
            check_range("dead_letter.max_receives", dl.max_receives.into(), 1, 1000)?;
        }
        if let Some(b) = &self.retry_backoff {
            check_range(
                "retry_backoff.initial_seconds",
                b.initial_seconds.into(),
                1,
                MAX_VISIBILITY_SECONDS.into(),
            )?;
            check_range(
                "retry_backoff.max_seconds",
                b.max_seconds.into(),
                b.initial_seconds.into(),
                MAX_VISIBILITY_SECONDS.into(),
            )?;
        }
        Ok(())
    }

    pub fn visibility_ms(&self) -> Millis {
        u64::from(self.visibility_timeout_seconds) * 1000
    }

    pub fn delay_ms(&self) -> Millis {
        u64::from(self.delay_seconds) * 1000
    }

    pub fn retention_ms(&self) -> Millis {
        u64::from(self.retention_seconds) * 1000
    }

    pub fn dedup_window_ms(&self) -> Millis {
        u64::from(self.dedup_window_seconds) * 1000
    }
}

/// Distinguishes "absent" (outer `None`) from "null" (`Some(None)`).
fn double_option<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// The body of `PUT /v1/queues/{queue}` and a queue entry in `pubq.toml`: every
/// field optional. Applied to the defaults for a new queue, to the current
/// settings for an existing one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSettingsPatch {
    pub fifo: Option<bool>,
    pub content_based_dedup: Option<bool>,
    pub dedup_window_seconds: Option<u32>,
    pub delay_seconds: Option<u32>,
    pub visibility_timeout_seconds: Option<u32>,
    pub retention_seconds: Option<u32>,
    pub max_message_bytes: Option<u32>,
    pub receive_wait_seconds: Option<u32>,
    #[serde(default, deserialize_with = "double_option")]
    pub dead_letter: Option<Option<DeadLetterSettings>>,
    #[serde(default, deserialize_with = "double_option")]
    pub retry_backoff: Option<Option<RetryBackoff>>,
}

impl QueueSettingsPatch {
    /// `base` with every given field replaced. `fifo` is copied too; the hub
    /// refuses a change of it on an existing queue.
    pub fn apply(&self, base: &QueueSettings) -> QueueSettings {
        let mut s = base.clone();
        if let Some(v) = self.fifo {
            s.fifo = v;
        }
        if let Some(v) = self.content_based_dedup {
            s.content_based_dedup = v;
        }
        if let Some(v) = self.dedup_window_seconds {
            s.dedup_window_seconds = v;
        }
        if let Some(v) = self.delay_seconds {
            s.delay_seconds = v;
        }
        if let Some(v) = self.visibility_timeout_seconds {
            s.visibility_timeout_seconds = v;
        }
        if let Some(v) = self.retention_seconds {
            s.retention_seconds = v;
        }
        if let Some(v) = self.max_message_bytes {
            s.max_message_bytes = v;
        }
        if let Some(v) = self.receive_wait_seconds {
            s.receive_wait_seconds = v;
        }
        if let Some(v) = &self.dead_letter {
            s.dead_letter = v.clone();
        }
        if let Some(v) = &self.retry_backoff {
            s.retry_backoff = *v;
        }
        s
    }
}

/// A topic's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicSettings {
    pub fifo: bool,
    pub content_based_dedup: bool,
    pub dedup_window_seconds: u32,
}

impl Default for TopicSettings {
    fn default() -> Self {
        Self {
            fifo: false,
            content_based_dedup: false,
            dedup_window_seconds: 300,
        }
    }
}

impl TopicSettings {
    pub fn validate(&self) -> Result<(), SettingsError> {
        check_range(
            "dedup_window_seconds",
            self.dedup_window_seconds.into(),
            60,
            86_400,
        )?;
        if self.content_based_dedup && !self.fifo {
            return Err(SettingsError(
                "content_based_dedup is only for FIFO topics".into(),
            ));
        }
        Ok(())
    }
}

/// The body of `PUT /v1/topics/{topic}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSettingsPatch {
    pub fifo: Option<bool>,
    pub content_based_dedup: Option<bool>,
    pub dedup_window_seconds: Option<u32>,
}

impl TopicSettingsPatch {
    pub fn apply(&self, base: &TopicSettings) -> TopicSettings {
        let mut s = base.clone();
        if let Some(v) = self.fifo {
            s.fifo = v;
        }
        if let Some(v) = self.content_based_dedup {
            s.content_based_dedup = v;
        }
        if let Some(v) = self.dedup_window_seconds {
            s.dedup_window_seconds = v;
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_contract() {
        let s = QueueSettings::default();
        assert!(s.validate().is_ok());
        assert_eq!(s.visibility_timeout_seconds, 30);
        assert_eq!(s.retention_seconds, 345_600);
    }

    #[test]
    fn out_of_range_settings_are_refused() {
        let bad = [
            r#"{"delay_seconds": 901}"#,
            r#"{"visibility_timeout_seconds": 43201}"#,
            r#"{"retention_seconds": 59}"#,
            r#"{"max_message_bytes": 1023}"#,
            r#"{"receive_wait_seconds": 21}"#,
            r#"{"dedup_window_seconds": 59}"#,
            r#"{"dead_letter": {"queue": "d", "max_receives": 0}}"#,
            r#"{"retry_backoff": {"initial_seconds": 10, "max_seconds": 5}}"#,
            r#"{"content_based_dedup": true}"#,
        ];
        for b in bad {
            let p: QueueSettingsPatch = serde_json::from_str(b).expect(b);
            assert!(
                p.apply(&QueueSettings::default()).validate().is_err(),
                "{b}"
            );
        }
    }

    #[test]
    fn patch_merges_and_null_clears() {
        let p: QueueSettingsPatch =
            serde_json::from_str(r#"{"dead_letter": {"queue": "d", "max_receives": 3}}"#)
                .expect("valid");
        let s = p.apply(&QueueSettings::default());
        assert_eq!(s.dead_letter.as_ref().map(|d| d.max_receives), Some(3));
        let keep: QueueSettingsPatch =
            serde_json::from_str(r#"{"delay_seconds": 5}"#).expect("valid");
        let s2 = keep.apply(&s);
        assert!(s2.dead_letter.is_some());
        assert_eq!(s2.delay_seconds, 5);
        let clear: QueueSettingsPatch =
            serde_json::from_str(r#"{"dead_letter": null}"#).expect("valid");
        assert!(clear.apply(&s2).dead_letter.is_none());
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(serde_json::from_str::<QueueSettingsPatch>(r#"{"delay": 5}"#).is_err());
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let b = RetryBackoff {
            initial_seconds: 2,
            max_seconds: 10,
        };
        assert_eq!(b.delay_ms(1), 2000);
        assert_eq!(b.delay_ms(2), 4000);
        assert_eq!(b.delay_ms(3), 8000);
        assert_eq!(b.delay_ms(4), 10_000);
        assert_eq!(b.delay_ms(1000), 10_000);
    }
}
