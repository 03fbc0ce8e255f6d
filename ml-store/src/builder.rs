//! [`SqliteBuilder`]: configuration of the SQLite journal, from code or from the
//! environment.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ml_core::{Error, Result};

use crate::sqlite::SqliteAuditStore;

/// The journal file used when none is configured: `ml-audit.db` in the working directory.
pub const DEFAULT_PATH: &str = "ml-audit.db";

/// The busy timeout used when none is configured.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The configuration keys of [`SqliteBuilder`], with their environment variables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SqliteConfigKey {
    /// `ML_AUDIT_DB`: the journal file (default `ml-audit.db`); `:memory:` for an
    /// in-memory journal.
    Path,
    /// `ML_AUDIT_SYNCHRONOUS`: `normal` (default) or `full` (see
    /// [`SqliteBuilder::with_synchronous_full`]).
    Synchronous,
    /// `ML_AUDIT_BUSY_TIMEOUT_MS`: how long to wait for another connection's write lock,
    /// in milliseconds (default 5000).
    BusyTimeoutMs,
}

impl SqliteConfigKey {
    /// Every key.
    pub const ALL: [Self; 3] = [Self::Path, Self::Synchronous, Self::BusyTimeoutMs];

    /// The environment variable.
    pub fn as_env(self) -> &'static str {
        match self {
            Self::Path => "ML_AUDIT_DB",
            Self::Synchronous => "ML_AUDIT_SYNCHRONOUS",
            Self::BusyTimeoutMs => "ML_AUDIT_BUSY_TIMEOUT_MS",
        }
    }
}

impl fmt::Display for SqliteConfigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_env())
    }
}

/// Where the journal lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Location {
    /// A file.
    File(PathBuf),
    /// Memory (lost when the store is dropped).
    Memory,
}

impl Location {
    /// `:memory:` or the path, for `Display` and error messages.
    pub(crate) fn label(&self) -> String {
        match self {
            Self::File(p) => p.display().to_string(),
            Self::Memory => ":memory:".to_owned(),
        }
    }
}

/// Configures and opens a [`SqliteAuditStore`].
///
/// ```
/// use ml_store::SqliteBuilder;
///
/// let dir = tempfile::tempdir().expect("tempdir");
/// let store = SqliteBuilder::new()
///     .with_path(dir.path().join("journal.db"))
///     .with_synchronous_full()
///     .build()?;
/// assert!(store.to_string().ends_with("journal.db)"));
/// # Ok::<(), ml_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct SqliteBuilder {
    pub(crate) location: Location,
    pub(crate) synchronous_full: bool,
    pub(crate) busy_timeout: Duration,
    /// The first configuration error, reported by `build()`.
    error: Option<(SqliteConfigKey, String)>,
}

impl Default for SqliteBuilder {
    fn default() -> Self {
        Self {
            location: Location::File(PathBuf::from(DEFAULT_PATH)),
            synchronous_full: false,
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            error: None,
        }
    }
}

impl SqliteBuilder {
    /// The defaults: `ml-audit.db` in the working directory, `synchronous=NORMAL`, a 5 s busy
    /// timeout.
    pub fn new() -> Self {
        Self::default()
    }

    /// The defaults, overridden by every `ML_AUDIT_*` variable that is set (see
    /// [`SqliteConfigKey`]). Invalid values are reported by [`build`](Self::build).
    pub fn from_env() -> Self {
        let mut b = Self::new();
        for key in SqliteConfigKey::ALL {
            match std::env::var(key.as_env()) {
                Ok(v) => b = b.with_config(key, v),
                Err(std::env::VarError::NotPresent) => {}
                Err(std::env::VarError::NotUnicode(_)) => {
                    b.fail(key, "is not valid UTF-8".to_owned());
                }
            }
        }
        b
    }

    /// Sets one option from its string form (as in the environment).
    pub fn with_config(mut self, key: SqliteConfigKey, value: impl Into<String>) -> Self {
        let value = value.into();
        let v = value.trim();
        match key {
            SqliteConfigKey::Path if v.is_empty() => self.fail(key, "is empty".to_owned()),
            SqliteConfigKey::Path if v == ":memory:" => self.location = Location::Memory,
            SqliteConfigKey::Path => self.location = Location::File(PathBuf::from(v)),
            SqliteConfigKey::Synchronous => match v.to_ascii_lowercase().as_str() {
                "normal" => self.synchronous_full = false,
                "full" => self.synchronous_full = true,
                _ => self.fail(key, format!("`{v}` is neither `normal` nor `full`")),
            },
            SqliteConfigKey::BusyTimeoutMs => match v.parse::<u64>() {
                Ok(ms) => self.busy_timeout = Duration::from_millis(ms),
                Err(e) => self.fail(key, format!("`{v}` is not a number of milliseconds: {e}")),
            },
        }
        self
    }

    /// The journal file. Created (with its schema) when it does not exist; its directory
    /// must exist.
    pub fn with_path(mut self, path: impl AsRef<Path>) -> Self {
        self.location = Location::File(path.as_ref().to_path_buf());
        self
    }

    /// An in-memory journal: one connection, nothing survives the store. For tests and dry
    /// runs.
    pub fn in_memory(mut self) -> Self {
        self.location = Location::Memory;
        self
    }

    /// `PRAGMA synchronous=FULL`: every commit is fsynced before it returns, so a commit
    /// survives power loss too, at the cost of one fsync per transaction.
    ///
    /// The default, WAL with `synchronous=NORMAL`, survives a process crash (SIGKILL, panic,
    /// OOM kill) completely: a committed transaction is in the WAL file, which the OS keeps.
    /// A power loss or kernel crash may lose the last transactions (those not yet
    /// checkpointed), but never corrupts the journal; since positions are committed with the
    /// records they cover, the lost pages are simply read again.
    pub fn with_synchronous_full(mut self) -> Self {
        self.synchronous_full = true;
        self
    }

    /// How long a connection waits for another connection's write lock before a journal
    /// call fails with a retryable error.
    pub fn with_busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    fn fail(&mut self, key: SqliteConfigKey, message: String) {
        if self.error.is_none() {
            self.error = Some((key, message));
        }
    }

    /// Opens (creating or migrating when needed) the journal. Blocking: it opens the file
    /// and may migrate its schema, so call it at start-up (or from `spawn_blocking`).
    ///
    /// Errors: [`Error::Config`] naming the key for invalid configuration;
    /// [`Error::Corrupt`] naming the file when it is not a journal (not a SQLite database, a
    /// damaged one, another application's, or one written by a newer ml-store);
    /// [`Error::Store`] when it cannot be opened.
    pub fn build(self) -> Result<SqliteAuditStore> {
        if let Some((key, message)) = self.error {
            return Err(Error::config(key.as_env(), message));
        }
        SqliteAuditStore::open_with(&self).map_err(Error::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_name_the_key() {
        let e = SqliteBuilder::new()
            .with_config(SqliteConfigKey::BusyTimeoutMs, "soon")
            .build()
            .expect_err("bad timeout");
        assert!(
            matches!(&e, Error::Config { key, .. } if key == "ML_AUDIT_BUSY_TIMEOUT_MS"),
            "{e}"
        );
        let e = SqliteBuilder::new()
            .with_config(SqliteConfigKey::Path, "  ")
            .build()
            .expect_err("empty path");
        assert!(
            matches!(&e, Error::Config { key, .. } if key == "ML_AUDIT_DB"),
            "{e}"
        );
        let e = SqliteBuilder::new()
            .with_config(SqliteConfigKey::Synchronous, "off")
            .build()
            .expect_err("sync");
        assert!(
            matches!(&e, Error::Config { key, message } if key == "ML_AUDIT_SYNCHRONOUS" && message.contains("off")),
            "{e}"
        );
    }

    #[test]
    fn config_values_apply() {
        let b = SqliteBuilder::new()
            .with_config(SqliteConfigKey::Path, ":memory:")
            .with_config(SqliteConfigKey::Synchronous, "FULL")
            .with_config(SqliteConfigKey::BusyTimeoutMs, "250");
        assert_eq!(b.location, Location::Memory);
        assert!(b.synchronous_full);
        assert_eq!(b.busy_timeout, Duration::from_millis(250));
        let b = SqliteBuilder::new().with_config(SqliteConfigKey::Path, "/var/lib/ml/j.db");
        assert_eq!(
            b.location,
            Location::File(PathBuf::from("/var/lib/ml/j.db"))
        );
        assert_eq!(
            SqliteBuilder::new().location,
            Location::File(PathBuf::from(DEFAULT_PATH))
        );
    }
}
