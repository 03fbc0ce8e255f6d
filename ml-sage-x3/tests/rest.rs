//! api1 against the emulator: conformance, the `$next`-by-key trap, ties, late rows,
//! updates during a run, the 500 on an unknown property, and the exact request count.

mod common;

use std::collections::BTreeSet;

use common::{cycle, records, rest};
use jiff::{SignedDuration, Timestamp};
use ml_core::Source as _;
use ml_core::record::SourceItem;
use ml_core::testing::source::{SourceExpectations, source_conformance};
use ml_sage_x3::X3Class;
use ml_sandbox::fault::{Fault, FaultRule};
use ml_sandbox::sage_x3::SageX3Emulator;

async fn demo() -> SageX3Emulator {
    let e = SageX3Emulator::start().await.expect("emulator");
    e.load_demo();
    e
}

#[tokio::test]
async fn conformance_for_each_class() {
    let e = demo().await;
    for (class, n) in [
        (X3Class::PurchaseOrders, 7),
        (X3Class::SupplierInvoices, 6),
        (X3Class::GlEntries, 3),
        (X3Class::Suppliers, 4),
    ] {
        let s = rest(&e)
            .with_class(class)
            .with_page_size(2)
            .build()
            .expect("source");
        source_conformance(
            &s,
            &SourceExpectations {
                items: n,
                max_page: 2,
            },
        )
        .await;
    }
}

#[tokio::test]
async fn a_stamp_ordered_next_would_skip_rows_the_key_walk_reads_them_all() {
    let e = demo().await;
    // What a naive client does: orderBy the stamp and follow $next. PO-0001 (lowest key,
    // latest stamp) comes last in stamp order; `key=gt.` after the first page skips it.
    let client = ml_core::http::ClientOptions::default()
        .client()
        .expect("client");
    let url = format!(
        "{}api1/x3/erp/SEED/PORDER?representation=PORDER.$query&count=2&orderBy=UPDDATTIM%20asc",
        e.base_url()
    );
    let mut naive = BTreeSet::new();
    let mut next = Some(url);
    while let Some(u) = next {
        let v: serde_json::Value = client
            .get(&u)
            .basic_auth(
                ml_sandbox::sage_x3::USER,
                Some(ml_sandbox::sage_x3::PASSWORD),
            )
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        for r in v["$resources"].as_array().expect("resources") {
            naive.insert(r["POHNUM"].as_str().expect("key").to_owned());
        }
        next = v["$links"]["$next"]["$url"].as_str().map(str::to_owned);
    }
    assert!(naive.len() < 7, "the trap is in place: {naive:?}");

    let s = rest(&e).with_page_size(2).build().expect("source");
    let before = e.api1_calls();
    let (items, pos) = cycle(&s, None).await;
    let keys: BTreeSet<String> = records(&items).iter().map(|r| r.key.clone()).collect();
    assert_eq!(keys.len(), 7, "{keys:?}");
    // Requests: one probe, then ceil(7 / 2) pages.
    assert_eq!(e.api1_calls() - before, 1 + 4);

    // The next cycle re-reads the overlap and serves nothing again.
    let (again, pos) = cycle(&s, pos).await;
    assert!(again.is_empty(), "{} served again", again.len());

    // An update during a run: PO-0003 (one of the tied rows) changes; only it comes back.
    assert!(e.touch(
        "PORDER",
        "PO-0003",
        Some(("APPFLG", serde_json::json!("3")))
    ));
    let (changed, _) = cycle(&s, pos).await;
    let changed = records(&changed);
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].key, "PO-0003");
    assert_eq!(changed[0].fields.status.as_deref(), Some("Approved"));
    assert_eq!(
        changed[0]
            .fields
            .extra
            .get("status_code")
            .map(String::as_str),
        Some("3")
    );
}

#[tokio::test]
async fn late_rows_within_the_overlap_arrive_next_cycle() {
    let e = demo().await;
    let s = rest(&e)
        .with_class(X3Class::SupplierInvoices)
        .with_page_size(3)
        .build()
        .expect("source");
    let (first, pos) = cycle(&s, None).await;
    assert_eq!(first.len(), 6);
    let rejected: Vec<_> = first
        .iter()
        .filter_map(|i| match i {
            SourceItem::Rejected(x) => Some(x.reason.clone()),
            SourceItem::Record(_) => None,
        })
        .collect();
    assert_eq!(rejected.len(), 1, "the malformed invoice");
    assert!(rejected[0].contains("n/a"), "{rejected:?}");
    // A credit note is negative.
    let credit = records(&first)
        .into_iter()
        .find(|r| r.key == "FAC-0003")
        .expect("credit note");
    assert!(
        credit
            .fields
            .amount
            .expect("amount")
            .amount
            .is_sign_negative()
    );
    // A transaction stamped 2 minutes ago commits only now, after later stamps were served.
    let late_at = Timestamp::now() - SignedDuration::from_mins(2);
    e.stage_late(
        "PINVOICE",
        &serde_json::json!({"NUM": "FAC-LATE", "BPR": "S001", "BPRNAM": "Zoë Ünicode", "AMTATI": "10.00", "CUR": "EUR", "INVTYP": 1}),
        late_at,
    );
    let (none, pos) = cycle(&s, pos).await;
    assert!(none.is_empty());
    e.commit_late();
    let (late, _) = cycle(&s, pos).await;
    let late = records(&late);
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].key, "FAC-LATE");
    assert_eq!(late[0].fields.supplier.as_deref(), Some("Zoë Ünicode"));
}

#[tokio::test]
async fn an_unknown_property_is_a_configuration_error_naming_it_not_an_outage() {
    let e = demo().await;
    e.lack_properties("PORDER", &["UPDDATTIM"]);
    let s = rest(&e).build().expect("source");
    let before = e.api1_calls();
    let err = s.poll(None).await.expect_err("no stamp");
    assert_eq!(err.class(), ml_core::ErrorClass::Permanent, "{err}");
    match &err {
        ml_core::Error::Config { key, message } => {
            assert_eq!(key, "SAGE_X3_STAMP");
            assert!(message.contains("`UPDDATTIM`"), "{message}");
        }
        other => panic!("expected a config error, got {other}"),
    }
    // The query and one diagnosis, no retry loop.
    assert_eq!(e.api1_calls() - before, 2);
    assert!(s.healthcheck().await.is_err());
    // A configured key the representation lacks is named too.
    e.lack_properties("PORDER", &[]);
    let s = rest(&e)
        .with_config_str("key", "POHNUMBER")
        .expect("key")
        .build()
        .expect("source");
    let err = s.poll(None).await.expect_err("bad key");
    assert!(err.to_string().contains("POHNUMBER"), "{err}");
    // A plain 500 storm is an outage: retried, then the page comes.
    let s = rest(&e).build().expect("source");
    e.faults()
        .push(FaultRule::on("PORDER", Fault::Status(500)).times(2));
    let (items, _) = cycle(&s, None).await;
    assert_eq!(items.len(), 7);
    // Transient 500s around a plain read that answers: the query, then (the plain read
    // passing) its resend, both 500. Sent again after a wait, it is read; two 500s are not
    // taken for a refused query.
    let s = rest(&e).build().expect("source");
    e.faults()
        .push(FaultRule::on("PORDER", Fault::Status(500)).times(1));
    e.faults().push(
        FaultRule::on("PORDER", Fault::Status(500))
            .after(1)
            .times(1),
    );
    let (items, _) = cycle(&s, None).await;
    assert_eq!(items.len(), 7);
    assert_eq!(e.faults().pending_rules(), 0, "both 500s were answered");
}

#[tokio::test]
async fn ten_thousand_rows_once_with_the_exact_request_count() {
    let e = SageX3Emulator::start().await.expect("emulator");
    let t0: Timestamp = "2026-01-05T08:00:00Z".parse().expect("t0");
    e.load_synthetic(10_000, t0, 7);
    let s = rest(&e).with_page_size(200).build().expect("source");
    let before = e.api1_calls();
    let (items, pos) = cycle(&s, None).await;
    assert_eq!(items.len(), 10_000);
    let keys: BTreeSet<String> = records(&items).iter().map(|r| r.key.clone()).collect();
    assert_eq!(keys.len(), 10_000, "each once");
    assert_eq!(e.api1_calls() - before, 1 + 10_000 / 200, "probe + pages");
    let first = records(&items)[0].fields.amount.expect("amount");
    assert_eq!(first.amount.to_string(), "1.25");
    // The next cycle re-reads only the overlap (rows 7,897..=10,000: 2,104 stamped within
    // 5 minutes of the last) and
    // serves no new version; rows beyond the 2,000 the position remembers come again with
    // their version, for the journal's dedupe.
    let before = e.api1_calls();
    let served: BTreeSet<(String, String)> = records(&items)
        .iter()
        .map(|r| (r.key.clone(), r.dedupe_version()))
        .collect();
    let (again, _) = cycle(&s, pos).await;
    assert_eq!(again.len(), 104);
    for r in records(&again) {
        assert!(
            served.contains(&(r.key.clone(), r.dedupe_version())),
            "{}",
            r.key
        );
    }
    assert_eq!(e.api1_calls() - before, 1 + 2_104_u64.div_ceil(200));
}

#[tokio::test]
async fn a_server_serving_civil_time_in_the_site_zone() {
    let paris = jiff::tz::TimeZone::get("Europe/Paris").expect("tz");
    let e = SageX3Emulator::builder()
        .zone(paris)
        .start()
        .await
        .expect("emulator");
    let t: Timestamp = "2026-03-20T14:53:51Z".parse().expect("t");
    e.upsert_at(
        "PORDER",
        &serde_json::json!({"POHNUM": "PO-1", "BPSNAM": "Ça va", "TOTLINAMT": 1, "CUR": "EUR"}),
        t,
    );
    e.upsert_at(
        "PORDER",
        &serde_json::json!({"POHNUM": "PO-0", "TOTLINAMT": 2, "CUR": "EUR"}),
        t + SignedDuration::from_mins(1),
    );
    let s = rest(&e)
        .with_time_zone("Europe/Paris")
        .with_page_size(2)
        .build()
        .expect("source");
    let (items, pos) = cycle(&s, None).await;
    let recs = records(&items);
    assert_eq!(recs.len(), 2);
    let po1 = recs.iter().find(|r| r.key == "PO-1").expect("PO-1");
    assert_eq!(po1.modified_at, t, "15:53:51 in Paris is 14:53:51Z");
    let (again, _) = cycle(&s, pos).await;
    assert!(again.is_empty());
}
