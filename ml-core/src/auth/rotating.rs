//! [`RotatingTokenProvider`]: refresh tokens that change on every use (Sage X3), kept in a
//! [`RefreshTokenStore`].

use std::fmt::{self, Debug};
use std::sync::{Arc, Mutex, PoisonError};

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
