//! OAuth 2.0 token endpoints (RFC 6749 §4.4 client credentials, RFC 7523 JWT bearer) as a
//! [`TokenProvider`], for ERPs whose identity provider issues bearer tokens (Oracle
//! Fusion's identity domain, IFS Cloud's Keycloak).
//!
//! ```no_run
//! use std::sync::Arc;
//! use ml_core::auth::TokenCache;
//! use ml_core::auth::oauth2::{Grant, TokenEndpoint};
//!
//! # fn main() -> ml_core::Result<()> {
//! let http = ml_core::http::ClientOptions::default().client()?;
//! let endpoint = TokenEndpoint::new(
//!     http,
//!     "https://idcs.example.com/oauth2/v1/token",
//!     "client-id",
//!     "client-secret".to_owned(),
//!     Grant::ClientCredentials,
//! )?
//! .with_scope("urn:opc:resource:consumer::all");
//! let tokens = Arc::new(TokenCache::new(Arc::new(endpoint)));
//! # Ok(()) }
//! ```
//!
//! The client authenticates with HTTP Basic (`client_secret_basic`) by default, or with
//! its id and secret in the form body (`client_secret_post`, [`ClientAuth::Post`]), never
//! both (RFC 6749 §2.3: one method a request). Errors: a refused
//! client or grant (HTTP 400, 401, 403: `invalid_client`, `invalid_grant`) is a permanent
//! [`Error::Auth`] naming the OAuth `error` code; 429 and 5xx are retryable with
//! `Retry-After`; the answer is read through [`ApiClient`], so its size is bounded and a
//! transport error never names the URL.
//!
//! JWT bearer assertions (RS256) are signed by [`JwtSigningKey`], behind the `jwt` feature.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ::http::{HeaderMap, StatusCode};
use async_trait::async_trait;
use jiff::Timestamp;
use secrecy::SecretString;

use super::basic::BasicCredentials;
use super::credentials::Credentials;
use super::token::{AccessToken, TokenProvider};
use crate::clock::{Clock, SystemClock};
use crate::error::{Error, ErrorClass, Result};
use crate::http::{
    ApiClient, AuthFailure, ErrorModel, Request, Transport, TransportError, classify_status,
};

/// The `grant_type` of the JWT bearer grant (RFC 7523 §2.1).
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// How long a signed assertion is valid.
#[cfg(feature = "jwt")]
const ASSERTION_LIFETIME: Duration = Duration::from_secs(300);

/// The grant a [`TokenEndpoint`] asks for.
pub enum Grant {
    /// `grant_type=client_credentials`: the client acts as itself.
    ClientCredentials,
    /// `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`: the client acts as
    /// `user`, proven by an assertion signed with `key` for `audience`.
    #[cfg(feature = "jwt")]
    JwtBearer {
        /// The user the token is for (the assertion's `sub`).
        user: String,
        /// The signing key.
        key: Box<JwtSigningKey>,
        /// The assertion's `aud`.
        audience: String,
    },
}

impl Grant {
    /// `client_credentials` or `jwt-bearer`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::ClientCredentials => "client_credentials",
            #[cfg(feature = "jwt")]
            Self::JwtBearer { .. } => "jwt-bearer",
        }
    }
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a client proves who it is to the token endpoint (RFC 6749 §2.3.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic with the client id and secret (`client_secret_basic`).
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form body (`client_secret_post`).
    Post,
}

/// An OAuth 2.0 token endpoint: each [`fetch_token`](TokenProvider::fetch_token) asks it for
/// a new token. Put it behind a [`super::TokenCache`].
pub struct TokenEndpoint {
    api: ApiClient,
    transport: Arc<dyn Transport>,
    url: String,
    client_id: String,
    client_secret: SecretString,
    client_auth: ClientAuth,
    scope: Option<String>,
    grant: Grant,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for TokenEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenEndpoint")
            .field("url", &self.url)
            .field("client_id", &self.client_id)
            .field("scope", &self.scope)
            .field("grant", &self.grant)
            .field("client_auth", &self.client_auth)
            .finish_non_exhaustive()
    }
}

impl TokenEndpoint {
    /// An endpoint at `url` for the client `client_id` / `client_secret`, over `http`.
    ///
    /// Fails with [`Error::Config`] (key `url`) when `url` is not an absolute URL.
    pub fn new(
        http: reqwest::Client,
        url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<SecretString>,
        grant: Grant,
    ) -> Result<Self> {
        Self::with_transport(
            Arc::new(crate::http::ReqwestTransport::new(http)),
            url,
            client_id,
            client_secret,
            grant,
        )
    }

    /// The same over any [`Transport`].
    pub fn with_transport(
        transport: Arc<dyn Transport>,
        url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<SecretString>,
        grant: Grant,
    ) -> Result<Self> {
        let url = url.into();
        Request::post(&url)?;
        let client_id = client_id.into();
        let client_secret: SecretString = client_secret.into();
        let basic = BasicCredentials::new(client_id.clone(), client_secret.clone());
        Ok(Self {
            api: ApiClient::new(Arc::clone(&transport))
                .with_credentials(Credentials::Basic(basic))
                .with_body_limit(64 * 1024),
            transport,
            url,
            client_id,
            client_secret,
            client_auth: ClientAuth::Basic,
            scope: None,
            grant,
            clock: Arc::new(SystemClock),
        })
    }

    /// How the client authenticates (default [`ClientAuth::Basic`]).
    #[must_use]
    pub fn with_client_auth(mut self, auth: ClientAuth) -> Self {
        self.client_auth = auth;
        self.api = match auth {
            ClientAuth::Basic => {
                ApiClient::new(Arc::clone(&self.transport)).with_credentials(Credentials::Basic(
                    BasicCredentials::new(self.client_id.clone(), self.client_secret.clone()),
                ))
            }
            ClientAuth::Post => ApiClient::new(Arc::clone(&self.transport)),
        }
        .with_body_limit(64 * 1024)
        .with_clock(Arc::clone(&self.clock));
        self
    }

    /// Asks for `scope`.
    #[must_use]
    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// Uses `clock` for `expires_in`, assertion times and `Retry-After`.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.api = self.api.with_clock(Arc::clone(&clock));
        self.clock = clock;
        self
    }

    /// The token URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The grant asked for.
    pub fn grant(&self) -> &Grant {
        &self.grant
    }

    #[cfg_attr(
        not(feature = "jwt"),
        allow(unused_variables, clippy::unnecessary_wraps)
    )]
    fn form(&self, now: Timestamp) -> Result<Vec<(&'static str, String)>> {
        let mut form: Vec<(&'static str, String)> = Vec::new();
        match &self.grant {
            Grant::ClientCredentials => form.push(("grant_type", "client_credentials".into())),
            #[cfg(feature = "jwt")]
            Grant::JwtBearer {
                user,
                key,
                audience,
            } => {
                form.push(("grant_type", JWT_BEARER_GRANT.into()));
                form.push((
                    "assertion",
                    key.assertion(user, &self.client_id, audience, now, ASSERTION_LIFETIME)?,
                ));
            }
        }
        if let Some(scope) = &self.scope {
            form.push(("scope", scope.clone()));
        }
        if self.client_auth == ClientAuth::Post {
            use secrecy::ExposeSecret as _;
            form.push(("client_id", self.client_id.clone()));
            form.push((
                "client_secret",
                self.client_secret.expose_secret().to_owned(),
            ));
        }
        Ok(form)
    }
}

#[derive(serde::Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Token endpoint answers, as RFC 6749 §5.2 words them.
struct OAuthErrors;

impl ErrorModel for OAuthErrors {
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
        Some(auth_error(
            class,
            &format!("HTTP {}: {code}", status.as_u16()),
        ))
    }

    fn transport_error(&self, err: TransportError) -> Error {
        auth_error(err.class, &format!("request failed: {err}"))
    }

    fn credentials_error(&self, err: Error) -> Error {
        err
    }

    fn auth_failure(&self, _status: StatusCode, _err: &Error) -> AuthFailure {
        // The client's own credentials are static: nothing to refresh.
        AuthFailure::None
    }
}

fn auth_error(class: ErrorClass, message: &str) -> Error {
    Error::Auth {
        class,
        message: format!("token endpoint: {message}"),
    }
}

#[async_trait]
impl TokenProvider for TokenEndpoint {
    async fn fetch_token(&self) -> Result<AccessToken> {
        let now = self.clock.now();
        let request = Request::post(&self.url)?
            .form(&self.form(now)?)?
            // A token request changes nothing that matters if repeated.
            .idempotent(true);
        let response = self.api.send(&OAuthErrors, request).await?;
        let answer: TokenAnswer = response
            .json()
            .map_err(|_| auth_error(ErrorClass::RETRYABLE, "the answer has no access_token"))?;
        Ok(match answer.expires_in {
            Some(s) => AccessToken::expiring_in(answer.access_token, now, Duration::from_secs(s)),
            None => AccessToken::new(answer.access_token, None),
        })
    }
}

#[cfg(feature = "jwt")]
pub use jwt::{JwtSigningKey, sign_hs256};

#[cfg(feature = "jwt")]
mod jwt {
    use std::fmt;
    use std::time::Duration;

    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use secrecy::{ExposeSecret as _, SecretString};

    use crate::error::{Error, ErrorClass, Result};

    /// A compact JWT `{"alg":"HS256","typ":"JWT"}.claims.signature`, HMAC-SHA256 with
    /// `secret` (RFC 7515 / 7518 §3.2): for APIs whose client signs its own bearer token
    /// with a shared secret (Sage X3 connected applications).
    pub fn sign_hs256(claims: &serde_json::Value, secret: &SecretString) -> String {
        let header = serde_json::json!({"alg": "HS256", "typ": "JWT"});
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.expose_secret().as_bytes());
        let tag = ring::hmac::sign(&key, signing_input.as_bytes());
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    #[cfg(test)]
    #[test]
    fn hs256_signs_header_and_claims() {
        let secret = SecretString::from("s3cret");
        let jwt = sign_hs256(&serde_json::json!({"iss": "client", "exp": 10}), &secret);
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).expect("b64")).expect("json");
        assert_eq!(header["alg"], "HS256");
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"s3cret");
        let sig = URL_SAFE_NO_PAD.decode(parts[2]).expect("sig");
        ring::hmac::verify(&key, format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
            .expect("verifies");
        assert!(
            ring::hmac::verify(
                &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"other"),
                format!("{}.{}", parts[0], parts[1]).as_bytes(),
                &sig
            )
            .is_err()
        );
    }

    /// An RS256 signing key for JWT bearer assertions (PKCS#8 PEM).
    ///
    /// `Debug` shows the key id, never the key.
    pub struct JwtSigningKey {
        pair: ring::signature::RsaKeyPair,
        kid: Option<String>,
    }

    impl fmt::Debug for JwtSigningKey {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("JwtSigningKey")
                .field("kid", &self.kid)
                .finish_non_exhaustive()
        }
    }

    impl JwtSigningKey {
        /// Reads a `-----BEGIN PRIVATE KEY-----` (PKCS#8) RSA key. `kid` goes into the JWT
        /// header (the certificate alias the identity provider knows the key by).
        ///
        /// Fails with [`Error::Config`] (key `jwt_private_key`) without repeating the key.
        pub fn from_pkcs8_pem(pem: &SecretString, kid: Option<String>) -> Result<Self> {
            let key = "jwt_private_key";
            let body: String = pem
                .expose_secret()
                .lines()
                .filter(|l| !l.starts_with("-----"))
                .map(str::trim)
                .collect();
            let der = secrecy::zeroize::Zeroizing::new(
                STANDARD
                    .decode(body.as_bytes())
                    .map_err(|_| Error::config(key, "not a PEM (base64) key"))?,
            );
            let pair = ring::signature::RsaKeyPair::from_pkcs8(&der)
                .map_err(|e| Error::config(key, format!("not a PKCS#8 RSA key: {e}")))?;
            Ok(Self { pair, kid })
        }

        /// The public key (DER, RSAPublicKey), to check signatures.
        pub fn public_key_der(&self) -> Vec<u8> {
            use ring::signature::KeyPair as _;
            self.pair.public_key().as_ref().to_vec()
        }

        /// A signed assertion: `sub` the user, `iss` the client id, `aud`, `iat` = `now`,
        /// `exp` = `now + lifetime`, and a unique `jti`.
        pub fn assertion(
            &self,
            sub: &str,
            iss: &str,
            aud: &str,
            now: jiff::Timestamp,
            lifetime: Duration,
        ) -> Result<String> {
            let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
            if let Some(kid) = &self.kid {
                header["kid"] = kid.clone().into();
            }
            let iat = now.as_second();
            let claims = serde_json::json!({
                "sub": sub, "iss": iss, "aud": aud, "iat": iat,
                "exp": iat.saturating_add(i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX)),
                "jti": format!("{iss}-{}", now.as_nanosecond()),
            });
            let signing_input = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header.to_string()),
                URL_SAFE_NO_PAD.encode(claims.to_string())
            );
            let mut sig = vec![0; self.pair.public().modulus_len()];
            self.pair
                .sign(
                    &ring::signature::RSA_PKCS1_SHA256,
                    &ring::rand::SystemRandom::new(),
                    signing_input.as_bytes(),
                    &mut sig,
                )
                .map_err(|_| Error::Auth {
                    class: ErrorClass::Permanent,
                    message: "cannot sign the JWT assertion".into(),
                })?;
            Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
        }
    }
}
