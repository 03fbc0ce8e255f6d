//! Two agents for one SAP system share its concurrency cap, enforced on the host, under
//! SYSTEM_FAILURE storms (retries included), against the SAP ECC emulator.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use ml_core::cursor::Position;
use ml_core::record::SourceItem;
use ml_core::source::Source;
use ml_sandbox::sap_ecc::SapEccEmulator;
use ml_sap_agent::RelayHub;
use ml_sap_ecc::{Category, RfcCall, SapEccSource};

use common::{FakeSap, KEY_A, KEY_B, agent, emulator_agent, key, relay_builder, serve, spawn};

async fn read_all(s: &SapEccSource) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut pos: Option<Position> = None;
    for _ in 0..1000 {
        let page = s.poll(pos.as_ref()).await.expect("poll");
        for i in page.items {
            if let SourceItem::Record(r) = i {
                keys.insert(r.key.clone());
            }
        }
        pos = Some(page.next);
        if !page.more {
            return keys;
        }
    }
    panic!("no end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_share_the_cap_under_retries() {
    let e = SapEccEmulator::builder()
        .max_sessions(3)
        .latency(Duration::from_millis(5))
        .seed(5)
        .start()
        .await
        .expect("emulator");
    let start = Timestamp::now() - SignedDuration::from_hours(3);
    let tz = jiff::tz::TimeZone::get(e.timezone()).expect("tz");
    e.load_invoice_backfill(600, start.to_zoned(tz).datetime());
    e.storm(7, 2);
    let hub = RelayHub::builder()
        .agent("plant-a", key(KEY_A), "PRD")
        .agent("plant-b", key(KEY_B), "PRD")
        .build()
        .expect("hub");
    let url = serve(&hub).await;
    let a = emulator_agent(&url, "plant-a", KEY_A, &e);
    let b = emulator_agent(&url, "plant-b", KEY_B, &e);
    let (ta, tb) = (spawn(&a), spawn(&b));
    hub.wait_for_agents("PRD", 2).await;
    assert_eq!(hub.connected_agents("PRD"), ["plant-a", "plant-b"]);
    let mk = || {
        relay_builder(&hub, "PRD", &e)
            .with_category(Category::SupplierInvoices)
            .with_max_concurrent_rfc(3)
            .with_page_size(50)
            .with_start_at(Timestamp::now() - SignedDuration::from_hours(24))
            .build()
            .expect("source")
    };
    let sources = [mk(), mk(), mk()];
    let (x, y, z) = tokio::join!(
        read_all(&sources[0]),
        read_all(&sources[1]),
        read_all(&sources[2])
    );
    for keys in [&x, &y, &z] {
        assert_eq!(keys.len(), 600);
    }
    let stats = hub.stats("PRD");
    assert!(e.injected_failures() > 0, "the storms hit");
    // Counted on the host and at SAP: never more than the cap, retries included.
    assert!((2..=3).contains(&stats.max_in_flight), "{stats:?}");
    assert!(
        e.max_in_flight() <= 3,
        "the emulator saw {} at once",
        e.max_in_flight()
    );
    assert_eq!(e.capacity_refusals(), 0);
    assert_eq!(stats.in_flight, 0);
    // Both agents did work: the cap is shared, not per agent.
    let (ca, cb) = (a.stats().calls, b.stats().calls);
    assert!(ca > 0 && cb > 0, "{ca} / {cb}");
    assert_eq!(ca + cb, stats.calls, "every call handed out ran once");
    assert_eq!(e.total_calls(), stats.calls);
    ta.abort();
    tb.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_agent_dies_moves_to_the_other_agent_and_the_cap_counts_it_once() {
    let hub = RelayHub::builder()
        .agent("plant-a", key(KEY_A), "QAS")
        .agent("plant-b", key(KEY_B), "QAS")
        .build()
        .expect("hub");
    let url = serve(&hub).await;
    let hang = Arc::new(FakeSap::default());
    let fine = Arc::new(FakeSap::default());
    let a = agent(&url, "plant-a", KEY_A, hang.clone());
    let ta = spawn(&a);
    hub.wait_for_agents("QAS", 1).await;
    let t = hub.transport("QAS").expect("transport");
    let client = Arc::new(
        ml_sap_ecc::RfcClient::new(Arc::new(t), 1)
            .expect("client")
            .with_retry(
                ml_core::retry::RetryPolicy::default().with_base_delay(Duration::from_millis(5)),
            ),
    );
    let c = client.clone();
    let call = tokio::spawn(async move { c.call(&mut RfcCall::new("Z_HANG")).await });
    // The call hangs in plant-a; plant-b connects; plant-a dies.
    hang.started.notified().await;
    let b = agent(&url, "plant-b", KEY_B, fine.clone());
    let tb = spawn(&b);
    hub.wait_for_agents("QAS", 2).await;
    ta.abort();
    hub.wait_for_at_most("QAS", 1).await;
    // The retry went to plant-b (which hangs too, as Z_HANG does): one attempt at a time.
    fine.started.notified().await;
    assert_eq!(fine.calls.load(Ordering::SeqCst), 1);
    assert_eq!(hang.calls.load(Ordering::SeqCst), 1);
    assert_eq!(client.in_flight(), 1);
    assert_eq!(hub.stats("QAS").in_flight, 1);
    assert_eq!(hub.stats("QAS").lost_agent, 1);
    call.abort();
    tb.abort();
}
