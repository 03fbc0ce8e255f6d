//! The one error type of `ml-core`, and the retryable / permanent / in-doubt classification
//! that every connector maps its own failures onto.

use std::fmt;
use std::time::Duration;

/// A boxed error kept as the `source()` of an [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// How a failure should be handled by the caller.
///
/// Every error that crosses a trait boundary in ml-connector carries one of these, so the
/// pipeline can decide between trying again, giving up, and looking the outcome up on the
/// remote side before doing anything else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// Nothing was applied (or applying again is harmless); try again later. `retry_after`
    /// is the server's own hint (`Retry-After`, Slack's `ratelimited`, Twilio 20429), which
    /// always wins over the computed backoff.
    Retryable {
        /// How long the server asked us to wait, when it said so.
        retry_after: Option<Duration>,
    },
    /// Trying again cannot succeed until something is fixed (bad channel, invalid number,
    /// revoked token). The delivery is journaled as failed and can be replayed later.
    Permanent,
    /// The request may or may not have been applied (a timeout after the request was
    /// sent). Sending again could post twice: reconcile first where the sink can.
    InDoubt,
}

impl ErrorClass {
    /// A retryable class without a server hint.
    pub const RETRYABLE: Self = Self::Retryable { retry_after: None };

    /// True for [`ErrorClass::Retryable`].
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Retryable { .. })
    }

    /// The server's wait hint, if any.
    pub fn retry_after(self) -> Option<Duration> {
        match self {
            Self::Retryable { retry_after } => retry_after,
            _ => None,
        }
    }

    /// A short stable label, used in the journal and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retryable { .. } => "retryable",
            Self::Permanent => "permanent",
            Self::InDoubt => "in_doubt",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Retryable {
                retry_after: Some(d),
            } => write!(f, "retryable (retry after {}ms)", d.as_millis()),
            other => f.write_str(other.as_str()),
        }
    }
}

/// Errors of `ml-core`. Connector crates have their own enums and convert into this one at
/// the trait boundary, keeping their classification ([`Error::class`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is missing or invalid. Raised by `build()`, naming the key.
    #[error("invalid configuration `{key}`: {message}")]
    Config {
        /// The configuration key (e.g. `ORACLE_FUSION_URL` or `with_page_size`).
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// A saved stream position could not be understood.
    #[error("invalid stream position: {0}")]
    InvalidPosition(String),
    /// A routing rule is invalid.
    #[error("invalid routing rule `{rule}`: {message}")]
    InvalidRule {
        /// The rule's name (or its index when it has none).
        rule: String,
        /// What is wrong with it.
        message: String,
    },
    /// A record is missing a required field or holds an invalid value.
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    /// A schedule expression (cron, time zone, hours) is invalid.
    #[error("invalid schedule: {0}")]
    Schedule(String),
    /// A remote system (ERP, Slack, Twilio, token endpoint) answered with an error or could
    /// not be reached.
    #[error("{system}: {message}{}", code.as_ref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Remote {
        /// Which system and instance, as its `Display` says (`Slack(T123)`).
        system: String,
        /// How to handle it.
        class: ErrorClass,
        /// The remote error code, if any (`channel_not_found`, `21211`).
        code: Option<String>,
        /// A human-readable message. Never contains a secret.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
    /// Authentication failed or a token could not be obtained.
    #[error("authentication failed: {message}")]
    Auth {
        /// How to handle it.
        class: ErrorClass,
        /// What went wrong. Never contains a secret.
        message: String,
    },
    /// The audit journal failed.
    #[error("audit journal: {message}")]
    Store {
        /// How to handle it.
        class: ErrorClass,
        /// What went wrong.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
    /// The audit journal exists but is damaged or of an unknown format.
    #[error("audit journal is corrupt or unreadable: {0}")]
    Corrupt(String),
    /// Something asked for does not exist (a delivery id, a sink name).
    #[error("not found: {0}")]
    NotFound(String),
    /// The operation does not apply to the object's current state (replaying a delivery
    /// that did not fail, finishing an attempt that is not in flight).
    #[error("invalid state: {0}")]
    InvalidState(String),
    /// The operation is not supported by this implementation.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The operation was cancelled by a shutdown.
    #[error("cancelled by shutdown")]
    Cancelled,
    /// A source cannot reach its system because something it depends on is absent (an
    /// on-premises relay agent that is not connected). Nothing was sent and nothing is
    /// queued: the pipeline shows the stream as
    /// [`StreamState::Unavailable`](crate::pipeline::StreamState::Unavailable), checks again
    /// every `recheck` (a local check, no traffic), and resumes from the saved position once
    /// it is back. Classed retryable with `recheck` as the wait hint.
    #[error("{system}: unavailable until {waiting_for} returns: {message}")]
    Unavailable {
        /// Which system and instance (`SapEcc(relay PRD)`).
        system: String,
        /// What must come back (`relay agent for PRD`).
        waiting_for: String,
        /// Why. Never contains a secret.
        message: String,
        /// How often to check again.
        recheck: Duration,
    },
    /// A stored credential cannot be used: not decryptable with the configured master key,
    /// tampered with, or not of the expected form. Never contains the value.
    #[error("credential `{name}`: {message}")]
    Credential {
        /// The credential's name.
        name: String,
        /// What is wrong. Never contains the value.
        message: String,
    },
}

impl Error {
    /// How the caller should handle this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Remote { class, .. } | Self::Auth { class, .. } | Self::Store { class, .. } => {
                *class
            }
            Self::Cancelled => ErrorClass::RETRYABLE,
            Self::Unavailable { recheck, .. } => ErrorClass::Retryable {
                retry_after: Some(*recheck),
            },
            _ => ErrorClass::Permanent,
        }
    }

    /// The remote error code, when the remote system gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Remote { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// A remote error with a class and message.
    pub fn remote(
        system: impl Into<String>,
        class: ErrorClass,
        message: impl Into<String>,
    ) -> Self {
        Self::Remote {
            system: system.into(),
            class,
            code: None,
            message: message.into(),
            source: None,
        }
    }

    /// Adds a remote error code (no effect on other variants).
    #[must_use]
    pub fn with_code(mut self, new: impl Into<String>) -> Self {
        if let Self::Remote { code, .. } = &mut self {
            *code = Some(new.into());
        }
        self
    }

    /// Adds what an operator should check to a remote error's message, in parentheses (no
    /// effect on other variants).
    #[must_use]
    pub fn with_hint(mut self, hint: impl AsRef<str>) -> Self {
        if let Self::Remote { message, .. } = &mut self {
            message.push_str(" (");
            message.push_str(hint.as_ref());
            message.push(')');
        }
        self
    }

    /// An [`Error::Unavailable`]: `system` cannot be reached until `waiting_for` returns.
    pub fn unavailable(
        system: impl Into<String>,
        waiting_for: impl Into<String>,
        message: impl Into<String>,
        recheck: Duration,
    ) -> Self {
        Self::Unavailable {
            system: system.into(),
            waiting_for: waiting_for.into(),
            message: message.into(),
            recheck,
        }
    }

    /// A configuration error naming its key.
    pub fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Config {
            key: key.into(),
            message: message.into(),
        }
    }

    /// A journal error.
    pub fn store(class: ErrorClass, message: impl Into<String>, source: Option<BoxError>) -> Self {
        Self::Store {
            class,
            message: message.into(),
            source,
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_of_each_variant() {
        let e = Error::remote("Slack(T1)", ErrorClass::InDoubt, "timed out").with_code("x");
        assert_eq!(e.class(), ErrorClass::InDoubt);
        assert_eq!(e.code(), Some("x"));
        assert_eq!(e.to_string(), "Slack(T1): timed out (x)");
        assert_eq!(Error::config("K", "missing").class(), ErrorClass::Permanent);
        assert!(Error::Cancelled.class().is_retryable());
        let r = ErrorClass::Retryable {
            retry_after: Some(Duration::from_secs(2)),
        };
        assert_eq!(r.retry_after(), Some(Duration::from_secs(2)));
        assert_eq!(r.to_string(), "retryable (retry after 2000ms)");
        let u = Error::unavailable(
            "SapEcc(PRD)",
            "relay agent",
            "none connected",
            Duration::from_secs(5),
        );
        assert_eq!(u.class().retry_after(), Some(Duration::from_secs(5)));
        assert_eq!(
            u.to_string(),
            "SapEcc(PRD): unavailable until relay agent returns: none connected"
        );
    }
}
