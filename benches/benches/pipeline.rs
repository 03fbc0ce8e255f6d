//! The whole pipeline per pairing on the sandbox (loopback emulators), limiter off, records/s:
//!
//! * `oracle_to_slack/records`: the Oracle emulator (2,000 synthetic invoices with lines)
//!   -> `OracleFusionSource` (pages of 500) -> routing -> `SqliteAuditStore` (tempfile, WAL)
//!   -> `SlackSink` -> the Slack emulator (its per-channel limit off).
//! * `oracle_to_sms/records`: the same source and journal -> `TwilioSmsSink` -> the Twilio
//!   emulator (one E.164 number).
//!
//! Each iteration is a fresh journal and a full `Pipeline::run_once` (poll every page,
//! journal, deliver everything).
//!
//! `cargo bench -p ml-benches --bench pipeline -- --warm-up-time 1 --measurement-time 3`

#![allow(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ml_core::sink::Sink;
use ml_core::{Pipeline, Schedule, Stream};
use ml_oracle_fusion::OracleFusionBuilder;
use ml_sandbox::oracle::OracleEmulator;
use ml_sandbox::slack::{Channel, SlackEmulator};
use ml_sandbox::twilio::TwilioEmulator;
use ml_slack::SlackBuilder;
use ml_twilio::TwilioBuilder;

const N: u64 = 2_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn oracle(rt: &tokio::runtime::Runtime) -> OracleEmulator {
    rt.block_on(async {
        let oracle = OracleEmulator::start().await.expect("oracle");
        oracle.set_synthetic(N, "2026-01-01T00:00:00Z".parse().expect("t"), 10);
        oracle
    })
}

/// One timed `run_once` from a fresh journal: Oracle -> routing -> SQLite -> `sink`.
fn run(
    rt: &tokio::runtime::Runtime,
    oracle: &OracleEmulator,
    router: ml_core::routing::Router,
    name: &str,
    sink: Arc<dyn Sink>,
) -> Duration {
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
    let p = Pipeline::builder()
        .store(Arc::new(store))
        .stream(Stream::new(
            "invoices",
            Arc::new(source),
            Schedule::every(Duration::from_secs(600)).expect("schedule"),
        ))
        .router(router)
        .sink(name, sink)
        .build()
        .expect("pipeline");
    let started = Instant::now();
    let s = rt.block_on(p.run_once()).expect("run");
    let took = started.elapsed();
    assert_eq!(s.deliveries.delivered, N, "{s}");
    took
}

fn oracle_to_slack(c: &mut Criterion) {
    let rt = runtime();
    let oracle = oracle(&rt);
    let slack = rt.block_on(async {
        SlackEmulator::builder()
            .channel(Channel::public("procurement"))
            .post_message_interval(None)
            .start()
            .await
            .expect("slack")
    });
    let mut g = c.benchmark_group("oracle_to_slack");
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    g.bench_function("records", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let sink = SlackBuilder::new()
                        .with_bot_token(slack.bot_token())
                        .with_api_url(slack.base_url())
                        .build()
                        .expect("sink");
                    let router = ml_benches::route_all("slack:#procurement").expect("router");
                    run(&rt, &oracle, router, "slack", Arc::new(sink))
                })
                .sum()
        });
    });
    g.finish();
}

fn oracle_to_sms(c: &mut Criterion) {
    let rt = runtime();
    let oracle = oracle(&rt);
    let twilio = rt.block_on(TwilioEmulator::start()).expect("twilio");
    let mut g = c.benchmark_group("oracle_to_sms");
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    g.bench_function("records", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let sink = TwilioBuilder::new()
                        .with_account_sid(twilio.account_sid())
                        .with_auth_token(twilio.auth_token())
                        .with_from("+15005550006")
                        .with_api_url(twilio.base_url())
                        .build_sms()
                        .expect("sms");
                    let router = ml_benches::route_all("sms:+491510000000").expect("router");
                    run(&rt, &oracle, router, "sms", Arc::new(sink))
                })
                .sum()
        });
    });
    g.finish();
}

criterion_group!(benches, oracle_to_slack, oracle_to_sms);
criterion_main!(benches);
