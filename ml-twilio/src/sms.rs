//! [`TwilioSmsSink`]: SMS through Twilio's Messages resource, reconciled through the
//! Messages list.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use ml_core::auth::{BasicCredentials, Credentials};
use ml_core::clock::Clock;
use ml_core::http::{ApiClient, Request, Response};
use ml_core::record::Record;
use ml_core::render::Rendered;
use ml_core::sink::{Destination, DestinationCheck, Outbound, Receipt, Reconciled, Sink};
use ml_core::{Error, ErrorClass, Result};
use serde::Deserialize;
use serde_json::json;

#[cfg(doc)]
use crate::error::parse_twilio_error;
use crate::error::{Api, Call, TwilioError};
use crate::phone::check_e164;
use crate::recipients::{Channel, RecipientDirectory, Role, resolve};
use crate::render::render_sms;
use crate::segments::{Fitted, LengthPolicy, MAX_BODY_CHARS, measure, truncate_to};

/// The rate-limiter key prefix (`twilio:+15005550006` or `twilio:MG…`).
pub const RATE_KEY_PREFIX: &str = "twilio:";

/// Who the message comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sender {
    /// A Twilio number (E.164), short code or alphanumeric sender id (`From`).
    From(String),
    /// A Messaging Service (`MessagingServiceSid`, `MG…`): Twilio picks the sender.
    MessagingService(String),
}

impl Sender {
    /// The value (number or `MG…` sid).
    pub fn as_str(&self) -> &str {
        match self {
            Self::From(s) | Self::MessagingService(s) => s,
        }
    }
}

/// How `reconcile` recognises a message as the one of a delivery.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReconcileMatch {
    /// Append ` (ref <delivery id>)` to every body and match To + body (marker included)
    /// + creation time. Unambiguous. The default.
    #[default]
    BodyAndMarker,
    /// No marker: match To + body + creation time. Two deliveries with the same text to
    /// the same number in the window are indistinguishable: the second would be taken as
    /// sent. Use only when bodies are unique per delivery.
    BodyOnly,
}

/// The SMS sink's settings (built by [`crate::TwilioBuilder`]).
#[derive(Clone)]
pub(crate) struct SmsSettings {
    pub(crate) account_sid: String,
    pub(crate) credentials: BasicCredentials,
    pub(crate) sender: Sender,
    pub(crate) api_url: String,
    pub(crate) status_callback: Option<String>,
    pub(crate) length: LengthPolicy,
    pub(crate) matching: ReconcileMatch,
    pub(crate) clock_skew: Duration,
    pub(crate) page_size: u32,
    pub(crate) max_pages: u32,
    pub(crate) directory: Option<Arc<dyn RecipientDirectory>>,
    pub(crate) client: reqwest::Client,
    pub(crate) clock: Arc<dyn Clock>,
}

/// Sends SMS with `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`.
///
/// * The destination address is an E.164 number (checked before sending: a bad one is a
///   permanent error and nothing is sent) or a symbolic recipient (`buyer`, `supplier`,
///   `cost_center`, `material_group`) resolved when rendering; see [`crate::recipients`].
/// * The body is measured (GSM-7 or UCS-2, segments) and truncated or refused per
///   [`LengthPolicy`]; with [`ReconcileMatch::BodyAndMarker`] it ends with ` (ref <id>)`.
/// * `StatusCallback` is the configured callback URL with `delivery_id=<id>` added to its
///   query, so callbacks reach the receiver; they are matched by `MessageSid`.
/// * `reconcile` lists Messages filtered by `To` (and `From`), newest first, and looks for
///   the same body created no earlier than `planned_at` less the clock skew (see
///   [`ReconcileMatch`]); it stops at the first page created wholly before that. No
///   `DateSent` filter: a message still queued has no `date_sent` and would be missed.
/// * `rate_key` is `twilio:<From or MessagingServiceSid>`. Twilio queues what exceeds a
///   sender's throughput (long codes about 1 segment/s in the US, more for short codes,
///   toll-free and services) for up to `ValidityPeriod` (36,000 s) rather than refusing;
///   the REST API itself answers 429/20429 beyond its concurrency limit.
pub struct TwilioSmsSink {
    s: SmsSettings,
    api: ApiClient,
}

impl fmt::Display for TwilioSmsSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Twilio({})", self.s.account_sid)
    }
}

impl fmt::Debug for TwilioSmsSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioSmsSink")
            .field("account_sid", &self.s.account_sid)
            .field("username", &self.s.credentials.username)
            .field("sender", &self.s.sender)
            .field("api_url", &self.s.api_url)
            .field("status_callback", &self.s.status_callback)
            .field("length", &self.s.length)
            .field("matching", &self.s.matching)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct MessageResource {
    sid: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    date_created: Option<String>,
}

#[derive(Deserialize)]
struct MessagePage {
    #[serde(default)]
    messages: Vec<MessageResource>,
    #[serde(default)]
    next_page_uri: Option<String>,
}

/// Parses an RFC 2822 date as Twilio writes them.
pub(crate) fn parse_rfc2822(s: &str) -> Option<Timestamp> {
    static P: jiff::fmt::rfc2822::DateTimeParser =
        jiff::fmt::rfc2822::DateTimeParser::new().relaxed_weekday(true);
    P.parse_timestamp(s).ok()
}

impl TwilioSmsSink {
    pub(crate) fn new(s: SmsSettings) -> Self {
        let api = ApiClient::reqwest(s.client.clone())
            .with_credentials(Credentials::Basic(s.credentials.clone()))
            .with_clock(Arc::clone(&s.clock));
        Self { s, api }
    }

    /// Sends `request` and returns a successful answer; errors by [`parse_twilio_error`].
    async fn send_request(&self, request: Request) -> Result<Response, TwilioError> {
        let system = self.system();
        let call = Call {
            api: Api::Twilio,
            system: &system,
        };
        self.api.send(&call, request).await
    }

    fn system(&self) -> String {
        self.to_string()
    }

    /// The URL of a list's `next_page_uri`: a path (as Twilio sends it) under the API URL,
    /// or an absolute URL on the API's own origin. Another origin is refused: the request
    /// carries the account's credentials.
    fn next_page_url(&self, next: &str) -> Result<String> {
        if next.starts_with('/') {
            return Ok(format!("{}{next}", self.s.api_url));
        }
        let origin = |u: &str| url::Url::parse(u).ok().map(|u| u.origin());
        match (origin(next), origin(&self.s.api_url)) {
            (Some(a), Some(b)) if a == b => Ok(next.to_owned()),
            _ => Err(Error::remote(
                self.system(),
                ErrorClass::RETRYABLE,
                "reconcile: the Messages list pointed its next page outside the API's origin",
            )),
        }
    }

    fn messages_url(&self) -> String {
        format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            self.s.api_url, self.s.account_sid
        )
    }

    /// The `StatusCallback` URL of a delivery, when a callback URL is configured.
    pub fn status_callback_url(&self, delivery_id: i64) -> Option<String> {
        self.s.status_callback.as_ref().map(|base| {
            let sep = if base.contains('?') { '&' } else { '?' };
            format!("{base}{sep}delivery_id={delivery_id}")
        })
    }

    /// The phone number a message goes to.
    fn recipient(&self, msg: &Outbound) -> Result<String, TwilioError> {
        let address = msg.destination.address.trim();
        let number = if Role::parse(address).is_some() {
            msg.rendered
                .body
                .as_ref()
                .and_then(|b| b["to"].as_array())
                .and_then(|a| a.first())
                .and_then(|v| v.as_str())
                .map(str::to_owned)
                .ok_or_else(|| TwilioError::Unresolved {
                    system: self.system(),
                    recipient: address.to_owned(),
                })?
        } else {
            address.to_owned()
        };
        check_e164(&number).map_err(|reason| TwilioError::InvalidNumber {
            system: self.system(),
            number: number.clone(),
            reason: reason.to_owned(),
        })?;
        Ok(number)
    }

    fn marker(&self, delivery_id: i64) -> String {
        match self.s.matching {
            ReconcileMatch::BodyAndMarker => format!(" (ref {delivery_id})"),
            ReconcileMatch::BodyOnly => String::new(),
        }
    }

    /// The body sent for a message: the rendered text fitted to the length policy, with
    /// the reconcile marker.
    pub fn body_for(&self, msg: &Outbound) -> Result<Fitted> {
        Ok(self.fit(&msg.rendered.text, msg.delivery_id.0)?)
    }

    fn fit(&self, text: &str, delivery_id: i64) -> Result<Fitted, TwilioError> {
        let suffix = self.marker(delivery_id);
        match self.s.length {
            LengthPolicy::Truncate { max_segments } => truncate_to(text, &suffix, max_segments)
                .ok_or_else(|| TwilioError::TooLong {
                    system: self.system(),
                    segments: measure(&suffix).segments,
                    max: max_segments,
                }),
            LengthPolicy::Refuse { max_segments } => {
                let body = format!("{text}{suffix}");
                let length = measure(&body);
                if length.segments > max_segments.max(1) || length.chars > MAX_BODY_CHARS {
                    return Err(TwilioError::TooLong {
                        system: self.system(),
                        segments: length.segments,
                        max: max_segments,
                    });
                }
                Ok(Fitted {
                    body,
                    length,
                    truncated: false,
                })
            }
        }
    }

    /// The form a message is sent with.
    pub fn form_for(&self, msg: &Outbound) -> Result<Vec<(&'static str, String)>> {
        let to = self.recipient(msg)?;
        let fitted = self.fit(&msg.rendered.text, msg.delivery_id.0)?;
        let mut form = vec![("To", to)];
        match &self.s.sender {
            Sender::From(f) => form.push(("From", f.clone())),
            Sender::MessagingService(m) => form.push(("MessagingServiceSid", m.clone())),
        }
        form.push(("Body", fitted.body));
        if let Some(cb) = self.status_callback_url(msg.delivery_id.0) {
            form.push(("StatusCallback", cb));
        }
        Ok(form)
    }

    async fn get_page(&self, url: &str, query: &[(&str, String)]) -> Result<MessagePage> {
        let request = Request::get(url)?.query(query);
        let response = self.send_request(request).await?;
        response.json::<MessagePage>().map_err(|e| {
            TwilioError::Transport {
                system: self.system(),
                class: ErrorClass::RETRYABLE,
                message: format!("unreadable answer: {e}"),
            }
            .into()
        })
    }
}

#[async_trait]
impl Sink for TwilioSmsSink {
    async fn send(&self, msg: &Outbound) -> Result<Receipt> {
        let form = self.form_for(msg)?;
        let request = Request::post(&self.messages_url())?.form(&form)?;
        let response = self.send_request(request).await?;
        let m: MessageResource = response.json().map_err(|e| {
            // Accepted, but the answer is unreadable: the message may exist.
            TwilioError::Transport {
                system: self.system(),
                class: ErrorClass::InDoubt,
                message: format!("unreadable answer: {e}"),
            }
        })?;
        let mut receipt = Receipt::new(m.sid);
        if let Some(s) = m.status {
            receipt = receipt.with_status(s);
        }
        Ok(receipt)
    }

    fn can_reconcile(&self) -> bool {
        true
    }

    async fn reconcile(&self, msg: &Outbound) -> Result<Reconciled> {
        let to = self.recipient(msg)?;
        let body = self.fit(&msg.rendered.text, msg.delivery_id.0)?.body;
        let skew = jiff::SignedDuration::try_from(self.s.clock_skew).unwrap_or_default();
        let since = msg.planned_at.checked_sub(skew).unwrap_or(msg.planned_at);
        // No `DateSent` filter: `date_sent` is null until the carrier takes the message, so
        // a message still queued (the usual state right after an in-doubt send) would be
        // filtered out, and sent again. The list is newest first; the scan stops at a page
        // created wholly before the delivery was planned.
        let mut query = vec![("To", to.clone())];
        if let Sender::From(f) = &self.s.sender {
            query.push(("From", f.clone()));
        }
        query.push(("PageSize", self.s.page_size.to_string()));
        let mut page = self.get_page(&self.messages_url(), &query).await?;
        for _ in 0..self.s.max_pages {
            let mut older = 0usize;
            for m in &page.messages {
                let created = m.date_created.as_deref().and_then(parse_rfc2822);
                if created.is_some_and(|c| c < since) {
                    older += 1;
                    continue;
                }
                if m.to.as_deref() == Some(to.as_str()) && m.body.as_deref() == Some(body.as_str())
                {
                    let mut r = Receipt::new(m.sid.clone());
                    if let Some(s) = &m.status {
                        r = r.with_status(s.clone());
                    }
                    return Ok(Reconciled::Found(r));
                }
            }
            let all_older = !page.messages.is_empty() && older == page.messages.len();
            match page.next_page_uri.clone() {
                Some(next) if !all_older => {
                    page = self.get_page(&self.next_page_url(&next)?, &[]).await?;
                }
                _ => return Ok(Reconciled::NotFound),
            }
        }
        Err(Error::remote(
            self.system(),
            ErrorClass::RETRYABLE,
            format!(
                "reconcile inconclusive: more than {} pages of messages to {to}",
                self.s.max_pages
            ),
        ))
    }

    fn rate_key(&self, _destination: &Destination) -> Option<String> {
        Some(format!("{RATE_KEY_PREFIX}{}", self.s.sender.as_str()))
    }

    fn render(&self, record: &Record, destination: &Destination) -> Rendered {
        let mut r = render_sms(record);
        if let Some(role) = Role::parse(&destination.address) {
            let found = resolve(record, role, Channel::Sms, self.s.directory.as_deref());
            r.body = Some(json!({ "to": found }));
        }
        r
    }

    async fn healthcheck(&self) -> Result<()> {
        let url = format!(
            "{}/2010-04-01/Accounts/{}.json",
            self.s.api_url, self.s.account_sid
        );
        self.send_request(Request::get(&url)?).await?;
        Ok(())
    }

    /// A number must be E.164 (checked here as before every send); a role is resolved
    /// from each record, so it cannot be checked ahead.
    async fn check_destination(&self, destination: &Destination) -> Result<DestinationCheck> {
        let address = destination.address.trim();
        if Role::parse(address).is_some() {
            return Ok(DestinationCheck::Unchecked(
                "a role: each record names its number".to_owned(),
            ));
        }
        check_e164(address).map_err(|reason| TwilioError::InvalidNumber {
            system: self.system(),
            number: address.to_owned(),
            reason: reason.to_owned(),
        })?;
        Ok(DestinationCheck::Ready("an E.164 number".to_owned()))
    }
}
