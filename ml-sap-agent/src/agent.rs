//! The agent: runs beside SAP on the customer network, connects OUT to the host's relay
//! endpoint (it never listens), proves its key, checks the host's, and runs the calls the
//! host sends on its local [`RfcTransport`] before their deadlines.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::{SinkExt as _, StreamExt as _};
use ml_core::clock::{Clock, SystemClock};
use ml_core::config::{ConfigKey, ConfigValues, Env, ProcessEnv, check_url};
use ml_core::retry::RetryPolicy;
use ml_sap_ecc::{RfcCall, RfcClient, RfcError, RfcResponse, RfcTransport, SapEccBuilder};
use secrecy::SecretString;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use url::Url;

use crate::error::RelayError;
use crate::host::{check_agent_id, check_key};
use crate::wire::{
    AgentMessage, CONNECT_PATH, DEFAULT_WINDOW, Direction, H_AGENT, H_NONCE, H_SIGNATURE,
    H_TIMESTAMP, HostMessage, MAX_FRAME, Signer, Verifier, connect_signature, new_nonce,
};

ml_core::config_keys! {
    /// A configuration key of the agent, named as its environment variable.
    pub enum AgentConfigKey: prefix "ML_RELAY_" {
        /// `ML_RELAY_URL`: the host's relay endpoint (`wss://ml.example.com`, or `https://`;
        /// `ws://` / `http://` only to loopback). Without a path, `/relay/v1/connect`.
        Url = "ML_RELAY_URL",
        /// `ML_RELAY_AGENT_ID`: this agent's id, as configured on the host.
        AgentId = "ML_RELAY_AGENT_ID",
        /// `ML_RELAY_KEY`: the agent's key (at least 32 characters), shared with the host.
        Key = "ML_RELAY_KEY" (secret),
    }
}

/// Builds an [`Agent`].
#[derive(Clone)]
pub struct AgentBuilder {
    values: ConfigValues<AgentConfigKey>,
    sap: SapEccBuilder,
    transport: Option<Arc<dyn RfcTransport>>,
    clock: Arc<dyn Clock>,
    backoff: RetryPolicy,
    idle: Duration,
    window: Duration,
}

impl fmt::Debug for AgentBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentBuilder")
            .field("values", &self.values)
            .field("sap", &self.sap)
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

impl Default for AgentBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl AgentBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self {
            values: ConfigValues::new(),
            sap: SapEccBuilder::new(),
            transport: None,
            clock: Arc::new(SystemClock),
            backoff: RetryPolicy::default()
                .with_base_delay(Duration::from_millis(500))
                .with_max_delay(Duration::from_secs(60)),
            idle: Duration::from_secs(60),
            window: DEFAULT_WINDOW,
        }
    }

    /// `ML_RELAY_*` and (for the local SOAP-RFC transport) `SAP_ECC_*` from the process
    /// environment.
    pub fn from_env() -> Self {
        Self::from_env_with(&ProcessEnv)
    }

    /// Like [`from_env`](Self::from_env), reading any [`Env`].
    pub fn from_env_with(env: &impl Env) -> Self {
        Self {
            values: ConfigValues::from_env_with(env),
            sap: SapEccBuilder::from_env_with(env),
            ..Self::new()
        }
    }

    /// Sets one value.
    pub fn with_config(mut self, key: AgentConfigKey, value: impl Into<String>) -> Self {
        if key.is_secret() {
            self.values
                .set_secret(key, SecretString::from(value.into()));
        } else {
            self.values.set(key, value);
        }
        self
    }

    /// Sets a value by name (`ML_RELAY_URL` or `url`); an unknown name is an error.
    pub fn with_config_str(
        mut self,
        name: &str,
        value: impl Into<String>,
    ) -> ml_core::Result<Self> {
        self.values.set_str(name, value)?;
        Ok(self)
    }

    /// The key.
    pub fn with_key(mut self, key: impl Into<SecretString>) -> Self {
        self.values.set_secret(AgentConfigKey::Key, key.into());
        self
    }

    /// The SAP side, when not from `SAP_ECC_*` (URL, client, user, password, cap).
    pub fn with_sap(mut self, sap: SapEccBuilder) -> Self {
        self.sap = sap;
        self
    }

    /// Any local transport instead of SOAP-RFC (a JCo/NCo bridge, a test double).
    pub fn with_transport(mut self, t: Arc<dyn RfcTransport>) -> Self {
        self.transport = Some(t);
        self
    }

    /// The clock of timestamps and deadlines.
    pub fn with_clock(mut self, c: Arc<dyn Clock>) -> Self {
        self.clock = c;
        self
    }

    /// The reconnect backoff (its ceiling grows per failed connection; attempts are
    /// unlimited).
    pub fn with_backoff(mut self, p: RetryPolicy) -> Self {
        self.backoff = p;
        self
    }

    /// How long the host may stay silent before the agent reconnects (default 60 s; the
    /// host pings every 15 s).
    pub fn with_idle_timeout(mut self, d: Duration) -> Self {
        self.idle = d;
        self
    }

    /// The timestamp window of the host's messages (default 60 s).
    pub fn with_window(mut self, d: Duration) -> Self {
        self.window = d;
        self
    }

    /// Checks and builds.
    pub fn build(self) -> Result<Agent, RelayError> {
        use AgentConfigKey as K;
        let raw = self.values.get(K::Url).ok_or_else(|| {
            RelayError::config(K::Url.env_name(), "required (the host's relay endpoint)")
        })?;
        let url = relay_url(raw)?;
        let agent_id = self
            .values
            .get(K::AgentId)
            .ok_or_else(|| RelayError::config(K::AgentId.env_name(), "required"))?
            .to_owned();
        check_agent_id(K::AgentId.env_name(), &agent_id)?;
        let key = self
            .values
            .secret(K::Key)
            .cloned()
            .ok_or_else(|| RelayError::config(K::Key.env_name(), "required"))?;
        check_key(K::Key.env_name(), &key)?;
        let transport = if let Some(t) = self.transport {
            t
        } else {
            // One attempt per call here: the host's RfcClient retries, and each of its
            // attempts must be one SAP call under its cap.
            let source = self
                .sap
                .with_retry(RetryPolicy::none())
                .build()
                .map_err(|e| match e {
                    ml_core::Error::Config { key, message } => RelayError::config(key, message),
                    other => RelayError::config("SAP_ECC_URL", other.to_string()),
                })?;
            Arc::new(ClientTransport(Arc::clone(source.client()))) as Arc<dyn RfcTransport>
        };
        Ok(Agent {
            url,
            id: agent_id,
            key,
            transport,
            clock: self.clock,
            backoff: self.backoff,
            idle: self.idle,
            window: self.window,
            counters: Arc::default(),
        })
    }
}

/// `wss://`, `https://` (read as `wss://`), `ws://` / `http://` to loopback; a missing
/// path becomes `/relay/v1/connect`.
fn relay_url(raw: &str) -> Result<Url, RelayError> {
    let key = AgentConfigKey::Url.env_name();
    let trimmed = raw.trim();
    let as_http = if let Some(rest) = trimmed.strip_prefix("wss://") {
        format!("https://{rest}")
    } else if let Some(rest) = trimmed.strip_prefix("ws://") {
        format!("http://{rest}")
    } else {
        trimmed.to_owned()
    };
    let mut url = check_url(key, &as_http).map_err(|e| match e {
        ml_core::Error::Config { key, message } => RelayError::config(key, message),
        other => RelayError::config(key, other.to_string()),
    })?;
    if url.path() == "/" || url.path().is_empty() {
        url.set_path(CONNECT_PATH);
    }
    let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
    url.set_scheme(scheme)
        .map_err(|()| RelayError::config(key, "cannot use a WebSocket scheme"))?;
    Ok(url)
}

/// Any [`RfcClient`] as a transport (the agent's SOAP-RFC client under its local cap).
#[derive(Debug)]
struct ClientTransport(Arc<RfcClient>);

#[async_trait]
impl RfcTransport for ClientTransport {
    async fn call(&self, call: &RfcCall) -> Result<RfcResponse, RfcError> {
        let mut c = call.clone();
        self.0.call(&mut c).await
    }

    fn system(&self) -> String {
        self.0.system()
    }
}

/// What an agent did so far ([`Agent::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AgentStats {
    /// Sessions the host accepted (and proved itself in).
    pub sessions: u64,
    /// Connection attempts that failed.
    pub failed_connects: u64,
    /// Calls run against SAP.
    pub calls: u64,
    /// Calls dropped at or past their deadline (run or not).
    pub expired: u64,
    /// Host messages refused (forged, replayed, expired).
    pub rejected: u64,
}

#[derive(Debug, Default)]
struct Counters {
    sessions: AtomicU64,
    failed_connects: AtomicU64,
    calls: AtomicU64,
    expired: AtomicU64,
    rejected: AtomicU64,
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The agent (see the module docs). Cheap to share: `run` takes `&self`.
pub struct Agent {
    url: Url,
    id: String,
    key: SecretString,
    transport: Arc<dyn RfcTransport>,
    clock: Arc<dyn Clock>,
    backoff: RetryPolicy,
    idle: Duration,
    window: Duration,
    counters: Arc<Counters>,
}

impl fmt::Debug for Agent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Agent")
            .field("url", &self.url.as_str())
            .field("id", &self.id)
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// A builder.
    pub fn builder() -> AgentBuilder {
        AgentBuilder::new()
    }

    /// An agent from `ML_RELAY_*` and `SAP_ECC_*`.
    pub fn from_env() -> Result<Self, RelayError> {
        AgentBuilder::from_env().build()
    }

    /// This agent's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The endpoint it connects to.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Counters so far.
    pub fn stats(&self) -> AgentStats {
        let c = &self.counters;
        AgentStats {
            sessions: c.sessions.load(Ordering::Relaxed),
            failed_connects: c.failed_connects.load(Ordering::Relaxed),
            calls: c.calls.load(Ordering::Relaxed),
            expired: c.expired.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
        }
    }

    /// Connects, serves, and reconnects with jittered backoff, until `shutdown`
    /// completes. A session that got the host's genuine welcome resets the backoff.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut failures = 0u32;
        loop {
            let outcome = tokio::select! {
                r = self.session() => r,
                () = &mut shutdown => return,
            };
            let welcomed = match &outcome {
                Ok(welcomed) | Err((welcomed, _)) => *welcomed,
            };
            if welcomed {
                failures = 0;
            }
            if let Err((_, e)) = &outcome {
                if !welcomed {
                    self.counters
                        .failed_connects
                        .fetch_add(1, Ordering::Relaxed);
                }
                tracing::warn!(agent = %self.id, error = %e, "relay session ended");
            }
            let wait = self.backoff.jittered_delay(failures, &mut rand::rng());
            failures = failures.saturating_add(1);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = &mut shutdown => return,
            }
        }
    }

    /// One connection. `Ok(true)` / `Err((true, _))`: the host welcomed us first.
    async fn session(&self) -> Result<bool, (bool, RelayError)> {
        let nonce = new_nonce();
        let mut ws = self.connect(&nonce).await.map_err(|e| (false, e))?;
        let mut signer = Signer::new(self.key.clone(), Direction::Agent, &self.id, &nonce);
        let mut verifier = Verifier::new(
            self.key.clone(),
            Direction::Host,
            &self.id,
            &nonce,
            self.window,
        );
        // The host proves it holds the key before any call is taken.
        let Ok(Some(text)) = tokio::time::timeout(self.idle, next_text(&mut ws)).await else {
            return Err((
                false,
                RelayError::Connection("no welcome from the host".into()),
            ));
        };
        let system = match verifier.open(&text, self.clock.now()) {
            Ok(body) => match serde_json::from_str::<HostMessage>(&body) {
                Ok(HostMessage::Welcome { system }) => system,
                _ => return Err((false, RelayError::Protocol("expected a welcome".into()))),
            },
            Err(r) => {
                self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                return Err((false, RelayError::rejected("host welcome", &r)));
            }
        };
        self.counters.sessions.fetch_add(1, Ordering::Relaxed);
        tracing::info!(agent = %self.id, system, "relay session open");
        let ready = serde_json::to_string(&AgentMessage::Ready {
            system: self.transport.system(),
        })
        .map_err(|e| (true, RelayError::Protocol(e.to_string())))?;
        send(&mut ws, signer.seal(&ready, self.clock.now()))
            .await
            .map_err(|e| (true, e))?;
        // Calls in flight belong to the session: dropped with it, never run later.
        let mut calls: JoinSet<AgentMessage> = JoinSet::new();
        let idle = tokio::time::sleep(self.idle);
        tokio::pin!(idle);
        loop {
            tokio::select! {
                msg = ws.next() => {
                    idle.as_mut().reset(tokio::time::Instant::now() + self.idle);
                    let text = match msg {
                        Some(Ok(Message::Text(t))) => t.as_str().to_owned(),
                        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                        Some(Ok(Message::Close(_))) => return Ok(true),
                        Some(Ok(Message::Binary(_))) => {
                            return Err((true, RelayError::Protocol("binary frame".into())));
                        }
                        Some(Err(e)) => return Err((true, RelayError::Connection(e.to_string()))),
                        None => return Err((true, RelayError::Connection("closed by the host".into()))),
                    };
                    let body = match verifier.open(&text, self.clock.now()) {
                        Ok(b) => b,
                        Err(r) => {
                            // Never run a call that is not provably the host's, fresh and new.
                            self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                            return Err((true, RelayError::rejected("host frame", &r)));
                        }
                    };
                    match serde_json::from_str::<HostMessage>(&body) {
                        Ok(HostMessage::Call { id, deadline_ms, call }) => {
                            let t = Arc::clone(&self.transport);
                            let clock = Arc::clone(&self.clock);
                            let counters = Arc::clone(&self.counters);
                            calls.spawn(execute(t, clock, counters, id, deadline_ms, call.into()));
                        }
                        _ => return Err((true, RelayError::Protocol("unexpected host message".into()))),
                    }
                }
                Some(done) = calls.join_next(), if !calls.is_empty() => {
                    let Ok(msg) = done else { continue };
                    let body = serde_json::to_string(&msg)
                        .map_err(|e| (true, RelayError::Protocol(e.to_string())))?;
                    send(&mut ws, signer.seal(&body, self.clock.now()))
                        .await
                        .map_err(|e| (true, e))?;
                }
                () = &mut idle => {
                    return Err((true, RelayError::Connection("the host went silent".into())));
                }
            }
        }
    }

    async fn connect(&self, nonce: &str) -> Result<Ws, RelayError> {
        let mut req = self
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| RelayError::Connection(e.to_string()))?;
        let ts = self.clock.now().as_second();
        let sig = connect_signature(&self.key, &self.id, ts, nonce);
        let h = req.headers_mut();
        for (name, value) in [
            (H_AGENT, self.id.clone()),
            (H_TIMESTAMP, ts.to_string()),
            (H_NONCE, nonce.to_owned()),
            (H_SIGNATURE, sig),
        ] {
            let v = HeaderValue::from_str(&value).map_err(|_| {
                RelayError::config(AgentConfigKey::AgentId.env_name(), "not a header value")
            })?;
            h.insert(name, v);
        }
        let connector = if self.url.scheme() == "wss" {
            tokio_tungstenite::Connector::Rustls(tls_config()?)
        } else {
            tokio_tungstenite::Connector::Plain
        };
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_FRAME))
            .max_frame_size(Some(MAX_FRAME));
        match tokio_tungstenite::connect_async_tls_with_config(
            req,
            Some(config),
            true,
            Some(connector),
        )
        .await
        {
            Ok((ws, _)) => Ok(ws),
            Err(tungstenite::Error::Http(resp)) if resp.status().as_u16() == 401 => Err(
                RelayError::Auth("the host refused this agent's id or key (401)".into()),
            ),
            Err(e) => Err(RelayError::Connection(e.to_string())),
        }
    }
}

async fn execute(
    transport: Arc<dyn RfcTransport>,
    clock: Arc<dyn Clock>,
    counters: Arc<Counters>,
    id: u64,
    deadline_ms: i64,
    call: RfcCall,
) -> AgentMessage {
    let now = clock.now().as_millisecond();
    let Some(left) = u64::try_from(deadline_ms.saturating_sub(now))
        .ok()
        .filter(|ms| *ms > 0)
    else {
        counters.expired.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            id,
            function = call.function(),
            "call arrived past its deadline: dropped"
        );
        return AgentMessage::Expired { id, started: false };
    };
    counters.calls.fetch_add(1, Ordering::Relaxed);
    if let Ok(outcome) =
        tokio::time::timeout(Duration::from_millis(left), transport.call(&call)).await
    {
        AgentMessage::Result {
            id,
            outcome: (&outcome).into(),
        }
    } else {
        counters.expired.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            id,
            function = call.function(),
            "call passed its deadline: stopped"
        );
        AgentMessage::Expired { id, started: true }
    }
}

async fn send(ws: &mut Ws, frame: String) -> Result<(), RelayError> {
    ws.send(Message::Text(frame.into()))
        .await
        .map_err(|e| RelayError::Connection(e.to_string()))
}

async fn next_text(ws: &mut Ws) -> Option<String> {
    loop {
        match ws.next().await? {
            Ok(Message::Text(t)) => return Some(t.as_str().to_owned()),
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            _ => return None,
        }
    }
}

/// rustls on *ring* with the platform verifier, nothing installed process-wide.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, RelayError> {
    use rustls_platform_verifier::BuilderVerifierExt;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(BuilderVerifierExt::with_platform_verifier)
        .map_err(|e| RelayError::Connection(format!("cannot set up TLS: {e}")))?
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use ml_core::config::MapEnv;

    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef-agent";

    #[test]
    fn configuration_from_env_is_checked_and_never_shows_the_key() {
        let env = MapEnv::from([
            ("ML_RELAY_URL", "wss://ml.example.com"),
            ("ML_RELAY_AGENT_ID", "plant-1"),
            ("ML_RELAY_KEY", KEY),
            ("SAP_ECC_URL", "http://127.0.0.1:9"),
            ("SAP_ECC_CLIENT", "100"),
            ("SAP_ECC_USER", "RFC_ML"),
            ("SAP_ECC_PASSWORD", "hunter2-sap"),
        ]);
        let b = AgentBuilder::from_env_with(&env);
        let a = b.clone().build().expect("agent");
        assert_eq!(a.url().as_str(), "wss://ml.example.com/relay/v1/connect");
        let shown = format!("{a:?} {b:?}");
        assert!(
            !shown.contains(KEY) && !shown.contains("hunter2"),
            "{shown}"
        );
        for (k, v, want) in [
            ("ML_RELAY_URL", "ws://ml.example.com", "ML_RELAY_URL"),
            ("ML_RELAY_URL", "ftp://127.0.0.1", "ML_RELAY_URL"),
            ("ML_RELAY_AGENT_ID", "plant 1", "ML_RELAY_AGENT_ID"),
            ("ML_RELAY_KEY", "short", "ML_RELAY_KEY"),
        ] {
            let e = b
                .clone()
                .with_config_str(k, v)
                .expect("known")
                .build()
                .expect_err(k);
            let text = e.to_string();
            assert!(text.contains(want), "{text}");
            assert!(!text.contains("short") || k != "ML_RELAY_KEY", "{text}");
        }
        assert!(
            AgentBuilder::new()
                .with_config_str("ML_RELAY_KYE", "x")
                .is_err()
        );
        let local = b
            .with_config_str("url", "ws://127.0.0.1:8080/custom")
            .expect("k")
            .build()
            .expect("agent");
        assert_eq!(local.url().as_str(), "ws://127.0.0.1:8080/custom");
        let no_sap = AgentBuilder::new()
            .with_config(AgentConfigKey::Url, "https://ml.example.com")
            .with_config(AgentConfigKey::AgentId, "a")
            .with_key(SecretString::from(KEY.to_owned()))
            .build()
            .expect_err("no SAP");
        assert!(no_sap.to_string().contains("SAP_ECC_URL"), "{no_sap}");
    }
}
