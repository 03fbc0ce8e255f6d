//! [`IdocInbox`]: the HTTP receiver (plain `http` types) and its push [`Source`],
//! [`IdocSource`], answering 2xx only after the pipeline's journal committed the IDoc.
//!
//! How the commit is known: the inbox numbers every IDoc it holds. [`IdocSource::poll`]
//! returns the held IDocs with a position naming the last number served; the pipeline
//! journals the page and the position in one transaction, then polls again **from that
//! committed position** (the page says `more`), which acknowledges every IDoc up to it.
//! Only then does the waiting request get its 200. A page whose commit failed is served
//! again from the older saved position; a request that waited too long gets 503 and SAP
//! sends the IDoc again (journaled once: `DOCNUM` is the idempotency key). The position
//! names this inbox's instance, so a position saved by an earlier process acknowledges
//! nothing here.
//!
//! Do not `dry_run` a pipeline holding an inbox stream: a dry run polls twice without
//! committing, and its second poll would acknowledge the first page.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderName, HeaderValue, StatusCode};
use ml_core::clock::{Clock, SystemClock};
use ml_core::cursor::Position;
use ml_core::record::{EntityKind, SourceItem};
use ml_core::source::{Page, Source};
use ml_core::webhook::{Limits, Rejection, ct_eq};
use secrecy::{ExposeSecret as _, SecretString};
use tokio::sync::{Notify, watch};

use super::IdocError;
use super::map::{IdocMapping, map_idoc};
use super::parse::parse_packet;

/// The default body limit (a packet of IDocs; SAP sends one IDoc or a packet a POST).
pub const DEFAULT_MAX_BODY: usize = 4 * 1024 * 1024;
/// How long a request waits for the journal commit by default before answering 503.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(25);
/// How many IDocs the inbox holds, uncommitted, before answering 503 (busy).
pub const DEFAULT_CAPACITY: usize = 10_000;
/// The default page size of the push source.
pub const DEFAULT_PAGE: usize = 100;
/// How many committed `DOCNUM`s are remembered, to answer a re-send at once.
const ACKED_MEMORY: usize = 100_000;

/// How senders authenticate.
#[derive(Clone)]
pub enum IdocAuth {
    /// HTTP Basic (what an SM59 type G destination sends natively).
    Basic {
        /// The user.
        user: String,
        /// The password.
        password: SecretString,
    },
    /// A shared secret in a header (a reverse proxy in front can add it).
    SharedSecret {
        /// The header name (lower case).
        header: HeaderName,
        /// The secret.
        secret: SecretString,
    },
}

impl fmt::Debug for IdocAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Basic { user, .. } => f
                .debug_struct("Basic")
                .field("user", user)
                .finish_non_exhaustive(),
            Self::SharedSecret { header, .. } => f
                .debug_struct("SharedSecret")
                .field("header", header)
                .finish_non_exhaustive(),
        }
    }
}

impl IdocAuth {
    fn check(&self, headers: &http::HeaderMap) -> bool {
        match self {
            Self::Basic { user, password } => {
                let Some(given) = headers
                    .get(AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Basic "))
                    .and_then(|b| {
                        base64::engine::general_purpose::STANDARD
                            .decode(b.trim())
                            .ok()
                    })
                else {
                    return false;
                };
                let expected = format!("{user}:{}", password.expose_secret());
                ct_eq(&given, expected.as_bytes())
            }
            Self::SharedSecret { header, secret } => headers
                .get(header)
                .is_some_and(|v| ct_eq(v.as_bytes(), secret.expose_secret().as_bytes())),
        }
    }
}

struct Held {
    seq: u64,
    docnum: Option<String>,
    item: SourceItem,
}

#[derive(Default)]
struct State {
    next_seq: u64,
    held: VecDeque<Held>,
    /// DOCNUM -> seq of the held copy.
    pending: BTreeMap<String, u64>,
    acked: u64,
    acked_docnums: HashSet<String>,
    acked_order: VecDeque<String>,
}

struct Inner {
    auth: IdocAuth,
    limits: Limits,
    mapping: IdocMapping,
    ack_timeout: Duration,
    capacity: usize,
    page: usize,
    clock: Arc<dyn Clock>,
    /// Distinguishes this process's positions from a previous one's.
    instance: String,
    state: Mutex<State>,
    acked_tx: watch::Sender<u64>,
    work: Notify,
}

/// The IDoc receiver. Cheap to clone; every clone is the same inbox.
#[derive(Clone)]
pub struct IdocInbox {
    inner: Arc<Inner>,
}

impl fmt::Debug for IdocInbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdocInbox")
            .field("system", &self.inner.mapping.system)
            .field("auth", &self.inner.auth)
            .field("max_body", &self.inner.limits.max_body())
            .finish_non_exhaustive()
    }
}

/// Configures an [`IdocInbox`].
#[derive(Debug)]
pub struct IdocInboxBuilder {
    auth: IdocAuth,
    mapping: IdocMapping,
    max_body: usize,
    ack_timeout: Duration,
    capacity: usize,
    page: usize,
    clock: Arc<dyn Clock>,
}

impl IdocInboxBuilder {
    /// An inbox for `system` (its `Display` in records, e.g. `SapEccIdoc(PRD, client=100)`)
    /// accepting `auth`.
    pub fn new(system: impl Into<String>, auth: IdocAuth) -> Self {
        Self {
            auth,
            mapping: IdocMapping::new(system),
            max_body: DEFAULT_MAX_BODY,
            ack_timeout: DEFAULT_ACK_TIMEOUT,
            capacity: DEFAULT_CAPACITY,
            page: DEFAULT_PAGE,
            clock: Arc::new(SystemClock),
        }
    }

    /// The body limit (bytes).
    pub fn with_max_body(mut self, n: usize) -> Self {
        self.max_body = n;
        self
    }

    /// How long a request waits for the journal commit before answering 503.
    pub fn with_ack_timeout(mut self, d: Duration) -> Self {
        self.ack_timeout = d;
        self
    }

    /// How many uncommitted IDocs are held before answering 503.
    pub fn with_capacity(mut self, n: usize) -> Self {
        self.capacity = n.max(1);
        self
    }

    /// The push source's page size.
    pub fn with_page_size(mut self, n: usize) -> Self {
        self.page = n.max(1);
        self
    }

    /// The entity kind of an IDoc basic type (adds a type only if it has a mapping:
    /// `ORDERS05`, `INVOIC02`).
    pub fn with_kind(mut self, idoc_type: impl Into<String>, kind: EntityKind) -> Self {
        self.mapping.kinds.insert(idoc_type.into(), kind);
        self
    }

    /// The zone of `CREDAT`/`CRETIM` (the SAP server's zone; default UTC).
    pub fn with_time_zone(mut self, tz: jiff::tz::TimeZone) -> Self {
        self.mapping.time_zone = tz;
        self
    }

    /// The clock (records without `CREDAT` are stamped with its now).
    pub fn with_clock(mut self, c: Arc<dyn Clock>) -> Self {
        self.clock = c;
        self
    }

    /// Builds the inbox.
    pub fn build(self) -> IdocInbox {
        let (acked_tx, _) = watch::channel(0);
        IdocInbox {
            inner: Arc::new(Inner {
                auth: self.auth,
                limits: Limits::new(self.max_body),
                mapping: self.mapping,
                ack_timeout: self.ack_timeout,
                capacity: self.capacity,
                page: self.page,
                clock: self.clock,
                instance: format!("{:016x}", rand::random::<u64>()),
                state: Mutex::new(State::default()),
                acked_tx,
                work: Notify::new(),
            }),
        }
    }
}

fn text(status: StatusCode, body: impl Into<String>) -> http::Response<String> {
    let mut r = http::Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

impl IdocInbox {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The body limit.
    pub fn max_body(&self) -> usize {
        self.inner.limits.max_body()
    }

    /// The push source fed by this inbox (add it to the pipeline as a stream).
    pub fn source(&self) -> IdocSource {
        IdocSource {
            inbox: self.clone(),
        }
    }

    /// How many IDocs wait for their journal commit.
    pub fn pending(&self) -> usize {
        self.state().held.len()
    }

    /// Resolves when IDocs are waiting to be polled (a host polls the inbox's stream
    /// then; see [`drive`](Self::drive)).
    pub async fn wait_for_work(&self) {
        loop {
            let notified = self.inner.work.notified();
            if self.pending() > 0 {
                return;
            }
            notified.await;
        }
    }

    /// Polls `stream` of `pipeline` whenever IDocs wait, until `shutdown` resolves: the
    /// low-latency companion of the pipeline's own schedule.
    pub async fn drive(
        &self,
        pipeline: &ml_core::Pipeline,
        stream: &str,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                () = self.wait_for_work() => {}
            }
            let summary = pipeline.poll_stream(stream).await;
            let failed = summary
                .as_ref()
                .map_or(true, |s| s.error.is_some() || s.skipped);
            if failed {
                // A paused stream or another poller: let it progress before asking again.
                tokio::select! {
                    () = &mut shutdown => return,
                    () = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
        }
    }

    /// Answers one POST from an SAP XML-HTTP port: 200 once every IDoc of the packet is
    /// journaled (records, or rejected items for unknown IDoc types); 401 for wrong
    /// credentials, 413 for a body over the limit, 400 for XML that is not an IDoc packet
    /// (nothing journaled: SAP keeps it in error status), 503 when busy or when the
    /// journal did not commit in time (SAP sends it again).
    pub async fn handle<B: AsRef<[u8]>>(
        &self,
        request: http::Request<B>,
    ) -> http::Response<String> {
        let (parts, body) = request.into_parts();
        let body = body.as_ref();
        if let Err(r) = self
            .inner
            .limits
            .check_parts(&parts.method, &parts.headers, body)
        {
            return r.to_response();
        }
        if !self.inner.auth.check(&parts.headers) {
            let mut r = text(StatusCode::UNAUTHORIZED, "unauthorized");
            if matches!(self.inner.auth, IdocAuth::Basic { .. }) {
                r.headers_mut().insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"ml-connector IDoc inbox\""),
                );
            }
            tracing::info!(reason = "unauthorized", "refused an IDoc request");
            return r;
        }
        let idocs = match parse_packet(body) {
            Ok(i) => i,
            Err(e) => {
                tracing::info!(error = %e, "refused an IDoc packet");
                return Rejection::Malformed(e.to_string()).to_response();
            }
        };
        let now = self.inner.clock.now();
        let items: Vec<(Option<String>, SourceItem)> = idocs
            .iter()
            .map(|i| {
                (
                    i.control.docnum().map(str::to_owned),
                    map_idoc(i, &self.inner.mapping, now),
                )
            })
            .collect();
        let wait_for = match self.hold(items) {
            Ok(seq) => seq,
            Err(e) => return Rejection::from(e).to_response(),
        };
        let Some(seq) = wait_for else {
            return text(StatusCode::OK, "ok");
        };
        let mut acked = self.inner.acked_tx.subscribe();
        let wait = acked.wait_for(|a| *a >= seq);
        if let Ok(Ok(_)) = tokio::time::timeout(self.inner.ack_timeout, wait).await {
            text(StatusCode::OK, "ok")
        } else {
            tracing::warn!(
                "an IDoc packet was not journaled in time: answered 503, SAP sends it again"
            );
            Rejection::Unavailable("the journal did not commit in time".into()).to_response()
        }
    }

    /// Holds a packet's items; returns the number to wait for (`None`: all of them were
    /// committed already).
    fn hold(&self, items: Vec<(Option<String>, SourceItem)>) -> Result<Option<u64>, IdocError> {
        let mut st = self.state();
        let new = items
            .iter()
            .filter(|(d, _)| {
                d.as_ref()
                    .is_none_or(|d| !st.acked_docnums.contains(d) && !st.pending.contains_key(d))
            })
            .count();
        if st.held.len() + new > self.inner.capacity {
            return Err(IdocError::Busy);
        }
        let mut wait = None::<u64>;
        for (docnum, item) in items {
            if let Some(d) = &docnum {
                if st.acked_docnums.contains(d) {
                    continue;
                }
                if let Some(seq) = st.pending.get(d) {
                    wait = Some(wait.map_or(*seq, |w| w.max(*seq)));
                    continue;
                }
            }
            st.next_seq += 1;
            let seq = st.next_seq;
            if let Some(d) = &docnum {
                st.pending.insert(d.clone(), seq);
            }
            st.held.push_back(Held { seq, docnum, item });
            wait = Some(wait.map_or(seq, |w| w.max(seq)));
        }
        drop(st);
        if wait.is_some() {
            self.inner.work.notify_waiters();
        }
        Ok(wait)
    }

    /// Acknowledges every IDoc up to `seq` (their page was committed).
    fn ack(&self, seq: u64) {
        let mut st = self.state();
        if seq <= st.acked {
            return;
        }
        st.acked = seq.min(st.next_seq);
        while st.held.front().is_some_and(|h| h.seq <= seq) {
            let Some(h) = st.held.pop_front() else { break };
            if let Some(d) = h.docnum {
                st.pending.remove(&d);
                if st.acked_docnums.insert(d.clone()) {
                    st.acked_order.push_back(d);
                }
                while st.acked_order.len() > ACKED_MEMORY {
                    if let Some(old) = st.acked_order.pop_front() {
                        st.acked_docnums.remove(&old);
                    }
                }
            }
        }
        let acked = st.acked;
        drop(st);
        self.inner.acked_tx.send_replace(acked);
    }
}

impl From<IdocError> for Rejection {
    fn from(e: IdocError) -> Self {
        match e {
            IdocError::Busy => Rejection::Busy,
            other => Rejection::Malformed(other.to_string()),
        }
    }
}

/// The push [`Source`] of an [`IdocInbox`] (see the module docs).
#[derive(Clone, Debug)]
pub struct IdocSource {
    inbox: IdocInbox,
}

impl fmt::Display for IdocSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inbox.inner.mapping.system)
    }
}

impl IdocSource {
    fn position(&self, seq: u64) -> Position {
        Position::from_json(serde_json::json!({
            "inbox": self.inbox.inner.instance,
            "seq": seq,
        }))
    }

    /// The number a saved position acknowledges here (0: none, or another instance's).
    fn acked_by(&self, from: Option<&Position>) -> ml_core::Result<u64> {
        let Some(p) = from else { return Ok(0) };
        let v = p.as_json();
        let (Some(inbox), Some(seq)) = (v["inbox"].as_str(), v["seq"].as_u64()) else {
            return Err(ml_core::Error::InvalidPosition(
                "not an IDoc inbox position".into(),
            ));
        };
        Ok(if inbox == self.inbox.inner.instance {
            seq
        } else {
            0
        })
    }
}

#[async_trait]
impl Source for IdocSource {
    fn kind(&self) -> EntityKind {
        EntityKind::Other("idoc".into())
    }

    async fn poll(&self, from: Option<&Position>) -> ml_core::Result<Page> {
        let acked = self.acked_by(from)?;
        self.inbox.ack(acked);
        let st = self.inbox.state();
        let items: Vec<(u64, SourceItem)> = st
            .held
            .iter()
            .filter(|h| h.seq > acked)
            .take(self.inbox.inner.page)
            .map(|h| (h.seq, h.item.clone()))
            .collect();
        drop(st);
        let last = items.last().map_or(acked, |(s, _)| *s);
        let more = !items.is_empty();
        Ok(Page {
            items: items.into_iter().map(|(_, i)| i).collect(),
            next: self.position(last),
            // Another poll follows a page with IDocs: that poll, from the committed
            // position, is the acknowledgement their senders wait for.
            more,
            watermark: None,
        })
    }
}

#[cfg(feature = "axum")]
#[async_trait]
impl ml_core::webhook::WebhookHandler for IdocInbox {
    fn max_body(&self) -> usize {
        IdocInbox::max_body(self)
    }

    async fn handle(&self, request: http::Request<axum::body::Bytes>) -> http::Response<String> {
        IdocInbox::handle(self, request).await
    }
}

#[cfg(feature = "axum")]
impl IdocInbox {
    /// An axum router serving this inbox at `path` (feature `axum`): the body is read up
    /// to the limit and no further.
    pub fn router(&self, path: &str) -> axum::Router {
        ml_core::webhook::axum::router(path, Arc::new(self.clone()))
    }
}
