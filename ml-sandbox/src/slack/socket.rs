//! Socket Mode: `apps.connections.open` and the WebSocket it points to.
//!
//! Each connection gets `hello` first, then the envelopes tests push (`events_api`,
//! `slash_commands`, `interactive`), spread round-robin over the open connections. An
//! envelope stays unacknowledged until the client sends `{"envelope_id": "..."}`; when its
//! connection goes away unacknowledged, it is sent again on the next connection with
//! `retry_attempt` + 1 and `retry_reason: "timeout"`.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use super::caller::{BlockActions, SlashCommand};
use super::state::{Inner, SlackState, TokenKind};
use super::web_api::{ApiError, ApiRequest, ApiResult, check_token};

/// An envelope acknowledged by a Socket Mode client.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Ack {
    /// The acknowledged `envelope_id`.
    pub envelope_id: String,
    /// The `payload` sent with the ack, if any.
    pub payload: Option<Value>,
    /// Whether the id was one of the envelopes in flight (false for unknown ids and for a
    /// second ack of the same envelope).
    pub known: bool,
    /// The `retry_attempt` of the delivery that was acknowledged (0 for the first one).
    pub retry_attempt: u32,
}

#[derive(Debug, Clone)]
struct Envelope {
    id: String,
    kind: String,
    payload: Value,
    accepts_response_payload: bool,
    retry_attempt: u32,
    retry_reason: String,
}

impl Envelope {
    fn to_json(&self) -> String {
        json!({
            "envelope_id": self.id,
            "payload": self.payload,
            "type": self.kind,
            "accepts_response_payload": self.accepts_response_payload,
            "retry_attempt": self.retry_attempt,
            "retry_reason": self.retry_reason,
        })
        .to_string()
    }
}

#[derive(Debug)]
enum Command {
    Text(String),
    Close,
    Drop,
}

#[derive(Debug)]
struct Connection {
    id: u64,
    tx: mpsc::UnboundedSender<Command>,
}

/// Socket Mode state, inside the emulator's lock.
#[derive(Debug, Default)]
pub(crate) struct SocketInner {
    tickets: HashSet<String>,
    connections: Vec<Connection>,
    next_connection: u64,
    round_robin: usize,
    opened: u64,
    pending: VecDeque<Envelope>,
    in_flight: Vec<(Envelope, u64)>,
    acks: Vec<Ack>,
    received: Vec<Value>,
}

impl SocketInner {
    /// Sends pending envelopes to open connections.
    fn dispatch(&mut self) {
        while !self.connections.is_empty() {
            let Some(envelope) = self.pending.pop_front() else {
                break;
            };
            let index = self.round_robin % self.connections.len();
            self.round_robin = self.round_robin.wrapping_add(1);
            let connection = &self.connections[index];
            if connection
                .tx
                .send(Command::Text(envelope.to_json()))
                .is_err()
            {
                let id = connection.id;
                self.pending.push_front(envelope);
                self.remove(id);
                continue;
            }
            let id = connection.id;
            self.in_flight.push((envelope, id));
        }
    }

    /// Forgets a connection; its unacknowledged envelopes go back to the front of the queue
    /// as retries.
    fn remove(&mut self, connection: u64) {
        self.connections.retain(|c| c.id != connection);
        let (orphaned, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.in_flight)
            .into_iter()
            .partition(|(_, c)| *c == connection);
        self.in_flight = kept;
        for (mut envelope, _) in orphaned.into_iter().rev() {
            envelope.retry_attempt += 1;
            "timeout".clone_into(&mut envelope.retry_reason);
            self.pending.push_front(envelope);
        }
    }

    fn broadcast(&mut self, command: impl Fn() -> Command) {
        for connection in &self.connections {
            let _ = connection.tx.send(command());
        }
    }

    fn receive(&mut self, text: &str) {
        let Ok(value) = serde_json::from_str::<Value>(text) else {
            self.received.push(Value::String(text.to_owned()));
            return;
        };
        self.received.push(value.clone());
        let Some(id) = value.get("envelope_id").and_then(Value::as_str) else {
            return;
        };
        let position = self.in_flight.iter().position(|(e, _)| e.id == id);
        let (known, retry_attempt) = match position {
            Some(i) => {
                let (envelope, _) = self.in_flight.remove(i);
                (true, envelope.retry_attempt)
            }
            None => (false, 0),
        };
        self.acks.push(Ack {
            envelope_id: id.to_owned(),
            payload: value.get("payload").cloned(),
            known,
            retry_attempt,
        });
    }
}

/// `apps.connections.open`: an app-level token in the `Authorization` header only.
pub(crate) fn connections_open(state: &SlackState, request: &ApiRequest) -> ApiResult {
    let now = state.now();
    let mut inner = state.lock();
    let token = request
        .bearer
        .as_deref()
        .ok_or(ApiError::new("not_authed"))?;
    check_token(&inner, token, TokenKind::App, now)?;
    let ticket = uuid_like(&mut inner);
    inner.socket.tickets.insert(ticket.clone());
    let host = state
        .identity
        .root_url
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let mut out = Map::new();
    out.insert("url".into(), json!(format!("ws://{host}/socket/{ticket}")));
    Ok(out)
}

/// `8-4-4-4-12` lower-case hex, like Slack's envelope ids.
pub(crate) fn uuid_like(inner: &mut Inner) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        inner.hex(8),
        inner.hex(4),
        inner.hex(4),
        inner.hex(4),
        inner.hex(12)
    )
}

/// `GET /socket/{ticket}`: upgrades when the ticket is valid (each is good once).
pub(crate) async fn upgrade(
    State(state): State<Arc<SlackState>>,
    Path(ticket): Path<String>,
    ws: WebSocketUpgrade,
) -> Response {
    if !state.lock().socket.tickets.remove(&ticket) {
        return (StatusCode::UNAUTHORIZED, "invalid or used ticket").into_response();
    }
    ws.on_upgrade(move |socket| run(socket, state))
}

async fn run(mut socket: WebSocket, state: Arc<SlackState>) {
    let mut shutdown = state.shutdown.clone();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let num_connections = state.lock().socket.connections.len() + 1;
    let hello = json!({
        "type": "hello",
        "num_connections": num_connections,
        "debug_info": {
            "host": "applink-sandbox",
            "build_number": 1,
            "approximate_connection_time": 18060,
        },
        "connection_info": {"app_id": state.identity.app_id},
    });
    if socket
        .send(Message::Text(hello.to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    let id = {
        let mut inner = state.lock();
        let socket = &mut inner.socket;
        socket.next_connection += 1;
        socket.opened += 1;
        let id = socket.next_connection;
        socket.connections.push(Connection { id, tx });
        socket.dispatch();
        id
    };
    state.socket_changed.send_modify(|n| *n += 1);
    loop {
        tokio::select! {
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    state.lock().socket.receive(text.as_str());
                    state.socket_changed.send_modify(|n| *n += 1);
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            command = rx.recv() => match command {
                Some(Command::Text(text)) => {
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                Some(Command::Close) => {
                    let _ = socket.send(Message::Close(None)).await;
                    break;
                }
                // Dropping the socket closes TCP without a close frame.
                Some(Command::Drop) | None => break,
            },
            () = shutdown.wait() => break,
        }
    }
    drop(socket);
    {
        let mut inner = state.lock();
        inner.socket.remove(id);
        inner.socket.dispatch();
    }
    state.socket_changed.send_modify(|n| *n += 1);
}

/// Test-side control of Socket Mode: push envelopes, read acks, disconnect clients.
#[derive(Debug, Clone)]
pub struct SocketMode {
    pub(crate) state: Arc<SlackState>,
}

impl SocketMode {
    /// Queues an envelope of type `kind` (`events_api`, `slash_commands`, `interactive`)
    /// with this payload; returns its `envelope_id`. It is sent at once when a client is
    /// connected, otherwise to the next one that connects.
    pub fn push(&self, kind: &str, payload: Value, accepts_response_payload: bool) -> String {
        let id = {
            let mut inner = self.state.lock();
            let id = uuid_like(&mut inner);
            inner.socket.pending.push_back(Envelope {
                id: id.clone(),
                kind: kind.to_owned(),
                payload,
                accepts_response_payload,
                retry_attempt: 0,
                retry_reason: String::new(),
            });
            inner.socket.dispatch();
            id
        };
        self.state.socket_changed.send_modify(|n| *n += 1);
        id
    }

    /// Pushes an `events_api` envelope whose payload is the `event_callback` wrapper of
    /// `event` (as [`SlackCaller::event_envelope`](super::SlackCaller::event_envelope)
    /// builds it).
    pub fn push_event(&self, event: Value) -> String {
        let payload = super::caller::event_envelope(&self.state, event);
        self.push("events_api", payload, false)
    }

    /// Pushes a `slash_commands` envelope (payload: the command's fields as a JSON object).
    pub fn push_slash_command(&self, command: &SlashCommand) -> String {
        let fields = command.fields(&self.state);
        let payload: Map<String, Value> = fields
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        self.push("slash_commands", Value::Object(payload), true)
    }

    /// Pushes an `interactive` envelope with a `block_actions` payload.
    pub fn push_interactive(&self, actions: &BlockActions) -> String {
        let payload = actions.payload(&self.state);
        self.push("interactive", payload, false)
    }

    /// Every ack received, in order.
    pub fn acks(&self) -> Vec<Ack> {
        self.state.lock().socket.acks.clone()
    }

    /// Whether `envelope_id` was acknowledged.
    pub fn is_acked(&self, envelope_id: &str) -> bool {
        self.state
            .lock()
            .socket
            .acks
            .iter()
            .any(|a| a.known && a.envelope_id == envelope_id)
    }

    /// Every message a client sent (parsed JSON; a JSON string for non-JSON text).
    pub fn received(&self) -> Vec<Value> {
        self.state.lock().socket.received.clone()
    }

    /// Ids of envelopes sent or queued but not acknowledged yet.
    pub fn unacked(&self) -> Vec<String> {
        let inner = self.state.lock();
        inner
            .socket
            .in_flight
            .iter()
            .map(|(e, _)| e.id.clone())
            .chain(inner.socket.pending.iter().map(|e| e.id.clone()))
            .collect()
    }

    /// Open connections now.
    pub fn connection_count(&self) -> usize {
        self.state.lock().socket.connections.len()
    }

    /// Connections opened since the start (each got a `hello`).
    pub fn connections_opened(&self) -> u64 {
        self.state.lock().socket.opened
    }

    /// Sends `{"type":"disconnect","reason":<reason>}` to every open connection (Slack uses
    /// `refresh_requested`, `warning`, `link_disabled`); the socket stays open until the
    /// client closes it (see [`close_connections`](Self::close_connections)).
    pub fn disconnect(&self, reason: &str) {
        let text = json!({
            "type": "disconnect",
            "reason": reason,
            "debug_info": {"host": "applink-sandbox"},
        })
        .to_string();
        self.state
            .lock()
            .socket
            .broadcast(|| Command::Text(text.clone()));
    }

    /// Sends a close frame on every open connection and closes it.
    pub fn close_connections(&self) {
        self.state.lock().socket.broadcast(|| Command::Close);
    }

    /// Closes every open connection's TCP stream abruptly, without a close frame.
    pub fn drop_connections(&self) {
        self.state.lock().socket.broadcast(|| Command::Drop);
    }

    /// Sends every unacknowledged in-flight envelope again (on any open connection) with
    /// `retry_attempt` + 1 and `retry_reason: "timeout"`, as Slack does when an ack is late.
    pub fn redeliver_unacked(&self) {
        {
            let mut inner = self.state.lock();
            let socket = &mut inner.socket;
            for (mut envelope, _) in std::mem::take(&mut socket.in_flight).into_iter().rev() {
                envelope.retry_attempt += 1;
                "timeout".clone_into(&mut envelope.retry_reason);
                socket.pending.push_front(envelope);
            }
            socket.dispatch();
        }
        self.state.socket_changed.send_modify(|n| *n += 1);
    }

    /// Waits until `envelope_id` is acknowledged. Wrap in `tokio::time::timeout`.
    pub async fn wait_for_ack(&self, envelope_id: &str) {
        self.wait_until(|s| s.is_acked(envelope_id)).await;
    }

    /// Waits until exactly `n` connections are open. Wrap in `tokio::time::timeout`.
    pub async fn wait_for_connections(&self, n: usize) {
        self.wait_until(|s| s.connection_count() == n).await;
    }

    /// Waits until `n` connections have been opened since the start.
    pub async fn wait_for_connections_opened(&self, n: u64) {
        self.wait_until(|s| s.connections_opened() >= n).await;
    }

    async fn wait_until(&self, done: impl Fn(&Self) -> bool) {
        let mut rx = self.state.socket_changed.subscribe();
        while !done(self) {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}
