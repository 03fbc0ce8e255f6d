//! [`ApiClient`]: the one request helper every connector sends through.

use std::fmt;
use std::sync::Arc;

use ::http::header::AUTHORIZATION;
use ::http::{HeaderMap, StatusCode};
use jiff::Timestamp;

use super::transport::{
    DEFAULT_BODY_LIMIT, Request, ReqwestTransport, Response, Transport, TransportError,
};
use crate::auth::{Authorization, Credentials};
use crate::clock::{Clock, SystemClock};
use crate::error::Error;

/// What a rejected answer says about the credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthFailure {
    /// Not an authentication failure.
    None,
    /// The token expired or was revoked in between (HTTP 401): with refreshable
    /// credentials, drop the token, fetch a new one and send once more.
    Expired,
    /// The credentials are refused for good (revoked, wrong): drop a refreshable token so
    /// the next call fetches one again (a fixed credential is then picked up), but do not
    /// send again now.
    Refused,
}

/// What a connector tells [`ApiClient`] about its remote system: how to read an error
/// answer, and how to word failures that happened before there was one.
///
/// `parse_error` gets the clock's `now` (for an HTTP-date `Retry-After` and reset
/// headers), never reading the wall clock itself, so tests control it.
pub trait ErrorModel: Send + Sync {
    /// The connector's error type.
    type Error: Send;

    /// The error an answer stands for, or `None` when it is a success. Most APIs:
    /// `(!status.is_success()).then(|| ...)`; Slack also fails a 200 with `"ok":false`.
    fn parse_error(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
        now: Timestamp,
    ) -> Option<Self::Error>;

    /// A request that got no usable answer (the error never names the URL).
    fn transport_error(&self, err: TransportError) -> Self::Error;

    /// The credentials could not be obtained (the token endpoint failed).
    fn credentials_error(&self, err: Error) -> Self::Error;

    /// What an error answer says about the credentials. The default: HTTP 401 means the
    /// token expired.
    fn auth_failure(&self, status: StatusCode, err: &Self::Error) -> AuthFailure {
        let _ = err;
        if status == StatusCode::UNAUTHORIZED {
            AuthFailure::Expired
        } else {
            AuthFailure::None
        }
    }
}

/// Sends requests with credentials through a [`Transport`], reads bounded answers and
/// maps failures through the connector's [`ErrorModel`].
///
/// One [`send`](Self::send):
/// 1. sets `Authorization` from the [`Credentials`] (a cached token is fetched only when
///    needed);
/// 2. exchanges the request, reading at most [`body_limit`](Self::with_body_limit) bytes
///    of the answer (a longer one is refused while it streams, never buffered whole);
/// 3. asks the model's `parse_error` whether the answer is an error, with the clock's now;
/// 4. on an expired token (HTTP 401, or what the model's `auth_failure` says) with
///    refreshable credentials, drops the token and sends once more, and only once.
///
/// Retries of retryable failures are not done here: wrap calls in
/// [`crate::retry::retry`], which honours the `Retry-After` the model parsed.
///
/// Cheap to clone.
#[derive(Clone)]
pub struct ApiClient {
    transport: Arc<dyn Transport>,
    credentials: Credentials,
    clock: Arc<dyn Clock>,
    body_limit: usize,
}

impl fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiClient")
            .field("transport", &self.transport)
            .field("credentials", &self.credentials)
            .field("body_limit", &self.body_limit)
            .finish_non_exhaustive()
    }
}

impl ApiClient {
    /// A client over `transport`, without credentials, on the system clock, reading
    /// answers of up to [`DEFAULT_BODY_LIMIT`].
    pub fn new(transport: Arc<dyn Transport>) -> Self {
        Self {
            transport,
            credentials: Credentials::None,
            clock: Arc::new(SystemClock),
            body_limit: DEFAULT_BODY_LIMIT,
        }
    }

    /// A client over a `reqwest::Client` ([`ReqwestTransport`]).
    pub fn reqwest(client: reqwest::Client) -> Self {
        Self::new(Arc::new(ReqwestTransport::new(client)))
    }

    /// Sends `credentials` with every request.
    #[must_use]
    pub fn with_credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = credentials;
        self
    }

    /// Uses `clock` for the `now` given to `parse_error`.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Refuses answers whose body is longer than `limit` bytes.
    #[must_use]
    pub fn with_body_limit(mut self, limit: usize) -> Self {
        self.body_limit = limit;
        self
    }

    /// The credentials sent.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The body limit in bytes.
    pub fn body_limit(&self) -> usize {
        self.body_limit
    }

    /// Sends `request` (see the type's docs) and returns a successful answer.
    pub async fn send<M: ErrorModel>(
        &self,
        model: &M,
        request: Request,
    ) -> Result<Response, M::Error> {
        let mut refreshed = false;
        loop {
            let mut attempt = request.clone();
            let token = match self
                .credentials
                .authorization()
                .await
                .map_err(|e| model.credentials_error(e))?
            {
                Some(Authorization { value, token }) => {
                    attempt.headers_mut().insert(AUTHORIZATION, value);
                    token
                }
                None => None,
            };
            let response = self
                .transport
                .exchange(attempt, self.body_limit)
                .await
                .map_err(|e| model.transport_error(e))?;
            let Some(err) = model.parse_error(
                response.status,
                &response.headers,
                &response.body,
                self.clock.now(),
            ) else {
                return Ok(response);
            };
            let failure = model.auth_failure(response.status, &err);
            if let (Some(token), Credentials::Tokens(cache)) = (&token, &self.credentials)
                && failure != AuthFailure::None
            {
                cache.invalidate(token);
                if failure == AuthFailure::Expired && !refreshed {
                    tracing::debug!(
                        status = response.status.as_u16(),
                        "credentials rejected: refreshing the token once"
                    );
                    refreshed = true;
                    continue;
                }
            }
            return Err(err);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use async_trait::async_trait;
    use secrecy::SecretString;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::auth::{AccessToken, TokenCache, TokenProvider};
    use crate::error::ErrorClass;
    use crate::http::{ClientOptions, TransportErrorKind};

    const SECRET: &str = "hunter2-s3cret";

    #[derive(Debug, PartialEq)]
    enum TestError {
        Status(u16),
        Transport(TransportError),
        Credentials(String),
    }

    struct Model;

    impl ErrorModel for Model {
        type Error = TestError;

        fn parse_error(
            &self,
            status: StatusCode,
            _headers: &HeaderMap,
            _body: &[u8],
            _now: Timestamp,
        ) -> Option<TestError> {
            (!status.is_success()).then_some(TestError::Status(status.as_u16()))
        }

        fn transport_error(&self, err: TransportError) -> TestError {
            TestError::Transport(err)
        }

        fn credentials_error(&self, err: Error) -> TestError {
            TestError::Credentials(err.to_string())
        }
    }

    fn api() -> ApiClient {
        ApiClient::reqwest(
            ClientOptions::default()
                .with_timeout(Duration::from_secs(5))
                .client()
                .expect("client"),
        )
    }

    async fn read_head(socket: &mut TcpStream) -> Option<String> {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = socket.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Some(String::from_utf8_lossy(&head).into_owned())
    }

    /// Answers each connection with the next of `statuses` (the last one repeats); keeps
    /// every request head.
    async fn serve(statuses: Vec<u16>) -> (String, std::sync::Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let heads = std::sync::Arc::new(Mutex::new(Vec::new()));
        let seen = std::sync::Arc::clone(&heads);
        tokio::spawn(async move {
            let mut n = 0;
            while let Ok((mut socket, _)) = listener.accept().await {
                let Some(head) = read_head(&mut socket).await else {
                    continue;
                };
                seen.lock().expect("heads").push(head);
                let status = statuses[n.min(statuses.len() - 1)];
                n += 1;
                let answer = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            }
        });
        (format!("http://{addr}/api"), heads)
    }

    /// Token `n` is `token-n`.
    #[derive(Debug, Default)]
    struct Counting(AtomicUsize);

    #[async_trait]
    impl TokenProvider for Counting {
        async fn fetch_token(&self) -> crate::Result<AccessToken> {
            let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(AccessToken::new(format!("token-{n}"), None))
        }
    }

    fn tokens() -> (std::sync::Arc<Counting>, Credentials) {
        let provider = std::sync::Arc::new(Counting::default());
        let cache = TokenCache::new(std::sync::Arc::clone(&provider) as _);
        (provider, Credentials::Tokens(std::sync::Arc::new(cache)))
    }

    #[tokio::test]
    async fn a_401_refreshes_the_token_exactly_once() {
        // Always 401: one refresh, two requests, then the error.
        let (url, heads) = serve(vec![401]).await;
        let (provider, credentials) = tokens();
        let api = api().with_credentials(credentials);
        let err = api
            .send(&Model, Request::get(&url).expect("url"))
            .await
            .expect_err("401");
        assert_eq!(err, TestError::Status(401));
        assert_eq!(provider.0.load(Ordering::SeqCst), 2);
        let heads = heads.lock().expect("heads").clone();
        assert_eq!(heads.len(), 2);
        assert!(
            heads[0].contains("authorization: Bearer token-1"),
            "{}",
            heads[0]
        );
        assert!(
            heads[1].contains("authorization: Bearer token-2"),
            "{}",
            heads[1]
        );

        // 401 then 200: the retry succeeds with the new token.
        let (url, heads) = serve(vec![401, 200]).await;
        let (provider, credentials) = tokens();
        let api = api.with_credentials(credentials);
        let response = api
            .send(&Model, Request::get(&url).expect("url"))
            .await
            .expect("second round");
        assert_eq!(response.body, b"ok");
        assert_eq!(provider.0.load(Ordering::SeqCst), 2);
        assert_eq!(heads.lock().expect("heads").len(), 2);
    }

    #[tokio::test]
    async fn other_errors_and_static_credentials_are_not_refreshed() {
        let (url, heads) = serve(vec![403]).await;
        let (provider, credentials) = tokens();
        let err = api()
            .with_credentials(credentials)
            .send(&Model, Request::get(&url).expect("url"))
            .await
            .expect_err("403");
        assert_eq!(err, TestError::Status(403));
        assert_eq!(provider.0.load(Ordering::SeqCst), 1);
        assert_eq!(heads.lock().expect("heads").len(), 1);

        let (url, heads) = serve(vec![401]).await;
        let basic = crate::auth::BasicCredentials::new("user", SECRET);
        let err = api()
            .with_credentials(Credentials::Basic(basic))
            .send(&Model, Request::get(&url).expect("url"))
            .await
            .expect_err("401");
        assert_eq!(err, TestError::Status(401));
        assert_eq!(heads.lock().expect("heads").len(), 1);
    }

    /// Streams a chunked body for ever; returns how many body bytes it managed to write
    /// before the client hung up.
    async fn endless_body(declared: Option<u64>) -> (String, tokio::task::JoinHandle<usize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            read_head(&mut socket).await.expect("head");
            let head = match declared {
                Some(n) => format!("HTTP/1.1 200 OK\r\ncontent-length: {n}\r\n\r\n"),
                None => "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_owned(),
            };
            socket.write_all(head.as_bytes()).await.expect("head");
            let chunk = vec![b'x'; 64 * 1024];
            let mut written = 0usize;
            loop {
                let framed = if declared.is_some() {
                    socket.write_all(&chunk).await
                } else {
                    let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
                    framed.extend_from_slice(&chunk);
                    framed.extend_from_slice(b"\r\n");
                    socket.write_all(&framed).await
                };
                if framed.is_err() || written > 1 << 30 {
                    return written;
                }
                written += chunk.len();
            }
        });
        (format!("http://{addr}/big"), task)
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused_while_streaming() {
        let limit = 256 * 1024;
        let (url, server) = endless_body(None).await;
        let err = api()
            .with_body_limit(limit)
            .send(&Model, Request::get(&url).expect("url"))
            .await
            .expect_err("too large");
        let TestError::Transport(err) = err else {
            panic!("expected a transport error, got {err:?}");
        };
        assert_eq!(err.kind, TransportErrorKind::BodyTooLarge);
        assert_eq!(err.class, ErrorClass::Permanent);
        // The client hung up: the server could not write more than the limit plus what
        // the socket buffers hold, far from the gigabyte it would send.
        let written = server.await.expect("server");
        assert!(written < 64 << 20, "{written} bytes were sent");

        // A POST that was answered with too large a body may have been applied.
        let (url, _server) = endless_body(None).await;
        let err = api()
            .with_body_limit(limit)
            .send(&Model, Request::post(&url).expect("url"))
            .await
            .expect_err("too large");
        assert!(
            matches!(&err, TestError::Transport(e) if e.class == ErrorClass::InDoubt),
            "{err:?}"
        );

        // A declared length over the limit is refused before reading.
        let (url, server) = endless_body(Some(10 << 30)).await;
        let err = api()
            .with_body_limit(limit)
            .send(&Model, Request::get(&url).expect("url"))
            .await
            .expect_err("declared too large");
        assert!(
            matches!(&err, TestError::Transport(e) if e.kind == TransportErrorKind::BodyTooLarge),
            "{err:?}"
        );
        assert!(server.await.expect("server") < 64 << 20);
    }

    #[tokio::test]
    async fn transport_errors_name_no_url_and_no_secret() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let url = format!("http://user:{SECRET}@{addr}/secret-path?token={SECRET}");
        let err = api()
            .with_credentials(Credentials::Bearer(SecretString::from(SECRET)))
            .send(&Model, Request::post(&url).expect("url"))
            .await
            .expect_err("refused");
        let TestError::Transport(err) = err else {
            panic!("expected a transport error, got {err:?}");
        };
        assert_eq!(err.kind, TransportErrorKind::Connect);
        assert_eq!(err.class, ErrorClass::RETRYABLE);
        for text in [err.to_string(), format!("{err:?}")] {
            for leak in [SECRET, "secret-path", &addr.to_string(), "127.0.0.1"] {
                assert!(!text.contains(leak), "{leak} in {text}");
            }
        }
        let request = Request::post(&url).expect("url");
        let debug = format!("{request:?}");
        assert!(!debug.contains(SECRET), "{debug}");
    }

    #[tokio::test]
    async fn a_failed_token_fetch_is_a_credentials_error() {
        #[derive(Debug)]
        struct Failing;

        #[async_trait]
        impl TokenProvider for Failing {
            async fn fetch_token(&self) -> crate::Result<AccessToken> {
                Err(Error::Auth {
                    class: ErrorClass::Permanent,
                    message: "invalid_client".into(),
                })
            }
        }
        let cache = TokenCache::new(std::sync::Arc::new(Failing));
        let err = api()
            .with_credentials(Credentials::Tokens(std::sync::Arc::new(cache)))
            .send(&Model, Request::get("http://127.0.0.1:9/").expect("url"))
            .await
            .expect_err("no token");
        assert!(
            matches!(&err, TestError::Credentials(m) if m.contains("invalid_client")),
            "{err:?}"
        );
    }
}
