//! Sage X3 -> Slack, embedded in your own program: the same pipeline as
//! `ml-connector run --config examples/config/sage_x3_to_slack.toml`, through the same code
//! path (`connectors::load`). Approved purchase orders (and later changes to them) and
//! supplier invoices to the procurement channel, large invoices also to finance, GL entries
//! (account, debit/credit) to finance, statuses shown with their labels (`Approved`, not
//! `3`); every 15 minutes in the site's business hours, hourly overnight. Channels, routes,
//! classes, labels and schedules live in the TOML file: edit it.
//!
//! ```text
//! cargo run --features store,slack,sage-x3,sandbox --example sage_x3_to_slack -- --once
//! cargo run --features store,slack,sage-x3,sandbox --example sage_x3_to_slack -- my.toml
//! ```
//!
//! * With none of the file's `${…}` variables set (`SAGE_X3_URL`, `SLACK_BOT_TOKEN`, …),
//!   the Sage X3 and Slack emulators start in-process (on 127.0.0.1) with demo data, and it
//!   says so. With them set, it talks to the real systems; X3 Cloud's rotating refresh
//!   token is kept in the journal's encrypted credential table (`ML_MASTER_KEY`), and its
//!   expiry (`refresh_warn_days` ahead) or a needed pairing is written into the journal as
//!   a note, once (the source the file configures does it; this program prints them).
//! * `--once` runs one cycle per stream and exits; otherwise it polls on each stream's
//!   schedule until Ctrl-C. At exit it prints a summary and the journal's path
//!   (`ML_AUDIT_DB`, default `ml-audit.db`).

use std::path::PathBuf;

use ml_connector::audit::{NoteFilter, NoteSeverity};
use ml_connector::config::ProcessEnv;
use ml_connector::{Result, connectors};

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let once = args.iter().any(|a| a == "--once");
    let path = args.iter().find(|a| !a.starts_with("--")).map_or_else(
        || {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/examples/config/sage_x3_to_slack.toml"
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
    for line in assembled.sandbox_report() {
        println!("{line}");
    }
    println!(
        "summary: polled {}, delivered {}, failed {}, rejected {}",
        summary.polled, summary.deliveries.delivered, summary.deliveries.failed, summary.rejected
    );
    for e in &summary.cycle_errors {
        println!("stream error: {e}");
    }
    // What needs the operator: a refresh token about to expire, a pairing needed.
    let warnings = pipeline
        .store()
        .notes(&NoteFilter {
            limit: Some(20),
            ..NoteFilter::default()
        })
        .await?;
    for n in warnings
        .iter()
        .filter(|n| n.severity >= NoteSeverity::Warning)
        .take(5)
    {
        println!("journal note ({}, {}): {}", n.severity, n.kind, n.message);
    }
    println!(
        "journal: {:?}; inspect it with `ml-connector audit --config {} list` (notes: `audit notes`)",
        pipeline.store(),
        path.display()
    );
    Ok(())
}
