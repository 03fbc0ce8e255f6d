//! Status labels: X3 serves local-menu values as numbers (`APPFLG` 1/2/3); a message shows
//! the words. Built-in maps for the status properties the built-in classes read (their
//! numbering is unconfirmed per release, see `docs.md`), replaced per stream with
//! `SAGE_X3_STATUS_LABELS="1=Not approved,2=Partly approved,3=Approved"`. A code without a
//! label is shown as served: never dropped, never an error.

use std::collections::BTreeMap;
use std::fmt;

use crate::error::SageX3Error;

/// Labels of a status property's codes.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct StatusLabels {
    by_code: BTreeMap<String, String>,
}

impl fmt::Debug for StatusLabels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(&self.by_code).finish()
    }
}

impl StatusLabels {
    /// No labels: every code is shown as served.
    pub fn new() -> Self {
        Self::default()
    }

    /// Labels from `(code, label)` pairs.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            by_code: pairs
                .into_iter()
                .map(|(c, l)| (c.to_owned(), l.to_owned()))
                .collect(),
        }
    }

    /// Parses `code=label,code=label` (the value of `key`, named in errors). Codes and
    /// labels are trimmed; a label may hold spaces but neither `,` nor `=`. An empty list,
    /// a part without `=`, an empty code or label, or a code given twice is an error.
    pub fn parse(key: &str, spec: &str) -> Result<Self, SageX3Error> {
        let mut by_code = BTreeMap::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((code, label)) = part.split_once('=') else {
                return Err(SageX3Error::config(
                    key,
                    format!("`{part}` is not code=label"),
                ));
            };
            let (code, label) = (code.trim(), label.trim());
            if code.is_empty() || label.is_empty() || label.contains('=') {
                return Err(SageX3Error::config(
                    key,
                    format!("`{part}` is not code=label"),
                ));
            }
            if by_code.insert(code.to_owned(), label.to_owned()).is_some() {
                return Err(SageX3Error::config(
                    key,
                    format!("code `{code}` is labelled twice"),
                ));
            }
        }
        if by_code.is_empty() {
            return Err(SageX3Error::config(
                key,
                "no code=label pairs (e.g. `1=Not approved,2=Partly approved,3=Approved`)",
            ));
        }
        Ok(Self { by_code })
    }

    /// The label of `code`, or `code` itself when it has none.
    pub fn label<'a>(&'a self, code: &'a str) -> &'a str {
        self.by_code.get(code.trim()).map_or(code, String::as_str)
    }

    /// Whether no code has a label.
    pub fn is_empty(&self) -> bool {
        self.by_code.is_empty()
    }

    /// The `(code, label)` pairs, by code.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.by_code.iter().map(|(c, l)| (c.as_str(), l.as_str()))
    }
}

/// `PORDER.APPFLG` (signature / approval; unconfirmed numbering).
pub(crate) fn purchase_order_approval() -> StatusLabels {
    StatusLabels::from_pairs([
        ("1", "Not approved"),
        ("2", "Partly approved"),
        ("3", "Approved"),
    ])
}

/// `PINVOICE.STA` and `GACCENTRY.STA` (temporary or final; unconfirmed numbering).
pub(crate) fn temporary_or_final() -> StatusLabels {
    StatusLabels::from_pairs([("1", "Temporary"), ("2", "Final")])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse_and_unknown_codes_stay_raw() {
        let l = StatusLabels::parse(
            "SAGE_X3_STATUS_LABELS",
            " 1=Not approved, 2 = Partly approved,3=Approved,",
        )
        .expect("parse");
        assert_eq!(l.label("1"), "Not approved");
        assert_eq!(l.label("2"), "Partly approved");
        assert_eq!(l.label(" 3"), "Approved");
        assert_eq!(l.label("9"), "9", "an unknown code is shown as served");
        assert_eq!(l, {
            let d = purchase_order_approval();
            assert_eq!(d.iter().count(), 3);
            d
        });
        assert_eq!(StatusLabels::new().label("2"), "2");
    }

    #[test]
    fn bad_labels_name_the_key() {
        for bad in [
            "",
            " , ",
            "1",
            "=Approved",
            "1=",
            "1=a=b",
            "1=A,1=B",
            "1=Approved;2=Other",
        ] {
            let err = StatusLabels::parse("SAGE_X3_STATUS_LABELS", bad)
                .expect_err(bad)
                .to_string();
            assert!(err.contains("SAGE_X3_STATUS_LABELS"), "{bad:?}: {err}");
        }
    }
}
