//! Credentials at rest: the [`CredentialStore`] trait, its in-memory implementation, the
//! envelope encryption every durable store uses ([`envelope`]), and a [`RefreshTokenStore`]
//! on top of any credential store.
//!
//! A credential is a named secret (`slack.bot_token`, `sage_x3.refresh_token`,
//! `sap_ecc.password`). Stores keep values encrypted with a per-credential data key wrapped
//! by a master key ([`envelope::KeyRing`]); names, versions and update times are not secret
//! and can be listed, values never are.
//!
//! ```
//! use ml_core::credential::{CredentialName, CredentialStore, MemoryCredentialStore};
//! use secrecy::{ExposeSecret, SecretString};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> ml_core::Result<()> {
//! let store = MemoryCredentialStore::new();
//! let name = CredentialName::new("slack.bot_token")?;
//! store.put(&name, &SecretString::from("xoxb-example")).await?;
//! let value = store.get(&name).await?.expect("stored");
//! assert_eq!(value.expose_secret(), "xoxb-example");
//! // Listing shows names and versions, never values.
//! assert_eq!(store.list().await?[0].name.as_str(), "slack.bot_token");
//! # Ok(()) }
//! ```

pub mod envelope;

use std::collections::BTreeMap;
use std::fmt::{self, Debug, Display};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use jiff::Timestamp;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::auth::{RefreshTokenStore, StoredRefreshToken};
use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};

/// The longest credential name accepted.
pub const MAX_NAME_LEN: usize = 128;

/// A credential's name: 1 to [`MAX_NAME_LEN`] characters of ASCII letters, digits and
/// `. _ - : /`, starting with a letter or digit. Names are not secret (they are listed and
/// logged); they are bound to the ciphertext, so a value moved to another name does not
/// open.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CredentialName(String);

impl CredentialName {
    /// Validates a name.
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        let ok_first = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
        let ok_rest = name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/'));
        if name.len() > MAX_NAME_LEN || !ok_first || !ok_rest {
            return Err(Error::config(
                "credential name",
                format!(
                    "`{}` is not a credential name (1-{MAX_NAME_LEN} characters: letters, \
                     digits, `. _ - : /`, starting with a letter or digit)",
                    name.escape_debug()
                ),
            ));
        }
        Ok(Self(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CredentialName {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Self::new(s)
    }
}

impl From<CredentialName> for String {
    fn from(n: CredentialName) -> Self {
        n.0
    }
}

impl Display for CredentialName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Debug for CredentialName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CredentialName({})", self.0)
    }
}

/// What may be shown about a stored credential: never its value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialInfo {
    /// The name.
    pub name: CredentialName,
    /// Increases by one with every `put` of this name (from 1).
    pub version: u64,
    /// When the value was last written.
    pub updated_at: Timestamp,
}

/// Named secrets kept between runs.
///
/// Contract (checked by `testing::credential_store_conformance`):
/// * `put` replaces atomically and durably before it returns: afterwards `get` answers the
///   new value, and a crash at any point leaves the old or the new value, never neither.
///   The version goes up by one on every `put`.
/// * `get` of an unknown name is `Ok(None)`. A value that cannot be opened (wrong master
///   key, tampered ciphertext) is an error naming the credential, never garbage and never
///   `None`.
/// * `list` returns names, versions and update times, sorted by name; never values.
/// * `delete` answers whether the name existed.
/// * Values never reach `Debug`, `Display`, logs or errors.
#[async_trait]
pub trait CredentialStore: Send + Sync + Debug {
    /// The current value of `name`.
    async fn get(&self, name: &CredentialName) -> Result<Option<SecretString>>;

    /// Stores `value` under `name`, replacing any previous value.
    async fn put(&self, name: &CredentialName, value: &SecretString) -> Result<CredentialInfo>;

    /// Removes `name`; `true` if it existed.
    async fn delete(&self, name: &CredentialName) -> Result<bool>;

    /// Every stored credential's name, version and update time, sorted by name.
    async fn list(&self) -> Result<Vec<CredentialInfo>>;
}

/// A [`CredentialStore`] in memory (tests, hosts that load secrets from elsewhere). Nothing
/// survives the process, and nothing is encrypted: it never touches a disk.
#[derive(Clone, Default)]
pub struct MemoryCredentialStore {
    values: Arc<Mutex<BTreeMap<CredentialName, (SecretString, CredentialInfo)>>>,
    clock: Option<Arc<dyn Clock>>,
}

impl MemoryCredentialStore {
    /// An empty store on the system clock.
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses `clock` for update times.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    fn now(&self) -> Timestamp {
        self.clock
            .as_ref()
            .map_or_else(|| SystemClock.now(), |c| c.now())
    }
}

impl Debug for MemoryCredentialStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self
            .values
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .map(ToString::to_string)
            .collect();
        f.debug_struct("MemoryCredentialStore")
            .field("names", &names)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl CredentialStore for MemoryCredentialStore {
    async fn get(&self, name: &CredentialName) -> Result<Option<SecretString>> {
        Ok(self
            .values
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .map(|(v, _)| v.clone()))
    }

    async fn put(&self, name: &CredentialName, value: &SecretString) -> Result<CredentialInfo> {
        let now = self.now();
        let mut values = self.values.lock().unwrap_or_else(PoisonError::into_inner);
        let version = values.get(name).map_or(0, |(_, i)| i.version) + 1;
        let info = CredentialInfo {
            name: name.clone(),
            version,
            updated_at: now,
        };
        values.insert(name.clone(), (value.clone(), info.clone()));
        Ok(info)
    }

    async fn delete(&self, name: &CredentialName) -> Result<bool> {
        Ok(self
            .values
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name)
            .is_some())
    }

    async fn list(&self) -> Result<Vec<CredentialInfo>> {
        Ok(self
            .values
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(|(_, i)| i.clone())
            .collect())
    }
}

/// An [`Env`](crate::config::Env) that answers `credential:NAME` (the
/// `${credential:NAME}` references of a pipeline file) from a [`CredentialStore`], and
/// everything else from another `Env`.
///
/// The credentials are read once, when it is made (configuration is read once, to build
/// the connectors); `Debug` shows their names only.
pub struct CredentialEnv<E> {
    inner: E,
    values: BTreeMap<String, SecretString>,
}

impl<E: crate::config::Env> CredentialEnv<E> {
    /// Reads every credential of `store` (so a wrong or missing master key fails here,
    /// naming the credential, before anything starts).
    pub async fn load(inner: E, store: &dyn CredentialStore) -> Result<Self> {
        let mut values = BTreeMap::new();
        for info in store.list().await? {
            if let Some(v) = store.get(&info.name).await? {
                values.insert(info.name.to_string(), v);
            }
        }
        Ok(Self { inner, values })
    }

    /// The names of the credentials it holds.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }
}

impl<E> Debug for CredentialEnv<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialEnv")
            .field("credentials", &self.values.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl<E: crate::config::Env> crate::config::Env for CredentialEnv<E> {
    fn var(&self, name: &str) -> Option<String> {
        match name.strip_prefix(crate::config::interpolate::CREDENTIAL_PREFIX) {
            Some(c) => self.values.get(c).map(|v| v.expose_secret().to_owned()),
            None => self.inner.var(name),
        }
    }
}

/// A [`RefreshTokenStore`] keeping the token (and its expiry) as one credential, so a
/// rotating refresh token (Sage X3, Slack token rotation) is encrypted at rest and written
/// durably before the new access token is used.
#[derive(Clone, Debug)]
pub struct CredentialRefreshTokenStore {
    store: Arc<dyn CredentialStore>,
    name: CredentialName,
}

impl CredentialRefreshTokenStore {
    /// The refresh token kept under `name` in `store`.
    pub fn new(store: Arc<dyn CredentialStore>, name: CredentialName) -> Self {
        Self { store, name }
    }
}

/// The stored form: the token and its expiry, as JSON inside the secret.
#[derive(Serialize, Deserialize)]
struct RefreshTokenJson {
    token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pairing: Option<String>,
}

#[async_trait]
impl RefreshTokenStore for CredentialRefreshTokenStore {
    async fn load(&self) -> Result<Option<StoredRefreshToken>> {
        let Some(value) = self.store.get(&self.name).await? else {
            return Ok(None);
        };
        let text = value.expose_secret().trim();
        if !text.starts_with('{') {
            // A bare token an operator stored (`ml-connector credentials set`) after a new
            // pairing: its expiry is unknown until the next renewal.
            if text.is_empty() || text.chars().any(char::is_whitespace) {
                return Err(Error::Credential {
                    name: self.name.to_string(),
                    message: "holds no usable refresh token (empty, or with spaces)".into(),
                });
            }
            return Ok(Some(StoredRefreshToken::new(
                SecretString::from(text.to_owned()),
                None,
            )));
        }
        let parsed: RefreshTokenJson =
            serde_json::from_str(text).map_err(|_| Error::Credential {
                name: self.name.to_string(),
                message: "does not hold a refresh token (neither a bare token nor the JSON \
                          this store writes)"
                    .into(),
            })?;
        Ok(Some(
            StoredRefreshToken::new(SecretString::from(parsed.token), parsed.expires_at)
                .with_pairing(parsed.pairing),
        ))
    }

    async fn save(&self, token: &StoredRefreshToken) -> Result<()> {
        let json = serde_json::to_string(&RefreshTokenJson {
            token: token.token.expose_secret().to_owned(),
            expires_at: token.expires_at,
            pairing: token.pairing.clone(),
        })
        .map_err(|e| Error::Credential {
            name: self.name.to_string(),
            message: format!("could not encode the refresh token: {e}"),
        })?;
        self.store
            .put(&self.name, &SecretString::from(json))
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(CredentialName::new("slack.bot_token").is_ok());
        assert!(CredentialName::new("sap:PRD/100-user").is_ok());
        for bad in ["", ".hidden", "a b", "a\nb", "é", &"x".repeat(129)] {
            let e = CredentialName::new(bad).expect_err(bad);
            assert!(e.to_string().contains("credential name"), "{e}");
        }
    }

    #[tokio::test]
    async fn memory_store_passes_the_conformance_suite() {
        crate::testing::credential::credential_store_conformance(&MemoryCredentialStore::new())
            .await;
    }

    #[tokio::test]
    async fn credential_env_answers_references_and_defers_the_rest() {
        use crate::config::{Env, MapEnv};
        let store = MemoryCredentialStore::new();
        store
            .put(
                &CredentialName::new("slack.bot_token").expect("n"),
                &SecretString::from("xoxb-9"),
            )
            .await
            .expect("put");
        let env = CredentialEnv::load(MapEnv::from([("HOME_VAR", "h")]), &store)
            .await
            .expect("load");
        assert_eq!(
            env.var("credential:slack.bot_token").as_deref(),
            Some("xoxb-9")
        );
        assert_eq!(env.var("credential:missing"), None);
        assert_eq!(env.var("HOME_VAR").as_deref(), Some("h"));
        assert!(!format!("{env:?}").contains("xoxb-9"));
    }

    #[tokio::test]
    async fn refresh_tokens_round_trip_through_a_credential() {
        let store: Arc<dyn CredentialStore> = Arc::new(MemoryCredentialStore::new());
        let name = CredentialName::new("sage_x3.refresh_token").expect("name");
        let rts = CredentialRefreshTokenStore::new(Arc::clone(&store), name.clone());
        assert!(rts.load().await.expect("load").is_none());
        let expires = Timestamp::from_second(2_000_000_000).expect("ts");
        rts.save(&StoredRefreshToken::new("rt-1", Some(expires)))
            .await
            .expect("save");
        let back = rts.load().await.expect("load").expect("some");
        assert_eq!(back.token.expose_secret(), "rt-1");
        assert_eq!(back.expires_at, Some(expires));
        // What a seeding store records of the pairing survives the round trip.
        rts.save(&StoredRefreshToken::new("rt-2", None).with_pairing(Some("ab12".into())))
            .await
            .expect("save");
        assert_eq!(
            rts.load()
                .await
                .expect("load")
                .expect("some")
                .pairing
                .as_deref(),
            Some("ab12")
        );
        // An operator's `credentials set` after a new pairing stores the bare token.
        store
            .put(&name, &SecretString::from("rt-from-pairing\n"))
            .await
            .expect("put");
        let bare = rts.load().await.expect("bare").expect("some");
        assert_eq!(bare.token.expose_secret(), "rt-from-pairing");
        assert_eq!((bare.expires_at, bare.pairing), (None, None));
        for garbage in ["{not json", "two words", ""] {
            store
                .put(&name, &SecretString::from(garbage))
                .await
                .expect("put");
            let e = rts.load().await.expect_err(garbage);
            assert!(e.to_string().contains("sage_x3.refresh_token"), "{e}");
            if !garbage.is_empty() {
                assert!(!e.to_string().contains(garbage), "{e}");
            }
        }
    }
}
