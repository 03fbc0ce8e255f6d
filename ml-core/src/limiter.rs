//! Rate limiting and concurrency caps.
//!
//! - [`RateLimiter`] is the trait the pipeline calls before every send (`acquire`) and after
//!   every 429 (`penalize`). Hosts hold an `Arc<dyn RateLimiter>`.
//! - [`GcraLimiter`] is the in-process implementation: a keyed GCRA (built on `governor`)
//!   with one [`Quota`] per key prefix, plus per-key penalties.
//! - [`NoLimit`] permits everything; it is what benches use for "limiter off".
//! - [`ConcurrencyLimiter`] caps in-flight calls per key (SAP allows 10–50 parallel RFC
//!   calls). It hands out [`ConcurrencyPermit`]s and is not a [`RateLimiter`].
//!
//! A shared (Redis-backed) limiter for multi-replica hosts implements the same trait and
//! passes the same conformance suite (`limiter_conformance`).
//!
//! ```
//! # async fn demo() -> ml_core::error::Result<()> {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use ml_core::limiter::{GcraLimiter, Quota, RateLimiter};
//!
//! let limiter: Arc<dyn RateLimiter> = Arc::new(
//!     GcraLimiter::builder()
//!         .prefix("slack:", Quota::per_second(1)?.burst(1)?)
//!         .prefix("twilio:", Quota::per_second(10)?)
//!         .build(),
//! );
//! limiter.acquire("slack:C123").await?; // the first send on a channel passes at once
//! // ... Slack answered 429 with `Retry-After: 30`:
//! limiter.penalize("slack:C123", Duration::from_secs(30)).await?;
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use governor::state::keyed::DashMapStateStore;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::error::{Error, Result};

/// Decides when a send on a key may happen.
///
/// Keys name one destination or source system, e.g. `slack:C123` (one Slack channel) or
/// `sap:PRD-100` (one SAP system and client). Which quota applies to a key is the
/// implementation's configuration (see [`GcraLimiter`]'s prefixes).
///
/// # Contract
///
/// - [`acquire`](Self::acquire) returns `Ok(())` once one send on `key` is permitted, and
///   each `Ok` consumes exactly one permit. It first waits out any penalty on `key`, then
///   the key's quota. Keys are independent: waiting on one key never delays another.
/// - [`penalize`](Self::penalize) tells the limiter that the server refused a send on `key`
///   (HTTP 429, Slack `ratelimited`, Twilio 20429): no `acquire` on that exact key returns
///   until `retry_after` has passed, including acquirers that are already waiting (and, for
///   a shared backend, acquirers in every replica). A penalty never shortens an existing,
///   longer one; a zero `retry_after` does nothing. It consumes no permit and does not
///   touch other keys, not even keys with the same prefix.
/// - Time is what `tokio::time::Instant` measures. The in-process limiter runs on tokio's
///   clock, so it works under `tokio::time::pause()`; a shared backend decides by its
///   server's clock, which runs at the same rate.
/// - There is no fairness guarantee between concurrent waiters on one key: permits go out
///   at the configured rate, not necessarily in arrival order.
///
/// # Cancellation
///
/// `acquire` is cancellation safe: dropping its future before it completes consumes no
/// permit and leaves nothing behind, so it can be raced against a shutdown signal or
/// wrapped in a timeout. A dropped `penalize` future may or may not have recorded the
/// penalty.
///
/// # Errors
///
/// An error means the limiter could not decide (for example, the shared backend is
/// unreachable); its [`class`](crate::error::Error::class) says whether to retry. The
/// in-process implementations never fail.
#[async_trait::async_trait]
pub trait RateLimiter: Send + Sync + fmt::Debug {
    /// Waits until one send on `key` is permitted (keys look like `slack:C123`,
    /// `sap:PRD-100`).
    async fn acquire(&self, key: &str) -> Result<()>;

    /// The server answered 429 (or an equivalent) for `key`: nobody may acquire on `key`
    /// until `retry_after` has passed.
    async fn penalize(&self, key: &str, retry_after: Duration) -> Result<()>;
}

// ---------------------------------------------------------------------------------------
// Quota
// ---------------------------------------------------------------------------------------

/// A rate: `count` sends per `period`, with up to `burst` sends at once.
///
/// Permits are replenished one at a time, every `period / count` (the
/// [replenish interval](Self::replenish_interval)); a key that has been idle long enough
/// holds `burst` permits. The burst defaults to `count` (as in `governor`), so
/// `Quota::per_minute(30)` lets 30 sends through at once and then one every 2 s; use
/// [`burst`](Self::burst) for a smoother rate (`Quota::per_minute(30)?.burst(1)?` sends one
/// every 2 s from the start).
///
/// Every constructor validates its input and fails with [`Error::Config`] on a zero count,
/// period or burst, or on a rate faster than one send per nanosecond.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    count: NonZeroU32,
    period: Duration,
    inner: governor::Quota,
}

impl Quota {
    /// `count` sends per second, burst `count`.
    pub fn per_second(count: u32) -> Result<Self> {
        Self::make("Quota::per_second", count, Duration::from_secs(1))
    }

    /// `count` sends per minute, burst `count`.
    pub fn per_minute(count: u32) -> Result<Self> {
        Self::make("Quota::per_minute", count, Duration::from_secs(60))
    }

    /// `count` sends per hour, burst `count`.
    pub fn per_hour(count: u32) -> Result<Self> {
        Self::make("Quota::per_hour", count, Duration::from_secs(3600))
    }

    /// `count` sends per `period`, burst `count`.
    pub fn new(count: u32, period: Duration) -> Result<Self> {
        Self::make("Quota::new", count, period)
    }

    /// One send per `interval`, burst 1.
    pub fn with_period(interval: Duration) -> Result<Self> {
        Self::make("Quota::with_period", 1, interval)
    }

    /// The same rate with up to `burst` sends at once.
    pub fn burst(self, burst: u32) -> Result<Self> {
        let burst = NonZeroU32::new(burst)
            .ok_or_else(|| Error::config("Quota::burst", "the burst must be at least 1"))?;
        Ok(Self {
            inner: self.inner.allow_burst(burst),
            ..self
        })
    }

    fn make(key: &str, count: u32, period: Duration) -> Result<Self> {
        let count = NonZeroU32::new(count)
            .ok_or_else(|| Error::config(key, "the count per period must be at least 1"))?;
        if period.is_zero() {
            return Err(Error::config(key, "the period must be longer than zero"));
        }
        let inner = governor::Quota::with_period(period / count.get())
            .ok_or_else(|| {
                Error::config(
                    key,
                    format!(
                        "{count} per {period:?} is faster than one per nanosecond, \
                         which cannot be measured"
                    ),
                )
            })?
            .allow_burst(count);
        Ok(Self {
            count,
            period,
            inner,
        })
    }

    /// Sends per [`period`](Self::period).
    pub fn count(&self) -> u32 {
        self.count.get()
    }

    /// The period [`count`](Self::count) refers to.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// How many sends may pass at once on an idle key.
    pub fn burst_size(&self) -> u32 {
        self.inner.burst_size().get()
    }

    /// The time to replenish one permit: `period / count`, truncated to whole nanoseconds.
    pub fn replenish_interval(&self) -> Duration {
        self.inner.replenish_interval()
    }
}

impl fmt::Display for Quota {
    /// `1/s burst 1`, `30/min burst 30`, `3 per 250ms burst 1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.period.as_secs(), self.period.subsec_nanos()) {
            (1, 0) => write!(f, "{}/s", self.count)?,
            (60, 0) => write!(f, "{}/min", self.count)?,
            (3600, 0) => write!(f, "{}/h", self.count)?,
            _ => write!(f, "{} per {:?}", self.count, self.period)?,
        }
        write!(f, " burst {}", self.burst_size())
    }
}

#[expect(
    clippy::missing_fields_in_debug,
    reason = "the governor quota is shown as the burst; its interval follows from the rest"
)]
impl fmt::Debug for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Quota")
            .field("count", &self.count)
            .field("period", &self.period)
            .field("burst", &self.burst_size())
            .finish()
    }
}

// ---------------------------------------------------------------------------------------
// GcraLimiter
// ---------------------------------------------------------------------------------------

/// A `governor` clock that reads tokio's clock.
///
/// `governor`'s own clocks (`MonotonicClock`, `QuantaClock`) read the OS clock, and its
/// `until_key_ready` sleeps on a `futures-timer` timer thread, outside tokio. Under
/// `tokio::time::pause()` both keep following real time while tokio's clock stands still
/// or jumps, so a test would wait real seconds (or see no time pass after an `advance`).
/// Deriving `now()` from `tokio::time::Instant` (the OS clock in production, virtual time
/// under `pause()`) and sleeping with `tokio::time::sleep_until` keeps the limiter on the
/// same clock as the rest of the pipeline.
#[derive(Clone, Copy, Debug, Default)]
struct TokioTime;

impl governor::clock::Clock for TokioTime {
    // governor implements `Reference` for `std::time::Instant` (re-exported through
    // `web-time`), not for tokio's `Instant`; `into_std` converts losslessly.
    type Instant = std::time::Instant;

    fn now(&self) -> Self::Instant {
        Instant::now().into_std()
    }
}

/// One keyed GCRA per configured prefix (a governor limiter has a single quota).
type KeyedGcra = governor::RateLimiter<
    String,
    DashMapStateStore<String>,
    TokioTime,
    governor::middleware::NoOpMiddleware<std::time::Instant>,
>;

/// The longest penalty honoured (a server asking for more is treated as asking for this):
/// about 30 years, like tokio's own "far future".
const MAX_PENALTY: Duration = Duration::from_secs(86_400 * 365 * 30);

struct Bucket {
    prefix: String,
    quota: Quota,
    gcra: KeyedGcra,
}

/// The in-process [`RateLimiter`]: a keyed GCRA (generic cell rate algorithm, via
/// `governor`) with one [`Quota`] per key prefix, plus per-key penalties.
///
/// - **Quotas.** Each key gets the quota of the longest configured prefix it starts with;
///   the default quota (prefix `""`) applies to keys that match no other prefix, and keys
///   that match nothing at all are not rate limited (penalties still apply to them). Every
///   key has its own GCRA state: `slack:C1` and `slack:C2` each get 1/s under
///   `.prefix("slack:", Quota::per_second(1)?)`.
/// - **Penalties.** [`penalize`](RateLimiter::penalize) records a per-key "blocked until"
///   instant (the later of the existing one and now + `retry_after`); `acquire` waits that
///   out first, then the GCRA.
/// - **Time.** Everything runs on tokio's clock ([`tokio::time::Instant`] and
///   [`tokio::time::sleep_until`]), so the limiter works unchanged under
///   `tokio::time::pause()`; it never uses governor's `until_key_ready`, which sleeps on a
///   wall-clock timer outside tokio.
/// - **Memory.** The GCRA store keeps one small entry per key ever acquired. Hosts with an
///   open-ended key space (one key per Slack channel, per phone number) should call
///   [`retain_recent`](Self::retain_recent) periodically, e.g. every few minutes; it drops
///   entries indistinguishable from a fresh key, so it never changes a decision. Expired
///   penalties are removed as keys are acquired, and by `retain_recent`.
///
/// Use [`GcraLimiter::builder`] to configure it. `Display` and `Debug` list the quotas.
pub struct GcraLimiter {
    /// Sorted by prefix length, longest first, so the first match is the longest.
    buckets: Vec<Bucket>,
    penalties: Mutex<HashMap<String, Instant>>,
}

/// Configures a [`GcraLimiter`].
#[derive(Clone, Debug, Default)]
pub struct GcraLimiterBuilder {
    quotas: Vec<(String, Quota)>,
}

impl GcraLimiterBuilder {
    /// The quota of keys that match no prefix (the same as `.prefix("", quota)`). Without
    /// one, such keys are not rate limited.
    pub fn default_quota(self, quota: Quota) -> Self {
        self.prefix("", quota)
    }

    /// The quota of keys starting with `prefix` (e.g. `"slack:"`); the longest matching
    /// prefix wins. Setting a prefix again replaces its quota.
    pub fn prefix(mut self, prefix: impl Into<String>, quota: Quota) -> Self {
        let prefix = prefix.into();
        self.quotas.retain(|(p, _)| *p != prefix);
        self.quotas.push((prefix, quota));
        self
    }

    /// The limiter.
    pub fn build(self) -> GcraLimiter {
        let mut buckets: Vec<Bucket> = self
            .quotas
            .into_iter()
            .map(|(prefix, quota)| Bucket {
                prefix,
                quota,
                gcra: governor::RateLimiter::dashmap_with_clock(quota.inner, TokioTime),
            })
            .collect();
        buckets.sort_by_key(|b| std::cmp::Reverse(b.prefix.len()));
        GcraLimiter {
            buckets,
            penalties: Mutex::new(HashMap::new()),
        }
    }
}

impl GcraLimiter {
    /// A builder with no quotas (every key unlimited until configured).
    pub fn builder() -> GcraLimiterBuilder {
        GcraLimiterBuilder::default()
    }

    /// The quota that applies to `key`, or `None` when it is not rate limited.
    pub fn quota_for(&self, key: &str) -> Option<Quota> {
        self.bucket_for(key).map(|b| b.quota)
    }

    /// Drops per-key state that no longer affects any decision: GCRA entries of keys whose
    /// permits have been replenished, and expired penalties; then releases spare capacity.
    /// Call it periodically when keys are open-ended.
    pub fn retain_recent(&self) {
        for bucket in &self.buckets {
            bucket.gcra.retain_recent();
            bucket.gcra.shrink_to_fit();
        }
        let now = Instant::now();
        let mut penalties = self.penalties();
        penalties.retain(|_, until| *until > now);
        penalties.shrink_to_fit();
    }

    /// The number of per-key entries held (GCRA states plus penalties, which may not have
    /// expired yet), for metrics and for deciding when to call
    /// [`retain_recent`](Self::retain_recent).
    pub fn tracked_keys(&self) -> usize {
        self.buckets.iter().map(|b| b.gcra.len()).sum::<usize>() + self.penalties().len()
    }

    fn bucket_for(&self, key: &str) -> Option<&Bucket> {
        self.buckets.iter().find(|b| key.starts_with(&b.prefix))
    }

    fn penalties(&self) -> MutexGuard<'_, HashMap<String, Instant>> {
        self.penalties
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The end of the penalty on `key`, if one is running; forgets an expired one.
    fn penalty_until(&self, key: &str) -> Option<Instant> {
        let mut penalties = self.penalties();
        let until = *penalties.get(key)?;
        if until > Instant::now() {
            Some(until)
        } else {
            penalties.remove(key);
            None
        }
    }
}

#[async_trait::async_trait]
impl RateLimiter for GcraLimiter {
    async fn acquire(&self, key: &str) -> Result<()> {
        let bucket = self.bucket_for(key);
        // governor's keyed store looks keys up by `&String`, so allocate once per call.
        let owned = bucket.map(|_| key.to_owned());
        loop {
            // Penalties first, then the GCRA; re-checked after every sleep, because a
            // penalty may arrive while this task waits for its GCRA slot.
            if let Some(until) = self.penalty_until(key) {
                tokio::time::sleep_until(until).await;
                continue;
            }
            let (Some(bucket), Some(owned)) = (bucket, owned.as_ref()) else {
                return Ok(());
            };
            // `check_key` consumes a permit only when it says yes, and we return right
            // after, with no await in between: that is what makes `acquire` cancel safe.
            match bucket.gcra.check_key(owned) {
                Ok(()) => return Ok(()),
                Err(not_until) => {
                    let at = Instant::from_std(not_until.earliest_possible());
                    tokio::time::sleep_until(at).await;
                }
            }
        }
    }

    /// Never fails. `retry_after` is capped at about 30 years.
    async fn penalize(&self, key: &str, retry_after: Duration) -> Result<()> {
        if retry_after.is_zero() {
            return Ok(());
        }
        let now = Instant::now();
        let Some(until) = now.checked_add(retry_after.min(MAX_PENALTY)) else {
            return Ok(());
        };
        let mut penalties = self.penalties();
        match penalties.get_mut(key) {
            Some(existing) => *existing = (*existing).max(until),
            None => {
                penalties.insert(key.to_owned(), until);
            }
        }
        Ok(())
    }
}

impl fmt::Display for GcraLimiter {
    /// `GCRA limiter: "slack:" 1/s burst 1, other keys unlimited`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GCRA limiter: ")?;
        let mut default = None;
        for bucket in &self.buckets {
            if bucket.prefix.is_empty() {
                default = Some(bucket.quota);
            } else {
                write!(f, "{:?} {}, ", bucket.prefix, bucket.quota)?;
            }
        }
        let which = if self.buckets.iter().any(|b| !b.prefix.is_empty()) {
            "other"
        } else {
            "all"
        };
        match default {
            Some(quota) => write!(f, "{which} keys {quota}"),
            None => write!(f, "{which} keys unlimited"),
        }
    }
}

#[expect(
    clippy::missing_fields_in_debug,
    reason = "per-key state is summarised as a count"
)]
impl fmt::Debug for GcraLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let quotas = self
            .buckets
            .iter()
            .map(|b| (&b.prefix, b.quota.to_string()));
        f.debug_struct("GcraLimiter")
            .field("quotas", &DebugMap(quotas))
            .field("tracked_keys", &self.tracked_keys())
            .finish()
    }
}

// ---------------------------------------------------------------------------------------
// NoLimit
// ---------------------------------------------------------------------------------------

/// A [`RateLimiter`] that permits every send immediately: "limiter off" (benches, tests,
/// sinks that need no pacing).
///
/// [`penalize`](RateLimiter::penalize) is a no-op: a 429 is then only handled by the
/// caller's retry backoff, which honours the server's `Retry-After`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoLimit;

#[async_trait::async_trait]
impl RateLimiter for NoLimit {
    /// Returns `Ok(())` at once.
    async fn acquire(&self, _key: &str) -> Result<()> {
        Ok(())
    }

    /// Does nothing.
    async fn penalize(&self, _key: &str, _retry_after: Duration) -> Result<()> {
        Ok(())
    }
}

impl fmt::Display for NoLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no limit")
    }
}

// ---------------------------------------------------------------------------------------
// ConcurrencyLimiter
// ---------------------------------------------------------------------------------------

/// Caps the number of calls in flight per key, e.g. parallel RFC calls per SAP system
/// (`sap:PRD-100`).
///
/// Each key gets the maximum of the longest configured prefix it starts with (the default
/// maximum, prefix `""`, covers keys that match no other prefix); keys that match nothing
/// are not capped. Every key has its own cap: `sap:PRD-100` and `sap:QAS-200` each get 10
/// under `.prefix("sap:", 10)`.
///
/// [`acquire`](Self::acquire) waits for a free slot (first come, first served, via a
/// [`tokio::sync::Semaphore`] per key, created on first use) and returns a
/// [`ConcurrencyPermit`] that frees the slot when dropped. It is cancellation safe: a
/// dropped `acquire` future takes no slot.
///
/// Semaphores are kept per key; with an open-ended key space call
/// [`retain_active`](Self::retain_active) now and then.
pub struct ConcurrencyLimiter {
    /// Sorted by prefix length, longest first.
    limits: Vec<(String, usize)>,
    semaphores: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// Configures a [`ConcurrencyLimiter`].
#[derive(Clone, Debug, Default)]
pub struct ConcurrencyLimiterBuilder {
    limits: Vec<(String, usize)>,
}

impl ConcurrencyLimiterBuilder {
    /// The cap of keys that match no prefix (the same as `.prefix("", max)`). Without one,
    /// such keys are not capped.
    pub fn default_max(self, max: usize) -> Self {
        self.prefix("", max)
    }

    /// The cap of keys starting with `prefix` (e.g. `"sap:"`); the longest matching prefix
    /// wins. Setting a prefix again replaces its cap.
    pub fn prefix(mut self, prefix: impl Into<String>, max: usize) -> Self {
        let prefix = prefix.into();
        self.limits.retain(|(p, _)| *p != prefix);
        self.limits.push((prefix, max));
        self
    }

    /// The limiter. Fails with [`Error::Config`] when a cap is zero or above
    /// [`Semaphore::MAX_PERMITS`].
    pub fn build(self) -> Result<ConcurrencyLimiter> {
        let mut limits = self.limits;
        for (prefix, max) in &limits {
            if *max == 0 || *max > Semaphore::MAX_PERMITS {
                return Err(Error::config(
                    format!("ConcurrencyLimiter::prefix({prefix:?})"),
                    format!(
                        "the maximum of calls in flight must be between 1 and {}, not {max}",
                        Semaphore::MAX_PERMITS
                    ),
                ));
            }
        }
        limits.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        Ok(ConcurrencyLimiter {
            limits,
            semaphores: Mutex::new(HashMap::new()),
        })
    }
}

impl ConcurrencyLimiter {
    /// A builder with no caps.
    pub fn builder() -> ConcurrencyLimiterBuilder {
        ConcurrencyLimiterBuilder::default()
    }

    /// The cap that applies to `key`, or `None` when it is not capped.
    pub fn max_for(&self, key: &str) -> Option<usize> {
        self.limits
            .iter()
            .find(|(prefix, _)| key.starts_with(prefix.as_str()))
            .map(|(_, max)| *max)
    }

    /// Waits until a call on `key` may start; the call counts as in flight until the
    /// returned permit is dropped.
    pub async fn acquire(&self, key: &str) -> ConcurrencyPermit {
        let Some(semaphore) = self.semaphore(key) else {
            return ConcurrencyPermit { _permit: None };
        };
        let permit = semaphore
            .acquire_owned()
            .await
            .expect("the limiter never closes its semaphores");
        ConcurrencyPermit {
            _permit: Some(permit),
        }
    }

    /// A permit for `key` if a slot is free right now.
    pub fn try_acquire(&self, key: &str) -> Option<ConcurrencyPermit> {
        let Some(semaphore) = self.semaphore(key) else {
            return Some(ConcurrencyPermit { _permit: None });
        };
        let permit = semaphore.try_acquire_owned().ok()?;
        Some(ConcurrencyPermit {
            _permit: Some(permit),
        })
    }

    /// How many permits for `key` are held right now (0 for uncapped keys).
    pub fn in_flight(&self, key: &str) -> usize {
        let Some(max) = self.max_for(key) else {
            return 0;
        };
        self.lock()
            .get(key)
            .map_or(0, |s| max - s.available_permits())
    }

    /// Forgets the semaphores of keys with nothing in flight and nobody waiting (they are
    /// recreated on the next `acquire`).
    pub fn retain_active(&self) {
        let mut semaphores = self.lock();
        // A permit or a waiter holds a clone of the Arc; clones are only made under this
        // lock, so a count of 1 means the key is idle and stays so while we hold it.
        semaphores.retain(|_, s| Arc::strong_count(s) > 1);
        semaphores.shrink_to_fit();
    }

    fn semaphore(&self, key: &str) -> Option<Arc<Semaphore>> {
        let max = self.max_for(key)?;
        let mut semaphores = self.lock();
        if let Some(s) = semaphores.get(key) {
            return Some(Arc::clone(s));
        }
        let s = Arc::new(Semaphore::new(max));
        semaphores.insert(key.to_owned(), Arc::clone(&s));
        Some(s)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<Semaphore>>> {
        self.semaphores
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Display for ConcurrencyLimiter {
    /// `concurrency limiter: "sap:" 10 in flight, other keys uncapped`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("concurrency limiter: ")?;
        let mut default = None;
        for (prefix, max) in &self.limits {
            if prefix.is_empty() {
                default = Some(*max);
            } else {
                write!(f, "{prefix:?} {max} in flight, ")?;
            }
        }
        let which = if self.limits.iter().any(|(prefix, _)| !prefix.is_empty()) {
            "other"
        } else {
            "all"
        };
        match default {
            Some(max) => write!(f, "{which} keys {max} in flight"),
            None => write!(f, "{which} keys uncapped"),
        }
    }
}

#[expect(
    clippy::missing_fields_in_debug,
    reason = "per-key semaphores are summarised as a count"
)]
impl fmt::Debug for ConcurrencyLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let limits = self.limits.iter().map(|(p, m)| (p, m));
        f.debug_struct("ConcurrencyLimiter")
            .field("limits", &DebugMap(limits))
            .field("keys", &self.lock().len())
            .finish()
    }
}

/// Formats `(key, value)` pairs as a `Debug` map, keeping their order.
struct DebugMap<I>(I);

impl<I, K, V> fmt::Debug for DebugMap<I>
where
    I: Iterator<Item = (K, V)> + Clone,
    K: fmt::Debug,
    V: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.clone()).finish()
    }
}

/// A slot of a [`ConcurrencyLimiter`], held for the duration of one call and released on
/// drop.
#[must_use = "the slot is released as soon as the permit is dropped"]
#[derive(Debug)]
pub struct ConcurrencyPermit {
    /// `None` for keys without a cap.
    _permit: Option<OwnedSemaphorePermit>,
}

#[cfg(test)]
mod tests {
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
        let timed_out =
            tokio::time::timeout(Duration::from_secs(1), limiter.acquire("sap:X")).await;
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
}
