//! The host side: [`RelayHub`] accepts agents' signed WebSocket connections (an axum
//! router) and hands RFC calls to them; [`RelayTransport`] is the [`RfcTransport`] the SAP
//! source uses.
//!
//! Nothing is queued: a call goes to a connected agent at once or fails at once with
//! [`RfcErrorKind::Unavailable`]; a call whose agent goes away fails at once (retryable,
//! so the [`ml_sap_ecc::RfcClient`] may try another agent); a call past its deadline fails.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse as _, Response};
use axum::routing::get;
use http::HeaderMap;
use ml_core::clock::{Clock, SystemClock};
use ml_core::webhook::{MemoryReplayCache, Rejection, ReplayCache, header};
use ml_sap_ecc::{RfcCall, RfcError, RfcErrorKind, RfcResponse, RfcTransport};
use secrecy::SecretString;
use tokio::sync::{Notify, mpsc, oneshot, watch};

use crate::error::RelayError;
use crate::wire::{
    AgentMessage, CONNECT_PATH, DEFAULT_WINDOW, Direction, H_AGENT, H_NONCE, H_SIGNATURE,
    H_TIMESTAMP, HostMessage, MAX_FRAME, Signer, Verifier, verify_connect,
};

/// The default time a call may take, end to end.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(120);
/// The default ping interval; an agent silent for three of them is dropped.
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(15);
/// The default re-check cadence of a stream waiting for its agent.
pub const DEFAULT_RECHECK: Duration = Duration::from_secs(5);
/// How long the host waits past a call's deadline for the agent's own "expired" answer.
const DEADLINE_GRACE: Duration = Duration::from_secs(2);

struct AgentEntry {
    key: SecretString,
    system: String,
}

/// Builds a [`RelayHub`].
pub struct RelayHubBuilder {
    agents: Vec<(String, SecretString, String)>,
    clock: Arc<dyn Clock>,
    window: Duration,
    call_timeout: Duration,
    keepalive: Duration,
    recheck: Duration,
    replay: Option<Arc<dyn ReplayCache>>,
}

impl fmt::Debug for RelayHubBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayHubBuilder")
            .field(
                "agents",
                &self
                    .agents
                    .iter()
                    .map(|(id, _, s)| (id, s))
                    .collect::<Vec<_>>(),
            )
            .field("window", &self.window)
            .field("call_timeout", &self.call_timeout)
            .finish_non_exhaustive()
    }
}

/// Checks an agent id: 1..=64 of `A-Z a-z 0-9 . _ -`.
pub(crate) fn check_agent_id(key: &str, id: &str) -> Result<(), RelayError> {
    if id.is_empty()
        || id.len() > 64
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(RelayError::config(
            key,
            format!("`{id}` is not 1 to 64 of A-Z a-z 0-9 . _ -"),
        ));
    }
    Ok(())
}

/// Checks a key's length (never its content in a message).
pub(crate) fn check_key(key: &str, value: &SecretString) -> Result<(), RelayError> {
    use secrecy::ExposeSecret as _;
    if value.expose_secret().trim().len() < 32 {
        return Err(RelayError::config(
            key,
            "must be at least 32 characters (e.g. `openssl rand -hex 32`)",
        ));
    }
    Ok(())
}

impl RelayHubBuilder {
    /// Allows agent `id`, holding `key`, to serve SAP system `system` (a name of your
    /// choosing, e.g. `PRD/100`; several agents may serve one system).
    pub fn agent(
        mut self,
        id: impl Into<String>,
        key: impl Into<SecretString>,
        system: impl Into<String>,
    ) -> Self {
        self.agents.push((id.into(), key.into(), system.into()));
        self
    }

    /// The clock of timestamps and deadlines (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// How far a message's timestamp may be from now, either way (default 60 s).
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// How long one call may take before the agent drops it (default 120 s).
    pub fn call_timeout(mut self, d: Duration) -> Self {
        self.call_timeout = d;
        self
    }

    /// The ping interval (default 15 s); an agent silent for three is dropped.
    pub fn keepalive(mut self, d: Duration) -> Self {
        self.keepalive = d;
        self
    }

    /// How often a stream waiting for its agent checks again (default 5 s; a local check).
    pub fn recheck(mut self, d: Duration) -> Self {
        self.recheck = d;
        self
    }

    /// Where seen nonces are remembered (default: in memory, 100,000 at most; share one
    /// between replicas).
    pub fn replay_cache(mut self, cache: Arc<dyn ReplayCache>) -> Self {
        self.replay = Some(cache);
        self
    }

    /// Checks and builds.
    pub fn build(self) -> Result<RelayHub, RelayError> {
        let mut agents = HashMap::new();
        for (id, key, system) in self.agents {
            check_agent_id("agent", &id)?;
            check_key(&format!("agent `{id}` key"), &key)?;
            if system.trim().is_empty() {
                return Err(RelayError::config(
                    "system",
                    format!("agent `{id}` needs a system"),
                ));
            }
            if agents
                .insert(id.clone(), AgentEntry { key, system })
                .is_some()
            {
                return Err(RelayError::config(
                    "agent",
                    format!("agent `{id}` is defined twice"),
                ));
            }
        }
        if self.window < Duration::from_secs(5) || self.call_timeout < Duration::from_secs(1) {
            return Err(RelayError::config(
                "window",
                "the window must be at least 5 s and the call timeout at least 1 s",
            ));
        }
        let (changed, _) = watch::channel(0u64);
        Ok(RelayHub {
            inner: Arc::new(HubInner {
                agents,
                sessions: Mutex::default(),
                stats: Mutex::default(),
                changed,
                replay: self
                    .replay
                    .unwrap_or_else(|| Arc::new(MemoryReplayCache::new(100_000))),
                clock: self.clock,
                window: self.window,
                call_timeout: self.call_timeout,
                keepalive: self.keepalive.max(Duration::from_millis(10)),
                recheck: self.recheck,
                next_id: AtomicU64::new(1),
                rotate: AtomicU64::new(0),
                rejections: Mutex::default(),
            }),
        })
    }
}

/// Per-system counters, as [`RelayHub::stats`] reports them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SystemStats {
    /// Calls handed to agents right now.
    pub in_flight: usize,
    /// The most calls handed to agents at once so far.
    pub max_in_flight: usize,
    /// Calls handed to agents so far.
    pub calls: u64,
    /// Calls refused at once because no agent was connected.
    pub unavailable: u64,
    /// Calls whose agent went away while they ran.
    pub lost_agent: u64,
    /// Calls the agent dropped past their deadline, or that got no answer in time.
    pub expired: u64,
}

type Reply = oneshot::Sender<Result<RfcResponse, RfcError>>;

struct Session {
    agent: String,
    system: String,
    out: mpsc::Sender<String>,
    signer: Mutex<Signer>,
    pending: Mutex<HashMap<u64, Reply>>,
    closed: AtomicBool,
    kicked: Notify,
}

impl Session {
    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Reply>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks the session closed, then fails what it still owes (in this order, so that a
    /// call registered concurrently sees `closed`).
    fn close(&self) -> usize {
        self.closed.store(true, Ordering::SeqCst);
        let owed: Vec<Reply> = self.pending().drain().map(|(_, r)| r).collect();
        let n = owed.len();
        for r in owed {
            let _ = r.send(Err(RfcError::new(
                RfcErrorKind::Communication,
                format!("relay agent `{}` disconnected during the call", self.agent),
            )));
        }
        n
    }
}

struct HubInner {
    agents: HashMap<String, AgentEntry>,
    sessions: Mutex<HashMap<String, Vec<Arc<Session>>>>,
    stats: Mutex<HashMap<String, SystemStats>>,
    changed: watch::Sender<u64>,
    replay: Arc<dyn ReplayCache>,
    clock: Arc<dyn Clock>,
    window: Duration,
    call_timeout: Duration,
    keepalive: Duration,
    recheck: Duration,
    next_id: AtomicU64,
    rotate: AtomicU64,
    rejections: Mutex<HashMap<&'static str, u64>>,
}

/// The relay endpoint on the ml-connector host (cheap to clone; clones share everything).
/// Mount [`router`](Self::router) in the host's HTTP server; build one
/// [`RelayTransport`] per SAP system with [`transport`](Self::transport).
#[derive(Clone)]
pub struct RelayHub {
    inner: Arc<HubInner>,
}

impl fmt::Debug for RelayHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut agents: Vec<_> = self
            .inner
            .agents
            .iter()
            .map(|(id, a)| format!("{id}->{}", a.system))
            .collect();
        agents.sort();
        f.debug_struct("RelayHub")
            .field("agents", &agents)
            .field("call_timeout", &self.inner.call_timeout)
            .finish_non_exhaustive()
    }
}

impl RelayHub {
    /// A builder.
    pub fn builder() -> RelayHubBuilder {
        RelayHubBuilder {
            agents: Vec::new(),
            clock: Arc::new(SystemClock),
            window: DEFAULT_WINDOW,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            keepalive: DEFAULT_KEEPALIVE,
            recheck: DEFAULT_RECHECK,
            replay: None,
        }
    }

    /// The axum router serving `GET /relay/v1/connect` (the agents' WebSocket).
    pub fn router(&self) -> axum::Router {
        axum::Router::new()
            .route(CONNECT_PATH, get(connect))
            .with_state(self.clone())
    }

    /// Binds `addr` (`0.0.0.0:8787`; put TLS in front for agents outside the host's
    /// network) and serves [`router`](Self::router) on it in a background task, for hosts
    /// that have no HTTP server of their own. Returns the bound address.
    pub async fn listen(&self, addr: &str) -> Result<std::net::SocketAddr, RelayError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| RelayError::config("listen", format!("cannot bind `{addr}`: {e}")))?;
        let bound = listener
            .local_addr()
            .map_err(|e| RelayError::config("listen", e.to_string()))?;
        let router = self.router();
        // Small frames both ways: no Nagle delay on top of the agent's round trip.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, "the relay endpoint stopped");
            }
        });
        tracing::info!(%bound, path = CONNECT_PATH, "relay endpoint listening");
        Ok(bound)
    }

    /// The transport of SAP system `system` (as named in [`RelayHubBuilder::agent`]).
    pub fn transport(&self, system: &str) -> Result<RelayTransport, RelayError> {
        if !self.inner.agents.values().any(|a| a.system == system) {
            return Err(RelayError::config(
                "system",
                format!("no relay agent is configured for system `{system}`"),
            ));
        }
        Ok(RelayTransport {
            hub: self.clone(),
            system: system.to_owned(),
        })
    }

    /// Agents connected (and ready) for `system` right now.
    pub fn connected(&self, system: &str) -> usize {
        self.sessions().get(system).map_or(0, |v| {
            v.iter()
                .filter(|s| !s.closed.load(Ordering::SeqCst))
                .count()
        })
    }

    /// The ids of the agents connected for `system`, sorted.
    pub fn connected_agents(&self, system: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .sessions()
            .get(system)
            .map(|v| v.iter().map(|s| s.agent.clone()).collect())
            .unwrap_or_default();
        ids.sort();
        ids
    }

    /// Waits until `system` has at least `n` agents connected.
    pub async fn wait_for_agents(&self, system: &str, n: usize) {
        let mut rx = self.inner.changed.subscribe();
        while self.connected(system) < n {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Waits until `system` has at most `n` agents connected.
    pub async fn wait_for_at_most(&self, system: &str, n: usize) {
        let mut rx = self.inner.changed.subscribe();
        while self.connected(system) > n {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Waits until at least `n` messages were refused in all.
    pub async fn wait_for_rejections(&self, n: u64) {
        let mut rx = self.inner.changed.subscribe();
        while self.rejections().values().sum::<u64>() < n {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// The counters of `system`.
    pub fn stats(&self, system: &str) -> SystemStats {
        self.inner
            .stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(system)
            .cloned()
            .unwrap_or_default()
    }

    /// Messages refused so far, by reason (`signature_mismatch`, `replayed`, `stale`, ...).
    pub fn rejections(&self) -> HashMap<&'static str, u64> {
        self.inner
            .rejections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How often a stream waiting for its agent checks again.
    pub fn recheck(&self) -> Duration {
        self.inner.recheck
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Arc<Session>>>> {
        self.inner
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn stat(&self, system: &str, f: impl FnOnce(&mut SystemStats)) {
        let mut g = self
            .inner
            .stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let s = g.entry(system.to_owned()).or_default();
        f(s);
        metrics::gauge!("ml_sap_relay_in_flight", "system" => system.to_owned())
            .set(s.in_flight as f64);
    }

    fn reject(&self, what: &str, agent: &str, r: &Rejection) {
        *self
            .inner
            .rejections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(r.as_str())
            .or_default() += 1;
        metrics::counter!("ml_sap_relay_rejected_total", "reason" => r.as_str()).increment(1);
        tracing::warn!(agent, what, reason = r.as_str(), "relay message refused");
        self.inner.changed.send_modify(|v| *v += 1);
    }

    fn publish(&self, system: &str) {
        let n = self.connected(system);
        metrics::gauge!("ml_sap_relay_agents_connected", "system" => system.to_owned())
            .set(n as f64);
        self.inner.changed.send_modify(|v| *v += 1);
    }

    fn register(&self, s: &Arc<Session>) {
        let replaced: Vec<Arc<Session>> = {
            let mut g = self.sessions();
            let list = g.entry(s.system.clone()).or_default();
            let (old, keep): (Vec<_>, Vec<_>) = list.drain(..).partition(|o| o.agent == s.agent);
            *list = keep;
            list.push(Arc::clone(s));
            old
        };
        for o in replaced {
            // A reconnect while the old socket still looked alive: the new one wins.
            o.close();
            o.kicked.notify_one();
        }
        tracing::info!(agent = %s.agent, system = %s.system, "relay agent connected");
        self.publish(&s.system);
    }

    fn unregister(&self, s: &Arc<Session>) {
        {
            let mut g = self.sessions();
            if let Some(list) = g.get_mut(&s.system) {
                list.retain(|o| !Arc::ptr_eq(o, s));
            }
        }
        let owed = s.close();
        if owed > 0 {
            self.stat(&s.system, |st| st.lost_agent += owed as u64);
        }
        tracing::warn!(agent = %s.agent, system = %s.system, calls_failed = owed, "relay agent disconnected");
        self.publish(&s.system);
    }

    /// The connected session with the fewest calls in flight (round robin among equals).
    fn pick(&self, system: &str) -> Option<Arc<Session>> {
        let g = self.sessions();
        let list = g.get(system)?;
        let live: Vec<&Arc<Session>> = list
            .iter()
            .filter(|s| !s.closed.load(Ordering::SeqCst))
            .collect();
        if live.is_empty() {
            return None;
        }
        let start = self.inner.rotate.fetch_add(1, Ordering::Relaxed) as usize;
        (0..live.len())
            .map(|i| live[(start + i) % live.len()])
            .min_by_key(|s| s.pending().len())
            .cloned()
    }

    async fn dispatch(&self, system: &str, call: &RfcCall) -> Result<RfcResponse, RfcError> {
        let Some(session) = self.pick(system) else {
            self.stat(system, |s| s.unavailable += 1);
            metrics::counter!("ml_sap_relay_unavailable_total", "system" => system.to_owned())
                .increment(1);
            return Err(RfcError::new(
                RfcErrorKind::Unavailable,
                format!("no relay agent connected for `{system}`"),
            ));
        };
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        session.pending().insert(id, tx);
        let _guard = InFlight::new(self, &session, id);
        if session.closed.load(Ordering::SeqCst) {
            return Err(RfcError::new(
                RfcErrorKind::Communication,
                format!("relay agent `{}` disconnected", session.agent),
            ));
        }
        let now = self.inner.clock.now();
        let deadline = ml_core::clock::add(now, self.inner.call_timeout);
        let body = serde_json::to_string(&HostMessage::Call {
            id,
            deadline_ms: deadline.as_millisecond(),
            call: call.into(),
        })
        .map_err(|e| RfcError::new(RfcErrorKind::Protocol, e.to_string()))?;
        {
            let mut signer = session
                .signer
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let frame = signer.seal(&body, now);
            session.out.try_send(frame).map_err(|_| {
                RfcError::new(
                    RfcErrorKind::Communication,
                    format!("relay agent `{}` connection is closing", session.agent),
                )
            })?;
        }
        match tokio::time::timeout(self.inner.call_timeout + DEADLINE_GRACE, rx).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(RfcError::new(
                RfcErrorKind::Communication,
                format!(
                    "relay agent `{}` disconnected during the call",
                    session.agent
                ),
            )),
            Err(_) => {
                self.stat(system, |s| s.expired += 1);
                Err(RfcError::new(
                    RfcErrorKind::Communication,
                    format!(
                        "no answer from relay agent `{}` before the call's deadline",
                        session.agent
                    ),
                ))
            }
        }
    }

    async fn authenticate(&self, headers: &HeaderMap) -> Result<(String, String), Rejection> {
        let agent = header(headers, H_AGENT)?;
        let ts = header(headers, H_TIMESTAMP)?;
        let nonce = header(headers, H_NONCE)?;
        let sig = header(headers, H_SIGNATURE)?;
        // An unknown agent looks like a bad signature: ids are not confirmed to strangers.
        let entry = self
            .inner
            .agents
            .get(agent)
            .ok_or(Rejection::SignatureMismatch)?;
        let secs = verify_connect(
            &entry.key,
            agent,
            ts,
            nonce,
            sig,
            self.inner.clock.now(),
            self.inner.window,
        )?;
        let expires = ml_core::clock::add(
            jiff::Timestamp::from_second(secs).unwrap_or_else(|_| self.inner.clock.now()),
            self.inner.window * 2,
        );
        if !self
            .inner
            .replay
            .insert_if_absent(
                &format!("connect:{agent}:{nonce}"),
                expires,
                self.inner.clock.now(),
            )
            .await?
        {
            return Err(Rejection::Replayed);
        }
        Ok((agent.to_owned(), nonce.to_owned()))
    }

    async fn run_session(self, mut socket: WebSocket, agent: String, session_id: String) {
        let Some(entry) = self.inner.agents.get(&agent) else {
            return;
        };
        let system = entry.system.clone();
        let mut signer = Signer::new(entry.key.clone(), Direction::Host, &agent, &session_id);
        let mut verifier = Verifier::new(
            entry.key.clone(),
            Direction::Agent,
            &agent,
            &session_id,
            self.inner.window,
        );
        let Ok(welcome) = serde_json::to_string(&HostMessage::Welcome {
            system: system.clone(),
        }) else {
            return;
        };
        let frame = signer.seal(&welcome, self.inner.clock.now());
        if socket.send(Message::Text(frame.into())).await.is_err() {
            return;
        }
        // The first agent frame must be a genuine `ready`.
        let ready = tokio::time::timeout(self.inner.keepalive * 3, next_text(&mut socket)).await;
        let Ok(Some(text)) = ready else {
            tracing::warn!(agent, "relay agent connected but never said it was ready");
            return;
        };
        let body = match verifier.open(&text, self.inner.clock.now()) {
            Ok(body) => body,
            Err(r) => {
                self.reject("ready", &agent, &r);
                return;
            }
        };
        if let Ok(AgentMessage::Ready { system: reaches }) =
            serde_json::from_str::<AgentMessage>(&body)
        {
            tracing::info!(agent, system, reaches, "relay agent ready");
        } else {
            self.reject(
                "ready",
                &agent,
                &Rejection::Malformed("expected ready".into()),
            );
            return;
        }
        // Room for every call in flight (the cap is at most 50) plus pings: sends never
        // wait here, and nothing is held for an absent agent.
        let (out, mut out_rx) = mpsc::channel::<String>(256);
        let session = Arc::new(Session {
            agent: agent.clone(),
            system: system.clone(),
            out,
            signer: Mutex::new(signer),
            pending: Mutex::default(),
            closed: AtomicBool::new(false),
            kicked: Notify::new(),
        });
        self.register(&session);
        let mut ticker = tokio::time::interval(self.inner.keepalive);
        ticker.tick().await;
        let mut last_heard = tokio::time::Instant::now();
        loop {
            tokio::select! {
                Some(frame) = out_rx.recv() => {
                    if socket.send(Message::Text(frame.into())).await.is_err() {
                        break;
                    }
                }
                msg = socket.recv() => {
                    let Some(Ok(msg)) = msg else { break };
                    last_heard = tokio::time::Instant::now();
                    match msg {
                        Message::Text(t) => {
                            let body = match verifier.open(t.as_str(), self.inner.clock.now()) {
                                Ok(b) => b,
                                Err(r) => {
                                    // A forged or replayed frame inside an authenticated
                                    // session: end the session.
                                    self.reject("frame", &agent, &r);
                                    break;
                                }
                            };
                            if !self.handle(&session, &body) {
                                break;
                            }
                        }
                        Message::Binary(_) => {
                            self.reject("frame", &agent, &Rejection::Malformed("binary frame".into()));
                            break;
                        }
                        Message::Close(_) => break,
                        Message::Ping(_) | Message::Pong(_) => {}
                    }
                }
                _ = ticker.tick() => {
                    if last_heard.elapsed() > self.inner.keepalive * 3 {
                        tracing::warn!(agent, "relay agent silent for three keepalives");
                        break;
                    }
                    if socket.send(Message::Ping(Vec::new().into())).await.is_err() {
                        break;
                    }
                }
                () = session.kicked.notified() => break,
            }
        }
        self.unregister(&session);
        let _ = socket.send(Message::Close(None)).await;
    }

    /// Applies one verified agent message; `false` ends the session.
    fn handle(&self, session: &Session, body: &str) -> bool {
        let msg = match serde_json::from_str::<AgentMessage>(body) {
            Ok(m) => m,
            Err(e) => {
                self.reject(
                    "frame",
                    &session.agent,
                    &Rejection::Malformed(e.to_string()),
                );
                return false;
            }
        };
        match msg {
            AgentMessage::Result { id, outcome } => {
                if let Some(reply) = session.pending().remove(&id) {
                    let _ = reply.send(outcome.into());
                } else {
                    tracing::debug!(agent = %session.agent, id, "late answer for a call already given up");
                }
            }
            AgentMessage::Expired { id, started } => {
                if let Some(reply) = session.pending().remove(&id) {
                    self.stat(&session.system, |s| s.expired += 1);
                    let _ = reply.send(Err(RfcError::new(
                        RfcErrorKind::Communication,
                        if started {
                            "the relay agent stopped the call at its deadline"
                        } else {
                            "the relay agent dropped the call: its deadline had passed"
                        },
                    )));
                }
            }
            AgentMessage::Ready { .. } => {
                self.reject(
                    "frame",
                    &session.agent,
                    &Rejection::Malformed("second ready".into()),
                );
                return false;
            }
        }
        true
    }
}

/// Counts a call in flight and forgets its pending entry however the call ends (the
/// caller's future may be dropped).
struct InFlight<'a> {
    hub: &'a RelayHub,
    session: &'a Session,
    id: u64,
}

impl<'a> InFlight<'a> {
    fn new(hub: &'a RelayHub, session: &'a Session, id: u64) -> Self {
        hub.stat(&session.system, |s| {
            s.in_flight += 1;
            s.calls += 1;
            s.max_in_flight = s.max_in_flight.max(s.in_flight);
        });
        Self { hub, session, id }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.session.pending().remove(&self.id);
        self.hub.stat(&self.session.system, |s| {
            s.in_flight = s.in_flight.saturating_sub(1);
        });
    }
}

async fn next_text(socket: &mut WebSocket) -> Option<String> {
    loop {
        match socket.recv().await? {
            Ok(Message::Text(t)) => return Some(t.as_str().to_owned()),
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            _ => return None,
        }
    }
}

async fn connect(
    State(hub): State<RelayHub>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    match hub.authenticate(&headers).await {
        Ok((agent, session)) => ws
            .max_message_size(MAX_FRAME)
            .max_frame_size(MAX_FRAME)
            .on_upgrade(move |socket| hub.run_session(socket, agent, session)),
        Err(r) => {
            let who = headers
                .get(H_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?")
                .to_owned();
            hub.reject("connect", &who, &r);
            (r.status(), r.as_str()).into_response()
        }
    }
}

/// The [`RfcTransport`] of one SAP system reached through relay agents.
#[derive(Clone)]
pub struct RelayTransport {
    hub: RelayHub,
    system: String,
}

impl fmt::Debug for RelayTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayTransport")
            .field("system", &self.system)
            .finish_non_exhaustive()
    }
}

impl RelayTransport {
    /// The hub.
    pub fn hub(&self) -> &RelayHub {
        &self.hub
    }

    /// The system name as configured.
    pub fn system_name(&self) -> &str {
        &self.system
    }
}

#[async_trait]
impl RfcTransport for RelayTransport {
    async fn call(&self, call: &RfcCall) -> Result<RfcResponse, RfcError> {
        self.hub.dispatch(&self.system, call).await
    }

    fn system(&self) -> String {
        format!("{} via relay", self.system)
    }
}
