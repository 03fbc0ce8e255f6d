//! Oracle Fusion Cloud ERP -> Slack, embedded in your own program: the same pipeline as
//! `ml-connector run --config examples/config/oracle_fusion_to_slack.toml`, through the
//! same code path (`connectors::load`). Every new supplier invoice to the procurement
//! channel; large invoices, invoices failing validation, payments, large GL journals and
//! receivables to finance (with GL detail); purchase orders to operations. Channels,
//! routes, resources and schedules live in the TOML file: edit it, not this.
//!
//! ```text
//! cargo run --features oracle-fusion,slack,sandbox --example oracle_fusion_to_slack -- --once
//! cargo run --features oracle-fusion,slack,sandbox --example oracle_fusion_to_slack -- my.toml
//! ```
//!
//! * With none of the file's `${…}` variables set (`ORACLE_FUSION_URL`, `SLACK_BOT_TOKEN`,
//!   …), the Oracle and Slack emulators start in-process (on 127.0.0.1) with demo data,
//!   and it says so. With them set, it talks to the real systems.
//! * `--once` runs one cycle per stream and exits; otherwise it polls on each stream's
//!   schedule until Ctrl-C. At exit it prints a summary and the journal's path
//!   (`ML_AUDIT_DB`, default `ml-audit.db`); inspect it with `ml-connector audit`.

use std::path::PathBuf;

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
                "/examples/config/oracle_fusion_to_slack.toml"
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
    println!(
        "journal: {:?}; inspect it with `ml-connector audit --config {} list`",
        pipeline.store(),
        path.display()
    );
    Ok(())
}
