//! The record model: one business event read from an ERP, with typed business fields and
//! the raw payload it came from.

use std::collections::BTreeMap;
use std::fmt;

use jiff::Timestamp;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::money::Money;

/// What kind of business object a record is.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    /// A purchase order (SAP EKKO, Oracle purchaseOrders, IFS PurchaseOrder).
    PurchaseOrder,
    /// A supplier (payables) invoice.
    SupplierInvoice,
    /// A general-ledger journal or posting.
    GlJournal,
    /// A payment (payables or receivables).
    Payment,
    /// A supplier / vendor master record.
    Supplier,
    /// A customer master record or a receivables document.
    Customer,
    /// A cost center.
    CostCenter,
    /// A material / item.
    Material,
    /// Anything else, named.
    Other(String),
}

impl EntityKind {
    /// A stable snake_case label (`purchase_order`, `other:foo`).
    pub fn label(&self) -> String {
        match self {
            Self::PurchaseOrder => "purchase_order".into(),
            Self::SupplierInvoice => "supplier_invoice".into(),
            Self::GlJournal => "gl_journal".into(),
            Self::Payment => "payment".into(),
            Self::Supplier => "supplier".into(),
            Self::Customer => "customer".into(),
            Self::CostCenter => "cost_center".into(),
            Self::Material => "material".into(),
            Self::Other(s) => format!("other:{s}"),
        }
    }

    /// A human title (`Purchase order`).
    pub fn title(&self) -> String {
        match self {
            Self::PurchaseOrder => "Purchase order".into(),
            Self::SupplierInvoice => "Supplier invoice".into(),
            Self::GlJournal => "GL journal".into(),
            Self::Payment => "Payment".into(),
            Self::Supplier => "Supplier".into(),
            Self::Customer => "Customer".into(),
            Self::CostCenter => "Cost center".into(),
            Self::Material => "Material".into(),
            Self::Other(s) => s.clone(),
        }
    }
}

impl fmt::Display for EntityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

/// One line of a document (a PO line, an invoice distribution).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    /// The line number as the source gives it.
    pub number: String,
    /// What the line is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Quantity ordered or invoiced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<Decimal>,
    /// The line amount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Money>,
    /// The GL account charged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gl_account: Option<String>,
    /// The cost center charged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_center: Option<String>,
    /// The material or item number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub material: Option<String>,
}

/// The typed business fields a notification needs. Every field is optional because
/// entity kinds differ; a source rejects a record that lacks what its kind requires.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusinessFields {
    /// The document number people use (invoice number, PO number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document_number: Option<String>,
    /// The supplier's id in the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supplier_id: Option<String>,
    /// The supplier's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supplier: Option<String>,
    /// The document total.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Money>,
    /// The GL account (header level).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gl_account: Option<String>,
    /// The cost center (header level).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_center: Option<String>,
    /// The company code / business unit / legal entity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company_code: Option<String>,
    /// The document status as the source names it (`Validated`, `Needs revalidation`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// An external reference (SAP REF_DOC_NO, supplier's invoice reference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Document lines.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<Line>,
    /// Further named fields a source chose to expose (buyer email, material group, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, String>,
}

/// One business event read from a source system.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The source system and instance, as the source's `Display` names it
    /// (`OracleFusion(acme.fa.us2)`).
    pub system: String,
    /// The entity kind.
    pub kind: EntityKind,
    /// The stable key of the object in the source (invoice id, PO number + company).
    pub key: String,
    /// The key used for dedupe when it differs from `key` (SAP uses REF_DOC_NO).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// A version stamp (ETag, change counter) when the source has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// When the object was last modified in the source.
    pub modified_at: Timestamp,
    /// The typed business fields.
    #[serde(default)]
    pub fields: BusinessFields,
    /// A link back to the object in the source's UI, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// The raw item exactly as the source returned it (JSON text: amounts keep every
    /// digit).
    #[serde(default)]
    pub raw: RawJson,
}

impl Record {
    /// A record with its required identity; set the rest with the `with_*` methods.
    pub fn new(
        system: impl Into<String>,
        kind: EntityKind,
        key: impl Into<String>,
        modified_at: Timestamp,
    ) -> Self {
        Self {
            system: system.into(),
            kind,
            key: key.into(),
            idempotency_key: None,
            version: None,
            modified_at,
            fields: BusinessFields::default(),
            link: None,
            raw: RawJson::null(),
        }
    }

    /// Sets the version stamp.
    pub fn with_version(mut self, v: impl Into<String>) -> Self {
        self.version = Some(v.into());
        self
    }

    /// Sets the dedupe key.
    pub fn with_idempotency_key(mut self, k: impl Into<String>) -> Self {
        self.idempotency_key = Some(k.into());
        self
    }

    /// Sets the business fields.
    pub fn with_fields(mut self, fields: BusinessFields) -> Self {
        self.fields = fields;
        self
    }

    /// Sets the raw payload: a [`RawJson`] (exact text), or a `serde_json::Value`.
    pub fn with_raw(mut self, raw: impl Into<RawJson>) -> Self {
        self.raw = raw.into();
        self
    }

    /// Sets the link back to the source.
    pub fn with_link(mut self, link: impl Into<String>) -> Self {
        self.link = Some(link.into());
        self
    }

    /// The key the journal dedupes on: the idempotency key, or else the source key.
    pub fn dedupe_key(&self) -> &str {
        self.idempotency_key.as_deref().unwrap_or(&self.key)
    }

    /// The version the journal dedupes on: the source's version stamp, or else the
    /// modification time (so an edit with a new timestamp is a new version).
    pub fn dedupe_version(&self) -> String {
        self.version
            .clone()
            .unwrap_or_else(|| self.modified_at.to_string())
    }

    /// Checks the identity fields every record needs.
    pub fn validate(&self) -> Result<()> {
        if self.key.trim().is_empty() {
            return Err(Error::InvalidRecord("the source key is empty".into()));
        }
        if self.system.trim().is_empty() {
            return Err(Error::InvalidRecord(format!(
                "record `{}` names no source system",
                self.key
            )));
        }
        if matches!(&self.idempotency_key, Some(k) if k.trim().is_empty()) {
            return Err(Error::InvalidRecord(format!(
                "record `{}` has an empty idempotency key",
                self.key
            )));
        }
        Ok(())
    }

    /// A one-line human title: `Supplier invoice INV-1001`.
    pub fn title(&self) -> String {
        format!(
            "{} {}",
            self.kind.title(),
            self.fields.document_number.as_deref().unwrap_or(&self.key)
        )
    }
}

/// An item a source could not turn into a [`Record`]: journaled as rejected with its
/// reason, and the stream goes on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rejected {
    /// The source key, when it could be read.
    pub key: Option<String>,
    /// Why the item was rejected.
    pub reason: String,
    /// The raw item, exactly as the source returned it.
    pub raw: RawJson,
    /// Its modification time, when it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_at: Option<Timestamp>,
}

impl Rejected {
    /// A rejected item.
    pub fn new(key: Option<String>, reason: impl Into<String>, raw: impl Into<RawJson>) -> Self {
        Self {
            key,
            reason: reason.into(),
            raw: raw.into(),
            modified_at: None,
        }
    }

    /// A stable identity for dedupe of rejections: the key when known, otherwise a hash
    /// of the raw item.
    pub fn identity(&self) -> String {
        if let Some(k) = &self.key {
            return format!("key:{k}");
        }
        // FNV-1a rather than std's hasher: this identity is stored in the journal, so it
        // must not change between Rust releases.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.raw.as_str().bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("raw:{h:016x}")
    }
}

/// One item of a source page: a record, or an item that was rejected.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceItem {
    /// A well-formed record.
    Record(Box<Record>),
    /// A malformed item.
    Rejected(Rejected),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("ts")
    }

    #[test]
    fn dedupe_identity() {
        let r = Record::new(
            "Sap(PRD,100)",
            EntityKind::SupplierInvoice,
            "5100000001",
            ts("2026-01-02T03:04:05Z"),
        );
        assert_eq!(r.dedupe_key(), "5100000001");
        assert_eq!(r.dedupe_version(), "2026-01-02T03:04:05Z");
        let r = r.with_idempotency_key("REF-9").with_version("3");
        assert_eq!(r.dedupe_key(), "REF-9");
        assert_eq!(r.dedupe_version(), "3");
        assert!(r.validate().is_ok());
    }

    #[test]
    fn invalid_records_are_errors() {
        let r = Record::new("x", EntityKind::Payment, " ", Timestamp::UNIX_EPOCH);
        assert!(matches!(r.validate(), Err(Error::InvalidRecord(_))));
        let r = Record::new("", EntityKind::Payment, "k", Timestamp::UNIX_EPOCH);
        assert!(r.validate().is_err());
        let r = Record::new("s", EntityKind::Payment, "k", Timestamp::UNIX_EPOCH)
            .with_idempotency_key("");
        assert!(r.validate().is_err());
    }

    #[test]
    fn serde_round_trip_and_kinds() {
        let mut f = BusinessFields {
            document_number: Some("INV-1".into()),
            amount: Some(Money::parse("-12.30", "EUR").expect("m")),
            ..BusinessFields::default()
        };
        f.extra.insert("buyer_email".into(), "b@example.com".into());
        let r = Record::new(
            "s",
            EntityKind::Other("lease".into()),
            "k",
            ts("2026-05-01T00:00:00Z"),
        )
        .with_fields(f);
        let json = serde_json::to_string(&r).expect("json");
        let back: Record = serde_json::from_str(&json).expect("back");
        assert_eq!(back, r);
        assert_eq!(r.kind.label(), "other:lease");
        assert_eq!(r.title(), "lease INV-1");
        assert_eq!(
            serde_json::to_string(&EntityKind::SupplierInvoice).expect("k"),
            "\"supplier_invoice\""
        );
    }

    #[test]
    fn rejected_identity_is_stable() {
        let a = Rejected::new(None, "no amount", serde_json::json!({"x": 1}));
        let b = Rejected::new(None, "no amount", serde_json::json!({"x": 1}));
        assert_eq!(a.identity(), b.identity());
        let c = Rejected::new(Some("7".into()), "bad", serde_json::Value::Null);
        assert_eq!(c.identity(), "key:7");
    }
}

/// A source item exactly as the source sent it: its JSON text. A `serde_json::Value` would
/// pass every number through `f64` (`98765432109876.54` would be journaled as `...876.55`),
/// so the audit trail keeps the text. Serialises as the JSON itself, not as a string.
#[derive(Clone)]
pub struct RawJson(Box<serde_json::value::RawValue>);

impl RawJson {
    /// JSON `null` (a record built in code, with nothing raw).
    pub fn null() -> Self {
        Self::from(serde_json::Value::Null)
    }

    /// Takes JSON text as it is; text that is not JSON is [`Error::InvalidRecord`].
    pub fn from_text(text: impl Into<String>) -> Result<Self> {
        serde_json::value::RawValue::from_string(text.into())
            .map(Self)
            .map_err(|e| Error::InvalidRecord(format!("raw item is not JSON: {e}")))
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    /// Whether this is JSON `null`.
    pub fn is_null(&self) -> bool {
        self.as_str().trim() == "null"
    }

    /// Parses the text into a `serde_json::Value` for inspection. Numbers become `f64` or
    /// integers there: read money from the typed fields, or from [`Self::as_str`].
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(self.as_str()).unwrap_or(serde_json::Value::Null)
    }
}

impl Default for RawJson {
    fn default() -> Self {
        Self::null()
    }
}

impl From<serde_json::Value> for RawJson {
    fn from(v: serde_json::Value) -> Self {
        Self::from(&v)
    }
}

impl From<&serde_json::Value> for RawJson {
    fn from(v: &serde_json::Value) -> Self {
        // A `Value` always serialises to valid JSON (`Box<RawValue>`'s default is `null`).
        Self(serde_json::value::RawValue::from_string(v.to_string()).unwrap_or_default())
    }
}

impl From<Box<serde_json::value::RawValue>> for RawJson {
    fn from(v: Box<serde_json::value::RawValue>) -> Self {
        Self(v)
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for RawJson {}

/// Compares the parsed JSON (numbers as `serde_json` reads them).
impl PartialEq<serde_json::Value> for RawJson {
    fn eq(&self, other: &serde_json::Value) -> bool {
        self.to_value() == *other
    }
}

impl fmt::Debug for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RawJson({})", self.as_str())
    }
}

impl fmt::Display for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for RawJson {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for RawJson {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Box::<serde_json::value::RawValue>::deserialize(d).map(Self)
    }
}
