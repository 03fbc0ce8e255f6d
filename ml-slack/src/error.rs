//! The one error type of `ml-slack`, and [`parse_error`]: the mapping from Slack's answers
//! to ml-core's retryable / permanent / in-doubt classification.
//!
//! # Classification
//!
//! Slack answers almost every failure with HTTP 200 and `{"ok":false,"error":"<code>"}`;
//! only rate limiting uses HTTP 429. The table below is what [`parse_error`] implements for
//! a **non-idempotent** call (`chat.postMessage`); [`SlackError::idempotent`] turns an
//! in-doubt answer into a retryable one for calls that are safe to repeat (`chat.update`,
//! `conversations.history`, `auth.test`, ...).
//!
//! | answer | class |
//! |---|---|
//! | HTTP 429, or `ratelimited` / `rate_limited` | retryable, with `Retry-After` |
//! | `service_unavailable`, `request_timeout`, `team_added_to_org`, `update_failed` | retryable |
//! | `internal_error`, `fatal_error` | **in doubt** (Slack: "may have partially succeeded") |
//! | HTTP 500, 502, 504 and other retryable 5xx | **in doubt** (see below) |
//! | HTTP 503 with `Retry-After` | retryable, waiting as told |
//! | HTTP 503 without `Retry-After` | **in doubt**, as other 5xx |
//! | HTTP 408, 425 | retryable |
//! | HTTP 200 whose body is not Slack's JSON | in doubt |
//! | `token_expired` | permanent (the sink refreshes once and retries first when token rotation is on) |
//! | auth/config: `invalid_auth`, `not_authed`, `token_revoked`, `account_inactive`, `missing_scope`, `not_allowed_token_type`, `no_permission`, `access_denied`, `ekm_access_denied`, `org_login_required` | permanent |
//! | destination: `channel_not_found`, `not_in_channel`, `is_archived`, `restricted_action*`, `team_not_found` | permanent |
//! | payload: `msg_too_long`, `no_text`, `invalid_blocks`, `invalid_blocks_format`, `msg_blocks_too_long`, `too_many_attachments`, `invalid_metadata_format`, `invalid_metadata_schema`, `metadata_too_large`, `markdown_text_conflict`, `invalid_arg_name`, `invalid_charset`, `invalid_form_data`, `invalid_post_type`, `missing_post_type`, `invalid_json`, `json_not_object` | permanent |
//! | `message_not_found`, `cant_update_message`, `edit_window_closed`, `message_limit_exceeded` | permanent |
//! | any other `error` code | permanent (unknown codes are not retried blindly; the delivery is failed and replayable) |
//! | other 4xx (400, 401, 403, 404, ...), 501, 505 | permanent |
//! | transport failure | [`ml_core::http::classify_transport`] with `idempotent = false`: connect errors retryable, anything after the request left in doubt |
//!
//! **Why 5xx is in doubt for `chat.postMessage`.** A 500 comes from Slack's own servers
//! after they started handling the request, and Slack documents that its internal errors
//! may have partially succeeded. A 502 or 504 comes from a gateway that may have forwarded
//! the request to a server that applied it and then failed to answer in time. Retrying
//! blindly would then post twice. In doubt costs one `conversations.history` look-up
//! (`reconcile`) before the next attempt, which finds the post if it was applied and
//! otherwise lets the resend go. A 503 ("service unavailable") with `Retry-After` is the
//! front door shedding load before the request is handled, so it stays retryable and keeps
//! its wait; without one it may be a gateway that gave up on a post the server applied
//! (a black-box run saw every such post twice), so it is in doubt.
//! Idempotent calls have nothing to double and treat every 5xx as retryable.

use std::time::Duration;

use http::{HeaderMap, StatusCode};
use ml_core::error::{BoxError, ErrorClass};
use ml_core::http::TransportError;
use serde::Deserialize;

/// The `error` code Slack uses for rate limiting (`ratelimited`), as reported by
/// [`SlackError::code`] for an HTTP 429.
pub const RATELIMITED: &str = "ratelimited";

/// Why an inbound request (Events API, slash command, interactivity, Socket Mode envelope)
/// was refused: the shared webhook refusal of ml-core, re-exported where it always was.
pub use ml_core::webhook::Rejection;

/// Errors of `ml-slack`. Every variant knows its [`ErrorClass`]; none ever contains a
/// token, a signing secret or a client secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SlackError {
    /// Slack answered `{"ok":false,"error":code}` (HTTP 200, or any status with such a
    /// body).
    #[error("{method}: Slack error `{code}`{}", detail.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Api {
        /// The Web API method (`chat.postMessage`).
        method: String,
        /// Slack's `error` code.
        code: String,
        /// Extra detail Slack gave (`response_metadata.messages`, `needed` scope).
        detail: Option<String>,
        /// How to handle it.
        class: ErrorClass,
    },
    /// HTTP 429: rate limited.
    #[error("{method}: rate limited{}", retry_after.map(|d| format!(", retry after {}s", d.as_secs())).unwrap_or_default())]
    RateLimited {
        /// The Web API method.
        method: String,
        /// Slack's `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// A non-2xx answer without Slack's error body (a proxy, a gateway, a 5xx).
    #[error("{method}: HTTP {status}")]
    Http {
        /// The Web API method.
        method: String,
        /// The HTTP status.
        status: u16,
        /// How to handle it.
        class: ErrorClass,
    },
    /// A 2xx answer that is not Slack's JSON (or lacks a field the call needs).
    #[error("{method}: unexpected response: {message}")]
    InvalidResponse {
        /// The Web API method.
        method: String,
        /// What was wrong.
        message: String,
        /// How to handle it.
        class: ErrorClass,
    },
    /// The request got no HTTP answer (connect failure, timeout, reset).
    #[error("{method}: {message}")]
    Transport {
        /// The Web API method.
        method: String,
        /// What happened.
        message: String,
        /// How to handle it.
        class: ErrorClass,
        /// The transport error, with its URL removed.
        #[source]
        source: Option<BoxError>,
    },
    /// A configuration value is missing or invalid (raised by `build()`).
    #[error("invalid configuration `{key}`: {message}")]
    Config {
        /// The configuration key (`SLACK_BOT_TOKEN`, `with_api_url`).
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// An inbound request was refused.
    #[error("inbound request refused: {0}")]
    Rejected(Rejection),
    /// An OAuth `state` did not verify (forged, expired, or bound to another session).
    #[error("OAuth state is invalid: {0}")]
    InvalidState(&'static str),
    /// A `response_url` is not one this responder may call.
    #[error("response_url refused: {0}")]
    ResponseUrlRefused(String),
    /// `reconcile` could not decide whether a delivery was applied (the look-back scan hit
    /// its page cap before covering the window). Nothing is re-sent.
    #[error("reconcile inconclusive: {0}")]
    ReconcileInconclusive(String),
    /// The Socket Mode connection failed.
    #[error("socket mode: {message}")]
    SocketMode {
        /// What happened.
        message: String,
        /// How to handle it.
        class: ErrorClass,
    },
}

impl SlackError {
    /// How the caller should handle this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Api { class, .. }
            | Self::Http { class, .. }
            | Self::InvalidResponse { class, .. }
            | Self::Transport { class, .. }
            | Self::SocketMode { class, .. } => *class,
            Self::RateLimited { retry_after, .. } => ErrorClass::Retryable {
                retry_after: *retry_after,
            },
            Self::Rejected(r) if r.is_transient() => ErrorClass::RETRYABLE,
            Self::Config { .. }
            | Self::Rejected(_)
            | Self::InvalidState(_)
            | Self::ResponseUrlRefused(_)
            | Self::ReconcileInconclusive(_) => ErrorClass::Permanent,
        }
    }

    /// Slack's error code (`channel_not_found`; `ratelimited` for a 429), when there is one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            Self::RateLimited { .. } => Some(RATELIMITED),
            Self::Rejected(r) => Some(r.as_str()),
            Self::ReconcileInconclusive(_) => Some("reconcile_inconclusive"),
            _ => None,
        }
    }

    /// The same error classified for an idempotent call (one that is harmless to repeat):
    /// in doubt becomes retryable.
    #[must_use]
    pub fn idempotent(mut self) -> Self {
        match &mut self {
            Self::Api { class, .. }
            | Self::Http { class, .. }
            | Self::InvalidResponse { class, .. }
            | Self::Transport { class, .. }
                if *class == ErrorClass::InDoubt =>
            {
                *class = ErrorClass::RETRYABLE;
            }
            _ => {}
        }
        self
    }

    /// Sets the Web API method the error belongs to.
    #[must_use]
    pub fn in_method(mut self, name: &str) -> Self {
        match &mut self {
            Self::Api { method, .. }
            | Self::RateLimited { method, .. }
            | Self::Http { method, .. }
            | Self::InvalidResponse { method, .. }
            | Self::Transport { method, .. } => name.clone_into(method),
            _ => {}
        }
        self
    }

    /// A transport error (no HTTP answer), classified by
    /// [`ml_core::http::classify_transport`]. The URL is removed.
    // Takes the error by value as it always has, so callers' `map_err` stays unchanged.
    #[allow(clippy::needless_pass_by_value)]
    pub fn transport(method: &str, err: reqwest::Error, idempotent: bool) -> Self {
        Self::from_transport(method, TransportError::from_reqwest(&err, idempotent))
    }

    /// A transport error of ml-core's request helper (already classified, without URL).
    pub fn from_transport(method: &str, err: TransportError) -> Self {
        Self::Transport {
            method: method.to_owned(),
            message: err.message.clone(),
            class: err.class,
            source: Some(Box::new(err)),
        }
    }

    /// A configuration error naming its key.
    pub fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Config {
            key: key.into(),
            message: message.into(),
        }
    }

    /// Converts into ml-core's error, naming the system (`Slack(T0123)`) and keeping the
    /// class and code.
    pub fn into_core(self, system: &str) -> ml_core::Error {
        match self {
            Self::Config { key, message } => ml_core::Error::Config { key, message },
            // A 401 is an authentication failure, as in every connector.
            Self::Http {
                status: 401, class, ..
            } => ml_core::Error::Auth {
                class,
                message: format!("{system}: {self}"),
            },
            other => {
                let class = other.class();
                let code = other.code().map(str::to_owned);
                let message = other.to_string();
                ml_core::Error::Remote {
                    system: system.to_owned(),
                    class,
                    code,
                    message,
                    source: Some(Box::new(other)),
                }
            }
        }
    }
}

impl From<SlackError> for ml_core::Error {
    fn from(err: SlackError) -> Self {
        err.into_core("Slack")
    }
}

/// Error codes that refuse the token itself (shared/apis/slack.md: "stop, alert operator"):
/// no call can succeed until it is replaced ([`SlackSink`](crate::SlackSink) tells the
/// pipeline to hold deliveries rather than fail each one).
pub const TOKEN_REFUSED: &[&str] = &[
    "invalid_auth",
    "not_authed",
    "token_revoked",
    "account_inactive",
    "not_allowed_token_type",
    "org_login_required",
    "ekm_access_denied",
];

/// Slack's error body (also the shape of every answer's `ok` / `error` fields).
#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    ok: Option<bool>,
    error: Option<String>,
    needed: Option<String>,
    #[serde(default)]
    response_metadata: Option<ResponseMetadata>,
}

#[derive(Debug, Default, Deserialize)]
struct ResponseMetadata {
    #[serde(default)]
    messages: Vec<String>,
}

/// The class of a Slack `error` code for a non-idempotent call, per the table in the
/// [module docs](self). `retry_after` is used for the rate-limit codes.
pub fn classify_code(code: &str, retry_after: Option<Duration>) -> ErrorClass {
    match code {
        "ratelimited" | "rate_limited" => ErrorClass::Retryable { retry_after },
        "service_unavailable" | "request_timeout" | "team_added_to_org" | "update_failed" => {
            ErrorClass::RETRYABLE
        }
        "internal_error" | "fatal_error" => ErrorClass::InDoubt,
        _ => ErrorClass::Permanent,
    }
}

/// Maps a Slack answer to an error, or `None` when it is a success (2xx with `"ok":true`).
///
/// Classified for a non-idempotent call (`chat.postMessage`); call
/// [`SlackError::idempotent`] on the result for calls that are safe to repeat, and
/// [`SlackError::in_method`] to name the method. See the [module docs](self) for the
/// table.
pub fn parse_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Option<SlackError> {
    parse_error_at(status, headers, body, jiff::Timestamp::now())
}

/// [`parse_error`] with an explicit `now` (for an HTTP-date `Retry-After`).
pub fn parse_error_at(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    now: jiff::Timestamp,
) -> Option<SlackError> {
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let retry_after = headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| ml_core::http::parse_retry_after(v, now));
    let method = String::new();
    if status == StatusCode::TOO_MANY_REQUESTS {
        return Some(SlackError::RateLimited {
            method,
            retry_after,
        });
    }
    if let Some(b) = &parsed
        && b.ok == Some(false)
    {
        let code = b
            .error
            .clone()
            .unwrap_or_else(|| "unknown_error".to_owned());
        let mut detail: Vec<String> = Vec::new();
        if let Some(n) = &b.needed {
            detail.push(format!("needed: {n}"));
        }
        if let Some(m) = &b.response_metadata {
            detail.extend(m.messages.iter().take(5).cloned());
        }
        if let Some(h) = operator_hint(&code) {
            detail.push(h.to_owned());
        }
        let class = if status.is_server_error() && code == "unknown_error" {
            server_error_class(status, retry_after)
        } else {
            classify_code(&code, retry_after)
        };
        return Some(SlackError::Api {
            method,
            code,
            detail: (!detail.is_empty()).then(|| truncate_detail(&detail.join("; "))),
            class,
        });
    }
    if status.is_success() {
        return match parsed {
            Some(ErrorBody { ok: Some(true), .. }) => None,
            _ => Some(SlackError::InvalidResponse {
                method,
                message: format!("HTTP {} without Slack's `ok` field", status.as_u16()),
                class: ErrorClass::InDoubt,
            }),
        };
    }
    if status.is_server_error() {
        return Some(SlackError::Http {
            method,
            status: status.as_u16(),
            class: server_error_class(status, retry_after),
        });
    }
    let class =
        ml_core::http::classify_status(status, headers, now).unwrap_or(ErrorClass::Permanent);
    Some(SlackError::Http {
        method,
        status: status.as_u16(),
        class,
    })
}

/// 503 told when to come back is retryable (the front door shed it); 501/505/...
/// permanent; every other 5xx (a 503 without `Retry-After` too: a gateway that gave up on
/// a request the server may still have applied) in doubt for a non-idempotent call.
fn server_error_class(status: StatusCode, retry_after: Option<Duration>) -> ErrorClass {
    match status.as_u16() {
        503 if retry_after.is_some() => ErrorClass::Retryable { retry_after },
        501 | 505 | 506 | 508 | 510 => ErrorClass::Permanent,
        _ => ErrorClass::InDoubt,
    }
}

/// What an operator does about an error that no retry will cure: it travels with the
/// error into the log, the journal's `last_error` and `ml-connector audit`.
fn operator_hint(code: &str) -> Option<&'static str> {
    Some(match code {
        "not_in_channel" => {
            "invite the app to the channel (`/invite @your-app`), or grant it `chat:write.public`"
        }
        "channel_not_found" => {
            "no such channel is visible to the app: check the name or id, or invite the app to the private channel"
        }
        "is_archived" => "the channel is archived: unarchive it or route these messages elsewhere",
        "missing_scope" => {
            "add the scope under the app's OAuth & Permissions and reinstall it to the workspace"
        }
        "invalid_auth" | "not_authed" | "token_revoked" | "account_inactive" => {
            "the bot token is missing, revoked or of a deactivated app: set a current `xoxb-` token (SLACK_BOT_TOKEN)"
        }
        "not_allowed_token_type" => {
            "this call needs a bot token (`xoxb-`), not a user or app token"
        }
        _ => return None,
    })
}

fn truncate_detail(s: &str) -> String {
    const MAX: usize = 500;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn parse(status: u16, headers: &[(&str, &str)], body: &str) -> Option<SlackError> {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        parse_error_at(
            StatusCode::from_u16(status).expect("status"),
            &h,
            body.as_bytes(),
            "2026-01-01T00:00:00Z".parse().expect("ts"),
        )
    }

    fn class(status: u16, body: &str) -> ErrorClass {
        parse(status, &[], body).expect("an error").class()
    }

    fn api(code: &str) -> ErrorClass {
        class(200, &format!(r#"{{"ok":false,"error":"{code}"}}"#))
    }

    #[test]
    fn success_is_none() {
        assert!(parse(200, &[], r#"{"ok":true,"ts":"1.2"}"#).is_none());
        assert!(parse(200, &[], r#"{"ok":true,"warning":"missing_charset"}"#).is_none());
    }

    #[test]
    fn rate_limited_keeps_retry_after() {
        let e = parse(
            429,
            &[("retry-after", "30")],
            r#"{"ok":false,"error":"ratelimited"}"#,
        )
        .expect("err");
        assert_eq!(
            e.class(),
            ErrorClass::Retryable {
                retry_after: Some(Duration::from_secs(30))
            }
        );
        assert_eq!(e.code(), Some("ratelimited"));
        // A 429 without a body is still a rate limit.
        assert!(matches!(
            parse(429, &[], ""),
            Some(SlackError::RateLimited {
                retry_after: None,
                ..
            })
        ));
        // The legacy code with HTTP 200.
        let e = parse(
            200,
            &[("retry-after", "2")],
            r#"{"ok":false,"error":"rate_limited"}"#,
        )
        .expect("err");
        assert_eq!(e.class().retry_after(), Some(Duration::from_secs(2)));
    }

    #[test]
    fn codes_follow_the_table() {
        for code in [
            "service_unavailable",
            "request_timeout",
            "team_added_to_org",
            "update_failed",
        ] {
            assert_eq!(api(code), ErrorClass::RETRYABLE, "{code}");
        }
        for code in ["internal_error", "fatal_error"] {
            assert_eq!(api(code), ErrorClass::InDoubt, "{code}");
        }
        for code in [
            "invalid_auth",
            "not_authed",
            "token_revoked",
            "token_expired",
            "account_inactive",
            "missing_scope",
            "not_allowed_token_type",
            "no_permission",
            "access_denied",
            "ekm_access_denied",
            "org_login_required",
            "channel_not_found",
            "not_in_channel",
            "is_archived",
            "restricted_action",
            "restricted_action_read_only_channel",
            "team_not_found",
            "msg_too_long",
            "no_text",
            "invalid_blocks",
            "invalid_blocks_format",
            "msg_blocks_too_long",
            "too_many_attachments",
            "invalid_metadata_format",
            "invalid_metadata_schema",
            "metadata_too_large",
            "markdown_text_conflict",
            "invalid_arg_name",
            "invalid_charset",
            "invalid_form_data",
            "invalid_post_type",
            "missing_post_type",
            "message_limit_exceeded",
            "message_not_found",
            "cant_update_message",
            "edit_window_closed",
            "some_future_code",
        ] {
            assert_eq!(api(code), ErrorClass::Permanent, "{code}");
        }
    }

    #[test]
    fn http_statuses() {
        for s in [500, 502, 504, 520] {
            assert_eq!(
                class(s, "<html>bad gateway</html>"),
                ErrorClass::InDoubt,
                "{s}"
            );
        }
        let e = parse(503, &[("retry-after", "5")], "").expect("err");
        assert_eq!(e.class().retry_after(), Some(Duration::from_secs(5)));
        assert_eq!(class(503, "<html>unavailable</html>"), ErrorClass::InDoubt);
        assert_eq!(class(501, ""), ErrorClass::Permanent);
        for s in [400, 401, 403, 404, 410] {
            assert_eq!(class(s, "nope"), ErrorClass::Permanent, "{s}");
        }
        assert_eq!(class(408, ""), ErrorClass::RETRYABLE);
        // A 200 that is not Slack's JSON: the post may have been applied.
        assert_eq!(
            class(200, "<html>captive portal</html>"),
            ErrorClass::InDoubt
        );
        assert_eq!(class(200, r#"{"channel":"C1"}"#), ErrorClass::InDoubt);
        // A Slack error body wins over the status.
        assert_eq!(
            class(500, r#"{"ok":false,"error":"channel_not_found"}"#),
            ErrorClass::Permanent
        );
    }

    #[test]
    fn idempotent_calls_retry_what_posts_doubt() {
        let e = parse(502, &[], "").expect("err").idempotent();
        assert_eq!(e.class(), ErrorClass::RETRYABLE);
        let e = parse(200, &[], r#"{"ok":false,"error":"internal_error"}"#)
            .expect("err")
            .idempotent();
        assert_eq!(e.class(), ErrorClass::RETRYABLE);
        let e = parse(200, &[], r#"{"ok":false,"error":"invalid_auth"}"#)
            .expect("err")
            .idempotent();
        assert_eq!(e.class(), ErrorClass::Permanent);
    }

    #[test]
    fn converts_into_core_keeping_class_and_code() {
        let e = parse(
            200,
            &[],
            r#"{"ok":false,"error":"missing_scope","needed":"chat:write"}"#,
        )
        .expect("err")
        .in_method("chat.postMessage");
        assert_eq!(
            e.to_string(),
            "chat.postMessage: Slack error `missing_scope` (needed: chat:write; add the scope under the app's OAuth & Permissions and reinstall it to the workspace)"
        );
        let core = e.into_core("Slack(T1)");
        assert_eq!(core.class(), ErrorClass::Permanent);
        assert_eq!(core.code(), Some("missing_scope"));
        assert!(core.to_string().starts_with("Slack(T1): chat.postMessage"));
        let core: ml_core::Error = SlackError::config("SLACK_BOT_TOKEN", "missing").into();
        assert!(matches!(core, ml_core::Error::Config { key, .. } if key == "SLACK_BOT_TOKEN"));
        let core: ml_core::Error = SlackError::RateLimited {
            method: "chat.postMessage".into(),
            retry_after: Some(Duration::from_secs(3)),
        }
        .into();
        assert_eq!(core.class().retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(core.code(), Some("ratelimited"));
    }

    #[test]
    fn http_401_is_an_auth_error_in_core() {
        let core = parse(401, &[], "Unauthorized")
            .expect("err")
            .in_method("chat.postMessage")
            .into_core("Slack(T1)");
        assert!(
            matches!(
                &core,
                ml_core::Error::Auth {
                    class: ErrorClass::Permanent,
                    message,
                } if message.contains("Slack(T1)") && message.contains("HTTP 401")
            ),
            "{core:?}"
        );
    }

    #[test]
    fn transient_rejections_are_retryable() {
        // Labels and statuses are ml-core's (webhook::tests); the class is ours.
        assert_eq!(
            SlackError::Rejected(Rejection::Busy).class(),
            ErrorClass::RETRYABLE
        );
        assert_eq!(
            SlackError::Rejected(Rejection::Unavailable("journal".into())).class(),
            ErrorClass::RETRYABLE
        );
        assert_eq!(
            SlackError::Rejected(Rejection::SignatureMismatch).class(),
            ErrorClass::Permanent
        );
        assert_eq!(
            SlackError::Rejected(Rejection::BadTimestamp).code(),
            Some("bad_timestamp")
        );
    }
}
