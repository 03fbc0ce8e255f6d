//! Authentication: X3 Cloud rotating refresh tokens (through ml-core's
//! [`RotatingTokenProvider`]), the on-premises connected application's self-signed HS256
//! JWT, and HTTP Basic for api1 on premises.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ::http::{HeaderMap, StatusCode};
use async_trait::async_trait;
use jiff::Timestamp;
use ml_core::auth::oauth2::sign_hs256;
use ml_core::auth::{
    AccessToken, BasicCredentials, Credentials, RefreshGrant, RefreshTokenStore,
    RotatingTokenProvider, RotationStatus, StoredRefreshToken, TokenCache, TokenGrant,
    TokenProvider,
};
use ml_core::clock::{Clock, add};
use ml_core::error::{Error, ErrorClass, Result};
use ml_core::http::{
    ApiClient, AuthFailure, ErrorModel, Request, Transport, TransportError, classify_status,
};
use secrecy::{ExposeSecret as _, SecretString};

/// How long X3 Cloud refresh tokens live when the answer does not say (30 days).
pub const REFRESH_TOKEN_LIFETIME: Duration = Duration::from_secs(30 * 86_400);

/// How the sources authenticate.
#[derive(Clone)]
pub(crate) enum Auth {
    /// `Authorization: Bearer` from a token cache (X3 Cloud or a self-signed JWT).
    Tokens {
        cache: Arc<TokenCache>,
        /// Set for X3 Cloud (rotating refresh tokens).
        rotating: Option<Arc<RotatingTokenProvider>>,
    },
    /// `Authorization: Basic` (api1 on premises).
    Basic(BasicCredentials),
}

impl Auth {
    pub(crate) fn credentials(&self) -> Credentials {
        match self {
            Self::Tokens { cache, .. } => Credentials::Tokens(Arc::clone(cache)),
            Self::Basic(b) => Credentials::Basic(b.clone()),
        }
    }

    /// Whether renewals work, or only a new pairing helps (X3 Cloud only).
    pub(crate) fn status(&self) -> RotationStatus {
        match self {
            Self::Tokens {
                rotating: Some(p), ..
            } => p.status(),
            _ => RotationStatus::Ready,
        }
    }
}

impl Auth {
    /// When the stored refresh token expires (X3 Cloud; `None` when unknown or on error).
    pub(crate) async fn refresh_expires_at(&self) -> Option<Timestamp> {
        match self {
            Self::Tokens {
                rotating: Some(p), ..
            } => p.refresh_expires_at().await.ok().flatten(),
            _ => None,
        }
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.credentials(), f)
    }
}

/// The X3 Cloud token API's refresh grant: `POST <token url>` with
/// `grant_type=refresh_token`, the refresh token and the client's id and secret as form
/// fields. The answer carries a new access token (`expires_in`, 5 minutes) and a new
/// refresh token (the old one stops working), and may say when the refresh token expires
/// (`refresh_token_expires_in`); when it does not, the new token keeps the expiry of the
/// one it replaces (the 30 days run from the pairing) or, without one, 30 days.
///
/// The exact renew path and field names are unconfirmed (see docs.md).
pub struct CloudRefreshGrant {
    api: ApiClient,
    url: String,
    client_id: String,
    client_secret: SecretString,
    clock: Arc<dyn Clock>,
    store: Arc<dyn RefreshTokenStore>,
}

impl fmt::Debug for CloudRefreshGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloudRefreshGrant")
            .field("url", &self.url)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl CloudRefreshGrant {
    /// A grant at `url` for the client `client_id` / `client_secret`; `store` is read for
    /// the expiry of the token being replaced.
    pub fn new(
        transport: Arc<dyn Transport>,
        url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: SecretString,
        clock: Arc<dyn Clock>,
        store: Arc<dyn RefreshTokenStore>,
    ) -> Self {
        Self {
            api: ApiClient::new(transport)
                .with_clock(Arc::clone(&clock))
                .with_body_limit(64 * 1024),
            url: url.into(),
            client_id: client_id.into(),
            client_secret,
            clock,
            store,
        }
    }
}

#[derive(serde::Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    refresh_token_expires_in: Option<u64>,
}

struct TokenErrors;

impl ErrorModel for TokenErrors {
    type Error = Error;

    fn parse_error(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
        now: Timestamp,
    ) -> Option<Error> {
        if status.is_success() {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let code = v["error"].as_str().unwrap_or("error");
        let class = match status.as_u16() {
            400 | 401 | 403 => ErrorClass::Permanent,
            _ => classify_status(status, headers, now).unwrap_or(ErrorClass::Permanent),
        };
        Some(Error::Auth {
            class,
            message: format!("token endpoint: HTTP {}: {code}", status.as_u16()),
        })
    }

    fn transport_error(&self, err: TransportError) -> Error {
        Error::Auth {
            class: err.class,
            message: format!("token endpoint: request failed: {err}"),
        }
    }

    fn credentials_error(&self, err: Error) -> Error {
        err
    }

    fn auth_failure(&self, _status: StatusCode, _err: &Error) -> AuthFailure {
        AuthFailure::None
    }
}

#[async_trait]
impl RefreshGrant for CloudRefreshGrant {
    async fn refresh(&self, refresh_token: &SecretString) -> Result<TokenGrant> {
        let now = self.clock.now();
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose_secret()),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose_secret()),
        ];
        // Not idempotent: the old refresh token is spent by the first answer, so a request
        // that may have been applied is never sent again blindly.
        let request = Request::post(&self.url)?.form(&form)?.idempotent(false);
        let response = self.api.send(&TokenErrors, request).await?;
        let answer: TokenAnswer = response.json().map_err(|_| Error::Auth {
            class: ErrorClass::Permanent,
            message: "token endpoint: the answer has no access_token".into(),
        })?;
        let access = match answer.expires_in {
            Some(s) => AccessToken::expiring_in(answer.access_token, now, Duration::from_secs(s)),
            None => AccessToken::new(answer.access_token, None),
        };
        let refresh = match answer.refresh_token {
            None => None,
            Some(token) => {
                let expires_at = match answer.refresh_token_expires_in {
                    Some(s) => Some(add(now, Duration::from_secs(s))),
                    None => Some(
                        self.store
                            .load()
                            .await
                            .ok()
                            .flatten()
                            .and_then(|t| t.expires_at)
                            .unwrap_or_else(|| add(now, REFRESH_TOKEN_LIFETIME)),
                    ),
                };
                Some(StoredRefreshToken::new(
                    SecretString::from(token),
                    expires_at,
                ))
            }
        };
        Ok(TokenGrant { access, refresh })
    }
}

/// A [`RefreshTokenStore`] that starts from a configured token (`SAGE_X3_REFRESH_TOKEN`,
/// the pairing's result) when the durable store holds none yet. Once the store holds one,
/// the same configured token is ignored (it has been rotated away and no longer works);
/// a *different* configured token is a new pairing and replaces what the store holds.
/// The store keeps a fingerprint of the configured token the current one descends from
/// ([`pairing_fingerprint`](ml_core::auth::pairing_fingerprint)) to tell the two apart;
/// a stored token without one (an older journal) is taken as descending from the
/// configured token.
#[derive(Debug)]
pub struct SeededStore {
    inner: Arc<dyn RefreshTokenStore>,
    seed: Option<StoredRefreshToken>,
    pairing: Option<String>,
}

impl SeededStore {
    /// `inner`, seeded with `seed` while it is empty or holds another pairing's token.
    pub fn new(inner: Arc<dyn RefreshTokenStore>, seed: Option<StoredRefreshToken>) -> Self {
        let pairing = seed
            .as_ref()
            .map(|s| ml_core::auth::pairing_fingerprint(&s.token));
        let seed = seed.map(|s| s.with_pairing(pairing.clone()));
        Self {
            inner,
            seed,
            pairing,
        }
    }
}

#[async_trait]
impl RefreshTokenStore for SeededStore {
    async fn load(&self) -> Result<Option<StoredRefreshToken>> {
        let stored = self.inner.load().await?;
        let Some(seed) = &self.seed else {
            return Ok(stored);
        };
        match stored {
            None => {
                self.inner.save(seed).await?;
                Ok(Some(seed.clone()))
            }
            Some(t) if t.pairing.is_some() && t.pairing != self.pairing => {
                tracing::info!(
                    "Sage X3: SAGE_X3_REFRESH_TOKEN holds a new pairing's token: it replaces the stored one"
                );
                self.inner.save(seed).await?;
                Ok(Some(seed.clone()))
            }
            Some(t) if t.pairing.is_none() => {
                let t = t.with_pairing(self.pairing.clone());
                self.inner.save(&t).await?;
                Ok(Some(t))
            }
            Some(t) => Ok(Some(t)),
        }
    }

    async fn save(&self, token: &StoredRefreshToken) -> Result<()> {
        if self.pairing.is_some() && token.pairing.is_none() {
            let token = token.clone().with_pairing(self.pairing.clone());
            return self.inner.save(&token).await;
        }
        self.inner.save(token).await
    }

    async fn lock_renewal(&self) -> Result<Option<ml_core::auth::RenewalLockGuard>> {
        self.inner.lock_renewal().await
    }
}

/// The on-premises connected application's bearer token: a JWT the client signs itself
/// (HS256 with the client secret) with `iss` the client id, `aud` the GraphQL endpoint
/// URL, `sub` the user when configured, `iat` now and `exp` a short lifetime later. No
/// token endpoint is involved. The claim list is unconfirmed beyond what Sage's samples
/// and third-party connectors show (docs.md).
pub struct SelfSignedJwt {
    client_id: String,
    secret: SecretString,
    audience: String,
    user: Option<String>,
    lifetime: Duration,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for SelfSignedJwt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SelfSignedJwt")
            .field("client_id", &self.client_id)
            .field("audience", &self.audience)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl SelfSignedJwt {
    /// Tokens for `client_id` signed with `secret`, for the endpoint `audience`, living
    /// `lifetime`.
    pub fn new(
        client_id: impl Into<String>,
        secret: SecretString,
        audience: impl Into<String>,
        user: Option<String>,
        lifetime: Duration,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            client_id: client_id.into(),
            secret,
            audience: audience.into(),
            user,
            lifetime,
            clock,
        }
    }
}

#[async_trait]
impl TokenProvider for SelfSignedJwt {
    async fn fetch_token(&self) -> Result<AccessToken> {
        let now = self.clock.now();
        let iat = now.as_second();
        let exp = iat.saturating_add(i64::try_from(self.lifetime.as_secs()).unwrap_or(i64::MAX));
        let mut claims = serde_json::json!({
            "iss": self.client_id,
            "aud": self.audience,
            "iat": iat,
            "exp": exp,
        });
        if let Some(u) = &self.user {
            claims["sub"] = u.clone().into();
        }
        let jwt = sign_hs256(&claims, &self.secret);
        Ok(AccessToken::new(jwt, Timestamp::from_second(exp).ok()))
    }
}

#[cfg(test)]
mod seeded_tests {
    use ml_core::auth::{MemoryRefreshTokenStore, RefreshTokenStore as _, StoredRefreshToken};
    use secrecy::ExposeSecret as _;

    use super::*;

    fn seeded(inner: &Arc<MemoryRefreshTokenStore>, seed: &str) -> SeededStore {
        SeededStore::new(
            Arc::clone(inner) as Arc<dyn RefreshTokenStore>,
            Some(StoredRefreshToken::new(seed.to_owned(), None)),
        )
    }

    async fn token(s: &SeededStore) -> String {
        s.load()
            .await
            .expect("load")
            .expect("a token")
            .token
            .expose_secret()
            .to_owned()
    }

    /// The configured token seeds an empty store; once rotated, the same configured token
    /// is ignored (it no longer works); a different one is a new pairing and replaces it.
    #[tokio::test]
    async fn a_new_pairing_token_replaces_the_rotated_one_and_the_old_does_not() {
        let inner = Arc::new(MemoryRefreshTokenStore::default());
        let first = seeded(&inner, "pairing-1");
        assert_eq!(token(&first).await, "pairing-1");
        first
            .save(&StoredRefreshToken::new("rotated-1".to_owned(), None))
            .await
            .expect("save");
        // A restart with the same configuration keeps the rotated token.
        assert_eq!(token(&seeded(&inner, "pairing-1")).await, "rotated-1");
        // The operator paired again and configured the new token.
        let second = seeded(&inner, "pairing-2");
        assert_eq!(token(&second).await, "pairing-2");
        second
            .save(&StoredRefreshToken::new("rotated-2".to_owned(), None))
            .await
            .expect("save");
        assert_eq!(token(&seeded(&inner, "pairing-2")).await, "rotated-2");
        // The fingerprint kept beside the token is not the token.
        let kept = inner.load().await.expect("load").expect("some");
        let fp = kept.pairing.expect("fingerprint");
        assert!(!fp.contains("pairing-2") && fp.len() == 16, "{fp}");
    }

    /// A token stored before fingerprints were kept (an older journal) is taken as
    /// descending from the configured token: never replaced by a seed already rotated away.
    #[tokio::test]
    async fn a_token_stored_without_a_fingerprint_is_kept() {
        let inner = Arc::new(MemoryRefreshTokenStore::new(Some(StoredRefreshToken::new(
            "rotated-old".to_owned(),
            None,
        ))));
        assert_eq!(token(&seeded(&inner, "pairing-1")).await, "rotated-old");
        assert_eq!(token(&seeded(&inner, "pairing-1")).await, "rotated-old");
        assert_eq!(token(&seeded(&inner, "pairing-9")).await, "pairing-9");
    }
}
