//! Every sample pipeline file, run the way a new user first runs it: the real
//! `ml-connector` binary, nothing set in the environment but a journal path. Each must
//! check, run once against the emulators, deliver everything it planned, and never try to
//! reach a host outside this machine (a default such as
//! `${TWILIO_API_URL:-https://api.twilio.com}` once sent the sandbox's messages there).
#![cfg(all(
    feature = "cli",
    feature = "sandbox",
    feature = "store",
    feature = "oracle-fusion",
    feature = "slack",
    feature = "twilio",
    feature = "sap-ecc",
    feature = "sap-agent",
    feature = "ifs",
    feature = "sage-x3"
))]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn samples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples/config")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

/// The sample with its receivers on a port of the system's choosing (the samples say
/// 8080; tests run side by side).
fn local_copy(sample: &Path, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(sample).expect("read sample");
    let text: String = text
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("listen =") {
                "listen = \"127.0.0.1:0\"".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let path = dir.join(sample.file_name().expect("name"));
    std::fs::write(&path, text).expect("write copy");
    path
}

fn cli(journal: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ml-connector"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("ML_AUDIT_DB", journal)
        .output()
        .expect("run ml-connector")
}

fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn every_sample_checks_and_runs_once_against_the_emulators_only() {
    let files = samples();
    assert!(files.len() >= 6, "{files:?}");
    for sample in files {
        let dir = tempfile::tempdir().expect("dir");
        let config = local_copy(&sample, dir.path());
        let config = config.to_str().expect("utf-8 path");
        let journal = dir.path().join("audit.db");
        let name = sample.display();

        let check = cli(&journal, &["check", "--config", config]);
        assert!(check.status.success(), "{name}: check\n{}", text(&check));

        let run = cli(&journal, &["run", "--config", config, "--once"]);
        let out = text(&run);
        assert!(run.status.success(), "{name}: run --once\n{out}");
        assert!(
            out.contains("sandbox"),
            "{name}: not in sandbox mode\n{out}"
        );
        let summary = out
            .lines()
            .rfind(|l| l.starts_with("summary:"))
            .unwrap_or_else(|| panic!("{name}: no summary\n{out}"));
        assert!(
            summary.contains("retried 0") && summary.contains("failed 0"),
            "{name}: {summary}\n{out}"
        );
        assert!(!summary.contains("delivered 0"), "{name}: {summary}");

        let list = cli(&journal, &["audit", "--config", config, "list"]);
        let listed = text(&list);
        assert!(list.status.success(), "{name}: audit list\n{listed}");
        for off_machine in [
            "could not connect",
            "dns error",
            "api.twilio.com",
            "slack.com",
        ] {
            assert!(
                !listed.contains(off_machine) && !out.contains(off_machine),
                "{name}: tried to leave the machine ({off_machine})\n{out}\n{listed}"
            );
        }
    }
}

/// The operator's record view: a delivered record with its attempts and remote ids in
/// words; a rejected one with its reason; one that is neither, and a journal path that is
/// not there, are errors (not an empty answer, nor a new empty journal).
#[test]
fn audit_show_reads_as_text_and_says_what_is_not_there() {
    let sample = samples()
        .into_iter()
        .find(|p| p.ends_with("oracle_fusion_to_slack.toml"))
        .expect("oracle sample");
    let dir = tempfile::tempdir().expect("dir");
    let config = local_copy(&sample, dir.path());
    let config = config.to_str().expect("utf-8 path");
    let journal = dir.path().join("audit.db");
    let run = cli(&journal, &["run", "--config", config, "--once"]);
    assert!(run.status.success(), "{}", text(&run));

    let show = cli(
        &journal,
        &["audit", "--config", config, "show", "invoices", "300101"],
    );
    let shown = text(&show);
    assert!(show.status.success(), "{shown}");
    assert!(
        shown
            .lines()
            .any(|l| l.trim_start().starts_with("attempt 1 ") && l.contains(": delivered ")),
        "{shown}"
    );
    assert!(!shown.contains("AttemptView"), "{shown}");

    let rejected = cli(
        &journal,
        &["audit", "--config", config, "show", "invoices", "300104"],
    );
    let said = text(&rejected);
    assert!(rejected.status.success(), "{said}");
    assert!(said.contains("rejected "), "{said}");

    let missing = cli(
        &journal,
        &["audit", "--config", config, "show", "invoices", "999999"],
    );
    assert_eq!(missing.status.code(), Some(1), "{}", text(&missing));
    assert!(text(&missing).contains("neither journaled nor rejected"));
    // `explain` of a rejected record gives its reason (it was never routed); of a stream
    // the file does not have, the streams it has.
    let explained = cli(
        &journal,
        &["explain", "--config", config, "invoices", "300104"],
    );
    assert!(explained.status.success(), "{}", text(&explained));
    assert!(
        text(&explained).contains("rejected "),
        "{}",
        text(&explained)
    );
    let typo = cli(
        &journal,
        &["explain", "--config", config, "invoice", "300101"],
    );
    assert_eq!(typo.status.code(), Some(1), "{}", text(&typo));
    assert!(
        text(&typo).contains("no stream `invoice` (streams: invoices,"),
        "{}",
        text(&typo)
    );

    let typo = dir.path().join("typo.db");
    let o = cli(
        &journal,
        &["audit", "--journal", typo.to_str().expect("utf-8"), "list"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("no journal at"), "{}", text(&o));
    assert!(!typo.exists(), "no empty journal created");
    let listed = cli(&journal, &["audit", "list"]);
    assert!(listed.status.success(), "{}", text(&listed));
    // A destination as the routes name it (`slack:finance`), resolved by the file.
    let by_alias = cli(
        &journal,
        &[
            "audit",
            "--config",
            config,
            "list",
            "--destination",
            "slack:finance",
        ],
    );
    let rows = String::from_utf8_lossy(&by_alias.stdout).into_owned();
    assert!(by_alias.status.success(), "{}", text(&by_alias));
    assert!(rows.lines().any(|l| l.contains("slack:#finance")), "{rows}");
    assert!(!rows.contains("slack:#procurement"), "{rows}");
}

/// An operator renames a stream in the file (`invoices` -> `ap-invoices`) and says so with
/// `renamed_from`: the journal's stream becomes the new one, so the next run finds every
/// invoice already journaled and sends nothing again (without it, a new stream starts over
/// and posts the whole history).
#[test]
fn a_renamed_stream_goes_on_where_it_was() {
    let dir = tempfile::tempdir().expect("dir");
    let sample =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config/oracle_fusion_to_slack.toml");
    let config = local_copy(&sample, dir.path());
    let journal = dir.path().join("audit.db");
    let path = config.to_str().expect("utf-8");
    let first = cli(&journal, &["run", "--config", path, "--once"]);
    assert!(first.status.success(), "{}", text(&first));
    let delivered = |journal: &Path| {
        let o = cli(journal, &["audit", "--config", path, "list"]);
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| l.contains(" delivered "))
            .count()
    };
    let before = delivered(&journal);
    assert!(before > 0);
    let text_before = std::fs::read_to_string(&config).expect("read");
    let renamed = text_before.replacen(
        "name = \"invoices\"",
        "name = \"ap-invoices\"\nrenamed_from = \"invoices\"",
        1,
    );
    assert_ne!(renamed, text_before);
    // Renamed without saying so: `check` names the journal's stream and the fix.
    std::fs::write(
        &config,
        text_before.replacen("name = \"invoices\"", "name = \"ap-invoices\"", 1),
    )
    .expect("write");
    let unsaid = cli(&journal, &["check", "--config", path]);
    assert!(unsaid.status.success(), "{}", text(&unsaid));
    assert!(
        text(&unsaid).contains(
            "warning stream invoices: in the journal but in no stream of this file; if stream \
             `ap-invoices` replaces it, add `renamed_from = \"invoices\"` to it"
        ),
        "{}",
        text(&unsaid)
    );
    // A former name the journal does not have is refused (a typo would start over).
    std::fs::write(
        &config,
        renamed.replace("renamed_from = \"invoices\"", "renamed_from = \"invoicez\""),
    )
    .expect("write");
    let typo = cli(&journal, &["run", "--config", path, "--once"]);
    assert_eq!(typo.status.code(), Some(1), "{}", text(&typo));
    assert!(
        text(&typo).contains("no stream `invoicez`"),
        "{}",
        text(&typo)
    );
    let checked = cli(&journal, &["check", "--config", path]);
    assert_eq!(checked.status.code(), Some(1), "{}", text(&checked));
    std::fs::write(&config, renamed).expect("write");
    // `check` and `dry-run` say what the next run does and change nothing.
    let checked = cli(&journal, &["check", "--config", path]);
    assert!(checked.status.success(), "{}", text(&checked));
    assert!(
        text(&checked).contains("ok      stream ap-invoices: takes over `invoices`"),
        "{}",
        text(&checked)
    );
    let dry = cli(&journal, &["dry-run", "--config", path]);
    assert!(dry.status.success(), "{}", text(&dry));
    assert!(
        !String::from_utf8_lossy(&dry.stdout)
            .lines()
            .any(|l| l.starts_with("ap-invoices ") && l.contains(" -> ")),
        "the renamed stream's records are already journaled:\n{}",
        text(&dry)
    );
    let still_old = cli(
        &journal,
        &["audit", "--config", path, "show", "invoices", "300101"],
    );
    assert!(still_old.status.success(), "{}", text(&still_old));
    let second = cli(&journal, &["run", "--config", path, "--once"]);
    let out = text(&second);
    assert!(second.status.success(), "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("cycle ap-invoices:"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("journaled 0"), "{line}");
    assert_eq!(delivered(&journal), before, "nothing sent again:\n{out}");
    let shown = cli(
        &journal,
        &["audit", "--config", path, "show", "ap-invoices", "300101"],
    );
    assert!(shown.status.success(), "{}", text(&shown));
}
