//! Mapping one REST item to a [`Record`] (or a [`Rejected`] item), reading amounts from the
//! item's exact JSON text (never through a float).

use std::borrow::{Borrow, Cow};
use std::collections::BTreeMap;
use std::str::FromStr as _;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use ml_core::money::{Currency, Money};
use ml_core::record::{BusinessFields, Line, RawJson, Record, Rejected, SourceItem};
use rust_decimal::Decimal;
use serde_json::value::RawValue;

use crate::resource::{LineSpec, ResourceSpec};

/// An attribute name, borrowed from the response text unless it holds escapes.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, serde::Deserialize)]
#[serde(transparent)]
pub(crate) struct Key<'a>(#[serde(borrow)] Cow<'a, str>);

impl Borrow<str> for Key<'_> {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// An item's attributes with their exact JSON text, borrowed from the response body (no
/// allocation per attribute: an invoice with its lines and distributions has dozens).
pub(crate) type RawItem<'a> = BTreeMap<Key<'a>, &'a RawValue>;

/// One mapped item with what the cursor needs to know about it.
#[derive(Debug)]
pub(crate) struct Mapped {
    pub(crate) key: String,
    pub(crate) version: String,
    pub(crate) modified_at: Option<Timestamp>,
    pub(crate) item: SourceItem,
}

fn text(item: &RawItem<'_>, attr: &str) -> Option<String> {
    let raw = item.get(attr)?.get();
    match serde_json::from_str::<serde_json::Value>(raw).ok()? {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Number(_) | serde_json::Value::Bool(_) => Some(raw.trim().to_owned()),
        _ => None,
    }
}

/// Parses a JSON number (or numeric string) exactly, exponent forms included.
pub fn parse_decimal(raw: &str) -> Option<Decimal> {
    let t = raw.trim().trim_matches('"').trim();
    if t.is_empty() {
        return None;
    }
    if t.contains(['e', 'E']) {
        Decimal::from_scientific(t).ok()
    } else {
        Decimal::from_str(t).ok()
    }
}

/// Parses a Fusion timestamp: RFC 3339 with an offset (`+00:00`, `-07:00`, `Z`); a value
/// without an offset is read in `tz` (the pod's zone, configured); a bare date is midnight
/// in `tz`.
pub fn parse_timestamp(s: &str, tz: &TimeZone) -> Option<Timestamp> {
    let s = s.trim();
    if let Ok(t) = s.parse::<Timestamp>() {
        return Some(t);
    }
    if let Ok(dt) = s.parse::<jiff::civil::DateTime>() {
        return dt.to_zoned(tz.clone()).ok().map(|z| z.timestamp());
    }
    None
}

fn snake(attr: &str) -> String {
    let mut out = String::with_capacity(attr.len() + 4);
    for (i, c) in attr.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Maps one item. `fallback_time` is used for the cursor when the timestamp does not parse
/// (such an item is rejected).
pub(crate) fn map_item(
    spec: &ResourceSpec,
    system: &str,
    tz: &TimeZone,
    default_currency: Option<Currency>,
    raw: &RawValue,
) -> Mapped {
    // The item's exact text goes to the journal: a `Value` would round amounts through f64.
    let value = || RawJson::from(raw.to_owned());
    let reject = |key: Option<String>, modified_at: Option<Timestamp>, reason: String| {
        let mut r = Rejected::new(key.clone(), reason, value());
        r.modified_at = modified_at;
        Mapped {
            key: key.unwrap_or_else(|| r.identity()),
            version: modified_at.map(|t| t.to_string()).unwrap_or_default(),
            modified_at,
            item: SourceItem::Rejected(r),
        }
    };
    let item: RawItem<'_> = match serde_json::from_str(raw.get()) {
        Ok(i) => i,
        Err(e) => return reject(None, None, format!("item is not a JSON object: {e}")),
    };
    let key = text(&item, &spec.key);
    let ts_text = text(&item, &spec.timestamp);
    let modified_at = ts_text.as_deref().and_then(|s| parse_timestamp(s, tz));
    let Some(key) = key.filter(|k| !k.trim().is_empty()) else {
        return reject(
            None,
            modified_at,
            format!("missing key attribute {}", spec.key),
        );
    };
    let Some(modified) = modified_at else {
        return reject(
            Some(key),
            None,
            match ts_text {
                Some(t) => format!("{} `{t}` is not a date-time", spec.timestamp),
                None => format!("missing {}", spec.timestamp),
            },
        );
    };
    let get = |a: &Option<String>| a.as_deref().and_then(|a| text(&item, a));
    if let Some(attr) = &spec.date
        && let Some(d) = text(&item, attr)
        && d.get(..10)
            .and_then(|x| x.parse::<jiff::civil::Date>().ok())
            .is_none()
    {
        return reject(
            Some(key),
            Some(modified),
            format!("{attr} `{d}` is not a date"),
        );
    }
    let amount = match spec
        .amount
        .as_deref()
        .and_then(|a| item.get(a).map(|r| (a, r)))
    {
        Some((_, r)) if r.get().trim() == "null" => None,
        Some((a, r)) => match parse_decimal(r.get()) {
            Some(d) => Some(d),
            None => {
                return reject(
                    Some(key),
                    Some(modified),
                    format!("{a} `{}` is not a decimal number", r.get()),
                );
            }
        },
        None => None,
    };
    let money = match amount {
        None if spec.amount_required => {
            return reject(
                Some(key),
                Some(modified),
                format!("missing amount ({})", spec.amount.as_deref().unwrap_or("?")),
            );
        }
        None => None,
        Some(a) => {
            let cur = match get(&spec.currency) {
                Some(c) => match Currency::new(&c) {
                    Ok(c) => Some(c),
                    Err(e) => return reject(Some(key), Some(modified), e.to_string()),
                },
                None => default_currency,
            };
            match cur {
                Some(c) => Some(Money::new(a, c)),
                // No currency attribute is read (the pod lacks it) and none is configured:
                // an optional amount cannot be expressed, the record still can.
                None if spec.currency.is_none() && !spec.amount_required => None,
                None => {
                    return reject(
                        Some(key),
                        Some(modified),
                        format!(
                            "amount without currency ({})",
                            spec.currency.as_deref().unwrap_or("?")
                        ),
                    );
                }
            }
        }
    };
    let mut lines = Vec::new();
    let mut truncated = false;
    if let Some(ls) = &spec.lines {
        // Line amounts are in the document's currency.
        let currency = match &money {
            Some(m) => Some(m.currency),
            None => get(&spec.currency)
                .and_then(|c| Currency::new(&c).ok())
                .or(default_currency),
        };
        match map_lines(ls, &item, currency) {
            Ok(d) => {
                lines = d.lines;
                truncated = d.truncated;
            }
            Err(reason) => return reject(Some(key), Some(modified), reason),
        }
    }
    let mut fields = BusinessFields {
        document_number: get(&spec.document_number),
        supplier_id: get(&spec.supplier_id),
        supplier: get(&spec.supplier),
        amount: money,
        company_code: get(&spec.company),
        status: get(&spec.status),
        lines,
        ..BusinessFields::default()
    };
    if truncated {
        fields
            .extra
            .insert(GL_DETAIL_TRUNCATED.to_owned(), "true".to_owned());
    }
    for attr in &spec.extra {
        if let Some(v) = text(&item, attr) {
            fields.extra.insert(snake(attr), v);
        }
    }
    if let Some(attr) = &spec.date
        && let Some(v) = text(&item, attr)
    {
        fields.extra.insert(snake(attr), v);
    }
    let link = item.get("links").and_then(|l| {
        serde_json::from_str::<Vec<serde_json::Value>>(l.get())
            .ok()?
            .into_iter()
            .find(|x| x["rel"] == "self")?["href"]
            .as_str()
            .map(str::to_owned)
    });
    let mut record = Record::new(system, spec.kind.clone(), key.clone(), modified)
        .with_fields(fields)
        .with_raw(value());
    if let Some(v) = text(&item, "ObjectVersionNumber") {
        record = record.with_version(format!("{v}@{modified}"));
    }
    if let Some(l) = link {
        record = record.with_link(l);
    }
    Mapped {
        key,
        version: record.dedupe_version(),
        modified_at: Some(modified),
        item: SourceItem::Record(Box::new(record)),
    }
}

/// The `fields.extra` key set to `"true"` when the server said a child collection (lines
/// or distributions) has more items than it returned (`hasMore`): the lines are then an
/// incomplete GL detail.
pub const GL_DETAIL_TRUNCATED: &str = "gl_detail_truncated";

/// A child collection as served: a JSON array of items (REST framework version 2) or a
/// collection object `{"items": [...], "hasMore": ...}` (version 3 and later).
#[derive(serde::Deserialize)]
struct ChildCollection<'a> {
    #[serde(borrow)]
    items: Option<Vec<RawItem<'a>>>,
    #[serde(rename = "hasMore", default)]
    has_more: bool,
}

/// The items of a child accessor and whether the server said there are more. Absent,
/// `null`, or a collection object without `items` (children not expanded): no items.
fn children<'a>(item: &RawItem<'a>, accessor: &str) -> Result<(Vec<RawItem<'a>>, bool), String> {
    let Some(raw) = item.get(accessor) else {
        return Ok((Vec::new(), false));
    };
    let text = raw.get().trim_start();
    if text.starts_with('[') {
        serde_json::from_str::<Vec<RawItem<'a>>>(text)
            .map(|v| (v, false))
            .map_err(|e| format!("{accessor} is not an array of items: {e}"))
    } else if text.starts_with('{') {
        serde_json::from_str::<ChildCollection<'a>>(text)
            .map(|c| (c.items.unwrap_or_default(), c.has_more))
            .map_err(|e| format!("{accessor} is not a collection: {e}"))
    } else if text == "null" {
        Ok((Vec::new(), false))
    } else {
        Err(format!("{accessor} is neither an array nor a collection"))
    }
}

/// An optional exact amount: absent or `null` is `None`, anything else must parse.
fn child_amount(item: &RawItem<'_>, attr: &str, at: &str) -> Result<Option<Decimal>, String> {
    match item.get(attr) {
        None => Ok(None),
        Some(r) if r.get().trim() == "null" => Ok(None),
        Some(r) => parse_decimal(r.get())
            .map(Some)
            .ok_or_else(|| format!("{at}: {attr} `{}` is not a decimal number", r.get())),
    }
}

/// The mapped lines of one item.
struct LineDetail {
    lines: Vec<Line>,
    truncated: bool,
}

fn describe(kind: Option<String>, description: Option<String>) -> Option<String> {
    match (
        kind.filter(|k| !k.eq_ignore_ascii_case("item")),
        description,
    ) {
        (Some(k), Some(d)) if !d.eq_ignore_ascii_case(&k) => Some(format!("{k}: {d}")),
        (Some(_), Some(d)) => Some(d),
        (Some(k), None) => Some(k),
        (None, d) => d,
    }
}

/// One [`Line`] per distribution (`LINE.DIST`), or per line when it has none. A malformed
/// amount anywhere is an error (the whole item is rejected).
fn map_lines(
    ls: &LineSpec,
    item: &RawItem<'_>,
    currency: Option<Currency>,
) -> Result<LineDetail, String> {
    let opt = |i: &RawItem<'_>, a: &Option<String>| a.as_deref().and_then(|a| text(i, a));
    let money = |d: Option<Decimal>, at: &str| -> Result<Option<Money>, String> {
        match (d, currency) {
            (None, _) => Ok(None),
            (Some(d), Some(c)) => Ok(Some(Money::new(d, c))),
            (Some(_), None) => Err(format!("{at}: an amount without a currency")),
        }
    };
    let (raw_lines, mut truncated) = children(item, &ls.lines)?;
    let mut out = Vec::new();
    for (i, line) in raw_lines.iter().enumerate() {
        let number = text(line, &ls.line_number).unwrap_or_else(|| (i + 1).to_string());
        let at = format!("{} line {number}", ls.lines);
        let line_amount = child_amount(line, &ls.line_amount, &at)?;
        let quantity = match ls.line_quantity.as_deref() {
            Some(q) => child_amount(line, q, &at)?,
            None => None,
        };
        let material = opt(line, &ls.line_item);
        let line_kind = opt(line, &ls.line_type);
        let line_desc = opt(line, &ls.line_description);
        let (dists, more) = match &ls.distributions {
            Some(d) => children(line, d).map_err(|e| format!("{at}: {e}"))?,
            None => (Vec::new(), false),
        };
        truncated |= more;
        if dists.is_empty() {
            let gl_account = opt(line, &ls.line_account);
            out.push(Line {
                number,
                description: describe(line_kind, line_desc),
                quantity,
                amount: money(line_amount, &at)?,
                cost_center: gl_account
                    .as_deref()
                    .and_then(|g| ls.accounts.cost_center_of(g)),
                gl_account,
                material,
            });
            continue;
        }
        for (j, dist) in dists.iter().enumerate() {
            let dnum = text(dist, &ls.distribution_number).unwrap_or_else(|| (j + 1).to_string());
            let at = format!("{at} distribution {dnum}");
            let amount = child_amount(dist, &ls.distribution_amount, &at)?;
            let gl_account = opt(dist, &ls.distribution_account);
            out.push(Line {
                number: format!("{number}.{dnum}"),
                description: describe(
                    opt(dist, &ls.distribution_type).or_else(|| line_kind.clone()),
                    opt(dist, &ls.distribution_description).or_else(|| line_desc.clone()),
                ),
                quantity: None,
                amount: money(amount, &at)?,
                cost_center: gl_account
                    .as_deref()
                    .and_then(|g| ls.accounts.cost_center_of(g)),
                gl_account,
                material: material.clone(),
            });
        }
    }
    Ok(LineDetail {
        lines: out,
        truncated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::OracleResource;

    fn map(json: &str) -> Mapped {
        let raw = RawValue::from_string(json.to_owned()).expect("raw");
        map_item(
            &OracleResource::Invoices.spec(),
            "OracleFusion(x, invoices)",
            &TimeZone::UTC,
            None,
            &raw,
        )
    }

    #[test]
    fn exact_amounts_without_floats() {
        let m = map(
            r#"{"InvoiceId":300100,"InvoiceNumber":"A-1","InvoiceAmount":0.30000000000000004,"InvoiceCurrency":"USD","Supplier":"Müller GmbH","LastUpdateDate":"2026-03-20T14:53:51.123+00:00"}"#,
        );
        let SourceItem::Record(r) = m.item else {
            panic!("record")
        };
        assert_eq!(
            r.fields.amount.expect("amount").amount.to_string(),
            "0.30000000000000004"
        );
        assert_eq!(r.fields.supplier.as_deref(), Some("Müller GmbH"));
        assert_eq!(r.key, "300100");
        let m = map(
            r#"{"InvoiceId":1,"InvoiceAmount":98765432109876.54,"InvoiceCurrency":"eur","LastUpdateDate":"2026-03-20T16:53:51-02:00"}"#,
        );
        let SourceItem::Record(r) = m.item else {
            panic!("record")
        };
        assert_eq!(
            r.fields.amount.expect("a").to_string(),
            "98,765,432,109,876.54 EUR"
        );
        assert_eq!(r.modified_at.to_string(), "2026-03-20T18:53:51Z");
        let m = map(
            r#"{"InvoiceId":2,"InvoiceAmount":-1.5e2,"InvoiceCurrency":"USD","LastUpdateDate":"2026-03-20T16:53:51Z"}"#,
        );
        let SourceItem::Record(r) = m.item else {
            panic!("record")
        };
        assert_eq!(r.fields.amount.expect("a").amount, Decimal::new(-150, 0));
    }

    #[test]
    fn bad_items_are_rejected_with_reason() {
        let m = map(
            r#"{"InvoiceId":7,"InvoiceCurrency":"USD","LastUpdateDate":"2026-03-20T16:53:51Z"}"#,
        );
        let SourceItem::Rejected(r) = m.item else {
            panic!("rejected")
        };
        assert!(r.reason.contains("missing amount"), "{}", r.reason);
        assert_eq!(r.key.as_deref(), Some("7"));
        let m = map(
            r#"{"InvoiceId":8,"InvoiceAmount":1,"InvoiceCurrency":"USD","InvoiceDate":"31/02/2026","LastUpdateDate":"2026-03-20T16:53:51Z"}"#,
        );
        let SourceItem::Rejected(r) = m.item else {
            panic!("rejected")
        };
        assert!(r.reason.contains("InvoiceDate"), "{}", r.reason);
        let m = map(
            r#"{"InvoiceId":9,"InvoiceAmount":1,"InvoiceCurrency":"USD","LastUpdateDate":"yesterday"}"#,
        );
        let SourceItem::Rejected(r) = m.item else {
            panic!("rejected")
        };
        assert!(r.reason.contains("not a date-time"), "{}", r.reason);
        assert!(m.modified_at.is_none());
    }

    fn record(m: Mapped) -> Record {
        match m.item {
            SourceItem::Record(r) => *r,
            SourceItem::Rejected(r) => panic!("rejected: {}", r.reason),
        }
    }

    fn rejected(m: Mapped) -> Rejected {
        match m.item {
            SourceItem::Rejected(r) => r,
            SourceItem::Record(r) => panic!("not rejected: {r:?}"),
        }
    }

    const HEAD: &str = r#""InvoiceId":42,"InvoiceNumber":"INV-42","InvoiceCurrency":"EUR","LastUpdateDate":"2026-03-20T16:53:51Z""#;

    #[test]
    fn one_line_per_distribution_with_exact_amounts() {
        let m = map(&format!(
            r#"{{{HEAD},"InvoiceAmount":1000.30000000000000004,"invoiceLines":[
                {{"LineNumber":1,"LineAmount":1000.10000000000000004,"LineType":"Item","Description":"Laptops","DistributionCombination":"01-000-7699-0000-000",
                  "invoiceDistributions":[
                    {{"DistributionLineNumber":1,"DistributionAmount":600.10000000000000004,"DistributionLineType":"Item","DistributionCombination":"01-520-7640-0000-000"}},
                    {{"DistributionLineNumber":2,"DistributionAmount":400.00,"DistributionLineType":"Item","DistributionCombination":"01-610-7640-0000-000","Description":"Docking stations"}}]}},
                {{"LineNumber":2,"LineAmount":0.2,"LineType":"Freight","Description":"Delivery",
                  "invoiceDistributions":[{{"DistributionLineNumber":1,"DistributionAmount":2e-1,"DistributionLineType":"Freight","DistributionCombination":"01-520-5110-0000-000"}}]}}]}}"#
        ));
        let r = record(m);
        let l = &r.fields.lines;
        assert_eq!(l.len(), 3);
        assert_eq!(l[0].number, "1.1");
        assert_eq!(
            l[0].amount.expect("a").amount.to_string(),
            "600.10000000000000004"
        );
        assert_eq!(l[0].amount.expect("a").currency.to_string(), "EUR");
        assert_eq!(l[0].gl_account.as_deref(), Some("01-520-7640-0000-000"));
        assert_eq!(l[0].description.as_deref(), Some("Laptops"));
        assert_eq!(l[0].cost_center, None, "no segment configured");
        assert_eq!(l[1].number, "1.2");
        assert_eq!(l[1].description.as_deref(), Some("Docking stations"));
        assert_eq!(l[2].number, "2.1");
        assert_eq!(l[2].amount.expect("a").amount, Decimal::new(2, 1));
        assert_eq!(l[2].description.as_deref(), Some("Freight: Delivery"));
        assert_eq!(
            describe(Some("Freight".into()), Some("FREIGHT".into())).as_deref(),
            Some("FREIGHT")
        );
        let sum: Decimal = l.iter().filter_map(|x| x.amount).map(|m| m.amount).sum();
        assert_eq!(sum, r.fields.amount.expect("a").amount);
        assert!(!r.fields.extra.contains_key(GL_DETAIL_TRUNCATED));
    }

    #[test]
    fn cost_center_segment_and_credit_memos() {
        let spec = OracleResource::Invoices
            .spec()
            .with_cost_center_segment('-', 1);
        let json = format!(
            r#"{{{HEAD},"InvoiceAmount":-310.40,"invoiceLines":[{{"LineNumber":1,"LineAmount":-310.40,
                "invoiceDistributions":[{{"DistributionLineNumber":1,"DistributionAmount":-300.4,"DistributionCombination":"01-520-7640-0000-000"}},
                                        {{"DistributionLineNumber":2,"DistributionAmount":-10.00,"DistributionCombination":"01"}}]}}]}}"#
        );
        let raw = RawValue::from_string(json).expect("raw");
        let r = record(map_item(&spec, "s", &TimeZone::UTC, None, &raw));
        let l = &r.fields.lines;
        assert_eq!(l[0].cost_center.as_deref(), Some("520"));
        assert_eq!(l[0].amount.expect("a").amount, Decimal::new(-3004, 1));
        assert_eq!(l[1].cost_center, None, "segment missing");
        assert_eq!(l[1].amount.expect("a").amount.to_string(), "-10.00");
        assert!(
            l.iter()
                .all(|x| x.amount.expect("a").amount.is_sign_negative())
        );
    }

    #[test]
    fn a_line_without_distributions_is_one_line() {
        let r = record(map(&format!(
            r#"{{{HEAD},"InvoiceAmount":12.5,"ValidationStatus":"Not Validated","invoiceLines":[
                {{"LineNumber":3,"LineAmount":12.50,"Description":"Paper","DistributionCombination":"01-000-7699-0000-000","invoiceDistributions":[]}},
                {{"LineNumber":4,"LineAmount":null}}]}}"#
        )));
        let l = &r.fields.lines;
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].number, "3");
        assert_eq!(l[0].amount.expect("a").amount.to_string(), "12.50");
        assert_eq!(l[0].gl_account.as_deref(), Some("01-000-7699-0000-000"));
        assert_eq!(l[0].description.as_deref(), Some("Paper"));
        assert_eq!(l[1].number, "4");
        assert_eq!(l[1].amount, None);
        // Children absent entirely: no lines, no error.
        let r = record(map(&format!(r#"{{{HEAD},"InvoiceAmount":1}}"#)));
        assert!(r.fields.lines.is_empty());
        let r = record(map(&format!(
            r#"{{{HEAD},"InvoiceAmount":1,"invoiceLines":null}}"#
        )));
        assert!(r.fields.lines.is_empty());
        // A resource that reads no lines ignores them.
        let spec = OracleResource::Invoices.spec().with_lines(None);
        let raw = RawValue::from_string(format!(
            r#"{{{HEAD},"InvoiceAmount":1,"invoiceLines":[{{"LineNumber":1,"LineAmount":"x"}}]}}"#
        ))
        .expect("raw");
        let r = record(map_item(&spec, "s", &TimeZone::UTC, None, &raw));
        assert!(r.fields.lines.is_empty());
    }

    #[test]
    fn collection_objects_with_has_more_flag_truncation() {
        // REST framework version 3 and later: children are collection objects.
        let r = record(map(&format!(
            r#"{{{HEAD},"InvoiceAmount":3,"invoiceLines":{{"items":[
                {{"LineNumber":1,"LineAmount":3,"invoiceDistributions":{{"items":[
                    {{"DistributionLineNumber":1,"DistributionAmount":1.5,"DistributionCombination":"A"}}],
                  "count":1,"hasMore":true,"limit":1,"offset":0}}}}],
              "count":1,"hasMore":false,"limit":25,"offset":0}}}}"#
        )));
        assert_eq!(r.fields.lines.len(), 1);
        assert_eq!(r.fields.lines[0].number, "1.1");
        assert_eq!(
            r.fields.extra.get(GL_DETAIL_TRUNCATED).map(String::as_str),
            Some("true")
        );
        let r = record(map(&format!(
            r#"{{{HEAD},"InvoiceAmount":3,"invoiceLines":{{"items":[{{"LineNumber":1,"LineAmount":3}}],"count":1,"hasMore":true}}}}"#
        )));
        assert_eq!(r.fields.lines.len(), 1);
        assert!(r.fields.extra.contains_key(GL_DETAIL_TRUNCATED));
        let r = record(map(&format!(
            r#"{{{HEAD},"InvoiceAmount":3,"invoiceLines":{{"items":[],"count":0,"hasMore":false}}}}"#
        )));
        assert!(r.fields.lines.is_empty());
        assert!(!r.fields.extra.contains_key(GL_DETAIL_TRUNCATED));
    }

    #[test]
    fn a_malformed_child_amount_rejects_the_item() {
        let r = rejected(map(&format!(
            r#"{{{HEAD},"InvoiceAmount":3,"invoiceLines":[{{"LineNumber":1,"LineAmount":3,
                "invoiceDistributions":[{{"DistributionLineNumber":2,"DistributionAmount":"3,00"}}]}}]}}"#
        )));
        assert_eq!(r.key.as_deref(), Some("42"));
        assert!(
            r.reason.contains("invoiceLines line 1 distribution 2"),
            "{}",
            r.reason
        );
        assert!(
            r.reason
                .contains("DistributionAmount `\"3,00\"` is not a decimal number"),
            "{}",
            r.reason
        );
        assert!(r.modified_at.is_some());
        let r = rejected(map(&format!(
            r#"{{{HEAD},"InvoiceAmount":3,"invoiceLines":[{{"LineNumber":7,"LineAmount":true}}]}}"#
        )));
        assert!(
            r.reason.contains("line 7: LineAmount `true`"),
            "{}",
            r.reason
        );
        let r = rejected(map(&format!(
            r#"{{{HEAD},"InvoiceAmount":3,"invoiceLines":"nope"}}"#
        )));
        assert!(r.reason.contains("invoiceLines"), "{}", r.reason);
    }

    #[test]
    fn escaped_attribute_names_still_match() {
        // `\u0049` is `I`: such a key cannot be borrowed from the text, and still matches.
        let r = record(map(
            r#"{"\u0049nvoiceId":5,"InvoiceAmount":2,"InvoiceCurrency":"USD","LastUpdateDate":"2026-03-20T16:53:51Z","invoiceLines":[{"Line\u004eumber":1,"LineAmount":2}]}"#,
        ));
        assert_eq!(r.key, "5");
        assert_eq!(r.fields.lines[0].number, "1");
    }

    #[test]
    fn fields_param_has_child_groups() {
        let spec = OracleResource::Invoices.spec();
        let f = spec.fields_param();
        let groups: Vec<&str> = f.split(';').collect();
        assert_eq!(groups.len(), 3, "{f}");
        assert_eq!(groups[0], spec.fields().join(","));
        assert_eq!(
            groups[1],
            "invoiceLines:LineNumber,LineAmount,LineType,Description,DistributionCombination"
        );
        assert_eq!(
            groups[2],
            "invoiceLines.invoiceDistributions:DistributionLineNumber,DistributionAmount,DistributionLineType,DistributionCombination,Description"
        );
        let po = OracleResource::PurchaseOrders.spec();
        assert!(po.lines.is_none());
        assert_eq!(po.fields_param(), po.fields().join(","));
    }

    #[test]
    fn offsetless_timestamps_use_the_configured_zone() {
        let tz = TimeZone::fixed(jiff::tz::offset(-7));
        let t = parse_timestamp("2026-03-20T10:00:00.5", &tz).expect("t");
        assert_eq!(t.to_string(), "2026-03-20T17:00:00.5Z");
        assert_eq!(snake("ApprovalStatus"), "approval_status");
    }
}
