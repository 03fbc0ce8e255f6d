//! The journal loop as one release run: `N` synthetic invoices (pages of 500, one
//! destination per record) -> routing -> a new SQLite journal in a tempdir (WAL,
//! synchronous=NORMAL) -> a counting sink, limiter off. Prints records/s, the average
//! journaled body size and the peak RSS; `benches/compare.sh` runs it next to the Python
//! peer.
//!
//! `cargo run --release -p ml-benches --example journal_loop -- 100000 [DESTINATIONS]`
//!
//! With `--machine`, prints one line `records_per_second=<f>` only (for scripts).

use ml_benches::{PAGE, invoice, journal_loop, proc_status};

#[tokio::main]
async fn main() -> ml_core::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let machine = args.iter().any(|a| a == "--machine");
    let mut nums = args.iter().filter_map(|a| a.parse::<u64>().ok());
    let n = nums.next().unwrap_or(100_000);
    let destinations = nums.next().unwrap_or(1).max(1);
    let dir = std::env::temp_dir().join(format!("ml-journal-loop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| ml_core::Error::config("dir", e.to_string()))?;
    let report = journal_loop(&dir.join("journal.db"), n, destinations).await;
    let _ = std::fs::remove_dir_all(&dir);
    let report = report?;
    if report.delivered != n || report.received != n {
        return Err(ml_core::Error::config(
            "journal_loop",
            format!("expected {n} deliveries, got {report:?}"),
        ));
    }
    if machine {
        println!("records_per_second={:.0}", report.records_per_second());
        return Ok(());
    }
    // The average journaled body, from a sample of the same invoices.
    let sample = n.clamp(1, 3_000);
    let mut bytes = 0;
    for i in 0..sample {
        bytes += serde_json::to_string(&invoice(i, destinations)?)
            .map_err(|e| ml_core::Error::config("json", e.to_string()))?
            .len();
    }
    let body = bytes / sample as usize;
    println!(
        "rust journal loop: {n} records (pages of {PAGE}, {destinations} destination(s), \
         body ~{body} B) in {:.2} s = {:.0} records/s",
        report.elapsed.as_secs_f64(),
        report.records_per_second()
    );
    println!(
        "journal write lock held {:.0} % of the run ({:.1} µs per record)",
        report.write_lock_percent(),
        report.write_lock_held.as_secs_f64() * 1e6 / n as f64
    );
    println!("peak: {}", proc_status("VmHWM"));
    Ok(())
}
