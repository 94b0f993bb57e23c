//! The vocabulary every layer shares: validated names, message ids, the message
//! itself, the settings users declare, and time as plain milliseconds.
//!
//! Nothing here does IO or knows of tokio or HTTP. Settings derive serde because
//! they are what users write (in `pubq.toml` and in request bodies) and read back.

pub mod message;
pub mod names;
pub mod settings;
pub mod time;

pub use message::{Attributes, BodyEncoding, BodyLoc, LocCell, MessageData, MessageId, MsgRef};
pub use names::{NameError, QueueName, TopicName};
pub use settings::{
    DeadLetterSettings, QueueSettings, QueueSettingsPatch, RetryBackoff, SettingsError,
    TopicSettings, TopicSettingsPatch, MAX_DELAY_SECONDS, MAX_VISIBILITY_SECONDS, MAX_WAIT_SECONDS,
};
pub use time::{Clock, ManualClock, Millis, SystemClock};
