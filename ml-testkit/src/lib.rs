//! Cross-crate test support for ml-connector (unpublished): the deterministic data set and
//! the file-backed sink that the crash test's child process uses.

use std::fmt;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;

use async_trait::async_trait;
use jiff::Timestamp;
use ml_core::money::Money;
use ml_core::record::{BusinessFields, EntityKind, Record};
use ml_core::sink::{Outbound, Receipt, Reconciled, Sink};
use ml_core::{Error, ErrorClass, Result};

/// The crash test's data: `n` supplier invoices, three per timestamp (ties across page
/// boundaries), every fifth one large.
pub fn crash_records(n: usize) -> Vec<Record> {
    let t0 = Timestamp::from_second(1_800_000_000).unwrap_or(Timestamp::UNIX_EPOCH);
    (0..n)
        .map(|i| {
            let amount = if i % 5 == 0 { "25000.00" } else { "120.50" };
            Record::new(
                "Crash(erp)",
                EntityKind::SupplierInvoice,
                format!("{i:05}"),
                t0 + jiff::SignedDuration::from_secs((i / 3) as i64),
            )
            .with_fields(BusinessFields {
                document_number: Some(format!("INV-{i:05}")),
                amount: Money::parse(amount, "EUR").ok(),
                ..BusinessFields::default()
            })
        })
        .collect()
}

/// One line of the sink log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedSend {
    /// The journal's delivery id.
    pub delivery_id: i64,
    /// The record key.
    pub record_key: String,
    /// The destination address.
    pub address: String,
}

/// A sink that appends each message to a file (one `O_APPEND` write per message, so a
/// SIGKILL never leaves half a line: the kernel holds the write once `write` returns).
/// It can reconcile by reading the file back, like a Slack metadata lookup.
#[derive(Clone, Debug)]
pub struct FileSink {
    path: PathBuf,
    reconcile: bool,
    delay: std::time::Duration,
}

impl FileSink {
    /// A sink appending to `path`.
    pub fn new(path: impl Into<PathBuf>, reconcile: bool) -> Self {
        Self {
            path: path.into(),
            reconcile,
            delay: std::time::Duration::ZERO,
        }
    }

    /// Each send takes `delay` before it is written (a slow remote side, so that sends
    /// are in flight while other processes run).
    #[must_use]
    pub fn with_delay(mut self, delay: std::time::Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Reads the log.
    pub fn read(path: &std::path::Path) -> Vec<LoggedSend> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut it = l.split('\t');
                Some(LoggedSend {
                    delivery_id: it.next()?.parse().ok()?,
                    record_key: it.next()?.to_owned(),
                    address: it.next()?.to_owned(),
                })
            })
            .collect()
    }
}

impl fmt::Display for FileSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FileSink({})", self.path.display())
    }
}

fn io(e: &std::io::Error) -> Error {
    Error::remote("FileSink", ErrorClass::RETRYABLE, e.to_string())
}

#[async_trait]
impl Sink for FileSink {
    async fn send(&self, msg: &Outbound) -> Result<Receipt> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let line = format!(
            "{}\t{}\t{}\n",
            msg.delivery_id, msg.record_key, msg.destination.address
        );
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| io(&e))?;
        f.write_all(line.as_bytes()).map_err(|e| io(&e))?;
        Ok(Receipt::new(format!("file-{}", msg.delivery_id)))
    }

    fn can_reconcile(&self) -> bool {
        self.reconcile
    }

    async fn reconcile(&self, msg: &Outbound) -> Result<Reconciled> {
        if !self.reconcile {
            return Err(Error::Unsupported("FileSink without reconcile".into()));
        }
        let found = Self::read(&self.path)
            .iter()
            .any(|s| s.delivery_id == msg.delivery_id.0);
        Ok(if found {
            Reconciled::Found(Receipt::new(format!("file-{}", msg.delivery_id)))
        } else {
            Reconciled::NotFound
        })
    }
}
