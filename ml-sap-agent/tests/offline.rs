//! The agent killed mid-backfill: the stream pauses visibly, nothing is lost or buffered;
//! the agent restarted: the backfill resumes from the saved position and completes exactly
//! once, against the SAP ECC emulator (SOAP-RFC behind the agent).

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use ml_core::audit::AuditQuery as _;
use ml_core::clock::ManualClock;
use ml_core::memory::{MemoryAuditStore, MemorySink};
use ml_core::pipeline::{Checkpoint, StreamState};
use ml_core::routing::{Condition, MatchMode, Router, Rule};
use ml_core::{EntityKind, Pipeline, Schedule, Stream};
use ml_sandbox::sap_ecc::SapEccEmulator;
use ml_sap_agent::{RelayHub, RelaySource};
use ml_sap_ecc::{Category, RfcCall, RfcErrorKind, RfcTransport as _};

use common::{KEY_A, emulator_agent, key, relay_builder, serve, spawn};

const N: usize = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_agent_mid_backfill_pauses_and_a_restart_completes_exactly_once() {
    let e = SapEccEmulator::builder()
        .seed(11)
        .start()
        .await
        .expect("emulator");
    let start = Timestamp::now() - SignedDuration::from_hours(20);
    let tz = jiff::tz::TimeZone::get(e.timezone()).expect("tz");
    e.load_invoice_backfill(N, start.to_zoned(tz).datetime());

    let hub = RelayHub::builder()
        .agent("plant-a", key(KEY_A), "PRD")
        .recheck(Duration::from_secs(5))
        .build()
        .expect("hub");
    let url = serve(&hub).await;
    let agent = emulator_agent(&url, "plant-a", KEY_A, &e);
    let task = spawn(&agent);
    hub.wait_for_agents("PRD", 1).await;

    let source = relay_builder(&hub, "PRD", &e)
        .with_category(Category::SupplierInvoices)
        .with_page_size(100)
        .with_start_at(Timestamp::now() - SignedDuration::from_hours(24))
        .build()
        .expect("source");
    let source = RelaySource::new(Arc::new(source), hub.clone(), "PRD");
    let sink = MemorySink::new("ap");
    let store = Arc::new(MemoryAuditStore::new());
    let clock = Arc::new(ManualClock::new(Timestamp::now()));
    // Kill the agent (drop its task) right after the third page is committed.
    let commits = Arc::new(AtomicU64::new(0));
    let kill: Arc<Mutex<Option<tokio::task::AbortHandle>>> =
        Arc::new(Mutex::new(Some(task.abort_handle())));
    let hook = {
        let commits = commits.clone();
        let kill = kill.clone();
        Arc::new(move |c: &Checkpoint| {
            if matches!(c, Checkpoint::AfterCommit { .. })
                && commits.fetch_add(1, Ordering::SeqCst) + 1 == 3
                && let Some(h) = kill.lock().expect("lock").take()
            {
                h.abort();
            }
        })
    };
    let p = Pipeline::builder()
        .store(store.clone())
        .clock(clock.clone())
        .stream(Stream::new(
            "invoices",
            Arc::new(source),
            Schedule::every(Duration::from_secs(7200)).expect("schedule"),
        ))
        .router(
            Router::new(
                MatchMode::AllMatch,
                vec![Rule {
                    name: "all".into(),
                    when: vec![Condition::Kind(vec![EntityKind::SupplierInvoice])],
                    to: vec!["ap:#ap".into()],
                }],
            )
            .expect("router"),
        )
        .sink("ap", Arc::new(sink.clone()))
        .checkpoint_hook(hook)
        .build()
        .expect("pipeline");

    // Cycle 1: three pages, then the agent dies.
    let t0 = std::time::Instant::now();
    let first = p.run_once().await.expect("run");
    eprintln!(
        "until the kill: {:?}, {} SAP calls",
        t0.elapsed(),
        e.total_calls()
    );
    assert_eq!(first.cycle_errors.len(), 1, "{first}");
    let delivered_before = sink.sent().len();
    assert!(
        (300..N).contains(&delivered_before),
        "{delivered_before} delivered"
    );
    let status = p.stream_status();
    let StreamState::Unavailable {
        waiting_for, error, ..
    } = &status[0].state
    else {
        panic!("not paused for the agent: {status:?}");
    };
    assert!(waiting_for.contains("PRD"), "{waiting_for}");
    assert!(error.message.contains("unavailable until"), "{error:?}");
    // Journaled with its cycle.
    let cycles = store.cycles("invoices", 5).await.expect("cycles");
    assert!(
        cycles[0]
            .error
            .as_ref()
            .is_some_and(|e| e.message.contains("no agent connected")),
        "{cycles:?}"
    );
    // Nothing buffered: no call is held for the agent, a new one fails at once.
    hub.wait_for_at_most("PRD", 0).await;
    assert_eq!(hub.stats("PRD").in_flight, 0);
    let t = hub.transport("PRD").expect("transport");
    let refused = t
        .call(&RfcCall::new("RFC_READ_TABLE"))
        .await
        .expect_err("offline");
    assert_eq!(refused.kind, RfcErrorKind::Unavailable);
    // While offline the stream is re-checked on the short cadence, without touching SAP.
    let sap_calls = e.total_calls();
    let early = p.run_once().await.expect("run");
    assert_eq!(early.cycles, 0, "skipped until the re-check: {early}");
    clock.advance(Duration::from_secs(5));
    let offline = p.run_once().await.expect("run");
    assert_eq!(offline.cycle_errors.len(), 1, "{offline}");
    assert_eq!(
        e.total_calls(),
        sap_calls,
        "no SAP call while the agent is away"
    );
    assert_eq!(
        sink.sent().len(),
        delivered_before,
        "nothing new, nothing lost"
    );

    // The agent comes back: the stream resumes from its saved position and completes.
    let again = emulator_agent(&url, "plant-a", KEY_A, &e);
    let task = spawn(&again);
    hub.wait_for_agents("PRD", 1).await;
    clock.advance(Duration::from_secs(5));
    let (t0, calls0) = (std::time::Instant::now(), e.total_calls());
    let resumed = p.run_once().await.expect("run");
    eprintln!(
        "resumed cycle: {:?}, {} SAP calls through the relay, {} delivered",
        t0.elapsed(),
        e.total_calls() - calls0,
        resumed.deliveries.delivered
    );
    assert!(resumed.cycle_errors.is_empty(), "{resumed}");
    assert_eq!(p.stream_status()[0].state, StreamState::Running);
    let sent = sink.sent();
    let keys: BTreeSet<&str> = sent.iter().map(|m| m.record_key.as_str()).collect();
    assert_eq!(keys.len(), N, "every invoice");
    assert_eq!(sent.len(), N, "each exactly once");
    // A later cycle finds nothing new.
    clock.advance(Duration::from_secs(7200));
    let later = p.run_once().await.expect("run");
    assert_eq!(later.deliveries.delivered, 0, "{later}");
    assert_eq!(sink.sent().len(), N);
    assert!(again.stats().calls > 0);
    assert_eq!(again.stats().rejected, 0);
    task.abort();
}
