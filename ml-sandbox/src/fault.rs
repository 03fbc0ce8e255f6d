//! The fault-injection layer shared by every emulator.
//!
//! A [`Faults`] handle holds an ordered list of [`FaultRule`]s and per-path request
//! counters. Each emulator wraps its router with [`Faults::layer`]; tests change the rules
//! at run time through the emulator's `faults()` handle.
//!
//! For each request, every rule whose target matches the path and which still has
//! something to fire is considered in order: all firing [`Fault::Latency`] rules add their
//! delay, and the first firing rule with any other fault decides the outcome.
//!
//! ```
//! use std::time::Duration;
//! use ml_sandbox::fault::{Fault, FaultRule, Faults};
//!
//! let faults = Faults::new(7);
//! // The next two chat.postMessage calls answer HTTP 503 ...
//! faults.push(FaultRule::on("chat.postMessage", Fault::Status(503)).times(2));
//! // ... every call is slowed down by 20 ms ...
//! faults.push(FaultRule::any(Fault::Latency(Duration::from_millis(20))).always());
//! // ... and about one in ten conversations.history calls loses its connection.
//! faults.push(
//!     FaultRule::on("/api/conversations.history", Fault::DropBeforeResponse)
//!         .with_probability(0.1)
//!         .always(),
//! );
//! assert_eq!(faults.requests("chat.postMessage"), 0);
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use crate::server::ConnectionKill;

/// One injected failure.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Waits this long before handling the request (combines with the other faults): the
    /// request is held in the network and ARRIVES late, so anything the emulator measures
    /// at arrival (Slack's per-channel limit, message timestamps) sees the later instant.
    /// To hold the answer instead, after the request arrived and took effect, use
    /// [`AppliedThenDelayed`](Self::AppliedThenDelayed).
    Latency(Duration),
    /// Answers with this HTTP status without running the handler; the body is the
    /// emulator's usual error body for that status (for Slack `{"ok":false,"error":...}`).
    Status(u16),
    /// Answers with this status, content type and body without running the handler.
    StatusWithBody {
        /// The HTTP status.
        status: u16,
        /// The `Content-Type` header.
        content_type: String,
        /// The body.
        body: String,
    },
    /// Answers HTTP 429 with `Retry-After: <retry_after>` (seconds) and the emulator's rate
    /// limit body, without running the handler.
    TooManyRequests {
        /// The `Retry-After` value, in seconds.
        retry_after: u64,
    },
    /// Closes the connection without answering and without running the handler: nothing
    /// was applied. The client sees a connection error.
    DropBeforeResponse,
    /// Runs the handler (the request takes effect), then closes the connection without
    /// answering. The client sees a connection error although the request was applied.
    AppliedThenDropped,
    /// Runs the handler at once (the request arrives and takes effect, whatever it answers:
    /// success, an API error, a rate limit refusal), then holds the answer this long: a
    /// client whose timeout is shorter sees a timeout although the request was applied,
    /// and a client that paces by request starts sends its next request too early.
    AppliedThenDelayed(Duration),
    /// Runs the handler (the request takes effect), then answers this HTTP status with the
    /// emulator's error body instead of the handler's answer: a gateway that timed out on
    /// a request the backend still carried out (a 503 after the action ran).
    AppliedThenStatus(u16),
}

impl Fault {
    fn is_latency(&self) -> bool {
        matches!(self, Self::Latency(_))
    }
}

/// Which requests a rule (or a counter query) applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Any,
    /// Exact path, e.g. `/api/chat.postMessage`.
    Path(String),
    /// Last path segment, e.g. `chat.postMessage`.
    Name(String),
}

impl Target {
    fn parse(target: &str) -> Self {
        if target.is_empty() || target == "*" {
            Self::Any
        } else if target.starts_with('/') {
            Self::Path(target.to_owned())
        } else {
            Self::Name(target.to_owned())
        }
    }

    fn matches(&self, path: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Path(p) => p == path,
            Self::Name(n) => path.rsplit('/').next() == Some(n.as_str()),
        }
    }
}

/// A rule: which requests, what fault, how often.
///
/// A new rule fires once (see [`times`](Self::times), [`always`](Self::always)), on every
/// matching request (see [`after`](Self::after), [`with_probability`](Self::with_probability)).
#[derive(Debug, Clone)]
pub struct FaultRule {
    target: Target,
    fault: Fault,
    remaining: Option<u64>,
    skip: u64,
    probability: Option<f64>,
}

impl FaultRule {
    /// A rule for requests to `target`: an exact path when it starts with `/`
    /// (`/api/chat.postMessage`), otherwise the last path segment (`chat.postMessage`, the
    /// method name of RPC-style APIs); `*` matches everything.
    pub fn on(target: &str, fault: Fault) -> Self {
        Self {
            target: Target::parse(target),
            fault,
            remaining: Some(1),
            skip: 0,
            probability: None,
        }
    }

    /// A rule for every request.
    pub fn any(fault: Fault) -> Self {
        Self::on("*", fault)
    }

    /// Fires for `n` requests, then is spent (the default is 1).
    pub fn times(mut self, n: u64) -> Self {
        self.remaining = Some(n);
        self
    }

    /// Never runs out.
    pub fn always(mut self) -> Self {
        self.remaining = None;
        self
    }

    /// Lets the first `n` matching requests through before the rule can fire.
    pub fn after(mut self, n: u64) -> Self {
        self.skip = n;
        self
    }

    /// Fires with probability `p` (0..=1) on each matching request, drawn from the
    /// [`Faults`] handle's seeded generator, so a run is reproducible.
    pub fn with_probability(mut self, p: f64) -> Self {
        self.probability = Some(p.clamp(0.0, 1.0));
        self
    }

    /// The fault this rule injects.
    pub fn fault(&self) -> &Fault {
        &self.fault
    }
}

/// Counters for one request path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PathStats {
    /// Requests received (faulted ones included).
    pub requests: u64,
    /// Responses sent, by HTTP status (injected ones included).
    pub statuses: BTreeMap<u16, u64>,
    /// Connections dropped by [`Fault::DropBeforeResponse`] or [`Fault::AppliedThenDropped`].
    pub dropped: u64,
    /// Requests on which any fault other than latency fired.
    pub injected: u64,
}

/// How an emulator answers [`Fault::Status`] and [`Fault::TooManyRequests`]:
/// `(status) -> (content type, body)`.
pub type ErrorBody = Arc<dyn Fn(u16) -> (String, String) + Send + Sync>;

struct Inner {
    rules: Vec<FaultRule>,
    rng: StdRng,
    stats: BTreeMap<String, PathStats>,
}

/// The fault rules and request counters of one emulator. Cheap to clone (shared state).
#[derive(Clone)]
pub struct Faults {
    inner: Arc<Mutex<Inner>>,
    error_body: ErrorBody,
    arrived: Arc<tokio::sync::Notify>,
}

impl fmt::Debug for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.lock();
        f.debug_struct("Faults")
            .field("rules", &inner.rules)
            .field("stats", &inner.stats)
            .finish_non_exhaustive()
    }
}

impl Default for Faults {
    fn default() -> Self {
        Self::new(0)
    }
}

/// What to do with one request.
#[derive(Debug, Default)]
struct Decision {
    latency: Duration,
    fault: Option<Fault>,
}

impl Faults {
    /// No rules; probabilities drawn from a generator seeded with `seed`; plain-text error
    /// bodies.
    pub fn new(seed: u64) -> Self {
        Self::with_error_body(
            seed,
            Arc::new(|status| {
                let reason = StatusCode::from_u16(status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("error");
                ("text/plain; charset=utf-8".to_owned(), reason.to_owned())
            }),
        )
    }

    /// Like [`new`](Self::new), with the emulator's own error bodies.
    pub fn with_error_body(seed: u64, error_body: ErrorBody) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                rules: Vec::new(),
                rng: StdRng::seed_from_u64(seed),
                stats: BTreeMap::new(),
            })),
            error_body,
            arrived: Arc::new(tokio::sync::Notify::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a rule after the existing ones.
    pub fn push(&self, rule: FaultRule) {
        self.lock().rules.push(rule);
    }

    /// Removes every rule (the counters stay).
    pub fn clear(&self) {
        self.lock().rules.clear();
    }

    /// How many rules can still fire.
    pub fn pending_rules(&self) -> usize {
        self.lock()
            .rules
            .iter()
            .filter(|r| r.remaining != Some(0))
            .count()
    }

    /// Requests received on paths matching `target` (same syntax as [`FaultRule::on`]).
    pub fn requests(&self, target: &str) -> u64 {
        self.sum(target, |s| s.requests)
    }

    /// Returns once `n` requests on paths matching `target` have arrived (counted as they
    /// arrive, before any latency fault delays their answer): a test waits for a request
    /// to be in progress without sleeping.
    pub async fn arrived(&self, target: &str, n: u64) {
        loop {
            let arrival = self.arrived.notified();
            tokio::pin!(arrival);
            arrival.as_mut().enable();
            if self.requests(target) >= n {
                return;
            }
            arrival.await;
        }
    }

    /// Responses with HTTP `status` on paths matching `target`.
    pub fn status_count(&self, target: &str, status: u16) -> u64 {
        self.sum(target, |s| s.statuses.get(&status).copied().unwrap_or(0))
    }

    /// Connections dropped by a fault on paths matching `target`.
    pub fn dropped(&self, target: &str) -> u64 {
        self.sum(target, |s| s.dropped)
    }

    /// Requests on paths matching `target` on which a fault (other than latency) fired.
    pub fn injected(&self, target: &str) -> u64 {
        self.sum(target, |s| s.injected)
    }

    /// Every request received, on any path.
    pub fn total_requests(&self) -> u64 {
        self.requests("*")
    }

    /// A copy of the counters, by path.
    pub fn stats(&self) -> BTreeMap<String, PathStats> {
        self.lock().stats.clone()
    }

    /// Sets every counter back to zero.
    pub fn reset_counts(&self) {
        self.lock().stats.clear();
    }

    fn sum(&self, target: &str, f: impl Fn(&PathStats) -> u64) -> u64 {
        let target = Target::parse(target);
        self.lock()
            .stats
            .iter()
            .filter(|(path, _)| target.matches(path))
            .map(|(_, s)| f(s))
            .sum()
    }

    /// Wraps every route of `router` with this fault layer.
    ///
    /// The drop faults need the router to be served by [`crate::server::Server`]; served any
    /// other way they answer HTTP 500 instead.
    pub fn layer(&self, router: Router) -> Router {
        router.layer(axum::middleware::from_fn_with_state(
            self.clone(),
            middleware,
        ))
    }

    fn decide(&self, path: &str) -> Decision {
        let mut guard = self.lock();
        let inner = &mut *guard;
        inner.stats.entry(path.to_owned()).or_default().requests += 1;
        self.arrived.notify_waiters();
        let mut decision = Decision::default();
        for rule in &mut inner.rules {
            if rule.remaining == Some(0) || !rule.target.matches(path) {
                continue;
            }
            if decision.fault.is_some() && !rule.fault.is_latency() {
                continue;
            }
            if rule.skip > 0 {
                rule.skip -= 1;
                continue;
            }
            if let Some(p) = rule.probability
                && !inner.rng.random_bool(p)
            {
                continue;
            }
            if let Some(n) = rule.remaining.as_mut() {
                *n -= 1;
            }
            match &rule.fault {
                Fault::Latency(d) => decision.latency += *d,
                other => decision.fault = Some(other.clone()),
            }
        }
        if decision.fault.is_some()
            && let Some(s) = inner.stats.get_mut(path)
        {
            s.injected += 1;
        }
        decision
    }

    fn record_status(&self, path: &str, status: StatusCode) {
        *self
            .lock()
            .stats
            .entry(path.to_owned())
            .or_default()
            .statuses
            .entry(status.as_u16())
            .or_default() += 1;
    }

    fn record_dropped(&self, path: &str) {
        self.lock()
            .stats
            .entry(path.to_owned())
            .or_default()
            .dropped += 1;
    }

    fn error_response(&self, status: u16, retry_after: Option<u64>) -> Response {
        let (content_type, body) = (self.error_body)(status);
        let mut response = plain_response(status, &content_type, body);
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

fn plain_response(status: u16, content_type: &str, body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, Body::from(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

/// Drops the connection of `kill` and never answers; without a handle (router not served by
/// our server) answers 500.
async fn drop_connection(kill: Option<ConnectionKill>) -> Response {
    match kill {
        Some(kill) => {
            kill.fire();
            std::future::pending::<Response>().await
        }
        None => plain_response(
            500,
            "text/plain; charset=utf-8",
            "connection drop requested, but the router is not served by ml_sandbox::server::Server"
                .to_owned(),
        ),
    }
}

async fn middleware(State(faults): State<Faults>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let decision = faults.decide(&path);
    if !decision.latency.is_zero() {
        tokio::time::sleep(decision.latency).await;
    }
    let kill = request.extensions().get::<ConnectionKill>().cloned();
    let response = match decision.fault {
        None | Some(Fault::Latency(_)) => next.run(request).await,
        Some(Fault::Status(status)) => faults.error_response(status, None),
        Some(Fault::StatusWithBody {
            status,
            content_type,
            body,
        }) => plain_response(status, &content_type, body),
        Some(Fault::TooManyRequests { retry_after }) => {
            faults.error_response(429, Some(retry_after))
        }
        Some(Fault::DropBeforeResponse) => {
            faults.record_dropped(&path);
            return drop_connection(kill).await;
        }
        Some(Fault::AppliedThenDropped) => {
            let applied = next.run(request).await;
            // Read the whole answer, so the handler has really finished, then drop it.
            let _ = axum::body::to_bytes(applied.into_body(), usize::MAX).await;
            faults.record_dropped(&path);
            return drop_connection(kill).await;
        }
        Some(Fault::AppliedThenDelayed(delay)) => {
            let response = next.run(request).await;
            tokio::time::sleep(delay).await;
            response
        }
        Some(Fault::AppliedThenStatus(status)) => {
            let applied = next.run(request).await;
            let _ = axum::body::to_bytes(applied.into_body(), usize::MAX).await;
            faults.error_response(status, None)
        }
    };
    faults.record_status(&path, response.status());
    response
}
