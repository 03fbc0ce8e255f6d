//! Retries: exponential backoff with jitter, bounded by attempts and elapsed time.
//! The mapping from HTTP answers and transport failures to [`ErrorClass`] lives in
//! [`crate::http`] ([`crate::http::classify_status`], [`crate::http::classify_transport`]).
//!
//! # Backoff
//!
//! [`RetryPolicy`] computes the wait before each retry. Retry `n` (0-based: `n = 0` is the
//! wait after the first failure) waits a uniformly random time in `[c/2, c]` with
//! `c = min(max_delay, base_delay * 2^n)` ("equal jitter"): the randomness spreads a crowd of
//! clients that failed together instead of having them retry in lock-step, and the floor
//! keeps any one client from retrying a failing server within milliseconds (full jitter,
//! `[0, c]`, sometimes answered a 503 with a retry 30 ms later). A server's own
//! hint ([`ErrorClass::Retryable`]'s `retry_after`) always wins over the computed delay.
//! Retrying stops after `max_attempts` attempts in all, or when the next attempt would
//! start after `max_elapsed`.
//!
//! [`retry`] runs an operation under a policy; [`RetryPolicy`] is also a
//! [`backon::BackoffBuilder`] for callers who want `backon`'s combinators directly.
//!
//! ```
//! use std::time::Duration;
//! use ml_core::error::{Error, ErrorClass};
//! use ml_core::retry::{retry, RetryPolicy};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> ml_core::error::Result<()> {
//! let policy = RetryPolicy::default()
//!     .with_base_delay(Duration::from_millis(1))
//!     .with_max_attempts(3);
//! let mut calls = 0;
//! let answer = retry(&policy, || {
//!     calls += 1;
//!     let outcome = if calls < 3 {
//!         Err(Error::remote("Example", ErrorClass::RETRYABLE, "busy"))
//!     } else {
//!         Ok(42)
//!     };
//!     async move { outcome }
//! })
//! .await?;
//! assert_eq!((answer, calls), (42, 3));
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::time::Duration;

use backon::{BackoffBuilder, Retryable as _};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng as _};
use serde::Deserialize;

use crate::error::{Error, ErrorClass, Result};

/// Exponential backoff with equal jitter, bounded by a number of attempts and by the time
/// spent since the first attempt.
///
/// Deserializes from configuration with every field optional (missing fields keep their
/// default); durations are strings in jiff's friendly (`"500ms"`, `"1m 30s"`) or ISO 8601
/// (`"PT15M"`) format:
///
/// ```
/// use std::time::Duration;
/// use ml_core::retry::RetryPolicy;
///
/// let policy: RetryPolicy =
///     serde_json::from_str(r#"{ "base_delay": "250ms", "max_attempts": 5 }"#).unwrap();
/// assert_eq!(policy.base_delay(), Duration::from_millis(250));
/// assert_eq!(policy.max_attempts(), 5);
/// assert_eq!(policy.max_delay(), RetryPolicy::default().max_delay());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    #[serde(deserialize_with = "duration_str::deserialize")]
    base_delay: Duration,
    #[serde(deserialize_with = "duration_str::deserialize")]
    max_delay: Duration,
    max_attempts: u32,
    #[serde(deserialize_with = "duration_str::deserialize")]
    max_elapsed: Duration,
}

impl Default for RetryPolicy {
    /// Base 500 ms, cap 60 s, 8 attempts in all, 15 minutes in all.
    fn default() -> Self {
        Self {
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(60),
            max_attempts: 8,
            max_elapsed: Duration::from_secs(15 * 60),
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries: the first failure is final.
    pub fn none() -> Self {
        Self::default().with_max_attempts(1)
    }

    /// Sets the delay ceiling of the first retry; retry `n` has ceiling `base * 2^n`.
    pub fn with_base_delay(mut self, base_delay: Duration) -> Self {
        self.base_delay = base_delay;
        self
    }

    /// Sets the largest computed delay (a server's `Retry-After` may exceed it).
    pub fn with_max_delay(mut self, max_delay: Duration) -> Self {
        self.max_delay = max_delay;
        self
    }

    /// Sets the number of attempts in all, the first one included. `0` is treated as `1`:
    /// an operation is always attempted once.
    pub fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// Sets the time budget, counted from the start of the first attempt: no attempt starts
    /// after it.
    pub fn with_max_elapsed(mut self, max_elapsed: Duration) -> Self {
        self.max_elapsed = max_elapsed;
        self
    }

    /// The delay ceiling of the first retry.
    pub fn base_delay(&self) -> Duration {
        self.base_delay
    }

    /// The largest computed delay.
    pub fn max_delay(&self) -> Duration {
        self.max_delay
    }

    /// The number of attempts in all (at least 1).
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts.max(1)
    }

    /// The time budget counted from the start of the first attempt.
    pub fn max_elapsed(&self) -> Duration {
        self.max_elapsed
    }

    /// A jittered delay for retry `attempt`: uniformly random in
    /// `[delay_ceiling(attempt) / 2, delay_ceiling(attempt)]`.
    pub fn jittered_delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self.delay_ceiling(attempt);
        let high = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.random_range(high / 2..=high))
    }

    /// The upper bound of the jittered delay of retry `attempt`:
    /// `min(max_delay, base_delay * 2^attempt)`, without overflow for any `attempt`.
    pub fn delay_ceiling(&self, attempt: u32) -> Duration {
        2u32.checked_pow(attempt)
            .and_then(|factor| self.base_delay.checked_mul(factor))
            .map_or(self.max_delay, |d| d.min(self.max_delay))
    }

    /// How long to wait before retrying, or `None` to give up.
    ///
    /// `attempt` is the number of retries already made (`0` after the first failure),
    /// `elapsed` the time since the first attempt started, and `class` the failure's class.
    /// Gives up when the class is not [`ErrorClass::Retryable`], when `max_attempts` would
    /// be exceeded, or when the elapsed budget is spent. A server's `retry_after` is used
    /// exactly as given, unless waiting that long would overrun the elapsed budget, in which
    /// case it gives up (the server has said an earlier attempt would fail). A computed delay
    /// is [`jittered_delay`](Self::jittered_delay), shortened to what is left of the budget.
    pub fn next_delay(
        &self,
        attempt: u32,
        elapsed: Duration,
        class: ErrorClass,
        rng: &mut impl Rng,
    ) -> Option<Duration> {
        let ErrorClass::Retryable { retry_after } = class else {
            return None;
        };
        if attempt.saturating_add(1) >= self.max_attempts() {
            return None;
        }
        let remaining = self.max_elapsed.checked_sub(elapsed)?;
        if remaining.is_zero() {
            return None;
        }
        if let Some(wait) = retry_after {
            return (wait <= remaining).then_some(wait);
        }
        Some(self.jittered_delay(attempt, rng).min(remaining))
    }

    /// Whether waiting `wait` after `elapsed` stays within the elapsed budget.
    fn fits_budget(&self, elapsed: Duration, wait: Duration) -> bool {
        elapsed
            .checked_add(wait)
            .is_some_and(|at| at <= self.max_elapsed)
    }
}

/// The [`backon::Backoff`] of a [`RetryPolicy`]: yields jittered delays for retryable
/// failures until the attempts or the elapsed budget (counted from when it was built, on
/// tokio's clock) run out.
///
/// It cannot see the failure, so it knows nothing of `Retry-After`; [`retry`] adds that with
/// `backon`'s `adjust` hook.
#[derive(Debug)]
pub struct RetryBackoff {
    policy: RetryPolicy,
    attempt: u32,
    started: tokio::time::Instant,
    rng: SmallRng,
}

impl RetryBackoff {
    fn new(policy: RetryPolicy, started: tokio::time::Instant) -> Self {
        Self {
            policy,
            attempt: 0,
            started,
            rng: SmallRng::from_rng(&mut rand::rng()),
        }
    }
}

impl Iterator for RetryBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = self.policy.next_delay(
            self.attempt,
            self.started.elapsed(),
            ErrorClass::RETRYABLE,
            &mut self.rng,
        )?;
        self.attempt = self.attempt.saturating_add(1);
        Some(delay)
    }
}

impl BackoffBuilder for RetryPolicy {
    type Backoff = RetryBackoff;

    fn build(self) -> RetryBackoff {
        RetryBackoff::new(self, tokio::time::Instant::now())
    }
}

impl BackoffBuilder for &RetryPolicy {
    type Backoff = RetryBackoff;

    fn build(self) -> RetryBackoff {
        self.clone().build()
    }
}

/// Runs `op` until it succeeds, fails with an error that is not
/// [`ErrorClass::Retryable`], or `policy` gives up; returns the last outcome.
///
/// Waits between attempts as [`RetryPolicy::next_delay`] says: a server's `retry_after` is
/// honoured exactly (or ends the retries when it would overrun the elapsed budget).
/// [`Error::Cancelled`] is never retried: a shutdown ends the loop. Waits use tokio's timer,
/// so tests under `tokio::time::pause()` run instantly. Each retry is logged at `debug`.
pub async fn retry<T, F, Fut>(policy: &RetryPolicy, op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let started = tokio::time::Instant::now();
    let backoff = RetryBackoff::new(policy.clone(), started);
    let budget = policy.clone();
    op.retry(backoff)
        .when(|err: &Error| !matches!(err, Error::Cancelled) && err.class().is_retryable())
        .adjust(move |err: &Error, computed: Option<Duration>| {
            // `computed` is `None` once the attempts or the budget are spent.
            let computed = computed?;
            match err.class().retry_after() {
                Some(wait) => budget.fits_budget(started.elapsed(), wait).then_some(wait),
                None => Some(computed),
            }
        })
        .notify(|err: &Error, wait: Duration| {
            tracing::debug!(error = %err, wait_ms = wait.as_millis(), "retrying");
        })
        .await
}

/// Deserializes a `std::time::Duration` from a jiff friendly or ISO 8601 duration string.
mod duration_str {
    use std::fmt;
    use std::time::Duration;

    use serde::de::{self, Deserializer, Visitor};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
        de.deserialize_str(DurationVisitor)
    }

    struct DurationVisitor;

    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(r#"a non-negative duration such as "500ms", "1m 30s" or "PT15M""#)
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
            let signed: jiff::SignedDuration = text.trim().parse().map_err(E::custom)?;
            Duration::try_from(signed)
                .map_err(|_| E::custom(format!("duration `{text}` must not be negative")))
        }
    }
}

impl fmt::Display for RetryPolicy {
    /// A one-line summary for logs: `backoff 500ms..60s, 8 attempts, 900s budget`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "backoff {:?}..{:?}, {} attempts, {:?} budget",
            self.base_delay,
            self.max_delay,
            self.max_attempts(),
            self.max_elapsed
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use rand::rngs::StdRng;

    use super::*;

    fn rng() -> StdRng {
        StdRng::seed_from_u64(7)
    }

    fn retryable_after(secs: u64) -> ErrorClass {
        ErrorClass::Retryable {
            retry_after: Some(Duration::from_secs(secs)),
        }
    }

    #[test]
    fn defaults_and_setters() {
        let p = RetryPolicy::default();
        assert_eq!(p.base_delay(), Duration::from_millis(500));
        assert_eq!(p.max_delay(), Duration::from_secs(60));
        assert_eq!(p.max_attempts(), 8);
        assert_eq!(p.max_elapsed(), Duration::from_secs(900));
        assert_eq!(RetryPolicy::none().max_attempts(), 1);
        assert_eq!(
            RetryPolicy::default().with_max_attempts(0).max_attempts(),
            1
        );
        assert_eq!(p.to_string(), "backoff 500ms..60s, 8 attempts, 900s budget");
    }

    #[test]
    fn deserializes_with_defaults() {
        let p: RetryPolicy = serde_json::from_str("{}").expect("empty");
        assert_eq!(p, RetryPolicy::default());
        let p: RetryPolicy = serde_json::from_str(
            r#"{"base_delay":"250ms","max_delay":"PT10S","max_attempts":3,"max_elapsed":"2m 30s"}"#,
        )
        .expect("full");
        assert_eq!(
            p,
            RetryPolicy::default()
                .with_base_delay(Duration::from_millis(250))
                .with_max_delay(Duration::from_secs(10))
                .with_max_attempts(3)
                .with_max_elapsed(Duration::from_secs(150))
        );
        for bad in [
            r#"{"base_delay":"-1s"}"#,
            r#"{"base_delay":"soon"}"#,
            r#"{"base_delay":5}"#,
            r#"{"max_retries":5}"#,
        ] {
            assert!(serde_json::from_str::<RetryPolicy>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ceiling_grows_exponentially_and_is_capped_without_overflow() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay_ceiling(0), Duration::from_millis(500));
        assert_eq!(p.delay_ceiling(1), Duration::from_secs(1));
        assert_eq!(p.delay_ceiling(3), Duration::from_secs(4));
        assert_eq!(p.delay_ceiling(7), Duration::from_secs(60));
        for n in [31, 32, 33, 64, 1000, u32::MAX] {
            assert_eq!(p.delay_ceiling(n), Duration::from_secs(60), "attempt {n}");
        }
        let huge = RetryPolicy::default()
            .with_base_delay(Duration::MAX)
            .with_max_delay(Duration::MAX);
        assert_eq!(huge.delay_ceiling(1), Duration::MAX);
        let p = huge
            .with_max_attempts(u32::MAX)
            .with_max_elapsed(Duration::MAX);
        assert!(
            p.next_delay(
                u32::MAX - 2,
                Duration::ZERO,
                ErrorClass::RETRYABLE,
                &mut rng()
            )
            .is_some()
        );
    }

    #[test]
    fn delays_are_jittered_between_half_the_ceiling_and_the_ceiling() {
        let p = RetryPolicy::default().with_max_attempts(100);
        let mut rng = rng();
        for attempt in 0..10 {
            let ceiling = p.delay_ceiling(attempt);
            let samples: Vec<Duration> = (0..2000)
                .map(|_| {
                    p.next_delay(attempt, Duration::ZERO, ErrorClass::RETRYABLE, &mut rng)
                        .expect("retries left")
                })
                .collect();
            assert!(samples.iter().all(|d| *d <= ceiling));
            // Never sooner than half the ceiling: a failing server is not hammered.
            assert!(samples.iter().all(|d| *d >= ceiling / 2));
            // The draws cover the range, so a crowd of clients spreads out.
            let min = samples.iter().min().expect("samples");
            let max = samples.iter().max().expect("samples");
            assert!(*min < ceiling * 51 / 100, "attempt {attempt}: min {min:?}");
            assert!(*max > ceiling * 49 / 50, "attempt {attempt}: max {max:?}");
            let mean = samples.iter().sum::<Duration>() / 2000;
            assert!(
                mean > ceiling * 7 / 10 && mean < ceiling * 8 / 10,
                "mean {mean:?}"
            );
        }
    }

    #[test]
    fn gives_up_on_non_retryable_classes_and_exhausted_attempts() {
        let p = RetryPolicy::default().with_max_attempts(3);
        let mut rng = rng();
        let zero = Duration::ZERO;
        assert!(
            p.next_delay(0, zero, ErrorClass::Permanent, &mut rng)
                .is_none()
        );
        assert!(
            p.next_delay(0, zero, ErrorClass::InDoubt, &mut rng)
                .is_none()
        );
        assert!(
            p.next_delay(0, zero, ErrorClass::RETRYABLE, &mut rng)
                .is_some()
        );
        assert!(
            p.next_delay(1, zero, ErrorClass::RETRYABLE, &mut rng)
                .is_some()
        );
        assert!(
            p.next_delay(2, zero, ErrorClass::RETRYABLE, &mut rng)
                .is_none()
        );
        assert!(
            p.next_delay(u32::MAX, zero, ErrorClass::RETRYABLE, &mut rng)
                .is_none()
        );
        let none = RetryPolicy::none();
        assert!(
            none.next_delay(0, zero, ErrorClass::RETRYABLE, &mut rng)
                .is_none()
        );
        assert!(
            none.next_delay(0, zero, retryable_after(1), &mut rng)
                .is_none()
        );
    }

    #[test]
    fn elapsed_budget_bounds_every_delay() {
        let p = RetryPolicy::default()
            .with_base_delay(Duration::from_secs(100))
            .with_max_elapsed(Duration::from_secs(60));
        let mut rng = rng();
        let c = ErrorClass::RETRYABLE;
        assert!(
            p.next_delay(0, Duration::from_secs(60), c, &mut rng)
                .is_none()
        );
        assert!(
            p.next_delay(0, Duration::from_secs(61), c, &mut rng)
                .is_none()
        );
        for _ in 0..100 {
            let d = p
                .next_delay(0, Duration::from_secs(50), c, &mut rng)
                .expect("budget left");
            assert!(d <= Duration::from_secs(10));
        }
    }

    #[test]
    fn retry_after_wins_exactly_unless_it_overruns_the_budget() {
        let p = RetryPolicy::default().with_max_elapsed(Duration::from_secs(60));
        let mut rng = rng();
        // Larger than max_delay and than the jitter ceiling: used as is.
        let p2 = p.clone().with_max_delay(Duration::from_secs(1));
        assert_eq!(
            p2.next_delay(0, Duration::ZERO, retryable_after(30), &mut rng),
            Some(Duration::from_secs(30))
        );
        // Smaller than the ceiling: not jittered down.
        let p3 = p.clone().with_base_delay(Duration::from_secs(50));
        for _ in 0..20 {
            assert_eq!(
                p3.next_delay(0, Duration::ZERO, retryable_after(7), &mut rng),
                Some(Duration::from_secs(7))
            );
        }
        assert_eq!(
            p.next_delay(0, Duration::from_secs(30), retryable_after(30), &mut rng),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            p.next_delay(0, Duration::from_secs(31), retryable_after(30), &mut rng),
            None
        );
        assert_eq!(
            p.next_delay(0, Duration::ZERO, retryable_after(u64::MAX), &mut rng),
            None
        );
        let zero = ErrorClass::Retryable {
            retry_after: Some(Duration::ZERO),
        };
        assert_eq!(
            p.next_delay(0, Duration::ZERO, zero, &mut rng),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn backoff_builder_yields_bounded_delays() {
        let p = RetryPolicy::default().with_max_attempts(5);
        let delays: Vec<Duration> = (&p).build().collect();
        assert_eq!(delays.len(), 4);
        for (n, d) in delays.iter().enumerate() {
            assert!(*d <= p.delay_ceiling(n as u32));
        }
        assert_eq!(RetryPolicy::none().build().count(), 0);
    }

    fn counting_op(
        calls: &Arc<AtomicU32>,
        outcome: impl Fn(u32) -> Result<u32>,
    ) -> impl FnMut() -> std::future::Ready<Result<u32>> {
        let calls = Arc::clone(calls);
        move || {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            std::future::ready(outcome(n))
        }
    }

    fn remote(class: ErrorClass) -> Error {
        Error::remote("Test(1)", class, "failed")
    }

    #[tokio::test(start_paused = true)]
    async fn retry_until_success() {
        let calls = Arc::new(AtomicU32::new(0));
        let start = tokio::time::Instant::now();
        let p = RetryPolicy::default();
        let got = retry(
            &p,
            counting_op(&calls, |n| {
                if n < 3 {
                    Err(remote(ErrorClass::RETRYABLE))
                } else {
                    Ok(n)
                }
            }),
        )
        .await
        .expect("succeeds on the third call");
        assert_eq!(got, 3);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert!(start.elapsed() <= p.delay_ceiling(0) + p.delay_ceiling(1));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_can_be_spawned() {
        let task = tokio::spawn(async move {
            let calls = Arc::new(AtomicU32::new(0));
            let op = counting_op(&calls, |n| {
                if n < 2 {
                    Err(remote(ErrorClass::RETRYABLE))
                } else {
                    Ok(n)
                }
            });
            retry(&RetryPolicy::default(), op).await
        });
        assert_eq!(task.await.expect("task").expect("second call"), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_stops_on_permanent_in_doubt_and_cancelled() {
        for err in [
            || remote(ErrorClass::Permanent),
            || remote(ErrorClass::InDoubt),
            || Error::Cancelled,
        ] {
            let calls = Arc::new(AtomicU32::new(0));
            let got = retry(&RetryPolicy::default(), counting_op(&calls, |_| Err(err()))).await;
            assert!(got.is_err());
            assert_eq!(calls.load(Ordering::SeqCst), 1);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retry_gives_up_after_max_attempts_with_the_last_error() {
        let calls = Arc::new(AtomicU32::new(0));
        let p = RetryPolicy::default().with_max_attempts(4);
        let err = retry(
            &p,
            counting_op(&calls, |n| {
                Err(Error::remote(
                    "Test(1)",
                    ErrorClass::RETRYABLE,
                    format!("call {n}"),
                ))
            }),
        )
        .await
        .expect_err("always fails");
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        assert_eq!(err.to_string(), "Test(1): call 4");
    }

    #[tokio::test(start_paused = true)]
    async fn retry_honours_retry_after_exactly() {
        let calls = Arc::new(AtomicU32::new(0));
        let start = tokio::time::Instant::now();
        let got = retry(
            &RetryPolicy::default(),
            counting_op(&calls, |n| {
                if n == 1 {
                    Err(remote(retryable_after(7)))
                } else {
                    Ok(n)
                }
            }),
        )
        .await;
        assert_eq!(got.expect("second call"), 2);
        assert_eq!(start.elapsed(), Duration::from_secs(7));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_gives_up_when_retry_after_overruns_the_budget() {
        let calls = Arc::new(AtomicU32::new(0));
        let start = tokio::time::Instant::now();
        let p = RetryPolicy::default().with_max_elapsed(Duration::from_secs(60));
        let got = retry(
            &p,
            counting_op(&calls, |_| Err(remote(retryable_after(61)))),
        )
        .await;
        assert!(got.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_respects_the_elapsed_budget() {
        let calls = Arc::new(AtomicU32::new(0));
        let start = tokio::time::Instant::now();
        let p = RetryPolicy::default()
            .with_base_delay(Duration::from_secs(4))
            .with_max_attempts(u32::MAX)
            .with_max_elapsed(Duration::from_secs(30));
        let got = retry(
            &p,
            counting_op(&calls, |_| Err(remote(ErrorClass::RETRYABLE))),
        )
        .await;
        assert!(got.is_err());
        assert!(start.elapsed() <= Duration::from_secs(30));
        assert!(calls.load(Ordering::SeqCst) >= 2);
    }
}
