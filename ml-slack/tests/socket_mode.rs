//! Socket Mode against the emulator's WebSocket endpoint: envelopes typed and
//! acknowledged, reconnects on `disconnect` and on a dropped socket, dedupe shared with
//! the HTTP receiver.
#![cfg(feature = "socket-mode")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use ml_core::retry::RetryPolicy;
use ml_sandbox::slack::{BlockActions, SlackEmulator, SlashCommand};
use ml_slack::events::{Inbound, Interaction, Via};
use serde_json::json;

async fn recv(
    inbox: &mut tokio::sync::mpsc::Receiver<ml_slack::events::Received>,
) -> ml_slack::events::Received {
    tokio::time::timeout(Duration::from_secs(10), inbox.recv())
        .await
        .expect("an envelope within 10 s")
        .expect("open")
}

#[tokio::test]
async fn envelopes_are_acked_typed_and_survive_reconnects() {
    let slack = SlackEmulator::start().await.expect("emulator");
    let b = common::builder(&slack).with_app_token(slack.app_token());
    let (receiver, mut inbox) = b.build_receiver().expect("receiver").with_channel(16);
    let client = b
        .build_socket_mode(Arc::new(receiver))
        .expect("client")
        .with_backoff(
            RetryPolicy::default()
                .with_base_delay(Duration::from_millis(10))
                .with_max_delay(Duration::from_millis(50)),
        );
    assert!(!format!("{client:?}").contains(&slack.app_token()));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(async move {
        client
            .run(async {
                let _ = stop_rx.await;
            })
            .await
    });
    let sock = slack.socket();
    sock.wait_for_connections(1).await;

    let id = sock.push_event(json!({"type": "app_mention", "text": "hi", "channel": "C00GENERAL", "user": "U00HUMAN01", "ts": "1.000001"}));
    let got = recv(&mut inbox).await;
    let Inbound::Event(e) = got.inbound else {
        panic!("not an event")
    };
    assert_eq!(e.event.kind, "app_mention");
    assert!(matches!(got.via, Via::SocketMode { ref envelope_id, .. } if *envelope_id == id));
    sock.wait_for_ack(&id).await;

    let id = sock.push_slash_command(&SlashCommand::new("/approve-invoice", "INV-7"));
    let Inbound::SlashCommand(c) = recv(&mut inbox).await.inbound else {
        panic!("not a command")
    };
    assert_eq!(c.text, "INV-7");
    sock.wait_for_ack(&id).await;

    let id = sock.push_interactive(&BlockActions::new("approve", "INV-7"));
    let Inbound::Interaction(Interaction::BlockActions(b)) = recv(&mut inbox).await.inbound else {
        panic!("not block actions")
    };
    assert_eq!(b.actions[0].value.as_deref(), Some("INV-7"));
    sock.wait_for_ack(&id).await;

    // Slack asks us to reconnect.
    sock.disconnect("refresh_requested");
    sock.wait_for_connections_opened(2).await;
    sock.wait_for_connections(1).await;
    let id = sock.push_event(json!({"type": "message", "text": "after refresh"}));
    assert!(matches!(recv(&mut inbox).await.inbound, Inbound::Event(_)));
    sock.wait_for_ack(&id).await;

    // The socket dies without a close frame.
    sock.drop_connections();
    sock.wait_for_connections_opened(3).await;
    sock.wait_for_connections(1).await;
    let id = sock.push_event(json!({"type": "message", "text": "after a drop"}));
    assert!(matches!(recv(&mut inbox).await.inbound, Inbound::Event(_)));
    sock.wait_for_ack(&id).await;

    // The same event twice (Slack's retry): acknowledged both times, handed off once.
    let payload = json!({
        "type": "event_callback", "team_id": "T00SANDBOX", "event_id": "Ev-dup-1",
        "event": {"type": "message", "text": "twice"}
    });
    let a = sock.push("events_api", payload.clone(), false);
    let b = sock.push("events_api", payload, false);
    sock.wait_for_ack(&a).await;
    sock.wait_for_ack(&b).await;
    let Inbound::Event(e) = recv(&mut inbox).await.inbound else {
        panic!("not an event")
    };
    assert_eq!(e.event_id, "Ev-dup-1");
    assert!(inbox.try_recv().is_err(), "the duplicate is not handed off");

    stop_tx.send(()).expect("stop");
    let stats = run.await.expect("join").expect("run");
    assert!(stats.connections >= 3, "{stats:?}");
    assert_eq!(stats.disconnects, 1, "{stats:?}");
    assert!(stats.acked >= 6, "{stats:?}");
    assert_eq!(stats.envelopes, stats.acked - 1, "{stats:?}");
}

#[tokio::test]
async fn a_wrong_app_token_ends_the_loop() {
    let slack = SlackEmulator::start().await.expect("emulator");
    let b = common::builder(&slack).with_app_token("xapp-1-wrong");
    let (receiver, _inbox) = b.build_receiver().expect("receiver").with_channel(1);
    let client = b.build_socket_mode(Arc::new(receiver)).expect("client");
    let err = client
        .run(std::future::pending())
        .await
        .expect_err("invalid_auth is permanent");
    assert_eq!(err.code(), Some("invalid_auth"));
    let bad = common::builder(&slack).with_app_token(slack.bot_token());
    let (receiver, _inbox) = bad.build_receiver().expect("receiver").with_channel(1);
    assert!(
        bad.build_socket_mode(Arc::new(receiver)).is_err(),
        "an xoxb token is refused"
    );
}
