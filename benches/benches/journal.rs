//! The journal alone (no HTTP), SQLite in a tempdir (WAL, synchronous=NORMAL), limiter off.
//!
//! * `journal_deliver/records`: [`ml_benches::journal_loop`] with 2,000 synthetic invoices
//!   (pages of 500, one destination): journal + deliver to a counting sink, records/s.
//! * `growth/deliver_500/{10k,1m}`: the delivery pass alone (claim -> send to a counting
//!   sink -> finish, through `Pipeline::deliver_due`) for 500 new deliveries, on a journal
//!   that already holds 10,000 or 1,000,000 delivered records. The cost per delivery should
//!   not depend on the size. Each big journal is built once (lean ~300 B records journaled
//!   through the store, then marked delivered in one SQL statement: the slow path would take
//!   minutes) and reused by every iteration; the 1M set-up takes about a minute.
//!
//! `cargo bench -p ml-benches --bench journal -- --warm-up-time 1 --measurement-time 3`
//! (`-- journal_deliver` or `-- growth` for one group; `ML_BENCH_GROWTH_ROWS=10000,200000`
//! changes the sizes.)

#![allow(missing_docs)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ml_benches::{CountingSink, PAGE, SyntheticInvoices, env_or, journal_loop, router};
use ml_core::{AuditStore, Pipeline, Schedule, Stream};

const LOOP_RECORDS: u64 = 2_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn journal_deliver(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("journal_deliver");
    g.throughput(Throughput::Elements(LOOP_RECORDS));
    g.sample_size(10);
    g.bench_function("records", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir().expect("tempdir");
                let r = rt
                    .block_on(journal_loop(&dir.path().join("j.db"), LOOP_RECORDS, 1))
                    .expect("loop");
                assert_eq!(r.delivered, LOOP_RECORDS);
                total += r.elapsed;
            }
            total
        });
    });
    g.finish();
}

/// A pipeline over `store` reading lean synthetic invoices, `pages` pages per cycle, one
/// destination (a counting sink). Every pipeline built here shares the stream name, so
/// each continues from the position the last one saved.
fn pipeline(store: Arc<dyn AuditStore>, pages: u64, sink: Arc<CountingSink>) -> Pipeline {
    Pipeline::builder()
        .store(store)
        .stream(Stream::new(
            "invoices",
            Arc::new(SyntheticInvoices::new(u64::MAX / 2).with_lean_records()),
            Schedule::every(Duration::from_secs(3600)).expect("schedule"),
        ))
        .router(router(&["count:#growth".to_owned()]).expect("router"))
        .sink("count", sink)
        .max_pages_per_cycle(pages)
        .build()
        .expect("pipeline")
}

/// Journals `rows` lean records with their deliveries through the store, then marks every
/// delivery delivered (with its attempt) in one transaction.
fn prefill(rt: &tokio::runtime::Runtime, path: &Path, store: &Arc<dyn AuditStore>, rows: u64) {
    let started = Instant::now();
    let p = pipeline(
        Arc::clone(store),
        rows.div_ceil(PAGE as u64),
        Arc::new(CountingSink::default()),
    );
    let c = rt
        .block_on(p.poll_stream("invoices"))
        .expect("prefill poll");
    assert_eq!(c.journaled, rows, "{c:?}");
    // Mirrors what `finish_attempt` writes for a delivered attempt (ml-store's schema); the
    // claim path would take minutes for a million rows.
    let conn = rusqlite::Connection::open(path).expect("open journal");
    conn.busy_timeout(Duration::from_secs(30)).expect("busy");
    conn.execute_batch(
        "BEGIN IMMEDIATE;
         INSERT INTO attempts (delivery_id, number, started_at, finished_at, outcome, remote_id)
           SELECT id, 1, created_at, created_at, 'delivered', 'c-' || id
           FROM deliveries WHERE status = 'pending';
         UPDATE deliveries SET status = 'delivered', attempts = 1, remote_id = 'c-' || id,
           first_attempt_at = created_at, updated_at = created_at
         WHERE status = 'pending';
         COMMIT;",
    )
    .expect("mark delivered");
    eprintln!(
        "growth: journal with {rows} delivered rows built in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

fn growth(c: &mut Criterion) {
    let sizes: Vec<u64> = std::env::var("ML_BENCH_GROWTH_ROWS").ok().map_or_else(
        || vec![10_000, 1_000_000],
        |v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect(),
    );
    let rt = runtime();
    let mut g = c.benchmark_group("growth");
    g.throughput(Throughput::Elements(PAGE as u64));
    g.sample_size(env_or("ML_BENCH_GROWTH_SAMPLES", 10));
    for rows in sizes {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("growth.db");
        let store: Arc<dyn AuditStore> = Arc::new(
            ml_store::SqliteBuilder::new()
                .with_path(&path)
                .build()
                .expect("journal"),
        );
        prefill(&rt, &path, &store, rows);
        let sink = Arc::new(CountingSink::default());
        let p = pipeline(Arc::clone(&store), 1, Arc::clone(&sink));
        let label = if rows % 1_000_000 == 0 {
            format!("{}m", rows / 1_000_000)
        } else if rows % 1_000 == 0 {
            format!("{}k", rows / 1_000)
        } else {
            rows.to_string()
        };
        g.bench_with_input(BenchmarkId::new("deliver_500", label), &rows, |b, _| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    // A new page of pending deliveries, journaled outside the clock.
                    let c = rt.block_on(p.poll_stream("invoices")).expect("poll");
                    assert_eq!(c.journaled, PAGE as u64);
                    let started = Instant::now();
                    let d = rt.block_on(p.deliver_due()).expect("deliver");
                    total += started.elapsed();
                    assert_eq!(d.delivered, PAGE as u64);
                }
                total
            });
        });
    }
    g.finish();
}

criterion_group!(benches, journal_deliver, growth);
criterion_main!(benches);
