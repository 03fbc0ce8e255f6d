//! Mutual authentication: forged, replayed and expired messages are refused in both
//! directions (host refusing agents, agent refusing hosts), on 127.0.0.1 with injected
//! clocks.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::{Message as AxMessage, WebSocket, WebSocketUpgrade};
use axum::routing::get;
use futures::{SinkExt as _, StreamExt as _};
use http::HeaderMap;
use jiff::{SignedDuration, Timestamp};
use ml_core::clock::{Clock as _, ManualClock};
use ml_sap_agent::RelayHub;
use ml_sap_agent::wire::{
    AgentMessage, CONNECT_PATH, DEFAULT_WINDOW, Direction, H_AGENT, H_NONCE, H_SIGNATURE,
    H_TIMESTAMP, HostMessage, Signer, Verifier, WireCall, WireOutcome, connect_signature,
    new_nonce,
};
use ml_sap_ecc::{RfcCall, RfcErrorKind, RfcTransport as _};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};

use common::{FakeSap, KEY_A, agent, key, serve, spawn};

type Raw =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A hand-made upgrade request: `Ok(socket)` or the HTTP status of the refusal.
async fn raw_connect(url: &str, agent: &str, k: &str, ts: i64, nonce: &str) -> Result<Raw, u16> {
    let mut req = url.into_client_request().expect("request");
    let h = req.headers_mut();
    h.insert(H_AGENT, HeaderValue::from_str(agent).expect("h"));
    h.insert(
        H_TIMESTAMP,
        HeaderValue::from_str(&ts.to_string()).expect("h"),
    );
    h.insert(H_NONCE, HeaderValue::from_str(nonce).expect("h"));
    let sig = connect_signature(&key(k), agent, ts, nonce);
    h.insert(H_SIGNATURE, HeaderValue::from_str(&sig).expect("h"));
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("unexpected: {e}"),
    }
}

async fn next_text(ws: &mut Raw) -> Option<String> {
    loop {
        match ws.next().await? {
            Ok(Message::Text(t)) => return Some(t.as_str().to_owned()),
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            _ => return None,
        }
    }
}

/// Waits (bounded) for the socket to be closed by the other side.
async fn closed(ws: &mut Raw) {
    let r = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(m)) = ws.next().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
    assert!(r.is_ok(), "the session was not closed");
}

fn hub(clock: &Arc<ManualClock>) -> RelayHub {
    RelayHub::builder()
        .agent("plant-a", key(KEY_A), "PRD")
        .clock(clock.clone())
        .build()
        .expect("hub")
}

/// A genuine agent session by hand: verifies the host's welcome (the host proved its
/// key), sends `ready`; returns the socket, the agent's signer and the host verifier.
async fn genuine(url: &str, clock: &Arc<ManualClock>) -> (Raw, Signer, Verifier) {
    let nonce = new_nonce();
    let mut ws = raw_connect(url, "plant-a", KEY_A, clock.now().as_second(), &nonce)
        .await
        .expect("genuine connect");
    let mut from_host = Verifier::new(
        key(KEY_A),
        Direction::Host,
        "plant-a",
        &nonce,
        DEFAULT_WINDOW,
    );
    let welcome = next_text(&mut ws).await.expect("welcome");
    let body = from_host
        .open(&welcome, clock.now())
        .expect("a genuine host");
    assert_eq!(
        serde_json::from_str::<HostMessage>(&body).expect("json"),
        HostMessage::Welcome {
            system: "PRD".into()
        }
    );
    let mut signer = Signer::new(key(KEY_A), Direction::Agent, "plant-a", &nonce);
    let ready = serde_json::to_string(&AgentMessage::Ready {
        system: "by hand".into(),
    })
    .expect("json");
    ws.send(Message::Text(signer.seal(&ready, clock.now()).into()))
        .await
        .expect("send");
    (ws, signer, from_host)
}

#[tokio::test]
async fn the_host_refuses_forged_replayed_and_expired_agent_messages() {
    let clock = Arc::new(ManualClock::new(Timestamp::now()));
    let hub = hub(&clock);
    let url = serve(&hub).await;
    let now = clock.now().as_second();
    // At the door: a wrong key, an unknown agent, a stale or future timestamp.
    assert_eq!(
        raw_connect(&url, "plant-a", "x".repeat(40).as_str(), now, &new_nonce())
            .await
            .err(),
        Some(401)
    );
    assert_eq!(
        raw_connect(&url, "plant-z", KEY_A, now, &new_nonce())
            .await
            .err(),
        Some(401)
    );
    assert_eq!(
        raw_connect(&url, "plant-a", KEY_A, now - 61, &new_nonce())
            .await
            .err(),
        Some(401)
    );
    assert_eq!(
        raw_connect(&url, "plant-a", KEY_A, now + 61, &new_nonce())
            .await
            .err(),
        Some(401)
    );
    // A replayed upgrade request (same nonce) is refused even within the window.
    let nonce = new_nonce();
    let first = raw_connect(&url, "plant-a", KEY_A, now, &nonce)
        .await
        .expect("first");
    drop(first);
    assert_eq!(
        raw_connect(&url, "plant-a", KEY_A, now, &nonce).await.err(),
        Some(401)
    );
    let r = hub.rejections();
    assert_eq!(r.get("signature_mismatch"), Some(&2), "{r:?}");
    assert_eq!(
        (r.get("stale"), r.get("future_dated"), r.get("replayed")),
        (Some(&1), Some(&1), Some(&1)),
        "{r:?}"
    );
    assert_eq!(hub.connected("PRD"), 0);

    // Inside a session: a forged frame ends it, and the call in flight fails at once.
    let (mut ws, _signer, _v) = genuine(&url, &clock).await;
    hub.wait_for_agents("PRD", 1).await;
    let t = hub.transport("PRD").expect("transport");
    let call = tokio::spawn(async move { t.call(&RfcCall::new("Z_ECHO")).await });
    let frame = next_text(&mut ws)
        .await
        .expect("the call reaches the agent");
    assert!(frame.contains("Z_ECHO"));
    let mut forger = Signer::new(
        key(&"f".repeat(40)),
        Direction::Agent,
        "plant-a",
        "0".repeat(32).as_str(),
    );
    let forged = serde_json::to_string(&AgentMessage::Result {
        id: 1,
        outcome: WireOutcome::Ok(std::collections::BTreeMap::default()),
    })
    .expect("json");
    ws.send(Message::Text(forger.seal(&forged, clock.now()).into()))
        .await
        .expect("send");
    closed(&mut ws).await;
    let e = call
        .await
        .expect("join")
        .expect_err("no answer was accepted");
    assert_eq!(e.kind, RfcErrorKind::Communication, "{e}");
    hub.wait_for_at_most("PRD", 0).await;
    assert_eq!(hub.stats("PRD").in_flight, 0);

    // A frame replayed within its session (the `ready` again).
    let nonce = new_nonce();
    let mut ws = raw_connect(&url, "plant-a", KEY_A, clock.now().as_second(), &nonce)
        .await
        .expect("connect");
    let _welcome = next_text(&mut ws).await.expect("welcome");
    let mut signer = Signer::new(key(KEY_A), Direction::Agent, "plant-a", &nonce);
    let ready = serde_json::to_string(&AgentMessage::Ready { system: "x".into() }).expect("json");
    let frame = signer.seal(&ready, clock.now());
    ws.send(Message::Text(frame.clone().into()))
        .await
        .expect("send");
    hub.wait_for_agents("PRD", 1).await;
    ws.send(Message::Text(frame.into())).await.expect("send");
    closed(&mut ws).await;
    hub.wait_for_at_most("PRD", 0).await;

    // An expired frame: genuinely signed, but older than the window.
    let (mut ws, mut signer, _v) = genuine(&url, &clock).await;
    hub.wait_for_agents("PRD", 1).await;
    let old = signer.seal(
        "{\"type\":\"expired\",\"id\":9,\"started\":false}",
        clock.now() - SignedDuration::from_secs(120),
    );
    ws.send(Message::Text(old.into())).await.expect("send");
    closed(&mut ws).await;
    hub.wait_for_at_most("PRD", 0).await;
    let r = hub.rejections();
    assert_eq!(r.get("signature_mismatch"), Some(&3), "{r:?}");
    assert_eq!(r.get("replayed"), Some(&2), "{r:?}");
    assert_eq!(r.get("stale"), Some(&2), "{r:?}");
    // With no agent, a call fails at once, typed; nothing waits for an agent.
    let t = hub.transport("PRD").expect("transport");
    let e = t.call(&RfcCall::new("Z_ECHO")).await.expect_err("no agent");
    assert_eq!(e.kind, RfcErrorKind::Unavailable);
    assert!(!e.class().is_retryable());
    assert_eq!(hub.stats("PRD").unavailable, 1);
    let shown = format!("{hub:?} {t:?} {r:?}");
    assert!(!shown.contains(KEY_A), "{shown}");
}

/// A fake host that accepts any upgrade and hands the socket and the session nonce to the
/// test, which then plays the host by hand.
async fn fake_host() -> (String, mpsc::UnboundedReceiver<(WebSocket, String)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let router = axum::Router::new().route(
        CONNECT_PATH,
        get(move |headers: HeaderMap, ws: WebSocketUpgrade| {
            let tx = tx.clone();
            async move {
                let nonce = headers
                    .get(H_NONCE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                ws.on_upgrade(move |socket| async move {
                    let _ = tx.send((socket, nonce));
                })
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (format!("ws://{addr}{CONNECT_PATH}"), rx)
}

async fn recv_text(ws: &mut WebSocket) -> Option<String> {
    loop {
        match ws.recv().await? {
            Ok(AxMessage::Text(t)) => return Some(t.as_str().to_owned()),
            Ok(AxMessage::Ping(_) | AxMessage::Pong(_)) => {}
            _ => return None,
        }
    }
}

fn call_body(id: u64, deadline: Timestamp, function: &str) -> String {
    serde_json::to_string(&HostMessage::Call {
        id,
        deadline_ms: deadline.as_millisecond(),
        call: WireCall::from(&RfcCall::new(function).with_import("X", "1")),
    })
    .expect("json")
}

#[tokio::test]
async fn the_agent_refuses_forged_replayed_and_expired_host_messages() {
    let (url, mut sessions) = fake_host().await;
    let sap = Arc::new(FakeSap::default());
    let a = agent(&url, "plant-a", KEY_A, sap.clone());
    let task = spawn(&a);
    let welcome = serde_json::to_string(&HostMessage::Welcome {
        system: "PRD".into(),
    })
    .expect("json");
    let now = Timestamp::now;

    // 1. An impostor host (wrong key) is refused before any call.
    let (mut ws, nonce) = sessions.recv().await.expect("session");
    let mut impostor = Signer::new(key(&"i".repeat(40)), Direction::Host, "plant-a", &nonce);
    ws.send(AxMessage::Text(impostor.seal(&welcome, now()).into()))
        .await
        .expect("send");
    assert_eq!(recv_text(&mut ws).await, None, "the agent hung up");
    assert_eq!((a.stats().rejected, a.stats().sessions), (1, 0));

    // 2. A genuine host; a call runs once; the same frame replayed is refused.
    let (mut ws, nonce) = sessions.recv().await.expect("reconnected");
    let mut host = Signer::new(key(KEY_A), Direction::Host, "plant-a", &nonce);
    let mut from_agent = Verifier::new(
        key(KEY_A),
        Direction::Agent,
        "plant-a",
        &nonce,
        DEFAULT_WINDOW,
    );
    ws.send(AxMessage::Text(host.seal(&welcome, now()).into()))
        .await
        .expect("send");
    let ready = recv_text(&mut ws).await.expect("ready");
    let body = from_agent.open(&ready, now()).expect("the agent signs");
    assert!(matches!(
        serde_json::from_str(&body).expect("json"),
        AgentMessage::Ready { .. }
    ));
    let call = host.seal(
        &call_body(1, now() + SignedDuration::from_secs(30), "Z_ECHO"),
        now(),
    );
    ws.send(AxMessage::Text(call.clone().into()))
        .await
        .expect("send");
    let answer = from_agent
        .open(&recv_text(&mut ws).await.expect("result"), now())
        .expect("genuine");
    let AgentMessage::Result {
        id: 1,
        outcome: WireOutcome::Ok(params),
    } = serde_json::from_str(&answer).expect("json")
    else {
        panic!("{answer}");
    };
    assert!(params.contains_key("X"));
    ws.send(AxMessage::Text(call.into())).await.expect("send");
    assert_eq!(
        recv_text(&mut ws).await,
        None,
        "the agent hung up on the replay"
    );
    assert_eq!(
        sap.calls.load(Ordering::SeqCst),
        1,
        "the replayed call never ran"
    );
    assert_eq!(a.stats().rejected, 2);

    // 3. A stale call (signed two minutes ago) is refused, never run.
    let (mut ws, nonce) = sessions.recv().await.expect("reconnected");
    let mut host = Signer::new(key(KEY_A), Direction::Host, "plant-a", &nonce);
    ws.send(AxMessage::Text(host.seal(&welcome, now()).into()))
        .await
        .expect("send");
    let _ready = recv_text(&mut ws).await.expect("ready");
    let then = now() - SignedDuration::from_secs(120);
    ws.send(AxMessage::Text(
        host.seal(
            &call_body(2, now() + SignedDuration::from_secs(30), "Z_ECHO"),
            then,
        )
        .into(),
    ))
    .await
    .expect("send");
    assert_eq!(
        recv_text(&mut ws).await,
        None,
        "the agent hung up on the stale call"
    );
    assert_eq!(sap.calls.load(Ordering::SeqCst), 1);
    assert_eq!(a.stats().rejected, 3);

    // 4. Deadlines: a call already past its deadline is dropped unrun and reported; a call
    //    that outlives its deadline is stopped and reported.
    let (mut ws, nonce) = sessions.recv().await.expect("reconnected");
    let mut host = Signer::new(key(KEY_A), Direction::Host, "plant-a", &nonce);
    let mut from_agent = Verifier::new(
        key(KEY_A),
        Direction::Agent,
        "plant-a",
        &nonce,
        DEFAULT_WINDOW,
    );
    ws.send(AxMessage::Text(host.seal(&welcome, now()).into()))
        .await
        .expect("send");
    from_agent
        .open(&recv_text(&mut ws).await.expect("ready"), now())
        .expect("ready");
    ws.send(AxMessage::Text(
        host.seal(
            &call_body(3, now() - SignedDuration::from_secs(1), "Z_ECHO"),
            now(),
        )
        .into(),
    ))
    .await
    .expect("send");
    let m = from_agent
        .open(&recv_text(&mut ws).await.expect("answer"), now())
        .expect("genuine");
    assert_eq!(
        serde_json::from_str::<AgentMessage>(&m).expect("json"),
        AgentMessage::Expired {
            id: 3,
            started: false
        }
    );
    assert_eq!(sap.calls.load(Ordering::SeqCst), 1, "not run");
    ws.send(AxMessage::Text(
        host.seal(
            &call_body(4, now() + SignedDuration::from_millis(200), "Z_HANG"),
            now(),
        )
        .into(),
    ))
    .await
    .expect("send");
    let m = from_agent
        .open(&recv_text(&mut ws).await.expect("answer"), now())
        .expect("genuine");
    assert_eq!(
        serde_json::from_str::<AgentMessage>(&m).expect("json"),
        AgentMessage::Expired {
            id: 4,
            started: true
        }
    );
    assert_eq!(a.stats().expired, 2);
    assert_eq!(a.stats().sessions, 3);
    task.abort();
    let shown = format!("{a:?}");
    assert!(!shown.contains(KEY_A), "{shown}");
}

#[tokio::test]
async fn an_agent_with_a_wrong_key_never_gets_a_session() {
    let clock = Arc::new(ManualClock::new(Timestamp::now()));
    let hub = hub(&clock);
    let url = serve(&hub).await;
    let sap = Arc::new(FakeSap::default());
    let a = agent(&url, "plant-a", &"w".repeat(40), sap.clone());
    let task = spawn(&a);
    hub.wait_for_rejections(2).await;
    task.abort();
    assert_eq!(hub.rejections().get("signature_mismatch"), Some(&2));
    assert_eq!(hub.connected("PRD"), 0);
    assert_eq!(a.stats().sessions, 0);
    assert_eq!(sap.calls.load(Ordering::SeqCst), 0);
}
