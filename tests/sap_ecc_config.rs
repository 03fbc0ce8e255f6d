//! `connector = "sap-ecc"` in a pipeline file: the example file in sandbox mode, real
//! settings against an emulator the test runs, and errors that name the key.
#![cfg(all(
    feature = "sap-ecc",
    feature = "slack",
    feature = "sandbox",
    feature = "store"
))]

use ml_connector::config::{MapEnv, PipelineConfig};
use ml_connector::{Error, connectors};
use ml_sandbox::Emulator as _;
use ml_sandbox::sap_ecc::SapEccEmulator;

fn example() -> PipelineConfig {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/config/sap_ecc_to_slack.toml"
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

fn path_of(e: Error) -> String {
    match e {
        Error::Config { key, .. } => key,
        other => panic!("not a config error: {other:?}"),
    }
}

#[tokio::test]
async fn the_example_file_runs_in_sandbox_mode() {
    let dir = tempfile::tempdir().expect("dir");
    let assembled = connectors::assemble(&example(), &journal_env(&dir))
        .await
        .expect("assemble");
    let banners = assembled.sandbox_banners().join("\n");
    assert!(banners.contains("SAP ECC sandbox"), "{banners}");
    assert!(banners.contains("Slack sandbox"), "{banners}");
    let names: Vec<&str> = assembled.sources.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["sap-purchase-orders", "sap-invoices", "sap-gl"]);
    for (_, s) in &assembled.sources {
        s.healthcheck().await.expect("healthcheck");
    }
    let summary = assembled.pipeline.run_once().await.expect("run");
    assert!(summary.cycle_errors.is_empty(), "{summary}");
    // Demo data: 2 POs >= 10,000 EUR created + 1 change of one of them, 2 mismatched
    // invoices, 3 GL documents; the PO whose BAPI answers RETURN type E is rejected.
    assert_eq!(summary.planned, 8, "{summary}");
    assert_eq!(summary.rejected, 1, "{summary}");
    // A second cycle re-reads the overlap and plans nothing new.
    let again = assembled.pipeline.run_once().await.expect("run");
    assert_eq!(again.planned, 0, "{again}");
}

#[tokio::test]
async fn real_settings_reach_the_system_and_errors_name_the_key() {
    let dir = tempfile::tempdir().expect("dir");
    let e = SapEccEmulator::start().await.expect("emulator");
    e.load_traps();
    let mut env = journal_env(&dir);
    for (k, v) in e.env() {
        env.set(k, v);
    }
    // Only SAP is real here; Slack stays in the sandbox.
    let mut config = example();
    // A real ERP, the Slack sandbox: on purpose, so the file must say so.
    config.sinks.get_mut("slack").expect("slack").sandbox =
        ml_connector::config::pipeline::SandboxMode::Always;
    let assembled = connectors::assemble(&config, &env).await.expect("assemble");
    let banners = assembled.sandbox_banners().join("\n");
    assert!(!banners.contains("SAP ECC sandbox"), "{banners}");
    let summary = assembled.pipeline.run_once().await.expect("run");
    assert_eq!(summary.planned, 8, "{summary}");
    assert!(e.calls("RFC_READ_TABLE") > 0);
    assert!(e.calls("BAPI_PO_GETDETAIL1") > 0);

    let mut bad = example();
    bad.streams[1].resource = Some("payments".into());
    let err = connectors::assemble(&bad, &env)
        .await
        .expect_err("bad resource");
    assert_eq!(path_of(err), "streams[1].resource");

    let mut env2 = env.clone();
    env2.set("SAP_ECC_MAX_CONCURRENT_RFC", "99");
    let err = connectors::assemble(&example(), &env2)
        .await
        .expect_err("cap out of range");
    assert_eq!(path_of(err), "sources.sap.settings.max_concurrent_rfc");

    let mut env3 = env.clone();
    env3.set("SAP_ECC_PASSWORD", "wrong-hunter2");
    let assembled = connectors::assemble(&config, &env3)
        .await
        .expect("assembles: the password is only checked by the system");
    let (_, src) = &assembled.sources[0];
    let err = src.healthcheck().await.expect_err("logon fails");
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");
    assert!(!err.to_string().contains("hunter2"));
}

#[cfg(feature = "twilio")]
#[tokio::test]
async fn the_twilio_file_routes_new_pos_by_purchasing_group_and_invoices_by_email() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/config/sap_ecc_to_twilio.toml"
    ))
    .expect("read");
    let config = PipelineConfig::from_toml_str(&text).expect("parse");
    connectors::registry().check(&config).expect("connectors");
    let dir = tempfile::tempdir().expect("dir");
    let sap = SapEccEmulator::start().await.expect("sap");
    let traps = sap.load_traps();
    let twilio = ml_sandbox::twilio::TwilioEmulator::start()
        .await
        .expect("twilio");
    let sendgrid = ml_sandbox::sendgrid::SendGridEmulator::start()
        .await
        .expect("sendgrid");
    let mut env = journal_env(&dir);
    for (k, v) in sap
        .env()
        .into_iter()
        .chain(twilio.env())
        .chain(sendgrid.env())
    {
        env.set(k, v);
    }
    env.set("TWILIO_FROM", "+15005550006");
    env.set(
        "TWILIO_STATUS_CALLBACK_URL",
        "http://127.0.0.1:9/twilio/status",
    );
    env.set("SENDGRID_FROM", "erp@example.com");
    let assembled = connectors::assemble(&config, &env).await.expect("assemble");
    assert!(assembled.sandbox_banners().is_empty());
    let summary = assembled.pipeline.run_once().await.expect("run");
    assert!(summary.cycle_errors.is_empty(), "{summary}");
    // A first run reads from the beginning: the 4 POs created today minus the one whose
    // BAPI answer has a RETURN E row, plus the one created months ago, text their buyers;
    // every invoice mails AP.
    let texted: Vec<String> = twilio.messages().iter().map(|m| m.to.clone()).collect();
    assert_eq!(texted.len(), traps.new_pos.len(), "{texted:?}");
    assert!(texted.contains(&traps.undeliverable_phone));
    assert_eq!(sendgrid.mails().len(), traps.invoices.len());
}
