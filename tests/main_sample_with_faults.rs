//! The README's main sample file (`examples/config/oracle_fusion_to_slack.toml`), unedited,
//! run by the real binary the way an operator points it at their systems: Oracle and Slack
//! URLs and credentials from the environment, channels with ids nobody configured (the
//! file names `#procurement`, `#finance`, `#operations`), and faults on both sides (503
//! storms and slow answers from Oracle; a 500, a dropped connection, an answer lost after
//! the post was applied and a 429 with Retry-After from Slack). Afterwards: every planned
//! message posted exactly once, the journal all delivered, and Slack never rate-limited us
//! on its own (only the injected 429).
#![cfg(all(
    feature = "cli",
    feature = "sandbox",
    feature = "store",
    feature = "oracle-fusion",
    feature = "slack"
))]

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use ml_connector::connectors;
use ml_sandbox::fault::{Fault, FaultRule};
use ml_sandbox::oracle::OracleEmulator;
use ml_sandbox::slack::{Channel, SlackEmulator};

const SAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/examples/config/oracle_fusion_to_slack.toml"
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_main_sample_delivers_everything_once_through_faults() {
    let oracle = OracleEmulator::start().await.expect("oracle");
    connectors::demo::seed(&oracle);
    let slack = SlackEmulator::builder()
        .channel(Channel::public("procurement").with_id("C0MADEUP01"))
        .channel(Channel::public("finance").with_id("C0MADEUP02"))
        .channel(Channel::public("operations").with_id("C0MADEUP03"))
        .start()
        .await
        .expect("slack");
    oracle
        .faults()
        .push(FaultRule::on("invoices", Fault::Status(503)).times(2));
    oracle
        .faults()
        .push(FaultRule::on("purchaseOrders", Fault::Latency(Duration::from_millis(800))).times(2));
    for fault in [
        Fault::Status(500),
        Fault::DropBeforeResponse,
        Fault::AppliedThenDropped,
        Fault::TooManyRequests { retry_after: 2 },
    ] {
        slack
            .faults()
            .push(FaultRule::on("chat.postMessage", fault).after(2).times(1));
    }

    let dir = tempfile::tempdir().expect("dir");
    let journal = dir.path().join("audit.db");
    let env: BTreeMap<&str, String> = [
        ("ORACLE_FUSION_URL", oracle.base_url().to_owned()),
        ("ORACLE_FUSION_TOKEN_URL", oracle.token_url()),
        ("ORACLE_FUSION_CLIENT_ID", oracle.client_id().to_string()),
        (
            "ORACLE_FUSION_CLIENT_SECRET",
            oracle.client_secret().to_string(),
        ),
        ("SLACK_BOT_TOKEN", slack.bot_token()),
        ("SLACK_API_URL", slack.base_url().to_owned()),
        ("ML_AUDIT_DB", journal.to_string_lossy().into_owned()),
    ]
    .into_iter()
    .collect();
    let cli = move |args: &'static [&'static str]| {
        let env = env.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                Command::new(env!("CARGO_BIN_EXE_ml-connector"))
                    .args(args)
                    .env_clear()
                    .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                    .envs(env)
                    .output()
                    .expect("run ml-connector")
            })
            .await
            .expect("join")
        }
    };
    // Two runs, as an operator's schedule would: the first rides out the faults, the
    // second finds nothing new and nothing left to send.
    let mut outputs = Vec::new();
    for _ in 0..2 {
        let o = cli(&["run", "--config", SAMPLE, "--once"]).await;
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(o.status.success(), "{text}");
        assert!(
            !text.contains("sandbox"),
            "ran against the sandbox:\n{text}"
        );
        outputs.push(text);
    }
    let o = cli(&["audit", "--config", SAMPLE, "list"]).await;
    let listed = String::from_utf8_lossy(&o.stdout).into_owned();
    let all = outputs.join("\n");
    assert!(o.status.success(), "{listed}");
    for bad in ["pending", "retrying", "in_flight", "failed"] {
        assert!(
            !listed.lines().any(|l| l.contains(&format!(" {bad} "))),
            "{bad} left in the journal:\n{listed}\n{all}"
        );
    }

    // Every delivery the journal holds is one post, and no post is there twice.
    let delivered = listed.lines().filter(|l| l.contains(" delivered ")).count();
    assert!(delivered >= 10, "{listed}");
    let mut seen = std::collections::HashSet::new();
    let mut posted = 0;
    for id in ["C0MADEUP01", "C0MADEUP02", "C0MADEUP03"] {
        let texts: Vec<String> = slack.messages(id).into_iter().map(|m| m.text).collect();
        assert!(!texts.is_empty(), "nothing in {id}\n{all}");
        for t in texts {
            posted += 1;
            assert!(seen.insert((id, t.clone())), "posted twice in {id}: {t}");
        }
    }
    assert_eq!(posted, delivered, "{listed}\n{all}");
    // Every fault was met, and Slack rate-limited only where the test told it to.
    assert_eq!(slack.faults().pending_rules(), 0, "{all}");
    assert_eq!(oracle.faults().pending_rules(), 0, "{all}");
    assert_eq!(
        slack.faults().status_count("chat.postMessage", 429),
        1,
        "only the injected 429:\n{all}"
    );
    assert_eq!(slack.rate_limited_count(), 0, "{all}");
}
