//! [`SlackSink`]: delivers rendered records with `chat.postMessage` (or `chat.update`), and
//! reconciles in-doubt posts through their message metadata.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use ml_core::clock;
use ml_core::record::Record;
use ml_core::render::{Rendered, Renderer};
use ml_core::sink::{Destination, DestinationCheck, Outbound, Receipt, Reconciled, Sink};
use ml_core::{Error, ErrorClass, Result};
use serde_json::{Value, json};

use crate::client::{HistoryRequest, MessageMetadata, PostMessage, SlackClient, UpdateMessage};
use crate::error::SlackError;
use crate::ids::{ChannelId, Ts, normalize_channel_name};
use crate::render::{MAX_TEXT, enforce_limits, truncate_marked};

/// The `event_type` of the metadata on every message the sink posts.
pub const METADATA_EVENT_TYPE: &str = "ml_connector_delivery";

/// The rate-limiter key prefix of the sink (`slack:C0123…`).
pub const RATE_KEY_PREFIX: &str = "slack:";

/// What a later version of an already posted record does (`Outbound::thread` is set).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UpdateMode {
    /// Reply in the thread of the first post (`thread_ts`). The default.
    #[default]
    Thread,
    /// Reply in the thread and also show the reply in the channel (`reply_broadcast`).
    ThreadBroadcast,
    /// Edit the first post in place (`chat.update`); the first post keeps its metadata.
    Edit,
}

/// How `reconcile` looks for an in-doubt post.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReconcileOptions {
    /// Allowance for clock skew between this host and Slack: the history is searched from
    /// the delivery's planning time ([`Outbound::planned_at`]) minus this (default 5
    /// minutes). No post for a delivery can be older than its planning.
    pub clock_skew: Duration,
    /// Messages per history page (default 200).
    pub page_size: u32,
    /// How far to read, in pages of `page_size` (default 25, i.e. 5,000 messages; Slack
    /// serving smaller pages than asked means more, smaller pages for the same messages).
    /// When the window is not covered by then, `reconcile` fails as inconclusive rather
    /// than guess.
    pub max_pages: u32,
}

impl ReconcileOptions {
    /// The most messages a look-up reads: `page_size` x `max_pages`.
    pub fn message_budget(&self) -> usize {
        (self.page_size.max(1) as usize).saturating_mul(self.max_pages.max(1) as usize)
    }
}

impl Default for ReconcileOptions {
    fn default() -> Self {
        Self {
            clock_skew: Duration::from_secs(300),
            page_size: 200,
            max_pages: 25,
        }
    }
}

/// The Slack sink. Build it with [`crate::SlackBuilder`].
///
/// * `send` posts `chat.postMessage` with a JSON body: the rendered fallback `text`, the
///   Block Kit `blocks` from [`Rendered::body`] (kept within Slack's limits), metadata
///   naming the delivery, and `thread_ts` when an earlier version of the record was posted
///   to the same destination ([`UpdateMode`]). The receipt is the message's `ts`, scoped by
///   the channel id.
/// * `reconcile` reads `conversations.history` (or `conversations.replies` for a thread
///   reply) with `include_all_metadata=true` over a bounded window, looking for the
///   delivery's metadata.
/// * `rate_key` is `slack:<channel id>`, or `slack:#name` for a name whose id the sink does
///   not know yet (see [`Sink::rate_key`](SlackSink::rate_key) below).
/// * `Display` is `Slack(<team id>)` once `healthcheck` ran `auth.test`, `Slack(<api
///   host>)` before.
pub struct SlackSink {
    client: SlackClient,
    renderer: Arc<dyn Renderer>,
    update_mode: UpdateMode,
    reconcile: ReconcileOptions,
    instance: Option<String>,
    unfurl: bool,
    join_channels: bool,
    host: String,
    team: RwLock<Option<String>>,
    channel_ids: RwLock<HashMap<String, ChannelId>>,
    /// When `conversations.list` was last read to the end: a name missing from it is not
    /// looked up again for [`RELIST_AFTER`] (the method is Tier 2, about 20 calls a minute,
    /// and a workspace's list can take many pages).
    listed_at: std::sync::Mutex<Option<tokio::time::Instant>>,
}

/// How long a complete `conversations.list` answers for names it did not contain.
const RELIST_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

impl SlackSink {
    pub(crate) fn new(
        client: SlackClient,
        renderer: Arc<dyn Renderer>,
        update_mode: UpdateMode,
        reconcile: ReconcileOptions,
        instance: Option<String>,
        unfurl: bool,
    ) -> Self {
        let host = client.base().host_str().unwrap_or("slack").to_owned();
        let host = match client.base().port() {
            Some(p) => format!("{host}:{p}"),
            None => host,
        };
        Self {
            client,
            renderer,
            update_mode,
            reconcile,
            instance,
            unfurl,
            join_channels: true,
            host,
            team: RwLock::new(None),
            channel_ids: RwLock::new(HashMap::new()),
            listed_at: std::sync::Mutex::new(None),
        }
    }

    /// Replaces the renderer (the default is [`crate::render::BlockKitRenderer`]).
    pub fn with_renderer(mut self, renderer: Arc<dyn Renderer>) -> Self {
        self.renderer = renderer;
        self
    }

    /// The Web API client.
    pub fn client(&self) -> &SlackClient {
        &self.client
    }

    /// The update mode.
    pub fn update_mode(&self) -> UpdateMode {
        self.update_mode
    }

    /// The workspace id, once `healthcheck` ran.
    pub fn team_id(&self) -> Option<String> {
        self.team
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn system(&self) -> String {
        self.to_string()
    }

    fn err(&self, e: SlackError) -> Error {
        e.into_core(&self.system())
    }

    fn cached_id(&self, address: &str) -> Option<ChannelId> {
        if ChannelId::looks_like_id(address.trim()) {
            return Some(ChannelId(address.trim().to_owned()));
        }
        self.channel_ids
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&normalize_channel_name(address))
            .cloned()
    }

    fn learn(&self, address: &str, id: &ChannelId) {
        if ChannelId::looks_like_id(address.trim()) {
            return;
        }
        let name = normalize_channel_name(address);
        let mut ids = self
            .channel_ids
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if ids.get(&name) != Some(id) {
            tracing::debug!(channel = %name, id = %id, "learned channel id");
            ids.insert(name, id.clone());
        }
    }

    /// Whether a post answering `not_in_channel` joins the channel and posts again.
    pub(crate) fn with_join_channels(mut self, on: bool) -> Self {
        self.join_channels = on;
        self
    }

    /// Joins the public channel of `address` (its id resolved when it is a name), for a
    /// post that answered `not_in_channel`: nothing was posted, so posting again is safe.
    async fn join(&self, address: &str) -> Result<()> {
        let id = self.resolve_channel(address).await?;
        self.client
            .join_conversation(&id)
            .await
            .map_err(|e| self.err(e))?;
        tracing::info!(channel = %address, id = %id, "joined the channel to post in it");
        Ok(())
    }

    /// Tells the sink a channel's id, so names are keyed and posted by id from the start.
    pub fn remember_channel(&self, name: &str, id: &ChannelId) {
        self.learn(name, id);
    }

    /// The channel id of an address: itself when it is an id, the cached id of a name, or
    /// else looked up with `conversations.list` (needs `channels:read` / `groups:read`).
    pub async fn resolve_channel(&self, address: &str) -> Result<ChannelId> {
        if let Some(id) = self.cached_id(address) {
            return Ok(id);
        }
        let want = normalize_channel_name(address);
        let not_found = || {
            self.err(SlackError::Api {
                method: "conversations.list".into(),
                code: "channel_not_found".into(),
                detail: Some(format!("no channel named `{want}` is visible to the bot")),
                class: ErrorClass::Permanent,
            })
        };
        let listed = *self
            .listed_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(left) = listed.and_then(|t| RELIST_AFTER.checked_sub(t.elapsed())) {
            // Not in the listing of a moment ago: asked again once it may be listed anew
            // (a channel created since then is found then; a missing one is refused then).
            return Err(self.err(SlackError::Api {
                method: "conversations.list".into(),
                code: "channel_not_found".into(),
                detail: Some(format!(
                    "no channel named `{want}` in the channel list of a moment ago"
                )),
                class: ErrorClass::Retryable {
                    retry_after: Some(left),
                },
            }));
        }
        let mut cursor: Option<String> = None;
        for _ in 0..50 {
            let page = self
                .client
                .list_conversations(cursor.as_deref(), 1000)
                .await
                .map_err(|e| self.err(e))?;
            for c in &page.channels {
                if let Some(name) = &c.name {
                    self.learn(name, &c.id);
                }
            }
            if let Some(id) = self.cached_id(address) {
                return Ok(id);
            }
            if let Some(c) = page.next_cursor {
                cursor = Some(c);
            } else {
                *self
                    .listed_at
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(tokio::time::Instant::now());
                break;
            }
        }
        Err(not_found())
    }

    fn metadata(&self, msg: &Outbound) -> MessageMetadata {
        let mut payload = json!({
            "delivery_id": msg.delivery_id,
            "record_key": msg.record_key,
            "stream": msg.stream,
        });
        if let Some(i) = &self.instance {
            payload["instance"] = Value::String(i.clone());
        }
        MessageMetadata {
            event_type: METADATA_EVENT_TYPE.to_owned(),
            event_payload: payload,
        }
    }

    fn content(rendered: &Rendered, record_key: &str) -> (String, Option<Value>) {
        let text = if rendered.text.trim().is_empty() {
            rendered
                .subject
                .clone()
                .unwrap_or_else(|| record_key.to_owned())
        } else {
            rendered.text.clone()
        };
        let text = truncate_marked(&text, MAX_TEXT).into_owned();
        let blocks = rendered
            .body
            .clone()
            .map(enforce_limits)
            .filter(|b| b.as_array().is_some_and(|a| !a.is_empty()));
        (text, blocks)
    }

    /// The `chat.postMessage` request `send` makes for `msg` (no network).
    pub fn post_request(&self, msg: &Outbound) -> PostMessage {
        let (text, blocks) = Self::content(&msg.rendered, &msg.record_key);
        let (channel, thread) = match &msg.thread {
            Some(t) => (
                t.remote_scope
                    .clone()
                    .or_else(|| self.cached_id(&msg.destination.address).map(|c| c.0))
                    .unwrap_or_else(|| channel_arg(&msg.destination.address)),
                Some(Ts(t.remote_id.clone())),
            ),
            None => (
                self.cached_id(&msg.destination.address)
                    .map_or_else(|| channel_arg(&msg.destination.address), |c| c.0),
                None,
            ),
        };
        let mut req = PostMessage::new(channel, text)
            .with_metadata(self.metadata(msg))
            .with_unfurl(self.unfurl);
        if let Some(b) = blocks {
            req = req.with_blocks(b);
        }
        if let Some(ts) = thread {
            req = req.with_thread_ts(ts);
            if self.update_mode == UpdateMode::ThreadBroadcast {
                req = req.with_reply_broadcast(true);
            }
        }
        req
    }

    /// The `chat.update` request `send` makes for `msg` in [`UpdateMode::Edit`], when the
    /// record was posted before (no network).
    pub fn update_request(&self, msg: &Outbound) -> Option<UpdateMessage> {
        let thread = msg.thread.as_ref()?;
        let channel = thread
            .remote_scope
            .clone()
            .or_else(|| self.cached_id(&msg.destination.address).map(|c| c.0))?;
        let (text, blocks) = Self::content(&msg.rendered, &msg.record_key);
        let mut req = UpdateMessage::new(channel, Ts(thread.remote_id.clone()), text);
        if let Some(b) = blocks {
            req = req.with_blocks(b);
        }
        Some(req)
    }

    async fn find_in_history(&self, msg: &Outbound) -> Result<Reconciled> {
        let channel = match msg.thread.as_ref().and_then(|t| t.remote_scope.clone()) {
            Some(c) => ChannelId(c),
            None => self.resolve_channel(&msg.destination.address).await?,
        };
        let oldest = clock::sub(msg.planned_at, self.reconcile.clock_skew);
        let mut req = HistoryRequest::new(channel.clone())
            .with_oldest(oldest)
            .with_limit(self.reconcile.page_size)
            .with_metadata(true);
        if let Some(t) = &msg.thread {
            req = req.with_thread(Ts(t.remote_id.clone()));
        }
        // The budget is in messages, not pages: Slack may serve fewer than asked before
        // the end, and a window a capped page size leaves uncovered would be an
        // inconclusive look-up (a re-send counted as after doubt) where reading on finds
        // the post. Pages are bounded too, against a cursor that never ends.
        let budget = self.reconcile.message_budget();
        let most_pages = self.reconcile.max_pages.max(1).saturating_mul(20);
        let (mut read, mut pages) = (0usize, 0u32);
        while read < budget && pages < most_pages {
            let page = self.client.history(&req).await.map_err(|e| self.err(e))?;
            pages += 1;
            read += page.messages.len();
            if let Some(found) = page
                .messages
                .iter()
                .find(|m| self.is_ours(m.metadata.as_ref(), msg))
            {
                tracing::info!(delivery = msg.delivery_id.0, ts = %found.ts, "reconcile found the post");
                return Ok(Reconciled::Found(
                    Receipt::new(found.ts.0.clone()).with_scope(channel.0),
                ));
            }
            match page.next_cursor {
                Some(c) => req = req.with_cursor(c),
                None => return Ok(Reconciled::NotFound),
            }
        }
        Err(self.err(SlackError::ReconcileInconclusive(format!(
            "delivery {} not found in the first {read} messages ({pages} pages) of {}; the window was not covered",
            msg.delivery_id, channel
        ))))
    }

    fn is_ours(&self, meta: Option<&MessageMetadata>, msg: &Outbound) -> bool {
        let Some(m) = meta else { return false };
        if m.event_type != METADATA_EVENT_TYPE {
            return false;
        }
        let p = &m.event_payload;
        let id_matches = match p.get("delivery_id") {
            Some(Value::Number(n)) => n.as_i64() == Some(msg.delivery_id.0),
            Some(Value::String(s)) => s.parse::<i64>().ok() == Some(msg.delivery_id.0),
            _ => false,
        };
        id_matches
            && p.get("record_key").and_then(Value::as_str) == Some(msg.record_key.as_str())
            && p.get("stream").and_then(Value::as_str) == Some(msg.stream.as_str())
            && p.get("instance").and_then(Value::as_str) == self.instance.as_deref()
    }
}

/// A channel argument for `chat.postMessage`: ids as they are, names with one `#`.
fn channel_arg(address: &str) -> String {
    let a = address.trim();
    if ChannelId::looks_like_id(a) {
        a.to_owned()
    } else {
        format!("#{}", normalize_channel_name(a))
    }
}

/// Slack's pace for posts to one channel (about one message a second).
const CHANNEL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

#[async_trait]
impl Sink for SlackSink {
    fn credentials_refused(&self, e: &Error) -> bool {
        match e {
            Error::Auth {
                class: ErrorClass::Permanent,
                ..
            } => true,
            Error::Remote {
                class: ErrorClass::Permanent,
                code: Some(code),
                ..
            } => crate::error::TOKEN_REFUSED.contains(&code.as_str()),
            _ => false,
        }
    }

    async fn send(&self, msg: &Outbound) -> Result<Receipt> {
        if self.update_mode == UpdateMode::Edit
            && let Some(req) = self.update_request(msg)
        {
            let done = self
                .client
                .update_message(&req)
                .await
                .map_err(|e| self.err(e))?;
            return Ok(Receipt::new(done.ts.0).with_scope(done.channel.0));
        }
        let req = self.post_request(msg);
        let posted = match self.client.post_message(&req).await {
            Ok(p) => p,
            Err(e) if self.join_channels && e.code() == Some("not_in_channel") => {
                let refused_at = tokio::time::Instant::now();
                match self.join(&msg.destination.address).await {
                    Ok(()) => {
                        // The refused post reached the channel's budget too (as the server
                        // counts arrivals): the second waits the channel's interval.
                        tokio::time::sleep_until(refused_at + CHANNEL_INTERVAL).await;
                        self.client
                            .post_message(&req)
                            .await
                            .map_err(|e| self.err(e))?
                    }
                    Err(join) => {
                        tracing::warn!(channel = %msg.destination.address, error = %join, "cannot join the channel");
                        // Nothing was posted. A join refused for good leaves Slack's own
                        // answer (`not_in_channel`, with what to do); a join that may work
                        // later (rate limited, 5xx, a dropped connection) keeps its class and
                        // its Retry-After, so the delivery is retried, not failed.
                        return Err(match join.class() {
                            ErrorClass::Permanent => self.err(e),
                            ErrorClass::InDoubt => Error::remote(
                                self.system(),
                                ErrorClass::RETRYABLE,
                                format!("joining the channel to post in it: {join}"),
                            ),
                            ErrorClass::Retryable { .. } => join,
                        });
                    }
                }
            }
            Err(e) => return Err(self.err(e)),
        };
        self.learn(&msg.destination.address, &posted.channel);
        Ok(Receipt::new(posted.ts.0).with_scope(posted.channel.0))
    }

    fn can_reconcile(&self) -> bool {
        true
    }

    async fn reconcile(&self, msg: &Outbound) -> Result<Reconciled> {
        if self.update_mode == UpdateMode::Edit && msg.thread.is_some() {
            // Editing again is harmless: an in-doubt edit is simply repeated.
            return Ok(Reconciled::NotFound);
        }
        self.find_in_history(msg).await
    }

    /// `slack:<channel id>` once the channel's id is known (the destination is an id, a
    /// reply named it, [`remember_channel`](SlackSink::remember_channel) or
    /// [`resolve_channel`](SlackSink::resolve_channel) taught it), else `slack:#name`
    /// (normalised, so `#Finance` and `finance` share it).
    ///
    /// No `conversations.list` is needed (a bot without `channels:read` works the same):
    /// the first post to an unknown name goes out alone under `slack:#name`, its reply
    /// names the channel id, and the pipeline then reports that send as completed under
    /// both keys ([`RateLimiter::completed`](ml_core::limiter::RateLimiter::completed)),
    /// so the next post under `slack:<id>` waits one interval from that reply and a name
    /// and its id, used as two destinations, share one budget from then on. Before the
    /// first reply the sink cannot know that `#finance` is `C0123`: hosts that post to
    /// the same channel by name and by id at once, or run several replicas on one shared
    /// limiter, should call `remember_channel` or `resolve_channel` at start.
    fn remember_scope(&self, destination: &Destination, scope: &str) -> bool {
        let address = destination.address.trim();
        if self.cached_id(address).is_some() || !ChannelId::looks_like_id(scope) {
            return false;
        }
        self.learn(address, &ChannelId(scope.to_owned()));
        true
    }

    fn rate_key(&self, destination: &Destination) -> Option<String> {
        let key = self.cached_id(&destination.address).map_or_else(
            || format!("#{}", normalize_channel_name(&destination.address)),
            |c| c.0,
        );
        Some(format!("{RATE_KEY_PREFIX}{key}"))
    }

    fn render(&self, record: &Record, destination: &Destination) -> Rendered {
        self.renderer.render(record, destination)
    }

    async fn healthcheck(&self) -> Result<()> {
        let who = self.client.auth_test().await.map_err(|e| self.err(e))?;
        *self.team.write().unwrap_or_else(PoisonError::into_inner) = Some(who.team_id.0);
        Ok(())
    }

    /// A channel by name is looked up in `conversations.list` (archived channels are not
    /// listed, so an archived one is "not found"), then `conversations.info` says whether
    /// it is archived and whether the bot is in it. Without `channels:read` /
    /// `groups:read` it cannot tell: posting by name works without them.
    async fn check_destination(&self, destination: &Destination) -> Result<DestinationCheck> {
        let unchecked = |e: &Error| {
            DestinationCheck::Unchecked(format!(
                "the token may not read channels (`channels:read`, `groups:read`): {e}"
            ))
        };
        let id = match self.resolve_channel(&destination.address).await {
            Ok(id) => id,
            Err(e) if is_missing_scope(&e) => return Ok(unchecked(&e)),
            Err(e) => return Err(e),
        };
        let info = match self.client.conversation_info(&id).await {
            Ok(info) => info,
            Err(e) if e.code() == Some("missing_scope") => return Ok(unchecked(&self.err(e))),
            Err(e) => return Err(self.err(e)),
        };
        let refuse = |code: &str, detail: String| {
            Err(self.err(SlackError::Api {
                method: "conversations.info".into(),
                code: code.into(),
                detail: Some(detail),
                class: ErrorClass::Permanent,
            }))
        };
        if info.is_archived {
            return refuse("is_archived", format!("channel {} is archived", id.0));
        }
        if !info.is_member && (info.is_private || !self.join_channels) {
            return refuse(
                "not_in_channel",
                format!("the bot is not in channel {}: invite it", id.0),
            );
        }
        Ok(DestinationCheck::Ready(if info.is_member {
            id.0
        } else {
            format!("{} (the bot joins it at the first post)", id.0)
        }))
    }
}

/// A Slack refusal for a scope the token was not granted.
fn is_missing_scope(e: &Error) -> bool {
    matches!(e, Error::Remote { code: Some(c), .. } if c == "missing_scope")
}

impl fmt::Display for SlackSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.team.read().unwrap_or_else(PoisonError::into_inner) {
            Some(team) => write!(f, "Slack({team})"),
            None => write!(f, "Slack({})", self.host),
        }
    }
}

impl fmt::Debug for SlackSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackSink")
            .field("client", &self.client)
            .field("renderer", &self.renderer)
            .field("update_mode", &self.update_mode)
            .field("reconcile", &self.reconcile)
            .field("instance", &self.instance)
            .field("team", &self.team_id())
            .finish_non_exhaustive()
    }
}
