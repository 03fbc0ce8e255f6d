//! Rate limiting and concurrency caps.
//!
//! - [`RateLimiter`] is the trait the pipeline calls before every send (`acquire`), when the
//!   send has ended (`completed`) and after every 429 (`penalize`). Hosts hold an
//!   `Arc<dyn RateLimiter>`.
//! - [`GcraLimiter`] is the in-process implementation: a keyed GCRA with one [`Quota`] per
//!   key prefix, plus per-key penalties.
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
//! // ... the post is sent; when its answer (or its timeout) is in:
//! limiter.completed("slack:C123").await?; // the next post waits 1 s from here
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

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
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
/// **Pacing is what the server sees: arrivals.** A server limits requests by the time they
/// reach it, and a request reaches it somewhere between the moment the client started it
/// and the moment the answer came back (a request held three seconds in the network
/// arrives three seconds after it started). So a send counts at its *end*: the caller
/// reports it with [`completed`](Self::completed), and the next send on the key is
/// permitted one interval after that, not one interval after the previous `acquire`.
///
/// - [`acquire`](Self::acquire) returns `Ok(())` once one send on `key` is permitted, and
///   each `Ok` consumes exactly one permit. It first waits out any penalty on `key`, then
///   the key's quota. Keys are independent: waiting on one key never delays another.
/// - [`completed`](Self::completed) tells the limiter that a send on `key` has ended (an
///   answer of any kind, a timeout, a dropped connection, a panic): from then on the key's
///   permits are counted as if that send had happened at this instant. With a quota of one
///   send per interval and burst 1, the next `acquire` on `key` returns no earlier than
///   one interval after `completed`; with a burst of `b`, no earlier than `(b - 1)`
///   intervals before that (the burst allowance is measured from the completion too). It
///   never makes a permit come earlier than it would have without the call, consumes no
///   permit of its own, and touches no other key. Calling it for a key that no `acquire`
///   preceded (a sink that learned, during a send, that the destination's key is another
///   one) counts as a send on that key that arrived now, so the budget carries over.
///   It does not recall permits already handed out: two sends on one key that overlap
///   (two destinations naming one channel, each with a send in flight) are spaced by the
///   quota at their starts only. Where every arrival must be spaced, keep one send per key
///   in flight: the pipeline keeps one per destination, and [`GcraLimiter`] does it per key
///   with [`Quota::in_flight`].
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
/// wrapped in a timeout. A dropped `penalize` or `completed` future may or may not have
/// recorded its call.
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

    /// A send on `key` has ended (answered, failed, timed out): the key's next permit is
    /// measured from now. See the contract above.
    ///
    /// The default does nothing, which is right only for limiters that do not pace (such
    /// as [`NoLimit`]); every pacing limiter must implement it to pass the conformance
    /// suite.
    async fn completed(&self, key: &str) -> Result<()> {
        let _ = key;
        Ok(())
    }

    /// A send on `key` ended `ago` before now, out of this limiter's sight: a previous
    /// process's last send, read from the journal at start. The next `acquire` on `key`
    /// returns no earlier than it would had [`completed`](Self::completed) been called
    /// then, so a process started right after another does not post within the
    /// destination's interval (Slack answers that with a 429). Like `completed`, it never
    /// brings a permit forward and touches no other key; unlike it, it frees no in-flight
    /// slot (that send's slot was never this limiter's). An `ago` of one interval or more
    /// changes nothing.
    ///
    /// The default does nothing, which is right for limiters that do not pace and for
    /// limiters whose state outlives the process anyway.
    async fn completed_earlier(&self, key: &str, ago: Duration) -> Result<()> {
        let _ = (key, ago);
        Ok(())
    }
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
/// A quota can also cap the sends in flight per key ([`in_flight`](Self::in_flight)):
/// Slack's `1/s burst 1` with `in_flight(1, ..)` makes every post on a channel wait for the
/// previous one's answer plus one second, even when two destinations share the channel.
///
/// Every constructor validates its input and fails with [`Error::Config`] on a zero count,
/// period or burst, or on a rate faster than one send per nanosecond.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    count: NonZeroU32,
    period: Duration,
    inner: governor::Quota,
    in_flight: Option<InFlight>,
}

/// The in-flight cap of a [`Quota`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct InFlight {
    max: NonZeroU32,
    lease: Duration,
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

    /// The same rate, and at most `max` sends per key in flight: `acquire` also waits until
    /// fewer than `max` of the sends it permitted on the key are still running, i.e. not
    /// yet reported with [`RateLimiter::completed`]. So with `max` 1 the next send on a key
    /// waits for the previous one's answer (then the interval), whichever destination it
    /// came from.
    ///
    /// Every caller of `acquire` on such keys must report each send with `completed` (the
    /// pipeline does). A send not completed within `lease` counts as completed then, so a
    /// caller that died cannot block the key for ever: make the lease longer than the
    /// sink's request timeout. A `completed` on a key with nothing in flight (a sink that
    /// learned its key mid-send) frees nothing. Fails with [`Error::Config`] on a zero
    /// `max` or `lease`.
    pub fn in_flight(self, max: u32, lease: Duration) -> Result<Self> {
        let max = NonZeroU32::new(max).ok_or_else(|| {
            Error::config("Quota::in_flight", "the sends in flight must be at least 1")
        })?;
        if lease.is_zero() {
            return Err(Error::config(
                "Quota::in_flight",
                "the lease must be longer than zero",
            ));
        }
        Ok(Self {
            in_flight: Some(InFlight { max, lease }),
            ..self
        })
    }

    /// The cap on sends in flight per key and their lease, when set.
    pub fn in_flight_cap(&self) -> Option<(u32, Duration)> {
        self.in_flight.map(|c| (c.max.get(), c.lease))
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
            in_flight: None,
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
    /// `1/s burst 1`, `30/min burst 30`, `3 per 250ms burst 1`,
    /// `1/s burst 1, 1 in flight (lease 60s)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.period.as_secs(), self.period.subsec_nanos()) {
            (1, 0) => write!(f, "{}/s", self.count)?,
            (60, 0) => write!(f, "{}/min", self.count)?,
            (3600, 0) => write!(f, "{}/h", self.count)?,
            _ => write!(f, "{} per {:?}", self.count, self.period)?,
        }
        write!(f, " burst {}", self.burst_size())?;
        if let Some(c) = self.in_flight {
            write!(f, ", {} in flight (lease {:?})", c.max, c.lease)?;
        }
        Ok(())
    }
}

#[expect(
    clippy::missing_fields_in_debug,
    reason = "the governor quota is shown as the burst; its interval follows from the rest"
)]
impl fmt::Debug for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Quota");
        d.field("count", &self.count)
            .field("period", &self.period)
            .field("burst", &self.burst_size());
        if let Some(cap) = self.in_flight_cap() {
            d.field("in_flight", &cap);
        }
        d.finish()
    }
}

// ---------------------------------------------------------------------------------------
// GcraLimiter
// ---------------------------------------------------------------------------------------

/// The longest penalty honoured (a server asking for more is treated as asking for this):
/// about 30 years, like tokio's own "far future".
const MAX_PENALTY: Duration = Duration::from_secs(86_400 * 365 * 30);

struct Bucket {
    prefix: String,
    quota: Quota,
    keys: Mutex<HashMap<String, KeyState>>,
    /// Woken when a send completes on a key with an in-flight cap, for waiters on it.
    completions: Notify,
}

/// The state of one key.
#[derive(Debug)]
struct KeyState {
    /// The GCRA's theoretical arrival time: a send may pass once
    /// `now >= tat - (burst - 1) * interval`, and then moves it to `max(tat, now) + interval`.
    /// A fresh key behaves as `tat = now`.
    tat: Instant,
    /// Lease expiries of the permitted sends not yet completed (with an in-flight cap only).
    leases: Vec<Instant>,
}

impl KeyState {
    fn forget_expired(&mut self, now: Instant) {
        self.leases.retain(|until| *until > now);
    }

    /// Indistinguishable from a fresh key.
    fn is_idle(&self, now: Instant) -> bool {
        self.tat <= now && self.leases.iter().all(|until| *until <= now)
    }
}

impl Bucket {
    fn interval(&self) -> Duration {
        self.quota.replenish_interval()
    }

    fn tolerance(&self) -> Duration {
        self.interval()
            .saturating_mul(self.quota.burst_size().saturating_sub(1))
    }

    fn keys(&self) -> MutexGuard<'_, HashMap<String, KeyState>> {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a permit for `key` now, or says when to try again (a completion may come
    /// sooner). Decides and records under one lock, with no await: that is what makes
    /// `acquire` cancel safe.
    fn try_take(&self, key: &str, now: Instant) -> std::result::Result<(), Instant> {
        let mut keys = self.keys();
        if let Some(state) = keys.get_mut(key) {
            state.forget_expired(now);
            if let Some(cap) = self.quota.in_flight
                && state.leases.len() >= usize::try_from(cap.max.get()).unwrap_or(usize::MAX)
            {
                return Err(state.leases.iter().min().copied().unwrap_or(now));
            }
            return self.take(state, now);
        }
        let mut fresh = KeyState {
            tat: now,
            leases: Vec::new(),
        };
        self.take(&mut fresh, now)?;
        keys.insert(key.to_owned(), fresh);
        Ok(())
    }

    /// The GCRA step on one key's state (plus a lease with an in-flight cap).
    fn take(&self, state: &mut KeyState, now: Instant) -> std::result::Result<(), Instant> {
        // `tat - tolerance` cannot underflow in practice; if it would, the key is ready.
        if let Some(ready_at) = state.tat.checked_sub(self.tolerance())
            && ready_at > now
        {
            return Err(ready_at);
        }
        let base = state.tat.max(now);
        // Saturates: an instant that far ahead already means "never again".
        state.tat = base.checked_add(self.interval()).unwrap_or(base);
        if let Some(cap) = self.quota.in_flight {
            state.leases.push(now.checked_add(cap.lease).unwrap_or(now));
        }
        Ok(())
    }

    /// Re-measures `key` from `now`: its theoretical arrival time becomes at least
    /// `now + interval`, as if the last send had happened now; frees one in-flight slot.
    fn complete(&self, key: &str, now: Instant) {
        let at = now.checked_add(self.interval()).unwrap_or(now);
        let mut keys = self.keys();
        let state = keys.entry(key.to_owned()).or_insert(KeyState {
            tat: at,
            leases: Vec::new(),
        });
        state.tat = state.tat.max(at);
        state.forget_expired(now);
        // Which send completed does not matter for the cap; free the oldest lease.
        if let Some(oldest) = (0..state.leases.len()).min_by_key(|&i| state.leases[i]) {
            state.leases.swap_remove(oldest);
        }
        drop(keys);
        if self.quota.in_flight.is_some() {
            self.completions.notify_waiters();
        }
    }

    /// Moves `key`'s theoretical arrival time to at least `at + interval` (a send that ended
    /// at `at`, before now), without touching its in-flight slots.
    fn complete_earlier(&self, key: &str, at: Instant) {
        let Some(tat) = at.checked_add(self.interval()) else {
            return;
        };
        if tat <= Instant::now() {
            return;
        }
        let mut keys = self.keys();
        let state = keys.entry(key.to_owned()).or_insert(KeyState {
            tat,
            leases: Vec::new(),
        });
        state.tat = state.tat.max(tat);
    }

    /// Drops keys that behave like fresh ones.
    fn retain_recent(&self, now: Instant) {
        let mut keys = self.keys();
        keys.retain(|_, state| !state.is_idle(now));
        for state in keys.values_mut() {
            state.forget_expired(now);
        }
        keys.shrink_to_fit();
    }
}

/// The in-process [`RateLimiter`]: a keyed GCRA (generic cell rate algorithm) with one
/// [`Quota`] per key prefix, plus per-key penalties.
///
/// - **Quotas.** Each key gets the quota of the longest configured prefix it starts with;
///   the default quota (prefix `""`) applies to keys that match no other prefix, and keys
///   that match nothing at all are not rate limited (penalties still apply to them). Every
///   key has its own GCRA state: `slack:C1` and `slack:C2` each get 1/s under
///   `.prefix("slack:", Quota::per_second(1)?)`.
/// - **Penalties.** [`penalize`](RateLimiter::penalize) records a per-key "blocked until"
///   instant (the later of the existing one and now + `retry_after`); `acquire` waits that
///   out first, then the GCRA.
/// - **Arrivals.** [`completed`](RateLimiter::completed) moves a key's theoretical arrival
///   time to at least `now + interval`: the next send is paced from the end of the
///   previous one (its response or timeout), which is the latest it can have reached the
///   server.
/// - **Time.** Everything runs on tokio's clock ([`tokio::time::Instant`] and
///   [`tokio::time::sleep_until`]), so the limiter works unchanged under
///   `tokio::time::pause()`. (It keeps its own GCRA state rather than `governor`'s, whose
///   clocks and `until_key_ready` follow the OS clock outside tokio and whose state cannot
///   be re-measured from a completion.)
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
                keys: Mutex::new(HashMap::new()),
                completions: Notify::new(),
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
        let now = Instant::now();
        for bucket in &self.buckets {
            bucket.retain_recent(now);
        }
        let mut penalties = self.penalties();
        penalties.retain(|_, until| *until > now);
        penalties.shrink_to_fit();
    }

    /// The number of per-key entries held (GCRA states plus penalties, which may not have
    /// expired yet), for metrics and for deciding when to call
    /// [`retain_recent`](Self::retain_recent).
    pub fn tracked_keys(&self) -> usize {
        self.buckets.iter().map(|b| b.keys().len()).sum::<usize>() + self.penalties().len()
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
        loop {
            // Penalties first, then the GCRA; re-checked after every sleep, because a
            // penalty may arrive while this task waits for its GCRA slot.
            if let Some(until) = self.penalty_until(key) {
                tokio::time::sleep_until(until).await;
                continue;
            }
            let Some(bucket) = bucket else {
                return Ok(());
            };
            // Registered before the check, so a completion between the check and the
            // sleep is not missed.
            let completion = bucket.completions.notified();
            let mut completion = std::pin::pin!(completion);
            completion.as_mut().enable();
            match bucket.try_take(key, Instant::now()) {
                Ok(()) => return Ok(()),
                Err(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = completion => {}
                    }
                }
            }
        }
    }

    /// Never fails. Keys without a quota keep no state.
    async fn completed(&self, key: &str) -> Result<()> {
        if let Some(bucket) = self.bucket_for(key) {
            bucket.complete(key, Instant::now());
        }
        Ok(())
    }

    /// Never fails. Keys without a quota keep no state.
    async fn completed_earlier(&self, key: &str, ago: Duration) -> Result<()> {
        if let Some(bucket) = self.bucket_for(key) {
            // An instant before tokio's clock began is too long ago to matter.
            if let Some(at) = Instant::now().checked_sub(ago) {
                bucket.complete_earlier(key, at);
            }
        }
        Ok(())
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
mod tests;
