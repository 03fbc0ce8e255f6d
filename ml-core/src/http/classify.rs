//! How a failure is classified: HTTP answers ([`classify_status`], with `Retry-After`
//! parsed by [`parse_retry_after`]) and requests that got no answer
//! ([`classify_transport`], [`describe_transport`]).

use std::time::Duration;

use ::http::{HeaderMap, HeaderValue, StatusCode, header::RETRY_AFTER};
use jiff::Timestamp;

use crate::clock::until;
use crate::error::ErrorClass;

/// The class of an HTTP answer, or `None` for a success (`1xx`, `2xx`, `3xx`).
///
/// | status | class |
/// |---|---|
/// | 408, 425, 429, 500, 502, 503, 504 | retryable, with `Retry-After` when given |
/// | 501, 505, 506, 508, 510 | permanent: the server cannot ever handle this request |
/// | any other 5xx (507, 509, 511, 52x, unknown) | retryable, with `Retry-After` |
/// | any other 4xx (and non-standard 600–999) | permanent |
///
/// Most 5xx answers are transient (an overloaded or restarting server, a proxy that lost
/// its upstream), hence retryable. But a gateway error (502, 504, 524) may mean the origin
/// did apply the request: a sink whose request is not idempotent and that can look the
/// outcome up should treat those as in doubt in its own `parse_error`.
///
/// Only the status and `Retry-After` are read. Other hints (`x-ratelimit-reset`, error
/// codes in the body) are the connector's business.
pub fn classify_status(
    status: StatusCode,
    headers: &HeaderMap,
    now: Timestamp,
) -> Option<ErrorClass> {
    let code = status.as_u16();
    if code < 400 {
        return None;
    }
    let retryable = || ErrorClass::Retryable {
        retry_after: headers
            .get(RETRY_AFTER)
            .and_then(|value| parse_retry_after(value, now)),
    };
    Some(match code {
        501 | 505 | 506 | 508 | 510 => ErrorClass::Permanent,
        408 | 425 | 429 | 500..=599 => retryable(),
        _ => ErrorClass::Permanent,
    })
}

/// Parses a `Retry-After` value (RFC 9110 §10.2.3) into how long to wait from `now`.
///
/// Accepts delta-seconds (`"120"`, saturating when absurdly large; a decimal such as
/// `"1.5"` is tolerated) and an HTTP-date in IMF-fixdate form
/// (`"Wed, 21 Oct 2015 07:28:00 GMT"`; any RFC 2822 date is accepted, and a wrong weekday
/// is ignored). A date in the past gives zero. Anything else (empty, negative, garbage, the
/// obsolete RFC 850 and asctime date forms) gives `None`.
pub fn parse_retry_after(value: &HeaderValue, now: Timestamp) -> Option<Duration> {
    static DATE: jiff::fmt::rfc2822::DateTimeParser =
        jiff::fmt::rfc2822::DateTimeParser::new().relaxed_weekday(true);

    let text = value.to_str().ok()?.trim();
    let first = *text.as_bytes().first()?;
    if first.is_ascii_digit() {
        if text.bytes().all(|b| b.is_ascii_digit()) {
            return Some(
                text.parse::<u64>()
                    .map_or(Duration::MAX, Duration::from_secs),
            );
        }
        let decimal = text.split_once('.').is_some_and(|(int, frac)| {
            !frac.is_empty() && (int.bytes().chain(frac.bytes())).all(|b| b.is_ascii_digit())
        });
        if decimal {
            return text
                .parse::<f64>()
                .ok()
                .map(|secs| Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX));
        }
        return None;
    }
    let at = DATE.parse_timestamp(text).ok()?;
    Some(until(now, at))
}

/// The class of a request that got no HTTP answer (`reqwest`'s own error).
///
/// - **Connect errors** (DNS, refused, TLS handshake, connect timeout): retryable, as no
///   byte of the request reached the server.
/// - **Builder, redirect-policy and upgrade errors**: permanent; they repeat identically.
/// - **Status errors** (from `error_for_status`): as [`classify_status`] (without headers).
/// - **Everything else after the connection was made** (request timeout, connection reset
///   while sending or waiting, a broken or undecodable response body): the server may
///   have received and applied the request, so it is retryable only when `idempotent`
///   (repeating it is harmless: GET, PUT, DELETE, or a POST carrying an idempotency key the
///   server honours), and otherwise [`ErrorClass::InDoubt`]: the caller must look the
///   outcome up before sending again, or it may post twice.
///
/// Note that the `Display` of a `reqwest::Error` includes the URL; call `without_url()`
/// before keeping it as a source when the URL may carry a secret.
pub fn classify_transport(err: &reqwest::Error, idempotent: bool) -> ErrorClass {
    if err.is_connect() {
        return ErrorClass::RETRYABLE;
    }
    if err.is_builder() || err.is_redirect() || err.is_upgrade() {
        return ErrorClass::Permanent;
    }
    if let Some(status) = err.status() {
        return classify_status(status, &HeaderMap::new(), Timestamp::now())
            .unwrap_or(ErrorClass::Permanent);
    }
    if idempotent {
        ErrorClass::RETRYABLE
    } else {
        ErrorClass::InDoubt
    }
}

/// What went wrong with a request that got no usable answer, in words that never contain
/// its URL (which may carry a token in its query) nor anything the request sent.
///
/// The kind (`timed out`, `could not connect`, `response body failed`, `request failed`)
/// is followed by the chain of underlying causes, each of which reqwest and hyper word
/// without the URL.
pub fn describe_transport(err: &reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "could not connect"
    } else if err.is_body() || err.is_decode() {
        "response body failed"
    } else if err.is_builder() {
        "invalid request"
    } else {
        "request failed"
    };
    let mut message = kind.to_owned();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        let text = cause.to_string();
        // A cause that is itself a reqwest error would repeat its URL.
        let text = match err.url() {
            Some(url) => text.replace(url.as_str(), "<url>"),
            None => text,
        };
        message.push_str(": ");
        message.push_str(&text);
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn retryable_after(secs: u64) -> ErrorClass {
        ErrorClass::Retryable {
            retry_after: Some(Duration::from_secs(secs)),
        }
    }

    #[test]
    fn parse_retry_after_forms() {
        let now = ts("2015-10-21T07:27:00Z");
        let parse = |s: &str| parse_retry_after(&HeaderValue::from_str(s).expect("hv"), now);
        assert_eq!(parse("120"), Some(Duration::from_secs(120)));
        assert_eq!(parse(" 0 "), Some(Duration::ZERO));
        assert_eq!(parse("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(parse("99999999999999999999999"), Some(Duration::MAX));
        assert_eq!(
            parse("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::from_secs(60))
        );
        // Wrong weekday: tolerated.
        assert_eq!(
            parse("Mon, 21 Oct 2015 07:28:30 GMT"),
            Some(Duration::from_secs(90))
        );
        // In the past: zero.
        assert_eq!(parse("Wed, 21 Oct 2015 07:00:00 GMT"), Some(Duration::ZERO));
        for garbage in [
            "",
            "-5",
            "+5",
            "1e3",
            "1.",
            ".5",
            "12abc",
            "soon",
            "NaN",
            "inf",
            "Wed, 21 Oct 2015 07:28:00 GMT junk",
            "Wednesday, 21-Oct-15 07:28:00 GMT",
        ] {
            assert_eq!(parse(garbage), None, "{garbage:?}");
        }
        let opaque = HeaderValue::from_bytes(b"\xff\xfe").expect("opaque");
        assert_eq!(parse_retry_after(&opaque, now), None);
    }

    #[test]
    fn classify_status_table() {
        let now = ts("2026-01-01T00:00:00Z");
        let none = HeaderMap::new();
        let class = |code: u16, headers: &HeaderMap| {
            classify_status(StatusCode::from_u16(code).expect("status"), headers, now)
        };
        for ok in [100, 200, 201, 204, 301, 304, 399] {
            assert_eq!(class(ok, &none), None, "{ok}");
        }
        for code in [408, 425, 429, 500, 502, 503, 504, 507, 511, 520, 524, 599] {
            assert_eq!(class(code, &none), Some(ErrorClass::RETRYABLE), "{code}");
        }
        for code in [
            400, 401, 403, 404, 405, 409, 410, 412, 413, 422, 423, 451, 499,
        ] {
            assert_eq!(class(code, &none), Some(ErrorClass::Permanent), "{code}");
        }
        for code in [501, 505, 506, 508, 510] {
            assert_eq!(class(code, &none), Some(ErrorClass::Permanent), "{code}");
        }
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("30"));
        assert_eq!(class(429, &headers), Some(retryable_after(30)));
        assert_eq!(class(503, &headers), Some(retryable_after(30)));
        assert_eq!(class(400, &headers), Some(ErrorClass::Permanent));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Thu, 01 Jan 2026 00:02:00 GMT"),
        );
        assert_eq!(class(503, &headers), Some(retryable_after(120)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("whenever"));
        assert_eq!(class(429, &headers), Some(ErrorClass::RETRYABLE));
    }

    /// Binds a loopback port and closes it again: connecting to it is refused.
    async fn closed_port() -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        listener.local_addr().expect("addr")
    }

    /// Serves one connection with `response`, after reading the request head.
    async fn serve_once(response: &'static [u8]) -> std::net::SocketAddr {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut buf = vec![0u8; 4096];
            let mut seen = Vec::new();
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = socket.read(&mut buf).await.expect("read");
                if n == 0 {
                    return;
                }
                seen.extend_from_slice(&buf[..n]);
            }
            if response.is_empty() {
                // Never answer: hold the connection open until the client gives up.
                tokio::time::sleep(Duration::from_secs(3600)).await;
            } else {
                socket.write_all(response).await.expect("write");
            }
        });
        addr
    }

    fn test_client(timeout: Duration) -> reqwest::Client {
        crate::http::ClientOptions::default()
            .with_timeout(timeout)
            .client()
            .expect("client")
    }

    #[tokio::test]
    async fn classify_transport_failures() {
        let client = test_client(Duration::from_millis(300));

        // Connect refused: nothing was sent.
        let addr = closed_port().await;
        let err = client
            .post(format!("http://{addr}/"))
            .send()
            .await
            .expect_err("refused");
        assert!(err.is_connect(), "{err:?}");
        assert_eq!(classify_transport(&err, false), ErrorClass::RETRYABLE);

        // Timeout after the request was sent: in doubt unless idempotent.
        let addr = serve_once(b"").await;
        let err = client
            .post(format!("http://{addr}/"))
            .body("x")
            .send()
            .await
            .expect_err("timeout");
        assert!(err.is_timeout(), "{err:?}");
        assert_eq!(classify_transport(&err, false), ErrorClass::InDoubt);
        assert_eq!(classify_transport(&err, true), ErrorClass::RETRYABLE);

        // Response body cut short: the request was applied.
        let addr =
            serve_once(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\nconnection: close\r\n\r\nshort")
                .await;
        let response = client
            .post(format!("http://{addr}/"))
            .send()
            .await
            .expect("head");
        let err = response.bytes().await.expect_err("truncated body");
        assert_eq!(classify_transport(&err, false), ErrorClass::InDoubt);
        assert_eq!(classify_transport(&err, true), ErrorClass::RETRYABLE);

        // A request that cannot be built.
        let err = client.get("not a url").send().await.expect_err("builder");
        assert_eq!(classify_transport(&err, true), ErrorClass::Permanent);

        // error_for_status.
        let addr = serve_once(
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        )
        .await;
        let err = client
            .get(format!("http://{addr}/"))
            .send()
            .await
            .expect("answer")
            .error_for_status()
            .expect_err("503");
        assert_eq!(classify_transport(&err, false), ErrorClass::RETRYABLE);
    }
}
