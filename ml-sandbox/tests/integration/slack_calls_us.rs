//! "Slack calling us": signed events, slash commands, interactivity, response_url.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::routing::post;
use hmac::{Hmac, KeyInit as _, Mac as _};
use ml_core::clock::ManualClock;
use ml_sandbox::server::Server;
use ml_sandbox::slack::{BlockActions, SendOptions, SlackEmulator, SlashCommand, sign};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::common::{call, client};

#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: Bytes,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    fn form(&self) -> Vec<(String, String)> {
        serde_urlencoded::from_bytes(&self.body).unwrap()
    }

    fn field(&self, name: &str) -> String {
        self.form()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
            .unwrap()
    }
}

/// A receiver that records every request and answers 200 with the url_verification
/// challenge when there is one.
async fn receiver() -> (Server, Arc<Mutex<Vec<Received>>>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    let router = Router::new().route(
        "/slack",
        post(move |headers: HeaderMap, body: Bytes| {
            let l = l.clone();
            async move {
                let challenge = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v["challenge"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                l.lock().unwrap().push(Received { headers, body });
                challenge
            }
        }),
    );
    (Server::start(router).await.unwrap(), log)
}

/// An independent HMAC-SHA256 of `v0:{ts}:{body}`.
fn expected_signature(secret: &str, ts: &str, body: &[u8]) -> String {
    let mut base = format!("v0:{ts}:").into_bytes();
    base.extend_from_slice(body);
    let mut mac = <Hmac<Sha256>>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(&base);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

fn assert_signed(slack: &SlackEmulator, r: &Received) {
    let ts = r.header("x-slack-request-timestamp").unwrap();
    assert_eq!(
        r.header("x-slack-signature").unwrap(),
        expected_signature(&slack.signing_secret(), ts, &r.body)
    );
}

#[test]
fn signature_matches_slacks_documented_example() {
    // The worked example of Slack's "Verifying requests from Slack" page.
    let body = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    let secret = "8f742231b10e8888abcd99yyyzzz85a5";
    assert_eq!(
        sign(secret, 1_531_420_618, body.as_bytes()),
        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    );
    assert_eq!(
        sign(secret, 1_531_420_618, body.as_bytes()),
        expected_signature(secret, "1531420618", body.as_bytes())
    );
}

#[tokio::test]
async fn events_are_wrapped_and_signed() {
    let start: jiff::Timestamp = "2026-02-10T12:00:00Z".parse().unwrap();
    let clock = Arc::new(ManualClock::new(start));
    let slack = SlackEmulator::builder().clock(clock).start().await.unwrap();
    let (server, log) = receiver().await;
    let url = format!("{}slack", server.base_url());
    let caller = slack.caller();

    let event = json!({"type": "app_mention", "user": "U00HUMAN01", "text": "<@U00SANDBOT> status", "channel": "C00GENERAL", "ts": "1770724800.000100"});
    let r = caller.send_event(&url, event.clone()).await.unwrap();
    assert_eq!(r.status, 200);
    assert!(r.is_success());
    let got = log.lock().unwrap()[0].clone();
    assert_signed(&slack, &got);
    assert_eq!(got.header("x-slack-request-timestamp"), Some("1770724800"));
    assert_eq!(got.header("content-type"), Some("application/json"));
    assert!(got.header("x-slack-retry-num").is_none());
    let envelope: Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(envelope["type"], "event_callback");
    assert_eq!(envelope["token"], slack.verification_token());
    assert_eq!(envelope["team_id"], slack.team_id());
    assert_eq!(envelope["api_app_id"], slack.app_id());
    assert_eq!(envelope["event_time"], 1_770_724_800);
    assert!(envelope["event_id"].as_str().unwrap().starts_with("Ev"));
    assert_eq!(envelope["event"]["text"], event["text"]);
    assert!(
        envelope["event"]["event_ts"].is_string(),
        "event_ts filled in"
    );
    assert_eq!(envelope["authorizations"][0]["team_id"], slack.team_id());
    assert_eq!(
        envelope["authorizations"][0]["user_id"],
        slack.bot_user_id()
    );
    assert_eq!(envelope["authorizations"][0]["is_bot"], true);
    // The wrapper schema's required fields are all there.
    for key in [
        "token",
        "team_id",
        "api_app_id",
        "event",
        "type",
        "event_id",
        "event_time",
        "authed_users",
    ] {
        assert!(envelope.get(key).is_some(), "{key}");
    }

    // The same envelope again, as Slack's retry, and with forged/stale/unsigned overrides.
    let env = caller.event_envelope(event);
    let opts = SendOptions::default().retry(1, "http_timeout");
    caller.send_envelope(&url, &env, &opts).await.unwrap();
    caller
        .send_envelope(&url, &env, &SendOptions::default().timestamp(1_000_000_000))
        .await
        .unwrap();
    caller
        .send_envelope(&url, &env, &SendOptions::default().signature("v0=deadbeef"))
        .await
        .unwrap();
    caller
        .send_envelope(&url, &env, &SendOptions::default().unsigned())
        .await
        .unwrap();
    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 5);
    assert_eq!(log[1].header("x-slack-retry-num"), Some("1"));
    assert_eq!(log[1].header("x-slack-retry-reason"), Some("http_timeout"));
    assert_signed(&slack, &log[1]);
    assert_eq!(log[1].body, log[2].body, "same event_id and body");
    assert_eq!(
        log[2].header("x-slack-request-timestamp"),
        Some("1000000000")
    );
    assert_signed(&slack, &log[2]);
    assert_eq!(log[3].header("x-slack-signature"), Some("v0=deadbeef"));
    assert!(log[4].header("x-slack-signature").is_none());
    assert!(log[4].header("x-slack-request-timestamp").is_none());
}

#[tokio::test]
async fn url_verification() {
    let slack = SlackEmulator::start().await.unwrap();
    let (server, log) = receiver().await;
    let (r, challenge) = slack
        .caller()
        .send_url_verification(&format!("{}slack", server.base_url()))
        .await
        .unwrap();
    assert_eq!(r.body, challenge);
    let got = log.lock().unwrap()[0].clone();
    assert_signed(&slack, &got);
    let body: Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(body["type"], "url_verification");
    assert_eq!(body["challenge"], challenge);
}

#[tokio::test]
async fn slash_commands_and_response_url() {
    let slack = SlackEmulator::builder()
        .post_message_interval(None)
        .start()
        .await
        .unwrap();
    let (server, log) = receiver().await;
    let url = format!("{}slack", server.base_url());
    let command = SlashCommand::new("/approve", "INV-1 now")
        .user("U0APPROVER")
        .channel("general");
    let r = slack
        .caller()
        .send_slash_command(&url, &command)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let got = log.lock().unwrap()[0].clone();
    assert_signed(&slack, &got);
    assert_eq!(
        got.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let fields: Vec<String> = got.form().into_iter().map(|(k, _)| k).collect();
    for key in [
        "token",
        "team_id",
        "team_domain",
        "channel_id",
        "channel_name",
        "user_id",
        "user_name",
        "command",
        "text",
        "api_app_id",
        "is_enterprise_install",
        "response_url",
        "trigger_id",
    ] {
        assert!(fields.iter().any(|f| f == key), "{key} in {fields:?}");
    }
    assert_eq!(got.field("command"), "/approve");
    assert_eq!(got.field("text"), "INV-1 now");
    assert_eq!(got.field("user_id"), "U0APPROVER");
    assert_eq!(got.field("channel_id"), "C00GENERAL");
    assert_eq!(got.field("channel_name"), "general");
    assert_eq!(got.field("team_id"), slack.team_id());
    assert_eq!(got.field("trigger_id").split('.').count(), 3);
    let response_url = got.field("response_url");
    assert!(
        response_url.starts_with(&slack.root_url()),
        "{response_url}"
    );

    // The receiver answers through response_url.
    let c = client();
    let r = c
        .post(&response_url)
        .json(&json!({"response_type": "ephemeral", "text": "Working on it"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        slack.messages("general").is_empty(),
        "ephemeral is not stored in the channel"
    );
    c.post(&response_url)
        .json(&json!({"response_type": "in_channel", "text": "INV-1 approved"}))
        .send()
        .await
        .unwrap();
    let posts = slack.response_url_posts();
    assert_eq!(posts.len(), 2);
    assert_eq!(posts[0].url, response_url);
    assert_eq!(posts[0].body["text"], "Working on it");
    assert_eq!(posts[1].body["response_type"], "in_channel");
    assert_eq!(slack.messages("general")[0].text, "INV-1 approved");
    for _ in 0..3 {
        assert_eq!(
            c.post(&response_url)
                .json(&json!({"text": "x"}))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    let sixth = c
        .post(&response_url)
        .json(&json!({"text": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(sixth.status(), 404);
    assert_eq!(sixth.json::<Value>().await.unwrap()["error"], "used_url");

    // Stale and forged variants.
    let caller = slack.caller();
    caller
        .send_slash_command_with(
            &url,
            &command,
            &SendOptions::default()
                .timestamp(1_600_000_000)
                .retry(2, "http_error"),
        )
        .await
        .unwrap();
    let got = log.lock().unwrap()[1].clone();
    assert_eq!(got.header("x-slack-request-timestamp"), Some("1600000000"));
    assert_eq!(got.header("x-slack-retry-num"), Some("2"));
    assert_signed(&slack, &got);
}

#[tokio::test]
async fn block_actions() {
    let slack = SlackEmulator::start().await.unwrap();
    let posted = call(
        &slack,
        "chat.postMessage",
        json!({"channel": "general", "text": "Approve INV-1?", "blocks": [
            {"type": "actions", "block_id": "approval", "elements": [
                {"type": "button", "action_id": "approve", "text": {"type": "plain_text", "text": "Approve"}, "value": "INV-1"}
            ]}
        ]}),
    )
    .await;
    let ts = posted.ok()["ts"].as_str().unwrap().to_owned();
    let (server, log) = receiver().await;
    let actions = BlockActions::new("approve", "INV-1")
        .block_id("approval")
        .user("U0APPROVER")
        .channel("general")
        .message_ts(&ts);
    slack
        .caller()
        .send_block_actions(&format!("{}slack", server.base_url()), &actions)
        .await
        .unwrap();
    let got = log.lock().unwrap()[0].clone();
    assert_signed(&slack, &got);
    let form = got.form();
    assert_eq!(form.len(), 1);
    assert_eq!(form[0].0, "payload");
    let payload: Value = serde_json::from_str(&form[0].1).unwrap();
    assert_eq!(payload["type"], "block_actions");
    assert_eq!(payload["user"]["id"], "U0APPROVER");
    assert_eq!(payload["team"]["id"], slack.team_id());
    assert_eq!(payload["channel"]["id"], "C00GENERAL");
    assert_eq!(payload["container"]["message_ts"], ts);
    assert_eq!(payload["message"]["ts"], ts);
    assert_eq!(payload["message"]["text"], "Approve INV-1?");
    assert_eq!(payload["actions"][0]["action_id"], "approve");
    assert_eq!(payload["actions"][0]["block_id"], "approval");
    assert_eq!(payload["actions"][0]["value"], "INV-1");
    assert!(
        payload["response_url"]
            .as_str()
            .unwrap()
            .starts_with(&slack.root_url())
    );
    assert!(payload["trigger_id"].is_string());
}

#[tokio::test]
async fn unreachable_receiver_is_a_typed_error() {
    let slack = SlackEmulator::start().await.unwrap();
    let (server, _) = receiver().await;
    let url = format!("{}slack", server.base_url());
    server.shutdown().await;
    let err = slack
        .caller()
        .send_event(&url, json!({"type": "x"}))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ml_sandbox::SandboxError::Request { .. }),
        "{err}"
    );
}
