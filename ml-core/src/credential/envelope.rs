//! Envelope encryption for credentials at rest.
//!
//! Each value is encrypted with its own random 256-bit data key (XChaCha20-Poly1305, a
//! random 192-bit nonce); the data key is encrypted ("wrapped") with the master key. Both
//! ciphertexts bind the credential's name and version as associated data, so a ciphertext
//! copied to another name, or an old version replayed over a newer row, fails to open.
//!
//! Rotating the master key re-wraps the data keys only ([`KeyRing::rewrap`]); values are
//! not re-encrypted. While a rotation runs, the ring holds the new key as current and the
//! old one as previous, so every row opens whichever key wrapped it; a crash half-way
//! leaves some rows under each, and rerunning the rotation finishes the job.
//!
//! The master key comes from `ML_MASTER_KEY` (base64 of 32 bytes) or `ML_MASTER_KEY_FILE`
//! (a file holding the base64 text or the 32 raw bytes, refused if group or others may
//! read it); `ML_MASTER_KEY_PREVIOUS` / `ML_MASTER_KEY_PREVIOUS_FILE` name the key being
//! rotated away from. Keys are identified by a fingerprint ([`KeyId`]) stored beside each
//! row, never by the key.

use std::fmt::{self, Debug, Display};
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::CredentialName;
use crate::error::{Error, Result};

/// Length of a master key and of a data key, in bytes.
pub const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// Environment variable holding the master key (base64 of 32 bytes).
pub const ENV_MASTER_KEY: &str = "ML_MASTER_KEY";
/// Environment variable naming a file holding the master key.
pub const ENV_MASTER_KEY_FILE: &str = "ML_MASTER_KEY_FILE";
/// Environment variable holding the previous master key during a rotation.
pub const ENV_MASTER_KEY_PREVIOUS: &str = "ML_MASTER_KEY_PREVIOUS";
/// Environment variable naming a file holding the previous master key.
pub const ENV_MASTER_KEY_PREVIOUS_FILE: &str = "ML_MASTER_KEY_PREVIOUS_FILE";

/// A master key's fingerprint: the first 8 bytes of a domain-separated SHA-256 of the key,
/// in hex. Stored beside every row so the right key is picked and a wrong key is named.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    /// A fingerprint as stored.
    pub fn from_stored(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The fingerprint's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

/// A 256-bit master key. Zeroed when dropped; `Debug` shows its fingerprint only.
pub struct MasterKey {
    bytes: Zeroizing<[u8; KEY_LEN]>,
    id: KeyId,
}

impl MasterKey {
    /// A key from its bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        let bytes = Zeroizing::new(bytes);
        let mut h = Sha256::new();
        h.update(b"ml-connector master key id v1\0");
        h.update(bytes.as_slice());
        let digest = h.finalize();
        let id = KeyId(
            digest[..8]
                .iter()
                .fold(String::with_capacity(16), |mut s, b| {
                    use std::fmt::Write as _;
                    let _ = write!(s, "{b:02x}");
                    s
                }),
        );
        Self { bytes, id }
    }

    /// A new random key.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        rand::rng().fill_bytes(bytes.as_mut_slice());
        Self::from_bytes(*bytes)
    }

    /// Parses the base64 text of 32 bytes (standard alphabet, padding optional). `what`
    /// names the setting in errors, which never repeat the text.
    pub fn from_base64(text: &str, what: &str) -> Result<Self> {
        let decoded = Zeroizing::new(decode_base64(text.trim()).ok_or_else(|| {
            Error::config(
                what,
                "is not base64 (expected the base64 text of 32 random bytes)",
            )
        })?);
        let bytes: [u8; KEY_LEN] = decoded.as_slice().try_into().map_err(|_| {
            Error::config(
                what,
                format!(
                    "decodes to {} bytes; a master key is {KEY_LEN}",
                    decoded.len()
                ),
            )
        })?;
        Ok(Self::from_bytes(bytes))
    }

    /// The key as base64 text (for `credentials generate-key`-style tooling).
    pub fn to_base64(&self) -> SecretString {
        SecretString::from(encode_base64(self.bytes.as_slice()))
    }

    /// Reads a key file: the base64 text of the key, or its 32 raw bytes. On Unix the file
    /// must not be readable or writable by group or others.
    pub fn from_file(path: &Path, what: &str) -> Result<Self> {
        let shown = path.display();
        let meta = std::fs::metadata(path)
            .map_err(|e| Error::config(what, format!("cannot read `{shown}`: {e}")))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(Error::config(
                    what,
                    format!(
                        "`{shown}` is accessible to group or others (mode {:o}); \
                         run `chmod 600 {shown}`",
                        mode & 0o777
                    ),
                ));
            }
        }
        #[cfg(not(unix))]
        let _ = meta;
        let content = Zeroizing::new(
            std::fs::read(path)
                .map_err(|e| Error::config(what, format!("cannot read `{shown}`: {e}")))?,
        );
        if let Ok(raw) = <[u8; KEY_LEN]>::try_from(content.as_slice())
            && std::str::from_utf8(&raw).is_err()
        {
            return Ok(Self::from_bytes(raw));
        }
        let text = std::str::from_utf8(&content).map_err(|_| {
            Error::config(
                what,
                format!("`{shown}` holds neither base64 text nor 32 raw bytes"),
            )
        })?;
        Self::from_base64(text, what)
    }

    /// The key's fingerprint.
    pub fn id(&self) -> &KeyId {
        &self.id
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(Key::from_slice(self.bytes.as_slice()))
    }
}

impl Clone for MasterKey {
    fn clone(&self) -> Self {
        Self {
            bytes: self.bytes.clone(),
            id: self.id.clone(),
        }
    }
}

impl Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({})", self.id)
    }
}

/// A credential as stored: which master key wrapped its data key, the wrapped data key and
/// the encrypted value (each a nonce followed by the ciphertext and tag).
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The credential version bound into both ciphertexts.
    pub version: u64,
    /// The master key that wrapped the data key.
    pub key_id: KeyId,
    /// Nonce + encrypted data key.
    pub wrapped_key: Vec<u8>,
    /// Nonce + encrypted value.
    pub ciphertext: Vec<u8>,
}

impl Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealed")
            .field("version", &self.version)
            .field("key_id", &self.key_id)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

/// The master keys a store may use: the current one (new values and re-wraps) and the
/// previous ones (accepted for reading while a rotation completes).
#[derive(Clone)]
pub struct KeyRing {
    current: MasterKey,
    previous: Vec<MasterKey>,
}

impl Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("current", &self.current.id)
            .field(
                "previous",
                &self.previous.iter().map(|k| &k.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn credential_error(name: &CredentialName, message: impl Into<String>) -> Error {
    Error::Credential {
        name: name.to_string(),
        message: message.into(),
    }
}

fn aad(kind: &str, name: &CredentialName, version: u64) -> Vec<u8> {
    format!("ml-connector {kind} v1\0{name}\0{version}").into_bytes()
}

fn seal_bytes(cipher: &XChaCha20Poly1305, msg: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rng().fill_bytes(&mut nonce);
    let ct = cipher
        .encrypt(XNonce::from_slice(&nonce), Payload { msg, aad })
        .ok()?;
    let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Some(out)
}

fn open_bytes(cipher: &XChaCha20Poly1305, sealed: &[u8], aad: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return None;
    }
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    cipher
        .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
        .ok()
        .map(Zeroizing::new)
}

impl KeyRing {
    /// A ring with one key.
    pub fn new(current: MasterKey) -> Self {
        Self {
            current,
            previous: Vec::new(),
        }
    }

    /// Also accepts `key` for reading (the key a rotation moves away from).
    pub fn with_previous(mut self, key: MasterKey) -> Self {
        if key.id != self.current.id && self.previous.iter().all(|k| k.id != key.id) {
            self.previous.push(key);
        }
        self
    }

    /// The ring from the process environment (module docs); `Ok(None)` when no master key
    /// is configured.
    pub fn from_env() -> Result<Option<Self>> {
        Self::from_env_with(|name| std::env::var(name).ok())
    }

    /// The ring from any variable lookup (tests use a map). Empty values count as unset.
    pub fn from_env_with(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let load = |text_var: &str, file_var: &str| -> Result<Option<MasterKey>> {
            match (get(text_var), get(file_var)) {
                (Some(_), Some(_)) => Err(Error::config(
                    text_var,
                    format!("set either {text_var} or {file_var}, not both"),
                )),
                (Some(text), None) => MasterKey::from_base64(&text, text_var).map(Some),
                (None, Some(path)) => MasterKey::from_file(Path::new(&path), file_var).map(Some),
                (None, None) => Ok(None),
            }
        };
        let current = load(ENV_MASTER_KEY, ENV_MASTER_KEY_FILE)?;
        let previous = load(ENV_MASTER_KEY_PREVIOUS, ENV_MASTER_KEY_PREVIOUS_FILE)?;
        match (current, previous) {
            (Some(c), Some(p)) => Ok(Some(Self::new(c).with_previous(p))),
            (Some(c), None) => Ok(Some(Self::new(c))),
            (None, Some(_)) => Err(Error::config(
                ENV_MASTER_KEY,
                format!("{ENV_MASTER_KEY_PREVIOUS} is set but no current master key is"),
            )),
            (None, None) => Ok(None),
        }
    }

    /// The current key's fingerprint.
    pub fn current_id(&self) -> &KeyId {
        &self.current.id
    }

    /// Every fingerprint this ring opens.
    pub fn ids(&self) -> Vec<KeyId> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .map(|k| k.id.clone())
            .collect()
    }

    fn key(&self, id: &KeyId) -> Option<&MasterKey> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| &k.id == id)
    }

    /// Encrypts `value` as version `version` of `name` under the current key.
    pub fn seal(
        &self,
        name: &CredentialName,
        version: u64,
        value: &SecretString,
    ) -> Result<Sealed> {
        let mut dek = Zeroizing::new([0u8; KEY_LEN]);
        rand::rng().fill_bytes(dek.as_mut_slice());
        let data_cipher = XChaCha20Poly1305::new(Key::from_slice(dek.as_slice()));
        let ciphertext = seal_bytes(
            &data_cipher,
            value.expose_secret().as_bytes(),
            &aad("credential", name, version),
        )
        .ok_or_else(|| credential_error(name, "could not be encrypted"))?;
        let wrapped_key = seal_bytes(
            &self.current.cipher(),
            dek.as_slice(),
            &aad("data key", name, version),
        )
        .ok_or_else(|| credential_error(name, "its data key could not be wrapped"))?;
        Ok(Sealed {
            version,
            key_id: self.current.id.clone(),
            wrapped_key,
            ciphertext,
        })
    }

    fn unwrap_key(&self, name: &CredentialName, sealed: &Sealed) -> Result<Zeroizing<Vec<u8>>> {
        let key = self.key(&sealed.key_id).ok_or_else(|| {
            credential_error(
                name,
                format!(
                    "was encrypted with master key {}, which is not configured (configured: {}); \
                     set {ENV_MASTER_KEY} to that key, or to the new key and \
                     {ENV_MASTER_KEY_PREVIOUS} to that one while rotating",
                    sealed.key_id,
                    self.ids()
                        .iter()
                        .map(KeyId::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?;
        let dek = open_bytes(
            &key.cipher(),
            &sealed.wrapped_key,
            &aad("data key", name, sealed.version),
        )
        .ok_or_else(|| {
            credential_error(
                name,
                "its data key failed authentication (tampered, corrupt, or moved from another \
                 credential); refusing to use it",
            )
        })?;
        if dek.len() != KEY_LEN {
            return Err(credential_error(name, "its data key has the wrong length"));
        }
        Ok(dek)
    }

    /// Decrypts a sealed value of `name`; a wrong key or any change to the stored bytes is
    /// an error naming the credential.
    pub fn open(&self, name: &CredentialName, sealed: &Sealed) -> Result<SecretString> {
        let dek = self.unwrap_key(name, sealed)?;
        let data_cipher = XChaCha20Poly1305::new(Key::from_slice(dek.as_slice()));
        let plain = open_bytes(
            &data_cipher,
            &sealed.ciphertext,
            &aad("credential", name, sealed.version),
        )
        .ok_or_else(|| {
            credential_error(
                name,
                "failed authentication (tampered, corrupt, or moved from another credential); \
                 refusing to use it",
            )
        })?;
        let text = String::from_utf8(plain.to_vec())
            .map_err(|_| credential_error(name, "does not decrypt to UTF-8 text"))?;
        Ok(SecretString::from(text))
    }

    /// Re-wraps the data key of a sealed value under the current key (a master key
    /// rotation). `Ok(None)` when it is already under the current key. The value's
    /// ciphertext is unchanged.
    pub fn rewrap(&self, name: &CredentialName, sealed: &Sealed) -> Result<Option<Sealed>> {
        if sealed.key_id == self.current.id {
            return Ok(None);
        }
        let dek = self.unwrap_key(name, sealed)?;
        let wrapped_key = seal_bytes(
            &self.current.cipher(),
            &dek,
            &aad("data key", name, sealed.version),
        )
        .ok_or_else(|| credential_error(name, "its data key could not be wrapped"))?;
        Ok(Some(Sealed {
            version: sealed.version,
            key_id: self.current.id.clone(),
            wrapped_key,
            ciphertext: sealed.ciphertext.clone(),
        }))
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// A few lines of base64 instead of a dependency: keys are the only thing encoded.
fn encode_base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0u32;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // Leftover bits must be zero padding, and a single leftover character is invalid.
    (acc == 0 && bits < 6).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> CredentialName {
        CredentialName::new(s).expect("name")
    }

    #[test]
    fn base64_round_trips() {
        for len in 0..40usize {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(
                decode_base64(&encode_base64(&bytes)).as_deref(),
                Some(&bytes[..])
            );
        }
        assert!(decode_base64("a").is_none());
        assert!(decode_base64("ab!c").is_none());
    }

    #[test]
    fn seal_and_open() {
        let ring = KeyRing::new(MasterKey::generate());
        let n = name("twilio.auth_token");
        let sealed = ring
            .seal(&n, 3, &SecretString::from("s3cret"))
            .expect("seal");
        assert_eq!(
            ring.open(&n, &sealed).expect("open").expose_secret(),
            "s3cret"
        );
        assert!(!sealed.ciphertext.windows(6).any(|w| w == b"s3cret"));
        assert!(!format!("{sealed:?}{ring:?}").contains("s3cret"));
    }

    #[test]
    fn a_moved_or_replayed_ciphertext_does_not_open() {
        let ring = KeyRing::new(MasterKey::generate());
        let sealed = ring
            .seal(&name("a"), 1, &SecretString::from("v"))
            .expect("seal");
        let e = ring.open(&name("b"), &sealed).expect_err("moved");
        assert!(
            e.to_string().contains("`b`") || e.to_string().contains(" b"),
            "{e}"
        );
        let mut older = sealed.clone();
        older.version = 2;
        assert!(ring.open(&name("a"), &older).is_err());
    }

    #[test]
    fn every_flipped_bit_is_refused() {
        let ring = KeyRing::new(MasterKey::generate());
        let n = name("x");
        let sealed = ring
            .seal(&n, 1, &SecretString::from("value"))
            .expect("seal");
        for i in 0..sealed.ciphertext.len() * 8 {
            let mut t = sealed.clone();
            t.ciphertext[i / 8] ^= 1 << (i % 8);
            assert!(ring.open(&n, &t).is_err(), "bit {i} of the value");
        }
        for i in 0..sealed.wrapped_key.len() * 8 {
            let mut t = sealed.clone();
            t.wrapped_key[i / 8] ^= 1 << (i % 8);
            assert!(ring.open(&n, &t).is_err(), "bit {i} of the key");
        }
    }

    #[test]
    fn a_wrong_key_is_named_not_garbage() {
        let n = name("oracle.client_secret");
        let sealed = KeyRing::new(MasterKey::generate())
            .seal(&n, 1, &SecretString::from("v"))
            .expect("seal");
        let other = KeyRing::new(MasterKey::generate());
        let e = other.open(&n, &sealed).expect_err("wrong key").to_string();
        assert!(e.contains("oracle.client_secret"), "{e}");
        assert!(e.contains(sealed.key_id.as_str()), "{e}");
    }

    #[test]
    fn rotation_rewraps_under_the_new_key() {
        let old = MasterKey::generate();
        let new = MasterKey::generate();
        let n = name("slack.bot_token");
        let sealed = KeyRing::new(old.clone())
            .seal(&n, 7, &SecretString::from("xoxb-1"))
            .expect("seal");
        let rotating = KeyRing::new(new.clone()).with_previous(old);
        assert_eq!(
            rotating.open(&n, &sealed).expect("old").expose_secret(),
            "xoxb-1"
        );
        let rewrapped = rotating
            .rewrap(&n, &sealed)
            .expect("rewrap")
            .expect("changed");
        assert_eq!(rewrapped.key_id, *new.id());
        assert!(rotating.rewrap(&n, &rewrapped).expect("again").is_none());
        let only_new = KeyRing::new(new);
        assert_eq!(
            only_new.open(&n, &rewrapped).expect("new").expose_secret(),
            "xoxb-1"
        );
        assert!(only_new.open(&n, &sealed).is_err());
    }

    #[test]
    fn keys_from_env_and_files() {
        let key = MasterKey::generate();
        let b64 = key.to_base64().expose_secret().to_owned();
        let ring = KeyRing::from_env_with(|v| (v == ENV_MASTER_KEY).then(|| b64.clone()))
            .expect("ok")
            .expect("some");
        assert_eq!(ring.current_id(), key.id());
        assert!(KeyRing::from_env_with(|_| None).expect("ok").is_none());
        let e = KeyRing::from_env_with(|v| (v == ENV_MASTER_KEY).then(|| "bm90IGEga2V5".into()))
            .expect_err("short");
        assert!(
            e.to_string().contains(ENV_MASTER_KEY) && !e.to_string().contains("bm90"),
            "{e}"
        );

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("master.key");
        std::fs::write(&path, format!("{b64}\n")).expect("write");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            let p = path.display().to_string();
            let e = KeyRing::from_env_with(|v| (v == ENV_MASTER_KEY_FILE).then(|| p.clone()))
                .expect_err("readable by others");
            assert!(e.to_string().contains("chmod 600"), "{e}");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
        let p = path.display().to_string();
        let ring = KeyRing::from_env_with(|v| (v == ENV_MASTER_KEY_FILE).then(|| p.clone()))
            .expect("file")
            .expect("some");
        assert_eq!(ring.current_id(), key.id());
    }
}
