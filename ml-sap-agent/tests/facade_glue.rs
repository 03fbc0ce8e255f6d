//! The facade's `connector = "sap-ecc-relay"` glue (`src/connectors/sap_agent.rs`),
//! compiled here with stand-ins for the facade's helpers, and the example config
//! `examples/config/sap_ecc_agent.toml` assembled and run once in sandbox mode: host,
//! in-process agent over 127.0.0.1 and the SAP ECC emulator.

#![allow(unreachable_pub, dead_code)]

use ml_core::Error;

pub(crate) fn under(path: &str) -> impl Fn(Error) -> Error + '_ {
    move |e| match e {
        Error::Config { key, message } => Error::config(format!("{path}.settings.{key}"), message),
        other => other,
    }
}

pub(crate) fn rekey(path: &str) -> impl Fn(Error) -> Error + '_ {
    move |e| match e {
        Error::Config { message, .. } => Error::config(path, message),
        other => other,
    }
}

pub(crate) fn no_sandbox(path: &str) -> Error {
    Error::config(format!("{path}.sandbox"), "no sandbox in this build")
}

#[path = "../../src/connectors/sap_agent.rs"]
mod sap_agent;

use std::collections::BTreeMap;

use ml_core::config::{MapEnv, PipelineConfig, Registry};

fn example() -> String {
    let raw = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/config/sap_ecc_agent.toml"
    ))
    .expect("example config");
    // The in-memory journal of ml-core instead of the SQLite file (ml-store).
    raw.replace(
        "sqlite = \"${ML_AUDIT_DB:-ml-audit-sap-relay.db}\"",
        "url = \"memory:\"",
    )
}

fn registry() -> Registry {
    sap_agent::register(Registry::new().with_memory(BTreeMap::new()))
}

#[cfg(feature = "sandbox")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_runs_host_agent_and_emulator_on_one_machine() {
    let config = PipelineConfig::from_toml_str(&example()).expect("config");
    let env = MapEnv::new().with("ML_RELAY_LISTEN", "127.0.0.1:0");
    let assembled = registry()
        .assemble(&config, &env, |b| b)
        .await
        .expect("assembled");
    let banners = assembled.sandbox_banners().join("\n");
    assert!(
        banners.contains("relay endpoint for SAP system `PRD` at ws://127.0.0.1:"),
        "{banners}"
    );
    assert!(
        banners.contains("in-process relay agent `plant-a`"),
        "{banners}"
    );
    // The glue waited for its in-process agent: the first cycle reads through it.
    let s = assembled.pipeline.run_once().await.expect("run");
    assert!(s.cycle_errors.is_empty(), "{s}");
    let delivered = s.deliveries.delivered;
    assert!(
        delivered > 0,
        "SAP documents reached the sink through the relay"
    );
}

#[tokio::test]
async fn the_glue_refuses_what_belongs_on_the_agent_and_missing_keys() {
    let base = example().replace("sandbox = \"auto\"", "sandbox = \"never\"");
    let env = MapEnv::new()
        .with("ML_RELAY_LISTEN", "127.0.0.1:0")
        .with("ML_RELAY_KEY_PLANT_A", "0123456789abcdef0123456789abcdef");
    let with_logon = base.replace(
        "ML_RELAY_SYSTEM = \"PRD\"",
        "ML_RELAY_SYSTEM = \"PRD\"\npassword = \"hunter2\"",
    );
    let config = PipelineConfig::from_toml_str(&with_logon).expect("config");
    let Err(err) = registry().assemble(&config, &env, |b| b).await else {
        panic!("the SAP logon on the host must be refused");
    };
    let text = err.to_string();
    assert!(
        text.contains("sources.sap.settings.password") && text.contains("belong on the agent"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
    let config = PipelineConfig::from_toml_str(&base).expect("config");
    let no_key = MapEnv::new().with("ML_RELAY_LISTEN", "127.0.0.1:0");
    let Err(err) = registry().assemble(&config, &no_key, |b| b).await else {
        panic!("a missing agent key must be refused");
    };
    assert!(err.to_string().contains("ML_RELAY_KEY_PLANT_A"), "{err}");
    // With the key, the host starts and waits for its agent: streams pause, typed.
    let assembled = registry()
        .assemble(&config, &env, |b| b)
        .await
        .expect("assembled");
    let s = assembled.pipeline.run_once().await.expect("run");
    assert_eq!(s.cycle_errors.len(), 2, "{s}");
    let status = assembled.pipeline.stream_status();
    assert!(
        status
            .iter()
            .all(|s| matches!(s.state, ml_core::pipeline::StreamState::Unavailable { .. })),
        "{status:?}"
    );
}
