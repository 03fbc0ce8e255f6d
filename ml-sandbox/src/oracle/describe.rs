//! `GET .../<resource>/describe`: the resource's metadata, as Fusion serves it under
//! `Resources.<resource>.attributes[]` (name, type, `mandatory`, `queryable`,
//! `updatable`). The attributes are the resource's catalogue (the attributes of the
//! built-in resources the connector and the docs know) plus every attribute of a stored
//! item, minus those the pod lacks ([`super::OracleEmulator::lack_attributes`]). Child
//! collections are not described (real pods list them under `children`; the connector
//! does not read that part).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::{Shared, adf_error, refusal};

/// The attributes each built-in resource has on a current pod (beyond what stored items
/// show), with their describe types.
fn catalogue(resource: &str) -> &'static [(&'static str, &'static str)] {
    const WHO: [(&str, &str); 2] = [("CreationDate", "datetime"), ("LastUpdateDate", "datetime")];
    match resource {
        "invoices" => &[
            ("InvoiceId", "integer"),
            ("InvoiceNumber", "string"),
            ("InvoiceAmount", "number"),
            ("InvoiceCurrency", "string"),
            ("PaymentCurrency", "string"),
            ("InvoiceDate", "date"),
            ("AccountingDate", "date"),
            ("BusinessUnit", "string"),
            ("Supplier", "string"),
            ("SupplierNumber", "string"),
            ("SupplierSite", "string"),
            ("InvoiceGroup", "string"),
            ("InvoiceType", "string"),
            ("InvoiceSource", "string"),
            ("PaymentTerms", "string"),
            ("Description", "string"),
            ("ValidationStatus", "string"),
            ("ApprovalStatus", "string"),
            WHO[0],
            WHO[1],
        ],
        "purchaseOrders" => &[
            ("POHeaderId", "integer"),
            ("OrderNumber", "string"),
            ("Description", "string"),
            ("Supplier", "string"),
            ("SupplierId", "integer"),
            ("SupplierSite", "string"),
            ("Currency", "string"),
            ("Ordered", "number"),
            ("Status", "string"),
            ("ProcurementBU", "string"),
            ("Buyer", "string"),
            WHO[0],
            WHO[1],
        ],
        "payablesPayments" => &[
            ("CheckId", "integer"),
            ("PaymentNumber", "string"),
            ("PaymentAmount", "number"),
            ("PaymentCurrency", "string"),
            ("Payee", "string"),
            ("BusinessUnit", "string"),
            ("PaymentDate", "date"),
            ("PaymentStatus", "string"),
            WHO[0],
            WHO[1],
        ],
        "journalBatches" => &[
            ("JeBatchId", "integer"),
            ("BatchName", "string"),
            ("Description", "string"),
            ("Status", "string"),
            ("ApprovalStatus", "string"),
            ("RunningTotalAccountedDr", "number"),
            ("CurrencyCode", "string"),
            ("LedgerName", "string"),
            ("AccountingPeriodName", "string"),
            WHO[0],
            WHO[1],
        ],
        "suppliers" => &[
            ("SupplierId", "integer"),
            ("Supplier", "string"),
            ("SupplierNumber", "string"),
            ("Status", "string"),
            ("TaxpayerCountry", "string"),
            WHO[0],
            WHO[1],
        ],
        "receivablesInvoices" => &[
            ("CustomerTransactionId", "integer"),
            ("TransactionNumber", "string"),
            ("EnteredAmount", "number"),
            ("InvoiceCurrencyCode", "string"),
            ("TransactionStatus", "string"),
            ("BusinessUnit", "string"),
            ("TransactionDate", "date"),
            ("BillToCustomerName", "string"),
            WHO[0],
            WHO[1],
        ],
        _ => &WHO,
    }
}

/// The describe type of a stored value.
fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::Bool(_) => "boolean",
        _ => "string",
    }
}

pub(super) async fn describe(
    State(shared): State<Arc<Shared>>,
    Path((version, resource)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = refusal(&shared, &version, &headers) {
        return refused;
    }
    let attrs = {
        let inner = shared.lock();
        let Some(coll) = inner.resources.get(&resource) else {
            return adf_error(StatusCode::NOT_FOUND, "unknown resource");
        };
        let mut attrs: BTreeMap<String, &'static str> = catalogue(&resource)
            .iter()
            .map(|(n, t)| ((*n).to_owned(), *t))
            .collect();
        attrs.entry(coll.key_attr.clone()).or_insert("integer");
        for row in coll.rows.values() {
            let Ok(map) = serde_json::from_str::<BTreeMap<String, Value>>(row.raw.get()) else {
                continue;
            };
            for (k, v) in map {
                // Child collections are described under `children`, not as attributes.
                if v.is_array() {
                    continue;
                }
                attrs.entry(k).or_insert_with(|| type_of(&v));
            }
        }
        attrs
            .into_iter()
            .filter(|(n, _)| !coll.lacking.contains(n))
            .map(|(name, ty)| {
                let key = name == coll.key_attr;
                serde_json::json!({
                    "name": name,
                    "type": ty,
                    "updatable": !key && !name.ends_with("Date"),
                    "mandatory": key,
                    "queryable": true,
                    "allowChanges": if key { "never" } else { "always" },
                })
            })
            .collect::<Vec<_>>()
    };
    let body = serde_json::json!({
        "Resources": {
            resource.clone(): {
                "discrColumnType": false,
                "title": resource,
                "attributes": attrs,
            }
        }
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}
