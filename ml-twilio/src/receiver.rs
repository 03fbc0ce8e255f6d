//! Receivers for Twilio status callbacks and the SendGrid signed Event Webhook, on plain
//! `http` types (any framework can use them; an axum router comes with the `axum` feature).
//!
//! Both verify before parsing, compare in constant time, refuse bodies over a size limit,
//! drop repeats (Twilio: the same `MessageSid` + `MessageStatus` or the same signature;
//! SendGrid: the same `sg_event_id`), and turn what remains into
//! [`CallbackUpdate`]s that [`AuditWrite::apply_callback`](ml_core::audit::AuditWrite::apply_callback) folds into the journal by remote
//! id: idempotently and never downgrading (`delivered` stays `delivered` when a late
//! `sent` arrives).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use jiff::Timestamp;
use ml_core::audit::{AuditStore, CallbackApplied, CallbackUpdate, DeliveryId, RemoteStatus};
use ml_core::clock::{Clock, SystemClock, add};
use ml_core::webhook::{
    Limits, MemoryReplayCache, OnFull, ReplayCache, check_timestamp, header, media_type,
};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::Value;

use crate::signature::{SendGridPublicKey, verify_twilio_form, verify_twilio_json};

/// The refusal type moved to ml-core; re-exported here so existing paths keep working.
pub use ml_core::webhook::Rejection;

/// Why a webhook request was refused: ml-core's [`Rejection`] under its old name here.
pub type ReceiverError = Rejection;

/// The largest body accepted (64 KiB for Twilio, 4 MiB for SendGrid batches).
pub const TWILIO_MAX_BODY: usize = 64 * 1024;
/// The largest SendGrid event batch accepted.
pub const SENDGRID_MAX_BODY: usize = 4 * 1024 * 1024;

/// How long a Twilio callback (its `MessageSid` + `MessageStatus`, and its signature) is
/// remembered: Twilio callbacks carry no timestamp, so this age is the replay horizon.
pub const TWILIO_REPLAY_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long a SendGrid `sg_event_id` is remembered (SendGrid retries for up to 24 hours;
/// unconfirmed).
pub const SENDGRID_REPLAY_TTL: Duration = Duration::from_secs(3 * 24 * 3600);
/// How many keys the default in-memory replay caches hold before forgetting the oldest.
pub const DEFAULT_REPLAY_CAPACITY: usize = 100_000;

/// The SendGrid signature header.
pub const SENDGRID_SIGNATURE_HEADER: &str = "x-twilio-email-event-webhook-signature";
/// The SendGrid timestamp header.
pub const SENDGRID_TIMESTAMP_HEADER: &str = "x-twilio-email-event-webhook-timestamp";
/// The Twilio signature header.
pub const TWILIO_SIGNATURE_HEADER: &str = "x-twilio-signature";

/// The in-memory default: bounded, oldest forgotten first (applying a callback twice is
/// harmless, refusing one is not).
fn memory_cache(capacity: usize) -> Arc<dyn ReplayCache> {
    Arc::new(MemoryReplayCache::new(capacity).on_full(OnFull::EvictOldest))
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

/// Verifies Twilio status callbacks (`X-Twilio-Signature`, HMAC-SHA1 with the Auth Token).
///
/// The signed URL is rebuilt from the configured public URL (scheme, host, port and path:
/// proxies rewrite those) plus the query string of the request as received (the
/// `delivery_id` the sink added). Both the URL with and without its port are accepted, as
/// Twilio's own libraries do. Everything around the signature (method, size and content
/// type limits, refusals, the replay cache) is ml-core's [`ml_core::webhook`].
///
/// Twilio callbacks carry no timestamp, so a captured callback stays valid forever: the
/// replay cache is what refuses it. The default one lives in this process; give
/// [`with_replay_cache`](Self::with_replay_cache) ml-store's journal-backed cache so a
/// replay is refused after a restart too (or a shared one for several replicas).
pub struct TwilioStatusReceiver {
    auth_token: SecretString,
    public_url: String,
    clock: Arc<dyn Clock>,
    limits: Limits,
    cache: Arc<dyn ReplayCache>,
    replay_ttl: Duration,
}

impl fmt::Debug for TwilioStatusReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioStatusReceiver")
            .field("public_url", &self.public_url)
            .field("cache", &self.cache)
            .field("replay_ttl", &self.replay_ttl)
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
            limits: Limits::new(TWILIO_MAX_BODY)
                .with_content_types(&["application/x-www-form-urlencoded", "application/json"]),
            cache: memory_cache(DEFAULT_REPLAY_CAPACITY),
            replay_ttl: TWILIO_REPLAY_TTL,
        }
    }

    /// The clock that stamps updates and ages the replay cache.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// How many (sid, status) pairs and signatures the in-memory replay cache remembers
    /// (default 100,000; the oldest are forgotten first). Replaces any cache set before.
    pub fn with_replay_capacity(mut self, n: usize) -> Self {
        self.cache = memory_cache(n);
        self
    }

    /// Remembers callbacks in `cache` (ml-store's journal cache survives restarts).
    pub fn with_replay_cache(mut self, cache: Arc<dyn ReplayCache>) -> Self {
        self.cache = cache;
        self
    }

    /// How long a callback is remembered (default [`TWILIO_REPLAY_TTL`]).
    pub fn with_replay_ttl(mut self, ttl: Duration) -> Self {
        self.replay_ttl = ttl;
        self
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
    pub async fn verify(&self, req: &Request<Bytes>) -> Result<Verified, Rejection> {
        self.verify_keyed(req).await.map(|(v, _)| v)
    }

    /// The signature math and the parsing: the parameters of a verified callback.
    fn verified_params(&self, req: &Request<Bytes>) -> Result<Vec<(String, String)>, Rejection> {
        let signature = header(req.headers(), TWILIO_SIGNATURE_HEADER)?;
        let url = self.signed_url(req);
        let token = self.auth_token.expose_secret().as_bytes();
        if media_type(req.headers()).as_deref() == Some("application/json") {
            if !verify_twilio_json(token, &url, req.body(), signature) {
                return Err(Rejection::SignatureMismatch);
            }
            let v: Value = serde_json::from_slice(req.body())
                .map_err(|e| Rejection::Malformed(e.to_string()))?;
            let Value::Object(o) = v else {
                return Err(Rejection::Malformed("not a JSON object".into()));
            };
            Ok(o.into_iter()
                .map(|(k, v)| {
                    let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                    (k, v)
                })
                .collect())
        } else {
            let params: Vec<(String, String)> = serde_urlencoded::from_bytes(req.body())
                .map_err(|e| Rejection::Malformed(e.to_string()))?;
            if !verify_twilio_form(token, &url, &params, signature) {
                return Err(Rejection::SignatureMismatch);
            }
            Ok(params)
        }
    }

    async fn verify_keyed(
        &self,
        req: &Request<Bytes>,
    ) -> Result<(Verified, Vec<String>), Rejection> {
        self.limits.check(req)?;
        let params = self.verified_params(req)?;
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let sid = get("MessageSid")
            .or_else(|| get("SmsSid"))
            .ok_or_else(|| Rejection::Malformed("no MessageSid".into()))?;
        let status_text = get("MessageStatus")
            .or_else(|| get("SmsStatus"))
            .ok_or_else(|| Rejection::Malformed("no MessageStatus".into()))?;
        let now = self.clock.now();
        let until = add(now, self.replay_ttl);
        let pair = format!("twilio:{sid}/{status_text}");
        if !self.cache.insert_if_absent(&pair, until, now).await? {
            return Ok((Verified::Duplicate, Vec::new()));
        }
        let signature = header(req.headers(), TWILIO_SIGNATURE_HEADER)?;
        let sig = format!("twilio-sig:{}", signature.trim());
        match self.cache.insert_if_absent(&sig, until, now).await {
            Ok(true) => {}
            Ok(false) => {
                self.cache.remove(&pair).await;
                return Ok((Verified::Duplicate, Vec::new()));
            }
            Err(e) => {
                self.cache.remove(&pair).await;
                return Err(e);
            }
        }
        let keys = vec![pair, sig];
        let Some(status) = twilio_status(status_text) else {
            return Ok((Verified::Ignored, keys));
        };
        let update = CallbackUpdate {
            remote_id: sid.to_owned(),
            status,
            at: now,
            error_code: get("ErrorCode")
                .filter(|c| !c.is_empty())
                .map(str::to_owned),
            // The sink's `delivery_id` on the callback URL (covered by the signature): the
            // callback may come before the answer to the send that created the message.
            delivery: delivery_of_url(req.uri()),
        };
        Ok((Verified::Update(update), keys))
    }

    /// Verifies a callback and applies it to the journal. Answers what to reply: 204 for
    /// anything verified (applied, stale, duplicate, unknown sid: Twilio must not retry),
    /// the refusal's status otherwise; a journal failure is [`Rejection::Unavailable`] (503,
    /// so Twilio tries again, and the callback is not remembered as seen).
    pub async fn handle(
        &self,
        req: &Request<Bytes>,
        store: &dyn AuditStore,
    ) -> Result<Handled, Rejection> {
        match self.verify_keyed(req).await? {
            (Verified::Update(u), keys) => match store.apply_callback(&u).await {
                Ok(applied) => Ok(Handled::Applied(vec![applied])),
                Err(e) => {
                    self.cache.remove_all(&keys).await;
                    Err(Rejection::Unavailable(format!("journal: {e}")))
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
///
/// Method, size and content type (`application/json`) limits, the freshness window (ten
/// minutes either way by default; SendGrid documents none) and the replay cache are
/// ml-core's [`ml_core::webhook`]; this type adds the ECDSA check and the event parsing.
/// Repeated events (same `sg_event_id`) are dropped.
pub struct SendGridEventReceiver {
    key: SendGridPublicKey,
    window: Duration,
    clock: Arc<dyn Clock>,
    limits: Limits,
    cache: Arc<dyn ReplayCache>,
    replay_ttl: Duration,
}

impl fmt::Debug for SendGridEventReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendGridEventReceiver")
            .field("window", &self.window)
            .field("cache", &self.cache)
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
            limits: Limits::new(SENDGRID_MAX_BODY).with_content_types(&["application/json"]),
            cache: memory_cache(DEFAULT_REPLAY_CAPACITY),
            replay_ttl: SENDGRID_REPLAY_TTL,
        })
    }

    /// The freshness window (SendGrid documents none; this is ours).
    pub fn with_window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// The clock for the freshness check and the replay cache.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Remembers `sg_event_id`s in `cache` (ml-store's journal cache survives restarts).
    pub fn with_replay_cache(mut self, cache: Arc<dyn ReplayCache>) -> Self {
        self.cache = cache;
        self
    }

    /// Verifies a batch and parses its tracked events (repeats by `sg_event_id` dropped;
    /// the events returned are remembered as seen).
    pub async fn verify(&self, req: &Request<Bytes>) -> Result<Vec<CallbackUpdate>, Rejection> {
        self.verify_keyed(req).await.map(|(u, _)| u)
    }

    async fn verify_keyed(
        &self,
        req: &Request<Bytes>,
    ) -> Result<(Vec<CallbackUpdate>, Vec<String>), Rejection> {
        self.limits.check(req)?;
        let signature = header(req.headers(), SENDGRID_SIGNATURE_HEADER)?;
        let ts = header(req.headers(), SENDGRID_TIMESTAMP_HEADER)?;
        let now = self.clock.now();
        // The window before the ECDSA check: a stale request costs no verification.
        check_timestamp(ts, now, self.window)?;
        self.key.check(signature, ts, req.body())?;
        let events = parse_sendgrid_events(req.body(), now)?;
        let until = add(now, self.replay_ttl);
        let mut out = Vec::new();
        let mut keys = Vec::new();
        for e in events {
            if let Some(id) = &e.event_id {
                let key = format!("sendgrid:{id}");
                match self.cache.insert_if_absent(&key, until, now).await {
                    Ok(true) => keys.push(key),
                    Ok(false) => continue,
                    Err(r) => {
                        self.cache.remove_all(&keys).await;
                        return Err(r);
                    }
                }
            }
            if let Some(u) = e.update {
                out.push(u);
            }
        }
        Ok((out, keys))
    }

    /// Verifies a batch and applies each event to the journal.
    pub async fn handle(
        &self,
        req: &Request<Bytes>,
        store: &dyn AuditStore,
    ) -> Result<Handled, Rejection> {
        let (updates, keys) = self.verify_keyed(req).await?;
        let mut applied = Vec::with_capacity(updates.len());
        for u in &updates {
            match store.apply_callback(u).await {
                Ok(a) => applied.push(a),
                Err(e) => {
                    // SendGrid retries the whole batch: forget it, applying is idempotent.
                    self.cache.remove_all(&keys).await;
                    return Err(Rejection::Unavailable(format!("journal: {e}")));
                }
            }
        }
        Ok(Handled::Applied(applied))
    }
}

/// One event of a SendGrid batch, as far as the journal cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendGridEvent {
    /// `sg_event_id`, the dedupe key, when present.
    pub event_id: Option<String>,
    /// The journal update, when the event is tracked and names its message.
    pub update: Option<CallbackUpdate>,
}

/// Parses a SendGrid Event Webhook body (a JSON array of events). Events without `event` or
/// `sg_message_id` are kept (for dedupe) without an update; a body that is not a JSON
/// array is [`Rejection::Malformed`]. An event's time is `received_at` when its
/// `timestamp` is missing or out of range.
pub fn parse_sendgrid_events(
    body: &[u8],
    received_at: Timestamp,
) -> Result<Vec<SendGridEvent>, Rejection> {
    let events: Vec<Value> =
        serde_json::from_slice(body).map_err(|e| Rejection::Malformed(e.to_string()))?;
    Ok(events
        .iter()
        .map(|e| sendgrid_event(e, received_at))
        .collect())
}

fn sendgrid_event(e: &Value, received_at: Timestamp) -> SendGridEvent {
    let event_id = e["sg_event_id"].as_str().map(str::to_owned);
    let update = (|| {
        let event = e["event"].as_str()?;
        let mid = e["sg_message_id"].as_str()?;
        let status = sendgrid_status(event)?;
        let at = e["timestamp"]
            .as_i64()
            .and_then(|t| Timestamp::from_second(t).ok())
            .unwrap_or(received_at);
        let error_code = match status {
            RemoteStatus::Undelivered | RemoteStatus::Failed => Some(
                e["status"]
                    .as_str()
                    .or_else(|| e["type"].as_str())
                    .unwrap_or(event)
                    .to_owned(),
            ),
            _ => None,
        };
        // The sink's `custom_args`, echoed in each event (signed with the batch).
        let delivery = match &e["delivery_id"] {
            Value::String(d) => d.parse().ok(),
            Value::Number(n) => n.as_i64(),
            _ => None,
        }
        .map(DeliveryId);
        Some(CallbackUpdate {
            remote_id: message_id_of(mid).to_owned(),
            status,
            at,
            error_code,
            delivery,
        })
    })();
    SendGridEvent { event_id, update }
}

/// The `delivery_id` query parameter of a status callback's URL, when it is one.
fn delivery_of_url(uri: &http::Uri) -> Option<DeliveryId> {
    let query = uri.query()?;
    serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == "delivery_id")
        .and_then(|(_, v)| v.parse().ok())
        .map(DeliveryId)
}

/// axum routers for the receivers (feature `axum`), mounted with ml-core's
/// [`router`](ml_core::webhook::axum::router): the body is read up to the receiver's limit.
#[cfg(feature = "axum")]
pub mod axum_router {
    use std::sync::Arc;

    use async_trait::async_trait;
    use axum::Router;
    use bytes::Bytes;
    use http::StatusCode;
    use ml_core::audit::AuditStore;
    use ml_core::webhook::WebhookHandler;

    use super::{
        Handled, Rejection, SENDGRID_MAX_BODY, SendGridEventReceiver, TWILIO_MAX_BODY,
        TwilioStatusReceiver,
    };

    /// A receiver bound to the journal it applies callbacks to.
    struct Bound<R> {
        receiver: Arc<R>,
        store: Arc<dyn AuditStore>,
    }

    fn answer(outcome: Result<Handled, Rejection>) -> http::Response<String> {
        match outcome {
            Ok(_) => {
                let mut r = http::Response::new(String::new());
                *r.status_mut() = StatusCode::NO_CONTENT;
                r
            }
            Err(e) => {
                tracing::info!(reason = e.as_str(), "refused a webhook request");
                e.to_response()
            }
        }
    }

    #[async_trait]
    impl WebhookHandler for Bound<TwilioStatusReceiver> {
        fn max_body(&self) -> usize {
            TWILIO_MAX_BODY
        }

        async fn handle(&self, request: http::Request<Bytes>) -> http::Response<String> {
            answer(self.receiver.handle(&request, self.store.as_ref()).await)
        }
    }

    #[async_trait]
    impl WebhookHandler for Bound<SendGridEventReceiver> {
        fn max_body(&self) -> usize {
            SENDGRID_MAX_BODY
        }

        async fn handle(&self, request: http::Request<Bytes>) -> http::Response<String> {
            answer(self.receiver.handle(&request, self.store.as_ref()).await)
        }
    }

    /// A router answering POSTs at `path` with [`TwilioStatusReceiver::handle`].
    pub fn twilio(
        path: &str,
        receiver: Arc<TwilioStatusReceiver>,
        store: Arc<dyn AuditStore>,
    ) -> Router {
        ml_core::webhook::axum::router(path, Arc::new(Bound { receiver, store }))
    }

    /// A router answering POSTs at `path` with [`SendGridEventReceiver::handle`].
    pub fn sendgrid(
        path: &str,
        receiver: Arc<SendGridEventReceiver>,
        store: Arc<dyn AuditStore>,
    ) -> Router {
        ml_core::webhook::axum::router(path, Arc::new(Bound { receiver, store }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A callback names its delivery (URL query, SendGrid `custom_args`), so the journal can
    /// keep one that overtakes the answer to its send.
    #[test]
    fn callbacks_name_their_delivery() {
        let uri: http::Uri = "https://hooks.example.com/twilio/status?delivery_id=42&x=1"
            .parse()
            .expect("uri");
        assert_eq!(delivery_of_url(&uri), Some(DeliveryId(42)));
        let none: http::Uri = "https://hooks.example.com/twilio/status"
            .parse()
            .expect("uri");
        assert_eq!(delivery_of_url(&none), None);
        let bad: http::Uri = "https://h.example.com/s?delivery_id=x"
            .parse()
            .expect("uri");
        assert_eq!(delivery_of_url(&bad), None);
        let body = br#"[
            {"event":"delivered","sg_message_id":"abc.filter1","sg_event_id":"e1","timestamp":1700000000,"delivery_id":"7"},
            {"event":"bounce","sg_message_id":"def.filter2","sg_event_id":"e2","timestamp":1700000000},
            {"event":"processed","sg_message_id":"ghi","sg_event_id":"e3","delivery_id":8}
        ]"#;
        let events = parse_sendgrid_events(body, Timestamp::UNIX_EPOCH).expect("events");
        let delivery: Vec<Option<DeliveryId>> = events
            .iter()
            .map(|e| e.update.as_ref().and_then(|u| u.delivery))
            .collect();
        assert_eq!(delivery, [Some(DeliveryId(7)), None, Some(DeliveryId(8))]);
    }
}
