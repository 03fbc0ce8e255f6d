//! A backfill through a whole pipeline (journal, routing, sink): each
//! invoice delivered exactly once and in source order, through a 5xx storm and a token
//! rejected mid-run, with the exact number of IFS requests.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use ml_core::memory::{MemoryAuditStore, MemorySink};
use ml_core::record::EntityKind;
use ml_core::retry::RetryPolicy;
use ml_core::routing::{Condition, MatchMode, Router, Rule};
use ml_core::{Pipeline, Schedule, Stream};
use ml_ifs::IfsBuilder;
use ml_sandbox::Emulator as _;
use ml_sandbox::fault::{Fault, FaultRule};
use ml_sandbox::ifs::IfsEmulator;

// The 10,000-row read is `tests/sandbox.rs`; the in-memory journal is quadratic in
// deliveries, so the pipeline run uses fewer.
const N: u64 = 2_000;

#[tokio::test]
async fn backfill_through_a_pipeline_exactly_once_in_order() {
    let e = IfsEmulator::start().await.expect("emulator");
    let start = Timestamp::from_second(Timestamp::now().as_second() - 7200).expect("t");
    e.load_invoices("10", N, start, 7).expect("load");
    e.set_max_page_size(400);
    let mut env = ml_core::config::MapEnv::new();
    for (k, v) in e.env() {
        env.set(k, v);
    }
    let source = IfsBuilder::from_env_with(&env)
        .with_company("10")
        .with_page_size(500)
        .with_retry(
            RetryPolicy::default()
                .with_base_delay(Duration::from_millis(5))
                .with_max_attempts(6),
        )
        .build()
        .expect("source");
    let sink = Arc::new(MemorySink::new("chat"));
    let router = Router::new(
        MatchMode::AllMatch,
        vec![Rule {
            name: "invoices".into(),
            when: vec![Condition::Kind(vec![EntityKind::SupplierInvoice])],
            to: vec!["chat:finance".into()],
        }],
    )
    .expect("router");
    let pipeline = Pipeline::builder()
        .store(Arc::new(MemoryAuditStore::new()))
        .stream(Stream::new(
            "invoices",
            Arc::new(source),
            Schedule::every(Duration::from_secs(300)).expect("schedule"),
        ))
        .router(router)
        .sink("chat", sink.clone())
        .build()
        .expect("pipeline");
    // A 5xx storm and a token the server stops accepting, mid-backfill.
    e.faults().push(
        FaultRule::on("ManSuppInvoiceSet", Fault::Status(503))
            .after(2)
            .times(3),
    );
    e.faults().push(
        FaultRule::on("ManSuppInvoiceSet", Fault::Status(401))
            .after(3)
            .times(1),
    );
    let summary = pipeline.run_once().await.expect("run");
    assert_eq!(summary.deliveries.delivered, N, "{summary}");
    let sent = sink.sent();
    let mut seen = HashSet::new();
    let mut last = 0u64;
    for m in &sent {
        assert!(seen.insert(m.record_key.clone()), "twice: {}", m.record_key);
        let id: u64 = m
            .record_key
            .rsplit('=')
            .next()
            .and_then(|n| n.parse().ok())
            .expect("id");
        assert!(id > last, "source order: {id} after {last}");
        last = id;
    }
    assert_eq!(seen.len() as u64, N);
    // 5 pages of 400, 3 retried 503s, 1 request repeated after the 401.
    assert_eq!(e.faults().requests("ManSuppInvoiceSet"), 9);
    assert_eq!(e.issuer().tokens_issued(), 2, "one refresh after the 401");
    // Nothing new: a second run delivers nothing.
    let again = pipeline.run_once().await.expect("second run");
    assert_eq!(again.deliveries.delivered, 0, "{again}");
}
