//! The X3 Cloud token API (rotating refresh tokens that refuse reuse) and the checks the
//! data routes make: Basic (Syracuse user), a live cloud access token, or the on-premises
//! connected application's HS256 JWT.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit as _, Mac as _};
use jiff::Timestamp;
use std::sync::Arc;

use super::Shared;
use super::state::{Refresh, lock};
use crate::emulator::basic_credentials;

fn oauth_error(status: StatusCode, code: &str, description: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({"error": code, "error_description": description}).to_string(),
    )
        .into_response()
}

/// Mints a refresh token valid `lifetime` from `now` (a pairing's result).
pub(super) fn pair(shared: &Shared, now: Timestamp, lifetime: Duration) -> String {
    let mut inner = lock(&shared.inner);
    inner.tokens.next += 1;
    let token = format!("sbx-x3-refresh-{:08}", inner.tokens.next);
    let expires_at = ml_core::clock::add(now, lifetime);
    inner.tokens.refresh.insert(
        token.clone(),
        Refresh {
            expires_at,
            spent: false,
        },
    );
    token
}

/// `POST v1/token`: `grant_type=refresh_token` with `refresh_token`, `client_id`,
/// `client_secret` (form fields or the client by HTTP Basic). The answer: a new access
/// token (`expires_in` 300) and a new refresh token; the old refresh token is spent and
/// refused from then on (`invalid_grant`), as are unknown and expired ones.
pub(super) async fn token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let form: HashMap<String, String> = serde_urlencoded::from_str(&body).unwrap_or_default();
    let (id, secret) = match basic_credentials(&headers) {
        Some((u, p)) => (Some(u), Some(p)),
        None => (
            form.get("client_id").cloned(),
            form.get("client_secret").cloned(),
        ),
    };
    if id.as_deref() != Some(shared.client_id.as_str())
        || secret.as_deref() != Some(shared.client_secret.as_str())
    {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client or wrong secret",
        );
    }
    match form.get("grant_type").map(String::as_str) {
        Some("refresh_token") => {}
        Some(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only refresh_token",
            );
        }
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is required",
            );
        }
    }
    let Some(presented) = form.get("refresh_token") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "refresh_token is required",
        );
    };
    let now = shared.clock.now();
    let mut inner = lock(&shared.inner);
    let sliding = inner.sliding;
    let report_expiry = inner.report_refresh_expiry;
    let expires_at = match inner.tokens.refresh.get_mut(presented) {
        None => {
            inner.tokens.refused += 1;
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "unknown refresh token",
            );
        }
        Some(r) if r.spent => {
            inner.tokens.refused += 1;
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "refresh token already used",
            );
        }
        Some(r) if now >= r.expires_at => {
            inner.tokens.refused += 1;
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "refresh token expired: pair again",
            );
        }
        Some(r) => {
            r.spent = true;
            if sliding {
                ml_core::clock::add(now, shared.refresh_lifetime)
            } else {
                r.expires_at
            }
        }
    };
    inner.tokens.next += 1;
    let n = inner.tokens.next;
    let access = format!("sbx-x3-access-{n:08}");
    let refresh = format!("sbx-x3-refresh-{n:08}");
    let access_exp = ml_core::clock::add(now, shared.access_lifetime);
    inner.tokens.access.insert(access.clone(), access_exp);
    inner.tokens.refresh.insert(
        refresh.clone(),
        Refresh {
            expires_at,
            spent: false,
        },
    );
    inner.tokens.renewals += 1;
    drop(inner);
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        {
            let mut answer = serde_json::json!({
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": shared.access_lifetime.as_secs(),
                "refresh_token": refresh,
            });
            if report_expiry {
                answer["refresh_token_expires_in"] =
                    ml_core::clock::until(now, expires_at).as_secs().into();
            }
            answer.to_string()
        },
    )
        .into_response()
}

/// Whether the request is authorised: Basic with the Syracuse user, a live cloud access
/// token, or (`jwt_audience` set: GraphQL) a valid self-signed HS256 JWT.
pub(super) fn authorised(shared: &Shared, headers: &HeaderMap, jwt_audience: Option<&str>) -> bool {
    if let Some((u, p)) = basic_credentials(headers) {
        return u == shared.user && p == shared.password;
    }
    let Some(bearer) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
    else {
        return false;
    };
    let now = shared.clock.now();
    if lock(&shared.inner)
        .tokens
        .access
        .get(bearer)
        .is_some_and(|exp| now < *exp)
    {
        return true;
    }
    jwt_audience.is_some_and(|aud| valid_jwt(shared, bearer, aud, now))
}

/// An HS256 JWT signed with the client secret, `iss` the client id, `aud` the endpoint,
/// `exp` in the future and no further than the connected application's token validity
/// after `iat`.
fn valid_jwt(shared: &Shared, jwt: &str, audience: &str, now: Timestamp) -> bool {
    let mut parts = jwt.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let decode = |p: &str| -> Option<serde_json::Value> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).ok()?).ok()
    };
    let (Some(header), Some(claims)) = (decode(h), decode(c)) else {
        return false;
    };
    if header["alg"] != "HS256" {
        return false;
    }
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(shared.client_secret.as_bytes())
    else {
        return false;
    };
    mac.update(format!("{h}.{c}").as_bytes());
    let Ok(sig) = URL_SAFE_NO_PAD.decode(s) else {
        return false;
    };
    if mac.verify_slice(&sig).is_err() {
        return false;
    }
    let (Some(iat), Some(exp)) = (claims["iat"].as_i64(), claims["exp"].as_i64()) else {
        return false;
    };
    let validity = i64::try_from(shared.jwt_validity.as_secs()).unwrap_or(i64::MAX);
    claims["iss"] == shared.client_id.as_str()
        && claims["aud"] == audience
        && now.as_second() < exp
        && exp - iat <= validity
        && iat <= now.as_second() + 60
}
