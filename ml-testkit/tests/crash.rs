//! Crash test: a pipeline in a child process, SIGKILLed at seeded random checkpoints
//! (at least 20 per scenario), restarted each time from its SQLite journal. Afterwards every
//! record must have reached every destination, in order, with duplicates only where a sink
//! without `reconcile` was in doubt (and then counted by the journal).
//!
//! Seed: `ML_CRASH_SEED` (default fixed). Records: `ML_CRASH_RECORDS` (default 240).

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use rand::{Rng, SeedableRng};

struct Outcome {
    kills: u32,
    delivered_pairs: usize,
    expected_pairs: usize,
    duplicates: usize,
    resent_after_doubt: u64,
    out_of_order: usize,
}

fn run_scenario(reconcile: bool, seed: u64, records: usize) -> Outcome {
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = dir.path().join("journal.db");
    let sink_log = dir.path().join("sink.log");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut kills = 0u32;
    let done_line = loop {
        // Kill early and often: at most ~60 checkpoints into each life.
        let kill_at: u64 = if kills >= 200 {
            0
        } else {
            rng.random_range(1..=60)
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_crash-child"))
            .args(["--journal", journal.to_str().expect("path")])
            .args(["--sink-log", sink_log.to_str().expect("path")])
            .args(["--records", &records.to_string()])
            .args(["--reconcile", if reconcile { "yes" } else { "no" }])
            .args(["--kill-at", &kill_at.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("stdout");
        let mut done = None;
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("read child");
            if line == "KILLME" {
                child.kill().expect("SIGKILL");
                kills += 1;
                break;
            }
            if line.starts_with("DONE") {
                done = Some(line);
            }
        }
        let status = child.wait().expect("wait");
        if let Some(d) = done {
            assert!(status.success(), "child exited with {status}");
            break d;
        }
        assert!(
            !status.success(),
            "child neither finished nor was killed: {status}"
        );
    };
    let resent_after_doubt: u64 = done_line
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("resent_after_doubt="))
        .and_then(|v| v.parse().ok())
        .expect("resent_after_doubt in DONE line");
    assert!(done_line.contains("failed=0"), "{done_line}");
    assert!(
        done_line.contains("rejected=1"),
        "the malformed item is journaled once: {done_line}"
    );

    let sent = ml_testkit::FileSink::read(&sink_log);
    let mut per_delivery: HashMap<i64, usize> = HashMap::new();
    let mut pairs: BTreeMap<(String, String), usize> = BTreeMap::new();
    for s in &sent {
        *per_delivery.entry(s.delivery_id).or_default() += 1;
        *pairs
            .entry((s.address.clone(), s.record_key.clone()))
            .or_default() += 1;
    }
    let duplicates = sent.len() - per_delivery.len();
    // Every record to #all, every fifth to #large.
    let expected_pairs = records + records.div_ceil(5);
    // Per destination, first sends follow source (key) order.
    let mut out_of_order = 0;
    let mut last: HashMap<&str, &str> = HashMap::new();
    let mut first_seen = std::collections::HashSet::new();
    for s in &sent {
        if !first_seen.insert((s.address.as_str(), s.record_key.as_str())) {
            continue;
        }
        if let Some(prev) = last.get(s.address.as_str())
            && *prev > s.record_key.as_str()
        {
            out_of_order += 1;
        }
        last.insert(&s.address, &s.record_key);
    }
    Outcome {
        kills,
        delivered_pairs: pairs.len(),
        expected_pairs,
        duplicates,
        resent_after_doubt,
        out_of_order,
    }
}

#[test]
fn sigkill_at_random_points_loses_nothing() {
    let seed: u64 = std::env::var("ML_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x00C0_FFEE);
    let records: usize = std::env::var("ML_CRASH_RECORDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(240);
    let mut passed = 0;
    let mut failed = Vec::new();
    for (name, reconcile) in [("with reconcile", true), ("without reconcile", false)] {
        let o = run_scenario(reconcile, seed, records);
        println!(
            "crash test {name}: seed {seed:#x}, {} SIGKILLs, {}/{} record-destination pairs delivered, {} duplicate sends, {} resent after doubt, {} out of order",
            o.kills,
            o.delivered_pairs,
            o.expected_pairs,
            o.duplicates,
            o.resent_after_doubt,
            o.out_of_order
        );
        let mut problems = Vec::new();
        if o.kills < 20 {
            problems.push(format!("only {} kills", o.kills));
        }
        if o.delivered_pairs != o.expected_pairs {
            problems.push(format!(
                "lost: {} of {} delivered",
                o.delivered_pairs, o.expected_pairs
            ));
        }
        if o.out_of_order > 0 {
            problems.push(format!("{} sends out of order", o.out_of_order));
        }
        if reconcile && o.duplicates > 0 {
            problems.push(format!("{} duplicates despite reconcile", o.duplicates));
        }
        if o.duplicates as u64 > o.resent_after_doubt {
            problems.push(format!(
                "{} duplicates but only {} counted",
                o.duplicates, o.resent_after_doubt
            ));
        }
        if problems.is_empty() {
            passed += 1;
        } else {
            failed.push(format!("{name}: {}", problems.join("; ")));
        }
    }
    println!("{passed} passed, {} failed", failed.len());
    assert!(failed.is_empty(), "{failed:?}");
}
