//! Encryption at rest: the [`Keyring`] (the active key new records are
//! sealed with, plus older keys still read) and XChaCha20-Poly1305 sealing
//! of one record's bytes. Which records are sealed and how a sealed frame is
//! laid out is `record.rs`'s business; where keys come from is the
//! configuration's ([`EncryptionConfig`]); this module reads the key files
//! and environment variables once, at start.
//!
//! XChaCha20-Poly1305 takes a 192-bit nonce, so a random nonce per record is
//! safe for any number of records under one key (AES-GCM's 96-bit random
//! nonces would need a new key after about 2^32 records). Key material is
//! never logged: `Debug` shows key ids only, and buffers that held a key are
//! wiped.

use std::path::Path;
use std::sync::Arc;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, Engine as _};
use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{KeyInit, Tag, XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use crate::config::{EncryptionConfig, KeySource, KeySpec};

/// Bytes of a key.
pub const KEY_BYTES: usize = 32;
/// Bytes of a nonce (XChaCha20).
pub const NONCE_BYTES: usize = 24;
/// Bytes of the authentication tag after the ciphertext (Poly1305).
pub const TAG_BYTES: usize = 16;
/// Longest key id.
pub const MAX_KEY_ID: usize = 64;

/// Why keys could not be loaded. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("encryption key {id}: cannot read {path}: {source}")]
    Read {
        id: String,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("encryption key {id}: environment variable {var} is not set")]
    Env { id: String, var: String },
    #[error(
        "encryption key {id} is not a 32-byte key: give 32 raw bytes (files only), 64 hex \
         digits, or base64 (e.g. `head -c32 /dev/urandom | base64` or `pubq encryption-key`)"
    )]
    Format { id: String },
    #[error(
        "invalid encryption key id {0:?}: use 1 to {MAX_KEY_ID} characters of A-Z a-z 0-9 _ . -"
    )]
    Id(String),
    #[error("encryption key id {0} is configured twice with different keys")]
    Duplicate(String),
}

/// A key's name as sealed records carry it: 1 to 64 of `[A-Za-z0-9_.-]`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(Arc<str>);

impl KeyId {
    pub fn new(s: &str) -> Result<Self, KeyringError> {
        let ok = !s.is_empty()
            && s.len() <= MAX_KEY_ID
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if ok {
            Ok(Self(Arc::from(s)))
        } else {
            Err(KeyringError::Id(s.to_string()))
        }
    }

    /// The id of a key configured without one: `k` and the first 8 hex
    /// digits of a domain-separated SHA-256 of the key (a 32-bit
    /// fingerprint says nothing useful about 256 random bits).
    pub fn derived(key: &[u8; KEY_BYTES]) -> Self {
        let mut h = Sha256::new();
        h.update(b"pubq encryption key id\0");
        h.update(key);
        let d = h.finalize();
        let mut s = String::from("k");
        for b in &d[..4] {
            s.push_str(&format!("{b:02x}"));
        }
        Self(Arc::from(s.as_str()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Debug for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

/// Why a sealed record could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    /// No configured key has this id.
    UnknownKey,
    /// The key with this id does not authenticate the record: another key
    /// under the same id, or the record was altered.
    Unauthentic,
}

struct Key {
    id: KeyId,
    /// SHA-256 of the key, to tell a harmless repeat of a key from two keys
    /// under one id (the key itself is not kept outside the cipher).
    digest: [u8; 32],
    cipher: XChaCha20Poly1305,
}

/// The keys of a data directory: one active (new records are sealed with
/// it), any number of older ones (records they sealed stay readable). A
/// handful of keys at most, so lookups are a linear scan.
pub struct Keyring {
    /// `keys[0]` is the active key.
    keys: Vec<Key>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("active", self.active_id())
            .field("ids", &self.ids().collect::<Vec<_>>())
            .finish()
    }
}

impl Keyring {
    /// A keyring from key bytes. The same id twice is refused unless it is
    /// the same key.
    pub fn new(
        active: (KeyId, [u8; KEY_BYTES]),
        older: impl IntoIterator<Item = (KeyId, [u8; KEY_BYTES])>,
    ) -> Result<Self, KeyringError> {
        let mut ring = Self { keys: Vec::new() };
        ring.add(active.0, active.1)?;
        for (id, bytes) in older {
            ring.add(id, bytes)?;
        }
        Ok(ring)
    }

    fn add(&mut self, id: KeyId, mut bytes: [u8; KEY_BYTES]) -> Result<(), KeyringError> {
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        let cipher = XChaCha20Poly1305::new(&bytes.into());
        bytes.zeroize();
        match self.keys.iter().find(|k| k.id == id) {
            Some(k) if k.digest == digest => Ok(()),
            Some(_) => Err(KeyringError::Duplicate(id.to_string())),
            None => {
                self.keys.push(Key { id, digest, cipher });
                Ok(())
            }
        }
    }

    /// Reads the configured keys (files, environment variables). `None` when
    /// no active key is configured: records are written in clear.
    pub fn load(cfg: &EncryptionConfig) -> Result<Option<Self>, KeyringError> {
        let Some(active) = &cfg.active else {
            return Ok(None);
        };
        let active = load_key(active)?;
        let older = cfg
            .older
            .iter()
            .map(load_key)
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(active, older).map(Some)
    }

    /// The id new records are sealed with.
    pub fn active_id(&self) -> &KeyId {
        &self.keys[0].id
    }

    /// Every configured id, the active one first.
    pub fn ids(&self) -> impl Iterator<Item = &KeyId> {
        self.keys.iter().map(|k| &k.id)
    }

    /// Encrypts `buf` in place with the active key under `nonce` (fresh from
    /// [`random_nonce`] for every record), authenticating `aad` too; answers
    /// the tag.
    pub(crate) fn seal(&self, nonce: &[u8; NONCE_BYTES], aad: &[u8], buf: &mut [u8]) -> Tag {
        self.keys[0]
            .cipher
            .encrypt_in_place_detached(XNonce::from_slice(nonce), aad, buf)
            .expect("XChaCha20-Poly1305 seals any buffer a frame can hold")
    }

    /// Decrypts `buf` in place with the key named `id`, checking `tag` over
    /// `aad` and the ciphertext. On an error `buf` is left scrambled.
    pub(crate) fn open(
        &self,
        id: &str,
        nonce: &[u8; NONCE_BYTES],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_BYTES],
    ) -> Result<(), OpenError> {
        let key = self
            .keys
            .iter()
            .find(|k| k.id.as_str() == id)
            .ok_or(OpenError::UnknownKey)?;
        key.cipher
            .decrypt_in_place_detached(XNonce::from_slice(nonce), aad, buf, Tag::from_slice(tag))
            .map_err(|_| OpenError::Unauthentic)
    }
}

/// A fresh nonce from the thread's CSPRNG (ChaCha, seeded by the OS).
pub(crate) fn random_nonce() -> [u8; NONCE_BYTES] {
    let mut n = [0u8; NONCE_BYTES];
    rand::thread_rng().fill_bytes(&mut n);
    n
}

/// A new random key, base64 (what `pubq encryption-key` prints or writes).
pub fn generate_key() -> (KeyId, String) {
    let mut bytes = [0u8; KEY_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let id = KeyId::derived(&bytes);
    let text = base64::engine::general_purpose::STANDARD.encode(bytes);
    bytes.zeroize();
    (id, text)
}

/// Reads one configured key; its id is the configured one or derived.
fn load_key(spec: &KeySpec) -> Result<(KeyId, [u8; KEY_BYTES]), KeyringError> {
    let shown = spec.id.clone().unwrap_or_else(|| "(active)".into());
    let id = spec.id.as_deref().map(KeyId::new).transpose()?;
    let format = || KeyringError::Format { id: shown.clone() };
    let bytes = match &spec.source {
        KeySource::File(p) => {
            let mut raw = std::fs::read(p).map_err(|source| KeyringError::Read {
                id: shown.clone(),
                path: p.clone(),
                source,
            })?;
            warn_if_readable_by_others(p, &shown);
            let k = parse_key(&raw, true).ok_or_else(format);
            raw.zeroize();
            k?
        }
        KeySource::Env(var) => {
            let mut v = std::env::var(var).map_err(|_| KeyringError::Env {
                id: shown.clone(),
                var: var.clone(),
            })?;
            let k = parse_key(v.as_bytes(), false).ok_or_else(format);
            v.zeroize();
            k?
        }
        KeySource::Value(text) => parse_key(text.expose().as_bytes(), false).ok_or_else(format)?,
    };
    let id = id.unwrap_or_else(|| KeyId::derived(&bytes));
    Ok((id, bytes))
}

/// A key file others can read is worth a warning (not a refusal: the
/// operator may have reasons, e.g. a group-readable secrets mount).
fn warn_if_readable_by_others(p: &Path, id: &str) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(p) {
            if m.permissions().mode() & 0o077 != 0 {
                tracing::warn!(key = id, file = %p.display(),
                    "encryption key file is readable by group or others (chmod 600 it)");
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (p, id);
}

/// 32 raw bytes (when `raw_ok`: a file of exactly 32 bytes), 64 hex digits,
/// or base64 (standard or URL-safe alphabet, padding optional), with
/// surrounding whitespace ignored.
pub fn parse_key(input: &[u8], raw_ok: bool) -> Option<[u8; KEY_BYTES]> {
    if raw_ok && input.len() == KEY_BYTES {
        let mut k = [0u8; KEY_BYTES];
        k.copy_from_slice(input);
        return Some(k);
    }
    let text = std::str::from_utf8(input).ok()?.trim();
    if text.len() == 2 * KEY_BYTES {
        if let Some(k) = parse_hex(text) {
            return Some(k);
        }
    }
    let cfg = GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    for alphabet in [base64::alphabet::STANDARD, base64::alphabet::URL_SAFE] {
        if let Ok(mut v) = GeneralPurpose::new(&alphabet, cfg).decode(text) {
            let k = <[u8; KEY_BYTES]>::try_from(v.as_slice()).ok();
            v.zeroize();
            if k.is_some() {
                return k;
            }
        }
    }
    None
}

fn parse_hex(text: &str) -> Option<[u8; KEY_BYTES]> {
    let digit = |c: u8| char::from(c).to_digit(16).map(|d| d as u8);
    let b = text.as_bytes();
    let mut k = [0u8; KEY_BYTES];
    for (i, out) in k.iter_mut().enumerate() {
        *out = (digit(b[2 * i])? << 4) | digit(b[2 * i + 1])?;
    }
    Some(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> KeyId {
        KeyId::new(s).expect("valid id")
    }

    #[test]
    fn keys_parse_from_raw_hex_and_base64_and_nothing_else() {
        let key: [u8; 32] = std::array::from_fn(|i| i as u8 * 7);
        let hex: String = key.iter().map(|b| format!("{b:02X}")).collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(key);
        let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key);
        assert_eq!(parse_key(&key, true), Some(key));
        assert_eq!(parse_key(&key, false), None, "raw bytes only from a file");
        assert_eq!(parse_key(format!("{hex}\n").as_bytes(), false), Some(key));
        assert_eq!(parse_key(format!("  {b64}\n").as_bytes(), false), Some(key));
        assert_eq!(parse_key(b64url.as_bytes(), false), Some(key));
        assert_eq!(parse_key(b"", true), None);
        assert_eq!(parse_key(&hex.as_bytes()[..62], false), None);
        let short = base64::engine::general_purpose::STANDARD.encode([1u8; 16]);
        assert_eq!(parse_key(short.as_bytes(), false), None);
        assert_eq!(parse_key("zz".repeat(32).as_bytes(), false), None);
    }

    #[test]
    fn key_ids_are_validated_and_derived_ids_are_stable() {
        assert!(KeyId::new("k1").is_ok());
        assert!(KeyId::new("prod-2025.q1_a").is_ok());
        for bad in ["", "a b", "k/1", "ключ", &"x".repeat(65)] {
            assert!(KeyId::new(bad).is_err(), "{bad:?}");
        }
        let a = KeyId::derived(&[1; 32]);
        assert_eq!(a, KeyId::derived(&[1; 32]));
        assert_ne!(a, KeyId::derived(&[2; 32]));
        assert_eq!(a.as_str().len(), 9);
        assert!(KeyId::new(a.as_str()).is_ok());
    }

    #[test]
    fn sealing_round_trips_and_a_wrong_or_unknown_key_is_refused() {
        let ring = Keyring::new((id("k2"), [2; 32]), [(id("k1"), [1; 32])]).expect("ring");
        assert_eq!(ring.active_id().as_str(), "k2");
        let mut buf = b"secret body".to_vec();
        let nonce = random_nonce();
        let tag = ring.seal(&nonce, b"aad", &mut buf);
        assert_ne!(buf, b"secret body");
        let tag: [u8; TAG_BYTES] = tag.into();
        let mut opened = buf.clone();
        ring.open("k2", &nonce, b"aad", &mut opened, &tag)
            .expect("opens");
        assert_eq!(opened, b"secret body");
        let mut other = buf.clone();
        assert_eq!(
            ring.open("k1", &nonce, b"aad", &mut other, &tag),
            Err(OpenError::Unauthentic)
        );
        let mut other = buf.clone();
        assert_eq!(
            ring.open("k2", &nonce, b"AAD", &mut other, &tag),
            Err(OpenError::Unauthentic)
        );
        let mut other = buf.clone();
        assert_eq!(
            ring.open("k9", &nonce, b"aad", &mut other, &tag),
            Err(OpenError::UnknownKey)
        );
    }

    #[test]
    fn one_id_for_two_keys_is_refused_and_a_repeat_is_not() {
        assert!(matches!(
            Keyring::new((id("k1"), [1; 32]), [(id("k1"), [2; 32])]),
            Err(KeyringError::Duplicate(_))
        ));
        let ring = Keyring::new((id("k1"), [1; 32]), [(id("k1"), [1; 32])]).expect("same key");
        assert_eq!(ring.ids().count(), 1);
    }

    #[test]
    fn debug_output_names_ids_not_keys() {
        let ring = Keyring::new((id("k1"), [0xAB; 32]), []).expect("ring");
        let shown = format!("{ring:?}");
        assert!(shown.contains("k1"), "{shown}");
        assert!(!shown.to_lowercase().contains("abab"), "{shown}");
    }

    #[test]
    fn keys_load_from_files_and_environment_variables() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("k.key");
        std::fs::write(&f, format!("{}\n", "11".repeat(32))).expect("write key");
        let var = "PUBQ_TEST_CRYPT_KEY_LOAD";
        std::env::set_var(var, "22".repeat(32));
        let cfg = EncryptionConfig {
            active: Some(KeySpec {
                id: None,
                source: KeySource::File(f.clone()),
            }),
            older: vec![KeySpec {
                id: Some("old".into()),
                source: KeySource::Env(var.into()),
            }],
        };
        let ring = Keyring::load(&cfg).expect("loads").expect("a keyring");
        assert_eq!(ring.active_id(), &KeyId::derived(&[0x11; 32]));
        assert_eq!(ring.ids().nth(1).map(KeyId::as_str), Some("old"));
        let missing = EncryptionConfig {
            active: Some(KeySpec {
                id: Some("k".into()),
                source: KeySource::Env("PUBQ_TEST_CRYPT_KEY_UNSET".into()),
            }),
            older: vec![],
        };
        assert!(matches!(
            Keyring::load(&missing),
            Err(KeyringError::Env { .. })
        ));
        std::fs::write(&f, "not a key").expect("write");
        assert!(matches!(
            Keyring::load(&cfg),
            Err(KeyringError::Format { .. })
        ));
        assert!(Keyring::load(&EncryptionConfig::default())
            .expect("no keys")
            .is_none());
    }
}
