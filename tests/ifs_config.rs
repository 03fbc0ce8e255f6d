//! `connector = "ifs"` in a pipeline file: sandbox mode with demo data, real-credential
//! mode against an emulator the test runs, and errors that name the key.
#![cfg(all(
    feature = "ifs",
    feature = "slack",
    feature = "sandbox",
    feature = "store"
))]

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
