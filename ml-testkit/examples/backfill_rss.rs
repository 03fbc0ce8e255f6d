//! Peak memory of a large backfill: the Oracle emulator serves `N` synthetic invoices
//! (generated from their index, nothing held), `OracleFusionSource` pages through them
//! (500 a page), the pipeline routes and journals them in SQLite (a tempfile) and delivers
//! each to a sink that counts and drops (the Slack emulator keeps every message for
//! assertions, so it would measure itself, not us). Prints records/s and `VmHWM`.
//!
//! `cargo run --release -p ml-testkit --example backfill_rss -- 1000000`
//! `cargo run --release -p ml-testkit --example backfill_rss -- 1000000 source-only`

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ml_core::routing::{Condition, MatchMode, Router, Rule};
use ml_core::sink::{Outbound, Receipt, Sink};
use ml_core::{EntityKind, Pipeline, Schedule, Stream};
use ml_oracle_fusion::OracleFusionBuilder;
use ml_sandbox::oracle::OracleEmulator;

#[derive(Debug, Default)]
struct Counting(AtomicU64);

impl fmt::Display for Counting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Counting")
    }
}

#[async_trait]
impl Sink for Counting {
    async fn send(&self, msg: &Outbound) -> ml_core::Result<Receipt> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(Receipt::new(format!("c-{}", msg.delivery_id)))
    }
}

fn status(field: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .map_or_else(|| format!("{field} unknown"), |l| l.trim().to_owned())
}

#[tokio::main]
async fn main() -> ml_core::Result<()> {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let oracle = OracleEmulator::start()
        .await
        .map_err(|e| ml_core::Error::config("sandbox", e.to_string()))?;
    oracle.set_synthetic(
        n,
        "2026-01-01T00:00:00Z"
            .parse()
            .map_err(|_| ml_core::Error::config("t", "bad"))?,
        10,
    );
    if std::env::args().nth(2).as_deref() == Some("source-only") {
        // Only the source: page through every record, dropping each page.
        use ml_core::Source as _;
        let source = OracleFusionBuilder::new()
            .with_url(oracle.base_url())
            .with_client_credentials(
                oracle.token_url(),
                oracle.client_id(),
                oracle.client_secret(),
            )
            .build()?;
        let started = Instant::now();
        let (mut pos, mut count, mut pages) = (None, 0u64, 0u64);
        loop {
            let page = source.poll(pos.as_ref()).await?;
            count += page.items.len() as u64;
            pages += 1;
            pos = Some(page.next);
            if !page.more {
                break;
            }
        }
        let took = started.elapsed();
        println!(
            "source only: {count} records in {pages} pages, {:.1} s = {:.0} records/s",
            took.as_secs_f64(),
            count as f64 / took.as_secs_f64()
        );
        println!("peak: {}  now: {}", status("VmHWM"), status("VmRSS"));
        return Ok(());
    }
    let dir = std::env::temp_dir().join(format!("ml-backfill-rss-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| ml_core::Error::config("dir", e.to_string()))?;
    let store = ml_store::SqliteBuilder::new()
        .with_path(dir.join("journal.db"))
        .build()?;
    let source = OracleFusionBuilder::new()
        .with_url(oracle.base_url())
        .with_client_credentials(
            oracle.token_url(),
            oracle.client_id(),
            oracle.client_secret(),
        )
        .build()?;
    let sink = Arc::new(Counting::default());
    let p = Pipeline::builder()
        .store(Arc::new(store))
        .stream(Stream::new(
            "invoices",
            Arc::new(source),
            Schedule::every(Duration::from_secs(600))?,
        ))
        .router(Router::new(
            MatchMode::AllMatch,
            vec![Rule {
                name: "invoices".into(),
                when: vec![Condition::Kind(vec![EntityKind::SupplierInvoice])],
                to: vec!["sink:#procurement".into()],
            }],
        )?)
        .sink("sink", sink.clone())
        .max_pages_per_cycle(100_000)
        .build()?;
    println!("before: {}", status("VmRSS"));
    let started = Instant::now();
    let s = p.run_once().await?;
    let took = started.elapsed();
    println!("{s}");
    println!(
        "{n} records in {:.1} s = {:.0} records/s; sink received {}",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64(),
        sink.0.load(Ordering::Relaxed)
    );
    println!("peak: {}  now: {}", status("VmHWM"), status("VmRSS"));
    // The journal on disk: database file and what the WAL still holds.
    let bytes: u64 = ["journal.db", "journal.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum();
    println!(
        "journal on disk: {:.0} MB ({:.0} bytes a record)",
        bytes as f64 / 1e6,
        bytes as f64 / n.max(1) as f64
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
