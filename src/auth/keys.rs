//! API keys: random secrets the server knows only by their SHA-256 (`pubq
//! auth gen-key` makes one, `pubq auth hash-key` hashes one). A presented key
//! is hashed and looked up; the key itself is never stored or logged.
//!
//! A plain SHA-256 is enough because the keys are 256 random bits: there is
//! nothing to guess, so a slow password hash would only slow every request.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// What every generated key starts with, so a leaked one is recognisable
/// (secret scanners) and never mistaken for a JWT.
pub const KEY_PREFIX: &str = "pubq_";

/// A SHA-256 digest.
pub type KeyHash = [u8; 32];

/// A new key: the prefix and 32 random bytes, base64url.
pub fn generate_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The digest of a key as presented.
pub fn digest(key: &str) -> KeyHash {
    Sha256::digest(key.as_bytes()).into()
}

/// The lowercase hex form written in `pubq.toml` (`sha256 = "..."`).
pub fn hash_key(key: &str) -> String {
    to_hex(&digest(key))
}

/// The first 8 hex digits of a token's digest: enough to tell tokens apart
/// in the audit log, nothing to recover them from.
pub fn fingerprint(token: &str) -> String {
    to_hex(&digest(token)[..4])
}

fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    s
}

/// Parses 64 hex digits (either case).
pub fn parse_hash(hex: &str) -> Option<KeyHash> {
    let hex = hex.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let digit = |c: u8| char::from(c).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_sha256_hex_and_parse_back() {
        // SHA-256 of "abc" (FIPS 180-2 test vector).
        let h = hash_key("abc");
        assert_eq!(
            h,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(parse_hash(&h), Some(digest("abc")));
        assert_eq!(parse_hash(&h.to_uppercase()), Some(digest("abc")));
        assert_eq!(parse_hash("abc"), None);
        assert_eq!(parse_hash(&"g".repeat(64)), None);
        assert_eq!(fingerprint("abc"), "ba7816bf");
    }

    #[test]
    fn generated_keys_are_prefixed_random_and_distinct() {
        let a = generate_key();
        let b = generate_key();
        assert!(a.starts_with(KEY_PREFIX));
        assert_eq!(a.len(), KEY_PREFIX.len() + 43);
        assert_ne!(a, b);
        assert!(!a.contains('.'), "never mistaken for a JWT");
    }
}
