//! [`RotatingTokenProvider`]: refresh tokens that change on every use (Sage X3), kept in a
//! [`RefreshTokenStore`].

use std::fmt::{self, Debug};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use secrecy::SecretString;

#[cfg(doc)]
use super::TokenCache;
use super::token::{AccessToken, TokenProvider};
use crate::clock::{Clock, SystemClock};
use crate::error::{Error, ErrorClass, Result};

/// A refresh token as kept between runs.
///
/// `Debug` shows the expiry, never the token.
#[derive(Clone, Debug)]
pub struct StoredRefreshToken {
    /// The refresh token itself.
    pub token: SecretString,
    /// When it stops working, when known (Sage X3: 30 days after it was issued).
    pub expires_at: Option<Timestamp>,
    /// A fingerprint of the configured token of the pairing this one descends from (not the
    /// token: [`pairing_fingerprint`]), when a seeding store keeps one: a different
    /// configured token then means a new pairing, not the old one rotated away.
    pub pairing: Option<String>,
}

impl StoredRefreshToken {
    /// A refresh token expiring at `expires_at`.
    pub fn new(token: impl Into<SecretString>, expires_at: Option<Timestamp>) -> Self {
        Self {
            token: token.into(),
            expires_at,
            pairing: None,
        }
    }

    /// The same, descending from the pairing with this fingerprint.
    #[must_use]
    pub fn with_pairing(mut self, pairing: Option<String>) -> Self {
        self.pairing = pairing;
        self
    }
}

/// A short, one-way fingerprint of a configured (pairing) token: the first 16 hex digits
/// of its SHA-256. Stored beside the rotating token to tell a new pairing from the old
/// one; it does not reveal the token.
pub fn pairing_fingerprint(token: &SecretString) -> String {
    use std::fmt::Write as _;
    digest(token)[..8]
        .iter()
        .fold(String::with_capacity(16), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
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

    /// Excludes other processes from renewing this token until the returned guard is
    /// dropped. [`RotatingTokenProvider`] holds it from `load` through the exchange to
    /// `save`, so replicas sharing one store spend the refresh token one at a time, each
    /// loading the one the previous saved. The default (one process) returns `None`.
    async fn lock_renewal(&self) -> Result<Option<RenewalLockGuard>> {
        Ok(None)
    }
}

/// A held cross-process renewal lock ([`RefreshTokenStore::lock_renewal`]); dropping it
/// releases the lock.
pub type RenewalLockGuard = Box<dyn Send + Sync>;

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
///
/// When only a new pairing can help (no token, an expired one, or the issuer refused it:
/// a permanent grant error), the provider latches [`RotationStatus::PairingNeeded`]:
/// later fetches fail at once with the same permanent error and never call the issuer
/// with the dead token again, until the store holds a different refresh token. A
/// rotated token whose save failed is kept in memory and saved before the next exchange
/// (never exchanged unsaved). [`with_expiry_warning`](Self::with_expiry_warning) warns
/// ahead of the refresh token's expiry.
pub struct RotatingTokenProvider {
    grant: Arc<dyn RefreshGrant>,
    store: Arc<dyn RefreshTokenStore>,
    clock: Arc<dyn Clock>,
    serial: Arc<tokio::sync::Mutex<()>>,
    state: Arc<Mutex<RotationState>>,
    warn_ahead: Option<Duration>,
    observer: Option<ExpiryObserver>,
}

/// Called with each [`ExpiryWarning`] (for a host that journals it).
pub type ExpiryObserver = Arc<dyn Fn(&ExpiryWarning) + Send + Sync>;

/// What a [`RotatingTokenProvider`] knows about its ability to renew.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RotationStatus {
    /// Renewals work (or have not been tried yet).
    Ready,
    /// The stored refresh token is missing, expired or was refused: only a new pairing
    /// (authorising the connector again) helps. Until the store holds a different refresh
    /// token, fetches fail at once with this reason and never call the issuer again.
    PairingNeeded {
        /// Why (never contains a secret).
        reason: String,
    },
}

/// A refresh token that expires within the warning horizon
/// ([`RotatingTokenProvider::with_expiry_warning`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpiryWarning {
    /// When the refresh token stops working.
    pub expires_at: Timestamp,
    /// How long it has left.
    pub remaining: Duration,
}

impl fmt::Display for ExpiryWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.remaining.as_secs() / 86_400;
        let hours = (self.remaining.as_secs() % 86_400) / 3_600;
        write!(
            f,
            "the refresh token expires at {} (in {days} d {hours} h): pair the connector again before then",
            self.expires_at
        )
    }
}

#[derive(Default)]
struct RotationState {
    /// Set when only a new pairing helps: why, and a digest of the dead token (a store
    /// holding another token means someone paired again).
    pairing: Option<(String, Option<[u8; 32]>)>,
    /// A rotated refresh token whose save failed: saved (and used) before anything else.
    unsaved: Option<StoredRefreshToken>,
}

fn digest(token: &SecretString) -> [u8; 32] {
    use secrecy::ExposeSecret as _;
    use sha2::Digest as _;
    sha2::Sha256::digest(token.expose_secret().as_bytes()).into()
}

impl RotatingTokenProvider {
    /// A provider exchanging the tokens kept in `store` through `grant`, on the system clock.
    pub fn new(grant: Arc<dyn RefreshGrant>, store: Arc<dyn RefreshTokenStore>) -> Self {
        Self {
            grant,
            store,
            clock: Arc::new(SystemClock),
            serial: Arc::new(tokio::sync::Mutex::new(())),
            state: Arc::new(Mutex::new(RotationState::default())),
            warn_ahead: None,
            observer: None,
        }
    }

    /// Warns when the refresh token in use expires within `ahead` (e.g. 7 days): after each
    /// renewal, and from [`expiry_warning`](Self::expiry_warning). A warning goes to the
    /// log (`tracing::warn!`), to the metric `ml_refresh_token_expiry_warnings_total`, and
    /// to the observer set with [`with_expiry_observer`](Self::with_expiry_observer). The
    /// gauge `ml_refresh_token_expires_in_seconds` is set at each renewal either way.
    #[must_use]
    pub fn with_expiry_warning(mut self, ahead: Duration) -> Self {
        self.warn_ahead = Some(ahead);
        self
    }

    /// Calls `observer` with each expiry warning (to journal it).
    #[must_use]
    pub fn with_expiry_observer(mut self, observer: ExpiryObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Whether renewals can work, or a new pairing is needed (see [`RotationStatus`]).
    pub fn status(&self) -> RotationStatus {
        match &lock(&self.state).pairing {
            Some((reason, _)) => RotationStatus::PairingNeeded {
                reason: reason.clone(),
            },
            None => RotationStatus::Ready,
        }
    }

    /// The warning due now for the stored refresh token, if it expires within the horizon
    /// set by [`with_expiry_warning`](Self::with_expiry_warning) (none without one). Also
    /// logs, counts and reports it as a renewal does.
    pub async fn expiry_warning(&self) -> Result<Option<ExpiryWarning>> {
        let expires_at = self.refresh_expires_at().await?;
        Ok(warn_expiry(
            expires_at,
            self.clock.now(),
            self.warn_ahead,
            self.observer.as_ref(),
        ))
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
        let state = Arc::clone(&self.state);
        let warn_ahead = self.warn_ahead;
        let observer = self.observer.clone();
        let task = tokio::spawn(async move {
            let _serial = serial;
            let (access, expires_at) = rotate(&*grant, &*store, &*clock, &state).await?;
            warn_expiry(expires_at, clock.now(), warn_ahead, observer.as_ref());
            Ok(access)
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

fn lock(state: &Mutex<RotationState>) -> std::sync::MutexGuard<'_, RotationState> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Sets the expiry gauge and, within the horizon, logs, counts and reports a warning.
fn warn_expiry(
    expires_at: Option<Timestamp>,
    now: Timestamp,
    ahead: Option<Duration>,
    observer: Option<&ExpiryObserver>,
) -> Option<ExpiryWarning> {
    let expires_at = expires_at?;
    let remaining = crate::clock::until(now, expires_at);
    #[allow(clippy::cast_precision_loss)]
    metrics::gauge!("ml_refresh_token_expires_in_seconds").set(remaining.as_secs() as f64);
    let ahead = ahead?;
    if remaining > ahead {
        return None;
    }
    let warning = ExpiryWarning {
        expires_at,
        remaining,
    };
    tracing::warn!(expires_at = %expires_at, "{warning}");
    metrics::counter!("ml_refresh_token_expiry_warnings_total").increment(1);
    if let Some(observer) = observer {
        observer(&warning);
    }
    Some(warning)
}

/// Latches "pairing needed" for `dead` (the token refused or missing) and returns the error.
fn pairing_needed(
    state: &Mutex<RotationState>,
    dead: Option<&SecretString>,
    reason: String,
) -> Error {
    tracing::error!("pairing needed: {reason}");
    lock(state).pairing = Some((reason.clone(), dead.map(digest)));
    auth_permanent(reason)
}

async fn rotate(
    grant: &dyn RefreshGrant,
    store: &dyn RefreshTokenStore,
    clock: &dyn Clock,
    state: &Mutex<RotationState>,
) -> Result<(AccessToken, Option<Timestamp>)> {
    // Other processes wait until this renewal is saved (or failed).
    let _renewal = store.lock_renewal().await?;
    // A rotated token whose save failed last time is saved before anything is exchanged:
    // it is the only live one.
    let unsaved = lock(state).unsaved.clone();
    if let Some(rotated) = unsaved {
        store
            .save(&rotated)
            .await
            .map_err(|err| save_failed(&err))?;
        lock(state).unsaved = None;
    }
    let stored = store.load().await?;
    let latched = lock(state).pairing.clone();
    if let Some((reason, dead)) = latched {
        let same = match (&stored, dead) {
            (None, None) => true,
            (Some(t), Some(d)) => digest(&t.token) == d,
            _ => false,
        };
        if same {
            return Err(auth_permanent(reason));
        }
        // Someone paired again: try the new token.
        lock(state).pairing = None;
    }
    let Some(stored) = stored else {
        return Err(pairing_needed(
            state,
            None,
            "no refresh token is stored; authorise the connector to obtain one".into(),
        ));
    };
    if let Some(expires_at) = stored.expires_at
        && clock.now() >= expires_at
    {
        return Err(pairing_needed(
            state,
            Some(&stored.token),
            format!("the refresh token expired at {expires_at}; authorise the connector again"),
        ));
    }
    let TokenGrant { access, refresh } = match grant.refresh(&stored.token).await {
        Ok(g) => g,
        Err(err) if err.class() == ErrorClass::Permanent => {
            let message = match &err {
                Error::Auth { message, .. } => message.clone(),
                other => other.to_string(),
            };
            return Err(pairing_needed(
                state,
                Some(&stored.token),
                format!(
                    "pairing needed: the issuer refused the refresh token ({message}); \
                     authorise the connector again"
                ),
            ));
        }
        Err(err) => return Err(err),
    };
    let mut expires_at = stored.expires_at;
    if let Some(rotated) = refresh {
        expires_at = rotated.expires_at;
        if let Err(err) = store.save(&rotated).await {
            lock(state).unsaved = Some(rotated);
            return Err(save_failed(&err));
        }
    }
    Ok((access, expires_at))
}

fn save_failed(err: &Error) -> Error {
    tracing::error!(error = %err, "rotated refresh token could not be saved");
    Error::Auth {
        class: err.class(),
        message: format!(
            "the rotated refresh token could not be saved, so the new access token \
             is not used (the previous refresh token may no longer be valid; the new one \
             is kept in memory and saved first on the next attempt): {err}"
        ),
    }
}

#[cfg(test)]
mod latch_tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use secrecy::ExposeSecret as _;

    use super::*;
    use crate::clock::{ManualClock, add};

    fn start() -> Timestamp {
        "2026-01-01T00:00:00Z".parse().expect("t")
    }

    /// Rotates `refresh-<n>`; refuses tokens listed as dead.
    #[derive(Debug, Default)]
    struct Issuer {
        calls: AtomicUsize,
        dead: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl RefreshGrant for Issuer {
        async fn refresh(&self, refresh_token: &SecretString) -> Result<TokenGrant> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            let mut dead = self.dead.lock().expect("dead");
            if dead.iter().any(|d| d == refresh_token.expose_secret()) {
                return Err(auth_permanent("HTTP 400: invalid_grant"));
            }
            dead.push(refresh_token.expose_secret().to_owned());
            Ok(TokenGrant {
                access: AccessToken::new(format!("access-{n}"), None),
                refresh: Some(StoredRefreshToken::new(
                    format!("refresh-{n}"),
                    Some(add(start(), Duration::from_secs(86_400))),
                )),
            })
        }
    }

    /// Fails its next save when `fail` is set.
    #[derive(Debug, Default)]
    struct Flaky {
        inner: MemoryRefreshTokenStore,
        fail: AtomicBool,
    }

    #[async_trait]
    impl RefreshTokenStore for Flaky {
        async fn load(&self) -> Result<Option<StoredRefreshToken>> {
            self.inner.load().await
        }

        async fn save(&self, token: &StoredRefreshToken) -> Result<()> {
            if self.fail.swap(false, Ordering::SeqCst) {
                return Err(Error::store(ErrorClass::RETRYABLE, "disk full", None));
            }
            self.inner.save(token).await
        }
    }

    #[tokio::test]
    async fn a_refused_token_latches_pairing_needed_until_the_store_changes() {
        let issuer = Arc::new(Issuer::default());
        issuer.dead.lock().expect("d").push("refresh-0".into());
        let store = Arc::new(MemoryRefreshTokenStore::new(Some(StoredRefreshToken::new(
            "refresh-0",
            None,
        ))));
        let p = RotatingTokenProvider::new(Arc::clone(&issuer) as _, Arc::clone(&store) as _);
        assert_eq!(p.status(), RotationStatus::Ready);
        for _ in 0..3 {
            let err = p.fetch_token().await.expect_err("dead");
            assert_eq!(err.class(), ErrorClass::Permanent);
            assert!(err.to_string().contains("pairing needed"), "{err}");
            assert!(!err.to_string().contains("refresh-0"), "{err}");
        }
        assert_eq!(
            issuer.calls.load(Ordering::SeqCst),
            1,
            "the dead token is presented once"
        );
        assert!(matches!(p.status(), RotationStatus::PairingNeeded { .. }));
        store
            .save(&StoredRefreshToken::new("paired-again", None))
            .await
            .expect("save");
        let access = p.fetch_token().await.expect("after pairing");
        assert_eq!(access.secret.expose_secret(), "access-2");
        assert_eq!(p.status(), RotationStatus::Ready);
    }

    #[tokio::test]
    async fn an_unsaved_rotated_token_is_saved_before_the_next_exchange() {
        let issuer = Arc::new(Issuer::default());
        let store = Arc::new(Flaky::default());
        store
            .inner
            .save(&StoredRefreshToken::new("refresh-0", None))
            .await
            .expect("seed");
        store.fail.store(true, Ordering::SeqCst);
        let p = RotatingTokenProvider::new(Arc::clone(&issuer) as _, Arc::clone(&store) as _)
            .with_clock(Arc::new(ManualClock::new(start())));
        let err = p.fetch_token().await.expect_err("save failed");
        assert!(err.class().is_retryable(), "{err}");
        assert_eq!(
            store.inner.current().expect("t").token.expose_secret(),
            "refresh-0"
        );
        // The next fetch saves refresh-1 first, then exchanges it (not the spent refresh-0).
        let access = p.fetch_token().await.expect("next");
        assert_eq!(access.secret.expose_secret(), "access-2");
        assert_eq!(
            store.inner.current().expect("t").token.expose_secret(),
            "refresh-2"
        );
        assert_eq!(p.status(), RotationStatus::Ready);
    }

    #[tokio::test]
    async fn expiry_is_warned_within_the_horizon() {
        let issuer = Arc::new(Issuer::default());
        let store = Arc::new(MemoryRefreshTokenStore::new(Some(StoredRefreshToken::new(
            "refresh-0",
            Some(add(start(), Duration::from_secs(86_400))),
        ))));
        let clock = Arc::new(ManualClock::new(start()));
        let seen: Arc<Mutex<Vec<ExpiryWarning>>> = Arc::default();
        let sink = Arc::clone(&seen);
        let p = RotatingTokenProvider::new(Arc::clone(&issuer) as _, store)
            .with_clock(Arc::clone(&clock) as _)
            .with_expiry_warning(Duration::from_secs(2 * 86_400))
            .with_expiry_observer(Arc::new(move |w| sink.lock().expect("l").push(w.clone())));
        p.fetch_token().await.expect("fetch");
        let warnings = seen.lock().expect("l").clone();
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].remaining, Duration::from_secs(86_400));
        assert!(p.expiry_warning().await.expect("check").is_some());
        let quiet =
            RotatingTokenProvider::new(issuer, Arc::new(MemoryRefreshTokenStore::default()))
                .with_expiry_warning(Duration::from_secs(60));
        assert_eq!(quiet.expiry_warning().await.expect("none"), None);
    }
}
