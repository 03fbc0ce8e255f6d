//! Recipients by rule: symbolic addresses (`buyer`, `supplier`, `cost_center`,
//! `material_group`) resolved to phone numbers or email addresses from the record's own
//! fields or from a host-supplied [`RecipientDirectory`].
//!
//! How it fits ml-core routing: a rule's destination stays one journaled delivery
//! (`sms:buyer`, `email:supplier`). The sink resolves the symbol when it renders the
//! delivery (it has the record then) and sends to the result; the destination in the
//! journal stays symbolic, the address used is logged. An SMS goes to the first number
//! found (one delivery = one message = one `SM…` sid); an email goes to every address
//! found in one SendGrid message (one `X-Message-Id`). A host that wants one journaled
//! delivery per person routes to concrete addresses, calling [`resolve`] itself when
//! it builds its rules.
//!
//! Lookup order for a role: the record's `fields.extra["<role>_phone"]` /
//! `["<role>_email"]` (e.g. `buyer_email` on a PO), then the directory with the record's key
//! for that role: supplier = `supplier_id` (else `supplier`), cost center = `cost_center`,
//! material group = `extra["material_group"]` (else the first line's `material`), buyer =
//! `extra["buyer"]`.

use std::collections::HashMap;
use std::fmt::Debug;

use ml_core::record::Record;

/// A symbolic recipient.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The record's supplier.
    Supplier,
    /// The owner of the record's cost center.
    CostCenter,
    /// The owner of the record's material group.
    MaterialGroup,
    /// The record's buyer (purchasing agent).
    Buyer,
}

impl Role {
    /// Parses `supplier`, `cost_center`, `material_group` or `buyer` (also with `-` and
    /// any case).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "supplier" | "vendor" => Some(Self::Supplier),
            "cost_center" | "costcenter" => Some(Self::CostCenter),
            "material_group" | "materialgroup" => Some(Self::MaterialGroup),
            "buyer" => Some(Self::Buyer),
            _ => None,
        }
    }

    /// The stable name (`cost_center`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Supplier => "supplier",
            Self::CostCenter => "cost_center",
            Self::MaterialGroup => "material_group",
            Self::Buyer => "buyer",
        }
    }

    /// The record's key for this role, if it has one.
    pub fn key_of(self, record: &Record) -> Option<String> {
        let f = &record.fields;
        match self {
            Self::Supplier => f.supplier_id.clone().or_else(|| f.supplier.clone()),
            Self::CostCenter => f.cost_center.clone(),
            Self::MaterialGroup => f
                .extra
                .get("material_group")
                .cloned()
                .or_else(|| f.lines.iter().find_map(|l| l.material.clone())),
            Self::Buyer => f.extra.get("buyer").cloned(),
        }
    }
}

/// Which kind of address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    /// An E.164 phone number.
    Sms,
    /// An email address.
    Email,
}

impl Channel {
    fn suffix(self) -> &'static str {
        match self {
            Self::Sms => "phone",
            Self::Email => "email",
        }
    }
}

/// A host-supplied directory: who is the contact for a supplier, cost center, material
/// group or buyer.
pub trait RecipientDirectory: Send + Sync + Debug {
    /// Addresses for `role` with the record's `key` for it, on `channel`.
    fn lookup(&self, role: Role, key: &str, channel: Channel) -> Vec<String>;
}

/// A directory held in memory.
#[derive(Clone, Debug, Default)]
pub struct MemoryDirectory {
    entries: HashMap<(Role, String, Channel), Vec<String>>,
}

impl MemoryDirectory {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an address.
    pub fn with(mut self, role: Role, key: &str, channel: Channel, address: &str) -> Self {
        self.entries
            .entry((role, key.to_owned(), channel))
            .or_default()
            .push(address.to_owned());
        self
    }
}

impl RecipientDirectory for MemoryDirectory {
    fn lookup(&self, role: Role, key: &str, channel: Channel) -> Vec<String> {
        self.entries
            .get(&(role, key.to_owned(), channel))
            .cloned()
            .unwrap_or_default()
    }
}

/// Resolves `role` for `record` on `channel`: the record's own field first, then the
/// directory.
pub fn resolve(
    record: &Record,
    role: Role,
    channel: Channel,
    directory: Option<&dyn RecipientDirectory>,
) -> Vec<String> {
    let field = format!("{}_{}", role.as_str(), channel.suffix());
    if let Some(v) = record.fields.extra.get(&field) {
        let found: Vec<String> = v
            .split([',', ';'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if !found.is_empty() {
            return found;
        }
    }
    match (directory, role.key_of(record)) {
        (Some(d), Some(key)) => d.lookup(role, &key, channel),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ml_core::record::{BusinessFields, EntityKind};

    #[test]
    fn field_then_directory() {
        let mut fields = BusinessFields {
            supplier_id: Some("V100".into()),
            cost_center: Some("CC-1".into()),
            ..BusinessFields::default()
        };
        fields.extra.insert(
            "buyer_email".into(),
            "ann@example.com, bob@example.com".into(),
        );
        fields.extra.insert("buyer".into(), "ANN".into());
        let r = Record::new(
            "S",
            EntityKind::PurchaseOrder,
            "1",
            jiff::Timestamp::UNIX_EPOCH,
        )
        .with_fields(fields);
        let dir = MemoryDirectory::new()
            .with(Role::Supplier, "V100", Channel::Sms, "+4915112345678")
            .with(Role::Buyer, "ANN", Channel::Sms, "+15558675310")
            .with(Role::CostCenter, "CC-1", Channel::Email, "cc1@example.com");
        assert_eq!(
            resolve(&r, Role::Buyer, Channel::Email, Some(&dir)),
            ["ann@example.com", "bob@example.com"]
        );
        assert_eq!(
            resolve(&r, Role::Buyer, Channel::Sms, Some(&dir)),
            ["+15558675310"]
        );
        assert_eq!(
            resolve(&r, Role::Supplier, Channel::Sms, Some(&dir)),
            ["+4915112345678"]
        );
        assert_eq!(
            resolve(&r, Role::CostCenter, Channel::Email, Some(&dir)),
            ["cc1@example.com"]
        );
        assert!(resolve(&r, Role::MaterialGroup, Channel::Email, Some(&dir)).is_empty());
        assert!(resolve(&r, Role::Supplier, Channel::Sms, None).is_empty());
        assert_eq!(Role::parse("Cost-Center"), Some(Role::CostCenter));
        assert_eq!(Role::parse("+1555"), None);
    }
}
