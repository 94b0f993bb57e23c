//! Receipts without a lookup table: a receipt names (queue incarnation, message
//! sequence, lease number). The message keeps its current lease number (its
//! receive count), so equal is valid, lower is stale, and anything else is
//! invalid. Signing and the text form belong to the API layer.

/// One receive of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Receipt {
    /// The queue incarnation that issued it (a recreated queue has a new one).
    pub queue_uid: u64,
    /// The message's sequence number in that queue.
    pub seq: u64,
    /// The receive count at the time of that receive.
    pub lease: u32,
}

/// Why a receipt was not honoured (per entry, inside a 200 answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// The message was received again since (or is gone, for nack/visibility).
    #[error("the message was received again since this receipt was issued, or is gone")]
    Stale,
    /// Not a receipt of this queue.
    #[error("not a receipt of this queue")]
    Invalid,
}
