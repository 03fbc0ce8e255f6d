//! The one error type of `ml-sage-x3`, and [`parse_error`].

use ::http::{HeaderMap, StatusCode};
use jiff::Timestamp;
use ml_core::error::{Error, ErrorClass};
use ml_core::http::classify_status;

/// Errors of the Sage X3 sources. Converts into [`ml_core::Error`] keeping its class.
/// Messages never contain a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SageX3Error {
    /// The API answered with an error status.
    #[error("{system}: HTTP {status}: {message}")]
    Http {
        /// `SageX3(host, folder, class)`.
        system: String,
        /// The HTTP status.
        status: u16,
        /// How to handle it.
        class: ErrorClass,
        /// The `$diagnoses` messages (api1) or GraphQL `errors[].message`, or the start of
        /// the body.
        message: String,
    },
    /// A query names a property the representation (or GraphQL node) does not have: X3
    /// answers HTTP 500 to such an api1 query. A configuration error: only this stream
    /// pauses.
    #[error(
        "{system}: the {api} does not know the property `{property}`; set {hint} to a property it has"
    )]
    UnknownProperty {
        /// `SageX3(host, folder, class)`.
        system: String,
        /// `api1 representation` or `GraphQL node`.
        api: &'static str,
        /// The property.
        property: String,
        /// Which configuration key names it (the error's key once converted).
        hint: String,
    },
    /// No HTTP answer (connection refused, reset, timeout).
    #[error("{system}: request failed: {message}")]
    Transport {
        /// `SageX3(host, folder, class)`.
        system: String,
        /// How to handle it.
        class: ErrorClass,
        /// What happened (without the URL).
        message: String,
    },
    /// The answer was not the expected JSON.
    #[error("{system}: unexpected response: {message}")]
    Decode {
        /// `SageX3(host, folder, class)`.
        system: String,
        /// What was wrong.
        message: String,
    },
    /// The token endpoint refused or failed.
    #[error("token endpoint: {message}")]
    Token {
        /// How to handle it.
        class: ErrorClass,
        /// What happened (OAuth `error` code, never a secret).
        message: String,
    },
    /// A configuration value is missing or invalid.
    #[error("invalid configuration `{key}`: {message}")]
    Config {
        /// The key (`SAGE_X3_URL`, `with_page_size`, ...).
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl SageX3Error {
    /// How the caller should handle this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Http { class, .. }
            | Self::Transport { class, .. }
            | Self::Token { class, .. } => *class,
            Self::Decode { .. } => ErrorClass::RETRYABLE,
            Self::Config { .. } | Self::UnknownProperty { .. } => ErrorClass::Permanent,
        }
    }

    pub(crate) fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Config {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl From<SageX3Error> for Error {
    fn from(e: SageX3Error) -> Self {
        let class = e.class();
        match e {
            SageX3Error::Config { key, message } => Error::config(key, message),
            SageX3Error::UnknownProperty { .. } => {
                let message = e.to_string();
                let SageX3Error::UnknownProperty { hint, .. } = e else {
                    unreachable!("matched above")
                };
                Error::config(hint, message)
            }
            SageX3Error::Token { class, message } => Error::Auth { class, message },
            SageX3Error::Http {
                system,
                status,
                class,
                message,
            } => {
                if status == 401 {
                    return Error::Auth {
                        class,
                        message: format!("{system}: {message}"),
                    };
                }
                Error::remote(system, class, format!("HTTP {status}: {message}"))
            }
            SageX3Error::Transport {
                system, message, ..
            } => Error::remote(system, class, message),
            SageX3Error::Decode { system, message } => {
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

/// The `$diagnoses` messages of an api1 error body (`[{"$severity":"error","$message":"…"}]`,
/// top level or under `$resources`), joined with `; `; `None` when there are none.
pub fn diagnoses(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let mut out = Vec::new();
    collect_diagnoses(&v, &mut out, 0);
    (!out.is_empty()).then(|| out.join("; "))
}

fn collect_diagnoses(v: &serde_json::Value, out: &mut Vec<String>, depth: usize) {
    if depth > 4 || out.len() >= 8 {
        return;
    }
    match v {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::Array(ds)) = map.get("$diagnoses") {
                for d in ds {
                    let msg = d["$message"].as_str().or_else(|| d["message"].as_str());
                    if let Some(m) = msg {
                        let sev = d["$severity"].as_str().unwrap_or("error");
                        out.push(format!("{sev}: {m}"));
                    }
                }
            }
            for (k, child) in map {
                if k != "$diagnoses" {
                    collect_diagnoses(child, out, depth + 1);
                }
            }
        }
        serde_json::Value::Array(items) => {
            for i in items.iter().take(16) {
                collect_diagnoses(i, out, depth + 1);
            }
        }
        _ => {}
    }
}

/// Maps an error answer to a [`SageX3Error::Http`].
///
/// Class: [`classify_status`] (408/425/429/5xx retryable with `Retry-After` counted from
/// `now`, the rest permanent). The message is the `$diagnoses` (api1) or GraphQL
/// `errors[].message`, else the start of the body. A 500 to a new api1 query may be an
/// unknown property rather than an outage: the source tells them apart (see
/// [`crate::rest`]).
pub fn parse_error(
    system: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &str,
    now: Timestamp,
) -> SageX3Error {
    let class = classify_status(status, headers, now).unwrap_or(ErrorClass::Permanent);
    let message = diagnoses(body)
        .or_else(|| graphql_errors(body))
        .unwrap_or_else(|| {
            if body.trim().is_empty() {
                status.canonical_reason().unwrap_or("error").to_owned()
            } else {
                truncate(body, 200)
            }
        });
    SageX3Error::Http {
        system: system.to_owned(),
        status: status.as_u16(),
        class,
        message: truncate(&message, 400),
    }
}

/// The messages of a GraphQL `errors` array, joined with `; `.
pub fn graphql_errors(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let errors = v["errors"].as_array()?;
    let msgs: Vec<&str> = errors
        .iter()
        .filter_map(|e| e["message"].as_str())
        .take(8)
        .collect();
    (!msgs.is_empty()).then(|| msgs.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnoses_and_classes() {
        let body =
            r#"{"$diagnoses":[{"$severity":"error","$message":"Property XYZ does not exist"}]}"#;
        let e = parse_error(
            "SageX3(h, SEED, PORDER)",
            StatusCode::INTERNAL_SERVER_ERROR,
            &HeaderMap::new(),
            body,
            Timestamp::UNIX_EPOCH,
        );
        assert!(e.class().is_retryable());
        assert_eq!(
            e.to_string(),
            "SageX3(h, SEED, PORDER): HTTP 500: error: Property XYZ does not exist"
        );
        let e = parse_error(
            "s",
            StatusCode::BAD_REQUEST,
            &HeaderMap::new(),
            r#"{"errors":[{"message":"Cannot query field \"x\""}]}"#,
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(e.class(), ErrorClass::Permanent);
        assert!(e.to_string().contains("Cannot query field"), "{e}");
        let core: Error = SageX3Error::UnknownProperty {
            system: "s".into(),
            api: "api1 representation",
            property: "UPDDATTIM".into(),
            hint: "SAGE_X3_STAMP_PROPERTY".into(),
        }
        .into();
        assert_eq!(core.class(), ErrorClass::Permanent);
        assert!(
            matches!(&core, Error::Config { key, message } if key == "SAGE_X3_STAMP_PROPERTY" && message.contains("`UPDDATTIM`")),
            "{core}"
        );
        let e: Error = parse_error(
            "s",
            StatusCode::UNAUTHORIZED,
            &HeaderMap::new(),
            "",
            Timestamp::UNIX_EPOCH,
        )
        .into();
        assert!(matches!(e, Error::Auth { .. }));
    }
}
