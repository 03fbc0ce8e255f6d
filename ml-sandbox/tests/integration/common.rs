//! Shared helpers.

use std::time::Duration;

use ml_sandbox::slack::SlackEmulator;
use reqwest::header::HeaderMap;
use serde_json::Value;

pub(crate) fn client() -> reqwest::Client {
    ml_core::http::ClientOptions::default()
        .with_timeout(Duration::from_secs(10))
        .client()
        .unwrap()
}

/// An answer: status, headers, JSON body.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Value,
}

impl Answer {
    pub(crate) fn error(&self) -> &str {
        assert_eq!(self.body["ok"], false, "expected an error: {}", self.body);
        self.body["error"].as_str().unwrap()
    }

    pub(crate) fn ok(&self) -> &Value {
        assert_eq!(self.status, 200, "{}", self.body);
        assert_eq!(self.body["ok"], true, "expected ok: {}", self.body);
        &self.body
    }
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        headers,
        body,
    }
}

/// POST JSON (with charset) as the bot.
pub(crate) async fn call(slack: &SlackEmulator, method: &str, body: Value) -> Answer {
    call_as(slack, method, Some(&slack.bot_token()), body).await
}

/// POST JSON (with charset) with this bearer token, or none.
pub(crate) async fn call_as(
    slack: &SlackEmulator,
    method: &str,
    token: Option<&str>,
    body: Value,
) -> Answer {
    let mut request = client()
        .post(format!("{}{method}", slack.base_url()))
        .header("content-type", "application/json; charset=utf-8")
        .body(body.to_string());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    answer(request.send().await.unwrap()).await
}

/// POST a form with this bearer token, or none.
pub(crate) async fn call_form(
    slack: &SlackEmulator,
    method: &str,
    token: Option<&str>,
    fields: &[(&str, &str)],
) -> Answer {
    let mut request = client()
        .post(format!("{}{method}", slack.base_url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(fields).unwrap());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    answer(request.send().await.unwrap()).await
}

/// POST raw bytes with a content type, as the bot.
pub(crate) async fn call_raw(
    slack: &SlackEmulator,
    method: &str,
    content_type: Option<&str>,
    body: &str,
) -> Answer {
    let mut request = client()
        .post(format!("{}{method}", slack.base_url()))
        .bearer_auth(slack.bot_token())
        .body(body.to_owned());
    if let Some(ct) = content_type {
        request = request.header("content-type", ct);
    }
    answer(request.send().await.unwrap()).await
}

/// Posts `n` messages (`"0"`, `"1"`, ...) to `channel` with one client (building a client
/// loads the platform's certificates, which is slow in debug builds).
pub(crate) async fn post_many(slack: &SlackEmulator, channel: &str, n: usize) {
    let c = client();
    let url = format!("{}chat.postMessage", slack.base_url());
    for i in 0..n {
        let r: Value = c
            .post(&url)
            .bearer_auth(slack.bot_token())
            .json(&serde_json::json!({"channel": channel, "text": i.to_string()}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(r["ok"], true, "{r}");
    }
}

/// An emulator without the 1 msg/s limit (for tests that post a lot).
pub(crate) async fn unlimited() -> SlackEmulator {
    SlackEmulator::builder()
        .post_message_interval(None)
        .start()
        .await
        .unwrap()
}
