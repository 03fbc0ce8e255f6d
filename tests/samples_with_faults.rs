//! Every sample file that posts to Slack, unedited, run by the real binary the way an
//! operator points it at their systems: the ERP's URL and credentials and Slack's from the
//! environment, channels with ids nobody configured (the files name `#procurement`,
//! `#finance`, ...), and faults on both sides (the ERP: 503 storms, slow answers, a Basis
//! cap below the configured one; Slack: a 500, a dropped connection, an answer lost after
//! the post was applied, and a 429 with Retry-After). Each sample runs twice, as an
//! operator's schedule would: the first rides out the faults, the second finds nothing
//! new and nothing left to send. Afterwards: every planned message posted exactly once,
//! the journal all delivered, and Slack never rate-limited us on its own (only the
//! injected 429).
#![cfg(all(
    feature = "cli",
    feature = "sandbox",
    feature = "store",
    feature = "slack"
))]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::process::{Command, Output};
use std::time::Duration;

use ml_sandbox::emulator::Emulator;
use ml_sandbox::fault::{Fault, FaultRule};
use ml_sandbox::slack::{Channel, SlackEmulator};

/// A sample file of this repository.
fn sample(name: &str) -> String {
    format!("{}/examples/config/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A Slack workspace with the given public channels (`name`, made-up id).
async fn workspace(channels: &[(&str, &str)]) -> SlackEmulator {
    let mut b = SlackEmulator::builder();
    for (name, id) in channels {
        b = b.channel(Channel::public(*name).with_id(*id));
    }
    b.start().await.expect("slack")
}

/// The main sample's three channels, with these made-up ids.
async fn main_channels(ids: [&str; 3]) -> SlackEmulator {
    workspace(&[
        ("procurement", ids[0]),
        ("finance", ids[1]),
        ("operations", ids[2]),
    ])
    .await
}

/// A Slack workspace with the given channels (`name`, made-up id) and the four faults,
/// each on a later post.
async fn slack_with_faults(channels: &[(&str, &str)]) -> SlackEmulator {
    let slack = workspace(channels).await;
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
    slack
}

/// Runs `ml-connector` with exactly `env` (and `PATH`).
async fn cli(env: &BTreeMap<String, String>, args: Vec<String>) -> Output {
    let env = env.clone();
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

fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs `sample` twice with exactly `env` (the first rides out the faults, the second finds
/// nothing new and nothing left), checks that no run fell back to a sandbox, that nothing
/// secret was printed or logged and that nothing is left pending, retrying or in flight.
/// Returns what the runs printed and `audit list`.
async fn run_twice_then_list(sample: &str, env: &BTreeMap<String, String>) -> (String, String) {
    let mut outputs = Vec::new();
    for _ in 0..2 {
        let o = cli(env, args(&["run", "--config", sample, "--once"])).await;
        let out = text(&o);
        assert!(o.status.success(), "{out}");
        assert!(!out.contains("sandbox"), "ran against a sandbox:\n{out}");
        outputs.push(out);
    }
    let all = outputs.join("\n");
    assert_no_secret(env, &all);
    let o = cli(env, args(&["audit", "--config", sample, "list"])).await;
    let listed = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{}", text(&o));
    for bad in ["pending", "retrying", "in_flight"] {
        assert!(
            !listed.lines().any(|l| l.contains(&format!(" {bad} "))),
            "{bad} left in the journal:\n{listed}\n{all}"
        );
    }
    (all, listed)
}

/// An SAP ECC whose Basis team allows 2 RFC sessions (the samples say 5: calls over the
/// cap answer SYSTEM_FAILURE), with its demo data.
#[cfg(feature = "sap-ecc")]
async fn sap_with_a_tight_cap() -> ml_sandbox::sap_ecc::SapEccEmulator {
    let sap = ml_sandbox::sap_ecc::SapEccEmulator::builder()
        .max_sessions(2)
        .start()
        .await
        .expect("sap");
    sap.load_traps();
    sap
}

/// Runs `sample` twice against the systems `env` points at (plus Slack and a new journal),
/// then checks the journal and what Slack holds in `channel_ids`. Returns the number of
/// messages posted.
async fn run_and_check(
    sample: &str,
    mut env: BTreeMap<String, String>,
    slack: &SlackEmulator,
    channel_ids: &[&str],
) -> usize {
    let dir = tempfile::tempdir().expect("dir");
    for (k, v) in slack.env() {
        env.insert(k.to_owned(), v);
    }
    env.insert(
        "ML_AUDIT_DB".into(),
        dir.path().join("audit.db").to_string_lossy().into_owned(),
    );
    let (all, listed) = run_twice_then_list(sample, &env).await;
    // The operator's `check` agrees: every stream, sink and the journal answer.
    let o = cli(&env, args(&["check", "--config", sample])).await;
    let checked = text(&o);
    assert!(o.status.success(), "{checked}");
    assert!(!checked.contains("FAILED"), "{checked}");
    assert!(
        !listed.lines().any(|l| l.contains(" failed ")),
        "failed deliveries:\n{listed}\n{all}"
    );
    // Every delivery the journal holds is one post, and no post is there twice.
    let delivered = listed.lines().filter(|l| l.contains(" delivered ")).count();
    let mut seen = HashSet::new();
    let mut posted = 0;
    for id in channel_ids {
        for m in slack.messages(id) {
            posted += 1;
            assert!(
                seen.insert((*id, m.text.clone())),
                "posted twice in {id}: {}",
                m.text
            );
        }
    }
    assert_eq!(posted, delivered, "{listed}\n{all}");
    assert_eq!(
        slack.faults().pending_rules(),
        0,
        "a Slack fault was never met:\n{all}"
    );
    assert_eq!(
        slack.faults().status_count("chat.postMessage", 429),
        1,
        "only the injected 429:\n{all}"
    );
    assert_eq!(slack.rate_limited_count(), 0, "{all}");
    posted
}

/// No secret of `env` (tokens, secrets, passwords, keys) shows in what the binary printed
/// or logged.
fn assert_no_secret(env: &BTreeMap<String, String>, printed: &str) {
    for (name, value) in env {
        let secret = ["TOKEN", "SECRET", "PASSWORD", "_KEY"]
            .iter()
            .any(|s| name.contains(s));
        if secret && value.len() >= 8 {
            assert!(
                !printed.contains(value.as_str()),
                "{name} was printed or logged:\n{printed}"
            );
        }
    }
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| (*s).to_owned()).collect()
}

fn env_of(pairs: Vec<(&'static str, String)>) -> BTreeMap<String, String> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// The environment pointing the Oracle sample at `oracle`.
#[cfg(feature = "oracle-fusion")]
fn oracle_env(oracle: &ml_sandbox::oracle::OracleEmulator) -> BTreeMap<String, String> {
    env_of(vec![
        ("ORACLE_FUSION_URL", oracle.base_url().to_owned()),
        ("ORACLE_FUSION_TOKEN_URL", oracle.token_url()),
        ("ORACLE_FUSION_CLIENT_ID", oracle.client_id().to_string()),
        (
            "ORACLE_FUSION_CLIENT_SECRET",
            oracle.client_secret().to_string(),
        ),
    ])
}

/// [`oracle_env`] plus Slack's and a new journal in `dir`.
#[cfg(feature = "oracle-fusion")]
fn oracle_and_slack_env(
    oracle: &ml_sandbox::oracle::OracleEmulator,
    slack: &SlackEmulator,
    dir: &std::path::Path,
) -> BTreeMap<String, String> {
    let mut env = oracle_env(oracle);
    env.extend(env_of(slack.env()));
    env.insert(
        "ML_AUDIT_DB".into(),
        dir.join("audit.db").to_string_lossy().into_owned(),
    );
    env
}

/// The main sample run once (`run --once`) against `oracle` and `slack` with a new
/// journal in `dir`: its environment, the sample's path, and what it printed.
#[cfg(feature = "oracle-fusion")]
async fn main_sample_once(
    oracle: &ml_sandbox::oracle::OracleEmulator,
    slack: &SlackEmulator,
    dir: &std::path::Path,
) -> (BTreeMap<String, String>, String, Output, String) {
    let env = oracle_and_slack_env(oracle, slack, dir);
    let sample = sample("oracle_fusion_to_slack.toml");
    let o = cli(&env, args(&["run", "--config", &sample, "--once"])).await;
    let out = text(&o);
    (env, sample, o, out)
}

#[cfg(feature = "oracle-fusion")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_main_sample_delivers_everything_once_through_faults() {
    use ml_sandbox::oracle::OracleEmulator;
    let oracle = OracleEmulator::start().await.expect("oracle");
    ml_connector::connectors::demo::seed(&oracle);
    oracle
        .faults()
        .push(FaultRule::on("invoices", Fault::Status(503)).times(2));
    oracle
        .faults()
        .push(FaultRule::on("purchaseOrders", Fault::Latency(Duration::from_millis(800))).times(2));
    let ids = ["C0MADEUP01", "C0MADEUP02", "C0MADEUP03"];
    let slack = slack_with_faults(&[
        ("procurement", ids[0]),
        ("finance", ids[1]),
        ("operations", ids[2]),
    ])
    .await;
    let env = oracle_env(&oracle);
    let posted = run_and_check(&sample("oracle_fusion_to_slack.toml"), env, &slack, &ids).await;
    assert!(posted >= 10, "{posted}");
    for id in ids {
        assert!(!slack.messages(id).is_empty(), "nothing in {id}");
    }
    assert_eq!(oracle.faults().pending_rules(), 0);
}

#[cfg(feature = "sap-ecc")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sap_ecc_sample_delivers_everything_once_through_faults() {
    // Over the Basis team's cap, and the SOAP service itself fails twice and is slow twice.
    let sap = sap_with_a_tight_cap().await;
    sap.core()
        .faults()
        .push(FaultRule::on("rfc", Fault::Status(503)).after(3).times(2));
    sap.core()
        .faults()
        .push(FaultRule::on("rfc", Fault::Latency(Duration::from_millis(500))).times(2));
    let ids = ["C0MADEUP11", "C0MADEUP12", "C0MADEUP13"];
    let slack = slack_with_faults(&[
        ("procurement", ids[0]),
        ("accounting", ids[1]),
        ("finance", ids[2]),
    ])
    .await;
    let posted = run_and_check(
        &sample("sap_ecc_to_slack.toml"),
        env_of(sap.env()),
        &slack,
        &ids,
    )
    .await;
    assert!(posted >= 3, "{posted}");
    assert_eq!(sap.core().faults().pending_rules(), 0);
}

/// The Sage X3 sample against an X3 reached as `env` says (on premises with a Syracuse
/// user, or X3 Cloud with a pairing), with 503s and slow answers.
#[cfg(feature = "sage-x3")]
async fn sage_x3_sample(cloud: bool) {
    use ml_sandbox::sage_x3::SageX3Emulator;
    let x3 = SageX3Emulator::start().await.expect("x3");
    x3.load_demo();
    x3.faults()
        .push(FaultRule::on("PINVOICE", Fault::Status(503)).times(2));
    x3.faults()
        .push(FaultRule::on("PORDER", Fault::Latency(Duration::from_millis(500))).times(2));
    let ids = ["C0MADEUP21", "C0MADEUP22"];
    let slack = slack_with_faults(&[("procurement", ids[0]), ("finance", ids[1])]).await;
    let env = if cloud {
        let mut env = env_of(x3.cloud_env());
        // The rotating refresh token is kept in the journal's encrypted credential table.
        env.insert(
            "ML_MASTER_KEY".into(),
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into(),
        );
        env
    } else {
        env_of(x3.env())
    };
    let posted = run_and_check(&sample("sage_x3_to_slack.toml"), env, &slack, &ids).await;
    assert!(posted >= 3, "{posted}");
    assert_eq!(x3.faults().pending_rules(), 0);
}

#[cfg(feature = "sage-x3")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sage_x3_sample_delivers_everything_once_through_faults_on_premises() {
    sage_x3_sample(false).await;
}

#[cfg(feature = "sage-x3")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sage_x3_sample_delivers_everything_once_through_faults_in_the_cloud() {
    sage_x3_sample(true).await;
}

#[cfg(feature = "ifs")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ifs_sample_delivers_everything_once_through_faults() {
    use ml_sandbox::ifs::IfsEmulator;
    let ifs = IfsEmulator::start().await.expect("ifs");
    ifs.seed_demo().expect("demo data");
    ifs.faults()
        .push(FaultRule::on("ManSuppInvoiceSet", Fault::Status(503)).times(2));
    ifs.faults().push(
        FaultRule::on(
            "PurchaseOrderSet",
            Fault::Latency(Duration::from_millis(500)),
        )
        .times(2),
    );
    let ids = ["C0MADEUP31", "C0MADEUP32"];
    let slack = slack_with_faults(&[("procurement", ids[0]), ("finance", ids[1])]).await;
    let posted = run_and_check(
        &sample("ifs_to_slack.toml"),
        env_of(ifs.env()),
        &slack,
        &ids,
    )
    .await;
    assert!(posted >= 3, "{posted}");
    assert_eq!(ifs.faults().pending_rules(), 0);
}

/// The SAP ECC -> Twilio SMS / SendGrid email sample against SAP, Twilio and SendGrid
/// emulators: Twilio fails a send before taking it, drops a connection, and loses the
/// answer to a send it took (in doubt: reconciled by listing messages, never sent twice);
/// SendGrid rate-limits once and fails once before taking a mail (it has no lookup, so a
/// mail in doubt would be sent again: that fault is left out here, as documented).
#[cfg(all(feature = "sap-ecc", feature = "twilio"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sap_ecc_to_twilio_sample_sends_every_sms_once_through_faults() {
    use ml_sandbox::sendgrid::SendGridEmulator;
    use ml_sandbox::twilio::TwilioEmulator;
    let sap = sap_with_a_tight_cap().await;
    let twilio = TwilioEmulator::start().await.expect("twilio");
    for fault in [
        Fault::Status(500),
        Fault::DropBeforeResponse,
        Fault::AppliedThenDropped,
        Fault::TooManyRequests { retry_after: 1 },
    ] {
        twilio
            .faults()
            .push(FaultRule::on("Messages.json", fault).after(1).times(1));
    }
    let sendgrid = SendGridEmulator::start().await.expect("sendgrid");
    for fault in [
        Fault::TooManyRequests { retry_after: 1 },
        Fault::Status(503),
    ] {
        sendgrid
            .faults()
            .push(FaultRule::on("send", fault).times(1));
    }
    let dir = tempfile::tempdir().expect("dir");
    let mut env = env_of(sap.env());
    env.extend(env_of(twilio.env()));
    env.extend(env_of(sendgrid.env()));
    for (k, v) in [
        ("TWILIO_FROM", "+15005550006".to_owned()),
        (
            "TWILIO_STATUS_CALLBACK_URL",
            "https://hooks.example.com/twilio/status".to_owned(),
        ),
        ("SENDGRID_FROM", "erp@example.com".to_owned()),
        ("SENDGRID_WEBHOOK_PUBLIC_KEY", sendgrid.public_key()),
        ("ML_LISTEN", "127.0.0.1:0".to_owned()),
        (
            "ML_AUDIT_DB",
            dir.path().join("audit.db").to_string_lossy().into_owned(),
        ),
    ] {
        env.insert(k.to_owned(), v);
    }
    let sample = sample("sap_ecc_to_twilio.toml");
    let (all, listed) = run_twice_then_list(&sample, &env).await;
    // Every SMS the journal delivered went out once; no text went twice to one number.
    let sms = twilio.messages();
    let mut seen = HashSet::new();
    for m in &sms {
        assert!(
            seen.insert((m.to.clone(), m.body.clone())),
            "sent twice to {}: {}",
            m.to,
            m.body
        );
    }
    let delivered_sms = listed
        .lines()
        .filter(|l| l.contains(" delivered ") && l.contains("sms:"))
        .count();
    assert!(delivered_sms >= 1, "{listed}\n{all}");
    assert_eq!(sms.len(), delivered_sms, "{listed}\n{all}");
    let delivered_mail = listed
        .lines()
        .filter(|l| l.contains(" delivered ") && l.contains("email:"))
        .count();
    assert!(delivered_mail >= 1, "{listed}\n{all}");
    assert_eq!(sendgrid.mails().len(), delivered_mail, "{listed}\n{all}");
    assert_eq!(twilio.faults().pending_rules(), 0, "{all}");
    assert_eq!(sendgrid.faults().pending_rules(), 0, "{all}");
}

/// Permanent errors stay where they belong: Oracle refuses one resource (403: the role
/// lacks it) and Slack has no `#operations` channel. The payments stream is paused with its
/// reason, the messages for `#operations` fail with theirs, and every other stream and
/// channel delivers, in one pass, without a retry loop.
#[cfg(feature = "oracle-fusion")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_errors_stop_only_what_they_affect() {
    use ml_sandbox::oracle::OracleEmulator;
    let oracle = OracleEmulator::start().await.expect("oracle");
    ml_connector::connectors::demo::seed(&oracle);
    oracle
        .faults()
        .push(FaultRule::on("payablesPayments", Fault::Status(403)).always());
    let ids = ["C0MADEUP41", "C0MADEUP42"];
    let slack = workspace(&[("procurement", ids[0]), ("finance", ids[1])]).await;
    let dir = tempfile::tempdir().expect("dir");
    let (env, sample, o, out) = main_sample_once(&oracle, &slack, dir.path()).await;
    // It ran to the end, and tells cron it left work that needs someone.
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("attention: ")
            && l.contains("1 stream cycle(s) failed, are paused or were not polled")
            && l.contains("2 delivery(ies) failed")),
        "{out}"
    );
    assert_no_secret(&env, &out);
    // The refused resource is named with its reason; one request, no retry loop.
    assert!(
        out.lines()
            .any(|l| l.starts_with("cycle error: payments:") && l.contains("403")),
        "{out}"
    );
    assert_eq!(
        oracle.faults().status_count("payablesPayments", 403),
        1,
        "{out}"
    );
    // The operator's log (stderr, warnings by default) says what failed and why.
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(
        log.lines().any(|l| l.contains("WARN")
            && l.contains("delivery failed")
            && l.contains("channel_not_found")),
        "{log}"
    );
    let o = cli(&env, args(&["audit", "--config", &sample, "list"])).await;
    let listed = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{}", text(&o));
    let failed: Vec<&str> = listed.lines().filter(|l| l.contains(" failed ")).collect();
    assert!(!failed.is_empty(), "{listed}");
    for l in &failed {
        assert!(
            l.contains("slack:#operations")
                && l.contains("channel_not_found")
                && l.contains("check the name or id"),
            "only #operations fails, with its reason and what to do: {l}\n{listed}"
        );
    }
    for bad in ["pending", "retrying", "in_flight"] {
        assert!(
            !listed.lines().any(|l| l.contains(&format!(" {bad} "))),
            "{bad} left:\n{listed}"
        );
    }
    // Every other stream and channel went through.
    let delivered = listed.lines().filter(|l| l.contains(" delivered ")).count();
    let posted: usize = ids.iter().map(|id| slack.messages(id).len()).sum();
    assert_eq!(posted, delivered, "{listed}");
    for id in ids {
        assert!(!slack.messages(id).is_empty(), "nothing in {id}\n{listed}");
    }
    for stream in [
        "invoices",
        "journal-batches",
        "suppliers",
        "receivables-invoices",
    ] {
        assert!(
            listed
                .lines()
                .any(|l| l.contains(" delivered ") && l.contains(&format!(" {stream} "))),
            "{stream} delivered nothing:\n{listed}"
        );
    }
    // The operator narrows the list down: by status, destination, stream, time, count.
    let rows = |out: &Output| -> Vec<String> {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(" delivered ") || l.contains(" failed "))
            .map(str::to_owned)
            .collect()
    };
    let list = |extra: &[&str]| {
        let mut a = vec!["audit", "--config", sample.as_str(), "list"];
        a.extend_from_slice(extra);
        cli(&env, args(&a))
    };
    let failed_rows = rows(&list(&["failed"]).await);
    assert_eq!(failed_rows.len(), failed.len(), "{failed_rows:#?}");
    let operations = rows(&list(&["--destination", "slack:#operations"]).await);
    assert!(
        !operations.is_empty() && operations.iter().all(|l| l.contains(" failed ")),
        "{operations:#?}"
    );
    let two = rows(&list(&["--stream", "invoices", "--limit", "2", "--since", "1h"]).await);
    assert_eq!(two.len(), 2, "{two:#?}");
    assert!(two.iter().all(|l| l.contains(" invoices ")), "{two:#?}");
    let o = list(&["--destination", "operations"]).await;
    assert!(!o.status.success());
    assert!(text(&o).contains("--destination"), "{}", text(&o));
    // (These post to the same Slack again, from new journals, while #operations is missing.)
    // ML_LOG sets the level; a value that is not one is refused by name.
    let mut quiet = env.clone();
    quiet.insert("ML_LOG".into(), "error".into());
    // A new journal: the same failures happen again, and are not logged at this level.
    quiet.insert(
        "ML_AUDIT_DB".into(),
        dir.path().join("quiet.db").to_string_lossy().into_owned(),
    );
    let o = cli(&quiet, args(&["run", "--config", &sample, "--once"])).await;
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        text(&o).contains("failed 2"),
        "the same failures: {}",
        text(&o)
    );
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("WARN"),
        "{}",
        text(&o)
    );
    // One JSON object a line for log collectors, with the event's fields.
    let mut json = env.clone();
    json.insert("ML_LOG_FORMAT".into(), "json".into());
    json.insert(
        "ML_AUDIT_DB".into(),
        dir.path().join("json.db").to_string_lossy().into_owned(),
    );
    let o = cli(&json, args(&["run", "--config", &sample, "--once"])).await;
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["level"] == "WARN"
            && l["message"] == "delivery failed"
            && l["error"]
                .as_str()
                .is_some_and(|e| e.contains("channel_not_found"))
            && l["spans"]
                .as_array()
                .is_some_and(|s| s.iter().any(|x| x["name"] == "delivery"
                    && x["fields"]
                        .as_str()
                        .is_some_and(|f| f.contains("slack:#operations"))))),
        "{lines:#?}"
    );
    quiet.insert("ML_LOG".into(), "loud".into());
    let o = cli(&quiet, args(&["run", "--config", &sample, "--once"])).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("ML_LOG"), "{}", text(&o));
    // The operator creates #operations and replays just its failures: they go out once.
    let ops = slack.add_channel(Channel::public("operations"));
    let o = cli(
        &env,
        args(&[
            "audit",
            "--config",
            &sample,
            "replay-failed",
            "--stream",
            "no-such-stream",
        ]),
    )
    .await;
    assert!(text(&o).contains("0 failed deliveries"), "{}", text(&o));
    let o = cli(
        &env,
        args(&[
            "audit",
            "--config",
            &sample,
            "replay-failed",
            "--destination",
            "slack:#operations",
        ]),
    )
    .await;
    assert!(
        text(&o).contains(&format!("{} failed deliveries", failed.len())),
        "{}",
        text(&o)
    );
    let o = cli(&env, args(&["run", "--config", &sample, "--once"])).await;
    // Payments are still refused: only that stream needs attention now.
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        text(&o).contains("attention: 1 stream cycle(s) failed, are paused or were not polled\n"),
        "{}",
        text(&o)
    );
    assert_eq!(slack.messages(&ops).len(), failed.len(), "{}", text(&o));
    assert!(rows(&list(&["failed"]).await).is_empty());
}

/// A real ERP with the sink's variables forgotten: its records would be "delivered" into
/// the in-process Slack and lost. The file is refused, naming the sink, before anything is
/// read or journaled.
#[cfg(feature = "oracle-fusion")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_source_never_delivers_into_a_sandboxed_sink() {
    use ml_sandbox::oracle::OracleEmulator;
    let oracle = OracleEmulator::start().await.expect("oracle");
    ml_connector::connectors::demo::seed(&oracle);
    main_sample_refused(
        oracle_env(&oracle),
        &["sinks.slack", "`sources.oracle` reads a real system"],
    )
    .await;
    assert_eq!(oracle.collection_calls(), 0, "nothing read");
}

/// `check` and `run --once` of the main sample with exactly `env` (and a new journal) are
/// refused before anything runs, saying all of `said`.
async fn main_sample_refused(mut env: BTreeMap<String, String>, said: &[&str]) {
    let dir = tempfile::tempdir().expect("dir");
    env.insert(
        "ML_AUDIT_DB".into(),
        dir.path().join("audit.db").to_string_lossy().into_owned(),
    );
    let sample = sample("oracle_fusion_to_slack.toml");
    for command in ["check", "run"] {
        let mut a = vec![command, "--config", sample.as_str()];
        if command == "run" {
            a.push("--once");
        }
        let o = cli(&env, args(&a)).await;
        let out = text(&o);
        assert_eq!(o.status.code(), Some(1), "{command}: {out}");
        assert!(said.iter().all(|s| out.contains(s)), "{command}: {out}");
        assert!(!out.contains("summary:"), "{command}: {out}");
    }
}

/// The reverse mistake: Slack's variables set, the ERP's forgotten (or misspelt). The
/// sandbox's demo invoices must not be posted into the real workspace: refused, naming the
/// source, before anything is sent.
#[cfg(feature = "oracle-fusion")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_data_is_never_sent_to_a_real_sink() {
    let slack = main_channels(["C0MADEUP91", "C0MADEUP92", "C0MADEUP93"]).await;
    main_sample_refused(
        env_of(slack.env()),
        &["sources.oracle", "`sinks.slack` is real"],
    )
    .await;
    assert_eq!(slack.faults().requests("chat.postMessage"), 0);
}

/// A revoked Slack token fails nothing (each message would need a replay): the deliveries
/// are held, `run --once` says so and exits 3 for the scheduler, and the journal note names
/// the destination; the token never shows.
#[cfg(feature = "oracle-fusion")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_holds_the_deliveries_and_the_run_says_so() {
    use ml_sandbox::oracle::OracleEmulator;
    let oracle = OracleEmulator::start().await.expect("oracle");
    ml_connector::connectors::demo::seed(&oracle);
    let ids = ["C0MADEUP51", "C0MADEUP52", "C0MADEUP53"];
    let slack = main_channels(ids).await;
    slack.faults().push(
        FaultRule::on(
            "chat.postMessage",
            Fault::StatusWithBody {
                status: 200,
                content_type: "application/json".into(),
                body: r#"{"ok":false,"error":"token_revoked"}"#.into(),
            },
        )
        .always(),
    );
    let dir = tempfile::tempdir().expect("dir");
    let (env, sample, o, out) = main_sample_once(&oracle, &slack, dir.path()).await;
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("attention: ")
            && l.contains("held: a destination refused our credentials")
            && !l.contains("failed")),
        "{out}"
    );
    assert!(out.contains(", failed 0"), "{out}");
    assert_no_secret(&env, &out);
    for id in ids {
        assert!(slack.messages(id).is_empty(), "posted with a revoked token");
    }
    let o = cli(&env, args(&["audit", "--config", &sample, "notes"])).await;
    let notes = text(&o);
    assert!(o.status.success(), "{notes}");
    assert!(
        notes.contains("destination_held") && notes.contains("token_revoked"),
        "{notes}"
    );
    assert_no_secret(&env, &notes);
    // The operator fixes the token and runs again at once: the held deliveries go out in
    // this run (not after the slow pause), and it ends clean.
    slack.faults().clear();
    let o = cli(&env, args(&["run", "--config", &sample, "--once"])).await;
    let again = text(&o);
    assert_eq!(o.status.code(), Some(0), "{again}");
    let posted: usize = ids.iter().map(|id| slack.messages(id).len()).sum();
    let o = cli(&env, args(&["audit", "--config", &sample, "list"])).await;
    let listed = String::from_utf8_lossy(&o.stdout).into_owned();
    let delivered = listed.lines().filter(|l| l.contains(" delivered ")).count();
    assert!(posted > 0, "{again}");
    assert_eq!(posted, delivered, "{listed}\n{again}");
    assert!(
        !listed
            .lines()
            .any(|l| l.contains(" retrying ") || l.contains(" pending ")),
        "{listed}\n{again}"
    );
    // The hold's notes are history now: counted as resolved, not shown as open warnings.
    assert!(listed.contains("of them since resolved"), "{listed}");
    assert!(
        !listed.lines().any(|l| l.contains("destination_held")),
        "{listed}"
    );
}

/// `run` as a service: a stream refused permanently is named as paused, with its reason,
/// in every progress line, while the others go on; SIGTERM then stops it cleanly.
#[cfg(feature = "oracle-fusion")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_stream_is_named_in_the_progress_lines() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    use ml_sandbox::oracle::OracleEmulator;
    let oracle = OracleEmulator::start().await.expect("oracle");
    ml_connector::connectors::demo::seed(&oracle);
    oracle
        .faults()
        .push(FaultRule::on("payablesPayments", Fault::Status(403)).always());
    let slack = main_channels(["C0MADEUP51", "C0MADEUP52", "C0MADEUP53"]).await;
    let dir = tempfile::tempdir().expect("dir");
    let env = oracle_and_slack_env(&oracle, &slack, dir.path());
    let mut child = Command::new(env!("CARGO_BIN_EXE_ml-connector"))
        .args(["run", "--progress-secs", "1", "--config"])
        .arg(sample("oracle_fusion_to_slack.toml"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(&env)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let running = common::Running(child);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // A timeout, not a sleep: it ends at the first progress line naming the pause.
    let mut seen = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = rx.recv().await {
            let hit = line.starts_with("progress:") && line.contains("payments PAUSED (");
            seen.push(line.clone());
            if hit {
                return line;
            }
        }
        String::new()
    })
    .await;
    running.signal("TERM");
    let status = running.exited(Duration::from_secs(60)).await;
    let line = found.unwrap_or_else(|_| panic!("no progress line named the pause: {seen:#?}"));
    assert!(line.contains("403"), "{line}");
    assert!(!line.contains("invoices PAUSED"), "{line}");
    assert!(status.success(), "{status}");
    assert!(
        !slack.messages("C0MADEUP51").is_empty(),
        "the other streams went on: {seen:#?}"
    );
}

/// `run --once` sent SIGTERM (a cron job's timeout, `systemctl stop`) while a post is in
/// flight: the post finishes and is journaled, so nothing is left in doubt for the next run
/// to look up; the run exits 3 saying it was stopped, and the next run sends the rest,
/// every message once.
#[cfg(feature = "oracle-fusion")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_ends_a_once_run_after_the_sends_in_flight() {
    use std::io::Read;
    use std::process::Stdio;

    use ml_sandbox::oracle::OracleEmulator;
    let oracle = OracleEmulator::start().await.expect("oracle");
    ml_connector::connectors::demo::seed(&oracle);
    let ids = ["C0MADEUP61", "C0MADEUP62", "C0MADEUP63"];
    let slack = main_channels(ids).await;
    // The first post is slow: the signal comes while it is in flight.
    slack.faults().push(
        FaultRule::on(
            "chat.postMessage",
            Fault::Latency(Duration::from_millis(1500)),
        )
        .times(1),
    );
    let dir = tempfile::tempdir().expect("dir");
    let env = oracle_and_slack_env(&oracle, &slack, dir.path());
    let sample = sample("oracle_fusion_to_slack.toml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ml-connector"))
        .args(["run", "--once", "--config", &sample])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(&env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let printed = std::thread::spawn(move || {
        let (mut out, mut err) = (String::new(), String::new());
        let _ = stdout.read_to_string(&mut out);
        let _ = stderr.read_to_string(&mut err);
        format!("{out}\n{err}")
    });
    let running = common::Running(child);
    first_arrival(slack.faults(), "chat.postMessage").await;
    running.signal("TERM");
    let status = running.exited(Duration::from_secs(60)).await;
    let out = printed.join().expect("output");
    assert_eq!(status.code(), Some(3), "{out}");
    assert!(out.contains("attention: stopped by a signal"), "{out}");
    let o = cli(&env, args(&["audit", "--config", &sample, "list"])).await;
    let listed = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        !listed.lines().any(|l| l.contains(" in_flight ")),
        "a send was left in flight:\n{listed}\n{out}"
    );
    let posted_first: usize = ids.iter().map(|id| slack.messages(id).len()).sum();
    let delivered_first = listed.lines().filter(|l| l.contains(" delivered ")).count();
    assert!(posted_first >= 1, "{out}");
    assert_eq!(posted_first, delivered_first, "{listed}\n{out}");
    assert!(
        listed.lines().any(|l| l.contains(" pending ")),
        "the signal came before the end, yet nothing was left for the next run:\n{listed}"
    );

    let (all, listed) = run_twice_then_list(&sample, &env).await;
    let delivered = listed.lines().filter(|l| l.contains(" delivered ")).count();
    let mut seen = HashSet::new();
    for id in ids {
        for m in slack.messages(id) {
            assert!(
                seen.insert((id, m.text.clone())),
                "posted twice: {}",
                m.text
            );
        }
    }
    assert_eq!(seen.len(), delivered, "{listed}\n{all}");
    assert!(delivered > delivered_first, "{listed}");
    // Nothing was in doubt, so nothing had to be looked up in the channels' history.
    assert_eq!(slack.faults().requests("conversations.history"), 0, "{all}");
}

/// `check` looks at every channel the file sends to: one the workspace does not have is
/// a failed check naming it, before any run finds out by failing its messages.
#[cfg(feature = "oracle-fusion")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_a_channel_the_workspace_does_not_have() {
    use ml_sandbox::oracle::OracleEmulator;
    let oracle = OracleEmulator::start().await.expect("oracle");
    let slack = workspace(&[("procurement", "C0MADEUP71"), ("finance", "C0MADEUP72")]).await;
    let dir = tempfile::tempdir().expect("dir");
    let env = oracle_and_slack_env(&oracle, &slack, dir.path());
    let sample = sample("oracle_fusion_to_slack.toml");
    let o = cli(&env, args(&["check", "--config", &sample])).await;
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("FAILED  destination slack:#operations")
                && l.contains("channel_not_found")),
        "{out}"
    );
    assert!(
        out.contains("ok      destination slack:#finance: C0MADEUP72"),
        "{out}"
    );
    // A misspelt alias is named as one, with the sink's aliases.
    let typo = dir.path().join("typo.toml");
    let text_of = std::fs::read_to_string(&sample).expect("sample");
    assert!(
        text_of.contains("\"slack:finance\""),
        "the sample routes to slack:finance"
    );
    std::fs::write(
        &typo,
        text_of.replacen("\"slack:finance\"", "\"slack:finanse\"", 1),
    )
    .expect("write");
    let o = cli(
        &env,
        args(&["check", "--config", typo.to_str().expect("utf-8")]),
    )
    .await;
    let out = text(&o);
    assert!(
        out.lines()
            .any(|l| l.starts_with("FAILED  destination slack:finanse")
                && l.contains("`finanse` is not an alias of sinks.slack: ")),
        "{out}"
    );
    assert_eq!(slack.faults().requests("chat.postMessage"), 0, "{out}");
}

/// `run --once` of `sample` with exactly `env`, in the background, its output dropped.
fn spawn_once_quietly(env: &BTreeMap<String, String>, sample: &str) -> common::Running {
    let child = Command::new(env!("CARGO_BIN_EXE_ml-connector"))
        .args(["run", "--once", "--config", sample])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    common::Running(child)
}

/// Returns once a request to `target` has reached the emulator (a timeout of a minute,
/// not a sleep).
async fn first_arrival(faults: &ml_sandbox::fault::Faults, target: &str) {
    tokio::time::timeout(Duration::from_secs(60), faults.arrived(target, 1))
        .await
        .unwrap_or_else(|_| panic!("no request to {target} arrived"));
}

/// A `--once` run killed mid-send (`kill -9`, the OOM killer) and run again at once: the
/// dead run's claims hold their destinations until the lease runs out, so the second run
/// cannot send what waits behind them. It says so and exits 3, rather than 0 with nothing
/// sent (the take-over after the lease is the crash tests' part).
#[cfg(feature = "oracle-fusion")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_after_a_crash_names_the_claims_it_had_to_leave() {
    use ml_sandbox::oracle::OracleEmulator;
    let oracle = OracleEmulator::start().await.expect("oracle");
    ml_connector::connectors::demo::seed(&oracle);
    let slack = main_channels(["C0MADEUP81", "C0MADEUP82", "C0MADEUP83"]).await;
    slack
        .faults()
        .push(FaultRule::on("chat.postMessage", Fault::Latency(Duration::from_secs(30))).always());
    let dir = tempfile::tempdir().expect("dir");
    let env = oracle_and_slack_env(&oracle, &slack, dir.path());
    let sample = sample("oracle_fusion_to_slack.toml");
    let running = spawn_once_quietly(&env, &sample);
    first_arrival(slack.faults(), "chat.postMessage").await;
    // SIGKILL: nothing is journaled after this.
    drop(running);
    slack.faults().clear();
    let o = cli(&env, args(&["run", "--config", &sample, "--once"])).await;
    let out = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("attention: ")
            && l.contains("in flight under another process's claim")),
        "{out}"
    );
}

/// A channel misnamed in the file: its messages fail (channel_not_found), the others go
/// out. Once the file names the right channel, `audit replay-failed` says the failed ones
/// still carry the old address, and `--to` sends them to the new one, once each.
#[cfg(feature = "oracle-fusion")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_messages_follow_a_corrected_channel_with_replay_to() {
    use ml_sandbox::oracle::OracleEmulator;
    let oracle = OracleEmulator::start().await.expect("oracle");
    ml_connector::connectors::demo::seed(&oracle);
    // The workspace calls the operations channel #ops-alerts.
    let slack = workspace(&[
        ("procurement", "C0MADEUPD1"),
        ("finance", "C0MADEUPD2"),
        ("ops-alerts", "C0MADEUPD3"),
    ])
    .await;
    let dir = tempfile::tempdir().expect("dir");
    let (env, sample, o, out) = main_sample_once(&oracle, &slack, dir.path()).await;
    assert_eq!(o.status.code(), Some(3), "{out}");
    let failed = |config: &str| {
        let env = env.clone();
        let config = config.to_owned();
        async move {
            let o = cli(
                &env,
                args(&["audit", "--config", &config, "list", "failed"]),
            )
            .await;
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.contains(" failed "))
                .count()
        }
    };
    let stuck = failed(&sample).await;
    assert!(stuck > 0, "{out}");
    assert!(slack.messages("C0MADEUPD3").is_empty());
    let fixed = dir.path().join("fixed.toml");
    let original = std::fs::read_to_string(&sample).expect("read");
    let corrected = original.replace(
        "operations = \"#operations\"",
        "operations = \"#ops-alerts\"",
    );
    assert_ne!(corrected, original);
    std::fs::write(&fixed, corrected).expect("write");
    let fixed = fixed.to_string_lossy().into_owned();
    // A plain replay would send them to the old address again: it says so.
    let plain = cli(
        &env,
        args(&["audit", "--config", &fixed, "replay-failed", "--limit", "0"]),
    )
    .await;
    let said = text(&plain);
    assert!(plain.status.success(), "{said}");
    assert!(
        said.contains("no route of this file sends to slack:#operations any more")
            && said.contains("--destination slack:#operations --to <sink:address>"),
        "{said}"
    );
    let moved = cli(
        &env,
        args(&[
            "audit",
            "--config",
            &fixed,
            "replay-failed",
            "--destination",
            "slack:#operations",
            "--to",
            "slack:operations",
        ]),
    )
    .await;
    let said = text(&moved);
    assert!(moved.status.success(), "{said}");
    assert!(
        said.contains(&format!(
            "{stuck} failed deliveries are pending again, to slack:#ops-alerts"
        )),
        "{said}"
    );
    let o = cli(&env, args(&["run", "--config", &fixed, "--once"])).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(failed(&fixed).await, 0);
    assert_eq!(slack.messages("C0MADEUPD3").len(), stuck);
}

/// An ERP whose token endpoint does not answer: `check` reports it after `--timeout-secs`
/// instead of retrying for minutes, and still reports the rest.
#[cfg(feature = "oracle-fusion")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_a_system_that_does_not_answer_within_its_timeout() {
    use ml_sandbox::oracle::OracleEmulator;
    let oracle = OracleEmulator::start().await.expect("oracle");
    let slack = main_channels(["C0MADEUPC1", "C0MADEUPC2", "C0MADEUPC3"]).await;
    let dir = tempfile::tempdir().expect("dir");
    let mut env = oracle_and_slack_env(&oracle, &slack, dir.path());
    // Nothing listens there: every token fetch fails and is retried.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/token", closed.local_addr().expect("addr"));
    drop(closed);
    env.insert("ORACLE_FUSION_TOKEN_URL".into(), url);
    let sample = sample("oracle_fusion_to_slack.toml");
    let o = cli(
        &env,
        args(&["check", "--config", &sample, "--timeout-secs", "1"]),
    )
    .await;
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("FAILED  stream invoices:") && l.contains("no answer within 1s")),
        "{out}"
    );
    assert!(
        out.contains("ok      sink slack"),
        "the rest is still checked:\n{out}"
    );
    assert!(out.contains("ok      destination slack:"), "{out}");
}

/// `run --once` back to back (cron, a wrapper script, an operator pressing up-enter): the
/// second process's limiter is fresh, but Slack still counts the first one's posts. The
/// journal's last send per channel paces the second run's first post: no 429.
#[cfg(feature = "oracle-fusion")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_to_back_once_runs_post_at_the_channels_pace() {
    use ml_sandbox::oracle::{OracleEmulator, invoice_json};
    let oracle = OracleEmulator::start().await.expect("oracle");
    ml_connector::connectors::demo::seed(&oracle);
    let ids = ["C0MADEUPB1", "C0MADEUPB2", "C0MADEUPB3"];
    let slack = main_channels(ids).await;
    let dir = tempfile::tempdir().expect("dir");
    let (env, sample, o, out) = main_sample_once(&oracle, &slack, dir.path()).await;
    assert_eq!(o.status.code(), Some(0), "{out}");
    let first: usize = ids.iter().map(|id| slack.messages(id).len()).sum();
    // Two new invoices for every channel the first ones went to, at once.
    let t = jiff::Timestamp::from_second(1_767_600_000).expect("t")
        + jiff::SignedDuration::from_mins(30);
    oracle.upsert_raw(
        "invoices",
        &invoice_json(300_201, t, "64000.00", "Acme Industrial Supply"),
    );
    oracle.upsert_raw(
        "invoices",
        &invoice_json(300_202, t, "1200.00", "Nordic Freight AB"),
    );
    let o = cli(&env, args(&["run", "--config", &sample, "--once"])).await;
    let again = text(&o);
    assert_eq!(o.status.code(), Some(0), "{again}");
    let second: usize = ids.iter().map(|id| slack.messages(id).len()).sum();
    assert!(second > first, "nothing new was posted:\n{again}");
    assert_eq!(
        slack.rate_limited_count(),
        0,
        "a post came within a second of the previous run's last post to its channel:\n{out}\n{again}"
    );
}

/// SIGTERM while `run --once` is still polling (a page on its way from a slow ERP): the
/// stream's polling claim is given back, so a run started right after polls it (instead
/// of skipping it, silently, until the claim ran out).
#[cfg(feature = "oracle-fusion")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_during_polling_leaves_no_claim_on_the_stream() {
    use ml_sandbox::oracle::OracleEmulator;
    let oracle = OracleEmulator::start().await.expect("oracle");
    ml_connector::connectors::demo::seed(&oracle);
    oracle
        .faults()
        .push(FaultRule::on("invoices", Fault::Latency(Duration::from_secs(3))).times(1));
    let slack = main_channels(["C0MADEUPA1", "C0MADEUPA2", "C0MADEUPA3"]).await;
    let dir = tempfile::tempdir().expect("dir");
    let env = oracle_and_slack_env(&oracle, &slack, dir.path());
    let sample = sample("oracle_fusion_to_slack.toml");
    let running = spawn_once_quietly(&env, &sample);
    first_arrival(oracle.faults(), "invoices").await;
    running.signal("TERM");
    let status = running.exited(Duration::from_secs(60)).await;
    assert_eq!(status.code(), Some(3), "{status}");
    let o = cli(&env, args(&["run", "--config", &sample, "--once"])).await;
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("cycle invoices:"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(!line.contains("pages 0,"), "{line}");
}
