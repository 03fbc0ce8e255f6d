use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use jiff::Timestamp;
use proptest::prelude::*;

use super::*;
use crate::clock::add;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).expect("ts")
}

fn req(method: &str, headers: &[(&str, &str)], body: &'static [u8]) -> http::Request<Bytes> {
    let mut b = http::Request::builder().method(method).uri("/hook");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Bytes::from_static(body)).expect("request")
}

#[test]
fn labels_are_distinct_and_statuses_fit() {
    let all = [
        Rejection::MethodNotAllowed,
        Rejection::UnsupportedContentType("text/xml".into()),
        Rejection::MissingHeader("x"),
        Rejection::BadHeader("x"),
        Rejection::BadSignatureFormat,
        Rejection::BadTimestamp,
        Rejection::SignatureMismatch,
        Rejection::Stale,
        Rejection::FutureDated,
        Rejection::Replayed,
        Rejection::BodyTooLarge,
        Rejection::Truncated,
        Rejection::Malformed("x".into()),
        Rejection::Busy,
        Rejection::Unavailable("x".into()),
    ];
    let labels: HashSet<_> = all.iter().map(Rejection::as_str).collect();
    assert_eq!(labels.len(), all.len());
    assert_eq!(Rejection::MethodNotAllowed.status(), 405);
    assert_eq!(Rejection::BodyTooLarge.status(), 413);
    assert_eq!(
        Rejection::UnsupportedContentType(String::new()).status(),
        415
    );
    assert_eq!(Rejection::SignatureMismatch.status(), 401);
    assert_eq!(Rejection::BadTimestamp.status(), 401);
    assert_eq!(Rejection::Malformed(String::new()).status(), 400);
    assert_eq!(Rejection::Unavailable(String::new()).status(), 503);
    assert!(Rejection::Busy.is_transient() && !Rejection::Replayed.is_transient());
    let resp = Rejection::Stale.to_response();
    assert_eq!(
        (resp.status().as_u16(), resp.body().as_str()),
        (401, "stale")
    );
}

#[test]
fn limits_refuse_each_way_distinctly() {
    let l = Limits::new(8).with_content_types(&["application/json"]);
    let json = ("content-type", "application/json; charset=utf-8");
    assert_eq!(l.check(&req("POST", &[json], b"{}")), Ok(()));
    assert_eq!(
        l.check(&req("GET", &[json], b"")),
        Err(Rejection::MethodNotAllowed)
    );
    assert_eq!(
        l.check(&req("POST", &[json], b"123456789")),
        Err(Rejection::BodyTooLarge)
    );
    assert_eq!(
        l.check(&req("POST", &[json, ("content-length", "9")], b"{}")),
        Err(Rejection::BodyTooLarge),
        "declared over the limit"
    );
    assert_eq!(
        l.check(&req("POST", &[json, ("content-length", "4")], b"{}")),
        Err(Rejection::Truncated)
    );
    assert!(matches!(
        l.check(&req("POST", &[json, ("content-length", "1")], b"{}")),
        Err(Rejection::Malformed(_))
    ));
    assert!(matches!(
        l.check(&req("POST", &[json, ("content-length", "x")], b"{}")),
        Err(Rejection::Malformed(_))
    ));
    assert_eq!(
        l.check(&req("POST", &[("content-type", "text/xml")], b"<a/>")),
        Err(Rejection::UnsupportedContentType("text/xml".into()))
    );
    assert_eq!(
        l.check(&req("POST", &[], b"{}")),
        Err(Rejection::UnsupportedContentType(String::new()))
    );
    assert_eq!(Limits::new(8).check(&req("POST", &[], b"anything")), Ok(()));
}

#[test]
fn headers_missing_or_unreadable() {
    let mut h = HeaderMap::new();
    assert_eq!(header(&h, "x-sig"), Err(Rejection::MissingHeader("x-sig")));
    h.insert(
        "x-sig",
        http::HeaderValue::from_bytes(b"caf\xc3\xa9").expect("opaque"),
    );
    assert_eq!(header(&h, "x-sig"), Err(Rejection::BadHeader("x-sig")));
    h.insert("x-sig", http::HeaderValue::from_static("v0=ab"));
    assert_eq!(header(&h, "x-sig"), Ok("v0=ab"));
}

#[test]
fn timestamp_window_edges_and_formats() {
    let w = Duration::from_secs(300);
    let t = 1_700_000_000;
    assert_eq!(check_timestamp("1700000000", at(t + 300), w), Ok(t));
    assert_eq!(
        check_timestamp("1700000000", at(t + 301), w),
        Err(Rejection::Stale)
    );
    assert_eq!(check_timestamp(" 1700000000 ", at(t - 300), w), Ok(t));
    assert_eq!(
        check_timestamp("1700000000", at(t - 301), w),
        Err(Rejection::FutureDated)
    );
    for bad in [
        "",
        " ",
        "abc",
        "-1700000000",
        "+1700000000",
        "1700000000.5",
        "1e9",
        "9999999999999",
        "١٧٠٠",
    ] {
        assert_eq!(
            check_timestamp(bad, at(t), w),
            Err(Rejection::BadTimestamp),
            "{bad:?}"
        );
    }
    // A huge window never overflows.
    assert_eq!(
        check_timestamp("0", at(t), Duration::from_secs(u64::MAX)),
        Ok(0)
    );
}

#[test]
fn constant_time_compare() {
    assert!(ct_eq(b"abc", b"abc"));
    assert!(!ct_eq(b"abc", b"abd"));
    assert!(!ct_eq(b"abc", b"ab"));
    assert!(ct_eq(b"", b""));
}

#[tokio::test]
async fn memory_cache_is_bounded_and_expires() {
    let c = MemoryReplayCache::new(2);
    let t = at(1_800_000_000);
    let later = add(t, Duration::from_secs(10));
    assert_eq!(c.insert_if_absent("a", later, t).await, Ok(true));
    assert_eq!(c.insert_if_absent("a", later, t).await, Ok(false));
    assert_eq!(c.insert_if_absent("b", later, t).await, Ok(true));
    assert_eq!(
        c.insert_if_absent("c", later, t).await,
        Err(Rejection::Busy)
    );
    let much_later = add(t, Duration::from_secs(11));
    assert_eq!(
        c.insert_if_absent("c", add(much_later, Duration::from_secs(5)), much_later)
            .await,
        Ok(true)
    );
    assert_eq!(c.len(), 1, "expired keys were pruned");
    // An expired key is new again.
    assert_eq!(
        c.insert_if_absent("a", add(much_later, Duration::from_secs(5)), much_later)
            .await,
        Ok(true)
    );
    c.remove("c").await;
    c.remove("a").await;
    assert!(c.is_empty());
}

#[tokio::test]
async fn evicting_cache_forgets_the_key_closest_to_expiry() {
    let c = MemoryReplayCache::new(2).on_full(OnFull::EvictOldest);
    let t = at(1_800_000_000);
    let in_secs = |s| add(t, Duration::from_secs(s));
    assert_eq!(c.insert_if_absent("late", in_secs(100), t).await, Ok(true));
    assert_eq!(c.insert_if_absent("soon", in_secs(10), t).await, Ok(true));
    assert_eq!(c.insert_if_absent("new", in_secs(50), t).await, Ok(true));
    assert_eq!(c.len(), 2);
    assert_eq!(c.insert_if_absent("late", in_secs(100), t).await, Ok(false));
    assert_eq!(c.insert_if_absent("new", in_secs(50), t).await, Ok(false));
    // "soon" was evicted, so it is new; that evicts "new" (closest to expiry now).
    assert_eq!(c.insert_if_absent("soon", in_secs(10), t).await, Ok(true));
    assert_eq!(c.insert_if_absent("late", in_secs(100), t).await, Ok(false));
}

proptest! {
    #[test]
    fn timestamp_parsing_never_panics(raw in ".{0,24}", now in 0i64..4_000_000_000, w in any::<u64>()) {
        let now = at(now);
        match check_timestamp(&raw, now, Duration::from_secs(w)) {
            Ok(secs) => prop_assert!(secs >= 0),
            Err(r) => prop_assert!(matches!(
                r,
                Rejection::BadTimestamp | Rejection::Stale | Rejection::FutureDated
            )),
        }
    }

    #[test]
    fn limits_never_panic(
        method in prop::sample::select(vec!["GET", "POST", "PUT"]),
        len in prop::option::of(".{0,12}"),
        ct in prop::option::of(".{0,30}"),
        body in prop::collection::vec(any::<u8>(), 0..32),
    ) {
        let l = Limits::new(16).with_content_types(&["application/json"]);
        let mut b = http::Request::builder().method(method);
        if let Some(v) = len.as_deref().and_then(|v| http::HeaderValue::from_str(v).ok()) {
            b = b.header("content-length", v);
        }
        if let Some(v) = ct.as_deref().and_then(|v| http::HeaderValue::from_str(v).ok()) {
            b = b.header("content-type", v);
        }
        let r = b.body(Bytes::from(body)).expect("request");
        let _ = l.check(&r);
    }
}

#[tokio::test]
async fn remove_all_forgets_every_key() {
    let c = MemoryReplayCache::new(8);
    let t = at(1_800_000_000);
    let later = add(t, Duration::from_secs(60));
    for k in ["a", "b", "c"] {
        assert_eq!(c.insert_if_absent(k, later, t).await, Ok(true));
    }
    c.remove_all(&["a".to_owned(), "c".to_owned()]).await;
    assert_eq!(c.len(), 1);
    assert_eq!(c.insert_if_absent("a", later, t).await, Ok(true));
    assert_eq!(c.insert_if_absent("b", later, t).await, Ok(false));
}

#[cfg(feature = "axum")]
mod router {
    use std::sync::Arc;

    use async_trait::async_trait;
    use axum::body::Body;
    use bytes::Bytes;
    use futures::stream;

    use crate::webhook::axum::{WebhookHandler, collect, router};
    use crate::webhook::{Limits, Rejection};

    fn chunked(chunks: Vec<Result<&'static [u8], std::io::Error>>) -> http::Request<Body> {
        let s = stream::iter(chunks.into_iter().map(|c| c.map(Bytes::from_static)));
        http::Request::post("/hook")
            .body(Body::from_stream(s))
            .expect("request")
    }

    #[tokio::test]
    async fn bodies_are_read_up_to_the_limit_only() {
        let ok = collect(chunked(vec![Ok(b"12345"), Ok(b"678")]), 8).await;
        assert_eq!(
            ok.map(http::Request::into_body),
            Ok(Bytes::from_static(b"12345678"))
        );
        // No Content-Length: cut off while reading.
        let big = collect(chunked(vec![Ok(b"12345"), Ok(b"6789")]), 8).await;
        assert_eq!(big.map(|_| ()), Err(Rejection::BodyTooLarge));
        // Declared too large: refused before reading.
        let declared = http::Request::post("/hook")
            .header("content-length", "9")
            .body(Body::from("x"))
            .expect("request");
        assert_eq!(
            collect(declared, 8).await.map(|_| ()),
            Err(Rejection::BodyTooLarge)
        );
        // The connection broke mid-body.
        let cut = collect(
            chunked(vec![Ok(b"123"), Err(std::io::Error::other("reset"))]),
            8,
        )
        .await;
        assert_eq!(cut.map(|_| ()), Err(Rejection::Truncated));
    }

    struct Echo(Limits);

    #[async_trait]
    impl WebhookHandler for Echo {
        fn max_body(&self) -> usize {
            self.0.max_body()
        }

        async fn handle(&self, request: http::Request<Bytes>) -> http::Response<String> {
            match self.0.check(&request) {
                Ok(()) => http::Response::new(String::from_utf8_lossy(request.body()).into()),
                Err(r) => r.to_response(),
            }
        }
    }

    #[tokio::test]
    async fn the_router_serves_a_handler_over_tcp() {
        let app = router("/hook", Arc::new(Echo(Limits::new(8))));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = crate::http::ClientOptions::default()
            .client()
            .expect("client");
        let url = format!("http://{addr}/hook");
        let ok = client.post(&url).body("hello").send().await.expect("post");
        assert_eq!(ok.status(), 200);
        assert_eq!(ok.text().await.expect("body"), "hello");
        let big = client
            .post(&url)
            .body("123456789")
            .send()
            .await
            .expect("big");
        assert_eq!(big.status(), 413);
        assert_eq!(big.text().await.expect("body"), "body_too_large");
        let get = client.get(&url).send().await.expect("get");
        assert_eq!(get.status(), 405);
    }
}
