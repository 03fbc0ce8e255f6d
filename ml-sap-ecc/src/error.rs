//! The one error type of `ml-sap-ecc`.

use ml_core::error::{Error, ErrorClass};

use crate::rfc::{RfcError, RfcErrorKind};

/// Errors of the SAP ECC source. Converts into [`ml_core::Error`] keeping its class.
/// Messages never contain a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SapEccError {
    /// An RFC call failed.
    #[error("{system}: {function}: {source}")]
    Rfc {
        /// `SapEcc(host, client=100)`.
        system: String,
        /// The function module.
        function: String,
        /// The RFC failure.
        #[source]
        source: RfcError,
    },
    /// A BAPI succeeded at the RFC level but returned `RETURN` rows of type E or A.
    #[error("{system}: {function}: {messages}")]
    Bapi {
        /// `SapEcc(host, client=100)`.
        system: String,
        /// The BAPI.
        function: String,
        /// The `ID/NUMBER: MESSAGE` texts of the E/A rows.
        messages: String,
    },
    /// The answer was understood as RFC but not as the data expected (a width that does
    /// not match, a row without its key).
    #[error("{system}: unexpected data: {message}")]
    Decode {
        /// `SapEcc(host, client=100)`.
        system: String,
        /// What was wrong.
        message: String,
    },
    /// Rows moved between the calls of one chunked read, every time it was tried.
    #[error("{system}: {table} changed while it was read in chunks ({message})")]
    DataMoved {
        /// `SapEcc(host, client=100)`.
        system: String,
        /// The table.
        table: String,
        /// The row counts seen.
        message: String,
    },
    /// A configuration value is missing or invalid.
    #[error("invalid configuration `{key}`: {message}")]
    Config {
        /// The key (`SAP_ECC_URL`, ...).
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl SapEccError {
    /// How the caller should handle it.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Rfc { source, .. } => source.class(),
            Self::Decode { .. } | Self::DataMoved { .. } => ErrorClass::RETRYABLE,
            Self::Bapi { .. } | Self::Config { .. } => ErrorClass::Permanent,
        }
    }

    /// A configuration error naming its key.
    pub fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Config {
            key: key.into(),
            message: message.into(),
        }
    }

    pub(crate) fn rfc(system: &str, function: &str, source: RfcError) -> Self {
        Self::Rfc {
            system: system.to_owned(),
            function: function.to_owned(),
            source,
        }
    }

    pub(crate) fn decode(system: &str, message: impl Into<String>) -> Self {
        Self::Decode {
            system: system.to_owned(),
            message: message.into(),
        }
    }

    /// The RFC failure, when this is one.
    pub fn rfc_error(&self) -> Option<&RfcError> {
        match self {
            Self::Rfc { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<SapEccError> for Error {
    fn from(e: SapEccError) -> Self {
        let class = e.class();
        match e {
            SapEccError::Config { key, message } => Error::config(key, message),
            SapEccError::Rfc {
                system,
                function,
                source,
            } => {
                if source.kind == RfcErrorKind::Logon {
                    return Error::Auth {
                        class: ErrorClass::Permanent,
                        message: format!("{system}: {}", source.message),
                    };
                }
                let code = source.code().to_owned();
                Error::remote(system, class, format!("{function}: {source}")).with_code(code)
            }
            SapEccError::Bapi {
                system,
                function,
                messages,
            } => Error::remote(system, class, format!("{function}: {messages}"))
                .with_code("BAPI_RETURN"),
            SapEccError::Decode { system, message } => {
                Error::remote(system, class, format!("unexpected data: {message}"))
            }
            SapEccError::DataMoved {
                system,
                table,
                message,
            } => Error::remote(
                system,
                class,
                format!("{table} changed during a chunked read ({message})"),
            )
            .with_code("DATA_MOVED"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversion_keeps_the_class_and_the_exception() {
        let e = SapEccError::rfc(
            "SapEcc(h, client=100)",
            "RFC_READ_TABLE",
            RfcError::new(
                RfcErrorKind::AbapException("NOT_AUTHORIZED".into()),
                "S_TABU_DIS",
            ),
        );
        assert_eq!(e.class(), ErrorClass::Permanent);
        let core: Error = e.into();
        assert_eq!(core.code(), Some("NOT_AUTHORIZED"));
        let logon: Error =
            SapEccError::rfc("s", "f", RfcError::new(RfcErrorKind::Logon, "401")).into();
        assert!(matches!(
            logon,
            Error::Auth {
                class: ErrorClass::Permanent,
                ..
            }
        ));
        let busy: Error =
            SapEccError::rfc("s", "f", RfcError::system_failure("no work process")).into();
        assert!(busy.class().is_retryable());
        assert_eq!(busy.code(), Some("SYSTEM_FAILURE"));
    }
}
