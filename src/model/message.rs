//! A published message: immutable once accepted, shared by every queue it fans
//! out to (one allocation per publish, not per copy).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
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

    /// The 32 lowercase hex digits, without going through `fmt` (ids are
    /// written into every delivered copy).
    pub fn hex(&self) -> [u8; 32] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 32];
        for (i, b) in self.0.to_be_bytes().iter().enumerate() {
            out[2 * i] = DIGITS[usize::from(b >> 4)];
            out[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
        }
        out
    }

    /// Appends the 32-hex-digit form to `out`.
    pub fn write_to(&self, out: &mut String) {
        let hex = self.hex();
        // Hex digits are ASCII.
        out.push_str(std::str::from_utf8(&hex).unwrap_or_default());
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::str::from_utf8(&self.hex()).unwrap_or_default())
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
    /// Where the log wrote it, once written (set by the log writer).
    pub loc: LocCell,
    /// How many queue copies share it (set at publish; 1 otherwise): each
    /// copy counts its share of the memory it holds.
    pub copies: u32,
}

/// Where a message is on disk: a log segment and the offset of the record
/// (a `Publish` frame) holding it. Packed into 64 bits: 28 bits of segment
/// id, 36 bits of offset (segments are far smaller than 64 GiB).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BodyLoc(u64);

impl BodyLoc {
    const OFFSET_BITS: u32 = 36;
    const OFFSET_MASK: u64 = (1 << Self::OFFSET_BITS) - 1;
    /// Largest segment id a location can name.
    pub const MAX_SEGMENT: u64 = (1 << (64 - Self::OFFSET_BITS)) - 1;

    /// `None` when the segment id or offset does not fit (the message then
    /// simply stays in memory). Segment 0 is never used, so 0 means "none".
    pub fn new(segment: u64, offset: u64) -> Option<Self> {
        if segment == 0 || segment > Self::MAX_SEGMENT || offset > Self::OFFSET_MASK {
            return None;
        }
        Some(Self((segment << Self::OFFSET_BITS) | offset))
    }

    pub fn segment(self) -> u64 {
        self.0 >> Self::OFFSET_BITS
    }

    pub fn offset(self) -> u64 {
        self.0 & Self::OFFSET_MASK
    }

    pub fn to_bits(self) -> u64 {
        self.0
    }

    /// The inverse of [`to_bits`](Self::to_bits); `None` for 0.
    pub fn from_bits(v: u64) -> Option<Self> {
        (v >> Self::OFFSET_BITS != 0).then_some(Self(v))
    }
}

impl fmt::Debug for BodyLoc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BodyLoc({}:{})", self.segment(), self.offset())
    }
}

/// A message's disk location, filled in once by the log writer after the
/// record is written. Not part of the message's value: equality ignores it
/// and a clone copies what is known.
#[derive(Default)]
pub struct LocCell(AtomicU64);

impl LocCell {
    pub fn get(&self) -> Option<BodyLoc> {
        BodyLoc::from_bits(self.0.load(Ordering::Acquire))
    }

    pub fn set(&self, loc: BodyLoc) {
        self.0.store(loc.to_bits(), Ordering::Release);
    }
}

impl Clone for LocCell {
    fn clone(&self) -> Self {
        Self(AtomicU64::new(self.0.load(Ordering::Acquire)))
    }
}

impl PartialEq for LocCell {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for LocCell {}

impl fmt::Debug for LocCell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.get())
    }
}

/// A queue's hold on a message: the message itself, or where to read it.
/// Durable queues keep only the location of messages that are not about to
/// be delivered, so a backlog costs a few dozen bytes per message in memory.
#[derive(Debug, Clone)]
pub enum MsgRef {
    Mem(Arc<MessageData>),
    Disk(BodyLoc),
}

impl MsgRef {
    /// The in-memory message, if held.
    pub fn mem(&self) -> Option<&Arc<MessageData>> {
        match self {
            MsgRef::Mem(m) => Some(m),
            MsgRef::Disk(_) => None,
        }
    }

    /// Where the message is on disk, if known.
    pub fn loc(&self) -> Option<BodyLoc> {
        match self {
            MsgRef::Mem(m) => m.loc.get(),
            MsgRef::Disk(l) => Some(*l),
        }
    }

    /// Bytes this reference keeps in memory (an estimate: body, attributes
    /// and a fixed overhead), 0 for a disk reference.
    pub fn resident_bytes(&self) -> u64 {
        match self {
            MsgRef::Mem(m) => m.resident_bytes(),
            MsgRef::Disk(_) => 0,
        }
    }
}

impl From<Arc<MessageData>> for MsgRef {
    fn from(m: Arc<MessageData>) -> Self {
        MsgRef::Mem(m)
    }
}

impl MessageData {
    /// A copy to be written again under a new record (a move to another
    /// queue): it learns its new location when that record is written.
    pub fn relocated(&self) -> Arc<Self> {
        let mut m = self.clone();
        m.loc = LocCell::default();
        m.copies = 1;
        Arc::new(m)
    }

    /// Bytes this message holds in memory (estimate).
    pub fn resident_bytes(&self) -> u64 {
        let all = (std::mem::size_of::<Self>() + 64 + self.body.len() + self.size) as u64;
        all / u64::from(self.copies.max(1))
    }

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
        for v in [0u128, 1, 0xdead_beef, u128::MAX, a.0] {
            let id = MessageId(v);
            assert_eq!(id.to_string(), format!("{v:032x}"));
            let mut s = String::from("x");
            id.write_to(&mut s);
            assert_eq!(s, format!("x{v:032x}"));
        }
    }

    #[test]
    fn size_counts_body_and_attributes() {
        let mut attrs = Attributes::new();
        attrs.insert("ab".into(), "cde".into());
        assert_eq!(MessageData::compute_size(10, &attrs), 15);
    }
}
