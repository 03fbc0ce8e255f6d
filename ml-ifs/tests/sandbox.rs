//! The source against the IFS emulator: conformance, a 10,000-row backfill exactly once
//! with writes between pages, the time-zone trap, metadata refreshes and token expiry.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use ml_core::Source as _;
use ml_core::cursor::Position;
use ml_core::record::SourceItem;
use ml_core::retry::RetryPolicy;
use ml_core::testing::source::{SourceExpectations, source_conformance};
use ml_ifs::{IfsBuilder, IfsResource};
use ml_sandbox::Emulator as _;
use ml_sandbox::ifs::{IfsEmulator, invoice};
use serde_json::json;

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
                .with_max_attempts(6),
        )
}

fn hour_ago() -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second() - 7200).expect("t")
}

#[tokio::test]
async fn conforms_against_the_emulator() {
    let e = IfsEmulator::start().await.expect("emulator");
    e.load_invoices("10", 40, hour_ago(), 3).expect("load");
    // Another company's invoices are filtered out by the company filter.
    e.load_invoices("20", 5, hour_ago(), 3).expect("load");
    // A malformed item: an amount without a currency.
    let mut bad = invoice("10", 41, "10.00", "AwaitingApproval", Some(hour_ago()));
    bad["Currency"] = serde_json::Value::Null;
    e.insert("ManSuppInvoiceSet", &bad).expect("insert");
    let s = builder(&e).with_page_size(6).build().expect("source");
    assert!(s.to_string().starts_with("Ifs(127.0.0.1:"), "{s}");
    source_conformance(
        &s,
        &SourceExpectations {
            items: 41,
            max_page: 6,
        },
    )
    .await;
    s.healthcheck().await.expect("healthcheck");
    // A token is cached now: neither it nor the client secret shows.
    let debug = format!("{s:?} {s}");
    assert!(!debug.contains("sbx-ifs-token"), "{debug}");
    assert!(!debug.contains(e.client_secret()), "{debug}");
}

/// Polls one cycle (until `more` is false), calling `between` after each page.
async fn cycle(
    s: &ml_ifs::IfsSource,
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
async fn backfill_of_10000_is_read_exactly_once_with_writes_between_pages() {
    let e = IfsEmulator::start().await.expect("emulator");
    let start = hour_ago();
    e.load_invoices("10", 10_000, start, 7).expect("load");
    // The server cuts pages at 400 rows (with a nextLink) although the client asks 500.
    e.set_max_page_size(400);
    let s = builder(&e).with_page_size(500).build().expect("source");
    let mut pos = None;
    let mut next_id = 20_000;
    let mut edited = Vec::new();
    let first = cycle(&s, &mut pos, |page| {
        // Inserts land at the end; edits of served rows move them to the end; a late
        // commit lands behind the reader. Offset paging would skip rows here.
        next_id += 1;
        e.insert(
            "ManSuppInvoiceSet",
            &invoice("10", next_id, "1.00", "AwaitingApproval", None),
        )
        .expect("insert");
        let id = (page as u64 * 400 + 1).to_string();
        e.update(
            "ManSuppInvoiceSet",
            &["10", &id],
            &json!({"GrossAmount": "2.00"}),
        )
        .expect("update");
        edited.push(id);
        if page == 5 {
            // A row committed late, stamped inside what was already read.
            next_id += 1;
            e.insert(
                "ManSuppInvoiceSet",
                &invoice(
                    "10",
                    next_id,
                    "3.00",
                    "AwaitingApproval",
                    Some(start + SignedDuration::from_secs(10)),
                ),
            )
            .expect("late");
        }
        if page == 3 {
            e.metadata_refresh(2);
            e.issuer().expire_all();
        }
    })
    .await;
    // Within one forward scan, keyset paging never serves a (key, version) twice.
    let mut counts: BTreeMap<(String, String), usize> = BTreeMap::new();
    for i in &first {
        *counts.entry(key_version(i)).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "served twice in one scan: {twice:?}");
    // The second cycle (sweep + forward scan) brings the late commit and nothing lost.
    let second = cycle(&s, &mut pos, |_| {}).await;
    let mut journal: BTreeSet<(String, String)> = BTreeSet::new();
    for i in first.iter().chain(&second) {
        journal.insert(key_version(i));
    }
    let keys: BTreeSet<String> = journal.iter().map(|(k, _)| k.clone()).collect();
    let expected = 10_000 + (next_id - 20_000) as usize;
    assert_eq!(keys.len(), expected, "every invoice arrives");
    // The final version of every edited row was delivered.
    for id in &edited {
        let v = e.get("ManSuppInvoiceSet", &["10", id]).expect("row")["@odata.etag"]
            .as_str()
            .expect("etag")
            .to_owned();
        assert!(
            journal.contains(&(format!("Company='10',InvoiceId={id}"), v)),
            "edited {id} delivered in its final version"
        );
    }
    // A third cycle with nothing new adds nothing new.
    let third = cycle(&s, &mut pos, |_| {}).await;
    assert!(third.iter().all(|i| journal.contains(&key_version(i))));
    assert!(
        e.issuer().tokens_issued() >= 2,
        "the expired token was renewed"
    );
}

#[tokio::test]
async fn the_time_zone_header_is_always_sent() {
    let e = IfsEmulator::start().await.expect("emulator");
    let t: Timestamp = "2026-07-01T10:00:00Z".parse().expect("t");
    e.insert(
        "ManSuppInvoiceSet",
        &invoice("10", 1, "5.00", "AwaitingApproval", Some(t)),
    )
    .expect("insert");
    // Without the header, the emulator shifts to Stockholm time (UTC+2 in July), as IFS does.
    let http = ml_core::http::ClientOptions::default()
        .client()
        .expect("http");
    let token: serde_json::Value = http
        .post(e.token_url())
        .basic_auth(e.client_id(), Some(e.client_secret()))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    let raw: serde_json::Value = http
        .get(format!(
            "{}/ManualSupplierInvoiceHandling.svc/ManSuppInvoiceSet",
            e.service_root()
        ))
        .bearer_auth(token["access_token"].as_str().expect("t"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(raw["value"][0]["ModifiedDateTime"], "2026-07-01T12:00:00Z");
    assert_eq!(
        raw["value"][0]["GrossAmount"], 5.0,
        "a number without IEEE754Compatible"
    );
    let s = builder(&e)
        .with_start_at(t - SignedDuration::from_secs(1))
        .build()
        .expect("s");
    let page = s.poll(None).await.expect("poll");
    let SourceItem::Record(r) = &page.items[0] else {
        panic!("rejected")
    };
    assert_eq!(r.modified_at, t, "the source reads UTC");
    assert_eq!(r.fields.amount.expect("amount").amount.to_string(), "5.00");
}

#[tokio::test]
async fn permanent_errors_name_the_service_and_pause() {
    let e = IfsEmulator::start().await.expect("emulator");
    let s = builder(&e)
        .with_resource(IfsResource::SupplierInvoices)
        .with_config(ml_ifs::IfsConfigKey::StampAttribute, "LastChanged")
        .build()
        .expect("source");
    let err = s.poll(None).await.expect_err("unknown property");
    assert_eq!(err.class(), ml_core::ErrorClass::Permanent);
    assert!(err.to_string().contains("LastChanged"), "{err}");
    let bad = builder(&e)
        .with_client_credentials("ml-connector", "wrong")
        .build()
        .expect("source");
    let err = bad.poll(None).await.expect_err("bad secret");
    assert!(!err.to_string().contains("wrong"), "{err}");
    assert!(!err.class().is_retryable(), "{err}");
}

/// A release whose purchase orders lack attributes the mapping reads (the currency, the
/// site): the service refuses the `$select` naming them (400); the source reads whole
/// entities from then on (one extra request, once) and every order still goes out, its
/// amount kept as text since it has no currency.
#[tokio::test]
async fn attributes_a_release_lacks_are_read_around_not_a_pause() {
    let e = IfsEmulator::start().await.expect("emulator");
    e.seed_demo().expect("demo");
    let total = e.count("PurchaseOrderSet");
    assert!(total > 0);
    e.remove_property("PurchaseOrderSet", "CurrencyCode");
    e.remove_property("PurchaseOrderSet", "Contract");
    let s = builder(&e)
        .with_resource(IfsResource::PurchaseOrders)
        .with_page_size(2)
        .build()
        .expect("source");
    let mut pos = None;
    let items = cycle(&s, &mut pos, |_| {}).await;
    let records: Vec<_> = items
        .iter()
        .map(|i| match i {
            SourceItem::Record(r) => r,
            SourceItem::Rejected(x) => panic!("rejected: {}", x.reason),
        })
        .collect();
    assert_eq!(records.len(), total, "every order (all of company 10)");
    for r in &records {
        assert!(r.fields.amount.is_none(), "no currency, no money");
        assert!(
            r.fields.extra.contains_key("amount_without_currency"),
            "{:?}",
            r.fields.extra
        );
        assert!(r.fields.supplier.is_some(), "attributes present are mapped");
        // The ETag is the audit's (raw payload), not a field shown to finance users.
        assert!(!r.fields.extra.contains_key("etag"), "{:?}", r.fields.extra);
    }
    // The 400 came once: later pages and cycles ask for whole entities straight away.
    assert_eq!(e.faults().status_count("PurchaseOrderSet", 400), 1);
}

/// A stamp attribute the entity set does not have cannot be read around: the stream
/// pauses with the reason and what to check.
#[tokio::test]
async fn a_missing_stamp_attribute_pauses_with_what_to_check() {
    let e = IfsEmulator::start().await.expect("emulator");
    e.seed_demo().expect("demo");
    e.remove_property("PurchaseOrderSet", "ModifiedDateTime");
    let s = builder(&e)
        .with_resource(IfsResource::PurchaseOrders)
        .build()
        .expect("source");
    // `ml-connector check` says so before the first poll does.
    let check = s.healthcheck().await.expect_err("check sees no stamp");
    assert!(check.to_string().contains("ModifiedDateTime"), "{check}");
    let err = s.poll(None).await.expect_err("no stamp");
    assert_eq!(err.class(), ml_core::ErrorClass::Permanent);
    let text = err.to_string();
    assert!(text.contains("ModifiedDateTime"), "{text}");
    assert!(text.contains("history_log"), "{text}");
}

/// `PurchaseOrderSet` lists no `Company` (shared/apis/ifs-cloud.md): with IFS_COMPANY set
/// for the invoices, the purchase-order stream must not filter on it (a 400 paused it).
#[tokio::test]
async fn purchase_orders_are_not_filtered_on_a_company_they_lack() {
    let e = IfsEmulator::start().await.expect("emulator");
    e.seed_demo().expect("demo");
    e.remove_property("PurchaseOrderSet", "Company");
    let total = e.count("PurchaseOrderSet");
    assert!(total > 0);
    let s = builder(&e)
        .with_resource(IfsResource::PurchaseOrders)
        .build()
        .expect("source");
    s.healthcheck().await.expect("check");
    let mut pos = None;
    let items = cycle(&s, &mut pos, |_| {}).await;
    assert_eq!(items.len(), total);
}

/// The trap the source avoids: a reader that follows the offset-based nextLink while a
/// served row is edited (it moves to the end) skips a row it never sees.
#[tokio::test]
async fn following_next_links_under_edits_loses_rows() {
    let e = IfsEmulator::start().await.expect("emulator");
    e.load_invoices("10", 300, hour_ago(), 7).expect("load");
    e.set_max_page_size(100);
    let s = builder(&e).build().expect("source");
    let odata = s.odata();
    let query = ml_ifs::odata::ODataQuery::new()
        .order_by(["ModifiedDateTime asc", "Company asc", "InvoiceId asc"])
        .max_page_size(100);
    let mut page = odata
        .get_collection(s.collection_url(), &query)
        .await
        .expect("first");
    let mut seen = BTreeSet::new();
    loop {
        for item in &page.items {
            let v: serde_json::Value = serde_json::from_str(item.get()).expect("json");
            seen.insert(v["InvoiceId"].to_string());
        }
        let Some(link) = page.next_link.clone() else {
            break;
        };
        // A user edits a row already served: every later row shifts down by one.
        e.update(
            "ManSuppInvoiceSet",
            &["10", "1"],
            &json!({"GrossAmount": "9.00"}),
        )
        .expect("update");
        page = odata
            .follow(s.collection_url(), &link, Some(100))
            .await
            .expect("next");
    }
    assert!(
        seen.len() < 300,
        "offset paging lost no row: {}",
        seen.len()
    );
}

#[tokio::test]
async fn a_clean_backfill_takes_exactly_ceil_n_over_page_requests() {
    let e = IfsEmulator::start().await.expect("emulator");
    e.load_invoices("10", 10_000, hour_ago(), 7).expect("load");
    e.set_max_page_size(400);
    let s = builder(&e).with_page_size(500).build().expect("source");
    let mut pos = None;
    let items = cycle(&s, &mut pos, |_| {}).await;
    assert_eq!(items.len(), 10_000);
    // Pages of 400 (the server's cap, below the asked 500): 25 requests, none wasted.
    assert_eq!(e.faults().requests("ManSuppInvoiceSet"), 25);
    assert_eq!(
        e.issuer().tokens_issued(),
        1,
        "one token for the whole backfill"
    );
}

#[tokio::test]
async fn rate_limits_and_metadata_refreshes_are_retried_with_retry_after() {
    use ml_sandbox::fault::{Fault, FaultRule};
    let e = IfsEmulator::start().await.expect("emulator");
    e.load_invoices("10", 5, hour_ago(), 7).expect("load");
    e.faults().push(
        FaultRule::on(
            "ManSuppInvoiceSet",
            Fault::TooManyRequests { retry_after: 1 },
        )
        .times(1),
    );
    let s = builder(&e).build().expect("source");
    let started = std::time::Instant::now();
    let page = s.poll(None).await.expect("poll after a 429");
    assert_eq!(page.items.len(), 5);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "Retry-After honoured"
    );
    assert_eq!(e.faults().requests("ManSuppInvoiceSet"), 2);
    // A metadata refresh that outlasts the retry budget pauses the stream, retryable.
    e.metadata_refresh(100);
    let quick = builder(&e)
        .with_retry(RetryPolicy::none())
        .build()
        .expect("source");
    let err = quick.poll(None).await.expect_err("503");
    assert!(err.class().is_retryable(), "{err}");
    assert_eq!(err.code(), Some("MI_MODIFIED_ERROR"));
}

/// IFS documents the client credentials flow with the id and secret in the form body;
/// Keycloak also takes HTTP Basic. The source sends the form by default (never both),
/// and Basic when told to: each works against an IAM that takes only that one.
#[tokio::test]
async fn the_client_authenticates_the_way_the_iam_takes() {
    let e = IfsEmulator::start().await.expect("emulator");
    e.seed_demo().expect("demo");
    e.issuer().accept_client_auth(false, true);
    let post = builder(&e)
        .with_resource(IfsResource::PurchaseOrders)
        .build()
        .expect("source");
    post.poll(None).await.expect("form credentials accepted");
    e.issuer().accept_client_auth(true, false);
    let refused = builder(&e)
        .with_resource(IfsResource::PurchaseOrders)
        .build()
        .expect("source");
    let err = refused.poll(None).await.expect_err("form refused");
    assert!(!err.class().is_retryable(), "{err}");
    assert!(!err.to_string().contains(e.client_secret()), "{err}");
    let basic = builder(&e)
        .with_resource(IfsResource::PurchaseOrders)
        .with_config(ml_ifs::IfsConfigKey::ClientAuth, "basic")
        .build()
        .expect("source");
    basic.poll(None).await.expect("Basic accepted");
    assert_eq!(e.issuer().tokens_issued(), 2);
}
