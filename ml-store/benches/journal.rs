//! Journal throughput of `SqliteAuditStore` on a tempfile (WAL, synchronous=NORMAL).
//!
//! * `journal/commit_page_500`: pages of 500 fresh records, one destination each.
//! * `journal/commit_page_500_duplicates`: the same page again (a re-poll): all duplicates.
//! * `journal/claim_finish_50`: claim up to 50 heads (50 destinations) and finish each.
//!
//! `cargo bench -p ml-store --bench journal`

#![allow(missing_docs)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use jiff::Timestamp;
use ml_core::audit::{AttemptOutcome, AuditWrite, Claimant, PageCommit, PlannedRecord};
use ml_core::sink::Receipt;
use ml_core::testing::audit::sample_record;
use ml_core::{Destination, Position};
use ml_store::SqliteAuditStore;

const PAGE: usize = 500;

fn page(stream: &str, cycle: ml_core::audit::CycleId, first: u64, dests: u64) -> PageCommit {
    let records = (first..first + PAGE as u64)
        .map(|i| PlannedRecord {
            record: sample_record(&format!("INV-{i}"), "1"),
            destinations: vec![Destination::new("slack", format!("#ch{}", i % dests))],
        })
        .collect();
    PageCommit {
        stream: stream.into(),
        cycle,
        records,
        rejected: vec![],
        position: Position::from_json(serde_json::json!({ "after": first + PAGE as u64 })),
        at: Timestamp::now(),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

fn commit_pages(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteAuditStore::open(dir.path().join("bench.db")).expect("open");
    let cycle = rt
        .block_on(store.begin_cycle("inv", Timestamp::now()))
        .expect("cycle");
    let next = AtomicU64::new(0);

    let mut g = c.benchmark_group("journal");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1))
        .throughput(Throughput::Elements(PAGE as u64));

    g.bench_function("commit_page_500", |b| {
        b.iter_custom(|iters| {
            // Pages are built before the clock starts: only journaling is measured.
            let pages: Vec<PageCommit> = (0..iters)
                .map(|_| {
                    page(
                        "inv",
                        cycle,
                        next.fetch_add(PAGE as u64, Ordering::Relaxed),
                        10,
                    )
                })
                .collect();
            rt.block_on(async {
                let start = Instant::now();
                for p in pages {
                    let out = store.commit_page(p).await.expect("commit");
                    assert_eq!(out.inserted, PAGE as u64);
                }
                start.elapsed()
            })
        });
    });

    let dup = page("inv", cycle, 0, 10);
    g.bench_function("commit_page_500_duplicates", |b| {
        b.iter_custom(|iters| {
            let pages: Vec<PageCommit> = (0..iters).map(|_| dup.clone()).collect();
            rt.block_on(async {
                let start = Instant::now();
                for p in pages {
                    let out = store.commit_page(p).await.expect("commit");
                    assert_eq!(out.duplicates, PAGE as u64);
                }
                start.elapsed()
            })
        });
    });
    g.finish();
}

fn claim_and_finish(c: &mut Criterion) {
    const DESTS: u64 = 50;
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteAuditStore::open(dir.path().join("claims.db")).expect("open");
    let next = AtomicU64::new(0);
    let me = Claimant::random();
    let refill = |store: &SqliteAuditStore| {
        rt.block_on(async {
            let cycle = store
                .begin_cycle("inv", Timestamp::now())
                .await
                .expect("cycle");
            for _ in 0..20 {
                let first = next.fetch_add(PAGE as u64, Ordering::Relaxed);
                store
                    .commit_page(page("inv", cycle, first, DESTS))
                    .await
                    .expect("commit");
            }
        });
    };
    refill(&store);

    let mut g = c.benchmark_group("journal");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1))
        .throughput(Throughput::Elements(DESTS));
    g.bench_function("claim_finish_50", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let claimed = rt
                    .block_on(async {
                        let now = Timestamp::now();
                        let claimed = store.claim_due(&me, now, DESTS as usize).await?;
                        for c in &claimed {
                            store
                                .finish_attempt(
                                    c.id,
                                    AttemptOutcome::Delivered {
                                        receipt: Receipt::new(format!("r{}", c.id.0)),
                                        after_doubt: false,
                                    },
                                    now,
                                )
                                .await?;
                        }
                        Ok::<_, ml_core::Error>(claimed.len())
                    })
                    .expect("claim");
                total += start.elapsed();
                if claimed < DESTS as usize {
                    refill(&store);
                }
            }
            total
        });
    });
    g.finish();
}

criterion_group!(benches, commit_pages, claim_and_finish);
criterion_main!(benches);
