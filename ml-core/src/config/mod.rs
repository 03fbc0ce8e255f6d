//! Configuration: the plumbing every connector builder shares ([`ConfigKey`],
//! [`ConfigValues`], [`Env`], [`check_url`]) and the pipeline description read from a TOML
//! file ([`pipeline`]).
//!
//! # Builder plumbing
//!
//! A connector lists its keys as an enum implementing [`ConfigKey`] (environment name,
//! secret or not). Its builder keeps the raw values in a [`ConfigValues`] until `build()`,
//! which parses them with the typed getters; every error names the key
//! (`invalid configuration `ORACLE_FUSION_PAGE_SIZE`: ...`).
//!
//! * `from_env()` is `from_env_with(&ProcessEnv)`; tests pass a [`MapEnv`].
//! * **Empty values count as unset**, everywhere: `from_env_with` skips a variable that is
//!   empty or only whitespace (a `KEY=` line in a `.env` file), and the getters treat a
//!   value set to `""` as absent. A required key that is empty is therefore "not set".
//! * Unknown key names are refused ([`ConfigValues::set_str`]), never silently ignored.
//! * URLs follow one policy ([`check_url`]): `https`, or `http` only to a loopback address
//!   (`127.0.0.0/8`, `::1`, `localhost`: the sandbox), never with credentials inside.
//!
//! ```
//! use ml_core::config::{ConfigKey, ConfigValues, MapEnv};
//!
//! #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
//! enum Key { Url, Token }
//! impl ConfigKey for Key {
//!     const ALL: &'static [Self] = &[Key::Url, Key::Token];
//!     const PREFIX: &'static str = "DEMO_";
//!     fn env_name(self) -> &'static str {
//!         match self { Key::Url => "DEMO_URL", Key::Token => "DEMO_TOKEN" }
//!     }
//!     fn is_secret(self) -> bool { matches!(self, Key::Token) }
//! }
//!
//! let env = MapEnv::from([("DEMO_URL", "http://example.com"), ("DEMO_TOKEN", "hunter2")]);
//! let values = ConfigValues::<Key>::from_env_with(&env);
//! assert!(!format!("{values:?}").contains("hunter2"));
//! let err = values.url(Key::Url, None).unwrap_err();
//! assert!(err.to_string().contains("DEMO_URL"));
//! assert!(ConfigValues::<Key>::new().set_str("DEMO_NOPE", "x").is_err());
//! ```

pub mod assemble;
pub mod interpolate;
mod macros;
pub mod pipeline;

pub use assemble::{Assembled, LimiterFactory, Registry, SinkFactory, SourceFactory};
pub use pipeline::PipelineConfig;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use secrecy::{ExposeSecret as _, SecretString};
use url::Url;

use crate::error::{Error, Result};

/// Where configuration values come from: the process environment ([`ProcessEnv`]) or a map
/// ([`MapEnv`], for tests and for values read from a file).
pub trait Env: Send + Sync {
    /// The value of `name`, if set (empty values are returned as they are; callers treat
    /// them as unset).
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// An environment held in a map (tests, or values gathered elsewhere). `Debug` shows the
/// names only: values may be secrets.
#[derive(Clone, Default)]
pub struct MapEnv(BTreeMap<String, String>);

impl MapEnv {
    /// An empty environment.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a variable.
    #[must_use]
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.0.insert(name.into(), value.into());
        self
    }

    /// Sets a variable in place.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.insert(name.into(), value.into());
    }
}

impl<K: Into<String>, V: Into<String>, const N: usize> From<[(K, V); N]> for MapEnv {
    fn from(pairs: [(K, V); N]) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

impl fmt::Debug for MapEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("MapEnv")
            .field(&self.0.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Env for MapEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

impl<E: Env + ?Sized> Env for &E {
    fn var(&self, name: &str) -> Option<String> {
        (**self).var(name)
    }
}

/// A connector's configuration key: its environment variable, and whether its value is a
/// secret (kept in a [`SecretString`], never shown).
pub trait ConfigKey: Copy + Ord + fmt::Debug + Send + Sync + 'static {
    /// Every key, in documentation order.
    const ALL: &'static [Self];

    /// The environment variable (`SLACK_BOT_TOKEN`); also the name errors use.
    fn env_name(self) -> &'static str;

    /// Whether the value is a secret.
    fn is_secret(self) -> bool;

    /// The prefix the short names drop (`SLACK_` for `SLACK_BOT_TOKEN`).
    const PREFIX: &'static str;

    /// The key for a name: the environment variable, or its short form without
    /// [`PREFIX`](Self::PREFIX) (`bot_token` for `SLACK_BOT_TOKEN`), case-insensitive.
    fn from_name(name: &str) -> Option<Self> {
        let wanted = name.trim().to_ascii_uppercase().replace('-', "_");
        Self::ALL.iter().copied().find(|k| {
            let env = k.env_name();
            env == wanted || env.strip_prefix(Self::PREFIX) == Some(wanted.as_str())
        })
    }
}

/// Raw values of a builder, held until `build()`. Secrets are kept apart, as
/// [`SecretString`]s; `Debug` shows their names only.
#[derive(Clone)]
pub struct ConfigValues<K: ConfigKey> {
    values: BTreeMap<K, String>,
    secrets: BTreeMap<K, SecretString>,
}

impl<K: ConfigKey> Default for ConfigValues<K> {
    fn default() -> Self {
        Self {
            values: BTreeMap::new(),
            secrets: BTreeMap::new(),
        }
    }
}

impl<K: ConfigKey> fmt::Debug for ConfigValues<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (k, v) in &self.values {
            m.entry(&k.env_name(), v);
        }
        for k in self.secrets.keys() {
            m.entry(&k.env_name(), &"<redacted>");
        }
        m.finish()
    }
}

impl<K: ConfigKey> ConfigValues<K> {
    /// No values.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every key's environment variable, skipping unset and empty ones.
    pub fn from_env_with(env: &impl Env) -> Self {
        let mut v = Self::new();
        for &k in K::ALL {
            if let Some(value) = env.var(k.env_name())
                && !value.trim().is_empty()
            {
                v.set(k, value);
            }
        }
        v
    }

    /// Sets a value (parsed at `build()`).
    pub fn set(&mut self, key: K, value: impl Into<String>) {
        let value = value.into();
        if key.is_secret() {
            self.values.remove(&key);
            self.secrets.insert(key, SecretString::from(value));
        } else {
            self.secrets.remove(&key);
            self.values.insert(key, value);
        }
    }

    /// Sets a secret value.
    pub fn set_secret(&mut self, key: K, value: SecretString) {
        self.values.remove(&key);
        self.secrets.insert(key, value);
    }

    /// Sets a value by name ([`ConfigKey::from_name`]); an unknown name is an error naming
    /// it and listing the known ones.
    pub fn set_str(&mut self, name: &str, value: impl Into<String>) -> Result<K> {
        let key = K::from_name(name).ok_or_else(|| unknown_key::<K>(name))?;
        self.set(key, value);
        Ok(key)
    }

    /// Removes a value.
    pub fn remove(&mut self, key: K) {
        self.values.remove(&key);
        self.secrets.remove(&key);
    }

    /// Whether a non-empty value is set.
    pub fn is_set(&self, key: K) -> bool {
        self.get(key).is_some() || self.secret(key).is_some()
    }

    /// The trimmed value of a plain key (`None` when unset or empty).
    pub fn get(&self, key: K) -> Option<&str> {
        self.values
            .get(&key)
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
    }

    /// The value of a secret key (`None` when unset or empty).
    pub fn secret(&self, key: K) -> Option<&SecretString> {
        self.secrets
            .get(&key)
            .filter(|s| !s.expose_secret().trim().is_empty())
    }

    /// A plain value that must be set.
    pub fn require(&self, key: K) -> Result<&str> {
        self.get(key)
            .ok_or_else(|| Error::config(key.env_name(), "is not set"))
    }

    /// A secret that must be set.
    pub fn require_secret(&self, key: K) -> Result<&SecretString> {
        self.secret(key)
            .ok_or_else(|| Error::config(key.env_name(), "is not set"))
    }

    /// A plain value parsed with `FromStr`; the error names the key and the value.
    pub fn parse<T>(&self, key: K) -> Result<Option<T>>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        self.get(key)
            .map(|v| {
                v.parse::<T>()
                    .map_err(|e| Error::config(key.env_name(), format!("`{v}`: {e}")))
            })
            .transpose()
    }

    /// A boolean (`true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`).
    pub fn bool(&self, key: K) -> Result<Option<bool>> {
        self.get(key)
            .map(|v| match v.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" => Ok(false),
                _ => Err(Error::config(
                    key.env_name(),
                    format!("`{v}` is not true or false"),
                )),
            })
            .transpose()
    }

    /// A URL checked with [`check_url`] (`default` when unset).
    pub fn url(&self, key: K, default: Option<&str>) -> Result<Option<Url>> {
        self.get(key)
            .or(default)
            .map(|raw| check_url(key.env_name(), raw))
            .transpose()
    }

    /// The keys that hold a value.
    pub fn keys(&self) -> impl Iterator<Item = K> + '_ {
        self.values.keys().chain(self.secrets.keys()).copied()
    }
}

/// The error for a name that is no key of `K`.
pub fn unknown_key<K: ConfigKey>(name: &str) -> Error {
    let known: Vec<&str> = K::ALL.iter().map(|k| k.env_name()).collect();
    Error::config(
        name.trim(),
        format!("unknown configuration key (known: {})", known.join(", ")),
    )
}

/// The one URL policy of every connector: an absolute `https` URL, or `http` only to a
/// loopback address (`127.0.0.0/8`, `::1`, `localhost`: the sandbox), without credentials,
/// query or fragment. Credentials never leave the machine in clear text. The error names
/// `key` and never repeats a password.
pub fn check_url(key: &str, raw: &str) -> Result<Url> {
    let url = Url::parse(raw.trim())
        .map_err(|e| Error::config(key, format!("not a valid absolute URL: {e}")))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::config(key, "must not contain credentials"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::config(key, "must not have a query or fragment"));
    }
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(Error::config(
                key,
                format!(
                    "http is only allowed to a loopback address (127.0.0.1, ::1, localhost), not `{}`: use https",
                    url.host_str().unwrap_or_default()
                ),
            ));
        }
        other => {
            return Err(Error::config(
                key,
                format!("scheme must be https (http only to loopback), not `{other}`"),
            ));
        }
    }
    Ok(url)
}

/// Whether a URL's host is a loopback address or `localhost`.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod pipeline_tests;
