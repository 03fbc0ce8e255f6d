//! Credentials: bearer tokens behind a single-flight [`TokenCache`], rotating refresh tokens
//! ([`RotatingTokenProvider`], for Sage X3), and HTTP Basic ([`BasicCredentials`], for SAP
//! and Twilio).
//!
//! Every type here that holds a secret keeps it in a [`SecretString`](secrecy::SecretString) and has a `Debug`
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

mod basic;
mod cache;
mod credentials;
pub mod oauth2;
mod rotating;
mod token;

pub use basic::BasicCredentials;
pub use cache::TokenCache;
pub use credentials::{Authorization, Credentials};
pub use rotating::{
    ExpiryObserver, ExpiryWarning, MemoryRefreshTokenStore, RefreshGrant, RefreshTokenStore,
    RenewalLockGuard, RotatingTokenProvider, RotationStatus, StoredRefreshToken, TokenGrant,
    pairing_fingerprint,
};
pub use token::{AccessToken, TokenProvider};

#[cfg(test)]
mod tests;
