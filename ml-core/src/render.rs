//! Rendering a record into a message. Sinks turn [`Rendered`] into their wire format.

use std::fmt::{Debug, Write};

use serde::{Deserialize, Serialize};

use crate::record::Record;
use crate::sink::Destination;

/// A rendered message.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Rendered {
    /// The plain-text form: the SMS body, the Slack fallback `text`, the email text part.
    pub text: String,
    /// A subject line (email) or header (Slack), when the format has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// A structured body in the sink's own format (Slack `blocks`, an HTML email part).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
}

impl Rendered {
    /// A plain-text message.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            ..Self::default()
        }
    }
}

/// Turns a record into a message for a destination.
pub trait Renderer: Send + Sync + Debug {
    /// Renders `record` for `destination`.
    fn render(&self, record: &Record, destination: &Destination) -> Rendered;
}

/// The default renderer: a title line and one line per known field.
#[derive(Clone, Copy, Debug, Default)]
pub struct PlainTextRenderer;

impl Renderer for PlainTextRenderer {
    fn render(&self, record: &Record, _destination: &Destination) -> Rendered {
        let f = &record.fields;
        let mut text = record.title();
        let mut line = |label: &str, value: Option<String>| {
            if let Some(v) = value {
                let _ = write!(text, "\n{label}: {v}");
            }
        };
        line(
            "Supplier",
            f.supplier.clone().or_else(|| f.supplier_id.clone()),
        );
        line("Amount", f.amount.map(|m| m.to_string()));
        line("Status", f.status.clone());
        line("GL account", f.gl_account.clone());
        line("Cost center", f.cost_center.clone());
        line("Company", f.company_code.clone());
        line("Reference", f.reference.clone());
        line("Source", Some(record.system.clone()));
        line("Link", record.link.clone());
        Rendered {
            subject: Some(record.title()),
            text,
            body: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Money;
    use crate::record::{BusinessFields, EntityKind};

    #[test]
    fn plain_text_lists_known_fields() {
        let r = Record::new(
            "OracleFusion(pod)",
            EntityKind::SupplierInvoice,
            "300100",
            jiff::Timestamp::UNIX_EPOCH,
        )
        .with_fields(BusinessFields {
            document_number: Some("INV-7".into()),
            supplier: Some("Müller GmbH".into()),
            amount: Some(Money::parse("1200.5", "EUR").expect("m")),
            ..BusinessFields::default()
        });
        let out = PlainTextRenderer.render(&r, &Destination::new("slack", "#ap"));
        assert_eq!(
            out.text,
            "Supplier invoice INV-7\nSupplier: Müller GmbH\nAmount: 1,200.50 EUR\nSource: OracleFusion(pod)"
        );
        assert_eq!(out.subject.as_deref(), Some("Supplier invoice INV-7"));
    }
}
