//! A claim lost while sending (taken over after the lease ran out, or finished by hand)
//! costs that one outcome, not the delivery pass.

use std::sync::Arc;

use super::tests::{Rig, invoice, keys, router};
use super::{Pipeline, Schedule, Stream};
use crate::audit::{
    AttemptOutcome, AuditQuery, AuditStoreExt, AuditWrite, DeliveryStatus, ErrorInfo,
};
use crate::error::{Error, Result};
use crate::memory::{MemoryAuditStore, MemorySink};
use crate::sink::{Outbound, Receipt, Sink};

/// Sends like `inner`, but before its first send the delivery is finished by "someone
/// else" (an operator, or the process that took the claim over), as happens when this
/// process stalls past its lease.
#[derive(Debug)]
struct StolenFirst {
    inner: MemorySink,
    store: Arc<MemoryAuditStore>,
    stolen: std::sync::Mutex<Option<crate::audit::DeliveryId>>,
}

impl std::fmt::Display for StolenFirst {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StolenFirst")
    }
}

#[async_trait::async_trait]
impl Sink for StolenFirst {
    async fn send(&self, msg: &Outbound) -> Result<Receipt> {
        let first = {
            let mut stolen = self.stolen.lock().expect("lock");
            stolen.is_none().then(|| *stolen.insert(msg.delivery_id))
        };
        if let Some(id) = first {
            let taken = Error::config("operator", "finished elsewhere");
            self.store
                .finish_attempt(
                    id,
                    AttemptOutcome::Failed(ErrorInfo::from(&taken)),
                    jiff::Timestamp::now(),
                )
                .await?;
        }
        self.inner.send(msg).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_lost_claim_is_skipped_and_the_other_deliveries_go_on() {
    let rig = Rig::new(MemorySink::new("chat"));
    for (k, s) in [("1", 1), ("2", 2), ("3", 3)] {
        rig.table.upsert(invoice(k, s, "1"));
    }
    let sink = Arc::new(StolenFirst {
        inner: rig.sink.clone(),
        store: rig.store.clone(),
        stolen: std::sync::Mutex::new(None),
    });
    let p = Pipeline::builder()
        .store(rig.store.clone())
        .stream(Stream::new(
            "invoices",
            rig.source.clone(),
            Schedule::every(std::time::Duration::from_secs(300)).expect("schedule"),
        ))
        .router(router())
        .sink("chat", sink.clone())
        .clock(rig.clock.clone())
        .build()
        .expect("pipeline");
    // Before: the refused outcome of record 1 failed the whole pass.
    let s = p
        .run_once()
        .await
        .expect("a lost claim does not fail the pass");
    assert_eq!(keys(&rig.sink.sent()), ["1", "2", "3"]);
    assert_eq!(s.deliveries.attempts, 3);
    let stolen = sink
        .stolen
        .lock()
        .expect("lock")
        .expect("a stolen delivery");
    // The journal keeps what the new owner recorded, not our outcome.
    let view = rig.store.delivery(stolen).await.expect("view");
    assert_eq!(view.status, DeliveryStatus::Failed);
    let stats = rig.store.stats().await.expect("stats");
    assert_eq!((stats.delivered, stats.failed, stats.in_flight), (2, 1, 0));
}
