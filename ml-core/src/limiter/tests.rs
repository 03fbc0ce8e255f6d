use super::*;
use crate::limiter_conformance::{self, RateSpec, Timing};

fn slack_like() -> GcraLimiter {
    GcraLimiter::builder()
        .default_quota(Quota::per_minute(30).expect("quota"))
        .prefix("slack:", Quota::per_second(1).expect("quota"))
        .prefix(
            "slack:T1:",
            Quota::per_second(5)
                .expect("quota")
                .burst(2)
                .expect("burst"),
        )
        .build()
}

async fn elapsed_for(f: impl Future<Output = Result<()>>) -> Duration {
    let start = Instant::now();
    f.await.expect("limiter never fails");
    start.elapsed()
}

#[tokio::test(start_paused = true)]
async fn gcra_limiter_passes_conformance() {
    let timing = Timing {
        interval: Duration::from_secs(1),
        slack: Duration::from_millis(2),
    };
    limiter_conformance::run_all_with(timing, &|spec: RateSpec| {
        Arc::new(
            GcraLimiter::builder()
                .prefix(
                    limiter_conformance::PREFIX,
                    spec.quota().expect("valid spec"),
                )
                .build(),
        ) as Arc<dyn RateLimiter>
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn gcra_limiter_passes_conformance_with_default_timing() {
    limiter_conformance::run_all(&|spec: RateSpec| {
        Arc::new(
            GcraLimiter::builder()
                .default_quota(Quota::per_second(1).expect("quota"))
                .prefix("conf", Quota::per_hour(1).expect("quota"))
                .prefix(
                    limiter_conformance::PREFIX,
                    spec.quota().expect("valid spec"),
                )
                .build(),
        ) as Arc<dyn RateLimiter>
    })
    .await;
}

#[test]
fn longest_prefix_wins() {
    let limiter = slack_like();
    let quota = |key| limiter.quota_for(key).map(|q| q.to_string());
    assert_eq!(quota("slack:T1:C1").as_deref(), Some("5/s burst 2"));
    assert_eq!(quota("slack:T2:C1").as_deref(), Some("1/s burst 1"));
    assert_eq!(quota("slack:").as_deref(), Some("1/s burst 1"));
    assert_eq!(quota("sap:PRD-100").as_deref(), Some("30/min burst 30"));
    assert_eq!(quota("").as_deref(), Some("30/min burst 30"));

    let no_default = GcraLimiter::builder()
        .prefix("slack:", Quota::per_second(1).expect("quota"))
        .build();
    assert_eq!(no_default.quota_for("sap:PRD-100"), None);
    assert!(no_default.quota_for("slack:C1").is_some());
}

#[test]
fn setting_a_prefix_again_replaces_it() {
    let limiter = GcraLimiter::builder()
        .prefix("slack:", Quota::per_second(1).expect("quota"))
        .prefix("slack:", Quota::per_second(3).expect("quota"))
        .build();
    assert_eq!(limiter.quota_for("slack:C1").map(|q| q.count()), Some(3));
    assert_eq!(limiter.buckets.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn prefixes_apply_their_own_rate() {
    let limiter = slack_like();
    // slack:T1: allows a burst of 2, then one every 200 ms.
    for _ in 0..2 {
        assert_eq!(
            elapsed_for(limiter.acquire("slack:T1:C1")).await,
            Duration::ZERO
        );
    }
    let waited = elapsed_for(limiter.acquire("slack:T1:C1")).await;
    assert!(waited >= Duration::from_millis(200), "{waited:?}");
    assert!(waited <= Duration::from_millis(201), "{waited:?}");
    // slack: allows one, then one per second.
    assert_eq!(
        elapsed_for(limiter.acquire("slack:C9")).await,
        Duration::ZERO
    );
    let waited = elapsed_for(limiter.acquire("slack:C9")).await;
    assert!(waited >= Duration::from_secs(1), "{waited:?}");
    assert!(waited <= Duration::from_millis(1001), "{waited:?}");
}

#[tokio::test(start_paused = true)]
async fn unmatched_keys_are_unlimited_without_a_default() {
    let limiter = GcraLimiter::builder()
        .prefix("slack:", Quota::per_second(1).expect("quota"))
        .build();
    let start = Instant::now();
    for _ in 0..1000 {
        limiter.acquire("email:ops").await.expect("acquire");
    }
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(limiter.tracked_keys(), 0, "unlimited keys keep no state");
}

#[tokio::test(start_paused = true)]
async fn unmatched_keys_use_the_default() {
    let limiter = slack_like();
    let start = Instant::now();
    for _ in 0..31 {
        limiter.acquire("sap:PRD-100").await.expect("acquire");
    }
    // A burst of 30, then the 31st waits one interval (2 s).
    let waited = start.elapsed();
    assert!(waited >= Duration::from_secs(2), "{waited:?}");
    assert!(waited <= Duration::from_millis(2001), "{waited:?}");
}

#[tokio::test(start_paused = true)]
async fn penalties_apply_to_unlimited_keys() {
    let limiter = GcraLimiter::builder().build();
    limiter
        .penalize("email:ops", Duration::from_secs(3))
        .await
        .expect("penalize");
    let waited = elapsed_for(limiter.acquire("email:ops")).await;
    assert!(waited >= Duration::from_secs(3), "{waited:?}");
    assert!(waited <= Duration::from_millis(3001), "{waited:?}");
    assert_eq!(
        elapsed_for(limiter.acquire("email:ops")).await,
        Duration::ZERO
    );
    assert_eq!(
        limiter.tracked_keys(),
        0,
        "the expired penalty was forgotten"
    );
}

#[tokio::test(start_paused = true)]
async fn shorter_penalty_does_not_shorten_a_longer_one() {
    let limiter = slack_like();
    let start = Instant::now();
    limiter
        .penalize("slack:C1", Duration::from_secs(10))
        .await
        .expect("penalize");
    limiter
        .penalize("slack:C1", Duration::from_secs(1))
        .await
        .expect("penalize");
    limiter
        .penalize("slack:C1", Duration::ZERO)
        .await
        .expect("penalize");
    limiter.acquire("slack:C1").await.expect("acquire");
    let waited = start.elapsed();
    assert!(waited >= Duration::from_secs(10), "{waited:?}");
    assert!(waited <= Duration::from_millis(10_001), "{waited:?}");
}

#[tokio::test(start_paused = true)]
async fn longer_penalty_extends_a_shorter_one_for_waiters() {
    let limiter = Arc::new(slack_like());
    let start = Instant::now();
    limiter
        .penalize("slack:C1", Duration::from_secs(1))
        .await
        .expect("penalize");
    let waiter = {
        let limiter = Arc::clone(&limiter);
        tokio::spawn(async move { limiter.acquire("slack:C1").await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    limiter
        .penalize("slack:C1", Duration::from_secs(4))
        .await
        .expect("penalize");
    waiter.await.expect("join").expect("acquire");
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(4500), "{waited:?}");
    assert!(waited <= Duration::from_millis(4501), "{waited:?}");
}

#[tokio::test(start_paused = true)]
async fn huge_retry_after_saturates() {
    let limiter = slack_like();
    limiter
        .penalize("slack:C1", Duration::MAX)
        .await
        .expect("penalize");
    let blocked =
        tokio::time::timeout(Duration::from_secs(86_400), limiter.acquire("slack:C1")).await;
    assert!(blocked.is_err(), "still penalized a day later");
    assert_eq!(
        elapsed_for(limiter.acquire("slack:C2")).await,
        Duration::ZERO
    );
}

#[tokio::test(start_paused = true)]
async fn retain_recent_drops_stale_state() {
    let limiter = slack_like();
    for key in ["slack:C1", "slack:C2", "slack:T1:C3", "sap:PRD-100"] {
        limiter.acquire(key).await.expect("acquire");
    }
    limiter
        .penalize("slack:C1", Duration::from_secs(5))
        .await
        .expect("penalize");
    assert_eq!(limiter.tracked_keys(), 5);
    limiter.retain_recent();
    assert_eq!(limiter.tracked_keys(), 5, "nothing is stale yet");
    tokio::time::advance(Duration::from_secs(10)).await;
    limiter.retain_recent();
    assert_eq!(limiter.tracked_keys(), 0);
    // Dropped keys behave like fresh ones.
    assert_eq!(
        elapsed_for(limiter.acquire("slack:C1")).await,
        Duration::ZERO
    );
}

#[test]
fn quota_validation() {
    let key_of = |r: Result<Quota>| match r {
        Err(Error::Config { key, .. }) => key,
        other => panic!("expected a config error, got {other:?}"),
    };
    assert_eq!(key_of(Quota::per_second(0)), "Quota::per_second");
    assert_eq!(key_of(Quota::per_minute(0)), "Quota::per_minute");
    assert_eq!(key_of(Quota::per_hour(0)), "Quota::per_hour");
    assert_eq!(key_of(Quota::new(1, Duration::ZERO)), "Quota::new");
    assert_eq!(
        key_of(Quota::with_period(Duration::ZERO)),
        "Quota::with_period"
    );
    assert_eq!(key_of(Quota::new(3, Duration::from_nanos(2))), "Quota::new");
    let one = Quota::per_second(1).expect("quota");
    assert_eq!(key_of(one.burst(0)), "Quota::burst");
    assert!(
        Quota::new(3, Duration::from_nanos(2))
            .expect_err("too fast")
            .to_string()
            .contains("faster than one per nanosecond")
    );
}

#[test]
fn quota_accessors_and_display() {
    let q = Quota::per_minute(30).expect("quota");
    assert_eq!(
        (
            q.count(),
            q.period(),
            q.burst_size(),
            q.replenish_interval()
        ),
        (30, Duration::from_secs(60), 30, Duration::from_secs(2))
    );
    let q = q.burst(1).expect("burst");
    assert_eq!(q.burst_size(), 1);
    assert_eq!(q.to_string(), "30/min burst 1");
    assert_eq!(
        format!("{q:?}"),
        "Quota { count: 30, period: 60s, burst: 1 }"
    );
    assert_eq!(Quota::per_hour(4).expect("q").to_string(), "4/h burst 4");
    let q = Quota::with_period(Duration::from_millis(250)).expect("q");
    assert_eq!(q.to_string(), "1 per 250ms burst 1");
    assert_eq!(q, Quota::new(1, Duration::from_millis(250)).expect("q"));
    assert_eq!(
        Quota::new(4, Duration::from_secs(1)).expect("q"),
        Quota::per_second(4).expect("q")
    );
}

#[test]
fn limiter_display_and_debug_name_the_quotas() {
    let limiter = slack_like();
    assert_eq!(
        limiter.to_string(),
        r#"GCRA limiter: "slack:T1:" 5/s burst 2, "slack:" 1/s burst 1, other keys 30/min burst 30"#
    );
    assert_eq!(
        format!("{limiter:?}"),
        r#"GcraLimiter { quotas: {"slack:T1:": "5/s burst 2", "slack:": "1/s burst 1", "": "30/min burst 30"}, tracked_keys: 0 }"#
    );
    let bare = GcraLimiter::builder().build();
    assert_eq!(bare.to_string(), "GCRA limiter: all keys unlimited");
    let uniform = GcraLimiter::builder()
        .default_quota(Quota::per_second(2).expect("quota"))
        .build();
    assert_eq!(uniform.to_string(), "GCRA limiter: all keys 2/s burst 2");
    let dynamic: Arc<dyn RateLimiter> = Arc::new(bare);
    assert!(format!("{dynamic:?}").starts_with("GcraLimiter {"));
}

#[tokio::test(start_paused = true)]
async fn no_limit_permits_everything() {
    let limiter: Arc<dyn RateLimiter> = Arc::new(NoLimit);
    let start = Instant::now();
    limiter
        .penalize("slack:C1", Duration::from_secs(60))
        .await
        .expect("penalize");
    for _ in 0..1000 {
        limiter.acquire("slack:C1").await.expect("acquire");
    }
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(NoLimit.to_string(), "no limit");
}

fn sap_like() -> ConcurrencyLimiter {
    ConcurrencyLimiter::builder()
        .default_max(4)
        .prefix("sap:", 2)
        .prefix("sap:PRD-", 3)
        .build()
        .expect("valid")
}

#[tokio::test(start_paused = true)]
async fn concurrency_limiter_caps_in_flight_calls() {
    let limiter = sap_like();
    let key = "sap:PRD-100";
    let permits: Vec<_> = futures::future::join_all((0..3).map(|_| limiter.acquire(key))).await;
    assert_eq!(limiter.in_flight(key), 3);
    assert!(limiter.try_acquire(key).is_none());

    let mut fourth = std::pin::pin!(limiter.acquire(key));
    assert!(futures::poll!(fourth.as_mut()).is_pending());
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(futures::poll!(fourth.as_mut()).is_pending(), "still capped");

    // Other keys have their own slots.
    let other = limiter.try_acquire("sap:PRD-200").expect("own cap");

    drop(permits);
    let fourth = tokio::time::timeout(Duration::from_secs(1), fourth)
        .await
        .expect("a slot was freed");
    assert_eq!(limiter.in_flight(key), 1);
    drop((fourth, other));
    assert_eq!(limiter.in_flight(key), 0);
}

#[tokio::test(start_paused = true)]
async fn concurrency_limiter_releases_one_slot_per_drop() {
    let limiter = Arc::new(sap_like());
    let key = "sap:QAS-1";
    let first = limiter.acquire(key).await;
    let _second = limiter.acquire(key).await;
    let waiter = {
        let limiter = Arc::clone(&limiter);
        tokio::spawn(async move {
            let _permit = limiter.acquire(key).await;
            Instant::now()
        })
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!waiter.is_finished(), "the third call waits for a slot");
    let released = Instant::now();
    drop(first);
    let started = waiter.await.expect("join");
    assert_eq!(started, released);
}

#[tokio::test(start_paused = true)]
async fn cancelled_concurrency_acquire_takes_no_slot() {
    let limiter = sap_like();
    let held = limiter.acquire("sap:X").await;
    let _held2 = limiter.acquire("sap:X").await;
    let timed_out = tokio::time::timeout(Duration::from_secs(1), limiter.acquire("sap:X")).await;
    assert!(timed_out.is_err());
    drop(held);
    assert_eq!(limiter.in_flight("sap:X"), 1);
    assert!(limiter.try_acquire("sap:X").is_some());
}

#[test]
fn concurrency_limiter_prefixes_and_validation() {
    let limiter = sap_like();
    assert_eq!(limiter.max_for("sap:PRD-100"), Some(3));
    assert_eq!(limiter.max_for("sap:QAS-100"), Some(2));
    assert_eq!(limiter.max_for("oracle:fusion"), Some(4));
    let uncapped = ConcurrencyLimiter::builder()
        .prefix("sap:", 2)
        .build()
        .expect("valid");
    assert_eq!(uncapped.max_for("oracle:fusion"), None);
    let permits: Vec<_> = (0..100)
        .map(|_| uncapped.try_acquire("oracle:fusion").expect("uncapped"))
        .collect();
    assert_eq!(uncapped.in_flight("oracle:fusion"), 0);
    drop(permits);

    for max in [0, Semaphore::MAX_PERMITS + 1] {
        match ConcurrencyLimiter::builder().prefix("sap:", max).build() {
            Err(Error::Config { key, .. }) => {
                assert_eq!(key, r#"ConcurrencyLimiter::prefix("sap:")"#);
            }
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    assert_eq!(
        limiter.to_string(),
        r#"concurrency limiter: "sap:PRD-" 3 in flight, "sap:" 2 in flight, other keys 4 in flight"#
    );
    assert_eq!(
        format!("{limiter:?}"),
        r#"ConcurrencyLimiter { limits: {"sap:PRD-": 3, "sap:": 2, "": 4}, keys: 0 }"#
    );
    assert_eq!(
        ConcurrencyLimiter::builder()
            .build()
            .expect("valid")
            .to_string(),
        "concurrency limiter: all keys uncapped"
    );
    assert_eq!(
        uncapped.to_string(),
        r#"concurrency limiter: "sap:" 2 in flight, other keys uncapped"#
    );
}

#[tokio::test(start_paused = true)]
async fn retain_active_forgets_idle_keys_only() {
    let limiter = sap_like();
    let busy = limiter.acquire("sap:A").await;
    drop(limiter.acquire("sap:B").await);
    limiter.retain_active();
    assert_eq!(limiter.lock().len(), 1);
    assert_eq!(limiter.in_flight("sap:A"), 1);
    drop(busy);
    limiter.retain_active();
    assert_eq!(limiter.lock().len(), 0);
}

#[tokio::test(start_paused = true)]
async fn completed_paces_the_next_send_from_the_response() {
    let limiter = slack_like();
    limiter.acquire("slack:C1").await.expect("acquire");
    // The post is held 3 s before its answer comes back.
    tokio::time::sleep(Duration::from_secs(3)).await;
    limiter.completed("slack:C1").await.expect("completed");
    let waited = elapsed_for(limiter.acquire("slack:C1")).await;
    assert!(waited >= Duration::from_secs(1), "{waited:?}");
    assert!(waited <= Duration::from_millis(1001), "{waited:?}");
    // Other keys are not touched.
    assert_eq!(
        elapsed_for(limiter.acquire("slack:C2")).await,
        Duration::ZERO
    );
}

#[tokio::test(start_paused = true)]
async fn completed_measures_the_burst_from_the_response_too() {
    let limiter = slack_like(); // slack:T1: 5/s burst 2
    let key = "slack:T1:C1";
    for _ in 0..2 {
        limiter.acquire(key).await.expect("acquire");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    limiter.completed(key).await.expect("completed");
    // tat = now + 200 ms, tolerance 200 ms: one passes at once, the next 200 ms later.
    assert_eq!(elapsed_for(limiter.acquire(key)).await, Duration::ZERO);
    let waited = elapsed_for(limiter.acquire(key)).await;
    assert!(waited >= Duration::from_millis(200), "{waited:?}");
    assert!(waited <= Duration::from_millis(201), "{waited:?}");
}

#[tokio::test(start_paused = true)]
async fn completed_never_brings_a_permit_forward() {
    let limiter = slack_like(); // slack: 1/s burst 1
    limiter.acquire("slack:C1").await.expect("acquire");
    limiter.completed("slack:C1").await.expect("completed");
    limiter
        .completed("slack:C1")
        .await
        .expect("completed twice");
    let waited = elapsed_for(limiter.acquire("slack:C1")).await;
    assert_eq!(waited, Duration::from_secs(1), "one interval, not two");
}

#[tokio::test(start_paused = true)]
async fn completed_on_an_unused_key_carries_the_budget_over() {
    let limiter = slack_like();
    // A sink learned during a send on `slack:#ap` that the channel's key is `slack:C1`.
    limiter.acquire("slack:#ap").await.expect("acquire");
    limiter.completed("slack:#ap").await.expect("completed");
    limiter.completed("slack:C1").await.expect("completed");
    let waited = elapsed_for(limiter.acquire("slack:C1")).await;
    assert_eq!(waited, Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn completed_on_unlimited_keys_keeps_no_state() {
    let limiter = GcraLimiter::builder()
        .prefix("slack:", Quota::per_second(1).expect("quota"))
        .build();
    limiter.completed("email:ops").await.expect("completed");
    assert_eq!(limiter.tracked_keys(), 0);
    NoLimit.completed("slack:C1").await.expect("no-op");
    assert_eq!(
        elapsed_for(limiter.acquire("email:ops")).await,
        Duration::ZERO
    );
}

fn one_in_flight() -> GcraLimiter {
    GcraLimiter::builder()
        .prefix(
            "slack:",
            Quota::per_second(1)
                .and_then(|q| q.burst(1))
                .and_then(|q| q.in_flight(1, Duration::from_secs(60)))
                .expect("quota"),
        )
        .build()
}

#[tokio::test(start_paused = true)]
async fn in_flight_cap_waits_for_the_previous_answer() {
    let limiter = Arc::new(one_in_flight());
    let start = Instant::now();
    limiter.acquire("slack:C1").await.expect("acquire");
    // A second sender on the same key (another destination naming the channel).
    let second = {
        let limiter = Arc::clone(&limiter);
        tokio::spawn(async move {
            limiter.acquire("slack:C1").await.expect("acquire");
            Instant::now()
        })
    };
    // The first send is held 3 s; the second may not start before its answer + 1 s.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!second.is_finished(), "still waiting for the answer");
    limiter.completed("slack:C1").await.expect("completed");
    let started = second.await.expect("join");
    assert_eq!(started - start, Duration::from_secs(4));
    // Other keys are independent.
    assert_eq!(
        elapsed_for(limiter.acquire("slack:C2")).await,
        Duration::ZERO
    );
}

#[tokio::test(start_paused = true)]
async fn in_flight_leases_expire() {
    let limiter = one_in_flight();
    limiter.acquire("slack:C1").await.expect("acquire");
    // Never completed (the caller died): the lease frees the key after 60 s.
    let waited = elapsed_for(limiter.acquire("slack:C1")).await;
    assert_eq!(waited, Duration::from_secs(60));
    limiter.completed("slack:C1").await.expect("completed");
    // A completion with nothing in flight frees nothing, and only re-measures.
    limiter.completed("slack:C1").await.expect("completed");
    let waited = elapsed_for(limiter.acquire("slack:C1")).await;
    assert_eq!(waited, Duration::from_secs(1));
    assert_eq!(limiter.tracked_keys(), 1);
    tokio::time::advance(Duration::from_secs(61)).await;
    limiter.retain_recent();
    assert_eq!(limiter.tracked_keys(), 0, "expired leases are forgotten");
}

#[tokio::test(start_paused = true)]
async fn cancelled_acquire_takes_no_in_flight_slot() {
    let limiter = one_in_flight();
    limiter.acquire("slack:C1").await.expect("acquire");
    let timed_out = tokio::time::timeout(Duration::from_secs(5), limiter.acquire("slack:C1")).await;
    assert!(timed_out.is_err());
    limiter.completed("slack:C1").await.expect("completed");
    let waited = elapsed_for(limiter.acquire("slack:C1")).await;
    assert_eq!(waited, Duration::from_secs(1));
}

#[test]
fn in_flight_validation_and_display() {
    let q = Quota::per_second(1).expect("q");
    for (max, lease) in [(0, Duration::from_secs(1)), (1, Duration::ZERO)] {
        match q.in_flight(max, lease) {
            Err(Error::Config { key, .. }) => assert_eq!(key, "Quota::in_flight"),
            other => panic!("expected a config error, got {other:?}"),
        }
    }
    let capped = q.in_flight(1, Duration::from_secs(60)).expect("valid");
    assert_eq!(capped.in_flight_cap(), Some((1, Duration::from_secs(60))));
    assert_eq!(q.in_flight_cap(), None);
    assert_eq!(capped.to_string(), "1/s burst 1, 1 in flight (lease 60s)");
    assert_eq!(
        format!("{capped:?}"),
        "Quota { count: 1, period: 1s, burst: 1, in_flight: (1, 60s) }"
    );
}
