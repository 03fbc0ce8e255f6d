//! `[receivers]` served by `ml-connector run`: signed Slack events and commands and Twilio
//! callbacks accepted; forged, stale, replayed and oversized ones refused, each with its
//! own reason; `/healthz` answers; SIGTERM stops `run` as Ctrl-C does.
#![cfg(all(feature = "cli", feature = "slack", feature = "twilio"))]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::Running;
use ml_sandbox::slack::sign;

const SECRET: &str = "slack-signing-secret-for-tests";
const TOKEN: &str = "twilio-auth-token-for-tests";

/// Starts `ml-connector run` on a file with receivers only, and returns its base URL.
fn start(dir: &std::path::Path) -> (Running, String) {
    let config = dir.join("receivers.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[journal]
sqlite = "{}"

[receivers]
listen = "127.0.0.1:0"

[receivers.slack]
signing_secret = "${{T_SLACK_SIGNING_SECRET}}"

[receivers.twilio]
auth_token = "${{T_TWILIO_AUTH_TOKEN}}"
public_url = "https://hooks.example.com/twilio/status"
"#,
            dir.join("journal.db").display()
        ),
    )
    .expect("config");
    let mut command = Command::new(env!("CARGO_BIN_EXE_ml-connector"));
    command
        .args(["run", "--progress-secs", "0", "--config"])
        .arg(&config)
        .env("T_SLACK_SIGNING_SECRET", SECRET)
        .env("T_TWILIO_AUTH_TOKEN", TOKEN)
        .stderr(Stdio::inherit());
    let (running, base, _) = Running::listening(command);
    (running, base)
}

/// A client, once `/healthz` answered 200.
async fn healthy(base: &str) -> reqwest::Client {
    let client = ml_connector::http::ClientOptions::default()
        .client()
        .expect("client");
    let health = client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status().as_u16(), 200);
    client
}

async fn slack_post(
    client: &reqwest::Client,
    url: &str,
    content_type: &str,
    body: &str,
    ts: i64,
    secret: &str,
) -> (u16, String) {
    try_slack_post(client, url, content_type, body, ts, secret)
        .await
        .expect("send")
}

/// [`slack_post`], with a transport error returned instead of failing the test.
async fn try_slack_post(
    client: &reqwest::Client,
    url: &str,
    content_type: &str,
    body: &str,
    ts: i64,
    secret: &str,
) -> reqwest::Result<(u16, String)> {
    let r = client
        .post(url)
        .header("content-type", content_type)
        .header("x-slack-request-timestamp", ts.to_string())
        .header("x-slack-signature", sign(secret, ts, body.as_bytes()))
        .body(body.to_owned())
        .send()
        .await?;
    Ok((r.status().as_u16(), r.text().await.unwrap_or_default()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_serves_verified_receivers_and_refuses_the_rest_with_distinct_reasons() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_child, base) = start(dir.path());
    let client = healthy(&base).await;

    let slack = format!("{base}/slack/events");
    let now = jiff::Timestamp::now().as_second();
    let event = r#"{"type":"event_callback","event_id":"Ev1","team_id":"T1","api_app_id":"A1","event_time":1,"event":{"type":"app_mention","user":"U1","text":"hi","ts":"1.000001","channel":"C1","event_ts":"1.000001"}}"#;
    let (status, _) = slack_post(&client, &slack, "application/json", event, now, SECRET).await;
    assert_eq!(status, 200, "a signed event is accepted");
    let command = "command=%2Ferp&text=status&user_id=U1&channel_id=C1&team_id=T1&trigger_id=1.2.3&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2F1";
    let (status, _) = slack_post(
        &client,
        &slack,
        "application/x-www-form-urlencoded",
        command,
        now,
        SECRET,
    )
    .await;
    assert_eq!(status, 200, "a signed slash command is accepted");

    let forged = slack_post(
        &client,
        &slack,
        "application/json",
        event,
        now,
        "not-the-secret",
    )
    .await;
    let stale = slack_post(
        &client,
        &slack,
        "application/json",
        event,
        now - 3600,
        SECRET,
    )
    .await;
    let replayed = slack_post(&client, &slack, "application/json", event, now, SECRET).await;
    let big = format!(
        r#"{{"type":"event_callback","pad":"{}"}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    // The receiver answers 413 as soon as it sees the length and closes the connection, so
    // the client may still be writing the body and see a broken pipe instead of the answer
    // (a race of the client: hyper does not read a response while sending). Nothing is
    // verified or remembered for a refused body, so sending it again is the same request.
    let mut oversized = None;
    for _ in 0..20 {
        if let Ok(answer) =
            try_slack_post(&client, &slack, "application/json", &big, now, SECRET).await
        {
            oversized = Some(answer);
            break;
        }
    }
    let oversized = oversized.expect("an answer to the oversized body");
    for (what, (status, _)) in [
        ("forged", &forged),
        ("stale", &stale),
        ("oversized", &oversized),
    ] {
        assert!((400..500).contains(status), "{what}: {status}");
    }
    assert_eq!(oversized.0, 413);
    // The replayed request is not processed again (an answer Slack will not retry).
    assert_ne!(replayed, (200, String::new()), "{replayed:?}");
    let reasons = [&forged.1, &stale.1, &replayed.1, &oversized.1];
    for (i, a) in reasons.iter().enumerate() {
        assert!(!a.is_empty(), "reason {i} is empty");
        for b in &reasons[i + 1..] {
            assert_ne!(a, b, "two refusals share a reason");
        }
    }

    // A fresh connection pool: the receiver closes the connection it refused the
    // oversized Slack body on, and a pooled connection caught mid-close fails the next
    // send with a broken pipe (a race of the client, not of the receiver).
    let client = ml_connector::http::ClientOptions::default()
        .client()
        .expect("client");

    // Twilio: the URL it signs is the configured public one, not the listener's.
    let twilio = format!("{base}/twilio/status?delivery_id=1");
    let signed_url = "https://hooks.example.com/twilio/status?delivery_id=1";
    let params = vec![
        (
            "MessageSid".to_owned(),
            "SM0123456789abcdef0123456789abcdef".to_owned(),
        ),
        ("MessageStatus".to_owned(), "delivered".to_owned()),
    ];
    let body = serde_urlencoded_body(&params);
    let post = |signature: String, body: String| {
        client
            .post(&twilio)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-twilio-signature", signature)
            .body(body)
            .send()
    };
    let good = ml_twilio::signature::twilio_signature(TOKEN.as_bytes(), signed_url, &params);
    let accepted = post(good.clone(), body.clone()).await.expect("send");
    assert_eq!(
        accepted.status().as_u16(),
        204,
        "a signed callback is accepted"
    );
    let forged = ml_twilio::signature::twilio_signature(b"not-the-token", signed_url, &params);
    assert_eq!(
        post(forged, body.clone())
            .await
            .expect("send")
            .status()
            .as_u16(),
        401,
        "a forged signature is refused"
    );
    // Replayed: answered 204 so Twilio stops, but not applied twice (deduplicated).
    assert_eq!(
        post(good.clone(), body)
            .await
            .expect("send")
            .status()
            .as_u16(),
        204
    );
    let huge = format!(
        "MessageSid=SM1&MessageStatus=sent&pad={}",
        "x".repeat(1024 * 1024)
    );
    // The receiver answers 413 from the declared length and may close the connection
    // before the client has written the whole body: then the client sees the write fail.
    match post(good, huge).await {
        Ok(r) => assert_eq!(r.status().as_u16(), 413),
        Err(e) => assert!(
            e.is_request() && format!("{e:?}").contains("BodyWrite"),
            "an oversized callback is refused, not lost in another error: {e:?}"
        ),
    }
}

fn serde_urlencoded_body(params: &[(String, String)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_run_gracefully() {
    // `docker stop`, Kubernetes and systemd stop a service with SIGTERM: `run` must stop
    // the way Ctrl-C stops it (sends and acknowledged work finish, exit status 0), not die.
    let dir = tempfile::tempdir().expect("tempdir");
    let (running, base) = start(dir.path());
    healthy(&base).await;
    running.signal("TERM");
    let status = running.exited(Duration::from_secs(60)).await;
    assert!(
        status.success(),
        "stopped by the signal instead of shutting down: {status}"
    );
}
