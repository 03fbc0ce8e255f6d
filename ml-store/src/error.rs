//! [`StoreError`]: what can go wrong inside the SQLite journal, and the one mapping onto
//! [`ml_core::Error`] and its retryable / permanent classification.

use jiff::Timestamp;
use ml_core::{Error, ErrorClass};
use rusqlite::ErrorCode;

/// Errors of `ml-store`. The [`AuditStore`](ml_core::AuditStore) methods return
/// [`ml_core::Error`]; every `StoreError` converts into one ([`From`]), keeping its class:
///
/// * SQLite busy / locked (another connection holds the write lock longer than the busy
///   timeout) is [`Error::Store`] with [`ErrorClass::Retryable`];
/// * a file that is not a SQLite database, a damaged database, a journal of a newer schema,
///   or a row that cannot be decoded is [`Error::Corrupt`];
/// * every other SQLite failure (disk full, permission denied, I/O error) is
///   [`Error::Store`] with [`ErrorClass::Permanent`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite failed.
    #[error("{context}: {source}")]
    Sqlite {
        /// The journal (its path) and what was being done.
        context: String,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// The file exists but is not an ml-connector journal (not a SQLite database, a damaged
    /// one, or a SQLite database of another application).
    #[error("`{path}` is not an ml-connector journal: {reason}")]
    NotAJournal {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The journal was written by a newer ml-store.
    #[error(
        "`{path}` has journal schema version {found}, but this ml-store knows versions up to \
         {supported}; open it with a newer ml-store"
    )]
    SchemaTooNew {
        /// The file.
        path: String,
        /// The version found in the file (`PRAGMA user_version`).
        found: i64,
        /// The newest version this code knows.
        supported: i64,
    },
    /// A row of the journal cannot be decoded (unparsable JSON, an unknown status).
    #[error("`{path}`: {message}")]
    CorruptRow {
        /// The journal.
        path: String,
        /// Which row and what is wrong with it.
        message: String,
    },
    /// A timestamp outside what the journal stores (integer nanoseconds since the Unix
    /// epoch: 1677-09-21 to 2262-04-11).
    #[error("timestamp {0} is outside the range the journal stores (1677-09-21 to 2262-04-11)")]
    TimestampOutOfRange(Timestamp),
    /// The journal's directory is on a network file system, where SQLite's WAL (shared
    /// memory and file locks) does not work: two hosts would corrupt it.
    #[error(
        "`{path}` is on a network file system ({fs}); SQLite's WAL journal needs a local \
         disk: put ML_AUDIT_DB on a local file system (several machines need the PostgreSQL \
         backend)"
    )]
    NetworkFileSystem {
        /// The journal file.
        path: String,
        /// The file system found.
        fs: &'static str,
    },
    /// The blocking task running the journal operation panicked or was cancelled.
    #[error("journal task failed: {0}")]
    Task(String),
    /// An error of the journal's contract (not found, invalid state, invalid record).
    #[error(transparent)]
    Core(#[from] Error),
}

/// `Result` with [`StoreError`].
pub(crate) type StoreResult<T> = std::result::Result<T, StoreError>;

impl StoreError {
    /// A SQLite error with its context (the journal and the operation).
    pub(crate) fn sqlite(context: impl Into<String>, source: rusqlite::Error) -> Self {
        Self::Sqlite {
            context: context.into(),
            source,
        }
    }

    /// A row that cannot be decoded (the journal is named by [`StoreError::in_journal`]).
    pub(crate) fn corrupt(message: impl Into<String>) -> Self {
        Self::CorruptRow {
            path: String::new(),
            message: message.into(),
        }
    }

    /// Names the journal and the operation in errors raised without them.
    #[must_use]
    pub(crate) fn in_journal(mut self, path: &str, op: &str) -> Self {
        match &mut self {
            Self::Sqlite { context, .. } if context.is_empty() => {
                *context = format!("`{path}`: {op}");
            }
            Self::CorruptRow { path: p, message } if p.is_empty() => {
                p.push_str(path);
                *message = format!("{op}: {message}");
            }
            _ => {}
        }
        self
    }
}

impl From<rusqlite::Error> for StoreError {
    /// A SQLite error; the store adds the journal and the operation before returning it.
    fn from(source: rusqlite::Error) -> Self {
        Self::Sqlite {
            context: String::new(),
            source,
        }
    }
}

/// Whether a SQLite error means the database is damaged or is not a database at all.
pub(crate) fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt)
    )
}

/// The one mapping of SQLite failures onto the pipeline's classification.
fn classify(e: &rusqlite::Error) -> ErrorClass {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => ErrorClass::RETRYABLE,
        _ => ErrorClass::Permanent,
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Core(e) => e,
            StoreError::Sqlite { context, source } => {
                if is_corruption(&source) {
                    return Error::Corrupt(format!("{context}: {source}"));
                }
                // Values that do not fit their column type are damaged rows.
                if matches!(
                    source,
                    rusqlite::Error::FromSqlConversionFailure(..)
                        | rusqlite::Error::InvalidColumnType(..)
                        | rusqlite::Error::IntegralValueOutOfRange(..)
                        | rusqlite::Error::Utf8Error(..)
                ) {
                    return Error::Corrupt(format!("{context}: {source}"));
                }
                let class = classify(&source);
                Error::store(
                    class,
                    format!("{context}: {source}"),
                    Some(Box::new(source)),
                )
            }
            e @ (StoreError::NotAJournal { .. }
            | StoreError::SchemaTooNew { .. }
            | StoreError::CorruptRow { .. }) => Error::Corrupt(e.to_string()),
            e @ StoreError::NetworkFileSystem { .. } => Error::config("ML_AUDIT_DB", e.to_string()),
            e @ StoreError::TimestampOutOfRange(_) => {
                Error::store(ErrorClass::Permanent, e.to_string(), None)
            }
            e @ StoreError::Task(_) => Error::store(ErrorClass::Permanent, e.to_string(), None),
        }
    }
}

/// Adds the journal and operation to a SQLite error (`?` on `rusqlite::Result`).
pub(crate) trait SqlContext<T> {
    /// Wraps the error with `context`.
    fn ctx(self, context: &str) -> StoreResult<T>;
}

impl<T> SqlContext<T> for rusqlite::Result<T> {
    fn ctx(self, context: &str) -> StoreResult<T> {
        self.map_err(|e| StoreError::sqlite(context, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(code: i32) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)
    }

    #[test]
    fn busy_and_locked_are_retryable_the_rest_permanent() {
        let busy: Error = StoreError::sqlite("j", failure(rusqlite::ffi::SQLITE_BUSY)).into();
        assert!(busy.class().is_retryable(), "{busy}");
        assert!(matches!(busy, Error::Store { .. }));
        let locked: Error = StoreError::sqlite("j", failure(rusqlite::ffi::SQLITE_LOCKED)).into();
        assert!(locked.class().is_retryable());
        let full: Error = StoreError::sqlite("j", failure(rusqlite::ffi::SQLITE_FULL)).into();
        assert_eq!(full.class(), ErrorClass::Permanent);
        assert!(matches!(full, Error::Store { .. }));
        let notadb: Error =
            StoreError::sqlite("`x.db`", failure(rusqlite::ffi::SQLITE_NOTADB)).into();
        assert!(
            matches!(&notadb, Error::Corrupt(m) if m.contains("x.db")),
            "{notadb}"
        );
        let core: Error = StoreError::Core(Error::NotFound("d".into())).into();
        assert!(matches!(core, Error::NotFound(_)));
        let future: Error = StoreError::SchemaTooNew {
            path: "j.db".into(),
            found: 9,
            supported: 1,
        }
        .into();
        assert!(
            matches!(&future, Error::Corrupt(m) if m.contains("j.db") && m.contains('9') && m.contains('1')),
            "{future}"
        );
    }
}
