//! Who may call: Basic credentials or a bearer token from the shared
//! [`TokenIssuer`](crate::oauth2::TokenIssuer), which also serves the IDCS-style token
//! endpoint (client credentials and RS256 JWT user assertions).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;

use super::{Shared, adf_error};
use crate::emulator::basic_credentials;

/// The audience a JWT user assertion must name (the identity domain).
pub const JWT_AUDIENCE: &str = "https://identity.oraclecloud.com/";

fn unauthorized() -> Response {
    let mut r = adf_error(StatusCode::UNAUTHORIZED, "authentication required");
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer realm=\"oracle\""),
    );
    r
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
    if let Some((u, p)) = basic_credentials(headers) {
        return u == shared.user && p == shared.password;
    }
    shared.issuer.authorises(headers)
}

pub(super) async fn token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    shared.issuer.answer(&headers, &body)
}
