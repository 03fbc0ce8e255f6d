//! The `Sink` conformance suite.

use crate::record::{EntityKind, Record};
use crate::sink::{Destination, Outbound, Reconciled, Sink};

/// Checks a sink's contract against a working destination: `send` returns a receipt with a
/// remote id; `reconcile` (when offered) finds what was sent and does not find what was
/// not; `Display` names the system; neither `Debug` nor `Display` shows any of `secrets`.
/// `first_delivery_id` must not have been used on that destination before.
pub async fn sink_conformance(
    sink: &dyn Sink,
    destination: &Destination,
    first_delivery_id: i64,
    secrets: &[&str],
) {
    let shown = format!("{sink} {sink:?}");
    assert!(
        !sink.to_string().trim().is_empty(),
        "Display must name the system"
    );
    for s in secrets {
        assert!(
            !shown.contains(s),
            "a secret leaks through Display/Debug: {shown}"
        );
    }
    let record = Record::new(
        "Conformance(test)",
        EntityKind::SupplierInvoice,
        format!("conf-{first_delivery_id}"),
        jiff::Timestamp::from_second(1_800_000_000).expect("ts"),
    );
    let rendered = sink.render(&record, destination);
    assert!(
        !rendered.text.trim().is_empty(),
        "rendering produced no text"
    );
    let msg = Outbound {
        delivery_id: crate::audit::DeliveryId(first_delivery_id),
        stream: "conformance".into(),
        record_key: record.key.clone(),
        destination: destination.clone(),
        rendered,
        thread: None,
        attempt: 1,
        planned_at: jiff::Timestamp::now(),
    };
    let receipt = sink
        .send(&msg)
        .await
        .unwrap_or_else(|e| panic!("{sink}: send failed: {e}"));
    assert!(
        !receipt.remote_id.trim().is_empty(),
        "{sink}: empty remote id"
    );
    if sink.can_reconcile() {
        match sink.reconcile(&msg).await {
            Ok(Reconciled::Found(r)) => assert_eq!(
                r.remote_id, receipt.remote_id,
                "{sink}: reconcile found another message"
            ),
            other => panic!("{sink}: reconcile must find a sent message, got {other:?}"),
        }
        let never = Outbound {
            delivery_id: crate::audit::DeliveryId(first_delivery_id + 1),
            ..msg.clone()
        };
        match sink.reconcile(&never).await {
            Ok(Reconciled::NotFound) => {}
            other => panic!("{sink}: reconcile must not find an unsent message, got {other:?}"),
        }
    } else {
        assert!(
            sink.reconcile(&msg).await.is_err(),
            "{sink}: reconcile without support must be an error"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemorySink;

    #[tokio::test]
    async fn memory_sink_conforms() {
        let d = Destination::new("chat", "#x");
        sink_conformance(&MemorySink::new("chat"), &d, 1, &["xoxb-secret"]).await;
        sink_conformance(&MemorySink::new("chat").with_reconcile(false), &d, 1, &[]).await;
    }
}
