//! The shared fault layer and the server, on a plain router and on the Slack emulator.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use ml_sandbox::fault::{Fault, FaultRule, Faults};
use ml_sandbox::server::Server;
use serde_json::json;

use crate::common::{call, client, unlimited};

/// A router whose `/apply` increments a counter (the "effect").
fn counting_router(applied: Arc<AtomicU64>) -> Router {
    Router::new().route(
        "/apply",
        post(move || {
            let applied = applied.clone();
            async move {
                applied.fetch_add(1, Ordering::SeqCst);
                "done"
            }
        }),
    )
}

async fn start(faults: &Faults) -> (Server, Arc<AtomicU64>) {
    let applied = Arc::new(AtomicU64::new(0));
    let server = Server::start(faults.layer(counting_router(applied.clone())))
        .await
        .unwrap();
    (server, applied)
}

#[tokio::test]
async fn server_binds_loopback_and_shuts_down() {
    let faults = Faults::default();
    let (server, applied) = start(&faults).await;
    assert!(server.addr().ip().is_loopback());
    let url = format!("{}apply", server.base_url());
    assert!(url.starts_with("http://127.0.0.1:"));
    let r = client().post(&url).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "done");
    assert_eq!(applied.load(Ordering::SeqCst), 1);
    assert_eq!(faults.requests("/apply"), 1);
    assert_eq!(faults.status_count("apply", 200), 1);
    server.shutdown().await;
    // A fresh client: nothing pooled, and nobody listens any more.
    assert!(client().post(&url).send().await.is_err());
}

#[tokio::test]
async fn drop_before_response_is_a_connection_error_and_applies_nothing() {
    let faults = Faults::default();
    let (server, applied) = start(&faults).await;
    faults.push(FaultRule::on("/apply", Fault::DropBeforeResponse));
    let url = format!("{}apply", server.base_url());
    let c = client();
    let err = c.post(&url).body("x").send().await.unwrap_err();
    assert!(!err.is_status() && !err.is_timeout(), "{err:?}");
    assert_eq!(applied.load(Ordering::SeqCst), 0);
    assert_eq!(faults.dropped("/apply"), 1);
    // The rule is spent: the next request goes through on the same client.
    assert_eq!(c.post(&url).send().await.unwrap().status(), 200);
    assert_eq!(applied.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn applied_then_dropped_is_a_connection_error_but_applied() {
    let faults = Faults::default();
    let (server, applied) = start(&faults).await;
    faults.push(FaultRule::on("apply", Fault::AppliedThenDropped).times(2));
    let url = format!("{}apply", server.base_url());
    for _ in 0..2 {
        let err = client().post(&url).send().await.unwrap_err();
        assert!(!err.is_status() && !err.is_timeout(), "{err:?}");
    }
    assert_eq!(applied.load(Ordering::SeqCst), 2);
    assert_eq!(faults.dropped("apply"), 2);
    assert_eq!(faults.injected("apply"), 2);
}

#[tokio::test]
async fn applied_then_delayed_times_the_client_out_after_applying() {
    let faults = Faults::default();
    let (server, applied) = start(&faults).await;
    faults.push(FaultRule::on(
        "apply",
        Fault::AppliedThenDelayed(Duration::from_secs(5)),
    ));
    let c = ml_core::http::ClientOptions::default()
        .with_timeout(Duration::from_millis(300))
        .client()
        .unwrap();
    let err = c
        .post(format!("{}apply", server.base_url()))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(applied.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn status_429_latency_and_custom_bodies() {
    let faults = Faults::default();
    let (server, applied) = start(&faults).await;
    let url = format!("{}apply", server.base_url());
    faults.push(FaultRule::on("apply", Fault::Status(503)));
    faults.push(FaultRule::on("apply", Fault::TooManyRequests { retry_after: 7 }).after(1));
    faults.push(FaultRule::on(
        "/apply",
        Fault::StatusWithBody {
            status: 500,
            content_type: "application/json".into(),
            body: r#"{"oops":1}"#.into(),
        },
    ));
    let c = client();
    let r = c.post(&url).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.text().await.unwrap(), "Service Unavailable");
    // The 429 rule skips one matching request: the 500 rule answers this one.
    let r = c.post(&url).send().await.unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(r.text().await.unwrap(), r#"{"oops":1}"#);
    let r = c.post(&url).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    assert_eq!(applied.load(Ordering::SeqCst), 0);
    assert_eq!(faults.pending_rules(), 0);

    faults.push(FaultRule::any(Fault::Latency(Duration::from_millis(150))));
    let started = Instant::now();
    assert_eq!(c.post(&url).send().await.unwrap().status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(applied.load(Ordering::SeqCst), 1);
    assert_eq!(faults.requests("*"), 4);
    assert_eq!(faults.total_requests(), 4);
    assert_eq!(faults.status_count("apply", 429), 1);
    faults.reset_counts();
    assert_eq!(faults.total_requests(), 0);
}

#[tokio::test]
async fn probabilities_are_seeded_and_reproducible() {
    async fn run(seed: u64) -> Vec<u16> {
        let faults = Faults::new(seed);
        let (server, _) = start(&faults).await;
        faults.push(
            FaultRule::on("apply", Fault::Status(500))
                .with_probability(0.5)
                .always(),
        );
        let c = client();
        let mut out = Vec::new();
        for _ in 0..40 {
            let r = c
                .post(format!("{}apply", server.base_url()))
                .send()
                .await
                .unwrap();
            out.push(r.status().as_u16());
        }
        out
    }
    let a = run(42).await;
    assert_eq!(a, run(42).await);
    let failures = a.iter().filter(|s| **s == 500).count();
    assert!((8..=32).contains(&failures), "{failures} of 40");
}

#[tokio::test]
async fn slack_faults_use_slack_bodies_and_drops_apply_or_not() {
    let slack = unlimited().await;
    let faults = slack.faults();
    faults.push(FaultRule::on("chat.postMessage", Fault::Status(503)));
    let post = json!({"channel": "general", "text": "hi"});
    let r = call(&slack, "chat.postMessage", post.clone()).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.body, json!({"ok": false, "error": "service_unavailable"}));

    faults.push(FaultRule::on(
        "chat.postMessage",
        Fault::TooManyRequests { retry_after: 30 },
    ));
    let r = call(&slack, "chat.postMessage", post.clone()).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.headers["retry-after"], "30");
    assert_eq!(r.error(), "ratelimited");
    assert!(slack.messages("general").is_empty());

    let url = format!("{}chat.postMessage", slack.base_url());
    let send = || {
        client()
            .post(&url)
            .bearer_auth(slack.bot_token())
            .json(&post)
            .send()
    };
    faults.push(FaultRule::on(
        "/api/chat.postMessage",
        Fault::DropBeforeResponse,
    ));
    assert!(send().await.is_err());
    assert!(
        slack.messages("general").is_empty(),
        "dropped before: nothing applied"
    );

    faults.push(FaultRule::on("chat.postMessage", Fault::AppliedThenDropped));
    assert!(send().await.is_err());
    assert_eq!(slack.messages("general").len(), 1, "applied, then dropped");

    assert!(send().await.unwrap().status().is_success());
    assert_eq!(slack.messages("general").len(), 2);
    assert_eq!(slack.api_calls("chat.postMessage"), 5);
    assert_eq!(faults.status_count("chat.postMessage", 429), 1);
    assert_eq!(faults.dropped("chat.postMessage"), 2);
    assert_eq!(
        slack.rate_limited_count(),
        0,
        "injected 429s are not the limiter's"
    );
}
