//! "Slack calling us": signed Events API deliveries, slash commands and interactivity
//! payloads, built the way Slack sends them, POSTed to a receiver URL; and the
//! `response_url` endpoint that records what the receiver posts back.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, KeyInit as _, Mac as _};
use serde_json::{Map, Value, json};
use sha2::Sha256;

use super::state::{ResponseUrlPost, ResponseUrlState, SlackState, StoredMessage};
use super::web_api::now_ts;
use crate::error::{Result, SandboxError};

/// How many times a `response_url` can be used.
pub(crate) const RESPONSE_URL_USES: u32 = 5;
/// How long a `response_url` stays usable.
pub(crate) const RESPONSE_URL_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// Slack's request signature: `v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{body}` keyed with
/// the signing secret.
///
/// ```
/// let sig = ml_sandbox::slack::sign("8f742231b10e8888abcd99yyyzzz85a5", 1_531_420_618, b"token=xyzz0WbapA4vBCDEFasx0q6G");
/// assert!(sig.starts_with("v0=") && sig.len() == 67);
/// ```
pub fn sign(signing_secret: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length.
    let mut mac = <Hmac<Sha256>>::new_from_slice(signing_secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// Overrides for one signed delivery, to test forged, stale and retried requests.
#[derive(Debug, Clone, Default)]
pub struct SendOptions {
    timestamp: Option<i64>,
    signature: Option<String>,
    unsigned: bool,
    retry: Option<(u32, String)>,
}

impl SendOptions {
    /// Sends this `X-Slack-Request-Timestamp` (unix seconds) and signs with it, instead of
    /// the emulator clock's now (a stale timestamp tests the replay window).
    pub fn timestamp(mut self, unix_seconds: i64) -> Self {
        self.timestamp = Some(unix_seconds);
        self
    }

    /// Sends this `X-Slack-Signature` instead of the correct one.
    pub fn signature(mut self, signature: impl Into<String>) -> Self {
        self.signature = Some(signature.into());
        self
    }

    /// Sends neither `X-Slack-Signature` nor `X-Slack-Request-Timestamp`.
    pub fn unsigned(mut self) -> Self {
        self.unsigned = true;
        self
    }

    /// Marks the delivery as Slack's retry number `num` (1..=3) with `reason`
    /// (`http_timeout`, `http_error`, `connection_failed`, ...): headers
    /// `X-Slack-Retry-Num` and `X-Slack-Retry-Reason`.
    pub fn retry(mut self, num: u32, reason: impl Into<String>) -> Self {
        self.retry = Some((num, reason.into()));
        self
    }
}

/// The receiver's answer.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CallerResponse {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: reqwest::header::HeaderMap,
    /// Response body as text.
    pub body: String,
}

impl CallerResponse {
    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok()
    }

    /// Whether the status is 2xx (what Slack counts as a successful delivery).
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// A slash command invocation. Defaults: user `U00HUMAN01` (`ada`) in `#general`.
#[derive(Debug, Clone)]
pub struct SlashCommand {
    command: String,
    text: String,
    user_id: String,
    user_name: String,
    channel: Option<String>,
}

impl SlashCommand {
    /// `/command text`.
    pub fn new(command: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            command: command.into(),
            text: text.into(),
            user_id: super::DEFAULT_INSTALLER.to_owned(),
            user_name: "ada".to_owned(),
            channel: None,
        }
    }

    /// Who typed it.
    pub fn user(mut self, user_id: impl Into<String>) -> Self {
        self.user_id = user_id.into();
        self
    }

    /// The (deprecated) `user_name` field.
    pub fn user_name(mut self, user_name: impl Into<String>) -> Self {
        self.user_name = user_name.into();
        self
    }

    /// Where it was typed: a channel id or name known to the emulator (or any id).
    pub fn channel(mut self, channel: impl Into<String>) -> Self {
        self.channel = Some(channel.into());
        self
    }

    /// The form fields Slack sends, in Slack's order; mints a `response_url` and a
    /// `trigger_id`.
    pub(crate) fn fields(&self, state: &SlackState) -> Vec<(String, String)> {
        let (channel_id, channel_name) = resolve_channel(state, self.channel.as_deref());
        let response_url = mint_response_url(state, &channel_id);
        let trigger_id = mint_trigger_id(state);
        let id = &state.identity;
        let mut fields = vec![
            ("token", id.verification_token.clone()),
            ("team_id", id.team_id.clone()),
            ("team_domain", id.team_domain.clone()),
        ];
        if let Some(enterprise) = &id.enterprise_id {
            fields.push(("enterprise_id", enterprise.clone()));
            fields.push(("enterprise_name", "Sandbox Enterprise".to_owned()));
        }
        fields.extend([
            ("channel_id", channel_id),
            ("channel_name", channel_name),
            ("user_id", self.user_id.clone()),
            ("user_name", self.user_name.clone()),
            ("command", self.command.clone()),
            ("text", self.text.clone()),
            ("api_app_id", id.app_id.clone()),
            ("is_enterprise_install", "false".to_owned()),
            ("response_url", response_url),
            ("trigger_id", trigger_id),
        ]);
        fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }
}

/// A `block_actions` interaction (a button click). Defaults: user `U00HUMAN01` in
/// `#general`, block id `actions`, a message ts of the channel's latest message if any.
#[derive(Debug, Clone)]
pub struct BlockActions {
    action_id: String,
    value: String,
    block_id: String,
    user_id: String,
    user_name: String,
    channel: Option<String>,
    message_ts: Option<String>,
}

impl BlockActions {
    /// A click on the button `action_id` whose `value` is `value`.
    pub fn new(action_id: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            action_id: action_id.into(),
            value: value.into(),
            block_id: "actions".to_owned(),
            user_id: super::DEFAULT_INSTALLER.to_owned(),
            user_name: "ada".to_owned(),
            channel: None,
            message_ts: None,
        }
    }

    /// The button's `block_id`.
    pub fn block_id(mut self, block_id: impl Into<String>) -> Self {
        self.block_id = block_id.into();
        self
    }

    /// Who clicked.
    pub fn user(mut self, user_id: impl Into<String>) -> Self {
        self.user_id = user_id.into();
        self
    }

    /// The channel of the message (id or name).
    pub fn channel(mut self, channel: impl Into<String>) -> Self {
        self.channel = Some(channel.into());
        self
    }

    /// The ts of the message holding the button (its stored version is embedded).
    pub fn message_ts(mut self, ts: impl Into<String>) -> Self {
        self.message_ts = Some(ts.into());
        self
    }

    /// The JSON payload Slack sends; mints a `response_url` and a `trigger_id`.
    pub(crate) fn payload(&self, state: &SlackState) -> Value {
        let (channel_id, channel_name) = resolve_channel(state, self.channel.as_deref());
        let response_url = mint_response_url(state, &channel_id);
        let trigger_id = mint_trigger_id(state);
        let id = &state.identity;
        let stored: Option<StoredMessage> = {
            let inner = state.lock();
            let list = inner.messages.get(&channel_id);
            match &self.message_ts {
                Some(ts) => list.and_then(|l| l.iter().find(|m| &m.ts == ts).cloned()),
                None => list.and_then(|l| l.last().cloned()),
            }
        };
        let message_ts = self
            .message_ts
            .clone()
            .or_else(|| stored.as_ref().map(|m| m.ts.clone()))
            .unwrap_or_else(|| now_ts(state));
        let message = stored.map_or_else(
            || json!({"type": "message", "ts": message_ts, "text": ""}),
            |m| m.to_json(id, false, &[]),
        );
        json!({
            "type": "block_actions",
            "user": {
                "id": self.user_id,
                "username": self.user_name,
                "name": self.user_name,
                "team_id": id.team_id,
            },
            "api_app_id": id.app_id,
            "token": id.verification_token,
            "container": {
                "type": "message",
                "message_ts": message_ts,
                "channel_id": channel_id,
                "is_ephemeral": false,
            },
            "trigger_id": trigger_id,
            "team": {"id": id.team_id, "domain": id.team_domain},
            "enterprise": Value::Null,
            "is_enterprise_install": false,
            "channel": {"id": channel_id, "name": channel_name},
            "message": message,
            "state": {"values": {}},
            "response_url": response_url,
            "actions": [{
                "action_id": self.action_id,
                "block_id": self.block_id,
                "text": {"type": "plain_text", "text": self.action_id, "emoji": true},
                "value": self.value,
                "type": "button",
                "action_ts": now_ts(state),
            }],
        })
    }
}

/// The channel's id and name: a known channel by id or name, else the argument as an id.
fn resolve_channel(state: &SlackState, channel: Option<&str>) -> (String, String) {
    let inner = state.lock();
    let wanted = channel.unwrap_or(super::GENERAL_ID);
    match inner.find_channel(wanted) {
        Some(c) => (c.id.clone(), c.name.clone()),
        None => (wanted.to_owned(), "unknown".to_owned()),
    }
}

fn mint_response_url(state: &SlackState, channel_id: &str) -> String {
    let now = state.now();
    let mut inner = state.lock();
    let path = format!(
        "commands/{}/{}/{}",
        state.identity.team_id,
        inner.digits(13),
        inner.token_part(24)
    );
    inner.response_urls.insert(
        path.clone(),
        ResponseUrlState {
            channel: channel_id.to_owned(),
            created: now,
            uses: 0,
        },
    );
    format!("{}{path}", state.identity.root_url)
}

fn mint_trigger_id(state: &SlackState) -> String {
    let mut inner = state.lock();
    format!(
        "{}.{}.{}",
        inner.digits(13),
        inner.digits(13),
        inner.hex(32)
    )
}

/// The `event_callback` wrapper Slack puts around `event`.
pub(crate) fn event_envelope(state: &SlackState, mut event: Value) -> Value {
    let now = state.now();
    if let Value::Object(map) = &mut event
        && !map.contains_key("event_ts")
    {
        map.insert("event_ts".into(), json!(now_ts(state)));
    }
    let (event_id, context) = {
        let mut inner = state.lock();
        (inner.new_id("Ev"), format!("4-{}", inner.token_part(40)))
    };
    let id = &state.identity;
    json!({
        "token": id.verification_token,
        "team_id": id.team_id,
        "context_team_id": id.team_id,
        "context_enterprise_id": id.enterprise_id,
        "api_app_id": id.app_id,
        "event": event,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": now.as_second(),
        "authorizations": [{
            "enterprise_id": id.enterprise_id,
            "team_id": id.team_id,
            "user_id": id.bot_user_id,
            "is_bot": true,
            "is_enterprise_install": false,
        }],
        "authed_users": [id.bot_user_id],
        "is_ext_shared_channel": false,
        "event_context": context,
    })
}

/// Sends signed requests to a receiver the way Slack does. Get one from
/// [`SlackEmulator::caller`](super::SlackEmulator::caller).
#[derive(Debug, Clone)]
pub struct SlackCaller {
    pub(crate) state: Arc<SlackState>,
    pub(crate) client: reqwest::Client,
}

impl SlackCaller {
    /// The `event_callback` wrapper of `event` (fresh `event_id`, `event_time` now, and
    /// `event.event_ts` filled in when missing). Send it twice to test deduplication.
    pub fn event_envelope(&self, event: Value) -> Value {
        event_envelope(&self.state, event)
    }

    /// Wraps `event` in an `event_callback` envelope and POSTs it, signed.
    pub async fn send_event(&self, url: &str, event: Value) -> Result<CallerResponse> {
        let envelope = self.event_envelope(event);
        self.send_envelope(url, &envelope, &SendOptions::default())
            .await
    }

    /// POSTs an Events API body (an envelope from [`event_envelope`](Self::event_envelope),
    /// or any JSON), signed per `options`.
    pub async fn send_envelope(
        &self,
        url: &str,
        envelope: &Value,
        options: &SendOptions,
    ) -> Result<CallerResponse> {
        self.send_raw(
            url,
            "application/json",
            envelope.to_string().into_bytes(),
            options,
        )
        .await
    }

    /// POSTs a signed `url_verification` request; returns the answer and the challenge the
    /// receiver must echo.
    pub async fn send_url_verification(&self, url: &str) -> Result<(CallerResponse, String)> {
        let challenge = self.state.lock().token_part(48);
        let body = json!({
            "token": self.state.identity.verification_token,
            "challenge": challenge,
            "type": "url_verification",
        });
        let response = self
            .send_envelope(url, &body, &SendOptions::default())
            .await?;
        Ok((response, challenge))
    }

    /// The form body of a slash command (mints its `response_url` and `trigger_id`).
    pub fn slash_command_body(&self, command: &SlashCommand) -> String {
        serde_urlencoded::to_string(command.fields(&self.state)).unwrap_or_default()
    }

    /// POSTs a signed slash command (form-encoded, all of Slack's fields).
    pub async fn send_slash_command(
        &self,
        url: &str,
        command: &SlashCommand,
    ) -> Result<CallerResponse> {
        self.send_slash_command_with(url, command, &SendOptions::default())
            .await
    }

    /// [`send_slash_command`](Self::send_slash_command) with overrides.
    pub async fn send_slash_command_with(
        &self,
        url: &str,
        command: &SlashCommand,
        options: &SendOptions,
    ) -> Result<CallerResponse> {
        let body = self.slash_command_body(command);
        self.send_raw(
            url,
            "application/x-www-form-urlencoded",
            body.into_bytes(),
            options,
        )
        .await
    }

    /// The JSON payload of a `block_actions` interaction (mints `response_url` and
    /// `trigger_id`).
    pub fn block_actions_payload(&self, actions: &BlockActions) -> Value {
        actions.payload(&self.state)
    }

    /// POSTs a signed `block_actions` interaction: form field `payload` = the JSON.
    pub async fn send_block_actions(
        &self,
        url: &str,
        actions: &BlockActions,
    ) -> Result<CallerResponse> {
        let payload = self.block_actions_payload(actions);
        self.send_interaction(url, &payload, &SendOptions::default())
            .await
    }

    /// POSTs any interaction payload as Slack does (form field `payload`), signed per
    /// `options`.
    pub async fn send_interaction(
        &self,
        url: &str,
        payload: &Value,
        options: &SendOptions,
    ) -> Result<CallerResponse> {
        let body =
            serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap_or_default();
        self.send_raw(
            url,
            "application/x-www-form-urlencoded",
            body.into_bytes(),
            options,
        )
        .await
    }

    /// POSTs `body` with `content_type`, signed with the emulator's signing secret and
    /// timestamped with its clock, unless `options` say otherwise.
    pub async fn send_raw(
        &self,
        url: &str,
        content_type: &str,
        body: Vec<u8>,
        options: &SendOptions,
    ) -> Result<CallerResponse> {
        let timestamp = options
            .timestamp
            .unwrap_or_else(|| self.state.now().as_second());
        let mut request = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .header(
                reqwest::header::USER_AGENT,
                "Slackbot 1.0 (+https://api.slack.com/robots)",
            );
        if !options.unsigned {
            let signature = options
                .signature
                .clone()
                .unwrap_or_else(|| sign(&self.state.identity.signing_secret, timestamp, &body));
            request = request
                .header("X-Slack-Request-Timestamp", timestamp.to_string())
                .header("X-Slack-Signature", signature);
        }
        if let Some((num, reason)) = &options.retry {
            request = request
                .header("X-Slack-Retry-Num", num.to_string())
                .header("X-Slack-Retry-Reason", reason.as_str());
        }
        let to_error = |source| SandboxError::Request {
            url: url.to_owned(),
            source,
        };
        let response = request.body(body).send().await.map_err(to_error)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.text().await.map_err(to_error)?;
        Ok(CallerResponse {
            status,
            headers,
            body,
        })
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, Body::from(body.to_string())).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

/// `POST /commands/{team}/{id}/{secret}`: a `response_url`. Records the post; an
/// `in_channel` response (not replacing or deleting the original) is stored as a message of
/// the app in the channel.
pub(crate) async fn response_url(
    State(state): State<Arc<SlackState>>,
    Path((team, id, secret)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let key = format!("commands/{team}/{id}/{secret}");
    let now = state.now();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let parsed: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    let mut inner = state.lock();
    let Some(url_state) = inner.response_urls.get_mut(&key) else {
        return json_response(
            StatusCode::NOT_FOUND,
            &json!({"ok": false, "error": "invalid_url"}),
        );
    };
    if ml_core::clock::until(url_state.created, now) > RESPONSE_URL_LIFETIME {
        return json_response(
            StatusCode::NOT_FOUND,
            &json!({"ok": false, "error": "expired_url"}),
        );
    }
    if url_state.uses >= RESPONSE_URL_USES {
        return json_response(
            StatusCode::NOT_FOUND,
            &json!({"ok": false, "error": "used_url"}),
        );
    }
    url_state.uses += 1;
    let channel = url_state.channel.clone();
    inner.response_posts.push(ResponseUrlPost {
        url: format!("{}{key}", state.identity.root_url),
        content_type,
        body: parsed.clone(),
    });
    let in_channel = parsed.get("response_type").and_then(Value::as_str) == Some("in_channel");
    let edits_original = ["replace_original", "delete_original"]
        .iter()
        .any(|k| parsed.get(*k).is_some_and(|v| v == true || v == "true"));
    if in_channel && !edits_original && inner.find_channel(&channel).is_some() {
        let ts = inner.next_ts(now);
        let args: Map<String, Value> = parsed.as_object().cloned().unwrap_or_default();
        inner.store(StoredMessage {
            channel,
            ts,
            text: parsed
                .get("text")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            blocks: parsed.get("blocks").cloned(),
            attachments: parsed.get("attachments").cloned(),
            metadata: None,
            markdown_text: None,
            thread_ts: None,
            reply_broadcast: false,
            user: state.identity.bot_user_id.clone(),
            bot_id: Some(state.identity.bot_id.clone()),
            args,
            edits: Vec::new(),
        });
        drop(inner);
        state.notify_messages();
    }
    json_response(StatusCode::OK, &json!({"ok": true}))
}
