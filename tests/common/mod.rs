//! The `ml-connector` binary as a running service, for the tests that start it: killed
//! when the test ends, its receivers' address read from what it prints, signals, and
//! waiting for it to stop.
// Each test file uses the part it needs.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// A running `ml-connector`; killed (and reaped) when dropped.
pub(crate) struct Running(pub(crate) Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Running {
    /// Starts `command` with stdout piped and reads it up to the line
    /// `receivers: listening on <url>`. Returns the process, the URL and the lines printed
    /// before it; the rest of stdout is drained so the child never blocks on a full pipe.
    pub(crate) fn listening(mut command: Command) -> (Self, String, Vec<String>) {
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn ml-connector");
        let stdout = child.stdout.take().expect("stdout");
        let running = Self(child);
        let mut lines = BufReader::new(stdout).lines();
        let mut head = Vec::new();
        let base = loop {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("ml-connector exited before listening: {head:?}"))
                .expect("line");
            if let Some(rest) = line.strip_prefix("receivers: listening on ") {
                break rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
            }
            head.push(line);
        };
        std::thread::spawn(move || for _ in lines {});
        (running, base, head)
    }

    /// Sends `signal` (`INT`, `TERM`) to the process.
    pub(crate) fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([format!("-{signal}"), self.0.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success(), "kill -{signal}");
    }

    /// Waits for the process to exit, at most `within` (a timeout, not a sleep: it returns
    /// as soon as the process is gone).
    pub(crate) async fn exited(mut self, within: Duration) -> ExitStatus {
        let wait = tokio::task::spawn_blocking(move || {
            let status = self.0.wait().expect("wait");
            drop(self);
            status
        });
        tokio::time::timeout(within, wait)
            .await
            .unwrap_or_else(|_| panic!("ml-connector did not stop within {within:?}"))
            .expect("join")
    }
}
