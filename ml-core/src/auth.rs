//! Credentials: bearer tokens behind a single-flight [`TokenCache`], rotating refresh tokens
//! ([`RotatingTokenProvider`], for Sage X3), and HTTP Basic ([`BasicCredentials`], for SAP
//! and Twilio).
//!
//! Every type here that holds a secret keeps it in a [`SecretString`] and has a `Debug`
//! that never shows it; error messages never contain one either.
//!
//! ```
//! use std::sync::Arc;
//! use ml_core::auth::{AccessToken, TokenCache, TokenProvider};
//! use ml_core::error::Result;
//! use secrecy::ExposeSecret as _;
//!
//! /// A provider that would call an OAuth2 token endpoint.
//! #[derive(Debug)]
//! struct Endpoint;
//!
//! #[async_trait::async_trait]
//! impl TokenProvider for Endpoint {
//!     async fn fetch_token(&self) -> Result<AccessToken> {
//!         Ok(AccessToken::new("t0ken", None))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<()> {
//! let cache = TokenCache::new(Arc::new(Endpoint));
//! let token = cache.token().await?;
//! // ... send the request with `Authorization: Bearer {token}`; on a 401:
//! cache.invalidate(&token);
//! assert_eq!(cache.token().await?.expose_secret(), "t0ken");
//! # Ok(())
//! # }
//! ```

use std::fmt::{self, Debug};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ::http::HeaderValue;
use async_trait::async_trait;
use jiff::Timestamp;
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret as _, SecretString};

use crate::clock::{Clock, SystemClock, add, sub, until};
use crate::error::{Error, ErrorClass, Result};

/// A bearer token and when it stops working.
///
/// `Debug` shows the expiry, never the token.
#[derive(Clone, Debug)]
pub struct AccessToken {
    /// The token itself.
    pub secret: SecretString,
    /// When the token stops working; `None` when it does not expire (or the issuer did not
    /// say): it is then used until [`TokenCache::invalidate`] drops it.
    pub expires_at: Option<Timestamp>,
}

impl AccessToken {
    /// A token expiring at `expires_at`.
    pub fn new(secret: impl Into<SecretString>, expires_at: Option<Timestamp>) -> Self {
        Self {
            secret: secret.into(),
            expires_at,
        }
    }

    /// A token that expires `expires_in` after `now`, as OAuth2's `expires_in` says.
    pub fn expiring_in(
        secret: impl Into<SecretString>,
        now: Timestamp,
        expires_in: Duration,
    ) -> Self {
        Self::new(secret, Some(add(now, expires_in)))
    }

    /// Whether the token no longer works at `now`.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }
}

/// Obtains a new access token from the remote system (an OAuth2 token endpoint, a login
/// call).
///
/// Contract:
/// - Every call asks the remote system for a new token; caching and single-flight are the
///   job of [`TokenCache`], which is how connectors should call a provider.
/// - `expires_at` is the absolute expiry, computed from the answer (`expires_in`) with the
///   provider's clock; `None` when the token does not expire.
/// - Errors are classified: rejected credentials or grants (`invalid_client`,
///   `invalid_grant`, HTTP 400/401) are [`ErrorClass::Permanent`]; an unreachable or
///   overloaded endpoint is [`ErrorClass::Retryable`]. Messages never contain a secret.
/// - The future may be dropped (its caller was cancelled); a provider whose call must not
///   be interrupted half-way (a rotating refresh) protects itself, as
///   [`RotatingTokenProvider`] does.
/// - `Debug` never shows a secret.
#[async_trait]
pub trait TokenProvider: Send + Sync + Debug {
    /// Fetches a new access token.
    async fn fetch_token(&self) -> Result<AccessToken>;
}

/// Caches the token of a [`TokenProvider`], refreshing it ahead of expiry, with one fetch at
/// a time however many callers need a token ("single flight").
///
/// - A cached token is served until `refresh_ahead` (default 60 s) before it expires. For a
///   token whose whole lifetime is shorter than twice that, the refresh happens half-way
///   through its lifetime instead, so short-lived tokens are not fetched on every call.
/// - When the cache is empty, expired or due for refresh, the first caller fetches and
///   every caller arriving meanwhile waits for that fetch and shares its outcome: a hundred
///   concurrent callers cause one fetch. A failure is returned to all of them (the others
///   get an [`Error::Auth`] with the same class and message) and is not cached: the next
///   call fetches again.
/// - [`invalidate`](Self::invalidate) drops the cached token after the remote system
///   rejected it (HTTP 401), but only if it is still the one that was rejected: fifty
///   concurrent 401s for one token cause one new fetch.
/// - If the fetching caller is cancelled, the next waiting caller fetches instead.
///
/// Times come from the injected [`Clock`] (default [`SystemClock`]).
pub struct TokenCache {
    provider: Arc<dyn TokenProvider>,
    clock: Arc<dyn Clock>,
    refresh_ahead: Duration,
    state: Mutex<CacheState>,
    /// Held by the one caller that is fetching.
    flight: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct CacheState {
    cached: Option<Cached>,
    /// The number of fetches that completed, successfully or not.
    completed: u64,
    /// The failure of fetch number `.0`, kept for the callers that waited on it.
    failure: Option<(u64, SharedFailure)>,
}

struct Cached {
    token: AccessToken,
    /// When to fetch a new token, ahead of expiry; `None` for a token that does not expire.
    refresh_at: Option<Timestamp>,
}

impl Cached {
    fn new(token: AccessToken, now: Timestamp, refresh_ahead: Duration) -> Self {
        let refresh_at = token.expires_at.map(|expires_at| {
            let lifetime = until(now, expires_at);
            sub(expires_at, refresh_ahead.min(lifetime / 2))
        });
        Self { token, refresh_at }
    }

    fn is_fresh(&self, now: Timestamp) -> bool {
        self.refresh_at.is_none_or(|at| now < at) && !self.token.is_expired(now)
    }
}

/// What callers that waited on a failed fetch receive (an `Error` cannot be cloned).
struct SharedFailure {
    class: ErrorClass,
    message: String,
}

impl SharedFailure {
    fn new(err: &Error) -> Self {
        let message = match err {
            Error::Auth { message, .. } => message.clone(),
            other => other.to_string(),
        };
        Self {
            class: err.class(),
            message,
        }
    }

    fn to_error(&self) -> Error {
        Error::Auth {
            class: self.class,
            message: self.message.clone(),
        }
    }
}

impl TokenCache {
    /// The default time before expiry at which a token is refreshed.
    pub const DEFAULT_REFRESH_AHEAD: Duration = Duration::from_secs(60);

    /// An empty cache in front of `provider`, on the system clock.
    pub fn new(provider: Arc<dyn TokenProvider>) -> Self {
        Self {
            provider,
            clock: Arc::new(SystemClock),
            refresh_ahead: Self::DEFAULT_REFRESH_AHEAD,
            state: Mutex::new(CacheState::default()),
            flight: tokio::sync::Mutex::new(()),
        }
    }

    /// Uses `clock` to decide when tokens are due.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Refreshes this long before expiry (default 60 s).
    pub fn with_refresh_ahead(mut self, refresh_ahead: Duration) -> Self {
        self.refresh_ahead = refresh_ahead;
        self
    }

    /// The provider behind the cache.
    pub fn provider(&self) -> &Arc<dyn TokenProvider> {
        &self.provider
    }

    /// A valid token's secret, fetched only when needed (see the type's docs).
    pub async fn token(&self) -> Result<SecretString> {
        self.access_token().await.map(|token| token.secret)
    }

    /// A valid token with its expiry, fetched only when needed (see the type's docs).
    pub async fn access_token(&self) -> Result<AccessToken> {
        loop {
            let seen = {
                let state = self.lock_state();
                if let Some(cached) = &state.cached
                    && cached.is_fresh(self.clock.now())
                {
                    return Ok(cached.token.clone());
                }
                state.completed
            };

            let _flight = self.flight.lock().await;
            {
                let state = self.lock_state();
                if state.completed != seen {
                    // A fetch completed while we waited: share its outcome.
                    if let Some((n, failure)) = &state.failure
                        && *n == state.completed
                    {
                        return Err(failure.to_error());
                    }
                    if let Some(cached) = &state.cached {
                        return Ok(cached.token.clone());
                    }
                    // Invalidated in the meantime: start over.
                    continue;
                }
            }

            // This caller leads the flight; the others wait on `flight`.
            let outcome = self.provider.fetch_token().await;
            let mut state = self.lock_state();
            state.completed += 1;
            return match outcome {
                Ok(token) => {
                    let cached = Cached::new(token.clone(), self.clock.now(), self.refresh_ahead);
                    state.cached = Some(cached);
                    state.failure = None;
                    Ok(token)
                }
                Err(err) => {
                    tracing::warn!(error = %err, "token fetch failed");
                    state.failure = Some((state.completed, SharedFailure::new(&err)));
                    Err(err)
                }
            };
        }
    }

    /// Drops the cached token if it is still `stale` (the one the remote system just
    /// rejected), so that the next call fetches a new one. A token already replaced by a
    /// newer one is kept.
    pub fn invalidate(&self, stale: &SecretString) {
        let mut state = self.lock_state();
        if state
            .cached
            .as_ref()
            .is_some_and(|c| c.token.secret.expose_secret() == stale.expose_secret())
        {
            state.cached = None;
        }
    }

    /// Drops the cached token, whatever it is.
    pub fn clear(&self) {
        self.lock_state().cached = None;
    }

    fn lock_state(&self) -> MutexGuard<'_, CacheState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock_state();
        let cached = state.cached.as_ref().map(|c| c.token.expires_at);
        f.debug_struct("TokenCache")
            .field("provider", &self.provider)
            .field("refresh_ahead", &self.refresh_ahead)
            .field("cached_expires_at", &cached)
            .finish_non_exhaustive()
    }
}

/// A refresh token as kept between runs.
///
/// `Debug` shows the expiry, never the token.
#[derive(Clone, Debug)]
pub struct StoredRefreshToken {
    /// The refresh token itself.
    pub token: SecretString,
    /// When it stops working, when known (Sage X3: 30 days after it was issued).
    pub expires_at: Option<Timestamp>,
}

impl StoredRefreshToken {
    /// A refresh token expiring at `expires_at`.
    pub fn new(token: impl Into<SecretString>, expires_at: Option<Timestamp>) -> Self {
        Self {
            token: token.into(),
            expires_at,
        }
    }
}

/// Where the current refresh token is kept between runs (a secrets manager, an encrypted
/// file, the host's database).
///
/// A rotating refresh token changes on every use, so [`save`](Self::save) must be durable
/// before it returns: a token lost after its predecessor was spent cannot be recovered
/// without authorising the connector again. Several processes sharing one store must
/// coordinate their refreshes themselves.
#[async_trait]
pub trait RefreshTokenStore: Send + Sync + Debug {
    /// The current refresh token, or `None` when there is none yet.
    async fn load(&self) -> Result<Option<StoredRefreshToken>>;

    /// Replaces the current refresh token, durably.
    async fn save(&self, token: &StoredRefreshToken) -> Result<()>;
}

/// A [`RefreshTokenStore`] in memory, for tests and for hosts that persist the token
/// themselves.
#[derive(Debug, Default)]
pub struct MemoryRefreshTokenStore {
    token: Mutex<Option<StoredRefreshToken>>,
}

impl MemoryRefreshTokenStore {
    /// A store holding `token`.
    pub fn new(token: Option<StoredRefreshToken>) -> Self {
        Self {
            token: Mutex::new(token),
        }
    }

    /// The token held now.
    pub fn current(&self) -> Option<StoredRefreshToken> {
        self.token
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl RefreshTokenStore for MemoryRefreshTokenStore {
    async fn load(&self) -> Result<Option<StoredRefreshToken>> {
        Ok(self.current())
    }

    async fn save(&self, token: &StoredRefreshToken) -> Result<()> {
        *self.token.lock().unwrap_or_else(PoisonError::into_inner) = Some(token.clone());
        Ok(())
    }
}

/// What a refresh grant returns: a new access token and, when the issuer rotates refresh
/// tokens, the refresh token that replaces the one just used.
///
/// `Debug` never shows either token.
#[derive(Clone, Debug)]
pub struct TokenGrant {
    /// The new access token.
    pub access: AccessToken,
    /// The new refresh token, when the issuer rotated it.
    pub refresh: Option<StoredRefreshToken>,
}

/// Exchanges a refresh token for new tokens (OAuth2 `grant_type=refresh_token`).
///
/// Errors follow the [`TokenProvider`] contract: a rejected refresh token
/// (`invalid_grant`) is [`ErrorClass::Permanent`].
#[async_trait]
pub trait RefreshGrant: Send + Sync + Debug {
    /// Calls the token endpoint with `refresh_token`.
    async fn refresh(&self, refresh_token: &SecretString) -> Result<TokenGrant>;
}

/// A [`TokenProvider`] for issuers that rotate refresh tokens on every use (Sage X3:
/// 5-minute access tokens, 30-day refresh tokens).
///
/// Each fetch loads the refresh token from the store, exchanges it, saves the rotated
/// refresh token, and only then returns the access token: if the save fails, the fetch
/// fails, since a connector that kept working on an unsaved token would fail for good at
/// its next refresh. A missing or expired refresh token is an [`Error::Auth`] with
/// [`ErrorClass::Permanent`] whose message says so (and when it expired), for the host to
/// surface; [`refresh_expires_at`](Self::refresh_expires_at) lets it warn before that.
///
/// Fetches are serialised, and each one runs to completion in a spawned tokio task even if
/// its caller is cancelled, so a rotated token is never lost between the exchange and the
/// save. Put the provider behind a [`TokenCache`].
pub struct RotatingTokenProvider {
    grant: Arc<dyn RefreshGrant>,
    store: Arc<dyn RefreshTokenStore>,
    clock: Arc<dyn Clock>,
    serial: Arc<tokio::sync::Mutex<()>>,
}

impl RotatingTokenProvider {
    /// A provider exchanging the tokens kept in `store` through `grant`, on the system clock.
    pub fn new(grant: Arc<dyn RefreshGrant>, store: Arc<dyn RefreshTokenStore>) -> Self {
        Self {
            grant,
            store,
            clock: Arc::new(SystemClock),
            serial: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// Uses `clock` to decide whether the refresh token has expired.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// When the stored refresh token expires (`None` when there is none or its expiry is
    /// unknown), so a host can warn before the connector has to be authorised again.
    pub async fn refresh_expires_at(&self) -> Result<Option<Timestamp>> {
        Ok(self.store.load().await?.and_then(|t| t.expires_at))
    }
}

impl Debug for RotatingTokenProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RotatingTokenProvider")
            .field("grant", &self.grant)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl TokenProvider for RotatingTokenProvider {
    async fn fetch_token(&self) -> Result<AccessToken> {
        let serial = Arc::clone(&self.serial).lock_owned().await;
        let grant = Arc::clone(&self.grant);
        let store = Arc::clone(&self.store);
        let clock = Arc::clone(&self.clock);
        let task = tokio::spawn(async move {
            let _serial = serial;
            rotate(&*grant, &*store, &*clock).await
        });
        match task.await {
            Ok(outcome) => outcome,
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            Err(_) => Err(Error::Cancelled),
        }
    }
}

fn auth_permanent(message: impl Into<String>) -> Error {
    Error::Auth {
        class: ErrorClass::Permanent,
        message: message.into(),
    }
}

async fn rotate(
    grant: &dyn RefreshGrant,
    store: &dyn RefreshTokenStore,
    clock: &dyn Clock,
) -> Result<AccessToken> {
    let Some(stored) = store.load().await? else {
        return Err(auth_permanent(
            "no refresh token is stored; authorise the connector to obtain one",
        ));
    };
    if let Some(expires_at) = stored.expires_at
        && clock.now() >= expires_at
    {
        return Err(auth_permanent(format!(
            "the refresh token expired at {expires_at}; authorise the connector again"
        )));
    }
    let TokenGrant { access, refresh } = grant.refresh(&stored.token).await?;
    if let Some(rotated) = refresh {
        store.save(&rotated).await.map_err(|err| {
            tracing::error!(error = %err, "rotated refresh token could not be saved");
            Error::Auth {
                class: err.class(),
                message: format!(
                    "the rotated refresh token could not be saved, so the new access token \
                     is not used (the previous refresh token may no longer be valid): {err}"
                ),
            }
        })?;
    }
    Ok(access)
}

/// HTTP Basic credentials (RFC 7617).
///
/// `Debug` shows the username, never the password.
#[derive(Clone, Debug)]
pub struct BasicCredentials {
    /// The user name. It must not contain `:` (the server splits at the first one).
    pub username: String,
    /// The password.
    pub password: SecretString,
}

impl BasicCredentials {
    /// Credentials for `username`.
    pub fn new(username: impl Into<String>, password: impl Into<SecretString>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
        }
    }

    /// The `Authorization` header value, `Basic base64(user:password)` (UTF-8), marked
    /// sensitive so that `http`'s `Debug` and HPACK leave it out.
    pub fn header_value(&self) -> HeaderValue {
        let mut plain = Zeroizing::new(Vec::with_capacity(
            self.username.len() + 1 + self.password.expose_secret().len(),
        ));
        plain.extend_from_slice(self.username.as_bytes());
        plain.push(b':');
        plain.extend_from_slice(self.password.expose_secret().as_bytes());
        let mut header = Zeroizing::new(b"Basic ".to_vec());
        base64_encode(&plain, &mut header);
        let mut value =
            HeaderValue::from_bytes(&header).expect("`Basic ` and base64 output are visible ASCII");
        value.set_sensitive(true);
        value
    }
}

/// Standard base64 with padding (RFC 4648 §4), appended to `out`.
fn base64_encode(input: &[u8], out: &mut Vec<u8>) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    out.reserve(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b0 = chunk[0];
        let b1 = chunk.get(1).copied().unwrap_or(0);
        let b2 = chunk.get(2).copied().unwrap_or(0);
        let n = u32::from(b0) << 16 | u32::from(b1) << 8 | u32::from(b2);
        let sextet = |shift: u32| ALPHABET[(n >> shift) as usize & 63];
        out.push(sextet(18));
        out.push(sextet(12));
        out.push(if chunk.len() > 1 { sextet(6) } else { b'=' });
        out.push(if chunk.len() > 2 { sextet(0) } else { b'=' });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use crate::clock::{ManualClock, TokioClock};

    use super::*;

    const SECRET: &str = "s3cr3t-value";

    fn start() -> Timestamp {
        "2026-01-01T00:00:00Z".parse().expect("timestamp")
    }

    /// Counts fetches; token `n` is `token-n`; sleeps inside each fetch so callers pile up.
    #[derive(Debug)]
    struct Counting {
        calls: AtomicU32,
        clock: Arc<dyn Clock>,
        lifetime: Option<Duration>,
        latency: Duration,
        fail_first: bool,
    }

    impl Counting {
        fn new(clock: Arc<dyn Clock>, lifetime: Option<Duration>) -> Self {
            Self {
                calls: AtomicU32::new(0),
                clock,
                lifetime,
                latency: Duration::from_secs(1),
                fail_first: false,
            }
        }

        fn calls(&self) -> u32 {
            self.calls.load(Ordering::SeqCst)
        }
    }

    #[async_trait]
    impl TokenProvider for Counting {
        async fn fetch_token(&self) -> Result<AccessToken> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::task::yield_now().await;
            tokio::time::sleep(self.latency).await;
            if self.fail_first && n == 1 {
                return Err(Error::remote(
                    "Issuer(test)",
                    ErrorClass::RETRYABLE,
                    "token endpoint unavailable",
                ));
            }
            let now = self.clock.now();
            Ok(AccessToken::new(
                format!("token-{n}"),
                self.lifetime.map(|l| add(now, l)),
            ))
        }
    }

    fn paused_setup(lifetime: Option<Duration>) -> (Arc<Counting>, Arc<TokenCache>) {
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::starting_at(start()));
        let provider = Arc::new(Counting::new(Arc::clone(&clock), lifetime));
        let cache =
            TokenCache::new(Arc::clone(&provider) as Arc<dyn TokenProvider>).with_clock(clock);
        (provider, Arc::new(cache))
    }

    async fn many(cache: &Arc<TokenCache>, n: usize) -> Vec<Result<String>> {
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let cache = Arc::clone(cache);
                tokio::spawn(
                    async move { cache.token().await.map(|t| t.expose_secret().to_owned()) },
                )
            })
            .collect();
        let mut out = Vec::with_capacity(n);
        for task in tasks {
            out.push(task.await.expect("task"));
        }
        out
    }

    fn secret(s: &SecretString) -> &str {
        s.expose_secret()
    }

    #[tokio::test(start_paused = true)]
    async fn hundred_callers_on_an_empty_cache_cause_one_fetch() {
        let (provider, cache) = paused_setup(Some(Duration::from_secs(300)));
        let tokens = many(&cache, 100).await;
        assert_eq!(provider.calls(), 1);
        assert!(tokens.iter().all(|t| t.as_deref().ok() == Some("token-1")));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn hundred_callers_on_a_multi_thread_runtime_cause_one_fetch() {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let mut counting = Counting::new(Arc::clone(&clock), Some(Duration::from_secs(300)));
        counting.latency = Duration::from_millis(50);
        let provider = Arc::new(counting);
        let cache = Arc::new(TokenCache::new(
            Arc::clone(&provider) as Arc<dyn TokenProvider>
        ));
        let barrier = Arc::new(tokio::sync::Barrier::new(100));
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let cache = Arc::clone(&cache);
                let barrier = Arc::clone(&barrier);
                tokio::spawn(async move {
                    barrier.wait().await;
                    cache.token().await.map(|t| t.expose_secret().to_owned())
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.expect("task").expect("token"), "token-1");
        }
        assert_eq!(provider.calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn refreshes_ahead_of_expiry_once_for_all_callers() {
        let (provider, cache) = paused_setup(Some(Duration::from_secs(300)));
        assert_eq!(secret(&cache.token().await.expect("first")), "token-1");
        // The token was issued 1 s in (the fetch takes 1 s): it expires at 301 s and is
        // refreshed from 241 s.
        tokio::time::advance(Duration::from_secs(239)).await;
        assert_eq!(secret(&cache.token().await.expect("cached")), "token-1");
        assert_eq!(provider.calls(), 1);
        tokio::time::advance(Duration::from_secs(1)).await;
        let tokens = many(&cache, 100).await;
        assert!(tokens.iter().all(|t| t.as_deref().ok() == Some("token-2")));
        assert_eq!(provider.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn expired_and_short_lived_tokens_are_refreshed() {
        // A 10 s token with 60 s refresh-ahead is refreshed half-way, at 5 s of its life.
        let (provider, cache) = paused_setup(Some(Duration::from_secs(10)));
        assert_eq!(secret(&cache.token().await.expect("first")), "token-1");
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(secret(&cache.token().await.expect("cached")), "token-1");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(secret(&cache.token().await.expect("half-way")), "token-2");
        // Long past expiry.
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(secret(&cache.token().await.expect("expired")), "token-3");
        assert_eq!(provider.calls(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_without_expiry_is_kept_until_invalidated() {
        let (provider, cache) = paused_setup(None);
        let first = cache.token().await.expect("first");
        tokio::time::advance(Duration::from_secs(86_400 * 365)).await;
        assert_eq!(secret(&cache.token().await.expect("cached")), "token-1");
        cache.invalidate(&SecretString::from("some-other-token"));
        assert_eq!(secret(&cache.token().await.expect("cached")), "token-1");
        assert_eq!(provider.calls(), 1);
        cache.invalidate(&first);
        assert_eq!(secret(&cache.token().await.expect("new")), "token-2");
        cache.clear();
        assert_eq!(secret(&cache.token().await.expect("new")), "token-3");
        assert_eq!(provider.calls(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn fifty_concurrent_401s_cause_one_refresh() {
        let (provider, cache) = paused_setup(Some(Duration::from_secs(3600)));
        let rejected = cache.token().await.expect("first");
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let cache = Arc::clone(&cache);
                let rejected = rejected.clone();
                tokio::spawn(async move {
                    cache.invalidate(&rejected);
                    cache.token().await.map(|t| t.expose_secret().to_owned())
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.expect("task").expect("token"), "token-2");
        }
        assert_eq!(provider.calls(), 2);
        // A late 401 for the old token leaves the new one alone.
        cache.invalidate(&rejected);
        assert_eq!(secret(&cache.token().await.expect("cached")), "token-2");
        assert_eq!(provider.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_fetch_reaches_every_waiter_and_is_not_cached() {
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::starting_at(start()));
        let mut counting = Counting::new(Arc::clone(&clock), Some(Duration::from_secs(300)));
        counting.fail_first = true;
        let provider = Arc::new(counting);
        let cache = Arc::new(
            TokenCache::new(Arc::clone(&provider) as Arc<dyn TokenProvider>).with_clock(clock),
        );
        let outcomes = many(&cache, 10).await;
        assert_eq!(provider.calls(), 1);
        for outcome in outcomes {
            let err = outcome.expect_err("shared failure");
            assert!(err.class().is_retryable(), "{err:?}");
            assert!(
                err.to_string().contains("token endpoint unavailable"),
                "{err}"
            );
        }
        assert_eq!(secret(&cache.token().await.expect("retried")), "token-2");
        assert_eq!(provider.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_fetch_is_taken_over_by_the_next_caller() {
        let (provider, cache) = paused_setup(Some(Duration::from_secs(300)));
        let leader = {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move { cache.token().await.map(drop) })
        };
        tokio::task::yield_now().await;
        assert_eq!(provider.calls(), 1, "the leader is fetching");
        let follower = {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move { cache.token().await.map(|t| t.expose_secret().to_owned()) })
        };
        tokio::task::yield_now().await;
        leader.abort();
        assert!(leader.await.expect_err("aborted").is_cancelled());
        assert_eq!(follower.await.expect("task").expect("token"), "token-2");
        assert_eq!(provider.calls(), 2);
    }

    #[test]
    fn access_token_expiry() {
        let t = AccessToken::expiring_in(SECRET, start(), Duration::from_secs(300));
        assert_eq!(t.expires_at, Some(add(start(), Duration::from_secs(300))));
        assert!(!t.is_expired(add(start(), Duration::from_secs(299))));
        assert!(t.is_expired(add(start(), Duration::from_secs(300))));
        assert!(!AccessToken::new(SECRET, None).is_expired(Timestamp::MAX));
    }

    // Rotating refresh tokens.

    /// Issues `access-n` and `refresh-n`, recording the refresh tokens it was given.
    #[derive(Debug, Default)]
    struct Grant {
        seen: Mutex<Vec<String>>,
        latency: Duration,
        rotate: bool,
        reject: bool,
    }

    #[async_trait]
    impl RefreshGrant for Grant {
        async fn refresh(&self, refresh_token: &SecretString) -> Result<TokenGrant> {
            let n = {
                let mut seen = self.seen.lock().expect("seen");
                seen.push(refresh_token.expose_secret().to_owned());
                seen.len()
            };
            tokio::time::sleep(self.latency).await;
            if self.reject {
                return Err(Error::Auth {
                    class: ErrorClass::Permanent,
                    message: "invalid_grant".into(),
                });
            }
            Ok(TokenGrant {
                access: AccessToken::expiring_in(
                    format!("access-{n}"),
                    start(),
                    Duration::from_secs(300),
                ),
                refresh: self.rotate.then(|| {
                    StoredRefreshToken::new(
                        format!("refresh-{n}"),
                        Some(add(start(), Duration::from_secs(30 * 86_400))),
                    )
                }),
            })
        }
    }

    impl Grant {
        fn rotating() -> Self {
            Self {
                rotate: true,
                ..Self::default()
            }
        }

        fn seen(&self) -> Vec<String> {
            self.seen.lock().expect("seen").clone()
        }
    }

    /// A store whose saves fail.
    #[derive(Debug)]
    struct BrokenStore(MemoryRefreshTokenStore);

    #[async_trait]
    impl RefreshTokenStore for BrokenStore {
        async fn load(&self) -> Result<Option<StoredRefreshToken>> {
            self.0.load().await
        }

        async fn save(&self, _token: &StoredRefreshToken) -> Result<()> {
            Err(Error::store(ErrorClass::RETRYABLE, "disk full", None))
        }
    }

    fn initial() -> StoredRefreshToken {
        StoredRefreshToken::new(
            "refresh-0",
            Some(add(start(), Duration::from_secs(30 * 86_400))),
        )
    }

    fn rotating(
        grant: &Arc<Grant>,
        store: Arc<dyn RefreshTokenStore>,
        clock: Arc<dyn Clock>,
    ) -> RotatingTokenProvider {
        RotatingTokenProvider::new(Arc::clone(grant) as Arc<dyn RefreshGrant>, store)
            .with_clock(clock)
    }

    #[tokio::test]
    async fn rotation_saves_the_new_refresh_token_and_uses_it_next() {
        let grant = Arc::new(Grant::rotating());
        let store = Arc::new(MemoryRefreshTokenStore::new(Some(initial())));
        let clock = Arc::new(ManualClock::new(start()));
        let provider = rotating(&grant, Arc::clone(&store) as _, clock);
        assert_eq!(
            provider.refresh_expires_at().await.expect("load"),
            initial().expires_at
        );

        let access = provider.fetch_token().await.expect("first");
        assert_eq!(secret(&access.secret), "access-1");
        let saved = store.current().expect("saved");
        assert_eq!(secret(&saved.token), "refresh-1");

        let access = provider.fetch_token().await.expect("second");
        assert_eq!(secret(&access.secret), "access-2");
        assert_eq!(grant.seen(), ["refresh-0", "refresh-1"]);
        assert_eq!(secret(&store.current().expect("saved").token), "refresh-2");
    }

    #[tokio::test]
    async fn a_grant_that_does_not_rotate_keeps_the_stored_token() {
        let grant = Arc::new(Grant::default());
        let store = Arc::new(MemoryRefreshTokenStore::new(Some(initial())));
        let provider = rotating(
            &grant,
            Arc::clone(&store) as _,
            Arc::new(ManualClock::new(start())),
        );
        provider.fetch_token().await.expect("first");
        provider.fetch_token().await.expect("second");
        assert_eq!(grant.seen(), ["refresh-0", "refresh-0"]);
    }

    #[tokio::test]
    async fn missing_and_expired_refresh_tokens_are_permanent() {
        let grant = Arc::new(Grant::rotating());
        let clock = Arc::new(ManualClock::new(start()));
        let empty = rotating(
            &grant,
            Arc::new(MemoryRefreshTokenStore::default()),
            Arc::clone(&clock) as _,
        );
        let err = empty.fetch_token().await.expect_err("missing");
        assert_eq!(err.class(), ErrorClass::Permanent);
        assert!(err.to_string().contains("no refresh token"), "{err}");
        assert_eq!(empty.refresh_expires_at().await.expect("load"), None);

        let provider = rotating(
            &grant,
            Arc::new(MemoryRefreshTokenStore::new(Some(initial()))),
            Arc::clone(&clock) as _,
        );
        clock.advance(Duration::from_secs(30 * 86_400));
        let err = provider.fetch_token().await.expect_err("expired");
        assert!(matches!(
            err,
            Error::Auth {
                class: ErrorClass::Permanent,
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            "authentication failed: the refresh token expired at 2026-01-31T00:00:00Z; \
             authorise the connector again"
        );
        assert!(grant.seen().is_empty());
    }

    #[tokio::test]
    async fn a_failed_save_fails_the_fetch_and_withholds_the_access_token() {
        let grant = Arc::new(Grant::rotating());
        let store = Arc::new(BrokenStore(MemoryRefreshTokenStore::new(Some(initial()))));
        let provider = rotating(&grant, store, Arc::new(ManualClock::new(start())));
        let err = provider.fetch_token().await.expect_err("save failed");
        assert_eq!(grant.seen(), ["refresh-0"]);
        let text = err.to_string();
        assert!(
            text.contains("could not be saved") && text.contains("disk full"),
            "{text}"
        );
        assert!(
            !text.contains("access-1") && !text.contains("refresh-1"),
            "{text}"
        );
        assert!(!format!("{err:?}").contains("access-1"));
    }

    #[tokio::test]
    async fn grant_errors_pass_through() {
        let grant = Arc::new(Grant {
            reject: true,
            ..Grant::default()
        });
        let store = Arc::new(MemoryRefreshTokenStore::new(Some(initial())));
        let provider = rotating(
            &grant,
            Arc::clone(&store) as _,
            Arc::new(ManualClock::new(start())),
        );
        let err = provider.fetch_token().await.expect_err("rejected");
        assert_eq!(err.class(), ErrorClass::Permanent);
        assert!(err.to_string().contains("invalid_grant"));
        assert_eq!(secret(&store.current().expect("kept").token), "refresh-0");
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_caller_does_not_lose_the_rotated_token() {
        let grant = Arc::new(Grant {
            latency: Duration::from_secs(1),
            ..Grant::rotating()
        });
        let store = Arc::new(MemoryRefreshTokenStore::new(Some(initial())));
        let provider = rotating(
            &grant,
            Arc::clone(&store) as _,
            Arc::new(ManualClock::new(start())),
        );
        let cancelled =
            tokio::time::timeout(Duration::from_millis(100), provider.fetch_token()).await;
        assert!(cancelled.is_err(), "timed out mid-refresh");
        // The next fetch waits for the first to finish and uses what it saved.
        let access = provider.fetch_token().await.expect("next");
        assert_eq!(secret(&access.secret), "access-2");
        assert_eq!(grant.seen(), ["refresh-0", "refresh-1"]);
        assert_eq!(secret(&store.current().expect("saved").token), "refresh-2");
    }

    #[tokio::test(start_paused = true)]
    async fn a_cache_in_front_of_rotation_refreshes_once() {
        let grant = Arc::new(Grant {
            latency: Duration::from_secs(1),
            ..Grant::rotating()
        });
        let store = Arc::new(MemoryRefreshTokenStore::new(Some(initial())));
        let provider = rotating(
            &grant,
            Arc::clone(&store) as _,
            Arc::new(ManualClock::new(start())),
        );
        let cache = Arc::new(
            TokenCache::new(Arc::new(provider)).with_clock(Arc::new(ManualClock::new(start()))),
        );
        let tokens = many(&cache, 100).await;
        assert!(tokens.iter().all(|t| t.as_deref().ok() == Some("access-1")));
        assert_eq!(grant.seen(), ["refresh-0"]);
        assert_eq!(secret(&store.current().expect("saved").token), "refresh-1");
    }

    // Basic.

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            let mut out = Vec::new();
            base64_encode(input.as_bytes(), &mut out);
            assert_eq!(
                String::from_utf8(out).expect("ascii"),
                expected,
                "{input:?}"
            );
        }
        let mut out = Vec::new();
        base64_encode(&[0xfb, 0xff, 0xbf], &mut out);
        assert_eq!(out, b"+/+/");
    }

    #[test]
    fn basic_header_value() {
        // RFC 7617 §2 and its UTF-8 example (§2.1).
        let value = BasicCredentials::new("Aladdin", "open sesame").header_value();
        assert_eq!(value, "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert!(value.is_sensitive());
        let value = BasicCredentials::new("test", "123\u{a3}").header_value();
        assert_eq!(value, "Basic dGVzdDoxMjPCow==");
    }

    // Secrets never show.

    #[test]
    fn debug_never_shows_a_secret() {
        let access = AccessToken::new(SECRET, Some(start()));
        let refresh = StoredRefreshToken::new(SECRET, None);
        let grant = TokenGrant {
            access: access.clone(),
            refresh: Some(refresh.clone()),
        };
        let basic = BasicCredentials::new("user", SECRET);
        let store = MemoryRefreshTokenStore::new(Some(refresh.clone()));
        let header = basic.header_value();
        let encoded = header
            .to_str()
            .expect("ascii")
            .trim_start_matches("Basic ")
            .to_owned();
        let provider = RotatingTokenProvider::new(
            Arc::new(Grant::default()),
            Arc::new(MemoryRefreshTokenStore::new(Some(refresh.clone()))),
        );
        let cache = TokenCache::new(Arc::new(provider));
        cache.lock_state().cached = Some(Cached::new(access.clone(), start(), Duration::ZERO));
        let failure = SharedFailure::new(&Error::Auth {
            class: ErrorClass::Permanent,
            message: "rejected".into(),
        });

        let debugs = [
            format!("{access:?}"),
            format!("{refresh:?}"),
            format!("{grant:?}"),
            format!("{basic:?}"),
            format!("{store:?}"),
            format!("{header:?}"),
            format!("{cache:?}"),
            format!("{:?}", failure.to_error()),
            format!("{}", failure.to_error()),
        ];
        for debug in &debugs {
            assert!(!debug.contains(SECRET), "{debug}");
            assert!(!debug.contains(&encoded), "{debug}");
        }
        assert!(debugs[3].contains("user"));
        assert!(debugs[6].contains("cached_expires_at"));
    }

    #[tokio::test]
    async fn errors_never_show_a_secret() {
        #[derive(Debug)]
        struct Leaky;

        #[async_trait]
        impl RefreshGrant for Leaky {
            async fn refresh(&self, _token: &SecretString) -> Result<TokenGrant> {
                Ok(TokenGrant {
                    access: AccessToken::new(SECRET, None),
                    refresh: Some(StoredRefreshToken::new(SECRET, None)),
                })
            }
        }

        let store = Arc::new(BrokenStore(MemoryRefreshTokenStore::new(Some(
            StoredRefreshToken::new(SECRET, Some(start())),
        ))));
        let expired = RotatingTokenProvider::new(Arc::new(Leaky), store.clone())
            .with_clock(Arc::new(ManualClock::new(start())));
        let not_yet = RotatingTokenProvider::new(Arc::new(Leaky), store).with_clock(Arc::new(
            ManualClock::new(sub(start(), Duration::from_secs(1))),
        ));
        for err in [
            expired.fetch_token().await.expect_err("expired"),
            not_yet.fetch_token().await.expect_err("save failed"),
        ] {
            assert!(!format!("{err:?}").contains(SECRET), "{err:?}");
            assert!(!err.to_string().contains(SECRET), "{err}");
        }
        assert!(!format!("{expired:?}").contains(SECRET));
    }
}
