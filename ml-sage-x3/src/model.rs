//! One api1 resource or GraphQL node -> a [`Record`] (or a rejected item), with money as
//! `Decimal` + currency parsed from the exact JSON text.

use std::collections::BTreeMap;
use std::str::FromStr as _;

use jiff::tz::TimeZone;
use ml_core::cursor::PageRow;
use ml_core::money::{Currency, Money};
use ml_core::record::{BusinessFields, Line, RawJson, Record, Rejected, SourceItem};
use rust_decimal::Decimal;
use serde_json::value::RawValue;

use crate::class::{FieldMap, LineMap};
use crate::sdata::parse_datetime;

type Object = BTreeMap<String, Box<RawValue>>;

/// What the mapping needs besides the item.
#[derive(Clone, Debug)]
pub struct Mapping<'a> {
    /// `SageX3(host, folder, class)`.
    pub system: &'a str,
    /// The entity kind.
    pub kind: &'a ml_core::record::EntityKind,
    /// The key properties (joined with `~`).
    pub keys: &'a [String],
    /// The update stamp property.
    pub stamp: &'a str,
    /// The other properties.
    pub fields: &'a FieldMap,
    /// The zone of date-times served without an offset.
    pub zone: &'a TimeZone,
    /// The currency of amounts whose item names none.
    pub default_currency: Option<Currency>,
}

/// The raw JSON text at `path` (`a.b.c` walks nested objects).
fn raw_at<'o>(obj: &'o Object, path: &str) -> Option<std::borrow::Cow<'o, str>> {
    let mut parts = path.split('.');
    let first = parts.next()?;
    let mut cur: std::borrow::Cow<'o, str> = std::borrow::Cow::Borrowed(obj.get(first)?.get());
    for p in parts {
        let nested: Object = serde_json::from_str(&cur).ok()?;
        cur = std::borrow::Cow::Owned(nested.get(p)?.get().to_owned());
    }
    Some(cur)
}

/// A scalar as text: a string's content, a number's exact text, `true`/`false`; `None`
/// for null, absent, empty or structured values.
fn text_at(obj: &Object, path: &str) -> Option<String> {
    let raw = raw_at(obj, path)?;
    let raw = raw.trim();
    let s = if raw.starts_with('"') {
        serde_json::from_str::<String>(raw).ok()?
    } else if raw == "null" || raw.starts_with('{') || raw.starts_with('[') {
        return None;
    } else {
        raw.to_owned()
    };
    let s = s.trim().to_owned();
    (!s.is_empty()).then_some(s)
}

fn decimal(s: &str) -> Option<Decimal> {
    Decimal::from_str(s)
        .ok()
        .or_else(|| Decimal::from_scientific(s).ok())
}

/// The key of an item (`TYP~NUM`), when every key property has a value.
pub fn key_of(obj: &Object, keys: &[String]) -> Option<String> {
    let parts: Option<Vec<String>> = keys.iter().map(|k| text_at(obj, k)).collect();
    parts.map(|p| p.join("~"))
}

/// Maps one item's JSON text to a [`PageRow`]: a record, or a rejected item saying why.
pub fn map_item(m: &Mapping<'_>, raw: &RawValue) -> PageRow {
    let rejected = |key: Option<String>, t, why: String| PageRow {
        key: key.clone().unwrap_or_default(),
        version: String::new(),
        modified_at: t,
        item: SourceItem::Rejected(Rejected::new(key, why, RawJson::from(raw.to_owned()))),
    };
    let Ok(obj) = serde_json::from_str::<Object>(raw.get()) else {
        return rejected(None, None, "not a JSON object".into());
    };
    let Some(key) = key_of(&obj, m.keys) else {
        return rejected(
            None,
            None,
            format!("missing key property ({})", m.keys.join(", ")),
        );
    };
    let stamp_text = text_at(&obj, m.stamp);
    let Some(modified_at) = stamp_text
        .as_deref()
        .and_then(|s| parse_datetime(s, m.zone))
    else {
        return rejected(
            Some(key),
            None,
            format!(
                "the update stamp {} is missing or not a date-time ({})",
                m.stamp,
                stamp_text.as_deref().unwrap_or("absent")
            ),
        );
    };
    match fields(m, &obj) {
        Ok(fields) => {
            let record = Record::new(m.system, m.kind.clone(), key.clone(), modified_at)
                .with_version(modified_at.to_string())
                .with_fields(fields)
                .with_raw(RawJson::from(raw.to_owned()));
            PageRow {
                key,
                version: modified_at.to_string(),
                modified_at: Some(modified_at),
                item: SourceItem::Record(Box::new(record)),
            }
        }
        Err(why) => rejected(Some(key), Some(modified_at), why),
    }
}

fn currency_of(m: &Mapping<'_>, obj: &Object) -> Result<Option<Currency>, String> {
    match m.fields.currency.as_deref().and_then(|c| text_at(obj, c)) {
        Some(c) => Currency::new(&c).map(Some).map_err(|e| e.to_string()),
        None => Ok(m.default_currency),
    }
}

fn fields(m: &Mapping<'_>, obj: &Object) -> Result<BusinessFields, String> {
    let f = m.fields;
    let get = |p: &Option<String>| p.as_deref().and_then(|p| text_at(obj, p));
    let currency = currency_of(m, obj)?;
    let status = get(&f.status);
    let mut out = BusinessFields {
        document_number: m.keys.last().and_then(|k| text_at(obj, k)),
        supplier_id: get(&f.supplier_id),
        supplier: get(&f.supplier_name),
        status: status
            .as_deref()
            .map(|c| f.status_labels.label(c).to_owned()),
        company_code: get(&f.company),
        reference: get(&f.reference),
        gl_account: get(&f.account),
        ..BusinessFields::default()
    };
    // The code as served, for routing rules that must not depend on the labels.
    if let Some(code) = status {
        out.extra.insert("status_code".into(), code);
    }
    if m.keys.len() > 1
        && let Some(first) = text_at(obj, &m.keys[0])
    {
        out.extra.insert("entry_type".into(), first);
    }
    if let Some(d) = get(&f.date)
        && let Some(d) = document_date(&d)?
    {
        out.extra.insert("date".into(), d);
    }
    let credit = get(&f.doc_type).is_some_and(|t| f.credit_types.contains(&t));
    if let Some(t) = get(&f.doc_type) {
        out.extra.insert("document_type".into(), t);
    }
    if credit {
        out.extra.insert("credit_note".into(), "true".into());
    }
    if let Some(text) = get(&f.amount) {
        let mut amount =
            decimal(&text).ok_or_else(|| format!("amount `{text}` is not a decimal number"))?;
        let currency = currency.ok_or_else(|| {
            "the amount has no currency (set SAGE_X3_CURRENCY for classes without one)".to_owned()
        })?;
        // X3 keeps credit-note amounts positive; the document type says which way they go.
        if credit && amount.is_sign_positive() {
            amount = -amount;
        }
        out.amount = Some(Money::new(amount, currency));
    }
    if let Some(lm) = &f.lines {
        let (lines, debit, credit_total) = lines(lm, obj, currency)?;
        if let Some(c) = currency {
            // Shown beside the amount: as money, in the document's currency.
            out.extra
                .insert("debit_total".into(), Money::new(debit, c).to_string());
            out.extra.insert(
                "credit_total".into(),
                Money::new(credit_total, c).to_string(),
            );
            if out.amount.is_none() && !lines.is_empty() {
                out.amount = Some(Money::new(debit, c));
            }
        }
        if out.gl_account.is_none() {
            out.gl_account = lines.iter().find_map(|l| l.gl_account.clone());
        }
        out.lines = lines;
    }
    Ok(out)
}

/// The lines of an item: amounts signed (debit positive, credit negative), and the debit
/// and credit totals.
fn lines(
    lm: &LineMap,
    obj: &Object,
    currency: Option<Currency>,
) -> Result<(Vec<Line>, Decimal, Decimal), String> {
    let Some(raw) = raw_at(obj, &lm.array) else {
        return Ok((Vec::new(), Decimal::ZERO, Decimal::ZERO));
    };
    // GraphQL wraps collections in `edges { node }` or `query { edges … }`; api1 serves an
    // array.
    let items: Vec<Box<RawValue>> = if let Ok(v) = serde_json::from_str::<Vec<Box<RawValue>>>(&raw)
    {
        v
    } else {
        {
            let bad = || format!("{} is not a list of lines", lm.array);
            let mut wrapped: Object = serde_json::from_str(&raw).map_err(|_| bad())?;
            if let Some(q) = wrapped.remove("query") {
                wrapped = serde_json::from_str(q.get()).map_err(|_| bad())?;
            }
            let edges = wrapped.get("edges").ok_or_else(bad)?;
            let edges: Vec<Object> = serde_json::from_str(edges.get()).map_err(|_| bad())?;
            edges
                .into_iter()
                .filter_map(|mut e| e.remove("node"))
                .collect()
        }
    };
    let (mut debit, mut credit) = (Decimal::ZERO, Decimal::ZERO);
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let line: Object = serde_json::from_str(item.get())
            .map_err(|_| format!("line {} is not an object", i + 1))?;
        let get = |p: &Option<String>| p.as_deref().and_then(|p| text_at(&line, p));
        let number = get(&lm.number).unwrap_or_else(|| (i + 1).to_string());
        let sense = get(&lm.sense);
        let is_credit = match sense.as_deref() {
            None | Some("1" | "D" | "d" | "debit" | "Debit") => false,
            Some("-1" | "C" | "c" | "credit" | "Credit" | "2") => true,
            Some(other) => {
                return Err(format!(
                    "line {number}: sense `{other}` is neither debit nor credit"
                ));
            }
        };
        let amount = match get(&lm.amount) {
            Some(text) => {
                let a = decimal(&text)
                    .ok_or_else(|| {
                        format!("line {number}: amount `{text}` is not a decimal number")
                    })?
                    .abs();
                if is_credit {
                    credit += a;
                } else {
                    debit += a;
                }
                let c =
                    currency.ok_or_else(|| format!("line {number}: the amount has no currency"))?;
                Some(Money::new(if is_credit { -a } else { a }, c))
            }
            None => None,
        };
        let side = if is_credit { "Credit" } else { "Debit" };
        let description = match get(&lm.description) {
            Some(d) => format!("{side}: {d}"),
            None => side.to_owned(),
        };
        out.push(Line {
            number,
            description: Some(description),
            amount,
            gl_account: get(&lm.account),
            ..Line::default()
        });
    }
    Ok((out, debit, credit))
}

/// The document date as served (`2026-12-04`, or a date-time whose date part is valid):
/// `None` for X3's blank dates (`0000-00-00`, `1753-01-01`, the SQL minimum it stores for
/// "no date"); an error (the item is rejected) for anything else (`2026-13-45`).
fn document_date(text: &str) -> Result<Option<String>, String> {
    let t = text.trim();
    let day = t.get(..10).unwrap_or(t);
    if t.is_empty() || day == "0000-00-00" || day == "1753-01-01" {
        return Ok(None);
    }
    let rest_ok = t.len() == 10 || matches!(t.as_bytes().get(10), Some(b'T' | b' '));
    match day.parse::<jiff::civil::Date>() {
        Ok(_) if rest_ok && day.len() == 10 => Ok(Some(t.to_owned())),
        _ => Err(format!("date `{t}` is not a date (YYYY-MM-DD)")),
    }
}

#[cfg(test)]
mod tests;
