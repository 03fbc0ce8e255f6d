//! One OData v2 entity -> one [`Record`] (or a rejected item), by an [`EntitySpec`].

use std::collections::BTreeMap;

use jiff::Timestamp;
use ml_core::money::{Currency, Money};
use ml_core::record::{BusinessFields, EntityKind, RawJson, Record, Rejected, SourceItem};
use serde_json::value::RawValue;

use super::value::{DateKind, ODataDate, decimal};

/// Which properties of an entity set mean what. Every name is configurable: Gateway
/// services are written per customer, so no two name their properties alike.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntitySpec {
    /// The entity set (`PurchaseOrderSet`).
    pub entity_set: String,
    /// The entity kind of the records.
    pub kind: EntityKind,
    /// The key property (`PurchaseOrder`); one key property only (composite keys: expose
    /// a single concatenated key property in the service).
    pub key: String,
    /// The change stamp property (`ChangedAt`), an `Edm.DateTime` or `Edm.DateTimeOffset`
    /// served as `/Date(ms)/`.
    pub stamp: String,
    /// How the stamp's `/Date(ms±NNNN)/` offset is read and how `$filter` literals are
    /// written.
    pub stamp_kind: DateKind,
    /// The amount property (`Edm.Decimal`, a JSON string), if any.
    pub amount: Option<String>,
    /// The currency property (ISO code), required when `amount` is set.
    pub currency: Option<String>,
    /// The supplier id property.
    pub supplier_id: Option<String>,
    /// The supplier name property.
    pub supplier_name: Option<String>,
    /// The company code property.
    pub company_code: Option<String>,
    /// The status property.
    pub status: Option<String>,
    /// The external reference property (XBLNR, REF_DOC_NO).
    pub reference: Option<String>,
}

impl Default for EntitySpec {
    fn default() -> Self {
        Self {
            entity_set: "PurchaseOrderSet".into(),
            kind: EntityKind::PurchaseOrder,
            key: "PurchaseOrder".into(),
            stamp: "ChangedAt".into(),
            stamp_kind: DateKind::DateTime,
            amount: Some("NetAmount".into()),
            currency: Some("Currency".into()),
            supplier_id: Some("Supplier".into()),
            supplier_name: Some("SupplierName".into()),
            company_code: Some("CompanyCode".into()),
            status: Some("Status".into()),
            reference: Some("Reference".into()),
        }
    }
}

/// One served entity, mapped.
#[derive(Debug)]
pub struct Mapped {
    /// The key (may be empty for a rejected item without one).
    pub key: String,
    /// The version the journal dedupes on.
    pub version: String,
    /// The stamp, when it could be read.
    pub modified_at: Option<Timestamp>,
    /// The record or the rejected item.
    pub item: SourceItem,
}

fn text(map: &BTreeMap<String, Box<RawValue>>, name: &str) -> Option<String> {
    let raw = map.get(name)?;
    match serde_json::from_str::<serde_json::Value>(raw.get()).ok()? {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
    .filter(|s| !s.trim().is_empty())
}

/// Maps one entity of `d.results`. Never fails: what cannot be a record is rejected with
/// the reason, its raw text kept.
pub fn map_entity(spec: &EntitySpec, system: &str, raw: &RawValue) -> Mapped {
    let raw_json = RawJson::from(raw.to_owned());
    let reject = |key: Option<String>, modified_at: Option<Timestamp>, reason: String| Mapped {
        key: key.clone().unwrap_or_default(),
        version: String::new(),
        modified_at,
        item: SourceItem::Rejected(Rejected {
            key,
            reason,
            raw: raw_json.clone(),
            modified_at,
        }),
    };
    let Ok(map) = serde_json::from_str::<BTreeMap<String, Box<RawValue>>>(raw.get()) else {
        return reject(None, None, "the entity is not a JSON object".into());
    };
    let Some(key) = text(&map, &spec.key) else {
        return reject(None, None, format!("no key property `{}`", spec.key));
    };
    let stamp = map
        .get(&spec.stamp)
        .and_then(|r| serde_json::from_str::<String>(r.get()).ok())
        .and_then(|s| ODataDate::parse(&s))
        .and_then(|d| d.instant(spec.stamp_kind));
    let Some(modified_at) = stamp else {
        return reject(
            Some(key),
            None,
            format!("`{}` is not an OData /Date(ms)/ value", spec.stamp),
        );
    };
    let mut fields = BusinessFields {
        document_number: Some(key.clone()),
        ..BusinessFields::default()
    };
    if let Some(amount_prop) = &spec.amount
        && let Some(raw_amount) = map.get(amount_prop).filter(|r| r.get() != "null")
    {
        let Some(amount) = decimal(raw_amount) else {
            return reject(
                Some(key),
                Some(modified_at),
                format!("`{amount_prop}` is not an Edm.Decimal"),
            );
        };
        let code = spec.currency.as_deref().and_then(|c| text(&map, c));
        let Some(currency) = code.as_deref().and_then(|c| Currency::new(c.trim()).ok()) else {
            return reject(
                Some(key),
                Some(modified_at),
                format!(
                    "`{amount_prop}` has no valid currency in `{}`",
                    spec.currency.as_deref().unwrap_or("-")
                ),
            );
        };
        fields.amount = Some(Money::new(amount, currency));
    }
    let opt = |p: &Option<String>| p.as_deref().and_then(|n| text(&map, n));
    fields.supplier_id = opt(&spec.supplier_id);
    fields.supplier = opt(&spec.supplier_name);
    fields.company_code = opt(&spec.company_code);
    fields.status = opt(&spec.status);
    fields.reference = opt(&spec.reference);
    let metadata = map
        .get("__metadata")
        .and_then(|m| serde_json::from_str::<serde_json::Value>(m.get()).ok());
    let etag = metadata
        .as_ref()
        .and_then(|m| m["etag"].as_str())
        .map(str::to_owned);
    let link = metadata
        .as_ref()
        .and_then(|m| m["uri"].as_str())
        .map(str::to_owned);
    let mut record = Record::new(system, spec.kind.clone(), key.clone(), modified_at)
        .with_fields(fields)
        .with_raw(raw_json.clone());
    if let Some(e) = &etag {
        record = record.with_version(e.clone());
    }
    if let Some(l) = link {
        record = record.with_link(l);
    }
    let version = record.dedupe_version();
    Mapped {
        key,
        version,
        modified_at: Some(modified_at),
        item: SourceItem::Record(Box::new(record)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).expect("raw")
    }

    #[test]
    fn maps_amounts_exactly_and_rejects_bad_items() {
        let spec = EntitySpec::default();
        let m = map_entity(
            &spec,
            "S",
            &raw(
                r#"{"__metadata":{"uri":"u","type":"T","etag":"W/\"1\""},"PurchaseOrder":"4500000001","ChangedAt":"/Date(1700000000000)/","NetAmount":"98765432109876.54","Currency":"EUR","SupplierName":"Müller GmbH"}"#,
            ),
        );
        let SourceItem::Record(r) = m.item else {
            panic!("record expected");
        };
        assert_eq!(
            r.fields.amount.expect("amount").amount.to_string(),
            "98765432109876.54"
        );
        assert_eq!(r.version.as_deref(), Some("W/\"1\""));
        assert_eq!(r.fields.supplier.as_deref(), Some("Müller GmbH"));
        assert_eq!(r.link.as_deref(), Some("u"));
        for (bad, why) in [
            (r#"{"ChangedAt":"/Date(1)/"}"#, "no key"),
            (r#"{"PurchaseOrder":"1","ChangedAt":"yesterday"}"#, "Date"),
            (
                r#"{"PurchaseOrder":"1","ChangedAt":"/Date(1)/","NetAmount":"1,5","Currency":"EUR"}"#,
                "Decimal",
            ),
            (
                r#"{"PurchaseOrder":"1","ChangedAt":"/Date(1)/","NetAmount":"1.5"}"#,
                "currency",
            ),
            ("[1]", "object"),
        ] {
            let m = map_entity(&spec, "S", &raw(bad));
            match m.item {
                SourceItem::Rejected(x) => assert!(x.reason.contains(why), "{bad}: {}", x.reason),
                SourceItem::Record(_) => panic!("{bad} should be rejected"),
            }
        }
    }
}
