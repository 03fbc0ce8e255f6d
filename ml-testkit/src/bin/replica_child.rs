//! The replica test's child: one replica of a pipeline (memory source -> PostgreSQL
//! journal -> Redis limiter -> Slack sink -> the parent's Slack emulator), run with
//! `Pipeline::run` as a fresh random owner until a line arrives on stdin (or SIGKILL).
//!
//! Every replica holds the same source data (`--channels` channels x `--records`
//! invoices; invoice `cc-nnnn` of supplier `Scc` goes to channel `#ch-cc`), so whichever
//! replica polls journals the same records, and the journal deduplicates them.

use std::io::BufRead;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use ml_core::limiter::Quota;
use ml_core::memory::{MemorySource, SourceTable};
use ml_core::pipeline::{Pipeline, Stream};
use ml_core::record::{BusinessFields, EntityKind, Record};
use ml_core::routing::{Condition, MatchMode, Router, Rule};
use ml_core::{Money, Schedule};
use ml_slack::SlackBuilder;
use ml_slack::ids::ChannelId;
use ml_store::postgres::PostgresBuilder;
use ml_store::redis::RedisLimiterBuilder;

#[derive(Default)]
struct Args {
    pg_url: String,
    schema: String,
    redis_url: String,
    namespace: String,
    slack_url: String,
    bot_token: String,
    /// `index=channel id`, comma separated.
    channels: String,
    records: usize,
    interval_ms: u64,
    lease_ms: u64,
}

fn args() -> Args {
    let mut a = Args {
        records: 100,
        interval_ms: 1000,
        lease_ms: 2000,
        ..Args::default()
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_default();
        match k.as_str() {
            "--pg-url" => a.pg_url = v,
            "--schema" => a.schema = v,
            "--redis-url" => a.redis_url = v,
            "--namespace" => a.namespace = v,
            "--slack-url" => a.slack_url = v,
            "--bot-token" => a.bot_token = v,
            "--channels" => a.channels = v,
            "--records" => a.records = v.parse().unwrap_or(100),
            "--interval-ms" => a.interval_ms = v.parse().unwrap_or(1000),
            "--lease-ms" => a.lease_ms = v.parse().unwrap_or(2000),
            _ => {}
        }
    }
    a
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ml_core::Result<()> {
    let a = args();
    let channels: Vec<(usize, String)> = a
        .channels
        .split(',')
        .filter_map(|p| {
            let (i, id) = p.split_once('=')?;
            Some((i.parse().ok()?, id.to_owned()))
        })
        .collect();
    let t0 = Timestamp::from_second(1_800_000_000)
        .map_err(|e| ml_core::Error::config("t0", e.to_string()))?;
    let table = SourceTable::default();
    for n in 0..a.records {
        for (c, _) in &channels {
            table.upsert(
                Record::new(
                    "Replicas(erp)",
                    EntityKind::SupplierInvoice,
                    format!("{c:02}-{n:04}"),
                    t0 + jiff::SignedDuration::from_secs(n as i64),
                )
                .with_fields(BusinessFields {
                    document_number: Some(format!("INV-{c:02}-{n:04}")),
                    supplier: Some(format!("S{c:02}")),
                    amount: Money::parse("120.50", "EUR").ok(),
                    ..BusinessFields::default()
                }),
            );
        }
    }
    let source =
        MemorySource::new("replicas", EntityKind::SupplierInvoice, table).with_page_size(100);
    let rules = channels
        .iter()
        .map(|(c, _)| Rule {
            name: format!("supplier {c}"),
            when: vec![Condition::Supplier(vec![format!("S{c:02}")])],
            to: vec![format!("slack:#ch-{c:02}")],
        })
        .collect();
    let router = Router::new(MatchMode::AllMatch, rules)?;
    let sink = SlackBuilder::new()
        .with_bot_token(a.bot_token.clone())
        .with_api_url(a.slack_url.clone())
        .build()?;
    for (c, id) in &channels {
        sink.remember_channel(&format!("#ch-{c:02}"), &ChannelId(id.clone()));
    }
    let interval = Duration::from_millis(a.interval_ms);
    let lease = Duration::from_millis(a.lease_ms);
    // One post per interval per channel, one in flight per channel; a killed replica's
    // in-flight slot expires after the lease.
    let quota = Quota::with_period(interval)?.in_flight(1, lease)?;
    let limiter = RedisLimiterBuilder::new()
        .with_url(&a.redis_url)
        .with_namespace(&a.namespace)
        .prefix("slack:", quota)
        .build()?;
    let store = PostgresBuilder::new()
        .with_url(&a.pg_url)
        .with_schema(&a.schema)
        .with_pool_size(6)
        .build()
        .await?;
    let pipeline = Pipeline::builder()
        .store(Arc::new(store))
        .stream(Stream::new(
            "invoices",
            Arc::new(source),
            Schedule::every(Duration::from_secs(1))?,
        ))
        .router(router)
        .sink("slack", Arc::new(sink))
        .limiter(Arc::new(limiter))
        .max_in_flight(channels.len().max(1))
        .lease(lease)
        .build()?;
    let stop = async {
        let _ = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            let _ = std::io::stdin().lock().read_line(&mut line);
        })
        .await;
    };
    println!("STARTED {}", pipeline.claimant().owner);
    let s = pipeline.run(stop).await?;
    println!(
        "DONE recovered={} delivered={} reconciled={}",
        s.recovered, s.deliveries.delivered, s.deliveries.reconciled
    );
    Ok(())
}
