//! The bench's message bodies: an ASCII stamp (who published it, its sequence
//! number, its FIFO group and place in the group, when it was sent) followed
//! by filler up to the requested size, and the JSON of publish requests built
//! straight into one buffer.
//!
//! Bodies are plain ASCII without characters JSON must escape, so they go on
//! the wire as text (no base64) and are written and read without allocating.
//! This module knows nothing of HTTP, queues or verification.

use std::io::Write;

/// What a bench message says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Index of the publisher task that sent it.
    pub publisher: u32,
    /// The publisher's own sequence number, from 0.
    pub seq: u64,
    /// FIFO group index (0 on standard queues).
    pub group: u32,
    /// Position within the group, from 0 (0 on standard queues).
    pub group_seq: u64,
    /// When it was sent: nanoseconds since the run's origin
    /// ([`super::stats::RunClock`]), a process-local monotonic clock, so the
    /// consumers in the same process read it without any clock sync.
    pub sent_ns: u64,
}

/// The first bytes of every bench body; anything else is not ours.
const MAGIC: &[u8] = b"pqb:";

/// Filler after the stamp.
const FILLER: u8 = b'x';

/// How a message of a publish batch is addressed on a FIFO topic or queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Standard,
    /// FIFO: each message carries `group_id` and a unique `dedup_id`.
    Fifo,
}

/// Writes a body of at least `size` bytes (more only when the stamp itself
/// is longer) into `out`.
pub fn write_body(out: &mut Vec<u8>, stamp: &Stamp, size: usize) {
    let start = out.len();
    out.extend_from_slice(MAGIC);
    // Writing integers into a Vec cannot fail.
    let _ = write!(
        out,
        "{}.{}.{}.{}.{};",
        stamp.publisher, stamp.seq, stamp.group, stamp.group_seq, stamp.sent_ns
    );
    let written = out.len() - start;
    if written < size {
        out.resize(start + size, FILLER);
    }
}

/// Reads the stamp back; `None` for a body that is not a bench body.
pub fn parse_body(body: &str) -> Option<Stamp> {
    let rest = body.as_bytes().strip_prefix(MAGIC)?;
    let end = rest.iter().position(|&b| b == b';')?;
    let text = std::str::from_utf8(&rest[..end]).ok()?;
    let mut parts = text.split('.');
    let mut next = || parts.next()?.parse::<u64>().ok();
    let stamp = Stamp {
        publisher: u32::try_from(next()?).ok()?,
        seq: next()?,
        group: u32::try_from(next()?).ok()?,
        group_seq: next()?,
        sent_ns: next()?,
    };
    Some(stamp)
}

/// Starts a publish batch body: `{"messages":[`.
pub fn begin_batch(out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"messages\":[");
}

/// Appends one message to a batch body begun with [`begin_batch`].
pub fn push_message(out: &mut Vec<u8>, first: bool, stamp: &Stamp, size: usize, kind: Kind) {
    if !first {
        out.push(b',');
    }
    out.extend_from_slice(b"{\"body\":\"");
    write_body(out, stamp, size);
    out.push(b'"');
    if kind == Kind::Fifo {
        // The dedup id is unique per message, so nothing is dropped as a
        // duplicate, and the server need not hash bodies.
        let _ = write!(
            out,
            ",\"group_id\":\"g{}\",\"dedup_id\":\"{}.{}\"",
            stamp.group, stamp.publisher, stamp.seq
        );
    }
    out.push(b'}');
}

/// Ends a batch body.
pub fn end_batch(out: &mut Vec<u8>) {
    out.extend_from_slice(b"]}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp() -> Stamp {
        Stamp {
            publisher: 3,
            seq: 12_345,
            group: 7,
            group_seq: 99,
            sent_ns: 1_234_567_890,
        }
    }

    #[test]
    fn a_body_round_trips_and_has_the_requested_size() {
        let mut out = Vec::new();
        write_body(&mut out, &stamp(), 256);
        assert_eq!(out.len(), 256);
        let text = std::str::from_utf8(&out).expect("ascii");
        assert_eq!(parse_body(text), Some(stamp()));
    }

    #[test]
    fn a_size_below_the_stamp_keeps_the_whole_stamp() {
        let mut out = Vec::new();
        write_body(&mut out, &stamp(), 1);
        let text = std::str::from_utf8(&out).expect("ascii");
        assert_eq!(parse_body(text), Some(stamp()));
    }

    #[test]
    fn foreign_bodies_are_not_stamps() {
        for body in ["", "hello", "pqb:1.2.3;", "pqb:a.b.c.d.e;", "pqb:1.2.3.4.5"] {
            assert_eq!(parse_body(body), None, "{body:?}");
        }
    }

    #[test]
    fn a_fifo_batch_is_valid_json_with_group_and_dedup_ids() {
        let mut out = Vec::new();
        begin_batch(&mut out);
        push_message(&mut out, true, &stamp(), 64, Kind::Fifo);
        push_message(&mut out, false, &stamp(), 64, Kind::Standard);
        end_batch(&mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(v["messages"][0]["group_id"], "g7");
        assert_eq!(v["messages"][0]["dedup_id"], "3.12345");
        assert!(v["messages"][1].get("group_id").is_none());
        let body = v["messages"][1]["body"].as_str().expect("body");
        assert_eq!(parse_body(body), Some(stamp()));
    }
}
