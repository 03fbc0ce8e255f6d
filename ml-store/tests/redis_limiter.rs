//! `RedisRateLimiter` (feature `redis`) on a real Redis: the `RateLimiter` conformance
//! suite (in real time: the scripts decide by Redis `TIME`), the budget shared by two
//! limiters (two replicas), and what happens while Redis is unreachable.
//!
//! Needs `ML_TEST_REDIS_URL` (e.g. `redis://127.0.0.1:6379`) except for the
//! unreachable-Redis tests; without it the others print that they skipped and pass. Each
//! limiter gets its own key namespace, so tests run in parallel without colliding.
#![cfg(feature = "redis")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ml_core::limiter::{Quota, RateLimiter};
use ml_core::limiter_conformance::{self, PREFIX, RateSpec, Timing};
use ml_store::redis::{RedisFallback, RedisLimiterBuilder};
use tokio::time::Instant;

fn redis_url(test: &str) -> Option<String> {
    match std::env::var("ML_TEST_REDIS_URL") {
        Ok(u) if !u.trim().is_empty() => Some(u),
        _ => {
            // Straight to stderr: the test harness captures `eprintln!`, not this.
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!(
                    "SKIPPED {test}: ML_TEST_REDIS_URL is not set (e.g. redis://127.0.0.1:6379)\n"
                )
                .as_bytes(),
            );
            None
        }
    }
}

fn namespace(tag: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "mltest:{tag}:{}:{}:{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_limiter_conforms() {
    let Some(url) = redis_url("redis_limiter_conforms") else {
        return;
    };
    let timing = Timing {
        interval: Duration::from_millis(150),
        slack: Duration::from_millis(70),
    };
    limiter_conformance::run_all_with(timing, &|spec: RateSpec| {
        Arc::new(
            RedisLimiterBuilder::new()
                .with_url(&url)
                .with_namespace(namespace("conf"))
                .prefix(PREFIX, spec.quota().expect("quota"))
                .build()
                .expect("build"),
        ) as Arc<dyn RateLimiter>
    })
    .await;
}

fn slack_quota() -> Quota {
    Quota::per_second(1)
        .and_then(|q| q.burst(1))
        .and_then(|q| q.in_flight(1, Duration::from_secs(120)))
        .expect("quota")
}

/// Two limiters on one namespace are two replicas: a send through one holds back the
/// other for the interval after its completion, and a penalty seen by one holds both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_the_budget_and_penalties() {
    let Some(url) = redis_url("replicas_share_the_budget_and_penalties") else {
        return;
    };
    let ns = namespace("shared");
    let quota = Quota::with_period(Duration::from_millis(300))
        .and_then(|q| q.in_flight(1, Duration::from_secs(5)))
        .expect("quota");
    let make = || {
        RedisLimiterBuilder::new()
            .with_url(&url)
            .with_namespace(&ns)
            .prefix("slack:", quota)
            .build()
            .expect("build")
    };
    let (a, b) = (make(), make());
    let start = Instant::now();
    a.acquire("slack:C1").await.expect("a");
    // B waits for A's send to complete (in flight), then one interval.
    let b_task = {
        let b = b.clone();
        tokio::spawn(async move {
            b.acquire("slack:C1").await.expect("b");
            Instant::now()
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    a.completed("slack:C1").await.expect("completed");
    let completed_at = Instant::now();
    let b_at = b_task.await.expect("task");
    assert!(
        b_at >= completed_at + Duration::from_millis(300),
        "B passed {:?} after A's completion",
        b_at - completed_at
    );
    assert!(b_at - start < Duration::from_secs(2));
    // Another channel is independent.
    let t = Instant::now();
    b.acquire("slack:C2").await.expect("c2");
    assert!(t.elapsed() < Duration::from_millis(100));
    b.completed("slack:C1").await.expect("completed");
    b.completed("slack:C2").await.expect("completed");
    // A 429 seen by A holds B.
    a.penalize("slack:C3", Duration::from_millis(600))
        .await
        .expect("penalize");
    let t = Instant::now();
    b.acquire("slack:C3").await.expect("c3");
    assert!(
        t.elapsed() >= Duration::from_millis(590),
        "{:?}",
        t.elapsed()
    );
}

/// Fallback `pause`: with Redis unreachable nothing passes (the acquire waits); never
/// unpaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_redis_pauses_sending() {
    let limiter = RedisLimiterBuilder::new()
        .with_url("redis://127.0.0.1:1")
        .with_timeout(Duration::from_millis(100))
        .prefix("slack:", slack_quota())
        .build()
        .expect("build");
    let waited =
        tokio::time::timeout(Duration::from_millis(400), limiter.acquire("slack:C1")).await;
    assert!(
        waited.is_err(),
        "an acquire passed while Redis was unreachable"
    );
    // penalize and completed do not fail: they are kept locally.
    limiter
        .penalize("slack:C1", Duration::from_secs(1))
        .await
        .expect("penalize");
    limiter.completed("slack:C1").await.expect("completed");
}

/// Fallback `local:3`: with Redis unreachable each replica paces at a third of the rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_redis_falls_back_to_one_nth_of_the_rate() {
    let limiter = RedisLimiterBuilder::new()
        .with_url("redis://127.0.0.1:1")
        .with_timeout(Duration::from_millis(100))
        .with_fallback(RedisFallback::Local { replicas: 3 })
        .prefix(
            "slack:",
            Quota::with_period(Duration::from_millis(100)).expect("q"),
        )
        .build()
        .expect("build");
    let start = Instant::now();
    limiter.acquire("slack:C1").await.expect("first");
    limiter.acquire("slack:C1").await.expect("second");
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(300),
        "the second send came after {elapsed:?}; at 1/3 of 10/s it must wait 300 ms"
    );
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
}

/// When Redis answers, the limiter uses it (a limiter on a live Redis never falls back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_without_a_quota_pass_but_honour_penalties() {
    let Some(url) = redis_url("keys_without_a_quota_pass_but_honour_penalties") else {
        return;
    };
    let limiter = RedisLimiterBuilder::new()
        .with_url(&url)
        .with_namespace(namespace("noquota"))
        .prefix("slack:", slack_quota())
        .build()
        .expect("build");
    let t = Instant::now();
    for _ in 0..5 {
        limiter.acquire("twilio:+1555").await.expect("free");
    }
    assert!(t.elapsed() < Duration::from_millis(200));
    limiter
        .penalize("twilio:+1555", Duration::from_millis(300))
        .await
        .expect("penalize");
    let t = Instant::now();
    limiter
        .acquire("twilio:+1555")
        .await
        .expect("after penalty");
    assert!(
        t.elapsed() >= Duration::from_millis(290),
        "{:?}",
        t.elapsed()
    );
    assert!(!format!("{limiter:?}").contains("password"));
}
