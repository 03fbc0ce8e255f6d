//! A small Slack Web API client: the calls the sink, `reconcile` and `healthcheck` need,
//! with request structs (required fields in `new`, optional ones as `with_*`), bearer
//! tokens (static or rotating), and every failure classified by [`crate::error::parse_error`].
//!
//! Requests go as JSON with `Content-Type: application/json; charset=utf-8` (POST) or as a
//! query string (GET reads), always with `Authorization: Bearer …`.

use std::fmt;
use std::sync::Arc;

use http::{HeaderMap, Method, StatusCode};
use jiff::Timestamp;
use ml_core::auth::{Credentials, TokenCache};
use ml_core::clock::Clock;
use ml_core::http::{ApiClient, AuthFailure, ErrorModel, Request, TransportError};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use crate::error::{SlackError, parse_error_at};
use crate::ids::{ChannelId, TeamId, Ts, UserId};

/// The JSON content type Slack wants (without the charset it warns `missing_charset`).
pub const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// Where the bot token comes from.
#[derive(Clone)]
pub enum BotToken {
    /// A token that does not expire (`xoxb-…`).
    Static(SecretString),
    /// Tokens from a cache (token rotation: `xoxe.xoxb-…`, refreshed ahead of expiry and
    /// once more after a `token_expired` answer).
    Cache(Arc<TokenCache>),
}

impl fmt::Debug for BotToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Static(_) => f.write_str("Static(<redacted>)"),
            Self::Cache(c) => f.debug_tuple("Cache").field(c).finish(),
        }
    }
}

impl BotToken {
    /// The credentials ml-core's `ApiClient` sends.
    pub(crate) fn credentials(&self) -> Credentials {
        match self {
            Self::Static(s) => Credentials::Bearer(s.clone()),
            Self::Cache(c) => Credentials::Tokens(Arc::clone(c)),
        }
    }
}

/// Message metadata (`{"event_type": …, "event_payload": {…}}`). Visible to anyone in the
/// workspace who can read the message: never put a secret in it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MessageMetadata {
    /// The event type (`ml_connector_delivery`).
    pub event_type: String,
    /// The payload.
    pub event_payload: Value,
}

/// A `chat.postMessage` request.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PostMessage {
    /// The channel id (or name).
    pub channel: String,
    /// The text, or the fallback text when blocks are sent.
    pub text: String,
    /// Block Kit blocks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocks: Option<Value>,
    /// Reply in the thread of this parent message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_ts: Option<Ts>,
    /// Also show a thread reply in the channel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_broadcast: Option<bool>,
    /// Message metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<MessageMetadata>,
    /// Unfurl text links.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unfurl_links: Option<bool>,
    /// Unfurl media links.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unfurl_media: Option<bool>,
}

impl PostMessage {
    /// A message to `channel` with `text`.
    pub fn new(channel: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            channel: channel.into(),
            text: text.into(),
            blocks: None,
            thread_ts: None,
            reply_broadcast: None,
            metadata: None,
            unfurl_links: None,
            unfurl_media: None,
        }
    }

    /// Sets the blocks.
    pub fn with_blocks(mut self, blocks: Value) -> Self {
        self.blocks = Some(blocks);
        self
    }

    /// Replies in a thread.
    pub fn with_thread_ts(mut self, ts: Ts) -> Self {
        self.thread_ts = Some(ts);
        self
    }

    /// Shows a thread reply in the channel too.
    pub fn with_reply_broadcast(mut self, on: bool) -> Self {
        self.reply_broadcast = Some(on);
        self
    }

    /// Sets the metadata.
    pub fn with_metadata(mut self, metadata: MessageMetadata) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// Turns link and media unfurling on or off.
    pub fn with_unfurl(mut self, on: bool) -> Self {
        self.unfurl_links = Some(on);
        self.unfurl_media = Some(on);
        self
    }
}

/// A `chat.update` request.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UpdateMessage {
    /// The channel id.
    pub channel: String,
    /// The message to edit.
    pub ts: Ts,
    /// The new text.
    pub text: String,
    /// The new blocks (`None` keeps the old ones).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocks: Option<Value>,
    /// New metadata (`None` keeps the old one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<MessageMetadata>,
}

impl UpdateMessage {
    /// An edit of message `ts` in `channel`.
    pub fn new(channel: impl Into<String>, ts: Ts, text: impl Into<String>) -> Self {
        Self {
            channel: channel.into(),
            ts,
            text: text.into(),
            blocks: None,
            metadata: None,
        }
    }

    /// Sets the blocks.
    pub fn with_blocks(mut self, blocks: Value) -> Self {
        self.blocks = Some(blocks);
        self
    }

    /// Sets the metadata.
    pub fn with_metadata(mut self, metadata: MessageMetadata) -> Self {
        self.metadata = Some(metadata);
        self
    }
}

/// What `chat.postMessage` / `chat.update` returned.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct PostedMessage {
    /// The channel id.
    pub channel: ChannelId,
    /// The message's `ts`.
    pub ts: Ts,
}

/// What `auth.test` returned.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct AuthTest {
    /// The workspace URL.
    #[serde(default)]
    pub url: Option<String>,
    /// The workspace name.
    #[serde(default)]
    pub team: Option<String>,
    /// The workspace id.
    pub team_id: TeamId,
    /// The bot's user id.
    #[serde(default)]
    pub user_id: Option<UserId>,
    /// The bot id.
    #[serde(default)]
    pub bot_id: Option<String>,
}

/// A `conversations.history` / `conversations.replies` request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryRequest {
    /// The channel id.
    pub channel: ChannelId,
    /// For `conversations.replies`: the parent message.
    pub thread_ts: Option<Ts>,
    /// Only messages after this time (unix seconds with fraction, Slack's `oldest`).
    pub oldest: Option<String>,
    /// Page size.
    pub limit: u32,
    /// The cursor of the page to read.
    pub cursor: Option<String>,
    /// Ask for message metadata (`include_all_metadata=true`).
    pub include_all_metadata: bool,
}

impl HistoryRequest {
    /// The first page of a channel's history (newest first).
    pub fn new(channel: ChannelId) -> Self {
        Self {
            channel,
            thread_ts: None,
            oldest: None,
            limit: 200,
            cursor: None,
            include_all_metadata: false,
        }
    }

    /// Reads the replies of a thread instead (`conversations.replies`).
    pub fn with_thread(mut self, ts: Ts) -> Self {
        self.thread_ts = Some(ts);
        self
    }

    /// Only messages after `oldest`.
    pub fn with_oldest(mut self, oldest: jiff::Timestamp) -> Self {
        self.oldest = Some(format!(
            "{}.{:06}",
            oldest.as_second(),
            oldest.subsec_microsecond()
        ));
        self
    }

    /// Sets the page size (Slack allows up to 999; 200 is recommended).
    pub fn with_limit(mut self, limit: u32) -> Self {
        self.limit = limit;
        self
    }

    /// Reads the page at `cursor`.
    pub fn with_cursor(mut self, cursor: impl Into<String>) -> Self {
        self.cursor = Some(cursor.into());
        self
    }

    /// Asks for message metadata.
    pub fn with_metadata(mut self, on: bool) -> Self {
        self.include_all_metadata = on;
        self
    }
}

/// One message of a history page (only what reconcile needs; the rest is in `raw`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct HistoryMessage {
    /// The message's `ts`.
    pub ts: Ts,
    /// The thread it belongs to, if any.
    #[serde(default)]
    pub thread_ts: Option<Ts>,
    /// Its metadata, when asked for and present.
    #[serde(default)]
    pub metadata: Option<MessageMetadata>,
    /// The bot that posted it, if any.
    #[serde(default)]
    pub bot_id: Option<String>,
}

/// One page of `conversations.history` / `conversations.replies`.
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryPage {
    /// The messages, newest first (history) or oldest first (replies).
    pub messages: Vec<HistoryMessage>,
    /// The cursor of the next page, when there is one.
    pub next_cursor: Option<String>,
}

/// A conversation from `conversations.list`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Conversation {
    /// Its id.
    pub id: ChannelId,
    /// Its name (without `#`).
    #[serde(default)]
    pub name: Option<String>,
}

/// What `conversations.info` says of a channel (the fields a sender needs; any other is
/// ignored, a missing flag is taken as `false`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct ConversationInfo {
    /// Its id.
    pub id: ChannelId,
    /// Its name (without `#`).
    #[serde(default)]
    pub name: Option<String>,
    /// Archived: posts are refused (`is_archived`).
    #[serde(default)]
    pub is_archived: bool,
    /// The bot is a member (posts need it; a public channel can be joined).
    #[serde(default)]
    pub is_member: bool,
    /// A private channel (the bot must be invited).
    #[serde(default)]
    pub is_private: bool,
}

/// One page of `conversations.list`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConversationPage {
    /// The conversations.
    pub channels: Vec<Conversation>,
    /// The cursor of the next page, when there is one.
    pub next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct Paged<T> {
    #[serde(default = "Vec::new", alias = "channels")]
    messages: Vec<T>,
    #[serde(default)]
    response_metadata: Option<Cursor>,
}

#[derive(Deserialize)]
struct Cursor {
    #[serde(default)]
    next_cursor: Option<String>,
}

impl Cursor {
    fn next(c: Option<Self>) -> Option<String> {
        c.and_then(|c| c.next_cursor).filter(|s| !s.is_empty())
    }
}

/// A Slack Web API client. Cheap to clone.
#[derive(Clone)]
pub struct SlackClient {
    http: reqwest::Client,
    base: Url,
    token: BotToken,
    api: ApiClient,
}

impl fmt::Debug for SlackClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackClient")
            .field("base", &self.base.as_str())
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl SlackClient {
    /// A client calling `base` (ending in `/`, e.g. `https://slack.com/api/`) with `token`,
    /// over `http` (build it with `ml_core::http::ClientOptions::client`).
    pub fn new(http: reqwest::Client, base: Url, token: BotToken) -> Self {
        let api = ApiClient::reqwest(http.clone()).with_credentials(token.credentials());
        Self {
            http,
            base,
            token,
            api,
        }
    }

    /// Uses `clock` for `Retry-After` dates.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.api = self.api.with_clock(clock);
        self
    }

    /// Refuses answers whose body is longer than `limit` bytes (default
    /// [`ml_core::http::DEFAULT_BODY_LIMIT`]).
    pub fn with_body_limit(mut self, limit: usize) -> Self {
        self.api = self.api.with_body_limit(limit);
        self
    }

    /// The API base URL.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// The underlying HTTP client.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    fn url(&self, method: &str) -> Result<Url, SlackError> {
        self.base.join(method).map_err(|e| {
            SlackError::config("SLACK_API_URL", format!("cannot join `{method}`: {e}"))
        })
    }

    /// Calls `method` with a JSON body; the answer's JSON on `"ok":true`.
    ///
    /// `idempotent` says whether repeating the call is harmless (it decides between in
    /// doubt and retryable). A `token_expired` answer (or HTTP 401) with a rotating token
    /// refreshes the token once and repeats the call (the expired call was not applied).
    pub async fn call_json(
        &self,
        method: &str,
        body: &impl Serialize,
        idempotent: bool,
    ) -> Result<Value, SlackError> {
        let bytes = serde_json::to_vec(body).map_err(|e| SlackError::InvalidResponse {
            method: method.to_owned(),
            message: format!("cannot encode the request: {e}"),
            class: ml_core::ErrorClass::Permanent,
        })?;
        let request = Request::from_url(Method::POST, self.url(method)?)
            .body(JSON_CONTENT_TYPE, bytes)
            .idempotent(idempotent);
        self.execute(method, request).await
    }

    /// Calls a read `method` with a query string (always idempotent).
    pub async fn call_get(
        &self,
        method: &str,
        query: &[(&str, String)],
    ) -> Result<Value, SlackError> {
        let request = Request::from_url(Method::GET, self.url(method)?).query(query);
        self.execute(method, request).await
    }

    async fn execute(&self, method: &str, request: Request) -> Result<Value, SlackError> {
        let idempotent = request.is_idempotent();
        let static_key = matches!(self.token, BotToken::Static(_)).then_some("SLACK_BOT_TOKEN");
        let body = send_checked(&self.api, request, method, static_key).await?;
        let value: Value = serde_json::from_slice(&body).map_err(|e| {
            let e = SlackError::InvalidResponse {
                method: method.to_owned(),
                message: format!("not JSON: {e}"),
                class: ml_core::ErrorClass::InDoubt,
            }
            .in_method(method);
            if idempotent { e.idempotent() } else { e }
        })?;
        if let Some(w) = value.get("warning").and_then(Value::as_str) {
            tracing::debug!(method, warning = w, "Slack warning");
        }
        Ok(value)
    }

    /// `chat.postMessage` (not idempotent: a timeout after sending is in doubt).
    pub async fn post_message(&self, msg: &PostMessage) -> Result<PostedMessage, SlackError> {
        let v = self.call_json("chat.postMessage", msg, false).await?;
        decode("chat.postMessage", v, ml_core::ErrorClass::InDoubt)
    }

    /// `chat.update` (idempotent: editing twice to the same content is harmless).
    pub async fn update_message(&self, msg: &UpdateMessage) -> Result<PostedMessage, SlackError> {
        let v = self.call_json("chat.update", msg, true).await?;
        decode("chat.update", v, ml_core::ErrorClass::RETRYABLE)
    }

    /// `conversations.join` (idempotent: joining a channel twice is harmless; needs
    /// `channels:join`, public channels only).
    pub async fn join_conversation(&self, channel: &ChannelId) -> Result<(), SlackError> {
        let v = self
            .call_json(
                "conversations.join",
                &serde_json::json!({ "channel": channel.0 }),
                true,
            )
            .await?;
        decode::<serde::de::IgnoredAny>("conversations.join", v, ml_core::ErrorClass::RETRYABLE)?;
        Ok(())
    }

    /// `conversations.info` of a channel id (needs `channels:read`, or `groups:read` for a
    /// private channel).
    pub async fn conversation_info(
        &self,
        channel: &ChannelId,
    ) -> Result<ConversationInfo, SlackError> {
        #[derive(Deserialize)]
        struct Info {
            channel: ConversationInfo,
        }
        let v = self
            .call_get("conversations.info", &[("channel", channel.0.clone())])
            .await?;
        let info: Info = decode("conversations.info", v, ml_core::ErrorClass::RETRYABLE)?;
        Ok(info.channel)
    }

    /// `auth.test`.
    pub async fn auth_test(&self) -> Result<AuthTest, SlackError> {
        let v = self.call_get("auth.test", &[]).await?;
        decode("auth.test", v, ml_core::ErrorClass::RETRYABLE)
    }

    /// `conversations.history`, or `conversations.replies` when the request names a thread.
    pub async fn history(&self, req: &HistoryRequest) -> Result<HistoryPage, SlackError> {
        let mut query = vec![
            ("channel", req.channel.0.clone()),
            ("limit", req.limit.to_string()),
        ];
        if let Some(o) = &req.oldest {
            query.push(("oldest", o.clone()));
            query.push(("inclusive", "true".into()));
        }
        if let Some(c) = &req.cursor {
            query.push(("cursor", c.clone()));
        }
        if req.include_all_metadata {
            query.push(("include_all_metadata", "true".into()));
        }
        let method = if let Some(ts) = &req.thread_ts {
            query.push(("ts", ts.0.clone()));
            "conversations.replies"
        } else {
            "conversations.history"
        };
        let v = self.call_get(method, &query).await?;
        let page: Paged<HistoryMessage> = decode(method, v, ml_core::ErrorClass::RETRYABLE)?;
        Ok(HistoryPage {
            messages: page.messages,
            next_cursor: Cursor::next(page.response_metadata),
        })
    }

    /// One page of `conversations.list` (public and private channels, archived excluded).
    pub async fn list_conversations(
        &self,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<ConversationPage, SlackError> {
        let mut query = vec![
            ("types", "public_channel,private_channel".to_owned()),
            ("exclude_archived", "true".to_owned()),
            ("limit", limit.to_string()),
        ];
        if let Some(c) = cursor {
            query.push(("cursor", c.to_owned()));
        }
        let v = self.call_get("conversations.list", &query).await?;
        let page: Paged<Conversation> =
            decode("conversations.list", v, ml_core::ErrorClass::RETRYABLE)?;
        Ok(ConversationPage {
            channels: page.messages,
            next_cursor: Cursor::next(page.response_metadata),
        })
    }
}

fn decode<T: for<'de> Deserialize<'de>>(
    method: &str,
    v: Value,
    class: ml_core::ErrorClass,
) -> Result<T, SlackError> {
    serde_json::from_value(v).map_err(|e| SlackError::InvalidResponse {
        method: method.to_owned(),
        message: format!("missing or invalid fields: {e}"),
        class,
    })
}

/// How a Web API answer is judged: [`parse_error_at`] tagged with the method (an
/// idempotent call is never in doubt), and which codes mean the token is stale.
pub(crate) struct WebApiCall<'a> {
    method: &'a str,
    idempotent: bool,
    /// The configuration key of a static token, which can only fail by not being a valid
    /// header value.
    static_key: Option<&'static str>,
}

impl ErrorModel for WebApiCall<'_> {
    type Error = SlackError;

    fn parse_error(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
        now: Timestamp,
    ) -> Option<SlackError> {
        let err = parse_error_at(status, headers, body, now)?;
        tracing::debug!(method = self.method, status = status.as_u16(), error = %err, "Slack call failed");
        let err = err.in_method(self.method);
        Some(if self.idempotent {
            err.idempotent()
        } else {
            err
        })
    }

    fn transport_error(&self, err: TransportError) -> SlackError {
        SlackError::from_transport(self.method, err)
    }

    fn credentials_error(&self, err: ml_core::Error) -> SlackError {
        if let Some(key) = self.static_key {
            return SlackError::config(
                key,
                "the token contains characters not allowed in a header",
            );
        }
        SlackError::Api {
            method: "oauth.v2.access".into(),
            code: "token_refresh_failed".into(),
            detail: Some(err.to_string()),
            class: err.class(),
        }
    }

    fn auth_failure(&self, status: StatusCode, err: &SlackError) -> AuthFailure {
        match err {
            SlackError::Api { code, .. } if code == "token_expired" => AuthFailure::Expired,
            // Not retried now (permanent), but the next call fetches a token again, so a
            // fixed credential is picked up by a replay.
            SlackError::Api { code, .. }
                if matches!(
                    code.as_str(),
                    "invalid_auth" | "not_authed" | "token_revoked"
                ) =>
            {
                AuthFailure::Refused
            }
            _ if status == StatusCode::UNAUTHORIZED => AuthFailure::Expired,
            _ => AuthFailure::None,
        }
    }
}

/// Sends one Web API request through `api` and returns the body of a successful answer.
/// Every caller (the Web API client, OAuth, Socket Mode) classifies failures the same way:
/// transport errors by whether the request may have been applied, HTTP and `ok:false`
/// answers by [`parse_error_at`], tagged with `method`; an idempotent call is never in
/// doubt.
pub(crate) async fn send_checked(
    api: &ApiClient,
    request: Request,
    method: &str,
    static_key: Option<&'static str>,
) -> Result<Vec<u8>, SlackError> {
    let call = WebApiCall {
        method,
        idempotent: request.is_idempotent(),
        static_key,
    };
    Ok(api.send(&call, request).await?.body)
}
