//! An OAuth 2.0 token endpoint any emulator can mount (RFC 6749 §4.4 client credentials,
//! RFC 7523 JWT bearer with RS256 assertions), with the bearer check its API routes use.
//!
//! Like identity providers (OCI IAM identity domains, Keycloak):
//! * the client authenticates with HTTP Basic or `client_id` / `client_secret` form fields;
//!   wrong or missing -> 401 `invalid_client`;
//! * `grant_type=client_credentials`, or the JWT bearer grant whose `assertion` is signed by
//!   a key trusted with [`TokenIssuer::trust_jwt_key`] and names the client as `iss`, a
//!   user as `sub`, the configured audience as `aud`, and an `exp` in the future; otherwise
//!   400 `invalid_grant`; any other grant 400 `unsupported_grant_type`;
//! * tokens `<prefix>-<n>` live [`TokenIssuer::set_lifetime`] on the emulator's clock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use jiff::{SignedDuration, Timestamp};
use ml_core::clock::Clock;

use crate::emulator::basic_credentials;

/// The `grant_type` of the JWT bearer grant.
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

#[derive(Default)]
struct Issued {
    tokens: HashMap<String, Timestamp>,
    next: u64,
    scopes: Vec<String>,
    /// Public keys (DER `RSAPublicKey`) trusted for JWT assertions, by optional `kid`.
    jwt_keys: Vec<(Option<String>, Vec<u8>)>,
    lifetime: Duration,
    /// Which client authentication methods are accepted: (HTTP Basic, form fields).
    methods: (bool, bool),
}

/// Issues and checks bearer tokens for one client.
pub struct TokenIssuer {
    prefix: String,
    client_id: String,
    client_secret: String,
    audience: String,
    clock: Arc<dyn Clock>,
    issued: AtomicU64,
    state: Mutex<Issued>,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("prefix", &self.prefix)
            .field("client_id", &self.client_id)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl TokenIssuer {
    /// An issuer for the client `client_id` / `client_secret`, whose tokens are
    /// `<prefix>-00000001`, … and live `lifetime`; JWT assertions must name `audience`.
    pub fn new(
        prefix: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
        audience: impl Into<String>,
        lifetime: Duration,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            prefix: prefix.into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            audience: audience.into(),
            clock,
            issued: AtomicU64::new(0),
            state: Mutex::new(Issued {
                next: 1,
                lifetime,
                methods: (true, true),
                ..Issued::default()
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Issued> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The client secret.
    pub fn client_secret(&self) -> &str {
        &self.client_secret
    }

    /// Token requests answered with a token.
    pub fn tokens_issued(&self) -> u64 {
        self.issued.load(Ordering::Relaxed)
    }

    /// The scopes requested, in order.
    pub fn scopes(&self) -> Vec<String> {
        self.lock().scopes.clone()
    }

    /// Changes the lifetime of tokens issued from now on.
    pub fn set_lifetime(&self, lifetime: Duration) {
        self.lock().lifetime = lifetime;
    }

    /// Expires every issued token now.
    pub fn expire_all(&self) {
        self.lock().tokens.clear();
    }

    /// Trusts an RSA public key (DER `RSAPublicKey`) for JWT assertions, under an optional
    /// `kid`.
    pub fn trust_jwt_key(&self, kid: Option<&str>, public_key_der: Vec<u8>) {
        self.lock()
            .jwt_keys
            .push((kid.map(str::to_owned), public_key_der));
    }

    /// Whether `token` was issued and has not expired.
    pub fn is_valid(&self, token: &str) -> bool {
        let now = self.clock.now();
        self.lock().tokens.get(token).is_some_and(|exp| now < *exp)
    }

    /// Whether `headers` carry `Authorization: Bearer` with a valid token.
    pub fn authorises(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| self.is_valid(t.trim()))
    }

    /// Accepts only these client authentication methods (default both): HTTP Basic
    /// (`client_secret_basic`), form fields (`client_secret_post`). A server configured
    /// for one refuses the other with `invalid_client`.
    pub fn accept_client_auth(&self, basic: bool, post: bool) {
        self.lock().methods = (basic, post);
    }

    /// Answers a token request (`POST`, form body). A client using two authentication
    /// methods at once is refused (`invalid_request`, RFC 6749 §2.3).
    pub fn answer(&self, headers: &HeaderMap, body: &str) -> Response {
        let form: HashMap<String, String> = serde_urlencoded::from_str(body).unwrap_or_default();
        let basic = basic_credentials(headers);
        let post = form.get("client_secret").map(|s| {
            (
                form.get("client_id").cloned().unwrap_or_default(),
                s.clone(),
            )
        });
        let (accept_basic, accept_post) = self.lock().methods;
        let creds = match (basic, post) {
            (Some(_), Some(_)) => {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
            }
            (Some(b), None) if accept_basic => Some(b),
            (None, Some(p)) if accept_post => Some(p),
            _ => None,
        };
        let Some((id, secret)) = creds else {
            return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
        };
        if id != self.client_id || secret != self.client_secret {
            return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
        }
        match form.get("grant_type").map(String::as_str) {
            Some("client_credentials") => {}
            Some(JWT_BEARER_GRANT) => {
                let keys = self.lock().jwt_keys.clone();
                let ok = form.get("assertion").is_some_and(|a| {
                    verify_assertion(a, &keys, &self.client_id, &self.audience, self.clock.now())
                });
                if !ok {
                    return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
                }
            }
            _ => return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
        }
        let now = self.clock.now();
        let (token, lifetime) = {
            let mut state = self.lock();
            let n = state.next;
            state.next += 1;
            let token = format!("{}-{n:08}", self.prefix);
            let lifetime = state.lifetime;
            let expires = now
                .checked_add(SignedDuration::try_from(lifetime).unwrap_or(SignedDuration::MAX))
                .unwrap_or(Timestamp::MAX);
            state.tokens.insert(token.clone(), expires);
            if let Some(s) = form.get("scope") {
                state.scopes.push(s.clone());
            }
            (token, lifetime)
        };
        self.issued.fetch_add(1, Ordering::Relaxed);
        (
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": lifetime.as_secs(),
            })
            .to_string(),
        )
            .into_response()
    }
}

fn oauth_error(status: StatusCode, code: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({"error": code, "error_description": code}).to_string(),
    )
        .into_response()
}

/// Checks an RS256 JWT assertion: signature by a trusted key, `iss`, `sub`, `aud`, `exp`.
fn verify_assertion(
    jwt: &str,
    keys: &[(Option<String>, Vec<u8>)],
    client_id: &str,
    audience: &str,
    now: Timestamp,
) -> bool {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = jwt.split('.');
    let (Some(h), Some(c), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let json = |p: &str| {
        b64.decode(p)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
    };
    let (Some(header), Some(claims), Ok(sig)) = (json(h), json(c), b64.decode(sig)) else {
        return false;
    };
    if header["alg"] != "RS256" {
        return false;
    }
    let kid = header["kid"].as_str();
    let signing_input = &jwt[..h.len() + 1 + c.len()];
    let signed = keys
        .iter()
        .filter(|(k, _)| kid.is_none() || k.is_none() || k.as_deref() == kid)
        .any(|(_, der)| {
            ring::signature::UnparsedPublicKey::new(
                &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                der,
            )
            .verify(signing_input.as_bytes(), &sig)
            .is_ok()
        });
    signed
        && claims["iss"] == client_id
        && claims["sub"].as_str().is_some_and(|s| !s.is_empty())
        && claims["aud"] == audience
        && claims["exp"].as_i64().is_some_and(|e| e > now.as_second())
}
