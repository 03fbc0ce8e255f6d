//! [`RfcClient`]: any [`RfcTransport`] behind the per-system concurrency cap and the retry
//! policy.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use ml_core::limiter::ConcurrencyLimiter;
use ml_core::retry::RetryPolicy;
use rand::SeedableRng as _;
use rand::rngs::SmallRng;

use crate::error::SapEccError;
use crate::rfc::{RfcCall, RfcError, RfcResponse, RfcTransport};

/// The default cap of RFC calls in flight per SAP system.
pub const DEFAULT_MAX_CONCURRENT_RFC: usize = 10;
/// The highest cap accepted (the seed's ceiling; many Basis teams allow far fewer).
pub const MAX_CONCURRENT_RFC: usize = 50;

/// One limiter per SAP system for the whole process, so that every stream (and every
/// source built separately from one configuration) shares the system's cap.
fn shared_limiter(key: &str, max: usize) -> Result<Arc<ConcurrencyLimiter>, SapEccError> {
    static LIMITERS: Mutex<Option<HashMap<String, Arc<ConcurrencyLimiter>>>> = Mutex::new(None);
    let mut guard = LIMITERS.lock().unwrap_or_else(PoisonError::into_inner);
    let map = guard.get_or_insert_with(HashMap::new);
    if let Some(l) = map.get(key) {
        if l.max_for(key) != Some(max) {
            // The first configuration of a system wins: two caps for one system would let
            // the sum of both run at once.
            tracing::warn!(
                system = key,
                configured = max,
                in_use = l.max_for(key),
                "SAP_ECC_MAX_CONCURRENT_RFC differs between sources of one system; keeping the first"
            );
        }
        return Ok(Arc::clone(l));
    }
    let l = Arc::new(
        ConcurrencyLimiter::builder()
            .prefix(key, max)
            .build()
            .map_err(|e| SapEccError::config("SAP_ECC_MAX_CONCURRENT_RFC", e.to_string()))?,
    );
    map.insert(key.to_owned(), Arc::clone(&l));
    Ok(l)
}

/// Calls function modules through a transport, never more than the cap at once (counting
/// every attempt: a permit is held only while one attempt is on the wire, never during the
/// backoff), retrying retryable failures with the policy's backoff. A memory dump of a
/// call with a `ROWCOUNT` is retried with half the rows.
pub struct RfcClient {
    transport: Arc<dyn RfcTransport>,
    limiter: Arc<ConcurrencyLimiter>,
    key: String,
    retry: RetryPolicy,
    calls: AtomicU64,
}

impl fmt::Debug for RfcClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RfcClient")
            .field("transport", &self.transport)
            .field("key", &self.key)
            .field("max_in_flight", &self.limiter.max_for(&self.key))
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl RfcClient {
    /// A client over `transport`, capped at `max_concurrent` calls in flight (1..=50) for
    /// the transport's system across the whole process.
    pub fn new(
        transport: Arc<dyn RfcTransport>,
        max_concurrent: usize,
    ) -> Result<Self, SapEccError> {
        if !(1..=MAX_CONCURRENT_RFC).contains(&max_concurrent) {
            return Err(SapEccError::config(
                "SAP_ECC_MAX_CONCURRENT_RFC",
                format!("{max_concurrent} is not in 1..={MAX_CONCURRENT_RFC}"),
            ));
        }
        let key = format!("sap:{}", transport.system());
        let limiter = shared_limiter(&key, max_concurrent)?;
        Ok(Self {
            transport,
            limiter,
            key,
            retry: RetryPolicy::default(),
            calls: AtomicU64::new(0),
        })
    }

    /// A client sharing a host's limiter under `key` (the host decides the cap).
    pub fn with_limiter(
        transport: Arc<dyn RfcTransport>,
        limiter: Arc<ConcurrencyLimiter>,
        key: impl Into<String>,
    ) -> Self {
        Self {
            transport,
            limiter,
            key: key.into(),
            retry: RetryPolicy::default(),
            calls: AtomicU64::new(0),
        }
    }

    /// The retry policy of each call.
    #[must_use]
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The system, as the transport names it.
    pub fn system(&self) -> String {
        self.transport.system()
    }

    /// The cap of calls in flight for this system.
    pub fn max_in_flight(&self) -> Option<usize> {
        self.limiter.max_for(&self.key)
    }

    /// Calls in flight right now for this system (every client sharing the limiter).
    pub fn in_flight(&self) -> usize {
        self.limiter.in_flight(&self.key)
    }

    /// Attempts sent by this client so far (retries included).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Calls `call` with retries; a memory dump halves its `ROWCOUNT` in place (the caller
    /// reads back what was applied).
    pub async fn call(&self, call: &mut RfcCall) -> Result<RfcResponse, RfcError> {
        let started = tokio::time::Instant::now();
        let mut rng = SmallRng::from_rng(&mut rand::rng());
        let mut attempt = 0u32;
        loop {
            let outcome = {
                let _permit = self.limiter.acquire(&self.key).await;
                self.calls.fetch_add(1, Ordering::Relaxed);
                self.transport.call(call).await
            };
            let err = match outcome {
                Ok(r) => return Ok(r),
                Err(e) => e,
            };
            let Some(wait) =
                self.retry
                    .next_delay(attempt, started.elapsed(), err.class(), &mut rng)
            else {
                return Err(err);
            };
            if err.is_memory_dump()
                && let Some(n) = call
                    .import("ROWCOUNT")
                    .and_then(|v| v.trim().parse::<u64>().ok())
                && n > 1
            {
                call.set_import("ROWCOUNT", (n / 2).to_string());
            }
            tracing::debug!(
                function = call.function(),
                error = %err,
                wait_ms = wait.as_millis(),
                attempt,
                "retrying RFC call"
            );
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use async_trait::async_trait;

    use super::*;
    use crate::rfc::RfcErrorKind;

    /// Fails the first `fail` calls with `SYSTEM_FAILURE`, records the most in flight.
    #[derive(Debug, Default)]
    struct Flaky {
        fail: AtomicUsize,
        now: AtomicUsize,
        max: AtomicUsize,
        dump: bool,
        rowcounts: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl RfcTransport for Flaky {
        async fn call(&self, call: &RfcCall) -> Result<RfcResponse, RfcError> {
            let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.max.fetch_max(n, Ordering::SeqCst);
            self.rowcounts
                .lock()
                .expect("lock")
                .push(call.import("ROWCOUNT").unwrap_or_default().to_owned());
            tokio::time::sleep(Duration::from_millis(10)).await;
            self.now.fetch_sub(1, Ordering::SeqCst);
            let left = self.fail.load(Ordering::SeqCst);
            if left > 0 {
                self.fail.store(left - 1, Ordering::SeqCst);
                let msg = if self.dump {
                    "TSV_TNEW_PAGE_ALLOC_FAILED"
                } else {
                    "no work process"
                };
                return Err(RfcError::system_failure(msg));
            }
            Ok(RfcResponse::default())
        }

        fn system(&self) -> String {
            format!("flaky-{self:p}")
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_cap_holds_under_retries() {
        let t = Arc::new(Flaky {
            fail: AtomicUsize::new(40),
            ..Flaky::default()
        });
        let c = Arc::new(
            RfcClient::new(t.clone(), 3)
                .expect("client")
                .with_retry(RetryPolicy::default().with_max_attempts(50)),
        );
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let c = Arc::clone(&c);
            tasks.push(tokio::spawn(async move {
                c.call(&mut RfcCall::new("Z_TEST")).await
            }));
        }
        for t in tasks {
            t.await.expect("join").expect("call");
        }
        assert!(t.max.load(Ordering::SeqCst) <= 3);
        assert_eq!(c.calls(), 60);
        assert_eq!(c.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn memory_dumps_halve_the_rowcount_and_permanent_errors_stop() {
        let t = Arc::new(Flaky {
            fail: AtomicUsize::new(2),
            dump: true,
            ..Flaky::default()
        });
        let c = RfcClient::new(t.clone(), 1).expect("client");
        let mut call = RfcCall::new("RFC_READ_TABLE").with_import("ROWCOUNT", "1000");
        c.call(&mut call).await.expect("third attempt");
        assert_eq!(call.import("ROWCOUNT"), Some("250"));
        assert_eq!(*t.rowcounts.lock().expect("lock"), ["1000", "500", "250"]);
        assert!(RfcClient::new(t.clone(), 0).is_err());
        assert!(RfcClient::new(t, 51).is_err());
        let e = RfcError::new(RfcErrorKind::Logon, "no");
        assert!(!e.class().is_retryable());
    }
}
