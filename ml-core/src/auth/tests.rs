use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use secrecy::{ExposeSecret as _, SecretString};

use super::basic::base64_encode;
use super::cache::{Cached, SharedFailure};
use super::*;
use crate::clock::{Clock, ManualClock, SystemClock, TokioClock, add, sub};
use crate::error::{Error, ErrorClass, Result};

const SECRET: &str = "s3cr3t-value";

fn start() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().expect("timestamp")
}

/// Counts fetches; token `n` is `token-n`; sleeps inside each fetch so callers pile up.
#[derive(Debug)]
struct Counting {
    calls: AtomicU32,
    clock: Arc<dyn Clock>,
    lifetime: Option<Duration>,
    latency: Duration,
    fail_first: bool,
}

impl Counting {
    fn new(clock: Arc<dyn Clock>, lifetime: Option<Duration>) -> Self {
        Self {
            calls: AtomicU32::new(0),
            clock,
            lifetime,
            latency: Duration::from_secs(1),
            fail_first: false,
        }
    }

    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl TokenProvider for Counting {
    async fn fetch_token(&self) -> Result<AccessToken> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::task::yield_now().await;
        tokio::time::sleep(self.latency).await;
        if self.fail_first && n == 1 {
            return Err(Error::remote(
                "Issuer(test)",
                ErrorClass::RETRYABLE,
                "token endpoint unavailable",
            ));
        }
        let now = self.clock.now();
        Ok(AccessToken::new(
            format!("token-{n}"),
            self.lifetime.map(|l| add(now, l)),
        ))
    }
}

fn paused_setup(lifetime: Option<Duration>) -> (Arc<Counting>, Arc<TokenCache>) {
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::starting_at(start()));
    let provider = Arc::new(Counting::new(Arc::clone(&clock), lifetime));
    let cache = TokenCache::new(Arc::clone(&provider) as Arc<dyn TokenProvider>).with_clock(clock);
    (provider, Arc::new(cache))
}

async fn many(cache: &Arc<TokenCache>, n: usize) -> Vec<Result<String>> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let cache = Arc::clone(cache);
            tokio::spawn(async move { cache.token().await.map(|t| t.expose_secret().to_owned()) })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for task in tasks {
        out.push(task.await.expect("task"));
    }
    out
}

fn secret(s: &SecretString) -> &str {
    s.expose_secret()
}

#[tokio::test(start_paused = true)]
async fn hundred_callers_on_an_empty_cache_cause_one_fetch() {
    let (provider, cache) = paused_setup(Some(Duration::from_secs(300)));
    let tokens = many(&cache, 100).await;
    assert_eq!(provider.calls(), 1);
    assert!(tokens.iter().all(|t| t.as_deref().ok() == Some("token-1")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_callers_on_a_multi_thread_runtime_cause_one_fetch() {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut counting = Counting::new(Arc::clone(&clock), Some(Duration::from_secs(300)));
    counting.latency = Duration::from_millis(50);
    let provider = Arc::new(counting);
    let cache = Arc::new(TokenCache::new(
        Arc::clone(&provider) as Arc<dyn TokenProvider>
    ));
    let barrier = Arc::new(tokio::sync::Barrier::new(100));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let cache = Arc::clone(&cache);
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                cache.token().await.map(|t| t.expose_secret().to_owned())
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.expect("task").expect("token"), "token-1");
    }
    assert_eq!(provider.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn refreshes_ahead_of_expiry_once_for_all_callers() {
    let (provider, cache) = paused_setup(Some(Duration::from_secs(300)));
    assert_eq!(secret(&cache.token().await.expect("first")), "token-1");
    // The token was issued 1 s in (the fetch takes 1 s): it expires at 301 s and is
    // refreshed from 241 s.
    tokio::time::advance(Duration::from_secs(239)).await;
    assert_eq!(secret(&cache.token().await.expect("cached")), "token-1");
    assert_eq!(provider.calls(), 1);
    tokio::time::advance(Duration::from_secs(1)).await;
    let tokens = many(&cache, 100).await;
    assert!(tokens.iter().all(|t| t.as_deref().ok() == Some("token-2")));
    assert_eq!(provider.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn expired_and_short_lived_tokens_are_refreshed() {
    // A 10 s token with 60 s refresh-ahead is refreshed half-way, at 5 s of its life.
    let (provider, cache) = paused_setup(Some(Duration::from_secs(10)));
    assert_eq!(secret(&cache.token().await.expect("first")), "token-1");
    tokio::time::advance(Duration::from_secs(4)).await;
    assert_eq!(secret(&cache.token().await.expect("cached")), "token-1");
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(secret(&cache.token().await.expect("half-way")), "token-2");
    // Long past expiry.
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert_eq!(secret(&cache.token().await.expect("expired")), "token-3");
    assert_eq!(provider.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_token_without_expiry_is_kept_until_invalidated() {
    let (provider, cache) = paused_setup(None);
    let first = cache.token().await.expect("first");
    tokio::time::advance(Duration::from_secs(86_400 * 365)).await;
    assert_eq!(secret(&cache.token().await.expect("cached")), "token-1");
    cache.invalidate(&SecretString::from("some-other-token"));
    assert_eq!(secret(&cache.token().await.expect("cached")), "token-1");
    assert_eq!(provider.calls(), 1);
    cache.invalidate(&first);
    assert_eq!(secret(&cache.token().await.expect("new")), "token-2");
    cache.clear();
    assert_eq!(secret(&cache.token().await.expect("new")), "token-3");
    assert_eq!(provider.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn fifty_concurrent_401s_cause_one_refresh() {
    let (provider, cache) = paused_setup(Some(Duration::from_secs(3600)));
    let rejected = cache.token().await.expect("first");
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let cache = Arc::clone(&cache);
            let rejected = rejected.clone();
            tokio::spawn(async move {
                cache.invalidate(&rejected);
                cache.token().await.map(|t| t.expose_secret().to_owned())
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.expect("task").expect("token"), "token-2");
    }
    assert_eq!(provider.calls(), 2);
    // A late 401 for the old token leaves the new one alone.
    cache.invalidate(&rejected);
    assert_eq!(secret(&cache.token().await.expect("cached")), "token-2");
    assert_eq!(provider.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_failed_fetch_reaches_every_waiter_and_is_not_cached() {
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::starting_at(start()));
    let mut counting = Counting::new(Arc::clone(&clock), Some(Duration::from_secs(300)));
    counting.fail_first = true;
    let provider = Arc::new(counting);
    let cache = Arc::new(
        TokenCache::new(Arc::clone(&provider) as Arc<dyn TokenProvider>).with_clock(clock),
    );
    let outcomes = many(&cache, 10).await;
    assert_eq!(provider.calls(), 1);
    for outcome in outcomes {
        let err = outcome.expect_err("shared failure");
        assert!(err.class().is_retryable(), "{err:?}");
        assert!(
            err.to_string().contains("token endpoint unavailable"),
            "{err}"
        );
    }
    assert_eq!(secret(&cache.token().await.expect("retried")), "token-2");
    assert_eq!(provider.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_fetch_is_taken_over_by_the_next_caller() {
    let (provider, cache) = paused_setup(Some(Duration::from_secs(300)));
    let leader = {
        let cache = Arc::clone(&cache);
        tokio::spawn(async move { cache.token().await.map(drop) })
    };
    tokio::task::yield_now().await;
    assert_eq!(provider.calls(), 1, "the leader is fetching");
    let follower = {
        let cache = Arc::clone(&cache);
        tokio::spawn(async move { cache.token().await.map(|t| t.expose_secret().to_owned()) })
    };
    tokio::task::yield_now().await;
    leader.abort();
    assert!(leader.await.expect_err("aborted").is_cancelled());
    assert_eq!(follower.await.expect("task").expect("token"), "token-2");
    assert_eq!(provider.calls(), 2);
}

#[test]
fn access_token_expiry() {
    let t = AccessToken::expiring_in(SECRET, start(), Duration::from_secs(300));
    assert_eq!(t.expires_at, Some(add(start(), Duration::from_secs(300))));
    assert!(!t.is_expired(add(start(), Duration::from_secs(299))));
    assert!(t.is_expired(add(start(), Duration::from_secs(300))));
    assert!(!AccessToken::new(SECRET, None).is_expired(Timestamp::MAX));
}

// Rotating refresh tokens.

/// Issues `access-n` and `refresh-n`, recording the refresh tokens it was given.
#[derive(Debug, Default)]
struct Grant {
    seen: Mutex<Vec<String>>,
    latency: Duration,
    rotate: bool,
    reject: bool,
}

#[async_trait]
impl RefreshGrant for Grant {
    async fn refresh(&self, refresh_token: &SecretString) -> Result<TokenGrant> {
        let n = {
            let mut seen = self.seen.lock().expect("seen");
            seen.push(refresh_token.expose_secret().to_owned());
            seen.len()
        };
        tokio::time::sleep(self.latency).await;
        if self.reject {
            return Err(Error::Auth {
                class: ErrorClass::Permanent,
                message: "invalid_grant".into(),
            });
        }
        Ok(TokenGrant {
            access: AccessToken::expiring_in(
                format!("access-{n}"),
                start(),
                Duration::from_secs(300),
            ),
            refresh: self.rotate.then(|| {
                StoredRefreshToken::new(
                    format!("refresh-{n}"),
                    Some(add(start(), Duration::from_secs(30 * 86_400))),
                )
            }),
        })
    }
}

impl Grant {
    fn rotating() -> Self {
        Self {
            rotate: true,
            ..Self::default()
        }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().expect("seen").clone()
    }
}

/// A store whose saves fail.
#[derive(Debug)]
struct BrokenStore(MemoryRefreshTokenStore);

#[async_trait]
impl RefreshTokenStore for BrokenStore {
    async fn load(&self) -> Result<Option<StoredRefreshToken>> {
        self.0.load().await
    }

    async fn save(&self, _token: &StoredRefreshToken) -> Result<()> {
        Err(Error::store(ErrorClass::RETRYABLE, "disk full", None))
    }
}

fn initial() -> StoredRefreshToken {
    StoredRefreshToken::new(
        "refresh-0",
        Some(add(start(), Duration::from_secs(30 * 86_400))),
    )
}

fn rotating(
    grant: &Arc<Grant>,
    store: Arc<dyn RefreshTokenStore>,
    clock: Arc<dyn Clock>,
) -> RotatingTokenProvider {
    RotatingTokenProvider::new(Arc::clone(grant) as Arc<dyn RefreshGrant>, store).with_clock(clock)
}

#[tokio::test]
async fn rotation_saves_the_new_refresh_token_and_uses_it_next() {
    let grant = Arc::new(Grant::rotating());
    let store = Arc::new(MemoryRefreshTokenStore::new(Some(initial())));
    let clock = Arc::new(ManualClock::new(start()));
    let provider = rotating(&grant, Arc::clone(&store) as _, clock);
    assert_eq!(
        provider.refresh_expires_at().await.expect("load"),
        initial().expires_at
    );

    let access = provider.fetch_token().await.expect("first");
    assert_eq!(secret(&access.secret), "access-1");
    let saved = store.current().expect("saved");
    assert_eq!(secret(&saved.token), "refresh-1");

    let access = provider.fetch_token().await.expect("second");
    assert_eq!(secret(&access.secret), "access-2");
    assert_eq!(grant.seen(), ["refresh-0", "refresh-1"]);
    assert_eq!(secret(&store.current().expect("saved").token), "refresh-2");
}

#[tokio::test]
async fn a_grant_that_does_not_rotate_keeps_the_stored_token() {
    let grant = Arc::new(Grant::default());
    let store = Arc::new(MemoryRefreshTokenStore::new(Some(initial())));
    let provider = rotating(
        &grant,
        Arc::clone(&store) as _,
        Arc::new(ManualClock::new(start())),
    );
    provider.fetch_token().await.expect("first");
    provider.fetch_token().await.expect("second");
    assert_eq!(grant.seen(), ["refresh-0", "refresh-0"]);
}

#[tokio::test]
async fn missing_and_expired_refresh_tokens_are_permanent() {
    let grant = Arc::new(Grant::rotating());
    let clock = Arc::new(ManualClock::new(start()));
    let empty = rotating(
        &grant,
        Arc::new(MemoryRefreshTokenStore::default()),
        Arc::clone(&clock) as _,
    );
    let err = empty.fetch_token().await.expect_err("missing");
    assert_eq!(err.class(), ErrorClass::Permanent);
    assert!(err.to_string().contains("no refresh token"), "{err}");
    assert_eq!(empty.refresh_expires_at().await.expect("load"), None);

    let provider = rotating(
        &grant,
        Arc::new(MemoryRefreshTokenStore::new(Some(initial()))),
        Arc::clone(&clock) as _,
    );
    clock.advance(Duration::from_secs(30 * 86_400));
    let err = provider.fetch_token().await.expect_err("expired");
    assert!(matches!(
        err,
        Error::Auth {
            class: ErrorClass::Permanent,
            ..
        }
    ));
    assert_eq!(
        err.to_string(),
        "authentication failed: the refresh token expired at 2026-01-31T00:00:00Z; \
             authorise the connector again"
    );
    assert!(grant.seen().is_empty());
}

#[tokio::test]
async fn a_failed_save_fails_the_fetch_and_withholds_the_access_token() {
    let grant = Arc::new(Grant::rotating());
    let store = Arc::new(BrokenStore(MemoryRefreshTokenStore::new(Some(initial()))));
    let provider = rotating(&grant, store, Arc::new(ManualClock::new(start())));
    let err = provider.fetch_token().await.expect_err("save failed");
    assert_eq!(grant.seen(), ["refresh-0"]);
    let text = err.to_string();
    assert!(
        text.contains("could not be saved") && text.contains("disk full"),
        "{text}"
    );
    assert!(
        !text.contains("access-1") && !text.contains("refresh-1"),
        "{text}"
    );
    assert!(!format!("{err:?}").contains("access-1"));
}

#[tokio::test]
async fn grant_errors_pass_through() {
    let grant = Arc::new(Grant {
        reject: true,
        ..Grant::default()
    });
    let store = Arc::new(MemoryRefreshTokenStore::new(Some(initial())));
    let provider = rotating(
        &grant,
        Arc::clone(&store) as _,
        Arc::new(ManualClock::new(start())),
    );
    let err = provider.fetch_token().await.expect_err("rejected");
    assert_eq!(err.class(), ErrorClass::Permanent);
    assert!(err.to_string().contains("invalid_grant"));
    assert_eq!(secret(&store.current().expect("kept").token), "refresh-0");
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_caller_does_not_lose_the_rotated_token() {
    let grant = Arc::new(Grant {
        latency: Duration::from_secs(1),
        ..Grant::rotating()
    });
    let store = Arc::new(MemoryRefreshTokenStore::new(Some(initial())));
    let provider = rotating(
        &grant,
        Arc::clone(&store) as _,
        Arc::new(ManualClock::new(start())),
    );
    let cancelled = tokio::time::timeout(Duration::from_millis(100), provider.fetch_token()).await;
    assert!(cancelled.is_err(), "timed out mid-refresh");
    // The next fetch waits for the first to finish and uses what it saved.
    let access = provider.fetch_token().await.expect("next");
    assert_eq!(secret(&access.secret), "access-2");
    assert_eq!(grant.seen(), ["refresh-0", "refresh-1"]);
    assert_eq!(secret(&store.current().expect("saved").token), "refresh-2");
}

#[tokio::test(start_paused = true)]
async fn a_cache_in_front_of_rotation_refreshes_once() {
    let grant = Arc::new(Grant {
        latency: Duration::from_secs(1),
        ..Grant::rotating()
    });
    let store = Arc::new(MemoryRefreshTokenStore::new(Some(initial())));
    let provider = rotating(
        &grant,
        Arc::clone(&store) as _,
        Arc::new(ManualClock::new(start())),
    );
    let cache = Arc::new(
        TokenCache::new(Arc::new(provider)).with_clock(Arc::new(ManualClock::new(start()))),
    );
    let tokens = many(&cache, 100).await;
    assert!(tokens.iter().all(|t| t.as_deref().ok() == Some("access-1")));
    assert_eq!(grant.seen(), ["refresh-0"]);
    assert_eq!(secret(&store.current().expect("saved").token), "refresh-1");
}

// Basic.

#[test]
fn base64_matches_rfc_4648_vectors() {
    for (input, expected) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ] {
        let mut out = Vec::new();
        base64_encode(input.as_bytes(), &mut out);
        assert_eq!(
            String::from_utf8(out).expect("ascii"),
            expected,
            "{input:?}"
        );
    }
    let mut out = Vec::new();
    base64_encode(&[0xfb, 0xff, 0xbf], &mut out);
    assert_eq!(out, b"+/+/");
}

#[test]
fn basic_header_value() {
    // RFC 7617 §2 and its UTF-8 example (§2.1).
    let value = BasicCredentials::new("Aladdin", "open sesame").header_value();
    assert_eq!(value, "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
    assert!(value.is_sensitive());
    let value = BasicCredentials::new("test", "123\u{a3}").header_value();
    assert_eq!(value, "Basic dGVzdDoxMjPCow==");
}

// Secrets never show.

#[test]
fn debug_never_shows_a_secret() {
    let access = AccessToken::new(SECRET, Some(start()));
    let refresh = StoredRefreshToken::new(SECRET, None);
    let grant = TokenGrant {
        access: access.clone(),
        refresh: Some(refresh.clone()),
    };
    let basic = BasicCredentials::new("user", SECRET);
    let store = MemoryRefreshTokenStore::new(Some(refresh.clone()));
    let header = basic.header_value();
    let encoded = header
        .to_str()
        .expect("ascii")
        .trim_start_matches("Basic ")
        .to_owned();
    let provider = RotatingTokenProvider::new(
        Arc::new(Grant::default()),
        Arc::new(MemoryRefreshTokenStore::new(Some(refresh.clone()))),
    );
    let cache = TokenCache::new(Arc::new(provider));
    cache.lock_state().cached = Some(Cached::new(access.clone(), start(), Duration::ZERO));
    let failure = SharedFailure::new(&Error::Auth {
        class: ErrorClass::Permanent,
        message: "rejected".into(),
    });

    let debugs = [
        format!("{access:?}"),
        format!("{refresh:?}"),
        format!("{grant:?}"),
        format!("{basic:?}"),
        format!("{store:?}"),
        format!("{header:?}"),
        format!("{cache:?}"),
        format!("{:?}", failure.to_error()),
        format!("{}", failure.to_error()),
    ];
    for debug in &debugs {
        assert!(!debug.contains(SECRET), "{debug}");
        assert!(!debug.contains(&encoded), "{debug}");
    }
    assert!(debugs[3].contains("user"));
    assert!(debugs[6].contains("cached_expires_at"));
}

#[tokio::test]
async fn errors_never_show_a_secret() {
    #[derive(Debug)]
    struct Leaky;

    #[async_trait]
    impl RefreshGrant for Leaky {
        async fn refresh(&self, _token: &SecretString) -> Result<TokenGrant> {
            Ok(TokenGrant {
                access: AccessToken::new(SECRET, None),
                refresh: Some(StoredRefreshToken::new(SECRET, None)),
            })
        }
    }

    let store = Arc::new(BrokenStore(MemoryRefreshTokenStore::new(Some(
        StoredRefreshToken::new(SECRET, Some(start())),
    ))));
    let expired = RotatingTokenProvider::new(Arc::new(Leaky), store.clone())
        .with_clock(Arc::new(ManualClock::new(start())));
    let not_yet = RotatingTokenProvider::new(Arc::new(Leaky), store).with_clock(Arc::new(
        ManualClock::new(sub(start(), Duration::from_secs(1))),
    ));
    for err in [
        expired.fetch_token().await.expect_err("expired"),
        not_yet.fetch_token().await.expect_err("save failed"),
    ] {
        assert!(!format!("{err:?}").contains(SECRET), "{err:?}");
        assert!(!err.to_string().contains(SECRET), "{err}");
    }
    assert!(!format!("{expired:?}").contains(SECRET));
}
