//! [`Credentials`]: what a connector puts in `Authorization`.

use std::fmt;
use std::sync::Arc;

use ::http::HeaderValue;
use secrecy::{ExposeSecret as _, SecretString};

use super::basic::BasicCredentials;
use super::cache::TokenCache;
use crate::error::{Error, ErrorClass, Result};

/// The credentials a connector sends with each request, as
/// [`ApiClient`](crate::http::ApiClient) uses them.
///
/// `Debug` never shows a secret.
#[derive(Clone)]
pub enum Credentials {
    /// No `Authorization` header (the request carries its own, or none is needed).
    None,
    /// `Authorization: Basic`.
    Basic(BasicCredentials),
    /// `Authorization: Bearer` with a token that does not expire (an API key).
    Bearer(SecretString),
    /// `Authorization: Bearer` with tokens from a cache: refreshed ahead of expiry, and
    /// once more after the remote system rejected one.
    Tokens(Arc<TokenCache>),
}

/// An `Authorization` header value and, for cached tokens, the token it carries (to
/// invalidate it when the remote system rejects it).
pub struct Authorization {
    /// The header value, marked sensitive.
    pub value: HeaderValue,
    /// The cached token sent, for [`TokenCache::invalidate`].
    pub token: Option<SecretString>,
}

impl Credentials {
    /// The `Authorization` header to send now, fetching a token when the cache needs one;
    /// `None` for [`Credentials::None`].
    ///
    /// Fails with the token endpoint's error, or an [`Error::Auth`] when a token is not a
    /// valid header value.
    pub async fn authorization(&self) -> Result<Option<Authorization>> {
        Ok(match self {
            Self::None => None,
            Self::Basic(basic) => Some(Authorization {
                value: basic.header_value(),
                token: None,
            }),
            Self::Bearer(token) => Some(Authorization {
                value: bearer(token)?,
                token: None,
            }),
            Self::Tokens(cache) => {
                let token = cache.token().await?;
                Some(Authorization {
                    value: bearer(&token)?,
                    token: Some(token),
                })
            }
        })
    }
}

/// `Bearer <token>`, marked sensitive.
pub(crate) fn bearer(token: &SecretString) -> Result<HeaderValue> {
    let mut value =
        HeaderValue::from_str(&format!("Bearer {}", token.expose_secret())).map_err(|_| {
            Error::Auth {
                class: ErrorClass::Permanent,
                message: "the token contains characters not allowed in a header".into(),
            }
        })?;
    value.set_sensitive(true);
    Ok(value)
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Basic(basic) => f
                .debug_struct("Basic")
                .field("username", &basic.username)
                .finish_non_exhaustive(),
            Self::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Self::Tokens(cache) => f.debug_tuple("Tokens").field(cache).finish(),
        }
    }
}

impl fmt::Debug for Authorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Authorization(<redacted>)")
    }
}
