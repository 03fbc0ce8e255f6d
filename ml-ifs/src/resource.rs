//! What the source reads: a projection's entity set, its key and change stamp, and the
//! attribute names the mapping uses. Every name is configurable: projections and
//! attributes differ between IFS releases and tailorings.

use ml_core::record::EntityKind;

use crate::odata::literal;

/// How a key attribute is written in a key predicate and a filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    /// Edm.String: quoted, `'` doubled.
    Text,
    /// Edm.Int32/Int64/Decimal: bare digits.
    Number,
}

/// One key attribute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyAttr {
    /// The attribute name (`OrderNo`).
    pub name: String,
    /// How it is written.
    pub ty: KeyType,
}

impl KeyAttr {
    /// A text key.
    pub fn text(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            ty: KeyType::Text,
        }
    }

    /// A numeric key.
    pub fn number(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            ty: KeyType::Number,
        }
    }

    /// The OData literal of `value` for this key (`None` when a numeric key is not a
    /// number: it cannot be sent).
    pub fn literal(&self, value: &str) -> Option<String> {
        match self.ty {
            KeyType::Text => Some(literal::string(value)),
            KeyType::Number => {
                let digits = value.strip_prefix('-').unwrap_or(value);
                (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
                    .then(|| value.to_owned())
            }
        }
    }
}

/// The description of one entity set read as a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceSpec {
    /// The entity kind of the records.
    pub kind: EntityKind,
    /// The stream name used in configuration (`supplier_invoices`).
    pub name: String,
    /// The projection (`PurchaseOrderHandling`, without `.svc`).
    pub projection: String,
    /// The entity set (`PurchaseOrderSet`).
    pub entity_set: String,
    /// The entity type, for bound action names (`IfsApp.<Projection>.<Entity>_Approve`).
    pub entity: String,
    /// The key attributes, in the entity's key order (the record key is their values).
    pub keys: Vec<KeyAttr>,
    /// The change stamp (Edm.DateTimeOffset) the cursor follows.
    pub stamp: String,
    /// The company attribute the company filter applies to (`None`: not per company).
    pub company: Option<String>,
    /// The document number attribute.
    pub document: Option<String>,
    /// The supplier id attribute.
    pub supplier_id: Option<String>,
    /// The supplier name attribute.
    pub supplier_name: Option<String>,
    /// The amount attribute (Edm.Decimal).
    pub amount: Option<String>,
    /// The currency code attribute.
    pub currency: Option<String>,
    /// The state attribute (`Objstate`).
    pub status: Option<String>,
    /// A business date attribute (kept in `extra`).
    pub date: Option<String>,
    /// More attributes kept in the record's `extra` fields.
    pub extra: Vec<String>,
}

#[allow(clippy::unnecessary_wraps)] // Every optional attribute below reads `s("Name")`.
fn s(v: &str) -> Option<String> {
    Some(v.to_owned())
}

/// The built-in resources. Only `PurchaseOrderHandling.svc/PurchaseOrderSet` and
/// `SuppliersHandling.svc/SupplierInfoGeneralSet` are confirmed in public code; the other
/// projection names, and `ModifiedDateTime`, are guesses to check in the target release's
/// API Explorer (see the crate docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IfsResource {
    /// `PurchaseOrderHandling.svc/PurchaseOrderSet`.
    PurchaseOrders,
    /// `ManualSupplierInvoiceHandling.svc/ManSuppInvoiceSet` (unconfirmed).
    SupplierInvoices,
    /// `VoucherEntryHandling.svc/VoucherSet` (unconfirmed).
    GlVouchers,
    /// `SupplierPaymentHandling.svc/PaymentSet` (unconfirmed).
    Payments,
    /// `SuppliersHandling.svc/SupplierInfoGeneralSet`.
    Suppliers,
}

impl IfsResource {
    /// Every built-in resource.
    pub const ALL: [Self; 5] = [
        Self::PurchaseOrders,
        Self::SupplierInvoices,
        Self::GlVouchers,
        Self::Payments,
        Self::Suppliers,
    ];

    /// The configuration name (`purchase_orders`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::PurchaseOrders => "purchase_orders",
            Self::SupplierInvoices => "supplier_invoices",
            Self::GlVouchers => "gl_vouchers",
            Self::Payments => "payments",
            Self::Suppliers => "suppliers",
        }
    }

    /// Parses a configuration name (also `purchaseOrders`, `invoices`, the entity set).
    pub fn from_name(name: &str) -> Option<Self> {
        let n = name.trim().to_ascii_lowercase().replace(['-', '_'], "");
        Self::ALL
            .into_iter()
            .find(|r| {
                let spec = r.spec();
                n == r.name().replace('_', "") || n == spec.entity_set.to_ascii_lowercase()
            })
            .or(match n.as_str() {
                "invoices" | "supplierinvoice" => Some(Self::SupplierInvoices),
                "vouchers" | "glvoucher" => Some(Self::GlVouchers),
                "purchaseorder" | "pos" => Some(Self::PurchaseOrders),
                _ => None,
            })
    }

    /// The default description.
    pub fn spec(self) -> ResourceSpec {
        let base = ResourceSpec {
            kind: EntityKind::PurchaseOrder,
            name: self.name().to_owned(),
            projection: String::new(),
            entity_set: String::new(),
            entity: String::new(),
            keys: Vec::new(),
            stamp: "ModifiedDateTime".to_owned(),
            company: s("Company"),
            document: None,
            supplier_id: None,
            supplier_name: None,
            amount: None,
            currency: None,
            status: s("Objstate"),
            date: None,
            extra: Vec::new(),
        };
        match self {
            Self::PurchaseOrders => ResourceSpec {
                projection: "PurchaseOrderHandling".into(),
                entity_set: "PurchaseOrderSet".into(),
                entity: "PurchaseOrder".into(),
                keys: vec![KeyAttr::text("OrderNo")],
                // `PurchaseOrderSet` is per site (`Contract`); the verified attributes
                // (shared/apis/ifs-cloud.md) have no `Company`, so IFS_COMPANY does not
                // filter it: a `Company eq` filter answered 400 and paused the stream.
                company: None,
                document: s("OrderNo"),
                supplier_id: s("VendorNo"),
                supplier_name: s("VendorName"),
                amount: s("TotalGrossAmount"),
                currency: s("CurrencyCode"),
                date: s("OrderDate"),
                extra: vec!["Contract".into()],
                ..base
            },
            Self::SupplierInvoices => ResourceSpec {
                kind: EntityKind::SupplierInvoice,
                projection: "ManualSupplierInvoiceHandling".into(),
                entity_set: "ManSuppInvoiceSet".into(),
                entity: "ManSuppInvoice".into(),
                keys: vec![KeyAttr::text("Company"), KeyAttr::number("InvoiceId")],
                document: s("InvoiceNo"),
                supplier_id: s("Identity"),
                supplier_name: s("IdentityName"),
                amount: s("GrossAmount"),
                currency: s("Currency"),
                date: s("InvoiceDate"),
                extra: vec!["DueDate".into()],
                ..base
            },
            Self::GlVouchers => ResourceSpec {
                kind: EntityKind::GlJournal,
                projection: "VoucherEntryHandling".into(),
                entity_set: "VoucherSet".into(),
                entity: "Voucher".into(),
                keys: vec![
                    KeyAttr::text("Company"),
                    KeyAttr::number("AccountingYear"),
                    KeyAttr::text("VoucherType"),
                    KeyAttr::number("VoucherNo"),
                ],
                document: s("VoucherNo"),
                amount: s("Amount"),
                currency: s("CurrencyCode"),
                date: s("VoucherDate"),
                extra: vec!["VoucherText".into()],
                ..base
            },
            Self::Payments => ResourceSpec {
                kind: EntityKind::Payment,
                projection: "SupplierPaymentHandling".into(),
                entity_set: "PaymentSet".into(),
                entity: "Payment".into(),
                keys: vec![KeyAttr::text("Company"), KeyAttr::number("PaymentId")],
                document: s("PaymentId"),
                supplier_id: s("Identity"),
                supplier_name: s("IdentityName"),
                amount: s("Amount"),
                currency: s("Currency"),
                date: s("PaymentDate"),
                ..base
            },
            Self::Suppliers => ResourceSpec {
                kind: EntityKind::Supplier,
                projection: "SuppliersHandling".into(),
                entity_set: "SupplierInfoGeneralSet".into(),
                entity: "SupplierInfoGeneral".into(),
                keys: vec![KeyAttr::text("VendorNo")],
                company: None,
                document: s("VendorNo"),
                supplier_id: s("VendorNo"),
                supplier_name: s("VendorName"),
                status: None,
                extra: vec!["Country".into()],
                ..base
            },
        }
    }
}

impl ResourceSpec {
    /// `Projection.svc/EntitySet`.
    pub fn path(&self) -> String {
        format!("{}.svc/{}", self.projection, self.entity_set)
    }

    /// The bound action `IfsApp.<Projection>.<Entity>_<action>`.
    pub fn action_name(&self, action: &str) -> String {
        format!("IfsApp.{}.{}_{action}", self.projection, self.entity)
    }

    /// The attributes to `$select`: keys, stamp and every mapped attribute.
    pub fn select(&self) -> Vec<String> {
        let mut out: Vec<String> = self.keys.iter().map(|k| k.name.clone()).collect();
        out.push(self.stamp.clone());
        for a in [
            &self.company,
            &self.document,
            &self.supplier_id,
            &self.supplier_name,
            &self.amount,
            &self.currency,
            &self.status,
            &self.date,
        ]
        .into_iter()
        .flatten()
        {
            out.push(a.clone());
        }
        out.extend(self.extra.iter().cloned());
        let mut seen = std::collections::BTreeSet::new();
        out.retain(|a| seen.insert(a.clone()));
        out
    }

    /// The record key of an entity from its key values (in key order): the value itself
    /// for a single key, else the key predicate `Company='10',InvoiceId=1234`.
    pub fn record_key(&self, values: &[String]) -> Option<String> {
        if values.len() != self.keys.len() || values.is_empty() {
            return None;
        }
        if let [one] = values {
            return Some(one.clone());
        }
        let parts: Option<Vec<String>> = self
            .keys
            .iter()
            .zip(values)
            .map(|(k, v)| k.literal(v).map(|l| format!("{}={l}", k.name)))
            .collect();
        parts.map(|p| p.join(","))
    }

    /// The key values of a record key (the inverse of [`record_key`](Self::record_key)).
    pub fn key_values(&self, key: &str) -> Option<Vec<String>> {
        if self.keys.len() == 1 {
            return (!key.is_empty()).then(|| vec![key.to_owned()]);
        }
        let parsed = parse_predicate(key)?;
        self.keys
            .iter()
            .map(|k| {
                parsed
                    .iter()
                    .find(|(n, _)| *n == k.name)
                    .map(|(_, v)| v.clone())
            })
            .collect()
    }

    /// The entity's key segment `(OrderNo='P1')`, `(Company='10',InvoiceId=1234)`.
    pub fn key_segment(&self, values: &[String]) -> Option<String> {
        if values.len() != self.keys.len() {
            return None;
        }
        let parts: Option<Vec<String>> = self
            .keys
            .iter()
            .zip(values)
            .map(|(k, v)| k.literal(v).map(|l| format!("{}={l}", k.name)))
            .collect();
        Some(format!("({})", parts?.join(",")))
    }
}

/// Parses `A='x',B=12` into name/value pairs (quotes removed, `''` unescaped).
pub(crate) fn parse_predicate(s: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let (name, after) = rest.split_once('=')?;
        let after = after.trim_start();
        let (value, tail) = if let Some(q) = after.strip_prefix('\'') {
            let mut v = String::new();
            let mut chars = q.char_indices().peekable();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                if c == '\'' {
                    if chars.peek().map(|(_, c)| *c) == Some('\'') {
                        v.push('\'');
                        chars.next();
                    } else {
                        end = Some(i + 1);
                        break;
                    }
                } else {
                    v.push(c);
                }
            }
            (v, &q[end?..])
        } else {
            let i = after.find(',').unwrap_or(after.len());
            (after[..i].trim().to_owned(), &after[i..])
        };
        out.push((name.trim().to_owned(), value));
        rest = tail.trim_start();
        if let Some(t) = rest.strip_prefix(',') {
            rest = t.trim_start();
        } else if !rest.is_empty() {
            return None;
        }
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let inv = IfsResource::SupplierInvoices.spec();
        let k = inv
            .record_key(&["O'10".into(), "1234".into()])
            .expect("key");
        assert_eq!(k, "Company='O''10',InvoiceId=1234");
        assert_eq!(
            inv.key_values(&k),
            Some(vec!["O'10".to_owned(), "1234".to_owned()])
        );
        assert_eq!(
            inv.key_segment(&["10".into(), "7".into()]).as_deref(),
            Some("(Company='10',InvoiceId=7)")
        );
        assert_eq!(inv.record_key(&["10".into(), "x".into()]), None);
        let po = IfsResource::PurchaseOrders.spec();
        assert_eq!(po.record_key(&["P1".into()]).as_deref(), Some("P1"));
        assert_eq!(
            inv.action_name("Approve"),
            "IfsApp.ManualSupplierInvoiceHandling.ManSuppInvoice_Approve"
        );
        assert_eq!(
            IfsResource::from_name("PurchaseOrderSet"),
            Some(IfsResource::PurchaseOrders)
        );
        assert_eq!(
            IfsResource::from_name("supplier-invoices"),
            Some(IfsResource::SupplierInvoices)
        );
        assert_eq!(parse_predicate("A='x"), None);
    }
}
