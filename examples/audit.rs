//! The operator's view of the journal (`ML_AUDIT_DB`, default `ml-audit.db`).
//!
//! ```text
//! cargo run --example audit -- list [pending|in_flight|retrying|delivered|failed]
//! cargo run --example audit -- show <stream> <record key>
//! cargo run --example audit -- replay <delivery id>
//! cargo run --example audit -- replay-failed
//! cargo run --example audit -- rejected
//! ```
//!
//! A replayed delivery is pending again: the next cycle of `oracle_fusion_to_slack` sends it.

use ml_connector::audit::{AuditQuery, AuditWrite, DeliveryFilter, DeliveryId, DeliveryStatus};
use ml_connector::store::SqliteBuilder;
use ml_connector::{Error, Result};

fn usage() -> Error {
    Error::config(
        "arguments",
        "usage: audit list [status] | show <stream> <key> | replay <id> | replay-failed | rejected",
    )
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let store = SqliteBuilder::from_env().build()?;
    println!("journal: {store}");
    let now = jiff::Timestamp::now();
    match args.first().map(String::as_str) {
        Some("list") => {
            let filter = match args.get(1) {
                Some(s) => DeliveryFilter::status(
                    s.parse::<DeliveryStatus>()
                        .map_err(|_| Error::config("status", format!("unknown status `{s}`")))?,
                ),
                None => DeliveryFilter::default(),
            };
            for d in store.deliveries(&filter).await? {
                println!(
                    "{:>6}  {:<10} {:<22} {:<14} {:<20} attempts {}{}",
                    d.id.to_string(),
                    d.status.as_str(),
                    d.destination.to_string(),
                    d.stream,
                    d.record_key,
                    d.attempts,
                    d.last_error
                        .map(|e| format!("  last error: {}", e.message))
                        .unwrap_or_default()
                );
            }
        }
        Some("show") => {
            let (Some(stream), Some(key)) = (args.get(1), args.get(2)) else {
                return Err(usage());
            };
            let h = store.record_history(stream, key).await?;
            for v in &h.versions {
                println!(
                    "version {} journaled {}: {} {}",
                    v.record.dedupe_version(),
                    v.journaled_at,
                    v.record.title(),
                    v.record
                        .fields
                        .amount
                        .map(|m| m.to_string())
                        .unwrap_or_default()
                );
                // The source item exactly as it was read (amounts keep every digit).
                if !v.record.raw.is_null() {
                    println!("    source item: {}", v.record.raw);
                }
            }
            for d in &h.deliveries {
                println!(
                    "delivery {} -> {}: {} ({} attempts)",
                    d.id,
                    d.destination,
                    d.status.as_str(),
                    d.attempts
                );
                for a in store.attempts(d.id).await? {
                    println!("    {a:?}");
                }
            }
        }
        Some("replay") => {
            let id: i64 = args.get(1).and_then(|s| s.parse().ok()).ok_or_else(usage)?;
            store.replay(DeliveryId(id), now).await?;
            println!("delivery {id} is pending again; the next cycle sends it");
        }
        Some("replay-failed") => {
            let n = store
                .replay_failed(&DeliveryFilter::status(DeliveryStatus::Failed), now)
                .await?;
            println!("{n} failed deliveries are pending again");
        }
        Some("rejected") => {
            for r in store.rejected(None, 100).await? {
                println!("{r:?}");
            }
        }
        _ => return Err(usage()),
    }
    Ok(())
}
