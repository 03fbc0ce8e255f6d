//! Pipelines from TOML: every sample file round-trips, bad files give one clear error
//! naming the key path, and a TOML file alone (custom channel ids) drives Oracle -> Slack.
#![cfg(all(feature = "oracle-fusion", feature = "slack", feature = "sandbox"))]

use std::path::Path;

use ml_connector::config::{MapEnv, PipelineConfig};
use ml_connector::{Error, connectors};
use ml_sandbox::oracle::OracleEmulator;
use ml_sandbox::slack::{Channel, SlackEmulator};

fn path_of(e: Error) -> String {
    match e {
        Error::Config { key, .. } => key,
        other => panic!("not a config error: {other:?}"),
    }
}

#[test]
fn every_sample_file_round_trips() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("examples/config") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        n += 1;
        let config = PipelineConfig::from_file(&path).expect("sample parses");
        // Every sample names only connectors of this crate; a build with all of them
        // (CI runs `--all-features`) checks each sample's sections against its factory.
        if cfg!(all(
            feature = "twilio",
            feature = "sap-ecc",
            feature = "sap-agent",
            feature = "ifs",
            feature = "sage-x3"
        )) {
            connectors::registry()
                .check(&config)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
        let text = config.to_toml_string().expect("serializes");
        let again = PipelineConfig::from_toml_str(&text).expect("re-parses");
        assert_eq!(
            again.to_toml_string().expect("serializes"),
            text,
            "{}",
            path.display()
        );
        assert_eq!(again.streams.len(), config.streams.len());
        assert_eq!(again.routes, config.routes);
        // The ${NAME} references are kept as written, never their values.
        assert!(text.contains("${"), "{text}");
        if config.sinks.values().any(|s| s.connector == "slack") {
            assert!(text.contains("${SLACK_BOT_TOKEN}"), "{text}");
        }
    }
    assert!(n >= 1, "no sample file in {}", dir.display());
}

#[test]
fn the_main_sample_polls_all_six_oracle_resources_payments_included() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config/oracle_fusion_to_slack.toml");
    let config = PipelineConfig::from_file(&path).expect("parses");
    let mut resources: Vec<&str> = config
        .streams
        .iter()
        .filter_map(|s| s.resource.as_deref())
        .collect();
    resources.sort_unstable();
    assert_eq!(
        resources,
        [
            "invoices",
            "journalBatches",
            "payablesPayments",
            "purchaseOrders",
            "receivablesInvoices",
            "suppliers"
        ]
    );
}

const BASE: &str = r#"
[journal]
url = "memory:"

[sources.oracle]
connector = "oracle-fusion"
settings = { url = "${T_ORACLE_URL}", token_url = "${T_TOKEN_URL}", client_id = "${T_CLIENT_ID}", client_secret = "${T_CLIENT_SECRET}", cost_center_segment = "1" }

[sinks.slack]
connector = "slack"
settings = { bot_token = "${T_SLACK_TOKEN}", api_url = "${T_SLACK_URL}" }
channels = { procurement = "C0PROCURE1", finance = "C0FINANCE1", operations = "C0OPERATE1" }
render = { line_detail = ["finance"] }
per_address_per_second = 1000

[[streams]]
name = "invoices"
source = "oracle"
resource = "invoices"
schedule = { every = "1s" }

[[streams]]
name = "purchase-orders"
source = "oracle"
resource = "purchaseOrders"
schedule = { every = "10m" }

[[streams]]
name = "payments"
source = "oracle"
resource = "payablesPayments"
schedule = { every = "10m" }

[routes]
[[routes.rules]]
name = "new invoices"
when = [{ kind = ["supplier_invoice"] }]
to = ["slack:procurement"]

[[routes.rules]]
name = "large invoices"
when = [{ kind = ["supplier_invoice"] }, { amount_at_least = { amount = "10000", currency = "USD" } }]
to = ["slack:finance"]

[[routes.rules]]
name = "payments"
when = [{ kind = ["payment"] }]
to = ["slack:finance"]

[[routes.rules]]
name = "POs"
when = [{ kind = ["purchase_order"] }]
to = ["slack:operations"]
"#;

async fn assemble_err(text: &str, env: &MapEnv) -> String {
    let config = match PipelineConfig::from_toml_str(text) {
        Ok(c) => c,
        Err(e) => return path_of(e),
    };
    match connectors::assemble(&config, env).await {
        Ok(_) => panic!("expected an error"),
        Err(e) => path_of(e),
    }
}

#[tokio::test]
async fn bad_configs_give_one_error_naming_the_path() {
    let env = MapEnv::new();
    let bad = |from: &str, to: &str| {
        assert!(BASE.contains(from), "{from}");
        BASE.replacen(from, to, 1)
    };
    assert_eq!(
        assemble_err(
            &bad(
                "connector = \"oracle-fusion\"",
                "connector = \"oracle-fusio\""
            ),
            &env
        )
        .await,
        "sources.oracle.connector"
    );
    assert_eq!(
        assemble_err(
            &bad(
                "schedule = { every = \"10m\" }\n\n[routes]",
                "schedule = { cron = \"61 * * * *\", zone = \"UTC\" }\n\n[routes]"
            ),
            &env
        )
        .await,
        "streams[2].schedule"
    );
    assert_eq!(
        assemble_err(&bad("name = \"payments\"", "name = \"invoices\""), &env).await,
        "streams[2].name"
    );
    // No sandbox: the first setting whose variable is unset, by its path.
    assert_eq!(
        assemble_err(BASE, &env).await,
        "sources.oracle.settings.client_id"
    );
    // `auto` with some credentials set and others not: an error, not a silent sandbox.
    let partial = MapEnv::from([("T_ORACLE_URL", "https://erp.example.com")]);
    assert_eq!(
        assemble_err(
            &bad(
                "connector = \"oracle-fusion\"",
                "connector = \"oracle-fusion\"\nsandbox = \"auto\""
            ),
            &partial
        )
        .await,
        "sources.oracle.settings.client_id"
    );
    // The shared URL policy, through the configuration.
    let env = MapEnv::from([
        ("T_ORACLE_URL", "http://erp.example.com"),
        ("T_TOKEN_URL", "https://idcs.example.com/oauth2/v1/token"),
        ("T_CLIENT_ID", "c"),
        ("T_CLIENT_SECRET", "hunter2"),
    ]);
    assert_eq!(
        assemble_err(BASE, &env).await,
        "sources.oracle.settings.url"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_toml_file_alone_drives_oracle_to_slack_into_custom_channel_ids() {
    let oracle = OracleEmulator::start().await.expect("oracle");
    connectors::demo::seed(&oracle);
    let slack = SlackEmulator::builder()
        .channel(Channel::public("ap-invoices").with_id("C0PROCURE1"))
        .channel(Channel::public("fin-team").with_id("C0FINANCE1"))
        .channel(Channel::public("ops").with_id("C0OPERATE1"))
        .post_message_interval(None)
        .start()
        .await
        .expect("slack");
    let env = MapEnv::new()
        .with("T_ORACLE_URL", oracle.base_url())
        .with("T_TOKEN_URL", oracle.token_url())
        .with("T_CLIENT_ID", oracle.client_id())
        .with("T_CLIENT_SECRET", oracle.client_secret())
        .with("T_SLACK_TOKEN", slack.bot_token())
        .with("T_SLACK_URL", slack.base_url());
    let config = PipelineConfig::from_toml_str(BASE).expect("parses");
    let a = connectors::assemble(&config, &env)
        .await
        .expect("assembled");
    assert!(!a.is_sandboxed());
    let summary = a.pipeline.run_once().await.expect("run");
    assert_eq!(summary.deliveries.failed, 0, "{summary:?}");
    let texts =
        |id: &str| -> Vec<String> { slack.messages(id).into_iter().map(|m| m.text).collect() };
    let procurement = texts("C0PROCURE1");
    let finance = texts("C0FINANCE1");
    let operations = texts("C0OPERATE1");
    assert_eq!(procurement.len(), 5, "{procurement:?}");
    assert!(
        finance.iter().any(|t| t.contains("INV-300101")),
        "{finance:?}"
    );
    assert!(
        finance.iter().any(|t| t.contains("PAY-7002")),
        "{finance:?}"
    );
    assert_eq!(finance.len(), 3, "{finance:?}");
    assert_eq!(operations.len(), 2, "{operations:?}");
    assert!(operations.iter().all(|t| t.contains("Purchase order")));
    // GL detail only where the file says (finance).
    let with_lines = slack
        .all_messages()
        .into_iter()
        .filter(|m| {
            m.blocks
                .as_ref()
                .is_some_and(|b| b.to_string().contains("Invoice lines"))
        })
        .map(|m| m.channel)
        .collect::<Vec<_>>();
    assert!(!with_lines.is_empty());
    assert!(
        with_lines.iter().all(|c| c == "C0FINANCE1"),
        "{with_lines:?}"
    );
}

#[cfg(feature = "twilio")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_and_email_recipients_by_alias_in_sandbox_mode() {
    let text = r#"
[journal]
url = "memory:"

[sources.oracle]
connector = "oracle-fusion"
sandbox = "always"

[sinks.sms]
connector = "twilio-sms"
sandbox = "always"
recipients = { oncall = "+4915112345678" }

[sinks.email]
connector = "sendgrid-email"
sandbox = "always"
recipients = { ap = "ap@example.com" }

[[streams]]
name = "payments"
source = "oracle"
resource = "payablesPayments"
schedule = { every = "5m" }

[[routes.rules]]
name = "large payments"
when = [{ amount_at_least = { amount = "10000", currency = "USD" } }]
to = ["sms:oncall", "email:ap"]
"#;
    let config = PipelineConfig::from_toml_str(text).expect("parses");
    let a = connectors::assemble(&config, &MapEnv::new())
        .await
        .expect("assembled");
    assert_eq!(a.sandbox_banners().len(), 3, "{:?}", a.sandbox_banners());
    let summary = a.pipeline.run_once().await.expect("run");
    assert_eq!(summary.deliveries.delivered, 2, "{summary:?}");
    let report = a.sandbox_report().join("\n");
    assert!(report.contains("[sandbox sms +4915112345678]"), "{report}");
    assert!(report.contains("PAY-7002"), "{report}");
    assert!(report.contains("ap@example.com"), "{report}");
}
