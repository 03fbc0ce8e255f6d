//! The transport seam: one exchange of a [`Request`] for a [`Response`] whose body is
//! bounded, or a [`TransportError`] that never names the URL.
//!
//! [`ReqwestTransport`] is the HTTP implementation every connector uses. A connector that
//! does not speak plain HTTP (SAP RFC over SOAP, a relay through the customer's network)
//! implements [`Transport`] itself and keeps [`ApiClient`](super::ApiClient)'s credentials,
//! refresh-on-401, error parsing and, through [`crate::retry`], the retry model.

use std::fmt;

use ::http::header::CONTENT_TYPE;
use ::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use async_trait::async_trait;
use reqwest::Url;
use serde::Serialize;

use super::classify::{classify_transport, describe_transport};
use crate::error::{Error, ErrorClass};

/// The largest response body read by default: 32 MiB (a page of 500 expanded ERP rows is a
/// few MiB; anything far larger is a misbehaving server or proxy).
pub const DEFAULT_BODY_LIMIT: usize = 32 * 1024 * 1024;

/// One request, as a [`Transport`] sends it.
///
/// `Debug` shows the method, the URL without its query, the header names and the body's
/// length: never a query value, a header value or the body, which may hold secrets.
#[derive(Clone)]
pub struct Request {
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Option<Vec<u8>>,
    idempotent: bool,
}

impl Request {
    /// A request of `method` to `url`. `GET`, `HEAD`, `PUT`, `DELETE` and `OPTIONS` are
    /// idempotent, the others not (see [`idempotent`](Self::idempotent)).
    ///
    /// Fails with [`Error::Config`] naming `url` when it is not an absolute URL; the URL
    /// itself is not repeated.
    pub fn new(method: Method, url: &str) -> Result<Self, Error> {
        let url = Url::parse(url)
            .map_err(|e| Error::config("url", format!("not an absolute URL: {e}")))?;
        Ok(Self::from_url(method, url))
    }

    /// A request of `method` to an already parsed `url`.
    pub fn from_url(method: Method, url: Url) -> Self {
        let idempotent = method.is_idempotent();
        Self {
            method,
            url,
            headers: HeaderMap::new(),
            body: None,
            idempotent,
        }
    }

    /// A `GET` of `url`.
    pub fn get(url: &str) -> Result<Self, Error> {
        Self::new(Method::GET, url)
    }

    /// A `POST` to `url`.
    pub fn post(url: &str) -> Result<Self, Error> {
        Self::new(Method::POST, url)
    }

    /// Appends query parameters (form-encoded, as browsers and reqwest do).
    #[must_use]
    pub fn query<K: AsRef<str>, V: AsRef<str>>(mut self, pairs: &[(K, V)]) -> Self {
        if !pairs.is_empty() {
            let mut query = self.url.query_pairs_mut();
            for (k, v) in pairs {
                query.append_pair(k.as_ref(), v.as_ref());
            }
        }
        self
    }

    /// Sets a header (replacing one of the same name).
    #[must_use]
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// Sets the body and its `Content-Type`.
    #[must_use]
    pub fn body(mut self, content_type: &'static str, body: Vec<u8>) -> Self {
        self.headers
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        self.body = Some(body);
        self
    }

    /// A JSON body (`application/json`).
    pub fn json<T: Serialize + ?Sized>(self, value: &T) -> Result<Self, Error> {
        let bytes = serde_json::to_vec(value)
            .map_err(|e| Error::InvalidRecord(format!("cannot encode the request: {e}")))?;
        Ok(self.body("application/json", bytes))
    }

    /// A form body (`application/x-www-form-urlencoded`).
    pub fn form<T: Serialize + ?Sized>(self, value: &T) -> Result<Self, Error> {
        let text = serde_urlencoded::to_string(value)
            .map_err(|e| Error::InvalidRecord(format!("cannot encode the form: {e}")))?;
        Ok(self.body("application/x-www-form-urlencoded", text.into_bytes()))
    }

    /// Says whether repeating the request is harmless (a `POST` carrying an idempotency
    /// key the server honours, a read sent as `POST`). It decides between retryable and
    /// in doubt when the request may have reached the server but got no answer.
    #[must_use]
    pub fn idempotent(mut self, idempotent: bool) -> Self {
        self.idempotent = idempotent;
        self
    }

    /// The method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The URL, query included.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The headers, to change.
    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        &mut self.headers
    }

    /// The body, if any.
    pub fn body_bytes(&self) -> Option<&[u8]> {
        self.body.as_deref()
    }

    /// Whether repeating the request is harmless.
    pub fn is_idempotent(&self) -> bool {
        self.idempotent
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut url = self.url.clone();
        url.set_query(None);
        let _ = url.set_password(None);
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("url", &url.as_str())
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("body_len", &self.body.as_ref().map(Vec::len))
            .field("idempotent", &self.idempotent)
            .finish()
    }
}

/// An answer: status, headers and the whole body (at most the limit it was read with).
#[derive(Clone)]
pub struct Response {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> serde_json::Result<T> {
        serde_json::from_slice(&self.body)
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// What kind of transport failure happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// No connection could be made (DNS, refused, TLS handshake, connect timeout): nothing
    /// was sent.
    Connect,
    /// The request or its answer took too long.
    Timeout,
    /// The request could not be built (bad header, bad URL): repeating it cannot help.
    Request,
    /// The connection failed while sending or waiting for the answer.
    Send,
    /// The answer's body could not be read to its end.
    Body,
    /// The answer's body is larger than the limit: it was refused, not read.
    BodyTooLarge,
}

/// A request that got no usable answer. The message never contains the URL, a header or
/// the body; the class says whether the request may have been applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TransportError {
    /// How to handle it.
    pub class: ErrorClass,
    /// What kind of failure.
    pub kind: TransportErrorKind,
    /// What happened, without URL or secret.
    pub message: String,
}

impl TransportError {
    /// A transport error of `kind`.
    pub fn new(kind: TransportErrorKind, class: ErrorClass, message: impl Into<String>) -> Self {
        Self {
            class,
            kind,
            message: message.into(),
        }
    }

    /// A reqwest error, classified by [`classify_transport`] and worded by
    /// [`describe_transport`].
    pub fn from_reqwest(err: &reqwest::Error, idempotent: bool) -> Self {
        let kind = if err.is_connect() {
            TransportErrorKind::Connect
        } else if err.is_timeout() {
            TransportErrorKind::Timeout
        } else if err.is_builder() {
            TransportErrorKind::Request
        } else if err.is_body() || err.is_decode() {
            TransportErrorKind::Body
        } else {
            TransportErrorKind::Send
        };
        Self::new(
            kind,
            classify_transport(err, idempotent),
            describe_transport(err),
        )
    }

    /// The body was larger than `limit` bytes. A request that was not idempotent was
    /// applied (the server answered), so it is in doubt; an idempotent one would get the
    /// same answer again, so it is permanent.
    pub fn body_too_large(limit: usize, idempotent: bool) -> Self {
        Self::new(
            TransportErrorKind::BodyTooLarge,
            if idempotent {
                ErrorClass::Permanent
            } else {
                ErrorClass::InDoubt
            },
            format!("response body larger than {limit} bytes refused"),
        )
    }
}

/// Exchanges one request for one answer.
///
/// Contract:
/// - Any answer the remote side gave, whatever its status, is `Ok`: judging it is the
///   caller's job (its `parse_error`).
/// - The body is read to its end but never beyond `body_limit` bytes: a longer body (or
///   one declared longer) fails with [`TransportError::body_too_large`] without being
///   read further.
/// - A failure is a [`TransportError`] classified by whether the request may have been
///   applied ([`Request::is_idempotent`] turns in doubt into retryable), worded without
///   URL, header or body.
/// - `Debug` never shows a secret.
#[async_trait]
pub trait Transport: Send + Sync + fmt::Debug {
    /// Sends `request` and reads its answer.
    async fn exchange(
        &self,
        request: Request,
        body_limit: usize,
    ) -> Result<Response, TransportError>;
}

/// [`Transport`] over a `reqwest::Client` (build it with
/// [`ClientOptions::client`](super::ClientOptions::client)), streaming the body so that an
/// oversized one is refused after at most `body_limit` bytes.
#[derive(Clone, Debug)]
pub struct ReqwestTransport {
    client: reqwest::Client,
}

impl ReqwestTransport {
    /// A transport sending through `client`.
    pub fn new(client: reqwest::Client) -> Self {
        Self { client }
    }

    /// The client.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }
}

#[async_trait]
impl Transport for ReqwestTransport {
    async fn exchange(
        &self,
        request: Request,
        body_limit: usize,
    ) -> Result<Response, TransportError> {
        let idempotent = request.idempotent;
        let mut builder = self
            .client
            .request(request.method, request.url)
            .headers(request.headers);
        if let Some(body) = request.body {
            builder = builder.body(body);
        }
        let mut response = builder
            .send()
            .await
            .map_err(|e| TransportError::from_reqwest(&e, idempotent))?;
        let status = response.status();
        let headers = std::mem::take(response.headers_mut());
        if response
            .content_length()
            .is_some_and(|n| n > body_limit as u64)
        {
            return Err(TransportError::body_too_large(body_limit, idempotent));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| TransportError::from_reqwest(&e, idempotent))?
        {
            if body.len().saturating_add(chunk.len()) > body_limit {
                // Dropping the response closes the connection: nothing more is read.
                return Err(TransportError::body_too_large(body_limit, idempotent));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}
