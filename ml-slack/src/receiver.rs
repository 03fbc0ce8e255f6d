//! The inbound receiver: verifies and parses what Slack sends (Events API, slash commands,
//! interactivity), answers within Slack's 3 seconds, and hands the work to the host
//! asynchronously. Framework-agnostic: it works on `http::Request<B>` (method, URI,
//! headers, raw body bytes) and returns an `http::Response<String>`; feature `axum` mounts
//! it as a router (`receiver::router`).
//!
//! ```
//! use std::sync::Arc;
//! use ml_slack::receiver::SlackReceiver;
//! use ml_slack::signature::SignatureVerifier;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let verifier = SignatureVerifier::new(&"signing-secret".into());
//! let (receiver, mut inbox) = SlackReceiver::new(verifier.clone()).with_channel(64);
//!
//! // A slash command as Slack would send it.
//! let now = jiff::Timestamp::now();
//! let ts = now.as_second().to_string();
//! let body = "command=%2Fapprove-invoice&text=INV-7&user_id=U1&trigger_id=1.2.3";
//! let request = http::Request::post("/slack/commands")
//!     .header("content-type", "application/x-www-form-urlencoded")
//!     .header("x-slack-request-timestamp", &ts)
//!     .header("x-slack-signature", verifier.sign(&ts, body.as_bytes()))
//!     .body(body)
//!     .unwrap();
//! let response = receiver.handle_at(request, now).await;
//! assert_eq!(response.status(), 200);
//! let received = inbox.recv().await.unwrap();
//! assert!(matches!(received.inbound, ml_slack::events::Inbound::SlashCommand(_)));
//! # }
//! ```
//!
//! # What is checked, in order
//! Everything but the HMAC and the parsing is ml-core's [`ml_core::webhook`]:
//! 1. `POST` only ([`Rejection::MethodNotAllowed`]).
//! 2. Body size ([`Limits`]): a `Content-Length` or a body above the limit (default
//!    1 MiB) is [`Rejection::BodyTooLarge`]; a body shorter than its `Content-Length` is
//!    [`Rejection::Truncated`].
//! 3. Headers present ([`Rejection::MissingHeader`]), readable ([`Rejection::BadHeader`])
//!    and well-formed ([`Rejection::BadSignatureFormat`], [`Rejection::BadTimestamp`]).
//! 4. Timestamp within 5 minutes ([`Rejection::Stale`], [`Rejection::FutureDated`]).
//! 5. HMAC, constant-time ([`Rejection::SignatureMismatch`]).
//! 6. Replay: a signature seen before is [`Rejection::Replayed`].
//! 7. Content type (JSON, form, or none: [`Rejection::UnsupportedContentType`]) and parse
//!    ([`Rejection::Malformed`]).
//! 8. Retry dedupe: an `event_id` (or `trigger_id`) seen before is acknowledged with 200
//!    but not handed to the host again (whatever `X-Slack-Retry-Num` says).
//!
//! # Replay cache and replicas
//! The default [`MemoryReplayCache`] (ml-core's) lives in this process: entries expire with the
//! timestamp window (signatures) or after an hour (event ids), and it holds at most
//! 100,000 entries (when full of unexpired entries, new requests get 503 and Slack
//! retries). With several replicas behind a load balancer, a replay or a retry can reach
//! another replica: give every replica one shared [`ReplayCache`] (Redis `SET NX PX`, a
//! database table with a unique key; ml-store's journal-backed cache survives restarts on
//! one machine).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use jiff::Timestamp;
use ml_core::clock::{Clock, SystemClock, add};
use ml_core::webhook::{Limits, header, media_type, parse_timestamp};
use tokio::sync::mpsc;

use crate::error::Rejection;
use crate::events::{Parsed, Received, Via, parse_events_json, parse_form};
use crate::signature::{SIGNATURE_HEADER, SignatureVerifier, TIMESTAMP_HEADER};

/// The replay cache moved to ml-core; re-exported here so existing paths keep working.
pub use ml_core::webhook::{MemoryReplayCache, ReplayCache};

/// The default body limit (Slack's payloads are far smaller).
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;

/// How long an event id is remembered for retry dedupe (Slack retries for about 5
/// minutes; unconfirmed).
pub const DEDUPE_TTL: Duration = Duration::from_secs(3600);

/// What the host does with inbound items. Called on a spawned task, after Slack got its
/// answer; take as long as needed (answer through `response_url`).
#[async_trait]
pub trait SlackHandler: Send + Sync {
    /// Handles one item.
    async fn handle(&self, received: Received);
}

#[derive(Clone)]
enum Dispatch {
    None,
    Channel(mpsc::Sender<Received>),
    Handler(Arc<dyn SlackHandler>),
}

/// A request that passed every check, before parsing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The signing timestamp (unix seconds).
    pub timestamp: i64,
    /// `X-Slack-Retry-Num`, when present.
    pub retry_num: Option<u32>,
    /// `X-Slack-Retry-Reason`, when present.
    pub retry_reason: Option<String>,
}

/// How much handler work the receiver started and finished (see
/// [`SlackReceiver::progress`]): items handed to a [`SlackHandler`] and handler calls
/// that returned (or panicked).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandlerProgress {
    /// Items handed to the handler (each on its own task).
    pub handed_off: u64,
    /// Handler calls that ended.
    pub finished: u64,
}

impl HandlerProgress {
    /// Whether every handed-off item was handled.
    pub fn is_idle(&self) -> bool {
        self.finished >= self.handed_off
    }
}

/// Counts a finished handler call when dropped, so a panicking handler is counted too.
struct Finished(Arc<tokio::sync::watch::Sender<HandlerProgress>>);

impl Drop for Finished {
    fn drop(&mut self) {
        self.0.send_modify(|p| p.finished += 1);
    }
}

/// The receiver. Share it behind an `Arc`.
pub struct SlackReceiver {
    verifier: SignatureVerifier,
    limits: Limits,
    clock: Arc<dyn Clock>,
    cache: Arc<dyn ReplayCache>,
    dispatch: Dispatch,
    progress: Arc<tokio::sync::watch::Sender<HandlerProgress>>,
}

impl fmt::Debug for SlackReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dispatch = match &self.dispatch {
            Dispatch::None => "none",
            Dispatch::Channel(_) => "channel",
            Dispatch::Handler(_) => "handler",
        };
        f.debug_struct("SlackReceiver")
            .field("verifier", &self.verifier)
            .field("max_body", &self.limits.max_body())
            .field("cache", &self.cache)
            .field("dispatch", &dispatch)
            .finish_non_exhaustive()
    }
}

impl SlackReceiver {
    /// A receiver verifying with `verifier`, on the system clock, with the in-memory replay
    /// cache and no hand-off yet (set one with [`with_channel`](Self::with_channel) or
    /// [`with_handler`](Self::with_handler); without one, requests are answered 503).
    pub fn new(verifier: SignatureVerifier) -> Self {
        Self {
            verifier,
            limits: Limits::new(DEFAULT_MAX_BODY),
            clock: Arc::new(SystemClock),
            cache: Arc::new(MemoryReplayCache::default()),
            dispatch: Dispatch::None,
            progress: Arc::new(tokio::sync::watch::Sender::new(HandlerProgress::default())),
        }
    }

    /// The handler work started and finished so far, as a watch channel: hosts and tests
    /// await completion on it instead of sleeping. An item is counted as handed off before
    /// the request is acknowledged, so once Slack (or a test) has its answer, awaiting
    /// [`idle`](Self::idle) covers that item's work. Only [`with_handler`](Self::with_handler)
    /// dispatch is counted (a channel's consumer owns its work).
    pub fn progress(&self) -> tokio::sync::watch::Receiver<HandlerProgress> {
        self.progress.subscribe()
    }

    /// Waits until every item handed to the handler so far was handled (at once when
    /// none is running).
    pub async fn idle(&self) {
        let mut rx = self.progress.subscribe();
        // The sender lives in `self`: `wait_for` cannot fail while we borrow it.
        let _ = rx.wait_for(HandlerProgress::is_idle).await;
    }

    /// Hands inbound items to a bounded channel of `capacity`; when it is full, requests
    /// are answered 503 (not acknowledged), so Slack retries them later.
    pub fn with_channel(mut self, capacity: usize) -> (Self, mpsc::Receiver<Received>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        self.dispatch = Dispatch::Channel(tx);
        (self, rx)
    }

    /// Hands each inbound item to `handler` on a spawned tokio task.
    pub fn with_handler(mut self, handler: Arc<dyn SlackHandler>) -> Self {
        self.dispatch = Dispatch::Handler(handler);
        self
    }

    /// Sets the body limit.
    pub fn with_max_body(mut self, bytes: usize) -> Self {
        self.limits = self.limits.with_max_body(bytes);
        self
    }

    /// Sets the clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Uses a shared replay cache (several replicas).
    pub fn with_replay_cache(mut self, cache: Arc<dyn ReplayCache>) -> Self {
        self.cache = cache;
        self
    }

    /// The body limit.
    pub fn max_body(&self) -> usize {
        self.limits.max_body()
    }

    /// The verifier.
    pub fn verifier(&self) -> &SignatureVerifier {
        &self.verifier
    }

    /// Checks a request at `now`: method, size, headers, window, signature, replay (the
    /// signature is remembered). Does not parse.
    pub async fn verify_at(
        &self,
        method: &Method,
        headers: &HeaderMap,
        body: &[u8],
        now: Timestamp,
    ) -> Result<Verified, Rejection> {
        self.limits.check_parts(method, headers, body)?;
        let timestamp = header(headers, TIMESTAMP_HEADER)?;
        let signature = header(headers, SIGNATURE_HEADER)?;
        let sig = self.verifier.verify_at(timestamp, body, signature, now)?;
        let ts = parse_timestamp(timestamp)?;
        let window = i64::try_from(self.verifier.window().as_secs()).unwrap_or(i64::MAX);
        let until = Timestamp::from_second(ts.saturating_add(window).saturating_add(1))
            .unwrap_or(Timestamp::MAX);
        let key = format!("sig:{}", hex::encode(sig));
        if !self
            .cache
            .insert_if_absent(&key, until.max(now), now)
            .await?
        {
            return Err(Rejection::Replayed);
        }
        let retry_num = headers
            .get("x-slack-retry-num")
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse().ok());
        let retry_reason = headers
            .get("x-slack-retry-reason")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(Verified {
            timestamp: ts,
            retry_num,
            retry_reason,
        })
    }

    /// Handles a request now (the receiver's clock).
    pub async fn handle<B: AsRef<[u8]>>(
        &self,
        request: http::Request<B>,
    ) -> http::Response<String> {
        let now = self.clock.now();
        self.handle_at(request, now).await
    }

    /// Handles a request at `now`: verifies, parses, answers the `url_verification`
    /// challenge, dedupes retries, and hands the item off (never waits for the host).
    pub async fn handle_at<B: AsRef<[u8]>>(
        &self,
        request: http::Request<B>,
        now: Timestamp,
    ) -> http::Response<String> {
        let (parts, body) = request.into_parts();
        let body = body.as_ref();
        match self.process(&parts.method, &parts.headers, body, now).await {
            Ok(answer) => answer,
            // Slack's own retry of a request already received (its answer was lost:
            // a timeout, a dropped connection), identical and signed: acknowledged and
            // not handled again. A replay without the retry header is refused.
            Err(Rejection::Replayed) if parts.headers.contains_key("x-slack-retry-num") => {
                tracing::info!("a Slack retry of a request already received: acknowledged");
                let mut ack = http::Response::new(String::new());
                ack.headers_mut()
                    .insert("x-slack-no-retry", HeaderValue::from_static("1"));
                ack
            }
            Err(rejection) => {
                tracing::info!(reason = rejection.as_str(), "refused a Slack request");
                rejection_response(&rejection)
            }
        }
    }

    async fn process(
        &self,
        method: &Method,
        headers: &HeaderMap,
        body: &[u8],
        now: Timestamp,
    ) -> Result<http::Response<String>, Rejection> {
        let verified = self.verify_at(method, headers, body, now).await?;
        let sig_key = headers
            .get(SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().strip_prefix("v0="))
            .map(|h| format!("sig:{}", h.to_ascii_lowercase()));
        let content_type = media_type(headers).unwrap_or_default();
        let parsed = match content_type.as_str() {
            "application/json" => parse_events_json(body),
            "" if body.first() == Some(&b'{') => parse_events_json(body),
            "application/x-www-form-urlencoded" | "" => parse_form(body),
            _ => Err(Rejection::UnsupportedContentType(content_type)),
        }?;
        let inbound = match parsed {
            Parsed::UrlVerification(challenge) => {
                return Ok(json_response(
                    StatusCode::OK,
                    serde_json::json!({ "challenge": challenge }).to_string(),
                ));
            }
            Parsed::AckOnly(kind) => {
                tracing::warn!(kind, "Slack notice acknowledged");
                return Ok(empty(StatusCode::OK));
            }
            Parsed::Inbound(i) => *i,
        };
        let received = Received {
            inbound,
            via: Via::Http {
                retry_num: verified.retry_num,
                retry_reason: verified.retry_reason,
            },
            received_at: now,
        };
        match self.deliver(received, now).await {
            Ok(_) => Ok(empty(StatusCode::OK)),
            Err(r) => {
                if let Some(k) = sig_key {
                    // Not handed off: let Slack's retry (even with the same signature) in.
                    self.cache.remove(&k).await;
                }
                Err(r)
            }
        }
    }

    /// Dedupes and hands off one item (HTTP and Socket Mode share this). `Ok(true)` when it
    /// was handed off, `Ok(false)` for a duplicate (to acknowledge, not to hand off again);
    /// [`Rejection::Busy`] when it could not be taken.
    pub async fn deliver(&self, received: Received, now: Timestamp) -> Result<bool, Rejection> {
        let key = received.inbound.dedupe_key();
        if let Some(k) = &key
            && !self
                .cache
                .insert_if_absent(k, add(now, DEDUPE_TTL), now)
                .await?
        {
            tracing::info!(key = %k, via = ?received.via, "duplicate Slack delivery acknowledged, not handed off");
            return Ok(false);
        }
        let outcome = match &self.dispatch {
            Dispatch::None => {
                tracing::warn!("SlackReceiver has no handler; refusing");
                Err(Rejection::Busy)
            }
            Dispatch::Channel(tx) => tx
                .try_send(received)
                .map(|()| true)
                .map_err(|_| Rejection::Busy),
            Dispatch::Handler(h) => {
                let h = Arc::clone(h);
                self.progress.send_modify(|p| p.handed_off += 1);
                let done = Finished(Arc::clone(&self.progress));
                tokio::spawn(async move {
                    let _done = done;
                    h.handle(received).await;
                });
                Ok(true)
            }
        };
        if outcome.is_err()
            && let Some(k) = &key
        {
            self.cache.remove(k).await;
        }
        outcome
    }
}

fn empty(status: StatusCode) -> http::Response<String> {
    let mut r = http::Response::new(String::new());
    *r.status_mut() = status;
    r
}

fn json_response(status: StatusCode, body: String) -> http::Response<String> {
    let mut r = http::Response::new(body);
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn rejection_response(r: &Rejection) -> http::Response<String> {
    let mut resp = r.to_response();
    if *r == Rejection::Replayed {
        // Already handled: tell Slack not to retry it again.
        resp.headers_mut()
            .insert("x-slack-no-retry", HeaderValue::from_static("1"));
    }
    resp
}

#[cfg(feature = "axum")]
#[async_trait]
impl ml_core::webhook::WebhookHandler for SlackReceiver {
    fn max_body(&self) -> usize {
        self.limits.max_body()
    }

    async fn handle(&self, request: http::Request<bytes::Bytes>) -> http::Response<String> {
        SlackReceiver::handle(self, request).await
    }
}

/// Mounts the receiver at `path` as an axum router (feature `axum`), with ml-core's
/// [`router`](ml_core::webhook::axum::router): the body is read up to the receiver's
/// limit; a longer one is answered 413, a cut one 400.
#[cfg(feature = "axum")]
pub fn router(receiver: Arc<SlackReceiver>, path: &str) -> axum::Router {
    ml_core::webhook::axum::router(path, receiver)
}

#[cfg(test)]
mod tests {
    use http::header::CONTENT_LENGTH;

    use super::*;
    use crate::events::Inbound;

    const SECRET: &str = "test-signing-secret";

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).expect("ts")
    }

    fn signed(body: &str, ts: i64, content_type: &str) -> http::Request<Vec<u8>> {
        let v = SignatureVerifier::new(&SECRET.into());
        let t = ts.to_string();
        http::Request::post("/slack")
            .header(CONTENT_TYPE, content_type)
            .header(CONTENT_LENGTH, body.len())
            .header(TIMESTAMP_HEADER, &t)
            .header(SIGNATURE_HEADER, v.sign(&t, body.as_bytes()))
            .body(body.as_bytes().to_vec())
            .expect("request")
    }

    fn event(id: &str) -> String {
        format!(
            r#"{{"type":"event_callback","team_id":"T1","event_id":"{id}","event_time":1800000000,"event":{{"type":"message","channel":"C1","text":"hi","ts":"1.1"}}}}"#
        )
    }

    #[tokio::test]
    async fn url_verification_answers_the_challenge() {
        let (r, _rx) = SlackReceiver::new(SignatureVerifier::new(&SECRET.into())).with_channel(4);
        let resp = r
            .handle_at(
                signed(
                    r#"{"token":"x","challenge":"ch4ll","type":"url_verification"}"#,
                    1_800_000_000,
                    "application/json",
                ),
                now(),
            )
            .await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.body(), r#"{"challenge":"ch4ll"}"#);
    }

    #[tokio::test]
    async fn retries_are_acknowledged_once_handed_off_once() {
        let (r, mut rx) =
            SlackReceiver::new(SignatureVerifier::new(&SECRET.into())).with_channel(4);
        let first = r
            .handle_at(
                signed(&event("Ev1"), 1_800_000_000, "application/json"),
                now(),
            )
            .await;
        assert_eq!(first.status(), 200);
        // Slack's retry: new timestamp and signature, same event id, retry headers.
        let mut retry = signed(&event("Ev1"), 1_800_000_060, "application/json");
        retry
            .headers_mut()
            .insert("x-slack-retry-num", HeaderValue::from_static("1"));
        retry.headers_mut().insert(
            "x-slack-retry-reason",
            HeaderValue::from_static("http_timeout"),
        );
        let second = r.handle_at(retry, now()).await;
        assert_eq!(second.status(), 200);
        let got = rx.recv().await.expect("one");
        assert!(matches!(
            got.via,
            Via::Http {
                retry_num: None,
                ..
            }
        ));
        assert!(rx.try_recv().is_err(), "the retry must not be handed off");
    }

    #[tokio::test]
    async fn busy_queue_is_not_acknowledged_and_retry_gets_in() {
        let (r, mut rx) =
            SlackReceiver::new(SignatureVerifier::new(&SECRET.into())).with_channel(1);
        let ok = r
            .handle_at(
                signed(&event("E1"), 1_800_000_000, "application/json"),
                now(),
            )
            .await;
        assert_eq!(ok.status(), 200);
        let busy = r
            .handle_at(
                signed(&event("E2"), 1_800_000_000, "application/json"),
                now(),
            )
            .await;
        assert_eq!(busy.status(), 503);
        rx.recv().await.expect("E1");
        // The same request again (same signature) is now taken.
        let again = r
            .handle_at(
                signed(&event("E2"), 1_800_000_000, "application/json"),
                now(),
            )
            .await;
        assert_eq!(again.status(), 200);
        assert!(matches!(
            rx.recv().await.expect("E2").inbound,
            Inbound::Event(e) if e.event_id == "E2"
        ));
    }

    #[tokio::test]
    async fn without_handler_requests_are_refused() {
        let r = SlackReceiver::new(SignatureVerifier::new(&SECRET.into()));
        let resp = r
            .handle_at(
                signed(&event("E1"), 1_800_000_000, "application/json"),
                now(),
            )
            .await;
        assert_eq!(resp.status(), 503);
    }

    /// Holds each item until released, so the test decides when handler work ends.
    struct Gated(tokio::sync::Mutex<Option<tokio::sync::oneshot::Receiver<()>>>);

    #[async_trait]
    impl SlackHandler for Gated {
        async fn handle(&self, _: Received) {
            let gate = self.0.lock().await.take();
            if let Some(g) = gate {
                let _ = g.await;
            }
        }
    }

    #[tokio::test]
    async fn idle_waits_for_handed_off_work_and_counts_it_before_the_ack() {
        let (release, gate) = tokio::sync::oneshot::channel();
        let r = SlackReceiver::new(SignatureVerifier::new(&SECRET.into()))
            .with_handler(Arc::new(Gated(tokio::sync::Mutex::new(Some(gate)))));
        r.idle().await;
        let ok = r
            .handle_at(
                signed(&event("E1"), 1_800_000_000, "application/json"),
                now(),
            )
            .await;
        assert_eq!(ok.status(), 200);
        // Counted before the answer: the work is running (held by the gate).
        let p = *r.progress().borrow();
        assert_eq!(p.handed_off, 1);
        assert!(!p.is_idle(), "{p:?}");
        // A refused request is never handed off.
        let stale = r
            .handle_at(
                signed(&event("E2"), 1_700_000_000, "application/json"),
                now(),
            )
            .await;
        assert_eq!(stale.status(), 401);
        assert_eq!(r.progress().borrow().handed_off, 1);
        release.send(()).expect("release");
        r.idle().await;
        assert_eq!(
            *r.progress().borrow(),
            HandlerProgress {
                handed_off: 1,
                finished: 1
            }
        );
    }
}
