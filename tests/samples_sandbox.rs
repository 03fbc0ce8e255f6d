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
