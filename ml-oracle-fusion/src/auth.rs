//! Authentication: OAuth 2.0 client credentials and JWT user assertion against the
//! identity domain's token endpoint (tokens through ml-core's [`TokenCache`]), or HTTP
//! Basic.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ml_core::auth::{AccessToken, BasicCredentials, TokenCache, TokenProvider};
use ml_core::clock::Clock;
use ml_core::error::{ErrorClass, Result};
use ml_core::retry::classify_status;
use secrecy::{ExposeSecret as _, SecretString};

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

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bearer(c) => f.debug_tuple("Bearer").field(c).finish(),
            Self::Basic(b) => f
                .debug_struct("Basic")
                .field("username", &b.username)
                .finish_non_exhaustive(),
        }
    }
}

/// An RS256 signing key for the JWT user assertion (PKCS#8 PEM).
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
    /// header (the certificate alias uploaded to the confidential application).
    pub fn from_pkcs8_pem(
        pem: &SecretString,
        kid: Option<String>,
    ) -> Result<Self, OracleFusionError> {
        let key = "ORACLE_FUSION_JWT_PRIVATE_KEY";
        let body: String = pem
            .expose_secret()
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .map(str::trim)
            .collect();
        let der = secrecy::zeroize::Zeroizing::new(
            STANDARD
                .decode(body.as_bytes())
                .map_err(|_| OracleFusionError::config(key, "not a PEM (base64) key"))?,
        );
        let pair = ring::signature::RsaKeyPair::from_pkcs8(&der)
            .map_err(|e| OracleFusionError::config(key, format!("not a PKCS#8 RSA key: {e}")))?;
        Ok(Self { pair, kid })
    }

    /// The public key (DER, RSAPublicKey), to check signatures in tests.
    pub fn public_key_der(&self) -> Vec<u8> {
        use ring::signature::KeyPair as _;
        self.pair.public_key().as_ref().to_vec()
    }

    /// A signed assertion: `sub` the Fusion user, `iss` the client id, `aud`, `iat`, `exp`.
    pub fn assertion(
        &self,
        sub: &str,
        iss: &str,
        aud: &str,
        now: jiff::Timestamp,
        lifetime: Duration,
    ) -> Result<String, OracleFusionError> {
        let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = &self.kid {
            header["kid"] = kid.clone().into();
        }
        let iat = now.as_second();
        let claims = serde_json::json!({
            "sub": sub, "iss": iss, "aud": aud, "iat": iat,
            "exp": iat + lifetime.as_secs() as i64,
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
            .map_err(|_| OracleFusionError::Token {
                class: ErrorClass::Permanent,
                message: "cannot sign the JWT assertion".into(),
            })?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }
}

/// The grant a [`TokenEndpoint`] asks for.
pub(crate) enum Grant {
    ClientCredentials,
    JwtAssertion {
        user: String,
        key: Box<JwtSigningKey>,
        audience: String,
    },
}

/// An OAuth 2.0 token endpoint (IDCS / OCI IAM identity domain).
pub struct TokenEndpoint {
    pub(crate) client: reqwest::Client,
    pub(crate) url: String,
    pub(crate) client_id: String,
    pub(crate) client_secret: SecretString,
    pub(crate) scope: Option<String>,
    pub(crate) grant: Grant,
    pub(crate) clock: Arc<dyn Clock>,
}

impl fmt::Debug for TokenEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenEndpoint")
            .field("url", &self.url)
            .field("client_id", &self.client_id)
            .field("scope", &self.scope)
            .field(
                "grant",
                &match self.grant {
                    Grant::ClientCredentials => "client_credentials",
                    Grant::JwtAssertion { .. } => "jwt-bearer",
                },
            )
            .finish_non_exhaustive()
    }
}

#[derive(serde::Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl TokenEndpoint {
    async fn fetch(&self) -> Result<AccessToken, OracleFusionError> {
        let now = self.clock.now();
        let mut form: Vec<(&str, String)> = Vec::new();
        match &self.grant {
            Grant::ClientCredentials => form.push(("grant_type", "client_credentials".into())),
            Grant::JwtAssertion {
                user,
                key,
                audience,
            } => {
                form.push((
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:jwt-bearer".into(),
                ));
                form.push((
                    "assertion",
                    key.assertion(
                        user,
                        &self.client_id,
                        audience,
                        now,
                        Duration::from_secs(300),
                    )?,
                ));
            }
        }
        if let Some(s) = &self.scope {
            form.push(("scope", s.clone()));
        }
        let basic = BasicCredentials::new(self.client_id.clone(), self.client_secret.clone());
        let resp = self
            .client
            .post(&self.url)
            .header(reqwest::header::AUTHORIZATION, basic.header_value())
            .form(&form)
            .send()
            .await
            .map_err(|e| OracleFusionError::Token {
                class: ml_core::retry::classify_transport(&e, true),
                message: format!("request failed: {}", e.without_url()),
            })?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let code = v["error"].as_str().unwrap_or("error");
            let class = match status.as_u16() {
                400 | 401 | 403 => ErrorClass::Permanent,
                _ => classify_status(status, &headers, now).unwrap_or(ErrorClass::Permanent),
            };
            return Err(OracleFusionError::Token {
                class,
                message: format!("HTTP {}: {code}", status.as_u16()),
            });
        }
        let answer: TokenAnswer =
            serde_json::from_str(&body).map_err(|_| OracleFusionError::Token {
                class: ErrorClass::RETRYABLE,
                message: "the answer has no access_token".into(),
            })?;
        Ok(match answer.expires_in {
            Some(s) => AccessToken::expiring_in(answer.access_token, now, Duration::from_secs(s)),
            None => AccessToken::new(answer.access_token, None),
        })
    }
}

#[async_trait::async_trait]
impl TokenProvider for TokenEndpoint {
    async fn fetch_token(&self) -> Result<AccessToken> {
        self.fetch().await.map_err(Into::into)
    }
}
