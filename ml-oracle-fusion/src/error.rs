//! The one error type of `ml-oracle-fusion`, and [`parse_error`].

use ::http::{HeaderMap, StatusCode};
use jiff::Timestamp;
use ml_core::error::{Error, ErrorClass};
use ml_core::http::classify_status;

/// Errors of the Oracle Fusion source. Converts into [`ml_core::Error`] keeping its class.
/// Messages never contain a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OracleFusionError {
    /// The REST API answered with an error status.
    #[error("{system}: HTTP {status}: {message}")]
    Http {
        /// `OracleFusion(host, resource)`.
        system: String,
        /// The HTTP status.
        status: u16,
        /// How to handle it.
        class: ErrorClass,
        /// The ADF error code (`o:errorCode`), when given.
        code: Option<String>,
        /// The ADF error title / detail, or the start of a plain-text body.
        message: String,
    },
    /// No HTTP answer (connection refused, reset, timeout).
    #[error("{system}: request failed: {message}")]
    Transport {
        /// `OracleFusion(host, resource)`.
        system: String,
        /// How to handle it.
        class: ErrorClass,
        /// What happened (without the URL).
        message: String,
    },
    /// The answer was not the expected JSON envelope.
    #[error("{system}: unexpected response: {message}")]
    Decode {
        /// `OracleFusion(host, resource)`.
        system: String,
        /// What was wrong.
        message: String,
    },
    /// The token endpoint refused or failed.
    #[error("token endpoint: {message}")]
    Token {
        /// How to handle it.
        class: ErrorClass,
        /// What happened (OAuth `error` code and description, never a secret).
        message: String,
    },
    /// A configuration value is missing or invalid.
    #[error("invalid configuration `{key}`: {message}")]
    Config {
        /// The key (`ORACLE_FUSION_URL`, `with_page_size`, ...).
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl OracleFusionError {
    /// How the caller should handle this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Http { class, .. }
            | Self::Transport { class, .. }
            | Self::Token { class, .. } => *class,
            Self::Decode { .. } => ErrorClass::RETRYABLE,
            Self::Config { .. } => ErrorClass::Permanent,
        }
    }

    pub(crate) fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Config {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl From<OracleFusionError> for Error {
    fn from(e: OracleFusionError) -> Self {
        let class = e.class();
        match e {
            OracleFusionError::Config { key, message } => Error::config(key, message),
            OracleFusionError::Token { class, message } => Error::Auth { class, message },
            OracleFusionError::Http {
                system,
                status,
                class,
                code,
                message,
            } => {
                if status == 401 {
                    return Error::Auth {
                        class,
                        message: format!("{system}: {message}"),
                    };
                }
                let err = Error::remote(system, class, format!("HTTP {status}: {message}"));
                match code {
                    Some(c) => err.with_code(c),
                    None => err,
                }
            }
            OracleFusionError::Transport {
                system, message, ..
            } => Error::remote(system, class, message),
            OracleFusionError::Decode { system, message } => {
                Error::remote(system, class, format!("unexpected response: {message}"))
            }
        }
    }
}

fn truncate(s: &str, n: usize) -> String {
    let s = s.trim();
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// Maps an error answer of the REST API to an [`OracleFusionError::Http`].
///
/// Class: [`classify_status`] (408/425/429/5xx retryable with `Retry-After` counted from
/// `now`, the rest permanent; 401 is permanent here because the source has already
/// refreshed its token once). The message comes from the ADF error JSON (`title`, `detail`,
/// `o:errorDetails[].detail`, `o:errorCode`) when there is one, else the start of the body.
pub fn parse_error(
    system: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &str,
    now: Timestamp,
) -> OracleFusionError {
    let class = classify_status(status, headers, now).unwrap_or(ErrorClass::Permanent);
    let mut code = None;
    let mut message = None;
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body) {
        let details = v["o:errorDetails"].as_array();
        code = v["o:errorCode"]
            .as_str()
            .or_else(|| {
                details
                    .and_then(|d| d.first())
                    .and_then(|d| d["o:errorCode"].as_str())
            })
            .map(str::to_owned);
        let detail = v["detail"].as_str().map(str::to_owned).or_else(|| {
            details.map(|d| {
                d.iter()
                    .filter_map(|x| x["detail"].as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            })
        });
        let title = v["title"].as_str();
        message = match (title, detail.filter(|d| !d.is_empty())) {
            (Some(t), Some(d)) => Some(format!("{t}: {d}")),
            (Some(t), None) => Some(t.to_owned()),
            (None, Some(d)) => Some(d),
            (None, None) => None,
        };
    }
    let message = message.unwrap_or_else(|| {
        if body.trim().is_empty() {
            status.canonical_reason().unwrap_or("error").to_owned()
        } else {
            truncate(body, 200)
        }
    });
    OracleFusionError::Http {
        system: system.to_owned(),
        status: status.as_u16(),
        class,
        code,
        message: truncate(&message, 300),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adf_errors_and_classes() {
        let body = r#"{"title":"Bad Request","status":"400","o:errorDetails":[{"detail":"bad q","o:errorCode":"27500"}]}"#;
        let e = parse_error(
            "OracleFusion(x, invoices)",
            StatusCode::BAD_REQUEST,
            &HeaderMap::new(),
            body,
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(e.class(), ErrorClass::Permanent);
        assert_eq!(
            e.to_string(),
            "OracleFusion(x, invoices): HTTP 400: Bad Request: bad q"
        );
        let core: Error = e.into();
        assert_eq!(core.code(), Some("27500"));
        let mut h = HeaderMap::new();
        h.insert("retry-after", "7".parse().expect("h"));
        let e = parse_error(
            "s",
            StatusCode::TOO_MANY_REQUESTS,
            &h,
            "slow down",
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(
            e.class(),
            ErrorClass::Retryable {
                retry_after: Some(std::time::Duration::from_secs(7))
            }
        );
        assert!(
            parse_error("s", StatusCode::BAD_GATEWAY, &h, "", Timestamp::UNIX_EPOCH)
                .class()
                .is_retryable()
        );
        let e: Error = parse_error(
            "s",
            StatusCode::UNAUTHORIZED,
            &HeaderMap::new(),
            "",
            Timestamp::UNIX_EPOCH,
        )
        .into();
        assert!(matches!(
            e,
            Error::Auth {
                class: ErrorClass::Permanent,
                ..
            }
        ));
    }

    #[test]
    fn retry_after_dates_count_from_the_injected_now() {
        let mut h = HeaderMap::new();
        h.insert(
            "retry-after",
            "Thu, 01 Jan 2026 00:02:00 GMT".parse().expect("h"),
        );
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().expect("now");
        let e = parse_error("s", StatusCode::SERVICE_UNAVAILABLE, &h, "", now);
        assert_eq!(
            e.class().retry_after(),
            Some(std::time::Duration::from_secs(120))
        );
    }
}
