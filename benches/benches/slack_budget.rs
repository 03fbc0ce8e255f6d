//! The Slack budget: how much of Slack's `chat.postMessage` allowance (1 message per second
//! per channel) the pipeline uses when every channel has a backlog, and whether it ever
//! trips a 429.
//!
//! 50 channels (`ML_BENCH_BUDGET_CHANNELS`) on the Slack emulator with its own 1 msg/s per
//! channel limit on; `GcraLimiter` with `slack:` at 1/s, burst 1; a SQLite journal in a
//! tempdir already holding `seconds + 10` invoices per channel (journaled before the clock
//! starts); then `Pipeline::run` for `ML_BENCH_BUDGET_SECS` seconds (default 60) of wall
//! time. Prints messages accepted / (channels x seconds) (target >= 0.99) and the count of
//! 429 responses (target 0). With `ML_BENCH_BUDGET_STRICT=1` it exits with status 1 when
//! either target is missed (by default it only says so, so `cargo bench` goes on to the
//! other targets).
//!
//! It also prints the distribution of the gaps between a channel's accepted messages (as
//! the emulator received them): a gap of 2 s or more is a slot lost to a 429.
//!
//! Accepted messages are counted half a second before the window closes: at 1/s, burst 1,
//! a channel has exactly `seconds` send slots in `[start, start + seconds)` (t = 0, 1, ...,
//! seconds - 1), and the last one lands well within that half second on loopback.
//!
//! `cargo bench -p ml-benches --bench slack_budget` (a ratio, not a duration: a plain main,
//! not criterion); `ML_BENCH_BUDGET_SECS=10 cargo bench -p ml-benches --bench slack_budget`
//! for a smoke run.

#![allow(missing_docs)]

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use ml_benches::{SyntheticInvoices, env_or, router};
use ml_core::limiter::{GcraLimiter, Quota};
use ml_core::{Pipeline, Schedule, Stream};
use ml_sandbox::slack::{Channel, SlackEmulator, StoredMessage};
use ml_slack::SlackBuilder;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    // Test harnesses list or run every target; this one only runs under `cargo bench`.
    if args.iter().any(|a| a == "--list") {
        return ExitCode::SUCCESS;
    }
    if !args.iter().any(|a| a == "--bench") {
        println!("slack_budget: run it with `cargo bench -p ml-benches --bench slack_budget`");
        return ExitCode::SUCCESS;
    }
    let secs: u64 = env_or("ML_BENCH_BUDGET_SECS", 60).max(2);
    let channels: u64 = env_or("ML_BENCH_BUDGET_CHANNELS", 50).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let strict = env_or("ML_BENCH_BUDGET_STRICT", 0) == 1;
    match rt.block_on(budget(channels, secs)) {
        Ok(met) if met || !strict => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("slack_budget: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn budget(channels: u64, secs: u64) -> ml_core::Result<bool> {
    let config = |e: &dyn std::fmt::Display| ml_core::Error::config("slack_budget", e.to_string());
    let slack = SlackEmulator::start().await.map_err(|e| config(&e))?; // 1 msg/s/channel
    let destinations: Vec<String> = (0..channels)
        .map(|c| {
            format!(
                "slack:{}",
                slack.add_channel(Channel::public(format!("ch{c:03}")))
            )
        })
        .collect();
    let sink = SlackBuilder::new()
        .with_bot_token(slack.bot_token())
        .with_api_url(slack.base_url())
        .build()?;
    let limiter = GcraLimiter::builder()
        .prefix("slack:", Quota::per_second(1)?.burst(1)?)
        .build();
    let dir = tempfile::tempdir().map_err(|e| config(&e))?;
    let store = ml_store::SqliteBuilder::new()
        .with_path(dir.path().join("budget.db"))
        .build()?;
    let n = channels * (secs + 10);
    let p = Pipeline::builder()
        .store(Arc::new(store))
        .stream(Stream::new(
            "invoices",
            Arc::new(SyntheticInvoices::new(n).with_cost_centers(channels)),
            Schedule::every(Duration::from_secs(3600))?,
        ))
        .router(router(&destinations)?)
        .sink("slack", Arc::new(sink))
        .limiter(Arc::new(limiter))
        .max_in_flight(usize::try_from(channels).unwrap_or(usize::MAX))
        .max_pages_per_cycle(n + 1)
        .build()?;
    // The backlog, journaled before the window opens.
    let c = p.poll_stream("invoices").await?;
    assert_eq!(c.journaled, n, "{c:?}");

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let window = Duration::from_secs(secs);
    let counter = async {
        tokio::time::sleep(window.saturating_sub(Duration::from_millis(500))).await;
        let accepted = slack.all_messages();
        let _ = stop_tx.send(());
        accepted
    };
    let run = p.run(async {
        let _ = stop_rx.await;
    });
    let (messages, summary) = tokio::join!(counter, run);
    let summary = summary?;
    let accepted = messages.len() as u64;
    let gaps = gaps_ms(&messages);
    let rate_limited = slack.rate_limited_count();
    let used = accepted as f64 / (channels * secs) as f64;
    let ok = used >= 0.99 && rate_limited == 0;
    println!(
        "slack budget: {channels} channels x {secs} s: {accepted} messages accepted = {used:.3} \
         of 1 msg/s/channel (target >= 0.99); {rate_limited} x 429 (target 0); \
         {} delivered, {} retried by the end of the run: {}",
        summary.deliveries.delivered,
        summary.deliveries.retried,
        if ok { "ok" } else { "MISSED" }
    );
    if let (Some(min), Some(max)) = (gaps.first(), gaps.last()) {
        let at = |q: f64| gaps[((gaps.len() - 1) as f64 * q) as usize];
        println!(
            "gaps between accepted messages of a channel (ms): min {min}, p10 {}, median {}, \
             p90 {}, p99 {}, max {max}",
            at(0.1),
            at(0.5),
            at(0.9),
            at(0.99)
        );
    }
    Ok(ok)
}

/// The gaps between consecutive accepted messages of each channel (from their `ts`, the
/// emulator's receive time), in milliseconds, sorted.
fn gaps_ms(messages: &[StoredMessage]) -> Vec<i64> {
    let mut by_channel: HashMap<&str, Vec<i64>> = HashMap::new();
    for m in messages {
        let (secs, micros) = m.ts.split_once('.').unwrap_or((&m.ts, "0"));
        if let (Ok(s), Ok(u)) = (secs.parse::<i64>(), micros.parse::<i64>()) {
            by_channel
                .entry(m.channel.as_str())
                .or_default()
                .push(s * 1_000_000 + u);
        }
    }
    let mut gaps: Vec<i64> = by_channel
        .into_values()
        .flat_map(|mut ts| {
            ts.sort_unstable();
            ts.windows(2)
                .map(|w| (w[1] - w[0]) / 1_000)
                .collect::<Vec<_>>()
        })
        .collect();
    gaps.sort_unstable();
    gaps
}
