//! Receivers for Twilio status callbacks and the SendGrid signed Event Webhook, on plain
//! `http` types (any framework can use them; an axum router comes with the `axum` feature).
//!
//! Both verify before parsing, compare in constant time, refuse bodies over a size limit,
//! drop repeats (Twilio: the same `MessageSid` + `MessageStatus` or the same signature;
//! SendGrid: the same `sg_event_id`), and turn what remains into
//! [`CallbackUpdate`]s that [`AuditStore::apply_callback`] folds into the journal by remote
//! id: idempotently and never downgrading (`delivered` stays `delivered` when a late
//! `sent` arrives).

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use jiff::Timestamp;
use ml_core::audit::{AuditStore, CallbackApplied, CallbackUpdate, RemoteStatus};
use ml_core::clock::{Clock, SystemClock};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::Value;

use crate::signature::{SendGridPublicKey, verify_twilio_form, verify_twilio_json};

/// The largest body accepted (64 KiB for Twilio, 4 MiB for SendGrid batches).
pub const TWILIO_MAX_BODY: usize = 64 * 1024;
/// The largest SendGrid event batch accepted.
pub const SENDGRID_MAX_BODY: usize = 4 * 1024 * 1024;

/// Why a webhook request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiverError {
    /// The signature header is missing.
    #[error("missing signature header `{0}`")]
    MissingSignature(&'static str),
    /// The signature does not match (forged, wrong key, wrong URL, altered body).
    #[error("signature mismatch")]
    BadSignature,
    /// The SendGrid timestamp is missing, malformed, or outside the freshness window.
    #[error("timestamp outside the freshness window or malformed")]
    Stale,
    /// The body is over the size limit.
    #[error("body over {0} bytes")]
    TooLarge(usize),
    /// Not a POST.
    #[error("method not allowed")]
    Method,
    /// Signed, but not understood.
    #[error("malformed payload: {0}")]
    Malformed(String),
    /// Verified, but the journal failed: answer 503 so the sender tries again (the
    /// request is not remembered as seen).
    #[error("journal: {0}")]
    Journal(String),
}

impl ReceiverError {
    /// The HTTP status to answer with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingSignature(_) | Self::BadSignature | Self::Stale => StatusCode::FORBIDDEN,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Method => StatusCode::METHOD_NOT_ALLOWED,
            Self::Malformed(_) => StatusCode::BAD_REQUEST,
            Self::Journal(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// A bounded set of recently seen keys (oldest forgotten first).
#[derive(Debug)]
struct Seen {
    cap: usize,
    order: VecDeque<String>,
    set: HashSet<String>,
}

impl Seen {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            order: VecDeque::new(),
            set: HashSet::new(),
        }
    }

    /// True when `key` is new (and remembers it).
    fn insert(&mut self, key: String) -> bool {
        if self.set.contains(&key) {
            return false;
        }
        if self.order.len() >= self.cap
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.order.push_back(key.clone());
        self.set.insert(key);
        true
    }

    fn forget(&mut self, keys: &[String]) {
        for k in keys {
            self.set.remove(k);
        }
    }
}

/// Maps a Twilio `MessageStatus` to the journal's status (`None`: not an outbound status).
pub fn twilio_status(s: &str) -> Option<RemoteStatus> {
    Some(match s {
        "accepted" | "queued" | "scheduled" => RemoteStatus::Queued,
        "sending" => RemoteStatus::Sending,
        "sent" => RemoteStatus::Sent,
        "delivered" => RemoteStatus::Delivered,
        "read" => RemoteStatus::Read,
        "undelivered" => RemoteStatus::Undelivered,
        "failed" | "canceled" => RemoteStatus::Failed,
        _ => return None,
    })
}

/// What one verified callback said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verified {
    /// A status update for the journal.
    Update(CallbackUpdate),
    /// Seen before (same sid + status, or same signature): nothing to do.
    Duplicate,
    /// A status the journal does not track (`receiving`, `partially_delivered`, …).
    Ignored,
}

fn header<'a, B>(req: &'a Request<B>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn check_post(req: &Request<Bytes>, limit: usize) -> Result<(), ReceiverError> {
    if req.method() != http::Method::POST {
        return Err(ReceiverError::Method);
    }
    if req.body().len() > limit {
        return Err(ReceiverError::TooLarge(limit));
    }
    Ok(())
}

/// Verifies Twilio status callbacks (`X-Twilio-Signature`, HMAC-SHA1 with the Auth Token).
///
/// The signed URL is rebuilt from the configured public URL (scheme, host, port and path:
/// proxies rewrite those) plus the query string of the request as received (the
/// `delivery_id` the sink added). Both the URL with and without its port are accepted, as
/// Twilio's own libraries do.
pub struct TwilioStatusReceiver {
    auth_token: SecretString,
    public_url: String,
    clock: Arc<dyn Clock>,
    seen: Mutex<Seen>,
}

impl fmt::Debug for TwilioStatusReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioStatusReceiver")
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

impl TwilioStatusReceiver {
    /// A receiver for callbacks to `public_url` (the `StatusCallback` URL given to the sink,
    /// without the `delivery_id` the sink adds), verified with `auth_token`.
    pub fn new(auth_token: impl Into<SecretString>, public_url: impl Into<String>) -> Self {
        let mut public_url = public_url.into();
        if let Some(i) = public_url.find('?') {
            public_url.truncate(i);
        }
        Self {
            auth_token: auth_token.into(),
            public_url,
            clock: Arc::new(SystemClock),
            seen: Mutex::new(Seen::new(100_000)),
        }
    }

    /// The clock that stamps updates (Twilio callbacks carry no timestamp).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// How many (sid, status) pairs and signatures are remembered for deduplication
    /// (default 100,000).
    pub fn with_replay_capacity(self, n: usize) -> Self {
        Self {
            seen: Mutex::new(Seen::new(n.max(1))),
            ..self
        }
    }

    /// The URL the signature must cover for this request.
    pub fn signed_url<B>(&self, req: &Request<B>) -> String {
        match req.uri().query() {
            Some(q) => format!("{}?{q}", self.public_url),
            None => self.public_url.clone(),
        }
    }

    /// Verifies a callback and parses it, without touching the journal (it is remembered
    /// as seen: a repeat answers [`Verified::Duplicate`]).
    pub fn verify(&self, req: &Request<Bytes>) -> Result<Verified, ReceiverError> {
        self.verify_keyed(req).map(|(v, _)| v)
    }

    fn verify_keyed(&self, req: &Request<Bytes>) -> Result<(Verified, Vec<String>), ReceiverError> {
        check_post(req, TWILIO_MAX_BODY)?;
        let signature = header(req, "x-twilio-signature")
            .ok_or(ReceiverError::MissingSignature("X-Twilio-Signature"))?;
        let url = self.signed_url(req);
        let token = self.auth_token.expose_secret().as_bytes();
        let is_json = header(req, "content-type")
            .is_some_and(|c| c.trim_start().starts_with("application/json"));
        let params: Vec<(String, String)> = if is_json {
            if !verify_twilio_json(token, &url, req.body(), signature) {
                return Err(ReceiverError::BadSignature);
            }
            let v: Value = serde_json::from_slice(req.body())
                .map_err(|e| ReceiverError::Malformed(e.to_string()))?;
            v.as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default()
        } else {
            let params: Vec<(String, String)> = serde_urlencoded::from_bytes(req.body())
                .map_err(|e| ReceiverError::Malformed(e.to_string()))?;
            if !verify_twilio_form(token, &url, &params, signature) {
                return Err(ReceiverError::BadSignature);
            }
            params
        };
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let sid = get("MessageSid")
            .or_else(|| get("SmsSid"))
            .ok_or_else(|| ReceiverError::Malformed("no MessageSid".into()))?;
        let status_text = get("MessageStatus")
            .or_else(|| get("SmsStatus"))
            .ok_or_else(|| ReceiverError::Malformed("no MessageStatus".into()))?;
        let keys = vec![format!("{sid}/{status_text}"), format!("sig:{signature}")];
        {
            let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            let fresh_pair = seen.insert(keys[0].clone());
            let fresh_sig = seen.insert(keys[1].clone());
            if !(fresh_pair && fresh_sig) {
                return Ok((Verified::Duplicate, Vec::new()));
            }
        }
        let Some(status) = twilio_status(status_text) else {
            return Ok((Verified::Ignored, keys));
        };
        let update = CallbackUpdate {
            remote_id: sid.to_owned(),
            status,
            at: self.clock.now(),
            error_code: get("ErrorCode")
                .filter(|c| !c.is_empty())
                .map(str::to_owned),
        };
        Ok((Verified::Update(update), keys))
    }

    /// Verifies a callback and applies it to the journal. Answers what to reply: 204 for
    /// anything verified (applied, stale, duplicate, unknown sid: Twilio must not retry),
    /// the refusal's status otherwise; a journal failure is [`ReceiverError::Journal`] (503, so
    /// Twilio tries again, and the callback is not remembered as seen).
    pub async fn handle(
        &self,
        req: &Request<Bytes>,
        store: &dyn AuditStore,
    ) -> Result<Handled, ReceiverError> {
        match self.verify_keyed(req)? {
            (Verified::Update(u), keys) => match store.apply_callback(&u).await {
                Ok(applied) => Ok(Handled::Applied(vec![applied])),
                Err(e) => {
                    self.seen
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .forget(&keys);
                    Err(ReceiverError::Journal(e.to_string()))
                }
            },
            (Verified::Duplicate, _) => Ok(Handled::Duplicate),
            (Verified::Ignored, _) => Ok(Handled::Ignored),
        }
    }
}

/// What handling a webhook did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handled {
    /// Updates went to the journal, with what each did.
    Applied(Vec<CallbackApplied>),
    /// A repeat: nothing done.
    Duplicate,
    /// Nothing the journal tracks.
    Ignored,
}

/// Maps a SendGrid event to the journal's status (`None`: not tracked).
pub fn sendgrid_status(event: &str) -> Option<RemoteStatus> {
    Some(match event {
        "processed" => RemoteStatus::Queued,
        "deferred" => RemoteStatus::Sending,
        "delivered" => RemoteStatus::Delivered,
        "open" | "click" => RemoteStatus::Read,
        "bounce" => RemoteStatus::Undelivered,
        "dropped" => RemoteStatus::Failed,
        _ => return None,
    })
}

/// The `X-Message-Id` part of an `sg_message_id` (`<X-Message-Id>.filter…`).
pub fn message_id_of(sg_message_id: &str) -> &str {
    sg_message_id.split('.').next().unwrap_or(sg_message_id)
}

/// Verifies the SendGrid signed Event Webhook (ECDSA P-256 over timestamp + raw body).
pub struct SendGridEventReceiver {
    key: SendGridPublicKey,
    window: Duration,
    clock: Arc<dyn Clock>,
    seen: Mutex<Seen>,
}

impl fmt::Debug for SendGridEventReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendGridEventReceiver")
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl SendGridEventReceiver {
    /// A receiver with the verification key as SendGrid shows it (base64 DER
    /// SubjectPublicKeyInfo). Freshness window: 10 minutes either way.
    pub fn new(public_key_base64: &str) -> Result<Self, ml_core::Error> {
        let key = SendGridPublicKey::from_base64(public_key_base64)
            .map_err(|m| ml_core::Error::config("SENDGRID_WEBHOOK_PUBLIC_KEY", m))?;
        Ok(Self {
            key,
            window: Duration::from_secs(600),
            clock: Arc::new(SystemClock),
            seen: Mutex::new(Seen::new(100_000)),
        })
    }

    /// The freshness window (SendGrid documents none; this is ours).
    pub fn with_window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// The clock for the freshness check.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Verifies a batch and parses its tracked events (repeats by `sg_event_id` dropped;
    /// the events returned are remembered as seen).
    pub fn verify(&self, req: &Request<Bytes>) -> Result<Vec<CallbackUpdate>, ReceiverError> {
        self.verify_keyed(req).map(|(u, _)| u)
    }

    fn verify_keyed(
        &self,
        req: &Request<Bytes>,
    ) -> Result<(Vec<CallbackUpdate>, Vec<String>), ReceiverError> {
        check_post(req, SENDGRID_MAX_BODY)?;
        let signature = header(req, "x-twilio-email-event-webhook-signature").ok_or(
            ReceiverError::MissingSignature("X-Twilio-Email-Event-Webhook-Signature"),
        )?;
        let ts = header(req, "x-twilio-email-event-webhook-timestamp").ok_or(
            ReceiverError::MissingSignature("X-Twilio-Email-Event-Webhook-Timestamp"),
        )?;
        if !self.key.verify(signature, ts, req.body()) {
            return Err(ReceiverError::BadSignature);
        }
        let secs: i64 = ts.trim().parse().map_err(|_| ReceiverError::Stale)?;
        let now = self.clock.now().as_second();
        if secs.abs_diff(now) > self.window.as_secs() {
            return Err(ReceiverError::Stale);
        }
        let events: Vec<Value> = serde_json::from_slice(req.body())
            .map_err(|e| ReceiverError::Malformed(e.to_string()))?;
        let mut out = Vec::new();
        let mut keys = Vec::new();
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        for e in events {
            let (Some(event), Some(mid)) = (e["event"].as_str(), e["sg_message_id"].as_str())
            else {
                continue;
            };
            if let Some(id) = e["sg_event_id"].as_str() {
                if !seen.insert(id.to_owned()) {
                    continue;
                }
                keys.push(id.to_owned());
            }
            let Some(status) = sendgrid_status(event) else {
                continue;
            };
            let at = e["timestamp"]
                .as_i64()
                .and_then(|t| Timestamp::from_second(t).ok())
                .unwrap_or_else(|| self.clock.now());
            let error_code = match status {
                RemoteStatus::Undelivered | RemoteStatus::Failed => Some(
                    e["status"]
                        .as_str()
                        .map(str::to_owned)
                        .or_else(|| e["type"].as_str().map(str::to_owned))
                        .unwrap_or_else(|| event.to_owned()),
                ),
                _ => None,
            };
            out.push(CallbackUpdate {
                remote_id: message_id_of(mid).to_owned(),
                status,
                at,
                error_code,
            });
        }
        Ok((out, keys))
    }

    /// Verifies a batch and applies each event to the journal.
    pub async fn handle(
        &self,
        req: &Request<Bytes>,
        store: &dyn AuditStore,
    ) -> Result<Handled, ReceiverError> {
        let (updates, keys) = self.verify_keyed(req)?;
        let mut applied = Vec::with_capacity(updates.len());
        for u in &updates {
            match store.apply_callback(u).await {
                Ok(a) => applied.push(a),
                Err(e) => {
                    // SendGrid retries the whole batch: forget it, applying is idempotent.
                    self.seen
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .forget(&keys);
                    return Err(ReceiverError::Journal(e.to_string()));
                }
            }
        }
        Ok(Handled::Applied(applied))
    }
}

/// axum routers for the receivers (feature `axum`).
#[cfg(feature = "axum")]
pub mod axum_router {
    use std::future::Future;
    use std::sync::Arc;

    use axum::Router;
    use axum::body::Body;
    use axum::extract::State;
    use axum::http::{Request, StatusCode};
    use axum::routing::post;
    use ml_core::audit::AuditStore;

    use super::{SENDGRID_MAX_BODY, SendGridEventReceiver, TWILIO_MAX_BODY, TwilioStatusReceiver};

    async fn collect(
        req: Request<Body>,
        limit: usize,
    ) -> Result<http::Request<bytes::Bytes>, StatusCode> {
        let (parts, body) = req.into_parts();
        let bytes = axum::body::to_bytes(body, limit)
            .await
            .map_err(|_| StatusCode::PAYLOAD_TOO_LARGE)?;
        Ok(http::Request::from_parts(parts, bytes))
    }

    /// The one shape both receivers share, so one route serves both.
    trait Verifying: Send + Sync + 'static {
        const MAX_BODY: usize;
        fn handle<'a>(
            &'a self,
            req: &'a http::Request<bytes::Bytes>,
            store: &'a dyn AuditStore,
        ) -> impl Future<Output = Result<super::Handled, super::ReceiverError>> + Send + 'a;
    }

    impl Verifying for TwilioStatusReceiver {
        const MAX_BODY: usize = TWILIO_MAX_BODY;
        fn handle<'a>(
            &'a self,
            req: &'a http::Request<bytes::Bytes>,
            store: &'a dyn AuditStore,
        ) -> impl Future<Output = Result<super::Handled, super::ReceiverError>> + Send + 'a
        {
            TwilioStatusReceiver::handle(self, req, store)
        }
    }

    impl Verifying for SendGridEventReceiver {
        const MAX_BODY: usize = SENDGRID_MAX_BODY;
        fn handle<'a>(
            &'a self,
            req: &'a http::Request<bytes::Bytes>,
            store: &'a dyn AuditStore,
        ) -> impl Future<Output = Result<super::Handled, super::ReceiverError>> + Send + 'a
        {
            SendGridEventReceiver::handle(self, req, store)
        }
    }

    fn route<R: Verifying>(path: &str, receiver: Arc<R>, store: Arc<dyn AuditStore>) -> Router {
        Router::new()
            .route(
                path,
                post(
                    |State((r, s)): State<(Arc<R>, Arc<dyn AuditStore>)>,
                     req: Request<Body>| async move {
                        let req = match collect(req, R::MAX_BODY).await {
                            Ok(r) => r,
                            Err(code) => return code,
                        };
                        match r.handle(&req, s.as_ref()).await {
                            Ok(_) => StatusCode::NO_CONTENT,
                            Err(e) => e.status(),
                        }
                    },
                ),
            )
            .with_state((receiver, store))
    }

    /// A router answering POSTs at `path` with [`TwilioStatusReceiver::handle`].
    pub fn twilio(
        path: &str,
        receiver: Arc<TwilioStatusReceiver>,
        store: Arc<dyn AuditStore>,
    ) -> Router {
        route(path, receiver, store)
    }

    /// A router answering POSTs at `path` with [`SendGridEventReceiver::handle`].
    pub fn sendgrid(
        path: &str,
        receiver: Arc<SendGridEventReceiver>,
        store: Arc<dyn AuditStore>,
    ) -> Router {
        route(path, receiver, store)
    }
}
