//! A conformance suite that every [`RateLimiter`] implementation runs: the in-process
//! [`GcraLimiter`](crate::limiter::GcraLimiter) and any shared backend (e.g. Redis for
//! multi-replica hosts).
//!
//! The suite builds its limiters through a factory, `Fn(RateSpec) -> Arc<dyn RateLimiter>`,
//! which must return a limiter **with fresh state** that applies the given rate to every key
//! starting with [`PREFIX`] (a shared backend should namespace its storage per call, so that
//! runs do not see each other's keys). Everything is measured with
//! [`tokio::time::Instant`], so the suite works both under `tokio::time::pause()` (for
//! limiters that follow tokio's clock) and in real time (for limiters that use a server's
//! clock); [`Timing`] sets the interval the checks use and how much lateness they accept.
//!
//! Lower bounds are strict (a limiter may never let a send through early); upper bounds
//! allow [`Timing::slack`]. Each check panics with a message naming the check and what went
//! wrong.
//!
//! ```
//! # use std::sync::Arc;
//! # use ml_core::limiter::{GcraLimiter, RateLimiter};
//! # use ml_core::limiter_conformance;
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! // In a `#[tokio::test(start_paused = true)]` of the implementation's crate:
//! limiter_conformance::run_all(&|spec| {
//!     let quota = spec.quota().expect("spec");
//!     Arc::new(GcraLimiter::builder().prefix(limiter_conformance::PREFIX, quota).build())
//!         as Arc<dyn RateLimiter>
//! })
//! .await;
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::Result;
use crate::limiter::{Quota, RateLimiter};

/// The key prefix the factory's rate must apply to; every key the suite uses starts with
/// it.
pub const PREFIX: &str = "conf:";

/// The rate a factory must apply to keys starting with [`PREFIX`]: `count` sends per
/// `period`, up to `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateSpec {
    /// Sends per period (at least 1).
    pub count: u32,
    /// The period (longer than zero).
    pub period: Duration,
    /// Sends allowed at once on an idle key (at least 1).
    pub burst: u32,
}

impl RateSpec {
    /// The time between two sends once the burst is used up: `period / count`.
    pub fn interval(&self) -> Duration {
        self.period / self.count
    }

    /// The same rate as a [`Quota`].
    pub fn quota(&self) -> Result<Quota> {
        Quota::new(self.count, self.period)?.burst(self.burst)
    }
}

impl fmt::Display for RateSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} per {:?} burst {}",
            self.count, self.period, self.burst
        )
    }
}

/// The time scale of the suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// The interval between two sends in the rates the checks configure. Under paused time
    /// any value costs nothing; in real time the suite takes about 40 intervals.
    pub interval: Duration,
    /// How late an `acquire` may complete after its earliest permitted time (scheduling,
    /// round trips to a shared backend). Must be shorter than `interval`.
    pub slack: Duration,
}

impl Default for Timing {
    /// 100 ms intervals with 50 ms slack: about 4 s in real time.
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(100),
            slack: Duration::from_millis(50),
        }
    }
}

/// Runs every check with [`Timing::default`].
pub async fn run_all(make: &dyn Fn(RateSpec) -> Arc<dyn RateLimiter>) {
    run_all_with(Timing::default(), make).await;
}

/// Runs every check with the given timing.
pub async fn run_all_with(timing: Timing, make: &dyn Fn(RateSpec) -> Arc<dyn RateLimiter>) {
    assert!(
        timing.slack < timing.interval && !timing.interval.is_zero(),
        "limiter conformance: the slack ({:?}) must be shorter than the interval ({:?})",
        timing.slack,
        timing.interval
    );
    burst_passes_without_waiting(timing, make).await;
    next_acquire_waits_one_interval(timing, make).await;
    keys_are_independent(timing, make).await;
    penalize_delays_only_that_key(timing, make).await;
    shorter_penalty_keeps_longer_one(timing, make).await;
    cancelled_acquire_consumes_nothing(timing, make).await;
    concurrent_acquirers_are_spaced(timing, make).await;
    completed_paces_from_the_response(timing, make).await;
    completed_is_per_key_and_never_brings_forward(timing, make).await;
    completed_without_acquire_counts_as_a_send(timing, make).await;
    completed_earlier_paces_from_then(timing, make).await;
}

/// A full burst passes without waiting.
pub async fn burst_passes_without_waiting(
    timing: Timing,
    make: &dyn Fn(RateSpec) -> Arc<dyn RateLimiter>,
) {
    const CHECK: &str = "burst_passes_without_waiting";
    let spec = spec(timing, 1, 4);
    let limiter = make(spec);
    let key = key("burst");
    let start = Instant::now();
    for i in 1..=spec.burst {
        acquire(CHECK, &*limiter, &key, timing.slack).await;
        let elapsed = start.elapsed();
        assert!(
            elapsed <= timing.slack,
            "[{CHECK}] with {spec}, acquire #{i} on {key:?} took {elapsed:?} \
             (allowed: {:?}); the burst should pass at once",
            timing.slack
        );
    }
}

/// Once the burst is used up, the next acquire waits one interval (and the one after it,
/// two), with a rate of several sends per period.
pub async fn next_acquire_waits_one_interval(
    timing: Timing,
    make: &dyn Fn(RateSpec) -> Arc<dyn RateLimiter>,
) {
    const CHECK: &str = "next_acquire_waits_one_interval";
    // 3 per 3 intervals = one per interval, exercising count > 1.
    let spec = RateSpec {
        count: 3,
        period: timing.interval * 3,
        burst: 2,
    };
    let limiter = make(spec);
    let key = key("next");
    let start = Instant::now();
    for _ in 0..spec.burst {
        acquire(CHECK, &*limiter, &key, timing.slack).await;
    }
    for n in 1..=2 {
        let earliest = spec.interval() * n;
        acquire(CHECK, &*limiter, &key, earliest + timing.slack).await;
        assert_between(
            CHECK,
            &format!(
                "with {spec}, acquire #{} on {key:?} (since the first)",
                spec.burst + n
            ),
            start.elapsed(),
            earliest,
            earliest + timing.slack,
        );
    }
}

/// Using up one key's burst does not delay another key (not even one with the same
/// prefix), and does not reset the first.
pub async fn keys_are_independent(timing: Timing, make: &dyn Fn(RateSpec) -> Arc<dyn RateLimiter>) {
    const CHECK: &str = "keys_are_independent";
    let spec = spec(timing, 1, 1);
    let limiter = make(spec);
    let (a, b) = (key("independent-a"), key("independent-b"));
    let start = Instant::now();
    acquire(CHECK, &*limiter, &a, timing.slack).await;
    acquire(CHECK, &*limiter, &b, timing.slack).await;
    assert_between(
        CHECK,
        &format!("with {spec}, the first acquire on {b:?} after using up {a:?}"),
        start.elapsed(),
        Duration::ZERO,
        timing.slack,
    );
    acquire(CHECK, &*limiter, &a, spec.interval() + timing.slack).await;
    assert_between(
        CHECK,
        &format!("with {spec}, the second acquire on {a:?}"),
        start.elapsed(),
        spec.interval(),
        spec.interval() + timing.slack,
    );
}

/// A penalty delays the penalized key by at least `retry_after`, and other keys not at
/// all.
pub async fn penalize_delays_only_that_key(
    timing: Timing,
    make: &dyn Fn(RateSpec) -> Arc<dyn RateLimiter>,
) {
    const CHECK: &str = "penalize_delays_only_that_key";
    let spec = spec(timing, 1, 1);
    let limiter = make(spec);
    let (penalized, other) = (key("penalized"), key("penalized-not"));
    let retry_after = timing.interval * 3;
    let start = Instant::now();
    penalize(CHECK, &*limiter, &penalized, retry_after).await;
    acquire(CHECK, &*limiter, &other, timing.slack).await;
    assert_between(
        CHECK,
        &format!("acquire on {other:?} while {penalized:?} is penalized"),
        start.elapsed(),
        Duration::ZERO,
        timing.slack,
    );
    acquire(CHECK, &*limiter, &penalized, retry_after + timing.slack).await;
    assert_between(
        CHECK,
        &format!("acquire on {penalized:?} after penalize({retry_after:?})"),
        start.elapsed(),
        retry_after,
        retry_after + timing.slack,
    );
}

/// A shorter penalty does not shorten a longer one already running.
pub async fn shorter_penalty_keeps_longer_one(
    timing: Timing,
    make: &dyn Fn(RateSpec) -> Arc<dyn RateLimiter>,
) {
    const CHECK: &str = "shorter_penalty_keeps_longer_one";
    let spec = spec(timing, 1, 1);
    let limiter = make(spec);
    let key = key("penalized-twice");
    let long = timing.interval * 5;
    let start = Instant::now();
    penalize(CHECK, &*limiter, &key, long).await;
    penalize(CHECK, &*limiter, &key, timing.interval).await;
    acquire(CHECK, &*limiter, &key, long + timing.slack).await;
    assert_between(
        CHECK,
        &format!(
            "acquire on {key:?} after penalize({long:?}) then penalize({:?})",
            timing.interval
        ),
        start.elapsed(),
        long,
        long + timing.slack,
    );
}

/// An `acquire` dropped before it completes consumes no permit: the next acquire gets the
/// slot the dropped one was waiting for.
pub async fn cancelled_acquire_consumes_nothing(
    timing: Timing,
    make: &dyn Fn(RateSpec) -> Arc<dyn RateLimiter>,
) {
    const CHECK: &str = "cancelled_acquire_consumes_nothing";
    let spec = spec(timing, 1, 1);
    let limiter = make(spec);
    let key = key("cancelled");
    let start = Instant::now();
    acquire(CHECK, &*limiter, &key, timing.slack).await;
    let cancelled = tokio::time::timeout(spec.interval() / 2, limiter.acquire(&key)).await;
    assert!(
        cancelled.is_err(),
        "[{CHECK}] with {spec}, the second acquire on {key:?} completed within half an \
         interval ({cancelled:?}); it should have waited"
    );
    acquire(CHECK, &*limiter, &key, spec.interval() + timing.slack).await;
    assert_between(
        CHECK,
        &format!(
            "with {spec}, acquire on {key:?} after a cancelled acquire (a later completion \
             means the cancelled acquire consumed a permit)"
        ),
        start.elapsed(),
        spec.interval(),
        spec.interval() + timing.slack,
    );
}

/// 20 tasks acquiring on one key at once: at no time have more than
/// `burst + elapsed / interval` of them passed, the burst passes at once, and all pass
/// within a generous bound.
pub async fn concurrent_acquirers_are_spaced(
    timing: Timing,
    make: &dyn Fn(RateSpec) -> Arc<dyn RateLimiter>,
) {
    const CHECK: &str = "concurrent_acquirers_are_spaced";
    const TASKS: u32 = 20;
    let spec = spec(timing, 1, 3);
    let interval = spec.interval();
    let limiter = make(spec);
    let key = key("concurrent");
    // Each send may be up to one slack late, and lateness can add up across the queue.
    let deadline = interval * (TASKS - spec.burst) * 3 / 2 + timing.slack * 2;
    let start = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let limiter = Arc::clone(&limiter);
            let key = key.clone();
            tokio::spawn(async move {
                acquire(CHECK, &*limiter, &key, deadline).await;
                start.elapsed()
            })
        })
        .collect();
    let mut passed = Vec::with_capacity(tasks.len());
    for task in futures::future::join_all(tasks).await {
        match task {
            Ok(elapsed) => passed.push(elapsed),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("[{CHECK}] an acquiring task failed: {e}"),
        }
    }
    passed.sort_unstable();
    for (count, elapsed) in (1_u128..).zip(&passed) {
        let allowed = u128::from(spec.burst) + elapsed.as_nanos() / interval.as_nanos();
        assert!(
            count <= allowed,
            "[{CHECK}] with {spec}, {count} of {TASKS} concurrent acquires on {key:?} had passed \
             after {elapsed:?}, but at most {allowed} may (burst + elapsed / interval); \
             completion times: {passed:?}"
        );
    }
    let burst_done = passed[spec.burst as usize - 1];
    assert!(
        burst_done <= timing.slack,
        "[{CHECK}] with {spec}, the first {} concurrent acquires on {key:?} took \
         {burst_done:?} (allowed: {:?}); the burst should pass at once; completion times: \
         {passed:?}",
        spec.burst,
        timing.slack
    );
}

/// Pacing is by arrival: a send held three intervals before its answer, then reported with
/// `completed`, delays the next acquire on its key until one interval after `completed`
/// (not one interval after its `acquire`, which has long passed).
pub async fn completed_paces_from_the_response(
    timing: Timing,
    make: &dyn Fn(RateSpec) -> Arc<dyn RateLimiter>,
) {
    const CHECK: &str = "completed_paces_from_the_response";
    let spec = spec(timing, 1, 1);
    let limiter = make(spec);
    let key = key("completed");
    acquire(CHECK, &*limiter, &key, timing.slack).await;
    tokio::time::sleep(spec.interval() * 3).await;
    completed(CHECK, &*limiter, &key).await;
    let answered = Instant::now();
    acquire(CHECK, &*limiter, &key, spec.interval() + timing.slack).await;
    assert_between(
        CHECK,
        &format!(
            "with {spec}, acquire on {key:?} after a send that ended 3 intervals after its \
             acquire (measured from its completion)"
        ),
        answered.elapsed(),
        spec.interval(),
        spec.interval() + timing.slack,
    );
}

/// `completed` touches only its key, and calling it again (or for a send whose permit
/// was already further ahead) never lets a send through earlier than without it.
pub async fn completed_is_per_key_and_never_brings_forward(
    timing: Timing,
    make: &dyn Fn(RateSpec) -> Arc<dyn RateLimiter>,
) {
    const CHECK: &str = "completed_is_per_key_and_never_brings_forward";
    let spec = spec(timing, 1, 2);
    let limiter = make(spec);
    let (a, b) = (key("completed-a"), key("completed-b"));
    let start = Instant::now();
    // The whole burst of `a`, then its sends end at once: the next permit is still one
    // interval away, as without the completions.
    for _ in 0..spec.burst {
        acquire(CHECK, &*limiter, &a, timing.slack).await;
    }
    completed(CHECK, &*limiter, &a).await;
    completed(CHECK, &*limiter, &a).await;
    acquire(CHECK, &*limiter, &b, timing.slack).await;
    assert_between(
        CHECK,
        &format!("with {spec}, the first acquire on {b:?} after completions on {a:?}"),
        start.elapsed(),
        Duration::ZERO,
        timing.slack,
    );
    acquire(CHECK, &*limiter, &a, spec.interval() + timing.slack).await;
    assert_between(
        CHECK,
        &format!(
            "with {spec}, acquire #{} on {a:?} after its burst and two completions",
            spec.burst + 1
        ),
        start.elapsed(),
        spec.interval(),
        spec.interval() + timing.slack,
    );
}

/// `completed` on a key nobody acquired (a sink learned mid-send that its destination's
/// key is another one) counts as a send that arrived then: with burst 1, the first acquire
/// on that key waits one interval.
pub async fn completed_without_acquire_counts_as_a_send(
    timing: Timing,
    make: &dyn Fn(RateSpec) -> Arc<dyn RateLimiter>,
) {
    const CHECK: &str = "completed_without_acquire_counts_as_a_send";
    let spec = spec(timing, 1, 1);
    let limiter = make(spec);
    let key = key("learned");
    let start = Instant::now();
    completed(CHECK, &*limiter, &key).await;
    acquire(CHECK, &*limiter, &key, spec.interval() + timing.slack).await;
    assert_between(
        CHECK,
        &format!("with {spec}, the first acquire on {key:?} right after completed({key:?})"),
        start.elapsed(),
        spec.interval(),
        spec.interval() + timing.slack,
    );
}

/// A send that ended before this limiter was made (a previous process's, from its
/// journal) paces the first acquire on its key from when it ended: half an interval ago
/// leaves half an interval to wait; two intervals ago leaves nothing. Other keys are not
/// touched.
pub async fn completed_earlier_paces_from_then(
    timing: Timing,
    make: &dyn Fn(RateSpec) -> Arc<dyn RateLimiter>,
) {
    const CHECK: &str = "completed_earlier_paces_from_then";
    let spec = spec(timing, 1, 1);
    let limiter = make(spec);
    let (recent, old, other) = (key("earlier-a"), key("earlier-b"), key("earlier-c"));
    let half = spec.interval() / 2;
    let start = Instant::now();
    completed_earlier(CHECK, &*limiter, &recent, half).await;
    completed_earlier(CHECK, &*limiter, &old, spec.interval() * 2).await;
    acquire(CHECK, &*limiter, &other, timing.slack).await;
    acquire(CHECK, &*limiter, &old, timing.slack).await;
    assert_between(
        CHECK,
        &format!(
            "with {spec}, the first acquires on {other:?} (untouched) and on {old:?} (its \
             last send ended two intervals ago)"
        ),
        start.elapsed(),
        Duration::ZERO,
        timing.slack,
    );
    acquire(CHECK, &*limiter, &recent, half + timing.slack).await;
    assert_between(
        CHECK,
        &format!(
            "with {spec}, the first acquire on {recent:?}, whose last send ended half an \
             interval before the limiter heard of it"
        ),
        start.elapsed(),
        half,
        half + timing.slack,
    );
}

fn spec(timing: Timing, count: u32, burst: u32) -> RateSpec {
    RateSpec {
        count,
        period: timing.interval * count,
        burst,
    }
}

fn key(name: &str) -> String {
    format!("{PREFIX}{name}")
}

/// Acquires, panicking on an error or when the acquire takes longer than twice `expected`
/// plus a second (so a limiter that never answers fails clearly instead of hanging).
async fn acquire(check: &str, limiter: &dyn RateLimiter, key: &str, expected: Duration) {
    let limit = expected * 2 + Duration::from_secs(1);
    let outcome = within(limit, limiter.acquire(key)).await;
    match outcome {
        Some(Ok(())) => {}
        Some(Err(e)) => panic!("[{check}] acquire({key:?}) failed: {e}"),
        None => panic!("[{check}] acquire({key:?}) did not complete within {limit:?}"),
    }
}

async fn penalize(check: &str, limiter: &dyn RateLimiter, key: &str, retry_after: Duration) {
    let what = format!("penalize({key:?}, {retry_after:?})");
    answered(check, &what, limiter.penalize(key, retry_after)).await;
}

async fn completed(check: &str, limiter: &dyn RateLimiter, key: &str) {
    answered(
        check,
        &format!("completed({key:?})"),
        limiter.completed(key),
    )
    .await;
}

async fn completed_earlier(check: &str, limiter: &dyn RateLimiter, key: &str, ago: Duration) {
    let what = format!("completed_earlier({key:?}, {ago:?})");
    answered(check, &what, limiter.completed_earlier(key, ago)).await;
}

/// Awaits a call that must answer `Ok` at once (within 5 s), panicking otherwise.
async fn answered(check: &str, what: &str, call: impl Future<Output = Result<()>>) {
    let limit = Duration::from_secs(5);
    match within(limit, call).await {
        Some(Ok(())) => {}
        Some(Err(e)) => panic!("[{check}] {what} failed: {e}"),
        None => panic!("[{check}] {what} did not complete within {limit:?}"),
    }
}

async fn within<T>(limit: Duration, f: impl Future<Output = T>) -> Option<T> {
    tokio::time::timeout(limit, f).await.ok()
}

fn assert_between(check: &str, what: &str, elapsed: Duration, min: Duration, max: Duration) {
    assert!(
        elapsed >= min,
        "[{check}] {what} completed after {elapsed:?}, earlier than permitted ({min:?})"
    );
    assert!(
        elapsed <= max,
        "[{check}] {what} completed after {elapsed:?}, later than expected (at most {max:?})"
    );
}

#[cfg(test)]
mod tests {
    //! The suite must catch broken limiters; the correct one is run in `limiter`'s tests.

    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;
    use crate::limiter::{GcraLimiter, NoLimit};

    /// One bucket for all keys that reserves its slot before sleeping (so a cancelled
    /// acquire still uses it up), no burst, and penalties that overwrite each other.
    #[derive(Debug)]
    struct Naive {
        interval: Duration,
        next: Mutex<Option<Instant>>,
        penalties: Mutex<HashMap<String, Instant>>,
    }

    #[async_trait::async_trait]
    impl RateLimiter for Naive {
        async fn acquire(&self, key: &str) -> Result<()> {
            let penalty = self.penalties.lock().expect("lock").get(key).copied();
            if let Some(until) = penalty {
                tokio::time::sleep_until(until).await;
            }
            let slot = {
                let mut next = self.next.lock().expect("lock");
                let slot = next.unwrap_or_else(Instant::now).max(Instant::now());
                *next = Some(slot + self.interval);
                slot
            };
            tokio::time::sleep_until(slot).await;
            Ok(())
        }

        async fn penalize(&self, key: &str, retry_after: Duration) -> Result<()> {
            let until = Instant::now() + retry_after;
            self.penalties
                .lock()
                .expect("lock")
                .insert(key.to_owned(), until);
            Ok(())
        }
    }

    fn naive(spec: RateSpec) -> Arc<dyn RateLimiter> {
        Arc::new(Naive {
            interval: spec.interval(),
            next: Mutex::new(None),
            penalties: Mutex::new(HashMap::new()),
        })
    }

    fn no_limit(_: RateSpec) -> Arc<dyn RateLimiter> {
        Arc::new(NoLimit)
    }

    /// A correct limiter, but with one more burst than asked for.
    fn extra_burst(spec: RateSpec) -> Arc<dyn RateLimiter> {
        let spec = RateSpec {
            burst: spec.burst + 1,
            ..spec
        };
        Arc::new(
            GcraLimiter::builder()
                .prefix(PREFIX, spec.quota().expect("spec"))
                .build(),
        )
    }

    /// A correct limiter that ignores penalties.
    #[derive(Debug)]
    struct Deaf(GcraLimiter);

    #[async_trait::async_trait]
    impl RateLimiter for Deaf {
        async fn acquire(&self, key: &str) -> Result<()> {
            self.0.acquire(key).await
        }

        async fn penalize(&self, _key: &str, _retry_after: Duration) -> Result<()> {
            Ok(())
        }
    }

    fn deaf(spec: RateSpec) -> Arc<dyn RateLimiter> {
        Arc::new(Deaf(
            GcraLimiter::builder()
                .prefix(PREFIX, spec.quota().expect("spec"))
                .build(),
        ))
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "[next_acquire_waits_one_interval]")]
    async fn catches_no_limit() {
        next_acquire_waits_one_interval(Timing::default(), &no_limit).await;
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "the burst should pass at once")]
    async fn catches_a_missing_burst() {
        burst_passes_without_waiting(Timing::default(), &naive).await;
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "[keys_are_independent]")]
    async fn catches_shared_buckets() {
        keys_are_independent(Timing::default(), &naive).await;
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "the cancelled acquire consumed a permit")]
    async fn catches_cancelled_acquires_that_consume() {
        cancelled_acquire_consumes_nothing(Timing::default(), &naive).await;
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "earlier than permitted")]
    async fn catches_shortened_penalties() {
        shorter_penalty_keeps_longer_one(Timing::default(), &naive).await;
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "[penalize_delays_only_that_key]")]
    async fn catches_ignored_penalties() {
        penalize_delays_only_that_key(Timing::default(), &deaf).await;
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "(burst + elapsed / interval)")]
    async fn catches_too_many_concurrent_passes() {
        concurrent_acquirers_are_spaced(Timing::default(), &extra_burst).await;
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "earlier than permitted")]
    async fn catches_pacing_by_request_start() {
        // `Deaf` keeps the trait's default `completed`, which does nothing.
        completed_paces_from_the_response(Timing::default(), &deaf).await;
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "[completed_without_acquire_counts_as_a_send]")]
    async fn catches_completions_that_do_not_count() {
        completed_without_acquire_counts_as_a_send(Timing::default(), &deaf).await;
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "[completed_earlier_paces_from_then]")]
    async fn catches_limiters_that_forget_the_previous_process() {
        // `Deaf` keeps the trait's default `completed_earlier`, which does nothing.
        completed_earlier_paces_from_then(Timing::default(), &deaf).await;
    }

    /// One GCRA per key, replaced by a fresh one on completion: the burst comes back.
    #[derive(Debug)]
    struct Forgetful(Mutex<HashMap<String, Arc<GcraLimiter>>>, RateSpec);

    impl Forgetful {
        fn fresh(&self) -> Arc<GcraLimiter> {
            Arc::new(
                GcraLimiter::builder()
                    .prefix(PREFIX, self.1.quota().expect("spec"))
                    .build(),
            )
        }

        fn of(&self, key: &str) -> Arc<GcraLimiter> {
            let mut map = self.0.lock().expect("lock");
            Arc::clone(map.entry(key.to_owned()).or_insert_with(|| self.fresh()))
        }
    }

    #[async_trait::async_trait]
    impl RateLimiter for Forgetful {
        async fn acquire(&self, key: &str) -> Result<()> {
            self.of(key).acquire(key).await
        }

        async fn penalize(&self, key: &str, retry_after: Duration) -> Result<()> {
            self.of(key).penalize(key, retry_after).await
        }

        async fn completed(&self, key: &str) -> Result<()> {
            let fresh = self.fresh();
            fresh.completed(key).await?;
            self.0.lock().expect("lock").insert(key.to_owned(), fresh);
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "[completed_is_per_key_and_never_brings_forward]")]
    async fn catches_completions_that_bring_permits_forward() {
        completed_is_per_key_and_never_brings_forward(Timing::default(), &|spec| {
            Arc::new(Forgetful(Mutex::new(HashMap::new()), spec)) as Arc<dyn RateLimiter>
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "must be shorter than the interval")]
    async fn rejects_slack_longer_than_the_interval() {
        let timing = Timing {
            interval: Duration::from_millis(10),
            slack: Duration::from_millis(10),
        };
        run_all_with(timing, &no_limit).await;
    }

    #[test]
    fn rate_spec_helpers() {
        let spec = RateSpec {
            count: 3,
            period: Duration::from_secs(3),
            burst: 2,
        };
        assert_eq!(spec.interval(), Duration::from_secs(1));
        let quota = spec.quota().expect("valid");
        assert_eq!((quota.count(), quota.burst_size()), (3, 2));
        assert_eq!(spec.to_string(), "3 per 3s burst 2");
        assert!(RateSpec { burst: 0, ..spec }.quota().is_err());
    }
}
