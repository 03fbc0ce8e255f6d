//! `PostgresAuditStore` (feature `postgres`) on a real PostgreSQL: the core conformance
//! suite, the same pseudo-random histories as the SQLite journal (differential), replicas
//! sharing one journal, migrations, and the credential store.
//!
//! Needs `ML_TEST_POSTGRES_URL` (e.g. `postgres://postgres@127.0.0.1:5432/test`); without
//! it every test prints that it skipped and passes. Each test works in its own schema, so
//! tests run in parallel (nextest) without seeing each other.
#![cfg(feature = "postgres")]

mod history;
mod pg_common;

use std::sync::Arc;

use jiff::Timestamp;
use ml_core::audit::{
    AuditQuery, AuditStore, AuditWrite, Claimant, DeliveryStatus, OwnerId, PageCommit,
    PlannedRecord,
};
use ml_core::credential::envelope::{KeyRing, MasterKey};
use ml_core::credential::{CredentialName, CredentialStore};
use ml_core::testing::audit::sample_record;
use ml_core::{Destination, Error, Position};
use ml_store::SqliteAuditStore;
use ml_store::postgres::{PostgresCredentialStore, PostgresRenewalLock};
use pg_common::{TestSchema, pg_url};
use secrecy::{ExposeSecret, SecretString};

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).expect("timestamp")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_conforms() {
    let Some(url) = pg_url("postgres_store_conforms") else {
        return;
    };
    let schemas = Arc::new(std::sync::Mutex::new(Vec::new()));
    let made = Arc::clone(&schemas);
    ml_core::testing::audit_store_conformance(move || {
        let url = url.clone();
        let made = Arc::clone(&made);
        async move {
            let schema = TestSchema::new(&url, "conf");
            let store = schema.store().await;
            made.lock().expect("lock").push(schema);
            Arc::new(store) as Arc<dyn AuditStore>
        }
    })
    .await;
    let all: Vec<TestSchema> = std::mem::take(&mut *schemas.lock().expect("lock"));
    for s in all {
        s.drop_schema().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_answers_like_sqlite() {
    let Some(url) = pg_url("postgres_answers_like_sqlite") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    for seed in 1..=6u64 {
        let schema = TestSchema::new(&url, "diff");
        let pg: Arc<dyn AuditStore> = Arc::new(schema.store().await);
        let lite: Arc<dyn AuditStore> = Arc::new(
            SqliteAuditStore::open(dir.path().join(format!("d{seed}.db"))).expect("sqlite"),
        );
        pg_common::differential(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15), lite, pg).await;
        schema.drop_schema().await;
    }
}

fn planned(key: &str, to: &[&str]) -> PlannedRecord {
    PlannedRecord {
        record: sample_record(key, "1"),
        destinations: to.iter().map(|a| Destination::new("slack", *a)).collect(),
    }
}

async fn commit(s: &dyn AuditStore, stream: &str, records: Vec<PlannedRecord>, at: i64) {
    let cycle = s.begin_cycle(stream, t(at)).await.expect("begin");
    s.commit_page(PageCommit {
        stream: stream.into(),
        cycle,
        records,
        rejected: vec![],
        position: Position::from_json(serde_json::json!({ "at": at })),
        at: t(at),
    })
    .await
    .expect("commit");
}

/// Three stores (three pools: as three replicas) claim from one journal at once: every
/// delivery is claimed exactly once, and per destination in id order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_claim_each_delivery_once_in_destination_order() {
    let Some(url) = pg_url("replicas_claim_each_delivery_once_in_destination_order") else {
        return;
    };
    let schema = TestSchema::new(&url, "replicas");
    let first = schema.store().await;
    let records: Vec<PlannedRecord> = (0..300)
        .map(|i| planned(&i.to_string(), &[&format!("#c{}", i % 12)]))
        .collect();
    commit(&first, "inv", records, 1).await;
    let mut tasks = Vec::new();
    for r in 0..3 {
        let store = schema.store().await;
        tasks.push(tokio::spawn(async move {
            let me = Claimant::new(OwnerId::new(format!("replica-{r}")));
            let mut mine = Vec::new();
            let mut idle = 0;
            while idle < 20 {
                let claimed = store.claim_due(&me, t(10), 4).await.expect("claim");
                if claimed.is_empty() {
                    idle += 1;
                    tokio::task::yield_now().await;
                    continue;
                }
                idle = 0;
                for c in claimed {
                    mine.push((c.destination.address.clone(), c.id));
                    store
                        .finish_attempt(
                            c.id,
                            ml_core::audit::AttemptOutcome::Delivered {
                                receipt: ml_core::sink::Receipt::new(format!("m{}", c.id)),
                                after_doubt: false,
                            },
                            t(11),
                        )
                        .await
                        .expect("finish");
                }
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("task"));
    }
    let mut ids: Vec<_> = all.iter().map(|(_, id)| *id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), all.len(), "a delivery was claimed twice");
    assert_eq!(all.len(), 300, "every delivery claimed");
    let stats = first.stats().await.expect("stats");
    assert_eq!(stats.delivered, 300);
    // Per destination, the attempts started in id order.
    for c in 0..12 {
        let views = first
            .deliveries(&ml_core::audit::DeliveryFilter {
                destination: Some(Destination::new("slack", format!("#c{c}"))),
                ..Default::default()
            })
            .await
            .expect("deliveries");
        assert!(views.iter().all(|v| v.status == DeliveryStatus::Delivered));
    }
    schema.drop_schema().await;
}

/// A replica starting up never requeues a live sibling's claim; after the sibling died
/// (its lease ran out), it takes it over in doubt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_of_one_replica_leaves_a_live_siblings_claims_alone() {
    let Some(url) = pg_url("startup_of_one_replica_leaves_a_live_siblings_claims_alone") else {
        return;
    };
    let schema = TestSchema::new(&url, "startup");
    let a_store = schema.store().await;
    let b_store = schema.store().await;
    commit(&a_store, "inv", vec![planned("1", &["#a"])], 1).await;
    let a = Claimant::new(OwnerId::random());
    let claimed = a_store.claim_due(&a, t(10), 10).await.expect("claim");
    assert_eq!(claimed.len(), 1);
    let b = Claimant::new(OwnerId::random());
    assert_eq!(
        b_store.requeue_in_flight(&b, t(20)).await.expect("requeue"),
        0
    );
    assert_eq!(
        b_store.stats().await.expect("stats").in_flight,
        1,
        "the live claim stays"
    );
    assert_eq!(
        b_store.requeue_in_flight(&b, t(71)).await.expect("requeue"),
        1
    );
    let again = b_store.claim_due(&b, t(72), 10).await.expect("claim");
    assert!(again[0].in_doubt);
    schema.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_versioned_and_refuse_foreign_or_newer_schemas() {
    let Some(url) = pg_url("migrations_are_versioned_and_refuse_foreign_or_newer_schemas") else {
        return;
    };
    let schema = TestSchema::new(&url, "migrate");
    let store = schema.store().await;
    assert_eq!(
        store.schema_version().await.expect("version"),
        ml_store::postgres::POSTGRES_SCHEMA_VERSION
    );
    // Opening again (another replica) is a no-op.
    let again = schema.store().await;
    assert_eq!(
        again.schema_version().await.expect("version"),
        ml_store::postgres::POSTGRES_SCHEMA_VERSION
    );
    schema
        .exec("UPDATE ml_schema_version SET version = 99")
        .await;
    let e = schema.try_store().await.expect_err("newer");
    assert!(matches!(&e, Error::Corrupt(m) if m.contains("99")), "{e}");
    schema.drop_schema().await;

    let foreign = TestSchema::new(&url, "foreign");
    foreign.exec("CREATE TABLE invoices (id int)").await;
    let e = foreign.try_store().await.expect_err("foreign");
    assert!(
        matches!(&e, Error::Corrupt(m) if m.contains("another application")),
        "{e}"
    );
    foreign.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_is_a_retryable_error_without_the_password() {
    // No database needed: nothing listens on port 1.
    let e = ml_store::PostgresBuilder::new()
        .with_url("postgres://ml:hunter2@127.0.0.1:1/none")
        .with_connect_timeout(std::time::Duration::from_secs(2))
        .build()
        .await
        .expect_err("unreachable");
    assert!(e.class().is_retryable(), "{e}");
    assert!(!e.to_string().contains("hunter2"), "{e}");
    assert!(!format!("{e:?}").contains("hunter2"), "{e:?}");
}

fn ring(key: &MasterKey) -> KeyRing {
    KeyRing::new(key.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_credential_store_conforms_and_never_stores_clear_text() {
    let Some(url) = pg_url("postgres_credential_store_conforms_and_never_stores_clear_text") else {
        return;
    };
    let schema = TestSchema::new(&url, "creds");
    let key = MasterKey::generate();
    let store = PostgresCredentialStore::open(schema.store().await, Some(ring(&key)))
        .await
        .expect("open");
    ml_core::testing::credential_store_conformance(&store).await;

    let name = CredentialName::new("slack.bot_token").expect("name");
    store
        .put(&name, &SecretString::from("xoxb-very-secret-123"))
        .await
        .expect("put");
    let raw = schema
        .query_text(
            "SELECT encode(ciphertext, 'escape') || encode(wrapped_key, 'escape') FROM credentials",
        )
        .await;
    assert!(!raw.contains("xoxb-very-secret-123"), "clear text at rest");
    assert!(!format!("{store:?}").contains("xoxb"));

    // A ciphertext moved to another name does not open.
    schema
        .exec(
            "INSERT INTO credentials (name, version, key_id, wrapped_key, ciphertext, updated_at) \
             SELECT 'moved', version, key_id, wrapped_key, ciphertext, updated_at \
             FROM credentials WHERE name = 'slack.bot_token'",
        )
        .await;
    let e = store
        .get(&CredentialName::new("moved").expect("name"))
        .await
        .expect_err("moved ciphertext");
    assert!(e.to_string().contains("moved"), "{e}");
    schema
        .exec("DELETE FROM credentials WHERE name = 'moved'")
        .await;

    // Wrong master key: refused at open, naming the credential.
    let e = PostgresCredentialStore::open(schema.store().await, Some(ring(&MasterKey::generate())))
        .await
        .expect_err("wrong key");
    assert!(e.to_string().contains("slack.bot_token"), "{e}");
    // No key with credentials present: refused, saying why.
    let e = PostgresCredentialStore::open(schema.store().await, None)
        .await
        .expect_err("no key");
    assert!(e.to_string().contains("ML_MASTER_KEY"), "{e}");

    // Rotation: the new key re-wraps, the old one is needed only until it completes.
    let new = MasterKey::generate();
    let rotating = PostgresCredentialStore::open(
        schema.store().await,
        Some(KeyRing::new(new.clone()).with_previous(key.clone())),
    )
    .await
    .expect("open rotating");
    let r = rotating.rotate().await.expect("rotate");
    assert_eq!(r.rewrapped, 1);
    let after = PostgresCredentialStore::open(schema.store().await, Some(ring(&new)))
        .await
        .expect("new key only");
    assert_eq!(
        after
            .get(&name)
            .await
            .expect("get")
            .expect("some")
            .expose_secret(),
        "xoxb-very-secret-123"
    );
    schema.drop_schema().await;
}

/// Two replicas writing one credential at once get distinct versions.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_puts_get_distinct_versions() {
    let Some(url) = pg_url("concurrent_puts_get_distinct_versions") else {
        return;
    };
    let schema = TestSchema::new(&url, "credput");
    let key = MasterKey::generate();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = PostgresCredentialStore::open(schema.store().await, Some(ring(&key)))
            .await
            .expect("open");
        tasks.push(tokio::spawn(async move {
            let name = CredentialName::new("sage_x3.refresh_token").expect("name");
            store
                .put(&name, &SecretString::from(format!("rt-{i}")))
                .await
                .expect("put")
                .version
        }));
    }
    let mut versions = Vec::new();
    for t in tasks {
        versions.push(t.await.expect("task"));
    }
    versions.sort_unstable();
    assert_eq!(versions, (1..=8).collect::<Vec<u64>>());
    schema.drop_schema().await;
}

/// The renewal lock is exclusive across connections (processes) and released when the
/// holder releases it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_lock_is_exclusive_and_released_on_drop() {
    let Some(url) = pg_url("renewal_lock_is_exclusive_and_released_on_drop") else {
        return;
    };
    let b = ml_store::PostgresBuilder::new().with_url(&url);
    let a = PostgresRenewalLock::new(&b).expect("lock");
    let name = format!("test-{}", std::process::id());
    let held = a.lock(&name).await.expect("lock");
    assert!(
        a.try_lock(&name).await.expect("try").is_none(),
        "held elsewhere"
    );
    assert!(
        a.try_lock(&format!("{name}-other"))
            .await
            .expect("try")
            .is_some()
    );
    held.release().await.expect("release");
    assert!(a.try_lock(&name).await.expect("try").is_some(), "released");
}

/// An issuer that rotates refresh tokens: `rt-N` is good once and yields `rt-N+1`; a
/// spent one is refused for good (`invalid_grant`), as Sage X3 does.
#[derive(Debug, Default)]
struct RotatingIssuer {
    current: std::sync::Mutex<u64>,
}

#[async_trait::async_trait]
impl ml_core::auth::RefreshGrant for RotatingIssuer {
    async fn refresh(&self, token: &SecretString) -> ml_core::Result<ml_core::auth::TokenGrant> {
        let n: u64 = {
            let cur = *self.current.lock().expect("lock");
            if token.expose_secret() != format!("rt-{cur}") {
                return Err(Error::Auth {
                    class: ml_core::ErrorClass::Permanent,
                    message: "invalid_grant".into(),
                });
            }
            cur
        };
        // The exchange takes a while: a second replica would load the same token meanwhile.
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        *self.current.lock().expect("lock") = n + 1;
        Ok(ml_core::auth::TokenGrant {
            access: ml_core::auth::AccessToken::new(format!("at-{n}"), None),
            refresh: Some(ml_core::auth::StoredRefreshToken::new(
                format!("rt-{}", n + 1),
                None,
            )),
        })
    }
}

/// Three replicas renewing one rotating refresh token at once, ten times each: every
/// renewal works (each loads the token the previous one saved), none spends a token twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn renewals_of_a_rotating_token_run_one_replica_at_a_time() {
    use ml_core::auth::{
        MemoryRefreshTokenStore, RefreshTokenStore, RotatingTokenProvider, StoredRefreshToken,
        TokenProvider,
    };
    use ml_store::postgres::LockedRefreshTokenStore;
    let Some(url) = pg_url("renewals_of_a_rotating_token_run_one_replica_at_a_time") else {
        return;
    };
    let shared: Arc<dyn RefreshTokenStore> = Arc::new(MemoryRefreshTokenStore::new(Some(
        StoredRefreshToken::new("rt-0", None),
    )));
    let issuer = Arc::new(RotatingIssuer::default());
    let lock =
        PostgresRenewalLock::new(&ml_store::PostgresBuilder::new().with_url(&url)).expect("lock");
    let name = format!("sage_x3.refresh_token.{}", std::process::id());
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let store = Arc::new(LockedRefreshTokenStore::new(
            Arc::clone(&shared),
            lock.clone(),
            name.clone(),
        ));
        let provider = RotatingTokenProvider::new(Arc::clone(&issuer) as _, store);
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                provider.fetch_token().await.expect("renewal");
            }
        }));
    }
    for t in tasks {
        t.await.expect("replica");
    }
    assert_eq!(
        *issuer.current.lock().expect("lock"),
        30,
        "30 renewals, in turn"
    );
    assert_eq!(
        shared
            .load()
            .await
            .expect("load")
            .expect("token")
            .token
            .expose_secret(),
        "rt-30"
    );
}
