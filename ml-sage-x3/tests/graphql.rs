//! The GraphQL reader against the emulator: conformance, Relay paging over ties, updates
//! during a run, the on-premises self-signed JWT, and introspection at `healthcheck()`.

mod common;

use std::collections::BTreeSet;

use common::{cycle, env, records};
use ml_core::Source as _;
use ml_core::record::SourceItem;
use ml_core::testing::source::{SourceExpectations, source_conformance};
use ml_sage_x3::{SageX3Builder, X3Class};
use ml_sandbox::Emulator as _;
use ml_sandbox::sage_x3::{CLIENT_ID, CLIENT_SECRET, SageX3Emulator};

async fn demo() -> SageX3Emulator {
    let e = SageX3Emulator::start().await.expect("emulator");
    e.load_demo();
    e
}

/// GraphQL with the connected application's self-signed JWT.
fn graphql(e: &SageX3Emulator) -> SageX3Builder {
    let mut vars = e.env();
    vars.retain(|(k, _)| !matches!(*k, "SAGE_X3_USER" | "SAGE_X3_PASSWORD"));
    vars.push(("SAGE_X3_API", "graphql".into()));
    vars.push(("SAGE_X3_CLIENT_ID", CLIENT_ID.into()));
    vars.push(("SAGE_X3_CLIENT_SECRET", CLIENT_SECRET.into()));
    SageX3Builder::from_env_with(&env(vars))
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
        let s = graphql(&e)
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
        s.healthcheck().await.expect("healthcheck");
    }
}

#[tokio::test]
async fn relay_paging_reads_ties_and_updates_once() {
    let e = demo().await;
    let s = graphql(&e).with_page_size(2).build().expect("source");
    let (items, pos) = cycle(&s, None).await;
    let recs = records(&items);
    let keys: BTreeSet<&str> = recs.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys.len(), 7);
    let po1 = recs.iter().find(|r| r.key == "PO-0001").expect("PO-0001");
    assert_eq!(
        po1.fields.supplier.as_deref(),
        Some("Société Générale d'Équipement")
    );
    assert_eq!(
        po1.fields.amount.expect("amount").amount.to_string(),
        "1250.5"
    );
    // The next cycle sweeps the overlap behind each page: rows come again with the same
    // version (the journal's dedupe drops them), nothing new.
    let mut served: BTreeSet<(String, String)> = recs
        .iter()
        .map(|r| (r.key.clone(), r.dedupe_version()))
        .collect();
    let (again, pos) = cycle(&s, pos).await;
    for r in records(&again) {
        assert!(
            served.contains(&(r.key.clone(), r.dedupe_version())),
            "new version {}",
            r.key
        );
    }
    assert!(e.touch("PORDER", "PO-0004", None));
    let (changed, _) = cycle(&s, pos).await;
    let new: Vec<String> = records(&changed)
        .into_iter()
        .filter(|r| served.insert((r.key.clone(), r.dedupe_version())))
        .map(|r| r.key.clone())
        .collect();
    assert_eq!(new, ["PO-0004"]);
    // GL entries carry their lines through the nested connection.
    let gl = graphql(&e)
        .with_class(X3Class::GlEntries)
        .build()
        .expect("gl");
    let (items, _) = cycle(&gl, None).await;
    let entry = records(&items)
        .into_iter()
        .find(|r| r.key == "ACH~000101")
        .expect("entry");
    assert_eq!(entry.fields.lines.len(), 3);
    assert_eq!(entry.fields.lines[2].gl_account.as_deref(), Some("401100"));
    assert_eq!(
        entry.fields.lines[2].amount.expect("a").amount.to_string(),
        "-18900.0"
    );
}

/// The page's records; a rejected item fails the test.
fn records_of(page: &ml_core::source::Page) -> Vec<&ml_core::record::Record> {
    page.items
        .iter()
        .map(|i| match i {
            SourceItem::Record(r) => r.as_ref(),
            SourceItem::Rejected(x) => panic!("rejected: {}", x.reason),
        })
        .collect()
}

#[tokio::test]
async fn healthcheck_introspects_and_names_missing_fields() {
    let e = demo().await;
    let s = graphql(&e)
        .with_config_str(
            "fields",
            "amount=totalAmountWithoutTax,status=approvalStatus",
        )
        .expect("fields")
        .build()
        .expect("source");
    let err = s.healthcheck().await.expect_err("missing fields");
    let text = err.to_string();
    assert!(
        text.contains("totalAmountWithoutTax") && text.contains("approvalStatus"),
        "{text}"
    );
    // Polling reads around them (an optional field a release lacks): the node's other
    // fields still make records, without amount and status.
    let page = s.poll(None).await.expect("read without the missing fields");
    let records = records_of(&page);
    assert!(!records.is_empty());
    assert!(
        records
            .iter()
            .all(|r| r.fields.amount.is_none() && r.fields.status.is_none())
    );
    assert!(records.iter().all(|r| r.fields.supplier.is_some()));
    // A key the node lacks cannot be read around: a configuration error naming it.
    let no_key = graphql(&e)
        .with_config_str("key", "orderNumber")
        .expect("key")
        .build()
        .expect("source");
    let err = no_key.poll(None).await.expect_err("unknown key");
    assert_eq!(err.class(), ml_core::ErrorClass::Permanent, "{err}");
    assert!(err.to_string().contains("orderNumber"), "{err}");
    let bad_root = graphql(&e)
        .with_config_str("graphql_root", "x3Purchasing.purchaseOrders")
        .expect("root")
        .build()
        .expect("source");
    let err = bad_root.healthcheck().await.expect_err("bad root");
    assert!(err.to_string().contains("purchaseOrders"), "{err}");
}

/// A release without the object an optional field sits in (`vendor.code` where the node
/// has no `vendor`): the server names the object, not the leaf; the stream reads around
/// it instead of pausing.
#[tokio::test]
async fn a_missing_object_of_optional_fields_is_read_around() {
    let e = demo().await;
    let s = graphql(&e)
        .with_config_str(
            "fields",
            "supplier_id=vendor.code,supplier_name=vendor.companyName",
        )
        .expect("fields")
        .build()
        .expect("source");
    let page = s.poll(None).await.expect("read without the missing object");
    let records = records_of(&page);
    assert!(!records.is_empty());
    assert!(records.iter().all(|r| r.fields.supplier.is_none()));
    assert!(records.iter().all(|r| r.fields.amount.is_some()));
    // A key inside a missing object is still a configuration error naming it.
    let no_key = graphql(&e)
        .with_config_str("key", "header.number")
        .expect("key")
        .build()
        .expect("source");
    let err = no_key.poll(None).await.expect_err("unknown key");
    assert!(err.to_string().contains("header"), "{err}");
}

#[tokio::test]
async fn a_wrong_secret_or_endpoint_header_is_refused() {
    let e = demo().await;
    let s = graphql(&e)
        .with_config_str("client_secret", "not-the-secret")
        .expect("secret")
        .build()
        .expect("source");
    let err = s.poll(None).await.expect_err("bad signature");
    assert!(!err.to_string().contains("not-the-secret"), "{err}");
    let s = graphql(&e)
        .with_config_str("endpoint_header", "x-etna-endpoint")
        .expect("header")
        .build()
        .expect("source");
    let err = s.poll(None).await.expect_err("no endpoint header");
    assert!(err.to_string().contains("x-xtrem-endpoint"), "{err}");
}
