//! The text form of receipts: base64url of (queue uid, sequence, lease) plus a
//! 96-bit tag under a per-server key, so a client cannot forge a receipt for
//! another message. Shared by HTTP and WebSocket.
//!
//! The tag is SipHash-2-4 with 128-bit output (a keyed PRF made for short
//! inputs), truncated to 96 bits: one is made for every delivered copy and
//! checked for every ack, and HMAC-SHA256 cost 141 ns each where SipHash
//! costs 18 (6 % of the server's CPU in a fan-out run; docs/performance.md).
//! Its key is derived from the server's receipt key by HMAC-SHA256, which
//! also signs the (rare) resume tokens.

use std::hash::Hasher as _;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use siphasher::sip128::{Hasher128 as _, SipHasher24};

use crate::queue::Receipt;

const BODY_LEN: usize = 20;
const MAC_LEN: usize = 12;
/// Length of an encoded receipt in characters.
pub const RECEIPT_CHARS: usize = 43;

/// Signs and checks receipts. Cheap to clone.
#[derive(Clone)]
pub struct ReceiptCodec {
    /// Keyed once; cloned per use so the key schedule is not redone.
    mac: Hmac<Sha256>,
    /// SipHash keys of receipt tags (derived from the receipt key).
    sip: (u64, u64),
}

impl std::fmt::Debug for ReceiptCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReceiptCodec")
    }
}

impl ReceiptCodec {
    /// A codec with a fresh random key.
    pub fn random() -> Self {
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        Self::with_key(&key)
    }

    pub fn with_key(key: &[u8; 32]) -> Self {
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
        let mut m = mac.clone();
        m.update(b"receipt tag key: siphash-2-4-128");
        let d = m.finalize().into_bytes();
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&d[i..i + 8]);
            u64::from_le_bytes(w)
        };
        Self {
            mac,
            sip: (word(0), word(8)),
        }
    }

    fn tag(&self, body: &[u8]) -> [u8; MAC_LEN] {
        let mut h = SipHasher24::new_with_keys(self.sip.0, self.sip.1);
        h.write(body);
        let full = h.finish128().as_bytes();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }

    /// A resume token for a temporary queue: its name plus a MAC, so knowing
    /// the name (it is listed) is not enough to take the stream over.
    pub fn resume_token(&self, queue: &str) -> String {
        format!("{queue}.{}", self.resume_mac(queue))
    }

    /// The queue name a genuine resume token stands for.
    pub fn check_resume_token<'a>(&self, token: &'a str) -> Option<&'a str> {
        let (queue, mac) = token.rsplit_once('.')?;
        let want = self.resume_mac(queue);
        // Constant-time enough for a MAC compare of fixed-length hex.
        let equal = mac.len() == want.len()
            && mac
                .bytes()
                .zip(want.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        equal.then_some(queue)
    }

    fn resume_mac(&self, queue: &str) -> String {
        let mut m = self.mac.clone();
        m.update(b"resume:");
        m.update(queue.as_bytes());
        let full = m.finalize().into_bytes();
        full[..16].iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn encode(&self, r: &Receipt) -> String {
        let mut out = String::with_capacity(RECEIPT_CHARS);
        self.encode_into(r, &mut out);
        out
    }

    /// Appends the receipt's text to `out`.
    pub fn encode_into(&self, r: &Receipt, out: &mut String) {
        let mut buf = [0u8; BODY_LEN + MAC_LEN];
        buf[..8].copy_from_slice(&r.queue_uid.to_be_bytes());
        buf[8..16].copy_from_slice(&r.seq.to_be_bytes());
        buf[16..20].copy_from_slice(&r.lease.to_be_bytes());
        let tag = self.tag(&buf[..BODY_LEN]);
        buf[BODY_LEN..].copy_from_slice(&tag);
        URL_SAFE_NO_PAD.encode_string(buf, out);
    }

    /// `None` for anything this server did not issue.
    pub fn decode(&self, s: &str) -> Option<Receipt> {
        if s.len() != RECEIPT_CHARS {
            return None;
        }
        let mut buf = [0u8; BODY_LEN + MAC_LEN];
        let n = URL_SAFE_NO_PAD.decode_slice(s, &mut buf).ok()?;
        if n != buf.len() {
            return None;
        }
        let want = self.tag(&buf[..BODY_LEN]);
        // Constant time: which byte differs must not show in the timing.
        let diff = want
            .iter()
            .zip(&buf[BODY_LEN..])
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if std::hint::black_box(diff) != 0 {
            return None;
        }
        let u = |a: &[u8]| -> Option<[u8; 8]> { a.try_into().ok() };
        Some(Receipt {
            queue_uid: u64::from_be_bytes(u(&buf[..8])?),
            seq: u64::from_be_bytes(u(&buf[8..16])?),
            lease: u32::from_be_bytes(buf[16..20].try_into().ok()?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_round_trip_and_forgeries_fail() {
        let c = ReceiptCodec::random();
        let r = Receipt {
            queue_uid: 42,
            seq: 7,
            lease: 3,
        };
        let s = c.encode(&r);
        assert_eq!(s.len(), RECEIPT_CHARS);
        assert_eq!(c.decode(&s), Some(r));
        let mut forged = s.clone().into_bytes();
        forged[5] = if forged[5] == b'A' { b'B' } else { b'A' };
        assert_eq!(c.decode(&String::from_utf8(forged).expect("ascii")), None);
        assert_eq!(c.decode("garbage"), None);
        // Any one character changed, anywhere: refused.
        for i in 0..s.len() {
            for ch in [b'A', b'x', b'-', b'_', b'9'] {
                let mut t = s.clone().into_bytes();
                if t[i] == ch {
                    continue;
                }
                t[i] = ch;
                let t = String::from_utf8(t).expect("ascii");
                assert_eq!(c.decode(&t), None, "changed char {i} to {}", ch as char);
            }
        }
        // Another receipt's tag on this body: refused.
        let other = c.encode(&Receipt { seq: 8, ..r });
        let spliced = format!("{}{}", &s[..27], &other[27..]);
        assert_eq!(c.decode(&spliced), None);
        assert_eq!(ReceiptCodec::random().decode(&s), None);
    }

    #[test]
    fn resume_tokens_need_the_mac_not_just_the_name() {
        let c = ReceiptCodec::random();
        let t = c.resume_token("ws-orders-00ff");
        assert_eq!(c.check_resume_token(&t), Some("ws-orders-00ff"));
        assert_eq!(c.check_resume_token("ws-orders-00ff"), None);
        assert_eq!(c.check_resume_token("ws-orders-00ff.0000"), None);
        assert_eq!(ReceiptCodec::random().check_resume_token(&t), None);
    }
}
