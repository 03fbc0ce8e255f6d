//! Shared helpers of the ml-slack integration tests (all against `ml-sandbox` on 127.0.0.1).
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use ml_core::audit::{AuditStore, DeliveryFilter, DeliveryStatus, DeliveryView};
use ml_core::money::Money;
use ml_core::record::{BusinessFields, EntityKind, Record};
use ml_core::render::Rendered;
use ml_core::sink::{Destination, Outbound};
use ml_core::{Pipeline, Result};
use ml_sandbox::slack::SlackEmulator;
use ml_slack::{SlackBuilder, SlackSink};

/// A sink pointed at the emulator with its bot token.
pub fn sink(slack: &SlackEmulator) -> SlackSink {
    builder(slack).build().expect("sink")
}

/// A builder pointed at the emulator.
pub fn builder(slack: &SlackEmulator) -> SlackBuilder {
    SlackBuilder::new()
        .with_bot_token(slack.bot_token())
        .with_api_url(slack.base_url())
        .with_signing_secret(slack.signing_secret())
        .with_oauth_client(slack.client_id(), slack.client_secret())
}

/// An invoice record.
pub fn invoice(key: &str, status: &str, modified_secs: i64) -> Record {
    Record::new(
        "Sandbox(erp)",
        EntityKind::SupplierInvoice,
        key,
        Timestamp::from_second(1_700_000_000 + modified_secs).expect("ts"),
    )
    .with_fields(BusinessFields {
        document_number: Some(format!("INV-{key}")),
        supplier: Some("Müller GmbH".into()),
        amount: Some(Money::parse("1200.50", "EUR").expect("money")),
        status: Some(status.into()),
        cost_center: Some("CC-10".into()),
        gl_account: Some("400000".into()),
        ..BusinessFields::default()
    })
    .with_link("https://erp.example.com/invoices/1")
}

/// An outbound message as the pipeline would build it.
pub fn outbound(sink: &SlackSink, delivery_id: i64, address: &str, record: &Record) -> Outbound {
    use ml_core::sink::Sink as _;
    let destination = Destination::new("slack", address);
    let rendered: Rendered = sink.render(record, &destination);
    Outbound {
        delivery_id: ml_core::audit::DeliveryId(delivery_id),
        stream: "invoices".into(),
        record_key: record.key.clone(),
        destination,
        rendered,
        thread: None,
        attempt: 1,
        planned_at: jiff::Timestamp::now(),
    }
}

/// Delivers until nothing is pending or retrying (sleeping on tokio's clock to the next
/// due time: instant under `tokio::time::pause()`), at most `rounds` passes.
pub async fn drain(pipeline: &Pipeline, rounds: usize) -> Result<()> {
    for _ in 0..rounds {
        pipeline.deliver_due().await?;
        let open = open_deliveries(pipeline.store().as_ref()).await?;
        if open == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

/// Deliveries not yet delivered or failed.
pub async fn open_deliveries(store: &dyn AuditStore) -> Result<usize> {
    let all = store.deliveries(&DeliveryFilter::default()).await?;
    Ok(all.iter().filter(|d| !d.status.is_terminal()).count())
}

/// Every delivery with a status.
pub async fn with_status(store: &dyn AuditStore, status: DeliveryStatus) -> Vec<DeliveryView> {
    store
        .deliveries(&DeliveryFilter::status(status))
        .await
        .expect("deliveries")
}

/// The shared store as the trait object the pipeline wants.
pub fn store() -> Arc<ml_core::memory::MemoryAuditStore> {
    Arc::new(ml_core::memory::MemoryAuditStore::new())
}
