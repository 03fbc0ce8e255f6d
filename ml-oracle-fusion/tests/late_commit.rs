//! A late commit behind a page already read (issue 9, defect 1): during a multi-page cycle
//! an invoice is committed with a `LastUpdateDate` behind the newest row of page 1. The
//! emulator's stamps do not track this host's clock (the data is months old), so only the
//! stamps tell the cursor what may still arrive.

mod common;

use std::time::Duration;

use common::{builder, key, t0};
use jiff::SignedDuration;
use ml_core::record::SourceItem;
use ml_core::source::Source;
use ml_oracle_fusion::Paging;
use ml_sandbox::oracle::{OracleEmulator, invoice_json};

/// Reads pages until the cycle ends; `between` runs after every page but the last.
async fn read_cycle(
    s: &dyn Source,
    pos: &mut Option<ml_core::Position>,
    mut between: impl AsyncFnMut(usize, &[SourceItem]),
) -> (Vec<SourceItem>, usize) {
    let mut items = Vec::new();
    let mut pages = 0;
    loop {
        let page = s.poll(pos.as_ref()).await.expect("poll");
        pages += 1;
        *pos = Some(page.next);
        let more = page.more;
        if more {
            between(pages, &page.items).await;
        }
        items.extend(page.items);
        if !more {
            return (items, pages);
        }
        assert!(pages < 1_000, "the cycle does not end");
    }
}

fn stamp(i: &SourceItem) -> jiff::Timestamp {
    match i {
        SourceItem::Record(r) => r.modified_at,
        SourceItem::Rejected(x) => x.modified_at.expect("stamp"),
    }
}

#[tokio::test]
async fn a_commit_behind_page_one_arrives_in_this_cycle_or_the_next() {
    for paging in [Paging::Keyset, Paging::AnchoredOffset] {
        let e = OracleEmulator::start().await.expect("emulator");
        // One invoice every 20 s: a page of 5 spans 100 s, more than the 60 s overlap, so
        // the watermark at the end of the cycle is far ahead of page 1.
        for id in 1..=40 {
            e.upsert_raw(
                "invoices",
                &invoice_json(id, t0() + SignedDuration::from_secs(id * 20), "1.00", "A"),
            );
        }
        let s = builder(&e)
            .with_page_size(5)
            .with_paging(paging)
            .with_overlap(Duration::from_secs(60))
            .build()
            .expect("source");
        let http = ml_core::http::ClientOptions::default()
            .client()
            .expect("client");
        let put = format!("{}sandbox/oracle/invoices", e.base_url());
        let mut pos = None;
        let mut late_stamp = None;
        let (first, pages) = read_cycle(&s, &mut pos, async |page_no, items: &[SourceItem]| {
            if page_no != 1 {
                return;
            }
            // A transaction stamped 50 s behind page 1's newest row commits now.
            let newest = items.iter().map(stamp).max().expect("page 1 has rows");
            let t = newest - SignedDuration::from_secs(50);
            late_stamp = Some(t);
            let r = http
                .put(&put)
                .body(invoice_json(9_001, t, "50.00", "Late Ltd"))
                .send()
                .await
                .expect("put");
            assert_eq!(r.status(), 200);
        })
        .await;
        assert!(pages >= 8, "{paging:?}: a multi-page cycle ({pages} pages)");
        assert!(
            late_stamp.is_some(),
            "{paging:?}: the late commit was staged"
        );
        let (second, _) = read_cycle(&s, &mut pos, async |_, _: &[SourceItem]| {}).await;
        let keys: Vec<String> = first.iter().chain(&second).map(key).collect();
        assert!(
            keys.contains(&"9001".to_owned()),
            "{paging:?}: the late commit stamped {late_stamp:?} was lost"
        );
        for id in 1..=40 {
            assert!(keys.contains(&id.to_string()), "{paging:?}: {id} missing");
        }
    }
}

#[tokio::test]
async fn the_source_passes_the_late_commit_conformance_check() {
    for paging in [Paging::Keyset, Paging::AnchoredOffset] {
        let e = OracleEmulator::start().await.expect("emulator");
        for id in 1..=40 {
            e.upsert_raw(
                "invoices",
                &invoice_json(id, t0() + SignedDuration::from_secs(id * 20), "1.00", "A"),
            );
        }
        let s = builder(&e)
            .with_page_size(5)
            .with_paging(paging)
            .with_overlap(Duration::from_secs(60))
            .build()
            .expect("source");
        ml_core::testing::source::late_commit_conformance(&s, Duration::from_secs(60), async |t| {
            e.upsert_raw("invoices", &invoice_json(9_002, t, "7.00", "Late"));
            "9002".to_owned()
        })
        .await;
    }
}

#[tokio::test]
async fn a_pod_refusing_or_is_swept_one_window_a_request() {
    let e = OracleEmulator::start().await.expect("emulator");
    e.refuse_disjunction(true);
    // One invoice every 100 s, 5 a page: every page leaves its own window.
    for id in 1..=40 {
        e.upsert_raw(
            "invoices",
            &invoice_json(id, t0() + SignedDuration::from_secs(id * 100), "1.00", "A"),
        );
    }
    let s = builder(&e)
        .with_page_size(5)
        .with_paging(Paging::AnchoredOffset)
        .with_overlap(Duration::from_secs(60))
        .build()
        .expect("source");
    ml_core::testing::source::late_commit_conformance(&s, Duration::from_secs(30), async |t| {
        e.upsert_raw("invoices", &invoice_json(9_003, t, "7.00", "Late"));
        "9003".to_owned()
    })
    .await;
    // The first sweep request named several windows and was refused once; the rest of the
    // sweep went one window a request.
    assert_eq!(e.faults().status_count("invoices", 400), 1);
}
