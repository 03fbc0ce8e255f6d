//! `ml-connector credentials`: values from stdin, encrypted in the journal, never shown; a
//! pipeline whose journal holds credentials refuses to start without the master key.
#![cfg(all(
    feature = "cli",
    feature = "oracle-fusion",
    feature = "slack",
    feature = "sandbox"
))]

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn cli(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ml-connector"));
    cmd.args(args)
        .env_remove("ML_MASTER_KEY")
        .env_remove("ML_MASTER_KEY_FILE")
        .env_remove("ML_MASTER_KEY_PREVIOUS")
        .env_remove("ORACLE_FUSION_URL")
        .env_remove("SLACK_BOT_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn ml-connector");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).expect("write stdin");
    }
    drop(input);
    child.wait_with_output().expect("wait")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn credentials_are_set_from_stdin_listed_without_values_and_required_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("j.db");
    let db = db.to_str().expect("path");
    let key = cli(&["credentials", "generate-key"], &[], None);
    assert!(key.status.success(), "{}", text(&key));
    let key = String::from_utf8_lossy(&key.stdout).trim().to_owned();
    let env = [("ML_AUDIT_DB", db), ("ML_MASTER_KEY", key.as_str())];

    let secret = "xoxb-CLI-SECRET-4711";
    let set = cli(
        &["credentials", "set", "slack.bot_token"],
        &env,
        Some(&format!("{secret}\n")),
    );
    assert!(set.status.success(), "{}", text(&set));
    assert!(
        text(&set).contains("stored slack.bot_token (version 1)"),
        "{}",
        text(&set)
    );

    // An empty value (a variable that was not set) is refused, not stored.
    let empty = cli(&["credentials", "set", "slack.other"], &env, Some("\n"));
    assert!(!empty.status.success(), "{}", text(&empty));
    assert!(text(&empty).contains("empty"), "{}", text(&empty));

    let list = cli(&["credentials", "list"], &env, None);
    assert!(list.status.success(), "{}", text(&list));
    assert!(!text(&list).contains("slack.other"), "{}", text(&list));
    assert!(
        text(&list).contains("slack.bot_token\tversion 1"),
        "{}",
        text(&list)
    );
    assert!(!text(&list).contains(secret));

    for entry in std::fs::read_dir(dir.path()).expect("dir") {
        let bytes = std::fs::read(entry.expect("entry").path()).expect("read");
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()));
    }

    // Without the master key, neither the CLI nor a pipeline on this journal starts.
    let no_key = cli(&["credentials", "list"], &[("ML_AUDIT_DB", db)], None);
    assert!(!no_key.status.success());
    assert!(text(&no_key).contains("ML_MASTER_KEY"), "{}", text(&no_key));
    let config = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/config/oracle_fusion_to_slack.toml"
    );
    let run = cli(
        &["run", "--config", config, "--once"],
        &[("ML_AUDIT_DB", db)],
        None,
    );
    assert!(!run.status.success(), "{}", text(&run));
    assert!(
        text(&run).contains("1 encrypted credential"),
        "{}",
        text(&run)
    );

    let other_key = cli(&["credentials", "generate-key"], &[], None);
    let other_key = String::from_utf8_lossy(&other_key.stdout).trim().to_owned();
    let wrong = cli(
        &["credentials", "list"],
        &[("ML_AUDIT_DB", db), ("ML_MASTER_KEY", &other_key)],
        None,
    );
    assert!(!wrong.status.success());
    assert!(text(&wrong).contains("slack.bot_token"), "{}", text(&wrong));

    let del = cli(&["credentials", "delete", "slack.bot_token"], &env, None);
    assert!(
        text(&del).contains("deleted slack.bot_token"),
        "{}",
        text(&del)
    );
}
