//! [`ODataError`] and [`parse_error`]: the Gateway's v2 error JSON and `sap-message`
//! headers mapped to ml-core's retryable / permanent classes.

use ::http::{HeaderMap, StatusCode};
use jiff::Timestamp;
use ml_core::error::{Error, ErrorClass};
use ml_core::http::classify_status;
use serde::Deserialize;

/// Errors of the OData v2 source. Converts into [`ml_core::Error`] keeping its class.
/// Messages never contain a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ODataError {
    /// The Gateway answered with an error status.
    #[error("{system}: HTTP {status}: {message}")]
    Http {
        /// `SapOData(host, client=100, SERVICE/Set)`.
        system: String,
        /// The HTTP status.
        status: u16,
        /// How to handle it.
        class: ErrorClass,
        /// The Gateway error code (`error.code`, e.g. `/IWBEP/CM_MGW_RT/022`), when given.
        code: Option<String>,
        /// `error.message.value` (or the `sap-message` text, or the start of the body).
        message: String,
    },
    /// The CSRF token was refused even after fetching a fresh one.
    #[error("{system}: CSRF token refused: {message}")]
    Csrf {
        /// `SapOData(...)`.
        system: String,
        /// What the Gateway said.
        message: String,
    },
    /// No HTTP answer (connection refused, reset, timeout).
    #[error("{system}: request failed: {message}")]
    Transport {
        /// `SapOData(...)`.
        system: String,
        /// How to handle it.
        class: ErrorClass,
        /// What happened (without the URL).
        message: String,
    },
    /// The answer was not the expected `{"d": ...}` JSON, or a `__next` link points away
    /// from the configured Gateway.
    #[error("{system}: unexpected response: {message}")]
    Decode {
        /// `SapOData(...)`.
        system: String,
        /// What was wrong.
        message: String,
    },
    /// A configuration value is missing or invalid.
    #[error("invalid configuration `{key}`: {message}")]
    Config {
        /// The key (`SAP_ECC_ODATA_SERVICE`, ...).
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl ODataError {
    /// How the caller should handle this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Http { class, .. } | Self::Transport { class, .. } => *class,
            // A garbled answer (a proxy's HTML page mid-outage) may pass.
            Self::Decode { .. } => ErrorClass::RETRYABLE,
            Self::Csrf { .. } | Self::Config { .. } => ErrorClass::Permanent,
        }
    }

    pub(crate) fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Config {
            key: key.into(),
            message: message.into(),
        }
    }

    pub(crate) fn decode(system: &str, message: impl Into<String>) -> Self {
        Self::Decode {
            system: system.to_owned(),
            message: message.into(),
        }
    }
}

impl From<ODataError> for Error {
    fn from(e: ODataError) -> Self {
        let class = e.class();
        match e {
            ODataError::Config { key, message } => Error::config(key, message),
            ODataError::Http {
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
            ODataError::Csrf { system, message } => {
                Error::remote(system, class, format!("CSRF token refused: {message}"))
                    .with_code("csrf")
            }
            ODataError::Transport {
                system, message, ..
            } => Error::remote(system, class, message),
            ODataError::Decode { system, message } => {
                Error::remote(system, class, format!("unexpected response: {message}"))
            }
        }
    }
}

/// One message of the `sap-message` header (or of `innererror.errordetails`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct SapMessage {
    /// The message class and number (`ZMM/042`).
    #[serde(default)]
    pub code: String,
    /// The text.
    #[serde(default)]
    pub message: String,
    /// `error`, `warning`, `info` or `success`.
    #[serde(default)]
    pub severity: String,
    /// Further messages of the same answer.
    #[serde(default)]
    pub details: Vec<SapMessage>,
}

impl SapMessage {
    /// Whether this message or one of its details has severity `error` (or `abort`).
    pub fn is_error(&self) -> bool {
        matches!(self.severity.as_str(), "error" | "abort")
            || self.details.iter().any(Self::is_error)
    }
}

/// The `sap-message` header of an answer, when there is a readable one.
pub fn sap_message(headers: &HeaderMap) -> Option<SapMessage> {
    let raw = headers.get("sap-message")?.to_str().ok()?;
    serde_json::from_str(raw).ok()
}

#[derive(Deserialize)]
struct Envelope {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<MessageValue>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum MessageValue {
    Object { value: String },
    Text(String),
}

fn truncate(s: &str, n: usize) -> String {
    let s = s.trim();
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// Maps an error answer of the Gateway to an [`ODataError::Http`].
///
/// Class: [`classify_status`] (408/425/429/5xx retryable with `Retry-After` counted from
/// `now`, the rest permanent: a 400 for a `$filter` the service cannot evaluate does not
/// get better by asking again; a 401 after Basic credentials is a wrong user or password,
/// or a user locked in that client). The message comes from the v2 error JSON
/// (`error.code`, `error.message.value`), else from the `sap-message` header, else the
/// start of the body (Gateway logon failures are HTML).
pub fn parse_error(
    system: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &str,
    now: Timestamp,
) -> ODataError {
    let class = classify_status(status, headers, now).unwrap_or(ErrorClass::Permanent);
    let parsed = serde_json::from_str::<Envelope>(body).ok();
    let header = sap_message(headers);
    let code = parsed
        .as_ref()
        .and_then(|e| e.error.code.clone())
        .or_else(|| header.as_ref().map(|m| m.code.clone()))
        .filter(|c| !c.is_empty());
    let message = parsed
        .and_then(|e| e.error.message)
        .map(|m| match m {
            MessageValue::Object { value } | MessageValue::Text(value) => value,
        })
        .or_else(|| header.map(|m| m.message))
        .filter(|m| !m.trim().is_empty())
        .unwrap_or_else(|| {
            let start = truncate(body, 200);
            if start.is_empty() {
                status.canonical_reason().unwrap_or("error").to_owned()
            } else {
                start
            }
        });
    ODataError::Http {
        system: system.to_owned(),
        status: status.as_u16(),
        class,
        code,
        message: truncate(&message, 500),
    }
}

#[cfg(test)]
mod tests {
    use ::http::HeaderValue;

    use super::*;

    #[test]
    fn v2_error_json_and_classes() {
        let now = Timestamp::UNIX_EPOCH;
        let body = r#"{"error":{"code":"/IWBEP/CM_MGW_RT/022","message":{"lang":"en","value":"Invalid filter"},"innererror":{"errordetails":[]}}}"#;
        let e = parse_error("S", StatusCode::BAD_REQUEST, &HeaderMap::new(), body, now);
        assert_eq!(e.class(), ErrorClass::Permanent);
        assert!(
            matches!(&e, ODataError::Http { code: Some(c), message, .. } if c == "/IWBEP/CM_MGW_RT/022" && message == "Invalid filter"),
            "{e:?}"
        );
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("7"));
        let e = parse_error(
            "S",
            StatusCode::SERVICE_UNAVAILABLE,
            &h,
            "<html>down</html>",
            now,
        );
        assert_eq!(
            e.class().retry_after(),
            Some(std::time::Duration::from_secs(7))
        );
        let core: Error =
            parse_error("S", StatusCode::UNAUTHORIZED, &HeaderMap::new(), "", now).into();
        assert!(matches!(core, Error::Auth { .. }), "{core}");
    }

    #[test]
    fn sap_message_header() {
        let mut h = HeaderMap::new();
        h.insert(
            "sap-message",
            HeaderValue::from_static(
                r#"{"code":"ZMM/042","message":"Posting period closed","severity":"error","target":"","details":[]}"#,
            ),
        );
        let m = sap_message(&h).expect("message");
        assert!(m.is_error());
        let e = parse_error("S", StatusCode::BAD_REQUEST, &h, "", Timestamp::UNIX_EPOCH);
        assert!(
            matches!(&e, ODataError::Http { code: Some(c), message, .. } if c == "ZMM/042" && message == "Posting period closed"),
            "{e:?}"
        );
    }
}
