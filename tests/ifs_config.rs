//! `connector = "ifs"` in a pipeline file: sandbox mode with demo data, real-credential
//! mode against an emulator the test runs, and errors that name the key.
#![cfg(all(
    feature = "ifs",
    feature = "slack",
    feature = "sandbox",
    feature = "store"
))]

#[cfg(feature = "cli")]
mod common;

use ml_connector::config::{MapEnv, PipelineConfig};
use ml_connector::{Error, connectors};
use ml_sandbox::Emulator as _;

fn example() -> PipelineConfig {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/config/ifs_to_slack.toml"
    ))
    .expect("read");
    PipelineConfig::from_toml_str(&text).expect("parse")
}

fn journal_env(dir: &tempfile::TempDir) -> MapEnv {
    MapEnv::new().with(
        "ML_AUDIT_DB",
        dir.path().join("audit.db").to_string_lossy().into_owned(),
    )
}

#[tokio::test]
async fn the_example_file_runs_in_sandbox_mode() {
    let dir = tempfile::tempdir().expect("dir");
    let assembled = connectors::assemble(&example(), &journal_env(&dir))
        .await
        .expect("assemble");
    let banners = assembled.sandbox_banners().join("\n");
    assert!(banners.contains("IFS Cloud sandbox"), "{banners}");
    assert!(banners.contains("Slack sandbox"), "{banners}");
    let names: Vec<&str> = assembled.sources.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["supplier-invoices", "purchase-orders", "suppliers"]);
    let summary = assembled.pipeline.run_once().await.expect("run");
    // Demo data: 3 invoices, 2 purchase orders, 2 suppliers.
    assert_eq!(summary.polled, 7, "{summary:?}");
    for (_, source) in &assembled.sources {
        source.healthcheck().await.expect("healthcheck");
    }
}

#[tokio::test]
async fn with_credentials_it_talks_to_the_given_environment() {
    let e = ml_sandbox::ifs::IfsEmulator::start().await.expect("ifs");
    e.insert(
        "ManSuppInvoiceSet",
        &ml_sandbox::ifs::invoice("20", 1, "10.00", "AwaitingApproval", None),
    )
    .expect("insert");
    e.insert(
        "ManSuppInvoiceSet",
        &ml_sandbox::ifs::invoice("10", 2, "10.00", "AwaitingApproval", None),
    )
    .expect("insert");
    let dir = tempfile::tempdir().expect("dir");
    let mut env = journal_env(&dir);
    for (k, v) in e.env() {
        env.set(k, v);
    }
    env.set("IFS_COMPANY", "20");
    let mut config = example();
    // A real ERP, the Slack sandbox: on purpose, so the file must say so.
    config.sinks.get_mut("slack").expect("slack").sandbox =
        ml_connector::config::pipeline::SandboxMode::Always;
    config.streams.retain(|s| s.name == "supplier-invoices");
    let assembled = connectors::assemble(&config, &env).await.expect("assemble");
    assert!(
        !assembled
            .sandbox_banners()
            .iter()
            .any(|b| b.contains("IFS Cloud sandbox")),
        "credentials set: no IFS sandbox"
    );
    let (_, source) = &assembled.sources[0];
    let page = source.poll(None).await.expect("poll");
    assert_eq!(page.items.len(), 1, "only company 20");
    assert!(source.to_string().contains("ManSuppInvoiceSet"), "{source}");
}

/// A Slack emulator with the file's two channels (posts unpaced when `unpaced`).
async fn slack_with_channels(unpaced: bool) -> ml_sandbox::slack::SlackEmulator {
    use ml_sandbox::slack::{Channel, SlackEmulator};
    let mut b = SlackEmulator::builder()
        .channel(Channel::public("procurement").with_id("C0PROCURE1"))
        .channel(Channel::public("finance").with_id("C0FINANCE1"));
    if unpaced {
        b = b.post_message_interval(None);
    }
    b.start().await.expect("slack")
}

/// The sample file against `ifs` and `slack` (real-credential mode), and its environment.
fn against(
    ifs: &ml_sandbox::ifs::IfsEmulator,
    slack: &ml_sandbox::slack::SlackEmulator,
    dir: &tempfile::TempDir,
) -> (PipelineConfig, MapEnv) {
    use ml_connector::config::pipeline::SettingValue;
    let mut env = journal_env(dir)
        .with("SLACK_BOT_TOKEN", slack.bot_token())
        .with("T_SLACK_URL", slack.base_url());
    for (k, v) in ifs.env() {
        env.set(k, v);
    }
    let mut config = example();
    config
        .sinks
        .get_mut("slack")
        .expect("slack sink")
        .settings
        .insert(
            "api_url".into(),
            SettingValue::Text("${T_SLACK_URL}".into()),
        );
    (config, env)
}

/// `ml-connector run` from the file puts the Approve / Reject buttons on the Slack
/// messages of invoices awaiting approval (the file promises them), and on nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoices_awaiting_approval_get_the_buttons_from_the_file() {
    let e = ml_sandbox::ifs::IfsEmulator::start().await.expect("ifs");
    e.insert(
        "ManSuppInvoiceSet",
        &ml_sandbox::ifs::invoice("10", 1, "10.00", "AwaitingApproval", None),
    )
    .expect("insert");
    e.insert(
        "ManSuppInvoiceSet",
        &ml_sandbox::ifs::invoice("10", 2, "10.00", "Posted", None),
    )
    .expect("insert");
    let slack = slack_with_channels(true).await;
    let dir = tempfile::tempdir().expect("dir");
    let (mut config, mut env) = against(&e, &slack, &dir);
    env.set("IFS_APPROVERS", "U00HUMAN01=ALICE:approve+reject");
    config.streams.retain(|s| s.name == "supplier-invoices");
    config
        .sinks
        .get_mut("slack")
        .expect("slack sink")
        .per_address_per_second = Some(1000);
    let (assembled, _hooks) = connectors::assemble_with_hooks(&config, &env)
        .await
        .expect("assemble");
    let summary = assembled.pipeline.run_once().await.expect("run");
    assert_eq!(summary.polled, 2, "{summary:?}");
    let messages = slack.all_messages();
    assert_eq!(messages.len(), 2, "{messages:?}");
    let buttons = |key: &str| {
        messages
            .iter()
            .filter(|m| m.text.contains(key))
            .flat_map(|m| {
                m.blocks
                    .iter()
                    .filter_map(|b| b.as_array().cloned())
                    .flatten()
            })
            .filter(|b| b["type"] == "actions")
            .flat_map(|b| b["elements"].as_array().cloned().unwrap_or_default())
            .map(|el| (el["action_id"].clone(), el["value"].clone()))
            .collect::<Vec<_>>()
    };
    let on_1 = buttons("INV-1");
    assert_eq!(on_1.len(), 2, "{messages:?}");
    // Each button names the invoice and the version (ETag) the approver was shown.
    assert!(
        on_1.iter().all(|(_, v)| {
            let v: serde_json::Value =
                serde_json::from_str(v.as_str().unwrap_or_default()).unwrap_or_default();
            v["k"] == "Company='10',InvoiceId=1" && v["e"].as_str().is_some_and(|e| !e.is_empty())
        }),
        "{on_1:?}"
    );
    assert!(buttons("INV-2").is_empty(), "a posted invoice gets none");
}

/// Slack answering the start-up channel listing with 429: the other names are not listed
/// again at once (conversations.list is Tier 2); they resolve at their first message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_channel_listing_at_start_is_not_repeated_at_once() {
    use ml_sandbox::fault::{Fault, FaultRule};
    let e = ml_sandbox::ifs::IfsEmulator::start().await.expect("ifs");
    let slack = slack_with_channels(false).await;
    slack.faults().push(FaultRule::on(
        "conversations.list",
        Fault::TooManyRequests { retry_after: 2 },
    ));
    let dir = tempfile::tempdir().expect("dir");
    let (config, env) = against(&e, &slack, &dir);
    connectors::assemble(&config, &env).await.expect("assemble");
    assert_eq!(slack.faults().requests("conversations.list"), 1);
}

fn config_error(e: Error) -> String {
    match e {
        Error::Config { key, .. } => key,
        other => panic!("expected a config error, got {other}"),
    }
}

#[tokio::test]
async fn bad_settings_name_their_key() {
    let dir = tempfile::tempdir().expect("dir");
    let mut config = example();
    config.streams[0].resource = Some("widgets".into());
    let err = connectors::assemble(&config, &journal_env(&dir))
        .await
        .expect_err("unknown resource");
    assert_eq!(config_error(err), "streams[0].resource");

    let text = r#"
        [journal]
        url = "memory:"
        [sources.ifs]
        connector = "ifs"
        settings = { url = "http://erp.example.com", realm = "r", client_id = "c", client_secret = "hunter2", page_size = "9999" }
        [sinks.chat]
        connector = "memory"
        [[streams]]
        name = "invoices"
        source = "ifs"
        resource = "supplier_invoices"
        schedule = { every = "5m" }
    "#;
    let config = PipelineConfig::from_toml_str(text).expect("parse");
    let err = connectors::assemble(&config, &MapEnv::new())
        .await
        .expect_err("bad settings");
    let msg = err.to_string();
    assert!(!msg.contains("hunter2"), "{msg}");
    // The URL is checked first: plain http to a non-loopback host is refused.
    assert_eq!(config_error(err), "sources.ifs.settings.url");
}

/// `ml-connector check` on the sample file with nothing set: sandbox IFS and Slack, the
/// approvals' route built, the receiver without a secret refusing everything.
#[cfg(feature = "cli")]
#[test]
fn the_sample_file_checks_in_sandbox_mode() {
    let dir = tempfile::tempdir().expect("dir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ml-connector"))
        .args(["check", "--config"])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/config/ifs_to_slack.toml"
        ))
        .env_clear()
        .env("ML_AUDIT_DB", dir.path().join("audit.db"))
        .output()
        .expect("run check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("IFS Cloud sandbox"), "{stdout}");
    assert!(stdout.contains("Slack approvals by U00HUMAN01"), "{stdout}");
    assert!(
        stdout.contains("receivers.slack: routes /approve-invoice"),
        "{stdout}"
    );
    assert!(stdout.contains("ok      receivers"), "{stdout}");
}

/// Approvals through the real binary and the sample file: IFS is an emulator of this test
/// (given as real credentials), Slack's answers land in a Slack emulator of this test.
#[cfg(feature = "cli")]
mod binary {
    use std::process::{Command, Stdio};
    use std::time::Duration;

    use super::common::Running;

    use ml_sandbox::Emulator as _;
    use ml_sandbox::ifs::{IfsEmulator, invoice};
    use ml_sandbox::slack::{BlockActions, SendOptions, SlackEmulator, SlashCommand};

    const SET: &str = "ManSuppInvoiceSet";
    const APPROVER: &str = "U00HUMAN01";

    fn command(journal: &std::path::Path, ifs: &IfsEmulator, slack: &SlackEmulator) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ml-connector"));
        c.env_clear()
            .envs(slack.env())
            .env("ML_AUDIT_DB", journal.to_string_lossy().as_ref())
            .env("ML_LISTEN", "127.0.0.1:0")
            .env("IFS_COMPANY", "10")
            .env("IFS_APPROVERS", format!("{APPROVER}=ALICE:approve+reject"))
            .env("IFS_APPROVAL_RESPONSE_BASE", slack.root_url())
            .env("SLACK_SIGNING_SECRET", slack.signing_secret());
        for (k, v) in ifs.env() {
            c.env(k, v);
        }
        c
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn run_carries_out_approvals_from_the_config_once_and_audits_them() {
        let ifs = IfsEmulator::start().await.expect("ifs");
        ifs.insert(SET, &invoice("10", 7, "1250.00", "AwaitingApproval", None))
            .expect("invoice");
        ifs.insert(SET, &invoice("10", 8, "80.00", "AwaitingApproval", None))
            .expect("invoice");
        let slack = SlackEmulator::start().await.expect("slack");
        let dir = tempfile::tempdir().expect("dir");
        // The sample file itself, unedited: its receivers listen where ML_LISTEN says.
        let config = std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/config/ifs_to_slack.toml"
        ));
        let journal = dir.path().join("audit.db");

        let mut run = command(&journal, &ifs, &slack);
        run.args(["run", "--progress-secs", "0", "--config"])
            .arg(&config)
            .stderr(Stdio::inherit());
        let (running, base, head) = Running::listening(run);
        assert!(
            head.iter().any(|l| l.contains("routes /approve-invoice")),
            "{head:?}"
        );
        let url = format!("{base}/slack/events");

        let caller = slack.caller();
        let ct = "application/x-www-form-urlencoded";
        let body =
            caller.slash_command_body(&SlashCommand::new("/approve-invoice", "7").user(APPROVER));
        let first = caller
            .send_raw(&url, ct, body.clone().into_bytes(), &SendOptions::default())
            .await
            .expect("send");
        assert_eq!(first.status, 200, "acknowledged: {}", first.body);
        // Slack retries the command (its side timed out): new signature, same trigger_id.
        let now = slack.clock().now().as_second();
        let retry = caller
            .send_raw(
                &url,
                ct,
                body.into_bytes(),
                &SendOptions::default()
                    .timestamp(now + 1)
                    .retry(1, "http_timeout"),
            )
            .await
            .expect("retry");
        assert_eq!(retry.status, 200, "a retry is acknowledged");
        let mallory = caller
            .send_slash_command(
                &url,
                &SlashCommand::new("/approve-invoice", "7").user("U0MALLORY"),
            )
            .await
            .expect("mallory");
        assert_eq!(mallory.status, 200);
        let forged = caller
            .send_slash_command_with(
                &url,
                &SlashCommand::new("/approve-invoice", "7").user(APPROVER),
                &SendOptions::default().signature(format!("v0={}", "0".repeat(64))),
            )
            .await
            .expect("forged");
        assert_eq!(forged.status, 401, "{}", forged.body);
        // The Reject button on invoice 8's message.
        let click = caller
            .send_block_actions(
                &url,
                &BlockActions::new(
                    ml_connector::ifs::approval::REJECT_ACTION_ID,
                    "Company='10',InvoiceId=8",
                )
                .user(APPROVER),
            )
            .await
            .expect("click");
        assert_eq!(click.status, 200);
        drop(caller);

        // Quiescence: on SIGINT `run` stops serving, finishes every request it
        // acknowledged, and exits; after that nothing can happen any more.
        running.signal("INT");
        let status = running.exited(Duration::from_secs(60)).await;
        assert!(status.success(), "{status}");

        let calls = ifs.action_calls();
        let on_7: Vec<_> = calls.iter().filter(|c| c.key == ["10", "7"]).collect();
        assert_eq!(
            on_7.len(),
            1,
            "one action for a command and its retry: {calls:?}"
        );
        assert_eq!(on_7[0].status, 204);
        assert!(
            on_7[0]
                .if_match
                .as_deref()
                .is_some_and(|e| e.starts_with("W/"))
        );
        assert_eq!(
            ifs.get(SET, &["10", "7"]).expect("row")["Objstate"],
            "Approved"
        );
        let on_8: Vec<_> = calls.iter().filter(|c| c.key == ["10", "8"]).collect();
        assert_eq!(on_8.len(), 1, "{calls:?}");
        assert_eq!((on_8[0].action.as_str(), on_8[0].status), ("Reject", 204));
        assert_eq!(
            ifs.get(SET, &["10", "8"]).expect("row")["Objstate"],
            "Rejected"
        );
        assert_eq!(calls.len(), 2, "{calls:?}");
        let posts = slack.response_url_posts();
        assert_eq!(posts.len(), 3, "command, Mallory and the button: {posts:?}");
        let text = |p: &ml_sandbox::slack::ResponseUrlPost| {
            p.body["text"].as_str().unwrap_or_default().to_owned()
        };
        let approved = posts.iter().find(|p| text(p).contains("approved in IFS"));
        let refused = posts.iter().find(|p| text(p).contains("not allowed"));
        assert!(approved.is_some(), "{posts:?}");
        assert_eq!(refused.expect("refusal").body["response_type"], "ephemeral");

        // The audit, through the command line.
        let out = command(&journal, &ifs, &slack)
            .args(["audit", "--config"])
            .arg(&config)
            .args(["show", "ifs.approvals", "Company='10',InvoiceId=7"])
            .output()
            .expect("audit");
        let shown = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{shown}");
        assert!(shown.contains("\"outcome\":\"done\""), "{shown}");
        assert!(shown.contains("\"ifs_identity\":\"ALICE\""), "{shown}");
        assert!(shown.contains("\"outcome\":\"refused\""), "{shown}");
        assert!(shown.contains("U0MALLORY"), "{shown}");
        assert_eq!(shown.matches("\"outcome\":\"done\"").count(), 1, "{shown}");
        // The decisions' journal stream is in no stream of the file, and sends nothing:
        // not taken for a renamed stream.
        let out = command(&journal, &ifs, &slack)
            .args(["check", "--config"])
            .arg(&config)
            .output()
            .expect("check");
        let checked = String::from_utf8_lossy(&out.stdout);
        assert!(!checked.contains("warning"), "{checked}");
    }
}
