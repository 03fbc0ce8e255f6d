//! The Python peer stays runnable: a 1,000-record run with the system `python3` (standard
//! library only) delivers every record and prints its rate. Skipped, saying so, where no
//! `python3` is installed.

use std::path::Path;
use std::process::Command;

#[test]
fn python_peer_delivers_every_record_and_prints_its_rate() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/python_peer.py");
    let out = match Command::new("python3")
        .arg(&script)
        .args(["1000", "--destinations", "3", "--machine"])
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            eprintln!("skipped: no python3 ({e})");
            return;
        }
    };
    // The peer exits non-zero when a delivery is missing or the sink count differs.
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let rate: f64 = stdout
        .trim()
        .strip_prefix("records_per_second=")
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("unexpected output: {stdout}"));
    assert!(rate > 0.0, "{stdout}");
}
