//! Socket Mode (feature `socket-mode`): `apps.connections.open` with the app-level token
//! (`xapp-…`), then a WebSocket loop that acknowledges every envelope and feeds the same
//! typed [`Received`] values as the HTTP receiver (through [`SlackReceiver::deliver`], so
//! retry dedupe and the hand-off are shared).
//!
//! * Each envelope is handed off first (never waiting for the host) and then acknowledged
//!   with `{"envelope_id": …}`, well within Slack's 3 seconds. An envelope that cannot be
//!   handed off (the host's queue is full) is not acknowledged, so Slack sends it again.
//! * `disconnect` (Slack rotates connections every few hours) opens a new connection at
//!   once; a dropped socket or a failed open reconnects after a jittered backoff
//!   (1 s doubling to 30 s). An `invalid_auth`-like permanent error ends the loop.
//! * `wss://` uses rustls on the *ring* provider with the platform verifier (as
//!   `ml_core::http`); plain `ws://` is accepted only for loopback addresses (the sandbox).

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use ml_core::ErrorClass;
use ml_core::auth::Credentials;
use ml_core::clock::{Clock, SystemClock};
use ml_core::http::{ApiClient, Request};
use ml_core::retry::RetryPolicy;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use url::Url;

use crate::client::send_checked;
use crate::error::SlackError;
use crate::events::{Inbound, Received, Via, event_callback, interaction};
use crate::receiver::SlackReceiver;

/// Counters of a Socket Mode run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketModeStats {
    /// Connections opened.
    pub connections: u64,
    /// Envelopes acknowledged.
    pub acked: u64,
    /// Envelopes handed to the host (duplicates are acknowledged but not handed off).
    pub envelopes: u64,
    /// `disconnect` messages obeyed.
    pub disconnects: u64,
    /// Connections lost or failed to open.
    pub failures: u64,
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

enum SessionEnd {
    Disconnect,
    Shutdown,
}

/// The Socket Mode client.
pub struct SocketModeClient {
    http: reqwest::Client,
    api: Url,
    app_token: SecretString,
    receiver: Arc<SlackReceiver>,
    backoff: RetryPolicy,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for SocketModeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketModeClient")
            .field("api", &self.api.as_str())
            .field("app_token", &"<redacted>")
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

impl SocketModeClient {
    /// A client opening connections at `api` (`…/api/`) with `app_token`, feeding
    /// `receiver`.
    pub fn new(
        http: reqwest::Client,
        api: Url,
        app_token: SecretString,
        receiver: Arc<SlackReceiver>,
    ) -> Self {
        Self {
            http,
            api,
            app_token,
            receiver,
            backoff: RetryPolicy::default()
                .with_base_delay(Duration::from_secs(1))
                .with_max_delay(Duration::from_secs(30)),
            clock: Arc::new(SystemClock),
        }
    }

    /// Sets the reconnect backoff (only its base and max delays are used: Socket Mode
    /// reconnects for ever).
    pub fn with_backoff(mut self, policy: RetryPolicy) -> Self {
        self.backoff = policy;
        self
    }

    /// Sets the clock (stamps `Received::received_at`).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Calls `apps.connections.open` and returns the WebSocket URL.
    pub async fn open_connection(&self) -> Result<Url, SlackError> {
        const METHOD: &str = "apps.connections.open";
        let url = self
            .api
            .join(METHOD)
            .map_err(|e| SlackError::config("SLACK_API_URL", e.to_string()))?;
        let request = Request::from_url(http::Method::POST, url)
            .body("application/x-www-form-urlencoded", Vec::new())
            .idempotent(true);
        let api = ApiClient::reqwest(self.http.clone())
            .with_credentials(Credentials::Bearer(self.app_token.clone()))
            .with_clock(Arc::clone(&self.clock));
        let body = send_checked(&api, request, METHOD, Some("SLACK_APP_TOKEN")).await?;
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let raw =
            v.get("url")
                .and_then(Value::as_str)
                .ok_or_else(|| SlackError::InvalidResponse {
                    method: METHOD.into(),
                    message: "no `url`".into(),
                    class: ErrorClass::RETRYABLE,
                })?;
        let url = Url::parse(raw).map_err(|e| SlackError::InvalidResponse {
            method: METHOD.into(),
            message: format!("bad `url`: {e}"),
            class: ErrorClass::RETRYABLE,
        })?;
        match url.scheme() {
            "wss" => Ok(url),
            "ws" if is_loopback(&url) => Ok(url),
            other => Err(SlackError::SocketMode {
                message: format!("refusing a `{other}` socket URL (wss only; ws for loopback)"),
                class: ErrorClass::Permanent,
            }),
        }
    }

    /// Runs until `shutdown` completes (or a permanent error): connects, acknowledges and
    /// hands off envelopes, reconnects on `disconnect` and on failures. On shutdown the
    /// socket is closed cleanly.
    pub async fn run(
        &self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<SocketModeStats, SlackError> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let work = self.run_until(stop_rx);
        let mut work = std::pin::pin!(work);
        tokio::select! {
            r = &mut work => return r,
            () = shutdown => {}
        }
        let _ = stop_tx.send(true);
        work.await
    }

    async fn run_until(
        &self,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<SocketModeStats, SlackError> {
        let mut stats = SocketModeStats::default();
        let mut failures: u32 = 0;
        loop {
            if *stop.borrow() {
                return Ok(stats);
            }
            let outcome = tokio::select! {
                () = stopped(&mut stop) => return Ok(stats),
                r = self.connect() => r,
            };
            let outcome = match outcome {
                Ok(ws) => {
                    stats.connections += 1;
                    self.session(ws, &mut stats, &mut stop).await
                }
                Err(e) => Err(e),
            };
            match outcome {
                Ok(SessionEnd::Shutdown) => return Ok(stats),
                Ok(SessionEnd::Disconnect) => {
                    stats.disconnects += 1;
                    failures = 0;
                }
                Err(e) if e.class() == ErrorClass::Permanent => return Err(e),
                Err(e) => {
                    stats.failures += 1;
                    let jittered = self.backoff.jittered_delay(failures, &mut rand::rng());
                    failures = failures.saturating_add(1);
                    let wait = e.class().retry_after().unwrap_or(jittered);
                    tracing::warn!(error = %e, wait_ms = wait.as_millis(), "socket mode reconnecting");
                    tokio::select! {
                        () = stopped(&mut stop) => return Ok(stats),
                        () = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }

    async fn connect(&self) -> Result<Ws, SlackError> {
        let url = self.open_connection().await?;
        let connector = if url.scheme() == "wss" {
            tokio_tungstenite::Connector::Rustls(tls_config()?)
        } else {
            tokio_tungstenite::Connector::Plain
        };
        let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(
            url.as_str(),
            None,
            true,
            Some(connector),
        )
        .await
        .map_err(|e| socket_error(format!("connect failed: {e}")))?;
        tracing::info!("socket mode connected");
        Ok(ws)
    }

    async fn session(
        &self,
        mut ws: Ws,
        stats: &mut SocketModeStats,
        stop: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Result<SessionEnd, SlackError> {
        loop {
            let next = tokio::select! {
                () = stopped(stop) => {
                    let _ = ws.close(None).await;
                    return Ok(SessionEnd::Shutdown);
                }
                m = ws.next() => m,
            };
            let msg = match next {
                None => return Err(socket_error("socket closed".into())),
                Some(Err(e)) => return Err(socket_error(format!("socket failed: {e}"))),
                Some(Ok(m)) => m,
            };
            let text = match msg {
                Message::Text(t) => t,
                Message::Close(_) => return Err(socket_error("socket closed by Slack".into())),
                _ => continue,
            };
            let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
                tracing::warn!("socket mode: ignoring a non-JSON message");
                continue;
            };
            match v.get("type").and_then(Value::as_str) {
                Some("hello") => {
                    tracing::debug!(connections = ?v.get("num_connections"), "socket mode hello");
                    continue;
                }
                Some("disconnect") => {
                    tracing::info!(reason = ?v.get("reason"), "socket mode disconnect requested");
                    let _ = ws.close(None).await;
                    return Ok(SessionEnd::Disconnect);
                }
                _ => {}
            }
            let Some(envelope_id) = v.get("envelope_id").and_then(Value::as_str) else {
                continue;
            };
            let envelope_id = envelope_id.to_owned();
            match self.hand_off(&v, &envelope_id).await {
                Ok(fresh) => {
                    stats.envelopes += u64::from(fresh);
                    ws.send(Message::text(
                        json!({ "envelope_id": envelope_id }).to_string(),
                    ))
                    .await
                    .map_err(|e| socket_error(format!("ack failed: {e}")))?;
                    stats.acked += 1;
                }
                Err(e) => {
                    tracing::warn!(envelope_id, error = %e, "envelope not acknowledged");
                }
            }
        }
    }

    /// Parses and hands off one envelope; `Ok(false)` for an acknowledged duplicate or a
    /// payload this client does not type (still acknowledged).
    async fn hand_off(
        &self,
        v: &Value,
        envelope_id: &str,
    ) -> Result<bool, crate::error::Rejection> {
        let payload = v.get("payload").cloned().unwrap_or(Value::Null);
        let inbound = match v.get("type").and_then(Value::as_str) {
            Some("events_api") => event_callback(&payload).map(Inbound::Event),
            Some("interactive") => interaction(payload).map(Inbound::Interaction),
            Some("slash_commands") => slash_command(payload).map(Inbound::SlashCommand),
            other => {
                tracing::debug!(kind = ?other, "socket mode: acknowledging an untyped envelope");
                return Ok(false);
            }
        };
        let inbound = match inbound {
            Ok(i) => i,
            Err(e) => {
                // Acknowledge what cannot be parsed: a retry would not parse either.
                tracing::warn!(envelope_id, error = %e, "socket mode: malformed envelope");
                return Ok(false);
            }
        };
        let received = Received {
            inbound,
            via: Via::SocketMode {
                envelope_id: envelope_id.to_owned(),
                retry_attempt: v
                    .get("retry_attempt")
                    .and_then(Value::as_u64)
                    .map(|n| n as u32),
            },
            received_at: self.clock.now(),
        };
        self.receiver.deliver(received, self.clock.now()).await
    }
}

/// A slash command payload from Socket Mode (a JSON object of the form's fields).
fn slash_command(payload: Value) -> Result<crate::events::SlashCommand, crate::error::Rejection> {
    let Value::Object(map) = payload else {
        return Err(crate::error::Rejection::Malformed(
            "command payload is not an object".into(),
        ));
    };
    let pairs: Vec<(String, String)> = map
        .into_iter()
        .filter(|(k, _)| k != "token")
        .map(|(k, v)| {
            let s = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            (k, s)
        })
        .collect();
    let form = serde_urlencoded::to_string(pairs)
        .map_err(|e| crate::error::Rejection::Malformed(e.to_string()))?;
    crate::events::slash_command(form.as_bytes())
}

/// Resolves once `stop` turns true (or its sender is gone); holds no borrow afterwards.
async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await.map(|_| ());
}

fn socket_error(message: String) -> SlackError {
    SlackError::SocketMode {
        message,
        class: ErrorClass::RETRYABLE,
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// rustls on *ring* with the platform verifier, nothing installed process-wide.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, SlackError> {
    use rustls_platform_verifier::BuilderVerifierExt;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(BuilderVerifierExt::with_platform_verifier)
        .map_err(|e| SlackError::SocketMode {
            message: format!("cannot set up TLS: {e}"),
            class: ErrorClass::Permanent,
        })?
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slash_command_payload_from_json() {
        let c = slash_command(json!({"command": "/approve-invoice", "text": "INV-7", "user_id": "U1", "token": "secret", "is_enterprise_install": false}))
            .expect("cmd");
        assert_eq!(c.command, "/approve-invoice");
        assert_eq!(c.is_enterprise_install.as_deref(), Some("false"));
        assert!(slash_command(json!("x")).is_err());
    }

    #[test]
    fn tls_builds_on_ring() {
        assert!(tls_config().is_ok());
    }
}
