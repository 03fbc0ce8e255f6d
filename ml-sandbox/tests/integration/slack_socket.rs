//! Socket Mode: apps.connections.open and the WebSocket.

use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use ml_sandbox::slack::{BlockActions, SlackEmulator, SlashCommand};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::common::call_as;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const WAIT: Duration = Duration::from_secs(5);

async fn open_url(slack: &SlackEmulator) -> String {
    let r = call_as(
        slack,
        "apps.connections.open",
        Some(&slack.app_token()),
        json!({}),
    )
    .await;
    r.ok()["url"].as_str().unwrap().to_owned()
}

async fn connect(slack: &SlackEmulator) -> Ws {
    let url = open_url(slack).await;
    assert!(url.starts_with("ws://127.0.0.1:"), "{url}");
    let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    ws
}

/// The next text frame as JSON; `None` when the stream ends or errs.
async fn next_json(ws: &mut Ws) -> Option<Value> {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("timed out")
        {
            Some(Ok(Message::Text(t))) => return Some(serde_json::from_str(t.as_str()).unwrap()),
            Some(Ok(Message::Close(_)) | Err(_)) | None => return None,
            Some(Ok(_)) => {}
        }
    }
}

async fn ack(ws: &mut Ws, envelope_id: &str) {
    ws.send(Message::Text(
        json!({"envelope_id": envelope_id}).to_string().into(),
    ))
    .await
    .unwrap();
}

#[tokio::test]
async fn connections_open_auth() {
    let slack = SlackEmulator::start().await.unwrap();
    let r = call_as(
        &slack,
        "apps.connections.open",
        Some(&slack.bot_token()),
        json!({}),
    )
    .await;
    assert_eq!(r.error(), "not_allowed_token_type");
    let r = call_as(&slack, "apps.connections.open", None, json!({})).await;
    assert_eq!(r.error(), "not_authed");
    let r = call_as(
        &slack,
        "apps.connections.open",
        Some("xapp-1-A1-2-nope"),
        json!({}),
    )
    .await;
    assert_eq!(r.error(), "invalid_auth");

    // A ticket is good once.
    let url = open_url(&slack).await;
    let (_ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    assert!(
        tokio_tungstenite::connect_async(url.as_str())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn hello_envelopes_and_acks() {
    let slack = SlackEmulator::start().await.unwrap();
    let socket = slack.socket();
    // Queued before anyone is connected: delivered after hello.
    let early = socket.push_event(
        json!({"type": "app_mention", "text": "hi", "channel": "C00GENERAL", "user": "U00HUMAN01"}),
    );
    let mut ws = connect(&slack).await;
    let hello = next_json(&mut ws).await.unwrap();
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["num_connections"], 1);
    assert_eq!(hello["connection_info"]["app_id"], slack.app_id());

    let envelope = next_json(&mut ws).await.unwrap();
    assert_eq!(envelope["type"], "events_api");
    assert_eq!(envelope["envelope_id"], early);
    assert_eq!(envelope["retry_attempt"], 0);
    assert_eq!(envelope["accepts_response_payload"], false);
    assert_eq!(envelope["payload"]["type"], "event_callback");
    assert_eq!(envelope["payload"]["event"]["text"], "hi");
    assert!(
        envelope["payload"]["event_id"]
            .as_str()
            .unwrap()
            .starts_with("Ev")
    );
    assert!(!socket.is_acked(&early));
    ack(&mut ws, &early).await;
    tokio::time::timeout(WAIT, socket.wait_for_ack(&early))
        .await
        .unwrap();
    assert!(socket.unacked().is_empty());

    let slash = socket.push_slash_command(&SlashCommand::new("/approve", "INV-9"));
    let e = next_json(&mut ws).await.unwrap();
    assert_eq!(e["type"], "slash_commands");
    assert_eq!(e["accepts_response_payload"], true);
    assert_eq!(e["payload"]["command"], "/approve");
    assert_eq!(e["payload"]["text"], "INV-9");
    assert!(e["payload"]["response_url"].is_string());
    ws.send(Message::Text(
        json!({"envelope_id": slash, "payload": {"text": "Approved"}})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    tokio::time::timeout(WAIT, socket.wait_for_ack(&slash))
        .await
        .unwrap();

    let click = socket.push_interactive(&BlockActions::new("approve", "INV-9"));
    let e = next_json(&mut ws).await.unwrap();
    assert_eq!(e["type"], "interactive");
    assert_eq!(e["payload"]["type"], "block_actions");
    assert_eq!(e["payload"]["actions"][0]["value"], "INV-9");
    ack(&mut ws, &click).await;
    tokio::time::timeout(WAIT, socket.wait_for_ack(&click))
        .await
        .unwrap();

    let acks = socket.acks();
    assert_eq!(acks.len(), 3);
    assert_eq!(acks[1].payload, Some(json!({"text": "Approved"})));
    assert!(acks.iter().all(|a| a.known && a.retry_attempt == 0));
    assert_eq!(socket.connections_opened(), 1);
}

#[tokio::test]
async fn disconnect_then_reconnect_redelivers_unacked() {
    let slack = SlackEmulator::start().await.unwrap();
    let socket = slack.socket();
    let mut ws = connect(&slack).await;
    assert_eq!(next_json(&mut ws).await.unwrap()["type"], "hello");
    tokio::time::timeout(WAIT, socket.wait_for_connections(1))
        .await
        .unwrap();
    let unacked = socket.push_event(json!({"type": "message", "text": "one"}));
    let first = next_json(&mut ws).await.unwrap();
    assert_eq!(first["envelope_id"], unacked);

    socket.disconnect("refresh_requested");
    let d = next_json(&mut ws).await.unwrap();
    assert_eq!(
        d,
        json!({"type": "disconnect", "reason": "refresh_requested", "debug_info": {"host": "applink-sandbox"}})
    );

    // The client reconnects without acking; then closes the old socket.
    let mut ws2 = connect(&slack).await;
    let hello = next_json(&mut ws2).await.unwrap();
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["num_connections"], 2);
    ws.close(None).await.unwrap();
    let again = next_json(&mut ws2).await.unwrap();
    assert_eq!(again["envelope_id"], unacked);
    assert_eq!(again["retry_attempt"], 1);
    assert_eq!(again["retry_reason"], "timeout");
    assert_eq!(
        again["payload"], first["payload"],
        "same payload, same event_id"
    );
    ack(&mut ws2, &unacked).await;
    tokio::time::timeout(WAIT, socket.wait_for_ack(&unacked))
        .await
        .unwrap();
    assert_eq!(socket.acks()[0].retry_attempt, 1);
    tokio::time::timeout(WAIT, socket.wait_for_connections(1))
        .await
        .unwrap();
    assert_eq!(socket.connections_opened(), 2);
}

#[tokio::test]
async fn dropped_socket_and_redelivery_on_a_live_connection() {
    let slack = SlackEmulator::start().await.unwrap();
    let socket = slack.socket();
    let mut ws = connect(&slack).await;
    next_json(&mut ws).await.unwrap();
    let id = socket.push_event(json!({"type": "message", "text": "late ack"}));
    assert_eq!(next_json(&mut ws).await.unwrap()["envelope_id"], id);
    // Slack resends when the ack is late.
    socket.redeliver_unacked();
    let again = next_json(&mut ws).await.unwrap();
    assert_eq!(
        (
            again["envelope_id"].as_str(),
            again["retry_attempt"].as_u64()
        ),
        (Some(id.as_str()), Some(1))
    );

    // An abrupt drop: the stream ends without a close frame.
    socket.drop_connections();
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
            Some(Ok(Message::Close(_))) => panic!("a drop sends no close frame"),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break,
        }
    }
    tokio::time::timeout(WAIT, socket.wait_for_connections(0))
        .await
        .unwrap();
    let mut ws = connect(&slack).await;
    next_json(&mut ws).await.unwrap();
    let e = next_json(&mut ws).await.unwrap();
    assert_eq!(
        (e["envelope_id"].as_str(), e["retry_attempt"].as_u64()),
        (Some(id.as_str()), Some(2))
    );

    // A clean close sends a close frame.
    socket.close_connections();
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
            Some(Ok(Message::Close(_))) | None => break,
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("expected a close frame, got {e}"),
        }
    }
}

#[tokio::test]
async fn shutdown_ends_sockets() {
    let slack = SlackEmulator::start().await.unwrap();
    let mut ws = connect(&slack).await;
    next_json(&mut ws).await.unwrap();
    slack.shutdown().await;
    assert!(next_json(&mut ws).await.is_none());
}
