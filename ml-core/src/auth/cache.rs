//! [`TokenCache`]: single-flight caching of a [`TokenProvider`]'s tokens.

use std::fmt::{self, Debug};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use secrecy::{ExposeSecret as _, SecretString};

use super::token::{AccessToken, TokenProvider};
use crate::clock::{Clock, SystemClock, sub, until};
use crate::error::{Error, ErrorClass, Result};

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
pub(super) struct CacheState {
    pub(super) cached: Option<Cached>,
    /// The number of fetches that completed, successfully or not.
    completed: u64,
    /// The failure of fetch number `.0`, kept for the callers that waited on it.
    failure: Option<(u64, SharedFailure)>,
}

pub(super) struct Cached {
    token: AccessToken,
    /// When to fetch a new token, ahead of expiry; `None` for a token that does not expire.
    refresh_at: Option<Timestamp>,
}

impl Cached {
    pub(super) fn new(token: AccessToken, now: Timestamp, refresh_ahead: Duration) -> Self {
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
pub(super) struct SharedFailure {
    class: ErrorClass,
    message: String,
}

impl SharedFailure {
    pub(super) fn new(err: &Error) -> Self {
        let message = match err {
            Error::Auth { message, .. } => message.clone(),
            other => other.to_string(),
        };
        Self {
            class: err.class(),
            message,
        }
    }

    pub(super) fn to_error(&self) -> Error {
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

    pub(super) fn lock_state(&self) -> MutexGuard<'_, CacheState> {
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
