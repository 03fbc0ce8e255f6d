//! `connector = "sage-x3"` in a pipeline file: the example in sandbox mode (routes to
//! procurement and finance), X3 Cloud credentials with the rotating refresh token kept in
//! the journal's encrypted credential table across a restart, its expiry and a needed
//! pairing noted once in the journal (`ml-connector audit notes`), status labels in the
//! Slack messages, and errors that name the key.
#![cfg(all(
    feature = "sage-x3",
    feature = "slack",
    feature = "sandbox",
    feature = "store"
))]

use std::time::Duration;

use ml_connector::audit::{KIND_PAIRING_NEEDED, KIND_REFRESH_TOKEN_EXPIRY, NoteFilter};
use ml_connector::config::pipeline::SettingValue;
use ml_connector::config::{MapEnv, PipelineConfig};
use ml_connector::{Error, connectors};
use ml_sandbox::sage_x3::SageX3Emulator;
use ml_sandbox::slack::{Channel, SlackEmulator};

fn example() -> PipelineConfig {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/config/sage_x3_to_slack.toml"
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
    assert!(banners.contains("Sage X3 sandbox"), "{banners}");
    assert!(banners.contains("Slack sandbox"), "{banners}");
    let names: Vec<&str> = assembled.sources.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "x3-purchase-orders",
            "x3-supplier-invoices",
            "x3-gl-entries"
        ]
    );
    let summary = assembled.pipeline.run_once().await.expect("run");
    // Demo data: 7 purchase orders, 6 invoices (one malformed), 3 GL entries.
    assert_eq!(summary.polled, 16, "{summary:?}");
    assert_eq!(summary.rejected, 1, "{summary:?}");
    assert!(summary.cycle_errors.is_empty(), "{summary:?}");
    // 5 approved POs (of 7: one partly, one not approved) + 5 invoices to procurement;
    // 2 large invoices + 3 GL entries to finance.
    assert_eq!(summary.planned, 15, "{summary:?}");
    for (_, source) in &assembled.sources {
        source.healthcheck().await.expect("healthcheck");
    }
}

#[tokio::test]
async fn cloud_tokens_rotate_into_the_journal_and_survive_a_restart() {
    let e = SageX3Emulator::start().await.expect("x3");
    e.load_demo();
    let dir = tempfile::tempdir().expect("dir");
    let key = ml_core::credential::envelope::MasterKey::generate();
    let mut env = journal_env(&dir).with(
        "ML_MASTER_KEY",
        secrecy::ExposeSecret::expose_secret(&key.to_base64()).to_owned(),
    );
    for (k, v) in e.cloud_env() {
        env.set(k, v);
    }
    let mut config = example();
    // A real ERP, the Slack sandbox: on purpose, so the file must say so.
    config.sinks.get_mut("slack").expect("slack").sandbox =
        ml_connector::config::pipeline::SandboxMode::Always;
    config.streams.retain(|s| s.name == "x3-purchase-orders");
    let assembled = connectors::assemble(&config, &env).await.expect("assemble");
    assert!(
        !assembled
            .sandbox_banners()
            .iter()
            .any(|b| b.contains("Sage X3 sandbox")),
        "credentials set: no X3 sandbox"
    );
    let (_, source) = &assembled.sources[0];
    assert_eq!(source.poll(None).await.expect("poll").items.len(), 7);
    assert_eq!(e.renewals(), 1);
    drop(assembled);
    // Restart without the pairing token: the rotated one is read from the journal.
    env.set("SAGE_X3_REFRESH_TOKEN", "");
    e.expire_access_tokens();
    let assembled = connectors::assemble(&config, &env)
        .await
        .expect("reassemble");
    let (_, source) = &assembled.sources[0];
    source.poll(None).await.expect("poll after restart");
    assert_eq!(e.renewals(), 2);
    assert_eq!(e.refused_renewals(), 0);
    // Without a master key the rotating token has nowhere safe to go.
    env.set("ML_MASTER_KEY", "");
    let Err(err) = connectors::assemble(&config, &env).await else {
        panic!("no master key must fail");
    };
    assert!(
        matches!(&err, Error::Config { key, .. } if key.starts_with("sources.x3")),
        "{err}"
    );
}

#[tokio::test]
async fn errors_name_the_key() {
    let dir = tempfile::tempdir().expect("dir");
    let mut config = example();
    config.streams[0].resource = Some("PAYMENTH".into());
    let Err(err) = connectors::assemble(&config, &journal_env(&dir)).await else {
        panic!("unknown class");
    };
    match err {
        Error::Config { key, message } => {
            assert!(key.ends_with(".resource"), "{key}");
            assert!(message.contains("PAYMENTH"), "{message}");
        }
        other => panic!("{other}"),
    }
    let e = SageX3Emulator::start().await.expect("x3");
    let mut env = journal_env(&dir);
    for (k, v) in ml_sandbox::Emulator::env(&e) {
        env.set(k, v);
    }
    env.set("SAGE_X3_TIME_ZONE", "Mars/Olympus");
    let mut config = example();
    if let Some(src) = config.sources.get_mut("x3") {
        // On premises: api1 with a Syracuse user instead of X3 Cloud.
        src.settings.retain(|k, _| {
            !["token_url", "client_id", "client_secret", "refresh_token"].contains(&k.as_str())
        });
        src.settings.insert(
            "user".into(),
            ml_connector::config::pipeline::SettingValue::Text("${SAGE_X3_USER}".into()),
        );
        src.settings.insert(
            "password".into(),
            ml_connector::config::pipeline::SettingValue::Text("${SAGE_X3_PASSWORD}".into()),
        );
    }
    let Err(err) = connectors::assemble(&config, &env).await else {
        panic!("bad zone");
    };
    match err {
        Error::Config { key, .. } => assert_eq!(key, "sources.x3.settings.time_zone"),
        other => panic!("{other}"),
    }
}

/// The journal and master key of an X3 Cloud client of `e` whose pairing gave `refresh`.
fn cloud_env(dir: &tempfile::TempDir, e: &SageX3Emulator, refresh: &str) -> MapEnv {
    let key = ml_core::credential::envelope::MasterKey::generate();
    let mut env = journal_env(dir).with(
        "ML_MASTER_KEY",
        secrecy::ExposeSecret::expose_secret(&key.to_base64()).to_owned(),
    );
    for (k, v) in e.cloud_env() {
        env.set(k, v);
    }
    env.set("SAGE_X3_REFRESH_TOKEN", refresh);
    env
}

/// `ml-connector audit --journal <dir>/audit.db ARGS...`: its standard output.
#[cfg(feature = "cli")]
fn audit_cli(dir: &tempfile::TempDir, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ml-connector"))
        .arg("audit")
        .arg("--journal")
        .arg(dir.path().join("audit.db"))
        .args(args)
        .env_remove("ML_MASTER_KEY")
        .output()
        .expect("run ml-connector");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Neither a token nor the client secret of the emulator appears in `text`.
fn no_secrets(text: &str, refresh: &str) {
    for secret in [
        refresh,
        "sbx-x3-refresh-",
        "sbx-x3-access-",
        ml_sandbox::sage_x3::CLIENT_SECRET,
    ] {
        assert!(!text.contains(secret), "`{secret}` leaked into: {text}");
    }
}

#[cfg(feature = "cli")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_token_near_expiry_is_noted_in_the_journal_once() {
    let e = SageX3Emulator::start().await.expect("x3");
    e.load_demo();
    // The pairing has 3.5 days left (inside the 7-day horizon) and renewals say so.
    e.set_reports_refresh_expiry(true);
    let refresh = e.pair_expiring_in(Duration::from_secs(3 * 86_400 + 12 * 3_600));
    let dir = tempfile::tempdir().expect("dir");
    let env = cloud_env(&dir, &e, &refresh);
    let mut config = example();
    // A real ERP, the Slack sandbox: on purpose, so the file must say so.
    config.sinks.get_mut("slack").expect("slack").sandbox =
        ml_connector::config::pipeline::SandboxMode::Always;
    let assembled = connectors::assemble(&config, &env).await.expect("assemble");
    let store = assembled.pipeline.store();
    // Several cycles, each renewing (access tokens expired in between): every renewal
    // warns, the journal keeps one note.
    for cycle in 1..=3_u64 {
        e.expire_access_tokens();
        let summary = assembled.pipeline.run_once().await.expect("run");
        assert!(summary.cycle_errors.is_empty(), "{summary:?}");
        assert!(e.renewals() >= cycle, "a renewal per cycle");
        let notes = store
            .notes(&NoteFilter::kind(KIND_REFRESH_TOKEN_EXPIRY))
            .await
            .expect("notes");
        assert_eq!(notes.len(), 1, "cycle {cycle}: {notes:?}");
    }
    assert_eq!(e.refused_renewals(), 0);
    let notes = store.notes(&NoteFilter::default()).await.expect("notes");
    assert_eq!(notes.len(), 1, "{notes:?}");
    let note = &notes[0];
    assert!(
        note.message.contains("sage_x3.x3.refresh_token"),
        "{note:?}"
    );
    assert!(note.message.contains("(in 3 d"), "{note:?}");
    no_secrets(&format!("{note:?}"), &refresh);
    drop(assembled);

    // The operator reads it with the CLI, from the journal file alone.
    let out = audit_cli(&dir, &["notes", "--kind", KIND_REFRESH_TOKEN_EXPIRY]);
    assert_eq!(
        out.lines()
            .filter(|l| l.contains(KIND_REFRESH_TOKEN_EXPIRY))
            .count(),
        1,
        "{out}"
    );
    assert!(out.contains("warning"), "{out}");
    assert!(out.contains("pair the connector again"), "{out}");
    no_secrets(&out, &refresh);
    let out = audit_cli(&dir, &["notes", "--since", "1h"]);
    assert!(out.contains(KIND_REFRESH_TOKEN_EXPIRY), "{out}");
    let out = audit_cli(&dir, &["notes", "--kind", KIND_PAIRING_NEEDED]);
    assert!(out.contains("no notes"), "{out}");
    let out = audit_cli(&dir, &["list"]);
    assert!(out.contains("1 warning note(s)"), "{out}");
    no_secrets(&out, &refresh);
}

#[cfg(feature = "cli")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_refresh_token_is_noted_once_as_pairing_needed() {
    let e = SageX3Emulator::start().await.expect("x3");
    e.load_demo();
    let dir = tempfile::tempdir().expect("dir");
    // A token the issuer never gave (or already spent): only a new pairing helps.
    let refresh = "sbx-x3-refresh-never-issued";
    let env = cloud_env(&dir, &e, refresh);
    let mut config = example();
    // A real ERP, the Slack sandbox: on purpose, so the file must say so.
    config.sinks.get_mut("slack").expect("slack").sandbox =
        ml_connector::config::pipeline::SandboxMode::Always;
    config.streams.retain(|s| s.name != "x3-gl-entries");
    let assembled = connectors::assemble(&config, &env).await.expect("assemble");
    let summary = assembled.pipeline.run_once().await.expect("run");
    assert!(
        summary
            .cycle_errors
            .iter()
            .any(|e| e.contains("pairing needed")),
        "{summary:?}"
    );
    // The pipeline now pauses the streams (a permanent error); polling the sources again,
    // several times over both streams, fails at once and notes nothing new.
    for _ in 0..3 {
        for (name, source) in &assembled.sources {
            let err = source.poll(None).await.expect_err(name);
            assert!(err.to_string().contains("pairing needed"), "{err}");
        }
    }
    // The dead token was presented once, never again.
    assert_eq!(e.refused_renewals(), 1);
    let store = assembled.pipeline.store();
    let notes = store
        .notes(&NoteFilter::kind(KIND_PAIRING_NEEDED))
        .await
        .expect("notes");
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].message.contains("sage_x3.x3.refresh_token"),
        "{notes:?}"
    );
    no_secrets(&format!("{notes:?}"), refresh);
    drop(assembled);
    let out = audit_cli(&dir, &["notes"]);
    assert_eq!(
        out.lines()
            .filter(|l| l.contains(KIND_PAIRING_NEEDED))
            .count(),
        1,
        "{out}"
    );
    assert!(out.contains("error"), "{out}");
    no_secrets(&out, refresh);
    // The operator pairs again (a new token in the environment) and restarts: the first
    // good poll notes the pairing restored, and `audit list` no longer shows it as open.
    let fresh = e.pair_expiring_in(Duration::from_secs(90 * 86_400));
    let mut env = env.clone();
    env.set("SAGE_X3_REFRESH_TOKEN", &fresh);
    let assembled = connectors::assemble(&config, &env).await.expect("assemble");
    let summary = assembled.pipeline.run_once().await.expect("run");
    assert!(summary.cycle_errors.is_empty(), "{summary:?}");
    drop(assembled);
    let out = audit_cli(&dir, &["notes"]);
    assert!(out.contains("pairing_restored"), "{out}");
    let listed = audit_cli(&dir, &["list"]);
    // The pairing note and the pause notes of both streams: all resolved, none open.
    assert!(listed.contains("3 of them since resolved"), "{listed}");
    assert!(!listed.contains("newest open"), "{listed}");
    assert!(!listed.contains("pairing needed"), "{listed}");
    no_secrets(&listed, &fresh);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_messages_show_status_labels_and_only_approved_orders() {
    let e = SageX3Emulator::start().await.expect("x3");
    e.load_demo();
    let slack = SlackEmulator::builder()
        .channel(Channel::public("procurement").with_id("C0PROCURE1"))
        .channel(Channel::public("finance").with_id("C0FINANCE1"))
        .post_message_interval(None)
        .start()
        .await
        .expect("slack");
    let dir = tempfile::tempdir().expect("dir");
    let mut env = journal_env(&dir)
        .with("SLACK_BOT_TOKEN", slack.bot_token())
        .with("T_SLACK_URL", slack.base_url());
    for (k, v) in ml_sandbox::Emulator::env(&e) {
        env.set(k, v);
    }
    let mut config = example();
    if let Some(src) = config.sources.get_mut("x3") {
        src.settings.retain(|k, _| {
            !["token_url", "client_id", "client_secret", "refresh_token"].contains(&k.as_str())
        });
        src.settings
            .insert("user".into(), SettingValue::Text("${SAGE_X3_USER}".into()));
        src.settings.insert(
            "password".into(),
            SettingValue::Text("${SAGE_X3_PASSWORD}".into()),
        );
    }
    let sink = config.sinks.get_mut("slack").expect("slack sink");
    sink.settings.insert(
        "api_url".into(),
        SettingValue::Text("${T_SLACK_URL}".into()),
    );
    sink.per_address_per_second = Some(1000);
    // Invoices: this site's own words for STA (the built-in ones say Temporary / Final).
    let invoices = config
        .streams
        .iter_mut()
        .find(|s| s.name == "x3-supplier-invoices")
        .expect("invoices stream");
    invoices.settings.insert(
        "status_labels".into(),
        SettingValue::Text("1=Draft,2=Posted".into()),
    );
    let assembled = connectors::assemble(&config, &env).await.expect("assemble");
    assert!(!assembled.is_sandboxed());
    let summary = assembled.pipeline.run_once().await.expect("run");
    assert_eq!(summary.deliveries.failed, 0, "{summary:?}");
    let texts: Vec<String> = slack
        .messages("C0PROCURE1")
        .into_iter()
        .map(|m| m.text)
        .collect();
    let orders: Vec<&String> = texts.iter().filter(|t| t.contains("PO number")).collect();
    // PO-0003 (APPFLG 2) and PO-0004 (APPFLG 1) are not approved: not posted.
    assert_eq!(orders.len(), 5, "{texts:#?}");
    assert!(
        orders.iter().all(|t| t.contains("Status: Approved")),
        "{orders:#?}"
    );
    assert!(
        !texts
            .iter()
            .any(|t| t.contains("PO-0003") || t.contains("PO-0004")),
        "{texts:#?}"
    );
    let invoices: Vec<&String> = texts
        .iter()
        .filter(|t| t.contains("Invoice number"))
        .collect();
    assert!(!invoices.is_empty(), "{texts:#?}");
    assert!(
        invoices.iter().all(|t| t.contains("Status: Posted")),
        "{invoices:#?}"
    );
    // No raw code is shown as the status anywhere.
    for t in slack.all_messages().into_iter().map(|m| m.text) {
        for raw in ["Status: 1", "Status: 2", "Status: 3"] {
            assert!(!t.contains(raw), "{t}");
        }
    }
    // GL entries keep the built-in labels.
    let finance: Vec<String> = slack
        .messages("C0FINANCE1")
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert!(
        finance
            .iter()
            .filter(|t| t.contains("Journal"))
            .all(|t| t.contains("Status: Final")),
        "{finance:#?}"
    );

    // A bad label list names the stream's key.
    let mut bad = config.clone();
    bad.streams[0].settings.insert(
        "status_labels".into(),
        SettingValue::Text("1=Not approved,3".into()),
    );
    let Err(err) = connectors::assemble(&bad, &env).await else {
        panic!("bad labels must fail");
    };
    match err {
        Error::Config { key, .. } => assert_eq!(key, "streams[0].settings.status_labels"),
        other => panic!("{other}"),
    }
}
