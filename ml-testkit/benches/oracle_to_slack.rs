//! Records/s end to end on loopback, limiter off: the Oracle emulator (synthetic invoices)
//! -> `OracleFusionSource` (page 500) -> routing -> `SqliteAuditStore` (tempfile, WAL) ->
//! `SlackSink` -> the Slack emulator (its per-channel limit off).
//!
//! `cargo bench -p ml-testkit --bench oracle_to_slack`

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ml_core::routing::{Condition, MatchMode, Router, Rule};
use ml_core::{EntityKind, Pipeline, Schedule, Stream};
use ml_oracle_fusion::OracleFusionBuilder;
use ml_sandbox::oracle::OracleEmulator;
use ml_sandbox::slack::{Channel, SlackEmulator};
use ml_slack::SlackBuilder;

const N: u64 = 2_000;

fn router() -> Router {
    Router::new(
        MatchMode::AllMatch,
        vec![Rule {
            name: "invoices".into(),
            when: vec![Condition::Kind(vec![EntityKind::SupplierInvoice])],
            to: vec!["slack:#procurement".into()],
        }],
    )
    .expect("router")
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (oracle, slack) = rt.block_on(async {
        let oracle = OracleEmulator::start().await.expect("oracle");
        oracle.set_synthetic(N, "2026-01-01T00:00:00Z".parse().expect("t"), 10);
        let slack = SlackEmulator::builder()
            .channel(Channel::public("procurement"))
            .post_message_interval(None)
            .start()
            .await
            .expect("slack");
        (oracle, slack)
    });
    let mut g = c.benchmark_group("oracle_to_slack");
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.bench_function("records", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir().expect("tempdir");
                let store = ml_store::SqliteBuilder::new()
                    .with_path(dir.path().join("journal.db"))
                    .build()
                    .expect("journal");
                let source = OracleFusionBuilder::new()
                    .with_url(oracle.base_url())
                    .with_client_credentials(
                        oracle.token_url(),
                        oracle.client_id(),
                        oracle.client_secret(),
                    )
                    .build()
                    .expect("source");
                let sink = SlackBuilder::new()
                    .with_bot_token(slack.bot_token())
                    .with_api_url(slack.base_url())
                    .build()
                    .expect("sink");
                let p = Pipeline::builder()
                    .store(Arc::new(store))
                    .stream(Stream::new(
                        "invoices",
                        Arc::new(source),
                        Schedule::every(Duration::from_secs(600)).expect("s"),
                    ))
                    .router(router())
                    .sink("slack", Arc::new(sink))
                    .build()
                    .expect("pipeline");
                let started = Instant::now();
                let s = rt.block_on(p.run_once()).expect("run");
                total += started.elapsed();
                assert_eq!(s.deliveries.delivered, N);
            }
            total
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
