//! The Slack emulator: Web API methods, Socket Mode, and Slack calling us.
//!
//! Served methods (at `<base_url>` = `http://127.0.0.1:<port>/api/`): `chat.postMessage`,
//! `chat.update`, `auth.test`, `conversations.history`, `conversations.replies`, `conversations.list`,
//! `conversations.join`, `conversations.info`, `oauth.v2.access`, `apps.connections.open`. Anything else answers
//! `{"ok":false,"error":"unknown_method"}`.
//!
//! What it enforces, like Slack:
//! * Requests: JSON needs `Content-Type: application/json; charset=utf-8` (without the
//!   charset it succeeds with warning `missing_charset`; another charset: `invalid_charset`;
//!   bad JSON: `invalid_json`; not an object: `json_not_object`), forms are
//!   `application/x-www-form-urlencoded` (a charset gives warning `superfluous_charset`;
//!   `blocks`, `attachments` and `metadata` are JSON strings there); query-string arguments
//!   are merged in; other content types: `invalid_post_type`; a body without a content
//!   type: `missing_post_type`.
//! * Auth: `Authorization: Bearer xoxb-…` (or a `token` form/query argument): missing ->
//!   `not_authed`, unknown -> `invalid_auth`, revoked -> `token_revoked`, expired (token
//!   rotation) -> `token_expired`, an app token -> `not_allowed_token_type`.
//!   `apps.connections.open` wants an `xapp-` token in the header (an `xoxb-` one ->
//!   `not_allowed_token_type`).
//! * Errors are HTTP 200 `{"ok":false,"error":…}`; the only HTTP 429 is the rate limit.
//! * `chat.postMessage`: channel by id, `#name` or name (`channel_not_found`; a private
//!   channel the bot is not in is `channel_not_found` too, as in Slack), `is_archived`,
//!   `not_in_channel`; `no_text`, `markdown_text_conflict`, `msg_too_long` (text > 40,000
//!   or markdown_text > 12,000 characters), `too_many_attachments` (> 100),
//!   `invalid_blocks_format` / `invalid_blocks` (with `response_metadata.messages`, see
//!   [`blocks`]), `invalid_metadata_format` / `invalid_metadata_schema`,
//!   `thread_not_found`; the per-channel limit, measured when the request ARRIVES (when
//!   the handler runs, after any injected [`Fault::Latency`](crate::fault::Fault::Latency)):
//!   one accepted message per channel per
//!   [`post_message_interval`](SlackEmulatorBuilder::post_message_interval) (1 s) with
//!   bursts of [`post_message_burst`](SlackEmulatorBuilder::post_message_burst) (default 1),
//!   otherwise HTTP 429, `Retry-After` (whole seconds, rounded up, at least 1) and
//!   `ratelimited`. Slack documents "about 1 message per second per channel, short bursts
//!   tolerated but not guaranteed": the default refuses every burst, the strictest reading,
//!   so a client that passes here never relies on tolerance. Every checked arrival is
//!   recorded ([`SlackEmulator::post_arrivals`]).
//! * `chat.update`: only the bot's own messages (`cant_update_message`), `message_not_found`;
//!   omitted `text`/`blocks`/`attachments`/`metadata` keep their value.
//! * `conversations.history`: newest first, top-level messages (and broadcast replies)
//!   only, `limit` (default 100, at most 999), `cursor` / `response_metadata.next_cursor` /
//!   `has_more`, `oldest` / `latest` / `inclusive`, metadata only with
//!   `include_all_metadata=true`; `not_in_channel` when the bot is not a member.
//! * `oauth.v2.access`: codes from [`SlackEmulator::issue_oauth_code`] (single use, 10
//!   minutes, `invalid_code`), `redirect_uri` (`bad_redirect_uri`), client credentials by
//!   HTTP Basic or form (`invalid_client_id`, `bad_client_secret`), `invalid_grant_type`;
//!   with token rotation, `xoxe.xoxb-` tokens expiring after 12 h and single-use
//!   `xoxe-1-` refresh tokens (`invalid_refresh_token`).
//! * Scopes: tokens minted with explicit scopes ([`SlackEmulator::add_bot_token_with_scopes`],
//!   OAuth) get `missing_scope` with `needed`/`provided` (`chat:write`,
//!   `channels:history`/`groups:history`, `channels:join`).
//!
//! Where it is knowingly less faithful (or Slack's behaviour is unconfirmed):
//! * Only the per-channel `chat.postMessage` limit exists: no workspace-wide limit and no
//!   per-method tiers (inject 429s with [`crate::fault`] for those). The limit is checked
//!   after argument validation, so invalid posts never consume the slot.
//! * When several things are wrong, the error reported is the first in this order: auth,
//!   scope, content, channel, thread, rate limit (Slack's own order is not documented).
//! * `text` over 40,000 characters is refused with `msg_too_long` (Slack may truncate
//!   instead); a blocks-only message is stored with `text: ""` (Slack may derive a
//!   fallback); `metadata_too_large` is not enforced (limit unconfirmed); block elements
//!   other than buttons and text objects are checked only for their container limits.
//! * `chat.update` has no edit window and no rate limit.
//! * `response_url`: answers `{"ok":true}`; after 5 uses `used_url` and after 30 minutes
//!   `expired_url`, both HTTP 404 (unconfirmed); `replace_original`/`delete_original` are
//!   recorded, not applied.
//! * Socket Mode: no WebSocket pings; `disconnect` does not close the socket by itself;
//!   redeliveries carry `retry_reason: "timeout"` (unconfirmed); tickets do not expire.
//! * Event envelopes carry both `authorizations` and the deprecated `authed_users` (the
//!   wrapper schema in `shared/specs` still requires it).
//! * Plain HTTP/1.1 on loopback: no TLS, no HTTP/2.

pub mod blocks;
mod caller;
mod socket;
mod state;
mod web_api;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{any, get, post};
use ml_core::clock::Clock;
use ml_core::http::ClientOptions;

pub use caller::{BlockActions, CallerResponse, SendOptions, SlackCaller, SlashCommand, sign};
pub use socket::{Ack, SocketMode};
pub use state::{Edit, PostArrival, ResponseUrlPost, StoredMessage};

use crate::emulator::{Emulator, EmulatorCore, EmulatorOptions};
use crate::error::Result;
use crate::fault::Faults;
use state::{ChannelState, CodeInfo, Identity, Inner, SlackState, TokenInfo, TokenKind};

/// Id of the default `#general` channel.
pub const GENERAL_ID: &str = "C00GENERAL";
/// Default workspace id.
pub const TEAM_ID: &str = "T00SANDBOX";
/// The bot's user id.
pub const BOT_USER_ID: &str = "U00SANDBOT";
/// The bot id.
pub const BOT_ID: &str = "B00SANDBOT";
/// The app id.
pub const APP_ID: &str = "A00SANDAPP";
/// The default human user (slash commands, clicks, OAuth installer).
pub const DEFAULT_INSTALLER: &str = "U00HUMAN01";
/// Scopes granted by OAuth codes unless the test asks for others.
pub const DEFAULT_SCOPES: &str =
    "chat:write,channels:history,groups:history,channels:join,channels:read,groups:read,commands";
/// How long an OAuth code can be exchanged.
pub const OAUTH_CODE_LIFETIME: Duration = Duration::from_secs(600);

/// A channel to create in the emulated workspace.
#[derive(Debug, Clone)]
pub struct Channel {
    id: Option<String>,
    name: String,
    private: bool,
    archived: bool,
    bot_member: bool,
}

impl Channel {
    /// A public channel the bot is a member of.
    pub fn public(name: impl Into<String>) -> Self {
        Self {
            id: None,
            name: name.into(),
            private: false,
            archived: false,
            bot_member: true,
        }
    }

    /// A private channel the bot is a member of.
    pub fn private(name: impl Into<String>) -> Self {
        Self {
            private: true,
            ..Self::public(name)
        }
    }

    /// Uses this id instead of a generated `C…` one.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The channel is archived.
    pub fn archived(mut self) -> Self {
        self.archived = true;
        self
    }

    /// The bot is not a member (public: `not_in_channel` until `conversations.join`;
    /// private: invisible, `channel_not_found`).
    pub fn without_bot(mut self) -> Self {
        self.bot_member = false;
        self
    }
}

/// A channel as the emulator holds it now.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChannelInfo {
    /// `C…`.
    pub id: String,
    /// Name without `#`.
    pub name: String,
    /// Private channel.
    pub private: bool,
    /// Archived.
    pub archived: bool,
    /// The bot is a member.
    pub bot_member: bool,
}

impl From<&ChannelState> for ChannelInfo {
    fn from(c: &ChannelState) -> Self {
        Self {
            id: c.id.clone(),
            name: c.name.clone(),
            private: c.private,
            archived: c.archived,
            bot_member: c.bot_member,
        }
    }
}

/// Configures a [`SlackEmulator`].
#[derive(Debug)]
pub struct SlackEmulatorBuilder {
    options: EmulatorOptions,
    team_name: String,
    team_domain: String,
    channels: Vec<Channel>,
    rotation: bool,
    post_interval: Option<Duration>,
    post_burst: u32,
    signing_secret: Option<String>,
}

impl Default for SlackEmulatorBuilder {
    fn default() -> Self {
        Self {
            options: EmulatorOptions::new(0x5eed),
            team_name: "Sandbox Workspace".to_owned(),
            team_domain: "sandbox".to_owned(),
            channels: Vec::new(),
            rotation: false,
            post_interval: Some(Duration::from_secs(1)),
            post_burst: 1,
            signing_secret: None,
        }
    }
}

impl SlackEmulatorBuilder {
    /// Seeds ids, tokens and fault probabilities (the default seed is fixed, so runs are
    /// reproducible).
    pub fn seed(mut self, seed: u64) -> Self {
        self.options.set_seed(seed);
        self
    }

    /// The clock for message ts, the rate limiter, token and code expiry, and signature
    /// timestamps. Default: [`TokioClock`](ml_core::clock::TokioClock) started at the
    /// wall-clock now, so it follows `tokio::time::pause()` / `advance()`.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.options.set_clock(clock);
        self
    }

    /// The workspace's name and subdomain.
    pub fn team(mut self, name: impl Into<String>, domain: impl Into<String>) -> Self {
        self.team_name = name.into();
        self.team_domain = domain.into();
        self
    }

    /// Adds a channel besides `#general`.
    pub fn channel(mut self, channel: Channel) -> Self {
        self.channels.push(channel);
        self
    }

    /// Turns OAuth token rotation on (see [`SlackEmulator::set_token_rotation`]).
    pub fn token_rotation(mut self, on: bool) -> Self {
        self.rotation = on;
        self
    }

    /// The `chat.postMessage` limit: one accepted message per channel per `interval`
    /// (default 1 s); `None` turns it off.
    pub fn post_message_interval(mut self, interval: Option<Duration>) -> Self {
        self.post_interval = interval;
        self
    }

    /// How many `chat.postMessage` calls a channel idle for long enough accepts at once
    /// (default 1: no burst, every arrival at least one interval after the previous
    /// accepted one). Slack tolerates short bursts without guaranteeing them; raise this to
    /// model a lenient day. Zero is treated as 1.
    pub fn post_message_burst(mut self, burst: u32) -> Self {
        self.post_burst = burst.max(1);
        self
    }

    /// Uses this signing secret instead of a generated one.
    pub fn signing_secret(mut self, secret: impl Into<String>) -> Self {
        self.signing_secret = Some(secret.into());
        self
    }

    /// Binds `127.0.0.1:<free port>` and starts serving.
    pub async fn start(self) -> Result<SlackEmulator> {
        let bound =
            EmulatorCore::bind(&self.options, "api/", Arc::new(web_api::fault_body)).await?;
        let mut inner = Inner::new(self.options.seed());
        inner.rotation = self.rotation;
        inner.post_interval = self.post_interval;
        inner.post_burst = self.post_burst;
        let bot_token = inner.mint_bot_token(None);
        let app_token = format!("xapp-1-{APP_ID}-{}-{}", inner.digits(13), inner.hex(64));
        inner.tokens.insert(
            app_token.clone(),
            TokenInfo {
                kind: TokenKind::App,
                revoked: false,
                expires_at: None,
                scopes: None,
            },
        );
        let signing_secret = self.signing_secret.unwrap_or_else(|| inner.hex(32));
        let identity = Identity {
            team_id: TEAM_ID.to_owned(),
            team_name: self.team_name,
            team_domain: self.team_domain,
            enterprise_id: None,
            bot_user_id: BOT_USER_ID.to_owned(),
            bot_user_name: "ml-connector".to_owned(),
            bot_id: BOT_ID.to_owned(),
            app_id: APP_ID.to_owned(),
            client_id: format!("{}.{}", inner.digits(11), inner.digits(13)),
            client_secret: inner.hex(32),
            signing_secret,
            verification_token: inner.token_part(24),
            bot_token,
            app_token,
            root_url: bound.root_url(),
        };
        let state = Arc::new(SlackState::new(
            identity,
            Arc::clone(bound.core().clock()),
            inner,
            bound.shutdown_signal(),
        ));
        let router = Router::new()
            .route("/api/{method}", any(web_api::handle))
            .route("/socket/{ticket}", get(socket::upgrade))
            .route("/commands/{team}/{id}/{secret}", post(caller::response_url))
            .with_state(state.clone());
        let emulator = SlackEmulator {
            state,
            client: ClientOptions::default().client()?,
            core: bound.serve(router),
        };
        emulator.add_channel(Channel::public("general").with_id(GENERAL_ID));
        for channel in self.channels {
            emulator.add_channel(channel);
        }
        Ok(emulator)
    }
}

impl Emulator for SlackEmulator {
    fn core(&self) -> &EmulatorCore {
        &self.core
    }

    /// `SLACK_API_URL`, `SLACK_BOT_TOKEN`, `SLACK_SIGNING_SECRET`, `SLACK_APP_TOKEN`,
    /// `SLACK_CLIENT_ID` and `SLACK_CLIENT_SECRET`.
    fn env(&self) -> Vec<(&'static str, String)> {
        let id = &self.state.identity;
        vec![
            ("SLACK_API_URL", self.base_url().to_owned()),
            ("SLACK_BOT_TOKEN", id.bot_token.clone()),
            ("SLACK_SIGNING_SECRET", id.signing_secret.clone()),
            ("SLACK_APP_TOKEN", id.app_token.clone()),
            ("SLACK_CLIENT_ID", id.client_id.clone()),
            ("SLACK_CLIENT_SECRET", id.client_secret.clone()),
        ]
    }
}

/// A Slack workspace on `127.0.0.1`: Web API, Socket Mode, and signed calls to receivers.
///
/// Dropping it stops the server.
#[derive(Debug)]
pub struct SlackEmulator {
    state: Arc<SlackState>,
    client: reqwest::Client,
    core: EmulatorCore,
}

impl SlackEmulator {
    /// Starts an emulator with the defaults: `#general` (`C00GENERAL`, bot member), real
    /// rate limit, no token rotation.
    pub async fn start() -> Result<Self> {
        Self::builder().start().await
    }

    /// Configures an emulator.
    pub fn builder() -> SlackEmulatorBuilder {
        SlackEmulatorBuilder::default()
    }

    /// `http://127.0.0.1:<port>/api/`: give it to a client as its Slack API URL; methods
    /// are at `<base_url>chat.postMessage` and so on.
    pub fn base_url(&self) -> &str {
        self.core.base_url()
    }

    /// `http://127.0.0.1:<port>/`.
    pub fn root_url(&self) -> String {
        self.state.identity.root_url.clone()
    }

    /// Stops the server and waits for it.
    pub async fn shutdown(mut self) {
        self.core.shutdown().await;
    }

    /// The fault rules and request counters (paths are `/api/<method>`, so
    /// `faults().requests("chat.postMessage")` counts that method's calls).
    pub fn faults(&self) -> &Faults {
        self.core.faults()
    }

    /// Socket Mode control.
    pub fn socket(&self) -> SocketMode {
        SocketMode {
            state: self.state.clone(),
        }
    }

    /// Sends signed requests to receivers the way Slack does.
    pub fn caller(&self) -> SlackCaller {
        SlackCaller {
            state: self.state.clone(),
            client: self.client.clone(),
        }
    }

    /// The emulator's clock.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.state.clock.clone()
    }

    /// The bot token (`xoxb-…`) installed at start.
    pub fn bot_token(&self) -> String {
        self.state.identity.bot_token.clone()
    }

    /// The app-level token (`xapp-…`) for `apps.connections.open`.
    pub fn app_token(&self) -> String {
        self.state.identity.app_token.clone()
    }

    /// The signing secret the caller signs with.
    pub fn signing_secret(&self) -> String {
        self.state.identity.signing_secret.clone()
    }

    /// The legacy verification `token` put in payloads.
    pub fn verification_token(&self) -> String {
        self.state.identity.verification_token.clone()
    }

    /// The workspace id (`T00SANDBOX`).
    pub fn team_id(&self) -> String {
        self.state.identity.team_id.clone()
    }

    /// The workspace name.
    pub fn team_name(&self) -> String {
        self.state.identity.team_name.clone()
    }

    /// The bot's user id (`U00SANDBOT`).
    pub fn bot_user_id(&self) -> String {
        self.state.identity.bot_user_id.clone()
    }

    /// The bot id (`B00SANDBOT`).
    pub fn bot_id(&self) -> String {
        self.state.identity.bot_id.clone()
    }

    /// The app id (`A00SANDAPP`).
    pub fn app_id(&self) -> String {
        self.state.identity.app_id.clone()
    }

    /// The OAuth client id.
    pub fn client_id(&self) -> String {
        self.state.identity.client_id.clone()
    }

    /// The OAuth client secret.
    pub fn client_secret(&self) -> String {
        self.state.identity.client_secret.clone()
    }

    /// Creates a channel; returns its id.
    pub fn add_channel(&self, channel: Channel) -> String {
        let created = self.state.now().as_second();
        let mut inner = self.state.lock();
        let id = channel.id.unwrap_or_else(|| inner.new_id("C"));
        inner.channels.retain(|c| c.id != id);
        inner.channels.push(ChannelState {
            id: id.clone(),
            name: channel.name.trim_start_matches('#').to_owned(),
            private: channel.private,
            archived: channel.archived,
            bot_member: channel.bot_member,
            created,
        });
        id
    }

    /// A channel by id, `#name` or name.
    pub fn channel(&self, id_or_name: &str) -> Option<ChannelInfo> {
        self.state
            .lock()
            .find_channel(id_or_name)
            .map(ChannelInfo::from)
    }

    /// A channel's id by id, `#name` or name.
    pub fn channel_id(&self, id_or_name: &str) -> Option<String> {
        self.channel(id_or_name).map(|c| c.id)
    }

    /// Archives or unarchives a channel; false when there is no such channel.
    pub fn set_archived(&self, id_or_name: &str, archived: bool) -> bool {
        self.state
            .lock()
            .find_channel_mut(id_or_name)
            .map(|c| c.archived = archived)
            .is_some()
    }

    /// Adds or removes the bot; false when there is no such channel.
    pub fn set_bot_member(&self, id_or_name: &str, member: bool) -> bool {
        self.state
            .lock()
            .find_channel_mut(id_or_name)
            .map(|c| c.bot_member = member)
            .is_some()
    }

    /// Stores a message from a person (not rate limited); returns its ts, or `None` when
    /// there is no such channel.
    pub fn post_as_user(&self, channel: &str, user_id: &str, text: &str) -> Option<String> {
        let now = self.state.now();
        let mut inner = self.state.lock();
        let channel = inner.find_channel(channel)?.id.clone();
        let ts = inner.next_ts(now);
        inner.store(StoredMessage {
            channel,
            ts: ts.clone(),
            text: text.to_owned(),
            blocks: None,
            attachments: None,
            metadata: None,
            markdown_text: None,
            thread_ts: None,
            reply_broadcast: false,
            user: user_id.to_owned(),
            bot_id: None,
            args: serde_json::Map::new(),
            edits: Vec::new(),
        });
        drop(inner);
        self.state.notify_messages();
        Some(ts)
    }

    /// Messages of a channel (id or name), oldest first, thread replies included.
    pub fn messages(&self, channel: &str) -> Vec<StoredMessage> {
        let inner = self.state.lock();
        let Some(id) = inner.find_channel(channel).map(|c| c.id.clone()) else {
            return Vec::new();
        };
        inner.messages.get(&id).cloned().unwrap_or_default()
    }

    /// Waits until `channel` holds at least `n` messages (thread replies included) and
    /// returns them. Wrap in `tokio::time::timeout`.
    pub async fn wait_for_messages(&self, channel: &str, n: usize) -> Vec<StoredMessage> {
        let mut rx = self.state.messages_changed.subscribe();
        loop {
            let messages = self.messages(channel);
            if messages.len() >= n || rx.changed().await.is_err() {
                return messages;
            }
        }
    }

    /// Every stored message, by channel then ts.
    pub fn all_messages(&self) -> Vec<StoredMessage> {
        let inner = self.state.lock();
        let mut all: Vec<StoredMessage> = inner.messages.values().flatten().cloned().collect();
        all.sort_by(|a, b| {
            (&a.channel, state::ts_key(&a.ts)).cmp(&(&b.channel, state::ts_key(&b.ts)))
        });
        all
    }

    /// How many `chat.postMessage` calls the per-channel limiter refused with HTTP 429.
    pub fn rate_limited_count(&self) -> u64 {
        self.state.lock().rate_limited
    }

    /// Calls that reached `/api/<method>` (any outcome, injected faults included).
    pub fn api_calls(&self, method: &str) -> u64 {
        self.faults().requests(&format!("/api/{method}"))
    }

    /// Changes the `chat.postMessage` limit interval (`None`: no limit).
    pub fn set_post_message_interval(&self, interval: Option<Duration>) {
        let mut inner = self.state.lock();
        inner.post_interval = interval;
        inner.next_allowed.clear();
    }

    /// Changes the `chat.postMessage` burst (see
    /// [`SlackEmulatorBuilder::post_message_burst`]).
    pub fn set_post_message_burst(&self, burst: u32) {
        let mut inner = self.state.lock();
        inner.post_burst = burst.max(1);
        inner.next_allowed.clear();
    }

    /// Caps every cursor-paginated list (`conversations.history`, `.replies`, `.list`) at
    /// `cap` items a page whatever `limit` asks (`None`: the usual maximum). Slack's
    /// pagination docs: fewer items than asked may come back before the end is reached.
    pub fn set_page_cap(&self, cap: Option<usize>) {
        self.state.lock().page_cap = cap.map(|c| c.max(1));
    }

    /// Every `chat.postMessage` that reached the rate limit check, in arrival order,
    /// accepted or refused, for all channels (filter by [`PostArrival::channel`]).
    pub fn post_arrivals(&self) -> Vec<PostArrival> {
        self.state.lock().post_arrivals.clone()
    }

    /// The arrivals on one channel (id or name), in order.
    pub fn post_arrivals_in(&self, channel: &str) -> Vec<PostArrival> {
        let inner = self.state.lock();
        let Some(id) = inner.find_channel(channel).map(|c| c.id.clone()) else {
            return Vec::new();
        };
        inner
            .post_arrivals
            .iter()
            .filter(|a| a.channel == id)
            .cloned()
            .collect()
    }

    /// Mints another valid bot token (every scope).
    pub fn add_bot_token(&self) -> String {
        self.state.lock().mint_bot_token(None)
    }

    /// Mints a bot token with only these scopes (comma list, e.g. `"commands"`): methods
    /// needing another answer `missing_scope` with `needed` and `provided`.
    pub fn add_bot_token_with_scopes(&self, scopes: &str) -> String {
        self.state.lock().mint_scoped_bot_token(None, Some(scopes))
    }

    /// Revokes a token (its calls answer `token_revoked`); false when unknown.
    pub fn revoke_token(&self, token: &str) -> bool {
        self.state
            .lock()
            .tokens
            .get_mut(token)
            .map(|t| t.revoked = true)
            .is_some()
    }

    /// Expires a token now (its calls answer `token_expired`); false when unknown.
    pub fn expire_token(&self, token: &str) -> bool {
        let now = self.state.now();
        self.state
            .lock()
            .tokens
            .get_mut(token)
            .map(|t| t.expires_at = Some(now))
            .is_some()
    }

    /// Turns token rotation on or off for the next `oauth.v2.access` answers: on, access
    /// tokens are `xoxe.xoxb-1-…` expiring after 12 h (`expires_in: 43200`) with a
    /// single-use `refresh_token` (`xoxe-1-…`) for `grant_type=refresh_token`.
    pub fn set_token_rotation(&self, on: bool) {
        self.state.lock().rotation = on;
    }

    /// Issues an OAuth code for `oauth.v2.access` (as if a user had approved the install),
    /// with [`DEFAULT_SCOPES`]. When `redirect_uri` is given, the exchange must send the same.
    pub fn issue_oauth_code(&self, redirect_uri: Option<&str>) -> String {
        self.issue_oauth_code_with(redirect_uri, DEFAULT_SCOPES, DEFAULT_INSTALLER)
    }

    /// [`issue_oauth_code`](Self::issue_oauth_code) with the granted scopes (comma list) and
    /// the installing user.
    pub fn issue_oauth_code_with(
        &self,
        redirect_uri: Option<&str>,
        scopes: &str,
        user_id: &str,
    ) -> String {
        let now = self.state.now();
        let mut inner = self.state.lock();
        let code = format!(
            "{}.{}.{}",
            inner.digits(11),
            inner.digits(13),
            inner.hex(64)
        );
        inner.codes.insert(
            code.clone(),
            CodeInfo {
                redirect_uri: redirect_uri.map(str::to_owned),
                scopes: scopes.to_owned(),
                user_id: user_id.to_owned(),
                expires_at: ml_core::clock::add(now, OAUTH_CODE_LIFETIME),
                used: false,
            },
        );
        code
    }

    /// Everything receivers posted to `response_url`s, in order.
    pub fn response_url_posts(&self) -> Vec<ResponseUrlPost> {
        self.state.lock().response_posts.clone()
    }
}
