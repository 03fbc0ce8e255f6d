//! [`ApprovalButtons`]: a renderer wrapper that adds the Approve / Reject buttons to the
//! Slack message of an invoice awaiting approval.

use std::fmt;
use std::sync::Arc;

use ml_core::record::{EntityKind, Record};
use ml_core::render::{Rendered, Renderer};
use ml_core::sink::Destination;
use serde_json::{Value, json};

use crate::approval::invoice_buttons;

/// Wraps a renderer (Slack's `BlockKitRenderer`): records of the given kinds whose state is
/// one of the approvable states get an `actions` block with the buttons handled by
/// [`crate::Approvals`] (the button value is the record key).
pub struct ApprovalButtons {
    inner: Arc<dyn Renderer>,
    kinds: Vec<EntityKind>,
    states: Vec<String>,
    system: Option<String>,
}

impl fmt::Debug for ApprovalButtons {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApprovalButtons")
            .field("inner", &self.inner)
            .field("kinds", &self.kinds)
            .field("states", &self.states)
            .field("system", &self.system)
            .finish()
    }
}

impl ApprovalButtons {
    /// Buttons on supplier invoices in state `AwaitingApproval`.
    pub fn new(inner: Arc<dyn Renderer>) -> Self {
        Self {
            inner,
            kinds: vec![EntityKind::SupplierInvoice],
            states: vec!["AwaitingApproval".to_owned()],
            system: None,
        }
    }

    /// Buttons only on records of `source` (the entity set [`crate::Approvals`] acts on):
    /// an invoice of another system (another IFS environment, Oracle) in a state of the
    /// same name gets none, as its key means nothing to these approvals.
    #[must_use]
    pub fn for_source(mut self, source: &crate::IfsSource) -> Self {
        self.system = Some(source.to_string());
        self
    }

    /// The states in which the buttons are shown.
    #[must_use]
    pub fn with_states(mut self, states: Vec<String>) -> Self {
        self.states = states;
        self
    }

    fn applies(&self, record: &Record) -> bool {
        self.kinds.contains(&record.kind)
            && self.system.as_ref().is_none_or(|s| *s == record.system)
            && record
                .fields
                .status
                .as_ref()
                .is_some_and(|s| self.states.contains(s))
    }
}

impl Renderer for ApprovalButtons {
    fn render(&self, record: &Record, destination: &Destination) -> Rendered {
        let mut r = self.inner.render(record, destination);
        if !self.applies(record) {
            return r;
        }
        // The version shown: a click acts on it or not at all.
        let etag = record
            .raw
            .to_value()
            .get("@odata.etag")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let buttons = invoice_buttons(&record.key, etag.as_deref());
        match &mut r.body {
            // Slack allows 50 blocks: the buttons replace the last one if needed.
            Some(Value::Array(blocks)) => {
                if blocks.len() >= 50 {
                    blocks.truncate(49);
                }
                blocks.push(buttons);
            }
            body @ None => {
                *body = Some(json!([
                    {"type": "section", "text": {"type": "plain_text", "text": r.text}},
                    buttons,
                ]));
            }
            Some(_) => {}
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use ml_core::render::PlainTextRenderer;

    use super::*;

    #[test]
    fn buttons_only_for_invoices_awaiting_approval() {
        let r = ApprovalButtons::new(Arc::new(PlainTextRenderer));
        let dest = Destination::new("slack", "#finance");
        let mut rec = Record::new(
            "Ifs(x)",
            EntityKind::SupplierInvoice,
            "Company='10',InvoiceId=7",
            jiff::Timestamp::UNIX_EPOCH,
        );
        rec.fields.status = Some("AwaitingApproval".into());
        let out = r.render(&rec, &dest);
        let blocks = out.body.expect("blocks");
        assert_eq!(
            blocks[1]["elements"][0]["value"],
            "Company='10',InvoiceId=7"
        );
        rec.fields.status = Some("Approved".into());
        assert!(r.render(&rec, &dest).body.is_none());
    }

    #[test]
    fn buttons_only_for_the_approval_source() -> ml_core::Result<()> {
        let source = crate::IfsBuilder::new()
            .with_url("http://127.0.0.1:9")
            .with_realm("r")
            .with_client_credentials("c", "s".to_owned())
            .with_resource(crate::IfsResource::SupplierInvoices)
            .build()?;
        let r = ApprovalButtons::new(Arc::new(PlainTextRenderer)).for_source(&source);
        let dest = Destination::new("slack", "#finance");
        let mut ours = Record::new(
            source.to_string(),
            EntityKind::SupplierInvoice,
            "Company='10',InvoiceId=7",
            jiff::Timestamp::UNIX_EPOCH,
        );
        ours.fields.status = Some("AwaitingApproval".into());
        assert!(r.render(&ours, &dest).body.is_some());
        let mut other = ours.clone();
        other.system = "OracleFusion(acme)".into();
        assert!(r.render(&other, &dest).body.is_none());
        Ok(())
    }
}
