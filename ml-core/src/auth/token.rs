//! [`AccessToken`] and the [`TokenProvider`] that fetches one.

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use secrecy::SecretString;

#[cfg(doc)]
use super::{RotatingTokenProvider, TokenCache};
use crate::clock::add;
#[cfg(doc)]
use crate::error::ErrorClass;
use crate::error::Result;

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
