//! Change detection by the IFS history log (`IFS_CHANGE_DETECTION=history_log`) against
//! the emulator: conformance, only logged LUs, a backfill with edits, inserts and a late
//! entry between pages read exactly once, and a projection not granted -> a permanent
//! error that pauses only its stream.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use ml_core::Source as _;
use ml_core::cursor::Position;
use ml_core::error::ErrorClass;
use ml_core::memory::{MemoryAuditStore, MemorySink};
use ml_core::record::{EntityKind, SourceItem};
use ml_core::retry::RetryPolicy;
use ml_core::routing::{Condition, MatchMode, Router, Rule};
use ml_core::testing::source::{SourceExpectations, source_conformance};
use ml_core::{Pipeline, Schedule, Stream};
use ml_ifs::{ChangeDetection, IfsBuilder, IfsResource, IfsSource};
use ml_sandbox::Emulator as _;
use ml_sandbox::ifs::{HistoryAccess, IfsEmulator, invoice};
use serde_json::json;

const SET: &str = "ManSuppInvoiceSet";
const LU: &str = "ManSuppInvoice";

fn builder(e: &IfsEmulator) -> IfsBuilder {
    let mut env = ml_core::config::MapEnv::new();
    for (k, v) in e.env() {
        env.set(k, v);
    }
    IfsBuilder::from_env_with(&env)
        .with_company("10")
        .with_retry(
            RetryPolicy::default()
                .with_base_delay(Duration::from_millis(5))
                .with_max_attempts(4),
        )
}

fn history(b: IfsBuilder) -> IfsSource {
    b.with_config_str("change_detection", "history_log")
        .and_then(|b| b.with_config_str("history_lu_names", LU))
        .expect("keys")
        .build()
        .expect("source")
}

fn hour_ago() -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second() - 3600).expect("t")
}

/// Polls one cycle (until `more` is false), calling `between` after each page.
async fn cycle(
    s: &IfsSource,
    pos: &mut Option<Position>,
    mut between: impl FnMut(usize),
) -> Vec<SourceItem> {
    let mut out = Vec::new();
    for page_no in 0.. {
        let page = s.poll(pos.as_ref()).await.expect("poll");
        out.extend(page.items);
        *pos = Some(page.next);
        if !page.more {
            break;
        }
        between(page_no);
    }
    out
}

fn key_version(i: &SourceItem) -> (String, String) {
    match i {
        SourceItem::Record(r) => (r.key.clone(), r.dedupe_version()),
        SourceItem::Rejected(x) => (x.identity(), String::new()),
    }
}

#[tokio::test]
async fn history_mode_conforms_and_reads_only_logged_lus() {
    let e = IfsEmulator::start().await.expect("emulator");
    // Written before logging was enabled: not in the log, so not read.
    e.insert(
        SET,
        &invoice("10", 1, "1.00", "AwaitingApproval", Some(hour_ago())),
    )
    .expect("before");
    e.enable_history_log(LU);
    for i in 2..=30 {
        e.insert(SET, &invoice("10", i, "5.00", "AwaitingApproval", None))
            .expect("insert");
    }
    // Another company's invoices are logged but filtered out when read by key.
    e.insert(SET, &invoice("20", 99, "5.00", "AwaitingApproval", None))
        .expect("insert");
    // Purchase orders are not logged (their LU is not enabled).
    e.insert(
        "PurchaseOrderSet",
        &json!({"OrderNo": "P1", "Company": "10", "VendorNo": "S1", "VendorName": "x",
                "Objstate": "Released", "Contract": "SE01", "OrderDate": "2026-03-02",
                "TotalGrossAmount": "1.00", "CurrencyCode": "SEK"}),
    )
    .expect("po");
    e.update("PurchaseOrderSet", &["P1"], &json!({"Objstate": "Closed"}))
        .expect("po update");
    assert_eq!(e.history_entries(), 30, "29 + 1 invoices logged, no PO");
    let s = history(builder(&e).with_page_size(6));
    assert!(matches!(
        s.change_detection(),
        ChangeDetection::HistoryLog { lu_names, .. } if lu_names == &[LU.to_owned()]
    ));
    source_conformance(
        &s,
        &SourceExpectations {
            items: 29,
            max_page: 6,
        },
    )
    .await;
    s.healthcheck().await.expect("healthcheck");
    let mut pos = None;
    let all = cycle(&s, &mut pos, |_| {}).await;
    let keys: BTreeSet<String> = all.iter().map(|i| key_version(i).0).collect();
    assert!(!keys.contains("Company='10',InvoiceId=1"), "never logged");
    assert!(!keys.iter().any(|k| k.contains("'20'")), "other company");
    // An edit without a stamp change (a set whose date is not maintained) is found
    // through the log, in its new version.
    let etag = e
        .update_unstamped(SET, &["10", "7"], &json!({"Objstate": "Approved"}))
        .expect("edit");
    let next = cycle(&s, &mut pos, |_| {}).await;
    let got: Vec<(String, String)> = next.iter().map(key_version).collect();
    assert!(
        got.contains(&("Company='10',InvoiceId=7".to_owned(), etag)),
        "{got:?}"
    );
}

#[tokio::test]
async fn backfill_with_edits_inserts_and_a_late_entry_loses_nothing() {
    let e = IfsEmulator::start().await.expect("emulator");
    e.enable_history_log(LU);
    // 1,500 inserts in the same few seconds: long runs of equal TimeStamps (ties).
    e.load_invoices("10", 1_500, hour_ago(), 7).expect("load");
    // The server cuts pages at 100 entries although the client asks 150.
    e.set_max_page_size(100);
    let s = history(builder(&e).with_page_size(150));
    let mut pos = None;
    let mut next_id = 10_000;
    let mut edited = BTreeSet::new();
    let first = cycle(&s, &mut pos, |page| {
        // Between pages: a new invoice, an edit of an invoice already served and one not
        // yet served, and once a history entry committed late (stamped behind the reader).
        next_id += 1;
        e.insert(
            SET,
            &invoice("10", next_id, "1.00", "AwaitingApproval", None),
        )
        .expect("insert");
        for id in [page as u64 * 100 + 1, page as u64 * 100 + 700] {
            if id <= 1_500 {
                let id = id.to_string();
                e.update_unstamped(SET, &["10", &id], &json!({"GrossAmount": "2.00"}))
                    .expect("edit");
                edited.insert(id);
            }
        }
        if page == 4 {
            // Invoice 3 changes in a transaction whose entry becomes visible only now,
            // stamped a minute ago (behind the reader).
            e.disable_history_log(LU);
            e.update_unstamped(SET, &["10", "3"], &json!({"Objstate": "Approved"}))
                .expect("late change");
            e.enable_history_log(LU);
            e.append_history_entry(
                SET,
                &["10", "3"],
                "Update",
                Timestamp::now() - SignedDuration::from_secs(60),
            )
            .expect("late");
        }
        if page == 2 {
            e.metadata_refresh(1);
        }
    })
    .await;
    let mut counts: BTreeMap<(String, String), usize> = BTreeMap::new();
    for i in &first {
        *counts.entry(key_version(i)).or_default() += 1;
    }
    // A record is read once per history entry it has ahead of the reader: an invoice
    // edited before its insert entry was reached comes twice in the same (current)
    // version, which the journal's dedupe drops. Nothing else repeats.
    let twice: Vec<_> = counts
        .iter()
        .filter(|((k, _), n)| {
            **n > 1
                && !edited
                    .iter()
                    .any(|id| *k == format!("Company='10',InvoiceId={id}"))
        })
        .collect();
    assert!(twice.is_empty(), "served twice in one scan: {twice:?}");
    assert!(counts.values().all(|n| *n <= 2), "{counts:?}");
    let second = cycle(&s, &mut pos, |_| {}).await;
    let journal: BTreeSet<(String, String)> =
        first.iter().chain(&second).map(key_version).collect();
    let keys: BTreeSet<&str> = journal.iter().map(|(k, _)| k.as_str()).collect();
    let expected = 1_500 + (next_id - 10_000) as usize;
    assert_eq!(keys.len(), expected, "every invoice arrives");
    assert!(
        journal.iter().all(|(_, v)| v.starts_with("W/")),
        "versions are ETags"
    );
    // Every invoice's final version was delivered (edits included).
    for id in (1..=1_500)
        .map(|i| i.to_string())
        .chain(edited.iter().cloned())
    {
        let v = e.get(SET, &["10", &id]).expect("row")["@odata.etag"]
            .as_str()
            .expect("etag")
            .to_owned();
        assert!(
            journal.contains(&(format!("Company='10',InvoiceId={id}"), v)),
            "invoice {id} delivered in its final version"
        );
    }
    // Nothing new: a third cycle brings no version not seen before.
    let third = cycle(&s, &mut pos, |_| {}).await;
    assert!(third.iter().all(|i| journal.contains(&key_version(i))));
    assert_eq!(
        e.get(SET, &["10", "3"]).expect("row")["Objstate"],
        "Approved",
        "the late change is the version checked above"
    );
}

#[tokio::test]
async fn a_history_log_not_granted_is_a_permanent_error_pausing_only_its_stream() {
    let e = IfsEmulator::start().await.expect("emulator");
    e.enable_history_log(LU);
    e.insert(SET, &invoice("10", 1, "1.00", "AwaitingApproval", None))
        .expect("insert");
    for (access, status) in [
        (HistoryAccess::Forbidden, "403"),
        (HistoryAccess::NotInstalled, "404"),
    ] {
        e.set_history_access(access);
        let s = history(builder(&e));
        let err = s.poll(None).await.expect_err("not granted");
        assert_eq!(err.class(), ErrorClass::Permanent, "{err}");
        let msg = err.to_string();
        assert!(msg.contains(status), "{msg}");
        assert!(msg.contains("HistoryLogHandling"), "{msg}");
        assert!(msg.contains("IFS_CHANGE_DETECTION=stamp"), "{msg}");
        assert!(s.healthcheck().await.is_err(), "check reports it");
    }
    // Through a pipeline: the history stream's cycle fails, the stamp stream delivers.
    let sink = Arc::new(MemorySink::new("chat"));
    let pipeline = Pipeline::builder()
        .store(Arc::new(MemoryAuditStore::new()))
        .stream(Stream::new(
            "invoices-by-history",
            Arc::new(history(builder(&e))),
            Schedule::every(Duration::from_secs(300)).expect("schedule"),
        ))
        .stream(Stream::new(
            "invoices-by-stamp",
            Arc::new(
                builder(&e)
                    .with_resource(IfsResource::SupplierInvoices)
                    .build()
                    .expect("source"),
            ),
            Schedule::every(Duration::from_secs(300)).expect("schedule"),
        ))
        .router(
            Router::new(
                MatchMode::AllMatch,
                vec![Rule {
                    name: "invoices".into(),
                    when: vec![Condition::Kind(vec![EntityKind::SupplierInvoice])],
                    to: vec!["chat:finance".into()],
                }],
            )
            .expect("router"),
        )
        .sink("chat", sink.clone())
        .build()
        .expect("pipeline");
    let summary = pipeline.run_once().await.expect("run");
    assert_eq!(summary.deliveries.delivered, 1, "{summary}");
    assert_eq!(summary.cycle_errors.len(), 1, "{:?}", summary.cycle_errors);
    assert!(
        summary.cycle_errors[0].starts_with("invoices-by-history"),
        "{:?}",
        summary.cycle_errors
    );
}

#[test]
fn bad_history_settings_name_their_key() {
    let b = IfsBuilder::new()
        .with_url("https://acme.ifs.cloud")
        .with_realm("r")
        .with_client_credentials("c", "s".to_owned());
    for (k, v, want) in [
        ("change_detection", "audit", "IFS_CHANGE_DETECTION"),
        ("history_lu_names", "Man Supp", "IFS_HISTORY_LU_NAMES"),
        ("history_path", "HistoryLogOverviewSet", "IFS_HISTORY_PATH"),
    ] {
        let bad = b
            .clone()
            .with_config_str("change_detection", "history_log")
            .and_then(|b| b.with_config_str(k, v))
            .expect("key")
            .build();
        match bad {
            Err(ml_core::Error::Config { key, .. }) => assert_eq!(key, want, "{k}={v}"),
            other => panic!("{k}={v}: expected a config error, got {other:?}"),
        }
    }
}
