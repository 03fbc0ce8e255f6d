//! [`PostgresReplayCache`]: the webhook replay cache in the PostgreSQL journal, shared by
//! every replica, so that a request replayed to another replica behind the load balancer
//! is refused as it is by the one that saw it.
//!
//! * **One statement decides.** `insert_if_absent` is one
//!   `INSERT … ON CONFLICT (key) DO UPDATE … WHERE webhook_seen.expires_at < now`: a new
//!   key is inserted, an expired one is taken over, a live one is left alone (no row
//!   returned). Two replicas inserting one key at once serialise on the key's index entry
//!   and the loser re-checks the winner's row, so a live key is admitted once, never twice.
//! * **Bounded without a scan per insert.** After every `check_every` keys admitted (per
//!   handle, and after the first), one replica at a time (a transaction-level advisory
//!   lock that the others skip rather than wait for) deletes the expired rows through the
//!   expiry index, counts what is left and, over `max_entries`, drops the keys closest to
//!   expiry (never the one just admitted). Between two checks each replica may add up to
//!   `check_every` keys over the bound.
//! * **Time** is the `now` the receiver passes (its injected clock), never the server's.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use jiff::Timestamp;
use ml_core::Result;
use ml_core::webhook::{Rejection, ReplayCache};

use super::PostgresAuditStore;
use super::error::Db;
use crate::codec;
use crate::replay::DEFAULT_REPLAY_ENTRIES;

/// By default, how many inserts (per handle) between two checks of the bound.
pub const DEFAULT_CHECK_EVERY: u64 = 1_000;

/// The advisory lock the bound check holds: one replica prunes a journal at a time.
/// Advisory locks are per database, so the key names the schema: journals in two schemas
/// of one database never skip each other's check.
const TRY_PRUNE_LOCK: &str =
    "SELECT pg_try_advisory_xact_lock(hashtextextended('ml-webhook-seen:' || current_schema(), 0))";

/// Inserts the key, or takes over an expired one; returns a row only when it did.
const INSERT: &str = "INSERT INTO webhook_seen AS s (key, seen_at, expires_at) VALUES ($1, $2, $3) \
     ON CONFLICT (key) DO UPDATE SET seen_at = EXCLUDED.seen_at, expires_at = EXCLUDED.expires_at \
     WHERE s.expires_at < EXCLUDED.seen_at \
     RETURNING 1";

/// A [`ReplayCache`] in the PostgreSQL journal's `webhook_seen` table, shared by every
/// replica on the journal: a request replayed to another replica is refused. Cloning
/// shares the pool and the insert counter.
///
/// * One statement decides (`INSERT … ON CONFLICT (key) DO UPDATE … WHERE` the held key
///   expired): a live key is admitted once across replicas, never twice; an expired one
///   is taken over.
/// * The table is bounded without a scan per insert: after every `check_every` keys a
///   handle admits (and after its first), one replica at a time deletes the expired keys
///   through the expiry index and, over `max_entries`, the keys closest to expiry.
///   Between two checks each replica may add up to `check_every` keys over the bound.
/// * Time is the `now` the receiver passes (its injected clock), never the server's.
///
/// ```no_run
/// use std::sync::Arc;
/// use ml_core::webhook::ReplayCache;
/// use ml_store::postgres::{PostgresAuditStore, PostgresReplayCache};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> ml_core::Result<()> {
/// let journal = PostgresAuditStore::connect("postgres://ml@db.internal/ml").await?;
/// // Every replica builds its receivers on the same table.
/// let cache: Arc<dyn ReplayCache> = Arc::new(PostgresReplayCache::new(&journal));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresReplayCache {
    journal: PostgresAuditStore,
    max_entries: usize,
    check_every: u64,
    inserts: Arc<AtomicU64>,
}

impl fmt::Debug for PostgresReplayCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresReplayCache")
            .field("journal", &self.journal.label())
            .field("max_entries", &self.max_entries)
            .field("check_every", &self.check_every)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for PostgresReplayCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostgresReplayCache({})", self.journal.label())
    }
}

impl PostgresReplayCache {
    /// A cache in `journal`'s schema, on its pool, holding about
    /// [`DEFAULT_REPLAY_ENTRIES`](crate::DEFAULT_REPLAY_ENTRIES) keys, checked every [`DEFAULT_CHECK_EVERY`] inserts.
    pub fn new(journal: &PostgresAuditStore) -> Self {
        Self {
            journal: journal.clone(),
            max_entries: DEFAULT_REPLAY_ENTRIES,
            check_every: DEFAULT_CHECK_EVERY,
            inserts: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Sets the bound (at least 1).
    #[must_use]
    pub fn with_max_entries(mut self, n: usize) -> Self {
        self.max_entries = n.max(1);
        self
    }

    /// Sets how many keys this handle admits between two checks of the bound (at least 1:
    /// after every one).
    #[must_use]
    pub fn with_check_every(mut self, n: u64) -> Self {
        self.check_every = n.max(1);
        self
    }

    /// How many keys the table holds (expired ones included until the next check). A
    /// full count: for tests and diagnostics, not for the request path.
    pub async fn len(&self) -> Result<u64> {
        let ctx = self.journal.ctx("counting webhook replay keys");
        let client = self.journal.client("counting webhook replay keys").await?;
        let n: i64 = client
            .query_one("SELECT count(*) FROM webhook_seen", &[])
            .await
            .db(&ctx)?
            .get(0);
        codec::count_u64(n, "webhook_seen").db(&ctx)
    }

    /// Whether the table holds no key.
    pub async fn is_empty(&self) -> Result<bool> {
        Ok(self.len().await? == 0)
    }

    /// Deletes the expired keys and, over the bound, the keys closest to expiry; `false`
    /// when another replica was doing it (nothing to do here). Runs by itself after every
    /// `check_every` keys admitted; callable by a host's maintenance task.
    pub async fn prune(&self, now: Timestamp) -> Result<bool> {
        self.prune_except(now, "").await
    }

    /// [`prune`](Self::prune), never dropping `keep` (the key just admitted: dropping it
    /// would let its replay in).
    async fn prune_except(&self, now: Timestamp, keep: &str) -> Result<bool> {
        let ctx = self.journal.ctx("pruning webhook replay keys");
        let mut client = self.journal.client("pruning webhook replay keys").await?;
        let tx = client.transaction().await.db(&ctx)?;
        let locked: bool = tx.query_one(TRY_PRUNE_LOCK, &[]).await.db(&ctx)?.get(0);
        if !locked {
            return Ok(false);
        }
        let expired = tx
            .execute(
                "DELETE FROM webhook_seen WHERE expires_at < $1",
                &[&codec::ts_bound(now)],
            )
            .await
            .db(&ctx)?;
        let held: i64 = tx
            .query_one("SELECT count(*) FROM webhook_seen", &[])
            .await
            .db(&ctx)?
            .get(0);
        let max = i64::try_from(self.max_entries).unwrap_or(i64::MAX);
        // Down to the bound and a little under, so that a flood of live keys costs one
        // count per `max / 64` inserts rather than one per insert.
        let excess = held.saturating_sub(max).saturating_add(max / 64);
        let evicted = if held > max {
            tx.execute(
                "DELETE FROM webhook_seen WHERE key IN \
                 (SELECT key FROM webhook_seen WHERE key <> $2 \
                  ORDER BY expires_at, seen_at LIMIT $1)",
                &[&excess, &keep],
            )
            .await
            .db(&ctx)?
        } else {
            0
        };
        tx.commit().await.db(&ctx)?;
        if evicted > 0 {
            tracing::warn!(
                journal = self.journal.label(),
                held,
                evicted,
                "webhook replay cache over its bound; dropped the keys closest to expiry"
            );
        } else if expired > 0 {
            tracing::debug!(
                journal = self.journal.label(),
                expired,
                "webhook replay keys pruned"
            );
        }
        Ok(true)
    }

    async fn insert(&self, key: &str, expires_at: Timestamp, now: Timestamp) -> Result<bool> {
        let ctx = self.journal.ctx("recording a webhook replay key");
        let client = self
            .journal
            .client("recording a webhook replay key")
            .await?;
        let stmt = client.prepare_cached(INSERT).await.db(&ctx)?;
        let inserted = client
            .query_opt(
                &stmt,
                &[&key, &codec::ts_bound(now), &codec::ts_bound(expires_at)],
            )
            .await
            .db(&ctx)?
            .is_some();
        drop(client);
        // Only an admitted key grows the table: a refused replay costs one statement.
        if inserted
            && self
                .inserts
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(self.check_every)
        {
            // Upkeep: a failed check does not refuse a request already recorded.
            if let Err(e) = self.prune_except(now, key).await {
                tracing::warn!(error = %e, "could not prune the webhook replay cache");
            }
        }
        Ok(inserted)
    }
}

#[async_trait]
impl ReplayCache for PostgresReplayCache {
    async fn insert_if_absent(
        &self,
        key: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> std::result::Result<bool, Rejection> {
        self.insert(key, expires_at, now).await.map_err(|e| {
            tracing::warn!(error = %e, "the journal's replay cache failed; refusing");
            Rejection::Unavailable("the journal's replay cache failed".into())
        })
    }

    async fn remove(&self, key: &str) {
        self.remove_all(&[key.to_owned()]).await;
    }

    async fn remove_all(&self, keys: &[String]) {
        if keys.is_empty() {
            return;
        }
        let ctx = self.journal.ctx("forgetting webhook replay keys");
        let removed = async {
            let client = self
                .journal
                .client("forgetting webhook replay keys")
                .await?;
            client
                .execute("DELETE FROM webhook_seen WHERE key = ANY($1)", &[&keys])
                .await
                .db(&ctx)
        }
        .await;
        if let Err(e) = removed {
            tracing::warn!(error = %e, "could not forget webhook replay keys");
        }
    }
}
