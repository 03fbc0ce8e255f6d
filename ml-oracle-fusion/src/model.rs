//! Mapping one REST item to a [`Record`] (or a [`Rejected`] item), reading amounts from the
//! item's exact JSON text (never through a float).

use std::collections::BTreeMap;
use std::str::FromStr as _;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use ml_core::money::{Currency, Money};
use ml_core::record::{BusinessFields, Record, Rejected, SourceItem};
use rust_decimal::Decimal;
use serde_json::value::RawValue;

use crate::resource::ResourceSpec;

/// An item's attributes with their exact JSON text.
pub(crate) type RawItem = BTreeMap<String, Box<RawValue>>;

/// One mapped item with what the cursor needs to know about it.
#[derive(Debug)]
pub(crate) struct Mapped {
    pub(crate) key: String,
    pub(crate) version: String,
    pub(crate) modified_at: Option<Timestamp>,
    pub(crate) item: SourceItem,
}

fn text(item: &RawItem, attr: &str) -> Option<String> {
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
    let value = || serde_json::from_str::<serde_json::Value>(raw.get()).unwrap_or_default();
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
    let item: RawItem = match serde_json::from_str(raw.get()) {
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
    let mut fields = BusinessFields {
        document_number: get(&spec.document_number),
        supplier_id: get(&spec.supplier_id),
        supplier: get(&spec.supplier),
        amount: money,
        company_code: get(&spec.company),
        status: get(&spec.status),
        ..BusinessFields::default()
    };
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

    #[test]
    fn offsetless_timestamps_use_the_configured_zone() {
        let tz = TimeZone::fixed(jiff::tz::offset(-7));
        let t = parse_timestamp("2026-03-20T10:00:00.5", &tz).expect("t");
        assert_eq!(t.to_string(), "2026-03-20T17:00:00.5Z");
        assert_eq!(snake("ApprovalStatus"), "approval_status");
    }
}
