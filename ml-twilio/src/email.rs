//! [`SendGridEmailSink`]: email through SendGrid's v3 Mail Send.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use ml_core::Result;
use ml_core::auth::Credentials;
use ml_core::clock::Clock;
use ml_core::http::{ApiClient, Request, Response};
use ml_core::record::Record;
use ml_core::render::Rendered;
use ml_core::sink::{Destination, DestinationCheck, Outbound, Receipt, Sink};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::error::{Api, Call, TwilioError};
use crate::recipients::{Channel, RecipientDirectory, Role, resolve};
use crate::render::render_email;

/// The rate-limiter key of the sink (SendGrid limits per API key; no number is published).
pub const RATE_KEY: &str = "sendgrid";

/// The remote id prefix of a mail accepted without `X-Message-Id` (followed by the
/// delivery id).
pub const NO_MESSAGE_ID_PREFIX: &str = "no-message-id:";

#[derive(Clone)]
pub(crate) struct EmailSettings {
    pub(crate) api_key: SecretString,
    pub(crate) api_url: String,
    pub(crate) from_email: String,
    pub(crate) from_name: Option<String>,
    pub(crate) sandbox_mode: bool,
    pub(crate) directory: Option<Arc<dyn RecipientDirectory>>,
    pub(crate) client: reqwest::Client,
    pub(crate) clock: Arc<dyn Clock>,
}

/// Sends email with `POST /v3/mail/send` (Bearer API key, JSON).
///
/// * One delivery = one SendGrid message: `personalizations[0].to` holds the destination
///   address, or every address a symbolic recipient (`buyer`, `supplier`, …) resolves to.
/// * `custom_args` carry `delivery_id`, `stream` and `record_key`, echoed in events.
/// * The receipt is the `X-Message-Id` header; events' `sg_message_id` starts with it.
/// * No `reconcile`: SendGrid has no cheap lookup of a sent message (the Email Activity
///   API is a paid add-on with minutes of lag), so an in-doubt send is sent again: at least
///   once, counted by the journal as `resent_after_doubt`.
pub struct SendGridEmailSink {
    s: EmailSettings,
    api: ApiClient,
    /// The rate budget the last answer reported: when `X-RateLimit-Remaining` reached 0,
    /// the `X-RateLimit-Reset` instant the next send waits for (instead of drawing a 429).
    spent_until: std::sync::Mutex<Option<jiff::Timestamp>>,
}

/// The longest a send waits for SendGrid's rate window to reset; beyond, it is retried.
const MAX_BUDGET_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

impl fmt::Display for SendGridEmailSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SendGrid({})", self.s.from_email)
    }
}

impl fmt::Debug for SendGridEmailSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendGridEmailSink")
            .field("api_url", &self.s.api_url)
            .field("from_email", &self.s.from_email)
            .field("sandbox_mode", &self.s.sandbox_mode)
            .finish_non_exhaustive()
    }
}

fn looks_like_email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(|c| c.is_whitespace() || c == ',' || c == ';')
}

impl SendGridEmailSink {
    pub(crate) fn new(s: EmailSettings) -> Self {
        let api = ApiClient::reqwest(s.client.clone())
            .with_credentials(Credentials::Bearer(s.api_key.clone()))
            .with_clock(Arc::clone(&s.clock));
        Self {
            s,
            api,
            spent_until: std::sync::Mutex::new(None),
        }
    }

    /// Waits until the rate window the last answer said was spent resets (SendGrid
    /// counts arrivals: a send before the reset would be a 429). An error when that is
    /// further away than [`MAX_BUDGET_WAIT`].
    async fn wait_for_budget(&self) -> Result<()> {
        let until = *self
            .spent_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(until) = until else {
            return Ok(());
        };
        let now = self.s.clock.now();
        let wait = std::time::Duration::try_from(until.duration_since(now)).unwrap_or_default();
        if wait.is_zero() {
            return Ok(());
        }
        if wait > MAX_BUDGET_WAIT {
            return Err(ml_core::Error::remote(
                self.system(),
                ml_core::ErrorClass::Retryable {
                    retry_after: Some(wait),
                },
                format!("SendGrid's rate budget is spent until {until}: not sent"),
            ));
        }
        tracing::debug!(
            wait_ms = wait.as_millis(),
            "SendGrid rate budget spent: waiting for the reset"
        );
        tokio::time::sleep(wait).await;
        Ok(())
    }

    /// Remembers the budget an answer reports (`X-RateLimit-Remaining` / `-Reset`).
    fn note_budget(&self, headers: &http::HeaderMap) {
        let number = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<i64>().ok())
        };
        let spent = match (number("x-ratelimit-remaining"), number("x-ratelimit-reset")) {
            (Some(0), Some(reset)) => jiff::Timestamp::from_second(reset).ok(),
            _ => None,
        };
        *self
            .spent_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = spent;
    }

    /// Sends `request` and returns a successful answer; errors by
    /// [`crate::error::parse_sendgrid_error`].
    async fn send_request(&self, request: Request) -> Result<Response, TwilioError> {
        let system = self.system();
        let call = Call {
            api: Api::SendGrid,
            system: &system,
        };
        self.api.send(&call, request).await
    }

    fn system(&self) -> String {
        self.to_string()
    }

    fn recipients(&self, msg: &Outbound) -> Result<Vec<String>, TwilioError> {
        let address = msg.destination.address.trim();
        let list: Vec<String> = if Role::parse(address).is_some() {
            msg.rendered
                .body
                .as_ref()
                .and_then(|b| b["to"].as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        } else {
            vec![address.to_owned()]
        };
        if list.is_empty() {
            return Err(TwilioError::Unresolved {
                system: self.system(),
                recipient: address.to_owned(),
            });
        }
        if let Some(bad) = list.iter().find(|a| !looks_like_email(a)) {
            return Err(TwilioError::InvalidEmail {
                system: self.system(),
                address: bad.clone(),
            });
        }
        Ok(list)
    }

    /// The JSON body a message is sent with.
    pub fn body_for(&self, msg: &Outbound) -> Result<Value> {
        let to: Vec<Value> = self
            .recipients(msg)?
            .into_iter()
            .map(|e| json!({ "email": e }))
            .collect();
        let r = &msg.rendered;
        let subject = r
            .subject
            .clone()
            .unwrap_or_else(|| r.text.lines().next().unwrap_or_default().to_owned());
        let mut content = vec![json!({ "type": "text/plain", "value": r.text })];
        if let Some(html) = r.body.as_ref().and_then(|b| b["html"].as_str()) {
            content.push(json!({ "type": "text/html", "value": html }));
        }
        let mut from = json!({ "email": self.s.from_email });
        if let Some(n) = &self.s.from_name {
            from["name"] = json!(n);
        }
        let mut body = json!({
            "personalizations": [{
                "to": to,
                "custom_args": {
                    "delivery_id": msg.delivery_id.to_string(),
                    "stream": msg.stream,
                    "record_key": msg.record_key,
                },
            }],
            "from": from,
            "subject": subject,
            "content": content,
        });
        if self.s.sandbox_mode {
            body["mail_settings"] = json!({ "sandbox_mode": { "enable": true } });
        }
        Ok(body)
    }
}

#[async_trait]
impl Sink for SendGridEmailSink {
    async fn send(&self, msg: &Outbound) -> Result<Receipt> {
        let body = self.body_for(msg)?;
        self.wait_for_budget().await?;
        let request = Request::post(&format!("{}/v3/mail/send", self.s.api_url))?.json(&body)?;
        let response = self.send_request(request).await?;
        self.note_budget(&response.headers);
        let status = response.status;
        let Some(id) = response
            .headers
            .get("x-message-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .filter(|s| !s.is_empty())
        else {
            // Accepted (sending again would duplicate it) but not correlatable: events for
            // it will find no delivery. Some mocks (Prism) answer like this.
            tracing::warn!(delivery = msg.delivery_id.0, %status, "SendGrid accepted the mail without X-Message-Id");
            return Ok(
                Receipt::new(format!("{NO_MESSAGE_ID_PREFIX}{}", msg.delivery_id))
                    .with_status("accepted"),
            );
        };
        Ok(Receipt::new(id).with_status("processed"))
    }

    fn rate_key(&self, _destination: &Destination) -> Option<String> {
        Some(RATE_KEY.to_owned())
    }

    fn render(&self, record: &Record, destination: &Destination) -> Rendered {
        let mut r = render_email(record, destination);
        if let Some(role) = Role::parse(&destination.address) {
            let found = resolve(record, role, Channel::Email, self.s.directory.as_deref());
            if let Some(b) = r.body.as_mut() {
                b["to"] = json!(found);
            }
        }
        r
    }

    /// Checks the API key with `GET /v3/scopes` (what the key may do): a key whose scopes
    /// do not include `mail.send` could send nothing, and fails the check. That endpoint is
    /// outside the Mail Send API: a service that does not serve it (404, 405: a proxy, a
    /// relay, an emulator of Mail Send) cannot tell, so the key is taken as it is; a
    /// refused key (401, 403) or an unreachable service is an error.
    async fn healthcheck(&self) -> Result<()> {
        match self
            .send_request(Request::get(&format!("{}/v3/scopes", self.s.api_url))?)
            .await
        {
            Ok(r) => {
                #[derive(serde::Deserialize)]
                struct Scopes {
                    scopes: Vec<String>,
                }
                match serde_json::from_slice::<Scopes>(&r.body) {
                    Ok(s) if !s.scopes.iter().any(|x| x == "mail.send") => {
                        Err(ml_core::Error::Auth {
                            class: ml_core::ErrorClass::Permanent,
                            message: format!(
                                "{self}: the API key's scopes do not include `mail.send`: \
                                 give the key Mail Send access ({} scopes granted)",
                                s.scopes.len()
                            ),
                        })
                    }
                    // Listed with `mail.send`, or an answer of another shape: not judged.
                    _ => Ok(()),
                }
            }
            Err(TwilioError::SendGrid {
                status: 404 | 405, ..
            }) => {
                tracing::info!(sink = %self, "SendGrid does not serve /v3/scopes here: the API key is checked by the first send");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// An address must look like one (checked here as before every send); a role is
    /// resolved from each record, so it cannot be checked ahead.
    async fn check_destination(&self, destination: &Destination) -> Result<DestinationCheck> {
        let address = destination.address.trim();
        if Role::parse(address).is_some() {
            return Ok(DestinationCheck::Unchecked(
                "a role: each record names its address".to_owned(),
            ));
        }
        if !looks_like_email(address) {
            return Err(TwilioError::InvalidEmail {
                system: self.system(),
                address: address.to_owned(),
            }
            .into());
        }
        Ok(DestinationCheck::Ready("an email address".to_owned()))
    }
}
