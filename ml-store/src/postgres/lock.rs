//! Cross-process renewal of rotating refresh tokens: [`PostgresRenewalLock`] (a
//! PostgreSQL session advisory lock per name) and [`LockedRefreshTokenStore`], which holds
//! it from `load` to `save` so that one replica at a time spends the refresh token.
//!
//! A rotating refresh token (Sage X3, Slack token rotation) is spent by its exchange: two
//! replicas exchanging the same token at once leave one of them with a refused token
//! (and, for `RotatingTokenProvider`, a latched "pairing needed"). With the lock, the
//! second replica waits, then loads the token the first one saved.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use ml_core::Result;
use ml_core::auth::{RefreshTokenStore, StoredRefreshToken};

use super::PostgresBuilder;
use super::error::Db;

/// How long a [`LockedRefreshTokenStore`] holds the lock after `load` when no `save`
/// follows (the exchange failed): then it is released for the other replicas.
pub const DEFAULT_RENEWAL_HOLD: Duration = Duration::from_secs(60);

/// Named cross-process locks on a PostgreSQL database: `pg_advisory_lock` on a dedicated
/// connection per held lock. The lock is released when the [`RenewalGuard`] is dropped
/// (the connection closes), and by the server when the holder dies: a killed replica
/// never keeps it.
#[derive(Clone)]
pub struct PostgresRenewalLock {
    builder: PostgresBuilder,
    label: String,
}

impl fmt::Debug for PostgresRenewalLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostgresRenewalLock({})", self.label)
    }
}

/// A held lock; dropping it releases the lock.
pub struct RenewalGuard {
    name: String,
    client: tokio_postgres::Client,
    connection: tokio::task::JoinHandle<()>,
}

impl fmt::Debug for RenewalGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RenewalGuard({})", self.name)
    }
}

impl RenewalGuard {
    /// Releases the lock now (dropping the guard releases it too, when the server notices
    /// the closed connection).
    pub async fn release(self) -> Result<()> {
        self.client
            .execute(
                &format!("SELECT pg_advisory_unlock({})", key_sql()),
                &[&self.name],
            )
            .await
            .db(&format!("renewal lock `{}`: release", self.name))?;
        Ok(())
    }
}

impl Drop for RenewalGuard {
    fn drop(&mut self) {
        // Closing the connection ends the session, which releases its advisory locks.
        self.connection.abort();
    }
}

/// The 64-bit advisory lock key of a name (namespaced, so it never meets the journal's
/// own locks).
fn key_sql() -> &'static str {
    "hashtextextended('ml-renewal:' || $1, 0)"
}

impl PostgresRenewalLock {
    /// Locks on the database `b` points at (its URL, TLS and timeouts).
    pub fn new(b: &PostgresBuilder) -> Result<Self> {
        let (_, _, label) = b.config()?;
        Ok(Self {
            builder: b.clone(),
            label,
        })
    }

    async fn connect(&self) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>)> {
        let (config, tls, _) = self.builder.config()?;
        let ctx = format!("{}: renewal lock: connecting", self.label);
        if tls {
            let (client, conn) = config.connect(super::tls_connector()?).await.db(&ctx)?;
            Ok((client, tokio::spawn(async move { drop(conn.await) })))
        } else {
            let (client, conn) = config.connect(tokio_postgres::NoTls).await.db(&ctx)?;
            Ok((client, tokio::spawn(async move { drop(conn.await) })))
        }
    }

    /// Waits until `name` is free in every process, then holds it.
    pub async fn lock(&self, name: &str) -> Result<RenewalGuard> {
        let (client, connection) = self.connect().await?;
        client
            .execute(&format!("SELECT pg_advisory_lock({})", key_sql()), &[&name])
            .await
            .db(&format!("{}: renewal lock `{name}`", self.label))?;
        Ok(RenewalGuard {
            name: name.to_owned(),
            client,
            connection,
        })
    }

    /// Holds `name` if it is free right now.
    pub async fn try_lock(&self, name: &str) -> Result<Option<RenewalGuard>> {
        let (client, connection) = self.connect().await?;
        let got: bool = client
            .query_one(
                &format!("SELECT pg_try_advisory_lock({})", key_sql()),
                &[&name],
            )
            .await
            .db(&format!("{}: renewal lock `{name}`", self.label))?
            .get(0);
        Ok(got.then(|| RenewalGuard {
            name: name.to_owned(),
            client,
            connection,
        }))
    }
}

/// A [`RefreshTokenStore`] whose `load` takes a cross-process lock that its `save`
/// releases, so `RotatingTokenProvider` renewals (load, exchange, save) run one replica at
/// a time, each loading the token the previous one saved. If no `save` follows a `load`
/// (the exchange failed), the lock is released at the next `load` or after the hold time
/// ([`DEFAULT_RENEWAL_HOLD`]).
pub struct LockedRefreshTokenStore {
    inner: Arc<dyn RefreshTokenStore>,
    lock: PostgresRenewalLock,
    name: String,
    hold: Duration,
    held: Arc<Mutex<Option<(u64, RenewalGuard)>>>,
}

impl fmt::Debug for LockedRefreshTokenStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockedRefreshTokenStore")
            .field("inner", &self.inner)
            .field("lock", &self.lock)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl LockedRefreshTokenStore {
    /// `inner` guarded by the lock `name` (e.g. `sage_x3.refresh_token`).
    pub fn new(
        inner: Arc<dyn RefreshTokenStore>,
        lock: PostgresRenewalLock,
        name: impl Into<String>,
    ) -> Self {
        Self {
            inner,
            lock,
            name: name.into(),
            hold: DEFAULT_RENEWAL_HOLD,
            held: Arc::new(Mutex::new(None)),
        }
    }

    /// How long the lock is held after a `load` that no `save` follows.
    #[must_use]
    pub fn with_hold(mut self, hold: Duration) -> Self {
        self.hold = hold;
        self
    }

    fn release(&self) {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
}

#[async_trait]
impl RefreshTokenStore for LockedRefreshTokenStore {
    async fn load(&self) -> Result<Option<StoredRefreshToken>> {
        self.release();
        let guard = self.lock.lock(&self.name).await?;
        let generation: u64 = rand_generation();
        *self.held.lock().unwrap_or_else(PoisonError::into_inner) = Some((generation, guard));
        let held = Arc::clone(&self.held);
        let hold = self.hold;
        tokio::spawn(async move {
            tokio::time::sleep(hold).await;
            let mut h = held.lock().unwrap_or_else(PoisonError::into_inner);
            if h.as_ref().is_some_and(|(g, _)| *g == generation) {
                h.take();
            }
        });
        match self.inner.load().await {
            Ok(t) => Ok(t),
            Err(e) => {
                self.release();
                Err(e)
            }
        }
    }

    async fn save(&self, token: &StoredRefreshToken) -> Result<()> {
        let out = self.inner.save(token).await;
        self.release();
        out
    }
}

fn rand_generation() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
