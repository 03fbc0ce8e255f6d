use std::collections::BTreeMap;

use super::pipeline::PipelineConfig;
use super::{MapEnv, Registry};
use crate::error::Error;
use crate::memory::SourceTable;
use crate::record::{EntityKind, Record};
use crate::schedule::Schedule;
use std::time::Duration;

const GOOD: &str = r#"
[journal]
url = "memory:"

[sources.erp]
connector = "memory"
settings = { kind = "purchase_order" }

[sinks.chat]
connector = "memory"
channels = { ops = "C0OPS0001" }

[[streams]]
name = "orders"
source = "erp"
resource = "po"
schedule = { every = "1s" }

[[streams]]
name = "orders-nightly"
source = "erp"
resource = "po"
schedule = { daily_at = "17:30", zone = "Europe/Berlin", days = "Mon-Fri" }
start_at = "2026-01-01T00:00:00Z"
overlap = "5m"

[[streams]]
name = "orders-hours"
source = "erp"
resource = "po"
schedule = { business_hours = "08:00-18:00", days = "Mon-Fri", zone = "Europe/Berlin", during = "15m", outside = "1h" }

[routes]
mode = "all_match"
[[routes.rules]]
name = "every PO"
to = ["chat:ops"]
"#;

fn path_of(e: Error) -> String {
    match e {
        Error::Config { key, .. } => key,
        other => panic!("not a config error: {other:?}"),
    }
}

fn bad(from: &str, to: &str) -> String {
    assert!(GOOD.contains(from), "{from}");
    let text = GOOD.replacen(from, to, 1);
    path_of(PipelineConfig::from_toml_str(&text).expect_err("bad config"))
}

#[test]
fn good_config_round_trips() {
    let c = PipelineConfig::from_toml_str(GOOD).expect("good");
    assert_eq!(c.streams.len(), 3);
    let text = c.to_toml_string().expect("toml");
    let again = PipelineConfig::from_toml_str(&text).expect("again");
    assert_eq!(again.to_toml_string().expect("toml"), text);
    assert_eq!(again.sinks["chat"].address("ops"), "C0OPS0001");
}

#[test]
fn bad_configs_name_the_path() {
    assert_eq!(
        bad(
            "schedule = { business_hours = \"08:00-18:00\"",
            "schedule = { business_hours = \"18:00-08:00\""
        ),
        "streams[2].schedule"
    );
    assert_eq!(
        bad(
            "schedule = { every = \"1s\" }",
            "schedule = { every = \"500ms\" }"
        ),
        "streams[0].schedule"
    );
    assert_eq!(
        bad("name = \"orders-nightly\"", "name = \"orders\""),
        "streams[1].name"
    );
    assert_eq!(
        bad("resource = \"po\"", "resourse = \"po\""),
        "streams[0].resourse"
    );
    assert_eq!(
        bad("source = \"erp\"\nresource", "source = \"nope\"\nresource"),
        "streams[0].source"
    );
    assert_eq!(
        bad("to = [\"chat:ops\"]", "to = [\"sms:ops\"]"),
        "routes.rules[0].to[0]"
    );
    assert_eq!(bad("url = \"memory:\"", "sqlite = 3"), "journal.sqlite");
    // Two streams cannot both take over one former stream.
    let twice = GOOD
        .replacen(
            "name = \"orders\"\n",
            "name = \"orders\"\nrenamed_from = \"po\"\n",
            1,
        )
        .replacen(
            "name = \"orders-nightly\"\n",
            "name = \"orders-nightly\"\nrenamed_from = \"po\"\n",
            1,
        );
    assert_eq!(
        path_of(PipelineConfig::from_toml_str(&twice).expect_err("twice")),
        "streams[1].renamed_from"
    );
    // A key a rule does not know is refused, not ignored (a rule "disabled" that is not).
    assert_eq!(
        bad(
            "name = \"every PO\"",
            "name = \"every PO\"\nenabled = false"
        ),
        "routes.rules[0].enabled"
    );
    for (threshold, path) in [
        (
            r#"{ amount = "10000", currency = "USD", fx = "none" }"#,
            "routes.rules[0].when[0].amount_at_least.fx",
        ),
        (
            r#"{ amount = "10000", currency = "XYZ" }"#,
            "routes.rules[0].when[0].amount_at_least",
        ),
    ] {
        assert_eq!(
            bad(
                "name = \"every PO\"",
                &format!("name = \"every PO\"\nwhen = [{{ amount_at_least = {threshold} }}]")
            ),
            path,
            "{threshold}"
        );
    }
}

#[test]
fn file_errors_say_where_in_the_file() {
    let text = GOOD.replace("resource = \"po\"", "resourse = \"po\"");
    let line = text
        .lines()
        .position(|l| l.starts_with("resourse"))
        .expect("line")
        + 1;
    let Err(Error::Config { message, .. }) = PipelineConfig::from_toml_str(&text) else {
        panic!("accepted");
    };
    assert!(
        message.contains(&format!("(line {line}, column 1)")),
        "{message}"
    );
    // A syntax error too.
    let text = format!("{GOOD}\n[broken\n");
    let last = text.lines().count();
    let Err(Error::Config { message, .. }) = PipelineConfig::from_toml_str(&text) else {
        panic!("accepted");
    };
    assert!(message.contains(&format!("(line {last},")), "{message}");
}

#[test]
fn a_variable_in_a_schedule_is_read_with_an_environment_only() {
    let text = GOOD.replace(
        "schedule = { every = \"1s\" }",
        "schedule = { every = \"${POLL_EVERY:-10m}\" }",
    );
    assert_ne!(text, GOOD);
    let Err(Error::Config { key, message }) = PipelineConfig::from_toml_str(&text) else {
        panic!("accepted");
    };
    assert!(key.contains("schedule"), "{key}");
    assert!(
        message.contains("write the schedule itself (e.g. `every = \"10m\"`)"),
        "{message}"
    );
    // Read with an environment, the variable (or its default) is the schedule.
    let env = MapEnv::new();
    let config = PipelineConfig::from_toml_str_with_env(&text, &env).expect("default");
    assert_eq!(
        config.streams[0].schedule.spec(),
        Schedule::every(Duration::from_secs(600))
            .expect("10m")
            .spec()
    );
    let env = MapEnv::new().with("POLL_EVERY", "2m");
    let config = PipelineConfig::from_toml_str_with_env(&text, &env).expect("set");
    assert_eq!(
        config.streams[0].schedule.spec(),
        Schedule::every(Duration::from_secs(120))
            .expect("2m")
            .spec()
    );
    // A table form, and a variable without a default that is not set.
    let table = GOOD.replacen(
        "schedule = { every = \"1s\" }",
        "\n[streams.schedule]\nevery = \"${POLL_EVERY}\"\n",
        1,
    );
    let config = PipelineConfig::from_toml_str_with_env(&table, &env).expect("table");
    assert_eq!(
        config.streams[0].schedule.spec(),
        Schedule::every(Duration::from_secs(120))
            .expect("2m")
            .spec()
    );
    let Err(Error::Config { key, message }) =
        PipelineConfig::from_toml_str_with_env(&table, &MapEnv::new())
    else {
        panic!("accepted");
    };
    assert_eq!(key, "streams[0].schedule");
    assert!(message.contains("`POLL_EVERY` is not set"), "{message}");
    // `${...}` elsewhere is left for the connectors (here: a sink setting).
    assert!(PipelineConfig::from_toml_str_with_env(GOOD, &MapEnv::new()).is_ok());
}

#[tokio::test]
async fn unknown_connector_and_missing_env_name_the_path() {
    let registry = Registry::new().with_memory(BTreeMap::new());
    let c = PipelineConfig::from_toml_str(&GOOD.replace(
        "connector = \"memory\"\nchannels",
        "connector = \"slak\"\nchannels",
    ))
    .expect("parses");
    let err = registry.check(&c).expect_err("unknown");
    assert_eq!(path_of(err), "sinks.chat.connector");

    let c = PipelineConfig::from_toml_str(&GOOD.replace(
        "settings = { kind = \"purchase_order\" }",
        "settings = { kind = \"${ERP_KIND}\" }",
    ))
    .expect("parses");
    let err = registry
        .assemble(&c, &MapEnv::new(), |b| b)
        .await
        .expect_err("missing env");
    let shown = err.to_string();
    assert_eq!(path_of(err), "sources.erp.settings.kind", "{shown}");
    assert!(shown.contains("ERP_KIND"), "{shown}");
}

#[tokio::test]
async fn assembled_pipeline_delivers_to_the_aliased_address() {
    let table = SourceTable::default();
    table.upsert(Record::new(
        "Demo",
        EntityKind::PurchaseOrder,
        "PO-1",
        jiff::Timestamp::now(),
    ));
    let registry = Registry::new().with_memory(BTreeMap::from([("po".to_owned(), table)]));
    let c = PipelineConfig::from_toml_str(GOOD).expect("good");
    let a = registry
        .assemble(&c, &MapEnv::new(), |b| b)
        .await
        .expect("assembled");
    let summary = a.pipeline.run_once().await.expect("run");
    // Three streams read the same table: one record each, one delivery each.
    assert_eq!(summary.deliveries.delivered, 3);
    let d = a
        .pipeline
        .store()
        .deliveries(&crate::audit::DeliveryFilter::default())
        .await
        .expect("deliveries");
    assert!(
        d.iter()
            .all(|d| d.destination.to_string() == "chat:C0OPS0001"),
        "{d:?}"
    );
}

#[test]
fn pipeline_builder_reports_the_first_error() {
    let sink = std::sync::Arc::new(crate::memory::MemorySink::new("x"));
    let err = crate::Pipeline::builder()
        .sink("first", sink.clone())
        .sink("first", sink.clone())
        .sink("second", sink.clone())
        .sink("second", sink)
        .build()
        .expect_err("twice");
    assert!(err.to_string().contains("`first`"), "{err}");
}

#[test]
fn the_receivers_address_may_come_from_the_environment() {
    let with = |listen: &str| {
        PipelineConfig::from_toml_str(&format!("{GOOD}\n[receivers]\nlisten = \"{listen}\"\n"))
    };
    let c = with("${ML_LISTEN:-127.0.0.1:8080}").expect("deferred to the environment");
    let r = c.receivers.as_ref().expect("receivers");
    assert_eq!(
        r.listen_addr(&MapEnv::new()).expect("default").to_string(),
        "127.0.0.1:8080"
    );
    assert_eq!(
        r.listen_addr(&MapEnv::from([("ML_LISTEN", "0.0.0.0:9")]))
            .expect("set")
            .to_string(),
        "0.0.0.0:9"
    );
    let e = r
        .listen_addr(&MapEnv::from([("ML_LISTEN", "localhost")]))
        .expect_err("not an address");
    assert!(
        matches!(&e, Error::Config { key, message } if key == "receivers.listen" && message.contains("localhost")),
        "{e}"
    );
    // A literal is still checked when the file is read, and written back as it was.
    let e = with("nowhere").expect_err("literal checked at once");
    assert!(
        matches!(&e, Error::Config { key, .. } if key == "receivers.listen"),
        "{e}"
    );
    assert!(
        c.to_toml_string()
            .expect("toml")
            .contains("${ML_LISTEN:-127.0.0.1:8080}")
    );
}

#[test]
fn the_twilio_receiver_serves_the_path_twilio_is_given_unless_told_otherwise() {
    let parse = |extra: &str| {
        let text = format!(
            "listen = \"127.0.0.1:0\"\n[twilio]\nauth_token = \"t\"\n\
             public_url = \"${{TWILIO_STATUS_CALLBACK_URL}}\"\n{extra}"
        );
        let c: super::pipeline::ReceiversConfig = toml::from_str(&text).expect("receivers");
        c.twilio.expect("twilio")
    };
    let implied = parse("");
    assert_eq!(
        implied.path_for("https://hooks.example.com/erp/sms-status"),
        "/erp/sms-status"
    );
    assert_eq!(
        implied.path_for("https://hooks.example.com"),
        "/twilio/status",
        "no path in the public URL"
    );
    assert_eq!(
        implied.path_for("https://hooks.example.com/"),
        "/twilio/status"
    );
    let explicit = parse("path = \"/behind/proxy\"");
    assert_eq!(
        explicit.path_for("https://hooks.example.com/erp/sms-status"),
        "/behind/proxy"
    );
}

#[test]
fn start_at_is_a_time_now_or_a_span_back() {
    use super::pipeline::parse_start_at;
    let now: jiff::Timestamp = "2026-12-04T12:00:00Z".parse().expect("now");
    let at = |s: &str| parse_start_at(s, now).map(|t| t.to_string());
    assert_eq!(
        at("2026-01-01T00:00:00Z").as_deref(),
        Ok("2026-01-01T00:00:00Z")
    );
    assert_eq!(at("now").as_deref(), Ok("2026-12-04T12:00:00Z"));
    assert_eq!(at("7d ago").as_deref(), Ok("2026-11-27T12:00:00Z"));
    assert_eq!(at("-12h").as_deref(), Ok("2026-12-04T00:00:00Z"));
    assert_eq!(at("1 week ago").as_deref(), Ok("2026-11-27T12:00:00Z"));
    for bad in ["yesterday", "7d", "", "-x"] {
        let e = at(bad).expect_err(bad);
        assert!(e.contains("span back"), "{bad}: {e}");
    }
    // In a file: a span back is taken from when the file is loaded.
    let c = PipelineConfig::from_toml_str(
        r#"
        [journal]
        url = "memory:"
        [sources.s]
        connector = "memory"
        [[streams]]
        name = "a"
        source = "s"
        schedule = { every = "5m" }
        start_at = "1h ago"
        "#,
    )
    .expect("parse");
    let start = c.streams[0].start_at.expect("start_at");
    let back = start.duration_until(jiff::Timestamp::now());
    assert!(back >= jiff::SignedDuration::from_mins(59), "{back:?}");
    assert!(back <= jiff::SignedDuration::from_mins(61), "{back:?}");
}

/// `sandbox = "auto"` runs a section against its emulator only when nothing of it points
/// at a real system: a variable with a default set (`SLACK_API_URL` alone), or a stored
/// credential named, makes it real (and then every variable it requires must be set).
#[test]
fn any_variable_or_credential_makes_a_section_real() {
    use super::pipeline::{SandboxMode, SettingValue, Settings, use_sandbox};
    let settings: Settings = [
        (
            "bot_token".to_owned(),
            SettingValue::Text("${SLACK_BOT_TOKEN}".into()),
        ),
        (
            "api_url".to_owned(),
            SettingValue::Text("${SLACK_API_URL:-https://slack.com/api/}".into()),
        ),
    ]
    .into();
    let auto = |env: &MapEnv| use_sandbox("sinks.slack", SandboxMode::Auto, &settings, env);
    assert!(auto(&MapEnv::default()).expect("none set"));
    assert!(!auto(&MapEnv::from([("SLACK_BOT_TOKEN", "xoxb-1")])).expect("token set"));
    let url_only = auto(&MapEnv::from([(
        "SLACK_API_URL",
        "https://slack.example/api/",
    )]))
    .expect_err("a real URL without its token");
    assert!(
        url_only.to_string().contains("SLACK_BOT_TOKEN"),
        "{url_only}"
    );
    let stored: Settings = [(
        "bot_token".to_owned(),
        SettingValue::Text("${credential:slack.bot_token}".into()),
    )]
    .into();
    assert!(
        !use_sandbox(
            "sinks.slack",
            SandboxMode::Auto,
            &stored,
            &MapEnv::default()
        )
        .expect("credential"),
        "a stored credential is a real system (missing, it is an error, not a sandbox)"
    );
}
