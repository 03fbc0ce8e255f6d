//! Workspace benchmarks of ml-connector (`publish = false`): what the README's Performance
//! table cites, measured on the sandbox (loopback emulators) and on tempfile journals.
//!
//! | What | Command |
//! | --- | --- |
//! | the whole pipeline per pairing, limiter off: Oracle emulator -> routing -> SQLite journal -> Slack emulator, and -> Twilio SMS emulator | `cargo bench -p ml-benches --bench pipeline` |
//! | the journal loop: synthetic source -> SQLite journal -> counting sink, records/s | `cargo bench -p ml-benches --bench journal -- journal_deliver` |
//! | journal growth: claim + finish with 10k vs 1M delivered rows already journaled | `cargo bench -p ml-benches --bench journal -- growth` |
//! | the Slack budget: 50 channels, limiter on (1/s/channel), accepted / (channels x s), 429s | `cargo bench -p ml-benches --bench slack_budget` (`ML_BENCH_BUDGET_SECS=10` for a short run) |
//! | the journal loop as one release run (records/s, peak RSS) | `cargo run --release -p ml-benches --example journal_loop -- 100000` |
//! | the same loop against the plain Python peer, one run, both figures and the ratio | `benches/compare.sh 100000 [DESTINATIONS]` |
//!
//! `benches/compare.sh` also prints records per CPU-second (steadier than wall time on a
//! shared machine); `ML_BENCH_ROUNDS=2` alternates the two sides twice and keeps the best of
//! each; `ML_BENCH_PEER_ARGS=--minimal` runs the peer's bare loop (no attempt rows, no record
//! read per delivery). `benches/peers/python_peer.py` runs alone too (`--help`).
//!
//! Keep runs short on a shared machine: `-- --warm-up-time 1 --measurement-time 3` or
//! `--sample-size 10` after the criterion bench name.
//!
//! This library holds what the benches share: [`SyntheticInvoices`] (a source that makes
//! Oracle-shaped invoices from their index, so a million-record run holds one page at a
//! time), [`CountingSink`], the [`router`] by cost center, and [`journal_loop`], the loop
//! that `benches/peers/python_peer.py` is compared with.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use ml_core::cursor::Position;
use ml_core::money::Money;
use ml_core::record::{BusinessFields, Line, SourceItem};
use ml_core::routing::{Condition, MatchMode, Router, Rule};
use ml_core::sink::{Outbound, Receipt, Sink};
use ml_core::source::Page;
use ml_core::{EntityKind, Error, Pipeline, RawJson, Record, Result, Schedule, Source, Stream};

/// Records per source page, as the Oracle source and the Python peer use.
pub const PAGE: usize = 500;

/// The first invoice's modification time; invoice `i` is `i / 10` seconds later.
const EPOCH_SECONDS: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

const SUPPLIERS: [&str; 5] = [
    "Müller GmbH",
    "株式会社テスト",
    "Ørsted A/S",
    "Acme Supplies",
    "Plain Supplier Inc",
];

/// The cost center of invoice `i` when the invoices are spread over `centers` of them.
pub fn cost_center(i: u64, centers: u64) -> String {
    format!("CC-{:03}", i % centers.max(1))
}

/// When invoice `i` was last modified: ten invoices a second from 2026-01-01.
fn modified_at(i: u64) -> Result<Timestamp> {
    Timestamp::from_second(EPOCH_SECONDS)
        .and_then(|t| t.checked_add(SignedDuration::from_millis((i as i64).saturating_mul(100))))
        .map_err(|e| Error::config("bench", e.to_string()))
}

/// Invoice `i` (key `i`) as the Oracle Fusion source maps one: business fields, two
/// lines, and the emulator's raw invoice JSON (with lines and distributions) as the raw
/// payload. Its journaled body is about 2.2 KB on average (1-3 raw lines).
pub fn invoice(i: u64, centers: u64) -> Result<Record> {
    let at = modified_at(i)?;
    let amount = format!("{}.{:02}", 100 + i % 9_000, i % 100);
    let supplier = SUPPLIERS[(i % SUPPLIERS.len() as u64) as usize];
    let raw = ml_sandbox::oracle::invoice_json(i as i64, at, &amount, supplier);
    let cc = cost_center(i, centers);
    let line = |n: u64, what: &str| -> Result<Line> {
        Ok(Line {
            number: n.to_string(),
            description: Some(what.to_owned()),
            quantity: None,
            amount: Some(Money::parse(&format!("{}.00", 10 * n), "USD")?),
            gl_account: Some(format!("101.{cc}.7640.0000")),
            cost_center: Some(cc.clone()),
            material: None,
        })
    };
    Ok(Record::new(
        "OracleFusion(bench)",
        EntityKind::SupplierInvoice,
        i.to_string(),
        at,
    )
    .with_version(ml_sandbox::oracle::oracle_ts(at))
    .with_fields(BusinessFields {
        document_number: Some(format!("INV-{i:08}")),
        supplier_id: Some(format!("{}", 300_000 + i % 97)),
        supplier: Some(supplier.to_owned()),
        amount: Some(Money::parse(&amount, "USD")?),
        cost_center: Some(cc.clone()),
        company_code: Some("101".to_owned()),
        status: Some("Validated".to_owned()),
        lines: vec![line(1, "Office supplies")?, line(2, "Freight")?],
        ..BusinessFields::default()
    })
    .with_link(format!(
        "https://bench.example.com/fscmUI/faces/FuseWelcome?invoice={i}"
    ))
    .with_raw(RawJson::from_text(raw)?))
}

/// Invoice `i` with only its identity, document number, amount and cost center, and a
/// one-attribute raw payload: a ~300 B journaled body.
pub fn lean_invoice(i: u64, centers: u64) -> Result<Record> {
    let at = modified_at(i)?;
    Ok(Record::new(
        "OracleFusion(bench)",
        EntityKind::SupplierInvoice,
        i.to_string(),
        at,
    )
    .with_version(ml_sandbox::oracle::oracle_ts(at))
    .with_fields(BusinessFields {
        document_number: Some(format!("INV-{i:08}")),
        amount: Some(Money::parse(
            &format!("{}.{:02}", 100 + i % 9_000, i % 100),
            "USD",
        )?),
        cost_center: Some(cost_center(i, centers)),
        ..BusinessFields::default()
    })
    .with_raw(RawJson::from_text(format!("{{\"InvoiceId\":{i}}}"))?))
}

/// A source of `n` synthetic invoices ([`invoice`], keys `0..n`), pages of [`PAGE`],
/// position `{"after": k}`. It keeps nothing but its parameters, like the Oracle
/// emulator's synthetic mode, so a million-record run measures the pipeline, not a table.
#[derive(Debug, Clone)]
pub struct SyntheticInvoices {
    n: u64,
    centers: u64,
    page: usize,
    lean: bool,
}

impl SyntheticInvoices {
    /// `n` invoices, one cost center.
    pub fn new(n: u64) -> Self {
        Self {
            n,
            centers: 1,
            page: PAGE,
            lean: false,
        }
    }

    /// Spreads the invoices over `centers` cost centers (round robin): with [`router`],
    /// one destination each.
    pub fn with_cost_centers(mut self, centers: u64) -> Self {
        self.centers = centers.max(1);
        self
    }

    /// Serves [`lean_invoice`]s (a ~300 B body) instead: for building large journals
    /// quickly where only the row count matters.
    pub fn with_lean_records(mut self) -> Self {
        self.lean = true;
        self
    }

    /// The page size (at least 1).
    pub fn with_page_size(mut self, page: usize) -> Self {
        self.page = page.max(1);
        self
    }
}

impl fmt::Display for SyntheticInvoices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Synthetic({} invoices)", self.n)
    }
}

#[async_trait]
impl Source for SyntheticInvoices {
    fn kind(&self) -> EntityKind {
        EntityKind::SupplierInvoice
    }

    async fn poll(&self, from: Option<&Position>) -> Result<Page> {
        let first = match from {
            None => 0,
            Some(p) => p
                .as_json()
                .get("after")
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| Error::InvalidPosition(p.to_json_string()))?,
        };
        let end = first.saturating_add(self.page as u64).min(self.n);
        let items = (first..end)
            .map(|i| {
                let r = if self.lean {
                    lean_invoice(i, self.centers)
                } else {
                    invoice(i, self.centers)
                };
                r.map(|r| SourceItem::Record(Box::new(r)))
            })
            .collect::<Result<Vec<_>>>()?;
        let watermark = items.last().map(|item| match item {
            SourceItem::Record(r) => r.modified_at,
            SourceItem::Rejected(_) => Timestamp::UNIX_EPOCH,
        });
        Ok(Page {
            items,
            next: Position::from_json(serde_json::json!({ "after": end })),
            more: end < self.n,
            watermark,
        })
    }
}

/// A sink that counts and drops: what a delivery costs us, not the destination.
#[derive(Debug, Default)]
pub struct CountingSink(AtomicU64);

impl CountingSink {
    /// How many messages it received.
    pub fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl fmt::Display for CountingSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Counting")
    }
}

#[async_trait]
impl Sink for CountingSink {
    async fn send(&self, msg: &Outbound) -> Result<Receipt> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(Receipt::new(format!("c-{}", msg.delivery_id)))
    }
}

/// Routes cost center `CC-nnn` (see [`cost_center`]) to `destinations[nnn]`, e.g.
/// `["slack:C123", ...]`: one destination per record.
pub fn router(destinations: &[String]) -> Result<Router> {
    Router::new(
        MatchMode::AllMatch,
        destinations
            .iter()
            .enumerate()
            .map(|(c, d)| Rule {
                name: format!("cc{c:03}"),
                when: vec![
                    Condition::Kind(vec![EntityKind::SupplierInvoice]),
                    Condition::CostCenter(vec![cost_center(c as u64, u64::MAX)]),
                ],
                to: vec![d.clone()],
            })
            .collect(),
    )
}

/// Routes every supplier invoice to `destination` (`slack:#procurement`).
pub fn route_all(destination: &str) -> Result<Router> {
    Router::new(
        MatchMode::AllMatch,
        vec![Rule {
            name: "invoices".into(),
            when: vec![Condition::Kind(vec![EntityKind::SupplierInvoice])],
            to: vec![destination.to_owned()],
        }],
    )
}

/// What one [`journal_loop`] run did.
#[derive(Debug, Clone, Copy)]
pub struct LoopReport {
    /// Records the source served.
    pub records: u64,
    /// Deliveries the pipeline marked delivered.
    pub delivered: u64,
    /// Messages the counting sink received.
    pub received: u64,
    /// Wall time of the run (journal and deliver).
    pub elapsed: Duration,
    /// How long the journal's write connection was held during the run
    /// ([`ml_store::SqliteAuditStore::write_lock_held`]).
    pub write_lock_held: Duration,
}

impl LoopReport {
    /// Records per second.
    pub fn records_per_second(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    /// The share of the run's wall time the journal's write connection was held, in per
    /// cent: near 100 the journal bounds throughput; well below, hand-offs between the
    /// poller, the writer and the senders do.
    pub fn write_lock_percent(&self) -> f64 {
        100.0 * self.write_lock_held.as_secs_f64()
            / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

/// The journal loop that the Python peer is compared with: `n` synthetic invoices, pages
/// of [`PAGE`], each journaled with its planned delivery (one destination per record,
/// spread over `destinations` counting-sink addresses) in a new SQLite journal at `path`
/// (WAL, synchronous=NORMAL: the store's defaults), then delivered to a [`CountingSink`]
/// by `Pipeline::run_once` (limiter off). Times the whole run.
pub async fn journal_loop(path: &Path, n: u64, destinations: u64) -> Result<LoopReport> {
    let store = Arc::new(ml_store::SqliteBuilder::new().with_path(path).build()?);
    let sink = Arc::new(CountingSink::default());
    let to: Vec<String> = (0..destinations.max(1))
        .map(|c| format!("count:#cc{c:03}"))
        .collect();
    let p = Pipeline::builder()
        .store(store.clone())
        .stream(Stream::new(
            "invoices",
            Arc::new(SyntheticInvoices::new(n).with_cost_centers(destinations)),
            Schedule::every(Duration::from_secs(3600))?,
        ))
        .router(router(&to)?)
        .sink("count", sink.clone())
        .max_pages_per_cycle(n.div_ceil(PAGE as u64) + 1)
        .build()?;
    let held_before = store.write_lock_held();
    let started = Instant::now();
    let s = p.run_once().await?;
    let elapsed = started.elapsed();
    Ok(LoopReport {
        records: s.journaled,
        delivered: s.deliveries.delivered,
        received: sink.count(),
        elapsed,
        write_lock_held: store.write_lock_held().saturating_sub(held_before),
    })
}

/// A line of `/proc/self/status` (`VmHWM`, `VmRSS`), or "`field` unknown".
pub fn proc_status(field: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .map_or_else(|| format!("{field} unknown"), |l| l.trim().to_owned())
}

/// An environment variable parsed as `T`, or `default` when unset or unparsable.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn synthetic_source_pages_through_every_invoice_once() {
        let s = SyntheticInvoices::new(1_203).with_cost_centers(3);
        let (mut pos, mut keys) = (None, Vec::new());
        loop {
            let page = s.poll(pos.as_ref()).await.expect("poll");
            for item in &page.items {
                let SourceItem::Record(r) = item else {
                    panic!("rejected item")
                };
                keys.push(r.key.parse::<u64>().expect("key"));
            }
            pos = Some(page.next);
            if !page.more {
                break;
            }
        }
        assert_eq!(keys, (0..1_203).collect::<Vec<_>>());
    }

    #[test]
    fn router_sends_each_cost_center_to_its_destination() {
        let r = router(&["a:x".into(), "b:y".into()]).expect("router");
        let to = r.route(&invoice(5, 2).expect("invoice"));
        assert_eq!(to.len(), 1, "{to:?}");
        assert_eq!(to[0].to_string(), "b:y");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn journal_loop_delivers_every_record_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = journal_loop(&dir.path().join("j.db"), 1_100, 4)
            .await
            .expect("loop");
        assert_eq!((r.records, r.delivered, r.received), (1_100, 1_100, 1_100));
    }
}
