//! Cross-process renewal of rotating refresh tokens: [`PostgresRenewalLock`] (a
//! PostgreSQL session advisory lock per name) and [`LockedRefreshTokenStore`], whose
//! renewals (load, exchange, save) run under it, so one replica at a time spends the
//! refresh token.
//!
//! A rotating refresh token (Sage X3, Slack token rotation) is spent by its exchange: two
//! replicas exchanging the same token at once leave one of them with a refused token
//! (and, for `RotatingTokenProvider`, a latched "pairing needed"). With the lock, the
//! second replica waits, then loads the token the first one saved.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use ml_core::Result;
use ml_core::auth::{RefreshTokenStore, RenewalLockGuard, StoredRefreshToken};

use super::PostgresBuilder;
use super::error::Db;

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

/// A [`RefreshTokenStore`] whose renewals run one process at a time: it answers
/// [`RefreshTokenStore::lock_renewal`] with a [`PostgresRenewalLock`] on its name, which
/// `RotatingTokenProvider` holds from `load` through the exchange to `save`. A second
/// replica renewing at the same moment waits, then loads the token the first one saved
/// (never the spent one). A replica killed mid-renewal releases the lock with its
/// connection. `load` and `save` go to the wrapped store.
pub struct LockedRefreshTokenStore {
    inner: Arc<dyn RefreshTokenStore>,
    lock: PostgresRenewalLock,
    name: String,
}

impl fmt::Debug for LockedRefreshTokenStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockedRefreshTokenStore")
            .field("inner", &self.inner)
            .field("lock", &self.lock)
            .field("name", &self.name)
            .finish()
    }
}

impl LockedRefreshTokenStore {
    /// `inner` renewed under the lock `name` (e.g. `sage_x3.refresh_token`).
    pub fn new(
        inner: Arc<dyn RefreshTokenStore>,
        lock: PostgresRenewalLock,
        name: impl Into<String>,
    ) -> Self {
        Self {
            inner,
            lock,
            name: name.into(),
        }
    }
}

#[async_trait]
impl RefreshTokenStore for LockedRefreshTokenStore {
    async fn load(&self) -> Result<Option<StoredRefreshToken>> {
        self.inner.load().await
    }

    async fn save(&self, token: &StoredRefreshToken) -> Result<()> {
        self.inner.save(token).await
    }

    async fn lock_renewal(&self) -> Result<Option<RenewalLockGuard>> {
        let guard = self.lock.lock(&self.name).await?;
        Ok(Some(Box::new(guard)))
    }
}
