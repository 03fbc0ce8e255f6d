//! Mapping one OData entity to a [`Record`] (or a [`Rejected`] item). Amounts are read
//! from their exact JSON text (a string under `IEEE754Compatible=true`, a number
//! otherwise), never through a float.

use std::collections::BTreeMap;
use std::str::FromStr as _;

use jiff::Timestamp;
use ml_core::money::{Currency, Money};
use ml_core::record::{BusinessFields, RawJson, Record, Rejected, SourceItem};
use rust_decimal::Decimal;
use serde_json::value::RawValue;

use crate::resource::ResourceSpec;

/// One mapped entity with what the cursor needs.
#[derive(Debug)]
pub(crate) struct Mapped {
    pub(crate) key: String,
    pub(crate) version: String,
    pub(crate) modified_at: Option<Timestamp>,
    pub(crate) item: SourceItem,
}

type RawItem<'a> = BTreeMap<String, &'a RawValue>;

/// The text of a scalar attribute (string as is, number/bool as written); `None` for
/// null, absent, objects and arrays.
fn text(item: &RawItem<'_>, attr: &str) -> Option<String> {
    let raw = item.get(attr)?.get().trim();
    match raw.as_bytes().first()? {
        b'"' => serde_json::from_str::<String>(raw).ok(),
        b'{' | b'[' | b'n' => None,
        _ => Some(raw.to_owned()),
    }
}

/// Parses an Edm.Decimal from its JSON text (`"1234.50"` or `1234.50`, exponent forms
/// included), exactly.
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

/// Parses an Edm.DateTimeOffset (`2026-03-01T09:00:00Z`, `...+01:00`). A value without
/// an offset is read as UTC: the client always sends `X-Ifs-Time-Zone-Aware-Request: true`,
/// so the server means UTC.
pub fn parse_timestamp(s: &str) -> Option<Timestamp> {
    let s = s.trim();
    if let Ok(t) = s.parse::<Timestamp>() {
        return Some(t);
    }
    s.parse::<jiff::civil::DateTime>()
        .ok()
        .and_then(|dt| dt.to_zoned(jiff::tz::TimeZone::UTC).ok())
        .map(|z| z.timestamp())
}

/// Maps one entity.
pub(crate) fn map_item(spec: &ResourceSpec, system: &str, raw: &RawValue) -> Mapped {
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
        Err(e) => return reject(None, None, format!("entity is not a JSON object: {e}")),
    };
    let values: Option<Vec<String>> = spec
        .keys
        .iter()
        .map(|k| text(&item, &k.name).filter(|v| !v.trim().is_empty()))
        .collect();
    let stamp_text = text(&item, &spec.stamp);
    let modified_at = stamp_text.as_deref().and_then(parse_timestamp);
    let Some(key) = values.and_then(|v| spec.record_key(&v)) else {
        let names: Vec<&str> = spec.keys.iter().map(|k| k.name.as_str()).collect();
        return reject(
            None,
            modified_at,
            format!("missing or invalid key ({})", names.join(", ")),
        );
    };
    let Some(modified) = modified_at else {
        return reject(
            Some(key),
            None,
            match stamp_text {
                Some(t) => format!("{} `{t}` is not a DateTimeOffset", spec.stamp),
                None => format!("missing {}", spec.stamp),
            },
        );
    };
    let get = |a: &Option<String>| a.as_deref().and_then(|a| text(&item, a));
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
    // The entity has no currency attribute at all on this release (read whole, after the
    // service refused a `$select` naming it): the amount cannot be money, and the record
    // still goes out, its amount kept as text.
    let currency_absent = spec
        .currency
        .as_deref()
        .is_some_and(|c| !item.contains_key(c));
    let mut unpriced = None;
    let money = match amount {
        None => None,
        Some(a) if currency_absent => {
            unpriced = Some(a.to_string());
            None
        }
        Some(a) => match get(&spec.currency) {
            Some(c) => match Currency::new(&c) {
                Ok(c) => Some(Money::new(a, c)),
                Err(e) => return reject(Some(key), Some(modified), e.to_string()),
            },
            None => {
                return reject(
                    Some(key),
                    Some(modified),
                    format!(
                        "amount without currency ({})",
                        spec.currency.as_deref().unwrap_or("no currency attribute")
                    ),
                );
            }
        },
    };
    let etag = item
        .get("@odata.etag")
        .and_then(|r| serde_json::from_str::<String>(r.get()).ok());
    let mut extra = BTreeMap::new();
    if let Some(a) = unpriced {
        extra.insert("amount_without_currency".to_owned(), a);
    }
    for a in spec.date.iter().chain(&spec.extra) {
        if let Some(v) = text(&item, a) {
            extra.insert(a.clone(), v);
        }
    }
    // The ETag stays in the raw payload (`@odata.etag`) for the audit: as a field it would
    // be shown to finance users in every message.
    let fields = BusinessFields {
        document_number: get(&spec.document),
        supplier_id: get(&spec.supplier_id),
        supplier: get(&spec.supplier_name),
        amount: money,
        company_code: get(&spec.company),
        status: get(&spec.status),
        extra,
        ..BusinessFields::default()
    };
    // The ETag changes on every update: it is the version. Without one, the stamp is.
    let version = etag.unwrap_or_else(|| modified.to_string());
    let record = Record::new(system, spec.kind.clone(), key.clone(), modified)
        .with_version(version.clone())
        .with_fields(fields)
        .with_raw(value());
    Mapped {
        key,
        version,
        modified_at: Some(modified),
        item: SourceItem::Record(Box::new(record)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::IfsResource;

    fn map(json: &str) -> Mapped {
        let raw = RawValue::from_string(json.to_owned()).expect("raw");
        map_item(&IfsResource::SupplierInvoices.spec(), "Ifs(t)", &raw)
    }

    #[test]
    fn invoice_maps_with_exact_money_and_etag() {
        let m = map(
            r#"{"@odata.etag":"W/\"x1\"","Company":"10","InvoiceId":"1234","InvoiceNo":"INV-1","Identity":"S1","IdentityName":"Müller","GrossAmount":"1234567890.123456789","Currency":"SEK","Objstate":"AwaitingApproval","ModifiedDateTime":"2026-03-01T09:00:00Z","InvoiceDate":"2026-02-28"}"#,
        );
        let SourceItem::Record(r) = m.item else {
            panic!("rejected: {:?}", m.item)
        };
        assert_eq!(r.key, "Company='10',InvoiceId=1234");
        assert_eq!(r.version.as_deref(), Some("W/\"x1\""));
        let amount = r.fields.amount.expect("amount");
        assert_eq!(amount.amount.to_string(), "1234567890.123456789");
        assert_eq!(amount.currency.as_str(), "SEK");
        assert_eq!(r.fields.company_code.as_deref(), Some("10"));
        assert_eq!(r.fields.extra["InvoiceDate"], "2026-02-28");
    }

    #[test]
    fn bad_items_are_rejected_not_panics() {
        for (json, why) in [
            ("[1]", "not a JSON object"),
            (
                r#"{"Company":"10","ModifiedDateTime":"2026-03-01T09:00:00Z"}"#,
                "missing or invalid key",
            ),
            (
                r#"{"Company":"10","InvoiceId":5,"ModifiedDateTime":"yesterday"}"#,
                "not a DateTimeOffset",
            ),
            (
                r#"{"Company":"10","InvoiceId":5,"ModifiedDateTime":"2026-03-01T09:00:00Z","GrossAmount":"1,5","Currency":"SEK"}"#,
                "not a decimal",
            ),
            (
                r#"{"Company":"10","InvoiceId":5,"ModifiedDateTime":"2026-03-01T09:00:00Z","GrossAmount":"1.5","Currency":null}"#,
                "without currency",
            ),
        ] {
            match map(json).item {
                SourceItem::Rejected(r) => assert!(r.reason.contains(why), "{} / {why}", r.reason),
                SourceItem::Record(r) => panic!("accepted {r:?}"),
            }
        }
    }

    /// An entity without the currency attribute at all (a release without it, read
    /// whole): the record goes out without money, its amount kept as text.
    #[test]
    fn an_entity_without_a_currency_attribute_goes_out_unpriced() {
        let json = r#"{"Company":"10","InvoiceId":5,"ModifiedDateTime":"2026-03-01T09:00:00Z","GrossAmount":"1.5"}"#;
        match map(json).item {
            SourceItem::Record(r) => {
                assert!(r.fields.amount.is_none());
                assert_eq!(r.fields.extra["amount_without_currency"], "1.5");
            }
            SourceItem::Rejected(r) => panic!("rejected: {}", r.reason),
        }
    }
}
