//! [`SendGridBuilder`]: the SendGrid email sink's configuration, from the environment or
//! setters, checked at `build()` with errors naming the key.

use std::fmt;
use std::sync::Arc;

use ml_core::clock::{Clock, SystemClock};
use ml_core::config::{ConfigKey, ConfigValues, Env, ProcessEnv};
use ml_core::http::ClientOptions;
use ml_core::{Error, Result};
use secrecy::SecretString;

use crate::email::{EmailSettings, SendGridEmailSink};
use crate::recipients::RecipientDirectory;

/// The default SendGrid base URL.
pub const DEFAULT_SENDGRID_API_URL: &str = "https://api.sendgrid.com";

ml_core::config_keys! {
    /// A SendGrid configuration key, named as its environment variable.
    pub enum SendGridConfigKey: prefix "SENDGRID_" {
        /// `SENDGRID_API_KEY`: the API key (`SG.…`).
        ApiKey = "SENDGRID_API_KEY" (secret),
        /// `SENDGRID_API_URL`: default `https://api.sendgrid.com` (EU:
        /// `https://api.eu.sendgrid.com`).
        ApiUrl = "SENDGRID_API_URL",
        /// `SENDGRID_FROM`: the sender address (a verified sender).
        From = "SENDGRID_FROM",
        /// `SENDGRID_FROM_NAME`: the sender's display name.
        FromName = "SENDGRID_FROM_NAME",
        /// `SENDGRID_SANDBOX_MODE`: `true` to validate without delivering.
        SandboxMode = "SENDGRID_SANDBOX_MODE",
    }
}

/// Builds a [`SendGridEmailSink`].
///
/// ```
/// use ml_twilio::SendGridBuilder;
///
/// let email = SendGridBuilder::new()
///     .with_api_key("SG.not-a-real-key")
///     .with_from("erp@example.com")
///     .build()?;
/// assert_eq!(email.to_string(), "SendGrid(erp@example.com)");
/// assert!(!format!("{email:?}").contains("not-a-real-key"));
/// # Ok::<(), ml_core::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct SendGridBuilder {
    values: ConfigValues<SendGridConfigKey>,
    directory: Option<Arc<dyn RecipientDirectory>>,
    client: ClientOptions,
    clock: Option<Arc<dyn Clock>>,
}

impl fmt::Debug for SendGridBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendGridBuilder")
            .field("values", &self.values)
            .finish_non_exhaustive()
    }
}

impl SendGridBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// The `SENDGRID_*` environment variables (unset and empty ones are skipped).
    pub fn from_env() -> Self {
        Self::from_env_with(&ProcessEnv)
    }

    /// Like [`from_env`](Self::from_env), reading any [`Env`].
    pub fn from_env_with(env: &impl Env) -> Self {
        Self {
            values: ConfigValues::from_env_with(env),
            ..Self::default()
        }
    }

    /// Sets a value by key (checked at `build`).
    pub fn with_config(mut self, key: SendGridConfigKey, value: impl Into<String>) -> Self {
        self.values.set(key, value);
        self
    }

    /// Sets a value by name (`SENDGRID_FROM` or `from`); an unknown name is an error.
    pub fn with_config_str(mut self, name: &str, value: impl Into<String>) -> Result<Self> {
        self.values.set_str(name, value)?;
        Ok(self)
    }

    /// The API key (`SG.…`).
    pub fn with_api_key(mut self, key: impl Into<SecretString>) -> Self {
        self.values
            .set_secret(SendGridConfigKey::ApiKey, key.into());
        self
    }

    /// The base URL (default [`DEFAULT_SENDGRID_API_URL`]).
    pub fn with_api_url(self, url: impl Into<String>) -> Self {
        self.with_config(SendGridConfigKey::ApiUrl, url)
    }

    /// The sender address (a verified sender in SendGrid).
    pub fn with_from(self, email: impl Into<String>) -> Self {
        self.with_config(SendGridConfigKey::From, email)
    }

    /// The sender's display name.
    pub fn with_from_name(self, name: impl Into<String>) -> Self {
        self.with_config(SendGridConfigKey::FromName, name)
    }

    /// Sets `mail_settings.sandbox_mode` (SendGrid validates but does not deliver).
    pub fn with_sandbox_mode(self, on: bool) -> Self {
        self.with_config(SendGridConfigKey::SandboxMode, on.to_string())
    }

    /// The directory that resolves symbolic recipients.
    pub fn with_directory(mut self, d: Arc<dyn RecipientDirectory>) -> Self {
        self.directory = Some(d);
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

    /// Builds the email sink. Errors name the key.
    pub fn build(&self) -> Result<SendGridEmailSink> {
        use SendGridConfigKey as K;
        let key = self
            .values
            .secret(K::ApiKey)
            .cloned()
            .ok_or_else(|| Error::config(K::ApiKey.env_name(), "missing"))?;
        let from = self
            .values
            .get(K::From)
            .ok_or_else(|| Error::config(K::From.env_name(), "missing"))?;
        if !from.contains('@') {
            return Err(Error::config(
                K::From.env_name(),
                "must be an email address",
            ));
        }
        let api_url = self
            .values
            .url(K::ApiUrl, Some(DEFAULT_SENDGRID_API_URL))?
            .map_or_else(
                || DEFAULT_SENDGRID_API_URL.to_owned(),
                |u| u.as_str().trim_end_matches('/').to_owned(),
            );
        Ok(SendGridEmailSink::new(EmailSettings {
            api_key: key,
            api_url,
            from_email: from.to_owned(),
            from_name: self.values.get(K::FromName).map(str::to_owned),
            sandbox_mode: self.values.bool(K::SandboxMode)?.unwrap_or(false),
            directory: self.directory.clone(),
            client: self.client.client()?,
            clock: self.clock.clone().unwrap_or_else(|| Arc::new(SystemClock)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use ml_core::config::MapEnv;

    use super::*;

    fn key_of(r: Result<SendGridEmailSink>) -> String {
        match r {
            Err(Error::Config { key, message }) => {
                assert!(!message.contains("hunter2"), "{message}");
                key
            }
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn shared_config_plumbing() {
        let err = SendGridBuilder::new()
            .with_config_str("SENDGRID_FORM", "x")
            .expect_err("unknown");
        assert!(
            matches!(&err, Error::Config { key, .. } if key == "SENDGRID_FORM"),
            "{err}"
        );
        let env = MapEnv::from([
            ("SENDGRID_API_KEY", "SG.hunter2"),
            ("SENDGRID_FROM", "erp@example.com"),
            ("SENDGRID_API_URL", "http://sendgrid.example.com"),
        ]);
        let b = SendGridBuilder::from_env_with(&env);
        assert!(!format!("{b:?}").contains("hunter2"));
        assert_eq!(key_of(b.build()), "SENDGRID_API_URL");
        let b = b
            .with_config_str("api_url", "http://127.0.0.1:9/")
            .expect("short name");
        let sink = b.build().expect("loopback http");
        assert!(!format!("{sink:?}").contains("hunter2"));
        assert_eq!(
            key_of(
                b.with_config_str("sandbox_mode", "maybe")
                    .expect("k")
                    .build()
            ),
            "SENDGRID_SANDBOX_MODE"
        );
    }
}
