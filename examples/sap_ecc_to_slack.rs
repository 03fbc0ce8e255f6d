//! SAP ECC -> Slack (seed 000), embedded in your own program: the same pipeline as
//! `ml-connector run --config examples/config/sap_ecc_to_slack.toml`, through the same
//! code path (`connectors::load`). Purchase orders above 10,000 EUR to #procurement
//! (every 4 h), invoice mismatches to #accounting (every 2 h), GL postings with their
//! cost-center lines to #finance at close of business; then a month-end GL summary:
//! one message per fiscal period with totals per cost center, computed from the journal.
//!
//! ```text
//! cargo run --features sap-ecc,slack,sandbox --example sap_ecc_to_slack -- --once
//! cargo run --features sap-ecc,slack,sandbox --example sap_ecc_to_slack -- my.toml
//! ```
//!
//! * With none of the file's `${…}` variables set (`SAP_ECC_URL`, `SLACK_BOT_TOKEN`, …),
//!   the SAP ECC (SOAP-RFC) and Slack emulators start in-process on 127.0.0.1 with demo
//!   data, and it says so. With them set, it talks to the real systems: no JCo/NCo, the
//!   SOAP-RFC service `/sap/bc/soap/rfc` must be active (SICF).
//! * `--once` runs one cycle per stream and exits; otherwise it polls on each stream's
//!   schedule until Ctrl-C. `--no-summary` skips the month-end summary.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use ml_connector::audit::{AuditQuery, DeliveryFilter, DeliveryId};
use ml_connector::config::ProcessEnv;
use ml_connector::money::{Money, format_amount};
use ml_connector::record::EntityKind;
use ml_connector::render::Rendered;
use ml_connector::sink::{Destination, Outbound};
use ml_connector::{Result, connectors};

/// Totals per (fiscal year, period), per cost center (exact decimals with their currency).
type Summary = BTreeMap<(String, String), BTreeMap<String, Money>>;

/// Sums the GL postings the journal holds for `stream`: debit minus credit per cost
/// center (lines without one are left out), per fiscal period.
async fn month_end_summary(store: &dyn AuditQuery, stream: &str) -> Result<Summary> {
    let deliveries = store
        .deliveries(&DeliveryFilter {
            stream: Some(stream.to_owned()),
            ..DeliveryFilter::default()
        })
        .await?;
    let mut keys: Vec<String> = deliveries.into_iter().map(|d| d.record_key).collect();
    keys.sort_unstable();
    keys.dedup();
    let mut out = Summary::new();
    for key in keys {
        let history = store.record_history(stream, &key).await?;
        let Some(latest) = history.versions.last() else {
            continue;
        };
        let r = &latest.record;
        if r.kind != EntityKind::GlJournal {
            continue;
        }
        let year = r
            .fields
            .extra
            .get("fiscal_year")
            .cloned()
            .unwrap_or_default();
        let period = r.fields.extra.get("period").cloned().unwrap_or_default();
        for line in &r.fields.lines {
            let (Some(cc), Some(amount)) = (&line.cost_center, &line.amount) else {
                continue;
            };
            out.entry((year.clone(), period.clone()))
                .or_default()
                .entry(format!("{cc} {}", amount.currency))
                .and_modify(|t| t.amount += amount.amount)
                .or_insert(*amount);
        }
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let once = args.iter().any(|a| a == "--once");
    let summary_wanted = !args.iter().any(|a| a == "--no-summary");
    let path = args.iter().find(|a| !a.starts_with("--")).map_or_else(
        || {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/examples/config/sap_ecc_to_slack.toml"
            ))
        },
        PathBuf::from,
    );

    let assembled = connectors::load(&path, &ProcessEnv).await?;
    for line in assembled.sandbox_banners() {
        println!("{line}");
    }
    let pipeline = &assembled.pipeline;
    let summary = if once {
        let mut summary = pipeline.run_once().await?;
        // One cycle: also send what is queued behind Slack's 1 msg/s/channel, and retries
        // due within two minutes; later ones stay in the journal for the next run.
        let more = pipeline
            .deliver_coming_due(std::time::Duration::from_secs(120))
            .await?;
        summary.deliveries.merge(&more);
        summary
    } else {
        println!("polling each stream on its schedule; Ctrl-C to stop");
        pipeline
            .run(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?
    };
    if summary_wanted && let Some(slack) = assembled.sinks.get("slack") {
        let totals = month_end_summary(pipeline.store().as_ref(), "sap-gl").await?;
        for ((year, period), by_cc) in &totals {
            let mut text = format!("GL month-end summary {year}/{period}, per cost center:");
            for (cc, sum) in by_cc {
                let cc = cc.split(' ').next().unwrap_or(cc);
                let _ = write!(
                    text,
                    "\n• {cc}: {} {}",
                    format_amount(sum.amount),
                    sum.currency
                );
            }
            let out = Outbound {
                delivery_id: DeliveryId(0),
                stream: "sap-gl-summary".into(),
                record_key: format!("gl-summary/{year}/{period}"),
                destination: Destination::new("slack", "#finance"),
                rendered: Rendered::text(text.clone()),
                thread: None,
                attempt: 1,
                planned_at: jiff::Timestamp::now(),
            };
            // The channel was just posted to: wait out Slack's 1 msg/s when it says so.
            let mut outcome = slack.send(&out).await;
            for _ in 0..3 {
                match &outcome {
                    Err(e) if e.class().is_retryable() => {
                        let wait = e
                            .class()
                            .retry_after()
                            .unwrap_or(std::time::Duration::from_secs(1));
                        tokio::time::sleep(wait).await;
                        outcome = slack.send(&out).await;
                    }
                    _ => break,
                }
            }
            match outcome {
                Ok(receipt) => println!(
                    "month-end summary {year}/{period} posted ({})",
                    receipt.remote_id
                ),
                Err(e) => println!("month-end summary {year}/{period} not posted: {e}"),
            }
        }
    }
    for line in assembled.sandbox_report() {
        println!("{line}");
    }
    println!(
        "summary: polled {}, delivered {}, failed {}, rejected {}",
        summary.polled, summary.deliveries.delivered, summary.deliveries.failed, summary.rejected
    );
    println!(
        "journal: {:?}; inspect it with `ml-connector audit --config {} list`",
        pipeline.store(),
        path.display()
    );
    Ok(())
}
