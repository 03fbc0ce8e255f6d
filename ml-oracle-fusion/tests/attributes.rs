//! Pods differ by release (issue 9, defect 4): a pod lacking optional attributes is read
//! without them (a warning names them, no 400 loop); a pod lacking a required one is a
//! configuration error naming it, pauses only that stream, and is asked again on the slow
//! cadence only.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{builder, t0};
use ml_core::clock::TokioClock;
use ml_core::memory::{MemoryAuditStore, MemorySink};
use ml_core::pipeline::StreamState;
use ml_core::routing::{Condition, MatchMode, Router, Rule};
use ml_core::source::Source;
use ml_core::{EntityKind, Pipeline, Schedule, Stream};
use ml_oracle_fusion::{OracleFusionSource, OracleResource};
use ml_sandbox::oracle::{OracleEmulator, oracle_ts};

const JOURNAL_LACKS: [&str; 4] = [
    "CurrencyCode",
    "LedgerName",
    "AccountingPeriodName",
    "ApprovalStatus",
];

fn purchase_order(id: i64, secs: i64) -> serde_json::Value {
    let ts = oracle_ts(t0() + jiff::SignedDuration::from_secs(secs));
    serde_json::json!({
        "POHeaderId": id, "OrderNumber": format!("PO-{id}"), "Supplier": "Acme",
        "SupplierId": 300 + id, "Currency": "USD", "Ordered": 1250.5, "Status": "Open",
        "ProcurementBU": "US1", "Buyer": "Casey", "CreationDate": ts, "LastUpdateDate": ts,
    })
}

fn journal_batch(id: i64, secs: i64) -> serde_json::Value {
    let ts = oracle_ts(t0() + jiff::SignedDuration::from_secs(secs));
    serde_json::json!({
        "JeBatchId": id, "BatchName": format!("Batch {id}"), "Status": "Unposted",
        "Description": "Accruals", "RunningTotalAccountedDr": 900.25,
        "CurrencyCode": "USD", "LedgerName": "US Primary", "AccountingPeriodName": "Nov-26",
        "ApprovalStatus": "Approved", "CreationDate": ts, "LastUpdateDate": ts,
    })
}

fn oracle_source(
    e: &OracleEmulator,
    r: OracleResource,
    clock: &Arc<TokioClock>,
) -> Arc<OracleFusionSource> {
    Arc::new(
        builder(e)
            .with_resource(r)
            .with_start_at(t0() - jiff::SignedDuration::from_hours(1))
            .with_clock(clock.clone())
            .build()
            .expect("source"),
    )
}

fn router() -> Router {
    Router::new(
        MatchMode::AllMatch,
        vec![Rule {
            name: "all".into(),
            when: vec![Condition::Kind(vec![
                EntityKind::PurchaseOrder,
                EntityKind::GlJournal,
            ])],
            to: vec!["chat:#ops".into()],
        }],
    )
    .expect("router")
}

fn pipeline(
    streams: Vec<(&str, Arc<OracleFusionSource>)>,
    clock: &Arc<TokioClock>,
    sink: &MemorySink,
) -> Pipeline {
    let mut b = Pipeline::builder()
        .store(Arc::new(MemoryAuditStore::new()))
        .router(router())
        .sink("chat", Arc::new(sink.clone()))
        .clock(clock.clone());
    for (name, s) in streams {
        b = b.stream(Stream::new(
            name,
            s,
            Schedule::every(Duration::from_secs(60)).expect("schedule"),
        ));
    }
    b.build().expect("pipeline")
}

#[tokio::test(start_paused = true)]
async fn optional_attributes_the_pod_lacks_are_dropped_with_a_warning_not_a_400_loop() {
    let e = OracleEmulator::start().await.expect("emulator");
    e.lack_attributes("purchaseOrders", &["SupplierId"]);
    e.lack_attributes("journalBatches", &JOURNAL_LACKS);
    for i in 1..=3 {
        e.upsert("purchaseOrders", &purchase_order(i, i));
        e.upsert("journalBatches", &journal_batch(i, i));
    }
    let clock = Arc::new(TokioClock::starting_at(t0()));
    let po = oracle_source(&e, OracleResource::PurchaseOrders, &clock);
    let gl = oracle_source(&e, OracleResource::JournalBatches, &clock);
    let sink = MemorySink::new("chat");
    let p = pipeline(vec![("po", po.clone()), ("gl", gl.clone())], &clock, &sink);
    let s = p.run_once().await.expect("run");
    assert!(s.cycle_errors.is_empty(), "{s}");
    assert_eq!((s.journaled, s.rejected), (6, 0), "{s}");
    assert_eq!(sink.sent().len(), 6);
    // The dropped set names exactly what the pod lacks (and a warning says so).
    assert_eq!(po.dropped_attributes(), ["SupplierId"]);
    let mut lacks = JOURNAL_LACKS.map(str::to_owned).to_vec();
    lacks.sort();
    let mut dropped = gl.dropped_attributes();
    dropped.sort();
    assert_eq!(dropped, lacks);
    // Exactly one describe and one read per resource: no 400 at all.
    let f = e.faults();
    assert_eq!(f.requests("describe"), 2);
    assert_eq!(f.requests("purchaseOrders"), 1);
    assert_eq!(f.requests("journalBatches"), 1);
    assert_eq!(
        f.status_count("purchaseOrders", 400) + f.status_count("journalBatches", 400),
        0
    );
    // A later cycle reuses what was learned: one read each, no describe.
    let s = p.run_once().await.expect("run");
    assert!(s.cycle_errors.is_empty(), "{s}");
    assert_eq!(f.requests("describe"), 2);
    assert_eq!(f.requests("purchaseOrders"), 2);
    // The journal batches still carry what the pod has; the amount without a currency
    // attribute is left out rather than rejecting the batch.
    let gl_record = sink
        .sent()
        .into_iter()
        .find(|m| m.record_key == "1" && m.rendered.text.contains("Batch 1"))
        .map(|m| m.rendered.text);
    assert!(gl_record.is_some());
}

#[tokio::test(start_paused = true)]
async fn a_pod_upgrade_that_removes_an_attribute_is_relearned_from_the_400() {
    let e = OracleEmulator::start().await.expect("emulator");
    e.upsert("purchaseOrders", &purchase_order(1, 1));
    let clock = Arc::new(TokioClock::starting_at(t0()));
    let po = oracle_source(&e, OracleResource::PurchaseOrders, &clock);
    let first = po.poll(None).await.expect("poll");
    assert_eq!(first.items.len(), 1);
    assert!(po.dropped_attributes().is_empty());
    // The pod changes release between two reads.
    e.lack_attributes("purchaseOrders", &["SupplierId", "Buyer"]);
    e.upsert("purchaseOrders", &purchase_order(2, 2));
    let page = po
        .poll(Some(&first.next))
        .await
        .expect("poll after upgrade");
    assert_eq!(page.items.len(), 1);
    assert_eq!(po.dropped_attributes(), ["SupplierId", "Buyer"]);
    let f = e.faults();
    // describe, read, read (400), describe, read.
    assert_eq!(f.requests("describe"), 2);
    assert_eq!(f.requests("purchaseOrders"), 3);
    assert_eq!(f.status_count("purchaseOrders", 400), 1);
}

#[tokio::test(start_paused = true)]
async fn a_missing_required_attribute_is_a_config_error_and_pauses_only_its_stream() {
    let e = OracleEmulator::start().await.expect("emulator");
    e.lack_attributes("purchaseOrders", &["Ordered"]);
    e.upsert("purchaseOrders", &purchase_order(1, 1));
    e.upsert("journalBatches", &journal_batch(1, 1));
    let clock = Arc::new(TokioClock::starting_at(t0()));
    let po = oracle_source(&e, OracleResource::PurchaseOrders, &clock);
    let gl = oracle_source(&e, OracleResource::JournalBatches, &clock);
    // The check names it too.
    let err = po
        .healthcheck()
        .await
        .expect_err("missing required attribute");
    let text = err.to_string();
    assert!(text.contains("purchaseOrders.Ordered"), "{text}");
    assert!(text.contains("`Ordered`"), "{text}");
    assert_eq!(err.class(), ml_core::ErrorClass::Permanent);
    let describes = e.faults().requests("describe");

    let sink = MemorySink::new("chat");
    let p = pipeline(vec![("po", po.clone()), ("gl", gl.clone())], &clock, &sink);
    let s = p
        .run(tokio::time::sleep(Duration::from_secs(2 * 3600 - 60)))
        .await
        .expect("run");
    // The other stream flowed.
    assert_eq!(sink.sent().len(), 1, "{s}");
    // Paused with a visible status naming the attribute.
    let status = p.stream_status();
    let po_status = status.iter().find(|s| s.stream == "po").expect("po");
    let StreamState::Paused { error, .. } = &po_status.state else {
        panic!("not paused: {po_status:?}");
    };
    assert!(
        error.message.contains("purchaseOrders.Ordered"),
        "{error:?}"
    );
    let cycles = p.store().cycles("po", 1).await.expect("cycles");
    assert_eq!(
        cycles[0].error.as_ref().map(|e| e.class.as_str()),
        Some("permanent")
    );
    // Asked again on the 15-minute cadence only (t = 0, 15, ..., 105 min: 8 tries of one
    // describe each; plus the journal batches' one describe), and never read with
    // `fields` naming the missing attribute.
    assert_eq!(e.faults().requests("describe") - describes, 8 + 1);
    assert_eq!(e.faults().requests("purchaseOrders"), 0);
    assert!(e.faults().requests("journalBatches") >= 100);
}

#[tokio::test]
async fn the_emulator_refuses_attributes_it_lacks_and_describe_leaves_them_out() {
    let e = OracleEmulator::start().await.expect("emulator");
    e.lack_attributes("journalBatches", &JOURNAL_LACKS);
    e.upsert("journalBatches", &journal_batch(1, 1));
    let url = format!(
        "{}fscmRestApi/resources/{}/journalBatches",
        e.base_url(),
        e.version()
    );
    let client = ml_core::http::ClientOptions::default()
        .client()
        .expect("client");
    let get = |query: Vec<(&'static str, &'static str)>, path: &'static str| {
        client
            .get(format!("{url}{path}"))
            .basic_auth(e.user(), Some(e.password()))
            .header("REST-Framework-Version", "2")
            .query(&query)
            .send()
    };
    for (param, value) in [
        ("fields", "JeBatchId,LedgerName"),
        ("q", "CurrencyCode = 'USD'"),
        ("orderBy", "ApprovalStatus:asc"),
    ] {
        let r = get(vec![(param, value)], "").await.expect("get");
        assert_eq!(r.status(), 400, "{param}");
        let body = r.text().await.expect("body");
        assert!(body.contains(param), "{body}");
        assert!(
            JOURNAL_LACKS.iter().any(|a| body.contains(a)),
            "the 400 names the attribute: {body}"
        );
    }
    // Without `fields`, items are served without what the pod lacks.
    let r = get(vec![("onlyData", "true")], "").await.expect("get");
    let body = r.text().await.expect("body");
    assert!(
        body.contains("\"BatchName\"") && !body.contains("LedgerName"),
        "{body}"
    );
    // `describe` lists what the pod has, not what it lacks.
    let r = get(vec![], "/describe").await.expect("describe");
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.expect("json");
    let names: Vec<&str> = v["Resources"]["journalBatches"]["attributes"]
        .as_array()
        .expect("attributes")
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert!(names.contains(&"JeBatchId") && names.contains(&"RunningTotalAccountedDr"));
    assert!(
        !names.iter().any(|n| JOURNAL_LACKS.contains(n)),
        "{names:?}"
    );
    // An upgraded pod has them again.
    e.lack_attributes("journalBatches", &[]);
    let r = get(vec![("fields", "JeBatchId,LedgerName")], "")
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
}

#[tokio::test(start_paused = true)]
async fn without_describe_the_attribute_a_400_names_is_dropped_once() {
    use ml_sandbox::fault::{Fault, FaultRule};
    let e = OracleEmulator::start().await.expect("emulator");
    // A pod that does not serve `describe` to this user.
    e.faults()
        .push(FaultRule::on("describe", Fault::Status(403)));
    e.lack_attributes("purchaseOrders", &["SupplierId"]);
    e.upsert("purchaseOrders", &purchase_order(1, 1));
    let clock = Arc::new(TokioClock::starting_at(t0()));
    let po = oracle_source(&e, OracleResource::PurchaseOrders, &clock);
    let page = po.poll(None).await.expect("poll");
    assert_eq!(page.items.len(), 1);
    assert_eq!(po.dropped_attributes(), ["SupplierId"]);
    let f = e.faults();
    // describe (403), read (400), describe again (403), read.
    assert_eq!(f.requests("purchaseOrders"), 2);
    assert_eq!(f.status_count("purchaseOrders", 400), 1);
    assert_eq!(f.requests("describe"), 2);
    // Learned for good: the next page is one read.
    po.poll(Some(&page.next)).await.expect("poll");
    assert_eq!(f.requests("purchaseOrders"), 3);
    assert_eq!(f.requests("describe"), 2);
}

/// A release whose invoice lines and distributions lack attributes the source asks for
/// (the notes list the children, not their attributes): each 400 naming one is learned,
/// the lines are read without it, and every invoice still comes with its lines.
#[tokio::test(start_paused = true)]
async fn line_attributes_the_pod_lacks_are_read_around() {
    let e = OracleEmulator::start().await.expect("emulator");
    for id in 1..=3 {
        let at = t0() + jiff::SignedDuration::from_secs(id);
        let json = ml_sandbox::oracle::invoice_json(id, at, "1250.50", "Acme");
        e.upsert_raw("invoices", &json);
    }
    e.lack_attributes(
        "invoices",
        &[
            "invoiceLines:LineType",
            "invoiceLines.invoiceDistributions:DistributionLineType",
        ],
    );
    let clock = Arc::new(TokioClock::starting_at(t0()));
    let inv = oracle_source(&e, OracleResource::Invoices, &clock);
    let page = inv
        .poll(None)
        .await
        .expect("read around the line attributes");
    let records: Vec<_> = page
        .items
        .iter()
        .map(|i| match i {
            ml_core::record::SourceItem::Record(r) => r,
            ml_core::record::SourceItem::Rejected(x) => panic!("rejected: {}", x.reason),
        })
        .collect();
    assert_eq!(records.len(), 3);
    assert!(
        records.iter().all(|r| !r.fields.lines.is_empty()),
        "lines kept"
    );
    assert!(
        inv.dropped_attributes().is_empty(),
        "no header attribute lost"
    );
    let f = e.faults();
    // One 400 per attribute learned, then the read.
    assert_eq!(f.status_count("invoices", 400), 2);
    // The next read (the cursor's overlap) asks without them straight away.
    inv.poll(Some(&page.next)).await.expect("next");
    assert_eq!(f.status_count("invoices", 400), 2);
}

/// A release whose payments carry their amount as `Amount`, not `PaymentAmount` (the
/// notes leave the names unconfirmed): without configuration the stream pauses naming the
/// attribute; with `amount_attribute = "Amount"` (a per-stream setting, no Rust) every
/// payment is read with its amount. The key is renamed the same way.
#[tokio::test(start_paused = true)]
async fn attribute_names_are_configurable_without_code() {
    let e = OracleEmulator::start().await.expect("emulator");
    for id in 1..=3_i64 {
        let ts = oracle_ts(t0() + jiff::SignedDuration::from_secs(id));
        e.upsert(
            "payablesPayments",
            &serde_json::json!({
                "CheckId": id, "PaymentAmount": 1, "Amount": 100.25, "PaymentNumber": format!("P-{id}"),
                "Payee": "Acme", "PaymentCurrency": "USD", "PaymentStatus": "Negotiable",
                "BusinessUnit": "US1", "PaymentDate": "2026-03-01",
                "CreationDate": ts, "LastUpdateDate": ts,
            }),
        );
    }
    // This release has no `PaymentAmount`.
    e.lack_attributes("payablesPayments", &["PaymentAmount"]);
    let clock = Arc::new(TokioClock::starting_at(t0()));
    let default = oracle_source(&e, OracleResource::PayablesPayments, &clock);
    let err = default
        .poll(None)
        .await
        .expect_err("no PaymentAmount on this release");
    assert!(err.to_string().contains("PaymentAmount"), "{err}");
    let renamed = builder(&e)
        .with_resource(OracleResource::PayablesPayments)
        .with_start_at(t0() - jiff::SignedDuration::from_hours(1))
        .with_clock(clock.clone())
        .with_config_str("amount_attribute", "Amount")
        .expect("amount")
        .build()
        .expect("source");
    let page = renamed.poll(None).await.expect("read with Amount");
    let amounts: Vec<String> = page
        .items
        .iter()
        .map(|i| match i {
            ml_core::record::SourceItem::Record(r) => {
                r.fields.amount.expect("amount").amount.to_string()
            }
            ml_core::record::SourceItem::Rejected(x) => panic!("rejected: {}", x.reason),
        })
        .collect();
    assert_eq!(amounts, ["100.25", "100.25", "100.25"]);
    let keyed = builder(&e)
        .with_resource(OracleResource::PayablesPayments)
        .with_config_str("key_attribute", "PaymentId")
        .expect("key")
        .build()
        .expect("source");
    assert_eq!(keyed.spec().key, "PaymentId");
    let bad = builder(&e)
        .with_config_str("key_attribute", "none")
        .expect("set")
        .build()
        .expect_err("a key is required");
    assert!(
        bad.to_string().contains("ORACLE_FUSION_KEY_ATTRIBUTE"),
        "{bad}"
    );
}

/// A release without `CurrencyCode` on journal batches: with the ledger's currency set
/// (`ORACLE_FUSION_CURRENCY`, `currency` in a file's settings) their amounts are money, so
/// amount rules match them; a code that is not ISO 4217 is refused by name.
#[tokio::test]
async fn the_ledger_currency_gives_amounts_a_release_serves_without_one() {
    use ml_oracle_fusion::OracleFusionConfigKey as K;
    let e = OracleEmulator::start().await.expect("emulator");
    e.lack_attributes("journalBatches", &JOURNAL_LACKS);
    e.upsert("journalBatches", &journal_batch(1, 1));
    let source = builder(&e)
        .with_resource(OracleResource::JournalBatches)
        .with_start_at(t0() - jiff::SignedDuration::from_hours(1))
        .with_config(K::Currency, "usd")
        .build()
        .expect("source");
    let page = source.poll(None).await.expect("page");
    let amounts: Vec<String> = page
        .items
        .iter()
        .filter_map(|i| match i {
            ml_core::record::SourceItem::Record(r) => {
                r.fields.amount.as_ref().map(ToString::to_string)
            }
            ml_core::record::SourceItem::Rejected(_) => None,
        })
        .collect();
    assert_eq!(amounts, ["900.25 USD"]);
    let e = builder(&e)
        .with_resource(OracleResource::JournalBatches)
        .with_config(K::Currency, "dollars")
        .build()
        .expect_err("not a code");
    assert!(e.to_string().contains("ORACLE_FUSION_CURRENCY"), "{e}");
}
