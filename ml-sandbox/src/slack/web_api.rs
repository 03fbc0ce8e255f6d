//! The Web API: `/api/<method>`, with Slack's argument handling, auth and error answers.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use jiff::Timestamp;
use serde_json::{Map, Value, json};

use super::blocks::{self, BlocksError};
use super::state::{
    ChannelState, CodeInfo, Edit, Inner, SlackState, StoredMessage, TokenKind, format_ts, parse_ts,
    ts_key,
};

/// Longest `text` accepted by `chat.postMessage` / `chat.update`.
pub(crate) const MAX_TEXT: usize = 40_000;
/// Longest `markdown_text`.
pub(crate) const MAX_MARKDOWN_TEXT: usize = 12_000;
/// Most attachments in a message.
pub(crate) const MAX_ATTACHMENTS: usize = 100;
/// How long an OAuth access token lives with token rotation.
pub(crate) const ROTATED_TOKEN_LIFETIME: Duration = Duration::from_secs(43_200);
/// Default and largest `limit` of `conversations.history`.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 999;

/// An `ok:false` answer.
#[derive(Debug)]
pub(crate) struct ApiError {
    code: &'static str,
    messages: Vec<String>,
    retry_after: Option<u64>,
    /// Extra top-level fields (`needed`/`provided` of `missing_scope`).
    extra: Map<String, Value>,
}

impl ApiError {
    pub(crate) fn new(code: &'static str) -> Self {
        Self {
            code,
            messages: Vec::new(),
            retry_after: None,
            extra: Map::new(),
        }
    }

    fn with_messages(code: &'static str, messages: Vec<String>) -> Self {
        Self {
            code,
            messages,
            retry_after: None,
            extra: Map::new(),
        }
    }

    fn rate_limited(retry_after: u64) -> Self {
        Self {
            code: "ratelimited",
            messages: Vec::new(),
            retry_after: Some(retry_after),
            extra: Map::new(),
        }
    }
}

pub(crate) type ApiResult = Result<Map<String, Value>, ApiError>;

/// A parsed request: its arguments (query string and body merged) and credentials.
#[derive(Debug, Default)]
pub(crate) struct ApiRequest {
    pub(crate) args: Map<String, Value>,
    pub(crate) bearer: Option<String>,
    basic: Option<(String, String)>,
    /// A `token` argument (form or query), accepted as a bot token like Slack does.
    arg_token: Option<String>,
    warnings: Vec<&'static str>,
}

/// Slack's JSON answer: HTTP 200 except for rate limits (HTTP 429 + `Retry-After`).
fn respond(result: ApiResult, warnings: &[&'static str]) -> Response {
    let (mut body, status, retry_after) = match result {
        Ok(mut map) => {
            map.insert("ok".into(), Value::Bool(true));
            (map, StatusCode::OK, None)
        }
        Err(e) => {
            let mut map = Map::new();
            map.insert("ok".into(), Value::Bool(false));
            map.insert("error".into(), json!(e.code));
            map.extend(e.extra);
            if !e.messages.is_empty() {
                map.insert(
                    "response_metadata".into(),
                    json!({ "messages": e.messages }),
                );
            }
            let status = if e.retry_after.is_some() {
                StatusCode::TOO_MANY_REQUESTS
            } else {
                StatusCode::OK
            };
            (map, status, e.retry_after)
        }
    };
    // Request-level warnings join the method's own (e.g. `already_in_channel`).
    let mut all: Vec<String> = body
        .get("warning")
        .and_then(Value::as_str)
        .map(|w| w.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    all.extend(warnings.iter().map(|w| (*w).to_owned()));
    if !all.is_empty() {
        body.insert("warning".into(), json!(all.join(",")));
        let metadata = body
            .entry("response_metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(m) = metadata {
            m.insert("warnings".into(), json!(all));
        }
    }
    let mut response = (status, Body::from(Value::Object(body).to_string())).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    if let Some(secs) = retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// The Slack-like body of an injected fault with this HTTP status.
pub(crate) fn fault_body(status: u16) -> (String, String) {
    let code = match status {
        429 => "ratelimited",
        500 => "internal_error",
        502 | 503 => "service_unavailable",
        504 => "request_timeout",
        _ => "fatal_error",
    };
    (
        "application/json; charset=utf-8".to_owned(),
        json!({"ok": false, "error": code}).to_string(),
    )
}

/// `GET|POST /api/{method}`.
pub(crate) async fn handle(
    State(state): State<Arc<SlackState>>,
    Path(method): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = match parse_request(&headers, query.as_deref(), &body) {
        Ok(r) => r,
        Err((e, warnings)) => return respond(Err(e), &warnings),
    };
    let result = match method.as_str() {
        "chat.postMessage" => post_message(&state, &request),
        "chat.update" => update_message(&state, &request),
        "auth.test" => auth_test(&state, &request),
        "conversations.history" => history(&state, &request),
        "conversations.replies" => replies(&state, &request),
        "conversations.join" => join(&state, &request),
        "conversations.list" => list_conversations(&state, &request),
        "conversations.info" => conversation_info(&state, &request),
        "oauth.v2.access" => oauth_access(&state, &request),
        "apps.connections.open" => super::socket::connections_open(&state, &request),
        _ => Err(ApiError::new("unknown_method")),
    };
    respond(result, &request.warnings)
}

/// Splits a `Content-Type` into its media type and charset.
fn content_type(headers: &HeaderMap) -> (Option<String>, Option<String>) {
    let Some(raw) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return (None, None);
    };
    let mut parts = raw.split(';');
    let media = parts.next().map(|m| m.trim().to_ascii_lowercase());
    let charset = parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| v.trim().trim_matches('"').to_ascii_lowercase())
    });
    (media, charset)
}

fn parse_request(
    headers: &HeaderMap,
    query: Option<&str>,
    body: &Bytes,
) -> Result<ApiRequest, (ApiError, Vec<&'static str>)> {
    let mut request = ApiRequest::default();
    if let Some(query) = query {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
            .map_err(|_| (ApiError::new("invalid_form_data"), Vec::new()))?;
        for (k, v) in pairs {
            request.args.insert(k, Value::String(v));
        }
    }
    let (media, charset) = content_type(headers);
    let mut json_body = false;
    match media.as_deref() {
        _ if body.is_empty() => {}
        Some("application/json") => {
            json_body = true;
            match charset.as_deref() {
                None => request.warnings.push("missing_charset"),
                Some("utf-8" | "utf8") => {}
                Some(_) => return Err((ApiError::new("invalid_charset"), request.warnings)),
            }
            let value: Value = serde_json::from_slice(body)
                .map_err(|_| (ApiError::new("invalid_json"), request.warnings.clone()))?;
            let Value::Object(map) = value else {
                return Err((ApiError::new("json_not_object"), request.warnings));
            };
            request.args.extend(map);
        }
        Some("application/x-www-form-urlencoded") => {
            if charset.is_some() {
                request.warnings.push("superfluous_charset");
            }
            let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
                .map_err(|_| (ApiError::new("invalid_form_data"), request.warnings.clone()))?;
            for (k, v) in pairs {
                request.args.insert(k, Value::String(v));
            }
        }
        None => return Err((ApiError::new("missing_post_type"), request.warnings)),
        Some(_) => return Err((ApiError::new("invalid_post_type"), request.warnings)),
    }
    if let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if let Some(token) = auth.strip_prefix("Bearer ") {
            request.bearer = Some(token.trim().to_owned());
        } else if let Some(basic) = auth.strip_prefix("Basic ")
            && let Ok(decoded) = BASE64.decode(basic.trim())
            && let Ok(decoded) = String::from_utf8(decoded)
            && let Some((id, secret)) = decoded.split_once(':')
        {
            request.basic = Some((id.to_owned(), secret.to_owned()));
        }
    }
    // Slack takes a `token` argument from forms and query strings, not from JSON bodies.
    if !json_body && let Some(Value::String(t)) = request.args.get("token") {
        request.arg_token = Some(t.clone());
    } else if json_body && let Some(q) = query {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(q).unwrap_or_default();
        request.arg_token = pairs
            .into_iter()
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v);
    }
    Ok(request)
}

/// A string argument (numbers and booleans are stringified, empty strings are absent).
pub(crate) fn arg_str(args: &Map<String, Value>, key: &str) -> Option<String> {
    match args.get(key)? {
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn arg_bool(args: &Map<String, Value>, key: &str) -> bool {
    match args.get(key) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => matches!(s.as_str(), "true" | "1" | "yes"),
        Some(Value::Number(n)) => n.as_u64() == Some(1),
        _ => false,
    }
}

/// Checks the bot token of a request; returns its scopes (`None`: every scope).
pub(crate) fn auth_bot(
    inner: &Inner,
    request: &ApiRequest,
    now: Timestamp,
) -> Result<Option<Vec<String>>, ApiError> {
    let token = request
        .bearer
        .as_deref()
        .or(request.arg_token.as_deref())
        .ok_or(ApiError::new("not_authed"))?;
    check_token(inner, token, TokenKind::Bot, now)?;
    Ok(inner.tokens.get(token).and_then(|t| t.scopes.clone()))
}

/// `missing_scope` (with `needed` and `provided`) unless `granted` holds `needed`.
fn need(granted: Option<&Vec<String>>, needed: &str) -> Result<(), ApiError> {
    match granted {
        Some(scopes) if !scopes.iter().any(|s| s == needed) => {
            let mut e = ApiError::new("missing_scope");
            e.extra.insert("needed".into(), json!(needed));
            e.extra.insert("provided".into(), json!(scopes.join(",")));
            Err(e)
        }
        _ => Ok(()),
    }
}

/// Checks `token` is known, live, and of `kind`.
pub(crate) fn check_token(
    inner: &Inner,
    token: &str,
    kind: TokenKind,
    now: Timestamp,
) -> Result<(), ApiError> {
    let info = inner
        .tokens
        .get(token)
        .ok_or(ApiError::new("invalid_auth"))?;
    if info.revoked {
        return Err(ApiError::new("token_revoked"));
    }
    if info.expires_at.is_some_and(|at| now >= at) {
        return Err(ApiError::new("token_expired"));
    }
    if info.kind != kind {
        return Err(ApiError::new("not_allowed_token_type"));
    }
    Ok(())
}

/// Message content shared by `chat.postMessage` and `chat.update`.
#[derive(Debug, Default)]
struct Content {
    text: Option<String>,
    markdown_text: Option<String>,
    blocks: Option<Value>,
    attachments: Option<Value>,
    metadata: Option<Value>,
}

fn parse_json_arg(raw: &Value) -> Option<Value> {
    match raw {
        Value::String(s) => serde_json::from_str(s).ok(),
        other => Some(other.clone()),
    }
}

fn parse_content(args: &Map<String, Value>) -> Result<Content, ApiError> {
    let mut content = Content {
        text: arg_str(args, "text"),
        markdown_text: arg_str(args, "markdown_text"),
        ..Content::default()
    };
    let blocks_arg = args
        .get("blocks")
        .filter(|v| !matches!(v, Value::Null) && v.as_str() != Some(""));
    let attachments_arg = args
        .get("attachments")
        .filter(|v| !matches!(v, Value::Null) && v.as_str() != Some(""));
    if content.markdown_text.is_some() && (content.text.is_some() || blocks_arg.is_some()) {
        return Err(ApiError::new("markdown_text_conflict"));
    }
    if let Some(raw) = blocks_arg {
        match blocks::parse_and_validate(raw) {
            Ok(v) => {
                if v.as_array().is_some_and(|a| !a.is_empty()) {
                    content.blocks = Some(v);
                }
            }
            Err(BlocksError::Format) => return Err(ApiError::new("invalid_blocks_format")),
            Err(BlocksError::Invalid(messages)) => {
                return Err(ApiError::with_messages("invalid_blocks", messages));
            }
        }
    }
    if let Some(raw) = attachments_arg {
        let Some(Value::Array(list)) = parse_json_arg(raw) else {
            return Err(ApiError::new("invalid_attachments"));
        };
        if list.len() > MAX_ATTACHMENTS {
            return Err(ApiError::new("too_many_attachments"));
        }
        if !list.is_empty() {
            content.attachments = Some(Value::Array(list));
        }
    }
    if content.text.is_none()
        && content.markdown_text.is_none()
        && content.blocks.is_none()
        && content.attachments.is_none()
    {
        return Err(ApiError::new("no_text"));
    }
    if content
        .text
        .as_deref()
        .is_some_and(|t| t.chars().count() > MAX_TEXT)
        || content
            .markdown_text
            .as_deref()
            .is_some_and(|t| t.chars().count() > MAX_MARKDOWN_TEXT)
    {
        return Err(ApiError::new("msg_too_long"));
    }
    if let Some(raw) = args.get("metadata").filter(|v| v.as_str() != Some("")) {
        content.metadata = Some(parse_metadata(raw)?);
    }
    Ok(content)
}

/// `metadata` must be `{"event_type": "<non-empty string>", "event_payload": {…}}`.
fn parse_metadata(raw: &Value) -> Result<Value, ApiError> {
    let value = parse_json_arg(raw).ok_or(ApiError::new("invalid_metadata_format"))?;
    let Value::Object(map) = &value else {
        return Err(ApiError::new("invalid_metadata_format"));
    };
    let event_type_ok = map
        .get("event_type")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty());
    let payload_ok = map.get("event_payload").is_some_and(Value::is_object);
    if !event_type_ok || !payload_ok {
        return Err(ApiError::new("invalid_metadata_schema"));
    }
    Ok(value)
}

/// Finds a channel the bot can see: private channels it is not in do not exist for it.
fn visible_channel<'a>(inner: &'a Inner, arg: Option<&str>) -> Result<&'a ChannelState, ApiError> {
    let channel = arg
        .and_then(|a| inner.find_channel(a))
        .ok_or(ApiError::new("channel_not_found"))?;
    if channel.private && !channel.bot_member {
        return Err(ApiError::new("channel_not_found"));
    }
    Ok(channel)
}

fn replies_of<'a>(list: &'a [StoredMessage], ts: &str) -> Vec<&'a StoredMessage> {
    list.iter()
        .filter(|m| m.thread_ts.as_deref() == Some(ts))
        .collect()
}

fn post_message(state: &SlackState, request: &ApiRequest) -> ApiResult {
    let result = post_message_locked(state, request);
    if result.is_ok() {
        state.notify_messages();
    }
    result
}

fn post_message_locked(state: &SlackState, request: &ApiRequest) -> ApiResult {
    let now = state.now();
    let mut inner = state.lock();
    let scopes = auth_bot(&inner, request, now)?;
    need(scopes.as_ref(), "chat:write")?;
    let args = &request.args;
    let content = parse_content(args)?;
    let channel = visible_channel(&inner, arg_str(args, "channel").as_deref())?;
    if channel.archived {
        return Err(ApiError::new("is_archived"));
    }
    if !channel.bot_member {
        return Err(ApiError::new("not_in_channel"));
    }
    let channel_id = channel.id.clone();
    let thread_ts = match arg_str(args, "thread_ts") {
        None => None,
        Some(ts) => {
            let list = inner
                .messages
                .get(&channel_id)
                .map_or(&[][..], Vec::as_slice);
            let parent = list
                .iter()
                .find(|m| m.ts == ts)
                .ok_or(ApiError::new("thread_not_found"))?;
            Some(parent.thread_ts.clone().unwrap_or(ts))
        }
    };
    inner
        .check_post_rate(&channel_id, now)
        .map_err(ApiError::rate_limited)?;
    let ts = inner.next_ts(now);
    let message = StoredMessage {
        channel: channel_id.clone(),
        ts: ts.clone(),
        text: content.text.unwrap_or_default(),
        blocks: content.blocks,
        attachments: content.attachments,
        metadata: content.metadata,
        markdown_text: content.markdown_text,
        reply_broadcast: thread_ts.is_some() && arg_bool(args, "reply_broadcast"),
        thread_ts,
        user: state.identity.bot_user_id.clone(),
        bot_id: Some(state.identity.bot_id.clone()),
        args: args.clone(),
        edits: Vec::new(),
    };
    let json = message.to_json(&state.identity, true, &[]);
    inner.store(message);
    let mut out = Map::new();
    out.insert("channel".into(), json!(channel_id));
    out.insert("ts".into(), json!(ts));
    out.insert("message".into(), json);
    Ok(out)
}

fn update_message(state: &SlackState, request: &ApiRequest) -> ApiResult {
    let result = update_message_locked(state, request);
    if result.is_ok() {
        state.notify_messages();
    }
    result
}

fn update_message_locked(state: &SlackState, request: &ApiRequest) -> ApiResult {
    let now = state.now();
    let mut inner = state.lock();
    let scopes = auth_bot(&inner, request, now)?;
    need(scopes.as_ref(), "chat:write")?;
    let args = &request.args;
    let channel = visible_channel(&inner, arg_str(args, "channel").as_deref())?;
    if channel.archived {
        return Err(ApiError::new("is_archived"));
    }
    let channel_id = channel.id.clone();
    let ts = arg_str(args, "ts").ok_or(ApiError::new("message_not_found"))?;
    let bot_user = state.identity.bot_user_id.clone();
    {
        let message = inner
            .messages
            .get(&channel_id)
            .and_then(|l| l.iter().find(|m| m.ts == ts))
            .ok_or(ApiError::new("message_not_found"))?;
        if message.user != bot_user {
            return Err(ApiError::new("cant_update_message"));
        }
    }
    let content = parse_content(args)?;
    let edited_ts = inner.next_ts(now);
    let list = inner.messages.entry(channel_id.clone()).or_default();
    let message = list
        .iter_mut()
        .find(|m| m.ts == ts)
        .ok_or(ApiError::new("message_not_found"))?;
    message.edits.push(Edit {
        edited_ts,
        user: bot_user,
        previous_text: message.text.clone(),
        previous_blocks: message.blocks.clone(),
        previous_metadata: message.metadata.clone(),
    });
    // Omitted fields keep their old value (metadata included); an empty blocks array clears.
    if let Some(text) = content.text {
        message.text = text;
    }
    if content.markdown_text.is_some() {
        message.markdown_text = content.markdown_text;
        message.text = String::new();
    }
    if args.contains_key("blocks") {
        message.blocks = content.blocks;
    }
    if args.contains_key("attachments") {
        message.attachments = content.attachments;
    }
    if content.metadata.is_some() {
        message.metadata = content.metadata;
    }
    let json = message.to_json(&state.identity, true, &[]);
    let text = message.text.clone();
    let mut out = Map::new();
    out.insert("channel".into(), json!(channel_id));
    out.insert("ts".into(), json!(ts));
    out.insert("text".into(), json!(text));
    out.insert("message".into(), json);
    Ok(out)
}

fn auth_test(state: &SlackState, request: &ApiRequest) -> ApiResult {
    let now = state.now();
    let inner = state.lock();
    auth_bot(&inner, request, now)?;
    let id = &state.identity;
    let mut out = Map::new();
    out.insert(
        "url".into(),
        json!(format!("https://{}.slack.com/", id.team_domain)),
    );
    out.insert("team".into(), json!(id.team_name));
    out.insert("user".into(), json!(id.bot_user_name));
    out.insert("team_id".into(), json!(id.team_id));
    out.insert("user_id".into(), json!(id.bot_user_id));
    out.insert("bot_id".into(), json!(id.bot_id));
    out.insert("is_enterprise_install".into(), json!(false));
    Ok(out)
}

/// The channel as `conversations.*` show it.
pub(crate) fn channel_json(state: &SlackState, c: &ChannelState) -> Value {
    json!({
        "id": c.id,
        "name": c.name,
        "name_normalized": c.name,
        "is_channel": !c.private,
        "is_group": false,
        "is_im": false,
        "is_mpim": false,
        "is_private": c.private,
        "is_archived": c.archived,
        "is_general": c.name == "general",
        "is_shared": false,
        "is_ext_shared": false,
        "is_org_shared": false,
        "is_pending_ext_shared": false,
        "pending_shared": [],
        "context_team_id": state.identity.team_id,
        "created": c.created,
        "creator": "",
        "unlinked": 0,
        "is_member": c.bot_member,
        "topic": {"value": "", "creator": "", "last_set": 0},
        "purpose": {"value": "", "creator": "", "last_set": 0},
        "previous_names": [],
    })
}

/// A history cursor: base64 of `next_ts:<µs>` (the form Slack's cursors take).
fn encode_cursor(ts: &str) -> String {
    BASE64.encode(format!("next_ts:{}", ts_key(ts)))
}

fn decode_cursor(cursor: &str) -> Result<i64, ApiError> {
    BASE64
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix("next_ts:").and_then(|n| n.parse().ok()))
        .ok_or(ApiError::new("invalid_cursor"))
}

fn limit_arg(inner: &Inner, args: &Map<String, Value>) -> usize {
    let asked = match arg_str(args, "limit").and_then(|l| l.parse::<usize>().ok()) {
        None | Some(0) => DEFAULT_LIMIT,
        Some(n) => n.min(MAX_LIMIT),
    };
    inner.page_cap.map_or(asked, |cap| asked.min(cap))
}

/// A readable channel for history-like calls (`channels:history` for public channels,
/// `groups:history` for private ones).
fn readable_channel(
    inner: &Inner,
    args: &Map<String, Value>,
    scopes: Option<&Vec<String>>,
) -> Result<String, ApiError> {
    let channel = visible_channel(inner, arg_str(args, "channel").as_deref())?;
    need(
        scopes,
        if channel.private {
            "groups:history"
        } else {
            "channels:history"
        },
    )?;
    if !channel.bot_member {
        return Err(ApiError::new("not_in_channel"));
    }
    Ok(channel.id.clone())
}

fn history(state: &SlackState, request: &ApiRequest) -> ApiResult {
    let now = state.now();
    let inner = state.lock();
    let scopes = auth_bot(&inner, request, now)?;
    let args = &request.args;
    let channel_id = readable_channel(&inner, args, scopes.as_ref())?;
    let limit = limit_arg(&inner, args);
    let oldest = match arg_str(args, "oldest") {
        None => None,
        Some(s) => Some(parse_ts(&s).ok_or(ApiError::new("invalid_ts_oldest"))?),
    };
    let latest = match arg_str(args, "latest") {
        None => None,
        Some(s) => Some(parse_ts(&s).ok_or(ApiError::new("invalid_ts_latest"))?),
    };
    let cursor = arg_str(args, "cursor")
        .map(|c| decode_cursor(&c))
        .transpose()?;
    let inclusive = arg_bool(args, "inclusive");
    let include_metadata = arg_bool(args, "include_all_metadata");
    let list = inner
        .messages
        .get(&channel_id)
        .map_or(&[][..], Vec::as_slice);
    let in_window = |k: i64| {
        oldest.is_none_or(|o| if inclusive { k >= o } else { k > o })
            && latest.is_none_or(|l| if inclusive { k <= l } else { k < l })
            && cursor.is_none_or(|c| k <= c)
    };
    // Newest first; thread replies only when broadcast to the channel.
    let mut selected = list
        .iter()
        .rev()
        .filter(|m| m.thread_ts.is_none() || m.reply_broadcast)
        .filter(|m| in_window(ts_key(&m.ts)));
    let page: Vec<&StoredMessage> = selected.by_ref().take(limit).collect();
    let next = selected.next();
    let messages: Vec<Value> = page
        .iter()
        .map(|m| {
            let replies = if m.thread_ts.is_none() {
                replies_of(list, &m.ts)
            } else {
                Vec::new()
            };
            m.to_json(&state.identity, include_metadata, &replies)
        })
        .collect();
    let mut out = Map::new();
    out.insert("messages".into(), Value::Array(messages));
    out.insert("has_more".into(), json!(next.is_some()));
    out.insert("pin_count".into(), json!(0));
    out.insert("channel_actions_ts".into(), Value::Null);
    out.insert("channel_actions_count".into(), json!(0));
    if let Some(next) = next {
        out.insert(
            "response_metadata".into(),
            json!({"next_cursor": encode_cursor(&next.ts)}),
        );
    }
    Ok(out)
}

fn replies(state: &SlackState, request: &ApiRequest) -> ApiResult {
    let now = state.now();
    let inner = state.lock();
    let scopes = auth_bot(&inner, request, now)?;
    let args = &request.args;
    let channel_id = readable_channel(&inner, args, scopes.as_ref())?;
    let ts = arg_str(args, "ts").ok_or(ApiError::new("thread_not_found"))?;
    let limit = limit_arg(&inner, args);
    let cursor = arg_str(args, "cursor")
        .map(|c| decode_cursor(&c))
        .transpose()?;
    let include_metadata = arg_bool(args, "include_all_metadata");
    let list = inner
        .messages
        .get(&channel_id)
        .map_or(&[][..], Vec::as_slice);
    let parent = list
        .iter()
        .find(|m| m.ts == ts)
        .ok_or(ApiError::new("thread_not_found"))?;
    let parent_ts = parent
        .thread_ts
        .clone()
        .unwrap_or_else(|| parent.ts.clone());
    // Oldest first: the parent, then its replies.
    let mut selected = list
        .iter()
        .filter(|m| m.ts == parent_ts || m.thread_ts.as_deref() == Some(parent_ts.as_str()))
        .filter(|m| cursor.is_none_or(|c| ts_key(&m.ts) >= c));
    let page: Vec<&StoredMessage> = selected.by_ref().take(limit).collect();
    let next = selected.next();
    let all_replies = replies_of(list, &parent_ts);
    let messages: Vec<Value> = page
        .iter()
        .map(|m| {
            let r = if m.ts == parent_ts {
                all_replies.as_slice()
            } else {
                &[]
            };
            m.to_json(&state.identity, include_metadata, r)
        })
        .collect();
    let mut out = Map::new();
    out.insert("messages".into(), Value::Array(messages));
    out.insert("has_more".into(), json!(next.is_some()));
    if let Some(next) = next {
        out.insert(
            "response_metadata".into(),
            json!({"next_cursor": encode_cursor(&next.ts)}),
        );
    }
    Ok(out)
}

fn join(state: &SlackState, request: &ApiRequest) -> ApiResult {
    let now = state.now();
    let mut inner = state.lock();
    let scopes = auth_bot(&inner, request, now)?;
    need(scopes.as_ref(), "channels:join")?;
    let channel = visible_channel(&inner, arg_str(&request.args, "channel").as_deref())?;
    if channel.private {
        return Err(ApiError::new("method_not_supported_for_channel_type"));
    }
    if channel.archived {
        return Err(ApiError::new("is_archived"));
    }
    let already = channel.bot_member;
    let id = channel.id.clone();
    let channel = inner
        .find_channel_mut(&id)
        .ok_or(ApiError::new("channel_not_found"))?;
    channel.bot_member = true;
    let json = channel_json(state, channel);
    let mut out = Map::new();
    out.insert("channel".into(), json);
    if already {
        // Slack answers ok with a warning.
        out.insert("warning".into(), json!("already_in_channel"));
        out.insert(
            "response_metadata".into(),
            json!({"warnings": ["already_in_channel"]}),
        );
    }
    Ok(out)
}

/// `conversations.list`: `types` (default `public_channel`), `exclude_archived`, `limit`,
/// `cursor` (opaque). Private channels are listed only when the bot is a member, as in
/// Slack.
fn list_conversations(state: &SlackState, request: &ApiRequest) -> ApiResult {
    let now = state.now();
    let inner = state.lock();
    let scopes = auth_bot(&inner, request, now)?;
    let args = &request.args;
    let types = arg_str(args, "types").unwrap_or_else(|| "public_channel".to_owned());
    let want_public = types.split(',').any(|t| t.trim() == "public_channel");
    let want_private = types.split(',').any(|t| t.trim() == "private_channel");
    if want_public {
        need(scopes.as_ref(), "channels:read")?;
    }
    if want_private {
        need(scopes.as_ref(), "groups:read")?;
    }
    let exclude_archived = arg_bool(args, "exclude_archived");
    let limit = limit_arg(&inner, args);
    let start = match arg_str(args, "cursor") {
        None => 0,
        Some(c) => c
            .strip_prefix("offset:")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or(ApiError::new("invalid_cursor"))?,
    };
    let listed: Vec<&ChannelState> = inner
        .channels
        .iter()
        .filter(|c| {
            if c.private {
                want_private && c.bot_member
            } else {
                want_public
            }
        })
        .filter(|c| !(exclude_archived && c.archived))
        .collect();
    let page: Vec<Value> = listed
        .iter()
        .skip(start)
        .take(limit)
        .map(|c| channel_json(state, c))
        .collect();
    let next = if start + limit < listed.len() {
        format!("offset:{}", start + limit)
    } else {
        String::new()
    };
    let mut out = Map::new();
    out.insert("channels".into(), Value::Array(page));
    out.insert("response_metadata".into(), json!({ "next_cursor": next }));
    Ok(out)
}

/// `conversations.info`: by id only (a name is `channel_not_found`, as on Slack); a
/// private channel the bot is not in does not exist for it.
fn conversation_info(state: &SlackState, request: &ApiRequest) -> ApiResult {
    let now = state.now();
    let inner = state.lock();
    let scopes = auth_bot(&inner, request, now)?;
    let arg = arg_str(&request.args, "channel");
    let by_id = arg
        .as_deref()
        .and_then(|a| inner.channels.iter().find(|c| c.id == a))
        .map(|c| c.id.clone());
    let channel = visible_channel(&inner, by_id.as_deref())?;
    need(
        scopes.as_ref(),
        if channel.private {
            "groups:read"
        } else {
            "channels:read"
        },
    )?;
    let mut out = Map::new();
    out.insert("channel".into(), channel_json(state, channel));
    Ok(out)
}

fn oauth_access(state: &SlackState, request: &ApiRequest) -> ApiResult {
    let now = state.now();
    let args = &request.args;
    let (client_id, client_secret) = match &request.basic {
        Some((id, secret)) => (Some(id.clone()), Some(secret.clone())),
        None => (arg_str(args, "client_id"), arg_str(args, "client_secret")),
    };
    let identity = &state.identity;
    if client_id.as_deref() != Some(identity.client_id.as_str()) {
        return Err(ApiError::new("invalid_client_id"));
    }
    if client_secret.as_deref() != Some(identity.client_secret.as_str()) {
        return Err(ApiError::new("bad_client_secret"));
    }
    let mut inner = state.lock();
    let (scopes, user_id) = match arg_str(args, "grant_type").as_deref() {
        None | Some("authorization_code") => {
            let code = arg_str(args, "code").ok_or(ApiError::new("invalid_code"))?;
            let info: &mut CodeInfo = inner
                .codes
                .get_mut(&code)
                .ok_or(ApiError::new("invalid_code"))?;
            if info.used || now >= info.expires_at {
                return Err(ApiError::new("invalid_code"));
            }
            if let Some(expected) = &info.redirect_uri
                && arg_str(args, "redirect_uri").as_deref() != Some(expected.as_str())
            {
                return Err(ApiError::new("bad_redirect_uri"));
            }
            info.used = true;
            (info.scopes.clone(), info.user_id.clone())
        }
        Some("refresh_token") => {
            let refresh =
                arg_str(args, "refresh_token").ok_or(ApiError::new("invalid_refresh_token"))?;
            inner
                .refresh_tokens
                .get_mut(&refresh)
                .and_then(Option::take)
                .ok_or(ApiError::new("invalid_refresh_token"))?
        }
        Some(_) => return Err(ApiError::new("invalid_grant_type")),
    };
    let mut out = Map::new();
    if inner.rotation {
        let expires_at = ml_core::clock::add(now, ROTATED_TOKEN_LIFETIME);
        let token = inner.mint_scoped_bot_token(Some(expires_at), Some(&scopes));
        let refresh = format!("xoxe-1-{}", inner.token_part(40));
        inner
            .refresh_tokens
            .insert(refresh.clone(), Some((scopes.clone(), user_id.clone())));
        out.insert("access_token".into(), json!(token));
        out.insert("expires_in".into(), json!(ROTATED_TOKEN_LIFETIME.as_secs()));
        out.insert("refresh_token".into(), json!(refresh));
    } else {
        let token = inner.mint_scoped_bot_token(None, Some(&scopes));
        out.insert("access_token".into(), json!(token));
    }
    out.insert("token_type".into(), json!("bot"));
    out.insert("scope".into(), json!(scopes));
    out.insert("bot_user_id".into(), json!(identity.bot_user_id));
    out.insert("app_id".into(), json!(identity.app_id));
    out.insert(
        "team".into(),
        json!({"id": identity.team_id, "name": identity.team_name}),
    );
    out.insert(
        "enterprise".into(),
        identity.enterprise_id.as_ref().map_or(
            Value::Null,
            |id| json!({"id": id, "name": "Sandbox Enterprise"}),
        ),
    );
    out.insert("is_enterprise_install".into(), json!(false));
    out.insert("authed_user".into(), json!({"id": user_id}));
    Ok(out)
}

/// A Slack ts for "now" (used by the event builders).
pub(crate) fn now_ts(state: &SlackState) -> String {
    format_ts(state.now().as_microsecond())
}
