//! [`TwilioBuilder`]: configuration from the environment or setters, checked at build.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ml_core::auth::BasicCredentials;
use ml_core::clock::{Clock, SystemClock};
use ml_core::config::{ConfigKey, ConfigValues, Env, ProcessEnv, check_url, unknown_key};
use ml_core::http::ClientOptions;
use ml_core::{Error, Result};
use secrecy::{ExposeSecret as _, SecretString};

use crate::email::SendGridEmailSink;
use crate::phone::check_e164;
use crate::recipients::RecipientDirectory;
use crate::segments::LengthPolicy;
use crate::sendgrid_builder::SendGridBuilder;
use crate::sms::{ReconcileMatch, Sender, SmsSettings, TwilioSmsSink};

/// The default Twilio REST base URL.
pub const DEFAULT_TWILIO_API_URL: &str = "https://api.twilio.com";
pub use crate::sendgrid_builder::DEFAULT_SENDGRID_API_URL;

ml_core::config_keys! {
    /// A Twilio configuration key, named as its environment variable.
    pub enum TwilioConfigKey: prefix "TWILIO_" {
        /// `TWILIO_ACCOUNT_SID`: `AC` + 32 hex.
        AccountSid = "TWILIO_ACCOUNT_SID",
        /// `TWILIO_AUTH_TOKEN`: the Auth Token (Basic password; also verifies callbacks).
        AuthToken = "TWILIO_AUTH_TOKEN" (secret),
        /// `TWILIO_API_KEY_SID`: an API Key (`SK…`), instead of the Auth Token.
        ApiKeySid = "TWILIO_API_KEY_SID",
        /// `TWILIO_API_KEY_SECRET`: the API Key's secret.
        ApiKeySecret = "TWILIO_API_KEY_SECRET" (secret),
        /// `TWILIO_FROM`: the sender number, short code or alphanumeric id.
        From = "TWILIO_FROM",
        /// `TWILIO_MESSAGING_SERVICE_SID`: a Messaging Service (`MG…`) instead of `TWILIO_FROM`.
        MessagingServiceSid = "TWILIO_MESSAGING_SERVICE_SID",
        /// `TWILIO_API_URL`: default `https://api.twilio.com`.
        ApiUrl = "TWILIO_API_URL",
        /// `TWILIO_STATUS_CALLBACK_URL`: the public URL of the status receiver.
        StatusCallbackUrl = "TWILIO_STATUS_CALLBACK_URL",
    }
}

/// Builds [`TwilioSmsSink`] (and, for hosts that configure both in one place,
/// [`SendGridEmailSink`] through the [`SendGridBuilder`] it carries: prefer
/// [`SendGridBuilder`] itself).
///
/// ```
/// use ml_twilio::TwilioBuilder;
///
/// let sms = TwilioBuilder::new()
///     .with_account_sid("AC0123456789abcdef0123456789abcdef")
///     .with_auth_token("not-a-real-token")
///     .with_from("+15005550006")
///     .build_sms()
///     .unwrap();
/// assert_eq!(sms.to_string(), "Twilio(AC0123456789abcdef0123456789abcdef)");
/// assert!(!format!("{sms:?}").contains("not-a-real-token"));
/// ```
#[derive(Clone, Default)]
pub struct TwilioBuilder {
    account_sid: Option<String>,
    auth_token: Option<SecretString>,
    api_key_sid: Option<String>,
    api_key_secret: Option<SecretString>,
    from: Option<String>,
    messaging_service_sid: Option<String>,
    api_url: Option<String>,
    status_callback: Option<String>,
    sendgrid: SendGridBuilder,
    length: LengthPolicy,
    matching: ReconcileMatch,
    clock_skew: Option<Duration>,
    directory: Option<Arc<dyn RecipientDirectory>>,
    client: ClientOptions,
    clock: Option<Arc<dyn Clock>>,
}

impl fmt::Debug for TwilioBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioBuilder")
            .field("account_sid", &self.account_sid)
            .field("api_key_sid", &self.api_key_sid)
            .field("from", &self.from)
            .field("messaging_service_sid", &self.messaging_service_sid)
            .field("api_url", &self.api_url)
            .field("sendgrid", &self.sendgrid)
            .finish_non_exhaustive()
    }
}

fn nonempty(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

impl TwilioBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the `TWILIO_*` and `SENDGRID_*` environment variables (unset and empty ones
    /// are skipped). Same as `from_env_with(&ProcessEnv)`.
    pub fn from_env() -> Self {
        Self::from_env_with(&ProcessEnv)
    }

    /// Like [`from_env`](Self::from_env), reading any [`Env`] (tests, a config file).
    pub fn from_env_with(env: &impl Env) -> Self {
        let values = ConfigValues::<TwilioConfigKey>::from_env_with(env);
        let mut b = Self {
            sendgrid: SendGridBuilder::from_env_with(env),
            ..Self::new()
        };
        for &key in TwilioConfigKey::ALL {
            if let Some(v) = values.get(key) {
                b = b.with_config(key, v);
            } else if let Some(v) = values.secret(key) {
                b = b.with_config(key, v.expose_secret());
            }
        }
        b
    }

    /// Sets a value by key (checked at build).
    pub fn with_config(self, key: TwilioConfigKey, value: impl Into<String>) -> Self {
        let v = value.into();
        match key {
            TwilioConfigKey::AccountSid => self.with_account_sid(v),
            TwilioConfigKey::AuthToken => self.with_auth_token(v),
            TwilioConfigKey::ApiKeySid => Self {
                api_key_sid: Some(v),
                ..self
            },
            TwilioConfigKey::ApiKeySecret => Self {
                api_key_secret: Some(v.into()),
                ..self
            },
            TwilioConfigKey::From => self.with_from(v),
            TwilioConfigKey::MessagingServiceSid => self.with_messaging_service_sid(v),
            TwilioConfigKey::ApiUrl => self.with_api_url(v),
            TwilioConfigKey::StatusCallbackUrl => self.with_status_callback_url(v),
        }
    }

    /// Sets a value by name: a `TWILIO_*` key or its short form (`from`), or a
    /// `SENDGRID_*` key. An unknown name is an error naming it.
    pub fn with_config_str(mut self, name: &str, value: impl Into<String>) -> Result<Self> {
        if let Some(key) = <TwilioConfigKey as ConfigKey>::from_name(name) {
            return Ok(self.with_config(key, value));
        }
        if name.trim().to_ascii_uppercase().starts_with("SENDGRID_") {
            self.sendgrid = self.sendgrid.with_config_str(name, value)?;
            return Ok(self);
        }
        Err(unknown_key::<TwilioConfigKey>(name))
    }

    /// The Account SID (`AC` + 32 hex).
    pub fn with_account_sid(mut self, sid: impl Into<String>) -> Self {
        self.account_sid = Some(sid.into());
        self
    }

    /// Authenticates with the Account SID and Auth Token (also the key that verifies status
    /// callbacks).
    pub fn with_auth_token(mut self, token: impl Into<SecretString>) -> Self {
        self.auth_token = Some(token.into());
        self
    }

    /// Authenticates with an API Key (`SK…`) and its secret (Twilio's recommendation).
    /// Status callbacks are still signed with the Auth Token.
    pub fn with_api_key(mut self, sid: impl Into<String>, secret: impl Into<SecretString>) -> Self {
        self.api_key_sid = Some(sid.into());
        self.api_key_secret = Some(secret.into());
        self
    }

    /// Sends from this Twilio number / short code / alphanumeric id.
    pub fn with_from(mut self, from: impl Into<String>) -> Self {
        self.from = Some(from.into());
        self
    }

    /// Sends through this Messaging Service (`MG…`).
    pub fn with_messaging_service_sid(mut self, sid: impl Into<String>) -> Self {
        self.messaging_service_sid = Some(sid.into());
        self
    }

    /// The REST base URL (default [`DEFAULT_TWILIO_API_URL`]).
    pub fn with_api_url(mut self, url: impl Into<String>) -> Self {
        self.api_url = Some(url.into());
        self
    }

    /// The public URL of the host's status-callback receiver; the sink adds
    /// `delivery_id=<id>` to its query. The receiver must be configured with the same URL.
    pub fn with_status_callback_url(mut self, url: impl Into<String>) -> Self {
        self.status_callback = Some(url.into());
        self
    }

    /// What to do with long SMS bodies (default: truncate to 3 segments).
    pub fn with_length_policy(mut self, policy: LengthPolicy) -> Self {
        self.length = policy;
        self
    }

    /// How `reconcile` recognises a message (default: body with a `(ref <id>)` marker).
    pub fn with_reconcile_match(mut self, m: ReconcileMatch) -> Self {
        self.matching = m;
        self
    }

    /// Clock-skew allowance for `reconcile` (default 5 minutes).
    pub fn with_clock_skew(mut self, skew: Duration) -> Self {
        self.clock_skew = Some(skew);
        self
    }

    /// The directory that resolves symbolic recipients.
    pub fn with_directory(mut self, d: Arc<dyn RecipientDirectory>) -> Self {
        self.directory = Some(d);
        self
    }

    /// The SendGrid API key (`SG.…`).
    pub fn with_sendgrid_api_key(mut self, key: impl Into<SecretString>) -> Self {
        self.sendgrid = self.sendgrid.with_api_key(key);
        self
    }

    /// The SendGrid base URL (default [`DEFAULT_SENDGRID_API_URL`]; EU:
    /// `https://api.eu.sendgrid.com`).
    pub fn with_sendgrid_api_url(mut self, url: impl Into<String>) -> Self {
        self.sendgrid = self.sendgrid.with_api_url(url);
        self
    }

    /// The sender address (a verified sender in SendGrid).
    pub fn with_sendgrid_from(mut self, email: impl Into<String>) -> Self {
        self.sendgrid = self.sendgrid.with_from(email);
        self
    }

    /// The sender's display name.
    pub fn with_sendgrid_from_name(mut self, name: impl Into<String>) -> Self {
        self.sendgrid = self.sendgrid.with_from_name(name);
        self
    }

    /// Sets `mail_settings.sandbox_mode` (SendGrid validates but does not deliver).
    pub fn with_sendgrid_sandbox_mode(mut self, on: bool) -> Self {
        self.sendgrid = self.sendgrid.with_sandbox_mode(on);
        self
    }

    /// HTTP client options.
    pub fn with_client_options(mut self, o: ClientOptions) -> Self {
        self.client = o;
        self
    }

    /// The clock (default: the system clock).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone().unwrap_or_else(|| Arc::new(SystemClock))
    }

    fn url(v: Option<&String>, default: &str, key: &str) -> Result<String> {
        let raw = nonempty(v.cloned()).unwrap_or_else(|| default.to_owned());
        let parsed = check_url(key, &raw)?;
        Ok(parsed.as_str().trim_end_matches('/').to_owned())
    }

    /// The Auth Token, when set (the receiver's verification key).
    pub fn auth_token(&self) -> Option<&SecretString> {
        self.auth_token.as_ref()
    }

    /// Builds the SMS sink.
    pub fn build_sms(&self) -> Result<TwilioSmsSink> {
        let sid = nonempty(self.account_sid.clone())
            .ok_or_else(|| Error::config("TWILIO_ACCOUNT_SID", "missing"))?;
        let valid_sid = sid.len() == 34
            && sid.starts_with("AC")
            && sid[2..].bytes().all(|b| b.is_ascii_hexdigit());
        if !valid_sid {
            return Err(Error::config(
                "TWILIO_ACCOUNT_SID",
                "must be AC followed by 32 hex digits",
            ));
        }
        let credentials = match (&self.api_key_sid, &self.api_key_secret, &self.auth_token) {
            (Some(k), Some(s), _) => {
                if !k.starts_with("SK") {
                    return Err(Error::config("TWILIO_API_KEY_SID", "must start with SK"));
                }
                BasicCredentials::new(k.clone(), s.clone())
            }
            (Some(_), None, _) => {
                return Err(Error::config(
                    "TWILIO_API_KEY_SECRET",
                    "missing (TWILIO_API_KEY_SID is set)",
                ));
            }
            (None, _, Some(t)) if !t.expose_secret().is_empty() => {
                BasicCredentials::new(sid.clone(), t.clone())
            }
            _ => {
                return Err(Error::config(
                    "TWILIO_AUTH_TOKEN",
                    "missing (or set TWILIO_API_KEY_SID + TWILIO_API_KEY_SECRET)",
                ));
            }
        };
        let sender = match (
            nonempty(self.from.clone()),
            nonempty(self.messaging_service_sid.clone()),
        ) {
            (Some(_), Some(_)) => {
                return Err(Error::config(
                    "TWILIO_FROM",
                    "set TWILIO_FROM or TWILIO_MESSAGING_SERVICE_SID, not both",
                ));
            }
            (Some(f), None) => {
                let alnum = !f.starts_with('+')
                    && (1..=11).contains(&f.len())
                    && f.chars().all(|c| c.is_ascii_alphanumeric() || c == ' ');
                let short_code =
                    (5..=6).contains(&f.len()) && f.bytes().all(|b| b.is_ascii_digit());
                if !(alnum || short_code) {
                    check_e164(&f).map_err(|r| Error::config("TWILIO_FROM", r))?;
                }
                Sender::From(f)
            }
            (None, Some(m)) => {
                if !m.starts_with("MG") {
                    return Err(Error::config(
                        "TWILIO_MESSAGING_SERVICE_SID",
                        "must start with MG",
                    ));
                }
                Sender::MessagingService(m)
            }
            (None, None) => {
                return Err(Error::config(
                    "TWILIO_FROM",
                    "missing (or set TWILIO_MESSAGING_SERVICE_SID)",
                ));
            }
        };
        let api_url = Self::url(
            self.api_url.as_ref(),
            DEFAULT_TWILIO_API_URL,
            "TWILIO_API_URL",
        )?;
        let status_callback = match nonempty(self.status_callback.clone()) {
            Some(u) => {
                let parsed = url::Url::parse(&u)
                    .map_err(|e| Error::config("TWILIO_STATUS_CALLBACK_URL", e.to_string()))?;
                if parsed.host_str().is_some_and(|h| h.contains('_')) {
                    return Err(Error::config(
                        "TWILIO_STATUS_CALLBACK_URL",
                        "Twilio refuses host names with underscores",
                    ));
                }
                Some(u)
            }
            None => None,
        };
        match self.length {
            LengthPolicy::Truncate { max_segments: 0 }
            | LengthPolicy::Refuse { max_segments: 0 } => {
                return Err(Error::config(
                    "with_length_policy",
                    "max_segments must be at least 1",
                ));
            }
            _ => {}
        }
        Ok(TwilioSmsSink::new(SmsSettings {
            account_sid: sid,
            credentials,
            sender,
            api_url,
            status_callback,
            length: self.length,
            matching: self.matching,
            clock_skew: self.clock_skew.unwrap_or(Duration::from_secs(300)),
            page_size: 100,
            max_pages: 20,
            directory: self.directory.clone(),
            client: self.client.client()?,
            clock: self.clock(),
        }))
    }

    /// Builds the email sink (same as [`SendGridBuilder::build`] with the SendGrid
    /// settings given to this builder, its directory, client options and clock).
    pub fn build_email(&self) -> Result<SendGridEmailSink> {
        let mut sg = self
            .sendgrid
            .clone()
            .with_client_options(self.client.clone());
        if let Some(d) = &self.directory {
            sg = sg.with_directory(d.clone());
        }
        if let Some(c) = &self.clock {
            sg = sg.with_clock(c.clone());
        }
        sg.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SID: &str = "AC0123456789abcdef0123456789abcdef";

    fn env(pairs: &'static [(&'static str, &'static str)]) -> TwilioBuilder {
        let mut env = ml_core::config::MapEnv::new();
        for (k, v) in pairs {
            env.set(*k, *v);
        }
        TwilioBuilder::from_env_with(&env)
    }

    #[test]
    fn shared_config_plumbing() {
        let err = TwilioBuilder::new()
            .with_config_str("TWILIO_FORM", "+15005550006")
            .expect_err("unknown");
        assert!(
            matches!(&err, Error::Config { key, .. } if key == "TWILIO_FORM"),
            "{err}"
        );
        let b = env(&[
            ("TWILIO_ACCOUNT_SID", SID),
            ("TWILIO_AUTH_TOKEN", "hunter2"),
            ("TWILIO_FROM", "+15005550006"),
            ("TWILIO_API_URL", "http://api.twilio.example.com"),
        ]);
        assert!(!format!("{b:?}").contains("hunter2"));
        match b.build_sms() {
            Err(Error::Config { key, message }) => {
                assert_eq!(key, "TWILIO_API_URL");
                assert!(!message.contains("hunter2"));
            }
            other => panic!("{other:?}"),
        }
        let b = b
            .with_config_str("api_url", "http://127.0.0.1:9")
            .expect("short name")
            .with_config_str("SENDGRID_FROM", "erp@example.com")
            .expect("sendgrid key");
        assert!(b.build_sms().is_ok());
        assert!(
            TwilioBuilder::new()
                .with_config_str("SENDGRID_NOPE", "x")
                .is_err()
        );
    }

    #[test]
    fn from_env_and_errors_name_the_key() {
        let b = env(&[
            ("TWILIO_ACCOUNT_SID", SID),
            ("TWILIO_API_KEY_SID", "SK0123"),
            ("TWILIO_API_KEY_SECRET", "keysecret"),
            ("TWILIO_MESSAGING_SERVICE_SID", "MG0123"),
            ("SENDGRID_API_KEY", "SG.secret"),
            ("SENDGRID_FROM", "erp@example.com"),
        ]);
        let sms = b.build_sms().expect("sms");
        let email = b.build_email().expect("email");
        let shown = format!("{sms} {sms:?} {email} {email:?} {b:?}");
        for secret in ["keysecret", "SG.secret"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        let err = |b: TwilioBuilder| match b.build_sms() {
            Err(Error::Config { key, .. }) => key,
            other => panic!("{other:?}"),
        };
        assert_eq!(err(env(&[])), "TWILIO_ACCOUNT_SID");
        assert_eq!(
            err(env(&[("TWILIO_ACCOUNT_SID", "AC1")])),
            "TWILIO_ACCOUNT_SID"
        );
        assert_eq!(
            err(env(&[("TWILIO_ACCOUNT_SID", SID)])),
            "TWILIO_AUTH_TOKEN"
        );
        assert_eq!(
            err(env(&[
                ("TWILIO_ACCOUNT_SID", SID),
                ("TWILIO_AUTH_TOKEN", "t")
            ])),
            "TWILIO_FROM"
        );
        assert_eq!(
            err(env(&[
                ("TWILIO_ACCOUNT_SID", SID),
                ("TWILIO_AUTH_TOKEN", "t"),
                ("TWILIO_FROM", "555-1234")
            ])),
            "TWILIO_FROM"
        );
        assert_eq!(
            err(env(&[
                ("TWILIO_ACCOUNT_SID", SID),
                ("TWILIO_AUTH_TOKEN", "t"),
                ("TWILIO_FROM", "+15005550006"),
                ("TWILIO_API_URL", "ftp://x")
            ])),
            "TWILIO_API_URL"
        );
        assert!(
            env(&[
                ("TWILIO_ACCOUNT_SID", SID),
                ("TWILIO_AUTH_TOKEN", "t"),
                ("TWILIO_FROM", "ACME")
            ])
            .build_sms()
            .is_ok()
        );
        match env(&[("SENDGRID_API_KEY", "SG.x")]).build_email() {
            Err(Error::Config { key, .. }) => assert_eq!(key, "SENDGRID_FROM"),
            other => panic!("{other:?}"),
        }
    }
}
