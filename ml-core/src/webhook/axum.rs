//! Mounting a webhook receiver as an axum router (feature `axum`).
//!
//! The body is read up to the handler's limit and no further: a declared `Content-Length`
//! over the limit is refused before a byte is read, a longer body is cut off at the limit
//! and refused ([`Rejection::BodyTooLarge`]), a body that ends early is
//! [`Rejection::Truncated`]. Every method reaches the handler, so its own [`Limits`]
//! answers a `GET` (405) the same way with or without axum.
//!
//! [`Limits`]: super::Limits

use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Body;
use axum::response::IntoResponse as _;
use bytes::Bytes;

use super::{Rejection, declared_length};

/// A receiver that answers one buffered request.
#[async_trait]
pub trait WebhookHandler: Send + Sync + 'static {
    /// The largest body read.
    fn max_body(&self) -> usize;

    /// Answers a request whose body was read completely.
    async fn handle(&self, request: http::Request<Bytes>) -> http::Response<String>;
}

/// Reads the body of `request` up to `limit` bytes.
pub async fn collect(
    request: http::Request<Body>,
    limit: usize,
) -> Result<http::Request<Bytes>, Rejection> {
    let (parts, body) = request.into_parts();
    if declared_length(&parts.headers)?.is_some_and(|n| n > limit as u64) {
        return Err(Rejection::BodyTooLarge);
    }
    match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => Ok(http::Request::from_parts(parts, bytes)),
        Err(e) => {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(s) = source {
                if s.is::<http_body_util::LengthLimitError>() {
                    return Err(Rejection::BodyTooLarge);
                }
                source = s.source();
            }
            Err(Rejection::Truncated)
        }
    }
}

/// A router answering every request at `path` with `handler`.
pub fn router<H: WebhookHandler + ?Sized>(path: &str, handler: Arc<H>) -> axum::Router {
    async fn serve<H: WebhookHandler + ?Sized>(
        axum::extract::State(handler): axum::extract::State<Arc<H>>,
        request: http::Request<Body>,
    ) -> axum::response::Response {
        match collect(request, handler.max_body()).await {
            Ok(request) => handler.handle(request).await.into_response(),
            Err(r) => {
                tracing::info!(reason = r.as_str(), "refused a webhook request");
                r.to_response().into_response()
            }
        }
    }

    axum::Router::new()
        .route(path, axum::routing::any(serve::<H>))
        .with_state(handler)
}
