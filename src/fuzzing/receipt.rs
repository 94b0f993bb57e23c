//! Receipts and resume tokens (`src/api/receipt.rs`): strings a client sends
//! back, checked against the server's MAC.

use crate::queue::Receipt;

/// `receipt`: the input as a receipt and as a resume token, and its first
/// 20 bytes as the fields of a receipt. Decoding never panics; what decodes
/// has exactly one text form; what is encoded decodes back, and any other
/// character in any position makes it invalid, as does another key.
pub fn receipt(data: &[u8]) -> bool {
    let codec = super::codec();
    let text = String::from_utf8_lossy(data);
    let mut accepted = false;
    if let Some(r) = codec.decode(&text) {
        assert_eq!(codec.encode(&r), text);
        accepted = true;
    }
    if let Some(q) = codec.check_resume_token(&text) {
        assert_eq!(codec.resume_token(q), text);
        accepted = true;
    }
    let token = codec.resume_token(&text);
    assert_eq!(codec.check_resume_token(&token), Some(&*text));

    if let Some(fields) = data.get(..21) {
        let r = Receipt {
            queue_uid: u64::from_be_bytes(fields[..8].try_into().expect("8 bytes")),
            seq: u64::from_be_bytes(fields[8..16].try_into().expect("8 bytes")),
            lease: u32::from_be_bytes(fields[16..20].try_into().expect("4 bytes")),
        };
        let s = codec.encode(&r);
        assert_eq!(s.len(), crate::api::receipt::RECEIPT_CHARS);
        assert_eq!(codec.decode(&s), Some(r));
        let other = crate::api::receipt::ReceiptCodec::with_key(&[8; 32]);
        assert_eq!(other.decode(&s), None);
        // One character changed, to another of the alphabet.
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let at = usize::from(fields[20]) % s.len();
        let mut bytes = s.clone().into_bytes();
        let was = ALPHABET
            .iter()
            .position(|c| *c == bytes[at])
            .expect("base64url");
        bytes[at] = ALPHABET[(was + 1 + usize::from(fields[20] >> 2)) % 64];
        if bytes[at] != s.as_bytes()[at] {
            let forged = String::from_utf8(bytes).expect("ASCII");
            assert_eq!(codec.decode(&forged), None, "{s} -> {forged}");
        }
    }
    accepted
}
