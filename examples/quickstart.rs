//! Quickstart: a simulated ERP stream -> routing -> a durable SQLite journal -> a console
//! "channel" sink. No credentials, no network.
//!
//! ```text
//! cargo run --example quickstart -- --once      # one cycle, then a summary
//! cargo run --example quickstart                # poll every 10 s until Ctrl-C
//! ```
//!
//! The journal lives at `ML_AUDIT_DB` (default `ml-audit.db` in the working directory); run
//! it twice and the second run delivers nothing new: the journal remembers.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ml_connector::memory::{MemorySource, SourceTable};
use ml_connector::record::BusinessFields;
use ml_connector::routing::{Router, RouterSpec};
use ml_connector::sink::{Outbound, Receipt};
use ml_connector::store::SqliteBuilder;
use ml_connector::{EntityKind, Money, Pipeline, Record, Schedule, Sink, Stream};

/// Prints each message as a chat client would show it.
#[derive(Debug)]
struct ConsoleSink;

impl fmt::Display for ConsoleSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Console")
    }
}

#[async_trait]
impl Sink for ConsoleSink {
    async fn send(&self, msg: &Outbound) -> ml_connector::Result<Receipt> {
        println!(
            "[{}] {}",
            msg.destination.address,
            msg.rendered.text.replace('\n', " | ")
        );
        Ok(Receipt::new(format!("console-{}", msg.delivery_id)))
    }
}

fn simulated_erp() -> ml_connector::Result<SourceTable> {
    let table = SourceTable::default();
    let t0 = jiff::Timestamp::from_second(1_793_606_400)
        .map_err(|e| ml_connector::Error::config("t0", e.to_string()))?;
    let invoices = [
        (
            "300100",
            "Müller Präzisionsteile GmbH",
            "1250.00",
            "EUR",
            "Validated",
        ),
        (
            "300101",
            "Acme Industrial Supply",
            "48200.00",
            "USD",
            "Validated",
        ),
        ("300102", "Nordic Freight AB", "-310.40", "SEK", "Validated"),
        (
            "300103",
            "Acme Industrial Supply",
            "9100.00",
            "USD",
            "Needs revalidation",
        ),
    ];
    for (i, (id, supplier, amount, currency, status)) in invoices.into_iter().enumerate() {
        table.upsert(
            Record::new(
                "SimulatedERP(demo)",
                EntityKind::SupplierInvoice,
                id,
                t0 + jiff::SignedDuration::from_mins(i as i64),
            )
            .with_fields(BusinessFields {
                document_number: Some(format!("INV-{id}")),
                supplier: Some(supplier.into()),
                amount: Some(Money::parse(amount, currency)?),
                status: Some(status.into()),
                gl_account: Some("6100-200".into()),
                ..BusinessFields::default()
            }),
        );
    }
    table.insert_malformed(
        "300104",
        t0,
        serde_json::json!({"InvoiceId": "300104", "InvoiceAmount": "n/a"}),
        "InvoiceAmount is not a number",
    );
    Ok(table)
}

#[tokio::main]
async fn main() -> ml_connector::Result<()> {
    let once = std::env::args().any(|a| a == "--once");
    let router = Router::try_from(serde_json::from_value::<RouterSpec>(serde_json::json!({
        "mode": "all_match",
        "rules": [
            { "name": "new invoices", "when": [{ "kind": ["supplier_invoice"] }], "to": ["console:#procurement"] },
            { "name": "large invoices", "when": [{ "amount_at_least": { "amount": "10000", "currency": "USD" } }], "to": ["console:#finance"] },
            { "name": "failed validation", "when": [{ "status": ["Needs revalidation"] }], "to": ["console:#finance"] }
        ]
    }))
    .map_err(|e| ml_connector::Error::config("rules", e.to_string()))?)?;

    let journal = SqliteBuilder::from_env().build()?;
    println!("journal: {journal}");
    let journal = Arc::new(journal);
    let source = MemorySource::new("invoices", EntityKind::SupplierInvoice, simulated_erp()?)
        .with_page_size(2);
    let pipeline = Pipeline::builder()
        .store(journal)
        .stream(Stream::new(
            "invoices",
            Arc::new(source),
            Schedule::every(Duration::from_secs(10))?,
        ))
        .router(router)
        .sink("console", Arc::new(ConsoleSink))
        .build()?;

    let summary = if once {
        pipeline.run_once().await?
    } else {
        println!("polling every 10 s; Ctrl-C to stop");
        pipeline
            .run(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?
    };
    println!("summary: {summary}");
    Ok(())
}
