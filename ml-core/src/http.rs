//! The HTTP client every connector uses: one [`ClientOptions`] with timeouts, user agent,
//! proxy and TLS (rustls on the *ring* provider, certificates checked by the platform
//! verifier, so the operating system's trust store and its corporate CAs apply).
//!
//! ```
//! use std::time::Duration;
//! use ml_core::http::ClientOptions;
//!
//! let options = ClientOptions::default()
//!     .with_timeout(Duration::from_secs(60))
//!     .with_user_agent("acme-erp-bridge/2.1");
//! let client: reqwest::Client = options.client()?;
//! # Ok::<(), ml_core::error::Error>(())
//! ```
//!
//! A host that already has a configured `reqwest::Client` hands it over with
//! [`ClientOptions::with_client`]; the other options are then ignored.
//!
//! # TLS
//!
//! Each client gets its own rustls configuration on the *ring* provider (reqwest is built
//! with `rustls-no-provider`, which avoids aws-lc-rs and its C build), and nothing is
//! installed process-wide, so a host keeps its own choice of default provider. The flip
//! side: in a process where no default provider is installed (and no other crate enables
//! reqwest's `rustls` feature), `reqwest::Client::new()` and
//! `reqwest::Client::builder().build()` panic. Build clients with
//! [`ClientOptions::client`] instead, in tests too.
//!
//! # Sending
//!
//! [`ApiClient`] is the one request helper: credentials header, one token refresh after a
//! 401, a bounded response body (refused while it streams), and failures mapped by the
//! connector's [`ErrorModel`] (its `parse_error`, with an injected clock). It sends through
//! a [`Transport`] ([`ReqwestTransport`] for HTTP), the seam where a non-HTTP transport
//! (SAP RFC, a relay) plugs into the same error and retry model.
//!
//! # Classification
//!
//! [`classify_status`] maps an HTTP status and its headers to a class (honouring
//! `Retry-After`, parsed by [`parse_retry_after`]); [`classify_transport`] does the same for
//! a request that got no answer at all, and [`describe_transport`] words it without the
//! URL. Connectors call them from their `parse_error`, and refine the result with what
//! only they know (error bodies, `x-ratelimit-reset`, Slack's `ratelimited`, Twilio's
//! 20429).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ::http::HeaderValue;
use reqwest::Url;

use crate::error::{Error, Result};

mod classify;
mod client;
mod transport;

pub use classify::{classify_status, classify_transport, describe_transport, parse_retry_after};
pub use client::{ApiClient, AuthFailure, ErrorModel};
pub use transport::{
    DEFAULT_BODY_LIMIT, Request, ReqwestTransport, Response, Transport, TransportError,
    TransportErrorKind,
};

/// The user agent sent when none is set: `ml-connector/<version>`.
pub const DEFAULT_USER_AGENT: &str = concat!("ml-connector/", env!("CARGO_PKG_VERSION"));

/// How connectors build their HTTP client.
///
/// Defaults: connect timeout 10 s, request timeout 30 s (the whole exchange, body
/// included), user agent [`DEFAULT_USER_AGENT`], idle pooled connections closed after 90 s,
/// and the proxy taken from the environment (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`,
/// `NO_PROXY`) unless [`with_proxy`](Self::with_proxy) names one.
///
/// `Debug` hides the password of a proxy URL.
#[derive(Clone)]
pub struct ClientOptions {
    connect_timeout: Duration,
    timeout: Duration,
    user_agent: String,
    proxy: Option<String>,
    pool_idle_timeout: Option<Duration>,
    client: Option<reqwest::Client>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
            user_agent: DEFAULT_USER_AGENT.to_owned(),
            proxy: None,
            pool_idle_timeout: Some(Duration::from_secs(90)),
            client: None,
        }
    }
}

impl ClientOptions {
    /// Sets how long establishing a connection (TCP and TLS) may take.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets how long a whole request may take, from connecting to the end of the response
    /// body.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the `User-Agent` header.
    pub fn with_user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// Sends every request through this proxy (`http://` or `https://`, credentials allowed
    /// as `http://user:password@proxy:3128`) instead of the one from the environment. The
    /// URL is checked by [`client`](Self::client).
    pub fn with_proxy(mut self, url: impl Into<String>) -> Self {
        self.proxy = Some(url.into());
        self
    }

    /// Sets how long an idle pooled connection is kept; `None` keeps it until the server
    /// closes it.
    pub fn with_pool_idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.pool_idle_timeout = timeout;
        self
    }

    /// Uses the host's own client as is; the other options are then ignored.
    pub fn with_client(mut self, client: reqwest::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// The connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The user agent.
    pub fn user_agent(&self) -> &str {
        &self.user_agent
    }

    /// The host's client, or a new one built from these options.
    ///
    /// Fails with [`Error::Config`] naming the setter (`with_proxy`, `with_user_agent`,
    /// `with_timeout`, `with_connect_timeout`) when a value is invalid, or `tls` when the
    /// platform's certificate verifier cannot be set up.
    pub fn client(&self) -> Result<reqwest::Client> {
        if let Some(client) = &self.client {
            return Ok(client.clone());
        }
        if self.timeout.is_zero() {
            return Err(Error::config("with_timeout", "must be greater than zero"));
        }
        if self.connect_timeout.is_zero() {
            return Err(Error::config(
                "with_connect_timeout",
                "must be greater than zero",
            ));
        }
        let user_agent = HeaderValue::from_str(&self.user_agent).map_err(|_| {
            Error::config(
                "with_user_agent",
                "must be visible ASCII without control characters",
            )
        })?;
        let mut builder = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config()?)
            .connect_timeout(self.connect_timeout)
            .timeout(self.timeout)
            .user_agent(user_agent)
            .pool_idle_timeout(self.pool_idle_timeout);
        if let Some(proxy) = &self.proxy {
            builder = builder.proxy(parse_proxy(proxy)?);
        }
        builder.build().map_err(|e| {
            Error::config(
                "ClientOptions",
                format!("cannot build the HTTP client: {e}"),
            )
        })
    }
}

/// rustls on *ring*, verifying with the platform verifier, speaking HTTP/1.1.
///
/// The provider is chosen here rather than installed process-wide, so the host keeps its
/// own choice of default provider.
fn tls_config() -> Result<rustls::ClientConfig> {
    use rustls_platform_verifier::BuilderVerifierExt;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(BuilderVerifierExt::with_platform_verifier)
        .map_err(|e| Error::config("tls", format!("cannot set up TLS: {e}")))?
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Checks a proxy URL; errors never repeat the URL, which may hold a password.
fn parse_proxy(raw: &str) -> Result<reqwest::Proxy> {
    let key = "with_proxy";
    let url = Url::parse(raw.trim())
        .map_err(|e| Error::config(key, format!("not a valid proxy URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::config(
            key,
            format!(
                "proxy URL scheme must be http or https, not `{}`",
                url.scheme()
            ),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Error::config(key, "proxy URL has no host"));
    }
    reqwest::Proxy::all(url)
        .map_err(|e| Error::config(key, format!("not a usable proxy URL: {}", e.without_url())))
}

/// The URL with its password, if any, replaced; unparseable input is not echoed.
fn redact_url(raw: &str) -> String {
    match Url::parse(raw.trim()) {
        Ok(mut url) => {
            if url.password().is_some() {
                // Cannot fail: a URL with a password has a host.
                let _ = url.set_password(Some("REDACTED"));
            }
            url.to_string()
        }
        Err(_) => "<invalid URL>".to_owned(),
    }
}

impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOptions")
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .field("user_agent", &self.user_agent)
            .field("proxy", &self.proxy.as_deref().map(redact_url))
            .field("pool_idle_timeout", &self.pool_idle_timeout)
            .field("client", &self.client.as_ref().map(|_| "<host client>"))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    #[test]
    fn defaults() {
        let o = ClientOptions::default();
        assert_eq!(o.connect_timeout(), Duration::from_secs(10));
        assert_eq!(o.timeout(), Duration::from_secs(30));
        assert_eq!(o.user_agent(), DEFAULT_USER_AGENT);
        assert!(DEFAULT_USER_AGENT.starts_with("ml-connector/"));
        assert!(DEFAULT_USER_AGENT.len() > "ml-connector/".len());
    }

    #[test]
    fn builds_with_every_option() {
        ClientOptions::default()
            .with_connect_timeout(Duration::from_secs(1))
            .with_timeout(Duration::from_secs(2))
            .with_user_agent("test/1")
            .with_proxy("http://user:hunter2@proxy.example:3128")
            .with_pool_idle_timeout(None)
            .client()
            .expect("client");
    }

    #[test]
    fn invalid_values_name_their_key() {
        let key_of = |o: ClientOptions| match o.client() {
            Err(Error::Config { key, message }) => {
                assert!(!message.contains("hunter2"), "{message}");
                key
            }
            other => panic!("expected a config error, got {other:?}"),
        };
        for bad in [
            "not a url",
            "proxy.example:3128",
            "ftp://proxy.example",
            "socks5://proxy.example:1080",
            "http://",
            "http://user:hunter2@",
            "file:///etc/hunter2",
        ] {
            assert_eq!(
                key_of(ClientOptions::default().with_proxy(bad)),
                "with_proxy",
                "{bad}"
            );
        }
        assert_eq!(
            key_of(ClientOptions::default().with_user_agent("bad\nagent")),
            "with_user_agent"
        );
        assert_eq!(
            key_of(ClientOptions::default().with_timeout(Duration::ZERO)),
            "with_timeout"
        );
        assert_eq!(
            key_of(ClientOptions::default().with_connect_timeout(Duration::ZERO)),
            "with_connect_timeout"
        );
    }

    #[test]
    fn debug_hides_the_proxy_password() {
        let o = ClientOptions::default().with_proxy("http://user:hunter2@proxy.example:3128");
        let debug = format!("{o:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(
            debug.contains("http://user:REDACTED@proxy.example:3128/"),
            "{debug}"
        );
        let debug = format!("{:?}", ClientOptions::default().with_proxy("::hunter2::"));
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn host_client_is_used_as_is() {
        // (`reqwest::Client::new()` would panic: no process-wide crypto provider.)
        let host = ClientOptions::default()
            .with_user_agent("host/1")
            .client()
            .expect("host client");
        let o = ClientOptions::default()
            .with_client(host)
            .with_proxy("not a url");
        assert!(o.client().is_ok());
        assert!(format!("{o:?}").contains("<host client>"));
    }

    #[tokio::test]
    async fn gets_from_a_local_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = socket.read(&mut buf).await.expect("read");
                assert!(n > 0, "client closed early");
                head.extend_from_slice(&buf[..n]);
            }
            let body = br#"{"ok":true}"#;
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            socket.write_all(response.as_bytes()).await.expect("write");
            socket.write_all(body).await.expect("write");
            String::from_utf8(head).expect("utf-8 head")
        });

        let client = ClientOptions::default()
            .with_timeout(Duration::from_secs(5))
            .client()
            .expect("client");
        let response = client
            .get(format!("http://{addr}/ping"))
            .query(&[("q", "1")])
            .send()
            .await
            .expect("response");
        assert_eq!(response.status(), reqwest::StatusCode::OK);
        let body: serde_json::Value = response.json().await.expect("json");
        assert_eq!(body, serde_json::json!({ "ok": true }));

        let head = server.await.expect("server").to_ascii_lowercase();
        assert!(head.starts_with("get /ping?q=1 http/1.1\r\n"), "{head}");
        assert!(
            head.contains(&format!(
                "user-agent: {}",
                DEFAULT_USER_AGENT.to_ascii_lowercase()
            )),
            "{head}"
        );
    }
}
