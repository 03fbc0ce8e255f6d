//! `connector = "sage-x3"` in a pipeline file: the example in sandbox mode (routes to
//! procurement and finance), X3 Cloud credentials with the rotating refresh token kept in
//! the journal's encrypted credential table across a restart, and errors that name the key.
#![cfg(all(
    feature = "sage-x3",
    feature = "slack",
    feature = "sandbox",
    feature = "store"
))]

use ml_connector::config::{MapEnv, PipelineConfig};
use ml_connector::{Error, connectors};
use ml_sandbox::sage_x3::SageX3Emulator;

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
    // 7 POs + 5 invoices to procurement; 2 large invoices + 3 GL entries to finance.
    assert_eq!(summary.planned, 17, "{summary:?}");
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
