//! The one error type of `ml-ifs`, and [`parse_error`] (OData v4 error JSON, and the
//! v3-style `odata.error` some gateways still answer with).

use ::http::{HeaderMap, StatusCode};
use jiff::Timestamp;
use ml_core::error::{Error, ErrorClass};
use ml_core::http::classify_status;

/// The IFS code of a projection whose metadata is being refreshed (HTTP 503): retry reads.
pub const MI_MODIFIED_ERROR: &str = "MI_MODIFIED_ERROR";
/// The IFS code of a record locked by another session: retry later.
pub const FND_LOCKED: &str = "FND_LOCKED";

/// Errors of the IFS source and actions. Converts into [`ml_core::Error`] keeping its class.
/// Messages never contain a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IfsError {
    /// The OData service answered with an error status.
    #[error("{system}: HTTP {status}: {message}")]
    Http {
        /// `Ifs(host, Projection.svc/EntitySet)`.
        system: String,
        /// The HTTP status.
        status: u16,
        /// How to handle it.
        class: ErrorClass,
        /// The OData error `code` (`ODP_RESOURCE_NOTFOUND`, `MI_MODIFIED_ERROR`, ...).
        code: Option<String>,
        /// The OData error message (with the details' messages), or the start of the body.
        message: String,
    },
    /// No HTTP answer (connection refused, reset, timeout).
    #[error("{system}: request failed: {message}")]
    Transport {
        /// `Ifs(host, ...)`.
        system: String,
        /// How to handle it.
        class: ErrorClass,
        /// What happened (without the URL).
        message: String,
    },
    /// The answer was not the expected OData JSON.
    #[error("{system}: unexpected response: {message}")]
    Decode {
        /// `Ifs(host, ...)`.
        system: String,
        /// What was wrong.
        message: String,
    },
    /// IFS IAM (Keycloak) refused or failed to issue a token.
    #[error("IFS IAM token endpoint: {message}")]
    Token {
        /// How to handle it.
        class: ErrorClass,
        /// What happened (OAuth `error` code, never a secret).
        message: String,
    },
    /// A configuration value is missing or invalid.
    #[error("invalid configuration `{key}`: {message}")]
    Config {
        /// The key (`IFS_URL`, `with_page_size`, ...).
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl IfsError {
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

    /// The HTTP status, for an error answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The OData error code, when the answer had one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Http { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    pub(crate) fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Config {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl From<IfsError> for Error {
    fn from(e: IfsError) -> Self {
        let class = e.class();
        match e {
            IfsError::Config { key, message } => Error::config(key, message),
            IfsError::Token { class, message } => Error::Auth { class, message },
            IfsError::Http {
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
            IfsError::Transport {
                system, message, ..
            } => Error::remote(system, class, message),
            IfsError::Decode { system, message } => {
                Error::remote(system, class, format!("unexpected response: {message}"))
            }
        }
    }
}

pub(crate) fn truncate(s: &str, n: usize) -> String {
    let s = s.trim();
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// The code and message of an OData error body: v4 `{"error":{"code","message",
/// "details":[{"code","message"}],"innererror":{...}}}` or v3 `{"odata.error":{"code",
/// "message":{"lang","value"}}}`.
pub fn odata_error(body: &str) -> Option<(Option<String>, String)> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let e = v.get("error").or_else(|| v.get("odata.error"))?;
    let code = e["code"]
        .as_str()
        .filter(|c| !c.is_empty())
        .map(str::to_owned);
    let mut message = match &e["message"] {
        serde_json::Value::String(s) => s.clone(),
        m => m["value"].as_str().unwrap_or_default().to_owned(),
    };
    let details: Vec<&str> = e["details"]
        .as_array()
        .map(|d| d.iter().filter_map(|x| x["message"].as_str()).collect())
        .unwrap_or_default();
    for d in details {
        if !d.is_empty() && !message.contains(d) {
            if !message.is_empty() {
                message.push_str("; ");
            }
            message.push_str(d);
        }
    }
    if message.is_empty()
        && let Some(m) = e["innererror"]["message"].as_str()
    {
        m.clone_into(&mut message);
    }
    Some((code, message))
}

/// Maps an error answer of an OData service to an [`IfsError::Http`].
///
/// Class: [`classify_status`] (408/425/429/5xx retryable with `Retry-After` counted from
/// `now`, the rest permanent; 401 is permanent here because the client has already
/// refreshed its token once); the IFS codes [`MI_MODIFIED_ERROR`] and [`FND_LOCKED`] are
/// retryable whatever the status. 412 (stale `If-Match`) and 428 (no `If-Match`) are
/// permanent: an action is never repeated blindly.
pub fn parse_error(
    system: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &str,
    now: Timestamp,
) -> IfsError {
    let mut class = classify_status(status, headers, now).unwrap_or(ErrorClass::Permanent);
    let (code, message) = match odata_error(body) {
        Some((code, message)) if !message.is_empty() => (code, message),
        Some((code, _)) => (code, fallback_message(status, body)),
        None => (None, fallback_message(status, body)),
    };
    if matches!(code.as_deref(), Some(MI_MODIFIED_ERROR | FND_LOCKED)) && !class.is_retryable() {
        class = ErrorClass::RETRYABLE;
    }
    IfsError::Http {
        system: system.to_owned(),
        status: status.as_u16(),
        class,
        code,
        message: truncate(&message, 300),
    }
}

fn fallback_message(status: StatusCode, body: &str) -> String {
    if body.trim().is_empty() || body.trim_start().starts_with('<') {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        truncate(body, 200)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn parse(status: StatusCode, headers: &HeaderMap, body: &str) -> IfsError {
        parse_error("Ifs(x)", status, headers, body, Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn v4_and_v3_error_bodies() {
        let body = r#"{"error":{"code":"ODP_RESOURCE_NOTFOUND","message":"Not found","details":[{"code":"X","message":"No PurchaseOrder P9"}]}}"#;
        let e = parse(StatusCode::NOT_FOUND, &HeaderMap::new(), body);
        assert_eq!(e.class(), ErrorClass::Permanent);
        assert_eq!(e.code(), Some("ODP_RESOURCE_NOTFOUND"));
        assert_eq!(
            e.to_string(),
            "Ifs(x): HTTP 404: Not found; No PurchaseOrder P9"
        );
        let v3 = r#"{"odata.error":{"code":"FND_LOCKED","message":{"lang":"en","value":"Record locked"}}}"#;
        let e = parse(StatusCode::CONFLICT, &HeaderMap::new(), v3);
        assert!(e.class().is_retryable(), "FND_LOCKED is retryable");
        assert_eq!(e.code(), Some("FND_LOCKED"));
        let core: Error = e.into();
        assert_eq!(core.code(), Some("FND_LOCKED"));
    }

    #[test]
    fn retry_after_and_special_statuses() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "3".parse().expect("h"));
        let body = r#"{"error":{"code":"MI_MODIFIED_ERROR","message":"metadata refresh"}}"#;
        let e = parse(StatusCode::SERVICE_UNAVAILABLE, &h, body);
        assert_eq!(
            e.class(),
            ErrorClass::Retryable {
                retry_after: Some(Duration::from_secs(3))
            }
        );
        for s in [
            StatusCode::PRECONDITION_FAILED,
            StatusCode::PRECONDITION_REQUIRED,
        ] {
            assert_eq!(
                parse(s, &HeaderMap::new(), "").class(),
                ErrorClass::Permanent
            );
        }
        let e: Error = parse(StatusCode::UNAUTHORIZED, &HeaderMap::new(), "<html/>").into();
        assert!(matches!(
            e,
            Error::Auth {
                class: ErrorClass::Permanent,
                ..
            }
        ));
    }
}
