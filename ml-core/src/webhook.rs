//! Inbound webhook plumbing shared by every connector that receives signed callbacks
//! (Slack requests, Twilio status callbacks, the SendGrid Event Webhook, ...). A connector
//! supplies only its signature math and its payload parsing; everything around them lives
//! here:
//!
//! * [`Rejection`]: one refusal type with a distinct reason per failure, its HTTP status and
//!   a stable label for logs and metrics.
//! * [`Limits`]: method, body size, `Content-Length` consistency and content type, checked
//!   on an `http::Request` before any signature work.
//! * [`header`], [`check_timestamp`] (freshness window with an injected `now`) and
//!   [`ct_eq`] (constant-time comparison).
//! * [`ReplayCache`]: remembers keys (signatures, event ids) for a while, so a replay is
//!   refused; [`MemoryReplayCache`] is the bounded in-process one. A journal-backed cache
//!   (`ml-store`) survives restarts; a shared one serves several replicas.
//! * `axum` (feature `axum`): mounts any `WebhookHandler` as a router, reading the body
//!   up to the handler's limit.
//!
//! ```
//! use std::time::Duration;
//! use bytes::Bytes;
//! use ml_core::webhook::{Limits, Rejection, check_timestamp, header};
//!
//! let limits = Limits::new(1024).with_content_types(&["application/json"]);
//! let request = http::Request::post("/hook")
//!     .header("content-type", "application/json")
//!     .header("x-timestamp", "1700000000")
//!     .body(Bytes::from_static(b"{}"))
//!     .unwrap();
//! limits.check(&request).unwrap();
//! let now = jiff::Timestamp::from_second(1_700_000_030).unwrap();
//! let ts = header(request.headers(), "x-timestamp").unwrap();
//! assert_eq!(check_timestamp(ts, now, Duration::from_secs(300)), Ok(1_700_000_000));
//! assert_eq!(
//!     check_timestamp("1700000000", now, Duration::from_secs(10)),
//!     Err(Rejection::Stale)
//! );
//! assert_eq!(header(request.headers(), "x-signature"), Err(Rejection::MissingHeader("x-signature")));
//! ```

use std::fmt;
use std::time::Duration;

use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, Method, StatusCode};
use jiff::Timestamp;
use subtle::ConstantTimeEq as _;

#[cfg(feature = "axum")]
pub mod axum;
mod replay;
#[cfg(test)]
mod tests;

#[cfg(feature = "axum")]
pub use self::axum::WebhookHandler;
pub use replay::{MemoryReplayCache, OnFull, ReplayCache};

/// Why an inbound webhook request was refused. Each kind is distinct so that tests, logs
/// and metrics can tell them apart; none carries a secret, a signature or a body.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// The request's method is not the one accepted (`POST`).
    MethodNotAllowed,
    /// The content type is not one the receiver accepts.
    UnsupportedContentType(String),
    /// A required header is missing (its name).
    MissingHeader(&'static str),
    /// A header is present but not visible ASCII (its name).
    BadHeader(&'static str),
    /// The signature header is not in the expected shape (prefix, length, encoding).
    BadSignatureFormat,
    /// The signing timestamp is not a whole, non-negative number of seconds.
    BadTimestamp,
    /// The signature does not match (forged, signed with another secret, altered body or
    /// URL).
    SignatureMismatch,
    /// The signing timestamp is further in the past than the window allows.
    Stale,
    /// The signing timestamp is further in the future than the window allows.
    FutureDated,
    /// The same signed request was seen before (a replay).
    Replayed,
    /// The body (or its declared `Content-Length`) exceeds the limit.
    BodyTooLarge,
    /// The body is shorter than its `Content-Length` said.
    Truncated,
    /// The body could not be understood (bad JSON or form, missing fields, a body longer
    /// than its `Content-Length`).
    Malformed(String),
    /// The receiver cannot take more work right now (a full hand-off queue, a replay cache
    /// full of unexpired keys); the sender retries.
    Busy,
    /// Verified, but a dependency (the journal, a shared replay cache) failed; answered 503
    /// so the sender retries. The text names the failure, never a secret.
    Unavailable(String),
}

impl Rejection {
    /// A short stable label for logs and metrics (`signature_mismatch`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::MethodNotAllowed => "method_not_allowed",
            Self::UnsupportedContentType(_) => "unsupported_content_type",
            Self::MissingHeader(_) => "missing_header",
            Self::BadHeader(_) => "bad_header",
            Self::BadSignatureFormat => "bad_signature_format",
            Self::BadTimestamp => "bad_timestamp",
            Self::SignatureMismatch => "signature_mismatch",
            Self::Stale => "stale",
            Self::FutureDated => "future_dated",
            Self::Replayed => "replayed",
            Self::BodyTooLarge => "body_too_large",
            Self::Truncated => "truncated",
            Self::Malformed(_) => "malformed",
            Self::Busy => "busy",
            Self::Unavailable(_) => "unavailable",
        }
    }

    /// The HTTP status to answer with: 401 for authentication failures (headers,
    /// signature, timestamp, replay), 405, 413, 415, 400, and 503 when busy or unavailable.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::UnsupportedContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Truncated | Self::Malformed(_) => StatusCode::BAD_REQUEST,
            Self::Busy | Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::MissingHeader(_)
            | Self::BadHeader(_)
            | Self::BadSignatureFormat
            | Self::BadTimestamp
            | Self::SignatureMismatch
            | Self::Stale
            | Self::FutureDated
            | Self::Replayed => StatusCode::UNAUTHORIZED,
        }
    }

    /// Whether the sender should try again later (busy, unavailable).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Busy | Self::Unavailable(_))
    }

    /// A plain-text response with [`status`](Self::status) and the label as body.
    pub fn to_response(&self) -> http::Response<String> {
        let mut resp = http::Response::new(self.as_str().to_owned());
        *resp.status_mut() = self.status();
        resp.headers_mut().insert(
            CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        resp
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MethodNotAllowed => f.write_str("only POST is accepted"),
            Self::UnsupportedContentType(t) => write!(f, "unsupported content type `{t}`"),
            Self::MissingHeader(h) => write!(f, "missing header `{h}`"),
            Self::BadHeader(h) => write!(f, "header `{h}` is not visible ASCII"),
            Self::BadSignatureFormat => f.write_str("malformed signature header"),
            Self::BadTimestamp => f.write_str("the request timestamp is not a number of seconds"),
            Self::SignatureMismatch => f.write_str("signature does not match"),
            Self::Stale => f.write_str("request timestamp is too old"),
            Self::FutureDated => f.write_str("request timestamp is in the future"),
            Self::Replayed => f.write_str("request was already received (replay)"),
            Self::BodyTooLarge => f.write_str("request body is too large"),
            Self::Truncated => f.write_str("request body is shorter than its Content-Length"),
            Self::Malformed(why) => write!(f, "malformed request: {why}"),
            Self::Busy => f.write_str("receiver is busy"),
            Self::Unavailable(why) => write!(f, "receiver unavailable: {why}"),
        }
    }
}

impl std::error::Error for Rejection {}

/// What a receiver accepts before looking at a signature: the method, the body size (the
/// body as received and its declared `Content-Length`) and, optionally, the content types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    method: Method,
    max_body: usize,
    content_types: Vec<String>,
}

impl Limits {
    /// `POST` only, bodies up to `max_body` bytes, any content type.
    pub fn new(max_body: usize) -> Self {
        Self {
            method: Method::POST,
            max_body,
            content_types: Vec::new(),
        }
    }

    /// Accepts only these media types (compared case-insensitively, parameters such as
    /// `charset` ignored). A request without `Content-Type` is refused once any is set.
    pub fn with_content_types(mut self, types: &[&str]) -> Self {
        self.content_types = types.iter().map(|t| t.to_ascii_lowercase()).collect();
        self
    }

    /// Sets the body limit.
    pub fn with_max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// The body limit.
    pub fn max_body(&self) -> usize {
        self.max_body
    }

    /// Checks the method, the declared length, the body length and the content type.
    pub fn check<B: AsRef<[u8]>>(&self, request: &http::Request<B>) -> Result<(), Rejection> {
        self.check_parts(request.method(), request.headers(), request.body().as_ref())
    }

    /// [`check`](Self::check) on a request already taken apart.
    pub fn check_parts(
        &self,
        method: &Method,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(), Rejection> {
        if *method != self.method {
            return Err(Rejection::MethodNotAllowed);
        }
        if body.len() > self.max_body {
            return Err(Rejection::BodyTooLarge);
        }
        if let Some(declared) = declared_length(headers)? {
            if declared > self.max_body as u64 {
                return Err(Rejection::BodyTooLarge);
            }
            let len = body.len() as u64;
            if len < declared {
                return Err(Rejection::Truncated);
            }
            if len > declared {
                return Err(Rejection::Malformed(
                    "body is longer than its Content-Length".into(),
                ));
            }
        }
        if !self.content_types.is_empty() {
            let given = media_type(headers).unwrap_or_default();
            if !self.content_types.contains(&given) {
                return Err(Rejection::UnsupportedContentType(given));
            }
        }
        Ok(())
    }
}

/// The declared `Content-Length`, if any (a value that is not a number is malformed).
pub fn declared_length(headers: &HeaderMap) -> Result<Option<u64>, Rejection> {
    headers
        .get(CONTENT_LENGTH)
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| Rejection::Malformed("invalid Content-Length".into()))
        })
        .transpose()
}

/// The media type of `Content-Type`, lower-cased, without parameters (`application/json`).
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    let t = v.split(';').next().unwrap_or_default().trim();
    Some(t.to_ascii_lowercase())
}

/// A required header as text: [`Rejection::MissingHeader`] when absent,
/// [`Rejection::BadHeader`] when not visible ASCII.
pub fn header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, Rejection> {
    headers
        .get(name)
        .ok_or(Rejection::MissingHeader(name))?
        .to_str()
        .map_err(|_| Rejection::BadHeader(name))
}

/// The longest timestamp accepted, in digits (unix seconds have 10 until the year 2286).
const MAX_TIMESTAMP_DIGITS: usize = 12;

/// Parses a signing timestamp (whole non-negative unix seconds, surrounding spaces allowed)
/// and checks it is within `window` of `now` either way. Returns the seconds.
///
/// [`Rejection::BadTimestamp`] for anything that is not digits (signs, fractions, empty,
/// more than 12 digits), [`Rejection::Stale`] / [`Rejection::FutureDated`] outside the
/// window (its edges included in it).
pub fn check_timestamp(raw: &str, now: Timestamp, window: Duration) -> Result<i64, Rejection> {
    let secs = parse_timestamp(raw)?;
    let window = i64::try_from(window.as_secs()).unwrap_or(i64::MAX);
    let age = now.as_second().saturating_sub(secs);
    if age > window {
        return Err(Rejection::Stale);
    }
    if age < window.saturating_neg() {
        return Err(Rejection::FutureDated);
    }
    Ok(secs)
}

/// Parses whole non-negative unix seconds (at most 12 digits), without a window.
pub fn parse_timestamp(raw: &str) -> Result<i64, Rejection> {
    let t = raw.trim();
    if t.is_empty() || t.len() > MAX_TIMESTAMP_DIGITS || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Rejection::BadTimestamp);
    }
    t.parse().map_err(|_| Rejection::BadTimestamp)
}

/// Compares two byte strings in time independent of where they differ (the lengths are not
/// secret: a length mismatch returns at once).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}
