//! GL detail of payables invoices: lines and distributions read in the same request as the
//! header (`fields` child groups), mapped to `Record.fields.lines`, and rendered only to
//! `#finance`. Against the ml-sandbox Oracle and Slack emulators on 127.0.0.1, on tokio's
//! paused clock.

mod common;
#[path = "../../ml-oracle-fusion/tests/common/mod.rs"]
mod oracle;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::slack_pipeline;
use jiff::SignedDuration;
use ml_core::clock::TokioClock;
use ml_core::money::Money;
use ml_core::record::{Record, SourceItem};
use ml_core::routing::{Condition, MatchMode, Router, Rule};
use ml_core::{Destination, EntityKind};
use ml_oracle_fusion::model::parse_decimal;
use ml_oracle_fusion::{OracleFusionConfigKey, OracleResource};
use ml_sandbox::oracle::{
    OracleEmulator, invoice_json, invoice_lines_json, unvalidated_invoice_json,
};
use ml_sandbox::slack::{Channel, SlackEmulator, StoredMessage};
use ml_slack::SlackBuilder;
use ml_slack::render::LineDetail;
use oracle::{builder, cycle, expected_pages, t0};
use rust_decimal::Decimal;
use serde_json::Value;
use serde_json::value::RawValue;

const PAGE: usize = 4;
const LARGE: i64 = 9_001;
const UNVALIDATED: i64 = 9_002;
const CREDIT: i64 = 9_003;

/// 14 invoices over several pages: small ones, a large one, one not validated yet (lines
/// without distributions) and a credit memo. Returns how many.
fn load(e: &OracleEmulator) -> u64 {
    let at = |s: i64| t0() + SignedDuration::from_secs(s);
    for id in 1..=11 {
        e.upsert_raw(
            "invoices",
            &invoice_json(
                id,
                at(id / 2),
                &format!("{}.{:02}", 100 + id, id),
                "Small Ltd",
            ),
        );
    }
    e.upsert_raw(
        "invoices",
        &invoice_json(LARGE, at(20), "48200.30000000000000004", "Acme Industrial"),
    );
    e.upsert_raw(
        "invoices",
        &unvalidated_invoice_json(UNVALIDATED, at(21), "9100.00", "Acme Industrial"),
    );
    e.upsert_raw(
        "invoices",
        &invoice_json(CREDIT, at(22), "-310.40", "Nordic Freight AB"),
    );
    14
}

/// An item with its attributes' exact JSON text (amounts never go through `f64`).
type RawMap = BTreeMap<String, Box<RawValue>>;

fn raw_items(json: &str) -> Vec<RawMap> {
    serde_json::from_str(json).expect("an array of items")
}

fn dec(item: &RawMap, attr: &str) -> Decimal {
    parse_decimal(item[attr].get()).expect("an exact decimal")
}

fn txt(item: &RawMap, attr: &str) -> String {
    let raw = item[attr].get();
    serde_json::from_str::<String>(raw).unwrap_or_else(|_| raw.to_owned())
}

/// The distributions the emulator generated for an invoice: (number, amount, account).
fn generated(id: i64, amount: &str) -> Vec<(String, Decimal, String)> {
    let mut out = Vec::new();
    for l in raw_items(&invoice_lines_json(id, amount, true)) {
        for d in raw_items(l["invoiceDistributions"].get()) {
            out.push((
                format!(
                    "{}.{}",
                    txt(&l, "LineNumber"),
                    txt(&d, "DistributionLineNumber")
                ),
                dec(&d, "DistributionAmount"),
                txt(&d, "DistributionCombination"),
            ));
        }
    }
    out
}

fn record(items: &[SourceItem], key: i64) -> Record {
    items
        .iter()
        .find_map(|i| match i {
            SourceItem::Record(r) if r.key == key.to_string() => Some((**r).clone()),
            _ => None,
        })
        .expect("record")
}

#[tokio::test]
async fn lines_and_distributions_come_with_the_header_at_no_extra_call() {
    let e = OracleEmulator::start().await.expect("emulator");
    let n = load(&e);
    // Header only (as before) vs with GL detail: the same number of collection calls.
    let header_only = builder(&e)
        .with_page_size(PAGE)
        .with_resource_spec(OracleResource::Invoices.spec().with_lines(None))
        .build()
        .expect("source");
    let before = e.collection_calls();
    let (plain, _, pages_plain) = cycle(&header_only, None).await;
    let calls_plain = e.collection_calls() - before;
    assert!(plain.iter().all(|i| match i {
        SourceItem::Record(r) => r.fields.lines.is_empty(),
        SourceItem::Rejected(_) => false,
    }));

    let with_lines = builder(&e)
        .with_page_size(PAGE)
        .with_resource_spec(
            OracleResource::Invoices
                .spec()
                .with_cost_center_segment('-', 1),
        )
        .build()
        .expect("source");
    let before = e.collection_calls();
    let (items, _, pages) = cycle(&with_lines, None).await;
    let calls = e.collection_calls() - before;
    assert_eq!(items.len() as u64, n);
    assert_eq!(calls, calls_plain, "GL detail costs no extra request");
    assert_eq!(pages, pages_plain);
    assert_eq!(calls, expected_pages(n, PAGE as u64));

    // The large invoice: one line per distribution, exact amounts summing to the total.
    let r = record(&items, LARGE);
    let want = generated(LARGE, "48200.30000000000000004");
    assert!(want.len() >= 2, "{want:?}");
    let got: Vec<(String, Decimal, String)> = r
        .fields
        .lines
        .iter()
        .map(|l| {
            (
                l.number.clone(),
                l.amount.expect("amount").amount,
                l.gl_account.clone().expect("account"),
            )
        })
        .collect();
    assert_eq!(got, want);
    let total = r.fields.amount.expect("amount");
    assert_eq!(total.amount.to_string(), "48200.30000000000000004");
    let sum: Decimal = got.iter().map(|g| g.1).sum();
    assert_eq!(sum, total.amount);
    for l in &r.fields.lines {
        assert_eq!(l.amount.expect("a").currency, total.currency);
        let account = l.gl_account.as_deref().expect("acct");
        assert_eq!(
            l.cost_center.as_deref(),
            account.split('-').nth(1),
            "configured segment"
        );
    }
    assert!(!r.fields.extra.contains_key("gl_detail_truncated"));

    // Not validated: lines without distributions, one Line each, line-level account.
    let r = record(&items, UNVALIDATED);
    assert!(!r.fields.lines.is_empty());
    assert!(r.fields.lines.iter().all(|l| !l.number.contains('.')));
    assert!(r.fields.lines.iter().all(|l| {
        l.gl_account
            .as_deref()
            .is_some_and(|g| g.starts_with("01-000-"))
    }));
    let sum: Decimal = r
        .fields
        .lines
        .iter()
        .map(|l| l.amount.expect("a").amount)
        .sum();
    assert_eq!(sum, Decimal::new(910_000, 2));

    // Credit memo: negative distributions summing to the negative total.
    let r = record(&items, CREDIT);
    assert!(
        r.fields
            .lines
            .iter()
            .all(|l| l.amount.expect("a").amount.is_sign_negative())
    );
    let sum: Decimal = r
        .fields
        .lines
        .iter()
        .map(|l| l.amount.expect("a").amount)
        .sum();
    assert_eq!(sum, Decimal::new(-31_040, 2));
}

fn router(threshold: Money) -> Router {
    Router::new(
        MatchMode::AllMatch,
        vec![
            Rule {
                name: "new invoices".into(),
                when: vec![Condition::Kind(vec![EntityKind::SupplierInvoice])],
                to: vec!["slack:#procurement".into()],
            },
            Rule {
                name: "large invoices".into(),
                when: vec![
                    Condition::Kind(vec![EntityKind::SupplierInvoice]),
                    Condition::AmountAtLeast(threshold),
                ],
                to: vec!["slack:#finance".into()],
            },
            Rule {
                name: "failed validation".into(),
                when: vec![
                    Condition::Kind(vec![EntityKind::SupplierInvoice]),
                    Condition::Status(vec!["Needs Revalidation".into(), "Not Validated".into()]),
                ],
                to: vec!["slack:#finance".into()],
            },
        ],
    )
    .expect("router")
}

fn message_for(messages: &[StoredMessage], key: i64) -> &StoredMessage {
    messages
        .iter()
        .find(|m| {
            m.metadata.as_ref().expect("metadata")["event_payload"]["record_key"]
                == key.to_string().as_str()
        })
        .expect("message")
}

fn content(m: &StoredMessage) -> String {
    format!(
        "{}\n{}",
        m.text,
        m.blocks.as_ref().map(Value::to_string).unwrap_or_default()
    )
}

#[tokio::test]
async fn build_many_keeps_the_cost_center_and_expand_replaces_fields() {
    let e = OracleEmulator::start().await.expect("emulator");
    load(&e);
    let sources = builder(&e)
        .with_page_size(PAGE)
        .with_cost_center_segment('-', 2)
        .build_many(&[OracleResource::PurchaseOrders, OracleResource::Invoices])
        .expect("sources");
    let (items, _, _) = cycle(&sources[1], None).await;
    let r = record(&items, LARGE);
    assert!(!r.fields.lines.is_empty());
    for l in &r.fields.lines {
        let account = l.gl_account.as_deref().expect("acct");
        assert_eq!(l.cost_center.as_deref(), account.split('-').nth(2));
    }
    // Without `fields`, the lines are asked for with `expand`.
    let expanded = builder(&e)
        .with_page_size(PAGE)
        .with_fields_param(false)
        .build()
        .expect("source");
    let (items, _, _) = cycle(&expanded, None).await;
    let r = record(&items, LARGE);
    assert_eq!(
        r.fields.lines.len(),
        generated(LARGE, "48200.30000000000000004").len()
    );
    assert!(r.fields.lines.iter().all(|l| l.cost_center.is_none()));
    // A bad setting names its key.
    let err = builder(&e)
        .with_config(OracleFusionConfigKey::CostCenterSegment, "two")
        .build()
        .expect_err("bad");
    assert!(
        err.to_string()
            .contains("ORACLE_FUSION_COST_CENTER_SEGMENT"),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn finance_gets_the_gl_detail_and_procurement_does_not() {
    let oracle = OracleEmulator::start().await.expect("oracle");
    let n = load(&oracle);
    let slack = SlackEmulator::builder()
        .channel(Channel::public("procurement"))
        .channel(Channel::public("finance"))
        .start()
        .await
        .expect("slack");
    let finance = Destination::new("slack", "#finance");
    let sink = SlackBuilder::new()
        .with_bot_token(slack.bot_token())
        .with_api_url(slack.base_url())
        .with_line_detail(LineDetail::Only(vec![finance]))
        .build()
        .expect("sink");
    for name in ["procurement", "finance"] {
        let id = slack.channel_id(name).expect("channel");
        sink.remember_channel(&format!("#{name}"), &ml_slack::ids::ChannelId(id));
    }
    let clock = Arc::new(TokioClock::default());
    let source = builder(&oracle)
        .with_page_size(PAGE)
        .with_clock(clock.clone())
        .build()
        .expect("source");
    let p = slack_pipeline(
        source,
        router(Money::parse("10000", "USD").expect("m")),
        Arc::new(sink),
        clock,
        None,
    );
    let before = oracle.collection_calls();
    let summary = p.run_once().await.expect("run");
    assert_eq!(
        oracle.collection_calls() - before,
        expected_pages(n, PAGE as u64),
        "no extra Oracle call for the GL detail"
    );
    assert_eq!(summary.rejected, 0, "{summary}");
    // Every invoice to #procurement; the large and the unvalidated one to #finance too.
    assert_eq!(summary.deliveries.delivered, n + 2, "{summary}");
    let procurement = slack.messages(&slack.channel_id("procurement").expect("p"));
    let finance = slack.messages(&slack.channel_id("finance").expect("f"));
    assert_eq!(procurement.len() as u64, n);
    assert_eq!(finance.len(), 2);

    let accounts: Vec<String> = generated(LARGE, "48200.30000000000000004")
        .into_iter()
        .map(|(_, _, a)| a)
        .collect();
    let f = content(message_for(&finance, LARGE));
    assert!(f.contains("Invoice lines"), "{f}");
    for a in &accounts {
        assert!(f.contains(&format!("GL {a}")), "{a} in {f}");
    }
    assert!(f.contains("48,200.30000000000000004 USD"), "{f}");
    let pr = content(message_for(&procurement, LARGE));
    assert!(pr.contains("Acme Industrial"), "{pr}");
    assert!(pr.contains("48,200.30000000000000004 USD"), "{pr}");
    assert!(!pr.contains("Invoice lines"), "{pr}");
    for a in &accounts {
        assert!(!pr.contains(a.as_str()), "{a} in {pr}");
    }
    // The unvalidated invoice: its lines' default accounts, in #finance only.
    let f = content(message_for(&finance, UNVALIDATED));
    assert!(f.contains("GL 01-000-"), "{f}");
    assert!(!content(message_for(&procurement, UNVALIDATED)).contains("GL 01-"));
    assert!(
        procurement
            .iter()
            .all(|m| !content(m).contains("Invoice lines"))
    );
}

#[tokio::test]
async fn the_emulator_honours_fields_child_groups_and_expand() {
    let e = OracleEmulator::start().await.expect("emulator");
    e.upsert_raw(
        "invoices",
        &invoice_json(LARGE, t0(), "48200.00", "Acme Industrial"),
    );
    let client = ml_core::http::ClientOptions::default()
        .client()
        .expect("client");
    let url = format!("{}fscmRestApi/resources/11.13.18.05/invoices", e.base_url());
    let get = |q: Vec<(&'static str, &'static str)>, version: &'static str| {
        let r = client
            .get(&url)
            .query(&q)
            .header("REST-Framework-Version", version)
            .basic_auth(e.user(), Some(e.password()));
        async move {
            let resp = r.send().await.expect("send");
            assert_eq!(resp.status(), 200);
            let v: Value = resp.json().await.expect("json");
            v["items"][0].clone()
        }
    };
    let keys = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
        k.sort();
        k
    };
    let od = ("onlyData", "true");

    // Header and both child groups, projected per level.
    let fields = (
        "fields",
        "InvoiceId,InvoiceAmount;invoiceLines:LineNumber,LineAmount;invoiceLines.invoiceDistributions:DistributionAmount,DistributionCombination",
    );
    let item = get(vec![od, fields], "2").await;
    assert_eq!(keys(&item), ["InvoiceAmount", "InvoiceId", "invoiceLines"]);
    let lines = item["invoiceLines"].as_array().expect("v2: an array");
    assert!(!lines.is_empty());
    for l in lines {
        assert_eq!(
            keys(l),
            ["LineAmount", "LineNumber", "invoiceDistributions"]
        );
        for d in l["invoiceDistributions"].as_array().expect("array") {
            assert_eq!(keys(d), ["DistributionAmount", "DistributionCombination"]);
        }
    }

    // A child not named is omitted; a nested group implies its parent.
    let item = get(
        vec![od, ("fields", "InvoiceId;invoiceLines:LineNumber")],
        "2",
    )
    .await;
    assert_eq!(
        item["invoiceLines"][0],
        serde_json::json!({"LineNumber": 1})
    );
    let item = get(vec![od, ("fields", "InvoiceId")], "2").await;
    assert_eq!(keys(&item), ["InvoiceId"]);
    let item = get(
        vec![
            od,
            (
                "fields",
                "InvoiceId;invoiceLines.invoiceDistributions:DistributionAmount",
            ),
        ],
        "2",
    )
    .await;
    let line = &item["invoiceLines"][0];
    assert!(
        line.get("LineAmount").is_some(),
        "implied parent: all attributes"
    );
    assert_eq!(
        keys(&line["invoiceDistributions"][0]),
        ["DistributionAmount"]
    );

    // Without fields: children only when expanded.
    let item = get(vec![od], "2").await;
    assert!(item.get("invoiceLines").is_none());
    assert!(item.get("InvoiceAmount").is_some());
    let item = get(vec![od, ("expand", "invoiceLines")], "2").await;
    assert!(item["invoiceLines"][0].get("LineAmount").is_some());
    assert!(
        item["invoiceLines"][0]
            .get("invoiceDistributions")
            .is_none()
    );
    let item = get(
        vec![od, ("expand", "invoiceLines.invoiceDistributions")],
        "2",
    )
    .await;
    assert!(item["invoiceLines"][0]["invoiceDistributions"][0]["DistributionAmount"].is_number());
    // fields wins over expand.
    let item = get(vec![od, ("fields", "InvoiceId"), ("expand", "all")], "2").await;
    assert_eq!(keys(&item), ["InvoiceId"]);
    // Without onlyData, unexpanded children are links.
    let item = get(vec![("fields", "InvoiceId")], "2").await;
    let links = item["links"].as_array().expect("links");
    assert!(
        links
            .iter()
            .any(|l| l["rel"] == "child" && l["name"] == "invoiceLines")
    );

    // Version 3: collection objects.
    let item = get(vec![od, fields], "3").await;
    let lines = &item["invoiceLines"];
    assert_eq!(lines["hasMore"], false);
    assert_eq!(
        lines["count"],
        lines["items"].as_array().expect("items").len()
    );
    assert!(lines["items"][0]["invoiceDistributions"]["items"].is_array());

    // The source's own request shape reads them.
    let spec = OracleResource::Invoices.spec();
    assert!(
        spec.fields_param()
            .contains(";invoiceLines.invoiceDistributions:")
    );
}

#[test]
fn generated_lines_sum_exactly() {
    for (id, amount) in [
        (1, "101.01"),
        (2, "0.30000000000000004"),
        (3, "98765432109876.54"),
        (50, "-51.10"),
        (7, "0.05"),
        (8, "1.5e2"),
        (9, "12"),
    ] {
        let want = parse_decimal(amount).expect("want");
        let lines = raw_items(&invoice_lines_json(id, amount, true));
        assert!((1..=3).contains(&lines.len()));
        let mut line_sum = Decimal::ZERO;
        let mut dist_sum = Decimal::ZERO;
        for l in &lines {
            let dists = raw_items(l["invoiceDistributions"].get());
            assert!((1..=2).contains(&dists.len()));
            let la = dec(l, "LineAmount");
            line_sum += la;
            let mut per_line = Decimal::ZERO;
            for d in &dists {
                per_line += dec(d, "DistributionAmount");
                let acct = txt(d, "DistributionCombination");
                assert_eq!(acct.split('-').count(), 5, "{acct}");
            }
            assert_eq!(per_line, la, "{id} {amount}");
            dist_sum += per_line;
            if want.is_sign_negative() {
                assert!(la.is_sign_negative(), "{id} {amount}");
            }
        }
        assert_eq!(line_sum, want, "{id} {amount}");
        assert_eq!(dist_sum, want, "{id} {amount}");
        for l in raw_items(&invoice_lines_json(id, amount, false)) {
            assert_eq!(l["invoiceDistributions"].get(), "[]");
        }
    }
}
