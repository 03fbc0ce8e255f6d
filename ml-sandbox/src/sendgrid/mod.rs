//! The SendGrid emulator: `POST /v3/mail/send`, `GET /v3/scopes`, and the signed Event
//! Webhook (ECDSA P-256 / SHA-256 over timestamp + body, as SendGrid signs it).
//!
//! What it enforces, like SendGrid (spec `sendgrid_mail_v3.json`, notes in `twilio.md`):
//! * `Authorization: Bearer <key>` -> 401 without, 403 for an unknown key; errors are
//!   `{"errors":[{"message","field","help"}]}`.
//! * JSON body (else 400); required: `personalizations` (1–1000, each with a non-empty
//!   `to[]` of `{email}`), `from.email`, `subject` (top level or in every
//!   personalization) unless `template_id`, `content[]` with `type` and `value` unless
//!   `template_id` (`text/plain` first when present); emails must look like addresses;
//!   over 30 MB -> 413.
//! * 202 with an empty body and `X-Message-Id`; every answer carries the
//!   `X-RateLimit-*` headers.
//! * Events, when a webhook URL is set: after [`SendGridEmulatorBuilder::event_delay`]
//!   (tokio time), one signed POST per mail with `processed` then the recipient's outcome
//!   (`delivered`, `bounce`, `dropped`), `sg_message_id` = `<X-Message-Id>.filter…`,
//!   unique `sg_event_id`, the mail's `custom_args` at top level; optionally out of order.
//!
//! Knowingly less faithful: one event batch per mail; no `deferred`/`open` unless asked;
//! no rate limit (inject 429s with [`crate::fault`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use ml_core::clock::Clock;
use ml_core::http::ClientOptions;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::Result;
use crate::emulator::{Emulator, EmulatorCore, EmulatorOptions};
use crate::fault::Faults;

/// The emulator's API key.
pub const API_KEY: &str = "SG.sandbox.0000000000000000000000000000000000";

/// What happens to mail to an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MailOutcome {
    /// `processed`, `delivered`.
    Delivered,
    /// `processed`, `bounce` (status 5.1.1).
    Bounce,
    /// `dropped`.
    Dropped,
}

/// A mail as the emulator holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredMail {
    /// `X-Message-Id`.
    pub message_id: String,
    /// The JSON body as received.
    pub body: Value,
}

#[derive(Default)]
struct Data {
    /// Requests counted in the current rate window: (window start, count).
    window: (i64, u64),
    mails: Vec<StoredMail>,
    outcomes: HashMap<String, MailOutcome>,
    event_posts: Vec<Option<u16>>,
}

struct Inner {
    data: Mutex<Data>,
    rng: Mutex<StdRng>,
    clock: Arc<dyn Clock>,
    client: reqwest::Client,
    key: SigningKey,
    webhook: Mutex<Option<String>>,
    delay: Duration,
    reorder: bool,
    max_body: usize,
    budget: Option<(u64, u64)>,
    pending: AtomicU64,
    event_seq: AtomicU64,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Configures a [`SendGridEmulator`].
#[derive(Debug)]
pub struct SendGridEmulatorBuilder {
    options: EmulatorOptions,
    webhook: Option<String>,
    delay: Duration,
    reorder: bool,
    max_body: usize,
    budget: Option<(u64, u64)>,
}

impl Default for SendGridEmulatorBuilder {
    fn default() -> Self {
        Self {
            options: EmulatorOptions::new(0),
            webhook: None,
            delay: Duration::from_secs(2),
            reorder: false,
            max_body: 30 * 1024 * 1024,
            budget: None,
        }
    }
}

impl SendGridEmulatorBuilder {
    /// Seeds message ids, the signing key and fault probabilities.
    pub fn seed(mut self, seed: u64) -> Self {
        self.options.set_seed(seed);
        self
    }

    /// The clock (default [`TokioClock`](ml_core::clock::TokioClock)): event timestamps
    /// and signatures.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.options.set_clock(clock);
        self
    }

    /// Where signed events are posted.
    pub fn event_webhook(mut self, url: impl Into<String>) -> Self {
        self.webhook = Some(url.into());
        self
    }

    /// How long after acceptance events are posted (default 2 s, tokio time).
    pub fn event_delay(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }

    /// Mail send accepts `limit` requests a window of `window_secs` (on the emulator's
    /// clock, windows aligned to multiples of it) and answers 429 beyond, with
    /// `X-RateLimit-Limit` / `-Remaining` / `-Reset` (epoch seconds) telling the truth on
    /// every answer. Default: no limit (the headers say 600 a minute, never spent).
    pub fn rate_limit(mut self, limit: u64, window_secs: u64) -> Self {
        self.budget = Some((limit, window_secs.max(1)));
        self
    }

    /// Posts the final event before `processed`.
    pub fn out_of_order(mut self, on: bool) -> Self {
        self.reorder = on;
        self
    }

    /// The body limit (default 30 MB) above which mail send answers 413.
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Starts the emulator on 127.0.0.1.
    pub async fn start(self) -> Result<SendGridEmulator> {
        let bound = EmulatorCore::bind(
            &self.options,
            "",
            Arc::new(|status| {
                (
                    "application/json".to_owned(),
                    json!({"errors": [{"message": format!("sandbox fault {status}"), "field": null, "help": null}]}).to_string(),
                )
            }),
        )
        .await?;
        let seed = self.options.seed();
        let mut seed_bytes = sha2::Sha256::digest(seed.to_be_bytes());
        let key = loop {
            if let Ok(k) = SigningKey::from_slice(&seed_bytes) {
                break k;
            }
            seed_bytes = sha2::Sha256::digest(seed_bytes);
        };
        let inner = Arc::new(Inner {
            data: Mutex::new(Data::default()),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            clock: Arc::clone(bound.core().clock()),
            client: ClientOptions::default().client()?,
            key,
            webhook: Mutex::new(self.webhook),
            delay: self.delay,
            reorder: self.reorder,
            max_body: self.max_body,
            budget: self.budget,
            pending: AtomicU64::new(0),
            event_seq: AtomicU64::new(0),
        });
        let router = Router::new()
            .route("/v3/mail/send", post(send))
            .route("/v3/scopes", get(scopes))
            .with_state(inner.clone());
        Ok(SendGridEmulator {
            inner,
            core: bound.serve(router),
        })
    }
}

/// A running SendGrid emulator.
pub struct SendGridEmulator {
    inner: Arc<Inner>,
    core: EmulatorCore,
}

impl std::fmt::Debug for SendGridEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendGridEmulator")
            .field("base", &self.core.base_url())
            .finish_non_exhaustive()
    }
}

impl Emulator for SendGridEmulator {
    fn core(&self) -> &EmulatorCore {
        &self.core
    }

    /// `SENDGRID_API_URL` and `SENDGRID_API_KEY`.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("SENDGRID_API_URL", self.base_url().to_owned()),
            ("SENDGRID_API_KEY", API_KEY.to_owned()),
        ]
    }
}

impl SendGridEmulator {
    /// Starts with the defaults.
    pub async fn start() -> Result<Self> {
        Self::builder().start().await
    }

    /// A builder.
    pub fn builder() -> SendGridEmulatorBuilder {
        SendGridEmulatorBuilder::default()
    }

    /// `http://127.0.0.1:<port>`: `SENDGRID_API_URL`.
    pub fn base_url(&self) -> &str {
        self.core.base_url()
    }

    /// The API key.
    pub fn api_key(&self) -> &'static str {
        API_KEY
    }

    /// The Event Webhook verification key: base64 DER SubjectPublicKeyInfo, as SendGrid
    /// shows it.
    pub fn public_key(&self) -> String {
        // SubjectPublicKeyInfo for id-ecPublicKey / prime256v1, then the uncompressed point.
        let mut der =
            hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap_or_default();
        der.extend_from_slice(
            self.inner
                .key
                .verifying_key()
                .to_encoded_point(false)
                .as_bytes(),
        );
        base64::engine::general_purpose::STANDARD.encode(der)
    }

    /// Signs `timestamp` + `body` as SendGrid does (base64 DER ECDSA signature).
    pub fn sign(&self, timestamp: &str, body: &[u8]) -> String {
        sign_with(&self.inner.key, timestamp, body)
    }

    /// Sets the webhook URL (after start, e.g. once the receiver is bound).
    pub fn set_event_webhook(&self, url: impl Into<String>) {
        *self
            .inner
            .webhook
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(url.into());
    }

    /// The fault layer (targets: `/v3/mail/send` or `send`).
    pub fn faults(&self) -> &Faults {
        self.core.faults()
    }

    /// Sets what happens to mail to `email`.
    pub fn set_outcome(&self, email: &str, outcome: MailOutcome) {
        self.inner.lock().outcomes.insert(email.to_owned(), outcome);
    }

    /// Every accepted mail, oldest first.
    pub fn mails(&self) -> Vec<StoredMail> {
        self.inner.lock().mails.clone()
    }

    /// The receiver's answers to event posts (`None`: no answer).
    pub fn event_posts(&self) -> Vec<Option<u16>> {
        self.inner.lock().event_posts.clone()
    }

    /// Waits (tokio time) until every event batch was posted.
    pub async fn wait_events_idle(&self) {
        while self.inner.pending.load(Ordering::SeqCst) > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn sign_with(key: &SigningKey, timestamp: &str, body: &[u8]) -> String {
    let mut signed = timestamp.as_bytes().to_vec();
    signed.extend_from_slice(body);
    let sig: Signature = key.sign(&signed);
    base64::engine::general_purpose::STANDARD.encode(sig.to_der().as_bytes())
}

fn sg_err(status: StatusCode, message: &str, field: Option<&str>) -> Response {
    (
        status,
        [("content-type", "application/json")],
        json!({"errors": [{"message": message, "field": field, "help": null}]}).to_string(),
    )
        .into_response()
}

fn auth(headers: &HeaderMap) -> Option<Response> {
    match headers.get("authorization").and_then(|v| v.to_str().ok()) {
        None => Some(sg_err(
            StatusCode::UNAUTHORIZED,
            "The provided authorization grant is invalid, expired, or revoked",
            None,
        )),
        Some(v) if v.strip_prefix("Bearer ") == Some(API_KEY) => None,
        Some(_) => Some(sg_err(StatusCode::FORBIDDEN, "access forbidden", None)),
    }
}

fn email_ok(v: &Value) -> bool {
    v.as_str().is_some_and(|e| {
        e.rsplit_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && d.contains('.'))
    })
}

/// Validates a mail-send body; `Err((message, field))`.
fn validate(b: &Value) -> Result<(), (String, String)> {
    let e = |m: &str, f: &str| Err((m.to_owned(), f.to_owned()));
    let template = b["template_id"].is_string();
    let Some(ps) = b["personalizations"].as_array() else {
        return e(
            "The personalizations field is required and must have at least one personalization.",
            "personalizations",
        );
    };
    if ps.is_empty() || ps.len() > 1000 {
        return e(
            "The personalizations field must have 1 to 1000 personalizations.",
            "personalizations",
        );
    }
    for (i, p) in ps.iter().enumerate() {
        let Some(to) = p["to"].as_array().filter(|t| !t.is_empty()) else {
            return e(
                "The to array is required for all personalization objects, and must have at least one email object with a valid email address.",
                &format!("personalizations.{i}.to"),
            );
        };
        for (j, t) in to.iter().enumerate() {
            if !email_ok(&t["email"]) {
                return e(
                    "Does not contain a valid address.",
                    &format!("personalizations.{i}.to.{j}.email"),
                );
            }
        }
        if !template && !b["subject"].is_string() && !p["subject"].is_string() {
            return e(
                "The subject is required. You can get around this requirement if you use a template with a subject defined or if every personalization has a subject defined.",
                "subject",
            );
        }
        if let Some(ca) = p["custom_args"].as_object()
            && ca.values().any(|v| !v.is_string())
        {
            return e(
                "Custom args must be strings.",
                &format!("personalizations.{i}.custom_args"),
            );
        }
    }
    if !email_ok(&b["from"]["email"]) {
        return e(
            "The from object must be provided for every email send. It is an object that requires the email parameter, but may also contain a name parameter.",
            "from.email",
        );
    }
    match b["content"].as_array() {
        None if template => {}
        None => {
            return e(
                "Unless a valid template_id is provided, the content parameter is required.",
                "content",
            );
        }
        Some(c) => {
            if c.is_empty() && !template {
                return e(
                    "The content value must be a string at least one character in length.",
                    "content",
                );
            }
            for (i, part) in c.iter().enumerate() {
                if !part["type"].is_string() || part["value"].as_str().is_none_or(str::is_empty) {
                    return e(
                        "The content value must be a string at least one character in length.",
                        &format!("content.{i}.value"),
                    );
                }
            }
            let plain = c.iter().position(|p| p["type"] == "text/plain");
            if plain.is_some_and(|i| i != 0) {
                return e(
                    "If present, text/plain content must be first.",
                    "content.0.type",
                );
            }
        }
    }
    Ok(())
}

fn rate_headers(r: &mut Response, now: i64) {
    let h = r.headers_mut();
    h.insert("x-ratelimit-limit", 600.into());
    h.insert("x-ratelimit-remaining", 599.into());
    if let Ok(v) = (now + 60).to_string().parse() {
        h.insert("x-ratelimit-reset", v);
    }
}

async fn scopes(headers: HeaderMap) -> Response {
    if let Some(r) = auth(&headers) {
        return r;
    }
    Json(json!({"scopes": ["mail.send"]})).into_response()
}

async fn send(State(s): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let now = s.clock.now().as_second();
    let Some((limit, window)) = s.budget else {
        let mut r = send_inner(&s, &headers, &body);
        rate_headers(&mut r, now);
        return r;
    };
    // The window this request falls in, and what is left of its budget.
    let window = i64::try_from(window).unwrap_or(i64::MAX);
    let start = now - now.rem_euclid(window);
    let used = {
        let mut d = s.lock();
        if d.window.0 != start {
            d.window = (start, 0);
        }
        if d.window.1 < limit {
            d.window.1 += 1;
            Some(d.window.1)
        } else {
            None
        }
    };
    let mut r = match used {
        Some(_) => send_inner(&s, &headers, &body),
        None => sg_err(StatusCode::TOO_MANY_REQUESTS, "too many requests", None),
    };
    let h = r.headers_mut();
    h.insert("x-ratelimit-limit", limit.into());
    h.insert(
        "x-ratelimit-remaining",
        limit.saturating_sub(used.unwrap_or(limit)).into(),
    );
    if let Ok(v) = (start + window).to_string().parse() {
        h.insert("x-ratelimit-reset", v);
    }
    r
}

fn send_inner(s: &Arc<Inner>, headers: &HeaderMap, body: &Bytes) -> Response {
    if let Some(r) = auth(headers) {
        return r;
    }
    if body.len() > s.max_body {
        return sg_err(StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large", None);
    }
    let json_ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    let Some(v) = serde_json::from_slice::<Value>(body)
        .ok()
        .filter(|_| json_ct)
    else {
        return sg_err(StatusCode::BAD_REQUEST, "Bad Request", None);
    };
    if let Err((m, f)) = validate(&v) {
        return sg_err(StatusCode::BAD_REQUEST, &m, Some(&f));
    }
    let id: String = {
        let mut rng = s.rng.lock().unwrap_or_else(PoisonError::into_inner);
        let bytes: [u8; 16] = rng.random();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    };
    s.lock().mails.push(StoredMail {
        message_id: id.clone(),
        body: v.clone(),
    });
    schedule_events(s, &id, &v);
    let mut r = StatusCode::ACCEPTED.into_response();
    if let Ok(h) = id.parse() {
        r.headers_mut().insert("x-message-id", h);
    }
    r
}

fn schedule_events(s: &Arc<Inner>, id: &str, mail: &Value) {
    let Some(url) = s
        .webhook
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
    else {
        return;
    };
    s.pending.fetch_add(1, Ordering::SeqCst);
    let s = s.clone();
    let id = id.to_owned();
    let mail = mail.clone();
    tokio::spawn(async move {
        tokio::time::sleep(s.delay).await;
        let now = s.clock.now().as_second();
        let mut events = Vec::new();
        let custom = mail["personalizations"][0]["custom_args"].clone();
        for p in mail["personalizations"].as_array().into_iter().flatten() {
            for t in p["to"].as_array().into_iter().flatten() {
                let email = t["email"].as_str().unwrap_or_default().to_owned();
                let outcome = s
                    .lock()
                    .outcomes
                    .get(&email)
                    .copied()
                    .unwrap_or(MailOutcome::Delivered);
                let ev = |event: &str, extra: Value| {
                    let n = s.event_seq.fetch_add(1, Ordering::SeqCst);
                    let mut e = json!({
                        "email": email,
                        "timestamp": now,
                        "event": event,
                        "sg_event_id": format!("sandbox-event-{n}"),
                        "sg_message_id": format!("{id}.filterdrecv-sandbox-1-{n}"),
                        "smtp-id": format!("<{id}@sandbox>"),
                    });
                    if let (Some(o), Some(c)) = (e.as_object_mut(), custom.as_object()) {
                        for (k, v) in c {
                            o.insert(k.clone(), v.clone());
                        }
                    }
                    if let (Some(o), Some(x)) = (e.as_object_mut(), extra.as_object()) {
                        for (k, v) in x {
                            o.insert(k.clone(), v.clone());
                        }
                    }
                    e
                };
                let mut batch = match outcome {
                    MailOutcome::Delivered => vec![
                        ev("processed", json!({})),
                        ev("delivered", json!({"response": "250 OK"})),
                    ],
                    MailOutcome::Bounce => vec![
                        ev("processed", json!({})),
                        ev(
                            "bounce",
                            json!({"status": "5.1.1", "type": "bounce", "reason": "550 5.1.1 unknown user"}),
                        ),
                    ],
                    MailOutcome::Dropped => {
                        vec![ev("dropped", json!({"reason": "Bounced Address"}))]
                    }
                };
                if s.reorder {
                    batch.reverse();
                }
                events.extend(batch);
            }
        }
        let body = Value::Array(events).to_string() + "\r\n";
        let ts = now.to_string();
        let sig = sign_with(&s.key, &ts, body.as_bytes());
        let answer = s
            .client
            .post(&url)
            .header("content-type", "application/json")
            .header("x-twilio-email-event-webhook-signature", sig)
            .header("x-twilio-email-event-webhook-timestamp", ts)
            .body(body)
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16());
        s.lock().event_posts.push(answer);
        s.pending.fetch_sub(1, Ordering::SeqCst);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_the_spec_requires_and_refuses_the_rest() {
        let ok = json!({
            "personalizations": [{"to": [{"email": "a@example.com"}], "custom_args": {"delivery_id": "1"}}],
            "from": {"email": "erp@example.com"},
            "subject": "s",
            "content": [{"type": "text/plain", "value": "x"}, {"type": "text/html", "value": "<p>x</p>"}],
        });
        assert!(validate(&ok).is_ok());
        let field = |v: Value| validate(&v).expect_err("invalid").1;
        let mut v = ok.clone();
        v["from"] = json!({});
        assert_eq!(field(v), "from.email");
        let mut v = ok.clone();
        v["personalizations"][0]["to"] = json!([]);
        assert_eq!(field(v), "personalizations.0.to");
        let mut v = ok.clone();
        v.as_object_mut().expect("obj").remove("subject");
        assert_eq!(field(v), "subject");
        let mut v = ok.clone();
        v["content"] =
            json!([{"type": "text/html", "value": "h"}, {"type": "text/plain", "value": "t"}]);
        assert_eq!(field(v), "content.0.type");
        let mut v = ok;
        v["personalizations"][0]["custom_args"]["delivery_id"] = json!(1);
        assert_eq!(field(v), "personalizations.0.custom_args");
    }

    #[tokio::test]
    async fn signatures_verify_with_the_published_key() {
        use p256::ecdsa::VerifyingKey;
        use p256::ecdsa::signature::Verifier as _;
        use p256::pkcs8::DecodePublicKey as _;
        let sg = SendGridEmulator::start().await.expect("start");
        let der = base64::engine::general_purpose::STANDARD
            .decode(sg.public_key())
            .expect("b64");
        let key = VerifyingKey::from_public_key_der(&der).expect("spki");
        let sig = base64::engine::general_purpose::STANDARD
            .decode(sg.sign("1600000000", b"[]\r\n"))
            .expect("b64");
        let sig = Signature::from_der(&sig).expect("der");
        assert!(key.verify(b"1600000000[]\r\n", &sig).is_ok());
        assert!(key.verify(b"1600000001[]\r\n", &sig).is_err());
    }
}
