//! Log records and their binary encoding.
//!
//! Frame: `len: u32 LE` (of type + payload), `crc32c: u32 LE` (of type +
//! payload), `type: u8`, payload. Integers are little endian; strings and
//! byte strings are `u32` length + bytes; options are a `u8` tag (0/1) then
//! the value. Decoding checks every length against what is left, so a torn or
//! corrupt frame is an error, never a panic or an over-read.
//!
//! With a [`Keyring`], records that hold user data (`Publish`, `Dedup`, a
//! `Stored` with a group id) are written as a `Sealed` frame: the record's
//! type and payload encrypted with the active key, under a header naming the
//! key id and the nonce. The checksum covers the sealed bytes, so a torn or
//! flipped frame is still told by its CRC; an intact frame that does not
//! decrypt is a key problem ([`DecodeError::is_key_problem`]), never a torn
//! tail. [`encode`] and [`decode`] are the keyless forms (a sealed frame then
//! decodes to [`DecodeError::UnknownKey`]).

use std::sync::Arc;

use zeroize::Zeroize;

use super::crypt::{self, Keyring, OpenError, NONCE_BYTES, TAG_BYTES};
use crate::model::{
    Attributes, BodyEncoding, BodyLoc, MessageData, MessageId, Millis, QueueName, QueueSettings,
    TopicName, TopicSettings,
};

/// Largest frame accepted when decoding (a body is at most 1 MiB plus
/// attributes; snapshots hold one message per record).
pub const MAX_FRAME: usize = 8 * 1024 * 1024;
/// Bytes before the payload: length and checksum.
pub const FRAME_HEADER: usize = 8;

/// One copy of a message in one queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyRec {
    pub queue_uid: u64,
    pub seq: u64,
    pub receive_count: u32,
    pub enqueued_at: Millis,
    /// When it becomes visible, if later than `enqueued_at`.
    pub visible_at: Option<Millis>,
    pub dead_letter_source: Option<QueueName>,
}

/// Everything the log records. Replay is order-independent for message
/// records (see `recovery`), so records of different queues may interleave
/// freely.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    TopicPut {
        name: TopicName,
        settings: TopicSettings,
    },
    TopicDelete {
        name: TopicName,
    },
    QueuePut {
        name: QueueName,
        uid: u64,
        settings: QueueSettings,
        temporary: bool,
    },
    QueueDelete {
        name: QueueName,
        uid: u64,
    },
    Subscribe {
        topic: TopicName,
        queue: QueueName,
        filter_json: Option<String>,
    },
    Unsubscribe {
        topic: TopicName,
        queue: QueueName,
    },
    /// A message body, written once, with every queue copy it went to.
    Publish {
        message: Arc<MessageData>,
        copies: Vec<CopyRec>,
    },
    /// Messages gone from a queue (acked, moved, redriven).
    Delete {
        queue_uid: u64,
        seqs: Vec<u64>,
    },
    /// Receive counts, durable before the messages are handed out.
    Received {
        queue_uid: u64,
        /// (seq, receive count, first received at)
        entries: Vec<(u64, u32, Millis)>,
    },
    /// Every message with a sequence number below `below_seq` is gone.
    Purge {
        queue_uid: u64,
        below_seq: u64,
    },
    /// Snapshot only: a queue's next sequence number when captured.
    QueueSeq {
        queue_uid: u64,
        next_seq: u64,
    },
    /// Snapshot only: a dedup window entry of a queue (`queue_uid` != 0) or
    /// of a topic (`topic` set).
    Dedup {
        queue_uid: u64,
        topic: Option<TopicName>,
        key: String,
        id: MessageId,
        expires_at: Millis,
    },
    /// Snapshot only: the last record, with the number before it.
    SnapshotEnd {
        records: u64,
    },
    /// Snapshot only: one message copy whose message is in a `Publish`
    /// frame of a log segment (`loc`) the snapshot keeps. A deep backlog is
    /// checkpointed as these (tens of bytes each), never as bodies.
    Stored(StoredRec),
}

/// See [`Record::Stored`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRec {
    pub queue_uid: u64,
    pub seq: u64,
    pub loc: BodyLoc,
    pub receive_count: u32,
    pub first_received_at: Option<Millis>,
    pub enqueued_at: Millis,
    pub visible_at: Option<Millis>,
    pub group_id: Option<Arc<str>>,
    pub dead_letter_source: Option<QueueName>,
}

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("frame is truncated")]
    Truncated,
    #[error("frame checksum mismatch")]
    Checksum,
    #[error("frame length {0} is out of range")]
    Length(usize),
    #[error("unknown record type {0}")]
    UnknownType(u8),
    #[error("malformed record: {0}")]
    Malformed(&'static str),
    /// An intact sealed record names a key id no configured key has.
    #[error("record is encrypted with key id {0}, which is not configured")]
    UnknownKey(String),
    /// An intact sealed record does not decrypt with the key of its id.
    #[error(
        "record encrypted with key id {0} does not decrypt: wrong key, or the record was altered"
    )]
    WrongKey(String),
}

impl DecodeError {
    /// An intact frame that cannot be read without the right key: the data
    /// is there, so this must stop the server, never be cut off as a torn
    /// tail.
    pub fn is_key_problem(&self) -> bool {
        matches!(self, DecodeError::UnknownKey(_) | DecodeError::WrongKey(_))
    }
}

mod tag {
    pub const TOPIC_PUT: u8 = 1;
    pub const TOPIC_DELETE: u8 = 2;
    pub const QUEUE_PUT: u8 = 3;
    pub const QUEUE_DELETE: u8 = 4;
    pub const SUBSCRIBE: u8 = 5;
    pub const UNSUBSCRIBE: u8 = 6;
    pub const PUBLISH: u8 = 7;
    pub const DELETE: u8 = 8;
    pub const RECEIVED: u8 = 9;
    pub const PURGE: u8 = 10;
    pub const QUEUE_SEQ: u8 = 11;
    pub const DEDUP: u8 = 12;
    pub const SNAPSHOT_END: u8 = 13;
    pub const STORED: u8 = 14;
    pub const SEALED: u8 = 15;
}

// ---- encoding ----

struct Enc<'a>(&'a mut Vec<u8>);

impl Enc<'_> {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u128(&mut self, v: u128) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bool(&mut self, v: bool) {
        self.u8(u8::from(v));
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    fn opt_u64(&mut self, v: Option<u64>) {
        match v {
            Some(x) => {
                self.u8(1);
                self.u64(x);
            }
            None => self.u8(0),
        }
    }
    fn opt_str(&mut self, v: Option<&str>) {
        match v {
            Some(x) => {
                self.u8(1);
                self.str(x);
            }
            None => self.u8(0),
        }
    }
}

fn encode_queue_settings(e: &mut Enc<'_>, s: &QueueSettings) {
    e.bool(s.fifo);
    e.bool(s.content_based_dedup);
    e.u32(s.dedup_window_seconds);
    e.u32(s.delay_seconds);
    e.u32(s.visibility_timeout_seconds);
    e.u32(s.retention_seconds);
    e.u32(s.max_message_bytes);
    e.u32(s.receive_wait_seconds);
    match &s.dead_letter {
        Some(d) => {
            e.u8(1);
            e.str(d.queue.as_str());
            e.u32(d.max_receives);
        }
        None => e.u8(0),
    }
    match &s.retry_backoff {
        Some(b) => {
            e.u8(1);
            e.u32(b.initial_seconds);
            e.u32(b.max_seconds);
        }
        None => e.u8(0),
    }
}

/// Appends one framed record to `out`, in clear.
pub fn encode(rec: &Record, out: &mut Vec<u8>) {
    encode_with(rec, out, None);
}

/// Whether a record holds user data (message bodies, attributes, group and
/// dedup ids), so that it is sealed when a keyring is configured. Names,
/// settings, sequence numbers, counters and times are not.
pub fn holds_user_data(rec: &Record) -> bool {
    match rec {
        Record::Publish { .. } | Record::Dedup { .. } => true,
        Record::Stored(r) => r.group_id.is_some(),
        _ => false,
    }
}

/// Appends one framed record to `out`; with a keyring, a record that
/// [holds user data](holds_user_data) is sealed with its active key.
///
/// Sealed payload: `type: u8 = 15`, `key_id: str`, `nonce: [u8; 24]`, then
/// the record's own type and payload encrypted (same length), then the
/// 16-byte tag. The bytes before the ciphertext are the associated data.
pub fn encode_with(rec: &Record, out: &mut Vec<u8>, keys: Option<&Keyring>) {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER]);
    match keys.filter(|_| holds_user_data(rec)) {
        None => encode_body(rec, &mut Enc(out)),
        Some(ring) => {
            let nonce = crypt::random_nonce();
            let mut e = Enc(out);
            e.u8(tag::SEALED);
            e.str(ring.active_id().as_str());
            e.0.extend_from_slice(&nonce);
            let body = out.len();
            encode_body(rec, &mut Enc(out));
            let (aad, plain) =
                out[start + FRAME_HEADER..].split_at_mut(body - start - FRAME_HEADER);
            let tag = ring.seal(&nonce, aad, plain);
            out.extend_from_slice(&tag);
        }
    }
    let payload_len = out.len() - start - FRAME_HEADER;
    let crc = crc32c::crc32c(&out[start + FRAME_HEADER..]);
    out[start..start + 4].copy_from_slice(&(payload_len as u32).to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// A record's type and payload, without the frame header.
fn encode_body(rec: &Record, e: &mut Enc<'_>) {
    match rec {
        Record::TopicPut { name, settings } => {
            e.u8(tag::TOPIC_PUT);
            e.str(name.as_str());
            e.bool(settings.fifo);
            e.bool(settings.content_based_dedup);
            e.u32(settings.dedup_window_seconds);
        }
        Record::TopicDelete { name } => {
            e.u8(tag::TOPIC_DELETE);
            e.str(name.as_str());
        }
        Record::QueuePut {
            name,
            uid,
            settings,
            temporary,
        } => {
            e.u8(tag::QUEUE_PUT);
            e.str(name.as_str());
            e.u64(*uid);
            encode_queue_settings(e, settings);
            e.bool(*temporary);
        }
        Record::QueueDelete { name, uid } => {
            e.u8(tag::QUEUE_DELETE);
            e.str(name.as_str());
            e.u64(*uid);
        }
        Record::Subscribe {
            topic,
            queue,
            filter_json,
        } => {
            e.u8(tag::SUBSCRIBE);
            e.str(topic.as_str());
            e.str(queue.as_str());
            e.opt_str(filter_json.as_deref());
        }
        Record::Unsubscribe { topic, queue } => {
            e.u8(tag::UNSUBSCRIBE);
            e.str(topic.as_str());
            e.str(queue.as_str());
        }
        Record::Publish { message: m, copies } => {
            e.u8(tag::PUBLISH);
            e.u128(m.id.0);
            e.str(&m.body);
            e.u8(match m.body_encoding {
                BodyEncoding::Text => 0,
                BodyEncoding::Base64 => 1,
            });
            e.u32(m.attributes.len() as u32);
            for (k, v) in &m.attributes {
                e.str(k);
                e.str(v);
            }
            e.opt_str(m.group_id.as_deref());
            e.opt_str(m.dedup_id.as_deref());
            e.opt_str(m.topic.as_ref().map(|t| t.as_str()));
            e.bool(m.poison);
            e.u64(m.sent_at);
            e.u64(m.size as u64);
            e.opt_u64(m.visible_at);
            e.u32(copies.len() as u32);
            for c in copies {
                e.u64(c.queue_uid);
                e.u64(c.seq);
                e.u32(c.receive_count);
                e.u64(c.enqueued_at);
                e.opt_u64(c.visible_at);
                e.opt_str(c.dead_letter_source.as_ref().map(|q| q.as_str()));
            }
        }
        Record::Delete { queue_uid, seqs } => {
            e.u8(tag::DELETE);
            e.u64(*queue_uid);
            e.u32(seqs.len() as u32);
            for s in seqs {
                e.u64(*s);
            }
        }
        Record::Received { queue_uid, entries } => {
            e.u8(tag::RECEIVED);
            e.u64(*queue_uid);
            e.u32(entries.len() as u32);
            for (seq, count, first) in entries {
                e.u64(*seq);
                e.u32(*count);
                e.u64(*first);
            }
        }
        Record::Purge {
            queue_uid,
            below_seq,
        } => {
            e.u8(tag::PURGE);
            e.u64(*queue_uid);
            e.u64(*below_seq);
        }
        Record::QueueSeq {
            queue_uid,
            next_seq,
        } => {
            e.u8(tag::QUEUE_SEQ);
            e.u64(*queue_uid);
            e.u64(*next_seq);
        }
        Record::Dedup {
            queue_uid,
            topic,
            key,
            id,
            expires_at,
        } => {
            e.u8(tag::DEDUP);
            e.u64(*queue_uid);
            e.opt_str(topic.as_ref().map(|t| t.as_str()));
            e.str(key);
            e.u128(id.0);
            e.u64(*expires_at);
        }
        Record::SnapshotEnd { records } => {
            e.u8(tag::SNAPSHOT_END);
            e.u64(*records);
        }
        Record::Stored(r) => {
            e.u8(tag::STORED);
            e.u64(r.queue_uid);
            e.u64(r.seq);
            e.u64(r.loc.to_bits());
            e.u32(r.receive_count);
            e.opt_u64(r.first_received_at);
            e.u64(r.enqueued_at);
            e.opt_u64(r.visible_at);
            e.opt_str(r.group_id.as_deref());
            e.opt_str(r.dead_letter_source.as_ref().map(|q| q.as_str()));
        }
    }
}

// ---- decoding ----

struct Dec<'a> {
    buf: &'a [u8],
}

type DResult<T> = Result<T, DecodeError>;

impl<'a> Dec<'a> {
    fn take(&mut self, n: usize) -> DResult<&'a [u8]> {
        if self.buf.len() < n {
            return Err(DecodeError::Malformed("field runs past the record"));
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    fn arr<const N: usize>(&mut self) -> DResult<[u8; N]> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    fn u8(&mut self) -> DResult<u8> {
        Ok(self.arr::<1>()?[0])
    }
    fn u32(&mut self) -> DResult<u32> {
        Ok(u32::from_le_bytes(self.arr()?))
    }
    fn u64(&mut self) -> DResult<u64> {
        Ok(u64::from_le_bytes(self.arr()?))
    }
    fn u128(&mut self) -> DResult<u128> {
        Ok(u128::from_le_bytes(self.arr()?))
    }
    fn bool(&mut self) -> DResult<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Malformed("bad bool")),
        }
    }
    fn str(&mut self) -> DResult<String> {
        let n = self.u32()? as usize;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError::Malformed("string is not UTF-8"))
    }
    fn opt<T>(&mut self, f: impl FnOnce(&mut Self) -> DResult<T>) -> DResult<Option<T>> {
        match self.u8()? {
            0 => Ok(None),
            1 => f(self).map(Some),
            _ => Err(DecodeError::Malformed("bad option tag")),
        }
    }
    /// A count of items each at least `min_item` bytes: refuses counts the
    /// remaining bytes cannot hold, so no huge allocation from a bad length.
    fn count(&mut self, min_item: usize) -> DResult<usize> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item) > self.buf.len() {
            return Err(DecodeError::Malformed("count exceeds record"));
        }
        Ok(n)
    }
    fn topic(&mut self) -> DResult<TopicName> {
        TopicName::new(&self.str()?).map_err(|_| DecodeError::Malformed("bad topic name"))
    }
    fn queue(&mut self) -> DResult<QueueName> {
        QueueName::new(&self.str()?).map_err(|_| DecodeError::Malformed("bad queue name"))
    }
}

fn decode_queue_settings(d: &mut Dec<'_>) -> DResult<QueueSettings> {
    Ok(QueueSettings {
        fifo: d.bool()?,
        content_based_dedup: d.bool()?,
        dedup_window_seconds: d.u32()?,
        delay_seconds: d.u32()?,
        visibility_timeout_seconds: d.u32()?,
        retention_seconds: d.u32()?,
        max_message_bytes: d.u32()?,
        receive_wait_seconds: d.u32()?,
        dead_letter: d.opt(|d| {
            Ok(crate::model::DeadLetterSettings {
                queue: d.queue()?,
                max_receives: d.u32()?,
            })
        })?,
        retry_backoff: d.opt(|d| {
            Ok(crate::model::RetryBackoff {
                initial_seconds: d.u32()?,
                max_seconds: d.u32()?,
            })
        })?,
    })
}

/// Decodes the frame at the start of `buf`; returns the record and the bytes
/// it used. `Err(Truncated)` when `buf` ends inside the frame. A sealed frame
/// is `Err(UnknownKey)`: use [`decode_with`] and a keyring.
pub fn decode(buf: &[u8]) -> Result<(Record, usize), DecodeError> {
    decode_with(buf, None)
}

/// [`decode`], opening sealed frames with `keys`.
pub fn decode_with(buf: &[u8], keys: Option<&Keyring>) -> Result<(Record, usize), DecodeError> {
    if buf.len() < FRAME_HEADER {
        return Err(DecodeError::Truncated);
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if len == 0 || len > MAX_FRAME {
        return Err(DecodeError::Length(len));
    }
    let Some(payload) = buf.get(FRAME_HEADER..FRAME_HEADER + len) else {
        return Err(DecodeError::Truncated);
    };
    if crc32c::crc32c(payload) != crc {
        return Err(DecodeError::Checksum);
    }
    let rec = if payload.first() == Some(&tag::SEALED) {
        open_sealed(payload, keys)?
    } else {
        decode_body(payload)?
    };
    Ok((rec, FRAME_HEADER + len))
}

/// One record's type and payload, every byte used.
fn decode_body(body: &[u8]) -> DResult<Record> {
    let mut d = Dec { buf: body };
    let rec = decode_payload(&mut d)?;
    if !d.buf.is_empty() {
        return Err(DecodeError::Malformed("trailing bytes"));
    }
    Ok(rec)
}

/// A `Sealed` payload (see [`encode_with`]): checks its header, decrypts
/// and decodes the record inside (any type but `Sealed` itself).
fn open_sealed(payload: &[u8], keys: Option<&Keyring>) -> DResult<Record> {
    let mut d = Dec { buf: &payload[1..] };
    let id_len = d.u32()? as usize;
    if id_len == 0 || id_len > crypt::MAX_KEY_ID {
        return Err(DecodeError::Malformed("bad key id"));
    }
    let id =
        std::str::from_utf8(d.take(id_len)?).map_err(|_| DecodeError::Malformed("bad key id"))?;
    let nonce: [u8; NONCE_BYTES] = d.arr()?;
    if d.buf.len() < 1 + TAG_BYTES {
        return Err(DecodeError::Malformed("sealed record too short"));
    }
    let aad = &payload[..payload.len() - d.buf.len()];
    let (sealed, tag) = d.buf.split_at(d.buf.len() - TAG_BYTES);
    let mut tag_bytes = [0u8; TAG_BYTES];
    tag_bytes.copy_from_slice(tag);
    let Some(ring) = keys else {
        return Err(DecodeError::UnknownKey(id.to_string()));
    };
    let mut plain = sealed.to_vec();
    let opened = ring.open(id, &nonce, aad, &mut plain, &tag_bytes);
    let rec = match opened {
        Ok(()) if plain.first() == Some(&tag::SEALED) => Err(DecodeError::Malformed(
            "sealed record inside a sealed record",
        )),
        Ok(()) => decode_body(&plain),
        Err(OpenError::UnknownKey) => Err(DecodeError::UnknownKey(id.to_string())),
        Err(OpenError::Unauthentic) => Err(DecodeError::WrongKey(id.to_string())),
    };
    plain.zeroize();
    rec
}

fn decode_payload(d: &mut Dec<'_>) -> DResult<Record> {
    let t = d.u8()?;
    Ok(match t {
        tag::TOPIC_PUT => Record::TopicPut {
            name: d.topic()?,
            settings: TopicSettings {
                fifo: d.bool()?,
                content_based_dedup: d.bool()?,
                dedup_window_seconds: d.u32()?,
            },
        },
        tag::TOPIC_DELETE => Record::TopicDelete { name: d.topic()? },
        tag::QUEUE_PUT => Record::QueuePut {
            name: d.queue()?,
            uid: d.u64()?,
            settings: decode_queue_settings(d)?,
            temporary: d.bool()?,
        },
        tag::QUEUE_DELETE => Record::QueueDelete {
            name: d.queue()?,
            uid: d.u64()?,
        },
        tag::SUBSCRIBE => Record::Subscribe {
            topic: d.topic()?,
            queue: d.queue()?,
            filter_json: d.opt(|d| d.str())?,
        },
        tag::UNSUBSCRIBE => Record::Unsubscribe {
            topic: d.topic()?,
            queue: d.queue()?,
        },
        tag::PUBLISH => {
            let id = MessageId(d.u128()?);
            let body = d.str()?;
            let body_encoding = match d.u8()? {
                0 => BodyEncoding::Text,
                1 => BodyEncoding::Base64,
                _ => return Err(DecodeError::Malformed("bad body encoding")),
            };
            let n = d.count(8)?;
            let mut attributes = Attributes::new();
            for _ in 0..n {
                let k = d.str()?;
                let v = d.str()?;
                attributes.insert(k, v);
            }
            let group_id = d.opt(|d| d.str())?.map(|s| Arc::from(s.as_str()));
            let dedup_id = d.opt(|d| d.str())?.map(|s| Arc::from(s.as_str()));
            let topic = d.opt(|d| d.topic())?;
            let poison = d.bool()?;
            let sent_at = d.u64()?;
            let size = d.u64()? as usize;
            let visible_at = d.opt(|d| d.u64())?;
            let n = d.count(30)?;
            let mut copies = Vec::with_capacity(n);
            for _ in 0..n {
                copies.push(CopyRec {
                    queue_uid: d.u64()?,
                    seq: d.u64()?,
                    receive_count: d.u32()?,
                    enqueued_at: d.u64()?,
                    visible_at: d.opt(|d| d.u64())?,
                    dead_letter_source: d.opt(|d| d.queue())?,
                });
            }
            Record::Publish {
                message: Arc::new(MessageData {
                    id,
                    body,
                    body_encoding,
                    attributes,
                    group_id,
                    dedup_id,
                    topic,
                    poison,
                    sent_at,
                    size,
                    visible_at,
                    loc: Default::default(),
                    copies: 1,
                }),
                copies,
            }
        }
        tag::DELETE => {
            let queue_uid = d.u64()?;
            let n = d.count(8)?;
            let mut seqs = Vec::with_capacity(n);
            for _ in 0..n {
                seqs.push(d.u64()?);
            }
            Record::Delete { queue_uid, seqs }
        }
        tag::RECEIVED => {
            let queue_uid = d.u64()?;
            let n = d.count(20)?;
            let mut entries = Vec::with_capacity(n);
            for _ in 0..n {
                entries.push((d.u64()?, d.u32()?, d.u64()?));
            }
            Record::Received { queue_uid, entries }
        }
        tag::PURGE => Record::Purge {
            queue_uid: d.u64()?,
            below_seq: d.u64()?,
        },
        tag::QUEUE_SEQ => Record::QueueSeq {
            queue_uid: d.u64()?,
            next_seq: d.u64()?,
        },
        tag::DEDUP => Record::Dedup {
            queue_uid: d.u64()?,
            topic: d.opt(|d| d.topic())?,
            key: d.str()?,
            id: MessageId(d.u128()?),
            expires_at: d.u64()?,
        },
        tag::SNAPSHOT_END => Record::SnapshotEnd { records: d.u64()? },
        tag::STORED => Record::Stored(StoredRec {
            queue_uid: d.u64()?,
            seq: d.u64()?,
            loc: BodyLoc::from_bits(d.u64()?).ok_or(DecodeError::Malformed("bad body location"))?,
            receive_count: d.u32()?,
            first_received_at: d.opt(|d| d.u64())?,
            enqueued_at: d.u64()?,
            visible_at: d.opt(|d| d.u64())?,
            group_id: d.opt(|d| d.str())?.map(|s| Arc::from(s.as_str())),
            dead_letter_source: d.opt(|d| d.queue())?,
        }),
        other => return Err(DecodeError::UnknownType(other)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DeadLetterSettings;

    fn sample() -> Vec<Record> {
        let mut attrs = Attributes::new();
        attrs.insert("k".into(), "v".into());
        vec![
            Record::TopicPut {
                name: TopicName::new("t").expect("valid"),
                settings: TopicSettings::default(),
            },
            Record::QueuePut {
                name: QueueName::new("q").expect("valid"),
                uid: 9,
                settings: QueueSettings {
                    dead_letter: Some(DeadLetterSettings {
                        queue: QueueName::new("d").expect("valid"),
                        max_receives: 3,
                    }),
                    ..QueueSettings::default()
                },
                temporary: false,
            },
            Record::Publish {
                message: Arc::new(MessageData {
                    id: MessageId(77),
                    body: "héllo".into(),
                    body_encoding: BodyEncoding::Text,
                    attributes: attrs,
                    group_id: Some(Arc::from("g")),
                    dedup_id: None,
                    topic: Some(TopicName::new("t").expect("valid")),
                    poison: true,
                    sent_at: 5,
                    size: 8,
                    visible_at: Some(10),
                    loc: Default::default(),
                    copies: 1,
                }),
                copies: vec![CopyRec {
                    queue_uid: 9,
                    seq: 1,
                    receive_count: 0,
                    enqueued_at: 5,
                    visible_at: None,
                    dead_letter_source: Some(QueueName::new("src").expect("valid")),
                }],
            },
            Record::Delete {
                queue_uid: 9,
                seqs: vec![1, 2],
            },
            Record::Received {
                queue_uid: 9,
                entries: vec![(1, 2, 3)],
            },
            Record::Purge {
                queue_uid: 9,
                below_seq: 4,
            },
            Record::Stored(StoredRec {
                queue_uid: 9,
                seq: 12,
                loc: BodyLoc::new(3, 4096).expect("fits"),
                receive_count: 2,
                first_received_at: Some(7),
                enqueued_at: 6,
                visible_at: None,
                group_id: Some(Arc::from("g")),
                dead_letter_source: None,
            }),
            Record::SnapshotEnd { records: 6 },
        ]
    }

    #[test]
    fn every_record_round_trips() {
        for r in sample() {
            let mut buf = Vec::new();
            encode(&r, &mut buf);
            let (back, used) = decode(&buf).expect("decodes");
            assert_eq!(used, buf.len());
            assert_eq!(back, r);
        }
    }

    fn ring(active: (&str, u8), older: &[(&str, u8)]) -> Keyring {
        let id = |s: &str| crypt::KeyId::new(s).expect("valid id");
        Keyring::new(
            (id(active.0), [active.1; 32]),
            older.iter().map(|(s, b)| (id(s), [*b; 32])),
        )
        .expect("keyring")
    }

    fn secret_publish() -> Record {
        let mut attrs = Attributes::new();
        attrs.insert("who".into(), "ATTR-MARKER".into());
        Record::Publish {
            message: Arc::new(MessageData {
                id: MessageId(5),
                body: "BODY-MARKER".into(),
                body_encoding: BodyEncoding::Text,
                attributes: attrs,
                group_id: Some(Arc::from("GROUP-MARKER")),
                dedup_id: Some(Arc::from("DEDUP-MARKER")),
                topic: None,
                poison: false,
                sent_at: 1,
                size: 11,
                visible_at: None,
                loc: Default::default(),
                copies: 1,
            }),
            copies: vec![],
        }
    }

    fn contains(hay: &[u8], needle: &str) -> bool {
        hay.windows(needle.len()).any(|w| w == needle.as_bytes())
    }

    #[test]
    fn sealed_records_round_trip_and_hide_user_data() {
        let k = ring(("k1", 1), &[]);
        let dedup = Record::Dedup {
            queue_uid: 3,
            topic: None,
            key: "DEDUP-KEY-MARKER".into(),
            id: MessageId(9),
            expires_at: 4,
        };
        for r in sample().into_iter().chain([secret_publish(), dedup]) {
            let mut buf = Vec::new();
            encode_with(&r, &mut buf, Some(&k));
            assert_eq!(
                buf[FRAME_HEADER] == tag::SEALED,
                holds_user_data(&r),
                "{r:?}"
            );
            let (back, used) = decode_with(&buf, Some(&k)).expect("decodes");
            assert_eq!(used, buf.len());
            assert_eq!(back, r);
            for marker in ["MARKER", "héllo"] {
                assert!(!contains(&buf, marker) || !holds_user_data(&r), "{r:?}");
            }
        }
    }

    #[test]
    fn two_seals_of_one_record_differ() {
        let k = ring(("k1", 1), &[]);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        encode_with(&secret_publish(), &mut a, Some(&k));
        encode_with(&secret_publish(), &mut b, Some(&k));
        assert_ne!(a, b, "a fresh nonce per record");
    }

    #[test]
    fn a_sealed_record_without_its_key_is_a_key_problem_not_damage() {
        let mut buf = Vec::new();
        encode_with(&secret_publish(), &mut buf, Some(&ring(("k1", 1), &[])));
        let no_key = decode(&buf).expect_err("sealed");
        assert_eq!(no_key, DecodeError::UnknownKey("k1".into()));
        assert!(no_key.is_key_problem());
        let other_id = decode_with(&buf, Some(&ring(("k2", 1), &[]))).expect_err("unknown id");
        assert_eq!(other_id, DecodeError::UnknownKey("k1".into()));
        let wrong = decode_with(&buf, Some(&ring(("k1", 2), &[]))).expect_err("wrong key");
        assert_eq!(wrong, DecodeError::WrongKey("k1".into()));
        assert!(wrong.is_key_problem());
        assert!(!DecodeError::Checksum.is_key_problem());
    }

    #[test]
    fn records_sealed_with_an_older_key_stay_readable_after_rotation() {
        let mut old = Vec::new();
        encode_with(&secret_publish(), &mut old, Some(&ring(("k1", 1), &[])));
        let rotated = ring(("k2", 2), &[("k1", 1)]);
        let (back, _) = decode_with(&old, Some(&rotated)).expect("k1 still reads");
        assert_eq!(back, secret_publish());
        let mut new = Vec::new();
        encode_with(&secret_publish(), &mut new, Some(&rotated));
        assert!(contains(&new, "k2") && !contains(&new, "k1"));
        assert_eq!(
            decode_with(&new, Some(&ring(("k1", 1), &[]))).expect_err("k2 is not known"),
            DecodeError::UnknownKey("k2".into())
        );
    }

    #[test]
    fn clear_records_stay_readable_with_a_keyring() {
        let mut buf = Vec::new();
        encode(&secret_publish(), &mut buf);
        let (back, _) = decode_with(&buf, Some(&ring(("k1", 1), &[]))).expect("clear reads");
        assert_eq!(back, secret_publish());
    }

    /// Each byte of the sealed payload altered and the checksum fixed up (so
    /// the frame looks intact): an error, never a panic and never the record.
    #[test]
    fn tampered_sealed_frames_with_a_valid_checksum_are_errors() {
        let k = ring(("k1", 1), &[]);
        let mut buf = Vec::new();
        encode_with(&secret_publish(), &mut buf, Some(&k));
        for i in FRAME_HEADER + 1..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x01;
            let crc = crc32c::crc32c(&bad[FRAME_HEADER..]);
            bad[4..8].copy_from_slice(&crc.to_le_bytes());
            let err = decode_with(&bad, Some(&k)).expect_err("tampering is detected");
            // Past the key id (length 4 bytes + "k1"), a change is caught by
            // the authentication tag.
            if i >= FRAME_HEADER + 1 + 4 + 2 {
                assert_eq!(err, DecodeError::WrongKey("k1".into()), "byte {i}");
            }
        }
        // Cut short with the length and checksum fixed up.
        for keep in 1..buf.len() - FRAME_HEADER {
            let payload = buf[FRAME_HEADER..FRAME_HEADER + keep].to_vec();
            let mut frame = Vec::new();
            frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            frame.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
            frame.extend_from_slice(&payload);
            assert!(decode_with(&frame, Some(&k)).is_err(), "kept {keep}");
        }
    }

    #[test]
    fn truncated_and_flipped_frames_are_errors() {
        let mut buf = Vec::new();
        encode(&sample()[2], &mut buf);
        for cut in 0..buf.len() {
            assert!(decode(&buf[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x10;
            assert!(decode(&bad).is_err(), "flip at {i}");
        }
    }
}
