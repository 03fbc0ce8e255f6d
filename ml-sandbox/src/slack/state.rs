//! The emulated workspace: identity, tokens, channels, messages, OAuth codes, the limiter.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use ml_core::clock::Clock;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use super::socket::SocketInner;
use crate::server::ShutdownSignal;

/// The fixed names and ids of the emulated workspace and app.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub(crate) team_id: String,
    pub(crate) team_name: String,
    pub(crate) team_domain: String,
    pub(crate) enterprise_id: Option<String>,
    pub(crate) bot_user_id: String,
    pub(crate) bot_user_name: String,
    pub(crate) bot_id: String,
    pub(crate) app_id: String,
    pub(crate) client_id: String,
    pub(crate) client_secret: String,
    pub(crate) signing_secret: String,
    pub(crate) verification_token: String,
    pub(crate) bot_token: String,
    pub(crate) app_token: String,
    /// `http://127.0.0.1:<port>/`.
    pub(crate) root_url: String,
}

/// What a token is and whether it still works.
#[derive(Debug, Clone)]
pub(crate) struct TokenInfo {
    pub(crate) kind: TokenKind,
    pub(crate) revoked: bool,
    pub(crate) expires_at: Option<Timestamp>,
    /// Granted scopes; `None` grants everything.
    pub(crate) scopes: Option<Vec<String>>,
}

/// Kinds of token the emulator knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenKind {
    /// `xoxb-…` or, with rotation, `xoxe.xoxb-…`.
    Bot,
    /// `xapp-…`.
    App,
}

/// A channel, as the emulator keeps it.
#[derive(Debug, Clone)]
pub(crate) struct ChannelState {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) private: bool,
    pub(crate) archived: bool,
    pub(crate) bot_member: bool,
    pub(crate) created: i64,
}

/// A previous version of an edited message.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Edit {
    /// When the edit happened (a Slack-style ts).
    pub edited_ts: String,
    /// Who edited.
    pub user: String,
    /// The text before the edit.
    pub previous_text: String,
    /// The blocks before the edit.
    pub previous_blocks: Option<Value>,
    /// The metadata before the edit.
    pub previous_metadata: Option<Value>,
}

/// A message the emulator accepted (by `chat.postMessage`, a `response_url`, or
/// [`post_as_user`](super::SlackEmulator::post_as_user)), in its current version.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct StoredMessage {
    /// Channel id (`C…`).
    pub channel: String,
    /// The message's `ts` (`"1712345678.000100"`), unique and increasing.
    pub ts: String,
    /// `text` as posted (empty when only blocks/attachments were sent).
    pub text: String,
    /// `blocks`, parsed.
    pub blocks: Option<Value>,
    /// `attachments`, parsed.
    pub attachments: Option<Value>,
    /// `metadata` (`{"event_type","event_payload"}`), parsed.
    pub metadata: Option<Value>,
    /// `markdown_text`, when that was used instead of `text`.
    pub markdown_text: Option<String>,
    /// The parent's ts when this is a thread reply.
    pub thread_ts: Option<String>,
    /// `reply_broadcast` of a thread reply.
    pub reply_broadcast: bool,
    /// The author's user id (the bot user for the bot's messages).
    pub user: String,
    /// The bot id when the bot posted it.
    pub bot_id: Option<String>,
    /// Every argument of the request that created the message (`unfurl_links`, `mrkdwn`,
    /// `username`, ...), as received (form values are strings).
    pub args: Map<String, Value>,
    /// Earlier versions, oldest first (one per `chat.update`).
    pub edits: Vec<Edit>,
}

impl StoredMessage {
    /// The ts of the last edit, if any.
    pub fn edited_ts(&self) -> Option<&str> {
        self.edits.last().map(|e| e.edited_ts.as_str())
    }

    /// The message as Slack shows it in API answers.
    pub(crate) fn to_json(
        &self,
        identity: &Identity,
        include_metadata: bool,
        replies: &[&StoredMessage],
    ) -> Value {
        let mut m = Map::new();
        m.insert("type".into(), json!("message"));
        m.insert("text".into(), json!(self.text));
        m.insert("user".into(), json!(self.user));
        m.insert("ts".into(), json!(self.ts));
        m.insert("team".into(), json!(identity.team_id));
        if let Some(bot_id) = &self.bot_id {
            m.insert("bot_id".into(), json!(bot_id));
            m.insert("app_id".into(), json!(identity.app_id));
            m.insert(
                "bot_profile".into(),
                json!({
                    "id": bot_id,
                    "app_id": identity.app_id,
                    "name": identity.bot_user_name,
                    "deleted": false,
                    "team_id": identity.team_id,
                }),
            );
        }
        if let Some(blocks) = &self.blocks {
            m.insert("blocks".into(), blocks.clone());
        }
        if let Some(attachments) = &self.attachments {
            m.insert("attachments".into(), attachments.clone());
        }
        if include_metadata && let Some(metadata) = &self.metadata {
            m.insert("metadata".into(), metadata.clone());
        }
        if let Some(last) = self.edits.last() {
            m.insert(
                "edited".into(),
                json!({"user": last.user, "ts": last.edited_ts}),
            );
        }
        if let Some(thread_ts) = &self.thread_ts {
            m.insert("thread_ts".into(), json!(thread_ts));
            if self.reply_broadcast {
                m.insert("subtype".into(), json!("thread_broadcast"));
            }
        } else if !replies.is_empty() {
            m.insert("thread_ts".into(), json!(self.ts));
            m.insert("reply_count".into(), json!(replies.len()));
            let mut users: Vec<&str> = replies.iter().map(|r| r.user.as_str()).collect();
            users.dedup();
            m.insert("reply_users".into(), json!(users));
            if let Some(last) = replies.last() {
                m.insert("latest_reply".into(), json!(last.ts));
            }
        }
        Value::Object(m)
    }
}

/// An OAuth code issued by a test.
#[derive(Debug, Clone)]
pub(crate) struct CodeInfo {
    pub(crate) redirect_uri: Option<String>,
    pub(crate) scopes: String,
    pub(crate) user_id: String,
    pub(crate) expires_at: Timestamp,
    pub(crate) used: bool,
}

/// Something posted to a `response_url` (from a slash command or an interaction).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ResponseUrlPost {
    /// The `response_url` that was used.
    pub url: String,
    /// The `Content-Type` of the post.
    pub content_type: String,
    /// The body, parsed as JSON (`Value::String` with the raw body when it was not JSON).
    pub body: Value,
}

/// One `chat.postMessage` that reached the per-channel rate limit check (auth, content and
/// channel were valid), at the instant the emulator handled it: its arrival.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PostArrival {
    /// The channel id.
    pub channel: String,
    /// When the request arrived (the emulator's clock).
    pub at: Timestamp,
    /// Accepted (`false`: refused with HTTP 429 `ratelimited`).
    pub accepted: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct ResponseUrlState {
    pub(crate) channel: String,
    pub(crate) created: Timestamp,
    pub(crate) uses: u32,
}

/// Everything mutable, behind one lock (never held across an await).
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) rng: StdRng,
    pub(crate) tokens: HashMap<String, TokenInfo>,
    pub(crate) channels: Vec<ChannelState>,
    pub(crate) messages: HashMap<String, Vec<StoredMessage>>,
    pub(crate) last_ts_micros: i64,
    /// Per channel, the theoretical arrival time of the GCRA that paces `chat.postMessage`.
    pub(crate) next_allowed: HashMap<String, Timestamp>,
    pub(crate) rate_limited: u64,
    pub(crate) post_interval: Option<Duration>,
    pub(crate) post_burst: u32,
    /// Most items a cursor-paginated list returns, whatever `limit` asks.
    pub(crate) page_cap: Option<usize>,
    pub(crate) post_arrivals: Vec<PostArrival>,
    pub(crate) rotation: bool,
    pub(crate) codes: HashMap<String, CodeInfo>,
    /// Refresh token -> `(scopes, installing user)` while still valid, `None` once used.
    pub(crate) refresh_tokens: HashMap<String, Option<(String, String)>>,
    pub(crate) response_urls: HashMap<String, ResponseUrlState>,
    pub(crate) response_posts: Vec<ResponseUrlPost>,
    pub(crate) socket: SocketInner,
}

/// The emulator's shared state.
#[derive(Debug)]
pub(crate) struct SlackState {
    pub(crate) identity: Identity,
    pub(crate) clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
    /// Bumped on every Socket Mode change (connection, ack), for waiters.
    pub(crate) socket_changed: watch::Sender<u64>,
    /// Fires when the server stops (ends the WebSocket tasks).
    pub(crate) shutdown: ShutdownSignal,
    /// Bumped whenever a message is stored or edited, for waiters.
    pub(crate) messages_changed: watch::Sender<u64>,
}

/// Upper-case letters and digits, like Slack ids.
const ID_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const TOKEN_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

pub(crate) fn random_string(rng: &mut StdRng, chars: &[u8], len: usize) -> String {
    (0..len)
        .map(|_| char::from(chars[rng.random_range(0..chars.len())]))
        .collect()
}

impl Inner {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            tokens: HashMap::new(),
            channels: Vec::new(),
            messages: HashMap::new(),
            last_ts_micros: 0,
            next_allowed: HashMap::new(),
            rate_limited: 0,
            post_interval: Some(Duration::from_secs(1)),
            post_burst: 1,
            page_cap: None,
            post_arrivals: Vec::new(),
            rotation: false,
            codes: HashMap::new(),
            refresh_tokens: HashMap::new(),
            response_urls: HashMap::new(),
            response_posts: Vec::new(),
            socket: SocketInner::default(),
        }
    }

    /// The per-channel `chat.postMessage` limit at arrival `now`: a GCRA of one message per
    /// `post_interval` with `post_burst` at once. Records the arrival either way; a refusal
    /// answers the whole seconds until the channel is ready (rounded up, at least 1).
    pub(crate) fn check_post_rate(&mut self, channel: &str, now: Timestamp) -> Result<(), u64> {
        let Some(interval) = self.post_interval else {
            self.record_arrival(channel, now, true);
            return Ok(());
        };
        let tolerance = interval.saturating_mul(self.post_burst.max(1) - 1);
        let tat = self.next_allowed.get(channel).copied().unwrap_or(now);
        let ready_at = ml_core::clock::sub(tat, tolerance);
        if now < ready_at {
            self.rate_limited += 1;
            self.record_arrival(channel, now, false);
            let wait = ml_core::clock::until(now, ready_at);
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            return Err(secs.max(1));
        }
        self.next_allowed.insert(
            channel.to_owned(),
            ml_core::clock::add(tat.max(now), interval),
        );
        self.record_arrival(channel, now, true);
        Ok(())
    }

    fn record_arrival(&mut self, channel: &str, at: Timestamp, accepted: bool) {
        self.post_arrivals.push(PostArrival {
            channel: channel.to_owned(),
            at,
            accepted,
        });
    }

    /// A Slack-like id: `prefix` + 10 upper-case letters and digits.
    pub(crate) fn new_id(&mut self, prefix: &str) -> String {
        format!("{prefix}{}", random_string(&mut self.rng, ID_CHARS, 10))
    }

    /// Random token characters.
    pub(crate) fn token_part(&mut self, len: usize) -> String {
        random_string(&mut self.rng, TOKEN_CHARS, len)
    }

    /// Random decimal digits.
    pub(crate) fn digits(&mut self, len: usize) -> String {
        random_string(&mut self.rng, b"0123456789", len)
    }

    /// Random lower-case hex.
    pub(crate) fn hex(&mut self, len: usize) -> String {
        random_string(&mut self.rng, b"0123456789abcdef", len)
    }

    /// A fresh bot token (`xoxb-<team>-<bot>-<24>`), registered as valid, with every scope.
    pub(crate) fn mint_bot_token(&mut self, expires_at: Option<Timestamp>) -> String {
        self.mint_scoped_bot_token(expires_at, None)
    }

    /// A fresh bot token with these scopes (`None`: every scope).
    pub(crate) fn mint_scoped_bot_token(
        &mut self,
        expires_at: Option<Timestamp>,
        scopes: Option<&str>,
    ) -> String {
        let prefix = if expires_at.is_some() {
            "xoxe.xoxb-1-"
        } else {
            "xoxb-"
        };
        let token = format!(
            "{prefix}{}-{}-{}",
            self.digits(11),
            self.digits(13),
            self.token_part(24)
        );
        self.tokens.insert(
            token.clone(),
            TokenInfo {
                kind: TokenKind::Bot,
                revoked: false,
                expires_at,
                scopes: scopes.map(split_scopes),
            },
        );
        token
    }

    /// The next message ts: the clock's microseconds, bumped past the last one issued.
    pub(crate) fn next_ts(&mut self, now: Timestamp) -> String {
        let micros = now.as_microsecond().max(self.last_ts_micros + 1);
        self.last_ts_micros = micros;
        format_ts(micros)
    }

    pub(crate) fn find_channel(&self, id_or_name: &str) -> Option<&ChannelState> {
        let name = id_or_name.strip_prefix('#').unwrap_or(id_or_name);
        self.channels
            .iter()
            .find(|c| c.id == id_or_name)
            .or_else(|| self.channels.iter().find(|c| c.name == name))
    }

    pub(crate) fn find_channel_mut(&mut self, id_or_name: &str) -> Option<&mut ChannelState> {
        let id = self.find_channel(id_or_name)?.id.clone();
        self.channels.iter_mut().find(|c| c.id == id)
    }

    /// Inserts a message, keeping the channel's list sorted by ts.
    pub(crate) fn store(&mut self, message: StoredMessage) {
        let list = self.messages.entry(message.channel.clone()).or_default();
        let at = list.partition_point(|m| ts_key(&m.ts) <= ts_key(&message.ts));
        list.insert(at, message);
    }
}

/// `"chat:write, commands"` -> `["chat:write", "commands"]`.
pub(crate) fn split_scopes(scopes: &str) -> Vec<String> {
    scopes
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `1712345678000100` µs -> `"1712345678.000100"`.
pub(crate) fn format_ts(micros: i64) -> String {
    format!(
        "{}.{:06}",
        micros.div_euclid(1_000_000),
        micros.rem_euclid(1_000_000)
    )
}

/// Parses a Slack ts (`"1712345678.000100"`, `"1712345678"`, `"1712345678.5"`) to µs.
pub(crate) fn parse_ts(ts: &str) -> Option<i64> {
    let (secs, frac) = ts.split_once('.').unwrap_or((ts, ""));
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = secs.parse().ok()?;
    let micros: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<6}").parse().ok()?
    };
    secs.checked_mul(1_000_000)?.checked_add(micros)
}

/// Sort key of a stored ts (always well formed).
pub(crate) fn ts_key(ts: &str) -> i64 {
    parse_ts(ts).unwrap_or(0)
}

impl SlackState {
    pub(crate) fn new(
        identity: Identity,
        clock: Arc<dyn Clock>,
        inner: Inner,
        shutdown: ShutdownSignal,
    ) -> Self {
        let (socket_changed, _) = watch::channel(0);
        let (messages_changed, _) = watch::channel(0);
        Self {
            messages_changed,
            identity,
            clock,
            inner: Mutex::new(inner),
            socket_changed,
            shutdown,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Wakes the waiters on messages (call after releasing the lock).
    pub(crate) fn notify_messages(&self) {
        self.messages_changed
            .send_modify(|n| *n = n.wrapping_add(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millisecond(1_800_000_000_000 + ms).expect("ts")
    }

    #[test]
    fn post_rate_is_a_gcra_at_arrival() {
        let mut inner = Inner::new(1);
        assert_eq!(inner.check_post_rate("C1", at(0)), Ok(()));
        assert_eq!(inner.check_post_rate("C1", at(999)), Err(1), "1 ms early");
        assert_eq!(inner.check_post_rate("C2", at(999)), Ok(()), "own budget");
        assert_eq!(inner.check_post_rate("C1", at(1000)), Ok(()));
        // A refusal does not consume: the next second is free again.
        assert_eq!(inner.check_post_rate("C1", at(2000)), Ok(()));
        let accepted: Vec<bool> = inner.post_arrivals.iter().map(|a| a.accepted).collect();
        assert_eq!(accepted, [true, false, true, true, true]);
        assert_eq!(inner.rate_limited, 1);

        // Bursts of 3: an idle channel takes three at once, then one per interval.
        inner.post_burst = 3;
        for _ in 0..3 {
            assert_eq!(inner.check_post_rate("C3", at(0)), Ok(()));
        }
        assert_eq!(inner.check_post_rate("C3", at(0)), Err(1));
        assert_eq!(inner.check_post_rate("C3", at(1000)), Ok(()));
        assert_eq!(inner.check_post_rate("C3", at(1500)), Err(1), "500 ms left");

        inner.post_interval = None;
        assert_eq!(inner.check_post_rate("C3", at(1500)), Ok(()));
    }
}
