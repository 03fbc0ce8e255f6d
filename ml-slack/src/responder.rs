//! Answering through a `response_url` (slash commands, interactions): POST JSON with
//! `text` / `blocks`, `response_type`, `replace_original`, `delete_original`.
//!
//! # SSRF
//! A `response_url` arrives in a request body. The receiver only hands off signed
//! requests, but a leaked signing secret, a bug upstream or a host that passes other
//! input here would otherwise make the connector POST to any URL it can reach (cloud
//! metadata endpoints, internal services). So the responder only calls URLs that start
//! with an allowed base: `https://hooks.slack.com/` by default (scheme, host and port
//! compared exactly; no user info). Tests and the sandbox add their own base with
//! [`Responder::with_allowed_base`]. The HTTP client follows redirects as configured in
//! `ml_core::http::ClientOptions` (reqwest's default policy); Slack's hooks are not
//! known to redirect.

use std::fmt;

use http::StatusCode;
use serde::Serialize;
use serde_json::Value;
use url::Url;

use crate::client::JSON_CONTENT_TYPE;
use crate::error::{SlackError, parse_error};

/// The only base allowed by default.
pub const SLACK_HOOKS_BASE: &str = "https://hooks.slack.com/";

/// Who sees the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseType {
    /// Only the user who ran the command (Slack's default).
    Ephemeral,
    /// Everyone in the channel.
    InChannel,
}

/// A message sent to a `response_url`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ResponseMessage {
    /// The text (fallback text with blocks).
    pub text: String,
    /// Blocks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocks: Option<Value>,
    /// Who sees it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_type: Option<ResponseType>,
    /// Replace the message the interaction came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replace_original: Option<bool>,
    /// Delete the message the interaction came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delete_original: Option<bool>,
    /// Reply in this thread.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_ts: Option<String>,
}

impl ResponseMessage {
    /// A text answer (ephemeral unless set otherwise).
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            blocks: None,
            response_type: None,
            replace_original: None,
            delete_original: None,
            thread_ts: None,
        }
    }

    /// Sets who sees it.
    pub fn with_response_type(mut self, t: ResponseType) -> Self {
        self.response_type = Some(t);
        self
    }

    /// Sets the blocks.
    pub fn with_blocks(mut self, blocks: Value) -> Self {
        self.blocks = Some(blocks);
        self
    }

    /// Replaces the original message.
    pub fn with_replace_original(mut self, on: bool) -> Self {
        self.replace_original = Some(on);
        self
    }

    /// Deletes the original message.
    pub fn with_delete_original(mut self, on: bool) -> Self {
        self.delete_original = Some(on);
        self
    }

    /// Replies in a thread.
    pub fn with_thread_ts(mut self, ts: impl Into<String>) -> Self {
        self.thread_ts = Some(ts.into());
        self
    }
}

/// Posts to `response_url`s, only under allowed bases.
#[derive(Clone)]
pub struct Responder {
    http: reqwest::Client,
    allowed: Vec<Url>,
}

impl fmt::Debug for Responder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responder")
            .field(
                "allowed",
                &self.allowed.iter().map(Url::as_str).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Responder {
    /// A responder over `http` (from `ClientOptions::client`) allowing only
    /// `https://hooks.slack.com/`.
    pub fn new(http: reqwest::Client) -> Self {
        Self {
            http,
            allowed: vec![Url::parse(SLACK_HOOKS_BASE).unwrap_or_else(|_| unreachable!())],
        }
    }

    /// Also allows URLs under `base` (the sandbox's hooks, `http://127.0.0.1:PORT/hooks/`).
    pub fn with_allowed_base(mut self, base: &str) -> Result<Self, SlackError> {
        let mut url =
            Url::parse(base).map_err(|e| SlackError::config("with_allowed_base", e.to_string()))?;
        if !url.path().ends_with('/') {
            let p = format!("{}/", url.path());
            url.set_path(&p);
        }
        self.allowed.push(url);
        Ok(self)
    }

    /// The URL if it may be called, or why not.
    pub fn check(&self, response_url: &str) -> Result<Url, SlackError> {
        let refuse = |why: &str| SlackError::ResponseUrlRefused(why.to_owned());
        let url = Url::parse(response_url.trim()).map_err(|_| refuse("not a URL"))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(refuse("user info is not allowed"));
        }
        let allowed = self.allowed.iter().any(|base| {
            url.scheme() == base.scheme()
                && url.host_str() == base.host_str()
                && url.port_or_known_default() == base.port_or_known_default()
                && url.path().starts_with(base.path())
        });
        if allowed {
            Ok(url)
        } else {
            Err(refuse(&format!(
                "`{}://{}` is not an allowed response_url host",
                url.scheme(),
                url.host_str().unwrap_or_default()
            )))
        }
    }

    /// POSTs `message` to `response_url`. Not idempotent (a second post is a second
    /// message): a timeout after sending is in doubt.
    pub async fn respond(
        &self,
        response_url: &str,
        message: &ResponseMessage,
    ) -> Result<(), SlackError> {
        const METHOD: &str = "response_url";
        let url = self.check(response_url)?;
        let body = serde_json::to_vec(message).map_err(|e| SlackError::InvalidResponse {
            method: METHOD.into(),
            message: e.to_string(),
            class: ml_core::ErrorClass::Permanent,
        })?;
        let response = self
            .http
            .post(url)
            .header(http::header::CONTENT_TYPE, JSON_CONTENT_TYPE)
            .body(body)
            .send()
            .await
            .map_err(|e| SlackError::transport(METHOD, e, false))?;
        let status =
            StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let headers = response.headers().clone();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| SlackError::transport(METHOD, e, false))?;
        if status.is_success() {
            // Slack answers `ok` as text or `{"ok":true}`; an `ok:false` body still fails.
            if let Ok(v) = serde_json::from_slice::<Value>(&bytes)
                && v.get("ok") == Some(&Value::Bool(false))
                && let Some(e) = parse_error(status, &headers, &bytes)
            {
                return Err(e.in_method(METHOD));
            }
            return Ok(());
        }
        Err(parse_error(status, &headers, &bytes)
            .unwrap_or_else(|| SlackError::Http {
                method: METHOD.into(),
                status: status.as_u16(),
                class: ml_core::ErrorClass::Permanent,
            })
            .in_method(METHOD))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn responder() -> Responder {
        Responder::new(
            ml_core::http::ClientOptions::default()
                .client()
                .expect("http"),
        )
    }

    #[test]
    fn only_slack_hooks_by_default() {
        let r = responder();
        assert!(r.check("https://hooks.slack.com/commands/T1/2/abc").is_ok());
        for bad in [
            "http://hooks.slack.com/commands/T1/2/abc",
            "https://hooks.slack.com.evil.example/commands",
            "https://evil.example/?https://hooks.slack.com/",
            "https://hooks.slack.com:8443/commands",
            "https://user:pw@hooks.slack.com/commands",
            "http://169.254.169.254/latest/meta-data",
            "http://127.0.0.1:8080/hooks/x",
            "file:///etc/passwd",
            "not a url",
        ] {
            assert!(
                matches!(r.check(bad), Err(SlackError::ResponseUrlRefused(_))),
                "{bad}"
            );
        }
        let r = r
            .with_allowed_base("http://127.0.0.1:8080/hooks")
            .expect("base");
        assert!(r.check("http://127.0.0.1:8080/hooks/x").is_ok());
        assert!(r.check("http://127.0.0.1:8080/other").is_err());
        assert!(r.check("http://127.0.0.1:8081/hooks/x").is_err());
    }

    #[test]
    fn message_shape() {
        let m = ResponseMessage::new("Approved INV-7")
            .with_response_type(ResponseType::InChannel)
            .with_replace_original(true);
        assert_eq!(
            serde_json::to_value(&m).expect("json"),
            serde_json::json!({"text":"Approved INV-7","response_type":"in_channel","replace_original":true})
        );
    }
}
