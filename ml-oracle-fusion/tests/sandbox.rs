//! OracleFusionSource against the ml-sandbox Oracle emulator: conformance, call counts,
//! traps, auth, faults.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;

use common::{builder, cycle, expected_pages, expected_pages_anchored, key, source, t0};
use jiff::SignedDuration;
use ml_core::cursor::ReadPlan;
use ml_core::record::SourceItem;
use ml_core::source::Source;
use ml_core::testing::source::{SourceExpectations, source_conformance};
use ml_oracle_fusion::source::{DateLiteral, q_after};
use ml_oracle_fusion::{OracleFusionBuilder, OracleFusionConfigKey, OracleResource, Paging};
use ml_sandbox::fault::{Fault, FaultRule};
use ml_sandbox::oracle::{OracleEmulator, invoice_json};

#[tokio::test]
async fn conforms_against_the_emulator() {
    let e = OracleEmulator::start().await.expect("emulator");
    for id in 1..=40 {
        // Three invoices per second: ties everywhere.
        let t = t0() + SignedDuration::from_secs(id / 3);
        e.upsert_raw("invoices", &invoice_json(id, t, "10.50", "Müller GmbH"));
    }
    // A malformed one (no amount).
    e.upsert(
        "invoices",
        &serde_json::json!({"InvoiceId": 41, "InvoiceCurrency": "USD", "LastUpdateDate": "2026-03-01T08:00:05.000+00:00"}),
    );
    let s = source(&e, 6);
    assert_eq!(
        s.to_string(),
        format!(
            "OracleFusion({}, invoices)",
            e.base_url()
                .trim_start_matches("http://")
                .trim_end_matches('/')
        )
    );
    source_conformance(
        &s,
        &SourceExpectations {
            items: 41,
            max_page: 6,
        },
    )
    .await;
    s.healthcheck().await.expect("healthcheck");
}

#[tokio::test]
async fn backfill_with_traps_reads_each_item_once_with_the_exact_call_count() {
    let e = OracleEmulator::start().await.expect("emulator");
    let bad = e.load_invoice_traps(10_000, t0());
    let s = source(&e, 500);
    let (items, _pos, pages) = cycle(&s, None).await;
    assert_eq!(items.len(), 10_000, "every item once (anchors dropped)");
    let mut seen = BTreeMap::new();
    for i in &items {
        *seen.entry(key(i)).or_insert(0) += 1;
    }
    assert!(seen.values().all(|n| *n == 1), "a duplicate");
    let rejected: Vec<_> = items
        .iter()
        .filter_map(|i| match i {
            SourceItem::Rejected(r) => Some((r.key.clone().unwrap_or_default(), r.reason.clone())),
            SourceItem::Record(_) => None,
        })
        .collect();
    assert_eq!(
        rejected.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
        bad
    );
    assert!(rejected[0].1.contains("missing amount"), "{rejected:?}");
    assert!(rejected[1].1.contains("InvoiceDate"), "{rejected:?}");
    // Exact decimals, credit memos, unicode.
    let rec = |k: &str| {
        items
            .iter()
            .find_map(|i| match i {
                SourceItem::Record(r) if r.key == k => Some(r.clone()),
                _ => None,
            })
            .expect("record")
    };
    assert_eq!(
        rec("4242").fields.amount.expect("a").amount.to_string(),
        "98765432109876.54"
    );
    // The raw item keeps the amount's text too (a serde_json::Value would say ...876.55).
    assert!(
        rec("4242")
            .raw
            .as_str()
            .contains(r#""InvoiceAmount":98765432109876.54"#),
        "{}",
        rec("4242").raw
    );
    assert_eq!(
        rec("7").fields.amount.expect("a").amount.to_string(),
        "0.30000000000000004"
    );
    assert!(
        rec("50")
            .fields
            .amount
            .expect("a")
            .amount
            .is_sign_negative()
    );
    assert_eq!(rec("1").fields.supplier.as_deref(), Some("株式会社テスト"));
    assert_eq!(rec("2").fields.supplier.as_deref(), Some("Ørsted A/S"));
    // Server order: (LastUpdateDate, InvoiceId).
    let order: Vec<(jiff::Timestamp, i64)> = items
        .iter()
        .filter_map(|i| match i {
            SourceItem::Record(r) => Some((r.modified_at, r.key.parse().expect("n"))),
            SourceItem::Rejected(_) => None,
        })
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]));
    // The call count: ceil(N / L) pages (keyset paging), plus one token.
    assert_eq!(pages, expected_pages(10_000, 500));
    assert_eq!(pages, 20);
    assert_eq!(e.faults().requests("invoices"), 20);
    assert_eq!(e.tokens_issued(), 1);
    assert_eq!(e.faults().requests("token"), 1);
    assert_eq!(
        e.scopes(),
        vec!["urn:opc:resource:consumer::all".to_owned()]
    );
}

#[tokio::test(start_paused = true)]
async fn token_expiry_and_a_5xx_storm_lose_nothing() {
    let e = OracleEmulator::builder()
        .token_lifetime(Duration::from_secs(3600))
        .start()
        .await
        .expect("emulator");
    e.load_invoice_traps(3_000, t0());
    let s = source(&e, 200);
    let mut pos = None;
    let mut keys = Vec::new();
    let mut n = 0;
    loop {
        n += 1;
        if n == 4 {
            e.expire_tokens(); // a 401 on the next page: one refresh, one retry
        }
        if n == 7 {
            e.faults()
                .push(FaultRule::on("invoices", Fault::Status(503)).times(4));
            e.faults().push(
                FaultRule::on("invoices", Fault::TooManyRequests { retry_after: 2 }).times(2),
            );
            e.faults()
                .push(FaultRule::on("invoices", Fault::DropBeforeResponse));
        }
        let page = s.poll(pos.as_ref()).await.expect("poll");
        keys.extend(page.items.iter().map(key));
        pos = Some(page.next);
        if !page.more {
            break;
        }
    }
    keys.sort_by_key(|k| k.parse::<i64>().expect("n"));
    keys.dedup();
    assert_eq!(keys.len(), 3_000);
    assert_eq!(e.tokens_issued(), 2, "one refresh after the 401");
    assert_eq!(e.faults().status_count("invoices", 401), 1);
    assert_eq!(e.faults().status_count("invoices", 503), 4);
    assert_eq!(e.faults().status_count("invoices", 429), 2);
}

/// `n` distinct keys in `items`, at most `dupes` of them served twice (the journal's
/// dedupe absorbs those), none more often.
fn assert_all(items: &[SourceItem], n: usize, dupes: usize) {
    let mut seen = BTreeMap::new();
    for i in items {
        *seen.entry(key(i)).or_insert(0u32) += 1;
    }
    assert_eq!(seen.len(), n, "distinct items");
    let twice: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).collect();
    assert!(twice.len() <= dupes, "served twice: {twice:?}");
    assert!(twice.iter().all(|(_, c)| **c == 2), "{twice:?}");
}

#[tokio::test]
async fn keyset_falls_back_when_the_pod_hides_timestamp_precision() {
    let e = OracleEmulator::start().await.expect("emulator");
    // Stored with microseconds, served with milliseconds: `LastUpdateDate = '<served>'`
    // matches nothing, so the keyset query re-serves its anchor.
    e.hide_sub_millisecond_precision(true);
    e.load_invoice_traps(2_000, t0());
    let s = source(&e, 100);
    assert_eq!(s.paging(), Paging::Keyset);
    let (items, pos, pages) = cycle(&s, None).await;
    // The page that gave keyset paging away is re-read by offset once (rewind to its start).
    assert_all(&items, 2_000, 100);
    assert!(pages > expected_pages(2_000, 100), "{pages}");
    let st = ml_core::cursor::WatermarkCursor::default()
        .decode(pos.as_ref())
        .expect("state");
    assert!(st.keyset_unusable, "the fallback is kept in the position");
    // The next cycle (new rows, same timestamps problem) loses nothing either.
    for id in 2_001..=2_150 {
        e.upsert_raw(
            "invoices",
            &invoice_json(
                id,
                t0() + SignedDuration::from_hours(30),
                "5.00",
                "Late GmbH",
            ),
        );
    }
    let (more, _, _) = cycle(&s, pos).await;
    let new: Vec<String> = more
        .iter()
        .map(key)
        .filter(|k| k.parse::<i64>().expect("n") > 2_000)
        .collect();
    assert_eq!(new.len(), 150, "{new:?}");
}

#[tokio::test]
async fn keyset_falls_back_when_the_pod_refuses_or() {
    let e = OracleEmulator::start().await.expect("emulator");
    e.refuse_disjunction(true);
    e.load_invoice_traps(1_000, t0());
    let s = source(&e, 100);
    let (items, _, pages) = cycle(&s, None).await;
    assert_all(&items, 1_000, 0);
    assert_eq!(s.paging(), Paging::AnchoredOffset);
    assert_eq!(pages, expected_pages_anchored(1_000, 100));
    // One refused keyset request on top of the anchored pages.
    assert_eq!(e.faults().requests("invoices"), pages + 1);
    assert_eq!(e.faults().status_count("invoices", 400), 1);
}

/// shared/apis/oracle-fusion.md: public clients write `q` date-times single-quoted,
/// double-quoted or bare, and which a pod takes is unconfirmed. A pod that takes one form
/// only is read whole: the others are tried once, the one that works is kept (keyset
/// paging included), and later cycles send only it.
#[tokio::test]
async fn a_pod_taking_one_date_literal_form_is_probed_once_and_read_whole() {
    use ml_sandbox::oracle::DateLiteralForm;
    for (form, expected, refuse_or) in [
        (DateLiteralForm::Bare, DateLiteral::Bare, false),
        (
            DateLiteralForm::DoubleQuoted,
            DateLiteral::DoubleQuoted,
            false,
        ),
        (DateLiteralForm::Bare, DateLiteral::Bare, true),
    ] {
        let e = OracleEmulator::start().await.expect("emulator");
        e.accept_date_literals(&[form]);
        e.refuse_disjunction(refuse_or);
        e.load_invoice_traps(1_000, t0());
        let s = source(&e, 100);
        let (items, pos, _) = cycle(&s, None).await;
        assert_all(&items, 1_000, 0);
        assert_eq!(s.date_literal(), expected, "{form:?}");
        let refused = e.faults().status_count("invoices", 400);
        assert!(refused <= 4, "{form:?}: {refused} refusals");
        let expected_paging = if refuse_or {
            Paging::AnchoredOffset
        } else {
            Paging::Keyset
        };
        assert_eq!(s.paging(), expected_paging, "{form:?}");
        // The next cycle asks in the kept form only, and finds what changed.
        e.upsert_raw(
            "invoices",
            &invoice_json(5_000, jiff::Timestamp::now(), "9.00", "Late Ltd"),
        );
        let (more, _, _) = cycle(&s, pos).await;
        assert!(more.iter().any(|i| key(i) == "5000"), "{form:?}");
        assert_eq!(
            e.faults().status_count("invoices", 400),
            refused,
            "{form:?}: no new refusal"
        );
    }
}

/// A pinned form is sent as configured, with no probe; a value that names no form is a
/// builder error naming the variable.
#[tokio::test]
async fn a_pinned_date_literal_form_is_not_probed() {
    use ml_sandbox::oracle::DateLiteralForm;
    let e = OracleEmulator::start().await.expect("emulator");
    e.accept_date_literals(&[DateLiteralForm::SingleQuoted]);
    e.load_invoice_traps(300, t0());
    let pinned = builder(&e)
        .with_page_size(100)
        .with_date_literal(DateLiteral::Bare)
        .with_start_at(t0() - SignedDuration::from_secs(60))
        .build()
        .expect("source");
    let err = pinned.poll(None).await.expect_err("refused");
    assert!(err.to_string().contains("400"), "{err}");
    assert_eq!(e.faults().status_count("invoices", 400), 1);
    assert_eq!(pinned.date_literal(), DateLiteral::Bare);
    let bad = builder(&e)
        .with_config(OracleFusionConfigKey::DateLiteral, "backticks")
        .build()
        .expect_err("no such form");
    assert!(
        bad.to_string().contains("ORACLE_FUSION_DATE_LITERAL"),
        "{bad}"
    );
}

#[tokio::test]
async fn late_commits_and_updates_arrive_in_a_later_cycle() {
    let e = OracleEmulator::start().await.expect("emulator");
    // "now" in the emulator's data: the cursor's floor is the cycle start (our clock), so
    // data must not be in the future.
    let base = jiff::Timestamp::now() - SignedDuration::from_secs(3600);
    for id in 1..=30 {
        e.upsert_raw(
            "invoices",
            &invoice_json(id, base + SignedDuration::from_secs(id), "1.00", "A"),
        );
    }
    let s = builder(&e)
        .with_page_size(7)
        .with_overlap(Duration::from_secs(600))
        .build()
        .expect("source");
    let (first, pos, _) = cycle(&s, None).await;
    assert_eq!(first.len(), 30);
    // A late commit (older timestamp than what was served) and an update of a served row.
    e.upsert_raw(
        "invoices",
        &invoice_json(31, base + SignedDuration::from_secs(5), "2.00", "Late Ltd"),
    );
    assert!(e.touch(
        "invoices",
        "3",
        base + SignedDuration::from_secs(40),
        Some(("ValidationStatus", "Needs Revalidation".into()))
    ));
    let (second, _, _) = cycle(&s, pos).await;
    let keys: Vec<String> = second.iter().map(key).collect();
    assert!(keys.contains(&"31".to_owned()), "{keys:?}");
    assert!(keys.contains(&"3".to_owned()), "{keys:?}");
    let SourceItem::Record(r) = second.iter().find(|i| key(i) == "3").expect("3") else {
        panic!()
    };
    assert_eq!(r.fields.status.as_deref(), Some("Needs Revalidation"));
}

/// (key, version) of every record in `items`.
fn versions(items: &[SourceItem]) -> Vec<(String, jiff::Timestamp)> {
    items
        .iter()
        .filter_map(|i| match i {
            SourceItem::Record(r) => Some((r.key.clone(), r.modified_at)),
            SourceItem::Rejected(_) => None,
        })
        .collect()
}

#[tokio::test]
async fn changes_between_pages_are_not_lost_in_either_paging_mode() {
    for paging in [Paging::Keyset, Paging::AnchoredOffset] {
        let e = OracleEmulator::start().await.expect("emulator");
        let now = jiff::Timestamp::now;
        let base = now() - SignedDuration::from_hours(2);
        // Seven invoices per second: ties across page boundaries, which fall mid-group.
        for id in 1..=3_000 {
            e.upsert_raw(
                "invoices",
                &invoice_json(id, base + SignedDuration::from_secs(id / 7), "1.00", "A"),
            );
        }
        let s = builder(&e)
            .with_page_size(200)
            .with_paging(paging)
            .build()
            .expect("source");
        let mut journal = std::collections::HashSet::new();
        let mut pos = None;
        let mut page_no: i64 = 0;
        let mut touched = 0u32;
        // Cycle one, with the data changing between every two page requests.
        loop {
            let page = s.poll(pos.as_ref()).await.expect("poll");
            let served_now = versions(&page.items);
            journal.extend(served_now.iter().cloned());
            pos = Some(page.next);
            if !page.more {
                break;
            }
            page_no += 1;
            // The rows served before the page's last one at its timestamp are edited: the
            // rows after them at that timestamp shift (by more than one re-read anchor
            // row absorbs, when two or more move).
            if let Some((_, t_last)) = served_now.last() {
                for (k, t) in served_now.iter().rev().skip(1) {
                    if t != t_last {
                        break;
                    }
                    touched += u32::from(e.touch("invoices", k, now(), None));
                }
            }
            let served = (page_no * 200 - 3).to_string(); // behind the scan
            let ahead = (page_no * 200 + 150).min(3_000).to_string(); // not served yet
            // (Late pages run past id 3,000: the touched rows come back at the end.)
            touched += u32::from(e.touch("invoices", &served, now(), None));
            touched += u32::from(e.touch("invoices", &ahead, now(), None));
            e.remove("invoices", &(page_no * 200 - 10).to_string());
            // A transaction stamped 30 s ago commits now, behind everything served.
            e.upsert_raw(
                "invoices",
                &invoice_json(
                    10_000 + page_no,
                    now() - SignedDuration::from_secs(30),
                    "2.00",
                    "Late",
                ),
            );
            e.upsert_raw(
                "invoices",
                &invoice_json(20_000 + page_no, now(), "3.00", "New"),
            );
        }
        assert!(page_no >= 10, "{paging:?}: {page_no} pages");
        assert!(touched >= 20, "{paging:?}: {touched} rows touched");
        // Cycle two, nothing changing.
        let (second, _, _) = cycle(&s, pos).await;
        journal.extend(versions(&second));
        // The truth: a fresh full read.
        let fresh = builder(&e).with_page_size(500).build().expect("source");
        let (truth, _, _) = cycle(&fresh, None).await;
        let truth = versions(&truth);
        assert!(truth.len() > 3_000, "{}", truth.len());
        let lost: Vec<_> = truth.iter().filter(|v| !journal.contains(*v)).collect();
        assert!(lost.is_empty(), "{paging:?} lost {lost:?}");
    }
}

#[tokio::test]
async fn records_created_and_changed_over_http_arrive_in_the_next_cycle() {
    let e = OracleEmulator::start().await.expect("emulator");
    let base = jiff::Timestamp::now() - SignedDuration::from_secs(3600);
    for id in 1..=10 {
        e.upsert_raw(
            "invoices",
            &invoice_json(id, base + SignedDuration::from_secs(id), "1.00", "A"),
        );
    }
    let s = builder(&e)
        .with_page_size(4)
        .with_overlap(Duration::from_secs(600))
        .build()
        .expect("source");
    let (first, pos, _) = cycle(&s, None).await;
    assert_eq!(first.len(), 10);

    let http = ml_core::http::ClientOptions::default()
        .client()
        .expect("client");
    let url = |path: &str| format!("{}{path}", e.base_url());
    let item = "application/vnd.oracle.adf.resourceitem+json";
    // Create (the server assigns the key and stamps the who-columns).
    let created = http
        .post(url("fscmRestApi/resources/11.13.18.05/invoices"))
        .basic_auth(e.user(), Some(e.password()))
        .header("Content-Type", item)
        .body(r#"{"InvoiceNumber":"NEW-1","InvoiceAmount":1234.56,"InvoiceCurrency":"EUR","Supplier":"Neu AG","ValidationStatus":"Not Validated"}"#)
        .send()
        .await
        .expect("post");
    assert_eq!(created.status(), 201);
    let created: serde_json::Value = created.json().await.expect("json");
    let new_id = created["InvoiceId"].to_string();
    assert!(created["LastUpdateDate"].is_string(), "{created}");
    // Update a served invoice.
    let patched = http
        .patch(url("fscmRestApi/resources/11.13.18.05/invoices/4"))
        .basic_auth(e.user(), Some(e.password()))
        .header("Content-Type", item)
        .body(
            r#"{"ValidationStatus":"Needs Revalidation","LastUpdateDate":"2000-01-01T00:00:00Z"}"#,
        )
        .send()
        .await
        .expect("patch");
    assert_eq!(patched.status(), 200);
    // Stage a late commit, stamped before rows already served.
    let late = http
        .put(url("sandbox/oracle/invoices"))
        .body(invoice_json(
            77,
            base + SignedDuration::from_secs(3),
            "9.99",
            "Spät KG",
        ))
        .send()
        .await
        .expect("put");
    assert_eq!(late.status(), 200);
    // The API's own checks.
    let unauth = http
        .post(url("fscmRestApi/resources/11.13.18.05/invoices"))
        .header("Content-Type", item)
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(unauth.status(), 401);
    let missing = http
        .patch(url("fscmRestApi/resources/11.13.18.05/invoices/999"))
        .basic_auth(e.user(), Some(e.password()))
        .header("Content-Type", item)
        .body("{}")
        .send()
        .await
        .expect("patch");
    assert_eq!(missing.status(), 404);
    let text = http
        .post(url("fscmRestApi/resources/11.13.18.05/invoices"))
        .basic_auth(e.user(), Some(e.password()))
        .header("Content-Type", "text/plain")
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(text.status(), 415);

    let (second, _, _) = cycle(&s, pos).await;
    let rec = |k: &str| {
        second.iter().find_map(|i| match i {
            SourceItem::Record(r) if r.key == k => Some(r.clone()),
            _ => None,
        })
    };
    let new = rec(&new_id).expect("created invoice");
    assert_eq!(new.fields.amount.expect("a").to_string(), "1,234.56 EUR");
    assert_eq!(
        rec("4").expect("patched").fields.status.as_deref(),
        Some("Needs Revalidation")
    );
    assert!(rec("77").is_some(), "late commit");
}

#[tokio::test]
async fn basic_auth_and_jwt_assertion_work() {
    let e = OracleEmulator::start().await.expect("emulator");
    e.upsert_raw("purchaseOrders", r#"{"POHeaderId":300000001,"OrderNumber":"PO-1","Ordered":1500.5,"Currency":"EUR","Supplier":"Ørsted A/S","Status":"Open","ProcurementBU":"EU1","LastUpdateDate":"2026-03-01T08:00:00.000+00:00"}"#);
    let basic = OracleFusionBuilder::new()
        .with_url(e.base_url())
        .with_basic(e.user(), e.password())
        .with_resource(OracleResource::PurchaseOrders)
        .build()
        .expect("basic");
    let page = basic.poll(None).await.expect("poll");
    let SourceItem::Record(r) = &page.items[0] else {
        panic!("record")
    };
    assert_eq!(r.fields.amount.expect("a").to_string(), "1,500.50 EUR");
    assert_eq!(r.fields.document_number.as_deref(), Some("PO-1"));
    let wrong = OracleFusionBuilder::new()
        .with_url(e.base_url())
        .with_basic(e.user(), "nope")
        .build()
        .expect("build");
    let err = wrong.poll(None).await.expect_err("401");
    assert!(!err.class().is_retryable());
    assert!(!format!("{err} {err:?}").contains("nope"));

    let pem = include_str!("fixtures/test_rsa_pkcs8.pem");
    let jwt = builder(&e)
        .with_jwt_assertion("casey.brown", pem)
        .with_resource(OracleResource::PurchaseOrders)
        .build()
        .expect("jwt");
    // Until the key's certificate is trusted, the assertion is refused (permanently).
    let err = jwt.poll(None).await.expect_err("untrusted key");
    assert!(!err.class().is_retryable(), "{err}");
    assert!(err.to_string().contains("invalid_grant"), "{err}");
    let key = ml_oracle_fusion::JwtSigningKey::from_pkcs8_pem(&pem.into(), Some("k1".into()))
        .expect("key");
    e.trust_jwt_key(None, key.public_key_der());
    assert_eq!(jwt.poll(None).await.expect("poll").items.len(), 1);
    assert_eq!(e.tokens_issued(), 1);
    // A tampered assertion (claims changed after signing) and an expired one are refused.
    let token_call = |assertion: String| {
        let (id, secret, url) = (
            e.client_id().to_owned(),
            e.client_secret().to_owned(),
            e.token_url(),
        );
        async move {
            ml_core::http::ClientOptions::default()
                .client()
                .expect("client")
                .post(url)
                .basic_auth(id, Some(secret))
                .form(&[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    ("assertion", assertion.as_str()),
                ])
                .send()
                .await
                .expect("send")
                .status()
        }
    };
    let now = jiff::Timestamp::now();
    let good = key
        .assertion(
            "casey.brown",
            e.client_id(),
            ml_oracle_fusion::auth::JWT_AUDIENCE,
            now,
            Duration::from_secs(300),
        )
        .expect("sign");
    assert_eq!(token_call(good.clone()).await, 200);
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&parts[1])
        .expect("b64");
    let forged = String::from_utf8(claims)
        .expect("utf8")
        .replace("casey.brown", "the.cfo");
    parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(forged);
    assert_eq!(token_call(parts.join(".")).await, 400);
    let expired = key
        .assertion(
            "casey.brown",
            e.client_id(),
            ml_oracle_fusion::auth::JWT_AUDIENCE,
            now - SignedDuration::from_secs(3_600),
            Duration::from_secs(300),
        )
        .expect("sign");
    assert_eq!(token_call(expired).await, 400);
    assert_eq!(
        ml_sandbox::oracle::JWT_AUDIENCE,
        ml_oracle_fusion::auth::JWT_AUDIENCE
    );
    let a = key
        .assertion(
            "casey.brown",
            "cid",
            ml_oracle_fusion::auth::JWT_AUDIENCE,
            jiff::Timestamp::now(),
            Duration::from_secs(300),
        )
        .expect("sign");
    let (input, sig) = a.rsplit_once('.').expect("jwt");
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(sig)
        .expect("b64");
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        key.public_key_der(),
    )
    .verify(input.as_bytes(), &sig)
    .expect("valid RS256 signature");
}

#[test]
fn config_errors_name_the_key_and_secrets_stay_hidden() {
    let err = OracleFusionBuilder::new().build().expect_err("no url");
    assert!(err.to_string().contains("ORACLE_FUSION_URL"), "{err}");
    let err = OracleFusionBuilder::new()
        .with_url("https://acme.fa.us2.oraclecloud.com")
        .build()
        .expect_err("no creds");
    assert!(err.to_string().contains("ORACLE_FUSION_CLIENT_ID"), "{err}");
    let err = OracleFusionBuilder::new()
        .with_url("http://acme.example.com")
        .with_basic("u", "p")
        .build()
        .expect_err("http");
    assert!(err.to_string().contains("ORACLE_FUSION_URL"), "{err}");
    let err = OracleFusionBuilder::new()
        .with_url("https://acme.fa.us2.oraclecloud.com")
        .with_basic("u", "p")
        .with_config(OracleFusionConfigKey::PageSize, "501")
        .build()
        .expect_err("page");
    assert!(err.to_string().contains("ORACLE_FUSION_PAGE_SIZE"), "{err}");
    let b = OracleFusionBuilder::new()
        .with_url("https://acme.fa.us2.oraclecloud.com")
        .with_client_credentials(
            "https://idcs.example.com/oauth2/v1/token",
            "cid",
            "TOPSECRET-1",
        )
        .with_config(OracleFusionConfigKey::Password, "TOPSECRET-2");
    assert!(!format!("{b:?}").contains("TOPSECRET"));
    let s = b.build().expect("source");
    let shown = format!("{s:?} {s}");
    assert!(!shown.contains("TOPSECRET"), "{shown}");
    assert_eq!(
        s.to_string(),
        "OracleFusion(acme.fa.us2.oraclecloud.com, invoices)"
    );
}

#[tokio::test]
async fn the_emulator_is_strict_where_fusion_is() {
    let e = OracleEmulator::start().await.expect("emulator");
    e.upsert_raw("invoices", &invoice_json(1, t0(), "1.00", "A"));
    let client = ml_core::http::ClientOptions::default()
        .client()
        .expect("client");
    let url = format!("{}fscmRestApi/resources/11.13.18.05/invoices", e.base_url());
    let get = |q: Vec<(&'static str, &'static str)>, v2: bool, auth: bool| {
        let mut r = client.get(&url).query(&q);
        if v2 {
            r = r.header("REST-Framework-Version", "2");
        }
        if auth {
            r = r.basic_auth(e.user(), Some(e.password()));
        }
        r.send()
    };
    assert_eq!(get(vec![], false, false).await.expect("r").status(), 401);
    // Expressions need framework v2; QBE works without.
    assert_eq!(
        get(
            vec![("q", "LastUpdateDate >= '2026-01-01T00:00:00Z'")],
            false,
            true
        )
        .await
        .expect("r")
        .status(),
        400
    );
    assert_eq!(
        get(vec![("q", "InvoiceId=1")], false, true)
            .await
            .expect("r")
            .status(),
        200
    );
    let bad = get(vec![("q", "Supplier like 'A%'")], true, true)
        .await
        .expect("r");
    assert_eq!(bad.status(), 400);
    let body: serde_json::Value = bad.json().await.expect("adf error");
    assert_eq!(body["status"], "400");
    // `limit` is clamped to 500; `totalResults` on request; `links` unless onlyData.
    let ok: serde_json::Value = get(
        vec![("limit", "1000"), ("totalResults", "true")],
        true,
        true,
    )
    .await
    .expect("r")
    .json()
    .await
    .expect("json");
    assert_eq!(ok["limit"], 500);
    assert_eq!(ok["totalResults"], 1);
    assert_eq!(ok["hasMore"], false);
    assert!(ok["items"][0]["links"].is_array());
    let other = client
        .get(format!(
            "{}fscmRestApi/resources/9.9/invoices",
            e.base_url()
        ))
        .basic_auth(e.user(), Some(e.password()))
        .send()
        .await
        .expect("r");
    assert_eq!(other.status(), 404);
}

#[test]
fn paging_is_configurable_and_checked() {
    let b = || {
        OracleFusionBuilder::new()
            .with_url("https://acme.fa.us2.oraclecloud.com/")
            .with_basic("u", "p")
    };
    assert_eq!(b().build().expect("source").paging(), Paging::Keyset);
    let off = b()
        .with_config(OracleFusionConfigKey::Paging, "Offset")
        .build()
        .expect("source");
    assert_eq!(off.paging(), Paging::AnchoredOffset);
    let off = b()
        .with_paging(Paging::AnchoredOffset)
        .build()
        .expect("source");
    assert_eq!(off.paging(), Paging::AnchoredOffset);
    let err = b()
        .with_config(OracleFusionConfigKey::Paging, "sideways")
        .build()
        .expect_err("bad paging");
    assert!(err.to_string().contains("ORACLE_FUSION_PAGING"), "{err}");
}

#[test]
fn the_request_shape() {
    let s = OracleFusionBuilder::new()
        .with_url("https://acme.fa.us2.oraclecloud.com/")
        .with_basic("u", "p")
        .with_api_version("latest")
        .build()
        .expect("source");
    let t = "2026-03-20T14:53:51.123Z".parse().expect("t");
    let plan = ReadPlan {
        since: Some(t),
        offset: 7,
        ..ReadPlan::default()
    };
    let q: BTreeMap<&str, String> = s.page_query(&plan, 500).into_iter().collect();
    assert_eq!(q["q"], "LastUpdateDate >= '2026-03-20T14:53:51.123Z'");
    assert_eq!(q["orderBy"], "LastUpdateDate:asc,InvoiceId:asc");
    assert_eq!(q["limit"], "500");
    assert_eq!(q["offset"], "7");
    // A keyset continuation: after (t, 300100), numerically.
    let plan = ReadPlan {
        since: Some(t),
        after_key: Some("300100".into()),
        ..ReadPlan::default()
    };
    let q: BTreeMap<&str, String> = s.page_query(&plan, 500).into_iter().collect();
    assert_eq!(
        q["q"],
        "LastUpdateDate > '2026-03-20T14:53:51.123Z' or (LastUpdateDate = \
         '2026-03-20T14:53:51.123Z' and InvoiceId > 300100)"
    );
    assert_eq!(q["offset"], "0");
    assert_eq!(
        q_after(
            "CreationDate",
            t,
            "Code",
            "O'Hara",
            true,
            DateLiteral::SingleQuoted
        ),
        "CreationDate > '2026-03-20T14:53:51.123Z' or (CreationDate = \
         '2026-03-20T14:53:51.123Z' and Code > 'O''Hara')"
    );
    assert_eq!(
        q_after(
            "LastUpdateDate",
            t,
            "InvoiceId",
            "7",
            true,
            DateLiteral::Bare
        ),
        "LastUpdateDate > 2026-03-20T14:53:51.123Z or (LastUpdateDate = \
         2026-03-20T14:53:51.123Z and InvoiceId > 7)"
    );
    assert_eq!(
        DateLiteral::DoubleQuoted.write(t),
        "\"2026-03-20T14:53:51.123Z\""
    );
    assert_eq!(q["onlyData"], "true");
    assert!(q["fields"].starts_with("InvoiceId,LastUpdateDate,InvoiceNumber,InvoiceAmount"));
    let po = OracleFusionBuilder::new()
        .with_url("https://acme.fa.us2.oraclecloud.com/")
        .with_basic("u", "p")
        .with_resource(OracleResource::PurchaseOrders)
        .with_timestamp_attribute("CreationDate")
        .build()
        .expect("source");
    let q: BTreeMap<&str, String> = po
        .page_query(&ReadPlan::default(), 10)
        .into_iter()
        .collect();
    assert!(!q.contains_key("q"));
    assert_eq!(q["orderBy"], "CreationDate:asc,POHeaderId:asc");
}

/// Without `ORACLE_FUSION_SCOPE`, the token request carries the scope Oracle documents:
/// the pod's audience (scheme, host, port) and `urn:opc:resource:consumer::all`.
#[tokio::test]
async fn the_default_scope_is_the_pod_audience_with_the_consumer_scope() {
    let e = OracleEmulator::builder().start().await.expect("emulator");
    let s = OracleFusionBuilder::new()
        .with_url(e.base_url())
        .with_client_credentials(e.token_url(), e.client_id(), e.client_secret())
        .build()
        .expect("source");
    s.poll(None).await.expect("page");
    let pod = url::Url::parse(e.base_url()).expect("url");
    let audience = format!(
        "http://{}:{}",
        pod.host_str().expect("host"),
        pod.port_or_known_default().expect("port")
    );
    assert_eq!(
        e.scopes(),
        vec![format!("{audience}urn:opc:resource:consumer::all")]
    );
}

/// Date-times in `q` are UTC with whole seconds or exactly three fraction digits (what
/// the pod serves and the docs show), never a trimmed `.5`.
#[test]
fn q_date_times_carry_milliseconds_in_full() {
    let at = |s: &str| s.parse::<jiff::Timestamp>().expect("ts");
    assert_eq!(
        DateLiteral::SingleQuoted.write(at("2026-03-20T10:05:00.5Z")),
        "'2026-03-20T10:05:00.500Z'"
    );
    assert_eq!(
        DateLiteral::Bare.write(at("2026-03-20T12:05:00.123+02:00")),
        "2026-03-20T10:05:00.123Z"
    );
    assert_eq!(
        DateLiteral::DoubleQuoted.write(at("2026-03-20T10:05:00Z")),
        "\"2026-03-20T10:05:00Z\""
    );
}
