//! [`PostgresBuilder`]: configuration of the PostgreSQL journal, from code or from the
//! environment.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use ml_core::config::Env;
use ml_core::{Error, Result};

use super::PostgresAuditStore;

/// The pool size used when none is configured.
pub const DEFAULT_POOL_SIZE: usize = 8;

/// The schema used when none is configured.
pub const DEFAULT_SCHEMA: &str = "ml_connector";

/// How long a call waits for a pooled connection (and a new connection for its
/// handshake) by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The configuration keys of [`PostgresBuilder`], with their environment variables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PostgresConfigKey {
    /// `ML_POSTGRES_URL`: `postgres://user[:password]@host[:port]/database[?sslmode=...]`
    /// (required). `sslmode=require` (or `verify-full`) uses TLS (rustls, verified
    /// against the platform's roots); `disable` and `prefer` (the default) do not.
    Url,
    /// `ML_POSTGRES_POOL_SIZE`: connections per process (default 8).
    PoolSize,
    /// `ML_POSTGRES_SCHEMA`: the schema holding the journal (default `ml_connector`;
    /// created when missing). Letters, digits and `_`.
    Schema,
    /// `ML_POSTGRES_CONNECT_TIMEOUT_MS`: how long to wait for a connection (default 10000).
    ConnectTimeoutMs,
}

impl PostgresConfigKey {
    /// Every key.
    pub const ALL: [Self; 4] = [
        Self::Url,
        Self::PoolSize,
        Self::Schema,
        Self::ConnectTimeoutMs,
    ];

    /// The environment variable.
    pub fn as_env(self) -> &'static str {
        match self {
            Self::Url => "ML_POSTGRES_URL",
            Self::PoolSize => "ML_POSTGRES_POOL_SIZE",
            Self::Schema => "ML_POSTGRES_SCHEMA",
            Self::ConnectTimeoutMs => "ML_POSTGRES_CONNECT_TIMEOUT_MS",
        }
    }

    /// The key for an environment variable or its short form (`url`, `pool_size`, ...).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| {
            k.as_env() == name
                || k.as_env()
                    .strip_prefix("ML_POSTGRES_")
                    .is_some_and(|s| s.eq_ignore_ascii_case(name))
        })
    }
}

impl fmt::Display for PostgresConfigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_env())
    }
}

/// Configures and opens a [`PostgresAuditStore`].
///
/// ```no_run
/// use ml_store::postgres::PostgresBuilder;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> ml_core::Result<()> {
/// let store = PostgresBuilder::new()
///     .with_url("postgres://ml@db.internal:5432/ml?sslmode=require")
///     .with_pool_size(16)
///     .build()
///     .await?;
/// println!("{store}"); // PostgresAuditStore(postgres://ml@db.internal:5432/ml, schema ml_connector)
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresBuilder {
    pub(crate) url: Option<String>,
    pub(crate) pool_size: usize,
    pub(crate) schema: String,
    pub(crate) connect_timeout: Duration,
    error: Option<(PostgresConfigKey, String)>,
}

impl fmt::Debug for PostgresBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresBuilder")
            .field("url", &self.url.as_deref().map(redact))
            .field("pool_size", &self.pool_size)
            .field("schema", &self.schema)
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

impl Default for PostgresBuilder {
    fn default() -> Self {
        Self {
            url: None,
            pool_size: DEFAULT_POOL_SIZE,
            schema: DEFAULT_SCHEMA.to_owned(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            error: None,
        }
    }
}

/// A URL with its password replaced (for `Debug`, `Display` and errors).
pub(crate) fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.set_query(None);
            u.to_string()
        }
        Err(_) => "<invalid URL>".to_owned(),
    }
}

fn valid_schema(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl PostgresBuilder {
    /// The defaults: no URL (required), a pool of 8, schema `ml_connector`.
    pub fn new() -> Self {
        Self::default()
    }

    /// The defaults, overridden by every `ML_POSTGRES_*` variable of the process that is
    /// set (see [`PostgresConfigKey`]). Invalid values are reported by
    /// [`build`](Self::build).
    pub fn from_env() -> Self {
        Self::from_env_with(&ml_core::config::ProcessEnv)
    }

    /// [`from_env`](Self::from_env) with the variables of `env`.
    pub fn from_env_with(env: &impl Env) -> Self {
        let mut b = Self::new();
        for key in PostgresConfigKey::ALL {
            if let Some(v) = env.var(key.as_env()) {
                b = b.with_config(key, v);
            }
        }
        b
    }

    /// Sets one option from its string form (as in the environment).
    pub fn with_config(mut self, key: PostgresConfigKey, value: impl Into<String>) -> Self {
        let value = value.into();
        let v = value.trim();
        match key {
            PostgresConfigKey::Url => self.url = Some(v.to_owned()),
            PostgresConfigKey::PoolSize => match v.parse::<usize>() {
                Ok(n) if n > 0 => self.pool_size = n,
                _ => self.fail(key, format!("`{v}` is not a pool size (1 or more)")),
            },
            PostgresConfigKey::Schema => v.clone_into(&mut self.schema),
            PostgresConfigKey::ConnectTimeoutMs => match v.parse::<u64>() {
                Ok(ms) if ms > 0 => self.connect_timeout = Duration::from_millis(ms),
                _ => self.fail(key, format!("`{v}` is not a number of milliseconds")),
            },
        }
        self
    }

    /// Sets one option by its environment name or short form (`url`, `pool_size`,
    /// `schema`, `connect_timeout_ms`); an unknown name is an error.
    pub fn with_config_str(self, name: &str, value: impl Into<String>) -> Result<Self> {
        let key = PostgresConfigKey::from_name(name).ok_or_else(|| {
            Error::config(
                name,
                format!(
                    "unknown PostgreSQL journal setting (known: {})",
                    PostgresConfigKey::ALL
                        .iter()
                        .map(|k| k.as_env())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?;
        Ok(self.with_config(key, value))
    }

    /// The database URL (`postgres://…`).
    pub fn with_url(self, url: impl Into<String>) -> Self {
        self.with_config(PostgresConfigKey::Url, url)
    }

    /// Connections per process.
    pub fn with_pool_size(mut self, n: usize) -> Self {
        if n == 0 {
            self.fail(PostgresConfigKey::PoolSize, "must be at least 1".to_owned());
        } else {
            self.pool_size = n;
        }
        self
    }

    /// The schema holding the journal (created when missing): one database can hold
    /// several journals, and tests give each run its own.
    pub fn with_schema(self, schema: impl Into<String>) -> Self {
        self.with_config(PostgresConfigKey::Schema, schema)
    }

    /// How long to wait for a connection.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    fn fail(&mut self, key: PostgresConfigKey, message: String) {
        if self.error.is_none() {
            self.error = Some((key, message));
        }
    }

    /// Checks the configuration and parses the URL.
    pub(crate) fn config(&self) -> Result<(tokio_postgres::Config, bool, String)> {
        if let Some((key, message)) = &self.error {
            return Err(Error::config(key.as_env(), message.clone()));
        }
        let key = PostgresConfigKey::Url.as_env();
        let raw = self
            .url
            .as_deref()
            .filter(|u| !u.is_empty())
            .ok_or_else(|| Error::config(key, "is required (postgres://user@host/database)"))?;
        if !(raw.starts_with("postgres://") || raw.starts_with("postgresql://")) {
            return Err(Error::config(
                key,
                format!("`{}` is not a postgres:// URL", redact(raw)),
            ));
        }
        if !valid_schema(&self.schema) {
            return Err(Error::config(
                PostgresConfigKey::Schema.as_env(),
                format!(
                    "`{}` is not a schema name this store uses (lowercase letters, digits \
                     and `_`, starting with a letter or `_`, at most 63)",
                    self.schema.escape_debug()
                ),
            ));
        }
        // tokio-postgres knows disable/prefer/require; the rustls connector always verifies
        // the server, so `verify-ca` and `verify-full` are `require` here.
        let verify = raw.contains("sslmode=verify-ca") || raw.contains("sslmode=verify-full");
        let parsed = raw
            .replace("sslmode=verify-full", "sslmode=require")
            .replace("sslmode=verify-ca", "sslmode=require");
        let mut config = tokio_postgres::Config::from_str(&parsed).map_err(|e| {
            // The parser's message never repeats the password.
            Error::config(key, format!("`{}`: {e}", redact(raw)))
        })?;
        let tls = verify
            || matches!(
                config.get_ssl_mode(),
                tokio_postgres::config::SslMode::Require
            );
        config
            .options(format!("-c search_path={}", self.schema))
            .application_name("ml-connector")
            .connect_timeout(self.connect_timeout);
        Ok((config, tls, redact(raw)))
    }

    /// Connects, creates or migrates the journal schema, and returns the store.
    ///
    /// Errors: [`Error::Config`] naming the key for invalid configuration;
    /// [`Error::Corrupt`] when the schema belongs to something else or to a newer
    /// ml-store; [`Error::Store`] (retryable) when the database cannot be reached.
    pub async fn build(self) -> Result<PostgresAuditStore> {
        PostgresAuditStore::open_with(&self).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ml_core::config::MapEnv;

    #[test]
    fn config_errors_name_the_key_and_never_the_password() {
        let e = PostgresBuilder::new().config().expect_err("no url");
        assert!(
            matches!(&e, Error::Config { key, .. } if key == "ML_POSTGRES_URL"),
            "{e}"
        );
        let e = PostgresBuilder::new()
            .with_url("mysql://u:hunter2@h/db")
            .config()
            .expect_err("scheme");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let e = PostgresBuilder::from_env_with(&MapEnv::from([
            ("ML_POSTGRES_URL", "postgres://u:hunter2@h/db"),
            ("ML_POSTGRES_POOL_SIZE", "0"),
        ]))
        .config()
        .expect_err("pool");
        assert!(
            matches!(&e, Error::Config { key, .. } if key == "ML_POSTGRES_POOL_SIZE"),
            "{e}"
        );
        let e = PostgresBuilder::new()
            .with_url("postgres://u@h/db")
            .with_schema("Robert'); DROP")
            .config()
            .expect_err("schema");
        assert!(
            matches!(&e, Error::Config { key, .. } if key == "ML_POSTGRES_SCHEMA"),
            "{e}"
        );
        let b = PostgresBuilder::new().with_url("postgres://u:hunter2@h/db");
        assert!(!format!("{b:?}").contains("hunter2"));
        assert!(
            PostgresBuilder::new()
                .with_config_str("bogus", "1")
                .is_err()
        );
        assert!(
            PostgresBuilder::new()
                .with_config_str("pool_size", "3")
                .is_ok_and(|b| b.pool_size == 3)
        );
    }

    #[test]
    fn sslmode_selects_tls() {
        let (_, tls, label) = PostgresBuilder::new()
            .with_url("postgres://u:pw@h:5433/db?sslmode=require")
            .config()
            .expect("config");
        assert!(tls);
        assert_eq!(label, "postgres://u:***@h:5433/db");
        let (_, tls, _) = PostgresBuilder::new()
            .with_url("postgres://u@h/db")
            .config()
            .expect("config");
        assert!(!tls);
        let (_, tls, label) = PostgresBuilder::new()
            .with_url("postgresql://u@h/db?sslmode=verify-full")
            .config()
            .expect("verify-full");
        assert!(tls);
        assert_eq!(label, "postgresql://u@h/db");
    }
}
