//! [`SqliteReplayCache`]: the webhook replay cache kept in the journal, so that a replayed
//! callback is refused after a restart too, and by every process on the same journal.
//!
//! Twilio status callbacks carry no timestamp: a captured one stays valid forever, and an
//! in-memory cache forgets it when the process restarts. Here every key lives in the
//! `webhook_replay` table until it expires; the table is bounded (at most `max_entries`
//! keys: expired keys are pruned on every insert, then the keys closest to expiry are
//! dropped) so that a flood of callbacks cannot grow the journal without end.

use std::fmt;

use async_trait::async_trait;
use jiff::Timestamp;
use ml_core::webhook::{Rejection, ReplayCache};
use rusqlite::{OptionalExtension as _, TransactionBehavior, params};

use crate::codec;
use crate::error::{SqlContext as _, StoreResult};
use crate::sqlite::SqliteAuditStore;

/// The default bound of the table.
pub const DEFAULT_REPLAY_ENTRIES: usize = 100_000;

/// A [`ReplayCache`] in the journal's `webhook_replay` table. Cloning shares the
/// connection.
///
/// ```
/// use std::time::Duration;
/// use ml_core::clock::add;
/// use ml_core::webhook::ReplayCache;
/// use ml_store::{SqliteAuditStore, SqliteReplayCache};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> ml_core::Result<()> {
/// let dir = tempfile::tempdir().expect("tempdir");
/// let path = dir.path().join("ml-audit.db");
/// let now = jiff::Timestamp::now();
/// let until = add(now, Duration::from_secs(3600));
/// let cache = SqliteReplayCache::new(&SqliteAuditStore::open(&path)?);
/// assert_eq!(cache.insert_if_absent("twilio:SM1/delivered", until, now).await, Ok(true));
///
/// // After a restart: the same journal still knows the key.
/// drop(cache);
/// let cache = SqliteReplayCache::new(&SqliteAuditStore::open(&path)?);
/// assert_eq!(cache.insert_if_absent("twilio:SM1/delivered", until, now).await, Ok(false));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SqliteReplayCache {
    store: SqliteAuditStore,
    max_entries: usize,
}

impl fmt::Debug for SqliteReplayCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteReplayCache")
            .field("journal", &self.store.path())
            .field("max_entries", &self.max_entries)
            .finish()
    }
}

impl SqliteReplayCache {
    /// A cache in `store`'s journal, holding at most [`DEFAULT_REPLAY_ENTRIES`] keys.
    pub fn new(store: &SqliteAuditStore) -> Self {
        Self {
            store: store.clone(),
            max_entries: DEFAULT_REPLAY_ENTRIES,
        }
    }

    /// Sets the bound (at least 1).
    pub fn with_max_entries(mut self, n: usize) -> Self {
        self.max_entries = n.max(1);
        self
    }

    /// How many keys the table holds (expired ones included until the next insert).
    pub async fn len(&self) -> ml_core::Result<u64> {
        self.store
            .write("replay_len", |c| {
                let n: i64 = c
                    .query_row("SELECT count(*) FROM webhook_replay", [], |r| r.get(0))
                    .ctx("")?;
                codec::count_u64(n, "webhook_replay")
            })
            .await
    }
}

fn insert(
    conn: &mut rusqlite::Connection,
    key: &str,
    expires_at: i64,
    now: i64,
    max_entries: i64,
) -> StoreResult<bool> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx("")?;
    let held: Option<i64> = tx
        .prepare_cached("SELECT expires_at FROM webhook_replay WHERE key = ?1")
        .and_then(|mut s| s.query_row([key], |r| r.get(0)).optional())
        .ctx("")?;
    if held.is_some_and(|exp| exp >= now) {
        return Ok(false);
    }
    tx.prepare_cached("DELETE FROM webhook_replay WHERE expires_at < ?1")
        .and_then(|mut s| s.execute([now]))
        .ctx("")?;
    let count: i64 = tx
        .prepare_cached("SELECT count(*) FROM webhook_replay")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .ctx("")?;
    let excess = count - max_entries + 1;
    if excess > 0 {
        tx.prepare_cached(
            "DELETE FROM webhook_replay WHERE key IN \
             (SELECT key FROM webhook_replay ORDER BY expires_at, seen_at LIMIT ?1)",
        )
        .and_then(|mut s| s.execute([excess]))
        .ctx("")?;
    }
    tx.prepare_cached(
        "INSERT OR REPLACE INTO webhook_replay (key, expires_at, seen_at) VALUES (?1, ?2, ?3)",
    )
    .and_then(|mut s| s.execute(params![key, expires_at, now]))
    .ctx("")?;
    tx.commit().ctx("")?;
    Ok(true)
}

#[async_trait]
impl ReplayCache for SqliteReplayCache {
    async fn insert_if_absent(
        &self,
        key: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<bool, Rejection> {
        let key = key.to_owned();
        let (expires_at, now) = (codec::ts_bound(expires_at), codec::ts_bound(now));
        let max = i64::try_from(self.max_entries).unwrap_or(i64::MAX);
        self.store
            .write("replay_insert", move |c| {
                insert(c, &key, expires_at, now, max)
            })
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "the journal's replay cache failed; refusing");
                Rejection::Unavailable("the journal's replay cache failed".into())
            })
    }

    async fn remove(&self, key: &str) {
        let key = key.to_owned();
        let removed = self
            .store
            .write("replay_remove", move |c| {
                c.prepare_cached("DELETE FROM webhook_replay WHERE key = ?1")
                    .and_then(|mut s| s.execute([key.as_str()]))
                    .ctx("")
            })
            .await;
        if let Err(e) = removed {
            tracing::warn!(error = %e, "could not forget a webhook replay key");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ml_core::clock::add;

    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("ts")
    }

    #[tokio::test]
    async fn a_replay_is_refused_after_a_restart() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("j.db");
        let t = at(1_800_000_000);
        let until = add(t, Duration::from_secs(3600));
        {
            let c = SqliteReplayCache::new(&SqliteAuditStore::open(&path).expect("open"));
            assert_eq!(c.insert_if_absent("k", until, t).await, Ok(true));
            assert_eq!(c.insert_if_absent("k", until, t).await, Ok(false));
        }
        // A new store on the same file (a restarted process, or a second one).
        let c = SqliteReplayCache::new(&SqliteAuditStore::open(&path).expect("reopen"));
        assert_eq!(c.insert_if_absent("k", until, t).await, Ok(false));
        // Expired: new again.
        let later = add(until, Duration::from_secs(1));
        assert_eq!(
            c.insert_if_absent("k", add(later, Duration::from_secs(60)), later)
                .await,
            Ok(true)
        );
        // Removed: new again.
        c.remove("k").await;
        assert_eq!(c.insert_if_absent("k", until, later).await, Ok(true));
    }

    #[tokio::test]
    async fn the_table_is_bounded_and_pruned() {
        let store = SqliteAuditStore::open_in_memory().expect("open");
        let c = SqliteReplayCache::new(&store).with_max_entries(3);
        let t = at(1_800_000_000);
        let in_secs = |s| add(t, Duration::from_secs(s));
        for (k, ttl) in [("a", 100), ("b", 10), ("c", 50), ("d", 80)] {
            assert_eq!(c.insert_if_absent(k, in_secs(ttl), t).await, Ok(true));
        }
        assert_eq!(c.len().await.expect("len"), 3);
        // "b" (closest to expiry) went first.
        assert_eq!(c.insert_if_absent("a", in_secs(100), t).await, Ok(false));
        assert_eq!(c.insert_if_absent("c", in_secs(50), t).await, Ok(false));
        assert_eq!(c.insert_if_absent("d", in_secs(80), t).await, Ok(false));
        // Past every expiry but "a": the others are pruned on the next insert.
        let later = in_secs(90);
        assert_eq!(c.insert_if_absent("e", in_secs(200), later).await, Ok(true));
        assert_eq!(c.len().await.expect("len"), 2);
        assert!(!format!("{c:?}").is_empty());
    }
}
