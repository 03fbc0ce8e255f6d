//! The journal on PostgreSQL next to SQLite, and deliveries/s with 1, 2 and 3 replicas on
//! PostgreSQL (limiter off: claim + finish only, as fast as the journal allows).
//!
//! * `backends/{sqlite,postgres}/commit_page_500`: pages of 500 fresh records (records/s).
//! * `backends/{sqlite,postgres}/claim_finish_50`: claim up to 50 heads and finish each.
//! * `replicas/postgres/{1,2,3}`: that many store handles (each its own pool, as separate
//!   replicas) draining one backlog of 3,000 deliveries over 60 destinations.
//!
//! Needs `ML_TEST_POSTGRES_URL`; without it only SQLite runs. Each run uses a fresh schema
//! and drops it at the end.
//!
//! `ML_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test cargo bench -p ml-store
//! --features postgres --bench postgres_journal`

#![allow(missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use jiff::Timestamp;
use ml_core::audit::{
    AttemptOutcome, AuditQuery, AuditStore, AuditWrite, Claimant, OwnerId, PageCommit,
    PlannedRecord,
};
use ml_core::sink::Receipt;
use ml_core::testing::audit::sample_record;
use ml_core::{Destination, Position};
use ml_store::{PostgresAuditStore, PostgresBuilder, SqliteAuditStore};

const PAGE: usize = 500;

/// The backlog the replica benches drain.
const N: u64 = 3_000;

fn page(cycle: ml_core::audit::CycleId, first: u64, dests: u64) -> PageCommit {
    let records = (first..first + PAGE as u64)
        .map(|i| PlannedRecord {
            record: sample_record(&format!("INV-{i}"), "1"),
            destinations: vec![Destination::new("slack", format!("#ch{}", i % dests))],
        })
        .collect();
    PageCommit {
        stream: "inv".into(),
        cycle,
        records,
        rejected: vec![],
        position: Position::from_json(serde_json::json!({ "after": first + PAGE as u64 })),
        at: Timestamp::now(),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn pg_url() -> Option<String> {
    let url = std::env::var("ML_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.trim().is_empty());
    if url.is_none() {
        println!("ML_TEST_POSTGRES_URL is not set: PostgreSQL benches skipped");
    }
    url
}

fn schema() -> String {
    format!(
        "bench_{}_{}",
        std::process::id(),
        Timestamp::now().as_millisecond()
    )
}

async fn pg(url: &str, schema: &str) -> PostgresAuditStore {
    PostgresBuilder::new()
        .with_url(url)
        .with_schema(schema)
        .with_pool_size(4)
        .build()
        .await
        .expect("postgres")
}

async fn drop_schema(url: &str, schema: &str) {
    if let Ok((client, conn)) = tokio_postgres::connect(url, tokio_postgres::NoTls).await {
        tokio::spawn(async move { drop(conn.await) });
        let _ = client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .await;
    }
}

fn bench_backend(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    name: &str,
    store: &dyn AuditStore,
) {
    let cycle = rt
        .block_on(store.begin_cycle("inv", Timestamp::now()))
        .expect("cycle");
    let next = AtomicU64::new(0);
    let mut g = c.benchmark_group(format!("backends/{name}"));
    g.sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(PAGE as u64));
    g.bench_function("commit_page_500", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let first = next.fetch_add(PAGE as u64, Ordering::Relaxed);
                let p = page(cycle, first, 50);
                let t = Instant::now();
                rt.block_on(store.commit_page(p)).expect("commit");
                total += t.elapsed();
            }
            total
        });
    });
    let me = Claimant::new(OwnerId::new("bench"));
    g.throughput(Throughput::Elements(50));
    g.bench_function("claim_finish_50", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                rt.block_on(async {
                    let now = Timestamp::now();
                    for d in store.claim_due(&me, now, 50).await.expect("claim") {
                        store
                            .finish_attempt(
                                d.id,
                                AttemptOutcome::Delivered {
                                    receipt: Receipt::new(format!("m{}", d.id)),
                                    after_doubt: false,
                                },
                                now,
                            )
                            .await
                            .expect("finish");
                    }
                });
                total += t.elapsed();
            }
            total
        });
    });
    g.finish();
}

fn backends(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite: Arc<dyn AuditStore> =
        Arc::new(SqliteAuditStore::open(dir.path().join("bench.db")).expect("open"));
    bench_backend(c, &rt, "sqlite", &*sqlite);
    if let Some(url) = pg_url() {
        let schema = schema();
        let store: Arc<dyn AuditStore> = Arc::new(rt.block_on(pg(&url, &schema)));
        bench_backend(c, &rt, "postgres", &*store);
        rt.block_on(drop_schema(&url, &schema));
    }
}

/// Drains a backlog of `n` deliveries with `replicas` store handles claiming 20 at a
/// time; returns the time taken.
async fn drain(url: &str, replicas: usize, n: u64) -> Duration {
    let schema = schema();
    let first = pg(url, &schema).await;
    let cycle = first
        .begin_cycle("inv", Timestamp::now())
        .await
        .expect("cycle");
    for start in (0..n).step_by(PAGE) {
        let mut p = page(cycle, start, 60);
        p.records.truncate((n - start).min(PAGE as u64) as usize);
        first.commit_page(p).await.expect("commit");
    }
    let t = Instant::now();
    let mut tasks = Vec::new();
    for r in 0..replicas {
        let store = pg(url, &schema).await;
        tasks.push(tokio::spawn(async move {
            let me = Claimant::new(OwnerId::new(format!("replica-{r}")));
            loop {
                let now = Timestamp::now();
                let claimed = store.claim_due(&me, now, 20).await.expect("claim");
                if claimed.is_empty() {
                    // Done, or every head is in flight at another replica.
                    if store.next_due_at().await.expect("due").is_none() {
                        break;
                    }
                    tokio::task::yield_now().await;
                    continue;
                }
                for d in claimed {
                    store
                        .finish_attempt(
                            d.id,
                            AttemptOutcome::Delivered {
                                receipt: Receipt::new(format!("m{}", d.id)),
                                after_doubt: false,
                            },
                            now,
                        )
                        .await
                        .expect("finish");
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("replica");
    }
    let took = t.elapsed();
    let delivered = first.stats().await.expect("stats").delivered;
    assert_eq!(delivered, n, "every delivery finished once");
    drop_schema(url, &schema).await;
    took
}

fn replicas(c: &mut Criterion) {
    let Some(url) = pg_url() else {
        return;
    };
    let rt = runtime();
    let mut g = c.benchmark_group("replicas/postgres");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Elements(N));
    for replicas in 1..=3 {
        g.bench_function(replicas.to_string(), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| rt.block_on(drain(&url, replicas, N)))
                    .sum()
            });
        });
    }
    g.finish();
}

criterion_group!(benches, backends, replicas);
criterion_main!(benches);
