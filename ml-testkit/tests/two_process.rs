//! Two processes on one SQLite journal: a long `run` (a service) plus repeated `--once`
//! children (cron beside it), some SIGKILLed at random points where they hold no send, and
//! restarted. The sink cannot reconcile, so any delivery re-sent while another process had
//! it in flight would be a duplicate: there must be none, and nothing may be lost.
//!
//! Seed: `ML_TWO_PROCESS_SEED` (default fixed).

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

const RECORDS: usize = 90;

fn child(journal: &Path, sink_log: &Path, mode: &str, kill_at: u64) -> Child {
    Command::new(env!("CARGO_BIN_EXE_crash-child"))
        .args(["--journal", journal.to_str().expect("path")])
        .args(["--sink-log", sink_log.to_str().expect("path")])
        .args(["--records", &RECORDS.to_string()])
        .args(["--reconcile", "no"])
        .args(["--mode", mode])
        .args(["--kill-at", &kill_at.to_string()])
        .args(["--send-delay-ms", "15"])
        .args(["--lease-ms", "1500"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child")
}

/// Runs a `--once` child to its end or to its SIGKILL. Returns whether it was killed.
fn once(journal: &Path, sink_log: &Path, kill_at: u64) -> bool {
    let mut c = child(journal, sink_log, "once", kill_at);
    let stdout = c.stdout.take().expect("stdout");
    let mut killed = false;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read child");
        if line == "KILLME" {
            c.kill().expect("SIGKILL");
            killed = true;
            break;
        }
    }
    let status = c.wait().expect("wait");
    assert!(killed || status.success(), "--once child failed: {status}");
    killed
}

#[test]
fn a_once_run_beside_a_service_never_resends_its_live_deliveries() {
    let seed: u64 = std::env::var("ML_TWO_PROCESS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x7770);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = dir.path().join("journal.db");
    let sink_log = dir.path().join("sink.log");
    let expected = RECORDS + RECORDS.div_ceil(5);

    let mut service = child(&journal, &sink_log, "run", 0);
    let mut out = BufReader::new(service.stdout.take().expect("stdout")).lines();
    assert_eq!(
        out.next().and_then(Result::ok).as_deref(),
        Some("STARTED"),
        "service start"
    );
    let started = Instant::now();
    let (mut onces, mut kills) = (0u32, 0u32);
    // `--once` children while the service sends; every other one killed at random.
    while started.elapsed() < Duration::from_secs(25) {
        let kill_at = if onces % 2 == 0 {
            rng.random_range(1..=4)
        } else {
            0
        };
        kills += u32::from(once(&journal, &sink_log, kill_at));
        onces += 1;
        let sent: HashSet<i64> = ml_testkit::FileSink::read(&sink_log)
            .iter()
            .map(|s| s.delivery_id)
            .collect();
        // A killed child's stream lease holds for 1.5 s, so later children skip the poll
        // (and its checkpoints) until it ran out: go on until a few were killed.
        if sent.len() >= expected && onces >= 6 && kills >= 3 {
            break;
        }
    }
    // Stop the service gracefully (sends in flight finish), then one last pass.
    service
        .stdin
        .as_mut()
        .expect("stdin")
        .write_all(b"stop\n")
        .expect("stop");
    let done: Vec<String> = out.map_while(Result::ok).collect();
    assert!(service.wait().expect("wait").success(), "service: {done:?}");
    // Deliveries a killed `--once` child left in flight wait for its lease.
    std::thread::sleep(Duration::from_millis(1600));
    assert!(!once(&journal, &sink_log, 0), "final pass");

    let sent = ml_testkit::FileSink::read(&sink_log);
    let mut per_delivery: HashMap<i64, usize> = HashMap::new();
    let mut pairs = HashSet::new();
    for s in &sent {
        *per_delivery.entry(s.delivery_id).or_default() += 1;
        pairs.insert((s.address.clone(), s.record_key.clone()));
    }
    let duplicates = sent.len() - per_delivery.len();
    println!(
        "two processes: seed {seed:#x}, {onces} --once runs ({kills} SIGKILLed), {}/{expected} pairs delivered, {duplicates} duplicate sends, {:.1} s",
        pairs.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(kills >= 3, "only {kills} kills");
    assert_eq!(duplicates, 0, "a live delivery was re-sent");
    assert_eq!(pairs.len(), expected, "lost deliveries");
}
