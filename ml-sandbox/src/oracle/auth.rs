//! Who may call: Basic credentials, bearer tokens, and the IDCS-style token endpoint
//! (client credentials and RS256 JWT user assertions).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::{SignedDuration, Timestamp};

use super::{Shared, adf_error};

/// The audience a JWT user assertion must name (the identity domain).
pub const JWT_AUDIENCE: &str = "https://identity.oraclecloud.com/";

/// Checks an RS256 JWT user assertion: signature by a trusted key, `iss`, `sub`, `aud`,
/// `exp`.
fn verify_assertion(
    jwt: &str,
    keys: &[(Option<String>, Vec<u8>)],
    client_id: &str,
    now: Timestamp,
) -> bool {
    use base64::Engine as _;
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
        && claims["aud"] == JWT_AUDIENCE
        && claims["exp"].as_i64().is_some_and(|e| e > now.as_second())
}

fn unauthorized() -> Response {
    let mut r = adf_error(StatusCode::UNAUTHORIZED, "authentication required");
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer realm=\"oracle\""),
    );
    r
}

fn decode_basic(v: &str) -> Option<(String, String)> {
    use base64::Engine as _;
    let b = base64::engine::general_purpose::STANDARD
        .decode(v.trim())
        .ok()?;
    let s = String::from_utf8(b).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

/// The checks every REST request passes first (a served API version, then credentials):
/// the answer when one fails.
pub(super) fn refusal(shared: &Shared, version: &str, headers: &HeaderMap) -> Option<Response> {
    if version != shared.version && version != "latest" {
        return Some(adf_error(StatusCode::NOT_FOUND, "unknown REST API version"));
    }
    (!authorised(shared, headers)).then(unauthorized)
}

fn authorised(shared: &Shared, headers: &HeaderMap) -> bool {
    let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    if let Some(b) = auth.strip_prefix("Basic ") {
        return decode_basic(b).is_some_and(|(u, p)| u == shared.user && p == shared.password);
    }
    if let Some(t) = auth.strip_prefix("Bearer ") {
        let now = shared.clock.now();
        return shared.lock().tokens.get(t).is_some_and(|exp| now < *exp);
    }
    false
}

pub(super) async fn token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let form: HashMap<String, String> = serde_urlencoded::from_str(&body).unwrap_or_default();
    let oauth_error = |status: StatusCode, e: &str| {
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({"error": e, "error_description": e}).to_string(),
        )
            .into_response()
    };
    let creds = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(decode_basic)
        .or_else(|| {
            Some((
                form.get("client_id")?.clone(),
                form.get("client_secret")?.clone(),
            ))
        });
    let Some((id, secret)) = creds else {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    };
    if id != shared.client_id || secret != shared.client_secret {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {}
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer") => {
            let keys = shared.lock().jwt_keys.clone();
            let ok = form
                .get("assertion")
                .is_some_and(|a| verify_assertion(a, &keys, &shared.client_id, shared.clock.now()));
            if !ok {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
            }
        }
        _ => return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
    }
    let now = shared.clock.now();
    let (tok, lifetime) = {
        let mut inner = shared.lock();
        let n = inner.next_token;
        inner.next_token += 1;
        let tok = format!("sbx-oracle-token-{n:08}");
        let lifetime = inner.token_lifetime;
        let exp = now
            .checked_add(SignedDuration::try_from(lifetime).unwrap_or(SignedDuration::MAX))
            .unwrap_or(Timestamp::MAX);
        inner.tokens.insert(tok.clone(), exp);
        if let Some(s) = form.get("scope") {
            inner.scopes.push(s.clone());
        }
        (tok, lifetime)
    };
    shared.token_calls.fetch_add(1, Ordering::Relaxed);
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({
            "access_token": tok,
            "token_type": "Bearer",
            "expires_in": lifetime.as_secs(),
        })
        .to_string(),
    )
        .into_response()
}
