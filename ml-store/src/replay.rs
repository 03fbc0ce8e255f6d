//! [`SqliteReplayCache`]: the webhook replay cache kept in the journal, so that a replayed
//! callback is refused after a restart too, and by every process on the same journal.
//!
//! Twilio status callbacks carry no timestamp: a captured one stays valid forever, and an
//! in-memory cache forgets it when the process restarts. Here every key lives in the
//! `webhook_replay` table until it expires; the table is bounded (at most `max_entries`
//! keys: expired keys are pruned on every insert, then the keys closest to expiry are
//! dropped) so that a flood of callbacks cannot grow the journal without end.
//!
//! The bound check does not count the table on every insert (a scan of the whole index
//! once it holds its 100,000 keys): each handle keeps the row count it last counted,
//! adjusted by what it inserted, pruned and removed since, and counts again only when that
//! estimate reaches the bound, every [`RECOUNT_EVERY`] inserts, or before it drops a live
//! key. Pruning expired keys reads only the expired range of the expiry index. Another
//! process on the same file makes the estimate low until the next count, so the table
//! may then hold up to `RECOUNT_EVERY` keys per process over the bound.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use jiff::Timestamp;
use ml_core::webhook::{Rejection, ReplayCache};
use rusqlite::{OptionalExtension as _, TransactionBehavior, params};

use crate::codec;
use crate::error::{SqlContext as _, StoreResult};
use crate::sqlite::SqliteAuditStore;

/// The default bound of the table.
pub const DEFAULT_REPLAY_ENTRIES: usize = 100_000;

/// A handle counts the table again at least once every this many inserts.
pub(crate) const RECOUNT_EVERY: u64 = 1_000;

/// What a handle believes the table holds, between two counts.
#[derive(Debug, Default)]
struct Estimate {
    /// Rows at the last count, plus inserts, minus prunes and removals since; `None`
    /// before the first count.
    rows: Option<u64>,
    /// Inserts since the last count.
    since_count: u64,
}

/// A [`ReplayCache`] in the journal's `webhook_replay` table. Cloning shares the
/// connection and the row-count estimate.
///
/// The bound is checked without counting the table on every insert: a handle keeps the
/// row count it last took, adjusted by its own inserts, prunes and removals, and counts
/// again when that estimate reaches the bound, every 1,000 inserts, and before it drops a
/// live key. Another process on the same file makes the estimate low until the next
/// count, so the table may then hold up to 1,000 keys per process over the bound.
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
    estimate: Arc<Mutex<Estimate>>,
}

impl fmt::Debug for SqliteReplayCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteReplayCache")
            .field("journal", &self.store.path())
            .field("max_entries", &self.max_entries)
            .finish_non_exhaustive()
    }
}

impl SqliteReplayCache {
    /// A cache in `store`'s journal, holding at most [`DEFAULT_REPLAY_ENTRIES`] keys.
    pub fn new(store: &SqliteAuditStore) -> Self {
        Self {
            store: store.clone(),
            max_entries: DEFAULT_REPLAY_ENTRIES,
            estimate: Arc::new(Mutex::new(Estimate::default())),
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

fn count(tx: &rusqlite::Transaction<'_>) -> StoreResult<u64> {
    let n: i64 = tx
        .prepare_cached("SELECT count(*) FROM webhook_replay")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .ctx("")?;
    codec::count_u64(n, "webhook_replay")
}

fn insert(
    conn: &mut rusqlite::Connection,
    key: &str,
    expires_at: i64,
    now: i64,
    max_entries: u64,
    estimate: &Mutex<Estimate>,
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
    // The expired range of the expiry index only (this key's old row among them).
    let expired = tx
        .prepare_cached("DELETE FROM webhook_replay WHERE expires_at < ?1")
        .and_then(|mut s| s.execute([now]))
        .ctx("")?;
    let mut est = estimate.lock().unwrap_or_else(PoisonError::into_inner);
    let (mut rows, mut counted) = match est.rows {
        Some(r) if est.since_count < RECOUNT_EVERY => (r.saturating_sub(expired as u64), false),
        _ => (count(&tx)?, true),
    };
    if rows >= max_entries && !counted {
        // Only an exact count may cost a live key its place.
        rows = count(&tx)?;
        counted = true;
    }
    if rows >= max_entries {
        // Room for this key and a little more, so that a flood of live keys costs one
        // count per `max / 64` inserts rather than one per insert.
        let excess = rows - max_entries + 1 + max_entries / 64;
        let evicted = tx
            .prepare_cached(
                "DELETE FROM webhook_replay WHERE key IN \
                 (SELECT key FROM webhook_replay ORDER BY expires_at, seen_at LIMIT ?1)",
            )
            .and_then(|mut s| s.execute([codec::sql_count(excess)]))
            .ctx("")?;
        tracing::warn!(
            rows,
            evicted,
            "webhook replay cache full; dropped the keys closest to expiry"
        );
        rows = rows.saturating_sub(evicted as u64);
    }
    tx.prepare_cached(
        "INSERT OR REPLACE INTO webhook_replay (key, expires_at, seen_at) VALUES (?1, ?2, ?3)",
    )
    .and_then(|mut s| s.execute(params![key, expires_at, now]))
    .ctx("")?;
    tx.commit().ctx("")?;
    est.rows = Some(rows + 1);
    est.since_count = if counted { 1 } else { est.since_count + 1 };
    Ok(true)
}

fn remove(
    conn: &mut rusqlite::Connection,
    keys: &[String],
    estimate: &Mutex<Estimate>,
) -> StoreResult<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx("")?;
    let mut removed = 0u64;
    {
        let mut stmt = tx
            .prepare_cached("DELETE FROM webhook_replay WHERE key = ?1")
            .ctx("")?;
        for k in keys {
            removed += stmt.execute([k.as_str()]).ctx("")? as u64;
        }
    }
    tx.commit().ctx("")?;
    let mut est = estimate.lock().unwrap_or_else(PoisonError::into_inner);
    est.rows = est.rows.map(|r| r.saturating_sub(removed));
    Ok(())
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
        let max = u64::try_from(self.max_entries).unwrap_or(u64::MAX);
        let estimate = Arc::clone(&self.estimate);
        self.store
            .write("replay_insert", move |c| {
                insert(c, &key, expires_at, now, max, &estimate)
            })
            .await
            .map_err(|e| {
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
        let keys = keys.to_vec();
        let estimate = Arc::clone(&self.estimate);
        let removed = self
            .store
            .write("replay_remove", move |c| remove(c, &keys, &estimate))
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

    #[tokio::test]
    async fn the_bound_is_checked_from_an_estimate_and_recounted_before_dropping_a_key() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("j.db");
        let a =
            SqliteReplayCache::new(&SqliteAuditStore::open(&path).expect("a")).with_max_entries(8);
        // Another process on the same file.
        let b =
            SqliteReplayCache::new(&SqliteAuditStore::open(&path).expect("b")).with_max_entries(8);
        let t = at(1_800_000_000);
        let until = |s| add(t, Duration::from_secs(s));
        assert_eq!(a.insert_if_absent("a0", until(1_000), t).await, Ok(true));
        for i in 0..5 {
            let k = format!("b{i}");
            assert_eq!(b.insert_if_absent(&k, until(10 + i), t).await, Ok(true));
        }
        // `a` does not see `b`'s keys until it counts: no count per insert, so the table
        // goes over the bound while `a`'s estimate is under it.
        for i in 1..8 {
            let k = format!("a{i}");
            assert_eq!(a.insert_if_absent(&k, until(1_000 + i), t).await, Ok(true));
        }
        assert_eq!(a.len().await.expect("len"), 13);
        // The estimate reaches the bound: `a` counts (13) and drops the 6 keys closest to
        // expiry (`b`'s five and `a0`), then admits its key.
        assert_eq!(a.insert_if_absent("a8", until(2_000), t).await, Ok(true));
        assert_eq!(a.len().await.expect("len"), 8);
        assert_eq!(a.insert_if_absent("a7", until(1_007), t).await, Ok(false));
        assert_eq!(
            a.insert_if_absent("b4", until(14), t).await,
            Ok(true),
            "b4 was dropped"
        );
        // Full: admitting b4 again dropped a1, the closest to expiry.
        assert_eq!(a.len().await.expect("len"), 8);
        // Removals keep the estimate right: room for two more without dropping anything.
        a.remove_all(&["a2".to_owned(), "a3".to_owned()]).await;
        assert_eq!(a.len().await.expect("len"), 6);
        for k in ["a9", "a10"] {
            assert_eq!(a.insert_if_absent(k, until(3_000), t).await, Ok(true));
        }
        assert_eq!(a.len().await.expect("len"), 8);
        for k in ["a4", "a5", "a6", "b4"] {
            assert_eq!(
                a.insert_if_absent(k, until(1_004), t).await,
                Ok(false),
                "{k}: nothing dropped"
            );
        }
    }
}
