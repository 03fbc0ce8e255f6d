//! [`TwilioError`] and the two `parse_error` functions (Twilio REST, SendGrid v3) that map
//! an HTTP answer onto ml-core's retryable / permanent / in-doubt classification.
//!
//! | answer | class |
//! |---|---|
//! | Twilio HTTP 429 or code 20429 | retryable (`Retry-After` when sent) |
//! | Twilio HTTP 503 with `Retry-After` | retryable (shed before processing) |
//! | Twilio HTTP 500, 502, 504, and 503 without `Retry-After` | in doubt: the message may exist ("retry with backoff; beware duplicates"); the sink reconciles first |
//! | Twilio 401 / 20003 | permanent (credentials) |
//! | Twilio 21211, 21604, 21606, 21608, 21610, 21612, 21635, 21659, 21408, any other 4xx | permanent, with the code and Twilio's message |
//! | SendGrid 429 | retryable, waiting until `X-RateLimit-Reset` (or `Retry-After`) |
//! | SendGrid 503 with `Retry-After` | retryable (shed before processing) |
//! | SendGrid 500, 502, 504, and 503 without `Retry-After` | in doubt: the mail may have been accepted; no lookup exists, so it is sent again, counted as sent after doubt |
//! | SendGrid other 5xx | retryable |
//! | SendGrid 400, 401, 403, 413, other 4xx | permanent, with SendGrid's `errors` list |
//! | transport error before connecting | retryable |
//! | transport error after sending (timeout, reset) | in doubt |
//! | local checks (E.164, length refused, bad email) | permanent |

use std::time::Duration;

use http::{HeaderMap, StatusCode};
use jiff::Timestamp;
use ml_core::ErrorClass;
use ml_core::http::{ErrorModel, TransportError};
use serde::Deserialize;

/// Errors of ml-twilio. Converts into [`ml_core::Error`] keeping its class and code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TwilioError {
    /// A configuration value is missing or invalid.
    #[error("invalid configuration `{key}`: {message}")]
    Config {
        /// The key (`TWILIO_ACCOUNT_SID`, `with_from`).
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The destination is not an E.164 number (checked before sending).
    #[error("{system}: `{number}` is not an E.164 phone number: {reason}")]
    InvalidNumber {
        /// The sink.
        system: String,
        /// The number as given.
        number: String,
        /// Why.
        reason: String,
    },
    /// The destination is not an email address (checked before sending).
    #[error("{system}: `{address}` is not an email address")]
    InvalidEmail {
        /// The sink.
        system: String,
        /// The address as given.
        address: String,
    },
    /// A symbolic recipient (`buyer`, `supplier`) resolved to no address.
    #[error("{system}: recipient `{recipient}` resolved to no address")]
    Unresolved {
        /// The sink.
        system: String,
        /// The symbolic recipient.
        recipient: String,
    },
    /// The body needs more segments than allowed and the policy is to refuse.
    #[error("{system}: message needs {segments} segments, at most {max} allowed")]
    TooLong {
        /// The sink.
        system: String,
        /// Segments needed.
        segments: usize,
        /// Segments allowed.
        max: usize,
    },
    /// Twilio answered with an error.
    #[error("{system}: HTTP {status}{}: {message}", code.map(|c| format!(" code {c}")).unwrap_or_default())]
    Twilio {
        /// The sink.
        system: String,
        /// How to handle it.
        class: ErrorClass,
        /// The HTTP status.
        status: u16,
        /// Twilio's error code (21211).
        code: Option<u32>,
        /// Twilio's message (or our reason for the code).
        message: String,
    },
    /// SendGrid answered with an error.
    #[error("{system}: HTTP {status}: {}", errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    SendGrid {
        /// The sink.
        system: String,
        /// How to handle it.
        class: ErrorClass,
        /// The HTTP status.
        status: u16,
        /// SendGrid's `errors` list.
        errors: Vec<SendGridErrorItem>,
    },
    /// No HTTP answer (connection, timeout) or an unreadable one.
    #[error("{system}: {message}")]
    Transport {
        /// The sink.
        system: String,
        /// How to handle it (in doubt after the request was sent).
        class: ErrorClass,
        /// What happened (never the URL's credentials: reqwest errors are stripped of URLs).
        message: String,
    },
}

/// One item of SendGrid's `errors` list.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct SendGridErrorItem {
    /// The message.
    #[serde(default)]
    pub message: Option<String>,
    /// The offending field.
    #[serde(default)]
    pub field: Option<String>,
    /// A link to help.
    #[serde(default)]
    pub help: Option<serde_json::Value>,
}

impl std::fmt::Display for SendGridErrorItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message.as_deref().unwrap_or("error"))?;
        if let Some(field) = &self.field {
            write!(f, " (field {field})")?;
        }
        Ok(())
    }
}

impl TwilioError {
    /// How to handle it.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Twilio { class, .. }
            | Self::SendGrid { class, .. }
            | Self::Transport { class, .. } => *class,
            _ => ErrorClass::Permanent,
        }
    }

    /// The remote (or local) error code.
    pub fn code(&self) -> Option<String> {
        match self {
            Self::Twilio { code, status, .. } => {
                Some(code.map_or_else(|| format!("http_{status}"), |c| c.to_string()))
            }
            Self::SendGrid { status, .. } => Some(format!("http_{status}")),
            Self::InvalidNumber { .. } => Some("invalid_e164".into()),
            Self::InvalidEmail { .. } => Some("invalid_email".into()),
            Self::Unresolved { .. } => Some("unresolved_recipient".into()),
            Self::TooLong { .. } => Some("too_many_segments".into()),
            Self::Config { .. } | Self::Transport { .. } => None,
        }
    }

    fn system(&self) -> String {
        match self {
            Self::Config { .. } => "ml-twilio".into(),
            Self::InvalidNumber { system, .. }
            | Self::InvalidEmail { system, .. }
            | Self::Unresolved { system, .. }
            | Self::TooLong { system, .. }
            | Self::Twilio { system, .. }
            | Self::SendGrid { system, .. }
            | Self::Transport { system, .. } => system.clone(),
        }
    }
}

impl From<TwilioError> for ml_core::Error {
    fn from(e: TwilioError) -> Self {
        if let TwilioError::Config { key, message } = e {
            return Self::config(key, message);
        }
        if matches!(
            e,
            TwilioError::Twilio { status: 401, .. }
                | TwilioError::SendGrid {
                    status: 401 | 403,
                    ..
                }
        ) {
            return Self::Auth {
                class: ErrorClass::Permanent,
                message: e.to_string(),
            };
        }
        let system = e.system();
        let class = e.class();
        let code = e.code();
        let message = e.to_string();
        let message = message
            .strip_prefix(&format!("{system}: "))
            .map_or(message.clone(), str::to_owned);
        let mut out = Self::remote(system, class, message);
        if let Some(c) = code {
            out = out.with_code(c);
        }
        out
    }
}

/// What a Twilio error code means, for the codes this crate knows (twilio.md §3).
pub fn twilio_code_reason(code: u32) -> Option<&'static str> {
    Some(match code {
        20003 => "authentication failed or permission denied",
        20429 => "too many concurrent requests",
        21211 => "invalid To number",
        21408 => "destination region not enabled in Messaging Geo Permissions",
        21604 => "To is required",
        21606 | 21659 => "From is not a valid message-capable sender for this account/destination",
        21608 => "trial account: To is not verified",
        21610 => "recipient opted out (replied STOP)",
        21612 => "To/From combination cannot be routed",
        21635 => "To is a landline",
        30001 => "queue overflow",
        30002 => "account suspended",
        30003 => "unreachable destination handset",
        30005 => "unknown or inactive destination number",
        30006 => "landline or unreachable carrier",
        30007 => "message filtered (spam or policy)",
        30008 => "unknown error",
        _ => return None,
    })
}

#[derive(Deserialize)]
struct TwilioErrorBody {
    code: Option<u32>,
    message: Option<String>,
}

/// Maps a Twilio REST error answer to a [`TwilioError`].
pub fn parse_twilio_error(
    system: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    now: Timestamp,
) -> TwilioError {
    let parsed: Option<TwilioErrorBody> = serde_json::from_slice(body).ok();
    let code = parsed.as_ref().and_then(|p| p.code);
    let message = parsed
        .and_then(|p| p.message)
        .or_else(|| code.and_then(twilio_code_reason).map(str::to_owned))
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
    let retry_after = || {
        headers
            .get(http::header::RETRY_AFTER)
            .and_then(|v| ml_core::http::parse_retry_after(v, now))
    };
    let class = match (status.as_u16(), code) {
        (429, _) | (_, Some(20429)) => ErrorClass::Retryable {
            retry_after: retry_after(),
        },
        // Told when to come back: shed before it was processed. Otherwise a 5xx may come
        // after the message was created.
        (503, _) if retry_after().is_some() => ErrorClass::Retryable {
            retry_after: retry_after(),
        },
        (500 | 502 | 503 | 504, _) => ErrorClass::InDoubt,
        (s, _) => ml_core::http::classify_status(status, headers, now)
            .filter(|_| s >= 500)
            .unwrap_or(ErrorClass::Permanent),
    };
    TwilioError::Twilio {
        system: system.to_owned(),
        class,
        status: status.as_u16(),
        code,
        message,
    }
}

#[derive(Deserialize)]
struct SendGridErrorBody {
    #[serde(default)]
    errors: Vec<SendGridErrorItem>,
}

/// Maps a SendGrid v3 error answer to a [`TwilioError`].
pub fn parse_sendgrid_error(
    system: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    now: Timestamp,
) -> TwilioError {
    let mut errors = serde_json::from_slice::<SendGridErrorBody>(body)
        .map(|b| b.errors)
        .unwrap_or_default();
    if errors.is_empty() {
        errors.push(SendGridErrorItem {
            message: Some(status.canonical_reason().unwrap_or("error").to_owned()),
            ..SendGridErrorItem::default()
        });
    }
    let class = match status.as_u16() {
        429 => {
            let reset = headers
                .get("x-ratelimit-reset")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<i64>().ok())
                .map(|epoch| {
                    let wait = epoch - now.as_second();
                    Duration::from_secs(wait.max(1) as u64)
                });
            ErrorClass::Retryable {
                retry_after: reset.or_else(|| {
                    headers
                        .get(http::header::RETRY_AFTER)
                        .and_then(|v| ml_core::http::parse_retry_after(v, now))
                }),
            }
        }
        // As for Twilio: a 503 told when to come back was shed before processing; other
        // gateway errors may come after the mail was accepted. No lookup exists, so the
        // mail is sent again, counted as sent after doubt (a possible duplicate).
        503 if ml_core::http::classify_status(status, headers, now)
            .and_then(ErrorClass::retry_after)
            .is_some() =>
        {
            ml_core::http::classify_status(status, headers, now).unwrap_or(ErrorClass::RETRYABLE)
        }
        500 | 502 | 503 | 504 => ErrorClass::InDoubt,
        s if s >= 500 => {
            ml_core::http::classify_status(status, headers, now).unwrap_or(ErrorClass::RETRYABLE)
        }
        _ => ErrorClass::Permanent,
    };
    TwilioError::SendGrid {
        system: system.to_owned(),
        class,
        status: status.as_u16(),
        errors,
    }
}

/// Which API an answer comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Api {
    Twilio,
    SendGrid,
}

/// The error model ml-core's `ApiClient` applies to one sink's calls: the API's
/// `parse_error` with the client's clock, transport errors without URLs.
pub(crate) struct Call<'a> {
    pub(crate) api: Api,
    pub(crate) system: &'a str,
}

impl ErrorModel for Call<'_> {
    type Error = TwilioError;

    fn parse_error(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
        now: Timestamp,
    ) -> Option<TwilioError> {
        if status.is_success() {
            return None;
        }
        Some(match self.api {
            Api::Twilio => parse_twilio_error(self.system, status, headers, body, now),
            Api::SendGrid => parse_sendgrid_error(self.system, status, headers, body, now),
        })
    }

    fn transport_error(&self, err: TransportError) -> TwilioError {
        TwilioError::Transport {
            system: self.system.to_owned(),
            class: err.class,
            message: err.message,
        }
    }

    fn credentials_error(&self, err: ml_core::Error) -> TwilioError {
        TwilioError::Config {
            key: "credentials".into(),
            message: err.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(
                http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        m
    }

    fn tw(status: u16, body: &str, headers: &[(&str, &str)]) -> TwilioError {
        parse_twilio_error(
            "Twilio(AC1)",
            StatusCode::from_u16(status).expect("status"),
            &h(headers),
            body.as_bytes(),
            Timestamp::UNIX_EPOCH,
        )
    }

    #[test]
    fn twilio_classification() {
        let e = tw(
            400,
            r#"{"code":21211,"message":"The 'To' number +1 is not a valid phone number.","more_info":"https://www.twilio.com/docs/errors/21211","status":400}"#,
            &[],
        );
        assert_eq!(e.class(), ErrorClass::Permanent);
        assert_eq!(e.code().as_deref(), Some("21211"));
        let core: ml_core::Error = e.into();
        assert_eq!(core.code(), Some("21211"));
        assert_eq!(core.class(), ErrorClass::Permanent);
        assert!(
            core.to_string().contains("not a valid phone number"),
            "{core}"
        );
        for code in [21610, 21408, 21604, 21606, 21608, 21612, 21635] {
            let e = tw(
                400,
                &format!(r#"{{"code":{code},"message":"m","status":400}}"#),
                &[],
            );
            assert_eq!(e.class(), ErrorClass::Permanent, "{code}");
        }
        let e = tw(
            429,
            r#"{"code":20429,"message":"Too Many Requests","status":429}"#,
            &[("retry-after", "3")],
        );
        assert_eq!(e.class().retry_after(), Some(Duration::from_secs(3)));
        assert!(tw(429, "", &[]).class().is_retryable());
        assert_eq!(tw(503, "<html>", &[]).class(), ErrorClass::InDoubt);
        assert_eq!(
            tw(503, "", &[("retry-after", "5")]).class().retry_after(),
            Some(Duration::from_secs(5))
        );
        assert_eq!(tw(500, "", &[]).class(), ErrorClass::InDoubt);
        assert_eq!(tw(504, "", &[]).class(), ErrorClass::InDoubt);
        let auth: ml_core::Error = tw(
            401,
            r#"{"code":20003,"message":"Authenticate","status":401}"#,
            &[],
        )
        .into();
        assert!(matches!(
            auth,
            ml_core::Error::Auth {
                class: ErrorClass::Permanent,
                ..
            }
        ));
        // An unknown body still yields a message.
        let e = tw(404, "not json", &[]);
        assert_eq!(e.class(), ErrorClass::Permanent);
        assert!(e.to_string().contains("Not Found"));
    }

    #[test]
    fn sendgrid_classification() {
        let sg = |status: u16, body: &str, headers: &[(&str, &str)]| {
            parse_sendgrid_error(
                "SendGrid",
                StatusCode::from_u16(status).expect("status"),
                &h(headers),
                body.as_bytes(),
                Timestamp::from_second(1_000).expect("ts"),
            )
        };
        let e = sg(
            400,
            r#"{"errors":[{"message":"The from email does not contain a valid address.","field":"from.email","help":"http://sendgrid.com/docs"}]}"#,
            &[],
        );
        assert_eq!(e.class(), ErrorClass::Permanent);
        assert!(e.to_string().contains("from.email"), "{e}");
        let e = sg(429, "", &[("x-ratelimit-reset", "1030")]);
        assert_eq!(e.class().retry_after(), Some(Duration::from_secs(30)));
        // A gateway error may come after the mail was accepted: in doubt (the journal
        // counts the resend); a 503 told when to come back was not processed.
        for status in [500, 502, 503, 504] {
            assert_eq!(sg(status, "", &[]).class(), ErrorClass::InDoubt, "{status}");
        }
        assert_eq!(
            sg(503, "", &[("retry-after", "7")]).class().retry_after(),
            Some(Duration::from_secs(7))
        );
        assert_eq!(sg(413, "", &[]).class(), ErrorClass::Permanent);
        let auth: ml_core::Error = sg(403, "", &[]).into();
        assert!(matches!(auth, ml_core::Error::Auth { .. }));
    }
}
