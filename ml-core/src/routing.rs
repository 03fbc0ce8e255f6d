//! Routing: named rules that map a record to destinations, with `explain` saying which
//! rules matched and why.
//!
//! Rules are plain data (serde), so hosts load them from configuration:
//!
//! ```
//! use ml_core::routing::{Router, RouterSpec};
//! let spec: RouterSpec = serde_json::from_value(serde_json::json!({
//!     "mode": "all_match",
//!     "rules": [
//!         { "name": "new invoices", "when": [{ "kind": ["supplier_invoice"] }],
//!           "to": ["slack:#procurement"] },
//!         { "name": "large invoices",
//!           "when": [{ "kind": ["supplier_invoice"] },
//!                    { "amount_at_least": { "amount": "10000", "currency": "USD" } }],
//!           "to": ["slack:#finance"] }
//!     ]
//! })).unwrap();
//! let router = Router::try_from(spec).unwrap();
//! assert_eq!(router.rules().len(), 2);
//! ```

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::money::Money;
use crate::record::{EntityKind, Record};
use crate::sink::Destination;

/// One condition of a rule. A rule matches when all its conditions hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Condition {
    /// The entity kind is one of these.
    Kind(Vec<EntityKind>),
    /// The amount is at least this, in the same currency. A record in another currency, or
    /// without an amount, does not match (no silent FX).
    AmountAtLeast(#[serde(deserialize_with = "threshold")] Money),
    /// The cost center (header or any line) is one of these. All-digit values match with
    /// or without leading zeros (`4711` is `0000004711`).
    CostCenter(Vec<String>),
    /// The GL account (header or any line) starts with one of these prefixes.
    GlAccountPrefix(Vec<String>),
    /// The company code is one of these.
    CompanyCode(Vec<String>),
    /// The supplier id or name is one of these.
    Supplier(Vec<String>),
    /// The status is one of these (case-insensitive).
    Status(Vec<String>),
    /// The source system (as the record names it) is one of these.
    System(Vec<String>),
    /// An extra field has one of these values (`{"field": "material_group", "in": [...]}`).
    Field {
        /// The extra field's name.
        field: String,
        /// Accepted values.
        #[serde(rename = "in")]
        values: Vec<String>,
    },
}

/// A threshold as a rule writes it: `{ amount, currency }` and nothing else (a key the
/// rule does not know, `fx = "none"`, must not be silently ignored), in a currency ISO 4217
/// lists (a made-up code would never match).
fn threshold<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Money, D::Error> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Threshold {
        amount: rust_decimal::Decimal,
        currency: crate::money::Currency,
    }
    let t = Threshold::deserialize(d)?;
    if !t.currency.is_iso_4217() {
        return Err(serde::de::Error::custom(format!(
            "currency `{}` is not an ISO 4217 code",
            t.currency
        )));
    }
    Ok(Money::new(t.amount, t.currency))
}

fn list(v: &[String]) -> String {
    v.join(", ")
}

impl Condition {
    /// Whether the condition holds, and a sentence saying why or why not.
    pub fn check(&self, r: &Record) -> (bool, String) {
        let f = &r.fields;
        let any_line = |get: &dyn Fn(&crate::record::Line) -> Option<&String>,
                        pred: &dyn Fn(&str) -> bool| {
            r.fields.lines.iter().filter_map(get).any(|v| pred(v))
        };
        match self {
            Self::Kind(kinds) => {
                let ok = kinds.contains(&r.kind);
                (
                    ok,
                    format!(
                        "kind {} {} [{}]",
                        r.kind,
                        in_or_not(ok),
                        kinds
                            .iter()
                            .map(EntityKind::label)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            }
            Self::AmountAtLeast(min) => match &f.amount {
                None => (false, format!("no amount (needs >= {min})")),
                Some(a) => match a.at_least(min) {
                    Some(true) => (true, format!("amount {a} >= {min}")),
                    Some(false) => (false, format!("amount {a} < {min}")),
                    None => (
                        false,
                        format!("amount {a} is not in {} (needs >= {min})", min.currency),
                    ),
                },
            },
            Self::CostCenter(v) => {
                let ok = f
                    .cost_center
                    .as_ref()
                    .is_some_and(|c| v.iter().any(|x| same_key(x, c)))
                    || any_line(&|l| l.cost_center.as_ref(), &|c| {
                        v.iter().any(|x| same_key(x, c))
                    });
                let shown = header_or_lines(
                    f.cost_center.as_ref(),
                    r.fields.lines.iter().filter_map(|l| l.cost_center.as_ref()),
                    &|c| v.iter().any(|x| same_key(x, c)),
                );
                (
                    ok,
                    format!("cost center {shown} {} [{}]", in_or_not(ok), list(v)),
                )
            }
            Self::GlAccountPrefix(v) => {
                let pred = |acct: &str| v.iter().any(|p| acct.starts_with(p.as_str()));
                let ok = f.gl_account.as_deref().is_some_and(pred)
                    || any_line(&|l| l.gl_account.as_ref(), &pred);
                let shown = header_or_lines(
                    f.gl_account.as_ref(),
                    r.fields.lines.iter().filter_map(|l| l.gl_account.as_ref()),
                    &pred,
                );
                (
                    ok,
                    format!(
                        "GL account {shown} {} prefixes [{}]",
                        if ok { "matches" } else { "matches none of" },
                        list(v)
                    ),
                )
            }
            Self::CompanyCode(v) => {
                let ok = f.company_code.as_ref().is_some_and(|c| v.contains(c));
                (
                    ok,
                    format!(
                        "company code {} {} [{}]",
                        show(f.company_code.as_ref()),
                        in_or_not(ok),
                        list(v)
                    ),
                )
            }
            Self::Supplier(v) => {
                let ok = f.supplier_id.as_ref().is_some_and(|c| v.contains(c))
                    || f.supplier.as_ref().is_some_and(|c| v.contains(c));
                (
                    ok,
                    format!(
                        "supplier {} {} [{}]",
                        show(f.supplier.as_ref().or(f.supplier_id.as_ref())),
                        in_or_not(ok),
                        list(v)
                    ),
                )
            }
            Self::Status(v) => {
                let ok = f
                    .status
                    .as_ref()
                    .is_some_and(|s| v.iter().any(|x| x.eq_ignore_ascii_case(s)));
                (
                    ok,
                    format!(
                        "status {} {} [{}]",
                        show(f.status.as_ref()),
                        in_or_not(ok),
                        list(v)
                    ),
                )
            }
            Self::System(v) => {
                let ok = v.contains(&r.system);
                (
                    ok,
                    format!("system {} {} [{}]", r.system, in_or_not(ok), list(v)),
                )
            }
            Self::Field { field, values } => {
                let got = f.extra.get(field);
                let ok = got.is_some_and(|g| values.contains(g));
                (
                    ok,
                    format!("{field} {} {} [{}]", show(got), in_or_not(ok), list(values)),
                )
            }
        }
    }

    fn validate(&self) -> std::result::Result<(), String> {
        let empty = match self {
            Self::Kind(v) => v.is_empty(),
            Self::AmountAtLeast(_) => false,
            Self::CostCenter(v)
            | Self::GlAccountPrefix(v)
            | Self::CompanyCode(v)
            | Self::Supplier(v)
            | Self::Status(v)
            | Self::System(v) => v.is_empty() || v.iter().any(|s| s.trim().is_empty()),
            Self::Field { field, values } => field.trim().is_empty() || values.is_empty(),
        };
        if empty {
            Err(format!(
                "condition {self:?} has an empty value list or an empty value"
            ))
        } else {
            Ok(())
        }
    }
}

fn in_or_not(ok: bool) -> &'static str {
    if ok { "in" } else { "not in" }
}

/// What a header-or-any-line condition looked at: the header's value when it matched,
/// else the line value that did, else the header's and every line's.
fn header_or_lines<'a>(
    header: Option<&String>,
    lines: impl Iterator<Item = &'a String> + Clone,
    hit: &dyn Fn(&str) -> bool,
) -> String {
    if let Some(h) = header.filter(|h| hit(h)) {
        return format!("`{h}`");
    }
    if let Some(l) = lines.clone().find(|l| hit(l)) {
        return format!("`{l}` (a line's)");
    }
    let on_lines: Vec<String> = lines.map(|l| format!("`{l}`")).collect();
    if on_lines.is_empty() {
        show(header)
    } else {
        format!("{} (lines: {})", show(header), on_lines.join(", "))
    }
}

fn show(v: Option<&String>) -> String {
    v.map_or_else(|| "(none)".to_owned(), |s| format!("`{s}`"))
}

/// A named rule: when all conditions hold, the record goes to `to`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The rule's name (unique within a router).
    pub name: String,
    /// The conditions (all must hold; none: matches every record).
    #[serde(default)]
    pub when: Vec<Condition>,
    /// The destinations, as `sink:address`.
    pub to: Vec<String>,
}

impl Rule {
    /// A rule named `name` with no conditions and no destinations yet: add them with
    /// [`when`](Self::when) and [`to`](Self::to).
    ///
    /// ```
    /// use ml_core::routing::{Condition, Rule};
    /// use ml_core::{EntityKind, Money};
    ///
    /// let rule = Rule::new("large invoices")
    ///     .when(Condition::kind(EntityKind::SupplierInvoice))
    ///     .when(Condition::AmountAtLeast(Money::parse("10000", "USD")?))
    ///     .to("slack:#finance");
    /// assert_eq!(rule.when.len(), 2);
    /// # Ok::<(), ml_core::Error>(())
    /// ```
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            when: Vec::new(),
            to: Vec::new(),
        }
    }

    /// Adds a condition (all must hold).
    #[must_use]
    pub fn when(mut self, condition: Condition) -> Self {
        self.when.push(condition);
        self
    }

    /// Adds a destination, `sink:address`.
    #[must_use]
    pub fn to(mut self, destination: impl Into<String>) -> Self {
        self.to.push(destination.into());
        self
    }
}

impl Condition {
    /// The entity kind is `kind`.
    pub fn kind(kind: EntityKind) -> Self {
        Self::Kind(vec![kind])
    }

    /// The status is one of `statuses` (case-insensitive).
    pub fn status<S: Into<String>>(statuses: impl IntoIterator<Item = S>) -> Self {
        Self::Status(statuses.into_iter().map(Into::into).collect())
    }

    /// The cost center is one of `centers`.
    pub fn cost_center<S: Into<String>>(centers: impl IntoIterator<Item = S>) -> Self {
        Self::CostCenter(centers.into_iter().map(Into::into).collect())
    }
}

/// Two keys are the same key: equal, or both all digits and equal without leading zeros
/// (`4711` and `0000004711`: SAP keeps keys such as cost centers zero-padded inside and
/// shows them without the zeros, and people write either).
fn same_key(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    digits(a) && digits(b) && a.trim_start_matches('0') == b.trim_start_matches('0')
}

/// How a router combines rules.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchMode {
    /// Only the first matching rule applies.
    FirstMatch,
    /// Every matching rule applies (destinations are deduplicated).
    #[default]
    AllMatch,
}

/// Rules as configuration (validated into a [`Router`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterSpec {
    /// How rules combine.
    #[serde(default)]
    pub mode: MatchMode,
    /// The rules, in order.
    pub rules: Vec<Rule>,
}

#[derive(Clone, Debug)]
struct CompiledRule {
    rule: Rule,
    to: Vec<Destination>,
}

/// A validated rule set.
#[derive(Clone, Debug, Default)]
pub struct Router {
    mode: MatchMode,
    rules: Vec<CompiledRule>,
}

/// One rule's verdict in an [`Explanation`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleVerdict {
    /// The rule.
    pub rule: String,
    /// Whether all its conditions held.
    pub matched: bool,
    /// Whether it contributed destinations (false for matches after the first in
    /// first-match mode).
    pub applied: bool,
    /// One sentence per condition.
    pub reasons: Vec<String>,
    /// The rule's destinations.
    pub destinations: Vec<Destination>,
}

/// Why a record goes where it goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// Each rule's verdict, in order.
    pub rules: Vec<RuleVerdict>,
    /// The resulting destinations.
    pub destinations: Vec<Destination>,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for v in &self.rules {
            let mark = match (v.matched, v.applied) {
                (true, true) => "MATCH  ",
                (true, false) => "skipped",
                _ => "no     ",
            };
            writeln!(f, "{mark} {}: {}", v.rule, v.reasons.join("; "))?;
        }
        let to: Vec<String> = self.destinations.iter().map(ToString::to_string).collect();
        write!(
            f,
            "=> {}",
            if to.is_empty() {
                "(nowhere)".into()
            } else {
                to.join(", ")
            }
        )
    }
}

impl Router {
    /// Builds a router, validating every rule.
    pub fn new(mode: MatchMode, rules: Vec<Rule>) -> Result<Self> {
        let mut names = HashSet::new();
        let mut compiled = Vec::with_capacity(rules.len());
        for (i, rule) in rules.into_iter().enumerate() {
            let label = if rule.name.trim().is_empty() {
                format!("#{}", i + 1)
            } else {
                rule.name.clone()
            };
            let bad = |message: String| Error::InvalidRule {
                rule: label.clone(),
                message,
            };
            if rule.name.trim().is_empty() {
                return Err(bad("a rule needs a name".into()));
            }
            if !names.insert(rule.name.clone()) {
                return Err(bad("another rule has the same name".into()));
            }
            if rule.to.is_empty() {
                return Err(bad("a rule needs at least one destination".into()));
            }
            for c in &rule.when {
                c.validate().map_err(&bad)?;
            }
            let to = rule
                .to
                .iter()
                .map(|d| Destination::parse(d).map_err(|e| bad(e.to_string())))
                .collect::<Result<Vec<_>>>()?;
            compiled.push(CompiledRule { rule, to });
        }
        Ok(Self {
            mode,
            rules: compiled,
        })
    }

    /// The rules, in order.
    pub fn rules(&self) -> Vec<&Rule> {
        self.rules.iter().map(|r| &r.rule).collect()
    }

    /// The destinations of a record (deduplicated, in rule order).
    pub fn route(&self, record: &Record) -> Vec<Destination> {
        let mut out: Vec<Destination> = Vec::new();
        for r in &self.rules {
            if r.rule.when.iter().all(|c| c.check_fast(record)) {
                for d in &r.to {
                    if !out.contains(d) {
                        out.push(d.clone());
                    }
                }
                if self.mode == MatchMode::FirstMatch {
                    break;
                }
            }
        }
        out
    }

    /// Says which rules matched a record and why.
    pub fn explain(&self, record: &Record) -> Explanation {
        let mut verdicts = Vec::with_capacity(self.rules.len());
        let mut destinations: Vec<Destination> = Vec::new();
        let mut done = false;
        for r in &self.rules {
            let checks: Vec<(bool, String)> = r.rule.when.iter().map(|c| c.check(record)).collect();
            let matched = checks.iter().all(|(ok, _)| *ok);
            let applied = matched && !done;
            if applied {
                for d in &r.to {
                    if !destinations.contains(d) {
                        destinations.push(d.clone());
                    }
                }
                done = self.mode == MatchMode::FirstMatch;
            }
            let mut reasons: Vec<String> = checks.into_iter().map(|(_, s)| s).collect();
            if reasons.is_empty() {
                reasons.push("no conditions (matches every record)".into());
            }
            verdicts.push(RuleVerdict {
                rule: r.rule.name.clone(),
                matched,
                applied,
                reasons,
                destinations: r.to.clone(),
            });
        }
        Explanation {
            rules: verdicts,
            destinations,
        }
    }
}

impl Condition {
    /// `check` without building the reason (the hot path).
    fn check_fast(&self, r: &Record) -> bool {
        let f = &r.fields;
        match self {
            Self::Kind(kinds) => kinds.contains(&r.kind),
            Self::AmountAtLeast(min) => f
                .amount
                .as_ref()
                .and_then(|a| a.at_least(min))
                .unwrap_or(false),
            Self::CostCenter(v) => {
                let pred = |c: &String| v.iter().any(|x| same_key(x, c));
                f.cost_center.as_ref().is_some_and(pred)
                    || f.lines
                        .iter()
                        .any(|l| l.cost_center.as_ref().is_some_and(pred))
            }
            Self::GlAccountPrefix(v) => {
                let pred = |a: &String| v.iter().any(|p| a.starts_with(p.as_str()));
                f.gl_account.as_ref().is_some_and(pred)
                    || f.lines
                        .iter()
                        .any(|l| l.gl_account.as_ref().is_some_and(pred))
            }
            Self::CompanyCode(v) => f.company_code.as_ref().is_some_and(|c| v.contains(c)),
            Self::Supplier(v) => {
                f.supplier_id.as_ref().is_some_and(|c| v.contains(c))
                    || f.supplier.as_ref().is_some_and(|c| v.contains(c))
            }
            Self::Status(v) => f
                .status
                .as_ref()
                .is_some_and(|s| v.iter().any(|x| x.eq_ignore_ascii_case(s))),
            Self::System(v) => v.contains(&r.system),
            Self::Field { field, values } => f.extra.get(field).is_some_and(|g| values.contains(g)),
        }
    }
}

impl TryFrom<RouterSpec> for Router {
    type Error = Error;
    fn try_from(spec: RouterSpec) -> Result<Self> {
        Self::new(spec.mode, spec.rules)
    }
}

#[cfg(test)]
mod tests;
