//! What the IFS emulator holds: entity set definitions, typed rows, ETags, rendering.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde_json::Value;

/// The Edm type of a property.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PropType {
    /// Edm.String.
    String,
    /// Edm.Int32 (a JSON number in every format).
    Int,
    /// Edm.Decimal (a JSON string under `IEEE754Compatible=true`).
    Decimal,
    /// Edm.Date (`2026-03-01`).
    Date,
    /// Edm.DateTimeOffset.
    DateTimeOffset,
}

/// A bound action: allowed from some states, leading to one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActionDef {
    /// The action suffix (`Approve` for `<Entity>_Approve`).
    pub name: String,
    /// The states it is allowed in.
    pub from: Vec<String>,
    /// The state it leads to.
    pub to: String,
}

/// One entity set of a projection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntitySetDef {
    /// The projection (`PurchaseOrderHandling`).
    pub projection: String,
    /// The entity set (`PurchaseOrderSet`).
    pub set: String,
    /// The entity type (`PurchaseOrder`).
    pub entity: String,
    /// Key properties in key order.
    pub keys: Vec<String>,
    /// Every property with its type, in serving order (keys included).
    pub props: Vec<(String, PropType)>,
    /// The DateTimeOffset the server stamps on every write.
    pub stamp: String,
    /// The state property (`Objstate`), if any.
    pub state: Option<String>,
    /// Bound actions.
    pub actions: Vec<ActionDef>,
}

impl EntitySetDef {
    /// The type of `prop`.
    pub fn prop(&self, prop: &str) -> Option<PropType> {
        self.props.iter().find(|(n, _)| n == prop).map(|(_, t)| *t)
    }
}

/// A typed value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Val {
    Null,
    Str(String),
    Int(i64),
    /// The exact decimal text.
    Dec(String),
    Date(jiff::civil::Date),
    Dto(Timestamp),
}

/// Compares two decimal texts exactly (`-12.50` vs `3`), without floats.
pub(super) fn cmp_decimal(a: &str, b: &str) -> Option<Ordering> {
    fn parts(s: &str) -> Option<(bool, String, String)> {
        let s = s.trim();
        let (neg, digits) = match s.strip_prefix('-') {
            Some(d) => (true, d),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        if int.is_empty() && frac.is_empty()
            || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let int = int.trim_start_matches('0').to_owned();
        let frac = frac.trim_end_matches('0').to_owned();
        let zero = int.is_empty() && frac.is_empty();
        Some((neg && !zero, int, frac))
    }
    let (na, ia, fa) = parts(a)?;
    let (nb, ib, fb) = parts(b)?;
    let mag = ia
        .len()
        .cmp(&ib.len())
        .then_with(|| ia.cmp(&ib))
        .then_with(|| {
            let n = fa.len().max(fb.len());
            format!("{fa:0<n$}").cmp(&format!("{fb:0<n$}"))
        });
    Some(match (na, nb) {
        (false, false) => mag,
        (true, true) => mag.reverse(),
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
    })
}

impl Val {
    /// Reads a JSON value as `ty`.
    pub(super) fn from_json(ty: PropType, v: &Value) -> Result<Self, String> {
        if v.is_null() {
            return Ok(Self::Null);
        }
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            other => return Err(format!("{other} is not a scalar")),
        };
        match ty {
            PropType::String => match v {
                Value::String(s) => Ok(Self::Str(s.clone())),
                _ => Err(format!("{text} is not a string")),
            },
            PropType::Int => text
                .parse()
                .map(Self::Int)
                .map_err(|_| format!("{text} is not an integer")),
            PropType::Decimal => cmp_decimal(&text, "0")
                .map(|_| Self::Dec(text.clone()))
                .ok_or_else(|| format!("{text} is not a decimal")),
            PropType::Date => text
                .parse()
                .map(Self::Date)
                .map_err(|_| format!("{text} is not a date")),
            PropType::DateTimeOffset => text
                .parse::<Timestamp>()
                .map(Self::Dto)
                .map_err(|_| format!("{text} is not a DateTimeOffset")),
        }
    }

    /// Compares with another value of the same type.
    pub(super) fn compare(&self, other: &Self) -> Option<Ordering> {
        match (self, other) {
            (Self::Null, Self::Null) => Some(Ordering::Equal),
            (Self::Null, _) => Some(Ordering::Less),
            (_, Self::Null) => Some(Ordering::Greater),
            (Self::Str(a), Self::Str(b)) => Some(a.cmp(b)),
            (Self::Int(a), Self::Int(b)) => Some(a.cmp(b)),
            (Self::Dec(a), Self::Dec(b)) => cmp_decimal(a, b),
            (Self::Int(a), Self::Dec(b)) => cmp_decimal(&a.to_string(), b),
            (Self::Dec(a), Self::Int(b)) => cmp_decimal(a, &b.to_string()),
            (Self::Date(a), Self::Date(b)) => Some(a.cmp(b)),
            (Self::Dto(a), Self::Dto(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }

    /// The key text used in key maps and the key predicate.
    pub(super) fn key_text(&self) -> String {
        match self {
            Self::Null => String::new(),
            Self::Str(s) | Self::Dec(s) => s.clone(),
            Self::Int(i) => i.to_string(),
            Self::Date(d) => d.to_string(),
            Self::Dto(t) => t.to_string(),
        }
    }
}

/// How the request wants values rendered.
#[derive(Clone, Debug)]
pub(super) struct Render {
    /// `IEEE754Compatible=true`: decimals as strings.
    pub(super) ieee754: bool,
    /// `X-Ifs-Time-Zone-Aware-Request: true`: timestamps in UTC; otherwise the site's wall
    /// clock time, still suffixed `Z` (the trap).
    pub(super) tz_aware: bool,
    /// The site's zone.
    pub(super) site_tz: TimeZone,
}

impl Render {
    pub(super) fn dto(&self, t: Timestamp) -> String {
        if self.tz_aware {
            t.to_string()
        } else {
            let civil = t.to_zoned(self.site_tz.clone()).datetime();
            format!("{civil}Z")
        }
    }
}

/// One stored row.
#[derive(Clone, Debug)]
pub(super) struct Row {
    pub(super) values: BTreeMap<String, Val>,
    /// Like IFS `Objversion`: changes on every write.
    pub(super) version: u64,
    /// Like IFS `Objid`.
    pub(super) rowid: u64,
}

impl Row {
    /// The opaque ETag of the row's current version.
    pub(super) fn etag(&self) -> String {
        format!("W/\"Vy8i{:06X}:{:04}\"", self.rowid, self.version)
    }

    pub(super) fn get(&self, prop: &str) -> &Val {
        self.values.get(prop).unwrap_or(&Val::Null)
    }

    /// The entity's JSON (with `@odata.etag`, and `@odata.context` for a single entity),
    /// restricted to `select` when given.
    pub(super) fn to_json(
        &self,
        def: &EntitySetDef,
        render: &Render,
        select: Option<&[String]>,
        context: Option<&str>,
    ) -> String {
        let mut out = String::from("{");
        if let Some(c) = context {
            let _ = write!(out, "\"@odata.context\":{},", Value::from(c));
        }
        let _ = write!(out, "\"@odata.etag\":{}", Value::from(self.etag()));
        for (name, ty) in &def.props {
            if select.is_some_and(|s| !s.iter().any(|x| x == name)) {
                continue;
            }
            let v = match (self.get(name), ty) {
                (Val::Null, _) => "null".to_owned(),
                (Val::Str(s), _) => Value::from(s.as_str()).to_string(),
                (Val::Int(i), _) => i.to_string(),
                (Val::Dec(d), _) if render.ieee754 => Value::from(d.as_str()).to_string(),
                (Val::Dec(d), _) => d.clone(),
                (Val::Date(d), _) => format!("\"{d}\""),
                (Val::Dto(t), _) => Value::from(render.dto(*t)).to_string(),
            };
            let _ = write!(out, ",{}:{v}", Value::from(name.as_str()));
        }
        out.push('}');
        out
    }
}

/// An entity set with its rows, by key.
#[derive(Debug)]
pub(super) struct SetData {
    pub(super) def: EntitySetDef,
    pub(super) rows: BTreeMap<Vec<String>, Row>,
    pub(super) denied: Vec<String>,
}

impl SetData {
    pub(super) fn key_of(&self, values: &BTreeMap<String, Val>) -> Option<Vec<String>> {
        self.def
            .keys
            .iter()
            .map(|k| match values.get(k) {
                None | Some(Val::Null) => None,
                Some(v) => Some(v.key_text()),
            })
            .collect()
    }
}

fn prop(n: &str, t: PropType) -> (String, PropType) {
    (n.to_owned(), t)
}

/// The built-in entity sets (names per the API notes; every one but
/// `PurchaseOrderSet` and `SupplierInfoGeneralSet` is a guess, and so is
/// `ModifiedDateTime`).
pub(super) fn builtin_sets() -> Vec<EntitySetDef> {
    use PropType::{Date, DateTimeOffset, Decimal, Int, String as S};
    let stamp = "ModifiedDateTime";
    let approve = vec![
        ActionDef {
            name: "Approve".into(),
            from: vec!["AwaitingApproval".into()],
            to: "Approved".into(),
        },
        ActionDef {
            name: "Reject".into(),
            from: vec!["AwaitingApproval".into()],
            to: "Rejected".into(),
        },
    ];
    vec![
        EntitySetDef {
            projection: "PurchaseOrderHandling".into(),
            set: "PurchaseOrderSet".into(),
            entity: "PurchaseOrder".into(),
            keys: vec!["OrderNo".into()],
            props: vec![
                prop("OrderNo", S),
                prop("Company", S),
                prop("VendorNo", S),
                prop("VendorName", S),
                prop("Objstate", S),
                prop("Contract", S),
                prop("OrderDate", Date),
                prop("TotalGrossAmount", Decimal),
                prop("CurrencyCode", S),
                prop(stamp, DateTimeOffset),
            ],
            stamp: stamp.into(),
            state: Some("Objstate".into()),
            actions: vec![ActionDef {
                name: "Release".into(),
                from: vec!["Planned".into()],
                to: "Released".into(),
            }],
        },
        EntitySetDef {
            projection: "ManualSupplierInvoiceHandling".into(),
            set: "ManSuppInvoiceSet".into(),
            entity: "ManSuppInvoice".into(),
            keys: vec!["Company".into(), "InvoiceId".into()],
            props: vec![
                prop("Company", S),
                prop("InvoiceId", Int),
                prop("InvoiceNo", S),
                prop("Identity", S),
                prop("IdentityName", S),
                prop("Objstate", S),
                prop("InvoiceDate", Date),
                prop("DueDate", Date),
                prop("GrossAmount", Decimal),
                prop("Currency", S),
                prop(stamp, DateTimeOffset),
            ],
            stamp: stamp.into(),
            state: Some("Objstate".into()),
            actions: approve,
        },
        EntitySetDef {
            projection: "VoucherEntryHandling".into(),
            set: "VoucherSet".into(),
            entity: "Voucher".into(),
            keys: vec![
                "Company".into(),
                "AccountingYear".into(),
                "VoucherType".into(),
                "VoucherNo".into(),
            ],
            props: vec![
                prop("Company", S),
                prop("AccountingYear", Int),
                prop("VoucherType", S),
                prop("VoucherNo", Int),
                prop("VoucherDate", Date),
                prop("VoucherText", S),
                prop("Objstate", S),
                prop("Amount", Decimal),
                prop("CurrencyCode", S),
                prop(stamp, DateTimeOffset),
            ],
            stamp: stamp.into(),
            state: Some("Objstate".into()),
            actions: Vec::new(),
        },
        EntitySetDef {
            projection: "SupplierPaymentHandling".into(),
            set: "PaymentSet".into(),
            entity: "Payment".into(),
            keys: vec!["Company".into(), "PaymentId".into()],
            props: vec![
                prop("Company", S),
                prop("PaymentId", Int),
                prop("Identity", S),
                prop("IdentityName", S),
                prop("PaymentDate", Date),
                prop("Objstate", S),
                prop("Amount", Decimal),
                prop("Currency", S),
                prop(stamp, DateTimeOffset),
            ],
            stamp: stamp.into(),
            state: Some("Objstate".into()),
            actions: Vec::new(),
        },
        EntitySetDef {
            projection: "SuppliersHandling".into(),
            set: "SupplierInfoGeneralSet".into(),
            entity: "SupplierInfoGeneral".into(),
            keys: vec!["VendorNo".into()],
            props: vec![
                prop("VendorNo", S),
                prop("VendorName", S),
                prop("Country", S),
                prop(stamp, DateTimeOffset),
            ],
            stamp: stamp.into(),
            state: None,
            actions: Vec::new(),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_compare_exactly() {
        assert_eq!(cmp_decimal("10.50", "10.5"), Some(Ordering::Equal));
        assert_eq!(cmp_decimal("-1", "0.001"), Some(Ordering::Less));
        assert_eq!(cmp_decimal("-2.5", "-2.4"), Some(Ordering::Less));
        assert_eq!(cmp_decimal("100", "99.999"), Some(Ordering::Greater));
        assert_eq!(cmp_decimal("-0.0", "0"), Some(Ordering::Equal));
        assert_eq!(cmp_decimal("1e3", "0"), None);
    }
}
