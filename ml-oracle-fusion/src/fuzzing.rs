//! Entry point for fuzzing the item mapping (feature `fuzzing`). Not a stable API: it lets
//! the `fuzz/` crate and the property tests feed any response body through the mapping the
//! source applies to every item it reads.

use jiff::tz::TimeZone;
use ml_core::money::Currency;
use ml_core::record::SourceItem;
use serde_json::value::RawValue;

use crate::model::map_item;
use crate::resource::{OracleResource, ResourceSpec};

#[derive(serde::Deserialize)]
struct Page<'a> {
    #[serde(borrow)]
    items: Vec<&'a RawValue>,
}

/// Maps every item of a collection body (`{"items": [...]}`) with `spec`. `Err` when the
/// body is not such an envelope; otherwise one item per entry, each a record that passes
/// [`ml_core::Record::validate`] or a rejected item, and never a panic.
pub fn map_page(spec: &ResourceSpec, body: &str, tz: &TimeZone) -> Result<Vec<SourceItem>, String> {
    let page: Page<'_> = serde_json::from_str(body).map_err(|e| e.to_string())?;
    let eur = Currency::new("EUR").ok();
    let mut out = Vec::with_capacity(page.items.len());
    for raw in page.items {
        let mapped = map_item(spec, "Fuzz(erp)", tz, eur, raw);
        if let SourceItem::Record(r) = &mapped.item {
            r.validate()
                .map_err(|e| format!("a mapped record is invalid: {e}"))?;
        }
        out.push(mapped.item);
    }
    Ok(out)
}

/// [`map_page`] for every built-in resource, the first byte of `data` choosing it.
pub fn map_any(data: &[u8]) -> Result<Vec<SourceItem>, String> {
    let Some((&pick, rest)) = data.split_first() else {
        return Err("empty".into());
    };
    let resource = OracleResource::ALL[usize::from(pick) % OracleResource::ALL.len()];
    let body = String::from_utf8_lossy(rest);
    map_page(&resource.spec(), &body, &TimeZone::UTC)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("null".to_owned()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|f| if f.is_finite() {
                f.to_string()
            } else {
                "1e400".into()
            }),
            "-?(0|[1-9][0-9]{0,29})(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,4})?",
            // Printable ASCII without `"` and `\\`, so the item stays JSON.
            "\"[ !#-\\[\\]-~]{0,30}\"",
            "\"20[0-9]{2}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})?)?\"",
            Just("{}".to_owned()),
            Just("[]".to_owned()),
        ]
    }

    fn item() -> impl Strategy<Value = String> {
        let names = prop::sample::select(vec![
            "InvoiceId",
            "LastUpdateDate",
            "InvoiceNumber",
            "InvoiceAmount",
            "InvoiceCurrency",
            "Supplier",
            "SupplierNumber",
            "ValidationStatus",
            "BusinessUnit",
            "InvoiceDate",
            "POHeaderId",
            "OrderNumber",
            "Total",
            "CurrencyCode",
            "invoiceLines",
        ]);
        prop::collection::vec((names, value()), 0..10).prop_map(|kv| {
            let fields: Vec<String> = kv.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            format!("{{{}}}", fields.join(","))
        })
    }

    proptest! {
        #[test]
        fn any_bytes_map_or_err(data in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = map_any(&data);
        }

        #[test]
        fn any_items_map_to_valid_records_or_rejections(
            pick in any::<u8>(),
            items in prop::collection::vec(item(), 0..4),
        ) {
            let mut data = vec![pick];
            data.extend_from_slice(format!("{{\"items\":[{}]}}", items.join(",")).as_bytes());
            let mapped = map_any(&data);
            prop_assert!(mapped.is_ok(), "{mapped:?}");
            prop_assert_eq!(mapped.map(|m| m.len()).unwrap_or_default(), items.len());
        }
    }
}
