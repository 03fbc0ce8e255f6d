use ml_core::record::EntityKind;

use super::*;
use crate::class::X3Class;

fn map(class: X3Class, json: &str, zone: &TimeZone) -> PageRow {
    let spec = class.spec();
    let m = Mapping {
        system: "SageX3(h, SEED, X)",
        kind: &spec.kind,
        keys: &spec.keys,
        stamp: &spec.stamp,
        fields: &spec.fields,
        zone,
        default_currency: None,
    };
    let raw = RawValue::from_string(json.to_owned()).expect("json");
    map_item(&m, &raw)
}

fn record(row: &PageRow) -> &Record {
    match &row.item {
        SourceItem::Record(r) => r,
        SourceItem::Rejected(x) => panic!("rejected: {}", x.reason),
    }
}

#[test]
fn purchase_order_with_exact_money_and_unicode() {
    let row = map(
        X3Class::PurchaseOrders,
        r#"{"POHNUM":"PO-0001","BPSNUM":"S001","BPSNAM":"Société Générale d'Équipement 株式会社","TOTLINAMT":12345.670,"CUR":"EUR","APPFLG":"3","POHFCY":"FR011","UPDDATTIM":"2026-03-20T14:53:51Z"}"#,
        &TimeZone::UTC,
    );
    let r = record(&row);
    assert_eq!(r.key, "PO-0001");
    assert_eq!(r.kind, EntityKind::PurchaseOrder);
    assert_eq!(
        r.fields.supplier.as_deref(),
        Some("Société Générale d'Équipement 株式会社")
    );
    let m = r.fields.amount.expect("amount");
    assert_eq!(m.amount.to_string(), "12345.670");
    assert_eq!(m.currency.as_str(), "EUR");
    assert_eq!(row.version, "2026-03-20T14:53:51Z");
}

#[test]
fn credit_notes_are_negative_and_stamps_read_in_the_site_zone() {
    let paris = TimeZone::get("Europe/Paris").expect("tz");
    let row = map(
        X3Class::SupplierInvoices,
        r#"{"NUM":"FAC-9","BPR":"S1","AMTATI":"250.10","CUR":"EUR","INVTYP":2,"UPDDATTIM":"2026-03-20T15:53:51"}"#,
        &paris,
    );
    let r = record(&row);
    assert_eq!(
        r.fields.amount.expect("amount").amount.to_string(),
        "-250.10"
    );
    assert_eq!(r.modified_at.to_string(), "2026-03-20T14:53:51Z");
    assert_eq!(
        r.fields.extra.get("credit_note").map(String::as_str),
        Some("true")
    );
}

#[test]
fn gl_entry_lines_debit_and_credit() {
    let row = map(
        X3Class::GlEntries,
        r#"{"TYP":"ACH","NUM":"000123","CUR":"USD","CPY":"US1","UPDDATTIM":"2026-03-20T14:53:51Z",
            "GACCENTRYD":[{"LIN":1,"ACC":"601000","SNS":1,"AMTCUR":100.50},
                          {"LIN":2,"ACC":"401000","SNS":-1,"AMTCUR":"100.50","DES":"Supplier"}]}"#,
        &TimeZone::UTC,
    );
    let r = record(&row);
    assert_eq!(r.key, "ACH~000123");
    assert_eq!(r.fields.document_number.as_deref(), Some("000123"));
    assert_eq!(
        r.fields.extra.get("entry_type").map(String::as_str),
        Some("ACH")
    );
    assert_eq!(r.fields.lines.len(), 2);
    assert_eq!(r.fields.lines[1].gl_account.as_deref(), Some("401000"));
    assert_eq!(
        r.fields.lines[1].amount.expect("a").amount.to_string(),
        "-100.50"
    );
    assert_eq!(
        r.fields.lines[1].description.as_deref(),
        Some("Credit: Supplier")
    );
    assert_eq!(r.fields.amount.expect("total").amount.to_string(), "100.50");
    assert_eq!(r.fields.gl_account.as_deref(), Some("601000"));
}

#[test]
fn bad_items_are_rejected_with_a_reason() {
    for (json, why) in [
        (r#"{"BPSNUM":"S"}"#, "missing key"),
        (r#"{"POHNUM":"P1","UPDDATTIM":"soon"}"#, "update stamp"),
        (
            r#"{"POHNUM":"P1","UPDDATTIM":"2026-03-20T14:53:51Z","TOTLINAMT":"12,5","CUR":"EUR"}"#,
            "not a decimal",
        ),
        (
            r#"{"POHNUM":"P1","UPDDATTIM":"2026-03-20T14:53:51Z","TOTLINAMT":"1","CUR":"EURO"}"#,
            "currency",
        ),
        (
            r#"{"POHNUM":"P1","UPDDATTIM":"2026-03-20T14:53:51Z","TOTLINAMT":"1"}"#,
            "no currency",
        ),
        (
            r#"{"POHNUM":"P1","UPDDATTIM":"2026-03-20T14:53:51Z","ORDDAT":"2026-13-45"}"#,
            "not a date",
        ),
        ("[1]", "not a JSON object"),
    ] {
        let row = map(X3Class::PurchaseOrders, json, &TimeZone::UTC);
        match &row.item {
            SourceItem::Rejected(x) => assert!(x.reason.contains(why), "{json}: {}", x.reason),
            SourceItem::Record(_) => panic!("{json} accepted"),
        }
    }
}

#[test]
fn blank_dates_are_no_date_and_dates_are_kept() {
    for (served, kept) in [
        ("2026-03-20", Some("2026-03-20")),
        ("2026-03-20T00:00:00Z", Some("2026-03-20T00:00:00Z")),
        ("0000-00-00", None),
        ("1753-01-01", None),
        ("", None),
    ] {
        let json =
            format!(r#"{{"POHNUM":"P1","UPDDATTIM":"2026-03-20T14:53:51Z","ORDDAT":"{served}"}}"#);
        let row = map(X3Class::PurchaseOrders, &json, &TimeZone::UTC);
        assert_eq!(
            record(&row).fields.extra.get("date").map(String::as_str),
            kept,
            "{served}"
        );
    }
}

#[test]
fn graphql_nested_paths() {
    let spec = X3Class::PurchaseOrders.spec();
    let g = &spec.graphql;
    let m = Mapping {
        system: "s",
        kind: &spec.kind,
        keys: &g.keys,
        stamp: &g.stamp,
        fields: &g.fields,
        zone: &TimeZone::UTC,
        default_currency: None,
    };
    let raw = RawValue::from_string(
        r#"{"id":"PO1","_updateStamp":"2026-03-20T14:53:51Z","orderFromSupplier":{"code":"S1","companyName":"Ünïcode GmbH"},"totalAmountExcludingTax":"10.00","currency":{"code":"EUR"}}"#.to_owned(),
    )
    .expect("json");
    let row = map_item(&m, &raw);
    let r = record(&row);
    assert_eq!(r.fields.supplier.as_deref(), Some("Ünïcode GmbH"));
    assert_eq!(r.fields.amount.expect("a").amount.to_string(), "10.00");
}

#[test]
fn status_codes_are_shown_with_labels_and_kept_as_served() {
    for (code, label) in [
        ("1", "Not approved"),
        ("2", "Partly approved"),
        ("3", "Approved"),
        ("9", "9"),
    ] {
        let row = map(
            X3Class::PurchaseOrders,
            &format!(
                r#"{{"POHNUM":"PO-1","TOTLINAMT":"1.00","CUR":"EUR","APPFLG":"{code}","UPDDATTIM":"2026-03-20T14:53:51Z"}}"#
            ),
            &TimeZone::UTC,
        );
        let r = record(&row);
        assert_eq!(r.fields.status.as_deref(), Some(label), "{code}");
        assert_eq!(
            r.fields.extra.get("status_code").map(String::as_str),
            Some(code)
        );
    }
    // A number as served (not a string) is labelled too.
    let row = map(
        X3Class::GlEntries,
        r#"{"TYP":"ACH","NUM":"1","CUR":"EUR","STA":2,"UPDDATTIM":"2026-03-20T14:53:51Z"}"#,
        &TimeZone::UTC,
    );
    assert_eq!(record(&row).fields.status.as_deref(), Some("Final"));
    // No status property served: none shown, none kept.
    let row = map(
        X3Class::PurchaseOrders,
        r#"{"POHNUM":"PO-2","TOTLINAMT":"1.00","CUR":"EUR","UPDDATTIM":"2026-03-20T14:53:51Z"}"#,
        &TimeZone::UTC,
    );
    let r = record(&row);
    assert_eq!(r.fields.status, None);
    assert!(!r.fields.extra.contains_key("status_code"));
}
