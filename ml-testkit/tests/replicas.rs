//! Several replicas, one truth: 3 replica processes (`replica-child`) on one PostgreSQL
//! journal and one Redis limiter post 20 channels x 100 invoices into the Slack emulator,
//! while the test SIGKILLs a random replica at random moments (20 times) and restarts it.
//!
//! Asserted at the emulator: every invoice posted, none twice (the Slack sink reconciles
//! in-doubt posts through their metadata), no HTTP 429, and per channel the accepted
//! posts at least one interval apart, i.e. the channel budget is shared by the replicas
//! instead of multiplied by them. Asserted in the journal: everything delivered, nothing
//! left in flight, nothing re-sent after an unresolved doubt.
//!
//! Time scale: by default the channel budget is one post per 100 ms, both at the emulator
//! and in the limiter (Slack's 1 msg/s, ten times faster), so the full 2,000 posts and 20
//! kills take well under two minutes. `ML_REPLICAS_FULL=1` runs at Slack's real
//! 1 msg/s/channel (about three minutes). `ML_REPLICAS_SEED` picks the kill schedule.
//!
//! Needs `ML_TEST_POSTGRES_URL` and `ML_TEST_REDIS_URL`; without them it prints that it
//! skipped and passes. It uses a schema and a Redis key namespace of its own.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ml_core::audit::AuditQuery;
use ml_sandbox::slack::{Channel, SlackEmulator};
use rand::{Rng, SeedableRng};

const REPLICAS: usize = 3;
const CHANNELS: usize = 20;
const RECORDS: usize = 100;
const KILLS: u32 = 20;

fn env_url(var: &str, test: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(u) if !u.trim().is_empty() => Some(u),
        _ => {
            // Straight to stderr: the test harness captures `eprintln!`, not this.
            let _ = std::io::stderr()
                .write_all(format!("SKIPPED {test}: {var} is not set\n").as_bytes());
            None
        }
    }
}

struct Setup {
    pg_url: String,
    schema: String,
    redis_url: String,
    namespace: String,
    slack_url: String,
    bot_token: String,
    channels: String,
    interval_ms: u64,
    lease_ms: u64,
}

fn spawn(s: &Setup, log: &Path) -> Child {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log");
    Command::new(env!("CARGO_BIN_EXE_replica-child"))
        .args(["--pg-url", &s.pg_url])
        .args(["--schema", &s.schema])
        .args(["--redis-url", &s.redis_url])
        .args(["--namespace", &s.namespace])
        .args(["--slack-url", &s.slack_url])
        .args(["--bot-token", &s.bot_token])
        .args(["--channels", &s.channels])
        .args(["--records", &RECORDS.to_string()])
        .args(["--interval-ms", &s.interval_ms.to_string()])
        .args(["--lease-ms", &s.lease_ms.to_string()])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(out.try_clone().expect("log"))
        .stderr(out)
        .spawn()
        .expect("spawn replica")
}

/// (channel, record key) of every bot post, from the sink's message metadata.
fn posts(slack: &SlackEmulator, channel: &str) -> Vec<String> {
    slack
        .messages(channel)
        .iter()
        .filter_map(|m| {
            m.metadata.as_ref()?["event_payload"]["record_key"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_one_journal_and_one_channel_budget_through_twenty_kills() {
    let test = "three_replicas_share_one_journal_and_one_channel_budget_through_twenty_kills";
    let (Some(pg_url), Some(redis_url)) = (
        env_url("ML_TEST_POSTGRES_URL", test),
        env_url("ML_TEST_REDIS_URL", test),
    ) else {
        return;
    };
    let full = std::env::var("ML_REPLICAS_FULL").is_ok_and(|v| v == "1");
    let interval = Duration::from_millis(if full { 1000 } else { 100 });
    let seed: u64 = std::env::var("ML_REPLICAS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_0014);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let mut builder = SlackEmulator::builder().post_message_interval(Some(interval));
    for c in 0..CHANNELS {
        builder = builder.channel(Channel::public(format!("ch-{c:02}")));
    }
    let slack = builder.start().await.expect("slack emulator");
    let ids: Vec<String> = (0..CHANNELS)
        .map(|c| slack.channel_id(&format!("ch-{c:02}")).expect("channel id"))
        .collect();
    let tag = format!("{}_{:08x}", std::process::id(), rng.random::<u32>());
    let setup = Setup {
        pg_url: pg_url.clone(),
        schema: format!("t_replicas_{tag}"),
        redis_url,
        namespace: format!("mltest:replicas:{tag}"),
        slack_url: slack.base_url().to_owned(),
        bot_token: slack.bot_token(),
        channels: ids
            .iter()
            .enumerate()
            .map(|(i, id)| format!("{i}={id}"))
            .collect::<Vec<_>>()
            .join(","),
        interval_ms: interval.as_millis() as u64,
        lease_ms: 2000,
    };
    // Create the schema once up front (replicas would race to, harmlessly).
    let journal = ml_store::PostgresBuilder::new()
        .with_url(&pg_url)
        .with_schema(&setup.schema)
        .build()
        .await
        .expect("journal");

    let dir = tempfile::tempdir().expect("tempdir");
    let logs: Vec<_> = (0..REPLICAS)
        .map(|r| dir.path().join(format!("replica-{r}.log")))
        .collect();
    let mut replicas: Vec<Child> = logs.iter().map(|l| spawn(&setup, l)).collect();
    let expected = CHANNELS * RECORDS;
    let started = Instant::now();
    let deadline = Duration::from_secs(if full { 600 } else { 150 });
    let mut kills = 0u32;
    let mut next_kill = started + Duration::from_millis(rng.random_range(300..1200));
    let delivered = |slack: &SlackEmulator| -> usize {
        ids.iter()
            .map(|id| posts(slack, id).into_iter().collect::<HashSet<_>>().len())
            .sum()
    };
    loop {
        let done = delivered(&slack);
        if done >= expected && kills >= KILLS {
            break;
        }
        assert!(
            started.elapsed() < deadline,
            "after {:?}: {done}/{expected} delivered, {kills} kills; logs in {}",
            started.elapsed(),
            dir.path().display()
        );
        if kills < KILLS && Instant::now() >= next_kill {
            // A random replica, at a random moment: in a poll, a claim, a send, a commit.
            let r = rng.random_range(0..REPLICAS);
            replicas[r].kill().expect("SIGKILL");
            let _ = replicas[r].wait();
            replicas[r] = spawn(&setup, &logs[r]);
            kills += 1;
            next_kill = Instant::now() + Duration::from_millis(rng.random_range(300..1200));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    for mut r in replicas {
        let _ = r.stdin.as_mut().expect("stdin").write_all(b"stop\n");
        let status = tokio::task::spawn_blocking(move || r.wait())
            .await
            .expect("join")
            .expect("wait");
        assert!(status.success(), "a replica failed: {status}");
    }

    // At the emulator: all posted, none twice, no 429, the budget shared.
    let mut duplicates = 0;
    let mut min_gap = Duration::MAX;
    let mut max_per_window = 0usize;
    for id in &ids {
        let keys = posts(&slack, id);
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for k in &keys {
            *seen.entry(k.as_str()).or_default() += 1;
        }
        duplicates += seen
            .values()
            .filter(|n| **n > 1)
            .map(|n| n - 1)
            .sum::<usize>();
        assert_eq!(
            seen.len(),
            RECORDS,
            "channel {id}: {} of {RECORDS}",
            seen.len()
        );
        let accepted: Vec<jiff::Timestamp> = slack
            .post_arrivals_in(id)
            .iter()
            .filter(|a| a.accepted)
            .map(|a| a.at)
            .collect();
        for w in accepted.windows(2) {
            let gap = Duration::try_from(w[1].duration_since(w[0])).unwrap_or_default();
            min_gap = min_gap.min(gap);
        }
        // The most posts in any window of ten intervals (the rate over a 10 s window at
        // Slack's scale).
        for (i, start) in accepted.iter().enumerate() {
            let end = *start + jiff::SignedDuration::try_from(interval * 10).expect("span");
            let n = accepted[i..].iter().take_while(|t| **t < end).count();
            max_per_window = max_per_window.max(n);
        }
    }
    let stats = journal.stats().await.expect("stats");
    // Deliveries a killed replica left in flight, taken over after its lease (and
    // reconciled: none of them was posted twice).
    let taken_over = journal
        .deliveries(&ml_core::audit::DeliveryFilter::default())
        .await
        .expect("deliveries")
        .iter()
        .filter(|d| d.attempts > 1)
        .count();
    println!(
        "replicas: seed {seed:#x}, {REPLICAS} replicas, {kills} SIGKILLs, {}/{expected} posted in \
         {:.1} s, {duplicates} duplicates, {} x 429, min gap between posts in a channel {:?} \
         (interval {interval:?}), at most {max_per_window} posts per 10 intervals; journal: \
         delivered {}, in flight {}, resent after doubt {}, taken over after a kill {taken_over}",
        delivered(&slack),
        elapsed.as_secs_f64(),
        slack.rate_limited_count(),
        min_gap,
        stats.delivered,
        stats.in_flight,
        stats.resent_after_doubt
    );
    assert_eq!(duplicates, 0, "posted twice");
    assert_eq!(slack.rate_limited_count(), 0, "HTTP 429 from Slack");
    assert!(
        min_gap >= interval,
        "two posts {min_gap:?} apart in one channel"
    );
    assert!(
        max_per_window <= 10,
        "{max_per_window} posts in 10 intervals"
    );
    assert_eq!(stats.delivered, expected as u64);
    assert_eq!(
        stats.in_flight + stats.pending + stats.retrying + stats.failed,
        0
    );
    assert_eq!(stats.resent_after_doubt, 0);
    assert!(
        taken_over > 0,
        "no kill landed while a delivery was in flight"
    );

    // Clean up the schema (Redis keys expire by themselves).
    if let Ok((client, conn)) = tokio_postgres::connect(&pg_url, tokio_postgres::NoTls).await {
        tokio::spawn(async move { drop(conn.await) });
        let _ = client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", setup.schema))
            .await;
    }
}
