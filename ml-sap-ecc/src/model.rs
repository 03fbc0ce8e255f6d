//! Rows -> records: vendor invoices (RBKP + RSEG + EKPO + LFA1), GL documents (BKPF +
//! BSEG), purchase orders (`BAPI_PO_GETDETAIL1`). Money is `Decimal` + currency from the
//! exact text; a row that cannot be mapped becomes `SourceItem::Rejected` with its reason.

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use jiff::tz::TimeZone;
use ml_core::cursor::PageRow;
use ml_core::money::{Currency, Money};
use ml_core::record::{BusinessFields, EntityKind, Line, RawJson, Record, Rejected, SourceItem};
use rust_decimal::Decimal;

use crate::read_table::parse_number;
use crate::rfc::{RfcResponse, RfcRow};
use crate::scan::{ScanSpec, local_to_instant};

/// Which key the journal dedupes vendor invoices on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IdempotencyKey {
    /// Document number + fiscal year (`BELNR/GJAHR`; GL: `BUKRS/BELNR/GJAHR`).
    #[default]
    DocumentNumber,
    /// The supplier's reference `XBLNR` (`REF_DOC_NO` in the BAPIs), scoped by company
    /// code and vendor because references repeat across vendors; falls back to the
    /// document number when blank.
    Reference,
}

/// The decimals SAP stores an amount of `currency` with are always 2: currencies with
/// other ISO decimals are shifted (TCURX). Returns the factor to the real amount.
fn tcurx_factor(currency: &str) -> Decimal {
    match currency {
        "JPY" | "KRW" | "CLP" | "VND" | "ISK" | "PYG" | "UGX" | "XOF" | "XAF" => {
            Decimal::ONE_HUNDRED
        }
        "KWD" | "BHD" | "JOD" | "OMR" | "TND" | "LYD" | "IQD" => Decimal::new(1, 1),
        _ => Decimal::ONE,
    }
}

/// An amount of a table column (internal format, SAP's 2 decimals) in `currency`.
pub fn table_money(raw: &str, currency: &str) -> Option<Money> {
    let c = Currency::new(currency.trim()).ok()?;
    let v = parse_number(raw)?;
    Some(Money::new(v * tcurx_factor(currency.trim()), c))
}

pub(crate) struct Ctx<'a> {
    pub(crate) system: &'a str,
    pub(crate) tz: &'a TimeZone,
    pub(crate) idempotency: IdempotencyKey,
    pub(crate) tolerance: Decimal,
}

fn raw_of(rows: &[(&str, &RfcRow)]) -> RawJson {
    let v: serde_json::Map<String, serde_json::Value> = rows
        .iter()
        .map(|(name, r)| {
            let m: serde_json::Map<String, serde_json::Value> = r
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            ((*name).to_owned(), serde_json::Value::Object(m))
        })
        .collect();
    RawJson::from(serde_json::Value::Object(v))
}

fn get<'a>(r: &'a RfcRow, k: &str) -> &'a str {
    r.get(k).map_or("", |s| s.as_str())
}

fn non_empty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

/// A key in the form SAP GUI shows it (conversion exit ALPHA, output): an all-digit value
/// without its leading zeros (`0000004711` -> `4711`), anything else trimmed. Tables and
/// BAPIs answer cost centers and G/L accounts in the internal form; people (and routing
/// rules) write the external one.
fn alpha_out(s: &str) -> Option<String> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        let short = s.trim_start_matches('0');
        return Some(if short.is_empty() { "0" } else { short }.to_owned());
    }
    Some(s.to_owned())
}

fn reject(spec: &ScanSpec, row: &RfcRow, naive: Option<Timestamp>, reason: String) -> PageRow {
    let key = spec.cursor_key(row);
    let mut r = Rejected::new(Some(key.clone()), reason, raw_of(&[(spec.table, row)]));
    r.modified_at = naive;
    PageRow {
        key,
        version: String::new(),
        modified_at: naive,
        item: SourceItem::Rejected(r),
    }
}

fn accept(spec: &ScanSpec, row: &RfcRow, naive: Timestamp, record: Record) -> PageRow {
    PageRow {
        key: spec.cursor_key(row),
        version: record.dedupe_version(),
        modified_at: Some(naive),
        item: SourceItem::Record(Box::new(record)),
    }
}

/// What an invoice is compared with.
pub(crate) struct InvoiceContext<'a> {
    /// RSEG rows by `BELNR/GJAHR`.
    pub(crate) lines: &'a HashMap<String, Vec<RfcRow>>,
    /// EKPO rows by `EBELN/EBELP`.
    pub(crate) po_items: &'a HashMap<String, RfcRow>,
    /// LFA1 rows by `LIFNR`.
    pub(crate) vendors: &'a HashMap<String, RfcRow>,
}

/// RBSTAT values that mean the invoice needs attention (errors in background
/// verification, entered and held). Unconfirmed beyond the domain texts.
const MISMATCH_STATUS: &[&str] = &["3", "D"];

fn rbstat_text(s: &str) -> &'static str {
    match s {
        "1" => "saved for background verification",
        "2" => "deleted",
        "3" => "errors in background verification",
        "4" => "verified in background",
        "5" => "posted",
        "A" => "parked",
        "B" => "parked and complete",
        "C" | "E" => "parked and released",
        "D" => "entered and held",
        _ => "unknown status",
    }
}

pub(crate) fn invoice(
    ctx: &Ctx<'_>,
    spec: &ScanSpec,
    row: &RfcRow,
    with: &InvoiceContext<'_>,
) -> PageRow {
    let naive = spec.naive_stamp(row);
    let Some(stamp) = naive else {
        return reject(
            spec,
            row,
            None,
            "CPUDT/CPUTM is not a valid date and time".into(),
        );
    };
    let key = spec.cursor_key(row);
    let belnr = get(row, "BELNR");
    let waers = get(row, "WAERS").trim();
    let Some(gross) = table_money(get(row, "RMWWR"), waers) else {
        return reject(
            spec,
            row,
            naive,
            format!(
                "RMWWR `{}` in `{waers}` is not an amount",
                get(row, "RMWWR")
            ),
        );
    };
    let rbstat = get(row, "RBSTAT").trim();
    let lines = with.lines.get(&key).map_or(&[][..], Vec::as_slice);
    let mut invoice_net = Decimal::ZERO;
    let mut po_net = Decimal::ZERO;
    let mut po_numbers = Vec::new();
    let mut missing_po_items = 0;
    let mut out_lines = Vec::new();
    for l in lines {
        let net = table_money(get(l, "WRBTR"), waers);
        invoice_net += net.map_or(Decimal::ZERO, |m| m.amount);
        let ebeln = get(l, "EBELN").trim();
        if !ebeln.is_empty() {
            if !po_numbers.iter().any(|p| p == ebeln) {
                po_numbers.push(ebeln.to_owned());
            }
            match with.po_items.get(&format!("{ebeln}/{}", get(l, "EBELP"))) {
                Some(item) => {
                    po_net +=
                        table_money(get(item, "NETWR"), waers).map_or(Decimal::ZERO, |m| m.amount);
                }
                None => missing_po_items += 1,
            }
        }
        out_lines.push(Line {
            number: get(l, "BUZEI").to_owned(),
            description: non_empty(ebeln).map(|e| format!("PO {e} item {}", get(l, "EBELP"))),
            quantity: parse_number(get(l, "MENGE")),
            amount: net,
            material: non_empty(get(l, "MATNR")),
            ..Line::default()
        });
    }
    let mut reasons = Vec::new();
    if MISMATCH_STATUS.contains(&rbstat) {
        reasons.push(format!("status {rbstat} ({})", rbstat_text(rbstat)));
    }
    if non_empty(get(row, "ZLSPR")).is_some() {
        reasons.push(format!("payment block {}", get(row, "ZLSPR").trim()));
    }
    if missing_po_items > 0 {
        reasons.push(format!("{missing_po_items} PO item(s) not found"));
    } else if !po_numbers.is_empty()
        && invoice_net >= Decimal::ZERO
        && (invoice_net - po_net).abs() > ctx.tolerance
    {
        // Credit memos (negative) are not compared with the ordered value.
        reasons.push(format!("invoiced {invoice_net} vs PO {po_net}"));
    }
    let matched = if po_numbers.is_empty() {
        "no_po"
    } else if reasons.is_empty() {
        "matched"
    } else {
        "mismatch"
    };
    let vendor_id = get(row, "LIFNR").trim();
    let vendor = with.vendors.get(vendor_id);
    let mut extra = BTreeMap::new();
    extra.insert("match".to_owned(), matched.to_owned());
    if !reasons.is_empty() {
        extra.insert("mismatch_reason".to_owned(), reasons.join("; "));
    }
    extra.insert("invoice_status".to_owned(), rbstat.to_owned());
    extra.insert("fiscal_year".to_owned(), get(row, "GJAHR").to_owned());
    extra.insert("posting_date".to_owned(), get(row, "BUDAT").to_owned());
    extra.insert("entered_by".to_owned(), get(row, "USNAM").trim().to_owned());
    if !po_numbers.is_empty() {
        extra.insert("po_numbers".to_owned(), po_numbers.join(","));
        extra.insert("po_net".to_owned(), po_net.to_string());
        extra.insert("invoice_net".to_owned(), invoice_net.to_string());
    }
    if let Some(p) = vendor.and_then(|v| non_empty(get(v, "TELF1"))) {
        extra.insert("vendor_phone".to_owned(), p);
    }
    let reference = non_empty(get(row, "XBLNR"));
    // On the supplier's reference, a second document with the same reference (the same
    // supplier invoice entered twice) must be the same version too, or the journal takes
    // it for an update and sends it again: the version is the reference's, not the entry
    // stamp (which differs per document; RBKP has no change stamp to tell an edit by).
    let (idem, version) = match (ctx.idempotency, &reference) {
        (IdempotencyKey::Reference, Some(r)) => (
            format!("ref:{}/{vendor_id}/{r}", get(row, "BUKRS").trim()),
            Some(REFERENCE_VERSION),
        ),
        _ => (key.clone(), None),
    };
    let fields = BusinessFields {
        document_number: Some(belnr.to_owned()),
        supplier_id: non_empty(vendor_id),
        supplier: vendor.and_then(|v| non_empty(get(v, "NAME1"))),
        amount: Some(gross),
        company_code: non_empty(get(row, "BUKRS")),
        status: Some(matched.to_owned()),
        reference,
        lines: out_lines,
        extra,
        ..BusinessFields::default()
    };
    let mut raw: Vec<(&str, &RfcRow)> = vec![("RBKP", row)];
    raw.extend(lines.iter().map(|l| ("RSEG", l)));
    let record = Record::new(
        ctx.system,
        EntityKind::SupplierInvoice,
        key,
        local_to_instant(stamp, ctx.tz),
    )
    .with_idempotency_key(idem)
    .with_fields(fields)
    .with_raw(raw_of(&raw));
    let record = match version {
        Some(v) => record.with_version(v),
        None => record,
    };
    accept(spec, row, stamp, record)
}

/// The version of every invoice deduped on its supplier reference: one message per
/// reference, whichever document carries it.
pub const REFERENCE_VERSION: &str = "by-reference";

pub(crate) fn gl(ctx: &Ctx<'_>, spec: &ScanSpec, row: &RfcRow, lines: &[RfcRow]) -> PageRow {
    let naive = spec.naive_stamp(row);
    let Some(stamp) = naive else {
        return reject(
            spec,
            row,
            None,
            "CPUDT/CPUTM is not a valid date and time".into(),
        );
    };
    let waers = get(row, "WAERS").trim();
    if Currency::new(waers).is_err() {
        return reject(
            spec,
            row,
            naive,
            format!("WAERS `{waers}` is not a currency"),
        );
    }
    if lines.is_empty() {
        return reject(spec, row, naive, "no BSEG lines for the document".into());
    }
    let mut debit = Decimal::ZERO;
    let mut out = Vec::new();
    let mut by_cost_center: BTreeMap<String, Decimal> = BTreeMap::new();
    for l in lines {
        let Some(m) = table_money(get(l, "WRBTR"), waers) else {
            return reject(
                spec,
                row,
                naive,
                format!(
                    "BSEG line {} amount `{}` is not a number",
                    get(l, "BUZEI"),
                    get(l, "WRBTR")
                ),
            );
        };
        let signed = if get(l, "SHKZG").trim() == "H" {
            -m.amount
        } else {
            m.amount
        };
        if signed > Decimal::ZERO {
            debit += signed;
        }
        let kostl = alpha_out(get(l, "KOSTL"));
        if let Some(k) = &kostl {
            *by_cost_center.entry(k.clone()).or_default() += signed;
        }
        out.push(Line {
            number: get(l, "BUZEI").to_owned(),
            description: non_empty(get(l, "SGTXT")),
            amount: Some(Money::new(signed, m.currency)),
            gl_account: alpha_out(get(l, "HKONT")),
            cost_center: kostl,
            ..Line::default()
        });
    }
    let mut extra = BTreeMap::new();
    for (k, f) in [
        ("posting_date", "BUDAT"),
        ("period", "MONAT"),
        ("fiscal_year", "GJAHR"),
        ("document_type", "BLART"),
        ("header_text", "BKTXT"),
        ("transaction", "TCODE"),
        ("entered_by", "USNAM"),
    ] {
        if let Some(v) = non_empty(get(row, f)) {
            extra.insert(k.to_owned(), v);
        }
    }
    if !by_cost_center.is_empty() {
        extra.insert(
            "cost_centers".to_owned(),
            by_cost_center
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(";"),
        );
    }
    let key = spec.cursor_key(row);
    let cost_center = (by_cost_center.len() == 1)
        .then(|| by_cost_center.keys().next().cloned())
        .flatten();
    let fields = BusinessFields {
        document_number: Some(get(row, "BELNR").to_owned()),
        amount: Currency::new(waers).ok().map(|c| Money::new(debit, c)),
        company_code: non_empty(get(row, "BUKRS")),
        reference: non_empty(get(row, "XBLNR")),
        cost_center,
        lines: out,
        extra,
        ..BusinessFields::default()
    };
    let mut raw: Vec<(&str, &RfcRow)> = vec![("BKPF", row)];
    raw.extend(lines.iter().map(|l| ("BSEG", l)));
    let record = Record::new(
        ctx.system,
        EntityKind::GlJournal,
        key.clone(),
        local_to_instant(stamp, ctx.tz),
    )
    .with_idempotency_key(key)
    .with_fields(fields)
    .with_raw(raw_of(&raw));
    accept(spec, row, stamp, record)
}

/// BAPIRET2 rows of type E or A, as one message.
pub fn bapi_failures(r: &RfcResponse) -> Option<String> {
    let msgs: Vec<String> = r
        .table("RETURN")
        .iter()
        .filter(|m| matches!(get(m, "TYPE").trim(), "E" | "A"))
        .map(|m| {
            format!(
                "{} {}/{}: {}",
                get(m, "TYPE").trim(),
                get(m, "ID").trim(),
                get(m, "NUMBER").trim(),
                get(m, "MESSAGE").trim()
            )
        })
        .collect();
    (!msgs.is_empty()).then(|| msgs.join("; "))
}

/// A PO event: `version` is `created` for a new PO, else the CDHDR change number.
pub(crate) struct PoEvent<'a> {
    pub(crate) ebeln: &'a str,
    pub(crate) version: String,
    pub(crate) change: Option<&'a RfcRow>,
}

pub(crate) fn purchase_order(
    ctx: &Ctx<'_>,
    spec: &ScanSpec,
    row: &RfcRow,
    ev: &PoEvent<'_>,
    detail: Result<&RfcResponse, String>,
    vendors: &HashMap<String, RfcRow>,
) -> PageRow {
    let naive = spec.naive_stamp(row);
    let Some(stamp) = naive else {
        return reject(spec, row, None, "the change date/time is not valid".into());
    };
    let detail = match detail {
        Ok(d) => d,
        Err(reason) => return reject(spec, row, naive, reason),
    };
    if let Some(f) = bapi_failures(detail) {
        return reject(spec, row, naive, format!("BAPI_PO_GETDETAIL1: {f}"));
    }
    let empty = RfcRow::new();
    let h = detail.structure("POHEADER").unwrap_or(&empty);
    let currency = get(h, "CURRENCY").trim();
    let Ok(cur) = Currency::new(currency) else {
        return reject(
            spec,
            row,
            naive,
            format!("POHEADER-CURRENCY `{currency}` is not a currency"),
        );
    };
    let mut account_by_item: HashMap<String, Vec<&RfcRow>> = HashMap::new();
    for a in detail.table("POACCOUNT") {
        account_by_item
            .entry(get(a, "PO_ITEM").trim().to_owned())
            .or_default()
            .push(a);
    }
    let mut total = Decimal::ZERO;
    let mut lines = Vec::new();
    let mut cost_centers: Vec<String> = Vec::new();
    for item in detail.table("POITEM") {
        if get(item, "DELETE_IND").trim() == "L" {
            continue;
        }
        let no = get(item, "PO_ITEM").trim().to_owned();
        let accounts = account_by_item.get(&no).map_or(&[][..], Vec::as_slice);
        // BAPI amounts are external format (real decimals), unlike table columns.
        let from_accounts: Option<Decimal> = (!accounts.is_empty()).then(|| {
            accounts
                .iter()
                .filter_map(|a| parse_number(get(a, "NET_VALUE")))
                .sum()
        });
        let computed = || -> Option<Decimal> {
            let q = parse_number(get(item, "QUANTITY"))?;
            let p = parse_number(get(item, "NET_PRICE"))?;
            let unit = parse_number(get(item, "PRICE_UNIT"))
                .filter(|u| !u.is_zero())
                .unwrap_or(Decimal::ONE);
            Some((q * p / unit).round_dp(2))
        };
        let Some(net) = from_accounts.or_else(computed) else {
            return reject(spec, row, naive, format!("PO item {no} has no net value"));
        };
        total += net;
        let kostl = accounts
            .iter()
            .find_map(|a| alpha_out(get(a, "COSTCENTER")));
        if let Some(k) = &kostl
            && !cost_centers.contains(k)
        {
            cost_centers.push(k.clone());
        }
        lines.push(Line {
            number: no,
            description: non_empty(get(item, "SHORT_TEXT")),
            quantity: parse_number(get(item, "QUANTITY")),
            amount: Some(Money::new(net, cur)),
            gl_account: accounts
                .iter()
                .find_map(|a| alpha_out(get(a, "GL_ACCOUNT"))),
            cost_center: kostl,
            material: non_empty(get(item, "MATERIAL")),
        });
    }
    let vendor_id = get(h, "VENDOR").trim().to_owned();
    let vendor = vendors.get(&vendor_id);
    let mut extra = BTreeMap::new();
    extra.insert(
        "event".to_owned(),
        if ev.change.is_some() {
            "changed"
        } else {
            "created"
        }
        .to_owned(),
    );
    for (k, f) in [
        ("purchasing_group", "PUR_GROUP"),
        ("purchasing_org", "PURCH_ORG"),
        ("document_type", "DOC_TYPE"),
        ("created_by", "CREATED_BY"),
        ("document_date", "DOC_DATE"),
    ] {
        if let Some(v) = non_empty(get(h, f)) {
            extra.insert(k.to_owned(), v);
        }
    }
    // POHEADER's purchasing group is not in every release's BAPIMEPOHEADER; a new PO's
    // EKKO row carries it as EKGRP.
    if !extra.contains_key("purchasing_group")
        && let Some(v) = non_empty(get(row, "EKGRP"))
    {
        extra.insert("purchasing_group".to_owned(), v);
    }
    if let Some(c) = ev.change {
        extra.insert("change_number".to_owned(), get(c, "CHANGENR").to_owned());
        extra.insert(
            "changed_by".to_owned(),
            get(c, "USERNAME").trim().to_owned(),
        );
        extra.insert("transaction".to_owned(), get(c, "TCODE").trim().to_owned());
    }
    if let Some(p) = vendor.and_then(|v| non_empty(get(v, "TELF1"))) {
        extra.insert("vendor_phone".to_owned(), p);
    }
    let warnings: Vec<String> = detail
        .table("RETURN")
        .iter()
        .filter(|m| get(m, "TYPE").trim() == "W")
        .map(|m| get(m, "MESSAGE").trim().to_owned())
        .collect();
    if !warnings.is_empty() {
        extra.insert("warnings".to_owned(), warnings.join("; "));
    }
    let fields = BusinessFields {
        document_number: Some(ev.ebeln.to_owned()),
        supplier_id: non_empty(&vendor_id),
        supplier: vendor.and_then(|v| non_empty(get(v, "NAME1"))),
        amount: Some(Money::new(total, cur)),
        company_code: non_empty(get(h, "COMP_CODE")),
        status: Some(
            if ev.change.is_some() {
                "changed"
            } else {
                "created"
            }
            .to_owned(),
        ),
        cost_center: (cost_centers.len() == 1).then(|| cost_centers[0].clone()),
        lines,
        extra,
        ..BusinessFields::default()
    };
    let mut raw_rows: Vec<(&str, &RfcRow)> = vec![(spec.table, row), ("POHEADER", h)];
    raw_rows.extend(detail.table("POITEM").iter().map(|i| ("POITEM", i)));
    let record = Record::new(
        ctx.system,
        EntityKind::PurchaseOrder,
        ev.ebeln,
        local_to_instant(stamp, ctx.tz),
    )
    .with_idempotency_key(ev.ebeln)
    .with_version(ev.version.clone())
    .with_fields(fields)
    .with_raw(raw_of(&raw_rows));
    accept(spec, row, stamp, record)
}

#[cfg(test)]
mod tests {
    use std::str::FromStr as _;

    use super::*;

    #[test]
    fn alpha_keys_are_shown_without_leading_zeros() {
        assert_eq!(alpha_out(" 0000004711 ").as_deref(), Some("4711"));
        assert_eq!(alpha_out("0000000000").as_deref(), Some("0"));
        assert_eq!(alpha_out("CC-0042").as_deref(), Some("CC-0042"));
        assert_eq!(alpha_out("00A1").as_deref(), Some("00A1"));
        assert_eq!(alpha_out("   "), None);
    }

    #[test]
    fn table_amounts_follow_tcurx() {
        let m = table_money("  1234.50-", "EUR").expect("eur");
        assert_eq!(m.amount, Decimal::from_str("-1234.50").expect("d"));
        assert_eq!(
            table_money("100.00", "JPY").expect("jpy").amount,
            Decimal::from(10_000)
        );
        assert_eq!(
            table_money("12.345", "KWD").expect("kwd").amount,
            Decimal::from_str("1.2345").expect("d")
        );
        assert!(table_money("abc", "EUR").is_none());
        assert!(table_money("1.00", "").is_none());
    }

    #[test]
    fn bapi_return_rows_of_type_e_and_a_fail() {
        let mut r = RfcResponse::default();
        let row = |t: &str, msg: &str| -> RfcRow {
            [
                ("TYPE", t),
                ("ID", "ME"),
                ("NUMBER", "045"),
                ("MESSAGE", msg),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
        };
        r.params.insert(
            "RETURN".into(),
            crate::rfc::RfcValue::Table(vec![row("W", "blocked"), row("S", "ok")]),
        );
        assert_eq!(bapi_failures(&r), None);
        r.params.insert(
            "RETURN".into(),
            crate::rfc::RfcValue::Table(vec![
                row("W", "x"),
                row("A", "abort"),
                row("E", "no auth"),
            ]),
        );
        assert_eq!(
            bapi_failures(&r).as_deref(),
            Some("A ME/045: abort; E ME/045: no auth")
        );
    }
}
