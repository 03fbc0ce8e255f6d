//! The webhook replay caches of the journals pass the `ReplayCache` conformance suite:
//! SQLite through two stores on one file (two processes), PostgreSQL through two pools on
//! one schema (two replicas). The PostgreSQL tests skip, saying so, when
//! `ML_TEST_POSTGRES_URL` is unset.

use std::sync::Arc;

use ml_core::testing::replay_cache_conformance;
use ml_core::webhook::ReplayCache;
use ml_store::{SqliteAuditStore, SqliteReplayCache};

#[cfg(feature = "postgres")]
mod history;
// `differential` is re-exported there for the journal tests, unused here.
#[cfg(feature = "postgres")]
#[allow(unused_imports)]
mod pg_common;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_replay_cache_conforms_across_two_processes() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("journal.db");
    let a: Arc<dyn ReplayCache> = Arc::new(SqliteReplayCache::new(
        &SqliteAuditStore::open(&path).expect("open a"),
    ));
    let b: Arc<dyn ReplayCache> = Arc::new(SqliteReplayCache::new(
        &SqliteAuditStore::open(&path).expect("open b"),
    ));
    replay_cache_conformance(a, b).await;
}

#[cfg(feature = "postgres")]
mod postgres {
    use std::sync::Arc;
    use std::time::Duration;

    use jiff::Timestamp;
    use ml_core::clock::add;
    use ml_core::testing::replay_cache_conformance;
    use ml_core::webhook::{Rejection, ReplayCache};
    use ml_store::PostgresReplayCache;

    use super::pg_common::{TestSchema, pg_url};

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("ts")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres_replay_cache_conforms_across_two_replicas() {
        let Some(url) = pg_url("postgres_replay_cache_conforms_across_two_replicas") else {
            return;
        };
        let schema = TestSchema::new(&url, "replay_conf");
        // Two journals on one schema: two pools, as two replicas have.
        let a: Arc<dyn ReplayCache> = Arc::new(PostgresReplayCache::new(&schema.store().await));
        let b: Arc<dyn ReplayCache> = Arc::new(PostgresReplayCache::new(&schema.store().await));
        replay_cache_conformance(a, b).await;
        schema.drop_schema().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_replay_table_is_bounded_and_pruned_without_a_count_per_insert() {
        let Some(url) =
            pg_url("postgres_replay_table_is_bounded_and_pruned_without_a_count_per_insert")
        else {
            return;
        };
        let schema = TestSchema::new(&url, "replay_bound");
        let journal = schema.store().await;
        let t = at(1_800_000_000);
        let in_secs = |s| add(t, Duration::from_secs(s));

        // Checked on every insert: exact, like the SQLite cache.
        let c = PostgresReplayCache::new(&journal)
            .with_max_entries(3)
            .with_check_every(1);
        for (k, ttl) in [("a", 100), ("b", 10), ("c", 50), ("d", 80)] {
            assert_eq!(c.insert_if_absent(k, in_secs(ttl), t).await, Ok(true));
        }
        assert_eq!(c.len().await.expect("len"), 3);
        // "b" (closest to expiry) went first; the others are still held.
        for (k, ttl) in [("a", 100), ("c", 50), ("d", 80)] {
            assert_eq!(c.insert_if_absent(k, in_secs(ttl), t).await, Ok(false));
        }
        assert_eq!(
            c.insert_if_absent("b", in_secs(10), t).await,
            Ok(true),
            "b was dropped"
        );
        // Admitting it again dropped "c" (now the closest to expiry), never "b" itself.
        assert_eq!(c.len().await.expect("len"), 3);
        assert_eq!(c.insert_if_absent("b", in_secs(10), t).await, Ok(false));
        // Past every expiry but "a"'s: the others are pruned before the next insert.
        let later = in_secs(90);
        assert_eq!(c.insert_if_absent("e", in_secs(200), later).await, Ok(true));
        assert_eq!(c.len().await.expect("len"), 2);
        assert!(format!("{c:?}").contains("PostgresReplayCache"));
        assert!(!c.is_empty().await.expect("is_empty"));

        // Checked every 4 inserts: in between the table may go over the bound (no count
        // on the request path), and the check brings it back.
        schema.exec("DELETE FROM webhook_seen").await;
        let c = PostgresReplayCache::new(&journal)
            .with_max_entries(3)
            .with_check_every(4);
        for i in 0..4 {
            // The check follows insert 0 (one row), not 1..=3.
            let k = format!("k{i}");
            assert_eq!(c.insert_if_absent(&k, in_secs(100 + i), t).await, Ok(true));
        }
        assert_eq!(
            c.len().await.expect("len"),
            4,
            "over the bound until the check"
        );
        assert_eq!(
            c.insert_if_absent("k4", in_secs(200), t).await,
            Ok(true),
            "the check follows the 5th insert"
        );
        assert_eq!(c.len().await.expect("len"), 3);
        // The oldest two went ("k0", "k1"); the newer ones are held.
        for k in ["k2", "k3", "k4"] {
            assert_eq!(c.insert_if_absent(k, in_secs(300), t).await, Ok(false));
        }
        schema.drop_schema().await;
    }

    #[tokio::test]
    async fn an_unreachable_database_refuses_the_request_as_unavailable() {
        let Some(url) = pg_url("an_unreachable_database_refuses_the_request_as_unavailable") else {
            return;
        };
        let schema = TestSchema::new(&url, "replay_down");
        let journal = schema.store().await;
        let c = PostgresReplayCache::new(&journal);
        let t = at(1_800_000_000);
        assert_eq!(
            c.insert_if_absent("k", add(t, Duration::from_secs(60)), t)
                .await,
            Ok(true)
        );
        // The table is gone (a database restored without it, a broken migration): the
        // request is refused so that the sender retries, never let through unchecked.
        schema.exec("DROP TABLE webhook_seen").await;
        let r = c
            .insert_if_absent("k2", add(t, Duration::from_secs(60)), t)
            .await;
        assert!(matches!(r, Err(Rejection::Unavailable(_))), "{r:?}");
        // Removal failures are logged, not raised.
        c.remove("k").await;
        schema.drop_schema().await;
    }
}
