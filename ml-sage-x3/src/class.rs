//! What each X3 class is called and which of its properties mean what: built in for
//! purchase orders, supplier invoices, GL entries and suppliers, every name configurable
//! (representations and GraphQL schemas differ by release and by site).

use ml_core::record::EntityKind;

use crate::error::SageX3Error;
use crate::labels::{self, StatusLabels};

/// A built-in class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum X3Class {
    /// Purchase orders (`PORDER`, key `POHNUM`).
    PurchaseOrders,
    /// Supplier invoices (`PINVOICE`, key `NUM`), credit notes included.
    SupplierInvoices,
    /// GL journal entries (`GACCENTRY`, key `TYP~NUM`), with their lines.
    GlEntries,
    /// Suppliers (`BPSUPPLIER`, key `BPSNUM`).
    Suppliers,
}

impl X3Class {
    /// Every built-in class.
    pub const ALL: [Self; 4] = [
        Self::PurchaseOrders,
        Self::SupplierInvoices,
        Self::GlEntries,
        Self::Suppliers,
    ];

    /// The class by its api1 name (`PORDER`) or a friendly one (`purchase_orders`,
    /// `purchase-orders`, `invoices`, `gl`, `suppliers`), case-insensitive.
    pub fn from_name(name: &str) -> Option<Self> {
        let n = name.trim().to_ascii_lowercase().replace('-', "_");
        Some(match n.as_str() {
            "porder" | "purchase_orders" | "purchaseorders" | "purchase_order" | "pos" => {
                Self::PurchaseOrders
            }
            "pinvoice" | "supplier_invoices" | "invoices" | "supplier_invoice" => {
                Self::SupplierInvoices
            }
            "gaccentry" | "gl_entries" | "gl" | "journal_entries" | "gl_entry" => Self::GlEntries,
            "bpsupplier" | "suppliers" | "supplier" => Self::Suppliers,
            _ => return None,
        })
    }

    /// The built-in description.
    pub fn spec(self) -> ClassSpec {
        let s = |v: &str| Some(v.to_owned());
        match self {
            Self::PurchaseOrders => ClassSpec {
                kind: EntityKind::PurchaseOrder,
                class: "PORDER".into(),
                representation: "PORDER".into(),
                keys: vec!["POHNUM".into()],
                stamp: "UPDDATTIM".into(),
                fields: FieldMap {
                    supplier_id: s("BPSNUM"),
                    supplier_name: s("BPSNAM"),
                    amount: s("TOTLINAMT"),
                    currency: s("CUR"),
                    status: s("APPFLG"),
                    status_labels: labels::purchase_order_approval(),
                    company: s("POHFCY"),
                    date: s("ORDDAT"),
                    ..FieldMap::default()
                },
                graphql: GraphqlSpec {
                    root: vec!["x3Purchasing".into(), "purchaseOrder".into()],
                    keys: vec!["id".into()],
                    stamp: "_updateStamp".into(),
                    fields: FieldMap {
                        supplier_id: s("orderFromSupplier.code"),
                        supplier_name: s("orderFromSupplier.companyName"),
                        amount: s("totalAmountExcludingTax"),
                        currency: s("currency.code"),
                        status: s("signatureStatus"),
                        // Words where a release serves them (no label: shown as served).
                        status_labels: labels::purchase_order_approval(),
                        company: s("purchaseSite.code"),
                        date: s("orderDate"),
                        ..FieldMap::default()
                    },
                },
            },
            Self::SupplierInvoices => ClassSpec {
                kind: EntityKind::SupplierInvoice,
                class: "PINVOICE".into(),
                representation: "PINVOICE".into(),
                keys: vec!["NUM".into()],
                stamp: "UPDDATTIM".into(),
                fields: FieldMap {
                    supplier_id: s("BPR"),
                    supplier_name: s("BPRNAM"),
                    amount: s("AMTATI"),
                    currency: s("CUR"),
                    status: s("STA"),
                    status_labels: labels::temporary_or_final(),
                    company: s("FCY"),
                    reference: s("BPRVCR"),
                    date: s("ACCDAT"),
                    account: s("ACC"),
                    doc_type: s("INVTYP"),
                    credit_types: vec!["2".into(), "4".into()],
                    ..FieldMap::default()
                },
                graphql: GraphqlSpec {
                    root: vec!["x3Purchasing".into(), "purchaseInvoice".into()],
                    keys: vec!["id".into()],
                    stamp: "_updateStamp".into(),
                    fields: FieldMap {
                        supplier_id: s("billBySupplier.code"),
                        supplier_name: s("billBySupplier.companyName"),
                        amount: s("totalAmountIncludingTax"),
                        currency: s("currency.code"),
                        status: s("status"),
                        status_labels: labels::temporary_or_final(),
                        company: s("site.code"),
                        reference: s("supplierDocumentNumber"),
                        date: s("accountingDate"),
                        account: s("account"),
                        doc_type: s("invoiceType"),
                        credit_types: vec!["creditMemo".into(), "2".into()],
                        ..FieldMap::default()
                    },
                },
            },
            Self::GlEntries => ClassSpec {
                kind: EntityKind::GlJournal,
                class: "GACCENTRY".into(),
                representation: "GACCENTRY".into(),
                keys: vec!["TYP".into(), "NUM".into()],
                stamp: "UPDDATTIM".into(),
                fields: FieldMap {
                    currency: s("CUR"),
                    company: s("CPY"),
                    date: s("ACCDAT"),
                    reference: s("DESVCR"),
                    status: s("STA"),
                    status_labels: labels::temporary_or_final(),
                    lines: Some(LineMap {
                        array: "GACCENTRYD".into(),
                        number: s("LIN"),
                        account: s("ACC"),
                        amount: s("AMTCUR"),
                        sense: s("SNS"),
                        description: s("DES"),
                    }),
                    ..FieldMap::default()
                },
                graphql: GraphqlSpec {
                    root: vec!["x3FinanceData".into(), "journalEntry".into()],
                    keys: vec!["type.code".into(), "id".into()],
                    stamp: "_updateStamp".into(),
                    fields: FieldMap {
                        currency: s("currency.code"),
                        company: s("company.code"),
                        date: s("accountingDate"),
                        reference: s("description"),
                        status: s("status"),
                        status_labels: labels::temporary_or_final(),
                        lines: Some(LineMap {
                            array: "lines".into(),
                            number: s("lineNumber"),
                            account: s("account.code"),
                            amount: s("transactionAmount"),
                            sense: s("sign"),
                            description: s("description"),
                        }),
                        ..FieldMap::default()
                    },
                },
            },
            Self::Suppliers => ClassSpec {
                kind: EntityKind::Supplier,
                class: "BPSUPPLIER".into(),
                representation: "BPSUPPLIER".into(),
                keys: vec!["BPSNUM".into()],
                stamp: "UPDDATTIM".into(),
                fields: FieldMap {
                    supplier_id: s("BPSNUM"),
                    supplier_name: s("BPSNAM"),
                    currency: s("CUR"),
                    company: s("CRY"),
                    ..FieldMap::default()
                },
                graphql: GraphqlSpec {
                    root: vec!["x3MasterData".into(), "supplier".into()],
                    keys: vec!["code".into()],
                    stamp: "_updateStamp".into(),
                    fields: FieldMap {
                        supplier_id: s("code"),
                        supplier_name: s("companyName"),
                        currency: s("currency.code"),
                        company: s("country.code"),
                        ..FieldMap::default()
                    },
                },
            },
        }
    }
}

/// Which property holds what, for one API (api1 property names, or GraphQL field paths
/// with `.` for nested objects). `None`: the class has no such property.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldMap {
    /// The supplier's code.
    pub supplier_id: Option<String>,
    /// The supplier's name.
    pub supplier_name: Option<String>,
    /// The document amount.
    pub amount: Option<String>,
    /// The document currency (ISO 4217).
    pub currency: Option<String>,
    /// The status (approval / signature, invoice status).
    pub status: Option<String>,
    /// Labels of the status codes (X3 serves local-menu values as numbers); a code without
    /// one is shown as served.
    pub status_labels: StatusLabels,
    /// The site or company.
    pub company: Option<String>,
    /// The supplier's document number or a description.
    pub reference: Option<String>,
    /// The document or accounting date.
    pub date: Option<String>,
    /// A header GL account.
    pub account: Option<String>,
    /// The document type (`INVTYP`): a value in `credit_types` makes the amount negative.
    pub doc_type: Option<String>,
    /// Document types that are credit notes.
    pub credit_types: Vec<String>,
    /// Lines carried inside the resource (GL entry lines).
    pub lines: Option<LineMap>,
}

/// Lines inside a resource: the array property and the properties of each line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LineMap {
    /// The array property (`GACCENTRYD`).
    pub array: String,
    /// The line number.
    pub number: Option<String>,
    /// The GL account.
    pub account: Option<String>,
    /// The amount (positive; the sense says debit or credit).
    pub amount: Option<String>,
    /// `1` debit, `-1` credit (X3 `SNS`); `D`/`C` are read too.
    pub sense: Option<String>,
    /// A description.
    pub description: Option<String>,
}

/// The GraphQL names of a class (they differ by release: introspect and configure).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphqlSpec {
    /// The path from the query root to the node (`x3Purchasing`, `purchaseOrder`).
    pub root: Vec<String>,
    /// The key fields (joined with `~`).
    pub keys: Vec<String>,
    /// The update-stamp field.
    pub stamp: String,
    /// The other fields.
    pub fields: FieldMap,
}

/// A class's description: names for api1 and GraphQL, and what the record is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassSpec {
    /// The entity kind of its records.
    pub kind: EntityKind,
    /// The api1 class (`PORDER`).
    pub class: String,
    /// The api1 representation (`PORDER`; sites often use a custom one).
    pub representation: String,
    /// The key properties, in order; a record key joins their values with `~`.
    pub keys: Vec<String>,
    /// The update stamp (`UPDDATTIM`).
    pub stamp: String,
    /// The api1 property names.
    pub fields: FieldMap,
    /// The GraphQL names.
    pub graphql: GraphqlSpec,
}

impl FieldMap {
    /// Overrides names from `role=name,role=name` (roles: `supplier_id`, `supplier_name`,
    /// `amount`, `currency`, `status`, `company`, `reference`, `date`, `account`,
    /// `doc_type`, `credit_types` (`|`-separated), `lines`, `line_number`, `line_account`,
    /// `line_amount`, `line_sense`, `line_description`); an empty name removes the role.
    pub fn apply_overrides(&mut self, key: &str, spec: &str) -> Result<(), SageX3Error> {
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (role, name) = part
                .split_once('=')
                .ok_or_else(|| SageX3Error::config(key, format!("`{part}` is not role=name")))?;
            let name = name.trim();
            let v = (!name.is_empty()).then(|| name.to_owned());
            if let Some(v) = &v
                && !valid_name(v)
            {
                return Err(SageX3Error::config(
                    key,
                    format!("`{v}` is not a property name"),
                ));
            }
            let line = |m: &mut Self| m.lines.get_or_insert_with(LineMap::default).clone();
            match role.trim() {
                "supplier_id" => self.supplier_id = v,
                "supplier_name" => self.supplier_name = v,
                "amount" => self.amount = v,
                "currency" => self.currency = v,
                "status" => self.status = v,
                "company" => self.company = v,
                "reference" => self.reference = v,
                "date" => self.date = v,
                "account" => self.account = v,
                "doc_type" => self.doc_type = v,
                "credit_types" => {
                    self.credit_types = name
                        .split('|')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect();
                }
                "lines" => match v {
                    Some(a) => {
                        let mut l = line(self);
                        l.array = a;
                        self.lines = Some(l);
                    }
                    None => self.lines = None,
                },
                r @ ("line_number" | "line_account" | "line_amount" | "line_sense"
                | "line_description") => {
                    let mut l = line(self);
                    match r {
                        "line_number" => l.number = v,
                        "line_account" => l.account = v,
                        "line_amount" => l.amount = v,
                        "line_sense" => l.sense = v,
                        _ => l.description = v,
                    }
                    self.lines = Some(l);
                }
                other => {
                    return Err(SageX3Error::config(key, format!("unknown role `{other}`")));
                }
            }
        }
        Ok(())
    }

    /// Every property this map names (the line array's own properties excluded).
    pub fn names(&self) -> Vec<&str> {
        [
            &self.supplier_id,
            &self.supplier_name,
            &self.amount,
            &self.currency,
            &self.status,
            &self.company,
            &self.reference,
            &self.date,
            &self.account,
            &self.doc_type,
        ]
        .into_iter()
        .filter_map(|v| v.as_deref())
        .chain(self.lines.as_ref().map(|l| l.array.as_str()))
        .collect()
    }
}

/// Whether `name` is a plain property name or dotted path (letters, digits, `_`, `.`):
/// names go into SData `where` / `orderBy` and GraphQL selections, so nothing else may.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !name.contains("..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_overrides() {
        assert_eq!(X3Class::from_name("PORDER"), Some(X3Class::PurchaseOrders));
        assert_eq!(X3Class::from_name("gl-entries"), Some(X3Class::GlEntries));
        assert_eq!(X3Class::from_name("nope"), None);
        let mut f = X3Class::GlEntries.spec().fields;
        f.apply_overrides("K", "amount=TOT, line_account=ACC_0,status=")
            .expect("ok");
        assert_eq!(f.amount.as_deref(), Some("TOT"));
        assert_eq!(f.status, None);
        assert_eq!(
            f.lines.as_ref().and_then(|l| l.account.as_deref()),
            Some("ACC_0")
        );
        assert!(f.apply_overrides("K", "amount=A B").is_err());
        assert!(f.apply_overrides("K", "colour=red").is_err());
        assert!(f.apply_overrides("K", "amount").is_err());
        assert!(!valid_name("A) or (1 eq 1"));
        assert!(valid_name("supplier.code"));
    }
}
