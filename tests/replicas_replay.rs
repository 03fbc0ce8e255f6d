//! Two replicas of `ml-connector run` on one PostgreSQL journal (feature `postgres`) share
//! the webhook replay cache: a signed Slack request accepted by one replica and replayed
//! to the other behind the load balancer is refused as a replay.
//!
//! Needs `ML_TEST_POSTGRES_URL` (e.g. `postgres://postgres@127.0.0.1:5432/test`); without
//! it the test prints that it skipped and passes. It works in a schema of its own, dropped
//! at the end.
#![cfg(all(feature = "cli", feature = "slack", feature = "postgres"))]

mod common;

use std::process::{Command, Stdio};

use common::Running;

use ml_sandbox::slack::sign;

const SECRET: &str = "slack-signing-secret-for-replica-tests";

fn pg_url(test: &str) -> Option<String> {
    match std::env::var("ML_TEST_POSTGRES_URL") {
        Ok(u) if !u.trim().is_empty() => Some(u),
        _ => {
            // Straight to stderr: the test harness captures `eprintln!`, not this.
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!(
                    "SKIPPED {test}: ML_TEST_POSTGRES_URL is not set \
                     (e.g. postgres://postgres@127.0.0.1:5432/test)\n"
                )
                .as_bytes(),
            );
            None
        }
    }
}

/// A schema name of its own for this run.
fn fresh_schema() -> String {
    use std::hash::{BuildHasher, RandomState};
    let rnd = RandomState::new().hash_one(std::time::SystemTime::now()) as u32;
    format!("t_facade_replay_{}_{rnd:08x}", std::process::id())
}

async fn drop_schema(url: &str, schema: &str) {
    let Ok((client, conn)) = tokio_postgres::connect(url, tokio_postgres::NoTls).await else {
        return;
    };
    tokio::spawn(async move { drop(conn.await) });
    let _ = client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await;
}

/// Starts one replica: `ml-connector run` on a file whose journal is the PostgreSQL
/// database (schema `schema`, a pool of its own) with the Slack receiver; its base URL.
fn start_replica(dir: &std::path::Path, name: &str, pg: &str, schema: &str) -> (Running, String) {
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        r#"
[journal]
url = "${T_PG_URL}"

[receivers]
listen = "127.0.0.1:0"

[receivers.slack]
signing_secret = "${T_SLACK_SIGNING_SECRET}"
"#,
    )
    .expect("config");
    let mut command = Command::new(env!("CARGO_BIN_EXE_ml-connector"));
    command
        .args(["run", "--progress-secs", "0", "--config"])
        .arg(&config)
        .env("T_PG_URL", pg)
        .env("ML_POSTGRES_SCHEMA", schema)
        .env("ML_POSTGRES_POOL_SIZE", "2")
        .env("T_SLACK_SIGNING_SECRET", SECRET)
        .env_remove("ML_POSTGRES_URL")
        .stderr(Stdio::inherit());
    let (running, base, _) = Running::listening(command);
    (running, base)
}

struct Answer {
    status: u16,
    no_retry: bool,
    body: String,
}

async fn post_event(client: &reqwest::Client, base: &str, body: &str, ts: i64) -> Answer {
    let r = client
        .post(format!("{base}/slack/events"))
        .header("content-type", "application/json")
        .header("x-slack-request-timestamp", ts.to_string())
        .header("x-slack-signature", sign(SECRET, ts, body.as_bytes()))
        .body(body.to_owned())
        .send()
        .await
        .expect("send");
    Answer {
        status: r.status().as_u16(),
        no_retry: r.headers().get("x-slack-no-retry").is_some(),
        body: r.text().await.unwrap_or_default(),
    }
}

fn event(id: &str) -> String {
    format!(
        r#"{{"type":"event_callback","event_id":"{id}","team_id":"T1","api_app_id":"A1","event_time":1,"event":{{"type":"app_mention","user":"U1","text":"hi","ts":"1.000001","channel":"C1","event_ts":"1.000001"}}}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slack_request_replayed_to_another_replica_is_refused() {
    let test = "a_slack_request_replayed_to_another_replica_is_refused";
    let Some(pg) = pg_url(test) else {
        return;
    };
    let schema = fresh_schema();
    let dir = tempfile::tempdir().expect("tempdir");
    let (replica_a, a) = start_replica(dir.path(), "a", &pg, &schema);
    let (replica_b, b) = start_replica(dir.path(), "b", &pg, &schema);
    let client = ml_connector::http::ClientOptions::default()
        .client()
        .expect("client");
    let now = jiff::Timestamp::now().as_second();

    // Accepted by A, then the same signed bytes replayed to B: refused as a replay.
    let first = event("EvReplicaA");
    let accepted = post_event(&client, &a, &first, now).await;
    assert_eq!(accepted.status, 200, "replica A accepts: {}", accepted.body);
    let replayed = post_event(&client, &b, &first, now).await;
    assert_eq!(
        (replayed.status, replayed.no_retry),
        (401, true),
        "replica B refuses the replay: {}",
        replayed.body
    );
    assert!(replayed.body.contains("replay"), "{}", replayed.body);

    // B is not refusing everything: a request of its own is accepted, and its replay to A
    // is refused the same way.
    let second = event("EvReplicaB");
    let accepted = post_event(&client, &b, &second, now).await;
    assert_eq!(accepted.status, 200, "replica B accepts: {}", accepted.body);
    let replayed = post_event(&client, &a, &second, now).await;
    assert_eq!(
        (replayed.status, replayed.no_retry),
        (401, true),
        "replica A refuses the replay: {}",
        replayed.body
    );

    drop((replica_a, replica_b));
    drop_schema(&pg, &schema).await;
}
