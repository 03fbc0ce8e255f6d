//! A 10,000-row backfill through a whole pipeline (journal, routing, a sink) with X3 Cloud
//! tokens that expire every second and a 5xx storm: every purchase order delivered exactly
//! once, and a second run adds nothing.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::env;
use ml_core::memory::{MemoryAuditStore, MemorySink};
use ml_core::record::EntityKind;
use ml_core::routing::{Condition, MatchMode, Router, Rule};
use ml_core::{Pipeline, Schedule, Stream};
use ml_sage_x3::SageX3Builder;
use ml_sandbox::fault::{Fault, FaultRule};
use ml_sandbox::sage_x3::SageX3Emulator;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_purchase_orders_exactly_once_through_a_pipeline() {
    let e = SageX3Emulator::builder()
        .access_lifetime(Duration::from_secs(1))
        .start()
        .await
        .expect("emulator");
    let t0: jiff::Timestamp = "2026-01-05T08:00:00Z".parse().expect("t0");
    e.load_synthetic(10_000, t0, 3);
    let source = SageX3Builder::from_env_with(&env(e.cloud_env()))
        .with_page_size(200)
        .with_retry(
            ml_core::retry::RetryPolicy::default()
                .with_base_delay(Duration::from_millis(5))
                .with_max_delay(Duration::from_millis(20)),
        )
        .build()
        .expect("source");
    let sink = Arc::new(MemorySink::new("chat"));
    let router = Router::new(
        MatchMode::AllMatch,
        vec![Rule {
            name: "purchase orders".into(),
            when: vec![Condition::Kind(vec![EntityKind::PurchaseOrder])],
            to: vec!["chat:#procurement".into()],
        }],
    )
    .expect("router");
    let pipeline = Pipeline::builder()
        .store(Arc::new(MemoryAuditStore::new()))
        .stream(Stream::new(
            "x3-purchase-orders",
            Arc::new(source),
            Schedule::every(Duration::from_secs(900)).expect("schedule"),
        ))
        .router(router)
        .sink("chat", Arc::clone(&sink) as _)
        .build()
        .expect("pipeline");
    // A 5xx storm mid-backfill (on continuation pages: `$next` follows retry).
    e.faults().push(
        FaultRule::on("PORDER", Fault::Status(503))
            .after(5)
            .times(3),
    );
    e.faults()
        .push(FaultRule::on("PORDER", Fault::Status(502)).after(20));
    let summary = pipeline.run_once().await.expect("run");
    assert!(summary.cycle_errors.is_empty(), "{summary:?}");
    assert_eq!(summary.journaled, 10_000, "{summary:?}");
    assert_eq!(summary.deliveries.delivered, 10_000, "{summary:?}");
    let sent = sink.sent();
    let keys: BTreeSet<&str> = sent.iter().map(|m| m.record_key.as_str()).collect();
    assert_eq!(keys.len(), 10_000, "each purchase order once");
    assert_eq!(sent.len(), 10_000, "nothing twice");
    assert_eq!(e.refused_renewals(), 0);
    // Again: the overlap is re-read, nothing is journaled or sent twice.
    let again = pipeline.run_once().await.expect("run again");
    assert_eq!(again.journaled, 0, "{again:?}");
    assert_eq!(sink.sent().len(), 10_000);
}
