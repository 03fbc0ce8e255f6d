//! Oracle Fusion Cloud ERP -> Slack: every new supplier invoice to `#procurement` with its
//! supplier and amount; invoices over a threshold or failing validation to `#finance`, with
//! their GL detail (one bullet per distribution: account combination, cost center, amount;
//! read in the same request as the invoice header);
//! purchase orders (acknowledgements) to `#operations`; large GL journal batches to
//! `#finance`. Everything journaled in SQLite; failures replayable (`--example audit`).
//!
//! ```text
//! cargo run --example oracle_fusion_to_slack --features oracle-fusion,slack -- --once
//! cargo run --example oracle_fusion_to_slack --features oracle-fusion,slack   # every 10 min
//! ```
//!
//! * With no `ORACLE_FUSION_URL` / `SLACK_BOT_TOKEN` in the environment, the Oracle and
//!   Slack sandbox emulators start in-process (on 127.0.0.1) with demo data, and it says so.
//! * With `ORACLE_FUSION_URL` + `ORACLE_FUSION_TOKEN_URL` + `ORACLE_FUSION_CLIENT_ID` +
//!   `ORACLE_FUSION_CLIENT_SECRET` (+ `ORACLE_FUSION_SCOPE`), or `ORACLE_FUSION_USER` +
//!   `ORACLE_FUSION_PASSWORD`, and `SLACK_BOT_TOKEN`, it talks to the real systems.
//! * `ML_POLL_INTERVAL_SECS` (300..=900, default 600), `ML_FINANCE_THRESHOLD` (default
//!   `10000 USD`), `ML_AUDIT_DB` (default `ml-audit.db` in the working directory),
//!   `ORACLE_FUSION_COST_CENTER_SEGMENT` (the 0-based segment of your chart of accounts'
//!   combination that is the cost center, e.g. `1` for `01-520-7640-0000-000`; unset: no
//!   cost center, the whole combination is shown).
//! * In sandbox mode, records can be added or changed while it runs (the URLs are printed).
//! * `--once` runs one cycle and exits; at exit it prints a summary and the journal's path.

use std::sync::Arc;
use std::time::Duration;

use ml_connector::limiter::{GcraLimiter, Quota};
use ml_connector::oracle_fusion::{OracleFusionBuilder, OracleResource};
use ml_connector::routing::{Condition, MatchMode, Router, Rule};
use ml_connector::slack::SlackBuilder;
use ml_connector::slack::render::LineDetail;
use ml_connector::store::SqliteBuilder;
use ml_connector::{
    Destination, EntityKind, Error, Money, Pipeline, Result, Schedule, Source, Stream,
};
use ml_sandbox::oracle::{OracleEmulator, invoice_json, oracle_ts, unvalidated_invoice_json};
use ml_sandbox::slack::{Channel, SlackEmulator};

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.trim().is_empty())
}

fn router(threshold: Money) -> Result<Router> {
    Router::new(
        MatchMode::AllMatch,
        vec![
            Rule {
                name: "new invoices".into(),
                when: vec![Condition::Kind(vec![EntityKind::SupplierInvoice])],
                to: vec!["slack:#procurement".into()],
            },
            Rule {
                name: "large invoices".into(),
                when: vec![
                    Condition::Kind(vec![EntityKind::SupplierInvoice]),
                    Condition::AmountAtLeast(threshold),
                ],
                to: vec!["slack:#finance".into()],
            },
            Rule {
                name: "failed validation".into(),
                when: vec![
                    Condition::Kind(vec![EntityKind::SupplierInvoice]),
                    Condition::Status(vec!["Needs Revalidation".into(), "Not Validated".into()]),
                ],
                to: vec!["slack:#finance".into()],
            },
            Rule {
                name: "PO acknowledgements".into(),
                when: vec![Condition::Kind(vec![EntityKind::PurchaseOrder])],
                to: vec!["slack:#operations".into()],
            },
            Rule {
                name: "large GL journals".into(),
                when: vec![
                    Condition::Kind(vec![EntityKind::GlJournal]),
                    Condition::AmountAtLeast(threshold),
                ],
                to: vec!["slack:#finance".into()],
            },
        ],
    )
}

/// Demo data for the sandbox: a few invoices with lines and GL distributions (one large,
/// one failing validation, one not validated yet, a credit memo, one malformed), two
/// purchase orders and a journal batch.
fn demo_data(oracle: &OracleEmulator) {
    // Fixed times: run it twice and the second run delivers nothing new (the journal
    // remembers what it saw).
    let t = jiff::Timestamp::from_second(1_767_600_000).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let at = |m: i64| t + jiff::SignedDuration::from_mins(m);
    oracle.upsert_raw(
        "invoices",
        &invoice_json(300_100, at(1), "1250.00", "Müller Präzisionsteile GmbH"),
    );
    oracle.upsert_raw(
        "invoices",
        &invoice_json(300_101, at(2), "48200.00", "Acme Industrial Supply"),
    );
    oracle.upsert_raw(
        "invoices",
        &invoice_json(300_102, at(3), "9100.00", "Acme Industrial Supply")
            .replace("\"Validated\"", "\"Needs Revalidation\""),
    );
    oracle.upsert_raw(
        "invoices",
        &invoice_json(300_103, at(4), "-310.40", "Nordic Freight AB"),
    );
    oracle.upsert_raw(
        "invoices",
        &unvalidated_invoice_json(300_105, at(4), "2750.00", "Nordic Freight AB"),
    );
    oracle.upsert(
        "invoices",
        &serde_json::json!({"InvoiceId": 300_104, "InvoiceNumber": "INV-300104", "InvoiceCurrency": "USD",
            "LastUpdateDate": oracle_ts(at(5))}),
    );
    for (id, n) in [(400_001, "PO-1001"), (400_002, "PO-1002")] {
        oracle.upsert(
            "purchaseOrders",
            &serde_json::json!({"POHeaderId": id, "OrderNumber": n, "Ordered": 15_000.5, "Currency": "USD",
                "Supplier": "Acme Industrial Supply", "Status": "Open", "ProcurementBU": "US1 Business Unit",
                "LastUpdateDate": oracle_ts(at(6))}),
        );
    }
    oracle.upsert(
        "journalBatches",
        &serde_json::json!({"JeBatchId": 500_001, "BatchName": "Accrual March", "RunningTotalAccountedDr": 250_000,
            "CurrencyCode": "USD", "Status": "Unposted", "LedgerName": "US Primary Ledger",
            "LastUpdateDate": oracle_ts(at(7))}),
    );
}

#[tokio::main]
async fn main() -> Result<()> {
    let once = std::env::args().any(|a| a == "--once");
    let interval = env("ML_POLL_INTERVAL_SECS")
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| Error::config("ML_POLL_INTERVAL_SECS", "not a number of seconds"))
        })
        .transpose()?
        .unwrap_or(600);
    if !(300..=900).contains(&interval) {
        return Err(Error::config(
            "ML_POLL_INTERVAL_SECS",
            "must be 300..=900 (5 to 15 minutes)",
        ));
    }
    let threshold = match env("ML_FINANCE_THRESHOLD") {
        Some(v) => {
            let (a, c) = v.trim().split_once(' ').unwrap_or((v.trim(), "USD"));
            Money::parse(a, c)?
        }
        None => Money::parse("10000", "USD")?,
    };

    // Oracle Fusion: real pod, or the in-process emulator.
    let mut _oracle_emulator = None;
    let oracle = if env("ORACLE_FUSION_URL").is_some() {
        println!(
            "Oracle Fusion: {}",
            env("ORACLE_FUSION_URL").unwrap_or_default()
        );
        OracleFusionBuilder::from_env()
    } else {
        let e = OracleEmulator::start()
            .await
            .map_err(|e| Error::config("sandbox", e.to_string()))?;
        demo_data(&e);
        println!(
            "No ORACLE_FUSION_URL set: using the in-process Oracle Fusion sandbox at {}",
            e.base_url()
        );
        println!(
            "  add or change records while it runs: POST/PATCH {0}fscmRestApi/resources/{1}/invoices, \
             or PUT {0}sandbox/oracle/invoices with any timestamps",
            e.base_url(),
            e.version()
        );
        let b = OracleFusionBuilder::new()
            .with_url(e.base_url())
            .with_client_credentials(e.token_url(), e.client_id(), e.client_secret())
            .with_cost_center_segment('-', 1);
        _oracle_emulator = Some(e);
        b
    };
    // GL detail: the invoices' lines and distributions come in the same request. Which
    // segment of an account combination is the cost center depends on the chart of
    // accounts: ORACLE_FUSION_COST_CENTER_SEGMENT (the sandbox's demo chart: segment 1).
    let sources = oracle.build_many(&[
        OracleResource::Invoices,
        OracleResource::PurchaseOrders,
        OracleResource::JournalBatches,
    ])?;
    for s in &sources {
        s.healthcheck().await?;
    }

    // Slack: real workspace, or the in-process emulator. GL detail (the lines section)
    // only in #finance; #procurement keeps to supplier and amount.
    let line_detail = LineDetail::Only(vec![Destination::new("slack", "#finance")]);
    let mut slack_emulator = None;
    let slack = if env("SLACK_BOT_TOKEN").is_some() {
        SlackBuilder::from_env()
            .with_line_detail(line_detail)
            .build()?
    } else {
        let e = SlackEmulator::builder()
            .channel(Channel::public("procurement"))
            .channel(Channel::public("finance"))
            .channel(Channel::public("operations"))
            .start()
            .await
            .map_err(|e| Error::config("sandbox", e.to_string()))?;
        println!(
            "No SLACK_BOT_TOKEN set: using the in-process Slack sandbox at {}",
            e.base_url()
        );
        let sink = SlackBuilder::new()
            .with_bot_token(e.bot_token())
            .with_api_url(e.base_url())
            .with_line_detail(line_detail)
            .build()?;
        slack_emulator = Some(e);
        sink
    };

    // The limiter keys on the channel id: learn the ids up front so that the first
    // message of a channel and the later ones share one key.
    for channel in ["#procurement", "#finance", "#operations"] {
        if let Err(e) = slack.resolve_channel(channel).await {
            println!("warning: cannot resolve {channel}: {e}");
        }
    }

    let journal = Arc::new(SqliteBuilder::from_env().build()?);
    let journal_name = journal.to_string();
    let limiter = GcraLimiter::builder()
        .prefix("slack:", Quota::per_second(1)?.burst(1)?)
        .build();
    let mut builder = Pipeline::builder()
        .store(journal)
        .router(router(threshold)?)
        .sink("slack", Arc::new(slack))
        .limiter(Arc::new(limiter));
    for s in sources {
        let name = s.spec().path.clone();
        builder = builder.stream(Stream::new(
            name,
            Arc::new(s) as Arc<dyn Source>,
            Schedule::every(Duration::from_secs(interval))?,
        ));
    }
    let pipeline = builder.build()?;

    let summary = if once {
        let mut summary = pipeline.run_once().await?;
        // One cycle: also send what is queued behind Slack's 1 msg/s/channel, and retries
        // due within two minutes; later ones stay in the journal for the next run.
        while let Some(due) = pipeline.store().next_due_at().await? {
            let wait = jiff::Timestamp::now().duration_until(due);
            if wait > jiff::SignedDuration::from_mins(2) {
                break;
            }
            tokio::time::sleep(wait.try_into().unwrap_or_default()).await;
            let d = pipeline.deliver_due().await?;
            summary.deliveries.delivered += d.delivered;
            summary.deliveries.failed += d.failed;
        }
        summary
    } else {
        println!("polling every {interval} s; Ctrl-C to stop");
        pipeline
            .run(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?
    };
    if let Some(e) = &slack_emulator {
        for m in e.all_messages() {
            println!(
                "[sandbox #{}] {}",
                e_name(e, &m.channel),
                m.text.replace('\n', " | ")
            );
            // The lines section of the blocks (GL detail), where there is one.
            for block in m
                .blocks
                .iter()
                .flat_map(|b| b.as_array().into_iter().flatten())
            {
                if let Some(t) = block["text"]["text"].as_str()
                    && t.starts_with("*Invoice lines*")
                {
                    for line in t.lines().skip(1) {
                        println!("    {line}");
                    }
                }
            }
        }
    }
    println!(
        "summary: polled {}, delivered {}, failed {}, rejected {}",
        summary.polled, summary.deliveries.delivered, summary.deliveries.failed, summary.rejected
    );
    println!(
        "journal: {journal_name} (ML_AUDIT_DB); inspect it with `cargo run --example audit -- list`"
    );
    Ok(())
}

fn e_name(e: &SlackEmulator, id: &str) -> String {
    ["procurement", "finance", "operations"]
        .into_iter()
        .find(|n| e.channel_id(n).as_deref() == Some(id))
        .unwrap_or(id)
        .to_owned()
}
