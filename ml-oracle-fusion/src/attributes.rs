//! Which attributes the pod has: learned from `GET .../<resource>/describe` before the
//! first read (and again when a read is refused with 400, e.g. after a pod upgrade), so
//! `fields` never names one the pod lacks. Pods differ by release: an optional attribute
//! the pod lacks is dropped with a warning naming it; a required one
//! ([`ResourceSpec::required_fields`]) is a configuration error naming the resource and
//! the attribute.
//!
//! When `describe` is unavailable (refused, or not the expected JSON), the source reads
//! with every attribute and learns from the 400 instead: an optional attribute named in
//! the error text is dropped. That text's wording is unconfirmed, so `describe` comes
//! first.

use std::collections::BTreeSet;
use std::sync::{Mutex, PoisonError};

use ml_core::error::Result;

use crate::error::OracleFusionError;
use crate::resource::ResourceSpec;
use crate::source::OracleFusionSource;

/// What the source knows of the pod's attributes for its resource.
#[derive(Debug, Default)]
pub(crate) struct Attributes {
    state: Mutex<Learned>,
    /// The body of the last 400 answered to a read with `fields`.
    bad_request: Mutex<Option<String>>,
}

#[derive(Debug, Default)]
struct Learned {
    /// Whether `describe` was asked (successfully, or refused for good).
    asked: bool,
    /// The attributes `describe` lists (`None`: unavailable).
    described: Option<BTreeSet<String>>,
    /// Attributes a 400 named.
    refused: BTreeSet<String>,
    /// The optional attributes left out of `fields`.
    dropped: Vec<String>,
    /// Child attributes (lines, distributions) a 400 named: left out of the child
    /// groups. `describe` lists the header only, so children are learned from refusals.
    dropped_children: Vec<String>,
}

/// Whether `text` names `attr` as a whole word.
/// `body` without the parameter values it echoes: ADF answers "URL request parameter
/// fields with value A,B,C,... is not valid. Attribute B is not found", so every attribute
/// asked for is in the text. A run of three or more names joined by `,` / `;` / `:` is
/// an echo of our own list, not a naming.
fn without_echoes(body: &str) -> String {
    body.split_whitespace()
        .filter(|token| {
            let t = token.trim_matches(|c: char| !c.is_ascii_alphanumeric());
            let names = t.split([',', ';', ':']).filter(|n| !n.is_empty()).count();
            names < 3
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn names(text: &str, attr: &str) -> bool {
    let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    text.match_indices(attr).any(|(i, _)| {
        !word(text[..i].chars().next_back()) && !word(text[i + attr.len()..].chars().next())
    })
}

/// The attributes `describe` lists for `resource`, or `None` when the body is not a
/// describe document for it.
fn parse_describe(body: &str, resource: &str) -> Option<BTreeSet<String>> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let resources = v.get("Resources")?.as_object()?;
    let r = resources.get(resource).or_else(|| {
        // One entry under another spelling: still this resource.
        (resources.len() == 1)
            .then(|| resources.values().next())
            .flatten()
    })?;
    Some(
        r.get("attributes")?
            .as_array()?
            .iter()
            .filter_map(|a| a.get("name")?.as_str().map(str::to_owned))
            .collect(),
    )
}

impl Learned {
    /// Recomputes [`Self::dropped`]; fails when a required attribute is missing.
    fn settle(&mut self, spec: &ResourceSpec) -> std::result::Result<(), OracleFusionError> {
        let lacks = |a: &String| {
            self.described.as_ref().is_some_and(|d| !d.contains(a)) || self.refused.contains(a)
        };
        let missing: Vec<String> = spec.required_fields().into_iter().filter(lacks).collect();
        if !missing.is_empty() {
            return Err(OracleFusionError::config(
                format!("{}.{}", spec.path, missing.join(",")),
                format!(
                    "the pod's `{}` resource has no attribute {}, which the source requires \
                     (key, timestamp, or amount and currency): name the pod's attribute in the \
                     stream's settings (`key_attribute`, `timestamp_attribute`, \
                     `amount_attribute`, `currency_attribute`; `ResourceSpec` in Rust), see \
                     GET .../{}/describe",
                    spec.path,
                    missing
                        .iter()
                        .map(|a| format!("`{a}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    spec.path
                ),
            ));
        }
        self.dropped = spec
            .fields()
            .into_iter()
            .filter(|a| !spec.is_required(a) && lacks(a))
            .collect();
        Ok(())
    }
}

impl Attributes {
    fn lock(&self) -> std::sync::MutexGuard<'_, Learned> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Remembers the body of a 400 answered to a read with `fields`.
    pub(crate) fn note_bad_request(&self, body: &str) {
        *self
            .bad_request
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(body.to_owned());
    }

    /// Takes the body noted by [`Self::note_bad_request`].
    pub(crate) fn take_bad_request(&self) -> Option<String> {
        self.bad_request
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

impl OracleFusionSource {
    /// The optional attributes left out of `fields` because the pod lacks them (learned
    /// from `describe` or a 400; empty until the first read).
    pub fn dropped_attributes(&self) -> Vec<String> {
        self.attributes.lock().dropped.clone()
    }

    /// The description the next page is mapped with: without the attributes the pod
    /// lacks (an optional amount whose currency the pod lacks is then left out, not
    /// rejected).
    pub(crate) fn mapping_spec(&self) -> ResourceSpec {
        let dropped = self.attributes.lock().dropped.clone();
        if dropped.is_empty() {
            self.spec.clone()
        } else {
            self.spec.without(&dropped)
        }
    }

    /// The `fields` value for the next read: [`ResourceSpec::fields_param`] without the
    /// attributes the pod lacks.
    pub(crate) fn fields_value(&self) -> String {
        let (dropped, children) = {
            let l = self.attributes.lock();
            (l.dropped.clone(), l.dropped_children.clone())
        };
        self.spec.fields_param_without(&dropped, &children)
    }

    /// `GET .../describe`, once: `Ok(None)` when the pod refuses it for good or answers
    /// something else; retryable failures are errors.
    async fn describe(&self) -> Result<Option<BTreeSet<String>>> {
        let url = format!("{}/describe", self.collection_url);
        match self.get_from(&url, &[], false).await {
            Ok(body) => {
                let parsed = parse_describe(&body, &self.spec.path);
                if parsed.is_none() {
                    tracing::debug!(source = %self, "describe: not a describe document");
                }
                Ok(parsed)
            }
            Err(e) if !e.class().is_retryable() => {
                tracing::debug!(source = %self, error = %e, "describe unavailable: learning from 400s instead");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn warn_dropped(&self, dropped: &[String]) {
        if !dropped.is_empty() {
            tracing::warn!(
                source = %self,
                dropped = %dropped.join(", "),
                "the pod lacks optional attributes: reading without them"
            );
        }
    }

    /// Learns the pod's attributes before the first read with `fields` (one `describe`).
    /// A pod lacking a required attribute is a configuration error, asked again at the
    /// next read (the pod may be upgraded, the error is permanent: the pipeline retries
    /// it on its slow cadence only).
    pub(crate) async fn ensure_attributes(&self) -> Result<()> {
        if !self.use_fields || self.attributes.lock().asked {
            return Ok(());
        }
        let described = match self.describe().await {
            Ok(d) => d,
            // Reading with every attribute still works on most pods: try that.
            Err(e) => {
                tracing::debug!(source = %self, error = %e, "describe failed; reading with every attribute");
                return Ok(());
            }
        };
        let dropped = {
            let mut l = self.attributes.lock();
            l.described = described;
            l.settle(&self.spec)?;
            l.asked = true;
            l.dropped.clone()
        };
        self.warn_dropped(&dropped);
        Ok(())
    }

    /// After a read with `fields` got 400 (`body`): learns again (`describe`, and the
    /// optional attributes the error names). True when `fields` changed, so the read is
    /// worth sending again.
    pub(crate) async fn relearn_attributes(&self, body: &str) -> Result<bool> {
        let body = &without_echoes(body);
        // A describe that fails now keeps what was learned before.
        let described = self.describe().await.ok();
        let (old, new, children) = {
            let mut l = self.attributes.lock();
            let old = l.dropped.clone();
            if let Some(d) = described {
                l.described = d;
                l.asked = true;
            }
            for a in self.spec.fields() {
                if !self.spec.is_required(&a) && names(body, &a) {
                    l.refused.insert(a);
                }
            }
            l.settle(&self.spec)?;
            // A child attribute the pod lacks on this release: the lines are read
            // without it (the line maps what it has).
            let mut children = Vec::new();
            for (_, attrs) in self
                .spec
                .lines
                .iter()
                .flat_map(crate::resource::LineSpec::child_groups)
            {
                for a in attrs {
                    if names(body, &a) && !l.dropped_children.contains(&a) {
                        l.dropped_children.push(a.clone());
                        children.push(a);
                    }
                }
            }
            (old, l.dropped.clone(), children)
        };
        if !children.is_empty() {
            tracing::warn!(
                source = %self,
                dropped = %children.join(", "),
                "the pod lacks line attributes: reading the lines without them"
            );
        }
        if old == new && children.is_empty() {
            return Ok(false);
        }
        if old != new {
            self.warn_dropped(&new);
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_word_names_and_describe_documents() {
        assert!(names("attribute SupplierId is not valid", "SupplierId"));
        assert!(!names("attribute SupplierIdX is not valid", "SupplierId"));
        assert!(!names("attribute XSupplierId", "SupplierId"));
        assert!(names("SupplierId", "SupplierId"));
        let body = r#"{"Resources":{"purchaseOrders":{"attributes":[{"name":"POHeaderId"},{"name":"Ordered"}]}}}"#;
        let set = parse_describe(body, "purchaseOrders").expect("describe");
        assert!(set.contains("Ordered") && set.len() == 2);
        assert_eq!(parse_describe(r#"{"items":[]}"#, "purchaseOrders"), None);
    }

    #[test]
    fn echoed_parameter_values_name_nothing() {
        let body = "URL request parameter fields with value InvoiceId,LastUpdateDate,\
                    InvoiceNumber,ApprovalStatus,Supplier is not valid. Attribute \
                    ApprovalStatus is not found in resource invoices.";
        let text = without_echoes(body);
        assert!(names(&text, "ApprovalStatus"));
        for echoed in ["InvoiceNumber", "Supplier", "InvoiceId"] {
            assert!(!names(&text, echoed), "{echoed}: {text}");
        }
        // Two names are a naming, not an echo.
        assert!(names(
            &without_echoes("attributes Foo,Bar are not valid"),
            "Bar"
        ));
    }
}
