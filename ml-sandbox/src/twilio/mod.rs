//! The Twilio Messages emulator: `POST`/`GET /2010-04-01/Accounts/{sid}/Messages.json`,
//! `GET /2010-04-01/Accounts/{sid}.json`, and status callbacks signed as Twilio signs them.
//!
//! What it enforces, like Twilio (spec `twilio_api_v2010.json`, notes in `twilio.md`):
//! * HTTP Basic auth: Account SID + Auth Token, or API Key SID + secret; missing or wrong
//!   -> 401 code 20003; the path's AccountSid must be the account (else 404 code 20404).
//! * A form body (`application/x-www-form-urlencoded`); anything else -> 400 code 21604
//!   (Twilio reads no `To` from a JSON body).
//! * `To` required (21604) and E.164 (21211); `From` or `MessagingServiceSid` (21603);
//!   `Body` or `MediaUrl` or `ContentSid` (21602); `Body` at most 1,600 characters
//!   (21617); numbers opted out -> 21610; numbers in a disabled region -> 21408.
//! * 201 with the Message resource (`sid` `SM` + 32 hex, `status` `queued`, or
//!   `accepted` with a Messaging Service, `num_segments`, RFC 2822 dates).
//! * The list: newest first, filters `To`, `From`, `DateSent` / `DateSent>` / `DateSent<`
//!   (the `>=` / `<=` forms; a date or a date-time), `PageSize` (default 50, at most 1000),
//!   `Page`, with `next_page_uri`. `date_sent` is null until the message is sent (its
//!   `sent` status, which comes with the status callbacks), so `DateSent` filters do not
//!   see a message still `queued` or `accepted`, as on Twilio.
//! * Status callbacks to `StatusCallback` after [`TwilioEmulatorBuilder::callback_delay`]
//!   (on the emulator's clock, so virtual under `tokio::time::pause()`): `sent`, then the
//!   number's [`Outcome`] (`delivered` by default), form-encoded, `X-Twilio-Signature`
//!   with the Auth Token over the exact callback URL and sorted parameters. Optionally out
//!   of order (final first) and duplicated.
//!
//! Knowingly less faithful: no `MediaUrl` fetching; no Messaging Service sender pool (`from` is null); errors come in the order
//! auth, content type, To, sender, body, opt-out/region.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use hmac::{Hmac, KeyInit as _, Mac as _};
use jiff::Timestamp;
use ml_core::clock::Clock;
use ml_core::http::ClientOptions;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::{Value, json};

use crate::Result;
use crate::emulator::{Emulator, EmulatorCore, EmulatorOptions, basic_credentials};
use crate::fault::Faults;

/// The emulator's Account SID.
pub const ACCOUNT_SID: &str = "AC00000000000000000000000000005a4d";
/// The emulator's Auth Token.
pub const AUTH_TOKEN: &str = "sandbox-auth-token-0000000000000";
/// The emulator's API Key SID.
pub const API_KEY_SID: &str = "SK00000000000000000000000000005a4d";
/// The emulator's API Key secret.
pub const API_KEY_SECRET: &str = "sandbox-api-key-secret";

/// What happens to a message after acceptance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `sent`, then `delivered`.
    Delivered,
    /// `sent`, then `undelivered` with this error code (30003, 30005, 30007 …).
    Undelivered(u32),
    /// `failed` with this error code (never handed to the carrier).
    Failed(u32),
    /// `sent` only (carriers without delivery receipts).
    SentOnly,
}

/// A message as the emulator holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredSms {
    /// `SM…`.
    pub sid: String,
    /// `To`.
    pub to: String,
    /// `From` (or `None` with a Messaging Service).
    pub from: Option<String>,
    /// `MessagingServiceSid`.
    pub messaging_service_sid: Option<String>,
    /// `Body`.
    pub body: String,
    /// The current status.
    pub status: String,
    /// `StatusCallback`.
    pub status_callback: Option<String>,
    /// The error code of a failure.
    pub error_code: Option<u32>,
    /// When it was created.
    pub created: Timestamp,
    /// When it was sent (status `sent`): `None` while queued or accepted.
    pub sent: Option<Timestamp>,
    /// Segments.
    pub num_segments: usize,
    /// Every form parameter as received.
    pub params: Vec<(String, String)>,
}

/// A status callback the emulator made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallbackSent {
    /// The URL.
    pub url: String,
    /// `MessageSid`.
    pub sid: String,
    /// `MessageStatus`.
    pub status: String,
    /// The receiver's HTTP status (`None`: no answer).
    pub answer: Option<u16>,
}

#[derive(Default)]
struct Data {
    messages: Vec<StoredSms>,
    outcomes: HashMap<String, Outcome>,
    opted_out: HashSet<String>,
    blocked: HashSet<String>,
    callbacks: Vec<CallbackSent>,
}

struct Inner {
    data: Mutex<Data>,
    rng: Mutex<StdRng>,
    clock: Arc<dyn Clock>,
    client: reqwest::Client,
    delay: Duration,
    reorder: bool,
    duplicate: bool,
    pending: AtomicU64,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Configures a [`TwilioEmulator`].
#[derive(Debug)]
pub struct TwilioEmulatorBuilder {
    options: EmulatorOptions,
    delay: Duration,
    reorder: bool,
    duplicate: bool,
}

impl Default for TwilioEmulatorBuilder {
    fn default() -> Self {
        Self {
            options: EmulatorOptions::new(0),
            delay: Duration::from_secs(2),
            reorder: false,
            duplicate: false,
        }
    }
}

impl TwilioEmulatorBuilder {
    /// Seeds sids and fault probabilities.
    pub fn seed(mut self, seed: u64) -> Self {
        self.options.set_seed(seed);
        self
    }

    /// The clock (default [`TokioClock`](ml_core::clock::TokioClock)).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.options.set_clock(clock);
        self
    }

    /// How long after acceptance the callbacks are sent (default 2 s, tokio time).
    pub fn callback_delay(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }

    /// Sends the final status before `sent` (out of order).
    pub fn out_of_order(mut self, on: bool) -> Self {
        self.reorder = on;
        self
    }

    /// Sends every callback twice.
    pub fn duplicate_callbacks(mut self, on: bool) -> Self {
        self.duplicate = on;
        self
    }

    /// Starts the emulator on 127.0.0.1.
    pub async fn start(self) -> Result<TwilioEmulator> {
        let bound = EmulatorCore::bind(
            &self.options,
            "",
            Arc::new(|status| {
                let code = if status == 429 { 20429 } else { 20500 };
                (
                    "application/json".to_owned(),
                    json!({"code": code, "message": "sandbox fault", "more_info": format!("https://www.twilio.com/docs/errors/{code}"), "status": status}).to_string(),
                )
            }),
        )
        .await?;
        let inner = Arc::new(Inner {
            data: Mutex::new(Data::default()),
            rng: Mutex::new(StdRng::seed_from_u64(self.options.seed())),
            clock: Arc::clone(bound.core().clock()),
            client: ClientOptions::default().client()?,
            delay: self.delay,
            reorder: self.reorder,
            duplicate: self.duplicate,
            pending: AtomicU64::new(0),
        });
        let router = Router::new()
            .route(
                "/2010-04-01/Accounts/{sid}/Messages.json",
                get(list).post(create),
            )
            .route("/2010-04-01/Accounts/{sid}", get(account))
            .with_state(inner.clone());
        Ok(TwilioEmulator {
            inner,
            core: bound.serve(router),
        })
    }
}

/// A running Twilio emulator.
pub struct TwilioEmulator {
    inner: Arc<Inner>,
    core: EmulatorCore,
}

impl std::fmt::Debug for TwilioEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioEmulator")
            .field("base", &self.core.base_url())
            .finish_non_exhaustive()
    }
}

impl TwilioEmulator {
    /// Starts with the defaults.
    pub async fn start() -> Result<Self> {
        Self::builder().start().await
    }

    /// A builder.
    pub fn builder() -> TwilioEmulatorBuilder {
        TwilioEmulatorBuilder::default()
    }

    /// `http://127.0.0.1:<port>` (no trailing slash): `TWILIO_API_URL`.
    pub fn base_url(&self) -> &str {
        self.core.base_url()
    }

    /// The Account SID.
    pub fn account_sid(&self) -> &'static str {
        ACCOUNT_SID
    }

    /// The Auth Token (Basic password, and the key of callback signatures).
    pub fn auth_token(&self) -> &'static str {
        AUTH_TOKEN
    }

    /// The API Key SID and secret.
    pub fn api_key(&self) -> (&'static str, &'static str) {
        (API_KEY_SID, API_KEY_SECRET)
    }

    /// The fault layer (targets: `Messages.json`).
    pub fn faults(&self) -> &Faults {
        self.core.faults()
    }

    /// Sets what happens to messages to `number`.
    pub fn set_outcome(&self, number: &str, outcome: Outcome) {
        self.inner
            .lock()
            .outcomes
            .insert(number.to_owned(), outcome);
    }

    /// Marks `number` as opted out (21610).
    pub fn opt_out(&self, number: &str) {
        self.inner.lock().opted_out.insert(number.to_owned());
    }

    /// Marks `number` as in a disabled Geo Permissions region (21408).
    pub fn block_region(&self, number: &str) {
        self.inner.lock().blocked.insert(number.to_owned());
    }

    /// Every accepted message, oldest first.
    pub fn messages(&self) -> Vec<StoredSms> {
        self.inner.lock().messages.clone()
    }

    /// Every callback made.
    pub fn callbacks(&self) -> Vec<CallbackSent> {
        self.inner.lock().callbacks.clone()
    }

    /// Callbacks scheduled but not yet answered.
    pub fn pending_callbacks(&self) -> u64 {
        self.inner.pending.load(Ordering::SeqCst)
    }

    /// Waits (on tokio time, instant under pause) until no callback is pending.
    pub async fn wait_callbacks_idle(&self) {
        while self.pending_callbacks() > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Emulator for TwilioEmulator {
    fn core(&self) -> &EmulatorCore {
        &self.core
    }

    /// `TWILIO_API_URL`, `TWILIO_ACCOUNT_SID` and `TWILIO_AUTH_TOKEN`.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("TWILIO_API_URL", self.base_url().to_owned()),
            ("TWILIO_ACCOUNT_SID", ACCOUNT_SID.to_owned()),
            ("TWILIO_AUTH_TOKEN", AUTH_TOKEN.to_owned()),
        ]
    }
}

fn err(status: StatusCode, code: u32, message: impl Into<String>) -> Response {
    (
        status,
        [("content-type", "application/json")],
        json!({
            "code": code,
            "message": message.into(),
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status.as_u16(),
        })
        .to_string(),
    )
        .into_response()
}

fn authorized(headers: &HeaderMap) -> bool {
    matches!(basic_credentials(headers), Some((u, p)) if (u == ACCOUNT_SID && p == AUTH_TOKEN) || (u == API_KEY_SID && p == API_KEY_SECRET))
}

fn check_account(headers: &HeaderMap, sid: &str) -> Option<Response> {
    if !authorized(headers) {
        return Some(err(
            StatusCode::UNAUTHORIZED,
            20003,
            "Authentication Error - invalid username",
        ));
    }
    let sid = sid.strip_suffix(".json").unwrap_or(sid);
    if sid != ACCOUNT_SID {
        return Some(err(
            StatusCode::NOT_FOUND,
            20404,
            "The requested resource was not found",
        ));
    }
    None
}

fn is_e164(n: &str) -> bool {
    n.strip_prefix('+').is_some_and(|d| {
        (7..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0')
    })
}

fn rfc2822(t: Timestamp) -> String {
    jiff::fmt::rfc2822::to_string(&t.to_zoned(jiff::tz::TimeZone::UTC)).unwrap_or_default()
}

fn segments(body: &str) -> usize {
    const GSM: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
    const EXT: &str = "\u{0C}^{}\\[~]|€";
    let gsm = body.chars().all(|c| GSM.contains(c) || EXT.contains(c));
    let units: usize = if gsm {
        body.chars()
            .map(|c| if EXT.contains(c) { 2 } else { 1 })
            .sum()
    } else {
        body.encode_utf16().count()
    };
    let (single, multi) = if gsm { (160, 153) } else { (70, 67) };
    if units == 0 {
        0
    } else if units <= single {
        1
    } else {
        units.div_ceil(multi)
    }
}

fn resource(m: &StoredSms) -> Value {
    json!({
        "sid": m.sid,
        "account_sid": ACCOUNT_SID,
        "messaging_service_sid": m.messaging_service_sid,
        "from": m.from,
        "to": m.to,
        "body": m.body,
        "status": m.status,
        "direction": "outbound-api",
        "num_segments": m.num_segments.to_string(),
        "num_media": "0",
        "price": null,
        "price_unit": "USD",
        "error_code": m.error_code,
        "error_message": null,
        "date_created": rfc2822(m.created),
        "date_updated": rfc2822(m.created),
        "date_sent": m.sent.map(rfc2822),
        "api_version": "2010-04-01",
        "uri": format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{}.json", m.sid),
        "subresource_uris": {"media": format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{}/Media.json", m.sid)},
    })
}

async fn account(
    State(_s): State<Arc<Inner>>,
    Path(sid): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = check_account(&headers, &sid) {
        return r;
    }
    Json(json!({"sid": ACCOUNT_SID, "status": "active", "friendly_name": "Sandbox"}))
        .into_response()
}

use axum::Json;

async fn create(
    State(s): State<Arc<Inner>>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(r) = check_account(&headers, &sid) {
        return r;
    }
    let form = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    let params: Vec<(String, String)> = if form {
        serde_urlencoded::from_bytes(&body).unwrap_or_default()
    } else {
        Vec::new()
    };
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let Some(to) = get("To") else {
        return err(
            StatusCode::BAD_REQUEST,
            21604,
            "A 'To' phone number is required.",
        );
    };
    if !is_e164(&to) {
        return err(
            StatusCode::BAD_REQUEST,
            21211,
            format!("The 'To' number {to} is not a valid phone number."),
        );
    }
    let from = get("From");
    let mss = get("MessagingServiceSid");
    if from.is_none() && mss.is_none() {
        return err(
            StatusCode::BAD_REQUEST,
            21603,
            "A 'From' or 'MessagingServiceSid' parameter is required to send a message.",
        );
    }
    let text = get("Body").unwrap_or_default();
    if text.is_empty() && get("MediaUrl").is_none() && get("ContentSid").is_none() {
        return err(StatusCode::BAD_REQUEST, 21602, "Message body is required.");
    }
    if text.chars().count() > 1600 {
        return err(
            StatusCode::BAD_REQUEST,
            21617,
            "The concatenated message body exceeds the 1600 character limit.",
        );
    }
    let status_callback = get("StatusCallback");
    let (msg, outcome) = {
        let mut d = s.lock();
        if d.opted_out.contains(&to) {
            return err(
                StatusCode::BAD_REQUEST,
                21610,
                "Attempt to send to unsubscribed recipient",
            );
        }
        if d.blocked.contains(&to) {
            return err(
                StatusCode::BAD_REQUEST,
                21408,
                format!(
                    "Permission to send an SMS has not been enabled for the region indicated by the 'To' number: {to}."
                ),
            );
        }
        let sid = {
            let mut rng = s.rng.lock().unwrap_or_else(PoisonError::into_inner);
            let bytes: [u8; 16] = rng.random();
            format!("SM{}", hex::encode(bytes))
        };
        let m = StoredSms {
            sid,
            to: to.clone(),
            from: from.clone(),
            messaging_service_sid: mss.clone(),
            num_segments: segments(&text),
            body: text,
            status: if mss.is_some() {
                "accepted".into()
            } else {
                "queued".into()
            },
            status_callback: status_callback.clone(),
            error_code: None,
            created: s.clock.now(),
            sent: None,
            params: params.clone(),
        };
        d.messages.push(m.clone());
        (
            m,
            d.outcomes.get(&to).copied().unwrap_or(Outcome::Delivered),
        )
    };
    if let Some(url) = status_callback {
        schedule_callbacks(&s, &msg, &url, outcome);
    }
    (StatusCode::CREATED, Json(resource(&msg))).into_response()
}

/// Computes Twilio's `X-Twilio-Signature` (HMAC-SHA1, base64) over a URL and parameters.
pub fn sign(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    sorted.dedup();
    let mut mac =
        <Hmac<sha1::Sha1>>::new_from_slice(auth_token.as_bytes()).expect("any key length");
    mac.update(url.as_bytes());
    for (k, v) in sorted {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn schedule_callbacks(s: &Arc<Inner>, m: &StoredSms, url: &str, outcome: Outcome) {
    let mut steps: Vec<(&'static str, Option<u32>)> = match outcome {
        Outcome::Delivered => vec![("sent", None), ("delivered", None)],
        Outcome::Undelivered(c) => vec![("sent", None), ("undelivered", Some(c))],
        Outcome::Failed(c) => vec![("failed", Some(c))],
        Outcome::SentOnly => vec![("sent", None)],
    };
    if s.reorder {
        steps.reverse();
    }
    if s.duplicate {
        steps = steps.into_iter().flat_map(|x| [x, x]).collect();
    }
    s.pending.fetch_add(steps.len() as u64, Ordering::SeqCst);
    let s = s.clone();
    let m = m.clone();
    let url = url.to_owned();
    tokio::spawn(async move {
        tokio::time::sleep(s.delay).await;
        for (status, code) in steps {
            {
                let mut d = s.lock();
                let now = s.clock.now();
                if let Some(x) = d.messages.iter_mut().find(|x| x.sid == m.sid) {
                    status.clone_into(&mut x.status);
                    x.error_code = code;
                    if status == "sent" && x.sent.is_none() {
                        x.sent = Some(now);
                    }
                }
            }
            let mut params = vec![
                ("AccountSid".to_owned(), ACCOUNT_SID.to_owned()),
                ("ApiVersion".to_owned(), "2010-04-01".to_owned()),
                ("MessageSid".to_owned(), m.sid.clone()),
                ("MessageStatus".to_owned(), status.to_owned()),
                ("SmsSid".to_owned(), m.sid.clone()),
                ("SmsStatus".to_owned(), status.to_owned()),
                ("To".to_owned(), m.to.clone()),
            ];
            if let Some(f) = &m.from {
                params.push(("From".to_owned(), f.clone()));
            }
            if let Some(x) = &m.messaging_service_sid {
                params.push(("MessagingServiceSid".to_owned(), x.clone()));
            }
            if let Some(c) = code {
                params.push(("ErrorCode".to_owned(), c.to_string()));
            }
            let signature = sign(AUTH_TOKEN, &url, &params);
            let answer = s
                .client
                .post(&url)
                .header("x-twilio-signature", signature)
                .header("i-twilio-idempotency-token", format!("{}-{status}", m.sid))
                .form(&params)
                .send()
                .await
                .ok()
                .map(|r| r.status().as_u16());
            s.lock().callbacks.push(CallbackSent {
                url: url.clone(),
                sid: m.sid.clone(),
                status: status.to_owned(),
                answer,
            });
            s.pending.fetch_sub(1, Ordering::SeqCst);
        }
    });
}

fn parse_when(v: &str) -> Option<(Timestamp, bool)> {
    if let Ok(t) = v.parse::<Timestamp>() {
        return Some((t, false));
    }
    let d: jiff::civil::Date = v.parse().ok()?;
    Some((d.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp(), true))
}

async fn list(
    State(s): State<Arc<Inner>>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    if let Some(r) = check_account(&headers, &sid) {
        return r;
    }
    let q: Vec<(String, String)> =
        serde_urlencoded::from_str(q.as_deref().unwrap_or("")).unwrap_or_default();
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let page_size = get("PageSize")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(50)
        .clamp(1, 1000);
    let page = get("Page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let day = jiff::SignedDuration::from_hours(24);
    let mut bounds: Vec<(Timestamp, std::cmp::Ordering)> = Vec::new();
    for (k, v) in &q {
        let Some((t, is_date)) = parse_when(v) else {
            continue;
        };
        match k.as_str() {
            "DateSent>" => bounds.push((t, std::cmp::Ordering::Greater)),
            "DateSent<" => {
                bounds.push((if is_date { t + day } else { t }, std::cmp::Ordering::Less));
            }
            "DateSent" => {
                bounds.push((t, std::cmp::Ordering::Greater));
                bounds.push((if is_date { t + day } else { t }, std::cmp::Ordering::Less));
            }
            _ => {}
        }
    }
    let to = get("To");
    let from = get("From");
    let all: Vec<Value> = {
        let d = s.lock();
        d.messages
            .iter()
            .rev()
            .filter(|m| to.as_ref().is_none_or(|t| &m.to == t))
            .filter(|m| from.as_ref().is_none_or(|f| m.from.as_ref() == Some(f)))
            // A message not sent yet has no `date_sent`: no `DateSent` bound matches it.
            .filter(|m| {
                bounds.iter().all(|(t, o)| match (o, m.sent) {
                    (_, None) => false,
                    (std::cmp::Ordering::Greater, Some(sent)) => sent >= *t,
                    (_, Some(sent)) => sent < *t,
                })
            })
            .skip(page * page_size)
            .take(page_size + 1)
            .map(resource)
            .collect()
    };
    let more = all.len() > page_size;
    let messages: Vec<Value> = all.into_iter().take(page_size).collect();
    let mut keep: Vec<(String, String)> = q
        .into_iter()
        .filter(|(k, _)| k != "Page" && k != "PageSize")
        .collect();
    keep.push(("PageSize".into(), page_size.to_string()));
    let uri = |p: usize| {
        let mut k = keep.clone();
        k.push(("Page".into(), p.to_string()));
        format!(
            "/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json?{}",
            serde_urlencoded::to_string(&k).unwrap_or_default()
        )
    };
    Json(json!({
        "messages": messages,
        "page": page,
        "page_size": page_size,
        "first_page_uri": uri(0),
        "uri": uri(page),
        "next_page_uri": if more { Value::String(uri(page + 1)) } else { Value::Null },
        "previous_page_uri": if page > 0 { Value::String(uri(page - 1)) } else { Value::Null },
        "start": page * page_size,
        "end": page * page_size + messages.len().saturating_sub(1),
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_like_twilio() {
        let p = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        let params = [
            p("CallSid", "CA1234567890ABCDE"),
            p("Caller", "+12349013030"),
            p("Digits", "1234"),
            p("From", "+12349013030"),
            p("To", "+18005551212"),
        ];
        assert_eq!(
            sign(
                "12345",
                "https://mycompany.com/myapp.php?foo=1&bar=2",
                &params
            ),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
    }

    #[test]
    fn counts_segments() {
        assert_eq!(segments(&"a".repeat(160)), 1);
        assert_eq!(segments(&"a".repeat(161)), 2);
        assert_eq!(segments(&"Ł".repeat(71)), 2);
        assert!(is_e164("+4915112345678"));
        assert!(!is_e164("004915112345678"));
    }
}
