//! Authentication: OAuth 2.0 client credentials and JWT user assertion against the
//! identity domain's token endpoint (ml-core's [`oauth2::TokenEndpoint`] behind a
//! [`TokenCache`]), or HTTP Basic.

use std::fmt;
use std::sync::Arc;

use ml_core::auth::oauth2::{self, Grant};
use ml_core::auth::{BasicCredentials, Credentials, TokenCache};
use ml_core::clock::Clock;
use secrecy::SecretString;

pub use ml_core::auth::oauth2::{JwtSigningKey, TokenEndpoint};

use crate::error::OracleFusionError;

/// The default JWT audience of the identity domain.
pub const JWT_AUDIENCE: &str = "https://identity.oraclecloud.com/";

/// How the source authenticates.
#[derive(Clone)]
pub(crate) enum Auth {
    /// `Authorization: Bearer` from a token cache.
    Bearer(Arc<TokenCache>),
    /// `Authorization: Basic`.
    Basic(BasicCredentials),
}

impl Auth {
    /// The credentials ml-core's `ApiClient` sends.
    pub(crate) fn credentials(&self) -> Credentials {
        match self {
            Self::Bearer(cache) => Credentials::Tokens(Arc::clone(cache)),
            Self::Basic(basic) => Credentials::Basic(basic.clone()),
        }
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.credentials(), f)
    }
}

/// Reads the JWT signing key, naming `key` (the configuration key) when it is invalid.
pub(crate) fn signing_key(
    key: &str,
    pem: &SecretString,
    kid: Option<String>,
) -> Result<JwtSigningKey, OracleFusionError> {
    JwtSigningKey::from_pkcs8_pem(pem, kid).map_err(|e| match e {
        ml_core::Error::Config { message, .. } => OracleFusionError::config(key, message),
        other => OracleFusionError::config(key, other.to_string()),
    })
}

/// The identity domain's token endpoint for `grant`, behind a token cache on `clock`.
pub(crate) fn token_cache(
    client: &reqwest::Client,
    url: &str,
    client_id: &str,
    client_secret: SecretString,
    scope: Option<&str>,
    grant: Grant,
    clock: &Arc<dyn Clock>,
) -> Result<Arc<TokenCache>, OracleFusionError> {
    let mut endpoint =
        oauth2::TokenEndpoint::new(client.clone(), url, client_id, client_secret, grant)
            .map_err(|e| OracleFusionError::config("ORACLE_FUSION_TOKEN_URL", e.to_string()))?
            .with_clock(Arc::clone(clock));
    if let Some(scope) = scope {
        endpoint = endpoint.with_scope(scope);
    }
    Ok(Arc::new(
        TokenCache::new(Arc::new(endpoint)).with_clock(Arc::clone(clock)),
    ))
}
