//! `SqliteAuditStore`: the core conformance suite, durability across reopen, refusal of
//! files that are not journals, corrupt rows, and exclusive claims across handles.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use jiff::Timestamp;
use ml_core::audit::{
    AttemptOutcome, AuditQuery, AuditStore, AuditStoreExt, AuditWrite, Claimant, CycleEnd,
    DeliveryFilter, DeliveryStatus, OwnerId, PageCommit, PlannedRecord,
};
use ml_core::sink::Receipt;
use ml_core::testing::audit::sample_record;
use ml_core::{Destination, Error, Position};
use ml_store::{SCHEMA_VERSION, SqliteAuditStore, SqliteBuilder};

/// The claimant of these tests.
fn me() -> Claimant {
    Claimant::new(OwnerId::new("test"))
}

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).expect("timestamp")
}

fn pos(n: u64) -> Position {
    Position::from_json(serde_json::json!({ "n": n }))
}

fn planned(key: &str, to: &[&str]) -> PlannedRecord {
    PlannedRecord {
        record: sample_record(key, "a"),
        destinations: to.iter().map(|a| Destination::new("slack", *a)).collect(),
    }
}

/// Records delivery `id` as delivered at `at` (receipt `r<id>`).
async fn delivered(s: &dyn AuditStore, id: ml_core::audit::DeliveryId, at: Timestamp) {
    s.finish_attempt(
        id,
        AttemptOutcome::Delivered {
            receipt: Receipt::new(format!("r{id}")),
            after_doubt: false,
        },
        at,
    )
    .await
    .expect("finish");
}

async fn commit(s: &dyn AuditStore, stream: &str, records: Vec<PlannedRecord>, n: u64) {
    let cycle = s.begin_cycle(stream, t(1)).await.expect("begin");
    s.commit_page(PageCommit {
        stream: stream.into(),
        cycle,
        records,
        rejected: vec![],
        position: pos(n),
        at: t(1),
    })
    .await
    .expect("commit");
    s.end_cycle(
        cycle,
        CycleEnd {
            at: t(2),
            ..CycleEnd::default()
        },
    )
    .await
    .expect("end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tempfile_store_conforms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = AtomicUsize::new(0);
    ml_core::testing::audit_store_conformance(|| {
        let path = dir
            .path()
            .join(format!("journal-{}.db", n.fetch_add(1, Ordering::Relaxed)));
        async move { Arc::new(SqliteAuditStore::open(path).expect("open")) as Arc<dyn AuditStore> }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_store_conforms() {
    ml_core::testing::audit_store_conformance(|| async {
        Arc::new(SqliteAuditStore::open_in_memory().expect("open")) as Arc<dyn AuditStore>
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_survives_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("journal.db");
    let (delivered, in_flight, pending) = {
        let s = SqliteAuditStore::open(&path).expect("open");
        commit(
            &s,
            "inv",
            vec![planned("1", &["#a", "#b"]), planned("2", &["#a"])],
            7,
        )
        .await;
        commit(&s, "po", vec![planned("9", &["#c"])], 3).await;
        let c = s.claim_due(&me(), t(5), 10).await.expect("claim");
        assert_eq!(c.len(), 3, "heads of #a, #b, #c");
        s.finish_attempt(
            c[0].id,
            AttemptOutcome::Delivered {
                receipt: Receipt::new("1700.1").with_scope("C1"),
                after_doubt: false,
            },
            t(6),
        )
        .await
        .expect("finish");
        s.record_send_ends(&[(Destination::new("slack", "#a"), t(6))])
            .await
            .expect("send end");
        (c[0].id, c[1].id, c[2].id)
        // The store (both connections) is dropped here, as in a crash after the claims.
    };
    let s = SqliteAuditStore::open(&path).expect("reopen");
    assert_eq!(s.load_position("inv").await.expect("pos"), Some(pos(7)));
    assert_eq!(s.load_position("po").await.expect("pos"), Some(pos(3)));
    let h = s.record_history("inv", "1").await.expect("history");
    assert_eq!(h.versions.len(), 1);
    assert_eq!(h.versions[0].record, sample_record("1", "a"));
    assert_eq!(h.deliveries.len(), 2);
    let d = s.delivery(delivered).await.expect("delivered");
    assert_eq!(d.status, DeliveryStatus::Delivered);
    assert_eq!(d.remote_id.as_deref(), Some("1700.1"));
    let a = s.attempts(delivered).await.expect("attempts");
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].outcome.as_deref(), Some("delivered"));
    assert_eq!(a[0].finished_at, Some(t(6)));
    // In-flight deliveries are still in flight: the pipeline's recovery requeues them.
    for id in [in_flight, pending] {
        assert_eq!(
            s.delivery(id).await.expect("d").status,
            DeliveryStatus::InFlight
        );
        assert_eq!(s.attempts(id).await.expect("a")[0].outcome, None);
    }
    let st = s.stats().await.expect("stats");
    assert_eq!(
        (st.records, st.delivered, st.in_flight, st.pending),
        (3, 1, 2, 1)
    );
    let (a, b) = (
        Destination::new("slack", "#a"),
        Destination::new("slack", "#b"),
    );
    assert_eq!(
        s.last_send_end(&a).await.expect("end"),
        Some(t(6)),
        "the next process paces"
    );
    assert_eq!(s.last_send_end(&b).await.expect("end"), None);
    assert_eq!(s.requeue_in_flight(&me(), t(10)).await.expect("requeue"), 2);
    assert_eq!(
        s.last_send_end(&b).await.expect("end"),
        Some(t(10)),
        "an interrupted send counts as ending at the requeue"
    );
    let again = s.claim_due(&me(), t(10), 10).await.expect("claim");
    assert_eq!(
        again.len(),
        3,
        "the two requeued heads and #a's second record"
    );
    let on_a = again
        .iter()
        .find(|c| c.destination.address == "#a")
        .expect("#a");
    assert_eq!(on_a.record.key, "2");
    assert!(again.iter().filter(|c| c.in_doubt).count() == 2);
    let cycles = s.cycles("inv", 10).await.expect("cycles");
    assert_eq!(cycles.len(), 1);
    assert_eq!(cycles[0].position, Some(pos(7)));
    // Ids keep increasing after a reopen.
    commit(&s, "inv", vec![planned("3", &["#a"])], 8).await;
    let all = s.deliveries(&DeliveryFilter::default()).await.expect("all");
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
}

#[tokio::test]
async fn nanosecond_timestamps_round_trip() {
    let s = SqliteAuditStore::open_in_memory().expect("open");
    let at: Timestamp = "2026-07-01T12:34:56.123456789Z".parse().expect("ts");
    let cycle = s.begin_cycle("inv", at).await.expect("begin");
    s.commit_page(PageCommit {
        stream: "inv".into(),
        cycle,
        records: vec![planned("1", &["#a"])],
        rejected: vec![],
        position: pos(1),
        at,
    })
    .await
    .expect("commit");
    let d = &s.deliveries(&DeliveryFilter::default()).await.expect("d")[0];
    assert_eq!(
        (d.created_at, d.updated_at, d.next_attempt_at),
        (at, at, Some(at))
    );
    assert_eq!(s.next_due_at().await.expect("due"), Some(at));
    assert_eq!(s.cycles("inv", 1).await.expect("c")[0].started_at, at);
    // Out of the stored range: a clear error, not a wrapped value.
    let e = s
        .begin_cycle("inv", Timestamp::MAX)
        .await
        .expect_err("out of range");
    assert!(e.to_string().contains("outside the range"), "{e}");
}

#[test]
fn a_file_that_is_not_a_database_is_corrupt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("garbage.db");
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&path, garbage).expect("write");
    let e = SqliteAuditStore::open(&path).expect_err("garbage");
    let Error::Corrupt(msg) = &e else {
        panic!("expected Corrupt, got {e:?}")
    };
    assert!(msg.contains(&path.display().to_string()), "{msg}");
}

#[test]
fn a_newer_schema_is_refused_naming_both_versions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("future.db");
    drop(SqliteAuditStore::open(&path).expect("create"));
    let future = SCHEMA_VERSION + 41;
    {
        let c = rusqlite::Connection::open(&path).expect("raw");
        c.pragma_update(None, "user_version", future).expect("bump");
    }
    let e = SqliteAuditStore::open(&path).expect_err("future schema");
    let Error::Corrupt(msg) = &e else {
        panic!("expected Corrupt, got {e:?}")
    };
    assert!(msg.contains(&format!("version {future}")), "{msg}");
    assert!(msg.contains(&format!("up to {SCHEMA_VERSION}")), "{msg}");
    assert!(msg.contains(&path.display().to_string()), "{msg}");
}

#[test]
fn a_negative_schema_version_is_corrupt_not_a_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tampered.db");
    drop(SqliteAuditStore::open(&path).expect("create"));
    {
        let c = rusqlite::Connection::open(&path).expect("raw");
        c.pragma_update(None, "user_version", -3).expect("tamper");
    }
    let e = SqliteAuditStore::open(&path).expect_err("tampered schema version");
    let Error::Corrupt(msg) = &e else {
        panic!("expected Corrupt, got {e:?}")
    };
    assert!(msg.contains("-3"), "{msg}");
    assert!(msg.contains(&path.display().to_string()), "{msg}");
}

#[test]
fn another_applications_database_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("other.db");
    {
        let c = rusqlite::Connection::open(&path).expect("raw");
        c.execute_batch("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
            .expect("create");
    }
    let e = SqliteAuditStore::open(&path).expect_err("foreign");
    assert!(
        matches!(&e, Error::Corrupt(m) if m.contains("another application")),
        "{e}"
    );
    // Untouched.
    let c = rusqlite::Connection::open(&path).expect("raw");
    let n: i64 = c
        .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
        .expect("count");
    assert_eq!(n, 1);
}

#[test]
fn a_missing_directory_is_a_store_error_naming_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("no/such/dir/j.db");
    let e = SqliteAuditStore::open(&path).expect_err("missing dir");
    assert!(matches!(e, Error::Store { .. }), "{e:?}");
    assert!(e.to_string().contains("no/such/dir/j.db"), "{e}");
}

fn raw(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).expect("raw connection")
}

#[tokio::test]
async fn corrupt_rows_are_corrupt_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("j.db");
    let s = SqliteAuditStore::open(&path).expect("open");
    commit(
        &s,
        "inv",
        vec![planned("1", &["#a"]), planned("2", &["#b"])],
        1,
    )
    .await;
    let c = raw(&path);
    c.execute(
        "UPDATE records SET body = '{not json' WHERE record_key = '1'",
        [],
    )
    .expect("damage");
    c.execute(
        "UPDATE deliveries SET status = 'exploded' \
             WHERE record_id = (SELECT id FROM records WHERE record_key = '2')",
        [],
    )
    .expect("damage");
    c.execute(
        "UPDATE positions SET position = '[' WHERE stream = 'inv'",
        [],
    )
    .expect("damage");

    let e = s.record_history("inv", "1").await.expect_err("bad body");
    assert!(
        matches!(&e, Error::Corrupt(m) if m.contains("record")),
        "{e}"
    );
    let e = s
        .deliveries(&DeliveryFilter::default())
        .await
        .expect_err("bad status");
    assert!(
        matches!(&e, Error::Corrupt(m) if m.contains("exploded")),
        "{e}"
    );
    let e = s.stats().await.expect_err("bad status");
    assert!(matches!(e, Error::Corrupt(_)), "{e}");
    let e = s.load_position("inv").await.expect_err("bad position");
    assert!(
        matches!(&e, Error::Corrupt(m) if m.contains("position")),
        "{e}"
    );
    // A claim that meets the damaged record quarantines it: nothing is claimed for it and
    // nothing is left in flight.
    let claimed = s
        .claim_due(&me(), t(5), 10)
        .await
        .expect("claim past the damaged record");
    assert!(claimed.is_empty(), "{claimed:?}");
    let n: i64 = c
        .query_row(
            "SELECT count(*) FROM deliveries WHERE status = 'in_flight'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(n, 0, "the quarantined delivery is not left in flight");
}

/// A record with a raw payload of `lines` repeated items: a body of a few KB.
fn large(key: &str, lines: usize, to: &str) -> PlannedRecord {
    let items: Vec<String> = (0..lines)
        .map(|i| {
            format!(
                r#"{{"LineNumber":{i},"LineAmount":"{i}.25","Description":"Office supplies","DistributionCombination":"01-520-7640-0000-000"}}"#
            )
        })
        .collect();
    let raw = format!(
        r#"{{"InvoiceId":{key},"invoiceLines":[{}]}}"#,
        items.join(",")
    );
    PlannedRecord {
        record: sample_record(key, "a").with_raw(ml_core::RawJson::from_text(raw).expect("raw")),
        destinations: vec![Destination::new("slack", to)],
    }
}

#[tokio::test]
async fn large_bodies_are_journaled_compressed_and_read_back_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("j.db");
    let written = large("7", 30, "#a");
    let json = serde_json::to_string(&written.record).expect("json");
    {
        let s = SqliteAuditStore::open(&path).expect("open");
        commit(&s, "inv", vec![written.clone(), planned("8", &["#b"])], 1).await;
    }
    let (kind, stored): (String, i64) = raw(&path)
        .query_row(
            "SELECT typeof(body), length(body) FROM records WHERE record_key = '7'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("row");
    assert_eq!(kind, "blob");
    assert!(
        stored * 3 < json.len() as i64,
        "{} bytes of JSON stored as {stored}",
        json.len()
    );
    let small: String = raw(&path)
        .query_row(
            "SELECT typeof(body) FROM records WHERE record_key = '8'",
            [],
            |r| r.get(0),
        )
        .expect("row");
    assert_eq!(small, "text", "a small body stays readable JSON");
    // A new handle has nothing cached: everything comes from the stored bodies.
    let s = SqliteAuditStore::open(&path).expect("reopen");
    let history = s.record_history("inv", "7").await.expect("history");
    assert_eq!(history.versions.len(), 1);
    assert_eq!(
        serde_json::to_string(&history.versions[0].record).expect("json"),
        json
    );
    let mut claimed = s.claim_due(&me(), t(5), 10).await.expect("claim");
    claimed.sort_by(|a, b| a.record.key.cmp(&b.record.key));
    assert_eq!(claimed.len(), 2);
    assert_eq!(
        serde_json::to_string(&claimed[0].record).expect("json"),
        json
    );
    assert_eq!(claimed[1].record.key, "8");
}

/// A version-6 journal holds only JSON bodies; once migrated, old and new bodies are
/// read side by side.
#[tokio::test]
async fn a_version_6_journal_reads_its_json_bodies_beside_compressed_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("j.db");
    let old = large("1", 30, "#a");
    let old_json = serde_json::to_string(&old.record).expect("json");
    {
        let s = SqliteAuditStore::open(&path).expect("open");
        commit(&s, "inv", vec![old], 1).await;
    }
    {
        // As a version-6 build wrote it: the JSON as text.
        let c = raw(&path);
        c.execute(
            "UPDATE records SET body = ?1 WHERE record_key = '1'",
            [&old_json],
        )
        .expect("v6 body");
        c.execute("ALTER TABLE destinations DROP COLUMN last_send_end", [])
            .expect("v6 destinations");
        c.pragma_update(None, "user_version", 6).expect("v6");
    }
    let s = SqliteAuditStore::open(&path).expect("migrates");
    let v: i64 = raw(&path)
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(v, SCHEMA_VERSION);
    commit(&s, "inv", vec![large("2", 30, "#a")], 2).await;
    let kinds: Vec<String> = raw(&path)
        .prepare("SELECT typeof(body) FROM records ORDER BY record_key")
        .expect("stmt")
        .query_map([], |r| r.get(0))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("kinds");
    assert_eq!(kinds, ["text", "blob"]);
    let mut keys = Vec::new();
    for round in 0..3 {
        for c in s.claim_due(&me(), t(5 + round), 10).await.expect("claim") {
            if c.record.key == "1" {
                assert_eq!(serde_json::to_string(&c.record).expect("json"), old_json);
            }
            keys.push(c.record.key.clone());
            delivered(&s, c.id, t(6 + round)).await;
        }
    }
    assert_eq!(keys, ["1", "2"]);
}

#[tokio::test]
async fn a_damaged_compressed_body_is_quarantined_and_everything_else_flows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("j.db");
    let s = SqliteAuditStore::open(&path).expect("open");
    commit(
        &s,
        "inv",
        vec![
            large("1", 30, "#a"),
            large("2", 30, "#a"),
            large("3", 30, "#b"),
        ],
        1,
    )
    .await;
    let c = raw(&path);
    // Record 1: the block cut in half. Record 3: a length of 4 GB declared.
    c.execute(
        "UPDATE records SET body = substr(body, 1, length(body) / 2) WHERE record_key = '1'",
        [],
    )
    .expect("damage");
    c.execute(
        "UPDATE records SET body = X'4D4C5A01FFFFFFFF1F1F1F1F' WHERE record_key = '3'",
        [],
    )
    .expect("damage");
    let e = s.record_history("inv", "1").await.expect_err("cut body");
    assert!(
        matches!(&e, Error::Corrupt(m) if m.contains("record") && m.contains("compressed")),
        "{e}"
    );
    let e = s.record_history("inv", "3").await.expect_err("bomb");
    assert!(
        matches!(&e, Error::Corrupt(m) if m.contains("at most")),
        "{e}"
    );
    // The first claim meets the damaged heads and quarantines them; the next takes what
    // was behind.
    let mut keys = Vec::new();
    for round in 0..5 {
        let claimed = s
            .claim_due(&me(), t(5 + round), 10)
            .await
            .expect("claims flow");
        keys.extend(claimed.into_iter().map(|c| c.record.key));
    }
    assert_eq!(keys, ["2"], "only the intact record is claimed");
    let failed = s
        .deliveries(&DeliveryFilter::status(DeliveryStatus::Failed))
        .await
        .expect("failed");
    let mut quarantined: Vec<&str> = failed.iter().map(|d| d.record_key.as_str()).collect();
    quarantined.sort_unstable();
    assert_eq!(quarantined, ["1", "3"]);
    for d in &failed {
        let e = d.last_error.as_ref().expect("reason");
        assert!(e.message.contains("quarantined"), "{e:?}");
    }
}

#[tokio::test]
async fn a_corrupt_record_is_quarantined_and_everything_else_flows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("j.db");
    let s = SqliteAuditStore::open(&path).expect("open");
    commit(
        &s,
        "inv",
        vec![
            planned("1", &["#a", "#b"]),
            planned("2", &["#a"]),
            planned("3", &["#c"]),
        ],
        1,
    )
    .await;
    raw(&path)
        .execute(
            "UPDATE records SET body = '{\"truncated' WHERE record_key = '1'",
            [],
        )
        .expect("damage");
    let mut sent = Vec::new();
    for round in 0..10 {
        let claimed = s
            .claim_due(&me(), t(5 + round), 10)
            .await
            .expect("claims flow");
        if claimed.is_empty() {
            break;
        }
        for c in claimed {
            sent.push((c.record.key.clone(), c.destination.address.clone()));
            delivered(&s, c.id, t(6 + round)).await;
        }
    }
    sent.sort();
    assert_eq!(
        sent,
        [
            ("2".to_owned(), "#a".to_owned()),
            ("3".to_owned(), "#c".to_owned())
        ]
    );
    let st = s.stats().await.expect("stats");
    assert_eq!((st.delivered, st.failed, st.in_flight), (2, 2, 0), "{st:?}");
    let failed = s
        .deliveries(&DeliveryFilter::status(DeliveryStatus::Failed))
        .await
        .expect("failed");
    assert_eq!(failed.len(), 2);
    for d in &failed {
        assert_eq!(d.record_key, "1");
        let e = d.last_error.as_ref().expect("reason");
        assert!(e.message.contains("quarantined"), "{e:?}");
        assert_eq!(e.class, "permanent");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_handles_never_claim_the_same_delivery() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("shared.db");
    let a = Arc::new(SqliteAuditStore::open(&path).expect("a"));
    let b = Arc::new(SqliteAuditStore::open(&path).expect("b"));
    let records: Vec<PlannedRecord> = (0..200)
        .map(|i| planned(&i.to_string(), &[&format!("#d{}", i % 25)]))
        .collect();
    commit(&*a, "inv", records, 1).await;
    let mut tasks = Vec::new();
    for i in 0..6 {
        let s: Arc<dyn AuditStore> = if i % 2 == 0 {
            Arc::clone(&a) as _
        } else {
            Arc::clone(&b) as _
        };
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            let mut idle = 0;
            while idle < 50 {
                let claimed = s.claim_due(&me(), t(10), 4).await.expect("claim");
                if claimed.is_empty() {
                    idle += 1;
                    tokio::task::yield_now().await;
                    continue;
                }
                idle = 0;
                for c in claimed {
                    mine.push(c.id);
                    delivered(&*s, c.id, t(11)).await;
                }
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("task"));
    }
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n, "a delivery was claimed twice");
    assert_eq!(n, 200, "every delivery claimed exactly once");
    let st = b.stats().await.expect("stats");
    assert_eq!((st.delivered, st.in_flight, st.pending), (200, 0, 0));
    // Every attempt row is there exactly once.
    let c = raw(&path);
    let attempts: i64 = c
        .query_row("SELECT count(*) FROM attempts", [], |r| r.get(0))
        .expect("count");
    assert_eq!(attempts, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_write_lock_is_a_retryable_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("busy.db");
    let s = SqliteBuilder::new()
        .with_path(&path)
        .with_busy_timeout(Duration::from_millis(50))
        .build()
        .expect("open");
    commit(&s, "inv", vec![planned("1", &["#a"])], 1).await;
    let mut other = raw(&path);
    let tx = other
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .expect("lock");
    let e = s.claim_due(&me(), t(5), 10).await.expect_err("locked");
    assert!(matches!(e, Error::Store { .. }), "{e:?}");
    assert!(e.class().is_retryable(), "{e}");
    assert!(e.to_string().contains("busy.db"), "{e}");
    // Reads do not wait for the writer (WAL).
    assert_eq!(s.stats().await.expect("stats").pending, 1);
    drop(tx);
    assert_eq!(s.claim_due(&me(), t(5), 10).await.expect("claim").len(), 1);
}

#[test]
fn display_and_debug_name_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("shown.db");
    let s = SqliteAuditStore::open(&path).expect("open");
    let want = format!("SqliteAuditStore({})", path.display());
    assert_eq!(s.to_string(), want);
    assert_eq!(format!("{s:?}"), want);
    assert_eq!(s.path(), path.display().to_string());
    let m = SqliteAuditStore::open_in_memory().expect("memory");
    assert_eq!(m.to_string(), "SqliteAuditStore(:memory:)");
}

#[test]
fn the_journal_is_in_wal_mode_with_the_chosen_durability() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("wal.db");
    drop(
        SqliteBuilder::new()
            .with_path(&path)
            .with_synchronous_full()
            .build()
            .expect("open"),
    );
    let c = raw(&path);
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("mode");
    assert_eq!(mode, "wal");
    let v: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(v, SCHEMA_VERSION);
}

#[tokio::test]
async fn a_page_for_an_unknown_cycle_writes_nothing() {
    let s = SqliteAuditStore::open_in_memory().expect("open");
    commit(&s, "inv", vec![planned("1", &["#a"])], 1).await;
    let before = s.stats().await.expect("stats");
    let e = s
        .commit_page(PageCommit {
            stream: "inv".into(),
            cycle: ml_core::audit::CycleId(9_999),
            records: vec![planned("2", &["#a"])],
            rejected: vec![],
            position: pos(2),
            at: t(3),
        })
        .await
        .expect_err("unknown cycle");
    assert!(matches!(e, Error::NotFound(_)), "{e}");
    assert_eq!(s.stats().await.expect("stats"), before);
    assert_eq!(s.load_position("inv").await.expect("pos"), Some(pos(1)));
    let e = s
        .end_cycle(ml_core::audit::CycleId(9_999), CycleEnd::default())
        .await
        .expect_err("unknown cycle");
    assert!(matches!(e, Error::NotFound(_)), "{e}");
}

/// Set in the child process of `a_killed_process_loses_nothing_committed`.
const CRASH_CHILD: &str = "ML_STORE_TEST_CRASH_CHILD";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_process_loses_nothing_committed() {
    if let Ok(path) = std::env::var(CRASH_CHILD) {
        // The child: commit, claim, then die without closing anything (no destructors, no
        // checkpoint), as a SIGKILL would.
        let s = SqliteAuditStore::open(&path).expect("open");
        for page in 0..20u64 {
            let records = (0..50)
                .map(|i| planned(&format!("{page}-{i}"), &["#a", "#b"]))
                .collect();
            commit(&s, "inv", records, page + 1).await;
        }
        let claimed = s.claim_due(&me(), t(5), 10).await.expect("claim");
        assert_eq!(claimed.len(), 2);
        std::process::abort();
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("killed.db");
    let status = std::process::Command::new(std::env::current_exe().expect("exe"))
        .args([
            "--exact",
            "a_killed_process_loses_nothing_committed",
            "--nocapture",
        ])
        .env(CRASH_CHILD, &path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("child");
    assert!(!status.success(), "the child aborts");
    assert!(
        dir.path().join("killed.db-wal").exists(),
        "the child died with its commits in the WAL"
    );
    let s = SqliteAuditStore::open(&path).expect("reopen");
    assert_eq!(s.load_position("inv").await.expect("pos"), Some(pos(20)));
    let st = s.stats().await.expect("stats");
    assert_eq!((st.records, st.in_flight, st.pending), (1000, 2, 1998));
    assert_eq!(s.requeue_in_flight(&me(), t(9)).await.expect("requeue"), 2);
    let again = s.claim_due(&me(), t(9), 10).await.expect("claim");
    assert!(again.iter().all(|c| c.in_doubt && c.attempt == 2));
}

#[test]
fn short_and_textual_garbage_is_corrupt_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, bytes) in [
        ("short.db", b"not a db".to_vec()),
        ("text.db", "journal\n".repeat(600).into_bytes()),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("write");
        let e = SqliteAuditStore::open(&path).expect_err(name);
        assert!(
            matches!(&e, Error::Corrupt(m) if m.contains(name)),
            "{name}: {e:?}"
        );
    }
    // An empty file is a new, empty database: it becomes a journal.
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").expect("write");
    SqliteAuditStore::open(&empty).expect("an empty file is a fresh journal");
}

#[tokio::test]
async fn damaged_pages_are_corrupt_errors_not_panics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("damaged.db");
    {
        let s = SqliteAuditStore::open(&path).expect("open");
        let records = (0..300).map(|i| planned(&i.to_string(), &["#a"])).collect();
        commit(&s, "inv", records, 1).await;
    }
    // Everything checkpointed into the main file (the WAL is gone); now overwrite every
    // page but the first (the header stays valid).
    assert!(!dir.path().join("damaged.db-wal").exists());
    let mut bytes = std::fs::read(&path).expect("read");
    assert!(bytes.len() > 8192);
    for (i, b) in bytes.iter_mut().enumerate().skip(4096) {
        *b = (i.wrapping_mul(2_654_435_761) >> 7) as u8;
    }
    std::fs::write(&path, bytes).expect("write");
    match SqliteAuditStore::open(&path) {
        Err(e) => assert!(matches!(e, Error::Corrupt(_)), "{e:?}"),
        Ok(s) => {
            let e = s.stats().await.expect_err("damaged");
            assert!(
                matches!(&e, Error::Corrupt(m) if m.contains("damaged.db")),
                "{e:?}"
            );
            let e = s.claim_due(&me(), t(5), 10).await.expect_err("damaged");
            assert!(matches!(e, Error::Corrupt(_)), "{e:?}");
        }
    }
}

#[tokio::test]
async fn write_lock_time_counts_writes_and_not_reads() {
    let s = SqliteAuditStore::open_in_memory().expect("open");
    assert_eq!(s.write_lock_held(), Duration::ZERO, "nothing written yet");
    commit(&s, "inv", vec![planned("1", &["#a"])], 1).await;
    let after_writes = s.write_lock_held();
    assert!(after_writes > Duration::ZERO, "a page was written");
    // A file journal reads through its own connection: reads do not count.
    let dir = tempfile::tempdir().expect("dir");
    let f = SqliteAuditStore::open(dir.path().join("j.db")).expect("open");
    commit(&f, "inv", vec![planned("1", &["#a"])], 1).await;
    let written = f.write_lock_held();
    for _ in 0..20 {
        f.stats().await.expect("stats");
        f.deliveries(&DeliveryFilter::default())
            .await
            .expect("query");
    }
    assert_eq!(
        f.write_lock_held(),
        written,
        "reads hold the reader, not the writer"
    );
    f.claim_due(&me(), t(5), 10).await.expect("claim");
    assert!(f.write_lock_held() > written, "a claim is a write");
}
