//! What the relay adds per call on loopback: 1,000 sequential echo calls and 1,000 calls
//! 10 at a time through one agent (printed; run with `--nocapture`).

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use ml_sap_agent::RelayHub;
use ml_sap_ecc::{RfcCall, RfcTransport as _};

use common::{FakeSap, KEY_A, agent, key, serve, spawn};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_calls_through_the_relay() {
    let hub = RelayHub::builder()
        .agent("plant-a", key(KEY_A), "PRD")
        .build()
        .expect("hub");
    let url = serve(&hub).await;
    let sap = Arc::new(FakeSap::default());
    let task = spawn(&agent(&url, "plant-a", KEY_A, sap.clone()));
    hub.wait_for_agents("PRD", 1).await;
    let t = Arc::new(hub.transport("PRD").expect("transport"));
    let call = RfcCall::new("Z_ECHO").with_import("QUERY_TABLE", "RBKP");
    let started = std::time::Instant::now();
    for _ in 0..1_000 {
        let r = t.call(&call).await.expect("call");
        assert_eq!(r.export("QUERY_TABLE"), Some("RBKP"));
    }
    let sequential = started.elapsed();
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let t = Arc::clone(&t);
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..100 {
                t.call(&call).await.expect("call");
            }
        }));
    }
    for j in tasks {
        j.await.expect("join");
    }
    let parallel = started.elapsed();
    eprintln!(
        "relay on loopback (debug build): 1,000 sequential calls in {sequential:?} ({:?}/call); 1,000 calls 10 at a time in {parallel:?}",
        sequential / 1_000
    );
    assert_eq!(sap.calls.load(Ordering::SeqCst), 2_000);
    assert_eq!(hub.stats("PRD").calls, 2_000);
    assert_eq!(hub.stats("PRD").in_flight, 0);
    task.abort();
}
