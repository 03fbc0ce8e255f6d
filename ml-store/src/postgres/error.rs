//! The one mapping of PostgreSQL and pool failures onto [`ml_core::Error`] and its
//! retryable / permanent classification.
//!
//! * A lost or refused connection, a pool that cannot hand out a connection in time, a
//!   serialization failure or deadlock, a server shutting down or out of resources: the
//!   database will be back, so [`Error::Store`] with [`ErrorClass::Retryable`].
//! * A value PostgreSQL cannot hold (a NUL byte in a text column), a constraint violation,
//!   a permission error, SQL the server does not know: permanent.
//! * Data that cannot be decoded: [`Error::Corrupt`].
//!
//! Messages carry the journal's label (host, database, schema; never the password) and
//! the operation.

use ml_core::{Error, ErrorClass};
use tokio_postgres::error::SqlState;

/// Adds context to a PostgreSQL or pool result, producing an [`ml_core::Error`].
pub(crate) trait Db<T> {
    /// Wraps the error with `context` (the journal and what was being done).
    fn db(self, context: &str) -> ml_core::Result<T>;
}

impl<T> Db<T> for std::result::Result<T, tokio_postgres::Error> {
    fn db(self, context: &str) -> ml_core::Result<T> {
        self.map_err(|e| pg_error(context, e))
    }
}

impl<T> Db<T> for std::result::Result<T, deadpool_postgres::PoolError> {
    fn db(self, context: &str) -> ml_core::Result<T> {
        self.map_err(|e| pool_error(context, e))
    }
}

impl<T> Db<T> for std::result::Result<T, crate::error::StoreError> {
    fn db(self, context: &str) -> ml_core::Result<T> {
        self.map_err(|e| match e {
            crate::error::StoreError::CorruptRow { message, .. } => {
                Error::Corrupt(format!("{context}: {message}"))
            }
            other => Error::from(other),
        })
    }
}

/// The class of a PostgreSQL error.
pub(crate) fn classify(e: &tokio_postgres::Error) -> ErrorClass {
    let Some(code) = e.code() else {
        // No SQLSTATE: the connection broke, timed out or was never made (retryable), or
        // a value could not be encoded or decoded (a bug or damage: permanent).
        let text = e.to_string();
        let transport = e.is_closed()
            || std::error::Error::source(e)
                .is_some_and(<dyn std::error::Error>::is::<std::io::Error>)
            || text.contains("connect")
            || text.contains("timeout")
            || text.contains("timed out");
        return if transport {
            ErrorClass::RETRYABLE
        } else {
            ErrorClass::Permanent
        };
    };
    let s = code.code();
    let transient = *code == SqlState::T_R_SERIALIZATION_FAILURE
        || *code == SqlState::T_R_DEADLOCK_DETECTED
        || *code == SqlState::LOCK_NOT_AVAILABLE
        || *code == SqlState::QUERY_CANCELED
        || *code == SqlState::ADMIN_SHUTDOWN
        || *code == SqlState::CRASH_SHUTDOWN
        || *code == SqlState::CANNOT_CONNECT_NOW
        || *code == SqlState::TOO_MANY_CONNECTIONS
        || *code == SqlState::READ_ONLY_SQL_TRANSACTION
        // 08: connection exception; 53: insufficient resources; 58: system error (I/O).
        || s.starts_with("08")
        || s.starts_with("53")
        || s.starts_with("58");
    if transient {
        ErrorClass::RETRYABLE
    } else {
        ErrorClass::Permanent
    }
}

pub(crate) fn pg_error(context: &str, e: tokio_postgres::Error) -> Error {
    // `Display` of a server error is "db error"; its message and SQLSTATE are in the
    // details.
    let detail = match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    };
    let class = classify(&e);
    Error::store(class, format!("{context}: {detail}"), Some(Box::new(e)))
}

pub(crate) fn pool_error(context: &str, e: deadpool_postgres::PoolError) -> Error {
    match e {
        deadpool_postgres::PoolError::Backend(e) => pg_error(context, e),
        other => Error::store(
            ErrorClass::RETRYABLE,
            format!("{context}: no database connection available: {other}"),
            Some(Box::new(other)),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_timeouts_are_retryable() {
        let e = pool_error(
            "j",
            deadpool_postgres::PoolError::Timeout(deadpool_postgres::TimeoutType::Wait),
        );
        assert!(e.class().is_retryable(), "{e}");
        assert!(e.to_string().contains("no database connection"), "{e}");
    }
}
