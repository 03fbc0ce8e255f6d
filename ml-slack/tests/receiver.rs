//! The receiver against the emulator's signed calls ("Slack calling us"), mounted with the
//! `axum` feature on 127.0.0.1, plus the refusals that need hand-made requests.
#![cfg(feature = "axum")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use ml_core::http::ClientOptions;
use ml_sandbox::server::Server;
use ml_sandbox::slack::{BlockActions, SendOptions, SlackEmulator, SlashCommand};
use ml_slack::events::{Inbound, Interaction, Received, Via};
use ml_slack::receiver::{SlackHandler, SlackReceiver, router};
use ml_slack::responder::{Responder, ResponseMessage, ResponseType};
use ml_slack::signature::SignatureVerifier;
use serde_json::json;
use tokio::sync::mpsc;

struct Rig {
    slack: SlackEmulator,
    url: String,
    inbox: mpsc::Receiver<Received>,
    _server: Server,
}

async fn rig() -> Rig {
    let slack = SlackEmulator::start().await.expect("emulator");
    let receiver = common::builder(&slack).build_receiver().expect("receiver");
    let (receiver, inbox) = receiver.with_channel(16);
    let server = Server::start(router(Arc::new(receiver), "/slack/events"))
        .await
        .expect("server");
    let url = format!("{}slack/events", server.base_url());
    Rig {
        slack,
        url,
        inbox,
        _server: server,
    }
}

#[tokio::test]
async fn url_verification_is_answered() {
    let r = rig().await;
    let (resp, challenge) = r
        .slack
        .caller()
        .send_url_verification(&r.url)
        .await
        .expect("send");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json().expect("json")["challenge"], challenge);
}

#[tokio::test]
async fn events_commands_and_actions_are_typed_and_handed_off() {
    let mut r = rig().await;
    let caller = r.slack.caller();
    let resp = caller
        .send_event(
            &r.url,
            json!({"type": "app_mention", "user": "U00HUMAN01", "text": "<@U00SANDBOT> status", "channel": "C00GENERAL", "ts": "1.000001"}),
        )
        .await
        .expect("event");
    assert_eq!(resp.status, 200);
    let got = r.inbox.recv().await.expect("event");
    let Inbound::Event(e) = got.inbound else {
        panic!("not an event")
    };
    assert_eq!(e.event.kind, "app_mention");
    assert_eq!(e.event.channel.as_deref(), Some("C00GENERAL"));

    let resp = caller
        .send_slash_command(
            &r.url,
            &SlashCommand::new("/approve-invoice", "INV-7").user("U00HUMAN01"),
        )
        .await
        .expect("command");
    assert_eq!(resp.status, 200);
    let got = r.inbox.recv().await.expect("command");
    let Inbound::SlashCommand(c) = got.inbound else {
        panic!("not a command")
    };
    assert_eq!(
        (c.command.as_str(), c.text.as_str()),
        ("/approve-invoice", "INV-7")
    );
    let response_url = c.response_url.expect("response_url");

    // Answer through response_url: only the emulator's hooks base is allowed.
    let responder = Responder::new(ClientOptions::default().client().expect("http"));
    assert!(
        responder.check(&response_url).is_err(),
        "not hooks.slack.com"
    );
    let responder = responder
        .with_allowed_base(&format!("{}commands/", r.slack.root_url()))
        .expect("base");
    responder
        .respond(
            &response_url,
            &ResponseMessage::new("INV-7 approved").with_response_type(ResponseType::InChannel),
        )
        .await
        .expect("responded");
    let posts = r.slack.response_url_posts();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].body["text"], "INV-7 approved");
    assert_eq!(posts[0].body["response_type"], "in_channel");

    let resp = caller
        .send_block_actions(&r.url, &BlockActions::new("approve", "INV-7"))
        .await
        .expect("actions");
    assert_eq!(resp.status, 200);
    let got = r.inbox.recv().await.expect("actions");
    let Inbound::Interaction(Interaction::BlockActions(b)) = got.inbound else {
        panic!("not block actions")
    };
    assert_eq!(b.actions[0].action_id, "approve");
    assert_eq!(b.actions[0].value.as_deref(), Some("INV-7"));
}

#[tokio::test]
async fn slack_retries_are_acknowledged_but_handed_off_once() {
    let mut r = rig().await;
    let caller = r.slack.caller();
    let env =
        caller.event_envelope(json!({"type": "message", "text": "hi", "channel": "C00GENERAL"}));
    let first = caller
        .send_envelope(&r.url, &env, &SendOptions::default())
        .await
        .expect("send");
    assert_eq!(first.status, 200);
    for n in 1..=3 {
        // A retry is a new request (new signature over a later timestamp).
        let ts = Timestamp::now().as_second() + i64::from(n);
        let again = caller
            .send_envelope(
                &r.url,
                &env,
                &SendOptions::default()
                    .timestamp(ts)
                    .retry(n, "http_timeout"),
            )
            .await
            .expect("retry");
        assert_eq!(again.status, 200, "retry {n} is acknowledged");
    }
    let got = r.inbox.recv().await.expect("one");
    assert!(matches!(
        got.via,
        Via::Http {
            retry_num: None,
            ..
        }
    ));
    tokio::task::yield_now().await;
    assert!(r.inbox.try_recv().is_err(), "handed off once");
}

#[tokio::test]
async fn refusals_have_distinct_kinds() {
    let r = rig().await;
    let caller = r.slack.caller();
    let env = caller.event_envelope(json!({"type": "message", "text": "x"}));
    let send = |opts: SendOptions| {
        let c = caller.clone();
        let url = r.url.clone();
        let env = env.clone();
        async move { c.send_envelope(&url, &env, &opts).await.expect("send") }
    };
    let now = Timestamp::now().as_second();
    let forged = send(SendOptions::default().signature(format!("v0={}", "0".repeat(64)))).await;
    assert_eq!(
        (forged.status, forged.body.as_str()),
        (401, "signature_mismatch")
    );
    let garbage = send(SendOptions::default().signature("v1=nothex")).await;
    assert_eq!(
        (garbage.status, garbage.body.as_str()),
        (401, "bad_signature_format")
    );
    let unsigned = send(SendOptions::default().unsigned()).await;
    assert_eq!(
        (unsigned.status, unsigned.body.as_str()),
        (401, "missing_header")
    );
    let stale = send(SendOptions::default().timestamp(now - 301)).await;
    assert_eq!((stale.status, stale.body.as_str()), (401, "stale"));
    let future = send(SendOptions::default().timestamp(now + 301)).await;
    assert_eq!((future.status, future.body.as_str()), (401, "future_dated"));
    // The exact same signed request twice: the second is a replay.
    let fixed = SendOptions::default().timestamp(now);
    assert_eq!(send(fixed.clone()).await.status, 200);
    let handed = r.inbox.len();
    let replay = send(fixed.clone()).await;
    assert_eq!((replay.status, replay.body.as_str()), (401, "replayed"));
    assert_eq!(
        replay
            .headers
            .get("x-slack-no-retry")
            .map(http::HeaderValue::as_bytes),
        Some(&b"1"[..])
    );
    // Slack's retry of it (its answer was lost), identical and signed: acknowledged,
    // not handled again, and told not to retry.
    let retried = send(fixed.retry(1, "http_timeout")).await;
    assert_eq!(retried.status, 200);
    assert_eq!(
        retried
            .headers
            .get("x-slack-no-retry")
            .map(http::HeaderValue::as_bytes),
        Some(&b"1"[..])
    );
    assert_eq!(r.inbox.len(), handed, "nothing handed off again");
    // Oversized.
    let big = caller
        .send_raw(
            &r.url,
            "application/json",
            vec![b' '; 2 * 1024 * 1024],
            &SendOptions::default(),
        )
        .await
        .expect("send");
    assert_eq!((big.status, big.body.as_str()), (413, "body_too_large"));
    // Malformed but signed.
    let bad = caller
        .send_raw(
            &r.url,
            "application/json",
            b"{not json".to_vec(),
            &SendOptions::default(),
        )
        .await
        .expect("send");
    assert_eq!((bad.status, bad.body.as_str()), (400, "malformed"));
}

#[tokio::test]
async fn truncated_and_wrong_method_are_refused() {
    let secret = "s3cret";
    let v = SignatureVerifier::new(&secret.into());
    let (receiver, _rx) = SlackReceiver::new(v.clone()).with_channel(4);
    let now = Timestamp::now();
    let ts = now.as_second().to_string();
    let body = br#"{"type":"event_callback","event_id":"E1","event":{"type":"message"}}"#;
    // Signed over the cut body, but Content-Length says the body was longer.
    let cut = &body[..body.len() - 10];
    let req = http::Request::post("/")
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .header("x-slack-request-timestamp", &ts)
        .header("x-slack-signature", v.sign(&ts, cut))
        .body(cut.to_vec())
        .expect("req");
    let resp = receiver.handle_at(req, now).await;
    assert_eq!(
        (resp.status().as_u16(), resp.body().as_str()),
        (400, "truncated")
    );
    let req = http::Request::get("/")
        .header("x-slack-request-timestamp", &ts)
        .header("x-slack-signature", v.sign(&ts, b""))
        .body(Vec::new())
        .expect("req");
    let resp = receiver.handle_at(req, now).await;
    assert_eq!(resp.status().as_u16(), 405);
    // A declared length above the limit is refused before anything else.
    let small = SlackReceiver::new(v.clone()).with_max_body(10);
    let req = http::Request::post("/")
        .header("content-length", 11)
        .header("x-slack-request-timestamp", &ts)
        .header("x-slack-signature", v.sign(&ts, b"01234567890"))
        .body(b"01234567890".to_vec())
        .expect("req");
    assert_eq!(small.handle_at(req, now).await.status().as_u16(), 413);
}

struct Slow {
    release: Arc<tokio::sync::Notify>,
    out: mpsc::Sender<Received>,
}

#[async_trait::async_trait]
impl SlackHandler for Slow {
    async fn handle(&self, received: Received) {
        // The host takes its time (here: until the test releases it); Slack already has
        // its answer.
        self.release.notified().await;
        let _ = self.out.send(received).await;
    }
}

#[tokio::test]
async fn a_slow_handler_does_not_delay_the_answer() {
    let slack = SlackEmulator::start().await.expect("emulator");
    let (tx, mut rx) = mpsc::channel(4);
    let release = Arc::new(tokio::sync::Notify::new());
    let receiver = common::builder(&slack)
        .build_receiver()
        .expect("receiver")
        .with_handler(Arc::new(Slow {
            release: release.clone(),
            out: tx,
        }));
    let server = Server::start(router(Arc::new(receiver), "/slack"))
        .await
        .expect("server");
    let url = format!("{}slack", server.base_url());
    // The handler has not finished (it waits for `release`), yet Slack gets its 200.
    let resp = tokio::time::timeout(
        Duration::from_secs(10),
        slack
            .caller()
            .send_slash_command(&url, &SlashCommand::new("/approve-invoice", "INV-9")),
    )
    .await
    .expect("answered without waiting for the handler")
    .expect("send");
    assert_eq!(resp.status, 200);
    assert!(rx.try_recv().is_err());
    release.notify_one();
    assert!(matches!(
        rx.recv().await.expect("handled").inbound,
        Inbound::SlashCommand(_)
    ));
}

#[tokio::test]
async fn one_missing_header_or_a_bad_timestamp_or_content_type_is_refused() {
    let v = SignatureVerifier::new(&"s3cret".into());
    let (receiver, mut rx) = SlackReceiver::new(v.clone()).with_channel(4);
    let now = Timestamp::now();
    let ts = now.as_second().to_string();
    let body = br#"{"type":"event_callback","event_id":"E1","event":{"type":"message"}}"#;
    let request = |headers: &[(&str, String)], content_type: &str| {
        let mut b = http::Request::post("/").header("content-type", content_type);
        for (k, val) in headers {
            b = b.header(*k, val);
        }
        b.body(body.to_vec()).expect("req")
    };
    let sig = ("x-slack-signature", v.sign(&ts, body));
    let stamp = ("x-slack-request-timestamp", ts.clone());
    // Only the signature: the timestamp header is missing.
    let resp = receiver
        .handle_at(request(std::slice::from_ref(&sig), "application/json"), now)
        .await;
    assert_eq!(
        (resp.status().as_u16(), resp.body().as_str()),
        (401, "missing_header")
    );
    // Only the timestamp: the signature header is missing.
    let resp = receiver
        .handle_at(
            request(std::slice::from_ref(&stamp), "application/json"),
            now,
        )
        .await;
    assert_eq!(
        (resp.status().as_u16(), resp.body().as_str()),
        (401, "missing_header")
    );
    // A non-numeric timestamp (signed with it, so only the format can refuse it).
    let odd = "17e8";
    let resp = receiver
        .handle_at(
            request(
                &[
                    ("x-slack-request-timestamp", odd.to_owned()),
                    ("x-slack-signature", v.sign(odd, body)),
                ],
                "application/json",
            ),
            now,
        )
        .await;
    assert_eq!(
        (resp.status().as_u16(), resp.body().as_str()),
        (401, "bad_timestamp")
    );
    // Signed, but neither JSON nor a form.
    let resp = receiver
        .handle_at(request(&[sig, stamp], "text/xml"), now)
        .await;
    assert_eq!(
        (resp.status().as_u16(), resp.body().as_str()),
        (415, "unsupported_content_type")
    );
    assert!(rx.try_recv().is_err(), "nothing was handed off");
}
