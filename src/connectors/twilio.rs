//! `connector = "twilio-sms"` and `connector = "sendgrid-email"` sinks; recipients by
//! alias (`recipients = { oncall = "+4915112345678" }`).

use super::rekey;
use std::sync::Arc;

use async_trait::async_trait;
use ml_core::Result;
use ml_core::config::ConfigKey as _;
use ml_core::config::assemble::{OpenedSink, SandboxReport, Section, SinkFactory};
use ml_core::config::pipeline::SinkConfig;
use ml_twilio::{SendGridBuilder, SendGridConfigKey, TwilioBuilder, TwilioConfigKey};

use super::under_applied;

pub(crate) struct SmsFactory;
pub(crate) struct EmailFactory;

#[cfg(feature = "sandbox")]
struct SmsSandbox(ml_sandbox::twilio::TwilioEmulator);

#[cfg(feature = "sandbox")]
impl SandboxReport for SmsSandbox {
    fn banner(&self) -> String {
        format!(
            "no credentials set: using the in-process Twilio sandbox at {}",
            self.0.base_url()
        )
    }

    fn report(&self) -> Vec<String> {
        self.0
            .messages()
            .into_iter()
            .map(|m| format!("[sandbox sms {}] {}", m.to, m.body))
            .collect()
    }
}

#[cfg(feature = "sandbox")]
struct EmailSandbox(ml_sandbox::sendgrid::SendGridEmulator);

#[cfg(feature = "sandbox")]
impl SandboxReport for EmailSandbox {
    fn banner(&self) -> String {
        format!(
            "no credentials set: using the in-process SendGrid sandbox at {}",
            self.0.base_url()
        )
    }

    fn report(&self) -> Vec<String> {
        self.0
            .mails()
            .into_iter()
            .map(|m| {
                format!(
                    "[sandbox email {}] {}",
                    m.body["personalizations"][0]["to"][0]["email"], m.body["subject"]
                )
            })
            .collect()
    }
}

#[async_trait]
impl SinkFactory for SmsFactory {
    fn connector(&self) -> &'static str {
        "twilio-sms"
    }

    async fn open(&self, section: Section<'_>, _: &SinkConfig) -> Result<OpenedSink> {
        #[allow(unused_mut)]
        let mut builder = TwilioBuilder::new();
        #[allow(unused_mut)]
        let mut sandbox: Option<Box<dyn SandboxReport>> = None;
        if section.sandbox {
            #[cfg(feature = "sandbox")]
            {
                let e = ml_sandbox::twilio::TwilioEmulator::start()
                    .await
                    .map_err(|e| {
                        ml_core::Error::config(format!("{}.sandbox", section.path), e.to_string())
                    })?;
                builder = builder
                    .with_account_sid(e.account_sid())
                    .with_auth_token(e.auth_token())
                    .with_from("+15005550006")
                    .with_api_url(e.base_url());
                sandbox = Some(Box::new(SmsSandbox(e)));
            }
            #[cfg(not(feature = "sandbox"))]
            return Err(super::no_sandbox(&section.path));
        }
        let mut applied = Vec::new();
        for s in section.resolved()? {
            if let Some(k) = TwilioConfigKey::from_name(&s.key) {
                applied.push((k.env_name(), s.path.clone()));
            }
            builder = builder
                .with_config_str(&s.key, s.value)
                .map_err(rekey(&s.path))?;
        }
        let sms = builder
            .build_sms()
            .map_err(under_applied(&section.path, &applied))?;
        Ok(OpenedSink {
            sink: Arc::new(sms),
            per_address: None,
            sandbox,
        })
    }
}

#[async_trait]
impl SinkFactory for EmailFactory {
    fn connector(&self) -> &'static str {
        "sendgrid-email"
    }

    async fn open(&self, section: Section<'_>, _: &SinkConfig) -> Result<OpenedSink> {
        #[allow(unused_mut)]
        let mut builder = SendGridBuilder::new();
        #[allow(unused_mut)]
        let mut sandbox: Option<Box<dyn SandboxReport>> = None;
        if section.sandbox {
            #[cfg(feature = "sandbox")]
            {
                let e = ml_sandbox::sendgrid::SendGridEmulator::start()
                    .await
                    .map_err(|e| {
                        ml_core::Error::config(format!("{}.sandbox", section.path), e.to_string())
                    })?;
                builder = builder
                    .with_api_key(e.api_key())
                    .with_from("erp@example.com")
                    .with_api_url(e.base_url());
                sandbox = Some(Box::new(EmailSandbox(e)));
            }
            #[cfg(not(feature = "sandbox"))]
            return Err(super::no_sandbox(&section.path));
        }
        let mut applied = Vec::new();
        for s in section.resolved()? {
            if let Some(k) = SendGridConfigKey::from_name(&s.key) {
                applied.push((k.env_name(), s.path.clone()));
            }
            builder = builder
                .with_config_str(&s.key, s.value)
                .map_err(rekey(&s.path))?;
        }
        let email = builder
            .build()
            .map_err(under_applied(&section.path, &applied))?;
        Ok(OpenedSink {
            sink: Arc::new(email),
            per_address: None,
            sandbox,
        })
    }
}
