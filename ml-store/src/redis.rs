//! [`RedisRateLimiter`] (feature `redis`): one rate budget shared by every replica.
//!
//! The same keyed GCRA as [`GcraLimiter`] (a quota per key prefix, per-key penalties,
//! pacing from completions, an optional cap on sends in flight per key), with its state in
//! Redis: each decision is one Lua script, so it is atomic across replicas. Three replicas
//! posting into one Slack channel share its 1 msg/s, and a 429 seen by one replica holds
//! back the others.
//!
//! ## Time
//!
//! The scripts read the clock with Redis `TIME`: the only clock every replica shares, so
//! the replicas' own clock skew never matters. Waits are slept on tokio's clock for the
//! duration the script computed (durations, not instants, cross the wire). Tests
//! therefore run in real time (the conformance suite measures with
//! `tokio::time::Instant`, which is real time outside `pause()`).
//!
//! ## Keys
//!
//! A limiter key `slack:C123` is stored as the hash `<namespace>:{slack:C123}` (fields
//! `tat`, the GCRA's theoretical arrival time, and `pen`, the end of a penalty, both in
//! microseconds of Redis time) and, with an in-flight cap, the sorted set
//! `<namespace>:{slack:C123}:f` of lease expiries. The braces keep both in one Redis
//! Cluster slot. Every key expires once it no longer affects a decision.
//!
//! ## Redis unreachable
//!
//! A decision never falls back to "unpaced". What happens instead is chosen with
//! [`RedisFallback`] (`ML_REDIS_FALLBACK`):
//!
//! * [`RedisFallback::Pause`] (the default): `acquire` waits, retrying Redis with backoff,
//!   until it answers. Sends stop; claims stay leased (the pipeline renews them).
//! * [`RedisFallback::Local`] with `replicas = N`: each replica paces on its own with an
//!   in-process [`GcraLimiter`] at 1/N of each quota (so N replicas together stay within
//!   it), until Redis answers again. Penalties and completions are always mirrored into
//!   this local limiter, so it starts from what this replica last saw.
//!
//! `penalize` and `completed` never fail because Redis is down: they are recorded in the
//! local limiter and a warning is logged.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ::redis::Script;
use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use async_trait::async_trait;
use ml_core::config::Env;
use ml_core::limiter::{GcraLimiter, Quota, RateLimiter};
use ml_core::{Error, ErrorClass, Result};
use tokio::sync::Notify;

/// The namespace used when none is configured.
pub const DEFAULT_NAMESPACE: &str = "ml:rl";

/// How long one Redis call may take before Redis counts as unreachable, by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);

/// While waiting for a send in flight on another replica to complete, `acquire` asks
/// again this often (completions in this process wake it at once).
const IN_FLIGHT_POLL: Duration = Duration::from_millis(20);

/// What `acquire` does while Redis is unreachable (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedisFallback {
    /// Wait (retrying Redis with backoff) until Redis answers: nothing is sent meanwhile.
    Pause,
    /// Pace in process at 1/`replicas` of each quota until Redis answers.
    Local {
        /// How many replicas share the quotas (at least 1).
        replicas: u32,
    },
}

impl fmt::Display for RedisFallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pause => f.write_str("pause"),
            Self::Local { replicas } => write!(f, "local:{replicas}"),
        }
    }
}

impl std::str::FromStr for RedisFallback {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let s = s.trim().to_ascii_lowercase();
        if s == "pause" {
            return Ok(Self::Pause);
        }
        if let Some(n) = s.strip_prefix("local:")
            && let Ok(replicas) = n.parse::<u32>()
            && replicas > 0
        {
            return Ok(Self::Local { replicas });
        }
        Err(format!(
            "`{s}` is neither `pause` nor `local:N` (N replicas, 1 or more)"
        ))
    }
}

/// The configuration keys of [`RedisLimiterBuilder`], with their environment variables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RedisConfigKey {
    /// `ML_REDIS_URL`: `redis://[:password@]host[:port][/db]` or `rediss://` for TLS
    /// (required).
    Url,
    /// `ML_REDIS_NAMESPACE`: the prefix of the limiter's Redis keys (default `ml:rl`).
    Namespace,
    /// `ML_REDIS_FALLBACK`: `pause` (default) or `local:N` (see [`RedisFallback`]).
    Fallback,
    /// `ML_REDIS_TIMEOUT_MS`: how long one Redis call may take (default 500).
    TimeoutMs,
}

impl RedisConfigKey {
    /// Every key.
    pub const ALL: [Self; 4] = [Self::Url, Self::Namespace, Self::Fallback, Self::TimeoutMs];

    /// The environment variable.
    pub fn as_env(self) -> &'static str {
        match self {
            Self::Url => "ML_REDIS_URL",
            Self::Namespace => "ML_REDIS_NAMESPACE",
            Self::Fallback => "ML_REDIS_FALLBACK",
            Self::TimeoutMs => "ML_REDIS_TIMEOUT_MS",
        }
    }

    /// The key for an environment variable or its short form (`url`, `fallback`, ...).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| {
            k.as_env() == name
                || k.as_env()
                    .strip_prefix("ML_REDIS_")
                    .is_some_and(|s| s.eq_ignore_ascii_case(name))
        })
    }
}

/// Configures a [`RedisRateLimiter`].
///
/// ```no_run
/// use ml_core::limiter::Quota;
/// use ml_store::redis::{RedisFallback, RedisLimiterBuilder};
///
/// # fn main() -> ml_core::Result<()> {
/// let limiter = RedisLimiterBuilder::new()
///     .with_url("redis://127.0.0.1:6379")
///     .prefix("slack:", Quota::per_second(1)?.burst(1)?)
///     .with_fallback(RedisFallback::Local { replicas: 3 })
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisLimiterBuilder {
    url: Option<String>,
    namespace: String,
    fallback: RedisFallback,
    timeout: Duration,
    quotas: Vec<(String, Quota)>,
    error: Option<(RedisConfigKey, String)>,
}

impl fmt::Debug for RedisLimiterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLimiterBuilder")
            .field("url", &self.url.as_deref().map(redact))
            .field("namespace", &self.namespace)
            .field("fallback", &self.fallback)
            .field("quotas", &self.quotas)
            .finish_non_exhaustive()
    }
}

impl Default for RedisLimiterBuilder {
    fn default() -> Self {
        Self {
            url: None,
            namespace: DEFAULT_NAMESPACE.to_owned(),
            fallback: RedisFallback::Pause,
            timeout: DEFAULT_TIMEOUT,
            quotas: Vec::new(),
            error: None,
        }
    }
}

/// A Redis URL without its password.
fn redact(url: &str) -> String {
    match url.split_once('@') {
        Some((scheme_auth, host)) => {
            let scheme = scheme_auth.split("://").next().unwrap_or("redis");
            format!("{scheme}://***@{host}")
        }
        None => url.to_owned(),
    }
}

impl RedisLimiterBuilder {
    /// No URL (required), namespace `ml:rl`, fallback `pause`, no quotas.
    pub fn new() -> Self {
        Self::default()
    }

    /// The defaults overridden by every `ML_REDIS_*` variable of the process.
    pub fn from_env() -> Self {
        Self::from_env_with(&ml_core::config::ProcessEnv)
    }

    /// [`from_env`](Self::from_env) with the variables of `env`.
    pub fn from_env_with(env: &impl Env) -> Self {
        let mut b = Self::new();
        for key in RedisConfigKey::ALL {
            if let Some(v) = env.var(key.as_env()) {
                b = b.with_config(key, v);
            }
        }
        b
    }

    /// Sets one option from its string form.
    pub fn with_config(mut self, key: RedisConfigKey, value: impl Into<String>) -> Self {
        let value = value.into();
        let v = value.trim();
        match key {
            RedisConfigKey::Url => self.url = Some(v.to_owned()),
            RedisConfigKey::Namespace if v.is_empty() => self.fail(key, "is empty".into()),
            RedisConfigKey::Namespace => v.clone_into(&mut self.namespace),
            RedisConfigKey::Fallback => match v.parse() {
                Ok(f) => self.fallback = f,
                Err(e) => self.fail(key, e),
            },
            RedisConfigKey::TimeoutMs => match v.parse::<u64>() {
                Ok(ms) if ms > 0 => self.timeout = Duration::from_millis(ms),
                _ => self.fail(key, format!("`{v}` is not a number of milliseconds")),
            },
        }
        self
    }

    /// Sets one option by its environment name or short form; unknown names are refused.
    pub fn with_config_str(self, name: &str, value: impl Into<String>) -> Result<Self> {
        let key = RedisConfigKey::from_name(name).ok_or_else(|| {
            Error::config(
                name,
                "unknown Redis limiter setting (known: ML_REDIS_URL, ML_REDIS_NAMESPACE, \
                 ML_REDIS_FALLBACK, ML_REDIS_TIMEOUT_MS)",
            )
        })?;
        Ok(self.with_config(key, value))
    }

    /// The Redis URL.
    pub fn with_url(self, url: impl Into<String>) -> Self {
        self.with_config(RedisConfigKey::Url, url)
    }

    /// The prefix of every Redis key the limiter writes (tests give each run its own).
    pub fn with_namespace(self, namespace: impl Into<String>) -> Self {
        self.with_config(RedisConfigKey::Namespace, namespace)
    }

    /// What `acquire` does while Redis is unreachable.
    pub fn with_fallback(mut self, fallback: RedisFallback) -> Self {
        if matches!(fallback, RedisFallback::Local { replicas: 0 }) {
            self.fail(RedisConfigKey::Fallback, "needs 1 replica or more".into());
        } else {
            self.fallback = fallback;
        }
        self
    }

    /// How long one Redis call may take before Redis counts as unreachable.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The quota of keys starting with `prefix` (the longest matching prefix wins; `""`
    /// is the default quota). Keys matching no prefix are not rate limited, but penalties
    /// apply to them.
    pub fn prefix(mut self, prefix: impl Into<String>, quota: Quota) -> Self {
        let prefix = prefix.into();
        self.quotas.retain(|(p, _)| *p != prefix);
        self.quotas.push((prefix, quota));
        self
    }

    fn fail(&mut self, key: RedisConfigKey, message: String) {
        if self.error.is_none() {
            self.error = Some((key, message));
        }
    }

    /// The limiter. Does not connect: the first decision does (and a Redis that is down
    /// then is handled by the fallback).
    pub fn build(self) -> Result<RedisRateLimiter> {
        if let Some((key, message)) = self.error {
            return Err(Error::config(key.as_env(), message));
        }
        let key = RedisConfigKey::Url.as_env();
        let url = self
            .url
            .filter(|u| !u.is_empty())
            .ok_or_else(|| Error::config(key, "is required (redis://host:6379)"))?;
        let client = redis::Client::open(url.as_str())
            .map_err(|e| Error::config(key, format!("`{}`: {e}", redact(&url))))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| Error::config(key, format!("`{}`: {e}", redact(&url))))?;
        let mut quotas = self.quotas;
        quotas.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        let mut local = GcraLimiter::builder();
        let divisor = match self.fallback {
            RedisFallback::Pause => 1,
            RedisFallback::Local { replicas } => replicas,
        };
        for (prefix, q) in &quotas {
            local = local.prefix(prefix.clone(), scaled(*q, divisor)?);
        }
        Ok(RedisRateLimiter {
            inner: Arc::new(Inner {
                conn,
                label: redact(&url),
                namespace: self.namespace,
                quotas,
                fallback: self.fallback,
                local: local.build(),
                completions: Notify::new(),
                down: Mutex::new(None),
            }),
        })
    }
}

/// `q` at 1/`n` of its rate (burst at least 1), keeping its in-flight cap.
fn scaled(q: Quota, n: u32) -> Result<Quota> {
    if n <= 1 {
        return Ok(q);
    }
    let mut out =
        Quota::new(q.count(), q.period().saturating_mul(n))?.burst((q.burst_size() / n).max(1))?;
    if let Some((max, lease)) = q.in_flight_cap() {
        out = out.in_flight(max, lease)?;
    }
    Ok(out)
}

/// The shared [`RateLimiter`]: a keyed GCRA in Redis (see the [module docs](self)).
///
/// Cloning is cheap and shares the connection.
#[derive(Clone)]
pub struct RedisRateLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    conn: ConnectionManager,
    label: String,
    namespace: String,
    /// Sorted by prefix length, longest first.
    quotas: Vec<(String, Quota)>,
    fallback: RedisFallback,
    local: GcraLimiter,
    /// Completions in this process, for waiters on an in-flight cap.
    completions: Notify,
    /// Since when Redis has been failing (for one warning per outage).
    down: Mutex<Option<tokio::time::Instant>>,
}

impl fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("redis", &self.inner.label)
            .field("namespace", &self.inner.namespace)
            .field(
                "quotas",
                &self
                    .inner
                    .quotas
                    .iter()
                    .map(|(p, q)| format!("{p:?} {q}"))
                    .collect::<Vec<_>>(),
            )
            .field("fallback", &self.inner.fallback)
            .finish()
    }
}

impl fmt::Display for RedisRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Redis limiter ({}, fallback {})",
            self.inner.label, self.inner.fallback
        )
    }
}

/// `now` from Redis `TIME`, in microseconds; numbers written back with `%.0f` (Lua's
/// default `%.14g` would round microsecond timestamps).
const PRELUDE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function fmt(x) return string.format('%.0f', x) end
local function keep(key, ms)
  ms = math.ceil(ms)
  if redis.call('PTTL', key) < ms then redis.call('PEXPIRE', key, ms) end
end
";

/// KEYS: hash, in-flight set. ARGV: interval µs, tolerance µs, max in flight (0: none),
/// lease µs, limited (1/0). Returns {granted, wait µs, waiting on in-flight, old tat,
/// new tat, lease member}.
const ACQUIRE: &str = r"
local pen = tonumber(redis.call('HGET', KEYS[1], 'pen') or '0')
if pen > now then return {'0', fmt(pen - now), '0', '', '', ''} end
if ARGV[5] == '0' then return {'1', '0', '0', '', '', ''} end
local interval = tonumber(ARGV[1])
local tol = tonumber(ARGV[2])
local maxf = tonumber(ARGV[3])
local lease = tonumber(ARGV[4])
if maxf > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', fmt(now))
  if redis.call('ZCARD', KEYS[2]) >= maxf then
    local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    return {'0', fmt(tonumber(first[2]) - now), '1', '', '', ''}
  end
end
local stored = redis.call('HGET', KEYS[1], 'tat')
local tat = now
if stored then tat = tonumber(stored) end
if tat - tol > now then return {'0', fmt(tat - tol - now), '0', '', '', ''} end
local newtat = math.max(tat, now) + interval
redis.call('HSET', KEYS[1], 'tat', fmt(newtat))
local member = ''
local span = newtat - now
if maxf > 0 then
  member = tostring(redis.call('HINCRBY', KEYS[1], 'seq', 1))
  redis.call('ZADD', KEYS[2], fmt(now + lease), member)
  keep(KEYS[2], lease / 1000 + 1000)
  if lease > span then span = lease end
end
keep(KEYS[1], span / 1000 + 1000)
return {'1', '0', '0', stored or '', fmt(newtat), member}
";

/// Undoes a grant whose caller went away before hearing of it (a cancelled `acquire`).
/// KEYS: hash, set. ARGV: old tat ('' = none), new tat, lease member.
const REFUND: &str = r"
if redis.call('HGET', KEYS[1], 'tat') == ARGV[2] then
  if ARGV[1] == '' then redis.call('HDEL', KEYS[1], 'tat')
  else redis.call('HSET', KEYS[1], 'tat', ARGV[1]) end
end
if ARGV[3] ~= '' then redis.call('ZREM', KEYS[2], ARGV[3]) end
return 1
";

/// KEYS: hash. ARGV: retry-after µs.
const PENALIZE: &str = r"
local untl = now + tonumber(ARGV[1])
local pen = tonumber(redis.call('HGET', KEYS[1], 'pen') or '0')
if untl > pen then
  redis.call('HSET', KEYS[1], 'pen', fmt(untl))
  pen = untl
end
keep(KEYS[1], (pen - now) / 1000 + 1000)
return 1
";

/// KEYS: hash, set. ARGV: interval µs, max in flight.
const COMPLETED: &str = r"
local at = now + tonumber(ARGV[1])
local tat = tonumber(redis.call('HGET', KEYS[1], 'tat') or '0')
if at > tat then redis.call('HSET', KEYS[1], 'tat', fmt(at)) end
if tonumber(ARGV[2]) > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', fmt(now))
  redis.call('ZPOPMIN', KEYS[2])
end
keep(KEYS[1], tonumber(ARGV[1]) / 1000 + 1000)
return 1
";

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}{body}"))
}

fn scripts() -> &'static [Script; 4] {
    static SCRIPTS: std::sync::OnceLock<[Script; 4]> = std::sync::OnceLock::new();
    SCRIPTS.get_or_init(|| {
        [
            script(ACQUIRE),
            script(REFUND),
            script(PENALIZE),
            script(COMPLETED),
        ]
    })
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX / 4)
}

/// One decision of the acquire script.
enum Decision {
    Granted,
    Wait { wait: Duration, in_flight: bool },
}

impl Inner {
    fn quota_for(&self, key: &str) -> Option<Quota> {
        self.quotas
            .iter()
            .find(|(p, _)| key.starts_with(p.as_str()))
            .map(|(_, q)| *q)
    }

    fn keys(&self, key: &str) -> (String, String) {
        let hash = format!("{}:{{{key}}}", self.namespace);
        let set = format!("{hash}:f");
        (hash, set)
    }

    fn failed(&self, what: &str, e: &redis::RedisError) -> Error {
        let mut down = self.down.lock().unwrap_or_else(PoisonError::into_inner);
        if down.is_none() {
            *down = Some(tokio::time::Instant::now());
            tracing::warn!(redis = %self.label, error = %e, fallback = %self.fallback, "the Redis rate limiter is unreachable; {}", match self.fallback {
                RedisFallback::Pause => "sends wait until it answers",
                RedisFallback::Local { .. } => "pacing in process at 1/N of each quota",
            });
            metrics::counter!("ml_limiter_redis_outages_total").increment(1);
        }
        Error::store(
            ErrorClass::RETRYABLE,
            format!("Redis rate limiter ({}): {what}: {e}", self.label),
            None,
        )
    }

    fn reachable(&self) {
        let mut down = self.down.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(since) = down.take() {
            tracing::info!(redis = %self.label, after = ?since.elapsed(), "the Redis rate limiter answers again");
        }
    }

    /// One acquire decision in Redis. The script runs in a task of its own, so a caller
    /// that goes away mid-call (a cancelled `acquire`) consumes nothing: a grant nobody
    /// received is refunded.
    async fn try_acquire(&self, key: &str) -> Result<Decision> {
        let quota = self.quota_for(key);
        let (hash, set) = self.keys(key);
        let (interval, tolerance, max, lease) = match quota {
            Some(q) => {
                let interval = q.replenish_interval();
                let tolerance = interval.saturating_mul(q.burst_size().saturating_sub(1));
                let (max, lease) = q.in_flight_cap().unwrap_or((0, Duration::ZERO));
                (micros(interval), micros(tolerance), max, micros(lease))
            }
            None => (0, 0, 0, 0),
        };
        let limited = if quota.is_some() { "1" } else { "0" };
        let mut conn = self.conn.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let [acquire, refund, ..] = scripts();
            let out: redis::RedisResult<Vec<String>> = acquire
                .key(&hash)
                .key(&set)
                .arg(interval)
                .arg(tolerance)
                .arg(max)
                .arg(lease)
                .arg(limited)
                .invoke_async(&mut conn)
                .await;
            if let Err(Ok(v)) = tx.send(out)
                && v.first().map(String::as_str) == Some("1")
                && v.len() == 6
                && !v[4].is_empty()
            {
                let r: redis::RedisResult<i64> = refund
                    .key(&hash)
                    .key(&set)
                    .arg(&v[3])
                    .arg(&v[4])
                    .arg(&v[5])
                    .invoke_async(&mut conn)
                    .await;
                if let Err(e) = r {
                    tracing::warn!(error = %e, "could not refund a cancelled rate limiter permit");
                }
            }
        });
        let out = rx
            .await
            .map_err(|_| Error::store(ErrorClass::RETRYABLE, "limiter task failed", None))?;
        let v = out.map_err(|e| self.failed("acquire", &e))?;
        self.reachable();
        let num = |i: usize| v.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        if num(0) == 1 {
            Ok(Decision::Granted)
        } else {
            Ok(Decision::Wait {
                wait: Duration::from_micros(num(1)),
                in_flight: num(2) == 1,
            })
        }
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    /// Waits for the shared budget; while Redis is unreachable, follows the
    /// [`RedisFallback`]. Never fails because Redis is down.
    async fn acquire(&self, key: &str) -> Result<()> {
        let inner = &self.inner;
        let mut backoff = Duration::from_millis(50);
        loop {
            let completion = inner.completions.notified();
            let mut completion = std::pin::pin!(completion);
            completion.as_mut().enable();
            match inner.try_acquire(key).await {
                Ok(Decision::Granted) => return Ok(()),
                Ok(Decision::Wait { wait, in_flight }) => {
                    backoff = Duration::from_millis(50);
                    let wait = if in_flight {
                        wait.min(IN_FLIGHT_POLL)
                    } else {
                        wait
                    };
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = completion, if in_flight => {}
                    }
                }
                Err(e) => match inner.fallback {
                    RedisFallback::Local { .. } => {
                        tracing::debug!(error = %e, key, "Redis unreachable: local pacing");
                        return inner.local.acquire(key).await;
                    }
                    RedisFallback::Pause => {
                        tracing::debug!(error = %e, key, "Redis unreachable: waiting");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    }
                },
            }
        }
    }

    async fn penalize(&self, key: &str, retry_after: Duration) -> Result<()> {
        let inner = &self.inner;
        inner.local.penalize(key, retry_after).await?;
        if retry_after.is_zero() {
            return Ok(());
        }
        let (hash, _) = inner.keys(key);
        let mut conn = inner.conn.clone();
        let out: redis::RedisResult<i64> = scripts()[2]
            .key(&hash)
            .arg(micros(retry_after.min(Duration::from_secs(86_400 * 365))))
            .invoke_async(&mut conn)
            .await;
        match out {
            Ok(_) => inner.reachable(),
            Err(e) => {
                let e = inner.failed("penalize", &e);
                tracing::warn!(error = %e, key, "penalty kept in this replica only");
            }
        }
        Ok(())
    }

    async fn completed(&self, key: &str) -> Result<()> {
        let inner = &self.inner;
        inner.local.completed(key).await?;
        let Some(q) = inner.quota_for(key) else {
            return Ok(());
        };
        let max = q.in_flight_cap().map_or(0, |(m, _)| m);
        self.complete_in_redis(key, q.replenish_interval(), max)
            .await;
        if max > 0 {
            inner.completions.notify_waiters();
        }
        Ok(())
    }

    /// The shared state usually knows that send already (it outlives processes); this
    /// covers a previous process that paced locally (no Redis then, or Redis away).
    async fn completed_earlier(&self, key: &str, ago: Duration) -> Result<()> {
        let inner = &self.inner;
        inner.local.completed_earlier(key, ago).await?;
        let Some(q) = inner.quota_for(key) else {
            return Ok(());
        };
        let left = q.replenish_interval().saturating_sub(ago);
        if !left.is_zero() {
            self.complete_in_redis(key, left, 0).await;
        }
        Ok(())
    }
}

impl RedisRateLimiter {
    /// Runs the completion script for `key` with `interval` as what is left of the
    /// interval and `max` in-flight slots to free (0: none).
    async fn complete_in_redis(&self, key: &str, interval: Duration, max: u32) {
        let inner = &self.inner;
        let (hash, set) = inner.keys(key);
        let mut conn = inner.conn.clone();
        let out: redis::RedisResult<i64> = scripts()[3]
            .key(&hash)
            .key(&set)
            .arg(micros(interval))
            .arg(max)
            .invoke_async(&mut conn)
            .await;
        match out {
            Ok(_) => inner.reachable(),
            Err(e) => {
                let e = inner.failed("completed", &e);
                tracing::warn!(error = %e, key, "completion kept in this replica only");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_parses_and_config_errors_name_the_key() {
        assert_eq!("pause".parse::<RedisFallback>(), Ok(RedisFallback::Pause));
        assert_eq!(
            "LOCAL:3".parse::<RedisFallback>(),
            Ok(RedisFallback::Local { replicas: 3 })
        );
        assert!("local:0".parse::<RedisFallback>().is_err());
        assert!("unpaced".parse::<RedisFallback>().is_err());
        let e = RedisLimiterBuilder::new().build().expect_err("no url");
        assert!(
            matches!(&e, Error::Config { key, .. } if key == "ML_REDIS_URL"),
            "{e}"
        );
        let e = RedisLimiterBuilder::from_env_with(&ml_core::config::MapEnv::from([
            ("ML_REDIS_URL", "redis://127.0.0.1"),
            ("ML_REDIS_FALLBACK", "none"),
        ]))
        .build()
        .expect_err("fallback");
        assert!(
            matches!(&e, Error::Config { key, .. } if key == "ML_REDIS_FALLBACK"),
            "{e}"
        );
        assert!(
            RedisLimiterBuilder::new()
                .with_config_str("bogus", "x")
                .is_err()
        );
        let b = RedisLimiterBuilder::new().with_url("redis://:hunter2@h:6379");
        assert!(!format!("{b:?}").contains("hunter2"));
    }

    #[test]
    fn the_local_fallback_runs_at_one_nth() {
        let q = Quota::per_second(1)
            .and_then(|q| q.burst(1))
            .and_then(|q| q.in_flight(1, Duration::from_secs(120)))
            .expect("quota");
        let s = scaled(q, 3).expect("scaled");
        assert_eq!(s.replenish_interval(), Duration::from_secs(3));
        assert_eq!(s.burst_size(), 1);
        assert_eq!(s.in_flight_cap(), Some((1, Duration::from_secs(120))));
        assert_eq!(scaled(q, 1).expect("same"), q);
    }
}
