//! oauth.v2.access: code exchange and token rotation.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use ml_core::clock::ManualClock;
use ml_sandbox::slack::SlackEmulator;
use serde_json::json;

use crate::common::{Answer, call_as, call_form, client};

const REDIRECT: &str = "https://erp-bridge.example/slack/callback";

async fn exchange_basic(slack: &SlackEmulator, fields: &[(&str, &str)]) -> Answer {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        slack.client_id(),
        slack.client_secret()
    ));
    let r = client()
        .post(format!("{}oauth.v2.access", slack.base_url()))
        .header("authorization", format!("Basic {basic}"))
        .form(fields)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    Answer {
        status,
        headers,
        body: r.json().await.unwrap(),
    }
}

#[tokio::test]
async fn code_exchange() {
    let slack = SlackEmulator::start().await.unwrap();
    let code = slack.issue_oauth_code(Some(REDIRECT));
    let r = exchange_basic(&slack, &[("code", &code), ("redirect_uri", REDIRECT)]).await;
    let b = r.ok();
    let token = b["access_token"].as_str().unwrap();
    assert!(token.starts_with("xoxb-"), "{token}");
    assert_eq!(b["token_type"], "bot");
    assert!(b["scope"].as_str().unwrap().contains("chat:write"));
    assert_eq!(b["bot_user_id"], slack.bot_user_id());
    assert_eq!(b["app_id"], slack.app_id());
    assert_eq!(
        b["team"],
        json!({"id": slack.team_id(), "name": slack.team_name()})
    );
    assert_eq!(b["enterprise"], json!(null));
    assert_eq!(b["is_enterprise_install"], false);
    assert!(b["authed_user"]["id"].is_string());
    assert!(b.get("refresh_token").is_none() && b.get("expires_in").is_none());
    // The new token works.
    call_as(&slack, "auth.test", Some(token), json!({}))
        .await
        .ok();

    // Single use.
    let r = exchange_basic(&slack, &[("code", &code), ("redirect_uri", REDIRECT)]).await;
    assert_eq!(r.error(), "invalid_code");
    assert_eq!(
        exchange_basic(&slack, &[("code", "nope")]).await.error(),
        "invalid_code"
    );

    // Redirect URI must match when the code was issued with one.
    let code = slack.issue_oauth_code(Some(REDIRECT));
    assert_eq!(
        exchange_basic(
            &slack,
            &[("code", &code), ("redirect_uri", "https://evil.example/")]
        )
        .await
        .error(),
        "bad_redirect_uri"
    );
    assert_eq!(
        exchange_basic(&slack, &[("code", &code)]).await.error(),
        "bad_redirect_uri"
    );

    // Client credentials as form fields.
    let code = slack.issue_oauth_code(None);
    let id = slack.client_id();
    let secret = slack.client_secret();
    call_form(
        &slack,
        "oauth.v2.access",
        None,
        &[
            ("client_id", &id),
            ("client_secret", &secret),
            ("code", &code),
        ],
    )
    .await
    .ok();
    let code = slack.issue_oauth_code(None);
    assert_eq!(
        call_form(
            &slack,
            "oauth.v2.access",
            None,
            &[
                ("client_id", &id),
                ("client_secret", "wrong"),
                ("code", &code)
            ]
        )
        .await
        .error(),
        "bad_client_secret"
    );
    assert_eq!(
        call_form(
            &slack,
            "oauth.v2.access",
            None,
            &[
                ("client_id", "123.456"),
                ("client_secret", &secret),
                ("code", &code)
            ]
        )
        .await
        .error(),
        "invalid_client_id"
    );
    assert_eq!(
        call_form(&slack, "oauth.v2.access", None, &[("code", &code)])
            .await
            .error(),
        "invalid_client_id"
    );
    assert_eq!(
        exchange_basic(&slack, &[("code", &code), ("grant_type", "password")])
            .await
            .error(),
        "invalid_grant_type"
    );
    // The failed attempts did not use the code up.
    exchange_basic(&slack, &[("code", &code)]).await.ok();
}

#[tokio::test]
async fn codes_expire_after_ten_minutes() {
    let clock = Arc::new(ManualClock::new("2026-01-05T08:00:00Z".parse().unwrap()));
    let slack = SlackEmulator::builder()
        .clock(clock.clone())
        .start()
        .await
        .unwrap();
    let code = slack.issue_oauth_code(None);
    clock.advance(Duration::from_secs(600));
    assert_eq!(
        exchange_basic(&slack, &[("code", &code)]).await.error(),
        "invalid_code"
    );
}

#[tokio::test]
async fn token_rotation() {
    let clock = Arc::new(ManualClock::new("2026-01-05T08:00:00Z".parse().unwrap()));
    let slack = SlackEmulator::builder()
        .clock(clock.clone())
        .token_rotation(true)
        .post_message_interval(None)
        .start()
        .await
        .unwrap();
    let code = slack.issue_oauth_code(None);
    let r = exchange_basic(&slack, &[("code", &code)]).await;
    let b = r.ok().clone();
    let access = b["access_token"].as_str().unwrap().to_owned();
    let refresh = b["refresh_token"].as_str().unwrap().to_owned();
    assert!(access.starts_with("xoxe.xoxb-"), "{access}");
    assert!(refresh.starts_with("xoxe-1-"), "{refresh}");
    assert_eq!(b["expires_in"], 43_200);
    assert_eq!(b["token_type"], "bot");

    let post = json!({"channel": "general", "text": "x"});
    call_as(&slack, "chat.postMessage", Some(&access), post.clone())
        .await
        .ok();
    clock.advance(Duration::from_secs(43_199));
    call_as(&slack, "chat.postMessage", Some(&access), post.clone())
        .await
        .ok();
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        call_as(&slack, "chat.postMessage", Some(&access), post.clone())
            .await
            .error(),
        "token_expired"
    );

    // Refresh: new pair, old refresh token spent.
    let r = exchange_basic(
        &slack,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    let b = r.ok().clone();
    let access2 = b["access_token"].as_str().unwrap().to_owned();
    let refresh2 = b["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(access2, access);
    assert_ne!(refresh2, refresh);
    assert_eq!(b["expires_in"], 43_200);
    assert!(b["team"]["id"].is_string());
    call_as(&slack, "chat.postMessage", Some(&access2), post.clone())
        .await
        .ok();
    let again = exchange_basic(
        &slack,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    assert_eq!(again.error(), "invalid_refresh_token");
    assert_eq!(
        exchange_basic(
            &slack,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", "xoxe-1-nope")
            ]
        )
        .await
        .error(),
        "invalid_refresh_token"
    );
    exchange_basic(
        &slack,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh2),
        ],
    )
    .await
    .ok();

    // A test can expire a token at once.
    assert!(slack.expire_token(&access2));
    assert_eq!(
        call_as(&slack, "auth.test", Some(&access2), json!({}))
            .await
            .error(),
        "token_expired"
    );
}
