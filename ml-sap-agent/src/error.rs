//! The one error type of `ml-sap-agent`.

use ml_core::error::{Error, ErrorClass};
use ml_core::webhook::Rejection;

/// Errors of the relay (host and agent). Messages never contain a key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// A configuration value is missing or invalid.
    #[error("invalid configuration `{key}`: {message}")]
    Config {
        /// The key (`ML_RELAY_URL`, ...).
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The connection to the host could not be opened or broke.
    #[error("relay connection: {0}")]
    Connection(String),
    /// The other side refused us, or sent something that failed verification (a forged,
    /// replayed or expired message): the session is closed.
    #[error("relay authentication: {0}")]
    Auth(String),
    /// The other side broke the protocol (an unexpected message).
    #[error("relay protocol: {0}")]
    Protocol(String),
}

impl RelayError {
    /// How the caller should handle it: a refused key is permanent until someone fixes the
    /// configuration; the rest is retried with backoff.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Config { .. } | Self::Auth(_) => ErrorClass::Permanent,
            Self::Connection(_) | Self::Protocol(_) => ErrorClass::RETRYABLE,
        }
    }

    /// A configuration error naming its key.
    pub fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Config {
            key: key.into(),
            message: message.into(),
        }
    }

    pub(crate) fn rejected(what: &str, r: &Rejection) -> Self {
        Self::Auth(format!("{what} refused: {}", r.as_str()))
    }
}

impl From<RelayError> for Error {
    fn from(e: RelayError) -> Self {
        match e {
            RelayError::Config { key, message } => Error::config(key, message),
            RelayError::Auth(message) => Error::Auth {
                class: ErrorClass::Permanent,
                message,
            },
            other => {
                let class = other.class();
                Error::remote("SapRelay", class, other.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert!(
            RelayError::Connection("reset".into())
                .class()
                .is_retryable()
        );
        assert_eq!(
            RelayError::rejected("welcome", &Rejection::Replayed).to_string(),
            "relay authentication: welcome refused: replayed"
        );
        let e: Error = RelayError::config("ML_RELAY_KEY", "required").into();
        assert!(matches!(e, Error::Config { .. }));
    }
}
