//! The crash tests' child: runs a pipeline (memory source -> SQLite journal -> file sink).
//!
//! * `--mode until-done` (default): `run_once` until everything is delivered, as owner
//!   `--owner` (a service restarted under its instance name: its predecessor's claims are
//!   its own). At its `--kill-at`-th checkpoint it prints `KILLME` and freezes, and the
//!   parent kills it with SIGKILL. Exit 0 after printing `DONE`.
//! * `--mode once`: one `run_once` as a fresh random owner (a cron `--once` beside a
//!   service), with one send at a time, killed only at checkpoints where nothing is in
//!   flight (`--kill-at` counts checkpoints).
//! * `--mode run`: `Pipeline::run` as a fresh random owner until a line arrives on stdin.

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ml_core::audit::OwnerId;
use ml_core::memory::{MemorySource, SourceTable};
use ml_core::pipeline::{Checkpoint, Pipeline, Stream};
use ml_core::retry::RetryPolicy;
use ml_core::routing::{Condition, MatchMode, Router, Rule};
use ml_core::{EntityKind, Money, Schedule};
use ml_testkit::{FileSink, crash_records};

struct Args {
    journal: String,
    sink_log: String,
    records: usize,
    reconcile: bool,
    kill_at: u64,
    mode: String,
    owner: String,
    send_delay_ms: u64,
    lease_ms: u64,
}

fn args() -> Args {
    let mut a = Args {
        journal: String::new(),
        sink_log: String::new(),
        records: 100,
        reconcile: true,
        kill_at: 0,
        mode: "until-done".into(),
        owner: "crash-child".into(),
        send_delay_ms: 0,
        lease_ms: 60_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_default();
        match k.as_str() {
            "--journal" => a.journal = v,
            "--sink-log" => a.sink_log = v,
            "--records" => a.records = v.parse().unwrap_or(100),
            "--reconcile" => a.reconcile = v == "yes",
            "--kill-at" => a.kill_at = v.parse().unwrap_or(0),
            "--mode" => a.mode = v,
            "--owner" => a.owner = v,
            "--send-delay-ms" => a.send_delay_ms = v.parse().unwrap_or(0),
            "--lease-ms" => a.lease_ms = v.parse().unwrap_or(60_000),
            _ => {}
        }
    }
    a
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ml_core::Result<()> {
    let a = args();
    let table = SourceTable::default();
    for r in crash_records(a.records) {
        table.upsert(r);
    }
    let t0 = jiff::Timestamp::from_second(1_800_000_000)
        .map_err(|e| ml_core::Error::config("t0", e.to_string()))?;
    table.insert_malformed(
        "bad-1",
        t0,
        serde_json::json!({"InvoiceId": "bad-1"}),
        "missing amount",
    );
    let source = MemorySource::new("crash", EntityKind::SupplierInvoice, table).with_page_size(7);
    let router = Router::new(
        MatchMode::AllMatch,
        vec![
            Rule {
                name: "all".into(),
                when: vec![],
                to: vec!["file:#all".into()],
            },
            Rule {
                name: "large".into(),
                when: vec![Condition::AmountAtLeast(Money::parse("10000", "EUR")?)],
                to: vec!["file:#large".into()],
            },
        ],
    )?;
    let counter = Arc::new(AtomicU64::new(0));
    let kill_at = a.kill_at;
    let once = a.mode == "once";
    let hook = {
        let counter = counter.clone();
        Arc::new(move |c: &Checkpoint| {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            // A `--once` run is killed only where it holds no send in flight, so any
            // duplicate would come from another process re-sending a live delivery.
            let safe = !once
                || matches!(
                    c,
                    Checkpoint::BeforePoll { .. }
                        | Checkpoint::AfterCommit { .. }
                        | Checkpoint::AfterFinish { .. }
                );
            if kill_at > 0 && n >= kill_at && safe {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "KILLME");
                let _ = out.flush();
                // Freeze here until the parent's SIGKILL lands.
                let mut line = String::new();
                let _ = std::io::stdin().lock().read_line(&mut line);
                std::process::exit(3);
            }
        })
    };
    let store = Arc::new(ml_store::SqliteAuditStore::open(&a.journal)?);
    let pipeline = Pipeline::builder()
        .store(store.clone())
        .stream(Stream::new(
            "crash",
            Arc::new(source),
            Schedule::every(Duration::from_secs(60))?,
        ))
        .router(router)
        .sink(
            "file",
            Arc::new(
                FileSink::new(&a.sink_log, a.reconcile)
                    .with_delay(Duration::from_millis(a.send_delay_ms)),
            ),
        )
        .retry(
            RetryPolicy::default()
                .with_base_delay(Duration::ZERO)
                .with_max_delay(Duration::ZERO)
                .with_max_attempts(1_000),
        )
        .max_in_flight(if once { 1 } else { 4 })
        .lease(Duration::from_millis(a.lease_ms))
        .checkpoint_hook(hook);
    let pipeline = match a.mode.as_str() {
        "until-done" => pipeline.owner(OwnerId::new(a.owner.clone())),
        _ => pipeline,
    }
    .build()?;
    if once {
        let s = pipeline.run_once().await?;
        println!(
            "DONE recovered={} delivered={}",
            s.recovered, s.deliveries.delivered
        );
        return Ok(());
    }
    if a.mode == "run" {
        let stop = async {
            let _ = tokio::task::spawn_blocking(|| {
                let mut line = String::new();
                let _ = std::io::stdin().lock().read_line(&mut line);
            })
            .await;
        };
        println!("STARTED");
        let s = pipeline.run(stop).await?;
        println!(
            "DONE recovered={} delivered={}",
            s.recovered, s.deliveries.delivered
        );
        return Ok(());
    }
    loop {
        let s = pipeline.run_once().await?;
        let st = ml_core::AuditQuery::stats(&*store).await?;
        if st.pending + st.retrying + st.in_flight == 0 && s.cycle_errors.is_empty() {
            break;
        }
    }
    let st = ml_core::AuditQuery::stats(&*store).await?;
    println!(
        "DONE delivered={} failed={} resent_after_doubt={} records={} rejected={}",
        st.delivered, st.failed, st.resent_after_doubt, st.records, st.rejected
    );
    Ok(())
}
