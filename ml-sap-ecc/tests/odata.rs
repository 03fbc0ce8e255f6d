//! The OData v2 source against the Gateway emulator: conformance in every paging mode,
//! late commits, server-driven paging with ties across `__next`, errors, CSRF writes.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use ml_core::config::MapEnv;
use ml_core::record::SourceItem;
use ml_core::source::Source;
use ml_core::testing::source::{SourceExpectations, late_commit_conformance, source_conformance};
use ml_sandbox::Emulator as _;
use ml_sandbox::sap_odata::{SapODataEmulator, purchase_order};
use ml_sap_ecc::odata::{SapODataBuilder, SapODataPaging, SapODataSource, WriteMethod};

const SET: &str = "PurchaseOrderSet";
const MODES: [SapODataPaging; 3] = [
    SapODataPaging::NextLink,
    SapODataPaging::Keyset,
    SapODataPaging::Offset,
];

fn t0() -> Timestamp {
    "2024-03-01T08:00:00Z".parse().expect("t0")
}

fn builder(e: &SapODataEmulator) -> SapODataBuilder {
    let mut env = MapEnv::new();
    for (k, v) in e.env() {
        env.set(k, v);
    }
    SapODataBuilder::from_env_with(&env).with_retry(ml_core::retry::RetryPolicy::none())
}

fn key(i: &SourceItem) -> String {
    match i {
        SourceItem::Record(r) => r.key.clone(),
        SourceItem::Rejected(x) => x.key.clone().unwrap_or_default(),
    }
}

/// Reads one cycle; returns its items and the number of polls.
async fn cycle(
    s: &SapODataSource,
    pos: &mut Option<ml_core::Position>,
) -> (Vec<SourceItem>, usize) {
    let mut items = Vec::new();
    let mut polls = 0;
    loop {
        let page = s.poll(pos.as_ref()).await.expect("poll");
        polls += 1;
        *pos = Some(page.next);
        items.extend(page.items);
        if !page.more {
            return (items, polls);
        }
        assert!(polls < 10_000, "the cycle does not end");
    }
}

#[tokio::test]
async fn conforms_in_every_paging_mode_with_server_paging_below_top() {
    for mode in MODES {
        let e = SapODataEmulator::start().await.expect("emulator");
        let bad = e.load_traps(237, t0(), 1_000);
        e.set_max_page(7);
        let s = builder(&e)
            .with_page_size(10)
            .with_paging(mode)
            .build()
            .expect("source");
        source_conformance(
            &s,
            &SourceExpectations {
                items: 237,
                max_page: 10,
            },
        )
        .await;
        // One full read: every key once or more, the malformed ones rejected with a reason.
        let mut pos = None;
        let (items, _) = cycle(&s, &mut pos).await;
        let mut rejected = 0;
        for i in &items {
            if let SourceItem::Rejected(x) = i {
                assert!(x.reason.contains("NetAmount"), "{}", x.reason);
                assert!(bad.contains(x.key.as_deref().unwrap_or_default()));
                rejected += 1;
            }
        }
        assert_eq!(rejected, bad.len(), "{mode:?}");
        if mode == SapODataPaging::NextLink {
            // `__next` was followed: the emulator served pages of its own cap.
            assert!(e.reads() > 237 / 7, "{mode:?}: {} reads", e.reads());
        }
    }
}

#[tokio::test]
async fn amounts_dates_and_unicode_arrive_exactly() {
    let e = SapODataEmulator::start().await.expect("emulator");
    e.upsert(
        SET,
        &purchase_order("4500000042", "98765432109876.54", "EUR", "株式会社テスト"),
        t0() + SignedDuration::from_millis(123),
    );
    e.upsert(
        SET,
        &purchase_order("4500000043", "-0.01", "JPY", "Ørsted A/S"),
        t0(),
    );
    let s = builder(&e).build().expect("source");
    let page = s.poll(None).await.expect("poll");
    let records: BTreeMap<String, _> = page
        .items
        .iter()
        .filter_map(|i| match i {
            SourceItem::Record(r) => Some((r.key.clone(), r.clone())),
            SourceItem::Rejected(_) => None,
        })
        .collect();
    let r = &records["4500000042"];
    let m = r.fields.amount.expect("amount");
    assert_eq!(m.amount.to_string(), "98765432109876.54");
    assert_eq!(m.currency.as_str(), "EUR");
    assert_eq!(r.fields.supplier.as_deref(), Some("株式会社テスト"));
    assert_eq!(r.modified_at, t0() + SignedDuration::from_millis(123));
    assert!(
        r.raw.as_str().contains("\"98765432109876.54\""),
        "raw keeps the text"
    );
    assert!(
        r.link
            .as_deref()
            .is_some_and(|l| l.ends_with("PurchaseOrderSet('4500000042')"))
    );
    assert_eq!(
        records["4500000043"]
            .fields
            .amount
            .expect("a")
            .amount
            .to_string(),
        "-0.01"
    );
}

#[tokio::test]
async fn a_commit_behind_page_one_arrives_in_every_mode() {
    for mode in MODES {
        let e = SapODataEmulator::start().await.expect("emulator");
        e.set_max_page(3);
        // One PO every 20 s: a page of 5 spans 100 s, more than the 60 s overlap.
        for i in 1..=40i64 {
            e.upsert(
                SET,
                &purchase_order(&format!("{:010}", 4_500_000_000 + i), "1.00", "EUR", "A"),
                t0() + SignedDuration::from_secs(20 * i),
            );
        }
        let s = builder(&e)
            .with_page_size(5)
            .with_paging(mode)
            .with_overlap(Duration::from_secs(60))
            .build()
            .expect("source");
        late_commit_conformance(&s, Duration::from_secs(50), async |t| {
            e.insert_late(SET, &purchase_order("4599999999", "7.00", "EUR", "Late"), t);
            "4599999999".to_owned()
        })
        .await;
    }
}

#[tokio::test]
async fn updates_and_late_rows_arrive_next_cycle_and_nothing_twice() {
    for mode in MODES {
        let e = SapODataEmulator::start().await.expect("emulator");
        e.set_max_page(4);
        e.load_traps(60, t0(), 10_000);
        let s = builder(&e)
            .with_page_size(9)
            .with_paging(mode)
            .with_overlap(Duration::from_secs(30))
            .build()
            .expect("source");
        let mut pos = None;
        let (first, _) = cycle(&s, &mut pos).await;
        let first_keys: std::collections::BTreeSet<String> = first.iter().map(key).collect();
        assert_eq!(first_keys.len(), 60, "{mode:?}");
        // An update of a served row, and a late row 10 s behind the newest stamp.
        let newest = t0() + SignedDuration::from_secs(190);
        assert!(e.touch(
            SET,
            "4500000001",
            newest + SignedDuration::from_secs(5),
            Some(("Status", "10".into()))
        ));
        e.insert_late(
            SET,
            &purchase_order("4500009999", "3.00", "EUR", "Late"),
            newest - SignedDuration::from_secs(10),
        );
        let (second, _) = cycle(&s, &mut pos).await;
        let fresh: Vec<String> = second
            .iter()
            .filter_map(|i| match i {
                SourceItem::Record(r) if r.key == "4500000001" => Some(format!(
                    "{}:{}",
                    r.key,
                    r.fields.status.as_deref().unwrap_or("")
                )),
                SourceItem::Record(r) if r.key == "4500009999" => Some(r.key.clone()),
                _ => None,
            })
            .collect();
        assert!(
            fresh.contains(&"4500000001:10".to_owned()),
            "{mode:?}: update lost: {fresh:?}"
        );
        assert!(
            fresh.contains(&"4500009999".to_owned()),
            "{mode:?}: late row lost"
        );
    }
}

#[tokio::test]
async fn errors_are_classified() {
    let e = SapODataEmulator::start().await.expect("emulator");
    e.load_traps(5, t0(), 1_000);
    // Wrong password: an authentication error, permanent, without the password.
    let s = builder(&e)
        .with_basic(e.user(), "wrong-hunter2")
        .build()
        .expect("source");
    let err = s.poll(None).await.expect_err("401");
    assert!(matches!(err, ml_core::Error::Auth { .. }), "{err}");
    assert_eq!(err.class(), ml_core::ErrorClass::Permanent);
    assert!(!err.to_string().contains("hunter2"));
    // Wrong client: the logon fails too.
    let s = builder(&e).with_client("200").build().expect("source");
    assert!(matches!(
        s.poll(None).await,
        Err(ml_core::Error::Auth { .. })
    ));
    // A stamp property the service lacks: the v2 error JSON, permanent, with its code.
    let s = builder(&e)
        .with_config(
            ml_sap_ecc::odata::SapODataConfigKey::StampProperty,
            "LastChange",
        )
        .build()
        .expect("source");
    let err = s.poll(None).await.expect_err("400");
    assert_eq!(err.class(), ml_core::ErrorClass::Permanent, "{err}");
    assert_eq!(err.code(), Some("/IWBEP/CM_MGW_RT/022"), "{err}");
    assert!(err.to_string().contains("LastChange"), "{err}");
    // A 503 from the Gateway: retryable, with its Retry-After.
    e.faults().push(
        ml_sandbox::fault::FaultRule::on(SET, ml_sandbox::fault::Fault::Status(503)).times(1),
    );
    let s = builder(&e).build().expect("source");
    let err = s.poll(None).await.expect_err("503");
    assert!(err.class().is_retryable(), "{err}");
    s.poll(None).await.expect("then fine");
    s.healthcheck().await.expect("healthcheck");
}

#[tokio::test]
async fn writes_fetch_and_reuse_the_csrf_token_and_refetch_once_expired() {
    let e = SapODataEmulator::start().await.expect("emulator");
    let s = builder(&e).build().expect("source");
    let created = s
        .write(
            WriteMethod::Post,
            SET,
            Some(&serde_json::json!({"PurchaseOrder": "4500000777", "NetAmount": "10.00", "Currency": "EUR", "SupplierName": "W"})),
        )
        .await
        .expect("create");
    assert_eq!(created.status, 201);
    assert_eq!(
        created.entity.as_ref().expect("d")["PurchaseOrder"],
        "4500000777"
    );
    assert!(created.message.is_some_and(|m| m.severity == "success"));
    let updated = s
        .write(
            WriteMethod::Merge,
            "PurchaseOrderSet('4500000777')",
            Some(&serde_json::json!({"Status": "05"})),
        )
        .await
        .expect("merge");
    assert_eq!(updated.status, 204);
    // One token fetch served both writes.
    assert_eq!(e.csrf_fetches(), 1, "token fetched once");
    e.expire_csrf_tokens();
    s.write(
        WriteMethod::Merge,
        "PurchaseOrderSet('4500000777')",
        Some(&serde_json::json!({"Status": "06"})),
    )
    .await
    .expect("a refused token is fetched again once");
    assert_eq!(e.csrf_fetches(), 2);
    assert_eq!(e.get(SET, "4500000777").expect("row").0["Status"], "06");
    // The write shows up in the next poll.
    let page = s.poll(None).await.expect("poll");
    assert!(page.items.iter().any(|i| key(i) == "4500000777"));
    // Without a token the Gateway refuses a write.
    let client = ml_core::http::ClientOptions::default()
        .client()
        .expect("client");
    let r = client
        .post(format!(
            "{}PurchaseOrderSet?sap-client=100",
            e.service_url()
        ))
        .basic_auth(e.user(), Some(e.password()))
        .json(&serde_json::json!({"PurchaseOrder": "1"}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["x-csrf-token"], "Required");
    assert!(
        s.write(WriteMethod::Delete, "/etc/passwd", None)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn the_emulator_is_strict_where_the_gateway_is() {
    let e = SapODataEmulator::start().await.expect("emulator");
    e.load_traps(3, t0(), 1_000);
    let client = ml_core::http::ClientOptions::default()
        .client()
        .expect("client");
    let get = |q: &str| {
        client
            .get(format!("{}PurchaseOrderSet?{q}", e.service_url()))
            .basic_auth(e.user(), Some(e.password()))
            .send()
    };
    // No sap-client: the default client is not ours.
    assert_eq!(get("$format=json").await.expect("r").status(), 401);
    // No $format and no Accept: Atom XML.
    let r = get("sap-client=100").await.expect("r");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .expect("ct")
            .starts_with("application/atom+xml")
    );
    // A bad $filter: 400 with the v2 error JSON.
    let r = get("sap-client=100&$format=json&$filter=ChangedAt%20ge%20'2024'")
        .await
        .expect("r");
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.expect("json");
    assert!(
        body["error"]["message"]["value"]
            .as_str()
            .expect("v")
            .contains("Edm.DateTime")
    );
    // Decimal and Int64 as strings, __count as a string, /Date(ms)/.
    let r: serde_json::Value = get("sap-client=100&$format=json&$inlinecount=allpages")
        .await
        .expect("r")
        .json()
        .await
        .expect("json");
    assert_eq!(r["d"]["__count"], "3");
    let first = &r["d"]["results"][0];
    assert!(first["NetAmount"].is_string() && first["ItemCount"].is_string());
    assert!(
        first["ChangedAt"]
            .as_str()
            .expect("date")
            .starts_with("/Date(")
    );
    assert!(first["__metadata"]["etag"].is_string());
}

#[tokio::test]
async fn a_served_row_updated_mid_chain_loses_nothing_in_keyset_and_offset_modes() {
    for mode in [SapODataPaging::Keyset, SapODataPaging::Offset] {
        let e = SapODataEmulator::start().await.expect("emulator");
        e.set_max_page(5);
        // One row an hour: far more than the overlap, so only the paging can save a row.
        for i in 1..=30i64 {
            e.upsert(
                SET,
                &purchase_order(&format!("{:010}", 4_500_000_000 + i), "1.00", "EUR", "A"),
                t0() + SignedDuration::from_hours(i),
            );
        }
        let s = builder(&e)
            .with_page_size(5)
            .with_paging(mode)
            .with_overlap(Duration::from_secs(60))
            .build()
            .expect("source");
        let mut pos = None;
        let mut seen = std::collections::BTreeSet::new();
        let mut polls = 0;
        loop {
            let page = s.poll(pos.as_ref()).await.expect("poll");
            polls += 1;
            seen.extend(page.items.iter().map(key));
            pos = Some(page.next);
            if polls == 2 {
                // A row already served moves to the end: every row behind it shifts by one.
                assert!(e.touch(
                    SET,
                    "4500000002",
                    t0() + SignedDuration::from_hours(100),
                    None
                ));
            }
            if !page.more {
                break;
            }
        }
        for i in 1..=30i64 {
            assert!(
                seen.contains(&format!("{:010}", 4_500_000_000 + i)),
                "{mode:?}: row {i} lost"
            );
        }
    }
}

/// The emulator's `$skiptoken` is a row offset, as in many hand-written DPCs: following
/// `__next` opaquely skips a row when a served row moves mid-chain. This is why `next` is
/// not the default; the test keeps the trap honest (and fails if the emulator loses it).
#[tokio::test]
async fn next_link_mode_trusts_an_offset_skiptoken_and_skips_a_shifted_row() {
    let e = SapODataEmulator::start().await.expect("emulator");
    e.set_max_page(2);
    for i in 1..=30i64 {
        e.upsert(
            SET,
            &purchase_order(&format!("{:010}", 4_500_000_000 + i), "1.00", "EUR", "A"),
            t0() + SignedDuration::from_hours(i),
        );
    }
    let s = builder(&e)
        .with_page_size(5)
        .with_paging(SapODataPaging::NextLink)
        .with_overlap(Duration::from_secs(60))
        .build()
        .expect("source");
    let mut pos = None;
    let mut seen = std::collections::BTreeSet::new();
    let mut polls = 0;
    loop {
        let page = s.poll(pos.as_ref()).await.expect("poll");
        polls += 1;
        seen.extend(page.items.iter().map(key));
        pos = Some(page.next);
        if polls == 2 {
            assert!(e.touch(
                SET,
                "4500000002",
                t0() + SignedDuration::from_hours(100),
                None
            ));
        }
        if !page.more {
            break;
        }
    }
    let missing: Vec<i64> = (1..=30i64)
        .filter(|i| !seen.contains(&format!("{:010}", 4_500_000_000 + i)))
        .collect();
    assert_eq!(
        missing.len(),
        1,
        "exactly the shifted row is skipped: {missing:?}"
    );
}
